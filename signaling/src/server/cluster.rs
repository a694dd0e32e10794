//! Rooms on the cluster's SFU nodes. The live nodes are read from Redis twice per heartbeat period into a local
//! view, so that placing a room never waits on Redis. A node's heartbeat counts a room only once its clients have
//! joined it, a second or two after the placement; until the node sends a heartbeat that includes it, each room
//! placed here is added to its node's load, so that a burst of calls spreads rather than piling onto the node
//! that was lightest a moment ago.
//! The room-to-node record is then written to Redis atomically ([`Registry::place_room`]).
//!
//! Each read also checks where this node's rooms are: a room whose node died (its heartbeat expired, or it
//! restarted) or is draining past its deadline moves to another node, and call control tells the call's
//! devices to reconnect there ([`Moved`]).
//!
//! A room may span nodes: a device whose room's node is full, or in another region, joins a second node, which
//! relays the room's tracks with the first ([`super::span`]).

use super::placement::{LocalSfu, PlaceError, Placement};
use super::span::SpanNode;
use crate::core::{CallId, Device};
use hualu_cluster::{choose, ClusterError, NodeInfo, Registry};
use hualu_common::config::{ClusterConfig, SelectorKind};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Participants a new call's room is placed for: a 1:1 call, the common case. A group grows on its node.
const ROOM_SIZE: u64 = 2;

/// The longest a placed room counts on its node, whatever the node's heartbeats say.
pub const SETTLE: Duration = Duration::from_secs(5);
/// How long after its placement a room's clients have joined it and the node's shards have published their
/// counts (once a second), so that a heartbeat the node sent later counts the room itself: a placed room counts
/// on its node only until such a heartbeat arrives (and at most [`SETTLE`]), not on top of it.
const JOINED_WITHIN_MS: u64 = 2500;

/// How long a room another signaling node placed is remembered here after it was looked up.
const LOCATED_FOR: Duration = Duration::from_secs(30);

/// How long after a move the room's old node is told to close it, for any client still there.
pub(super) const CLOSE_AFTER_MOVE: Duration = Duration::from_secs(5);

/// A call whose room moved to another node: its devices must join it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The call (and room).
    pub call: CallId,
    /// Why: `node_lost` (it died or restarted) or `node_drained` (its drain deadline passed).
    pub reason: &'static str,
}

/// Load placed on a node here, not yet in its heartbeats.
struct Pending {
    /// When (monotonic, and unix ms to compare with heartbeats' `sent_ms`).
    at: Instant,
    at_ms: u64,
    node: String,
    participants: u64,
    rooms: u64,
}

/// The nodes as last read, and the rooms placed here since (and devices sent to nodes), not yet in their node's
/// heartbeat.
#[derive(Default)]
pub(super) struct View {
    pub(super) nodes: Vec<NodeInfo>,
    placed: VecDeque<Pending>,
}

impl View {
    /// Counts `participants` (and `rooms`) on `node` until its heartbeats do.
    pub(super) fn count(&mut self, now: Instant, node: &str, participants: u64, rooms: u64) {
        self.placed.push_back(Pending {
            at: now,
            at_ms: hualu_common::clock::unix_now_ms(),
            node: node.to_string(),
            participants,
            rooms,
        });
    }

    /// The nodes with the rooms placed here that their heartbeats do not count yet added to their load.
    pub(super) fn settled(&mut self, now: Instant) -> Vec<NodeInfo> {
        while self.placed.front().is_some_and(|p| now.duration_since(p.at) > SETTLE) {
            self.placed.pop_front();
        }
        let mut nodes = self.nodes.clone();
        for p in &self.placed {
            // Not yet in a heartbeat sent after its clients joined: add it.
            let pending = |n: &NodeInfo| n.sent_ms < p.at_ms + JOINED_WITHIN_MS;
            if let Some(n) = nodes.iter_mut().find(|n| n.id == p.node).filter(|n| pending(n)) {
                n.load.participants += p.participants;
                n.load.rooms += p.rooms;
            }
        }
        nodes
    }
}

