//! `[cluster]`: many signaling and SFU nodes coordinated through Redis. With no `redis_url` the services keep
//! their state in memory, as `hualu up` on one machine does.

use crate::config::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// What the link key is derived from, before the secret: a new derivation gets a new label, so keys of
/// different versions never match.
const LINK_KEY_LABEL: &[u8] = b"hualu-link-v1\0";

/// The longest `cluster.link_secret` taken.
const MAX_LINK_SECRET_LEN: usize = 1024;

/// How call control picks the SFU node for a new room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectorKind {
    /// The healthy node with the lowest load (participants over capacity).
    #[default]
    LowestLoad,
    /// Two healthy nodes at random, the less loaded of them: near the lowest load, without every call control
    /// node piling onto the same one between heartbeats.
    PowerOfTwo,
    /// The least loaded node in this node's `region`, and any region when none there can take the room. A device
    /// connected to a signaling node in another region than its room's node joins a node in its own region: the
    /// room spans both.
    Region,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The Redis server: `redis://host:port/db`, `rediss://` (TLS), or `unix:///path/to/redis.sock`. Empty: no
    /// cluster.
    pub redis_url: String,
    /// Prefix of every key hualu writes, so several clusters may share one Redis.
    pub key_prefix: String,
    /// This node's name in the cluster, unique. Empty: `<hostname>-<http port>`.
    pub node_id: String,
    /// A free-form region label (`eu-west`), for the `region` selector.
    pub region: String,
    /// The room URL clients of this SFU node are sent to. Empty: `ws://<http.listen>/rtc`, which needs a
    /// `http.listen` address that clients can reach (not 0.0.0.0).
    pub advertise_url: String,
    /// Participants this SFU node takes; a node at this many gets no new rooms. Its load is participants over this.
    pub max_participants: usize,
    /// How often an SFU node reports its load, in milliseconds.
    pub heartbeat_ms: u64,
    /// A node not heard from for this long is dead, in milliseconds.
    pub dead_after_ms: u64,
    /// How call control places a new room.
    pub selector: SelectorKind,
    /// Seconds a draining SFU node keeps its calls before their rooms move to other nodes.
    pub drain_deadline_secs: u64,
    /// The secret SFU nodes authenticate their links with (rooms that span nodes). Empty: the secret of the API
    /// key whose id sorts first. Every SFU node of a cluster must derive the same key ([`ClusterConfig::link_key`]).
    pub link_secret: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            key_prefix: "hualu".into(),
            node_id: String::new(),
            region: String::new(),
            advertise_url: String::new(),
            max_participants: 2000,
            heartbeat_ms: 1000,
            dead_after_ms: 3000,
            selector: SelectorKind::LowestLoad,
            drain_deadline_secs: 30,
            link_secret: String::new(),
        }
    }
}

impl ClusterConfig {
    /// Whether cluster mode is on.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }

