//! A delay line: holds items until their time, gives them back in time order, and equal times in insertion order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Items waiting for their delivery time: a binary heap ordered by time, then by a sequence number, so that items
/// due at the same time come out in the order they went in (a FIFO link often delivers several at one instant).
#[derive(Debug)]
pub struct DelayLine<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

impl<T> DelayLine<T> {
    /// An empty line.
    pub fn new() -> DelayLine<T> {
        DelayLine {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }

    /// An empty line with room for `capacity` items before it allocates.
    pub fn with_capacity(capacity: usize) -> DelayLine<T> {
        DelayLine {
            heap: BinaryHeap::with_capacity(capacity),
            next_seq: 0,
        }
    }

    /// Holds `item` until `at_ms` (which must not be NaN: a NaN time is never due).
    pub fn push(&mut self, at_ms: f64, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { at_ms, seq, item });
    }

    /// The earliest item due at or before `now_ms`, if any. Call it until it gives `None`.
    pub fn pop_due(&mut self, now_ms: f64) -> Option<T> {
        if self.heap.peek()?.at_ms > now_ms {
            return None;
        }
        self.heap.pop().map(|e| e.item)
    }

    /// When the earliest item is due, if any: the time to wake up at.
    pub fn next_due(&self) -> Option<f64> {
        self.heap.peek().map(|e| e.at_ms)
    }

    /// How many items are waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

impl<T> Default for DelayLine<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// One waiting item.
#[derive(Debug)]
struct Entry<T> {
    at_ms: f64,
    seq: u64,
    item: T,
}

impl<T> Ord for Entry<T> {
    /// Reversed, so that the max-heap gives the earliest time, then the lowest sequence number.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at_ms.total_cmp(&self.at_ms).then(other.seq.cmp(&self.seq))
    }
}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T> Eq for Entry<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    #[test]
    fn gives_items_when_due_in_order() {
        let mut line = DelayLine::new();
        assert_eq!(line.next_due(), None);
        assert_eq!(line.pop_due(1e9), None);
        line.push(30.0, "c");
        line.push(10.0, "a");
        line.push(20.0, "b1");
        line.push(20.0, "b2");
        assert_eq!((line.len(), line.next_due()), (4, Some(10.0)));
        assert_eq!(line.pop_due(9.9), None);
        assert_eq!(line.pop_due(10.0), Some("a"));
        assert_eq!(line.pop_due(25.0), Some("b1"));
        assert_eq!(line.pop_due(25.0), Some("b2"));
        assert_eq!(line.pop_due(25.0), None);
        assert_eq!(line.next_due(), Some(30.0));
        assert_eq!(line.pop_due(30.0), Some("c"));
        assert!(line.is_empty());
    }

    proptest! {
        #![proptest_config(Config { cases: 256, rng_seed: RngSeed::Fixed(7), ..Config::default() })]

        /// Popping everything gives the items sorted by time, equal times in insertion order.
        #[test]
        fn pops_sorted_and_stable(times in prop::collection::vec(0u8..20, 0..200)) {
            let mut line = DelayLine::with_capacity(times.len());
            for (i, t) in times.iter().enumerate() {
                line.push(f64::from(*t), i);
            }
            let mut expected: Vec<usize> = (0..times.len()).collect();
            expected.sort_by_key(|&i| times[i]); // a stable sort
            let mut got = Vec::new();
            while let Some(due) = line.next_due() {
                let item = line.pop_due(due).expect("due now");
                prop_assert_eq!(f64::from(times[item]), due);
                got.push(item);
            }
            prop_assert_eq!(got, expected);
        }
    }
}
