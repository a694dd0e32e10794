//! Media shards: one thread per core, each owning many participants' media (str0m peer, socket, impaired
//! links, scorers) outright and driving them with one `mio` poll and one timer heap. A datagram or a due frame
//! costs a heap pop or a readiness event and a call into that participant; no task wakes, no lock is taken and
//! nothing is allocated per packet by the loop.
//!
//! The call-control side stays in async tasks (one per device): it joins the room over `/rtc`, hands the
//! prepared [`Media`] to a shard with [`Shards::add`], forwards the room's messages with [`MediaHandle::signal`],
//! and hears back through the [`MediaOut`] channel (replies to send, connection and first-audio times, the
//! scored legs at the end).
//!
//! A panic inside one participant (str0m asserts its invariants) ends that participant with a failure; the
//! shard and everyone else on it carry on.

use super::media::Media;
use crate::record::Leg;
use mio::{Events, Poll, Token, Waker};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// The waker's token; participants' sockets use their slot index.
const WAKER: Token = Token(usize::MAX);
/// Readiness events taken per poll.
const EVENTS: usize = 1024;

/// What a participant's shard tells its device.
#[derive(Debug)]
pub enum MediaOut {
    /// A message to send on the room's `/rtc` socket.
    Send(Value),
    /// ICE and DTLS came up.
    Connected(Instant),
    /// The first audio arrived.
    FirstAudio(Instant),
    /// The last audio arrived then; told as the participant finishes, before its legs.
    LastAudio(Instant),
    /// The media failed for good (TURN gone, or the participant panicked).
    Failed(String),
    /// The participant is finished; its received streams, scored.
    Legs(Vec<Leg>),
}

/// What a device asks of its participant's shard.
enum Cmd {
    Add(u64, Box<Media>, UnboundedSender<MediaOut>),
    Signal(u64, Value),
    Outage(u64, Duration),
    Switch(u64, u64),
    Finish(u64),
}

/// The handles to every shard's thread.
pub struct Shards {
    shards: Vec<Remote>,
    next: AtomicUsize,
    ids: AtomicUsize,
}

/// One shard's command queue and the waker of its poll.
#[derive(Clone)]
struct Remote {
    tx: mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
}

impl Remote {
    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// A device's hold on its participant: commands go to the shard that owns it.
pub struct MediaHandle {
    remote: Remote,
    id: u64,
    finished: bool,
}

impl Shards {
    /// Starts `n` shard threads (at least one).
    pub fn start(n: usize) -> std::io::Result<Shards> {
        let mut shards = Vec::new();
        for i in 0..n.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || Shard::new(poll, rx).run())?;
            shards.push(Remote { tx, waker });
        }
        Ok(Shards {
            shards,
            next: AtomicUsize::new(0),
            ids: AtomicUsize::new(1),
        })
    }

    /// Hands a prepared participant to the next shard, round robin; it reports on `out`.
    pub fn add(&self, media: Media, out: UnboundedSender<MediaOut>) -> MediaHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let id = self.ids.fetch_add(1, Ordering::Relaxed) as u64;
        let remote = self.shards[i].clone();
        remote.send(Cmd::Add(id, Box::new(media), out));
        MediaHandle {
            remote,
            id,
            finished: false,
        }
    }
}

impl MediaHandle {
    /// A message from the room.
    pub fn signal(&self, v: Value) {
        self.remote.send(Cmd::Signal(self.id, v));
    }

    /// The network drops for `outage`.
    pub fn outage(&self, outage: Duration) {
        self.remote.send(Cmd::Outage(self.id, outage));
    }

    /// A network switch: new socket, ICE restart (`seed` picks the new address).
    pub fn switch(&self, seed: u64) {
        self.remote.send(Cmd::Switch(self.id, seed));
    }

    /// Ends the participant; its legs come back as [`MediaOut::Legs`].
    pub fn finish(&mut self) {
        self.finished = true;
        self.remote.send(Cmd::Finish(self.id));
    }
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        if !self.finished {
            self.remote.send(Cmd::Finish(self.id));
        }
    }
}

/// A participant on a shard.
struct Slot {
    id: u64,
    media: Media,
    out: UnboundedSender<MediaOut>,
    /// The deadline the heap holds for it (older heap entries for it are stale).
    due: Instant,
    told_connected: bool,
    told_audio: bool,
}

/// One shard's state, owned by its thread.
struct Shard {
    poll: Poll,
    rx: mpsc::Receiver<Cmd>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    ids: HashMap<u64, usize>,
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    due: Vec<usize>,
}

impl Shard {
    fn new(poll: Poll, rx: mpsc::Receiver<Cmd>) -> Shard {
        Shard {
            poll,
            rx,
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            heap: BinaryHeap::new(),
            due: Vec::new(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            let now = Instant::now();
            self.run_due(now);
            let timeout = self.heap.peek().map(|Reverse((t, _))| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("media shard poll: {e}");
                    return;
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {
                        if !self.commands(now) {
                            return;
                        }
                    }
                    Token(i) => self.with(i, now, |m, now| m.read(now)),
                }
            }
        }
    }

