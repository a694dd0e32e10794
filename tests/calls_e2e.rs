//! Call control end to end: `hualu up` as a process, devices on `/ws`, and a call's media through the
//! embedded SFU.

mod common;

use common::phone::Phone;
use common::room_client::{run_until, RoomClient, Transport};
use common::sfu::SfuServer;
use serde_json::json;
use std::time::Duration;

/// `hualu up` with a short ring timeout and grace period.
fn server() -> SfuServer {
    SfuServer::start_with(
        "up",
        "\n[signaling]\nring_timeout_secs = 2\ngrace_secs = 3\nuser_rate = 50.0\nuser_burst = 20.0\n",
    )
}

fn phone(s: &SfuServer, user: &str, device: &str) -> Phone {
    Phone::connect(s.http_addr(), &s.user_token(user, device, 3600), "")
}

fn invite(p: &mut Phone, to: &[&str]) -> String {
    let r = p.request(json!({"type": "invite", "key": format!("inv-{to:?}"), "to": to, "media": "audio"}));
    assert_eq!(r["type"], "reply", "{r}");
    r["call"].as_str().expect("a call id").to_string()
}

#[test]
fn every_device_rings_one_answers_and_a_hangup_ends_it_for_both() {
    let s = server();
    let mut alice = phone(&s, "alice", "phone");
    let mut bob_phone = phone(&s, "bob", "phone");
    let mut bob_tablet = phone(&s, "bob", "tablet");
    let call = invite(&mut alice, &["bob"]);
    for p in [&mut bob_phone, &mut bob_tablet] {
        let inc = p.wait("incoming");
        assert_eq!(inc["call"], call.as_str());
        assert_eq!(inc["from"], "alice");
    }
    assert_eq!(alice.wait("ringing")["user"], "bob");

    let r = bob_tablet.request(json!({"type": "accept", "key": "a1", "call": call}));
    assert_eq!(r["type"], "reply", "{r}");
    assert_eq!(bob_phone.wait("answered_elsewhere")["device"], "tablet");
    let late = bob_phone.request(json!({"type": "accept", "key": "a2", "call": call}));
    assert_eq!(late["code"], "answered_elsewhere", "{late}");
    assert_eq!(alice.wait("answered")["user"], "bob");
    for p in [&mut alice, &mut bob_tablet] {
        let join = p.wait("join");
        assert_eq!(join["room"], call.as_str());
        assert!(join["sfu_url"].as_str().is_some_and(|u| u.ends_with("/rtc")), "{join}");
        assert!(join["token"].as_str().is_some_and(|t| t.len() > 20), "{join}");
        assert!(
            join["ice_servers"][0]["urls"].is_array(),
            "TURN with REST credentials: {join}"
        );
    }

    let r = alice.request(json!({"type": "hangup", "key": "h1", "call": call}));
    assert_eq!(r["type"], "reply", "{r}");
    assert_eq!(bob_tablet.wait("ended")["reason"], "hangup");
    assert_eq!(alice.wait("ended")["reason"], "hangup");
    let again = alice.request(json!({"type": "hangup", "key": "h1", "call": call}));
    assert_eq!(
        again["type"], "reply",
        "a retried hangup gets its first answer: {again}"
    );
}

#[test]
fn decline_and_no_answer() {
    let s = server();
    let mut alice = phone(&s, "alice", "phone");
    let mut bob = phone(&s, "bob", "phone");
    let call = invite(&mut alice, &["bob"]);
    bob.wait("incoming");
    let r = bob.request(json!({"type": "decline", "key": "d1", "call": call}));
    assert_eq!(r["type"], "reply", "{r}");
    assert_eq!(alice.wait("declined")["user"], "bob");
    assert_eq!(alice.wait("ended")["reason"], "declined");

    let r = alice.request(json!({"type": "invite", "key": "inv-2", "to": ["bob"]}));
    let call = r["call"].as_str().expect("call").to_string();
    bob.wait("incoming");
    assert_eq!(bob.wait("missed")["call"], call.as_str(), "the 2 s ring timeout");
    assert_eq!(alice.wait("ended")["reason"], "no_answer");
}

