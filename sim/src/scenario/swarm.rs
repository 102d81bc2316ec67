//! The swarm scenario — the entry point of `hdht sim swarm`: `peers` hyperswarm peers, each
//! behind its own NAT drawn from a [`NatMix`], join one topic at the same instant; the run
//! measures the virtual time until every pair that can connect holds exactly one connection.
//!
//! 1. A public DHT of `public_nodes` open, persistent nodes (as the holepunch scenario builds
//!    it), on a clean link.
//! 2. The link turns lossy (`loss`); the peers start, each bootstrapping from three public
//!    nodes, until all are bootstrapped.
//! 3. Every peer joins the topic (server and client) at the same instant — the case where
//!    the reference's peers miss each other for 10–12 minutes (spec 06 §2.3), which the
//!    swarm's rendezvous lookups close.
//! 4. The run ends when every pair that can connect is *connected*: each side's swarm holds
//!    a connection to the other and both are the same connection (the same Noise handshake
//!    hash) — so duplicates are resolved the same way on both sides — or at the timeout.
//!    Then it runs `settle` longer and checks that the mesh held (no redial loop).
//!
//! A pair can connect unless both sides are behind randomizing (symmetric) NATs: without a
//! relay, that holepunch fails (`HOLEPUNCH_DOUBLE_RANDOMIZED_NATS`, see the holepunch
//! matrix). Each peer may hold a connection to every other (`max_peers` and
//! `max_server_connections` are set to `peers`), so the target is a full mesh.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant as WallInstant};

use hdht_core::crypto::KeyPair;
use hdht_core::dht::DhtConfig;
use hdht_core::relay::{RelayLimits, RelaySelector};
use hdht_core::rpc::{Persistence, RpcConfig};
use hdht_core::swarm::{JoinOptions, SwarmConfig, SwarmEvent};
use hdht_core::Instant;
use rand_core::RngCore;

use crate::dht::DhtNodeConfig;
use crate::engine::{Engine, Handler, NetStats};
use crate::link::LinkModel;
use crate::nat::NatPreset;
use crate::network::{HostId, RealmId};
use crate::swarm::{SwarmHost, SwarmSim};
use crate::trace::TraceHash;

use super::report::Json;
use super::{NatMix, ScenarioError};

/// A test's hook before the join: the simulator, the peers' hosts and their public keys.
pub type BeforeJoin = fn(&mut SwarmSim, &[HostId], &[[u8; 32]]);

/// Options of one swarm run.
#[derive(Debug, Clone)]
pub struct SwarmScenarioConfig {
    /// Swarm peers.
    pub peers: usize,
    /// The NATs the peers sit behind (one box each).
    pub nat: NatMix,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Open nodes of the public DHT.
    pub public_nodes: usize,
    /// Round-trip time across the Internet.
    pub rtt: Duration,
    /// Datagram loss once the public DHT exists.
    pub loss: f64,
    /// Longest wait for the public DHT and for the peers to bootstrap.
    pub ready_timeout: Duration,
    /// Longest wait for the full mesh after the join.
    pub mesh_timeout: Duration,
    /// How long the mesh must hold after it formed.
    pub settle: Duration,
    /// `None`: every peer may connect to every other (`max_peers` and
    /// `max_server_connections` = `peers`), and the target is the full mesh. `Some(m)`: the
    /// swarms' `max_peers` and `max_server_connections` are `m` (the reference's default is
    /// 64), and the target is every peer connected to `min(m, peers it can connect to)`.
    pub max_peers: Option<usize>,
    /// How every peer joins (default: server and client).
    pub join: JoinOptions,
    /// Adjusts peer `i`'s swarm options (after the scenario's own), for tests.
    pub configure: Option<fn(usize, &mut SwarmConfig)>,
    /// Runs once every peer bootstrapped, just before the join, for tests (bans, explicit
    /// peers): the simulator, the peers' hosts and their public keys.
    pub before_join: Option<BeforeJoin>,
    /// Runs once the target is reached (or at the mesh timeout), before the `settle` run, for
    /// tests (a leave, dropped connections): same arguments as `before_join`.
    pub after_mesh: Option<BeforeJoin>,
    /// A blind relay on one more open node, named in every swarm's `relay_through` (used as
    /// the reference's swarm uses it: by peers behind randomizing NATs, and after a dial
    /// failed in a way punching cannot fix). Then every pair can connect, symmetric ×
    /// symmetric too.
    pub relay: bool,
    /// Adjusts the relay node's DHT options (after the scenario's own sizing, see
    /// [`relay_node_config`]), for tests.
    pub relay_node: Option<fn(&mut DhtConfig)>,
    /// Called every 10 s of virtual time after the join while the run waits for its target
    /// (the CLI prints a progress line on stderr: long runs show how far they got).
    pub progress: Option<fn(&SwarmProgress)>,
}

