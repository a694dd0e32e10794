//! The machine-readable files: `calls.jsonl`, `timeseries.csv` and `summary.json`.

use super::ReportError;
use crate::record::{CallRecord, Sample, Summary};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The columns of `timeseries.csv`, in order: [`Sample`]'s fields. Written even when there is no row.
pub const CSV_COLUMNS: [&str; 11] = [
    "t_s",
    "calls_active",
    "calls_placed",
    "calls_completed",
    "calls_failed",
    "setup_rate_per_s",
    "mos_p50",
    "server_cpu_pct",
    "server_rss_mib",
    "server_participants",
    "server_packets_per_s",
];

/// Appends call records to a JSONL file as calls finish, one line each, flushed per line: a record is on disk
/// once [`JsonlWriter::write`] returns, and a run cut short keeps every call it finished.
#[derive(Debug)]
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
    lines: usize,
}

impl JsonlWriter {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> Result<JsonlWriter, ReportError> {
        let file = File::create(path).map_err(|e| ReportError::io("creating", path, e))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            lines: 0,
        })
    }

    /// Writes one record as a line, and flushes it.
    pub fn write(&mut self, record: &CallRecord) -> Result<(), ReportError> {
        let line = self.lines + 1;
        serde_json::to_writer(&mut self.out, record).map_err(|source| ReportError::Json {
            path: self.path.clone(),
            line,
            source,
        })?;
        self.out
            .write_all(b"\n")
            .and_then(|()| self.out.flush())
            .map_err(|e| ReportError::io("writing", &self.path, e))?;
        self.lines = line;
        Ok(())
    }

    /// Records written so far.
    pub fn lines(&self) -> usize {
        self.lines
    }
}

/// Reads every record of a JSONL file; blank lines are skipped, and an error names the line.
pub fn read_jsonl(path: &Path) -> Result<Vec<CallRecord>, ReportError> {
    let file = File::open(path).map_err(|e| ReportError::io("reading", path, e))?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| ReportError::io("reading", path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| ReportError::Json {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Writes the time series as CSV: a header of [`CSV_COLUMNS`], then a row per sample; a missing value is an empty
/// field.
pub fn write_csv(path: &Path, samples: &[Sample]) -> Result<(), ReportError> {
    let csv_err = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(|e| ReportError::io("creating", path, e))?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(BufWriter::new(file));
    w.write_record(CSV_COLUMNS).map_err(csv_err)?;
    for s in samples {
        w.serialize(s).map_err(csv_err)?;
    }
    w.flush().map_err(|e| ReportError::io("writing", path, e))
}

/// Writes the summary as pretty-printed JSON.
pub fn write_summary(path: &Path, summary: &Summary) -> Result<(), ReportError> {
    let json = serde_json::to_vec_pretty(summary).map_err(|source| ReportError::Json {
        path: path.to_path_buf(),
        line: 1,
        source,
    })?;
    std::fs::write(path, json).map_err(|e| ReportError::io("writing", path, e))
}
