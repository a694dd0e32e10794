// hualu's browser SDK: place and answer 1:1 and group calls from a web page. No dependencies and no build step:
//
//   import { HualuClient } from '/sdk/hualu.js';
//   const client = new HualuClient({ token });
//   await client.connect();
//   client.on('incoming', ({ call }) => call.accept());
//   const call = await client.call(['bob'], { video: true });
//   call.on('participant', ({ participant }) => { video.srcObject = participant.stream; });
//
// Types are in hualu.d.ts next to this file. Underneath, one WebSocket to call control (`/ws`) per device, and
// per call one room on an SFU (`/rtc`, room.js). The SDK resumes both by itself after a network change: the
// call-control session with its missed events, the room with an ICE restart.

import { Room } from './room.js';

export { emodel } from './quality.js';

const RETRY_MS = [250, 500, 1000, 2000, 4000];
const REQUEST_TIMEOUT_MS = 15_000;
// Call control keeps a dropped session this long (signaling.grace_secs); the SDK keeps trying a bit longer.
const RESUME_GIVE_UP_MS = 35_000;

const key = () => {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
};

/** A small event emitter: `on` returns a function that removes the listener. */
class Emitter {
  constructor() { this.listeners = new Map(); }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  once(type) {
    return new Promise((resolve) => { const off = this.on(type, (e) => { off(); resolve(e); }); });
  }

  emit(type, data) {
    for (const fn of [...(this.listeners.get(type) || [])]) {
      try { fn(data); } catch (err) { console.error(`hualu: a "${type}" listener threw`, err); }
    }
  }
}

/** A dev token from `hualu up --dev`'s `/dev/token`. */
export async function devToken(user, device = 'web', server = location.origin) {
  const u = new URL('/dev/token', server);
  u.searchParams.set('user', user);
  u.searchParams.set('device', device);
  const r = await fetch(u);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`dev token refused (${r.status}): ${body.message || 'is the server in --dev mode?'}`);
  return body.access_token;
}

/** Microphones and cameras. */
export async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  return { audio: all.filter((d) => d.kind === 'audioinput'), video: all.filter((d) => d.kind === 'videoinput') };
}

export class HualuClient extends Emitter {
  constructor(opts) {
    super();
    if (!opts || !opts.token) throw new Error('HualuClient needs a token');
    this.opts = { server: location.origin, rtcConfig: {}, callWaiting: false, simulcastMinWidth: 640,
      statsIntervalMs: 2000, media: { audio: true, video: { width: 640, height: 480, frameRate: 30 } }, ...opts };
    this.token = opts.token;
    this.user = null;
    this.device = null;
    this.calls = new Map();
    this.presence = new Map();
    this.state = 'connecting';
    this.ws = null;
    this.session = null;
    this.lastSeq = 0;
    this.nextId = 1;
    this.pending = new Map(); // request id -> { msg, resolve, reject, timer }
    this.watching = [];
    this.retrying = null;
    this.onOffline = () => this.networkLost('offline');
    this.onOnline = () => this.networkBack();
    addEventListener('offline', this.onOffline);
    addEventListener('online', this.onOnline);
  }

  wsUrl() {
    const u = new URL('/ws', this.opts.server);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.searchParams.set('access_token', this.token);
    if (this.session) {
      u.searchParams.set('session', this.session);
      u.searchParams.set('last_seq', String(this.lastSeq));
    }
    return u.toString();
  }

  /** Opens the call-control connection; resolves on the server's welcome. */
  async connect() {
    const welcome = await this.open();
    this.state = 'connected';
    if (this.opts.callWaiting) await this.setCallWaiting(true);
    return welcome;
  }

  // One socket; resolves with its welcome, rejects if it closes first.
  open() {
    const ws = new WebSocket(this.wsUrl());
    this.ws = ws;
    return new Promise((resolve, reject) => {
      let welcomed = false;
      ws.addEventListener('message', (e) => {
        let m;
        try { m = JSON.parse(e.data); } catch { return; }
        if (m.type === 'welcome') {
          welcomed = true;
          this.onWelcome(m);
          resolve(m);
          return;
        }
        this.onMessage(m);
      });
      ws.addEventListener('close', (e) => {
        if (!welcomed) reject(new Error(`call control refused the connection (${e.code} ${e.reason || ''})`.trim()));
        if (this.ws === ws && welcomed) this.onClose(e);
      });
    });
  }

  onWelcome(m) {
    const lost = this.session !== null && !m.resumed;
    this.session = m.session;
    this.user = m.user;
    this.device = m.device;
    if (!m.resumed) this.lastSeq = m.seq || 0;
    if (lost) {
      // The old session is gone, and with it this device's place in its calls.
      for (const call of [...this.calls.values()]) call.finish('connection_lost', 'the call-control session was lost');
    }
    for (const p of this.pending.values()) this.ws.send(JSON.stringify(p.msg));
    if (this.watching.length && lost) this.watch(this.watching).catch(() => {});
  }

