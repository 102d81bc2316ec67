//! The HyperDHT node: a dht-rpc node plus hyperdht's server-side commands (storage and the
//! router's records) and its client operations.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::{SocketAddr, SocketAddrV4};

use rand_core::{CryptoRng, RngCore};

use super::messages::{
    self, command, mode, Announce, HandshakeEnvelope, HolepunchEnvelope,
    LookupReply as WireLookupReply, MutableGetResponse, MutablePutRequest, Peer, ERROR_SEQ_REUSED,
    ERROR_SEQ_TOO_LOW,
};
use super::ops::{
    FindPeerReply, ImmutableValue, LookupReply, MutableValue, OpError, OpId, OpOutput,
};
use super::sign;
use super::store::{NodeStoreLimits, RecordCache, StoreLimits, ValueStoreUsage, Xache};
use super::value_size;
use crate::crypto::{hash, KeyPair};
use crate::rpc::{
    IncomingRequest, NodeId, QueryError, QueryId, QueryReply, QuerySpec, ReplySpec, RequestError,
    RequestId, RequestSpec, RpcConfig, RpcEvent, RpcNode, SocketKind, Transmit,
};
use crate::wire::{ERROR_UNKNOWN_COMMAND as ERROR_UNKNOWN_COMMAND_CODE, MAX_DATAGRAM_LEN};
use crate::Instant;

/// Peers returned per LOOKUP reply.
const MAX_LOOKUP_PEERS: usize = 20;
/// Relay addresses kept per announced record.
const MAX_RELAY_ADDRESSES: usize = 3;
/// How far in the future a bump may lie.
const MAX_BUMP_DRIFT_MS: u64 = 60_000;

/// Largest datagram [`DhtNode::poll_transmit_into`] writes: the datagram ceiling
/// ([`MAX_DATAGRAM_LEN`], 2,048 bytes) — dht-rpc datagrams never exceed it, UDX packets are at
/// most 1,500 bytes.
pub const MAX_DATAGRAM: usize = MAX_DATAGRAM_LEN;

/// A datagram written into the caller's buffer by [`DhtNode::poll_transmit_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramOut {
    /// Which of the node's sockets sends it.
    pub socket: SocketKind,
    /// Destination.
    pub to: SocketAddrV4,
    /// Bytes written at the start of the buffer.
    pub len: usize,
    /// IP TTL to use, if not the default.
    pub ttl: Option<u8>,
}

/// Options for a [`DhtNode`].
#[derive(Debug, Clone, Default)]
pub struct DhtConfig {
    /// The dht-rpc options. `deliver_requests` here means "hand commands hyperdht doesn't know
    /// to the owner" (hyperdht itself always handles its own).
    pub rpc: RpcConfig,
    /// `maxSize`: entries per store (default 65536).
    pub max_size: Option<usize>,
    /// `maxAge`: record lifetime (default 20 min; 48 h for mutable and immutable values).
    pub max_age: Option<core::time::Duration>,
}

/// What a [`DhtNode`] tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtEvent {
    /// A dht-rpc event not consumed by an operation (ready, persistent, replies to raw queries…).
    Rpc(RpcEvent),
    /// A lookup/announce/unannounce reply carrying peers.
    LookupReply {
        /// The operation.
        op: OpId,
        /// The reply.
        reply: LookupReply,
    },
    /// A find-peer reply carrying a record.
    FindPeerReply {
        /// The operation.
        op: OpId,
        /// The reply.
        reply: FindPeerReply,
    },
    /// An operation finished.
    OpDone {
        /// The operation.
        op: OpId,
        /// Its outcome.
        result: Result<OpOutput, OpError>,
    },
}

/// A route to a server: a remote self-announce (`relay` = the announcer) or a local server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Where handshakes for this key go; `None` for a server on this node.
    pub relay: Option<SocketAddrV4>,
    /// The encoded `peer` record.
    pub record: Vec<u8>,
}

/// A refresh-chain entry (`refreshes` store).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refresh {
    target: [u8; 32],
    record: Vec<u8>,
    announce_self: bool,
}

/// Created when the node first becomes persistent (`Persistent` in the reference).
#[derive(Debug)]
struct Storage {
    records: RecordCache,
    bumps: Xache<[u8; 32], u64>,
    refreshes: Xache<[u8; 32], Refresh>,
    mutables: Xache<[u8; 32], Vec<u8>>,
    immutables: Xache<[u8; 32], Vec<u8>>,
}

