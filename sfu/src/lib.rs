//! hualu's selective forwarding unit: rooms whose participants each send their streams once, forwarded to every
//! other participant without decoding.
//!
//! [`Sfu`] is the sans-IO core of one shard: it owns one str0m [`str0m::Rtc`] per participant (ICE-lite, RTP
//! mode), takes datagrams and time from its driver, and hands back datagrams to send and messages to deliver.
//! It never touches a socket or a clock, so tests drive whole rooms in virtual time.

//!
//! [`Node`] runs the cores, one shard thread per core, each with its own UDP and ICE-TCP ports, and
//! [`signaling`] is the `/rtc` WebSocket through which clients join rooms.

mod core;
mod node;
pub mod shard;
pub mod signaling;

pub use crate::core::quality::{Feedback, QualitySample, STATS_INTERVAL};
pub use crate::core::roster::{JoinRequest, Joined, MediaReport, Participant, PeerId, Signal, Track};
pub use crate::core::{JoinError, Limits, LinkStats, Preference, Quality, Sfu, KEYFRAME_REQUEST_INTERVAL};
pub use node::{Node, NodeError};
