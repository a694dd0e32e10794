//! Rooms on the cluster's SFU nodes. The live nodes are read from Redis twice per heartbeat period into a local
//! view, so that placing a room never waits on Redis. A node's heartbeat counts a room only once its clients have
//! joined it, seconds after the placement; until [`SETTLE`] has passed, each room placed here is added to its
//! node's load, so that a burst of calls spreads rather than piling onto the node that was lightest a moment ago.
//! The room-to-node record is then written to Redis atomically ([`Registry::place_room`]).

use super::placement::{LocalSfu, PlaceError, Placement};
use crate::core::{CallId, Device};
use hualu_cluster::{choose, ClusterError, NodeInfo, Registry};
use hualu_common::config::{ClusterConfig, SelectorKind};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Participants a new call's room is placed for: a 1:1 call, the common case. A group grows on its node.
const ROOM_SIZE: u64 = 2;

/// How long a placed room counts on its node before the node's own heartbeat is trusted to include it: the
/// clients' join and ICE, plus a heartbeat period.
pub const SETTLE: Duration = Duration::from_secs(5);

/// The nodes as last read, and the rooms placed here since, not yet in their node's heartbeat.
#[derive(Default)]
struct View {
    nodes: Vec<NodeInfo>,
    placed: VecDeque<(Instant, String)>,
}

impl View {
    /// The nodes with the rooms placed within [`SETTLE`] of `now` added to their load.
    fn settled(&mut self, now: Instant) -> Vec<NodeInfo> {
        while self
            .placed
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > SETTLE)
        {
            self.placed.pop_front();
        }
        let mut nodes = self.nodes.clone();
        for (_, id) in &self.placed {
            if let Some(n) = nodes.iter_mut().find(|n| &n.id == id) {
                n.load.participants += ROOM_SIZE;
                n.load.rooms += 1;
            }
        }
        nodes
    }
}

/// Places rooms on the cluster's nodes and mints their tokens.
pub struct ClusterPlacement {
    tokens: LocalSfu,
    registry: Registry,
    selector: SelectorKind,
    region: String,
    view: Arc<Mutex<View>>,
    rooms: Mutex<HashMap<String, String>>,
}

impl ClusterPlacement {
    /// Connects to Redis and starts reading the live nodes. Must run inside a tokio runtime.
    pub fn start(cfg: &ClusterConfig, tokens: LocalSfu) -> Result<Self, ClusterError> {
        let registry = Registry::connect(cfg)?;
        let view = Arc::new(Mutex::new(View::default()));
        tokio::spawn(refresh(
            registry.clone(),
            view.clone(),
            Duration::from_millis(cfg.heartbeat_ms / 2),
        ));
        Ok(Self {
            tokens,
            registry,
            selector: cfg.selector,
            region: cfg.region.clone(),
            view,
            rooms: Mutex::new(HashMap::new()),
        })
    }

    /// The Redis handle it places with.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    fn pick(&self) -> Result<(String, String), PlaceError> {
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let nodes = view.settled(now);
        let i = choose(self.selector, &nodes, ROOM_SIZE, &self.region, &mut rand::rng())
            .map_err(|e| PlaceError::NoNode(e.to_string()))?;
        let node = &nodes[i];
        view.placed.push_back((now, node.id.clone()));
        Ok((node.id.clone(), node.url.clone()))
    }
}

/// Reads the live nodes every `every`, keeping the last view while Redis is unreachable.
async fn refresh(registry: Registry, view: Arc<Mutex<View>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        tick.tick().await;
        match registry.nodes().await {
            Ok(nodes) => {
                metrics::gauge!("hualu_cluster_nodes").set(nodes.len() as f64);
                view.lock().unwrap_or_else(PoisonError::into_inner).nodes = nodes;
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
        let (node, url) = match self.pick() {
            Ok(p) => p,
            Err(e) => {
                metrics::counter!("hualu_cluster_placements_total", "result" => "no_node").increment(1);
                return Err(e);
            }
        };
        metrics::counter!("hualu_cluster_placements_total", "result" => "ok").increment(1);
        tracing::debug!(%call, %node, "room placed");
        self.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(call.0.clone(), url);
        let (registry, room) = (self.registry.clone(), call.0.clone());
        tokio::spawn(async move {
            match registry.place_room(&room, &node).await {
                Ok(Some(on)) if on == node => {}
                Ok(Some(on)) => tracing::warn!(%room, %node, %on, "the room was already placed elsewhere"),
                Ok(None) => tracing::warn!(%room, %node, "the node died as the room was placed"),
                Err(e) => tracing::warn!(%room, %node, error = %e, "the room's node could not be recorded"),
            }
        });
        Ok(())
    }

    fn join(&self, call: &CallId, device: &Device) -> Result<Value, PlaceError> {
        let url = self
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&call.0)
            .cloned()
            .ok_or_else(|| PlaceError::NoNode(format!("call {call} has no room")))?;
        self.tokens.join_at(&url, call, device)
    }

    fn close(&self, call: &CallId) {
        self.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&call.0);
        let (registry, room) = (self.registry.clone(), call.0.clone());
        tokio::spawn(async move {
            if let Err(e) = registry.close_room(&room).await {
                tracing::warn!(%room, error = %e, "the room's record stays until it expires");
            }
        });
    }
}
