//! The core: participants, their published tracks, their subscriptions, and the forwarding between them.

use ahash::HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Keyframe requests relayed to a publisher, at most one per track per this long: a subscriber that lost a
/// keyframe asks again and again, and every keyframe costs the publisher's uplink.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcError};

/// A participant, unique within one [`Sfu`].
pub type PeerId = u64;

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

/// A message for the driver to deliver to a participant over its signaling channel.
#[derive(Debug)]
pub enum Signal {
    /// The server renegotiates (tracks came or went): the participant must answer with [`Sfu::handle_answer`].
    Offer(SdpOffer),
    /// The SFU ended the participant's session, for the reason given.
    Ended(&'static str),
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
}

/// One participant.
struct Peer {
    room: String,
    rtc: Rtc,
    /// Tracks it publishes: its mids and their kinds.
    published: Vec<(Mid, MediaKind)>,
    subscriptions: Vec<Subscription>,
    pending: Option<SdpPendingOffer>,
    next_timeout: Instant,
    joined: Instant,
    connected: bool,
    last_input: Instant,
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
}

/// The participants of one shard, and what flows between them.
pub struct Sfu {
    addr: SocketAddr,
    limits: Limits,
    peers: HashMap<PeerId, Peer>,
    rooms: HashMap<String, Vec<PeerId>>,
    by_remote: HashMap<SocketAddr, PeerId>,
    by_ufrag: HashMap<String, PeerId>,
    next_id: PeerId,
    transmits: VecDeque<Transmit>,
    signals: VecDeque<(PeerId, Signal)>,
    /// Packets received during a drain, forwarded once it ends: (publisher, its mid, packet).
    to_forward: Vec<(PeerId, Mid, RtpPacket)>,
    /// The other buffer of `to_forward`, swapped in while a batch is forwarded.
    forward_spare: Vec<(PeerId, Mid, RtpPacket)>,
    /// Participants whose `Rtc` failed or panicked, removed after the current call.
    failed: Vec<PeerId>,
    /// Keyframe requests from subscribers during a drain: (subscriber, its mid, kind).
    keyframe_requests: Vec<(PeerId, Mid, KeyframeRequestKind)>,
    /// When a keyframe was last requested of each published track.
    last_keyframe_request: HashMap<(PeerId, Mid), Instant>,
    /// Each published track's open subscriptions, by (publisher, its mid). A packet's fan-out is one lookup.
    fanout: HashMap<(PeerId, Mid), Vec<Target>>,
    /// Participants whose subscriptions changed since they were last offered, to renegotiate after this call.
    to_negotiate: Vec<PeerId>,
}

impl Sfu {
    /// A core whose participants reach it at `addr` (its UDP host candidate), within `limits`.
    pub fn new(addr: SocketAddr, limits: Limits) -> Self {
        Self {
            addr,
            limits,
            peers: HashMap::default(),
            rooms: HashMap::default(),
            by_remote: HashMap::default(),
            by_ufrag: HashMap::default(),
            next_id: 0,
            transmits: VecDeque::new(),
            signals: VecDeque::new(),
            to_forward: Vec::new(),
            forward_spare: Vec::new(),
            failed: Vec::new(),
            keyframe_requests: Vec::new(),
            last_keyframe_request: HashMap::default(),
            fanout: HashMap::default(),
            to_negotiate: Vec::new(),
        }
    }

