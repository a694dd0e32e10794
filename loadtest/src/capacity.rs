//! Capacity mode: the load climbs in levels of concurrent calls (`[capacity]` in the scenario), each level is
//! judged against `[thresholds]` once its calls are in, and the run stops at the first level that breaks one.
//! The result is the highest level that held, as concurrent calls and as calls per server core.
//!
//! A level lasts `step_s`. Its arrivals run at its target over a call's mean length, so its concurrency reaches
//! the target one call-life after the level starts. Only the calls that lived wholly inside the level are judged:
//! those placed from one longest call-life after its start until one longest call-life before its end (so the
//! level before does not leak in, and every judged call ended before the next level began). The level's
//! concurrency and server CPU are the means of the per-second samples over its steady part, from one longest
//! call-life after its start to its end.

use crate::plan::Plan;
use crate::record::{Bound, CallRecord, Sample, Summary, ThresholdResult, Thresholds};
use crate::scenario::{Capacity, Scenario};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Seconds after a level's end that its last calls have to report before the level is judged without them.
const REPORT_GRACE_S: f64 = 15.0;

/// The name of the threshold that stands for the capacity verdict (`min_capacity_calls`).
pub const VERDICT: &str = "min_capacity_calls";

/// One level's times, in seconds from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// The target concurrency.
    pub calls: u32,
    /// When the level starts.
    pub start_s: f64,
    /// When it ends (the next one starts).
    pub end_s: f64,
    /// Calls placed from here...
    pub judge_from_s: f64,
    /// ...up to here are judged.
    pub judge_to_s: f64,
    /// The steady part starts here (concurrency at its target).
    pub steady_from_s: f64,
}

/// Every level of a capacity scenario.
pub fn levels(s: &Scenario, c: &Capacity) -> Vec<Level> {
    let life = s.longest_call_s();
    (0..c.levels())
        .map(|i| {
            let start_s = f64::from(i) * c.step_s;
            let end_s = start_s + c.step_s;
            Level {
                calls: c.level_calls(i),
                start_s,
                end_s,
                judge_from_s: start_s + life,
                judge_to_s: end_s - life,
                steady_from_s: start_s + life,
            }
        })
        .filter(|l| l.start_s < s.placing_s())
        .collect()
}

/// One level's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelResult {
    /// The target concurrency.
    pub target_calls: u32,
    /// Mean calls active over the steady part.
    pub concurrent_calls: Option<f64>,
    /// Mean server CPU over the steady part, in cores.
    pub server_cores: Option<f64>,
    /// Concurrent calls per core of server CPU.
    pub calls_per_core: Option<f64>,
    /// Calls judged (placed in the judging window).
    pub judged_calls: u32,
    /// MOS of the judged calls: 5th percentile and median.
    pub mos_p5: Option<f64>,
    /// Median MOS.
    pub mos_p50: Option<f64>,
    /// 95th-percentile loss (Ppl) over the judged legs, percent.
    pub loss_p95_pct: Option<f64>,
    /// 95th-percentile mouth-to-ear delay, ms.
    pub mouth_to_ear_p95_ms: Option<f64>,
    /// Each threshold's verdict on the judged calls, and `calls_reported` when some never reported.
    pub thresholds: Vec<ThresholdResult>,
    /// Every threshold passed.
    pub held: bool,
}

/// The whole capacity run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapacityResult {
    /// The levels judged, in order.
    pub levels: Vec<LevelResult>,
    /// The highest level that held (every level below it held too).
    pub highest_held: Option<LevelResult>,
    /// The target of the level that broke, if one did.
    pub broke_at: Option<u32>,
}

impl CapacityResult {
    /// The verdict as a threshold: the highest level held, at least `require` calls.
    pub fn verdict(&self, require: u32) -> ThresholdResult {
        let measured = self.highest_held.as_ref().map(|l| f64::from(l.target_calls));
        ThresholdResult {
            name: VERDICT.to_string(),
            bound: Bound::AtLeast,
            limit: f64::from(require),
            measured,
            passed: measured.is_some_and(|m| m >= f64::from(require)),
            note: None,
        }
    }
}

