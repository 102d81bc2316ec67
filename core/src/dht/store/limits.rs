//! The stores' sizes, ages and byte budget (hyperdht's `defaultCacheOpts`, and ours).

use core::time::Duration;

/// hyperdht's default `maxSize` (`defaultMaxSize`).
pub const DEFAULT_MAX_SIZE: usize = 65536;
/// hyperdht's default `maxAge`: 20 minutes (`defaultMaxAge`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(20 * 60);
/// The `maxAge` of mutables and immutables when none was given: 48 hours.
pub const DEFAULT_STORAGE_MAX_AGE: Duration = Duration::from_secs(48 * 60 * 60);
/// The cap on the relay-address cache's size (`Math.min(maxSize, 512)`).
pub const RELAY_ADDRESSES_MAX_SIZE: usize = 512;

/// The bytes one stored entry is counted as beyond its value's own bytes: its 32-byte key and
/// its share of the maps and lists holding it (an estimate of the B-tree and `Vec` overhead;
/// see the per-entry costs on [`Xache`](super::Xache) and [`RecordCache`](super::RecordCache)).
pub const ENTRY_OVERHEAD: usize = 96;

/// hyperdht-rs's default node-wide byte budget for the record stores (announce records,
/// refresh chains, bumps, mutable and immutable values together): 64 MiB. The reference has
/// no byte bound (only entry counts: 65,536 per store, so up to ~270 MB of mutable and
/// immutable values at one datagram each).
pub const DEFAULT_STORE_BUDGET: usize = 64 << 20;

/// What a node's record stores hold, in bytes (each entry counted as its bytes plus
/// [`ENTRY_OVERHEAD`]), against the node's budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreBytes {
    /// Announce records.
    pub records: usize,
    /// Bumps.
    pub bumps: usize,
    /// Refresh-chain entries.
    pub refreshes: usize,
    /// Mutable records.
    pub mutables: usize,
    /// Immutable values.
    pub immutables: usize,
    /// The budget they share ([`NodeStoreLimits::budget`]).
    pub budget: usize,
}

impl StoreBytes {
    /// Bytes held by all stores together (never more than [`budget`](Self::budget) after a
    /// storage command).
    pub fn total(&self) -> usize {
        self.records + self.bumps + self.refreshes + self.mutables + self.immutables
    }
}
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
    /// Announce records ([`RecordCache`](super::RecordCache)).
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
    /// The node-wide byte budget of the record stores (announce records, bumps, refresh
    /// chains, mutable and immutable values together, each entry counted as its bytes plus
    /// [`ENTRY_OVERHEAD`]); [`DEFAULT_STORE_BUDGET`] unless configured. When a store would pass
    /// it, the store holding the most bytes drops its older generation (the rotation its entry
    /// limit would trigger) until the total fits again.
    pub budget: usize,
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
            budget: DEFAULT_STORE_BUDGET,
        }
    }
}

impl Default for NodeStoreLimits {
    /// The limits for a node created without `maxSize` or `maxAge`.
    fn default() -> Self {
        StoreLimits::for_node(None, None)
    }
}
