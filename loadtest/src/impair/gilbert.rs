//! Bursty loss: the two-state Gilbert model (the Gilbert-Elliott model with no loss in Good and every packet lost in
//! Bad), stepped once per packet.
//!
//! With `p = P(Good → Bad)` and `q = P(Bad → Good)` per packet, the chain spends `π_B = p / (p + q)` of the packets
//! in Bad, and a stay in Bad (a loss burst) lasts a geometric number of packets with mean `1 / q`. So from a target
//! mean loss rate `L` and mean burst length `B`:
//!
//! ```text
//! q = 1 / B
//! p = L q / (1 - L)          (from L = p / (p + q))
//! ```
//!
//! Random loss is the case `p = L`, `q = 1 - L`: then `P(lost | previous received) = p = L` and
//! `P(lost | previous lost) = 1 - q = L`, the same either way. Its bursts are not 1 packet long on average but
//! `1 / (1 - L)` (two losses in a row happen by chance), so a `B` below that would ask for losses that avoid each
//! other, which is not what anyone means by "random". We therefore use `B' = max(B, 1 / (1 - L))`: `B = 1` is
//! exactly Bernoulli loss, the map from `(L, B)` to `(p, q)` is continuous, and `p <= L < 1` always holds.
//!
//! G.107's `BurstR = 1 / (p + q)` for these `p` and `q` is [`GilbertElliott::burst_r`]; it is 1 for random loss.

use rand::Rng;

/// A two-state loss process: [`GilbertElliott::lose`] says whether the next packet is lost.
#[derive(Debug, Clone)]
pub struct GilbertElliott {
    /// P(Good → Bad) per packet.
    p: f64,
    /// P(Bad → Good) per packet.
    q: f64,
    /// Whether the last packet was lost.
    bad: bool,
}

impl GilbertElliott {
    /// A process losing `loss_rate` (a fraction in `[0, 1)`, not a percentage) of packets in bursts of `burst_len`
    /// packets on average (`>= 1`; 1 is random loss). Out-of-range values are clamped. The first state is drawn
    /// from the stationary distribution, so there is no warm-up.
    pub fn new<R: Rng + ?Sized>(loss_rate: f64, burst_len: f64, rng: &mut R) -> GilbertElliott {
        let loss = if loss_rate.is_nan() {
            0.0
        } else {
            loss_rate.clamp(0.0, MAX_LOSS)
        };
        let burst = if burst_len.is_finite() { burst_len.max(1.0) } else { 1.0 };
        let q = 1.0 / burst.max(1.0 / (1.0 - loss));
        let p = loss * q / (1.0 - loss);
        let bad = loss > 0.0 && rng.random::<f64>() < loss;
        GilbertElliott { p, q, bad }
    }

    /// Steps the chain one packet; `true` if that packet is lost. One uniform draw.
    pub fn lose<R: Rng + ?Sized>(&mut self, rng: &mut R) -> bool {
        let u = rng.random::<f64>();
        self.bad = if self.bad { u >= self.q } else { u < self.p };
        self.bad
    }

    /// `P(lost | previous received)`.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// `P(received | previous lost)`.
    pub fn q(&self) -> f64 {
        self.q
    }

    /// The long-run loss rate, `p / (p + q)`, a fraction.
    pub fn loss_rate(&self) -> f64 {
        self.p / (self.p + self.q)
    }

    /// The mean burst length in packets, `1 / q`.
    pub fn mean_burst_len(&self) -> f64 {
        1.0 / self.q
    }

    /// G.107's burst ratio, `1 / (p + q)`: 1 for random loss, above 1 for bursty loss.
    pub fn burst_r(&self) -> f64 {
        1.0 / (self.p + self.q)
    }
}

/// The highest loss rate the model takes; beyond it `q` would underflow.
const MAX_LOSS: f64 = 0.999_999;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Loss rate and mean burst length measured over `n` packets.
    fn measure(loss: f64, burst: f64, n: usize, seed: u64) -> (f64, f64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut g = GilbertElliott::new(loss, burst, &mut rng);
        let (mut lost, mut bursts, mut prev) = (0usize, 0usize, false);
        for _ in 0..n {
            let l = g.lose(&mut rng);
            lost += usize::from(l);
            bursts += usize::from(l && !prev);
            prev = l;
        }
        (lost as f64 / n as f64, lost as f64 / bursts as f64)
    }

    #[test]
    fn formulas() {
        let mut rng = StdRng::seed_from_u64(1);
        let g = GilbertElliott::new(0.05, 3.0, &mut rng);
        assert!((g.q() - 1.0 / 3.0).abs() < 1e-12);
        assert!((g.p() - 0.05 / 3.0 / 0.95).abs() < 1e-12);
        assert!((g.loss_rate() - 0.05).abs() < 1e-12);
        assert!((g.mean_burst_len() - 3.0).abs() < 1e-12);
        assert!(g.burst_r() > 2.5);
    }

    #[test]
    fn burst_one_is_bernoulli() {
        let mut rng = StdRng::seed_from_u64(1);
        let g = GilbertElliott::new(0.2, 1.0, &mut rng);
        assert!((g.p() - 0.2).abs() < 1e-12);
        assert!((g.q() - 0.8).abs() < 1e-12);
        assert!((g.burst_r() - 1.0).abs() < 1e-12);
        let (loss, burst) = measure(0.2, 1.0, 1_000_000, 3);
        assert!((loss - 0.2).abs() < 0.0015, "{loss}");
        assert!((burst - 1.25).abs() < 0.01, "{burst}");
    }

    #[test]
    fn bursts_match_target() {
        // Tolerances are about 4 standard errors: bursty loss averages out slowly.
        for (loss, burst, tol, seed) in [(0.05, 3.0, 0.1, 5), (0.2, 2.0, 0.05, 6), (0.01, 5.0, 0.3, 7)] {
            let (l, b) = measure(loss, burst, 2_000_000, seed);
            assert!((l - loss).abs() < 0.003, "loss {l} for {loss}");
            assert!((b - burst).abs() < tol, "burst {b} for {burst}");
        }
    }

    #[test]
    fn no_loss_draws_no_loss() {
        let (l, _) = measure(0.0, 3.0, 10_000, 1);
        assert_eq!(l, 0.0);
    }

    #[test]
    fn out_of_range_is_clamped() {
        let mut rng = StdRng::seed_from_u64(1);
        for (loss, burst) in [(f64::NAN, f64::NAN), (-1.0, 0.0), (1.0, 1.0), (7.0, -3.0)] {
            let g = GilbertElliott::new(loss, burst, &mut rng);
            assert!(
                g.p().is_finite() && g.q().is_finite() && g.q() > 0.0,
                "{loss} {burst}: {g:?}"
            );
            assert!((0.0..=1.0).contains(&g.p()), "{g:?}");
        }
    }
}
