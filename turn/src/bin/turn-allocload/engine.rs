//! The load loop: `concurrency` slots, each running one job at a time on its own non-blocking UDP socket,
//! all driven by one mio poll. A job is a small state machine: challenge, allocate, refresh (alloc mode)
//! or the challenge alone (unauth mode). Lost requests are retransmitted with a doubling timeout, then
//! counted as failures.

use crate::args::{Args, Mode};
use crate::proto::{self, Challenge, Creds, Reply, Request};
use crate::stats::Stats;
use crate::watch::Watch;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// How often timeouts are looked for.
const SCAN_EVERY: Duration = Duration::from_millis(5);
/// Stale-nonce answers tolerated within one job.
const MAX_STALE: u32 = 3;
/// Busy source ports skipped before giving up.
const BIND_TRIES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Allocate without credentials, expecting 401.
    Challenge,
    /// Allocate with credentials, expecting success.
    Allocate,
    /// Refresh LIFETIME 0, expecting success.
    Refresh,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Challenge => "challenge",
            Step::Allocate => "allocate",
            Step::Refresh => "refresh",
        }
    }
}

struct Job {
    step: Step,
    challenge: Option<Challenge>,
    req: Request,
    sent_at: Instant,
    retransmits: u32,
    stale: u32,
    began: Instant,
}

#[derive(Default)]
struct Slot {
    socket: Option<UdpSocket>,
    jobs_on_socket: u64,
    job: Option<Job>,
}

/// How a job ended.
enum End {
    Done,
    /// Failed; the socket is dropped, as its allocation may still exist.
    Failed(String),
}

pub struct Engine {
    args: Args,
    poll: Poll,
    slots: Vec<Slot>,
    creds: Creds,
    stats: Stats,
    deadline: Instant,
    sockets_opened: u64,
    watch: Option<Watch>,
}

impl Engine {
    pub fn new(args: Args) -> io::Result<Self> {
        let slots = (0..args.concurrency).map(|_| Slot::default()).collect();
        let creds = Creds::new(&args.user, &args.password);
        let watch = match args.watch_pid {
            Some(pid) => Some(
                Watch::new(pid, args.max_rss_mib)
                    .ok_or_else(|| io::Error::new(ErrorKind::NotFound, format!("no process {pid} to watch")))?,
            ),
            None => None,
        };
        Ok(Self {
            watch,
            poll: Poll::new()?,
            slots,
            creds,
            stats: Stats::default(),
            deadline: Instant::now() + args.duration,
            // A random start in the cycle, so back-to-back runs do not reuse the same source addresses.
            sockets_opened: rand::random::<u32>().into(),
            args,
        })
    }

    /// Runs until the duration or count is reached and in-flight jobs have drained; returns the counters
    /// and the elapsed time.
    pub fn run(mut self) -> io::Result<(Stats, Duration)> {
        let start = Instant::now();
        self.deadline = start + self.args.duration;
        let hard_end = self.deadline + self.args.drain;
        for i in 0..self.slots.len() {
            self.start_job(i)?;
        }
        let mut events = Events::with_capacity(1024);
        let mut next_scan = start + SCAN_EVERY;
        loop {
            let now = Instant::now();
            let active = self.slots.iter().filter(|s| s.job.is_some()).count();
            if active == 0 && !self.may_start(now) {
                break;
            }
            if now >= hard_end {
                self.stats.abandoned = active as u64;
                break;
            }
            self.poll
                .poll(&mut events, Some(next_scan.saturating_duration_since(now)))?;
            for event in events.iter() {
                self.on_readable(event.token().0)?;
            }
            let now = Instant::now();
            if now >= next_scan {
                self.scan_timeouts(now)?;
                self.check_memory(now);
                next_scan = now + SCAN_EVERY;
            }
            // Slots left idle (e.g. after the count was reached) are refilled while starting is allowed.
            if self.may_start(now) {
                for i in 0..self.slots.len() {
                    if self.slots[i].job.is_none() {
                        self.start_job(i)?;
                    }
                }
            }
        }
        let elapsed = start.elapsed();
        if let Some(watch) = &mut self.watch {
            watch.sample();
            self.stats.rss = Some(watch.rss);
        }
        Ok((self.stats, elapsed))
    }

