//! Rooms that span two SFU nodes, in virtual time: two cores, each with its own str0m clients, and the link
//! datagrams between the cores passed by hand.

mod common;

use common::{req, World};
use hualu_sfu::{JoinRequest, Limits, LinkStats, Sfu, Signal};
use std::net::SocketAddr;
use std::time::Duration;
use str0m::media::MediaKind;
use str0m::net::Protocol;

const KEY: [u8; 32] = [7; 32];

fn node_a() -> SocketAddr {
    "10.0.0.1:3478".parse().expect("addr")
}

fn node_b() -> SocketAddr {
    "10.0.9.1:3478".parse().expect("addr")
}

/// Two nodes, `a` (the room's home) and `b`, whose link datagrams reach each other while `linked`.
struct Pair {
    a: World,
    b: World,
    linked: bool,
    /// Link datagrams that went to an address that is not the other node.
    misrouted: usize,
    /// The longest link datagram passed: a shard sends and receives at most 2,048 bytes.
    longest: usize,
}

impl Pair {
    fn new() -> Self {
        let mut a = World::new();
        a.sfu.enable_links(KEY);
        let mut b = World::new();
        b.sfu = Sfu::new(node_b(), Limits::default()).with_id_base(1 << 40);
        b.sfu.enable_links(KEY);
        (b.now, b.start) = (a.now, a.start);
        Pair {
            a,
            b,
            linked: true,
            misrouted: 0,
            longest: 0,
        }
    }

    /// A client at 10.0.0.`n` joins `room` on node `b`, whose token names node `a` (the room's home).
    fn join_b(&mut self, n: u8, room: &str, video: bool) -> usize {
        let links = [node_a()];
        let i = self.b.join_as(
            n,
            JoinRequest {
                links: &links,
                ..req(room)
            },
            video,
        );
        self.exchange();
        i
    }

    fn step(&mut self) {
        self.a.step();
        self.b.step();
        self.exchange();
    }

    fn run(&mut self, d: Duration) {
        let end = self.a.now + d;
        while self.a.now < end {
            self.step();
        }
    }

    /// Passes link datagrams both ways until none is left.
    fn exchange(&mut self) {
        loop {
            let to_b = take(&mut self.a.sfu);
            let to_a = take(&mut self.b.sfu);
            if to_b.is_empty() && to_a.is_empty() {
                return;
            }
            if !self.linked {
                continue;
            }
            self.deliver(to_b, node_a(), node_b(), false);
            self.deliver(to_a, node_b(), node_a(), true);
        }
    }

    fn deliver(&mut self, datagrams: Vec<(SocketAddr, Vec<u8>)>, from: SocketAddr, to: SocketAddr, to_a: bool) {
        let w = if to_a { &mut self.a } else { &mut self.b };
        for (dest, d) in datagrams {
            self.longest = self.longest.max(d.len());
            if dest != to {
                self.misrouted += 1;
                continue;
            }
            w.sfu.handle_receive(w.now, Protocol::Udp, from, to, &d);
            w.pump();
        }
    }
}

fn take(sfu: &mut Sfu) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    sfu.drain_links(|to, d| out.push((to, d.to_vec())));
    out
}

/// Audio m-lines of client `c` that got at least `min` frames.
fn heard(w: &World, c: usize, min: usize) -> usize {
    let rtc = &w.clients[c].rtc;
    w.clients[c]
        .received
        .iter()
        .filter(|(m, n)| **n >= min && rtc.media(**m).is_some_and(|m| m.kind() == MediaKind::Audio))
        .count()
}

#[test]
fn everyone_hears_everyone_and_each_track_crosses_the_link_once() {
    let mut p = Pair::new();
    p.a.join(2, "r");
    p.a.join(3, "r");
    p.join_b(4, "r", false);
    p.join_b(5, "r", false);
    p.run(Duration::from_secs(3));
    for (w, name) in [(&p.a, "a"), (&p.b, "b")] {
        for c in 0..2 {
            assert!(w.clients[c].connected, "{name}{c} connected");
            assert_eq!(
                heard(w, c, 50),
                3,
                "{name}{c} hears the three others: {:?}",
                w.clients[c].received
            );
        }
        assert_eq!(w.sfu.link_partners(), 1, "{name} has one partner");
    }
    // Over two more seconds, each node sends each of its publishers' packets once to the other, not once
    // per subscriber there: two publishers a side, 50 packets a second each.
    let before = (p.a.sfu.link_stats(), p.b.sfu.link_stats());
    p.run(Duration::from_secs(2));
    let sent = |now: LinkStats, then: LinkStats| now.media_out - then.media_out;
    for (n, name) in [
        (sent(p.a.sfu.link_stats(), before.0), "a"),
        (sent(p.b.sfu.link_stats(), before.1), "b"),
    ] {
        assert!(
            (190..=210).contains(&n),
            "{name} sent {n} media datagrams in 2 s for 2 publishers"
        );
    }
    assert_eq!(p.misrouted, 0);
    assert!(p.longest <= 2048, "the longest link datagram was {} bytes", p.longest);
    assert_eq!(p.a.sfu.link_stats().refused + p.b.sfu.link_stats().refused, 0);
}

