//! When each participant's timers are next due, in a heap, so that a loop turn touches only the participants
//! that are due instead of scanning them all.
//!
//! The heap is invalidated lazily. Each participant notes the earliest entry it has in the heap
//! ([`Peer::queued`]); a wake-up that moves earlier pushes a new entry, one that moves later pushes nothing,
//! because the old, earlier entry is still there. When that entry comes up, the participant is either due
//! (its timers run, and the drain after them schedules it again) or not yet (it is pushed again at its real
//! wake-up). Entries of participants that left, or that a newer, earlier entry replaced, are dropped as they
//! come up. Forwarding moves a subscriber's wake-up later on every packet, so it pushes nothing.

use super::roster::{PeerId, Signal};
use super::{Limits, Peer, Sfu, PACER_NEAR, PAST_DUE_DELAY, PAST_DUE_DELAY_SHORT, UNPACED_SLACK};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;
use str0m::Input;

/// Participants' wake-ups, earliest first.
#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, PeerId)>>,
}

impl Timers {
    /// Makes sure participant `id` is woken by `wake`, given its earliest entry `queued`.
    pub(super) fn schedule(&mut self, queued: &mut Option<Instant>, id: PeerId, wake: Instant) {
        if queued.is_none_or(|q| wake < q) {
            self.heap.push(Reverse((wake, id)));
            *queued = Some(wake);
        }
    }

    /// The earliest entry; it may be stale, which costs one early wake-up at most.
    fn first(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The earliest entry.
    fn peek(&self) -> Option<(Instant, PeerId)> {
        self.heap.peek().map(|Reverse(e)| *e)
    }

    /// Takes the earliest entry if it is due at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<(Instant, PeerId)> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Rebuilds the heap from the participants when stale entries outnumber live ones by far, so that it
    /// stays a few entries per participant however their wake-ups move.
    fn compact<'a>(&mut self, peers: impl ExactSizeIterator<Item = (&'a PeerId, &'a mut Peer)>, limits: &Limits) {
        if self.heap.len() <= 4 * peers.len() + 64 {
            return;
        }
        self.heap.clear();
        for (id, p) in peers {
            let wake = p.wake(limits);
            self.heap.push(Reverse((wake, *id)));
            p.queued = Some(wake);
        }
    }
}

impl Peer {
    /// When this participant next needs the core: its `Rtc`'s timer, or its connect or idle timeout.
    pub(super) fn wake(&self, limits: &Limits) -> Instant {
        self.next_timeout.min(self.deadline(limits))
    }

    /// Notes the timer str0m asked for at `t`, as the participant's next timer call (see [`PAST_DUE_DELAY`],
    /// [`PACER_NEAR`] and [`UNPACED_SLACK`]).
    pub(super) fn set_rtc_timeout(&mut self, t: Instant, now: Instant) {
        // With estimation on, str0m's pacer asks to be woken a moment after each packet even when it paces
        // nothing (audio goes out unpaced): for a participant that receives no video that is as good as due
        // now.
        let unpaced = self.connected && !self.paced;
        let near = if unpaced { now + PACER_NEAR } else { now };
        self.past_due = t <= near;
        self.next_timeout = match (self.past_due, unpaced) {
            (false, false) => t,
            // str0m's periodic work (TWCC feedback every 50 ms, NACK checks, reports) tolerates a little
            // lateness, and a participant that receives audio gets a timer call with every forwarded packet,
            // which usually comes first: the separate wake-up is then never needed.
            (false, true) => t + UNPACED_SLACK,
            (true, true) => now + PAST_DUE_DELAY,
            (true, false) => now + PAST_DUE_DELAY_SHORT,
        };
    }
}

