//! The JSON messages of `/rtc` (docs/protocol.md, "Room signaling").

use crate::core::roster::{Participant, PeerId, Signal, Track};
use crate::core::Quality;
use serde::Deserialize;
use serde_json::{json, Value};
use str0m::media::MediaKind;

/// A client's message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// First message: join with an offer.
    Join {
        /// Request id.
        id: Option<Value>,
        /// The offer.
        sdp: String,
    },
    /// First message on a new socket: take back a session.
    Resume {
        /// Request id.
        id: Option<Value>,
        /// The session from `joined`.
        session: String,
        /// An offer, usually with an ICE restart.
        sdp: Option<String>,
    },
    /// The client renegotiates.
    Offer {
        /// Request id.
        id: Option<Value>,
        /// The offer.
        sdp: String,
    },
    /// The answer to the server's offer.
    Answer {
        /// The answer.
        sdp: String,
    },
    /// A client candidate.
    Trickle {
        /// The `candidate:` line.
        candidate: String,
        /// Its m-line; unused (the server bundles everything).
        #[serde(rename = "sdpMid")]
        #[allow(dead_code)]
        sdp_mid: Option<String>,
    },
    /// Mute or unmute a track.
    Mute {
        /// The track id.
        track: String,
        /// Muted now.
        muted: bool,
    },
    /// What the client wants of another participant's track: whether to receive it, and the best video
    /// layer.
    Subscribe {
        /// Request id.
        id: Option<Value>,
        /// The track id.
        track: String,
        /// Receive the track; default true.
        #[serde(default = "yes")]
        enabled: bool,
        /// The best video layer wanted: `low`, `medium` or `high` (the default).
        #[serde(default)]
        quality: QualityName,
    },
    /// Leave the room.
    Leave {},
}

fn yes() -> bool {
    true
}

/// A video layer as the protocol names it.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityName {
    /// The lowest layer.
    Low,
    /// The middle layer.
    Medium,
    /// The best layer.
    #[default]
    High,
}

impl From<QualityName> for Quality {
    fn from(q: QualityName) -> Self {
        match q {
            QualityName::Low => Quality::Low,
            QualityName::Medium => Quality::Medium,
            QualityName::High => Quality::High,
        }
    }
}

/// An error reply.
pub fn error(id: Option<&Value>, code: &str, message: &str) -> Value {
    let mut v = json!({"type": "error", "code": code, "message": message});
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    v
}

/// A reply with the request's id, when it had one.
pub fn reply(id: Option<&Value>, mut v: Value) -> Value {
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    v
}

fn kind(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// A track as JSON.
pub fn track(t: &Track) -> Value {
    json!({"id": t.id, "kind": kind(t.kind), "muted": t.muted})
}

/// A participant as JSON.
pub fn participant(p: &Participant) -> Value {
    json!({
        "id": p.id.to_string(),
        "identity": p.identity,
        "tracks": p.tracks.iter().map(track).collect::<Vec<_>>(),
    })
}

/// A shard's signal as the message the client receives.
pub fn signal(s: &Signal) -> Value {
    let pid = |id: &PeerId| id.to_string();
    match s {
        Signal::Offer(offer) => json!({"type": "offer", "sdp": offer.to_sdp_string()}),
        Signal::ParticipantJoined(p) => json!({"type": "participant_joined", "participant": participant(p)}),
        Signal::ParticipantLeft(id) => json!({"type": "participant_left", "participant": pid(id)}),
        Signal::TrackPublished { participant, track: t } => {
            json!({"type": "track_published", "participant": pid(participant), "track": track(t)})
        }
        Signal::TrackUnpublished { participant, track } => {
            json!({"type": "track_unpublished", "participant": pid(participant), "track": track})
        }
        Signal::Muted {
            participant,
            track,
            muted,
        } => json!({"type": "muted", "participant": pid(participant), "track": track, "muted": muted}),
        Signal::Speakers(list) => {
            let speakers: Vec<Value> = list
                .iter()
                .map(|(id, level)| json!({"participant": pid(id), "level": (level * 100.0).round() / 100.0}))
                .collect();
            json!({"type": "speakers", "speakers": speakers})
        }
        Signal::Ended(reason) => json!({"type": "left", "reason": reason}),
    }
}
