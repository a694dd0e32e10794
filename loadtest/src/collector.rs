//! Puts each call's record together from what its devices report: the caller's, and each callee's that rang.

use crate::client::device::Report;
use crate::plan::PlannedCall;
use crate::record::{CallRecord, CallResult, Outcome, Setup};
use std::collections::HashMap;
use std::time::Instant;

/// Reports waiting for the rest of their call's.
pub struct Collector {
    t0: Instant,
    pending: HashMap<u32, Vec<Report>>,
}

impl Collector {
    /// A collector for a run whose plan started at `t0`.
    pub fn new(t0: Instant) -> Collector {
        Collector {
            t0,
            pending: HashMap::new(),
        }
    }

    /// Takes one report; gives the call's record once every expected report is in.
    pub fn add(&mut self, plan: &PlannedCall, report: Report) -> Option<CallRecord> {
        let reports = self.pending.entry(plan.index).or_default();
        reports.push(report);
        if reports.len() < expected_reports(plan) {
            return None;
        }
        let reports = self.pending.remove(&plan.index)?;
        Some(self.record(plan, reports))
    }

    /// The calls still waiting at the end of the run, recorded with what arrived.
    pub fn flush(&mut self, plans: &[PlannedCall]) -> Vec<CallRecord> {
        let mut out: Vec<CallRecord> = self
            .pending
            .drain()
            .filter_map(|(i, reports)| plans.get(i as usize).map(|p| (p, reports)))
            .map(|(p, reports)| (p.clone(), reports))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(p, reports)| self.record(&p, reports))
            .collect();
        out.sort_by_key(|r| r.index);
        out
    }

    fn secs(&self, t: Option<Instant>) -> Option<f64> {
        t.map(|t| t.saturating_duration_since(self.t0).as_secs_f64())
    }

    fn record(&self, plan: &PlannedCall, reports: Vec<Report>) -> CallRecord {
        let caller = reports.iter().find(|r| r.caller);
        let outcome = caller.map_or(Outcome::Failed, |c| outcome_of(plan, c));
        let mut failure = reports.iter().find_map(|r| r.failure.clone());
        if caller.is_none() {
            failure.get_or_insert_with(|| "the caller never reported".into());
        }
        let missing: Vec<u32> = plan
            .callees
            .iter()
            .filter(|u| expected_reports(plan) > 1 && !reports.iter().any(|r| r.user == **u))
            .copied()
            .collect();
        if !missing.is_empty() && failure.is_none() {
            failure = Some(format!("callee(s) {missing:?} never rang"));
        }
        let silent = reports.iter().flat_map(|r| &r.moves).find(|m| m.gap_ms.is_none());
        if let (Some(m), None) = (silent, &failure) {
            failure = Some(format!("audio never came back after a move ({})", m.reason));
        }
        if failure.is_none() && outcome != plan.outcome {
            failure = Some(format!("expected {:?}, got {:?}", plan.outcome, outcome));
        }
        let connected = reports.iter().any(|r| r.connected_at.is_some());
        let dropped_reason = caller.and_then(|c| c.reason.as_deref()) == Some("connection_lost");
        let result = match (&failure, connected) {
            (None, _) if dropped_reason => CallResult::Dropped,
            (None, _) => CallResult::Ok,
            (Some(_), true) => CallResult::Dropped,
            (Some(_), false) => CallResult::Failed,
        };
        if dropped_reason {
            failure.get_or_insert_with(|| "connection_lost".into());
        }
        let started = caller.and_then(|c| c.invited_at);
        let answered = reports.iter().filter_map(|r| r.answered_at).min();
        let ended = reports.iter().filter_map(|r| r.ended_at).max();
        let legs: Vec<_> = reports.iter().flat_map(|r| r.legs.iter().cloned()).collect();
        let moves: Vec<_> = reports.iter().flat_map(|r| r.moves.iter().cloned()).collect();
        let worst = legs
            .iter()
            .filter_map(|l| l.r.zip(l.mos))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        CallRecord {
            index: plan.index,
            call_id: caller.and_then(|c| c.call_id.clone()),
            kind: if plan.is_group() { "group" } else { "one_to_one" }.into(),
            members: plan.callees.len() as u32 + 1,
            media: if plan.video { "video" } else { "audio" }.into(),
            planned: plan.outcome.clone(),
            outcome,
            result,
            failure,
            started_s: self.secs(started).unwrap_or(plan.at_s),
            ended_s: self.secs(ended),
            duration_s: answered
                .zip(ended)
                .map(|(a, e)| e.saturating_duration_since(a).as_secs_f64()),
            setup: setup(&reports),
            r: worst.map(|w| w.0),
            mos: worst.map(|w| w.1),
            legs,
            moves,
        }
    }
}

/// The caller always reports; a callee's device reports when it rang (a busy callee never does).
fn expected_reports(plan: &PlannedCall) -> usize {
    match plan.outcome {
        Outcome::Busy => 1,
        _ => 1 + plan.callees.len(),
    }
}

/// How the call ended up, as its caller saw it.
fn outcome_of(plan: &PlannedCall, caller: &Report) -> Outcome {
    if caller.join_at.is_some() {
        return match plan.outcome {
            Outcome::Glare => Outcome::Glare,
            _ => Outcome::Answered,
        };
    }
    if let Some(o) = &caller.outcome {
        return o.clone();
    }
    match caller.reason.as_deref() {
        Some("busy") => Outcome::Busy,
        Some("declined") => Outcome::Declined,
        Some("no_answer") => Outcome::NoAnswer,
        Some("cancelled") => Outcome::Cancelled,
        _ => Outcome::Failed,
    }
}

fn ms(from: Option<Instant>, to: Option<Instant>) -> Option<f64> {
    let (from, to) = (from?, to?);
    Some(to.saturating_duration_since(from).as_secs_f64() * 1000.0)
}

/// Post-dial delay from the caller; answer to first audio and ICE connect, the slowest participant's.
fn setup(reports: &[Report]) -> Setup {
    let caller = reports.iter().find(|r| r.caller);
    let answered = reports.iter().filter_map(|r| r.answered_at).min();
    let slowest = |f: &dyn Fn(&Report) -> Option<f64>| reports.iter().filter_map(f).reduce(f64::max);
    Setup {
        post_dial_delay_ms: caller.and_then(|c| ms(c.invited_at, c.ringing_at)),
        answer_to_first_audio_ms: slowest(&|r| ms(answered, r.first_audio_at)),
        ice_connect_ms: slowest(&|r| ms(r.join_at, r.connected_at)),
    }
}
