//! Which generation of a two-generation cache an entry is in.

/// Which part of a cache holds an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Generation {
    /// The current generation (`_latest` in xache, `_fresh` in record-cache).
    Fresh,
    /// The previous generation (`_oldest` / `_stale`), dropped at the next rotation.
    Stale,
    /// xache's retained map, never rotated.
    Retained,
}
