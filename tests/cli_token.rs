//! `hualu token`: the real binary mints a token that the shared verifier accepts with the claims asked for,
//! and refuses clearly when it cannot.

use hualu_common::token::{Grants, Verifier};
use std::collections::BTreeMap;
use std::process::Command;

const SECRET1: &str = "first-secret-0123456789abcdefghijk";
const SECRET2: &str = "second-secret-0123456789abcdefghij";

fn hualu(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hualu"))
        .args(args)
        .env_remove("HUALU_AUTH__API_KEYS")
        .output()
        .expect("hualu runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn keys() -> BTreeMap<String, String> {
    BTreeMap::from([("app1".into(), SECRET1.into()), ("app2".into(), SECRET2.into())])
}

#[test]
fn mints_a_token_the_verifier_accepts_with_the_claims_asked_for() {
    let set = format!("auth.api_keys.app1={SECRET1}");
    let (ok, token, err) = hualu(&[
        "token",
        "--identity",
        "alice",
        "--room",
        "standup",
        "--device",
        "phone",
        "--no-publish",
        "--ttl",
        "120",
        "--set",
        &set,
    ]);
    assert!(ok, "{err}");
    let now = hualu_common::clock::unix_now();
    let claims = Verifier::new(&keys()).verify(&token, now).expect("verifies");
    assert_eq!((claims.iss.as_str(), claims.sub.as_str()), ("app1", "alice"));
    assert_eq!(claims.device.as_deref(), Some("phone"));
    assert_eq!(
        claims.grants,
        Grants {
            room: Some("standup".into()),
            publish: false,
            subscribe: true,
            admin: false,
            links: Vec::new(),
        }
    );
    assert_eq!(claims.exp - claims.nbf, 120);
    assert!(
        Verifier::new(&keys()).verify(&token, now + 120 + 60).is_err(),
        "expires"
    );
}

#[test]
fn with_several_keys_the_chosen_one_signs() {
    let sets = [
        format!("auth.api_keys.app1={SECRET1}"),
        format!("auth.api_keys.app2={SECRET2}"),
    ];
    let (ok, _, err) = hualu(&["token", "--identity", "bob", "--set", &sets[0], "--set", &sets[1]]);
    assert!(!ok && err.contains("--key"), "must ask for --key: {err}");
    let (ok, token, err) = hualu(&[
        "token",
        "--identity",
        "bob",
        "--key",
        "app2",
        "--set",
        &sets[0],
        "--set",
        &sets[1],
    ]);
    assert!(ok, "{err}");
    let claims = Verifier::new(&keys())
        .verify(&token, hualu_common::clock::unix_now())
        .expect("verifies");
    assert_eq!(claims.iss, "app2");
    let (ok, _, err) = hualu(&["token", "--identity", "bob", "--key", "app9", "--set", &sets[0]]);
    assert!(!ok && err.contains("app9"), "names the unknown key: {err}");
}

#[test]
fn refuses_without_a_key_or_with_a_bad_identity() {
    let (ok, out, err) = hualu(&["token", "--identity", "alice"]);
    assert!(!ok && out.is_empty() && err.contains("auth.api_keys"), "{err}");
    let set = format!("auth.api_keys.app1={SECRET1}");
    let (ok, _, err) = hualu(&["token", "--identity", "", "--set", &set]);
    assert!(!ok && err.contains("identity"), "{err}");
}

#[test]
fn admin_mints_a_token_with_the_admin_grant_and_only_then() {
    let set = format!("auth.api_keys.app1={SECRET1}");
    let now = hualu_common::clock::unix_now();
    let grant = |extra: &[&str]| {
        let mut args = vec!["token", "--identity", "ops", "--set", &set];
        args.extend_from_slice(extra);
        let (ok, token, err) = hualu(&args);
        assert!(ok, "{err}");
        Verifier::new(&keys())
            .verify(&token, now)
            .expect("verifies")
            .grants
            .admin
    };
    assert!(grant(&["--admin"]));
    assert!(!grant(&[]));
}
