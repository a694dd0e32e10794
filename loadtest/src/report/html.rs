//! `report.html`: one self-contained page (inline CSS and SVG; no script, font or image fetched) with the run's
//! verdict, its summary and its plots. Every text from the run is escaped.

use super::escape;
use super::svg::{self, Axes, BarGroup, Bin, Series, PALETTE};
use super::table::{headline, rows};
use crate::record::{number, CallRecord, Sample, Stats, Summary};

/// Points kept per time series; a longer run is thinned to every k-th sample.
const MAX_POINTS: usize = 1200;
/// Points kept per distribution curve.
const CDF_POINTS: usize = 200;
/// Calls listed in the worst-calls table.
const WORST_CALLS: usize = 10;

const CSS: &str = "\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1040px;\
padding:12px;color:#1a202c;background:#fff}\
h1{font-size:1.45em;margin:.2em 0;overflow-wrap:anywhere}\
h2{font-size:1.15em;margin:1.4em 0 .5em;padding-bottom:.2em;border-bottom:1px solid #e2e8f0}\
.meta{color:#4a5568;margin:.2em 0 .6em}\
.verdict{display:inline-block;padding:.25em .7em;border-radius:4px;font-weight:600}\
.pass{background:#e6ffed;color:#22543d}.fail{background:#fff0f0;color:#9b2c2c}\
.scroll{overflow-x:auto}\
table{border-collapse:collapse;width:100%;font-size:.93em}\
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #edf2f7;vertical-align:top}\
th.sec{background:#f7fafc;color:#2d3748}\
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,440px),1fr));gap:14px}\
figure{margin:0;border:1px solid #e2e8f0;border-radius:6px;padding:8px 8px 4px}\
figcaption{font-weight:600;font-size:.95em}figcaption small{display:block;font-weight:400;color:#4a5568}\
svg{width:100%;height:auto;display:block}\
footer{margin-top:2em;color:#4a5568;font-size:.85em}\
td.name{overflow-wrap:anywhere}\
@media (max-width:480px){body{font-size:13px;padding:8px}th,td{padding:.25em .3em}}";

/// The whole page.
pub fn render_html(records: &[CallRecord], samples: &[Sample], summary: &Summary) -> String {
    let mut page = String::with_capacity(64 * 1024);
    head(&mut page, summary);
    thresholds(&mut page, summary);
    summary_table(&mut page, summary);
    plots(&mut page, records, samples, summary);
    worst_calls(&mut page, records);
    page.push_str(&format!(
        "<footer>Files beside this one: calls.jsonl (a record per call), timeseries.csv (a row per second), \
         summary.json. Percentiles are nearest-rank. Scores: {}.</footer></body></html>\n",
        escape(&summary.label)
    ));
    page
}

fn head(page: &mut String, s: &Summary) {
    let title = escape(&format!(
        "hualu load test: {} (seed {}, {})",
        s.scenario, s.seed, s.started_at
    ));
    page.push_str(&format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title>\
         <style>{CSS}</style></head><body><header><h1>Load test: {}</h1><p class=\"meta\">{}</p>",
        escape(&s.scenario),
        escape(&format!("{} · {} calls", headline(s), s.calls))
    ));
    let failed = s.failed_thresholds();
    let (class, verdict) = match failed.len() {
        0 => ("pass", "PASSED".to_string()),
        _ => {
            let names: Vec<&str> = failed.iter().map(|t| t.name.as_str()).collect();
            ("fail", format!("FAILED: {}", names.join(", ")))
        }
    };
    page.push_str(&format!(
        "<p class=\"verdict {class}\">{}</p></header>",
        escape(&verdict)
    ));
}

fn thresholds(page: &mut String, s: &Summary) {
    page.push_str("<section><h2>Thresholds</h2>");
    if s.thresholds.is_empty() {
        page.push_str("<p>No thresholds set.</p></section>");
        return;
    }
    page.push_str(
        "<div class=\"scroll\"><table><tr><th>verdict</th><th>threshold</th><th>limit</th><th>measured</th></tr>",
    );
    for t in &s.thresholds {
        let (class, verdict) = if t.passed { ("pass", "pass") } else { ("fail", "FAIL") };
        let measured = t.measured_text();
        page.push_str(&format!(
            "<tr class=\"{class}\"><td><strong>{verdict}</strong></td><td class=\"name\">{}</td><td class=\"num\">{} {}</td><td class=\"num\">{}</td></tr>",
            escape(&t.name),
            t.bound.symbol(),
            number(t.limit),
            escape(&measured)
        ));
    }
    page.push_str("</table></div></section>");
}

