//! A participant's video, when its call has video: the shipped VP8 clip replayed at 15 frames a second on its
//! own m-line (restarting at the keyframe when the SFU forwards a PLI or FIR), and a viewer model for each video
//! stream it receives. RTP timestamps are capture times on the run's clock at 90 kHz, as audio's are at 48 kHz.

use crate::video::{Clip, VideoQuality, VideoSender, VideoSummary};
use std::time::{Duration, Instant};
use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::Rtc;

/// The clip's frame interval (15 frames a second), and its RTP ticks at 90 kHz.
const FRAME: Duration = Duration::from_micros(66_667);
const FRAME_TICKS: u32 = 6000;
/// RTP payload per packet, leaving room for SRTP and the header extensions under a 1200-byte datagram.
const MTU: usize = 1100;

/// What this participant sends.
pub struct VideoOut {
    mid: Mid,
    pt: Option<Pt>,
    sender: VideoSender,
    seq: SeqNo,
    first_tick: Option<u32>,
    frames: u32,
    /// When the next frame is due.
    pub next_frame: Instant,
}

impl VideoOut {
    /// A sender of `clip` on m-line `mid`, its sequence numbers and picture ids from `seed`.
    pub fn new(clip: &Clip, mid: Mid, seed: u64, now: Instant) -> VideoOut {
        VideoOut {
            mid,
            pt: None,
            sender: VideoSender::new(clip, seed),
            seq: SeqNo::from((seed >> 17) & 0x7fff),
            first_tick: None,
            frames: 0,
            next_frame: now,
        }
    }

    /// The m-line it sends on.
    pub fn mid(&self) -> Mid {
        self.mid
    }

    /// Writes the next frame's packets into `rtc`, once the path is `connected` (frames due before that are
    /// skipped, as a camera's would be); `ticks` maps a capture instant to 90 kHz RTP time.
    pub fn send(&mut self, rtc: &mut Rtc, now: Instant, connected: bool, ticks: impl Fn(Instant) -> u32) {
        let capture = self.next_frame;
        self.next_frame += FRAME;
        let first = *self.first_tick.get_or_insert_with(|| ticks(capture));
        let time = first.wrapping_add(self.frames.wrapping_mul(FRAME_TICKS));
        self.frames += 1;
        if !connected {
            return;
        }
        let Some(pt) = self.pt.or_else(|| vp8_pt(rtc)) else {
            return;
        };
        self.pt = Some(pt);
        for (payload, marker) in self.sender.next_frame(MTU) {
            let write = RtpWrite::new(pt, self.seq, time, now, payload).marker(marker);
            self.seq = (*self.seq + 1).into();
            if let Some(tx) = rtc.direct_api().stream_tx_by_mid(self.mid, None) {
                tx.write_rtp(write);
            }
        }
    }

    /// A PLI or FIR for this m-line: the next frame is the keyframe.
    pub fn keyframe_requested(&mut self) {
        self.sender.keyframe_requested();
    }
}

fn vp8_pt(rtc: &Rtc) -> Option<Pt> {
    rtc.codec_config()
        .find(|c| c.spec().codec == Codec::Vp8)
        .map(|c| c.pt())
}

/// A video stream this participant receives.
pub struct VideoIn {
    /// The sender's identity.
    pub from: String,
    quality: VideoQuality,
}

impl VideoIn {
    /// A stream from `from`.
    pub fn new(from: String) -> VideoIn {
        VideoIn {
            from,
            quality: VideoQuality::new(),
        }
    }

    /// One packet, arrived at `arrival_ms` on the run's clock.
    pub fn push(&mut self, seq: u64, ts: u32, marker: bool, payload: &[u8], arrival_ms: f64) {
        self.quality.push(seq, ts, marker, payload, arrival_ms);
    }

    /// What the viewer saw.
    pub fn summary(&self) -> VideoSummary {
        self.quality.summary()
    }
}
