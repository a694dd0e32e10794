//! The switchboard: every user's devices and every call, as a sans-IO state machine with time passed in.
//!
//! The I/O layer feeds it device connections and commands, and time; it answers each command at once and
//! queues [`Output`]s: events for devices, webhooks, and room placement for the SFU. It never reads a clock,
//! so tests drive it faster than real time and replay any interleaving.
//!
//! Every race is decided here, in one place, in the order the inputs arrive: the first `accept` wins, glare
//! merges into the older call, and a retried command (same idempotency key) returns its first answer and
//! changes nothing.
//!
//! Timers all have a constant length (ring timeout, grace period, memory of answers), so each kind is a FIFO
//! queue checked lazily against the state when it fires: no timer is ever cancelled, and nothing scans all
//! calls.

mod call;
pub mod clock;
mod events;
mod flow;
mod shared;

pub use call::{Call, Member, Phase, Status};
pub use events::{CallId, Device, EndReason, Event, Hook, LeaveReason, Media, Output};
pub use shared::{needs, Key, Op, Parts, TimerRec};

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The switchboard's limits and timers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a callee rings before it counts as a missed call.
    pub ring_timeout: Duration,
    /// How long a participant whose connection dropped stays in its calls.
    pub grace: Duration,
    /// Most users invited at once, and most members in a call.
    pub max_members: usize,
    /// Most users one device watches for presence.
    pub max_watched: usize,
    /// How long a command's answer is remembered for its idempotency key, and an ended call for late commands.
    pub memory: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ring_timeout: Duration::from_secs(45),
            grace: Duration::from_secs(30),
            max_members: 16,
            max_watched: 1000,
            memory: Duration::from_secs(600),
        }
    }
}

/// A command from a device. Call commands carry an idempotency key beside it ([`Switchboard::command`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Place a call to `to`, or, with `call`, invite them into a call the device is in.
    Invite {
        /// The callees.
        to: Vec<String>,
        /// Audio or video.
        media: Media,
        /// An existing call to add them to.
        call: Option<CallId>,
    },
    /// Answer on this device.
    Accept(CallId),
    /// Decline on every device of the user.
    Decline(CallId),
    /// Stop ringing on this device only.
    Ignore(CallId),
    /// The caller gives up before an answer.
    Cancel(CallId),
    /// Leave the call.
    Hangup(CallId),
    /// Take calls while in a call (call waiting) or answer them `busy`.
    Settings {
        /// Ring as call waiting.
        call_waiting: bool,
    },
    /// Watch these users' presence (replacing the list).
    Watch(Vec<String>),
}

/// A command's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The call the command placed or acted on.
    Call {
        /// The call.
        call: CallId,
        /// An invite met the callee's own invite (glare) and joined that call instead.
        merged: bool,
    },
    /// Done.
    Done,
    /// The watched users' connected devices, now.
    Presence(Vec<(String, Vec<String>)>),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum CallError {
    /// No such call, or it was forgotten.
    #[error("no such call")]
    NoSuchCall,
    /// The call ended.
    #[error("the call ended ({0:?})")]
    Ended(EndReason),
    /// The user is not invited to, or no longer part of, the call.
    #[error("not part of this call")]
    NotInCall,
    /// The user's other device answered.
    #[error("answered on another device")]
    AnsweredElsewhere,
    /// The command does not fit where the call is (e.g. cancel after an answer).
    #[error("{0}")]
    BadState(&'static str),
    /// The user is in a call already.
    #[error("already in a call; hang up first")]
    AlreadyInCall,
    /// The command is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Call state could not be read or written (cluster mode, Redis unreachable): nothing changed; retry.
    #[error("call state is unavailable: {0}")]
    Unavailable(String),
}

/// The reasons [`CallError::BadState`] gives, so a remembered answer read back (cluster mode) has its own text.
const BAD_STATES: [&str; 3] = [
    "in the call already; hang up instead",
    "in the call already",
    "the call was answered; hang up instead",
];

/// A [`CallError`] as read back: its text owned.
#[derive(Deserialize)]
enum StoredError {
    NoSuchCall,
    Ended(EndReason),
    NotInCall,
    AnsweredElsewhere,
    BadState(String),
    AlreadyInCall,
    BadRequest(String),
    Unavailable(String),
}

impl<'de> Deserialize<'de> for CallError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StoredError::deserialize(d).map(Into::into)
    }
}

