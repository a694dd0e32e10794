//! Active speakers, from the audio level each publisher's client writes into its packets (RFC 6464): the SFU
//! reads one header field per audio packet it receives and never decodes audio.
//!
//! Every [`SPEAKER_INTERVAL`], each room's speakers are the publishers whose packets were voiced in at least
//! [`MIN_VOICED_SHARE`] of that interval, loudest first. The room is told whenever that list changes.

use super::roster::{PeerId, Signal};
use super::Sfu;
use ahash::HashMap;
use std::time::{Duration, Instant};

/// How often speakers are worked out.
pub const SPEAKER_INTERVAL: Duration = Duration::from_millis(300);
/// A packet whose level is at least this loud (in -dBov: 0 is the loudest, 127 silence) counts as voiced.
/// Speech sits around -20 to -40 dBov, a quiet room below -60.
const VOICED_DBOV: u8 = 50;
/// Share of a publisher's packets in an interval that must be voiced for it to count as speaking.
const MIN_VOICED_SHARE: f32 = 0.3;

/// One publisher's audio over the current interval.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Loudness {
    packets: u32,
    voiced: u32,
    /// Sum of the voiced packets' levels, in -dBov.
    voiced_dbov: u32,
}

/// The speaker state of a shard.
#[derive(Debug, Default)]
pub(super) struct Speakers {
    loudness: HashMap<PeerId, Loudness>,
    /// Each room's last announced speakers.
    announced: HashMap<String, Vec<PeerId>>,
    next: Option<Instant>,
}

impl Speakers {
    /// A publisher's audio packet carried `level` (-dBov, as str0m gives it: 0 to -127).
    pub(super) fn record(&mut self, peer: PeerId, level: i8) {
        let dbov = level.unsigned_abs().min(127);
        let l = self.loudness.entry(peer).or_default();
        l.packets += 1;
        if dbov <= VOICED_DBOV {
            l.voiced += 1;
            l.voiced_dbov += u32::from(dbov);
        }
    }

    /// When the next interval ends.
    pub(super) fn due(&self) -> Option<Instant> {
        self.next
    }

    /// Starts the clock when the first room opens.
    pub(super) fn arm(&mut self, now: Instant) {
        self.next.get_or_insert(now + SPEAKER_INTERVAL);
    }

    /// Forgets a participant that left.
    pub(super) fn forget(&mut self, peer: PeerId) {
        self.loudness.remove(&peer);
    }

    /// This interval's speakers among `members`, loudest first, with levels from 0 (silent) to 1 (loudest).
    fn speaking(&self, members: &[PeerId]) -> Vec<(PeerId, f32)> {
        let mut out: Vec<(PeerId, f32)> = members
            .iter()
            .filter_map(|id| {
                let l = self.loudness.get(id)?;
                let share = l.voiced as f32 / l.packets.max(1) as f32;
                (l.voiced > 0 && share >= MIN_VOICED_SHARE).then(|| {
                    let mean = l.voiced_dbov as f32 / l.voiced as f32;
                    (*id, 1.0 - mean / 127.0)
                })
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}

impl Sfu {
    /// Ends a speaker interval if one is due: rooms whose speakers changed are told.
    pub(super) fn tick_speakers(&mut self, now: Instant) {
        if self.speakers.due().is_none_or(|t| t > now) {
            return;
        }
        for (room, members) in &self.rooms {
            // With the room's participants on other nodes, whose packets are recorded as they arrive (collecting
            // none allocates nothing).
            let remote: Vec<PeerId> = self.links.members(room).collect();
            let speaking = match remote.is_empty() {
                true => self.speakers.speaking(members),
                false => self.speakers.speaking(&[&members[..], &remote[..]].concat()),
            };
            let ids: Vec<PeerId> = speaking.iter().map(|(id, _)| *id).collect();
            let before = self.speakers.announced.get(room).map_or(&[][..], Vec::as_slice);
            if ids == before {
                continue;
            }
            for m in members {
                self.signals.push_back((*m, Signal::Speakers(speaking.clone())));
            }
            self.speakers.announced.insert(room.clone(), ids);
        }
        self.speakers.announced.retain(|room, _| self.rooms.contains_key(room));
        self.speakers.loudness.clear();
        self.speakers.next = (!self.rooms.is_empty()).then_some(now + SPEAKER_INTERVAL);
    }
}
