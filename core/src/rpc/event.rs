//! What a node tells its owner, and the values it hands out.

use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use thiserror::Error;

use super::id::NodeId;
use super::socket::SocketKind;

/// Identifies a query for the lifetime of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId(pub u64);

/// Identifies a single request started with [`RpcNode::request`](super::RpcNode::request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A reply to one of our requests (dht-rpc's decoded response object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryReply {
    /// The UDP source of the reply.
    pub from: SocketAddrV4,
    /// The responder's id, if it sent one that matches its address.
    pub from_id: Option<NodeId>,
    /// Our address as the responder saw it.
    pub to: SocketAddrV4,
    /// A token to echo in a later request to this node.
    pub token: Option<[u8; 32]>,
    /// Nodes the responder knows close to the target.
    pub closer_nodes: Vec<SocketAddrV4>,
    /// Error code (0 = OK).
    pub error: u64,
    /// Payload.
    pub value: Option<Vec<u8>>,
    /// Time from the request's creation to this reply.
    pub rtt: Duration,
}

/// A request from another node for the application to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// Transaction id (the reply must echo it).
    pub tid: u16,
    /// The UDP source.
    pub from: SocketAddrV4,
    /// The sender's id, if valid for `from`.
    pub from_id: Option<NodeId>,
    /// The address the sender sent it to (ours, as it knows it).
    pub to: SocketAddrV4,
    /// A token the sender echoed (already validated).
    pub token: Option<[u8; 32]>,
    /// Internal namespace flag.
    pub internal: bool,
    /// Command number.
    pub command: u64,
    /// Target key.
    pub target: Option<NodeId>,
    /// Payload.
    pub value: Option<Vec<u8>>,
    /// The socket it arrived on (replies leave on it).
    pub socket: SocketKind,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RequestError {
    /// No response after every retry.
    #[error("request timed out")]
    Timeout,
    /// The request was cancelled (its query closed or the node was destroyed).
    #[error("request destroyed")]
    Destroyed,
    /// Too many requests are in flight; this one was not sent.
    #[error("too many requests in flight")]
    TooManyRequests,
    /// The request would be a datagram longer than the ceiling (`wire::MAX_DATAGRAM_LEN`,
    /// 2,048 bytes) that no reference node reads whole; it was not sent.
    #[error("request of {len} bytes exceeds the {max}-byte datagram ceiling", max = crate::wire::MAX_DATAGRAM_LEN)]
    DatagramTooLarge {
        /// The encoded request's length.
        len: usize,
    },
}

impl RequestError {
    /// The reference's `err.code` for this failure (dht-rpc `lib/errors.js`), where it has one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            RequestError::Timeout => Some("REQUEST_TIMEOUT"),
            RequestError::Destroyed => Some("REQUEST_DESTROYED"),
            // The reference queues such requests, or has no code for an oversized one.
            RequestError::TooManyRequests | RequestError::DatagramTooLarge { .. } => None,
        }
    }
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    /// The commit phase had no closest replies to commit to.
    #[error("too few nodes responded")]
    TooFewNodes,
    /// Every commit failed.
    #[error("every commit failed: {0}")]
    CommitFailed(CommitError),
    /// The node was destroyed.
    #[error("query destroyed")]
    Destroyed,
}

impl QueryError {
    /// The reference's `err.code`, where it has one: a failed commit's request code, and
    /// `NODE_DESTROYED` for a query its node's destruction ended (dht-rpc says only "Node was
    /// destroyed" there, hyperdht's code for the same condition). `TOO_FEW_NODES` has no code in
    /// the reference ("Too few nodes responded").
    pub fn code(&self) -> Option<&'static str> {
        match self {
            QueryError::TooFewNodes => None,
            QueryError::CommitFailed(e) => e.code(),
            QueryError::Destroyed => Some("NODE_DESTROYED"),
        }
    }
}

/// Why a single commit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CommitError {
    /// The closest node gave no token to echo.
    #[error("no token received for closest node")]
    NoToken,
    /// The commit request failed.
    #[error("{0}")]
    Request(RequestError),
    /// The node answered with an error code.
    #[error("remote error {0}")]
    Remote(u64),
}

impl CommitError {
    /// The failed request's code ([`RequestError::code`]); `None` otherwise.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            CommitError::Request(e) => e.code(),
            CommitError::NoToken | CommitError::Remote(_) => None,
        }
    }
}

/// How a query ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// Up to k successful replies from nodes with valid ids, closest to the target first.
    pub closest_replies: Vec<QueryReply>,
    /// Successful replies.
    pub successes: usize,
    /// Errors and timeouts.
    pub errors: usize,
}

impl QueryResult {
    /// The addresses of the closest replies, closest first (`query.closestNodes`).
    pub fn closest_nodes(&self) -> impl Iterator<Item = SocketAddrV4> + '_ {
        self.closest_replies.iter().map(|r| r.from)
    }
}

/// Something the node tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcEvent {
    /// Bootstrapping finished.
    Ready,
    /// The node became persistent: it now sends its id and is routable.
    Persistent,
    /// The node went back to ephemeral (after a wake-up).
    Ephemeral,
    /// A wake-up was detected (a gap of more than 15 s between ticks).
    Wakeup,
    /// Our public address estimate changed.
    NatUpdate {
        /// Public host, if known.
        host: Option<Ipv4Addr>,
        /// Public port, 0 if unknown or randomized.
        port: u16,
    },
    /// Online/degraded state changed.
    NetworkUpdate {
        /// Responses are arriving.
        online: bool,
        /// More than half of the requests time out.
        degraded: bool,
    },
    /// A node entered the routing table.
    AddNode(SocketAddrV4),
    /// A node left the routing table.
    RemoveNode(SocketAddrV4),
    /// An external request for the application (only with `deliver_requests`).
    Request(IncomingRequest),
    /// A successful reply to a query.
    QueryReply {
        /// The query.
        query: QueryId,
        /// The reply.
        reply: QueryReply,
    },
    /// A query finished.
    QueryDone {
        /// The query.
        query: QueryId,
        /// Its outcome.
        result: Result<QueryResult, QueryError>,
    },
    /// A single request finished.
    Response {
        /// The request.
        request: RequestId,
        /// The reply, or why there is none.
        result: Result<QueryReply, RequestError>,
    },
}
