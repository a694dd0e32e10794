//! TCP allocations (RFC 6062): Connect, ConnectionAttempt, ConnectionBind, and their deadlines.

use super::harness::*;
use crate::core::*;
use std::net::SocketAddr;
use std::time::Duration;
use stun_types::message::{Message, MessageClass, TransactionId};
use turn_types::attribute::{ConnectionId, RequestedTransport, XorPeerAddress};
use turn_types::message::{ALLOCATE, CONNECT, CONNECTION_ATTEMPT, CONNECTION_BIND, CREATE_PERMISSION};

fn tcp_client(port: u16) -> ClientAddr {
    ClientAddr {
        transport: Transport::Tcp,
        ..udp_client(port)
    }
}

fn tcp() -> RequestedTransport {
    RequestedTransport::new(RequestedTransport::TCP)
}

fn with_peer(creds: &Creds, method: stun_types::message::Method, peer: SocketAddr) -> Vec<u8> {
    let txid = TransactionId::generate();
    creds.request_with_txid(method, txid, &[&XorPeerAddress::new(peer, txid)])
}

/// A TCP allocation for `from`; returns its relay handle.
fn tcp_allocation(w: &mut World, from: ClientAddr, creds: &mut Creds) -> RelayHandle {
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&tcp()]));
    learn_nonce(creds, &r[0]);
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&tcp()]));
    assert_eq!(code(&r), 0);
    RelayHandle(*w.relays.tcp.iter().next_back().expect("a TCP listener"))
}

/// A TCP allocation for a control connection from `port`, a permission for `p`, and a peer connection from `p`
/// announced to the client (ConnectionAttempt). Returns the control address, its credentials, the relay and
/// the connection id.
fn announced_peer(w: &mut World, port: u16, p: SocketAddr) -> (ClientAddr, Creds, RelayHandle, u32) {
    let control = tcp_client(port);
    let mut creds = Creds::static_user();
    let relay = tcp_allocation(w, control, &mut creds);
    let (r, _) = w.send(control, &with_peer(&creds, CREATE_PERMISSION, p));
    assert_eq!(code(&r), 0);
    let id = w.server.handle_peer_accepted(relay, p, w.now).expect("accepted");
    assert!(w.server.poll_transmit().is_some(), "ConnectionAttempt");
    (control, creds, relay, id)
}

#[test]
fn tcp_allocation_needs_a_stream_client() {
    let mut w = World::new();
    let mut creds = Creds::static_user();
    let (r, _) = w.send(udp_client(9000), &creds.request(ALLOCATE, &[&tcp()]));
    learn_nonce(&mut creds, &r[0]);
    let (r, _) = w.send(udp_client(9000), &creds.request(ALLOCATE, &[&tcp()]));
    assert_eq!(code(&r), 400);
    tcp_allocation(&mut w, tcp_client(9001), &mut Creds::static_user());
    assert_eq!(w.relays.tcp.len(), 1, "a TCP listener for the relayed address");
}

#[test]
fn connect_then_connection_bind_splices() {
    let mut w = World::new();
    let control = tcp_client(9010);
    let mut creds = Creds::static_user();
    let relay = tcp_allocation(&mut w, control, &mut creds);
    let p = peer(20, 80);
    let (r, _) = w.send(control, &with_peer(&creds, CONNECT, p));
    assert!(r.is_empty(), "answered when the connection is up");
    let (got_relay, _, to, id) = *w.relays.connects.last().expect("driver asked to connect");
    assert_eq!((got_relay, to), (relay, p));
    w.server.handle_peer_connected(relay, id, true, w.now);
    let t = w.server.poll_transmit().expect("Connect answer");
    let msg = Message::from_bytes(&t.data).expect("parses");
    assert_eq!(msg.class(), MessageClass::Success);
    assert_eq!(msg.attribute::<ConnectionId>().expect("id").id(), id);

    let data = tcp_client(9011);
    let bind = creds.request(CONNECTION_BIND, &[&ConnectionId::new(id)]);
    let (r, _) = w.send(data, &bind);
    assert_eq!(code(&r), 0);
    assert_eq!(w.server.poll_event(), Some(Event::Bind { client: data, id }));
    let (r, _) = w.send(
        tcp_client(9012),
        &creds.request(CONNECTION_BIND, &[&ConnectionId::new(id)]),
    );
    assert_eq!(code(&r), 400, "an id binds once");
}

