//! Test fixtures: a server with known credentials, a client that builds requests, relay sockets in memory.

use crate::core::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stun_types::attribute::{ErrorCode, Nonce, Realm, Username};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite, MessageWriteExt, MessageWriteVec,
    Method, TransactionId,
};
use stun_types::prelude::*;

pub const REALM: &str = "hualu.test";
pub const USER: &str = "alice";
pub const PASS: &str = "alice-pw";
pub const SECRET: &str = "rest-secret-0123456789";
/// A second, older secret the harness server still accepts (rotation).
pub const OLD_SECRET: &str = "old-rest-secret-0123456789";
pub const UNIX0: u64 = 1_800_000_000;

/// Relay sockets that only remember which are open.
#[derive(Default)]
pub struct MemRelays {
    pub open: BTreeSet<(u32, SocketAddr)>,
    /// TCP listeners among `open`.
    pub tcp: BTreeSet<u32>,
    /// Outgoing TCP connections asked for: (relay, local, peer, id).
    pub connects: Vec<(RelayHandle, SocketAddr, SocketAddr, u32)>,
    /// TCP connections the core closed.
    pub closed_connections: Vec<u32>,
    next: u32,
    pub refuse: BTreeSet<u16>,
}

impl RelaySockets for MemRelays {
    fn open(&mut self, addr: SocketAddr) -> std::io::Result<RelayHandle> {
        if self.refuse.contains(&addr.port()) || self.open.iter().any(|(_, a)| *a == addr) {
            return Err(std::io::Error::from(std::io::ErrorKind::AddrInUse));
        }
        self.next += 1;
        self.open.insert((self.next, addr));
        Ok(RelayHandle(self.next))
    }

    fn open_tcp(&mut self, addr: SocketAddr) -> std::io::Result<RelayHandle> {
        let h = self.open(addr)?;
        self.tcp.insert(h.0);
        Ok(h)
    }

    fn connect(&mut self, relay: RelayHandle, local: SocketAddr, peer: SocketAddr, id: u32) {
        self.connects.push((relay, local, peer, id));
    }

    fn close_connection(&mut self, id: u32) {
        self.closed_connections.push(id);
    }

    fn close(&mut self, relay: RelayHandle) {
        self.open.retain(|(h, _)| *h != relay.0);
        self.tcp.remove(&relay.0);
    }
}

pub fn config() -> CoreConfig {
    CoreConfig {
        relay_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        relay_ip6: Some("::1".parse().expect("ip")),
        external_ip: None,
        min_port: 50_000,
        max_port: 50_999,
        default_lifetime: Duration::from_secs(600),
        max_lifetime: Duration::from_secs(3600),
        permission_lifetime: Duration::from_secs(300),
        channel_lifetime: Duration::from_secs(600),
        max_allocations: 1000,
        max_allocations_per_user: 10,
        bandwidth_bytes_per_sec: 0,
        unauth_rate_per_sec: 1000,
        unauth_burst: 1000,
        alternate_server: None,
        policy: PeerPolicy::new(vec!["198.51.100.0/24".parse().expect("net")], vec![]),
    }
}

/// A payload the server relayed: from which relay socket, to which peer.
pub type Forwarded = (RelayHandle, SocketAddr, Vec<u8>);

/// A server, its relays, and the virtual clock.
pub struct World {
    pub server: Server,
    pub relays: MemRelays,
    pub now: Instant,
    pub shared: Arc<Shared>,
}

impl World {
    pub fn new() -> Self {
        Self::with(config())
    }

