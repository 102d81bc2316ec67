//! The k-bucket routing table (kademlia-routing-table 1.0.6) fused with the recency list
//! (time-ordered-set 2.0.1) that dht-rpc keeps beside it.
//!
//! Layout (compact, because a simulator holds thousands of tables in one process):
//! - a slab of [`NodeEntry`] slots addressed by `u16`, with a free list threaded through the
//!   unused slots;
//! - the recency list as an intrusive doubly linked list through the slots (oldest → latest);
//! - only the non-empty rows, in ascending row order: which exist is a 256-bit set inside the
//!   table (a row's position is the number of rows before it, a popcount), the rows themselves each a fixed-capacity inline
//!   array of at most k slot indices sorted by id, with a 4-byte key per node (the id's bytes
//!   where the row's nodes start to differ), so that searching a row reads the row alone and
//!   touches a slot only to confirm the match.
//!
//! Lookups compute the row index from the id, find the row's position from the bit set without
//! touching memory, then bisect the row's keys. Nothing here indexes out of bounds or
//! panics.

use alloc::vec::Vec;
use core::cmp::Ordering;
use core::net::SocketAddrV4;

use super::id::NodeId;

/// Bucket size and query width.
pub const K: usize = 20;

/// One routing-table record (dht-rpc's node object). Tick counters are maintenance-tick numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node's id, `H(addr)`.
    pub id: NodeId,
    /// Where to reach it.
    pub addr: SocketAddrV4,
    /// Our own address as this node reported it, if known.
    pub to: Option<SocketAddrV4>,
    /// Tick it was inserted.
    pub added: u32,
    /// Last tick we sent it something or heard from it.
    pub pinged: u32,
    /// Last tick we heard from it.
    pub seen: u32,
    /// Tick its `to` last fed the NAT sampler (0 = never).
    pub sampled: u32,
    /// Down hints received about it (saturating; 2 bytes keep an entry at 64).
    pub down_hints: u16,
}

/// What [`RoutingTable::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// A new node was inserted (and appended at the latest end of the recency list).
    Inserted,
    /// A node with this id was present; its record was replaced (recency unchanged).
    Updated,
    /// The node's row holds k nodes already; nothing changed.
    Full,
}

/// A slot index: a table holds at most 256 rows of k = 20 nodes (5,120 < 2^16), so 2 bytes
/// address every slot and the recency links and rows take half the room of `u32`s.
type Ix = u16;

/// "No slot" marker for the intrusive links.
const NIL: Ix = Ix::MAX;

/// The number of rows (bits in an id).
const ROWS: usize = 256;

/// A slab slot: an entry plus its recency links, or a free slot (then `next` links the free
/// list).
#[derive(Debug, Clone)]
struct Slot {
    entry: Option<NodeEntry>,
    prev: Ix,
    next: Ix,
}

/// A non-empty row: the slot indices of its nodes sorted by id ascending, inline (a row
/// never holds more than k), with each node's search key.
#[derive(Debug, Clone)]
struct Row {
    len: u8,
    /// `row_key` of each node's id, in the same order as `nodes`.
    keys: [u32; K],
    nodes: [Ix; K],
}