fn summary_table(page: &mut String, s: &Summary) {
    page.push_str("<section><h2>Summary</h2><div class=\"scroll\"><table>");
    let mut section = "";
    for r in rows(s) {
        if r.section != section {
            section = r.section;
            page.push_str(&format!(
                "<tr><th class=\"sec\" colspan=\"2\">{}</th></tr>",
                escape(section)
            ));
        }
        page.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&r.name),
            escape(&r.value)
        ));
    }
    page.push_str("</table></div></section>");
}

fn plots(page: &mut String, records: &[CallRecord], samples: &[Sample], s: &Summary) {
    page.push_str("<section><h2>Plots</h2><div class=\"grid\">");
    load_plots(page, samples);
    setup_plot(page, s);
    quality_plots(page, records, samples, s);
    video_plots(page, records, s);
    server_plots(page, samples, s);
    capacity_plots(page, s);
    page.push_str("</div></section>");
}

/// Capacity mode: each level's MOS and server CPU against its target.
fn capacity_plots(page: &mut String, s: &Summary) {
    let Some(c) = &s.capacity else { return };
    let by_level = |name: &str, color: usize, f: &dyn Fn(&crate::capacity::LevelResult) -> Option<f64>| Series {
        name: name.to_string(),
        color: PALETTE[color % PALETTE.len()],
        points: c
            .levels
            .iter()
            .filter_map(|l| Some((f64::from(l.target_calls), f(l)?)))
            .collect(),
    };
    let held = c.highest_held.as_ref().map_or("no level held".to_string(), |l| {
        format!("highest level held: {} calls", l.target_calls)
    });
    let axes = Axes {
        title: "MOS by capacity level",
        x_label: "concurrent calls (level)",
        y_label: "MOS",
    };
    let mos = [
        by_level("MOS p5", 0, &|l| l.mos_p5),
        by_level("MOS p50", 1, &|l| l.mos_p50),
    ];
    figure(page, axes.title, &held, svg::lines(&axes, &mos));
    let axes = Axes {
        title: "Server CPU by capacity level",
        x_label: "concurrent calls (level)",
        y_label: "cores",
    };
    let cores = [by_level("server cores", 2, &|l| l.server_cores)];
    figure(
        page,
        axes.title,
        "mean over each level's steady part",
        svg::lines(&axes, &cores),
    );
}

fn figure(page: &mut String, caption: &str, note: &str, svg: String) {
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("<small>{}</small>", escape(note))
    };
    page.push_str(&format!(
        "<figure><figcaption>{}{note}</figcaption>{svg}</figure>",
        escape(caption)
    ));
}

fn load_plots(page: &mut String, samples: &[Sample]) {
    let active = series("active calls", 0, samples, |s| Some(f64::from(s.calls_active)));
    let axes = Axes {
        title: "Concurrent calls over time",
        x_label: "time (s)",
        y_label: "calls",
    };
    figure(
        page,
        axes.title,
        "calls placed and not yet ended",
        svg::lines(&axes, &[active]),
    );
    let rate = series("placed per second", 1, samples, |s| Some(s.setup_rate_per_s));
    let axes = Axes {
        title: "Call setup rate over time",
        x_label: "time (s)",
        y_label: "calls / s",
    };
    figure(
        page,
        axes.title,
        "calls placed in each second",
        svg::lines(&axes, &[rate]),
    );
}

fn setup_plot(page: &mut String, s: &Summary) {
    let group = |label: &str, st: &Option<Stats>| BarGroup {
        label: label.to_string(),
        values: match st {
            Some(x) => vec![Some(x.p50), Some(x.p95), Some(x.p99)],
            None => vec![None; 3],
        },
    };
    let groups = [
        group("post-dial delay", &s.post_dial_delay_ms),
        group("answer → audio", &s.answer_to_first_audio_ms),
        group("ICE connect", &s.ice_connect_ms),
    ];
    let axes = Axes {
        title: "Setup latency percentiles",
        x_label: "",
        y_label: "ms",
    };
    let keys = [("p50", PALETTE[0]), ("p95", PALETTE[1]), ("p99", PALETTE[2])];
    let note = "invite → ringing; answer → first decoded audio; join → ICE connected";
    figure(page, axes.title, note, svg::bars(&axes, &keys, &groups));
}

