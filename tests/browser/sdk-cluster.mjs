// Browser end-to-end test of the SDK following call control's `move` in cluster mode, in headless Chromium.
// This driver starts the cluster itself, inside ./run's network namespace: a redis-server on a Unix socket (no
// persistence), two `hualu sfu` nodes (sfu-a, sfu-b: heartbeat 500 ms, dead after 1500 ms, drain deadline 3 s)
// and one `hualu signaling` in cluster mode. Signaling runs with `dev = true`, so it serves the demo app (the
// harness page) and /dev/token; the SFU nodes verify the room tokens it mints with the same API key.
//   drain  alice calls bob (audio); both receive. The node hosting the room (from the `join` event's sfu_url)
//          gets SIGTERM: audio goes on until the drain deadline, then both pages get `reconnecting` (cause
//          moved, reason node_drained) and `reconnected` (moved), and audio flows both ways on the other node;
//          the call never ends. The drained node exits by itself, with status 0. Alice hangs up.
//   kill   a third node (sfu-c) joins; a second call; its node gets SIGKILL: once call control counts it dead
//          both pages move (reason node_lost) and audio flows again; prints the time from the kill to audio.
//          Then alice's page is handed its last `move` twice in a row (injected into the SDK: a second move
//          that comes while the first one's room is still joining); the call follows it and stays up.
// At the end every process gets SIGTERM and must exit with status 0.
//
// Environment (set by ./run):
//   SERVER_BIN   the hualu binary (not HUALU_*: hualu would read that as a config key)
//   CLUSTER_DIR  where the configs, the Redis socket and the logs go
//   API_KEY, API_SECRET   the cluster's API key
//   CHROMIUM     the browser (default /usr/bin/chromium)
// Prints PASS/FAIL lines, and the processes' logs when any failed; exits 1 when any failed.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { check, env, results } from './common.mjs';
import { HARNESS, fmtMedia, receives, until } from './sdk-common.mjs';

const BIN = env('SERVER_BIN');
const DIR = env('CLUSTER_DIR');
const API_KEY = env('API_KEY');
const API_SECRET = env('API_SECRET');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

const HEARTBEAT_MS = 500;
const DEAD_AFTER_MS = 1500;
const DRAIN_SECS = 3;
// After its deadline a draining node waits this long at most for its rooms to empty (src/serve.rs MOVE_GRACE).
const MOVE_GRACE_SECS = 10;
const EVENT_MS = 10_000; // a signaling event reaching a page
const MEDIA_MS = 20_000; // media from the other participant
const AUDIO = 50; // 1 s of Opus

// Ports inside the namespace, clear of ./run's `hualu up` (17880-17883, 19478, 34780, 40000-40999) and of the
// ephemeral range (41000-60999). Node i: HTTP (/rtc) 17900+10i, media 17902+10i (udp and ICE-TCP, one shard),
// metrics 19480+i. Signaling: HTTP 17930, metrics 19489.
const NODES = ['sfu-a', 'sfu-b', 'sfu-c'].map((id, i) => ({
  id, http: 17900 + 10 * i, media: 17902 + 10 * i, metrics: 19480 + i, url: `ws://127.0.0.1:${17900 + 10 * i}/rtc`,
}));
const SIGNALING = { id: 'signaling', http: 17930, metrics: 19489 };
const APP_URL = `http://127.0.0.1:${SIGNALING.http}/`;
const REDIS_SOCK = join(DIR, 'redis.sock');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
mkdirSync(DIR, { recursive: true });

// ------------------------------------------------------------------ the processes

const procs = []; // every process started here: { name, child, log, exit (promise), exited }

function start(name, cmd, args) {
  const log = join(DIR, `${name}.log`);
  const fd = openSync(log, 'a');
  // HUALU_* from the caller would override the config files.
  const penv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HUALU_')));
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: penv });
  const p = { name, child, log, exited: null, started: Date.now() };
  p.exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    p.exited = { code, signal, at: Date.now() };
    resolve(p.exited);
  }));
  child.on('error', (err) => console.log(`  [${name}] could not start: ${err.message}`));
  procs.push(p);
  return p;
}

