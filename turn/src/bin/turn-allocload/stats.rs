//! Counters of a run and the report printed at its end.

use crate::args::{Args, Mode};
use crate::watch::Rss;
use std::collections::BTreeMap;
use std::time::Duration;

/// What happened during a run.
#[derive(Default, Debug)]
pub struct Stats {
    /// Jobs begun (one Allocate challenge each).
    pub started: u64,
    /// Jobs that ended well: a released allocation (alloc) or a 401 (unauth).
    pub completed: u64,
    /// Authenticated Allocates that succeeded (alloc).
    pub allocated: u64,
    /// Successful Allocates without XOR-RELAYED-ADDRESS.
    pub missing_relayed: u64,
    /// Failed jobs by "step reason", e.g. "allocate 486" or "refresh timeout".
    pub failures: BTreeMap<String, u64>,
    pub retransmits: u64,
    pub stale_nonces: u64,
    /// Jobs still in flight when the drain time ran out.
    pub abandoned: u64,
    /// Duration of each completed job, in microseconds.
    pub job_micros: Vec<u32>,
    /// The watched server's memory, with --watch-pid.
    pub rss: Option<Rss>,
}

impl Stats {
    pub fn fail(&mut self, what: String) {
        *self.failures.entry(what).or_default() += 1;
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum::<u64>() + self.abandoned
    }

    pub fn record_job(&mut self, took: Duration) {
        let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        self.job_micros.push(micros);
    }

    /// Prints the summary and the final `RESULT` line.
    pub fn report(&mut self, args: &Args, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let rate = self.completed as f64 / secs;
        let (p50, p99) = self.percentiles();
        let what = match args.mode {
            Mode::Alloc => "allocations completed (allocate + release)",
            Mode::Unauth => "401 answers to unauthenticated Allocates",
        };
        println!(
            "server {}  concurrency {}  retries {}  rto {} ms",
            args.server,
            args.concurrency,
            args.retries,
            args.rto.as_millis()
        );
        println!("jobs started     {}", self.started);
        println!("{what}: {}", self.completed);
        if args.mode == Mode::Alloc {
            println!("allocate successes {}", self.allocated);
        }
        println!("failures         {}", self.failed());
        for (why, n) in &self.failures {
            println!("  {why}: {n}");
        }
        if self.abandoned > 0 {
            println!("  still in flight at the end: {}", self.abandoned);
        }
        println!(
            "retransmits {}  stale nonces {}  successes without relayed address {}",
            self.retransmits, self.stale_nonces, self.missing_relayed
        );
        println!("elapsed          {secs:.3} s");
        println!("rate             {rate:.1} /s");
        println!("job time         p50 {p50} us  p99 {p99} us");
        let rss = self.rss.map_or_else(String::new, |r| {
            println!(
                "server VmRSS     start {} KiB  end {} KiB  peak {} KiB  growth {} KiB{}",
                r.start_kib,
                r.end_kib,
                r.peak_kib,
                r.end_kib.saturating_sub(r.start_kib),
                if r.capped { "  (stopped at the cap)" } else { "" }
            );
            format!(
                " rss_start_kib={} rss_end_kib={} rss_peak_kib={} rss_capped={}",
                r.start_kib,
                r.end_kib,
                r.peak_kib,
                u8::from(r.capped)
            )
        });
        println!(
            "RESULT mode={} started={} completed={} failed={} elapsed_s={secs:.3} per_sec={rate:.1} \
             retransmits={} p50_us={p50} p99_us={p99}{rss}",
            match args.mode {
                Mode::Alloc => "alloc",
                Mode::Unauth => "unauth",
            },
            self.started,
            self.completed,
            self.failed(),
            self.retransmits
        );
    }

    fn percentiles(&mut self) -> (u32, u32) {
        if self.job_micros.is_empty() {
            return (0, 0);
        }
        self.job_micros.sort_unstable();
        let at = |q: f64| {
            let i = ((self.job_micros.len() - 1) as f64 * q).round() as usize;
            self.job_micros[i]
        };
        (at(0.5), at(0.99))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_add_up_with_abandoned_jobs() {
        let mut s = Stats::default();
        s.fail("allocate 486".into());
        s.fail("allocate 486".into());
        s.fail("refresh timeout".into());
        s.abandoned = 2;
        assert_eq!(s.failed(), 5);
        assert_eq!(s.failures["allocate 486"], 2);
    }

    #[test]
    fn percentiles_of_recorded_jobs() {
        let mut s = Stats::default();
        for us in 1..=100 {
            s.record_job(Duration::from_micros(us));
        }
        assert_eq!(s.percentiles(), (51, 99));
    }
}
