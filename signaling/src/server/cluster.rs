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

use super::placement::{LocalSfu, PlaceError, Placement};
use crate::core::{CallId, Device};
use hualu_cluster::{choose, ClusterError, NodeInfo, Registry};
use hualu_common::config::{ClusterConfig, SelectorKind};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
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
const CLOSE_AFTER_MOVE: Duration = Duration::from_secs(5);

/// A call whose room moved to another node: its devices must join it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The call (and room).
    pub call: CallId,
    /// Why: `node_lost` (it died or restarted) or `node_drained` (its drain deadline passed).
    pub reason: &'static str,
}

/// The nodes as last read, and the rooms placed here since, not yet in their node's heartbeat.
#[derive(Default)]
struct View {
    nodes: Vec<NodeInfo>,
    /// When each room was placed (monotonic, and unix ms to compare with heartbeats' `sent_ms`), and where.
    placed: VecDeque<(Instant, u64, String)>,
}

impl View {
    /// The nodes with the rooms placed here that their heartbeats do not count yet added to their load.
    fn settled(&mut self, now: Instant) -> Vec<NodeInfo> {
        while self
            .placed
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) > SETTLE)
        {
            self.placed.pop_front();
        }
        let mut nodes = self.nodes.clone();
        for (_, at_ms, id) in &self.placed {
            // Not yet in a heartbeat sent after its clients joined: add it.
            let pending = |n: &NodeInfo| n.sent_ms < at_ms + JOINED_WITHIN_MS;
            if let Some(n) = nodes.iter_mut().find(|n| &n.id == id).filter(|n| pending(n)) {
                n.load.participants += ROOM_SIZE;
                n.load.rooms += 1;
            }
        }
        nodes
    }
}

/// Where one of this node's rooms lives.
#[derive(Debug, Clone)]
struct Room {
    node: String,
    /// The node's start time when the room was placed: a node that restarted since has lost the room.
    started_ms: u64,
    url: String,
    /// Placed by this signaling node, which follows it: moves it off a lost node, takes its media reports.
    /// Otherwise looked up for a device here in a call another node placed, and forgotten a while later.
    ours: bool,
    at: Instant,
}

impl Room {
    fn on(n: &NodeInfo) -> Self {
        Room {
            node: n.id.clone(),
            started_ms: n.started_ms,
            url: n.url.clone(),
            ours: true,
            at: Instant::now(),
        }
    }
}

struct Shared {
    registry: Registry,
    selector: SelectorKind,
    region: String,
    drain_deadline_secs: u64,
    view: Mutex<View>,
    rooms: Mutex<HashMap<String, Room>>,
    moves: mpsc::UnboundedSender<Moved>,
}

/// Places rooms on the cluster's nodes, moves them off nodes that die or drain, and mints their tokens.
pub struct ClusterPlacement {
    tokens: LocalSfu,
    shared: Arc<Shared>,
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
        });
        tokio::spawn(refresh(shared.clone(), Duration::from_millis(cfg.heartbeat_ms / 2)));
        Ok(Self { tokens, shared })
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

    /// Whether `node` is where `room` lives now: reports from a room's old node, after a move, are stale.
    pub fn hosts(&self, room: &str, node: &str) -> bool {
        self.shared.rooms().get(room).is_some_and(|r| r.ours && r.node == node)
    }

    /// Learns where the room of `call` is, if another signaling node placed it (a device here joins it).
    pub async fn locate(&self, call: &CallId) {
        if self.shared.rooms().get(&call.0).is_some_and(|r| r.ours) {
            return;
        }
        let node = match self.shared.registry.room_node(&call.0).await {
            Ok(Some(node)) => node,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%call, error = %e, "cannot look up the call's room");
                return;
            }
        };
        let view = self.shared.view.lock().unwrap_or_else(PoisonError::into_inner);
        let room = view.nodes.iter().find(|n| n.id == node).map(|n| Room {
            ours: false,
            ..Room::on(n)
        });
        drop(view);
        if let Some(room) = room {
            self.shared.rooms().insert(call.0.clone(), room);
        }
    }
}

impl Shared {
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pick(&self) -> Result<NodeInfo, PlaceError> {
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let nodes = view.settled(now);
        let picked = choose(self.selector, &nodes, ROOM_SIZE, &self.region, &mut rand::rng());
        let node = nodes[picked.map_err(|e| PlaceError::NoNode(e.to_string()))?].clone();
        view.placed
            .push_back((now, hualu_common::clock::unix_now_ms(), node.id.clone()));
        Ok(node)
    }

    /// Moves the rooms whose node is gone, restarted, or past its drain deadline, given the live `nodes`.
    /// A node absent from `nodes` is lost only when `absence_is_death` (Redis has held the cluster's state for
    /// a dead window); otherwise only restarted and drained nodes' rooms move.
    fn rehome(&self, nodes: &[NodeInfo], absence_is_death: bool) {
        let now_ms = hualu_common::clock::unix_now_ms();
        let stranded: Vec<(String, String, &'static str)> = self
            .rooms()
            .iter()
            .filter(|(_, room)| room.ours)
            .filter_map(|(call, room)| {
                let reason = match nodes.iter().find(|n| n.id == room.node) {
                    None if !absence_is_death => return None,
                    None => "node_lost",
                    Some(n) if n.started_ms != room.started_ms => "node_lost",
                    Some(n) if n.moving(now_ms) => "node_drained",
                    Some(_) => return None,
                };
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
            self.rooms().insert(call.clone(), Room::on(&to));
            let (registry, moves) = (self.registry.clone(), self.moves.clone());
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
                let _ = moves.send(Moved {
                    call: CallId(room.clone()),
                    reason,
                });
                // The old node's copy of the room goes once its clients had time to leave by themselves (a
                // close before they heard `move` would read to them as the call's end).
                tokio::time::sleep(CLOSE_AFTER_MOVE).await;
                order_close(&registry, room, from).await;
            });
        }
        metrics::gauge!("hualu_cluster_homeless_rooms").set(f64::from(homeless));
    }
}

/// Tells `node` to close `room`; a lost order leaves the room to its participants' leaving or timing out.
async fn order_close(registry: &Registry, room: String, node: String) {
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
                // A Redis that restarted empty has not heard every node again yet.
                let absence_is_death = shared.registry.absence_is_death().await.unwrap_or(false);
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
        let url = self
            .shared
            .rooms()
            .get(&call.0)
            .map(|r| r.url.clone())
            .ok_or_else(|| PlaceError::NoNode(format!("call {call} has no room")))?;
        self.tokens.join_at(&url, call, device)
    }

    fn close(&self, call: &CallId) {
        let node = self.shared.rooms().remove(&call.0).map(|r| r.node);
        let (registry, room) = (self.shared.registry.clone(), call.0.clone());
        tokio::spawn(async move {
            // Another signaling node placed it: Redis knows where.
            let node = match node {
                Some(n) => Some(n),
                None => registry.room_node(&room).await.ok().flatten(),
            };
            if let Err(e) = registry.close_room(&room).await {
                tracing::warn!(%room, error = %e, "the room's record stays until it expires");
            }
            if let Some(node) = node {
                order_close(&registry, room, node).await;
            }
        });
    }
}