// The config shared by every hualu process, and each one's own part.
const common = (self, extra) => `[log]
level = "info,hualu_cluster=debug,hualu_signaling=debug"

[metrics]
listen = "127.0.0.1:${self.metrics}"

[http]
listen = "127.0.0.1:${self.http}"

[auth.api_keys]
${API_KEY} = "${API_SECRET}"

[cluster]
redis_url = "unix://${REDIS_SOCK}"
node_id = "${self.id}"
heartbeat_ms = ${HEARTBEAT_MS}
dead_after_ms = ${DEAD_AFTER_MS}
drain_deadline_secs = ${DRAIN_SECS}
${extra}`;

function hualu(self, command, toml) {
  const path = join(DIR, `${self.id}.toml`);
  writeFileSync(path, toml);
  const p = start(self.id, BIN, [command, '--config', path]);
  self.proc = p;
  return p;
}

const startNode = (node) => hualu(node, 'sfu', common(node, `
[sfu]
shards = 1
listen_ip = "127.0.0.1"
udp_port = ${node.media}
tcp_port = ${node.media}
`));

// `dev = true` (there is no `signaling --dev` flag): the demo app at / and /dev/token. A TURN user so that dev
// mode generates no TURN REST secret: this cluster has no TURN relay, and joins then list no ICE servers.
const startSignaling = () => hualu(SIGNALING, 'signaling', `dev = true
${common(SIGNALING, `
[signaling]
ring_timeout_secs = 20

[turn.users]
unused = "this-cluster-has-no-turn-relay"
`)}`);

async function httpGet(port, path) {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2000) });
  return { status: r.status, body: await r.text() };
}

// Waits for `self`'s /readyz; false if it exited or did not answer 200 within 20 s.
async function ready(self) {
  const r = await until(async () => {
    if (self.proc.exited) return 'exited';
    return (await httpGet(self.metrics, '/readyz')).status;
  }, (v) => v === 200 || v === 'exited', 20_000, 100);
  return r.value === 200 ? r.ms : null;
}

// The live SFU nodes call control counts (the sum of hualu_cluster_nodes).
async function nodeCount() {
  const { body } = await httpGet(SIGNALING.metrics, '/metrics');
  let sum = null;
  for (const line of body.split('\n')) {
    const name = line.split(/[{ ]/)[0];
    if (name === 'hualu_cluster_nodes') sum = (sum || 0) + Number(line.trim().split(/\s+/).pop());
  }
  return sum;
}

async function expectNodes(name, n) {
  const r = await until(nodeCount, (v) => v === n, 15_000, 100);
  check(name, r.ok, `hualu_cluster_nodes ${r.value} after ${r.ms} ms`);
  return r.ok;
}

function tail(p, lines) {
  let text = '';
  try { text = readFileSync(p.log, 'utf8'); } catch { /* none */ }
  const all = text.replace(/\x1b\[[0-9;]*m/g, '').split('\n');
  return all.slice(-lines - 1).join('\n');
}

async function stopAll() {
  const live = procs.filter((p) => !p.exited);
  for (const p of live) p.child.kill('SIGTERM');
  const t0 = Date.now();
  await Promise.race([Promise.all(live.map((p) => p.exit)), sleep(8000)]);
  for (const p of live) if (!p.exited) p.child.kill('SIGKILL');
  await Promise.race([Promise.all(live.map((p) => p.exit)), sleep(3000)]);
  return { live, ms: Date.now() - t0 };
}

// ------------------------------------------------------------------ the pages

// What the cluster test adds to the harness: `moved` on `reconnected`, and the SDK's `participant_left`.
const HARNESS_EXTRA = String.raw`
T.watchCall = ((orig) => function (call) {
  orig.call(this, call);
  call.on('reconnected', (e) => {
    const last = this.events.filter((x) => x.call === call.id && x.type === 'reconnected').pop();
    if (last) last.moved = !!(e && e.moved);
  });
  call.on('participant_left', (e) => this.events.push({ t: Math.round(performance.now()), call: call.id,
    type: 'participant_left', user: e.participant && e.participant.identity }));
})(T.watchCall);
`;

let browser;
const consoleLines = [];
async function harness(context, user, device) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`  [${user}/${device}] page error: ${e.message}`));
  // The old room's failed resume attempts on a killed node are expected: the console is shown on failure only.
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') consoleLines.push(`[${user}/${device}] ${m.type()}: ${m.text().slice(0, 300)}`);
  });
  await page.goto(APP_URL);
  await page.evaluate(HARNESS);
  await page.evaluate(HARNESS_EXTRA);
  await page.evaluate(([u, d]) => T.start(u, d, false), [user, device]);
  page.label = `${user}/${device}`;
  page.origin = await page.evaluate(() => performance.timeOrigin);
  return page;
}

