// Browser end-to-end test of the hualu TURN relay (RFC 8656), driven by playwright-core with Debian's Chromium.
//
// Run by tests/browser/run inside a loopback-only network namespace, with the relay already listening.
// Environment (all set by ./run):
//   TURN_PORT       UDP and TCP port of the relay on 127.0.0.1
//   TURN_USER       static user in [turn.users]           TURN_PASSWORD  its password
//   TURN_REST_SECRET a secret from turn.rest_secrets      TURN_REST_USER the user part of REST usernames
//   CHROMIUM        the browser (default /usr/bin/chromium)
// Prints one `PASS name: figures` or `FAIL name: figures` line per assertion; exits 1 when any failed (./run
// counts those lines and prints the `N passed, N failed` summary).

import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { check, env, fmtCand, PAGE_PRELUDE, results } from './common.mjs';

const TURN_PORT = Number(env('TURN_PORT'));
const TURN_USER = env('TURN_USER');
const TURN_PASSWORD = env('TURN_PASSWORD');
const REST_SECRET = env('TURN_REST_SECRET');
const REST_USER = env('TURN_REST_USER', 'alice');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

// Bounds on every wait, in milliseconds.
const CALL_TIMEOUT_MS = 25_000; // media flowing through the relay, measured from the offer
const GATHER_TIMEOUT_MS = 15_000; // ICE gathering with a refused credential
const PAGE_TIMEOUT_MS = 60_000; // any single page.evaluate

// Thresholds: about three seconds of media, not a single stray packet. The page polls getStats() until all
// are met (or CALL_TIMEOUT_MS passes), so a slow machine takes longer instead of failing.
const MIN_AUDIO_PACKETS = 125; // opus at 20 ms: 2.5 s
const MIN_VIDEO_PACKETS = 60; // VP8 at 320x240 15 fps: about 2 s
const MIN_FRAMES_DECODED = 40; // 2.7 s at 15 fps
// Loopback loses nothing; allow a little for a loaded machine.
const maxLost = (received) => Math.max(5, Math.ceil(received * 0.05));

// ---------------------------------------------------------------- the page (runs in Chromium)

