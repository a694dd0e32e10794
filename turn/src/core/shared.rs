//! What all shards share: the config, the credential store, the quotas and the drain flag. Touched only on
//! the control path (Allocate, release), never per packet.

use super::auth::Authenticator;
use super::policy::PeerPolicy;
use super::ports::PortPool;
use ahash::HashMap;
use rand::Rng;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The core's settings, taken from `[turn]`.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Local IPv4 address relay sockets bind.
    pub relay_ip: IpAddr,
    /// Local IPv6 address for IPv6 relays, if any.
    pub relay_ip6: Option<IpAddr>,
    /// Public IPv4 address advertised in XOR-RELAYED-ADDRESS.
    pub external_ip: Option<IpAddr>,
    /// Relay port range.
    pub min_port: u16,
    /// Relay port range.
    pub max_port: u16,
    /// Default allocation lifetime.
    pub default_lifetime: Duration,
    /// Longest allocation lifetime.
    pub max_lifetime: Duration,
    /// Permission lifetime.
    pub permission_lifetime: Duration,
    /// Channel lifetime.
    pub channel_lifetime: Duration,
    /// Allocations in total.
    pub max_allocations: u32,
    /// Allocations per user.
    pub max_allocations_per_user: u32,
    /// Bytes per second per allocation; 0 is unlimited.
    pub bandwidth_bytes_per_sec: u64,
    /// 401 answers per second per source IP.
    pub unauth_rate_per_sec: u32,
    /// Burst of 401 answers.
    pub unauth_burst: u32,
    /// Where new allocations go while draining.
    pub alternate_server: Option<SocketAddr>,
    /// Which peers may be reached.
    pub policy: PeerPolicy,
}

/// State shared by every shard.
#[derive(Debug)]
pub struct Shared {
    /// Settings.
    pub config: CoreConfig,
    /// Credentials and nonces.
    pub auth: Authenticator,
    total: AtomicU32,
    per_user: Mutex<HashMap<String, u32>>,
    draining: AtomicBool,
    ports: Mutex<Ports>,
    /// TCP peer connections (RFC 6062) waiting for their ConnectionBind: id to (username, deadline).
    connections: Mutex<HashMap<u32, (String, Instant)>>,
    /// Connections spliced after their ConnectionBind, possibly on another shard than their allocation: id to
    /// whether the allocation has gone, so the shard holding the splice must close it (RFC 6062 §5.5).
    bound: Mutex<HashMap<u32, bool>>,
}

/// Relay ports of both families, and the ports held back by EVEN-PORT reservations. Process-wide because the
/// Allocate that redeems a RESERVATION-TOKEN comes from another source port, which may land on another shard.
#[derive(Debug)]
struct Ports {
    v4: PortPool,
    v6: PortPool,
    reserved: HashMap<u64, (SocketAddr, Instant)>,
}

/// Why a quota refused an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    /// The server is full.
    Total,
    /// The user holds its maximum.
    PerUser,
}

impl Shared {
    /// Shared state for a set of shards.
    pub fn new(config: CoreConfig, auth: Authenticator) -> Self {
        Self {
            total: AtomicU32::new(0),
            per_user: Mutex::new(HashMap::default()),
            draining: AtomicBool::new(false),
            connections: Mutex::new(HashMap::default()),
            bound: Mutex::new(HashMap::default()),
            ports: Mutex::new(Ports {
                v4: PortPool::new(config.min_port, config.max_port),
                v6: PortPool::new(config.min_port, config.max_port),
                reserved: HashMap::default(),
            }),
            config,
            auth,
        }
    }

    /// A free relay port: any, an even one, or an even one whose successor is also taken (`pair`).
    pub fn take_port(&self, v6: bool, even: bool, pair: bool, rng: &mut impl Rng) -> Option<u16> {
        let mut p = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let pool = if v6 { &mut p.v6 } else { &mut p.v4 };
        pool.take(rng, even, pair)
    }

    /// Returns the port of `addr` to its pool.
    pub fn give_back_port(&self, addr: SocketAddr) {
        let mut p = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let pool = if addr.is_ipv6() { &mut p.v6 } else { &mut p.v4 };
        pool.give_back(addr.port());
    }

