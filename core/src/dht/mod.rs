//! hyperdht 6.34 above dht-rpc: the top-level [`DhtNode`] and everything it owns.
//!
//! ```text
//! node.rs          DhtNode: the driving contract, routing of inputs, applying actions
//!   ├─ records.rs    storage commands (LOOKUP, ANNOUNCE, MUTABLE_*, …) over store/
//!   ├─ router.rs     where handshakes for a key go; stateless PEER_HANDSHAKE/HOLEPUNCH relaying
//!   ├─ ops.rs        client operations: query, then commits (lookup, announce, put, get, …)
//!   ├─ client/       a client's connect: find-peer, handshake, path choice; punch.rs: probe
//!   │                and punch rounds
//!   ├─ server/       a listening server: announcer.rs, handshake.rs (one per msg1, firewall,
//!   │                reply routes), holepunch.rs (the PEER_HOLEPUNCH handler)
//!   ├─ connection.rs open connections: a secret stream over a UDX stream, and the UDX demux
//!   └─ pool.rs       pool sockets for punchers and punched streams
//! env.rs  what a machine may use while it handles an input (RNG, pool, throttle, node facts)
//! event.rs  DhtEvent and ConnectEvent    ids.rs  ConnId, ServerId    addresses.rs  bogons, LAN
//! messages.rs, sign.rs  hyperdht encodings, signatures    store/  the bounded caches
//! value_size.rs  the largest values whose put and get fit the datagram ceiling
//! ```
//!
//! The connect-path machines (`client`, `server`, `connection`) do no I/O and never reach
//! back into the node: each `handle_*` method returns actions (send a request, relay, probe,
//! connect a stream, fail, emit an event) that the node applies in order. Imports run one way:
//! node → machines → the `connect`, `udx` and `secret_stream` layers.

mod addresses;
pub mod budget;
mod client;
mod connection;
mod env;
mod event;
mod ids;
pub mod messages;
mod node;
mod ops;
mod pool;
mod records;
mod router;
mod server;
pub mod sign;
pub mod store;
pub mod value_size;

pub use client::ConnectOptions;
pub use connection::{ConnError, ConnectionInfo, TransportInfo, CONNECTION_IDLE_TIMEOUT};
pub use event::{ConnectEvent, DhtEvent};
pub use ids::{ConnId, ServerId};
pub use node::{
    ConnectStats, DatagramOut, DhtConfig, DhtNode, RelayPath, RelayServiceStats, MAX_DATAGRAM,
};
pub use ops::{check_seq, MAX_SEQ};
pub use ops::{FindPeerReply, ImmutableValue, LookupReply, MutableValue, OpError, OpId, OpOutput};
pub use pool::{SocketCommand, MAX_POOL_SOCKETS};
pub use router::Forward;
pub use server::{ServerOptions, MAX_SERVER_HANDSHAKES};
pub use value_size::{ValueKind, ValueTooLarge, MAX_IMMUTABLE_VALUE, MAX_MUTABLE_VALUE};
