//! Who publishes what in a room, and who leaves it: the room is told, and subscriptions follow. A publisher is
//! a participant here or, in a room that spans nodes, one on another node (see [`super::link`]).

use super::layers::{Layers, LAYER_INTERVAL};
use super::roster::{PeerId, Signal, Track};
use super::{sub, track, Published, Sfu, SubState, Subscription};
use std::time::Instant;
use str0m::media::{MediaKind, Mid, Simulcast};

impl Sfu {
    /// Participant `id` publishes `mid`: the room is told, and every other subscribing participant subscribes.
    pub(super) fn published(
        &mut self,
        id: PeerId,
        mid: Mid,
        kind: MediaKind,
        simulcast: Option<Simulcast>,
        now: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        if !peer.publish || peer.published.iter().any(|p| p.mid == mid) {
            return;
        }
        let rids = simulcast
            .filter(|_| kind == MediaKind::Video)
            .map(|s| if s.recv.is_empty() { s.send } else { s.recv })
            .unwrap_or_default();
        let p = Published {
            mid,
            kind,
            muted: false,
            layers: Layers::new(rids.into_iter().map(|l| l.rid).collect()),
            pts: Vec::new(),
        };
        let room = peer.room.clone();
        peer.published.push(p.clone());
        self.announce_track(&room, id, &p, now);
        self.links.touch(&room);
    }

    /// Tells `room` that `source` publishes `p`, and subscribes every subscribing member but `source` to it.
    pub(super) fn announce_track(&mut self, room: &str, source: PeerId, p: &Published, now: Instant) {
        if p.kind == MediaKind::Video {
            self.next_layer_tick.get_or_insert(now + LAYER_INTERVAL);
        }
        let announced = track(source, p);
        self.tell_room(room, source, |_| Signal::TrackPublished {
            participant: source,
            track: announced.clone(),
        });
        for other in self.rooms.get(room).into_iter().flatten() {
            if *other == source {
                continue;
            }
            if let Some(peer) = self.peers.get_mut(other).filter(|p| p.subscribe) {
                peer.subscriptions.push(sub(source, p.mid, p.kind));
                self.to_negotiate.push(*other);
            }
        }
    }

    /// Participant `id` no longer sends `mid`: the room is told, and the subscribers' m-lines are stopped.
    pub(super) fn unpublished(&mut self, id: PeerId, mid: Mid) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        let before = peer.published.len();
        peer.published.retain(|p| p.mid != mid);
        if peer.published.len() == before {
            return;
        }
        let room = peer.room.clone();
        self.withdraw_track(&room, id, mid);
        self.links.touch(&room);
    }

    /// Tells `room` that `source` no longer publishes `mid`, and stops its subscriptions.
    pub(super) fn withdraw_track(&mut self, room: &str, source: PeerId, mid: Mid) {
        self.tell_room(room, source, |_| Signal::TrackUnpublished {
            participant: source,
            track: Track::id_of(source, mid),
        });
        self.fanout.remove(&(source, mid));
        self.stop_subscriptions(|s| s.source == source && s.source_mid == mid);
    }

    /// Queues a signal for every member of `room` but `except`.
    pub(super) fn tell_room(&mut self, room: &str, except: PeerId, signal: impl Fn(PeerId) -> Signal) {
        for other in self.rooms.get(room).into_iter().flatten() {
            if *other != except {
                self.signals.push_back((*other, signal(*other)));
            }
        }
    }

    /// Stops, at every subscriber, the subscriptions `which` selects: those not yet offered are forgotten,
    /// the others' m-lines are stopped at the next renegotiation.
    pub(super) fn stop_subscriptions(&mut self, which: impl Fn(&Subscription) -> bool) {
        for (other, p) in &mut self.peers {
            if !p.subscriptions.iter().any(&which) {
                continue;
            }
            p.subscriptions.retain(|s| !which(s) || s.state != SubState::ToOpen);
            for s in p.subscriptions.iter_mut().filter(|s| which(s)) {
                if let SubState::Negotiating(mid) | SubState::Open(mid) = s.state {
                    s.state = SubState::ToStop(mid);
                }
            }
            self.to_negotiate.push(*other);
        }
    }

    pub(super) fn remove(&mut self, id: PeerId) {
        let Some(peer) = self.peers.remove(&id) else { return };
        self.by_remote.retain(|_, p| *p != id);
        self.by_ufrag.remove(&peer.ufrag);
        self.quality.forget(id);
        self.forget_source(&peer.room, id);
        if let Some(members) = self.rooms.get_mut(&peer.room) {
            members.retain(|m| *m != id);
            if members.is_empty() {
                self.rooms.remove(&peer.room);
                self.close_span(&peer.room);
            } else {
                self.links.touch(&peer.room);
            }
        }
        tracing::debug!(peer = id, room = %peer.room, "removed");
    }

    /// Participant `id` of `room`, here or on another node, is gone: the room is told, and its tracks stop.
    pub(super) fn forget_source(&mut self, room: &str, id: PeerId) {
        self.speakers.forget(id);
        self.last_keyframe_request.retain(|(p, _, _), _| *p != id);
        self.tell_room(room, id, |_| Signal::ParticipantLeft(id));
        self.fanout.retain(|(source, _), _| *source != id);
        for targets in self.fanout.values_mut() {
            targets.retain(|t| t.subscriber != id);
        }
        self.stop_subscriptions(|s| s.source == id);
    }
}
