//! `udp-cost`: what the kernel charges a process for the UDP operations a relay is made of, on loopback, on
//! this machine. It prints the CPU time (utime + stime, from `getrusage`) per datagram of `sendto`, of
//! `sendmmsg` in batches of 32, of `recvmmsg` one datagram at a time and 32 at a time, and the CPU time one
//! block-and-wake cycle costs (a 50 us sleep). These are the floor under any relay's CPU per packet, coturn's
//! and hualu's alike; `docs/turn.md` reads the benchmark against them.
//!
//! Usage: `taskset -c 1 target/release/udp-cost [ROUNDS]` (default 5 rounds of 32,000 datagrams; medians).
//! Every datagram goes to 127.0.0.1 and is read back by this process; nothing else is touched.
//!
//! std has no batched socket calls, so this speaks to the kernel through `libc`, as the relay's driver does.

#![allow(unsafe_code)]

use std::mem::{size_of, zeroed};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Duration;

const N: usize = 32_000;
const BATCH: usize = 32;
const LEN: usize = 164;

fn main() -> std::io::Result<()> {
    let rounds: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 5,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: udp-cost [ROUNDS]   (ROUNDS: a positive number)");
            std::process::exit(2);
        }
    };
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    set_rcvbuf(&rx, 64 << 20);
    let to = rx.local_addr()?;
    let names = [
        "sendto",
        "sendmmsg x32",
        "recvmmsg x1",
        "recvmmsg x32",
        "block+wake (50 us sleep)",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        samples[0].push(per(|| (0..N).filter(|_| tx.send_to(&[1; LEN], to).is_ok()).count()));
        samples[2].push(per(|| recv_all(&rx, 1)));
        samples[1].push(per(|| send_batched(&tx, to)));
        samples[3].push(per(|| recv_all(&rx, BATCH)));
        samples[4].push(per(|| {
            (0..2_000).for_each(|_| std::thread::sleep(Duration::from_micros(50)));
            2_000
        }));
    }
    println!("CPU per operation on loopback, {LEN}-byte datagrams, medians of {rounds} rounds:");
    for (name, mut s) in names.iter().zip(samples) {
        s.sort_by(f64::total_cmp);
        println!("  {name:<26} {:>7.2} us", s[s.len() / 2]);
    }
    Ok(())
}

/// CPU microseconds per unit of work of `f`, which returns how many units it did.
fn per(f: impl FnOnce() -> usize) -> f64 {
    let before = cpu_us();
    let units = f();
    (cpu_us() - before) / units.max(1) as f64
}

fn cpu_us() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut r: libc::rusage = unsafe { zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    tv(r.ru_utime) + tv(r.ru_stime)
}

fn set_rcvbuf(s: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: a valid socket and an int option. SO_RCVBUFFORCE needs root; SO_RCVBUF is the fallback.
    unsafe {
        let p = (&bytes as *const libc::c_int).cast();
        let len = size_of::<libc::c_int>() as libc::socklen_t;
        if libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, len) != 0 {
            libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, p, len);
        }
    }
}

/// Sends N datagrams, BATCH per call; returns how many the kernel took.
fn send_batched(tx: &UdpSocket, to: std::net::SocketAddr) -> usize {
    let std::net::SocketAddr::V4(v4) = to else { return 0 };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut data = [1u8; LEN];
    // SAFETY: plain C structs, valid all-zero; every pointer below outlives the calls.
    let mut iov: libc::iovec = unsafe { zeroed() };
    iov.iov_base = data.as_mut_ptr().cast();
    iov.iov_len = LEN;
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; BATCH];
    for h in &mut hdrs {
        h.msg_hdr.msg_name = (&sin as *const libc::sockaddr_in).cast_mut().cast();
        h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_hdr.msg_iov = &mut iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let mut sent = 0;
    for _ in 0..N / BATCH {
        // SAFETY: BATCH initialised headers.
        let n = unsafe { libc::sendmmsg(tx.as_raw_fd(), hdrs.as_mut_ptr(), BATCH as libc::c_uint, 0) };
        sent += n.max(0) as usize;
    }
    sent
}

/// Reads until the socket is empty, `batch` datagrams per call; returns how many it read.
fn recv_all(rx: &UdpSocket, batch: usize) -> usize {
    let mut bufs = vec![[0u8; 2048]; batch];
    // SAFETY: plain C structs, valid all-zero; the iovecs point into `bufs`, which outlives the calls.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { zeroed() }; batch];
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; batch];
    for i in 0..batch {
        iovs[i].iov_base = bufs[i].as_mut_ptr().cast();
        iovs[i].iov_len = 2048;
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    let mut got = 0;
    loop {
        // SAFETY: `batch` initialised headers.
        let n = unsafe {
            libc::recvmmsg(
                rx.as_raw_fd(),
                hdrs.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            return got;
        }
        got += n as usize;
    }
}
