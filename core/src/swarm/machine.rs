//! The [`Swarm`]: hyperswarm's policy over one [`DhtNode`] — topics, the dial queue, retries,
//! limits, bans, duplicates, flushes — as a deterministic state machine beside the node.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};
use thiserror::Error;

use super::config::{JoinOptions, SwarmConfig, MAX_KNOWN_PEERS, MAX_TOPICS};
use super::dial_queue::DialQueue;
use super::discovery::{ActiveQuery, Discovery, QueryKind, SessionId};
use super::duplicate::{self, Duplicate};
use super::event::SwarmEvent;
use super::flush::{FlushId, Flushes};
use super::peer::PeerInfo;
use super::retry::{self, RetryTimer};
use crate::connect::ConnectError;
use crate::dht::messages::Peer;
use crate::dht::{
    ConnId, ConnectEvent, ConnectOptions, DhtEvent, DhtNode, OpId, ServerId, ServerOptions,
};
use crate::time::Instant;

/// Why a swarm call was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SwarmError {
    /// The swarm was destroyed.
    #[error("swarm destroyed")]
    Destroyed,
    /// A join or refresh asked for neither client nor server mode.
    #[error("cannot refresh with neither client nor server option")]
    NoMode,
    /// The swarm already joined [`MAX_TOPICS`] topics.
    #[error("too many topics: at most {MAX_TOPICS}")]
    TooManyTopics,
    /// The session was destroyed (or never existed).
    #[error("unknown or destroyed discovery session")]
    UnknownSession,
    /// A topic that is not 32 bytes long (see [`topic_from_slice`]).
    #[error("a topic is 32 bytes, got {len} (hash a name into one with crypto::hash)")]
    TopicLength {
        /// The length given.
        len: usize,
    },
}

/// The topic in `bytes`: exactly 32 bytes, the DHT target the topic's records are stored at.
/// Anything else is [`SwarmError::TopicLength`] (the reference does not check and announces
/// a wrong-length topic anyway, spec 06 §12 #11; its records then never meet a 32-byte one).
pub fn topic_from_slice(bytes: &[u8]) -> Result<[u8; 32], SwarmError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| SwarmError::TopicLength { len: bytes.len() })
}

/// Counters (`swarm.stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwarmStats {
    /// Our dials started.
    pub client_attempted: u64,
    /// Our dials that opened.
    pub client_opened: u64,
    /// Our dials that closed (opened or not).
    pub client_closed: u64,
    /// Incoming connections taken.
    pub server_opened: u64,
    /// Incoming connections that closed.
    pub server_closed: u64,
    /// Connections destroyed by the duplicate rule (either side of it).
    pub duplicates_dropped: u64,
    /// Handshakes refused (own key, banned, or over `max_server_connections`).
    pub incoming_refused: u64,
}

/// Who a swarm operation on the node belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpOwner {
    /// A discovery's query.
    Discovery([u8; 32]),
    /// The unannounce of a topic left.
    Leave([u8; 32]),
}

/// One connection of the swarm (`_allConnections`).
#[derive(Debug, Clone, Copy)]
struct Conn {
    key: [u8; 32],
    initiator: bool,
    /// Announced to the owner (`connections`): our dial opened, or an incoming one was taken.
    opened: bool,
    /// Our dial came from the queue (it counts for flushes).
    queued: bool,
}

/// The swarm's server: not yet created, listening requested, or listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listen {
    Idle,
    Pending(ServerId),
    Listening(ServerId),
}

/// Hyperswarm (4.17.2) as a sans-IO state machine above a [`DhtNode`].
///
/// # Driving it
///
/// The swarm does not own the node: every call that may act on the network takes the node.
/// Whoever drives the node (see [`DhtNode`]'s contract) also:
///
/// 1. offers every [`DhtEvent`] from [`DhtNode::poll_event`] to
///    [`handle_event`](Self::handle_event) first; what it returns (events the swarm does not
///    own — reads, writes and closes of its connections included) goes on to the application;
/// 2. calls [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout)
///    is due (the earlier of the two deadlines is the driver's sleep);
/// 3. drains [`poll_event`](Self::poll_event) for [`SwarmEvent`]s;
/// 4. after any swarm call, drains the node again (the swarm started queries and dials).
///
/// Connections are the node's: read, write and close them with `DhtNode::conn_*`. The owner
/// forgets (`conn_forget`) connections the swarm announced once their `Closed` passed; the
/// swarm forgets the ones it destroyed before announcing them.
///
/// # Differences from the reference
///
/// * Incoming connections are bounded ([`SwarmConfig::max_server_connections`]).
/// * Peers that join at the same moment meet within seconds ([`SwarmConfig::rendezvous`]).
/// * `limit` skips peers we are connected to, as the reference means to (its test compares
///   a set of streams with a key and never matches).
/// * A flush counts only dials from the queue as pending (the reference also counts dials of
///   explicit peers, which never decrement it: hyperswarm PR #190's hang).
/// * The first announce does not clear older records of our key first (`clear`), queries do
///   not start from the previous query's closest nodes, and `suspend`/`resume`, relaying and a
///   firewall callback are not part of the core yet.
pub struct Swarm<R> {
    cfg: SwarmConfig,
    public_key: [u8; 32],
    rng: R,
    listen: Listen,
    discoveries: BTreeMap<[u8; 32], Discovery>,
    sessions: BTreeMap<SessionId, [u8; 32]>,
    next_session: u64,
    /// Unannounces of topics left, by topic (a new join of the topic waits for it).
    leaving: BTreeMap<[u8; 32], OpId>,
    ops: BTreeMap<OpId, OpOwner>,
    peers: BTreeMap<[u8; 32], PeerInfo>,
    /// Explicit peers in the order they were joined.
    explicit: Vec<[u8; 32]>,
    queue: DialQueue,
    timer: RetryTimer,
    conns: BTreeMap<ConnId, Conn>,
    by_key: BTreeMap<[u8; 32], ConnId>,
    /// An existing connection being destroyed → the incoming one that replaces it.
    swaps: BTreeMap<ConnId, ConnId>,
    /// Connections destroyed before the owner saw them: their events stop here.
    swallowed: BTreeSet<ConnId>,
    connecting: usize,
    client_connections: usize,
    server_connections: usize,
    flushes: Flushes,
    events: VecDeque<SwarmEvent>,
    stats: SwarmStats,
    /// Dials that failed before opening, by the reference's error code.
    dial_failures: BTreeMap<&'static str, u64>,
    destroyed: bool,
    draining: bool,
}

