//! Everything the tokio and smol drivers share, written once: the clock that turns OS time
//! into the core's [`Instant`](hdht_core::Instant), node options and bootstrap-address parsing,
//! the locked core with its wakers, and the user-facing futures and streams.
//!
//! A runtime crate only adds what is runtime-specific: binding UDP sockets, DNS, one I/O task
//! that races the sockets against the core's next timeout, and spawning.

mod bootstrap;
mod clock;
mod connection;
pub mod flush;
mod handle;
pub mod interfaces;
mod net;
mod options;
pub mod pool;
mod shared;
pub mod udp;

pub use bootstrap::{parse_bootstrap, BootstrapEntry, BootstrapParseError, DEFAULT_BOOTSTRAP};
pub use clock::Clock;
pub use connection::{Closed, Connecting, Connection, Firewall, Server};
pub use handle::{
    build_node, port_candidates, BoundNode, DhtHandle, FindPeerStream, ImmutablePut, LookupStream,
    MutablePut, PORT_RANGE,
};
pub use net::{bind_sockets, local_v4, needs_dns, resolve_bootstrap};
pub use options::DhtOptions;
pub use shared::{
    IncomingRequests, IoWakeup, OpFuture, OpReply, OpStream, PendingRequest, QueryStream, Ready,
    ReceivedRequest, Shared,
};

/// The core node type every driver runs.
pub type Node = hdht_core::dht::DhtNode<rand_chacha::ChaCha20Rng>;

/// Errors of the user-facing API.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// An OS-level I/O failure (binding, sending).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A bootstrap entry could not be parsed or resolved.
    #[error("bad bootstrap entry: {0}")]
    Bootstrap(#[from] BootstrapParseError),
    /// The node was destroyed.
    #[error("node destroyed")]
    Destroyed,
    /// Bootstrapping ended without an answer from any node: every bootstrap node in `tried`
    /// was unreachable or silent. The node keeps running alone and asks them again on its
    /// periodic refresh (every 40 s while its routing table is empty).
    #[error("no bootstrap node answered (tried {})", list_addrs(tried))]
    NoBootstrapReply {
        /// The resolved bootstrap addresses the node queried.
        tried: Vec<std::net::SocketAddrV4>,
    },
    /// A request failed.
    #[error("request failed: {0}")]
    Request(#[from] hdht_core::rpc::RequestError),
    /// A query failed.
    #[error("query failed: {0}")]
    Query(#[from] hdht_core::rpc::QueryError),
    /// A HyperDHT operation failed.
    #[error("{0}")]
    Op(#[from] hdht_core::dht::OpError),
}

/// `a, b, c` for an error message.
fn list_addrs(addrs: &[std::net::SocketAddrV4]) -> String {
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    list.join(", ")
}
