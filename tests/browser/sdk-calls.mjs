// Browser end-to-end test of the SDK (web/sdk) and the demo app (web/app) in headless Chromium, against one
// `hualu up --dev` (call control, SFU and TURN in one process). Every page is loaded from the server itself.
//   app        amy calls ben with video by clicking the demo app; ben accepts on the incoming-call screen;
//              both receive audio and video; a screenshot of the in-call screen goes to target/browser/;
//              amy mutes and unmutes, turns her camera off and on, as ben's tile shows; amy hangs up and both
//              apps leave the call.
//   two tabs   bob has two devices: both ring, one accepts, the other hears answered_elsewhere.
//   drop       bob's page goes offline for 3 s mid-call: the SDK emits reconnecting, then reconnected, and
//              audio flows again both ways. Then his room socket closes alone, then his call-control socket:
//              each layer resumes, and the call stays active. Then alice hangs up: both get `ended` (hangup).
//   decline    bob declines on one device: alice gets declined and ended (declined), bob's other device too.
//   no answer  carol does not answer within the ring timeout: ended (no_answer) on both sides.
//   group      alice calls bob and carol with video: each receives the other two, with an E-model MOS.
//   relay      a call with iceTransportPolicy 'relay': media flows over relay candidates of hualu's TURN.
//
// Run by tests/browser/run inside a loopback-only network namespace. Environment (set by ./run):
//   APP_URL      http://127.0.0.1:PORT/ (the server's HTTP port, in dev mode)
//   RING_SECS    the server's signaling.ring_timeout_secs
//   SHOT_DIR     where the screenshot goes
//   CHROMIUM     the browser (default /usr/bin/chromium)
// Prints PASS/FAIL lines; exits 1 when any failed.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { check, env, results } from './common.mjs';
import { HARNESS, fmtMedia, receives, until } from './sdk-common.mjs';

const APP_URL = env('APP_URL');
const RING_SECS = Number(env('RING_SECS'));
const SHOT_DIR = env('SHOT_DIR');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

const EVENT_MS = 10_000; // a signaling event reaching a page
const MEDIA_MS = 25_000; // media from every other participant
const AUDIO = 50; // 1 s of Opus
const FRAMES = 15; // 1 s at 15 fps

const profile = mkdtempSync(join(tmpdir(), 'hualu-sdk-chromium-'));
const browser = await chromium.launch({
  executablePath: CHROMIUM, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
    '--disable-quic', '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required'],
});

// A harness page for `user` on `device`, in `context`.
async function harness(context, user, device, relay = false) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`  [${user}/${device}] page error: ${e.message}`));
  await page.goto(APP_URL);
  await page.evaluate(HARNESS);
  await page.evaluate(([u, d, r]) => T.start(u, d, r), [user, device, relay]);
  page.label = `${user}/${device}`;
  return page;
}

const ev = (page, type, id) => page.evaluate(([t, i]) => T.seen(t, i), [type, id]);
const media = (page, id) => page.evaluate((i) => T.media(i), id);
const act = (page, what, id) => page.evaluate(([w, i]) => T.act(w, i), [what, id]);

// Waits for `type` on `page` for call `id`; checks it and returns the first such event (or undefined).
async function expectEvent(name, page, type, id, pred = () => true, ms = EVENT_MS) {
  const r = await until(() => ev(page, type, id), (es) => Array.isArray(es) && es.some(pred), ms);
  const e = r.ok ? r.value.find(pred) : undefined;
  check(name, r.ok, r.ok ? `${page.label} got ${type}${e.reason ? ` (${e.reason})` : ''} after ${r.ms} ms`
    : `${page.label} saw no ${type} within ${ms} ms: ${JSON.stringify(r.value).slice(0, 300)}`);
  return e;
}

// Waits until each page receives from the named others.
async function expectMedia(name, pages, from, frames, id) {
  const all = await Promise.all(pages.map(async (p, i) => {
    const r = await until(() => media(p, id), (m) => receives(m, from[i], AUDIO, frames), MEDIA_MS, 500);
    check(`${name}: ${p.label} receives from ${from[i].join(', ')}`, r.ok, `${fmtMedia(r.value)} after ${r.ms} ms`);
    return r.value;
  }));
  return all;
}

// The incoming call's id on `page`, once it rings.
async function incoming(name, page) {
  const e = await expectEvent(name, page, 'incoming');
  await page.evaluate(() => { T.events = T.events.filter((x) => x.type !== 'incoming'); });
  return e && e.call;
}

