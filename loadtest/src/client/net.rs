//! A participant's network: one non-blocking UDP socket (registered with its media shard's poll), the impaired
//! uplink and downlink its datagrams cross, and, with `transport = "relay"`, the TURN allocation every datagram
//! travels inside. With an unimpaired profile datagrams go straight through; otherwise each one's fate (dropped,
//! or delivered at a time) comes from the profile's links, and delivered ones wait in a delay line until then.
//!
//! The impairment sits outside TURN, as a phone's radio link does: the uplink carries what the client sends to
//! the relay, the downlink what the relay sends back.

use super::Ctx;
use crate::impair::{DelayLine, Fate, Link};
use crate::relay::{Received, Relay, RelayEvent};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A datagram held back by the network model.
type Held = (SocketAddr, Vec<u8>);

/// What one read gave.
pub enum Recv {
    /// Nothing waiting.
    Empty,
    /// A datagram for the WebRTC peer, now in [`Net::buffer`], from this address.
    Ready(SocketAddr),
    /// A datagram taken by the downlink model (dropped, or delayed), or by TURN itself.
    Held,
}

/// Held buffers a path keeps for reuse; more than a few seconds of a call's packets are freed instead.
const SPARE_BUFFERS: usize = 256;

/// One direction's model and its queue.
struct Path {
    link: Link,
    line: DelayLine<Held>,
    /// Buffers of datagrams already let through, reused for the next ones held: once a path has warmed up,
    /// holding a datagram allocates nothing.
    spare: Vec<Vec<u8>>,
}

impl Path {
    /// Holds a copy of `data` (to or from `addr`) until `at_ms`, in a reused buffer.
    fn hold(&mut self, at_ms: f64, addr: SocketAddr, data: &[u8]) {
        let mut buf = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(1500));
        buf.clear();
        buf.extend_from_slice(data);
        self.line.push(at_ms, (addr, buf));
    }

    /// Gives a let-through datagram's buffer back for reuse.
    fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(buf);
        }
    }
}

/// The socket and the two directions.
pub struct Net {
    udp: UdpSocket,
    local: SocketAddr,
    profile: String,
    source: Option<IpAddr>,
    up: Option<Path>,
    down: Option<Path>,
    relay: Option<Relay>,
    next_relay: Option<Instant>,
    buf: Vec<u8>,
    start: usize,
    len: usize,
    /// A frame being built for TURN (reused: no allocation per packet).
    framed: Vec<u8>,
    /// Datagrams the kernel refused (full buffers): the harness is overloaded.
    pub send_errors: u64,
    /// Why the relay stopped carrying media, once it did.
    pub relay_failed: Option<String>,
}

impl Net {
    /// A socket on `source` (or loopback), with the links of `profile`.
    pub fn bind(ctx: &Ctx, profile: &str, source: Option<IpAddr>, seed: u64) -> std::io::Result<Net> {
        let udp = bind(source)?;
        Ok(Net::with_socket(ctx, udp, profile, source, seed, None))
    }

    /// A socket already bound (and perhaps holding a TURN allocation made through it).
    pub fn with_socket(
        ctx: &Ctx,
        udp: std::net::UdpSocket,
        profile: &str,
        source: Option<IpAddr>,
        seed: u64,
        relay: Option<Relay>,
    ) -> Net {
        let _ = udp.set_nonblocking(true);
        let local = udp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (up, down) = match ctx.profiles.get(profile) {
            Some(p) if !p.is_clean() => (Some(path(&p.up, seed ^ 0x5550)), Some(path(&p.down, seed ^ 0xd0d0))),
            _ => (None, None),
        };
        Net {
            udp: UdpSocket::from_std(udp),
            local,
            profile: profile.to_string(),
            source,
            up,
            down,
            next_relay: relay.as_ref().map(|_| Instant::now()),
            relay,
            buf: vec![0; 2048],
            start: 0,
            len: 0,
            framed: Vec::with_capacity(2048),
            send_errors: 0,
            relay_failed: None,
        }
    }

    /// The address the WebRTC peer is known by: the relayed address through TURN, else the socket's.
    pub fn local(&self) -> SocketAddr {
        self.relay.as_ref().and_then(Relay::relayed).unwrap_or(self.local)
    }

    /// The socket's own address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether media goes through TURN.
    pub fn relayed(&self) -> bool {
        self.relay.is_some()
    }

    /// Lets TURN carry data to and from `peer` (the SFU's media address).
    pub fn permit(&mut self, peer: SocketAddr, now: Instant) {
        if let Some(r) = self.relay.as_mut() {
            if let Err(e) = r.permit(peer, now) {
                self.relay_failed.get_or_insert(e.to_string());
            }
            self.next_relay = Some(now);
        }
    }

