//! TURN servers handed to clients with fresh REST credentials: the SFU lists them when a participant joins, and
//! call control when a call is answered.

use crate::config::Config;
use serde_json::{json, Value};

/// TURN servers handed to clients, with REST credentials minted per join.
#[derive(Debug, Clone)]
pub struct TurnServers {
    /// `turn:` and `turns:` URLs.
    pub urls: Vec<String>,
    /// The REST secret (`turn.rest_secrets[0]`).
    pub secret: String,
    /// Credential lifetime.
    pub ttl_secs: u64,
}

impl TurnServers {
    /// From the config: `sfu.turn_urls`, or URLs derived from `[turn]`; none without a REST secret.
    pub fn from_config(config: &Config) -> Option<Self> {
        let t = &config.turn;
        let secret = t.rest_secrets.first()?.clone();
        let mut urls = config.sfu.turn_urls.clone();
        if urls.is_empty() {
            let ip = t.external_ip.or(t.listen_ips.first().copied())?;
            let host = match ip {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            if t.udp_port != 0 {
                urls.push(format!("turn:{host}:{}?transport=udp", t.udp_port));
            }
            if t.tcp_port != 0 {
                urls.push(format!("turn:{host}:{}?transport=tcp", t.tcp_port));
            }
            if t.tls_port != 0 {
                urls.push(format!("turns:{host}:{}?transport=tcp", t.tls_port));
            }
        }
        Some(Self {
            urls,
            secret,
            ttl_secs: config.sfu.turn_credential_ttl_secs,
        })
    }

    /// `Link` header values for WHIP and WHEP (RFC 9725 section 4.6), one per URL.
    pub fn links(&self, identity: &str) -> Vec<String> {
        let now = crate::clock::unix_now();
        let c = crate::rest::mint(&self.secret, identity, now, self.ttl_secs);
        self.urls
            .iter()
            .map(|u| {
                format!(
                    "<{u}>; rel=\"ice-server\"; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    c.username, c.password
                )
            })
            .collect()
    }

    pub fn ice_servers(&self, identity: &str) -> Value {
        let now = crate::clock::unix_now();
        let c = crate::rest::mint(&self.secret, identity, now, self.ttl_secs);
        json!([{"urls": self.urls, "username": c.username, "credential": c.password}])
    }
}
