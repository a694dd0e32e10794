//! Counters a shard keeps as plain integers; its driver publishes them to `metrics` about once a second, so the
//! packet path touches no atomics.

use super::types::Transport;

/// Outcomes of Allocate requests, for `hualu_turn_allocations_created_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocateResult {
    /// Allocated.
    Ok,
    /// Bad credentials (challenges excluded).
    Unauthorized,
    /// A quota was full (486).
    Quota,
    /// Draining (300 or 486).
    Draining,
    /// No relay port could be bound (508).
    Capacity,
    /// The request was malformed or asked for what is not offered (400, 420, 437, 440, 442).
    Rejected,
}

impl AllocateResult {
    /// Every result, in label order.
    pub const ALL: [AllocateResult; 6] = [
        AllocateResult::Ok,
        AllocateResult::Unauthorized,
        AllocateResult::Quota,
        AllocateResult::Draining,
        AllocateResult::Capacity,
        AllocateResult::Rejected,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            AllocateResult::Ok => "ok",
            AllocateResult::Unauthorized => "unauthorized",
            AllocateResult::Quota => "quota",
            AllocateResult::Draining => "draining",
            AllocateResult::Capacity => "capacity",
            AllocateResult::Rejected => "rejected",
        }
    }
}

/// Counters since the shard started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Allocate outcomes, indexed like [`AllocateResult::ALL`].
    pub allocations: [u64; 6],
    /// Requests with bad credentials, a bad nonce aside.
    pub auth_failures: u64,
    /// Unauthenticated requests dropped by the per-IP rate limit.
    pub unauth_dropped: u64,
    /// Permissions, channels or sends refused by the peer policy.
    pub denied_peers: u64,
    /// Allocations refused by a quota.
    pub quota_rejections: u64,
    /// Packets relayed client to peer, by client transport (udp, tcp, tls).
    pub packets_to_peer: [u64; 3],
    /// Bytes relayed client to peer.
    pub bytes_to_peer: [u64; 3],
    /// Packets relayed peer to client.
    pub packets_to_client: [u64; 3],
    /// Bytes relayed peer to client.
    pub bytes_to_client: [u64; 3],
    /// Packets dropped for lack of a permission.
    pub dropped_no_permission: u64,
    /// Packets dropped by the bandwidth cap.
    pub dropped_bandwidth: u64,
    /// Input that was neither valid STUN nor ChannelData.
    pub malformed: u64,
}

impl Stats {
    pub(crate) fn relayed(&mut self, transport: Transport, to_peer: bool, len: usize) {
        let i = transport as usize;
        if to_peer {
            self.packets_to_peer[i] += 1;
            self.bytes_to_peer[i] += len as u64;
        } else {
            self.packets_to_client[i] += 1;
            self.bytes_to_client[i] += len as u64;
        }
    }

    pub(crate) fn allocate(&mut self, r: AllocateResult) {
        self.allocations[r as usize] += 1;
    }
}
