//! Writes the seed corpus: well-formed STUN/TURN messages and ChannelData, so the fuzzers start deep in the
//! parsers and the request handlers instead of guessing the magic cookie.
//!
//! ```sh
//! cargo run --example seeds            # into corpus/parse and corpus/unauthenticated
//! cargo run --example seeds -- DIR     # into DIR/parse and DIR/unauthenticated
//! ```
//!
//! The `unauthenticated` target splits its input at 0xFF bytes, sends even-numbered pieces from a UDP client
//! and odd-numbered ones from a TCP client (both 192.0.2.1:1000), and every piece also as peer data from
//! 198.51.100.1:2000. So every message here is built with a transaction id that leaves no 0xFF byte in it,
//! and the "session" seeds chain messages with 0xFF separators. Those sessions are signed for real: the
//! constants below mirror `turn/src/fuzzing.rs` (realm, static user, nonce key and lifetime, wall clock), so
//! the nonce is the one that server would hand out and the requests pass authentication. If fuzzing.rs
//! changes them, update these too (the seeds still parse, they just stop reaching the authenticated paths).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use hualu_turn::core::Authenticator;
use stun_types::attribute::{Nonce, Realm, Software, Username};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageType, MessageWrite, MessageWriteExt,
    MessageWriteVec, Method, TransactionId, BINDING,
};
use stun_types::prelude::*;
use turn_types::attribute::{
    ChannelNumber, ConnectionId, Data, DontFragment, EvenPort, Lifetime, RequestedAddressFamily, RequestedTransport,
    XorPeerAddress,
};
use turn_types::message::{ALLOCATE, CHANNEL_BIND, CONNECT, CONNECTION_BIND, CREATE_PERMISSION, REFRESH, SEND};
use turn_types::AddressFamily;

// Mirrors turn/src/fuzzing.rs.
const REALM: &str = "fuzz";
const USER: &str = "u";
const PASS: &str = "p";
const NONCE_KEY: [u8; 32] = [3; 32];
const NONCE_SECS: u32 = 600;
const UNIX_NOW: u64 = 1_800_000_000;
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 2000);

/// How a request is signed.
#[derive(Clone, Copy)]
enum Sign<'a> {
    /// Not at all (no FINGERPRINT either).
    No,
    /// FINGERPRINT only.
    Fingerprint,
    /// USERNAME, REALM, NONCE, MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT.
    With(&'a str, IntegrityAlgorithm),
}

/// Builds a message; `attrs` gets the transaction id (XOR-encoded addresses depend on it). Tries transaction
/// ids until the bytes hold no 0xFF, so the `unauthenticated` target sees the message whole.
fn message(
    class: MessageClass,
    method: Method,
    sign: Sign<'_>,
    attrs: impl Fn(&mut MessageWriteVec, TransactionId),
) -> Vec<u8> {
    let mtype = MessageType::from_class_method(class, method);
    for seed in 1u128.. {
        let txid = TransactionId::from(seed * 0x0101_0101_0101_0101_0101_0101);
        let mut w = Message::builder(mtype, txid, MessageWriteVec::new());
        attrs(&mut w, txid);
        match sign {
            Sign::No => {}
            Sign::Fingerprint => w.add_fingerprint().expect("fingerprint"),
            Sign::With(nonce, algorithm) => {
                w.add_attribute(&Username::new(USER).expect("username")).expect("add");
                w.add_attribute(&Realm::new(REALM).expect("realm")).expect("add");
                w.add_attribute(&Nonce::new(nonce).expect("nonce")).expect("add");
                let creds = LongTermKeyCredentials::new(USER.into(), PASS.into(), REALM.into());
                w.add_message_integrity(&creds.into(), algorithm).expect("integrity");
                w.add_fingerprint().expect("fingerprint");
            }
        }
        let bytes = w.finish();
        if !bytes.contains(&0xFF) {
            return bytes;
        }
    }
    unreachable!("some transaction id avoids 0xFF")
}

fn request(method: Method, sign: Sign<'_>, attrs: impl Fn(&mut MessageWriteVec, TransactionId)) -> Vec<u8> {
    message(MessageClass::Request, method, sign, attrs)
}

fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&u16::try_from(payload.len()).expect("short payload").to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn add(w: &mut MessageWriteVec, attr: &dyn AttributeWrite) {
    w.add_attribute(attr).expect("attribute");
}

fn transport(w: &mut MessageWriteVec) {
    add(w, &RequestedTransport::new(RequestedTransport::UDP));
}

