//! One device of one user: its call-control socket, the calls the plan gives it, and its room in a call. A
//! device is one task; it waits on its sockets, its commands, its media shard's news and one timer, so
//! thousands share a thread. The media itself runs on a media shard ([`super::shard`]), not here.

use super::room::InRoom;
use super::shard::MediaOut;
use super::socket::Socket;
use super::Ctx;
use crate::plan::PlannedCall;
use crate::record::{Leg, Move, Outcome};
use hualu_common::token::{mint, Claims};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

/// What the scheduler tells a device.
#[derive(Debug)]
pub enum Cmd {
    /// Place call `index` of the plan (for glare, the callee places its crossing invite too).
    Place(u32),
    /// A timed event hits this device's call: an outage, or a switch of network.
    Network {
        /// A switch (new address, ICE restart) after the outage, or just the outage.
        switch: bool,
        /// How long nothing gets through.
        outage: Duration,
    },
    /// The run is over: hang up and close.
    Stop,
}

/// What one device saw of one call, sent to the collector when its part ends.
#[derive(Debug, Default)]
pub struct Report {
    /// The call's place in the plan.
    pub index: u32,
    /// The reporting user.
    pub user: u32,
    /// From the plan's caller.
    pub caller: bool,
    /// The server's call id.
    pub call_id: Option<String>,
    /// How it ended up, as this device saw it.
    pub outcome: Option<Outcome>,
    /// What went wrong, if anything.
    pub failure: Option<String>,
    /// The server's `ended` reason.
    pub reason: Option<String>,
    /// Invite sent (caller).
    pub invited_at: Option<Instant>,
    /// First `ringing` (caller).
    pub ringing_at: Option<Instant>,
    /// Answered: the callee's accept, or the caller's `answered`.
    pub answered_at: Option<Instant>,
    /// `join` received.
    pub join_at: Option<Instant>,
    /// ICE and DTLS up.
    pub connected_at: Option<Instant>,
    /// First audio received.
    pub first_audio_at: Option<Instant>,
    /// When this device's part ended.
    pub ended_at: Option<Instant>,
    /// The streams it received, scored (on each node, when the call moved).
    pub legs: Vec<Leg>,
    /// Each move to another SFU node that call control directed.
    pub moves: Vec<Move>,
    /// The last audio heard in the room left behind, while a move waits for audio on the new node.
    resume_from: Option<Instant>,
    /// The last audio heard in the room, told as it was left.
    last_audio_at: Option<Instant>,
}

/// Something the device does at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Accept,
    Decline,
    Cancel,
    Hangup,
    /// Gives up on a call that never ended.
    Abandon,
    /// A switch's outage is over: new address, ICE restart.
    Reconnect,
}

/// A call this device takes part in.
struct Call {
    plan: PlannedCall,
    report: Report,
    /// This device acts for its user (the plan's device for callees; device 0 for the caller).
    acts: bool,
    timer: Option<(Instant, Action)>,
    watchdog: Instant,
    /// The room, its socket and the media shard's news, once joined.
    room: Option<InRoom>,
    key: u32,
}

/// A running device.
pub struct Device {
    ctx: Arc<Ctx>,
    user: u32,
    device: u32,
    ws: Socket,
    reports: mpsc::UnboundedSender<Report>,
    call: Option<Call>,
    next_id: u64,
    seed: u64,
}

/// Why a device stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Its socket could not be opened.
    #[error("user {user} device {device}: {why}")]
    Connect {
        /// The user index.
        user: u32,
        /// The device index.
        device: u32,
        /// Why.
        why: String,
    },
}

