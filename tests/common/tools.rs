//! coturn's test tools: `turnutils_peer` (the far end, which echoes every datagram) and `turnutils_uclient` (the
//! TURN clients), each run with a time limit and their output captured.
//!
//! What uclient does: `-m` is the number of sessions. Without `-c` they pair up as the RTP and RTCP sessions of
//! `-m / 2` clients; with `-c` each session is a client. Each client first makes a probe allocation (never
//! released), so `-m M` holds `1.5 M` allocations, or `2 M` with `-c`. Each session then binds channels (or,
//! with `-s`, creates permissions and uses Send indications) and sends `-n` messages of `-l` bytes every 20 ms to
//! the peer, which echoes them back; totals count every session. It exits 0 after a final summary:
//!
//! ```text
//! 6: : start_mclient: tot_send_msgs=1000, tot_recv_msgs=1000
//! 6: : start_mclient: tot_send_bytes ~ 160000, tot_recv_bytes ~ 160000
//! 6: : Total transmit time is 6
//! 6: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
//! ```
//!
//! On a refused request it prints `error 486 (Allocation Quota Reached)`, `channel bind: error 403 (...)` or
//! `create permission error 403 (...)` and exits 255. Bad credentials are different: uclient takes each 401 as a
//! challenge and retries (32 times), then prints `Cannot complete Allocation` and exits 255, without an error code.

use std::fmt;
use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::server::{unique_path, Server};

/// How long one uclient run may take before it is killed.
const UCLIENT_TIMEOUT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(50);

/// What a finished (or killed) tool printed.
#[derive(Debug)]
pub struct ToolOutput {
    /// The command line, for messages.
    pub command: String,
    /// The exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Whether it was killed for running too long.
    pub timed_out: bool,
    /// stdout and stderr, interleaved.
    pub text: String,
}

impl ToolOutput {
    /// Exit code 0 in time.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// uclient's final totals, if it printed them.
    pub fn summary(&self) -> Option<Summary> {
        Summary::parse(&self.text)
    }

    /// Every STUN error code uclient reported (`error 403 (...)`), in order.
    pub fn error_codes(&self) -> Vec<u16> {
        error_codes(&self.text)
    }

    /// Lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text.lines().filter(|l| l.contains(needle)).count()
    }
}

impl fmt::Display for ToolOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<&str> = self.text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        writeln!(f, "$ {}", self.command)?;
        writeln!(f, "exit code {:?}, timed out: {}", self.code, self.timed_out)?;
        writeln!(f, "--- last {} of {} output lines ---", tail.len(), lines.len())?;
        for line in tail {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// uclient's final totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// `tot_send_msgs`.
    pub sent: u64,
    /// `tot_recv_msgs`.
    pub received: u64,
    /// `Total lost packets`.
    pub lost: u64,
    /// `total send dropped`.
    pub send_dropped: u64,
}

impl Summary {
    /// Parses the last totals uclient printed (progress lines carry `msz=` and are skipped).
    pub fn parse(text: &str) -> Option<Summary> {
        let totals = text
            .lines()
            .rev()
            .find(|l| l.contains("tot_send_msgs=") && !l.contains("msz="))?;
        let losses = text.lines().rev().find(|l| l.contains("Total lost packets"))?;
        Some(Summary {
            sent: number_after(totals, "tot_send_msgs=")?,
            received: number_after(totals, "tot_recv_msgs=")?,
            lost: number_after(losses, "Total lost packets ")?,
            send_dropped: number_after(losses, "total send dropped ")?,
        })
    }
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The codes of `error NNN` in `text`.
pub fn error_codes(text: &str) -> Vec<u16> {
    text.lines()
        .filter_map(|l| number_after(l, "error "))
        .filter_map(|n| u16::try_from(n).ok())
        .collect()
}

/// Runs `program args`, killing it after `timeout`.
pub fn run(program: &str, args: &[String], timeout: Duration) -> ToolOutput {
    let log = unique_path("tool-output");
    let mut child = spawn_logged(program, args, &log);
    let command = format!("{program} {}", args.join(" "));
    let (code, timed_out) = wait_bounded(&mut child, timeout);
    let text = fs::read_to_string(&log).unwrap_or_default();
    let _ = fs::remove_file(&log);
    ToolOutput {
        command,
        code,
        timed_out,
        text,
    }
}

/// Starts `program` with stdout and stderr both going to `log`.
pub fn spawn_logged(program: &str, args: &[String], log: &PathBuf) -> Child {
    let out = File::create(log).expect("create a log file");
    let err = out.try_clone().expect("clone the log file handle");
    Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} (is it installed? scripts/test installs it): {e}"))
}

/// Waits up to `timeout`; returns the exit code and whether the child had to be killed.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> (Option<i32>, bool) {
    let deadline = Instant::now() + timeout;
    let polls = timeout.as_millis() / POLL.as_millis() + 1;
    for _ in 0..polls {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return (status.code(), false);
        }
        if Instant::now() > deadline {
            break;
        }
        sleep(POLL);
    }
    let _ = child.kill();
    let status = child.wait().expect("reap a killed child");
    (status.code(), true)
}

/// A `turnutils_uclient` command line being built.
#[derive(Debug, Clone)]
pub struct Uclient {
    args: Vec<String>,
    port: u16,
    transport: &'static str,
    clients: u32,
    messages: u32,
}