    /// A participant joins `room` with its offer; returns its id and the answer to give it. The others'
    /// tracks are offered to it, and its tracks to them, by renegotiation ([`Sfu::poll_signal`]).
    pub fn join(&mut self, room: &str, offer: SdpOffer, now: Instant) -> Result<(PeerId, SdpAnswer), JoinError> {
        match self.rooms.get(room) {
            Some(members) if members.len() >= self.limits.participants_per_room => {
                let max = self.limits.participants_per_room;
                return Err(JoinError::RoomFull { room: room.into(), max });
            }
            None if self.rooms.len() >= self.limits.rooms => return Err(JoinError::TooManyRooms(self.limits.rooms)),
            _ => {}
        }
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true)
            .enable_vp8(true)
            .enable_h264(true)
            .set_rtp_mode(true)
            .build(now);
        let candidate = Candidate::host(self.addr, "udp").map_err(|_| JoinError::Candidate(self.addr))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc.sdp_api().accept_offer(offer)?;
        let id = self.next_id;
        self.next_id += 1;
        self.by_ufrag.insert(rtc.direct_api().local_ice_credentials().ufrag, id);
        let members = self.rooms.entry(room.to_string()).or_default();
        let subscriptions = members
            .iter()
            .filter_map(|m| self.peers.get(m).map(|p| (*m, p)))
            .flat_map(|(m, p)| p.published.iter().map(move |&(mid, kind)| sub(m, mid, kind)))
            .collect();
        members.push(id);
        let peer = Peer {
            room: room.to_string(),
            rtc,
            published: Vec::new(),
            subscriptions,
            pending: None,
            next_timeout: now,
            joined: now,
            connected: false,
            last_input: now,
        };
        self.peers.insert(id, peer);
        self.to_negotiate.push(id);
        self.drain(id, now);
        self.after_call(now);
        tracing::debug!(peer = id, room, "joined");
        Ok((id, answer))
    }

    /// The participant's answer to the last [`Signal::Offer`].
    pub fn handle_answer(&mut self, id: PeerId, answer: SdpAnswer, now: Instant) -> Result<(), RtcError> {
        let Some(peer) = self.peers.get_mut(&id) else {
            return Ok(());
        };
        let Some(pending) = peer.pending.take() else {
            return Ok(());
        };
        peer.rtc.sdp_api().accept_answer(pending, answer)?;
        peer.subscriptions.retain(|s| !matches!(s.state, SubState::Stopping(_)));
        for s in &mut peer.subscriptions {
            if let SubState::Negotiating(mid) = s.state {
                s.state = SubState::Open(mid);
                let targets = self.fanout.entry((s.source, s.source_mid)).or_default();
                targets.push(Target {
                    subscriber: id,
                    mid,
                    kind: s.kind,
                });
            }
        }
        // More may have waited while this offer was out.
        self.to_negotiate.push(id);
        self.drain(id, now);
        self.after_call(now);
        Ok(())
    }