impl Storage {
    fn new(limits: &NodeStoreLimits, now: Instant) -> Self {
        fn xache<K: Ord + Clone, V>(l: &StoreLimits, now: Instant) -> Xache<K, V> {
            Xache::new(l.max_size, l.max_age, now)
        }
        Storage {
            records: RecordCache::new(limits.records.max_size, limits.records.max_age, now),
            bumps: xache(&limits.bumps, now),
            refreshes: xache(&limits.refreshes, now),
            mutables: xache(&limits.mutables, now),
            immutables: xache(&limits.immutables, now),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.records.handle_timeout(now);
        self.bumps.handle_timeout(now);
        self.refreshes.handle_timeout(now);
        self.mutables.handle_timeout(now);
        self.immutables.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Instant {
        self.records
            .poll_timeout()
            .min(self.bumps.poll_timeout())
            .min(self.refreshes.poll_timeout())
            .min(self.mutables.poll_timeout())
            .min(self.immutables.poll_timeout())
    }
}

#[derive(Debug)]
enum OpKind {
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

#[derive(Debug)]
struct Op {
    kind: OpKind,
    target: [u8; 32],
    query: Option<QueryId>,
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

/// A HyperDHT node.
#[derive(Debug)]
pub struct DhtNode<R> {
    pub(super) rpc: RpcNode<R>,
    limits: NodeStoreLimits,
    storage: Option<Storage>,
    pub(super) forwards: Xache<[u8; 32], Forward>,
    pub(super) connect: super::connect::ConnectState,
    /// Pool sockets (holepunching, punched connections).
    pub(super) pool: super::pool::SocketPool,
    /// The time of the latest input (UDX output is produced in `poll_transmit`).
    pub(super) last_now: Instant,
    ops: BTreeMap<OpId, Op>,
    by_query: BTreeMap<QueryId, OpId>,
    by_request: BTreeMap<RequestId, OpId>,
    next_op: u64,
    events: VecDeque<DhtEvent>,
    /// Wall-clock milliseconds at `Instant::ZERO` (bumps are wall-clock timestamps).
    unix_epoch_offset_ms: u64,
    /// Records this node announced, unannounced on a non-forced destroy.
    announced: BTreeMap<([u8; 32], [u8; 32]), KeyPair>,
    /// Hand requests for commands hyperdht doesn't know to the owner (else UNKNOWN_COMMAND).
    deliver_unknown: bool,
}

impl<R: RngCore + CryptoRng> DhtNode<R> {
    /// A node that starts bootstrapping at `now`.
    pub fn new(mut cfg: DhtConfig, rng: R, now: Instant) -> Self {
        let deliver_unknown = cfg.rpc.deliver_requests;
        cfg.rpc.deliver_requests = true;
        let limits = StoreLimits::for_node(cfg.max_size, cfg.max_age);
        let forwards = Xache::new(limits.router.max_size, limits.router.max_age, now);
        let mut node = DhtNode {
            rpc: RpcNode::new(cfg.rpc, rng, now),
            limits,
            storage: None,
            forwards,
            ops: BTreeMap::new(),
            by_query: BTreeMap::new(),
            by_request: BTreeMap::new(),
            next_op: 0,
            events: VecDeque::new(),
            unix_epoch_offset_ms: 0,
            announced: BTreeMap::new(),
            deliver_unknown,
            connect: super::connect::ConnectState::default(),
            pool: super::pool::SocketPool::default(),
            last_now: now,
        };
        node.process(now);
        node
    }

    /// Tells the node the wall-clock time at `now` (milliseconds since the Unix epoch), so it
    /// can judge announce bumps, which are wall-clock timestamps.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.unix_epoch_offset_ms = unix_ms.saturating_sub(now.as_millis());
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        self.unix_epoch_offset_ms + now.as_millis()
    }

    /// The dht-rpc node underneath.
    pub fn rpc(&self) -> &RpcNode<R> {
        &self.rpc
    }

    /// Mutable access to the dht-rpc node (raw queries and requests).
    pub fn rpc_mut(&mut self) -> &mut RpcNode<R> {
        &mut self.rpc
    }

    /// Whether this node stores records (it turned persistent at least once).
    pub fn has_storage(&self) -> bool {
        self.storage.is_some()
    }

    /// What the mutable and immutable stores hold (zero before the node has storage).
    pub fn value_store_usage(&self) -> ValueStoreUsage {
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

    /// The limits of this node's stores (from its `maxSize` and `maxAge`).
    pub fn store_limits(&self) -> &NodeStoreLimits {
        &self.limits
    }

    // ----- outputs -----

    /// The next datagram to send: dht-rpc's first, then UDX streams'.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.rpc.poll_transmit() {
            return Some(t);
        }
        let mut buf = [0u8; MAX_DATAGRAM];
        let (_, t) = self.connect.udx.poll_transmit(self.last_now, &mut buf)?;
        let SocketAddr::V4(to) = t.to else {
            return self.poll_transmit();
        };
        Some(Transmit {
            socket: super::connect::socket_kind(t.socket),
            to,
            payload: buf[..t.len].to_vec(),
            ttl: None,
        })
    }

    /// Like [`poll_transmit`](Self::poll_transmit), but writes the datagram into `buf` (no
    /// allocation for UDX packets): the hot path of a driver that batches sends. `buf` should
    /// hold [`MAX_DATAGRAM`] bytes; a dht-rpc datagram longer than `buf` is dropped (as a
    /// failed send would be; the protocol retries).
    pub fn poll_transmit_into(&mut self, buf: &mut [u8]) -> Option<DatagramOut> {
        while let Some(t) = self.rpc.poll_transmit() {
            let Some(dst) = buf.get_mut(..t.payload.len()) else {
                continue;
            };
            dst.copy_from_slice(&t.payload);
            return Some(DatagramOut {
                socket: t.socket,
                to: t.to,
                len: t.payload.len(),
                ttl: t.ttl,
            });
        }
        loop {
            let (_, t) = self.connect.udx.poll_transmit(self.last_now, buf)?;
            if let SocketAddr::V4(to) = t.to {
                return Some(DatagramOut {
                    socket: super::connect::socket_kind(t.socket),
                    to,
                    len: t.len,
                    ttl: None,
                });
            }
        }
    }

    /// The next pool-socket command. Drivers drain these before
    /// [`poll_transmit`](Self::poll_transmit), so a socket is bound before anything is sent
    /// from it.
    pub fn poll_socket_command(&mut self) -> Option<super::SocketCommand> {
        self.pool.poll_command()
    }

    /// A pool socket could not be bound, or failed: whatever used it gives up.
    pub fn socket_failed(&mut self, now: Instant, id: u32) {
        self.last_now = now;
        if self.pool.failed(id) {
            self.on_pool_socket_failed(now, id);
        }
        self.process(now);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let rpc = self.rpc.poll_timeout()?;
        let mut t = rpc.min(self.forwards.poll_timeout());
        if let Some(s) = &self.storage {
            t = t.min(s.poll_timeout());
        }
        if let Some(c) = self.connect_poll_timeout() {
            t = t.min(c);
        }
        Some(t)
    }

    // ----- inputs -----

    /// Feeds a received datagram.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        self.last_now = now;
        if let SocketKind::Pool(id) = socket {
            // A pool socket also carries 1-byte holepunch probes (socket-pool.js).
            if bytes.len() == 1 {
                self.handle_probe(now, id, from);
                return;
            }
            if !self.pool.contains(id) {
                return;
            }
        }
        // One socket carries both protocols; UDX packets start with 0xFF, dht-rpc's never do.
        if bytes.first() == Some(&0xff) {
            // libudx would read the first 2,048 bytes of a longer packet as a packet of its
            // own (stream data cut short); no UDX peer sends one (packets are at most 1,500
            // bytes), so it is dropped whole. dht-rpc's ceiling is the rpc layer's.
            if bytes.len() > MAX_DATAGRAM_LEN || self.handle_udx(now, socket, from, bytes) {
                return;
            }
        }
        self.rpc.handle_datagram(now, socket, from, bytes);
        self.process(now);
    }

    /// Runs due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.connect_timeout(now);
        self.rpc.handle_timeout(now);
        self.forwards.handle_timeout(now);
        if let Some(s) = self.storage.as_mut() {
            s.handle_timeout(now);
        }
        self.process(now);
    }

