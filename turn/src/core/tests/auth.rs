//! Credentials, nonces, integrity algorithms and the 401 rate limit.

use super::allocate::allocate;
use super::harness::*;
use crate::core::*;
use std::time::Duration;
use stun_types::attribute::XorMappedAddress;
use stun_types::message::{IntegrityAlgorithm, Message, BINDING};
use stun_types::prelude::*;
use turn_types::attribute::{Lifetime, RequestedTransport};
use turn_types::message::{ALLOCATE, REFRESH};

fn udp() -> RequestedTransport {
    RequestedTransport::new(RequestedTransport::UDP)
}

fn challenged(w: &mut World, from: ClientAddr, creds: &mut Creds) {
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 401);
    learn_nonce(creds, &r[0]);
}

#[test]
fn binding_answers_with_the_mapped_address() {
    let mut w = World::new();
    let from = udp_client(6000);
    let (r, _) = w.send(from, &Creds::static_user().request(BINDING, &[]));
    assert_eq!(code(&r), 0);
    let msg = Message::from_bytes(&r[0]).expect("parses");
    assert_eq!(
        msg.attribute::<XorMappedAddress>()
            .expect("mapped")
            .addr(msg.transaction_id()),
        from.addr
    );
}

#[test]
fn wrong_password_gets_401_and_counts_a_failure() {
    let mut w = World::new();
    let from = udp_client(6001);
    let mut creds = Creds {
        password: "wrong".into(),
        ..Creds::static_user()
    };
    challenged(&mut w, from, &mut creds);
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 401);
    assert_eq!(w.server.stats().auth_failures, 1);
    assert_eq!(w.server.allocation_count(), 0);
}

#[test]
fn unknown_user_gets_401() {
    let mut w = World::new();
    let from = udp_client(6002);
    let mut creds = Creds {
        username: "mallory".into(),
        ..Creds::static_user()
    };
    challenged(&mut w, from, &mut creds);
    let (r, _) = w.send(from, &creds.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 401);
}

#[test]
fn rest_credentials_work_until_they_expire() {
    let mut w = World::new();
    allocate(&mut w, udp_client(6003), &mut Creds::rest("bob", UNIX0 + 60));
    let mut expired = Creds::rest("carol", UNIX0 - 1);
    challenged(&mut w, udp_client(6004), &mut expired);
    let (r, _) = w.send(udp_client(6004), &expired.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 401);
}

#[test]
fn any_configured_secret_verifies_for_rotation() {
    let mut w = World::new();
    allocate(
        &mut w,
        udp_client(6005),
        &mut Creds::rest_with(SECRET, "dave", UNIX0 + 600),
    );
    allocate(
        &mut w,
        udp_client(6015),
        &mut Creds::rest_with(OLD_SECRET, "erin", UNIX0 + 600),
    );
    let mut forged = Creds::rest_with("never-configured-secret", "mallory", UNIX0 + 600);
    challenged(&mut w, udp_client(6016), &mut forged);
    let (r, _) = w.send(udp_client(6016), &forged.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 401);
}

#[test]
fn stale_nonce_gets_438_with_a_fresh_one_and_the_retry_works() {
    let mut w = World::new();
    let from = udp_client(6006);
    let mut creds = Creds::static_user();
    allocate(&mut w, from, &mut creds);
    w.advance(Duration::from_secs(500));
    let (r, _) = w.send(from, &creds.request(REFRESH, &[&Lifetime::new(3600)]));
    assert_eq!(code(&r), 0, "nonce still fresh at 500 s");
    w.advance(Duration::from_secs(101));
    let (r, _) = w.send(from, &creds.request(REFRESH, &[]));
    assert_eq!(code(&r), 438, "nonce lapsed at 600 s");
    learn_nonce(&mut creds, &r[0]);
    let (r, _) = w.send(from, &creds.request(REFRESH, &[&Lifetime::new(600)]));
    assert_eq!(code(&r), 0);
}

