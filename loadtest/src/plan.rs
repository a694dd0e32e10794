//! The run plan: every call of the run, worked out from the scenario and its seed before the first call, so the
//! same seed gives the same plan (`hualu-loadtest plan` prints it).

use crate::record::Outcome;
use crate::scenario::{Hold, Scenario};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use serde::Serialize;

/// Seconds a callee stays counted as busy after its call's planned end, and before a busy call may target it:
/// setup and teardown take time, and a `busy` outcome needs the callee already in its call.
const MARGIN_S: f64 = 3.0;

/// The whole plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    /// The seed it came from.
    pub seed: u64,
    /// Each user's network profile, by user index.
    pub profiles: Vec<String>,
    /// The calls, in start order.
    pub calls: Vec<PlannedCall>,
    /// Arrivals dropped because too few users were free at that moment.
    pub skipped: u32,
}

/// One call of the plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlannedCall {
    /// Its place in the plan.
    pub index: u32,
    /// When the caller invites, in seconds from the start.
    pub at_s: f64,
    /// The caller's user index.
    pub caller: u32,
    /// The callees' user indexes.
    pub callees: Vec<u32>,
    /// With video.
    pub video: bool,
    /// How it should end up.
    pub outcome: Outcome,
    /// Seconds from ringing to the callee's answer or decline (or, for `cancelled`, to the caller's cancel).
    pub ring_s: f64,
    /// Seconds of conversation once answered.
    pub hold_s: f64,
    /// Which device of each callee answers or declines (the others only ring).
    pub device: u32,
}

impl PlannedCall {
    /// A group call.
    pub fn is_group(&self) -> bool {
        self.callees.len() > 1
    }
}

/// When each user is taken, as `[from, until)` in seconds.
struct Busy {
    until: Vec<f64>,
    /// The answered 1:1 call each user is in, with its answer and end times: targets for `busy` calls.
    in_call: Vec<Option<(f64, f64)>>,
}

impl Busy {
    fn free(&self, u: u32, t: f64) -> bool {
        self.until[u as usize] <= t
    }
}

/// Works out the plan of `scenario`.
pub fn plan(s: &Scenario) -> Plan {
    let mut rng = StdRng::seed_from_u64(s.seed);
    let users = s.population.users;
    let profiles = assign_profiles(s, &mut rng);
    let mut busy = Busy {
        until: vec![0.0; users as usize],
        in_call: vec![None; users as usize],
    };
    let mut calls = Vec::new();
    let mut skipped = 0;
    let mut t = 0.0;
    while let Some(next) = next_arrival(s, t, &mut rng) {
        t = next;
        let index = calls.len() as u32;
        match plan_call(s, index, t, &mut busy, &mut rng) {
            Some(call) => calls.push(call),
            None => skipped += 1,
        }
    }
    Plan {
        seed: s.seed,
        profiles,
        calls,
        skipped,
    }
}

/// Each user's profile, drawn by the scenario's shares.
fn assign_profiles(s: &Scenario, rng: &mut StdRng) -> Vec<String> {
    let shares: Vec<(&String, f64)> = s.network.profiles.iter().map(|(k, v)| (k, *v)).collect();
    (0..s.population.users)
        .map(|_| pick(&shares, rng).to_string())
        .collect()
}

/// Picks a key by weight.
fn pick<'a, K: ?Sized>(weights: &[(&'a K, f64)], rng: &mut StdRng) -> &'a K {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (k, w) in weights {
        if x < *w {
            return k;
        }
        x -= w;
    }
    weights.last().map(|(k, _)| *k).expect("weights are checked non-empty")
}

/// The next arrival after `t` of a Poisson process whose rate varies (thinning against the peak rate), or
/// `None` past the run's end.
fn next_arrival(s: &Scenario, mut t: f64, rng: &mut StdRng) -> Option<f64> {
    let peak = peak_rate(s);
    if peak <= 0.0 {
        return None;
    }
    let exp = Exp::new(peak).ok()?;
    loop {
        t += exp.sample(rng);
        if t >= s.placing_s() {
            return None;
        }
        if rng.random::<f64>() * peak <= s.rate_at(t) {
            return Some(t);
        }
    }
}

fn peak_rate(s: &Scenario) -> f64 {
    use crate::scenario::Ramp;
    if let Some(c) = &s.capacity {
        return f64::from(c.max_calls) / s.mean_call_s();
    }
    let mut peak = s.arrival.rate_per_s;
    match &s.arrival.ramp {
        Some(Ramp::Linear { from, to, .. }) => peak = from.max(*to),
        Some(Ramp::Steps { steps }) => peak = steps.iter().map(|(_, r)| *r).fold(peak, f64::max),
        None => {}
    }
    peak
}