#[test]
fn failed_connect_gets_447_and_duplicate_connect_446() {
    let mut w = World::new();
    let control = tcp_client(9020);
    let mut creds = Creds::static_user();
    let relay = tcp_allocation(&mut w, control, &mut creds);
    let p = peer(21, 80);
    w.send(control, &with_peer(&creds, CONNECT, p));
    let (_, _, _, id) = *w.relays.connects.last().expect("connect");
    let (r, _) = w.send(control, &with_peer(&creds, CONNECT, p));
    assert_eq!(code(&r), 446);
    w.server.handle_peer_connected(relay, id, false, w.now);
    let t = w.server.poll_transmit().expect("answer");
    assert_eq!(code(&[t.data]), 447);
    w.send(control, &with_peer(&creds, CONNECT, p));
    assert_eq!(
        w.relays.connects.len(),
        2,
        "after a failure the peer may be tried again"
    );
}

#[test]
fn connect_to_a_denied_peer_is_403_and_on_udp_allocation_400() {
    let mut w = World::new();
    let control = tcp_client(9030);
    let mut creds = Creds::static_user();
    tcp_allocation(&mut w, control, &mut creds);
    let (r, _) = w.send(
        control,
        &with_peer(&creds, CONNECT, "10.0.0.1:80".parse().expect("addr")),
    );
    assert_eq!(code(&r), 403);
    let mut other = Creds::static_user();
    let udp_owner = tcp_client(9031);
    super::allocate::allocate(&mut w, udp_owner, &mut other);
    let (r, _) = w.send(udp_owner, &with_peer(&other, CONNECT, peer(22, 80)));
    assert_eq!(code(&r), 400);
}

#[test]
fn incoming_peer_needs_a_permission_and_announces_itself() {
    let mut w = World::new();
    let control = tcp_client(9040);
    let mut creds = Creds::static_user();
    let relay = tcp_allocation(&mut w, control, &mut creds);
    let p = peer(23, 5555);
    assert_eq!(w.server.handle_peer_accepted(relay, p, w.now), None, "no permission");
    let (r, _) = w.send(control, &with_peer(&creds, CREATE_PERMISSION, p));
    assert_eq!(code(&r), 0);
    let id = w.server.handle_peer_accepted(relay, p, w.now).expect("accepted");
    let t = w.server.poll_transmit().expect("ConnectionAttempt");
    assert_eq!(t.to, control);
    let msg = Message::from_bytes(&t.data).expect("parses");
    assert_eq!(
        (msg.class(), msg.method()),
        (MessageClass::Indication, CONNECTION_ATTEMPT)
    );
    assert_eq!(msg.attribute::<ConnectionId>().expect("id").id(), id);
    assert_eq!(
        msg.attribute::<XorPeerAddress>()
            .expect("peer")
            .addr(msg.transaction_id()),
        p
    );
}

#[test]
fn unbound_connections_close_after_30_s_and_with_their_allocation() {
    let mut w = World::new();
    let p = peer(24, 80);
    let (control, creds, relay, first) = announced_peer(&mut w, 9050, p);
    w.advance(Duration::from_secs(31));
    assert!(w.relays.closed_connections.contains(&first), "deadline passed");
    let (r, _) = w.send(
        tcp_client(9051),
        &creds.request(CONNECTION_BIND, &[&ConnectionId::new(first)]),
    );
    assert_eq!(code(&r), 400, "too late");
    let second = w
        .server
        .handle_peer_accepted(relay, SocketAddr::new(p.ip(), 81), w.now)
        .expect("accepted");
    w.server.client_closed(control, &mut w.relays);
    assert!(
        w.relays.closed_connections.contains(&second),
        "closed with the allocation"
    );
}

#[test]
fn connection_bind_by_another_user_is_refused() {
    let mut w = World::new();
    let (_, _, _, id) = announced_peer(&mut w, 9060, peer(25, 80));
    let mut bob = Creds::rest("bob", UNIX0 + 600);
    let (r, _) = w.send(
        tcp_client(9061),
        &bob.request(CONNECTION_BIND, &[&ConnectionId::new(id)]),
    );
    learn_nonce(&mut bob, &r[0]);
    let (r, _) = w.send(
        tcp_client(9061),
        &bob.request(CONNECTION_BIND, &[&ConnectionId::new(id)]),
    );
    assert_eq!(code(&r), 400);
}

#[test]
fn a_bound_connection_is_revoked_with_its_allocation_and_forgotten_when_unbound() {
    let mut w = World::new();
    let (control, creds, _, id) = announced_peer(&mut w, 9070, peer(26, 80));
    let (r, _) = w.send(
        tcp_client(9071),
        &creds.request(CONNECTION_BIND, &[&ConnectionId::new(id)]),
    );
    assert_eq!(code(&r), 0);
    assert!(!w.server.connection_revoked(id), "spliced while the allocation lives");
    w.server.client_closed(control, &mut w.relays);
    assert!(w.server.connection_revoked(id), "the allocation went");
    assert!(
        !w.relays.closed_connections.contains(&id),
        "a bound connection is closed by the shard holding its splice, not as a parked one"
    );
    w.server.connection_unbound(id);
    assert!(!w.server.connection_revoked(id), "forgotten once the splice closed");
}
