//! [`RecordCache`]: the two-generation multi-map of `record-cache` 1.2.0
//! (`record-cache/index.js`), used by hyperdht for announce records.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::mem;
use core::time::Duration;

use rand_core::RngCore;

use super::generation::Generation;
use super::limits::ENTRY_OVERHEAD;
use super::timer::RotationTimer;
use crate::time::Instant;

/// A topic (the announce target).
type Topic = [u8; 32];
/// A record's identity within its topic: the announcer's public key.
type PublicKey = [u8; 32];

/// `RecordSet`: the records of one topic in one generation. `list` is an array with swap-removal
/// and `map` gives each public key's index in it, exactly as in the reference, so that the
/// sampling in [`RecordCache::get`] sees the same array order the reference would (apart from
/// the reference's reordering by earlier samples; see there).
#[derive(Debug, Clone, Default)]
struct RecordSet {
    list: Vec<(PublicKey, Vec<u8>)>,
    map: BTreeMap<PublicKey, usize>,
}

impl RecordSet {
    /// `RecordSet.add`: appends unless the key is present; a present entry keeps its old bytes.
    fn add(&mut self, public_key: PublicKey, record: Vec<u8>) -> bool {
        if self.map.contains_key(&public_key) {
            return false;
        }
        self.map.insert(public_key, self.list.len());
        self.list.push((public_key, record));
        true
    }

    /// `RecordSet.remove`: swaps the entry with the last one and pops it.
    fn remove(&mut self, public_key: &PublicKey) -> bool {
        let Some(index) = self.map.remove(public_key) else {
            return false;
        };
        self.list.swap_remove(index);
        if let Some((moved, _)) = self.list.get(index) {
            self.map.insert(*moved, index);
        }
        true
    }
}

/// `RecordStore`: topic → [`RecordSet`], with a total count. Empty topics are dropped.
#[derive(Debug, Clone, Default)]
struct RecordStore {
    records: BTreeMap<Topic, RecordSet>,
    size: usize,
    /// Bytes by [`record_bytes`].
    bytes: usize,
}

/// What one record costs: its bytes plus [`super::ENTRY_OVERHEAD`].
fn record_bytes(record: &[u8]) -> usize {
    record.len() + ENTRY_OVERHEAD
}

impl RecordStore {
    fn add(&mut self, topic: Topic, public_key: PublicKey, record: Vec<u8>) -> bool {
        let weight = record_bytes(&record);
        if self
            .records
            .entry(topic)
            .or_default()
            .add(public_key, record)
        {
            self.size += 1;
            self.bytes += weight;
            true
        } else {
            false
        }
    }

    fn remove(&mut self, topic: &Topic, public_key: &PublicKey) -> bool {
        let Some(set) = self.records.get_mut(topic) else {
            return false;
        };
        let Some(weight) = set
            .map
            .get(public_key)
            .map(|&i| record_bytes(&set.list[i].1))
        else {
            return false;
        };
        set.remove(public_key);
        self.size -= 1;
        self.bytes -= weight;
        if set.map.is_empty() {
            self.records.remove(topic);
        }
        true
    }

    fn list(&self, topic: &Topic) -> &[(PublicKey, Vec<u8>)] {
        self.records
            .get(topic)
            .map_or(&[], |set| set.list.as_slice())
    }

    fn find(&self, topic: &Topic, public_key: &PublicKey) -> Option<&[u8]> {
        let set = self.records.get(topic)?;
        let index = *set.map.get(public_key)?;
        Some(set.list[index].1.as_slice())
    }
}

/// A sparse view of an index permutation: position → element, identity where untouched. Lets
/// [`RecordCache::get`] run the reference's in-place swap procedure in `O(n log n)` for `n`
/// draws without copying or mutating the (possibly huge) per-topic list.
#[derive(Default)]
struct SparsePermutation(BTreeMap<usize, usize>);

impl SparsePermutation {
    fn at(&self, pos: usize) -> usize {
        self.0.get(&pos).copied().unwrap_or(pos)
    }

    fn swap(&mut self, a: usize, b: usize) {
        let (va, vb) = (self.at(a), self.at(b));
        self.0.insert(a, vb);
        self.0.insert(b, va);
    }
}

