//! The dht-rpc node: one sans-IO state machine that owns the routing table, the requests in
//! flight, the queries, the NAT sampler and the bootstrap/persistence logic.
//!
//! Inputs: [`RpcNode::handle_datagram`], [`RpcNode::handle_timeout`] and the user calls
//! ([`RpcNode::query`], [`RpcNode::request`], [`RpcNode::reply`], …), each given `now`.
//! Outputs: [`RpcNode::poll_transmit`], [`RpcNode::poll_timeout`], [`RpcNode::poll_event`].

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use rand_core::RngCore;

use super::io::{InFlight, Io, REQUEST_TIMEOUT};
use super::query::{Candidate, Phase, Query, Referrer};
use super::rtt::RttTable;
use super::{
    encode_addr, AddOutcome, CommitError, Health, IncomingRequest, IpLimits, NatSampler, NodeEntry,
    NodeId, Persistence, QueryError, QueryId, QueryReply, QueryResult, RequestError, RequestId,
    RoutingTable, RpcConfig, RpcEvent, SocketKind, TokenSecrets, K,
};
use crate::wire::{
    Message, Request, Response, ERROR_INVALID_TOKEN, ERROR_OK, ERROR_UNKNOWN_COMMAND,
    MAX_DATAGRAM_LEN,
};
use crate::Instant;

/// Internal command: liveness probe.
pub const PING: u64 = 0;
/// Internal command: "reply to this port of my host" (reachability test).
pub const PING_NAT: u64 = 1;
/// Internal command: closest nodes to a target.
pub const FIND_NODE: u64 = 2;
/// Internal command: "this node seems down".
pub const DOWN_HINT: u64 = 3;
/// Internal command: reply after a delay.
pub const DELAYED_PING: u64 = 4;

const TICK_INTERVAL: Duration = Duration::from_millis(5000);
const SLEEPING_INTERVAL: Duration = Duration::from_millis(15000);
const DRAIN_INTERVAL: Duration = Duration::from_millis(750);
const STABLE_TICKS: u32 = 240;
const MORE_STABLE_TICKS: u32 = 720;
const REFRESH_TICKS: u32 = 60;
const RECENT_NODE: u32 = 12;
const OLD_NODE: u32 = 360;
const DEFAULT_RETRIES: u32 = 3;
const QUERY_RETRIES: u32 = 5;
const MAX_REPINGING: u32 = 3;
/// Retries of a query visit to a node never heard from (not in the table, never measured,
/// not a bootstrap node) with adaptive timeouts: three transmissions, not six.
const UNMEASURED_VISIT_RETRIES: u32 = 2;
const MAX_CHECKS_FOR_DOWN_HINTS: u32 = 10;
/// Source hosts remembered during a firewall check.
const MAX_CHECK_HOSTS: usize = 256;
/// Bound on delayed replies we hold, so DELAYED_PING floods cost bounded memory.
const MAX_DELAYED_REPLIES: usize = 1024;

/// A datagram for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Which of the node's sockets sends it.
    pub socket: SocketKind,
    /// Destination.
    pub to: SocketAddrV4,
    /// The datagram.
    pub payload: Vec<u8>,
    /// IP TTL to use, if not the default.
    pub ttl: Option<u8>,
}

/// A query to run ([`RpcNode::query`]).
#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// The key to approach.
    pub target: NodeId,
    /// Internal (dht-rpc) or external (application) command namespace.
    pub internal: bool,
    /// The command sent to every visited node.
    pub command: u64,
    /// The value sent to every visited node.
    pub value: Option<Vec<u8>>,
    /// Auto-commit: send the command again, with the node's token, to the k closest repliers.
    pub commit: bool,
    /// Seed addresses, visited first, in order.
    pub seeds: Vec<SocketAddrV4>,
    /// Visit only the seeds.
    pub only_closest_nodes: bool,
    /// Retries per visit (default 5).
    pub retries: Option<u32>,
    /// Parallel visits (default: the node's concurrency).
    pub concurrency: Option<usize>,
}

impl QuerySpec {
    /// An external-command query for `target` with the defaults.
    pub fn new(target: NodeId, command: u64) -> Self {
        QuerySpec {
            target,
            internal: false,
            command,
            value: None,
            commit: false,
            seeds: Vec::new(),
            only_closest_nodes: false,
            retries: None,
            concurrency: None,
        }
    }
}

/// The dht-rpc query options every hyperdht operation takes: the reference hands an operation's
/// `opts` on to `dht.query`, so `lookup`, `announce`, `unannounce`, `findPeer` and the record
/// puts and gets all accept `nodes`, `onlyClosestNodes`, `concurrency` and `retries`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// `nodes` / `closestNodes`: nodes to visit first, in order (a previous query's closest
    /// nodes, say, to reach the same nodes again quickly).
    pub nodes: Vec<SocketAddrV4>,
    /// `onlyClosestNodes`: visit `nodes` only, never the nodes they name.
    pub only_closest_nodes: bool,
    /// `concurrency`: parallel visits (default: the node's).
    pub concurrency: Option<usize>,
    /// `retries`: attempts per visit (default 5).
    pub retries: Option<u32>,
}

impl QueryOptions {
    /// Sets these options on `spec`.
    pub fn apply_to(&self, spec: &mut QuerySpec) {
        spec.seeds.clone_from(&self.nodes);
        spec.only_closest_nodes = self.only_closest_nodes;
        spec.concurrency = self.concurrency;
        spec.retries = self.retries;
    }
}

/// A single request ([`RpcNode::request`]).
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// Destination.
    pub to: SocketAddrV4,
    /// The destination's id, if known: a timeout then removes it from the routing table.
    pub to_id: Option<NodeId>,
    /// Internal namespace.
    pub internal: bool,
    /// Command.
    pub command: u64,
    /// Target key.
    pub target: Option<NodeId>,
    /// Payload.
    pub value: Option<Vec<u8>>,
    /// A token the destination gave us.
    pub token: Option<[u8; 32]>,
    /// Retransmissions after the first send (default 3).
    pub retries: Option<u32>,
    /// Skip the congestion window.
    pub force: bool,
    /// IP TTL.
    pub ttl: Option<u8>,
    /// Time to wait per transmission (default 1 s).
    pub timeout: Option<Duration>,
    /// Send from this socket instead of the primary one (its reply arrives there).
    pub socket: Option<SocketKind>,
}

impl RequestSpec {
    /// An external request with the defaults.
    pub fn new(to: SocketAddrV4, command: u64) -> Self {
        RequestSpec {
            to,
            to_id: None,
            internal: false,
            command,
            target: None,
            value: None,
            token: None,
            retries: None,
            force: false,
            ttl: None,
            timeout: None,
            socket: None,
        }
    }
}

/// How to answer an [`IncomingRequest`] ([`RpcNode::reply`]).
#[derive(Debug, Clone)]
pub struct ReplySpec {
    /// Error code (0 = OK).
    pub error: u64,
    /// Payload.
    pub value: Option<Vec<u8>>,
    /// Include a fresh token for the destination host.
    pub token: bool,
    /// Include closer nodes for the request's target.
    pub closer_nodes: bool,
    /// Send to this address instead of the request's source.
    pub to: Option<SocketAddrV4>,
    /// Send from this socket instead of the one the request arrived on.
    pub socket: Option<SocketKind>,
}

impl ReplySpec {
    /// `req.reply(value)`: a token and closer nodes by default.
    pub fn value(value: Option<Vec<u8>>) -> Self {
        ReplySpec {
            error: ERROR_OK,
            value,
            token: true,
            closer_nodes: true,
            to: None,
            socket: None,
        }
    }

    /// `req.error(code)`: no token, closer nodes by default.
    pub fn error(code: u64) -> Self {
        ReplySpec {
            error: code,
            value: None,
            token: false,
            closer_nodes: true,
            to: None,
            socket: None,
        }
    }
}

/// A DELAYED_PING reply waiting for its time.
#[derive(Debug, Clone, Copy)]
struct DelayedReply {
    socket: SocketKind,
    to: SocketAddrV4,
    tid: u16,
}

/// Who is waiting for a request's outcome.
#[derive(Debug, Clone)]
enum Owner {
    User(RequestId),
    Visit(QueryId),
    DownHint(QueryId),
    Commit(QueryId),
    Check {
        id: NodeId,
        seen_before: u32,
    },
    Reping {
        old: NodeId,
        seen_before: u32,
        candidate: NodeEntry,
    },
    QuickNat,
    FirewallProbe,
    /// A visit still out when its query ended after settling on stalled visits (adaptive
    /// timeouts): it runs on, so that a dead node still leaves our table and its referrers
    /// still hear a down hint, as they would have had the query waited for it.
    Detached {
        referrers: Vec<Referrer>,
    },
    /// A down hint sent for a detached visit.
    DetachedHint,
}

