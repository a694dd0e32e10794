//! TCP and TLS client connections (RFC 8656 §3.1): a byte stream carrying STUN messages and ChannelData
//! (padded to four bytes), cut into frames here and handed to the core one by one.

use crate::core::{ClientAddr, Transport};
use rustls::ServerConnection;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// Most bytes buffered towards a slow client; past it relayed data is dropped, as a full UDP buffer would.
const MAX_PENDING: usize = 1 << 20;
/// The largest frame: a STUN message of maximum length with its header.
const MAX_FRAME: usize = 65_535 + 20;

/// One client connection.
pub struct Conn {
    /// The socket.
    pub stream: mio::net::TcpStream,
    /// The client's address.
    pub addr: SocketAddr,
    /// Index of the listener it came through.
    pub listener: u16,
    /// TLS state, for TLS listeners.
    pub tls: Option<Box<ServerConnection>>,
    /// Bytes received; those before `rstart` are framed already.
    rbuf: Vec<u8>,
    rstart: usize,
    /// Bytes not yet written to the socket (plain TCP only; rustls buffers its own).
    wbuf: Vec<u8>,
    /// Last time a byte arrived, for the idle timeout.
    pub last_read: std::time::Instant,
    /// Whether WRITABLE interest is registered.
    pub want_write: bool,
    /// Set once a ConnectionBind turned this into a raw pipe to a peer.
    pub pipe: Option<Pipe>,
}

/// A client data connection spliced to a peer connection (RFC 6062 ConnectionBind): bytes flow raw.
pub struct Pipe {
    /// The connection id it was bound under.
    pub id: u32,
    /// The peer connection.
    pub peer: mio::net::TcpStream,
    /// Bytes from the client not yet written to the peer.
    pub to_peer: Vec<u8>,
}

/// What one read produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes arrived; the socket may hold more: frame them, then read again.
    More,
    /// The socket has nothing more for now (edge-triggered: wait for the next event).
    Drained,
    /// Closed by the peer, or broken.
    Closed,
}

impl Conn {
    /// A new connection.
    pub fn new(
        stream: mio::net::TcpStream,
        addr: SocketAddr,
        listener: u16,
        tls: Option<Box<ServerConnection>>,
        now: std::time::Instant,
    ) -> Self {
        Self {
            stream,
            addr,
            listener,
            tls,
            rbuf: Vec::new(),
            rstart: 0,
            wbuf: Vec::new(),
            last_read: now,
            want_write: false,
            pipe: None,
        }
    }

    /// The client as the core knows it.
    pub fn client(&self) -> ClientAddr {
        ClientAddr {
            transport: self.transport(),
            addr: self.addr,
            listener: self.listener,
        }
    }

    /// TCP or TLS.
    pub fn transport(&self) -> Transport {
        if self.tls.is_some() {
            Transport::Tls
        } else {
            Transport::Tcp
        }
    }

    /// Reads one chunk (at most `scratch.len()` bytes from the socket) into the frame buffer. Call again while
    /// it returns [`ReadOutcome::More`], framing in between, so the buffer never holds more than a chunk and
    /// a partial frame.
    pub fn read(&mut self, scratch: &mut [u8]) -> ReadOutcome {
        if self.rstart > 0 {
            self.rbuf.drain(..self.rstart);
            self.rstart = 0;
        }
        match self.tls.as_mut() {
            None => read_plain(&mut self.stream, &mut self.rbuf, scratch),
            Some(tls) => read_tls(&mut self.stream, tls, &mut self.rbuf, scratch),
        }
    }

    /// The next complete frame, if any: call [`Conn::consume`] with its length after handling it.
    pub fn next_frame(&self) -> Result<Option<&[u8]>, ()> {
        let b = &self.rbuf[self.rstart..];
        if b.len() < 4 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let total = match b[0] >> 6 {
            0b00 => 20 + len,
            0b01 => (4 + len + 3) & !3,
            _ => return Err(()),
        };
        if total > MAX_FRAME + 3 {
            return Err(());
        }
        Ok((b.len() >= total).then(|| &b[..total]))
    }

    /// Everything received and not yet framed, for a raw pipe.
    pub fn take_input(&mut self) -> Vec<u8> {
        let mut input = std::mem::take(&mut self.rbuf);
        input.drain(..std::mem::take(&mut self.rstart));
        input
    }

    /// Marks the next `n` bytes as framed (no copy; [`Conn::read`] compacts).
    pub fn consume(&mut self, n: usize) {
        self.rstart = (self.rstart + n).min(self.rbuf.len());
        if self.rstart == self.rbuf.len() {
            self.rbuf.clear();
            self.rstart = 0;
        }
    }

