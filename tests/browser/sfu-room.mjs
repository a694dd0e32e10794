// Browser end-to-end test of the hualu SFU: three headless Chromium pages join one room through `/rtc`
// (docs/protocol.md, "Room signaling: GET /rtc"), each with a small room client written here in page JS, and
// each checks from getStats() that it receives audio and video from both others, and knows their identities.
//   direct  joins one after another; bob holds his first server offer until carol has published, then answers
//           it and sends an offer of his own at once (glare: the server's offer made on that answer is void,
//           and must reach bob before the answer to his offer, so that he ignores it);
//   relay   iceTransportPolicy 'relay' with the `ice_servers` of `joined` (hualu's own TURN), concurrent joins,
//           each page sending an offer of its own right after joined; the selected pair's local candidate is
//           relay. Then carol leaves: the others get participant_left, the server's next offer stops her
//           m-lines, and alice and bob still receive each other.
// Before both, a badly signed token must get 401 before the upgrade.
//
// Run by tests/browser/run inside a loopback-only network namespace, with `hualu up` already listening.
// Environment (all set by ./run):
//   SFU_URL         ws://127.0.0.1:PORT/rtc
//   SFU_API_KEY     a key of [auth.api_keys]      SFU_API_SECRET  its secret (tokens are minted here)
//   TURN_PORT       hualu's TURN port on 127.0.0.1 (what `joined.ice_servers` must point at)
//   CHROMIUM        the browser (default /usr/bin/chromium)
// Prints one `PASS name: figures` or `FAIL name: figures` line per assertion; exits 1 when any failed (./run
// counts those lines and prints the `N passed, N failed` summary).

import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { check, env, fmtCand, PAGE_PRELUDE, results } from './common.mjs';

const SFU_URL = env('SFU_URL');
const API_KEY = env('SFU_API_KEY');
const API_SECRET = env('SFU_API_SECRET');
const TURN_PORT = Number(env('TURN_PORT'));
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

// Bounds on every wait, in milliseconds.
const JOIN_TIMEOUT_MS = 10_000; // socket open to `joined`
const MEDIA_TIMEOUT_MS = 25_000; // every page receiving from both others, measured from the last join
const LEAVE_TIMEOUT_MS = 10_000; // participant_left and the stopping offer at the others
const PAGE_TIMEOUT_MS = 30_000; // any single page.evaluate

// Thresholds per (receiver, sender) pair: about a second of media, not a single stray packet. The driver polls
// until all are met (or MEDIA_TIMEOUT_MS passes), so a slow machine takes longer instead of failing.
const MIN_AUDIO_PACKETS = 50; // opus at 20 ms: 1 s
const MIN_FRAMES_DECODED = 15; // 1 s at 15 fps
// After the leave: the remaining two still receive each other, this much more within AFTER_LEAVE_MS.
const AFTER_LEAVE_MS = 2_000;
const MIN_AUDIO_GROWTH = 40;
const MIN_FRAMES_GROWTH = 10;

const NAMES = ['alice', 'bob', 'carol'];

// ---------------------------------------------------------------- the page (runs in Chromium)