    /// Stops the node. Open connections are destroyed at once (each peer gets a DESTROY).
    /// Unless `force`, first unannounces every record this node announced —
    /// the unannounces are sent, then the node is destroyed on the next
    /// [`finish_destroy`](Self::finish_destroy) (give them time to land) .
    pub fn destroy(&mut self, now: Instant, force: bool) -> Vec<OpId> {
        self.destroy_connections();
        let mut ops = Vec::new();
        if !force {
            // Servers close first (each unannounces its key), then our own announces.
            for server in self.connect.server_ids() {
                if let Some(op) = self.close_server(now, server) {
                    ops.push(op);
                }
            }
            let announced: Vec<([u8; 32], KeyPair)> = self
                .announced
                .iter()
                .map(|((t, _), kp)| (*t, kp.clone()))
                .collect();
            for (topic, kp) in announced {
                ops.push(self.unannounce(now, topic, &kp));
            }
        }
        if ops.is_empty() {
            self.finish_destroy();
        }
        ops
    }

    /// Destroys the rpc node: every operation fails with [`OpError::Destroyed`].
    pub fn finish_destroy(&mut self) {
        self.rpc.destroy();
        let ops: Vec<OpId> = self.ops.keys().copied().collect();
        for op in ops {
            self.finish_op(op, Err(OpError::Destroyed));
        }
        self.by_query.clear();
        self.by_request.clear();
        while self.rpc.poll_event().is_some() {}
        self.pool.close_all();
    }

    /// Whether the node was destroyed.
    pub fn is_destroyed(&self) -> bool {
        self.rpc.is_destroyed()
    }

    // ----- client operations -----