/// How far a swarm run got, [`SwarmScenarioConfig::progress`].
#[derive(Debug, Clone)]
pub struct SwarmProgress {
    /// Virtual time since the join.
    pub since_join: Duration,
    /// Pairs connected (one shared connection) now.
    pub connected_pairs: usize,
    /// Pairs that can connect.
    pub connectable_pairs: usize,
    /// Peers at their target now.
    pub peers_at_target: usize,
    /// Peers.
    pub peers: usize,
    /// Wall-clock time since the run started.
    pub wall: Duration,
    /// The peers below their target now (at most 100), and why.
    pub below_target: Vec<BelowTarget>,
}

impl SwarmScenarioConfig {
    /// Defaults: 24 public nodes, 50 ms RTT, no loss, 5 min to mesh, 30 s to settle.
    pub fn new(peers: usize, nat: NatMix, seed: u64) -> Self {
        SwarmScenarioConfig {
            peers,
            nat,
            seed,
            public_nodes: 24,
            rtt: Duration::from_millis(50),
            loss: 0.0,
            ready_timeout: Duration::from_secs(60),
            mesh_timeout: Duration::from_secs(300),
            settle: Duration::from_secs(30),
            max_peers: None,
            join: JoinOptions::default(),
            configure: None,
            before_join: None,
            after_mesh: None,
            relay: false,
            relay_node: None,
            progress: None,
        }
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        if self.peers < 2 {
            return Err(ScenarioError::TooFewNodes {
                min: 2,
                got: self.peers,
            });
        }
        if self.public_nodes < 2 {
            return Err(ScenarioError::TooFewNodes {
                min: 2,
                got: self.public_nodes,
            });
        }
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(ScenarioError::BadFraction {
                name: "loss",
                value: self.loss,
            });
        }
        Ok(())
    }
}

/// The scenario's relay serves one swarm's whole mesh: every pair may relay at once (the
/// default's 1,024 relayed pairs, sized for a public relay, would leave pairs of a mesh of
/// hundreds unconnected for lack of room, not for anything the swarm does).
fn relay_limits(peers: usize) -> RelayLimits {
    let pairs = mesh_pairs(peers);
    let d = RelayLimits::default();
    RelayLimits {
        relayed_pairs: d.relayed_pairs.max(pairs),
        pending_total: d.pending_total.max(2 * pairs),
        ..d
    }
}

fn mesh_pairs(peers: usize) -> usize {
    peers * peers.saturating_sub(1) / 2
}

/// The relay node's own bounds, sized for the mesh as `relay_limits` is: every relayed pair
/// is two connects to the relay node (one from each peer), each a UDX stream it keeps while
/// the pair relays and a handshake its server remembers for 10 s. hdht's defaults (a 512 MiB
/// connection budget: ~3,300 streams at their smallest windows; 4,096 handshakes) would cap
/// the relay at ~1,650 relayed pairs: past them it answers `TRY_LATER` (the relay connection
/// fails with `SERVER_ERROR`) or drops the handshake (`PEER_CONNECTION_FAILED`), and the
/// relayed connect ends `RELAY_ABORTED` — 83 times in the 100-peer mesh, and the symmetric
/// peers of a 1,000-peer swarm stayed below 64 connections for minutes.
pub fn relay_node_config(cfg: &mut DhtConfig, peers: usize) {
    use hdht_core::dht::budget::{DEFAULT_CONNECTION_BUDGET, MIN_RECV_WINDOW, MIN_SEND_BUFFER};
    use hdht_core::dht::MAX_SERVER_HANDSHAKES;
    let streams = 2 * mesh_pairs(peers);
    // Streams get their smallest windows once half the budget is taken: the other half must
    // hold every relay stream at those.
    let small = streams.saturating_mul(MIN_RECV_WINDOW + MIN_SEND_BUFFER);
    cfg.connection_budget = Some(DEFAULT_CONNECTION_BUDGET.max(small.saturating_mul(2)));
    cfg.max_server_handshakes = Some(MAX_SERVER_HANDSHAKES.max(streams));
}

