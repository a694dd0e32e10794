//! RFC 5769 test vectors, checked with the codec and with this server's key derivation.

use crate::core::Authenticator;
use std::net::SocketAddr;
use stun_types::attribute::{Software, Username, XorMappedAddress};
use stun_types::message::{IntegrityAlgorithm, Message, MessageClass, ShortTermCredentials, BINDING};

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
        .collect()
}

/// RFC 5769 §2.1: a Binding request with short-term integrity and a fingerprint.
const SAMPLE_REQUEST: &str = "
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf";

/// RFC 5769 §2.2: the IPv4 Binding response.
const SAMPLE_RESPONSE_V4: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

/// RFC 5769 §2.4: a request with long-term credentials (user "マトリックス", realm "example.org").
const SAMPLE_LONG_TERM: &str = "
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

#[test]
fn sample_request_parses_and_validates() {
    let bytes = hex(SAMPLE_REQUEST);
    let msg = Message::from_bytes(&bytes).expect("parses, fingerprint valid");
    assert_eq!(msg.class(), MessageClass::Request);
    assert_eq!(msg.method(), BINDING);
    assert_eq!(
        msg.attribute::<Software>().expect("software").software(),
        "STUN test client"
    );
    assert_eq!(msg.attribute::<Username>().expect("username").username(), "evtj:h6vY");
    let creds = ShortTermCredentials::new("VOkJxbRl1RmTxUk/WvJxBt".into());
    assert!(msg.validate_integrity(&creds.into()).is_ok());
    let wrong = ShortTermCredentials::new("VOkJxbRl1RmTxUk/WvJxBT".into());
    assert!(msg.validate_integrity(&wrong.into()).is_err());
}

#[test]
fn sample_ipv4_response_carries_the_mapped_address() {
    let bytes = hex(SAMPLE_RESPONSE_V4);
    let msg = Message::from_bytes(&bytes).expect("parses");
    let mapped = msg
        .attribute::<XorMappedAddress>()
        .expect("mapped")
        .addr(msg.transaction_id());
    assert_eq!(mapped, "192.0.2.1:32853".parse::<SocketAddr>().expect("addr"));
    let creds = ShortTermCredentials::new("VOkJxbRl1RmTxUk/WvJxBt".into());
    assert!(msg.validate_integrity(&creds.into()).is_ok());
}

#[test]
fn long_term_sample_validates_with_this_servers_key_derivation() {
    let bytes = hex(SAMPLE_LONG_TERM);
    let msg = Message::from_bytes(&bytes).expect("parses");
    let user = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
    assert_eq!(msg.attribute::<Username>().expect("username").username(), user);
    // The password after SASLprep is "TheMatrIX".
    let auth = Authenticator::new(
        "example.org".into(),
        [(user.into(), "TheMatrIX".into())],
        vec![],
        [0; 32],
        600,
    );
    let keys = auth.keys(user, IntegrityAlgorithm::Sha1, 0).expect("static user");
    assert!(msg.validate_integrity_with_key(&keys[0]).is_ok());
    let wrong = Authenticator::new(
        "example.org".into(),
        [(user.into(), "TheMatrix".into())],
        vec![],
        [0; 32],
        600,
    );
    let keys = wrong.keys(user, IntegrityAlgorithm::Sha1, 0).expect("static user");
    assert!(msg.validate_integrity_with_key(&keys[0]).is_err());
}
