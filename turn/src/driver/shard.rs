//! One shard: an event-loop thread owning its listeners (SO_REUSEPORT copies), its relay sockets, its client
//! connections and its [`Server`] core. Nothing here is shared with other shards but [`Shared`].

use super::batch::{RecvBatch, SendBatch, BATCH, HEADROOM};
use super::metrics::Publisher;
use super::relays::{Parked, RelaySocket, Relays, CONNECT_TOKEN_BASE, RELAY_TOKEN_BASE};
use super::stream::{Conn, ReadOutcome};
use crate::core::Event;
use crate::core::{ClientAddr, RelayHandle, Server, Transport};
use ahash::HashMap;
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod tcp_relay;

/// Tokens of stream listeners start here; UDP listeners use 0..STREAM_LISTENER_BASE.
const STREAM_LISTENER_BASE: usize = 1 << 16;
/// Tokens of client connections start here.
const CONN_TOKEN_BASE: usize = 1 << 40;
/// Tokens of peer connections spliced to a client connection (RFC 6062): this plus the client's index.
const PIPE_TOKEN_BASE: usize = 1 << 44;
/// A connection that holds no allocation is closed after this long without input.
const IDLE_WITHOUT_ALLOCATION: Duration = Duration::from_secs(30);
/// Most client connections per shard.
const MAX_CONNS: usize = 100_000;

/// A stream listener and whether it speaks TLS.
pub struct StreamListener {
    /// The socket.
    pub socket: TcpListener,
    /// Whether connections start with a TLS handshake.
    pub tls: bool,
}

/// What a shard starts with.
pub struct ShardInit {
    /// The core.
    pub server: Server,
    /// UDP listeners; their index is [`ClientAddr::listener`].
    pub udp: Vec<UdpSocket>,
    /// TCP and TLS listeners.
    pub streams: Vec<StreamListener>,
    /// The TLS config, when any listener speaks TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Relay socket buffer size.
    pub relay_buffer: usize,
    /// Set to stop the shard.
    pub stop: Arc<AtomicBool>,
    /// TCP peer connections waiting for a ConnectionBind, shared by all shards.
    pub parked: Parked,
}

/// A running shard's state.
pub struct Shard {
    poll: Poll,
    server: Server,
    relays: Relays,
    udp: Vec<UdpSocket>,
    out: Vec<SendBatch>,
    streams: Vec<StreamListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    conns: Vec<Option<Conn>>,
    free_conns: Vec<usize>,
    conn_by_addr: HashMap<SocketAddr, usize>,
    recv: RecvBatch,
    read_scratch: Vec<u8>,
    publisher: Publisher,
    send_drops: u64,
    /// Datagrams the kernel dropped on our sockets, and each listener's last reported count.
    receive_drops: u64,
    listener_drops: Vec<u32>,
    /// Bytes spliced through TCP allocations: client to peer, peer to client.
    tcp_relayed: [u64; 2],
    stop: Arc<AtomicBool>,
}