impl From<StoredError> for CallError {
    fn from(e: StoredError) -> Self {
        match e {
            StoredError::NoSuchCall => CallError::NoSuchCall,
            StoredError::Ended(r) => CallError::Ended(r),
            StoredError::NotInCall => CallError::NotInCall,
            StoredError::AnsweredElsewhere => CallError::AnsweredElsewhere,
            StoredError::BadState(s) => CallError::BadState(
                BAD_STATES
                    .into_iter()
                    .find(|b| *b == s)
                    .unwrap_or("the command does not fit the call's state"),
            ),
            StoredError::AlreadyInCall => CallError::AlreadyInCall,
            StoredError::BadRequest(s) => CallError::BadRequest(s),
            StoredError::Unavailable(s) => CallError::Unavailable(s),
        }
    }
}

impl CallError {
    /// The machine-readable code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::NoSuchCall => "no_such_call",
            CallError::Ended(_) => "call_ended",
            CallError::NotInCall => "not_in_call",
            CallError::AnsweredElsewhere => "answered_elsewhere",
            CallError::BadState(_) => "bad_state",
            CallError::AlreadyInCall => "already_in_call",
            CallError::BadRequest(_) => "bad_request",
            CallError::Unavailable(_) => "unavailable",
        }
    }
}

/// One device's connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeviceState {
    online: bool,
}

/// What the switchboard knows of one user.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct User {
    devices: BTreeMap<String, DeviceState>,
    call_waiting: bool,
    /// Calls the user is part of (in them or ringing).
    calls: BTreeSet<CallId>,
}

