//! Draining on SIGTERM: `/readyz` turns 503, new allocations get 486 (no alternate server is configured), the
//! allocations already there keep relaying without loss, and the process exits cleanly once
//! `turn.drain_deadline_secs` has passed.

mod common;

use common::{assert_no_loss, assert_refused_with, Server, ServerSpec, Uclient};
use std::thread;
use std::time::{Duration, Instant};

const DEADLINE_SECS: u32 = 20;

#[test]
fn sigterm_drains_new_allocations_away_and_keeps_existing_ones() {
    let spec = ServerSpec {
        drain_deadline_secs: DEADLINE_SECS,
        ..ServerSpec::default()
    };
    let mut server = Server::start(&spec);
    // Two clients, 2 allocations each, sending for 3 s: still running when the drain starts.
    let client = Uclient::new(&server).no_rtcp().clients(2).messages(150);
    let running = thread::spawn({
        let client = client.clone();
        move || client.run()
    });
    server.wait_counter("hualu_turn_allocations_active", &[], 4.0);
    let terminated_at = Instant::now();
    server.terminate();

    wait_not_ready(&server);
    let late = Uclient::new(&server).no_rtcp().run();
    assert_refused_with(&server, &late, 486, "error 486");
    server.wait_counter("hualu_turn_allocations_created_total", &[("result", "draining")], 1.0);

    let out = running.join().expect("the uclient thread");
    assert_no_loss(&server, &client, &out);

    let limit = Duration::from_secs(u64::from(DEADLINE_SECS) + 10);
    let code = server
        .wait_exit(limit)
        .unwrap_or_else(|log| panic!("still running after {limit:?}\n{log}"));
    assert_eq!(
        code,
        Some(0),
        "a drained relay exits with status 0\n{}",
        server.log_tail(30)
    );
    let waited = terminated_at.elapsed();
    let deadline = Duration::from_secs(u64::from(DEADLINE_SECS));
    assert!(
        waited + Duration::from_secs(1) >= deadline,
        "exited {waited:?} after SIGTERM, before the deadline"
    );
}

fn wait_not_ready(server: &Server) {
    for _ in 0..30 {
        if server.readyz() == Some(503) {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "/readyz answers {:?} 3 s after SIGTERM, expected 503\n{}",
        server.readyz(),
        server.log_tail(30)
    );
}