  onClose(e) {
    if (this.state === 'closed') return;
    if (e.code === 4000) {
      // Another socket of this device took the session over.
      this.shutDown(e.code, 'replaced by another connection of this device');
      return;
    }
    this.networkLost(`socket closed (${e.code})`);
  }

  // The call-control socket dropped, or the page went offline (then the rooms' sockets are dropped too: they
  // resume once the network is back).
  networkLost(cause) {
    if (this.state === 'closed') return;
    if (cause === 'offline') for (const call of this.calls.values()) call.networkLost();
    if (this.retrying) return;
    this.state = 'reconnecting';
    this.retrying = { since: performance.now(), wake: null };
    this.emit('reconnecting', { cause });
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
    }
    this.retryLoop().catch(() => {});
  }

  networkBack() {
    if (this.retrying && this.retrying.wake) this.retrying.wake();
    for (const call of this.calls.values()) call.networkBack();
  }

  async retryLoop() {
    for (let attempt = 0; this.state !== 'closed'; attempt++) {
      const since = this.retrying.since;
      if (performance.now() - since > RESUME_GIVE_UP_MS) {
        this.shutDown(1006, 'could not reconnect to call control');
        return;
      }
      // No check of navigator.onLine: browsers report false on machines with only loopback, where a server
      // on 127.0.0.1 is still reachable. An attempt while offline fails fast; `online` wakes the next one.
      try {
        const welcome = await this.open();
        this.retrying = null;
        this.state = 'connected';
        this.emit('reconnected', { resumed: !!welcome.resumed, ms: Math.round(performance.now() - since) });
        return;
      } catch { /* retry below */ }
      await new Promise((resolve) => {
        this.retrying.wake = resolve;
        setTimeout(resolve, RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]);
      });
    }
  }

  shutDown(code, reason) {
    this.state = 'closed';
    this.retrying = null;
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.reject(new Error(reason)); }
    this.pending.clear();
    for (const call of [...this.calls.values()]) call.finish('connection_lost', reason);
    removeEventListener('offline', this.onOffline);
    removeEventListener('online', this.onOnline);
    this.emit('disconnected', { code, reason });
  }

  /** A request with an id; resolves with its reply, rejects with the server's error (`err.code`). */
  request(msg) {
    if (this.state === 'closed') return Promise.reject(new Error('the client is closed'));
    const id = this.nextId++;
    const full = { ...msg, id };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no reply to ${msg.type} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { msg: full, resolve, reject, timer });
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(full));
    });
  }

  onMessage(m) {
    if (m.seq !== undefined && m.seq > this.lastSeq) this.lastSeq = m.seq;
    if ((m.type === 'reply' || m.type === 'error' || m.type === 'pong') && m.id !== undefined) {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.type === 'error') p.reject(Object.assign(new Error(m.message), { code: m.code }));
      else p.resolve(m);
      return;
    }
    switch (m.type) {
      case 'presence':
        this.presence.set(m.user, m.devices);
        this.emit('presence', { user: m.user, devices: m.devices });
        return;
      case 'token':
        this.token = m.access_token;
        this.emit('token', { token: m.access_token, expiresAt: m.expires_at });
        return;
      case 'incoming': {
        if (this.calls.has(m.call)) return;
        const call = new Call(this, { id: m.call, direction: 'incoming', from: m.from, members: m.members,
          video: m.media === 'video' });
        this.calls.set(call.id, call);
        this.emit('incoming', { call });
        return;
      }
      default:
        if (m.call && this.calls.has(m.call)) this.calls.get(m.call).onEvent(m);
    }
  }

  /** Watches these users' presence; resolves with their devices now. */
  async watch(users) {
    this.watching = [...users];
    const r = await this.request({ type: 'watch', users: this.watching });
    for (const [user, devices] of Object.entries(r.presence || {})) this.presence.set(user, devices);
    return new Map(Object.entries(r.presence || {}));
  }

  /** Calls one user or several (a group call). */
  async call(users, { video = false } = {}) {
    const r = await this.request({ type: 'invite', key: key(), to: users, media: video ? 'video' : 'audio' });
    let call = this.calls.get(r.call);
    if (call && r.merged) {
      // Glare: they had called us already, and our invite answered their call.
      call.direction = 'outgoing';
      call.setState('connecting');
      return call;
    }
    call = new Call(this, { id: r.call, direction: 'outgoing', from: this.user, members: [this.user, ...users], video });
    this.calls.set(call.id, call);
    return call;
  }

  async setCallWaiting(on) {
    await this.request({ type: 'settings', call_waiting: !!on });
  }

  /** Hangs up every call and closes the connection. */
  async close() {
    await Promise.allSettled([...this.calls.values()].map((c) => c.hangup()));
    const ws = this.ws;
    this.shutDown(1000, 'closed by the app');
    if (ws) ws.close();
  }
}