/// Whether two peers behind these NATs can connect without a relay.
pub fn can_connect(a: NatPreset, b: NatPreset) -> bool {
    !(a == NatPreset::Symmetric && b == NatPreset::Symmetric)
}

/// Whether two peers behind these NATs can connect, with a relay if `relay`.
fn connectable(relay: bool, a: NatPreset, b: NatPreset) -> bool {
    relay || can_connect(a, b)
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct SwarmRun {
    /// Peers.
    pub peers: usize,
    /// The NAT mix.
    pub nat: String,
    /// Whether a blind relay ran (every pair can connect).
    pub relay: bool,
    /// The seed.
    pub seed: u64,
    /// Peers that bootstrapped before the join.
    pub bootstrapped: usize,
    /// Pairs that can connect.
    pub connectable_pairs: usize,
    /// Of those, connected (one shared connection) when the run stopped waiting.
    pub connected_pairs: usize,
    /// `max_peers` of every swarm (`None`: full mesh).
    pub max_peers: Option<usize>,
    /// Time from the join to the target: every peer connected to every peer it can connect
    /// to, or to `max_peers` of them (`None`: not reached before the timeout).
    pub mesh_time: Option<Duration>,
    /// Time from the join until every peer had at least one connection.
    pub all_connected_time: Option<Duration>,
    /// Connections per peer when the run stopped waiting: percentiles.
    pub degree: super::Percentiles,
    /// Time from the join until each peer's first connection: percentiles, ms.
    pub first_connection_ms: super::Percentiles,
    /// The mesh was still whole after `settle`.
    pub held: bool,
    /// Connected pairs after `settle`.
    pub connected_after_settle: usize,
    /// Pairs connected by a connection on one side that the other side does not hold.
    pub mismatched_pairs: usize,
    /// Pairs that can connect but were not connected after `settle` (at most 100), by peer
    /// index.
    pub missing_pairs: Vec<(usize, usize)>,
    /// Each peer's connections after `settle`: (ours, the peers').
    pub peer_connections: Vec<(usize, usize)>,
    /// The peers below their target after `settle` (at most 100), and why.
    pub below_target: Vec<BelowTarget>,
    /// The most dials one swarm had in progress, sampled at every connection event.
    pub max_connecting: usize,
    /// Peers whose `flush()`, called right after the join, ended with `ok` by the end.
    pub flushed: usize,
    /// Time from the join to each such flush: percentiles, ms.
    pub flush_ms: super::Percentiles,
    /// Connection events (`connection`) over all peers.
    pub connection_events: u64,
    /// Disconnection events over all peers.
    pub disconnection_events: u64,
    /// Connections the duplicate rule dropped, over all peers.
    pub duplicates_dropped: u64,
    /// Dials started, over all peers.
    pub dials: u64,
    /// Handshakes the swarms refused (over `max_server_connections`, banned), over all peers.
    pub incoming_refused: u64,
    /// Dials that failed before opening, by error code, over all peers.
    pub dial_failures: BTreeMap<String, u64>,
    /// Hash over every delivered datagram.
    pub trace_hash: TraceHash,
    /// Datagram counters.
    pub net: NetStats,
    /// Simulator events processed.
    pub events: u64,
    /// Virtual time simulated.
    pub sim_time: Duration,
    /// Wall-clock time of the run.
    pub wall: Duration,
}

impl SwarmRun {
    /// Every pair that can connect is connected.
    pub fn meshed(&self) -> bool {
        self.mesh_time.is_some()
    }

    /// One JSON object on one line, camelCase keys (the CLI's last line).
    pub fn to_json_line(&self) -> String {
        let mut j = Json::default();
        j.str("scenario", "swarm");
        j.num("peers", self.peers as f64);
        j.str("nat", &self.nat);
        j.raw("relay", if self.relay { "true" } else { "false" });
        j.raw("seed", &self.seed.to_string());
        j.str("traceHash", &self.trace_hash.to_hex());
        j.num("bootstrapped", self.bootstrapped as f64);
        j.num("connectablePairs", self.connectable_pairs as f64);
        j.num("connectedPairs", self.connected_pairs as f64);
        j.raw(
            "maxPeers",
            &self.max_peers.map_or("null".to_string(), |m| m.to_string()),
        );
        j.raw("meshed", if self.meshed() { "true" } else { "false" });
        j.num(
            "meshMs",
            self.mesh_time.map_or(f64::NAN, |d| d.as_millis() as f64),
        );
        j.pct("firstConnectionMs", &self.first_connection_ms);
        j.num(
            "allConnectedMs",
            self.all_connected_time
                .map_or(f64::NAN, |d| d.as_millis() as f64),
        );
        j.pct("degree", &self.degree);
        j.raw("held", if self.held { "true" } else { "false" });
        j.num("connectedAfterSettle", self.connected_after_settle as f64);
        j.num("mismatchedPairs", self.mismatched_pairs as f64);
        j.num("flushed", self.flushed as f64);
        j.pct("flushMs", &self.flush_ms);
        j.num("connectionEvents", self.connection_events as f64);
        j.num("disconnectionEvents", self.disconnection_events as f64);
        j.num("duplicatesDropped", self.duplicates_dropped as f64);
        j.num("dials", self.dials as f64);
        j.num("incomingRefused", self.incoming_refused as f64);
        if !self.below_target.is_empty() {
            let list: Vec<String> = self
                .below_target
                .iter()
                .map(|b| {
                    let mut o = Json::default();
                    o.num("peer", b.peer as f64);
                    o.num("degree", b.degree as f64);
                    o.num("target", b.target as f64);
                    o.num("connecting", b.connecting as f64);
                    o.num("queued", b.queued as f64);
                    o.num("waiting", b.waiting as f64);
                    o.num("others", b.others as f64);
                    o.num("othersFull", b.others_full as f64);
                    o.num("othersUnknown", b.others_unknown as f64);
                    o.finish()
                })
                .collect();
            j.raw("belowTarget", &format!("[{}]", list.join(",")));
        }
        let mut f = Json::default();
        for (k, v) in &self.dial_failures {
            f.num(k, *v as f64);
        }
        j.raw("dialFailures", &f.finish());
        j.num("datagramsSent", self.net.sent as f64);
        j.num("datagramsDelivered", self.net.delivered as f64);
        j.num("datagramsDropped", self.net.dropped_total() as f64);
        j.num("events", self.events as f64);
        j.num("busyTimers", self.net.busy_timers as f64);
        j.num("simMs", self.sim_time.as_millis() as f64);
        j.num("wallMs", (self.wall.as_secs_f64() * 1000.0).round());
        j.finish()
    }
}

/// A peer below its target after `settle`, and where its missing connections could come
/// from: the peers it is not connected to, by what stands in the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BelowTarget {
    /// Its index.
    pub peer: usize,
    /// Shared connections, and its target.
    pub degree: usize,
    /// Its target.
    pub target: usize,
    /// Its dials in progress.
    pub connecting: usize,
    /// Peers in its dial queue.
    pub queued: usize,
    /// Peers waiting for a retry timer.
    pub waiting: usize,
    /// Peers it could connect to and is not connected to.
    pub others: usize,
    /// Of those, peers that refuse its handshake now (their incoming connections are at
    /// `max_server_connections`).
    pub others_full: usize,
    /// Of those, peers that would take its handshake but it does not know (not found by
    /// its lookups, or given up after 4 failed dials and forgotten).
    pub others_unknown: usize,
}

