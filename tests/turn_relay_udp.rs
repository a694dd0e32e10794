//! TURN over UDP at VoIP-like load (160-byte packets every 20 ms per client, RTP and RTCP allocations) to an
//! echoing peer: every packet must come back, with channels and with Send/Data indications.

mod common;

use common::{assert_relayed_without_loss, load_spec, Server, Uclient};

#[test]
fn udp_channel_data_relays_voip_load_without_loss() {
    let server = Server::start(&load_spec());
    let client = Uclient::new(&server).clients(100);
    assert_relayed_without_loss(&server, &client);
}

#[test]
fn udp_send_indications_relay_voip_load_without_loss() {
    let server = Server::start(&load_spec());
    let client = Uclient::new(&server).send_indications().clients(50);
    assert_relayed_without_loss(&server, &client);
}
