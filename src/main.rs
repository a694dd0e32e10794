//! `hualu`: the media server's one binary. `hualu up` runs every service on one machine; `hualu turn` runs
//! the TURN relay alone; `hualu token` mints an access token.

mod cli;
mod dev;
mod serve;
mod token;
mod web;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match serve::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hualu: {e:#}");
            ExitCode::FAILURE
        }
    }
}
