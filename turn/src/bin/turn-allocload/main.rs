//! `turn-allocload`: a load generator for the allocation path of a TURN server (RFC 8656), over UDP.
//!
//! coturn's `turnutils_uclient` measures relayed packets but cannot measure how fast a server creates and
//! releases allocations, nor what a flood of unauthenticated Allocates costs it. This tool does both, for
//! hualu and for any other TURN server, so `scripts/bench-turn` can compare them under identical load:
//!
//! - `alloc`: complete allocations as fast as the server allows, each from a new source port: Allocate
//!   (401 with REALM and NONCE), Allocate with long-term credentials, Refresh with LIFETIME 0 to release.
//!   Many jobs are in flight at once on non-blocking sockets, so the figure is the server's rate, not one
//!   client round trip. Prints completed allocations, failures by error code, elapsed time and
//!   allocations per second.
//! - `unauth`: N unauthenticated Allocates from many source ports, counting the 401s. Used to check that
//!   the server's memory does not grow with requests that never authenticate (stateless nonces).
//!
//! Every run is bounded in count and time and stops by itself, and it only targets loopback addresses.
//! Run `turn-allocload --help` for the options.

mod args;
mod engine;
mod proto;
mod stats;
mod watch;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("turn-allocload: {msg}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = engine::Engine::new(args.clone()).and_then(engine::Engine::run);
    match result {
        Ok((mut stats, elapsed)) => {
            stats.report(&args, elapsed);
            if stats.completed == 0 {
                eprintln!("turn-allocload: nothing completed; is the server running?");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("turn-allocload: {e}");
            ExitCode::FAILURE
        }
    }
}