#[test]
fn nonce_from_another_ip_is_refused() {
    let mut w = World::new();
    let mut creds = Creds::static_user();
    challenged(&mut w, udp_client(6007), &mut creds);
    let elsewhere = ClientAddr {
        addr: "203.0.113.5:6007".parse().expect("addr"),
        ..udp_client(6007)
    };
    let (r, _) = w.send(elsewhere, &creds.request(ALLOCATE, &[&udp()]));
    assert_eq!(code(&r), 438);
}

#[test]
fn another_username_on_an_allocation_gets_441() {
    let mut w = World::new();
    let from = udp_client(6008);
    allocate(&mut w, from, &mut Creds::static_user());
    let mut bob = Creds::rest("bob", UNIX0 + 600);
    challenged(&mut w, udp_client(6009), &mut bob);
    let (r, _) = w.send(from, &bob.request(REFRESH, &[]));
    assert_eq!(code(&r), 441);
}

#[test]
fn sha256_integrity_is_accepted_and_used_in_the_answer() {
    let mut w = World::new();
    let from = udp_client(6010);
    let mut creds = Creds {
        algorithm: IntegrityAlgorithm::Sha256,
        ..Creds::static_user()
    };
    let ok = allocate(&mut w, from, &mut creds);
    let msg = Message::from_bytes(&ok).expect("parses");
    assert!(msg.has_attribute(stun_types::attribute::MessageIntegritySha256::TYPE));
    let key = stun_types::message::LongTermKeyCredentials::new(USER.into(), PASS.into(), REALM.into());
    assert!(
        msg.validate_integrity(&key.into()).is_ok(),
        "the answer is signed with the same key"
    );
}

#[test]
fn success_responses_are_signed_and_fingerprinted() {
    let mut w = World::new();
    let ok = allocate(&mut w, udp_client(6011), &mut Creds::static_user());
    let msg = Message::from_bytes(&ok).expect("parses (fingerprint checked)");
    assert!(msg.has_attribute(stun_types::attribute::Fingerprint::TYPE));
    let key = stun_types::message::LongTermKeyCredentials::new(USER.into(), PASS.into(), REALM.into());
    assert!(msg.validate_integrity(&key.into()).is_ok());
}

#[test]
fn unauthenticated_answers_are_rate_limited_per_source_ip() {
    let mut c = config();
    c.unauth_rate_per_sec = 2;
    c.unauth_burst = 3;
    let mut w = World::with(c);
    let creds = Creds::static_user();
    let answered = (0..10u16)
        .filter(|i| {
            !w.send(udp_client(7000 + i), &creds.request(ALLOCATE, &[&udp()]))
                .0
                .is_empty()
        })
        .count();
    assert_eq!(answered, 3, "the burst, then silence");
    assert_eq!(w.server.stats().unauth_dropped, 7);
    let other = ClientAddr {
        addr: "203.0.113.9:1".parse().expect("addr"),
        ..udp_client(1)
    };
    assert_eq!(
        w.send(other, &creds.request(ALLOCATE, &[&udp()])).0.len(),
        1,
        "other sources unaffected"
    );
    w.now += Duration::from_secs(1);
    assert_eq!(
        w.send(udp_client(7100), &creds.request(ALLOCATE, &[&udp()])).0.len(),
        1,
        "refilled"
    );
}

#[test]
fn unknown_comprehension_required_attribute_gets_420() {
    let mut w = World::new();
    let mut creds = Creds::static_user();
    challenged(&mut w, udp_client(6012), &mut creds);
    let odd = stun_types::attribute::RawAttribute::new(0x7777.into(), &[1, 2, 3, 4]);
    let (r, _) = w.send(udp_client(6012), &creds.request(ALLOCATE, &[&udp(), &odd]));
    assert_eq!(code(&r), 420);
}

#[test]
fn missing_requested_transport_is_400() {
    let mut w = World::new();
    let mut creds = Creds::static_user();
    challenged(&mut w, udp_client(6013), &mut creds);
    let (r, _) = w.send(udp_client(6013), &creds.request(ALLOCATE, &[]));
    assert_eq!(code(&r), 400);
}
