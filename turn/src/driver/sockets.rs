//! Socket set-up: SO_REUSEPORT listeners (one per shard, the kernel spreads clients by 5-tuple hash), large
//! buffers, non-blocking mode.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Fails when another process already holds `addr`. SO_REUSEPORT would otherwise let a second server (any
/// process of the same user) bind the same port and silently take a share of its clients.
pub fn ensure_free(addr: SocketAddr, udp: bool) -> io::Result<()> {
    let (ty, proto) = if udp {
        (Type::DGRAM, Protocol::UDP)
    } else {
        (Type::STREAM, Protocol::TCP)
    };
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if !udp {
        s.set_reuse_address(true)?;
    }
    s.bind(&SockAddr::from(addr))
}

/// A UDP listener shared by all shards through SO_REUSEPORT.
pub fn udp_listener(addr: SocketAddr, buffer: usize) -> io::Result<mio::net::UdpSocket> {
    bind_udp(addr, buffer, true)
}

fn bind_udp(addr: SocketAddr, buffer: usize, reuse_port: bool) -> io::Result<mio::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    set_buffers(&s, buffer);
    count_drops(&s);
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(addr))?;
    Ok(mio::net::UdpSocket::from_std(s.into()))
}

/// A TCP listener shared by all shards through SO_REUSEPORT.
pub fn tcp_listener(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    listen_tcp(addr, 1024)
}

/// The listener of a TCP allocation on exactly `addr`. SO_REUSEPORT lets outgoing connections to peers
/// ([`tcp_relay_stream`]) bind the same address, as RFC 6062 requires.
pub fn tcp_relay_listener(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    listen_tcp(addr, 128)
}

fn listen_tcp(addr: SocketAddr, backlog: i32) -> io::Result<mio::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(backlog)?;
    Ok(mio::net::TcpListener::from_std(s.into()))
}

/// A non-blocking TCP connection from a TCP allocation's address `local` to `peer`, under way.
pub fn tcp_relay_stream(local: SocketAddr, peer: SocketAddr) -> io::Result<mio::net::TcpStream> {
    let s = Socket::new(Domain::for_address(local), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(local))?;
    match s.connect(&SockAddr::from(peer)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let _ = s.set_nodelay(true);
    Ok(mio::net::TcpStream::from_std(s.into()))
}

/// A relay socket on exactly `addr`.
pub fn relay_socket(addr: SocketAddr, buffer: usize) -> io::Result<mio::net::UdpSocket> {
    bind_udp(addr, buffer, false)
}

/// SO_RXQ_OVFL: the kernel attaches the socket's count of datagrams dropped for a full receive buffer to each
/// datagram it delivers, which [`super::batch::RecvBatch`] reads. (Reading /proc/net/udp instead walks every
/// UDP socket of the host and cost a fifth of the relay's CPU under load.)
fn count_drops(s: &Socket) {
    set_int(s, libc::SO_RXQ_OVFL, 1);
}

/// Asks for `bytes` of send and receive buffer. The kernel caps the request at net.core.[rw]mem_max; as root
/// the FORCE variants pass that cap, so try them when the plain request fell short.
fn set_buffers(s: &Socket, bytes: usize) {
    let _ = s.set_recv_buffer_size(bytes);
    let _ = s.set_send_buffer_size(bytes);
    // The kernel reports twice the usable size it granted.
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if s.recv_buffer_size().unwrap_or(0) < bytes {
        set_int(s, libc::SO_RCVBUFFORCE, value);
    }
    if s.send_buffer_size().unwrap_or(0) < bytes {
        set_int(s, libc::SO_SNDBUFFORCE, value);
    }
}

/// A SOL_SOCKET option that socket2 does not wrap. Failure (e.g. no CAP_NET_ADMIN for the FORCE buffer
/// sizes) leaves the socket as it was, which is fine for every caller.
#[allow(unsafe_code)]
fn set_int(s: &Socket, option: libc::c_int, value: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket fd, a pointer to a live c_int and its exact size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    /// SO_RXQ_OVFL, set on relay sockets, makes the kernel's drop count arrive with the next datagram.
    #[test]
    fn kernel_drop_count_arrives_with_datagrams() {
        let rx = super::relay_socket("127.0.0.1:0".parse().expect("addr"), 65_536).expect("bind");
        let to = rx.local_addr().expect("addr");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        for _ in 0..2000 {
            let _ = tx.send_to(&[7u8; 1000], to);
        }
        let mut batch = hualu_common::udp_batch::RecvBatch::new();
        while batch.recv(rx.as_raw_fd()).expect("recv") > 0 {}
        tx.send_to(&[8u8; 10], to).expect("send");
        let mut seen = None;
        for _ in 0..100 {
            let n = batch.recv(rx.as_raw_fd()).expect("recv");
            if n > 0 {
                seen = batch.drops(n - 1);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(seen.is_some_and(|d| d > 0), "drops reported: {seen:?}");
    }
}
