//! Rooms in virtual time: str0m clients and the SFU core in one process, datagrams passed by hand, time
//! advanced by a millisecond per step (the world is in `common`).

mod common;

use common::{audio_offer, req, World, SFU};
use hualu_sfu::{JoinError, JoinRequest, Limits, Signal};
use std::net::SocketAddr;
use std::time::Duration;
use str0m::media::MediaKind;
use str0m::net::Protocol;

#[test]
fn three_participants_each_hear_the_other_two() {
    let mut w = World::new();
    for n in 2..=4 {
        w.join(n, "standup");
    }
    w.run(Duration::from_secs(4));
    assert_eq!(w.sfu.peer_count(), 3);
    for c in &w.clients {
        assert!(c.connected, "client {} connected", c.addr);
        let streams: Vec<usize> = c.received.values().copied().filter(|&n| n >= 50).collect();
        assert_eq!(
            streams.len(),
            2,
            "client {} receives two audio streams of at least 50 frames: {:?}",
            c.addr,
            c.received
        );
    }
}

#[test]
fn rooms_are_apart() {
    let mut w = World::new();
    w.join(2, "a");
    w.join(3, "a");
    w.join(4, "b");
    w.run(Duration::from_secs(3));
    let heard = |i: usize| w.clients[i].received.values().filter(|&&n| n >= 20).count();
    assert_eq!(
        (heard(0), heard(1), heard(2)),
        (1, 1, 0),
        "{:?}",
        w.clients.iter().map(|c| &c.received).collect::<Vec<_>>()
    );
}

#[test]
fn a_leaver_is_stopped_for_the_others_who_keep_hearing_each_other() {
    let mut w = World::new();
    for n in 2..=4 {
        w.join(n, "standup");
    }
    w.run(Duration::from_secs(3));
    let leaver = w.clients[0].id;
    w.sfu.leave(leaver, w.now);
    w.run(Duration::from_millis(500));
    let new_frames = w.frames_over(Duration::from_secs(2));
    assert_eq!(w.sfu.peer_count(), 2);
    for (i, (c, new_frames)) in w.clients.iter().zip(&new_frames).enumerate().skip(1) {
        let grew: Vec<usize> = new_frames.values().copied().filter(|&d| d > 0).collect();
        assert_eq!(grew.len(), 1, "client {i} hears only the one who stayed: {grew:?}");
        assert!(grew[0] >= 80, "about 100 frames in 2 s, got {}", grew[0]);
        let leavers = c
            .received
            .keys()
            .copied()
            .find(|m| new_frames[m] == 0)
            .expect("the leaver's mid");
        let stopped = c.rtc.media(leavers).map(|m| m.stopped());
        assert_eq!(stopped, Some(true), "its m-line is stopped");
    }
}

#[test]
fn video_flows_and_keyframe_requests_reach_the_publisher_at_most_once_a_second() {
    let mut w = World::new();
    w.join_with(2, "standup", true);
    w.join(3, "standup");
    w.run(Duration::from_secs(3));
    let video_frames: usize = {
        let c = &w.clients[1];
        c.received
            .iter()
            .filter(|(m, _)| c.rtc.media(**m).is_some_and(|m| m.kind() == MediaKind::Video))
            .map(|(_, n)| *n)
            .sum()
    };
    assert!(
        video_frames >= 100,
        "the subscriber decodes nothing but gets the frames: {video_frames}"
    );
    let before = w.clients[0].keyframe_requests;
    for _ in 0..5 {
        w.ask_keyframe(1);
        w.run(Duration::from_millis(20));
    }
    w.run(Duration::from_millis(200));
    assert_eq!(
        w.clients[0].keyframe_requests - before,
        1,
        "five requests in 0.3 s reach the publisher once"
    );
    w.run(Duration::from_millis(1000));
    w.ask_keyframe(1);
    w.run(Duration::from_millis(200));
    assert_eq!(
        w.clients[0].keyframe_requests - before,
        2,
        "a second one a second later"
    );
}