/// Tracks the pairs as the peers' events come: a pair is connected when both swarms hold a
/// connection to each other with the same handshake hash.
#[derive(Debug, Default)]
struct Mesh {
    /// Peer host → its index.
    index: BTreeMap<HostId, usize>,
    hosts: Vec<HostId>,
    keys: Vec<[u8; 32]>,
    by_key: BTreeMap<[u8; 32], usize>,
    presets: Vec<NatPreset>,
    /// A relay runs: every pair can connect.
    relay: bool,
    connected: BTreeSet<(usize, usize)>,
    connectable: usize,
    joined_at: Option<Instant>,
    first_connection: Vec<Option<Instant>>,
    /// Shared connections per peer, and how many each must reach.
    degree: Vec<usize>,
    target: Vec<usize>,
    /// Peers at their target, and with at least one connection.
    satisfied: usize,
    with_one: usize,
    complete_at: Option<Instant>,
    all_connected_at: Option<Instant>,
    max_connecting: usize,
    /// When each peer's `flush()` (called right after its join) ended, and whether ok.
    flushed: Vec<Option<(Instant, bool)>>,
    connections: u64,
    disconnections: u64,
}

impl Mesh {
    /// The handshake hash of `a`'s swarm connection to peer `b`, if announced.
    fn link(sim: &SwarmSim, a: HostId, key: &[u8; 32]) -> Option<[u8; 64]> {
        let host = sim.try_node(a)?;
        let swarm = host.swarm()?;
        let conn = swarm.connection_to(key)?;
        swarm.connections().find(|(c, _)| *c == conn)?;
        host.node().connection_info(conn).map(|i| i.handshake_hash)
    }

