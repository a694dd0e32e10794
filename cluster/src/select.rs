//! Picking the SFU node for a new room, from the nodes' last heartbeats.

use crate::node::NodeInfo;
use hualu_common::config::SelectorKind;
use rand::Rng;
use std::cmp::Ordering;

/// Why no node was picked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoNode {
    /// No node is alive.
    #[error("no SFU node is alive")]
    NoneAlive,
    /// Every live node is draining or full.
    #[error("every SFU node is full or draining ({0} alive)")]
    AllBusy(usize),
}

/// The index in `nodes` of the node that gets a new room of `participants`, by `kind`. `region` is the placing
/// node's region, for [`SelectorKind::Region`].
pub fn choose(
    kind: SelectorKind,
    nodes: &[NodeInfo],
    participants: u64,
    region: &str,
    rng: &mut impl Rng,
) -> Result<usize, NoNode> {
    if nodes.is_empty() {
        return Err(NoNode::NoneAlive);
    }
    let open: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].takes(participants)).collect();
    if open.is_empty() {
        return Err(NoNode::AllBusy(nodes.len()));
    }
    let pick = match kind {
        SelectorKind::LowestLoad => lowest(nodes, &open),
        SelectorKind::PowerOfTwo => power_of_two(nodes, &open, rng),
        SelectorKind::Region => {
            let local: Vec<usize> = open.iter().copied().filter(|&i| nodes[i].region == region).collect();
            lowest(nodes, if local.is_empty() { &open } else { &local })
        }
    };
    Ok(pick)
}

/// Lower load first; then fewer rooms; then the id, so that equal nodes are taken in a stable order.
pub(crate) fn lighter(a: &NodeInfo, b: &NodeInfo) -> Ordering {
    a.load_ratio()
        .total_cmp(&b.load_ratio())
        .then(a.load.rooms.cmp(&b.load.rooms))
        .then_with(|| a.id.cmp(&b.id))
}

fn lowest(nodes: &[NodeInfo], among: &[usize]) -> usize {
    let mut best = among[0];
    for &i in &among[1..] {
        if lighter(&nodes[i], &nodes[best]) == Ordering::Less {
            best = i;
        }
    }
    best
}

fn power_of_two(nodes: &[NodeInfo], open: &[usize], rng: &mut impl Rng) -> usize {
    if open.len() == 1 {
        return open[0];
    }
    let a = rng.random_range(0..open.len());
    let mut b = rng.random_range(0..open.len() - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (open[a], open[b]);
    if lighter(&nodes[b], &nodes[a]) == Ordering::Less {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{node, NodeState};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn lowest_load_takes_the_least_loaded_by_ratio_not_count() {
        // b carries more participants but is the emptier node for its size.
        let nodes = [node("a", "", 50, 100), node("b", "", 100, 1000), node("c", "", 90, 100)];
        assert_eq!(choose(SelectorKind::LowestLoad, &nodes, 2, "", &mut rng()), Ok(1));
    }

    #[test]
    fn full_and_draining_nodes_are_passed_over_and_named_when_nothing_is_left() {
        let mut d = node("d", "", 0, 100);
        d.state = NodeState::Draining;
        let nodes = [node("f", "", 99, 100), d.clone(), node("ok", "", 80, 100)];
        assert_eq!(choose(SelectorKind::LowestLoad, &nodes, 2, "", &mut rng()), Ok(2));
        let busy = [node("f", "", 99, 100), d];
        assert_eq!(
            choose(SelectorKind::PowerOfTwo, &busy, 2, "", &mut rng()),
            Err(NoNode::AllBusy(2))
        );
        assert_eq!(
            choose(SelectorKind::Region, &[], 2, "", &mut rng()),
            Err(NoNode::NoneAlive)
        );
    }

    #[test]
    fn region_prefers_its_own_and_falls_back_to_any() {
        let nodes = [
            node("a", "us", 0, 100),
            node("b", "eu", 60, 100),
            node("c", "eu", 40, 100),
        ];
        assert_eq!(choose(SelectorKind::Region, &nodes, 2, "eu", &mut rng()), Ok(2));
        assert_eq!(choose(SelectorKind::Region, &nodes, 2, "ap", &mut rng()), Ok(0));
        let eu_full = [node("a", "us", 0, 100), node("b", "eu", 100, 100)];
        assert_eq!(choose(SelectorKind::Region, &eu_full, 2, "eu", &mut rng()), Ok(0));
    }

    #[test]
    fn power_of_two_never_takes_the_heaviest_of_three() {
        let nodes = [node("a", "", 10, 100), node("b", "", 50, 100), node("c", "", 90, 100)];
        let mut r = rng();
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[choose(SelectorKind::PowerOfTwo, &nodes, 2, "", &mut r).expect("a node")] += 1;
        }
        assert_eq!(seen[2], 0, "{seen:?}");
        assert!(seen[0] > seen[1] && seen[1] > 0, "{seen:?}");
    }

    proptest! {
        /// Placing rooms one after another, each added to its node's load, keeps every node within one room
        /// of the others under either load-driven selector.
        #[test]
        fn repeated_placement_stays_even(n in 2usize..8, rooms in 1u64..200, seed in 0u64..1000) {
            let mut nodes: Vec<NodeInfo> = (0..n).map(|i| node(&format!("n{i}"), "", 0, 10_000)).collect();
            let mut r = StdRng::seed_from_u64(seed);
            for _ in 0..rooms {
                let i = choose(SelectorKind::LowestLoad, &nodes, 2, "", &mut r).expect("a node");
                nodes[i].load.participants += 2;
                nodes[i].load.rooms += 1;
            }
            let max = nodes.iter().map(|x| x.load.rooms).max().unwrap_or(0);
            let min = nodes.iter().map(|x| x.load.rooms).min().unwrap_or(0);
            prop_assert!(max - min <= 1, "{:?}", nodes.iter().map(|x| x.load.rooms).collect::<Vec<_>>());
        }

        #[test]
        fn a_chosen_node_always_takes_the_room(loads in proptest::collection::vec(0u64..120, 1..10), seed in 0u64..100) {
            let nodes: Vec<NodeInfo> = loads.iter().enumerate().map(|(i, &p)| node(&format!("n{i}"), "", p, 100)).collect();
            let mut r = StdRng::seed_from_u64(seed);
            for kind in [SelectorKind::LowestLoad, SelectorKind::PowerOfTwo, SelectorKind::Region] {
                match choose(kind, &nodes, 2, "", &mut r) {
                    Ok(i) => prop_assert!(nodes[i].takes(2)),
                    Err(_) => prop_assert!(nodes.iter().all(|x| !x.takes(2))),
                }
            }
        }
    }
}
