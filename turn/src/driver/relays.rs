//! The relay sockets of one shard, in a slab indexed by [`RelayHandle`]; each is registered with the shard's
//! poller under a token derived from its handle.

use super::batch;
use super::sockets::relay_socket;
use crate::core::{RelayHandle, RelaySockets};
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Tokens at and above this belong to relay sockets.
pub const RELAY_TOKEN_BASE: usize = 1 << 32;

/// A shard's relay sockets.
pub struct Relays {
    registry: Registry,
    slab: Vec<Option<mio::net::UdpSocket>>,
    /// The kernel's last reported receive-drop count of each socket.
    drops: Vec<u32>,
    free: Vec<u32>,
    buffer: usize,
    /// Datagrams the kernel refused to take.
    pub send_drops: u64,
}

impl Relays {
    /// An empty slab registering with `registry`.
    pub fn new(registry: Registry, buffer: usize) -> Self {
        Self {
            registry,
            slab: Vec::new(),
            drops: Vec::new(),
            free: Vec::new(),
            buffer,
            send_drops: 0,
        }
    }

    /// The raw fd of a relay socket.
    pub fn fd(&self, relay: RelayHandle) -> Option<std::os::fd::RawFd> {
        self.slab.get(relay.0 as usize)?.as_ref().map(|s| s.as_raw_fd())
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
}

impl RelaySockets for Relays {
    fn open(&mut self, addr: SocketAddr) -> io::Result<RelayHandle> {
        let mut socket = relay_socket(addr, self.buffer)?;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slab.push(None);
                self.drops.push(0);
                (self.slab.len() - 1) as u32
            }
        };
        self.drops[index as usize] = 0;
        if let Err(e) = self.registry.register(
            &mut socket,
            Token(RELAY_TOKEN_BASE + index as usize),
            Interest::READABLE,
        ) {
            self.free.push(index);
            return Err(e);
        }
        self.slab[index as usize] = Some(socket);
        Ok(RelayHandle(index))
    }

    fn close(&mut self, relay: RelayHandle) {
        let Some(slot) = self.slab.get_mut(relay.0 as usize) else {
            return;
        };
        if let Some(mut socket) = slot.take() {
            let _ = self.registry.deregister(&mut socket);
            self.free.push(relay.0);
        }
    }
}
