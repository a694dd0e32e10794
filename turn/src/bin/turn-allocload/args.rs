//! Hand-rolled `--key value` parsing (the crate has no clap), with defaults per mode.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What the run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Full allocations: 401 challenge, authenticated Allocate, Refresh with LIFETIME 0.
    Alloc,
    /// Unauthenticated Allocates only, each answered by a 401.
    Unauth,
}

/// Everything a run needs, after defaults are applied.
#[derive(Clone, Debug)]
pub struct Args {
    pub mode: Mode,
    pub server: SocketAddr,
    pub user: String,
    pub password: String,
    /// Stop starting new jobs after this long.
    pub duration: Duration,
    /// Stop starting new jobs after this many (None: only the duration bounds the run).
    pub count: Option<u64>,
    /// Jobs in flight at once, each on its own socket.
    pub concurrency: usize,
    /// First retransmission timeout; doubles on each retry.
    pub rto: Duration,
    /// Retransmissions before a transaction counts as timed out.
    pub retries: u32,
    /// First local address; `src_ips` consecutive IPv4 loopback addresses are used.
    pub bind: IpAddr,
    pub src_ips: u32,
    /// Local ports, used round robin (per address) so a source port comes back as late as possible.
    pub src_ports: (u16, u16),
    /// Jobs per socket before it is replaced by a new one (a new source port).
    pub jobs_per_socket: u64,
    /// After the duration, how long in-flight jobs may still take (they release their allocations).
    pub drain: Duration,
    /// The server's process, whose memory is reported and capped.
    pub watch_pid: Option<u32>,
    pub max_rss_mib: u64,
}

pub const USAGE: &str = "\
turn-allocload: allocation-rate and unauthenticated-flood load for a TURN server (UDP, loopback only)

usage: turn-allocload <alloc|unauth> [--key value]...

  --server ADDR        TURN server (default 127.0.0.1:3478); must be a loopback address
  --user NAME          long-term credential user (default test)
  --password PW        its password (default test123); the realm is learned from the 401
  --duration SECS      stop starting jobs after this many seconds (alloc: 10, unauth: 120)
  --count N            stop starting jobs after N (alloc: unbounded, unauth: 1000000)
  --concurrency N      jobs in flight, one socket each (alloc: 128, unauth: 256)
  --rto-ms MS          first retransmission timeout (alloc: 500, unauth: 250)
  --retries N          retransmissions before a timeout counts (alloc: 3, unauth: 0)
  --bind IP            local address (default 127.0.0.1, or ::1 for an IPv6 server)
  --src-ips N          spread sources over N consecutive IPv4 loopback addresses (default 1)
  --src-ports LO-HI    local ports, taken round robin over all addresses so that a source address comes
                       back as late as possible (default 32768-60999; busy ports are skipped)
  --jobs-per-socket N  jobs before a socket is replaced by a new one, i.e. a new source port (default 1);
                       a socket is only ever reused after its allocation was released
  --drain SECS         time in-flight jobs get after the duration to finish and release (default 5)
  --watch-pid PID      report the server's VmRSS at start, end and peak, and stop starting jobs
                       once it passes --max-rss-mib (default 4096)

alloc: Allocate (401 + REALM + NONCE), Allocate with MESSAGE-INTEGRITY, Refresh LIFETIME 0, per job.
unauth: one Allocate without credentials per job; counts the 401 answers.
The last line is machine-readable: RESULT key=value...
";

/// Parses the command line (without the program name).
pub fn parse(argv: &[String]) -> Result<Args, String> {
    let (mode_word, rest) = argv.split_first().ok_or("missing mode (alloc or unauth)")?;
    let mode = match mode_word.as_str() {
        "alloc" => Mode::Alloc,
        "unauth" => Mode::Unauth,
        "-h" | "--help" | "help" => return Err(String::new()),
        other => return Err(format!("unknown mode {other:?} (alloc or unauth)")),
    };
    let mut args = defaults(mode);
    let mut bind_given = false;
    for (key, value) in pairs(rest)? {
        match key.as_str() {
            "server" => args.server = parse_value(&key, &value)?,
            "user" => args.user = value,
            "password" => args.password = value,
            "duration" => args.duration = seconds(&key, &value)?,
            "count" => args.count = Some(parse_value(&key, &value)?),
            "concurrency" => args.concurrency = parse_value(&key, &value)?,
            "rto-ms" => args.rto = Duration::from_millis(parse_value(&key, &value)?),
            "retries" => args.retries = parse_value(&key, &value)?,
            "bind" => {
                args.bind = parse_value(&key, &value)?;
                bind_given = true;
            }
            "src-ips" => args.src_ips = parse_value(&key, &value)?,
            "src-ports" => args.src_ports = port_range(&key, &value)?,
            "jobs-per-socket" => args.jobs_per_socket = parse_value(&key, &value)?,
            "drain" => args.drain = seconds(&key, &value)?,
            "watch-pid" => args.watch_pid = Some(parse_value(&key, &value)?),
            "max-rss-mib" => args.max_rss_mib = parse_value(&key, &value)?,
            _ => return Err(format!("unknown option --{key}")),
        }
    }
    if !bind_given && args.server.is_ipv6() {
        args.bind = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    }
    validate(&args)?;
    Ok(args)
}

