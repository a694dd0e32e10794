//! Statistical tests of [`Link`]: fixed seeds, and enough packets that each tolerance is several standard errors
//! wide yet tight enough to catch a wrong model.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// One sent datagram: when, and what became of it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    now_ms: f64,
    fate: Fate,
}

/// Sends `n` datagrams of `len` bytes, one every `gap_ms`, starting at 0.
fn paced(params: &LinkParams, seed: u64, n: usize, gap_ms: f64, len: usize) -> (Vec<Sent>, LinkStats) {
    let mut link = Link::new(params, seed);
    let sent = (0..n)
        .map(|i| {
            let now_ms = i as f64 * gap_ms;
            Sent {
                now_ms,
                fate: link.send(now_ms, len),
            }
        })
        .collect();
    (sent, link.stats().clone())
}

fn with(f: impl FnOnce(&mut LinkParams)) -> LinkParams {
    let mut p = LinkParams::clean();
    f(&mut p);
    p
}

/// The one-way delays of delivered datagrams, in send order.
fn delays(sent: &[Sent]) -> Vec<f64> {
    sent.iter()
        .filter_map(|s| s.fate.delivered_at().map(|at| at - s.now_ms))
        .collect()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn std_dev(xs: &[f64]) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64).sqrt()
}

/// Loss rate (percent) and mean burst length (maximal runs of consecutive losses) over the send sequence.
fn loss_and_bursts(sent: &[Sent]) -> (f64, f64) {
    let lost: Vec<bool> = sent.iter().map(|s| s.fate == Fate::Drop(DropCause::Loss)).collect();
    let losses = lost.iter().filter(|l| **l).count();
    let bursts = lost
        .iter()
        .enumerate()
        .filter(|(i, l)| **l && (*i == 0 || !lost[i - 1]))
        .count();
    (100.0 * losses as f64 / sent.len() as f64, losses as f64 / bursts as f64)
}

/// Send indices of delivered datagrams in arrival order (equal times in send order, as a [`DelayLine`] gives them).
fn arrival_order(sent: &[Sent]) -> Vec<usize> {
    let mut line = DelayLine::new();
    for (i, s) in sent.iter().enumerate() {
        if let Some(at) = s.fate.delivered_at() {
            line.push(at, i);
        }
    }
    std::iter::from_fn(|| line.next_due().and_then(|t| line.pop_due(t))).collect()
}

#[test]
fn random_loss_rate_is_as_configured() {
    // 2 M packets: the standard error at 20 % is 0.028 pp, at 1 % 0.007 pp.
    for (pct, seed) in [(1.0, 11), (5.0, 12), (20.0, 13)] {
        let (sent, stats) = paced(&with(|p| p.loss_pct = pct), seed, 2_000_000, 20.0, 100);
        let (measured, burst) = loss_and_bursts(&sent);
        assert!((measured - pct).abs() < 0.1, "{measured} % for {pct} %");
        let random_burst = 1.0 / (1.0 - pct / 100.0);
        assert!(
            (burst - random_burst).abs() < 0.02,
            "bursts {burst} for random loss {random_burst}"
        );
        assert_eq!(stats.dropped(), stats.dropped_loss);
    }
}

#[test]
fn burst_loss_matches_rate_and_burst_length() {
    for (pct, burst_len, seed) in [(5.0, 3.0, 21), (20.0, 2.0, 22), (2.0, 3.0, 23)] {
        let params = with(|p| (p.loss_pct, p.burst_len) = (pct, burst_len));
        let (sent, _) = paced(&params, seed, 2_000_000, 20.0, 100);
        let (measured, burst) = loss_and_bursts(&sent);
        assert!((measured - pct).abs() < 0.3, "{measured} % for {pct} %");
        assert!((burst - burst_len).abs() < 0.15, "bursts {burst} for {burst_len}");
    }
}

#[test]
fn delay_without_jitter_is_exact() {
    let (sent, stats) = paced(&with(|p| p.delay_ms = 100.0), 1, 10_000, 20.0, 100);
    assert!(sent.iter().all(|s| s.fate
        == Fate::Deliver {
            at_ms: s.now_ms + 100.0
        }));
    assert_eq!(stats.mean_delay_ms(), Some(100.0));
    let (sent, _) = paced(&LinkParams::clean(), 1, 1_000, 3.0, 100);
    assert!(sent.iter().all(|s| s.fate == Fate::Deliver { at_ms: s.now_ms }));
}