const PAGE = String.raw`<!doctype html>
<meta charset="utf-8">
<title>hualu TURN relay test</title>
<script>
'use strict';
${PAGE_PRELUDE}
function inbound(report, kind) {
  let out = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === kind) {
      const codec = s.codecId && report.get(s.codecId);
      out = { packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0, bytesReceived: s.bytesReceived || 0,
        framesDecoded: s.framesDecoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight,
        mimeType: codec ? codec.mimeType : undefined };
    }
  });
  return out;
}

function watch(pc, log) {
  pc.addEventListener('icecandidate', (e) => {
    if (e.candidate && e.candidate.candidate) {
      log.candidates.push({ type: e.candidate.type, protocol: e.candidate.protocol, address: e.candidate.address,
        port: e.candidate.port, relayProtocol: e.candidate.relayProtocol, url: e.candidate.url });
    }
  });
  pc.addEventListener('icecandidateerror', (e) => {
    log.errors.push({ errorCode: e.errorCode, errorText: e.errorText, url: e.url, address: e.address, port: e.port });
  });
}

// One call between two peer connections in this page, both forced through the relay.
async function runCall({ iceServers, timeoutMs, minAudioPackets, minVideoPackets, minFramesDecoded }) {
  const t0 = performance.now();
  const config = { iceServers, iceTransportPolicy: 'relay' };
  const caller = new RTCPeerConnection(config);
  const callee = new RTCPeerConnection(config);
  const logs = { caller: { candidates: [], errors: [] }, callee: { candidates: [], errors: [] } };
  watch(caller, logs.caller);
  watch(callee, logs.callee);
  const addTo = (pc) => (e) => { if (e.candidate) pc.addIceCandidate(e.candidate).catch((err) => logs.addErrors.push(String(err))); };
  logs.addErrors = [];
  caller.addEventListener('icecandidate', addTo(callee));
  callee.addEventListener('icecandidate', addTo(caller));
  const states = [];
  caller.addEventListener('connectionstatechange', () => states.push('caller:' + caller.connectionState));
  callee.addEventListener('connectionstatechange', () => states.push('callee:' + callee.connectionState));
  const result = { timedOut: false, logs, states };
  try {
    const stream = await media();
    for (const track of stream.getTracks()) caller.addTrack(track, stream);
    await caller.setLocalDescription();
    await callee.setRemoteDescription(caller.localDescription);
    await callee.setLocalDescription();
    await caller.setRemoteDescription(callee.localDescription);
    const tOffer = performance.now();

    // Poll until every threshold is met, bounded by timeoutMs.
    for (;;) {
      const [rx, tx] = await Promise.all([callee.getStats(), caller.getStats()]);
      result.audio = inbound(rx, 'audio');
      result.video = inbound(rx, 'video');
      result.calleePair = selectedPair(rx);
      result.callerPair = selectedPair(tx);
      const relayed = (p) => p && p.local && p.remote && p.local.candidateType === 'relay' && p.remote.candidateType === 'relay';
      const done = result.audio && result.audio.packetsReceived >= minAudioPackets &&
        result.video && result.video.packetsReceived >= minVideoPackets &&
        (result.video.framesDecoded || 0) >= minFramesDecoded &&
        relayed(result.calleePair) && relayed(result.callerPair);
      if (done) break;
      if (caller.connectionState === 'failed' || callee.connectionState === 'failed') { result.failedEarly = true; break; }
      if (performance.now() - tOffer > timeoutMs) { result.timedOut = true; break; }
      await sleep(250);
    }
    result.connectionState = { caller: caller.connectionState, callee: callee.connectionState };
    result.iceConnectionState = { caller: caller.iceConnectionState, callee: callee.iceConnectionState };
    result.mediaMs = Math.round(performance.now() - tOffer);
  } catch (err) {
    result.exception = String(err && err.stack || err);
  } finally {
    caller.close();
    callee.close();
  }
  result.totalMs = Math.round(performance.now() - t0);
  return result;
}

// One peer connection gathering through the relay with a credential the relay must refuse.
async function runGatherOnly({ iceServers, timeoutMs, errorGraceMs }) {
  const t0 = performance.now();
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: 'relay' });
  const log = { candidates: [], errors: [] };
  watch(pc, log);
  const result = { log, gatheringComplete: false, timedOut: false };
  try {
    const complete = new Promise((resolve) => {
      const check = () => { if (pc.iceGatheringState === 'complete') resolve(); };
      pc.addEventListener('icegatheringstatechange', check);
      pc.addEventListener('icecandidate', (e) => { if (!e.candidate) resolve(); });
    });
    pc.addTransceiver('audio');
    await pc.setLocalDescription();
    result.gatheringComplete = await Promise.race([complete.then(() => true), sleep(timeoutMs).then(() => false)]);
    result.timedOut = !result.gatheringComplete;
    // The error event may trail the end of gathering by a moment: wait for it, bounded.
    const deadline = performance.now() + errorGraceMs;
    while (log.errors.length === 0 && performance.now() < deadline) await sleep(100);
    result.iceGatheringState = pc.iceGatheringState;
  } catch (err) {
    result.exception = String(err && err.stack || err);
  } finally {
    pc.close();
  }
  result.totalMs = Math.round(performance.now() - t0);
  return result;
}
</script>
<p>hualu TURN relay test page</p>
`;

// ---------------------------------------------------------------- the driver (runs in node)



// TURN REST API credential: username "<unix expiry>:<user>", password base64(HMAC-SHA1(secret, username)).
// A negative ttlSecs gives one that expired that long ago.
function restCredential(secret, user, ttlSecs) {
  const username = `${Math.floor(Date.now() / 1000) + ttlSecs}:${user}`;
  const credential = createHmac('sha1', secret).update(username).digest('base64');
  return { username, credential };
}