async function appScenario() {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 780 } });
  const open = async (user, contact) => {
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.log(`  [app ${user}] page error: ${e.message}`));
    await page.goto(`${APP_URL}?user=${user}&contacts=${contact}&small=1`);
    page.label = `app ${user}`;
    return page;
  };
  const amy = await open('amy', 'ben');
  const ben = await open('ben', 'amy');
  const online = await until(() => amy.locator('li[data-user="ben"] .presence').getAttribute('data-online'),
    (v) => v === 'true', EVENT_MS);
  check('app: amy sees ben online in her contacts', online.ok, `data-online=${online.value} after ${online.ms} ms`);
  await amy.click('li[data-user="ben"] .call-video');
  const ringing = await until(() => ben.evaluate(() => document.body.dataset.screen), (s) => s === 'incoming', EVENT_MS);
  const from = ringing.ok ? await ben.textContent('#incoming-from') : '';
  check('app: ben sees the incoming-call screen', ringing.ok && from.includes('amy'),
    `screen ${ringing.value}, "${from.trim()}" after ${ringing.ms} ms`);
  await ben.click('#accept');
  for (const p of [amy, ben]) {
    const r = await until(() => p.evaluate(() => document.body.dataset.screen), (s) => s === 'incall', EVENT_MS);
    check(`app: ${p.label} shows the in-call screen`, r.ok, `screen ${r.value} after ${r.ms} ms`);
    await p.evaluate(HARNESS);
    await p.evaluate(() => T.calls.set('app', window.hualuApp.call));
  }
  const [seen] = await expectMedia('app', [amy, ben], [['ben'], ['amy']], FRAMES, 'app');
  const tile = await until(() => amy.locator('.tile[data-identity="ben"] .quality').textContent(),
    (t) => /MOS \d/.test(t || ''), 8_000);
  check('app: the tile shows a quality bar with a MOS', tile.ok, `"${(tile.value || '').trim()}"`);
  mkdirSync(SHOT_DIR, { recursive: true });
  const shot = join(SHOT_DIR, 'in-call.png');
  await amy.screenshot({ path: shot });
  check('app: screenshot of the in-call screen', !!seen, shot);
  await controls(amy, ben);
  await amy.click('#hangup');
  for (const p of [amy, ben]) {
    const r = await until(() => p.evaluate(() => document.body.dataset.screen), (s) => s === 'contacts', EVENT_MS);
    check(`app: ${p.label} is back at contacts after the hang-up`, r.ok, `screen ${r.value} after ${r.ms} ms`);
  }
  await ctx.close();
}

// amy's mute and camera buttons, as ben's tile of amy shows them; then ben still decodes amy's new camera track.
async function controls(amy, ben) {
  const tile = '.tile[data-identity="amy"]';
  await amy.click('#mute');
  const muted = await until(() => ben.locator(`${tile} .label`).textContent(), (t) => /muted/.test(t || ''), EVENT_MS);
  check('app: amy mutes, and ben\'s tile of her says muted', muted.ok, `label "${muted.value}" after ${muted.ms} ms`);
  await amy.click('#mute');
  const unmuted = await until(() => ben.locator(`${tile} .label`).textContent(), (t) => t === 'amy', EVENT_MS);
  check('app: amy unmutes, and the label clears', unmuted.ok, `label "${unmuted.value}" after ${unmuted.ms} ms`);
  await amy.click('#camera');
  const off = await until(() => ben.locator(tile).getAttribute('class'), (c) => /no-video/.test(c || ''), EVENT_MS);
  check('app: amy turns her camera off, and ben\'s tile shows her avatar', off.ok, `class "${off.value}" after ${off.ms} ms`);
  const before = ((await media(ben, 'app')).participants.amy || {}).framesDecoded || 0;
  await amy.click('#camera');
  const on = await until(() => ben.locator(tile).getAttribute('class'), (c) => !/no-video/.test(c || ''), EVENT_MS);
  check('app: amy turns it back on, and the tile shows video again', on.ok, `class "${on.value}" after ${on.ms} ms`);
  const r = await until(() => media(ben, 'app'), (m) => receives(m, ['amy'], 0, before + FRAMES), MEDIA_MS, 500);
  check('app: ben decodes amy\'s camera again', r.ok, `${fmtMedia(r.value)}; ${before} frames before`);
}

