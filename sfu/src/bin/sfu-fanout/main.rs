//! sfu-fanout: the SFU's fan-out benchmark. One audio publisher (50 packets/s) and N subscribers in one room of
//! a `hualu sfu` process with one shard; prints the SFU's CPU time per forwarded packet, the forwarded packets
//! per second one core would carry at that cost, the loss, and the RSS per subscriber.
//!
//!   cargo build --release
//!   taskset -c 1 target/release/sfu-fanout --hualu target/release/hualu --sfu-cpu 0 --subscribers 100,500,1000
//!
//! With `--pairs`, the participants are in 1:1 rooms instead, each publishing to the other: one packet in for
//! each packet out, as in 1:1 calls.
//!
//! The SFU process is pinned to `--sfu-cpu` (taskset); pin this load generator to another core. CPU is the SFU
//! process's utime+stime from /proc/PID/stat over the measured window; RSS is VmRSS from /proc/PID/status.
//! All traffic stays on 127.0.0.1, and every run ends by itself.

mod peer;

use clap::Parser;
use hualu_common::token::{self, Claims, Grants};
use mio::{Events, Poll, Token};
use peer::Peer;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const KEY: &str = "bench";
const SECRET: &str = "a-benchmark-secret-of-more-than-32-chars";

#[derive(Parser)]
#[command(about = "The SFU's fan-out benchmark: one audio publisher, N subscribers")]
struct Args {
    /// The hualu binary.
    #[arg(long, default_value = "target/release/hualu")]
    hualu: String,
    /// Core the SFU runs on (taskset -c); none to leave it unpinned.
    #[arg(long)]
    sfu_cpu: Option<usize>,
    /// Subscriber counts to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    subscribers: Vec<usize>,
    /// Publishers, each sending 50 packets/s to every subscriber.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// 1:1 calls instead of one room: the subscriber count is split into rooms of two, in which both
    /// publish audio and each receives the other's (`--publishers` is then ignored).
    #[arg(long)]
    pairs: bool,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// First port: HTTP on it, metrics on the next, the SFU's UDP on the one after.
    #[arg(long, default_value_t = 17880)]
    port: u16,
}

/// One run's figures.
struct Figures {
    subscribers: usize,
    forwarded_per_sec: f64,
    cpu_us_per_packet: f64,
    loss: f64,
    rss_kib_per_subscriber: f64,
}

fn main() {
    let args = Args::parse();
    let who = if args.pairs {
        "participants in 1:1 rooms"
    } else {
        "subscribers"
    };
    println!(
        "| {who} | forwarded pkt/s | SFU CPU per forwarded pkt | pkt/s per core at that cost | loss | RSS per subscriber |"
    );
    println!("|---|---|---|---|---|---|");
    for &n in &args.subscribers {
        let f = run(&args, n);
        println!(
            "| {} | {:.0} | {:.2} µs | {:.0} | {:.3}% | {:.0} KiB |",
            f.subscribers,
            f.forwarded_per_sec,
            f.cpu_us_per_packet,
            1e6 / f.cpu_us_per_packet,
            f.loss * 100.0,
            f.rss_kib_per_subscriber
        );
    }
}

fn run(args: &Args, n: usize) -> Figures {
    let mut server = Server::start(args);
    let http = SocketAddr::from(([127, 0, 0, 1], args.port));
    let rss_empty = server.rss_kib();
    let mut poll = Poll::new().expect("poll");
    let mut peers: Vec<Peer> = Vec::with_capacity(n + args.publishers);
    let publishers = if args.pairs { 0 } else { args.publishers };
    for i in 0..publishers {
        let t = token_for(&format!("pub{i}"), "fanout");
        peers.push(Peer::join(http, &t, true, poll.registry(), Token(peers.len())));
    }
    for i in 0..n {
        let room = if args.pairs {
            format!("pair{}", i / 2)
        } else {
            "fanout".into()
        };
        let t = token_for(&format!("sub{i}"), &room);
        peers.push(Peer::join(http, &t, args.pairs, poll.registry(), Token(peers.len())));
        if i % 50 == 49 {
            // Let the SFU's offers and the handshakes of this batch settle.
            pump(&mut poll, &mut peers, Duration::from_millis(50), false);
        }
    }
    let ready = pump_until(&mut poll, &mut peers, Duration::from_secs(60), |p| {
        p.iter().all(Peer::connected)
    });
    assert!(ready, "not every participant connected within 60 s");
    // Warm-up: media flows to everyone before the window opens.
    pump(&mut poll, &mut peers, Duration::from_secs(2), true);
    for p in &mut peers {
        p.count(true);
    }
    let (wake0, timers0) = (
        server.metric("hualu_sfu_loop_wakeups_total"),
        server.metric("hualu_sfu_rtc_timeouts_total"),
    );
    let (user0, sys0) = server.cpu_split();
    let t0 = Instant::now();
    pump(&mut poll, &mut peers, Duration::from_secs(args.seconds), true);
    let (user1, sys1) = server.cpu_split();
    // After the window, not before: str0m's per-participant history (TWCC send records, up to 1,000) fills
    // during the first 20 s of media, so this is the steady state.
    let rss_full = server.rss_kib();
    let (user, system) = (user1 - user0, sys1 - sys0);
    let cpu = user + system;
    let elapsed = t0.elapsed().as_secs_f64();
    // Counters are published once a second: wait for the window's last ones.
    sleep(Duration::from_millis(1100));
    let wakeups = server.metric("hualu_sfu_loop_wakeups_total") - wake0;
    let timers = server.metric("hualu_sfu_rtc_timeouts_total") - timers0;
    for p in &mut peers {
        p.count(false);
    }
    let (expected, received) = peers
        .iter()
        .map(Peer::expected_and_received)
        .fold((0, 0), |(e, r), (pe, pr)| (e + pe, r + pr));
    for p in &mut peers {
        p.leave();
    }
    server.stop();
    let received_all: u64 = peers.iter().map(|p| p.rtp).sum();
    eprintln!(
        "  N={n}: user {:.2} µs + system {:.2} µs per forwarded packet; {:.0} loop wake-ups/s, {:.2} Rtc timer calls per forwarded packet",
        user * 1e6 / received_all.max(1) as f64,
        system * 1e6 / received_all.max(1) as f64,
        wakeups / elapsed,
        timers / received_all.max(1) as f64
    );
    Figures {
        subscribers: n,
        forwarded_per_sec: received_all as f64 / elapsed,
        cpu_us_per_packet: cpu * 1e6 / received_all.max(1) as f64,
        loss: 1.0 - received as f64 / expected.max(1) as f64,
        rss_kib_per_subscriber: (rss_full - rss_empty) as f64 / n as f64,
    }
}