#[test]
fn full_rooms_and_a_full_node_refuse_with_a_clear_error() {
    let limits = Limits {
        participants_per_room: 2,
        rooms: 1,
        ..Limits::default()
    };
    let mut w = World::with_limits(limits);
    w.join(2, "a");
    w.join(3, "a");
    let err = w
        .sfu
        .join(req("a"), audio_offer(w.now, 4), w.now)
        .expect_err("a third is refused");
    assert!(matches!(err, JoinError::RoomFull { max: 2, .. }), "{err}");
    assert_eq!(err.to_string(), "room \"a\" is full (2 participants)");
    let err = w
        .sfu
        .join(req("b"), audio_offer(w.now, 5), w.now)
        .expect_err("a second room is refused");
    assert!(matches!(err, JoinError::TooManyRooms(1)), "{err}");
    assert_eq!(w.sfu.peer_count(), 2);
}

#[test]
fn a_participant_that_never_connects_or_goes_silent_is_removed() {
    let limits = Limits {
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let mut w = World::with_limits(limits);
    w.join(2, "standup");
    w.join(3, "standup");
    let ghost = w
        .sfu
        .join(req("standup"), audio_offer(w.now, 9), w.now)
        .expect("joins")
        .id;
    w.run(Duration::from_secs(2));
    let quiet = w.clients[0].id;
    w.silent.push(0);
    w.run(Duration::from_secs(4));
    assert_eq!(
        w.sfu.peer_count(),
        2,
        "the ghost is gone after 5 s, the quiet one not yet"
    );
    assert!(w
        .ended
        .iter()
        .any(|(id, s)| *id == ghost && matches!(s, Signal::Ended("never connected"))));
    w.run(Duration::from_secs(2));
    assert_eq!(w.sfu.peer_count(), 1, "5 s without a datagram from the quiet one");
    assert!(w
        .ended
        .iter()
        .any(|(id, s)| *id == quiet && matches!(s, Signal::Ended("idle"))));
    assert!(w.sfu.poll_timeout().is_some(), "the last one still has timers");
}

#[test]
fn garbage_datagrams_from_anywhere_change_nothing() {
    let mut w = World::new();
    w.join(2, "standup");
    w.join(3, "standup");
    w.run(Duration::from_secs(2));
    let sfu: SocketAddr = SFU.parse().expect("addr");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for k in 0..20_000u32 {
        let len = (next() % 300) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Some look like STUN, DTLS or RTP by their first byte, so they reach deeper.
        if let Some(b) = data.first_mut() {
            *b = [0x00, 0x01, 0x16, 0x80, 0x90, *b][k as usize % 6];
        }
        let from = if k % 3 == 0 {
            w.clients[k as usize % 2].addr
        } else {
            format!("192.0.2.{}:{}", k % 250, 1000 + k % 5000)
                .parse()
                .expect("addr")
        };
        w.sfu.handle_receive(w.now, Protocol::Udp, from, sfu, &data);
    }
    let new_frames = w.frames_over(Duration::from_secs(2));
    assert_eq!(w.sfu.peer_count(), 2);
    for (c, new_frames) in w.clients.iter().zip(&new_frames) {
        let grew: usize = new_frames.values().sum();
        assert!(grew >= 80, "{} still hears the other: {grew} new frames", c.addr);
    }
}

#[test]
fn call_control_hears_when_media_flows_and_when_it_dies() {
    let limits = Limits {
        idle_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let mut w = World::with_limits(limits);
    let as_ = |identity| JoinRequest {
        identity,
        ..req("c0000000000000001")
    };
    w.join_as(2, as_("alice"), false);
    let bob = w.join_as(3, as_("bob"), false);
    w.run(Duration::from_secs(1));
    let mut reports = Vec::new();
    while let Some(r) = w.sfu.poll_media_report() {
        reports.push((r.room, r.identity, r.flowing));
    }
    let room = "c0000000000000001".to_string();
    assert!(reports.contains(&(room.clone(), "alice".into(), true)), "{reports:?}");
    assert!(reports.contains(&(room.clone(), "bob".into(), true)), "{reports:?}");
    assert!(!reports.iter().any(|r| !r.2), "nothing died yet: {reports:?}");
    w.silent.push(bob);
    w.run(Duration::from_secs(6));
    let mut died = Vec::new();
    while let Some(r) = w.sfu.poll_media_report() {
        died.push((r.room, r.identity, r.flowing));
    }
    assert_eq!(
        died,
        [(room, "bob".to_string(), false)],
        "bob went silent past the idle timeout"
    );
}
