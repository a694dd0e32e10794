//! The shard's side of TCP allocations (RFC 6062): peers connecting to a relayed TCP address, connections to
//! peers finishing, and client data connections spliced to peer connections after ConnectionBind.

use super::*;
use crate::driver::stream::Pipe;
use std::io::{self, Read, Write};

/// Most bytes buffered towards a slow peer before the pipe is closed.
const MAX_PIPE_BUFFER: usize = 1 << 20;

impl Shard {
    /// Peers connecting to the relayed address of TCP allocation `relay`.
    pub(super) fn on_tcp_peer_accept(&mut self, relay: RelayHandle, now: Instant) {
        loop {
            let accepted = match self.relays.get(relay) {
                Some(RelaySocket::Tcp(l)) => l.accept(),
                _ => return,
            };
            let (stream, peer) = match accepted {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if let Some(id) = self.server.handle_peer_accepted(relay, peer, now) {
                self.relays.park(id, stream);
            }
            self.flush(now);
        }
    }

    /// An outgoing connection to a peer (Connect) finished or failed.
    pub(super) fn on_connected(&mut self, id: u32, now: Instant) {
        let Some((relay, stream)) = self.relays.take_connecting(id) else {
            return;
        };
        let ok = match (stream.take_error(), stream.peer_addr()) {
            (Ok(None), Ok(_)) => true,
            // A spurious wake-up before the handshake ends: keep waiting.
            (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => {
                return self.relays.resume_connecting(id, relay, stream);
            }
            _ => false,
        };
        if ok {
            self.relays.park(id, stream);
        }
        self.server.handle_peer_connected(relay, id, ok, now);
        self.flush(now);
    }

    /// Splices client connection `idx` with parked peer connection `id`.
    pub(super) fn start_pipe(&mut self, idx: usize, id: u32) {
        let parked = self.relays.parked.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        let Some((mut peer, _)) = parked else {
            self.server.connection_unbound(id);
            return self.close_conn(idx);
        };
        let token = Token(PIPE_TOKEN_BASE + idx);
        if self
            .poll
            .registry()
            .register(&mut peer, token, Interest::READABLE)
            .is_err()
        {
            self.server.connection_unbound(id);
            return self.close_conn(idx);
        }
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            self.server.connection_unbound(id);
            return;
        };
        let leftover = conn.take_input();
        conn.pipe = Some(Pipe {
            id,
            peer,
            to_peer: Vec::new(),
        });
        if !leftover.is_empty() {
            self.pipe_to_peer(idx, &leftover);
        }
        // The peer may have sent data while parked; it waits in the socket.
        self.on_pipe_peer(idx, false, Instant::now());
    }

    /// Closes the splices whose allocation has gone (RFC 6062 §5.5: its connections close with it).
    pub(super) fn close_revoked_pipes(&mut self) {
        let revoked: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let id = c.as_ref()?.pipe.as_ref()?.id;
                self.server.connection_revoked(id).then_some(i)
            })
            .collect();
        for idx in revoked {
            tracing::debug!(conn = idx, "allocation gone; its TCP connection closes");
            self.close_conn(idx);
        }
    }

    /// Bytes from a spliced client connection.
    pub(super) fn pipe_client_input(&mut self, idx: usize, outcome: ReadOutcome) {
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        let bytes = conn.take_input();
        if !bytes.is_empty() {
            self.pipe_to_peer(idx, &bytes);
        }
        if matches!(outcome, ReadOutcome::Closed) {
            self.close_conn(idx);
        }
    }

    fn pipe_to_peer(&mut self, idx: usize, bytes: &[u8]) {
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        let Some(pipe) = conn.pipe.as_mut() else { return };
        self.tcp_relayed[0] += bytes.len() as u64;
        pipe.to_peer.extend_from_slice(bytes);
        if write_out(&mut pipe.peer, &mut pipe.to_peer).is_err() || pipe.to_peer.len() > MAX_PIPE_BUFFER {
            return self.close_conn(idx);
        }
        let interest = if pipe.to_peer.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        let _ = self
            .poll
            .registry()
            .reregister(&mut pipe.peer, Token(PIPE_TOKEN_BASE + idx), interest);
    }

    /// The peer side of a pipe is readable or writable.
    pub(super) fn on_pipe_peer(&mut self, idx: usize, writable: bool, _now: Instant) {
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        let Some(mut pipe) = conn.pipe.take() else { return };
        let mut closed = writable && write_out(&mut pipe.peer, &mut pipe.to_peer).is_err();
        while !closed {
            match pipe.peer.read(&mut self.read_scratch) {
                Ok(0) => closed = true,
                Ok(n) => {
                    self.tcp_relayed[1] += n as u64;
                    closed = !conn.send(&self.read_scratch[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => closed = true,
            }
        }
        conn.watch_writable(self.poll.registry(), Token(CONN_TOKEN_BASE + idx));
        conn.pipe = Some(pipe);
        if closed {
            self.close_conn(idx);
        }
    }
}

/// Writes `buf` to `stream` until it would block; what was written leaves `buf`.
fn write_out(stream: &mut mio::net::TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