fn defaults(mode: Mode) -> Args {
    let alloc = mode == Mode::Alloc;
    Args {
        mode,
        server: SocketAddr::from(([127, 0, 0, 1], 3478)),
        user: "test".into(),
        password: "test123".into(),
        duration: Duration::from_secs(if alloc { 10 } else { 120 }),
        count: if alloc { None } else { Some(1_000_000) },
        concurrency: if alloc { 128 } else { 256 },
        rto: Duration::from_millis(if alloc { 500 } else { 250 }),
        retries: if alloc { 3 } else { 0 },
        bind: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        src_ips: 1,
        src_ports: (32768, 60999),
        jobs_per_socket: 1,
        drain: Duration::from_secs(5),
        watch_pid: None,
        max_rss_mib: 4096,
    }
}

/// Splits `--key value` and `--key=value` into pairs.
fn pairs(rest: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut iter = rest.iter();
    while let Some(word) = iter.next() {
        if word == "-h" || word == "--help" {
            return Err(String::new());
        }
        let key = word
            .strip_prefix("--")
            .ok_or_else(|| format!("expected --key, got {word:?}"))?;
        if let Some((k, v)) = key.split_once('=') {
            out.push((k.to_string(), v.to_string()));
        } else {
            let value = iter.next().ok_or_else(|| format!("--{key} needs a value"))?;
            out.push((key.to_string(), value.clone()));
        }
    }
    Ok(out)
}

fn parse_value<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("--{key} {value:?}: {e}"))
}

fn seconds(key: &str, value: &str) -> Result<Duration, String> {
    let secs: f64 = parse_value(key, value)?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(format!("--{key} must be between 0 and 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn port_range(key: &str, value: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = value.split_once('-').ok_or_else(|| format!("--{key} wants LO-HI"))?;
    let range = (parse_value(key, lo)?, parse_value(key, hi)?);
    if range.0 == 0 || range.0 > range.1 {
        return Err(format!("--{key} {value}: need 1 <= LO <= HI"));
    }
    Ok(range)
}

fn validate(args: &Args) -> Result<(), String> {
    if !args.server.ip().is_loopback() {
        return Err(format!(
            "--server {}: load goes to loopback addresses only (127.0.0.0/8, ::1)",
            args.server
        ));
    }
    if !args.bind.is_loopback() {
        return Err(format!("--bind {}: must be a loopback address", args.bind));
    }
    if args.bind.is_ipv4() != args.server.is_ipv4() {
        return Err("--bind and --server must be the same address family".into());
    }
    if !(1..=4096).contains(&args.concurrency) {
        return Err("--concurrency must be 1..=4096".into());
    }
    if args.src_ips == 0 || (args.src_ips > 1 && !args.bind.is_ipv4()) || args.src_ips > 65_536 {
        return Err("--src-ips must be >= 1, <= 65536, and 1 for IPv6".into());
    }
    if let IpAddr::V4(base) = args.bind {
        let last = u32::from(base).checked_add(args.src_ips - 1);
        if !last.is_some_and(|l| std::net::Ipv4Addr::from(l).is_loopback()) {
            return Err("--bind plus --src-ips leaves 127.0.0.0/8".into());
        }
    }
    if args.jobs_per_socket == 0 {
        return Err("--jobs-per-socket must be >= 1".into());
    }
    if args.retries > 10 || args.rto.is_zero() {
        return Err("--retries must be <= 10 and --rto-ms > 0".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn parses_both_spellings_and_mode_defaults() {
        let a = parse(&argv(&["alloc", "--server", "127.0.0.1:9", "--count=5"])).expect("valid");
        assert_eq!(a.mode, Mode::Alloc);
        assert_eq!(a.server.port(), 9);
        assert_eq!(a.count, Some(5));
        let u = parse(&argv(&["unauth"])).expect("valid");
        assert_eq!(u.count, Some(1_000_000));
        assert_eq!(u.retries, 0);
    }

    #[test]
    fn refuses_non_loopback_and_unknown_options() {
        assert!(parse(&argv(&["alloc", "--server", "192.0.2.1:3478"])).is_err());
        assert!(parse(&argv(&["alloc", "--bogus", "1"])).is_err());
        assert!(parse(&argv(&["alloc", "--count"])).is_err());
        assert!(parse(&argv(&["alloc", "--src-ips", "300", "--bind", "127.255.255.0"])).is_err());
        assert!(parse(&argv(&["alloc", "--src-ports", "9-3"])).is_err());
    }

    #[test]
    fn ipv6_server_binds_ipv6_loopback() {
        let a = parse(&argv(&["alloc", "--server", "[::1]:3478"])).expect("valid");
        assert!(a.bind.is_ipv6());
    }
}
