//! calls-bench: call control's benchmark. Starts `hualu signaling` pinned to one core, then:
//! - opens `--idle` idle device connections and reports the server's RSS per connection;
//! - runs `--pairs` caller/callee pairs that place calls back to back for `--seconds` (invite, the callee's
//!   `incoming`, accept, `answered`, hangup, `ended`), and reports call setups per second, the server's CPU
//!   time per setup (so setups per second one core carries), and invite-to-incoming latency p50/p99.
//!
//!   cargo build --release -p hualu-signaling --bins && cargo build --release
//!   taskset -c 1 target/release/calls-bench --hualu target/release/hualu --server-cpu 0
//!
//! CPU is the server's utime+stime from /proc/PID/stat over the window; RSS is VmRSS from /proc/PID/status.
//! All traffic stays on 127.0.0.1, and every run ends by itself.

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hualu_common::token::{self, Claims};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const KEY: &str = "bench";
const SECRET: &str = "a-benchmark-secret-of-more-than-32-chars";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Parser)]
#[command(about = "Call control's benchmark: call setups per second per core, ring latency, RSS per connection")]
struct Args {
    /// The hualu binary.
    #[arg(long, default_value = "target/release/hualu")]
    hualu: String,
    /// Core the server runs on (taskset -c); none to leave it unpinned.
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Caller/callee pairs placing calls at once.
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    /// Idle connections for the memory figure.
    #[arg(long, default_value_t = 2000)]
    idle: usize,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// HTTP port; metrics on the next one.
    #[arg(long, default_value_t = 18880)]
    port: u16,
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run(args));
}

async fn run(args: Args) {
    let mut server = Server::start(&args);
    let http = SocketAddr::from(([127, 0, 0, 1], args.port));
    let rss = idle_rss(&server, http, args.idle).await;
    let window = Duration::from_secs(args.seconds);
    let cpu0 = server.cpu();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.pairs {
        tasks.push(tokio::spawn(pair(http, p, start + window)));
    }
    let mut setups = 0u64;
    let mut ring = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for t in tasks {
        let (n, h) = t.await.expect("a pair task");
        setups += n;
        ring.add(h).expect("same bounds");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = server.cpu() - cpu0;
    server.stop();
    println!("| pairs | call setups/s | server CPU per setup | setups/s per core | invite→incoming p50 | p99 | RSS per idle connection |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {:.1} µs | {:.0} | {:.2} ms | {:.2} ms | {:.1} KiB |",
        args.pairs,
        setups as f64 / elapsed,
        cpu * 1e6 / setups.max(1) as f64,
        setups as f64 / cpu.max(1e-9),
        ring.value_at_quantile(0.5) as f64 / 1000.0,
        ring.value_at_quantile(0.99) as f64 / 1000.0,
        rss
    );
}

/// Opens `n` idle connections and returns the server's RSS growth per connection, in KiB.
async fn idle_rss(server: &Server, http: SocketAddr, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let before = server.rss_kib();
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        let mut ws = connect(http, &format!("idle{i}"), "phone").await;
        next(&mut ws, "welcome").await;
        open.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kib();
    drop(open);
    tokio::time::sleep(Duration::from_millis(500)).await;
    (after.saturating_sub(before)) as f64 / n as f64
}

/// One caller and one callee placing calls back to back until `end`: the setups done and the ring latencies
/// (µs).
async fn pair(http: SocketAddr, p: usize, end: Instant) -> (u64, Histogram<u64>) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (caller_id, callee_id) = (format!("a{p}"), format!("b{p}"));
    let mut a = connect(http, &caller_id, "phone").await;
    let mut b = connect(http, &callee_id, "phone").await;
    next(&mut a, "welcome").await;
    next(&mut b, "welcome").await;
    let mut n = 0u64;
    while Instant::now() < end {
        let sent = Instant::now();
        send(
            &mut a,
            json!({"type": "invite", "id": n, "key": format!("i{n}"), "to": [callee_id]}),
        )
        .await;
        let inc = next(&mut b, "incoming").await;
        h.saturating_record(sent.elapsed().as_micros() as u64);
        let call = inc["call"].clone();
        send(
            &mut b,
            json!({"type": "accept", "id": n, "key": format!("a{n}"), "call": call}),
        )
        .await;
        next(&mut a, "answered").await;
        n += 1;
        send(
            &mut a,
            json!({"type": "hangup", "id": n, "key": format!("h{n}"), "call": call}),
        )
        .await;
        next(&mut b, "ended").await;
    }
    (n, h)
}

async fn connect(http: SocketAddr, user: &str, device: &str) -> Ws {
    let mut claims = Claims::new(KEY, user, hualu_common::clock::unix_now(), 3600);
    claims.device = Some(device.into());
    let t = token::mint(SECRET, &claims).expect("a token");
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws?access_token={t}"))
        .await
        .unwrap_or_else(|e| panic!("connect {user}: {e}"));
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.expect("send");
}

/// The next message of type `t`, skipping others; panics on an error reply or after 10 s.
async fn next(ws: &mut Ws, t: &str) -> Value {
    let wait = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = ws.next().await {
            if let Ok(Message::Text(text)) = m {
                let v: Value = serde_json::from_str(text.as_str()).expect("JSON");
                assert_ne!(v["type"], "error", "waiting for {t}: {v}");
                if v["type"] == t {
                    return v;
                }
            }
        }
        panic!("the socket closed while waiting for {t}");
    });
    wait.await.unwrap_or_else(|_| panic!("no {t} within 10 s"))
}

/// The server under test.
struct Server {
    child: Child,
}

impl Server {
    fn start(args: &Args) -> Server {
        let mut cmd = match args.server_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), &args.hualu]);
                c
            }
            None => Command::new(&args.hualu),
        };
        let p = args.port;
        cmd.args(["signaling", "--set", "log.level=warn"])
            .args(["--set", &format!("http.listen=\"127.0.0.1:{p}\"")])
            .args(["--set", &format!("metrics.listen=\"127.0.0.1:{}\"", p + 1)])
            .args(["--set", &format!("auth.api_keys.{KEY}=\"{SECRET}\"")])
            .args([
                "--set",
                "signaling.user_rate=1000000.0",
                "--set",
                "signaling.user_burst=1000000.0",
            ])
            .args([
                "--set",
                "signaling.ip_rate=1000000.0",
                "--set",
                "signaling.ip_burst=1000000.0",
            ])
            .stdout(Stdio::null());
        let server = Server {
            child: cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", args.hualu)),
        };
        let http = SocketAddr::from(([127, 0, 0, 1], p));
        for _ in 0..100 {
            if std::net::TcpStream::connect(http).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Dropping the server kills and reaps it.
        panic!("the server did not listen on {http} within 10 s");
    }

    fn stat(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id())).unwrap_or_default()
    }

    /// utime + stime, in seconds (USER_HZ is 100 on Linux).
    fn cpu(&self) -> f64 {
        let stat = self.stat("stat");
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) as f64;
        (field(11) + field(12)) / 100.0
    }

    fn rss_kib(&self) -> u64 {
        self.stat("status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
