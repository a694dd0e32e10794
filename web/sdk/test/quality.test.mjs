// Unit tests of the SDK's E-model (web/sdk/quality.js) and its getStats() reading, run with `node --test`
// (scripts/test does). The vectors are the guide's G.107 check values (G.711 with PLC, Ie 0, Bpl 25.1).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emodel, level, mosFromR, narrowbandR, readQuality } from '../quality.js';

const close = (got, want, tol, what) => assert.ok(Math.abs(got - want) <= tol, `${what}: ${got} vs ${want} ± ${tol}`);

test('G.107 check values: R and MOS from delay and random loss', () => {
  const vectors = [
    [100, 0, 90.7, 4.35], [150, 0, 89.5, 4.33], [200, 0, 85.8, 4.22], [300, 0, 72.7, 3.72],
    [400, 0, 62.3, 3.22], [100, 1, 87.0, 4.26], [100, 3, 80.5, 4.04], [100, 10, 63.6, 3.28],
  ];
  for (const [delayMs, lossPct, r, mos] of vectors) {
    const got = narrowbandR({ delayMs, lossPct });
    close(got, r, 0.15, `R at ${delayMs} ms, ${lossPct}%`);
    close(mosFromR(got), mos, 0.01, `MOS at ${delayMs} ms, ${lossPct}%`);
  }
  close(narrowbandR({ delayMs: 0, lossPct: 0 }), 93.2, 0.1, 'R at zero delay');
});

test('wideband Opus: R = 129 - Is - Ie at no delay, as the load harness scores it', () => {
  const { r, mos } = emodel({ delayMs: 0, lossPct: 0 });
  close(r, 129 - 1.41 - 19.96, 0.2, 'R wb');
  assert.ok(mos > 4.1 && mos < 4.2, `MOS ${mos}`);
  assert.equal(mosFromR(r / 1.29), mos);
});

test('loss, burstiness and delay lower the score; the cubic is clamped', () => {
  const base = emodel({ delayMs: 100, lossPct: 0 }).r;
  const lossy = emodel({ delayMs: 100, lossPct: 2 }).r;
  const bursty = emodel({ delayMs: 100, lossPct: 2, burstR: 2.5 }).r;
  const slow = emodel({ delayMs: 300, lossPct: 0 }).r;
  assert.ok(lossy < base - 3 && bursty < lossy - 1 && slow < base - 5, `${base} ${lossy} ${bursty} ${slow}`);
  assert.equal(mosFromR(-5), 1);
  assert.equal(mosFromR(120), 4.5);
  assert.equal(mosFromR(NaN), 1);
  assert.deepEqual([level(4.2), level(3.8), level(2.0)], ['good', 'fair', 'poor']);
});

test('readQuality counts loss over the interval, per participant, and reads RTT from the pair', () => {
  const stats = (received, lost, frames) => new Map([
    ['T', { type: 'transport', selectedCandidatePairId: 'P' }],
    ['P', { type: 'candidate-pair', currentRoundTripTime: 0.04 }],
    ['A', { type: 'inbound-rtp', kind: 'audio', trackIdentifier: 'a1', packetsReceived: received, packetsLost: lost,
      jitter: 0.012, jitterBufferDelay: 4, jitterBufferEmittedCount: 100, codecId: 'C' }],
    ['V', { type: 'inbound-rtp', kind: 'video', trackIdentifier: 'v1', framesDecoded: frames, codecId: 'D' }],
    ['C', { type: 'codec', mimeType: 'audio/opus' }],
    ['D', { type: 'codec', mimeType: 'video/VP8' }],
  ]);
  const owners = new Map([['a1', 'p1'], ['v1', 'p1']]);
  const prev = new Map();
  readQuality(stats(100, 0, 30), owners, prev, 1000);
  const q = readQuality(stats(195, 5, 60), owners, prev, 3000).get('p1');
  close(q.lossPct, 5, 1e-9, 'loss over the interval: 5 of 100');
  close(q.jitterMs, 12, 1e-9, 'jitter');
  assert.equal(q.rttMs, 40);
  close(q.delayMs, 20 + 40 + 26.5 + 40, 1e-9, 'delay: rtt/2 + buffer + codec + device');
  close(q.fps, 15, 1e-9, 'fps');
  assert.deepEqual(q.codecs, ['audio/opus', 'video/VP8']);
  assert.ok(q.mos < emodel({ delayMs: q.delayMs, lossPct: 0 }).mos);
});