async function callScenario(page, name, iceServer, expectRelayProtocol) {
  const r = await page.evaluate((args) => runCall(args), {
    iceServers: [iceServer], timeoutMs: CALL_TIMEOUT_MS,
    minAudioPackets: MIN_AUDIO_PACKETS, minVideoPackets: MIN_VIDEO_PACKETS, minFramesDecoded: MIN_FRAMES_DECODED,
  });
  const a = r.audio || {};
  const v = r.video || {};
  const gathered = (log) => log.candidates.map((c) => `${c.type}/${c.relayProtocol || c.protocol}`).join(',') || 'none';
  console.log(`---- ${name}: ${iceServer.urls.join(' ')} user=${iceServer.username} ` +
    `(${r.timedOut ? 'TIMED OUT after' : r.failedEarly ? 'connection FAILED after' : 'thresholds met in'} ${r.mediaMs} ms, ${r.totalMs} ms in all)`);
  console.log(`     gathered: caller ${gathered(r.logs.caller)}; callee ${gathered(r.logs.callee)}; ` +
    `states ${r.states.join(' ') || 'none'}`);
  const errs = [...r.logs.caller.errors, ...r.logs.callee.errors];
  if (errs.length) console.log(`     icecandidateerror: ${JSON.stringify(errs)}`);
  if (r.logs.addErrors.length) console.log(`     addIceCandidate errors: ${r.logs.addErrors.join('; ')}`);
  if (r.exception) console.log(`     exception in page: ${r.exception}`);

  check(`${name} no page exception`, !r.exception, r.exception || 'none');
  check(`${name} audio inbound-rtp`, (a.packetsReceived || 0) >= MIN_AUDIO_PACKETS,
    `packetsReceived=${a.packetsReceived ?? 'none'} (need >= ${MIN_AUDIO_PACKETS}) packetsLost=${a.packetsLost ?? '-'} ` +
    `bytes=${a.bytesReceived ?? '-'} codec=${a.mimeType ?? '-'}`);
  check(`${name} video inbound-rtp`, (v.packetsReceived || 0) >= MIN_VIDEO_PACKETS,
    `packetsReceived=${v.packetsReceived ?? 'none'} (need >= ${MIN_VIDEO_PACKETS}) packetsLost=${v.packetsLost ?? '-'} ` +
    `bytes=${v.bytesReceived ?? '-'} codec=${v.mimeType ?? '-'}`);
  check(`${name} packetsLost small`, r.audio && r.video && (a.packetsLost || 0) <= maxLost(a.packetsReceived || 0) &&
    (v.packetsLost || 0) <= maxLost(v.packetsReceived || 0),
  `audio lost ${a.packetsLost ?? '-'} of ${a.packetsReceived ?? '-'}, video lost ${v.packetsLost ?? '-'} of ${v.packetsReceived ?? '-'} ` +
    `(allowed max(5, 5%))`);
  check(`${name} video framesDecoded`, (v.framesDecoded || 0) >= MIN_FRAMES_DECODED,
    `framesDecoded=${v.framesDecoded ?? 'none'} (need >= ${MIN_FRAMES_DECODED}) size=${v.frameWidth ?? '-'}x${v.frameHeight ?? '-'}`);
  for (const [side, p] of [['callee', r.calleePair], ['caller', r.callerPair]]) {
    const ok = !!p && p.local?.candidateType === 'relay' && p.remote?.candidateType === 'relay' &&
      (p.local?.relayProtocol || '') === expectRelayProtocol;
    check(`${name} ${side} selected pair relay<->relay over ${expectRelayProtocol}`, ok,
      p ? `local ${fmtCand(p.local)} remote ${fmtCand(p.remote)} state=${p.state} ` +
        `sent=${p.bytesSent} recv=${p.bytesReceived} rtt=${p.currentRoundTripTime ?? '-'}` : 'no selected candidate pair');
  }
}

