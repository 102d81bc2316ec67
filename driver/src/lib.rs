//! Everything the tokio and smol drivers share, written once: the clock that turns OS time
//! into the core's [`Instant`](hdht_core::Instant), node options and bootstrap-address parsing,
//! the locked core with its wakers, and the user-facing futures and streams.
//!
//! A runtime crate only adds what is runtime-specific: binding UDP sockets, DNS, one I/O task
//! that races the sockets against the core's next timeout, and spawning.
//!
//! Apps use `hdht-tokio` or `hdht-smol`, which re-export what they need from here (the list is
//! [`api`]). Cargo feature `tokio` (off by default; `hdht-tokio` turns it on) implements tokio's
//! `AsyncRead`/`AsyncWrite` for [`Connection`] beside the `futures-io` ones, so `hdht-smol`
//! builds no tokio.

#![deny(missing_docs)]

pub mod api;
mod bootstrap;
mod clock;
mod conn_slots;
mod connection;
mod error;
mod firewall;
pub mod flush;
mod handle;
pub mod interfaces;
mod net;
mod node;
mod op_options;
mod options;
pub mod pool;
mod random;
mod relay;
mod shared;
mod swarm;
mod swarm_state;
pub mod udp;

pub use bootstrap::{parse_bootstrap, BootstrapEntry, BootstrapParseError, DEFAULT_BOOTSTRAP};
pub use clock::Clock;
pub use connection::{Closed, Connecting, Connection, RelayPathWatch, Server, ServerClosed};
pub use error::DhtError;
pub use firewall::{Firewall, FirewallFuture, FirewallRequest, MAX_PENDING_FIREWALL_DECISIONS};
pub use handle::{
    build_node, BoundNode, DhtHandle, FindPeerStream, ImmutablePut, LookupStream, MutablePut,
    OpFinish,
};
pub use hdht_core::rpc::QueryOptions;
pub use net::{bind_sockets, local_v4, needs_dns, port_candidates, resolve_bootstrap, PORT_RANGE};
pub use node::Node;
pub use op_options::{AnnounceOptions, MutableGetOptions, MutablePutOptions};
pub use options::DhtOptions;
pub use random::RandomKeyPair;
pub use relay::BlindRelay;
pub use shared::{
    IncomingRequests, IoWakeup, OpFuture, OpReply, OpStream, PendingRequest, QueryStream, Ready,
    ReceivedRequest, Shared,
};
pub use swarm::{Discovery, SwarmConnections, SwarmFlush, SwarmHandle, SwarmOptions};
