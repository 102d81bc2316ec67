//! The server side of hyperdht's storage commands (`persistent.js`): FIND_PEER, LOOKUP,
//! ANNOUNCE (with refresh chains), UNANNOUNCE, MUTABLE_PUT/GET and IMMUTABLE_PUT/GET, with the
//! reference's accept and reject rules. A node stores nothing until it first turns persistent.
//!
//! Self-announces (a server announcing its own key) go to the [`Router`], which hands
//! handshakes for that key to the announcer.

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use rand_core::RngCore;

use super::messages::{
    self, command, Announce, MutableGetResponse, MutablePutRequest, ERROR_SEQ_REUSED,
    ERROR_SEQ_TOO_LOW,
};
use super::router::{Forward, Router};
use super::sign;
use super::store::{
    NodeStoreLimits, RecordCache, StoreBytes, StoreLimits, ValueStoreUsage, Xache, ENTRY_OVERHEAD,
};
use super::value_size;
use crate::crypto::hash;
use crate::rpc::{IncomingRequest, NodeId};
use crate::wire::MAX_DATAGRAM_LEN;
use crate::Instant;

/// Peers returned per LOOKUP reply.
pub(crate) const MAX_LOOKUP_PEERS: usize = 20;
/// Relay addresses kept per announced record.
const MAX_RELAY_ADDRESSES: usize = 3;
/// How far in the future a bump may lie.
const MAX_BUMP_DRIFT_MS: u64 = 60_000;

/// How to answer a storage command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordReply {
    /// A reply with this value (and a token and closer nodes).
    Value(Option<Vec<u8>>),
    /// An empty reply without token or closer nodes.
    Bare,
    /// An error code.
    Error(u64),
}

/// A refresh-chain entry (`refreshes` store).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refresh {
    target: [u8; 32],
    record: Vec<u8>,
    announce_self: bool,
}

/// The stores, created when the node first becomes persistent (`Persistent` in the reference).
#[derive(Debug)]
struct Storage {
    records: RecordCache,
    bumps: Xache<[u8; 32], u64>,
    refreshes: Xache<[u8; 32], Refresh>,
    mutables: Xache<[u8; 32], Vec<u8>>,
    immutables: Xache<[u8; 32], Vec<u8>>,
}

/// Byte weights of the stores' entries (see [`ENTRY_OVERHEAD`]).
fn bump_bytes(_: &[u8; 32], _: &u64) -> usize {
    8 + ENTRY_OVERHEAD
}

fn refresh_bytes(_: &[u8; 32], r: &Refresh) -> usize {
    32 + r.record.len() + ENTRY_OVERHEAD
}

#[allow(clippy::ptr_arg)] // the weigher of an `Xache<[u8; 32], Vec<u8>>`
fn value_bytes(_: &[u8; 32], v: &Vec<u8>) -> usize {
    v.len() + ENTRY_OVERHEAD
}

impl Storage {
    fn new(limits: &NodeStoreLimits, now: Instant) -> Self {
        fn xache<K: Ord + Clone, V>(
            l: &StoreLimits,
            now: Instant,
            weigh: fn(&K, &V) -> usize,
        ) -> Xache<K, V> {
            Xache::with_weigher(l.max_size, l.max_age, now, weigh)
        }
        Storage {
            records: RecordCache::new(limits.records.max_size, limits.records.max_age, now),
            bumps: xache(&limits.bumps, now, bump_bytes),
            refreshes: xache(&limits.refreshes, now, refresh_bytes),
            mutables: xache(&limits.mutables, now, value_bytes),
            immutables: xache(&limits.immutables, now, value_bytes),
        }
    }

    /// Bytes held by every store.
    fn bytes(&self) -> usize {
        self.records.bytes()
            + self.bumps.bytes()
            + self.refreshes.bytes()
            + self.mutables.bytes()
            + self.immutables.bytes()
    }

    /// Makes room for `need` more bytes before a validated store: while the stores plus `need`
    /// pass `budget`, the store holding the most bytes drops its older generation (see
    /// [`enforce_budget`](Self::enforce_budget)). Done before inserting, so the entry being
    /// stored is never the one evicted.
    fn make_room(&mut self, need: usize, budget: usize) {
        while self.bytes() > 0 && self.bytes() + need > budget {
            self.evict_largest();
        }
    }

