//! The shape of a stream's loss, from the final fate of each packet in sequence order (played, lost, or discarded
//! as too late): the RFC 3611 VoIP-metrics burst/gap figures (XR block type 7) and a two-state Gilbert estimate with
//! G.107's BurstR. Both treat a discarded packet like a lost one, as RFC 3611 does; only the counts tell them apart.
//!
//! Constant memory: a handful of counters, updated once per packet.

use serde::{Deserialize, Serialize};

/// What finally became of one packet, in sequence-number order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Arrived in time and was played.
    Received,
    /// Never arrived (in time for its playout slot, and not at all since).
    Lost,
    /// Arrived after its playout time and was dropped.
    Discarded,
}

/// RFC 3611's burst/gap metrics. Rates and densities are fractions in `[0, 1]` (the RFC's 8-bit fields are these
/// times 256); durations are in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BurstGap {
    /// Lost packets over all packets.
    pub loss_rate: f64,
    /// Discarded packets over all packets.
    pub discard_rate: f64,
    /// Fraction of packets lost or discarded within bursts.
    pub burst_density: f64,
    /// Mean burst duration, ms (0 without bursts).
    pub burst_duration_ms: f64,
    /// Fraction of packets lost or discarded within gaps.
    pub gap_density: f64,
    /// Mean gap duration, ms.
    pub gap_duration_ms: f64,
}

/// A two-state Gilbert model fitted to the fate sequence (discards count as losses).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gilbert {
    /// `P(lost | previous received)`; 0 when no packet was followed by another after being received.
    pub p: f64,
    /// `P(received | previous lost)`; 1 when no loss was followed by another packet.
    pub q: f64,
    /// G.107's BurstR, `1 / (p + q)`: 1 without loss; kept within `[1, packets]` (below 1 the losses are more spread
    /// out than random, which G.107 does not define; an outage to the end of the stream would make it infinite).
    pub burst_r: f64,
}

/// Counters of the RFC 3611 burst/gap state machine and of the Gilbert fit. Feed it every packet's fate in sequence
/// order with [`LossPattern::record`].
#[derive(Debug, Clone)]
pub struct LossPattern {
    gmin: u64,
    frame_ms: f64,
    /// Per fate.
    received: u64,
    lost: u64,
    discarded: u64,
    /// RFC 3611: losses in the current burst, and packets received since the last loss.
    burst_losses: u64,
    pkt: u64,
    c11: u64,
    c13: u64,
    c14: u64,
    c22: u64,
    c23: u64,
    c33: u64,
    /// Gilbert: whether the previous packet was lost, and transition counts.
    prev_lost: Option<bool>,
    after_received: u64,
    received_to_lost: u64,
    after_lost: u64,
    lost_to_received: u64,
}

impl LossPattern {
    /// RFC 3611's recommended Gmin: a burst ends after this many packets received in a row.
    pub const GMIN: u64 = 16;

    /// An empty pattern for packets of `frame_ms` ms each (20 for the harness's Opus), with Gmin 16.
    pub fn new(frame_ms: f64) -> LossPattern {
        LossPattern::with_gmin(frame_ms, LossPattern::GMIN)
    }

    /// An empty pattern with another Gmin (at least 1).
    pub fn with_gmin(frame_ms: f64, gmin: u64) -> LossPattern {
        LossPattern {
            gmin: gmin.max(1),
            frame_ms,
            received: 0,
            lost: 0,
            discarded: 0,
            burst_losses: 0,
            pkt: 0,
            c11: 0,
            c13: 0,
            c14: 0,
            c22: 0,
            c23: 0,
            c33: 0,
            prev_lost: None,
            after_received: 0,
            received_to_lost: 0,
            after_lost: 0,
            lost_to_received: 0,
        }
    }

    /// Takes the next packet's fate, in sequence order.
    pub fn record(&mut self, fate: Fate) {
        let bad = match fate {
            Fate::Received => {
                self.received += 1;
                false
            }
            Fate::Lost => {
                self.lost += 1;
                true
            }
            Fate::Discarded => {
                self.discarded += 1;
                true
            }
        };
        self.rfc3611_step(bad);
        self.gilbert_step(bad);
    }

    /// Turns one packet already recorded as lost into a discard (it arrived after all, too late): the counts
    /// change, the burst/gap structure does not. Does nothing if no loss is recorded.
    pub fn reclassify_lost_as_discarded(&mut self) {
        if self.lost > 0 {
            self.lost -= 1;
            self.discarded += 1;
        }
    }

    /// Packets recorded.
    pub fn packets(&self) -> u64 {
        self.received + self.lost + self.discarded
    }

