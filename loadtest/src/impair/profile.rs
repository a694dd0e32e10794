//! Profiles: what each direction of a client's network does to its datagrams, and how they are written in TOML.
//!
//! A custom profile is a TOML table, named by its key (e.g. `[network.custom.my-3g]`), in one of two forms:
//!
//! ```toml
//! # A preset, with some keys changed (per direction; keys not given keep the preset's values).
//! preset = "3g"
//! down = { loss_pct = 3.0, burst_len = 4.0 }
//! up = { bandwidth_kbps = inf } # `inf` removes the preset's cap (TOML has no null)
//! ```
//!
//! ```toml
//! # Everything given: both `up` and `down` are required; a key left out is unimpaired (0, no cap, burst 1,
//! # queue 200 ms).
//! up = { delay_ms = 80.0, jitter_ms = 10.0, loss_pct = 1.0, burst_len = 2.0, bandwidth_kbps = 500.0 }
//! down = { delay_ms = 80.0, jitter_ms = 10.0, loss_pct = 1.0, burst_len = 2.0, reorder_pct = 0.5 }
//! ```
//!
//! Unknown keys are errors, and so are out-of-range values; every error names the profile and the key.

use super::presets;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The queueing delay a bandwidth-capped link allows before it tail-drops, when a profile does not say.
pub const DEFAULT_QUEUE_MS: f64 = 200.0;

/// What one direction of a network does to each datagram. Every key has a default: the unimpaired value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkParams {
    /// Propagation delay, ms: the least time any datagram takes.
    pub delay_ms: f64,
    /// Random extra delay per datagram, ms: exponentially distributed with this mean (and so this standard
    /// deviation). See [`super::Link`] for what FIFO delivery does to it.
    pub jitter_ms: f64,
    /// Mean loss rate, percent, in `[0, 100)`.
    pub loss_pct: f64,
    /// Mean length of a loss burst, packets, `>= 1`; 1 means random (independent) loss.
    pub burst_len: f64,
    /// Share of datagrams held back so that later ones overtake them, percent, in `[0, 100)`.
    pub reorder_pct: f64,
    /// Bandwidth cap, kbit/s (1 kbit/s = 1000 bit/s); `None` for none. It counts the `len_bytes` given to
    /// [`super::Link::send`], so pass the size on the wire (payload + 28 bytes of IPv4 and UDP) to count headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_kbps: Option<f64>,
    /// The longest a datagram may wait behind others for the capped link before it is tail-dropped, ms.
    pub queue_ms: f64,
}

impl Default for LinkParams {
    fn default() -> Self {
        Self::clean()
    }
}

impl LinkParams {
    /// No impairment at all: no delay, no loss, no cap.
    pub fn clean() -> LinkParams {
        LinkParams {
            delay_ms: 0.0,
            jitter_ms: 0.0,
            loss_pct: 0.0,
            burst_len: 1.0,
            reorder_pct: 0.0,
            bandwidth_kbps: None,
            queue_ms: DEFAULT_QUEUE_MS,
        }
    }

    /// Whether every datagram goes through at once, in order (`burst_len` and `queue_ms` then do nothing).
    pub fn is_clean(&self) -> bool {
        self.delay_ms == 0.0
            && self.jitter_ms == 0.0
            && self.loss_pct == 0.0
            && self.reorder_pct == 0.0
            && self.bandwidth_kbps.is_none()
    }

    /// Checks every value's range; the error names the first bad key.
    pub fn validate(&self) -> Result<(), InvalidParam> {
        at_least("delay_ms", self.delay_ms, 0.0)?;
        at_least("jitter_ms", self.jitter_ms, 0.0)?;
        percent("loss_pct", self.loss_pct)?;
        at_least("burst_len", self.burst_len, 1.0)?;
        percent("reorder_pct", self.reorder_pct)?;
        at_least("queue_ms", self.queue_ms, 0.0)?;
        match self.bandwidth_kbps {
            Some(v) if !(v.is_finite() && v > 0.0) => Err(InvalidParam {
                key: "bandwidth_kbps",
                value: v,
                reason: "must be a finite number above 0 (kbit/s); leave the key out for no cap",
            }),
            _ => Ok(()),
        }
    }
}

