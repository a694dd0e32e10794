//! TCP allocations (RFC 6062): a relayed TCP address that accepts peer connections, Connect to reach a peer,
//! ConnectionAttempt to announce one, and ConnectionBind, which turns a fresh client connection into a raw
//! pipe to one peer connection.
//!
//! The core decides (credentials, permissions, policy, connection ids, the 30 s bind deadline); the driver
//! owns the TCP sockets. A ConnectionBind arrives on a new client connection, which SO_REUSEPORT may hand to
//! any shard, so pending connections are registered process-wide in [`Shared`].

use super::reply::{Reply, RequestRef};
use super::*;
use stun_types::message::Message;
use turn_types::attribute::{ConnectionId, XorPeerAddress};
use turn_types::message::CONNECTION_ATTEMPT;

/// How long a peer connection waits for its ConnectionBind (RFC 6062 §5.2, §5.3).
pub(super) const BIND_DEADLINE: Duration = Duration::from_secs(30);

/// What the driver must do for TCP allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `client` sent a valid ConnectionBind for connection `id`: after sending the queued success response,
    /// splice that client connection with the peer connection `id`, byte for byte.
    Bind {
        /// The client's data connection.
        client: ClientAddr,
        /// The peer connection.
        id: u32,
    },
}

impl Server {
    /// The next instruction for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether spliced connection `id` lost its allocation, so the driver must close both sides.
    pub fn connection_revoked(&self, id: u32) -> bool {
        self.shared.connection_revoked(id)
    }

    /// The driver closed the splice of connection `id` (or could not start it).
    pub fn connection_unbound(&self, id: u32) {
        self.shared.unbind_connection(id);
    }

    /// The driver's outgoing connection `id` for a Connect finished: `ok` when established.
    pub fn handle_peer_connected(&mut self, relay: RelayHandle, id: u32, ok: bool, now: Instant) {
        let Some(a) = self.allocations.get_mut(&relay) else {
            return;
        };
        let Some((req, peer)) = a.connecting.remove(&id) else {
            return;
        };
        let mut r = if ok {
            Reply::success_to(req)
        } else {
            Reply::error_to(req, 447)
        };
        if ok {
            r.add(&ConnectionId::new(id));
            a.connections.insert(id, peer);
            self.shared.register_connection(id, &a.username, now + BIND_DEADLINE);
        } else {
            a.peers.remove(&peer);
        }
        let (to, bytes) = (a.client, r.finish(Some((&a.key, a.algorithm))));
        self.transmits.push_back(Transmit { to, data: bytes });
    }

    /// A peer connected to the relayed TCP address of `relay`. Returns the connection id to hold it under, or
    /// `None` to refuse it (no permission, or no TCP allocation).
    pub fn handle_peer_accepted(&mut self, relay: RelayHandle, peer: SocketAddr, now: Instant) -> Option<u32> {
        let peer = SocketAddr::new(policy::normalise(peer.ip()), peer.port());
        let id = self.new_connection_id();
        let a = self.allocations.get_mut(&relay).filter(|a| a.tcp)?;
        if !a.permits(peer.ip(), now) || !self.shared.config.policy.permits(peer.ip()) {
            self.stats.dropped_no_permission += 1;
            return None;
        }
        a.connections.insert(id, peer);
        a.peers.insert(peer, id);
        self.shared.register_connection(id, &a.username, now + BIND_DEADLINE);
        let mut r = Reply::indication(CONNECTION_ATTEMPT);
        let txid = r.txid();
        r.add(&XorPeerAddress::new(peer, txid));
        r.add(&ConnectionId::new(id));
        let to = a.client;
        self.transmits.push_back(Transmit {
            to,
            data: r.finish(None),
        });
        Some(id)
    }

    /// Connect (RFC 6062 §5.2): answered later, by [`Server::handle_peer_connected`]; `None` means deferred.
    pub(super) fn connect(
        &mut self,
        from: ClientAddr,
        msg: &Message<'_>,
        relays: &mut impl RelaySockets,
    ) -> Option<Reply> {
        let Some(&relay) = self.by_client.get(&from) else {
            return Some(self.reject(msg, 437));
        };
        let Ok(peer) = msg.attribute::<XorPeerAddress>() else {
            return Some(self.reject(msg, 400));
        };
        let peer = super::request::normalised(peer.addr(msg.transaction_id()));
        if !self.allocations.get(&relay).is_some_and(|a| a.tcp) {
            return Some(self.reject(msg, 400));
        }
        if let Err(code) = self.check_peer(relay, peer) {
            return Some(self.reject(msg, code));
        }
        let id = self.new_connection_id();
        let a = self.allocations.get_mut(&relay)?;
        if a.peers.contains_key(&peer) {
            return Some(self.reject(msg, 446));
        }
        a.peers.insert(peer, id);
        a.connecting.insert(id, (RequestRef::of(msg), peer));
        relays.connect(relay, a.local, peer, id);
        None
    }

    /// ConnectionBind (RFC 6062 §5.4), on a client connection that holds no allocation.
    pub(super) fn connection_bind(&mut self, from: ClientAddr, msg: &Message<'_>, username: &str) -> Reply {
        if !from.transport.is_stream() || self.by_client.contains_key(&from) {
            return self.reject(msg, 400);
        }
        let Ok(id) = msg.attribute::<ConnectionId>() else {
            return self.reject(msg, 400);
        };
        if !self.shared.redeem_connection(id.id(), username) {
            return self.reject(msg, 400);
        }
        self.events.push_back(Event::Bind {
            client: from,
            id: id.id(),
        });
        Reply::success(msg)
    }

    /// Closes the TCP connections of a removed allocation: those not yet bound here, and those already
    /// spliced through whichever shard holds them (it sees [`Server::connection_revoked`] within a second).
    pub(super) fn drop_connections(&mut self, a: &Allocation, relays: &mut impl RelaySockets) {
        for &id in a.connections.keys() {
            if self.shared.forget_connection(id) {
                relays.close_connection(id);
            } else {
                self.shared.revoke_connection(id);
            }
        }
        for &id in a.connecting.keys() {
            relays.close_connection(id);
        }
    }

    /// Closes peer connections whose ConnectionBind never came.
    pub(super) fn expire_connections(&mut self, now: Instant, relays: &mut impl RelaySockets) {
        for id in self.shared.expire_connections(now) {
            relays.close_connection(id);
            for a in self.allocations.values_mut() {
                if let Some(peer) = a.connections.remove(&id) {
                    a.peers.remove(&peer);
                }
            }
        }
    }

    fn new_connection_id(&mut self) -> u32 {
        loop {
            let id = rand::Rng::random::<u32>(&mut self.rng);
            if id != 0 && !self.shared.connection_known(id) {
                return id;
            }
        }
    }
}
