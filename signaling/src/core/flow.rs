//! The life of a call: invite, ring, answer, decline, cancel, time out, leave, reconnect, end.

use super::call::{Call, Member, Phase, Status};
use super::events::{CallId, Device, EndReason, Event, Hook, LeaveReason, Media, Output};
use super::{CallError, Reply, Switchboard, Timer};
use hualu_common::token::MAX_NAME_LEN;
use std::collections::BTreeSet;
use std::time::Instant;

impl Switchboard {
    /// The live call `id`, or why not.
    fn live(&self, id: &CallId) -> Result<&Call, CallError> {
        match self.calls.get(id) {
            Some(c) => Ok(c),
            None => Err(self
                .ended
                .get(id)
                .map_or(CallError::NoSuchCall, |r| CallError::Ended(*r))),
        }
    }

    /// `user`'s status in call `id`.
    fn status(&self, id: &CallId, user: &str) -> Result<Status, CallError> {
        let c = self.live(id)?;
        c.members
            .get(user)
            .map(|m| m.status.clone())
            .ok_or(CallError::NotInCall)
    }

    fn set_status(&mut self, id: &CallId, user: &str, status: Status) {
        if let Some(m) = self.calls.get_mut(id).and_then(|c| c.members.get_mut(user)) {
            if matches!(status, Status::Joined { .. }) {
                m.joined_once = true;
            }
            m.status = status;
        }
        let part = self
            .calls
            .get(id)
            .and_then(|c| c.members.get(user))
            .is_some_and(|m| !matches!(m.status, Status::Gone(_)));
        let calls = &mut self.user_mut(user).calls;
        if part {
            calls.insert(id.clone());
        } else {
            calls.remove(id);
        }
    }

    /// Is `user` in a call (not just ringing) other than `except`?
    fn in_call(&self, user: &str, except: Option<&CallId>) -> bool {
        let Some(u) = self.users.get(user) else { return false };
        u.calls.iter().filter(|c| Some(*c) != except).any(|c| {
            self.calls
                .get(c)
                .and_then(|c| c.members.get(user))
                .is_some_and(|m| m.joined_device().is_some())
        })
    }

    fn check_callees(&self, from: &Device, to: &[String], room: usize) -> Result<Vec<String>, CallError> {
        let mut seen = BTreeSet::new();
        let to: Vec<String> = to.iter().filter(|u| seen.insert(u.as_str())).cloned().collect();
        if to.is_empty() {
            return Err(CallError::BadRequest("invite names nobody".into()));
        }
        if to.len() > room {
            let max = self.limits.max_members;
            return Err(CallError::BadRequest(format!("a call has at most {max} members")));
        }
        if let Some(bad) = to.iter().find(|u| u.is_empty() || u.len() > MAX_NAME_LEN) {
            return Err(CallError::BadRequest(format!("bad user id {bad:?}")));
        }
        if to.contains(&from.user) {
            return Err(CallError::BadRequest("a user cannot call itself".into()));
        }
        Ok(to)
    }

    /// A 1:1 call from `callee` to `caller` still ringing: an invite the other way is glare.
    fn glare(&self, caller: &str, to: &[String]) -> Option<CallId> {
        let [callee] = to else { return None };
        let u = self.users.get(caller)?;
        u.calls
            .iter()
            .filter_map(|id| self.calls.get(id))
            .find(|c| {
                c.caller == *callee
                    && c.one_to_one()
                    && c.phase == Phase::Ringing
                    && c.members.get(caller).is_some_and(Member::ringing)
            })
            .map(|c| c.id.clone())
    }

