//! Call quality: what a receiver measures of one audio stream, and the E-model score made from it. Pure arithmetic:
//! nothing here reads a clock or does I/O. Times are `f64` milliseconds on the caller's monotonic clock.
//!
//! - [`stream`]: sequence accounting (expected, received, lost, duplicates, reordered), RFC 3550 jitter, one-way
//!   delay percentiles.
//! - [`jitter_buffer`]: a playout model, adaptive at talk-spurt starts, that decides which frames play, which are
//!   missing and which arrive too late.
//! - [`loss_pattern`]: RFC 3611 burst/gap metrics and a Gilbert fit (G.107's BurstR) over the frames' fates.
//! - [`emodel`]: ITU-T G.107 / G.107.1 / G.107.2, codec constants, labels.
//!
//! [`StreamQuality`] ties the first three together for one received stream. The drain rule: push every packet that
//! arrived up to `now`, then poll (or [`StreamQuality::play`]) until nothing is due, then sleep until
//! [`StreamQuality::next_deadline`] or the next arrival. At the end, [`StreamQuality::summary`] gives the stream's
//! figures and [`StreamSummary::score`] its R, MOS and mouth-to-ear delay.
//!
//! ```text
//! let mut q = StreamQuality::new(&JitterConfig::default());
//! // on each RTP packet:      q.push(seq_ext, rtp_ts, arrival_ms, Some(send_ms), payload);
//! //                          q.play(now_ms, Some(&mut decoder));
//! // on a timer at deadline:  q.play(now_ms, Some(&mut decoder));
//! let summary = q.summary();
//! let score = summary.score(&Codec::default(), device_io_ms, rtt_ms);  // None if nothing was expected
//! ```
//!
//! DTX needs nothing special: send no packets in silence, keep sequence numbers contiguous and let the RTP
//! timestamp run on. Loss is counted by sequence numbers only, and the playout model reports the pause as
//! [`Playout::Silence`] before re-anchoring.

pub mod emodel;
pub mod jitter_buffer;
pub mod loss_pattern;
pub mod stream;

pub use emodel::{Codec, Conditions, EModel, Label, MouthToEar, Rating, Scale};
pub use jitter_buffer::{JitterBuffer, JitterConfig, JitterConfigError, JitterStats, Playout, PlayoutSink};
pub use loss_pattern::{BurstGap, Fate, Gilbert, LossPattern};
pub use stream::{ArrivalKind, DelayHistogram, DelaySummary, SeqExtender, StreamStats};

use serde::{Deserialize, Serialize};

/// One received stream's accounting and playout model together. `T` is the payload type (`Vec<u8>` by default).
#[derive(Debug)]
pub struct StreamQuality<T = Vec<u8>> {
    stats: StreamStats,
    buffer: JitterBuffer<T>,
}

impl<T> StreamQuality<T> {
    /// A stream with this playout model (its `clock_rate` is also the stream's RTP clock rate).
    pub fn new(config: &JitterConfig) -> StreamQuality<T> {
        let buffer = JitterBuffer::new(config);
        StreamQuality {
            stats: StreamStats::new(buffer.config().clock_rate),
            buffer,
        }
    }

    /// Takes an arriving packet: extended sequence number (str0m's `SeqNo`; extend 16-bit ones with
    /// [`SeqExtender`]), RTP timestamp, arrival time, the sender's send time on the same clock if known (for
    /// one-way delay), and the payload.
    pub fn push(&mut self, seq: u64, rtp_ts: u32, arrival_ms: f64, send_ms: Option<f64>, payload: T) {
        self.stats.on_packet_ext(seq, rtp_ts, arrival_ms, send_ms);
        self.buffer.push(seq, rtp_ts, arrival_ms, payload);
    }

    /// The next playout step due at `now_ms`; call until `None`.
    pub fn poll(&mut self, now_ms: f64) -> Option<Playout<'_, T>> {
        self.buffer.poll(now_ms)
    }

    /// Drains the playout due at `now_ms` into `sink` (a decoder), or only counts it with `None`; returns the
    /// steps taken.
    pub fn play<S: PlayoutSink<T> + ?Sized>(&mut self, now_ms: f64, sink: Option<&mut S>) -> usize {
        self.buffer.play(now_ms, sink)
    }

    /// When the next playout step is due, or `None` until another packet arrives.
    pub fn next_deadline(&self) -> Option<f64> {
        self.buffer.next_deadline()
    }

    /// The sequence, jitter and delay accounting.
    pub fn stream(&self) -> &StreamStats {
        &self.stats
    }

    /// The playout model.
    pub fn buffer(&self) -> &JitterBuffer<T> {
        &self.buffer
    }

    /// The stream's figures so far. Frames still buffered count in `received` but not yet in the burst figures.
    pub fn summary(&self) -> StreamSummary {
        let (s, jb) = (&self.stats, self.buffer.stats());
        let expected = s.expected();
        let late = jb.late_discarded;
        let loss_pct = if expected == 0 {
            0.0
        } else {
            ((s.lost() + late) as f64 * 100.0 / expected as f64).min(100.0)
        };
        let bg = self.buffer.pattern().burst_gap();
        let g = self.buffer.pattern().gilbert();
        StreamSummary {
            expected,
            received: s.received(),
            lost: s.lost(),
            late_discarded: late,
            duplicates: s.duplicates(),
            reordered: s.reordered(),
            loss_pct,
            jitter_ms: s.jitter_ms(),
            delay_ms: s.delay().summary(),
            jitter_buffer_ms: jb.mean_delay_ms,
            underruns: jb.underruns,
            dtx_frames: jb.dtx_frames,
            burst_density: bg.burst_density,
            burst_duration_ms: bg.burst_duration_ms,
            gap_density: bg.gap_density,
            gap_duration_ms: bg.gap_duration_ms,
            gilbert_p: g.p,
            gilbert_q: g.q,
            burst_r: g.burst_r,
        }
    }
}

