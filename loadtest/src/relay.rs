//! Media through TURN (`network.transport = "relay"`): a participant allocates a relayed address on the TURN
//! server named in its `join`, offers it as its only ICE candidate, and every datagram its WebRTC peer sends
//! or receives travels inside the TURN connection (ChannelData once a channel is bound, Send and Data
//! indications before). So the SFU sees the participant at the relay's address, as it would a phone behind a
//! firewall that allows only TURN.
//!
//! The TURN protocol itself (allocation with long-term credentials, refreshes, permissions, channels) is
//! `turn-client-proto`'s sans-IO client; this module adapts it to the harness: `std` instants in and out,
//! one peer (the SFU) per participant, and framing into a caller's buffer so a packet costs no allocation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use turn_client_proto::api::{TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::prelude::*;
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::stun::Instant as TurnInstant;
use turn_client_proto::types::{TransportType, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;

/// How far ahead a wake-up is asked for when the client names none (it always does while alive).
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// Why the relay cannot carry media.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The server refused the allocation (bad credentials, quota, no such address family).
    #[error("TURN allocation refused by {0}")]
    AllocationFailed(SocketAddr),
    /// The server refused a permission or channel for the peer (its peer policy).
    #[error("TURN permission for {0} refused")]
    PermissionFailed(SocketAddr),
    /// The client could not send (no allocation yet, or no permission for the peer).
    #[error("TURN send to {0} failed: {1}")]
    Send(SocketAddr, String),
    /// The allocation is gone (deleted, or it expired unrefreshed).
    #[error("TURN allocation closed")]
    Closed,
}

/// What a datagram from the TURN server turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// Data from a peer through the relay, and which peer.
    Peer(SocketAddr, &'a [u8]),
    /// TURN's own traffic (a response, a refresh), handled.
    Handled,
    /// Not from the TURN server, or not TURN.
    Ignored,
}

/// Something the relay's state changed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// The allocation is up at this relayed address.
    Allocated(SocketAddr),
    /// The peer may now be sent to and heard from, through a channel.
    Permitted(SocketAddr),
    /// The relay cannot carry media.
    Failed(RelayError),
}

/// One participant's TURN allocation, with the SFU as its one peer.
#[derive(Debug)]
pub struct Relay {
    client: TurnClientUdp,
    /// The origin of the client's clock (`turn-client-proto` counts time from an origin of its own choosing).
    base: Instant,
    server: SocketAddr,
    relayed: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    permitted: bool,
    events: Vec<RelayEvent>,
    /// Data delivered by the client out of band (a Data indication held back by it), copied once.
    held: Option<(SocketAddr, Vec<u8>)>,
    /// When an allocation still missing fails; `None` once it is made or has failed.
    deadline: Option<Instant>,
    /// The client said it is closed (told once).
    closed: bool,
}

impl Relay {
    /// Starts allocating on `server` from the local socket `local`, with the TURN REST credentials of a
    /// `join`'s `ice_servers`. `base` is the run's clock origin (any instant not after now); an allocation not
    /// made by `deadline` fails (a refused one may otherwise be retried for as long as the client likes).
    pub fn allocate(
        local: SocketAddr,
        server: SocketAddr,
        username: &str,
        password: &str,
        base: Instant,
        deadline: Instant,
    ) -> Relay {
        let config = TurnConfig::new(TurnCredentials::new(username, password));
        Relay {
            client: TurnClientUdp::allocate(local, server, config),
            base,
            server,
            relayed: None,
            peer: None,
            permitted: false,
            events: Vec::new(),
            held: None,
            deadline: Some(deadline),
            closed: false,
        }
    }

    /// The TURN server.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The relayed address, once allocated: the participant's ICE candidate.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// Whether data to and from the peer flows.
    pub fn permitted(&self) -> bool {
        self.permitted
    }

    /// Asks for a permission and a channel to `peer` (the SFU's media address). Data to it may be sent once
    /// [`RelayEvent::Permitted`] came; until then it is refused.
    pub fn permit(&mut self, peer: SocketAddr, now: Instant) -> Result<(), RelayError> {
        self.peer = Some(peer);
        let now = self.turn_time(now);
        self.client
            .create_permission(TransportType::Udp, peer.ip(), now)
            .map_err(|_| RelayError::PermissionFailed(peer))?;
        self.client
            .bind_channel(TransportType::Udp, peer, now)
            .map_err(|_| RelayError::PermissionFailed(peer))
    }

