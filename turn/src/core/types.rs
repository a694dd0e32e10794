//! Newtypes for the addresses and handles the core works with.

use std::fmt;
use std::net::SocketAddr;

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// A TCP stream (RFC 8656 §3.1).
    Tcp,
    /// A TLS-over-TCP stream.
    Tls,
}

impl Transport {
    /// The label used in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Whether messages on this transport are framed in a byte stream (ChannelData is then padded).
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// RFC 8656's 5-tuple as the core sees it: the transport, the client's address (its server-reflexive address,
/// for a client behind NAT), and which of the shard's listening sockets it reached (the server's address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr {
    /// The transport protocol.
    pub transport: Transport,
    /// The client's IP and port.
    pub addr: SocketAddr,
    /// The driver's index of the listening socket.
    pub listener: u16,
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.transport.label(), self.addr)
    }
}

/// The driver's handle for one relay socket (RFC 8656 "relayed transport address"), returned by
/// [`RelaySockets::open`](crate::core::RelaySockets::open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayHandle(pub u32);

/// An allocation's id, for logs and spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllocationId(pub u64);

impl fmt::Display for AllocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{:012x}", self.0)
    }
}

/// A datagram the core asks the driver to send to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub to: ClientAddr,
    /// The bytes, already framed.
    pub data: Vec<u8>,
}

/// A payload the driver must send from a relay socket to a peer.
#[derive(Debug, PartialEq, Eq)]
pub struct ToPeer<'a> {
    /// The relay socket to send from.
    pub relay: RelayHandle,
    /// The peer.
    pub peer: SocketAddr,
    /// The application data.
    pub payload: &'a [u8],
}

/// Where the framed bytes for a client are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// ChannelData written in place: `buf[range]`.
    InPlace(std::ops::Range<usize>),
    /// A Data indication of this length in the core's scratch buffer; [`crate::core::Server::framed`] gives both.
    Scratch(usize),
}

/// A packet from a peer, framed for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToClient {
    /// The client.
    pub to: ClientAddr,
    /// Where the bytes are.
    pub framed: Framed,
}
