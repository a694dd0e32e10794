//! ICE-TCP connections (RFC 6544, passive side): each carries RFC 4571 frames, a 16-bit big-endian length
//! then one STUN, DTLS, RTP or RTCP packet. Written here because str0m leaves framing and sockets to its user.

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A connection that has carried no frame this long is closed. ICE consent checks arrive every few seconds.
const IDLE: Duration = Duration::from_secs(30);
/// Bytes queued for a slow connection before frames are dropped (media tolerates loss, not unbounded delay).
const MAX_QUEUED: usize = 512 * 1024;
/// The largest frame RFC 4571 allows.
const MAX_FRAME: usize = 65_535;

struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    /// Received bytes not yet a whole frame.
    inbuf: Vec<u8>,
    /// Framed bytes not yet written.
    outbuf: Vec<u8>,
    writable_wanted: bool,
    last_frame: Instant,
}

/// The shard's ICE-TCP connections, by mio token and by remote address.
pub struct TcpConns {
    conns: HashMap<Token, Conn>,
    by_remote: HashMap<SocketAddr, Token>,
    next: usize,
    first: usize,
}

impl TcpConns {
    /// Connections get tokens from `first` on.
    pub fn new(first: usize) -> Self {
        Self {
            conns: HashMap::new(),
            by_remote: HashMap::new(),
            next: first,
            first,
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Takes an accepted connection.
    pub fn add(&mut self, mut stream: TcpStream, remote: SocketAddr, now: Instant, poll: &Poll) {
        let token = self.token();
        if let Err(e) = poll.registry().register(&mut stream, token, Interest::READABLE) {
            tracing::debug!(%remote, error = %e, "ice-tcp register");
            return;
        }
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            stream,
            remote,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            writable_wanted: false,
            last_frame: now,
        };
        if let Some(old) = self.by_remote.insert(remote, token) {
            self.close(old, poll);
        }
        self.conns.insert(token, conn);
    }

    fn token(&mut self) -> Token {
        loop {
            let t = Token(self.next);
            self.next = if self.next == usize::MAX {
                self.first
            } else {
                self.next + 1
            };
            if !self.conns.contains_key(&t) {
                return t;
            }
        }
    }

    /// Reads what arrived and hands each whole frame to `frame`; writes what is queued when writable.
    pub fn on_event(
        &mut self,
        token: Token,
        ev: &mio::event::Event,
        now: Instant,
        poll: &Poll,
        mut frame: impl FnMut(SocketAddr, &[u8]),
    ) {
        let Some(conn) = self.conns.get_mut(&token) else { return };
        let mut alive = true;
        if ev.is_readable() {
            alive = read(conn, now, &mut frame);
        }
        if alive && ev.is_writable() {
            alive = write(conn, poll, token);
        }
        if !alive {
            self.close(token, poll);
        }
    }

    /// Queues one frame to `remote`, if a connection from there is open.
    pub fn send(&mut self, remote: SocketAddr, data: &[u8], poll: &Poll) {
        let Some(&token) = self.by_remote.get(&remote) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&token) else { return };
        if data.len() > MAX_FRAME || conn.outbuf.len() + data.len() + 2 > MAX_QUEUED {
            return;
        }
        conn.outbuf.extend_from_slice(&(data.len() as u16).to_be_bytes());
        conn.outbuf.extend_from_slice(data);
        if !write(conn, poll, token) {
            self.close(token, poll);
        }
    }

    /// Closes connections that carried no frame for [`IDLE`].
    pub fn close_idle(&mut self, now: Instant, poll: &Poll) {
        let idle: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.last_frame) > IDLE)
            .map(|(t, _)| *t)
            .collect();
        for t in idle {
            self.close(t, poll);
        }
    }

    fn close(&mut self, token: Token, poll: &Poll) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = poll.registry().deregister(&mut conn.stream);
            if self.by_remote.get(&conn.remote) == Some(&token) {
                self.by_remote.remove(&conn.remote);
            }
        }
    }
}

/// Reads until the socket would block; false when the connection is finished.
fn read(conn: &mut Conn, now: Instant, frame: &mut impl FnMut(SocketAddr, &[u8])) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match conn.stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => conn.inbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    let mut at = 0;
    while conn.inbuf.len() >= at + 2 {
        let len = usize::from(u16::from_be_bytes([conn.inbuf[at], conn.inbuf[at + 1]]));
        if conn.inbuf.len() < at + 2 + len {
            break;
        }
        conn.last_frame = now;
        frame(conn.remote, &conn.inbuf[at + 2..at + 2 + len]);
        at += 2 + len;
    }
    conn.inbuf.drain(..at);
    true
}

/// Writes what is queued; asks for writability when the socket is full. False when the connection broke.
fn write(conn: &mut Conn, poll: &Poll, token: Token) -> bool {
    while !conn.outbuf.is_empty() {
        match conn.stream.write(&conn.outbuf) {
            Ok(0) => return false,
            Ok(n) => {
                conn.outbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    let want = !conn.outbuf.is_empty();
    if want != conn.writable_wanted {
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if poll.registry().reregister(&mut conn.stream, token, interest).is_err() {
            return false;
        }
        conn.writable_wanted = want;
    }
    true
}
