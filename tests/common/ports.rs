//! Cross-test exclusion, in this process or another one (nextest runs each test in its own process; `cargo test`
//! runs them as threads): lock files holding the owner's pid, taken over when that process is gone.
//!
//! [`PortBlock`]: loopback ports no other test uses at the same time. Blocks sit in 61000..65500, above Linux's
//! ephemeral range (32768..60999), so client sockets never land in them.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

/// Ports per block.
pub const BLOCK_SIZE: u16 = 500;
const FIRST_PORT: u16 = 61000;
const BLOCKS: u16 = 9;
/// Ports at the start of a block kept for listeners; the rest is the relay range.
const SERVICE_PORTS: u16 = 10;
/// How long to wait for a block when every one is taken.
const WAIT_FOR_BLOCK: Duration = Duration::from_secs(240);

/// The fixed places of each service inside a block.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    /// TURN over UDP and TCP (the same port number).
    Turn = 0,
    /// TURN over TLS.
    Tls = 1,
    /// The HTTP metrics endpoint.
    Metrics = 2,
    /// `turnutils_peer`: this port for RTP and the next one for RTCP.
    Peer = 3,
}

/// A claimed block of ports; released on drop.
#[derive(Debug)]
pub struct PortBlock {
    base: u16,
    _lock: LockFile,
}

impl PortBlock {
    /// Claims a free block, waiting (bounded) while all are in use.
    pub fn claim() -> PortBlock {
        let rounds = WAIT_FOR_BLOCK.as_millis() / 200;
        for _ in 0..rounds {
            if let Some(block) = (0..BLOCKS).find_map(try_claim) {
                return block;
            }
            sleep(Duration::from_millis(200));
        }
        panic!(
            "no free port block in {} after {WAIT_FOR_BLOCK:?}",
            lock_dir().display()
        );
    }

    /// The port of `service`.
    pub fn port(&self, service: Service) -> u16 {
        self.base + service as u16
    }

    /// The relay port range, inclusive.
    pub fn relay_range(&self) -> (u16, u16) {
        (self.base + SERVICE_PORTS, self.base + BLOCK_SIZE - 1)
    }
}

fn try_claim(index: u16) -> Option<PortBlock> {
    let base = FIRST_PORT + index * BLOCK_SIZE;
    let lock = LockFile::try_take(&format!("port-block-{index}"))?;
    // A block someone outside the tests uses is skipped (dropping the lock releases it).
    service_ports_free(base).then_some(PortBlock { base, _lock: lock })
}

/// A named lock file held by this process; removed on drop.
#[derive(Debug)]
pub struct LockFile(PathBuf);

impl LockFile {
    /// Takes the lock `name`, waiting (bounded by `wait`) while another test holds it.
    pub fn take(name: &str, wait: Duration) -> LockFile {
        let deadline = Instant::now() + wait;
        let rounds = wait.as_millis() / 100 + 1;
        for _ in 0..rounds {
            if let Some(lock) = LockFile::try_take(name) {
                return lock;
            }
            if Instant::now() > deadline {
                break;
            }
            sleep(Duration::from_millis(100));
        }
        panic!("the lock {name} in {} stayed taken for {wait:?}", lock_dir().display());
    }

    /// Takes the lock `name` if it is free or stale.
    pub fn try_take(name: &str) -> Option<LockFile> {
        let dir = lock_dir();
        fs::create_dir_all(&dir).expect("create the lock directory");
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(std::process::id().to_string().as_bytes())
                    .expect("write a lock file");
                Some(LockFile(path))
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if is_stale(&path) {
                    let _ = fs::remove_file(&path);
                }
                None
            }
            Err(e) => panic!("cannot create {}: {e}", path.display()),
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("hualu-e2e-locks")
}

/// A lock is stale when its process is gone, or when it stayed empty (a writer killed mid-way) for a minute.
fn is_stale(lock: &Path) -> bool {
    let Ok(text) = fs::read_to_string(lock) else {
        return false;
    };
    match text.trim().parse::<u32>() {
        Ok(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => fs::metadata(lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > Duration::from_secs(60)),
    }
}

fn service_ports_free(base: u16) -> bool {
    (base..base + SERVICE_PORTS).all(|port| {
        let addr = (Ipv4Addr::LOCALHOST, port);
        UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
    })
}
