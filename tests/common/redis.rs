//! A real `redis-server` (Debian's) for a test, on a Unix socket in a temporary directory, so tests never share a
//! Redis or a port. Used by the root crate's cluster tests and by `cluster/tests/redis.rs` (through `#[path]`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`; killed, and its directory removed, on drop.
pub struct Redis {
    child: Child,
    dir: PathBuf,
}

impl Redis {
    /// Starts it and waits for its socket.
    pub fn start(name: &str) -> Redis {
        let dir = std::env::temp_dir().join(format!("hualu-redis-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut r = Redis {
            child: spawn(&dir),
            dir,
        };
        r.wait_up();
        r
    }

    /// Its Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// `cluster.redis_url` for it.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn wait_up(&mut self) {
        let until = Instant::now() + Duration::from_secs(10);
        while !self.socket().exists() {
            assert!(Instant::now() < until, "redis-server did not open its socket");
            assert!(self.child.try_wait().expect("poll").is_none(), "redis-server exited");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it and starts a new, empty one on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Kills it (SIGKILL: nothing is saved).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts a new, empty one on the same socket, after [`Redis::stop`].
    pub fn start_again(&mut self) {
        self.child = spawn(&self.dir);
        self.wait_up();
    }
}

fn spawn(dir: &std::path::Path) -> Child {
    Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"])
        .arg(dir.join("redis.sock"))
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)")
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