impl Device {
    /// Connects device `device` of user `user` to call control.
    pub async fn connect(
        ctx: Arc<Ctx>,
        user: u32,
        device: u32,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Result<Device, DeviceError> {
        let fail = |why: String| DeviceError::Connect { user, device, why };
        let seed = super::splitmix(u64::from(user) << 8 | u64::from(device));
        let token = device_token(&ctx, user, device).map_err(fail)?;
        let url = format!("{}?access_token={token}", ctx.scenario.servers.signaling);
        let mut ws = Socket::connect(&url, ctx.source_ip(seed))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let welcome = ws.recv().await.map_err(|e| fail(e.to_string()))?;
        if welcome["type"] != "welcome" {
            return Err(fail(format!("expected welcome, got {welcome}")));
        }
        Ok(Device {
            ctx,
            user,
            device,
            ws,
            reports,
            call: None,
            next_id: 1,
            seed,
        })
    }

    /// Runs until `Stop`, or until the socket fails.
    pub async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        let far = Instant::now() + Duration::from_secs(86_400);
        loop {
            let deadline = self.deadline().unwrap_or(far);
            let room = self.call.as_mut().and_then(|c| c.room.as_mut());
            let (out, socket) = match room {
                Some(r) => (Some(&mut r.out), r.room.as_mut()),
                None => (None, None),
            };
            tokio::select! {
                msg = self.ws.recv() => match msg {
                    Ok(v) => self.on_event(v).await,
                    Err(e) => {
                        self.fail_call(format!("signaling: {e}")).await;
                        return;
                    }
                },
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Place(index)) => self.place(index).await,
                    Some(Cmd::Network { switch, outage }) => self.network(switch, outage),
                    Some(Cmd::Stop) | None => {
                        self.stop().await;
                        return;
                    }
                },
                m = media_out(out) => self.on_media(m).await,
                v = signal(socket) => self.on_room(v),
                _ = sleep_until(deadline.into()) => self.on_timer().await,
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let call = self.call.as_ref()?;
        let mut d = call.watchdog;
        if let Some((t, _)) = call.timer {
            d = d.min(t);
        }
        Some(d)
    }

    async fn request(&mut self, mut v: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        v["id"] = json!(id);
        let _ = self.ws.send(&v).await;
        id
    }

    /// Sends a call command with a fresh idempotency key.
    async fn command(&mut self, kind: &str, call: &str) {
        let Some(c) = self.call.as_mut() else { return };
        c.key += 1;
        let key = format!("{}-{}-{}", c.plan.index, self.device, c.key);
        self.request(json!({"type": kind, "key": key, "call": call})).await;
    }

    /// Starts call `index` as its caller (or, for glare, as the callee who calls back at the same moment).
    async fn place(&mut self, index: u32) {
        let Some(plan) = self.ctx.plan.calls.get(index as usize).cloned() else {
            return;
        };
        if self.call.is_some() {
            return;
        }
        let caller = plan.caller == self.user;
        let to: Vec<String> = match caller {
            true => plan.callees.iter().map(|u| self.ctx.user_id(*u)).collect(),
            false => vec![self.ctx.user_id(plan.caller)],
        };
        let now = Instant::now();
        let media = if plan.video { "video" } else { "audio" };
        self.call = Some(Call::new(&self.ctx, plan, self.user, caller, true, now));
        if let Some(c) = self.call.as_mut() {
            c.report.invited_at = Some(now);
        }
        let key = format!("{index}-invite-{}", self.user);
        self.request(json!({"type": "invite", "key": key, "to": to, "media": media}))
            .await;
    }

