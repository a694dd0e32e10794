//! A shard: one event-loop thread that owns a [`Sfu`] core, its UDP socket and its ICE-TCP listener. The
//! signaling side talks to it only through [`Command`]s and per-participant event channels, so nothing on the
//! packet path takes a lock.

mod tcp;

use crate::core::roster::{JoinRequest, Joined, MediaReport, Participant, PeerId, Signal};
use crate::core::{JoinError, Limits, Preference, Sfu};
use hualu_common::udp_batch::{RecvBatch, SendBatch, BATCH, HEADROOM};
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::net::Protocol;
use tcp::TcpConns;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

const UDP: Token = Token(0);
const TCP_LISTENER: Token = Token(1);
const WAKER: Token = Token(2);
/// Tokens from here on are ICE-TCP connections.
const FIRST_CONN: usize = 16;

/// What a participant's signaling task receives from its shard, in the order the shard produced it.
#[derive(Debug)]
pub enum Event {
    /// A signal of the core: an offer, a roster change, the end of the session.
    Signal(Signal),
    /// The answer to the participant's own offer ([`Command::Offer`]). It travels with the signals, not on a
    /// reply channel of its own: a server offer made before the shard took the client's offer (which drops
    /// that server offer) must reach the client before this answer, while the client's offer is still
    /// outstanding, so that the client ignores it as docs/protocol.md says. Delivered after it, it looks
    /// current: the client answers an offer the server has forgotten, and their m-lines part ways for good.
    Answer(Result<SdpAnswer, String>),
}

/// A participant's signaling channel, on which its shard sends [`Event`]s.
pub type EventTx = UnboundedSender<Event>;

/// A resumed session: the others in the room, and the answer to the resume's offer if it had one.
pub type Resumed = (Vec<Participant>, Option<Result<SdpAnswer, String>>);

/// A join's owned parts, to cross into the shard thread.
#[derive(Debug)]
pub struct Join {
    /// The room.
    pub room: String,
    /// The participant's identity.
    pub identity: String,
    /// Publish grant.
    pub publish: bool,
    /// Subscribe grant.
    pub subscribe: bool,
    /// The server may renegotiate (`/rtc`); not for WHIP and WHEP.
    pub server_offers: bool,
    /// The client's offer.
    pub offer: SdpOffer,
    /// The link addresses of the room's other SFU nodes (the token's `grants.links`).
    pub links: Vec<SocketAddr>,
}

/// What the signaling side asks of a shard.
#[derive(Debug)]
pub enum Command {
    /// A participant joins; its messages go to `events`.
    Join(Box<Join>, EventTx, oneshot::Sender<Result<Joined, JoinError>>),
    /// The answer to the server's offer.
    Answer(PeerId, SdpAnswer, oneshot::Sender<Result<(), String>>),
    /// The participant's own offer; the answer comes back as [`Event::Answer`] on its event channel.
    Offer(PeerId, SdpOffer),
    /// A trickled candidate.
    Trickle(PeerId, String),
    /// Mute or unmute one of its tracks.
    Mute(PeerId, String, bool),
    /// What it wants of another's track; answers whether it has a subscription to that track.
    Subscribe(PeerId, String, Preference, oneshot::Sender<bool>),
    /// The participant's signaling came back (resume): its messages go to the new channel, and its offer (an
    /// ICE restart) is taken. Answers with the room's roster and the answer, or `None` if the participant is
    /// gone.
    Attach(PeerId, EventTx, Option<SdpOffer>, oneshot::Sender<Option<Resumed>>),
    /// The participant leaves.
    Leave(PeerId),
    /// The room ends: everyone in it leaves (the call it carried ended).
    CloseRoom(String),
    /// The shard relays rooms that span nodes with the other SFU nodes that hold this key (cluster mode).
    EnableLinks([u8; 32]),
    /// The shard stops.
    Stop,
}