/// Where one of this node's rooms lives.
#[derive(Debug, Clone)]
pub(super) struct Room {
    /// Its home node: where it was placed.
    pub(super) node: String,
    /// The node's start time when the room was placed: a node that restarted since has lost the room.
    pub(super) started_ms: u64,
    pub(super) url: String,
    /// Placed by this signaling node, which follows it: moves it off a lost node, takes its media reports.
    /// Otherwise looked up for a device here in a call another node placed, and forgotten a while later.
    pub(super) ours: bool,
    pub(super) at: Instant,
    /// Devices the placement counted on the home node already ([`ROOM_SIZE`]) and that have not joined yet: they
    /// join it even when it now counts full, as it does with their own places.
    pub(super) reserved: u64,
    /// The other nodes it extends to.
    pub(super) span: Vec<SpanNode>,
}

impl Room {
    fn on(n: &NodeInfo) -> Self {
        Room {
            node: n.id.clone(),
            started_ms: n.started_ms,
            url: n.url.clone(),
            ours: true,
            at: Instant::now(),
            reserved: ROOM_SIZE,
            span: Vec::new(),
        }
    }

    /// Whether `node` is one of its nodes: home or span.
    pub(super) fn on_node(&self, node: &str) -> bool {
        self.node == node || self.span.iter().any(|s| s.id == node)
    }

    /// Its nodes' ids: home first, then the span.
    pub(super) fn node_ids(&self) -> Vec<String> {
        std::iter::once(&self.node)
            .chain(self.span.iter().map(|s| &s.id))
            .cloned()
            .collect()
    }
}

pub(super) struct Shared {
    pub(super) registry: Registry,
    pub(super) selector: SelectorKind,
    pub(super) region: String,
    drain_deadline_secs: u64,
    pub(super) view: Mutex<View>,
    rooms: Mutex<HashMap<String, Room>>,
    pub(super) moves: mpsc::UnboundedSender<Moved>,
    /// This signaling node's name in Redis, once it heartbeats there ([`ClusterPlacement::follow_as`]): the
    /// rooms it follows are recorded under it, for whichever node takes over if it dies.
    me: std::sync::OnceLock<String>,
}

/// Places rooms on the cluster's nodes, moves them off nodes that die or drain, and mints their tokens.
pub struct ClusterPlacement {
    pub(super) tokens: LocalSfu,
    pub(super) shared: Arc<Shared>,
}

impl ClusterPlacement {
    /// Connects to Redis and starts reading the live nodes; rooms that move are sent to `moves`. Must run inside
    /// a tokio runtime.
    pub fn start(
        cfg: &ClusterConfig,
        tokens: LocalSfu,
        moves: mpsc::UnboundedSender<Moved>,
    ) -> Result<Self, ClusterError> {
        let shared = Arc::new(Shared {
            registry: Registry::connect(cfg)?,
            selector: cfg.selector,
            region: cfg.region.clone(),
            drain_deadline_secs: cfg.drain_deadline_secs,
            view: Mutex::new(View::default()),
            rooms: Mutex::new(HashMap::new()),
            moves,
            me: std::sync::OnceLock::new(),
        });
        tokio::spawn(refresh(shared.clone(), Duration::from_millis(cfg.heartbeat_ms / 2)));
        let closes = shared.clone();
        tokio::spawn(hualu_cluster::media::follow_all_closes(
            shared.registry.clone(),
            move |c| closes.closed(&c),
        ));
        Ok(Self { tokens, shared })
    }

    /// Records the rooms this node places in Redis under `node`, its heartbeat name: if it dies, the node that
    /// takes its devices over takes these rooms too ([`ClusterPlacement::adopt`]).
    pub fn follow_as(&self, node: String) {
        let _ = self.shared.me.set(node);
    }