    async fn on_event(&mut self, v: Value) {
        let now = Instant::now();
        let kind = v["type"].as_str().unwrap_or_default().to_string();
        if kind == "incoming" {
            return self.incoming(&v, now);
        }
        let Some(call) = self.call.as_mut() else { return };
        if call.report.call_id.is_none() && kind == "reply" {
            call.report.call_id = v["call"].as_str().map(str::to_string);
            return;
        }
        let id = v["call"].as_str();
        if id.is_some() && id != call.report.call_id.as_deref() {
            return;
        }
        match kind.as_str() {
            "error" => {
                let why = format!("signaling: error {} ({})", v["code"], v["message"]);
                if call.report.call_id.is_none() {
                    call.report.failure = Some(why);
                    self.finish(now).await;
                }
            }
            "ringing" => {
                call.report.ringing_at.get_or_insert(now);
                if call.report.caller && call.plan.outcome == Outcome::Cancelled {
                    call.timer = Some((now + Duration::from_secs_f64(call.plan.ring_s), Action::Cancel));
                }
            }
            "answered" => {
                call.report.answered_at.get_or_insert(now);
            }
            "answered_elsewhere" | "cancelled" | "missed" | "declined" if !call.acts => self.call = None,
            "busy" => call.report.outcome = Some(Outcome::Busy),
            "declined" => call.report.outcome = Some(Outcome::Declined),
            "missed" | "cancelled" => {
                let o = if kind == "missed" {
                    Outcome::NoAnswer
                } else {
                    Outcome::Cancelled
                };
                call.report.outcome = Some(o);
                // A callee's part ends here; the caller's ends with `ended`.
                if !call.report.caller {
                    self.finish(now).await;
                }
            }
            "join" => self.join(v, now).await,
            "move" => self.moved(v, now).await,
            "ended" => {
                let reason = v["reason"].as_str().unwrap_or_default().to_string();
                call.report.reason = Some(reason);
                self.finish(now).await;
            }
            _ => {}
        }
    }

    /// A call rings here: find it in the plan, and do this device's part.
    fn incoming(&mut self, v: &Value, now: Instant) {
        let Some(from) = v["from"].as_str().and_then(|f| self.ctx.user_index(f)) else {
            return;
        };
        let index = self.ctx.placing.lock().ok().and_then(|m| m.get(&from).copied());
        let Some(plan) = index.and_then(|i| self.ctx.plan.calls.get(i as usize)).cloned() else {
            return;
        };
        if self.call.as_ref().is_some_and(|c| c.plan.index == plan.index) {
            // Glare: this device called back, and the server merged the two invites into this call.
            if let Some(c) = self.call.as_mut() {
                c.report.call_id = v["call"].as_str().map(str::to_string);
            }
            return;
        }
        if self.call.is_some() {
            return;
        }
        let acts = self.device == plan.device;
        let action = match plan.outcome {
            Outcome::Answered | Outcome::Glare => Some(Action::Accept),
            Outcome::Declined => Some(Action::Decline),
            _ => None,
        };
        let ring = Duration::from_secs_f64(plan.ring_s);
        let mut call = Call::new(&self.ctx, plan, self.user, false, acts, now);
        call.report.call_id = v["call"].as_str().map(str::to_string);
        call.report.ringing_at = Some(now);
        call.timer = action.filter(|_| acts).map(|a| (now + ring, a));
        self.call = Some(call);
    }

    async fn join(&mut self, v: Value, now: Instant) {
        let ctx = self.ctx.clone();
        let user = ctx.user_id(self.user);
        let profile = ctx.plan.profiles[self.user as usize].clone();
        let Some(call) = self.call.as_mut() else { return };
        call.report.join_at = Some(now);
        call.report.answered_at.get_or_insert(now);
        call.report.outcome = Some(if call.plan.outcome == Outcome::Glare {
            Outcome::Glare
        } else {
            Outcome::Answered
        });
        let seed = self.seed ^ u64::from(call.plan.index) << 20;
        match super::room::join(&ctx, &user, &profile, &v, seed, call.plan.video).await {
            Ok(room) => call.room = Some(room),
            Err(e) => {
                call.report.failure = Some(format!("media: {e}"));
                let id = call.report.call_id.clone().unwrap_or_default();
                self.command("hangup", &id).await;
                return;
            }
        }
        let Some(call) = self.call.as_mut() else { return };
        let connect = Duration::from_secs_f64(ctx.scenario.media.connect_timeout_s);
        call.watchdog = now + connect;
        // The caller hangs up a 1:1 call at the end of its hold time; everyone leaves a group call then.
        if call.report.caller || call.plan.is_group() {
            let extra = if call.report.caller { 0.0 } else { 0.5 };
            let hold = Duration::from_secs_f64(call.plan.hold_s + extra);
            call.timer = Some((now + hold, Action::Hangup));
        }
    }

