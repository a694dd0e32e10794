//! The hualu config: one TOML file, every key with a default.
//!
//! Layers, later ones winning:
//! 1. the defaults in this file ([`Config::default`]);
//! 2. the TOML file given with `--config`;
//! 3. environment variables `HUALU_<SECTION>__<KEY>`, e.g. `HUALU_TURN__UDP_PORT=3479`;
//! 4. `--set section.key=value` on the command line, e.g. `--set turn.udp_port=3479`.
//!
//! [`Config::validate`] then checks the whole, and every error names the key at fault.
//! `configs/hualu.toml` documents each key.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use crate::config_cluster::{ClusterConfig, SelectorKind};
pub use crate::config_sfu::{HttpConfig, SfuConfig};
pub use crate::config_signaling::SignalingConfig;

/// The whole config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Development mode: generated credentials and a self-signed TLS certificate when none are configured.
    pub dev: bool,
    /// Logging.
    pub log: LogConfig,
    /// The Prometheus and health-check endpoint.
    pub metrics: MetricsConfig,
    /// The TURN relay.
    pub turn: TurnConfig,
    /// API keys that sign access tokens.
    pub auth: AuthConfig,
    /// The public HTTP port.
    pub http: HttpConfig,
    /// The SFU.
    pub sfu: SfuConfig,
    /// Call control.
    pub signaling: SignalingConfig,
    /// Many nodes through Redis; off without a `redis_url`.
    pub cluster: ClusterConfig,
}

/// `[auth]`: the keys an app's backend signs its users' access tokens with (JWTs, see [`crate::token`]): HS256
/// with a shared API key and secret, or ES256 with a key pair whose public half is configured here. The key id
/// travels in the token's `kid` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// API key = secret. Several at once allow rotation.
    pub api_keys: BTreeMap<String, String>,
    /// Key id = ES256 public key (P-256), as PEM text or the path of a PEM file. The app's backend keeps the
    /// private key; hualu only verifies.
    pub es256_keys: BTreeMap<String, String>,
    /// Lifetime of tokens `hualu token` mints, in seconds.
    pub token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            api_keys: BTreeMap::new(),
            es256_keys: BTreeMap::new(),
            token_ttl_secs: 3600,
        }
    }
}

impl AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, secret) in &self.api_keys {
            if key.is_empty()
                || key.len() > 64
                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(
                    "auth.api_keys",
                    format!("key {key:?} must be 1 to 64 letters, digits, '-' or '_'"),
                ));
            }
            if secret.len() < crate::token::MIN_SECRET_LEN {
                return Err(invalid(
                    "auth.api_keys",
                    format!(
                        "the secret of {key:?} must be at least {} characters",
                        crate::token::MIN_SECRET_LEN
                    ),
                ));
            }
        }
        for (key, pem) in &self.es256_keys {
            if self.api_keys.contains_key(key) {
                return Err(invalid("auth.es256_keys", format!("key {key:?} is also an API key")));
            }
            if let Err(e) = crate::token::es256_key(pem) {
                return Err(invalid("auth.es256_keys", format!("key {key:?}: {e}")));
            }
        }
        if self.token_ttl_secs == 0 || self.token_ttl_secs > crate::token::MAX_TTL_SECS {
            return Err(invalid(
                "auth.token_ttl_secs",
                format!("must be 1 to {} seconds", crate::token::MAX_TTL_SECS),
            ));
        }
        Ok(())
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `hualu_turn=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

/// `[turn]`: the relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// The REALM of long-term credentials.
    pub realm: String,
    /// Addresses the UDP, TCP and TLS listeners bind.
    pub listen_ips: Vec<IpAddr>,
    /// UDP listener port; 0 turns UDP off.
    pub udp_port: u16,
    /// TCP listener port; 0 turns TCP off.
    pub tcp_port: u16,
    /// TLS listener port; 0 turns TLS off.
    pub tls_port: u16,
    /// Local IPv4 address relay sockets bind.
    pub relay_ip: IpAddr,
    /// Local IPv6 address for IPv6 relays (RFC 6156); unset means no IPv6 relays.
    pub relay_ip6: Option<IpAddr>,
    /// The public address advertised for `relay_ip` when behind a 1:1 NAT.
    pub external_ip: Option<IpAddr>,
    /// Lowest relay port.
    pub min_port: u16,
    /// Highest relay port.
    pub max_port: u16,
    /// Event-loop threads; 0 means one per core.
    pub shards: usize,
    /// Static users: name = password.
    pub users: BTreeMap<String, String>,
    /// TURN REST API secrets; the first mints, all verify (for rotation).
    pub rest_secrets: Vec<String>,
    /// Peer ranges allowed despite the built-in deny list (e.g. the SFU subnet).
    pub allow_peers: Vec<IpNet>,
    /// Extra peer ranges to deny, on top of the built-in list.
    pub deny_peers: Vec<IpNet>,
    /// Lifetimes.
    pub lifetime: LifetimeConfig,
    /// Quotas.
    pub quota: QuotaConfig,
    /// Unauthenticated requests (the 401 challenges) answered per second per source IP.
    pub unauth_rate_per_sec: u32,
    /// Burst allowed above `unauth_rate_per_sec`.
    pub unauth_burst: u32,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// Where new allocations are sent while draining (300 Try Alternate); unset gives 486.
    pub alternate_server: Option<SocketAddr>,
    /// Seconds existing allocations keep running after SIGTERM.
    pub drain_deadline_secs: u64,
    /// SO_RCVBUF and SO_SNDBUF of every socket, in bytes.
    pub socket_buffer_bytes: usize,
}

/// `[turn.lifetime]`, in seconds; RFC 8656 values by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifetimeConfig {
    /// Allocation lifetime when the client asks for none.
    pub default_secs: u32,
    /// The most an allocation may ask for.
    pub max_secs: u32,
    /// Permission lifetime.
    pub permission_secs: u32,
    /// Channel binding lifetime.
    pub channel_secs: u32,
    /// How long a nonce stays fresh before 438 Stale Nonce.
    pub nonce_secs: u32,
}

/// `[turn.quota]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Allocations on this server in total.
    pub max_allocations: u32,
    /// Allocations per user.
    pub max_allocations_per_user: u32,
    /// Relayed bytes per second per allocation, both directions together; 0 means no cap.
    pub bandwidth_bytes_per_sec: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9478)),
        }
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            realm: "hualu".into(),
            listen_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            udp_port: 3478,
            tcp_port: 3478,
            tls_port: 5349,
            relay_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            relay_ip6: None,
            external_ip: None,
            min_port: 49152,
            max_port: 65535,
            shards: 0,
            users: BTreeMap::new(),
            rest_secrets: Vec::new(),
            allow_peers: Vec::new(),
            deny_peers: Vec::new(),
            lifetime: LifetimeConfig::default(),
            quota: QuotaConfig::default(),
            unauth_rate_per_sec: 100,
            unauth_burst: 200,
            tls_cert: None,
            tls_key: None,
            alternate_server: None,
            drain_deadline_secs: 30,
            socket_buffer_bytes: 8 << 20,
        }
    }
}

