//! A playout (jitter-buffer) model: when each received frame is played, which frames are missing when their turn
//! comes, and which packets arrive too late to be played.
//!
//! The caller pushes arrivals ([`JitterBuffer::push`]) and drains playout ([`JitterBuffer::poll`]) until it returns
//! `None`, then sleeps until [`JitterBuffer::next_deadline`] or the next arrival, whichever comes first. Push every
//! packet that arrived up to `now` before polling at `now`.
//!
//! # Timing
//!
//! Playout is adaptive at talk-spurt starts only. A spurt starts with the first packet, and after a DTX pause (the
//! RTP timestamp moves on by more than one frame beyond what the sequence numbers account for). At a spurt start the
//! playout delay is `clamp(2 J + frame, min_ms, max_ms)`, `J` the RFC 3550 jitter estimate when that packet arrived,
//! anchored on that packet's arrival (and never before the previous frame's end); within the spurt frames follow
//! every `frame_ms`. A packet that arrives after its playout time is dropped and counted as discarded late.
//!
//! Frame `n`'s turn is declared missing only once a later packet has arrived: until then the sender may simply be
//! silent (DTX), which is not loss. If the buffer has run dry and the next packet arrives after its own playout
//! time, it is not dropped: it starts a new spurt, as a real receiver resumes after concealing an underrun. That is
//! counted in [`JitterStats::underruns`], and it is how the model follows a step increase in network delay without
//! DTX. The model never shrinks the delay within a spurt.

use super::loss_pattern::{Fate, LossPattern};
use super::stream::InterarrivalJitter;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Slots the ring starts with: 2.56 s of 20 ms frames, ahead of and behind the playout point together.
const INITIAL_CAPACITY: usize = 128;

/// The most slots the ring grows to (about 22 minutes of 20 ms frames); a packet further ahead is ignored.
const MAX_CAPACITY: usize = 1 << 16;

/// The playout model's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JitterConfig {
    /// Least playout delay at a spurt start, ms (default 20).
    pub min_ms: f64,
    /// Most playout delay at a spurt start, ms (default 400).
    pub max_ms: f64,
    /// Audio per packet, ms (default 20).
    pub frame_ms: f64,
    /// RTP clock rate, Hz (default 48000, Opus).
    pub clock_rate: u32,
}

impl Default for JitterConfig {
    fn default() -> JitterConfig {
        JitterConfig {
            min_ms: 20.0,
            max_ms: 400.0,
            frame_ms: 20.0,
            clock_rate: 48_000,
        }
    }
}

/// Why a [`JitterConfig`] is invalid.
#[derive(Debug, Clone, PartialEq)]
pub enum JitterConfigError {
    /// `frame_ms` must be a positive number of ms, at most 1000.
    FrameMs(f64),
    /// `clock_rate` must not be 0.
    ClockRate,
    /// `min_ms` must be a number at least 0.
    MinMs(f64),
    /// `max_ms` must be a number at least `min_ms`.
    MaxMs {
        /// The `min_ms` given.
        min_ms: f64,
        /// The `max_ms` given.
        max_ms: f64,
    },
}

impl fmt::Display for JitterConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JitterConfigError::FrameMs(v) => write!(f, "jitter buffer frame_ms = {v}: must be in (0, 1000]"),
            JitterConfigError::ClockRate => write!(f, "jitter buffer clock_rate = 0: must be positive"),
            JitterConfigError::MinMs(v) => write!(f, "jitter buffer min_ms = {v}: must be at least 0"),
            JitterConfigError::MaxMs { min_ms, max_ms } => {
                write!(f, "jitter buffer max_ms = {max_ms}: must be at least min_ms = {min_ms}")
            }
        }
    }
}

impl std::error::Error for JitterConfigError {}

impl JitterConfig {
    /// Checks the settings; [`JitterBuffer::new`] instead repairs bad ones silently (defaults for frame and clock,
    /// `max_ms` raised to `min_ms`).
    pub fn validate(&self) -> Result<(), JitterConfigError> {
        if !frame_ms_ok(self.frame_ms) {
            return Err(JitterConfigError::FrameMs(self.frame_ms));
        }
        if self.clock_rate == 0 {
            return Err(JitterConfigError::ClockRate);
        }
        if self.min_ms.is_nan() || self.min_ms < 0.0 {
            return Err(JitterConfigError::MinMs(self.min_ms));
        }
        if self.max_ms.is_nan() || self.max_ms < self.min_ms {
            return Err(JitterConfigError::MaxMs {
                min_ms: self.min_ms,
                max_ms: self.max_ms,
            });
        }
        Ok(())
    }

