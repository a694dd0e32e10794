//! Rooms in virtual time, shared by the SFU's integration tests: str0m clients and the SFU core in one process,
//! datagrams passed by hand, time advanced by a millisecond per step.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use hualu_sfu::{JoinRequest, Joined, Limits, Participant, PeerId, Sfu, Signal};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::{SdpApi, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::Protocol;
use str0m::stats::{MediaEgressStats, MediaIngressStats};
use str0m::{Candidate, Event, Input, Output, Rtc};

pub const SFU: &str = "10.0.0.1:3478";

/// The address of client `n`: 10.0.0.`n`, port 5000.
pub fn addr(n: u8) -> SocketAddr {
    format!("10.0.0.{n}:5000").parse().expect("addr")
}

/// A participant: a browser-like str0m peer (full ICE, frame mode) publishing one audio track.
pub struct Client {
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub id: PeerId,
    pub send_mid: Mid,
    pub video_mid: Option<Mid>,
    pub next_timeout: Instant,
    /// Keyframe requests the SFU relayed to this publisher.
    pub keyframe_requests: usize,
    pub connected: bool,
    /// Frames received, by mid.
    pub received: HashMap<Mid, usize>,
    /// M-lines the other side added (str0m lists no media, so they are noted from its events).
    pub added: Vec<Mid>,
    /// The others in the room at its join, as the SFU listed them.
    pub roster: Vec<Participant>,
    /// Server offers this client answered.
    pub offers_answered: usize,
    /// Server offers are kept in `held`, unanswered, while this is set.
    pub hold_offers: bool,
    /// Server offers held unanswered.
    pub held: Vec<SdpOffer>,
    /// Bytes of each VP8 frame it sends (the MTU is about 1150, so larger frames take several packets).
    pub video_bytes: usize,
    /// Video frames it sent; each carries its number, counting from 0, in its bytes 1..5.
    pub video_sent: usize,
    /// The numbers of the video frames it received.
    pub video_seen: HashSet<u32>,
    /// The latest stats of what it receives and sends, by mid, when the world collects stats.
    pub ingress: HashMap<Mid, MediaIngressStats>,
    pub egress: HashMap<Mid, MediaEgressStats>,
    /// Left the room: the world no longer drives it.
    pub gone: bool,
    /// The public address a NAT in front of it maps `addr` to, if any: the SFU sees its datagrams come from
    /// there, and sends there.
    pub nat: Option<SocketAddr>,
    /// The RFC 6464 audio level its audio packets carry, in -dBov (0 loudest, -127 silence); none if unset.
    pub level: Option<i8>,
    /// Its uplink estimates from TWCC feedback, when the world enables estimation.
    pub estimates: Vec<str0m::bwe::Bitrate>,
    /// Simulcast: the rids of its video layers, lowest first, and each layer's frame size in bytes. The
    /// lowest layer sends every other frame.
    pub layers: Vec<(Rid, usize)>,
    /// Layers whose next frame is a keyframe (a simulcast publisher sends keyframes only when asked).
    pub keyframe_due: HashSet<Option<Rid>>,
    /// Keyframe requests the SFU relayed, by rid.
    pub keyframe_rids: Vec<Option<Rid>>,
    /// Video frames received, in order: (the sender's layer index, str0m's `contiguous` flag).
    pub video_frames: Vec<(u8, bool)>,
    /// A bottleneck on the SFU's datagrams to this client, if set.
    pub downlink: Option<Bottleneck>,
}

/// A link of limited rate in front of a client: datagrams queue, and those that would wait longer than
/// `max_delay` are dropped, as at a router with a bounded buffer.
pub struct Bottleneck {
    pub bits_per_second: u64,
    pub max_delay: Duration,
    busy_until: Instant,
    queue: VecDeque<(Instant, str0m::net::Transmit)>,
    pub dropped: usize,
}