/// Single messages: the same set goes to both targets.
fn singles(nonce: &str) -> Vec<(&'static str, Vec<u8>)> {
    let stale = "obMatJos2AAAB00000000000000000000000000000000";
    vec![
        ("binding", request(BINDING, Sign::No, |_, _| {})),
        (
            "binding-software-fingerprint",
            request(BINDING, Sign::Fingerprint, |w, _| {
                add(w, &Software::new("hualu-seed").expect("software"))
            }),
        ),
        ("allocate", request(ALLOCATE, Sign::No, |w, _| transport(w))),
        (
            "allocate-options",
            request(ALLOCATE, Sign::Fingerprint, |w, _| {
                transport(w);
                add(w, &Lifetime::new(3600));
                add(w, &EvenPort::new(true));
                add(w, &DontFragment::new());
            }),
        ),
        (
            "allocate-ipv6",
            request(ALLOCATE, Sign::Fingerprint, |w, _| {
                transport(w);
                add(w, &RequestedAddressFamily::new(AddressFamily::IPV6));
            }),
        ),
        (
            "allocate-signed-stale-nonce",
            request(ALLOCATE, Sign::With(stale, IntegrityAlgorithm::Sha1), |w, _| {
                transport(w)
            }),
        ),
        (
            "allocate-signed",
            request(ALLOCATE, Sign::With(nonce, IntegrityAlgorithm::Sha1), |w, _| {
                transport(w)
            }),
        ),
        (
            "allocate-signed-sha256",
            request(ALLOCATE, Sign::With(nonce, IntegrityAlgorithm::Sha256), |w, _| {
                transport(w)
            }),
        ),
        (
            "refresh",
            request(REFRESH, Sign::With(nonce, IntegrityAlgorithm::Sha1), |w, _| {
                add(w, &Lifetime::new(600))
            }),
        ),
        (
            "create-permission",
            request(
                CREATE_PERMISSION,
                Sign::With(nonce, IntegrityAlgorithm::Sha1),
                |w, txid| {
                    add(w, &XorPeerAddress::new(PEER, txid));
                },
            ),
        ),
        (
            "channel-bind",
            request(CHANNEL_BIND, Sign::With(nonce, IntegrityAlgorithm::Sha1), |w, txid| {
                add(w, &ChannelNumber::new(0x4000));
                add(w, &XorPeerAddress::new(PEER, txid));
            }),
        ),
        (
            "send-indication",
            message(MessageClass::Indication, SEND, Sign::Fingerprint, |w, txid| {
                add(w, &XorPeerAddress::new(PEER, txid));
                add(w, &Data::new(b"hello peer"));
            }),
        ),
        (
            "send-indication-ipv6",
            message(MessageClass::Indication, SEND, Sign::No, |w, txid| {
                add(
                    w,
                    &XorPeerAddress::new("[2001:db8::1]:3000".parse().expect("addr"), txid),
                );
                add(w, &Data::new(b"hello v6"));
            }),
        ),
        ("channel-data", channel_data(0x4000, b"hello over a channel")),
        ("channel-data-padded", channel_data(0x4001, b"abcde\0\0\0")),
        ("channel-data-empty", channel_data(0x7FFE, b"")),
    ]
}

/// Whole conversations for the `unauthenticated` target: 0xFF-separated, client requests at even positions
/// (UDP), empty pieces or an unsigned request at odd positions (TCP).
fn sessions(nonce: &str) -> Vec<(&'static str, Vec<u8>)> {
    let sha1 = Sign::With(nonce, IntegrityAlgorithm::Sha1);
    let sha256 = Sign::With(nonce, IntegrityAlgorithm::Sha256);
    let relay = [
        request(ALLOCATE, sha1, |w, _| {
            transport(w);
            add(w, &Lifetime::new(600));
        }),
        vec![],
        request(CREATE_PERMISSION, sha1, |w, txid| {
            add(w, &XorPeerAddress::new(PEER, txid))
        }),
        request(ALLOCATE, Sign::No, |w, _| transport(w)),
        request(CHANNEL_BIND, sha1, |w, txid| {
            add(w, &ChannelNumber::new(0x4000));
            add(w, &XorPeerAddress::new(PEER, txid));
        }),
        vec![],
        message(MessageClass::Indication, SEND, Sign::No, |w, txid| {
            add(w, &XorPeerAddress::new(PEER, txid));
            add(w, &Data::new(b"via send"));
        }),
        vec![],
        channel_data(0x4000, b"via channel"),
        vec![],
        request(REFRESH, sha1, |w, _| add(w, &Lifetime::new(600))),
        vec![],
        request(REFRESH, sha1, |w, _| add(w, &Lifetime::new(0))),
    ];
    let v6 = [
        request(ALLOCATE, sha256, |w, _| {
            transport(w);
            add(w, &RequestedAddressFamily::new(AddressFamily::IPV6));
        }),
        vec![],
        request(REFRESH, sha256, |w, _| add(w, &Lifetime::new(1200))),
    ];
    // RFC 6062 from the TCP client (odd positions): a TCP allocation, a permission, Connect, ConnectionBind.
    let tcp = [
        vec![],
        request(ALLOCATE, sha1, |w, _| {
            add(w, &RequestedTransport::new(RequestedTransport::TCP))
        }),
        vec![],
        request(CREATE_PERMISSION, sha1, |w, txid| {
            add(w, &XorPeerAddress::new(PEER, txid))
        }),
        vec![],
        request(CONNECT, sha1, |w, txid| add(w, &XorPeerAddress::new(PEER, txid))),
        vec![],
        request(CONNECTION_BIND, sha1, |w, _| add(w, &ConnectionId::new(1))),
    ];
    vec![
        ("session-relay", relay.join(&0xFF)),
        ("session-tcp-allocation", tcp.join(&0xFF)),
        ("session-ipv6-sha256", v6.join(&0xFF)),
    ]
}

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let auth = Authenticator::new(
        REALM.into(),
        [(USER.into(), PASS.into())],
        vec![],
        NONCE_KEY,
        NONCE_SECS,
    );
    let nonce = auth.nonce(CLIENT_IP, UNIX_NOW);

    let singles = singles(&nonce);
    let mut n = 0;
    for (target, seeds) in [
        ("parse", singles.clone()),
        ("unauthenticated", [singles, sessions(&nonce)].concat()),
    ] {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            // A session is many messages; only single ones must parse.
            if !name.starts_with("session") && !name.starts_with("channel-data") {
                Message::from_bytes(&bytes).expect("seed parses");
            }
            std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
            n += 1;
        }
    }
    println!("wrote {n} seeds under {}", out.display());
    Ok(())
}
