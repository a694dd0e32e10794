//! What the core tells a driver about a room: its participants and their tracks, and the messages for each
//! participant's signaling channel.

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{MediaKind, Mid};

/// A participant, unique within one process: each shard numbers its own from a distinct base.
pub type PeerId = u64;

/// Who joins, and what the access token lets them do.
#[derive(Debug, Clone)]
pub struct JoinRequest<'a> {
    /// The room.
    pub room: &'a str,
    /// The user's identity, shown to the others.
    pub identity: &'a str,
    /// Its tracks are forwarded to the others.
    pub publish: bool,
    /// It receives the others' tracks.
    pub subscribe: bool,
    /// The SFU may send it offers (the `/rtc` protocol). Without, as for WHIP and WHEP, which have no channel
    /// for server offers, it receives tracks only on the receive m-lines its own offer brought, in order of
    /// publication and matched by kind, and a track that finds no free m-line waits for one.
    pub server_offers: bool,
    /// The link addresses of the room's other SFU nodes, from the token (`grants.links`): the room spans them.
    pub links: &'a [std::net::SocketAddr],
}

/// A participant as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// Its id.
    pub id: PeerId,
    /// The identity from its token.
    pub identity: String,
    /// The tracks it publishes.
    pub tracks: Vec<Track>,
}

/// A published track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// `<participant id>-<publisher's mid>`; also the track id in the subscribers' `a=msid`.
    pub id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The publisher muted it.
    pub muted: bool,
}

impl Track {
    pub(crate) fn id_of(peer: PeerId, mid: Mid) -> String {
        format!("{peer}-{mid}")
    }
}

/// A successful join.
#[derive(Debug)]
pub struct Joined {
    /// The new participant.
    pub id: PeerId,
    /// The answer to its offer.
    pub answer: SdpAnswer,
    /// The others in the room, with their tracks.
    pub participants: Vec<Participant>,
}

/// Whether a participant's media reaches the SFU, for call control: a call becomes active when media flows,
/// and a participant whose media died gets a grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaReport {
    /// The room.
    pub room: String,
    /// The participant's identity (its user id).
    pub identity: String,
    /// Connected now (true), or lost: timed out, failed, or ICE disconnected (false).
    pub flowing: bool,
}

/// A message for the driver to deliver to a participant over its signaling channel.
#[derive(Debug)]
pub enum Signal {
    /// The server renegotiates (tracks came or went): the participant must answer with
    /// [`crate::Sfu::handle_answer`].
    Offer(SdpOffer),
    /// Someone joined the room.
    ParticipantJoined(Participant),
    /// Someone left the room.
    ParticipantLeft(PeerId),
    /// Someone published a track.
    TrackPublished {
        /// Who.
        participant: PeerId,
        /// The track.
        track: Track,
    },
    /// Someone stopped publishing a track.
    TrackUnpublished {
        /// Who.
        participant: PeerId,
        /// The track's id.
        track: String,
    },
    /// Someone muted or unmuted a track.
    Muted {
        /// Who.
        participant: PeerId,
        /// The track's id.
        track: String,
        /// Muted now.
        muted: bool,
    },
    /// The room's active speakers changed: loudest first, each with a level from 0 to 1. Empty when nobody
    /// speaks.
    Speakers(Vec<(PeerId, f32)>),
    /// The SFU ended the participant's session, for the reason given.
    Ended(&'static str),
}
