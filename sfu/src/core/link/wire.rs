//! The link's datagrams between two SFU nodes that share a room. Written by hand: they are a few fixed fields
//! in front of an RTP payload, and a general serializer would cost an allocation per packet.
//!
//! Every datagram starts with [`MAGIC`], a kind byte and the room's tag (8 bytes, see [`super::room_tag`]):
//! - media (kind 1): publisher id (u64), layer (u8), payload type (u8), flags (u8: bit 0 marker, bit 1 an audio
//!   level follows, bit 2 voice activity, bit 3 a voice-activity value is present), audio level (i8), extended
//!   sequence number (u64), RTP time (u32), mid length (u8) and mid, then the RTP payload;
//! - state (kind 2): the sender's participants in the room, as JSON ([`State`]);
//! - keyframe request (kind 3): publisher id (u64, the id on the node it is sent to), layer (u8), kind (u8:
//!   0 PLI, 1 FIR), mid length (u8) and mid.
//!
//! Integers are big-endian.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, Mid};

/// The first byte of every link datagram. RFC 7983 (and its update, RFC 9443) leaves 80..=127 unassigned, so
/// a link datagram is told apart from STUN, DTLS and RTP on the shard's one UDP port by its first byte.
pub const MAGIC: u8 = 0x68;

const MEDIA: u8 = 1;
const STATE: u8 = 2;
const KEYFRAME: u8 = 3;

/// Bytes before a media datagram's mid.
const MEDIA_FIXED: usize = 10 + 8 + 1 + 1 + 1 + 1 + 8 + 4;

/// One media packet as it crosses the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media<'a> {
    /// The publisher, by its id on the sending node.
    pub publisher: u64,
    /// The publisher's m-line.
    pub mid: Mid,
    /// The simulcast layer (0 without simulcast).
    pub layer: u8,
    /// The publisher's payload type.
    pub pt: u8,
    /// The RTP marker bit.
    pub marker: bool,
    /// The audio level extension (RFC 6464), in -dBov.
    pub audio_level: Option<i8>,
    /// Its voice-activity flag.
    pub voice_activity: Option<bool>,
    /// The extended sequence number.
    pub seq: u64,
    /// The RTP timestamp.
    pub time: u32,
    /// The RTP payload.
    pub payload: &'a [u8],
}

/// A request for a keyframe of a published track, from the node whose subscriber wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframe {
    /// The publisher, by its id on the node the request is sent to.
    pub publisher: u64,
    /// Its m-line.
    pub mid: Mid,
    /// The layer wanted.
    pub layer: u8,
    /// PLI or FIR.
    pub kind: KeyframeRequestKind,
}

/// What a node has of a room, sent to each other node of the room every second and at once on a change. The
/// whole state each time, so a lost one is mended by the next. It may take several datagrams, each within
/// [`STATE_BUDGET`] bytes of participants, all of one `epoch`: the receiver takes the state once it has
/// `total` participants of that epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// A random number the sending core drew when it started: a new one means the sender restarted, and its
    /// epochs start again.
    #[serde(default)]
    pub boot: u32,
    /// Which state of the sender this is part of; each new state has a higher one.
    #[serde(default)]
    pub epoch: u32,
    /// How many participants the whole state names.
    #[serde(default)]
    pub total: u32,
    /// The other nodes the sender relays this room with, by link address: a node that joins the room knows only
    /// the one it was sent to, and learns the rest from it.
    #[serde(default)]
    pub partners: Vec<SocketAddr>,
    /// The sender's participants in the room, or those of them this datagram carries.
    #[serde(default)]
    pub participants: Vec<Participant>,
}

/// The most bytes of participants (as JSON) one state datagram carries: with the header and the partners, a
/// datagram stays well within an Ethernet MTU, and within the shard's 2,048-byte datagram buffers.
pub const STATE_BUDGET: usize = 1000;

/// Splits `participants` into groups whose JSON fits [`STATE_BUDGET`] each (a participant bigger than that goes
/// alone); at least one group, empty when there is nobody.
pub fn chunks(participants: Vec<Participant>) -> Vec<Vec<Participant>> {
    let mut out: Vec<Vec<Participant>> = vec![Vec::new()];
    let mut used = 0;
    for p in participants {
        let size = serde_json::to_vec(&p).map_or(STATE_BUDGET, |v| v.len() + 1);
        let last = out.len() - 1;
        if !out[last].is_empty() && used + size > STATE_BUDGET {
            out.push(Vec::new());
            used = 0;
        }
        used += size;
        let last = out.len() - 1;
        out[last].push(p);
    }
    out
}