impl Uclient {
    /// UDP, ChannelData, one client, [`super::LOAD_MESSAGES`] messages of [`super::VOIP_PAYLOAD`] bytes, to
    /// `server`'s peer, as [`super::USER`].
    pub fn new(server: &Server) -> Uclient {
        let peer = server.peer_port().to_string();
        let length = super::VOIP_PAYLOAD.to_string();
        let args = ["-e", "127.0.0.1", "-r", &peer, "-l", &length];
        Uclient {
            args: args.iter().map(ToString::to_string).collect(),
            port: server.turn_port(),
            transport: "udp",
            clients: 1,
            messages: super::LOAD_MESSAGES,
        }
        .user(super::USER, super::PASSWORD)
    }

    fn flag(mut self, flag: &str) -> Uclient {
        self.args.push(flag.to_string());
        self
    }

    fn option(self, name: &str, value: &str) -> Uclient {
        let mut this = self.without(name);
        this.args.extend([name.to_string(), value.to_string()]);
        this
    }

    /// TURN over TCP.
    pub fn tcp(mut self) -> Uclient {
        self.transport = "tcp";
        self.flag("-t")
    }

    /// TURN over TLS, on the server's TLS port.
    pub fn tls(mut self, server: &Server) -> Uclient {
        self.port = server.tls_port();
        self.transport = "tls";
        self.flag("-t").flag("-S")
    }

    /// RFC 6062 TCP relays (`-T`, which implies `-t -y -c`): clients pair up and connect to each other's relayed
    /// TCP address (Connect, ConnectionAttempt, ConnectionBind).
    pub fn tcp_relay(mut self) -> Uclient {
        self.transport = "tcp";
        self.flag("-T")
    }

    /// Clients send to each other's relayed addresses (`-y`) instead of to the echoing peer.
    pub fn client_to_client(self) -> Uclient {
        self.flag("-y")
    }

    /// An IPv6 relayed address (`-x`, RFC 6156 REQUESTED-ADDRESS-FAMILY) towards the echoing peer on `::1`.
    pub fn ipv6_relay(self) -> Uclient {
        self.option("-e", "::1").flag("-x")
    }

    /// Send and Data indications instead of channels (`-s`).
    pub fn send_indications(self) -> Uclient {
        self.flag("-s")
    }

    /// No RTCP sessions (`-c`): every session is a client with 2 allocations (probe and RTP).
    pub fn no_rtcp(self) -> Uclient {
        self.flag("-c")
    }

    /// Prints each request and response (`-v`).
    pub fn verbose(self) -> Uclient {
        self.flag("-v")
    }

    /// `-m`: concurrent sessions (RTP and RTCP ones pair up as one client unless [`Uclient::no_rtcp`]).
    pub fn clients(mut self, m: u32) -> Uclient {
        self.clients = m;
        self
    }

    /// `-n`: messages per client.
    pub fn messages(mut self, n: u32) -> Uclient {
        self.messages = n;
        self
    }

    /// Static long-term credentials.
    pub fn user(self, user: &str, password: &str) -> Uclient {
        self.without("-W").option("-u", user).option("-w", password)
    }

    /// TURN REST credentials: uclient makes `expiry:user` and its HMAC-SHA1 password from `secret`.
    pub fn rest(self, user: &str, secret: &str) -> Uclient {
        self.without("-w").option("-u", user).option("-W", secret)
    }

    fn without(mut self, name: &str) -> Uclient {
        if let Some(i) = self.args.iter().position(|a| a == name) {
            self.args.drain(i..i + 2);
        }
        self
    }

    /// The client transport, as the relay's metrics label it: `udp`, `tcp` or `tls`.
    pub fn transport(&self) -> &'static str {
        self.transport
    }

    /// Messages the clients send in all: `-m` times `-n`.
    pub fn expected_messages(&self) -> u64 {
        u64::from(self.clients) * u64::from(self.messages)
    }

    /// Runs it to the end (bounded by a generous timeout).
    pub fn run(&self) -> ToolOutput {
        let mut args = self.args.clone();
        args.extend([
            "-m".into(),
            self.clients.to_string(),
            "-n".into(),
            self.messages.to_string(),
        ]);
        args.extend(["-p".into(), self.port.to_string(), "127.0.0.1".into()]);
        run("turnutils_uclient", &args, UCLIENT_TIMEOUT)
    }
}

/// `turnutils_peer`, echoing on a port and the next one; killed on drop.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    log: PathBuf,
}

impl Peer {
    /// Starts the peer on `127.0.0.1:port` (and `port + 1`) and waits until it listens.
    pub fn start(port: u16) -> Peer {
        Peer::start_on("127.0.0.1", port)
    }

    /// `turnutils_peer` echoing on `ip` (e.g. `::1`), on `port` and the next one.
    pub fn start_on(ip: &str, port: u16) -> Peer {
        let log = unique_path("peer-output");
        let args = ["-L".to_string(), ip.to_string(), "-p".to_string(), port.to_string()];
        let mut peer = Peer {
            child: spawn_logged("turnutils_peer", &args, &log),
            log,
        };
        peer.wait_listening(ip, port);
        peer
    }

    fn wait_listening(&mut self, ip: &str, port: u16) {
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().expect("poll turnutils_peer") {
                let text = fs::read_to_string(&self.log).unwrap_or_default();
                panic!("turnutils_peer exited early ({status}):\n{text}");
            }
            let taken = |p: u16| std::net::UdpSocket::bind((ip, p)).is_err();
            if taken(port) && taken(port + 1) {
                return;
            }
            sleep(POLL);
        }
        panic!("turnutils_peer did not bind {ip} port {port} within 5 s");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}