export class Call extends Emitter {
  constructor(client, { id, direction, from, members, video }) {
    super();
    this.client = client;
    this.id = id;
    this.direction = direction;
    this.from = from;
    this.members = [...new Set(members || [])];
    this.video = !!video;
    this.state = 'ringing';
    this.localStream = null;
    this.room = null;
    this.audioMuted = false;
    this.cameraOn = false;
    this.activeSpeaker = null;
    this.statsTimer = null;
    this.joinInfo = null;
  }

  get participants() { return this.room ? this.room.participants : new Map(); }

  setState(state) {
    if (this.state === state || this.state === 'ended') return;
    this.state = state;
    this.emit('state', { state });
  }

  command(type, extra = {}) {
    return this.client.request({ type, key: key(), call: this.id, ...extra });
  }

  async accept({ video = this.video } = {}) {
    this.video = video;
    this.setState('connecting');
    await this.command('accept');
  }

  async decline() { await this.command('decline'); this.finish('declined'); }

  async ignore() { await this.command('ignore'); this.finish('ignored'); }

  async hangup() {
    if (this.state === 'ended') return;
    try {
      await this.command('hangup');
    } catch (err) {
      if (!['call_ended', 'not_in_call', 'no_such_call'].includes(err.code)) throw err;
    }
    this.finish('hangup');
  }

  async invite(users) {
    await this.command('invite', { to: users });
    for (const u of users) if (!this.members.includes(u)) this.members.push(u);
  }

  onEvent(m) {
    switch (m.type) {
      case 'ringing': return this.emit('ringing', { user: m.user });
      case 'answered':
        if (this.direction === 'outgoing') this.setState('connecting');
        return this.emit('accepted', { user: m.user, device: m.device });
      case 'answered_elsewhere':
        this.emit('answered_elsewhere', { device: m.device });
        return this.finish('answered_elsewhere');
      case 'declined':
        if (m.user === this.client.user) return this.finish('declined');
        return this.emit('declined', { user: m.user });
      case 'busy': return this.emit('busy', { user: m.user });
      case 'missed':
        if (m.user === this.client.user) return this.finish('no_answer');
        return this.emit('missed', { user: m.user });
      case 'cancelled': return this.finish('cancelled');
      case 'invited':
        if (!this.members.includes(m.user)) this.members.push(m.user);
        return this.emit('invited', { user: m.user, by: m.by });
      case 'left': return this.emit('left', { user: m.user, reason: m.reason });
      case 'reconnecting': return this.emit('peer_reconnecting', { user: m.user });
      case 'reconnected': return this.emit('peer_reconnected', { user: m.user });
      case 'join': return this.join(m).catch((err) => this.fail(err));
      case 'move': return this.move(m).catch((err) => this.fail(err));
      case 'active':
        this.setState(this.moving || (this.room && this.room.reconnecting) ? 'reconnecting' : 'active');
        return this.emit('active', {});
      case 'ended': return this.finish(m.reason);
      default: return undefined;
    }
  }

  // The call's room is ready on an SFU: capture, then join it (or the room a `move` named meanwhile).
  async join(m) {
    if (this.room) return;
    if (this.joinInfo) { this.joinInfo = m; return; } // capturing already: the latest room wins
    this.joinInfo = m;
    this.setState('connecting');
    const o = this.client.opts;
    this.localStream = await navigator.mediaDevices.getUserMedia({
      audio: o.media.audio, video: this.video ? o.media.video : false });
    if (this.state === 'ended') { this.stopLocal(); return; }
    this.cameraOn = this.video;
    await this.enter(this.joinInfo);
    this.statsTimer = setInterval(() => this.readQuality(), o.statsIntervalMs);
  }

  // Joins the room `m` names with the local tracks captured already. When a `move` (or the call's end) replaces
  // the room before it has joined, its failure to join is not the call's.
  async enter(m) {
    const o = this.client.opts;
    const room = new Room({ url: m.sfu_url, token: m.token, iceServers: m.ice_servers || [],
      rtcConfig: { ...o.rtcConfig }, simulcastMinWidth: o.simulcastMinWidth,
      emit: (type, data) => this.onRoom(type, data) });
    this.room = room;
    try {
      await room.join(this.localStream);
    } catch (err) {
      if (this.room !== room || this.state === 'ended') return;
      throw err;
    }
    if (this.room !== room) return;
    if (this.audioMuted) room.setMuted('audio', true);
    if (this.video && !this.cameraOn) room.setMuted('video', true);
  }