#[test]
fn jitter_adds_its_mean_when_fifo_does_not_bind() {
    // Sent every second, with 10 ms of jitter: no datagram is ever held back by the one before.
    let params = with(|p| (p.delay_ms, p.jitter_ms) = (50.0, 10.0));
    let (sent, stats) = paced(&params, 31, 200_000, 1000.0, 100);
    let extra: Vec<f64> = delays(&sent).iter().map(|d| d - 50.0).collect();
    assert!(extra.iter().all(|x| *x >= 0.0));
    // Standard error of the mean: 10 / sqrt(200 000) = 0.022 ms.
    assert!((mean(&extra) - 10.0).abs() < 0.1, "mean {}", mean(&extra));
    assert!((std_dev(&extra) - 10.0).abs() < 0.2, "std {}", std_dev(&extra));
    let stat_mean = stats.mean_delay_ms().expect("delivered");
    assert!((stat_mean - 60.0).abs() < 0.1, "{stat_mean}");
}

/// The mean extra delay of a FIFO link with exponential jitter of mean `m`, paced every `t`:
/// `∫ (1 - Π_k F(y + k t)) dy`, `F` the exponential CDF.
fn fifo_mean_extra(m: f64, t: f64) -> f64 {
    let dy = m / 2000.0;
    (0..(60.0 * m / dy) as usize)
        .map(|i| {
            let y = (i as f64 + 0.5) * dy;
            let below: f64 = (0..)
                .map(|k| (-(y + k as f64 * t) / m).exp())
                .take_while(|tail| *tail > 1e-17)
                .map(|tail| 1.0 - tail)
                .product();
            (1.0 - below) * dy
        })
        .sum()
}

#[test]
fn paced_stream_delay_follows_the_fifo_formula() {
    for (jitter, seed) in [(10.0, 41), (50.0, 42)] {
        let params = with(|p| (p.delay_ms, p.jitter_ms) = (100.0, jitter));
        let (sent, _) = paced(&params, seed, 400_000, 20.0, 100);
        let measured = mean(&delays(&sent)) - 100.0;
        let expected = fifo_mean_extra(jitter, 20.0);
        assert!(expected > jitter, "FIFO raises the mean: {expected}");
        assert!(
            (measured / expected - 1.0).abs() < 0.02,
            "jitter {jitter}: {measured} vs {expected}"
        );
    }
}

#[test]
fn fifo_without_reordering() {
    let params = with(|p| (p.delay_ms, p.jitter_ms, p.loss_pct, p.burst_len) = (80.0, 50.0, 5.0, 2.0));
    let (sent, stats) = paced(&params, 51, 100_000, 20.0, 100);
    let arrivals: Vec<f64> = sent.iter().filter_map(|s| s.fate.delivered_at()).collect();
    assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
    let order = arrival_order(&sent);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "arrival order is send order");
    assert_eq!(stats.reordered, 0);
    // Equal arrival times do happen (a slow datagram releases a bunch): the delay line's tiebreak matters.
    assert!(arrivals.windows(2).filter(|w| w[0] == w[1]).count() > 1000);
}

#[test]
fn reordering_share_is_as_configured() {
    let params = with(|p| (p.delay_ms, p.jitter_ms, p.reorder_pct) = (60.0, 10.0, 2.0));
    let (sent, stats) = paced(&params, 61, 200_000, 20.0, 100);
    // RFC 4737: a packet is reordered if it arrives after one with a higher sequence number.
    let mut highest = None;
    let mut reordered = 0usize;
    for i in arrival_order(&sent) {
        match highest {
            Some(h) if i < h => reordered += 1,
            _ => highest = Some(i),
        }
    }
    // About 97 % of held packets get overtaken (see the link module), so about 1.94 %; over 30 seeds the
    // measured share stayed within 1.87..1.99 %, and the held share within 1.93..2.06 %.
    let pct = 100.0 * reordered as f64 / stats.delivered as f64;
    assert!((1.8..2.1).contains(&pct), "{pct} % reordered");
    let held = 100.0 * stats.reordered as f64 / stats.delivered as f64;
    assert!((held - 2.0).abs() < 0.12, "{held} % held");
    assert!(reordered as u64 <= stats.reordered);
}

