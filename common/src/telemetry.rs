//! The `tracing` subscriber every hualu process installs.

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Dependencies that log per malformed packet at WARN; an attacker must not be able to fill our logs.
const QUIET_DEPENDENCIES: &str = "stun_types=error,stun_proto=error,turn_types=error,rustls=warn";

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
pub fn init(log: &LogConfig) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| log.level.clone());
    let filter = EnvFilter::try_new(format!("{QUIET_DEPENDENCIES},{directives}"))
        .unwrap_or_else(|_| EnvFilter::new(format!("{QUIET_DEPENDENCIES},info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests start several servers in one process) keeps the first subscriber.
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