    pub fn with(config: CoreConfig) -> Self {
        let auth = Authenticator::new(
            REALM.into(),
            [(USER.to_string(), PASS.to_string())],
            vec![SECRET.into(), OLD_SECRET.into()],
            [9; 32],
            600,
        );
        let shared = Arc::new(Shared::new(config, auth));
        let now = Instant::now();
        let server = Server::new(shared.clone(), 0, 42, now, UNIX0);
        Self {
            server,
            relays: MemRelays::default(),
            now,
            shared,
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.server.handle_timeout(self.now, &mut self.relays);
    }

    /// Sends `bytes` from `from`, returns the responses and the payload forwarded to a peer.
    pub fn send(&mut self, from: ClientAddr, bytes: &[u8]) -> (Vec<Vec<u8>>, Option<Forwarded>) {
        let fwd = self
            .server
            .handle_client(from, bytes, self.now, &mut self.relays)
            .map(|t| (t.relay, t.peer, t.payload.to_vec()));
        let mut out = vec![];
        while let Some(t) = self.server.poll_transmit() {
            assert_eq!(t.to, from, "responses go back to the requester");
            out.push(t.data);
        }
        (out, fwd)
    }

    /// A datagram from `peer` to `relay`; returns the bytes the client would get.
    pub fn peer_sends(
        &mut self,
        relay: RelayHandle,
        peer: SocketAddr,
        payload: &[u8],
    ) -> Option<(ClientAddr, Vec<u8>)> {
        let mut buf = vec![0u8; HEADROOM + payload.len() + 4];
        buf[HEADROOM..HEADROOM + payload.len()].copy_from_slice(payload);
        let tc = self
            .server
            .handle_peer(relay, peer, &mut buf, payload.len(), self.now)?;
        Some((tc.to, self.server.framed(&tc.framed, &buf).to_vec()))
    }
}

pub fn udp_client(port: u16) -> ClientAddr {
    ClientAddr {
        transport: Transport::Udp,
        addr: SocketAddr::from(([192, 0, 2, 10], port)),
        listener: 0,
    }
}

pub fn peer(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, last], port))
}

/// A client's credentials and the nonce it learned.
pub struct Creds {
    pub username: String,
    pub password: String,
    pub nonce: Option<String>,
    pub algorithm: IntegrityAlgorithm,
}

impl Creds {
    pub fn static_user() -> Self {
        Self {
            username: USER.into(),
            password: PASS.into(),
            nonce: None,
            algorithm: IntegrityAlgorithm::Sha1,
        }
    }

    pub fn rest(user: &str, expiry: u64) -> Self {
        Self::rest_with(SECRET, user, expiry)
    }

    pub fn rest_with(secret: &str, user: &str, expiry: u64) -> Self {
        let username = format!("{expiry}:{user}");
        let password = hualu_common::rest::password_for(secret, &username);
        Self {
            username,
            password,
            nonce: None,
            algorithm: IntegrityAlgorithm::Sha1,
        }
    }

    /// A request of `method` with `attrs`, signed when a nonce is known.
    pub fn request(&self, method: Method, attrs: &[&dyn AttributeWrite]) -> Vec<u8> {
        self.request_with_txid(method, TransactionId::generate(), attrs)
    }

    /// As [`Creds::request`], with a given transaction id (XOR-encoded attributes depend on it). A method
    /// that is SEND builds an indication.
    pub fn request_with_txid(&self, method: Method, txid: TransactionId, attrs: &[&dyn AttributeWrite]) -> Vec<u8> {
        let class = if method == turn_types::message::SEND {
            MessageClass::Indication
        } else {
            MessageClass::Request
        };
        let mtype = stun_types::message::MessageType::from_class_method(class, method);
        let mut w = Message::builder(mtype, txid, MessageWriteVec::new());
        for a in attrs {
            w.add_attribute(*a).expect("attribute");
        }
        if let Some(nonce) = &self.nonce {
            w.add_attribute(&Username::new(&self.username).expect("username"))
                .expect("add");
            w.add_attribute(&Realm::new(REALM).expect("realm")).expect("add");
            w.add_attribute(&Nonce::new(nonce).expect("nonce")).expect("add");
            let key = LongTermKeyCredentials::new(self.username.clone(), self.password.clone(), REALM.into());
            w.add_message_integrity(&key.into(), self.algorithm).expect("integrity");
        }
        w.add_fingerprint().expect("fingerprint");
        w.finish()
    }
}

/// The class and error code of a response.
pub fn outcome(bytes: &[u8]) -> (MessageClass, Option<u16>) {
    let msg = Message::from_bytes(bytes).expect("response parses");
    (msg.class(), msg.attribute::<ErrorCode>().ok().map(|e| e.code()))
}

/// The code of the only response, 0 for success.
pub fn code(responses: &[Vec<u8>]) -> u16 {
    assert_eq!(responses.len(), 1, "exactly one response");
    match outcome(&responses[0]) {
        (MessageClass::Success, None) => 0,
        (MessageClass::Error, Some(c)) => c,
        other => panic!("unexpected response {other:?}"),
    }
}

/// Learns the nonce from a 401 or 438.
pub fn learn_nonce(creds: &mut Creds, response: &[u8]) {
    let msg = Message::from_bytes(response).expect("parses");
    creds.nonce = Some(msg.attribute::<Nonce>().expect("nonce").nonce().to_owned());
    assert_eq!(msg.attribute::<Realm>().expect("realm").realm(), REALM);
}
