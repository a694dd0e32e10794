//! Which node a device joins in a room that may span nodes: the room's home node while it fits, else a node the
//! room already extends to, else a new one. A pure function of call control's view, so that joining never waits
//! on Redis and the rule is tested on its own.

use crate::node::{NodeInfo, NodeState};
use crate::select::{choose, lighter};
use hualu_common::config::SelectorKind;
use rand::Rng;

/// Why a device does not join the room's home node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The home node is in another region than the device's signaling node, and a node in its region takes one.
    Region,
    /// The home node is full or draining.
    Full,
}

impl Reason {
    /// The label in metrics and logs: `region` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Region => "region",
            Reason::Full => "full",
        }
    }
}

/// Where a device joins a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The room's home node.
    Home,
    /// A node the room spans already (its id).
    Span(String),
    /// A node the room does not span yet: it extends there.
    Extend {
        /// The node's id.
        node: String,
        /// Why.
        reason: Reason,
    },
}

/// The room as call control knows it, on the live nodes.
#[derive(Debug, Clone, Copy)]
pub struct RoomNodes<'a> {
    /// The home node (its record in the view).
    pub home: &'a NodeInfo,
    /// The nodes it extends to, as far as they are alive.
    pub span: &'a [NodeInfo],
    /// The home node holds a place for this device already (the room was placed for it), so its load need not
    /// have room for one more.
    pub reserved: bool,
}

