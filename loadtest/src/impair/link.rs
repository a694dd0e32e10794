//! One direction of a client's network: each datagram's fate, decided when it is sent.
//!
//! Per datagram, in this order:
//! 1. **Outage**: sent inside an outage window `[from_ms, until_ms)` → dropped ([`DropCause::Outage`]). Datagrams
//!    already in flight when a window starts are not recalled. The loss chain does not step during an outage.
//! 2. **Loss**: the [`GilbertElliott`] chain steps once → maybe dropped ([`DropCause::Loss`]).
//! 3. **Bandwidth cap**: a serialization queue. Transmission starts at `max(now, link free)` and takes
//!    `len_bytes * 8 / bandwidth_kbps` ms; if the wait before it starts would exceed `queue_ms`, the datagram is
//!    tail-dropped ([`DropCause::Queue`]) and takes no link time.
//! 4. **Delay and jitter**: arrival = end of transmission + `delay_ms` + an exponential draw with mean (and standard
//!    deviation) `jitter_ms`. The link is FIFO: arrival = `max(that, the previous FIFO arrival)`, so a slow datagram
//!    holds back those behind it, as a radio link's in-order delivery does, and they then arrive together.
//! 5. **Reordering**: with probability `reorder_pct`, the datagram is *held back*: it arrives at its FIFO time plus
//!    `gap * (1 + U) + 2 * jitter_ms` (`U` uniform in `[0, 1)`, `gap` a running mean of the interval between sends),
//!    and it does not hold back those behind it, so the next one or two datagrams overtake it. In RFC 4737's terms
//!    the held datagram is the reordered one; about 97 % of held datagrams are overtaken (the rest have no
//!    follower close enough, e.g. when the next one is held too).
//!
//! **What FIFO does to jitter.** An exponential draw has mean = standard deviation = `jitter_ms`, and two
//! independent draws differ by `jitter_ms` on average, so a stream paced much slower than the jitter sees an RFC 3550
//! jitter `J` of `jitter_ms`. With FIFO, a datagram can never arrive before the one sent before it, so a stream
//! paced every `T` ms has `D >= -T` and `J <= 2 T`, and the FIFO hold-backs raise the mean delay. For a 20 ms
//! stream (measured by this module's tests):
//!
//! | `jitter_ms` | mean extra delay | RFC 3550 `J` / `jitter_ms` |
//! |---|---|---|
//! | 1 | 1.0 ms | 1.00 |
//! | 10 | 10.8 ms | 0.95 |
//! | 15 | 17.7 ms | 0.89 |
//! | 50 | 90 ms | 0.54 |
//! | 100 | 234 ms | 0.33 |
//!
//! The mean extra delay of a `T`-paced stream is `∫ (1 - Π_k F(y + kT)) dy` over `y >= 0`, `F` the exponential
//! CDF: the stationary law of `Y_n = max(X_n, Y_{n-1} - T)`.

use super::gilbert::GilbertElliott;
use super::profile::LinkParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// What became of a datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fate {
    /// It arrives at `at_ms`, on the caller's clock.
    Deliver {
        /// The arrival time, ms.
        at_ms: f64,
    },
    /// It never arrives.
    Drop(DropCause),
}

impl Fate {
    /// The arrival time, if the datagram arrives.
    pub fn delivered_at(&self) -> Option<f64> {
        match self {
            Fate::Deliver { at_ms } => Some(*at_ms),
            Fate::Drop(_) => None,
        }
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropCause {
    /// Random or burst loss.
    Loss,
    /// The bandwidth cap's queue was full (tail drop).
    Queue,
    /// It was sent during an outage.
    Outage,
}

/// What a link did, counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkStats {
    /// Datagrams given to [`Link::send`].
    pub sent: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Datagrams dropped by random or burst loss.
    pub dropped_loss: u64,
    /// Datagrams tail-dropped by the bandwidth cap's queue.
    pub dropped_queue: u64,
    /// Datagrams dropped during an outage.
    pub dropped_outage: u64,
    /// Delivered datagrams held back so that later ones overtake them.
    pub reordered: u64,
    /// Bytes given to [`Link::send`].
    pub sent_bytes: u64,
    /// Bytes delivered.
    pub delivered_bytes: u64,
    /// The sum of delivered datagrams' one-way delays, ms.
    pub delay_ms_sum: f64,
}

impl LinkStats {
    /// Datagrams dropped, for any cause.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_queue + self.dropped_outage
    }

