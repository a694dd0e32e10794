//! A scenario: what a load run does, read from TOML (`configs/loadtest/*.toml` documents every key).

use crate::impair::Profile;
use crate::record::Thresholds;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name, used in reports.
    pub name: String,
    /// The seed of the run plan: the same seed gives the same plan.
    #[serde(default)]
    pub seed: u64,
    /// How long calls are placed, in seconds. Calls still up then are hung up. In capacity mode it may be left
    /// out (0): the levels set the length; when given, it cuts the run short.
    #[serde(default)]
    pub duration_s: f64,
    /// The servers under test.
    pub servers: Servers,
    /// Who calls.
    pub population: Population,
    /// When calls start, and how long they last.
    pub arrival: Arrival,
    /// Which kinds of call.
    #[serde(default)]
    pub mix: Mix,
    /// How calls end up.
    #[serde(default)]
    pub outcomes: Outcomes,
    /// The networks the clients are on.
    #[serde(default)]
    pub network: Network,
    /// Outages and network switches during the run.
    #[serde(default)]
    pub events: Vec<TimedEvent>,
    /// The audio each client sends, and how it is scored.
    #[serde(default)]
    pub media: Media,
    /// Pass or fail; in capacity mode, each level's.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Capacity mode: the load climbs in levels of concurrent calls until one breaks a threshold.
    #[serde(default)]
    pub capacity: Option<Capacity>,
}

/// Capacity mode (`[capacity]`): levels of concurrent calls, each held for `step_s`, from `start_calls` up by
/// `step_calls` to `max_calls`. The arrival rate of each level is its calls over a call's mean length (Little's
/// law), so `arrival.rate_per_s` and `arrival.ramp` are not used. A level holds when the calls that lived
/// wholly inside it meet every `[thresholds]` limit; the run stops at the first level that breaks one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Concurrent calls at the first level.
    pub start_calls: u32,
    /// Calls added at each level.
    pub step_calls: u32,
    /// The last level: the run ends here if nothing broke.
    pub max_calls: u32,
    /// Seconds each level lasts; at least twice a call's longest life plus 5 s.
    pub step_s: f64,
    /// The run fails (exit 1) unless a level of at least this many calls held (default: `start_calls`).
    #[serde(default)]
    pub require_calls: Option<u32>,
}

/// The servers under test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Servers {
    /// Call control's WebSocket URL, e.g. `ws://127.0.0.1:7880/ws`.
    pub signaling: String,
    /// The API key that mints the callers' tokens (`[auth.api_keys]` on the server).
    pub api_key: String,
    /// Its secret. Empty: read from the environment variable `HUALU_LOADTEST_API_SECRET`.
    #[serde(default)]
    pub api_secret: String,
    /// Prometheus endpoints scraped once a second (e.g. `http://127.0.0.1:9478/metrics`).
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Process ids of the servers, whose CPU and memory are sampled once a second (also `--server-pid`).
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Source addresses for the clients' sockets, spread round-robin, so per-IP rate limits see many
    /// addresses as they would in the field (loopback: `127.0.0.2` to `127.0.0.250`). Empty: the system's choice.
    #[serde(default)]
    pub source_ips: Vec<String>,
}

/// Who calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// Users, each always connected.
    pub users: u32,
    /// Devices per user: each rings on an incoming call.
    #[serde(default = "one")]
    pub devices_per_user: u32,
    /// Connections opened per second at the start.
    #[serde(default = "connect_rate")]
    pub connect_rate: f64,
}

/// Call arrivals: a Poisson process whose rate follows `rate_per_s`, or `ramp` when given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    /// New calls per second (the Poisson rate).
    pub rate_per_s: f64,
    /// A ramp of the rate over time; the rate is `rate_per_s` where no ramp applies.
    #[serde(default)]
    pub ramp: Option<Ramp>,
    /// How long an answered call lasts.
    pub hold: Hold,
}

/// A change of the arrival rate over time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum Ramp {
    /// From `from` to `to` calls per second, linearly, over the first `over_s` seconds.
    Linear {
        /// The rate at the start.
        from: f64,
        /// The rate reached at `over_s`.
        to: f64,
        /// Seconds the ramp takes.
        over_s: f64,
    },
    /// The rate steps: `[[at_s, rate], ...]`, each from its time on.
    Steps {
        /// `(at_s, rate)` pairs, in time order.
        steps: Vec<(f64, f64)>,
    },
}