    /// The store holding the most bytes drops its older generation.
    fn evict_largest(&mut self) {
        let sizes = [
            self.records.bytes(),
            self.bumps.bytes(),
            self.refreshes.bytes(),
            self.mutables.bytes(),
            self.immutables.bytes(),
        ];
        let largest = (0..sizes.len()).max_by_key(|&i| sizes[i]).unwrap_or(0);
        match largest {
            0 => self.records.evict_generation(),
            1 => self.bumps.evict_generation(),
            2 => self.refreshes.evict_generation(),
            3 => self.mutables.evict_generation(),
            _ => self.immutables.evict_generation(),
        };
    }

    /// Keeps the stores within `budget` bytes (after a store, as a safety net to
    /// [`make_room`](Self::make_room)): while over it, the store holding the most bytes
    /// drops its older generation (the rotation its entry limit would trigger). A flood into
    /// one store thus evicts that store's oldest entries, not the other stores' — and, as with
    /// the reference's entry limits, new data is always taken: refusing it instead would let a
    /// flood lock the stores for their whole lifetime (48 h for values). Terminates: two
    /// evictions of one store empty it.
    fn enforce_budget(&mut self, budget: usize) {
        while self.bytes() > budget {
            self.evict_largest();
        }
    }
}

/// A node's records.
#[derive(Debug)]
pub(crate) struct Records {
    limits: NodeStoreLimits,
    storage: Option<Storage>,
}

impl Records {
    /// No storage yet.
    pub(crate) fn new(limits: NodeStoreLimits) -> Self {
        Records {
            limits,
            storage: None,
        }
    }

    /// Whether this node stores records.
    pub(crate) fn has_storage(&self) -> bool {
        self.storage.is_some()
    }

    /// The limits of the stores.
    pub(crate) fn limits(&self) -> &NodeStoreLimits {
        &self.limits
    }

    /// What the mutable and immutable stores hold (zero before there is storage).
    pub(crate) fn value_store_usage(&self) -> ValueStoreUsage {
        let Some(s) = &self.storage else {
            return ValueStoreUsage::default();
        };
        let bytes = |x: &Xache<[u8; 32], Vec<u8>>| x.iter().map(|(_, v)| v.len()).sum();
        ValueStoreUsage {
            immutables: s.immutables.len(),
            immutable_bytes: bytes(&s.immutables),
            mutables: s.mutables.len(),
            mutable_bytes: bytes(&s.mutables),
        }
    }

    /// What the stores hold in bytes.
    pub(crate) fn store_bytes(&self) -> StoreBytes {
        let Some(s) = &self.storage else {
            return StoreBytes {
                budget: self.limits.budget,
                ..StoreBytes::default()
            };
        };
        StoreBytes {
            records: s.records.bytes(),
            bumps: s.bumps.bytes(),
            refreshes: s.refreshes.bytes(),
            mutables: s.mutables.bytes(),
            immutables: s.immutables.bytes(),
            budget: self.limits.budget,
        }
    }

    /// The node turned persistent: storage starts (once).
    pub(crate) fn start_storing(&mut self, now: Instant) {
        if self.storage.is_none() {
            self.storage = Some(Storage::new(&self.limits, now));
        }
    }

    /// Drops our own record under `topic` (we unannounce it).
    pub(crate) fn remove(&mut self, topic: &[u8; 32], public_key: &[u8; 32]) {
        if let Some(s) = self.storage.as_mut() {
            s.records.remove(topic, public_key);
        }
    }

