//! The switchboard over shared state, for cluster mode: any signaling node runs an operation on the few records
//! it touches (its users, its calls, their watchers), read from Redis, and writes back what changed only if
//! nothing it read changed meanwhile (the I/O layer's compare-and-set); otherwise it reads again and reruns.
//! So the first `accept` still wins and glare still merges, across nodes, with the same code as in one process.
//!
//! This module knows records, not Redis: [`needs`] says which records an operation reads (in rounds, as the
//! records read name more), [`Switchboard::from_parts`] builds a switchboard over them, and
//! [`Switchboard::to_parts`] gives them back, changed.

use super::{CallError, CallId, Command, Device, Reply, Switchboard, Timer, User};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Everything that changes the switchboard.
#[derive(Debug, Clone)]
pub enum Op {
    /// A device's command, with its idempotency key.
    Command {
        /// Who.
        from: Device,
        /// The idempotency key.
        key: Option<String>,
        /// What.
        command: Command,
    },
    /// A device connected.
    Connect(Device),
    /// A device's connection dropped.
    Disconnect(Device),
    /// A device is gone for good.
    Remove(Device),
    /// The SFU reports a member's media.
    Media {
        /// The call.
        call: CallId,
        /// The member.
        user: String,
        /// Flowing or dead.
        flowing: bool,
    },
    /// The answered call got no room.
    Fail(CallId),
    /// A ring or grace timer is due.
    Timer(TimerRec),
}

/// A ring timeout or a grace period, as shared state keeps it: due at `due_ms` (Unix ms), for the status set
/// at `mark_ms` (the ring's end, or when the connection was lost).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimerRec {
    /// `ring` or `grace`.
    pub kind: String,
    /// The call.
    pub call: CallId,
    /// The member.
    pub user: String,
    /// What the status held when it was set.
    pub mark_ms: u64,
    /// When it is due.
    pub due_ms: u64,
}

/// One record of switchboard state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// A user: devices, settings, calls.
    User(String),
    /// A live call.
    Call(CallId),
    /// An ended call's reason, remembered for late commands.
    Ended(CallId),
    /// The devices watching a user's presence.
    Watchers(String),
    /// The users a device watches.
    Watching(Device),
    /// A command's remembered answer, by device and idempotency key.
    Answer(Device, String),
}

impl Key {
    /// Whether the record is only remembered for a while (`Limits::memory`) rather than kept.
    pub fn remembered(&self) -> bool {
        matches!(self, Key::Ended(_) | Key::Answer(..))
    }
}

/// Records as read (`None`: absent) or to write (`None`: delete), as JSON.
pub type Parts = BTreeMap<Key, Option<String>>;

/// What an operation reads first: the records it names.
fn seeds(op: &Op) -> Vec<Key> {
    let mut keys = Vec::new();
    match op {
        Op::Command { from, key, command } => {
            keys.push(Key::User(from.user.clone()));
            if let Some(k) = key {
                keys.push(Key::Answer(from.clone(), k.clone()));
            }
            match command {
                Command::Invite { to, call, .. } => {
                    keys.extend(to.iter().map(|u| Key::User(u.clone())));
                    keys.extend(call.iter().flat_map(call_keys));
                }
                Command::Accept(c)
                | Command::Decline(c)
                | Command::Ignore(c)
                | Command::Cancel(c)
                | Command::Hangup(c) => keys.extend(call_keys(c)),
                Command::Settings { .. } => {}
                Command::Watch(users) => {
                    keys.push(Key::Watching(from.clone()));
                    for u in users {
                        keys.extend([Key::User(u.clone()), Key::Watchers(u.clone())]);
                    }
                }
            }
        }
        Op::Connect(d) | Op::Disconnect(d) => keys.extend([Key::User(d.user.clone()), Key::Watchers(d.user.clone())]),
        Op::Remove(d) => keys.extend([
            Key::User(d.user.clone()),
            Key::Watchers(d.user.clone()),
            Key::Watching(d.clone()),
        ]),
        Op::Media { call, user, .. } => {
            keys.push(Key::User(user.clone()));
            keys.extend(call_keys(call));
        }
        Op::Fail(call) => keys.extend(call_keys(call)),
        Op::Timer(t) => {
            keys.push(Key::User(t.user.clone()));
            keys.extend(call_keys(&t.call));
        }
    }
    keys
}

fn call_keys(c: &CallId) -> [Key; 2] {
    [Key::Call(c.clone()), Key::Ended(c.clone())]
}

