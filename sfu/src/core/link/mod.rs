//! Rooms that span SFU nodes. When call control puts a room's participants on more than one node, the shard
//! that holds the room on each node relays it with the others, its partners, over their UDP media ports:
//! - each packet a publisher here sends crosses to each partner once, whatever the number of subscribers
//!   there, and the partner forwards it to its own subscribers as if the publisher were one of its own;
//! - each node tells its partners, at once on a change and every [`STATE_INTERVAL`], who is in the room on
//!   its side and what they publish ([`wire::State`]); a partner not heard from for [`PARTNER_TIMEOUT`] is gone,
//!   and its participants leave the room here;
//! - a subscriber's keyframe request goes back over the link to the publisher's node.
//!
//! A datagram names its room by an 8-byte tag, an HMAC of the room's name under the cluster's link key: a node
//! takes link datagrams only for rooms it holds, from partners its tokens named or that sent it a state with
//! the right tag (which only a holder of the key can compute).

pub(crate) mod wire;

use super::roster::{Participant, PeerId, Signal, Track};
use super::{sub, track, Published, Relayed, Sfu};
use crate::core::layers::Layers;
use ahash::HashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::rtp::ExtensionValues;

/// How often a node sends its state of each spanned room to its partners, besides at once on a change.
pub const STATE_INTERVAL: Duration = Duration::from_secs(1);
/// A partner not heard from for this long is gone: its participants leave the room here.
pub const PARTNER_TIMEOUT: Duration = Duration::from_secs(3);

/// Link traffic of one shard since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams sent to partners.
    pub packets_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Media datagrams sent to partners (of `packets_out`).
    pub media_out: u64,
    /// Datagrams taken from partners.
    pub packets_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Datagrams refused: malformed, or media and keyframe requests for a room not held here or from a node
    /// that is not a partner. (States for rooms not held here are dropped without counting: a partner sends them
    /// for a few seconds after the room closed here.)
    pub refused: u64,
}

/// The links of one shard.
#[derive(Default)]
pub(super) struct Links {
    /// The cluster's link key; `None` outside a cluster, where no room spans nodes.
    key: Option<[u8; 32]>,
    /// Rooms held here, with their partners.
    spans: HashMap<String, Span>,
    /// Rooms by tag.
    by_tag: HashMap<u64, String>,
    /// Participants of spanned rooms on other nodes, by the id they have here.
    remotes: HashMap<PeerId, Remote>,
    /// Rooms with at least one partner: while there are none, packets skip the link path.
    partnered: usize,
    /// Rooms whose state is to be sent after this call (each once: [`Span::dirty`]).
    dirty: Vec<String>,
    /// Datagrams to send: their bytes back to back in `out`, and (destination, start, end) in `sends`. Both are
    /// reused, so relaying allocates nothing per packet.
    out: Vec<u8>,
    sends: Vec<(SocketAddr, usize, usize)>,
    next_tick: Option<Instant>,
    stats: LinkStats,
    /// Drawn when the core starts, sent in each state ([`wire::State::boot`]).
    boot: u32,
    /// The last state's epoch.
    epoch: u32,
}

/// A room held here, as it spans nodes.
struct Span {
    tag: u64,
    partners: Vec<Partner>,
    /// Its state changed since it was last sent: it is in [`Links::dirty`].
    dirty: bool,
}

/// Another node holding the room.
struct Partner {
    addr: SocketAddr,
    heard: Instant,
    /// Its participants in the room: (their id there, their id here).
    ids: Vec<(u64, PeerId)>,
    /// Its `boot` and the epoch of its last state taken.
    boot: u32,
    applied: Option<u32>,
    /// The datagrams of a state still coming in: its epoch, and their participants.
    pending: Option<(u32, Vec<wire::Participant>)>,
}

impl Partner {
    fn new(addr: SocketAddr, now: Instant) -> Self {
        Partner {
            addr,
            heard: now,
            ids: Vec::new(),
            boot: 0,
            applied: None,
            pending: None,
        }
    }