    /// The profile's name.
    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// The datagram last made ready.
    pub fn buffer(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// Registers the socket with a shard's poll.
    pub fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        registry.register(&mut self.udp, token, Interest::READABLE)
    }

    /// Takes the socket out of a shard's poll.
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.udp);
    }

    /// Reads one datagram, through the downlink (and out of TURN's framing).
    pub fn recv(&mut self, ctx: &Ctx, now: Instant) -> Recv {
        let (n, from) = match self.udp.recv_from(&mut self.buf) {
            Ok(x) => x,
            Err(_) => return Recv::Empty,
        };
        let Some(down) = &mut self.down else {
            return self.arrived(now, from, 0, n);
        };
        if let Fate::Deliver { at_ms } = down.link.send(ctx.ms(now), n) {
            down.hold(at_ms, from, &self.buf[..n]);
        }
        Recv::Held
    }

    /// The next held datagram for the peer whose time has come, now in [`Net::buffer`].
    pub fn pop_delivered(&mut self, ctx: &Ctx, now: Instant) -> Option<SocketAddr> {
        loop {
            let down = self.down.as_mut()?;
            let (from, data) = down.line.pop_due(ctx.ms(now))?;
            let len = data.len();
            self.buf[..len].copy_from_slice(&data);
            down.recycle(data);
            if let Recv::Ready(from) = self.arrived(now, from, 0, len) {
                return Some(from);
            }
        }
    }

    /// A datagram in `buf[start..start + len]` came off the wire from `from`: unframe it if it is TURN's.
    fn arrived(&mut self, now: Instant, from: SocketAddr, start: usize, len: usize) -> Recv {
        let Some(relay) = self.relay.as_mut() else {
            (self.start, self.len) = (start, len);
            return Recv::Ready(from);
        };
        let data = &self.buf[start..start + len];
        // The payload is a view into `buf`: keep its place, not a copy.
        let origin = self.buf.as_ptr() as usize;
        let got = match relay.receive(now, from, self.local, data) {
            Received::Peer(peer, payload) => Some((peer, payload.as_ptr() as usize - origin, payload.len())),
            Received::Handled | Received::Ignored => None,
        };
        self.next_relay = Some(now);
        if let Some((peer, held)) = relay.take_held() {
            self.buf[..held.len()].copy_from_slice(&held);
            (self.start, self.len) = (0, held.len());
            return Recv::Ready(peer);
        }
        match got {
            Some((peer, s, l)) => {
                (self.start, self.len) = (s, l);
                Recv::Ready(peer)
            }
            None => Recv::Held,
        }
    }

    /// Sends a datagram from the peer, through TURN when relayed, then the uplink.
    pub fn send(&mut self, ctx: &Ctx, now: Instant, to: SocketAddr, data: &[u8]) {
        let Some(relay) = self.relay.as_mut() else {
            self.send_raw(ctx, now, to, data);
            return self.flush(ctx, now);
        };
        let mut framed = std::mem::take(&mut self.framed);
        match relay.wrap(now, to, data, &mut framed) {
            Ok(()) => {
                let server = relay.server();
                self.send_raw(ctx, now, server, &framed);
            }
            // Before the permission is up, ICE's checks are refused here; ICE retries them.
            Err(_) => self.send_errors += u64::from(relay.permitted()),
        }
        self.framed = framed;
        self.flush(ctx, now);
    }

    fn send_raw(&mut self, ctx: &Ctx, now: Instant, to: SocketAddr, data: &[u8]) {
        match &mut self.up {
            None => {
                if self.udp.send_to(data, to).is_err() {
                    self.send_errors += 1;
                }
            }
            Some(up) => {
                if let Fate::Deliver { at_ms } = up.link.send(ctx.ms(now), data.len()) {
                    up.hold(at_ms, to, data);
                }
            }
        }
    }

    /// Sends the held datagrams whose time has come, and what TURN itself has to say.
    pub fn flush(&mut self, ctx: &Ctx, now: Instant) {
        self.run_relay(ctx, now);
        let Some(up) = &mut self.up else { return };
        while let Some((to, data)) = up.line.pop_due(ctx.ms(now)) {
            if self.udp.send_to(&data, to).is_err() {
                self.send_errors += 1;
            }
            up.recycle(data);
        }
    }

    /// TURN's own timers and messages (refreshes, permissions, channel binds), when due.
    fn run_relay(&mut self, ctx: &Ctx, now: Instant) {
        if self.next_relay.is_none_or(|t| t > now) {
            return;
        }
        let Some(relay) = self.relay.as_mut() else { return };
        let next = relay.handle_timeout(now);
        while let Some(e) = relay.poll_event() {
            if let RelayEvent::Failed(e) = e {
                self.relay_failed.get_or_insert(e.to_string());
            }
        }
        self.next_relay = Some(next);
        self.send_relay_transmits(ctx, now);
    }

    /// Sends what TURN itself wants sent to its server.
    fn send_relay_transmits(&mut self, ctx: &Ctx, now: Instant) {
        let Some(relay) = self.relay.as_mut() else { return };
        let server = relay.server();
        let out: Vec<Vec<u8>> = std::iter::from_fn(|| relay.poll_transmit(now)).collect();
        for t in out {
            self.send_raw(ctx, now, server, &t);
        }
    }

    /// When the next held datagram or TURN timer is due, either way.
    pub fn next_due(&self, ctx: &Ctx) -> Option<Instant> {
        let up = self.up.as_ref().and_then(|p| p.line.next_due()).map(|t| ctx.instant(t));
        let down = self
            .down
            .as_ref()
            .and_then(|p| p.line.next_due())
            .map(|t| ctx.instant(t));
        [up, down, self.next_relay].into_iter().flatten().min()
    }

    /// Nothing gets through, either way, for `outage`. An unimpaired network gets links for the purpose.
    pub fn outage(&mut self, ctx: &Ctx, now: Instant, outage: Duration) {
        let from = ctx.ms(now);
        let until = from + outage.as_secs_f64() * 1000.0;
        for p in [&mut self.up, &mut self.down] {
            let p = p.get_or_insert_with(|| path(&crate::impair::LinkParams::clean(), 0));
            p.link.set_outage(from, until);
        }
    }

    /// A new socket (a new local address), as after a switch from Wi-Fi to mobile data. Through TURN the
    /// allocation stays with the old socket's address, so a relayed participant keeps its socket (and its
    /// relayed address): only ICE restarts.
    pub fn rebind(&mut self, ctx: &Ctx, seed: u64, registry: &Registry, token: Token) -> std::io::Result<()> {
        if self.relay.is_some() {
            return Ok(());
        }
        let source = self.source.map(|_| ctx.source_ip(seed.wrapping_add(1))).unwrap_or(None);
        let udp = bind(source.or(self.source))?;
        let _ = udp.set_nonblocking(true);
        self.deregister(registry);
        self.udp = UdpSocket::from_std(udp);
        self.local = self.udp.local_addr()?;
        self.register(registry, token)
    }

    /// Releases the TURN allocation, if any.
    pub fn close(&mut self, ctx: &Ctx, now: Instant) {
        let Some(relay) = self.relay.as_mut() else { return };
        relay.delete(now);
        // The delete goes out at once, past the uplink's delay line.
        self.up = None;
        self.send_relay_transmits(ctx, now);
    }
}