impl<R> core::fmt::Debug for Swarm<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Swarm")
            .field("public_key", &self.public_key)
            .field("topics", &self.discoveries.len())
            .field("peers", &self.peers.len())
            .field("connections", &self.by_key.len())
            .field("connecting", &self.connecting)
            .finish_non_exhaustive()
    }
}

impl<R: RngCore> Swarm<R> {
    /// A swarm with `cfg`; `rng` draws its jitters and dial order.
    pub fn new(cfg: SwarmConfig, mut rng: R) -> Self {
        let backoffs = cfg
            .backoffs
            .unwrap_or_else(|| retry::default_backoffs(&mut rng));
        let timer = RetryTimer::new(backoffs, cfg.jitter, &mut rng);
        Swarm {
            public_key: cfg.key_pair.public_key(),
            cfg,
            rng,
            listen: Listen::Idle,
            discoveries: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next_session: 0,
            leaving: BTreeMap::new(),
            ops: BTreeMap::new(),
            peers: BTreeMap::new(),
            explicit: Vec::new(),
            queue: DialQueue::new(),
            timer,
            conns: BTreeMap::new(),
            by_key: BTreeMap::new(),
            swaps: BTreeMap::new(),
            swallowed: BTreeSet::new(),
            connecting: 0,
            client_connections: 0,
            server_connections: 0,
            flushes: Flushes::default(),
            events: VecDeque::new(),
            stats: SwarmStats::default(),
            dial_failures: BTreeMap::new(),
            destroyed: false,
            draining: false,
        }
    }

    // ----- state -----

    /// Our public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The options.
    pub fn config(&self) -> &SwarmConfig {
        &self.cfg
    }

    /// The retry periods S, M, L, X in use.
    pub fn retry_periods(&self) -> [Duration; 4] {
        self.timer.periods()
    }

    /// What is known about a peer.
    pub fn peer(&self, key: &[u8; 32]) -> Option<&PeerInfo> {
        self.peers.get(key)
    }

