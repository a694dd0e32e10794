//! Capacity mode: level windows worked out by hand, the plan's concurrency against each level's target, and
//! the tracker's verdicts on synthetic runs.

use super::*;
use crate::plan::plan;
use crate::record::{CallResult, Leg, Outcome, Setup};

/// Levels of 10, 20, 30 calls, 60 s each; calls ring 1 s and hold 20 s, so a call lives at most 23 s.
const SCENARIO: &str = r#"
name = "cap"
seed = 3
[servers]
signaling = "ws://127.0.0.1:7880/ws"
api_key = "lt"
[population]
users = 200
[arrival]
rate_per_s = 0
hold = { dist = "fixed", s = 20.0 }
[outcomes]
answer_after_s = [1.0, 1.0]
[thresholds]
min_mos_p50 = 4.0
[capacity]
start_calls = 10
step_calls = 10
max_calls = 30
step_s = 60
"#;

fn scenario(sets: &[&str]) -> Scenario {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Scenario::parse(SCENARIO, &sets).expect("a valid capacity scenario")
}

#[test]
fn levels_start_every_step_and_judge_only_calls_that_live_inside_them() {
    let s = scenario(&[]);
    assert_eq!(s.placing_s(), 180.0, "three levels of 60 s");
    assert_eq!(s.longest_call_s(), 23.0);
    assert_eq!(s.mean_call_s(), 21.0);
    let l = levels(&s, s.capacity.as_ref().expect("capacity"));
    assert_eq!(l.len(), 3);
    assert_eq!(
        l[1],
        Level {
            calls: 20,
            start_s: 60.0,
            end_s: 120.0,
            judge_from_s: 83.0,
            judge_to_s: 97.0,
            steady_from_s: 83.0,
        }
    );
    // The arrival rate is the level over a call's mean life: 20 / 21 per second in the second level.
    assert!((s.rate_at(90.0) - 20.0 / 21.0).abs() < 1e-12);
    assert_eq!(s.rate_at(200.0), 0.0, "nothing past the last level");
    // duration_s, when given, cuts the levels short.
    let cut = scenario(&["duration_s=100"]);
    assert_eq!(levels(&cut, cut.capacity.as_ref().expect("capacity")).len(), 2);
}

#[test]
fn the_plan_keeps_about_each_levels_target_in_the_air() {
    let s = scenario(&[
        "capacity.max_calls=60",
        "capacity.start_calls=60",
        "population.users=400",
    ]);
    let p = plan(&s);
    assert_eq!(p.skipped, 0, "enough users for every arrival");
    // Mean concurrency over the steady part [23, 60): calls up (invite to hang-up) at each second.
    let up_at = |t: f64| {
        p.calls
            .iter()
            .filter(|c| c.at_s <= t && t < c.at_s + c.ring_s + c.hold_s)
            .count()
    };
    let mean = (23..60).map(|t| up_at(f64::from(t)) as f64).sum::<f64>() / 37.0;
    assert!((mean - 60.0).abs() < 12.0, "mean concurrency {mean} for a target of 60");
}

#[test]
fn scenarios_that_cannot_measure_a_level_are_refused_naming_the_key() {
    let err = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Scenario::parse(SCENARIO, &sets).expect_err("refused").to_string()
    };
    assert!(err(&["capacity.step_s=40"]).starts_with("capacity.step_s:"));
    assert!(err(&["population.users=50"]).starts_with("population.users:"));
    assert!(err(&["capacity.max_calls=5"]).starts_with("capacity:"));
    assert!(err(&["mix.group=0.5"]).starts_with("capacity:"));
    assert!(err(&["capacity.bogus=1"]).contains("bogus"));
    // Capacity calls are audio: a video threshold could never be measured.
    let video = err(&["thresholds.min_video_fps_p5=10"]);
    assert!(
        video.starts_with("capacity:") && video.contains("video threshold"),
        "{video}"
    );
    assert!(err(&["thresholds.max_video_freeze_p95_ms=500"]).starts_with("capacity:"));
}

fn record(index: u32, mos: f64) -> CallRecord {
    let leg = Leg {
        loss_pct: 0.0,
        mouth_to_ear_ms: 60.0,
        mos: Some(mos),
        r: Some(90.0),
        ..Leg::default()
    };
    CallRecord {
        index,
        call_id: Some(format!("c{index}")),
        kind: "one_to_one".into(),
        members: 2,
        media: "audio".into(),
        planned: Outcome::Answered,
        outcome: Outcome::Answered,
        result: CallResult::Ok,
        failure: None,
        started_s: 0.0,
        ended_s: None,
        duration_s: Some(20.0),
        setup: Setup::default(),
        legs: vec![leg],
        r: Some(90.0),
        mos: Some(mos),
        moves: Vec::new(),
    }
}

