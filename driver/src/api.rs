//! Everything an application needs, in one flat list: `hdht-tokio` and `hdht-smol` re-export it
//! at their roots (beside their own `Dht`), so an app depends on one runtime crate and never on
//! `hdht-driver` or `hdht-core` directly. Written once here so the two runtimes cannot drift.
//!
//! What is left out is protocol machinery (codecs, the sans-IO node, Noise, UDX) that an app only
//! reaches for through the runtime crate's `core` re-export of `hdht-core`.

// The node and its options, errors and bootstrap list.
pub use crate::interfaces::local_addresses;
pub use crate::{
    parse_bootstrap, resolve_bootstrap, BootstrapEntry, BootstrapParseError, DhtError, DhtHandle,
    DhtOptions, DEFAULT_BOOTSTRAP,
};
// Connections and servers.
pub use crate::{
    Closed, Connecting, Connection, Firewall, FirewallFuture, FirewallRequest, Server,
    ServerClosed, MAX_PENDING_FIREWALL_DECISIONS,
};
pub use hdht_core::connect::ConnectError;
pub use hdht_core::dht::{ConnError, ConnectOptions, ServerOptions, TransportInfo};
// Blind relaying.
pub use crate::{BlindRelay, RelayPathWatch};
pub use hdht_core::dht::{RelayPath, RelayServiceStats};
pub use hdht_core::relay::{ForwardStats, RelayCallback, RelayLimits, RelaySelector, RelayStats};
// Keys and hashes.
pub use crate::RandomKeyPair;
pub use hdht_core::crypto::{hash, KeyPair};
// Records: lookup/announce, find-peer, immutable and mutable values.
pub use crate::{
    AnnounceOptions, FindPeerStream, ImmutablePut, LookupStream, MutableGetOptions, MutablePut,
    MutablePutOptions, OpFinish, QueryOptions,
};
pub use hdht_core::dht::messages::Peer;
pub use hdht_core::dht::{
    FindPeerReply, ImmutableValue, LookupReply, MutableValue, OpError, MAX_IMMUTABLE_VALUE,
    MAX_MUTABLE_VALUE, MAX_SEQ,
};
// The dht-rpc layer: node ids, queries, requests and custom commands.
pub use crate::{IncomingRequests, PendingRequest, QueryStream, ReceivedRequest};
pub use hdht_core::rpc::{
    NodeId, Persistence, QueryError, QueryReply, QueryResult, QuerySpec, ReplySpec, RequestError,
    RequestSpec, RpcEvent,
};
// Swarms: topics, discovery, one connection per peer.
pub use crate::{Discovery, SwarmConnections, SwarmFlush, SwarmHandle, SwarmOptions};
pub use hdht_core::swarm::{
    topic_from_slice, JoinOptions, PeerInfo, Priority, SwarmError, SwarmStats,
};
