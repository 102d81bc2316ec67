//! The HyperDHT node: the one owner of everything a node is — the dht-rpc node, the records
//! and the router, client operations, servers, client connects and connections, pool sockets —
//! with the input/output API ([`DhtNode`]'s documentation says how to drive it).
//!
//! The node itself decides little: it routes each input to its owner (a request to the records
//! or the router, a query's reply to its operation or connect, a response to whoever sent the
//! request, a datagram to UDX or dht-rpc, a probe to the puncher's owner, timers to all) and
//! applies the actions those machines return, in order. It owns the id maps that make that
//! routing possible: dht-rpc's query and request ids to their owners, handshake keys to the
//! firewall question ids it hands out, connection ids.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};

use super::budget::{ConnectionBudget, DEFAULT_CONNECTION_BUDGET};
use super::client::{ClientAction, ClientAttempt, ClientRequest, ConnectOptions, EarlyPacket};
use super::connection::{ConnError, ConnectionInfo, Connections, TransportInfo};
use super::env::{Env, NodeFacts};
use super::event::{ConnectEvent, DhtEvent};
use super::ids::{ConnId, ServerId};
use super::messages::{self, command, MutablePutRequest, Peer};
use super::ops::{Op, OpAction, OpError, OpId, OpKind, OpReply};
use super::pool::{socket_kind, udx_socket, SocketCommand, SocketPool};
use super::records::{RecordReply, Records};
use super::router::{Routed, Router};
use super::server::{
    Accepted, HandshakeKey, Server, ServerAction, ServerOptions, ServerRequest,
    MAX_SERVER_HANDSHAKES,
};
use super::sign;
use super::store::{NodeStoreLimits, StoreBytes, StoreLimits, ValueStoreUsage};
use super::value_size;

mod relay;
mod relay_client;
mod relay_link;
mod relay_service;
mod relay_session;

use crate::connect::puncher::PROBE;
use crate::connect::{ConnectError, HandshakeResult, RandomPunchLimiter};
use crate::crypto::KeyPair;
use crate::rpc::{
    IncomingRequest, NodeId, QueryId, QueryOptions, QuerySpec, ReplySpec, RequestId, RequestSpec,
    RpcConfig, RpcEvent, RpcNode, SocketKind,
};
use crate::udx::{self, Incoming, StreamEvent, UdxStream};
use crate::wire::{ERROR_UNKNOWN_COMMAND, MAX_DATAGRAM_LEN};
use crate::Instant;
use relay_link::RelayLink;
pub use relay_link::RelayPath;
use relay_service::RelayService;
pub use relay_service::RelayServiceStats;

/// Largest datagram [`DhtNode::poll_transmit`] writes: the datagram ceiling
/// ([`MAX_DATAGRAM_LEN`], 2,048 bytes) — dht-rpc datagrams never exceed it, UDX packets are at
/// most 1,500 bytes.
pub const MAX_DATAGRAM: usize = MAX_DATAGRAM_LEN;
/// Most connections (connects in progress and open connections) a node holds.
const MAX_CONNECTIONS: usize = 16_384;
/// Server keys whose handshake route a node remembers (each a 32-byte target and an address).
const MAX_HANDSHAKE_ROUTES: usize = 256;
/// How long a server connection waits for the client's first UDX packet.
const SERVER_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// A datagram written into the caller's buffer by [`DhtNode::poll_transmit`].
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
    /// Node-wide byte budget of the record stores (default
    /// [`DEFAULT_STORE_BUDGET`](super::store::DEFAULT_STORE_BUDGET), 64 MiB; see
    /// [`NodeStoreLimits::budget`]).
    pub store_budget: Option<usize>,
    /// Node-wide budget of connection buffers: the receive windows plus send buffers of every
    /// UDX stream (default
    /// [`DEFAULT_CONNECTION_BUDGET`](super::budget::DEFAULT_CONNECTION_BUDGET), 512 MiB; see
    /// [`ConnectionBudget`](super::budget::ConnectionBudget)).
    pub connection_budget: Option<usize>,
    /// Handshakes the node's servers track at once, answered ones included for 10 s (default
    /// [`MAX_SERVER_HANDSHAKES`], 4096). At the cap the oldest answered handshake is forgotten
    /// early if it is at least 5 s old (kept only to answer duplicates of its msg1); otherwise
    /// a new handshake is dropped unanswered. A node that serves more connects than that every
    /// 5 s — a blind relay for a large swarm, whose every relayed pair is two connects to it —
    /// needs more.
    pub max_server_handshakes: Option<usize>,
}

/// How much state the connect path holds (bounded under floods; see
/// `core/tests/hostile_connect.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectStats {
    /// Server handshakes remembered (answered, pending, or punching).
    pub handshakes: usize,
    /// Of those, the ones with a holepunch running.
    pub server_punches: usize,
    /// Client connects in progress.
    pub attempts: usize,
    /// Connections (pending or open).
    pub connections: usize,
    /// Pool sockets open.
    pub pool_sockets: usize,
    /// Requests of the holepunch layer in flight.
    pub punch_requests: usize,
}

/// Who started a dht-rpc query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryOwner {
    /// A client operation.
    Op(OpId),
    /// A connect's FIND_PEER.
    FindPeer(ConnId),
    /// A server's announce cycle.
    Announce(ServerId),
}

/// Who sent a dht-rpc request, and what it is to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestOwner {
    /// A client operation's commit.
    Commit(OpId),
    /// A connect's.
    Client(ConnId, ClientRequest),
    /// A server's.
    Server(ServerId, ServerRequest),
}

impl RequestOwner {
    /// Whether the holepunch layer sent it (counted in [`ConnectStats::punch_requests`]).
    fn is_punch(&self) -> bool {
        matches!(
            self,
            RequestOwner::Client(
                _,
                ClientRequest::Holepunch { .. }
                    | ClientRequest::NatPing { .. }
                    | ClientRequest::AbortNotice
            ) | RequestOwner::Server(_, ServerRequest::NatPing { .. })
        )
    }
}

/// A HyperDHT node: dht-rpc, hyperdht's records and router, client operations, servers and
/// connections, as one deterministic state machine that does no I/O.
///
/// # Driving it
///
/// Whoever owns the sockets and the clock (a driver, the simulator, a test) runs this loop:
///
/// 1. **Inputs.** Feed each received datagram to [`handle_datagram`](Self::handle_datagram),
///    naming the socket it arrived on (the server or client socket, or a pool socket), and
///    call [`handle_timeout`](Self::handle_timeout) when the deadline of
///    [`poll_timeout`](Self::poll_timeout) has passed. User calls — [`lookup`](Self::lookup),
///    [`connect`](Self::connect), [`conn_write`](Self::conn_write), raw
///    [`query`](Self::query)s and [`request`](Self::request)s, … — are inputs too. Every input
///    takes `now`, which never goes backwards.
/// 2. **Socket commands.** After any input, drain
///    [`poll_socket_command`](Self::poll_socket_command) and bind or close pool sockets
///    *before* sending anything: the input may have opened the socket its datagrams leave
///    from. Report a socket that cannot be bound with [`socket_failed`](Self::socket_failed).
/// 3. **Transmits.** Drain [`poll_transmit`](Self::poll_transmit)`(now, buf)` until `None`
///    and send each `buf[..len]` from `socket` to `to` (with `ttl` when set); UDX paces its
///    packets by that `now`.
/// 4. **Events.** Drain [`poll_event`](Self::poll_event): dht-rpc events, operation replies
///    and results, and connection events ([`DhtEvent::Connect`]: a connect opened or failed,
///    a server accepted or asks its firewall, bytes are readable, room to write, the end, the
///    close). React with more inputs (read, write, `firewall_decision`, …) and go back to 2.
/// 5. **Sleep** until the next datagram or [`poll_timeout`](Self::poll_timeout) (read it again
///    after every input; `None` once destroyed).
///
/// To stop, call [`destroy`](Self::destroy): with `force` the node stops at once; otherwise keep
/// driving it while it closes its servers and unannounces its records, until
/// [`is_destroyed`](Self::is_destroyed).
#[derive(Debug)]
pub struct DhtNode<R> {
    rpc: RpcNode<R>,
    records: Records,
    router: Router,
    // ----- client operations
    ops: BTreeMap<OpId, Op>,
    next_op: u64,
    /// Records this node announced, unannounced on a graceful destroy.
    announced: BTreeMap<([u8; 32], [u8; 32]), KeyPair>,
    // ----- the connect path
    /// Client connects until their connection opens.
    attempts: BTreeMap<ConnId, ClientAttempt>,
    servers: BTreeMap<ServerId, Server>,
    /// Listening servers by key target.
    server_by_target: BTreeMap<[u8; 32], ServerId>,
    /// Firewall questions asked ([`ConnectEvent::Firewall`]): id → the server and handshake.
    firewall_questions: BTreeMap<u64, (ServerId, HandshakeKey)>,
    conns: Connections,
    pool: SocketPool,
    /// The node-wide random-punch throttle.
    random_punches: RandomPunchLimiter,
    /// [`DhtConfig::max_server_handshakes`].
    max_server_handshakes: usize,
    next_conn: u64,
    next_server: u64,
    next_firewall_question: u64,
    /// Local IPv4 addresses (with the server socket's port) to advertise for the LAN shortcut.
    local_addresses: Vec<SocketAddrV4>,
    /// The last consistent public address the NAT sampler reported, and whether the node was
    /// firewalled then (it samples its client socket while firewalled, its server socket
    /// otherwise): when it changes, the servers announce again (their relays would send
    /// handshakes to the old one).
    public_address: Option<(SocketAddrV4, bool)>,
    default_key_pair: Option<KeyPair>,
    /// Query options for the next operation started (see [`DhtNode::with_query_options`]).
    next_query_options: Option<QueryOptions>,
    // ----- routing
    /// dht-rpc queries by owner.
    queries: BTreeMap<QueryId, QueryOwner>,
    /// dht-rpc requests by owner.
    requests: BTreeMap<RequestId, RequestOwner>,
    events: VecDeque<DhtEvent>,
    /// The time of the latest datagram, timer or socket failure (calls without a `now`, such
    /// as [`conn_destroy`](Self::conn_destroy), act at it).
    last_now: Instant,
    /// Wall-clock milliseconds at `Instant::ZERO` (bumps are wall-clock timestamps).
    unix_epoch_offset_ms: u64,
    /// Hand requests for commands hyperdht doesn't know to the owner (else UNKNOWN_COMMAND).
    deliver_unknown: bool,
    /// A graceful destroy waits for these unannounces before the node stops.
    destroy_after: Option<Vec<OpId>>,
    /// The blind relay this node runs, if any ([`DhtNode::relay_server`]).
    relay: Option<RelayService>,
    /// Connects in progress whose connection will be message-framed.
    framed_connects: Vec<ConnId>,
    /// Blind-relay attempts by application connection.
    relay_links: BTreeMap<ConnId, RelayLink>,
    /// Our relay sessions by their connection.
    relay_conns: BTreeMap<ConnId, relay_session::RelaySession>,
    /// The reusable relay session per relay public key.
    relay_sessions: BTreeMap<[u8; 32], ConnId>,
    /// Per server key target: the DHT node that forwarded our last accepted handshake
    /// (at most [`MAX_HANDSHAKE_ROUTES`]).
    handshake_routes: BTreeMap<[u8; 32], SocketAddrV4>,
    /// Relays whose session is kept open (not idled out) for the listening servers that name
    /// them.
    relay_pins: BTreeMap<[u8; 32], alloc::collections::BTreeSet<ServerId>>,
}

