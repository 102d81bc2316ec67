//! The event queue: a 4-ary min-heap ordered by `(time, lane, sequence)`.
//!
//! Among events due at the same instant, a lower lane runs first; within a lane the sequence
//! number (the insertion order) decides, so events run in the order they were scheduled — the
//! heap's own tie-breaking never shows through, and a run is a function of its seed alone.
//! Host timers ([`EventQueue::push_timer`]) break ties by host instead: which of two hosts'
//! timers due at one instant runs first then does not depend on when each host last asked
//! for its deadline (an app that sleeps through idle periods, asking late, runs the same).

use hdht_core::Instant;

/// Which events of one instant run first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Lane {
    /// Datagram arrivals: all of an instant's run before its timers (the drivers read every
    /// ready datagram before a due timer).
    Arrival,
    /// Timers (the engine queues them with [`EventQueue::push_timer`]).
    #[cfg_attr(not(test), allow(dead_code))]
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

impl<T> Entry<T> {
    /// The order of events: time, then lane, then sequence number (unique, so the order is
    /// total and any correct priority queue pops the same sequence).
    fn key(&self) -> (Instant, u64) {
        (self.at, self.order)
    }
}

/// Children per heap node. A 4-ary heap is half as deep as a binary one and a node's children
/// share two cache lines, so a pop (the sift down through the whole depth) misses the cache
/// about half as often once the queue outgrows it.
const ARITY: usize = 4;

/// A deterministic priority queue of timed items: a 4-ary min-heap on `(time, lane, sequence)`.
pub(crate) struct EventQueue<T> {
    heap: Vec<Entry<T>>,
    seq: u64,
}

impl<T> EventQueue<T> {
    pub(crate) fn new() -> Self {
        EventQueue {
            heap: Vec::new(),
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
        self.sift_up(self.heap.len() - 1);
    }

    /// Queues host `host`'s timer at `at`, in the timer lane; of the timers due at one instant
    /// the lower host runs first (see the module docs). A host has one live timer, so the key
    /// `(at, host)` is unique among live entries (a superseded one may share it; it pops stale).
    pub(crate) fn push_timer(&mut self, at: Instant, host: u32, item: T) {
        self.heap.push(Entry {
            at,
            order: LANE_BIT | u64::from(host),
            item,
        });
        self.sift_up(self.heap.len() - 1);
    }

    pub(crate) fn peek_time(&self) -> Option<Instant> {
        self.heap.first().map(|e| e.at)
    }

    pub(crate) fn pop(&mut self) -> Option<(Instant, T)> {
        let last = self.heap.pop()?;
        let top = if self.heap.is_empty() {
            last
        } else {
            let top = std::mem::replace(&mut self.heap[0], last);
            self.sift_down(0);
            top
        };
        Some((top.at, top.item))
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Bytes the heap holds (its capacity).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.heap.capacity() * std::mem::size_of::<Entry<T>>()
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if self.heap[i].key() >= self.heap[parent].key() {
                break;
            }
            self.heap.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let first = i * ARITY + 1;
            if first >= n {
                return;
            }
            let mut least = first;
            for c in first + 1..(first + ARITY).min(n) {
                if self.heap[c].key() < self.heap[least].key() {
                    least = c;
                }
            }
            if self.heap[least].key() >= self.heap[i].key() {
                return;
            }
            self.heap.swap(i, least);
            i = least;
        }
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
    fn pops_in_time_lane_sequence_order_like_a_sort() {
        // A fixed pseudo-random stream of pushes interleaved with pops, against a sorted model.
        let mut q = EventQueue::new();
        let mut model: Vec<(Instant, u64, u32)> = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut popped = Vec::new();
        let mut expected = Vec::new();
        for n in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = Instant::from_millis(x % 50);
            let lane = if x & (1 << 40) == 0 {
                Lane::Arrival
            } else {
                Lane::Timer
            };
            q.push(at, lane, n);
            let lane_bit = if lane == Lane::Timer { LANE_BIT } else { 0 };
            model.push((at, lane_bit | u64::from(n + 1), n));
            if x % 3 == 0 {
                popped.push(q.pop().map(|p| p.1));
                model.sort();
                expected.push(Some(model.remove(0).2));
            }
        }
        while let Some((_, n)) = q.pop() {
            popped.push(Some(n));
        }
        model.sort();
        expected.extend(model.iter().map(|m| Some(m.2)));
        assert_eq!(popped, expected);
    }

    #[test]
    fn timers_of_one_instant_run_by_host_whenever_queued() {
        let mut q = EventQueue::new();
        q.push_timer(Instant::from_millis(5), 7, "host 7");
        q.push(Instant::from_millis(5), Lane::Arrival, "arrival");
        q.push_timer(Instant::from_millis(5), 2, "host 2");
        q.push_timer(Instant::from_millis(4), 9, "host 9 earlier");
        let order: Vec<&str> = std::iter::from_fn(|| q.pop().map(|x| x.1)).collect();
        assert_eq!(order, ["host 9 earlier", "arrival", "host 2", "host 7"]);
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
