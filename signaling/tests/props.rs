//! Random interleavings of invites, accepts, declines, ignores, cancels, hangups, disconnects, media reports,
//! retries and the passing of time across four users with two devices each, from a fixed seed. After every
//! step the invariants hold:
//! - at most one device answers a 1:1 call;
//! - every call ends exactly once, with a reason (checked again after everyone leaves and time runs out);
//! - nobody keeps ringing after a call ended;
//! - glare yields one call;
//! - a retried command changes nothing.

use hualu_signaling::core::{
    CallError, CallId, Command, Device, Event, Hook, Limits, Media, Output, Reply, Switchboard,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];

#[derive(Debug, Clone)]
enum Step {
    Connect(usize),
    Disconnect(usize),
    Remove(usize),
    Invite(usize, Vec<usize>),
    InviteMore(usize, usize, usize),
    Accept(usize, usize),
    Decline(usize, usize),
    Ignore(usize, usize),
    Cancel(usize, usize),
    Hangup(usize, usize),
    Media(usize, usize, bool),
    Settings(usize, bool),
    Retry,
    Wait(u64),
}

/// Devices are numbered 0..8: user `d / 2`, device `d % 2`.
fn device(d: usize) -> Device {
    Device::new(USERS[d / 2 % 4], ["phone", "tablet"][d % 2])
}

fn step() -> impl Strategy<Value = Step> {
    let d = 0..8usize;
    let c = 0..6usize;
    prop_oneof![
        3 => d.clone().prop_map(Step::Connect),
        1 => d.clone().prop_map(Step::Disconnect),
        1 => d.clone().prop_map(Step::Remove),
        3 => (d.clone(), prop::collection::vec(0..4usize, 1..3)).prop_map(|(d, to)| Step::Invite(d, to)),
        1 => (d.clone(), c.clone(), 0..4usize).prop_map(|(d, c, u)| Step::InviteMore(d, c, u)),
        4 => (d.clone(), c.clone()).prop_map(|(d, c)| Step::Accept(d, c)),
        1 => (d.clone(), c.clone()).prop_map(|(d, c)| Step::Decline(d, c)),
        1 => (d.clone(), c.clone()).prop_map(|(d, c)| Step::Ignore(d, c)),
        1 => (d.clone(), c.clone()).prop_map(|(d, c)| Step::Cancel(d, c)),
        2 => (d.clone(), c.clone()).prop_map(|(d, c)| Step::Hangup(d, c)),
        1 => (0..4usize, c, any::<bool>()).prop_map(|(u, c, f)| Step::Media(u, c, f)),
        1 => (d, any::<bool>()).prop_map(|(d, w)| Step::Settings(d, w)),
        2 => Just(Step::Retry),
        2 => (0..50u64).prop_map(Step::Wait),
    ]
}

/// The switchboard, and what the invariants need to remember.
struct World {
    sb: Switchboard,
    now: Instant,
    /// Every call placed, in order; steps name them by index.
    calls: Vec<CallId>,
    /// Calls placed to one callee.
    one_to_one: BTreeSet<CallId>,
    /// Devices that answered each call.
    answered: BTreeMap<CallId, BTreeSet<Device>>,
    ended: BTreeMap<CallId, usize>,
    /// (device, call) pairs ringing now, as the device sees it.
    ringing: BTreeSet<(Device, CallId)>,
    last: Option<(Device, String, Command)>,
    keys: u64,
}

impl World {
    fn new() -> Self {
        Self {
            sb: Switchboard::new(Limits::default(), 0),
            now: Instant::now(),
            calls: Vec::new(),
            one_to_one: BTreeSet::new(),
            answered: BTreeMap::new(),
            ended: BTreeMap::new(),
            ringing: BTreeSet::new(),
            last: None,
            keys: 0,
        }
    }

    fn call(&self, c: usize) -> CallId {
        self.calls.get(c).cloned().unwrap_or(CallId("c-none".into()))
    }

    fn drain(&mut self) -> Result<usize, TestCaseError> {
        let mut n = 0;
        while let Some(o) = self.sb.poll_output() {
            n += 1;
            match o {
                Output::Event { to, event } => self.seen(to, event),
                Output::Hook(Hook::Ended { call, .. }) => {
                    *self.ended.entry(call.clone()).or_default() += 1;
                    prop_assert_eq!(self.ended[&call], 1, "{} ended twice", call);
                    let still = self.ringing.iter().find(|(_, c)| *c == call);
                    prop_assert!(still.is_none(), "{:?} still rings after {} ended", still, call);
                }
                Output::Join { call, to } => {
                    let answered = self.answered.entry(call.clone()).or_default();
                    answered.insert(to);
                    if self.one_to_one.contains(&call) {
                        prop_assert!(answered.len() <= 2, "1:1 call {} joined by {:?}", call, answered);
                    }
                }
                _ => {}
            }
        }
        Ok(n)
    }

    fn seen(&mut self, to: Device, event: Event) {
        let Some(call) = event.call().cloned() else { return };
        match event {
            Event::Incoming { .. } => {
                self.ringing.insert((to, call));
            }
            Event::AnsweredElsewhere { .. }
            | Event::Declined { .. }
            | Event::Missed { .. }
            | Event::Cancelled { .. }
            | Event::Ended { .. } => {
                self.ringing.remove(&(to, call));
            }
            _ => {}
        }
    }

    fn command(&mut self, d: usize, command: Command) -> Result<(), TestCaseError> {
        self.keys += 1;
        let (from, key) = (device(d), format!("k{}", self.keys));
        let r = self.sb.command(&from, Some(&key), command.clone(), self.now);
        self.after(&from, &command, &r)?;
        self.last = Some((from, key, command));
        self.drain().map(|_| ())
    }

