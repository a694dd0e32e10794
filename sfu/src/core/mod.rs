//! The core: participants, their published tracks, their subscriptions, and the forwarding between them.

mod forward;
mod layers;
mod link;
mod negotiate;
pub(crate) mod quality;
pub(crate) mod roster;
mod speakers;
mod timers;
mod tracks;
mod video;

use ahash::HashMap;
use forward::Relayed;
use layers::{Layers, Switcher};
pub use layers::{Preference, Quality};
pub use link::LinkStats;
use roster::{JoinRequest, Joined, MediaReport, Participant, PeerId, Signal, Track};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType, Transmit};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};

/// Keyframe requests relayed to a publisher, at most one per track per this long: a subscriber that lost a
/// keyframe asks again and again, and every keyframe costs the publisher's uplink.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// When str0m asks for a timer call that is already due (its pacer does after every packet it sends, so the
/// next packet can be released), a connected participant gets it this much later instead. The forwarding path
/// runs each subscriber's timers itself right after writing a packet, so the packet never waits for this; the
/// delay only saves a second timer call per forwarded packet, which was half the SFU's CPU.
const PAST_DUE_DELAY: Duration = Duration::from_millis(50);
/// The same while ICE and DTLS are being set up, when promptness matters more than cost, and for
/// subscribers of video: str0m paces video out at the downlink estimate, and a packet its pacer holds back
/// must not wait long, or the subscriber's estimator reads the wait as congestion.
const PAST_DUE_DELAY_SHORT: Duration = Duration::from_millis(1);

/// A timer due this soon counts as already due for a participant that receives no video (see [`Sfu::drain`]).
const PACER_NEAR: Duration = Duration::from_millis(10);

/// A timer of a participant that receives no video may run this much after str0m asked. Such a participant
/// gets a timer call with every packet forwarded to it (every 20 ms per audio track), which then serves the
/// timer on the way; only a participant that receives nothing needs the separate wake-up, a little later.
const UNPACED_SLACK: Duration = Duration::from_millis(20);

/// Each subscriber's downlink estimate (str0m's GCC, from its TWCC feedback) starts here, and probing moves
/// it toward what its subscriptions could use.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(1_000);

/// Limits of one core.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Participants per room; the next join gets [`JoinError::RoomFull`].
    pub participants_per_room: usize,
    /// Rooms on this core; a join that would open one more gets [`JoinError::TooManyRooms`].
    pub rooms: usize,
    /// A participant whose ICE has not connected this long after joining is removed.
    pub connect_timeout: Duration,
    /// A participant from whom nothing has arrived this long is removed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            participants_per_room: 100,
            rooms: 10_000,
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The offer could not be accepted.
    #[error("the offer was refused: {0}")]
    Offer(#[from] RtcError),
    /// The SFU's own address is not usable as an ICE candidate.
    #[error("the SFU address {0} cannot be an ICE candidate")]
    Candidate(SocketAddr),
    /// The room holds its maximum of participants.
    #[error("room {room:?} is full ({max} participants)")]
    RoomFull {
        /// The room.
        room: String,
        /// Its limit.
        max: usize,
    },
    /// This node holds its maximum of rooms.
    #[error("this node holds its maximum of {0} rooms; try another")]
    TooManyRooms(usize),
}

/// What a subscriber receives of another participant's track, and how far its negotiation is.
#[derive(Debug)]
struct Subscription {
    source: PeerId,
    source_mid: Mid,
    kind: MediaKind,
    state: SubState,
    /// What the subscriber asked for of this track.
    pref: Preference,
    /// The video layer last chosen for it.
    choice: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    /// To be offered at the next renegotiation.
    ToOpen,
    /// Offered as `Mid`, waiting for the answer.
    Negotiating(Mid),
    /// Answered: packets flow out on `Mid`.
    Open(Mid),
    /// The source went: `Mid` is to be stopped at the next renegotiation.
    ToStop(Mid),
    /// Offered stopped, waiting for the answer; then forgotten.
    Stopping(Mid),
}

/// Where a published track goes: a subscriber and its m-line.
#[derive(Debug, Clone, Copy)]
struct Target {
    subscriber: PeerId,
    mid: Mid,
    kind: MediaKind,
    /// The last payload type mapped for this subscriber: (publisher's, subscriber's). Matching codec
    /// parameters costs more than the rest of the forwarding, and a track's payload type rarely changes.
    pt_cache: Option<(Pt, Pt)>,
    /// For video: the layer the subscriber gets, and its renumbering.
    switch: Option<Switcher>,
    /// The subscriber turned the track off (audio; video pauses through its switcher).
    paused: bool,
}

