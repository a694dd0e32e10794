//! Pieces every hualu service shares.
//!
//! - [`config`]: the one TOML config, with defaults, environment and command-line overrides, and validation
//!   whose errors name the offending key.
//! - [`rest`]: TURN REST API credentials (`username = expiry:user`,
//!   `password = base64(HMAC-SHA1(secret, username))`), shared by signaling and the TURN relay, and compatible
//!   with coturn's `use-auth-secret`.
//! - [`token`]: access tokens (HS256 JWTs signed with an API key's secret): who the user is, which room, and
//!   what they may do there. `hualu token` mints them; the SFU and signaling check them.
//! - [`ice_servers`]: TURN URLs with REST credentials, as clients' `ice_servers`.
//! - [`telemetry`]: the `tracing` subscriber.
//! - [`http`]: the Prometheus metrics endpoint and the health checks, on one HTTP port.
//! - [`clock`]: wall-clock helpers for drivers (cores take time as an argument and never read a clock).

pub mod clock;
pub mod config;
mod config_cluster;
mod config_sfu;
mod config_signaling;
pub mod http;
pub mod ice_servers;
pub mod procstat;
pub mod rest;
pub mod telemetry;
pub mod token;
pub mod udp_batch;

/// The shard of an SFU node with `shards` shards that holds `room`: every participant of a room reaches that
/// shard's ports, and a node relaying a spanning room sends to that shard of the other node. FNV-1a: stable across
/// processes, restarts and nodes, unlike a randomly seeded hasher.
pub fn room_shard(room: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}
