// The room behind a call: one RTCPeerConnection to the SFU, signaled over `GET /rtc` (docs/protocol.md, "Room
// signaling"). It publishes the local microphone and camera (the camera as three simulcast layers when it is
// big enough), answers the server's offers as others' tracks come and go, keeps the roster, and resumes after
// a network change: a new socket with `resume` and an ICE-restart offer, keeping its tracks and subscriptions.
//
// Server messages are handled one at a time, in order (a promise chain), so an offer never overtakes the
// `joined` before it. While an offer of ours is out, the server's offers are ignored (it drops them and offers
// again after answering ours).

import { readQuality } from './quality.js';


// How long ICE may stay `disconnected` before the room restarts it, and the resume retry schedule.
const ICE_DISCONNECTED_MS = 2000;
const RETRY_MS = [250, 500, 1000, 2000];
// The SFU keeps a dropped session this long (sfu.resume_grace_secs); past it the room is gone.
const RESUME_GIVE_UP_MS = 20_000;
const REQUEST_TIMEOUT_MS = 10_000;

// Simulcast layers, low to high: scaled down by 4 and 2, then full size.
const LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

export class Room {
  /**
   * @param {object} o
   * @param {string} o.url the SFU's `/rtc` URL from the call's `join` event
   * @param {string} o.token the room token
   * @param {RTCIceServer[]} o.iceServers TURN servers
   * @param {RTCConfiguration} [o.rtcConfig] extra settings (e.g. iceTransportPolicy)
   * @param {number} o.simulcastMinWidth
   * @param {(type: string, data: object) => void} o.emit the call's event sink
   */
  constructor(o) {
    this.o = o;
    this.pc = null;
    this.ws = null;
    this.session = null;
    this.me = null;
    this.participants = new Map(); // participant id -> Participant
    this.owners = new Map(); // received track id or mid -> participant id
    this.statsPrev = new Map();
    this.nextId = 1;
    this.waiting = new Map(); // request id -> { resolve, reject }
    this.ourOffer = false; // an offer of ours is out
    this.queue = Promise.resolve();
    this.closed = false;
    this.reconnecting = null; // { since, cause } while resuming
    this.iceTimer = null;
    this.speakers = [];
    this.wake = null; // cuts the resume loop's wait short
  }

  /** Joins with `stream`'s tracks; resolves once the server answered. */
  async join(stream) {
    const pc = this.pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle', ...this.o.rtcConfig, iceServers: this.o.iceServers || [] });
    pc.addEventListener('track', (e) => this.onTrack(e));
    pc.addEventListener('icecandidate', (e) => {
      if (e.candidate && e.candidate.candidate) {
        this.send({ type: 'trickle', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid });
      }
    });
    pc.addEventListener('iceconnectionstatechange', () => this.onIceState());
    for (const track of stream.getTracks()) this.publish(track, stream);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await this.open();
    const joined = await this.request({ type: 'join', sdp: pc.localDescription.sdp });
    return joined;
  }

  /** Adds a local track to the connection (video as simulcast layers when wide enough). */
  publish(track, stream) {
    const init = { direction: 'sendonly', streams: [stream] };
    const width = track.kind === 'video' ? (track.getSettings().width || 0) : 0;
    if (track.kind === 'video' && width >= this.o.simulcastMinWidth) init.sendEncodings = LAYERS.map((l) => ({ ...l }));
    return this.pc.addTransceiver(track, init);
  }

  /** The transceiver that sends our `kind` track, if any. */
  sender(kind) {
    return this.pc && this.pc.getTransceivers().find((t) => t.sender && t.direction === 'sendonly'
      && !t.stopped && (t.sender.track ? t.sender.track.kind === kind : t.receiver.track.kind === kind));
  }

  /** Our track id for `kind` as the room names it (`<participant>-<mid>`). */
  trackId(kind) {
    const t = this.sender(kind);
    return t && t.mid !== null && this.me ? `${this.me}-${t.mid}` : null;
  }

  /** Tells the room our `kind` track is muted or not. */
  setMuted(kind, muted) {
    const track = this.trackId(kind);
    if (track) this.send({ type: 'mute', track, muted });
  }

