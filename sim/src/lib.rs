//! `hdht-sim`: a deterministic discrete-event simulator that drives unmodified `hdht-core`
//! nodes over a modelled network — just another driver of the sans-IO core.
//!
//! One thread, one priority queue of `(time, sequence)` events, one seeded RNG, virtual time.
//! Every delivered datagram is folded into a trace hash, so two runs from the same seed can be
//! compared byte for byte.
//!
//! This is the engine's first cut: hosts on a flat network with latency, jitter and loss.
//! NAT boxes, partitions and churn build on the same event loop.

mod engine;

pub use engine::{HostId, LinkModel, Sim, SimNodeConfig};