async function refusedScenario(page, name, iceServer) {
  const r = await page.evaluate((args) => runGatherOnly(args), {
    iceServers: [iceServer], timeoutMs: GATHER_TIMEOUT_MS, errorGraceMs: 5_000,
  });
  const codes = r.log.errors.map((e) => `${e.errorCode} "${e.errorText}" ${e.url}`);
  console.log(`---- ${name}: ${iceServer.urls.join(' ')} user=${iceServer.username} (${r.totalMs} ms)`);
  if (r.exception) console.log(`     exception in page: ${r.exception}`);
  check(`${name} no page exception`, !r.exception, r.exception || 'none');
  check(`${name} gathering completes`, r.gatheringComplete,
    `iceGatheringState=${r.iceGatheringState}${r.timedOut ? ` (not complete after ${GATHER_TIMEOUT_MS} ms)` : ''}`);
  check(`${name} icecandidateerror 401`, r.log.errors.some((e) => e.errorCode === 401),
    `errors: ${codes.join('; ') || 'none'}`);
  const relays = r.log.candidates.filter((c) => c.type === 'relay');
  check(`${name} no relay candidate`, relays.length === 0,
    `relay candidates=${relays.length} all candidates: ${r.log.candidates.map((c) => `${c.type} ${c.address}:${c.port}`).join(', ') || 'none'}`);
}

async function main() {
  const server = createServer((req, res) => {
    if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
    } else if (req.url === '/favicon.ico') {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  const origin = `http://127.0.0.1:${server.address().port}`;

  const userDataDir = mkdtempSync(join(tmpdir(), 'hualu-chromium-'));
  let context;
  try {
    const t0 = Date.now();
    // launchPersistentContext passes --user-data-dir=<userDataDir>, a fresh empty folder.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: false, // the headless mode is chosen by --headless=new below
      timeout: 30_000,
      args: [
        '--headless=new', '--no-sandbox', '--disable-gpu',
        '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
        '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
        '--disable-quic', '--allow-loopback-in-peer-connection',
      ],
    });
    const page = context.pages()[0] ?? await context.newPage();
    page.setDefaultTimeout(PAGE_TIMEOUT_MS);
    page.on('console', (m) => { if (m.type() === 'error') console.log(`     [page console] ${m.text()}`); });
    page.on('pageerror', (e) => console.log(`     [page error] ${e}`));
    await page.goto(origin + '/', { timeout: 15_000 });
    console.log(`     chromium ${context.browser()?.version() ?? ''} up and page loaded in ${Date.now() - t0} ms (${origin})`);

    const udp = [`turn:127.0.0.1:${TURN_PORT}?transport=udp`];
    const tcp = [`turn:127.0.0.1:${TURN_PORT}?transport=tcp`];
    const rest = restCredential(REST_SECRET, REST_USER, 3600);

    const scenarios = [
      ['udp static-user', () => callScenario(page, 'udp static-user', { urls: udp, username: TURN_USER, credential: TURN_PASSWORD }, 'udp')],
      ['udp rest-credential', () => callScenario(page, 'udp rest-credential', { urls: udp, ...rest }, 'udp')],
      ['tcp static-user', () => callScenario(page, 'tcp static-user', { urls: tcp, username: TURN_USER, credential: TURN_PASSWORD }, 'tcp')],
      ['udp wrong-password', () => refusedScenario(page, 'udp wrong-password', { urls: udp, username: TURN_USER, credential: TURN_PASSWORD + '-wrong' })],
      ['udp expired-rest-credential', () => refusedScenario(page, 'udp expired-rest-credential', { urls: udp, ...restCredential(REST_SECRET, REST_USER, -60) })],
    ];
    for (const [name, run] of scenarios) {
      const t = Date.now();
      try {
        await run();
      } catch (err) {
        check(`${name} ran`, false, String(err && err.stack || err));
      }
      console.log(`     ${name} took ${Date.now() - t} ms`);
    }
  } finally {
    if (context) await context.close().catch(() => {});
    server.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

// A hard upper bound on the whole driver, whatever hangs.
const watchdog = setTimeout(() => {
  check('driver finished in time', false, 'the browser run exceeded 150 s');
  process.exit(1);
}, 150_000);
watchdog.unref();

try {
  await main();
} catch (err) {
  check('driver', false, String(err && err.stack || err));
}
// ./run counts the PASS/FAIL lines and prints the `N passed, N failed` summary.
process.exit(results.failed === 0 && results.passed > 0 ? 0 : 1);
