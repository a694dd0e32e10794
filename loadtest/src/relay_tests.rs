//! The relay adapter against hualu's own TURN server, started in this process on loopback: two participants
//! allocate, permit each other, and trade datagrams through their relayed addresses; bad credentials fail.

use super::*;
use std::net::UdpSocket;

const USER: &str = "loadtest";
const PASSWORD: &str = "a-password-long-enough-for-turn";

/// hualu's TURN relay on a free loopback UDP port, allowing loopback peers.
fn turn_server() -> (hualu_turn::Relay, SocketAddr) {
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let mut config = hualu_common::config::Config::default();
    config.turn.udp_port = port;
    config.turn.tcp_port = 0;
    config.turn.tls_port = 0;
    config.turn.shards = 1;
    config.turn.users.insert(USER.into(), PASSWORD.into());
    config.turn.allow_peers = vec!["127.0.0.0/8".parse().expect("a range")];
    let relay = hualu_turn::Relay::start(&config).expect("the TURN server starts");
    (relay, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A participant: its socket and its relay.
struct Side {
    udp: UdpSocket,
    relay: Relay,
    events: Vec<RelayEvent>,
    heard: Vec<(SocketAddr, Vec<u8>)>,
}

impl Side {
    fn new(server: SocketAddr, password: &str, base: Instant) -> Side {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("a socket");
        udp.set_read_timeout(Some(Duration::from_millis(5))).expect("timeout");
        let local = udp.local_addr().expect("an address");
        Side {
            udp,
            relay: Relay::allocate(
                local,
                server,
                USER,
                password,
                base,
                Instant::now() + Duration::from_secs(1),
            ),
            events: Vec::new(),
            heard: Vec::new(),
        }
    }

    /// One round: TURN's own messages out, whatever arrived in, timers.
    fn pump(&mut self) {
        let now = Instant::now();
        while let Some(d) = self.relay.poll_transmit(now) {
            self.udp.send_to(&d, self.relay.server()).expect("send");
        }
        let mut buf = [0u8; 2048];
        let local = self.udp.local_addr().expect("an address");
        while let Ok((n, from)) = self.udp.recv_from(&mut buf) {
            if let Received::Peer(peer, data) = self.relay.receive(Instant::now(), from, local, &buf[..n]) {
                self.heard.push((peer, data.to_vec()));
            }
            self.heard.extend(self.relay.take_held());
        }
        self.relay.handle_timeout(Instant::now());
        while let Some(e) = self.relay.poll_event() {
            self.events.push(e);
        }
    }

    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        let mut out = Vec::new();
        self.relay.wrap(Instant::now(), to, data, &mut out).expect("wrapped");
        self.udp.send_to(&out, self.relay.server()).expect("send");
    }
}

/// Pumps both until `done` holds, for at most 5 s.
fn pump_until(a: &mut Side, b: &mut Side, done: impl Fn(&Side, &Side) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(a, b) {
        assert!(Instant::now() < deadline, "timed out: {:?} / {:?}", a.events, b.events);
        a.pump();
        b.pump();
    }
}

#[test]
fn two_participants_trade_datagrams_through_their_relayed_addresses() {
    let (server, addr) = turn_server();
    let base = Instant::now();
    let (mut a, mut b) = (Side::new(addr, PASSWORD, base), Side::new(addr, PASSWORD, base));
    pump_until(&mut a, &mut b, |a, b| {
        a.relay.relayed().is_some() && b.relay.relayed().is_some()
    });
    let (ra, rb) = (a.relay.relayed().expect("a"), b.relay.relayed().expect("b"));
    assert!(a.events.contains(&RelayEvent::Allocated(ra)));
    assert_ne!(
        ra,
        a.udp.local_addr().expect("local"),
        "the relayed address is the server's"
    );
    assert!(
        a.relay.wrap(Instant::now(), rb, b"early", &mut Vec::new()).is_err(),
        "no permission yet"
    );
    a.relay.permit(rb, Instant::now()).expect("asked");
    b.relay.permit(ra, Instant::now()).expect("asked");
    pump_until(&mut a, &mut b, |a, b| a.relay.permitted() && b.relay.permitted());
    for i in 0..50u8 {
        a.send(rb, &[i; 160]);
        b.send(ra, &[i.wrapping_add(100); 80]);
    }
    pump_until(&mut a, &mut b, |a, b| a.heard.len() == 50 && b.heard.len() == 50);
    assert!(
        b.heard.iter().all(|(from, _)| *from == ra),
        "b hears a at a's relayed address"
    );
    assert!(a.heard.iter().all(|(from, _)| *from == rb));
    let sent: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 160]).collect();
    let got: Vec<Vec<u8>> = b.heard.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(got, sent, "every datagram arrives whole and in order on loopback");
    assert!(server.allocations() >= 2);
    a.relay.delete(Instant::now());
    server.stop();
}

/// A refused allocation ends in a failure event: hualu's TURN answers the second, signed Allocate with 401 again,
/// and the client, which keeps retrying, is given up on at the deadline.
#[test]
fn a_wrong_password_fails_the_allocation() {
    let (server, addr) = turn_server();
    let base = Instant::now();
    let mut a = Side::new(addr, "not-the-password-at-all-nope", base);
    let mut b = Side::new(addr, PASSWORD, base);
    pump_until(&mut a, &mut b, |a, _| {
        a.events
            .iter()
            .any(|e| matches!(e, RelayEvent::Failed(RelayError::AllocationFailed(_))))
    });
    assert_eq!(a.relay.relayed(), None);
    server.stop();
}
