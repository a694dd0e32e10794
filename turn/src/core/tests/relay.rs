//! CreatePermission, ChannelBind, Send and Data indications, ChannelData both ways, and the peer policy.

use super::allocate::allocate;
use super::harness::*;
use crate::core::*;
use std::net::SocketAddr;
use std::time::Duration;
use stun_types::message::{Message, MessageClass};
use turn_types::attribute::{ChannelNumber, Data, XorPeerAddress, XorRelayedAddress};
use turn_types::message::{CHANNEL_BIND, CREATE_PERMISSION, DATA, SEND};

/// An allocated client: its address, credentials and relay handle.
fn allocated(w: &mut World, port: u16) -> (ClientAddr, Creds, RelayHandle) {
    let from = udp_client(port);
    let mut creds = Creds::static_user();
    let ok = allocate(w, from, &mut creds);
    let msg = Message::from_bytes(&ok).expect("parses");
    let relay_addr = msg
        .attribute::<XorRelayedAddress>()
        .expect("relayed")
        .addr(msg.transaction_id());
    let handle = w
        .relays
        .open
        .iter()
        .find(|(_, a)| *a == relay_addr)
        .expect("relay open")
        .0;
    (from, creds, RelayHandle(handle))
}

/// Builds a request whose XOR-PEER-ADDRESS is encoded against the request's own transaction id.
fn with_peer(
    creds: &Creds,
    method: stun_types::message::Method,
    peer: SocketAddr,
    extra: &[&dyn stun_types::prelude::AttributeWrite],
) -> Vec<u8> {
    let txid = stun_types::message::TransactionId::generate();
    let p = XorPeerAddress::new(peer, txid);
    let mut attrs: Vec<&dyn stun_types::prelude::AttributeWrite> = vec![&p];
    attrs.extend_from_slice(extra);
    creds.request_with_txid(method, txid, &attrs)
}