/// One received stream's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    /// Packets sent from the first to the highest sequence number received.
    pub expected: u64,
    /// Distinct packets received (in time or not).
    pub received: u64,
    /// Packets never received: `expected - received`.
    pub lost: u64,
    /// Packets received after their playout time and dropped.
    pub late_discarded: u64,
    /// Extra copies received.
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// G.107's Ppl: `(lost + late_discarded) / expected`, in percent.
    pub loss_pct: f64,
    /// RFC 3550 interarrival jitter, ms.
    pub jitter_ms: f64,
    /// One-way network delay, ms; `None` when no packet carried a send time.
    pub delay_ms: Option<DelaySummary>,
    /// Mean jitter-buffer delay (arrival to playout, over played frames), ms.
    pub jitter_buffer_ms: f64,
    /// Times the jitter buffer ran dry mid-spurt and re-anchored.
    pub underruns: u64,
    /// Frames the sender did not send (DTX).
    pub dtx_frames: u64,
    /// RFC 3611 burst density, fraction of packets lost or discarded within bursts, 0-1.
    pub burst_density: f64,
    /// RFC 3611 mean burst duration, ms.
    pub burst_duration_ms: f64,
    /// RFC 3611 gap density, 0-1.
    pub gap_density: f64,
    /// RFC 3611 mean gap duration, ms.
    pub gap_duration_ms: f64,
    /// Gilbert `p = P(lost | previous received)`.
    pub gilbert_p: f64,
    /// Gilbert `q = P(received | previous lost)`.
    pub gilbert_q: f64,
    /// G.107's BurstR, `1 / (p + q)`, at least 1.
    pub burst_r: f64,
}

/// Where the network part of the mouth-to-ear delay came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelaySource {
    /// The mean measured one-way delay.
    OneWay,
    /// Half the round-trip time: no packet carried a send time.
    HalfRtt,
    /// Neither was known: the network delay is taken as 0, and the score is optimistic.
    Unknown,
}

/// A stream's E-model score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The rating factor R on `label.scale`.
    pub r: f64,
    /// MOS from R on that scale.
    pub mos: f64,
    /// Mouth-to-ear delay, ms (G.107's Ta).
    pub mouth_to_ear_ms: f64,
    /// Its parts.
    pub mouth_to_ear: MouthToEar,
    /// Where the network delay came from.
    pub delay_source: DelaySource,
    /// Scale, codec constants and A.
    pub label: Label,
}

impl StreamSummary {
    /// Scores the stream with G.107's default parameters on `codec`'s own scale. `device_io_ms` is capture plus
    /// playback latency; `rtt_ms` is used (halved) only when no one-way delay was measured. `None` when no packet
    /// was received.
    pub fn score(&self, codec: &Codec, device_io_ms: f64, rtt_ms: Option<f64>) -> Option<Score> {
        self.score_with(&EModel::default(), codec.scale, codec, device_io_ms, rtt_ms)
    }

    /// Scores the stream with another model or scale.
    pub fn score_with(
        &self,
        model: &EModel,
        scale: Scale,
        codec: &Codec,
        device_io_ms: f64,
        rtt_ms: Option<f64>,
    ) -> Option<Score> {
        if self.expected == 0 {
            return None;
        }
        let (network_ms, delay_source) = match (self.delay_ms, rtt_ms) {
            (Some(d), _) => (d.mean, DelaySource::OneWay),
            (None, Some(rtt)) if rtt.is_finite() => (rtt / 2.0, DelaySource::HalfRtt),
            (None, _) => (0.0, DelaySource::Unknown),
        };
        let mouth_to_ear = MouthToEar::opus(network_ms, self.jitter_buffer_ms, device_io_ms);
        let conditions = Conditions {
            one_way_delay_ms: mouth_to_ear.total_ms(),
            loss_pct: self.loss_pct,
            burst_r: self.burst_r,
        };
        let rating = model.rate(scale, codec, &conditions);
        Some(Score {
            r: rating.r,
            mos: rating.mos,
            mouth_to_ear_ms: conditions.one_way_delay_ms,
            mouth_to_ear,
            delay_source,
            label: rating.label,
        })
    }
}

#[cfg(test)]
mod tests;
