// Call quality from RTCPeerConnection.getStats(): per remote participant, audio loss, jitter, RTT, and an
// ITU-T E-model MOS estimate. The E-model is the same one the load harness scores calls with
// (loadtest/src/quality/emodel.rs): full G.107 delay impairment with its default parameters, the G.107.1
// wideband scale (Ro = 129, MOS from R / 1.29), Opus WB VBR 13 kb/s constants (Ie 19.96, Bpl 19.50 random,
// 16.92 bursty; Alahmadi, Pocta and Melvin 2021), A = 0.

// G.107 default transmission parameters (SLR 8, RLR 2, STMR 15, TELR 65, WEPL 110, Nc -70, Nfor -64, Ps = Pr = 35,
// Ds = Dr = 3, qdu 1), and what they give.
const P = { slr: 8, rlr: 2, stmr: 15, telr: 65, wepl: 110, nc: -70, nfor: -64, ps: 35, pr: 35, ds: 3, dr: 3, qdu: 1 };
const dbToPower = (db) => 10 ** (db / 10);

function totalNoise() {
  const olr = P.slr + P.rlr;
  const nfo = P.nfor + P.rlr;
  const pre = P.pr + 10 * Math.log10(1 + dbToPower(10 - (P.stmr + P.dr)));
  const nor = P.rlr - 121 + pre + 0.008 * (pre - 35) ** 2;
  const nos = P.ps - P.slr - P.ds - 100 + 0.004 * (P.ps - olr - P.ds - 14) ** 2;
  return 10 * Math.log10(dbToPower(P.nc) + dbToPower(nos) + dbToPower(nor) + dbToPower(nfo));
}
const NO = totalNoise();
const RO_NB = 15 - 1.5 * (P.slr + NO);
const RO_WB = 129;

function ist(t) {
  const stmro = -10 * Math.log10(dbToPower(-P.stmr) + Math.exp(-t / 4) * dbToPower(-P.telr));
  return 12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
    - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
    - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13) + 29;
}

function iq() {
  const q = 37 - 15 * Math.log10(P.qdu);
  const g = 1.07 + 0.258 * q + 0.0602 * q * q;
  const y = (RO_NB - 100) / 15 + 46 / 8.4 - g / 9;
  const z = 46 / 30 - g / 40;
  return 15 * Math.log10(1 + 10 ** y + 10 ** z);
}

function simultaneous(t) {
  const xolr = P.slr + P.rlr + 0.2 * (64 + NO - P.rlr);
  const iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8);
  return ist(t) + iolr + iq();
}

function idte(t) {
  const terv = P.telr - 40 * Math.log10((1 + t / 10) / (1 + t / 150)) + 6 * Math.exp(-0.3 * t * t);
  const d = -1.5 * (NO - P.rlr) - (80 + 2.5 * (terv - 14));
  return (d / 2 + Math.sqrt(d * d / 4 + 100) - 1) * (1 - Math.exp(-t));
}

function idle(tr) {
  const d = RO_NB - 10.5 * (P.wepl + 7) * (tr + 1) ** -0.25;
  return d / 2 + Math.sqrt(d * d / 4 + 169);
}