/// Drives every peer for `d`; publishers speak every 20 ms when `media`.
fn pump(poll: &mut Poll, peers: &mut [Peer], d: Duration, media: bool) {
    let end = Instant::now() + d;
    drive(poll, peers, end, media, |_| false);
}

fn pump_until(poll: &mut Poll, peers: &mut [Peer], limit: Duration, done: impl Fn(&[Peer]) -> bool) -> bool {
    drive(poll, peers, Instant::now() + limit, false, done)
}

fn drive(poll: &mut Poll, peers: &mut [Peer], end: Instant, media: bool, done: impl Fn(&[Peer]) -> bool) -> bool {
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 2048];
    let mut next_frame = Instant::now();
    let mut next_signaling = Instant::now();
    loop {
        let now = Instant::now();
        if now >= end {
            return false;
        }
        if media && now >= next_frame {
            for p in peers.iter_mut() {
                p.speak(now);
            }
            next_frame += Duration::from_millis(20);
        }
        if now >= next_signaling {
            for p in peers.iter_mut() {
                p.signaling();
                p.timeout(now);
            }
            next_signaling = now + Duration::from_millis(20);
            if done(peers) {
                return true;
            }
        }
        let wake = if media {
            next_frame.min(next_signaling)
        } else {
            next_signaling
        };
        let _ = poll.poll(&mut events, Some(wake.saturating_duration_since(Instant::now())));
        for ev in events.iter() {
            if let Some(p) = peers.get_mut(ev.token().0) {
                p.read(&mut buf);
            }
        }
    }
}

fn token_for(identity: &str, room: &str) -> String {
    let mut claims = Claims::new(KEY, identity, hualu_common::clock::unix_now(), 3600);
    claims.grants = Grants {
        room: Some(room.into()),
        publish: true,
        subscribe: true,
        admin: false,
        links: Vec::new(),
    };
    token::mint(SECRET, &claims).expect("mint a token")
}

/// The SFU under test.
struct Server {
    child: Child,
    metrics: SocketAddr,
}

impl Server {
    fn start(args: &Args) -> Server {
        let mut cmd = match args.sfu_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), &args.hualu]);
                c
            }
            None => Command::new(&args.hualu),
        };
        let p = args.port;
        cmd.args([
            "sfu",
            "--set",
            "sfu.shards=1",
            "--set",
            "sfu.tcp_port=0",
            "--set",
            "log.level=warn",
        ])
        .args(["--set", &format!("http.listen=\"127.0.0.1:{p}\"")])
        .args(["--set", &format!("metrics.listen=\"127.0.0.1:{}\"", p + 1)])
        .args(["--set", &format!("sfu.udp_port={}", p + 2)])
        .args(["--set", "sfu.participants_per_room=5000"])
        .args(["--set", &format!("auth.api_keys.{KEY}=\"{SECRET}\"")])
        .stdout(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", args.hualu));
        let server = Server {
            child,
            metrics: SocketAddr::from(([127, 0, 0, 1], p + 1)),
        };
        let http = SocketAddr::from(([127, 0, 0, 1], p));
        for _ in 0..100 {
            if std::net::TcpStream::connect(http).is_ok() {
                return server;
            }
            sleep(Duration::from_millis(100));
        }
        panic!("the SFU did not listen on {http} within 10 s");
    }

    /// A counter's value summed over its labels, from the metrics endpoint (0 when absent).
    fn metric(&self, name: &str) -> f64 {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(self.metrics) else {
            return 0.0;
        };
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn stat(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id())).unwrap_or_default()
    }

    /// (utime, stime), in seconds.
    fn cpu_split(&self) -> (f64, f64) {
        let stat = self.stat("stat");
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) as f64;
        let hz = clock_ticks() as f64;
        (field(11) / hz, field(12) / hz)
    }

    fn rss_kib(&self) -> u64 {
        self.stat("status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    /// A run that panics (a join refused, a timeout) must not leave the SFU running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second for /proc times: 100 on every Linux this runs on (USER_HZ).
fn clock_ticks() -> u64 {
    100
}