    pub(super) fn invite(
        &mut self,
        from: &Device,
        to: Vec<String>,
        media: Media,
        now: Instant,
    ) -> Result<Reply, CallError> {
        let to = self.check_callees(from, &to, self.limits.max_members.saturating_sub(1))?;
        if let Some(older) = self.glare(&from.user, &to) {
            // Both called each other: the older call (the lesser id) is answered by this device instead.
            self.accept(from, &older, now)?;
            return Ok(Reply::Call {
                call: older,
                merged: true,
            });
        }
        if self.in_call(&from.user, None) {
            return Err(CallError::AlreadyInCall);
        }
        self.next_call += 1;
        let id = CallId::from_seq(self.next_call);
        let call = Call::new(id.clone(), &from.user, &from.device, media, now);
        self.calls.insert(id.clone(), call);
        self.user_mut(&from.user).calls.insert(id.clone());
        let (offline, unreachable) = self.reach(&to);
        for callee in &to {
            self.ring(&id, callee, now);
        }
        self.out.push_back(Output::Hook(Hook::Invite {
            call: id.clone(),
            from: from.user.clone(),
            to,
            media,
            offline,
            unreachable,
        }));
        self.check_end(&id, now);
        Ok(Reply::Call {
            call: id,
            merged: false,
        })
    }

    /// The callees' known devices that are offline, and the callees with no device online.
    fn reach(&self, to: &[String]) -> (Vec<Device>, Vec<String>) {
        let mut offline = Vec::new();
        let mut unreachable = Vec::new();
        for u in to {
            let user = self.users.get(u);
            let devices = user.map(|u| u.devices.iter()).into_iter().flatten();
            offline.extend(devices.filter(|(_, d)| !d.online).map(|(id, _)| Device::new(u, id)));
            if user.is_none_or(|u| u.online().is_empty()) {
                unreachable.push(u.clone());
            }
        }
        (offline, unreachable)
    }

    pub(super) fn invite_more(
        &mut self,
        from: &Device,
        id: &CallId,
        to: Vec<String>,
        now: Instant,
    ) -> Result<Reply, CallError> {
        let c = self.live(id)?;
        if c.members.get(&from.user).and_then(Member::joined_device) != Some(from.device.as_str()) {
            return Err(CallError::NotInCall);
        }
        let live = c
            .members
            .values()
            .filter(|m| !matches!(m.status, Status::Gone(_)))
            .count();
        let room = self.limits.max_members.saturating_sub(live);
        let to: Vec<String> = to.into_iter().filter(|u| !c.has(u)).collect();
        if to.is_empty() {
            return Ok(Reply::Call {
                call: id.clone(),
                merged: false,
            });
        }
        let to = self.check_callees(from, &to, room)?;
        for callee in &to {
            let event = Event::Invited {
                call: id.clone(),
                user: callee.clone(),
                by: from.user.clone(),
            };
            self.tell_joined(id, &from.user, event);
            self.ring(id, callee, now);
        }
        let (offline, unreachable) = self.reach(&to);
        let (from_user, media) = (self.calls[id].caller.clone(), self.calls[id].media);
        self.out.push_back(Output::Hook(Hook::Invite {
            call: id.clone(),
            from: from_user,
            to,
            media,
            offline,
            unreachable,
        }));
        self.check_end(id, now);
        Ok(Reply::Call {
            call: id.clone(),
            merged: false,
        })
    }

    /// Makes `callee` a member of the call: its connected devices ring, or it is busy.
    fn ring(&mut self, id: &CallId, callee: &str, now: Instant) {
        let waiting = self.in_call(callee, Some(id));
        let takes_waiting = self.users.get(callee).is_some_and(|u| u.call_waiting);
        let member = Member {
            status: Status::Gone(LeaveReason::Busy),
            joined_once: false,
        };
        if let Some(c) = self.calls.get_mut(id) {
            c.members.insert(callee.to_string(), member);
        }
        if waiting && !takes_waiting {
            let event = Event::Busy {
                call: id.clone(),
                user: callee.to_string(),
            };
            self.tell_joined(id, callee, event);
            return;
        }
        let until = now + self.limits.ring_timeout;
        let status = Status::Ringing {
            devices: BTreeSet::new(),
            until,
            waiting,
            announced: false,
        };
        self.set_status(id, callee, status);
        self.rings
            .push_back((until, Timer::Ring(id.clone(), callee.to_string(), until)));
        for device in self.online_devices(callee) {
            self.ring_device(id, &Device::new(callee, &device));
        }
    }