impl Shard {
    /// Registers everything with a new poller.
    pub fn new(init: ShardInit) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let mut udp = init.udp;
        for (i, s) in udp.iter_mut().enumerate() {
            poll.registry().register(s, Token(i), Interest::READABLE)?;
        }
        let mut streams = init.streams;
        for (i, l) in streams.iter_mut().enumerate() {
            poll.registry()
                .register(&mut l.socket, Token(STREAM_LISTENER_BASE + i), Interest::READABLE)?;
        }
        let relays = Relays::new(poll.registry().try_clone()?, init.relay_buffer, init.parked);
        let listener_drops = vec![0; udp.len()];
        Ok(Self {
            out: udp.iter().map(|_| SendBatch::new()).collect(),
            poll,
            server: init.server,
            relays,
            udp,
            streams,
            tls: init.tls,
            conns: Vec::new(),
            free_conns: Vec::new(),
            conn_by_addr: HashMap::default(),
            recv: RecvBatch::new(),
            read_scratch: vec![0; 65_536],
            publisher: Publisher::default(),
            send_drops: 0,
            receive_drops: 0,
            listener_drops,
            tcp_relayed: [0; 2],
            stop: init.stop,
        })
    }

    /// Runs until the stop flag is set, then releases every allocation.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wake = self.server.poll_timeout().min(next_tick);
            let timeout = wake.saturating_duration_since(now).min(Duration::from_millis(250));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll failed; shard stops");
                    break;
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                self.dispatch_contained(ev, now);
            }
            self.server.handle_timeout(now, &mut self.relays);
            self.flush(now);
            if now >= next_tick {
                next_tick = now + Duration::from_secs(1);
                self.tick(now);
            }
        }
        self.server.close_all(&mut self.relays);
        self.tick(Instant::now());
    }

    /// Handles one event; a panic (a bug) is logged and counted, and the shard goes on with the next event
    /// rather than dying with its SO_REUSEPORT sockets still bound, which would black-hole its clients.
    /// `catch_unwind` costs nothing unless something panics.
    fn dispatch_contained(&mut self, ev: &mio::event::Event, now: Instant) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.dispatch(ev, now)));
        if outcome.is_err() {
            tracing::error!(
                token = ev.token().0,
                "bug: a panic while handling an event; event dropped"
            );
            super::metrics::panicked();
        }
    }

    fn dispatch(&mut self, ev: &mio::event::Event, now: Instant) {
        let t = ev.token().0;
        if t >= PIPE_TOKEN_BASE {
            self.on_pipe_peer(t - PIPE_TOKEN_BASE, ev.is_writable(), now);
        } else if t >= CONN_TOKEN_BASE {
            self.on_conn(t - CONN_TOKEN_BASE, ev.is_writable(), now);
        } else if t >= CONNECT_TOKEN_BASE {
            self.on_connected((t - CONNECT_TOKEN_BASE) as u32, now);
        } else if t >= RELAY_TOKEN_BASE {
            self.on_relay(RelayHandle((t - RELAY_TOKEN_BASE) as u32), now);
        } else if t >= STREAM_LISTENER_BASE {
            self.on_accept(t - STREAM_LISTENER_BASE, now);
        } else {
            self.on_udp(t, now);
        }
    }

    /// Datagrams from clients on UDP listener `i`.
    fn on_udp(&mut self, i: usize, now: Instant) {
        let fd = self.udp[i].as_raw_fd();
        loop {
            let n = match self.recv.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    return;
                }
            };
            for k in 0..n {
                let Some((addr, slot, len)) = self.recv.get(k) else {
                    continue;
                };
                let from = ClientAddr {
                    transport: Transport::Udp,
                    addr,
                    listener: i as u16,
                };
                let data = &slot[HEADROOM..HEADROOM + len];
                let Some(out) = self.server.handle_client(from, data, now, &mut self.relays) else {
                    continue;
                };
                let Some(dest) = self.server.local_relay(out.peer) else {
                    self.relays.send(out.relay, out.peer, out.payload);
                    continue;
                };
                // Hairpin: the peer is one of our own relayed addresses. The payload sits at least 4 bytes
                // (a ChannelData header) after the slot's headroom, so it can be framed again in place.
                let (source, len) = (self.server.relay_addr(out.relay), out.payload.len());
                let start = out.payload.as_ptr() as usize - slot.as_ptr() as usize - HEADROOM;
                let Some(source) = source else { continue };
                let buf = &mut slot[start..];
                let Some(tc) = self.server.handle_peer(dest, source, buf, len, now) else {
                    continue;
                };
                outbound!(self).deliver(tc.to, self.server.framed(&tc.framed, buf));
            }
            if let Some(count) = n.checked_sub(1).and_then(|last| self.recv.drops(last)) {
                let seen = std::mem::replace(&mut self.listener_drops[i], count);
                self.receive_drops += u64::from(count.wrapping_sub(seen));
            }
            self.flush(now);
            if n < BATCH {
                return;
            }
        }
    }

    /// Datagrams from peers on a relay socket.
    fn on_relay(&mut self, relay: RelayHandle, now: Instant) {
        if matches!(self.relays.get(relay), Some(RelaySocket::Tcp(_))) {
            return self.on_tcp_peer_accept(relay, now);
        }
        let Some(fd) = self.relays.fd(relay) else {
            return;
        };
        loop {
            let Ok(n) = self.recv.recv(fd) else { return };
            for k in 0..n {
                let Some((peer, slot, len)) = self.recv.get(k) else {
                    continue;
                };
                let Some(tc) = self.server.handle_peer(relay, peer, slot, len, now) else {
                    continue;
                };
                outbound!(self).deliver(tc.to, self.server.framed(&tc.framed, slot));
            }
            if let Some(count) = n.checked_sub(1).and_then(|last| self.recv.drops(last)) {
                self.receive_drops += self.relays.note_drops(relay, count);
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// Sends control messages the core queued, and the UDP batches.
    fn flush(&mut self, now: Instant) {
        for (relay, id) in std::mem::take(&mut self.relays.failed_connects) {
            self.server.handle_peer_connected(relay, id, false, now);
        }
        while let Some(t) = self.server.poll_transmit() {
            outbound!(self).deliver(t.to, &t.data);
        }
        for (i, batch) in self.out.iter_mut().enumerate() {
            if !batch.is_empty() {
                self.send_drops += batch.flush(self.udp[i].as_raw_fd()).dropped as u64;
            }
        }
    }

    fn on_accept(&mut self, i: usize, now: Instant) {
        loop {
            let (stream, addr) = match self.streams[i].socket.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    return;
                }
            };
            if self.conn_by_addr.len() >= MAX_CONNS {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let tls = match (self.streams[i].tls, &self.tls) {
                (false, _) => None,
                (true, Some(cfg)) => match rustls::ServerConnection::new(cfg.clone()) {
                    Ok(c) => Some(Box::new(c)),
                    Err(_) => continue,
                },
                (true, None) => continue,
            };
            self.add_conn(Conn::new(stream, addr, i as u16, tls, now));
        }
    }

    fn add_conn(&mut self, mut conn: Conn) {
        let idx = self.free_conns.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let token = Token(CONN_TOKEN_BASE + idx);
        if self
            .poll
            .registry()
            .register(&mut conn.stream, token, Interest::READABLE)
            .is_err()
        {
            self.free_conns.push(idx);
            return;
        }
        self.conn_by_addr.insert(conn.addr, idx);
        super::metrics::connection(conn.transport(), 1.0);
        self.conns[idx] = Some(conn);
    }

    fn on_conn(&mut self, idx: usize, writable: bool, now: Instant) {
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        if writable {
            conn.flush();
            if conn.pending() == 0 && conn.want_write {
                conn.want_write = false;
                let token = Token(CONN_TOKEN_BASE + idx);
                let _ = self
                    .poll
                    .registry()
                    .reregister(&mut conn.stream, token, Interest::READABLE);
            }
        }
        loop {
            let Some(Some(conn)) = self.conns.get_mut(idx) else {
                return;
            };
            let outcome = conn.read(&mut self.read_scratch);
            conn.last_read = now;
            if conn.pipe.is_some() {
                self.pipe_client_input(idx, outcome);
            } else {
                self.frames(idx, outcome, now);
            }
            if outcome != ReadOutcome::More {
                return;
            }
        }
    }

    /// Hands every complete frame of client connection `idx` to the core; closes the connection when it breaks
    /// the framing or `outcome` says it closed, and splices it after a ConnectionBind.
    fn frames(&mut self, idx: usize, outcome: ReadOutcome, now: Instant) {
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        let from = conn.client();
        let mut bind = None;
        let broken = loop {
            match conn.next_frame() {
                Ok(Some(frame)) => {
                    let len = frame.len();
                    if let Some(out) = self.server.handle_client(from, frame, now, &mut self.relays) {
                        self.relays.send(out.relay, out.peer, out.payload);
                    }
                    conn.consume(len);
                    if let Some(Event::Bind { id, .. }) = self.server.poll_event() {
                        bind = Some(id);
                        break false;
                    }
                }
                Ok(None) => break false,
                Err(()) => break true,
            }
        };
        if broken || matches!(outcome, ReadOutcome::Closed) {
            return self.close_conn(idx);
        }
        if let Some(id) = bind {
            self.flush(now);
            self.start_pipe(idx, id);
        }
    }

    fn close_conn(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Some(mut pipe) = conn.pipe.take() {
            let _ = self.poll.registry().deregister(&mut pipe.peer);
            self.server.connection_unbound(pipe.id);
        }
        self.conn_by_addr.remove(&conn.addr);
        self.free_conns.push(idx);
        super::metrics::connection(conn.transport(), -1.0);
        self.server.client_closed(conn.client(), &mut self.relays);
    }

    /// Once a second: idle connections, metrics.
    fn tick(&mut self, now: Instant) {
        let idle: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                // A spliced data connection lives as long as its allocation, however quiet its client.
                let c = c.as_ref().filter(|c| c.pipe.is_none())?;
                let idle = now.saturating_duration_since(c.last_read) > IDLE_WITHOUT_ALLOCATION;
                (idle && !self.server.has_allocation(c.client())).then_some(i)
            })
            .collect();
        for i in idle {
            self.close_conn(i);
        }
        self.close_revoked_pipes();
        self.publisher.publish(
            self.server.stats(),
            self.send_drops + self.relays.send_drops,
            self.receive_drops,
            self.tcp_relayed,
        );
    }
}

