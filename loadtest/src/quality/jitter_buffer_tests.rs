use super::*;
use proptest::prelude::*;

const TICKS: u32 = 960;

/// What playout did, with payloads reduced to the sequence number they carry.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Play {
        seq: u64,
        at: f64,
    },
    Missing {
        seq: u64,
        at: f64,
        late: bool,
        next: Option<u64>,
    },
    Silence {
        frames: u32,
    },
}

/// An arrival: (arrival ms, seq, RTP timestamp). The payload is the seq.
type Arrival = (f64, u64, u32);

/// Runs the buffer in virtual time: wakes at each arrival and each deadline, pushes what arrived, drains playout.
fn run(config: &JitterConfig, arrivals: &[Arrival]) -> (Vec<Out>, JitterBuffer<u64>) {
    let mut arrivals = arrivals.to_vec();
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut jb = JitterBuffer::new(config);
    let (mut out, mut i, mut now) = (Vec::new(), 0, f64::NEG_INFINITY);
    for _ in 0..1_000_000 {
        let t = match (arrivals.get(i).map(|a| a.0), jb.next_deadline()) {
            (None, None) => return (out, jb),
            (Some(a), None) => a,
            (None, Some(d)) => d,
            (Some(a), Some(d)) => a.min(d),
        };
        now = now.max(t);
        while let Some(&(at, seq, ts)) = arrivals.get(i).filter(|a| a.0 <= now) {
            jb.push(seq, ts, at, seq);
            i += 1;
        }
        while let Some(p) = jb.poll(now) {
            assert!(p_at(&p) <= now, "{p:?} after {now}");
            out.push(match p {
                Playout::Play { seq, at_ms, payload } => {
                    assert_eq!(seq, payload);
                    Out::Play { seq, at: at_ms }
                }
                Playout::Missing { seq, at_ms, late, next } => Out::Missing {
                    seq,
                    at: at_ms,
                    late,
                    next: next.copied(),
                },
                Playout::Silence { frames, .. } => Out::Silence { frames },
            });
        }
    }
    panic!("the buffer never settled");
}

fn p_at<T>(p: &Playout<'_, T>) -> f64 {
    match p {
        Playout::Play { at_ms, .. } | Playout::Missing { at_ms, .. } | Playout::Silence { at_ms, .. } => *at_ms,
    }
}

/// Frames `0..n` sent every 20 ms, arriving after `delay(seq)` ms; `None` drops the packet.
fn stream(n: u64, delay: impl Fn(u64) -> Option<f64>) -> Vec<Arrival> {
    (0..n)
        .filter_map(|s| delay(s).map(|d| (s as f64 * 20.0 + d, s, s as u32 * TICKS)))
        .collect()
}