/// `Math.floor(Math.random() * len)` with the injected RNG: a 53-bit uniform fraction (as
/// `Math.random` has) times `len`, computed exactly in integers. `len` must be non-zero.
fn random_index<R: RngCore + ?Sized>(rng: &mut R, len: usize) -> usize {
    let fraction = rng.next_u64() >> 11; // 53 random bits
    let index = (u128::from(fraction) * len as u128) >> 53;
    // index < len because fraction < 2^53; the min is only a guard.
    (index as usize).min(len - 1)
}

/// Announce records: topic → { public key → record bytes }, in two generations.
///
/// Semantics follow `record-cache/index.js`:
///
/// * [`add`](Self::add) removes the entry from the *stale* generation, then inserts it into
///   *fresh* **only if it is not already there** (a fresh entry keeps its old bytes). If that
///   insertion makes *fresh* hold more than `max_size` records, the cache rotates.
/// * Reads never refresh an entry.
/// * A rotation drops *stale*, makes *fresh* the new *stale* and starts an empty *fresh*. The
///   timer ticks every `ceil(2/3 · max_age)` ms from construction and rotates unless a rotation
///   already happened since the previous tick, so an entry that is not re-added lives between
///   one and two ticks.
/// * There is no per-topic limit; `max_size` counts records over all topics.
///
/// A record lives in at most one generation.
///
/// **Bounded memory.** *fresh* holds at most `max_size` records and *stale* at most
/// `max_size + 1` (the generation that overflowed), so at most `2 · max_size + 1` records in
/// all, whatever the sequence of calls. Each record costs its bytes' heap allocation plus about
/// 32 + 24 bytes in its topic's list and 32 + 8 in its topic's index map (B-tree nodes add up to
/// roughly as much again in the worst case), and each topic with records about 32 + 72 bytes
/// more; for hyperdht's records (a `peer` encoding, at most 32 + 1 + 3·6 bytes) that is a few
/// hundred bytes per record.
#[derive(Debug, Clone)]
pub struct RecordCache {
    max_size: usize,
    max_age: Duration,
    fresh: RecordStore,
    stale: RecordStore,
    timer: RotationTimer,
}

impl RecordCache {
    /// A cache whose rotation timer starts at `now`. A zero `max_age` starts no timer, as in the
    /// reference.
    ///
    /// Unlike the reference (`opts.maxSize || Infinity`), a `max_size` of 0 is taken literally
    /// (every insertion rotates) rather than meaning "unbounded"; hyperdht never passes 0.
    pub fn new(max_size: usize, max_age: Duration, now: Instant) -> Self {
        RecordCache {
            max_size,
            max_age,
            fresh: RecordStore::default(),
            stale: RecordStore::default(),
            timer: RotationTimer::new(max_age, now),
        }
    }

    /// The size threshold this cache was created with.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The maximum age this cache was created with.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// `add(topic, publicKey, record)`: removes the entry from the stale generation, then
    /// inserts it into the fresh one unless it is already there — an entry already fresh keeps
    /// its **old** bytes; an entry that was stale is stored with the new bytes. A new fresh
    /// insertion that makes the fresh generation exceed `max_size` rotates the cache.
    pub fn add(&mut self, topic: [u8; 32], public_key: [u8; 32], record: Vec<u8>) {
        self.stale.remove(&topic, &public_key);
        if self.fresh.add(topic, public_key, record) && self.fresh.size > self.max_size {
            self.rotate();
        }
    }

    /// Removes the record of `public_key` under `topic` from both generations.
    pub fn remove(&mut self, topic: &[u8; 32], public_key: &[u8; 32]) {
        self.fresh.remove(topic, public_key);
        self.stale.remove(topic, public_key);
    }

