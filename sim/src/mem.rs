//! Memory measurement: a counting global allocator a binary can install, with the process's
//! resident set size as the fallback.
//!
//! A library cannot install a global allocator for its users, so the counter is a type the
//! binary (a test, an example, the CLI) names:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: hdht_sim::mem::CountingAlloc = hdht_sim::mem::CountingAlloc;
//! ```
//!
//! [`live_bytes`] then reports the bytes currently allocated; without it, it reports the
//! resident set size from `/proc/self/status` (Linux), which is coarser (pages, allocator
//! caches) but still shows the order of magnitude.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting live bytes.
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to `System`; the counters are side effects only.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
            add(new_size);
        }
        p
    }
}

fn add(n: usize) {
    INSTALLED.store(true, Ordering::Relaxed);
    let live = LIVE.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

/// How a figure was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemSource {
    /// Heap bytes from [`CountingAlloc`].
    Heap,
    /// Resident set size of the process.
    Rss,
    /// Neither is available.
    None,
}

impl MemSource {
    /// "heap", "rss" or "none".
    pub fn name(self) -> &'static str {
        match self {
            MemSource::Heap => "heap",
            MemSource::Rss => "rss",
            MemSource::None => "none",
        }
    }
}

/// Current memory use in bytes and how it was measured.
pub fn live_bytes() -> (u64, MemSource) {
    if INSTALLED.load(Ordering::Relaxed) {
        return (LIVE.load(Ordering::Relaxed), MemSource::Heap);
    }
    match rss_bytes() {
        Some(b) => (b, MemSource::Rss),
        None => (0, MemSource::None),
    }
}

/// The highest live heap figure seen (0 without [`CountingAlloc`]).
pub fn peak_heap_bytes() -> u64 {
    PEAK.load(Ordering::Relaxed)
}

/// Resident set size from `/proc/self/status`.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