    /// The share of datagrams dropped, for any cause, percent (0 when nothing was sent).
    pub fn dropped_pct(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        100.0 * self.dropped() as f64 / self.sent as f64
    }

    /// The mean one-way delay of delivered datagrams, ms.
    pub fn mean_delay_ms(&self) -> Option<f64> {
        (self.delivered > 0).then(|| self.delay_ms_sum / self.delivered as f64)
    }

    /// Adds another link's counts to these.
    pub fn merge(&mut self, other: &LinkStats) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.dropped_loss += other.dropped_loss;
        self.dropped_queue += other.dropped_queue;
        self.dropped_outage += other.dropped_outage;
        self.reordered += other.reordered;
        self.sent_bytes += other.sent_bytes;
        self.delivered_bytes += other.delivered_bytes;
        self.delay_ms_sum += other.delay_ms_sum;
    }
}

/// One direction of a network, sans-IO: [`Link::send`] decides a datagram's fate from `now` and its length.
#[derive(Debug, Clone)]
pub struct Link {
    params: LinkParams,
    rng: StdRng,
    /// `None` when there is no loss: then no draws.
    loss: Option<GilbertElliott>,
    /// Outage windows `[from, until)`, ms; ended ones are forgotten.
    outages: Vec<(f64, f64)>,
    /// When the capped link finishes sending what it has queued.
    free_at_ms: f64,
    /// The last FIFO arrival (held-back datagrams do not count).
    last_arrival_ms: f64,
    /// The last send time, for the interval between sends.
    last_send_ms: Option<f64>,
    /// A running mean of the interval between sends, ms.
    gap_ms: f64,
    stats: LinkStats,
}

/// The send interval assumed until two sends have been seen: one 20 ms audio frame.
const INITIAL_GAP_MS: f64 = 20.0;

impl Link {
    /// A link with `params`, its random draws seeded by `seed`. Out-of-range values (see [`LinkParams::validate`])
    /// are clamped into range rather than refused.
    pub fn new(params: &LinkParams, seed: u64) -> Link {
        let params = sanitized(params);
        let mut rng = StdRng::seed_from_u64(seed);
        let loss =
            (params.loss_pct > 0.0).then(|| GilbertElliott::new(params.loss_pct / 100.0, params.burst_len, &mut rng));
        Link {
            params,
            rng,
            loss,
            outages: Vec::new(),
            free_at_ms: f64::NEG_INFINITY,
            last_arrival_ms: f64::NEG_INFINITY,
            last_send_ms: None,
            gap_ms: INITIAL_GAP_MS,
            stats: LinkStats::default(),
        }
    }

    /// Sends a datagram of `len_bytes` at `now_ms` (which must not be earlier than the last call's) and gives its
    /// fate. Counts it in [`Link::stats`].
    pub fn send(&mut self, now_ms: f64, len_bytes: usize) -> Fate {
        self.note_send(now_ms);
        let fate = self.fate(now_ms, len_bytes);
        self.count(now_ms, len_bytes, fate);
        fate
    }

    /// Adds an outage: nothing sent in `[from_ms, until_ms)` gets through. Windows may overlap; an empty one is
    /// ignored.
    pub fn set_outage(&mut self, from_ms: f64, until_ms: f64) {
        if from_ms < until_ms {
            self.outages.push((from_ms, until_ms));
        }
    }

    /// Removes every outage window.
    pub fn clear_outages(&mut self) {
        self.outages.clear();
    }

    /// Whether `now_ms` falls in an outage window.
    pub fn in_outage(&self, now_ms: f64) -> bool {
        self.outages
            .iter()
            .any(|&(from, until)| from <= now_ms && now_ms < until)
    }

    /// What the link has done so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// The parameters in use (after clamping).
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// The fate, through the five stages in order.
    fn fate(&mut self, now_ms: f64, len_bytes: usize) -> Fate {
        if self.outage(now_ms) {
            return Fate::Drop(DropCause::Outage);
        }
        if self.lose() {
            return Fate::Drop(DropCause::Loss);
        }
        let Some(sent_ms) = self.transmit(now_ms, len_bytes) else {
            return Fate::Drop(DropCause::Queue);
        };
        Fate::Deliver {
            at_ms: self.propagate(sent_ms),
        }
    }