    /// RTP timestamp ticks per frame (960 for 20 ms at 48 kHz).
    pub fn frame_ticks(&self) -> u32 {
        ((f64::from(self.clock_rate) * self.frame_ms / 1000.0).round() as u32).max(1)
    }

    fn repaired(&self) -> JitterConfig {
        let d = JitterConfig::default();
        let frame_ms = if frame_ms_ok(self.frame_ms) {
            self.frame_ms
        } else {
            d.frame_ms
        };
        let clock_rate = if self.clock_rate == 0 {
            d.clock_rate
        } else {
            self.clock_rate
        };
        let min_ms = if self.min_ms >= 0.0 { self.min_ms } else { 0.0 };
        let max_ms = if self.max_ms >= min_ms { self.max_ms } else { min_ms };
        JitterConfig {
            min_ms,
            max_ms,
            frame_ms,
            clock_rate,
        }
    }
}

/// Whether a frame duration is usable: more than 0 and at most 1 s.
fn frame_ms_ok(ms: f64) -> bool {
    ms > 0.0 && ms <= 1000.0
}

/// One step of playout, in order. `at_ms` is the scheduled playout time (at or before the `now` polled with).
#[derive(Debug, PartialEq)]
pub enum Playout<'a, T> {
    /// Play this packet's frame.
    Play {
        /// Its extended sequence number.
        seq: u64,
        /// Its playout time.
        at_ms: f64,
        /// Its payload, handed over.
        payload: T,
    },
    /// Frame `seq` is due and not there: conceal it, or rebuild it from the next packet (Opus in-band FEC, RED).
    Missing {
        /// Its extended sequence number.
        seq: u64,
        /// Its playout time.
        at_ms: f64,
        /// Whether the packet was there but arrived after this time (discarded late) rather than not at all (lost,
        /// so far: it becomes a late discard if it turns up).
        late: bool,
        /// The next frame's packet, if it is already buffered.
        next: Option<&'a T>,
    },
    /// The sender paused (DTX) for `frames` frames before the next `Play`, which starts a new spurt.
    Silence {
        /// When the pause is noticed (the next spurt's start).
        at_ms: f64,
        /// Frames not sent.
        frames: u32,
    },
}

/// What drained playout goes to, for [`JitterBuffer::play`]: a decoder, or a counter.
pub trait PlayoutSink<T> {
    /// Frame `seq` arrived in time: play it.
    fn play(&mut self, seq: u64, payload: &T);
    /// Frame `seq` is missing (lost or late); `next` is the following packet if buffered.
    fn missing(&mut self, seq: u64, next: Option<&T>);
    /// The sender paused for `frames` frames (DTX): neither loss nor concealment.
    fn silence(&mut self, frames: u32) {
        let _ = frames;
    }
}

/// The buffer's counts so far.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct JitterStats {
    /// Frames played.
    pub played: u64,
    /// Frames missing at their turn whose packet never came since.
    pub lost: u64,
    /// Packets that arrived after their playout time.
    pub late_discarded: u64,
    /// Copies of packets already buffered or played.
    pub duplicates: u64,
    /// Packets ignored: too far from the playout point (more than the ring's maximum), or with no arrival time.
    pub ignored: u64,
    /// Talk spurts started (the first packet, DTX pauses, underruns).
    pub spurts: u64,
    /// Spurts started because the buffer ran dry and the next packet came after its playout time.
    pub underruns: u64,
    /// Frames the sender did not send (DTX), summed over pauses.
    pub dtx_frames: u64,
    /// Packets waiting now.
    pub buffered: u64,
    /// Mean time from arrival to playout over played frames, ms (0 before any).
    pub mean_delay_ms: f64,
    /// The playout delay chosen at the latest spurt start, ms.
    pub spurt_delay_ms: f64,
}

struct Packet<T> {
    seq: u64,
    ts: u32,
    arrival: f64,
    /// Arrival plus the delay chosen from the jitter at arrival: its playout time if it starts a spurt.
    anchor_ms: f64,
    /// It arrived late for its slot with the buffer empty: it starts a spurt.
    restart: bool,
    payload: T,
}

enum Entry<T> {
    Empty,
    Waiting(Packet<T>),
    Played(u64),
    Missed(u64),
    Discarded(u64),
}

