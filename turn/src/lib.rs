//! hualu's TURN relay (RFC 8656, with RFC 6156 IPv6 relays and RFC 8489 STUN).
//!
//! - [`core`]: the sans-IO server. Time comes in as an argument; sockets stay outside.
//! - [`driver`]: one event-loop thread per core, each with its own SO_REUSEPORT UDP, TCP and TLS listeners and
//!   the relay sockets of the allocations it owns.
//!
//! STUN and TURN messages are parsed and written by the `stun-types` and `turn-types` crates (zero-copy,
//! fuzzed, SHA-256 integrity); ChannelData, the fast path, is framed here in four bytes.
//!
//! ```no_run
//! let mut config = hualu_common::config::Config::default();
//! config.turn.users.insert("alice".into(), "a-long-password".into());
//! let relay = hualu_turn::Relay::start(&config).expect("relay starts");
//! // ... until SIGTERM: refuse new allocations, let the others run, then stop.
//! relay.drain();
//! relay.stop();
//! ```

#![deny(unsafe_code)]

pub mod core;
pub mod driver;
#[doc(hidden)]
pub mod fuzzing;
mod setup;

pub use driver::Relay;

pub use setup::{authenticator, core_config, SetupError};
