//! Receive-side accounting for one RTP stream: sequence numbers (expected, received, duplicates, reordered),
//! RFC 3550 interarrival jitter and one-way delay.
//!
//! Loss here is counted by sequence numbers only: a DTX pause sends no packets but skips no sequence numbers, so it
//! is not loss, however far the RTP timestamp jumps. Times are `f64` milliseconds on the caller's clock.

use serde::{Deserialize, Serialize};

/// How many recent sequence numbers [`StreamStats`] remembers to tell a duplicate from a late packet.
const SEEN_WINDOW: u64 = 1024;

/// Width of one delay-histogram bucket, in ms.
const BUCKET_MS: f64 = 1.0;

/// Delay-histogram buckets below the overflow bucket: 1 ms each, up to 2 s.
const BUCKETS: usize = 2000;

/// Extends 16-bit RTP sequence numbers to 64 bits across wraps (RFC 3550 A.1 style): each number is placed in the
/// 65536-cycle that brings it closest to the highest number seen so far.
///
/// Extended numbers start at `65536 + first`, so that a packet sent before the first one (and arriving after it,
/// across a wrap) still gets a smaller extended number instead of underflowing.
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    /// An extender that has seen nothing.
    pub fn new() -> SeqExtender {
        SeqExtender::default()
    }

    /// The extended number of `seq`.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let seq = u64::from(seq);
        let Some(highest) = self.highest else {
            let ext = (1 << 16) + seq;
            self.highest = Some(ext);
            return ext;
        };
        let base = highest & !0xffff;
        let ext = [base.saturating_sub(1 << 16), base, base + (1 << 16)]
            .into_iter()
            .map(|cycle| cycle + seq)
            .min_by_key(|&ext| ext.abs_diff(highest))
            .unwrap_or(base + seq);
        self.highest = Some(highest.max(ext));
        ext
    }
}

/// RFC 3550 (section 6.4.1, A.8) interarrival jitter, kept as a float in RTP timestamp units:
/// `D = (Rj - Ri) - (Sj - Si)`, `J += (|D| - J) / 16`, updated per packet in arrival order.
#[derive(Debug, Clone)]
pub struct InterarrivalJitter {
    clock_rate: f64,
    /// The previous packet's arrival (ms) and RTP timestamp.
    prev: Option<(f64, u32)>,
    jitter: f64,
}

impl InterarrivalJitter {
    /// An estimator for a stream whose RTP clock runs at `clock_rate` Hz (48000 for Opus; 0 is taken as 48000).
    pub fn new(clock_rate: u32) -> InterarrivalJitter {
        let clock_rate = if clock_rate == 0 { 48_000 } else { clock_rate };
        InterarrivalJitter {
            clock_rate: f64::from(clock_rate),
            prev: None,
            jitter: 0.0,
        }
    }

    /// Takes one arrival; the first only sets the reference.
    pub fn update(&mut self, arrival_ms: f64, rtp_ts: u32) {
        if let Some((prev_ms, prev_ts)) = self.prev {
            let arrival_delta = (arrival_ms - prev_ms) * self.clock_rate / 1000.0;
            // The timestamp difference wraps with the 32-bit clock; as i32 it is signed (reordering).
            let ts_delta = f64::from(rtp_ts.wrapping_sub(prev_ts) as i32);
            let d = arrival_delta - ts_delta;
            if d.is_finite() {
                self.jitter += (d.abs() - self.jitter) / 16.0;
            }
        }
        self.prev = Some((arrival_ms, rtp_ts));
    }

    /// The jitter in RTP timestamp units.
    pub fn ticks(&self) -> f64 {
        self.jitter
    }

    /// The jitter in ms.
    pub fn ms(&self) -> f64 {
        self.jitter * 1000.0 / self.clock_rate
    }
}

/// One-way delay samples in 1 ms buckets up to 2 s plus an overflow bucket (about 8 KB, allocated at the first
/// sample), with exact count, mean, min and max.
#[derive(Debug, Clone, Default)]
pub struct DelayHistogram {
    buckets: Vec<u32>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// One-way delay statistics, in ms. Percentiles are nearest-rank, read at the middle of their 1 ms bucket and kept
/// within `[min, max]` (the lowest and highest ranks read exactly `min` and `max`; above 2 s, `max`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DelaySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Minimum.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl DelayHistogram {
    /// An empty histogram.
    pub fn new() -> DelayHistogram {
        DelayHistogram::default()
    }

    /// Adds a sample, in ms. NaN and infinite samples are ignored; negative ones (clock offset) count in the first
    /// bucket but keep their value in the mean and minimum.
    pub fn record(&mut self, ms: f64) {
        if !ms.is_finite() {
            return;
        }
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS + 1];
            self.min = ms;
            self.max = ms;
        }
        let i = ((ms.max(0.0) / BUCKET_MS) as usize).min(BUCKETS);
        self.buckets[i] = self.buckets[i].saturating_add(1);
        self.count += 1;
        self.sum += ms;
        self.min = self.min.min(ms);
        self.max = self.max.max(ms);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean, if there are samples.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The `p`-th percentile (0 to 100), if there are samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0 * self.count as f64).ceil() as u64).max(1);
        if rank == 1 {
            return Some(self.min);
        }
        if rank >= self.count {
            return Some(self.max);
        }
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                if i == BUCKETS {
                    return Some(self.max);
                }
                return Some(((i as f64 + 0.5) * BUCKET_MS).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Count, mean, min, percentiles and max, if there are samples.
    pub fn summary(&self) -> Option<DelaySummary> {
        let mean = self.mean()?;
        let at = |p| self.percentile(p).unwrap_or(mean);
        Some(DelaySummary {
            count: self.count,
            mean,
            min: self.min,
            p50: at(50.0),
            p95: at(95.0),
            p99: at(99.0),
            max: self.max,
        })
    }
}

