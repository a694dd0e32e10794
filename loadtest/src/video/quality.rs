//! What a viewer would see of a VP8 stream: which frames arrived whole, which of those a decoder could show
//! (a keyframe, or a whole frame whose predecessor was shown: VP8 inter frames predict from the frame before),
//! the frame rate shown, and the longest freeze.
//!
//! Frames are told apart by RTP timestamp. A frame is whole when its first packet (S bit), its last (marker)
//! and every sequence number between them arrived. Frames are settled in timestamp order once the stream has
//! moved a second past them, so a late or reordered packet still counts, and the state kept is a second's worth.

use super::rtp::vp8_descriptor;
use super::{ivf::is_keyframe, RTP_CLOCK_HZ, RTP_TICKS_PER_FRAME};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// RTP ticks after which a frame is settled: one second of 90 kHz.
const SETTLE_TICKS: i64 = RTP_CLOCK_HZ as i64;

/// One frame seen in part or whole.
#[derive(Debug, Clone, Default)]
struct Frame {
    /// Sequence number of its first packet (S bit), once seen.
    first: Option<u64>,
    /// Sequence number of its last packet (marker), once seen.
    last: Option<u64>,
    /// Packets of it received.
    packets: u64,
    /// It starts with a VP8 keyframe.
    keyframe: bool,
    /// When its last packet arrived, in ms.
    done_ms: f64,
}

impl Frame {
    fn whole(&self) -> bool {
        match (self.first, self.last) {
            (Some(a), Some(b)) if b >= a => self.packets == b - a + 1,
            _ => false,
        }
    }
}

/// A received VP8 stream's accounting.
#[derive(Debug, Clone, Default)]
pub struct VideoQuality {
    /// Frames not settled yet, by extended RTP timestamp.
    open: BTreeMap<i64, Frame>,
    /// The extended timestamp of the newest packet, and the last raw one (for unwrapping).
    newest: Option<i64>,
    last_raw: u32,
    first_ts: Option<i64>,
    /// Highest settled timestamp (frames at or before it are final).
    settled_to: Option<i64>,
    /// The last frame shown, for the prediction chain.
    shown_last: Option<i64>,
    /// Whether the decoder can go on from the last settled frame.
    chain: bool,
    last_shown_ms: Option<f64>,
    first_shown_ms: Option<f64>,
    packets: u64,
    seq_lo: Option<u64>,
    seq_hi: Option<u64>,
    whole: u64,
    shown: u64,
    keyframes: u64,
    longest_freeze_ms: f64,
}

/// A viewer's figures for one stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoSummary {
    /// Frames the sender sent while this viewer listened (by timestamps: first to last).
    pub frames_expected: u64,
    /// Frames that arrived whole.
    pub frames_whole: u64,
    /// Frames a decoder could show.
    pub frames_shown: u64,
    /// Keyframes that arrived whole.
    pub keyframes: u64,
    /// Frames not shown, in percent of expected.
    pub frame_loss_pct: f64,
    /// Frames shown a second, from the first shown to the last.
    pub fps: f64,
    /// The longest time between two frames shown, in ms.
    pub longest_freeze_ms: f64,
    /// Packets received.
    pub packets_received: u64,
    /// Packets missing by sequence number.
    pub packets_lost: u64,
}

impl VideoQuality {
    /// An empty account.
    pub fn new() -> VideoQuality {
        VideoQuality::default()
    }