/// An [`Env`] over the node's parts (a macro, so the machine the call goes to can be borrowed
/// from the node at the same time).
macro_rules! env {
    ($rpc:expr, $pool:expr, $random_punches:expr, $local:expr, $conns:expr, $relay:expr, $now:expr) => {{
        let firewalled = $rpc.is_firewalled();
        let remote_address = $rpc.remote_address();
        let randomized = matches!($rpc.public_address(), (Some(_), 0));
        let primary_socket = $rpc.primary_socket();
        let (rng, table) = $rpc.rng_and_table();
        Env {
            now: $now,
            rng,
            pool: $pool,
            random_punches: $random_punches,
            node: NodeFacts {
                firewalled,
                remote_address,
                randomized,
                primary_socket,
                local_addresses: $local,
                table,
                streams: &$conns.udx,
                relay: $relay.as_ref().map(|r| r.machine()),
                budget_spent: $conns.budget_spent(),
            },
        }
    }};
}

impl<R: RngCore + CryptoRng> DhtNode<R> {
    /// A node that starts bootstrapping at `now`.
    pub fn new(mut cfg: DhtConfig, rng: R, now: Instant) -> Self {
        let deliver_unknown = cfg.rpc.deliver_requests;
        cfg.rpc.deliver_requests = true;
        let mut limits = StoreLimits::for_node(cfg.max_size, cfg.max_age);
        if let Some(budget) = cfg.store_budget {
            limits.budget = budget;
        }
        let router = Router::new(limits.router.max_size, limits.router.max_age, now);
        let mut node = DhtNode {
            rpc: RpcNode::new(cfg.rpc, rng, now),
            records: Records::new(limits),
            router,
            ops: BTreeMap::new(),
            next_op: 0,
            announced: BTreeMap::new(),
            attempts: BTreeMap::new(),
            servers: BTreeMap::new(),
            server_by_target: BTreeMap::new(),
            firewall_questions: BTreeMap::new(),
            conns: Connections::with_budget(ConnectionBudget::new(
                cfg.connection_budget.unwrap_or(DEFAULT_CONNECTION_BUDGET),
            )),
            pool: SocketPool::default(),
            random_punches: RandomPunchLimiter::default(),
            max_server_handshakes: cfg.max_server_handshakes.unwrap_or(MAX_SERVER_HANDSHAKES),
            next_conn: 0,
            next_server: 0,
            next_firewall_question: 0,
            local_addresses: Vec::new(),
            public_address: None,
            default_key_pair: None,
            next_query_options: None,
            queries: BTreeMap::new(),
            requests: BTreeMap::new(),
            events: VecDeque::new(),
            last_now: now,
            unix_epoch_offset_ms: 0,
            deliver_unknown,
            destroy_after: None,
            relay: None,
            framed_connects: Vec::new(),
            relay_links: BTreeMap::new(),
            relay_conns: BTreeMap::new(),
            relay_sessions: BTreeMap::new(),
            relay_pins: BTreeMap::new(),
            handshake_routes: BTreeMap::new(),
        };
        node.process(now);
        node
    }

    /// `randomPunchInterval` (`None`: 20 s) and `deferRandomPunch` (the spacing clock starts
    /// at `now`): how often this node punches where a NAT randomizes.
    pub fn set_random_punch_limits(
        &mut self,
        now: Instant,
        interval: Option<Duration>,
        defer: bool,
    ) {
        let mut limiter = match interval {
            Some(i) => RandomPunchLimiter::with_interval(i),
            None => RandomPunchLimiter::new(),
        };
        if defer {
            limiter = limiter.deferred(now);
        }
        self.random_punches = limiter;
    }

