//! A switchboard in virtual time, with every output sorted by where it goes.

#![allow(dead_code)]

use hualu_signaling::core::{
    CallError, CallId, Command, Device, Event, Hook, Limits, Media, Output, Reply, Switchboard,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The switchboard, a virtual clock, and what came out.
pub struct Board {
    pub sb: Switchboard,
    pub now: Instant,
    /// Events by device, in order.
    pub events: HashMap<Device, Vec<Event>>,
    pub hooks: Vec<Hook>,
    /// Place, Join, Leave and Close, in order.
    pub media: Vec<Output>,
    keys: u64,
}

pub fn dev(user: &str, device: &str) -> Device {
    Device::new(user, device)
}

impl Board {
    pub fn new() -> Self {
        let limits = Limits {
            ring_timeout: Duration::from_secs(45),
            grace: Duration::from_secs(30),
            ..Limits::default()
        };
        Self {
            sb: Switchboard::new(limits, 0),
            now: Instant::now(),
            events: HashMap::new(),
            hooks: Vec::new(),
            media: Vec::new(),
            keys: 0,
        }
    }

    /// Connects these devices.
    pub fn online(&mut self, devices: &[&Device]) {
        for d in devices {
            self.sb.connect(d, self.now);
        }
        self.drain();
    }

    pub fn drain(&mut self) {
        while let Some(o) = self.sb.poll_output() {
            match o {
                Output::Event { to, event } => self.events.entry(to).or_default().push(event),
                Output::Hook(h) => self.hooks.push(h),
                other => self.media.push(other),
            }
        }
    }

    /// A command with a fresh idempotency key.
    pub fn cmd(&mut self, from: &Device, c: Command) -> Result<Reply, CallError> {
        self.keys += 1;
        let key = format!("k{}", self.keys);
        self.cmd_key(from, &key, c)
    }

    pub fn cmd_key(&mut self, from: &Device, key: &str, c: Command) -> Result<Reply, CallError> {
        let r = self.sb.command(from, Some(key), c, self.now);
        self.drain();
        r
    }

    /// Places a call and returns its id.
    pub fn call(&mut self, from: &Device, to: &[&str], media: Media) -> CallId {
        let to = to.iter().map(|s| s.to_string()).collect();
        match self.cmd(from, Command::Invite { to, media, call: None }) {
            Ok(Reply::Call { call, .. }) => call,
            other => panic!("invite: {other:?}"),
        }
    }

    /// Moves the clock and runs due timers.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.sb.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.sb.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    /// The events `d` received, taken.
    pub fn take(&mut self, d: &Device) -> Vec<Event> {
        self.events.remove(d).unwrap_or_default()
    }

    /// The type names of what `d` received, taken.
    pub fn kinds(&mut self, d: &Device) -> Vec<String> {
        self.take(d)
            .iter()
            .map(|e| {
                serde_json::to_value(e).expect("json")["type"]
                    .as_str()
                    .expect("type")
                    .to_string()
            })
            .collect()
    }

    /// The type names of the webhooks, taken.
    pub fn hook_kinds(&mut self) -> Vec<String> {
        std::mem::take(&mut self.hooks)
            .iter()
            .map(|h| {
                serde_json::to_value(h).expect("json")["type"]
                    .as_str()
                    .expect("type")
                    .to_string()
            })
            .collect()
    }
}
