//! A participant's network: one UDP socket, and the impaired uplink and downlink its datagrams cross. With an
//! unimpaired profile datagrams go straight through; otherwise each one's fate (dropped, or delivered at a
//! time) comes from the profile's links, and delivered ones wait in a delay line until then.

use super::Ctx;
use crate::impair::{DelayLine, Fate, Link};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// A datagram held back by the network model.
type Held = (SocketAddr, Vec<u8>);

/// What one read gave.
pub enum Recv {
    /// Nothing waiting.
    Empty,
    /// A datagram, now in [`Net::buffer`], from this address.
    Ready(SocketAddr),
    /// A datagram taken by the downlink model (dropped, or delayed).
    Held,
}

/// One direction's model and its queue.
struct Path {
    link: Link,
    line: DelayLine<Held>,
}

/// The socket and the two directions.
pub struct Net {
    udp: UdpSocket,
    local: SocketAddr,
    profile: String,
    source: Option<IpAddr>,
    up: Option<Path>,
    down: Option<Path>,
    buf: Vec<u8>,
    len: usize,
    /// Datagrams the kernel refused (full buffers): the harness is overloaded.
    pub send_errors: u64,
}

impl Net {
    /// A socket on `source` (or loopback), with the links of `profile`.
    pub async fn bind(ctx: &Ctx, profile: &str, source: Option<IpAddr>, seed: u64) -> std::io::Result<Net> {
        let udp = bind(source).await?;
        let local = udp.local_addr()?;
        let (up, down) = match ctx.profiles.get(profile) {
            Some(p) if !p.is_clean() => (
                Some(Path {
                    link: Link::new(&p.up, seed ^ 0x5550),
                    line: DelayLine::new(),
                }),
                Some(Path {
                    link: Link::new(&p.down, seed ^ 0xd0d0),
                    line: DelayLine::new(),
                }),
            ),
            _ => (None, None),
        };
        Ok(Net {
            udp,
            local,
            profile: profile.to_string(),
            source,
            up,
            down,
            buf: vec![0; 2048],
            len: 0,
            send_errors: 0,
        })
    }

    /// The socket's address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The profile's name.
    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// The datagram last made ready.
    pub fn buffer(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Waits until the socket has a datagram (cancel-safe).
    pub async fn readable(&self) -> std::io::Result<()> {
        self.udp.readable().await
    }

    /// Reads one datagram, through the downlink.
    pub fn recv(&mut self, ctx: &Ctx, now: Instant) -> Recv {
        let (n, from) = match self.udp.try_recv_from(&mut self.buf) {
            Ok(x) => x,
            Err(_) => return Recv::Empty,
        };
        let Some(down) = &mut self.down else {
            self.len = n;
            return Recv::Ready(from);
        };
        if let Fate::Deliver { at_ms } = down.link.send(ctx.ms(now), n) {
            down.line.push(at_ms, (from, self.buf[..n].to_vec()));
        }
        Recv::Held
    }

    /// The next held datagram whose time has come, now in [`Net::buffer`].
    pub fn pop_delivered(&mut self, ctx: &Ctx, now: Instant) -> Option<SocketAddr> {
        let down = self.down.as_mut()?;
        let (from, data) = down.line.pop_due(ctx.ms(now))?;
        self.buf[..data.len()].copy_from_slice(&data);
        self.len = data.len();
        Some(from)
    }

    /// Sends a datagram, through the uplink.
    pub fn send(&mut self, ctx: &Ctx, now: Instant, to: SocketAddr, data: &[u8]) {
        match &mut self.up {
            None => {
                if self.udp.try_send_to(data, to).is_err() {
                    self.send_errors += 1;
                }
            }
            Some(up) => {
                if let Fate::Deliver { at_ms } = up.link.send(ctx.ms(now), data.len()) {
                    up.line.push(at_ms, (to, data.to_vec()));
                }
            }
        }
        self.flush(ctx, now);
    }

    /// Sends the held datagrams whose time has come.
    pub fn flush(&mut self, ctx: &Ctx, now: Instant) {
        let Some(up) = &mut self.up else { return };
        while let Some((to, data)) = up.line.pop_due(ctx.ms(now)) {
            if self.udp.try_send_to(&data, to).is_err() {
                self.send_errors += 1;
            }
        }
    }

    /// When the next held datagram is due, either way.
    pub fn next_due(&self, ctx: &Ctx) -> Option<Instant> {
        let up = self.up.as_ref().and_then(|p| p.line.next_due());
        let down = self.down.as_ref().and_then(|p| p.line.next_due());
        let t = match (up, down) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(ctx.instant(t))
    }

    /// Nothing gets through, either way, for `outage`. An unimpaired network gets links for the purpose.
    pub fn outage(&mut self, ctx: &Ctx, now: Instant, outage: Duration) {
        let from = ctx.ms(now);
        let until = from + outage.as_secs_f64() * 1000.0;
        for path in [&mut self.up, &mut self.down] {
            let p = path.get_or_insert_with(|| Path {
                link: Link::new(&crate::impair::LinkParams::clean(), 0),
                line: DelayLine::new(),
            });
            p.link.set_outage(from, until);
        }
    }

    /// A new socket (a new local address), as after a switch from Wi-Fi to mobile data.
    pub async fn rebind(&mut self, ctx: &Ctx, seed: u64) -> std::io::Result<()> {
        let source = self.source.map(|_| ctx.source_ip(seed.wrapping_add(1))).unwrap_or(None);
        self.udp = bind(source.or(self.source)).await?;
        self.local = self.udp.local_addr()?;
        Ok(())
    }
}

async fn bind(source: Option<IpAddr>) -> std::io::Result<UdpSocket> {
    let ip = source.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    UdpSocket::bind(SocketAddr::new(ip, 0)).await
}