/// How a packet arrived, by sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalKind {
    /// Higher than every sequence number before it (gaps allowed).
    InOrder,
    /// Lower than one already received: it arrived after a packet sent later.
    Reordered,
    /// A copy of one already received.
    Duplicate,
}

/// Receive-side accounting for one RTP stream. Feed every arriving packet to [`StreamStats::on_packet`] (16-bit
/// sequence numbers) or [`StreamStats::on_packet_ext`] (already extended, as str0m gives them); do not mix the two.
#[derive(Debug, Clone)]
pub struct StreamStats {
    extender: SeqExtender,
    first: Option<u64>,
    highest: u64,
    received: u64,
    duplicates: u64,
    reordered: u64,
    /// Bit `s % SEEN_WINDOW` is set when `s`, within `SEEN_WINDOW` of `highest`, has arrived.
    seen: [u64; (SEEN_WINDOW / 64) as usize],
    jitter: InterarrivalJitter,
    delay: DelayHistogram,
}

impl StreamStats {
    /// Accounting for a stream with an RTP clock of `clock_rate` Hz (48000 for Opus).
    pub fn new(clock_rate: u32) -> StreamStats {
        StreamStats {
            extender: SeqExtender::new(),
            first: None,
            highest: 0,
            received: 0,
            duplicates: 0,
            reordered: 0,
            seen: [0; (SEEN_WINDOW / 64) as usize],
            jitter: InterarrivalJitter::new(clock_rate),
            delay: DelayHistogram::new(),
        }
    }

    /// Takes a packet with a 16-bit sequence number; returns its extended number and how it arrived. `send_ms` is
    /// the sender's send time on the same clock as `arrival_ms`, when known: it gives the one-way delay.
    pub fn on_packet(&mut self, seq: u16, rtp_ts: u32, arrival_ms: f64, send_ms: Option<f64>) -> (u64, ArrivalKind) {
        let ext = self.extender.extend(seq);
        (ext, self.on_packet_ext(ext, rtp_ts, arrival_ms, send_ms))
    }

    /// Takes a packet whose sequence number is already extended. Duplicates count only as duplicates: they change
    /// neither jitter nor delay.
    pub fn on_packet_ext(&mut self, seq: u64, rtp_ts: u32, arrival_ms: f64, send_ms: Option<f64>) -> ArrivalKind {
        let kind = self.classify(seq);
        if kind == ArrivalKind::Duplicate {
            self.duplicates += 1;
            return kind;
        }
        self.received += 1;
        self.reordered += u64::from(kind == ArrivalKind::Reordered);
        self.jitter.update(arrival_ms, rtp_ts);
        if let Some(sent) = send_ms {
            self.delay.record(arrival_ms - sent);
        }
        kind
    }

    /// Packets the sender sent from the first to the highest sequence number seen: `highest - first + 1`.
    pub fn expected(&self) -> u64 {
        self.first.map_or(0, |first| (self.highest - first).saturating_add(1))
    }

    /// Distinct packets received (duplicates not counted).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets never received: `expected - received` (never negative).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Copies of packets already received.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets that arrived after a higher sequence number.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// The lowest and highest extended sequence numbers seen.
    pub fn seq_range(&self) -> Option<(u64, u64)> {
        self.first.map(|first| (first, self.highest))
    }

    /// RFC 3550 interarrival jitter, in ms.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter.ms()
    }

    /// One-way delay samples.
    pub fn delay(&self) -> &DelayHistogram {
        &self.delay
    }

    /// Classifies `seq` and marks it seen.
    fn classify(&mut self, seq: u64) -> ArrivalKind {
        let Some(first) = self.first else {
            self.first = Some(seq);
            self.highest = seq;
            self.mark(seq);
            return ArrivalKind::InOrder;
        };
        if seq > self.highest {
            self.clear_after_highest(seq);
            self.highest = seq;
            self.mark(seq);
            return ArrivalKind::InOrder;
        }
        if self.highest - seq < SEEN_WINDOW {
            if self.is_marked(seq) {
                return ArrivalKind::Duplicate;
            }
            self.mark(seq);
        }
        // Older than the window: it cannot be checked, so it is taken as new.
        self.first = Some(first.min(seq));
        ArrivalKind::Reordered
    }

    /// Forgets the bits of the numbers `highest + 1 ..= new_highest` (they last held numbers a window older).
    fn clear_after_highest(&mut self, new_highest: u64) {
        if new_highest - self.highest >= SEEN_WINDOW {
            self.seen = [0; (SEEN_WINDOW / 64) as usize];
            return;
        }
        for s in self.highest + 1..=new_highest {
            let i = (s % SEEN_WINDOW) as usize;
            self.seen[i / 64] &= !(1 << (i % 64));
        }
    }

    fn mark(&mut self, seq: u64) {
        let i = (seq % SEEN_WINDOW) as usize;
        self.seen[i / 64] |= 1 << (i % 64);
    }

    fn is_marked(&self, seq: u64) -> bool {
        let i = (seq % SEEN_WINDOW) as usize;
        self.seen[i / 64] & (1 << (i % 64)) != 0
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
