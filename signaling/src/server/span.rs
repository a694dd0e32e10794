//! Rooms that span SFU nodes. A device joins its room's home node while that node takes one more and, with the
//! `region` selector, is in this signaling node's region; otherwise the room extends to a second node
//! ([`hualu_cluster::decide`]), recorded in Redis ([`hualu_cluster::Registry::extend_room`]), and the device's room
//! token names the room's other nodes (`grants.links`), which its node relays the room's tracks with.
//!
//! The signaling node that placed a room follows its span as it follows its home: it reads the span from Redis
//! with each view of the nodes (another signaling node may have extended the room), takes media reports from
//! every node of it, drops a node that dies or drains past its deadline (the call's devices then rejoin), and
//! closes the room on all of its nodes when the call ends.

use super::cluster::{gone, order_close, ClusterPlacement, Moved, Room, Shared, CLOSE_AFTER_MOVE};
use super::placement::PlaceError;
use crate::core::{CallId, Device};
use hualu_cluster::{decide, Decision, NodeInfo, RoomNodes};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

/// How long an extension made here is kept when Redis does not list it yet (its write may still be on its way),
/// in a room another signaling node placed and that is looked up again.
const UNCONFIRMED_FOR: Duration = Duration::from_secs(5);

/// A node a room extends to, besides its home.
#[derive(Debug, Clone)]
pub(super) struct SpanNode {
    /// The node's id.
    pub(super) id: String,
    /// Its start time when the room extended to it (0: not known, the node was not in the view): a node that
    /// restarted since has lost the room.
    pub(super) started_ms: u64,
    /// When this signaling node learned of it.
    added: Instant,
}

impl SpanNode {
    fn on(n: &NodeInfo) -> Self {
        SpanNode {
            id: n.id.clone(),
            started_ms: n.started_ms,
            added: Instant::now(),
        }
    }

    /// Node `id` as the live `nodes` show it, or not known.
    fn named(id: &str, nodes: &[NodeInfo]) -> Self {
        match nodes.iter().find(|n| n.id == id) {
            Some(n) => SpanNode::on(n),
            None => SpanNode {
                id: id.to_string(),
                started_ms: 0,
                added: Instant::now(),
            },
        }
    }
}

/// The span read from Redis (`ids`), given the live `nodes`.
pub(super) fn known(ids: &[String], nodes: &[NodeInfo]) -> Vec<SpanNode> {
    ids.iter().map(|id| SpanNode::named(id, nodes)).collect()
}

/// Keeps in `room`, just read from Redis, the extensions `old` had that Redis may not list yet.
pub(super) fn keep_unconfirmed(room: &mut Room, old: &Room) {
    for s in &old.span {
        if s.added.elapsed() < UNCONFIRMED_FOR && !room.on_node(&s.id) {
            room.span.push(s.clone());
        }
    }
}

/// Adds to `room`'s span the nodes of `ids` (read from Redis) it does not have.
fn learn(room: &mut Room, ids: &[String], nodes: &[NodeInfo]) {
    for id in ids {
        if !room.on_node(id) {
            room.span.push(SpanNode::named(id, nodes));
        }
    }
}

/// Where a device joins: its node's room URL, and the link addresses of the room's other nodes.
pub(super) struct Joining {
    url: String,
    links: Vec<String>,
}

impl ClusterPlacement {
    /// The `join` fields for `device` in the room of `call`. `here`: the device's socket is on this signaling
    /// node, whose region it is in; otherwise it joins the home node, and the signaling node it is on decides
    /// again as it delivers the `join` (the hub's routed events).
    pub fn join_for(&self, call: &CallId, device: &Device, here: bool) -> Result<Value, PlaceError> {
        let j = self.shared.place_device(call, here)?;
        self.tokens.join_at(&j.url, call, device, j.links)
    }

    /// Whether a media report from `node` about `room` counts: `node` is one of the nodes of a room this
    /// signaling node follows ([`ClusterPlacement::hosts`]). A node it does not know of yet may be an extension
    /// another signaling node just made: Redis is asked then.
    pub async fn accepts(&self, room: &str, node: &str) -> bool {
        if self.hosts(room, node) {
            return true;
        }
        if !self.shared.rooms().get(room).is_some_and(|r| r.ours) {
            return false;
        }
        match self.shared.registry.room_span(room).await {
            Ok(ids) => {
                let nodes = self.shared.live_nodes();
                if let Some(r) = self.shared.rooms().get_mut(room) {
                    learn(r, &ids, &nodes);
                }
            }
            Err(e) => tracing::warn!(%room, %node, error = %e, "cannot read the room's span; the report is dropped"),
        }
        self.hosts(room, node)
    }

