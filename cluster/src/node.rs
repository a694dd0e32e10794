//! What an SFU node says of itself in each heartbeat.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Whether a node takes new rooms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Takes new rooms.
    #[default]
    Serving,
    /// Keeps its rooms until they move or end; takes no new ones.
    Draining,
}

/// The load an SFU node measures of itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Rooms open.
    pub rooms: u64,
    /// Participants connected.
    pub participants: u64,
    /// Media packets in and out per second, over the last report.
    pub packets_per_s: u64,
    /// CPU the process used over the last report, in cores.
    pub cpu_cores: f64,
}

/// One SFU node as the cluster sees it: the heartbeat's JSON in Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique name (`cluster.node_id`).
    pub id: String,
    /// The room URL clients are sent to.
    pub url: String,
    /// Region label; may be empty.
    pub region: String,
    /// Serving or draining.
    pub state: NodeState,
    /// What it carries.
    pub load: Load,
    /// Participants it takes (`cluster.max_participants`).
    pub max_participants: u64,
    /// When it started, in Unix milliseconds: a restarted node with the same id is a new node.
    pub started_ms: u64,
    /// When it sent this report, in Unix milliseconds.
    pub sent_ms: u64,
    /// For a draining node: when its remaining rooms move to other nodes, in Unix milliseconds (0: never).
    #[serde(default)]
    pub move_at_ms: u64,
    /// Its shards' UDP media addresses as clients and other nodes reach them, in shard order. A room that spans
    /// nodes is relayed between the shards that hold it ([`NodeInfo::link_for`]). Empty from a node that predates
    /// spanning rooms: it takes no links.
    #[serde(default)]
    pub media: Vec<SocketAddr>,
}

impl NodeInfo {
    /// Participants over capacity: 0 idle, 1 full.
    pub fn load_ratio(&self) -> f64 {
        self.load.participants as f64 / self.max_participants.max(1) as f64
    }

    /// Whether its rooms must move now (`now_ms`, Unix milliseconds): it is draining and past its deadline.
    pub fn moving(&self, now_ms: u64) -> bool {
        self.state == NodeState::Draining && self.move_at_ms != 0 && now_ms >= self.move_at_ms
    }

    /// The address other nodes relay `room` with: the UDP media port of the shard that holds it
    /// ([`hualu_common::room_shard`]). `None` when the node names no media address.
    pub fn link_for(&self, room: &str) -> Option<SocketAddr> {
        match self.media.len() {
            0 => None,
            n => self.media.get(hualu_common::room_shard(room, n)).copied(),
        }
    }

    /// Whether the node takes a new room of `participants`.
    pub fn takes(&self, participants: u64) -> bool {
        self.state == NodeState::Serving && self.load.participants + participants <= self.max_participants
    }
}

#[cfg(test)]
pub(crate) fn node(id: &str, region: &str, participants: u64, max: u64) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        url: format!("ws://{id}/rtc"),
        region: region.into(),
        state: NodeState::Serving,
        load: Load {
            participants,
            rooms: participants / 2,
            ..Load::default()
        },
        max_participants: max,
        started_ms: 1,
        sent_ms: 2,
        move_at_ms: 0,
        media: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_through_json() {
        let mut n = node("sfu-a", "eu", 10, 100);
        n.state = NodeState::Draining;
        n.media = vec![
            "10.0.0.1:50000".parse().expect("addr"),
            "[2001:db8::1]:50001".parse().expect("addr"),
        ];
        let text = serde_json::to_string(&n).expect("serialize");
        assert!(text.contains("\"state\":\"draining\""), "{text}");
        let back: NodeInfo = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, n);
    }

    #[test]
    fn a_full_or_draining_node_takes_nothing() {
        let n = node("a", "", 98, 100);
        assert!(n.takes(2));
        assert!(!n.takes(3));
        let mut d = node("b", "", 0, 100);
        d.state = NodeState::Draining;
        assert!(!d.takes(1));
        assert!((node("c", "", 50, 100).load_ratio() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_record_without_media_addresses_parses_and_takes_no_link() {
        let mut text = serde_json::to_value(node("old", "", 0, 10)).expect("serialize");
        text.as_object_mut().expect("an object").remove("media");
        let old: NodeInfo = serde_json::from_value(text).expect("parse");
        assert!(old.media.is_empty());
        assert_eq!(old.link_for("room"), None);
    }

    #[test]
    fn a_room_links_to_the_shard_that_holds_it() {
        let mut n = node("a", "", 0, 10);
        n.media = (0..4)
            .map(|i| std::net::SocketAddr::from(([10, 0, 0, 1], 50_000 + i)))
            .collect();
        for room in ["r1", "r2", "call-77"] {
            let shard = hualu_common::room_shard(room, 4);
            assert_eq!(n.link_for(room), Some(n.media[shard]), "{room}");
        }
    }
}
