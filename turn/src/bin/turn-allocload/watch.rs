//! Watches the server's resident memory (VmRSS in /proc/PID/status) during a run, and stops the run if it
//! passes a cap: some servers keep state for every unauthenticated source, and a flood must not take the
//! machine's memory.

use std::time::{Duration, Instant};

/// How often the server's memory is read.
const EVERY: Duration = Duration::from_millis(100);

/// Resident memory seen during the run, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    pub start_kib: u64,
    pub end_kib: u64,
    pub peak_kib: u64,
    /// The run stopped early because the server passed the cap.
    pub capped: bool,
}

pub struct Watch {
    pid: u32,
    cap_kib: u64,
    next: Instant,
    pub rss: Rss,
}

impl Watch {
    pub fn new(pid: u32, cap_mib: u64) -> Option<Self> {
        let start = read_rss_kib(pid)?;
        Some(Self {
            pid,
            cap_kib: cap_mib.saturating_mul(1024),
            next: Instant::now() + EVERY,
            rss: Rss {
                start_kib: start,
                end_kib: start,
                peak_kib: start,
                capped: false,
            },
        })
    }

    /// Reads the memory when due; true when the cap is passed (the run should stop starting jobs).
    pub fn over_cap(&mut self, now: Instant) -> bool {
        if now >= self.next {
            self.next = now + EVERY;
            self.sample();
        }
        self.rss.capped
    }

    /// Takes a reading now (also the final one).
    pub fn sample(&mut self) {
        if let Some(kib) = read_rss_kib(self.pid) {
            self.rss.end_kib = kib;
            self.rss.peak_kib = self.rss.peak_kib.max(kib);
            if kib > self.cap_kib {
                self.rss.capped = true;
            }
        }
    }
}

/// VmRSS of a process, in KiB.
pub fn read_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss(&status)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vmrss_and_reads_own_process() {
        assert_eq!(parse_vmrss("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
        assert_eq!(parse_vmrss("Name:\tx\n"), None);
        assert!(read_rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