    /// One more device of a ringing member rings.
    fn ring_device(&mut self, id: &CallId, device: &Device) {
        let Some(c) = self.calls.get_mut(id) else { return };
        let (caller, media) = (c.caller.clone(), c.media);
        let members = c.others(&device.user);
        let Some(m) = c.members.get_mut(&device.user) else {
            return;
        };
        let Status::Ringing {
            devices,
            waiting,
            announced,
            ..
        } = &mut m.status
        else {
            return;
        };
        // A device that rang before rings again: it reconnected, and may have lost its screen.
        devices.insert(device.device.clone());
        let (waiting, first) = (*waiting, !std::mem::replace(announced, true));
        let event = Event::Incoming {
            call: id.clone(),
            from: caller,
            members,
            media,
            waiting,
        };
        self.emit(device.clone(), event);
        if first {
            let event = Event::Ringing {
                call: id.clone(),
                user: device.user.clone(),
            };
            self.tell_joined(id, &device.user, event);
        }
    }

    /// The ringing devices of `user` in the call.
    fn ringing_devices(&self, id: &CallId, user: &str) -> Vec<Device> {
        match self.calls.get(id).and_then(|c| c.members.get(user)).map(|m| &m.status) {
            Some(Status::Ringing { devices, .. }) => devices.iter().map(|d| Device::new(user, d)).collect(),
            _ => Vec::new(),
        }
    }

    pub(super) fn accept(&mut self, from: &Device, id: &CallId, now: Instant) -> Result<Reply, CallError> {
        let reply = Reply::Call {
            call: id.clone(),
            merged: false,
        };
        match self.status(id, &from.user)? {
            Status::Ringing { .. } => {}
            Status::Joined { device, .. } if device == from.device => return Ok(reply),
            Status::Joined { .. } => return Err(CallError::AnsweredElsewhere),
            Status::Gone(_) => return Err(CallError::NotInCall),
        }
        for d in self.ringing_devices(id, &from.user) {
            if d != *from {
                let event = Event::AnsweredElsewhere {
                    call: id.clone(),
                    device: from.device.clone(),
                };
                self.emit(d, event);
            }
        }
        let status = Status::Joined {
            device: from.device.clone(),
            lost: None,
        };
        self.set_status(id, &from.user, status);
        let event = Event::Answered {
            call: id.clone(),
            user: from.user.clone(),
            device: from.device.clone(),
        };
        self.tell_joined(id, &from.user, event);
        let Some(c) = self.calls.get_mut(id) else {
            return Ok(reply);
        };
        if c.phase == Phase::Ringing {
            c.phase = Phase::Connecting;
            c.answered = Some(now);
            let after_ms = now.duration_since(c.created).as_millis() as u64;
            let joined: Vec<Device> = c.joined().map(|(u, d)| Device::new(u, d)).collect();
            self.out.push_back(Output::Hook(Hook::Answered {
                call: id.clone(),
                user: from.user.clone(),
                device: from.device.clone(),
                after_ms,
            }));
            self.out.push_back(Output::Place(id.clone()));
            for to in joined {
                self.out.push_back(Output::Join { call: id.clone(), to });
            }
        } else {
            self.out.push_back(Output::Join {
                call: id.clone(),
                to: from.clone(),
            });
        }
        Ok(reply)
    }

    pub(super) fn decline(&mut self, from: &Device, id: &CallId, now: Instant) -> Result<Reply, CallError> {
        match self.status(id, &from.user)? {
            Status::Ringing { .. } => {}
            Status::Joined { .. } => return Err(CallError::BadState(super::BAD_STATES[0])),
            Status::Gone(_) => return Err(CallError::NotInCall),
        }
        let event = Event::Declined {
            call: id.clone(),
            user: from.user.clone(),
        };
        for d in self.ringing_devices(id, &from.user) {
            if d != *from {
                self.emit(d, event.clone());
            }
        }
        self.set_status(id, &from.user, Status::Gone(LeaveReason::Declined));
        self.tell_joined(id, &from.user, event);
        self.check_end(id, now);
        Ok(Reply::Done)
    }