  /** Renegotiates after a local change (a track added), or restarts ICE. */
  async renegotiate({ iceRestart = false } = {}) {
    if (this.pc.signalingState === 'have-remote-offer') await this.pc.setLocalDescription({ type: 'rollback' });
    await this.offer(iceRestart);
    this.ourOffer = true;
    try {
      const answer = await this.request({ type: 'offer', sdp: this.pc.localDescription.sdp });
      await this.pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    } finally {
      this.ourOffer = false;
    }
  }

  // Creates and sets our offer. Chromium refuses its own offer ("Failed to apply demuxer criteria") when an
  // m-section the server added lists every codec the browser has while the SSRC the server announced there is
  // already bound: so each transceiver the server added keeps only the codecs the server offered in it.
  async offer(iceRestart) {
    pinCodecs(this.pc);
    const offer = await this.pc.createOffer({ iceRestart });
    await this.pc.setLocalDescription(offer);
  }

  // ------------------------------------------------------------------ the socket

  open() {
    const ws = new WebSocket(`${this.o.url}?access_token=${encodeURIComponent(this.o.token)}`);
    this.ws = ws;
    ws.addEventListener('message', (e) => {
      let m;
      try { m = JSON.parse(e.data); } catch { return; }
      this.queue = this.queue.then(() => this.handle(m)).catch((err) => {
        this.settle(m, new Error(`handling ${m.type}: ${err && err.message}`));
      });
    });
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return;
      for (const w of this.waiting.values()) w.reject(new Error('room connection closed'));
      this.waiting.clear();
      if (!this.closed) this.reconnect('room socket closed');
    });
    return new Promise((resolve, reject) => {
      ws.addEventListener('open', resolve, { once: true });
      ws.addEventListener('close', () => reject(new Error('could not reach the SFU')), { once: true });
    });
  }

  send(m) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  request(m) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no answer to ${m.type} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.waiting.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.send({ ...m, id });
    });
  }

  settle(m, err) {
    const w = m.id !== undefined && this.waiting.get(m.id);
    if (!w) return;
    this.waiting.delete(m.id);
    if (err) w.reject(err); else w.resolve(m);
  }

  async handle(m) {
    switch (m.type) {
      case 'joined': return this.onJoined(m);
      case 'offer':
        if (this.ourOffer || this.pc.signalingState !== 'stable') return undefined;
        await this.pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.send({ type: 'answer', sdp: this.pc.localDescription.sdp });
        return this.dropStopped();
      case 'answer': return this.settle(m);
      case 'participant_joined': return this.upsert(m.participant);
      case 'participant_left': return this.removeParticipant(m.participant);
      case 'track_published': return this.trackChanged(m.participant, m.track, true);
      case 'track_unpublished': return this.trackChanged(m.participant, m.track, false);
      case 'muted': return this.trackChanged(m.participant, { id: m.track, muted: m.muted }, true);
      case 'speakers': return this.onSpeakers(m.speakers || []);
      case 'subscribed': return this.settle(m);
      case 'error': {
        const err = Object.assign(new Error(m.message), { code: m.code });
        if (m.id !== undefined) return this.settle(m, err);
        return undefined;
      }
      case 'left':
        this.closed = true;
        this.o.emit('room_left', { reason: m.reason });
        return undefined;
      default: return undefined;
    }
  }

  async onJoined(m) {
    this.me = m.participant.id;
    this.session = m.session;
    if (m.ice_servers && m.ice_servers.length) {
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers: m.ice_servers });
    }
    if (m.sdp) await this.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
    const present = new Set((m.participants || []).map((p) => p.id));
    for (const id of [...this.participants.keys()]) if (!present.has(id)) this.removeParticipant(id);
    for (const p of m.participants || []) this.upsert(p);
    this.settle(m);
  }

  // ------------------------------------------------------------------ the roster

  participant(id, identity) {
    let p = this.participants.get(id);
    if (!p) {
      p = { id, identity: identity || id, stream: new MediaStream(), tracks: [], audioMuted: false,
        videoMuted: true, quality: null };
      this.participants.set(id, p);
    }
    if (identity) p.identity = identity;
    return p;
  }

  upsert(info) {
    const p = this.participant(info.id, info.identity);
    if (info.tracks) p.tracks = info.tracks.map((t) => ({ ...t }));
    this.refresh(p);
  }

  trackChanged(pid, track, present) {
    const p = this.participant(pid);
    const i = p.tracks.findIndex((t) => t.id === track.id);
    if (!present) {
      if (i >= 0) p.tracks.splice(i, 1);
    } else if (i >= 0) {
      Object.assign(p.tracks[i], track);
    } else if (track.kind) {
      p.tracks.push({ muted: false, ...track });
    }
    this.refresh(p);
  }

  refresh(p) {
    const audio = p.tracks.filter((t) => t.kind === 'audio');
    const video = p.tracks.filter((t) => t.kind === 'video');
    p.audioMuted = audio.length > 0 && audio.every((t) => t.muted);
    p.videoMuted = video.length === 0 || video.every((t) => t.muted);
    this.o.emit('participant', { participant: p });
  }

  removeParticipant(id) {
    const p = this.participants.get(id);
    if (!p) return;
    this.participants.delete(id);
    for (const t of p.stream.getTracks()) p.stream.removeTrack(t);
    this.o.emit('participant_left', { participant: p });
  }

  onTrack(e) {
    const pid = e.streams && e.streams[0] ? e.streams[0].id : null;
    if (!pid) return;
    for (const other of this.participants.values()) {
      if (other.id !== pid && other.stream.getTrackById(e.track.id)) other.stream.removeTrack(e.track);
    }
    const p = this.participant(pid);
    if (!p.stream.getTrackById(e.track.id)) p.stream.addTrack(e.track);
    this.owners.set(e.track.id, pid);
    if (e.transceiver && e.transceiver.mid !== null) this.owners.set(e.transceiver.mid, pid);
    this.o.emit('participant', { participant: p });
  }

  // After an offer that stopped m-lines, their tracks leave the streams they were in.
  dropStopped() {
    for (const t of this.pc.getTransceivers()) {
      const track = t.receiver && t.receiver.track;
      if (!track || !(t.stopped || t.currentDirection === 'inactive' || t.currentDirection === 'stopped')) continue;
      for (const p of this.participants.values()) {
        if (p.stream.getTrackById(track.id)) {
          p.stream.removeTrack(track);
          this.o.emit('participant', { participant: p });
        }
      }
    }
  }

  onSpeakers(list) {
    this.speakers = list.filter((s) => this.participants.has(s.participant))
      .map((s) => ({ participant: this.participants.get(s.participant), level: s.level }));
    this.o.emit('speakers', { speakers: this.speakers });
  }

  // ------------------------------------------------------------------ quality

  /** Reads getStats() once and updates every participant's quality. */
  async readQuality() {
    if (!this.pc || this.closed) return [];
    const report = await this.pc.getStats();
    const q = readQuality(report, this.owners, this.statsPrev, performance.now());
    const out = [];
    for (const [pid, quality] of q) {
      const p = this.participants.get(pid);
      if (p) { p.quality = quality; out.push(p); }
    }
    return out;
  }

  // ------------------------------------------------------------------ reconnecting

  onIceState() {
    const s = this.pc.iceConnectionState;
    clearTimeout(this.iceTimer);
    if (s === 'connected' || s === 'completed') {
      if (this.reconnecting && this.ws && this.ws.readyState === WebSocket.OPEN) this.finishReconnect();
      else this.o.emit('media_connected', {});
    } else if (s === 'failed') {
      this.reconnect('ice failed');
    } else if (s === 'disconnected') {
      this.iceTimer = setTimeout(() => this.reconnect('ice disconnected'), ICE_DISCONNECTED_MS);
    }
  }

  /**
   * Resumes the room: on the open socket, an ICE restart; else a new socket with `resume` and an ICE-restart
   * offer, retried until it works, the room is left, or the SFU's grace period has passed.
   */
  reconnect(cause) {
    if (this.closed || !this.pc) return;
    if (this.reconnecting) return;
    this.reconnecting = { since: performance.now(), cause };
    this.o.emit('reconnecting', { cause });
    this.resumeLoop().catch(() => {});
  }

  /** The network is gone (an `offline` event): drop the socket now, resume when it is back. */
  suspend() {
    if (this.closed || !this.ws) return;
    // Detach the socket before closing it: its close event can come late (the page is offline, not the
    // socket), and requests waiting on it would wait their whole timeout.
    const ws = this.ws;
    this.ws = null;
    for (const w of this.waiting.values()) w.reject(new Error('offline'));
    this.waiting.clear();
    ws.close();
    this.reconnect('offline');
  }

  /** The network is back (an `online` event): retry at once. */
  networkBack() {
    if (this.wake) this.wake();
  }

  async resumeLoop() {
    const since = this.reconnecting.since;
    for (let attempt = 0; !this.closed; attempt++) {
      if (performance.now() - since > RESUME_GIVE_UP_MS) {
        this.closed = true;
        this.o.emit('room_left', { reason: 'could not resume the room' });
        return;
      }
      try {
        await this.resumeOnce();
        return;
      } catch (err) {
        console.warn(`hualu: resuming the room failed (attempt ${attempt + 1}): ${err && err.message || err}`);
        await new Promise((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]);
        });
      }
    }
  }

  async resumeOnce() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      await this.renegotiate({ iceRestart: true });
    } else {
      if (this.ws) this.ws.close();
      if (this.pc.signalingState !== 'stable') await this.pc.setLocalDescription({ type: 'rollback' });
      await this.offer(true);
      this.ourOffer = true;
      try {
        await this.open();
        await this.request({ type: 'resume', session: this.session, sdp: this.pc.localDescription.sdp });
      } finally {
        this.ourOffer = false;
      }
    }
    const s = this.pc.iceConnectionState;
    if (s === 'connected' || s === 'completed') this.finishReconnect();
  }

  finishReconnect() {
    if (!this.reconnecting) return;
    const ms = Math.round(performance.now() - this.reconnecting.since);
    this.reconnecting = null;
    this.o.emit('reconnected', { ms });
  }

  /** Leaves the room and closes the connection. */
  close() {
    if (this.pc === null) return;
    this.send({ type: 'leave' });
    this.closed = true;
    clearTimeout(this.iceTimer);
    const ws = this.ws;
    setTimeout(() => ws && ws.close(), 200);
    this.pc.close();
    for (const p of this.participants.values()) for (const t of p.stream.getTracks()) t.stop();
  }
}