    /// Packets recorded as received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets recorded as lost.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Packets recorded as discarded.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// RFC 3611's per-packet step (section 4.7.2), with one change: before the first loss the stream counts as in
    /// a gap whatever its length, so a loss among the first Gmin packets opens a burst. (The RFC starts with
    /// `pkt = 0`, which counts such losses inside a burst that was never entered, `c13 = 0`, and its durations
    /// then divide by zero.)
    ///
    /// The RFC classifies each loss event one event late: a loss after at least Gmin received packets counts a
    /// gap-to-burst transition (`c13`) unless the previous event was a single loss, which it then counts as an
    /// isolated gap loss (`c14`) instead. The first event counts `c13` and the last one is never classified, so the
    /// totals are right over a stream.
    fn rfc3611_step(&mut self, bad: bool) {
        if !bad {
            self.pkt += 1;
            return;
        }
        let first_loss = self.lost + self.discarded == 1;
        if self.pkt >= self.gmin || first_loss {
            if self.burst_losses == 1 {
                self.c14 += 1;
            } else {
                self.c13 += 1;
            }
            self.burst_losses = 1;
            self.c11 += self.pkt;
        } else {
            self.burst_losses += 1;
            if self.pkt == 0 {
                self.c33 += 1;
            } else {
                self.c23 += 1;
                self.c22 += self.pkt - 1;
            }
        }
        self.pkt = 0;
    }

    fn gilbert_step(&mut self, bad: bool) {
        match self.prev_lost {
            Some(false) => {
                self.after_received += 1;
                self.received_to_lost += u64::from(bad);
            }
            Some(true) => {
                self.after_lost += 1;
                self.lost_to_received += u64::from(!bad);
            }
            None => {}
        }
        self.prev_lost = Some(bad);
    }

    /// The RFC 3611 metrics as of now. The packets received since the last loss are counted as gap (`c11`), as if
    /// the stream ended the burst; the RFC leaves them out until the next loss.
    pub fn burst_gap(&self) -> BurstGap {
        let n = self.packets();
        let rate = |k: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
        let (loss_rate, discard_rate) = (rate(self.lost), rate(self.discarded));
        let m = self.frame_ms;
        if self.c13 == 0 {
            // No loss at all (the first loss always counts c13): one gap, the whole stream.
            return BurstGap {
                loss_rate,
                discard_rate,
                burst_density: 0.0,
                burst_duration_ms: 0.0,
                gap_density: 0.0,
                gap_duration_ms: n as f64 * m,
            };
        }
        let [c11, c13, c14, c22, c23, c33] =
            [self.c11 + self.pkt, self.c13, self.c14, self.c22, self.c23, self.c33].map(|c| c as f64);
        let (c31, c32) = (c13, c23);
        let ctotal = c11 + c14 + c13 + c22 + c23 + c31 + c32 + c33;
        let p32 = c32 / (c31 + c32 + c33);
        let p23 = if c22 + c23 < 1.0 { 1.0 } else { 1.0 - c22 / (c22 + c23) };
        let gap_duration_ms = (c11 + c14 + c13) * m / c13;
        BurstGap {
            loss_rate,
            discard_rate,
            burst_density: p23 / (p23 + p32),
            burst_duration_ms: ctotal * m / c13 - gap_duration_ms,
            gap_density: if c11 + c14 > 0.0 { c14 / (c11 + c14) } else { 0.0 },
            gap_duration_ms,
        }
    }

    /// The Gilbert fit as of now.
    pub fn gilbert(&self) -> Gilbert {
        let p = ratio(self.received_to_lost, self.after_received, 0.0);
        let q = ratio(self.lost_to_received, self.after_lost, 1.0);
        let n = self.packets().max(1) as f64;
        let burst_r = if self.lost + self.discarded == 0 {
            1.0
        } else if p + q > 0.0 {
            (1.0 / (p + q)).clamp(1.0, n)
        } else {
            n
        };
        Gilbert { p, q, burst_r }
    }
}

