//! The relay under test: `hualu turn --config <generated TOML>` in a temporary directory, on a port block of its
//! own, with a `turnutils_peer` beside it. Killed on drop.

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::http;
use super::ports::{PortBlock, Service};
use super::tools::{spawn_logged, Peer};

/// How long the server may take to answer 200 on `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The realm every test server uses.
pub const REALM: &str = "hualu.test";

/// Which TURN server the tests drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `target/debug/hualu turn`: the default, and what CI runs.
    Hualu,
    /// coturn's `turnserver`, to check the harness against the reference (`HUALU_E2E_SERVER=coturn`).
    Coturn,
}

impl Backend {
    /// From `HUALU_E2E_SERVER` (`hualu`, the default, or `coturn`).
    pub fn from_env() -> Backend {
        match std::env::var("HUALU_E2E_SERVER").as_deref() {
            Ok("coturn") => Backend::Coturn,
            Ok("hualu") | Err(_) => Backend::Hualu,
            Ok(other) => panic!("HUALU_E2E_SERVER={other}: expected hualu or coturn"),
        }
    }
}

/// What the test server is configured with.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Static users, name and password.
    pub users: Vec<(String, String)>,
    /// TURN REST secrets.
    pub rest_secrets: Vec<String>,
    /// Whether `turn.allow_peers` holds 127.0.0.0/8 (without it loopback peers get 403).
    pub allow_loopback_peers: bool,
    /// `turn.quota.max_allocations`.
    pub max_allocations: Option<u32>,
    /// `turn.quota.max_allocations_per_user`.
    pub max_allocations_per_user: Option<u32>,
    /// Whether the TLS listener runs (with a `dev = true` self-signed certificate).
    pub tls: bool,
    /// `turn.drain_deadline_secs`: how long allocations keep running after SIGTERM.
    pub drain_deadline_secs: u32,
}

impl Default for ServerSpec {
    /// [`super::USER`] with [`super::PASSWORD`], loopback peers allowed, no TLS, default quotas.
    fn default() -> Self {
        ServerSpec {
            users: vec![(super::USER.into(), super::PASSWORD.into())],
            rest_secrets: Vec::new(),
            allow_loopback_peers: true,
            max_allocations: None,
            max_allocations_per_user: None,
            tls: false,
            drain_deadline_secs: 1,
        }
    }
}

impl ServerSpec {
    /// Adds a static user.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }

    /// Adds a TURN REST secret.
    pub fn rest_secret(mut self, secret: &str) -> Self {
        self.rest_secrets.push(secret.into());
        self
    }

    /// Turns the TLS listener on.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }
}

/// A running test server with its peer; both are killed on drop.
#[derive(Debug)]
pub struct Server {
    backend: Backend,
    child: Child,
    peer: Option<Peer>,
    log: PathBuf,
    dir: TempDir,
    block: PortBlock,
}

impl Server {
    /// Starts the server for `spec` and its `turnutils_peer`, and waits until the server is ready.
    pub fn start(spec: &ServerSpec) -> Server {
        let backend = Backend::from_env();
        let block = PortBlock::claim();
        let dir = TempDir::new("server");
        let log = dir.path().join("server.log");
        let (program, args) = match backend {
            Backend::Hualu => hualu_command(spec, &block, dir.path()),
            Backend::Coturn => coturn_command(spec, &block, dir.path()),
        };
        let child = spawn_logged(&program, &args, &log);
        let peer = Some(Peer::start(block.port(Service::Peer)));
        let mut server = Server {
            backend,
            child,
            peer,
            log,
            dir,
            block,
        };
        server.wait_ready();
        server
    }

    /// The TURN port, UDP and TCP.
    pub fn turn_port(&self) -> u16 {
        self.block.port(Service::Turn)
    }

    /// The TLS port.
    pub fn tls_port(&self) -> u16 {
        self.block.port(Service::Tls)
    }

    /// The peer's port (RTP; RTCP is the next one).
    pub fn peer_port(&self) -> u16 {
        self.block.port(Service::Peer)
    }

