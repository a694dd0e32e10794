//! The life of a TCP allocation (RFC 6062) end to end, driven by a small client written here (coturn's client
//! cannot delete an allocation while its data connection is open): Allocate over TCP, Connect to a peer,
//! ConnectionBind a data connection, relay both ways, then delete the allocation and see the data connection
//! and the peer connection close with it (RFC 6062 §5.5).

mod common;

use common::server::REALM;
use common::{Server, ServerSpec, PASSWORD, USER};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use stun_types::attribute::{ErrorCode, Nonce, Realm, Username};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite, MessageWriteExt, MessageWriteVec,
    Method,
};
use turn_types::attribute::{ConnectionId, Lifetime, RequestedTransport, XorPeerAddress};
use turn_types::message::{ALLOCATE, CONNECT, CONNECTION_BIND, REFRESH};

/// One TCP connection to the server speaking STUN, with the long-term credentials once challenged.
struct Control {
    stream: TcpStream,
    nonce: String,
}

/// An attribute to add to a request.
enum Attr {
    Transport,
    Peer(SocketAddr),
    Id(u32),
    Lifetime(u32),
}

impl Control {
    fn connect(server: &Server) -> Control {
        let stream = TcpStream::connect(("127.0.0.1", server.turn_port())).expect("connects to the TURN port");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        Control {
            stream,
            nonce: String::new(),
        }
    }

    /// Sends `method` with `attrs`, signed once a nonce is known; answers a 401 or 438 by signing again.
    fn request(&mut self, method: Method, attrs: &[Attr]) -> Vec<u8> {
        for _ in 0..3 {
            let mut msg = Message::builder_request(method, MessageWriteVec::new());
            let txid = msg.transaction_id();
            for a in attrs {
                let added = match a {
                    Attr::Transport => msg.add_attribute(&RequestedTransport::new(RequestedTransport::TCP)),
                    Attr::Peer(p) => msg.add_attribute(&XorPeerAddress::new(*p, txid)),
                    Attr::Id(id) => msg.add_attribute(&ConnectionId::new(*id)),
                    Attr::Lifetime(s) => msg.add_attribute(&Lifetime::new(*s)),
                };
                added.expect("attribute");
            }
            if !self.nonce.is_empty() {
                msg.add_attribute(&Username::new(USER).expect("user")).expect("user");
                msg.add_attribute(&Realm::new(REALM).expect("realm")).expect("realm");
                msg.add_attribute(&Nonce::new(&self.nonce).expect("nonce"))
                    .expect("nonce");
                let creds = LongTermKeyCredentials::new(USER.into(), PASSWORD.into(), REALM.into());
                msg.add_message_integrity(&creds.into(), IntegrityAlgorithm::Sha1)
                    .expect("integrity");
            }
            self.stream.write_all(&msg.finish()).expect("request sent");
            let reply = read_stun(&mut self.stream);
            let parsed = Message::from_bytes(&reply).expect("a STUN reply");
            assert_eq!(parsed.transaction_id(), txid, "the reply to this request");
            let code = parsed.attribute::<ErrorCode>().map(|e| e.code()).unwrap_or(0);
            if parsed.class() == MessageClass::Error && (code == 401 || code == 438) {
                self.nonce = parsed.attribute::<Nonce>().expect("a nonce").nonce().to_string();
                continue;
            }
            return reply;
        }
        panic!("{method:?} never got past authentication");
    }
}

/// Reads one STUN message from a stream: the 20-byte header, then the length it gives.
fn read_stun(stream: &mut TcpStream) -> Vec<u8> {
    let mut msg = vec![0u8; 20];
    stream.read_exact(&mut msg).expect("a STUN header");
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    msg.resize(20 + len, 0);
    stream.read_exact(&mut msg[20..]).expect("a STUN body");
    msg
}

fn assert_success(reply: &[u8], what: &str) {
    let msg = Message::from_bytes(reply).expect("parses");
    let code = msg.attribute::<ErrorCode>().map(|e| e.code()).unwrap_or(0);
    assert_eq!(msg.class(), MessageClass::Success, "{what} failed with {code}");
}

/// Whether `stream` reaches end of file (or a reset) within `limit`.
fn closes_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn deleting_a_tcp_allocation_closes_its_spliced_connections() {
    let server = Server::start(&ServerSpec::default());
    let peer = TcpListener::bind("127.0.0.1:0").expect("peer listens");
    let peer_addr = peer.local_addr().expect("peer address");

    let mut control = Control::connect(&server);
    assert_success(&control.request(ALLOCATE, &[Attr::Transport]), "TCP Allocate");
    let reply = control.request(CONNECT, &[Attr::Peer(peer_addr)]);
    assert_success(&reply, "Connect");
    let id = Message::from_bytes(&reply)
        .expect("parses")
        .attribute::<ConnectionId>()
        .expect("a CONNECTION-ID")
        .id();
    let (mut at_peer, _) = peer.accept().expect("the relay connected to the peer");

    let mut data = Control::connect(&server);
    data.nonce = control.nonce.clone();
    assert_success(&data.request(CONNECTION_BIND, &[Attr::Id(id)]), "ConnectionBind");

    data.stream.write_all(b"ping").expect("client writes");
    let mut got = [0u8; 4];
    at_peer
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    at_peer.read_exact(&mut got).expect("the peer reads");
    assert_eq!(&got, b"ping");
    at_peer.write_all(b"pong").expect("peer writes");
    data.stream.read_exact(&mut got).expect("the client reads");
    assert_eq!(&got, b"pong");

    assert_success(&control.request(REFRESH, &[Attr::Lifetime(0)]), "Refresh 0");
    assert!(
        closes_within(&mut data.stream, Duration::from_secs(5)),
        "the data connection outlived its allocation\n{}",
        server.log_tail(20)
    );
    assert!(
        closes_within(&mut at_peer, Duration::from_secs(5)),
        "the peer connection outlived its allocation\n{}",
        server.log_tail(20)
    );
}
