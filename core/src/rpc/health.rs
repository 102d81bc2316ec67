//! dht-rpc lib/health.js. STUB: interface fixed; implementation in progress.

/// A change of the node's network health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// Responses are arriving again.
    Online,
    /// More than half the requests time out.
    Degraded,
    /// Nothing answers.
    Offline,
}

/// Health from per-tick (responses, timeouts) snapshots.
#[derive(Debug, Clone, Default)]
pub struct Health {}

#[allow(unused_variables, missing_docs)]
impl Health {
    pub fn new() -> Self { unimplemented!() }
    pub fn update(&mut self, total_responses: u64, total_timeouts: u64) -> Option<HealthChange> { unimplemented!() }
    pub fn online(&self) -> bool { unimplemented!() }
    pub fn degraded(&self) -> bool { unimplemented!() }
    pub fn reset(&mut self) { unimplemented!() }
}
