//! Client operations (the reference's `lookup`, `announce`, `unannounce`, `immutablePut/Get`,
//! `mutablePut/Get`, `findPeer`): their inputs and outputs, and each one as a small machine
//! ([`Op`]) — a query toward a target, then (announce, put) commit requests to the closest
//! nodes — that returns [`OpAction`]s for the node to apply.

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use thiserror::Error;

use super::messages::{
    command, Announce, LookupReplyValue, MutableGetResponse, Peer, ERROR_SEQ_REUSED,
    ERROR_SEQ_TOO_LOW,
};
use super::records::MAX_LOOKUP_PEERS;
use super::sign;
use super::value_size::ValueTooLarge;
use crate::crypto::{hash, KeyPair};
use crate::rpc::{NodeId, QueryError, QueryReply, RequestError, RequestSpec};

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

impl OpError {
    /// The reference's code for this failure, where it has one: the storing nodes' error names
    /// (`SEQ_TOO_LOW`, `SEQ_REUSED`: hyperdht `lib/constants.js` `ERROR`), a failed request's
    /// or query's code, and `NODE_DESTROYED`.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            OpError::SeqTooLow => Some("SEQ_TOO_LOW"),
            OpError::SeqReused => Some("SEQ_REUSED"),
            OpError::Destroyed => Some("NODE_DESTROYED"),
            OpError::CommitFailed(e) => e.code(),
            OpError::Query(e) => e.code(),
            OpError::TooFewNodes
            | OpError::Unexpected(_)
            | OpError::SeqOutOfRange { .. }
            | OpError::ValueTooLarge(_) => None,
        }
    }
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

/// What a client operation does when it starts or when its query ends.
#[derive(Debug)]
pub(crate) enum OpKind {
    Lookup,
    FindPeer,
    Announce {
        key_pair: KeyPair,
        relays: Vec<SocketAddrV4>,
        bump: u64,
    },
    Unannounce {
        key_pair: KeyPair,
    },
    ImmutablePut {
        value: Vec<u8>,
    },
    ImmutableGet,
    MutablePut {
        key_pair_public: [u8; 32],
        seq: u64,
        signature: [u8; 64],
        signed: Vec<u8>,
    },
    MutableGet {
        public_key: [u8; 32],
        seq: u64,
        latest: bool,
        best: Option<MutableValue>,
    },
}

/// What an operation asks the node to do.
#[derive(Debug)]
pub(crate) enum OpAction {
    /// Tell the owner (a reply carrying peers or a record).
    Emit(OpReply),
    /// Send a commit request (its response comes back to [`Op::handle_commit_response`]).
    Commit(RequestSpec),
    /// The operation is over.
    Finish(Result<OpOutput, OpError>),
}

/// A reply an operation passes on to the owner.
#[derive(Debug)]
pub(crate) enum OpReply {
    /// A lookup/announce/unannounce reply carrying peers.
    Lookup(LookupReply),
    /// A find-peer reply carrying a record.
    FindPeer(FindPeerReply),
}

/// One client operation: a query toward `target`, then (for announce and put) commits to the
/// closest nodes that answered with a token.
#[derive(Debug)]
pub(crate) struct Op {
    kind: OpKind,
    target: [u8; 32],
    /// Commit requests still outstanding.
    pending: usize,
    /// Commits that got any response (what the reference counts as success).
    succeeded: usize,
    /// Commits answered with error 0.
    accepted: usize,
    /// Commits refused with SEQ_TOO_LOW / SEQ_REUSED.
    seq_too_low: usize,
    seq_reused: usize,
    last_error: Option<RequestError>,
    /// The query ended (commits may still be outstanding).
    query_done: bool,
    closest_nodes: Vec<SocketAddrV4>,
}

/// One commit request to send: the value, with the token the node gave us.
struct Commit {
    to: SocketAddrV4,
    token: [u8; 32],
    value: Vec<u8>,
}

fn with_tokens(closest: &[QueryReply], value: &[u8]) -> Vec<Commit> {
    closest
        .iter()
        .filter_map(|r| {
            Some(Commit {
                to: r.from,
                token: r.token?,
                value: value.to_vec(),
            })
        })
        .collect()
}

impl Op {
    /// An operation of `kind` toward `target`.
    pub(crate) fn new(kind: OpKind, target: [u8; 32]) -> Self {
        Op {
            kind,
            target,
            pending: 0,
            succeeded: 0,
            accepted: 0,
            seq_too_low: 0,
            seq_reused: 0,
            last_error: None,
            query_done: false,
            closest_nodes: Vec::new(),
        }
    }