fn quality_plots(page: &mut String, records: &[CallRecord], samples: &[Sample], s: &Summary) {
    let mos: Vec<f64> = records
        .iter()
        .filter(|c| c.is_established())
        .filter_map(|c| c.mos)
        .collect();
    let axes = Axes {
        title: "MOS of answered calls",
        x_label: "MOS (each call's worst leg)",
        y_label: "calls",
    };
    figure(
        page,
        axes.title,
        &s.label,
        svg::histogram(&axes, &mos_bins(&mos), Some((4.0, "4.0"))),
    );
    let p50 = series("MOS p50", 2, samples, |s| s.mos_p50);
    let axes = Axes {
        title: "Median MOS over time",
        x_label: "time (s)",
        y_label: "MOS",
    };
    figure(
        page,
        axes.title,
        "over the calls ended so far",
        svg::lines(&axes, &[p50]),
    );
    let legs = || records.iter().flat_map(|c| c.legs.iter());
    let loss = cdf("loss", 1, legs().map(|l| l.loss_pct));
    let axes = Axes {
        title: "Packet loss over legs",
        x_label: "loss incl. late discards, Ppl (%)",
        y_label: "legs at or below (%)",
    };
    figure(page, axes.title, "cumulative distribution", svg::lines(&axes, &[loss]));
    let jitter = cdf("jitter", 3, legs().map(|l| l.jitter_ms));
    let axes = Axes {
        title: "Jitter over legs",
        x_label: "interarrival jitter (ms)",
        y_label: "legs at or below (%)",
    };
    figure(
        page,
        axes.title,
        "cumulative distribution",
        svg::lines(&axes, &[jitter]),
    );
}

/// The legs with video: the distributions of their frame rate and longest freeze; nothing in an audio-only run.
fn video_plots(page: &mut String, records: &[CallRecord], s: &Summary) {
    let Some(v) = &s.video else { return };
    let video = || {
        records
            .iter()
            .flat_map(|c| c.legs.iter())
            .filter_map(|l| l.video.as_ref())
    };
    let fps = cdf("frame rate", 2, video().map(|v| v.fps));
    let axes = Axes {
        title: "Video frame rate over legs",
        x_label: "frames shown a second",
        y_label: "legs at or below (%)",
    };
    let note = format!("cumulative distribution over {} video legs", v.legs);
    figure(page, axes.title, &note, svg::lines(&axes, &[fps]));
    let freeze = cdf("longest freeze", 1, video().map(|v| v.longest_freeze_ms));
    let axes = Axes {
        title: "Longest video freeze over legs",
        x_label: "longest time between two frames shown (ms)",
        y_label: "legs at or below (%)",
    };
    figure(page, axes.title, &note, svg::lines(&axes, &[freeze]));
}

fn server_plots(page: &mut String, samples: &[Sample], s: &Summary) {
    let per_call = match &s.server {
        Some(u) => {
            let cpu = u
                .cpu_us_per_call_second
                .map_or("n/a".into(), |us| format!("{} µs CPU per call-second", number(us)));
            let rss = u
                .rss_kib_per_participant
                .map_or("n/a".into(), |k| format!("{} KiB RSS per participant", number(k)));
            format!("{cpu}; {rss}")
        }
        None => "servers not sampled".to_string(),
    };
    let cpu = series("CPU", 0, samples, |s| s.server_cpu_pct);
    let axes = Axes {
        title: "Server CPU over time",
        x_label: "time (s)",
        y_label: "% of one core",
    };
    figure(page, axes.title, &per_call, svg::lines(&axes, &[cpu]));
    let cpu_per_call = series("CPU per call", 1, samples, |s| {
        let cpu = s.server_cpu_pct?;
        (s.calls_active > 0).then(|| cpu / f64::from(s.calls_active))
    });
    let axes = Axes {
        title: "Server CPU per active call",
        x_label: "time (s)",
        y_label: "% of one core per call",
    };
    figure(page, axes.title, "", svg::lines(&axes, &[cpu_per_call]));
    let rss = series("RSS", 2, samples, |s| s.server_rss_mib);
    let axes = Axes {
        title: "Server memory over time",
        x_label: "time (s)",
        y_label: "RSS (MiB)",
    };
    figure(
        page,
        axes.title,
        "resident set, summed over processes",
        svg::lines(&axes, &[rss]),
    );
}