    /// Follows `rooms`, which a dead signaling node placed and Redis handed over to this one, as if it had placed
    /// them: it moves them off a node that dies or drains, and takes their media reports. A room whose record is
    /// gone (its call ended) is skipped; one whose home is dead too moves at the next look at the nodes.
    pub async fn adopt(&self, rooms: &[String]) {
        let records = match self.shared.registry.rooms_and_spans(rooms).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, rooms = rooms.len(), "cannot read a dead node's rooms; they are not followed");
                return;
            }
        };
        let nodes = self.shared.live_nodes();
        let mut followed = self.shared.rooms();
        for (room, (home, span)) in rooms.iter().zip(records) {
            let Some(home) = home else { continue };
            let mut r = match nodes.iter().find(|n| n.id == home) {
                Some(n) => Room::on(n),
                None => Room {
                    node: home,
                    started_ms: 0,
                    url: String::new(),
                    ours: true,
                    at: Instant::now(),
                    reserved: 0,
                    span: Vec::new(),
                },
            };
            r.reserved = 0;
            r.span = super::span::known(&span, &nodes);
            tracing::info!(%room, node = %r.node, "following a room a dead signaling node placed");
            followed.insert(room.clone(), r);
        }
    }

    /// The Redis handle it places with.
    pub fn registry(&self) -> Registry {
        self.shared.registry.clone()
    }

    /// The node the room of call `call` is on, as this signaling node placed it.
    pub fn node_of(&self, call: &str) -> Option<String> {
        self.shared.rooms().get(call).map(|r| r.node.clone())
    }

    /// `cluster.drain_deadline_secs`: an admin drain's default deadline.
    pub fn drain_deadline_secs(&self) -> u64 {
        self.shared.drain_deadline_secs
    }

    /// Whether `node` is one of the nodes `room` lives on now (home or span), as this node knows: reports from
    /// a room's old node, after a move, are stale. [`ClusterPlacement::accepts`] also asks Redis.
    pub fn hosts(&self, room: &str, node: &str) -> bool {
        self.shared.rooms().get(room).is_some_and(|r| r.ours && r.on_node(node))
    }

    /// Learns where the room of `call` is, if another signaling node placed it (a device here joins it): its
    /// home node and the nodes it spans, so that a device here reuses an extension another node made.
    pub async fn locate(&self, call: &CallId) {
        if self.shared.rooms().get(&call.0).is_some_and(|r| r.ours) {
            return;
        }
        let (node, span) = match self.shared.registry.room_and_span(&call.0).await {
            Ok((Some(node), span)) => (node, span),
            Ok((None, _)) => return,
            Err(e) => {
                tracing::warn!(%call, error = %e, "cannot look up the call's room");
                return;
            }
        };
        let view = self.shared.view.lock().unwrap_or_else(PoisonError::into_inner);
        let room = view.nodes.iter().find(|n| n.id == node).map(|n| Room {
            ours: false,
            reserved: 0,
            span: super::span::known(&span, &view.nodes),
            ..Room::on(n)
        });
        drop(view);
        if let Some(mut room) = room {
            let mut rooms = self.shared.rooms();
            if let Some(old) = rooms.get(&call.0) {
                super::span::keep_unconfirmed(&mut room, old);
            }
            rooms.insert(call.0.clone(), room);
        }
    }

    /// Learns the room of `call` from a `join` or `move` another signaling node minted, whose room URL `url` is
    /// the home node it decided, when neither this node nor Redis knows the room yet: the write that placed it
    /// may still be on its way, behind the routed event.
    pub fn learn_home(&self, call: &CallId, url: &str) {
        if self.shared.rooms().contains_key(&call.0) {
            return;
        }
        let view = self.shared.view.lock().unwrap_or_else(PoisonError::into_inner);
        let room = view.nodes.iter().find(|n| n.url == url).map(|n| Room {
            ours: false,
            reserved: 0,
            ..Room::on(n)
        });
        drop(view);
        if let Some(room) = room {
            self.shared.rooms().entry(call.0.clone()).or_insert(room);
        }
    }
}

impl Shared {
    /// Call control ordered `close`: when it names the home of a room followed here, that room's call ended on
    /// another signaling node (a room's home is told to close it only then; after a move, the old node is told,
    /// and it is no longer the home), and the room is no longer followed: nothing is moved for an ended call.
    fn closed(&self, close: &hualu_cluster::RoomClose) {
        let mut rooms = self.rooms();
        if rooms.get(&close.close).is_some_and(|r| r.node == close.node) {
            rooms.remove(&close.close);
            tracing::debug!(room = %close.close, "the call ended on another signaling node; its room is no longer followed");
            self.unfollow(&close.close);
        }
    }

    /// Records in Redis, in the background, that this node follows `room` (`on`) or no longer does.
    fn record_follow(&self, room: &str, on: bool) {
        let Some(me) = self.me.get().cloned() else { return };
        let (registry, room) = (self.registry.clone(), room.to_string());
        tokio::spawn(async move {
            if let Err(e) = registry.follow_room(&me, &room, on).await {
                tracing::warn!(%room, error = %e, "the rooms this node follows are not up to date in Redis");
            }
        });
    }