impl Bottleneck {
    pub fn new(bits_per_second: u64, max_delay: Duration, now: Instant) -> Self {
        Self {
            bits_per_second,
            max_delay,
            busy_until: now,
            queue: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Queues `t`, or drops it if the queue is too long.
    fn push(&mut self, t: str0m::net::Transmit, now: Instant) {
        let start = self.busy_until.max(now);
        let wire = Duration::from_secs_f64((t.contents.len() as f64 + 28.0) * 8.0 / self.bits_per_second as f64);
        if start + wire - now > self.max_delay {
            self.dropped += 1;
            return;
        }
        self.busy_until = start + wire;
        self.queue.push_back((start + wire, t));
    }

    /// The next datagram through by `now`.
    fn pop(&mut self, now: Instant) -> Option<str0m::net::Transmit> {
        match self.queue.front() {
            Some((at, _)) if *at <= now => self.queue.pop_front().map(|(_, t)| t),
            _ => None,
        }
    }
}

impl Client {
    /// Where the SFU sees this client.
    pub fn public(&self) -> SocketAddr {
        self.nat.unwrap_or(self.addr)
    }

    /// Frames received on m-lines whose stream is participant `source`'s (`a=msid:<participant> <track>`).
    pub fn frames_from(&self, source: PeerId) -> usize {
        let source = source.to_string();
        self.received
            .iter()
            .filter(|(m, _)| self.rtc.media(**m).is_some_and(|m| m.stream_id() == source))
            .map(|(_, n)| *n)
            .sum()
    }

    /// Frames received of `kind`.
    pub fn frames_of(&self, kind: MediaKind) -> usize {
        self.received
            .iter()
            .filter(|(m, _)| self.rtc.media(**m).is_some_and(|m| m.kind() == kind))
            .map(|(_, n)| *n)
            .sum()
    }

    /// The m-lines this client receives (not stopped), as (stream id, track id, kind).
    pub fn receiving(&self) -> Vec<(String, String, MediaKind)> {
        self.added
            .iter()
            .filter_map(|m| self.rtc.media(*m))
            .filter(|m| !m.stopped() && m.direction() == Direction::RecvOnly)
            .map(|m| (m.stream_id().to_string(), m.track_id().to_string(), m.kind()))
            .collect()
    }
}

/// A participant of `room` that publishes and subscribes.
pub fn req(room: &str) -> JoinRequest<'_> {
    JoinRequest {
        room,
        identity: "someone",
        publish: true,
        subscribe: true,
        server_offers: true,
        links: &[],
    }
}

/// An offer from a fresh client that publishes one audio track.
pub fn audio_offer(now: Instant, n: u8) -> SdpOffer {
    let mut rtc = Rtc::builder().build(now);
    let addr: SocketAddr = format!("10.0.1.{n}:5000").parse().expect("addr");
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.apply().expect("an offer").0
}

/// A user-space lossy network: drops a share of the SRTP and SRTCP datagrams (never STUN or DTLS, so set-up
/// is not at the mercy of the dice), with a seeded generator so every run drops the same ones.
pub struct Loss {
    /// Per mille of RTP and RTCP datagrams dropped, each way.
    pub per_mille: u64,
    state: u64,
    /// Also drop every retransmission (an RTP packet whose payload type is an RTX one).
    pub drop_rtx: bool,
    /// Payload types of retransmissions, as the clients negotiated them.
    pub rtx_pts: HashSet<u8>,
    /// RTP datagrams dropped by the dice.
    pub rtp_dropped: usize,
    /// RTCP datagrams dropped by the dice.
    pub rtcp_dropped: usize,
    /// Retransmissions seen, and of those dropped.
    pub rtx_seen: usize,
    pub rtx_dropped: usize,
}

impl Loss {
    pub fn new(per_mille: u64, seed: u64) -> Self {
        Loss {
            per_mille,
            state: seed | 1,
            drop_rtx: false,
            rtx_pts: HashSet::new(),
            rtp_dropped: 0,
            rtcp_dropped: 0,
            rtx_seen: 0,
            rtx_dropped: 0,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// Whether the network loses this datagram.
    fn drops(&mut self, data: &[u8]) -> bool {
        // RFC 7983: a first byte of 128..=191 is RTP or RTCP; RFC 5761: RTCP's second byte is 192..=223.
        let (Some(&first), Some(&second)) = (data.first(), data.get(1)) else {
            return false;
        };
        if !(128..=191).contains(&first) {
            return false;
        }
        let rtcp = (192..=223).contains(&second);
        // SRTP leaves the header in the clear, so the payload type is readable.
        if !rtcp && self.rtx_pts.contains(&(second & 0x7f)) {
            self.rtx_seen += 1;
            if self.drop_rtx {
                self.rtx_dropped += 1;
                return true;
            }
        }
        if self.next() % 1000 >= self.per_mille {
            return false;
        }
        match rtcp {
            true => self.rtcp_dropped += 1,
            false => self.rtp_dropped += 1,
        }
        true
    }
}

pub struct World {
    pub now: Instant,
    pub start: Instant,
    pub sfu: Sfu,
    pub clients: Vec<Client>,
    /// `Signal::Ended` the SFU sent, by participant.
    pub ended: Vec<(PeerId, Signal)>,
    /// Every signal but offers the SFU sent, in order, by participant.
    pub signals: Vec<(PeerId, Signal)>,
    /// Clients that stopped talking (their datagrams are dropped both ways).
    pub silent: Vec<usize>,
    /// A lossy network between the clients and the SFU, if set.
    pub loss: Option<Loss>,
    /// Clients made from now on emit media stats this often.
    pub stats_interval: Option<Duration>,
    /// Clients joined from now on estimate their uplink from the SFU's TWCC feedback, starting here.
    pub bwe: Option<str0m::bwe::Bitrate>,
}

impl World {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        let now = Instant::now();
        World {
            now,
            start: now,
            sfu: Sfu::new(SFU.parse().expect("addr"), limits),
            clients: Vec::new(),
            ended: Vec::new(),
            signals: Vec::new(),
            silent: Vec::new(),
            loss: None,
            stats_interval: None,
            bwe: None,
        }
    }

    /// A client at 10.0.0.`n` joins `room`, offering one audio track to send.
    pub fn join(&mut self, n: u8, room: &str) {
        self.join_with(n, room, false);
    }

    /// A client at 10.0.0.`n` joins `room`, offering audio and, if `video`, a VP8 track to send.
    pub fn join_with(&mut self, n: u8, room: &str, video: bool) {
        self.join_as(n, req(room), video);
    }

    /// A client at 10.0.0.`n` joins as `req` says, offering audio and, if `video`, a VP8 track to send.
    /// Returns its index.
    pub fn join_as(&mut self, n: u8, req: JoinRequest<'_>, video: bool) -> usize {
        let client = self.new_client(addr(n), req, video);
        self.clients.push(client);
        let i = self.clients.len() - 1;
        self.drain_client(i);
        i
    }

    /// Client `i` joins again with a fresh session (a new offer) from its address, as `req` says.
    pub fn rejoin(&mut self, i: usize, req: JoinRequest<'_>) {
        let video = self.clients[i].video_mid.is_some();
        let client = self.new_client(self.clients[i].addr, req, video);
        self.clients[i] = client;
        self.drain_client(i);
    }

    fn new_client(&mut self, addr: SocketAddr, req: JoinRequest<'_>, video: bool) -> Client {
        let mut rtc = Rtc::builder()
            .set_stats_interval(self.stats_interval)
            .enable_bwe(self.bwe)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let send_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video_mid = video.then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        let (offer, pending): (_, SdpPendingOffer) = api.apply().expect("an offer");
        let Joined {
            id,
            answer,
            participants,
        } = self.sfu.join(req, offer, self.now).expect("joins");
        rtc.sdp_api().accept_answer(pending, answer).expect("answer accepted");
        let mut client = self.new_client_from(addr, rtc, id, send_mid, participants);
        client.video_mid = video_mid;
        client
    }

    fn new_client_from(
        &self,
        addr: SocketAddr,
        rtc: Rtc,
        id: PeerId,
        send_mid: Mid,
        roster: Vec<Participant>,
    ) -> Client {
        Client {
            addr,
            rtc,
            id,
            send_mid,
            video_mid: None,
            next_timeout: self.now,
            keyframe_requests: 0,
            connected: false,
            received: HashMap::new(),
            added: Vec::new(),
            roster,
            offers_answered: 0,
            hold_offers: false,
            held: Vec::new(),
            video_bytes: 900,
            video_sent: 0,
            video_seen: HashSet::new(),
            ingress: HashMap::new(),
            egress: HashMap::new(),
            gone: false,
            nat: None,
            level: None,
            estimates: Vec::new(),
            layers: Vec::new(),
            keyframe_due: HashSet::new(),
            keyframe_rids: Vec::new(),
            video_frames: Vec::new(),
            downlink: None,
        }
    }

    /// A client at 10.0.0.`n` joins `room` publishing audio and simulcast VP8 in `layers` (rid, frame
    /// bytes), lowest first. Returns its index.
    pub fn join_simulcast(&mut self, n: u8, room: &str, layers: &[(&str, usize)]) -> usize {
        let mut rtc = Rtc::builder().build(self.now);
        let addr = addr(n);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let send_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let mut simulcast = Simulcast::new();
        for (rid, _) in layers {
            simulcast.add_send_layer(SimulcastLayer::new(rid));
        }
        let video_mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(simulcast));
        let (offer, pending) = api.apply().expect("an offer");
        let joined = self.sfu.join(req(room), offer, self.now).expect("joins");
        rtc.sdp_api()
            .accept_answer(pending, joined.answer)
            .expect("answer accepted");
        let mut client = self.new_client_from(addr, rtc, joined.id, send_mid, joined.participants);
        client.video_mid = Some(video_mid);
        client.layers = layers.iter().map(|(rid, bytes)| ((*rid).into(), *bytes)).collect();
        client.keyframe_due = client.layers.iter().map(|(rid, _)| Some(*rid)).collect();
        self.clients.push(client);
        let i = self.clients.len() - 1;
        self.drain_client(i);
        i
    }

