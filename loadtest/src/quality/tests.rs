//! [`StreamQuality`] end to end: arrivals in, playout drained, one summary and one score out.

use super::*;

const TICKS: u32 = 960;

/// A decoder stand-in with the shape of the harness's `audio::Listener`.
#[derive(Default)]
struct Listener {
    decoded: u64,
    concealed: u64,
    fec: u64,
    dtx: u64,
}

impl PlayoutSink<Vec<u8>> for Listener {
    fn play(&mut self, _: u64, _: &Vec<u8>) {
        self.decoded += 1;
    }
    fn missing(&mut self, _: u64, next: Option<&Vec<u8>>) {
        match next {
            Some(_) => self.fec += 1,
            None => self.concealed += 1,
        }
    }
    fn silence(&mut self, frames: u32) {
        self.dtx += u64::from(frames);
    }
}

/// One packet as the network delivers it.
struct Pkt {
    seq: u64,
    frame: u32,
    sent: f64,
    arrival: f64,
}

/// Drives `q` in virtual time, the way the harness's event loop does.
fn drive(q: &mut StreamQuality, listener: &mut Option<Listener>, mut pkts: Vec<Pkt>) {
    pkts.sort_by(|a, b| a.arrival.total_cmp(&b.arrival));
    let mut pkts = pkts.into_iter().peekable();
    loop {
        let now = match (pkts.peek().map(|p| p.arrival), q.next_deadline()) {
            (None, None) => return,
            (Some(a), Some(d)) => a.min(d),
            (a, d) => a.or(d).unwrap_or_default(),
        };
        while let Some(p) = pkts.next_if(|p| p.arrival <= now) {
            q.push(
                p.seq,
                p.frame.wrapping_mul(TICKS),
                p.arrival,
                Some(p.sent),
                vec![0xfc, p.seq as u8],
            );
        }
        q.play(now, listener.as_mut());
    }
}

/// 1000 frames at 50 ms one-way delay, ±4 ms alternate jitter: frames 100-102 lost (a burst of 3), frame 300
/// lost, frame 500 delayed 200 ms (late), frame 700 duplicated, frames 800-809 not sent (DTX: the sequence
/// numbers skip nothing, the timestamps jump 10 frames).
fn call() -> Vec<Pkt> {
    let mut pkts = Vec::new();
    let mut seq = 5000u64;
    for frame in 0u32..1000 {
        if (800..810).contains(&frame) {
            continue;
        }
        let sent = f64::from(frame) * 20.0;
        let jitter = if frame % 2 == 0 { 0.0 } else { 4.0 };
        let extra = if frame == 500 { 200.0 } else { 0.0 };
        let lost = (100..103).contains(&frame) || frame == 300;
        if !lost {
            let arrival = sent + 50.0 + jitter + extra;
            pkts.push(Pkt {
                seq,
                frame,
                sent,
                arrival,
            });
            if frame == 700 {
                pkts.push(Pkt {
                    seq,
                    frame,
                    sent,
                    arrival: arrival + 1.0,
                });
            }
        }
        seq += 1;
    }
    pkts
}

#[test]
fn a_call_end_to_end() {
    let mut q = StreamQuality::new(&JitterConfig::default());
    let mut listener = Some(Listener::default());
    drive(&mut q, &mut listener, call());
    let s = q.summary();
    assert_eq!(
        (s.expected, s.received, s.lost, s.late_discarded, s.duplicates),
        (990, 986, 4, 1, 1)
    );
    assert!((s.loss_pct - 5.0 * 100.0 / 990.0).abs() < 1e-9, "{}", s.loss_pct);
    assert_eq!((s.dtx_frames, s.underruns), (10, 0));
    assert_eq!(s.reordered, 1, "the late frame 500 arrives after 501");
    let d = s.delay_ms.expect("send times were given");
    assert!((d.min - 50.0).abs() < 1e-9 && (d.max - 250.0).abs() < 1e-9, "{d:?}");
    // Just over half the frames at 54 ms (the lost ones are mostly even): read at the middle of the 1 ms bucket.
    assert_eq!((d.p50, d.p99), (54.5, 54.5), "{d:?}");
    // Received: 491 even frames at 50 ms, frame 500 at 250, 494 odd frames at 54 (the duplicate not counted).
    assert!(
        (d.mean - (491.0 * 50.0 + 250.0 + 494.0 * 54.0) / 986.0).abs() < 1e-9,
        "{d:?}"
    );
    assert!(s.jitter_ms > 1.0 && s.jitter_ms < 20.0, "{}", s.jitter_ms);
    // First spurt: J = 0 at its first packet, so 20 ms for even frames and 16 for odd ones; after the DTX pause
    // J is about 4 ms, so 28 and 24: a mean between 18 and 26.
    assert!(
        s.jitter_buffer_ms > 18.0 && s.jitter_buffer_ms < 26.0,
        "{}",
        s.jitter_buffer_ms
    );
    assert!(
        s.burst_r > 1.0 && s.gilbert_q < 1.0,
        "a burst of 3 makes loss bursty: {s:?}"
    );

    let l = listener.expect("still there");
    assert_eq!(l.decoded, 985);
    assert_eq!(l.dtx, 10);
    assert_eq!(
        l.fec + l.concealed,
        5,
        "4 lost and 1 late frame were missing at their turn"
    );

    let score = s
        .score(&Codec::default(), 10.0, Some(500.0))
        .expect("packets were expected");
    assert_eq!(score.delay_source, DelaySource::OneWay);
    let want = d.mean + s.jitter_buffer_ms + 20.0 + 6.5 + 10.0;
    assert!((score.mouth_to_ear_ms - want).abs() < 1e-9);
    assert_eq!(score.label.scale, Scale::Wideband);
    assert!(score.r < 129.0 - 1.41 - 19.96 && score.r > 80.0, "{score:?}");
    assert!(score.mos > 3.5 && score.mos < 4.2, "{score:?}");
}

