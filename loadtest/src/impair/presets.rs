//! The named presets, from the network-profile table of the project's call-quality guide ("Measuring call
//! quality"; Loadero, the comcast tool and BrowserStack publish the figures).
//!
//! How a table row becomes a [`Profile`]:
//! - bandwidth "down/up" sets each direction's `bandwidth_kbps` (1 Mbit/s = 1000 kbit/s); a single figure is used
//!   both ways;
//! - the one-way latency is the access link's, so it is each direction's `delay_ms` (a call between two clients on
//!   the same preset crosses it twice, once per client, plus whatever the server adds);
//! - loss is each direction's `loss_pct`;
//! - jitter is each direction's `jitter_ms` (4G's "5-15 ms" becomes 10 ms; "-" becomes 0);
//! - `burst_len` is **our choice, not the sources'**: their tools drop packets at random, but field data from mobile
//!   networks shows loss in bursts, so the mobile presets lose 2 (4G, 3.5G), 2.5 (3G) or 3 (EDGE, 2G) packets a
//!   burst on average. Lossy Wi-Fi keeps random loss (1.0), as its source has it;
//! - `reorder_pct` is 0 (no source gives one) and `queue_ms` is [`DEFAULT_QUEUE_MS`].
//!
//! Jitter here is a non-negative extra delay on a FIFO link (see [`super::Link`]), while netem-based tools, like
//! the sources', usually spread delay on both sides of the latency and let it reorder packets. So a preset's mean
//! one-way delay is above the table's latency: for a 20 ms audio stream about 45 + 11 ms on 4G, 250 + 90 ms on 3G
//! and 650 + 234 ms on EDGE.

use super::profile::{LinkParams, Profile, DEFAULT_QUEUE_MS};

/// Every preset's name, as [`Profile::from_name`] takes it (letter case aside). `good` and `loopback` are the same
/// unimpaired network.
pub const PRESETS: &[&str] = &[
    "good",
    "loopback",
    "wifi-lossy",
    "4g",
    "3.5g",
    "3g",
    "3g-good",
    "edge",
    "edge-good",
    "2g",
];

/// One row of the guide's table, as used here.
struct Row {
    name: &'static str,
    down_kbps: f64,
    up_kbps: f64,
    delay_ms: f64,
    loss_pct: f64,
    jitter_ms: f64,
    burst_len: f64,
}

/// The impaired presets. `good` and `loopback` are not here: they are [`LinkParams::clean`] both ways.
const ROWS: &[Row] = &[
    row("wifi-lossy", 30_000.0, 30_000.0, 40.0, 0.2, 0.0, 1.0),
    row("4g", 100_000.0, 50_000.0, 45.0, 0.2, 10.0, 2.0),
    row("3.5g", 20_000.0, 10_000.0, 150.0, 0.5, 10.0, 2.0),
    row("3g", 1_200.0, 1_200.0, 250.0, 0.5, 50.0, 2.5),
    row("3g-good", 750.0, 750.0, 250.0, 1.5, 0.0, 2.5),
    row("edge", 200.0, 260.0, 650.0, 1.0, 100.0, 3.0),
    row("edge-good", 250.0, 250.0, 300.0, 1.5, 0.0, 3.0),
    row("2g", 30.0, 20.0, 650.0, 2.0, 0.0, 3.0),
];

/// A row, in the table's column order: name, bandwidth down/up, latency, loss, jitter, then our burst length.
const fn row(
    name: &'static str,
    down_kbps: f64,
    up_kbps: f64,
    delay_ms: f64,
    loss_pct: f64,
    jitter_ms: f64,
    burst_len: f64,
) -> Row {
    Row {
        name,
        down_kbps,
        up_kbps,
        delay_ms,
        loss_pct,
        jitter_ms,
        burst_len,
    }
}

/// The preset called `name` (letter case aside), named as asked.
pub(super) fn preset(name: &str) -> Option<Profile> {
    if name.eq_ignore_ascii_case("good") || name.eq_ignore_ascii_case("loopback") {
        return Some(Profile::clean(name));
    }
    let row = ROWS.iter().find(|r| r.name.eq_ignore_ascii_case(name))?;
    Some(Profile {
        name: name.to_string(),
        up: row.link(row.up_kbps),
        down: row.link(row.down_kbps),
    })
}

impl Row {
    /// One direction of this row, with that direction's bandwidth.
    fn link(&self, bandwidth_kbps: f64) -> LinkParams {
        LinkParams {
            delay_ms: self.delay_ms,
            jitter_ms: self.jitter_ms,
            loss_pct: self.loss_pct,
            burst_len: self.burst_len,
            reorder_pct: 0.0,
            bandwidth_kbps: Some(bandwidth_kbps),
            queue_ms: DEFAULT_QUEUE_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_listed_and_valid() {
        for name in PRESETS {
            let p = preset(name).expect("listed presets exist");
            assert_eq!(p.name, *name);
            p.validate().expect("presets are valid");
        }
        for row in ROWS {
            assert!(PRESETS.contains(&row.name), "{} missing from PRESETS", row.name);
        }
        assert_eq!(PRESETS.len(), ROWS.len() + 2);
    }

    #[test]
    fn rows_map_to_directions() {
        let edge = preset("EDGE").expect("case-insensitive");
        assert_eq!(edge.name, "EDGE");
        assert_eq!(edge.down.bandwidth_kbps, Some(200.0));
        assert_eq!(edge.up.bandwidth_kbps, Some(260.0));
        assert_eq!((edge.up.delay_ms, edge.down.delay_ms), (650.0, 650.0));
        assert_eq!((edge.up.loss_pct, edge.down.jitter_ms), (1.0, 100.0));
        let g4 = preset("4g").expect("4g");
        assert_eq!(g4.down.bandwidth_kbps, Some(100_000.0));
        assert_eq!(g4.up.bandwidth_kbps, Some(50_000.0));
        assert_eq!(g4.up.jitter_ms, 10.0);
        assert!(g4.up.burst_len > 1.0);
        assert_eq!(preset("wifi-lossy").expect("wifi").up.burst_len, 1.0);
        assert!(preset("good").expect("good").is_clean());
        assert!(preset("loopback").expect("loopback").is_clean());
        assert!(!g4.is_clean());
        assert!(preset("5g").is_none());
    }
}