fn path(params: &crate::impair::LinkParams, seed: u64) -> Path {
    Path {
        link: Link::new(params, seed),
        line: DelayLine::new(),
        spare: Vec::new(),
    }
}

/// A UDP socket on `source` (or loopback), any port.
pub fn bind(source: Option<IpAddr>) -> std::io::Result<std::net::UdpSocket> {
    let ip = source.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impair::LinkParams;

    /// A held datagram comes back intact, and the next one held reuses its buffer instead of allocating.
    #[test]
    fn a_path_reuses_the_buffers_it_lets_through() {
        let mut p = path(&LinkParams::clean(), 1);
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        p.hold(5.0, addr, b"first datagram");
        assert!(p.line.pop_due(4.0).is_none());
        let (to, data) = p.line.pop_due(5.0).expect("due at 5 ms");
        assert_eq!((to, data.as_slice()), (addr, &b"first datagram"[..]));
        let reused = data.as_ptr();
        p.recycle(data);
        p.hold(6.0, addr, b"second");
        let (_, data) = p.line.pop_due(6.0).expect("due at 6 ms");
        assert_eq!((data.as_ptr(), data.as_slice()), (reused, &b"second"[..]));
    }

    /// The spare pool is bounded: a burst let through at once keeps at most [`SPARE_BUFFERS`] for later.
    #[test]
    fn the_spare_pool_is_bounded() {
        let mut p = path(&LinkParams::clean(), 1);
        for _ in 0..SPARE_BUFFERS + 50 {
            p.recycle(Vec::with_capacity(16));
        }
        assert_eq!(p.spare.len(), SPARE_BUFFERS);
    }
}