    /// Ends the starting of jobs when the watched server passes its memory cap.
    fn check_memory(&mut self, now: Instant) {
        if let Some(watch) = &mut self.watch {
            if watch.over_cap(now) && now < self.deadline {
                eprintln!("turn-allocload: the server passed --max-rss-mib; stopping");
                self.deadline = now;
            }
        }
    }

    fn may_start(&self, now: Instant) -> bool {
        now < self.deadline && self.args.count.is_none_or(|c| self.stats.started < c)
    }

    /// Begins a new job in slot `i` if the run still allows it, on a new socket when needed.
    fn start_job(&mut self, i: usize) -> io::Result<()> {
        if !self.may_start(Instant::now()) {
            return Ok(());
        }
        let fresh = match &self.slots[i].socket {
            None => true,
            Some(_) => self.slots[i].jobs_on_socket >= self.args.jobs_per_socket,
        };
        if fresh {
            self.close_socket(i)?;
            let socket = self.open_socket(i)?;
            self.slots[i].socket = Some(socket);
        }
        let req = proto::allocate_unauth().map_err(io::Error::other)?;
        let now = Instant::now();
        self.stats.started += 1;
        self.slots[i].jobs_on_socket += 1;
        self.slots[i].job = Some(Job {
            step: Step::Challenge,
            challenge: None,
            req,
            sent_at: now,
            retransmits: 0,
            stale: 0,
            began: now,
        });
        self.send(i)
    }

    /// The next local address in round-robin order: every port of the range on every address.
    fn next_source(&mut self) -> SocketAddr {
        let (lo, hi) = self.args.src_ports;
        let ports = u64::from(hi - lo) + 1;
        let n = self.sockets_opened;
        self.sockets_opened += 1;
        let port = lo + (n % ports) as u16;
        let ip = match self.args.bind {
            IpAddr::V4(base) => {
                let k = ((n / ports) % u64::from(self.args.src_ips)) as u32;
                IpAddr::V4(Ipv4Addr::from(u32::from(base).wrapping_add(k)))
            }
            other => other,
        };
        SocketAddr::new(ip, port)
    }