    /// Takes one datagram of a state: the whole state's participants once every datagram of its epoch is in.
    /// A datagram of an older state than one taken or being taken (reordered on the way) is dropped.
    fn assemble(&mut self, s: wire::State) -> Option<Vec<wire::Participant>> {
        let older = |than: u32| (s.epoch.wrapping_sub(than) as i32) < 0;
        if s.boot != self.boot {
            (self.boot, self.applied, self.pending) = (s.boot, None, None);
        }
        if self.applied.is_some_and(|a| older(a) || a == s.epoch) {
            return None;
        }
        match &mut self.pending {
            Some((e, _)) if older(*e) => return None,
            Some((e, got)) if *e == s.epoch => got.extend(s.participants),
            _ => self.pending = Some((s.epoch, s.participants)),
        }
        let (_, got) = self.pending.as_ref()?;
        if got.len() < s.total as usize {
            return None;
        }
        self.applied = Some(s.epoch);
        self.pending.take().map(|(_, got)| got)
    }
}

/// A participant of a spanned room on another node.
struct Remote {
    room: String,
    identity: String,
    partner: SocketAddr,
    their_id: u64,
    published: Vec<Published>,
    /// The codecs of its session: a media datagram names one by payload type.
    codecs: Vec<PayloadParams>,
}

impl Links {
    pub(super) fn new() -> Self {
        Links {
            boot: rand::random(),
            ..Links::default()
        }
    }

    /// `room`'s state changed: it goes to the partners after this call (a room without partners has nobody to
    /// tell).
    pub(super) fn touch(&mut self, room: &str) {
        if let Some(s) = self.spans.get_mut(room).filter(|s| !s.dirty && !s.partners.is_empty()) {
            s.dirty = true;
            self.dirty.push(room.to_string());
        }
    }

    /// The codec of payload type `pt` of remote publisher `id`.
    pub(super) fn codec(&self, id: PeerId, pt: Pt) -> Option<PayloadParams> {
        self.remotes.get(&id)?.codecs.iter().find(|c| c.pt() == pt).copied()
    }

    /// Remote publisher `id`'s track `mid`.
    pub(super) fn published(&self, id: PeerId, mid: Mid) -> Option<&Published> {
        self.remotes.get(&id)?.published.iter().find(|t| t.mid == mid)
    }

    /// Whether `id` is a participant on another node.
    pub(super) fn is_remote(&self, id: PeerId) -> bool {
        self.remotes.contains_key(&id)
    }

    /// The ids here of `room`'s participants on other nodes.
    pub(super) fn members<'a>(&'a self, room: &str) -> impl Iterator<Item = PeerId> + 'a {
        let partners = self.spans.get(room).map_or(&[][..], |s| &s.partners[..]);
        partners.iter().flat_map(|p| p.ids.iter().map(|(_, id)| *id))
    }

    /// Every remote publisher's tracks, to measure their layers.
    pub(super) fn published_mut(&mut self) -> impl Iterator<Item = &mut Published> {
        self.remotes.values_mut().flat_map(|r| r.published.iter_mut())
    }

    /// When the links next need a timer call.
    pub(super) fn due(&self) -> Option<Instant> {
        self.next_tick
    }

    /// The tag of `room`: the first 8 bytes of HMAC-SHA256 of its name under the link key.
    fn tag(&self, room: &str) -> Option<u64> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_ref()?).ok()?;
        mac.update(room.as_bytes());
        let sum = mac.finalize().into_bytes();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&sum[..8]);
        Some(u64::from_be_bytes(tag))
    }

    /// Queues a datagram to `to`, written by `write` into the reused buffer.
    fn queue(&mut self, to: SocketAddr, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.out.len();
        write(&mut self.out);
        self.count_out(to, start);
    }

    fn count_out(&mut self, to: SocketAddr, start: usize) {
        let end = self.out.len();
        self.sends.push((to, start, end));
        self.stats.packets_out += 1;
        self.stats.bytes_out += (end - start) as u64;
    }

    fn recount(&mut self) {
        self.partnered = self.spans.values().filter(|s| !s.partners.is_empty()).count();
    }
}