impl Target {
    fn new(subscriber: PeerId, mid: Mid, s: &Subscription) -> Self {
        Self {
            subscriber,
            mid,
            kind: s.kind,
            pt_cache: None,
            switch: (s.kind == MediaKind::Video).then(|| Switcher::new(s.choice)),
            paused: !s.pref.enabled,
        }
    }
}

/// A track a participant publishes.
#[derive(Debug, Clone)]
struct Published {
    mid: Mid,
    kind: MediaKind,
    muted: bool,
    /// For video, its layers.
    layers: Layers,
    /// The payload types its packets came with (of a publisher here): a room that spans nodes names their codecs
    /// to the other nodes.
    pts: Vec<Pt>,
}

/// A track's payload types kept at most ([`Published::pts`]).
const MAX_TRACK_PTS: usize = 8;

/// One participant.
struct Peer {
    room: String,
    identity: String,
    publish: bool,
    subscribe: bool,
    server_offers: bool,
    /// Receive m-lines the participant offered that carry nothing yet (without server offers).
    free_slots: Vec<(Mid, MediaKind)>,
    rtc: Rtc,
    ufrag: String,
    published: Vec<Published>,
    subscriptions: Vec<Subscription>,
    pending: Option<SdpPendingOffer>,
    next_timeout: Instant,
    /// The last drain ended with a timer that was already due (see [`PAST_DUE_DELAY`]).
    past_due: bool,
    /// Its earliest entry in the timer heap (see [`timers`]).
    queued: Option<Instant>,
    /// It receives video, which str0m paces (see [`PAST_DUE_DELAY_SHORT`]).
    paced: bool,
    joined: Instant,
    connected: bool,
    last_input: Instant,
    /// Its downlink estimate, bits per second.
    estimate: u64,
    /// When it next tries a better video layer.
    climb: layers::Climb,
}

impl Peer {
    /// When the connect or idle timeout removes this participant.
    fn deadline(&self, limits: &Limits) -> Instant {
        if self.connected {
            self.last_input + limits.idle_timeout
        } else {
            self.joined + limits.connect_timeout
        }
    }

    fn participant(&self, id: PeerId) -> Participant {
        Participant {
            id,
            identity: self.identity.clone(),
            tracks: self.published.iter().map(|p| track(id, p)).collect(),
        }
    }
}

fn track(id: PeerId, p: &Published) -> Track {
    Track {
        id: Track::id_of(id, p.mid),
        kind: p.kind,
        muted: p.muted,
    }
}

/// The participants of one shard, and what flows between them.
pub struct Sfu {
    udp: SocketAddr,
    tcp: Option<SocketAddr>,
    limits: Limits,
    peers: HashMap<PeerId, Peer>,
    rooms: HashMap<String, Vec<PeerId>>,
    by_remote: HashMap<SocketAddr, PeerId>,
    by_ufrag: HashMap<String, PeerId>,
    next_id: PeerId,
    transmits: VecDeque<Transmit>,
    signals: VecDeque<(PeerId, Signal)>,
    reports: VecDeque<MediaReport>,
    /// Packets received during a drain or over a link, forwarded once it ends: (publisher, its mid, layer,
    /// packet).
    to_forward: Vec<(PeerId, Mid, u8, Relayed)>,
    /// The other buffer of `to_forward`, swapped in while a batch is forwarded.
    forward_spare: Vec<(PeerId, Mid, u8, Relayed)>,
    /// Participants whose `Rtc` failed or panicked, removed after the current call.
    failed: Vec<PeerId>,
    /// Keyframe requests from subscribers during a drain: (subscriber, its mid, kind).
    keyframe_requests: Vec<(PeerId, Mid, KeyframeRequestKind)>,
    /// When a keyframe was last requested of each layer of each published track.
    last_keyframe_request: HashMap<(PeerId, Mid, u8), Instant>,
    /// Each published track's open subscriptions, by (publisher, its mid). A packet's fan-out is one lookup.
    fanout: HashMap<(PeerId, Mid), Vec<Target>>,
    /// Participants whose subscriptions changed since they were last offered, to renegotiate after this call.
    to_negotiate: Vec<PeerId>,
    /// Str0m panics caught since the start: each ended one participant.
    panics: u64,
    /// Timer calls into participants' `Rtc`s since the start.
    rtc_timeouts: u64,
    /// Who speaks, by room.
    speakers: speakers::Speakers,
    /// Receiver reports and feedback counts.
    quality: quality::Quality,
    /// When video layers are next measured and chosen; `None` while no video is published.
    next_layer_tick: Option<Instant>,
    /// Subscribers moved from one video layer to another since the start.
    layer_switches: u64,
    /// When each participant is next due.
    timers: timers::Timers,
    /// Rooms that span nodes: their partners, and their participants there.
    links: link::Links,
}