    /// Tells the node the wall-clock time at `now` (milliseconds since the Unix epoch), so it
    /// can judge announce bumps, which are wall-clock timestamps.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.unix_epoch_offset_ms = unix_ms.saturating_sub(now.as_millis());
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        self.unix_epoch_offset_ms + now.as_millis()
    }

    /// Sets the local addresses advertised for the LAN shortcut (the driver knows its
    /// interfaces; each with the server socket's port).
    pub fn set_local_addresses(&mut self, addresses: Vec<SocketAddrV4>) {
        self.local_addresses = addresses;
    }

    /// The machine's interfaces were read again (the reference's `network-change`): when the
    /// local addresses differ from the ones set before, they replace them and every listening
    /// server announces again (`server.refresh()`). Returns whether they changed.
    pub fn update_local_addresses(&mut self, now: Instant, addresses: Vec<SocketAddrV4>) -> bool {
        if addresses == self.local_addresses {
            return false;
        }
        tracing::debug!(
            ?addresses,
            "local addresses changed: servers announce again"
        );
        self.local_addresses = addresses;
        self.refresh_servers(now);
        true
    }

    /// Every listening server announces again (`for (const server of this.listening)
    /// server.refresh()`).
    fn refresh_servers(&mut self, now: Instant) {
        let ids: Vec<ServerId> = self
            .servers
            .iter()
            .filter(|(_, s)| s.is_listening() && !s.is_closing())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.refresh_server(now, id);
        }
    }

    /// The NAT sampler's estimate of our public address moved. A consistent address that
    /// replaces another consistent one (a new network, or a NAT that remapped us) makes the
    /// servers announce again, so their relays learn where handshakes must go now. The first
    /// estimate, random-port estimates (port 0), and the switch from the client socket's port
    /// to the server socket's when the node stops being firewalled (same host) do not.
    fn public_address_update(&mut self, now: Instant, host: Option<Ipv4Addr>, port: u16) {
        let Some(new) = host
            .filter(|_| port != 0)
            .map(|h| SocketAddrV4::new(h, port))
        else {
            return;
        };
        let firewalled = self.rpc.is_firewalled();
        let old = self.public_address.replace((new, firewalled));
        let moved = old.is_some_and(|(old, was_firewalled)| {
            old.ip() != new.ip() || (old != new && was_firewalled == firewalled)
        });
        if moved {
            let old = old.map(|(a, _)| a);
            tracing::debug!(?old, %new, "public address changed: servers announce again");
            self.refresh_servers(now);
        }
    }

    /// Sets the key pair used when none is given (`defaultKeyPair`).
    pub fn set_default_key_pair(&mut self, key_pair: KeyPair) {
        self.default_key_pair = Some(key_pair);
    }

    /// The key pair used when none is given: the one set, or (the first time) a fresh one
    /// drawn from the node's RNG and kept (the reference's `defaultKeyPair`).
    pub fn default_key_pair(&mut self) -> KeyPair {
        self.key_pair_or_default(None)
    }

    /// The dht-rpc node underneath.
    pub fn rpc(&self) -> &RpcNode<R> {
        &self.rpc
    }

    /// Whether this node stores records (it turned persistent at least once).
    pub fn has_storage(&self) -> bool {
        self.records.has_storage()
    }

    /// What the mutable and immutable stores hold (zero before the node has storage).
    pub fn value_store_usage(&self) -> ValueStoreUsage {
        self.records.value_store_usage()
    }

    /// The connection-buffer budget in use: the receive windows plus send buffers of every
    /// UDX stream the node holds (connections, connects in progress, retiring streams), and
    /// the budget they must stay within.
    pub fn connection_buffers(&self) -> (usize, usize) {
        (
            self.conns.udx.buffer_reservation(),
            self.conns.budget_limit(),
        )
    }

    /// What this node's record stores hold in bytes, against their budget.
    pub fn store_bytes(&self) -> StoreBytes {
        self.records.store_bytes()
    }

    /// The limits of this node's stores (from its `maxSize` and `maxAge`).
    pub fn store_limits(&self) -> &NodeStoreLimits {
        self.records.limits()
    }

    // ----- raw dht-rpc -----

    /// Starts a raw dht-rpc query (any command); its replies and end arrive as
    /// [`DhtEvent::Rpc`] events.
    pub fn query(&mut self, now: Instant, spec: QuerySpec) -> QueryId {
        let id = self.rpc.query(now, spec);
        self.process(now);
        id
    }

    /// Cancels a raw query: its requests stop and no further event about it follows.
    pub fn cancel_query(&mut self, now: Instant, query: QueryId) {
        self.rpc.advance(now);
        self.rpc.cancel_query(query);
        self.process(now);
    }

    /// Sends one raw dht-rpc request; its outcome arrives as a [`DhtEvent::Rpc`] response.
    pub fn request(&mut self, now: Instant, spec: RequestSpec) -> RequestId {
        let id = self.rpc.request(now, spec);
        self.process(now);
        id
    }

    /// Answers a request the node delivered (a command hyperdht does not know, with
    /// [`RpcConfig::deliver_requests`]).
    pub fn reply(&mut self, now: Instant, req: &IncomingRequest, reply: ReplySpec) {
        self.rpc.advance(now);
        self.rpc.reply(req, reply);
        self.process(now);
    }

    /// `addNode({host, port})`: puts a node in the routing table without contacting it.
    pub fn add_node(&mut self, now: Instant, addr: SocketAddrV4) {
        self.rpc.add_node(now, addr);
        self.process(now);
    }

    /// Starts a background refresh of the routing table.
    pub fn refresh(&mut self, now: Instant) {
        self.rpc.refresh(now);
        self.process(now);
    }

    // ----- outputs -----

    /// Writes the next datagram to send into `buf` (dht-rpc's first, then the UDX streams',
    /// which pace and time their packets by `now`). `buf` should hold [`MAX_DATAGRAM`] bytes; a
    /// dht-rpc datagram longer than `buf` is dropped (as a failed send would be; the protocol
    /// retries). No allocation for UDX packets: the hot path of a driver that batches sends.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<DatagramOut> {
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
        if let Some(d) = self.relay_transmit(buf) {
            return Some(d);
        }
        loop {
            let (_, t) = self.conns.udx.poll_transmit(now, buf)?;
            if let SocketAddr::V4(to) = t.to {
                return Some(DatagramOut {
                    socket: socket_kind(t.socket),
                    to,
                    len: t.len,
                    ttl: None,
                });
            }
        }
    }

    /// The next pool-socket command. Drivers drain these before
    /// [`poll_transmit`](Self::poll_transmit), so a socket is bound before anything is sent
    /// from it, and apply a close only after sending the datagrams polled with it: a
    /// connection's last packets (its DESTROY when the node is destroyed) leave from the
    /// socket being closed.
    pub fn poll_socket_command(&mut self) -> Option<SocketCommand> {
        self.pool.poll_command()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next; `None` once destroyed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let rpc = self.rpc.poll_timeout()?;
        let mut t = rpc.min(self.router.poll_timeout());
        let later = [
            self.records.poll_timeout(),
            self.conns.poll_timeout(),
            self.relay_poll_timeout(),
            self.relay_links_timeout(),
        ]
        .into_iter()
        .chain(self.attempts.values().map(|a| a.poll_timeout()))
        .chain(self.servers.values().map(|s| s.poll_timeout()));
        for x in later.flatten() {
            t = t.min(x);
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
            if bytes.len() > MAX_DATAGRAM_LEN
                || self.relay_datagram(socket, SocketAddr::V4(from), bytes)
                || self.handle_udx(now, socket, from, bytes)
            {
                return;
            }
        }
        self.rpc.handle_datagram(now, socket, from, bytes);
        self.process(now);
    }

    /// Runs due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.connect_path_timeout(now);
        self.relay_links_handle_timeout(now);
        self.relay_timeout(now);
        self.rpc.handle_timeout(now);
        self.router.handle_timeout(now);
        self.records.handle_timeout(now);
        self.process(now);
    }

    /// A pool socket could not be bound, or failed: whatever used it gives up.
    pub fn socket_failed(&mut self, now: Instant, id: u32) {
        self.last_now = now;
        if self.pool.failed(id) {
            self.pool_socket_failed(now, id);
        }
        self.process(now);
    }

    /// Stops the node. Open connections are destroyed at once (each peer gets a DESTROY).
    /// With `force` the node stops at once; otherwise gracefully: every server closes and
    /// every record this node announced is unannounced first, and the node stops once those
    /// operations finished (their [`DhtEvent::OpDone`]s come first). After that every other
    /// operation fails with [`OpError::Destroyed`], pool sockets close, and
    /// [`is_destroyed`](Self::is_destroyed) turns true.
    pub fn destroy(&mut self, now: Instant, force: bool) {
        if self.is_destroyed() {
            return;
        }
        self.destroy_connections();
        let mut ops = Vec::new();
        if !force && self.destroy_after.is_none() {
            // Servers close first (each unannounces its key), then our own announces.
            let live: Vec<ServerId> = self
                .servers
                .iter()
                .filter(|(_, s)| !s.is_closing())
                .map(|(id, _)| *id)
                .collect();
            for server in live {
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
        ops.retain(|op| self.ops.contains_key(op));
        if ops.is_empty() {
            self.destroy_after = None;
            self.finish_destroy();
        } else {
            self.destroy_after = Some(ops);
        }
    }

    /// Destroys the rpc node: every operation fails with [`OpError::Destroyed`].
    fn finish_destroy(&mut self) {
        self.rpc.destroy();
        let ops: Vec<OpId> = self.ops.keys().copied().collect();
        for op in ops {
            self.finish_op(op, Err(OpError::Destroyed));
        }
        while self.rpc.poll_event().is_some() {}
        self.pool.close_all();
    }

    /// Whether the node was destroyed.
    pub fn is_destroyed(&self) -> bool {
        self.rpc.is_destroyed()
    }

    // ----- routing dht-rpc's output -----

    /// Routes every rpc event: requests to the records and the router, query output and
    /// responses to their owners, the rest to the owner of the node.
    fn process(&mut self, now: Instant) {
        // Server actions may reply or relay later than the rpc node's last timed input.
        self.rpc.advance(now);
        while let Some(ev) = self.rpc.poll_event() {
            match ev {
                RpcEvent::Request(req) => self.handle_request(now, req),
                RpcEvent::QueryReply { query, reply } => match self.queries.get(&query).copied() {
                    Some(QueryOwner::Op(op)) => {
                        self.with_op(now, op, |o, out| o.handle_reply(reply, out));
                    }
                    Some(QueryOwner::FindPeer(conn)) => {
                        let mut out = Vec::new();
                        if let Some(a) = self.attempts.get_mut(&conn) {
                            a.handle_find_peer_reply(&reply, &mut out);
                        }
                        self.apply_client(now, conn, out);
                    }
                    Some(QueryOwner::Announce(_)) => {}
                    None => self
                        .events
                        .push_back(DhtEvent::Rpc(RpcEvent::QueryReply { query, reply })),
                },
                RpcEvent::QueryDone { query, result } => match self.queries.remove(&query) {
                    Some(QueryOwner::Op(op)) => {
                        let result = result.map(|r| r.closest_replies);
                        self.with_op(now, op, |o, out| o.handle_query_done(result, out));
                    }
                    Some(QueryOwner::FindPeer(conn)) => {
                        let mut out = Vec::new();
                        if let Some(a) = self.attempts.get_mut(&conn) {
                            a.handle_find_peer_done(&mut out);
                        }
                        self.apply_client(now, conn, out);
                    }
                    Some(QueryOwner::Announce(server)) => {
                        let closest = result.map(|r| r.closest_replies).unwrap_or_default();
                        let mut out = Vec::new();
                        if let Some(s) = self.servers.get_mut(&server) {
                            s.handle_announce_done(now, &closest, &mut out);
                        }
                        self.apply_server(now, server, out);
                    }
                    None => self
                        .events
                        .push_back(DhtEvent::Rpc(RpcEvent::QueryDone { query, result })),
                },
                RpcEvent::Response { request, result } => match self.requests.remove(&request) {
                    Some(RequestOwner::Commit(op)) => {
                        self.with_op(now, op, |o, out| o.handle_commit_response(result, out));
                    }
                    Some(RequestOwner::Client(conn, tag)) => {
                        let mut route = None;
                        self.with_attempt(now, conn, |a, env, out| {
                            a.handle_response(env, tag, result, out);
                            route = a.take_route();
                        });
                        if let Some((target, node)) = route {
                            self.remember_handshake_route(target, node);
                        }
                    }
                    Some(RequestOwner::Server(server, tag)) => {
                        self.with_server(now, server, |s, env, out| {
                            s.handle_response(env, tag, result, out)
                        });
                    }
                    None => self
                        .events
                        .push_back(DhtEvent::Rpc(RpcEvent::Response { request, result })),
                },
                RpcEvent::NatUpdate { host, port } => {
                    self.public_address_update(now, host, port);
                    self.events
                        .push_back(DhtEvent::Rpc(RpcEvent::NatUpdate { host, port }));
                }
                RpcEvent::Persistent => {
                    self.records.start_storing(now);
                    self.events.push_back(DhtEvent::Rpc(RpcEvent::Persistent));
                }
                other => self.events.push_back(DhtEvent::Rpc(other)),
            }
        }
    }

    /// The query `owner` runs, forgotten here (the caller cancels it).
    fn take_query(&mut self, owner: QueryOwner) -> Option<QueryId> {
        let q = self
            .queries
            .iter()
            .find(|(_, o)| **o == owner)
            .map(|(q, _)| *q)?;
        self.queries.remove(&q);
        Some(q)
    }

    // ----- the server side of requests -----

    fn handle_request(&mut self, now: Instant, req: IncomingRequest) {
        match req.command {
            command::PEER_HANDSHAKE => return self.route_handshake(now, &req),
            command::PEER_HOLEPUNCH => return self.route_holepunch(now, &req),
            c if c > command::PLUGIN => {
                if self.deliver_unknown {
                    self.events.push_back(DhtEvent::Rpc(RpcEvent::Request(req)));
                } else {
                    self.rpc
                        .reply(&req, ReplySpec::error(ERROR_UNKNOWN_COMMAND));
                }
                return;
            }
            _ => {}
        }
        let Some(node_id) = self.rpc.id() else {
            return self
                .rpc
                .reply(&req, ReplySpec::error(ERROR_UNKNOWN_COMMAND));
        };
        if !self.records.has_storage() {
            return self
                .rpc
                .reply(&req, ReplySpec::error(ERROR_UNKNOWN_COMMAND));
        }
        // Every storage command needs a target; PLUGIN has no plugins registered here. Both drop.
        let Some(target) = req.target.map(|t| t.0) else {
            return;
        };
        let now_ms = self.unix_ms(now);
        let reply = self.records.handle_request(
            now_ms,
            &req,
            target,
            node_id,
            &mut self.router,
            self.rpc.rng(),
        );
        let spec = match reply {
            Some(RecordReply::Value(value)) => ReplySpec::value(value),
            Some(RecordReply::Bare) => ReplySpec {
                token: false,
                closer_nodes: false,
                ..ReplySpec::value(None)
            },
            Some(RecordReply::Error(code)) => ReplySpec::error(code),
            None => return,
        };
        self.rpc.reply(&req, spec);
    }

    /// PEER_HANDSHAKE: relayed by the router, or for a server on this node.
    fn route_handshake(&mut self, now: Instant, req: &IncomingRequest) {
        match self.router.handle_peer_handshake(req) {
            Routed::Local(envelope) => {
                let Some(server) = self.local_server(req) else {
                    return;
                };
                let room = self.handshake_count() < self.max_server_handshakes
                    || self.forget_oldest_answered_handshake(now);
                self.with_server(now, server, |s, env, out| {
                    s.handle_handshake(env, req, envelope, room, out)
                });
            }
            Routed::Relay { value, to } => self.rpc.relay(req, Some(value), to, None),
            Routed::Reply(spec) => self.rpc.reply(req, spec),
            Routed::Drop => {}
        }
    }

    /// PEER_HOLEPUNCH: relayed by the router, or for a server on this node.
    fn route_holepunch(&mut self, now: Instant, req: &IncomingRequest) {
        match self.router.handle_peer_holepunch(req) {
            Routed::Local(envelope) => {
                let Some(server) = self.local_server(req) else {
                    return;
                };
                self.with_server(now, server, |s, env, out| {
                    s.handle_holepunch(env, req, envelope, out)
                });
            }
            Routed::Relay { value, to } => self.rpc.relay(req, Some(value), to, None),
            Routed::Reply(spec) => self.rpc.reply(req, spec),
            Routed::Drop => {}
        }
    }

    /// The server on this node a request's target names.
    fn local_server(&self, req: &IncomingRequest) -> Option<ServerId> {
        req.target
            .and_then(|t| self.server_by_target.get(&t.0).copied())
    }

    /// At the handshake cap: forgets the oldest answered handshake of all servers if it is old
    /// enough to have seen its duplicates (`HANDSHAKE_EVICT_AGE`); whether one went.
    fn forget_oldest_answered_handshake(&mut self, now: Instant) -> bool {
        let oldest = self
            .servers
            .iter()
            .filter_map(|(id, s)| Some((s.oldest_answered()?, *id)))
            .min();
        oldest.is_some_and(|(_, id)| {
            self.servers
                .get_mut(&id)
                .is_some_and(|s| s.forget_oldest_answered(now))
        })
    }

    /// Handshakes all servers track.
    fn handshake_count(&self) -> usize {
        self.servers.values().map(|s| s.handshake_counts().0).sum()
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
        if let Some(opts) = self.next_query_options.take() {
            opts.apply_to(&mut spec);
        }
        let query = self.rpc.query(now, spec);
        self.queries.insert(query, QueryOwner::Op(op));
        self.ops.insert(op, Op::new(kind, target));
        self.process(now);
        op
    }

    /// Runs `f` on operation `op` and applies what it asks.
    fn with_op(&mut self, now: Instant, op: OpId, f: impl FnOnce(&mut Op, &mut Vec<OpAction>)) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        let mut out = Vec::new();
        f(o, &mut out);
        for action in out {
            match action {
                OpAction::Emit(OpReply::Lookup(reply)) => {
                    self.events.push_back(DhtEvent::LookupReply { op, reply })
                }
                OpAction::Emit(OpReply::FindPeer(reply)) => {
                    self.events.push_back(DhtEvent::FindPeerReply { op, reply })
                }
                OpAction::Commit(spec) => {
                    let rid = self.rpc.request(now, spec);
                    self.requests.insert(rid, RequestOwner::Commit(op));
                }
                OpAction::Finish(result) => self.finish_op(op, result),
            }
        }
    }

    fn finish_op(&mut self, op: OpId, result: Result<super::OpOutput, OpError>) {
        if self.ops.remove(&op).is_none() {
            return;
        }
        if let Some(q) = self.take_query(QueryOwner::Op(op)) {
            if !self.rpc.is_destroyed() {
                self.rpc.cancel_query(q);
            }
        }
        self.requests.retain(|_, o| *o != RequestOwner::Commit(op));
        self.events.push_back(DhtEvent::OpDone { op, result });
        // A graceful destroy ends once its unannounces did.
        if let Some(waiting) = self.destroy_after.as_mut() {
            waiting.retain(|o| *o != op);
            if waiting.is_empty() {
                self.destroy_after = None;
                self.finish_destroy();
            }
        }
    }

    /// `lookup(topic)`: peers announced under a topic arrive as [`DhtEvent::LookupReply`].
    pub fn lookup(&mut self, now: Instant, topic: [u8; 32]) -> OpId {
        self.new_op(now, OpKind::Lookup, topic, command::LOOKUP, None)
    }

    /// Starts an operation (`start` calls [`lookup`](Self::lookup), [`announce`](Self::announce),
    /// …) whose query runs with `opts` — the reference's operation options that it passes on to
    /// dht-rpc's query. Operations started any other way use the defaults.
    pub fn with_query_options(
        &mut self,
        opts: QueryOptions,
        start: impl FnOnce(&mut Self) -> OpId,
    ) -> OpId {
        self.next_query_options = Some(opts);
        let op = start(self);
        self.next_query_options = None;
        op
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
        self.records.remove(&topic, &pk);
        if sign::target_of_key(&pk) == topic {
            self.router.delete(&topic);
        }
        let kind = OpKind::Unannounce {
            key_pair: key_pair.clone(),
        };
        self.new_op(now, kind, topic, command::LOOKUP, None)
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
        let kind = OpKind::ImmutablePut { value };
        self.new_op(now, kind, target, command::IMMUTABLE_GET, None)
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
        let value = Some(messages::encode_mutable_get_request(0));
        self.new_op(now, kind, target, command::MUTABLE_GET, value)
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
        let value = Some(messages::encode_mutable_get_request(seq));
        self.new_op(now, kind, target, command::MUTABLE_GET, value)
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
        if self.ops.remove(&op).is_some() {
            if let Some(q) = self.take_query(QueryOwner::Op(op)) {
                self.rpc.cancel_query(q);
            }
            self.requests.retain(|_, o| *o != RequestOwner::Commit(op));
        }
        self.process(now);
    }

    // ----- connects -----

    fn key_pair_or_default(&mut self, kp: Option<KeyPair>) -> KeyPair {
        if let Some(kp) = kp {
            return kp;
        }
        if let Some(kp) = &self.default_key_pair {
            return kp.clone();
        }
        let kp = KeyPair::generate(self.rpc.rng());
        self.default_key_pair = Some(kp.clone());
        kp
    }

    /// `connect(remotePublicKey)`: finds the server, handshakes through a relay and opens an
    /// encrypted stream. The outcome is a [`ConnectEvent::Open`] or [`ConnectEvent::Failed`].
    pub fn connect(
        &mut self,
        now: Instant,
        remote_public_key: [u8; 32],
        opts: ConnectOptions,
    ) -> ConnId {
        let mut opts = opts;
        if opts.relay_addresses.is_empty() {
            // The node that forwarded our last accepted handshake to this key gets this one
            // at once, alongside the lookup (as the reference's `relayAddresses` / a
            // persistent node's known route): a repeat connect skips the lookup's round trip.
            let target = sign::target_of_key(&remote_public_key);
            if let Some(node) = self.handshake_routes.get(&target) {
                opts.relay_addresses = alloc::vec![*node];
            }
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        if self.conns.len() + self.attempts.len() >= MAX_CONNECTIONS {
            self.emit(ConnectEvent::Failed {
                conn,
                error: ConnectError::PeerConnectionFailed,
            });
            return conn;
        }
        let Some(stream_config) = self.conns.stream_config() else {
            self.emit(ConnectEvent::Failed {
                conn,
                error: ConnectError::BufferBudgetSpent,
            });
            return conn;
        };
        let kp = self.key_pair_or_default(opts.key_pair.clone());
        let mut stream_id = self.conns.new_stream_id(self.rpc.rng());
        while self
            .relay
            .as_ref()
            .is_some_and(|r| r.is_relay_stream(stream_id))
        {
            stream_id = self.conns.new_stream_id(self.rpc.rng());
        }
        let mut out = Vec::new();
        let started = {
            let DhtNode {
                rpc,
                pool,
                random_punches,
                local_addresses,
                conns,
                relay,
                ..
            } = self;
            let mut env = env!(
                rpc,
                pool,
                random_punches,
                local_addresses,
                conns,
                relay,
                now
            );
            ClientAttempt::start(&mut env, &kp, remote_public_key, opts, stream_id, &mut out)
        };
        match started {
            Ok(attempt) => {
                self.conns
                    .udx
                    .insert(UdxStream::new(stream_id, now, stream_config));
                self.attempts.insert(conn, attempt);
                self.apply_client(now, conn, out);
            }
            Err(error) => self.emit(ConnectEvent::Failed { conn, error }),
        }
        conn
    }

    /// Remembers the node that forwarded our accepted handshake to `target`'s server.
    fn remember_handshake_route(&mut self, target: [u8; 32], node: SocketAddrV4) {
        if !self.handshake_routes.contains_key(&target)
            && self.handshake_routes.len() >= MAX_HANDSHAKE_ROUTES
        {
            self.handshake_routes.pop_first();
        }
        self.handshake_routes.insert(target, node);
    }

    /// Runs `f` on the connect `conn` with its environment, then applies what it asks.
    fn with_attempt(
        &mut self,
        now: Instant,
        conn: ConnId,
        f: impl FnOnce(&mut ClientAttempt, &mut Env<'_, R>, &mut Vec<ClientAction>),
    ) {
        let DhtNode {
            rpc,
            pool,
            random_punches,
            local_addresses,
            conns,
            attempts,
            relay,
            ..
        } = self;
        let Some(a) = attempts.get_mut(&conn) else {
            return;
        };
        let mut env = env!(
            rpc,
            pool,
            random_punches,
            local_addresses,
            conns,
            relay,
            now
        );
        let mut out = Vec::new();
        f(a, &mut env, &mut out);
        self.apply_client(now, conn, out);
    }

    /// Applies a connect's actions, in order.
    fn apply_client(&mut self, now: Instant, conn: ConnId, actions: Vec<ClientAction>) {
        for action in actions {
            match action {
                ClientAction::FindPeer(spec) => {
                    let q = self.rpc.query(now, spec);
                    self.queries.insert(q, QueryOwner::FindPeer(conn));
                }
                ClientAction::CancelFindPeer => {
                    if let Some(q) = self.take_query(QueryOwner::FindPeer(conn)) {
                        self.rpc.cancel_query(q);
                    }
                }
                ClientAction::Request { spec, tag } => {
                    let rid = self.rpc.request(now, spec);
                    self.requests.insert(rid, RequestOwner::Client(conn, tag));
                }
                ClientAction::Probe { socket, to, ttl } => {
                    self.rpc
                        .send_datagram(socket_kind(socket), to, PROBE.to_vec(), Some(ttl))
                }
                ClientAction::ConnectStream {
                    socket,
                    remote_udx,
                    addr,
                    handshake,
                    early,
                } => {
                    self.connect_stream(now, conn, socket, remote_udx, addr, handshake, early);
                    self.relay_direct_won(conn);
                }
                ClientAction::Relay {
                    plan,
                    peer_udx,
                    keep_alive,
                } => {
                    if let Some(stream) = self.attempts.get(&conn).map(|a| a.stream_id()) {
                        self.relay_start(now, conn, stream, plan, peer_udx, keep_alive, None);
                    }
                }
                ClientAction::RelayAdopt { peer_udx } => self.relay_adopt(now, conn, peer_udx),
                ClientAction::RelayCancel => self.relay_cancel(conn),
                ClientAction::Upgrade {
                    socket,
                    remote_udx,
                    addr,
                } => self.relay_upgrade(now, conn, socket, remote_udx, addr),
                ClientAction::ReplayEarly(packets) => {
                    for p in packets {
                        if let SocketAddr::V4(from) = p.from {
                            self.handle_udx(now, socket_kind(p.socket), from, &p.bytes);
                        }
                    }
                }
                ClientAction::PunchDropped => self.forget_punch_requests(conn),
                ClientAction::Fail(error) => self.fail_attempt(conn, error),
            }
        }
        // A connect that opened through its relay lives on while its punch does.
        if self.conns.is_opened(conn)
            && self
                .attempts
                .get(&conn)
                .is_some_and(|a| !a.punching_behind_relay())
        {
            self.attempts.remove(&conn);
            self.forget_punch_requests(conn);
        }
    }

    /// Connects a connect's UDX stream and opens its connection.
    #[allow(clippy::too_many_arguments)] // the connect's ConnectStream action, field by field
    fn connect_stream(
        &mut self,
        now: Instant,
        conn: ConnId,
        socket: udx::SocketId,
        remote_udx: u32,
        addr: SocketAddrV4,
        handshake: HandshakeResult,
        early: Vec<EarlyPacket>,
    ) {
        let Some(stream_id) = self.attempts.get(&conn).map(|a| a.stream_id()) else {
            return;
        };
        let Some(stream) = self.conns.udx.get_mut(stream_id) else {
            return;
        };
        if stream
            .connect_via(now, socket, remote_udx, SocketAddr::V4(addr))
            .is_err()
        {
            return self.fail_attempt(conn, ConnectError::PeerConnectionFailed);
        }
        self.open_connection(now, conn, stream_id, handshake, None);
        // A stream through a blind relay opens now, as the reference's secret stream does once
        // started with a finished handshake (its `_open` resolves at once): what the
        // application writes goes right behind our header instead of waiting for the peer's,
        // which through a relay (whose first packets cross only once both sides sent one)
        // costs a whole round trip. A direct connect still opens on the peer's header: there
        // it proves the server took the connection (a swarm at its limit refuses after the
        // handshake, and its refused connects must not resolve).
        if self.conn_relay_path(conn) == Some(RelayPath::Relayed) {
            self.announce_open(conn);
        }
        if !self.relay_conns.is_empty() {
            self.relay_conn_connected(now, conn);
        }
        for p in early {
            self.conns
                .udx
                .handle_datagram(now, p.socket, p.from, &p.bytes);
        }
        self.drive_udx_events(now);
    }

    /// A connect failed: its punch stops, its query and stream go, and the owner hears why.
    fn fail_attempt(&mut self, conn: ConnId, error: ConnectError) {
        let now = self.last_now;
        if self.conns.is_announced(conn) {
            // Its connection was handed to the owner already and lives or dies on its own:
            // only what is left of the connect (a punch) goes.
            tracing::debug!(conn = conn.0, error = %error, "connect: the rest of the attempt gave up");
            self.drop_client_punch(now, conn);
            self.attempts.remove(&conn);
            return;
        }
        tracing::debug!(conn = conn.0, error = %error, "connect failed");
        self.relay_app_closed(conn);
        self.drop_client_punch(now, conn);
        self.framed_connects.retain(|c| *c != conn);
        let Some(a) = self.attempts.remove(&conn) else {
            return;
        };
        if let Some(q) = self.take_query(QueryOwner::FindPeer(conn)) {
            self.rpc.cancel_query(q);
        }
        // Its requests are forgotten (their responses then reach the owner as raw responses);
        // an abort notice's is not (nobody waits for it).
        self.requests.retain(|_, o| {
            !matches!(o, RequestOwner::Client(c, tag) if *c == conn && *tag != ClientRequest::AbortNotice)
        });
        let stream_id = a.stream_id();
        if let Some(mut s) = self.conns.udx.remove(stream_id) {
            s.destroy();
            self.release_stream_socket(s.socket());
        }
        self.conns.remove_entry(conn, stream_id);
        self.emit(ConnectEvent::Failed { conn, error });
    }

    /// Drops a connect's punch, and the punch's requests.
    fn drop_client_punch(&mut self, now: Instant, conn: ConnId) {
        self.with_attempt(now, conn, |a, env, _| a.drop_punch(env));
        self.forget_punch_requests(conn);
    }

    /// A connect's punch is gone: the responses to its requests reach the owner as raw
    /// responses from now on.
    fn forget_punch_requests(&mut self, conn: ConnId) {
        self.requests.retain(|_, o| {
            !matches!(o, RequestOwner::Client(c, ClientRequest::Holepunch { .. } | ClientRequest::NatPing { .. }) if *c == conn)
        });
    }

    // ----- servers -----

    /// `createServer(opts)`: a server; [`listen`](Self::listen) makes it reachable.
    pub fn create_server(&mut self, opts: ServerOptions) -> ServerId {
        let id = ServerId(self.next_server);
        self.next_server += 1;
        self.servers.insert(id, Server::new(opts));
        id
    }

    /// `server.listen(keyPair)`: answer handshakes for this key and announce it to the closest
    /// nodes ([`ConnectEvent::Listening`] when the first announce completes).
    pub fn listen(
        &mut self,
        now: Instant,
        server: ServerId,
        key_pair: Option<KeyPair>,
    ) -> Result<(), ConnectError> {
        let kp = self.key_pair_or_default(key_pair);
        let target = sign::target_of_key(&kp.public_key());
        if self.server_by_target.contains_key(&target) {
            return Err(ConnectError::KeypairAlreadyUsed);
        }
        let s = self
            .servers
            .get_mut(&server)
            .filter(|s| !s.is_closing())
            .ok_or(ConnectError::NodeDestroyed)?;
        if s.is_listening() {
            return Err(ConnectError::AlreadyListening);
        }
        let record = Peer {
            public_key: kp.public_key(),
            relay_addresses: Vec::new(),
        }
        .to_bytes();
        let mut out = Vec::new();
        s.listen(kp, target, &mut out);
        let relays = s.fixed_relays(relay_session::MAX_PINNED_PER_SERVER);
        self.server_by_target.insert(target, server);
        self.router.set_local(target, record);
        self.apply_server(now, server, out);
        self.relay_pin(now, server, relays);
        Ok(())
    }

    /// The server's current relays (`relayAddresses`).
    pub fn server_relays(&self, server: ServerId) -> Vec<SocketAddrV4> {
        self.servers
            .get(&server)
            .filter(|s| !s.is_closing())
            .map_or_else(Vec::new, |s| {
                s.relays().iter().map(|r| r.relay_address).collect()
            })
    }

    /// `server.refresh()`: re-announce now.
    pub fn refresh_server(&mut self, now: Instant, server: ServerId) {
        let mut out = Vec::new();
        if let Some(s) = self.servers.get_mut(&server) {
            s.announce(&mut out);
        }
        self.apply_server(now, server, out);
    }

    /// `server.close()`: stop answering, and unannounce the server's record. Handshakes that
    /// already run finish.
    pub fn close_server(&mut self, now: Instant, server: ServerId) -> Option<OpId> {
        let s = self.servers.get_mut(&server)?;
        let mut out = Vec::new();
        let kp = s.key_pair().cloned();
        if !s.close(&mut out) {
            return None;
        }
        let target = s.target();
        self.server_by_target.remove(&target);
        self.router.delete(&target);
        self.apply_server(now, server, out);
        self.relay_unpin(now, server);
        if self.servers.get(&server).is_some_and(|s| s.is_drained()) {
            self.servers.remove(&server);
        }
        kp.map(|kp| self.unannounce(now, target, &kp))
    }

    /// Answers a [`ConnectEvent::Firewall`]: `reject = true` drops the handshake silently, as
    /// the reference's firewall returning true does.
    pub fn firewall_decision(&mut self, now: Instant, handshake: u64, reject: bool) {
        let Some((server, key)) = self.firewall_questions.remove(&handshake) else {
            return;
        };
        self.with_server(now, server, |s, env, out| {
            s.firewall_decision(env, key, reject, out)
        });
    }

    /// Runs `f` on server `server` with its environment, then applies what it asks.
    fn with_server(
        &mut self,
        now: Instant,
        server: ServerId,
        f: impl FnOnce(&mut Server, &mut Env<'_, R>, &mut Vec<ServerAction>),
    ) {
        let DhtNode {
            rpc,
            pool,
            random_punches,
            local_addresses,
            conns,
            servers,
            relay,
            ..
        } = self;
        let Some(s) = servers.get_mut(&server) else {
            return;
        };
        let mut env = env!(
            rpc,
            pool,
            random_punches,
            local_addresses,
            conns,
            relay,
            now
        );
        let mut out = Vec::new();
        f(s, &mut env, &mut out);
        self.apply_server(now, server, out);
    }

    /// Applies a server's actions, in order.
    fn apply_server(&mut self, now: Instant, server: ServerId, actions: Vec<ServerAction>) {
        self.rpc.advance(now);
        for action in actions {
            match action {
                ServerAction::Announce(spec) => {
                    let q = self.rpc.query(now, spec);
                    self.queries.insert(q, QueryOwner::Announce(server));
                }
                ServerAction::CancelAnnounce => {
                    if let Some(q) = self.take_query(QueryOwner::Announce(server)) {
                        self.rpc.cancel_query(q);
                    }
                }
                ServerAction::Request { spec, tag } => {
                    let rid = self.rpc.request(now, spec);
                    self.requests.insert(rid, RequestOwner::Server(server, tag));
                }
                ServerAction::Relay {
                    req,
                    value,
                    to,
                    socket,
                } => self.rpc.relay(&req, Some(value), to, socket),
                ServerAction::Reply { req, spec } => self.rpc.reply(&req, spec),
                ServerAction::Probe { socket, to, ttl } => {
                    self.rpc
                        .send_datagram(socket_kind(socket), to, PROBE.to_vec(), Some(ttl))
                }
                ServerAction::Listening => self.emit(ConnectEvent::Listening { server }),
                ServerAction::AskFirewall {
                    key,
                    remote_public_key,
                    client_address,
                    payload,
                } => {
                    let handshake = self.next_firewall_question;
                    self.next_firewall_question += 1;
                    self.firewall_questions.insert(handshake, (server, key));
                    self.emit(ConnectEvent::Firewall {
                        server,
                        handshake,
                        remote_public_key,
                        client_address,
                        payload,
                    });
                }
                ServerAction::Accept(accepted) => self.open_accepted(now, server, *accepted),
                ServerAction::WaitForPunch(conn) => self.conns.wait_for_punch(conn),
                ServerAction::AbandonConnection(conn) => {
                    // A connection pairing through a relay waits for it instead.
                    if self.conns.waiting_for(conn).is_some() && !self.relay_pending(conn) {
                        self.conn_forget(conn);
                    }
                }
            }
        }
    }

    /// Opens the connection of a handshake a server accepted: at once over its stream, or
    /// waiting for the client's first packet (with the server's punch for it).
    fn open_accepted(&mut self, now: Instant, server: ServerId, a: Accepted) {
        // The server answered TRY_LATER while the budget was spent; this one was accepted
        // before, but others (waiting for their firewall decision) may have taken the rest.
        let Some(stream_config) = self.conns.stream_config() else {
            tracing::debug!("server: connection dropped, the connection-buffer budget is spent");
            return;
        };
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns
            .udx
            .insert(UdxStream::new(a.stream_id, now, stream_config));
        if let Some(socket) = a.connect_now {
            if let Some(s) = self.conns.udx.get_mut(a.stream_id) {
                let _ = s.connect_via(now, socket, a.client_udx, SocketAddr::V4(a.client_address));
            }
            return self.open_connection(now, conn, a.stream_id, a.handshake, Some(server));
        }
        // Wait for the client's first UDX packet (LAN shortcut or punching on its side).
        self.conns.open_waiting(
            now,
            conn,
            a.stream_id,
            a.handshake,
            server,
            a.client_udx,
            now + SERVER_CONNECT_WAIT,
            self.rpc.rng(),
        );
        if self.is_relay_server(server) {
            // Framed before its first packet is read.
            self.conns.set_message_framing(conn);
        }
        let relay_token = a.relay.is_some();
        if let Some(plan) = a.relay {
            // The relay's 15 s replace the first-packet wait.
            self.conns.wait_for_punch(conn);
            self.relay_start(
                now,
                conn,
                a.stream_id,
                plan,
                a.client_udx,
                a.relay_keep_alive,
                Some(server),
            );
        }
        if let Some((puncher, secret)) = a.punch {
            let key = a.key;
            self.with_server(now, server, |s, env, out| {
                s.attach_punch(env, &key, puncher, secret, conn, relay_token, out)
            });
        }
    }

    // ----- connections -----

    /// Opens the connection `conn` over the connected stream `stream_id` (a server's is
    /// reported as [`ConnectEvent::Incoming`]).
    fn open_connection(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        handshake: HandshakeResult,
        server: Option<ServerId>,
    ) {
        self.conns
            .open(now, conn, stream_id, handshake, server, self.rpc.rng());
        if let Some(i) = self.framed_connects.iter().position(|c| *c == conn) {
            self.framed_connects.swap_remove(i);
            self.conns.set_message_framing(conn);
        }
        if let Some(server) = server {
            self.incoming(now, server, conn);
        }
    }

    /// A server's connection reached its peer: the application learns of it, or the relay
    /// takes it.
    fn incoming(&mut self, now: Instant, server: ServerId, conn: ConnId) {
        if self.is_relay_server(server) {
            return self.relay_accept(now, conn);
        }
        if let Some(info) = self.conns.info(conn) {
            self.emit(ConnectEvent::Incoming { server, conn, info });
        }
    }

    fn emit(&mut self, event: ConnectEvent) {
        if !self.relay_conns.is_empty() && self.take_relay_event(&event) {
            return;
        }
        self.events.push_back(DhtEvent::Connect(event));
    }

    /// Sizes of the connect path's state.
    pub fn connect_stats(&self) -> ConnectStats {
        let (handshakes, server_punches) = self
            .servers
            .values()
            .map(|s| s.handshake_counts())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        ConnectStats {
            handshakes,
            server_punches,
            attempts: self.attempts.len(),
            connections: self.conns.len(),
            pool_sockets: self.pool.len(),
            punch_requests: self.requests.values().filter(|o| o.is_punch()).count(),
        }
    }

    /// What is known about a connection.
    pub fn connection_info(&self, conn: ConnId) -> Option<ConnectionInfo> {
        self.conns.info(conn)
    }

    /// A connection's secret-stream message bytes `(read, written)` after the header frames
    /// (the reference's `rawBytesRead` / `rawBytesWritten`; keep-alive frames count). The swarm's
    /// duplicate rule calls a connection that carried bytes both ways outdated.
    pub fn conn_raw_bytes(&self, conn: ConnId) -> Option<(u64, u64)> {
        self.conns.raw_bytes(conn)
    }

    /// Sends an empty message frame on an open connection now (`sendKeepAlive()`): a dead
    /// peer is noticed within one retransmission timeout instead of the idle timeout.
    pub fn conn_send_keep_alive(&mut self, conn: ConnId) {
        self.conns.send_keep_alive(conn);
    }

    /// Transport state of a connection's UDX stream (round-trip time, congestion window, pacing
    /// rate, path MTU and counters), as the reference exposes on `rawStream`.
    pub fn connection_transport(&self, conn: ConnId) -> Option<TransportInfo> {
        self.conns.transport(conn)
    }

    /// Pulls bytes from UDX through the secret stream and reports what changed.
    fn pump_read(&mut self, now: Instant, conn: ConnId) {
        let progress = self.conns.pump_read(now, conn);
        if let Some(e) = progress.error {
            return self.close_conn(conn, Some(ConnError::Crypto(e)));
        }
        if progress.opened {
            self.connection_opened(conn);
        }
        if self.is_relay_conn(conn) {
            if progress.ended {
                // The peer ended its relay connection: so does the relay (its session ends
                // when the connection closes).
                let _ = self.conns.end(conn);
            }
            return self.relay_read(now, conn);
        }
        if progress.readable {
            self.emit(ConnectEvent::Readable(conn));
        }
        if progress.ended {
            self.emit(ConnectEvent::End(conn));
        }
    }

    /// The peer's secret-stream header arrived: a connect is over.
    fn connection_opened(&mut self, conn: ConnId) {
        let Some(info) = self.conns.info(conn) else {
            return;
        };
        if info.is_initiator {
            // A connect that opened through its relay keeps punching.
            if !self
                .attempts
                .get(&conn)
                .is_some_and(|a| a.punching_behind_relay())
            {
                self.attempts.remove(&conn);
            }
            tracing::debug!(
                conn = conn.0,
                relay_conn = self.relay_conns.contains_key(&conn),
                "connect: the peer's secret-stream header arrived"
            );
            self.announce_open(conn);
        }
    }

    /// Tells the owner of the connect `conn` that it opened, once.
    fn announce_open(&mut self, conn: ConnId) {
        let Some(info) = self.conns.info(conn) else {
            return;
        };
        if info.is_initiator && self.conns.announce(conn) {
            tracing::debug!(
                conn = conn.0,
                relay_conn = self.relay_conns.contains_key(&conn),
                "connect: open (our header is out; writes go right behind it)"
            );
            self.emit(ConnectEvent::Open { conn, info });
        }
    }

    /// Reads decrypted bytes. `Ok(0)` when nothing is buffered: at the end of the peer's
    /// stream if [`conn_at_end`](Self::conn_at_end) says so, else wait for
    /// [`ConnectEvent::Readable`]. A connection that was aborted or timed out returns its
    /// reason once its buffered bytes are read (unless the peer had ended its side before).
    pub fn conn_read(
        &mut self,
        now: Instant,
        conn: ConnId,
        buf: &mut [u8],
    ) -> Result<usize, ConnError> {
        let mut n = self.conns.copy_plain(conn, buf)?;
        if self.conns.has_read_room(conn) {
            self.pump_read(now, conn);
            if n == 0 {
                n = self.conns.copy_plain(conn, buf)?;
            }
        }
        self.conns.check_read_end(conn, n, buf.len())
    }

    /// Bytes ready for [`conn_read`](Self::conn_read).
    pub fn conn_readable(&self, conn: ConnId) -> usize {
        self.conns.readable(conn)
    }

    /// Whether the peer ended and everything has been read.
    pub fn conn_at_end(&self, conn: ConnId) -> bool {
        self.conns.at_end(conn)
    }

    /// Encrypts and queues as much of `data` as the transport has room for; a short count is
    /// back-pressure ([`ConnectEvent::Writable`] follows).
    pub fn conn_write(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
    ) -> Result<usize, ConnError> {
        self.conns.write(now, conn, data)
    }

    /// Makes a connection message-framed (for Protomux: one secret-stream message = one
    /// frame): from now on [`conn_read_message`](Self::conn_read_message) returns each
    /// decrypted message whole, and [`conn_write_message`](Self::conn_write_message) sends one.
    /// Call it when the connection opens, before reading. The byte API keeps working for
    /// whatever was decrypted before.
    pub fn conn_set_message_framing(&mut self, conn: ConnId) {
        if !self.conns.contains(conn) && self.attempts.contains_key(&conn) {
            // A connect in progress: framed from its first message on.
            self.framed_connects.push(conn);
        }
        self.conns.set_message_framing(conn);
    }

    /// Whether a connection is message-framed.
    pub fn conn_is_message_framed(&self, conn: ConnId) -> bool {
        self.conns.is_message_framed(conn)
    }

    /// The next decrypted message of a message-framed connection; `None`: wait for
    /// [`ConnectEvent::Readable`] (or the end, see [`conn_at_end`](Self::conn_at_end)).
    pub fn conn_read_message(&mut self, now: Instant, conn: ConnId) -> Option<Vec<u8>> {
        let msg = self.conns.pop_message(conn);
        if self.conns.has_read_room(conn) {
            self.pump_read(now, conn);
        }
        msg.or_else(|| self.conns.pop_message(conn))
    }

    /// Sends `msg` as one secret-stream message. `Ok(false)`: no room now, retry after
    /// [`ConnectEvent::Writable`].
    pub fn conn_write_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: &[u8],
    ) -> Result<bool, ConnError> {
        self.conns.write_message(now, conn, msg)
    }

    /// Whether the peer acknowledged every byte written so far — and our end, after
    /// [`conn_end`](Self::conn_end). `Ok(false)`: not yet, and [`ConnectEvent::Flushed`]
    /// follows once it did (or [`ConnectEvent::Closed`] if the connection breaks first). A
    /// connection that closed gracefully is flushed; one that closed with an error returns it.
    pub fn conn_flush(&mut self, conn: ConnId) -> Result<bool, ConnError> {
        self.conns.flushed(conn)
    }

    /// Ends our side (half-close): the peer reads to the end, then `0`.
    pub fn conn_end(&mut self, conn: ConnId) -> Result<(), ConnError> {
        self.conns.end(conn)
    }

    /// Destroys a connection (or a pending connect) at once.
    pub fn conn_destroy(&mut self, conn: ConnId) {
        if self.attempts.contains_key(&conn) && !self.conns.contains(conn) {
            return self.fail_attempt(conn, ConnectError::HolepunchAborted);
        }
        self.conns.destroy(conn);
        self.close_conn(conn, Some(ConnError::Destroyed));
    }

    /// The application let go of a connection. One whose two directions have both ended (ours
    /// by [`conn_end`](Self::conn_end), the peer's read to the end) finishes by itself — our
    /// END may still wait for its acknowledgement — and closes gracefully. Anything else is
    /// destroyed (UDX DESTROY): nobody reads the peer's bytes or writes ours any more, and the
    /// peer must learn at once that the stream stopped short rather than see a clean end.
    pub fn conn_drop(&mut self, conn: ConnId) {
        if !self.conns.contains(conn) {
            return self.conn_destroy(conn);
        }
        if self.conns.is_closed(conn) || (self.conns.local_ended(conn) && self.conn_at_end(conn)) {
            return;
        }
        self.conn_destroy(conn);
    }

    /// Destroys every connection (the node is going away): each peer gets a DESTROY, as the
    /// reference's `destroy()` destroys every raw stream.
    fn destroy_connections(&mut self) {
        for conn in self.conns.open_ids() {
            self.conn_destroy(conn);
        }
    }

    /// Closes a connection; a connect whose connection closed before opening fails instead.
    fn close_conn(&mut self, conn: ConnId, error: Option<ConnError>) {
        let Some(stopped) = self.conns.close(conn, error.clone()) else {
            return;
        };
        if self.is_relay_conn(conn) {
            return self.relay_closed(conn);
        }
        self.relay_app_closed(conn);
        if stopped.initiator && stopped.announced && self.attempts.contains_key(&conn) {
            // A connect that opened (through its relay, still punching; or before the peer's
            // header came).
            self.drop_client_punch(self.last_now, conn);
            self.attempts.remove(&conn);
        }
        if stopped.initiator && !stopped.announced && self.attempts.contains_key(&conn) {
            self.attempts.remove(&conn);
            self.framed_connects.retain(|c| *c != conn);
            return self.emit(ConnectEvent::Failed {
                conn,
                error: ConnectError::PeerConnectionFailed,
            });
        }
        self.emit(ConnectEvent::Closed { conn, error });
    }

    /// Forgets a closed connection whose events have been consumed. Its UDX stream stays until
    /// whatever it still has to send (a DESTROY, acknowledgements) went out.
    pub fn conn_forget(&mut self, conn: ConnId) {
        self.conns.forget(conn);
        if !self.relay_links.is_empty() {
            self.relay_app_forgotten(conn);
        }
        self.sweep_retired_streams();
    }

    /// Removes the streams of forgotten connections that have nothing left to send.
    fn sweep_retired_streams(&mut self) {
        for socket in self.conns.sweep_retiring() {
            self.release_stream_socket(socket);
        }
    }

    /// A stream over a pool socket is gone: the socket may close.
    fn release_stream_socket(&mut self, socket: Option<udx::SocketId>) {
        if let Some(SocketKind::Pool(id)) = socket.map(socket_kind) {
            self.pool.release_stream(id);
        }
    }

    /// Feeds a UDX datagram; false if it was not UDX for us (then it is dht-rpc's).
    fn handle_udx(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddrV4,
        bytes: &[u8],
    ) -> bool {
        let sock = udx_socket(socket);
        match self
            .conns
            .udx
            .handle_datagram(now, sock, SocketAddr::V4(from), bytes)
        {
            Incoming::NotUdx | Incoming::UnknownStream { .. } => return false,
            Incoming::Consumed { stream_id } => {
                if !self.relay_links.is_empty() {
                    self.relay_consumed(stream_id, sock, SocketAddr::V4(from));
                }
            }
            Incoming::Unattached {
                stream_id,
                from,
                socket,
            } => self.handle_unattached(now, stream_id, socket, from, bytes),
        }
        self.drive_udx_events(now);
        true
    }

    /// Connect on first packet: a waiting server connection, or a connect whose server reached
    /// it first, learns its peer from the packet.
    fn handle_unattached(
        &mut self,
        now: Instant,
        stream_id: u32,
        socket: udx::SocketId,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        if !self.relay_links.is_empty()
            && self.relay_unattached(now, stream_id, socket, from, bytes)
        {
            return;
        }
        let Some((conn, remote)) = self.unattached_owner(stream_id) else {
            if let Some(a) = self
                .attempts
                .values_mut()
                .find(|a| a.stream_id() == stream_id)
            {
                a.keep_early(EarlyPacket {
                    socket,
                    from,
                    bytes: bytes.to_vec(),
                });
            }
            return;
        };
        let attached = self
            .conns
            .udx
            .get_mut(stream_id)
            .is_some_and(|s| s.connect_via(now, socket, remote, from).is_ok());
        if !attached {
            return;
        }
        self.conns.attached(conn);
        if let SocketKind::Pool(id) = socket_kind(socket) {
            // The stream keeps the puncher's socket.
            self.pool.hold_stream(id);
        }
        self.relay_direct_won(conn);
        if self.conns.contains(conn) {
            if let Some(server) = self.conns.server_of(conn) {
                self.with_server(now, server, |s, env, out| {
                    s.connection_attached(env, conn, out)
                });
            }
        } else {
            let mut result = None;
            self.with_attempt(now, conn, |a, env, _| result = a.stream_attached(env));
            if let Some(handshake) = result {
                self.forget_punch_requests(conn);
                self.open_connection(now, conn, stream_id, handshake, None);
            }
        }
        self.conns.udx.handle_datagram(now, socket, from, bytes);
        self.conns.flush_secret(conn);
        if let Some(server) = self.conns.server_of(conn) {
            self.incoming(now, server, conn);
        }
    }

    /// Who waits for the first packet of `stream_id`, and the peer's stream id.
    fn unattached_owner(&self, stream_id: u32) -> Option<(ConnId, u32)> {
        if let Some(conn) = self.conns.by_stream(stream_id) {
            return self.conns.waiting_for(conn).map(|r| (conn, r));
        }
        self.attempts
            .iter()
            .find(|(_, a)| a.stream_id() == stream_id)
            .and_then(|(conn, a)| a.expects_packets_from().map(|r| (*conn, r)))
    }

    /// Turns UDX stream events into connection events.
    fn drive_udx_events(&mut self, now: Instant) {
        while let Some((stream_id, ev)) = self.conns.udx.poll_event() {
            let Some(conn) = self.conns.by_stream(stream_id) else {
                continue;
            };
            match ev {
                StreamEvent::Readable => self.pump_read(now, conn),
                StreamEvent::Writable => {}
                StreamEvent::End => {
                    self.conns.udx_ended(conn);
                    // Ends the connection once the bytes before the END have been decrypted.
                    self.pump_read(now, conn);
                }
                StreamEvent::Closed { error } => {
                    self.close_conn(conn, error.map(ConnError::Transport))
                }
                StreamEvent::RemoteChanged => self.relay_remote_changed(stream_id),
                StreamEvent::Connected | StreamEvent::Finished | StreamEvent::Message(_) => {}
            }
        }
        let (writable, flushed) = self.conns.take_writable();
        for conn in writable {
            if !self.is_relay_conn(conn) {
                self.emit(ConnectEvent::Writable(conn));
            }
        }
        for conn in flushed {
            if !self.is_relay_conn(conn) {
                self.emit(ConnectEvent::Flushed(conn));
            }
        }
    }

    // ----- probes, pool sockets, timers -----

    /// A 1-byte probe arrived on pool socket `id`: its puncher's owner takes it.
    fn handle_probe(&mut self, now: Instant, id: u32, from: SocketAddrV4) {
        let socket = udx_socket(SocketKind::Pool(id));
        if let Some(conn) = self.client_punch_owner(socket) {
            return self.with_attempt(now, conn, |a, env, out| {
                a.handle_probe(env, socket, from, out)
            });
        }
        if let Some(server) = self.server_punch_owner(socket) {
            self.with_server(now, server, |s, env, out| {
                s.handle_probe(env, socket, from, out)
            });
        }
    }

    fn client_punch_owner(&self, socket: udx::SocketId) -> Option<ConnId> {
        self.attempts
            .iter()
            .find(|(_, a)| a.owns_socket(socket))
            .map(|(c, _)| *c)
    }

    fn server_punch_owner(&self, socket: udx::SocketId) -> Option<ServerId> {
        self.servers
            .iter()
            .find(|(_, s)| s.owns_socket(socket))
            .map(|(id, _)| *id)
    }

    /// Pool socket `id` is gone (bind failed): whoever used it gives up.
    fn pool_socket_failed(&mut self, now: Instant, id: u32) {
        let socket = udx_socket(SocketKind::Pool(id));
        if let Some(conn) = self.client_punch_owner(socket) {
            return self.fail_attempt(conn, ConnectError::HolepunchAborted);
        }
        if let Some(server) = self.server_punch_owner(socket) {
            return self.with_server(now, server, |s, env, out| s.socket_failed(env, socket, out));
        }
        for conn in self.conns.over_socket(socket) {
            self.conn_destroy(conn);
        }
    }

    /// The connect path's timers: UDX streams, secret-stream keep-alives and first-packet
    /// waits, connects waiting for their server, relay rounds, punches, old handshakes.
    fn connect_path_timeout(&mut self, now: Instant) {
        self.conns.udx.handle_timeout(now);
        self.sweep_retired_streams();
        for conn in self.conns.due(now) {
            if self.conns.wait_expired(conn, now) {
                self.conn_forget(conn);
                continue;
            }
            if let Err(e) = self.conns.handle_secret_timeout(now, conn) {
                self.close_conn(conn, Some(ConnError::Crypto(e)));
            }
        }
        let waiting: Vec<ConnId> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.wait_expired(now))
            .map(|(c, _)| *c)
            .collect();
        for conn in waiting {
            self.fail_attempt(conn, ConnectError::HolepunchAborted);
        }
        let rounds: Vec<ServerId> = self
            .servers
            .iter()
            .filter(|(_, s)| s.relay_round_due(now))
            .map(|(id, _)| *id)
            .collect();
        for server in rounds {
            let mut out = Vec::new();
            if let Some(s) = self.servers.get_mut(&server) {
                s.handle_relay_timeout(now, &mut out);
            }
            self.apply_server(now, server, out);
        }
        let punching: Vec<ConnId> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.punch_due(now))
            .map(|(c, _)| *c)
            .collect();
        for conn in punching {
            self.with_attempt(now, conn, |a, env, out| a.handle_punch_timeout(env, out));
        }
        let punching: Vec<ServerId> = self
            .servers
            .iter()
            .filter(|(_, s)| s.punch_due(now))
            .map(|(id, _)| *id)
            .collect();
        for server in punching {
            self.with_server(now, server, |s, env, out| s.handle_punch_timeout(env, out));
        }
        for s in self.servers.values_mut() {
            s.forget_stale_handshakes(now);
        }
        self.servers.retain(|_, s| !s.is_drained());
        self.drive_udx_events(now);
    }
}