#[test]
fn a_dropped_device_resumes_its_session_and_its_call() {
    let s = server();
    let mut alice = phone(&s, "alice", "phone");
    let token = s.user_token("bob", "phone", 3600);
    let mut bob = Phone::connect(s.http_addr(), &token, "");
    let call = invite(&mut alice, &["bob"]);
    bob.wait("incoming");
    bob.request(json!({"type": "accept", "key": "a", "call": call}));
    bob.wait("join");
    let (session, seen) = (bob.session(), bob.last_seq);
    bob.drop_network();
    assert_eq!(alice.wait("reconnecting")["user"], "bob");
    // Something happens while bob is away: alice watches bob's presence, and keeps ringing nobody.
    let query = format!("&session={session}&last_seq={seen}");
    let mut bob = Phone::connect(s.http_addr(), &token, &query);
    assert_eq!(bob.welcome["resumed"], true, "{}", bob.welcome);
    assert_eq!(bob.welcome["session"], session.as_str());
    assert_eq!(alice.wait("reconnected")["user"], "bob");
    let r = bob.request(json!({"type": "hangup", "key": "h", "call": call}));
    assert_eq!(r["type"], "reply", "the resumed session is still in the call: {r}");
    assert_eq!(alice.wait("ended")["reason"], "hangup");

    let stale = Phone::connect(s.http_addr(), &token, "&session=nope&last_seq=3");
    assert_eq!(stale.welcome["resumed"], false);
    assert_eq!(stale.welcome["resume_failed"], true);
}

