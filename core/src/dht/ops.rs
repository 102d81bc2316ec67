//! Client operations' inputs and outputs (the reference's `lookup`, `announce`, `unannounce`,
//! `immutablePut/Get`, `mutablePut/Get`, `findPeer`).

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use thiserror::Error;

use super::messages::Peer;
use super::value_size::ValueTooLarge;
use crate::rpc::{NodeId, QueryError, RequestError};

/// Identifies a client operation for the lifetime of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// One LOOKUP (or ANNOUNCE's lookup) reply that carried peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupReply {
    /// The replying node.
    pub from: SocketAddrV4,
    /// Its id, if valid.
    pub from_id: Option<NodeId>,
    /// Our address as it saw us.
    pub to: SocketAddrV4,
    /// Its token.
    pub token: Option<[u8; 32]>,
    /// The peers it stores under the topic.
    pub peers: Vec<Peer>,
    /// The topic's bump.
    pub bump: u64,
}

/// One FIND_PEER reply that carried a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindPeerReply {
    /// The replying node.
    pub from: SocketAddrV4,
    /// Our address as it saw us.
    pub to: SocketAddrV4,
    /// Its token.
    pub token: Option<[u8; 32]>,
    /// The record.
    pub peer: Peer,
}

/// An immutable value found by `immutable_get`, verified against its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableValue {
    /// The value.
    pub value: Vec<u8>,
    /// Who returned it.
    pub from: SocketAddrV4,
}

/// A mutable record found by `mutable_get`, its signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableValue {
    /// The value.
    pub value: Vec<u8>,
    /// Its sequence number.
    pub seq: u64,
    /// Its signature.
    pub signature: [u8; 64],
    /// Who returned it.
    pub from: SocketAddrV4,
}

/// What a finished operation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutput {
    /// `lookup` / `find_peer` ended; the closest nodes that answered.
    Lookup {
        /// Closest nodes, closest first.
        closest_nodes: Vec<SocketAddrV4>,
    },
    /// `announce` stored the record at (some of) the closest nodes.
    Announce {
        /// Closest nodes committed to.
        closest_nodes: Vec<SocketAddrV4>,
    },
    /// `unannounce` finished.
    Unannounce,
    /// `immutable_put` stored the value.
    ImmutablePut {
        /// `H(value)`.
        hash: [u8; 32],
        /// Closest nodes committed to.
        closest_nodes: Vec<SocketAddrV4>,
    },
    /// `immutable_get` finished: the value, or `None` if no node had it.
    ImmutableGet(Option<ImmutableValue>),
    /// `mutable_put` stored the record.
    MutablePut {
        /// The record's key.
        public_key: [u8; 32],
        /// Closest nodes committed to.
        closest_nodes: Vec<SocketAddrV4>,
        /// Its sequence number.
        seq: u64,
        /// Its signature.
        signature: [u8; 64],
    },
    /// `mutable_get` finished: the record, or `None`.
    MutableGet(Option<MutableValue>),
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpError {
    /// No persistent node answered, so there was nobody to store at.
    #[error("too few nodes responded")]
    TooFewNodes,
    /// Every commit request failed.
    #[error("every commit failed: {0}")]
    CommitFailed(RequestError),
    /// Every node that answered holds a record with a higher seq (SEQ_TOO_LOW).
    #[error("seq too low: the nodes hold a newer record")]
    SeqTooLow,
    /// Every node that answered holds a different value under the same seq (SEQ_REUSED).
    #[error("seq reused: the nodes hold a different value with this seq")]
    SeqReused,
    /// The node was destroyed.
    #[error("destroyed")]
    Destroyed,
    /// An operation produced an output of another kind (a bug; reported, never a panic).
    #[error("unexpected operation output: {0}")]
    Unexpected(alloc::string::String),
    /// The query failed.
    #[error("{0}")]
    Query(QueryError),
    /// The value is too large for its put or its get to fit in a datagram; nothing was sent.
    #[error("{0}")]
    ValueTooLarge(ValueTooLarge),
}