    fn pair_connected(&self, sim: &SwarmSim, i: usize, j: usize) -> bool {
        let x = Mesh::link(sim, self.hosts[i], &self.keys[j]);
        let y = Mesh::link(sim, self.hosts[j], &self.keys[i]);
        x.is_some() && x == y
    }

    fn update(&mut self, sim: &SwarmSim, i: usize, j: usize) {
        let pair = (i.min(j), i.max(j));
        let changed = if self.pair_connected(sim, i, j) {
            self.connected.insert(pair).then_some(true)
        } else {
            self.connected.remove(&pair).then_some(false)
        };
        if let Some(up) = changed {
            for k in [i, j] {
                let before = self.degree[k];
                self.degree[k] = if up { before + 1 } else { before - 1 };
                let after = self.degree[k];
                let t = self.target[k];
                match (before >= t, after >= t) {
                    (false, true) => self.satisfied += 1,
                    (true, false) => self.satisfied -= 1,
                    _ => {}
                }
                match (before > 0, after > 0) {
                    (false, true) => self.with_one += 1,
                    (true, false) => self.with_one -= 1,
                    _ => {}
                }
            }
        }
        if self.complete_at.is_none() && self.satisfied == self.hosts.len() {
            self.complete_at = Some(sim.now());
        }
        if self.all_connected_at.is_none() && self.with_one == self.hosts.len() {
            self.all_connected_at = Some(sim.now());
        }
    }

    /// Pairs whose two sides hold different connections (or one side none), counted now.
    fn recount(&mut self, sim: &SwarmSim) -> usize {
        let mut mismatched = 0;
        self.connected.clear();
        for i in 0..self.hosts.len() {
            for j in i + 1..self.hosts.len() {
                let x = Mesh::link(sim, self.hosts[i], &self.keys[j]);
                let y = Mesh::link(sim, self.hosts[j], &self.keys[i]);
                if x.is_some() && x == y {
                    self.connected.insert((i, j));
                } else if x.is_some() || y.is_some() {
                    mismatched += 1;
                }
            }
        }
        mismatched
    }
}

impl Handler<SwarmHost> for Mesh {
    fn on_event(&mut self, sim: &mut Engine<SwarmHost>, host: HostId, event: SwarmEvent) {
        let Some(&i) = self.index.get(&host) else {
            return;
        };
        if let Some(s) = sim.try_node(host).and_then(|n| n.swarm()) {
            self.max_connecting = self.max_connecting.max(s.connecting());
        }
        let key = match event {
            SwarmEvent::Connection {
                remote_public_key, ..
            } => {
                self.connections += 1;
                if self.first_connection[i].is_none() {
                    self.first_connection[i] = Some(sim.now());
                }
                remote_public_key
            }
            SwarmEvent::Disconnection {
                remote_public_key, ..
            } => {
                self.disconnections += 1;
                remote_public_key
            }
            SwarmEvent::Flushed { ok, .. } => {
                self.flushed[i].get_or_insert((sim.now(), ok));
                return;
            }
            _ => return,
        };
        if let Some(&j) = self.by_key.get(&key) {
            if connectable(self.relay, self.presets[i], self.presets[j]) {
                self.update(sim, i, j);
            }
        }
    }
}

/// A node of the public side: bootstrapped and reachable (not firewalled).
fn open_and_bootstrapped(sim: &SwarmSim, h: HostId) -> bool {
    sim.try_node(h)
        .is_some_and(|n| n.rpc().is_bootstrapped() && !n.rpc().is_firewalled())
}