const PAGE = String.raw`<!doctype html>
<meta charset="utf-8">
<title>hualu SFU room test</title>
<script>
'use strict';
${PAGE_PRELUDE}
// A room client of hualu's /rtc signaling, as docs/protocol.md describes it. Server messages are handled one
// at a time, in order (a chain of promises), so an offer never overtakes the joined before it.
class RoomClient {
  constructor() {
    this.t0 = performance.now();
    this.pc = null;
    this.ws = null;
    this.relay = false;
    this.offer = null; // our join offer, applied locally once ice_servers are known (relay mode)
    this.me = null; // our participant id
    this.identity = null;
    this.session = null;
    this.joinedMsg = null;
    this.iceServers = [];
    this.roster = new Map(); // participant id -> identity, everyone else we heard of
    this.departed = []; // ids from participant_left
    this.remote = new Map(); // mid -> { participant, kind, transceiver, track }
    this.nextId = 1;
    this.waiting = new Map(); // request id -> { resolve, reject }
    this.clientOffer = null; // id of our own offer while it is out (the glare rule)
    this.serverOffers = { answered: 0, ignored: 0, lastAt: null };
    this.hold = false; // a slow client: server offers wait in held until released
    this.held = [];
    this.published = new Set(); // track ids from track_published
    this.counts = {}; // server message type -> count
    this.speakersSeen = new Set(); // participant ids named in speakers messages
    this.errors = []; // error messages and exceptions
    this.left = null; // the reason of the server's left
    this.closeCode = null;
    this.candidates = [];
    this.trickleBuffer = [];
    this.trickled = 0;
    this.events = [];
    this.queue = Promise.resolve();
  }

  now() { return Math.round(performance.now() - this.t0); }
  log(s) { this.events.push(this.now() + 'ms ' + s); if (this.events.length > 60) this.events.shift(); }
  send(m) { if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m)); }

  // A request with an id; resolves with the server's reply of the same id (after it was handled).
  request(m) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.send({ ...m, id });
    });
  }
  settle(m, ok) {
    const w = m.id !== undefined && this.waiting.get(m.id);
    if (!w) return;
    this.waiting.delete(m.id);
    if (ok) w.resolve(m); else w.reject(new Error('server error ' + m.code + ': ' + m.message));
  }

  // getUserMedia, a max-bundle peer connection with both tracks, createOffer, then join over a new socket.
  async join({ url, relay, hold, timeoutMs }) {
    this.relay = relay;
    this.hold = !!hold;
    const stream = await media();
    const pc = this.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers: [],
      iceTransportPolicy: relay ? 'relay' : 'all' });
    pc.addEventListener('track', (e) => this.onTrack(e));
    pc.addEventListener('connectionstatechange', () => this.log('connection ' + pc.connectionState));
    pc.addEventListener('icecandidate', (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      this.candidates.push(e.candidate.type + '/' + (e.candidate.relayProtocol || e.candidate.protocol));
      const msg = { type: 'trickle', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid };
      if (this.joinedMsg) { this.send(msg); this.trickled++; } else this.trickleBuffer.push(msg);
    });
    pc.addEventListener('icecandidateerror', (e) => this.log('icecandidateerror ' + e.errorCode + ' ' + e.url));
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    this.offer = await pc.createOffer();
    // Relay-only needs the TURN servers of joined before gathering starts: then the offer is applied
    // locally only when joined arrives (the SDP sent is the same).
    if (!relay) await pc.setLocalDescription(this.offer);

    const ws = this.ws = new WebSocket(url);
    ws.addEventListener('message', (e) => {
      let m;
      try { m = JSON.parse(e.data); } catch (err) { this.errors.push('unreadable message: ' + e.data); return; }
      this.counts[m.type] = (this.counts[m.type] || 0) + 1;
      this.queue = this.queue.then(() => this.handle(m)).catch((err) => {
        this.errors.push('handling ' + m.type + ': ' + (err && err.stack || err));
        this.settle(m, false);
      });
    });
    ws.addEventListener('close', (e) => { this.closeCode = e.code; this.log('socket closed ' + e.code); });
    await new Promise((resolve, reject) => {
      ws.addEventListener('open', resolve, { once: true });
      ws.addEventListener('error', () => reject(new Error('WebSocket error before open')), { once: true });
    });
    const t = performance.now();
    const joined = await Promise.race([
      this.request({ type: 'join', sdp: this.offer.sdp }),
      sleep(timeoutMs).then(() => { throw new Error('no joined within ' + timeoutMs + ' ms'); }),
    ]);
    return { ms: Math.round(performance.now() - t), participant: joined.participant, session: joined.session,
      participants: joined.participants, iceServers: joined.ice_servers, resumed: joined.resumed };
  }

  async handle(m) {
    switch (m.type) {
      case 'joined': {
        this.joinedMsg = m;
        this.me = m.participant.id;
        this.identity = m.participant.identity;
        this.session = m.session;
        this.iceServers = m.ice_servers || [];
        for (const p of m.participants || []) this.roster.set(p.id, p.identity);
        if (this.relay) {
          this.pc.setConfiguration({ bundlePolicy: 'max-bundle', iceServers: this.iceServers, iceTransportPolicy: 'relay' });
          await this.pc.setLocalDescription(this.offer);
        }
        await this.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
        for (const t of this.trickleBuffer.splice(0)) { this.send(t); this.trickled++; }
        this.log('joined as ' + this.me + ' with ' + (m.participants || []).length + ' others');
        this.settle(m, true);
        break;
      }
      case 'offer': {
        // Glare: with our own offer out, the server's is ignored; the server drops it and offers again after
        // answering ours.
        if (this.clientOffer !== null) {
          this.serverOffers.ignored++;
          this.log('server offer ignored: our offer ' + this.clientOffer + ' is out');
          break;
        }
        if (this.hold) {
          this.held.push(m);
          this.log('server offer held');
          break;
        }
        await this.answerOffer(m);
        break;
      }
      case 'answer':
        this.log('answer to own offer ' + m.id);
        await this.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
        this.clientOffer = null;
        this.settle(m, true);
        break;
      case 'participant_joined':
        this.roster.set(m.participant.id, m.participant.identity);
        this.log('participant_joined ' + m.participant.identity + ' ' + m.participant.id);
        break;
      case 'participant_left':
        this.departed.push(m.participant);
        this.log('participant_left ' + m.participant);
        break;
      case 'track_published':
        this.published.add(m.track.id);
        this.log(m.type + ' ' + m.participant + ' ' + JSON.stringify(m.track));
        break;
      case 'speakers':
        for (const s of m.speakers) this.speakersSeen.add(s.participant);
        break;
      case 'track_unpublished':
      case 'muted':
        this.log(m.type + ' ' + m.participant + ' ' + JSON.stringify(m.track));
        break;
      case 'error':
        this.errors.push('error ' + m.code + ': ' + m.message + (m.id !== undefined ? ' (request ' + m.id + ')' : ''));
        if (m.id !== undefined && m.id === this.clientOffer) this.clientOffer = null;
        this.settle(m, false);
        break;
      case 'left':
        this.left = m.reason;
        this.log('left: ' + m.reason);
        break;
      default:
        this.errors.push('unknown message type ' + m.type);
    }
  }

  async answerOffer(m) {
    this.log('server offer with mids ' + (m.sdp.match(/^a=mid:.*$/gm) || []).map((l) => l.slice(6)).join(','));
    await this.pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    this.send({ type: 'answer', sdp: answer.sdp });
    this.serverOffers.answered++;
    this.serverOffers.lastAt = this.now();
    this.log('answered server offer ' + this.serverOffers.answered + ' (' + this.pc.getTransceivers().length + ' transceivers)');
  }

  // A renegotiation of our own (nothing changed): offer, and the answer with the same id. Queued behind the
  // server messages being handled, so it starts from a stable state. With releaseHeld, the held server offer
  // is answered first and our offer follows the answer at once, with no server message handled in between.
  renegotiate({ releaseHeld = false } = {}) {
    // The queue waits only for the offer to be sent: the answer comes through the queue too.
    let released = 0;
    const sent = this.queue.then(async () => {
      if (releaseHeld) {
        this.hold = false;
        const held = this.held.splice(0);
        for (const m of held) await this.answerOffer(m);
        released = held.length;
      }
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      const id = this.nextId++;
      this.clientOffer = id;
      const reply = new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
      this.send({ type: 'offer', id, sdp: offer.sdp });
      this.log('sent own offer ' + id + ' (' + this.pc.getTransceivers().length + ' transceivers)');
      return { reply };
    });
    this.queue = sent.catch(() => {});
    return sent.then(({ reply }) => reply).then(async (r) => {
      await this.queue;
      return { id: r.id, signalingState: this.pc.signalingState, released };
    });
  }

  onTrack(e) {
    const participant = e.streams[0] ? e.streams[0].id : null;
    const mid = e.transceiver.mid;
    this.remote.set(mid, { participant, kind: e.track.kind, transceiver: e.transceiver, track: e.track });
    this.log('ontrack mid ' + mid + ' ' + e.track.kind + ' from ' + participant);
  }

  // Everything the driver asserts on.
  async status() {
    const pc = this.pc;
    const report = await pc.getStats();
    const tracks = [];
    for (const [mid, r] of this.remote) {
      const rs = await r.transceiver.receiver.getStats();
      let inbound = null;
      rs.forEach((s) => { if (s.type === 'inbound-rtp') inbound = s; });
      const codec = inbound && inbound.codecId && rs.get(inbound.codecId);
      tracks.push({ mid, participant: r.participant, identity: this.roster.get(r.participant) || null, kind: r.kind,
        currentDirection: r.transceiver.currentDirection, trackState: r.track.readyState,
        packetsReceived: inbound ? inbound.packetsReceived || 0 : 0, packetsLost: inbound ? inbound.packetsLost || 0 : 0,
        framesDecoded: inbound ? inbound.framesDecoded || 0 : 0, mimeType: codec ? codec.mimeType : null,
        frameWidth: inbound ? inbound.frameWidth : undefined, frameHeight: inbound ? inbound.frameHeight : undefined });
    }
    return { me: this.me, identity: this.identity, roster: [...this.roster].map(([id, identity]) => ({ id, identity })),
      departed: this.departed, tracks, pair: selectedPair(report), connectionState: pc.connectionState,
      iceConnectionState: pc.iceConnectionState, signalingState: pc.signalingState, serverOffers: this.serverOffers,
      transceivers: pc.getTransceivers().length, held: this.held.length, published: [...this.published],
      counts: this.counts, speakersSeen: [...this.speakersSeen], errors: this.errors, left: this.left, closeCode: this.closeCode, candidates: this.candidates,
      trickled: this.trickled, events: this.events.slice(-25) };
  }

  // leave: the server answers left and closes; then the peer connection is closed.
  async leave(timeoutMs) {
    const t = performance.now();
    this.send({ type: 'leave' });
    while ((this.left === null || this.closeCode === null) && performance.now() - t < timeoutMs) await sleep(50);
    await this.queue.catch(() => {});
    this.pc.close();
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    return { left: this.left, closeCode: this.closeCode, ms: Math.round(performance.now() - t) };
  }

  // Without a leave (the end of a failed run).
  close() {
    if (this.pc) this.pc.close();
    if (this.ws) this.ws.close();
  }
}

let client = null;
async function roomJoin(args) {
  if (client) client.close();
  client = new RoomClient();
  const joined = await client.join(args);
  if (args.reoffer) {
    // An offer of our own right away, while the server offers the others' tracks: glare, more often than not.
    const t = performance.now();
    const r = await Promise.race([client.renegotiate(),
      sleep(args.timeoutMs).then(() => ({ timeout: true }))]);
    joined.reoffer = { ...r, ms: Math.round(performance.now() - t) };
  }
  return joined;
}
</script>
<p>hualu SFU room test page</p>
`;

