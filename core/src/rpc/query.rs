//! The iterative query's bookkeeping (dht-rpc `lib/query.js`): the pending stack, the seen map
//! with referrers, the k closest replies in XOR order, and the counters that pace the visits.
//!
//! The node drives it: it pops candidates, sends the requests, and feeds replies and failures
//! back. Everything here is pure bookkeeping, testable alone.

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use super::event::QueryReply;
use super::id::NodeId;
use super::table::K;

/// Addresses one query remembers at most (honest queries visit a few dozen).
const MAX_SEEN: usize = 4096;
/// Referrers whose referrals a query keeps score of at most.
const MAX_SCORED: usize = 256;
/// A referrer is distrusted once this many of its referrals missed their first timer and
/// they outnumber twice the ones that answered: its remaining referrals are dropped (unless
/// someone else named them too) and its further closer nodes ignored, for this query.
const DISTRUST_AFTER: u16 = 2;

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

/// What happened to a seen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Not answered yet; its referrers are a list in [`SeenSet::refs`].
    Referred,
    Done,
    Down,
    /// Dropped from pending because only distrusted referrers named it; named again by
    /// someone else, it becomes a candidate again.
    Dropped,
}

/// "No referrer" marker for the referrer lists.
const NIL: u32 = u32::MAX;

/// One seen address: its id (kept so that an address mentioned again by later replies costs
/// no second BLAKE2b), its state, and its referrer list (head and tail in [`SeenSet::links`]).
#[derive(Debug, Clone)]
struct SeenEntry {
    id: NodeId,
    addr: SocketAddrV4,
    state: Seen,
    refs_head: u32,
    refs_tail: u32,
}

/// One referral in a referrer list: the referrer as an index into [`SeenSet::referrers`]
/// (a reply's closer nodes all share its sender), 8 bytes instead of the 44 of a copy.
#[derive(Debug, Clone, Copy)]
struct RefLink {
    referrer: u32,
    next: u32,
}

/// An empty slot of the hash index (no entry has index 0xffff: at most [`MAX_SEEN`]).
const EMPTY: u32 = u32::MAX;

/// The addresses a query has seen, flat: an open-addressing hash index of 4-byte slots (16
/// bits of the address's hash as a tag, the entry's index in the low 16; linear probing, at
/// most half full; a probe reads an entry only when the tag matches), the entries in
/// insertion order, every referrer list threaded through one arena of
/// 8-byte links, and the distinct referrers those links point at. A lookup touches one or two
/// cache lines of keys instead of bisecting a sorted vector, an insert moves nothing, and
/// adding an address allocates nothing once the vectors have grown. Nothing iterates the
/// index, so its order is unobservable.
#[derive(Debug, Default)]
struct SeenSet {
    index: Vec<u32>,
    entries: Vec<SeenEntry>,
    links: Vec<RefLink>,
    /// The referrers the links name; consecutive referrals by one referrer (a reply's closer
    /// nodes) share one.
    referrers: Vec<Referrer>,
}

/// Scores one referral of `addr` (`scores` is sorted by address and holds at most
/// [`MAX_SCORED`]; an address beyond that is not scored). True if `addr` became distrusted.
fn score(
    scores: &mut Vec<(SocketAddrV4, u16, u16)>,
    addr: SocketAddrV4,
    bad: u16,
    good: u16,
) -> bool {
    let key = addr_key(&addr);
    let pos = match scores.binary_search_by(|s| addr_key(&s.0).cmp(&key)) {
        Ok(p) => p,
        Err(p) if scores.len() < MAX_SCORED => {
            scores.insert(p, (addr, 0, 0));
            p
        }
        Err(_) => return false,
    };
    let Some(s) = scores.get_mut(pos) else {
        return false;
    };
    let was = distrusted(s.1, s.2);
    s.1 = s.1.saturating_add(bad);
    s.2 = s.2.saturating_add(good);
    !was && distrusted(s.1, s.2)
}