    /// Every known peer (`peers`: not only connected ones).
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.values()
    }

    /// The connections announced to the owner (`connections`), with their peers.
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, &[u8; 32])> {
        self.conns
            .iter()
            .filter(|(_, c)| c.opened)
            .map(|(id, c)| (*id, &c.key))
    }

    /// The connection to `key`, pending or open.
    pub fn connection_to(&self, key: &[u8; 32]) -> Option<ConnId> {
        self.by_key.get(key).copied()
    }

    /// Dials in progress (`connecting`).
    pub fn connecting(&self) -> usize {
        self.connecting
    }

    /// Our dials, pending and open.
    pub fn client_connections(&self) -> usize {
        self.client_connections
    }

    /// Incoming connections held.
    pub fn server_connections(&self) -> usize {
        self.server_connections
    }

    /// Peers in the dial queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The counters.
    pub fn stats(&self) -> SwarmStats {
        self.stats
    }

    /// Dials that failed before opening, by error code (`PEER_NOT_FOUND`, …).
    pub fn dial_failures(&self) -> &BTreeMap<&'static str, u64> {
        &self.dial_failures
    }

    /// Topics joined.
    pub fn topics(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.discoveries.keys()
    }

    /// Whether a refresh of `topic` is running (`flushed()` would wait); `None` if not joined.
    pub fn is_refreshing(&self, topic: &[u8; 32]) -> Option<bool> {
        self.discoveries.get(topic).map(|d| d.current.is_some())
    }

    /// Whether the swarm still has operations in flight (after [`destroy`](Self::destroy):
    /// its unannounces).
    pub fn has_operations(&self) -> bool {
        !self.ops.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SwarmEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.destroyed {
            return None;
        }
        let d = self
            .discoveries
            .values()
            .filter_map(Discovery::poll_timeout)
            .min();
        match (d, self.timer.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn within_max_peers(&self) -> bool {
        let e = self.explicit.len();
        let factor = match e {
            0 => 1,
            1 => 2,
            2 | 3 => 3,
            _ => 4,
        };
        factor * self.by_key.len() < self.cfg.max_peers
    }

    fn should_connect_explicit(&self) -> bool {
        !self.destroyed && self.connecting < self.cfg.max_parallel
    }

    fn should_connect(&self) -> bool {
        self.should_connect_explicit()
            && self.within_max_peers()
            && self.client_connections < self.cfg.max_client_connections
    }

    fn is_connected(&self, key: &[u8; 32]) -> bool {
        self.by_key
            .get(key)
            .and_then(|c| self.conns.get(c))
            .is_some_and(|c| c.opened)
    }

    // ----- topics -----

    /// `join(topic, {server, client, limit})`: a session on the topic's discovery; starts a
    /// refresh (or joins the one running with the same modes).
    pub fn join<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        topic: [u8; 32],
        opts: JoinOptions,
    ) -> Result<SessionId, SwarmError> {
        if self.destroyed {
            return Err(SwarmError::Destroyed);
        }
        if !opts.client && !opts.server {
            return Err(SwarmError::NoMode);
        }
        if !self.discoveries.contains_key(&topic) {
            if self.discoveries.len() >= MAX_TOPICS {
                return Err(SwarmError::TooManyTopics);
            }
            let wait = self.leaving.get(&topic).copied();
            self.discoveries.insert(topic, Discovery::new(topic, wait));
        }
        let session = SessionId(self.next_session);
        self.next_session += 1;
        self.sessions.insert(session, topic);
        if let Some(d) = self.discoveries.get_mut(&topic) {
            d.sessions.insert(session, (opts.client, opts.server));
            d.limit = opts.limit;
        }
        self.refresh_discovery(now, node, topic);
        Ok(session)
    }

    /// `session.refresh({client, server, limit})`: changes the session's modes and refreshes.
    pub fn refresh_session<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        session: SessionId,
        opts: JoinOptions,
    ) -> Result<(), SwarmError> {
        if self.destroyed {
            return Err(SwarmError::Destroyed);
        }
        if !opts.client && !opts.server {
            return Err(SwarmError::NoMode);
        }
        let topic = *self
            .sessions
            .get(&session)
            .ok_or(SwarmError::UnknownSession)?;
        if let Some(d) = self.discoveries.get_mut(&topic) {
            d.sessions.insert(session, (opts.client, opts.server));
            d.limit = opts.limit;
        }
        self.refresh_discovery(now, node, topic);
        Ok(())
    }

    /// `discovery.refresh()` of a joined topic; `false` if it is not joined.
    pub fn refresh_topic<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        topic: &[u8; 32],
    ) -> bool {
        if self.destroyed || !self.discoveries.contains_key(topic) {
            return false;
        }
        self.refresh_discovery(now, node, *topic);
        true
    }

    /// `session.destroy()`: the last session of a topic leaves it; else a topic no session
    /// serves any more unannounces (its next refresh is a lookup-and-unannounce).
    pub fn destroy_session<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        session: SessionId,
    ) {
        let Some(topic) = self.sessions.remove(&session) else {
            return;
        };
        let Some(d) = self.discoveries.get_mut(&topic) else {
            return;
        };
        d.sessions.remove(&session);
        if d.sessions.is_empty() {
            self.leave(now, node, &topic);
        } else if !d.wanted_modes().1 && d.needs_unannounce {
            self.refresh_discovery(now, node, topic);
        }
    }

    /// `leave(topic)`: stops its queries and timers and unannounces our record. Connections
    /// stay open (as the reference: hyperswarm issue #50).
    pub fn leave<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        topic: &[u8; 32],
    ) {
        let Some(mut d) = self.discoveries.remove(topic) else {
            return;
        };
        self.sessions.retain(|_, t| t != topic);
        if let Some(a) = d.active.take() {
            node.cancel(now, a.op);
            self.ops.remove(&a.op);
        }
        if let Some(c) = d.current {
            d.end_refresh(c);
        }
        if d.needs_unannounce && d.waiting_for.is_none() {
            let op = node.unannounce(now, *topic, &self.cfg.key_pair);
            self.ops.insert(op, OpOwner::Leave(*topic));
            self.leaving.insert(*topic, op);
        }
        self.advance_flushes(now, node);
    }

    /// Refreshes every topic and pokes every connection (the DHT's `network-change`, or its
    /// coming back online): dead connections show up within a retransmission timeout.
    pub fn network_changed<N: RngCore + CryptoRng>(&mut self, now: Instant, node: &mut DhtNode<N>) {
        if self.destroyed {
            return;
        }
        for conn in self.by_key.values() {
            node.conn_send_keep_alive(*conn);
        }
        let topics: Vec<[u8; 32]> = self.discoveries.keys().copied().collect();
        for t in topics {
            self.refresh_discovery(now, node, t);
        }
    }

    /// `discovery.refresh()`: joins the running refresh if the modes did not change, else
    /// replaces it.
    fn refresh_discovery<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        topic: [u8; 32],
    ) {
        let Some(d) = self.discoveries.get_mut(&topic) else {
            return;
        };
        let (client, server) = d.wanted_modes();
        let same = client == d.is_client && server == d.is_server;
        if same && d.current.is_some() {
            return;
        }
        // A changed mode replaces the running query; a rendezvous lookup yields to a refresh.
        if let Some(a) = d.active.take() {
            node.cancel(now, a.op);
            self.ops.remove(&a.op);
            if a.kind != QueryKind::Rendezvous {
                d.end_refresh(a.clock);
            }
        }
        if d.waiting_listen {
            d.waiting_listen = false;
            if let Some(c) = d.current {
                d.end_refresh(c);
            }
        }
        d.is_client = client;
        d.is_server = server;
        let by_key = &self.by_key;
        let conns = &self.conns;
        d.begin_refresh(|k| {
            by_key
                .get(k)
                .and_then(|c| conns.get(c))
                .is_some_and(|c| c.opened)
        });
        if d.waiting_for.is_none() {
            self.launch_query(now, node, topic);
        }
        self.advance_flushes(now, node);
    }

    /// Starts the query of the refresh of `topic` (after the listen for a server).
    fn launch_query<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        topic: [u8; 32],
    ) {
        let Some(is_server) = self.discoveries.get(&topic).map(|d| d.is_server) else {
            return;
        };
        let kp = self.cfg.key_pair.clone();
        let mut relays = Vec::new();
        if is_server {
            match self.listen {
                Listen::Listening(s) => relays = node.server_relays(s),
                Listen::Pending(_) => {
                    if let Some(d) = self.discoveries.get_mut(&topic) {
                        d.waiting_listen = true;
                    }
                    return;
                }
                Listen::Idle => {
                    let s = node.create_server(self.server_options());
                    // Listening on a fresh server with our key only fails if another server
                    // of this node uses the key: that one answers the handshakes, so announce
                    // at once (the record points at the key either way).
                    if node.listen(now, s, Some(kp.clone())).is_ok() {
                        self.listen = Listen::Pending(s);
                        if let Some(d) = self.discoveries.get_mut(&topic) {
                            d.waiting_listen = true;
                        }
                        return;
                    }
                    self.listen = Listen::Listening(s);
                }
            }
        }
        let Some(d) = self.discoveries.get_mut(&topic) else {
            return;
        };
        let Some(clock) = d.current else {
            return;
        };
        let (op, kind) = if d.is_server {
            d.needs_unannounce = true;
            (
                node.announce(now, topic, &kp, relays, 0),
                QueryKind::Announce,
            )
        } else if d.needs_unannounce {
            (
                node.unannounce(now, topic, &kp),
                QueryKind::LookupAndUnannounce,
            )
        } else {
            (node.lookup(now, topic), QueryKind::Lookup)
        };
        d.active = Some(ActiveQuery { op, kind, clock });
        self.ops.insert(op, OpOwner::Discovery(topic));
    }

    // ----- flushes -----

    /// `flush()`: a [`SwarmEvent::Flushed`] follows once every topic's running refresh ended
    /// and every peer found so far was tried once.
    pub fn flush<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
    ) -> FlushId {
        let refreshes = self
            .discoveries
            .values()
            .filter_map(|d| d.current.map(|c| (d.topic, c)))
            .collect();
        let id = self.flushes.start(refreshes);
        if self.destroyed {
            self.flushes.pending.retain(|f| f.id != id);
            self.events.push_back(SwarmEvent::Flushed {
                flush: id,
                ok: false,
            });
            return id;
        }
        self.advance_flushes(now, node);
        id
    }

    /// Moves flushes whose refreshes ended to counting peers (or ends them).
    fn advance_flushes<N: RngCore + CryptoRng>(&mut self, _now: Instant, _node: &mut DhtNode<N>) {
        let mut i = 0;
        while i < self.flushes.pending.len() {
            let f = &self.flushes.pending[i];
            let refreshed = f.missing.is_none()
                && f.refreshes
                    .iter()
                    .all(|(t, c)| self.discoveries.get(t).is_none_or(|d| d.done_through >= *c));
            if !refreshed {
                i += 1;
                continue;
            }
            let at_capacity = self.connecting == 0
                && !(self.within_max_peers()
                    && self.client_connections < self.cfg.max_client_connections);
            let pending = self
                .conns
                .values()
                .filter(|c| c.initiator && !c.opened && c.queued)
                .count();
            if at_capacity || (self.queue.is_empty() && pending == 0) {
                let f = self.flushes.pending.remove(i);
                self.events.push_back(SwarmEvent::Flushed {
                    flush: f.id,
                    ok: true,
                });
                continue;
            }
            let tick = self.flushes.tick;
            self.flushes.tick += 1;
            let f = &mut self.flushes.pending[i];
            f.missing = Some(self.queue.len() + pending);
            f.tick = tick;
            i += 1;
        }
    }

    fn flush_maybe(&mut self, peer_tick: u64) {
        for id in self.flushes.peer_tried(peer_tick) {
            self.events.push_back(SwarmEvent::Flushed {
                flush: id,
                ok: true,
            });
        }
    }

    /// `_flushAllMaybe`: at capacity with nothing connecting, no dial can happen: every
    /// counting flush ends.
    fn flush_all_maybe(&mut self) -> bool {
        if self.connecting > 0
            || (self.within_max_peers()
                && self.client_connections < self.cfg.max_client_connections)
        {
            return false;
        }
        for id in self.flushes.all_counting() {
            self.events.push_back(SwarmEvent::Flushed {
                flush: id,
                ok: true,
            });
        }
        true
    }

    // ----- peers -----

    fn upsert_peer(
        &mut self,
        key: [u8; 32],
        relays: Option<Vec<core::net::SocketAddrV4>>,
    ) -> Option<&mut PeerInfo> {
        if key == self.public_key {
            return None;
        }
        if !self.peers.contains_key(&key) {
            if self.peers.len() >= MAX_KNOWN_PEERS {
                return None;
            }
            self.peers
                .insert(key, PeerInfo::new(key, relays.clone().unwrap_or_default()));
        }
        let p = self.peers.get_mut(&key)?;
        if let Some(r) = relays {
            p.relay_addresses = r;
        }
        Some(p)
    }

    fn maybe_delete_peer(&mut self, key: &[u8; 32]) {
        if self.by_key.contains_key(key) {
            return;
        }
        if self.peers.get(key).is_some_and(PeerInfo::should_gc) {
            self.peers.remove(key);
        }
    }

    fn should_requeue(&self, p: &PeerInfo) -> bool {
        if self.destroyed {
            return false;
        }
        p.explicit || p.topics.iter().any(|t| self.discoveries.contains_key(t))
    }

    fn enqueue<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        key: [u8; 32],
    ) {
        let tick = self.flushes.tick;
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.queued {
            return;
        }
        p.queued = true;
        p.flush_tick = tick;
        self.queue.push(key, p.priority);
        self.attempt_client_connections(now, node);
    }

    /// `_handlePeer`: a discovery of `topic` found `peer`.
    fn handle_peer<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        peer: Peer,
        topic: [u8; 32],
    ) {
        let key = peer.public_key;
        let connected = self.by_key.contains_key(&key);
        let Some(p) = self.upsert_peer(key, Some(peer.relay_addresses)) else {
            return;
        };
        p.add_topic(topic);
        if connected {
            return;
        }
        if !p.prioritized() || p.server() {
            p.reset();
        }
        if p.update_priority() {
            self.enqueue(now, node, key);
        }
    }

    /// `joinPeer(publicKey)`: dial this peer whatever the topics, and keep retrying it.
    pub fn join_peer<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        key: [u8; 32],
    ) {
        if self.destroyed {
            return;
        }
        let Some(p) = self.upsert_peer(key, None) else {
            return;
        };
        p.explicit = true;
        if !self.explicit.contains(&key) {
            self.explicit.push(key);
        }
        if self.by_key.contains_key(&key) {
            return;
        }
        if self
            .peers
            .get_mut(&key)
            .is_some_and(|p| p.update_priority())
        {
            self.enqueue(now, node, key);
        }
    }

    /// `leavePeer(publicKey)`: stop dialing it as an explicit peer; an open connection stays.
    pub fn leave_peer(&mut self, key: &[u8; 32]) {
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        p.explicit = false;
        self.explicit.retain(|k| k != key);
        self.maybe_delete_peer(key);
    }

    /// `peerInfo.ban(banned)`: a banned peer is never dialed and its handshakes are refused.
    /// An open connection stays (as the reference; destroy it with `DhtNode::conn_destroy`).
    pub fn ban(&mut self, key: [u8; 32], banned: bool) {
        if let Some(p) = self.upsert_peer(key, None) {
            p.banned = banned;
        }
        if !banned {
            self.maybe_delete_peer(&key);
        }
    }

    /// `peerInfo.reconnect(value)`: `false` stops timer-based retries of the peer.
    pub fn reconnect(&mut self, key: &[u8; 32], reconnecting: bool) {
        if let Some(p) = self.peers.get_mut(key) {
            p.reconnecting = reconnecting;
        }
    }

    // ----- dialing -----

    /// `_attemptClientConnections`: explicit peers first, then the queue, within the limits.
    fn attempt_client_connections<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
    ) {
        if self.draining || self.destroyed {
            return;
        }
        self.draining = true;
        for key in self.explicit.clone() {
            if !self.should_connect_explicit() {
                break;
            }
            let Some(p) = self.peers.get(&key) else {
                continue;
            };
            let backoff = Duration::from_secs(u64::from(p.attempts));
            if p.attempts >= 5 || now.saturating_duration_since(p.disconnected_time) < backoff {
                continue;
            }
            self.connect(now, node, key, false);
        }
        while !self.queue.is_empty() && self.should_connect() {
            let Some(key) = self.queue.shift(&mut self.rng) else {
                break;
            };
            if let Some(p) = self.peers.get_mut(&key) {
                p.queued = false;
            }
            self.connect(now, node, key, true);
        }
        self.draining = false;
        if self.connecting == 0 {
            self.flush_all_maybe();
        }
    }

    /// `_connect`: dials a peer unless it is banned or a connection to it exists.
    fn connect<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        key: [u8; 32],
        queued: bool,
    ) {
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        if p.banned || self.by_key.contains_key(&key) {
            if queued {
                let tick = p.flush_tick;
                self.flush_maybe(tick);
            }
            return;
        }
        // `_maybeRelayConnection(peerInfo.forceRelaying)`: relay when forced or when our
        // own NAT randomizes ports (`dht.randomized`: host known, port 0).
        let randomized = matches!(node.rpc().public_address(), (Some(_), 0));
        let relay_through = self
            .cfg
            .relay_through
            .clone()
            .filter(|_| p.force_relaying || randomized);
        let opts = ConnectOptions {
            key_pair: Some(self.cfg.key_pair.clone()),
            relay_addresses: p.relay_addresses.clone(),
            relay_through,
            ..ConnectOptions::default()
        };
        let conn = node.connect(now, key, opts);
        self.by_key.insert(key, conn);
        self.conns.insert(
            conn,
            Conn {
                key,
                initiator: true,
                opened: false,
                queued,
            },
        );
        self.stats.client_attempted += 1;
        self.connecting += 1;
        self.client_connections += 1;
    }

    /// `_connectDone`: one dial fewer in progress.
    fn connect_done<N: RngCore + CryptoRng>(&mut self, now: Instant, node: &mut DhtNode<N>) {
        self.connecting = self.connecting.saturating_sub(1);
        if self.connecting < self.cfg.max_parallel {
            self.attempt_client_connections(now, node);
        }
        if self.connecting == 0 {
            self.flush_all_maybe();
        }
    }

    // ----- events from the node -----

    /// Offers an event of the node to the swarm. Returns it when it is the owner's: events of
    /// other operations and connections, and the reads, writes, ends and closes of the
    /// connections the swarm announced.
    pub fn handle_event<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        event: DhtEvent,
    ) -> Option<DhtEvent> {
        match event {
            DhtEvent::LookupReply { op, reply } => match self.ops.get(&op) {
                Some(OpOwner::Discovery(topic)) => {
                    let topic = *topic;
                    self.on_lookup_reply(now, node, topic, reply.peers);
                    None
                }
                Some(OpOwner::Leave(_)) => None,
                None => Some(DhtEvent::LookupReply { op, reply }),
            },
            DhtEvent::OpDone { op, result } => match self.ops.remove(&op) {
                Some(OpOwner::Discovery(topic)) => {
                    self.on_query_done(now, node, topic, op, result.is_ok());
                    None
                }
                Some(OpOwner::Leave(topic)) => {
                    self.on_leave_done(now, node, topic, op);
                    None
                }
                None => Some(DhtEvent::OpDone { op, result }),
            },
            DhtEvent::Connect(ev) => self.on_connect_event(now, node, ev).map(DhtEvent::Connect),
            other => Some(other),
        }
    }

    /// `swarm.listen()`: starts the swarm's server (announcing our key) without joining a
    /// topic, so that peers that know our key (`join_peer`) reach us. Does nothing if the
    /// server already runs; [`is_listening`](Self::is_listening) tells when it listens.
    pub fn listen<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
    ) -> Result<(), SwarmError> {
        if self.destroyed {
            return Err(SwarmError::Destroyed);
        }
        if self.listen == Listen::Idle {
            let s = node.create_server(self.server_options());
            self.listen = match node.listen(now, s, Some(self.cfg.key_pair.clone())) {
                Ok(()) => Listen::Pending(s),
                Err(_) => Listen::Listening(s),
            };
        }
        Ok(())
    }

    /// The swarm's server: the swarm decides every handshake (firewall), and it names the
    /// swarm's relay as hyperswarm's does — `relayThrough` is `_maybeRelayConnection`, which
    /// the server asks without `force`, so only while our own NAT randomizes ports.
    fn server_options(&self) -> ServerOptions {
        ServerOptions {
            firewall: true,
            relay_through: self.cfg.relay_through.clone(),
            relay_only_when_randomized: true,
            ..ServerOptions::default()
        }
    }

    /// Whether the swarm's server listens (its first announce of our key completed).
    pub fn is_listening(&self) -> bool {
        matches!(self.listen, Listen::Listening(_))
    }

    /// Whether `server` is the swarm's own server (its handshakes are the swarm's to decide).
    pub fn is_own_server(&self, server: ServerId) -> bool {
        self.our_server(server)
    }

    /// Whether the swarm itself refuses a handshake from `key` (destroyed, our own key,
    /// banned, or over the incoming bounds). A driver with a user firewall asks this first and
    /// only asks its firewall about handshakes the swarm would take.
    pub fn refuses_incoming(&self, key: &[u8; 32]) -> bool {
        self.refuse_incoming(key)
    }

    fn our_server(&self, server: ServerId) -> bool {
        matches!(self.listen, Listen::Pending(s) | Listen::Listening(s) if s == server)
    }

    fn on_connect_event<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        ev: ConnectEvent,
    ) -> Option<ConnectEvent> {
        match ev {
            ConnectEvent::Listening { server } if self.our_server(server) => {
                self.on_listening(now, node, server);
                None
            }
            ConnectEvent::Firewall {
                server,
                handshake,
                remote_public_key,
                ..
            } if self.our_server(server) => {
                let reject = self.refuse_incoming(&remote_public_key);
                if reject {
                    self.stats.incoming_refused += 1;
                }
                node.firewall_decision(now, handshake, reject);
                None
            }
            ConnectEvent::Incoming { server, conn, info } if self.our_server(server) => {
                self.on_incoming(node, conn, info.remote_public_key);
                None
            }
            ConnectEvent::Open { conn, .. } if self.conns.contains_key(&conn) => {
                self.on_client_open(now, node, conn);
                None
            }
            ConnectEvent::Failed { conn, error } if self.conns.contains_key(&conn) => {
                // Our own dial, destroyed by the duplicate rule for the peer's connection
                // (`existing.destroy(Error('Duplicate connection'))`: no code, so the
                // reference neither forces relaying nor counts a failure). The node reports a
                // destroyed connect as `HOLEPUNCH_ABORTED`, which would force relaying.
                let duplicate = self.swaps.contains_key(&conn);
                if !duplicate {
                    *self.dial_failures.entry(error.code()).or_insert(0) += 1;
                }
                if !duplicate && self.cfg.relay_through.is_some() && forces_relaying(error) {
                    // The reference's `shouldForceRelaying`: relay from now on, and reset
                    // the attempts so the relayed dial comes at once.
                    if let Some(p) = self
                        .conns
                        .get(&conn)
                        .and_then(|c| self.peers.get_mut(&c.key))
                    {
                        p.force_relaying = true;
                        p.attempts = 0;
                    }
                }
                self.on_closed(now, node, conn, None);
                None
            }
            ConnectEvent::Closed { conn, error } => {
                if self.swallowed.remove(&conn) {
                    node.conn_forget(conn);
                    return None;
                }
                if let Some(existing) = self.swap_of_new(conn) {
                    // The replacement closed before the connection it replaces: forget it.
                    self.swaps.remove(&existing);
                    node.conn_forget(conn);
                    return None;
                }
                let announced = self.conns.get(&conn).map(|c| c.opened)?;
                self.on_closed(now, node, conn, error.clone());
                if announced {
                    Some(ConnectEvent::Closed { conn, error })
                } else {
                    node.conn_forget(conn);
                    None
                }
            }
            ConnectEvent::Readable(c) | ConnectEvent::Writable(c) | ConnectEvent::End(c)
                if self.swallowed.contains(&c) || self.swap_of_new(c).is_some() =>
            {
                None
            }
            other => Some(other),
        }
    }

    fn swap_of_new(&self, conn: ConnId) -> Option<ConnId> {
        self.swaps
            .iter()
            .find(|(_, new)| **new == conn)
            .map(|(existing, _)| *existing)
    }

    fn on_listening<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        server: ServerId,
    ) {
        self.listen = Listen::Listening(server);
        let waiting: Vec<[u8; 32]> = self
            .discoveries
            .values_mut()
            .filter(|d| d.waiting_listen)
            .map(|d| {
                d.waiting_listen = false;
                d.topic
            })
            .collect();
        for t in waiting {
            self.launch_query(now, node, t);
        }
    }

    /// The server's firewall: refuse our own key, banned peers, and new peers once
    /// `max_server_connections` incoming connections are held.
    fn refuse_incoming(&self, key: &[u8; 32]) -> bool {
        if self.destroyed || *key == self.public_key {
            return true;
        }
        if self.peers.get(key).is_some_and(|p| p.banned) {
            return true;
        }
        if self.by_key.contains_key(key) {
            return false;
        }
        self.server_connections >= self.cfg.max_server_connections
            || (self.peers.len() >= MAX_KNOWN_PEERS && !self.peers.contains_key(key))
    }

    /// `_handleServerConnection`: a connection our server accepted.
    fn on_incoming<N: RngCore + CryptoRng>(
        &mut self,
        node: &mut DhtNode<N>,
        conn: ConnId,
        remote: [u8; 32],
    ) {
        if self.destroyed {
            self.swallowed.insert(conn);
            node.conn_destroy(conn);
            return;
        }
        if let Some(&existing) = self.by_key.get(&remote) {
            let bytes = node.conn_raw_bytes(existing).unwrap_or((0, 0));
            self.stats.duplicates_dropped += 1;
            match duplicate::resolve(&self.public_key, &remote, false, bytes) {
                Duplicate::KeepExisting => {
                    node.conn_send_keep_alive(existing);
                    self.swallowed.insert(conn);
                    node.conn_destroy(conn);
                }
                Duplicate::KeepNew => {
                    if let Some(older) = self.swaps.insert(existing, conn) {
                        // A third connection while one already waits to replace `existing`.
                        self.swallowed.insert(older);
                        node.conn_destroy(older);
                    }
                    node.conn_destroy(existing);
                }
            }
            return;
        }
        if self.server_connections >= self.cfg.max_server_connections {
            self.stats.incoming_refused += 1;
            self.swallowed.insert(conn);
            node.conn_destroy(conn);
            return;
        }
        let Some(p) = self.upsert_peer(remote, None) else {
            self.swallowed.insert(conn);
            node.conn_destroy(conn);
            return;
        };
        p.client = false;
        self.stats.server_opened += 1;
        self.conns.insert(
            conn,
            Conn {
                key: remote,
                initiator: false,
                opened: true,
                queued: false,
            },
        );
        self.by_key.insert(remote, conn);
        self.server_connections += 1;
        self.events.push_back(SwarmEvent::Connection {
            conn,
            remote_public_key: remote,
            initiator: false,
        });
    }

    fn on_client_open<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        conn: ConnId,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.opened = true;
        let (key, queued) = (c.key, c.queued);
        self.stats.client_opened += 1;
        let mut tick = None;
        if let Some(p) = self.peers.get_mut(&key) {
            p.connected(now);
            p.client = true;
            tick = Some(p.flush_tick);
        }
        self.events.push_back(SwarmEvent::Connection {
            conn,
            remote_public_key: key,
            initiator: true,
        });
        if let (true, Some(t)) = (queued, tick) {
            self.flush_maybe(t);
        }
        self.connect_done(now, node);
    }

    /// A connection of the swarm closed (or our dial failed before opening).
    fn on_closed<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        conn: ConnId,
        error: Option<crate::dht::ConnError>,
    ) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if self.by_key.get(&c.key) == Some(&conn) {
            self.by_key.remove(&c.key);
        }
        if c.initiator {
            if !c.opened {
                self.connecting = self.connecting.saturating_sub(1);
            }
            self.stats.client_closed += 1;
            self.client_connections = self.client_connections.saturating_sub(1);
            let mut tick = None;
            if let Some(mut p) = self.peers.remove(&c.key) {
                p.disconnected(now);
                p.waiting = self.should_requeue(&p) && self.timer.add(now, &p);
                tick = Some(p.flush_tick);
                self.peers.insert(c.key, p);
            }
            self.maybe_delete_peer(&c.key);
            if let (false, true, Some(t)) = (c.opened, c.queued, tick) {
                self.flush_maybe(t);
            }
        } else {
            self.server_connections = self.server_connections.saturating_sub(1);
            self.stats.server_closed += 1;
            self.maybe_delete_peer(&c.key);
        }
        if c.opened {
            self.events.push_back(SwarmEvent::Disconnection {
                conn,
                remote_public_key: c.key,
                error,
            });
        }
        if let Some(new) = self.swaps.remove(&conn) {
            self.on_incoming(node, new, c.key);
        }
        // `_connectDone` and the close's own attempt, after the bookkeeping above so that the
        // freed slot is seen (it also ends flushes at capacity when nothing is connecting).
        self.attempt_client_connections(now, node);
    }

    fn on_lookup_reply<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        topic: [u8; 32],
        peers: Vec<Peer>,
    ) {
        for peer in peers {
            let connected = self.is_connected(&peer.public_key);
            let Some(d) = self.discoveries.get_mut(&topic) else {
                return;
            };
            if !d.is_client {
                return;
            }
            if d.limit_left.is_some() {
                d.remember(peer.public_key);
            }
            if let Some(left) = d.limit_left.as_mut() {
                if *left == 0 {
                    continue;
                }
                if !connected {
                    *left -= 1;
                }
            }
            self.handle_peer(now, node, peer, topic);
        }
    }

    fn on_query_done<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        topic: [u8; 32],
        op: OpId,
        ok: bool,
    ) {
        let interval = self.cfg.refresh_interval;
        let jitter = self.cfg.refresh_jitter;
        let Some(d) = self.discoveries.get_mut(&topic) else {
            return;
        };
        let Some(a) = d.active.filter(|a| a.op == op) else {
            return;
        };
        d.active = None;
        if a.kind == QueryKind::Rendezvous {
            return;
        }
        d.refresh_later(now, false, interval, jitter, &mut self.rng);
        if ok && a.clock == d.refreshes && a.kind != QueryKind::Announce {
            d.needs_unannounce = false;
        }
        d.end_refresh(a.clock);
        if !d.refreshed_once {
            d.refreshed_once = true;
            if let Some(first) = self.cfg.rendezvous.first() {
                d.rendezvous = Some((0, now + *first));
                d.rendezvous_base = now;
            }
        }
        self.events
            .push_back(SwarmEvent::DiscoveryFlushed { topic, ok });
        self.advance_flushes(now, node);
    }

    fn on_leave_done<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        topic: [u8; 32],
        op: OpId,
    ) {
        if self.leaving.get(&topic) == Some(&op) {
            self.leaving.remove(&topic);
        }
        let Some(d) = self.discoveries.get_mut(&topic) else {
            return;
        };
        if d.waiting_for != Some(op) {
            return;
        }
        d.waiting_for = None;
        if d.current.is_some() {
            self.launch_query(now, node, topic);
        }
    }

    // ----- timers -----

    /// Runs due timers: retry timers requeue their peers, refresh timers refresh, rendezvous
    /// lookups start.
    pub fn handle_timeout<N: RngCore + CryptoRng>(&mut self, now: Instant, node: &mut DhtNode<N>) {
        if self.destroyed {
            return;
        }
        let batch = self.timer.handle_timeout(now);
        if !batch.is_empty() {
            self.requeue(now, node, batch);
        }
        let topics: Vec<[u8; 32]> = self.discoveries.keys().copied().collect();
        for t in topics {
            self.discovery_timers(now, node, t);
        }
    }

    /// `_requeue`: peers whose retry timer fired go back to the queue.
    fn requeue<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        batch: Vec<[u8; 32]>,
    ) {
        let tick = self.flushes.tick;
        for key in batch {
            let connected = self.by_key.contains_key(&key);
            let Some(p) = self.peers.get_mut(&key) else {
                continue;
            };
            p.waiting = false;
            if !p.update_priority() || connected || p.queued {
                continue;
            }
            p.queued = true;
            p.flush_tick = tick;
            self.queue.push(key, p.priority);
        }
        self.attempt_client_connections(now, node);
    }

    fn discovery_timers<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        topic: [u8; 32],
    ) {
        let interval = self.cfg.refresh_interval;
        let jitter = self.cfg.refresh_jitter;
        let Some(d) = self.discoveries.get_mut(&topic) else {
            return;
        };
        if let Some(overdue) = d.timer_due(now) {
            d.timer = None;
            if overdue {
                d.refresh_later(now, true, interval, jitter, &mut self.rng);
            } else {
                self.refresh_discovery(now, node, topic);
            }
        }
        let Some(d) = self.discoveries.get_mut(&topic) else {
            return;
        };
        let Some((rung, _)) = d.rendezvous.filter(|(_, at)| *at <= now) else {
            return;
        };
        d.rendezvous = self
            .cfg
            .rendezvous
            .get(rung + 1)
            .map(|delay| (rung + 1, d.rendezvous_base + *delay));
        // A running query is a lookup too: this rung is covered.
        if d.active.is_some() || !d.is_client || d.waiting_for.is_some() {
            return;
        }
        let op = node.lookup(now, topic);
        d.active = Some(ActiveQuery {
            op,
            kind: QueryKind::Rendezvous,
            clock: 0,
        });
        self.ops.insert(op, OpOwner::Discovery(topic));
    }

    // ----- the end -----

    /// `destroy()`: stops dialing and retrying, leaves every topic (unannouncing, unless
    /// `force`) and closes the server; pending flushes end with `ok: false`. Connections stay
    /// the node's: destroy the node afterwards (once [`has_operations`](Self::has_operations)
    /// is false, for the unannounces to go out), as the reference's `dht.destroy()` does.
    pub fn destroy<N: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        node: &mut DhtNode<N>,
        force: bool,
    ) {
        if self.destroyed {
            return;
        }
        let topics: Vec<[u8; 32]> = self.discoveries.keys().copied().collect();
        for t in topics {
            if force {
                if let Some(mut d) = self.discoveries.remove(&t) {
                    if let Some(a) = d.active.take() {
                        node.cancel(now, a.op);
                        self.ops.remove(&a.op);
                    }
                }
            } else {
                self.leave(now, node, &t);
            }
        }
        self.destroyed = true;
        self.timer.clear();
        self.queue.clear();
        if let Listen::Pending(s) | Listen::Listening(s) = self.listen {
            if let Some(op) = node.close_server(now, s) {
                if !force {
                    self.ops.insert(op, OpOwner::Leave(self.public_key));
                }
            }
        }
        self.listen = Listen::Idle;
        for id in self.flushes.take_all() {
            self.events.push_back(SwarmEvent::Flushed {
                flush: id,
                ok: false,
            });
        }
    }
}

/// The reference's `shouldForceRelaying(err.code)`: failures punching cannot fix.
fn forces_relaying(error: ConnectError) -> bool {
    matches!(
        error,
        ConnectError::HolepunchAborted
            | ConnectError::HolepunchDoubleRandomizedNats
            | ConnectError::CannotHolepunch
            | ConnectError::RemoteNotHolepunchable
    )
}

#[cfg(test)]
mod topic_tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn a_topic_is_32_bytes() {
        assert_eq!(topic_from_slice(&[7; 32]), Ok([7; 32]));
        for len in [0, 1, 31, 33, 64] {
            let e = topic_from_slice(&alloc::vec![0; len]).unwrap_err();
            assert_eq!(e, SwarmError::TopicLength { len });
            assert!(e.to_string().contains(&alloc::format!("got {len}")), "{e}");
        }
    }
}