/// `value` must be finite and `>= min`.
fn at_least(key: &'static str, value: f64, min: f64) -> Result<(), InvalidParam> {
    if value.is_finite() && value >= min {
        return Ok(());
    }
    let reason = if min == 0.0 {
        "must be a finite number >= 0"
    } else {
        "must be a finite number >= 1 (packets; 1 is random loss)"
    };
    Err(InvalidParam { key, value, reason })
}

/// `value` must be a percentage in `[0, 100)`.
fn percent(key: &'static str, value: f64) -> Result<(), InvalidParam> {
    if (0.0..100.0).contains(&value) {
        return Ok(());
    }
    let reason = "must be a percentage >= 0 and below 100";
    Err(InvalidParam { key, value, reason })
}

/// One link parameter out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} = {value} {reason}")]
pub struct InvalidParam {
    /// The key, as written in TOML.
    pub key: &'static str,
    /// The value given.
    pub value: f64,
    /// What the value must be.
    pub reason: &'static str,
}

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client → server: the client's send path.
    Up,
    /// Server → client: the client's receive path.
    Down,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Up => "up",
            Direction::Down => "down",
        })
    }
}

/// A network a client is on: a name and each direction's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The profile's name: a preset's, or the key it was defined under.
    pub name: String,
    /// Client → server.
    pub up: LinkParams,
    /// Server → client.
    pub down: LinkParams,
}

impl Profile {
    /// An unimpaired network called `name`.
    pub fn clean(name: &str) -> Profile {
        Profile {
            name: name.to_string(),
            up: LinkParams::clean(),
            down: LinkParams::clean(),
        }
    }

    /// The preset called `name` (one of [`super::PRESETS`], letter case aside), or `None`.
    pub fn from_name(name: &str) -> Option<Profile> {
        presets::preset(name)
    }

    /// A custom profile called `name` from its TOML table (see the module docs for the two forms), checked.
    pub fn from_toml(name: &str, value: &toml::Value) -> Result<Profile, ProfileError> {
        // Parsing the table's text, rather than deserializing the value, makes a type error quote the offending
        // line, so it names the key. Only a non-table (an error anyway) takes the other road.
        let spec = match toml::to_string(value) {
            Ok(text) => toml::from_str::<ProfileSpec>(&text),
            Err(_) => value.clone().try_into::<ProfileSpec>(),
        };
        let spec = spec.map_err(|error| ProfileError::Toml {
            profile: name.to_string(),
            error,
        })?;
        spec.build(name)
    }

    /// A custom profile called `name` from TOML text holding just its table's keys, checked.
    pub fn parse_toml(name: &str, text: &str) -> Result<Profile, ProfileError> {
        let spec = toml::from_str::<ProfileSpec>(text).map_err(|error| ProfileError::Toml {
            profile: name.to_string(),
            error,
        })?;
        spec.build(name)
    }

    /// Checks both directions; the error names the profile, the direction and the key.
    pub fn validate(&self) -> Result<(), ProfileError> {
        for direction in [Direction::Up, Direction::Down] {
            self.link(direction).validate().map_err(|param| ProfileError::Invalid {
                profile: self.name.clone(),
                direction,
                param,
            })?;
        }
        Ok(())
    }

    /// Whether neither direction does anything to a datagram.
    pub fn is_clean(&self) -> bool {
        self.up.is_clean() && self.down.is_clean()
    }

    /// One direction's parameters.
    pub fn link(&self, direction: Direction) -> &LinkParams {
        match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }
}

/// Why a profile was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    /// A value is out of range.
    #[error("profile {profile:?}: {direction}.{param}")]
    Invalid {
        /// The profile's name.
        profile: String,
        /// The direction holding the key.
        direction: Direction,
        /// The key, its value and its range.
        param: InvalidParam,
    },
    /// The TOML does not have a profile's shape: an unknown key, a wrong type, a syntax error.
    #[error("profile {profile:?}: {error}")]
    Toml {
        /// The profile's name.
        profile: String,
        /// What the TOML parser said; it names or quotes the key.
        error: toml::de::Error,
    },
    /// `preset` names no preset.
    #[error("profile {profile:?}: preset = {preset:?} is no preset; known: {}", super::PRESETS.join(", "))]
    UnknownPreset {
        /// The profile's name.
        profile: String,
        /// The name given.
        preset: String,
    },
    /// Without `preset`, a direction was left out.
    #[error("profile {profile:?}: `{missing}` is missing; without `preset`, give both `up` and `down`")]
    Incomplete {
        /// The profile's name.
        profile: String,
        /// The direction left out.
        missing: Direction,
    },
}

