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
    /// A mutable record's sequence number above [`MAX_SEQ`]: no reference peer can encode or
    /// decode it, so the operation is refused before anything is sent.
    #[error("seq {seq} is out of range: a mutable record's seq is 0 to {MAX_SEQ} (2^53 - 1)")]
    SeqOutOfRange {
        /// The refused sequence number.
        seq: u64,
    },
    /// The value is too large for its put or its get to fit in a datagram; nothing was sent.
    #[error("{0}")]
    ValueTooLarge(ValueTooLarge),
}

/// The largest sequence number a mutable record can have: 2^53 - 1, JavaScript's
/// `Number.MAX_SAFE_INTEGER`. The reference's compact-encoding refuses to encode a larger
/// `uint`, and its servers (and ours) drop a MUTABLE_PUT or MUTABLE_GET whose seq is larger.
/// A record stored with exactly this seq can never be replaced: no higher seq exists, and the
/// same seq with another value is refused (SEQ_REUSED).
pub const MAX_SEQ: u64 = crate::wire::MAX_SAFE_INTEGER;

/// `seq` when a reference peer can represent it, else [`OpError::SeqOutOfRange`].
pub fn check_seq(seq: u64) -> Result<u64, OpError> {
    if seq > MAX_SEQ {
        return Err(OpError::SeqOutOfRange { seq });
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Reader, Writer};

    #[test]
    fn seq_range_is_what_the_reference_can_represent() {
        assert_eq!(MAX_SEQ, (1 << 53) - 1);
        for seq in [0, 1, 252, 253, 1 << 32, MAX_SEQ] {
            assert_eq!(check_seq(seq), Ok(seq));
        }
        for seq in [MAX_SEQ + 1, 1 << 60, u64::MAX] {
            assert_eq!(check_seq(seq), Err(OpError::SeqOutOfRange { seq }));
        }
        // What is accepted round-trips through the compact uint every peer decodes; the first
        // refused value is the first one a decoder refuses.
        for (seq, decodes) in [(MAX_SEQ, true), (MAX_SEQ + 1, false)] {
            let mut bytes = alloc::vec::Vec::new();
            Writer::new(&mut bytes).uint(seq);
            let got = Reader::new(&bytes).uint();
            assert_eq!(got.is_ok(), decodes, "seq {seq}");
            assert_eq!(check_seq(seq).is_ok(), decodes);
        }
    }
}
