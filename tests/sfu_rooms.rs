//! The SFU end to end: `hualu sfu` as a process, participants joining through `/rtc` over real UDP and ICE-TCP
//! sockets on loopback.

mod common;

use common::http;
use common::room_client::{self, run_until, RoomClient, Transport};
use common::sfu::SfuServer;
use std::time::Duration;

/// Frames a participant must receive from each other one before a check passes: a second of audio.
const FRAMES: usize = 50;

#[test]
fn three_participants_over_udp_hear_each_other_and_see_the_roster() {
    let server = SfuServer::start();
    let http = server.http_addr();
    let mut a = RoomClient::join(http, &server.token("alice", "standup"), "alice", Transport::Udp);
    let mut b = RoomClient::join(http, &server.token("bob", "standup"), "bob", Transport::Udp);
    let mut c = RoomClient::join(http, &server.token("carol", "standup"), "carol", Transport::Udp);
    let heard = run_until(&mut [&mut a, &mut b, &mut c], Duration::from_secs(15), |cs| {
        cs.iter().all(|c| c.mids_with(FRAMES) >= 2)
    });
    for p in [&a, &b, &c] {
        assert!(
            heard,
            "{} received {:?}\n{}",
            p.identity,
            p.received,
            server.log_tail(40)
        );
    }
    let joined = &c.messages[0];
    let others: Vec<&str> = joined["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p["identity"].as_str().expect("identity"))
        .collect();
    assert_eq!(others.len(), 2, "carol sees alice and bob in joined: {joined}");
    assert!(others.contains(&"alice") && others.contains(&"bob"), "{others:?}");
    let ice = &joined["ice_servers"][0];
    assert!(ice["urls"][0].as_str().is_some_and(|u| u.starts_with("turn:")), "{ice}");
    assert!(ice["username"].as_str().is_some_and(|u| u.ends_with(":carol")), "{ice}");
    let newcomers: Vec<&str> = a
        .of_type("participant_joined")
        .iter()
        .map(|m| m["participant"]["identity"].as_str().expect("identity"))
        .collect();
    assert_eq!(newcomers, ["bob", "carol"]);
    let published = a.of_type("track_published");
    assert!(published
        .iter()
        .any(|m| m["participant"] == c.id.as_str() && m["track"]["kind"] == "audio"));

    c.leave();
    let left = run_until(&mut [&mut a, &mut b, &mut c], Duration::from_secs(5), |cs| {
        cs[0].of_type("participant_left").len() == 1 && cs[2].of_type("left").len() == 1
    });
    assert!(
        left,
        "alice is told carol left, and carol gets left:\n{:?}",
        a.messages.last()
    );
    assert_eq!(a.of_type("participant_left")[0]["participant"], c.id.as_str());
    let before = a.received.clone();
    room_client::run_for(&mut [&mut a, &mut b], Duration::from_secs(2));
    let grew = a
        .received
        .iter()
        .filter(|(m, n)| **n >= before.get(*m).copied().unwrap_or(0) + FRAMES);
    assert_eq!(
        grew.count(),
        1,
        "alice keeps hearing bob only: {before:?} -> {:?}",
        a.received
    );
}

#[test]
fn a_subscriber_turns_a_track_off_and_on_and_unknown_tracks_are_refused() {
    let server = SfuServer::start();
    let http = server.http_addr();
    let mut a = RoomClient::join(http, &server.token("alice", "prefs"), "alice", Transport::Udp);
    let mut b = RoomClient::join(http, &server.token("bob", "prefs"), "bob", Transport::Udp);
    let heard = run_until(&mut [&mut a, &mut b], Duration::from_secs(15), |cs| {
        cs[0].mids_with(FRAMES) >= 1
    });
    assert!(heard, "alice hears bob: {:?}\n{}", a.received, server.log_tail(40));
    let published = a.of_type("track_published");
    let track = published
        .iter()
        .find(|m| m["participant"] == b.id.as_str())
        .map(|m| m["track"]["id"].as_str().expect("track id").to_string())
        .expect("bob's track announced");
    let frames = |c: &RoomClient| c.received.values().sum::<usize>();

    a.send(&serde_json::json!({"type": "subscribe", "id": 7, "track": track, "enabled": false}));
    let answered = |cs: &[&mut RoomClient]| cs[0].of_type("subscribed").len() == 1;
    assert!(
        run_until(&mut [&mut a, &mut b], Duration::from_secs(5), answered),
        "{:?}",
        a.messages
    );
    assert_eq!(a.of_type("subscribed")[0]["id"], 7);
    room_client::run_for(&mut [&mut a, &mut b], Duration::from_millis(300));
    let paused = frames(&a);
    room_client::run_for(&mut [&mut a, &mut b], Duration::from_secs(1));
    assert!(
        frames(&a) <= paused + 2,
        "nothing while off: {paused} then {}",
        frames(&a)
    );

    a.send(&serde_json::json!({"type": "subscribe", "id": 8, "track": track, "quality": "low"}));
    let back = run_until(&mut [&mut a, &mut b], Duration::from_secs(5), |cs| {
        cs[0].received.values().sum::<usize>() >= paused + FRAMES
    });
    assert!(back, "bob is heard again");

    a.send(&serde_json::json!({"type": "subscribe", "id": 9, "track": "nope-1"}));
    a.send(&serde_json::json!({"type": "subscribe", "id": 10, "track": track, "quality": "ultra"}));
    let refused = |cs: &[&mut RoomClient]| cs[0].of_type("error").len() == 2;
    assert!(
        run_until(&mut [&mut a, &mut b], Duration::from_secs(5), refused),
        "{:?}",
        a.messages
    );
    let errors = a.of_type("error");
    assert_eq!(errors[0]["code"], "unknown_track", "{}", errors[0]);
    assert_eq!(errors[0]["id"], 9);
    assert_eq!(errors[1]["code"], "bad_request", "{}", errors[1]);
}

#[test]
fn a_participant_over_ice_tcp_hears_and_is_heard() {
    let server = SfuServer::start();
    let http = server.http_addr();
    let mut a = RoomClient::join(http, &server.token("alice", "tcp"), "alice", Transport::Tcp);
    let mut b = RoomClient::join(http, &server.token("bob", "tcp"), "bob", Transport::Udp);
    let heard = run_until(&mut [&mut a, &mut b], Duration::from_secs(15), |cs| {
        cs.iter().all(|c| c.mids_with(FRAMES) >= 1)
    });
    assert!(
        heard,
        "alice (tcp) {:?}, bob (udp) {:?}\n{}",
        a.received,
        b.received,
        server.log_tail(40)
    );
    let metrics = http::get(server.metrics_addr(), "/metrics").expect("metrics").body;
    let tcp = http::metric_sum(&metrics, "hualu_sfu_ice_tcp_connections", &[]).unwrap_or(0.0);
    assert!(tcp >= 1.0, "an ICE-TCP connection is counted:\n{metrics}");
}

#[test]
fn a_participant_resumes_from_a_new_address_and_keeps_its_session() {
    let server = SfuServer::start();
    let http = server.http_addr();
    let token_a = server.token("alice", "move");
    let mut a = RoomClient::join(http, &token_a, "alice", Transport::Udp);
    let mut b = RoomClient::join(http, &server.token("bob", "move"), "bob", Transport::Udp);
    let heard = |cs: &[&mut RoomClient]| cs.iter().all(|c| c.mids_with(FRAMES) >= 1);
    assert!(
        run_until(&mut [&mut a, &mut b], Duration::from_secs(15), heard),
        "{}",
        server.log_tail(30)
    );
    let id = a.id.clone();
    a.lose_network();
    room_client::run_for(&mut [&mut a, &mut b], Duration::from_millis(500));
    let joined = a.resume(http, &token_a);
    assert_eq!(joined["resumed"], true, "{joined}");
    assert_eq!(joined["participant"]["id"], id.as_str(), "the same participant");
    assert_eq!(joined["participants"][0]["identity"], "bob", "{joined}");
    let (a_before, b_before) = (a.received.clone(), b.received.clone());
    let flows = run_until(&mut [&mut a, &mut b], Duration::from_secs(10), |cs| {
        let grew = |c: &RoomClient, before: &std::collections::HashMap<_, usize>| {
            c.received
                .iter()
                .any(|(m, n)| *n >= before.get(m).copied().unwrap_or(0) + FRAMES)
        };
        grew(cs[0], &a_before) && grew(cs[1], &b_before)
    });
    assert!(flows, "media flows both ways after the resume\n{}", server.log_tail(40));
    assert!(b.of_type("participant_left").is_empty(), "bob never saw alice leave");
}

#[test]
fn bad_tokens_are_refused_before_the_upgrade_with_a_reason() {
    let server = SfuServer::start();
    let http = server.http_addr();
    let (status, body) = room_client::open(http, "not-a-jwt").expect_err("refused");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"unauthorized\""), "{body}");
    let forged = format!("{}x", server.token("alice", "r"));
    let (status, body) = room_client::open(http, &forged).expect_err("refused");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature"), "{body}");
}
