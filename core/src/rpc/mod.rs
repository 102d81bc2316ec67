//! dht-rpc 6.27.0 as a sans-IO state machine: the layer below hyperdht's commands.
//!
//! One file per mechanism: ids, tokens, the routing table with its recency order, the NAT
//! sampler, the congestion window, health, requests in flight, iterative queries, and the
//! [`RpcNode`] that owns them.

mod config;
mod congestion;
mod event;
mod health;
mod id;
mod io;
mod nat_sampler;
mod node;
mod query;
mod rtt;
mod socket;
mod table;
mod token;

pub use config::{IpLimits, Persistence, RpcConfig};
pub use congestion::CongestionWindow;
pub use event::{
    CommitError, IncomingRequest, QueryError, QueryId, QueryReply, QueryResult, RequestError,
    RequestId, RpcEvent,
};
pub use health::{Health, HealthChange};
pub use id::{encode_addr, NodeId};
pub use nat_sampler::NatSampler;
pub use node::{
    QueryOptions, QuerySpec, ReplySpec, RequestSpec, RpcNode, Stats, Transmit, DELAYED_PING,
    DOWN_HINT, FIND_NODE, PING, PING_NAT,
};
pub use socket::SocketKind;
pub use table::{AddOutcome, NodeEntry, RoutingTable, K};
pub use token::TokenSecrets;