    /// The home node and span of the room of `call`: as this node follows it, else as Redis has it.
    pub async fn room_nodes(&self, call: &str) -> (Option<String>, Vec<String>) {
        let known = self.shared.rooms().get(call).filter(|r| r.ours).map(|r| {
            let span = r.span.iter().map(|s| s.id.clone()).collect();
            (Some(r.node.clone()), span)
        });
        match known {
            Some(k) => k,
            None => self.shared.registry.room_and_span(call).await.unwrap_or_default(),
        }
    }
}

impl Shared {
    /// Decides the node a device joins in the room of `call`, and records it: an extension in the room and in
    /// Redis, the device in the view's load.
    fn place_device(&self, call: &CallId, here: bool) -> Result<Joining, PlaceError> {
        let room = self
            .rooms()
            .get(&call.0)
            .cloned()
            .ok_or_else(|| PlaceError::NoNode(format!("call {call} has no room")))?;
        let now = Instant::now();
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let nodes = view.settled(now);
        let decision = self.decide(&room, &nodes, here);
        let (node, url) = match &decision {
            Decision::Home => (room.node.clone(), room.url.clone()),
            Decision::Span(id) | Decision::Extend { node: id, .. } => {
                let n = nodes.iter().find(|n| &n.id == id);
                (id.clone(), n.map_or_else(|| room.url.clone(), |n| n.url.clone()))
            }
        };
        match &decision {
            // Counted with the room's placement; or not decided here.
            Decision::Home if room.reserved > 0 || !here => {}
            Decision::Home | Decision::Span(_) => view.count(now, &node, 1, 0),
            Decision::Extend { .. } => view.count(now, &node, 1, 1),
        }
        drop(view);
        let mut others = room.node_ids();
        others.push(node.clone());
        let links = links(&call.0, &others, &node, &nodes);
        self.record(call, &room, decision, &nodes);
        Ok(Joining { url, links })
    }

    /// [`hualu_cluster::decide`] on the room's live nodes; home when its home is not live, or `here` is false.
    fn decide(&self, room: &Room, nodes: &[NodeInfo], here: bool) -> Decision {
        let live = |id: &str, started: u64| {
            nodes
                .iter()
                .find(|n| n.id == id && (started == 0 || n.started_ms == started))
        };
        let Some(home) = live(&room.node, room.started_ms).filter(|_| here) else {
            return Decision::Home;
        };
        let span: Vec<NodeInfo> = room
            .span
            .iter()
            .filter_map(|s| live(&s.id, s.started_ms))
            .cloned()
            .collect();
        let input = RoomNodes {
            home,
            span: &span,
            reserved: room.reserved > 0,
        };
        decide(input, nodes, self.selector, &self.region, &mut rand::rng())
    }

