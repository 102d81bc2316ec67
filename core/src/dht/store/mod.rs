//! Two-generation caches with the reference's limits and expiry: [`Xache`] (`xache` 1.3.0) for
//! bumps, refreshes, mutables, immutables and the router, and [`RecordCache`] (`record-cache`
//! 1.2.0) for announce records. [`StoreLimits`] gives the sizes and ages hyperdht 6.34 uses
//! (`defaultCacheOpts` in `hyperdht/index.js`).
//!
//! Both caches are driven like the rest of the core: they read no clock (the rotation timer is
//! advanced with `handle_timeout(now)` and reports its next tick through `poll_timeout`) and draw
//! randomness only from an injected RNG.

mod record_cache;
mod timer;
mod xache;

use core::time::Duration;

pub use record_cache::RecordCache;
pub use xache::Xache;

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

/// hyperdht's default `maxSize` (`defaultMaxSize`).
pub const DEFAULT_MAX_SIZE: usize = 65536;
/// hyperdht's default `maxAge`: 20 minutes (`defaultMaxAge`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(20 * 60);
/// The `maxAge` of mutables and immutables when none was given: 48 hours.
pub const DEFAULT_STORAGE_MAX_AGE: Duration = Duration::from_secs(48 * 60 * 60);
/// The cap on the relay-address cache's size (`Math.min(maxSize, 512)`).
pub const RELAY_ADDRESSES_MAX_SIZE: usize = 512;

/// What a node's value stores hold: entries, and the bytes of the values (for mutables, of the
/// stored `{seq, value, signature}` records). With values limited to one datagram
/// ([`crate::dht::value_size`]), this stays within the entry limits × the largest value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValueStoreUsage {
    /// Immutable values stored.
    pub immutables: usize,
    /// Their bytes.
    pub immutable_bytes: usize,
    /// Mutable records stored.
    pub mutables: usize,
    /// Their bytes.
    pub mutable_bytes: usize,
}

/// The size and age limits of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// The size threshold: xache rotates when its latest generation reaches it, record-cache
    /// when its fresh generation exceeds it.
    pub max_size: usize,
    /// The maximum age. The rotation timer ticks every `ceil(2/3 · max_age)`; zero means no
    /// timer.
    pub max_age: Duration,
}

impl Default for StoreLimits {
    /// 65536 entries, 20 minutes.
    fn default() -> Self {
        StoreLimits {
            max_size: DEFAULT_MAX_SIZE,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// The limits of every cache a hyperdht node keeps, derived from the node's `maxSize` and
/// `maxAge` options by [`StoreLimits::for_node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStoreLimits {
    /// Announce records ([`RecordCache`]).
    pub records: StoreLimits,
    /// Per-topic bumps.
    pub bumps: StoreLimits,
    /// Refresh-chain entries.
    pub refreshes: StoreLimits,
    /// Mutable records: half the size, 48 h unless `maxAge` was given.
    pub mutables: StoreLimits,
    /// Immutable values: half the size, 48 h unless `maxAge` was given.
    pub immutables: StoreLimits,
    /// The router's forwards.
    pub router: StoreLimits,
    /// The client-side relay-address cache (`_relayAddressesCache`): at most 512 entries, no
    /// timer.
    pub relay_addresses: StoreLimits,
}

impl StoreLimits {
    /// The per-store limits of `defaultCacheOpts(opts)` for a node created with the options
    /// `maxSize` and `maxAge` (`None` when not given).
    ///
    /// As in the reference (`opts.maxSize || defaultMaxSize`), `Some(0)` and a zero duration
    /// count as "not given". Mutables and immutables get `max_size / 2` (rounded down) and 48 h
    /// unless a `max_age` was given explicitly, in which case they use it too.
    pub fn for_node(max_size: Option<usize>, max_age: Option<Duration>) -> NodeStoreLimits {
        let explicit_age = max_age.filter(|d| !d.is_zero());
        let max_size = max_size.filter(|&n| n != 0).unwrap_or(DEFAULT_MAX_SIZE);
        let base = StoreLimits {
            max_size,
            max_age: explicit_age.unwrap_or(DEFAULT_MAX_AGE),
        };
        let storage = StoreLimits {
            max_size: max_size / 2,
            max_age: explicit_age.unwrap_or(DEFAULT_STORAGE_MAX_AGE),
        };
        NodeStoreLimits {
            records: base,
            bumps: base,
            refreshes: base,
            mutables: storage,
            immutables: storage,
            router: base,
            relay_addresses: StoreLimits {
                max_size: max_size.min(RELAY_ADDRESSES_MAX_SIZE),
                max_age: Duration::ZERO,
            },
        }
    }
}

impl Default for NodeStoreLimits {
    /// The limits for a node created without `maxSize` or `maxAge`.
    fn default() -> Self {
        StoreLimits::for_node(None, None)
    }
}