/// A custom profile as written: a preset and changes to it, or both directions in full.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSpec {
    preset: Option<String>,
    up: Option<LinkOverrides>,
    down: Option<LinkOverrides>,
}

impl ProfileSpec {
    /// The checked profile called `name`.
    fn build(self, name: &str) -> Result<Profile, ProfileError> {
        let mut profile = match &self.preset {
            Some(preset) => Profile::from_name(preset).ok_or_else(|| ProfileError::UnknownPreset {
                profile: name.to_string(),
                preset: preset.clone(),
            })?,
            None => self.complete(name)?,
        };
        profile.name = name.to_string();
        if let Some(up) = self.up {
            up.apply(&mut profile.up);
        }
        if let Some(down) = self.down {
            down.apply(&mut profile.down);
        }
        profile.validate()?;
        Ok(profile)
    }

    /// Without a preset: the clean base, once both directions are known to be given.
    fn complete(&self, name: &str) -> Result<Profile, ProfileError> {
        let missing = match (&self.up, &self.down) {
            (None, _) => Direction::Up,
            (_, None) => Direction::Down,
            _ => return Ok(Profile::clean(name)),
        };
        Err(ProfileError::Incomplete {
            profile: name.to_string(),
            missing,
        })
    }
}

/// Changes to one direction: each key given replaces the base's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkOverrides {
    delay_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss_pct: Option<f64>,
    burst_len: Option<f64>,
    reorder_pct: Option<f64>,
    bandwidth_kbps: Option<f64>,
    queue_ms: Option<f64>,
}