/// Adds `addr` to `span`'s partners unless it is there or is this node (`me`); whether it was added.
fn add_partner(span: &mut Span, addr: SocketAddr, me: SocketAddr, now: Instant) -> bool {
    if addr == me || span.partners.iter().any(|p| p.addr == addr) {
        return false;
    }
    span.partners.push(Partner::new(addr, now));
    true
}

impl Sfu {
    /// Lets this core relay rooms with other SFU nodes that hold `key` (the cluster's link key, the same on
    /// every node). Without it, link datagrams are refused and tokens' links ignored.
    pub fn enable_links(&mut self, key: [u8; 32]) {
        self.links.key = Some(key);
    }

    /// Link traffic since the start.
    pub fn link_stats(&self) -> LinkStats {
        self.links.stats
    }

    /// Other nodes this core relays rooms with, counted once per room.
    pub fn link_partners(&self) -> usize {
        self.links.spans.values().map(|s| s.partners.len()).sum()
    }

    /// Hands each queued link datagram to `send` (destination, bytes), and empties the queue.
    pub fn drain_links(&mut self, mut send: impl FnMut(SocketAddr, &[u8])) {
        for (to, start, end) in self.links.sends.drain(..) {
            send(to, &self.links.out[start..end]);
        }
        self.links.out.clear();
    }

    /// A participant joined `room` here: with links on, the room is held for partners, and the nodes of
    /// `links` (from its token) are partners.
    pub(super) fn span_join(&mut self, room: &str, links: &[SocketAddr], now: Instant) {
        let Some(tag) = self.links.tag(room) else { return };
        let me = self.udp;
        let span = self.links.spans.entry(room.to_string()).or_insert_with(|| Span {
            tag,
            partners: Vec::new(),
            dirty: false,
        });
        let mut added = false;
        for addr in links {
            added |= add_partner(span, *addr, me, now);
        }
        self.links.by_tag.insert(tag, room.to_string());
        self.links.next_tick.get_or_insert(now + STATE_INTERVAL);
        if added {
            self.links.recount();
        }
        self.links.touch(room);
    }

    /// The last participant here left `room`: the partners are told, and its participants elsewhere are
    /// forgotten.
    pub(super) fn close_span(&mut self, room: &str) {
        let Some(span) = self.links.spans.remove(room) else {
            return;
        };
        self.links.by_tag.remove(&span.tag);
        self.links.epoch = self.links.epoch.wrapping_add(1);
        let empty = wire::State {
            boot: self.links.boot,
            epoch: self.links.epoch,
            ..wire::State::default()
        };
        for p in &span.partners {
            self.links
                .queue(p.addr, |out| wire::encode_state(out, span.tag, &empty));
            for (_, id) in &p.ids {
                self.links.remotes.remove(id);
                self.forget_source(room, *id);
            }
        }
        if !span.partners.is_empty() {
            self.links.recount();
        }
    }

    /// The participants of `room` on other nodes, as the participants here see them.
    pub(super) fn remote_participants(&self, room: &str) -> Vec<Participant> {
        self.links
            .members(room)
            .filter_map(|id| {
                let r = self.links.remotes.get(&id)?;
                Some(Participant {
                    id,
                    identity: r.identity.clone(),
                    tracks: r.published.iter().map(|t| track(id, t)).collect(),
                })
            })
            .collect()
    }

    /// New subscriptions to every track of remote publisher `id`.
    pub(super) fn remote_subs(&self, id: PeerId) -> Option<Vec<super::Subscription>> {
        let r = self.links.remotes.get(&id)?;
        Some(r.published.iter().map(|t| sub(id, t.mid, t.kind)).collect())
    }

