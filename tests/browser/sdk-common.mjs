// What the SDK drivers (sdk-calls.mjs for Chromium, sdk-firefox.mjs for Firefox with Chromium) share: the
// page-side harness that drives web/sdk/hualu.js, and node-side waits on it.
//
// The harness runs in a page loaded from the server under test (the demo app's `/`, left at its sign-in
// screen), so `/sdk/hualu.js` and `/dev/token` are same-origin and getUserMedia sees a secure origin.

// Page script, evaluated once per page: defines window.T.
export const HARNESS = String.raw`
window.T = {
  events: [], // every call and client event, in order: { t, call, type, ...fields }
  calls: new Map(),
  async start(user, device, relay) {
    const sdk = await import('/sdk/hualu.js');
    const token = await sdk.devToken(user, device);
    this.client = new sdk.HualuClient({ token, statsIntervalMs: 1000,
      media: { audio: true, video: { width: 320, height: 240, frameRate: 15 } },
      rtcConfig: relay ? { iceTransportPolicy: 'relay' } : {} });
    const note = (call, type) => (e) => this.events.push({ t: Math.round(performance.now()), call, type,
      reason: e && e.reason, user: e && e.user, device: e && e.device, cause: e && e.cause, ms: e && e.ms });
    for (const type of ['reconnecting', 'reconnected', 'disconnected']) this.client.on(type, note(null, 'client_' + type));
    this.client.on('incoming', ({ call }) => { this.watchCall(call); note(call.id, 'incoming')({ user: call.from }); });
    await this.client.connect();
    this.note = note;
    return { user: this.client.user, device: this.client.device };
  },
  watchCall(call) {
    this.calls.set(call.id, call);
    for (const type of ['ringing', 'accepted', 'declined', 'busy', 'missed', 'answered_elsewhere', 'active',
      'reconnecting', 'reconnected', 'ended', 'left', 'invited']) {
      call.on(type, (e) => this.events.push({ t: Math.round(performance.now()), call: call.id, type,
        reason: e && e.reason, user: e && e.user, device: e && e.device, cause: e && e.cause, ms: e && e.ms }));
    }
  },
  async place(users, video) {
    const call = await this.client.call(users, { video });
    this.watchCall(call);
    return call.id;
  },
  call(id) {
    const c = id ? this.calls.get(id) : [...this.calls.values()].pop();
    if (!c) throw new Error('no such call ' + id);
    return c;
  },
  async act(what, id) { await this.call(id)[what](); return true; },
  // What this page receives in its latest call: per remote identity, audio packets, video frames, codecs, and
  // the quality reading; plus the selected candidate pair's local candidate type.
  async media(id) {
    const call = this.call(id);
    const report = await call.getStats();
    const out = { state: call.state, participants: {}, localCandidate: null };
    if (!report) return out;
    const owners = call.room.owners;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = report.get(s.selectedCandidatePairId);
        const local = pair && report.get(pair.localCandidateId);
        if (local) out.localCandidate = local.candidateType;
      }
      if (s.type !== 'inbound-rtp') return;
      const pid = owners.get(s.trackIdentifier) ?? owners.get(s.mid);
      const p = pid && call.participants.get(pid);
      if (!p) return;
      const o = out.participants[p.identity] ||= { audioPackets: 0, framesDecoded: 0, codecs: [], mos: null };
      if (s.kind === 'audio') o.audioPackets += s.packetsReceived || 0;
      if (s.kind === 'video') o.framesDecoded += s.framesDecoded || 0;
      const codec = s.codecId && report.get(s.codecId);
      if (codec && !o.codecs.includes(codec.mimeType)) o.codecs.push(codec.mimeType);
      if (p.quality) o.mos = Math.round(p.quality.mos * 100) / 100;
    });
    return out;
  },
  seen(type, id) { return this.events.filter((e) => e.type === type && (!id || e.call === id)); },
};
`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `probe` (async, returns a value) until `ok(value)` holds or `ms` pass; returns { ok, value, ms }.
export async function until(probe, ok, ms, every = 250) {
  const t0 = Date.now();
  let value;
  for (;;) {
    try { value = await probe(); } catch (err) { value = { error: String(err && err.message || err) }; }
    if (ok(value)) return { ok: true, value, ms: Date.now() - t0 };
    if (Date.now() - t0 > ms) return { ok: false, value, ms: Date.now() - t0 };
    await sleep(every);
  }
}

// True when `m` (a media() result) shows at least `audio` packets and `frames` decoded frames from each of
// `from` (identities); `frames` 0 asks for no video.
export function receives(m, from, audio, frames) {
  if (!m || !m.participants) return false;
  return from.every((u) => {
    const p = m.participants[u];
    return p && p.audioPackets >= audio && p.framesDecoded >= frames;
  });
}

// A media() result in one line, for PASS/FAIL figures.
export function fmtMedia(m) {
  if (!m || !m.participants) return JSON.stringify(m);
  const parts = Object.entries(m.participants).map(([u, p]) =>
    `${u}: ${p.audioPackets} audio pkts, ${p.framesDecoded} frames, ${p.codecs.join('+')}, MOS ${p.mos}`);
  return `${parts.join('; ') || 'nothing received'} (call ${m.state}, local candidate ${m.localCandidate})`;
}
