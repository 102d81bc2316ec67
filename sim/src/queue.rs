//! The event queue: a binary min-heap ordered by `(time, lane, sequence)`.
//!
//! Among events due at the same instant, a lower lane runs first; within a lane the sequence
//! number (the insertion order) decides, so events run in the order they were scheduled — the
//! heap's own tie-breaking never shows through, and a run is a function of its seed alone.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use hdht_core::Instant;

/// Which events of one instant run first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Lane {
    /// Datagram arrivals: all of an instant's run before its timers (the drivers read every
    /// ready datagram before a due timer).
    Arrival,
    /// Timers.
    Timer,
}

/// The lane in the top bit of the order word, the sequence number below: `(lane, seq)`
/// compares as one `u64`, and an entry with an 8-byte item is 24 bytes, not 32 (the heap is
/// the simulator's largest hot structure; a smaller entry means fewer cache misses per pop).
const LANE_BIT: u64 = 1 << 63;

struct Entry<T> {
    at: Instant,
    /// `LANE_BIT` for [`Lane::Timer`], or'ed with the sequence number (< 2^63).
    order: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Entry<T> {
    /// Reversed: `BinaryHeap` is a max-heap, we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.order).cmp(&(self.at, self.order))
    }
}

/// A deterministic priority queue of timed items.
pub(crate) struct EventQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

impl<T> EventQueue<T> {
    pub(crate) fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Queues `item` at `at`; of the items due at one instant, arrivals pop before timers.
    pub(crate) fn push(&mut self, at: Instant, lane: Lane, item: T) {
        self.seq += 1;
        let lane_bit = match lane {
            Lane::Arrival => 0,
            Lane::Timer => LANE_BIT,
        };
        self.heap.push(Entry {
            at,
            order: lane_bit | (self.seq & !LANE_BIT),
            item,
        });
    }

    pub(crate) fn peek_time(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    pub(crate) fn pop(&mut self) -> Option<(Instant, T)> {
        self.heap.pop().map(|e| (e.at, e.item))
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Bytes the heap holds (its capacity).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.heap.capacity() * std::mem::size_of::<Entry<T>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_fifo_among_equal_times() {
        let mut q = EventQueue::new();
        q.push(Instant::from_millis(5), Lane::Arrival, "c");
        q.push(Instant::from_millis(1), Lane::Arrival, "a");
        q.push(Instant::from_millis(5), Lane::Arrival, "d");
        q.push(Instant::from_millis(1), Lane::Arrival, "b");
        let order: Vec<&str> = std::iter::from_fn(|| q.pop().map(|x| x.1)).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }

    #[test]
    fn an_entry_with_an_8_byte_item_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Entry<u64>>(), 24);
    }

    #[test]
    fn lower_lanes_first_among_equal_times() {
        let mut q = EventQueue::new();
        q.push(Instant::from_millis(5), Lane::Timer, "timer at 5");
        q.push(Instant::from_millis(1), Lane::Timer, "timer at 1");
        q.push(Instant::from_millis(5), Lane::Arrival, "arrival at 5");
        q.push(Instant::from_millis(3), Lane::Arrival, "arrival at 3");
        q.push(
            Instant::from_millis(5),
            Lane::Arrival,
            "arrival at 5, later",
        );
        let order: Vec<&str> = std::iter::from_fn(|| q.pop().map(|x| x.1)).collect();
        assert_eq!(
            order,
            [
                "timer at 1",
                "arrival at 3",
                "arrival at 5",
                "arrival at 5, later",
                "timer at 5"
            ]
        );
    }
}
