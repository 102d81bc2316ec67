//! `hdht-sim`: a deterministic discrete-event simulator that drives unmodified `hdht-core`
//! nodes over a modelled network — just another driver of the sans-IO core.
//!
//! One thread, one priority queue of `(time, sequence)` events, one seeded RNG, virtual time
//! ([`engine`]). Hosts own numbered sockets and sit in address realms joined by NAT boxes that
//! follow RFC 4787 ([`network`], [`nat`]); links add delay, jitter, loss, duplication,
//! reordering and an MTU ([`link`]). Every delivered datagram is folded into a trace hash
//! ([`trace`]), so two runs from the same seed can be compared byte for byte. Scenarios
//! (bootstrap, lookups, churn, partitions) and their reports live in [`scenario`] — the entry
//! point of `hdht sim`.
//!
//! What runs on a host is any sans-IO [`App`]; dht-rpc's `RpcNode` is one ([`rpc`], with the
//! [`Sim`] alias), hyperdht's `DhtNode` another ([`dht`]: pool sockets opened at run time,
//! with the [`DhtSim`] alias); [`scenario::holepunch`] connects two of them across NAT presets.
//! [`mem`] measures memory per node, [`replay`] handles `HDHT_SIM_SEED`.

pub mod app;
pub mod dht;
pub mod engine;
mod fxhash;
pub mod link;
pub mod mem;
pub mod nat;
pub mod network;
mod queue;
pub mod replay;
pub mod rpc;
pub mod scenario;
pub mod swarm;
pub mod trace;

pub use app::{App, Datagram, SocketCommand};
pub use dht::{DhtHost, DhtNodeConfig, DhtSim};
pub use engine::{Engine, Handler, HostSetup, NetStats, Tap, TapKind, TapRecord};
pub use link::LinkModel;
pub use nat::{NatBox, NatConfig, NatPreset};
pub use network::{DropReason, HostId, NatId, NetError, Network, RealmId, SocketId};
pub use rpc::{Sim, SimNodeConfig, SERVER_PORT};
pub use swarm::{SwarmHost, SwarmSim};
pub use trace::TraceHash;