    /// Expires old entries.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some(s) = self.storage.as_mut() {
            s.records.handle_timeout(now);
            s.bumps.handle_timeout(now);
            s.refreshes.handle_timeout(now);
            s.mutables.handle_timeout(now);
            s.immutables.handle_timeout(now);
        }
    }

    /// When entries expire next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let s = self.storage.as_ref()?;
        Some(
            s.records
                .poll_timeout()
                .min(s.bumps.poll_timeout())
                .min(s.refreshes.poll_timeout())
                .min(s.mutables.poll_timeout())
                .min(s.immutables.poll_timeout()),
        )
    }

    /// A storage command for `target` from a node that sees us as `node_id`, at wall-clock
    /// `now_ms`; `None` drops it silently (as the reference does with invalid requests).
    pub(crate) fn handle_request<R: RngCore>(
        &mut self,
        now_ms: u64,
        req: &IncomingRequest,
        target: [u8; 32],
        node_id: NodeId,
        router: &mut Router,
        rng: &mut R,
    ) -> Option<RecordReply> {
        let reply = self.dispatch(now_ms, req, target, node_id, router, rng);
        let budget = self.limits.budget;
        if let Some(s) = self.storage.as_mut() {
            s.enforce_budget(budget);
        }
        reply
    }

    fn dispatch<R: RngCore>(
        &mut self,
        now_ms: u64,
        req: &IncomingRequest,
        target: [u8; 32],
        node_id: NodeId,
        router: &mut Router,
        rng: &mut R,
    ) -> Option<RecordReply> {
        match req.command {
            command::FIND_PEER => Some(RecordReply::Value(
                router.get(&target).map(|f| f.record.clone()),
            )),
            command::LOOKUP => self.lookup(target, router, rng),
            command::ANNOUNCE => self.announce(now_ms, req, target, node_id, router),
            command::UNANNOUNCE => self.unannounce(req, target, node_id, router),
            command::MUTABLE_PUT => self.mutable_put(req, target),
            command::MUTABLE_GET => {
                let seq = messages::decode_mutable_get_request(req.value.as_deref()?).ok()?;
                let stored = self
                    .storage
                    .as_mut()
                    .and_then(|s| s.mutables.get(&target).cloned());
                let reply = stored
                    .filter(|bytes| MutableGetResponse::decode(bytes).is_ok_and(|r| r.seq >= seq));
                Some(RecordReply::Value(reply))
            }
            command::IMMUTABLE_PUT => {
                req.token?;
                let value = req.value.as_ref()?;
                // A value whose get reply could not fit a datagram is never stored (the
                // reference stores it and answers gets no reference node can receive).
                if value_size::immutable_get_reply_len(value.len()) > MAX_DATAGRAM_LEN {
                    return None;
                }
                if hash(value) != target {
                    return None;
                }
                let budget = self.limits.budget;
                if let Some(s) = self.storage.as_mut() {
                    s.make_room(value_bytes(&target, value), budget);
                    s.immutables.set(target, value.clone());
                }
                Some(RecordReply::Value(None))
            }
            command::IMMUTABLE_GET => Some(RecordReply::Value(
                self.storage
                    .as_mut()
                    .and_then(|s| s.immutables.get(&target).cloned()),
            )),
            _ => None,
        }
    }

    fn lookup<R: RngCore>(
        &mut self,
        target: [u8; 32],
        router: &mut Router,
        rng: &mut R,
    ) -> Option<RecordReply> {
        let s = self.storage.as_mut()?;
        let mut records: Vec<Vec<u8>> = s
            .records
            .get(&target, MAX_LOOKUP_PEERS, rng)
            .into_iter()
            .map(|r| r.to_vec())
            .collect();
        let bump = s.bumps.get(&target).copied().unwrap_or(0);
        if records.len() < MAX_LOOKUP_PEERS {
            if let Some(fwd) = router.get(&target) {
                records.push(fwd.record.clone());
            }
        }
        let value = if records.is_empty() {
            None
        } else {
            let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
            let mut out = Vec::new();
            messages::encode_lookup_reply(&refs, bump, &mut out);
            Some(out)
        };
        Some(RecordReply::Value(value))
    }

    fn announce(
        &mut self,
        now_ms: u64,
        req: &IncomingRequest,
        target: [u8; 32],
        node_id: NodeId,
        router: &mut Router,
    ) -> Option<RecordReply> {
        let token = req.token?;
        let ann = Announce::decode(req.value.as_deref()?).ok()?;
        let Some(mut peer) = ann.peer else {
            return self.refresh(req.from, ann.refresh?, router);
        };
        let signature = ann.signature?;
        if !sign::verify_announce(
            &target,
            &node_id.0,
            &token,
            &peer,
            ann.refresh.as_ref(),
            &signature,
        ) {
            return None;
        }
        peer.relay_addresses.truncate(MAX_RELAY_ADDRESSES);
        let record = peer.to_bytes();
        let announce_self = sign::target_of_key(&peer.public_key) == target;
        let budget = self.limits.budget;
        let s = self.storage.as_mut()?;
        // Room for the record, its bump and its refresh-chain entry.
        s.make_room(2 * record.len() + 40 + 3 * ENTRY_OVERHEAD, budget);
        if announce_self {
            router.set(
                target,
                Forward {
                    relay: Some(req.from),
                    record: record.clone(),
                },
            );
            s.records.remove(&target, &peer.public_key);
        } else {
            let current = s.bumps.get(&target).copied().unwrap_or(0);
            if ann.bump > current && ann.bump <= now_ms + MAX_BUMP_DRIFT_MS {
                s.bumps.set(target, ann.bump);
            }
            s.records.add(target, peer.public_key, record.clone());
        }
        if let Some(refresh) = ann.refresh {
            s.refreshes.set(
                refresh,
                Refresh {
                    target,
                    record,
                    announce_self,
                },
            );
        }
        Some(RecordReply::Bare)
    }

    /// An ANNOUNCE without a record: the next link of a refresh chain.
    fn refresh(
        &mut self,
        from: SocketAddrV4,
        refresh: [u8; 32],
        router: &mut Router,
    ) -> Option<RecordReply> {
        let active = hash(&refresh);
        let budget = self.limits.budget;
        let s = self.storage.as_mut()?;
        let r = s.refreshes.get(&active).cloned()?;
        s.make_room(2 * r.record.len() + 32 + 2 * ENTRY_OVERHEAD, budget);
        let public_key: [u8; 32] = r.record.get(..32)?.try_into().ok()?;
        if r.announce_self {
            router.set(
                r.target,
                Forward {
                    relay: Some(from),
                    record: r.record.clone(),
                },
            );
            s.records.remove(&r.target, &public_key);
        } else {
            s.records.add(r.target, public_key, r.record.clone());
        }
        s.refreshes.delete(&active);
        s.refreshes.set(refresh, r);
        Some(RecordReply::Bare)
    }

    fn unannounce(
        &mut self,
        req: &IncomingRequest,
        target: [u8; 32],
        node_id: NodeId,
        router: &mut Router,
    ) -> Option<RecordReply> {
        let token = req.token?;
        let ann = Announce::decode(req.value.as_deref()?).ok()?;
        let (peer, signature) = (ann.peer?, ann.signature?);
        if !sign::verify_unannounce(
            &target,
            &node_id.0,
            &token,
            &peer,
            ann.refresh.as_ref(),
            &signature,
        ) {
            return None;
        }
        if sign::target_of_key(&peer.public_key) == target {
            router.delete(&target);
        }
        self.remove(&target, &peer.public_key);
        Some(RecordReply::Bare)
    }

    fn mutable_put(&mut self, req: &IncomingRequest, target: [u8; 32]) -> Option<RecordReply> {
        req.token?;
        let p = MutablePutRequest::decode(req.value.as_deref()?).ok()?;
        // As for immutable values: never store what a get could not return.
        if value_size::mutable_get_reply_len(p.value.len(), p.seq) > MAX_DATAGRAM_LEN {
            return None;
        }
        if sign::target_of_key(&p.public_key) != target {
            return None;
        }
        if !sign::verify_mutable(&p.public_key, p.seq, &p.value, &p.signature) {
            return None;
        }
        let s = self.storage.as_mut()?;
        if let Some(existing) = s
            .mutables
            .get(&target)
            .and_then(|b| MutableGetResponse::decode(b).ok())
        {
            if existing.seq == p.seq && existing.value != p.value {
                return Some(RecordReply::Error(ERROR_SEQ_REUSED));
            }
            if p.seq < existing.seq {
                return Some(RecordReply::Error(ERROR_SEQ_TOO_LOW));
            }
        }
        let stored = MutableGetResponse {
            seq: p.seq,
            value: p.value,
            signature: p.signature,
        }
        .to_bytes();
        s.make_room(value_bytes(&target, &stored), self.limits.budget);
        s.mutables.set(target, stored);
        Some(RecordReply::Value(None))
    }
}
