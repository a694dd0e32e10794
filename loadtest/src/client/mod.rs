//! The simulated clients: each device of each user keeps a call-control socket open, places and answers calls as
//! the plan says, and, in a call, joins its room; the call's media runs on media shards (one thread per core, each
//! carrying many participants). Many devices share each runtime thread.

pub mod device;
pub mod media;
pub mod net;
pub mod room;
pub mod shard;
pub mod socket;
pub mod turn;
pub mod video_track;

use crate::audio::EncodedSpeech;
use crate::impair::Profile;
use crate::plan::Plan;
use crate::quality::{JitterConfig, StreamQuality};
use crate::record::Leg;
use crate::scenario::Scenario;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What every client shares: read-only after start, except the map of calls ringing.
pub struct Ctx {
    /// The scenario.
    pub scenario: Scenario,
    /// The plan.
    pub plan: Plan,
    /// The API secret that signs tokens.
    pub secret: String,
    /// The run's clock origin: RTP timestamps count from here.
    pub start: Instant,
    /// The speech every client sends, encoded once.
    pub speech: EncodedSpeech,
    /// Network profiles by name.
    pub profiles: BTreeMap<String, Profile>,
    /// The playout model every receiver uses.
    pub jitter_buffer: JitterConfig,
    /// Source addresses for client sockets.
    pub source_ips: Vec<IpAddr>,
    /// The call each caller (user index) is placing now, so its callees' devices find their part of the plan.
    /// Touched once per call, never on the media path.
    pub placing: Mutex<HashMap<u32, u32>>,
    /// The VP8 clip video calls replay, when the scenario has any.
    pub video: Option<crate::video::Clip>,
    /// The media shards every participant's peer runs on.
    pub shards: shard::Shards,
}

impl Ctx {
    /// Milliseconds since the start.
    pub fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.start).as_secs_f64() * 1000.0
    }

    /// The instant `ms` milliseconds after the start.
    pub fn instant(&self, ms: f64) -> Instant {
        self.start + Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// 48 kHz ticks since the start, as an RTP timestamp (it wraps after 24.8 hours).
    pub fn ticks(&self, t: Instant) -> u32 {
        (t.saturating_duration_since(self.start).as_micros() as u64 * 48 / 1000) as u32
    }

    /// 90 kHz ticks since the start, as a video RTP timestamp (it wraps after 13.2 hours).
    pub fn video_ticks(&self, t: Instant) -> u32 {
        (t.saturating_duration_since(self.start).as_micros() as u64 * 9 / 100) as u32
    }

    /// The capture time, in milliseconds since the start, that an RTP timestamp stands for.
    pub fn capture_ms(&self, ts: u32) -> f64 {
        f64::from(ts) / 48.0
    }

    /// A source address for a client's sockets, chosen by `seed`.
    pub fn source_ip(&self, seed: u64) -> Option<IpAddr> {
        match self.source_ips.len() {
            0 => None,
            n => Some(self.source_ips[(seed % n as u64) as usize]),
        }
    }

    /// A yes-or-no decision with probability `share`, fixed by `seed`.
    pub fn decides(&self, seed: u64, share: f64) -> bool {
        let x = splitmix(seed ^ self.plan.seed) >> 11;
        (x as f64) / ((1u64 << 53) as f64) < share
    }

    /// The user id of user `u`.
    pub fn user_id(&self, u: u32) -> String {
        format!("lt{}-u{u}", self.plan.seed)
    }

    /// The user index of a user id, if it is one of this run's.
    pub fn user_index(&self, id: &str) -> Option<u32> {
        id.strip_prefix(&format!("lt{}-u", self.plan.seed))?.parse().ok()
    }

    /// Scores one received stream as a leg of the call.
    #[allow(clippy::too_many_arguments)]
    pub fn leg(
        &self,
        from: &str,
        to: &str,
        to_profile: &str,
        quality: StreamQuality<Arc<[u8]>>,
        listener: Option<crate::audio::Listener>,
        rtt_ms: Option<f64>,
        switch_gaps_ms: Vec<f64>,
    ) -> Leg {
        let from_profile = self
            .user_index(from)
            .and_then(|u| self.plan.profiles.get(u as usize))
            .cloned()
            .unwrap_or_default();
        crate::score::leg(
            self,
            from,
            to,
            &from_profile,
            to_profile,
            quality,
            listener,
            rtt_ms,
            switch_gaps_ms,
        )
    }
}

/// A 64-bit mix (SplitMix64's finaliser) for deterministic per-client choices.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