    /// Call control moved the call's room to another SFU node (its node drains or died): leave the old room,
    /// keeping what it scored, and join the new one. The media gap runs from the last audio heard in the old
    /// room to the first in the new.
    async fn moved(&mut self, v: Value, now: Instant) {
        let ctx = self.ctx.clone();
        let user = ctx.user_id(self.user);
        let profile = ctx.plan.profiles[self.user as usize].clone();
        let Some(call) = self.call.as_mut() else { return };
        let Some(old) = call.room.take() else { return };
        let report = &mut call.report;
        let legs = old.finish(|m| report.seen(m)).await;
        report.legs.extend(legs);
        let reason = v["reason"].as_str().unwrap_or("unknown").to_string();
        report.moves.push(Move {
            user: user.clone(),
            reason,
            gap_ms: None,
        });
        report.resume_from = Some(report.last_audio_at.take().unwrap_or(now));
        let seed = self.seed ^ u64::from(call.plan.index) << 20 ^ (report.moves.len() as u64) << 40;
        match super::room::join(&ctx, &user, &profile, &v, seed, call.plan.video).await {
            Ok(room) => call.room = Some(room),
            Err(e) => {
                call.report.failure = Some(format!("media: moving to another node: {e}"));
                let id = call.report.call_id.clone().unwrap_or_default();
                self.command("hangup", &id).await;
            }
        }
    }

    fn on_room(&mut self, v: Result<Value, super::socket::SocketError>) {
        let Some(room) = self.call.as_mut().and_then(|c| c.room.as_mut()) else {
            return;
        };
        match v {
            Ok(v) => room.media.signal(v),
            // The SFU closed the room (the call ended) or failed: no more room messages to wait for.
            Err(_) => room.room = None,
        }
    }