    /// The key SFU nodes authenticate their links with: SHA-256 of a version label and the secret, which is
    /// `link_secret`, or when that is empty the secret of the API key in `api_keys` whose id sorts first. `None`
    /// when there is neither (an ES256-only deployment must set `link_secret`).
    pub fn link_key(&self, api_keys: &BTreeMap<String, String>) -> Option<[u8; 32]> {
        let secret = match self.link_secret.as_str() {
            // A BTreeMap iterates in key order: the first is the smallest id, the same on every node.
            "" => api_keys.values().next()?.as_str(),
            s => s,
        };
        let mut h = Sha256::new();
        h.update(LINK_KEY_LABEL);
        h.update(secret.as_bytes());
        Some(h.finalize().into())
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let secret = self.link_secret.len();
        if secret != 0 && !(crate::token::MIN_SECRET_LEN..=MAX_LINK_SECRET_LEN).contains(&secret) {
            return Err(invalid(
                "cluster.link_secret",
                format!(
                    "must be empty or {} to {MAX_LINK_SECRET_LEN} characters",
                    crate::token::MIN_SECRET_LEN
                ),
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        let schemes = ["redis://", "rediss://", "unix://", "redis+unix://"];
        if !schemes.iter().any(|s| self.redis_url.starts_with(s)) {
            return Err(invalid(
                "cluster.redis_url",
                "must start with redis://, rediss://, unix:// or redis+unix://".into(),
            ));
        }
        if !is_name(&self.key_prefix) {
            return Err(invalid("cluster.key_prefix", name_rule()));
        }
        if !self.node_id.is_empty() && !is_name(&self.node_id) {
            return Err(invalid("cluster.node_id", name_rule()));
        }
        if self.region.len() > 64 {
            return Err(invalid("cluster.region", "must be at most 64 characters".into()));
        }
        let url = &self.advertise_url;
        if !(url.is_empty() || url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(invalid("cluster.advertise_url", "must be a ws:// or wss:// URL".into()));
        }
        if self.max_participants < 2 {
            return Err(invalid("cluster.max_participants", "must be at least 2".into()));
        }
        if !(100..=10_000).contains(&self.heartbeat_ms) {
            return Err(invalid("cluster.heartbeat_ms", "must be 100 to 10000".into()));
        }
        if self.dead_after_ms < 2 * self.heartbeat_ms || self.dead_after_ms > 60_000 {
            return Err(invalid(
                "cluster.dead_after_ms",
                "must be at least twice heartbeat_ms, and at most 60000".into(),
            ));
        }
        if self.drain_deadline_secs > 24 * 3600 {
            return Err(invalid("cluster.drain_deadline_secs", "must be at most 86400".into()));
        }
        Ok(())
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn name_rule() -> String {
    "must be 1 to 64 letters, digits, '-', '_' or '.'".into()
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(sets: &[&str]) -> Result<Config, String> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::load(None, &sets).map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_on_with_a_redis_url() {
        let c = load(&[]).expect("defaults");
        assert!(!c.cluster.enabled());
        let c = load(&[
            "cluster.redis_url=\"redis://127.0.0.1:6379\"",
            "cluster.selector=\"power_of_two\"",
        ])
        .expect("a cluster");
        assert!(c.cluster.enabled());
        assert_eq!(c.cluster.selector, super::SelectorKind::PowerOfTwo);
    }

    #[test]
    fn bad_values_name_their_key() {
        let url = "cluster.redis_url=\"redis://r:6379\"";
        for (set, key) in [
            ("cluster.redis_url=\"http://r\"", "cluster.redis_url"),
            ("cluster.node_id=\"a b\"", "cluster.node_id"),
            ("cluster.advertise_url=\"http://x/rtc\"", "cluster.advertise_url"),
            ("cluster.max_participants=1", "cluster.max_participants"),
            ("cluster.heartbeat_ms=50", "cluster.heartbeat_ms"),
            ("cluster.dead_after_ms=1500", "cluster.dead_after_ms"),
            ("cluster.link_secret=\"short\"", "cluster.link_secret"),
        ] {
            let err = load(&[url, set]).expect_err(set);
            assert!(err.contains(key), "{set}: {err}");
        }
        let err = load(&[url, "cluster.selector=\"random\""]).expect_err("an unknown selector");
        assert!(err.contains("selector"), "{err}");
    }

    #[test]
    fn the_link_key_comes_from_the_link_secret_or_the_first_api_key() {
        use sha2::{Digest as _, Sha256};
        use std::collections::BTreeMap;
        let expect =
            |secret: &str| -> [u8; 32] { Sha256::digest([&b"hualu-link-v1\0"[..], secret.as_bytes()].concat()).into() };
        let keys: BTreeMap<String, String> = [("zeta", "z".repeat(32)), ("alpha", "a".repeat(32))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut c = super::ClusterConfig::default();
        // The key whose id sorts first, whatever order the config listed them in.
        assert_eq!(c.link_key(&keys), Some(expect(&"a".repeat(32))));
        assert_eq!(c.link_key(&BTreeMap::new()), None);
        c.link_secret = "s".repeat(40);
        assert_eq!(c.link_key(&keys), Some(expect(&"s".repeat(40))));
        assert_eq!(c.link_key(&BTreeMap::new()), Some(expect(&"s".repeat(40))));
        assert_ne!(expect("x"), expect("y"));
    }
}
