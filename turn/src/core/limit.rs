//! Token buckets: per source IP for unauthenticated requests, and per allocation for relayed bytes.

use ahash::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// At most this many source IPs are tracked; past it idle entries are dropped, so a flood from spoofed
/// addresses holds bounded memory.
const MAX_TRACKED: usize = 65_536;

/// Answers per second per source IP to requests that carry no valid credentials.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl SourceLimiter {
    /// `rate` tokens a second, holding at most `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::default(),
        }
    }

    /// Takes a token for `ip`; false means drop the request without an answer.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&ip) {
            self.evict(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(ip).or_insert(Bucket { tokens: burst, at: now });
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tracked source IPs.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn evict(&mut self, now: Instant) {
        let refill = Duration::from_secs_f64(self.burst / self.rate);
        self.buckets.retain(|_, b| now.saturating_duration_since(b.at) < refill);
        if self.buckets.len() >= MAX_TRACKED {
            self.buckets.clear();
        }
    }
}

/// A per-allocation byte budget; `rate` 0 means unlimited.
#[derive(Debug, Clone, Copy)]
pub struct ByteBucket {
    rate: u64,
    tokens: u64,
    at: Instant,
}

impl ByteBucket {
    /// One second of `rate` bytes may burst.
    pub fn new(rate: u64, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate,
            at: now,
        }
    }

    /// Spends `len` bytes; false means drop the packet.
    pub fn spend(&mut self, len: usize, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let dt = now.saturating_duration_since(self.at);
        if dt >= Duration::from_millis(1) {
            let refill = (self.rate as u128 * dt.as_micros() / 1_000_000) as u64;
            self.tokens = (self.tokens + refill).min(self.rate);
            self.at = now;
        }
        let len = len as u64;
        if self.tokens >= len {
            self.tokens -= len;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(10, 5);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!((0..8).filter(|_| l.allow(ip, t0)).count(), 5);
        // 0.5 s later, five more tokens.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..8).filter(|_| l.allow(ip, t1)).count(), 5);
        // Other sources have their own buckets.
        assert!(l.allow("192.0.2.2".parse().expect("ip"), t1));
    }

    #[test]
    fn limiter_memory_is_bounded() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(1, 1);
        for i in 0..(MAX_TRACKED as u32 + 10) {
            l.allow(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(l.tracked() <= MAX_TRACKED);
    }

    #[test]
    fn byte_bucket_caps_the_rate() {
        let t0 = Instant::now();
        let mut b = ByteBucket::new(1000, t0);
        assert!(b.spend(600, t0));
        assert!(!b.spend(600, t0));
        assert!(b.spend(600, t0 + Duration::from_millis(300)));
        let mut unlimited = ByteBucket::new(0, t0);
        assert!(unlimited.spend(1 << 30, t0));
    }
}