/// Where one more device joins `room`, given the live `nodes` (with the placements not yet in their heartbeats
/// counted), the cluster's `kind` of selector and this signaling node's `region`.
///
/// The device joins the home node if it takes one more and, with the `region` selector, it is in this region or
/// no node here takes one. Otherwise a span node that fits (in this region, for a region mismatch), else a new
/// node chosen by `kind` among the others; with nothing that fits, home (its SFU refuses if it is really full).
pub fn decide(
    room: RoomNodes<'_>,
    nodes: &[NodeInfo],
    kind: SelectorKind,
    region: &str,
    rng: &mut impl Rng,
) -> Decision {
    let home = room.home;
    let fits = home.state == NodeState::Serving && (room.reserved || home.takes(1));
    let open_here = |n: &NodeInfo| n.region == region && n.takes(1);
    let in_region = kind != SelectorKind::Region || home.region == region || !nodes.iter().any(open_here);
    if fits && in_region {
        return Decision::Home;
    }
    let reason = if in_region { Reason::Full } else { Reason::Region };
    let reusable = |n: &&NodeInfo| n.id != home.id && n.takes(1) && (reason == Reason::Full || n.region == region);
    if let Some(n) = room.span.iter().filter(reusable).min_by(|a, b| lighter(a, b)) {
        return Decision::Span(n.id.clone());
    }
    // Span nodes that did not fit above do not fit below either: only nodes the room is not on are candidates.
    let others: Vec<NodeInfo> = nodes
        .iter()
        .filter(|n| n.id != home.id && !room.span.iter().any(|s| s.id == n.id))
        .cloned()
        .collect();
    match choose(kind, &others, 1, region, rng) {
        Ok(i) => Decision::Extend {
            node: others[i].id.clone(),
            reason,
        },
        Err(_) => Decision::Home,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::node;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn run(home: &NodeInfo, span: &[NodeInfo], nodes: &[NodeInfo], kind: SelectorKind, region: &str) -> Decision {
        let room = RoomNodes {
            home,
            span,
            reserved: false,
        };
        decide(room, nodes, kind, region, &mut StdRng::seed_from_u64(3))
    }

    #[test]
    fn same_region_and_room_on_the_home_node_joins_home() {
        let nodes = [node("a", "eu", 10, 100), node("b", "eu", 0, 100)];
        for kind in [SelectorKind::Region, SelectorKind::LowestLoad, SelectorKind::PowerOfTwo] {
            assert_eq!(run(&nodes[0], &[], &nodes, kind, "eu"), Decision::Home, "{kind:?}");
        }
        // Other selectors ignore regions.
        assert_eq!(
            run(&nodes[0], &[], &nodes, SelectorKind::LowestLoad, "us"),
            Decision::Home
        );
    }

    #[test]
    fn a_region_mismatch_extends_to_a_node_in_this_region() {
        let nodes = [
            node("us-1", "us", 0, 100),
            node("eu-1", "eu", 80, 100),
            node("eu-2", "eu", 20, 100),
            node("ap-1", "ap", 0, 100),
        ];
        let want = Decision::Extend {
            node: "eu-2".into(),
            reason: Reason::Region,
        };
        assert_eq!(run(&nodes[0], &[], &nodes, SelectorKind::Region, "eu"), want);
        // Nothing in this region takes one: home it is.
        let eu_full = [node("us-1", "us", 0, 100), node("eu-1", "eu", 100, 100)];
        assert_eq!(
            run(&eu_full[0], &[], &eu_full, SelectorKind::Region, "eu"),
            Decision::Home
        );
    }

    #[test]
    fn a_full_home_extends_to_the_lightest_other_node() {
        let nodes = [node("a", "", 100, 100), node("b", "", 60, 100), node("c", "", 30, 100)];
        let want = Decision::Extend {
            node: "c".into(),
            reason: Reason::Full,
        };
        assert_eq!(run(&nodes[0], &[], &nodes, SelectorKind::LowestLoad, ""), want);
        // A draining home takes nobody either.
        let mut drained = nodes.clone();
        drained[0] = node("a", "", 0, 100);
        drained[0].state = NodeState::Draining;
        assert_eq!(run(&drained[0], &[], &drained, SelectorKind::LowestLoad, ""), want);
    }

    #[test]
    fn a_place_held_on_the_home_node_is_taken_even_when_it_counts_full() {
        let nodes = [node("a", "", 100, 100), node("b", "", 0, 100)];
        let room = RoomNodes {
            home: &nodes[0],
            span: &[],
            reserved: true,
        };
        let d = decide(
            room,
            &nodes,
            SelectorKind::LowestLoad,
            "",
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(d, Decision::Home);
    }

    #[test]
    fn a_node_the_room_spans_already_is_reused() {
        let nodes = [
            node("us-1", "us", 0, 100),
            node("eu-1", "eu", 70, 100),
            node("eu-2", "eu", 0, 100),
        ];
        // eu-1 is heavier than eu-2, but the room is on it already: no third node.
        let span = [nodes[1].clone()];
        assert_eq!(
            run(&nodes[0], &span, &nodes, SelectorKind::Region, "eu"),
            Decision::Span("eu-1".into())
        );
        // Full home: any span node with room, whatever its region.
        let full = [
            node("a", "eu", 100, 100),
            node("b", "us", 90, 100),
            node("c", "eu", 0, 100),
        ];
        let span = [full[1].clone()];
        assert_eq!(
            run(&full[0], &span, &full, SelectorKind::LowestLoad, "eu"),
            Decision::Span("b".into())
        );
        // A full span node is passed over for a new one.
        let span = [node("b", "us", 100, 100)];
        assert_eq!(
            run(&full[0], &span, &full, SelectorKind::LowestLoad, "eu"),
            Decision::Extend {
                node: "c".into(),
                reason: Reason::Full
            }
        );
    }

    #[test]
    fn nothing_that_fits_leaves_the_device_on_the_home_node() {
        let nodes = [node("a", "", 100, 100), node("b", "", 100, 100)];
        assert_eq!(
            run(&nodes[0], &[], &nodes, SelectorKind::LowestLoad, ""),
            Decision::Home
        );
        let alone = [node("a", "", 100, 100)];
        assert_eq!(
            run(&alone[0], &[], &alone, SelectorKind::PowerOfTwo, ""),
            Decision::Home
        );
        let mut d = node("b", "", 0, 100);
        d.state = NodeState::Draining;
        let drained = [node("a", "", 100, 100), d];
        assert_eq!(
            run(&drained[0], &[], &drained, SelectorKind::Region, ""),
            Decision::Home
        );
    }
}