/** The codec names (`audio/opus`) of each m-section of `sdp`, by mid. */
function codecsByMid(sdp) {
  const out = new Map();
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const kind = section.slice(0, section.indexOf(' '));
    const mid = /\r?\na=mid:(\S+)/.exec(section);
    if (!mid) continue;
    const names = [...section.matchAll(/a=rtpmap:\d+ ([^/\s]+)/g)].map((m) => `${kind}/${m[1]}`.toLowerCase());
    out.set(mid[1], new Set(names));
  }
  return out;
}

// Limits each receive-only transceiver (the server added it) to the codecs the server negotiated in it.
function pinCodecs(pc) {
  const remote = pc.currentRemoteDescription;
  if (!remote || typeof RTCRtpTransceiver === 'undefined' || !RTCRtpTransceiver.prototype.setCodecPreferences) return;
  const byMid = codecsByMid(remote.sdp);
  for (const t of pc.getTransceivers()) {
    if (!t.mid || t.direction !== 'recvonly' || !byMid.has(t.mid)) continue;
    const kind = t.receiver.track.kind;
    const wanted = byMid.get(t.mid);
    const caps = (RTCRtpReceiver.getCapabilities(kind) || { codecs: [] }).codecs
      .filter((c) => wanted.has(c.mimeType.toLowerCase()));
    if (!caps.some((c) => !/\/(rtx|red|ulpfec|flexfec-03)$/i.test(c.mimeType))) continue;
    try { t.setCodecPreferences(caps); } catch (err) { console.warn('hualu: setCodecPreferences failed', err); }
  }
}