    /// What a command's answer tells the model.
    fn after(&mut self, from: &Device, command: &Command, r: &Result<Reply, CallError>) -> Result<(), TestCaseError> {
        match (command, r) {
            (Command::Invite { to, call: None, .. }, Ok(Reply::Call { call, merged: false })) => {
                if !self.calls.contains(call) {
                    self.calls.push(call.clone());
                }
                if to.len() == 1 {
                    self.one_to_one.insert(call.clone());
                    self.no_glare(&from.user, &to[0], call)?;
                }
            }
            (Command::Invite { call: Some(c), .. }, Ok(_)) => {
                // More people: a group call now.
                self.one_to_one.remove(c);
            }
            (Command::Accept(c) | Command::Decline(c) | Command::Ignore(c) | Command::Hangup(c), Ok(_))
            | (Command::Invite { .. }, Ok(Reply::Call { call: c, merged: true })) => {
                self.ringing.remove(&(from.clone(), c.clone()));
            }
            _ => {}
        }
        Ok(())
    }

    /// A new 1:1 call from `user` to `callee` must not sit beside the callee's own ringing call to `user`.
    fn no_glare(&self, user: &str, callee: &str, new: &CallId) -> Result<(), TestCaseError> {
        for id in self.calls.iter().filter(|c| *c != new) {
            let Some(c) = self.sb.call(id) else { continue };
            let other_way = c.caller == callee && c.one_to_one() && c.members.get(user).is_some_and(|m| m.ringing());
            prop_assert!(!other_way, "glare left two calls: {} and {}", id, new);
        }
        Ok(())
    }

    fn retry(&mut self) -> Result<(), TestCaseError> {
        let Some((from, key, command)) = self.last.clone() else {
            return Ok(());
        };
        // The first answer, from a fresh key on a copy would differ; the same key must give the same answer.
        let first = self.sb.command(&from, Some(&key), command.clone(), self.now);
        let again = self.sb.command(&from, Some(&key), command, self.now);
        prop_assert_eq!(first, again);
        let n = self.drain()?;
        prop_assert_eq!(n, 0, "a retried command changed something");
        Ok(())
    }

    fn run(&mut self, s: Step) -> Result<(), TestCaseError> {
        let media = Media::Audio;
        match s {
            Step::Connect(d) => self.sb.connect(&device(d), self.now),
            Step::Disconnect(d) => self.sb.disconnect(&device(d), self.now),
            Step::Remove(d) => {
                self.sb.remove(&device(d), self.now);
                self.ringing.retain(|(dev, _)| *dev != device(d));
            }
            Step::Invite(d, to) => {
                let to = to.iter().map(|u| USERS[*u].to_string()).collect();
                return self.command(d, Command::Invite { to, media, call: None });
            }
            Step::InviteMore(d, c, u) => {
                let command = Command::Invite {
                    to: vec![USERS[u].into()],
                    media,
                    call: Some(self.call(c)),
                };
                return self.command(d, command);
            }
            Step::Accept(d, c) => return self.command(d, Command::Accept(self.call(c))),
            Step::Decline(d, c) => return self.command(d, Command::Decline(self.call(c))),
            Step::Ignore(d, c) => return self.command(d, Command::Ignore(self.call(c))),
            Step::Cancel(d, c) => return self.command(d, Command::Cancel(self.call(c))),
            Step::Hangup(d, c) => return self.command(d, Command::Hangup(self.call(c))),
            Step::Media(u, c, flowing) => self.sb.media(&self.call(c), USERS[u], flowing, self.now),
            Step::Settings(d, w) => return self.command(d, Command::Settings { call_waiting: w }),
            Step::Retry => return self.retry(),
            Step::Wait(s) => self.wait(Duration::from_secs(s)),
        }
        self.drain().map(|_| ())
    }

    fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.sb.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.sb.handle_timeout(self.now);
        }
        self.now = end;
    }

    /// Everyone leaves and every timer runs out: every call has ended, once.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        for d in 0..8 {
            self.sb.remove(&device(d), self.now);
            self.ringing.retain(|(dev, _)| *dev != device(d));
        }
        self.drain()?;
        let limits = self.sb.limits().clone();
        self.wait(limits.ring_timeout + limits.grace + Duration::from_secs(1));
        self.drain()?;
        prop_assert_eq!(self.sb.call_count(), 0, "calls outlived everyone");
        for c in &self.calls {
            prop_assert_eq!(self.ended.get(c).copied(), Some(1), "{} did not end exactly once", c);
        }
        Ok(())
    }
}

#[test]
fn random_interleavings_keep_the_invariants() {
    let config = Config {
        cases: 500,
        failure_persistence: None,
        ..Config::default()
    };
    let seed = *b"hualu switchboard property seed!";
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let steps = prop::collection::vec(step(), 1..80);
    let result = runner.run(&steps, |steps| {
        let mut w = World::new();
        for s in steps {
            w.run(s)?;
        }
        w.finish()
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn glare_from_both_sides_yields_one_answered_call() {
    let mut w = World::new();
    for d in 0..4 {
        w.sb.connect(&device(d), w.now);
    }
    w.command(
        0,
        Command::Invite {
            to: vec!["u1".into()],
            media: Media::Audio,
            call: None,
        },
    )
    .expect("invite");
    let r = w.sb.command(
        &device(2),
        Some("g"),
        Command::Invite {
            to: vec!["u0".into()],
            media: Media::Audio,
            call: None,
        },
        w.now,
    );
    assert_eq!(
        r,
        Ok(Reply::Call {
            call: w.calls[0].clone(),
            merged: true
        })
    );
    assert_eq!(w.sb.call_count(), 1);
}
