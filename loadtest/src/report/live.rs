//! Progress while a run goes: a bar over the scenario's duration and a line of live counters, on stderr.

use crate::record::{number, Sample};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// The bar, then the counters on their own line.
const TEMPLATE: &str = "{spinner} {elapsed_precise} [{bar:32}] {pos}/{len} s\n  {msg}";

/// The live display. Hidden, drawing nothing, when stderr is not a terminal or when told to be quiet.
#[derive(Debug, Clone)]
pub struct Live {
    bar: ProgressBar,
}

impl Live {
    /// A display for a run that places calls for `duration_s` seconds.
    pub fn new(duration_s: f64, quiet: bool) -> Live {
        let len = duration_s.max(0.0).ceil() as u64;
        if quiet || !std::io::stderr().is_terminal() {
            return Live {
                bar: ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden()),
            };
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        // The template is a constant; should indicatif ever reject it, the default bar still shows progress.
        let style = ProgressStyle::with_template(TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        bar.enable_steady_tick(Duration::from_millis(250));
        bar.set_message("connecting");
        Live { bar }
    }

    /// Shows one second's sample: the bar advances to its time, the counters line is replaced.
    pub fn update(&self, s: &Sample) {
        let len = self.bar.length().unwrap_or(0);
        self.bar.set_position((s.t_s.max(0.0) as u64).min(len));
        let mut msg = counters(s);
        if s.t_s > len as f64 {
            msg.push_str(" · waiting for calls to end");
        }
        self.bar.set_message(msg);
    }

    /// Clears the display (the summary is printed after it).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Whether nothing is drawn.
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }
}

/// The counters line: `active 12 · placed 40 · 2.0/s · failed 1 · MOS p50 4.31`.
pub fn counters(s: &Sample) -> String {
    let mos = s.mos_p50.map_or("–".to_string(), |m| format!("{m:.2}"));
    format!(
        "active {} · placed {} · {}/s · failed {} · MOS p50 {mos}",
        s.calls_active,
        s.calls_placed,
        number(s.setup_rate_per_s),
        s.calls_failed
    )
}
