//! The servers' side of a run: their processes' CPU and memory from `/proc`, and their Prometheus metrics,
//! sampled once a second, so the report gives CPU per call and memory per participant.

use std::time::Instant;

/// One reading of the servers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// CPU seconds (user + system) used so far, summed over the processes.
    pub cpu_s: Option<f64>,
    /// Resident memory, summed, in MiB.
    pub rss_mib: Option<f64>,
    /// SFU participants (the `hualu_sfu_participants` gauge, summed over endpoints).
    pub participants: Option<f64>,
    /// SFU packets in and out so far.
    pub packets: Option<f64>,
}

/// Samples the servers.
pub struct Sampler {
    pids: Vec<u32>,
    metrics: Vec<String>,
    http: reqwest::Client,
    last: Option<(Instant, Reading)>,
}

/// A reading turned into rates over the last interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// CPU use in percent of one core.
    pub cpu_pct: Option<f64>,
    /// Resident memory in MiB.
    pub rss_mib: Option<f64>,
    /// SFU participants.
    pub participants: Option<f64>,
    /// SFU packets per second, in plus out.
    pub packets_per_s: Option<f64>,
    /// CPU seconds used so far.
    pub cpu_s: Option<f64>,
}

impl Sampler {
    /// Samples processes `pids` and Prometheus endpoints `metrics`.
    pub fn new(pids: Vec<u32>, metrics: Vec<String>) -> Sampler {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(800))
            .build()
            .unwrap_or_default();
        Sampler {
            pids,
            metrics,
            http,
            last: None,
        }
    }

    /// Reads everything once and gives the rates since the previous reading.
    pub async fn sample(&mut self) -> Rates {
        let now = Instant::now();
        let r = Reading {
            cpu_s: sum(self.pids.iter().map(|p| proc_cpu_s(*p))),
            rss_mib: sum(self.pids.iter().map(|p| proc_rss_kib(*p).map(|k| k / 1024.0))),
            ..self.scrape().await
        };
        let rate = |a: Option<f64>, b: Option<f64>, dt: f64| match (a, b) {
            (Some(a), Some(b)) if dt > 0.0 => Some((a - b).max(0.0) / dt),
            _ => None,
        };
        let out = match self.last {
            Some((then, prev)) => {
                let dt = (now - then).as_secs_f64();
                Rates {
                    cpu_pct: rate(r.cpu_s, prev.cpu_s, dt).map(|x| x * 100.0),
                    rss_mib: r.rss_mib,
                    participants: r.participants,
                    packets_per_s: rate(r.packets, prev.packets, dt),
                    cpu_s: r.cpu_s,
                }
            }
            None => Rates {
                rss_mib: r.rss_mib,
                participants: r.participants,
                cpu_s: r.cpu_s,
                ..Rates::default()
            },
        };
        self.last = Some((now, r));
        out
    }

    async fn scrape(&self) -> Reading {
        let mut participants = None;
        let mut packets = None;
        for url in &self.metrics {
            let Ok(resp) = self.http.get(url).send().await else {
                continue;
            };
            let Ok(text) = resp.text().await else { continue };
            let m = parse_metrics(&text);
            participants = add(participants, m.participants);
            packets = add(packets, m.packets);
        }
        Reading {
            participants,
            packets,
            ..Reading::default()
        }
    }
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

fn sum(it: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    it.fold(None, add)
}

/// The figures the report uses from a Prometheus text page.
pub fn parse_metrics(text: &str) -> Reading {
    let mut r = Reading::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else { continue };
        let base = name.split('{').next().unwrap_or(name);
        match base {
            "hualu_sfu_participants" => r.participants = add(r.participants, Some(v)),
            "hualu_sfu_packets_in_total" | "hualu_sfu_packets_out_total" => r.packets = add(r.packets, Some(v)),
            _ => {}
        }
    }
    r
}

pub use hualu_common::procstat::{proc_cpu_s, proc_rss_kib};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_over_labels() {
        let text = "# HELP x\nhualu_sfu_participants{shard=\"0\"} 3\nhualu_sfu_participants{shard=\"1\"} 4\n\
                    hualu_sfu_packets_in_total 100\nhualu_sfu_packets_out_total 250\nother 9\n";
        let r = parse_metrics(text);
        assert_eq!(r.participants, Some(7.0));
        assert_eq!(r.packets, Some(350.0));
        assert_eq!(parse_metrics("nothing 1\n").participants, None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        let spin = (0..2_000_000u64).fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b));
        assert_ne!(spin, 1);
        assert!(proc_cpu_s(me).is_some());
        assert!(proc_rss_kib(me).is_some_and(|k| k > 100.0));
        assert_eq!(proc_cpu_s(u32::MAX), None);
    }
}
