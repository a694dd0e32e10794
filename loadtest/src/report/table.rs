//! The summary as rows of figures, printed on the terminal at the end of a run and shown in the HTML report.

use crate::record::{number, Outcome, OutcomeCounts, Stats, Summary};
use std::io::{self, Write};

/// Failure causes listed before the rest are folded into one line.
const MAX_CAUSES: usize = 8;

/// One figure of the summary.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// The heading it sits under.
    pub section: &'static str,
    /// What it is.
    pub name: String,
    /// Its value, with units.
    pub value: String,
}

/// Prints the summary: the figures by section, each threshold's verdict, then `PASSED` or `FAILED`.
pub fn print_summary(summary: &Summary, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{}", headline(summary))?;
    let rows = rows(summary);
    let width = rows.iter().map(|r| r.name.chars().count()).max().unwrap_or(0);
    let mut section = "";
    for r in &rows {
        if r.section != section {
            section = r.section;
            writeln!(out, "{section}")?;
        }
        writeln!(out, "  {:<width$}  {}", r.name, r.value)?;
    }
    print_verdicts(summary, out)
}

fn print_verdicts(summary: &Summary, out: &mut impl Write) -> io::Result<()> {
    if !summary.thresholds.is_empty() {
        writeln!(out, "Thresholds")?;
    }
    for t in &summary.thresholds {
        let verdict = if t.passed { "pass" } else { "FAIL" };
        let measured = t.measured_text();
        let bound = t.bound.symbol();
        writeln!(
            out,
            "  {verdict}  {} {bound} {}: measured {measured}",
            t.name,
            number(t.limit)
        )?;
    }
    let failed = summary.failed_thresholds().len();
    match failed {
        0 => writeln!(out, "PASSED"),
        1 => writeln!(out, "FAILED: 1 threshold"),
        n => writeln!(out, "FAILED: {n} thresholds"),
    }
}

/// `smoke · seed 1 · 2026-05-01T12:00:00Z · 34.2 s`.
pub(crate) fn headline(s: &Summary) -> String {
    format!(
        "{} · seed {} · {} · {} s",
        s.scenario,
        s.seed,
        s.started_at,
        number(s.duration_s)
    )
}

/// Every figure of the summary, in print order.
pub(crate) fn rows(s: &Summary) -> Vec<Row> {
    let mut rows = Vec::new();
    calls(s, &mut rows);
    setup(s, &mut rows);
    quality(s, &mut rows);
    video(s, &mut rows);
    server(s, &mut rows);
    capacity(s, &mut rows);
    causes(s, &mut rows);
    rows
}

/// Capacity mode: a row per level judged, then the highest that held.
fn capacity(s: &Summary, rows: &mut Vec<Row>) {
    const S: &str = "Capacity";
    let Some(c) = &s.capacity else { return };
    for l in &c.levels {
        push(rows, S, &format!("{} calls", l.target_calls), level(l));
    }
    let held = c
        .highest_held
        .as_ref()
        .map_or("none: the first level broke".into(), |l| {
            format!(
                "{} calls ({} concurrent on {} server cores: {} calls per core)",
                l.target_calls,
                opt(l.concurrent_calls),
                opt(l.server_cores),
                opt(l.calls_per_core)
            )
        });
    push(rows, S, "highest held", held);
}

/// `held · 98.7 concurrent · 0.45 cores · MOS p5 4.21 p50 4.3 · loss p95 0.1 %`, or what broke.
fn level(l: &crate::capacity::LevelResult) -> String {
    let verdict = if l.held {
        "held".to_string()
    } else {
        let broke: Vec<String> = l
            .thresholds
            .iter()
            .filter(|t| !t.passed)
            .map(|t| t.to_string())
            .collect();
        format!("BROKE: {}", broke.join(", "))
    };
    format!(
        "{verdict} · {} concurrent · {} cores · MOS p5 {} p50 {} · loss p95 {} % · {} calls judged",
        opt(l.concurrent_calls),
        opt(l.server_cores),
        opt(l.mos_p5),
        opt(l.mos_p50),
        opt(l.loss_p95_pct),
        l.judged_calls
    )
}

fn opt(x: Option<f64>) -> String {
    x.map_or("-".into(), number)
}

fn push(rows: &mut Vec<Row>, section: &'static str, name: &str, value: String) {
    rows.push(Row {
        section,
        name: name.to_string(),
        value,
    });
}

fn calls(s: &Summary, rows: &mut Vec<Row>) {
    const S: &str = "Calls";
    push(rows, S, "recorded", s.calls.to_string());
    push(rows, S, "planned", outcomes(&s.planned));
    push(rows, S, "ended", outcomes(&s.outcomes));
    let r = &s.results;
    push(
        rows,
        S,
        "results",
        format!("ok {}, failed {}, dropped {}", r.ok, r.failed, r.dropped),
    );
    push(rows, S, "setup success", opt_pct(s.setup_success_pct));
    let dropped = format!("{} of {} answered", opt_pct(s.dropped_pct), s.answered);
    push(rows, S, "dropped", dropped);
    if s.moves > 0 {
        let gap = spread(&s.move_gap_ms, "ms");
        push(
            rows,
            S,
            "moved to another node",
            format!("{} times; media gap {gap}", s.moves),
        );
    }
}

