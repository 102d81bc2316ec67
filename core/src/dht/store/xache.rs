//! [`Xache`]: the two-generation key/value cache of `xache` 1.3.0 (`xache/index.js`, class
//! `MaxCache`), used by hyperdht for bumps, refreshes, mutables, immutables and the router's
//! forwards.

use alloc::collections::BTreeMap;
use core::mem;
use core::time::Duration;

use super::generation::Generation;
use super::timer::RotationTimer;
use crate::time::Instant;

/// A two-generation cache with a third, never-evicted "retained" map.
///
/// Semantics follow `xache/index.js`:
///
/// * [`set`](Self::set) writes into *latest* and removes the key from *oldest*; it is ignored
///   for a retained key. When *latest* then holds `max_size` entries or more, the cache rotates.
/// * [`get`](Self::get) of an entry in *oldest* moves it back to *latest* (reads keep entries
///   alive).
/// * A rotation drops *oldest*, makes *latest* the new *oldest* and starts an empty *latest*.
///   The timer ticks every `ceil(2/3 · max_age)` ms from construction and rotates unless a
///   rotation already happened since the previous tick. An entry that is neither set nor read
///   again therefore lives between one and two ticks.
/// * [`retain`](Self::retain) stores into the retained map, which rotations never touch.
///
/// A key lives in at most one of the three maps.
///
/// **Bounded memory.** After every call *latest* holds at most `max_size − 1` entries and
/// *oldest* at most `max_size`, so the two generations together hold fewer than `2 · max_size`
/// entries whatever the sequence of calls. (This needs one deliberate deviation from the
/// reference, in [`get`](Self::get): see there.) The retained map is not bounded by the cache;
/// hyperdht only retains the node's own listening servers.
///
/// **Per-entry cost.** Each entry costs `size_of::<K>() + size_of::<V>()` inline in a B-tree
/// node plus the node overhead (nodes hold up to 11 entries and are at least half full, so at
/// most about twice the inline size plus a pointer per entry in the worst case), plus whatever
/// heap memory `V` owns. For hyperdht's stores (`K = [u8; 32]`, `V = Vec<u8>` of at most one
/// datagram, 2048 bytes) that is under ~2.2 KiB per entry in the worst case.
#[derive(Debug, Clone)]
pub struct Xache<K: Ord + Clone, V> {
    max_size: usize,
    max_age: Duration,
    latest: BTreeMap<K, V>,
    oldest: BTreeMap<K, V>,
    retained: BTreeMap<K, V>,
    timer: RotationTimer,
    /// What one entry costs in bytes (see [`with_weigher`](Self::with_weigher)).
    weigh: fn(&K, &V) -> usize,
    /// Bytes of `latest`, `oldest` and `retained` by `weigh`.
    bytes: [usize; 3],
}

/// The weigher of a cache created with [`Xache::new`]: entries cost nothing.
fn weightless<K, V>(_: &K, _: &V) -> usize {
    0
}

const LATEST: usize = 0;
const OLDEST: usize = 1;
const RETAINED: usize = 2;

impl<K: Ord + Clone, V> Xache<K, V> {
    /// A cache whose rotation timer starts at `now`. A zero `max_age` starts no timer (entries
    /// then only leave by size-triggered rotation), as in the reference.
    pub fn new(max_size: usize, max_age: Duration, now: Instant) -> Self {
        Self::with_weigher(max_size, max_age, now, weightless)
    }

    /// A cache that also counts the bytes it holds: `weigh(key, value)` is what one entry costs
    /// (called once when it is stored and once when it leaves, so it must give the same answer
    /// both times). [`bytes`](Self::bytes) and [`generation_bytes`](Self::generation_bytes)
    /// report the sums; the cache itself never acts on them (a byte budget over several caches
    /// is the owner's, see `Records`).
    pub fn with_weigher(
        max_size: usize,
        max_age: Duration,
        now: Instant,
        weigh: fn(&K, &V) -> usize,
    ) -> Self {
        Xache {
            max_size,
            max_age,
            latest: BTreeMap::new(),
            oldest: BTreeMap::new(),
            retained: BTreeMap::new(),
            timer: RotationTimer::new(max_age, now),
            weigh,
            bytes: [0; 3],
        }
    }

    /// Bytes held in all three maps, by the weigher.
    pub fn bytes(&self) -> usize {
        self.bytes.iter().sum()
    }

    /// Bytes held in the latest, oldest and retained maps, by the weigher.
    pub fn generation_bytes(&self) -> (usize, usize, usize) {
        (self.bytes[LATEST], self.bytes[OLDEST], self.bytes[RETAINED])
    }

    fn map(&mut self, which: usize) -> &mut BTreeMap<K, V> {
        match which {
            LATEST => &mut self.latest,
            OLDEST => &mut self.oldest,
            _ => &mut self.retained,
        }
    }

    /// Removes `key` from one map, keeping the byte count.
    fn take(&mut self, which: usize, key: &K) -> Option<(K, V)> {
        let (k, v) = self.map(which).remove_entry(key)?;
        self.bytes[which] -= (self.weigh)(&k, &v);
        Some((k, v))
    }