const ev = (page, type, id) => page.evaluate(([t, i]) => T.seen(t, i), [type, id]);
const media = (page, id) => page.evaluate((i) => T.media(i), id);
const act = (page, what, id) => page.evaluate(([w, i]) => T.act(w, i), [what, id]);
const roomUrl = (page, id) => page.evaluate((i) => { const j = T.call(i).joinInfo; return j && j.sfu_url; }, id);
const callState = (page, id) => page.evaluate((i) => { const c = T.calls.get(i); return c ? c.state : 'none'; }, id);
// A page event's time on this machine's clock (ms since the epoch).
const at = (page, e) => Math.round(page.origin + e.t);
// The page's last events for call `id`, for FAIL lines.
const recent = async (page, id) => JSON.stringify(await page.evaluate((i) => T.events.filter((e) => e.call === i)
  .slice(-8).map(({ t, call, ...rest }) => rest), id).catch(() => [])).slice(0, 600);

async function expectEvent(name, page, type, id, pred = () => true, ms = EVENT_MS) {
  const r = await until(() => ev(page, type, id), (es) => Array.isArray(es) && es.some(pred), ms);
  const e = r.ok ? r.value.find(pred) : undefined;
  check(name, r.ok, r.ok ? `${page.label} got ${type}${e.reason ? ` (${e.reason})` : ''} after ${r.ms} ms`
    : `${page.label} saw no such ${type} within ${ms} ms; recent events ${await recent(page, id)}`);
  return e;
}

async function expectMedia(name, pages, from, id, audio = AUDIO) {
  return Promise.all(pages.map(async (p, i) => {
    const r = await until(() => media(p, id), (m) => receives(m, from[i], audio, 0), MEDIA_MS, 250);
    check(`${name}: ${p.label} receives ${from[i].join(', ')}'s audio`, r.ok, `${fmtMedia(r.value)} after ${r.ms} ms`
      + (r.ok ? '' : `; recent events ${await recent(p, id)}`));
    return r.ok;
  }));
}

// alice calls bob, bob accepts, both receive; gives the call id and the node hosting its room.
async function answeredCall(name, alice, bob) {
  const id = await alice.evaluate(() => T.place(['bob'], false));
  const inc = await expectEvent(`${name}: bob rings`, bob, 'incoming');
  await bob.evaluate(() => { T.events = T.events.filter((x) => x.type !== 'incoming'); });
  if (!inc || inc.call !== id) throw new Error(`${name}: bob did not ring for call ${id}`);
  await act(bob, 'accept', id);
  await expectMedia(name, [alice, bob], [['bob'], ['alice']], id);
  const urls = [await roomUrl(alice, id), await roomUrl(bob, id)];
  const node = NODES.find((n) => n.url === urls[0]);
  check(`${name}: both pages joined the room on one cluster node`, !!node && urls[0] === urls[1],
    `${urls.join(', ')} (${node ? node.id : 'no known node'})`);
  if (!node) throw new Error(`${name}: the room is on no known node`);
  return { id, node };
}

