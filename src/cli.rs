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
    /// Everything on one machine (for now: the TURN relay). Without --config it starts in dev mode on
    /// loopback and prints the dev credentials.
    Up {
        /// Dev mode: generated credentials and a self-signed TLS certificate when none are configured.
        #[arg(long)]
        dev: bool,
    },
    /// The TURN relay alone.
    Turn,
}
