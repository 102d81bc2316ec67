//! Two-generation caches with the reference's limits and expiry: [`Xache`] (`xache` 1.3.0) for
//! bumps, refreshes, mutables, immutables and the router, and [`RecordCache`] (`record-cache`
//! 1.2.0) for announce records. [`StoreLimits`] gives the sizes and ages hyperdht 6.34 uses
//! (`defaultCacheOpts` in `hyperdht/index.js`).
//!
//! Both caches are driven like the rest of the core: they read no clock (the rotation timer is
//! advanced with `handle_timeout(now)` and reports its next tick through `poll_timeout`) and draw
//! randomness only from an injected RNG.

mod generation;
mod limits;
mod record_cache;
mod timer;
mod xache;

pub use generation::Generation;
pub use limits::{
    NodeStoreLimits, StoreBytes, StoreLimits, ValueStoreUsage, DEFAULT_MAX_AGE, DEFAULT_MAX_SIZE,
    DEFAULT_STORAGE_MAX_AGE, DEFAULT_STORE_BUDGET, ENTRY_OVERHEAD, RELAY_ADDRESSES_MAX_SIZE,
};
pub use record_cache::RecordCache;
pub use xache::Xache;
