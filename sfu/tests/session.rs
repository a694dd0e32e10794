//! A participant's session in virtual time: what the roster tells the others, what the grants allow, leaving
//! and joining again, a network change with an ICE restart, the client's own renegotiation (and its glare
//! with the server's), and NACK recovery on a lossy network.

mod common;

use common::{Client, Loss, World};
use hualu_sfu::{JoinRequest, Participant, PeerId, Signal, Track};
use std::net::SocketAddr;
use std::time::Duration;
use str0m::media::{Direction, MediaKind, Mid};

/// `identity` joins `room` with the given grants.
fn who<'a>(room: &'a str, identity: &'a str, publish: bool, subscribe: bool) -> JoinRequest<'a> {
    JoinRequest {
        room,
        identity,
        publish,
        subscribe,
        server_offers: true,
        links: &[],
    }
}

/// The track id the SFU gives client `c`'s m-line `mid`.
fn track_id(c: &Client, mid: Mid) -> String {
    format!("{}-{mid}", c.id)
}

/// The tracks client `i` learned of from `TrackPublished` signals, as (publisher, track).
fn published_to(w: &World, i: usize) -> Vec<(PeerId, Track)> {
    w.signals_to(w.clients[i].id)
        .filter_map(|s| match s {
            Signal::TrackPublished { participant, track } => Some((*participant, track.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_others_are_told_who_joins_publishes_mutes_and_leaves() {
    let mut w = World::new();
    let a = w.join_as(2, who("standup", "alice", true, true), false);
    // Her track is published once her session is up (str0m tells of m-lines when SRTP is ready).
    w.run(Duration::from_secs(1));
    assert!(w.clients[a].connected);
    let b = w.join_as(3, who("standup", "bob", true, true), false);
    w.pump();
    let (a_id, b_id) = (w.clients[a].id, w.clients[b].id);
    let a_track = track_id(&w.clients[a], w.clients[a].send_mid);
    let b_track = track_id(&w.clients[b], w.clients[b].send_mid);

    assert!(w.clients[a].roster.is_empty(), "alice was first");
    let alice = Participant {
        id: a_id,
        identity: "alice".into(),
        tracks: vec![Track {
            id: a_track.clone(),
            kind: MediaKind::Audio,
            muted: false,
        }],
    };
    assert_eq!(
        w.clients[b].roster,
        vec![alice],
        "bob's join lists alice with her audio"
    );

    // Alice hears of bob, then, once his session is up, of his audio track; bob hears nothing of himself.
    let to_alice: Vec<&Signal> = w.signals_to(a_id).collect();
    assert_eq!(to_alice.len(), 1, "{to_alice:?}");
    w.run(Duration::from_secs(1));
    assert!(w.clients[b].connected);
    let to_alice: Vec<&Signal> = w.signals_to(a_id).collect();
    assert_eq!(to_alice.len(), 2, "{to_alice:?}");
    match to_alice[0] {
        Signal::ParticipantJoined(p) => {
            assert_eq!((p.id, p.identity.as_str()), (b_id, "bob"));
            assert!(p.tracks.is_empty(), "no tracks yet when joined is told: {p:?}");
        }
        other => panic!("expected bob's arrival first, got {other:?}"),
    }
    match to_alice[1] {
        Signal::TrackPublished { participant, track } => {
            assert_eq!(*participant, b_id);
            assert_eq!(
                track,
                &Track {
                    id: b_track.clone(),
                    kind: MediaKind::Audio,
                    muted: false
                }
            );
        }
        other => panic!("expected bob's track, got {other:?}"),
    }
    assert_eq!(
        w.signals_to(b_id).count(),
        0,
        "bob is told nothing of alice, whom he had in his roster"
    );

    // The track alice receives carries bob's ids in its msid.
    w.run(Duration::from_secs(1));
    let expected = vec![(b_id.to_string(), b_track.clone(), MediaKind::Audio)];
    assert_eq!(w.clients[a].receiving(), expected, "alice receives bob's track");
    assert!(w.clients[a].frames_from(b_id) >= 50, "and hears him");

    // Muting is told to the others, once per change.
    assert!(w.sfu.set_muted(b_id, &b_track, true));
    assert!(
        w.sfu.set_muted(b_id, &b_track, true),
        "muting a muted track again is fine"
    );
    assert!(!w.sfu.set_muted(b_id, &a_track, true), "bob cannot mute alice's track");
    assert!(!w.sfu.set_muted(b_id, "no-such-track", true));
    w.pump();
    let mutes: Vec<(PeerId, &Signal)> = w
        .signals
        .iter()
        .filter(|(_, s)| matches!(s, Signal::Muted { .. }))
        .map(|(to, s)| (*to, s))
        .collect();
    assert_eq!(mutes.len(), 1, "one change, told to alice only: {mutes:?}");
    assert_eq!(mutes[0].0, a_id);
    assert!(
        matches!(mutes[0].1, Signal::Muted { participant, track, muted: true } if *participant == b_id && *track == b_track)
    );

    // A newcomer's roster shows bob's track muted.
    let c = w.join_as(4, who("standup", "carol", true, true), false);
    w.pump();
    let bob = w.clients[c]
        .roster
        .iter()
        .find(|p| p.id == b_id)
        .expect("bob in carol's roster");
    assert_eq!((bob.identity.as_str(), bob.tracks.len()), ("bob", 1));
    assert!(bob.tracks[0].muted, "{bob:?}");

    // Unmuting is told to both others.
    assert!(w.sfu.set_muted(b_id, &b_track, false));
    w.pump();
    let c_id = w.clients[c].id;
    let unmuted: Vec<PeerId> = w
        .signals
        .iter()
        .filter(|(_, s)| matches!(s, Signal::Muted { participant, muted: false, .. } if *participant == b_id))
        .map(|(to, _)| *to)
        .collect();
    assert_eq!(unmuted.len(), 2, "{unmuted:?}");
    assert!(unmuted.contains(&a_id) && unmuted.contains(&c_id), "{unmuted:?}");

    // Bob leaves: both others are told, and nothing more is said to bob.
    let said_to_bob = w.signals_to(b_id).count();
    w.leave(b);
    let left: Vec<PeerId> = w
        .signals
        .iter()
        .filter(|(_, s)| matches!(s, Signal::ParticipantLeft(p) if *p == b_id))
        .map(|(to, _)| *to)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&a_id) && left.contains(&c_id), "{left:?}");
    assert_eq!(w.signals_to(b_id).count(), said_to_bob);
}

#[test]
fn grants_decide_what_is_received_and_what_is_forwarded() {
    let mut w = World::new();
    let full = w.join_as(2, who("r", "full", true, true), false);
    let listener = w.join_as(3, who("r", "listener", false, true), false);
    let watcher = w.join_as(4, who("r", "no-subscribe", true, false), false);
    w.run(Duration::from_secs(3));
    let (full_id, listener_id, watcher_id) = (w.clients[full].id, w.clients[listener].id, w.clients[watcher].id);
    assert!(w.clients.iter().all(|c| c.connected), "all connected");

    // Subscribe refused: no offers, no m-lines, no frames, though it publishes.
    let c = &w.clients[watcher];
    assert_eq!(c.offers_answered, 0, "no offers to one who may not subscribe");
    assert!(c.held.is_empty());
    assert!(c.receiving().is_empty(), "{:?}", c.receiving());
    assert!(c.received.is_empty(), "no frames: {:?}", c.received);
    assert!(
        w.clients[full].frames_from(watcher_id) >= 100,
        "its audio reaches the others"
    );

    // Publish refused: its audio goes nowhere, and nobody hears of a track.
    for i in [full, watcher] {
        assert_eq!(
            w.clients[i].frames_from(listener_id),
            0,
            "client {i} gets no frames from the listener"
        );
        assert!(
            w.clients[i]
                .receiving()
                .iter()
                .all(|(stream, _, _)| *stream != listener_id.to_string()),
            "client {i} has no m-line of the listener's"
        );
    }
    for i in [full, listener, watcher] {
        let from_listener: Vec<_> = published_to(&w, i)
            .into_iter()
            .filter(|(p, _)| *p == listener_id)
            .collect();
        assert!(from_listener.is_empty(), "client {i} was told of {from_listener:?}");
    }
    // But it hears the two who publish.
    assert!(w.clients[listener].frames_from(full_id) >= 100);
    assert!(w.clients[listener].frames_from(watcher_id) >= 100);

    // A newcomer sees the listener without tracks.
    let late = w.join_as(5, who("r", "late", true, true), false);
    let roster = &w.clients[late].roster;
    let listed = roster
        .iter()
        .find(|p| p.id == listener_id)
        .expect("the listener is in the roster");
    assert!(listed.tracks.is_empty(), "{listed:?}");
    assert_eq!(roster.len(), 3);
}

#[test]
fn one_who_leaves_and_joins_again_hears_and_is_heard() {
    let mut w = World::new();
    let a = w.join_as(2, who("r", "alice", true, true), false);
    let b = w.join_as(3, who("r", "bob", true, true), false);
    let c = w.join_as(4, who("r", "carol", true, true), false);
    w.run(Duration::from_secs(2));
    let (old_a, b_id, c_id) = (w.clients[a].id, w.clients[b].id, w.clients[c].id);
    assert!(w.clients[b].frames_from(old_a) >= 50);

    w.leave(a);
    w.run(Duration::from_millis(500));
    assert_eq!(w.sfu.peer_count(), 2);
    for i in [b, c] {
        let id = w.clients[i].id;
        assert!(w
            .signals_to(id)
            .any(|s| matches!(s, Signal::ParticipantLeft(p) if *p == old_a)));
    }

    // Same address, same room, a fresh session.
    w.rejoin(a, who("r", "alice", true, true));
    let new_a = w.clients[a].id;
    assert_ne!(new_a, old_a, "a new session is a new participant");
    let listed: Vec<PeerId> = w.clients[a].roster.iter().map(|p| p.id).collect();
    assert_eq!(listed.len(), 2, "bob and carol are listed: {listed:?}");
    assert!(listed.contains(&b_id) && listed.contains(&c_id));
    w.run(Duration::from_secs(1));
    assert!(w.clients[a].connected, "the new session connects from the old address");
    let before: Vec<(usize, PeerId, usize)> = [(a, b_id), (a, c_id), (b, new_a), (c, new_a)]
        .into_iter()
        .map(|(to, from)| (to, from, w.clients[to].frames_from(from)))
        .collect();
    w.run(Duration::from_secs(2));
    for (to, from, n) in before {
        let heard = w.clients[to].frames_from(from) - n;
        assert!(
            heard >= 80,
            "client {to} hears participant {from} again: {heard} frames in 2 s"
        );
    }
    for i in [b, c] {
        let live = w.clients[i].receiving();
        assert_eq!(
            live.len(),
            2,
            "client {i}'s m-line of the old alice was stopped: {live:?}"
        );
        assert!(live.iter().any(|(stream, _, _)| *stream == new_a.to_string()));
        assert!(live.iter().all(|(stream, _, _)| *stream != old_a.to_string()));
    }
    assert_eq!(w.sfu.peer_count(), 3);
}

#[test]
fn after_a_network_change_an_ice_restart_resumes_the_same_participant() {
    let mut w = World::new();
    let a = w.join_as(2, who("r", "alice", true, true), false);
    let b = w.join_as(3, who("r", "bob", true, true), false);
    w.run(Duration::from_secs(2));
    let (a_id, b_id) = (w.clients[a].id, w.clients[b].id);
    assert!(w.clients[b].frames_from(a_id) >= 50);

    // Alice's Wi-Fi goes: what she sends from the old address is lost, and nothing reaches her there.
    let new_addr: SocketAddr = "10.0.2.2:6000".parse().expect("addr");
    w.clients[a].addr = new_addr;
    let b_heard = w.frames_from_over(b, a_id, Duration::from_secs(3));
    assert!(b_heard <= 1, "nothing of alice's arrives while she is away: {b_heard}");
    assert!(w.sfu.contains(a_id), "the SFU keeps her within its idle timeout");

    // On the new network she restarts ICE with her new address.
    let a_heard_before = w.clients[a].frames_from(b_id);
    w.move_and_restart_ice(a, new_addr);
    w.run(Duration::from_millis(500));
    let b_heard = w.frames_from_over(b, a_id, Duration::from_secs(2));
    let a_heard = w.clients[a].frames_from(b_id) - a_heard_before;
    assert!(b_heard >= 80, "bob hears alice again: {b_heard} frames in 2 s");
    assert!(a_heard >= 100, "alice hears bob again: {a_heard} frames in 2.5 s");
    assert_eq!(w.clients[a].id, a_id, "the same participant");
    assert_eq!(w.sfu.peer_count(), 2);
    assert!(
        w.signals
            .iter()
            .all(|(_, s)| !matches!(s, Signal::ParticipantLeft(_) | Signal::Ended(_))),
        "nobody left"
    );
}

#[test]
fn a_newcomer_at_an_address_a_moved_participant_left_connects() {
    let mut w = World::new();
    let a = w.join_as(2, who("r", "alice", true, true), false);
    let b = w.join_as(3, who("r", "bob", true, true), false);
    w.run(Duration::from_secs(2));
    let (a_id, b_id) = (w.clients[a].id, w.clients[b].id);
    w.move_and_restart_ice(a, "10.0.2.2:6000".parse().expect("addr"));
    w.run(Duration::from_secs(1));

    // Carol's NAT hands her the public address alice had.
    let c = w.join_as(2, who("r", "carol", true, true), false);
    let c_id = w.clients[c].id;
    let connected = w.run_until(Duration::from_secs(3), |w| w.clients[c].connected);
    assert!(connected, "carol connects from alice's old address");
    w.run(Duration::from_secs(1));
    for (to, from) in [(c, a_id), (c, b_id), (a, c_id), (b, c_id), (a, b_id), (b, a_id)] {
        let n = w.frames_from_over(to, from, Duration::from_secs(1));
        assert!(n >= 40, "client {to} hears participant {from}: {n} frames in 1 s");
    }
}

#[test]
fn a_nat_rebinding_without_an_ice_restart_is_followed() {
    let mut w = World::new();
    let a = w.join_as(2, who("r", "alice", true, true), false);
    let b = w.join_as(3, who("r", "bob", true, true), false);
    w.run(Duration::from_secs(2));
    let (a_id, b_id) = (w.clients[a].id, w.clients[b].id);

    // Alice's NAT maps her to a new public port; she does not know, and does not restart ICE. The SFU keeps
    // her, and her next consent check (within a few seconds) shows it where she is now.
    w.clients[a].nat = Some("198.51.100.7:41000".parse().expect("addr"));
    let t0 = w.now;
    let b0 = w.clients[b].frames_from(a_id);
    let up = w.run_until(Duration::from_secs(3), |w| w.clients[b].frames_from(a_id) >= b0 + 5);
    assert!(up, "bob hears alice from her new address within 3 s");
    assert!(w.sfu.contains(a_id));
    // The way back follows only when str0m's ICE-lite agent drops the old pair, which no check has renewed
    // for 15 s: until then the SFU sends to her old address. (An ICE restart is the quick way.)
    let a0 = w.clients[a].frames_from(b_id);
    let down = w.run_until(Duration::from_secs(17), |w| w.clients[a].frames_from(b_id) >= a0 + 5);
    assert!(down, "alice hears bob again within 17 s, after {:?}", w.now - t0);
    let b_heard = w.frames_from_over(b, a_id, Duration::from_secs(2));
    let a_heard = w.frames_from_over(a, b_id, Duration::from_secs(2));
    assert!(
        b_heard >= 80 && a_heard >= 80,
        "both ways: {b_heard} and {a_heard} frames in 2 s"
    );
    assert_eq!(w.clients[a].id, a_id);
    assert_eq!(w.sfu.peer_count(), 2);
}

#[test]
fn a_track_the_client_adds_by_its_own_offer_reaches_the_others() {
    let mut w = World::new();
    let a = w.join_as(2, who("r", "alice", true, true), false);
    let b = w.join_as(3, who("r", "bob", true, true), false);
    w.run(Duration::from_secs(2));
    let a_id = w.clients[a].id;
    let b_offers = w.clients[b].offers_answered;
    assert_eq!(w.clients[b].frames_of(MediaKind::Video), 0);

    let video = w.add_video(a);
    let published = published_to(&w, b);
    let expected = Track {
        id: track_id(&w.clients[a], video),
        kind: MediaKind::Video,
        muted: false,
    };
    assert!(
        published.contains(&(a_id, expected.clone())),
        "bob is told of alice's video: {published:?}"
    );
    assert_eq!(w.clients[b].offers_answered, b_offers + 1, "and gets an offer with it");
    assert!(w.clients[b]
        .receiving()
        .contains(&(a_id.to_string(), expected.id.clone(), MediaKind::Video)));
    w.run(Duration::from_secs(2));
    let frames = w.clients[b].frames_of(MediaKind::Video);
    assert!(frames >= 80, "bob receives alice's VP8: {frames} frames in 2 s");
    assert_eq!(w.sfu.peer_count(), 2);
}

#[test]
fn a_track_the_client_stops_by_its_own_offer_is_stopped_for_the_others() {
    let mut w = World::new();
    let a = w.join_as(2, who("r", "alice", true, true), true);
    let b = w.join_as(3, who("r", "bob", true, true), false);
    w.run(Duration::from_secs(2));
    let a_id = w.clients[a].id;
    let video = w.clients[a].video_mid.expect("alice sends video");
    let video_track = track_id(&w.clients[a], video);
    assert!(w.clients[b].frames_of(MediaKind::Video) >= 50);
    let b_offers = w.clients[b].offers_answered;

    // Alice's camera goes: her offer stops the m-line.
    w.client_offer(a, |api| api.stop_media(video));
    w.clients[a].video_mid = None;
    let unpublished: Vec<&Signal> = w
        .signals_to(w.clients[b].id)
        .filter(|s| matches!(s, Signal::TrackUnpublished { .. }))
        .collect();
    assert_eq!(unpublished.len(), 1, "{unpublished:?}");
    assert!(
        matches!(unpublished[0], Signal::TrackUnpublished { participant, track } if *participant == a_id && *track == video_track)
    );
    assert_eq!(
        w.clients[b].offers_answered,
        b_offers + 1,
        "bob is offered the m-line stopped"
    );
    let live = w.clients[b].receiving();
    assert_eq!(live.len(), 1, "only alice's audio is left: {live:?}");
    assert_eq!(live[0].2, MediaKind::Audio);
    let before = (
        w.clients[b].frames_of(MediaKind::Video),
        w.clients[b].frames_of(MediaKind::Audio),
    );
    w.run(Duration::from_secs(1));
    assert_eq!(w.clients[b].frames_of(MediaKind::Video), before.0, "no more video");
    assert!(
        w.clients[b].frames_of(MediaKind::Audio) >= before.1 + 40,
        "her audio goes on"
    );
}

#[test]
fn a_client_offer_crossing_the_servers_wins_and_the_server_offers_again() {
    let mut w = World::new();
    let x = w.join_as(2, who("r", "x", true, true), false);
    w.clients[x].hold_offers = true;
    let y = w.join_as(3, who("r", "y", true, true), true);
    w.run(Duration::from_millis(500));
    let (x_id, y_id) = (w.clients[x].id, w.clients[y].id);
    assert_eq!(
        w.clients[x].held.len(),
        1,
        "the server offered y's tracks to x, who has not answered"
    );
    assert_eq!(w.clients[x].offers_answered, 0);
    assert_eq!(w.clients[x].frames_from(y_id), 0);
    assert!(w.clients[y].frames_from(x_id) > 0, "y hears x meanwhile");

    // X sends its own offer (a camera) and ignores the server's, as a client with its own offer out does.
    w.clients[x].hold_offers = false;
    let mut video = None;
    let ignored = w.client_offer(x, |api| {
        video = Some(api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
    });
    w.clients[x].video_mid = video;
    assert_eq!(ignored, 1);
    assert_eq!(
        w.clients[x].offers_answered, 1,
        "the server offered y's tracks again after answering"
    );
    w.run(Duration::from_secs(2));
    let mut live = w.clients[x].receiving();
    live.sort_by_key(|(_, _, kind)| *kind == MediaKind::Video);
    let y_tracks = |mid: Mid, kind| (y_id.to_string(), format!("{y_id}-{mid}"), kind);
    let y_video = w.clients[y].video_mid.expect("y sends video");
    let expected = vec![
        y_tracks(w.clients[y].send_mid, MediaKind::Audio),
        y_tracks(y_video, MediaKind::Video),
    ];
    assert_eq!(live, expected, "x receives each of y's tracks, once");
    let x_hears = w.clients[x].frames_from(y_id);
    let x_sees = w.clients[x].frames_of(MediaKind::Video);
    assert!(
        x_hears >= 160 && x_sees >= 80,
        "x gets y's audio and video: {x_hears} frames, {x_sees} video"
    );
    let y_sees = w.clients[y].frames_of(MediaKind::Video);
    assert!(y_sees >= 80, "y gets x's new video: {y_sees} frames");
}

#[test]
fn an_offer_lost_with_the_signaling_socket_is_made_again_on_resume() {
    let mut w = World::new();
    let x = w.join_as(2, who("r", "x", true, true), false);
    w.clients[x].hold_offers = true;
    let y = w.join_as(3, who("r", "y", true, true), false);
    w.run(Duration::from_millis(500));
    let (x_id, y_id) = (w.clients[x].id, w.clients[y].id);
    assert_eq!(w.clients[x].held.len(), 1, "an offer of y's audio went out to x");

    // X's socket dropped with the offer in it: X never saw it, and on its new socket the server offers again.
    w.clients[x].held.clear();
    w.clients[x].hold_offers = false;
    w.sfu.reoffer(x_id, w.now);
    w.pump();
    assert_eq!(w.clients[x].offers_answered, 1, "x answered the offer made again");
    w.sfu.reoffer(x_id, w.now);
    w.pump();
    assert_eq!(
        w.clients[x].offers_answered, 1,
        "with nothing outstanding, no offer is made"
    );
    let heard = w.frames_from_over(x, y_id, Duration::from_secs(2));
    assert!(heard >= 80, "x hears y: {heard} frames in 2 s");
    assert_eq!(w.clients[x].receiving().len(), 1);
}

/// A publisher of 3-packet VP8 frames and a subscriber, on a network that loses 5% of RTP and RTCP each way;
/// returns how many frames the publisher sent over 4 s of video, how many of those the subscriber got, and
/// the world.
fn lossy_video(drop_rtx: bool) -> (usize, usize, World) {
    let mut w = World::new();
    let mut loss = Loss::new(50, 0x5EED_1234_ABCD_0001);
    loss.drop_rtx = drop_rtx;
    w.loss = Some(loss);
    w.stats_interval = Some(Duration::from_millis(500));
    let p = w.join_as(2, who("r", "publisher", true, true), true);
    w.clients[p].video_bytes = 3000;
    let s = w.join_as(3, who("r", "subscriber", true, true), false);
    w.run(Duration::from_secs(1));
    w.learn_rtx_pts();
    assert!(w.clients[s].frames_of(MediaKind::Video) > 0, "video flows");

    let first = w.clients[p].video_sent;
    w.run(Duration::from_secs(4));
    let end = w.clients[p].video_sent;
    // The camera stops; what is still being repaired has a second to arrive.
    w.clients[p].video_mid = None;
    w.run(Duration::from_secs(1));
    let seen = &w.clients[s].video_seen;
    let received = (first..end).filter(|n| seen.contains(&(*n as u32))).count();
    (end - first, received, w)
}

#[test]
fn nack_and_rtx_recover_nearly_every_video_frame_at_5_percent_loss() {
    let (sent, received, w) = lossy_video(false);
    let loss = w.loss.as_ref().expect("loss");
    assert!(sent >= 190, "50 frames a second for 4 s: {sent}");
    assert!(loss.rtp_dropped >= 50, "the network lost packets: {}", loss.rtp_dropped);
    assert!(
        received * 100 >= sent * 99,
        "the subscriber got {received} of {sent} frames despite {} lost RTP packets",
        loss.rtp_dropped
    );
    assert!(loss.rtx_seen > 0, "recovered by retransmissions: {}", loss.rtx_seen);
    // Both legs were repaired: the SFU asked the publisher, the subscriber asked the SFU.
    let video_nacks = |c: &Client, stats: Vec<(Mid, u64)>| -> u64 {
        let video = |m: &Mid| c.rtc.media(*m).is_some_and(|m| m.kind() == MediaKind::Video);
        stats.into_iter().filter(|(m, _)| video(m)).map(|(_, n)| n).sum()
    };
    let (p, s) = (&w.clients[0], &w.clients[1]);
    let to_publisher = video_nacks(p, p.egress.values().map(|e| (e.mid, e.nacks)).collect());
    let by_subscriber = video_nacks(s, s.ingress.values().map(|i| (i.mid, i.nacks)).collect());
    assert!(to_publisher > 0, "the SFU nacked the publisher");
    assert!(by_subscriber > 0, "the subscriber nacked the SFU");
}

#[test]
fn without_retransmissions_the_same_loss_costs_many_frames() {
    let (sent, received, w) = lossy_video(true);
    let loss = w.loss.as_ref().expect("loss");
    assert!(
        loss.rtx_dropped > 0,
        "retransmissions were sent, and dropped: {}",
        loss.rtx_dropped
    );
    assert!(
        received * 100 < sent * 90,
        "with 3 packets a frame over two lossy legs, many frames miss a packet: {received} of {sent} arrive"
    );
}

/// The SFU sends transport-wide congestion control feedback (TWCC), so a publisher estimates its uplink.
#[test]
fn publishers_estimate_their_uplink_from_the_sfus_twcc_feedback() {
    let mut w = World::new();
    w.bwe = Some(str0m::bwe::Bitrate::kbps(300));
    w.join_with(2, "standup", true);
    w.join(3, "standup");
    w.run(Duration::from_secs(4));
    let estimates = &w.clients[0].estimates;
    // The first estimate is the configured start; only feedback moves it.
    let first = estimates.first().map(|b| b.as_u64());
    let last = estimates.last().map(|b| b.as_u64());
    assert!(
        estimates.len() >= 3 && last > first,
        "the estimate never moved from the start, so no TWCC feedback reached the publisher: {estimates:?}"
    );
}