    /// The metrics endpoint.
    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.block.port(Service::Metrics)))
    }

    /// Which server this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The last `lines` lines of the server's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let mut out = format!("--- last lines of the {:?} server log ---\n", self.backend);
        for line in &all[all.len().saturating_sub(lines)..] {
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// A metric summed over the series matching `labels`; `None` for coturn, or when it is not exported.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        if self.backend != Backend::Hualu {
            return None;
        }
        let response = http::get(self.metrics_addr(), "/metrics")?;
        http::metric_sum(&response.body, name, labels)
    }

    /// Waits (up to 5 s: the relay publishes its counters about once a second) until the counter reaches `min`;
    /// returns its value. Skipped (returns `None`) for coturn, which has no such endpoint.
    pub fn wait_counter(&self, name: &str, labels: &[(&str, &str)], min: f64) -> Option<f64> {
        if self.backend != Backend::Hualu {
            return None;
        }
        let mut last = None;
        for _ in 0..50 {
            last = self.metric(name, labels);
            if last.is_some_and(|v| v >= min) {
                return last;
            }
            sleep(Duration::from_millis(100));
        }
        panic!(
            "metric {name}{labels:?} is {last:?} after 5 s, expected at least {min}\n{}",
            self.log_tail(30)
        );
    }

    /// Sends SIGTERM (through `sh`'s `kill`: std has no signal API), which starts a drain.
    pub fn terminate(&self) {
        let pid = self.child.id();
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .expect("run sh -c kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits up to `timeout` for the server to exit; its exit code (`None`: killed by a signal), or `Err` with
    /// the log when it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        let polls = timeout.as_millis() / 100 + 1;
        for _ in 0..polls {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                return Ok(status.code());
            }
            sleep(Duration::from_millis(100));
        }
        Err(self.log_tail(30))
    }

    /// The status `/readyz` answers, if it answers.
    pub fn readyz(&self) -> Option<u16> {
        http::get(self.metrics_addr(), "/readyz").map(|r| r.status)
    }

    fn wait_ready(&mut self) {
        let polls = READY_TIMEOUT.as_millis() / 100;
        for _ in 0..polls {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                panic!(
                    "the server exited before it was ready ({status})\n{}",
                    self.log_tail(60)
                );
            }
            if self.is_ready() {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        panic!(
            "the server was not ready within {READY_TIMEOUT:?}\n{}",
            self.log_tail(60)
        );
    }

    fn is_ready(&self) -> bool {
        match self.backend {
            Backend::Hualu => http::get(self.metrics_addr(), "/readyz").is_some_and(|r| r.status == 200),
            Backend::Coturn => {
                let addr = SocketAddr::from(([127, 0, 0, 1], self.turn_port()));
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.peer = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hualu turn --config DIR/hualu.toml` for `spec`.
fn hualu_command(spec: &ServerSpec, block: &PortBlock, dir: &Path) -> (String, Vec<String>) {
    let config = dir.join("hualu.toml");
    fs::write(&config, hualu_toml(spec, block)).expect("write the test config");
    let args = vec!["turn".into(), "--config".into(), config.display().to_string()];
    (env!("CARGO_BIN_EXE_hualu").to_string(), args)
}

/// The TOML config for `spec` on `block`.
pub fn hualu_toml(spec: &ServerSpec, block: &PortBlock) -> String {
    let (min_port, max_port) = block.relay_range();
    let turn_port = block.port(Service::Turn);
    let tls_port = if spec.tls { block.port(Service::Tls) } else { 0 };
    let metrics_port = block.port(Service::Metrics);
    let rest_secrets = toml_strings(&spec.rest_secrets);
    let allow_peers = toml_strings(if spec.allow_loopback_peers {
        &["127.0.0.0/8", "::1/128"]
    } else {
        &[]
    });
    let users: String = spec.users.iter().map(|(u, p)| format!("{u} = \"{p}\"\n")).collect();
    let quota_line = |key: &str, value: Option<u32>| value.map(|n| format!("{key} = {n}\n")).unwrap_or_default();
    let quotas = quota_line("max_allocations", spec.max_allocations)
        + &quota_line("max_allocations_per_user", spec.max_allocations_per_user);
    // `dev = true` only for the self-signed TLS certificate: every credential is explicit. Two shards whatever the
    // machine, so each shard's share of the relay range is the same everywhere.
    format!(
        r#"dev = {dev}

[log]
level = "info"

[metrics]
listen = "127.0.0.1:{metrics_port}"

[turn]
realm = "{REALM}"
listen_ips = ["127.0.0.1"]
udp_port = {turn_port}
tcp_port = {turn_port}
tls_port = {tls_port}
relay_ip = "127.0.0.1"
relay_ip6 = "::1"
min_port = {min_port}
max_port = {max_port}
shards = 2
drain_deadline_secs = {drain}
rest_secrets = {rest_secrets}
allow_peers = {allow_peers}

[turn.users]
{users}
[turn.quota]
{quotas}"#,
        dev = spec.tls,
        drain = spec.drain_deadline_secs,
    )
}

fn toml_strings<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{}\"", s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// coturn's `turnserver` configured like `spec` (for checking the harness only).
fn coturn_command(spec: &ServerSpec, block: &PortBlock, dir: &Path) -> (String, Vec<String>) {
    let (min_port, max_port) = block.relay_range();
    let d = dir.display();
    let mut args: Vec<String> = vec![
        "-n".into(),
        "--listening-ip=127.0.0.1".into(),
        "--relay-ip=127.0.0.1".into(),
        format!("--listening-port={}", block.port(Service::Turn)),
        format!("--min-port={min_port}"),
        format!("--max-port={max_port}"),
        format!("--realm={REALM}"),
        "--no-cli".into(),
        "--no-dtls".into(),
        "--log-file=stdout".into(),
        "--simple-log".into(),
        format!("--pidfile={d}/turnserver.pid"),
        format!("--userdb={d}/turndb"),
        "--lt-cred-mech".into(),
    ];
    args.extend(spec.users.iter().map(|(u, p)| format!("--user={u}:{p}")));
    if !spec.rest_secrets.is_empty() {
        args.push("--use-auth-secret".into());
        args.extend(spec.rest_secrets.iter().map(|s| format!("--static-auth-secret={s}")));
    }
    if spec.allow_loopback_peers {
        args.push("--allow-loopback-peers".into());
    }
    args.extend(spec.max_allocations.map(|n| format!("--total-quota={n}")));
    args.extend(spec.max_allocations_per_user.map(|n| format!("--user-quota={n}")));
    if spec.tls {
        let (cert, key) = self_signed_cert(dir);
        args.push(format!("--tls-listening-port={}", block.port(Service::Tls)));
        args.extend([format!("--cert={cert}"), format!("--pkey={key}")]);
    } else {
        args.push("--no-tls".into());
    }
    ("turnserver".into(), args)
}

fn self_signed_cert(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-keyout", &key, "-out", &cert])
        .output()
        .expect("run openssl")
        .status;
    assert!(status.success(), "openssl could not make a test certificate");
    (cert, key)
}

/// A fresh path in the temporary directory.
pub fn unique_path(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("hualu-e2e-{prefix}-{}-{n}-{nanos}", std::process::id()))
}

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory.
    pub fn new(prefix: &str) -> TempDir {
        let path = unique_path(prefix);
        fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