    /// Updates the running mean of the send interval (weight 1/8).
    fn note_send(&mut self, now_ms: f64) {
        if let Some(last) = self.last_send_ms {
            self.gap_ms += ((now_ms - last).max(0.0) - self.gap_ms) / 8.0;
        }
        self.last_send_ms = Some(now_ms);
    }

    /// Whether `now_ms` is in an outage; forgets windows that have ended.
    fn outage(&mut self, now_ms: f64) -> bool {
        if self.outages.is_empty() {
            return false;
        }
        self.outages.retain(|&(_, until)| until > now_ms);
        self.in_outage(now_ms)
    }

    /// Whether the loss chain drops this datagram.
    fn lose(&mut self) -> bool {
        match &mut self.loss {
            Some(chain) => chain.lose(&mut self.rng),
            None => false,
        }
    }

    /// When the datagram has left the sender, or `None` if the cap's queue is full.
    fn transmit(&mut self, now_ms: f64, len_bytes: usize) -> Option<f64> {
        let Some(kbps) = self.params.bandwidth_kbps else {
            return Some(now_ms);
        };
        let start = now_ms.max(self.free_at_ms);
        if start - now_ms > self.params.queue_ms {
            return None;
        }
        // kbit/s is bits per millisecond.
        self.free_at_ms = start + len_bytes as f64 * 8.0 / kbps;
        Some(self.free_at_ms)
    }

    /// The arrival time of a datagram that has left the sender at `sent_ms`.
    fn propagate(&mut self, sent_ms: f64) -> f64 {
        let natural = sent_ms + self.params.delay_ms + self.jitter();
        let fifo = natural.max(self.last_arrival_ms);
        if self.params.reorder_pct > 0.0 && self.rng.random::<f64>() * 100.0 < self.params.reorder_pct {
            self.stats.reordered += 1;
            let hold = self.gap_ms * (1.0 + self.rng.random::<f64>()) + 2.0 * self.params.jitter_ms;
            return fifo + hold;
        }
        self.last_arrival_ms = fifo;
        fifo
    }

    /// An exponential draw with mean `jitter_ms` (inverse CDF; `1 - u` is in `(0, 1]`, so the log is finite).
    fn jitter(&mut self) -> f64 {
        if self.params.jitter_ms <= 0.0 {
            return 0.0;
        }
        let u: f64 = self.rng.random();
        -(-u).ln_1p() * self.params.jitter_ms
    }

    /// Counts the datagram.
    fn count(&mut self, now_ms: f64, len_bytes: usize, fate: Fate) {
        let s = &mut self.stats;
        s.sent += 1;
        s.sent_bytes += len_bytes as u64;
        match fate {
            Fate::Deliver { at_ms } => {
                s.delivered += 1;
                s.delivered_bytes += len_bytes as u64;
                s.delay_ms_sum += at_ms - now_ms;
            }
            Fate::Drop(DropCause::Loss) => s.dropped_loss += 1,
            Fate::Drop(DropCause::Queue) => s.dropped_queue += 1,
            Fate::Drop(DropCause::Outage) => s.dropped_outage += 1,
        }
    }
}

/// `params` with every value in range: NaN and negatives become the unimpaired value, percentages stay below 100,
/// a non-positive or NaN cap becomes none (an infinite one too).
fn sanitized(params: &LinkParams) -> LinkParams {
    let non_negative = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let percent = |v: f64| non_negative(v).min(99.999);
    LinkParams {
        delay_ms: non_negative(params.delay_ms),
        jitter_ms: non_negative(params.jitter_ms),
        loss_pct: percent(params.loss_pct),
        burst_len: if params.burst_len.is_finite() {
            params.burst_len.max(1.0)
        } else {
            1.0
        },
        reorder_pct: percent(params.reorder_pct),
        bandwidth_kbps: params.bandwidth_kbps.filter(|v| v.is_finite() && *v > 0.0),
        queue_ms: if params.queue_ms >= 0.0 { params.queue_ms } else { 0.0 },
    }
}