impl Sfu {
    /// Runs the timers of every participant that is due, and the room-wide ticks.
    pub fn handle_timeout(&mut self, now: Instant) {
        let (lapsed, due) = self.take_due(now);
        for (id, connected) in lapsed {
            let why = if connected { "idle" } else { "never connected" };
            tracing::debug!(peer = id, why, "participant timed out");
            self.signals.push_back((id, Signal::Ended(why)));
            self.report(id, false);
            self.leave(id, now);
        }
        for id in due {
            if !self.peers.contains_key(&id) {
                continue;
            }
            self.rtc_timeouts += 1;
            if self.call(id, |rtc| rtc.handle_input(Input::Timeout(now))) {
                self.drain(id, now);
            }
        }
        self.tick_speakers(now);
        self.tick_layers(now);
        self.tick_links(now);
        self.after_call(now);
    }

    /// Takes the participants due at `now` off the heap: those whose connect or idle timeout lapsed (with
    /// whether they had connected), and those whose `Rtc` timer is due. Those woken early go back on it.
    fn take_due(&mut self, now: Instant) -> (Vec<(PeerId, bool)>, Vec<PeerId>) {
        let (mut lapsed, mut due) = (Vec::new(), Vec::new());
        while let Some((t, id)) = self.timers.pop_due(now) {
            let Some(p) = self.peers.get_mut(&id).filter(|p| p.queued == Some(t)) else {
                continue;
            };
            p.queued = None;
            if p.deadline(&self.limits) <= now {
                lapsed.push((id, p.connected));
            } else if p.next_timeout <= now {
                due.push(id);
            } else {
                let wake = p.wake(&self.limits);
                self.timers.schedule(&mut p.queued, id, wake);
            }
        }
        self.timers.compact(self.peers.iter_mut(), &self.limits);
        (lapsed, due)
    }

    /// Makes the earliest entry a real wake-up: drops stale entries off the top, and moves an entry that
    /// came up early (its participant's wake-up moved later since) to where it belongs. Without this, each
    /// participant that receives a packet every 20 ms would wake the loop for nothing every 50 ms
    /// ([`PAST_DUE_DELAY`]). Each step is a heap operation, with no call into str0m.
    pub(super) fn settle_timers(&mut self) {
        while let Some((t, id)) = self.timers.peek() {
            let Some(p) = self.peers.get_mut(&id).filter(|p| p.queued == Some(t)) else {
                self.timers.heap.pop();
                continue;
            };
            let wake = p.wake(&self.limits);
            if wake <= t {
                return;
            }
            self.timers.heap.pop();
            p.queued = None;
            self.timers.schedule(&mut p.queued, id, wake);
        }
    }

    /// When [`Sfu::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let first = self.timers.first();
        first
            .into_iter()
            .chain(self.speakers.due())
            .chain(self.next_layer_tick)
            .chain(self.links.due())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::Timers;
    use std::time::{Duration, Instant};

    #[test]
    fn a_later_wake_up_pushes_nothing_and_an_earlier_one_replaces_the_entry() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::default();
        let mut queued = None;
        timers.schedule(&mut queued, 7, ms(50));
        timers.schedule(&mut queued, 7, ms(70));
        assert_eq!((timers.heap.len(), queued), (1, Some(ms(50))));
        timers.schedule(&mut queued, 7, ms(20));
        assert_eq!((timers.heap.len(), queued), (2, Some(ms(20))));
        assert_eq!(timers.first(), Some(ms(20)));
        assert_eq!(timers.pop_due(ms(19)), None);
        assert_eq!(timers.pop_due(ms(60)), Some((ms(20), 7)));
        // The replaced entry comes up too; the core drops it, as it is not the participant's `queued`.
        assert_eq!(timers.pop_due(ms(60)), Some((ms(50), 7)));
        assert_eq!(timers.pop_due(ms(60)), None);
    }

    #[test]
    fn entries_come_up_earliest_first_across_participants() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut queued = [None; 3];
        for (id, ms) in [(0u64, 30u64), (1, 10), (2, 20)] {
            timers.schedule(&mut queued[id as usize], id, t0 + Duration::from_millis(ms));
        }
        let now = t0 + Duration::from_millis(100);
        let order: Vec<u64> = std::iter::from_fn(|| timers.pop_due(now).map(|(_, id)| id)).collect();
        assert_eq!(order, [1, 2, 0]);
    }
}