async function twoTabsAndDrop(alice, bob1, bob2, bobCtx) {
  const id = await alice.evaluate(() => T.place(['bob'], false));
  const [c1, c2] = [await incoming('two tabs: bob tab 1 rings', bob1), await incoming('two tabs: bob tab 2 rings', bob2)];
  check('two tabs: both tabs ring for the same call', c1 === id && c2 === id, `alice ${id}, tabs ${c1} ${c2}`);
  await expectEvent('two tabs: alice hears ringing', alice, 'ringing', id);
  await act(bob1, 'accept', id);
  await expectEvent('two tabs: tab 2 hears answered elsewhere', bob2, 'answered_elsewhere', id);
  await expectEvent('two tabs: alice hears accepted', alice, 'accepted', id, (e) => e.device === 'tab1');
  await expectMedia('two tabs', [alice, bob1], [['bob'], ['alice']], 0, id);

  // Offline for 3 s: the page's sockets drop and its ICE restarts when the network is back.
  const before = await media(alice, id);
  await bobCtx.setOffline(true);
  await new Promise((r) => setTimeout(r, 3000));
  await bobCtx.setOffline(false);
  await expectEvent('drop: bob\'s call emits reconnecting', bob1, 'reconnecting', id);
  const back = await expectEvent('drop: bob\'s call emits reconnected', bob1, 'reconnected', id, () => true, 20_000);
  await expectEvent('drop: bob\'s call-control session resumes', bob1, 'client_reconnected', null, () => true, 20_000);
  const base = (before.participants.bob || {}).audioPackets || 0;
  const r = await until(() => media(alice, id), (m) => receives(m, ['bob'], base + 2 * AUDIO, 0), MEDIA_MS, 500);
  check('drop: alice receives bob\'s audio again after the resume', r.ok,
    `${fmtMedia(r.value)}; before the drop ${base} packets; reconnected ${back ? back.ms : '?'} ms after it began`);
  const r2 = await until(() => media(bob1, id), (m) => receives(m, ['alice'], AUDIO, 0), MEDIA_MS, 500);
  check('drop: bob receives alice\'s audio after the resume', r2.ok, fmtMedia(r2.value));

  await socketsDrop(alice, bob1, id);
  await act(alice, 'hangup', id);
  await expectEvent('hangup: alice ended', alice, 'ended', id, (e) => e.reason === 'hangup');
  await expectEvent('hangup: bob ended (hangup)', bob1, 'ended', id, (e) => e.reason === 'hangup');
}

// Each of bob's two sockets closes on its own (as a proxy or a NAT drops one): the SDK resumes that layer alone,
// and the call goes on.
async function socketsDrop(alice, bob1, id) {
  const count = async (type, call) => (await ev(bob1, type, call)).length;
  const [rooms, controls] = [await count('reconnected', id), await count('client_reconnected', null)];
  await bob1.evaluate((i) => T.call(i).room.ws.close(), id);
  const r = await until(() => count('reconnected', id), (n) => n > rooms, EVENT_MS);
  check('socket drop: the room socket closes, and the call resumes the room', r.ok, `after ${r.ms} ms`);
  await bob1.evaluate(() => T.client.ws.close());
  const c = await until(() => count('client_reconnected', null), (n) => n > controls, EVENT_MS);
  check('socket drop: the call-control socket closes, and the session resumes', c.ok, `after ${c.ms} ms`);
  const base = ((await media(alice, id)).participants.bob || {}).audioPackets || 0;
  const m = await until(() => media(alice, id), (x) => receives(x, ['bob'], base + AUDIO, 0), MEDIA_MS, 500);
  check('socket drop: alice still receives bob\'s audio', m.ok, `${fmtMedia(m.value)}; ${base} packets before`);
  const st = await bob1.evaluate((i) => T.call(i).state, id);
  check('socket drop: bob\'s call is active', st === 'active', `state ${st}`);
}

async function decline(alice, bob1, bob2) {
  const id = await alice.evaluate(() => T.place(['bob'], false));
  await incoming('decline: bob tab 1 rings', bob1);
  await incoming('decline: bob tab 2 rings', bob2);
  await act(bob2, 'decline', id);
  await expectEvent('decline: alice hears declined', alice, 'declined', id, (e) => e.user === 'bob');
  await expectEvent('decline: alice\'s call ends (declined)', alice, 'ended', id, (e) => e.reason === 'declined');
  await expectEvent('decline: bob\'s other tab stops ringing', bob1, 'ended', id);
}

