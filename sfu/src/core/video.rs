//! Which video layer each subscriber gets: measured layer rates, each subscriber's downlink estimate and
//! its preferences, decided every [`LAYER_INTERVAL`] and whenever a subscription opens or changes.

use super::layers::{Preference, LAYER_INTERVAL};
use super::roster::Track;
use super::{PeerId, Sfu, SubState};
use std::time::Instant;
use str0m::bwe::Bitrate;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};

/// What an Opus subscription is assumed to take of a subscriber's downlink (voice at up to 32 kbit/s with
/// in-band FEC, and packet overhead), set aside before video is allocated.
const AUDIO_RESERVE: u64 = 40_000;

/// A subscriber is congested when its estimate falls below this share of what it is sent. The estimate
/// hovers a little above the sending rate on a good link, and GCC cuts it to 85% of the measured throughput
/// when delay grows; layer rates count payload only, so the comparison keeps a margin.
const CONGESTED: f64 = 0.85;

/// A trial of a better layer restarts the estimator this much above what the layers will need: more than
/// the headroom a move up asks for.
const TRIAL_HEADROOM: f64 = 1.25;

/// What [`Sfu::allocate`] decided for one subscriber.
struct Plan {
    changes: Vec<Change>,
    /// What all its subscriptions could use, for the estimator's probing.
    desired: u64,
    /// What the chosen layers use, with the audio.
    used: u64,
    /// What it receives now exceeds its estimate.
    congested: bool,
    /// How much more the first subscription that can go up one layer would take.
    climb: Option<u64>,
}

/// One video subscription's new layer: (index in the subscriber's list, its m-line, publisher, its mid,
/// the layer).
type Change = (usize, Mid, PeerId, Mid, Option<u8>);

impl Sfu {
    /// Subscriber `subscriber` sets what it wants of track `track` (`<participant>-<mid>`). False if it
    /// has no subscription to that track.
    pub fn set_preference(&mut self, subscriber: PeerId, track: &str, pref: Preference, now: Instant) -> bool {
        let Some(peer) = self.peers.get_mut(&subscriber) else {
            return false;
        };
        let Some(s) = peer
            .subscriptions
            .iter_mut()
            .find(|s| Track::id_of(s.source, s.source_mid) == track)
        else {
            return false;
        };
        let more = pref.enabled && (!s.pref.enabled || pref.max > s.pref.max);
        s.pref = pref;
        let (source, out) = ((s.source, s.source_mid), s.state);
        if more {
            // The estimate only knows what was sent: wanting more starts a trial at once.
            peer.climb.next_try = now;
        }
        if let SubState::Open(mid) = out {
            if let Some(t) = self.target_mut(source, subscriber, mid) {
                t.paused = !pref.enabled;
            }
        }
        self.allocate(subscriber, now);
        self.after_call(now);
        true
    }

    /// Subscribers moved from one video layer to another since the start.
    pub fn layer_switches(&self) -> u64 {
        self.layer_switches
    }