    /// Records `decision` for the room of `call` (as it was decided on, `room`): a place held on its home is
    /// taken; an extension joins its span, here and in Redis.
    fn record(&self, call: &CallId, room: &Room, decision: Decision, nodes: &[NodeInfo]) {
        let mut rooms = self.rooms();
        let Some(r) = rooms.get_mut(&call.0) else { return };
        match decision {
            Decision::Home => r.reserved = r.reserved.saturating_sub(1),
            Decision::Span(_) => {}
            Decision::Extend { node, reason } => {
                let Some(n) = nodes.iter().find(|n| n.id == node) else {
                    return;
                };
                r.span.push(SpanNode::on(n));
                drop(rooms);
                let reason = reason.as_str();
                tracing::info!(room = %call, from = %room.node, to = %node, reason, "room extended");
                metrics::counter!("hualu_cluster_room_extensions_total", "reason" => reason).increment(1);
                let (registry, room) = (self.registry.clone(), call.0.clone());
                tokio::spawn(async move {
                    match registry.extend_room(&room, &node).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(%room, %node, "the room ended, or the node died, as it extended"),
                        Err(e) => {
                            tracing::warn!(%room, %node, error = %e, "the room's extension could not be recorded")
                        }
                    }
                });
            }
        }
    }

    /// Reads the spans of the rooms followed here from Redis: other signaling nodes extend them too.
    pub(super) async fn learn_spans(&self, nodes: &[NodeInfo]) {
        let ours: Vec<String> = self
            .rooms()
            .iter()
            .filter(|(_, r)| r.ours)
            .map(|(call, _)| call.clone())
            .collect();
        match self.registry.room_spans(&ours).await {
            Ok(spans) => {
                let mut rooms = self.rooms();
                for (call, ids) in ours.iter().zip(spans) {
                    if let Some(r) = rooms.get_mut(call) {
                        learn(r, &ids, nodes);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the rooms' spans; retrying"),
        }
    }

    /// Drops from the rooms followed here the span nodes that are gone, restarted or past their drain deadline,
    /// given the live `nodes`, and tells each such call's devices to join again (`Moved`), unless its home moves
    /// too (that move tells them). Redis forgets the node first, so that the rejoins do not find it there.
    pub(super) async fn shrink_spans(self: &Arc<Self>, nodes: &[NodeInfo], absence_is_death: bool) {
        let now_ms = hualu_common::clock::unix_now_ms();
        let mut dropped: Vec<(String, String, &'static str)> = Vec::new();
        let mut homes_move = HashSet::new();
        for (call, room) in self.rooms().iter_mut().filter(|(_, r)| r.ours) {
            if gone(&room.node, room.started_ms, nodes, absence_is_death, now_ms).is_some() {
                homes_move.insert(call.clone());
            }
            room.span
                .retain(|s| match gone(&s.id, s.started_ms, nodes, absence_is_death, now_ms) {
                    Some(reason) => {
                        dropped.push((call.clone(), s.id.clone(), reason));
                        false
                    }
                    None => true,
                });
        }
        let mut told = HashSet::new();
        for (call, node, reason) in dropped {
            tracing::info!(%call, %node, reason, "a node the room extended to is dropped; its devices join again");
            if let Err(e) = self.registry.shrink_room(&call, &node).await {
                tracing::warn!(%call, %node, error = %e, "the room's span keeps the node until the room ends");
            }
            if !homes_move.contains(&call) && told.insert(call.clone()) {
                let _ = self.moves.send(Moved {
                    call: CallId(call.clone()),
                    reason,
                });
            }
            // A drained node still holds the room: it goes once its clients had time to leave by themselves. A
            // lost one has lost it.
            if reason == "node_drained" {
                let shared = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(CLOSE_AFTER_MOVE).await;
                    if !shared.rooms().get(&call).is_some_and(|r| r.on_node(&node)) {
                        order_close(&shared.registry, call, node).await;
                    }
                });
            }
        }
    }
}

/// The link addresses (`ip:port`) of the nodes `ids` but `own`, for `room`, as the live `nodes` show them.
fn links(room: &str, ids: &[String], own: &str, nodes: &[NodeInfo]) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.iter()
        .filter(|id| id.as_str() != own && seen.insert(id.as_str()))
        .filter_map(|id| nodes.iter().find(|n| &n.id == id)?.link_for(room))
        .map(|a| a.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hualu_cluster::{Load, NodeState};

    fn node(id: &str, port: u16) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            url: format!("ws://{id}/rtc"),
            region: String::new(),
            state: NodeState::Serving,
            load: Load::default(),
            max_participants: 100,
            started_ms: 1,
            sent_ms: 1,
            move_at_ms: 0,
            media: vec![std::net::SocketAddr::from(([10, 0, 0, 1], port))],
        }
    }

    #[test]
    fn a_device_links_to_every_other_node_of_the_room_once() {
        let nodes = [node("a", 5000), node("b", 6000), node("c", 7000)];
        let ids: Vec<String> = ["a", "b", "b", "c", "gone"].iter().map(|s| s.to_string()).collect();
        assert_eq!(links("r", &ids, "b", &nodes), ["10.0.0.1:5000", "10.0.0.1:7000"]);
        assert_eq!(links("r", &ids[..1], "a", &nodes), Vec::<String>::new());
    }

    #[test]
    fn an_unconfirmed_extension_survives_a_lookup_for_a_while() {
        let nodes = [node("a", 5000), node("b", 6000)];
        let fresh = |span: Vec<SpanNode>| Room {
            node: "a".into(),
            started_ms: 1,
            url: "ws://a/rtc".into(),
            ours: false,
            at: Instant::now(),
            reserved: 0,
            span,
        };
        let old = fresh(vec![SpanNode::named("b", &nodes)]);
        let mut read = fresh(known(&[], &nodes));
        keep_unconfirmed(&mut read, &old);
        assert!(read.on_node("b"));
        let mut stale = old.clone();
        stale.span[0].added = Instant::now() - UNCONFIRMED_FOR;
        let mut read = fresh(Vec::new());
        keep_unconfirmed(&mut read, &stale);
        assert!(!read.on_node("b"), "Redis has had time to list it: it was dropped");
        let mut r = fresh(Vec::new());
        learn(&mut r, &["a".into(), "b".into(), "x".into()], &nodes);
        let ids: Vec<_> = r.span.iter().map(|s| (s.id.as_str(), s.started_ms)).collect();
        assert_eq!(
            ids,
            [("b", 1), ("x", 0)],
            "the home is not its own span; an unknown node is kept as unknown"
        );
    }
}