/// The sockets and limits one shard starts with.
pub struct ShardConfig {
    /// Index, for logs and metrics.
    pub index: usize,
    /// Bound UDP socket.
    pub udp: std::net::UdpSocket,
    /// Bound ICE-TCP listener, if ICE-TCP is on.
    pub tcp: Option<std::net::TcpListener>,
    /// The UDP address advertised in candidates.
    pub udp_public: SocketAddr,
    /// The TCP address advertised in candidates.
    pub tcp_public: Option<SocketAddr>,
    /// The core's limits.
    pub limits: Limits,
    /// Told when participants' media starts or dies.
    pub observer: Option<Observer>,
    /// Where the shard leaves its load once a second, for the cluster heartbeat.
    pub load: Arc<ShardLoad>,
}

/// A shard's load, written once a second by its thread and read by anyone (no lock on the media path).
#[derive(Debug, Default)]
pub struct ShardLoad {
    /// Rooms open.
    pub rooms: AtomicU64,
    /// Participants connected.
    pub participants: AtomicU64,
    /// Media packets in and out since the shard started.
    pub packets: AtomicU64,
}

/// Receives [`MediaReport`]s from the shard threads (call control, in `hualu up`).
pub type Observer = std::sync::Arc<dyn Fn(MediaReport) + Send + Sync>;

/// Counters a shard publishes once a second.
#[derive(Default)]
struct Stats {
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
    max_lag: Duration,
    wakeups: u64,
    send_drops: u64,
}

/// The loop's state.
pub struct Shard {
    index: usize,
    sfu: Sfu,
    poll: Poll,
    udp: UdpSocket,
    udp_public: SocketAddr,
    tcp_listener: Option<TcpListener>,
    tcp_public: Option<SocketAddr>,
    conns: TcpConns,
    commands: Receiver<Command>,
    events: HashMap<PeerId, EventTx>,
    /// Datagrams received with one `recvmmsg` per 32.
    recv: RecvBatch,
    /// Datagrams to send, flushed with one `sendmmsg` per 32: a packet fanned out to hundreds of subscribers
    /// leaves in a few system calls instead of hundreds.
    out: SendBatch,
    stats: Stats,
    stopping: bool,
    observer: Option<Observer>,
    load: Arc<ShardLoad>,
}

impl Shard {
    /// Registers the sockets; the returned waker wakes the loop when a command is queued.
    pub fn new(cfg: ShardConfig, commands: Receiver<Command>) -> io::Result<(Self, Waker)> {
        let poll = Poll::new()?;
        cfg.udp.set_nonblocking(true)?;
        let mut udp = UdpSocket::from_std(cfg.udp);
        poll.registry().register(&mut udp, UDP, Interest::READABLE)?;
        let tcp_listener = match cfg.tcp {
            Some(l) => {
                l.set_nonblocking(true)?;
                let mut l = TcpListener::from_std(l);
                poll.registry().register(&mut l, TCP_LISTENER, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        let waker = Waker::new(poll.registry(), WAKER)?;
        let base = (cfg.index as u64) << 40;
        let mut sfu = Sfu::new(cfg.udp_public, cfg.limits).with_id_base(base);
        if let Some(tcp) = cfg.tcp_public {
            sfu = sfu.with_tcp(tcp);
        }
        let shard = Shard {
            index: cfg.index,
            sfu,
            poll,
            udp,
            udp_public: cfg.udp_public,
            tcp_listener,
            tcp_public: cfg.tcp_public,
            conns: TcpConns::new(FIRST_CONN),
            commands,
            events: HashMap::new(),
            recv: RecvBatch::new(),
            out: SendBatch::new(),
            stats: Stats::default(),
            stopping: false,
            observer: cfg.observer,
            load: cfg.load,
        };
        Ok((shard, waker))
    }

    /// Runs until [`Command::Stop`] or until the command channel closes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut next_stats = Instant::now() + Duration::from_secs(1);
        while !self.stopping {
            let now = Instant::now();
            let due = self
                .sfu
                .poll_timeout()
                .unwrap_or(now + Duration::from_secs(1))
                .min(next_stats);
            let wait = due.saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(shard = self.index, error = %e, "poll failed; the shard stops");
                    return;
                }
            }
            let now = Instant::now();
            self.stats.wakeups += 1;
            for ev in events.iter() {
                match ev.token() {
                    UDP => self.read_udp(now),
                    TCP_LISTENER => self.accept_tcp(now),
                    WAKER => self.run_commands(now),
                    token => self.on_conn(token, ev, now),
                }
            }
            if self.sfu.poll_timeout().is_some_and(|t| t <= now) {
                self.stats.max_lag = self.stats.max_lag.max(now.saturating_duration_since(due));
                self.sfu.handle_timeout(now);
            }
            self.flush();
            if now >= next_stats {
                self.publish_stats();
                self.conns.close_idle(now, &self.poll);
                next_stats = now + Duration::from_secs(1);
            }
        }
        for (id, tx) in self.events.drain() {
            let _ = tx.send(Event::Signal(Signal::Ended("server stopping")));
            tracing::debug!(peer = id, "ended: shard stopping");
        }
    }

