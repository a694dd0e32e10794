//! The video a simulated caller sends when its call has video: pre-encoded VP8 frames (`assets/video.ivf`, made
//! by `scripts/make-video`: 3 s at 320x240, 15 frames a second, 200 kb/s, one keyframe at the start), replayed
//! in a loop and packetized for RTP (RFC 7741); and, on the receiving side, what a viewer would see of them:
//! frames complete, lost, frozen.
//!
//! ```ignore
//! let clip = Clip::embedded()?; // parsed once, at start-up
//! let mut sender = VideoSender::new(&clip, seed);
//! // every FRAME_INTERVAL: the next frame as RTP payloads, the last one with the marker bit
//! for (payload, marker) in sender.next_frame(1200) { write_rtp(pt, seq, sender.rtp_time(), marker, payload) }
//! sender.keyframe_requested(); // PLI or FIR: the loop starts again at its keyframe
//!
//! let mut viewer = VideoQuality::new();
//! viewer.push(seq, rtp_timestamp, marker, &payload, arrival_ms); // each packet received
//! let summary = viewer.summary(); // frames, loss, frame rate, longest freeze
//! ```

mod ivf;
mod quality;
mod rtp;

pub use ivf::{Clip, IvfError};
pub use quality::{VideoQuality, VideoSummary};
pub use rtp::{packetize, vp8_descriptor, Vp8Descriptor};

use std::sync::Arc;
use std::time::Duration;

/// VP8's RTP clock rate (RFC 7741).
pub const RTP_CLOCK_HZ: u32 = 90_000;

/// Frames a second the clip is played at.
pub const FRAME_RATE: u32 = 15;

/// RTP timestamp increment from one frame to the next.
pub const RTP_TICKS_PER_FRAME: u32 = RTP_CLOCK_HZ / FRAME_RATE;

/// Time from one frame to the next.
pub const FRAME_INTERVAL: Duration = Duration::from_nanos(1_000_000_000 / FRAME_RATE as u64);

/// Replays a clip's frames in a loop, from an offset of its own, and restarts at the keyframe when asked.
#[derive(Debug, Clone)]
pub struct VideoSender {
    frames: Arc<[Arc<[u8]>]>,
    next: usize,
    picture_id: u16,
    frames_sent: u32,
    keyframes_sent: u32,
}

impl VideoSender {
    /// A sender of `clip` whose 15-bit picture ids start from `seed`.
    pub fn new(clip: &Clip, seed: u64) -> VideoSender {
        VideoSender {
            frames: clip.frames(),
            next: 0,
            picture_id: (seed & 0x7fff) as u16,
            frames_sent: 0,
            keyframes_sent: 0,
        }
    }

    /// The next frame as RTP payloads of at most `mtu` bytes each, with the marker bit on the last.
    pub fn next_frame(&mut self, mtu: usize) -> Vec<(Vec<u8>, bool)> {
        let frame = self.frames[self.next].clone();
        if self.next == 0 {
            self.keyframes_sent += 1;
        }
        self.next = (self.next + 1) % self.frames.len();
        self.frames_sent += 1;
        let payloads = packetize(&frame, self.picture_id, mtu);
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        payloads
    }

    /// A keyframe request (PLI or FIR) arrived: the next frame sent is the clip's keyframe.
    pub fn keyframe_requested(&mut self) {
        self.next = 0;
    }

    /// Frames sent so far.
    pub fn frames_sent(&self) -> u32 {
        self.frames_sent
    }

    /// Keyframes sent so far.
    pub fn keyframes_sent(&self) -> u32 {
        self.keyframes_sent
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