    /// Sends `packet`, from publisher `source` here, once to each partner of its room that has participants.
    pub(super) fn relay_out(&mut self, source: PeerId, mid: Mid, layer: u8, packet: &Relayed) {
        if self.links.partnered == 0 {
            return;
        }
        let Some(peer) = self.peers.get(&source) else { return };
        let links = &mut self.links;
        let Some(span) = links.spans.get(&peer.room) else {
            return;
        };
        let media = wire::Media {
            publisher: source,
            mid,
            layer,
            pt: *packet.pt,
            marker: packet.marker,
            audio_level: packet.ext_vals.audio_level,
            voice_activity: packet.ext_vals.voice_activity,
            seq: *packet.seq,
            time: packet.time,
            payload: &packet.payload,
        };
        for p in span.partners.iter().filter(|p| !p.ids.is_empty()) {
            let start = links.out.len();
            wire::encode_media(&mut links.out, span.tag, &media);
            let end = links.out.len();
            links.sends.push((p.addr, start, end));
            links.stats.packets_out += 1;
            links.stats.media_out += 1;
            links.stats.bytes_out += (end - start) as u64;
        }
    }

    /// Asks remote publisher `id`'s node for a keyframe of its track `mid`; false if `id` is not remote.
    pub(super) fn request_remote_keyframe(
        &mut self,
        id: PeerId,
        mid: Mid,
        layer: u8,
        kind: KeyframeRequestKind,
    ) -> bool {
        let Some(r) = self.links.remotes.get(&id) else {
            return false;
        };
        let Some(tag) = self.links.spans.get(&r.room).map(|s| s.tag) else {
            return false;
        };
        let k = wire::Keyframe {
            publisher: r.their_id,
            mid,
            layer,
            kind,
        };
        let to = r.partner;
        self.links.queue(to, |out| wire::encode_keyframe(out, tag, &k));
        true
    }

    /// Sends the state of every room that changed.
    pub(super) fn flush_states(&mut self) {
        if self.links.dirty.is_empty() {
            return;
        }
        for room in std::mem::take(&mut self.links.dirty) {
            // A room that closed since was told already.
            let Some(span) = self.links.spans.get_mut(&room) else {
                continue;
            };
            span.dirty = false;
            self.send_state(&room);
        }
    }

    /// Every [`STATE_INTERVAL`]: partners silent too long are dropped, and every room's state is sent.
    pub(super) fn tick_links(&mut self, now: Instant) {
        if self.links.next_tick.is_none_or(|t| t > now) {
            return;
        }
        let mut gone: Vec<(String, PeerId)> = Vec::new();
        for (room, span) in &mut self.links.spans {
            span.partners.retain(|p| {
                let alive = now.saturating_duration_since(p.heard) < PARTNER_TIMEOUT;
                if !alive {
                    tracing::info!(%room, partner = %p.addr, "link partner silent: its participants leave");
                    gone.extend(p.ids.iter().map(|(_, id)| (room.clone(), *id)));
                }
                alive
            });
        }
        let dropped = !gone.is_empty();
        for (room, id) in gone {
            self.links.remotes.remove(&id);
            self.forget_source(&room, id);
        }
        if dropped {
            self.links.recount();
        }
        let rooms: Vec<String> = self
            .links
            .spans
            .iter()
            .filter(|(_, s)| !s.partners.is_empty())
            .map(|(room, _)| room.clone())
            .collect();
        for room in &rooms {
            self.send_state(room);
        }
        self.links.next_tick = (!self.links.spans.is_empty()).then_some(now + STATE_INTERVAL);
    }

    /// Sends `room`'s state here to each of its partners.
    fn send_state(&mut self, room: &str) {
        let Some(span) = self.links.spans.get(room) else { return };
        if span.partners.is_empty() {
            return;
        }
        let (tag, to): (u64, Vec<SocketAddr>) = (span.tag, span.partners.iter().map(|p| p.addr).collect());
        let parts = wire::chunks(self.local_state(room));
        self.links.epoch = self.links.epoch.wrapping_add(1);
        let total = parts.iter().map(Vec::len).sum::<usize>() as u32;
        for participants in parts {
            let state = wire::State {
                boot: self.links.boot,
                epoch: self.links.epoch,
                total,
                partners: to.clone(),
                participants,
            };
            for addr in &to {
                self.links.queue(*addr, |out| wire::encode_state(out, tag, &state));
            }
        }
    }

