//! Batched UDP receive and send with `recvmmsg(2)` and `sendmmsg(2)`: one system call for up to [`BATCH`]
//! datagrams. Neither std, mio nor socket2 exposes these calls, so this module wraps them with `libc`.
//!
//! Every buffer is allocated once, up front; nothing here allocates per packet. The TURN relay and the SFU's
//! shards both use it.

#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram kept; longer ones are truncated by the kernel and dropped here. WebRTC media stays
/// below 1,500 bytes, TURN control messages below 1,300.
pub const MAX_DATAGRAM: usize = 2048;
/// Room before each received payload, so a header can be written in place (TURN's 4-byte ChannelData header;
/// the TURN core's `HEADROOM` is checked equal to this).
pub const HEADROOM: usize = 4;
/// One slot: headroom, payload, and room for stream padding.
const SLOT: usize = HEADROOM + MAX_DATAGRAM + 4;

/// Control-message room per datagram: one SO_RXQ_OVFL cmsg (a u32), 8-byte aligned.
const CTRL: usize = 32;

/// Receive buffers for one batch.
pub struct RecvBatch {
    bufs: Vec<u8>,
    ctrl: Vec<[u64; CTRL / 8]>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Headers the kernel wrote into in the last call; only these need their lengths reset.
    used: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Allocates the batch and points its headers at its buffers, once: the buffers are heap vectors that
    /// never grow, so the pointers stay valid wherever the struct moves.
    pub fn new() -> Self {
        let mut me = Self {
            bufs: vec![0; SLOT * BATCH],
            ctrl: vec![[0; CTRL / 8]; BATCH],
            addrs: zeroed_batch(),
            iovecs: zeroed_batch(),
            hdrs: zeroed_batch(),
            used: BATCH,
        };
        for i in 0..BATCH {
            // SAFETY: each iovec points into this slot's payload area, which lives as long as `self`.
            me.iovecs[i].iov_base = unsafe { me.bufs.as_mut_ptr().add(i * SLOT + HEADROOM) }.cast();
            me.iovecs[i].iov_len = MAX_DATAGRAM;
            let h = &mut me.hdrs[i].msg_hdr;
            h.msg_name = (&mut me.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut me.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = me.ctrl[i].as_mut_ptr().cast();
        }
        me.reset_lengths();
        me
    }

    /// Restores what the kernel overwrote in the headers it used: the in/out lengths and flags.
    fn reset_lengths(&mut self) {
        for m in &mut self.hdrs[..self.used] {
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_controllen = CTRL as _;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
    }

    /// The socket's running count of datagrams dropped for a full receive buffer, as the kernel reported it
    /// with datagram `i` (SO_RXQ_OVFL); `None` when it reported none (no drop yet).
    pub fn drops(&self, i: usize) -> Option<u32> {
        let h = &self.hdrs[i].msg_hdr;
        // SAFETY: `h` was filled by recvmmsg; the CMSG macros stay within msg_control..msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                    return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    /// Receives up to [`BATCH`] datagrams from `fd` without blocking. Returns how many arrived; 0 means none
    /// were waiting. A count below [`BATCH`] means the socket's queue is empty.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.reset_lengths();
        self.used = 0;
        // SAFETY: `hdrs` holds BATCH initialised headers whose pointers are valid for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        self.used = n as usize;
        Ok(n as usize)
    }

    /// Datagram `i` of the last batch: its source, the whole slot (payload at `HEADROOM`), and the payload
    /// length; `None` when truncated or from an unknown address family.
    pub fn get(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8], usize)> {
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = h.msg_len as usize;
        let addr = from_storage(&self.addrs[i])?;
        Some((addr, &mut self.bufs[i * SLOT..(i + 1) * SLOT], len))
    }
}

// SAFETY: the raw pointers inside only ever point into heap buffers the struct owns, which never reallocate
// (RecvBatch) or are rewritten before every system call (SendBatch), so moving the struct to another thread
// moves nothing that dangles.
unsafe impl Send for RecvBatch {}
// SAFETY: as for RecvBatch.
unsafe impl Send for SendBatch {}

/// Datagrams queued for one socket, sent together by [`SendBatch::flush`].
pub struct SendBatch {
    data: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    iovecs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

/// Outcome of a flush.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flushed {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams dropped (send buffer full, or an error).
    pub dropped: usize,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            data: vec![0; SLOT * BATCH],
            lens: Vec::with_capacity(BATCH),
            addrs: zeroed_batch(),
            addr_lens: vec![0; BATCH],
            iovecs: zeroed_batch(),
            hdrs: zeroed_batch(),
        }
    }

    /// Whether the queue is full and must be flushed before the next push.
    pub fn is_full(&self) -> bool {
        self.lens.len() == BATCH
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Queues a copy of `bytes` for `to`. Datagrams longer than a slot are dropped (returns false).
    pub fn push(&mut self, to: SocketAddr, bytes: &[u8]) -> bool {
        let i = self.lens.len();
        if i == BATCH || bytes.len() > SLOT {
            return false;
        }
        self.data[i * SLOT..i * SLOT + bytes.len()].copy_from_slice(bytes);
        self.addr_lens[i] = to_storage(to, &mut self.addrs[i]);
        self.lens.push(bytes.len());
        true
    }

    /// Sends everything queued on `fd`. What the kernel will not take now is dropped, as a router would.
    pub fn flush(&mut self, fd: RawFd) -> Flushed {
        let n = self.lens.len();
        for i in 0..n {
            // SAFETY: pointers into this batch's own buffers, valid for the call below.
            self.iovecs[i].iov_base = unsafe { self.data.as_mut_ptr().add(i * SLOT) }.cast();
            self.iovecs[i].iov_len = self.lens[i];
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.addr_lens[i];
            h.msg_iov = &mut self.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut out = Flushed::default();
        let mut at = 0;
        while at < n {
            // SAFETY: headers `at..n` are initialised above and point into live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(at),
                    (n - at) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                // EAGAIN or a per-destination error on the first datagram: drop it and go on.
                out.dropped += 1;
                at += 1;
            } else {
                out.sent += r as usize;
                at += r as usize;
            }
        }
        self.lens.clear();
        out
    }
}

