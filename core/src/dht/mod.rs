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
pub mod value_size;

pub use connect::{
    ConnError, ConnId, ConnectEvent, ConnectOptions, ConnectStats, ConnectionInfo, ServerId,
    ServerOptions, TransportInfo, CONNECTION_IDLE_TIMEOUT, MAX_SERVER_HANDSHAKES,
};
pub use node::{DatagramOut, DhtConfig, DhtEvent, DhtNode, Forward, MAX_DATAGRAM};
pub use ops::{check_seq, MAX_SEQ};
pub use ops::{FindPeerReply, ImmutableValue, LookupReply, MutableValue, OpError, OpId, OpOutput};
pub use pool::{SocketCommand, MAX_POOL_SOCKETS};
pub use value_size::{ValueKind, ValueTooLarge, MAX_IMMUTABLE_VALUE, MAX_MUTABLE_VALUE};
