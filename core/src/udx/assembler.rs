//! Out-of-order packets held above `rcv.nxt`, keyed by extended (64-bit) sequence number.
//!
//! Each held packet is one entry (libudx keeps a tree of SACK runs; the SACK encoding is the
//! same). The byte total is tracked so the stream can bound it by its receive window.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// A held packet.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its stream bytes.
    pub data: Vec<u8>,
    /// Whether it carried END.
    pub end: bool,
}

/// Reorder buffer.
#[derive(Debug, Clone, Default)]
pub struct Assembler {
    held: BTreeMap<u64, Segment>,
    bytes: usize,
}

impl Assembler {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hold a packet; false if that seq is already held (duplicate).
    pub fn insert(&mut self, seq: u64, data: &[u8], end: bool) -> bool {
        if self.held.contains_key(&seq) {
            return false;
        }
        self.bytes += data.len();
        self.held.insert(
            seq,
            Segment {
                data: data.to_vec(),
                end,
            },
        );
        true
    }

    /// Take the packet at `seq` if it is the lowest held.
    pub fn pop(&mut self, seq: u64) -> Option<Segment> {
        let entry = self.held.first_entry()?;
        if *entry.key() != seq {
            return None;
        }
        let seg = entry.remove();
        self.bytes -= seg.data.len();
        Some(seg)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether `seq` is held.
    pub fn contains(&self, seq: u64) -> bool {
        self.held.contains_key(&seq)
    }

    /// Drop packets at or beyond `seq` (after the peer's END nothing further is valid).
    pub fn truncate_from(&mut self, seq: u64) {
        let tail = self.held.split_off(&seq);
        for s in tail.values() {
            self.bytes -= s.data.len();
        }
    }

    /// Held runs `[start, end)` in ascending order, adjacent packets merged.
    pub fn runs(&self) -> Runs<'_> {
        Runs {
            iter: self.held.keys().peekable(),
        }
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.held.clear();
        self.bytes = 0;
    }
}

/// Iterator over held runs.
#[derive(Debug)]
pub struct Runs<'a> {
    iter: core::iter::Peekable<alloc::collections::btree_map::Keys<'a, u64, Segment>>,
}

impl Iterator for Runs<'_> {
    type Item = (u64, u64);
    fn next(&mut self) -> Option<(u64, u64)> {
        let start = *self.iter.next()?;
        let mut end = start + 1;
        while self.iter.peek() == Some(&&end) {
            self.iter.next();
            end += 1;
        }
        Some((start, end))
    }
}