fn below_target(sim: &SwarmSim, m: &Mesh, i: usize, degree: usize) -> BelowTarget {
    let swarm = sim.try_node(m.hosts[i]).and_then(|n| n.swarm());
    let mut b = BelowTarget {
        peer: i,
        degree,
        target: m.target[i],
        connecting: swarm.map_or(0, |s| s.connecting()),
        queued: swarm.map_or(0, |s| s.queued()),
        waiting: swarm.map_or(0, |s| s.peers().filter(|p| p.waiting).count()),
        others: 0,
        others_full: 0,
        others_unknown: 0,
    };
    for j in 0..m.hosts.len() {
        let pair = (i.min(j), i.max(j));
        if j == i
            || m.connected.contains(&pair)
            || !connectable(m.relay, m.presets[i], m.presets[j])
        {
            continue;
        }
        b.others += 1;
        let other = sim.try_node(m.hosts[j]).and_then(|n| n.swarm());
        if other.is_some_and(|s| s.refuses_incoming(&m.keys[i])) {
            b.others_full += 1;
        } else if swarm.is_some_and(|s| s.peer(&m.keys[j]).is_none()) {
            b.others_unknown += 1;
        }
    }
    b
}

fn run_until(
    sim: &mut SwarmSim,
    m: &mut Mesh,
    deadline: Instant,
    slice: Duration,
    done: impl Fn(&SwarmSim, &Mesh) -> bool,
) -> bool {
    loop {
        if done(sim, m) {
            return true;
        }
        if sim.now() >= deadline {
            return false;
        }
        let next = (sim.now() + slice).min(deadline);
        sim.run_until_with(next, m);
    }
}

fn pick(mix: &NatMix, rng: &mut impl RngCore) -> NatPreset {
    let total: u64 = mix.parts().iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return NatPreset::Open;
    }
    let mut x = rng.next_u64() % total;
    for (p, w) in mix.parts() {
        if x < u64::from(*w) {
            return *p;
        }
        x -= u64::from(*w);
    }
    NatPreset::Open
}

