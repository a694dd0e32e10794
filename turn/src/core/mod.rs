//! The sans-IO TURN core: messages, authentication, allocations, permissions, channels and timers.
//!
//! A [`Server`] owns the allocations of one shard. It never reads a clock, opens a socket or spawns; its driver
//! hands it input with the current time and carries out what it returns.
//!
//! The drain rule, as in str0m and quinn: after any `handle_*` call, the driver sends what the call returned,
//! then drains [`Server::poll_transmit`] until it returns `None`, and sleeps at most until
//! [`Server::poll_timeout`], when it calls [`Server::handle_timeout`].
//!
//! ```no_run
//! # use hualu_turn::core::*;
//! # fn recv() -> (ClientAddr, Vec<u8>) { unimplemented!() }
//! # fn send_to_peer(_: RelayHandle, _: std::net::SocketAddr, _: &[u8]) {}
//! # fn send_to_client(_: Transmit) {}
//! # fn run(mut server: Server, relays: &mut impl RelaySockets) {
//! loop {
//!     let (from, datagram) = recv();
//!     let now = std::time::Instant::now();
//!     if let Some(out) = server.handle_client(from, &datagram, now, relays) {
//!         send_to_peer(out.relay, out.peer, out.payload);
//!     }
//!     while let Some(t) = server.poll_transmit() {
//!         send_to_client(t);
//!     }
//!     if server.poll_timeout() <= now {
//!         server.handle_timeout(now, relays);
//!     }
//! }
//! # }
//! ```
//!
//! Hot paths: ChannelData from a client ([`Server::handle_client`]) and any datagram from a peer
//! ([`Server::handle_peer`]) do a few hash lookups on `&mut self`, write at most a 4-byte header in place, and
//! allocate nothing.

mod allocation;
pub mod auth;
mod limit;
pub mod policy;
mod ports;
mod reply;
mod request;
mod shared;
mod stats;
mod tcp;
mod types;

#[cfg(test)]
mod tests;

pub use auth::Authenticator;
pub use policy::PeerPolicy;
pub use shared::{CoreConfig, Shared};
pub use stats::{AllocateResult, Stats};
pub use tcp::Event;
pub use types::{AllocationId, ClientAddr, Framed, RelayHandle, ToClient, ToPeer, Transmit, Transport};

use ahash::HashMap;
use allocation::Allocation;
use limit::SourceLimiter;
use rand::{rngs::StdRng, SeedableRng};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes a driver must leave free before a peer's payload so ChannelData can be framed in place.
pub const HEADROOM: usize = 4;
const _: () = assert!(
    HEADROOM == hualu_common::udp_batch::HEADROOM,
    "the batch buffers leave this much room"
);
/// How often lapsed allocations, permissions, channels and reservations are swept.
const SWEEP: Duration = Duration::from_secs(1);
/// How long an EVEN-PORT reservation is held (RFC 8656 §7.2: 30 s).
const RESERVATION: Duration = Duration::from_secs(30);

/// What the driver does with relay sockets. The core picks the address; the driver binds it.
pub trait RelaySockets {
    /// Binds a UDP relay socket on `addr`.
    fn open(&mut self, addr: SocketAddr) -> std::io::Result<RelayHandle>;
    /// Listens for TCP peers on `addr`: the relayed address of a TCP allocation (RFC 6062). The listener must
    /// let [`RelaySockets::connect`] bind the same address.
    fn open_tcp(&mut self, addr: SocketAddr) -> std::io::Result<RelayHandle>;
    /// Opens TCP connection `id` from `local` (a TCP allocation's address) to `peer`, then reports with
    /// [`Server::handle_peer_connected`].
    fn connect(&mut self, relay: RelayHandle, local: SocketAddr, peer: SocketAddr, id: u32);
    /// Closes TCP peer connection `id`, if the driver still holds it unbound.
    fn close_connection(&mut self, id: u32);
    /// Closes a relay socket.
    fn close(&mut self, relay: RelayHandle);
}