    /// A commit request of `cmd` to `to`.
    fn commit(
        &mut self,
        to: SocketAddrV4,
        token: [u8; 32],
        cmd: u64,
        value: Vec<u8>,
        out: &mut Vec<OpAction>,
    ) {
        self.pending += 1;
        let mut spec = RequestSpec::new(to, cmd);
        spec.token = Some(token);
        spec.target = Some(NodeId(self.target));
        spec.value = Some(value);
        out.push(OpAction::Commit(spec));
    }

    /// A reply of the operation's query.
    pub(crate) fn handle_reply(&mut self, reply: QueryReply, out: &mut Vec<OpAction>) {
        let Some(value) = reply.value.as_deref() else {
            return;
        };
        match &mut self.kind {
            OpKind::Lookup | OpKind::Announce { .. } | OpKind::Unannounce { .. } => {
                let Ok(l) = LookupReplyValue::decode(value) else {
                    return;
                };
                let lookup = LookupReply {
                    from: reply.from,
                    from_id: reply.from_id,
                    to: reply.to,
                    token: reply.token,
                    peers: l.peers,
                    bump: l.bump,
                };
                if let OpKind::Unannounce { key_pair } = &self.kind {
                    let pk = key_pair.public_key();
                    let found = lookup.peers.len() >= MAX_LOOKUP_PEERS
                        || lookup.peers.iter().any(|p| p.public_key == pk);
                    if let (true, Some(token), Some(id)) = (found, lookup.token, lookup.from_id) {
                        let peer = Peer {
                            public_key: pk,
                            relay_addresses: Vec::new(),
                        };
                        let signature = sign::sign_unannounce(
                            key_pair,
                            &self.target,
                            &id.0,
                            &token,
                            &peer,
                            None,
                        );
                        let value = Announce {
                            peer: Some(peer),
                            refresh: None,
                            signature: Some(signature),
                            bump: 0,
                        }
                        .to_bytes();
                        self.commit(lookup.from, token, command::UNANNOUNCE, value, out);
                    }
                }
                out.push(OpAction::Emit(OpReply::Lookup(lookup)));
            }
            OpKind::FindPeer => {
                let Ok(peer) = Peer::decode(value) else {
                    return;
                };
                out.push(OpAction::Emit(OpReply::FindPeer(FindPeerReply {
                    from: reply.from,
                    to: reply.to,
                    token: reply.token,
                    peer,
                })));
            }
            OpKind::ImmutablePut { .. } | OpKind::MutablePut { .. } => {}
            OpKind::ImmutableGet => {
                if hash(value) == self.target {
                    let found = ImmutableValue {
                        value: value.to_vec(),
                        from: reply.from,
                    };
                    out.push(OpAction::Finish(Ok(OpOutput::ImmutableGet(Some(found)))));
                }
            }
            OpKind::MutableGet {
                public_key,
                seq,
                latest,
                best,
            } => {
                let Ok(r) = MutableGetResponse::decode(value) else {
                    return;
                };
                if best.as_ref().is_some_and(|b| r.seq <= b.seq) {
                    return;
                }
                if r.seq < *seq || !sign::verify_mutable(public_key, r.seq, &r.value, &r.signature)
                {
                    return;
                }
                let found = MutableValue {
                    value: r.value,
                    seq: r.seq,
                    signature: r.signature,
                    from: reply.from,
                };
                if !*latest {
                    out.push(OpAction::Finish(Ok(OpOutput::MutableGet(Some(found)))));
                } else {
                    *best = Some(found);
                }
            }
        }
    }

