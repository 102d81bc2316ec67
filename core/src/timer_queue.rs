//! A deadline queue over many timer owners (UDX streams, connections), so a node with
//! thousands of idle connections finds its next deadline and its expired owners without
//! walking all of them.
//!
//! Owners change their deadlines all the time (every packet moves an idle timeout), so the
//! queue is lazy: a mutable access [`touch`](TimerQueue::touch)es an owner (O(log n)), and the
//! next [`refresh`](TimerQueue::refresh) asks only the touched owners for their deadline and
//! queues it. A binary heap of `(deadline, key)` holds every queued deadline; an entry whose
//! deadline is no longer its owner's (`queued`) is stale and dropped when it reaches the top,
//! and the heap is rebuilt from `queued` when stale entries outnumber live ones. Ties order by
//! key: the queue is deterministic.

use alloc::collections::{BTreeMap, BTreeSet, BinaryHeap};
use alloc::vec::Vec;
use core::cmp::Reverse;

use crate::Instant;

/// Deadlines of owners keyed by `K`.
#[derive(Debug)]
pub(crate) struct TimerQueue<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    /// The deadline each owner is queued under.
    queued: BTreeMap<K, Instant>,
    /// Owners whose deadline may have changed since they were queued.
    dirty: BTreeSet<K>,
}

impl<K: Ord + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            queued: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    /// `key`'s deadline may have changed (or it is new, or gone).
    pub(crate) fn touch(&mut self, key: K) {
        self.dirty.insert(key);
    }

    /// Every owner may have changed.
    #[cfg(test)]
    pub(crate) fn touch_all(&mut self, keys: impl IntoIterator<Item = K>) {
        self.dirty.extend(keys);
    }

    /// Forgets `key` (its heap entries go stale).
    pub(crate) fn remove(&mut self, key: K) {
        self.queued.remove(&key);
        self.dirty.remove(&key);
    }

    /// Queues the touched owners' deadlines; `deadline(key)` is `None` for an owner without a
    /// timer (or one that is gone).
    pub(crate) fn refresh(&mut self, mut deadline: impl FnMut(K) -> Option<Instant>) {
        if self.dirty.is_empty() {
            return;
        }
        for key in core::mem::take(&mut self.dirty) {
            match deadline(key) {
                Some(at) => {
                    if self.queued.insert(key, at) != Some(at) {
                        self.heap.push(Reverse((at, key)));
                    }
                }
                None => {
                    self.queued.remove(&key);
                }
            }
        }
        if self.heap.len() > 2 * self.queued.len() + 64 {
            let live: Vec<Reverse<(Instant, K)>> = self
                .queued
                .iter()
                .map(|(k, at)| Reverse((*at, *k)))
                .collect();
            self.heap = BinaryHeap::from(live);
        }
    }

    fn drop_stale(&mut self) {
        while let Some(Reverse((at, key))) = self.heap.peek() {
            if self.queued.get(key) == Some(at) {
                return;
            }
            self.heap.pop();
        }
    }

    /// The earliest queued deadline (call [`refresh`](Self::refresh) first).
    pub(crate) fn next(&mut self) -> Option<Instant> {
        self.drop_stale();
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the owners whose deadline is at or before `now`, in key order;
    /// they count as touched (their next deadline is queued at the next refresh). Call
    /// [`refresh`](Self::refresh) first.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<K> {
        let due = self.take_due_untouched(now);
        self.dirty.extend(due.iter().copied());
        due
    }

    /// Like [`take_due`](Self::take_due), but the owners are not touched: they stay off the
    /// queue until the caller touches them.
    pub(crate) fn take_due_untouched(&mut self, now: Instant) -> Vec<K> {
        let mut due = Vec::new();
        loop {
            self.drop_stale();
            match self.heap.peek() {
                Some(Reverse((at, key))) if *at <= now => {
                    let key = *key;
                    self.heap.pop();
                    self.queued.remove(&key);
                    due.push(key);
                }
                _ => break,
            }
        }
        due.sort_unstable();
        due
    }

    /// Queued deadlines, stale heap entries included (for tests and sizing).
    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn earliest_and_due_in_key_order() {
        let mut q = TimerQueue::<u32>::default();
        let dl = |k: u32| Some(Instant::from_micros(u64::from(100 - k % 3)));
        q.touch_all([5, 1, 9, 4]);
        q.refresh(dl);
        assert_eq!(q.next(), Some(Instant::from_micros(98)));
        let due = q.take_due(Instant::from_micros(99));
        assert_eq!(due, vec![1, 4, 5]);
        // Taken owners are touched: a refresh queues them again.
        q.refresh(dl);
        assert_eq!(q.take_due(Instant::from_micros(100)), vec![1, 4, 5, 9]);
    }

    #[test]
    fn moved_and_removed_deadlines_go_stale() {
        let mut q = TimerQueue::<u32>::default();
        let mut at = BTreeMap::from([(1u32, 10u64), (2, 20)]);
        q.touch_all([1, 2]);
        q.refresh(|k| at.get(&k).copied().map(Instant::from_micros));
        at.insert(1, 30);
        q.touch(1);
        q.refresh(|k| at.get(&k).copied().map(Instant::from_micros));
        assert_eq!(q.next(), Some(Instant::from_micros(20)));
        q.remove(2);
        assert_eq!(q.next(), Some(Instant::from_micros(30)));
        at.remove(&1);
        q.touch(1);
        q.refresh(|k| at.get(&k).copied().map(Instant::from_micros));
        assert_eq!(q.next(), None);
    }

    #[test]
    fn stale_entries_are_compacted() {
        let mut q = TimerQueue::<u32>::default();
        for i in 0..10_000u64 {
            q.touch(7);
            q.refresh(|_| Some(Instant::from_micros(1_000_000 + i)));
        }
        assert!(q.heap_len() <= 2 + 64 + 1, "{}", q.heap_len());
        assert_eq!(q.next(), Some(Instant::from_micros(1_000_000 + 9_999)));
    }
}