fn hold(s: &Scenario, rng: &mut StdRng) -> f64 {
    match s.arrival.hold {
        Hold::Fixed { s } => s,
        Hold::Uniform { min_s, max_s } => rng.random_range(min_s..=max_s),
        Hold::Exponential { mean_s, min_s, max_s } => {
            let e = Exp::new(1.0 / mean_s).map_or(mean_s, |d| d.sample(rng));
            e.clamp(min_s, max_s)
        }
    }
}

fn draw_outcome(s: &Scenario, rng: &mut StdRng) -> Outcome {
    let o = &s.outcomes;
    let weights = [
        (&Outcome::Answered, o.answered),
        (&Outcome::Declined, o.declined),
        (&Outcome::Busy, o.busy),
        (&Outcome::NoAnswer, o.no_answer),
        (&Outcome::Cancelled, o.cancelled),
        (&Outcome::Glare, o.glare),
    ];
    pick(&weights, rng).clone()
}

/// Draws a user free at `t` and not in `taken`, uniformly. Random draws find one quickly while most users are
/// free; past a few misses the free users are listed (a plan of 100,000 calls over 10,000 users would
/// otherwise scan every user for every call).
fn pick_free(busy: &Busy, users: u32, t: f64, taken: &[u32], rng: &mut StdRng) -> Option<u32> {
    let ok = |u: u32| busy.free(u, t) && !taken.contains(&u);
    for _ in 0..16 {
        let u = rng.random_range(0..users);
        if ok(u) {
            return Some(u);
        }
    }
    let free: Vec<u32> = (0..users).filter(|u| ok(*u)).collect();
    (!free.is_empty()).then(|| free[rng.random_range(0..free.len())])
}

/// Plans the call arriving at `t`, or `None` when too few users are free.
fn plan_call(s: &Scenario, index: u32, t: f64, busy: &mut Busy, rng: &mut StdRng) -> Option<PlannedCall> {
    let group = rng.random::<f64>() * (s.mix.one_to_one + s.mix.group) >= s.mix.one_to_one;
    let video = rng.random::<f64>() < s.mix.video;
    let mut outcome = if group { Outcome::Answered } else { draw_outcome(s, rng) };
    let (lo, hi) = s.outcomes.answer_after_s;
    let ring_s = if hi > lo { rng.random_range(lo..=hi) } else { lo };
    let hold_s = hold(s, rng);
    let device = rng.random_range(0..s.population.devices_per_user);
    let members = if group { s.mix.group_size } else { 2 };
    let users = s.population.users;
    let caller = pick_free(busy, users, t, &[], rng)?;
    let mut callees = Vec::new();
    if outcome == Outcome::Busy {
        // A callee already in an answered call that lasts a while yet.
        let targets: Vec<u32> = (0..users)
            .filter(|u| busy.in_call[*u as usize].is_some_and(|(from, to)| from + MARGIN_S <= t && t + MARGIN_S <= to))
            .collect();
        match targets.is_empty() {
            true => outcome = Outcome::Answered,
            false => callees.push(targets[rng.random_range(0..targets.len())]),
        }
    }
    if callees.is_empty() {
        let mut taken = vec![caller];
        for _ in 1..members {
            let callee = pick_free(busy, users, t, &taken, rng)?;
            taken.push(callee);
            callees.push(callee);
        }
    }
    let end = match outcome {
        Outcome::Answered | Outcome::Glare => t + hi + hold_s + MARGIN_S,
        Outcome::NoAnswer => t + 60.0 + MARGIN_S,
        _ => t + hi + MARGIN_S,
    };
    busy.until[caller as usize] = end;
    let answered = matches!(outcome, Outcome::Answered | Outcome::Glare);
    if outcome != Outcome::Busy {
        for c in &callees {
            busy.until[*c as usize] = end;
        }
    }
    for u in std::iter::once(&caller).chain(&callees) {
        if answered && outcome != Outcome::Busy {
            busy.in_call[*u as usize] = Some((t + hi, t + hi + hold_s));
        }
    }
    if outcome == Outcome::Busy {
        busy.in_call[caller as usize] = None;
    }
    Some(PlannedCall {
        index,
        at_s: t,
        caller,
        callees,
        video,
        outcome,
        ring_s,
        hold_s,
        device,
    })
}