    fn unfollow(&self, room: &str) {
        self.record_follow(room, false);
    }

    /// The live nodes as the last read of the heartbeats showed them.
    pub(super) fn live_nodes(&self) -> Vec<NodeInfo> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner).nodes.clone()
    }

    pub(super) fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pick(&self) -> Result<NodeInfo, PlaceError> {
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let nodes = view.settled(now);
        let picked = choose(self.selector, &nodes, ROOM_SIZE, &self.region, &mut rand::rng());
        let node = nodes[picked.map_err(|e| PlaceError::NoNode(e.to_string()))?].clone();
        view.count(now, &node.id, ROOM_SIZE, 1);
        Ok(node)
    }

    /// Moves the rooms whose node is gone, restarted, or past its drain deadline, given the live `nodes`.
    /// A node absent from `nodes` is lost only when `absence_is_death` (Redis has held the cluster's state for
    /// a dead window); otherwise only restarted and drained nodes' rooms move.
    fn rehome(self: &Arc<Self>, nodes: &[NodeInfo], absence_is_death: bool) {
        let now_ms = hualu_common::clock::unix_now_ms();
        let stranded: Vec<(String, String, &'static str)> = self
            .rooms()
            .iter()
            .filter(|(_, room)| room.ours)
            .filter_map(|(call, room)| {
                let reason = gone(&room.node, room.started_ms, nodes, absence_is_death, now_ms)?;
                Some((call.clone(), room.node.clone(), reason))
            })
            .collect();
        let mut homeless = 0;
        for (call, from, reason) in stranded {
            let to = match self.pick() {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(%call, %from, error = %e, "a stranded room has nowhere to go; retrying");
                    homeless += 1;
                    continue;
                }
            };
            tracing::info!(%call, %from, to = %to.id, reason, "room moved");
            metrics::counter!("hualu_cluster_room_moves_total", "reason" => reason).increment(1);
            let was_span = self.rehomed(&call, &to);
            let (registry, moves, shared) = (self.registry.clone(), self.moves.clone(), self.clone());
            let (room, to_id) = (call.clone(), to.id.clone());
            tokio::spawn(async move {
                // Recorded before the devices hear of it, so that what they are told is what the cluster lists;
                // a failed record does not hold the move back.
                match registry.move_room(&room, &from, &to_id).await {
                    Ok(Some(on)) if on != to_id => {
                        tracing::info!(%room, %on, "the room was moved already; its devices were told by that move");
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%room, error = %e, "the room's new node could not be recorded"),
                }
                if was_span {
                    // Its home now: not a span node as well.
                    if let Err(e) = registry.shrink_room(&room, &to_id).await {
                        tracing::warn!(%room, error = %e, "the room's span keeps its new home node");
                    }
                }
                let _ = moves.send(Moved {
                    call: CallId(room.clone()),
                    reason,
                });
                // The old node's copy of the room goes once its clients had time to leave by themselves (a
                // close before they heard `move` would read to them as the call's end).
                tokio::time::sleep(CLOSE_AFTER_MOVE).await;
                // Unless a device joined it there again since (a restarted node the room extended to).
                if !shared.rooms().get(&room).is_some_and(|r| r.on_node(&from)) {
                    order_close(&registry, room, from).await;
                }
            });
        }
        metrics::gauge!("hualu_cluster_homeless_rooms").set(f64::from(homeless));
    }

    /// Records that `call`'s room moved home to `to`, keeping its span (less `to`, if it was one of it); whether
    /// `to` was in the span.
    fn rehomed(&self, call: &str, to: &NodeInfo) -> bool {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(call) else {
            rooms.insert(call.to_string(), Room::on(to));
            return false;
        };
        let span = std::mem::take(&mut room.span);
        let was_span = span.iter().any(|s| s.id == to.id);
        *room = Room {
            span: span.into_iter().filter(|s| s.id != to.id).collect(),
            ..Room::on(to)
        };
        was_span
    }
}

