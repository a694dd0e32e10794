//! Property tests with a fixed seed: no input panics the core, and random sequences of client, peer and clock
//! events keep its bookkeeping consistent.

use super::allocate::allocate;
use super::harness::*;
use crate::core::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, RngSeed};
use std::time::Duration;
use turn_types::attribute::{ChannelNumber, Lifetime, XorPeerAddress};
use turn_types::message::{CHANNEL_BIND, REFRESH};

fn config(cases: u32) -> PropConfig {
    PropConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x0068_7561_6c75),
        failure_persistence: None,
        ..PropConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Allocate(u8),
    Release(u8),
    Bind(u8, u16, u8),
    ChannelData(u8, u16, u8),
    PeerSends(u8),
    Close(u8),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4u8).prop_map(Op::Allocate),
        (0..4u8).prop_map(Op::Release),
        (0..4u8, 0x4000..0x4004u16, 0..3u8).prop_map(|(c, n, p)| Op::Bind(c, n, p)),
        (0..4u8, 0x4000..0x4004u16, 1..200u8).prop_map(|(c, n, l)| Op::ChannelData(c, n, l)),
        (0..3u8).prop_map(Op::PeerSends),
        (0..4u8).prop_map(Op::Close),
        (0..700u16).prop_map(Op::Advance),
    ]
}

fn client(i: u8) -> ClientAddr {
    let c = udp_client(8000 + u16::from(i));
    if i % 2 == 0 {
        c
    } else {
        ClientAddr {
            transport: Transport::Tcp,
            ..c
        }
    }
}

/// A model of what each client believes: its credentials, and the channels it bound.
struct Model {
    creds: Vec<Creds>,
    bound: std::collections::HashMap<(u8, u16), u8>,
}

fn apply(w: &mut World, m: &mut Model, op: &Op) {
    match *op {
        Op::Allocate(i) if !w.server.has_allocation(client(i)) => {
            allocate(w, client(i), &mut m.creds[usize::from(i)]);
        }
        Op::Release(i) => {
            let _ = w.send(
                client(i),
                &m.creds[usize::from(i)].request(REFRESH, &[&Lifetime::new(0)]),
            );
        }
        Op::Bind(i, n, p) => bind(w, m, i, n, p),
        Op::ChannelData(i, n, len) => {
            let mut data = n.to_be_bytes().to_vec();
            data.extend_from_slice(&u16::from(len).to_be_bytes());
            data.resize(4 + usize::from(len), 0xAB);
            let (_, fwd) = w.send(client(i), &data);
            if let Some((_, to, payload)) = fwd {
                let expected = m.bound.get(&(i, n)).copied().map(|p| peer(p, 9000));
                assert_eq!(
                    Some(to),
                    expected,
                    "ChannelData goes to the peer its channel is bound to"
                );
                assert_eq!(payload.len(), usize::from(len));
            }
        }
        Op::PeerSends(p) => {
            for (h, _) in w.relays.open.clone() {
                if let Some((to, _)) = w.peer_sends(RelayHandle(h), peer(p, 9000), b"media") {
                    assert!(
                        w.server.has_allocation(to),
                        "peer data reaches only a client holding an allocation"
                    );
                    let bound = m.bound.iter().any(|(&(c, _), &bp)| client(c) == to && bp == p);
                    assert!(
                        bound,
                        "peer data needs a permission, installed here only by a channel bind"
                    );
                }
            }
        }
        Op::Close(i) if i % 2 == 1 => w.server.client_closed(client(i), &mut w.relays),
        Op::Advance(s) => w.advance(Duration::from_secs(u64::from(s))),
        _ => {}
    }
    for i in 0..4 {
        if !w.server.has_allocation(client(i)) {
            m.bound.retain(|(c, _), _| *c != i);
        }
    }
}

fn bind(w: &mut World, m: &mut Model, i: u8, n: u16, p: u8) {
    let txid = stun_types::message::TransactionId::generate();
    let xp = XorPeerAddress::new(peer(p, 9000), txid);
    let req = m.creds[usize::from(i)].request_with_txid(CHANNEL_BIND, txid, &[&xp, &ChannelNumber::new(n)]);
    let (r, _) = w.send(client(i), &req);
    if !r.is_empty() && code(&r) == 0 {
        m.bound.insert((i, n), p);
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_client_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), tcp in any::<bool>()) {
        let mut w = World::new();
        let from = if tcp { client(1) } else { client(0) };
        let _ = w.send(from, &bytes);
        let mut stun_like = bytes.clone();
        if stun_like.len() >= 20 {
            stun_like[0] &= 0x3F;
            stun_like[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
            let len = (stun_like.len() - 20) as u16;
            stun_like[2..4].copy_from_slice(&len.to_be_bytes());
            let _ = w.send(from, &stun_like);
        }
    }

    #[test]
    fn mutated_signed_requests_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8)) {
        let mut w = World::new();
        let from = client(0);
        let mut creds = Creds::static_user();
        allocate(&mut w, from, &mut creds);
        let txid = stun_types::message::TransactionId::generate();
        let xp = XorPeerAddress::new(peer(1, 9000), txid);
        let mut req = creds.request_with_txid(CHANNEL_BIND, txid, &[&xp, &ChannelNumber::new(0x4000)]);
        for (at, v) in flips {
            let i = at % req.len();
            req[i] ^= v;
        }
        let _ = w.send(from, &req);
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn random_sessions_keep_the_books_straight(ops in proptest::collection::vec(op(), 1..40)) {
        let mut w = World::new();
        let mut m = Model { creds: (0..4).map(|_| Creds::static_user()).collect(), bound: Default::default() };
        for op in &ops {
            apply(&mut w, &mut m, op);
            prop_assert_eq!(w.server.allocation_count(), w.relays.open.len(), "one relay socket per allocation");
            prop_assert_eq!(w.shared.total_allocations() as usize, w.server.allocation_count());
        }
        w.server.close_all(&mut w.relays);
        prop_assert!(w.relays.open.is_empty());
        prop_assert_eq!(w.shared.total_allocations(), 0);
    }
}
