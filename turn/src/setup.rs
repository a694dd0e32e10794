//! Turns `[turn]` into the core's settings and credential store.

use crate::core::{Authenticator, CoreConfig, PeerPolicy};
use hualu_common::config::TurnConfig;
use std::time::Duration;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A listener or the TLS certificate could not be set up.
    #[error("{what}")]
    Io {
        /// Which key or resource.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("turn.tls_cert/turn.tls_key: {0}")]
    Tls(String),
    /// No credential is configured, so nobody could authenticate.
    #[error("turn.users and turn.rest_secrets are both empty: configure at least one credential")]
    NoCredentials,
}

/// The core settings for `t`.
pub fn core_config(t: &TurnConfig) -> CoreConfig {
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    CoreConfig {
        relay_ip: t.relay_ip,
        relay_ip6: t.relay_ip6,
        external_ip: t.external_ip,
        min_port: t.min_port,
        max_port: t.max_port,
        default_lifetime: secs(t.lifetime.default_secs),
        max_lifetime: secs(t.lifetime.max_secs),
        permission_lifetime: secs(t.lifetime.permission_secs),
        channel_lifetime: secs(t.lifetime.channel_secs),
        max_allocations: t.quota.max_allocations,
        max_allocations_per_user: t.quota.max_allocations_per_user,
        bandwidth_bytes_per_sec: t.quota.bandwidth_bytes_per_sec,
        unauth_rate_per_sec: t.unauth_rate_per_sec,
        unauth_burst: t.unauth_burst,
        alternate_server: t.alternate_server,
        policy: PeerPolicy::new(t.allow_peers.clone(), t.deny_peers.clone()),
    }
}

/// The credential store for `t`, with a fresh random nonce key.
pub fn authenticator(t: &TurnConfig) -> Authenticator {
    let nonce_key: [u8; 32] = rand::random();
    Authenticator::new(
        t.realm.clone(),
        t.users.clone(),
        t.rest_secrets.clone(),
        nonce_key,
        t.lifetime.nonce_secs,
    )
}