/// The length of an answered call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "dist", rename_all = "snake_case")]
pub enum Hold {
    /// Always `s` seconds.
    Fixed {
        /// Seconds.
        s: f64,
    },
    /// Uniform between `min_s` and `max_s`.
    Uniform {
        /// The shortest.
        min_s: f64,
        /// The longest.
        max_s: f64,
    },
    /// Exponential with mean `mean_s`, cut to `[min_s, max_s]` (telephony's usual model).
    Exponential {
        /// The mean before cutting.
        mean_s: f64,
        /// The shortest.
        #[serde(default = "one_f")]
        min_s: f64,
        /// The longest.
        #[serde(default = "hour")]
        max_s: f64,
    },
}

/// Kinds of call, as shares (normalised).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Share of 1:1 calls.
    #[serde(default = "one_f")]
    pub one_to_one: f64,
    /// Share of group calls.
    #[serde(default)]
    pub group: f64,
    /// Members of a group call, the caller included.
    #[serde(default = "three")]
    pub group_size: u32,
    /// Share of calls with video (sent as pre-encoded VP8 frames).
    #[serde(default)]
    pub video: f64,
}

/// How calls end up, as shares (normalised).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcomes {
    /// The callee answers after `answer_after_s`.
    #[serde(default = "one_f")]
    pub answered: f64,
    /// The callee declines.
    #[serde(default)]
    pub declined: f64,
    /// The callee is already in a call.
    #[serde(default)]
    pub busy: f64,
    /// Nobody answers until the server's ring timeout.
    #[serde(default)]
    pub no_answer: f64,
    /// The caller gives up while it rings.
    #[serde(default)]
    pub cancelled: f64,
    /// Two users call each other at once, which merges into one call.
    #[serde(default)]
    pub glare: f64,
    /// How long a callee lets it ring before answering or declining: `[min, max]` seconds, uniform.
    #[serde(default = "answer_after")]
    pub answer_after_s: (f64, f64),
}

/// Which network each client is on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Profiles by share, e.g. `{ "4g" = 0.7, "3g" = 0.3 }`: a preset's name or one under `custom`.
    #[serde(default = "good_only")]
    pub profiles: BTreeMap<String, f64>,
    /// Profiles defined here, by name.
    #[serde(default)]
    pub custom: BTreeMap<String, toml::Value>,
    /// The media transport: `udp` (direct) or `relay` (every client through TURN).
    #[serde(default)]
    pub transport: Transport,
}

/// How media reaches the SFU.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// A host UDP candidate.
    #[default]
    Udp,
    /// Through the TURN servers in `join` (UDP).
    Relay,
}

/// Something that happens to some clients at a time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedEvent {
    /// When, in seconds from the start.
    pub at_s: f64,
    /// What.
    pub kind: EventKind,
    /// How long the network is gone.
    #[serde(default = "one_f")]
    pub duration_s: f64,
    /// Share of the clients in a call at that moment that it hits.
    #[serde(default = "one_f")]
    pub share: f64,
}

/// A timed event's kind.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Nothing gets through, both ways, for `duration_s`.
    Outage,
    /// Wi-Fi to mobile: an outage of `duration_s`, then a new local address and an ICE restart.
    Switch,
}

/// The audio sent and how it is scored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    /// Opus bitrate.
    #[serde(default = "bitrate")]
    pub bitrate_kbps: u32,
    /// In-band FEC (LBRR).
    #[serde(default = "yes")]
    pub fec: bool,
    /// Discontinuous transmission in pauses.
    #[serde(default = "yes")]
    pub dtx: bool,
    /// Offer RED (RFC 2198) and use it when the server accepts it.
    #[serde(default = "yes")]
    pub red: bool,
    /// Share of received streams decoded with libopus to count concealment (decoding costs CPU; the rest
    /// are scored from their packets alone).
    #[serde(default = "one_f")]
    pub decode_share: f64,
    /// Device input plus output latency added to mouth-to-ear delay (the harness has no devices).
    #[serde(default)]
    pub device_io_ms: f64,
    /// A call whose media has not connected by then fails.
    #[serde(default = "ice_timeout")]
    pub connect_timeout_s: f64,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn one_f() -> f64 {
    1.0
}
fn hour() -> f64 {
    3600.0
}
fn yes() -> bool {
    true
}
fn connect_rate() -> f64 {
    200.0
}
fn answer_after() -> (f64, f64) {
    (1.0, 3.0)
}
fn bitrate() -> u32 {
    24
}
fn ice_timeout() -> f64 {
    10.0
}
fn good_only() -> BTreeMap<String, f64> {
    BTreeMap::from([("good".to_string(), 1.0)])
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            one_to_one: 1.0,
            group: 0.0,
            group_size: 3,
            video: 0.0,
        }
    }
}

