//! A webhook receiver on loopback for the end-to-end tests: a plain HTTP/1.1 server on a thread that records
//! every POST and answers `500` to the first `fail` of them, `200` after.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request: its headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Posted {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Posted {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// The receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Posted>>>,
}

impl Receiver {
    pub fn start(fail: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Posted>>> = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut r = BufReader::new(stream);
                let Some(p) = read_request(&mut r) else { continue };
                let n = {
                    let mut l = log.lock().expect("lock");
                    l.push(p);
                    l.len()
                };
                let status = if n <= fail {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = r.get_mut().write_all(reply.as_bytes());
            }
        });
        Receiver { addr, seen }
    }

    pub fn seen(&self) -> Vec<Posted> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits until `done` holds for what arrived, up to `limit`.
    pub fn wait(&self, limit: Duration, done: impl Fn(&[Posted]) -> bool) -> Vec<Posted> {
        let end = Instant::now() + limit;
        loop {
            let seen = self.seen();
            if done(&seen) || Instant::now() > end {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn read_request(r: &mut BufReader<std::net::TcpStream>) -> Option<Posted> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Posted { headers, body })
}