/// The TURN server core of one shard.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    allocations: HashMap<RelayHandle, Allocation>,
    by_client: HashMap<ClientAddr, RelayHandle>,
    /// This shard's UDP allocations by advertised relayed address, for the hairpin shortcut.
    by_relay_addr: HashMap<SocketAddr, RelayHandle>,
    limiter: SourceLimiter,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    scratch: Vec<u8>,
    rng: StdRng,
    next_id: u64,
    epoch: (Instant, u64),
    next_sweep: Instant,
    stats: Stats,
}

impl Server {
    /// Shard `index`. `now` and `unix_now` pin the core's wall clock: REST expiry and nonces are
    /// judged at `unix_now + (later_now - now)`.
    pub fn new(shared: Arc<Shared>, index: usize, seed: u64, now: Instant, unix_now: u64) -> Self {
        let c = &shared.config;
        let limiter = SourceLimiter::new(c.unauth_rate_per_sec, c.unauth_burst);
        Self {
            allocations: HashMap::default(),
            by_client: HashMap::default(),
            by_relay_addr: HashMap::default(),
            limiter,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            scratch: vec![0; 65_600],
            rng: StdRng::seed_from_u64(seed ^ index as u64),
            next_id: (index as u64) << 48,
            epoch: (now, unix_now),
            next_sweep: now + SWEEP,
            stats: Stats::default(),
            shared,
        }
    }

