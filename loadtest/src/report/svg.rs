//! Small inline SVG charts for the HTML report: lines over x, grouped bars and histograms. Hand-written rather than
//! from a plotting crate: four chart shapes are a few hundred lines, the output stays small and script-free, and
//! the report needs nothing at run time. Sizes are viewBox units, so a chart scales to its container's width.
//! Every text is escaped.

use super::escape;

/// The viewBox: wide enough for a desktop column, legible when scaled to a 360 px phone.
const W: f64 = 440.0;
const H: f64 = 260.0;
/// Margins around the plot area: tick labels on the left and below, the legend above.
const LEFT: f64 = 54.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 42.0;

/// Series colours, in order.
pub(crate) const PALETTE: [&str; 4] = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1"];

/// One line of a line chart.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Its legend entry.
    pub name: String,
    /// Its colour.
    pub color: &'static str,
    /// Its points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// What the axes say.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Axes<'a> {
    /// What the chart shows (the SVG's accessible title).
    pub title: &'a str,
    /// The x axis' label, with unit.
    pub x_label: &'a str,
    /// The y axis' label, with unit.
    pub y_label: &'a str,
}

/// One bin of a histogram: `[lo, hi)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bin {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Values in it.
    pub count: u64,
}

/// A group of bars: one bar per series, `None` where the value is missing.
#[derive(Debug, Clone)]
pub(crate) struct BarGroup {
    /// Its label under the axis.
    pub label: String,
    /// Its values, one per series.
    pub values: Vec<Option<f64>>,
}

/// A line chart; both axes include zero.
pub(crate) fn lines(axes: &Axes, series: &[Series]) -> String {
    let all = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
    };
    let Some(x) = Scale::nice(all().map(|p| p.0).chain([0.0])) else {
        return empty(axes);
    };
    let Some(y) = Scale::nice(all().map(|p| p.1).chain([0.0])) else {
        return empty(axes);
    };
    if all().next().is_none() {
        return empty(axes);
    }
    let mut out = open(axes);
    frame(&mut out, axes, &x, &y);
    for s in series {
        let d: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(px, py)| format!("{:.1},{:.1}", x.to_px(px), y.to_py(py)))
            .collect();
        if !d.is_empty() {
            let points = d.join(" ");
            let color = s.color;
            out.push_str(&format!(
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{points}"/>"#
            ));
        }
    }
    let names: Vec<(&str, &str)> = series.iter().map(|s| (s.name.as_str(), s.color)).collect();
    legend(&mut out, &names);
    out.push_str("</svg>");
    out
}