    fn new_op(
        &mut self,
        now: Instant,
        kind: OpKind,
        target: [u8; 32],
        command: u64,
        value: Option<Vec<u8>>,
    ) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        let mut spec = QuerySpec::new(NodeId(target), command);
        spec.value = value;
        let query = self.rpc.query(now, spec);
        self.by_query.insert(query, op);
        self.ops.insert(
            op,
            Op {
                kind,
                target,
                query: Some(query),
                pending: 0,
                succeeded: 0,
                accepted: 0,
                seq_too_low: 0,
                seq_reused: 0,
                last_error: None,
                query_done: false,
                closest_nodes: Vec::new(),
            },
        );
        self.process(now);
        op
    }

    /// `lookup(topic)`: peers announced under a topic arrive as [`DhtEvent::LookupReply`].
    pub fn lookup(&mut self, now: Instant, topic: [u8; 32]) -> OpId {
        self.new_op(now, OpKind::Lookup, topic, command::LOOKUP, None)
    }

    /// `findPeer(publicKey)`: the record of a server, from its relays.
    pub fn find_peer(&mut self, now: Instant, public_key: &[u8; 32]) -> OpId {
        let target = sign::target_of_key(public_key);
        self.new_op(now, OpKind::FindPeer, target, command::FIND_PEER, None)
    }

    /// `announce(topic, keyPair, relayAddresses)`: a lookup, then a signed ANNOUNCE to each of
    /// the closest nodes.
    pub fn announce(
        &mut self,
        now: Instant,
        topic: [u8; 32],
        key_pair: &KeyPair,
        relays: Vec<SocketAddrV4>,
        bump: u64,
    ) -> OpId {
        self.announced
            .insert((topic, key_pair.public_key()), key_pair.clone());
        let kind = OpKind::Announce {
            key_pair: key_pair.clone(),
            relays,
            bump,
        };
        self.new_op(now, kind, topic, command::LOOKUP, None)
    }

    /// `unannounce(topic, keyPair)`: removes our record locally and from every node that lists it.
    pub fn unannounce(&mut self, now: Instant, topic: [u8; 32], key_pair: &KeyPair) -> OpId {
        let pk = key_pair.public_key();
        self.announced.remove(&(topic, pk));
        if let Some(s) = self.storage.as_mut() {
            s.records.remove(&topic, &pk);
        }
        if sign::target_of_key(&pk) == topic {
            self.forwards.delete(&topic);
        }
        self.new_op(
            now,
            OpKind::Unannounce {
                key_pair: key_pair.clone(),
            },
            topic,
            command::LOOKUP,
            None,
        )
    }

    /// `immutablePut(value)`: stores `value` under `H(value)` at the closest nodes. A value
    /// whose put or get could not fit in a datagram (more than
    /// [`MAX_IMMUTABLE_VALUE`](value_size::MAX_IMMUTABLE_VALUE) bytes) fails at once with
    /// [`OpError::ValueTooLarge`], before anything is sent.
    pub fn immutable_put(&mut self, now: Instant, value: Vec<u8>) -> OpId {
        let persistent = !self.rpc.is_ephemeral();
        if let Err(e) = value_size::check_immutable(value.len(), persistent) {
            return self.refuse_op(OpError::ValueTooLarge(e));
        }
        let target = sign::target_of_value(&value);
        self.new_op(
            now,
            OpKind::ImmutablePut { value },
            target,
            command::IMMUTABLE_GET,
            None,
        )
    }

    /// `immutableGet(hash)`: the first value whose hash matches.
    pub fn immutable_get(&mut self, now: Instant, hash: [u8; 32]) -> OpId {
        self.new_op(
            now,
            OpKind::ImmutableGet,
            hash,
            command::IMMUTABLE_GET,
            None,
        )
    }

    /// `mutablePut(keyPair, value, {seq})`: a signed record under `H(publicKey)`. Fails at
    /// once, before anything is sent, with [`OpError::SeqOutOfRange`] for a `seq` above
    /// [`MAX_SEQ`](super::MAX_SEQ) (every node drops it), and with [`OpError::ValueTooLarge`]
    /// for a value whose put or get could not fit in a datagram (more than
    /// [`max_mutable_value(seq)`](value_size::max_mutable_value) bytes, 1,774–1,782).
    pub fn mutable_put(
        &mut self,
        now: Instant,
        key_pair: &KeyPair,
        value: Vec<u8>,
        seq: u64,
    ) -> OpId {
        if let Err(e) = super::check_seq(seq) {
            return self.refuse_op(e);
        }
        let persistent = !self.rpc.is_ephemeral();
        if let Err(e) = value_size::check_mutable(value.len(), seq, persistent) {
            return self.refuse_op(OpError::ValueTooLarge(e));
        }
        let public_key = key_pair.public_key();
        let signature = sign::sign_mutable(key_pair, seq, &value);
        let signed = MutablePutRequest {
            public_key,
            seq,
            value,
            signature,
        }
        .to_bytes();
        let target = sign::target_of_key(&public_key);
        let kind = OpKind::MutablePut {
            key_pair_public: public_key,
            seq,
            signature,
            signed,
        };
        self.new_op(
            now,
            kind,
            target,
            command::MUTABLE_GET,
            Some(messages::encode_mutable_get_request(0)),
        )
    }

    /// `mutableGet(publicKey, {seq, latest})`: the record with at least `seq`; with `latest`,
    /// the highest seq any node has. A `seq` above [`MAX_SEQ`](super::MAX_SEQ) fails at once
    /// with [`OpError::SeqOutOfRange`] (every node would drop the request).
    pub fn mutable_get(
        &mut self,
        now: Instant,
        public_key: [u8; 32],
        seq: u64,
        latest: bool,
    ) -> OpId {
        if let Err(e) = super::check_seq(seq) {
            return self.refuse_op(e);
        }
        let target = sign::target_of_key(&public_key);
        let kind = OpKind::MutableGet {
            public_key,
            seq,
            latest,
            best: None,
        };
        self.new_op(
            now,
            kind,
            target,
            command::MUTABLE_GET,
            Some(messages::encode_mutable_get_request(seq)),
        )
    }

    /// An operation that fails before it starts: its [`DhtEvent::OpDone`] is queued at once.
    fn refuse_op(&mut self, error: OpError) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        self.events.push_back(DhtEvent::OpDone {
            op,
            result: Err(error),
        });
        op
    }

    /// Abandons an operation: its query stops and no event follows.
    pub fn cancel(&mut self, now: Instant, op: OpId) {
        if let Some(o) = self.ops.remove(&op) {
            if let Some(q) = o.query {
                self.by_query.remove(&q);
                self.rpc.cancel_query(q);
            }
            self.by_request.retain(|_, v| *v != op);
        }
        self.process(now);
    }

    // ----- event pump -----

    /// Routes every rpc event: requests to the server handlers, query output to operations.
    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.rpc.poll_event() {
            match ev {
                RpcEvent::Request(req) => self.on_request(now, req),
                RpcEvent::QueryReply { query, reply } => {
                    if let Some(op) = self.by_query.get(&query).copied() {
                        self.on_op_reply(now, op, reply);
                    } else if let Some(conn) = self.connect.attempt_for_query(&query) {
                        self.on_attempt_query_reply(now, conn, &reply);
                    } else if !self.connect.is_server_query(&query) {
                        self.events
                            .push_back(DhtEvent::Rpc(RpcEvent::QueryReply { query, reply }));
                    }
                }
                RpcEvent::QueryDone { query, result } => {
                    if let Some(op) = self.by_query.remove(&query) {
                        self.on_op_query_done(now, op, result.map(|r| r.closest_replies));
                    } else if let Some(conn) = self.connect.take_attempt_query(&query) {
                        self.on_attempt_query_done(now, conn);
                    } else if let Some(server) = self.connect.server_for_query(&query) {
                        let closest = result.map(|r| r.closest_replies).unwrap_or_default();
                        self.on_server_query_done(now, server, closest);
                    } else {
                        self.events
                            .push_back(DhtEvent::Rpc(RpcEvent::QueryDone { query, result }));
                    }
                }
                RpcEvent::Response { request, result } => {
                    if let Some(op) = self.by_request.remove(&request) {
                        self.on_commit_done(op, result);
                    } else if let Some(conn) = self.connect.take_attempt_request(&request) {
                        self.on_attempt_response(now, request, conn, result);
                    } else if let Some(owner) = self.connect.punch_requests.remove(&request) {
                        self.on_punch_response(now, request, owner, result);
                    } else if let Some(server) = self.connect.server_for_request(&request) {
                        self.on_server_response(now, server, request, result);
                    } else {
                        self.events
                            .push_back(DhtEvent::Rpc(RpcEvent::Response { request, result }));
                    }
                }
                RpcEvent::Persistent => {
                    if self.storage.is_none() {
                        self.storage = Some(Storage::new(&self.limits, now));
                    }
                    self.events.push_back(DhtEvent::Rpc(RpcEvent::Persistent));
                }
                other => self.events.push_back(DhtEvent::Rpc(other)),
            }
        }
    }

    fn on_op_reply(&mut self, now: Instant, op_id: OpId, reply: QueryReply) {
        let Some(op) = self.ops.get_mut(&op_id) else {
            return;
        };
        let Some(value) = reply.value.as_deref() else {
            return;
        };
        match &mut op.kind {
            OpKind::Lookup | OpKind::Announce { .. } | OpKind::Unannounce { .. } => {
                let Ok(l) = WireLookupReply::decode(value) else {
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
                if let OpKind::Unannounce { key_pair } = &op.kind {
                    let pk = key_pair.public_key();
                    let found = lookup.peers.len() >= MAX_LOOKUP_PEERS
                        || lookup.peers.iter().any(|p| p.public_key == pk);
                    if let (true, Some(token), Some(id)) = (found, lookup.token, lookup.from_id) {
                        let kp = key_pair.clone();
                        let target = op.target;
                        let peer = Peer {
                            public_key: pk,
                            relay_addresses: Vec::new(),
                        };
                        let signature =
                            sign::sign_unannounce(&kp, &target, &id.0, &token, &peer, None);
                        let value = Announce {
                            peer: Some(peer),
                            refresh: None,
                            signature: Some(signature),
                            bump: 0,
                        }
                        .to_bytes();
                        self.commit(now, op_id, lookup.from, token, command::UNANNOUNCE, value);
                    }
                }
                self.events.push_back(DhtEvent::LookupReply {
                    op: op_id,
                    reply: lookup,
                });
            }
            OpKind::FindPeer => {
                let Ok(peer) = Peer::decode(value) else {
                    return;
                };
                let reply = FindPeerReply {
                    from: reply.from,
                    to: reply.to,
                    token: reply.token,
                    peer,
                };
                self.events
                    .push_back(DhtEvent::FindPeerReply { op: op_id, reply });
            }
            OpKind::ImmutablePut { .. } => {}
            OpKind::ImmutableGet => {
                if hash(value) == op.target {
                    let found = ImmutableValue {
                        value: value.to_vec(),
                        from: reply.from,
                    };
                    self.finish_op(op_id, Ok(OpOutput::ImmutableGet(Some(found))));
                }
            }
            OpKind::MutablePut { .. } => {}
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
                    self.finish_op(op_id, Ok(OpOutput::MutableGet(Some(found))));
                } else {
                    *best = Some(found);
                }
            }
        }
    }

    fn on_op_query_done(
        &mut self,
        now: Instant,
        op_id: OpId,
        result: Result<Vec<QueryReply>, QueryError>,
    ) {
        let Some(op) = self.ops.get_mut(&op_id) else {
            return;
        };
        op.query = None;
        op.query_done = true;
        let closest = match result {
            Ok(c) => c,
            Err(e) => {
                self.finish_op(op_id, Err(OpError::Query(e)));
                return;
            }
        };
        op.closest_nodes = closest.iter().map(|r| r.from).collect();
        let target = op.target;
        // Operations that commit to the closest nodes.
        let commit: Option<(u64, Vec<Commit>)> = match &op.kind {
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
        match commit {
            Some((cmd, list)) => {
                if closest.is_empty() {
                    self.finish_op(op_id, Err(OpError::TooFewNodes));
                    return;
                }
                // Replies without a token count as failed commits, as in the reference.
                let missing = closest.len() - list.len();
                if let Some(op) = self.ops.get_mut(&op_id) {
                    op.last_error = if missing > 0 {
                        Some(RequestError::Timeout)
                    } else {
                        None
                    };
                }
                for c in list {
                    self.commit(now, op_id, c.to, c.token, cmd, c.value);
                }
                self.maybe_finish(op_id);
            }
            None => self.maybe_finish(op_id),
        }
    }

    fn commit(
        &mut self,
        now: Instant,
        op_id: OpId,
        to: SocketAddrV4,
        token: [u8; 32],
        cmd: u64,
        value: Vec<u8>,
    ) {
        let Some(op) = self.ops.get_mut(&op_id) else {
            return;
        };
        op.pending += 1;
        let mut spec = RequestSpec::new(to, cmd);
        spec.token = Some(token);
        spec.target = Some(NodeId(op.target));
        spec.value = Some(value);
        let rid = self.rpc.request(now, spec);
        self.by_request.insert(rid, op_id);
    }

    fn on_commit_done(&mut self, op_id: OpId, result: Result<QueryReply, RequestError>) {
        let Some(op) = self.ops.get_mut(&op_id) else {
            return;
        };
        op.pending = op.pending.saturating_sub(1);
        // `dht.request` resolves for any response, error codes included.
        match result {
            Ok(r) => {
                op.succeeded += 1;
                match r.error {
                    0 => op.accepted += 1,
                    ERROR_SEQ_TOO_LOW => op.seq_too_low += 1,
                    ERROR_SEQ_REUSED => op.seq_reused += 1,
                    _ => {}
                }
            }
            Err(e) => op.last_error = Some(e),
        }
        self.maybe_finish(op_id);
    }

    /// Ends an operation once its query ended and its commits settled.
    fn maybe_finish(&mut self, op_id: OpId) {
        let Some(op) = self.ops.get(&op_id) else {
            return;
        };
        if !op.query_done || op.pending > 0 {
            return;
        }
        let closest_nodes = op.closest_nodes.clone();
        let commits_failed = op.succeeded == 0 && !closest_nodes.is_empty();
        let result = match &op.kind {
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
                    op.last_error.unwrap_or(RequestError::Timeout),
                ))
            }
            // Every node refused the record because it holds a newer one: say so (the reference
            // resolves here; the wire exchange is the same).
            OpKind::MutablePut { .. } if op.accepted == 0 && op.seq_too_low > 0 => {
                Err(OpError::SeqTooLow)
            }
            OpKind::MutablePut { .. } if op.accepted == 0 && op.seq_reused > 0 => {
                Err(OpError::SeqReused)
            }
            OpKind::Announce { .. } => Ok(OpOutput::Announce { closest_nodes }),
            OpKind::ImmutablePut { .. } => Ok(OpOutput::ImmutablePut {
                hash: op.target,
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
        self.finish_op(op_id, result);
    }

    fn finish_op(&mut self, op_id: OpId, result: Result<OpOutput, OpError>) {
        let Some(op) = self.ops.remove(&op_id) else {
            return;
        };
        if let Some(q) = op.query {
            self.by_query.remove(&q);
            if !self.rpc.is_destroyed() {
                self.rpc.cancel_query(q);
            }
        }
        self.by_request.retain(|_, v| *v != op_id);
        self.events
            .push_back(DhtEvent::OpDone { op: op_id, result });
    }

    // ----- server side -----

    fn reply(&mut self, req: &IncomingRequest, value: Option<Vec<u8>>) {
        self.rpc.reply(req, ReplySpec::value(value));
    }

    fn reply_bare(&mut self, req: &IncomingRequest) {
        self.rpc.reply(
            req,
            ReplySpec {
                token: false,
                closer_nodes: false,
                ..ReplySpec::value(None)
            },
        );
    }

    fn on_request(&mut self, now: Instant, req: IncomingRequest) {
        match req.command {
            command::PEER_HANDSHAKE => return self.on_peer_handshake(&req),
            command::PEER_HOLEPUNCH => return self.on_peer_holepunch(&req),
            c if c > command::PLUGIN => {
                if self.deliver_unknown {
                    self.events.push_back(DhtEvent::Rpc(RpcEvent::Request(req)));
                } else {
                    self.rpc
                        .reply(&req, ReplySpec::error(ERROR_UNKNOWN_COMMAND_CODE));
                }
                return;
            }
            _ => {}
        }
        let Some(node_id) = self.rpc.id() else {
            return self
                .rpc
                .reply(&req, ReplySpec::error(ERROR_UNKNOWN_COMMAND_CODE));
        };
        if self.storage.is_none() {
            return self
                .rpc
                .reply(&req, ReplySpec::error(ERROR_UNKNOWN_COMMAND_CODE));
        }
        // Every storage command needs a target; PLUGIN has no plugins registered here. Both drop.
        let Some(target) = req.target.map(|t| t.0) else {
            return;
        };
        match req.command {
            command::FIND_PEER => {
                let record = self.forwards.get(&target).map(|f| f.record.clone());
                self.reply(&req, record);
            }
            command::LOOKUP => self.on_lookup(&req, target),
            command::ANNOUNCE => self.on_announce(now, &req, target, node_id),
            command::UNANNOUNCE => self.on_unannounce(&req, target, node_id),
            command::MUTABLE_PUT => self.on_mutable_put(&req, target),
            command::MUTABLE_GET => {
                let Some(value) = req.value.as_deref() else {
                    return;
                };
                let Ok(seq) = messages::decode_mutable_get_request(value) else {
                    return;
                };
                let stored = self
                    .storage
                    .as_mut()
                    .and_then(|s| s.mutables.get(&target).cloned());
                let reply = stored
                    .filter(|bytes| MutableGetResponse::decode(bytes).is_ok_and(|r| r.seq >= seq));
                self.reply(&req, reply);
            }
            command::IMMUTABLE_PUT => {
                if req.token.is_none() {
                    return;
                }
                let Some(value) = req.value.as_ref() else {
                    return;
                };
                // A value whose get reply could not fit a datagram is never stored (the
                // reference stores it and answers gets no reference node can receive).
                if value_size::immutable_get_reply_len(value.len()) > MAX_DATAGRAM_LEN {
                    return;
                }
                if hash(value) != target {
                    return;
                }
                if let Some(s) = self.storage.as_mut() {
                    s.immutables.set(target, value.clone());
                }
                self.reply(&req, None);
            }
            command::IMMUTABLE_GET => {
                let value = self
                    .storage
                    .as_mut()
                    .and_then(|s| s.immutables.get(&target).cloned());
                self.reply(&req, value);
            }
            _ => {}
        }
    }

    /// The router's relay role for PEER_HANDSHAKE (`router.js` `onpeerhandshake`), stateless:
    /// the client's address travels inside the messages. Handshakes for a server hosted on
    /// this node are the connect layer's.
    fn on_peer_handshake(&mut self, req: &IncomingRequest) {
        let Some(Ok(hs)) = req.value.as_deref().map(HandshakeEnvelope::decode) else {
            return;
        };
        let route = req.target.and_then(|t| self.forwards.get(&t.0).cloned());
        if route.as_ref().is_some_and(|f| f.relay.is_none()) {
            // A server hosted on this node.
            let server = req
                .target
                .and_then(|t| self.connect.server_for_target(&t.0));
            if let Some(server) = server {
                let now = self.last_now;
                self.on_server_handshake(now, req, hs, server);
            }
            return;
        }
        let relay = route.and_then(|f| f.relay);
        match hs.mode {
            mode::FROM_CLIENT => {
                let Some(next) = hs.relay_address.or(relay) else {
                    // Help the client route: an empty reply with closer nodes.
                    return self.rpc.reply(
                        req,
                        ReplySpec {
                            token: false,
                            ..ReplySpec::value(None)
                        },
                    );
                };
                let value = HandshakeEnvelope {
                    mode: mode::FROM_RELAY,
                    noise: hs.noise,
                    peer_address: Some(req.from),
                    relay_address: None,
                };
                self.rpc.relay(req, Some(value.to_bytes()), next, None);
            }
            mode::FROM_RELAY => {
                let Some(next) = relay else { return };
                let value = HandshakeEnvelope {
                    mode: mode::FROM_SECOND_RELAY,
                    noise: hs.noise,
                    peer_address: hs.peer_address,
                    relay_address: Some(req.from),
                };
                self.rpc.relay(req, Some(value.to_bytes()), next, None);
            }
            mode::FROM_SERVER => {
                let Some(client) = hs.peer_address else {
                    return;
                };
                let value = HandshakeEnvelope {
                    mode: mode::REPLY,
                    noise: hs.noise,
                    peer_address: Some(req.from),
                    relay_address: None,
                };
                self.rpc.reply(req, bare_to(client, value.to_bytes()));
            }
            _ => {}
        }
    }

    /// The router's relay role for PEER_HOLEPUNCH (`router.js` `onpeerholepunch`).
    fn on_peer_holepunch(&mut self, req: &IncomingRequest) {
        let Some(Ok(hp)) = req.value.as_deref().map(HolepunchEnvelope::decode) else {
            return;
        };
        let route = req.target.and_then(|t| self.forwards.get(&t.0).cloned());
        let relay = route.as_ref().and_then(|f| f.relay);
        match hp.mode {
            mode::FROM_CLIENT => {
                // A node forwards to any address the client names, as the reference does.
                let Some(next) = hp.peer_address.or(relay) else {
                    return;
                };
                let value = HolepunchEnvelope {
                    mode: mode::FROM_RELAY,
                    id: hp.id,
                    payload: hp.payload,
                    peer_address: Some(req.from),
                };
                self.rpc.relay(req, Some(value.to_bytes()), next, None);
            }
            mode::FROM_SERVER => {
                let Some(client) = hp.peer_address else {
                    return;
                };
                let value = HolepunchEnvelope {
                    mode: mode::REPLY,
                    id: hp.id,
                    payload: hp.payload,
                    peer_address: Some(req.from),
                };
                self.rpc.reply(req, bare_to(client, value.to_bytes()));
            }
            // FROM_RELAY is for the node hosting the server (the connect layer).
            mode::FROM_RELAY if route.is_some_and(|f| f.relay.is_none()) => {
                let now = self.last_now;
                self.on_server_holepunch(now, req, hp);
            }
            _ => {}
        }
    }

    fn on_lookup(&mut self, req: &IncomingRequest, target: [u8; 32]) {
        let Some(s) = self.storage.as_mut() else {
            return;
        };
        let rng = self.rpc.rng();
        let mut records: Vec<Vec<u8>> = s
            .records
            .get(&target, MAX_LOOKUP_PEERS, rng)
            .into_iter()
            .map(|r| r.to_vec())
            .collect();
        let bump = s.bumps.get(&target).copied().unwrap_or(0);
        if records.len() < MAX_LOOKUP_PEERS {
            if let Some(fwd) = self.forwards.get(&target) {
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
        self.reply(req, value);
    }

    fn on_announce(
        &mut self,
        now: Instant,
        req: &IncomingRequest,
        target: [u8; 32],
        node_id: NodeId,
    ) {
        let Some(token) = req.token else { return };
        let Some(Ok(ann)) = req.value.as_deref().map(Announce::decode) else {
            return;
        };
        let Some(mut peer) = ann.peer else {
            if let Some(refresh) = ann.refresh {
                self.on_refresh(req, refresh);
            }
            return;
        };
        let Some(signature) = ann.signature else {
            return;
        };
        if !sign::verify_announce(
            &target,
            &node_id.0,
            &token,
            &peer,
            ann.refresh.as_ref(),
            &signature,
        ) {
            return;
        }
        peer.relay_addresses.truncate(MAX_RELAY_ADDRESSES);
        let record = peer.to_bytes();
        let announce_self = sign::target_of_key(&peer.public_key) == target;
        let now_ms = self.unix_ms(now);
        let Some(s) = self.storage.as_mut() else {
            return;
        };
        if announce_self {
            self.forwards.set(
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
        self.reply_bare(req);
    }

    fn on_refresh(&mut self, req: &IncomingRequest, refresh: [u8; 32]) {
        let active = hash(&refresh);
        let Some(s) = self.storage.as_mut() else {
            return;
        };
        let Some(r) = s.refreshes.get(&active).cloned() else {
            return;
        };
        let public_key: [u8; 32] = match r.record.get(..32).and_then(|b| b.try_into().ok()) {
            Some(pk) => pk,
            None => return,
        };
        if r.announce_self {
            self.forwards.set(
                r.target,
                Forward {
                    relay: Some(req.from),
                    record: r.record.clone(),
                },
            );
            s.records.remove(&r.target, &public_key);
        } else {
            s.records.add(r.target, public_key, r.record.clone());
        }
        s.refreshes.delete(&active);
        s.refreshes.set(refresh, r);
        self.reply_bare(req);
    }

    fn on_unannounce(&mut self, req: &IncomingRequest, target: [u8; 32], node_id: NodeId) {
        let Some(token) = req.token else { return };
        let Some(Ok(ann)) = req.value.as_deref().map(Announce::decode) else {
            return;
        };
        let (Some(peer), Some(signature)) = (ann.peer, ann.signature) else {
            return;
        };
        if !sign::verify_unannounce(
            &target,
            &node_id.0,
            &token,
            &peer,
            ann.refresh.as_ref(),
            &signature,
        ) {
            return;
        }
        if sign::target_of_key(&peer.public_key) == target {
            self.forwards.delete(&target);
        }
        if let Some(s) = self.storage.as_mut() {
            s.records.remove(&target, &peer.public_key);
        }
        self.reply_bare(req);
    }

    fn on_mutable_put(&mut self, req: &IncomingRequest, target: [u8; 32]) {
        if req.token.is_none() {
            return;
        }
        let Some(Ok(p)) = req.value.as_deref().map(MutablePutRequest::decode) else {
            return;
        };
        // As for immutable values: never store what a get could not return.
        if value_size::mutable_get_reply_len(p.value.len(), p.seq) > MAX_DATAGRAM_LEN {
            return;
        }
        if sign::target_of_key(&p.public_key) != target {
            return;
        }
        if !sign::verify_mutable(&p.public_key, p.seq, &p.value, &p.signature) {
            return;
        }
        let Some(s) = self.storage.as_mut() else {
            return;
        };
        if let Some(existing) = s
            .mutables
            .get(&target)
            .and_then(|b| MutableGetResponse::decode(b).ok())
        {
            if existing.seq == p.seq && existing.value != p.value {
                return self.rpc.reply(req, ReplySpec::error(ERROR_SEQ_REUSED));
            }
            if p.seq < existing.seq {
                return self.rpc.reply(req, ReplySpec::error(ERROR_SEQ_TOO_LOW));
            }
        }
        let stored = MutableGetResponse {
            seq: p.seq,
            value: p.value,
            signature: p.signature,
        }
        .to_bytes();
        s.mutables.set(target, stored);
        self.reply(req, None);
    }
}

/// A response to an arbitrary address with no token and no closer nodes (`reply(v, {to})`).
pub(super) fn bare_to(to: SocketAddrV4, value: Vec<u8>) -> ReplySpec {
    ReplySpec {
        token: false,
        closer_nodes: false,
        to: Some(to),
        ..ReplySpec::value(Some(value))
    }
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