    /// A datagram (UDP) or a whole frame (TCP, TLS) from a client. Returns a payload to relay to a peer.
    pub fn handle_client<'a>(
        &mut self,
        from: ClientAddr,
        data: &'a [u8],
        now: Instant,
        relays: &mut impl RelaySockets,
    ) -> Option<ToPeer<'a>> {
        match data.first()? >> 6 {
            0b01 => self.channel_data(from, data, now),
            0b00 => self.stun(from, data, now, relays),
            _ => {
                tracing::trace!(%from, "neither STUN nor ChannelData");
                None
            }
        }
    }

    /// A datagram from `peer` on a relay socket. `buf[HEADROOM..HEADROOM + len]` holds the payload; the
    /// headroom lets ChannelData be framed in place.
    pub fn handle_peer(
        &mut self,
        relay: RelayHandle,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
        now: Instant,
    ) -> Option<ToClient> {
        let alloc = self.allocations.get_mut(&relay)?;
        let peer = SocketAddr::new(policy::normalise(peer.ip()), peer.port());
        if !alloc.permits(peer.ip(), now) {
            self.stats.dropped_no_permission += 1;
            return None;
        }
        if !alloc.budget.spend(len, now) {
            self.stats.dropped_bandwidth += 1;
            return None;
        }
        let to = alloc.client;
        self.stats.relayed(to.transport, false, len);
        let payload = HEADROOM..HEADROOM + len;
        let framed = match alloc.channel_of_peer.get(&peer) {
            Some(&number) => Framed::InPlace(frame_channel_data(buf, number, len, to.transport.is_stream())),
            None => Framed::Scratch(reply::data_indication(&mut self.scratch, peer, &buf[payload])?),
        };
        Some(ToClient { to, framed })
    }

    /// The bytes [`Server::handle_peer`] framed for the client: in `buf` (ChannelData written in place) or in
    /// the core's scratch buffer (a Data indication).
    pub fn framed<'a>(&'a self, framed: &Framed, buf: &'a [u8]) -> &'a [u8] {
        match framed {
            Framed::InPlace(r) => &buf[r.clone()],
            Framed::Scratch(len) => &self.scratch[..*len],
        }
    }

    /// The next control message for a client.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`Server::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_sweep
    }

    /// Expires allocations, permissions, channels and reservations.
    pub fn handle_timeout(&mut self, now: Instant, relays: &mut impl RelaySockets) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP;
        let lapsed: Vec<RelayHandle> = self
            .allocations
            .iter_mut()
            .filter_map(|(h, a)| {
                a.expire(now);
                (a.expires <= now).then_some(*h)
            })
            .collect();
        for h in lapsed {
            self.remove_allocation(h, "expired", relays);
        }
        self.shared.expire_reservations(now);
        self.expire_connections(now, relays);
    }

    /// A stream client went away: its allocation goes with it (RFC 8656 §3.1).
    pub fn client_closed(&mut self, client: ClientAddr, relays: &mut impl RelaySockets) {
        if let Some(&h) = self.by_client.get(&client) {
            self.remove_allocation(h, "connection closed", relays);
        }
    }

    /// Releases every allocation, for shutdown.
    pub fn close_all(&mut self, relays: &mut impl RelaySockets) {
        let all: Vec<RelayHandle> = self.allocations.keys().copied().collect();
        for h in all {
            self.remove_allocation(h, "server stopping", relays);
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The UDP allocation of this shard whose relayed address is `peer`, if any. A payload for such a peer can
    /// be handed to [`Server::handle_peer`] directly (as coming from the sender's relayed address) instead of
    /// going out and back in through the kernel: both parties relayed by the same server is common.
    pub fn local_relay(&self, peer: SocketAddr) -> Option<RelayHandle> {
        self.by_relay_addr.get(&peer).copied()
    }

    /// The relayed address (as peers see it) of `relay`.
    pub fn relay_addr(&self, relay: RelayHandle) -> Option<SocketAddr> {
        self.allocations.get(&relay).map(|a| a.relay_addr)
    }

    /// Whether `client` holds an allocation.
    pub fn has_allocation(&self, client: ClientAddr) -> bool {
        self.by_client.contains_key(&client)
    }

    /// Allocations on this shard.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    fn channel_data<'a>(&mut self, from: ClientAddr, data: &'a [u8], now: Instant) -> Option<ToPeer<'a>> {
        let &[n0, n1, l0, l1, ..] = data else { return None };
        let (number, len) = (u16::from_be_bytes([n0, n1]), usize::from(u16::from_be_bytes([l0, l1])));
        let payload = data.get(4..4 + len)?;
        let relay = *self.by_client.get(&from)?;
        let alloc = self.allocations.get_mut(&relay)?;
        let channel = alloc.channels.get(&number).filter(|c| c.expires > now)?;
        let peer = channel.peer;
        if !alloc.permits(peer.ip(), now) {
            self.stats.dropped_no_permission += 1;
            return None;
        }
        if !alloc.budget.spend(len, now) {
            self.stats.dropped_bandwidth += 1;
            return None;
        }
        self.stats.relayed(from.transport, true, len);
        Some(ToPeer { relay, peer, payload })
    }

    fn unix(&self, now: Instant) -> u64 {
        self.epoch.1 + now.saturating_duration_since(self.epoch.0).as_secs()
    }

    fn remove_allocation(&mut self, relay: RelayHandle, why: &'static str, relays: &mut impl RelaySockets) {
        let Some(a) = self.allocations.remove(&relay) else {
            return;
        };
        self.by_client.remove(&a.client);
        self.by_relay_addr.remove(&a.relay_addr);
        self.shared.release_quota(&a.quota_user);
        self.drop_connections(&a, relays);
        tracing::debug!(allocation = %a.id, user = %a.quota_user, why, "allocation removed");
        relays.close(a.relay);
        self.shared.give_back_port(a.local);
    }
}

/// Writes the ChannelData header into the headroom before the payload; pads to 4 bytes on streams.
fn frame_channel_data(buf: &mut [u8], number: u16, len: usize, stream: bool) -> std::ops::Range<usize> {
    buf[0..2].copy_from_slice(&number.to_be_bytes());
    buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    let mut end = HEADROOM + len;
    if stream {
        let padded = (end + 3) & !3;
        buf[end..padded].fill(0);
        end = padded;
    }
    0..end
}