/// Runs one swarm simulation (see the module docs).
pub fn run_swarm(cfg: &SwarmScenarioConfig) -> Result<SwarmRun, ScenarioError> {
    cfg.validate()?;
    let wall = WallInstant::now();
    let link = LinkModel {
        latency: cfg.rtt / 2,
        loss: 0.0,
        ..LinkModel::default()
    };
    let mut sim = SwarmSim::new(cfg.seed, link);
    sim.reserve_hosts(cfg.public_nodes + cfg.peers);
    let mut m = Mesh::default();

    // 1. The public DHT.
    let boot = sim.next_swarm_server_addr();
    let mut public =
        vec![sim.add_swarm_node_in(RealmId::INTERNET, DhtNodeConfig::bootstrapper(boot))?];
    let mut addrs = vec![boot];
    for _ in 1..cfg.public_nodes {
        sim.run_for_with(Duration::from_millis(10), &mut m);
        let mut c = DhtNodeConfig::joining(vec![boot]);
        c.dht.rpc.persistence = Persistence::Persistent;
        let h = sim.add_swarm_node_in(RealmId::INTERNET, c)?;
        addrs.push(sim.swarm_server_addr(h));
        public.push(h);
    }
    let deadline = sim.now() + cfg.ready_timeout;
    run_until(
        &mut sim,
        &mut m,
        deadline,
        Duration::from_millis(100),
        |sim, _| public.iter().all(|&h| open_and_bootstrapped(sim, h)),
    );
    // 1b. A blind relay on one more open node, announced before the peers join.
    m.relay = cfg.relay;
    let relay_key = if cfg.relay {
        let mut c = DhtNodeConfig::joining(vec![boot]);
        c.dht.rpc.persistence = Persistence::Persistent;
        relay_node_config(&mut c.dht, cfg.peers);
        if let Some(f) = cfg.relay_node {
            f(&mut c.dht);
        }
        let h = sim.add_swarm_node_in(RealmId::INTERNET, c)?;
        let deadline = sim.now() + cfg.ready_timeout;
        run_until(
            &mut sim,
            &mut m,
            deadline,
            Duration::from_millis(100),
            |sim, _| open_and_bootstrapped(sim, h),
        );
        let kp = KeyPair::generate(sim.rng());
        sim.with_node(h, |n, now| {
            n.relay_server(now, kp.clone(), relay_limits(cfg.peers))
        })
        .map_err(ScenarioError::RelayServer)?;
        // Its announce lands within a few round trips.
        sim.run_for_with(Duration::from_secs(5), &mut m);
        Some(kp.public_key())
    } else {
        None
    };
    let mut link = sim.link().to_owned();
    link.loss = cfg.loss;
    sim.set_link(link);

    // 2. The peers, each behind its own NAT.
    for i in 0..cfg.peers {
        let preset = pick(&cfg.nat, sim.rng());
        let kp = KeyPair::generate(sim.rng());
        let realm = if preset == NatPreset::Open {
            RealmId::INTERNET
        } else {
            sim.add_preset(preset, None)?.0
        };
        let seeds = (0..3).map(|k| addrs[(i * 3 + k) % addrs.len()]).collect();
        let node = DhtNodeConfig {
            dht: DhtConfig {
                rpc: RpcConfig {
                    bootstrap: seeds,
                    ..RpcConfig::default()
                },
                ..DhtConfig::default()
            },
        };
        let h = sim.add_swarm_node_in(realm, node)?;
        let mut sc = SwarmConfig::new(kp.clone());
        match cfg.max_peers {
            None => {
                // `max_peers` counts with a factor up to 4 (explicit peers); none here.
                sc.max_peers = cfg.peers;
                sc.max_server_connections = cfg.peers;
            }
            Some(m) => {
                sc.max_peers = m;
                sc.max_server_connections = m;
            }
        }
        sc.relay_through = relay_key.map(RelaySelector::Key);
        if let Some(f) = cfg.configure {
            f(i, &mut sc);
        }
        let seed = sim.rng().next_u64();
        sim.with_node(h, |n, _| n.start_swarm(sc, seed));
        m.index.insert(h, i);
        m.hosts.push(h);
        m.keys.push(kp.public_key());
        m.by_key.insert(kp.public_key(), i);
        m.presets.push(preset);
        m.first_connection.push(None);
        m.degree.push(0);
        m.flushed.push(None);
    }
    let n = cfg.peers;
    m.connectable = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .filter(|&(i, j)| connectable(m.relay, m.presets[i], m.presets[j]))
        .count();
    let limit = cfg.max_peers.unwrap_or(usize::MAX);
    m.target = (0..n)
        .map(|i| {
            let reachable = (0..n)
                .filter(|&j| j != i && connectable(m.relay, m.presets[i], m.presets[j]))
                .count();
            reachable.min(limit)
        })
        .collect();
    m.satisfied = m.target.iter().filter(|t| **t == 0).count();
    let hosts = m.hosts.clone();
    let deadline = sim.now() + cfg.ready_timeout;
    run_until(
        &mut sim,
        &mut m,
        deadline,
        Duration::from_millis(100),
        |sim, _| {
            hosts
                .iter()
                .all(|&h| sim.try_node(h).is_some_and(|n| n.rpc().is_bootstrapped()))
        },
    );
    let bootstrapped = hosts
        .iter()
        .filter(|&&h| sim.try_node(h).is_some_and(|n| n.rpc().is_bootstrapped()))
        .count();

    if let Some(f) = cfg.before_join {
        let keys = m.keys.clone();
        f(&mut sim, &hosts, &keys);
    }

    // 3. Everyone joins at once.
    let mut topic = [0u8; 32];
    sim.rng().fill_bytes(&mut topic);
    let joined = sim.now();
    m.joined_at = Some(joined);
    for &h in &hosts {
        sim.with_node(h, |n, now| {
            let _ = n.join(now, topic, cfg.join);
            n.with_swarm(now, |s, node| s.flush(now, node));
        });
    }

    // 4. Until the mesh is whole, then `settle` more.
    let deadline = joined + cfg.mesh_timeout;
    let report_every = Duration::from_secs(10);
    loop {
        let until = (sim.now() + report_every).min(deadline);
        if run_until(
            &mut sim,
            &mut m,
            until,
            Duration::from_millis(100),
            |_, m| m.complete_at.is_some(),
        ) || sim.now() >= deadline
        {
            break;
        }
        if let Some(f) = cfg.progress {
            f(&SwarmProgress {
                since_join: sim.now().saturating_duration_since(joined),
                connected_pairs: m.connected.len(),
                connectable_pairs: m.connectable,
                peers_at_target: m.satisfied,
                peers: n,
                wall: wall.elapsed(),
                below_target: (0..n)
                    .filter(|&i| m.degree[i] < m.target[i])
                    .take(100)
                    .map(|i| below_target(&sim, &m, i, m.degree[i]))
                    .collect(),
            });
        }
    }
    let connected_pairs = m.connected.len();
    let mesh_time = m.complete_at.map(|t| t.saturating_duration_since(joined));
    let all_connected_time = m
        .all_connected_at
        .map(|t| t.saturating_duration_since(joined));
    let degrees: Vec<f64> = m.degree.iter().map(|d| *d as f64).collect();
    if let Some(f) = cfg.after_mesh {
        let keys = m.keys.clone();
        f(&mut sim, &hosts, &keys);
    }
    sim.run_for_with(cfg.settle, &mut m);
    let mismatched_pairs = m.recount(&sim);
    let mut missing_pairs = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if missing_pairs.len() < 100
                && connectable(m.relay, m.presets[i], m.presets[j])
                && !m.connected.contains(&(i, j))
            {
                missing_pairs.push((i, j));
            }
        }
    }
    let peer_connections = hosts
        .iter()
        .map(|&h| {
            sim.try_node(h)
                .and_then(|n| n.swarm())
                .map_or((0, 0), |s| (s.client_connections(), s.server_connections()))
        })
        .collect();
    let connected_after_settle = m.connected.len();
    let mut settled_degree = vec![0usize; n];
    for (a, b) in &m.connected {
        settled_degree[*a] += 1;
        settled_degree[*b] += 1;
    }
    let held = mesh_time.is_some() && (0..n).all(|i| settled_degree[i] >= m.target[i]);
    let below_target = (0..n)
        .filter(|&i| settled_degree[i] < m.target[i])
        .take(100)
        .map(|i| below_target(&sim, &m, i, settled_degree[i]))
        .collect();

    let firsts: Vec<f64> = m
        .first_connection
        .iter()
        .flatten()
        .map(|t| t.saturating_duration_since(joined).as_secs_f64() * 1000.0)
        .collect();
    let flushes: Vec<f64> = m
        .flushed
        .iter()
        .flatten()
        .filter(|(_, ok)| *ok)
        .map(|(t, _)| t.saturating_duration_since(joined).as_secs_f64() * 1000.0)
        .collect();
    let (mut dups, mut dials, mut refused) = (0, 0, 0);
    let mut dial_failures = BTreeMap::new();
    for &h in &hosts {
        if let Some(s) = sim.try_node(h).and_then(|n| n.swarm()) {
            dups += s.stats().duplicates_dropped;
            dials += s.stats().client_attempted;
            refused += s.stats().incoming_refused;
            for (k, v) in s.dial_failures() {
                *dial_failures.entry((*k).to_string()).or_insert(0) += v;
            }
        }
    }
    Ok(SwarmRun {
        relay: cfg.relay,
        peers: cfg.peers,
        nat: cfg.nat.to_string(),
        seed: cfg.seed,
        bootstrapped,
        connectable_pairs: m.connectable,
        connected_pairs,
        max_peers: cfg.max_peers,
        mesh_time,
        all_connected_time,
        degree: super::Percentiles::of(&degrees),
        first_connection_ms: super::Percentiles::of(&firsts),
        held,
        connected_after_settle,
        mismatched_pairs,
        missing_pairs,
        peer_connections,
        below_target,
        max_connecting: m.max_connecting,
        flushed: flushes.len(),
        flush_ms: super::Percentiles::of(&flushes),
        connection_events: m.connections,
        disconnection_events: m.disconnections,
        duplicates_dropped: dups,
        dials,
        incoming_refused: refused,
        dial_failures,
        trace_hash: sim.trace(),
        net: sim.stats(),
        events: sim.events_processed(),
        sim_time: Duration::from_micros(sim.now().as_micros()),
        wall: wall.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdht_core::dht::budget::ConnectionBudget;
    use hdht_core::udx::StreamConfig;

    /// The relay node of a 1,000-peer mesh has room for two relay streams per pair.
    #[test]
    fn the_relay_node_has_room_for_every_pair() {
        let peers = 1000;
        let mut c = DhtConfig::default();
        relay_node_config(&mut c, peers);
        let budget = ConnectionBudget::new(c.connection_budget.unwrap());
        let base = StreamConfig::default();
        let mut reserved = 0usize;
        for _ in 0..2 * mesh_pairs(peers) {
            let s = budget
                .size(reserved, base.clone())
                .expect("room for the stream");
            reserved += s.recv_window + s.send_buffer;
        }
        assert!(c.max_server_handshakes.unwrap() >= 2 * mesh_pairs(peers));
    }
}