/// A participant of the sending node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    /// Its id on the sending node.
    pub id: u64,
    /// Its identity.
    pub identity: String,
    /// The codecs its session agreed: a media datagram names one by payload type.
    #[serde(default)]
    pub codecs: Vec<PayloadParams>,
    /// Its published tracks.
    #[serde(default)]
    pub tracks: Vec<TrackState>,
}

/// A published track of a remote participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackState {
    /// The publisher's m-line.
    pub mid: String,
    /// `audio` or `video`.
    pub kind: String,
    /// Muted by its publisher.
    #[serde(default)]
    pub muted: bool,
    /// Its simulcast layers' rids, lowest first; empty without simulcast.
    #[serde(default)]
    pub rids: Vec<String>,
}

/// A datagram read off the link.
#[derive(Debug, PartialEq)]
pub enum Message<'a> {
    /// A media packet.
    Media(Media<'a>),
    /// A node's state of the room.
    State(State),
    /// A keyframe request.
    Keyframe(Keyframe),
}

/// Why a datagram was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Too short for its kind.
    #[error("truncated link datagram")]
    Truncated,
    /// Not a link datagram, or of a kind this version does not know.
    #[error("unknown link datagram (first bytes {0:#04x} {1})")]
    Unknown(u8, u8),
    /// A state whose JSON does not parse.
    #[error("link state: {0}")]
    State(String),
}

/// The room tag of a datagram, and what it carries.
pub fn decode(data: &[u8]) -> Result<(u64, Message<'_>), WireError> {
    if data.len() < 10 {
        return Err(WireError::Truncated);
    }
    if data[0] != MAGIC {
        return Err(WireError::Unknown(data[0], data[1]));
    }
    let tag = u64_at(data, 2);
    let body = &data[10..];
    let msg = match data[1] {
        MEDIA => Message::Media(media(data)?),
        STATE => Message::State(serde_json::from_slice(body).map_err(|e| WireError::State(e.to_string()))?),
        KEYFRAME => Message::Keyframe(keyframe(body)?),
        k => return Err(WireError::Unknown(data[0], k)),
    };
    Ok((tag, msg))
}

fn media(data: &[u8]) -> Result<Media<'_>, WireError> {
    if data.len() < MEDIA_FIXED + 1 {
        return Err(WireError::Truncated);
    }
    let flags = data[20];
    let (mid, payload) = mid_at(data, MEDIA_FIXED)?;
    Ok(Media {
        publisher: u64_at(data, 10),
        layer: data[18],
        pt: data[19],
        marker: flags & 1 != 0,
        audio_level: (flags & 2 != 0).then_some(data[21] as i8),
        voice_activity: (flags & 8 != 0).then_some(flags & 4 != 0),
        seq: u64_at(data, 22),
        time: u32::from_be_bytes([data[30], data[31], data[32], data[33]]),
        mid,
        payload,
    })
}

fn keyframe(body: &[u8]) -> Result<Keyframe, WireError> {
    if body.len() < 11 {
        return Err(WireError::Truncated);
    }
    let (mid, _) = mid_at(body, 10)?;
    Ok(Keyframe {
        publisher: u64_at(body, 0),
        layer: body[8],
        kind: if body[9] == 1 {
            KeyframeRequestKind::Fir
        } else {
            KeyframeRequestKind::Pli
        },
        mid,
    })
}

/// The length-prefixed mid at `at`, and what follows it.
fn mid_at(data: &[u8], at: usize) -> Result<(Mid, &[u8]), WireError> {
    let len = usize::from(data[at]);
    let end = at + 1 + len;
    if len == 0 || len > 16 || data.len() < end {
        return Err(WireError::Truncated);
    }
    let mid = std::str::from_utf8(&data[at + 1..end]).map_err(|_| WireError::Truncated)?;
    Ok((Mid::from(mid), &data[end..]))
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[at..at + 8]);
    u64::from_be_bytes(b)
}

fn head(out: &mut Vec<u8>, kind: u8, tag: u64) {
    out.push(MAGIC);
    out.push(kind);
    out.extend_from_slice(&tag.to_be_bytes());
}

