//! Cluster mode runs each operation on a switchboard built from only the records the operation reads
//! (`needs`), then writes back what changed. This checks that this gives what one switchboard holding everything
//! gives: random interleavings of every operation across four users with two devices each, from a fixed seed,
//! run both ways side by side, must produce the same outputs and answers at every step. A record `needs` forgot
//! would read as empty and show here as a different event, answer or end.

use hualu_signaling::core::{
    clock, needs, CallId, Command, Device, Key, Limits, Media, Op, Output, Parts, Switchboard, TimerRec,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];

fn device(d: usize) -> Device {
    Device::new(USERS[d / 2 % 4], ["phone", "tablet"][d % 2])
}

/// An operation on device `d`, call index `c`, users `to`; or time passing (`None`, seconds).
#[derive(Debug, Clone)]
enum Step {
    Op(u8, usize, usize, Vec<usize>, bool),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (0..13u8, 0..8usize, 0..6usize, prop::collection::vec(0..4usize, 1..3), any::<bool>())
            .prop_map(|(k, d, c, to, b)| Step::Op(k, d, c, to, b)),
        2 => (0..50u64).prop_map(Step::Wait),
    ]
}

fn limits() -> Limits {
    // Remembered answers outlive the run: shared state forgets them by expiry, which this does not model.
    Limits {
        memory: Duration::from_secs(1_000_000),
        ..Limits::default()
    }
}

/// Records and timers, as Redis keeps them in cluster mode.
#[derive(Default)]
struct Store {
    records: BTreeMap<Key, String>,
    timers: Vec<TimerRec>,
    next_call: u64,
}

impl Store {
    /// Runs `op` the way cluster mode does: read what it needs, run, write back, keep its timers.
    fn run(&mut self, op: Op, now: Instant) -> (Vec<Output>, Option<String>) {
        let mut loaded = Parts::new();
        loop {
            let more = needs(&op, &loaded);
            if more.is_empty() {
                break;
            }
            for k in more {
                let v = self.records.get(&k).cloned();
                loaded.insert(k, v);
            }
        }
        let mut sb = Switchboard::from_parts(limits(), self.next_call, &loaded).expect("records parse");
        let reply = sb.apply(op, now).map(|r| format!("{r:?}"));
        self.next_call = sb.next_call();
        for (k, v) in sb.to_parts(&loaded) {
            match v {
                Some(v) => self.records.insert(k, v),
                None => self.records.remove(&k),
            };
        }
        self.timers.extend(sb.take_timers());
        (drain(&mut sb), reply)
    }

    /// Fires the due timers as cluster mode does: rings first, then graces, each in deadline order.
    fn due(&mut self, now: Instant) -> Vec<Output> {
        let now_ms = clock::to_ms(now);
        let mut out = Vec::new();
        for kind in ["ring", "grace"] {
            let mut due: Vec<TimerRec> = self
                .timers
                .iter()
                .filter(|t| t.kind == kind && t.due_ms <= now_ms)
                .cloned()
                .collect();
            due.sort_by_key(|t| t.due_ms);
            self.timers.retain(|t| !due.contains(t));
            for t in due {
                out.extend(self.run(Op::Timer(t), now).0);
            }
        }
        out
    }
}

fn drain(sb: &mut Switchboard) -> Vec<Output> {
    std::iter::from_fn(|| sb.poll_output()).collect()
}

/// Outputs compared as a multiset: records are read into maps whose order may differ.
fn sorted(out: Vec<Output>) -> Vec<String> {
    let mut v: Vec<String> = out.iter().map(|o| format!("{o:?}")).collect();
    v.sort();
    v
}

fn op_of(kind: u8, d: usize, c: usize, to: &[usize], b: bool, calls: &[CallId]) -> Op {
    let from = device(d);
    let call = calls.get(c).cloned().unwrap_or_else(|| CallId::from_seq(c as u64 + 1));
    let users: Vec<String> = to.iter().map(|u| USERS[*u].to_string()).collect();
    let key = Some(format!("k{kind}-{d}-{c}"));
    let command = |command| Op::Command {
        from: from.clone(),
        key: key.clone(),
        command,
    };
    match kind {
        0 | 1 => Op::Connect(from.clone()),
        2 => Op::Disconnect(from.clone()),
        3 => Op::Remove(from.clone()),
        4 => command(Command::Invite {
            to: users,
            media: Media::Audio,
            call: None,
        }),
        5 => command(Command::Invite {
            to: users,
            media: Media::Audio,
            call: Some(call),
        }),
        6 => command(Command::Accept(call)),
        7 => command(Command::Decline(call)),
        8 => command(Command::Ignore(call)),
        9 => command(Command::Hangup(call)),
        10 => Op::Media {
            call,
            user: from.user,
            flowing: b,
        },
        11 => command(Command::Settings { call_waiting: b }),
        _ => command(Command::Watch(users)),
    }
}

fn run_both(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let mut now = start;
    let mut one = Switchboard::new(limits(), 0);
    let mut store = Store::default();
    let mut calls: Vec<CallId> = Vec::new();
    for (i, s) in steps.into_iter().enumerate() {
        let (a, b) = match s {
            Step::Op(kind, d, c, to, flag) => {
                let op = op_of(kind, d, c, &to, flag, &calls);
                let ra = one.apply(op.clone(), now).map(|r| format!("{r:?}"));
                let (out_b, rb) = store.run(op, now);
                prop_assert_eq!(&ra, &rb, "step {}: answers differ", i);
                (drain(&mut one), out_b)
            }
            Step::Wait(secs) => {
                now += Duration::from_secs(secs);
                one.handle_timeout(now);
                (drain(&mut one), store.due(now))
            }
        };
        for o in &a {
            if let Output::Place(c) = o {
                calls.push(c.clone());
            }
            if let Output::Hook(hualu_signaling::core::Hook::Invite { call, .. }) = o {
                if !calls.contains(call) {
                    calls.push(call.clone());
                }
            }
        }
        prop_assert_eq!(sorted(a), sorted(b), "step {}: outputs differ", i);
        let everything: BTreeMap<Key, String> = one
            .to_parts(&Parts::new())
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        prop_assert_eq!(&everything, &store.records, "step {}: records differ", i);
    }
    Ok(())
}

#[test]
fn a_switchboard_over_the_records_an_operation_reads_acts_as_one_over_everything() {
    let config = Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    runner
        .run(&prop::collection::vec(step(), 1..80), run_both)
        .unwrap_or_else(|e| panic!("{e}"));
}
