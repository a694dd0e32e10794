//! Token buckets per user and per IP address: a client that sends too fast is told how long to wait.

use dashmap::DashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most buckets kept per table; past it, full (idle) buckets are dropped.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets keyed by `K`, each refilling at `rate` per second up to `burst`.
struct Table<K: Hash + Eq> {
    buckets: DashMap<K, Bucket>,
    rate: f64,
    burst: f64,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            buckets: DashMap::new(),
            rate,
            burst,
        }
    }

    /// Takes a token for `key`, or says how long until one is there.
    fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.buckets.len() > MAX_BUCKETS {
            self.prune(now);
        }
        let mut b = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }

    fn prune(&self, now: Instant) {
        let full = |b: &Bucket| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.rate >= self.burst;
        self.buckets.retain(|_, b| !full(b));
    }
}

/// Per-user and per-IP limits.
pub struct Limiter {
    users: Table<String>,
    ips: Table<IpAddr>,
}

impl Limiter {
    /// Users may send `user_rate` messages a second (bursts of `user_burst`), IP addresses `ip_rate`.
    pub fn new(user_rate: f64, user_burst: f64, ip_rate: f64, ip_burst: f64) -> Self {
        Self {
            users: Table::new(user_rate, user_burst),
            ips: Table::new(ip_rate, ip_burst),
        }
    }

    /// One message from `user` at `ip`: allowed, or how long to wait.
    pub fn take(&self, user: &str, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        self.ips.take(&ip, now)?;
        self.users.take(&user.to_string(), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let t = Table::new(10.0, 3.0);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.take(&"u", now).is_ok());
        }
        let wait = t.take(&"u", now).expect_err("the burst is spent");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(
            t.take(&"u", now + Duration::from_millis(100)).is_ok(),
            "one token back after 100 ms"
        );
        assert!(t.take(&"v", now).is_ok(), "buckets are per key");
    }
}
