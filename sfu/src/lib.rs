//! hualu's selective forwarding unit: rooms whose participants each send their streams once, forwarded to every
//! other participant without decoding.
//!
//! [`Sfu`] is the sans-IO core of one shard: it owns one str0m [`str0m::Rtc`] per participant (ICE-lite, RTP
//! mode), takes datagrams and time from its driver, and hands back datagrams to send and session descriptions
//! to deliver. It never touches a socket or a clock, so tests drive whole rooms in virtual time.

mod sfu;

pub use sfu::{JoinError, Limits, PeerId, Sfu, Signal, KEYFRAME_REQUEST_INTERVAL};
