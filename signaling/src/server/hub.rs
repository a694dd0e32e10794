//! The hub: one task that owns the switchboard and every device's session, so each decision is taken in one
//! place, in arrival order, with no locks. Sockets send it requests; it answers on each socket's channel, then
//! delivers what the request caused: events (numbered per session and kept for `resume`), webhooks, and
//! rooms placed on the SFU. In cluster mode the switchboard's state is in Redis, shared with the other
//! signaling nodes ([`SharedBoard`]); the hub still owns its sessions, and routes events for devices connected
//! elsewhere through Redis.

use super::cluster::ClusterPlacement;
use super::placement::Placement;
use super::protocol::{self, VERSION};
use super::shared::SharedBoard;
use crate::core::{CallError, Command, Device, Hook, Limits, Op, Output, Reply, Switchboard};
use hualu_cluster::Routed;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Where call events for the app's backend go (the webhook sender).
pub trait HookSink: Send + Sync + 'static {
    /// Posts `data` as event `kind` (`call.invite`, ...).
    fn post(&self, kind: &str, data: Value);
}

/// What goes out on a socket.
#[derive(Debug, Clone)]
pub enum Out {
    /// A message.
    Text(Arc<str>),
    /// Close the socket: its session moved to another one.
    Close(&'static str),
}

/// A socket's outgoing messages.
pub type Outbox = mpsc::UnboundedSender<Out>;

/// What a socket asks of the hub.
pub enum ToHub {
    /// A socket opened for `device`; with `resume`, it continues that session after the event it names.
    Attach {
        device: Device,
        resume: Option<(String, u64)>,
        tx: Outbox,
        reply: oneshot::Sender<Attached>,
    },
    /// A command from a session's socket.
    Request {
        session: String,
        generation: u64,
        id: Value,
        key: Option<String>,
        command: Command,
    },
    /// The socket closed: the session waits for `resume` for the grace period.
    Detach { session: String, generation: u64 },
    /// The SFU reports whether `user`'s media flows in the room of `call`.
    Media { call: String, user: String, flowing: bool },
    /// The call's room moved to another SFU node (`reason`): its devices are told to join it there.
    Moved {
        call: crate::core::CallId,
        reason: &'static str,
    },
    /// The live calls, as the admin API shows them.
    Calls { reply: oneshot::Sender<Vec<Value>> },
    /// An event for a device, from another signaling node (cluster mode).
    Routed(Routed),
    /// The signaling node a device was connected to died (cluster mode): it is disconnected.
    Lost(Device),
}

/// A socket's session.
pub struct Attached {
    /// The session id, for `resume`.
    pub session: String,
    /// Which attachment of the session this socket is.
    pub generation: u64,
}

struct Session {
    device: Device,
    /// The latest events, for `resume`.
    log: VecDeque<(u64, Arc<str>)>,
    seq: u64,
    tx: Option<Outbox>,
    generation: u64,
}

/// The hub's settings.
pub struct HubConfig {
    pub limits: Limits,
    pub resume_events: usize,
}

/// Where the switchboard's state is: in this process, or in Redis shared by every signaling node.
enum Board {
    Local(Switchboard),
    Shared(Shared),
}

/// Cluster mode: the shared switchboard, where rooms are, and the events for other nodes' devices.
pub struct Shared {
    pub board: SharedBoard,
    pub cluster: Arc<ClusterPlacement>,
    /// This node's name on the events channel.
    pub node: String,
    /// Events for devices not connected here, published in order by one task.
    pub routed: mpsc::UnboundedSender<Routed>,
}

struct Hub {
    board: Board,
    /// What the operations asked of the world, not yet done.
    pending: VecDeque<Output>,
    /// Cluster mode: when to look for due timers next.
    next_due: Instant,
    sessions: HashMap<String, Session>,
    by_device: HashMap<Device, String>,
    /// Detached sessions, in the order their grace ends.
    expiries: VecDeque<(Instant, String, u64)>,
    resume_events: usize,
    placement: Arc<dyn Placement>,
    webhooks: Option<Box<dyn HookSink>>,
}

/// Starts the hub task; requests go to the returned sender.
pub fn start(
    config: HubConfig,
    placement: Arc<dyn Placement>,
    webhooks: Option<Box<dyn HookSink>>,
    shared: Option<Shared>,
) -> mpsc::Sender<ToHub> {
    let (tx, rx) = mpsc::channel(4096);
    let board = match shared {
        Some(s) => Board::Shared(s),
        None => Board::Local(Switchboard::new(config.limits, 0)),
    };
    let hub = Hub {
        board,
        pending: VecDeque::new(),
        next_due: Instant::now(),
        sessions: HashMap::new(),
        by_device: HashMap::new(),
        expiries: VecDeque::new(),
        resume_events: config.resume_events,
        placement,
        webhooks,
    };
    tokio::spawn(hub.run(rx));
    tx
}

impl Hub {
    async fn run(mut self, mut rx: mpsc::Receiver<ToHub>) {
        loop {
            let timers = match &self.board {
                Board::Local(sb) => sb.poll_timeout(),
                Board::Shared(_) => Some(self.next_due),
            };
            let next = [timers, self.expiries.front().map(|e| e.0)].into_iter().flatten().min();
            let sleep = next.map_or(Duration::from_secs(3600), |t| {
                t.saturating_duration_since(Instant::now())
            });
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => self.handle(m, Instant::now()).await,
                    None => return,
                },
                _ = tokio::time::sleep(sleep) => {}
            }
            let now = Instant::now();
            self.timers(now).await;
            self.expire(now).await;
            self.dispatch().await;
            metrics::gauge!("hualu_signaling_sessions").set(self.sessions.len() as f64);
            if let Board::Local(sb) = &self.board {
                metrics::gauge!("hualu_signaling_calls").set(sb.call_count() as f64);
            }
        }
    }

    /// Runs `op`; what it asks of the world waits in `pending` for [`Hub::dispatch`].
    async fn op(&mut self, op: Op, now: Instant) -> Option<Result<Reply, CallError>> {
        match &mut self.board {
            Board::Local(sb) => {
                let reply = sb.apply(op, now);
                self.pending.extend(std::iter::from_fn(|| sb.poll_output()));
                reply
            }
            Board::Shared(s) => {
                let done = s.board.run(op, now).await;
                self.pending.extend(done.outputs);
                done.reply
            }
        }
    }

    /// Cluster mode: records that `device`'s socket is here (`on`), or no longer, so that the other nodes
    /// disconnect it if this node dies.
    async fn placed(&self, device: &Device, on: bool) {
        if let Board::Shared(s) = &self.board {
            let r = s
                .board
                .store()
                .device_on(&s.node, &device.user, &device.device, on)
                .await;
            if let Err(e) = r {
                tracing::warn!(user = %device.user, error = %e, "cannot record where a device is connected");
            }
        }
    }

    /// Runs the timers due at `now`.
    async fn timers(&mut self, now: Instant) {
        match &mut self.board {
            Board::Local(sb) => {
                sb.handle_timeout(now);
                self.pending.extend(std::iter::from_fn(|| sb.poll_output()));
            }
            Board::Shared(s) if now >= self.next_due => {
                self.next_due = now + s.board.tick();
                match s.board.due(now).await {
                    Ok(outputs) => self.pending.extend(outputs),
                    Err(e) => tracing::debug!(error = %e, "cannot read due timers; retrying"),
                }
            }
            Board::Shared(_) => {}
        }
    }

    fn limits(&self) -> &Limits {
        match &self.board {
            Board::Local(sb) => sb.limits(),
            Board::Shared(s) => s.board.limits(),
        }
    }

    async fn handle(&mut self, msg: ToHub, now: Instant) {
        match msg {
            ToHub::Attach {
                device,
                resume,
                tx,
                reply,
            } => {
                let attached = self.attach(device, resume, tx, now).await;
                let _ = reply.send(attached);
            }
            ToHub::Request {
                session,
                generation,
                id,
                key,
                command,
            } => {
                let Some(s) = self.sessions.get(&session).filter(|s| s.generation == generation) else {
                    return;
                };
                let device = s.device.clone();
                let kind = command_name(&command);
                let op = Op::Command {
                    from: device,
                    key,
                    command,
                };
                let r = self.op(op, now).await.unwrap_or(Ok(Reply::Done));
                let result = if r.is_ok() { "ok" } else { "error" };
                metrics::counter!("hualu_signaling_commands_total", "command" => kind, "result" => result).increment(1);
                self.send_now(&session, &protocol::reply(&id, &r));
            }
            ToHub::Media { call, user, flowing } => {
                let call = crate::core::CallId(call);
                self.op(Op::Media { call, user, flowing }, now).await;
            }
            ToHub::Moved { call, reason } => self.moved(&call, reason).await,
            ToHub::Calls { reply } => {
                let calls = self.calls().await.iter().map(|c| call_view(c, now)).collect();
                let _ = reply.send(calls);
            }
            ToHub::Lost(device) => {
                if !self.by_device.contains_key(&device) {
                    self.op(Op::Disconnect(device), now).await;
                }
            }
            ToHub::Routed(r) => {
                let device = Device::new(&r.user, &r.device);
                let event = self.rejoin(&device, r.event).await;
                self.deliver_here(&device, event);
            }
            ToHub::Detach { session, generation } => {
                let Some(s) = self.sessions.get_mut(&session).filter(|s| s.generation == generation) else {
                    return;
                };
                s.tx = None;
                let device = s.device.clone();
                self.placed(&device, false).await;
                self.op(Op::Disconnect(device), now).await;
                let grace = self.limits().grace;
                self.expiries.push_back((now + grace, session, generation));
            }
        }
    }

    async fn attach(&mut self, device: Device, resume: Option<(String, u64)>, tx: Outbox, now: Instant) -> Attached {
        let resumable = resume.as_ref().and_then(|(id, after)| {
            let s = self.sessions.get(id).filter(|s| s.device == device)?;
            // Events after `after` must all still be in the log.
            let oldest = s.log.front().map_or(s.seq + 1, |(n, _)| *n);
            (after + 1 >= oldest && *after <= s.seq).then(|| (id.clone(), *after))
        });
        let (session, resumed) = match resumable {
            Some((id, after)) => {
                let s = self.sessions.get_mut(&id).expect("checked above");
                if let Some(old) = s.tx.take() {
                    let _ = old.send(Out::Close("replaced"));
                }
                s.generation += 1;
                let welcome = welcome(&id, &device, true, s.seq);
                let _ = tx.send(Out::Text(welcome));
                for (_, text) in s.log.iter().filter(|(n, _)| *n > after) {
                    let _ = tx.send(Out::Text(text.clone()));
                }
                s.tx = Some(tx);
                (id, true)
            }
            None => (self.fresh(&device, tx, resume.is_some()), false),
        };
        tracing::debug!(user = %device.user, device = %device.device, resumed, "attached");
        let generation = self.sessions.get(&session).map_or(0, |s| s.generation);
        self.placed(&device, true).await;
        self.op(Op::Connect(device), now).await;
        Attached { session, generation }
    }

    /// A new session for `device`, replacing any it had.
    fn fresh(&mut self, device: &Device, tx: Outbox, asked_resume: bool) -> String {
        if let Some(old) = self.by_device.remove(device).and_then(|id| self.sessions.remove(&id)) {
            if let Some(t) = old.tx {
                let _ = t.send(Out::Close("replaced"));
            }
        }
        let id = Alphanumeric.sample_string(&mut rand::rng(), 22);
        let mut text = welcome(&id, device, false, 0);
        if asked_resume {
            // The old session is gone (expired, or its events are no longer kept): the client starts over.
            let mut v: Value = serde_json::from_str(&text).unwrap_or_default();
            v["resume_failed"] = json!(true);
            text = v.to_string().into();
        }
        let _ = tx.send(Out::Text(text));
        let session = Session {
            device: device.clone(),
            log: VecDeque::new(),
            seq: 0,
            tx: Some(tx),
            generation: 0,
        };
        self.sessions.insert(id.clone(), session);
        self.by_device.insert(device.clone(), id.clone());
        id
    }

    /// Sessions whose grace ran out without a resume end, and their devices leave their calls.
    async fn expire(&mut self, now: Instant) {
        while self.expiries.front().is_some_and(|e| e.0 <= now) {
            let Some((_, id, generation)) = self.expiries.pop_front() else {
                break;
            };
            let gone = self
                .sessions
                .get(&id)
                .is_some_and(|s| s.generation == generation && s.tx.is_none());
            if let Some(s) = gone.then(|| self.sessions.remove(&id)).flatten() {
                self.by_device.remove(&s.device);
                self.op(Op::Remove(s.device), now).await;
            }
        }
    }

    /// Sends each device in `call` a `move`: the room's new node, and a token for it.
    async fn moved(&mut self, call: &crate::core::CallId, reason: &str) {
        let devices: Vec<Device> = match self.call(call).await {
            Some(c) => c.joined().map(|(u, d)| Device::new(u, d)).collect(),
            None => return,
        };
        for d in devices {
            match self.join(call, &d).await {
                Ok(mut v) => {
                    v["type"] = json!("move");
                    v["call"] = json!(call);
                    v["reason"] = json!(reason);
                    self.deliver(&d, v);
                }
                Err(e) => tracing::error!(%call, error = %e, "no room to move to"),
            }
        }
    }

    /// A reply: sent, not numbered or kept.
    fn send_now(&mut self, session: &str, v: &Value) {
        if let Some(tx) = self.sessions.get(session).and_then(|s| s.tx.as_ref()) {
            let _ = tx.send(Out::Text(v.to_string().into()));
        }
    }

    /// Call `id` as it is now.
    async fn call(&self, id: &crate::core::CallId) -> Option<crate::core::Call> {
        match &self.board {
            Board::Local(sb) => sb.call(id).cloned(),
            Board::Shared(s) => {
                let got = s.board.store().read(&[format!("call:{id}")]).await;
                let json = got.ok()?.pop().flatten()?;
                serde_json::from_str(&json).ok()
            }
        }
    }

    /// Every live call.
    async fn calls(&self) -> Vec<crate::core::Call> {
        match &self.board {
            Board::Local(sb) => sb.calls().cloned().collect(),
            Board::Shared(s) => {
                let all = s.board.store().scan("call:").await.unwrap_or_default();
                all.iter().filter_map(|j| serde_json::from_str(j).ok()).collect()
            }
        }
    }

    /// An event for `device`, delivered here if its session is here, and in cluster mode routed to the other
    /// nodes unless its socket is open here.
    fn deliver(&mut self, device: &Device, v: Value) {
        let open_here = self.deliver_here(device, v.clone());
        if let (Board::Shared(s), false) = (&self.board, open_here) {
            let routed = Routed {
                from: s.node.clone(),
                user: device.user.clone(),
                device: device.device.clone(),
                event: v,
            };
            let _ = s.routed.send(routed);
        }
    }

    /// An event for `device`'s session here, if it has one: numbered, kept for `resume`, and sent if its socket
    /// is open (which this returns).
    fn deliver_here(&mut self, device: &Device, mut v: Value) -> bool {
        let Some(s) = self.by_device.get(device).and_then(|id| self.sessions.get_mut(id)) else {
            return false;
        };
        s.seq += 1;
        v["seq"] = json!(s.seq);
        let text: Arc<str> = v.to_string().into();
        s.log.push_back((s.seq, text.clone()));
        while s.log.len() > self.resume_events {
            s.log.pop_front();
        }
        match &s.tx {
            Some(tx) => tx.send(Out::Text(text)).is_ok(),
            None => false,
        }
    }

    async fn dispatch(&mut self) {
        // Calls whose room could not be placed: their joins are dropped, and they end.
        let mut failed: Vec<crate::core::CallId> = Vec::new();
        while let Some(o) = self.pending.pop_front() {
            match o {
                Output::Event { to, event } => {
                    let v = serde_json::to_value(&event).unwrap_or_default();
                    self.deliver(&to, v);
                }
                Output::Hook(h) => self.hook(&h),
                Output::Place(call) => {
                    if let Err(e) = self.placement.place(&call) {
                        tracing::error!(%call, error = %e, "placing the call's room failed; the call ends");
                        self.op(Op::Fail(call.clone()), Instant::now()).await;
                        failed.push(call.clone());
                    }
                    metrics::counter!("hualu_signaling_calls_answered_total").increment(1);
                }
                Output::Join { call, .. } if failed.contains(&call) => {}
                Output::Join { call, to } => match self.join(&call, &to).await {
                    Ok(mut v) => {
                        v["type"] = json!("join");
                        v["call"] = json!(call);
                        self.deliver(&to, v);
                    }
                    Err(e) => tracing::error!(%call, error = %e, "no room to join"),
                },
                Output::Leave { .. } => {}
                Output::Close(call) => self.placement.close(&call),
            }
        }
    }

    /// A `join` for `to`: in cluster mode, a room another signaling node placed is looked up first, and the
    /// node `to` joins is decided by the signaling node its socket is on (its region), so one elsewhere gets the
    /// home node here and a fresh decision there ([`Hub::rejoin`]).
    async fn join(&self, call: &crate::core::CallId, to: &Device) -> Result<Value, super::PlaceError> {
        if let Board::Shared(s) = &self.board {
            s.cluster.locate(call).await;
            return s.cluster.join_for(call, to, self.open_here(to));
        }
        self.placement.join(call, to)
    }

    /// A `join` or `move` routed here from another signaling node, for a device whose socket is here: its node
    /// in the room is decided again, here, where its region is known. Other events pass as they are.
    async fn rejoin(&self, device: &Device, mut event: Value) -> Value {
        let kind = event["type"].as_str().unwrap_or_default();
        if !matches!(kind, "join" | "move") || !self.open_here(device) {
            return event;
        }
        let Some(call) = event["call"].as_str().map(|c| crate::core::CallId(c.to_string())) else {
            return event;
        };
        if let (Board::Shared(s), Some(url)) = (&self.board, event["sfu_url"].as_str()) {
            s.cluster.locate(&call).await;
            s.cluster.learn_home(&call, url);
        }
        match self.join(&call, device).await {
            Ok(Value::Object(fields)) => {
                for (k, v) in fields {
                    event[k] = v;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::info!(%call, error = %e, "cannot decide the node here; the routed join stands"),
        }
        event
    }

    /// Whether `device`'s socket is open on this node.
    fn open_here(&self, device: &Device) -> bool {
        self.by_device
            .get(device)
            .and_then(|id| self.sessions.get(id))
            .is_some_and(|s| s.tx.is_some())
    }

    fn hook(&mut self, h: &Hook) {
        if matches!(h, Hook::Invite { .. }) {
            metrics::counter!("hualu_signaling_calls_total").increment(1);
        }
        if let Hook::Ended { reason, .. } = h {
            let reason = serde_json::to_value(reason).unwrap_or_default();
            let reason = reason.as_str().unwrap_or("unknown").to_string();
            metrics::counter!("hualu_signaling_calls_ended_total", "reason" => reason).increment(1);
        }
        let Some(w) = &self.webhooks else { return };
        let mut v = serde_json::to_value(h).unwrap_or_default();
        let kind = v
            .as_object_mut()
            .and_then(|o| o.remove("type"))
            .and_then(|t| t.as_str().map(str::to_string))
            .unwrap_or_default();
        w.post(&kind, v);
    }
}

fn welcome(session: &str, device: &Device, resumed: bool, seq: u64) -> Arc<str> {
    json!({
        "type": "welcome",
        "version": VERSION,
        "session": session,
        "user": device.user,
        "device": device.device,
        "resumed": resumed,
        "seq": seq,
    })
    .to_string()
    .into()
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Invite { call: None, .. } => "invite",
        Command::Invite { .. } => "invite_more",
        Command::Accept(_) => "accept",
        Command::Decline(_) => "decline",
        Command::Ignore(_) => "ignore",
        Command::Cancel(_) => "cancel",
        Command::Hangup(_) => "hangup",
        Command::Settings { .. } => "settings",
        Command::Watch(_) => "watch",
    }
}

/// A call as the admin API lists it: `{"call", "caller", "media", "phase", "age_s", "members": [...]}`.
fn call_view(c: &crate::core::Call, now: Instant) -> Value {
    use crate::core::Status;
    let members: Vec<Value> = c
        .members
        .iter()
        .map(|(user, m)| match &m.status {
            Status::Ringing { devices, .. } => json!({"user": user, "status": "ringing", "devices": devices}),
            Status::Joined { device, lost } => {
                json!({"user": user, "status": "joined", "device": device, "connection_lost": lost.is_some()})
            }
            Status::Gone(reason) => json!({"user": user, "status": "gone", "reason": reason}),
        })
        .collect();
    let phase = match c.phase {
        crate::core::Phase::Ringing => "ringing",
        crate::core::Phase::Connecting => "connecting",
        crate::core::Phase::Active => "active",
    };
    json!({
        "call": c.id,
        "caller": c.caller,
        "media": c.media,
        "phase": phase,
        "age_s": now.saturating_duration_since(c.created).as_secs(),
        "answered_s": c.answered.map(|a| now.saturating_duration_since(a).as_secs()),
        "members": members,
    })
}