/// A row's search key for an id: the 4 bytes from the one holding the row's first distinct
/// bit. Ids in row `index` share their first `index` bits, so the bytes before are equal and
/// keys order like the ids (equal keys are told apart by the full ids).
fn row_key(index: usize, id: &NodeId) -> u32 {
    let at = (index / 8).min(28);
    let b = id.as_bytes();
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

impl Row {
    fn empty() -> Self {
        Row {
            len: 0,
            keys: [0; K],
            nodes: [0; K],
        }
    }

    fn nodes(&self) -> &[Ix] {
        self.nodes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Where `id` (with row key `key`) is, or would go, in this row.
    fn search(&self, slots: &[Slot], key: u32, id: &NodeId) -> Result<usize, usize> {
        let keys = self.keys.get(..self.len()).unwrap_or(&[]);
        let mut pos = keys.partition_point(|&k| k < key);
        // Equal keys (rare: 32 equal bits past the shared prefix) are ordered by the full id.
        while keys.get(pos) == Some(&key) {
            let slot = self.nodes.get(pos).copied().unwrap_or(NIL);
            match slots
                .get(slot as usize)
                .and_then(|s| s.entry.as_ref())
                .map_or(Ordering::Less, |e| e.id.cmp(id))
            {
                Ordering::Less => pos += 1,
                Ordering::Equal => return Ok(pos),
                Ordering::Greater => break,
            }
        }
        Err(pos)
    }

    /// Inserts at `pos`, unless the row is full.
    fn insert(&mut self, pos: usize, key: u32, slot: Ix) -> bool {
        let len = self.len();
        if len >= K || pos > len {
            return false;
        }
        if let (Some(k), Some(n)) = (self.keys.get_mut(pos..=len), self.nodes.get_mut(pos..=len)) {
            k.rotate_right(1);
            n.rotate_right(1);
            if let (Some(k0), Some(n0)) = (k.first_mut(), n.first_mut()) {
                *k0 = key;
                *n0 = slot;
            }
        }
        self.len += 1;
        true
    }

    /// Removes the node at `pos`, returning its slot.
    fn remove(&mut self, pos: usize) -> Option<Ix> {
        let len = self.len();
        if pos >= len {
            return None;
        }
        let slot = self.nodes.get(pos).copied()?;
        if let (Some(k), Some(n)) = (self.keys.get_mut(pos..len), self.nodes.get_mut(pos..len)) {
            k.rotate_left(1);
            n.rotate_left(1);
        }
        self.len -= 1;
        Some(slot)
    }
}

/// The routing table: 256 lazily created rows of at most k nodes sorted by id, plus a
/// recency list over all entries (oldest → latest).
///
/// Rows that become empty are dropped (the reference keeps them); this is not observable through
/// this API. [`RoutingTable::add`] does not refuse the table's own id (the kademlia table puts it
/// in row 255); dht-rpc's node layer refuses it before calling `add`.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    id: NodeId,
    slots: Vec<Slot>,
    /// Head of the free-slot list.
    free: Ix,
    /// Oldest end of the recency list.
    oldest: Ix,
    /// Latest end of the recency list.
    latest: Ix,
    len: usize,
    /// Which rows are non-empty: bit `i % 64` of word `i / 64` for row `i`.
    row_bits: RowBits,
    /// The non-empty rows, in ascending row order.
    rows: Vec<Row>,
}

impl RoutingTable {
    /// An empty table for `id`.
    pub fn new(id: NodeId) -> Self {
        RoutingTable {
            id,
            slots: Vec::new(),
            free: NIL,
            oldest: NIL,
            latest: NIL,
            len: 0,
            row_bits: RowBits::default(),
            rows: Vec::new(),
        }
    }

    /// The table's own id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The number of nodes in the table (and in the recency list).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table holds no node.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The row an id belongs to: the number of leading bits it shares with the table id (255 for
    /// the table id itself).
    pub fn row_index(&self, id: &NodeId) -> usize {
        self.id.row_index(id)
    }

    /// True if a node with this id is in the table.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.find(id).is_some()
    }

    /// The node with this id.
    pub fn get(&self, id: &NodeId) -> Option<&NodeEntry> {
        let slot = self.find(id)?;
        self.entry_at(slot)
    }

    /// The node with this id, mutably. Callers must not change `id` (it decides the node's row
    /// and its position in the row); everything else may be updated freely.
    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut NodeEntry> {
        let slot = self.find(id)?;
        self.slots
            .get_mut(slot as usize)
            .and_then(|s| s.entry.as_mut())
    }

    /// Adds a node (kademlia-routing-table `add`). A new node is inserted into its row in id
    /// order and appended at the latest end of the recency list; a node with a known id replaces
    /// the stored record in place; a full row rejects the node.
    pub fn add(&mut self, entry: NodeEntry) -> AddOutcome {
        let row_index = self.row_index(&entry.id);
        let key = row_key(row_index, &entry.id);
        let row_pos = self.row_pos_or_insert(row_index);
        let Some(row) = self.rows.get(row_pos) else {
            return AddOutcome::Full;
        };
        match row.search(&self.slots, key, &entry.id) {
            Ok(pos) => {
                let slot = row.nodes().get(pos).copied().unwrap_or(NIL);
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    s.entry = Some(entry);
                }
                AddOutcome::Updated
            }
            Err(pos) => {
                if row.len() >= K {
                    return AddOutcome::Full;
                }
                let slot = self.alloc(entry);
                self.link_latest(slot);
                self.len += 1;
                if let Some(row) = self.rows.get_mut(row_pos) {
                    row.insert(pos, key, slot);
                }
                AddOutcome::Inserted
            }
        }
    }

    /// Removes the node with this id from its row and from the recency list.
    pub fn remove(&mut self, id: &NodeId) -> Option<NodeEntry> {
        let row_index = self.row_index(id);
        let row_pos = self.row_pos(row_index)?;
        let row = self.rows.get_mut(row_pos)?;
        let pos = row.search(&self.slots, row_key(row_index, id), id).ok()?;
        let slot = row.remove(pos)?;
        if row.len() == 0 {
            self.rows.remove(row_pos);
            self.row_bits.clear(row_index);
        }
        self.unlink(slot);
        self.len = self.len.saturating_sub(1);
        self.release(slot)
    }

    /// Moves the node with this id to the latest end of the recency list (time-ordered-set
    /// re-add). Does nothing if the id is not in the table.
    pub fn touch(&mut self, id: &NodeId) {
        if let Some(slot) = self.find(id) {
            if self.latest != slot {
                self.unlink(slot);
                self.link_latest(slot);
            }
        }
    }

    /// `touch` and `get_mut` with one search: moves the node with this id to the latest end of
    /// the recency list and returns it (callers must not change `id`).
    pub fn touch_mut(&mut self, id: &NodeId) -> Option<&mut NodeEntry> {
        let slot = self.find(id)?;
        if self.latest != slot {
            self.unlink(slot);
            self.link_latest(slot);
        }
        self.slots
            .get_mut(slot as usize)
            .and_then(|s| s.entry.as_mut())
    }

    /// All nodes in the reference `closest` order for `target`: row `d` (the target's row), then
    /// rows `d-1 … 0`, then `d+1 … 255`, each row id-ascending. Take the first n for
    /// `closest(target, n)`.
    pub fn closest<'a>(&'a self, target: &NodeId) -> impl Iterator<Item = &'a NodeEntry> + 'a {
        let d = self.row_index(target);
        let split = self.row_bits.count_below(d + 1);
        let (low, high) = self.rows.split_at(split.min(self.rows.len()));
        low.iter()
            .rev()
            .chain(high.iter())
            .flat_map(move |r| r.nodes().iter().filter_map(move |&s| self.entry_at(s)))
    }

    /// The reference `toArray()`: `closest(own id, ∞)`, i.e. rows 255 down to 0.
    pub fn to_array(&self) -> impl Iterator<Item = &NodeEntry> + '_ {
        self.rows
            .iter()
            .rev()
            .flat_map(move |r| r.nodes().iter().filter_map(move |&s| self.entry_at(s)))
    }

    /// The `index`-th node walking the rows in ascending row order, each id-ascending (what
    /// `random()` picks with a uniform index in `[0, len)`).
    pub fn nth(&self, index: usize) -> Option<&NodeEntry> {
        let mut n = index;
        for row in &self.rows {
            if let Some(&slot) = row.nodes().get(n) {
                return self.entry_at(slot);
            }
            n -= row.len();
        }
        None
    }

    /// The nodes of row `index`, id-ascending (empty for a row that does not exist or an index ≥
    /// 256).
    pub fn row(
        &self,
        index: usize,
    ) -> impl ExactSizeIterator<Item = &NodeEntry> + DoubleEndedIterator + Clone + '_ {
        let nodes: &[Ix] = if index < ROWS {
            self.row_pos(index)
                .and_then(|p| self.rows.get(p))
                .map_or(&[][..], |r| r.nodes())
        } else {
            &[]
        };
        RowIter {
            table: self,
            nodes: nodes.iter(),
        }
    }

    /// The number of nodes in row `index`.
    pub fn row_len(&self, index: usize) -> usize {
        self.row(index).len()
    }

    /// The least recently added or touched node.
    pub fn oldest(&self) -> Option<&NodeEntry> {
        self.entry_at(self.oldest)
    }

    /// The most recently added or touched node.
    pub fn latest(&self) -> Option<&NodeEntry> {
        self.entry_at(self.latest)
    }

    /// The recency list from the oldest node to the latest.
    pub fn oldest_first(&self) -> impl Iterator<Item = &NodeEntry> + '_ {
        core::iter::successors(self.slots.get(self.oldest as usize), move |s| {
            self.slots.get(s.next as usize)
        })
        .take(self.len)
        .filter_map(|s| s.entry.as_ref())
    }

    /// The recency list from the latest node to the oldest.
    pub fn latest_first(&self) -> impl Iterator<Item = &NodeEntry> + '_ {
        core::iter::successors(self.slots.get(self.latest as usize), move |s| {
            self.slots.get(s.prev as usize)
        })
        .take(self.len)
        .filter_map(|s| s.entry.as_ref())
    }

    /// Switches the table to `new_id` (dht-rpc `_updateNetworkState`): every entry is re-added,
    /// in the old table's `toArray()` order, to fresh rows for the new id. An entry whose id
    /// equals `new_id`, and every entry whose new row is already full, is removed from the table
    /// and from the recency list; those are returned in `toArray()` order. The recency order of
    /// the kept entries is unchanged.
    ///
    /// Note: the reference skips the entry equal to `new_id` without removing it from its recency
    /// list (a dangling list member); this table drops and returns it instead.
    pub fn rebuild(&mut self, new_id: NodeId) -> Vec<NodeEntry> {
        let order: Vec<Ix> = self
            .rows
            .iter()
            .rev()
            .flat_map(|r| r.nodes().iter().copied())
            .collect();
        self.id = new_id;
        self.rows = Vec::new();
        self.row_bits = RowBits::default();
        let mut dropped = Vec::new();
        for slot in order {
            let id = match self.entry_at(slot) {
                Some(e) => e.id,
                None => continue,
            };
            if id != new_id && self.place(slot, &id) {
                continue;
            }
            self.unlink(slot);
            self.len = self.len.saturating_sub(1);
            if let Some(e) = self.release(slot) {
                dropped.push(e);
            }
        }
        self.shrink_slab();
        dropped
    }

    // ---------------------------------------------------------------------------------------
    // internals

    fn entry_at(&self, slot: Ix) -> Option<&NodeEntry> {
        self.slots.get(slot as usize).and_then(|s| s.entry.as_ref())
    }

    /// The position of row `row_index` in `rows`, if the row exists.
    fn row_pos(&self, row_index: usize) -> Option<usize> {
        self.row_bits
            .contains(row_index)
            .then(|| self.row_bits.count_below(row_index))
    }

    /// The position of row `row_index` in `rows`, creating the row if absent (rows are created
    /// lazily; an id's row index is always < 256).
    fn row_pos_or_insert(&mut self, row_index: usize) -> usize {
        let row_index = row_index.min(ROWS - 1);
        let p = self.row_bits.count_below(row_index);
        if self.row_bits.contains(row_index) {
            p
        } else {
            // Rows are few and created once: grow by one, not by doubling (rows are ~170 B).
            if self.rows.len() == self.rows.capacity() {
                self.rows.reserve_exact(1);
            }
            self.rows.insert(p.min(self.rows.len()), Row::empty());
            self.row_bits.set(row_index);
            p
        }
    }

    /// The slot of the node with this id.
    fn find(&self, id: &NodeId) -> Option<Ix> {
        let row_index = self.row_index(id);
        let row = self.rows.get(self.row_pos(row_index)?)?;
        let pos = row.search(&self.slots, row_key(row_index, id), id).ok()?;
        row.nodes().get(pos).copied()
    }

    /// Puts an existing (already linked) slot into its row for the current id. Returns false if
    /// the row is full (or, defensively, already holds the id).
    fn place(&mut self, slot: Ix, id: &NodeId) -> bool {
        let row_index = self.row_index(id);
        let key = row_key(row_index, id);
        let row_pos = self.row_pos_or_insert(row_index);
        let slots = &self.slots;
        let Some(row) = self.rows.get_mut(row_pos) else {
            return false;
        };
        match row.search(slots, key, id) {
            Ok(_) => false,
            Err(pos) => row.insert(pos, key, slot),
        }
    }

    fn alloc(&mut self, entry: NodeEntry) -> Ix {
        let free = self.free;
        if let Some(s) = self.slots.get_mut(free as usize) {
            self.free = s.next;
            s.entry = Some(entry);
            s.prev = NIL;
            s.next = NIL;
            return free;
        }
        let slot = Ix::try_from(self.slots.len()).unwrap_or(NIL);
        if self.slots.len() == self.slots.capacity() {
            // Grow by ~12% instead of doubling: tables are long-lived and there are many (a
            // table of a few hundred nodes reallocates a few dozen times in its life).
            self.slots.reserve_exact((self.slots.len() / 8).max(8));
        }
        self.slots.push(Slot {
            entry: Some(entry),
            prev: NIL,
            next: NIL,
        });
        slot
    }

    /// Frees a slot (already unlinked from the recency list) and returns its entry.
    fn release(&mut self, slot: Ix) -> Option<NodeEntry> {
        let free = self.free;
        let s = self.slots.get_mut(slot as usize)?;
        let entry = s.entry.take();
        s.prev = NIL;
        s.next = free;
        self.free = slot;
        entry
    }

    /// Drops trailing free slots when most of the slab is unused (keeps memory bounded after a
    /// table shrinks).
    fn shrink_slab(&mut self) {
        if self.slots.len() <= 2 * self.len + 8 {
            return;
        }
        while matches!(self.slots.last(), Some(s) if s.entry.is_none()) {
            self.slots.pop();
        }
        // Rebuild the free list over what remains (lowest index first, deterministic).
        self.free = NIL;
        for i in (0..self.slots.len()).rev() {
            if let Some(s) = self.slots.get_mut(i) {
                if s.entry.is_none() {
                    s.next = self.free;
                    s.prev = NIL;
                    self.free = Ix::try_from(i).unwrap_or(NIL);
                }
            }
        }
        self.slots.shrink_to_fit();
    }

    fn link_latest(&mut self, slot: Ix) {
        let latest = self.latest;
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.prev = latest;
            s.next = NIL;
        } else {
            return;
        }
        match self.slots.get_mut(latest as usize) {
            Some(l) => l.next = slot,
            None => self.oldest = slot,
        }
        self.latest = slot;
    }

    fn unlink(&mut self, slot: Ix) {
        let (prev, next) = match self.slots.get_mut(slot as usize) {
            Some(s) => {
                let pn = (s.prev, s.next);
                s.prev = NIL;
                s.next = NIL;
                pn
            }
            None => return,
        };
        match self.slots.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => {
                if self.oldest == slot {
                    self.oldest = next;
                }
            }
        }
        match self.slots.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => {
                if self.latest == slot {
                    self.latest = prev;
                }
            }
        }
    }
}