impl Sfu {
    /// A core whose participants reach it at `udp` (its UDP host candidate), within `limits`.
    pub fn new(udp: SocketAddr, limits: Limits) -> Self {
        Self {
            udp,
            tcp: None,
            limits,
            peers: HashMap::default(),
            rooms: HashMap::default(),
            by_remote: HashMap::default(),
            by_ufrag: HashMap::default(),
            next_id: 0,
            transmits: VecDeque::new(),
            signals: VecDeque::new(),
            reports: VecDeque::new(),
            to_forward: Vec::new(),
            forward_spare: Vec::new(),
            failed: Vec::new(),
            keyframe_requests: Vec::new(),
            last_keyframe_request: HashMap::default(),
            fanout: HashMap::default(),
            to_negotiate: Vec::new(),
            panics: 0,
            rtc_timeouts: 0,
            speakers: speakers::Speakers::default(),
            quality: quality::Quality::default(),
            next_layer_tick: None,
            layer_switches: 0,
            timers: timers::Timers::default(),
            links: link::Links::new(),
        }
    }

    /// Also offers a passive ICE-TCP candidate at `tcp` (RFC 6544), for networks that block UDP.
    pub fn with_tcp(mut self, tcp: SocketAddr) -> Self {
        self.tcp = Some(tcp);
        self
    }

    /// Numbers participants from `base`, so that ids stay unique across the shards of one process.
    pub fn with_id_base(mut self, base: PeerId) -> Self {
        self.next_id = base;
        self
    }