    pub(super) fn ignore(&mut self, from: &Device, id: &CallId) -> Result<Reply, CallError> {
        self.live(id)?;
        let m = self.calls.get_mut(id).and_then(|c| c.members.get_mut(&from.user));
        match m.map(|m| &mut m.status) {
            Some(Status::Ringing { devices, .. }) => {
                devices.remove(&from.device);
                Ok(Reply::Done)
            }
            Some(Status::Joined { .. }) => Err(CallError::BadState(super::BAD_STATES[1])),
            _ => Err(CallError::NotInCall),
        }
    }

    pub(super) fn cancel(&mut self, from: &Device, id: &CallId, now: Instant) -> Result<Reply, CallError> {
        let c = self.live(id)?;
        if c.caller != from.user || c.members.get(&from.user).and_then(Member::joined_device) != Some(&from.device) {
            return Err(CallError::NotInCall);
        }
        if c.phase != Phase::Ringing {
            return Err(CallError::BadState(super::BAD_STATES[2]));
        }
        self.end(id, EndReason::Cancelled, now);
        Ok(Reply::Done)
    }

    pub(super) fn hangup(&mut self, from: &Device, id: &CallId, now: Instant) -> Result<Reply, CallError> {
        let c = self.live(id)?;
        if c.phase == Phase::Ringing && c.caller == from.user {
            return self.cancel(from, id, now);
        }
        match self.status(id, &from.user)? {
            Status::Ringing { .. } => self.decline(from, id, now),
            Status::Joined { device, .. } if device == from.device => {
                self.leave(id, &from.user, LeaveReason::Hangup, now);
                Ok(Reply::Done)
            }
            Status::Joined { .. } => Err(CallError::AnsweredElsewhere),
            Status::Gone(_) => Err(CallError::NotInCall),
        }
    }

    /// `user` leaves the call for `reason`.
    pub(super) fn leave(&mut self, id: &CallId, user: &str, reason: LeaveReason, now: Instant) {
        let Ok(Status::Joined { device, .. }) = self.status(id, user) else {
            return;
        };
        self.set_status(id, user, Status::Gone(reason));
        if self.calls.get(id).is_some_and(|c| c.phase != Phase::Ringing) {
            self.out.push_back(Output::Leave {
                call: id.clone(),
                to: Device::new(user, &device),
            });
        }
        if self.check_end(id, now) {
            // The one who left ends it, and hears so like the others.
            if let Some(reason) = self.ended.get(id).copied() {
                self.emit(
                    Device::new(user, &device),
                    Event::Ended {
                        call: id.clone(),
                        reason,
                    },
                );
            }
        } else {
            let event = Event::Left {
                call: id.clone(),
                user: user.to_string(),
                reason,
            };
            self.tell_joined(id, user, event);
        }
    }

    pub(super) fn ring_timeout(&mut self, id: &CallId, user: &str, until: Instant, now: Instant) {
        let Ok(Status::Ringing { until: u, .. }) = self.status(id, user) else {
            return;
        };
        if u != until {
            return;
        }
        let event = Event::Missed {
            call: id.clone(),
            user: user.to_string(),
        };
        for d in self.ringing_devices(id, user) {
            self.emit(d, event.clone());
        }
        self.set_status(id, user, Status::Gone(LeaveReason::NoAnswer));
        self.tell_joined(id, user, event);
        let from = self.calls[id].caller.clone();
        self.out.push_back(Output::Hook(Hook::Missed {
            call: id.clone(),
            from,
            user: user.to_string(),
        }));
        self.check_end(id, now);
    }

    /// A device of a member came back: it rings again if its user still rings, or rejoins its call.
    pub(super) fn device_back(&mut self, id: &CallId, device: &Device, _now: Instant) {
        match self.status(id, &device.user) {
            Ok(Status::Ringing { .. }) => self.ring_device(id, device),
            Ok(Status::Joined {
                device: d,
                lost: Some(_),
            }) if d == device.device => {
                self.set_status(id, &device.user, Status::Joined { device: d, lost: None });
                let event = Event::Reconnected {
                    call: id.clone(),
                    user: device.user.clone(),
                };
                self.tell_joined(id, &device.user, event);
            }
            _ => {}
        }
    }