    /// Takes one datagram that arrived on the participant's socket from `from`.
    pub fn receive<'a>(&mut self, now: Instant, from: SocketAddr, local: SocketAddr, data: &'a [u8]) -> Received<'a> {
        if from != self.server {
            return Received::Ignored;
        }
        let transmit = Transmit {
            data,
            transport: TransportType::Udp,
            from,
            to: local,
        };
        let now = self.turn_time(now);
        let received = match self.client.recv(transmit, now) {
            TurnRecvRet::Handled => Received::Handled,
            TurnRecvRet::Ignored(_) => Received::Ignored,
            TurnRecvRet::PeerIcmp { .. } => Received::Handled,
            TurnRecvRet::PeerData(d) => {
                let peer = d.peer;
                let range = subslice(data, d.data());
                match range {
                    Some(r) => Received::Peer(peer, &data[r]),
                    // The client gave its own copy (not a view of `data`): keep it for the caller.
                    None => {
                        self.held = Some((peer, d.data().to_vec()));
                        Received::Handled
                    }
                }
            }
        };
        self.collect_events();
        received
    }

    /// Data the last [`Relay::receive`] could not lend out of the datagram, if any.
    pub fn take_held(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.held.take()
    }

    /// Frames `data` for `peer` into `out` (cleared first): the datagram to send to [`Relay::server`].
    pub fn wrap(&mut self, now: Instant, peer: SocketAddr, data: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        let now = self.turn_time(now);
        let built = self
            .client
            .send_to(TransportType::Udp, peer, data, now)
            .map_err(|e| RelayError::Send(peer, e.to_string()))?;
        let Some(build) = built else {
            return Err(RelayError::Send(peer, "nothing to send".into()));
        };
        out.clear();
        out.resize(data.len() + 64, 0);
        let n = build.write_into(out).data.len();
        out.truncate(n);
        Ok(())
    }

    /// The next datagram TURN itself wants sent to the server (allocation, refresh, permission, channel).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let t = self.turn_time(now);
        let transmit = self.client.poll_transmit(t)?;
        Some(transmit.data.as_ref().to_vec())
    }

    /// Runs the client's timers; returns when it next wants to run.
    pub fn handle_timeout(&mut self, now: Instant) -> Instant {
        let wake = match self.client.poll(self.turn_time(now)) {
            TurnPollRet::WaitUntil(t) => t.to_std(self.base),
            TurnPollRet::Closed => {
                if !self.closed {
                    self.closed = true;
                    self.events.push(RelayEvent::Failed(RelayError::Closed));
                }
                now + IDLE_WAKE
            }
            _ => now + IDLE_WAKE,
        };
        self.collect_events();
        let wake = match self.deadline {
            Some(_) if self.relayed.is_some() => {
                self.deadline = None;
                wake
            }
            Some(d) if now >= d => {
                self.deadline = None;
                self.events
                    .push(RelayEvent::Failed(RelayError::AllocationFailed(self.server)));
                wake
            }
            Some(d) => wake.min(d),
            None => wake,
        };
        wake.max(now)
    }

    /// The next change of state, if any.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        (!self.events.is_empty()).then(|| self.events.remove(0))
    }

    /// Releases the allocation (the server forgets it at once instead of when it expires).
    pub fn delete(&mut self, now: Instant) {
        let _ = self.client.delete(self.turn_time(now));
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.client.poll_event() {
            let event = match e {
                TurnEvent::AllocationCreated(TransportType::Udp, addr) => {
                    self.relayed = Some(addr);
                    RelayEvent::Allocated(addr)
                }
                TurnEvent::AllocationCreateFailed(_) => {
                    self.deadline = None;
                    RelayEvent::Failed(RelayError::AllocationFailed(self.server))
                }
                // Send indications work from the permission on; the channel (4-byte framing) follows.
                TurnEvent::PermissionCreated(..) if !self.permitted => {
                    self.permitted = true;
                    RelayEvent::Permitted(self.peer.unwrap_or(self.server))
                }
                TurnEvent::PermissionCreateFailed(..) | TurnEvent::ChannelCreateFailed(..) => {
                    let peer = self.peer.unwrap_or(self.server);
                    RelayEvent::Failed(RelayError::PermissionFailed(peer))
                }
                _ => continue,
            };
            self.events.push(event);
        }
    }

    fn turn_time(&self, now: Instant) -> TurnInstant {
        let nanos = now.saturating_duration_since(self.base).as_nanos();
        TurnInstant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }
}

/// Where `part` lies inside `whole`, when it is a view of it.
fn subslice(whole: &[u8], part: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