// After a move of call `id` to `to`: each page's `reconnecting` (moved, `reason`) and `reconnected` (moved), its
// room on `to`, audio again both ways, the call active and not ended. `t0` is when the node was struck; gives
// per page { moveAt, backAt } (ms since `t0`: the move event, the first audio on the new node).
async function followMove(name, pages, id, to, reason, t0, moveWithinMs) {
  const out = await Promise.all(pages.map(async (p) => {
    const isMove = (e) => e.cause === 'moved';
    const mv = await expectEvent(`${name}: ${p.label} gets reconnecting (cause moved)`, p, 'reconnecting', id, isMove,
      moveWithinMs);
    if (mv) {
      check(`${name}: ${p.label}'s move says ${reason}`, mv.reason === reason, `reason ${mv.reason}`);
    }
    const other = p.label.startsWith('alice') ? 'bob' : 'alice';
    // The first audio from the other on the new node, polled every 100 ms.
    const back = await until(async () => ({ url: await roomUrl(p, id), m: await media(p, id) }),
      (v) => v.url === to.url && receives(v.m, [other], 1, 0), MEDIA_MS, 100);
    const backAt = back.ok ? Date.now() - t0 : null;
    const rc = await expectEvent(`${name}: ${p.label} gets reconnected (moved)`, p, 'reconnected', id,
      (e) => e.moved === true);
    check(`${name}: ${p.label}'s room is now on ${to.id}`, back.value && back.value.url === to.url,
      `sfu_url ${back.value && back.value.url}`);
    return { p, mv, rc, backAt, other };
  }));
  await expectMedia(`${name}: on ${to.id}`, pages, out.map((o) => [o.other]), id);
  for (const { p } of out) {
    const st = await callState(p, id);
    const ended = await ev(p, 'ended', id);
    check(`${name}: ${p.label}'s call stays up through the move`, st === 'active' && ended.length === 0,
      `state ${st}, ${ended.length} ended events`);
    const left = await ev(p, 'participant_left', id);
    const other = p.label.startsWith('alice') ? 'bob' : 'alice';
    check(`${name}: ${p.label} gets participant_left for the old room's ${other}`, left.some((e) => e.user === other),
      JSON.stringify(left.map((e) => e.user)));
  }
  return out.map(({ p, mv, rc, backAt }) => ({ label: p.label, moveAt: mv ? at(p, mv) - t0 : null, backAt,
    sdkMs: rc ? rc.ms : null }));
}

const fmtTimes = (ts) => ts.map((x) => `${x.label}: move event at ${x.moveAt} ms, audio back at ${x.backAt} ms `
  + `(SDK reconnected.ms ${x.sdkMs})`).join('; ');

// ------------------------------------------------------------------ the scenarios