/// RFC 3550's interarrival jitter over a stream in arrival order, averaged over the run after a warm-up.
fn rfc3550_mean_jitter(sent: &[Sent]) -> f64 {
    let mut j = 0.0;
    let mut sum = 0.0;
    let mut prev: Option<(f64, f64)> = None;
    let mut counted = 0usize;
    for i in arrival_order(sent) {
        let (s, r) = (sent[i].now_ms, sent[i].fate.delivered_at().unwrap_or(f64::NAN));
        if let Some((ps, pr)) = prev {
            let d = (r - pr) - (s - ps);
            j += (d.abs() - j) / 16.0;
        }
        prev = Some((s, r));
        if i >= 200 {
            sum += j;
            counted += 1;
        }
    }
    sum / counted as f64
}

#[test]
fn rfc3550_jitter_tracks_configured_jitter() {
    // The ratios in the link module's table, for a 20 ms stream.
    for (jitter, lo, hi, seed) in [(1.0, 0.97, 1.03, 71), (10.0, 0.91, 0.99, 72), (50.0, 0.50, 0.58, 73)] {
        let params = with(|p| (p.delay_ms, p.jitter_ms) = (40.0, jitter));
        let (sent, _) = paced(&params, seed, 200_000, 20.0, 100);
        let ratio = rfc3550_mean_jitter(&sent) / jitter;
        assert!((lo..hi).contains(&ratio), "jitter {jitter}: J / jitter = {ratio}");
    }
    // FIFO bounds it by twice the pacing, however large the configured jitter.
    let (sent, _) = paced(&with(|p| p.jitter_ms = 400.0), 74, 100_000, 20.0, 100);
    assert!(rfc3550_mean_jitter(&sent) < 40.0);
}

#[test]
fn bandwidth_cap_limits_throughput_and_queueing_delay() {
    // 50 datagrams/s of 200 bytes is 80 kbit/s, into 40 kbit/s: half must go.
    let params = with(|p| (p.delay_ms, p.bandwidth_kbps, p.queue_ms) = (30.0, Some(40.0), 200.0));
    let (sent, stats) = paced(&params, 81, 200_000, 20.0, 200);
    let serialization_ms = 200.0 * 8.0 / 40.0;
    let waits: Vec<f64> = delays(&sent).iter().map(|d| d - 30.0 - serialization_ms).collect();
    assert!(
        waits.iter().all(|w| (-1e-9..=200.0 + 1e-9).contains(w)),
        "a wait beyond queue_ms"
    );
    assert!(waits.iter().cloned().fold(0.0, f64::max) > 190.0, "the queue fills");
    let last_arrival = sent.iter().filter_map(|s| s.fate.delivered_at()).fold(0.0, f64::max);
    let kbps = stats.delivered_bytes as f64 * 8.0 / last_arrival;
    assert!((kbps - 40.0).abs() < 0.2, "{kbps} kbit/s");
    assert!(
        stats.dropped_queue > 90_000 && stats.dropped_queue < 110_000,
        "{stats:?}"
    );
    assert_eq!(stats.dropped(), stats.dropped_queue);
    // Under the cap: nothing dropped, no wait, only the serialization time.
    let (sent, stats) = paced(&params, 82, 10_000, 20.0, 50);
    assert_eq!(stats.dropped(), 0);
    assert!(delays(&sent).iter().all(|d| (d - 40.0).abs() < 1e-9));
}

#[test]
fn outage_drops_exactly_the_window() {
    let params = with(|p| (p.delay_ms, p.loss_pct, p.burst_len) = (50.0, 5.0, 3.0));
    let windows = [(1000.0, 3000.0), (2500.0, 3500.0), (5000.0, 5500.0)];
    let mut link = Link::new(&params, 91);
    for (from, until) in windows {
        link.set_outage(from, until);
    }
    link.set_outage(8000.0, 8000.0); // empty: ignored
    let mut in_window = 0;
    for i in 0..1000 {
        let now = i as f64 * 10.0;
        let fate = link.send(now, 100);
        let inside = windows.iter().any(|(f, u)| *f <= now && now < *u);
        in_window += usize::from(inside);
        assert_eq!(fate == Fate::Drop(DropCause::Outage), inside, "at {now}: {fate:?}");
    }
    assert_eq!(in_window, 300);
    assert_eq!(link.stats().dropped_outage, 300);
    assert!(link.stats().dropped_loss > 0);
    assert!(!link.in_outage(3400.0), "ended windows are forgotten");
}