    /// One packet: its extended sequence number, RTP timestamp, marker bit, payload and arrival time (ms).
    pub fn push(&mut self, seq: u64, ts: u32, marker: bool, payload: &[u8], arrival_ms: f64) {
        let Some(d) = vp8_descriptor(payload) else { return };
        let ts = self.extend(ts);
        self.packets += 1;
        self.seq_lo = Some(self.seq_lo.map_or(seq, |s| s.min(seq)));
        self.seq_hi = Some(self.seq_hi.map_or(seq, |s| s.max(seq)));
        self.first_ts = Some(self.first_ts.map_or(ts, |f| f.min(ts)));
        if self.settled_to.is_some_and(|s| ts <= s) {
            return; // too late: its frame is settled
        }
        let frame = self.open.entry(ts).or_default();
        frame.packets += 1;
        frame.done_ms = frame.done_ms.max(arrival_ms);
        if d.start {
            frame.first = Some(seq);
            frame.keyframe = payload.get(d.len..).is_some_and(is_keyframe);
        }
        if marker {
            frame.last = Some(seq);
        }
        self.settle(ts - SETTLE_TICKS);
    }

    /// The figures so far, every open frame settled as it stands.
    pub fn summary(&self) -> VideoSummary {
        let mut q = self.clone();
        if let Some(newest) = q.newest {
            q.settle(newest);
        }
        q.figures()
    }

    fn figures(&self) -> VideoSummary {
        let expected = match (self.first_ts, self.settled_to) {
            (Some(a), Some(b)) if b >= a => ((b - a) / i64::from(RTP_TICKS_PER_FRAME)) as u64 + 1,
            _ => 0,
        };
        let span = self.seq_hi.zip(self.seq_lo).map_or(0, |(hi, lo)| hi - lo + 1);
        let shown_s = match (self.first_shown_ms, self.last_shown_ms) {
            (Some(a), Some(b)) if b > a => (b - a) / 1000.0,
            _ => 0.0,
        };
        VideoSummary {
            frames_expected: expected,
            frames_whole: self.whole,
            frames_shown: self.shown,
            keyframes: self.keyframes,
            frame_loss_pct: if expected == 0 {
                0.0
            } else {
                100.0 * expected.saturating_sub(self.shown) as f64 / expected as f64
            },
            fps: if shown_s > 0.0 {
                (self.shown - 1) as f64 / shown_s
            } else {
                0.0
            },
            longest_freeze_ms: self.longest_freeze_ms,
            packets_received: self.packets,
            packets_lost: span.saturating_sub(self.packets),
        }
    }

    /// Settles every open frame up to `upto`, in timestamp order.
    fn settle(&mut self, upto: i64) {
        while let Some((&ts, _)) = self.open.first_key_value() {
            if ts > upto {
                break;
            }
            let Some((ts, frame)) = self.open.pop_first() else {
                break;
            };
            self.settle_one(ts, &frame);
        }
        if self.settled_to.is_none_or(|s| upto > s) && self.first_ts.is_some_and(|f| upto >= f) {
            self.settled_to = Some(upto);
        }
    }

    fn settle_one(&mut self, ts: i64, frame: &Frame) {
        // A frame missing altogether between the last settled and this one breaks the chain too.
        let gapless = self
            .shown_last
            .is_some_and(|prev| ts - prev <= i64::from(RTP_TICKS_PER_FRAME) + i64::from(RTP_TICKS_PER_FRAME) / 2);
        if !frame.whole() {
            self.chain = false;
            return;
        }
        self.whole += 1;
        if frame.keyframe {
            self.keyframes += 1;
        }
        if !(frame.keyframe || (self.chain && gapless)) {
            self.chain = false;
            return;
        }
        self.chain = true;
        self.shown += 1;
        self.shown_last = Some(ts);
        if let Some(prev) = self.last_shown_ms {
            self.longest_freeze_ms = self.longest_freeze_ms.max(frame.done_ms - prev);
        }
        self.first_shown_ms.get_or_insert(frame.done_ms);
        self.last_shown_ms = Some(frame.done_ms);
    }

    /// Unwraps a 32-bit RTP timestamp against the newest one.
    fn extend(&mut self, ts: u32) -> i64 {
        let ext = match self.newest {
            None => i64::from(ts),
            Some(n) => n + i64::from(ts.wrapping_sub(self.last_raw) as i32),
        };
        if self.newest.is_none_or(|n| ext > n) {
            self.newest = Some(ext);
            self.last_raw = ts;
        }
        ext
    }
}