    /// Measures the layers, and chooses again for every subscriber of video.
    pub(super) fn tick_layers(&mut self, now: Instant) {
        if self.next_layer_tick.is_none_or(|t| t > now) {
            return;
        }
        let mut video = false;
        for peer in self.peers.values_mut() {
            for t in peer.published.iter_mut().filter(|t| t.kind == MediaKind::Video) {
                t.layers.measure(now);
                video = true;
            }
        }
        for t in self.links.published_mut().filter(|t| t.kind == MediaKind::Video) {
            t.layers.measure(now);
            video = true;
        }
        self.next_layer_tick = video.then(|| now + LAYER_INTERVAL);
        let subscribers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.subscriptions.iter().any(|s| s.kind == MediaKind::Video))
            .map(|(id, _)| *id)
            .collect();
        for id in subscribers {
            self.allocate(id, now);
        }
        self.request_awaited_keyframes(now);
    }

    /// Splits subscriber `id`'s downlink estimate among its video subscriptions, in order: each gets the best
    /// layer that fits what is left, within its preference. Layers that change wait for a keyframe, which is
    /// asked for here. When everything fits and a better layer is wanted, now and then it is tried (see
    /// [`super::layers::Climb`]).
    pub(super) fn allocate(&mut self, id: PeerId, now: Instant) {
        let Some(mut plan) = self.plan(id, now) else { return };
        let Some(peer) = self.peers.get_mut(&id) else { return };
        match plan.congested {
            true => peer.climb.congested(now),
            false => peer.climb.settled(now),
        }
        let climb = !plan.congested && !peer.climb.trying(now) && now >= peer.climb.next_try;
        if let (true, Some(extra)) = (climb, plan.climb) {
            let target = ((plan.used + extra) as f64 * TRIAL_HEADROOM) as u64;
            peer.climb.start(target, now);
            peer.estimate = peer.estimate.max(target);
            tracing::debug!(peer = id, target, "trying a better video layer");
            self.call(id, |rtc| {
                rtc.bwe().reset(Bitrate::bps(target));
                Ok(())
            });
            match self.plan(id, now) {
                Some(p) => plan = p,
                None => return,
            }
        }
        if plan.desired > 0 {
            self.call(id, |rtc| {
                rtc.bwe().set_desired_bitrate(Bitrate::bps(plan.desired));
                Ok(())
            });
        }
        for (i, out, source, source_mid, choice) in plan.changes {
            if let Some(s) = self.peers.get_mut(&id).and_then(|p| p.subscriptions.get_mut(i)) {
                s.choice = choice;
            }
            let Some(t) = self.target_mut((source, source_mid), id, out) else {
                continue;
            };
            if let Some(switch) = &mut t.switch {
                switch.wanted = choice;
            }
            if let Some(layer) = choice {
                self.request_keyframe(source, source_mid, layer, KeyframeRequestKind::Pli, now);
            }
        }
    }

    /// The layers subscriber `id` should get now.
    fn plan(&self, id: PeerId, now: Instant) -> Option<Plan> {
        let peer = self.peers.get(&id)?;
        let open = |s: &&super::Subscription| matches!(s.state, SubState::Open(_));
        let audio = peer
            .subscriptions
            .iter()
            .filter(open)
            .filter(|s| s.kind == MediaKind::Audio)
            .count() as u64;
        let estimate = peer.climb.budget(peer.estimate, now);
        let mut budget = estimate.saturating_sub(audio * AUDIO_RESERVE);
        let mut plan = Plan {
            changes: Vec::new(),
            desired: audio * AUDIO_RESERVE,
            used: audio * AUDIO_RESERVE,
            congested: false,
            climb: None,
        };
        let mut sending = 0;
        for (i, s) in peer.subscriptions.iter().enumerate() {
            let SubState::Open(out) = s.state else { continue };
            if s.kind != MediaKind::Video {
                continue;
            }
            let Some(layers) = self.published_of(s.source, s.source_mid).map(|t| &t.layers) else {
                continue;
            };
            sending += s.choice.map_or(0, |l| layers.rate(l));
            let choice = layers.choose(s.pref, budget, s.choice, now);
            let rate = choice.map_or(0, |l| layers.rate(l));
            budget = budget.saturating_sub(rate);
            plan.used += rate;
            plan.desired += layers.wanted_rate(s.pref, super::INITIAL_ESTIMATE.as_u64(), now);
            if plan.climb.is_none() {
                plan.climb = layers.next_up(s.pref, choice, now).map(|up| up.saturating_sub(rate));
            }
            if choice != s.choice {
                plan.changes.push((i, out, s.source, s.source_mid, choice));
            }
        }
        plan.congested = ((sending + audio * AUDIO_RESERVE) as f64 * CONGESTED) > estimate as f64;
        Some(plan)
    }

    /// Asks again for the keyframes subscribers still wait for (a request, or the keyframe, may be lost).
    fn request_awaited_keyframes(&mut self, now: Instant) {
        let mut awaited: Vec<(PeerId, Mid, u8)> = Vec::new();
        for ((source, mid), targets) in &self.fanout {
            for layer in targets.iter().filter_map(|t| t.switch.filter(|s| s.waiting())?.wanted) {
                if !awaited.contains(&(*source, *mid, layer)) {
                    awaited.push((*source, *mid, layer));
                }
            }
        }
        for (source, mid, layer) in awaited {
            self.request_keyframe(source, mid, layer, KeyframeRequestKind::Pli, now);
        }
    }

    /// The forwarding entry of `subscriber`'s m-line `mid` for the published track `source`.
    fn target_mut(&mut self, source: (PeerId, Mid), subscriber: PeerId, mid: Mid) -> Option<&mut super::Target> {
        self.fanout
            .get_mut(&source)?
            .iter_mut()
            .find(|t| t.subscriber == subscriber && t.mid == mid)
    }
}
