//! `hualu sfu` under test: a generated config on a claimed port block, two shards, and tokens minted with the
//! test's API key.

use super::http;
use super::ports::{PortBlock, Service};
use super::server::TempDir;
use super::tools::spawn_logged;
use hualu_common::token::{self, Claims, Grants};
use std::fs;
use std::net::SocketAddr;
use std::process::Child;
use std::thread::sleep;
use std::time::Duration;

/// The API key the test server knows.
pub const API_KEY: &str = "e2e";
/// Its secret.
pub const API_SECRET: &str = "an-e2e-test-secret-of-more-than-32-chars";
/// The TURN REST secret, so `joined` lists ICE servers.
pub const REST_SECRET: &str = "an-e2e-turn-rest-secret";

/// A running `hualu sfu`; killed on drop.
pub struct SfuServer {
    child: Child,
    dir: TempDir,
    block: PortBlock,
}

impl SfuServer {
    /// Starts it and waits until `/readyz` answers 200.
    pub fn start() -> SfuServer {
        Self::start_with("sfu", "")
    }

    /// Starts `hualu <command>` (its words split at spaces) with `extra` appended to the config, and waits until `/readyz` answers 200.
    pub fn start_with(command: &str, extra: &str) -> SfuServer {
        let block = PortBlock::claim();
        let dir = TempDir::new("sfu");
        let config = dir.path().join("hualu.toml");
        fs::write(&config, toml(&block) + extra).expect("write the test config");
        let mut args: Vec<String> = command.split_whitespace().map(String::from).collect();
        args.extend(["--config".into(), config.display().to_string()]);
        let log = dir.path().join("server.log");
        let child = spawn_logged(env!("CARGO_BIN_EXE_hualu"), &args, &log);
        let mut server = SfuServer { child, dir, block };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        for _ in 0..150 {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                panic!(
                    "the server exited before it was ready ({status})\n{}",
                    self.log_tail(60)
                );
            }
            let metrics = SocketAddr::from(([127, 0, 0, 1], self.block.port(Service::Metrics)));
            if http::get(metrics, "/readyz").is_some_and(|r| r.status == 200) {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        panic!("the server was not ready within 15 s\n{}", self.log_tail(60));
    }

    /// The public HTTP address (`/rtc`).
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.block.port(Service::Peer) + 2))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.block.port(Service::Metrics)))
    }

    /// A token for `identity` in `room` with both grants, valid for an hour.
    pub fn token(&self, identity: &str, room: &str) -> String {
        let mut claims = Claims::new(API_KEY, identity, hualu_common::clock::unix_now(), 3600);
        claims.grants = Grants {
            room: Some(room.into()),
            publish: true,
            subscribe: true,
            admin: false,
            links: Vec::new(),
        };
        token::mint(API_SECRET, &claims).expect("mint")
    }

    /// A token with the admin grant (the admin API), valid for an hour.
    pub fn admin_token(&self) -> String {
        let mut claims = Claims::new(API_KEY, "ops", hualu_common::clock::unix_now(), 3600);
        claims.grants.admin = true;
        token::mint(API_SECRET, &claims).expect("mint")
    }

    /// A token for `user` on `device`, with no room, valid for `ttl` seconds.
    pub fn user_token(&self, user: &str, device: &str, ttl: u64) -> String {
        let mut claims = Claims::new(API_KEY, user, hualu_common::clock::unix_now(), ttl);
        claims.device = Some(device.into());
        token::mint(API_SECRET, &claims).expect("mint")
    }

    /// Sends SIGTERM (through `sh`'s `kill`: std has no signal API), which starts a drain.
    pub fn terminate(&self) {
        let pid = self.child.id();
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .expect("run sh -c kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits up to `timeout` for the server to exit; whether it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let until = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < until {
            if self.child.try_wait().expect("poll the server").is_some() {
                return true;
            }
            sleep(Duration::from_millis(100));
        }
        false
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!("---- server log (last {lines} lines)\n{tail}\n----")
    }
}

impl Drop for SfuServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two shards on the block's ports 6 and 7 (UDP and ICE-TCP), HTTP on port 5, metrics on port 2.
fn toml(block: &PortBlock) -> String {
    let base = block.port(Service::Peer) + 3;
    format!(
        r#"[log]
level = "info,hualu_sfu=debug,hualu_signaling=debug"

[metrics]
listen = "127.0.0.1:{metrics}"

[http]
listen = "127.0.0.1:{http}"

[sfu]
shards = 2
listen_ip = "127.0.0.1"
udp_port = {base}
tcp_port = {base}

[turn]
listen_ips = ["127.0.0.1"]
udp_port = {turn}
tcp_port = {turn}
tls_port = 0
rest_secrets = ["{REST_SECRET}"]
# Media relayed through TURN goes to the SFU on loopback.
allow_peers = ["127.0.0.0/8"]

[auth.api_keys]
{API_KEY} = "{API_SECRET}"
"#,
        metrics = block.port(Service::Metrics),
        http = block.port(Service::Peer) + 2,
        turn = block.port(Service::Turn),
    )
}