fn push_mid(out: &mut Vec<u8>, mid: &Mid) {
    let s: &str = mid;
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a media datagram to `out` (a reused buffer: nothing is allocated once it has grown).
pub fn encode_media(out: &mut Vec<u8>, tag: u64, m: &Media<'_>) {
    head(out, MEDIA, tag);
    out.extend_from_slice(&m.publisher.to_be_bytes());
    out.push(m.layer);
    out.push(m.pt);
    let flags = u8::from(m.marker)
        | u8::from(m.audio_level.is_some()) << 1
        | u8::from(m.voice_activity == Some(true)) << 2
        | u8::from(m.voice_activity.is_some()) << 3;
    out.push(flags);
    out.push(m.audio_level.unwrap_or(0) as u8);
    out.extend_from_slice(&m.seq.to_be_bytes());
    out.extend_from_slice(&m.time.to_be_bytes());
    push_mid(out, &m.mid);
    out.extend_from_slice(m.payload);
}

/// Appends a state datagram to `out`.
pub fn encode_state(out: &mut Vec<u8>, tag: u64, s: &State) {
    head(out, STATE, tag);
    // Serializing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends a keyframe request to `out`.
pub fn encode_keyframe(out: &mut Vec<u8>, tag: u64, k: &Keyframe) {
    head(out, KEYFRAME, tag);
    out.extend_from_slice(&k.publisher.to_be_bytes());
    out.push(k.layer);
    out.push(u8::from(k.kind == KeyframeRequestKind::Fir));
    push_mid(out, &k.mid);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn media_round_trips(
            tag: u64, publisher: u64, layer: u8, pt: u8, marker: bool, level: Option<i8>, voice: Option<bool>,
            seq: u64, time: u32, mid in "[a-z0-9]{1,16}", payload in proptest::collection::vec(any::<u8>(), 0..1400),
        ) {
            let m = Media {
                publisher, mid: Mid::from(mid.as_str()), layer, pt, marker, audio_level: level,
                voice_activity: voice, seq, time, payload: &payload,
            };
            let mut out = Vec::new();
            encode_media(&mut out, tag, &m);
            prop_assert_eq!(decode(&out), Ok((tag, Message::Media(m))));
        }

        #[test]
        fn keyframe_requests_round_trip(tag: u64, publisher: u64, layer: u8, fir: bool, mid in "[a-z0-9]{1,16}") {
            let kind = if fir { KeyframeRequestKind::Fir } else { KeyframeRequestKind::Pli };
            let k = Keyframe { publisher, mid: Mid::from(mid.as_str()), layer, kind };
            let mut out = Vec::new();
            encode_keyframe(&mut out, tag, &k);
            prop_assert_eq!(decode(&out), Ok((tag, Message::Keyframe(k))));
        }

        #[test]
        fn no_input_panics_the_decoder(data in proptest::collection::vec(any::<u8>(), 0..64), kind in 0u8..5) {
            let mut d = data;
            if d.len() > 1 {
                d[0] = MAGIC;
                d[1] = kind;
            }
            let _ = decode(&d);
        }
    }

    #[test]
    fn a_state_round_trips_with_its_codecs() {
        let s = State {
            boot: 3,
            epoch: 12,
            total: 1,
            partners: vec!["10.0.0.2:50000".parse().expect("addr")],
            participants: vec![Participant {
                id: 7,
                identity: "alice".into(),
                codecs: Vec::new(),
                tracks: vec![TrackState {
                    mid: "0".into(),
                    kind: "audio".into(),
                    muted: false,
                    rids: Vec::new(),
                }],
            }],
        };
        let mut out = Vec::new();
        encode_state(&mut out, 9, &s);
        assert_eq!(decode(&out), Ok((9, Message::State(s))));
    }

    #[test]
    fn a_big_state_is_cut_into_datagrams_that_fit() {
        let p = |id: u64| Participant {
            id,
            identity: format!("user-{id:040}"),
            codecs: Vec::new(),
            tracks: Vec::new(),
        };
        assert_eq!(chunks(Vec::new()), vec![Vec::<Participant>::new()]);
        let all: Vec<Participant> = (0..100).map(p).collect();
        let parts = chunks(all.clone());
        assert!(parts.len() > 1, "{} parts", parts.len());
        for part in &parts {
            let size = serde_json::to_vec(part).expect("json").len();
            assert!(size <= STATE_BUDGET + 2, "{size} bytes");
        }
        assert_eq!(parts.concat(), all, "every participant once, in order");
    }

    #[test]
    fn short_and_foreign_datagrams_are_refused() {
        assert_eq!(decode(&[MAGIC, 1]), Err(WireError::Truncated));
        let mut rtp = vec![0x80u8; 40];
        rtp[1] = 111;
        assert_eq!(decode(&rtp), Err(WireError::Unknown(0x80, 111)));
        let mut cut = Vec::new();
        encode_keyframe(
            &mut cut,
            1,
            &Keyframe {
                publisher: 1,
                mid: Mid::from("1"),
                layer: 0,
                kind: KeyframeRequestKind::Pli,
            },
        );
        cut.pop();
        assert_eq!(decode(&cut), Err(WireError::Truncated));
    }
}
