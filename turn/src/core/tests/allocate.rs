//! Allocate, Refresh, lifetimes, EVEN-PORT and RESERVATION-TOKEN, quotas and drain.

use super::harness::*;
use crate::core::*;
use std::time::Duration;
use stun_types::attribute::XorMappedAddress;
use stun_types::message::Message;
use turn_types::attribute::{
    EvenPort, Lifetime, RequestedAddressFamily, RequestedTransport, ReservationToken, XorRelayedAddress,
};
use turn_types::message::{ALLOCATE, REFRESH};

fn udp() -> RequestedTransport {
    RequestedTransport::new(RequestedTransport::UDP)
}

/// Allocates for `from`, after the 401 round trip when no nonce is known yet; returns the success response.
pub fn allocate(w: &mut World, from: ClientAddr, creds: &mut Creds) -> Vec<u8> {
    if creds.nonce.is_none() {
        let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&udp()]));
        assert_eq!(code(&r), 401);
        learn_nonce(creds, &r[0]);
    }
    let (mut r, _) = w.send(from, &creds.request(ALLOCATE, &[&udp()]));
    if code(&r) == 438 {
        learn_nonce(creds, &r[0]);
        r = w.send(from, &creds.request(ALLOCATE, &[&udp()])).0;
    }
    assert_eq!(code(&r), 0, "allocation succeeds");
    r[0].clone()
}

#[test]
fn allocate_challenges_then_succeeds_with_relay_and_mapped_address() {
    let mut w = World::new();
    let from = udp_client(4000);
    let ok = allocate(&mut w, from, &mut Creds::static_user());
    let msg = Message::from_bytes(&ok).expect("parses");
    let relayed = msg
        .attribute::<XorRelayedAddress>()
        .expect("relayed")
        .addr(msg.transaction_id());
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");
    assert!((50_000..=50_999).contains(&relayed.port()));
    let mapped = msg
        .attribute::<XorMappedAddress>()
        .expect("mapped")
        .addr(msg.transaction_id());
    assert_eq!(mapped, from.addr);
    assert_eq!(msg.attribute::<Lifetime>().expect("lifetime").seconds(), 600);
    assert_eq!(w.relays.open.len(), 1);
    assert_eq!(w.shared.total_allocations(), 1);
}

#[test]
fn retransmitted_allocate_gets_the_same_answer_and_a_new_one_gets_437() {
    let mut w = World::new();
    let from = udp_client(4001);
    let mut creds = Creds::static_user();
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&udp()]));
    learn_nonce(&mut creds, &r[0]);
    let req = creds.request(ALLOCATE, &[&udp()]);
    let (first, _) = w.send(from, &req);
    let (again, _) = w.send(from, &req);
    assert_eq!(code(&first), 0);
    assert_eq!(code(&again), 0);
    assert_eq!(w.relays.open.len(), 1, "no second relay for a retransmission");
    let (other, _) = w.send(from, &creds.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&other), 437);
}

#[test]
fn lifetime_is_clamped_between_default_and_max() {
    let mut w = World::new();
    let from = udp_client(4002);
    let mut creds = Creds::static_user();
    allocate(&mut w, from, &mut creds);
    let lifetime_of = |w: &mut World, secs: u32| {
        let (r, _) = w.send(from, &creds.request(REFRESH, &[&Lifetime::new(secs)]));
        assert_eq!(code(&r), 0);
        Message::from_bytes(&r[0])
            .expect("parses")
            .attribute::<Lifetime>()
            .expect("lifetime")
            .seconds()
    };
    assert_eq!(lifetime_of(&mut w, 100_000), 3600);
    assert_eq!(lifetime_of(&mut w, 10), 600);
    assert_eq!(lifetime_of(&mut w, 1200), 1200);
}

#[test]
fn allocation_expires_without_refresh_and_refresh_zero_deletes() {
    let mut w = World::new();
    let (a, b) = (udp_client(4003), udp_client(4004));
    let (mut ca, mut cb) = (Creds::static_user(), Creds::static_user());
    allocate(&mut w, a, &mut ca);
    allocate(&mut w, b, &mut cb);
    let (r, _) = w.send(b, &cb.request(REFRESH, &[&Lifetime::new(0)]));
    assert_eq!(code(&r), 0);
    assert_eq!(w.server.allocation_count(), 1);
    w.advance(Duration::from_secs(599));
    assert_eq!(w.server.allocation_count(), 1);
    w.advance(Duration::from_secs(2));
    assert_eq!(w.server.allocation_count(), 0);
    assert!(w.relays.open.is_empty(), "relay sockets closed");
    assert_eq!(w.shared.total_allocations(), 0);
}

#[test]
fn refresh_without_allocation_is_437() {
    let mut w = World::new();
    let from = udp_client(4005);
    let mut creds = Creds::static_user();
    allocate(&mut w, udp_client(4006), &mut creds);
    let (r, _) = w.send(from, &creds.request(REFRESH, &[]));
    assert_eq!(code(&r), 437);
}