/// Whether the run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Levels are still to come or to judge.
    Climbing,
    /// A level broke, or the last one was judged: stop placing calls.
    Done,
}

/// Judges the levels as the run goes.
pub struct Tracker {
    levels: Vec<Level>,
    next: usize,
    result: CapacityResult,
    thresholds: Thresholds,
    label: String,
}

impl Tracker {
    /// A tracker for the scenario's levels, or `None` outside capacity mode.
    pub fn new(s: &Scenario) -> Option<Tracker> {
        let c = s.capacity.as_ref()?;
        Some(Tracker {
            levels: levels(s, c),
            next: 0,
            result: CapacityResult::default(),
            thresholds: s.thresholds.clone(),
            label: crate::score::label(s),
        })
    }

    /// Judges each level whose calls are all in (or whose grace ran out) by `now_s`.
    pub fn poll(&mut self, now_s: f64, plan: &Plan, records: &[CallRecord], samples: &[Sample]) -> Progress {
        while let Some(level) = self.levels.get(self.next).copied() {
            let judged = judged(plan, &level);
            let recorded: Vec<&CallRecord> = records.iter().filter(|r| judged.contains(&r.index)).collect();
            // Levels are judged once, in order; a level's plan is scanned again each second until then.
            let all_in = recorded.len() == judged.len() && now_s >= level.end_s;
            if !all_in && now_s < level.end_s + REPORT_GRACE_S {
                return Progress::Climbing;
            }
            let result = self.judge(&level, judged.len(), &recorded, samples);
            self.next += 1;
            let held = result.held;
            self.result.levels.push(result.clone());
            if !held {
                self.result.broke_at = Some(level.calls);
                return Progress::Done;
            }
            self.result.highest_held = Some(result);
        }
        Progress::Done
    }

    /// What was found; levels never judged (the run ended first) are left out.
    pub fn finish(self) -> CapacityResult {
        self.result
    }

    fn judge(&self, level: &Level, expected: usize, recorded: &[&CallRecord], samples: &[Sample]) -> LevelResult {
        let owned: Vec<CallRecord> = recorded.iter().map(|r| (*r).clone()).collect();
        let s = Summary::compute("level", 0, "", &owned, &[], &self.label, None, &self.thresholds);
        let mut thresholds = s.thresholds.clone();
        if recorded.len() < expected {
            thresholds.push(ThresholdResult {
                name: "calls_reported".into(),
                bound: Bound::AtLeast,
                limit: expected as f64,
                measured: Some(recorded.len() as f64),
                passed: false,
                note: None,
            });
        }
        let steady = || {
            samples
                .iter()
                .filter(|x| x.t_s >= level.steady_from_s && x.t_s < level.end_s)
        };
        let concurrent = mean(steady().map(|x| f64::from(x.calls_active)));
        let cores = mean(steady().filter_map(|x| x.server_cpu_pct)).map(|pct| pct / 100.0);
        let held = expected > 0 && thresholds.iter().all(|t| t.passed);
        LevelResult {
            target_calls: level.calls,
            concurrent_calls: concurrent,
            server_cores: cores,
            calls_per_core: concurrent.zip(cores).filter(|(_, c)| *c > 0.0).map(|(n, c)| n / c),
            judged_calls: expected as u32,
            mos_p5: s.mos.as_ref().map(|m| m.p5),
            mos_p50: s.mos.as_ref().map(|m| m.p50),
            loss_p95_pct: s.loss_pct.as_ref().map(|l| l.p95),
            mouth_to_ear_p95_ms: s.mouth_to_ear_ms.as_ref().map(|m| m.p95),
            thresholds,
            held,
        }
    }
}

/// The plan's calls placed inside the level's judging window.
fn judged(plan: &Plan, level: &Level) -> HashSet<u32> {
    plan.calls
        .iter()
        .filter(|c| c.at_s >= level.judge_from_s && c.at_s <= level.judge_to_s)
        .map(|c| c.index)
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

#[cfg(test)]
#[path = "capacity_tests.rs"]
mod tests;