    /// Holds `addr` (already taken from the pool) for the Allocate that presents `token`.
    pub fn reserve(&self, token: u64, addr: SocketAddr, expires: Instant) {
        let mut p = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        p.reserved.insert(token, (addr, expires));
    }

    /// Redeems a reservation.
    pub fn redeem(&self, token: u64) -> Option<SocketAddr> {
        let mut p = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        p.reserved.remove(&token).map(|(addr, _)| addr)
    }

    /// Releases reservations that lapsed before `now`.
    pub fn expire_reservations(&self, now: Instant) {
        let mut p = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let lapsed: Vec<(u64, SocketAddr)> = p
            .reserved
            .iter()
            .filter(|(_, (_, t))| *t <= now)
            .map(|(k, (a, _))| (*k, *a))
            .collect();
        for (token, addr) in lapsed {
            p.reserved.remove(&token);
            let pool = if addr.is_ipv6() { &mut p.v6 } else { &mut p.v4 };
            pool.give_back(addr.port());
        }
    }

    /// Registers TCP peer connection `id`, to be bound by `username` before `deadline`.
    pub fn register_connection(&self, id: u32, username: &str, deadline: Instant) {
        let mut c = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        c.insert(id, (username.to_owned(), deadline));
    }

    /// Takes connection `id` for a ConnectionBind by `username`; false when unknown or another user's.
    /// A redeemed connection counts as bound until [`Shared::unbind_connection`].
    pub fn redeem_connection(&self, id: u32, username: &str) -> bool {
        let mut c = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let redeemed = match c.get(&id) {
            Some((owner, _)) if owner == username => c.remove(&id).is_some(),
            _ => false,
        };
        if redeemed {
            self.bound.lock().unwrap_or_else(|e| e.into_inner()).insert(id, false);
        }
        redeemed
    }

    /// The allocation of bound connection `id` has gone: its splice must close.
    pub fn revoke_connection(&self, id: u32) {
        if let Some(revoked) = self.bound.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&id) {
            *revoked = true;
        }
    }

    /// Whether bound connection `id` lost its allocation.
    pub fn connection_revoked(&self, id: u32) -> bool {
        let b = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        b.get(&id).copied().unwrap_or(false)
    }

    /// The splice of connection `id` closed (or never started): forget it.
    pub fn unbind_connection(&self, id: u32) {
        self.bound.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Forgets connection `id`; true when it was still waiting for its ConnectionBind.
    pub fn forget_connection(&self, id: u32) -> bool {
        let mut c = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        c.remove(&id).is_some()
    }

    /// Whether `id` is in use: waiting for a ConnectionBind, or bound.
    pub fn connection_known(&self, id: u32) -> bool {
        let c = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        c.contains_key(&id) || self.bound.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&id)
    }

    /// Removes and returns the connections whose deadline passed.
    pub fn expire_connections(&self, now: Instant) -> Vec<u32> {
        let mut c = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let lapsed: Vec<u32> = c.iter().filter(|(_, (_, t))| *t <= now).map(|(id, _)| *id).collect();
        for id in &lapsed {
            c.remove(id);
        }
        lapsed
    }

    /// Stop taking allocations.
    pub fn start_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Allocations held across all shards.
    pub fn total_allocations(&self) -> u32 {
        self.total.load(Ordering::Relaxed)
    }

    /// Counts one allocation against `user`, or says which quota is full.
    pub fn take_quota(&self, user: &str) -> Result<(), QuotaError> {
        let max = self.config.max_allocations;
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map_err(|_| QuotaError::Total)?;
        let mut per_user = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_user.entry(user.to_owned()).or_insert(0);
        if *n >= self.config.max_allocations_per_user {
            drop(per_user);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(QuotaError::PerUser);
        }
        *n += 1;
        Ok(())
    }

    /// Returns one allocation of `user`.
    pub fn release_quota(&self, user: &str) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        let mut per_user = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                per_user.remove(user);
            }
        }
    }
}
