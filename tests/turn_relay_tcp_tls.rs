//! TURN over TCP and over TLS at VoIP-like load to an echoing UDP peer: every packet must come back, with channels
//! and with Send/Data indications. The TLS listener uses the `dev = true` self-signed certificate (uclient does not
//! verify it).

mod common;

use common::{assert_relayed_without_loss, load_spec, Server, Uclient};

const CLIENTS: u32 = 50;

#[test]
fn tcp_channel_data_relays_voip_load_without_loss() {
    let server = Server::start(&load_spec());
    let client = Uclient::new(&server).tcp().clients(CLIENTS);
    assert_relayed_without_loss(&server, &client);
}

#[test]
fn tcp_send_indications_relay_voip_load_without_loss() {
    let server = Server::start(&load_spec());
    let client = Uclient::new(&server).tcp().send_indications().clients(CLIENTS);
    assert_relayed_without_loss(&server, &client);
}

#[test]
fn tls_channel_data_relays_voip_load_without_loss() {
    let server = Server::start(&load_spec().tls());
    let client = Uclient::new(&server).tls(&server).clients(CLIENTS);
    assert_relayed_without_loss(&server, &client);
}

#[test]
fn tls_send_indications_relay_voip_load_without_loss() {
    let server = Server::start(&load_spec().tls());
    let client = Uclient::new(&server).tls(&server).send_indications().clients(CLIENTS);
    assert_relayed_without_loss(&server, &client);
}
