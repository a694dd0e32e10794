//! Instants as Unix milliseconds, for state kept outside the process (cluster mode keeps calls in Redis, and
//! another signaling node reads them with its own monotonic clock).
//!
//! Each process pins one `(Instant, Unix ms)` pair at first use and converts through it, so a given instant
//! always gives the same milliseconds and back: a timer and the status it was set for still compare equal
//! after a round trip through Redis.

use serde::{Deserialize, Deserializer, Serializer};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn anchor() -> (Instant, u64) {
    static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
    *ANCHOR.get_or_init(|| (Instant::now(), hualu_common::clock::unix_now_ms()))
}

/// `t` as Unix milliseconds.
pub fn to_ms(t: Instant) -> u64 {
    let (at, ms) = anchor();
    match t.checked_duration_since(at) {
        Some(d) => ms + d.as_millis() as u64,
        // Rounded down, as after the anchor.
        None => ms.saturating_sub(at.duration_since(t).as_nanos().div_ceil(1_000_000) as u64),
    }
}

/// Unix milliseconds `ms` as an instant of this process (clamped to what its monotonic clock can hold).
pub fn from_ms(ms: u64) -> Instant {
    let (at, anchor_ms) = anchor();
    if ms >= anchor_ms {
        at + Duration::from_millis(ms - anchor_ms)
    } else {
        at.checked_sub(Duration::from_millis(anchor_ms - ms)).unwrap_or(at)
    }
}

/// Serde for an `Instant` field, as Unix ms.
pub mod instant {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(to_ms(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        u64::deserialize(d).map(from_ms)
    }
}

/// Serde for an `Option<Instant>` field, as Unix ms or null.
pub mod option_instant {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&to_ms(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(from_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_round_trips_to_the_same_millisecond() {
        let now = Instant::now();
        for t in [now, now + Duration::from_secs(45), now - Duration::from_millis(1500)] {
            let ms = to_ms(t);
            assert_eq!(to_ms(from_ms(ms)), ms, "{t:?}");
        }
        let later = now + Duration::from_millis(30_250);
        assert_eq!(to_ms(later) - to_ms(now), 30_250);
    }
}
