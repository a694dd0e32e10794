//! One allocation (RFC 8656 §2.2): its relay socket, lifetime, permissions and channels.

use super::limit::ByteBucket;
use super::reply::RequestRef;
use super::types::{AllocationId, ClientAddr, RelayHandle};
use ahash::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use stun_types::message::{IntegrityAlgorithm, IntegrityKey, TransactionId};

/// Most permissions one allocation may hold; past it CreatePermission gets 508.
pub const MAX_PERMISSIONS: usize = 256;

/// A channel binding (RFC 8656 §12).
#[derive(Debug, Clone, Copy)]
pub struct Channel {
    /// The bound peer.
    pub peer: SocketAddr,
    /// When the binding lapses.
    pub expires: Instant,
}

/// An allocation.
#[derive(Debug)]
pub struct Allocation {
    /// For logs.
    pub id: AllocationId,
    /// The 5-tuple's client side.
    pub client: ClientAddr,
    /// The relay socket.
    pub relay: RelayHandle,
    /// The relayed transport address as advertised to the client.
    pub relay_addr: SocketAddr,
    /// The address the relay socket is bound to (differs from `relay_addr` behind a 1:1 NAT).
    pub local: SocketAddr,
    /// When it lapses unless refreshed.
    pub expires: Instant,
    /// The username that created it; later requests must use the same one (else 441).
    pub username: String,
    /// The user its quota counts against.
    pub quota_user: String,
    /// The key that authenticated it, reused to check and sign later requests.
    pub key: IntegrityKey,
    /// The integrity algorithm the client used.
    pub algorithm: IntegrityAlgorithm,
    /// The Allocate transaction, so a retransmission gets the same answer.
    pub allocate_txid: TransactionId,
    /// Permissions by peer IP.
    pub permissions: HashMap<IpAddr, Instant>,
    /// Channels by number.
    pub channels: HashMap<u16, Channel>,
    /// Channel numbers by peer.
    pub channel_of_peer: HashMap<SocketAddr, u16>,
    /// Relayed-bytes budget.
    pub budget: ByteBucket,
    /// A TCP allocation (RFC 6062): the relay socket is a TCP listener.
    pub tcp: bool,
    /// TCP peer connections by id, established and waiting for (or past) their ConnectionBind.
    pub connections: HashMap<u32, SocketAddr>,
    /// The connection id of each TCP peer, to refuse a second Connect to it (446).
    pub peers: HashMap<SocketAddr, u32>,
    /// Connects under way: the request to answer and the peer.
    pub connecting: HashMap<u32, (RequestRef, SocketAddr)>,
}

impl Allocation {
    /// Whether `ip` has a live permission.
    pub fn permits(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|&t| t > now)
    }

    /// Drops lapsed permissions and channels.
    pub fn expire(&mut self, now: Instant) {
        self.permissions.retain(|_, t| *t > now);
        let channel_of_peer = &mut self.channel_of_peer;
        self.channels.retain(|_, c| {
            let live = c.expires > now;
            if !live {
                channel_of_peer.remove(&c.peer);
            }
            live
        });
    }
}