    /// The query ended: commit to the closest nodes, or finish.
    pub(crate) fn handle_query_done(
        &mut self,
        result: Result<Vec<QueryReply>, QueryError>,
        out: &mut Vec<OpAction>,
    ) {
        self.query_done = true;
        let closest = match result {
            Ok(c) => c,
            Err(e) => return out.push(OpAction::Finish(Err(OpError::Query(e)))),
        };
        self.closest_nodes = closest.iter().map(|r| r.from).collect();
        let target = self.target;
        // Operations that commit to the closest nodes.
        let commit: Option<(u64, Vec<Commit>)> = match &self.kind {
            OpKind::Announce {
                key_pair,
                relays,
                bump,
            } => {
                let peer = Peer {
                    public_key: key_pair.public_key(),
                    relay_addresses: relays.clone(),
                };
                let list = closest
                    .iter()
                    .filter_map(|r| Some((r.from, r.token?, r.from_id?)))
                    .map(|(from, token, id)| {
                        let signature =
                            sign::sign_announce(key_pair, &target, &id.0, &token, &peer, None);
                        let value = Announce {
                            peer: Some(peer.clone()),
                            refresh: None,
                            signature: Some(signature),
                            bump: *bump,
                        }
                        .to_bytes();
                        Commit {
                            to: from,
                            token,
                            value,
                        }
                    })
                    .collect();
                Some((command::ANNOUNCE, list))
            }
            OpKind::ImmutablePut { value } => {
                Some((command::IMMUTABLE_PUT, with_tokens(&closest, value)))
            }
            OpKind::MutablePut { signed, .. } => {
                Some((command::MUTABLE_PUT, with_tokens(&closest, signed)))
            }
            _ => None,
        };
        if let Some((cmd, list)) = commit {
            if closest.is_empty() {
                return out.push(OpAction::Finish(Err(OpError::TooFewNodes)));
            }
            // Replies without a token count as failed commits, as in the reference.
            let missing = closest.len() - list.len();
            self.last_error = (missing > 0).then_some(RequestError::Timeout);
            for c in list {
                self.commit(c.to, c.token, cmd, c.value, out);
            }
        }
        self.maybe_finish(out);
    }

    /// A commit request's response.
    pub(crate) fn handle_commit_response(
        &mut self,
        result: Result<QueryReply, RequestError>,
        out: &mut Vec<OpAction>,
    ) {
        self.pending = self.pending.saturating_sub(1);
        // `dht.request` resolves for any response, error codes included.
        match result {
            Ok(r) => {
                self.succeeded += 1;
                match r.error {
                    0 => self.accepted += 1,
                    ERROR_SEQ_TOO_LOW => self.seq_too_low += 1,
                    ERROR_SEQ_REUSED => self.seq_reused += 1,
                    _ => {}
                }
            }
            Err(e) => self.last_error = Some(e),
        }
        self.maybe_finish(out);
    }

    /// Ends the operation once its query ended and its commits settled.
    fn maybe_finish(&mut self, out: &mut Vec<OpAction>) {
        if !self.query_done || self.pending > 0 {
            return;
        }
        let closest_nodes = self.closest_nodes.clone();
        let commits_failed = self.succeeded == 0 && !closest_nodes.is_empty();
        let result = match &self.kind {
            OpKind::Lookup | OpKind::FindPeer => Ok(OpOutput::Lookup { closest_nodes }),
            // Like a commit query, an unannounce with nobody to unannounce at fails.
            OpKind::Unannounce { .. } if closest_nodes.is_empty() => Err(OpError::TooFewNodes),
            OpKind::Unannounce { .. } => Ok(OpOutput::Unannounce),
            OpKind::ImmutableGet => Ok(OpOutput::ImmutableGet(None)),
            OpKind::MutableGet { best, .. } => Ok(OpOutput::MutableGet(best.clone())),
            OpKind::Announce { .. } | OpKind::ImmutablePut { .. } | OpKind::MutablePut { .. }
                if commits_failed =>
            {
                Err(OpError::CommitFailed(
                    self.last_error.unwrap_or(RequestError::Timeout),
                ))
            }
            // Every node refused the record because it holds a newer one: say so (the reference
            // resolves here; the wire exchange is the same).
            OpKind::MutablePut { .. } if self.accepted == 0 && self.seq_too_low > 0 => {
                Err(OpError::SeqTooLow)
            }
            OpKind::MutablePut { .. } if self.accepted == 0 && self.seq_reused > 0 => {
                Err(OpError::SeqReused)
            }
            OpKind::Announce { .. } => Ok(OpOutput::Announce { closest_nodes }),
            OpKind::ImmutablePut { .. } => Ok(OpOutput::ImmutablePut {
                hash: self.target,
                closest_nodes,
            }),
            OpKind::MutablePut {
                key_pair_public,
                seq,
                signature,
                ..
            } => Ok(OpOutput::MutablePut {
                public_key: *key_pair_public,
                closest_nodes,
                seq: *seq,
                signature: *signature,
            }),
        };
        out.push(OpAction::Finish(result));
    }
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