/// [`BATCH`] zeroed C structs (sockaddr_storage, iovec, mmsghdr); the pointers inside are set before each call.
fn zeroed_batch<T: Clone>() -> Vec<T> {
    // SAFETY: only instantiated with plain C structs (integers and raw pointers), for which all-zero is valid.
    vec![unsafe { zeroed::<T>() }; BATCH]
}

/// Sends one datagram on `fd` (a relay socket) to `to`, without blocking. Returns false when dropped.
pub fn send_to(fd: RawFd, to: SocketAddr, bytes: &[u8]) -> bool {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = to_storage(to, &mut storage);
    // SAFETY: `bytes` and `storage` are live for the call and their lengths are passed exactly.
    let r = unsafe {
        libc::sendto(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT,
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    r >= 0
}

fn to_storage(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn batch_round_trip_on_loopback() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        let to = b.local_addr().expect("addr");
        let mut out = SendBatch::new();
        for i in 0..5u8 {
            assert!(out.push(to, &[i; 100]));
        }
        let f = out.flush(a.as_raw_fd());
        assert_eq!(f.sent, 5);
        b.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        let mut peek = [0u8; 1];
        let _ = b.peek(&mut peek);
        let mut batch = RecvBatch::new();
        let mut got = 0;
        for _ in 0..50 {
            let n = batch.recv(b.as_raw_fd()).expect("recv");
            for i in 0..n {
                let (from, slot, len) = batch.get(i).expect("datagram");
                assert_eq!(from, a.local_addr().expect("addr"));
                assert_eq!(len, 100);
                assert_eq!(slot[HEADROOM], got as u8);
                got += 1;
            }
            if got == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, 5);
    }

    #[test]
    fn sockaddr_conversion_round_trips() {
        for s in ["192.0.2.1:3478", "[2001:db8::1]:5349"] {
            let addr: SocketAddr = s.parse().expect("addr");
            let mut st: libc::sockaddr_storage = unsafe { zeroed() };
            to_storage(addr, &mut st);
            assert_eq!(from_storage(&st), Some(addr));
        }
    }
}
