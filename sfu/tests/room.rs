//! Rooms in virtual time: str0m clients and the SFU core in one process, datagrams passed by hand, time
//! advanced by a millisecond per step.

use hualu_sfu::{JoinError, JoinRequest, Limits, PeerId, Sfu, Signal};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::SdpPendingOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::Protocol;
use str0m::{Candidate, Event, Input, Output, Rtc};

const SFU: &str = "10.0.0.1:3478";

/// A participant: a browser-like str0m peer (full ICE, frame mode) publishing one audio track.
struct Client {
    addr: SocketAddr,
    rtc: Rtc,
    id: PeerId,
    send_mid: Mid,
    video_mid: Option<Mid>,
    next_timeout: Instant,
    /// Keyframe requests the SFU relayed to this publisher.
    keyframe_requests: usize,
    connected: bool,
    /// Frames received, by mid.
    received: HashMap<Mid, usize>,
}

/// A participant of `room` that publishes and subscribes.
fn req(room: &str) -> JoinRequest<'_> {
    JoinRequest {
        room,
        identity: "someone",
        publish: true,
        subscribe: true,
    }
}

struct World {
    now: Instant,
    start: Instant,
    sfu: Sfu,
    clients: Vec<Client>,
    /// Sessions the SFU ended, with the signal it sent.
    ended: Vec<(PeerId, Signal)>,
    /// Clients that stopped talking (their datagrams are dropped both ways).
    silent: Vec<usize>,
}

