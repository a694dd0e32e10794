use super::*;
use proptest::prelude::*;

const TICKS: u32 = 960;

/// Feeds 16-bit `seqs`, each with its RTP timestamp frame index and arrival time.
fn feed(s: &mut StreamStats, packets: &[(u16, u32, f64)]) -> Vec<ArrivalKind> {
    packets
        .iter()
        .map(|&(seq, frame, arrival)| s.on_packet(seq, frame.wrapping_mul(TICKS), arrival, None).1)
        .collect()
}

/// Packets `seq` in order, frame index = seq, arriving every 20 ms, skipping `missing`.
fn paced(range: std::ops::Range<u16>, missing: &[u16]) -> Vec<(u16, u32, f64)> {
    range
        .filter(|s| !missing.contains(s))
        .map(|s| (s, u32::from(s), f64::from(s) * 20.0))
        .collect()
}

fn counts(s: &StreamStats) -> (u64, u64, u64, u64, u64) {
    (s.expected(), s.received(), s.lost(), s.duplicates(), s.reordered())
}

#[test]
fn in_order() {
    let mut s = StreamStats::new(48_000);
    let kinds = feed(&mut s, &paced(100..110, &[]));
    assert!(kinds.iter().all(|&k| k == ArrivalKind::InOrder));
    assert_eq!(counts(&s), (10, 10, 0, 0, 0));
    assert_eq!(s.jitter_ms(), 0.0);
    let (first, last) = s.seq_range().expect("packets seen");
    assert_eq!(last - first, 9);
}

#[test]
fn single_loss_and_burst_of_three() {
    let mut one = StreamStats::new(48_000);
    feed(&mut one, &paced(0..10, &[5]));
    assert_eq!(counts(&one), (10, 9, 1, 0, 0));
    let mut three = StreamStats::new(48_000);
    feed(&mut three, &paced(0..10, &[4, 5, 6]));
    assert_eq!(counts(&three), (10, 7, 3, 0, 0));
    // Jitter is untouched: every packet that arrived did so exactly on its timestamp.
    assert_eq!(three.jitter_ms(), 0.0);
}

#[test]
fn reordering() {
    let mut s = StreamStats::new(48_000);
    let kinds = feed(
        &mut s,
        &[(0, 0, 0.0), (1, 1, 20.0), (3, 3, 60.0), (2, 2, 61.0), (4, 4, 80.0)],
    );
    assert_eq!(kinds[3], ArrivalKind::Reordered);
    assert_eq!(counts(&s), (5, 5, 0, 0, 1));
}

#[test]
fn duplicate() {
    let mut s = StreamStats::new(48_000);
    let kinds = feed(
        &mut s,
        &[(0, 0, 0.0), (1, 1, 20.0), (1, 1, 25.0), (2, 2, 40.0), (0, 0, 41.0)],
    );
    assert_eq!(kinds[2], ArrivalKind::Duplicate);
    assert_eq!(kinds[4], ArrivalKind::Duplicate);
    assert_eq!(counts(&s), (3, 3, 0, 2, 0));
    assert_eq!(s.jitter_ms(), 0.0, "duplicates do not move the jitter");
}

#[test]
fn wrap_at_65535() {
    let mut s = StreamStats::new(48_000);
    feed(
        &mut s,
        &[
            (65533, 0, 0.0),
            (65534, 1, 20.0),
            (65535, 2, 40.0),
            (0, 3, 60.0),
            (1, 4, 80.0),
        ],
    );
    assert_eq!(counts(&s), (5, 5, 0, 0, 0));

    // Reordered across the wrap, and a loss just after it.
    let mut r = StreamStats::new(48_000);
    feed(&mut r, &[(65534, 0, 0.0), (0, 2, 40.0), (65535, 1, 41.0), (2, 4, 80.0)]);
    assert_eq!(counts(&r), (5, 4, 1, 0, 1));

    // A packet sent before the first one, arriving after it across the wrap, lowers the first number.
    let mut b = StreamStats::new(48_000);
    feed(&mut b, &[(1, 2, 40.0), (65535, 0, 41.0)]);
    assert_eq!(counts(&b), (3, 2, 1, 0, 1));
}

#[test]
fn extender() {
    let mut e = SeqExtender::new();
    let ext: Vec<u64> = [65534u16, 65535, 0, 1, 65535, 2].iter().map(|&s| e.extend(s)).collect();
    let base = ext[0];
    assert_eq!(ext, vec![base, base + 1, base + 2, base + 3, base + 1, base + 4]);
    let mut f = SeqExtender::new();
    let a = f.extend(10);
    assert_eq!(f.extend(65530), a - 16, "just before the first, across the wrap");
}

/// A DTX pause: sequence numbers stay contiguous while the timestamp jumps by 11 frames (10 frames not sent)
/// and arrivals by 220 ms. Not loss, and no jitter: D = 220 ms × 48 - 11 × 960 = 0.
#[test]
fn dtx_gap_is_neither_loss_nor_jitter() {
    let mut s = StreamStats::new(48_000);
    let packets: Vec<(u16, u32, f64)> = (0u16..10)
        .map(|i| {
            let frame = if i < 5 { u32::from(i) } else { u32::from(i) + 10 };
            (i, frame, f64::from(frame) * 20.0 + 30.0)
        })
        .collect();
    feed(&mut s, &packets);
    assert_eq!(counts(&s), (10, 10, 0, 0, 0));
    assert!(s.jitter_ms().abs() < 1e-12, "{}", s.jitter_ms());
}

