//! The iterative query's bookkeeping (dht-rpc `lib/query.js`): the pending stack, the seen map
//! with referrers, the k closest replies in XOR order, and the counters that pace the visits.
//!
//! The node drives it: it pops candidates, sends the requests, and feeds replies and failures
//! back. Everything here is pure bookkeeping, testable alone.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::SocketAddrV4;

use super::{NodeId, QueryReply, K};

/// Addresses one query remembers at most (honest queries visit a few dozen).
const MAX_SEEN: usize = 4096;

/// Identifies a query for the lifetime of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId(pub u64);

/// A node the query may visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) addr: SocketAddrV4,
    pub(crate) id: NodeId,
}

/// A node whose reply mentioned an address (told about it if that address turns out dead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Referrer {
    pub(crate) addr: SocketAddrV4,
    pub(crate) id: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Referred(Vec<Referrer>),
    Done,
    Down,
}

/// What the query is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    Visiting,
    Committing {
        outstanding: usize,
        succeeded: usize,
    },
}

/// What adding a candidate asks the node to do besides.
#[derive(Debug, Default)]
pub(crate) struct AddResult {
    /// Whether the caller should keep reading the closer-nodes list.
    pub(crate) keep_going: bool,
    /// A down hint to send: this referrer should hear that `down` is unresponsive.
    pub(crate) down_hint: Option<(Referrer, SocketAddrV4)>,
}

/// One query's state.
#[derive(Debug)]
pub(crate) struct Query {
    pub(crate) target: NodeId,
    pub(crate) internal: bool,
    pub(crate) command: u64,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) commit: bool,
    pub(crate) retries: u32,
    pub(crate) concurrency: usize,
    /// `Some(background concurrency)` for bootstrap and refresh queries.
    pub(crate) background: Option<usize>,
    pub(crate) only_closest_nodes: bool,
    pending: Vec<Candidate>,
    /// Address → (its id, what happened to it). The id is kept so that an address mentioned
    /// again by later replies costs no second BLAKE2b.
    seen: BTreeMap<SocketAddrV4, (NodeId, Seen)>,
    closest: Vec<QueryReply>,
    pub(crate) inflight: usize,
    pub(crate) slow: usize,
    pub(crate) successes: usize,
    pub(crate) errors: usize,
    pub(crate) from_table: bool,
    pub(crate) slowdown: bool,
    pub(crate) phase: Phase,
}

impl Query {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        target: NodeId,
        internal: bool,
        command: u64,
        value: Option<Vec<u8>>,
        commit: bool,
        retries: u32,
        concurrency: usize,
        background: Option<usize>,
        only_closest_nodes: bool,
    ) -> Self {
        Query {
            target,
            internal,
            command,
            value,
            commit,
            retries,
            concurrency,
            background,
            only_closest_nodes,
            pending: Vec::new(),
            seen: BTreeMap::new(),
            closest: Vec::new(),
            inflight: 0,
            slow: 0,
            successes: 0,
            errors: 0,
            from_table: false,
            slowdown: false,
            phase: Phase::Visiting,
        }
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn pop_pending(&mut self) -> Option<Candidate> {
        self.pending.pop()
    }

    pub(crate) fn closest_replies(&self) -> &[QueryReply] {
        &self.closest
    }

    pub(crate) fn take_closest_replies(&mut self) -> Vec<QueryReply> {
        core::mem::take(&mut self.closest)
    }

    /// Whether `id` would make the k closest replies (always, while fewer than k).
    pub(crate) fn is_closer(&self, id: &NodeId) -> bool {
        match self.closest.get(K - 1).and_then(|r| r.from_id.as_ref()) {
            Some(last) if self.closest.len() >= K => {
                self.target.cmp_distance(id, last) == core::cmp::Ordering::Less
            }
            _ => true,
        }
    }

    /// Seeds given explicitly, pushed so that they are visited in the given order.
    pub(crate) fn push_seed(&mut self, c: Candidate) {
        if self.seen.contains_key(&c.addr) {
            return;
        }
        self.seen.insert(c.addr, (c.id, Seen::Referred(Vec::new())));
        self.pending.insert(0, c);
    }

    /// `addPending(node, referrer)`.
    pub(crate) fn add_pending(&mut self, c: Candidate, referrer: Option<Referrer>) -> AddResult {
        if self.only_closest_nodes {
            return AddResult::default();
        }
        let closer = self.is_closer(&c.id);
        match self.seen.get_mut(&c.addr).map(|e| &mut e.1) {
            Some(Seen::Done) => AddResult {
                keep_going: closer,
                down_hint: None,
            },
            Some(Seen::Down) => AddResult {
                keep_going: closer,
                down_hint: referrer.map(|r| (r, c.addr)),
            },
            Some(Seen::Referred(list)) => {
                if let Some(r) = referrer {
                    list.push(r);
                }
                AddResult {
                    keep_going: closer,
                    down_hint: None,
                }
            }
            None => {
                // `seen` bounds memory: a hostile closer-nodes list can't grow it past the cap.
                if !closer || self.seen.len() >= MAX_SEEN {
                    return AddResult::default();
                }
                let refs = referrer.into_iter().collect();
                self.seen.insert(c.addr, (c.id, Seen::Referred(refs)));
                self.pending.push(c);
                AddResult {
                    keep_going: true,
                    down_hint: None,
                }
            }
        }
    }

    /// Marks an address answered.
    pub(crate) fn mark_done(&mut self, addr: SocketAddrV4) {
        self.seen
            .entry(addr)
            .or_insert_with(|| (NodeId::from_addr(&addr), Seen::Done))
            .1 = Seen::Done;
    }

    /// The id of an address this query has seen (saves a hash per repeated closer node).
    pub(crate) fn known_id(&self, addr: &SocketAddrV4) -> Option<NodeId> {
        self.seen.get(addr).map(|e| e.0)
    }

    /// Marks an address dead, returning who told us about it.
    pub(crate) fn mark_down(&mut self, addr: SocketAddrV4) -> Vec<Referrer> {
        let e = self
            .seen
            .entry(addr)
            .or_insert_with(|| (NodeId::from_addr(&addr), Seen::Down));
        match core::mem::replace(&mut e.1, Seen::Down) {
            Seen::Referred(refs) => refs,
            _ => Vec::new(),
        }
    }

    /// Inserts a successful reply from a node with a valid id into the closest list.
    pub(crate) fn add_closest(&mut self, reply: QueryReply) {
        let Some(id) = reply.from_id else { return };
        if !self.is_closer(&id) {
            return;
        }
        let target = self.target;
        let mut pos = self.closest.len();
        for (i, r) in self.closest.iter().enumerate() {
            let Some(rid) = r.from_id.as_ref() else {
                continue;
            };
            if *rid == id {
                return;
            }
            if target.cmp_distance(&id, rid) == core::cmp::Ordering::Less {
                pos = i;
                break;
            }
        }
        // A duplicate further down the list also means "already known".
        if self.closest[pos..].iter().any(|r| r.from_id == Some(id)) {
            return;
        }
        self.closest.insert(pos, reply);
        self.closest.truncate(K);
    }
}