#[test]
fn the_home_node_learns_of_the_room_s_other_node_from_its_state() {
    let mut p = Pair::new();
    p.a.join(2, "r");
    p.run(Duration::from_millis(500));
    let alice = p.a.clients[0].id;
    let bob = p.join_b(4, "r", false);
    p.run(Duration::from_secs(2));
    // Alice was told of Bob, who joined elsewhere, and Bob had Alice in his roster or was told of her.
    let joined: Vec<String> =
        p.a.signals_to(alice)
            .filter_map(|s| match s {
                Signal::ParticipantJoined(who) => Some(who.identity.clone()),
                _ => None,
            })
            .collect();
    assert_eq!(joined, ["someone"], "alice hears bob joined");
    let id = p.b.clients[bob].id;
    let told = p.b.signals_to(id).any(|s| matches!(s, Signal::ParticipantJoined(_)));
    assert!(told || !p.b.clients[bob].roster.is_empty(), "bob knows of alice");
    assert_eq!(heard(&p.a, 0, 40), 1);
    assert_eq!(heard(&p.b, bob, 40), 1);
}

#[test]
fn a_subscriber_on_the_other_node_gets_simulcast_video_and_its_keyframe_requests_reach_the_publisher() {
    let mut p = Pair::new();
    let alice = p.a.join_simulcast(2, "r", &[("l", 300), ("h", 1200)]);
    let bob = p.join_b(4, "r", false);
    p.run(Duration::from_secs(4));
    let frames = p.b.clients[bob].frames_of(MediaKind::Video);
    assert!(frames > 20, "bob receives alice's video: {frames} frames");
    // Bob's PLI crosses the link as a keyframe request, and alice's client gets it.
    let asked = p.a.clients[alice].keyframe_requests;
    p.b.ask_keyframe(bob);
    p.run(Duration::from_millis(200));
    assert!(
        p.a.clients[alice].keyframe_requests > asked,
        "alice was asked for a keyframe"
    );
}

#[test]
fn leaving_and_a_silent_partner_end_the_remote_participants() {
    let mut p = Pair::new();
    p.a.join(2, "r");
    p.join_b(4, "r", false);
    p.join_b(5, "r", false);
    p.run(Duration::from_secs(2));
    let alice = p.a.clients[0].id;
    let left = |w: &World| {
        w.signals_to(alice)
            .filter(|s| matches!(s, Signal::ParticipantLeft(_)))
            .count()
    };
    p.b.leave(0);
    p.run(Duration::from_millis(500));
    assert_eq!(left(&p.a), 1, "alice hears one of them left");
    assert_eq!(heard(&p.a, 0, 0), 2, "m-lines so far");
    // The link goes down: after the partner timeout, the other leaves too.
    p.linked = false;
    p.run(Duration::from_secs(4));
    assert_eq!(left(&p.a), 2, "alice hears the other left once its node went silent");
    assert_eq!(p.a.sfu.link_partners(), 0);
}

#[test]
fn datagrams_without_the_key_or_from_strangers_are_refused() {
    let mut p = Pair::new();
    p.a.join(2, "r");
    p.run(Duration::from_millis(300));
    // A node with another key names the same room: its tag does not match.
    let mut stranger = World::new();
    stranger.sfu = Sfu::new("10.0.8.1:3478".parse().expect("addr"), Limits::default());
    stranger.sfu.enable_links([9; 32]);
    (stranger.now, stranger.start) = (p.a.now, p.a.start);
    let links = [node_a()];
    stranger.join_as(
        6,
        JoinRequest {
            links: &links,
            ..req("r")
        },
        false,
    );
    for (_, d) in take(&mut stranger.sfu) {
        let (now, from) = (p.a.now, "10.0.8.1:3478".parse().expect("addr"));
        p.a.sfu.handle_receive(now, Protocol::Udp, from, node_a(), &d);
    }
    // Garbage that starts like a link datagram.
    p.a.sfu
        .handle_receive(p.a.now, Protocol::Udp, node_b(), node_a(), &[0x68, 1, 2]);
    p.run(Duration::from_millis(300));
    assert!(p.a.sfu.link_stats().refused >= 1, "{:?}", p.a.sfu.link_stats());
    assert_eq!(p.a.sfu.link_partners(), 0);
    let alice = p.a.clients[0].id;
    assert!(!p.a.signals_to(alice).any(|s| matches!(s, Signal::ParticipantJoined(_))));
}

#[test]
fn a_big_room_s_state_crosses_in_datagrams_a_shard_can_carry() {
    let mut p = Pair::new();
    p.a.join(2, "r");
    for n in 10..22 {
        p.join_b(n, "r", true);
    }
    p.run(Duration::from_secs(3));
    let alice = p.a.clients[0].id;
    let joined =
        p.a.signals_to(alice)
            .filter(|s| matches!(s, Signal::ParticipantJoined(_)))
            .count();
    assert_eq!(joined, 12, "alice hears of the twelve on the other node");
    assert!(p.longest <= 2048, "the longest link datagram was {} bytes", p.longest);
    assert!(
        p.a.clients[0].frames_of(MediaKind::Video) > 12 * 50,
        "and gets their video"
    );
    assert_eq!(heard(&p.a, 0, 50), 12, "and hears them");
}