    /// The participants here in `room`, as a state names them.
    fn local_state(&self, room: &str) -> Vec<wire::Participant> {
        let members = self.rooms.get(room).map_or(&[][..], |m| &m[..]);
        members
            .iter()
            .filter_map(|id| {
                let p = self.peers.get(id)?;
                // Only the codecs its packets used: the session's whole list would swell the state.
                let mut codecs: Vec<PayloadParams> = Vec::new();
                for pt in p.published.iter().flat_map(|t| &t.pts) {
                    let c = p.rtc.codec_config().find(|c| c.pt() == *pt).copied();
                    codecs.extend(c.filter(|c| !codecs.iter().any(|k| k.pt() == c.pt())));
                }
                Some(wire::Participant {
                    id: *id,
                    identity: p.identity.clone(),
                    codecs,
                    tracks: p.published.iter().map(track_state).collect(),
                })
            })
            .collect()
    }

    /// A datagram from another node (its first byte is [`wire::MAGIC`]).
    pub(super) fn receive_link(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let decoded = match wire::decode(data) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(%source, error = %e, "link datagram refused");
                self.links.stats.refused += 1;
                return;
            }
        };
        self.links.stats.packets_in += 1;
        self.links.stats.bytes_in += data.len() as u64;
        let (tag, message) = decoded;
        match message {
            wire::Message::Media(m) => self.link_media(tag, source, &m, now),
            wire::Message::State(s) => self.link_state(tag, source, s, now),
            wire::Message::Keyframe(k) => self.link_keyframe(tag, source, &k, now),
        }
    }

    /// A media packet of a remote publisher: queued for forwarding like a local one.
    fn link_media(&mut self, tag: u64, source: SocketAddr, m: &wire::Media<'_>, now: Instant) {
        let links = &mut self.links;
        let partner = links
            .by_tag
            .get(&tag)
            .and_then(|room| links.spans.get_mut(room))
            .and_then(|span| span.partners.iter_mut().find(|p| p.addr == source));
        let Some(partner) = partner else {
            links.stats.refused += 1;
            return;
        };
        partner.heard = now;
        let Some(id) = partner.ids.iter().find(|(t, _)| *t == m.publisher).map(|(_, id)| *id) else {
            return;
        };
        let Some(t) = links
            .remotes
            .get_mut(&id)
            .and_then(|r| r.published.iter_mut().find(|t| t.mid == m.mid))
        else {
            return;
        };
        if usize::from(m.layer) >= t.layers.count() {
            return;
        }
        t.layers.record(m.layer, m.payload.len(), now);
        if let (MediaKind::Audio, Some(level)) = (t.kind, m.audio_level) {
            self.speakers.record(id, level);
        }
        let ext_vals = ExtensionValues {
            audio_level: m.audio_level,
            voice_activity: m.voice_activity,
            ..ExtensionValues::default()
        };
        let packet = Relayed {
            seq: m.seq.into(),
            time: m.time,
            marker: m.marker,
            pt: m.pt.into(),
            payload: Arc::from(m.payload),
            ext_vals,
            arrived: now,
        };
        self.to_forward.push((id, m.mid, m.layer, packet));
    }

    /// A subscriber on another node wants a keyframe of a publisher here.
    fn link_keyframe(&mut self, tag: u64, source: SocketAddr, k: &wire::Keyframe, now: Instant) {
        let room = self.links.by_tag.get(&tag);
        let known = room
            .and_then(|r| self.links.spans.get(r))
            .is_some_and(|s| s.partners.iter().any(|p| p.addr == source));
        let here = self.peers.get(&k.publisher).is_some_and(|p| Some(&p.room) == room);
        if !known || !here {
            self.links.stats.refused += 1;
            return;
        }
        self.request_keyframe(k.publisher, k.mid, k.layer, k.kind, now);
    }

    /// A partner's state of a room: it is a partner from now on if it was not, the partners it names are
    /// too, and its participants join, change or leave here.
    fn link_state(&mut self, tag: u64, source: SocketAddr, state: wire::State, now: Instant) {
        let me = self.udp;
        let links = &mut self.links;
        let Some(room) = links.by_tag.get(&tag).cloned() else {
            // Not refused: a partner keeps sending for a while after the room closed here, and a node the room
            // extends to may be heard before anyone joined it here. A node without the key has no right tag
            // either, and gets nowhere.
            tracing::trace!(%source, "link state for a room not held here");
            return;
        };
        let Some(span) = links.spans.get_mut(&room) else { return };
        let mut added = add_partner(span, source, me, now);
        for addr in &state.partners {
            added |= add_partner(span, *addr, me, now);
        }
        let Some(partner) = span.partners.iter_mut().find(|p| p.addr == source) else {
            return;
        };
        partner.heard = now;
        let whole = partner.assemble(state);
        if added {
            links.recount();
            // A new partner hears this room's state at once, rather than within a second.
            links.touch(&room);
        }
        let Some(participants) = whole else { return };
        let Some(partner) = links
            .spans
            .get_mut(&room)
            .and_then(|s| s.partners.iter_mut().find(|p| p.addr == source))
        else {
            return;
        };
        let old = std::mem::take(&mut partner.ids);
        let mut ids = Vec::with_capacity(participants.len());
        for p in participants {
            let theirs = p.id;
            match old.iter().find(|(t, _)| *t == theirs) {
                Some(&(_, id)) => {
                    self.remote_changed(id, p, now);
                    ids.push((theirs, id));
                }
                None => ids.push((theirs, self.remote_joined(&room, source, p, now))),
            }
        }
        for (_, id) in old.iter().filter(|(t, _)| !ids.iter().any(|(n, _)| n == t)) {
            self.links.remotes.remove(id);
            self.forget_source(&room, *id);
        }
        if let Some(partner) = self
            .links
            .spans
            .get_mut(&room)
            .and_then(|s| s.partners.iter_mut().find(|p| p.addr == source))
        {
            partner.ids = ids;
        }
    }

    /// A participant of `room` on node `partner` appears: it gets an id here, and the room hears of it and
    /// of its tracks as of a local one.
    fn remote_joined(&mut self, room: &str, partner: SocketAddr, p: wire::Participant, now: Instant) -> PeerId {
        let id = self.next_id;
        self.next_id += 1;
        let published: Vec<Published> = p.tracks.iter().filter_map(published_of).collect();
        let joined = Participant {
            id,
            identity: p.identity.clone(),
            tracks: Vec::new(),
        };
        self.links.remotes.insert(
            id,
            Remote {
                room: room.to_string(),
                identity: p.identity,
                partner,
                their_id: p.id,
                published: published.clone(),
                codecs: p.codecs,
            },
        );
        tracing::debug!(peer = id, room, identity = %joined.identity, %partner, "remote participant joined");
        self.tell_room(room, id, |_| Signal::ParticipantJoined(joined.clone()));
        for t in &published {
            self.announce_track(room, id, t, now);
        }
        id
    }

    /// Remote participant `id` as its node now describes it: tracks it added or removed, and mutes.
    fn remote_changed(&mut self, id: PeerId, p: wire::Participant, now: Instant) {
        let Some(r) = self.links.remotes.get_mut(&id) else {
            return;
        };
        r.codecs = p.codecs;
        let room = r.room.clone();
        let named = |t: &Published, n: &wire::TrackState| &*t.mid == n.mid.as_str();
        let gone: Vec<Mid> = r
            .published
            .iter()
            .filter(|t| !p.tracks.iter().any(|n| named(t, n)))
            .map(|t| t.mid)
            .collect();
        let added: Vec<Published> = p
            .tracks
            .iter()
            .filter(|n| !r.published.iter().any(|t| named(t, n)))
            .filter_map(published_of)
            .collect();
        let mut muted = Vec::new();
        for t in &mut r.published {
            if let Some(n) = p.tracks.iter().find(|n| named(t, n)).filter(|n| n.muted != t.muted) {
                t.muted = n.muted;
                muted.push((t.mid, n.muted));
            }
        }
        r.published.retain(|t| !gone.contains(&t.mid));
        r.published.extend(added.iter().cloned());
        for mid in gone {
            self.withdraw_track(&room, id, mid);
        }
        for t in &added {
            self.announce_track(&room, id, t, now);
        }
        for (mid, muted) in muted {
            let track = Track::id_of(id, mid);
            self.tell_room(&room, id, |_| Signal::Muted {
                participant: id,
                track: track.clone(),
                muted,
            });
        }
    }
}