async function noAnswer(alice, carol) {
  const id = await alice.evaluate(() => T.place(['carol'], false));
  await incoming('no answer: carol rings', carol);
  const limit = (RING_SECS + 5) * 1000;
  const e = await expectEvent('no answer: alice\'s call ends (no_answer)', alice, 'ended', id,
    (x) => x.reason === 'no_answer', limit);
  await expectEvent('no answer: carol\'s ringing ends (no_answer)', carol, 'ended', id,
    (x) => x.reason === 'no_answer', limit);
  const placed = (await ev(alice, 'ringing', id))[0];
  if (e && placed) {
    const s = (e.t - placed.t) / 1000;
    check('no answer: the ring lasted the ring timeout', s > RING_SECS - 1.5 && s < RING_SECS + 3,
      `${s.toFixed(1)} s of ringing, timeout ${RING_SECS} s`);
  }
}

async function group(alice, bob1, bob2, carol) {
  const id = await alice.evaluate(() => T.place(['bob', 'carol'], true));
  await incoming('group: bob rings', bob1);
  await incoming('group: carol rings', carol);
  await act(bob1, 'accept', id);
  await act(carol, 'accept', id);
  await expectEvent('group: bob tab 2 hears answered elsewhere', bob2, 'answered_elsewhere', id);
  const seen = await expectMedia('group', [alice, bob1, carol],
    [['bob', 'carol'], ['alice', 'carol'], ['alice', 'bob']], FRAMES, id);
  await until(() => media(alice, id), (m) => m.participants && Object.values(m.participants).every((p) => p.mos), 5000);
  const m = await media(alice, id);
  const mos = Object.values(m.participants || {}).map((p) => p.mos);
  check('group: the SDK rates each participant with an E-model MOS >= 4 on loopback',
    mos.length === 2 && mos.every((x) => x >= 4 && x <= 4.5), `alice's readings: ${JSON.stringify(mos)}`);
  const codecs = seen.flatMap((s) => Object.values((s && s.participants) || {}).flatMap((p) => p.codecs));
  check('group: codecs are audio/opus and VP8 or H264', codecs.includes('audio/opus')
    && codecs.some((c) => c === 'video/VP8' || c === 'video/H264'), [...new Set(codecs)].join(', '));
  await act(alice, 'hangup', id);
  await expectEvent('group: bob stays after alice leaves', bob1, 'left', id, (e) => e.user === 'alice');
  await act(bob1, 'hangup', id);
  await expectEvent('group: the call ends for carol when only she is left', carol, 'ended', id);
}

async function relay() {
  const ctx = await browser.newContext();
  const rita = await harness(ctx, 'rita', 'web', true);
  const rob = await harness(ctx, 'rob', 'web', true);
  const id = await rita.evaluate(() => T.place(['rob'], false));
  await incoming('relay: rob rings', rob);
  await act(rob, 'accept', id);
  const got = await expectMedia('relay', [rita, rob], [['rob'], ['rita']], 0, id);
  check('relay: both pages use relay candidates', got.every((m) => m && m.localCandidate === 'relay'),
    got.map((m) => m && m.localCandidate).join(', '));
  await act(rita, 'hangup', id);
  await expectEvent('relay: rob ended', rob, 'ended', id);
  await ctx.close();
}

try {
  await appScenario();
  const aliceCtx = await browser.newContext();
  const bobCtx = await browser.newContext();
  const carolCtx = await browser.newContext();
  const alice = await harness(aliceCtx, 'alice', 'web');
  const bob1 = await harness(bobCtx, 'bob', 'tab1');
  const bob2 = await harness(bobCtx, 'bob', 'tab2');
  const carol = await harness(carolCtx, 'carol', 'web');
  await twoTabsAndDrop(alice, bob1, bob2, bobCtx);
  await decline(alice, bob1, bob2);
  await noAnswer(alice, carol);
  await group(alice, bob1, bob2, carol);
  await aliceCtx.close();
  await bobCtx.close();
  await carolCtx.close();
  await relay();
} catch (err) {
  check('sdk driver', false, `exception: ${err && err.stack || err}`);
} finally {
  await browser.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(results.failed > 0 ? 1 : 0);