/// A set of row indices (0–255) as four words.
#[derive(Debug, Clone, Copy, Default)]
struct RowBits([u64; 4]);

impl RowBits {
    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    fn clear(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// The number of members below `i` (all of them for `i` ≥ 256).
    fn count_below(&self, i: usize) -> usize {
        let mut n = 0;
        for (k, w) in self.0.iter().enumerate() {
            let lo = k * 64;
            if i >= lo + 64 {
                n += w.count_ones() as usize;
            } else if i > lo {
                n += (w & ((1u64 << (i - lo)) - 1)).count_ones() as usize;
            }
        }
        n
    }
}

/// Iterator over one row's entries.
#[derive(Clone)]
struct RowIter<'a> {
    table: &'a RoutingTable,
    nodes: core::slice::Iter<'a, Ix>,
}

impl<'a> Iterator for RowIter<'a> {
    type Item = &'a NodeEntry;

    fn next(&mut self) -> Option<&'a NodeEntry> {
        let slot = *self.nodes.next()?;
        self.table.entry_at(slot)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.nodes.size_hint()
    }
}

impl DoubleEndedIterator for RowIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let slot = *self.nodes.next_back()?;
        self.table.entry_at(slot)
    }
}

impl ExactSizeIterator for RowIter<'_> {}

#[cfg(test)]
mod tests {
    use super::RowBits;

    #[test]
    fn row_bits_count_members_below_an_index() {
        let mut b = RowBits::default();
        for i in [0, 5, 63, 64, 127, 200, 255] {
            b.set(i);
        }
        assert!(b.contains(63) && b.contains(64) && b.contains(255) && !b.contains(1));
        assert_eq!(b.count_below(0), 0);
        assert_eq!(b.count_below(5), 1);
        assert_eq!(b.count_below(64), 3);
        assert_eq!(b.count_below(65), 4);
        assert_eq!(b.count_below(128), 5);
        assert_eq!(b.count_below(255), 6);
        assert_eq!(b.count_below(256), 7);
        b.clear(64);
        assert!(!b.contains(64));
        assert_eq!(b.count_below(128), 4);
    }

    #[test]
    fn slots_stay_compact() {
        // A large simulation holds hundreds of these per node: 64-byte entries, 68-byte slots.
        assert_eq!(core::mem::size_of::<super::NodeEntry>(), 64);
        assert_eq!(core::mem::size_of::<super::Slot>(), 68);
    }
}
