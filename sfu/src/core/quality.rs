//! What subscribers' receiver reports say of the streams the SFU sends them (loss, jitter, round-trip time),
//! and the feedback counts (NACK, PLI, FIR), from str0m's periodic stats. The shard turns them into metrics.

use super::roster::PeerId;
use super::Sfu;
use ahash::HashMap;
use std::time::Duration;
use str0m::media::{MediaKind, Mid};
use str0m::stats::MediaEgressStats;

/// How often each participant's `Rtc` reports its stats.
pub const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// One receiver report about one stream the SFU sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualitySample {
    /// Fraction lost since the previous report, 0 to 1.
    pub loss: Option<f32>,
    /// Round-trip time.
    pub rtt: Option<Duration>,
    /// Interarrival jitter at the subscriber.
    pub jitter: Option<Duration>,
}

/// Totals since the start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Feedback {
    /// NACKs subscribers sent.
    pub nacks: u64,
    /// PLIs subscribers sent.
    pub plis: u64,
    /// FIRs subscribers sent.
    pub firs: u64,
    /// Keyframe requests relayed to publishers.
    pub keyframes_relayed: u64,
    /// Keyframe requests held back by the once-a-second limit.
    pub keyframes_throttled: u64,
}

/// The quality state of a shard.
#[derive(Debug, Default)]
pub(super) struct Quality {
    pub(super) samples: Vec<QualitySample>,
    pub(super) feedback: Feedback,
    /// The last cumulative counts seen per sent stream: (nacks, plis, firs).
    last: HashMap<(PeerId, Mid), (u64, u64, u64)>,
}

impl Quality {
    pub(super) fn forget(&mut self, peer: PeerId) {
        self.last.retain(|(p, _), _| *p != peer);
    }
}

impl Sfu {
    /// A participant's stats about one stream the SFU sends it.
    pub(super) fn on_egress_stats(&mut self, id: PeerId, s: &MediaEgressStats) {
        let clock = match self.peers.get(&id).and_then(|p| p.rtc.media(s.mid)).map(|m| m.kind()) {
            Some(MediaKind::Audio) => 48_000.0,
            _ => 90_000.0,
        };
        let jitter = s
            .remote
            .as_ref()
            .map(|r| Duration::from_secs_f64(f64::from(r.jitter) / clock));
        if s.loss.is_some() || s.rtt.is_some() || jitter.is_some() {
            // Bounded: the shard drains these every second.
            if self.quality.samples.len() < 100_000 {
                self.quality.samples.push(QualitySample {
                    loss: s.loss,
                    rtt: s.rtt,
                    jitter,
                });
            }
        }
        let q = &mut self.quality;
        let (n, p, f) = q
            .last
            .insert((id, s.mid), (s.nacks, s.plis, s.firs))
            .unwrap_or_default();
        q.feedback.nacks += s.nacks.saturating_sub(n);
        q.feedback.plis += s.plis.saturating_sub(p);
        q.feedback.firs += s.firs.saturating_sub(f);
    }

    /// Receiver-report samples since the last call.
    pub fn take_quality_samples(&mut self) -> Vec<QualitySample> {
        std::mem::take(&mut self.quality.samples)
    }

    /// Feedback totals since the start.
    pub fn feedback(&self) -> Feedback {
        self.quality.feedback
    }
}