fn played(out: &[Out]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Out::Play { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn perfectly_paced_plays_everything_at_the_minimum_delay() {
    let (out, jb) = run(&JitterConfig::default(), &stream(100, |_| Some(40.0)));
    assert_eq!(played(&out), (0..100).collect::<Vec<_>>());
    for (s, o) in out.iter().enumerate() {
        assert_eq!(
            o,
            &Out::Play {
                seq: s as u64,
                at: s as f64 * 20.0 + 40.0 + 20.0
            }
        );
    }
    let st = jb.stats();
    assert_eq!(
        (st.played, st.lost, st.late_discarded, st.spurts, st.underruns),
        (100, 0, 0, 1, 0)
    );
    assert!((st.mean_delay_ms - 20.0).abs() < 1e-9, "{}", st.mean_delay_ms);
    assert_eq!(
        jb.next_deadline(),
        None,
        "nothing left, and nothing is due until a packet arrives"
    );
}

#[test]
fn a_packet_delayed_beyond_the_buffer_is_discarded_late() {
    let arrivals = stream(20, |s| Some(if s == 5 { 140.0 } else { 40.0 }));
    let (out, jb) = run(&JitterConfig::default(), &arrivals);
    // Frame 5 was due at 5 × 20 + 60 = 160 ms; frame 6 had arrived (at 160) so its absence counted then.
    assert_eq!(
        out[5],
        Out::Missing {
            seq: 5,
            at: 160.0,
            late: false,
            next: Some(6)
        }
    );
    assert_eq!(out[6], Out::Play { seq: 6, at: 180.0 });
    let st = jb.stats();
    assert_eq!((st.played, st.lost, st.late_discarded), (19, 0, 1));
    assert_eq!((jb.pattern().lost(), jb.pattern().discarded()), (0, 1));
}

#[test]
fn a_late_packet_still_buffered_at_its_turn_is_discarded() {
    // The caller pushes frame 5 (late) before polling for its slot: same outcome, reported as late.
    let mut jb = JitterBuffer::new(&JitterConfig::default());
    for s in 0..5u64 {
        jb.push(s, s as u32 * TICKS, s as f64 * 20.0, s);
    }
    jb.push(6, 6 * TICKS, 120.0, 6);
    jb.push(5, 5 * TICKS, 125.0, 5);
    let mut outs = Vec::new();
    while let Some(p) = jb.poll(1000.0) {
        outs.push(matches!(
            p,
            Playout::Missing {
                late: true,
                seq: 5,
                next: Some(&6),
                ..
            }
        ));
    }
    assert_eq!(outs.iter().filter(|&&b| b).count(), 1);
    assert_eq!(jb.stats().late_discarded, 1);
}

#[test]
fn a_loss_is_missing_then_the_next_plays() {
    let (out, jb) = run(&JitterConfig::default(), &stream(10, |s| (s != 5).then_some(40.0)));
    assert_eq!(
        out[5],
        Out::Missing {
            seq: 5,
            at: 160.0,
            late: false,
            next: Some(6)
        }
    );
    assert_eq!(out[6], Out::Play { seq: 6, at: 180.0 });
    let st = jb.stats();
    assert_eq!((st.played, st.lost, st.late_discarded), (9, 1, 0));
}

#[test]
fn a_burst_of_losses_gives_next_only_to_the_last() {
    let (out, _) = run(
        &JitterConfig::default(),
        &stream(10, |s| (!(3..6).contains(&s)).then_some(40.0)),
    );
    let nexts: Vec<Option<u64>> = out[3..6]
        .iter()
        .map(|o| match o {
            Out::Missing { next, .. } => *next,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(nexts, vec![None, None, Some(6)]);
}

/// Frames 0-4, a DTX pause of 10 frames (timestamps jump by 11 frames between seq 4 and 5, no sequence gap),
/// then frames 5-9 whose network delay has grown from 40 to 150 ms. The new spurt re-anchors on seq 5's
/// arrival, so nothing is discarded, and it is silence, not loss.
#[test]
fn a_dtx_gap_starts_a_new_spurt() {
    let arrivals: Vec<Arrival> = (0..10u64)
        .map(|s| {
            let frame = if s < 5 { s } else { s + 10 };
            let delay = if s < 5 { 40.0 } else { 150.0 };
            (frame as f64 * 20.0 + delay, s, frame as u32 * TICKS)
        })
        .collect();
    let (out, jb) = run(&JitterConfig::default(), &arrivals);
    assert_eq!(played(&out), (0..10).collect::<Vec<_>>());
    assert_eq!(out[5], Out::Silence { frames: 10 });
    // Seq 5 arrives at 15 × 20 + 150 = 450 ms. The jitter estimate saw one |D| of 110 ms: J = 110 / 16 ms,
    // so the new delay is 2 J + 20 = 33.75 ms.
    let Out::Play { seq: 5, at } = out[6] else {
        panic!("{:?}", out[6])
    };
    assert!((at - (450.0 + 2.0 * 110.0 / 16.0 + 20.0)).abs() < 1e-9, "{at}");
    let st = jb.stats();
    assert_eq!(
        (st.lost, st.late_discarded, st.spurts, st.dtx_frames, st.underruns),
        (0, 0, 2, 10, 0)
    );
    assert_eq!(jb.pattern().packets(), 10, "silence has no fate");
}

#[test]
fn reordering_within_the_buffer_plays_in_order() {
    let config = JitterConfig {
        min_ms: 60.0,
        ..JitterConfig::default()
    };
    // Seq 3 arrives 30 ms late, after seq 4; seq 7 arrives 10 ms before seq 6.
    let arrivals = stream(10, |s| match s {
        3 => Some(70.0),
        7 => Some(30.0),
        _ => Some(40.0),
    });
    let (out, jb) = run(&config, &arrivals);
    assert_eq!(played(&out), (0..10).collect::<Vec<_>>());
    let st = jb.stats();
    assert_eq!((st.lost, st.late_discarded), (0, 0));
}

#[test]
fn an_earlier_packet_before_playout_starts_moves_the_start_back() {
    let mut jb = JitterBuffer::new(&JitterConfig::default());
    jb.push(11, 11 * TICKS, 220.0, 11u64);
    jb.push(10, 10 * TICKS, 221.0, 10u64);
    let mut seqs = Vec::new();
    while let Some(p) = jb.poll(1000.0) {
        if let Playout::Play { seq, .. } = p {
            seqs.push(seq);
        }
    }
    assert_eq!(seqs, vec![10, 11]);
}

/// Network delay steps from 40 to 240 ms mid-spurt, no DTX: the buffer runs dry, and the next packet starts a
/// new spurt instead of every later packet being discarded.
#[test]
fn an_underrun_re_anchors() {
    let (out, jb) = run(
        &JitterConfig::default(),
        &stream(30, |s| Some(if s < 10 { 40.0 } else { 240.0 })),
    );
    assert_eq!(played(&out), (0..30).collect::<Vec<_>>());
    let st = jb.stats();
    assert_eq!((st.lost, st.late_discarded, st.spurts, st.underruns), (0, 0, 2, 1));
}

#[test]
fn duplicates_are_counted_not_played() {
    let mut jb = JitterBuffer::new(&JitterConfig::default());
    jb.push(0, 0, 0.0, 0u64);
    jb.push(0, 0, 1.0, 0u64);
    jb.push(1, TICKS, 20.0, 1u64);
    assert!(matches!(jb.poll(20.0), Some(Playout::Play { seq: 0, .. })));
    jb.push(0, 0, 30.0, 0u64);
    assert!(matches!(jb.poll(40.0), Some(Playout::Play { seq: 1, .. })));
    assert!(jb.poll(1e9).is_none());
    assert_eq!(jb.stats().duplicates, 2);
}

#[test]
fn an_outage_longer_than_the_ring_grows_it() {
    // 400 frames (8 s) lost in a row, no DTX: more than the initial 128 slots.
    let (out, jb) = run(
        &JitterConfig::default(),
        &stream(600, |s| (!(100..500).contains(&s)).then_some(40.0)),
    );
    let st = jb.stats();
    assert_eq!((st.played, st.lost, st.late_discarded, st.ignored), (200, 400, 0, 0));
    assert_eq!(out.len(), 600);
}

#[test]
fn config_validation_and_repair() {
    assert_eq!(JitterConfig::default().validate(), Ok(()));
    assert_eq!(JitterConfig::default().frame_ticks(), 960);
    let bad = JitterConfig {
        min_ms: 100.0,
        max_ms: 50.0,
        ..JitterConfig::default()
    };
    assert!(matches!(bad.validate(), Err(JitterConfigError::MaxMs { .. })));
    let zero = JitterConfig {
        frame_ms: 0.0,
        ..JitterConfig::default()
    };
    assert!(zero.validate().is_err());
    let jb: JitterBuffer<()> = JitterBuffer::new(&zero);
    assert_eq!(jb.config().frame_ms, 20.0);
    let parsed: JitterConfig = serde_json::from_str(r#"{"max_ms": 200}"#).expect("partial config parses");
    assert_eq!((parsed.min_ms, parsed.max_ms), (20.0, 200.0));
}

#[test]
fn sink_receives_every_step() {
    #[derive(Default)]
    struct Count(u64, u64, u32);
    impl PlayoutSink<u64> for Count {
        fn play(&mut self, _: u64, _: &u64) {
            self.0 += 1;
        }
        fn missing(&mut self, _: u64, _: Option<&u64>) {
            self.1 += 1;
        }
        fn silence(&mut self, frames: u32) {
            self.2 += frames;
        }
    }
    let mut jb = JitterBuffer::new(&JitterConfig::default());
    for (s, frame) in [(0u64, 0u32), (1, 1), (3, 3), (4, 9)] {
        jb.push(s, frame * TICKS, f64::from(frame) * 20.0, s);
    }
    let mut c = Count::default();
    assert_eq!(jb.play(1e6, Some(&mut c)), 6);
    assert_eq!((c.0, c.1, c.2), (4, 1, 5));
    assert_eq!(jb.play(1e6, None::<&mut Count>), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(5),
        ..ProptestConfig::default() })]

    /// Whatever the network does (delays up to 300 ms, drops, DTX pauses), each frame gets exactly one turn, in
    /// sequence order, at non-decreasing times, and played + lost + late = frames.
    #[test]
    fn every_frame_gets_one_turn(
        packets in prop::collection::vec((0.0f64..300.0, 0u8..20, 0u8..30), 1..300),
        min_ms in 0.0f64..100.0,
    ) {
        let (mut frame, mut arrivals, mut sent) = (0u64, Vec::new(), 0u64);
        for (s, &(delay, drop, pause)) in packets.iter().enumerate() {
            if pause == 0 {
                frame += 15;
            }
            // The first packet arrives first, so playout starts with it; the last one always arrives, so every
            // earlier turn comes.
            let delay = if s == 0 { 0.0 } else { delay };
            if drop != 0 || s == 0 || s + 1 == packets.len() {
                arrivals.push((frame as f64 * 20.0 + delay, s as u64, (frame as u32).wrapping_mul(TICKS)));
                sent += 1;
            }
            frame += 1;
        }
        let config = JitterConfig { min_ms, ..JitterConfig::default() };
        let (out, jb) = run(&config, &arrivals);
        let n = packets.len() as u64;
        let turns: Vec<(u64, f64)> = out.iter().filter_map(|o| match o {
            Out::Play { seq, at } | Out::Missing { seq, at, .. } => Some((*seq, *at)),
            Out::Silence { .. } => None,
        }).collect();
        prop_assert_eq!(turns.iter().map(|t| t.0).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
        prop_assert!(turns.windows(2).all(|w| w[0].1 <= w[1].1), "times go backwards: {:?}", turns);
        let st = jb.stats();
        prop_assert_eq!(st.played + st.lost + st.late_discarded, n);
        prop_assert_eq!(st.lost, n - sent);
        prop_assert_eq!(jb.pattern().packets(), n);
        prop_assert!(st.mean_delay_ms >= 0.0);
    }

    /// Garbage in (any sequence numbers, timestamps, arrival and poll times, in any order): no panic, every yield
    /// in sequence order, and the counts add up.
    #[test]
    fn garbage_does_not_panic(
        events in prop::collection::vec((0u64..3000, any::<u32>(), -1e3f64..1e6, any::<bool>()), 1..300),
    ) {
        let mut jb = JitterBuffer::new(&JitterConfig::default());
        let mut last: Option<u64> = None;
        for &(seq, ts, t, poll) in &events {
            if poll {
                while let Some(p) = jb.poll(t) {
                    let seq = match p {
                        Playout::Play { seq, .. } | Playout::Missing { seq, .. } => seq,
                        Playout::Silence { .. } => continue,
                    };
                    prop_assert!(last.is_none_or(|l| seq > l), "{seq} after {last:?}");
                    last = Some(seq);
                }
            } else {
                jb.push(seq, ts, t, seq);
            }
            let _ = jb.next_deadline();
        }
        let st = jb.stats();
        prop_assert!(st.mean_delay_ms.is_finite());
        // Late packets too old to find their turn's record count as late without a fate of their own.
        let p = jb.pattern();
        prop_assert_eq!((p.received(), p.lost()), (st.played, st.lost));
        prop_assert!(p.discarded() <= st.late_discarded);
    }
}