    /// Participant `id` leaves: its session ends, and the others stop receiving its tracks.
    pub fn leave(&mut self, id: PeerId, now: Instant) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.rtc.disconnect();
        }
        self.remove(id);
        self.after_call(now);
    }

    /// A datagram from `source` to the SFU's `destination`.
    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, data) else {
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
        }
        self.after_call(now);
    }

    /// Runs every participant's timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let lapsed: Vec<(PeerId, bool)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.deadline(&self.limits) <= now)
            .map(|(id, p)| (*id, p.connected))
            .collect();
        for (id, connected) in lapsed {
            let why = if connected { "idle" } else { "never connected" };
            tracing::debug!(peer = id, why, "participant timed out");
            self.signals.push_back((id, Signal::Ended(why)));
            self.leave(id, now);
        }
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.next_timeout <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if self.call(id, |rtc| rtc.handle_input(Input::Timeout(now))) {
                self.drain(id, now);
            }
        }
        self.after_call(now);
    }

    /// When [`Sfu::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .map(|p| p.next_timeout.min(p.deadline(&self.limits)))
            .min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next session description to deliver to a participant.
    pub fn poll_signal(&mut self) -> Option<(PeerId, Signal)> {
        self.signals.pop_front()
    }

    /// Participants connected now.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Finds the participant a datagram belongs to: by its source address once known, else (a STUN request)
    /// by the ICE username, whose first part is the ufrag we gave that participant.
    fn route(&mut self, source: SocketAddr, data: &[u8], input: &Input<'_>) -> Option<PeerId> {
        if let Some(&id) = self.by_remote.get(&source) {
            return Some(id);
        }
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
                tracing::error!(peer = id, "bug: str0m panicked; the participant is dropped");
                self.failed.push(id);
                false
            }
        }
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
                    tracing::error!(peer = id, "bug: str0m panicked; the participant is dropped");
                    self.failed.push(id);
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    peer.next_timeout = t.max(now);
                    return;
                }
                Output::Transmit(t) => self.transmits.push_back(t),
                Output::Event(e) => self.on_event(id, e),
            }
        }
    }

    fn on_event(&mut self, id: PeerId, event: Event) {
        match event {
            Event::MediaAdded(m) if matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) => {
                self.published(id, m.mid, m.kind);
            }
            Event::RtpPacket(p) => {
                let Some(peer) = self.peers.get_mut(&id) else { return };
                let mid = peer.rtc.direct_api().stream_rx(&p.header.ssrc).map(|s| s.mid());
                if let Some(mid) = mid {
                    self.to_forward.push((id, mid, p));
                }
            }
            Event::Connected => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.connected = true;
                }
            }
            Event::KeyframeRequest(k) => self.keyframe_requests.push((id, k.mid, k.kind)),
            Event::IceConnectionStateChange(s) => tracing::debug!(peer = id, state = ?s, "ice"),
            _ => {}
        }
    }

    /// Participant `id` publishes `mid`: every other participant of its room subscribes.
    fn published(&mut self, id: PeerId, mid: Mid, kind: MediaKind) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        peer.published.push((mid, kind));
        let room = peer.room.clone();
        for other in self.rooms.get(&room).into_iter().flatten() {
            if *other == id {
                continue;
            }
            if let Some(p) = self.peers.get_mut(other) {
                p.subscriptions.push(sub(id, mid, kind));
                self.to_negotiate.push(*other);
            }
        }
    }

    /// Forwards what the last calls received, renegotiates where tracks are waiting, and drops failed peers.
    fn after_call(&mut self, now: Instant) {
        while !self.to_forward.is_empty() || !self.keyframe_requests.is_empty() {
            // The batch's buffer is reused, so forwarding allocates nothing per packet.
            let mut batch = std::mem::replace(&mut self.to_forward, std::mem::take(&mut self.forward_spare));
            for (source, mid, packet) in batch.drain(..) {
                self.forward(source, mid, &packet, now);
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
            self.remove(id);
        }
    }

    /// Sends `packet` of `source`'s track `mid` to each subscriber with that track open.
    fn forward(&mut self, source: PeerId, mid: Mid, packet: &RtpPacket, now: Instant) {
        let Some(src) = self.peers.get(&source) else { return };
        let pt_in = packet.header.payload_type;
        let Some(params) = src.rtc.codec_config().find(|c| c.pt() == pt_in).copied() else {
            return;
        };
        // Nothing here allocates: the track's subscriber list is lent out of the index and put back.
        let Some(slot) = self.fanout.get_mut(&(source, mid)) else {
            return;
        };
        let targets = std::mem::take(slot);
        for &Target {
            subscriber: sub_id,
            mid: out_mid,
            kind,
        } in &targets
        {
            let Some(peer) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            let Some(pt) = peer.rtc.codec_config().match_params(params).map(|p| p.pt()) else {
                continue;
            };
            let write = RtpWrite::new(
                pt,
                packet.seq_no,
                packet.header.timestamp,
                packet.timestamp,
                packet.payload.clone(),
            )
            .marker(packet.header.marker)
            .ext_vals(packet.header.ext_vals.clone())
            .nackable(kind == MediaKind::Video);
            let written = catch_unwind(AssertUnwindSafe(|| {
                let mut api = peer.rtc.direct_api();
                let tx = api.stream_tx_by_mid(out_mid, None)?;
                tx.write_rtp(write);
                Some(())
            }));
            if written.is_err() {
                tracing::error!(
                    peer = sub_id,
                    "bug: str0m panicked on write; the participant is dropped"
                );
                self.failed.push(sub_id);
                continue;
            }
            self.drain(sub_id, now);
        }
        if let Some(slot) = self.fanout.get_mut(&(source, mid)) {
            *slot = targets;
        }
    }

    /// A subscriber asked for a keyframe on its m-line `mid`: ask the track's publisher, unless it was asked
    /// less than [`KEYFRAME_REQUEST_INTERVAL`] ago.
    fn relay_keyframe_request(&mut self, subscriber: PeerId, mid: Mid, kind: KeyframeRequestKind, now: Instant) {
        let Some(source) = self.peers.get(&subscriber).and_then(|p| {
            p.subscriptions.iter().find_map(|s| match s.state {
                SubState::Open(m) if m == mid => Some((s.source, s.source_mid)),
                _ => None,
            })
        }) else {
            return;
        };
        if let Some(last) = self.last_keyframe_request.get(&source) {
            if now.saturating_duration_since(*last) < KEYFRAME_REQUEST_INTERVAL {
                return;
            }
        }
        let Some(publisher) = self.peers.get_mut(&source.0) else {
            return;
        };
        let asked = catch_unwind(AssertUnwindSafe(|| {
            let mut api = publisher.rtc.direct_api();
            api.stream_rx_by_mid(source.1, None)
                .map(|rx| rx.request_keyframe(kind))
                .is_some()
        }));
        match asked {
            Ok(true) => {
                self.last_keyframe_request.insert(source, now);
                self.drain(source.0, now);
            }
            Ok(false) => {}
            Err(_) => self.failed.push(source.0),
        }
    }

    /// Offers a participant the tracks waiting for it.
    fn renegotiate(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        let waiting = |s: &Subscription| matches!(s.state, SubState::ToOpen | SubState::ToStop(_));
        if peer.pending.is_some() || !peer.subscriptions.iter().any(waiting) {
            return;
        }
        let mut api = peer.rtc.sdp_api();
        for s in &mut peer.subscriptions {
            match s.state {
                SubState::ToOpen => {
                    let mid = api.add_media(s.kind, Direction::SendOnly, Some(s.source.to_string()), None, None);
                    s.state = SubState::Negotiating(mid);
                }
                SubState::ToStop(mid) => {
                    api.stop_media(mid);
                    s.state = SubState::Stopping(mid);
                }
                _ => {}
            }
        }
        if let Some((offer, pending)) = api.apply() {
            peer.pending = Some(pending);
            self.signals.push_back((id, Signal::Offer(offer)));
        }
        self.drain(id, now);
    }

    fn remove(&mut self, id: PeerId) {
        let Some(peer) = self.peers.remove(&id) else { return };
        self.by_remote.retain(|_, p| *p != id);
        self.by_ufrag.retain(|_, p| *p != id);
        self.last_keyframe_request.retain(|(p, _), _| *p != id);
        if let Some(members) = self.rooms.get_mut(&peer.room) {
            members.retain(|m| *m != id);
            if members.is_empty() {
                self.rooms.remove(&peer.room);
            }
        }
        self.fanout.retain(|(source, _), _| *source != id);
        for targets in self.fanout.values_mut() {
            targets.retain(|t| t.subscriber != id);
        }
        for (other, p) in &mut self.peers {
            if !p.subscriptions.iter().any(|s| s.source == id) {
                continue;
            }
            p.subscriptions
                .retain(|s| s.source != id || s.state != SubState::ToOpen);
            for s in p.subscriptions.iter_mut().filter(|s| s.source == id) {
                if let SubState::Negotiating(mid) | SubState::Open(mid) = s.state {
                    s.state = SubState::ToStop(mid);
                }
            }
            self.to_negotiate.push(*other);
        }
        tracing::debug!(peer = id, room = %peer.room, "removed");
    }
}

fn sub(source: PeerId, source_mid: Mid, kind: MediaKind) -> Subscription {
    Subscription {
        source,
        source_mid,
        kind,
        state: SubState::ToOpen,
    }
}