/// Grouped bars, one colour per series, each bar labelled with its value; y includes zero.
pub(crate) fn bars(axes: &Axes, series: &[(&str, &'static str)], groups: &[BarGroup]) -> String {
    let values = || {
        groups
            .iter()
            .flat_map(|g| g.values.iter().flatten())
            .filter(|v| v.is_finite())
    };
    let Some(y) = Scale::nice(values().copied().chain([0.0])) else {
        return empty(axes);
    };
    if groups.is_empty() || series.is_empty() {
        return empty(axes);
    }
    let mut out = open(axes);
    let x = Scale::exact(0.0, groups.len() as f64, 1.0);
    frame_y(&mut out, axes, &y);
    let gw = (W - LEFT - RIGHT) / groups.len() as f64;
    let bw = gw * 0.7 / series.len() as f64;
    for (gi, g) in groups.iter().enumerate() {
        let gx = x.to_px(gi as f64);
        let label = escape(&g.label);
        let (cx, ty) = (gx + gw / 2.0, H - BOTTOM + 16.0);
        out.push_str(&format!(
            r#"<text x="{cx:.1}" y="{ty:.1}" text-anchor="middle">{label}</text>"#
        ));
        for (si, (v, (_, color))) in g.values.iter().zip(series).enumerate() {
            let bx = gx + gw * 0.15 + bw * si as f64;
            bar(&mut out, &y, bx, bw, *v, color);
        }
    }
    legend(&mut out, series);
    out.push_str("</svg>");
    out
}

/// A histogram with a dashed vertical marker (e.g. MOS 4.0); the x axis spans the bins exactly.
pub(crate) fn histogram(axes: &Axes, bins: &[Bin], marker: Option<(f64, &str)>) -> String {
    let (Some(first), Some(last)) = (bins.first(), bins.last()) else {
        return empty(axes);
    };
    let Some(y) = Scale::nice(bins.iter().map(|b| b.count as f64).chain([1.0])) else {
        return empty(axes);
    };
    let x = Scale::exact(first.lo, last.hi, Scale::step_for(last.hi - first.lo, 7.0));
    let mut out = open(axes);
    frame(&mut out, axes, &x, &y);
    for b in bins.iter().filter(|b| b.count > 0) {
        let (x0, x1) = (x.to_px(b.lo), x.to_px(b.hi));
        let (y0, y1) = (y.to_py(b.count as f64), y.to_py(0.0));
        let (w, h) = ((x1 - x0 - 1.0).max(0.5), y1 - y0);
        let tip = format!("{}–{}: {}", b.lo, b.hi, b.count);
        out.push_str(&format!(
            r#"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" fill="{}"><title>{}</title></rect>"#,
            PALETTE[0],
            escape(&tip)
        ));
    }
    if let Some((mx, text)) = marker {
        let px = x.to_px(mx);
        let (top, bottom) = (TOP, H - BOTTOM);
        out.push_str(&format!(
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{top:.1}" y2="{bottom:.1}" stroke="#c53030" stroke-dasharray="4 3"/>"##
        ));
        let label = escape(text);
        out.push_str(&format!(
            r##"<text x="{:.1}" y="{:.1}" fill="#c53030" text-anchor="end">{label}</text>"##,
            px - 3.0,
            top + 12.0
        ));
    }
    out.push_str("</svg>");
    out
}

/// A chart with nothing to show: its frame and `no data`.
fn empty(axes: &Axes) -> String {
    let mut out = open(axes);
    let (cx, cy) = (W / 2.0, H / 2.0);
    out.push_str(&format!(
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#ccc"/><text x="{cx}" y="{cy}" text-anchor="middle" fill="#777">no data</text></svg>"##,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    ));
    out
}

fn open(axes: &Axes) -> String {
    let title = escape(axes.title);
    format!(
        r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="{title}" font-family="system-ui,sans-serif" font-size="12"><title>{title}</title>"#
    )
}

/// Both axes: grid lines and tick labels, and the axis labels.
fn frame(out: &mut String, axes: &Axes, x: &Scale, y: &Scale) {
    frame_y(out, axes, y);
    let ty = H - BOTTOM + 16.0;
    for t in &x.ticks {
        let px = x.to_px(*t);
        let label = x.label(*t);
        out.push_str(&format!(
            r#"<text x="{px:.1}" y="{ty:.1}" text-anchor="middle">{label}</text>"#
        ));
    }
    let (cx, ly) = (LEFT + (W - LEFT - RIGHT) / 2.0, H - 6.0);
    let label = escape(axes.x_label);
    out.push_str(&format!(
        r#"<text x="{cx:.1}" y="{ly:.1}" text-anchor="middle">{label}</text>"#
    ));
}

/// The y axis: horizontal grid lines with tick labels, the axis line, the rotated label.
fn frame_y(out: &mut String, axes: &Axes, y: &Scale) {
    let (x0, x1) = (LEFT, W - RIGHT);
    for t in &y.ticks {
        let py = y.to_py(*t);
        let label = y.label(*t);
        out.push_str(&format!(
            r##"<line x1="{x0}" x2="{x1}" y1="{py:.1}" y2="{py:.1}" stroke="#e2e2e2"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            x0 - 4.0,
            py + 4.0
        ));
    }
    let base = H - BOTTOM;
    out.push_str(&format!(
        r##"<line x1="{x0}" x2="{x1}" y1="{base}" y2="{base}" stroke="#888"/>"##
    ));
    let (lx, ly) = (13.0, TOP + (H - TOP - BOTTOM) / 2.0);
    let label = escape(axes.y_label);
    out.push_str(&format!(
        r#"<text x="{lx}" y="{ly:.1}" text-anchor="middle" transform="rotate(-90 {lx} {ly:.1})">{label}</text>"#
    ));
}

/// One bar from zero to `v`, its value above it; `n/a` where there is none.
fn bar(out: &mut String, y: &Scale, bx: f64, bw: f64, v: Option<f64>, color: &str) {
    let cx = bx + bw / 2.0;
    let Some(v) = v.filter(|v| v.is_finite()) else {
        let ty = H - BOTTOM - 4.0;
        out.push_str(&format!(
            r##"<text x="{cx:.1}" y="{ty:.1}" text-anchor="middle" fill="#777">n/a</text>"##
        ));
        return;
    };
    let (top, base) = (y.to_py(v.max(0.0)), y.to_py(0.0));
    let value = compact(v);
    out.push_str(&format!(
        r#"<rect x="{bx:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{value}</title></rect>"#,
        (bw - 2.0).max(1.0),
        base - top
    ));
    let ty = top - 3.0;
    out.push_str(&format!(
        r#"<text x="{cx:.1}" y="{ty:.1}" text-anchor="middle" font-size="10">{value}</text>"#
    ));
}

/// A bar's value in at most four significant digits: `1234`, `527.8`, `46.33`, `0.25`.
fn compact(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// The legend, left to right above the plot.
fn legend(out: &mut String, entries: &[(&str, &str)]) {
    if entries.len() < 2 {
        return;
    }
    let mut x = LEFT;
    for (name, color) in entries {
        let label = escape(name);
        out.push_str(&format!(
            r#"<rect x="{x:.1}" y="9" width="10" height="10" fill="{color}"/><text x="{:.1}" y="18">{label}</text>"#,
            x + 14.0
        ));
        x += 24.0 + 6.8 * name.chars().count() as f64;
    }
}

/// A linear axis: its range, mapped onto the plot area, and its ticks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scale {
    lo: f64,
    hi: f64,
    step: f64,
    ticks: Vec<f64>,
}

impl Scale {
    /// About five round ticks (1, 2 or 5 × 10ⁿ apart) covering every finite value; `None` when there is none.
    pub fn nice(values: impl IntoIterator<Item = f64>) -> Option<Scale> {
        let (lo, hi) = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(None, |acc: Option<(f64, f64)>, v| {
                Some(acc.map_or((v, v), |(a, b)| (a.min(v), b.max(v))))
            })?;
        let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 1.0, hi + 1.0) };
        let step = Scale::step_for(hi - lo, 5.0);
        let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        Some(Scale::exact(lo, hi, step))
    }

    /// The range `[lo, hi]` as given, with ticks every `step` inside it.
    pub fn exact(lo: f64, hi: f64, step: f64) -> Scale {
        let first = (lo / step - 1e-9).ceil();
        let count = ((hi / step + 1e-9).floor() - first).max(0.0) as usize;
        let ticks = (0..=count).map(|i| (first + i as f64) * step).collect();
        Scale { lo, hi, step, ticks }
    }

    /// A round step (1, 2 or 5 × 10ⁿ) giving about `target` ticks over `span`.
    pub fn step_for(span: f64, target: f64) -> f64 {
        let raw = (span / target).max(f64::MIN_POSITIVE);
        let mag = 10f64.powf(raw.log10().floor());
        let norm = raw / mag;
        let nice = match norm {
            n if n <= 1.0 => 1.0,
            n if n <= 2.0 => 2.0,
            n if n <= 5.0 => 5.0,
            _ => 10.0,
        };
        nice * mag
    }

    fn fraction(&self, v: f64) -> f64 {
        (v - self.lo) / (self.hi - self.lo)
    }

    fn to_px(&self, v: f64) -> f64 {
        LEFT + self.fraction(v) * (W - LEFT - RIGHT)
    }

    fn to_py(&self, v: f64) -> f64 {
        H - BOTTOM - self.fraction(v) * (H - TOP - BOTTOM)
    }

    /// A tick's label, with as many decimals as the step needs.
    fn label(&self, v: f64) -> String {
        let decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10()).ceil().min(4.0) as usize
        };
        let v = if v.abs() < self.step * 1e-6 { 0.0 } else { v };
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_scales_use_round_steps_and_cover_the_data() {
        let s = Scale::nice([0.0, 37.0]).expect("a scale");
        assert_eq!(s.step, 10.0);
        assert_eq!((s.lo, s.hi), (0.0, 40.0));
        assert_eq!(s.ticks, vec![0.0, 10.0, 20.0, 30.0, 40.0]);
        let s = Scale::nice([0.0, 0.7]).expect("a scale");
        assert_eq!(s.step, 0.2);
        assert_eq!(s.label(0.4), "0.4");
        let flat = Scale::nice([5.0, 5.0]).expect("a scale");
        assert!(flat.lo < 5.0 && flat.hi > 5.0);
        assert!(Scale::nice([f64::NAN]).is_none());
    }

    #[test]
    fn the_mos_axis_is_ticked_every_half_point() {
        let s = Scale::exact(1.0, 4.5, Scale::step_for(3.5, 7.0));
        assert_eq!(s.ticks, vec![1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]);
        assert_eq!(s.label(4.0), "4.0");
    }

    #[test]
    fn charts_escape_their_text_and_say_when_empty() {
        let axes = Axes {
            title: "a <b> & c",
            x_label: "x",
            y_label: "y",
        };
        let svg = lines(&axes, &[]);
        assert!(svg.contains("a &lt;b&gt; &amp; c") && !svg.contains("<b>"));
        assert!(svg.contains("no data"));
        let series = Series {
            name: "s".into(),
            color: PALETTE[0],
            points: vec![(0.0, 1.0), (1.0, 2.0)],
        };
        assert!(lines(&axes, &[series]).contains("<polyline"));
    }
}
