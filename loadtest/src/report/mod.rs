//! A run's outputs, from the records in [`crate::record`]:
//!
//! - `calls.jsonl`: one [`CallRecord`] a line, streamed by [`JsonlWriter`] as calls finish, then rewritten in plan
//!   order by [`write_all`];
//! - `timeseries.csv`: one [`Sample`] a row, a row a second;
//! - `summary.json`: the [`Summary`], which echoes the seed and holds the threshold verdicts;
//! - `report.html`: one self-contained page (inline CSS and SVG, no script, nothing fetched) with the summary, the
//!   verdicts and the plots;
//! - on the terminal, [`Live`] progress while running and [`print_summary`] at the end.
//!
//! ```no_run
//! # use hualu_loadtest::{record::*, report::*};
//! # fn demo(dir: &std::path::Path, records: Vec<CallRecord>, samples: Vec<Sample>, s: Summary) -> Result<(), ReportError> {
//! let mut jsonl = JsonlWriter::create(&dir.join("calls.jsonl"))?;
//! for r in &records {
//!     jsonl.write(r)?; // as each call finishes
//! }
//! write_all(dir, &records, &samples, &s)?;
//! print_summary(&s, &mut std::io::stdout()).map_err(|source| ReportError::io("printing", "stdout", source))?;
//! # Ok(()) }
//! ```

mod files;
mod html;
mod live;
mod svg;
mod table;
mod thresholds;

#[cfg(test)]
mod tests;

pub use files::{read_jsonl, write_csv, write_summary, JsonlWriter, CSV_COLUMNS};
pub use html::render_html;
pub use live::{counters, Live};
pub use table::print_summary;

use crate::record::{CallRecord, Sample, Summary};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes every file of a run into `dir` (created if missing). `calls.jsonl` is rewritten whole, in the order of
/// `records`, replacing the one [`JsonlWriter`] streamed during the run.
pub fn write_all(
    dir: &Path,
    records: &[CallRecord],
    samples: &[Sample],
    summary: &Summary,
) -> Result<Paths, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io("creating", dir, e))?;
    let paths = Paths::in_dir(dir);
    let mut jsonl = JsonlWriter::create(&paths.calls)?;
    for r in records {
        jsonl.write(r)?;
    }
    write_csv(&paths.timeseries, samples)?;
    write_summary(&paths.summary, summary)?;
    let html = render_html(records, samples, summary);
    std::fs::write(&paths.html, html).map_err(|e| ReportError::io("writing", &paths.html, e))?;
    Ok(paths)
}

/// Where [`write_all`] put each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `calls.jsonl`.
    pub calls: PathBuf,
    /// `timeseries.csv`.
    pub timeseries: PathBuf,
    /// `summary.json`.
    pub summary: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
}

impl Paths {
    /// The file names inside `dir`.
    pub fn in_dir(dir: &Path) -> Paths {
        Paths {
            calls: dir.join("calls.jsonl"),
            timeseries: dir.join("timeseries.csv"),
            summary: dir.join("summary.json"),
            html: dir.join("report.html"),
        }
    }
}

/// Why a report file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or folder could not be created, written or read.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done: `creating`, `writing`, `reading`.
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A record or the summary could not be written as JSON, or a line of `calls.jsonl` could not be read back.
    #[error("JSON in {}, line {line}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The 1-based line (1 for a whole-file document).
        line: usize,
        /// The parser's or serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The time series could not be written as CSV.
    #[error("CSV in {}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV writer's error.
        #[source]
        source: csv::Error,
    },
}

impl ReportError {
    /// An I/O error while doing `op` on `path`.
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> ReportError {
        ReportError::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// The wall-clock time now, RFC 3339 in UTC to the second (`2026-05-01T12:34:56Z`), for [`Summary::started_at`].
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch as RFC 3339 in UTC.
pub fn rfc3339(unix_secs: u64) -> String {
    let (days, secs) = (unix_secs / 86_400, unix_secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's `civil_from_days`, for
/// non-negative days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// `s` with the five HTML-special characters escaped, safe in text and in quoted attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
