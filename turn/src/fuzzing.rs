//! Entry points for the fuzz targets in `fuzz/`, and for `tests/fuzz_corpus.rs`, which replays the committed
//! corpus on the stable toolchain so CI checks every input the fuzzer ever kept.
//!
//! Each function must return normally for any input: a panic is a bug.

use crate::core::{Authenticator, ClientAddr, CoreConfig, PeerPolicy, RelayHandle, RelaySockets, Server, Shared};
use crate::core::{Transport, HEADROOM};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stun_types::prelude::*;

/// The codecs alone: STUN messages and ChannelData.
pub fn parse(data: &[u8]) {
    if let Ok(msg) = stun_types::message::Message::from_bytes(data) {
        let txid = msg.transaction_id();
        let _ = msg.attribute::<stun_types::attribute::Username>();
        let _ = msg.attribute::<stun_types::attribute::Nonce>();
        let _ = msg
            .attribute::<turn_types::attribute::XorPeerAddress>()
            .map(|a| a.addr(txid));
        let _ = msg.attribute::<turn_types::attribute::ChannelNumber>();
        let _ = msg.attribute::<turn_types::attribute::Lifetime>();
        let _ = msg.raw_attribute_and_offset(turn_types::attribute::Data::TYPE);
    }
    let _ = turn_types::channel::ChannelData::parse(data);
}

/// A server fed `data` from clients that hold no credentials: split into messages at 0xFF bytes and sent
/// over UDP, over TCP, and from a peer, with the clock moving between them.
pub fn unauthenticated(data: &[u8]) {
    let shared = Arc::new(Shared::new(config(), auth()));
    let mut now = Instant::now();
    let mut server = Server::new(shared, 0, 1, now, 1_800_000_000);
    let mut relays = Sockets::default();
    let udp = ClientAddr {
        transport: Transport::Udp,
        addr: SocketAddr::from(([192, 0, 2, 1], 1000)),
        listener: 0,
    };
    let tcp = ClientAddr {
        transport: Transport::Tcp,
        ..udp
    };
    let peer = SocketAddr::from(([198, 51, 100, 1], 2000));
    for (i, chunk) in data.split(|&b| b == 0xFF).enumerate() {
        let from = if i % 2 == 0 { udp } else { tcp };
        let _ = server.handle_client(from, chunk, now, &mut relays);
        while server.poll_transmit().is_some() {}
        let mut buf = vec![0u8; HEADROOM + chunk.len() + 4];
        buf[HEADROOM..HEADROOM + chunk.len()].copy_from_slice(chunk);
        let _ = server.handle_peer(RelayHandle(1), peer, &mut buf, chunk.len(), now);
        now += Duration::from_millis(u64::from(chunk.first().copied().unwrap_or(0)) * 10);
        server.handle_timeout(now, &mut relays);
    }
    server.client_closed(tcp, &mut relays);
}

#[derive(Default)]
struct Sockets(u32);

impl RelaySockets for Sockets {
    fn open(&mut self, _: SocketAddr) -> std::io::Result<RelayHandle> {
        self.0 += 1;
        Ok(RelayHandle(self.0))
    }

    fn open_tcp(&mut self, addr: SocketAddr) -> std::io::Result<RelayHandle> {
        self.open(addr)
    }

    fn connect(&mut self, _: RelayHandle, _: SocketAddr, _: SocketAddr, _: u32) {}

    fn close_connection(&mut self, _: u32) {}

    fn close(&mut self, _: RelayHandle) {}
}

fn auth() -> Authenticator {
    Authenticator::new(
        "fuzz".into(),
        [("u".into(), "p".into())],
        vec!["fuzz-secret-0123456789".into()],
        [3; 32],
        600,
    )
}

fn config() -> CoreConfig {
    CoreConfig {
        relay_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        relay_ip6: Some("::1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))),
        external_ip: None,
        min_port: 40_000,
        max_port: 40_100,
        default_lifetime: Duration::from_secs(600),
        max_lifetime: Duration::from_secs(3600),
        permission_lifetime: Duration::from_secs(300),
        channel_lifetime: Duration::from_secs(600),
        max_allocations: 100,
        max_allocations_per_user: 10,
        bandwidth_bytes_per_sec: 0,
        unauth_rate_per_sec: 1000,
        unauth_burst: 1000,
        alternate_server: None,
        policy: PeerPolicy::new(vec![], vec![]),
    }
}
