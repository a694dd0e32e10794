//! The relay's metrics, defined once. Shards keep plain counters ([`Stats`]) and publish the deltas here about
//! once a second.

use crate::core::{AllocateResult, Stats, Transport};
use metrics::{counter, gauge};

/// Allocate outcomes, by `result`.
pub const ALLOCATIONS_CREATED: &str = "hualu_turn_allocations_created_total";
/// Allocations held now.
pub const ALLOCATIONS_ACTIVE: &str = "hualu_turn_allocations_active";
/// Relayed packets, by `direction` (`to_peer`, `to_client`) and client `transport`.
pub const RELAYED_PACKETS: &str = "hualu_turn_relayed_packets_total";
/// Relayed payload bytes, same labels.
pub const RELAYED_BYTES: &str = "hualu_turn_relayed_bytes_total";
/// Requests with bad credentials.
pub const AUTH_FAILURES: &str = "hualu_turn_auth_failures_total";
/// Unauthenticated requests dropped by the per-IP limit.
pub const UNAUTH_DROPPED: &str = "hualu_turn_unauthenticated_dropped_total";
/// Peers refused by the policy.
pub const DENIED_PEERS: &str = "hualu_turn_denied_peers_total";
/// Allocations refused by a quota.
pub const QUOTA_REJECTIONS: &str = "hualu_turn_quota_rejections_total";
/// Packets dropped, by `reason` (`no_permission`, `bandwidth`, `send_buffer`, `malformed`).
pub const DROPPED_PACKETS: &str = "hualu_turn_dropped_packets_total";
/// Datagrams the kernel dropped on the relay's UDP sockets for a full receive buffer (SO_RXQ_OVFL).
pub const SOCKET_RECEIVE_DROPS: &str = "hualu_turn_socket_receive_drops_total";
/// Bytes spliced through TCP allocations (RFC 6062), by `direction` (`to_peer`, `to_client`).
pub const TCP_RELAYED_BYTES: &str = "hualu_turn_tcp_relayed_bytes_total";
/// Panics caught while handling an event (each one a bug to report).
pub const PANICS: &str = "hualu_turn_panics_total";
/// Client connections over TCP and TLS, open now, by `transport`.
pub const CONNECTIONS_ACTIVE: &str = "hualu_turn_connections_active";

/// Publishes a shard's counters.
#[derive(Debug, Default)]
pub struct Publisher {
    last: Stats,
    last_send_drops: u64,
    last_receive_drops: u64,
    last_tcp: [u64; 2],
}

impl Publisher {
    /// Publishes what changed since the last call.
    pub fn publish(&mut self, now: &Stats, send_drops: u64, receive_drops: u64, tcp: [u64; 2]) {
        counter!(TCP_RELAYED_BYTES, "direction" => "to_peer").increment(tcp[0] - self.last_tcp[0]);
        counter!(TCP_RELAYED_BYTES, "direction" => "to_client").increment(tcp[1] - self.last_tcp[1]);
        self.last_tcp = tcp;
        let last = std::mem::replace(&mut self.last, now.clone());
        for r in AllocateResult::ALL {
            let i = r as usize;
            counter!(ALLOCATIONS_CREATED, "result" => r.label()).increment(now.allocations[i] - last.allocations[i]);
        }
        for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
            let i = t as usize;
            let l = t.label();
            counter!(RELAYED_PACKETS, "direction" => "to_peer", "transport" => l)
                .increment(now.packets_to_peer[i] - last.packets_to_peer[i]);
            counter!(RELAYED_BYTES, "direction" => "to_peer", "transport" => l)
                .increment(now.bytes_to_peer[i] - last.bytes_to_peer[i]);
            counter!(RELAYED_PACKETS, "direction" => "to_client", "transport" => l)
                .increment(now.packets_to_client[i] - last.packets_to_client[i]);
            counter!(RELAYED_BYTES, "direction" => "to_client", "transport" => l)
                .increment(now.bytes_to_client[i] - last.bytes_to_client[i]);
        }
        counter!(AUTH_FAILURES).increment(now.auth_failures - last.auth_failures);
        counter!(UNAUTH_DROPPED).increment(now.unauth_dropped - last.unauth_dropped);
        counter!(DENIED_PEERS).increment(now.denied_peers - last.denied_peers);
        counter!(QUOTA_REJECTIONS).increment(now.quota_rejections - last.quota_rejections);
        counter!(DROPPED_PACKETS, "reason" => "no_permission")
            .increment(now.dropped_no_permission - last.dropped_no_permission);
        counter!(DROPPED_PACKETS, "reason" => "bandwidth").increment(now.dropped_bandwidth - last.dropped_bandwidth);
        counter!(DROPPED_PACKETS, "reason" => "malformed").increment(now.malformed - last.malformed);
        counter!(DROPPED_PACKETS, "reason" => "send_buffer").increment(send_drops - self.last_send_drops);
        self.last_send_drops = send_drops;
        counter!(SOCKET_RECEIVE_DROPS).increment(receive_drops - self.last_receive_drops);
        self.last_receive_drops = receive_drops;
    }
}

/// Sets the gauges that are global rather than per shard.
pub fn publish_global(allocations: u32) {
    gauge!(ALLOCATIONS_ACTIVE).set(f64::from(allocations));
}

/// Counts a caught panic.
pub fn panicked() {
    counter!(PANICS).increment(1);
}

/// Counts a client connection opening (`delta` 1) or closing (-1).
pub fn connection(transport: Transport, delta: f64) {
    gauge!(CONNECTIONS_ACTIVE, "transport" => transport.label()).increment(delta);
}