impl Default for Outcomes {
    fn default() -> Self {
        Outcomes {
            answered: 1.0,
            declined: 0.0,
            busy: 0.0,
            no_answer: 0.0,
            cancelled: 0.0,
            glare: 0.0,
            answer_after_s: answer_after(),
        }
    }
}

impl Default for Network {
    fn default() -> Self {
        Network {
            profiles: good_only(),
            custom: BTreeMap::new(),
            transport: Transport::Udp,
        }
    }
}

impl Default for Media {
    fn default() -> Self {
        Media {
            bitrate_kbps: bitrate(),
            fec: true,
            dtx: true,
            red: true,
            decode_share: 1.0,
            device_io_ms: 0.0,
            connect_timeout_s: ice_timeout(),
        }
    }
}

/// A scenario that cannot run, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    /// The TOML does not parse or has unknown keys.
    #[error("{0}")]
    Parse(String),
    /// A value is out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, e.g. `arrival.rate_per_s`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        key,
        message: message.into(),
    }
}

impl Scenario {
    /// Reads and checks a scenario file, with `sets` (`key.path=value`, the value in TOML) applied over it.
    pub fn load(path: &Path, sets: &[String]) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read(path.display().to_string(), e))?;
        Self::parse(&text, sets)
    }

    /// Parses and checks scenario text, with `sets` applied over it.
    pub fn parse(text: &str, sets: &[String]) -> Result<Scenario, ScenarioError> {
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        for set in sets {
            apply_set(&mut doc, set)?;
        }
        let s: Scenario = doc
            .try_into()
            .map_err(|e: toml::de::Error| ScenarioError::Parse(e.to_string()))?;
        s.check()?;
        Ok(s)
    }

    /// The network profiles by name, presets and custom ones, each checked.
    pub fn profiles(&self) -> Result<BTreeMap<String, Profile>, ScenarioError> {
        let mut out = BTreeMap::new();
        for name in self.network.profiles.keys() {
            let profile = match self.network.custom.get(name) {
                Some(v) => Profile::from_toml(name, v).map_err(|e| invalid("network.custom", e.to_string()))?,
                None => Profile::from_name(name).ok_or_else(|| {
                    invalid(
                        "network.profiles",
                        format!("no preset or custom profile named {name:?}"),
                    )
                })?,
            };
            out.insert(name.clone(), profile);
        }
        Ok(out)
    }

    fn check(&self) -> Result<(), ScenarioError> {
        let positive = |key, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(key, format!("must be a positive number, not {v}")))
            }
        };
        let share = |key, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(invalid(key, format!("must be between 0 and 1, not {v}")))
            }
        };
        match &self.capacity {
            None => positive("duration_s", self.duration_s)?,
            Some(c) => self.check_capacity(c)?,
        }
        if !self.servers.signaling.starts_with("ws://") && !self.servers.signaling.starts_with("wss://") {
            return Err(invalid("servers.signaling", "must be a ws:// or wss:// URL"));
        }
        if self.servers.api_key.is_empty() {
            return Err(invalid("servers.api_key", "must name the server's API key"));
        }
        if self.population.users < 2 {
            return Err(invalid(
                "population.users",
                "at least 2 users are needed to place a call",
            ));
        }
        if self.population.devices_per_user == 0 {
            return Err(invalid("population.devices_per_user", "at least 1"));
        }
        positive("population.connect_rate", self.population.connect_rate)?;
        if !(self.arrival.rate_per_s.is_finite() && self.arrival.rate_per_s >= 0.0) {
            return Err(invalid("arrival.rate_per_s", "must be 0 or more"));
        }
        self.check_hold()?;
        self.check_weights()?;
        if self.mix.group > 0.0 && !(3..=16).contains(&self.mix.group_size) {
            return Err(invalid("mix.group_size", "a group call has 3 to 16 members"));
        }
        share("mix.video", self.mix.video)?;
        share("media.decode_share", self.media.decode_share)?;
        let (lo, hi) = self.outcomes.answer_after_s;
        if !(lo >= 0.0 && hi >= lo && hi.is_finite()) {
            return Err(invalid(
                "outcomes.answer_after_s",
                "must be [min, max] with 0 <= min <= max",
            ));
        }
        if !(6..=510).contains(&self.media.bitrate_kbps) {
            return Err(invalid("media.bitrate_kbps", "Opus takes 6 to 510 kb/s"));
        }
        positive("media.connect_timeout_s", self.media.connect_timeout_s)?;
        for e in &self.events {
            share("events.share", e.share)?;
            positive("events.duration_s", e.duration_s)?;
            if !(e.at_s >= 0.0 && e.at_s < self.placing_s()) {
                return Err(invalid("events.at_s", "must fall within the run"));
            }
        }
        for ip in &self.servers.source_ips {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| invalid("servers.source_ips", format!("{ip:?} is not an IP address")))?;
        }
        self.check_thresholds()?;
        self.profiles()?;
        Ok(())
    }

    /// The video thresholds are numbers of 0 or more (a frame rate, a duration).
    fn check_thresholds(&self) -> Result<(), ScenarioError> {
        let t = &self.thresholds;
        let limits = [
            ("thresholds.min_video_fps_p5", t.min_video_fps_p5),
            ("thresholds.max_video_freeze_p95_ms", t.max_video_freeze_p95_ms),
        ];
        for (key, v) in limits {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(invalid(key, format!("must be a number of 0 or more, not {v}")));
            }
        }
        Ok(())
    }

    fn check_hold(&self) -> Result<(), ScenarioError> {
        let ok = match self.arrival.hold {
            Hold::Fixed { s } => s > 0.0,
            Hold::Uniform { min_s, max_s } => min_s > 0.0 && max_s >= min_s,
            Hold::Exponential { mean_s, min_s, max_s } => mean_s > 0.0 && min_s >= 0.0 && max_s > min_s,
        };
        if !ok {
            return Err(invalid("arrival.hold", "hold times must be positive, with min <= max"));
        }
        match &self.arrival.ramp {
            Some(Ramp::Linear { from, to, over_s }) if *from < 0.0 || *to < 0.0 || *over_s <= 0.0 => {
                Err(invalid("arrival.ramp", "rates must be >= 0 and over_s > 0"))
            }
            Some(Ramp::Steps { steps }) if steps.is_empty() || steps.iter().any(|(t, r)| *t < 0.0 || *r < 0.0) => {
                Err(invalid("arrival.ramp", "steps are [at_s, rate] pairs with both >= 0"))
            }
            Some(Ramp::Steps { steps }) if steps.windows(2).any(|w| w[1].0 < w[0].0) => {
                Err(invalid("arrival.ramp", "steps must be in time order"))
            }
            _ => Ok(()),
        }
    }

    fn check_weights(&self) -> Result<(), ScenarioError> {
        let o = &self.outcomes;
        let outcomes = [o.answered, o.declined, o.busy, o.no_answer, o.cancelled, o.glare];
        if outcomes.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || outcomes.iter().sum::<f64>() <= 0.0 {
            return Err(invalid("outcomes", "shares must be >= 0 and not all 0"));
        }
        let m = &self.mix;
        if m.one_to_one < 0.0 || m.group < 0.0 || m.one_to_one + m.group <= 0.0 {
            return Err(invalid("mix", "one_to_one and group must be >= 0 and not both 0"));
        }
        let p = &self.network.profiles;
        if p.is_empty() || p.values().any(|w| !(w.is_finite() && *w >= 0.0)) || p.values().sum::<f64>() <= 0.0 {
            return Err(invalid("network.profiles", "shares must be >= 0 and not all 0"));
        }
        Ok(())
    }

    /// The arrival rate at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        if let Some(c) = &self.capacity {
            return c.calls_at(t).map_or(0.0, |calls| f64::from(calls) / self.mean_call_s());
        }
        match &self.arrival.ramp {
            None => self.arrival.rate_per_s,
            Some(Ramp::Linear { from, to, over_s }) if t < *over_s => from + (to - from) * t / over_s,
            Some(Ramp::Linear { to, .. }) => *to,
            Some(Ramp::Steps { steps }) => steps
                .iter()
                .take_while(|(at, _)| *at <= t)
                .last()
                .map_or(self.arrival.rate_per_s, |(_, r)| *r),
        }
    }

    /// Seconds during which calls are placed: `duration_s`, or in capacity mode the levels' length (cut to
    /// `duration_s` when that is given).
    pub fn placing_s(&self) -> f64 {
        match &self.capacity {
            None => self.duration_s,
            Some(c) if self.duration_s > 0.0 => c.length_s().min(self.duration_s),
            Some(c) => c.length_s(),
        }
    }

    /// A call's mean time from invite to hang-up as planned: the mean ring plus the mean hold.
    pub fn mean_call_s(&self) -> f64 {
        let (lo, hi) = self.outcomes.answer_after_s;
        let hold = match self.arrival.hold {
            Hold::Fixed { s } => s,
            Hold::Uniform { min_s, max_s } => (min_s + max_s) / 2.0,
            // The cut changes the mean a little; capacity runs should prefer fixed or uniform holds.
            Hold::Exponential { mean_s, min_s, max_s } => mean_s.clamp(min_s, max_s),
        };
        (lo + hi) / 2.0 + hold
    }

    /// A call's longest planned life, invite to hang-up, plus 2 s for setup and teardown.
    pub fn longest_call_s(&self) -> f64 {
        let hold = match self.arrival.hold {
            Hold::Fixed { s } => s,
            Hold::Uniform { max_s, .. } | Hold::Exponential { max_s, .. } => max_s,
        };
        self.outcomes.answer_after_s.1 + hold + 2.0
    }

    fn check_capacity(&self, c: &Capacity) -> Result<(), ScenarioError> {
        if c.start_calls == 0 || c.step_calls == 0 || c.max_calls < c.start_calls {
            return Err(invalid(
                "capacity",
                "start_calls and step_calls must be at least 1, and max_calls at least start_calls",
            ));
        }
        if !(self.duration_s.is_finite() && self.duration_s >= 0.0) {
            return Err(invalid("duration_s", "must be 0 (the levels' length) or more"));
        }
        let least = 2.0 * self.longest_call_s() + 5.0;
        if !(c.step_s.is_finite() && c.step_s >= least) {
            return Err(invalid(
                "capacity.step_s",
                format!(
                    "must be at least {least:.0} s: twice a call's longest life (ring, hold and 2 s), plus 5 s, so \
                     that some calls live wholly inside each level"
                ),
            ));
        }
        if self.mix.group > 0.0 || self.mix.video > 0.0 {
            return Err(invalid(
                "capacity",
                "capacity mode places 1:1 audio calls only (mix.group and mix.video 0)",
            ));
        }
        if self.thresholds.min_video_fps_p5.is_some() || self.thresholds.max_video_freeze_p95_ms.is_some() {
            return Err(invalid(
                "capacity",
                "capacity mode places audio calls only, so a video threshold could never be measured",
            ));
        }
        // Each call holds two users for its life plus the plan's margin of 3 s; 10% spare for Poisson bunching.
        let busy = self.outcomes.answer_after_s.1 + self.mean_call_s() - self.mean_ring_s() + 3.0;
        let needed = (2.0 * f64::from(c.max_calls) * busy / self.mean_call_s() * 1.1).ceil();
        if f64::from(self.population.users) < needed {
            return Err(invalid(
                "population.users",
                format!(
                    "{} users cannot carry {} concurrent calls: at least {needed:.0}",
                    self.population.users, c.max_calls
                ),
            ));
        }
        Ok(())
    }

    fn mean_ring_s(&self) -> f64 {
        let (lo, hi) = self.outcomes.answer_after_s;
        (lo + hi) / 2.0
    }

    /// The API secret: from the file, else from `HUALU_LOADTEST_API_SECRET`.
    pub fn api_secret(&self) -> Result<String, ScenarioError> {
        if !self.servers.api_secret.is_empty() {
            return Ok(self.servers.api_secret.clone());
        }
        std::env::var("HUALU_LOADTEST_API_SECRET")
            .map_err(|_| invalid("servers.api_secret", "empty, and HUALU_LOADTEST_API_SECRET is not set"))
    }
}