fn setup(s: &Summary, rows: &mut Vec<Row>) {
    const S: &str = "Setup";
    push(rows, S, "post-dial delay", spread(&s.post_dial_delay_ms, "ms"));
    push(
        rows,
        S,
        "answer → first audio",
        spread(&s.answer_to_first_audio_ms, "ms"),
    );
    push(rows, S, "ICE connect", spread(&s.ice_connect_ms, "ms"));
}

fn quality(s: &Summary, rows: &mut Vec<Row>) {
    const S: &str = "Quality";
    push(rows, S, "score", s.label.clone());
    let mos = s.mos.as_ref().map_or("no data".into(), |m| {
        format!(
            "p5 {} · p50 {} · p95 {} (n {})",
            number(m.p5),
            number(m.p50),
            number(m.p95),
            m.n
        )
    });
    push(rows, S, "MOS", mos);
    push(
        rows,
        S,
        "MOS ≥ 4.0",
        format!("{} of answered calls", opt_pct(s.mos_ge_4_pct)),
    );
    push(rows, S, "loss (Ppl)", p50_p95(&s.loss_pct, "%"));
    push(rows, S, "jitter", p50_p95(&s.jitter_ms, "ms"));
    push(rows, S, "mouth-to-ear", p50_p95(&s.mouth_to_ear_ms, "ms"));
}

/// The legs with video: frame rate, frame loss, freezes, keyframes; nothing at all in an audio-only run.
fn video(s: &Summary, rows: &mut Vec<Row>) {
    const S: &str = "Video";
    let Some(v) = &s.video else { return };
    push(rows, S, "legs", format!("{} with video", v.legs));
    let fps = v.fps.as_ref().map_or("no data".into(), |x| {
        format!("p5 {} · p50 {} fps", number(x.p5), number(x.p50))
    });
    push(rows, S, "frame rate shown", fps);
    push(rows, S, "frame loss", p50_p95(&v.frame_loss_pct, "%"));
    push(rows, S, "longest freeze", p50_p95(&v.longest_freeze_ms, "ms"));
    let keyframes = format!("{} per leg (mean)", number(v.keyframes_per_leg));
    push(rows, S, "keyframes received", keyframes);
}

fn server(s: &Summary, rows: &mut Vec<Row>) {
    const S: &str = "Server";
    let Some(u) = &s.server else {
        push(rows, S, "usage", "not sampled (no server process given)".into());
        return;
    };
    push(rows, S, "CPU", format!("{} s", number(u.cpu_seconds)));
    if let Some(us) = u.cpu_us_per_call_second.filter(|us| *us > 0.0) {
        let per_call = format!("{} µs per call-second (≈ {:.0} calls per core)", number(us), 1e6 / us);
        push(rows, S, "CPU per call", per_call);
    }
    push(rows, S, "peak RSS", format!("{} MiB", number(u.peak_rss_mib)));
    if let Some(kib) = u.rss_kib_per_participant {
        push(rows, S, "RSS per participant", format!("{} KiB", number(kib)));
    }
    let peak = format!("{} calls, {} participants", u.peak_calls, number(u.peak_participants));
    push(rows, S, "peak load", peak);
}

fn causes(s: &Summary, rows: &mut Vec<Row>) {
    const S: &str = "Failures";
    for c in s.failure_causes.iter().take(MAX_CAUSES) {
        push(rows, S, &c.cause, format!("{} calls", c.calls));
    }
    let rest: u32 = s.failure_causes.iter().skip(MAX_CAUSES).map(|c| c.calls).sum();
    if rest > 0 {
        let n = s.failure_causes.len() - MAX_CAUSES;
        push(rows, S, &format!("{n} other causes"), format!("{rest} calls"));
    }
}

/// `answered 18, busy 2`: the outcomes that occurred.
fn outcomes(c: &OutcomeCounts) -> String {
    let parts: Vec<String> = Outcome::ALL
        .iter()
        .filter(|o| c.get(o) > 0)
        .map(|o| format!("{} {}", o.as_str(), c.get(o)))
        .collect();
    if parts.is_empty() {
        return "none".into();
    }
    parts.join(", ")
}

fn opt_pct(p: Option<f64>) -> String {
    p.map_or("no data".into(), |p| format!("{} %", number(p)))
}

/// `p50 120.0 · p95 180.3 · p99 200.1 ms (n 20)`.
fn spread(st: &Option<Stats>, unit: &str) -> String {
    st.as_ref().map_or("no data".into(), |x| {
        format!(
            "p50 {} · p95 {} · p99 {} {unit} (n {})",
            number(x.p50),
            number(x.p95),
            number(x.p99),
            x.n
        )
    })
}

/// `p50 0.0 · p95 1.2 % (n 40 legs)`.
fn p50_p95(st: &Option<Stats>, unit: &str) -> String {
    st.as_ref().map_or("no data".into(), |x| {
        format!("p50 {} · p95 {} {unit} (n {} legs)", number(x.p50), number(x.p95), x.n)
    })
}
