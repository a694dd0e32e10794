//! One call's state: who is in it, who is ringing, and how far it got.

use super::events::{CallId, EndReason, LeaveReason, Media};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// How far a call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Placed, nobody answered yet.
    Ringing,
    /// Answered; the room is placed, media not yet flowing.
    Connecting,
    /// Media flows.
    Active,
}

/// One user's part in a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Invited; these devices ring. The set may be empty (every device offline or ignoring) while the ring
    /// timeout runs.
    Ringing {
        /// The devices that ring.
        devices: BTreeSet<String>,
        /// When the ring timeout ends.
        #[serde(with = "super::clock::instant")]
        until: Instant,
        /// The user is in another call, and this rings as call waiting.
        waiting: bool,
        /// The others were told it rings (once its first device rang).
        announced: bool,
    },
    /// In the call on `device`.
    Joined {
        /// The device in the call.
        device: String,
        /// Since when its connection is lost, if it is.
        #[serde(with = "super::clock::option_instant")]
        lost: Option<Instant>,
    },
    /// No longer part of it.
    Gone(LeaveReason),
}

/// One member of a call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    /// Where it stands.
    pub status: Status,
    /// It answered at some point (or placed the call).
    pub joined_once: bool,
}

impl Member {
    /// Is it ringing?
    pub fn ringing(&self) -> bool {
        matches!(self.status, Status::Ringing { .. })
    }

    /// Its device in the call, if it is in it.
    pub fn joined_device(&self) -> Option<&str> {
        match &self.status {
            Status::Joined { device, .. } => Some(device),
            _ => None,
        }
    }
}

/// A call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    /// Its id.
    pub id: CallId,
    /// Who placed it.
    pub caller: String,
    /// Audio or video.
    pub media: Media,
    /// How far it got.
    pub phase: Phase,
    /// When it was placed.
    #[serde(with = "super::clock::instant")]
    pub created: Instant,
    /// When it was first answered.
    #[serde(with = "super::clock::option_instant")]
    pub answered: Option<Instant>,
    /// Everyone invited, by user id. The caller is a member from the start.
    pub members: BTreeMap<String, Member>,
    /// The caller's own reason to end it, when it cancels.
    pub ending: Option<EndReason>,
}

impl Call {
    /// A new call from `caller` on `device`.
    pub fn new(id: CallId, caller: &str, device: &str, media: Media, now: Instant) -> Self {
        let mut members = BTreeMap::new();
        let status = Status::Joined {
            device: device.into(),
            lost: None,
        };
        members.insert(
            caller.to_string(),
            Member {
                status,
                joined_once: true,
            },
        );
        Self {
            id,
            caller: caller.into(),
            media,
            phase: Phase::Ringing,
            created: now,
            answered: None,
            members,
            ending: None,
        }
    }

    /// Members in the call, with their devices.
    pub fn joined(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members
            .iter()
            .filter_map(|(u, m)| m.joined_device().map(|d| (u.as_str(), d)))
    }

    /// How many members are still part of it (in it or ringing).
    pub fn live(&self) -> (usize, usize) {
        let joined = self.joined().count();
        let ringing = self.members.values().filter(|m| m.ringing()).count();
        (joined, ringing)
    }

    /// Every member but `user` that is still part of the call.
    pub fn others(&self, user: &str) -> Vec<String> {
        self.members
            .iter()
            .filter(|(u, m)| u.as_str() != user && !matches!(m.status, Status::Gone(_)))
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Is `user` part of the call, in it or ringing?
    pub fn has(&self, user: &str) -> bool {
        self.members
            .get(user)
            .is_some_and(|m| !matches!(m.status, Status::Gone(_)))
    }

    /// A one-to-one call: two members, never more.
    pub fn one_to_one(&self) -> bool {
        self.members.len() == 2
    }

    /// Why the call ends now, or `None` if it goes on: it ends when at most one member is in it and nobody
    /// rings, or when nobody at all is in it.
    pub fn end_reason(&self) -> Option<EndReason> {
        if let Some(r) = self.ending {
            return Some(r);
        }
        let (joined, ringing) = self.live();
        if joined > 0 && joined + ringing > 1 {
            return None;
        }
        if self.answered.is_some() {
            return Some(self.last_leave_reason());
        }
        Some(self.unanswered_reason())
    }

    /// An answered call's reason: a lost connection if the last to leave lost theirs, else a hangup.
    fn last_leave_reason(&self) -> EndReason {
        let lost = self
            .members
            .values()
            .any(|m| m.status == Status::Gone(LeaveReason::ConnectionLost));
        let anyone_hung_up = self
            .members
            .values()
            .any(|m| m.status == Status::Gone(LeaveReason::Hangup));
        if lost && !anyone_hung_up {
            EndReason::ConnectionLost
        } else {
            EndReason::Hangup
        }
    }

    /// A call nobody answered: declined if every callee declined, busy if every callee was busy, a lost
    /// connection if the caller's went, else no answer.
    fn unanswered_reason(&self) -> EndReason {
        let caller_lost = self
            .members
            .get(&self.caller)
            .is_some_and(|m| m.status == Status::Gone(LeaveReason::ConnectionLost));
        if caller_lost {
            return EndReason::ConnectionLost;
        }
        let callees: Vec<&Status> = self
            .members
            .iter()
            .filter(|(u, _)| **u != self.caller)
            .map(|(_, m)| &m.status)
            .collect();
        let all = |r: LeaveReason| callees.iter().all(|s| **s == Status::Gone(r));
        if all(LeaveReason::Declined) {
            EndReason::Declined
        } else if all(LeaveReason::Busy) {
            EndReason::Busy
        } else if self
            .members
            .get(&self.caller)
            .is_some_and(|m| m.status == Status::Gone(LeaveReason::Hangup))
        {
            EndReason::Cancelled
        } else {
            EndReason::NoAnswer
        }
    }

    /// Everyone who was ever in the call.
    pub fn participants(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| m.joined_once)
            .map(|(u, _)| u.clone())
            .collect()
    }
}