/// Why a room on node `id` (as it was when it started at `started_ms`; 0: not known) must leave it, given the
/// live `nodes`: `node_lost` (gone, or restarted) or `node_drained` (past its drain deadline). A node absent from
/// `nodes` is lost only when `absence_is_death`.
pub(super) fn gone(
    id: &str,
    started_ms: u64,
    nodes: &[NodeInfo],
    absence_is_death: bool,
    now_ms: u64,
) -> Option<&'static str> {
    match nodes.iter().find(|n| n.id == id) {
        None if !absence_is_death => None,
        None => Some("node_lost"),
        Some(n) if started_ms != 0 && n.started_ms != started_ms => Some("node_lost"),
        Some(n) if n.moving(now_ms) => Some("node_drained"),
        Some(_) => None,
    }
}

/// Tells `node` to close `room`; a lost order leaves the room to its participants' leaving or timing out.
pub(super) async fn order_close(registry: &Registry, room: String, node: String) {
    let close = hualu_cluster::RoomClose { close: room, node };
    if let Err(e) = registry.publish_close(&close).await {
        tracing::warn!(room = %close.close, node = %close.node, error = %e, "could not tell the node to close the room");
    }
}

/// Reads the live nodes every `every`, keeping the last view while Redis is unreachable, and moves stranded
/// rooms after each read.
async fn refresh(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        tick.tick().await;
        match shared.registry.nodes().await {
            Ok(nodes) => {
                metrics::gauge!("hualu_cluster_nodes").set(nodes.len() as f64);
                shared.view.lock().unwrap_or_else(PoisonError::into_inner).nodes = nodes.clone();
                // Extensions other signaling nodes made to the rooms followed here.
                shared.learn_spans(&nodes).await;
                // A Redis that restarted empty has not heard every node again yet.
                let absence_is_death = shared.registry.absence_is_death().await.unwrap_or(false);
                shared.shrink_spans(&nodes, absence_is_death).await;
                shared.rehome(&nodes, absence_is_death);
                shared.rooms().retain(|_, r| r.ours || r.at.elapsed() < LOCATED_FOR);
                if !healthy {
                    tracing::info!("the cluster's nodes are readable again");
                    healthy = true;
                }
            }
            Err(e) if healthy => {
                tracing::warn!(error = %e, "cannot read the cluster's nodes; placing on the last view");
                healthy = false;
            }
            Err(_) => {}
        }
    }
}

impl Placement for ClusterPlacement {
    fn place(&self, call: &CallId) -> Result<(), PlaceError> {
        let picked = self.shared.pick();
        let label = if picked.is_ok() { "ok" } else { "no_node" };
        metrics::counter!("hualu_cluster_placements_total", "result" => label).increment(1);
        let node = picked?;
        tracing::debug!(%call, node = %node.id, "room placed");
        self.shared.rooms().insert(call.0.clone(), Room::on(&node));
        self.shared.record_follow(&call.0, true);
        let (registry, room) = (self.shared.registry.clone(), call.0.clone());
        tokio::spawn(async move {
            match registry.place_room(&room, &node.id).await {
                Ok(Some(on)) if on == node.id => {}
                Ok(Some(on)) => tracing::warn!(%room, node = %node.id, %on, "the room was already placed elsewhere"),
                Ok(None) => tracing::warn!(%room, node = %node.id, "the node died as the room was placed"),
                Err(e) => tracing::warn!(%room, node = %node.id, error = %e, "the room's node could not be recorded"),
            }
        });
        Ok(())
    }

    fn join(&self, call: &CallId, device: &Device) -> Result<Value, PlaceError> {
        self.join_for(call, device, true)
    }

    fn close(&self, call: &CallId) {
        let known = self.shared.rooms().remove(&call.0).map(|r| r.node_ids());
        self.shared.unfollow(&call.0);
        let (registry, room) = (self.shared.registry.clone(), call.0.clone());
        tokio::spawn(async move {
            // Redis knows the nodes this one does not: another signaling node placed the room, or extended it.
            let mut nodes = known.unwrap_or_default();
            match registry.room_and_span(&room).await {
                Ok((home, span)) => nodes.extend(home.into_iter().chain(span)),
                Err(e) => tracing::warn!(%room, error = %e, "closing the room on the nodes known here only"),
            }
            let mut seen = HashSet::new();
            nodes.retain(|n| seen.insert(n.clone()));
            if let Err(e) = registry.close_room(&room).await {
                tracing::warn!(%room, error = %e, "the room's record stays until it expires");
            }
            for node in nodes {
                order_close(&registry, room.clone(), node).await;
            }
        });
    }
}
