//! The relay sockets of one shard, in a slab indexed by [`RelayHandle`]; each is registered with the shard's
//! poller under a token derived from its handle. TCP allocations (RFC 6062) add a listener per allocation,
//! outgoing connections under way, and peer connections parked until a ConnectionBind claims them, possibly on
//! another shard.

use super::batch;
use super::sockets::{relay_socket, tcp_relay_listener, tcp_relay_stream};
use crate::core::{RelayHandle, RelaySockets};
use ahash::HashMap;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Tokens at and above this belong to relay sockets.
pub const RELAY_TOKEN_BASE: usize = 1 << 32;
/// Tokens of outgoing TCP connections under way: this plus the connection id.
pub const CONNECT_TOKEN_BASE: usize = 1 << 34;

/// Peer TCP connections waiting for their ConnectionBind, shared by all shards (control path only).
pub type Parked = Arc<Mutex<HashMap<u32, (TcpStream, Instant)>>>;

/// One relay socket.
pub enum RelaySocket {
    /// A UDP allocation's socket.
    Udp(UdpSocket),
    /// A TCP allocation's listener.
    Tcp(TcpListener),
}

/// A shard's relay sockets.
pub struct Relays {
    registry: Registry,
    slab: Vec<Option<RelaySocket>>,
    /// The kernel's last reported receive-drop count of each socket.
    drops: Vec<u32>,
    free: Vec<u32>,
    buffer: usize,
    /// Outgoing TCP connections under way, by connection id.
    connecting: HashMap<u32, (RelayHandle, TcpStream)>,
    /// Connects that failed before the poller could report them: (relay, id).
    pub failed_connects: Vec<(RelayHandle, u32)>,
    /// Peer connections waiting for their ConnectionBind.
    pub parked: Parked,
    /// Datagrams the kernel refused to take.
    pub send_drops: u64,
}

impl Relays {
    /// An empty slab registering with `registry`.
    pub fn new(registry: Registry, buffer: usize, parked: Parked) -> Self {
        Self {
            registry,
            slab: Vec::new(),
            drops: Vec::new(),
            free: Vec::new(),
            buffer,
            connecting: HashMap::default(),
            failed_connects: Vec::new(),
            parked,
            send_drops: 0,
        }
    }

    /// The socket behind a handle.
    pub fn get(&self, relay: RelayHandle) -> Option<&RelaySocket> {
        self.slab.get(relay.0 as usize)?.as_ref()
    }

    /// The raw fd of a UDP relay socket.
    pub fn fd(&self, relay: RelayHandle) -> Option<std::os::fd::RawFd> {
        match self.get(relay)? {
            RelaySocket::Udp(s) => Some(s.as_raw_fd()),
            RelaySocket::Tcp(_) => None,
        }
    }

    /// Takes the kernel's running drop count for `relay`; returns how many drops are new.
    pub fn note_drops(&mut self, relay: RelayHandle, count: u32) -> u64 {
        self.drops
            .get_mut(relay.0 as usize)
            .map_or(0, |last| u64::from(count.wrapping_sub(std::mem::replace(last, count))))
    }

    /// Sends `payload` from `relay` to `peer`.
    pub fn send(&mut self, relay: RelayHandle, peer: SocketAddr, payload: &[u8]) {
        let sent = self.fd(relay).is_some_and(|fd| batch::send_to(fd, peer, payload));
        if !sent {
            self.send_drops += 1;
        }
    }

    /// An outgoing connection reported writable: returns its relay and the stream, now finished or failed.
    pub fn take_connecting(&mut self, id: u32) -> Option<(RelayHandle, TcpStream)> {
        let (relay, mut stream) = self.connecting.remove(&id)?;
        let _ = self.registry.deregister(&mut stream);
        Some((relay, stream))
    }

    /// Puts back an outgoing connection whose handshake is still under way.
    pub fn resume_connecting(&mut self, id: u32, relay: RelayHandle, mut stream: TcpStream) {
        let token = Token(CONNECT_TOKEN_BASE + id as usize);
        if self.registry.register(&mut stream, token, Interest::WRITABLE).is_ok() {
            self.connecting.insert(id, (relay, stream));
        } else {
            self.failed_connects.push((relay, id));
        }
    }

    /// Holds a peer connection until a ConnectionBind on any shard claims it.
    pub fn park(&self, id: u32, stream: TcpStream) {
        let mut p = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        p.insert(id, (stream, Instant::now()));
    }

    fn insert(&mut self, mut socket: RelaySocket) -> io::Result<RelayHandle> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slab.push(None);
                self.drops.push(0);
                (self.slab.len() - 1) as u32
            }
        };
        self.drops[index as usize] = 0;
        let token = Token(RELAY_TOKEN_BASE + index as usize);
        let registered = match &mut socket {
            RelaySocket::Udp(s) => self.registry.register(s, token, Interest::READABLE),
            RelaySocket::Tcp(l) => self.registry.register(l, token, Interest::READABLE),
        };
        if let Err(e) = registered {
            self.free.push(index);
            return Err(e);
        }
        self.slab[index as usize] = Some(socket);
        Ok(RelayHandle(index))
    }
}

impl RelaySockets for Relays {
    fn open(&mut self, addr: SocketAddr) -> io::Result<RelayHandle> {
        let socket = relay_socket(addr, self.buffer)?;
        self.insert(RelaySocket::Udp(socket))
    }

    fn open_tcp(&mut self, addr: SocketAddr) -> io::Result<RelayHandle> {
        let listener = tcp_relay_listener(addr)?;
        self.insert(RelaySocket::Tcp(listener))
    }

    fn connect(&mut self, relay: RelayHandle, local: SocketAddr, peer: SocketAddr, id: u32) {
        let started = tcp_relay_stream(local, peer).and_then(|mut s| {
            let token = Token(CONNECT_TOKEN_BASE + id as usize);
            self.registry.register(&mut s, token, Interest::WRITABLE)?;
            Ok(s)
        });
        match started {
            Ok(stream) => {
                self.connecting.insert(id, (relay, stream));
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TCP connect to peer failed at once");
                self.failed_connects.push((relay, id));
            }
        }
    }

    fn close_connection(&mut self, id: u32) {
        if self.take_connecting(id).is_none() {
            let mut p = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            p.remove(&id);
        }
    }

    fn close(&mut self, relay: RelayHandle) {
        let Some(slot) = self.slab.get_mut(relay.0 as usize) else {
            return;
        };
        let Some(socket) = slot.take() else { return };
        match socket {
            RelaySocket::Udp(mut s) => {
                let _ = self.registry.deregister(&mut s);
            }
            RelaySocket::Tcp(mut l) => {
                let _ = self.registry.deregister(&mut l);
            }
        }
        self.free.push(relay.0);
    }
}