/// The records `op` reads that are not in `loaded` yet: its seeds, then the calls of the users read, the
/// members of the calls read, and the watchers of the users a device stops watching. Empty once everything is
/// read; a caller reads what this names and asks again.
pub fn needs(op: &Op, loaded: &Parts) -> Vec<Key> {
    let seeds = seeds(op);
    let mut want: BTreeSet<Key> = seeds.iter().cloned().collect();
    for (key, value) in loaded {
        let Some(json) = value else { continue };
        match key {
            // Only the users an operation names (its seeds) have their other calls read: for busy, glare
            // and leaving every call; a call's other members need only their own record.
            Key::User(_) if seeds.contains(key) => {
                if let Ok(user) = serde_json::from_str::<User>(json) {
                    want.extend(user.calls.iter().flat_map(call_keys));
                }
            }
            Key::Call(_) => {
                if let Ok(call) = serde_json::from_str::<super::Call>(json) {
                    want.extend(call.members.keys().map(|u| Key::User(u.clone())));
                }
            }
            Key::Watching(_) => {
                if let Ok(users) = serde_json::from_str::<Vec<String>>(json) {
                    want.extend(users.into_iter().map(Key::Watchers));
                }
            }
            _ => {}
        }
    }
    want.into_iter().filter(|k| !loaded.contains_key(k)).collect()
}

impl Switchboard {
    /// A switchboard over the records `parts`, its next call id after `next_call`. A record that does not
    /// parse is an error: shared state written by an incompatible version.
    pub fn from_parts(limits: super::Limits, next_call: u64, parts: &Parts) -> Result<Self, serde_json::Error> {
        let mut sb = Switchboard::new(limits, next_call);
        for (key, value) in parts {
            let Some(json) = value else { continue };
            match key {
                Key::User(u) => {
                    sb.users.insert(u.clone(), serde_json::from_str(json)?);
                }
                Key::Call(c) => {
                    sb.calls.insert(c.clone(), serde_json::from_str(json)?);
                }
                Key::Ended(c) => {
                    sb.ended.insert(c.clone(), serde_json::from_str(json)?);
                }
                Key::Watchers(u) => {
                    sb.watchers.insert(u.clone(), serde_json::from_str(json)?);
                }
                Key::Watching(d) => {
                    sb.watching.insert(d.clone(), serde_json::from_str(json)?);
                }
                Key::Answer(d, k) => {
                    sb.answers.insert((d.clone(), k.clone()), serde_json::from_str(json)?);
                }
            }
        }
        Ok(sb)
    }

    /// The last call id it allocated (its sequence number).
    pub fn next_call(&self) -> u64 {
        self.next_call
    }

    /// Every record it was built over (`loaded`) or created, as it is now (`None`: it went, or is empty).
    pub fn to_parts(&self, loaded: &Parts) -> Parts {
        let mut parts: Parts = loaded.keys().map(|k| (k.clone(), None)).collect();
        fn json<T: Serialize>(v: &T) -> Option<String> {
            Some(serde_json::to_string(v).unwrap_or_default())
        }
        for (u, user) in &self.users {
            let empty = user.devices.is_empty() && user.calls.is_empty() && !user.call_waiting;
            parts.insert(Key::User(u.clone()), if empty { None } else { json(user) });
        }
        for (c, call) in &self.calls {
            parts.insert(Key::Call(c.clone()), json(call));
        }
        for (c, reason) in &self.ended {
            parts.insert(Key::Ended(c.clone()), json(reason));
        }
        for (u, w) in &self.watchers {
            parts.insert(Key::Watchers(u.clone()), json(w));
        }
        for (d, w) in &self.watching {
            parts.insert(Key::Watching(d.clone()), json(w));
        }
        for ((d, k), a) in &self.answers {
            parts.insert(Key::Answer(d.clone(), k.clone()), json(a));
        }
        parts
    }

    /// The ring and grace timers set since it was built, to keep in shared state; they leave the switchboard.
    pub fn take_timers(&mut self) -> Vec<TimerRec> {
        let mut out = Vec::new();
        for (due, timer) in self.rings.drain(..).chain(self.graces.drain(..)) {
            let due_ms = super::clock::to_ms(due);
            let rec = |kind: &str, call: CallId, user: String, mark: Instant| TimerRec {
                kind: kind.into(),
                call,
                user,
                mark_ms: super::clock::to_ms(mark),
                due_ms,
            };
            match timer {
                Timer::Ring(call, user, until) => out.push(rec("ring", call, user, until)),
                Timer::Grace(call, user, since) => out.push(rec("grace", call, user, since)),
                _ => {}
            }
        }
        // Remembered answers and ended calls expire in shared state by themselves.
        self.memories.clear();
        out
    }

    /// Runs `op` at `now`; a command's answer, if it was one.
    pub fn apply(&mut self, op: Op, now: Instant) -> Option<Result<Reply, CallError>> {
        match op {
            Op::Command { from, key, command } => return Some(self.command(&from, key.as_deref(), command, now)),
            Op::Connect(d) => self.connect(&d, now),
            Op::Disconnect(d) => self.disconnect(&d, now),
            Op::Remove(d) => self.remove(&d, now),
            Op::Media { call, user, flowing } => self.media(&call, &user, flowing, now),
            Op::Fail(call) => self.fail(&call, now),
            Op::Timer(t) => {
                let mark = super::clock::from_ms(t.mark_ms);
                match t.kind.as_str() {
                    "ring" => self.ring_timeout(&t.call, &t.user, mark, now),
                    _ => self.grace_over(&t.call, &t.user, mark, now),
                }
            }
        }
        None
    }
}