impl<T> Entry<T> {
    /// The sequence number of a past slot's record.
    fn record_seq(&self) -> Option<u64> {
        match self {
            Entry::Played(s) | Entry::Missed(s) | Entry::Discarded(s) => Some(*s),
            Entry::Empty | Entry::Waiting(_) => None,
        }
    }
}

/// What happens to the packet at the playout point.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// Play it, continuing the spurt.
    Continue,
    /// Play it as the start of a spurt, after `dtx` unsent frames.
    Start { dtx: u32 },
    /// It came after its time: discard it.
    Late,
}

/// The playout model for one stream; `T` is the payload (`Vec<u8>` for the harness).
pub struct JitterBuffer<T> {
    config: JitterConfig,
    frame_ticks: u32,
    ring: Vec<Entry<T>>,
    jitter: InterarrivalJitter,
    /// The next frame to play, once a packet has arrived.
    head: Option<u64>,
    /// The highest sequence number buffered so far.
    top: u64,
    /// RTP timestamp and playout time of the last frame played out (inferred for missing ones).
    prev: Option<(u32, f64)>,
    /// The `Silence` before the packet at the head has been handed out.
    silence_told: bool,
    stats: JitterStats,
    delay_sum: f64,
    pattern: LossPattern,
}

impl<T> fmt::Debug for JitterBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JitterBuffer")
            .field("config", &self.config)
            .field("head", &self.head)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<T> JitterBuffer<T> {
    /// An empty buffer; bad settings are repaired (see [`JitterConfig::validate`]).
    pub fn new(config: &JitterConfig) -> JitterBuffer<T> {
        let config = config.repaired();
        JitterBuffer {
            frame_ticks: config.frame_ticks(),
            ring: empty_ring(INITIAL_CAPACITY),
            jitter: InterarrivalJitter::new(config.clock_rate),
            head: None,
            top: 0,
            prev: None,
            silence_told: false,
            stats: JitterStats::default(),
            delay_sum: 0.0,
            pattern: LossPattern::new(config.frame_ms),
            config,
        }
    }

    /// Takes an arriving packet: its extended sequence number, RTP timestamp, arrival time (ms) and payload. A
    /// packet with a NaN or infinite arrival time is ignored.
    pub fn push(&mut self, seq: u64, rtp_ts: u32, arrival_ms: f64, payload: T) {
        if !arrival_ms.is_finite() {
            self.stats.ignored += 1;
            return;
        }
        let Some(head) = self.head else {
            self.head = Some(seq);
            self.top = seq;
            self.store(seq, rtp_ts, arrival_ms, payload, false);
            return;
        };
        if seq < head && (self.prev.is_some() || !self.fits(seq, self.top)) {
            self.behind(seq, rtp_ts, arrival_ms);
            return;
        }
        let (lo, hi) = (seq.min(head), seq.max(self.top));
        if !self.fits(lo, hi) {
            self.stats.ignored += 1;
            return;
        }
        if matches!(&self.ring[self.idx(seq)], Entry::Waiting(p) if p.seq == seq) {
            self.stats.duplicates += 1;
            return;
        }
        // The buffer ran dry and this packet is late even for its own slot: resume from it, as a receiver does
        // after concealing an underrun, instead of dropping it and everything after it.
        let slots = seq.saturating_sub(head) as f64 + 1.0;
        let stalled = self.stats.buffered == 0
            && self
                .prev
                .is_some_and(|(_, t)| t + slots * self.config.frame_ms < arrival_ms);
        // Before anything is played, an earlier packet moves the playout point back to it.
        self.head = Some(lo);
        self.top = hi;
        self.store(seq, rtp_ts, arrival_ms, payload, stalled);
    }

    /// The next step of playout due at `now_ms`, or `None` when nothing is due: call until `None`.
    pub fn poll(&mut self, now_ms: f64) -> Option<Playout<'_, T>> {
        let head = self.head?;
        let i = self.idx(head);
        let (step, at_ms) = match &self.ring[i] {
            Entry::Waiting(p) if p.seq == head => self.plan(p),
            _ if self.stats.buffered > 0 => return self.missing(head, now_ms),
            _ => return None,
        };
        if at_ms > now_ms {
            return None;
        }
        match step {
            Step::Start { dtx } if dtx > 0 && !self.silence_told => {
                self.silence_told = true;
                Some(Playout::Silence { at_ms, frames: dtx })
            }
            Step::Late => {
                let Entry::Waiting(p) = std::mem::replace(&mut self.ring[i], Entry::Discarded(head)) else {
                    return None;
                };
                self.stats.buffered -= 1;
                self.stats.late_discarded += 1;
                self.pattern.record(Fate::Discarded);
                self.advance(p.ts, at_ms);
                Some(Playout::Missing {
                    seq: head,
                    at_ms,
                    late: true,
                    next: self.waiting(head.saturating_add(1)),
                })
            }
            Step::Continue | Step::Start { .. } => {
                let Entry::Waiting(p) = std::mem::replace(&mut self.ring[i], Entry::Played(head)) else {
                    return None;
                };
                self.played(&p, step, at_ms);
                self.advance(p.ts, at_ms);
                Some(Playout::Play {
                    seq: head,
                    at_ms,
                    payload: p.payload,
                })
            }
        }
    }

    /// Drains playout due at `now_ms` into `sink` (or nowhere, to only count); returns the steps taken.
    pub fn play<S: PlayoutSink<T> + ?Sized>(&mut self, now_ms: f64, mut sink: Option<&mut S>) -> usize {
        let mut steps = 0;
        while let Some(step) = self.poll(now_ms) {
            steps += 1;
            let Some(sink) = sink.as_deref_mut() else { continue };
            match step {
                Playout::Play { seq, payload, .. } => sink.play(seq, &payload),
                Playout::Missing { seq, next, .. } => sink.missing(seq, next),
                Playout::Silence { frames, .. } => sink.silence(frames),
            }
        }
        steps
    }

    /// When the next step of playout is due (possibly already past), or `None` if nothing will be due before another
    /// packet arrives.
    pub fn next_deadline(&self) -> Option<f64> {
        let head = self.head?;
        match &self.ring[self.idx(head)] {
            Entry::Waiting(p) if p.seq == head => Some(self.plan(p).1),
            _ if self.stats.buffered > 0 => Some(self.continuation()),
            _ => None,
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> JitterStats {
        let mean_delay_ms = if self.stats.played == 0 {
            0.0
        } else {
            self.delay_sum / self.stats.played as f64
        };
        JitterStats {
            mean_delay_ms,
            ..self.stats
        }
    }

    /// The fate of every frame whose turn has come, as RFC 3611 burst/gap and Gilbert counters.
    pub fn pattern(&self) -> &LossPattern {
        &self.pattern
    }

    /// The RFC 3550 jitter estimate the buffer sizes itself with, ms.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter.ms()
    }

    /// The settings in use (after repair).
    pub fn config(&self) -> &JitterConfig {
        &self.config
    }

    /// What to do with packet `p` at the playout point, and when.
    fn plan(&self, p: &Packet<T>) -> (Step, f64) {
        let Some((prev_ts, prev_time)) = self.prev else {
            return (Step::Start { dtx: 0 }, p.anchor_ms);
        };
        let cont = prev_time + self.config.frame_ms;
        let ticks = i64::from(self.frame_ticks);
        let excess = i64::from(p.ts.wrapping_sub(prev_ts) as i32) - ticks;
        if excess.abs() > ticks / 2 {
            // A DTX pause (or, when negative, a timestamp discontinuity): a new spurt.
            let dtx = if excess > 0 { (excess + ticks / 2) / ticks } else { 0 };
            let dtx = u32::try_from(dtx).unwrap_or(u32::MAX);
            return (Step::Start { dtx }, p.anchor_ms.max(cont));
        }
        if p.restart {
            return (Step::Start { dtx: 0 }, p.anchor_ms.max(cont));
        }
        if p.arrival > cont {
            return (Step::Late, cont);
        }
        (Step::Continue, cont)
    }

    /// Declares frame `head` missing if its time has come (a later packet is buffered).
    fn missing(&mut self, head: u64, now_ms: f64) -> Option<Playout<'_, T>> {
        let at_ms = self.continuation();
        if at_ms > now_ms {
            return None;
        }
        let i = self.idx(head);
        self.ring[i] = Entry::Missed(head);
        self.stats.lost += 1;
        self.pattern.record(Fate::Lost);
        let ts = self.prev.map_or(0, |(ts, _)| ts.wrapping_add(self.frame_ticks));
        self.advance(ts, at_ms);
        Some(Playout::Missing {
            seq: head,
            at_ms,
            late: false,
            next: self.waiting(head.saturating_add(1)),
        })
    }

    /// Counts a frame played.
    fn played(&mut self, p: &Packet<T>, step: Step, at_ms: f64) {
        self.stats.buffered -= 1;
        self.stats.played += 1;
        self.pattern.record(Fate::Received);
        self.delay_sum += at_ms - p.arrival;
        if let Step::Start { dtx } = step {
            self.stats.spurts += 1;
            self.stats.dtx_frames += u64::from(dtx);
            self.stats.underruns += u64::from(dtx == 0 && p.restart);
            self.stats.spurt_delay_ms = at_ms - p.arrival;
        }
    }

    /// Moves the playout point past the head, whose frame had timestamp `ts` and time `at_ms`.
    fn advance(&mut self, ts: u32, at_ms: f64) {
        self.prev = Some((ts, at_ms));
        self.head = self.head.map(|h| h.saturating_add(1));
        self.silence_told = false;
    }

    /// When the frame after the last one played out is due; the past if nothing has been played.
    fn continuation(&self) -> f64 {
        self.prev.map_or(f64::NEG_INFINITY, |(_, t)| t + self.config.frame_ms)
    }

    /// A packet for a slot already played out: a duplicate, or a late arrival.
    fn behind(&mut self, seq: u64, rtp_ts: u32, arrival_ms: f64) {
        let i = self.idx(seq);
        match &self.ring[i] {
            Entry::Played(s) | Entry::Discarded(s) if *s == seq => {
                self.stats.duplicates += 1;
                return;
            }
            Entry::Missed(s) if *s == seq => {
                self.ring[i] = Entry::Discarded(seq);
                self.stats.lost -= 1;
                self.stats.late_discarded += 1;
                self.pattern.reclassify_lost_as_discarded();
            }
            // Too old to check: taken as late.
            _ => self.stats.late_discarded += 1,
        }
        // A late packet is jitter too: the next spurt's delay should allow for it.
        self.jitter.update(arrival_ms, rtp_ts);
    }

    fn store(&mut self, seq: u64, ts: u32, arrival_ms: f64, payload: T, restart: bool) {
        self.jitter.update(arrival_ms, ts);
        let delay = (2.0 * self.jitter.ms() + self.config.frame_ms).clamp(self.config.min_ms, self.config.max_ms);
        let i = self.idx(seq);
        self.ring[i] = Entry::Waiting(Packet {
            seq,
            ts,
            arrival: arrival_ms,
            anchor_ms: arrival_ms + delay,
            restart,
            payload,
        });
        self.stats.buffered += 1;
    }

    /// The payload of `seq` if it is buffered.
    fn waiting(&self, seq: u64) -> Option<&T> {
        match &self.ring[self.idx(seq)] {
            Entry::Waiting(p) if p.seq == seq => Some(&p.payload),
            _ => None,
        }
    }

    /// Whether slots `lo ..= hi` fit in the ring at once, growing it if needed and allowed.
    fn fits(&mut self, lo: u64, hi: u64) -> bool {
        let span = (hi - lo).saturating_add(1);
        if span <= self.ring.len() as u64 {
            return true;
        }
        if span > MAX_CAPACITY as u64 {
            return false;
        }
        self.grow((span as usize).next_power_of_two().max(2 * self.ring.len()));
        true
    }

    fn grow(&mut self, capacity: usize) {
        let old = std::mem::replace(&mut self.ring, empty_ring(capacity));
        let mask = capacity as u64 - 1;
        let mut waiting = Vec::new();
        for entry in old {
            match entry {
                Entry::Waiting(p) => waiting.push(p),
                Entry::Empty => {}
                record => {
                    let Some(s) = record.record_seq() else { continue };
                    let slot = &mut self.ring[(s & mask) as usize];
                    if slot.record_seq().is_none_or(|other| other < s) {
                        *slot = record;
                    }
                }
            }
        }
        for p in waiting {
            let i = (p.seq & mask) as usize;
            self.ring[i] = Entry::Waiting(p);
        }
    }

    fn idx(&self, seq: u64) -> usize {
        (seq & (self.ring.len() as u64 - 1)) as usize
    }
}

fn empty_ring<T>(capacity: usize) -> Vec<Entry<T>> {
    std::iter::repeat_with(|| Entry::Empty).take(capacity).collect()
}

#[cfg(test)]
#[path = "jitter_buffer_tests.rs"]
mod tests;