    /// A uniformly random sample, without replacement, of up to `max` records stored under
    /// `topic`, drawn from the fresh and stale generations together. `max == 0` means all of
    /// them (in random order), as in the reference (`if (n > len || !n) n = len`).
    ///
    /// The selection procedure is record-cache's: with `a` the fresh list and `b` the stale list
    /// of the topic, each draw picks `j = floor(random() · (aLen + bLen))`; `j < aLen` takes
    /// `a[j]` and swaps it with `a[--aLen]`, otherwise `b[j − aLen]` is taken and swapped with
    /// `b[--bLen]`. `random()` is 53 bits from `rng.next_u64()`. Unlike the reference, the swaps
    /// are applied to a private view, not to the stored lists (so this takes `&self`); this
    /// changes which records a given random stream selects in later calls, not the distribution.
    ///
    /// Returns borrowed record bytes; each call draws exactly `min(max, n)` numbers from `rng`
    /// (`n` records if `max == 0`).
    pub fn get<R: RngCore + ?Sized>(
        &self,
        topic: &[u8; 32],
        max: usize,
        rng: &mut R,
    ) -> Vec<&[u8]> {
        let a = self.fresh.list(topic);
        let b = self.stale.list(topic);
        let (mut a_len, mut b_len) = (a.len(), b.len());
        let len = a_len + b_len;
        let n = if max == 0 || max > len { len } else { max };

        let mut a_view = SparsePermutation::default();
        let mut b_view = SparsePermutation::default();
        let mut result = Vec::with_capacity(n);
        for _ in 0..n {
            let j = random_index(rng, a_len + b_len);
            if j < a_len {
                result.push(a[a_view.at(j)].1.as_slice());
                a_len -= 1;
                a_view.swap(j, a_len);
            } else {
                let j = j - a_len;
                result.push(b[b_view.at(j)].1.as_slice());
                b_len -= 1;
                b_view.swap(j, b_len);
            }
        }
        result
    }

    /// The stored bytes of one record, without sampling.
    pub fn peek(&self, topic: &[u8; 32], public_key: &[u8; 32]) -> Option<&[u8]> {
        self.fresh
            .find(topic, public_key)
            .or_else(|| self.stale.find(topic, public_key))
    }

    /// Which generation holds the record, if any ([`Generation::Fresh`] or
    /// [`Generation::Stale`]).
    pub fn generation(&self, topic: &[u8; 32], public_key: &[u8; 32]) -> Option<Generation> {
        if self.fresh.find(topic, public_key).is_some() {
            Some(Generation::Fresh)
        } else if self.stale.find(topic, public_key).is_some() {
            Some(Generation::Stale)
        } else {
            None
        }
    }

    /// Records stored under `topic` in both generations.
    pub fn topic_len(&self, topic: &[u8; 32]) -> usize {
        self.fresh.list(topic).len() + self.stale.list(topic).len()
    }

    /// Records in both generations (`size`).
    pub fn len(&self) -> usize {
        self.fresh.size + self.stale.size
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held in both generations: each record's bytes plus
    /// [`ENTRY_OVERHEAD`](super::ENTRY_OVERHEAD).
    pub fn bytes(&self) -> usize {
        self.fresh.bytes + self.stale.bytes
    }

    /// Bytes held in the fresh and the stale generation.
    pub fn generation_bytes(&self) -> (usize, usize) {
        (self.fresh.bytes, self.stale.bytes)
    }

    /// Makes room: one rotation, exactly as when the fresh generation overflows (the stale
    /// generation is dropped, the fresh one becomes stale). Returns the bytes freed. An owner
    /// enforcing a byte budget calls this.
    pub fn evict_generation(&mut self) -> usize {
        let freed = self.stale.bytes;
        self.rotate();
        freed
    }

    /// Records in the fresh and the stale generation.
    pub fn generation_lens(&self) -> (usize, usize) {
        (self.fresh.size, self.stale.size)
    }

    /// Runs the rotation timer: at or after [`poll_timeout`](Self::poll_timeout) the cache
    /// rotates unless a rotation already happened since the previous tick. At most one tick runs
    /// per call and the next tick is one interval after `now`. Earlier calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer.on_timeout(now) {
            // `_gcAuto` clears `_gced` after its `_gc`, so a timer rotation leaves it unset.
            self.stale = mem::take(&mut self.fresh);
        }
    }

    /// The next timer tick. A cache with a zero `max_age` has no timer and reports
    /// `Instant::from_micros(u64::MAX)`.
    pub fn poll_timeout(&self) -> Instant {
        self.timer.deadline()
    }

    /// Removes every record: two rotations, as the reference's `clear` does (so the next tick
    /// skips its rotation).
    pub fn clear(&mut self) {
        self.rotate();
        self.rotate();
    }

    /// `_gc`: drop the stale generation, age the fresh one.
    fn rotate(&mut self) {
        self.timer.note_rotation();
        self.stale = mem::take(&mut self.fresh);
    }
}