#[test]
fn even_port_reserves_the_next_port_for_a_token_from_another_client() {
    let mut w = World::new();
    let mut creds = Creds::static_user();
    let (r, _) = w.send(udp_client(4010), &creds.request(ALLOCATE, &[&udp()]));
    learn_nonce(&mut creds, &r[0]);
    let (r, _) = w.send(
        udp_client(4010),
        &creds.request(ALLOCATE, &[&udp(), &EvenPort::new(true)]),
    );
    assert_eq!(code(&r), 0);
    let msg = Message::from_bytes(&r[0]).expect("parses");
    let port = msg
        .attribute::<XorRelayedAddress>()
        .expect("relayed")
        .addr(msg.transaction_id())
        .port();
    assert_eq!(port % 2, 0, "even port");
    let token = msg.attribute::<ReservationToken>().expect("token").token();
    let (r, _) = w.send(
        udp_client(4011),
        &creds.request(ALLOCATE, &[&udp(), &ReservationToken::new(token)]),
    );
    assert_eq!(code(&r), 0);
    let msg = Message::from_bytes(&r[0]).expect("parses");
    let next = msg
        .attribute::<XorRelayedAddress>()
        .expect("relayed")
        .addr(msg.transaction_id())
        .port();
    assert_eq!(next, port + 1);
    let (r, _) = w.send(
        udp_client(4012),
        &creds.request(ALLOCATE, &[&udp(), &ReservationToken::new(token)]),
    );
    assert_eq!(code(&r), 508, "a token is good once");
}

#[test]
fn ipv6_relay_on_request_and_440_when_not_offered() {
    let mut w = World::new();
    let mut creds = Creds::static_user();
    let from = udp_client(4020);
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&udp()]));
    learn_nonce(&mut creds, &r[0]);
    let v6 = RequestedAddressFamily::new(stun_types::AddressFamily::IPV6);
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&udp(), &v6]));
    assert_eq!(code(&r), 0);
    let msg = Message::from_bytes(&r[0]).expect("parses");
    assert!(msg
        .attribute::<XorRelayedAddress>()
        .expect("relayed")
        .addr(msg.transaction_id())
        .is_ipv6());

    let mut c = config();
    c.relay_ip6 = None;
    let mut w = World::with(c);
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&udp(), &v6]));
    assert_eq!(code(&r), 440);
}

#[test]
fn unknown_transport_is_442_and_tcp_over_udp_400() {
    let mut w = World::new();
    let mut creds = Creds::static_user();
    let from = udp_client(4030);
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&udp()]));
    learn_nonce(&mut creds, &r[0]);
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&RequestedTransport::new(99)]));
    assert_eq!(code(&r), 442);
    let tcp = RequestedTransport::new(RequestedTransport::TCP);
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&tcp]));
    assert_eq!(code(&r), 400, "RFC 6062: TCP relays are for TCP and TLS clients");
}

#[test]
fn per_user_quota_gives_486_and_frees_on_release() {
    let mut c = config();
    c.max_allocations_per_user = 2;
    let mut w = World::with(c);
    let mut creds = Creds::static_user();
    allocate(&mut w, udp_client(4040), &mut creds);
    allocate(&mut w, udp_client(4041), &mut creds);
    let (r, _) = w.send(udp_client(4042), &creds.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 486);
    assert_eq!(w.server.stats().quota_rejections, 1);
    let (r, _) = w.send(udp_client(4040), &creds.request(REFRESH, &[&Lifetime::new(0)]));
    assert_eq!(code(&r), 0);
    let (r, _) = w.send(udp_client(4042), &creds.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 0);
}

#[test]
fn total_quota_gives_486() {
    let mut c = config();
    c.max_allocations = 1;
    let mut w = World::with(c);
    allocate(&mut w, udp_client(4050), &mut Creds::static_user());
    let mut other = Creds::rest("bob", UNIX0 + 100);
    let (r, _) = w.send(udp_client(4051), &other.request(ALLOCATE, &[&udp()]));
    learn_nonce(&mut other, &r[0]);
    let (r, _) = w.send(udp_client(4051), &other.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 486);
}

#[test]
fn draining_refuses_with_alternate_server_or_486() {
    let mut c = config();
    c.alternate_server = Some("192.0.2.99:3478".parse().expect("addr"));
    let mut w = World::with(c);
    let mut creds = Creds::static_user();
    let from = udp_client(4060);
    allocate(&mut w, from, &mut creds);
    w.shared.start_drain();
    let (r, _) = w.send(udp_client(4061), &creds.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 300);
    let msg = Message::from_bytes(&r[0]).expect("parses");
    let alt = msg
        .attribute::<stun_types::attribute::AlternateServer>()
        .expect("alternate");
    assert_eq!(alt.server().to_string(), "192.0.2.99:3478");
    let (r, _) = w.send(from, &creds.request(REFRESH, &[]));
    assert_eq!(code(&r), 0, "existing allocations keep working");

    let mut w = World::new();
    w.shared.start_drain();
    let (r, _) = w.send(udp_client(4062), &creds.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 486);
}

#[test]
fn port_held_by_another_process_is_skipped() {
    let mut c = config();
    c.min_port = 50_000;
    c.max_port = 50_001;
    let mut w = World::with(c);
    w.relays.refuse.insert(50_000);
    let ok = allocate(&mut w, udp_client(4070), &mut Creds::static_user());
    let msg = Message::from_bytes(&ok).expect("parses");
    let port = msg
        .attribute::<XorRelayedAddress>()
        .expect("relayed")
        .addr(msg.transaction_id())
        .port();
    assert_eq!(port, 50_001);
    let mut creds = Creds::static_user();
    let (r, _) = w.send(udp_client(4071), &creds.request(ALLOCATE, &[&udp()]));
    learn_nonce(&mut creds, &r[0]);
    let (r, _) = w.send(udp_client(4071), &creds.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 508, "no port left");
}