async function drain(alice, bob) {
  const { id, node: host } = await answeredCall('drain', alice, bob);
  const to = NODES.slice(0, 2).find((n) => n !== host);
  const t0 = Date.now();
  host.proc.child.kill('SIGTERM');
  // Before the deadline the call stays where it is, and its audio goes on.
  await sleep(DRAIN_SECS * 1000 - 1200);
  const before = await media(alice, id);
  const base = (before.participants.bob || {}).audioPackets || 0;
  const r = await until(() => media(alice, id), (m) => receives(m, ['bob'], base + 25, 0), 1000, 100);
  const url = await roomUrl(alice, id);
  check(`drain: until the deadline the call stays on ${host.id} and audio goes on`, r.ok && url === host.url,
    `${Date.now() - t0} ms after SIGTERM: ${fmtMedia(r.value)} (${base} packets earlier), room ${url}`);
  const times = await followMove('drain', [alice, bob], id, to, 'node_drained', t0, (DRAIN_SECS + 8) * 1000);
  const moves = times.map((x) => x.moveAt).filter((x) => x !== null);
  check(`drain: the rooms move at the drain deadline (${DRAIN_SECS} s)`, moves.length === 2
    && moves.every((x) => x >= DRAIN_SECS * 1000 - 250 && x < DRAIN_SECS * 1000 + 2500), fmtTimes(times));
  const left = (DRAIN_SECS + MOVE_GRACE_SECS + 5) * 1000 - (Date.now() - t0);
  const exit = await Promise.race([host.proc.exit, sleep(Math.max(left, 1000)).then(() => null)]);
  check(`drain: ${host.id} exits by itself once its rooms are empty`, !!exit && exit.code === 0,
    exit ? `exit status ${exit.code}${exit.signal ? ` signal ${exit.signal}` : ''} ${exit.at - t0} ms after SIGTERM`
      : `still running ${Date.now() - t0} ms after SIGTERM`);
  await expectNodes(`drain: call control counts 1 node once ${host.id} is gone`, 1);
  await act(alice, 'hangup', id);
  await expectEvent('drain: alice hangs up the moved call: alice ended', alice, 'ended', id, (e) => e.reason === 'hangup');
  await expectEvent('drain: bob ended (hangup)', bob, 'ended', id, (e) => e.reason === 'hangup');
  return to;
}

async function kill(alice, bob, survivor) {
  const third = NODES[2];
  startNode(third);
  const ms = await ready(third);
  check(`kill: ${third.id} starts`, ms !== null, ms !== null ? `/readyz 200 after ${ms} ms` : tail(third.proc, 20));
  if (!(await expectNodes(`kill: call control counts 2 nodes (${survivor.id}, ${third.id})`, 2))) {
    throw new Error('the third node did not join');
  }
  const { id, node: host } = await answeredCall('kill', alice, bob);
  const to = host === third ? survivor : third;
  const t0 = Date.now();
  host.proc.child.kill('SIGKILL');
  const times = await followMove('kill', [alice, bob], id, to, 'node_lost', t0, DEAD_AFTER_MS + EVENT_MS);
  const back = times.map((x) => x.backAt);
  check(`kill: audio is back both ways after SIGKILL of ${host.id} (dead after ${DEAD_AFTER_MS} ms)`,
    back.every((x) => x !== null), `kill to audio back ${Math.max(...back)} ms; ${fmtTimes(times)}`);
  await moveTwice(alice, bob, id, to);
  await act(bob, 'hangup', id);
  await expectEvent('kill: bob hangs up the moved call: alice ended', alice, 'ended', id);
  await expectEvent('kill: bob ended (hangup)', bob, 'ended', id, (e) => e.reason === 'hangup');
}