    /// Queues `bytes` and writes what the socket takes. Returns false when the client is too slow and the
    /// bytes were dropped.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        if self.pending() + bytes.len() > MAX_PENDING {
            return false;
        }
        match self.tls.as_mut() {
            Some(tls) => {
                let _ = tls.writer().write_all(bytes);
            }
            None => self.wbuf.extend_from_slice(bytes),
        }
        self.flush();
        true
    }

    /// Writes buffered bytes until the socket would block.
    pub fn flush(&mut self) {
        match self.tls.as_mut() {
            Some(tls) => {
                while tls.wants_write() {
                    if tls.write_tls(&mut self.stream).is_err() {
                        break;
                    }
                }
            }
            None => {
                while !self.wbuf.is_empty() {
                    match self.stream.write(&self.wbuf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            self.wbuf.drain(..n);
                        }
                    }
                }
            }
        }
    }

    /// Asks the poller for WRITABLE too while bytes wait to be written (`token` is this connection's).
    pub fn watch_writable(&mut self, registry: &mio::Registry, token: mio::Token) {
        if self.pending() > 0 && !self.want_write {
            self.want_write = true;
            let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
            let _ = registry.reregister(&mut self.stream, token, interest);
        }
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        match self.tls.as_ref() {
            Some(tls) if tls.wants_write() => MAX_PENDING / 2,
            Some(_) => 0,
            None => self.wbuf.len(),
        }
    }
}

fn read_plain(stream: &mut mio::net::TcpStream, rbuf: &mut Vec<u8>, scratch: &mut [u8]) -> ReadOutcome {
    loop {
        return match stream.read(scratch) {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => {
                rbuf.extend_from_slice(&scratch[..n]);
                ReadOutcome::More
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => ReadOutcome::Closed,
        };
    }
}

fn read_tls(
    stream: &mut mio::net::TcpStream,
    tls: &mut ServerConnection,
    rbuf: &mut Vec<u8>,
    scratch: &mut [u8],
) -> ReadOutcome {
    let outcome = loop {
        match tls.read_tls(stream) {
            Ok(0) => return ReadOutcome::Closed,
            Ok(_) => break ReadOutcome::More,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadOutcome::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return ReadOutcome::Closed,
        }
    };
    if tls.process_new_packets().is_err() {
        let _ = tls.write_tls(stream);
        return ReadOutcome::Closed;
    }
    if drain_plaintext(tls, rbuf, scratch).is_err() {
        return ReadOutcome::Closed;
    }
    while tls.wants_write() {
        if tls.write_tls(stream).is_err() {
            break;
        }
    }
    outcome
}

fn drain_plaintext(tls: &mut ServerConnection, rbuf: &mut Vec<u8>, scratch: &mut [u8]) -> Result<(), ()> {
    loop {
        match tls.reader().read(scratch) {
            Ok(0) => return Ok(()),
            Ok(n) => rbuf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return Err(()),
        }
        if rbuf.len() > 4 * MAX_FRAME {
            return Err(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// 300 KB of small ChannelData frames waiting at once: read chunk by chunk, every frame comes out and the
    /// connection stays open (reading everything before framing used to close it past 4 x 64 KB).
    #[test]
    fn a_burst_larger_than_any_buffer_is_framed_chunk_by_chunk() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, addr) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let frame = [0x40u8, 0x00, 0x00, 0x9c]
            .iter()
            .copied()
            .chain([7u8; 156])
            .collect::<Vec<u8>>();
        let frames = 300_000 / frame.len();
        let writer = std::thread::spawn(move || {
            for _ in 0..frames {
                client.write_all(&frame).expect("write");
            }
            client
        });
        let mut conn = Conn::new(mio::net::TcpStream::from_std(server), addr, 0, None, Instant::now());
        let mut scratch = vec![0u8; 65_536];
        let (mut seen, deadline) = (0, Instant::now() + Duration::from_secs(10));
        while seen < frames && Instant::now() < deadline {
            let outcome = conn.read(&mut scratch);
            assert_ne!(outcome, ReadOutcome::Closed, "connection dropped after {seen} frames");
            while let Ok(Some(f)) = conn.next_frame() {
                assert_eq!(f.len(), 160);
                let n = f.len();
                conn.consume(n);
                seen += 1;
            }
            if outcome == ReadOutcome::Drained {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let _client = writer.join().expect("writer");
        assert_eq!(seen, frames);
    }
}