    /// A device's connection, or its media, is lost: its call waits for it. A ringing device keeps ringing:
    /// what happens to the call while it is away reaches it when it resumes.
    pub(super) fn device_lost(&mut self, id: &CallId, device: &Device, now: Instant) {
        let Ok(Status::Joined { device: d, lost: None }) = self.status(id, &device.user) else {
            return;
        };
        if d != device.device {
            return;
        }
        self.set_status(
            id,
            &device.user,
            Status::Joined {
                device: d,
                lost: Some(now),
            },
        );
        let deadline = now + self.limits.grace;
        let timer = Timer::Grace(id.clone(), device.user.clone(), now);
        self.graces.push_back((deadline, timer));
        let event = Event::Reconnecting {
            call: id.clone(),
            user: device.user.clone(),
        };
        self.tell_joined(id, &device.user, event);
    }

    /// A device gone for good stops ringing.
    pub(super) fn unring(&mut self, id: &CallId, device: &Device) {
        let status = self
            .calls
            .get_mut(id)
            .and_then(|c| c.members.get_mut(&device.user))
            .map(|m| &mut m.status);
        if let Some(Status::Ringing { devices, .. }) = status {
            devices.remove(&device.device);
        }
    }

    pub(super) fn grace_over(&mut self, id: &CallId, user: &str, since: Instant, now: Instant) {
        if let Ok(Status::Joined { lost: Some(t), .. }) = self.status(id, user) {
            if t == since {
                self.leave(id, user, LeaveReason::ConnectionLost, now);
            }
        }
    }

    pub(super) fn media_flowing(&mut self, id: &CallId, device: &Device, now: Instant) {
        if self
            .users
            .get(&device.user)
            .and_then(|u| u.devices.get(&device.device))
            .is_some_and(|d| d.online)
        {
            self.device_back(id, device, now);
        }
        let Some(c) = self.calls.get_mut(id) else { return };
        if c.phase == Phase::Connecting {
            c.phase = Phase::Active;
            self.tell_joined(id, "", Event::Active { call: id.clone() });
        }
    }

    /// Ends the call if it is over; says whether it ended.
    fn check_end(&mut self, id: &CallId, now: Instant) -> bool {
        match self.calls.get(id).and_then(Call::end_reason) {
            Some(reason) => {
                self.end(id, reason, now);
                true
            }
            None => false,
        }
    }

    /// Ends the call: ringing devices stop, those in it hear why, the app gets its records, the room closes.
    pub(super) fn end(&mut self, id: &CallId, reason: EndReason, now: Instant) {
        let Some(mut c) = self.calls.remove(id) else { return };
        c.ending = Some(reason);
        let mut still_ringing = Vec::new();
        for (user, m) in &c.members {
            match &m.status {
                Status::Ringing { devices, .. } => {
                    still_ringing.push(user.clone());
                    for d in devices {
                        self.emit(Device::new(user, d), Event::Cancelled { call: id.clone() });
                    }
                }
                Status::Joined { device, .. } => {
                    let event = Event::Ended {
                        call: id.clone(),
                        reason,
                    };
                    self.emit(Device::new(user, device), event);
                }
                Status::Gone(_) => {}
            }
            if let Some(u) = self.users.get_mut(user) {
                u.calls.remove(id);
            }
        }
        if reason == EndReason::Cancelled {
            self.out.push_back(Output::Hook(Hook::Cancelled {
                call: id.clone(),
                from: c.caller.clone(),
                to: still_ringing,
            }));
        }
        let duration_ms = c.answered.map_or(0, |t| now.duration_since(t).as_millis() as u64);
        self.out.push_back(Output::Hook(Hook::Ended {
            call: id.clone(),
            reason,
            from: c.caller.clone(),
            duration_ms,
            participants: c.participants(),
            media: c.media,
        }));
        if c.phase != Phase::Ringing {
            self.out.push_back(Output::Close(id.clone()));
        }
        self.ended.insert(id.clone(), reason);
        self.memories
            .push_back((now + self.limits.memory, Timer::Ended(id.clone())));
    }
}
