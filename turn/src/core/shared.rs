//! What all shards share: the config, the credential store, the quotas and the drain flag. Touched only on
//! the control path (Allocate, release), never per packet.

use super::auth::Authenticator;
use super::policy::PeerPolicy;
use ahash::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
            config,
            auth,
            total: AtomicU32::new(0),
            per_user: Mutex::new(HashMap::default()),
            draining: AtomicBool::new(false),
        }
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