/// Arrivals 20 ms apart, every second one 5 ms late: |D| = 5 ms = 240 ticks at every step after the first,
/// so J_n = J_(n-1) + (240 - J_(n-1)) / 16, J after k packets (k - 1 updates) = 240 (1 - (15/16)^(k-1)) ticks.
/// By hand: k = 2: 15 ticks = 0.3125 ms; k = 3: 15 + 225/16 = 29.0625 ticks = 0.60546875 ms.
#[test]
fn jitter_of_alternating_5_ms_offset() {
    let expect_ms = |k: i32| 5.0 * (1.0 - (15.0f64 / 16.0).powi(k - 1));
    let mut s = StreamStats::new(48_000);
    for i in 0u16..200 {
        let arrival = f64::from(i) * 20.0 + if i % 2 == 1 { 5.0 } else { 0.0 };
        s.on_packet(i, u32::from(i) * TICKS, arrival, None);
        let k = i32::from(i) + 1;
        match k {
            2 => assert!((s.jitter_ms() - 0.3125).abs() < 1e-12),
            3 => assert!((s.jitter_ms() - 0.60546875).abs() < 1e-12),
            _ => assert!(
                (s.jitter_ms() - expect_ms(k)).abs() < 1e-9,
                "k = {k}: {}",
                s.jitter_ms()
            ),
        }
    }
    assert!((s.jitter_ms() - 5.0).abs() < 1e-4, "converges to 5 ms");
}

#[test]
fn jitter_in_other_clock_rates() {
    let mut j = InterarrivalJitter::new(8_000);
    j.update(0.0, 0);
    j.update(30.0, 160); // 20 ms of timestamps, 30 ms of arrival: |D| = 10 ms = 80 ticks.
    assert!((j.ticks() - 5.0).abs() < 1e-12 && (j.ms() - 0.625).abs() < 1e-12);
}

#[test]
fn one_way_delay_percentiles() {
    let mut s = StreamStats::new(48_000);
    for i in 0u16..100 {
        let sent = f64::from(i) * 20.0;
        s.on_packet(i, u32::from(i) * TICKS, sent + f64::from(i) + 0.3, Some(sent));
    }
    let d = s.delay().summary().expect("delays recorded");
    assert_eq!(d.count, 100);
    assert!((d.mean - 49.8).abs() < 1e-9 && (d.min - 0.3).abs() < 1e-9 && (d.max - 99.3).abs() < 1e-9);
    assert_eq!((d.p50, d.p95, d.p99), (49.5, 94.5, 98.5));

    let mut h = DelayHistogram::new();
    assert!(h.summary().is_none());
    for ms in [40.2, 40.2, 40.2, f64::NAN] {
        h.record(ms);
    }
    assert_eq!(
        h.percentile(50.0),
        Some(40.2),
        "the bucket middle is kept within [min, max]"
    );
    h.record(2500.0);
    let d = h.summary().expect("samples");
    assert_eq!((d.count, d.p50), (4, 40.5));
    assert_eq!(d.p99, 2500.0, "the overflow bucket reads as the maximum");
    h.record(-3.0);
    assert_eq!(h.percentile(0.0), Some(-3.0));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(11),
        ..ProptestConfig::default() })]

    /// Whatever is dropped, duplicated or swapped with its neighbour (first and last packets always arrive),
    /// lost = dropped and duplicates = copies, across any wrap.
    #[test]
    fn counts_match_what_the_network_did(
        start in any::<u16>(),
        fates in prop::collection::vec((0u8..10, any::<bool>(), any::<bool>()), 2..400),
    ) {
        let n = fates.len();
        let mut arrivals: Vec<u16> = Vec::new();
        let (mut dropped, mut copies) = (0u64, 0u64);
        for (i, &(roll, dup, _)) in fates.iter().enumerate() {
            let seq = start.wrapping_add(i as u16);
            if roll == 0 && i != 0 && i != n - 1 {
                dropped += 1;
                continue;
            }
            arrivals.push(seq);
            if dup {
                arrivals.push(seq);
                copies += 1;
            }
        }
        for (i, &(_, _, swap)) in fates.iter().enumerate() {
            if swap && i + 1 < arrivals.len() && i > 0 {
                arrivals.swap(i, i + 1);
            }
        }
        let mut s = StreamStats::new(48_000);
        for (k, &seq) in arrivals.iter().enumerate() {
            s.on_packet(seq, u32::from(seq) * TICKS, k as f64 * 20.0, None);
        }
        prop_assert_eq!(s.expected(), n as u64);
        prop_assert_eq!(s.lost(), dropped);
        prop_assert_eq!(s.duplicates(), copies);
        prop_assert_eq!(s.received(), n as u64 - dropped);
    }
}
