// Cross-browser interop through the SDK: a Firefox ESR page (puppeteer-core over WebDriver BiDi) calls a
// Chromium page (playwright-core) with video; each receives the other's Opus audio and VP8 video (Firefox ESR
// here has no H.264: its OpenH264 plugin is a run-time download). Then Firefox hangs up and both calls end.
//
// Run by tests/browser/run inside a loopback-only network namespace. Environment (set by ./run):
//   APP_URL   http://127.0.0.1:PORT/ (the server's HTTP port, in dev mode)
//   FIREFOX   the browser (default /usr/bin/firefox-esr)    CHROMIUM (default /usr/bin/chromium)
// Prints PASS/FAIL lines; exits 1 when any failed.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';
import { check, env, results } from './common.mjs';
import { HARNESS, fmtMedia, receives, until } from './sdk-common.mjs';

const APP_URL = env('APP_URL');
const FIREFOX = env('FIREFOX', '/usr/bin/firefox-esr');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const EVENT_MS = 15_000;
const MEDIA_MS = 30_000;

// Firefox gathers loopback candidates only for an origin with a stored camera and microphone permission.
const dir = mkdtempSync(join(tmpdir(), 'hualu-sdk-firefox-'));
const origin = new URL(APP_URL).origin;
const permFile = join(dir, 'permissions.txt');
writeFileSync(permFile, `origin\tcamera\t1\t${origin}\norigin\tmicrophone\t1\t${origin}\n`);

let firefox = null;
let chrome = null;
try {
  firefox = await puppeteer.launch({
    browser: 'firefox', executablePath: FIREFOX, headless: true,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true, 'media.navigator.permission.disabled': true,
      'media.peerconnection.ice.loopback': true, 'media.peerconnection.ice.obfuscate_host_addresses': false,
      'media.gmp-gmpopenh264.enabled': false, 'media.autoplay.default': 0,
      'permissions.manager.defaultsUrl': `file://${permFile}`,
    },
  });
  chrome = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
      '--disable-quic', '--allow-loopback-in-peer-connection'],
  });
  const fox = await firefox.newPage();
  const chr = await chrome.newPage();
  for (const [page, user] of [[fox, 'fox'], [chr, 'chrome']]) {
    page.label = user;
    page.on('pageerror', (e) => console.log(`  [${user}] page error: ${e.message}`));
    await page.goto(APP_URL);
    await page.evaluate(HARNESS);
    const who = await page.evaluate((u) => T.start(u, 'web', false), user);
    check(`interop: ${user} signs in`, who.user === user, JSON.stringify(who));
  }
  const id = await fox.evaluate(() => T.place(['chrome'], true));
  const rang = await until(() => chr.evaluate(() => T.seen('incoming')), (e) => e.length > 0, EVENT_MS);
  check('interop: Firefox calls, Chromium rings', rang.ok && rang.value[0].call === id, `after ${rang.ms} ms`);
  await chr.evaluate((i) => T.act('accept', i), id);
  for (const [page, other] of [[fox, 'chrome'], [chr, 'fox']]) {
    const r = await until(() => page.evaluate((i) => T.media(i), id), (m) => receives(m, [other], 50, 15), MEDIA_MS, 500);
    const codecs = r.value && r.value.participants && r.value.participants[other] ? r.value.participants[other].codecs : [];
    check(`interop: ${page.label} receives ${other}'s audio and VP8 video`,
      r.ok && codecs.includes('audio/opus') && codecs.includes('video/VP8'), `${fmtMedia(r.value)} after ${r.ms} ms`);
  }
  await fox.evaluate((i) => T.act('hangup', i), id);
  const ended = await until(() => chr.evaluate((i) => T.seen('ended', i), id), (e) => e.length > 0, EVENT_MS);
  check('interop: Chromium hears the hang-up', ended.ok && ended.value[0].reason === 'hangup',
    JSON.stringify(ended.value).slice(0, 200));
} catch (err) {
  check('interop driver', false, `exception: ${err && err.stack || err}`);
} finally {
  if (firefox) await firefox.close().catch(() => {});
  if (chrome) await chrome.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
process.exit(results.failed > 0 ? 1 : 0);