impl Capacity {
    /// How many levels, from `start_calls` to `max_calls`.
    pub fn levels(&self) -> u32 {
        (self.max_calls - self.start_calls) / self.step_calls + 1
    }

    /// The target of level `i` (from 0).
    pub fn level_calls(&self, i: u32) -> u32 {
        self.start_calls + i * self.step_calls
    }

    /// Seconds all the levels take.
    pub fn length_s(&self) -> f64 {
        f64::from(self.levels()) * self.step_s
    }

    /// The level's target in force at `t` seconds, or `None` past the last level.
    pub fn calls_at(&self, t: f64) -> Option<u32> {
        let i = (t.max(0.0) / self.step_s).floor();
        (i < f64::from(self.levels())).then(|| self.level_calls(i as u32))
    }
}

/// Applies one `a.b.c=value` override; the value is read as TOML (`4.5`, `true`, `"text"`, `[1, 2]`), and as a
/// bare string when it is not valid TOML.
fn apply_set(doc: &mut toml::Table, set: &str) -> Result<(), ScenarioError> {
    let bad = |m: &str| ScenarioError::Parse(format!("--set {set:?}: {m}"));
    let (path, raw) = set.split_once('=').ok_or_else(|| bad("expected key=value"))?;
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").ok_or_else(|| bad("no value"))?,
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let keys: Vec<&str> = path.trim().split('.').collect();
    let (last, parents) = keys.split_last().ok_or_else(|| bad("empty key"))?;
    let mut table = doc;
    for k in parents {
        let entry = table
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| bad(&format!("{k} is not a table")))?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}