    /// Inserts into one map, keeping the byte count.
    fn put(&mut self, which: usize, key: K, value: V) {
        let w = (self.weigh)(&key, &value);
        self.bytes[which] += w;
        if let Some(old) = self.map(which).insert(key.clone(), value) {
            self.bytes[which] -= (self.weigh)(&key, &old);
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

    /// The value stored under `key`, refreshing it: an entry found in the oldest generation is
    /// moved to the latest one (`xache` `get`). Retained entries are returned as they are.
    ///
    /// **Deviation from the reference.** `xache` moves the entry without checking the size, so
    /// *latest* can grow past `max_size` through reads, and the next size-triggered rotation then
    /// turns that oversized map into *oldest*. Reading every entry and setting one new key,
    /// repeatedly, grows the cache without bound. Here a read that brings *latest* to `max_size`
    /// entries rotates exactly as a [`set`](Self::set) would (the value is then found in the new
    /// *oldest*). This only differs from the reference when *latest* is full.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        if self.latest.contains_key(key) {
            return self.latest.get(key);
        }
        if let Some((k, v)) = self.take(OLDEST, key) {
            self.put(LATEST, k, v);
            if self.latest.len() >= self.max_size {
                self.rotate();
                return self.oldest.get(key);
            }
            return self.latest.get(key);
        }
        self.retained.get(key)
    }

    /// The value stored under `key`, without refreshing it.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.latest
            .get(key)
            .or_else(|| self.oldest.get(key))
            .or_else(|| self.retained.get(key))
    }

    /// Whether `key` is stored in any generation (`has`), without refreshing it.
    pub fn contains_key(&self, key: &K) -> bool {
        self.generation(key).is_some()
    }

    /// Which map holds `key`, if any.
    pub fn generation(&self, key: &K) -> Option<Generation> {
        if self.latest.contains_key(key) {
            Some(Generation::Fresh)
        } else if self.oldest.contains_key(key) {
            Some(Generation::Stale)
        } else if self.retained.contains_key(key) {
            Some(Generation::Retained)
        } else {
            None
        }
    }

    /// Stores `value` under `key` in the latest generation, replacing any value and removing the
    /// key from the oldest generation. Ignored if the key is retained. If the latest generation
    /// then holds `max_size` entries or more, the cache rotates (`xache` `set`).
    pub fn set(&mut self, key: K, value: V) {
        if self.retained.contains_key(&key) {
            return;
        }
        self.take(OLDEST, &key);
        self.put(LATEST, key, value);
        if self.latest.len() >= self.max_size {
            self.rotate();
        }
    }

    /// Stores `value` under `key` in the retained map, which rotations never evict, replacing any
    /// retained value and removing the key from the two generations (`xache` `retain`). Only
    /// [`delete`](Self::delete) and [`clear`](Self::clear) remove a retained entry.
    pub fn retain(&mut self, key: K, value: V) {
        if self.take(LATEST, &key).is_none() {
            self.take(OLDEST, &key);
        }
        self.put(RETAINED, key, value);
    }

    /// Removes `key` from whichever map holds it (latest, oldest or retained) and returns its
    /// value.
    pub fn delete(&mut self, key: &K) -> Option<V> {
        self.take(LATEST, key)
            .or_else(|| self.take(OLDEST, key))
            .or_else(|| self.take(RETAINED, key))
            .map(|(_, v)| v)
    }

    /// Entries in all three maps (`size`).
    pub fn len(&self) -> usize {
        self.latest.len() + self.oldest.len() + self.retained.len()
    }

    /// Whether the cache holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries in the latest, oldest and retained maps.
    pub fn generation_lens(&self) -> (usize, usize, usize) {
        (self.latest.len(), self.oldest.len(), self.retained.len())
    }

    /// Runs the rotation timer: at or after [`poll_timeout`](Self::poll_timeout) the cache
    /// rotates unless a rotation already happened since the previous tick. At most one tick runs
    /// per call and the next tick is one interval after `now` (Node's `setInterval` does not
    /// replay missed ticks either). Earlier calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer.on_timeout(now) {
            // `_gcAuto` clears `_gced` after its `_gc`, so a timer rotation leaves it unset.
            self.age();
        }
    }

    /// The next timer tick. A cache with a zero `max_age` has no timer and reports
    /// `Instant::from_micros(u64::MAX)`.
    pub fn poll_timeout(&self) -> Instant {
        self.timer.deadline()
    }

    /// Removes every entry, retained ones included, and makes the next tick skip its rotation
    /// (`xache` `clear` sets `_gced`).
    pub fn clear(&mut self) {
        self.timer.note_rotation();
        self.latest.clear();
        self.oldest.clear();
        self.retained.clear();
        self.bytes = [0; 3];
    }

    /// Iterates over all entries without refreshing them: latest, then oldest, then retained
    /// (the reference's iteration order of the maps), each in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.latest
            .iter()
            .chain(self.oldest.iter())
            .chain(self.retained.iter())
    }

    /// `_gc`: drop the oldest generation, age the latest one.
    fn rotate(&mut self) {
        self.timer.note_rotation();
        self.age();
    }

    /// Makes room: one rotation, exactly as when the latest generation reaches `max_size`
    /// (the oldest generation is dropped, the latest becomes the oldest). Returns the bytes
    /// freed (those of the dropped generation). An owner enforcing a byte budget calls this.
    pub fn evict_generation(&mut self) -> usize {
        let freed = self.bytes[OLDEST];
        self.rotate();
        freed
    }

    /// The latest generation becomes the oldest; the oldest is dropped.
    fn age(&mut self) {
        self.oldest = mem::take(&mut self.latest);
        self.bytes[OLDEST] = self.bytes[LATEST];
        self.bytes[LATEST] = 0;
    }
}