    /// Reads the UDP socket dry, up to 32 datagrams per system call, and sends what they caused once per
    /// batch.
    fn read_udp(&mut self, now: Instant) {
        loop {
            let n = match self.recv.recv(self.udp.as_raw_fd()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An error reported for an earlier send concerns one peer only, and is consumed by the call.
                Err(e) => {
                    tracing::trace!(shard = self.index, error = %e, "udp receive");
                    continue;
                }
            };
            for i in 0..n {
                let Some((from, slot, len)) = self.recv.get(i) else {
                    continue;
                };
                self.stats.packets_in += 1;
                self.stats.bytes_in += len as u64;
                let data = &slot[HEADROOM..HEADROOM + len];
                self.sfu.handle_receive(now, Protocol::Udp, from, self.udp_public, data);
            }
            self.flush();
            // A short batch means the queue was empty (see `RecvBatch::recv`), so no call just to hear EAGAIN:
            // the socket is unconnected and sets no IP_RECVERR, so no pending ICMP error cuts a batch short.
            if n < BATCH {
                return;
            }
        }
    }

    fn accept_tcp(&mut self, now: Instant) {
        let Some(listener) = &self.tcp_listener else { return };
        loop {
            match listener.accept() {
                Ok((stream, from)) => self.conns.add(stream, from, now, &self.poll),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(shard = self.index, error = %e, "ice-tcp accept");
                    return;
                }
            }
        }
    }

    fn on_conn(&mut self, token: Token, ev: &mio::event::Event, now: Instant) {
        let Some(public) = self.tcp_public else { return };
        let sfu = &mut self.sfu;
        let stats = &mut self.stats;
        self.conns.on_event(token, ev, now, &self.poll, |from, frame| {
            stats.packets_in += 1;
            stats.bytes_in += frame.len() as u64;
            sfu.handle_receive(now, Protocol::Tcp, from, public, frame);
        });
        self.flush();
    }

    fn run_commands(&mut self, now: Instant) {
        loop {
            match self.commands.try_recv() {
                Ok(cmd) => self.command(cmd, now),
                Err(TryRecvError::Empty) => {
                    // A join or leave counts at once: a draining node that just took a participant must not
                    // read as empty and exit before its next once-a-second stats.
                    self.publish_load();
                    return;
                }
                Err(TryRecvError::Disconnected) => {
                    self.stopping = true;
                    return;
                }
            }
            self.flush();
        }
    }

    fn command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Join(join, events, reply) => {
                let req = JoinRequest {
                    room: &join.room,
                    identity: &join.identity,
                    publish: join.publish,
                    subscribe: join.subscribe,
                    server_offers: join.server_offers,
                    links: &join.links,
                };
                let joined = self.sfu.join(req, join.offer, now);
                if let Ok(j) = &joined {
                    self.events.insert(j.id, events);
                }
                if let Err(Ok(j)) = reply.send(joined) {
                    // The signaling side gave up waiting: nobody will ever talk to this participant.
                    self.sfu.leave(j.id, now);
                }
            }
            Command::Answer(id, answer, reply) => {
                let _ = reply.send(self.sfu.handle_answer(id, answer, now).map_err(|e| e.to_string()));
            }
            Command::Offer(id, offer) => {
                // Everything produced before this offer is taken goes out first (the flush after each event
                // has sent it already; this keeps it so), then the answer, then what the offer caused.
                self.flush();
                let answer = self.sfu.handle_offer(id, offer, now).map_err(|e| e.to_string());
                if let Some(tx) = self.events.get(&id) {
                    let _ = tx.send(Event::Answer(answer));
                }
            }
            Command::Trickle(id, candidate) => {
                if let Err(e) = self.sfu.add_remote_candidate(id, &candidate) {
                    tracing::debug!(peer = id, error = %e, "trickled candidate refused");
                }
            }
            Command::Mute(id, track, muted) => {
                self.sfu.set_muted(id, &track, muted);
            }
            Command::Subscribe(id, track, pref, reply) => {
                let _ = reply.send(self.sfu.set_preference(id, &track, pref, now));
            }
            Command::Attach(id, events, offer, reply) => {
                let Some(roster) = self.sfu.roster(id) else {
                    let _ = reply.send(None);
                    return;
                };
                // The old socket's channel is dropped here, which tells its task it was replaced.
                self.events.insert(id, events);
                let answer = match offer {
                    Some(o) => Some(self.sfu.handle_offer(id, o, now).map_err(|e| e.to_string())),
                    None => {
                        self.sfu.reoffer(id, now);
                        None
                    }
                };
                let _ = reply.send(Some((roster, answer)));
            }
            Command::Leave(id) => {
                self.sfu.leave(id, now);
                self.events.remove(&id);
            }
            Command::CloseRoom(room) => self.sfu.close_room(&room, "the call ended", now),
            Command::EnableLinks(key) => self.sfu.enable_links(key),
            Command::Stop => self.stopping = true,
        }
    }

    /// Sends what the core queued: datagrams, and messages to participants.
    fn flush(&mut self) {
        while let Some(t) = self.sfu.poll_transmit() {
            self.stats.packets_out += 1;
            self.stats.bytes_out += t.contents.len() as u64;
            match t.proto {
                Protocol::Udp => {
                    if self.out.is_full() {
                        self.flush_udp();
                    }
                    self.out.push(t.destination, &t.contents);
                }
                _ => self.conns.send(t.destination, &t.contents, &self.poll),
            }
        }
        self.flush_links();
        self.flush_udp();
        while let Some((id, signal)) = self.sfu.poll_signal() {
            let ended = matches!(signal, Signal::Ended(_));
            if let Some(tx) = self.events.get(&id) {
                let _ = tx.send(Event::Signal(signal));
            }
            if ended {
                self.events.remove(&id);
            }
        }
        while let Some(r) = self.sfu.poll_media_report() {
            if let Some(o) = &self.observer {
                o(r);
            }
        }
    }

    /// Traffic on the links to other SFU nodes (rooms that span nodes).
    fn publish_links(&self, label: &[(&'static str, String); 1]) {
        let l = self.sfu.link_stats();
        for (direction, packets, bytes) in [("out", l.packets_out, l.bytes_out), ("in", l.packets_in, l.bytes_in)] {
            let labels = [label[0].clone(), ("direction", direction.to_string())];
            metrics::counter!("hualu_sfu_link_packets_total", &labels).absolute(packets);
            metrics::counter!("hualu_sfu_link_bytes_total", &labels).absolute(bytes);
        }
        metrics::counter!("hualu_sfu_link_media_sent_total", label).absolute(l.media_out);
        metrics::counter!("hualu_sfu_link_refused_total", label).absolute(l.refused);
        metrics::gauge!("hualu_sfu_link_partners", label).set(self.sfu.link_partners() as f64);
    }

    /// Subscribers' receiver reports as summaries, and feedback totals as counters.
    fn publish_quality(&mut self, label: &[(&'static str, String); 1]) {
        for s in self.sfu.take_quality_samples() {
            if let Some(loss) = s.loss {
                metrics::histogram!("hualu_sfu_subscriber_loss_ratio", label).record(f64::from(loss));
            }
            if let Some(rtt) = s.rtt {
                metrics::histogram!("hualu_sfu_subscriber_rtt_seconds", label).record(rtt.as_secs_f64());
            }
            if let Some(jitter) = s.jitter {
                metrics::histogram!("hualu_sfu_subscriber_jitter_seconds", label).record(jitter.as_secs_f64());
            }
        }
        let f = self.sfu.feedback();
        metrics::counter!("hualu_sfu_nacks_received_total", label).absolute(f.nacks);
        for (kind, n) in [("pli", f.plis), ("fir", f.firs)] {
            let labels = [label[0].clone(), ("kind", kind.to_string())];
            metrics::counter!("hualu_sfu_keyframe_requests_received_total", &labels).absolute(n);
        }
        metrics::counter!("hualu_sfu_keyframe_requests_relayed_total", label).absolute(f.keyframes_relayed);
        metrics::counter!("hualu_sfu_keyframe_requests_throttled_total", label).absolute(f.keyframes_throttled);
        metrics::counter!("hualu_sfu_layer_switches_total", label).absolute(self.sfu.layer_switches());
    }

    /// Queues the datagrams the core has for other SFU nodes (rooms that span nodes) with the others.
    fn flush_links(&mut self) {
        let (out, udp, stats) = (&mut self.out, &self.udp, &mut self.stats);
        self.sfu.drain_links(|to, data| {
            if out.is_full() {
                stats.send_drops += out.flush(udp.as_raw_fd()).dropped as u64;
            }
            out.push(to, data);
        });
    }

    fn flush_udp(&mut self) {
        if !self.out.is_empty() {
            let flushed = self.out.flush(self.udp.as_raw_fd());
            self.stats.send_drops += flushed.dropped as u64;
        }
    }

    /// The shard's rooms and participants, for the node's load (heartbeats, drain).
    fn publish_load(&self) {
        self.load.rooms.store(self.sfu.room_count() as u64, Ordering::Relaxed);
        self.load
            .participants
            .store(self.sfu.peer_count() as u64, Ordering::Relaxed);
    }

    fn publish_stats(&mut self) {
        let shard = self.index.to_string();
        let s = std::mem::take(&mut self.stats);
        let label = [("shard", shard)];
        self.publish_load();
        self.load
            .packets
            .fetch_add(s.packets_in + s.packets_out, Ordering::Relaxed);
        metrics::gauge!("hualu_sfu_rooms", &label).set(self.sfu.room_count() as f64);
        metrics::gauge!("hualu_sfu_participants", &label).set(self.sfu.peer_count() as f64);
        metrics::gauge!("hualu_sfu_tracks", &label).set(self.sfu.track_count() as f64);
        metrics::gauge!("hualu_sfu_ice_tcp_connections", &label).set(self.conns.len() as f64);
        metrics::counter!("hualu_sfu_packets_in_total", &label).increment(s.packets_in);
        metrics::counter!("hualu_sfu_bytes_in_total", &label).increment(s.bytes_in);
        metrics::counter!("hualu_sfu_packets_out_total", &label).increment(s.packets_out);
        metrics::counter!("hualu_sfu_bytes_out_total", &label).increment(s.bytes_out);
        metrics::gauge!("hualu_sfu_loop_lag_seconds", &label).set(s.max_lag.as_secs_f64());
        metrics::counter!("hualu_sfu_loop_wakeups_total", &label).increment(s.wakeups);
        metrics::counter!("hualu_sfu_send_drops_total", &label).increment(s.send_drops);
        metrics::counter!("hualu_sfu_rtc_timeouts_total", &label).absolute(self.sfu.rtc_timeouts());
        self.publish_links(&label);
        self.publish_quality(&label);
        let panics = self.sfu.panics();
        metrics::counter!("hualu_sfu_peer_panics_total", &label).absolute(panics);
    }
}