impl User {
    fn online(&self) -> Vec<String> {
        self.devices
            .iter()
            .filter(|(_, d)| d.online)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// A timer that fires at a deadline if the state it was set for still holds.
#[derive(Debug, Clone)]
enum Timer {
    /// `user` still rings in `call` with this deadline.
    Ring(CallId, String, Instant),
    /// `user`'s connection in `call` is still lost since this instant.
    Grace(CallId, String, Instant),
    /// Forget this remembered answer.
    Answer(Device, String),
    /// Forget this ended call.
    Ended(CallId),
}

/// The switchboard.
pub struct Switchboard {
    limits: Limits,
    next_call: u64,
    users: HashMap<String, User>,
    calls: HashMap<CallId, Call>,
    ended: HashMap<CallId, EndReason>,
    answers: HashMap<(Device, String), Result<Reply, CallError>>,
    /// Watched user → watching devices.
    watchers: HashMap<String, BTreeSet<Device>>,
    /// Watching device → watched users.
    watching: HashMap<Device, Vec<String>>,
    /// Timers by kind; each queue is in deadline order because its length is constant.
    rings: VecDeque<(Instant, Timer)>,
    graces: VecDeque<(Instant, Timer)>,
    memories: VecDeque<(Instant, Timer)>,
    out: VecDeque<Output>,
}

impl Switchboard {
    /// An empty switchboard. Call ids start after `first_call` (a node restarting with persisted state would
    /// pass its last id).
    pub fn new(limits: Limits, first_call: u64) -> Self {
        Self {
            limits,
            next_call: first_call,
            users: HashMap::new(),
            calls: HashMap::new(),
            ended: HashMap::new(),
            answers: HashMap::new(),
            watchers: HashMap::new(),
            watching: HashMap::new(),
            rings: VecDeque::new(),
            graces: VecDeque::new(),
            memories: VecDeque::new(),
            out: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Switchboard::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [&self.rings, &self.graces, &self.memories]
            .iter()
            .filter_map(|q| q.front().map(|(t, _)| *t))
            .min()
    }

    /// A call, for inspection.
    pub fn call(&self, id: &CallId) -> Option<&Call> {
        self.calls.get(id)
    }

    /// Every live call, for inspection.
    pub fn calls(&self) -> impl Iterator<Item = &Call> {
        self.calls.values()
    }

    /// How many calls are live.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The user's connected devices.
    pub fn online_devices(&self, user: &str) -> Vec<String> {
        self.users.get(user).map(User::online).unwrap_or_default()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = pop_due(&mut self.rings, now) {
            if let Timer::Ring(call, user, until) = t {
                self.ring_timeout(&call, &user, until, now);
            }
        }
        while let Some(t) = pop_due(&mut self.graces, now) {
            if let Timer::Grace(call, user, since) = t {
                self.grace_over(&call, &user, since, now);
            }
        }
        while let Some(t) = pop_due(&mut self.memories, now) {
            match t {
                Timer::Answer(device, key) => {
                    self.answers.remove(&(device, key));
                }
                Timer::Ended(call) => {
                    self.ended.remove(&call);
                }
                _ => {}
            }
        }
    }

    /// A command from `from`. With a `key`, the first answer is remembered: the same key again returns it
    /// and changes nothing.
    pub fn command(
        &mut self,
        from: &Device,
        key: Option<&str>,
        command: Command,
        now: Instant,
    ) -> Result<Reply, CallError> {
        if let Some(k) = key {
            if let Some(r) = self.answers.get(&(from.clone(), k.to_string())) {
                return r.clone();
            }
        }
        let result = self.run(from, command, now);
        if let Some(k) = key {
            self.answers.insert((from.clone(), k.to_string()), result.clone());
            let timer = Timer::Answer(from.clone(), k.to_string());
            self.memories.push_back((now + self.limits.memory, timer));
        }
        result
    }

    fn run(&mut self, from: &Device, command: Command, now: Instant) -> Result<Reply, CallError> {
        match command {
            Command::Invite { to, media, call: None } => self.invite(from, to, media, now),
            Command::Invite { to, call: Some(c), .. } => self.invite_more(from, &c, to, now),
            Command::Accept(c) => self.accept(from, &c, now),
            Command::Decline(c) => self.decline(from, &c, now),
            Command::Ignore(c) => self.ignore(from, &c),
            Command::Cancel(c) => self.cancel(from, &c, now),
            Command::Hangup(c) => self.hangup(from, &c, now),
            Command::Settings { call_waiting } => {
                self.user_mut(&from.user).call_waiting = call_waiting;
                Ok(Reply::Done)
            }
            Command::Watch(users) => self.watch(from, users),
        }
    }

    /// `device` connected (or reconnected): it rings for calls still ringing its user, and the calls it is in
    /// hear it is back.
    pub fn connect(&mut self, device: &Device, now: Instant) {
        let user = self.user_mut(&device.user);
        let was = user.devices.insert(device.device.clone(), DeviceState { online: true });
        let calls: Vec<CallId> = user.calls.iter().cloned().collect();
        if !was.is_some_and(|d| d.online) {
            self.presence_changed(&device.user);
        }
        for id in calls {
            self.device_back(&id, device, now);
        }
    }

    /// `device`'s connection dropped. In the calls it is in, the others hear it is reconnecting, and it has
    /// the grace period to come back. A ringing device stays ringing: it hears what it missed when it resumes.
    pub fn disconnect(&mut self, device: &Device, now: Instant) {
        let Some(user) = self.users.get_mut(&device.user) else {
            return;
        };
        let Some(state) = user.devices.get_mut(&device.device) else {
            return;
        };
        if !state.online {
            return;
        }
        state.online = false;
        let calls: Vec<CallId> = user.calls.iter().cloned().collect();
        self.presence_changed(&device.user);
        for id in calls {
            self.device_lost(&id, device, now);
        }
    }

    /// `device` is gone for good (signed out, or its session expired): it leaves its calls now.
    pub fn remove(&mut self, device: &Device, now: Instant) {
        self.disconnect(device, now);
        let calls: Vec<CallId> = self
            .users
            .get(&device.user)
            .map(|u| u.calls.iter().cloned().collect())
            .unwrap_or_default();
        for id in calls {
            let in_it = self
                .calls
                .get(&id)
                .and_then(|c| c.members.get(&device.user))
                .and_then(Member::joined_device)
                .is_some_and(|d| d == device.device);
            if in_it {
                self.leave(&id, &device.user, LeaveReason::ConnectionLost, now);
            } else {
                self.unring(&id, device);
            }
        }
        self.unwatch(device);
        if let Some(u) = self.users.get_mut(&device.user) {
            u.devices.remove(&device.device);
        }
    }

    /// The answered call could not be given a room: it ends with [`EndReason::NoCapacity`].
    pub fn fail(&mut self, call: &CallId, now: Instant) {
        self.end(call, EndReason::NoCapacity, now);
    }

    /// The SFU reports `user`'s media in `call`: flowing makes the call active (and ends a reconnect); dead
    /// media starts the grace period as a dropped connection does.
    pub fn media(&mut self, call: &CallId, user: &str, flowing: bool, now: Instant) {
        let Some(c) = self.calls.get(call) else { return };
        let Some(device) = c.members.get(user).and_then(Member::joined_device) else {
            return;
        };
        let device = Device::new(user, device);
        if flowing {
            self.media_flowing(call, &device, now);
        } else {
            self.device_lost(call, &device, now);
        }
    }

    fn user_mut(&mut self, user: &str) -> &mut User {
        self.users.entry(user.to_string()).or_default()
    }

    fn emit(&mut self, to: Device, event: Event) {
        self.out.push_back(Output::Event { to, event });
    }

    /// Sends `event` to every member device in the call, but `except` user.
    fn tell_joined(&mut self, call: &CallId, except: &str, event: Event) {
        let Some(c) = self.calls.get(call) else { return };
        let to: Vec<Device> = c
            .joined()
            .filter(|(u, _)| *u != except)
            .map(|(u, d)| Device::new(u, d))
            .collect();
        for d in to {
            self.emit(d, event.clone());
        }
    }

    fn watch(&mut self, from: &Device, users: Vec<String>) -> Result<Reply, CallError> {
        if users.len() > self.limits.max_watched {
            let max = self.limits.max_watched;
            return Err(CallError::BadRequest(format!("watch at most {max} users")));
        }
        self.unwatch(from);
        let mut now = Vec::with_capacity(users.len());
        for u in &users {
            self.watchers.entry(u.clone()).or_default().insert(from.clone());
            now.push((u.clone(), self.online_devices(u)));
        }
        self.watching.insert(from.clone(), users);
        Ok(Reply::Presence(now))
    }

    fn unwatch(&mut self, device: &Device) {
        for u in self.watching.remove(device).unwrap_or_default() {
            if let Some(w) = self.watchers.get_mut(&u) {
                w.remove(device);
                if w.is_empty() {
                    self.watchers.remove(&u);
                }
            }
        }
    }

    fn presence_changed(&mut self, user: &str) {
        let Some(watchers) = self.watchers.get(user) else {
            return;
        };
        let watchers: Vec<Device> = watchers.iter().cloned().collect();
        let devices = self.online_devices(user);
        for w in watchers {
            let event = Event::Presence {
                user: user.to_string(),
                devices: devices.clone(),
            };
            self.emit(w, event);
        }
    }
}

fn pop_due(q: &mut VecDeque<(Instant, Timer)>, now: Instant) -> Option<Timer> {
    if q.front().is_some_and(|(t, _)| *t <= now) {
        q.pop_front().map(|(_, t)| t)
    } else {
        None
    }
}