/// `num / den`, or `empty` when `den` is 0.
fn ratio(num: u64, den: u64, empty: f64) -> f64 {
    if den == 0 {
        empty
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Fate::{Discarded as D, Lost as L, Received as R};

    fn feed(pattern: &mut LossPattern, fate: Fate, n: usize) {
        for _ in 0..n {
            pattern.record(fate);
        }
    }

    fn close(got: f64, want: f64, what: &str) {
        assert!((got - want).abs() < 1e-9, "{what}: got {got}, want {want}");
    }

    /// R×20, L, R×20, L L R D, R×30 (75 packets, Gmin 16, 20 ms frames), worked by hand:
    ///
    /// - first L (after 20 R, first loss): c13 = 1, c11 = 20, burst_losses = 1.
    /// - second L (after 20 R ≥ Gmin, previous event a single loss): c14 = 1, c11 = 40, burst_losses = 1.
    /// - L right after: c33 = 1 (burst_losses 2). R then D: c23 = 1, c22 += 0 (burst_losses 3).
    /// - 30 R pending, counted as gap at report time: c11 = 70.
    ///
    /// c31 = c13 = 1, c32 = c23 = 1, ctotal = 70 + 1 + 1 + 0 + 1 + 1 + 1 + 1 = 76.
    /// p32 = 1 / (1 + 1 + 1) = 1/3, p23 = 1 - 0/1 = 1: burst density = 1 / (1 + 1/3) = 0.75 (the burst L L R D has
    /// 3 losses in 4 packets). Gap density = c14 / (c11 + c14) = 1/71 (one isolated loss in the 71 other packets).
    /// Gap duration = (70 + 1 + 1) × 20 / 1 = 1440 ms; burst duration = 76 × 20 / 1 - 1440 = 80 ms (4 packets).
    /// Loss rate 4/75 (lost), discard rate 1/75.
    ///
    /// Gilbert: 70 packets follow a received one, 3 of them lost: p = 3/70; 4 follow a loss, 3 of them received:
    /// q = 3/4; BurstR = 1 / (3/70 + 3/4) = 70/55.5.
    #[test]
    fn burst_gap_on_a_crafted_sequence() {
        let mut p = LossPattern::new(20.0);
        feed(&mut p, R, 20);
        p.record(L);
        feed(&mut p, R, 20);
        for f in [L, L, R, D] {
            p.record(f);
        }
        feed(&mut p, R, 30);
        assert_eq!((p.packets(), p.received(), p.lost(), p.discarded()), (75, 71, 3, 1));
        let bg = p.burst_gap();
        close(bg.loss_rate, 3.0 / 75.0, "loss rate");
        close(bg.discard_rate, 1.0 / 75.0, "discard rate");
        close(bg.burst_density, 0.75, "burst density");
        close(bg.gap_density, 1.0 / 71.0, "gap density");
        close(bg.gap_duration_ms, 1440.0, "gap duration");
        close(bg.burst_duration_ms, 80.0, "burst duration");
        let g = p.gilbert();
        close(g.p, 3.0 / 70.0, "p");
        close(g.q, 0.75, "q");
        close(g.burst_r, 70.0 / 55.5, "BurstR");
    }

    #[test]
    fn no_loss() {
        let mut p = LossPattern::new(20.0);
        feed(&mut p, R, 50);
        let bg = p.burst_gap();
        assert_eq!(
            (bg.burst_density, bg.burst_duration_ms, bg.gap_density),
            (0.0, 0.0, 0.0)
        );
        close(bg.gap_duration_ms, 1000.0, "gap duration");
        let g = p.gilbert();
        assert_eq!((g.p, g.q, g.burst_r), (0.0, 1.0, 1.0));
        let empty = LossPattern::new(20.0);
        assert_eq!(empty.burst_gap().loss_rate, 0.0);
        assert_eq!(empty.gilbert().burst_r, 1.0);
    }

    /// A loss among the first Gmin packets still opens a burst (the RFC's own start would leave c13 at 0).
    /// L L R×40: c13 = 1, c33 = 1, c11 = 40 at report; ctotal = 40 + 1 + 1 + 1 = 43 (c11, c13, c31, c33).
    /// p32 = 0 / 2, p23 = 1: density 1; gap = 41 × 20 = 820 ms; burst = 43 × 20 - 820 = 40 ms.
    #[test]
    fn loss_at_the_start() {
        let mut p = LossPattern::new(20.0);
        feed(&mut p, L, 2);
        feed(&mut p, R, 40);
        let bg = p.burst_gap();
        close(bg.burst_density, 1.0, "burst density");
        close(bg.burst_duration_ms, 40.0, "burst duration");
        close(bg.gap_duration_ms, 820.0, "gap duration");
        assert!(bg.burst_duration_ms.is_finite() && bg.gap_density == 0.0);
    }

    #[test]
    fn all_lost_and_alternating() {
        let mut all = LossPattern::new(20.0);
        feed(&mut all, L, 10);
        let g = all.gilbert();
        assert_eq!((g.p, g.q, g.burst_r), (0.0, 0.0, 10.0));
        assert!(all.burst_gap().burst_duration_ms.is_finite());

        // R L R L ...: p = q = 1, 1 / (p + q) = 0.5, clamped to 1 (more spread out than random).
        let mut alt = LossPattern::new(20.0);
        for _ in 0..50 {
            alt.record(R);
            alt.record(L);
        }
        let g = alt.gilbert();
        assert_eq!((g.p, g.q, g.burst_r), (1.0, 1.0, 1.0));
    }

    #[test]
    fn bursts_raise_burst_r() {
        // Bursts of 5 every 100 packets: q = 1/5, p = 1/95 (per burst: 95 received-led pairs, 1 to loss).
        let mut p = LossPattern::new(20.0);
        for _ in 0..100 {
            feed(&mut p, R, 95);
            feed(&mut p, L, 5);
        }
        let g = p.gilbert();
        assert!((g.q - 0.2).abs() < 2e-3 && (g.p - 1.0 / 95.0).abs() < 1e-3, "{g:?}");
        assert!(g.burst_r > 4.5, "{g:?}");
        let bg = p.burst_gap();
        close(bg.burst_density, 1.0, "burst density");
        assert!((bg.burst_duration_ms - 100.0).abs() < 2.0, "{bg:?}");
        assert!(bg.gap_density < 1e-9);
    }

    #[test]
    fn reclassify() {
        let mut p = LossPattern::new(20.0);
        p.record(R);
        p.reclassify_lost_as_discarded();
        assert_eq!(p.discarded(), 0);
        p.record(L);
        p.reclassify_lost_as_discarded();
        assert_eq!((p.lost(), p.discarded()), (0, 1));
    }
}