/// Borrows the outgoing side of a shard field by field, so a packet still in a receive slot (or the core's
/// scratch buffer) can be sent without copying it out first; a method would borrow all of `self`.
macro_rules! outbound {
    ($shard:ident) => {
        Outbound {
            udp: &$shard.udp,
            out: &mut $shard.out,
            conns: &mut $shard.conns,
            by_addr: &$shard.conn_by_addr,
            drops: &mut $shard.send_drops,
            poll: &$shard.poll,
        }
    };
}
use outbound;

/// The outgoing side of a shard, borrowed apart from the receive buffers so a received packet can be sent
/// without a copy out of them.
struct Outbound<'a> {
    udp: &'a [UdpSocket],
    out: &'a mut [SendBatch],
    conns: &'a mut [Option<Conn>],
    by_addr: &'a HashMap<SocketAddr, usize>,
    drops: &'a mut u64,
    poll: &'a Poll,
}

impl Outbound<'_> {
    fn deliver(&mut self, to: ClientAddr, bytes: &[u8]) {
        if to.transport == Transport::Udp {
            let i = usize::from(to.listener);
            let (Some(batch), Some(sock)) = (self.out.get_mut(i), self.udp.get(i)) else {
                return;
            };
            if batch.is_full() {
                *self.drops += batch.flush(sock.as_raw_fd()).dropped as u64;
            }
            if !batch.push(to.addr, bytes) {
                *self.drops += 1;
            }
            return;
        }
        let Some(&idx) = self.by_addr.get(&to.addr) else {
            return;
        };
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        if !conn.send(bytes) {
            *self.drops += 1;
        }
        conn.watch_writable(self.poll.registry(), Token(CONN_TOKEN_BASE + idx));
    }
}