#[test]
fn past_the_grace_period_the_call_ends() {
    let s = server();
    let mut alice = phone(&s, "alice", "phone");
    let mut bob = phone(&s, "bob", "phone");
    let call = invite(&mut alice, &["bob"]);
    bob.wait("incoming");
    bob.request(json!({"type": "accept", "key": "a", "call": call}));
    bob.drop_network();
    alice.wait("reconnecting");
    let ended = alice.wait("ended");
    assert_eq!(ended["reason"], "connection_lost", "after the 3 s grace: {ended}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let s = server();
    let refused = Phone::try_connect(s.http_addr(), "not-a-token", "")
        .err()
        .expect("refused");
    assert_eq!(refused.0, 401, "{refused:?}");
    let mut claims = hualu_common::token::Claims::new("e2e", "alice", hualu_common::clock::unix_now(), 600);
    claims.device = Some("phone".into());
    let forged = hualu_common::token::mint("a-secret-this-server-has-never-heard-of!", &claims).expect("mint");
    let refused = Phone::try_connect(s.http_addr(), &forged, "").err();
    assert!(refused.is_some_and(|r| r.0 == 401), "a forged token is refused");

    let mut alice = phone(&s, "alice", "phone");
    alice.send_text("{not json");
    assert_eq!(alice.wait("error")["code"], "bad_request");
    let r = alice.request(json!({"type": "invite", "key": "", "to": ["bob"]}));
    assert_eq!(r["code"], "bad_request", "{r}");
    let r = alice.request(json!({"type": "accept", "key": "k", "call": "c-none"}));
    assert_eq!(r["code"], "no_such_call", "{r}");
    let r = alice.request(json!({"type": "invite", "key": "self", "to": ["alice"]}));
    assert_eq!(r["code"], "bad_request", "{r}");

    let mut limited = None;
    for _ in 0..60 {
        alice.send_text(r#"{"type":"ping","id":0}"#);
    }
    while let Some(v) = alice.try_wait("error", Duration::from_secs(2)) {
        if v["code"] == "rate_limited" {
            limited = Some(v);
            break;
        }
    }
    let limited = limited.expect("60 messages at once pass a burst of 20");
    assert!(limited["retry_after_ms"].as_u64().is_some(), "{limited}");
}

#[test]
fn an_answered_call_carries_audio_both_ways_through_the_sfu() {
    let s = server();
    let mut alice = phone(&s, "alice", "phone");
    let mut bob = phone(&s, "bob", "phone");
    let call = invite(&mut alice, &["bob"]);
    bob.wait("incoming");
    bob.request(json!({"type": "accept", "key": "a", "call": call}));
    let (ja, jb) = (alice.wait("join"), bob.wait("join"));
    let mut a = RoomClient::join(
        s.http_addr(),
        ja["token"].as_str().expect("token"),
        "alice",
        Transport::Udp,
    );
    let mut b = RoomClient::join(
        s.http_addr(),
        jb["token"].as_str().expect("token"),
        "bob",
        Transport::Udp,
    );
    let heard = run_until(&mut [&mut a, &mut b], Duration::from_secs(15), |cs| {
        cs[0].mids_with(25) >= 1 && cs[1].mids_with(25) >= 1
    });
    assert!(
        heard,
        "alice got {:?}, bob got {:?}\n{}",
        a.received,
        b.received,
        s.log_tail(40)
    );
    let r = bob.request(json!({"type": "hangup", "key": "h", "call": call}));
    assert_eq!(r["type"], "reply");
    assert_eq!(alice.wait("ended")["reason"], "hangup");
    let closed = run_until(&mut [&mut a], Duration::from_secs(5), |cs| {
        cs[0].of_type("left").iter().any(|m| m["reason"] == "the call ended")
    });
    assert!(closed, "the call's room closes with it: {:?}", a.messages);
}

#[test]
fn dev_mode_prints_call_tokens_and_mints_more_for_the_demo_page() {
    let s = SfuServer::start_with("up --dev", "");
    assert!(s.log_tail(80).contains("call token:"), "{}", s.log_tail(80));
    let r =
        common::http::request(s.http_addr(), "GET", "/dev/token?user=carol&device=web", &[], "").expect("an answer");
    assert_eq!(r.status, 200, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    let token = v["access_token"].as_str().expect("a token");
    let carol = Phone::connect(s.http_addr(), token, "");
    assert_eq!(carol.welcome["user"], "carol");
    assert_eq!(carol.welcome["device"], "web");
    let r = common::http::request(s.http_addr(), "GET", "/dev/token?user=&device=web", &[], "").expect("answer");
    assert_eq!(r.status, 400, "an empty user is refused: {r:?}");

    let prod = server();
    let r = common::http::request(prod.http_addr(), "GET", "/dev/token?user=carol", &[], "").expect("answer");
    assert_eq!(r.status, 404, "never on outside dev mode");
}

#[test]
fn webhooks_reach_a_receiver_that_fails_twice_signed_and_deduplicable() {
    let hooks = common::hooks::Receiver::start(2);
    let secret = "an-e2e-webhook-secret";
    let extra = format!(
        "\n[signaling]\nring_timeout_secs = 2\nwebhook_url = \"http://{}/hooks\"\nwebhook_secret = \"{secret}\"\n",
        hooks.addr
    );
    let s = SfuServer::start_with("up", &extra);
    let mut alice = phone(&s, "alice", "phone");
    let mut bob = phone(&s, "bob", "phone");
    let call = invite(&mut alice, &["bob"]);
    bob.wait("incoming");
    bob.request(json!({"type": "decline", "key": "d", "call": call}));
    alice.wait("ended");
    let kinds = |seen: &[common::hooks::Posted]| -> Vec<String> {
        let mut k: Vec<String> = seen
            .iter()
            .map(|p| p.json()["type"].as_str().unwrap_or("").to_string())
            .collect();
        k.dedup();
        k
    };
    let seen = hooks.wait(Duration::from_secs(15), |seen| {
        let k = kinds(seen);
        k.contains(&"call.invite".to_string()) && k.contains(&"call.ended".to_string()) && seen.len() >= 4
    });
    assert!(seen.len() >= 4, "2 failed attempts, then invite and ended: {seen:?}");
    for p in &seen {
        let sig = p.header("x-hualu-signature");
        assert!(
            hualu_signaling::webhook::verify(secret.as_bytes(), &p.body, sig),
            "signature on {p:?}"
        );
        assert_eq!(p.header("x-hualu-webhook-id"), p.json()["id"].as_str().unwrap_or("-"));
    }
    let invites: Vec<_> = seen.iter().filter(|p| p.json()["type"] == "call.invite").collect();
    assert!(invites.len() >= 2, "the invite was retried: {seen:?}");
    let ids: std::collections::BTreeSet<_> = invites.iter().map(|p| p.header("x-hualu-webhook-id")).collect();
    assert_eq!(ids.len(), 1, "a retry keeps its id, so the app can de-duplicate");
    let ended = seen
        .iter()
        .find(|p| p.json()["type"] == "call.ended")
        .expect("call.ended");
    let data = &ended.json()["data"];
    assert_eq!(data["call"], call.as_str());
    assert_eq!(data["reason"], "declined");
    assert_eq!(data["participants"], json!(["alice"]));
    let invite = invites[0].json();
    assert_eq!(invite["data"]["to"], json!(["bob"]));
    assert_eq!(invite["data"]["from"], "alice");
}

#[test]
fn a_long_session_gets_a_fresh_token_before_its_own_expires() {
    let s = server();
    // Expiring in 302 s: the refresh is due 5 minutes before, so in about 2 s.
    let mut alice = Phone::connect(s.http_addr(), &s.user_token("alice", "phone", 302), "");
    let t = alice.try_wait("token", Duration::from_secs(8)).expect("a fresh token");
    let token = t["access_token"].as_str().expect("token");
    let now = hualu_common::clock::unix_now();
    assert!(t["expires_at"].as_u64().is_some_and(|e| e > now + 302), "{t}");
    let again = Phone::connect(s.http_addr(), token, "");
    assert_eq!(again.welcome["user"], "alice");
    assert_eq!(again.welcome["device"], "phone");
}

#[test]
fn glare_busy_and_cancel() {
    let s = server();
    let mut alice = phone(&s, "alice", "phone");
    let mut bob = phone(&s, "bob", "phone");
    let mut carol = phone(&s, "carol", "phone");
    // Glare: both call each other; bob's invite answers alice's older call.
    let call = invite(&mut alice, &["bob"]);
    assert_eq!(bob.wait("incoming")["call"], call.as_str());
    let r = bob.request(json!({"type": "invite", "key": "g", "to": ["alice"]}));
    assert_eq!(
        (r["call"].as_str(), r["merged"].as_bool()),
        (Some(call.as_str()), Some(true)),
        "{r}"
    );
    assert_eq!(alice.wait("answered")["user"], "bob");
    bob.wait("join");
    // Busy: carol calls bob, who is in a call and takes no call waiting.
    let busy = invite(&mut carol, &["bob"]);
    assert_eq!(carol.wait("busy")["user"], "bob");
    let ended = carol.wait("ended");
    assert_eq!(
        (ended["call"].as_str(), ended["reason"].as_str()),
        (Some(busy.as_str()), Some("busy"))
    );
    // Call waiting on: the same call rings bob as waiting; carol cancels it.
    let r = bob.request(json!({"type": "settings", "call_waiting": true}));
    assert_eq!(r["type"], "reply", "{r}");
    let waiting = r#"{"type":"invite","id":9,"key":"w","to":["bob"]}"#;
    carol.send_text(waiting);
    let inc = bob.wait("incoming");
    assert_eq!(inc["waiting"], true, "{inc}");
    let r = carol.request(json!({"type": "cancel", "key": "c", "call": inc["call"]}));
    assert_eq!(r["type"], "reply", "{r}");
    assert_eq!(bob.wait("cancelled")["call"], inc["call"]);
}

#[test]
fn a_group_call_grows_and_the_last_one_out_ends_it() {
    let s = server();
    let [mut a, mut b, mut c, mut d] = ["alice", "bob", "carol", "dan"].map(|u| phone(&s, u, "phone"));
    let call = invite(&mut a, &["bob", "carol"]);
    for p in [&mut b, &mut c] {
        let inc = p.wait("incoming");
        let r = p.request(json!({"type": "accept", "key": "a", "call": inc["call"]}));
        assert_eq!(r["type"], "reply", "{r}");
        p.wait("join");
    }
    let r = b.request(json!({"type": "invite", "key": "more", "to": ["dan"], "call": call}));
    assert_eq!(r["call"], call.as_str(), "{r}");
    let inc = d.wait("incoming");
    assert_eq!(inc["members"], json!(["alice", "bob", "carol"]));
    d.request(json!({"type": "accept", "key": "a", "call": call}));
    assert_eq!(d.wait("join")["room"], call.as_str());
    a.request(json!({"type": "hangup", "key": "h", "call": call}));
    assert_eq!(b.wait("left")["user"], "alice", "one leaving does not end it");
    for p in [&mut b, &mut c] {
        p.request(json!({"type": "hangup", "key": "h", "call": call}));
    }
    assert_eq!(d.wait("ended")["reason"], "hangup", "the last one out");
}