    /// News from the participant's media shard.
    async fn on_media(&mut self, m: Option<MediaOut>) {
        let Some(call) = self.call.as_mut() else { return };
        let Some(m) = m else {
            // The shard is gone: nothing more will come.
            if let Some(r) = call.room.as_mut() {
                r.out.close();
            }
            return;
        };
        match m {
            MediaOut::Send(v) => {
                if let Some(socket) = call.room.as_mut().and_then(|r| r.room.as_mut()) {
                    let _ = socket.send(&v).await;
                }
            }
            MediaOut::Failed(why) => {
                if call.report.failure.is_none() {
                    call.report.failure = Some(format!("media: {why}"));
                    let id = call.report.call_id.clone().unwrap_or_default();
                    self.command("hangup", &id).await;
                }
            }
            other => call.report.seen(&other),
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let Some(call) = self.call.as_mut() else { return };
        let id = call.report.call_id.clone().unwrap_or_default();
        if call.watchdog <= now {
            return self.watchdog(now, &id).await;
        }
        let Some((at, action)) = call.timer.filter(|(at, _)| *at <= now) else {
            return;
        };
        call.timer = None;
        match action {
            Action::Accept => {
                call.report.answered_at = Some(now);
                self.command("accept", &id).await
            }
            Action::Decline => {
                call.report.outcome = Some(Outcome::Declined);
                self.command("decline", &id).await;
                self.finish(now).await
            }
            Action::Cancel => self.command("cancel", &id).await,
            Action::Hangup => self.command("hangup", &id).await,
            Action::Abandon => {
                call.report.failure.get_or_insert_with(|| "the call never ended".into());
                self.finish(now).await
            }
            Action::Reconnect => {
                if let Some(room) = call.room.as_ref() {
                    room.media
                        .switch(self.seed.wrapping_add(at.elapsed().as_nanos() as u64));
                }
            }
        }
    }

    /// The watchdog fired: media that never connected fails the call; a call past its time is given up.
    async fn watchdog(&mut self, now: Instant, id: &str) {
        let Some(call) = self.call.as_mut() else { return };
        let connected = call.report.connected_at.is_some();
        if call.room.is_some() && !connected && call.report.failure.is_none() {
            let secs = self.ctx.scenario.media.connect_timeout_s;
            call.report.failure = Some(format!("ice: not connected within {secs} s"));
            call.watchdog = now + Duration::from_secs(30);
            call.timer = Some((now + Duration::from_secs(15), Action::Abandon));
            return self.command("hangup", id).await;
        }
        // Connected: the watchdog now guards the end of the call.
        call.watchdog = now + Duration::from_secs_f64(call.plan.hold_s + 60.0);
        if call.timer.is_none() && call.room.is_none() {
            call.timer = Some((now, Action::Abandon));
        }
    }

    fn network(&mut self, switch: bool, outage: Duration) {
        let now = Instant::now();
        let Some(call) = self.call.as_mut() else { return };
        let Some(room) = call.room.as_ref() else { return };
        room.media.outage(outage);
        if switch {
            call.timer.get_or_insert((now + outage, Action::Reconnect));
        }
    }

    async fn fail_call(&mut self, why: String) {
        if let Some(c) = self.call.as_mut() {
            c.report.failure.get_or_insert(why);
        }
        self.finish(Instant::now()).await;
    }

    async fn stop(&mut self) {
        if let Some(id) = self.call.as_ref().and_then(|c| c.report.call_id.clone()) {
            self.command("hangup", &id).await;
        }
        self.finish(Instant::now()).await;
    }

    /// This device's part of the call is over: its media scored, its report sent.
    async fn finish(&mut self, now: Instant) {
        let Some(mut call) = self.call.take() else { return };
        if let Some(room) = call.room.take() {
            let report = &mut call.report;
            let legs = room.finish(|m| report.seen(m)).await;
            report.legs.extend(legs);
        }
        call.report.ended_at = Some(now);
        if call.acts {
            if call.report.caller {
                if let Ok(mut m) = self.ctx.placing.lock() {
                    m.remove(&self.user);
                }
            }
            let _ = self.reports.send(call.report);
        }
    }
}

impl Call {
    fn new(ctx: &Ctx, plan: PlannedCall, user: u32, caller: bool, acts: bool, now: Instant) -> Call {
        let ring_timeout = Duration::from_secs(120);
        if caller {
            if let Ok(mut m) = ctx.placing.lock() {
                m.insert(user, plan.index);
            }
        }
        Call {
            report: Report {
                index: plan.index,
                user,
                caller,
                ..Report::default()
            },
            watchdog: now + ring_timeout + Duration::from_secs_f64(plan.hold_s),
            plan,
            acts,
            timer: None,
            room: None,
            key: 0,
        }
    }
}

fn device_token(ctx: &Ctx, user: u32, device: u32) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ttl = (ctx.scenario.placing_s() as u64).saturating_add(3600);
    let mut claims = Claims::new(&ctx.scenario.servers.api_key, &ctx.user_id(user), now, ttl);
    claims.device = Some(format!("d{device}"));
    mint(&ctx.secret, &claims).map_err(|e| format!("minting a token: {e}"))
}

/// The next news from the media shard; forever when there is no media (or no more news).
async fn media_out(out: Option<&mut mpsc::UnboundedReceiver<MediaOut>>) -> Option<MediaOut> {
    match out {
        Some(o) if !o.is_closed() || !o.is_empty() => o.recv().await,
        _ => std::future::pending().await,
    }
}

impl Report {
    /// Notes a connection, first-audio or last-audio time the media shard told; the first audio after a
    /// move closes that move's gap.
    fn seen(&mut self, m: &MediaOut) {
        match m {
            MediaOut::Connected(t) => {
                self.connected_at.get_or_insert(*t);
            }
            MediaOut::FirstAudio(t) => {
                self.first_audio_at.get_or_insert(*t);
                if let (Some(from), Some(m)) = (self.resume_from.take(), self.moves.last_mut()) {
                    m.gap_ms = Some(t.saturating_duration_since(from).as_secs_f64() * 1000.0);
                }
            }
            MediaOut::LastAudio(t) => self.last_audio_at = Some(*t),
            _ => {}
        }
    }
}

/// The next room message; forever when there is no room socket.
async fn signal(room: Option<&mut Socket>) -> Result<Value, super::socket::SocketError> {
    match room {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}
