//! Helpers the end-to-end tests share: a block of free loopback ports per test ([`ports`]), the relay under test
//! started from a generated TOML config ([`server`]), coturn's `turnutils_uclient` and `turnutils_peer` run with
//! timeouts ([`tools`]), and a tiny HTTP client for `/readyz` and `/metrics` ([`http`]).
//!
//! The tests drive `target/debug/hualu turn`. For checking the harness itself against the reference server, set
//! `HUALU_E2E_SERVER=coturn` to run the same tests against coturn's `turnserver` instead (hualu-only checks, such
//! as metrics, are then skipped).

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

pub mod harness;
pub mod hooks;
pub mod http;
pub mod phone;
pub mod ports;
pub mod redis;
pub mod room_client;
pub mod server;
pub mod sfu;
pub mod tools;

pub use server::{Server, ServerSpec};
pub use tools::{ToolOutput, Uclient};

/// Messages each uclient session sends in the load tests.
pub const LOAD_MESSAGES: u32 = 50;
/// RTP payload size of the load tests: 20 ms of G.711 audio.
pub const VOIP_PAYLOAD: u32 = 160;

/// The static user every test server knows.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "alice-secret-pw";

/// The server of the load tests: the default one, with a per-user quota high enough for uclient's sessions (which
/// all share one user name; `-m 100` holds 150 allocations, past the default quota of 100).
pub fn load_spec() -> ServerSpec {
    ServerSpec {
        max_allocations_per_user: Some(1000),
        ..ServerSpec::default()
    }
}

/// Runs `client` against `server` and asserts that every message came back: uclient exits 0, sent `-m` times `-n`
/// messages, received as many, lost none and dropped none. For hualu, the relay's own counters must show at least
/// that many packets relayed each way on the client's transport.
///
/// One load runs at a time, across test processes: on 2 cores two loads at once (plus the compiler, in CI) starve
/// the echoing peer and uclient of CPU, and a loss there would be blamed on the relay.
pub fn assert_relayed_without_loss(server: &Server, client: &Uclient) -> ToolOutput {
    let load = ports::LockFile::take("load", Duration::from_secs(240));
    let out = client.run();
    drop(load);
    assert_no_loss(server, client, &out);
    out
}

/// The checks of [`assert_relayed_without_loss`] on the output of a `client` run already done.
pub fn assert_no_loss(server: &Server, client: &Uclient, out: &ToolOutput) {
    let context = || format!("{out}\n{}", server.log_tail(30));
    assert!(out.success(), "uclient failed\n{}", context());
    let summary = out
        .summary()
        .unwrap_or_else(|| panic!("no final summary in uclient's output\n{}", context()));
    let expected = client.expected_messages();
    assert_eq!(summary.sent, expected, "messages sent\n{}", context());
    assert_eq!(summary.received, summary.sent, "messages echoed back\n{}", context());
    assert_eq!(summary.lost, 0, "lost packets\n{}", context());
    assert_eq!(summary.send_dropped, 0, "send drops\n{}", context());
    for direction in ["to_peer", "to_client"] {
        let labels = [("direction", direction), ("transport", client.transport())];
        server.wait_counter("hualu_turn_relayed_packets_total", &labels, expected as f64);
    }
}

/// Asserts that uclient gave up (non-zero exit) rather than succeeding or hanging.
fn assert_failed(server: &Server, out: &ToolOutput) {
    let context = format!("{out}\n{}", server.log_tail(30));
    assert!(
        !out.success() && !out.timed_out,
        "uclient should fail, not succeed or hang\n{context}"
    );
}

/// Asserts that `out` is uclient giving up on bad credentials for the right reason: it exited non-zero after
/// `Cannot complete Allocation`, the server answered every Allocate (`-v` prints `allocate response received`) and
/// every answer was a challenge (uclient retries on 401 or 438 and prints no error code for them; any other
/// error would be printed as `error NNN`). For hualu, the relay must also count the failed authentication.
pub fn assert_refused_credentials(server: &Server, out: &ToolOutput) {
    let context = || format!("{out}\n{}", server.log_tail(30));
    assert_failed(server, out);
    assert!(
        out.count("Cannot complete Allocation") >= 1,
        "no allocation failure\n{}",
        context()
    );
    assert!(
        out.error_codes().is_empty(),
        "an error other than 401 was reported\n{}",
        context()
    );
    assert!(
        out.count("allocate response received") >= 2,
        "the server did not answer (uclient needs -v)\n{}",
        context()
    );
    assert!(out.summary().is_none(), "no traffic may have flowed\n{}", context());
    server.wait_counter("hualu_turn_auth_failures_total", &[], 1.0);
    let unauthorized = [("result", "unauthorized")];
    server.wait_counter("hualu_turn_allocations_created_total", &unauthorized, 1.0);
}

/// Asserts that `out` is uclient stopped by the STUN error `code`, reported in a line containing `line`
/// (e.g. `channel bind: error 403`).
pub fn assert_refused_with(server: &Server, out: &ToolOutput, code: u16, line: &str) {
    let context = || format!("{out}\n{}", server.log_tail(30));
    assert_failed(server, out);
    assert!(
        out.error_codes().contains(&code),
        "no error {code} reported\n{}",
        context()
    );
    assert!(out.count(line) >= 1, "no line with {line:?}\n{}", context());
    assert!(out.summary().is_none(), "no traffic may have flowed\n{}", context());
}