  // Call control moved the call's room to another SFU node (its node is draining or died): leave the old
  // room without ending the call, and join the new one with the same microphone and camera. The call is
  // `reconnecting` until media flows on the new node.
  async move(m) {
    if (this.state === 'ended' || !this.joinInfo) return;
    if (!this.room) {
      // Still capturing for the first room: join() goes to this one instead.
      this.joinInfo = m;
      return;
    }
    const old = this.room;
    old.o.emit = () => {}; // what the old room says from now on (its socket closing, say) is not the call's
    for (const p of old.participants.values()) this.emit('participant_left', { participant: p });
    old.close();
    this.joinInfo = m;
    // A move that follows another before it connected: the gap counts from the first.
    this.moving = this.moving || { since: performance.now() };
    this.setState('reconnecting');
    this.emit('reconnecting', { cause: 'moved', reason: m.reason });
    await this.enter(m);
  }

  onRoom(type, data) {
    switch (type) {
      case 'media_connected':
        if (this.moving) {
          const ms = Math.round(performance.now() - this.moving.since);
          this.moving = null;
          this.setState('active');
          return this.emit('reconnected', { ms, moved: true });
        }
        if (this.state === 'connecting') this.setState('active');
        return this.emit('active', {});
      case 'reconnecting':
        this.setState('reconnecting');
        return this.emit('reconnecting', data);
      case 'reconnected':
        this.setState('active');
        return this.emit('reconnected', data);
      case 'speakers':
        this.activeSpeaker = data.speakers.length ? data.speakers[0].participant : null;
        return this.emit('speakers', data);
      case 'room_left':
        if (this.state !== 'ended') this.finish('connection_lost', data.reason);
        return undefined;
      default:
        return this.emit(type, data);
    }
  }

  async readQuality() {
    if (!this.room) return;
    try {
      const participants = await this.room.readQuality();
      if (participants.length) this.emit('quality', { participants });
    } catch (err) {
      console.warn('hualu: getStats failed', err);
    }
  }

  networkLost() { if (this.room) this.room.suspend(); }

  networkBack() { if (this.room) this.room.networkBack(); }

  async setMuted(muted) {
    this.audioMuted = !!muted;
    if (this.localStream) for (const t of this.localStream.getAudioTracks()) t.enabled = !muted;
    if (this.room) this.room.setMuted('audio', this.audioMuted);
  }

  async setCamera(on) {
    if (!this.room) throw new Error('the call is not connected yet');
    const t = this.room.sender('video');
    if (!on) {
      if (t && t.sender.track) { t.sender.track.stop(); this.localStream.removeTrack(t.sender.track); }
      if (t) await t.sender.replaceTrack(null);
      this.room.setMuted('video', true);
      this.cameraOn = false;
      return;
    }
    const cam = await navigator.mediaDevices.getUserMedia({ video: this.client.opts.media.video });
    const track = cam.getVideoTracks()[0];
    this.localStream.addTrack(track);
    if (t) {
      await t.sender.replaceTrack(track);
      this.room.setMuted('video', false);
    } else {
      this.room.publish(track, this.localStream);
      await this.room.renegotiate();
    }
    this.cameraOn = true;
  }

  async setDevices({ audio, video } = {}) {
    if (!this.room) throw new Error('the call is not connected yet');
    const swap = async (kind, deviceId) => {
      const t = this.room.sender(kind);
      if (!deviceId || !t || !t.sender.track) return;
      const base = kind === 'audio' ? (this.client.opts.media.audio === true ? {} : this.client.opts.media.audio)
        : this.client.opts.media.video;
      const s = await navigator.mediaDevices.getUserMedia({ [kind]: { ...base, deviceId: { exact: deviceId } } });
      const track = s.getTracks()[0];
      const old = t.sender.track;
      await t.sender.replaceTrack(track);
      this.localStream.removeTrack(old);
      old.stop();
      if (kind === 'audio') track.enabled = !this.audioMuted;
      this.localStream.addTrack(track);
    };
    await swap('audio', audio);
    await swap('video', video);
  }

  async getStats() { return this.room && this.room.pc ? this.room.pc.getStats() : null; }

  fail(err) {
    console.error('hualu: joining the call failed', err);
    this.hangup().catch(() => {});
    this.finish('error', String(err && err.message || err));
  }

  stopLocal() {
    if (this.localStream) for (const t of this.localStream.getTracks()) t.stop();
  }

  // The call is over for this device: the room is left, capture stops, `ended` fires once.
  finish(reason, message) {
    if (this.state === 'ended') return;
    this.state = 'ended';
    clearInterval(this.statsTimer);
    if (this.room) this.room.close();
    this.stopLocal();
    this.client.calls.delete(this.id);
    this.emit('state', { state: 'ended' });
    this.emit('ended', message ? { reason, message } : { reason });
  }
}