/// Samples each second to `until`: `calls` active on `cores` of server CPU in level `i`.
fn samples(until: u32, by_level: &[(u32, f64)]) -> Vec<Sample> {
    (0..=until)
        .map(|t| {
            let (calls, cores) = by_level[(t as usize / 60).min(by_level.len() - 1)];
            Sample {
                t_s: f64::from(t),
                calls_active: calls,
                server_cpu_pct: Some(cores * 100.0),
                ..Sample::default()
            }
        })
        .collect()
}

/// Every planned call recorded, with MOS 4.3 in the first level and `second` in the second.
fn records(p: &Plan, second: f64) -> Vec<CallRecord> {
    p.calls
        .iter()
        .map(|c| record(c.index, if c.at_s < 60.0 { 4.3 } else { second }))
        .collect()
}

#[test]
fn the_first_level_that_breaks_ends_the_climb_and_the_one_before_is_the_capacity() {
    let s = scenario(&[]);
    let p = plan(&s);
    let all = records(&p, 3.2);
    let mut t = Tracker::new(&s).expect("capacity mode");
    let samples = samples(130, &[(10, 0.25), (20, 0.5), (30, 1.0)]);
    assert_eq!(
        t.poll(59.0, &p, &all, &samples),
        Progress::Climbing,
        "the first level is not over"
    );
    assert_eq!(
        t.poll(121.0, &p, &all, &samples),
        Progress::Done,
        "the second level broke"
    );
    let r = t.finish();
    assert_eq!(r.levels.len(), 2);
    let held = r.highest_held.clone().expect("the first level held");
    assert_eq!(held.target_calls, 10);
    assert_eq!(held.concurrent_calls, Some(10.0));
    assert_eq!(held.server_cores, Some(0.25));
    assert_eq!(held.calls_per_core, Some(40.0));
    assert_eq!(held.mos_p50, Some(4.3));
    assert!(held.judged_calls > 0);
    assert_eq!(r.broke_at, Some(20));
    let broke = &r.levels[1];
    assert!(!broke.held);
    assert!(broke.thresholds.iter().any(|t| t.name == "min_mos_p50" && !t.passed));
    let verdict = r.verdict(10);
    assert!(verdict.passed, "a level of 10 held: {verdict}");
    assert!(!r.verdict(20).passed, "no level of 20 held");
}

#[test]
fn a_level_waits_for_its_calls_then_judges_the_missing_as_unreported() {
    let s = scenario(&[]);
    let p = plan(&s);
    // Only the first half of the first level's calls reported.
    let some: Vec<CallRecord> = p
        .calls
        .iter()
        .filter(|c| c.at_s < 30.0)
        .map(|c| record(c.index, 4.4))
        .collect();
    let samples = samples(80, &[(10, 0.2)]);
    let mut t = Tracker::new(&s).expect("capacity mode");
    assert_eq!(
        t.poll(61.0, &p, &some, &samples),
        Progress::Climbing,
        "within the grace"
    );
    assert_eq!(t.poll(76.0, &p, &some, &samples), Progress::Done, "past it");
    let r = t.finish();
    assert_eq!(r.highest_held, None);
    let unreported = r.levels[0].thresholds.iter().find(|t| t.name == "calls_reported");
    assert!(unreported.is_some_and(|t| !t.passed), "{:?}", r.levels[0].thresholds);
}

#[test]
fn every_level_holding_judges_them_all_and_the_summary_verdict_replaces_the_thresholds() {
    let s = scenario(&[]);
    let p = plan(&s);
    let all = records(&p, 4.3);
    let mut t = Tracker::new(&s).expect("capacity mode");
    let samples = samples(200, &[(10, 0.1), (20, 0.2), (30, 0.3)]);
    assert_eq!(t.poll(181.0, &p, &all, &samples), Progress::Done);
    let r = t.finish();
    assert_eq!(r.levels.len(), 3);
    assert_eq!(r.broke_at, None);
    assert_eq!(r.highest_held.as_ref().map(|l| l.target_calls), Some(30));
    let mut summary = Summary::compute("cap", 3, "", &all, &samples, "label", None, &s.thresholds);
    summary.set_capacity(r, 40);
    let failed = summary.failed_thresholds();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].to_string(), "min_capacity_calls (limit 40.0, measured 30.0)");
    assert!(!summary.passed);
}