#[test]
fn same_seed_same_fates() {
    let params = with(|p| {
        (p.delay_ms, p.jitter_ms, p.loss_pct, p.burst_len) = (100.0, 20.0, 3.0, 2.0);
        (p.reorder_pct, p.bandwidth_kbps, p.queue_ms) = (1.0, Some(60.0), 100.0);
    });
    let fates = |seed| -> Vec<Fate> {
        paced(&params, seed, 20_000, 20.0, 200)
            .0
            .iter()
            .map(|s| s.fate)
            .collect()
    };
    assert_eq!(fates(5), fates(5));
    assert_ne!(fates(5), fates(6));
}

#[test]
fn stats_add_up_and_serialize() {
    let params = with(|p| (p.loss_pct, p.bandwidth_kbps, p.reorder_pct) = (10.0, Some(20.0), 1.0));
    let (sent, stats) = paced(&params, 3, 5_000, 20.0, 100);
    assert_eq!(stats.sent, 5_000);
    assert_eq!(stats.delivered + stats.dropped(), stats.sent);
    assert_eq!(stats.sent_bytes, 500_000);
    assert_eq!(stats.delivered_bytes, stats.delivered * 100);
    assert_eq!(stats.delivered as usize, delays(&sent).len());
    assert!((stats.dropped_pct() - 100.0 * stats.dropped() as f64 / 5_000.0).abs() < 1e-12);
    let mut total = LinkStats::default();
    total.merge(&stats);
    total.merge(&stats);
    assert_eq!(total.sent, 10_000);
    let json = serde_json::to_value(&stats).expect("serializes");
    assert_eq!(json["dropped_queue"], stats.dropped_queue);
    assert_eq!(LinkStats::default().mean_delay_ms(), None);
}

#[test]
fn out_of_range_params_are_clamped() {
    let bad = LinkParams {
        delay_ms: f64::NAN,
        jitter_ms: -5.0,
        loss_pct: 250.0,
        burst_len: 0.0,
        reorder_pct: f64::INFINITY,
        bandwidth_kbps: Some(0.0),
        queue_ms: -1.0,
    };
    let mut link = Link::new(&bad, 1);
    assert!(link.params().validate().is_ok(), "{:?}", link.params());
    for i in 0..1000 {
        if let Fate::Deliver { at_ms } = link.send(f64::from(i), 10) {
            assert!(at_ms.is_finite());
        }
    }
}

/// Any link's parameters, in range.
fn any_params() -> impl Strategy<Value = LinkParams> {
    let bandwidth = prop::option::of(10.0..5000.0f64);
    (
        0.0..500.0f64,
        0.0..100.0f64,
        0.0..50.0f64,
        1.0..5.0f64,
        0.0..10.0f64,
        bandwidth,
        0.0..400.0f64,
    )
        .prop_map(
            |(delay_ms, jitter_ms, loss_pct, burst_len, reorder_pct, bandwidth_kbps, queue_ms)| LinkParams {
                delay_ms,
                jitter_ms,
                loss_pct,
                burst_len,
                reorder_pct,
                bandwidth_kbps,
                queue_ms,
            },
        )
}

proptest! {
    #![proptest_config(Config { cases: 128, rng_seed: RngSeed::Fixed(17), ..Config::default() })]

    /// Whatever the parameters and the traffic: nothing arrives before its delay and serialization, the
    /// counts add up, and without reordering arrivals keep send order.
    #[test]
    fn link_invariants(
        params in any_params(),
        seed in any::<u64>(),
        traffic in prop::collection::vec((0.0..60.0f64, 20usize..1500), 1..400),
    ) {
        let mut link = Link::new(&params, seed);
        let mut now = 0.0;
        let mut last_fifo = f64::NEG_INFINITY;
        for (gap, len) in &traffic {
            now += gap;
            let Fate::Deliver { at_ms } = link.send(now, *len) else { continue };
            let serialization = params.bandwidth_kbps.map_or(0.0, |kbps| *len as f64 * 8.0 / kbps);
            prop_assert!(at_ms >= now + params.delay_ms + serialization - 1e-9);
            if params.reorder_pct == 0.0 {
                prop_assert!(at_ms >= last_fifo);
                last_fifo = at_ms;
            }
            if params.jitter_ms == 0.0 && params.reorder_pct == 0.0 {
                let queued = at_ms - now - params.delay_ms - serialization;
                prop_assert!(queued <= params.queue_ms + 1e-9 || params.bandwidth_kbps.is_none());
            }
        }
        let s = link.stats();
        prop_assert_eq!(s.sent, traffic.len() as u64);
        prop_assert_eq!(s.delivered + s.dropped(), s.sent);
    }
}
