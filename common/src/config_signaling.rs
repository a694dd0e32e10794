//! `[signaling]`: call control's timers, limits and webhooks.

use crate::config::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// `[signaling]`: call control (`GET /ws`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalingConfig {
    /// How long a callee rings before the call counts as missed.
    pub ring_timeout_secs: u64,
    /// How long a device whose connection dropped keeps its session and its place in its calls.
    pub grace_secs: u64,
    /// Most members in one call (the caller included).
    pub max_members: usize,
    /// Largest message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Messages per second one user may send, over all its devices (a token bucket's rate).
    pub user_rate: f64,
    /// How many messages a user may send at once (the bucket's size).
    pub user_burst: f64,
    /// Messages per second from one IP address.
    pub ip_rate: f64,
    /// How many messages one IP address may send at once.
    pub ip_burst: f64,
    /// Events kept per session for `resume`.
    pub resume_events: usize,
    /// The room URL clients get in `join` (the SFU's `/rtc`). Empty: `ws://<http.listen>/rtc`.
    pub sfu_url: String,
    /// Lifetime of the room tokens handed out in `join`, in seconds.
    pub room_token_ttl_secs: u64,
    /// Where call events are posted (`docs/webhooks.md`). Empty: no webhooks.
    pub webhook_url: String,
    /// The secret that signs them (HMAC-SHA256). Required with `webhook_url`.
    pub webhook_secret: String,
    /// Delivery attempts per webhook before it is given up.
    pub webhook_attempts: u32,
}

impl Default for SignalingConfig {
    fn default() -> Self {
        Self {
            ring_timeout_secs: 45,
            grace_secs: 30,
            max_members: 16,
            max_message_bytes: 16 * 1024,
            user_rate: 20.0,
            user_burst: 40.0,
            ip_rate: 100.0,
            ip_burst: 200.0,
            resume_events: 256,
            sfu_url: String::new(),
            room_token_ttl_secs: 4 * 3600,
            webhook_url: String::new(),
            webhook_secret: String::new(),
            webhook_attempts: 8,
        }
    }
}

impl SignalingConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.ring_timeout_secs == 0 || self.ring_timeout_secs > 600 {
            return Err(invalid("signaling.ring_timeout_secs", "must be 1 to 600".into()));
        }
        if self.grace_secs > 3600 {
            return Err(invalid("signaling.grace_secs", "must be at most 3600".into()));
        }
        if !(2..=256).contains(&self.max_members) {
            return Err(invalid("signaling.max_members", "must be 2 to 256".into()));
        }
        if self.max_message_bytes < 256 {
            return Err(invalid("signaling.max_message_bytes", "must be at least 256".into()));
        }
        for (key, v) in [
            ("signaling.user_rate", self.user_rate),
            ("signaling.user_burst", self.user_burst),
            ("signaling.ip_rate", self.ip_rate),
            ("signaling.ip_burst", self.ip_burst),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(key, "must be a positive number".into()));
            }
        }
        if !self.webhook_url.is_empty() {
            if !(self.webhook_url.starts_with("http://") || self.webhook_url.starts_with("https://")) {
                return Err(invalid(
                    "signaling.webhook_url",
                    "must be an http:// or https:// URL".into(),
                ));
            }
            if self.webhook_secret.len() < 16 {
                return Err(invalid(
                    "signaling.webhook_secret",
                    "must be set, at least 16 characters, with webhook_url".into(),
                ));
            }
        }
        Ok(())
    }
}
