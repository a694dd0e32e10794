//! The command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// hualu: a media server for IM apps that place free voice and video calls.
#[derive(Debug, Parser)]
#[command(name = "hualu", version, about)]
pub struct Cli {
    /// The TOML config file (see configs/hualu.toml). Every key has a default.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides one key, e.g. `--set turn.udp_port=3479`. Repeatable; wins over the file and HUALU_* variables.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything on one machine: the TURN relay, the SFU and call control. Without --config it starts in dev mode on
    /// loopback and prints the dev credentials.
    Up {
        /// Dev mode: generated credentials and a self-signed TLS certificate when none are configured.
        #[arg(long)]
        dev: bool,
    },
    /// The TURN relay alone.
    Turn,
    /// The SFU alone (rooms over `/rtc` on `http.listen`).
    Sfu,
    /// Call control alone (`/ws` on `http.listen`), with rooms on the SFU at `signaling.sfu_url`.
    Signaling,
    /// Mints an access token (HS256 JWT) with an API key from `[auth].api_keys`, and prints it.
    Token(TokenArgs),
}

/// `hualu token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The user the token speaks for.
    #[arg(long)]
    pub identity: String,
    /// The room it opens.
    #[arg(long)]
    pub room: Option<String>,
    /// The user's device.
    #[arg(long)]
    pub device: Option<String>,
    /// Leave out the publish grant.
    #[arg(long)]
    pub no_publish: bool,
    /// Leave out the subscribe grant.
    #[arg(long)]
    pub no_subscribe: bool,
    /// Add the admin grant: the token opens the admin API (`/admin/...`).
    #[arg(long)]
    pub admin: bool,
    /// Lifetime in seconds; default `auth.token_ttl_secs`.
    #[arg(long, value_name = "SECS")]
    pub ttl: Option<u64>,
    /// The API key to sign with; needed when several are configured.
    #[arg(long)]
    pub key: Option<String>,
}
