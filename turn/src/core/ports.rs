//! The relay port range: which ports are free, picked at random so relay addresses are hard to guess.

use rand::Rng;

/// Free and used relay ports.
#[derive(Debug)]
pub struct PortPool {
    first: u16,
    last: u16,
    used: Vec<u64>,
    in_use: usize,
}

impl PortPool {
    /// The ports `min..=max`, all free.
    pub fn new(min: u16, max: u16) -> Self {
        Self {
            first: min,
            last: max.max(min),
            used: vec![0; 1024],
            in_use: 0,
        }
    }

    /// A random free port, or with `even` a random free even port whose successor is free too when `pair`.
    pub fn take(&mut self, rng: &mut impl Rng, even: bool, pair: bool) -> Option<u16> {
        let span = u32::from(self.last - self.first) + 1;
        // Random probes first (ports are unpredictable), then a full scan so a nearly full pool still serves.
        for _ in 0..32 {
            let p = self.first + rng.random_range(0..span) as u16;
            if self.fits(p, even, pair) {
                return Some(self.claim(p, pair));
            }
        }
        let start = rng.random_range(0..span);
        (0..span)
            .map(|i| self.first + ((start + i) % span) as u16)
            .find(|&p| self.fits(p, even, pair))
            .map(|p| self.claim(p, pair))
    }

    /// Returns `port` to the pool.
    pub fn give_back(&mut self, port: u16) {
        if self.is_used(port) {
            self.used[usize::from(port) / 64] &= !(1 << (port % 64));
            self.in_use -= 1;
        }
    }

    /// Ports handed out and not returned.
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    fn fits(&self, p: u16, even: bool, pair: bool) -> bool {
        if self.is_used(p) || (even && p % 2 != 0) {
            return false;
        }
        !pair || (p < self.last && !self.is_used(p + 1))
    }

    fn claim(&mut self, p: u16, pair: bool) -> u16 {
        self.mark(p);
        if pair {
            self.mark(p + 1);
        }
        p
    }

    fn mark(&mut self, p: u16) {
        self.used[usize::from(p) / 64] |= 1 << (p % 64);
        self.in_use += 1;
    }

    fn is_used(&self, p: u16) -> bool {
        self.used[usize::from(p) / 64] & (1 << (p % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn hands_out_every_port_once_then_none() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut pool = PortPool::new(60000, 60009);
        let mut got: Vec<u16> = (0..10)
            .map(|_| pool.take(&mut rng, false, false).expect("port"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, (60000..=60009).collect::<Vec<_>>());
        assert_eq!(pool.take(&mut rng, false, false), None);
        pool.give_back(60003);
        assert_eq!(pool.take(&mut rng, false, false), Some(60003));
    }

    #[test]
    fn even_pair_reserves_the_next_port() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut pool = PortPool::new(40000, 40003);
        let p = pool.take(&mut rng, true, true).expect("pair");
        assert_eq!(p % 2, 0);
        assert_eq!(pool.in_use(), 2);
        let q = pool.take(&mut rng, true, true).expect("second pair");
        assert_ne!(p, q);
        assert_eq!(pool.take(&mut rng, true, false), None);
    }
}