/// One time series, thinned to at most [`MAX_POINTS`] points.
fn series(name: &str, color: usize, samples: &[Sample], value: impl Fn(&Sample) -> Option<f64>) -> Series {
    let stride = samples.len().div_ceil(MAX_POINTS).max(1);
    Series {
        name: name.to_string(),
        color: PALETTE[color % PALETTE.len()],
        points: samples
            .iter()
            .step_by(stride)
            .filter_map(|s| Some((s.t_s, value(s)?)))
            .collect(),
    }
}

/// The empirical CDF of `values` in percent, at most [`CDF_POINTS`] + 1 points.
pub(crate) fn cdf(name: &str, color: usize, values: impl Iterator<Item = f64>) -> Series {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let last = n.saturating_sub(1);
    let steps = CDF_POINTS.min(last);
    let points = (0..=steps)
        .filter_map(|i| {
            let idx = (i * last).checked_div(steps).unwrap_or(last);
            Some((*v.get(idx)?, 100.0 * (idx + 1) as f64 / n as f64))
        })
        .collect();
    Series {
        name: name.to_string(),
        color: PALETTE[color % PALETTE.len()],
        points,
    }
}

/// MOS in 0.1 bins from 1.0 to 4.5; lower values count in the first bin, 4.5 and up in the last.
pub(crate) fn mos_bins(mos: &[f64]) -> Vec<Bin> {
    let mut bins: Vec<Bin> = (10..45)
        .map(|i| Bin {
            lo: f64::from(i) / 10.0,
            hi: f64::from(i + 1) / 10.0,
            count: 0,
        })
        .collect();
    let last = bins.len() - 1;
    for m in mos.iter().filter(|m| m.is_finite()) {
        // The epsilon keeps a value on a bin edge (4.3 is 3.2999… tenths above 1.0) in the bin it starts.
        let i = (((m - 1.0) * 10.0) + 1e-9).floor().clamp(0.0, last as f64) as usize;
        bins[i].count += 1;
    }
    bins
}

/// The established calls with the lowest MOS, with their worst leg's figures.
fn worst_calls(page: &mut String, records: &[CallRecord]) {
    let mut scored: Vec<&CallRecord> = records
        .iter()
        .filter(|c| c.is_established() && c.mos.is_some())
        .collect();
    scored.sort_by(|a, b| a.mos.unwrap_or(f64::NAN).total_cmp(&b.mos.unwrap_or(f64::NAN)));
    if scored.is_empty() {
        return;
    }
    page.push_str(
        "<section><h2>Lowest-scoring calls</h2><div class=\"scroll\"><table><tr><th>call</th><th>networks</th>\
         <th>MOS</th><th>R</th><th>loss %</th><th>jitter ms</th><th>mouth-to-ear ms</th></tr>",
    );
    for c in scored.into_iter().take(WORST_CALLS) {
        let leg = c.legs.iter().filter(|l| l.mos.is_some()).min_by(|a, b| {
            let key = |l: &crate::record::Leg| l.mos.unwrap_or(f64::NAN);
            key(a).total_cmp(&key(b))
        });
        let id = c.call_id.clone().unwrap_or_else(|| format!("#{}", c.index));
        let opt = |x: Option<f64>| x.map_or("–".to_string(), number);
        let (nets, loss, jitter, m2e) = leg.map_or_else(
            || ("–".to_string(), "–".to_string(), "–".to_string(), "–".to_string()),
            |l| {
                let nets = format!("{} → {}", l.profile_from, l.profile_to);
                (nets, number(l.loss_pct), number(l.jitter_ms), number(l.mouth_to_ear_ms))
            },
        );
        page.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&id),
            escape(&nets),
            opt(c.mos),
            opt(c.r),
            loss,
            jitter,
            m2e
        ));
    }
    page.push_str("</table></div></section>");
}
