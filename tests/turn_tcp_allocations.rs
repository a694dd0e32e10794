//! TCP allocations (RFC 6062) through the real relay: coturn's client in `-T` mode pairs its clients, each
//! Connects to the other's relayed TCP address, the other gets a ConnectionAttempt, both ConnectionBind a new
//! connection, and every message must arrive.

mod common;

use common::{load_spec, Server, Uclient};
use std::time::Duration;

#[test]
fn tcp_relays_splice_client_to_client_without_loss() {
    let server = Server::start(&load_spec());
    let client = Uclient::new(&server).tcp_relay().clients(10);
    let load = common::ports::LockFile::take("load", Duration::from_secs(240));
    let out = client.run();
    drop(load);
    let context = || format!("{out}\n{}", server.log_tail(30));
    assert!(out.success(), "uclient failed\n{}", context());
    let summary = out.summary().unwrap_or_else(|| panic!("no summary\n{}", context()));
    assert_eq!(summary.sent, client.expected_messages(), "messages sent\n{}", context());
    assert_eq!(summary.received, summary.sent, "messages received\n{}", context());
    assert_eq!(summary.lost, 0, "lost\n{}", context());
    let bytes = (client.expected_messages() * u64::from(common::VOIP_PAYLOAD)) as f64;
    for direction in ["to_peer", "to_client"] {
        server.wait_counter("hualu_turn_tcp_relayed_bytes_total", &[("direction", direction)], bytes);
    }
}