    /// Ticks every participant whose deadline has come.
    fn run_due(&mut self, now: Instant) {
        while let Some(&Reverse((t, i))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self.slots.get(i).and_then(Option::as_ref).is_some_and(|s| s.due == t) {
                self.due.push(i);
            }
        }
        let mut due = std::mem::take(&mut self.due);
        for i in due.drain(..) {
            self.with(i, now, |m, now| m.tick(now));
        }
        self.due = due;
    }

    /// Takes every queued command; false when every handle and the shards are gone.
    fn commands(&mut self, now: Instant) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(cmd) => self.command(cmd, now),
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn command(&mut self, cmd: Cmd, now: Instant) {
        match cmd {
            Cmd::Add(id, media, out) => self.add(id, *media, out, now),
            Cmd::Signal(id, v) => self.by_id(id, now, |m, now| {
                if let Err(e) = m.on_signal(&v, now) {
                    tracing::debug!("room signaling: {e}");
                }
            }),
            Cmd::Outage(id, d) => self.by_id(id, now, |m, now| m.outage(now, d)),
            Cmd::Switch(id, seed) => {
                let Some(&i) = self.ids.get(&id) else { return };
                let registry = self.poll.registry().try_clone();
                self.with(i, now, |m, now| {
                    let Ok(registry) = &registry else { return };
                    match m.switch(now, seed, registry, Token(i)) {
                        Ok(offer) => m.queue_signal(offer),
                        Err(e) => tracing::debug!("switch: {e}"),
                    }
                });
            }
            Cmd::Finish(id) => self.finish(id, now),
        }
    }

    fn add(&mut self, id: u64, mut media: Media, out: UnboundedSender<MediaOut>, now: Instant) {
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Err(e) = media.net_mut().register(self.poll.registry(), Token(i)) {
            let _ = out.send(MediaOut::Failed(format!("udp: registering the socket: {e}")));
            self.free.push(i);
            return;
        }
        self.ids.insert(id, i);
        self.slots[i] = Some(Slot {
            id,
            media,
            out,
            due: now,
            told_connected: false,
            told_audio: false,
        });
        self.with(i, now, |m, now| {
            m.read(now);
            m.tick(now);
        });
    }

    fn by_id(&mut self, id: u64, now: Instant, f: impl FnOnce(&mut Media, Instant)) {
        if let Some(&i) = self.ids.get(&id) {
            self.with(i, now, f);
        }
    }

    /// Runs `f` on participant `i`, contained: a panic ends that participant alone. Then tells its device what
    /// changed, and puts its next deadline on the heap.
    fn with(&mut self, i: usize, now: Instant, f: impl FnOnce(&mut Media, Instant)) {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| f(&mut slot.media, now))).is_err() {
            let _ = slot.out.send(MediaOut::Failed("the media peer panicked".into()));
            tracing::warn!("a simulated participant's media panicked; it is dropped");
            return self.remove(i);
        }
        report(slot);
        let due = slot.media.deadline();
        if due != slot.due || due <= now {
            slot.due = due;
            self.heap.push(Reverse((due, i)));
        }
    }

    fn finish(&mut self, id: u64, now: Instant) {
        let Some(i) = self.ids.remove(&id) else { return };
        let Some(mut slot) = self.slots.get_mut(i).and_then(Option::take) else {
            return;
        };
        slot.media.net_mut().deregister(self.poll.registry());
        self.free.push(i);
        let out = slot.out.clone();
        if let Some(t) = slot.media.last_audio_at() {
            let _ = out.send(MediaOut::LastAudio(t));
        }
        match catch_unwind(AssertUnwindSafe(|| slot.media.finish(now))) {
            Ok(legs) => {
                let _ = out.send(MediaOut::Legs(legs));
            }
            Err(_) => {
                let _ = out.send(MediaOut::Legs(Vec::new()));
            }
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some(mut slot) = self.slots.get_mut(i).and_then(Option::take) {
            slot.media.net_mut().deregister(self.poll.registry());
            self.ids.remove(&slot.id);
            self.free.push(i);
        }
    }
}

/// Tells a device what its participant has newly reached, and passes on its queued room messages.
fn report(slot: &mut Slot) {
    let m = &mut slot.media;
    if let (false, Some(t)) = (slot.told_connected, m.connected_at) {
        slot.told_connected = true;
        let _ = slot.out.send(MediaOut::Connected(t));
    }
    if let (false, Some(t)) = (slot.told_audio, m.first_audio_at) {
        slot.told_audio = true;
        let _ = slot.out.send(MediaOut::FirstAudio(t));
    }
    while let Some(v) = m.take_signal() {
        let _ = slot.out.send(MediaOut::Send(v));
    }
    if let Some(why) = m.take_failure() {
        let _ = slot.out.send(MediaOut::Failed(why));
    }
}