    /// A participant joins with its offer; returns its id, the answer to give it and the room's roster. The
    /// others' tracks are offered to it, and its tracks to them, by renegotiation ([`Sfu::poll_signal`]).
    pub fn join(&mut self, req: JoinRequest<'_>, offer: SdpOffer, now: Instant) -> Result<Joined, JoinError> {
        self.check_limits(req.room)?;
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true)
            .enable_vp8(true)
            .enable_h264(true)
            .set_rtp_mode(true)
            .set_stats_interval(Some(quality::STATS_INTERVAL))
            .enable_bwe(Some(INITIAL_ESTIMATE))
            .build(now);
        rtc.add_local_candidate(Candidate::host(self.udp, "udp").map_err(|_| JoinError::Candidate(self.udp))?);
        if let Some(tcp) = self.tcp {
            let candidate = Candidate::builder().tcp().host(tcp).tcptype(TcpType::Passive).build();
            rtc.add_local_candidate(candidate.map_err(|_| JoinError::Candidate(tcp))?);
        }
        let answer = rtc.sdp_api().accept_offer(offer)?;
        let id = self.next_id;
        self.next_id += 1;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        self.by_ufrag.insert(ufrag.clone(), id);
        let members = self.rooms.entry(req.room.to_string()).or_default();
        let others: Vec<PeerId> = members.clone();
        members.push(id);
        self.span_join(req.room, req.links, now);
        let mut participants: Vec<Participant> = others
            .iter()
            .filter_map(|m| self.peers.get(m).map(|p| p.participant(*m)))
            .collect();
        participants.extend(self.remote_participants(req.room));
        let subscriptions = match req.subscribe {
            true => participants.iter().flat_map(|p| self.subs_of(p.id)).collect(),
            false => Vec::new(),
        };
        let peer = Peer {
            room: req.room.to_string(),
            identity: req.identity.to_string(),
            publish: req.publish,
            subscribe: req.subscribe,
            server_offers: req.server_offers,
            free_slots: Vec::new(),
            rtc,
            ufrag,
            published: Vec::new(),
            subscriptions,
            pending: None,
            next_timeout: now,
            past_due: false,
            queued: None,
            paced: false,
            joined: now,
            connected: false,
            last_input: now,
            estimate: INITIAL_ESTIMATE.as_u64(),
            climb: layers::Climb::new(now),
        };
        let me = peer.participant(id);
        self.peers.insert(id, peer);
        self.speakers.arm(now);
        for other in &others {
            self.signals.push_back((*other, Signal::ParticipantJoined(me.clone())));
        }
        self.to_negotiate.push(id);
        self.drain(id, now);
        self.after_call(now);
        tracing::debug!(peer = id, room = req.room, identity = req.identity, "joined");
        Ok(Joined {
            id,
            answer,
            participants,
        })
    }

    fn check_limits(&self, room: &str) -> Result<(), JoinError> {
        match self.rooms.get(room) {
            Some(members) if members.len() >= self.limits.participants_per_room => {
                let max = self.limits.participants_per_room;
                Err(JoinError::RoomFull { room: room.into(), max })
            }
            None if self.rooms.len() >= self.limits.rooms => Err(JoinError::TooManyRooms(self.limits.rooms)),
            _ => Ok(()),
        }
    }

    /// New subscriptions to every track `source` publishes.
    fn subs_of(&self, source: PeerId) -> Vec<Subscription> {
        if let Some(subs) = self.remote_subs(source) {
            return subs;
        }
        let Some(p) = self.peers.get(&source).filter(|p| p.publish) else {
            return Vec::new();
        };
        p.published.iter().map(|t| sub(source, t.mid, t.kind)).collect()
    }

    /// Participant `id` leaves: its session ends, and the others stop receiving its tracks.
    pub fn leave(&mut self, id: PeerId, now: Instant) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.rtc.disconnect();
        }
        self.remove(id);
        self.after_call(now);
    }

    /// Ends the room: every participant's session ends with `why` (call control closes a call's room when
    /// the call ends).
    pub fn close_room(&mut self, room: &str, why: &'static str, now: Instant) {
        for id in self.rooms.get(room).cloned().unwrap_or_default() {
            self.signals.push_back((id, Signal::Ended(why)));
            self.leave(id, now);
        }
    }

    /// Participant `id` muted or unmuted its track `track`; the others are told. False if it has no such track.
    pub fn set_muted(&mut self, id: PeerId, track: &str, muted: bool) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        let Some(p) = peer.published.iter_mut().find(|p| Track::id_of(id, p.mid) == track) else {
            return false;
        };
        if p.muted != muted {
            p.muted = muted;
            let room = peer.room.clone();
            self.tell_room(&room, id, |_| Signal::Muted {
                participant: id,
                track: track.to_string(),
                muted,
            });
            self.links.touch(&room);
        }
        true
    }

    /// A remote ICE candidate the participant trickled (an SDP `candidate:` line). Err names what is wrong.
    pub fn add_remote_candidate(&mut self, id: PeerId, candidate: &str) -> Result<(), String> {
        let c = Candidate::from_sdp_string(candidate).map_err(|e| e.to_string())?;
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.rtc.add_remote_candidate(c);
        }
        Ok(())
    }

    /// A datagram (or, over ICE-TCP, one RFC 4571 frame) from `source` to the SFU's `destination`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        if proto == Protocol::Udp && data.first() == Some(&link::wire::MAGIC) {
            self.receive_link(now, source, data);
            self.after_call(now);
            return;
        }
        let Ok(receive) = Receive::new(proto, source, destination, data) else {
            return;
        };
        let input = Input::Receive(now, receive);
        let Some(id) = self.route(source, data, &input) else {
            return;
        };
        let accepted = self.call(id, |rtc| rtc.handle_input(input));
        if accepted {
            self.by_remote.insert(source, id);
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.last_input = now;
            }
            self.drain(id, now);
            // An input can queue packets only a timer call releases (RTCP: a NACK's retransmissions), or move
            // ICE and DTLS on: run it now. Media from a connected publisher cannot, and the timer it finds
            // due is only the pacer's, which the next forwarded packet runs (a third of the timer calls in
            // 1:1 rooms, where every participant publishes).
            if self
                .peers
                .get(&id)
                .is_some_and(|p| p.past_due && (!p.connected || is_rtcp(data)))
                && self.call(id, |rtc| rtc.handle_input(Input::Timeout(now)))
            {
                self.rtc_timeouts += 1;
                self.drain(id, now);
            }
        }
        self.after_call(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next message to deliver to a participant.
    pub fn poll_signal(&mut self) -> Option<(PeerId, Signal)> {
        self.signals.pop_front()
    }

    /// The next change in whether a participant's media flows, for call control.
    pub fn poll_media_report(&mut self) -> Option<MediaReport> {
        self.reports.pop_front()
    }

    fn report(&mut self, id: PeerId, flowing: bool) {
        if let Some(p) = self.peers.get(&id) {
            self.reports.push_back(MediaReport {
                room: p.room.clone(),
                identity: p.identity.clone(),
                flowing,
            });
        }
    }

    /// Participants here now.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Rooms here now.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Str0m panics caught since the start; each ended one participant.
    pub fn panics(&self) -> u64 {
        self.panics
    }

    /// Timer calls into participants' `Rtc`s since the start.
    pub fn rtc_timeouts(&self) -> u64 {
        self.rtc_timeouts
    }

    /// Tracks published here now.
    pub fn track_count(&self) -> usize {
        self.peers.values().map(|p| p.published.len()).sum()
    }

    /// The others in participant `id`'s room, with their tracks; `None` if it is not here.
    pub fn roster(&self, id: PeerId) -> Option<Vec<Participant>> {
        let peer = self.peers.get(&id)?;
        let members = self.rooms.get(&peer.room)?;
        let others = members.iter().filter(|m| **m != id);
        let mut all: Vec<Participant> = others
            .filter_map(|m| self.peers.get(m).map(|p| p.participant(*m)))
            .collect();
        all.extend(self.remote_participants(&peer.room));
        Some(all)
    }

    /// Publisher `source`'s track `mid`, here or on another node.
    fn published_of(&self, source: PeerId, mid: Mid) -> Option<&Published> {
        match self.peers.get(&source) {
            Some(p) => p.published.iter().find(|t| t.mid == mid),
            None => self.links.published(source, mid),
        }
    }

    /// Whether participant `id` is here.
    pub fn contains(&self, id: PeerId) -> bool {
        self.peers.contains_key(&id)
    }

    /// Finds the participant a datagram belongs to: a STUN request by the ICE username, whose first part is
    /// the ufrag we gave that participant; anything else by its source address once known. The username
    /// wins because an address can be stale: a participant that moved leaves its old one mapped here, and a
    /// NAT may give it to someone else, whose checks must not go to the participant that left it.
    fn route(&mut self, source: SocketAddr, data: &[u8], input: &Input<'_>) -> Option<PeerId> {
        let known = self.by_remote.get(&source).copied();
        // RFC 7983: a first byte of 0..=3 is STUN.
        if data.first().is_some_and(|b| *b <= 3) {
            if let Some(id) = self.by_username(data, input) {
                return Some(id);
            }
        }
        known
    }

    /// The participant a STUN request is for, by the ufrag in its username, if it accepts it.
    fn by_username(&self, data: &[u8], input: &Input<'_>) -> Option<PeerId> {
        let message = str0m::ice::StunMessage::parse(data).ok()?;
        let (ours, _) = message.split_username()?;
        let id = *self.by_ufrag.get(ours)?;
        self.peers.get(&id)?.rtc.accepts(input).then_some(id)
    }

    /// Calls into a participant's `Rtc`; an error or a panic (a str0m bug, by its policy) ends that
    /// participant only. Returns whether the call succeeded.
    fn call(&mut self, id: PeerId, f: impl FnOnce(&mut Rtc) -> Result<(), RtcError>) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        match catch_unwind(AssertUnwindSafe(|| f(&mut peer.rtc))) {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::trace!(peer = id, error = %e, "peer input refused");
                true
            }
            Err(_) => {
                self.panicked(id);
                false
            }
        }
    }

    /// A str0m call panicked: that participant is dropped after the current call.
    fn panicked(&mut self, id: PeerId) {
        tracing::error!(peer = id, "bug: str0m panicked; the participant is dropped");
        self.panics += 1;
        self.failed.push(id);
    }

    /// Takes everything a participant's `Rtc` has to say, until it names its next timeout.
    fn drain(&mut self, id: PeerId, now: Instant) {
        loop {
            let Some(peer) = self.peers.get_mut(&id) else { return };
            let out = match catch_unwind(AssertUnwindSafe(|| peer.rtc.poll_output())) {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => {
                    tracing::debug!(peer = id, error = %e, "peer failed");
                    self.failed.push(id);
                    return;
                }
                Err(_) => {
                    self.panicked(id);
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    peer.set_rtc_timeout(t, now);
                    let wake = peer.wake(&self.limits);
                    self.timers.schedule(&mut peer.queued, id, wake);
                    return;
                }
                Output::Transmit(t) => self.transmits.push_back(t),
                Output::Event(e) => self.on_event(id, e, now),
            }
        }
    }

    fn on_event(&mut self, id: PeerId, event: Event, now: Instant) {
        match event {
            Event::MediaAdded(m) if matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) => {
                self.published(id, m.mid, m.kind, m.simulcast, now);
            }
            Event::MediaAdded(m) if m.direction == Direction::SendOnly => {
                if let Some(peer) = self.peers.get_mut(&id).filter(|p| !p.server_offers) {
                    peer.free_slots.push((m.mid, m.kind));
                    self.to_negotiate.push(id);
                }
            }
            Event::MediaChanged(m) if !matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) => {
                self.unpublished(id, m.mid);
            }
            Event::RtpPacket(p) => self.received(id, p, now),
            Event::Connected => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.connected = true;
                }
                self.report(id, true);
            }
            Event::KeyframeRequest(k) => self.keyframe_requests.push((id, k.mid, k.kind)),
            Event::MediaEgressStats(s) => self.on_egress_stats(id, &s),
            Event::EgressBitrateEstimate(BweKind::Twcc(b)) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.estimate = b.as_u64();
                }
            }
            Event::IceConnectionStateChange(s) => {
                tracing::debug!(peer = id, state = ?s, "ice");
                let connected = self.peers.get(&id).is_some_and(|p| p.connected);
                match s {
                    IceConnectionState::Disconnected if connected => self.report(id, false),
                    IceConnectionState::Connected | IceConnectionState::Completed if connected => self.report(id, true),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// A media packet from participant `id`: counted, and queued for forwarding.
    fn received(&mut self, id: PeerId, p: str0m::rtp::RtpPacket, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        if !peer.publish {
            return;
        }
        if let Some(level) = p.header.ext_vals.audio_level {
            self.speakers.record(id, level);
        }
        let ssrc = p.header.ssrc;
        let Some((mid, rid)) = peer.rtc.direct_api().stream_rx(&ssrc).map(|s| (s.mid(), s.rid())) else {
            return;
        };
        let Some(track) = peer.published.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        // A simulcast packet whose rid is not one of the offered layers has nowhere to go.
        let Some(layer) = track.layers.index(ssrc, rid.or(p.header.ext_vals.rid)) else {
            return;
        };
        track.layers.record(layer, p.payload.len(), now);
        let pt = p.header.payload_type;
        if !track.pts.contains(&pt) && track.pts.len() < MAX_TRACK_PTS {
            // Other nodes learn its codec from the room's next state, sent at once.
            track.pts.push(pt);
            self.links.touch(&peer.room);
        }
        self.to_forward.push((id, mid, layer, Relayed::from_rtp(p)));
    }

    /// Forwards what the last calls received, renegotiates where tracks are waiting, and drops failed peers.
    fn after_call(&mut self, now: Instant) {
        // A state goes before the packets it names codecs for, so the other nodes can forward them at once.
        self.flush_states();
        while !self.to_forward.is_empty() || !self.keyframe_requests.is_empty() {
            // The batch's buffer is reused, so forwarding allocates nothing per packet.
            let mut batch = std::mem::replace(&mut self.to_forward, std::mem::take(&mut self.forward_spare));
            for (source, mid, layer, packet) in batch.drain(..) {
                self.forward(source, mid, layer, &packet, now);
                self.relay_out(source, mid, layer, &packet);
            }
            self.forward_spare = batch;
            for (subscriber, mid, kind) in std::mem::take(&mut self.keyframe_requests) {
                self.relay_keyframe_request(subscriber, mid, kind, now);
            }
        }
        for id in std::mem::take(&mut self.to_negotiate) {
            self.renegotiate(id, now);
        }
        for id in std::mem::take(&mut self.failed) {
            if self.peers.contains_key(&id) {
                self.signals.push_back((id, Signal::Ended("error")));
                self.report(id, false);
            }
            self.remove(id);
        }
        self.flush_states();
        self.settle_timers();
    }
}

/// RTCP, not RTP, STUN or DTLS: version 2 and a packet type in 192..=223 (RFC 5761; SRTCP keeps it clear).
fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 8 && data[0] >> 6 == 2 && (192..=223).contains(&data[1])
}

fn sub(source: PeerId, source_mid: Mid, kind: MediaKind) -> Subscription {
    Subscription {
        source,
        source_mid,
        kind,
        state: SubState::ToOpen,
        pref: Preference::default(),
        choice: None,
    }
}