fn channel_data(number: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = number.to_be_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn channel_bind_then_channel_data_both_ways() {
    let mut w = World::new();
    let (from, creds, relay) = allocated(&mut w, 5000);
    let p = peer(7, 9000);
    let (r, _) = w.send(
        from,
        &with_peer(&creds, CHANNEL_BIND, p, &[&ChannelNumber::new(0x4001)]),
    );
    assert_eq!(code(&r), 0);
    let (_, fwd) = w.send(from, &channel_data(0x4001, b"hello"));
    assert_eq!(fwd, Some((relay, p, b"hello".to_vec())));
    let (to, bytes) = w.peer_sends(relay, p, b"world").expect("relayed to client");
    assert_eq!(to, from);
    assert_eq!(bytes, channel_data(0x4001, b"world"));
    assert_eq!(w.server.stats().packets_to_peer[0], 1);
    assert_eq!(w.server.stats().packets_to_client[0], 1);
}

#[test]
fn permission_then_send_and_data_indications() {
    let mut w = World::new();
    let (from, creds, relay) = allocated(&mut w, 5001);
    let p = peer(8, 9001);
    assert!(w.peer_sends(relay, p, b"early").is_none(), "no permission yet");
    let (r, _) = w.send(from, &with_peer(&creds, CREATE_PERMISSION, p, &[]));
    assert_eq!(code(&r), 0);
    let send = Creds {
        nonce: None,
        ..Creds::static_user()
    };
    let (r, fwd) = w.send(from, &with_peer(&send, SEND, p, &[&Data::new(b"via send")]));
    assert!(r.is_empty(), "indications get no answer");
    assert_eq!(fwd, Some((relay, p, b"via send".to_vec())));
    let (_, bytes) = w
        .peer_sends(relay, peer(8, 4444), b"reply")
        .expect("permission is per IP");
    let msg = Message::from_bytes(&bytes).expect("data indication parses");
    assert_eq!(msg.class(), MessageClass::Indication);
    assert_eq!(msg.method(), DATA);
    assert_eq!(msg.attribute::<Data>().expect("data").data(), b"reply");
    let src = msg
        .attribute::<XorPeerAddress>()
        .expect("peer")
        .addr(msg.transaction_id());
    assert_eq!(src, peer(8, 4444));
}

#[test]
fn permissions_expire_after_five_minutes() {
    let mut w = World::new();
    let (from, creds, relay) = allocated(&mut w, 5002);
    let p = peer(9, 9002);
    let (r, _) = w.send(from, &with_peer(&creds, CREATE_PERMISSION, p, &[]));
    assert_eq!(code(&r), 0);
    w.advance(Duration::from_secs(299));
    assert!(w.peer_sends(relay, p, b"x").is_some());
    w.advance(Duration::from_secs(2));
    assert!(w.peer_sends(relay, p, b"x").is_none());
}

#[test]
fn denied_peers_get_403_for_permission_and_channel_and_sends_are_dropped() {
    let mut w = World::new();
    let (from, creds, _) = allocated(&mut w, 5003);
    for denied in ["127.0.0.1:80", "10.0.0.1:80", "169.254.169.254:80", "192.168.1.1:80"] {
        let p: SocketAddr = denied.parse().expect("addr");
        let (r, _) = w.send(from, &with_peer(&creds, CREATE_PERMISSION, p, &[]));
        assert_eq!(code(&r), 403, "{denied}");
        let (r, _) = w.send(
            from,
            &with_peer(&creds, CHANNEL_BIND, p, &[&ChannelNumber::new(0x4002)]),
        );
        assert_eq!(code(&r), 403, "{denied}");
    }
    let send = Creds {
        nonce: None,
        ..Creds::static_user()
    };
    let (_, fwd) = w.send(
        from,
        &with_peer(&send, SEND, "10.1.1.1:5".parse().expect("addr"), &[&Data::new(b"x")]),
    );
    assert!(fwd.is_none());
    assert!(w.server.stats().denied_peers >= 9);
}

#[test]
fn mapped_ipv6_form_of_a_denied_address_is_denied() {
    let mut w = World::new();
    let (from, creds, _) = allocated(&mut w, 5004);
    let p: SocketAddr = "[::ffff:127.0.0.1]:80".parse().expect("addr");
    let (r, _) = w.send(from, &with_peer(&creds, CREATE_PERMISSION, p, &[]));
    assert_eq!(code(&r), 403);
}

#[test]
fn ipv6_peer_on_ipv4_relay_is_443() {
    let mut w = World::new();
    let (from, creds, _) = allocated(&mut w, 5005);
    let p: SocketAddr = "[2001:db8::1]:80".parse().expect("addr");
    let (r, _) = w.send(from, &with_peer(&creds, CREATE_PERMISSION, p, &[]));
    assert_eq!(code(&r), 443);
}

#[test]
fn channel_rules_numbers_range_and_rebinding() {
    let mut w = World::new();
    let (from, creds, _) = allocated(&mut w, 5006);
    let (a, b) = (peer(10, 1), peer(11, 1));
    let bind = |w: &mut World, n: u16, p: SocketAddr| {
        let (r, _) = w.send(from, &with_peer(&creds, CHANNEL_BIND, p, &[&ChannelNumber::new(n)]));
        code(&r)
    };
    assert_eq!(bind(&mut w, 0x3FFF, a), 400, "below range");
    assert_eq!(bind(&mut w, 0x8000, a), 400, "above range");
    assert_eq!(bind(&mut w, 0x4000, a), 0);
    assert_eq!(bind(&mut w, 0x4000, a), 0, "refresh is fine");
    assert_eq!(bind(&mut w, 0x4000, b), 400, "number taken by another peer");
    assert_eq!(bind(&mut w, 0x4001, a), 400, "peer already on another number");
    assert_eq!(bind(&mut w, 0x4001, b), 0);
}

#[test]
fn channel_data_on_unbound_channel_or_without_allocation_is_dropped() {
    let mut w = World::new();
    let (from, _, _) = allocated(&mut w, 5007);
    let (_, fwd) = w.send(from, &channel_data(0x4005, b"x"));
    assert!(fwd.is_none());
    let (_, fwd) = w.send(udp_client(5999), &channel_data(0x4005, b"x"));
    assert!(fwd.is_none());
    let (_, fwd) = w.send(from, &[0x40, 0x05, 0x00, 0x10, 1, 2]);
    assert!(fwd.is_none(), "truncated");
    for short in [&[0x40][..], &[0x40, 0x01], &[0x7f, 0xff, 0x00]] {
        let (_, fwd) = w.send(from, short);
        assert!(
            fwd.is_none(),
            "a header cut short is dropped, not a panic (found by the fuzzer)"
        );
    }
}

#[test]
fn stream_clients_get_padded_channel_data() {
    let mut w = World::new();
    let from = ClientAddr {
        transport: Transport::Tcp,
        ..udp_client(5008)
    };
    let mut creds = Creds::static_user();
    allocate(&mut w, from, &mut creds);
    let relay = RelayHandle(w.relays.open.iter().next().expect("relay").0);
    let p = peer(12, 1);
    let (r, _) = w.send(
        from,
        &with_peer(&creds, CHANNEL_BIND, p, &[&ChannelNumber::new(0x4003)]),
    );
    assert_eq!(code(&r), 0);
    let (_, bytes) = w.peer_sends(relay, p, b"abcde").expect("relayed");
    assert_eq!(bytes.len(), 12, "4 + 5 padded to 12");
    assert_eq!(&bytes[..9], &channel_data(0x4003, b"abcde")[..]);
    w.server.client_closed(from, &mut w.relays);
    assert_eq!(w.server.allocation_count(), 0);
    assert!(w.relays.open.is_empty());
}

#[test]
fn bandwidth_cap_drops_excess() {
    let mut c = config();
    c.bandwidth_bytes_per_sec = 1000;
    let mut w = World::with(c);
    let (from, creds, _) = allocated(&mut w, 5009);
    let (r, _) = w.send(
        from,
        &with_peer(&creds, CHANNEL_BIND, peer(13, 1), &[&ChannelNumber::new(0x4000)]),
    );
    assert_eq!(code(&r), 0);
    let payload = [0u8; 400];
    let passed = (0..5)
        .filter(|_| w.send(from, &channel_data(0x4000, &payload)).1.is_some())
        .count();
    assert_eq!(passed, 2);
    assert_eq!(w.server.stats().dropped_bandwidth, 3);
    w.now += Duration::from_secs(1);
    assert!(w.send(from, &channel_data(0x4000, &payload)).1.is_some(), "refilled");
}

#[test]
fn hairpin_between_two_local_allocations_checks_permissions() {
    let mut c = config();
    c.policy = PeerPolicy::new(vec!["127.0.0.0/8".parse().expect("net")], vec![]);
    let mut w = World::with(c);
    let (a, a_creds, a_relay) = allocated(&mut w, 5100);
    let (b, b_creds, b_relay) = allocated(&mut w, 5101);
    let (a_addr, b_addr) = (
        w.server.relay_addr(a_relay).expect("a"),
        w.server.relay_addr(b_relay).expect("b"),
    );
    assert_eq!(w.server.local_relay(b_addr), Some(b_relay));
    assert_eq!(w.server.local_relay(peer(1, 1)), None, "not ours");
    let (r, _) = w.send(
        a,
        &with_peer(&a_creds, CHANNEL_BIND, b_addr, &[&ChannelNumber::new(0x4000)]),
    );
    assert_eq!(code(&r), 0);
    let (_, fwd) = w.send(a, &channel_data(0x4000, b"hairpin"));
    let (relay, to, payload) = fwd.expect("forwarded");
    assert_eq!((relay, to), (a_relay, b_addr));
    assert!(
        w.peer_sends(b_relay, a_addr, &payload).is_none(),
        "b has no permission for a yet"
    );
    let (r, _) = w.send(
        b,
        &with_peer(&b_creds, CHANNEL_BIND, a_addr, &[&ChannelNumber::new(0x4001)]),
    );
    assert_eq!(code(&r), 0);
    let (client, bytes) = w.peer_sends(b_relay, a_addr, &payload).expect("delivered to b");
    assert_eq!(client, b);
    assert_eq!(bytes, channel_data(0x4001, b"hairpin"));
    let (r, _) = w.send(
        b,
        &b_creds.request(
            turn_types::message::REFRESH,
            &[&turn_types::attribute::Lifetime::new(0)],
        ),
    );
    assert_eq!(code(&r), 0);
    assert_eq!(w.server.local_relay(b_addr), None, "gone with its allocation");
}