    /// Client `i` leaves: the SFU ends its session and the world stops driving it.
    pub fn leave(&mut self, i: usize) {
        let id = self.clients[i].id;
        self.clients[i].gone = true;
        self.sfu.leave(id, self.now);
        self.pump();
    }

    /// Client `i` renegotiates: `change` edits its session, its offer goes to [`Sfu::handle_offer`], and it
    /// applies the answer. Server offers it held are ignored (its own offer crossed them: glare). Returns how
    /// many it ignored.
    pub fn client_offer(&mut self, i: usize, change: impl FnOnce(&mut SdpApi<'_>)) -> usize {
        let ignored = self.offer_and_apply(i, change);
        self.drain_client(i);
        self.pump();
        ignored
    }

    fn offer_and_apply(&mut self, i: usize, change: impl FnOnce(&mut SdpApi<'_>)) -> usize {
        let c = &mut self.clients[i];
        let ignored = std::mem::take(&mut c.held).len();
        let mut api = c.rtc.sdp_api();
        change(&mut api);
        let (offer, pending) = api.apply().expect("an offer");
        let answer = self.sfu.handle_offer(c.id, offer, self.now).expect("the SFU answers");
        c.rtc.sdp_api().accept_answer(pending, answer).expect("answer accepted");
        ignored
    }

    /// Client `i` moves to `to`, a new network whose interface replaces the old one (what it still sends
    /// from the old address is lost), and restarts ICE through [`Sfu::handle_offer`] with `to` as its only
    /// candidate.
    pub fn move_and_restart_ice(&mut self, i: usize, to: SocketAddr) {
        self.clients[i].addr = to;
        self.offer_and_apply(i, |api| {
            api.ice_restart(false);
        });
        // The restart took effect with the answer and cleared the old candidates; this is the new network's.
        let c = &mut self.clients[i];
        c.rtc
            .add_local_candidate(Candidate::host(to, "udp").expect("candidate"));
        self.drain_client(i);
        self.pump();
    }

    /// Client `i` starts sending VP8 too, through [`Sfu::handle_offer`]; returns the new m-line.
    pub fn add_video(&mut self, i: usize) -> Mid {
        let mut mid = None;
        self.client_offer(i, |api| {
            mid = Some(api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        });
        let mid = mid.expect("a video mid");
        self.clients[i].video_mid = Some(mid);
        mid
    }

    /// Notes the RTX payload types the clients negotiated, so the loss emulator can tell retransmissions.
    pub fn learn_rtx_pts(&mut self) {
        let pts: Vec<u8> = self
            .clients
            .iter()
            .flat_map(|c| {
                c.rtc
                    .codec_config()
                    .params()
                    .iter()
                    .filter_map(|p| p.resend())
                    .collect::<Vec<_>>()
            })
            .map(|pt| *pt)
            .collect();
        if let Some(loss) = &mut self.loss {
            loss.rtx_pts.extend(pts);
        }
    }

    /// Advances one millisecond: timers, datagrams both ways, signaling, and 20 ms audio frames.
    pub fn step(&mut self) {
        self.now += Duration::from_millis(1);
        for i in 0..self.clients.len() {
            if !self.clients[i].gone && self.clients[i].next_timeout <= self.now {
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
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.sfu.poll_transmit() {
                moved = true;
                let Some(i) = self.clients.iter().position(|c| c.public() == t.destination && !c.gone) else {
                    continue;
                };
                if self.silent.contains(&i) {
                    continue;
                }
                if let Some(loss) = &mut self.loss {
                    if loss.drops(&t.contents) {
                        continue;
                    }
                }
                match &mut self.clients[i].downlink {
                    Some(link) => link.push(t, self.now),
                    None => self.deliver(i, &t),
                }
            }
            for i in 0..self.clients.len() {
                while let Some(t) = self.clients[i].downlink.as_mut().and_then(|l| l.pop(self.now)) {
                    moved = true;
                    self.deliver(i, &t);
                }
            }
            while let Some((id, signal)) = self.sfu.poll_signal() {
                moved = true;
                let Signal::Offer(offer) = signal else {
                    if let Signal::Ended(why) = signal {
                        self.ended.push((id, Signal::Ended(why)));
                    }
                    self.signals.push((id, signal));
                    continue;
                };
                // Offers to participants joined by hand (not World clients) go unanswered.
                let Some(i) = self.clients.iter().position(|c| c.id == id && !c.gone) else {
                    continue;
                };
                if self.clients[i].hold_offers {
                    self.clients[i].held.push(offer);
                    continue;
                }
                let answer = self.clients[i]
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .expect("client answers");
                self.clients[i].offers_answered += 1;
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

    /// Hands a datagram from the SFU to client `i`, through its NAT if any.
    fn deliver(&mut self, i: usize, t: &str0m::net::Transmit) {
        let to = self.clients[i].addr;
        let input = Input::Receive(
            self.now,
            str0m::net::Receive::new(t.proto, t.source, to, &t.contents).expect("datagram"),
        );
        self.clients[i].rtc.handle_input(input).expect("client input");
        self.drain_client(i);
    }

    pub fn drain_client(&mut self, i: usize) {
        loop {
            let c = &mut self.clients[i];
            match c.rtc.poll_output().expect("client output") {
                Output::Timeout(t) => {
                    c.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    // A client that left, went quiet, or sends from an interface it no longer has: lost.
                    if c.gone || self.silent.contains(&i) || t.source != c.addr {
                        continue;
                    }
                    if let Some(loss) = &mut self.loss {
                        if loss.drops(&t.contents) {
                            continue;
                        }
                    }
                    let source = c.public();
                    self.sfu
                        .handle_receive(self.now, Protocol::Udp, source, t.destination, &t.contents);
                }
                Output::Event(Event::Connected) => c.connected = true,
                Output::Event(Event::MediaAdded(m)) => c.added.push(m.mid),
                Output::Event(Event::MediaData(d)) => {
                    *c.received.entry(d.mid).or_default() += 1;
                    let video = c.rtc.media(d.mid).is_some_and(|m| m.kind() == MediaKind::Video);
                    if let (true, Some(n)) = (video, d.data.get(1..5)) {
                        c.video_seen.insert(u32::from_be_bytes(n.try_into().expect("4 bytes")));
                        c.video_frames.push((d.data.get(5).copied().unwrap_or(0), d.contiguous));
                    }
                }
                Output::Event(Event::KeyframeRequest(k)) => {
                    c.keyframe_requests += 1;
                    c.keyframe_rids.push(k.rid);
                    c.keyframe_due.insert(k.rid);
                }
                Output::Event(Event::EgressBitrateEstimate(str0m::bwe::BweKind::Twcc(b))) => c.estimates.push(b),
                Output::Event(Event::MediaIngressStats(s)) => {
                    c.ingress.insert(s.mid, s);
                }
                Output::Event(Event::MediaEgressStats(s)) => {
                    c.egress.insert(s.mid, s);
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Client `i` sends one 20 ms Opus frame (the bytes are not decoded anywhere), and a VP8 frame if it
    /// has a video track.
    pub fn speak(&mut self, i: usize) {
        let elapsed = self.now - self.start;
        let c = &mut self.clients[i];
        if !c.connected || c.gone {
            return;
        }
        let Some(pt) = pt_of(&mut c.rtc, c.send_mid, Codec::Opus) else {
            return;
        };
        let Some(writer) = c.rtc.writer(c.send_mid) else { return };
        let time = MediaTime::from(elapsed);
        let writer = match c.level {
            Some(level) => writer.audio_level(level, level > -50),
            None => writer,
        };
        writer
            .write(pt, self.start + elapsed, time, vec![i as u8; 60])
            .expect("write");
        self.drain_client(i);
        self.send_video(i, elapsed);
    }

    /// Client `i` sends a VP8 frame on its video track, or one per simulcast layer. Nothing decodes the
    /// bytes: the first byte's low bit clear marks a keyframe, the next four number the frame, and the sixth
    /// names the layer.
    fn send_video(&mut self, i: usize, elapsed: Duration) {
        let c = &mut self.clients[i];
        let Some(mid) = c.video_mid else { return };
        let Some(pt) = pt_of(&mut c.rtc, mid, Codec::Vp8) else {
            return;
        };
        let number = (c.video_sent as u32).to_be_bytes();
        let layers: Vec<(Option<Rid>, usize)> = match c.layers.is_empty() {
            true => vec![(None, c.video_bytes)],
            false => c.layers.iter().map(|(rid, bytes)| (Some(*rid), *bytes)).collect(),
        };
        for (index, (rid, bytes)) in layers.into_iter().enumerate() {
            if rid.is_some() && index == 0 && c.video_sent % 2 == 1 {
                continue;
            }
            let key = rid.is_none() || c.keyframe_due.remove(&rid);
            let mut frame = vec![if key { 0x10 } else { 0x11 }; bytes.max(6)];
            frame[1..5].copy_from_slice(&number);
            frame[5] = index as u8;
            let Some(mut writer) = c.rtc.writer(mid) else { return };
            if let Some(rid) = rid {
                writer = writer.rid(rid);
            }
            writer
                .write(pt, self.start + elapsed, MediaTime::from(elapsed), frame)
                .expect("write video");
        }
        self.clients[i].video_sent += 1;
        self.drain_client(i);
    }

    /// Client `i` asks for a keyframe on each video m-line it receives.
    pub fn ask_keyframe(&mut self, i: usize) {
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
    pub fn frames_over(&mut self, d: Duration) -> Vec<HashMap<Mid, usize>> {
        let before: Vec<HashMap<Mid, usize>> = self.clients.iter().map(|c| c.received.clone()).collect();
        self.run(d);
        let since = |(c, before): (&Client, &HashMap<Mid, usize>)| {
            let new = |(m, n): (&Mid, &usize)| (*m, n - before.get(m).copied().unwrap_or(0));
            c.received.iter().map(new).collect()
        };
        self.clients.iter().zip(&before).map(since).collect()
    }

    /// Runs for `d`; returns how many frames client `to` received from participant `from` over that time.
    pub fn frames_from_over(&mut self, to: usize, from: PeerId, d: Duration) -> usize {
        let before = self.clients[to].frames_from(from);
        self.run(d);
        self.clients[to].frames_from(from) - before
    }

    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Runs until `done` holds, for at most `limit`; returns whether it did.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// The signals (other than offers) participant `id` got so far.
    pub fn signals_to(&self, id: PeerId) -> impl Iterator<Item = &Signal> {
        self.signals.iter().filter(move |(to, _)| *to == id).map(|(_, s)| s)
    }
}

/// The payload type `rtc` negotiated for `codec` on its send m-line `mid`.
fn pt_of(rtc: &mut Rtc, mid: Mid, codec: Codec) -> Option<str0m::media::Pt> {
    let writer = rtc.writer(mid)?;
    let pt = writer
        .payload_params()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt());
    pt
}