function idd(ta) {
  if (ta <= 100) return 0;
  const x = Math.log10(ta / 100) / Math.log10(2);
  return 25 * ((1 + x ** 6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2);
}

/** G.107's MOS cubic, clamped to [1, 4.5]. */
export function mosFromR(r) {
  if (!(r >= 0)) return 1;
  if (r > 100) return 4.5;
  return Math.min(4.5, Math.max(1, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6));
}

/** The narrowband R (G.107, default parameters) of a codec with `ie` and `bpl`, for the unit tests' vectors. */
export function narrowbandR({ delayMs, lossPct, ie = 0, bpl = 25.1, burstR = 1 }) {
  const t = Math.max(0, delayMs || 0);
  return RO_NB - simultaneous(t) - (idte(t) + idle(2 * t) + idd(t)) - ieEff(ie, bpl, lossPct, burstR);
}

function ieEff(ie, bpl, lossPct, burstR) {
  const ppl = Math.min(100, Math.max(0, lossPct || 0));
  if (ppl === 0) return ie;
  const b = burstR > 1 ? burstR : 1;
  return ie + (95 - ie) * ppl / (ppl / b + bpl);
}

/** E-model R and MOS on the wideband scale with Opus WB VBR 13 kb/s constants, A = 0. */
export function emodel({ delayMs, lossPct, burstR = 1 }) {
  const t = Math.max(0, delayMs || 0);
  const bpl = burstR > 1.1 ? 16.92 : 19.5;
  const r = RO_WB - simultaneous(t) - (idte(t) + idle(2 * t) + idd(t)) - ieEff(19.96, bpl, lossPct, burstR);
  return { r, mos: mosFromR(r / 1.29) };
}

// What the delay estimate adds to the network's one-way delay: 20 ms frame + 6.5 ms Opus look-ahead, and a
// typical 40 ms of capture and playout in a browser.
const CODEC_MS = 26.5;
const DEVICE_MS = 40;

/** `good` at MOS >= 4 (carrier grade), `fair` at >= 3.6, else `poor`. */
export const level = (mos) => (mos >= 4 ? 'good' : mos >= 3.6 ? 'fair' : 'poor');

/**
 * Reads per-participant quality from one getStats() report. `owners` maps a received track's id to its
 * participant id; `prev` holds the counters of the last reading (updated in place). Returns participant id ->
 * Quality.
 */
export function readQuality(report, owners, prev, nowMs) {
  const rttMs = roundTrip(report);
  const byParticipant = new Map();
  report.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    const owner = owners.get(s.trackIdentifier) ?? owners.get(s.mid);
    if (owner === undefined) return;
    const acc = byParticipant.get(owner) || { audio: null, video: null, codecs: [] };
    if (s.kind === 'audio' && !acc.audio) acc.audio = s;
    if (s.kind === 'video' && !acc.video) acc.video = s;
    const codec = s.codecId && report.get(s.codecId);
    if (codec && codec.mimeType && !acc.codecs.includes(codec.mimeType)) acc.codecs.push(codec.mimeType);
    byParticipant.set(owner, acc);
  });
  const out = new Map();
  for (const [owner, acc] of byParticipant) {
    out.set(owner, scoreOne(owner, acc, prev, rttMs, nowMs));
  }
  return out;
}

function scoreOne(owner, acc, prev, rttMs, nowMs) {
  const last = prev.get(owner) || { received: 0, lost: 0, frames: 0, at: nowMs };
  const a = acc.audio;
  const received = a ? a.packetsReceived || 0 : 0;
  const lost = a ? Math.max(0, a.packetsLost || 0) : 0;
  const dRecv = Math.max(0, received - last.received);
  const dLost = Math.max(0, lost - last.lost);
  const lossPct = dRecv + dLost > 0 ? (100 * dLost) / (dRecv + dLost) : 0;
  const jitterMs = a && a.jitter ? a.jitter * 1000 : 0;
  const bufferMs = a && a.jitterBufferEmittedCount > 0
    ? (1000 * a.jitterBufferDelay) / a.jitterBufferEmittedCount : 2 * jitterMs;
  const delayMs = (rttMs ?? 0) / 2 + bufferMs + CODEC_MS + DEVICE_MS;
  const { r, mos } = emodel({ delayMs, lossPct });
  const frames = acc.video ? acc.video.framesDecoded || 0 : 0;
  const seconds = Math.max(0.001, (nowMs - last.at) / 1000);
  const fps = acc.video ? Math.max(0, frames - last.frames) / seconds : null;
  prev.set(owner, { received, lost, frames, at: nowMs });
  return { lossPct, jitterMs, rttMs, delayMs, r, mos, level: level(mos), fps, codecs: acc.codecs };
}

// The RTT to the SFU: the selected candidate pair's, else a remote-inbound-rtp's (from RTCP receiver reports).
function roundTrip(report) {
  let rtt = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = report.get(s.selectedCandidatePairId);
      if (pair && pair.currentRoundTripTime !== undefined) rtt = pair.currentRoundTripTime * 1000;
    }
  });
  if (rtt === null) {
    report.forEach((s) => {
      if (s.type === 'remote-inbound-rtp' && s.roundTripTime !== undefined && rtt === null) rtt = s.roundTripTime * 1000;
    });
  }
  return rtt;
}