// A second move that comes before the first one's join completed (as when the node a room moved to goes too):
// here alice's page gets its last `move` twice in a row (the same node and token). The SDK must leave the room it
// was joining, follow the latest move, and keep the call.
async function moveTwice(alice, bob, id, on) {
  const count = async (p) => (await ev(p, 'reconnected', id)).filter((e) => e.moved).length;
  const before = await count(alice);
  // The second once the first's room socket is open and its `join` is out.
  const stage = await alice.evaluate(async (i) => {
    const m = { ...T.call(i).joinInfo };
    delete m.seq;
    T.client.onMessage({ ...m });
    const first = T.call(i).room;
    const t0 = performance.now();
    while (!(first.ws && first.ws.readyState === WebSocket.OPEN) && performance.now() - t0 < 3000) {
      await new Promise((r) => setTimeout(r, 2));
    }
    const joined = !!first.me;
    T.client.onMessage({ ...m });
    return `second move ${Math.round(performance.now() - t0)} ms after the first, its room ${joined ? 'joined' : 'not joined yet'}`;
  }, id);
  console.log(`     move twice: ${stage}`);
  const r = await until(() => count(alice), (n) => n > before, EVENT_MS);
  check('move twice: alice\'s call follows the second move (reconnected, moved)', r.ok,
    `${r.value - before} more reconnected after ${r.ms} ms; recent events ${await recent(alice, id)}`);
  // Alice's new room counts from 0; bob's keeps counting what he got from alice before.
  const base = ((await media(bob, id)).participants.alice || {}).audioPackets || 0;
  await expectMedia(`move twice: on ${on.id}`, [alice], [['bob']], id);
  const b = await until(() => media(bob, id), (m) => receives(m, ['alice'], base + AUDIO, 0), MEDIA_MS, 250);
  check(`move twice: on ${on.id}: bob/web receives alice's audio`, b.ok, `${fmtMedia(b.value)}; ${base} packets before`);
  const st = await callState(alice, id);
  const ended = await ev(alice, 'ended', id);
  check('move twice: alice\'s call stays up', st === 'active' && ended.length === 0,
    `state ${st}, ended ${JSON.stringify(ended.map((e) => e.reason))}`);
}

// ------------------------------------------------------------------ the run

let profile = null;
try {
  const t0 = Date.now();
  rmSync(REDIS_SOCK, { force: true });
  const redis = start('redis', 'redis-server', ['--port', '0', '--save', '', '--appendonly', 'no',
    '--unixsocket', REDIS_SOCK, '--dir', DIR]);
  const up = await until(() => redis.exited ? 'exited' : existsSync(REDIS_SOCK), (v) => v === true || v === 'exited',
    10_000, 50);
  if (up.value !== true) throw new Error(`redis-server did not open ${REDIS_SOCK}:\n${tail(redis, 20)}`);
  for (const n of NODES.slice(0, 2)) startNode(n);
  startSignaling();
  for (const self of [...NODES.slice(0, 2), SIGNALING]) {
    if ((await ready(self)) === null) throw new Error(`${self.id} was not ready:\n${tail(self.proc, 30)}`);
  }
  const nodes = await expectNodes('cluster ready: redis-server, sfu-a, sfu-b and signaling; call control counts 2 nodes', 2);
  if (!nodes) throw new Error('the cluster did not come up');
  console.log(`     cluster up after ${Date.now() - t0} ms`);

  profile = mkdtempSync(join(tmpdir(), 'hualu-cluster-chromium-'));
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
      '--disable-quic', '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required'],
  });
  const alice = await harness(await browser.newContext(), 'alice', 'web');
  const bob = await harness(await browser.newContext(), 'bob', 'web');
  const t1 = Date.now();
  const survivor = await drain(alice, bob);
  console.log(`     drain scenario took ${Date.now() - t1} ms`);
  const t2 = Date.now();
  await kill(alice, bob, survivor);
  console.log(`     kill scenario took ${Date.now() - t2} ms`);
} catch (err) {
  check('cluster driver', false, `exception: ${err && err.stack || err}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (profile) rmSync(profile, { recursive: true, force: true });
  const { live, ms } = await stopAll();
  const bad = live.filter((p) => !p.exited || p.exited.code !== 0);
  check('cluster stops: every process still running exits with status 0 on SIGTERM', bad.length === 0,
    `${live.map((p) => `${p.name} ${p.exited ? (p.exited.signal || p.exited.code) : 'running'}`).join(', ')} `
    + `after ${ms} ms`);
  if (results.failed > 0) {
    for (const p of procs) {
      console.log(`---- ${p.name} log (last 40 lines of ${p.log})`);
      console.log(tail(p, 40));
    }
    console.log(`---- the pages' console errors and warnings (last 30 of ${consoleLines.length})`);
    console.log(consoleLines.slice(-30).join('\n'));
    console.log('---- end of cluster logs');
  }
}
process.exit(results.failed > 0 ? 1 : 0);