impl World {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        let now = Instant::now();
        World {
            now,
            start: now,
            sfu: Sfu::new(SFU.parse().expect("addr"), limits),
            clients: Vec::new(),
            ended: Vec::new(),
            silent: Vec::new(),
        }
    }

    /// A client at 10.0.0.`n` joins `room`, offering one audio track to send.
    fn join(&mut self, n: u8, room: &str) {
        self.join_with(n, room, false);
    }

    /// A client at 10.0.0.`n` joins `room`, offering audio and, if `video`, a VP8 track to send.
    fn join_with(&mut self, n: u8, room: &str, video: bool) {
        let addr: SocketAddr = format!("10.0.0.{n}:5000").parse().expect("addr");
        let mut rtc = Rtc::builder().build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let send_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video_mid = video.then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        let (offer, pending): (_, SdpPendingOffer) = api.apply().expect("an offer");
        let joined = self.sfu.join(req(room), offer, self.now).expect("joins");
        let (id, answer) = (joined.id, joined.answer);
        rtc.sdp_api().accept_answer(pending, answer).expect("answer accepted");
        self.clients.push(Client {
            addr,
            rtc,
            id,
            send_mid,
            video_mid,
            next_timeout: self.now,
            keyframe_requests: 0,
            connected: false,
            received: HashMap::new(),
        });
        let i = self.clients.len() - 1;
        self.drain_client(i);
    }

    /// Advances one millisecond: timers, datagrams both ways, signaling, and 20 ms audio frames.
    fn step(&mut self) {
        self.now += Duration::from_millis(1);
        for i in 0..self.clients.len() {
            if self.clients[i].next_timeout <= self.now {
                self.clients[i]
                    .rtc
                    .handle_input(Input::Timeout(self.now))
                    .expect("timeout");
                self.drain_client(i);
            }
        }
        self.sfu.handle_timeout(self.now);
        self.pump();
        let ms = (self.now - self.start).as_millis();
        if ms % 20 == 0 {
            for i in 0..self.clients.len() {
                self.speak(i);
            }
            self.pump();
        }
    }

    /// Moves datagrams and session descriptions until nothing is left in flight.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.sfu.poll_transmit() {
                moved = true;
                let Some(i) = self.clients.iter().position(|c| c.addr == t.destination) else {
                    continue;
                };
                let input = Input::Receive(
                    self.now,
                    str0m::net::Receive::new(t.proto, t.source, t.destination, &t.contents).expect("datagram"),
                );
                self.clients[i].rtc.handle_input(input).expect("client input");
                self.drain_client(i);
            }
            while let Some((id, signal)) = self.sfu.poll_signal() {
                moved = true;
                let Signal::Offer(offer) = signal else {
                    self.ended.push((id, signal));
                    continue;
                };
                // Offers to participants joined by hand (not World clients) go unanswered.
                let Some(i) = self.clients.iter().position(|c| c.id == id) else {
                    continue;
                };
                let answer = self.clients[i]
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .expect("client answers");
                self.drain_client(i);
                self.sfu
                    .handle_answer(id, answer, self.now)
                    .expect("sfu takes the answer");
            }
            if !moved {
                return;
            }
        }
    }

    fn drain_client(&mut self, i: usize) {
        loop {
            let c = &mut self.clients[i];
            match c.rtc.poll_output().expect("client output") {
                Output::Timeout(t) => {
                    c.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    if !self.silent.contains(&i) {
                        self.sfu
                            .handle_receive(self.now, Protocol::Udp, t.source, t.destination, &t.contents);
                    }
                }
                Output::Event(Event::Connected) => c.connected = true,
                Output::Event(Event::MediaData(d)) => *c.received.entry(d.mid).or_default() += 1,
                Output::Event(Event::KeyframeRequest(_)) => c.keyframe_requests += 1,
                Output::Event(_) => {}
            }
        }
    }

    /// Client `i` sends one 20 ms Opus frame (the bytes are not decoded anywhere).
    fn speak(&mut self, i: usize) {
        let elapsed = self.now - self.start;
        let c = &mut self.clients[i];
        if !c.connected {
            return;
        }
        let Some(writer) = c.rtc.writer(c.send_mid) else { return };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
        else {
            return;
        };
        let time = MediaTime::from(elapsed);
        writer
            .write(pt, self.start + elapsed, time, vec![i as u8; 60])
            .expect("write");
        self.drain_client(i);
        let c = &mut self.clients[i];
        let Some(writer) = c.video_mid.and_then(|m| c.rtc.writer(m)) else {
            return;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
        else {
            return;
        };
        // A VP8 frame's bytes; nothing decodes them. The first byte's low bit clear marks a keyframe.
        let frame = vec![0x10; 900];
        writer
            .write(pt, self.start + elapsed, MediaTime::from(elapsed), frame)
            .expect("write video");
        self.drain_client(i);
    }

    /// Client `i` asks for a keyframe on each video m-line it receives.
    fn ask_keyframe(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let video: Vec<Mid> = c
            .received
            .keys()
            .copied()
            .filter(|m| c.rtc.media(*m).is_some_and(|m| m.kind() == MediaKind::Video))
            .collect();
        for mid in video {
            if let Some(mut w) = c.rtc.writer(mid) {
                w.request_keyframe(None, str0m::media::KeyframeRequestKind::Pli)
                    .expect("request");
            }
        }
        self.drain_client(i);
        self.pump();
    }

    /// Runs for `d`; returns each client's new frames per mid over that time (0 for mids that went quiet).
    fn frames_over(&mut self, d: Duration) -> Vec<HashMap<Mid, usize>> {
        let before: Vec<HashMap<Mid, usize>> = self.clients.iter().map(|c| c.received.clone()).collect();
        self.run(d);
        let since = |(c, before): (&Client, &HashMap<Mid, usize>)| {
            let new = |(m, n): (&Mid, &usize)| (*m, n - before.get(m).copied().unwrap_or(0));
            c.received.iter().map(new).collect()
        };
        self.clients.iter().zip(&before).map(since).collect()
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }
}

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

/// An offer from a fresh client that publishes one audio track.
fn audio_offer(now: Instant, n: u8) -> str0m::change::SdpOffer {
    let mut rtc = Rtc::builder().build(now);
    let addr: SocketAddr = format!("10.0.1.{n}:5000").parse().expect("addr");
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.apply().expect("an offer").0
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