/// A track as a state names it.
fn track_state(t: &Published) -> wire::TrackState {
    wire::TrackState {
        mid: t.mid.to_string(),
        kind: match t.kind {
            MediaKind::Audio => "audio".into(),
            MediaKind::Video => "video".into(),
        },
        muted: t.muted,
        rids: t.layers.rid_names(),
    }
}

/// A track a state names, unless it is malformed (a mid or rid str0m would not take, an unknown kind).
fn published_of(t: &wire::TrackState) -> Option<Published> {
    let fits = |s: &str| (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
    let kind = match t.kind.as_str() {
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        _ => return None,
    };
    if !fits(&t.mid) || !t.rids.iter().all(|r| fits(r)) || t.rids.len() > 4 {
        return None;
    }
    Some(Published {
        mid: Mid::from(t.mid.as_str()),
        kind,
        muted: t.muted,
        layers: Layers::new(t.rids.iter().map(|r| r.as_str().into()).collect()),
        pts: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::{wire, Partner};
    use std::time::Instant;

    fn who(id: u64) -> wire::Participant {
        wire::Participant {
            id,
            identity: format!("u{id}"),
            codecs: Vec::new(),
            tracks: Vec::new(),
        }
    }

    fn part(boot: u32, epoch: u32, total: u32, ids: &[u64]) -> wire::State {
        wire::State {
            boot,
            epoch,
            total,
            partners: Vec::new(),
            participants: ids.iter().map(|i| who(*i)).collect(),
        }
    }

    fn ids(got: Option<Vec<wire::Participant>>) -> Option<Vec<u64>> {
        got.map(|v| v.iter().map(|p| p.id).collect())
    }

    #[test]
    fn a_state_in_several_datagrams_is_taken_once_all_are_in() {
        let mut p = Partner::new("10.0.0.2:1".parse().expect("addr"), Instant::now());
        assert_eq!(ids(p.assemble(part(1, 5, 3, &[1, 2]))), None);
        assert_eq!(ids(p.assemble(part(1, 5, 3, &[3]))), Some(vec![1, 2, 3]));
        // The same epoch again (a duplicate) and an older one (reordered) are dropped.
        assert_eq!(ids(p.assemble(part(1, 5, 1, &[9]))), None);
        assert_eq!(ids(p.assemble(part(1, 4, 1, &[9]))), None);
        // A lost datagram leaves that state incomplete; the next one is taken whole.
        assert_eq!(ids(p.assemble(part(1, 6, 2, &[1]))), None);
        assert_eq!(ids(p.assemble(part(1, 7, 1, &[4]))), Some(vec![4]));
        // Nobody left: an empty state.
        assert_eq!(ids(p.assemble(part(1, 8, 0, &[]))), Some(vec![]));
        // The sender restarted: its epochs start again.
        assert_eq!(ids(p.assemble(part(2, 1, 1, &[7]))), Some(vec![7]));
        // Epochs wrap.
        assert_eq!(ids(p.assemble(part(3, u32::MAX, 1, &[1]))), Some(vec![1]));
        assert_eq!(ids(p.assemble(part(3, 0, 1, &[2]))), Some(vec![2]));
    }
}
