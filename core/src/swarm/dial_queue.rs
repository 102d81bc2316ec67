//! The dial queue (`shuffled-priority-queue`): peers by priority; the next one to dial is a
//! random peer of the highest non-empty priority, so that equal peers are tried in no fixed
//! order and a swarm of many peers does not dial in lock step.

use alloc::vec::Vec;

use rand_core::RngCore;

use super::peer::Priority;

/// Public keys waiting to be dialed, one bucket per [`Priority`].
#[derive(Debug, Clone, Default)]
pub struct DialQueue {
    buckets: [Vec<[u8; 32]>; Priority::COUNT],
}

impl DialQueue {
    /// An empty queue.
    pub fn new() -> Self {
        DialQueue::default()
    }

    /// Peers waiting.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// Nobody waits.
    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(Vec::is_empty)
    }

    /// Adds a peer at `priority` (the caller keeps a peer in the queue at most once).
    pub fn push(&mut self, key: [u8; 32], priority: Priority) {
        self.buckets[priority as usize].push(key);
    }

    /// Takes a random peer of the highest non-empty priority.
    pub fn shift(&mut self, rng: &mut impl RngCore) -> Option<[u8; 32]> {
        let bucket = self.buckets.iter_mut().rev().find(|b| !b.is_empty())?;
        let i = (rng.next_u64() % bucket.len() as u64) as usize;
        Some(bucket.swap_remove(i))
    }

    /// Empties the queue (suspend).
    pub fn clear(&mut self) {
        for b in &mut self.buckets {
            b.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    #[test]
    fn highest_priority_first_random_within() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut q = DialQueue::new();
        for i in 0..10u8 {
            q.push([i; 32], Priority::Normal);
        }
        q.push([100; 32], Priority::VeryHigh);
        q.push([101; 32], Priority::Low);
        assert_eq!(q.shift(&mut rng), Some([100; 32]));
        let mut normal = Vec::new();
        for _ in 0..10 {
            normal.push(q.shift(&mut rng).unwrap()[0]);
        }
        assert_ne!(normal, (0..10).collect::<Vec<u8>>(), "shuffled, not FIFO");
        normal.sort_unstable();
        assert_eq!(normal, (0..10).collect::<Vec<u8>>());
        assert_eq!(q.shift(&mut rng), Some([101; 32]));
        assert!(q.is_empty());
        assert_eq!(q.shift(&mut rng), None);
    }
}