impl LinkOverrides {
    /// Writes the keys given over `base`. `bandwidth_kbps = inf` removes the cap.
    fn apply(self, base: &mut LinkParams) {
        let set = |slot: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut base.delay_ms, self.delay_ms);
        set(&mut base.jitter_ms, self.jitter_ms);
        set(&mut base.loss_pct, self.loss_pct);
        set(&mut base.burst_len, self.burst_len);
        set(&mut base.reorder_pct, self.reorder_pct);
        set(&mut base.queue_ms, self.queue_ms);
        match self.bandwidth_kbps {
            Some(v) if v == f64::INFINITY => base.bandwidth_kbps = None,
            Some(v) => base.bandwidth_kbps = Some(v),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Value {
        toml::from_str(text).expect("valid TOML")
    }

    #[test]
    fn every_preset_parses_by_name_and_through_toml() {
        for name in super::super::PRESETS {
            let preset = Profile::from_name(name).expect("a preset");
            let custom = Profile::from_toml(name, &table(&format!("preset = {name:?}"))).expect("parses");
            assert_eq!(custom, preset);
        }
        assert_eq!(Profile::from_name("6g"), None);
    }

    #[test]
    fn preset_with_overrides() {
        let text = "preset = \"3g\"\ndown = { loss_pct = 3, burst_len = 4.0 }\nup = { bandwidth_kbps = inf }";
        let p = Profile::from_toml("my-3g", &table(text)).expect("parses");
        let base = Profile::from_name("3g").expect("3g");
        assert_eq!(p.name, "my-3g");
        assert_eq!((p.down.loss_pct, p.down.burst_len), (3.0, 4.0));
        assert_eq!(p.down.delay_ms, base.down.delay_ms);
        assert_eq!(p.down.bandwidth_kbps, base.down.bandwidth_kbps);
        assert_eq!(p.up.bandwidth_kbps, None);
        assert_eq!(p.up.loss_pct, base.up.loss_pct);
    }

    #[test]
    fn full_custom_profile() {
        let text = r#"
            [up]
            delay_ms = 80
            jitter_ms = 10.0
            loss_pct = 1.0
            burst_len = 2.0
            bandwidth_kbps = 500.0
            [down]
            delay_ms = 90.0
            reorder_pct = 0.5
            queue_ms = 50.0
        "#;
        let p = Profile::parse_toml("mine", text).expect("parses");
        assert_eq!(p.up.delay_ms, 80.0);
        assert_eq!(p.up.bandwidth_kbps, Some(500.0));
        assert_eq!(p.up.queue_ms, DEFAULT_QUEUE_MS);
        assert_eq!(
            (p.down.delay_ms, p.down.reorder_pct, p.down.queue_ms),
            (90.0, 0.5, 50.0)
        );
        assert_eq!((p.down.loss_pct, p.down.bandwidth_kbps), (0.0, None));
        assert!(!p.is_clean());
        assert_eq!(p.link(Direction::Down), &p.down);
    }

    #[test]
    fn profile_round_trips_through_toml_and_json() {
        let p = Profile::from_name("edge").expect("edge");
        let text = toml::to_string(&p).expect("serializes");
        assert_eq!(toml::from_str::<Profile>(&text).expect("parses back"), p);
        let json = serde_json::to_string(&Profile::clean("good")).expect("serializes");
        assert!(!json.contains("bandwidth_kbps"), "{json}");
        assert_eq!(
            serde_json::from_str::<Profile>(&json).expect("parses back"),
            Profile::clean("good")
        );
    }

    /// The error message for `text`, which must be refused.
    fn error(text: &str) -> String {
        let err = Profile::from_toml("bad", &table(text)).expect_err("refused");
        let msg = err.to_string();
        assert!(msg.starts_with("profile \"bad\": "), "{msg}");
        msg
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            ("preset = \"3g\"\nup = { delay_ms = -1 }", "up.delay_ms = -1"),
            ("preset = \"3g\"\ndown = { loss_pct = 100 }", "down.loss_pct = 100"),
            ("preset = \"3g\"\ndown = { burst_len = 0.5 }", "down.burst_len = 0.5"),
            ("preset = \"3g\"\nup = { jitter_ms = nan }", "up.jitter_ms = NaN"),
            ("preset = \"3g\"\nup = { reorder_pct = -2 }", "up.reorder_pct = -2"),
            ("preset = \"3g\"\nup = { bandwidth_kbps = 0 }", "up.bandwidth_kbps = 0"),
            ("preset = \"3g\"\ndown = { queue_ms = -5 }", "down.queue_ms = -5"),
        ];
        for (text, key) in cases {
            let msg = error(text);
            assert!(msg.contains(key), "{msg} should name {key}");
        }
    }

    #[test]
    fn bad_shapes_name_the_key() {
        assert!(error("preset = \"3g\"\ndown = { los_pct = 1 }").contains("los_pct"));
        assert!(error("preset = \"3g\"\nbandwidth = 5").contains("bandwidth"));
        let msg = error("preset = \"3g\"\ndown = { loss_pct = \"lots\" }");
        assert!(msg.contains("loss_pct"), "{msg}");
        assert!(error("preset = \"6g\"").contains("\"6g\" is no preset"));
        let msg = error("up = { delay_ms = 5.0 }");
        assert!(msg.contains("`down` is missing"), "{msg}");
        assert!(matches!(
            Profile::from_toml("x", &toml::Value::Integer(3)),
            Err(ProfileError::Toml { .. })
        ));
    }

    #[test]
    fn validate_catches_direct_construction() {
        let mut p = Profile::clean("x");
        p.down.loss_pct = -0.5;
        let err = p.validate().expect_err("negative loss");
        assert_eq!(
            err,
            ProfileError::Invalid {
                profile: "x".into(),
                direction: Direction::Down,
                param: InvalidParam {
                    key: "loss_pct",
                    value: -0.5,
                    reason: "must be a percentage >= 0 and below 100",
                },
            }
        );
        assert_eq!(
            err.to_string(),
            "profile \"x\": down.loss_pct = -0.5 must be a percentage >= 0 and below 100"
        );
    }
}