impl Default for LifetimeConfig {
    fn default() -> Self {
        Self {
            default_secs: 600,
            max_secs: 3600,
            permission_secs: 300,
            channel_secs: 600,
            nonce_secs: 600,
        }
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            max_allocations: 100_000,
            max_allocations_per_user: 100,
            bandwidth_bytes_per_sec: 0,
        }
    }
}

/// Why a config could not be loaded. Each message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, the environment or a `--set` gave a value of the wrong type or an unknown key.
    #[error("config: {0}")]
    Load(Box<figment::Error>),
    /// A `--set` argument was not `key=value`.
    #[error("--set {0}: expected section.key=value")]
    BadSet(String),
    /// A value has the right type but breaks a rule.
    #[error("config: {key}: {reason}")]
    Invalid {
        /// The dotted key, e.g. `turn.min_port`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// Loads defaults, then `file`, then `HUALU_*` variables, then `sets`, and validates the result.
    pub fn load(file: Option<&Path>, sets: &[String]) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid("--config", format!("{} does not exist", path.display())));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("HUALU_").split("__"));
        for set in sets {
            fig = fig.merge(Toml::string(&set_to_toml(set)?));
        }
        let config: Config = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks rules that types alone do not express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.turn.validate()?;
        self.sfu.validate()?;
        self.signaling.validate()?;
        self.cluster.validate()?;
        self.auth.validate()
    }
}

impl TurnConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.realm.is_empty() || self.realm.len() > 127 {
            return Err(invalid("turn.realm", "must be 1 to 127 characters".into()));
        }
        if self.listen_ips.is_empty() {
            return Err(invalid("turn.listen_ips", "must name at least one address".into()));
        }
        if self.min_port == 0 || self.min_port > self.max_port {
            return Err(invalid(
                "turn.min_port",
                format!("must be between 1 and turn.max_port ({})", self.max_port),
            ));
        }
        if !self.relay_ip.is_ipv4() {
            return Err(invalid("turn.relay_ip", "must be an IPv4 address".into()));
        }
        if self.relay_ip6.is_some_and(|ip| !ip.is_ipv6()) {
            return Err(invalid("turn.relay_ip6", "must be an IPv6 address".into()));
        }
        self.validate_lifetimes()?;
        self.validate_credentials()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                "turn.tls_key",
                "turn.tls_cert and turn.tls_key go together".into(),
            ));
        }
        if self.socket_buffer_bytes < 65_536 {
            return Err(invalid("turn.socket_buffer_bytes", "must be at least 65536".into()));
        }
        if self.unauth_rate_per_sec == 0 {
            return Err(invalid("turn.unauth_rate_per_sec", "must be at least 1".into()));
        }
        Ok(())
    }

    fn validate_lifetimes(&self) -> Result<(), ConfigError> {
        let l = &self.lifetime;
        if l.default_secs == 0 || l.default_secs > l.max_secs {
            return Err(invalid(
                "turn.lifetime.default_secs",
                format!("must be between 1 and turn.lifetime.max_secs ({})", l.max_secs),
            ));
        }
        for (key, v) in [
            ("turn.lifetime.permission_secs", l.permission_secs),
            ("turn.lifetime.channel_secs", l.channel_secs),
            ("turn.lifetime.nonce_secs", l.nonce_secs),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        Ok(())
    }

    fn validate_credentials(&self) -> Result<(), ConfigError> {
        if let Some((name, _)) = self.users.iter().find(|(n, p)| n.is_empty() || p.is_empty()) {
            return Err(invalid(
                "turn.users",
                format!("user {name:?} needs a non-empty name and password"),
            ));
        }
        if self.rest_secrets.iter().any(|s| s.len() < 16) {
            return Err(invalid(
                "turn.rest_secrets",
                "each secret must be at least 16 characters".into(),
            ));
        }
        Ok(())
    }

    /// Whether any credential is configured.
    pub fn has_credentials(&self) -> bool {
        !self.users.is_empty() || !self.rest_secrets.is_empty()
    }
}