    /// Binds the next free source address, skipping ports other programs hold.
    fn bind_next(&mut self) -> io::Result<std::net::UdpSocket> {
        let mut last_err = None;
        for _ in 0..BIND_TRIES {
            match std::net::UdpSocket::bind(self.next_source()) {
                Ok(socket) => return Ok(socket),
                Err(e) if e.kind() == ErrorKind::AddrInUse => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no free source port")))
    }

    fn open_socket(&mut self, i: usize) -> io::Result<UdpSocket> {
        let std_socket = self.bind_next()?;
        std_socket.connect(self.args.server)?;
        std_socket.set_nonblocking(true)?;
        let mut socket = UdpSocket::from_std(std_socket);
        self.poll
            .registry()
            .register(&mut socket, Token(i), Interest::READABLE)?;
        self.slots[i].jobs_on_socket = 0;
        Ok(socket)
    }

    fn close_socket(&mut self, i: usize) -> io::Result<()> {
        if let Some(mut socket) = self.slots[i].socket.take() {
            self.poll.registry().deregister(&mut socket)?;
        }
        Ok(())
    }

    /// Sends (or resends) the current request of slot `i`. A full socket buffer is left to the
    /// retransmission timer; a refused send (no server) ends the job.
    fn send(&mut self, i: usize) -> io::Result<()> {
        let slot = &mut self.slots[i];
        let (Some(socket), Some(job)) = (&slot.socket, &mut slot.job) else {
            return Ok(());
        };
        job.sent_at = Instant::now();
        match socket.send(&job.req.bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => {
                let why = format!("{} send {}", job.step.name(), e.kind());
                self.end_job(i, End::Failed(why))
            }
        }
    }

    fn on_readable(&mut self, i: usize) -> io::Result<()> {
        let mut buf = [0u8; 2048];
        loop {
            let Some(socket) = &self.slots[i].socket else {
                return Ok(());
            };
            match socket.recv(&mut buf) {
                Ok(n) => self.on_datagram(i, &buf[..n])?,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // An ICMP error (e.g. port unreachable) on the connected socket.
                    let step = self.slots[i].job.as_ref().map_or("idle", |j| j.step.name());
                    let why = format!("{step} recv {}", e.kind());
                    return self.end_job(i, End::Failed(why));
                }
            }
        }
    }

    fn on_datagram(&mut self, i: usize, data: &[u8]) -> io::Result<()> {
        let Some(job) = &self.slots[i].job else {
            return Ok(());
        };
        let Some(reply) = proto::parse_reply(data, job.req.txid) else {
            return Ok(());
        };
        let step = job.step;
        match (self.args.mode, step, reply) {
            (Mode::Unauth, Step::Challenge, Reply::Error { code: 401, .. }) => self.end_job(i, End::Done),
            (
                Mode::Alloc,
                Step::Challenge,
                Reply::Error {
                    code: 401,
                    realm: Some(realm),
                    nonce: Some(nonce),
                },
            ) => self.next_step(i, Step::Allocate, Challenge { realm, nonce }),
            (
                _,
                Step::Allocate | Step::Refresh,
                Reply::Error {
                    code: 438,
                    realm,
                    nonce: Some(nonce),
                },
            ) => self.on_stale_nonce(i, realm, nonce),
            (_, Step::Allocate, Reply::Success { relayed }) => {
                self.stats.allocated += 1;
                if relayed.is_none() {
                    self.stats.missing_relayed += 1;
                }
                let challenge = self.current_challenge(i);
                self.next_step(i, Step::Refresh, challenge)
            }
            (_, Step::Refresh, Reply::Success { .. }) => self.end_job(i, End::Done),
            (_, _, Reply::Error { code, .. }) => self.end_job(i, End::Failed(format!("{} {code}", step.name()))),
            (_, _, Reply::Success { .. }) => {
                self.end_job(i, End::Failed(format!("{} unexpected-success", step.name())))
            }
        }
    }

    fn current_challenge(&self, i: usize) -> Challenge {
        self.slots[i]
            .job
            .as_ref()
            .and_then(|j| j.challenge.clone())
            .unwrap_or_else(|| Challenge {
                realm: String::new(),
                nonce: String::new(),
            })
    }

    /// Moves slot `i`'s job to `step` and sends its request.
    fn next_step(&mut self, i: usize, step: Step, challenge: Challenge) -> io::Result<()> {
        let req = match step {
            Step::Allocate => proto::allocate_auth(&mut self.creds, &challenge),
            Step::Refresh => proto::refresh_release(&mut self.creds, &challenge),
            Step::Challenge => proto::allocate_unauth(),
        }
        .map_err(io::Error::other)?;
        if let Some(job) = &mut self.slots[i].job {
            job.step = step;
            job.req = req;
            job.retransmits = 0;
            job.challenge = Some(challenge);
        }
        self.send(i)
    }

    /// 438: take the new nonce and repeat the step, a few times at most.
    fn on_stale_nonce(&mut self, i: usize, realm: Option<String>, nonce: String) -> io::Result<()> {
        self.stats.stale_nonces += 1;
        let Some(job) = &mut self.slots[i].job else {
            return Ok(());
        };
        job.stale += 1;
        if job.stale > MAX_STALE {
            let why = format!("{} 438-repeated", job.step.name());
            return self.end_job(i, End::Failed(why));
        }
        let step = job.step;
        let mut challenge = self.current_challenge(i);
        challenge.nonce = nonce;
        if let Some(realm) = realm {
            challenge.realm = realm;
        }
        self.next_step(i, step, challenge)
    }

    /// Retransmits overdue requests and fails jobs that ran out of retries.
    fn scan_timeouts(&mut self, now: Instant) -> io::Result<()> {
        for i in 0..self.slots.len() {
            let Some(job) = &mut self.slots[i].job else {
                continue;
            };
            let wait = self.args.rto * 2u32.saturating_pow(job.retransmits);
            if now < job.sent_at + wait {
                continue;
            }
            if job.retransmits < self.args.retries {
                job.retransmits += 1;
                self.stats.retransmits += 1;
                self.send(i)?;
            } else {
                let why = format!("{} timeout", job.step.name());
                self.end_job(i, End::Failed(why))?;
            }
        }
        Ok(())
    }

    /// Records how the job in slot `i` ended; after a success the next job starts at once.
    fn end_job(&mut self, i: usize, end: End) -> io::Result<()> {
        let Some(job) = self.slots[i].job.take() else {
            return Ok(());
        };
        match end {
            End::Done => {
                self.stats.completed += 1;
                self.stats.record_job(job.began.elapsed());
            }
            End::Failed(why) => {
                // The main loop refills the slot: no recursion through a send that keeps failing.
                self.stats.fail(why);
                return self.close_socket(i);
            }
        }
        self.start_job(i)
    }
}
