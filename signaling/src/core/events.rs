//! What the switchboard tells devices, the app's backend and the media side. Events serialize to the JSON that
//! clients receive (`docs/protocol.md`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A call's id. Ids are allocated in increasing order and compare as strings in that order, so glare can keep
/// "the lesser call id".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub String);

impl CallId {
    /// The id for sequence number `n`: fixed width, so string order is numeric order.
    pub fn from_seq(n: u64) -> Self {
        CallId(format!("c{n:016x}"))
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One device of one user: where events go.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Device {
    /// The user's id.
    pub user: String,
    /// The device's id, unique among the user's devices.
    pub device: String,
}

impl Device {
    /// `device` of `user`.
    pub fn new(user: &str, device: &str) -> Self {
        Self {
            user: user.into(),
            device: device.into(),
        }
    }
}

/// Audio only, or audio and video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Media {
    /// Audio only.
    Audio,
    /// Audio and video.
    Video,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The last participants hung up.
    Hangup,
    /// The caller cancelled before an answer.
    Cancelled,
    /// Every callee declined.
    Declined,
    /// Every callee was busy.
    Busy,
    /// Nobody answered within the ring timeout.
    NoAnswer,
    /// A participant's connection did not come back within the grace period, leaving nobody to talk to.
    ConnectionLost,
    /// No media server could take the answered call.
    NoCapacity,
}

/// Why one participant left a call, or stopped being invited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It hung up.
    Hangup,
    /// It declined.
    Declined,
    /// It was busy and does not take call waiting.
    Busy,
    /// It did not answer within the ring timeout.
    NoAnswer,
    /// The call ended before it answered.
    Cancelled,
    /// Its connection did not come back within the grace period.
    ConnectionLost,
}

/// An event for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A call rings this device.
    Incoming {
        /// The call.
        call: CallId,
        /// Who calls.
        from: String,
        /// Everyone in the call, or invited to it, besides this user.
        members: Vec<String>,
        /// Audio or video.
        media: Media,
        /// The user is in another call: this one rings as call waiting.
        waiting: bool,
    },
    /// The first device of `user` rings (for the caller's ringback, and for the others in a group call).
    Ringing {
        /// The call.
        call: CallId,
        /// The user whose device rings.
        user: String,
    },
    /// `user` answered on `device`.
    Answered {
        /// The call.
        call: CallId,
        /// Who answered.
        user: String,
        /// On which device.
        device: String,
    },
    /// Another device of this user answered; this one stops ringing.
    AnsweredElsewhere {
        /// The call.
        call: CallId,
        /// The device that answered.
        device: String,
    },
    /// `user` declined. Sent to the others in the call and to the decliner's other ringing devices.
    Declined {
        /// The call.
        call: CallId,
        /// Who declined.
        user: String,
    },
    /// `user` is in another call and does not take call waiting.
    Busy {
        /// The call.
        call: CallId,
        /// Who is busy.
        user: String,
    },
    /// `user` did not answer within the ring timeout. The callee's ringing devices get it too.
    Missed {
        /// The call.
        call: CallId,
        /// Who did not answer.
        user: String,
    },
    /// The call was cancelled, or ended, before this device answered: it stops ringing.
    Cancelled {
        /// The call.
        call: CallId,
    },
    /// `user` was invited into the call by `by`.
    Invited {
        /// The call.
        call: CallId,
        /// The new invitee.
        user: String,
        /// Who invited.
        by: String,
    },
    /// `user` left the call.
    Left {
        /// The call.
        call: CallId,
        /// Who left.
        user: String,
        /// Why.
        reason: LeaveReason,
    },
    /// `user`'s connection dropped; the call waits for it for the grace period.
    Reconnecting {
        /// The call.
        call: CallId,
        /// Who is reconnecting.
        user: String,
    },
    /// `user` is back.
    Reconnected {
        /// The call.
        call: CallId,
        /// Who came back.
        user: String,
    },
    /// Media flows: the call is active.
    Active {
        /// The call.
        call: CallId,
    },
    /// The call ended.
    Ended {
        /// The call.
        call: CallId,
        /// Why.
        reason: EndReason,
    },
    /// A watched user's connected devices changed.
    Presence {
        /// The user.
        user: String,
        /// Its connected devices.
        devices: Vec<String>,
    },
}

impl Event {
    /// The call the event is about, if any.
    pub fn call(&self) -> Option<&CallId> {
        match self {
            Event::Presence { .. } => None,
            Event::Incoming { call, .. }
            | Event::Ringing { call, .. }
            | Event::Answered { call, .. }
            | Event::AnsweredElsewhere { call, .. }
            | Event::Declined { call, .. }
            | Event::Busy { call, .. }
            | Event::Missed { call, .. }
            | Event::Cancelled { call }
            | Event::Invited { call, .. }
            | Event::Left { call, .. }
            | Event::Reconnecting { call, .. }
            | Event::Reconnected { call, .. }
            | Event::Active { call }
            | Event::Ended { call, .. } => Some(call),
        }
    }
}

/// A call event for the app's backend (a webhook).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Hook {
    /// A call rings `to`; `offline` lists the devices of each callee that are known but not connected, so the
    /// app can wake them with a push.
    #[serde(rename = "call.invite")]
    Invite {
        /// The call.
        call: CallId,
        /// The caller.
        from: String,
        /// The callees.
        to: Vec<String>,
        /// Audio or video.
        media: Media,
        /// Known devices that are not connected, per callee.
        offline: Vec<Device>,
        /// Callees with no connected device at all.
        unreachable: Vec<String>,
    },
    /// The caller cancelled before an answer.
    #[serde(rename = "call.cancelled")]
    Cancelled {
        /// The call.
        call: CallId,
        /// The caller.
        from: String,
        /// Who was still ringing.
        to: Vec<String>,
    },
    /// `user` did not answer.
    #[serde(rename = "call.missed")]
    Missed {
        /// The call.
        call: CallId,
        /// The caller.
        from: String,
        /// Who missed it.
        user: String,
    },
    /// The first answer.
    #[serde(rename = "call.answered")]
    Answered {
        /// The call.
        call: CallId,
        /// Who answered.
        user: String,
        /// On which device.
        device: String,
        /// Milliseconds from the invite.
        after_ms: u64,
    },
    /// The call ended.
    #[serde(rename = "call.ended")]
    Ended {
        /// The call.
        call: CallId,
        /// Why.
        reason: EndReason,
        /// Who placed it.
        from: String,
        /// Milliseconds from the first answer to the end; 0 for a call never answered.
        duration_ms: u64,
        /// Everyone who was ever in the call (the caller and those who answered).
        participants: Vec<String>,
        /// Audio or video.
        media: Media,
    },
}

/// What the switchboard asks of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `event` to `to`.
    Event {
        /// The device.
        to: Device,
        /// What happened.
        event: Event,
    },
    /// Post a webhook.
    Hook(Hook),
    /// The call was answered: create its room on an SFU node. Comes before the call's first [`Output::Join`].
    Place(CallId),
    /// `device` is in the call: send it the room to join (`join {room, sfu_url, token, ice_servers}`).
    Join {
        /// The call.
        call: CallId,
        /// The device.
        to: Device,
    },
    /// `device` left the call: its room access ends.
    Leave {
        /// The call.
        call: CallId,
        /// The device.
        to: Device,
    },
    /// The call ended: close its room.
    Close(CallId),
}