pub(crate) fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

/// Turns `a.b=value` into TOML. A value that is not valid TOML on its own is taken as a string.
fn set_to_toml(set: &str) -> Result<String, ConfigError> {
    let Some((key, value)) = set.split_once('=') else {
        return Err(ConfigError::BadSet(set.into()));
    };
    let key = key.trim();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
        return Err(ConfigError::BadSet(set.into()));
    }
    let value = value.trim();
    let doc = format!("{key} = {value}");
    if doc.parse::<toml::Table>().is_ok() {
        return Ok(doc);
    }
    Ok(format!("{key} = {}", toml::Value::String(value.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().expect("defaults are valid");
    }

    #[test]
    fn set_overrides_and_types_values() {
        let c = Config::load(None, &["turn.udp_port=4000".into(), "turn.realm=example.org".into()]).expect("loads");
        assert_eq!(c.turn.udp_port, 4000);
        assert_eq!(c.turn.realm, "example.org");
    }

    #[test]
    fn set_takes_arrays() {
        let c = Config::load(None, &[r#"turn.allow_peers=["127.0.0.0/8"]"#.into()]).expect("loads");
        assert_eq!(c.turn.allow_peers, vec!["127.0.0.0/8".parse::<IpNet>().expect("cidr")]);
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Config::load(None, &["turn.udp_port=lots".into()]).expect_err("must fail");
        assert!(err.to_string().contains("udp_port"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = Config::load(None, &["turn.udp_prot=1".into()]).expect_err("must fail");
        assert!(err.to_string().contains("udp_prot"), "{err}");
    }

    #[test]
    fn port_range_rule_names_the_key() {
        let err =
            Config::load(None, &["turn.min_port=60000".into(), "turn.max_port=50000".into()]).expect_err("must fail");
        assert!(err.to_string().contains("turn.min_port"), "{err}");
    }

    #[test]
    fn api_key_rules_name_the_key() {
        let short = Config::load(None, &["auth.api_keys.app1=short".into()]).expect_err("must fail");
        assert!(short.to_string().contains("auth.api_keys"), "{short}");
        let long = format!("auth.api_keys.{}={}", "k".repeat(65), "s".repeat(40));
        let bad = Config::load(None, &[long]).expect_err("must fail");
        assert!(bad.to_string().contains("1 to 64 letters"), "{bad}");
        let ok = Config::load(None, &[format!("auth.api_keys.app1={}", "s".repeat(40))]).expect("loads");
        assert_eq!(ok.auth.api_keys.len(), 1);
        let ttl = Config::load(None, &["auth.token_ttl_secs=0".into()]).expect_err("must fail");
        assert!(ttl.to_string().contains("auth.token_ttl_secs"), "{ttl}");
    }

    #[test]
    fn short_rest_secret_is_refused() {
        let err = Config::load(None, &[r#"turn.rest_secrets=["short"]"#.into()]).expect_err("must fail");
        assert!(err.to_string().contains("turn.rest_secrets"), "{err}");
    }

    #[test]
    fn file_values_load() {
        let dir = std::env::temp_dir().join(format!("hualu-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.toml");
        std::fs::write(&path, "[turn]\nrealm = \"file.test\"\n[turn.users]\nalice = \"pw\"\n").expect("write");
        let c = Config::load(Some(&path), &[]).expect("loads");
        assert_eq!(c.turn.realm, "file.test");
        assert_eq!(c.turn.users.get("alice").map(String::as_str), Some("pw"));
    }

    #[test]
    fn example_config_loads_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/hualu.toml");
        let c = Config::load(Some(&path), &[]).expect("configs/hualu.toml loads");
        assert_eq!(c, Config::default(), "the example documents the defaults");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/hualu.toml")), &[]).expect_err("must fail");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