// ---------------------------------------------------------------- the driver (runs in node)

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmtPair = (p) => (p ? `local ${fmtCand(p.local)} remote ${fmtCand(p.remote)} state=${p.state}` : 'no selected pair');

// An access token as docs/protocol.md describes it: HS256, the key in kid and iss.
function mintToken(identity, room) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ typ: 'JWT', alg: 'HS256', kid: API_KEY });
  const body = b64({ iss: API_KEY, sub: identity, iat: now, nbf: now, exp: now + 600,
    grants: { room, publish: true, subscribe: true } });
  const sig = createHmac('sha256', API_SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
const rtcUrl = (identity, room) => `${SFU_URL}?access_token=${encodeURIComponent(mintToken(identity, room))}`;

// What `receiver` gets from participant `source`: the best audio and video track of that participant.
function from(status, source) {
  const mine = status.tracks.filter((t) => t.participant === source);
  const best = (kind, key) => mine.filter((t) => t.kind === kind).sort((a, b) => b[key] - a[key])[0] || null;
  return { audio: best('audio', 'packetsReceived'), video: best('video', 'framesDecoded'), all: mine };
}
function mediaMet(status, source) {
  const f = from(status, source);
  return !!f.audio && f.audio.packetsReceived >= MIN_AUDIO_PACKETS && !!f.video && f.video.framesDecoded >= MIN_FRAMES_DECODED;
}

const statuses = (peers) => Promise.all(peers.map((p) => p.page.evaluate(() => client.status())));

function dumpStatus(peer, s) {
  console.log(`     ${peer.name} (${s.me}): connection=${s.connectionState} ice=${s.iceConnectionState} ` +
    `signaling=${s.signalingState} transceivers=${s.transceivers} offers answered=${s.serverOffers.answered} ` +
    `ignored=${s.serverOffers.ignored} messages=${JSON.stringify(s.counts)} candidates=${s.candidates.join(',') || 'none'} ` +
    `trickled=${s.trickled} pair: ${fmtPair(s.pair)}`);
  for (const t of s.tracks) {
    console.log(`       mid ${t.mid} ${t.kind} from ${t.identity ?? '?'} (${t.participant}) dir=${t.currentDirection} ` +
      `track=${t.trackState} packets=${t.packetsReceived} lost=${t.packetsLost} frames=${t.framesDecoded} codec=${t.mimeType}`);
  }
  if (s.errors.length) console.log(`       errors: ${s.errors.join(' | ')}`);
  console.log(`       events: ${s.events.join(' | ')}`);
}

// Three pages join `room`; each must receive audio and video from both others and know their identities.
// Returns the peers (name, page, participant id).
async function roomScenario(pages, { name, room, relay, concurrent, reoffer, holder }) {
  const peers = pages.map((page, i) => ({ page, name: NAMES[i] }));
  const t0 = Date.now();
  const joinOne = async (p) => {
    try {
      p.joined = await p.page.evaluate((a) => roomJoin(a),
        { url: rtcUrl(p.name, room), relay, reoffer, hold: p.name === holder, timeoutMs: JOIN_TIMEOUT_MS });
    } catch (err) {
      p.joinError = String(err && err.message || err).split('\n')[0];
    }
  };
  if (concurrent) await Promise.all(peers.map(joinOne));
  else for (const p of peers) await joinOne(p);
  const tJoined = Date.now();
  for (const p of peers) {
    const j = p.joined;
    check(`${name} ${p.name} joined`, !!j && /^\d+$/.test(j.participant?.id ?? '') && j.participant?.identity === p.name &&
      typeof j.session === 'string' && j.session.length > 0 && j.resumed === false,
    j ? `participant ${j.participant?.id} identity=${j.participant?.identity} in ${j.ms} ms, ` +
        `${j.participants.length} already there (${j.participants.map((o) => `${o.identity}:${o.tracks.length} tracks`).join(', ') || 'none'}), ` +
        `ice_servers ${JSON.stringify((j.iceServers || []).map((s) => s.urls))}` : p.joinError);
  }
  if (reoffer) {
    for (const p of peers) {
      const r = p.joined?.reoffer;
      check(`${name} ${p.name} own offer right after join answered`, !!r && r.id !== undefined && r.signalingState === 'stable',
        !r ? 'not joined' : r.timeout ? `no answer within ${JOIN_TIMEOUT_MS} ms` : `answer to request ${r.id} in ${r.ms} ms, signaling=${r.signalingState}`);
    }
  }
  const ok = peers.filter((p) => p.joined);
  if (ok.length !== peers.length) return { peers, ok: false };
  for (const p of peers) p.id = p.joined.participant.id;
  if (holder) await heldOfferCheck(name, peers.find((p) => p.name === holder), peers);

  if (relay) {
    const want = `turn:127.0.0.1:${TURN_PORT}?transport=udp`;
    for (const p of peers) {
      const servers = p.joined.iceServers || [];
      const s = servers.find((x) => (x.urls || []).includes(want));
      check(`${name} ${p.name} joined.ice_servers name hualu's TURN`, !!s && /^\d+:/.test(s.username || '') && !!s.credential,
        `${JSON.stringify(servers.map((x) => ({ urls: x.urls, username: x.username })))} (want ${want} with a REST credential)`);
    }
  }

  // Poll until every page receives from both others, bounded.
  let st = await statuses(peers);
  const allMet = (ss) => peers.every((p, i) => peers.every((q) => q === p || mediaMet(ss[i], q.id)) &&
    (!relay || ss[i].pair?.local?.candidateType === 'relay'));
  while (!allMet(st) && Date.now() - tJoined < MEDIA_TIMEOUT_MS) {
    await sleep(500);
    st = await statuses(peers);
  }
  const mediaMs = Date.now() - tJoined;
  console.log(`---- ${name}: room ${room}, joins ${concurrent ? 'concurrent' : 'one after another'} in ${tJoined - t0} ms; ` +
    `${allMet(st) ? 'all media thresholds met' : 'TIMED OUT'} ${mediaMs} ms after the last join`);
  if (!allMet(st)) peers.forEach((p, i) => dumpStatus(p, st[i]));

  peers.forEach((p, i) => {
    const s = st[i];
    const others = peers.filter((q) => q !== p);
    const known = new Map(s.roster.map((r) => [r.id, r.identity]));
    check(`${name} ${p.name} roster`, others.every((q) => known.get(q.id) === q.name) && !known.has(p.id),
      `knows ${s.roster.map((r) => `${r.identity}=${r.id}`).join(', ') || 'nobody'} (want ${others.map((q) => `${q.name}=${q.id}`).join(', ')})`);
    for (const q of others) {
      const f = from(s, q.id);
      const a = f.audio || {};
      const v = f.video || {};
      check(`${name} ${p.name} receives audio from ${q.name}`,
        (a.packetsReceived || 0) >= MIN_AUDIO_PACKETS && a.mimeType === 'audio/opus',
        `mid ${a.mid ?? '-'} packetsReceived=${a.packetsReceived ?? 'none'} (need >= ${MIN_AUDIO_PACKETS}) ` +
        `lost=${a.packetsLost ?? '-'} codec=${a.mimeType ?? '-'}`);
      check(`${name} ${p.name} receives video from ${q.name}`, (v.framesDecoded || 0) >= MIN_FRAMES_DECODED,
        `mid ${v.mid ?? '-'} framesDecoded=${v.framesDecoded ?? 'none'} (need >= ${MIN_FRAMES_DECODED}) ` +
        `packets=${v.packetsReceived ?? '-'} lost=${v.packetsLost ?? '-'} size=${v.frameWidth ?? '-'}x${v.frameHeight ?? '-'} codec=${v.mimeType ?? '-'}`);
    }
    const pair = s.pair;
    if (relay) {
      check(`${name} ${p.name} selected pair local candidate is relay`, pair?.local?.candidateType === 'relay',
        `${fmtPair(pair)} connection=${s.connectionState}`);
    } else {
      check(`${name} ${p.name} ICE connected`, s.connectionState === 'connected' && !!pair,
        `connection=${s.connectionState} ${fmtPair(pair)}`);
    }
    check(`${name} ${p.name} no signaling error`, s.errors.length === 0,
      `${s.errors.join(' | ') || 'none'}; server offers answered=${s.serverOffers.answered} ignored=${s.serverOffers.ignored}, ` +
      `messages ${JSON.stringify(s.counts)}`);
    // Chromium's fake microphone beeps, and Chromium writes RFC 6464 audio levels: the others show up as speakers.
    const talkers = s.speakersSeen.filter((id) => id !== s.me);
    check(`${name} ${p.name} active speakers name the others`, talkers.length >= 1,
      `speakers seen: ${JSON.stringify(s.speakersSeen)} (me ${s.me}), ${s.counts.speakers || 0} speakers messages`);
  });
  return { peers, ok: true, status: st };
}

// Every one of `peers` leaves; each must get left (reason leave).
async function leaveAll(name, peers) {
  const rs = await Promise.all(peers.map((p) => p.page.evaluate((ms) => client.leave(ms), 5_000).catch((e) => ({ error: String(e) }))));
  peers.forEach((p, i) => {
    const r = rs[i];
    check(`${name} ${p.name} leave answered with left`, r.left === 'leave',
      r.error ?? `left reason=${r.left ?? 'none'} socket close code=${r.closeCode ?? 'open'} after ${r.ms} ms`);
  });
}

// A slow client and glare: `peer` has held its first server offer (the first participant's tracks) while the
// others joined and published, so the server has more tracks waiting for it. It answers the held offer and
// sends an offer of its own right after: the server offers the waiting tracks on that answer, before it takes
// the client's offer, so that offer of the server's is void. The client must see it while its own offer is
// out (and ignore it), then the answer, then the server's new offer; media must flow from both others after.
async function heldOfferCheck(name, peer, peers) {
  const t = Date.now();
  const later = peers.slice(peers.indexOf(peer) + 1); // joined after it: their tracks come by track_published
  const ready = (s) => s.held >= 1 && later.length > 0 && later.every((q) => s.published.filter((id) => id.startsWith(`${q.id}-`)).length >= 2);
  let s = await peer.page.evaluate(() => client.status());
  while (!ready(s) && Date.now() - t < JOIN_TIMEOUT_MS) {
    await sleep(100);
    s = await peer.page.evaluate(() => client.status());
  }
  check(`${name} ${peer.name} holds a server offer while the others publish`, ready(s),
    `held ${s.held} offer(s); track_published seen: ${s.published.join(', ') || 'none'} after ${Date.now() - t} ms`);
  const t1 = Date.now();
  let r;
  try {
    r = await Promise.race([peer.page.evaluate(() => client.renegotiate({ releaseHeld: true })),
      sleep(JOIN_TIMEOUT_MS).then(() => ({ timeout: true }))]);
  } catch (err) {
    r = { error: String(err && err.message || err).split('\n')[0] };
  }
  check(`${name} ${peer.name} answers the held offer and offers at once: answered`,
    !!r && r.id !== undefined && r.signalingState === 'stable' && r.released >= 1,
    r.error ?? (r.timeout ? `no answer within ${JOIN_TIMEOUT_MS} ms`
      : `released ${r.released} held offer(s), answer to request ${r.id} in ${Date.now() - t1} ms, signaling=${r.signalingState}`));
  const after = await peer.page.evaluate(() => client.status());
  check(`${name} ${peer.name} gets the server's void offer while its own is out, and ignores it`, after.serverOffers.ignored >= 1,
    `server offers ignored=${after.serverOffers.ignored} answered=${after.serverOffers.answered}; ` +
    `events: ${after.events.slice(-8).join(' | ')}`);
}

// One participant leaves: the others get participant_left, the server's next offer stops its m-lines, and the
// remaining two still receive each other.
async function leaveScenario(name, peers) {
  const [a, b, gone] = peers;
  const stay = [a, b];
  const r = await gone.page.evaluate((ms) => client.leave(ms), 5_000).catch((e) => ({ error: String(e) }));
  const tLeft = Date.now();
  check(`${name} ${gone.name} leave answered with left`, r.left === 'leave',
    r.error ?? `left reason=${r.left ?? 'none'} socket close code=${r.closeCode ?? 'open'} after ${r.ms} ms`);

  const stopped = (t) => t.currentDirection === 'stopped' || t.currentDirection === 'inactive' || t.trackState === 'ended';
  const done = (s) => s.departed.includes(gone.id) && from(s, gone.id).all.length > 0 && from(s, gone.id).all.every(stopped);
  let st = await statuses(stay);
  while (!st.every(done) && Date.now() - tLeft < LEAVE_TIMEOUT_MS) {
    await sleep(250);
    st = await statuses(stay);
  }
  if (!st.every(done)) stay.forEach((p, i) => dumpStatus(p, st[i]));
  stay.forEach((p, i) => {
    const s = st[i];
    check(`${name} ${p.name} gets participant_left for ${gone.name}`, s.departed.includes(gone.id),
      `participant_left for [${s.departed.join(', ')}] (want ${gone.id}) within ${Date.now() - tLeft} ms`);
    const tracks = from(s, gone.id).all;
    check(`${name} ${p.name} ${gone.name}'s m-lines stopped by the server's next offer`, tracks.length > 0 && tracks.every(stopped),
      `${tracks.map((t) => `mid ${t.mid} ${t.kind} direction=${t.currentDirection} track=${t.trackState}`).join('; ') || 'no tracks of theirs'}; ` +
      `server offers answered=${s.serverOffers.answered}, transceivers=${s.transceivers}`);
  });

  // The remaining two still receive each other.
  const before = await statuses(stay);
  await sleep(AFTER_LEAVE_MS);
  const after = await statuses(stay);
  stay.forEach((p, i) => {
    const q = stay[1 - i];
    const f0 = from(before[i], q.id);
    const f1 = from(after[i], q.id);
    const da = (f1.audio?.packetsReceived ?? 0) - (f0.audio?.packetsReceived ?? 0);
    const dv = (f1.video?.framesDecoded ?? 0) - (f0.video?.framesDecoded ?? 0);
    check(`${name} ${p.name} still receives ${q.name} after the leave`, da >= MIN_AUDIO_GROWTH && dv >= MIN_FRAMES_GROWTH,
      `in ${AFTER_LEAVE_MS} ms: +${da} audio packets (need >= ${MIN_AUDIO_GROWTH}), +${dv} video frames decoded (need >= ${MIN_FRAMES_GROWTH}); ` +
      `connection=${after[i].connectionState}`);
    check(`${name} ${p.name} no signaling error`, after[i].errors.length === 0, after[i].errors.join(' | ') || 'none');
  });
  await leaveAll(name, stay);
}

// A token the server must refuse before the upgrade.
async function refusedTokenCheck() {
  const url = `${SFU_URL.replace(/^ws/, 'http')}?access_token=${encodeURIComponent(mintToken('mallory', 'x').slice(0, -4) + 'AAAA')}`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    const body = await res.text();
    let code = null;
    try { code = JSON.parse(body).error.code; } catch { /* reported below */ }
    check('rtc refuses a badly signed token', res.status === 401 && code === 'unauthorized', `HTTP ${res.status} ${body}`);
  } catch (err) {
    check('rtc refuses a badly signed token', false, String(err));
  }
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

  await refusedTokenCheck();

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
    const pages = [];
    for (const name of NAMES) {
      const page = pages.length === 0 && context.pages()[0] ? context.pages()[0] : await context.newPage();
      page.setDefaultTimeout(PAGE_TIMEOUT_MS);
      page.on('console', (m) => { if (m.type() === 'error') console.log(`     [${name} console] ${m.text()}`); });
      page.on('pageerror', (e) => console.log(`     [${name} page error] ${e}`));
      await page.goto(origin + '/', { timeout: 15_000 });
      pages.push(page);
    }
    console.log(`     chromium ${context.browser()?.version() ?? ''} up, ${pages.length} pages loaded in ${Date.now() - t0} ms (${origin})`);

    const tag = randomBytes(3).toString('hex');
    const scenarios = [
      ['direct', async () => {
        const r = await roomScenario(pages, { name: 'direct', room: `direct-${tag}`, relay: false, concurrent: false,
          holder: 'bob' });
        if (!r.ok) return;
        await leaveAll('direct', r.peers);
      }],
      ['relay', async () => {
        const r = await roomScenario(pages, { name: 'relay', room: `relay-${tag}`, relay: true, concurrent: true,
          reoffer: true });
        if (!r.ok) return;
        await leaveScenario('relay leave', r.peers);
      }],
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
  check('driver finished in time', false, 'the browser run exceeded 100 s');
  process.exit(1);
}, 100_000);
watchdog.unref();

try {
  await main();
} catch (err) {
  check('driver', false, String(err && err.stack || err));
}
// ./run counts the PASS/FAIL lines and prints the `N passed, N failed` summary.
process.exit(results.failed === 0 && results.passed > 0 ? 0 : 1);