/// An address as a 48-bit number.
fn addr_key(addr: &SocketAddrV4) -> u64 {
    (u64::from(u32::from(*addr.ip())) << 16) | u64::from(addr.port())
}

/// An address's hash (multiplicative: deterministic, and the high bits mix every input bit).
fn hash(addr: &SocketAddrV4) -> u64 {
    addr_key(addr).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The home slot of a hash in an index of `mask + 1` (≤ 2^16) slots: bits 32 and up.
fn home(h: u64, mask: usize) -> usize {
    (h >> 32) as usize & mask
}

/// The tag of a hash, bits 48–63 (independent of the home slot's bits), in a slot's high half.
fn tag(h: u64) -> u32 {
    ((h >> 48) as u32) << 16
}

/// Addresses a query's seen set has room for from the start: a lookup in a network of
/// thousands sees a hundred or more, and growing the vectors from nothing cost ~6
/// reallocations each per query.
const SEEN_START: usize = 64;

impl SeenSet {
    fn with_capacity(n: usize) -> Self {
        SeenSet {
            index: alloc::vec![EMPTY; (2 * n).next_power_of_two()],
            entries: Vec::with_capacity(n),
            links: Vec::with_capacity(n),
            referrers: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The index of `addr`'s entry, or the (empty) index slot its key goes to.
    fn search(&self, addr: &SocketAddrV4) -> Result<usize, usize> {
        if self.index.is_empty() {
            return Err(0);
        }
        let mask = self.index.len() - 1;
        let h = hash(addr);
        let t = tag(h);
        let mut i = home(h, mask);
        loop {
            match self.index.get(i) {
                Some(&k) if k == EMPTY => return Err(i),
                Some(&k)
                    if k & 0xffff_0000 == t
                        && self
                            .entries
                            .get((k & 0xffff) as usize)
                            .is_some_and(|e| e.addr == *addr) =>
                {
                    return Ok((k & 0xffff) as usize)
                }
                Some(_) => i = (i + 1) & mask,
                None => return Err(0),
            }
        }
    }

    /// Inserts an address known to be absent, its key going at index slot `pos` (from
    /// [`Self::search`]). Callers keep the set within `MAX_SEEN` (< 2^16) entries, so an
    /// index fits its 16 bits.
    fn insert_at(&mut self, pos: usize, addr: &SocketAddrV4, id: NodeId, state: Seen) -> usize {
        let index = self.entries.len();
        self.entries.push(SeenEntry {
            id,
            addr: *addr,
            state,
            refs_head: NIL,
            refs_tail: NIL,
        });
        let key = tag(hash(addr)) | (index as u32 & 0xffff);
        if 2 * self.entries.len() > self.index.len() {
            // Grow (or create) the index, at most half full, and place the key anew.
            self.grow();
            let Err(pos) = self.search(addr) else {
                return index;
            };
            if let Some(k) = self.index.get_mut(pos) {
                *k = key;
            }
        } else if let Some(k) = self.index.get_mut(pos) {
            *k = key;
        }
        index
    }

    /// Doubles the hash index and re-places every key.
    fn grow(&mut self) {
        let size = (2 * self.index.len()).max(2 * SEEN_START);
        let old = core::mem::replace(&mut self.index, alloc::vec![EMPTY; size]);
        let mask = size - 1;
        for k in old.into_iter().filter(|&k| k != EMPTY) {
            let Some(e) = self.entries.get((k & 0xffff) as usize) else {
                continue;
            };
            let mut i = home(hash(&e.addr), mask);
            while self.index.get(i).is_some_and(|&x| x != EMPTY) {
                i = (i + 1) & mask;
            }
            if let Some(x) = self.index.get_mut(i) {
                *x = k;
            }
        }
    }

    /// Sets the state of `addr` (inserted if absent), returning its index and previous state
    /// (`state` itself when it was absent).
    fn set_state(&mut self, addr: &SocketAddrV4, state: Seen) -> (usize, Seen) {
        match self.search(addr) {
            Ok(i) => {
                let was = self
                    .entries
                    .get_mut(i)
                    .map_or(state, |e| core::mem::replace(&mut e.state, state));
                (i, was)
            }
            Err(pos) => (
                self.insert_at(pos, addr, NodeId::from_addr(addr), state),
                state,
            ),
        }
    }

    /// Appends `r` to the referrer list of entry `index`.
    fn push_referrer(&mut self, index: usize, r: Referrer) {
        let link = u32::try_from(self.links.len()).unwrap_or(NIL);
        if link == NIL || index >= self.entries.len() {
            return;
        }
        let referrer = match self.referrers.last() {
            Some(last) if *last == r => self.referrers.len() - 1,
            _ => {
                self.referrers.push(r);
                self.referrers.len() - 1
            }
        };
        let Some(e) = self.entries.get_mut(index) else {
            return;
        };
        let tail = e.refs_tail;
        e.refs_tail = link;
        if tail == NIL {
            e.refs_head = link;
        } else if let Some(t) = self.links.get_mut(tail as usize) {
            t.next = link;
        }
        self.links.push(RefLink {
            referrer: u32::try_from(referrer).unwrap_or(NIL),
            next: NIL,
        });
    }

    /// Entry `index`'s referrers, in the order they were added.
    fn referrers(&self, index: usize) -> impl Iterator<Item = &Referrer> + '_ {
        let mut link = self.entries.get(index).map_or(NIL, |e| e.refs_head);
        core::iter::from_fn(move || {
            let l = self.links.get(link as usize)?;
            link = l.next;
            self.referrers.get(l.referrer as usize)
        })
    }

    /// Takes entry `index`'s referrers, in the order they were added.
    fn take_referrers(&mut self, index: usize) -> Vec<Referrer> {
        let Some(e) = self.entries.get_mut(index) else {
            return Vec::new();
        };
        let mut link = core::mem::replace(&mut e.refs_head, NIL);
        e.refs_tail = NIL;
        let mut out = Vec::new();
        while let Some(l) = self.links.get(link as usize) {
            if let Some(r) = self.referrers.get(l.referrer as usize) {
                out.push(*r);
            }
            link = l.next;
        }
        out
    }
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
    /// The candidates to visit, a stack of indices into the seen set (whose entries hold
    /// their address and id): 2 bytes each instead of a 38-byte copy.
    pending: Vec<u16>,
    /// Address → its id and what happened to it.
    seen: SeenSet,
    closest: Vec<QueryReply>,
    pub(crate) inflight: usize,
    pub(crate) slow: usize,
    /// Visits in flight that missed two timers (adaptive timeouts).
    pub(crate) stalled: usize,
    /// Per referrer: (referrals that missed a timer, referrals that answered).
    scores: Vec<(SocketAddrV4, u16, u16)>,
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
            pending: Vec::with_capacity(K),
            seen: SeenSet::with_capacity(SEEN_START),
            // k, plus the one inserted before the list is truncated back to k.
            closest: Vec::with_capacity(K + 1),
            inflight: 0,
            slow: 0,
            stalled: 0,
            scores: Vec::new(),
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
        let i = self.pending.pop()?;
        self.seen.entries.get(usize::from(i)).map(|e| Candidate {
            addr: e.addr,
            id: e.id,
        })
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
        let Err(pos) = self.seen.search(&c.addr) else {
            return;
        };
        let index = self.seen.insert_at(pos, &c.addr, c.id, Seen::Referred);
        self.pending.insert(0, index as u16);
    }

    /// `addPending(node, referrer)`.
    pub(crate) fn add_pending(&mut self, c: Candidate, referrer: Option<Referrer>) -> AddResult {
        if self.only_closest_nodes {
            return AddResult::default();
        }
        let found = self.seen.search(&c.addr);
        self.add_pending_found(c, referrer, found)
    }

    /// A closer node `addr` named by `referrer`'s reply: [`Self::add_pending`] with its id
    /// taken from the seen set when the query met the address before (no second BLAKE2b) and
    /// one search for both. `None` when its id is `own` (the caller skips it).
    pub(crate) fn add_referral(
        &mut self,
        addr: SocketAddrV4,
        own: &NodeId,
        referrer: Referrer,
    ) -> Option<AddResult> {
        let found = self.seen.search(&addr);
        let id = match found {
            Ok(i) => self.seen.entries.get(i).map(|e| e.id),
            Err(_) => None,
        }
        .unwrap_or_else(|| NodeId::from_addr(&addr));
        if id == *own {
            return None;
        }
        if self.only_closest_nodes {
            return Some(AddResult::default());
        }
        Some(self.add_pending_found(Candidate { addr, id }, Some(referrer), found))
    }

    fn add_pending_found(
        &mut self,
        c: Candidate,
        referrer: Option<Referrer>,
        found: Result<usize, usize>,
    ) -> AddResult {
        let closer = self.is_closer(&c.id);
        match found {
            Ok(index) => {
                let state = self.seen.entries.get(index).map(|e| e.state);
                let down_hint = match state {
                    Some(Seen::Down) => referrer.map(|r| (r, c.addr)),
                    Some(Seen::Dropped) => {
                        if let Some(r) = referrer.filter(|r| !self.is_distrusted(&r.addr)) {
                            if closer {
                                if let Some(e) = self.seen.entries.get_mut(index) {
                                    e.state = Seen::Referred;
                                }
                                self.seen.push_referrer(index, r);
                                self.pending.push(index as u16);
                            }
                        }
                        None
                    }
                    Some(Seen::Referred) => {
                        if let Some(r) = referrer {
                            self.seen.push_referrer(index, r);
                        }
                        None
                    }
                    _ => None,
                };
                AddResult {
                    keep_going: closer,
                    down_hint,
                }
            }
            Err(pos) => {
                // `seen` bounds memory: a hostile closer-nodes list can't grow it past the cap.
                if !closer || self.seen.len() >= MAX_SEEN {
                    return AddResult::default();
                }
                let index = self.seen.insert_at(pos, &c.addr, c.id, Seen::Referred);
                if let Some(r) = referrer {
                    self.seen.push_referrer(index, r);
                }
                self.pending.push(index as u16);
                AddResult {
                    keep_going: true,
                    down_hint: None,
                }
            }
        }
    }

    /// Whether `addr`'s referrals have been failing (see [`DISTRUST_AFTER`]).
    pub(crate) fn is_distrusted(&self, addr: &SocketAddrV4) -> bool {
        let key = addr_key(addr);
        self.scores
            .binary_search_by(|s| addr_key(&s.0).cmp(&key))
            .ok()
            .and_then(|i| self.scores.get(i))
            .is_some_and(|&(_, bad, good)| distrusted(bad, good))
    }

    /// A visit to `addr` missed its first timer: its referrers score a bad referral; a
    /// referrer that becomes distrusted loses its pending referrals nobody else vouched for.
    pub(crate) fn on_slow_referral(&mut self, addr: SocketAddrV4) {
        let Ok(index) = self.seen.search(&addr) else {
            return;
        };
        let mut newly = false;
        for r in self.seen.referrers(index) {
            newly |= score(&mut self.scores, r.addr, 1, 0);
        }
        if newly {
            self.drop_distrusted_pending();
        }
    }

    /// A visit to `addr` was answered: its referrers score a good referral.
    pub(crate) fn on_answered_referral(&mut self, addr: SocketAddrV4) {
        let Ok(index) = self.seen.search(&addr) else {
            return;
        };
        for r in self.seen.referrers(index) {
            score(&mut self.scores, r.addr, 0, 1);
        }
    }

    fn drop_distrusted_pending(&mut self) {
        let pending = core::mem::take(&mut self.pending);
        for p in pending {
            let i = usize::from(p);
            let mut any = false;
            let all = self.seen.referrers(i).all(|r| {
                any = true;
                self.is_distrusted(&r.addr)
            });
            if any && all {
                if let Some(e) = self.seen.entries.get_mut(i) {
                    e.state = Seen::Dropped;
                }
            } else {
                self.pending.push(p);
            }
        }
    }

    /// Marks an address answered.
    pub(crate) fn mark_done(&mut self, addr: SocketAddrV4) {
        self.seen.set_state(&addr, Seen::Done);
    }

    /// Marks an address dead, returning who told us about it.
    pub(crate) fn mark_down(&mut self, addr: SocketAddrV4) -> Vec<Referrer> {
        match self.seen.set_state(&addr, Seen::Down) {
            (index, Seen::Referred) => self.seen.take_referrers(index),
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

fn distrusted(bad: u16, good: u16) -> bool {
    bad >= DISTRUST_AFTER && u32::from(bad) > 2 * u32::from(good)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn addr(i: u32) -> SocketAddrV4 {
        // Addresses that differ in few bits, to crowd the hash's home slots.
        SocketAddrV4::new(
            Ipv4Addr::from(0x0a00_0000 + (i >> 3)),
            49737 + (i & 7) as u16,
        )
    }

    fn referrer(i: u32) -> Referrer {
        Referrer {
            addr: addr(1_000_000 + i),
            id: None,
        }
    }

    #[test]
    fn seen_set_finds_every_address_across_growth() {
        let mut s = SeenSet::with_capacity(SEEN_START);
        for i in 0..3000u32 {
            let a = addr(i);
            let Err(pos) = s.search(&a) else {
                panic!("{a} found before it was inserted");
            };
            let index = s.insert_at(pos, &a, NodeId::from_addr(&a), Seen::Referred);
            assert_eq!(index, i as usize);
            assert!(2 * s.len() <= s.index.len(), "at most half full");
        }
        for i in 0..3000u32 {
            assert_eq!(s.search(&addr(i)), Ok(i as usize));
        }
        for i in 3000..3100u32 {
            assert!(s.search(&addr(i)).is_err());
        }
        // States change in place; an absent address is inserted.
        assert_eq!(s.set_state(&addr(7), Seen::Done), (7, Seen::Referred));
        assert_eq!(s.set_state(&addr(5000), Seen::Down), (3000, Seen::Down));
        assert_eq!(s.search(&addr(5000)), Ok(3000));
    }

    #[test]
    fn referrer_lists_keep_their_order_and_share_referrers() {
        let mut s = SeenSet::with_capacity(4);
        for i in 0..3u32 {
            let a = addr(i);
            let Err(pos) = s.search(&a) else {
                panic!("present");
            };
            s.insert_at(pos, &a, NodeId::from_addr(&a), Seen::Referred);
        }
        // One reply (referrer 1) names all three, the next (referrer 2) names two of them,
        // then referrer 1 again names the first.
        for i in 0..3 {
            s.push_referrer(i, referrer(1));
        }
        s.push_referrer(0, referrer(2));
        s.push_referrer(2, referrer(2));
        s.push_referrer(0, referrer(1));
        assert_eq!(
            s.referrers.len(),
            3,
            "consecutive referrals share one referrer"
        );
        let of = |s: &SeenSet, i| s.referrers(i).copied().collect::<Vec<_>>();
        assert_eq!(of(&s, 0), [referrer(1), referrer(2), referrer(1)]);
        assert_eq!(of(&s, 1), [referrer(1)]);
        assert_eq!(of(&s, 2), [referrer(1), referrer(2)]);
        assert_eq!(s.take_referrers(2), [referrer(1), referrer(2)]);
        assert!(of(&s, 2).is_empty());
        assert_eq!(of(&s, 0).len(), 3);
    }
}