impl Owner {
    fn query(&self) -> Option<QueryId> {
        match self {
            Owner::Visit(q) | Owner::DownHint(q) | Owner::Commit(q) => Some(*q),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bootstrap {
    Querying {
        round: u8,
        query: QueryId,
        quick_sent: bool,
    },
    Updating {
        round: u8,
    },
    /// The bootstrap query ended while the quick PING_NAT was still out: wait for it (at most
    /// its timeout) instead of skipping the NAT test — on a small or fast network the query
    /// often ends first, and the reference then stays firewalled until a later update.
    AwaitingQuickNat {
        round: u8,
    },
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpdatePurpose {
    Bootstrap { round: u8 },
    Adaptive,
}

/// A network-state update waiting for its firewall probes (`_updateNetworkState` + `_checkIfFirewalled`).
#[derive(Debug)]
struct NetworkCheck {
    purpose: UpdatePurpose,
    only_firewall: bool,
    host: Ipv4Addr,
    port: u16,
    candidates: usize,
    outstanding: usize,
    /// Source hosts of every datagram that reached the server socket during the check.
    hosts: BTreeSet<Ipv4Addr>,
    /// (reply source, reported `to`) of successful probes.
    pongs: Vec<(SocketAddrV4, SocketAddrV4)>,
}

/// Queues a datagram on `transmits`, unless it exceeds the ceiling: no reference node could
/// read it whole, so it is not sent at all (counted in `stats`).
fn queue_transmit(
    transmits: &mut VecDeque<Transmit>,
    stats: &mut Stats,
    socket: SocketKind,
    to: SocketAddrV4,
    payload: Vec<u8>,
    ttl: Option<u8>,
) {
    if payload.len() > MAX_DATAGRAM_LEN {
        stats.oversize_not_sent += 1;
        return;
    }
    transmits.push_back(Transmit {
        socket,
        to,
        payload,
        ttl,
    });
}

/// A dht-rpc node.
#[derive(Debug)]
pub struct RpcNode<R> {
    cfg: RpcConfig,
    rng: R,
    table: RoutingTable,
    nat: NatSampler,
    tokens: TokenSecrets,
    io: Io<Owner>,
    /// Boxed: a B-tree leaf holds room for 11 values, and a ~300-byte `Query` inline made
    /// every node with one query running hold a ~3.5 KB leaf.
    queries: BTreeMap<QueryId, Box<Query>>,
    next_query: u64,
    next_request: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<RpcEvent>,
    delayed: BTreeMap<(Instant, u64), DelayedReply>,
    delayed_seq: u64,
    tick: u32,
    last_tick_at: Instant,
    next_tick: Instant,
    next_drain: Instant,
    firewalled: bool,
    ephemeral: bool,
    adaptive: bool,
    force_persistent: bool,
    bootstrapped: bool,
    destroyed: bool,
    refresh_ticks: u32,
    stable_ticks: u32,
    last_checked_host: Option<Ipv4Addr>,
    repinging: u32,
    checks: u32,
    down_hints_sent: u32,
    bootstrap_samples: Vec<SocketAddrV4>,
    health: Health,
    total_responses: u64,
    total_timeouts: u64,
    bootstrap: Bootstrap,
    test_nat: bool,
    /// The bootstrap's quick PING_NAT is in flight.
    quick_nat_pending: bool,
    network_check: Option<NetworkCheck>,
    /// Measured round trips (adaptive timeouts).
    rtt: RttTable,
    stats: Stats,
}

/// Counters for observability and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the node.
    pub datagrams_in: u64,
    /// Datagrams dropped as malformed or of another protocol.
    pub datagrams_dropped: u64,
    /// Datagrams produced.
    pub datagrams_out: u64,
    /// Requests answered.
    pub requests_in: u64,
    /// Responses matched to a request.
    pub responses_matched: u64,
    /// Datagrams not sent because they exceeded the datagram ceiling (a relayed request that
    /// grew past it; requests of ours that large fail with
    /// [`RequestError::DatagramTooLarge`] instead).
    pub oversize_not_sent: u64,
}

impl<R: RngCore> RpcNode<R> {
    /// A node that starts bootstrapping at `now`. Its first datagrams are ready at once.
    pub fn new(cfg: RpcConfig, mut rng: R, now: Instant) -> Self {
        let mut table_id = [0u8; 32];
        rng.fill_bytes(&mut table_id);
        let first_tid = (rng.next_u32() & 0xffff) as u16;
        let tick = 51 + rng.next_u32() % 50;
        let refresh_ticks = 31 + rng.next_u32() % 30;
        let adaptive = cfg.persistence == Persistence::Adaptive;
        let force_persistent = cfg.persistence == Persistence::Persistent;
        let mut node = RpcNode {
            rng,
            table: RoutingTable::new(NodeId(table_id)),
            nat: NatSampler::new(),
            tokens: TokenSecrets::new(),
            io: Io::new(first_tid, cfg.max_window),
            queries: BTreeMap::new(),
            next_query: 0,
            next_request: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            delayed: BTreeMap::new(),
            delayed_seq: 0,
            tick,
            last_tick_at: now,
            next_tick: now + TICK_INTERVAL,
            next_drain: now + DRAIN_INTERVAL,
            firewalled: cfg.firewalled,
            ephemeral: true,
            adaptive,
            force_persistent,
            bootstrapped: false,
            destroyed: false,
            refresh_ticks,
            stable_ticks: STABLE_TICKS,
            last_checked_host: None,
            repinging: 0,
            checks: 0,
            down_hints_sent: 0,
            bootstrap_samples: Vec::new(),
            health: Health::new(),
            total_responses: 0,
            total_timeouts: 0,
            bootstrap: Bootstrap::Done,
            test_nat: false,
            quick_nat_pending: false,
            network_check: None,
            rtt: RttTable::default(),
            stats: Stats::default(),
            cfg,
        };
        if let Some(public) = node.cfg.bootstrapper {
            node.nat.add(public);
        }
        let seeds: Vec<SocketAddrV4> = node.cfg.nodes.iter().rev().copied().collect();
        for addr in seeds {
            node.add_node(now, addr);
        }
        node.start_bootstrap_round(now, 1);
        node
    }

    // ----- outputs -----

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        self.stats.datagrams_out += 1;
        Some(t)
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<RpcEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.destroyed {
            return None;
        }
        let mut t = self.next_tick;
        if self.io.has_queued() {
            // An idle drain (nothing queued behind the window) changes only counters; it runs
            // late, before the next input (see `catch_up_drains`), so a driver need not wake.
            t = t.min(self.next_drain);
        }
        if let Some(d) = self.io.next_deadline() {
            t = t.min(d);
        }
        if let Some(((d, _), _)) = self.delayed.first_key_value() {
            t = t.min(*d);
        }
        Some(t)
    }

    // ----- state -----

    /// Our id, while persistent.
    pub fn id(&self) -> Option<NodeId> {
        if self.ephemeral {
            None
        } else {
            Some(*self.table.id())
        }
    }

    /// The routing table (read-only).
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Whether the node thinks unsolicited datagrams can't reach its server socket.
    pub fn is_firewalled(&self) -> bool {
        self.firewalled
    }

    /// Whether the node is ephemeral (sends no id, not routable).
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// Whether bootstrapping finished.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// Whether the node has been destroyed.
    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }

    /// Our public host and port as the network reports them (port 0 if unknown/randomized).
    pub fn public_address(&self) -> (Option<Ipv4Addr>, u16) {
        (self.nat.host(), self.nat.port())
    }

    /// `remoteAddress()`: our public address, once not firewalled and consistent with our port.
    pub fn remote_address(&self) -> Option<SocketAddrV4> {
        let host = self.nat.host()?;
        let port = self.nat.port();
        if self.firewalled || port == 0 || port != self.cfg.server_port {
            return None;
        }
        Some(SocketAddrV4::new(host, port))
    }

    /// The socket new requests leave from.
    pub fn primary_socket(&self) -> SocketKind {
        if self.firewalled {
            SocketKind::Client
        } else {
            SocketKind::Server
        }
    }

    /// Health: online.
    pub fn is_online(&self) -> bool {
        self.health.online()
    }

    /// Health: degraded.
    pub fn is_degraded(&self) -> bool {
        self.health.degraded()
    }

    /// The current maintenance tick number.
    pub fn tick(&self) -> u32 {
        self.tick
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.io.len()
    }

    /// The network-wide smoothed round-trip time measured so far (adaptive timeouts).
    pub fn smoothed_rtt(&self) -> Option<Duration> {
        self.rtt.network().map(|r| r.srtt())
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &RpcConfig {
        &self.cfg
    }

    /// `toArray()`: table entries, most recently seen first.
    pub fn to_array(&self) -> Vec<SocketAddrV4> {
        self.table.latest_first().map(|e| e.addr).collect()
    }

    /// Mutable access to the injected RNG (for layers above that share it).
    pub fn rng(&mut self) -> &mut R {
        &mut self.rng
    }

    /// The RNG and the routing table at once (a layer above draws randomness while it reads
    /// the table, e.g. a puncher sampling its NAT from the latest nodes).
    pub(crate) fn rng_and_table(&mut self) -> (&mut R, &RoutingTable) {
        (&mut self.rng, &self.table)
    }

    // ----- user operations -----

    /// `addNode({host, port})`: inserts a node without contacting it.
    pub fn add_node(&mut self, now: Instant, addr: SocketAddrV4) {
        self.catch_up_drains(now, false);
        let id = NodeId::from_addr(&addr);
        if id == *self.table.id() {
            return;
        }
        let entry = self.new_entry(id, addr, None);
        match self.table.add(entry.clone()) {
            AddOutcome::Inserted => self.events.push_back(RpcEvent::AddNode(addr)),
            AddOutcome::Updated => {}
            AddOutcome::Full => self.on_full_row(now, entry),
        }
    }

    /// Starts an iterative query. Replies arrive as [`RpcEvent::QueryReply`], the end as
    /// [`RpcEvent::QueryDone`].
    pub fn query(&mut self, now: Instant, spec: QuerySpec) -> QueryId {
        self.catch_up_drains(now, false);
        let conc = spec.concurrency.unwrap_or(self.cfg.concurrency).max(1);
        self.start_query(now, spec, conc, None)
    }

    /// `findNode(target)`: a FIND_NODE query.
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> QueryId {
        let mut spec = QuerySpec::new(target, FIND_NODE);
        spec.internal = true;
        self.query(now, spec)
    }

    /// Cancels a query: its requests stop and no further event about it follows.
    pub fn cancel_query(&mut self, query: QueryId) {
        if self.queries.remove(&query).is_some() {
            self.cancel_query_requests(query, |_| true);
        }
    }

    /// Sends one request. Its outcome arrives as [`RpcEvent::Response`].
    pub fn request(&mut self, now: Instant, spec: RequestSpec) -> RequestId {
        self.catch_up_drains(now, false);
        let rid = RequestId(self.next_request);
        self.next_request += 1;
        if self.destroyed {
            self.events.push_back(RpcEvent::Response {
                request: rid,
                result: Err(RequestError::Destroyed),
            });
            return rid;
        }
        self.send_request(now, spec, Owner::User(rid));
        rid
    }

    /// `delayedPing(to, ms)`: asks `to` to answer after `delay`; waits `delay + 1 s` per try.
    pub fn delayed_ping(&mut self, now: Instant, to: SocketAddrV4, delay: Duration) -> RequestId {
        let mut spec = RequestSpec::new(to, DELAYED_PING);
        spec.internal = true;
        let ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        spec.value = Some(ms.to_le_bytes().to_vec());
        spec.timeout = Some(delay + Duration::from_millis(1000));
        self.request(now, spec)
    }

    /// An internal PING.
    pub fn ping(&mut self, now: Instant, to: SocketAddrV4) -> RequestId {
        let mut spec = RequestSpec::new(to, PING);
        spec.internal = true;
        self.request(now, spec)
    }

    /// Tells the node the time before an input that carries none ([`RpcNode::reply`],
    /// [`RpcNode::relay`], [`RpcNode::cancel_query`], [`RpcNode::send_datagram`]) made later
    /// than its last timed input: it runs the idle drains due before `now` that
    /// [`RpcNode::poll_timeout`] left out, so a late reply carries the token a timely drain
    /// schedule would give it.
    pub fn advance(&mut self, now: Instant) {
        self.catch_up_drains(now, false);
    }

    /// Answers a request delivered as [`RpcEvent::Request`].
    pub fn reply(&mut self, req: &IncomingRequest, reply: ReplySpec) {
        if self.destroyed {
            return;
        }
        let target = if reply.closer_nodes { req.target } else { None };
        self.send_reply(
            reply.socket.unwrap_or(req.socket),
            reply.to.unwrap_or(req.from),
            req.tid,
            reply.token,
            target,
            reply.error,
            reply.value,
        );
    }

    /// `relay(value, to)`: forwards a received request to a third node, once, untracked, from
    /// the socket it arrived on unless told otherwise.
    pub fn relay(
        &mut self,
        req: &IncomingRequest,
        value: Option<Vec<u8>>,
        to: SocketAddrV4,
        socket: Option<SocketKind>,
    ) {
        if self.destroyed {
            return;
        }
        let socket = socket.unwrap_or(req.socket);
        let msg = Request {
            tid: req.tid,
            to,
            id: self.id_for(socket),
            token: None,
            internal: req.internal,
            command: req.command,
            target: req.target.map(|t| t.0),
            value,
        };
        self.push_transmit(socket, to, msg.to_bytes(), None);
    }

    /// Queues a raw datagram that is not dht-rpc (hyperdht's 1-byte holepunch probes) behind
    /// the node's own transmits.
    pub fn send_datagram(
        &mut self,
        socket: SocketKind,
        to: SocketAddrV4,
        payload: Vec<u8>,
        ttl: Option<u8>,
    ) {
        if !self.destroyed {
            self.push_transmit(socket, to, payload, ttl);
        }
    }

    /// Starts a background refresh (a FIND_NODE towards a random known node).
    pub fn refresh(&mut self, now: Instant) {
        self.catch_up_drains(now, false);
        let target = if self.table.is_empty() {
            *self.table.id()
        } else {
            let i = self.rng.next_u32() as usize % self.table.len();
            self.table.nth(i).map_or(*self.table.id(), |e| e.id)
        };
        self.background_query(now, target);
    }

    /// Stops the node: every request and query fails with "destroyed", no more output.
    pub fn destroy(&mut self) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        for (_, req) in self.io.clear() {
            if let Owner::User(rid) = req.owner {
                self.events.push_back(RpcEvent::Response {
                    request: rid,
                    result: Err(RequestError::Destroyed),
                });
            }
        }
        let queries: Vec<QueryId> = self.queries.keys().copied().collect();
        for q in queries {
            self.queries.remove(&q);
            self.events.push_back(RpcEvent::QueryDone {
                query: q,
                result: Err(QueryError::Destroyed),
            });
        }
        self.delayed.clear();
        self.network_check = None;
    }

    // ----- inputs -----

    /// Feeds one received datagram. Malformed input is dropped silently (counted in stats).
    /// Only the first [`MAX_DATAGRAM_LEN`] bytes are read, as the reference reads them (its
    /// receive buffer truncates the rest): a longer message fails to decode and is dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        if self.destroyed {
            return;
        }
        self.catch_up_drains(now, false);
        let bytes = &bytes[..bytes.len().min(MAX_DATAGRAM_LEN)];
        self.stats.datagrams_in += 1;
        if bytes.len() < 2 || from.port() == 0 {
            self.stats.datagrams_dropped += 1;
            return;
        }
        if socket == SocketKind::Server {
            if let Some(check) = self.network_check.as_mut() {
                // Only probe sources matter; the cap keeps a spoofed flood from growing this.
                if check.hosts.len() < MAX_CHECK_HOSTS {
                    check.hosts.insert(*from.ip());
                }
            }
        }
        match Message::decode(bytes) {
            Ok(Message::Request(req)) => self.on_request(now, socket, from, req),
            Ok(Message::Response(res)) => self.on_response(now, socket, from, res),
            Err(_) => self.stats.datagrams_dropped += 1,
        }
        self.trim();
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.destroyed {
            return;
        }
        if self.next_drain <= now && !self.io.has_queued() {
            // Idle drains this node did not ask to be woken for (see `poll_timeout`).
            self.catch_up_drains(now, true);
        }
        if self.next_drain <= now {
            // Like a JS interval, the drain doesn't catch up after a stall: one run, then
            // the next one an interval later (so a sleep doesn't rotate tokens away).
            if now - self.next_drain > SLEEPING_INTERVAL {
                self.drain(now);
                self.next_drain = now + DRAIN_INTERVAL;
            }
            while self.next_drain <= now {
                self.drain(now);
                self.next_drain = self.next_drain + DRAIN_INTERVAL;
            }
        }
        while let Some(tid) = self.io.pop_expired(now) {
            self.on_request_timer(now, tid);
        }
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let r = entry.remove();
            // Encoded now: whether it carries our id depends on our state when it leaves.
            self.send_reply(r.socket, r.to, r.tid, false, None, ERROR_OK, None);
        }
        if self.next_tick <= now {
            self.next_tick = now + TICK_INTERVAL;
            self.on_tick(now);
        }
        self.trim();
    }

    /// An emptied `BTreeMap` keeps its root leaf allocated (11 slots of the value type: ~2 KB
    /// for `Query` and for `InFlight`); replacing empty maps frees it, ~5 KB per idle node.
    fn trim(&mut self) {
        if self.queries.is_empty() {
            self.queries = BTreeMap::new();
        }
        if self.delayed.is_empty() {
            self.delayed = BTreeMap::new();
        }
        self.io.trim();
    }

    // ----- internals: sending -----

    /// Whether `id` is `H(from)`. A table entry with this id at this address was checked when
    /// it was added, so only senders we do not know cost a BLAKE2b.
    fn id_matches(&self, id: &NodeId, from: &SocketAddrV4) -> bool {
        match self.table.get(id) {
            Some(e) if e.addr == *from => true,
            _ => *id == NodeId::from_addr(from),
        }
    }

    fn id_for(&self, socket: SocketKind) -> Option<[u8; 32]> {
        if !self.ephemeral && socket == SocketKind::Server {
            Some(self.table.id().0)
        } else {
            None
        }
    }

    /// Queues a datagram, unless it exceeds the ceiling: no reference node could read it
    /// whole, so it is not sent at all.
    fn push_transmit(
        &mut self,
        socket: SocketKind,
        to: SocketAddrV4,
        payload: Vec<u8>,
        ttl: Option<u8>,
    ) {
        queue_transmit(
            &mut self.transmits,
            &mut self.stats,
            socket,
            to,
            payload,
            ttl,
        );
    }

    fn send_request(&mut self, now: Instant, spec: RequestSpec, owner: Owner) {
        let socket = spec.socket.unwrap_or_else(|| self.primary_socket());
        let retries = if spec.force {
            0
        } else {
            spec.retries.unwrap_or(DEFAULT_RETRIES)
        };
        let (timeout, adaptive) = match spec.timeout {
            Some(t) => (t, false),
            None if self.cfg.adaptive_timeouts => (self.rtt.timeout_for(&spec.to), true),
            None => (REQUEST_TIMEOUT, false),
        };
        let mut req = InFlight {
            to: spec.to,
            to_id: spec.to_id,
            socket,
            bytes: Vec::new(),
            ttl: spec.ttl,
            sent: 0,
            retries,
            timeout,
            adaptive,
            last_sent: None,
            expiries: 0,
            deadline: None,
            created: now,
            cycled: false,
            force: spec.force,
            owner,
        };
        let Some(tid) = self.io.allocate_tid() else {
            return self.on_request_done(now, req, Err(RequestError::TooManyRequests));
        };
        let msg = Request {
            tid,
            to: spec.to,
            id: self.id_for(socket),
            token: spec.token,
            internal: spec.internal,
            command: spec.command,
            target: spec.target.map(|t| t.0),
            value: spec.value,
        };
        req.bytes = msg.to_bytes();
        if req.bytes.len() > MAX_DATAGRAM_LEN {
            let len = req.bytes.len();
            return self.on_request_done(now, req, Err(RequestError::DatagramTooLarge { len }));
        }
        let RpcNode {
            io,
            transmits,
            stats,
            ..
        } = self;
        io.start(now, tid, req, &mut |o| {
            queue_transmit(transmits, stats, o.socket, o.to, o.bytes, o.ttl)
        });
    }

    fn internal_request(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        to_id: Option<NodeId>,
        command: u64,
        value: Option<Vec<u8>>,
        owner: Owner,
    ) {
        let mut spec = RequestSpec::new(to, command);
        spec.internal = true;
        spec.to_id = to_id;
        spec.value = value;
        self.send_request(now, spec, owner);
    }

    #[allow(clippy::too_many_arguments)]
    fn send_reply(
        &mut self,
        socket: SocketKind,
        to: SocketAddrV4,
        tid: u16,
        token: bool,
        closer_target: Option<NodeId>,
        error: u64,
        value: Option<Vec<u8>>,
    ) {
        let token = if token {
            Some(self.tokens.token(*to.ip(), &mut self.rng))
        } else {
            None
        };
        let closer_nodes = match closer_target {
            Some(t) => {
                // Sized once: the chained row iterator has no useful size hint, and collecting
                // it grew the vector 4 → 8 → 16 → 32 on every reply.
                let mut v = Vec::with_capacity(K);
                v.extend(self.table.closest(&t).take(K).map(|e| e.addr));
                v
            }
            None => Vec::new(),
        };
        let res = Response {
            tid,
            to,
            id: self.id_for(socket),
            token,
            closer_nodes,
            error,
            value,
        };
        self.push_transmit(socket, to, res.to_bytes(), None);
    }

    /// Runs the drains due before `now` (and at `now` if `inclusive`) while nothing is
    /// queued behind the congestion window. Such a drain only advances the window's slot and
    /// the token rotation, so it needs no timer of its own: `poll_timeout` leaves it out, and
    /// every input runs the drains it missed first, in order, exactly as if a timer had run
    /// each on time. Inputs at the drain's own instant see it not yet run, as a datagram that
    /// arrives together with a due timer is read before the timer runs.
    fn catch_up_drains(&mut self, now: Instant, inclusive: bool) {
        if self.io.has_queued() {
            // The drain's deadline was reported; its timer runs it (stall rules included).
            return;
        }
        while self.next_drain < now || (inclusive && self.next_drain == now) {
            self.io.congestion.drain();
            self.tokens.on_drain();
            self.next_drain = self.next_drain + DRAIN_INTERVAL;
        }
    }

    fn drain(&mut self, now: Instant) {
        let RpcNode {
            io,
            transmits,
            stats,
            ..
        } = self;
        io.drain(now, &mut |o| {
            queue_transmit(transmits, stats, o.socket, o.to, o.bytes, o.ttl)
        });
        self.tokens.on_drain();
    }

    // ----- internals: incoming requests -----

    fn on_request(&mut self, now: Instant, socket: SocketKind, from: SocketAddrV4, req: Request) {
        self.stats.requests_in += 1;
        let from_id = req.id.map(NodeId).filter(|id| self.id_matches(id, &from));
        let target = req.target.map(NodeId);
        if let Some(token) = &req.token {
            if !self.tokens.validate(*from.ip(), token, &mut self.rng) {
                self.send_reply(
                    socket,
                    from,
                    req.tid,
                    true,
                    target,
                    ERROR_INVALID_TOKEN,
                    None,
                );
                return;
            }
        }
        if let Some(id) = from_id {
            let sample = socket == self.primary_socket();
            self.add_node_from_network(now, sample, from, id, req.to);
        }
        if req.internal {
            self.on_internal_request(now, socket, from, req, target);
            return;
        }
        if self.cfg.deliver_requests {
            self.events.push_back(RpcEvent::Request(IncomingRequest {
                tid: req.tid,
                from,
                from_id,
                to: req.to,
                token: req.token,
                internal: false,
                command: req.command,
                target,
                value: req.value,
                socket,
            }));
        } else {
            self.send_reply(
                socket,
                from,
                req.tid,
                false,
                target,
                ERROR_UNKNOWN_COMMAND,
                None,
            );
        }
    }

    fn on_internal_request(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddrV4,
        req: Request,
        target: Option<NodeId>,
    ) {
        let value = req.value.as_deref().unwrap_or(&[]);
        match req.command {
            PING => self.send_reply(socket, from, req.tid, false, None, ERROR_OK, None),
            PING_NAT => {
                if value.len() < 2 {
                    return;
                }
                let port = u16::from_le_bytes([value[0], value[1]]);
                if port == 0 {
                    return;
                }
                let to = SocketAddrV4::new(*from.ip(), port);
                self.send_reply(socket, to, req.tid, false, None, ERROR_OK, None);
            }
            FIND_NODE => {
                if target.is_none() {
                    return;
                }
                self.send_reply(socket, from, req.tid, false, target, ERROR_OK, None);
            }
            DOWN_HINT => {
                if value.len() < 6 {
                    return;
                }
                if self.checks < MAX_CHECKS_FOR_DOWN_HINTS {
                    let id = NodeId(crate::crypto::hash(&value[..6]));
                    let tick = self.tick;
                    if let Some(node) = self.table.get_mut(&id) {
                        if node.pinged < tick || node.down_hints == 0 {
                            node.down_hints = node.down_hints.saturating_add(1);
                            self.check(now, id);
                        }
                    }
                }
                self.send_reply(socket, from, req.tid, false, None, ERROR_OK, None);
            }
            DELAYED_PING => {
                if value.len() < 4 {
                    return;
                }
                let delay = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
                if delay > self.cfg.max_ping_delay || self.delayed.len() >= MAX_DELAYED_REPLIES {
                    return;
                }
                let at = now + Duration::from_millis(u64::from(delay));
                self.delayed_seq += 1;
                self.delayed.insert(
                    (at, self.delayed_seq),
                    DelayedReply {
                        socket,
                        to: from,
                        tid: req.tid,
                    },
                );
            }
            _ => self.send_reply(
                socket,
                from,
                req.tid,
                false,
                target,
                ERROR_UNKNOWN_COMMAND,
                None,
            ),
        }
    }

    // ----- internals: responses -----

    fn on_response(&mut self, now: Instant, socket: SocketKind, from: SocketAddrV4, res: Response) {
        let Some(req) = self.io.complete(res.tid) else {
            return;
        };
        self.stats.responses_matched += 1;
        self.total_responses += 1;
        // Karn's rule: only an answer to a request sent once times the round trip.
        if req.adaptive && req.sent == 1 && from == req.to {
            if let Some(sent_at) = req.last_sent {
                self.rtt.sample(&from, now - sent_at);
            }
        }
        let from_id = res.id.map(NodeId).filter(|id| self.id_matches(id, &from));
        let sample = socket == self.primary_socket();
        match from_id {
            Some(id) => self.add_node_from_network(now, sample, from, id, res.to),
            None => self.sample_bootstrap_maybe(from, res.to),
        }
        let reply = QueryReply {
            from,
            from_id,
            to: res.to,
            token: res.token,
            closer_nodes: res.closer_nodes,
            error: res.error,
            value: res.value,
            rtt: now - req.created,
        };
        self.on_request_done(now, req, Ok(reply));
    }

    fn on_request_timer(&mut self, now: Instant, tid: u16) {
        if self.io.take_cycle(tid) {
            if let Some((Owner::Visit(q), to)) = self.io.get(tid).map(|r| (r.owner.clone(), r.to)) {
                if let Some(query) = self.queries.get_mut(&q) {
                    query.slow += 1;
                    if self.cfg.adaptive_timeouts {
                        // A referral that missed its first timer counts against whoever named it.
                        query.on_slow_referral(to);
                    }
                }
                self.read_more(now, q);
            }
        } else if self.cfg.adaptive_timeouts {
            // The second miss: the visit is stalled (see `read_more`'s settle rule).
            if let Some((Owner::Visit(q), 2)) =
                self.io.get(tid).map(|r| (r.owner.clone(), r.expiries))
            {
                if let Some(query) = self.queries.get_mut(&q) {
                    query.stalled += 1;
                }
                self.read_more(now, q);
            }
        }
        let RpcNode {
            io,
            transmits,
            stats,
            ..
        } = self;
        let failed = io.expire(now, tid, &mut |o| {
            queue_transmit(transmits, stats, o.socket, o.to, o.bytes, o.ttl)
        });
        if let Some(req) = failed {
            self.total_timeouts += 1;
            if let Some(id) = req.to_id {
                self.remove_node(&id);
            }
            self.on_request_done(now, req, Err(RequestError::Timeout));
        }
    }

    fn on_request_done(
        &mut self,
        now: Instant,
        req: InFlight<Owner>,
        result: Result<QueryReply, RequestError>,
    ) {
        match req.owner {
            Owner::User(rid) => self.events.push_back(RpcEvent::Response {
                request: rid,
                result,
            }),
            Owner::Visit(q) => {
                let stalled = self.cfg.adaptive_timeouts && req.expiries >= 2;
                self.on_visit_done(now, q, req.to, req.cycled, stalled, result);
            }
            Owner::DownHint(_) | Owner::DetachedHint => {}
            Owner::Detached { referrers } => {
                if result == Err(RequestError::Timeout) {
                    for r in referrers {
                        self.send_down_hint_as(now, Owner::DetachedHint, r, req.to);
                    }
                }
            }
            Owner::Commit(q) => {
                // Like `dht.request`, any response counts, whatever its error code.
                let outcome = result.map(|_| ()).map_err(CommitError::Request);
                self.on_commit_done(now, q, outcome);
            }
            Owner::Check { id, seen_before } => {
                self.checks = self.checks.saturating_sub(1);
                let advanced =
                    result.is_ok() && self.table.get(&id).is_some_and(|n| n.seen > seen_before);
                if !advanced {
                    self.remove_node(&id);
                }
            }
            Owner::Reping {
                old,
                seen_before,
                candidate,
            } => {
                self.repinging = self.repinging.saturating_sub(1);
                let advanced =
                    result.is_ok() && self.table.get(&old).is_some_and(|n| n.seen > seen_before);
                if !advanced {
                    self.remove_node(&old);
                    self.insert_fresh(candidate.id, candidate.addr, candidate.to);
                }
            }
            Owner::QuickNat => {
                self.quick_nat_pending = false;
                match self.bootstrap {
                    Bootstrap::Querying { .. } if result.is_ok() => self.test_nat = true,
                    Bootstrap::AwaitingQuickNat { round } => {
                        self.test_nat = result.is_ok();
                        self.on_bootstrap_query_done(now, round);
                    }
                    _ => {}
                }
            }
            Owner::FirewallProbe => {
                let done = match self.network_check.as_mut() {
                    Some(check) => {
                        check.outstanding = check.outstanding.saturating_sub(1);
                        // Every response counts, whatever its error code (`requestAll`).
                        if let Ok(r) = &result {
                            check.pongs.push((r.from, r.to));
                        }
                        check.outstanding == 0
                    }
                    None => false,
                };
                if done {
                    self.finish_firewall_check(now);
                }
            }
        }
    }

    // ----- internals: routing table -----

    fn new_entry(&self, id: NodeId, addr: SocketAddrV4, to: Option<SocketAddrV4>) -> NodeEntry {
        NodeEntry {
            id,
            addr,
            to,
            added: self.tick,
            pinged: self.tick,
            seen: self.tick,
            sampled: 0,
            down_hints: 0,
        }
    }

    fn nat_add(&mut self, addr: SocketAddrV4) {
        let before = (self.nat.host(), self.nat.port());
        self.nat.add(addr);
        let after = (self.nat.host(), self.nat.port());
        if before != after {
            tracing::debug!(host = ?after.0, port = after.1, "public address (NAT-sampled) changed");
            self.events.push_back(RpcEvent::NatUpdate {
                host: after.0,
                port: after.1,
            });
        }
    }

    fn sample_bootstrap_maybe(&mut self, from: SocketAddrV4, to: SocketAddrV4) {
        let max = self.cfg.bootstrap.len().max(1);
        if self.bootstrap_samples.len() >= max || self.bootstrap_samples.contains(&from) {
            return;
        }
        self.bootstrap_samples.push(from);
        self.nat_add(to);
    }

    fn add_node_from_network(
        &mut self,
        now: Instant,
        sample: bool,
        from: SocketAddrV4,
        id: NodeId,
        to: SocketAddrV4,
    ) {
        if id == *self.table.id() {
            return;
        }
        let tick = self.tick;
        if let Some(node) = self.table.touch_mut(&id) {
            node.pinged = tick;
            node.seen = tick;
            let resample =
                sample && (node.sampled == 0 || tick.saturating_sub(node.sampled) >= OLD_NODE);
            if resample {
                node.to = Some(to);
                node.sampled = tick;
            }
            if resample {
                self.nat_add(to);
            }
            return;
        }
        if !self.ip_room(&from) {
            return;
        }
        let mut entry = self.new_entry(id, from, Some(to));
        entry.sampled = tick;
        match self.table.add(entry.clone()) {
            AddOutcome::Inserted => {
                self.events.push_back(RpcEvent::AddNode(from));
                self.nat_add(to);
            }
            AddOutcome::Updated => {}
            AddOutcome::Full => {
                entry.sampled = 0;
                self.on_full_row(now, entry);
            }
        }
    }

    /// `_addNode`: inserts with the current tick and feeds its `to` to the NAT sampler.
    fn insert_fresh(&mut self, id: NodeId, addr: SocketAddrV4, to: Option<SocketAddrV4>) {
        if self.table.contains(&id) || id == *self.table.id() || !self.ip_room(&addr) {
            return;
        }
        let mut entry = self.new_entry(id, addr, to);
        if to.is_some() {
            entry.sampled = self.tick;
        }
        if self.table.add(entry) == AddOutcome::Inserted {
            self.events.push_back(RpcEvent::AddNode(addr));
            if let Some(to) = to {
                self.nat_add(to);
            }
        }
    }

    fn on_full_row(&mut self, now: Instant, candidate: NodeEntry) {
        if !self.bootstrapped || self.repinging >= MAX_REPINGING {
            return;
        }
        let row = self.table.row_index(&candidate.id);
        let tick = self.tick;
        let oldest = self
            .table
            .row(row)
            .filter(|n| n.pinged != tick)
            .min_by(|a, b| a.pinged.cmp(&b.pinged).then(a.added.cmp(&b.added)))
            .map(|n| (n.id, n.addr, n.pinged, n.added, n.seen));
        let Some((id, addr, pinged, added, seen)) = oldest else {
            return;
        };
        if tick.saturating_sub(pinged) < RECENT_NODE && tick.saturating_sub(added) > OLD_NODE {
            return;
        }
        if let Some(n) = self.table.get_mut(&id) {
            n.pinged = tick;
        }
        self.repinging += 1;
        self.internal_request(
            now,
            addr,
            None,
            PING,
            None,
            Owner::Reping {
                old: id,
                seen_before: seen,
                candidate,
            },
        );
    }

    /// Whether [`RpcConfig::ip_limits`] let one more node at `addr` into the table (public
    /// addresses only: every node of a local testnet shares 127.0.0.1).
    fn ip_room(&self, addr: &SocketAddrV4) -> bool {
        let Some(limits) = self.cfg.ip_limits else {
            return true;
        };
        let ip = u32::from(*addr.ip());
        if !IpLimits::applies_to(addr.ip()) {
            return true;
        }
        let (mut same_ip, mut same_net) = (0, 0);
        for e in self.table.oldest_first() {
            let other = u32::from(*e.addr.ip());
            if other >> 8 == ip >> 8 {
                same_net += 1;
                same_ip += usize::from(other == ip);
            }
        }
        same_ip < limits.per_ip && same_net < limits.per_subnet
    }

    fn remove_node(&mut self, id: &NodeId) {
        if let Some(e) = self.table.remove(id) {
            self.rtt.forget(&e.addr);
            self.events.push_back(RpcEvent::RemoveNode(e.addr));
        }
    }

    /// `_check(node)`: ping it; remove it unless it answers with a fresh `seen`.
    fn check(&mut self, now: Instant, id: NodeId) {
        let tick = self.tick;
        let Some(node) = self.table.get_mut(&id) else {
            return;
        };
        node.pinged = tick;
        let (addr, seen_before) = (node.addr, node.seen);
        self.checks += 1;
        self.internal_request(
            now,
            addr,
            Some(id),
            PING,
            None,
            Owner::Check { id, seen_before },
        );
    }

    fn ping_some(&mut self, now: Instant) {
        let mut budget = if self.io.len() > 2 { 3 } else { 5 };
        let tick = self.tick;
        let Some(oldest) = self.table.oldest_first().next() else {
            self.refresh(now);
            return;
        };
        if tick.saturating_sub(oldest.pinged) < RECENT_NODE {
            budget = 2;
        }
        let victims: Vec<NodeId> = self
            .table
            .oldest_first()
            .take(budget)
            .take_while(|n| n.pinged != tick)
            .map(|n| n.id)
            .collect();
        for id in victims {
            self.check(now, id);
        }
    }

    // ----- internals: ticks -----

    fn on_tick(&mut self, now: Instant) {
        if now - self.last_tick_at > SLEEPING_INTERVAL {
            self.wakeup(now);
        } else {
            self.tick += 1;
        }
        self.last_tick_at = now;
        if !self.bootstrapped {
            return;
        }
        if self.adaptive && self.ephemeral && self.network_check.is_none() {
            self.stable_ticks = self.stable_ticks.saturating_sub(1);
            if self.stable_ticks == 0 {
                if self.last_checked_host.is_some() && self.nat.host() == self.last_checked_host {
                    self.stable_ticks = MORE_STABLE_TICKS;
                } else {
                    self.update_network_state(now, false, UpdatePurpose::Adaptive);
                }
            }
        }
        if self.tick & 7 == 0 {
            self.ping_some(now);
        }
        let refresh = if (self.tick & 63) == 0 && self.table.len() < K {
            true
        } else {
            self.refresh_ticks = self.refresh_ticks.saturating_sub(1);
            self.refresh_ticks == 0
        };
        if refresh {
            self.refresh(now);
        }
        self.down_hints_sent = 0;
        if self
            .health
            .update(self.total_responses, self.total_timeouts)
            .is_some()
        {
            self.events.push_back(RpcEvent::NetworkUpdate {
                online: self.health.online(),
                degraded: self.health.degraded(),
            });
        }
    }

    fn wakeup(&mut self, _now: Instant) {
        let t = self.tick.wrapping_add(2 * OLD_NODE);
        self.tick = t.wrapping_add(8).wrapping_sub(t & 7).wrapping_sub(2);
        self.stable_ticks = MORE_STABLE_TICKS;
        self.refresh_ticks = 1;
        self.last_checked_host = None;
        if self.health.reset_with_change().is_some() {
            self.events.push_back(RpcEvent::NetworkUpdate {
                online: self.health.online(),
                degraded: self.health.degraded(),
            });
        }
        if self.adaptive && !self.ephemeral {
            self.ephemeral = true;
            self.events.push_back(RpcEvent::Ephemeral);
        }
        self.events.push_back(RpcEvent::Wakeup);
    }

    // ----- internals: queries -----

    fn background_query(&mut self, now: Instant, target: NodeId) -> QueryId {
        let conc = self.cfg.concurrency;
        let bg = conc.min((conc / 8).max(2));
        let mut spec = QuerySpec::new(target, FIND_NODE);
        spec.internal = true;
        self.start_query(now, spec, bg, Some(bg))
    }

    fn start_query(
        &mut self,
        now: Instant,
        spec: QuerySpec,
        concurrency: usize,
        background: Option<usize>,
    ) -> QueryId {
        let qid = QueryId(self.next_query);
        self.next_query += 1;
        if self.destroyed {
            self.events.push_back(RpcEvent::QueryDone {
                query: qid,
                result: Err(QueryError::Destroyed),
            });
            return qid;
        }
        self.refresh_ticks = REFRESH_TICKS;
        let retries = spec
            .retries
            .unwrap_or(if spec.internal && spec.command == DOWN_HINT {
                DEFAULT_RETRIES
            } else {
                QUERY_RETRIES
            });
        let mut q = Query::new(
            spec.target,
            spec.internal,
            spec.command,
            spec.value,
            spec.commit,
            retries,
            concurrency,
            background,
            spec.only_closest_nodes,
        );
        for addr in spec.seeds {
            q.push_seed(Candidate {
                addr,
                id: NodeId::from_addr(&addr),
            });
        }
        self.queries.insert(qid, Box::new(q));
        self.open_query(qid);
        self.read_more(now, qid);
        qid
    }

    /// `_open`: fill from the table, then the bootstrap nodes, while fewer than k are pending.
    fn open_query(&mut self, qid: QueryId) {
        let Some(q) = self.queries.get(&qid) else {
            return;
        };
        if q.pending_len() < K {
            self.add_from_table(qid);
        }
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if q.pending_len() < K {
            for addr in self.cfg.bootstrap.iter().copied() {
                q.add_pending(
                    Candidate {
                        addr,
                        id: NodeId::from_addr(&addr),
                    },
                    None,
                );
            }
        }
    }

    fn add_from_table(&mut self, qid: QueryId) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        q.from_table = true;
        let want = K.saturating_sub(q.pending_len());
        let target = q.target;
        for e in self.table.closest(&target).take(want) {
            q.add_pending(
                Candidate {
                    addr: e.addr,
                    id: e.id,
                },
                None,
            );
        }
    }

    fn read_more(&mut self, now: Instant, qid: QueryId) {
        loop {
            let Some(q) = self.queries.get_mut(&qid) else {
                return;
            };
            if q.phase != Phase::Visiting {
                return;
            }
            let limit = if q.slowdown { 3 } else { q.concurrency } + q.slow;
            let mut visits = Vec::new();
            while q.inflight + visits.len() < limit {
                let Some(next) = q.pop_pending() else { break };
                if !q.is_closer(&next.id) {
                    continue;
                }
                visits.push(next);
            }
            q.inflight += visits.len();
            if !q.from_table && q.successes == 0 && q.errors == 0 {
                q.slowdown = true;
            }
            let (target, internal, command, value, retries) =
                (q.target, q.internal, q.command, q.value.clone(), q.retries);
            for c in visits {
                let unheard = self.cfg.adaptive_timeouts
                    && !self.rtt.is_measured(&c.addr)
                    && !self.table.contains(&c.id)
                    && !self.cfg.bootstrap.contains(&c.addr);
                let retries = if unheard {
                    retries.min(UNMEASURED_VISIT_RETRIES)
                } else {
                    retries
                };
                let spec = RequestSpec {
                    to: c.addr,
                    to_id: Some(c.id),
                    internal,
                    command,
                    target: Some(target),
                    value: value.clone(),
                    token: None,
                    retries: Some(retries),
                    force: false,
                    ttl: None,
                    timeout: None,
                    socket: None,
                };
                self.send_request(now, spec, Owner::Visit(qid));
            }
            let Some(q) = self.queries.get_mut(&qid) else {
                return;
            };
            if q.pending_len() > 0 {
                return;
            }
            // Adaptive: also settle once every visit still out has missed two timers (the
            // reference waits for each to use up all its retries while it has < k replies).
            let settled = q.inflight == 0
                || (q.slow == q.inflight && q.closest_replies().len() >= K)
                || (self.cfg.adaptive_timeouts && q.stalled == q.inflight && q.successes > 0);
            if !settled {
                return;
            }
            if !q.from_table && q.successes < K / 4 {
                self.add_from_table(qid);
                continue;
            }
            self.flush_query(now, qid);
            return;
        }
    }

    fn on_visit_done(
        &mut self,
        now: Instant,
        qid: QueryId,
        to: SocketAddrV4,
        cycled: bool,
        stalled: bool,
        result: Result<QueryReply, RequestError>,
    ) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        q.inflight = q.inflight.saturating_sub(1);
        if cycled {
            q.slow = q.slow.saturating_sub(1);
        }
        if stalled {
            q.stalled = q.stalled.saturating_sub(1);
        }
        let reply = match result {
            Ok(r) => r,
            Err(err) => {
                if err == RequestError::Timeout {
                    let refs = q.mark_down(to);
                    for r in refs {
                        self.send_down_hint(now, qid, r, to);
                    }
                }
                if let Some(q) = self.queries.get_mut(&qid) {
                    q.errors += 1;
                }
                self.read_more(now, qid);
                return;
            }
        };
        q.mark_done(to);
        if self.cfg.adaptive_timeouts {
            q.on_answered_referral(to);
        }
        if q.phase != Phase::Visiting {
            return;
        }
        if reply.error == ERROR_OK {
            q.successes += 1;
        } else {
            q.errors += 1;
        }
        // Cloned (closer nodes, value, token) only if it makes the k closest.
        if reply.error == ERROR_OK && reply.from_id.is_some_and(|id| q.is_closer(&id)) {
            q.add_closest(reply.clone());
        }
        let own = *self.table.id();
        let referrer = Referrer {
            addr: reply.from,
            id: reply.from_id,
        };
        let mut hints = Vec::new();
        // A referrer whose referrals keep missing their timers is not asked for more.
        let listen = !q.is_distrusted(&reply.from);
        // Honest nodes send at most k; more is ignored so one reply can't flood the query.
        for addr in reply.closer_nodes.iter().take(K).filter(|_| listen) {
            let Some(res) = q.add_referral(*addr, &own, referrer) else {
                continue;
            };
            if let Some(h) = res.down_hint {
                hints.push(h);
            }
            if !res.keep_going {
                break;
            }
        }
        if !q.from_table && q.successes + q.errors >= q.concurrency {
            q.slowdown = false;
        }
        let background = q.background;
        for (r, down) in hints {
            self.send_down_hint(now, qid, r, down);
        }
        let emit = reply.error == ERROR_OK;
        if emit {
            self.on_query_reply(now, qid, &reply);
            self.events
                .push_back(RpcEvent::QueryReply { query: qid, reply });
        }
        self.read_more(now, qid);
        // Background queries speed up while the node is idle (on the reference's `data` event,
        // after the reply's own read).
        if let (true, Some(bg)) = (emit, background) {
            let full = self.cfg.concurrency;
            let inflight = self.io.len();
            if let Some(q) = self.queries.get_mut(&qid) {
                q.concurrency = if inflight < 3 { full } else { bg };
            }
        }
    }

    /// Hook for internal queries (bootstrap's quick NAT test).
    fn on_query_reply(&mut self, now: Instant, qid: QueryId, reply: &QueryReply) {
        if let Bootstrap::Querying {
            round: 1,
            query,
            quick_sent: false,
        } = self.bootstrap
        {
            if query == qid {
                self.bootstrap = Bootstrap::Querying {
                    round: 1,
                    query,
                    quick_sent: true,
                };
                let quick = self.firewalled && self.cfg.quick_firewall && !self.force_persistent;
                if quick {
                    self.quick_nat_pending = true;
                    let port = self.cfg.server_port.to_le_bytes().to_vec();
                    self.internal_request(
                        now,
                        reply.from,
                        reply.from_id,
                        PING_NAT,
                        Some(port),
                        Owner::QuickNat,
                    );
                }
            }
        }
    }

    fn send_down_hint(&mut self, now: Instant, qid: QueryId, to: Referrer, down: SocketAddrV4) {
        self.send_down_hint_as(now, Owner::DownHint(qid), to, down);
    }

    fn send_down_hint_as(&mut self, now: Instant, owner: Owner, to: Referrer, down: SocketAddrV4) {
        if !self.cfg.send_down_hints {
            return;
        }
        if let Some(limit) = self.cfg.down_hints_rate_limit {
            if self.down_hints_sent >= limit {
                return;
            }
        }
        self.down_hints_sent += 1;
        self.internal_request(
            now,
            to.addr,
            to.id,
            DOWN_HINT,
            Some(encode_addr(&down).to_vec()),
            owner,
        );
    }

    /// `_flush`: end the query, or start its commit phase.
    fn flush_query(&mut self, now: Instant, qid: QueryId) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if !q.commit {
            self.finish_query_ok(now, qid);
            return;
        }
        if q.closest_replies().is_empty() {
            self.finish_query(now, qid, Err(QueryError::TooFewNodes));
            return;
        }
        let commits: Vec<(SocketAddrV4, Option<[u8; 32]>)> = q
            .closest_replies()
            .iter()
            .map(|r| (r.from, r.token))
            .collect();
        q.phase = Phase::Committing {
            outstanding: commits.len(),
            succeeded: 0,
        };
        let (target, command, value) = (q.target, q.command, q.value.clone());
        // Visits still in flight keep running (retries, table updates, down hints) until the
        // query ends; their replies are no longer emitted.
        let mut no_token = 0;
        for (to, token) in commits {
            match token {
                None => no_token += 1,
                Some(token) => {
                    let spec = RequestSpec {
                        to,
                        to_id: None,
                        internal: false,
                        command,
                        target: Some(target),
                        value: value.clone(),
                        token: Some(token),
                        retries: None,
                        force: false,
                        ttl: None,
                        timeout: None,
                        socket: None,
                    };
                    self.send_request(now, spec, Owner::Commit(qid));
                }
            }
        }
        for _ in 0..no_token {
            self.on_commit_done(now, qid, Err(CommitError::NoToken));
        }
    }

    fn on_commit_done(&mut self, now: Instant, qid: QueryId, outcome: Result<(), CommitError>) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        let Phase::Committing {
            outstanding,
            succeeded,
        } = &mut q.phase
        else {
            return;
        };
        *outstanding = outstanding.saturating_sub(1);
        match outcome {
            Ok(()) => *succeeded += 1,
            Err(e) => {
                if *outstanding == 0 && *succeeded == 0 {
                    self.finish_query(now, qid, Err(QueryError::CommitFailed(e)));
                    return;
                }
            }
        }
        if *outstanding == 0 {
            self.finish_query_ok(now, qid);
        }
    }

    fn finish_query_ok(&mut self, now: Instant, qid: QueryId) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        let result = QueryResult {
            successes: q.successes,
            errors: q.errors,
            closest_replies: q.take_closest_replies(),
        };
        self.finish_query(now, qid, Ok(result));
    }

    fn finish_query(
        &mut self,
        now: Instant,
        qid: QueryId,
        result: Result<QueryResult, QueryError>,
    ) {
        if self.cfg.adaptive_timeouts {
            self.detach_stalled_visits(qid);
        }
        self.cancel_query_requests(qid, |_| true);
        self.queries.remove(&qid);
        self.events.push_back(RpcEvent::QueryDone {
            query: qid,
            result: result.clone(),
        });
        if let Bootstrap::Querying { round, query, .. } = self.bootstrap {
            if query == qid {
                self.on_bootstrap_query_done(now, round);
            }
        }
    }

    /// Hands the query's visits that missed two timers over to [`Owner::Detached`].
    fn detach_stalled_visits(&mut self, qid: QueryId) {
        let tids = self
            .io
            .tids_where(|o| matches!(o, Owner::Visit(q) if *q == qid));
        for tid in tids {
            let Some((to, expiries)) = self.io.get(tid).map(|r| (r.to, r.expiries)) else {
                continue;
            };
            if expiries < 2 {
                continue;
            }
            let referrers = self
                .queries
                .get_mut(&qid)
                .map(|q| q.mark_down(to))
                .unwrap_or_default();
            if let Some(owner) = self.io.owner_mut(tid) {
                *owner = Owner::Detached { referrers };
            }
        }
    }

    fn cancel_query_requests(&mut self, qid: QueryId, mut pred: impl FnMut(&Owner) -> bool) {
        let tids = self.io.tids_where(|o| o.query() == Some(qid) && pred(o));
        for tid in tids {
            self.io.cancel(tid);
        }
    }

    // ----- internals: bootstrap and network state -----

    fn start_bootstrap_round(&mut self, now: Instant, round: u8) {
        let target = *self.table.id();
        // Mark the state before the query starts: its replies may arrive synchronously in tests.
        self.bootstrap = Bootstrap::Querying {
            round,
            query: QueryId(self.next_query),
            quick_sent: false,
        };
        self.background_query(now, target);
    }

    fn on_bootstrap_query_done(&mut self, now: Instant, round: u8) {
        if !self.test_nat && !self.force_persistent {
            if self.quick_nat_pending {
                // hdht: the quick NAT ping decides, not which of it and the query ends first.
                self.bootstrap = Bootstrap::AwaitingQuickNat { round };
                return;
            }
            self.finish_bootstrap();
            return;
        }
        self.bootstrap = Bootstrap::Updating { round };
        let only_firewall = !self.force_persistent;
        self.update_network_state(now, only_firewall, UpdatePurpose::Bootstrap { round });
    }

    fn finish_bootstrap(&mut self) {
        if self.bootstrapped {
            return;
        }
        self.bootstrap = Bootstrap::Done;
        self.bootstrapped = true;
        tracing::debug!(
            nodes = self.table.len(),
            firewalled = self.firewalled,
            ephemeral = self.ephemeral,
            public_address = ?self.nat.host().map(|h| SocketAddrV4::new(h, self.nat.port())),
            "bootstrap done"
        );
        self.events.push_back(RpcEvent::Ready);
    }

    /// `_updateNetworkState(onlyFirewall)`. The outcome goes to `on_network_update_done`, at
    /// once or after the firewall probes.
    fn update_network_state(&mut self, now: Instant, only_firewall: bool, purpose: UpdatePurpose) {
        tracing::debug!(
            only_firewall,
            ephemeral = self.ephemeral,
            firewalled = self.firewalled,
            host = ?self.nat.host(),
            port = self.nat.port(),
            "network update"
        );
        if !self.ephemeral || (only_firewall && !self.firewalled) {
            return self.on_network_update_done(now, purpose, false);
        }
        let (host, port) = (self.nat.host(), self.nat.port());
        if !only_firewall {
            self.stable_ticks = MORE_STABLE_TICKS;
            self.last_checked_host = host;
        }
        let Some(host) = host.filter(|_| port != 0) else {
            return self.on_network_update_done(now, purpose, false);
        };
        if !self.firewalled {
            let ok = self.complete_network_update(now, only_firewall, host, port, None);
            return self.on_network_update_done(now, purpose, ok);
        }
        // `_checkIfFirewalled`: probe up to 5 recent nodes (plus the bootstrap nodes if fewer).
        let mut candidates: Vec<(SocketAddrV4, NodeId)> = self
            .table
            .latest_first()
            .take(5)
            .map(|e| (e.addr, e.id))
            .collect();
        if candidates.len() < 5 {
            candidates.extend(
                self.cfg
                    .bootstrap
                    .iter()
                    .map(|a| (*a, NodeId::from_addr(a))),
            );
        }
        if candidates.is_empty() {
            return self.on_network_update_done(now, purpose, false);
        }
        self.network_check = Some(NetworkCheck {
            purpose,
            only_firewall,
            host,
            port,
            candidates: candidates.len(),
            outstanding: candidates.len(),
            hosts: BTreeSet::new(),
            pongs: Vec::new(),
        });
        let value = self.cfg.server_port.to_le_bytes().to_vec();
        for (addr, id) in candidates {
            self.internal_request(
                now,
                addr,
                Some(id),
                PING_NAT,
                Some(value.clone()),
                Owner::FirewallProbe,
            );
        }
    }

    fn finish_firewall_check(&mut self, now: Instant) {
        let Some(check) = self.network_check.take() else {
            return;
        };
        let mut sampler = NatSampler::new();
        let mut count = 0;
        for (from, to) in &check.pongs {
            if check.hosts.contains(from.ip()) {
                count += 1;
                sampler.add(*to);
            }
        }
        let needed = if check.candidates >= 5 { 3 } else { 1 };
        let firewalled = count < needed
            || sampler.host().is_none()
            || sampler.host() != self.nat.host()
            || sampler.port() == 0
            || sampler.port() != self.cfg.server_port;
        tracing::debug!(
            probes = check.candidates,
            replies = check.pongs.len(),
            on_server_socket = count,
            needed,
            sampled_host = ?sampler.host(),
            sampled_port = sampler.port(),
            server_port = self.cfg.server_port,
            firewalled,
            "firewall check"
        );
        let ok = !firewalled
            && self.complete_network_update(
                now,
                check.only_firewall,
                check.host,
                check.port,
                Some(sampler),
            );
        self.on_network_update_done(now, check.purpose, ok);
    }

    /// Steps 5–10 of `_updateNetworkState`, once the node is known to be reachable.
    fn complete_network_update(
        &mut self,
        now: Instant,
        only_firewall: bool,
        host: Ipv4Addr,
        port: u16,
        fresh: Option<NatSampler>,
    ) -> bool {
        self.firewalled = false;
        if !self.ephemeral || self.nat.host() != Some(host) || self.nat.port() != port {
            return false;
        }
        let (s_host, s_port) = match &fresh {
            Some(s) => (s.host(), s.port()),
            None => (self.nat.host(), self.nat.port()),
        };
        let Some(s_host) = s_host.filter(|h| *h == host && s_port != 0) else {
            return false;
        };
        let new_id = NodeId::from_addr(&SocketAddrV4::new(s_host, s_port));
        if !only_firewall {
            self.ephemeral = false;
        }
        if let Some(s) = fresh {
            let before = (self.nat.host(), self.nat.port());
            self.nat = s;
            self.bootstrap_samples.clear();
            let after = (self.nat.host(), self.nat.port());
            if before != after {
                tracing::debug!(host = ?after.0, port = after.1, "public address (NAT-sampled) changed");
                self.events.push_back(RpcEvent::NatUpdate {
                    host: after.0,
                    port: after.1,
                });
            }
        }
        if new_id != *self.table.id() {
            // The reference drops entries that no longer fit without a remove-node event.
            self.table.rebuild(new_id);
            if self.bootstrapped {
                self.refresh(now);
            }
        }
        if !self.ephemeral {
            self.events.push_back(RpcEvent::Persistent);
        }
        true
    }

    fn on_network_update_done(&mut self, now: Instant, purpose: UpdatePurpose, ok: bool) {
        match purpose {
            UpdatePurpose::Adaptive => {}
            UpdatePurpose::Bootstrap { round } => {
                if ok && round < 2 {
                    self.start_bootstrap_round(now, round + 1);
                } else {
                    self.finish_bootstrap();
                }
            }
        }
    }
}
