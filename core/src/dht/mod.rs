//! hyperdht 6.34 above dht-rpc: records, announces, mutable and immutable storage, the router,
//! and the client operations (lookup, announce, unannounce, put/get).

mod connect;
pub mod messages;
mod node;
mod ops;
mod pool;
mod punch;
pub mod sign;
pub mod store;

pub use connect::{
    ConnError, ConnId, ConnectEvent, ConnectOptions, ConnectStats, ConnectionInfo, ServerId,
    ServerOptions, TransportInfo, CONNECTION_IDLE_TIMEOUT, MAX_SERVER_HANDSHAKES,
};
pub use node::{DatagramOut, DhtConfig, DhtEvent, DhtNode, Forward, MAX_DATAGRAM};
pub use ops::{FindPeerReply, ImmutableValue, LookupReply, MutableValue, OpError, OpId, OpOutput};
pub use pool::{SocketCommand, MAX_POOL_SOCKETS};
