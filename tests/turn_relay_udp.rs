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

/// Clients relay to each other's relayed addresses (`-y`): on the same shard the relay hands the packet over
/// in-process (hairpin), across shards it goes out and back in through the kernel; both must lose nothing.
#[test]
fn udp_client_to_client_through_the_relay_without_loss() {
    let server = Server::start(&load_spec());
    let client = Uclient::new(&server).client_to_client().no_rtcp().clients(50);
    assert_relayed_without_loss(&server, &client);
}

/// An IPv6 relayed address (RFC 6156) reached over an IPv4 client connection, relaying to a peer on `::1`.
#[test]
fn udp_ipv6_relay_to_an_ipv6_peer_without_loss() {
    let server = Server::start(&load_spec());
    let _peer6 = common::tools::Peer::start_on("::1", server.peer_port());
    let client = Uclient::new(&server).ipv6_relay().clients(20);
    assert_relayed_without_loss(&server, &client);
}
