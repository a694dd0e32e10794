//! `[http]` and `[sfu]`: the public HTTP port, and the SFU's shards, ports and limits.

use crate::config::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// `[http]`: the public HTTP port clients talk to (the SFU's `/rtc`; later call control, WHIP and the SDK).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7880)),
        }
    }
}

/// `[sfu]`: the selective forwarding unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SfuConfig {
    /// Event-loop threads, each with its own rooms and ports; 0 means one per core.
    pub shards: usize,
    /// The address the media sockets bind.
    pub listen_ip: IpAddr,
    /// The address advertised in ICE candidates, when it differs from `listen_ip` (1:1 NAT, e.g. a cloud VM's
    /// public address). Required when `listen_ip` is unspecified (0.0.0.0 or ::).
    pub public_ip: Option<IpAddr>,
    /// UDP port of shard 0; shard `i` uses `udp_port + i`.
    pub udp_port: u16,
    /// ICE-TCP port of shard 0 (RFC 6544 passive candidates, RFC 4571 framing); shard `i` uses `tcp_port + i`.
    /// 0 turns ICE-TCP off.
    pub tcp_port: u16,
    /// Participants per room.
    pub participants_per_room: usize,
    /// Rooms on this node, spread over its shards.
    pub max_rooms: usize,
    /// A participant whose ICE has not connected this long after joining is removed.
    pub connect_timeout_secs: u64,
    /// A participant from whom no media or check has arrived this long is removed.
    pub idle_timeout_secs: u64,
    /// How long a participant whose signaling socket dropped keeps its session, waiting for `resume`.
    pub resume_grace_secs: u64,
    /// TURN URLs given to clients with REST credentials from `turn.rest_secrets`. Empty: derived from `[turn]`
    /// (its external or first listen address and its ports).
    pub turn_urls: Vec<String>,
    /// Lifetime of the TURN REST credentials handed out at join, in seconds.
    pub turn_credential_ttl_secs: u64,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            shards: 0,
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            public_ip: None,
            udp_port: 7882,
            tcp_port: 7882,
            participants_per_room: 100,
            max_rooms: 10_000,
            connect_timeout_secs: 15,
            idle_timeout_secs: 30,
            resume_grace_secs: 20,
            turn_urls: Vec::new(),
            turn_credential_ttl_secs: 6 * 3600,
        }
    }
}

impl SfuConfig {
    /// The number of shards to run: `shards`, or one per core.
    pub fn shard_count(&self) -> usize {
        match self.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The address advertised in candidates.
    pub fn advertised_ip(&self) -> IpAddr {
        self.public_ip.unwrap_or(self.listen_ip)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.shards > 256 {
            return Err(invalid("sfu.shards", "must be at most 256".into()));
        }
        if self.advertised_ip().is_unspecified() {
            return Err(invalid(
                "sfu.public_ip",
                format!("must be set when sfu.listen_ip is {}", self.listen_ip),
            ));
        }
        if self.public_ip.is_some_and(|p| p.is_ipv4() != self.listen_ip.is_ipv4()) {
            return Err(invalid(
                "sfu.public_ip",
                "must be of the same family as sfu.listen_ip".into(),
            ));
        }
        let top = usize::from(self.udp_port) + self.shard_count();
        if self.udp_port == 0 || top > 65536 {
            return Err(invalid(
                "sfu.udp_port",
                "must be 1 or more, with a port free for each shard".into(),
            ));
        }
        if usize::from(self.tcp_port) + self.shard_count() > 65536 {
            return Err(invalid("sfu.tcp_port", "leaves no port for each shard".into()));
        }
        if self.participants_per_room < 2 {
            return Err(invalid("sfu.participants_per_room", "must be at least 2".into()));
        }
        if self.max_rooms == 0 {
            return Err(invalid("sfu.max_rooms", "must be at least 1".into()));
        }
        for (key, v) in [
            ("sfu.connect_timeout_secs", self.connect_timeout_secs),
            ("sfu.idle_timeout_secs", self.idle_timeout_secs),
            ("sfu.resume_grace_secs", self.resume_grace_secs),
            ("sfu.turn_credential_ttl_secs", self.turn_credential_ttl_secs),
        ] {
            if v == 0 || v > 7 * 86_400 {
                return Err(invalid(key, "must be from 1 s to 7 days".into()));
            }
        }
        if let Some(bad) = self
            .turn_urls
            .iter()
            .find(|u| !u.starts_with("turn:") && !u.starts_with("turns:"))
        {
            return Err(invalid(
                "sfu.turn_urls",
                format!("{bad:?} is not a turn: or turns: URL"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(sets: &[&str]) -> Result<Config, String> {
        let sets: Vec<String> = sets.iter().map(ToString::to_string).collect();
        Config::load(None, &sets).map_err(|e| e.to_string())
    }

    #[test]
    fn an_unspecified_listen_ip_needs_a_public_ip() {
        let err = load(&["sfu.listen_ip=\"0.0.0.0\""]).expect_err("refused");
        assert_eq!(err, "config: sfu.public_ip: must be set when sfu.listen_ip is 0.0.0.0");
        let c = load(&["sfu.listen_ip=\"0.0.0.0\"", "sfu.public_ip=\"203.0.113.11\""]).expect("loads");
        assert_eq!(c.sfu.advertised_ip().to_string(), "203.0.113.11");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("sfu.turn_urls=[\"http://x\"]", "sfu.turn_urls"),
            ("sfu.participants_per_room=1", "sfu.participants_per_room"),
            ("sfu.resume_grace_secs=0", "sfu.resume_grace_secs"),
            ("sfu.udp_port=65535", "sfu.udp_port"),
            ("sfu.public_ip=\"::1\"", "sfu.public_ip"),
        ];
        for (set, key) in cases {
            let err = load(&[set, "sfu.shards=2"]).expect_err(set);
            assert!(err.starts_with(&format!("config: {key}: ")), "{set}: {err}");
        }
    }
}
