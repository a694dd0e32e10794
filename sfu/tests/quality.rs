//! Receiver-report quality and feedback counts, in virtual time.

mod common;

use common::World;
use std::time::Duration;

#[test]
fn subscribers_receiver_reports_become_quality_samples() {
    let mut w = World::new();
    w.join(2, "standup");
    w.join(3, "standup");
    w.run(Duration::from_secs(12));
    let samples = w.sfu.take_quality_samples();
    assert!(samples.len() >= 2, "a report per subscriber per 5 s: {samples:?}");
    // Datagrams cross this world instantly and in order: no delay, no jitter, nothing lost. A round-trip time
    // needs a receiver report that answers a sender report, which RTCP's randomised intervals may not have
    // paired yet, so it may be absent.
    assert!(
        samples.iter().all(|s| s.rtt.is_none_or(|r| r == Duration::ZERO)),
        "{samples:?}"
    );
    assert!(samples.iter().all(|s| s.jitter == Some(Duration::ZERO)), "{samples:?}");
    assert!(samples.iter().all(|s| s.loss.is_none_or(|l| l == 0.0)), "{samples:?}");
    assert!(w.sfu.take_quality_samples().is_empty(), "taken once");
}

#[test]
fn keyframe_requests_are_counted_relayed_and_throttled() {
    let mut w = World::new();
    w.join_with(2, "standup", true);
    w.join(3, "standup");
    w.run(Duration::from_secs(2));
    let before = w.sfu.feedback();
    for _ in 0..5 {
        w.ask_keyframe(1);
        w.run(Duration::from_millis(50));
    }
    let f = w.sfu.feedback();
    assert_eq!(f.keyframes_relayed - before.keyframes_relayed, 1, "{f:?}");
    assert_eq!(f.keyframes_throttled - before.keyframes_throttled, 4, "{f:?}");
    w.run(Duration::from_secs(6));
    assert!(
        w.sfu.feedback().plis >= 5,
        "the subscriber's PLIs show in its stats: {:?}",
        w.sfu.feedback()
    );
}