#[test]
fn summary_and_score_serialise() {
    let mut q = StreamQuality::new(&JitterConfig::default());
    drive(&mut q, &mut None, call());
    let s = q.summary();
    let json = serde_json::to_string(&s).expect("summary serialises");
    let back: StreamSummary = serde_json::from_str(&json).expect("and reads back");
    // serde_json's default float parsing may differ in the last bit.
    assert_eq!(
        (back.expected, back.lost, back.late_discarded),
        (s.expected, s.lost, s.late_discarded)
    );
    assert!((back.burst_r - s.burst_r).abs() < 1e-12 && back.delay_ms.is_some());
    let score = s.score(&Codec::default(), 0.0, None).expect("packets were expected");
    let v = serde_json::to_value(&score).expect("score serialises");
    assert_eq!(v["label"]["scale"], "wideband");
    assert_eq!(v["delay_source"], "one_way");
    assert!(v["r"].is_number() && v["mouth_to_ear_ms"].is_number());
}

#[test]
fn delay_fallbacks() {
    let mut q: StreamQuality = StreamQuality::new(&JitterConfig::default());
    for i in 0..50u64 {
        q.push(i, i as u32 * TICKS, i as f64 * 20.0 + 30.0, None, Vec::new());
    }
    q.play(1e6, None::<&mut Listener>);
    let s = q.summary();
    assert_eq!(s.delay_ms, None);
    let half = s.score(&Codec::default(), 0.0, Some(100.0)).expect("expected");
    assert_eq!(half.delay_source, DelaySource::HalfRtt);
    assert!((half.mouth_to_ear.network_ms - 50.0).abs() < 1e-12);
    let none = s.score(&Codec::default(), 0.0, None).expect("expected");
    assert_eq!(none.delay_source, DelaySource::Unknown);
    assert!(none.r > half.r);

    let empty: StreamQuality = StreamQuality::new(&JitterConfig::default());
    assert!(empty.summary().score(&Codec::default(), 0.0, None).is_none());
    assert_eq!(empty.summary().loss_pct, 0.0);
}

#[test]
fn narrowband_codec_scores_on_its_own_scale() {
    let mut q: StreamQuality = StreamQuality::new(&JitterConfig::default());
    for i in 0..100u64 {
        q.push(
            i,
            i as u32 * TICKS,
            i as f64 * 20.0 + 40.0,
            Some(i as f64 * 20.0),
            Vec::new(),
        );
    }
    q.play(1e6, None::<&mut Listener>);
    let s = q.summary().score(&Codec::G711_PLC, 0.0, None).expect("expected");
    assert_eq!(s.label.scale, Scale::Narrowband);
    // 40 ms network + 20 ms buffer + 26.5 ms, no loss.
    assert!((s.mouth_to_ear_ms - 86.5).abs() < 1e-9);
    let c = Conditions {
        one_way_delay_ms: 86.5,
        loss_pct: 0.0,
        burst_r: 1.0,
    };
    let want = EModel::default().rate(Scale::Narrowband, &Codec::G711_PLC, &c);
    assert!((s.r - want.r).abs() < 1e-12 && s.r > 90.0 && s.r < 91.0, "{}", s.r);
}
