//! Whole-network scenarios — the library entry point the `hdht sim` CLI calls.
//!
//! A [`Scenario`] builds a network (a few open bootstrap nodes, then nodes joining in batches
//! of [`ScenarioConfig::join_batch`] — one at a time below 2,000 nodes — each placed behind a
//! NAT drawn from the [`NatMix`]), lets it settle, measures it, and runs a
//! timeline of operations, crashes and partitions. What the operations *are* is the
//! [`Workload`]'s business ([`RpcWorkload`] by default), so hyperdht's announce/lookup plug in
//! later without touching the runner.
//!
//! The timeline per [`ScenarioKind`]:
//! - `bootstrap`: join, settle, measure tables; FIND_NODE lookups for random node ids;
//! - `lookup`: … then announces from random nodes, then lookups from random nodes;
//! - `churn`: `lookup`, with a fraction of nodes crashing during the lookups and coming back
//!   (same or new address) a little later; with `--hours N` ([`long_churn`]) it runs N
//!   simulated hours of churn instead, sampling heap per node every hour;
//! - `partition`: `lookup`, with the network split in two halves for a while (lookups run
//!   during the split), then healed; the headline lookups run after healing.
//!
//! All choices come from the run's RNG, so a seed replays the whole scenario.
//!
//! [`holepunch`] is a scenario of its own: hyperdht nodes behind two NAT presets connecting by
//! public key across a small public DHT, and the matrix of every preset pair over many seeds.

mod error;
pub mod flood;
pub mod holepunch;
mod kind;
pub mod long_churn;
mod report;
pub mod swarm;
mod workload;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddrV4;
use std::str::FromStr;
use std::time::{Duration, Instant as WallInstant};

use hdht_core::rpc::{NodeId, Persistence};
use hdht_core::Instant;
use rand_core::RngCore;

use crate::engine::Engine;
use crate::link::LinkModel;
use crate::mem;
use crate::nat::NatPreset;
use crate::network::{HostId, NatId, NetError, RealmId};
use crate::rpc::SERVER_PORT;

pub use error::ScenarioError;
pub use kind::ScenarioKind;
pub use report::{Percentiles, Report, Tally};
pub use workload::{DhtApp, NodeSpec, OpId, OpResult, RpcWorkload, Workload, CMD_FETCH, CMD_STORE};

/// The largest default [`ScenarioConfig::join_batch`]: 20 nodes every 20 ms.
pub const MAX_JOIN_BATCH: usize = 20;

/// Which NAT situations nodes are placed in, with weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatMix(Vec<(NatPreset, u32)>);

impl NatMix {
    /// Every node open.
    pub fn open() -> Self {
        NatMix(vec![(NatPreset::Open, 1)])
    }

    /// A mix from (preset, weight) pairs (zero weights are dropped; empty means open).
    pub fn weighted(parts: &[(NatPreset, u32)]) -> Self {
        let v: Vec<(NatPreset, u32)> = parts.iter().copied().filter(|(_, w)| *w > 0).collect();
        if v.is_empty() {
            NatMix::open()
        } else {
            NatMix(v)
        }
    }

    /// Equal weights.
    pub fn uniform(presets: &[NatPreset]) -> Self {
        let v: Vec<(NatPreset, u32)> = presets.iter().map(|p| (*p, 1)).collect();
        NatMix::weighted(&v)
    }

    /// The presets and weights.
    pub fn parts(&self) -> &[(NatPreset, u32)] {
        &self.0
    }

    fn pick(&self, rng: &mut impl RngCore) -> NatPreset {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        if self.0.len() == 1 || total == 0 {
            return self.0.first().map_or(NatPreset::Open, |p| p.0);
        }
        let mut x = rng.next_u64() % total;
        for (p, w) in &self.0 {
            if x < u64::from(*w) {
                return *p;
            }
            x -= u64::from(*w);
        }
        NatPreset::Open
    }
}

impl Default for NatMix {
    fn default() -> Self {
        NatMix::open()
    }
}

impl fmt::Display for NatMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (p, w)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if self.0.len() == 1 {
                write!(f, "{p}")?;
            } else {
                write!(f, "{p}:{w}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for NatMix {
    type Err = ScenarioError;
    /// `open`, `open,symmetric` (equal weights) or `open:7,symmetric:3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (name, weight) = match item.split_once(':') {
                Some((n, w)) => (
                    n,
                    w.parse::<u32>()
                        .map_err(|_| ScenarioError::BadWeight(item.to_string()))?,
                ),
                None => (item, 1),
            };
            parts.push((name.parse::<NatPreset>()?, weight));
        }
        Ok(NatMix::weighted(&parts))
    }
}

/// Options of a scenario run.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// Which scenario.
    pub kind: ScenarioKind,
    /// Nodes, bootstrappers included.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// NAT placement of joining nodes (bootstrappers are always open).
    pub nat: NatMix,
    /// Link loss during the operations (joins happen on a clean link, as a network that
    /// exists already; set `link.loss` for loss from the start).
    pub loss: f64,
    /// Fraction of nodes that crash during the lookups (churn scenario).
    pub churn: f64,
    /// Record lookups (node lookups in the bootstrap scenario).
    pub lookups: usize,
    /// Records announced before the lookups.
    pub announces: usize,
    /// Open nodes started first; every other node bootstraps from them.
    pub bootstrappers: usize,
    /// Time between two joins (of a batch of [`ScenarioConfig::join_batch`] nodes each).
    pub join_interval: Duration,
    /// Nodes that join together, every `join_interval`. Joining one at a time makes the join
    /// phase's length, and with it every joined node's ticks, grow with the node count (the
    /// cost with n²); by default a batch is one node per 1,000 (1 below 2,000 nodes) and at
    /// most [`MAX_JOIN_BATCH`], so a join phase lasts ~20 s of virtual time up to 20,000
    /// nodes, as nodes join a real network concurrently, and 1,000 nodes join per virtual
    /// second beyond (100,000 nodes: 100 s). A faster join holds more bootstrap queries in
    /// flight at once (each with its seen set of a few hundred addresses): at 100,000 nodes
    /// joining in 20 s, those transients alone outgrew the rest of the run's memory.
    pub join_batch: usize,
    /// Quiet time after the last join.
    pub settle: Duration,
    /// Lookups (and crashes) are spread over this window.
    pub lookup_window: Duration,
    /// Time after the window for the last operations to finish.
    pub drain: Duration,
    /// How long the partition lasts.
    pub partition_for: Duration,
    /// How long a crashed node stays down.
    pub restart_after: Duration,
    /// The link model (its `loss` is replaced by `loss` for the operations).
    pub link: LinkModel,
    /// Persistence mode of joining nodes: `Persistent` (the default here) asks them to test
    /// reachability during bootstrap, so open nodes become routable at once; the reference
    /// default `Adaptive` waits ~20 minutes before that.
    pub persistence: Persistence,
    /// Nodes sampled for the convergence measure.
    pub convergence_sample: usize,
}

impl ScenarioConfig {
    /// Defaults for `kind` with `nodes` nodes and `seed`.
    pub fn new(kind: ScenarioKind, nodes: usize, seed: u64) -> Self {
        ScenarioConfig {
            kind,
            nodes,
            seed,
            nat: NatMix::open(),
            loss: 0.0,
            churn: if kind == ScenarioKind::Churn {
                0.1
            } else {
                0.0
            },
            lookups: 200,
            announces: 50,
            bootstrappers: 3,
            join_interval: Duration::from_millis(20),
            join_batch: (nodes / 1000).clamp(1, MAX_JOIN_BATCH),
            settle: Duration::from_secs(60),
            lookup_window: Duration::from_secs(60),
            drain: Duration::from_secs(30),
            partition_for: Duration::from_secs(120),
            restart_after: Duration::from_secs(10),
            link: LinkModel::wan(
                Duration::from_millis(20),
                Duration::from_millis(40),
                Duration::from_millis(10),
            ),
            persistence: Persistence::Persistent,
            convergence_sample: 100,
        }
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let min = self.bootstrappers.max(1) + 1;
        if self.nodes < min {
            return Err(ScenarioError::TooFewNodes {
                min,
                got: self.nodes,
            });
        }
        for (name, value) in [
            ("loss", self.loss),
            ("churn", self.churn),
            ("link.loss", self.link.loss),
            ("link.duplicate", self.link.duplicate),
            ("link.reorder", self.link.reorder),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ScenarioError::BadFraction { name, value });
            }
        }
        Ok(())
    }
}

/// Where a run is, for progress output.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The phase: "join", "settle", "announce", "lookup", "partition", "heal", "done".
    pub phase: &'static str,
    /// Steps done in this phase.
    pub done: usize,
    /// Steps in this phase.
    pub total: usize,
    /// Virtual time.
    pub sim_time: Duration,
    /// Events so far.
    pub events: u64,
    /// Wall time so far.
    pub wall: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Announce,
    Lookup,
    PartitionLookup,
    NodeLookup { target: HostId },
}

#[derive(Debug, Clone, Copy)]
struct OpInfo {
    kind: OpKind,
    started: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Announce,
    Lookup { during_partition: bool },
    NodeLookup,
    Crash,
    Restart { host: HostId, new_address: bool },
}

#[derive(Debug, Clone)]
struct HostInfo {
    preset: NatPreset,
    bootstrapper: bool,
}

/// One scenario run.
pub struct Scenario<W: Workload = RpcWorkload> {
    cfg: ScenarioConfig,
    sim: Engine<W::App>,
    workload: W,
    hosts: Vec<HostInfo>,
    boot: Vec<SocketAddrV4>,
    carrier: Option<(NatId, usize)>,
    ops: BTreeMap<OpId, OpInfo>,
    next_op: u64,
    keys: Vec<NodeId>,
    done: Vec<OpResult>,
    report: Stats,
}

#[derive(Default)]
struct Stats {
    announce: Tally,
    lookup: Tally,
    partition_lookup: Tally,
    node_lookup: Tally,
    latency_ms: Vec<f64>,
    hops: Vec<f64>,
    replies: Vec<f64>,
    crashed: usize,
}

/// Homes per shared carrier-grade NAT.
const HOMES_PER_CARRIER: usize = 64;

impl Scenario<RpcWorkload> {
    /// A scenario with the dht-rpc workload.
    pub fn new(cfg: ScenarioConfig) -> Result<Self, ScenarioError> {
        Scenario::with_workload(cfg, RpcWorkload::new())
    }
}

impl<W: Workload> Scenario<W> {
    /// A scenario with a custom workload.
    pub fn with_workload(cfg: ScenarioConfig, workload: W) -> Result<Self, ScenarioError> {
        cfg.validate()?;
        let mut sim = Engine::new(cfg.seed, cfg.link);
        sim.reserve_hosts(cfg.nodes);
        Ok(Scenario {
            cfg,
            sim,
            workload,
            hosts: Vec::new(),
            boot: Vec::new(),
            carrier: None,
            ops: BTreeMap::new(),
            next_op: 0,
            keys: Vec::new(),
            done: Vec::new(),
            report: Stats::default(),
        })
    }

    /// The simulator (to inspect nodes after a run).
    pub fn sim(&self) -> &Engine<W::App> {
        &self.sim
    }

    /// The simulator, mutably.
    pub fn sim_mut(&mut self) -> &mut Engine<W::App> {
        &mut self.sim
    }

    /// The workload.
    pub fn workload(&self) -> &W {
        &self.workload
    }

    /// The NAT preset host `h` was placed behind.
    pub fn preset(&self, h: HostId) -> Option<NatPreset> {
        self.hosts.get(h).map(|i| i.preset)
    }

    /// Whether host `h` is one of the bootstrap nodes.
    pub fn is_bootstrapper(&self, h: HostId) -> bool {
        self.hosts.get(h).is_some_and(|i| i.bootstrapper)
    }

    /// Runs the whole scenario, calling `progress` along the way.
    pub fn run(&mut self, progress: &mut dyn FnMut(&Progress)) -> Result<Report, ScenarioError> {
        let wall = WallInstant::now();
        let (mem_before, _) = mem::live_bytes();
        self.build(progress, wall)?;
        self.settle(progress, wall);
        let (mem_after, mem_source) = mem::live_bytes();
        let memory_per_node = mem_after.saturating_sub(mem_before) / self.cfg.nodes as u64;
        let snapshot = self.snapshot();
        let mut link = self.sim.link().to_owned();
        link.loss = self.cfg.loss;
        self.sim.set_link(link);
        match self.cfg.kind {
            ScenarioKind::Bootstrap => {
                let actions =
                    self.spread(self.cfg.lookups, Action::NodeLookup, self.cfg.lookup_window);
                self.timeline("lookup", actions, progress, wall);
            }
            kind => {
                self.announce_phase(progress, wall);
                if kind == ScenarioKind::Partition {
                    self.partition_phase(progress, wall);
                }
                let mut actions = self.spread(
                    self.cfg.lookups,
                    Action::Lookup {
                        during_partition: false,
                    },
                    self.cfg.lookup_window,
                );
                actions.extend(self.spread(
                    self.cfg.lookups / 4,
                    Action::NodeLookup,
                    self.cfg.lookup_window,
                ));
                if kind == ScenarioKind::Churn {
                    let n = ((self.cfg.nodes as f64) * self.cfg.churn).round() as usize;
                    actions.extend(self.spread(n, Action::Crash, self.cfg.lookup_window));
                }
                actions.sort_by_key(|a| a.0);
                self.timeline("lookup", actions, progress, wall);
            }
        }
        self.fail_unfinished();
        let wall_time = wall.elapsed();
        let events = self.sim.events_processed();
        self.emit(progress, "done", 1, 1, wall);
        let r = &self.report;
        Ok(Report {
            scenario: self.cfg.kind,
            nodes: self.cfg.nodes,
            seed: self.cfg.seed,
            trace_hash: self.sim.trace(),
            nat: self.cfg.nat.to_string(),
            loss: self.cfg.loss,
            churn: self.cfg.churn,
            crashed: r.crashed,
            bootstrapped: snapshot.bootstrapped,
            persistent: snapshot.persistent,
            firewalled: snapshot.firewalled,
            nat_classification: snapshot.classification,
            table_size: snapshot.table_size,
            convergence: snapshot.convergence,
            announce: r.announce,
            lookup: r.lookup,
            partition_lookup: r.partition_lookup,
            node_lookup: r.node_lookup,
            latency_ms: Percentiles::of(&r.latency_ms),
            hops: Percentiles::of(&r.hops),
            replies: Percentiles::of(&r.replies),
            net: self.sim.stats(),
            events,
            events_per_sec: events as f64 / wall_time.as_secs_f64().max(1e-9),
            wall: wall_time,
            sim_time: Duration::from_micros(self.sim.now().as_micros()),
            memory_per_node,
            memory_source: mem_source,
        })
    }

    fn emit(
        &self,
        progress: &mut dyn FnMut(&Progress),
        phase: &'static str,
        done: usize,
        total: usize,
        wall: WallInstant,
    ) {
        progress(&Progress {
            phase,
            done,
            total,
            sim_time: Duration::from_micros(self.sim.now().as_micros()),
            events: self.sim.events_processed(),
            wall: wall.elapsed(),
        });
    }

    /// Runs the network to `until`, routing events to the workload and collecting results.
    fn run_until(&mut self, until: Instant) {
        let Scenario {
            sim,
            workload,
            done,
            ..
        } = self;
        sim.run_until_with(until, &mut |sim: &mut Engine<W::App>, h: HostId, ev| {
            workload.on_event(sim, h, ev, done)
        });
        self.collect();
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.sim.now() + d;
        self.run_until(until);
    }

    fn collect(&mut self) {
        for r in std::mem::take(&mut self.done) {
            let Some(info) = self.ops.remove(&r.op) else {
                continue;
            };
            let tally = match info.kind {
                OpKind::Announce => &mut self.report.announce,
                OpKind::Lookup => &mut self.report.lookup,
                OpKind::PartitionLookup => &mut self.report.partition_lookup,
                OpKind::NodeLookup { target } => {
                    // A node that died meanwhile cannot be found; not the lookup's fault.
                    if !self.sim.is_alive(target) {
                        continue;
                    }
                    &mut self.report.node_lookup
                }
            };
            tally.add(r.ok);
            if r.ok && matches!(info.kind, OpKind::Lookup | OpKind::NodeLookup { .. }) {
                self.report
                    .latency_ms
                    .push(r.at.saturating_duration_since(info.started).as_secs_f64() * 1000.0);
                self.report.hops.push(f64::from(r.hops));
                self.report.replies.push(f64::from(r.replies));
            }
        }
    }

    fn fail_unfinished(&mut self) {
        for (_, info) in std::mem::take(&mut self.ops) {
            match info.kind {
                OpKind::Announce => self.report.announce.add(false),
                OpKind::Lookup => self.report.lookup.add(false),
                OpKind::PartitionLookup => self.report.partition_lookup.add(false),
                OpKind::NodeLookup { .. } => self.report.node_lookup.add(false),
            }
        }
    }

    fn spec(&self) -> NodeSpec {
        NodeSpec {
            bootstrap: self.boot.clone(),
            bootstrapper: None,
            persistence: self.cfg.persistence,
        }
    }

    /// The realm a new host with `preset` goes into (creating its NAT boxes).
    fn place(&mut self, preset: NatPreset) -> Result<RealmId, NetError> {
        let carrier = match (preset, self.carrier) {
            (NatPreset::Cgnat, Some((c, n))) if n < HOMES_PER_CARRIER => Some(c),
            _ => None,
        };
        let (realm, shared) = self.sim.add_preset(preset, carrier)?;
        if let Some(c) = shared {
            let n = match self.carrier {
                Some((old, n)) if old == c => n + 1,
                _ => 1,
            };
            self.carrier = Some((c, n));
        }
        Ok(realm)
    }

    fn build(
        &mut self,
        progress: &mut dyn FnMut(&Progress),
        wall: WallInstant,
    ) -> Result<(), ScenarioError> {
        let b = self.cfg.bootstrappers.max(1);
        for i in 0..b {
            let spec = if i == 0 {
                let ip = self
                    .sim
                    .net()
                    .peek_ip(RealmId::INTERNET)
                    .ok_or(NetError::AddressesExhausted(0))?;
                NodeSpec {
                    bootstrap: Vec::new(),
                    bootstrapper: Some(SocketAddrV4::new(ip, SERVER_PORT)),
                    persistence: Persistence::Persistent,
                }
            } else {
                NodeSpec {
                    bootstrap: self.boot.clone(),
                    bootstrapper: None,
                    persistence: Persistence::Persistent,
                }
            };
            let h = self
                .workload
                .spawn(&mut self.sim, RealmId::INTERNET, &spec)?;
            self.hosts.push(HostInfo {
                preset: NatPreset::Open,
                bootstrapper: true,
            });
            let addr = self
                .sim
                .socket_addr(h, crate::network::SocketId(0))
                .ok_or(NetError::NoSuchSocket(0))?;
            self.boot.push(addr);
            self.run_for(Duration::from_secs(2));
        }
        let joining = self.cfg.nodes - b;
        let step = (joining / 10).max(1);
        for i in 0..joining {
            let preset = self.cfg.nat.pick(self.sim.rng());
            let realm = self.place(preset)?;
            let spec = self.spec();
            self.workload.spawn(&mut self.sim, realm, &spec)?;
            self.hosts.push(HostInfo {
                preset,
                bootstrapper: false,
            });
            if (i + 1) % self.cfg.join_batch.max(1) == 0 || i + 1 == joining {
                self.run_for(self.cfg.join_interval);
            }
            if (i + 1) % step == 0 || i + 1 == joining {
                self.emit(progress, "join", i + 1, joining, wall);
            }
        }
        Ok(())
    }

    fn settle(&mut self, progress: &mut dyn FnMut(&Progress), wall: WallInstant) {
        self.run_for(self.cfg.settle);
        self.emit(progress, "settle", 1, 1, wall);
    }

    fn snapshot(&self) -> Snapshot {
        let n = self.sim.len();
        let (mut boot, mut persistent, mut firewalled, mut correct) = (0, 0, 0, 0);
        let mut sizes = Vec::with_capacity(n);
        let mut ids: Vec<NodeId> = Vec::new();
        for h in 0..n {
            let Some(node) = self.sim.try_node(h) else {
                continue;
            };
            boot += usize::from(node.is_bootstrapped());
            firewalled += usize::from(node.is_firewalled());
            if let Some(id) = node.routing_id() {
                persistent += 1;
                ids.push(id);
            }
            sizes.push(node.table_ids().len() as f64);
            let open = self.preset(h) == Some(NatPreset::Open);
            let expected_persistent = open && self.cfg.persistence != Persistence::Ephemeral;
            let ok = if expected_persistent {
                // Adaptive nodes become persistent only after ~20 minutes.
                !node.is_firewalled()
                    && (!node.is_ephemeral() || self.cfg.persistence == Persistence::Adaptive)
            } else {
                node.is_ephemeral() && (open || node.is_firewalled())
            };
            correct += usize::from(ok);
        }
        ids.sort();
        // Convergence: of each sampled persistent node's k closest persistent peers, the
        // fraction its table holds.
        let sample = self.cfg.convergence_sample.min(n);
        let mut recall = Vec::new();
        let stride = (n / sample.max(1)).max(1);
        for h in (0..n).step_by(stride).take(sample) {
            let Some(node) = self.sim.try_node(h) else {
                continue;
            };
            let Some(own) = node.routing_id() else {
                continue;
            };
            let mut others: Vec<NodeId> = ids.iter().copied().filter(|x| *x != own).collect();
            others.sort_by(|a, b| own.cmp_distance(a, b));
            others.truncate(hdht_core::rpc::K);
            if others.is_empty() {
                continue;
            }
            let table: std::collections::BTreeSet<NodeId> = node.table_ids().into_iter().collect();
            let have = others.iter().filter(|x| table.contains(x)).count();
            recall.push(have as f64 / others.len() as f64);
        }
        Snapshot {
            bootstrapped: boot as f64 / n.max(1) as f64,
            persistent,
            firewalled,
            classification: correct as f64 / n.max(1) as f64,
            table_size: Percentiles::of(&sizes),
            convergence: if recall.is_empty() {
                0.0
            } else {
                recall.iter().sum::<f64>() / recall.len() as f64
            },
        }
    }

    /// `n` copies of `action` at uniform random offsets in `window` from now, sorted.
    fn spread(&mut self, n: usize, action: Action, window: Duration) -> Vec<(Instant, Action)> {
        let start = self.sim.now();
        let w = u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut v: Vec<(Instant, Action)> = (0..n)
            .map(|_| {
                (
                    start + Duration::from_micros(self.sim.rng().next_u64() % w),
                    action,
                )
            })
            .collect();
        v.sort_by_key(|a| a.0);
        v
    }

    fn announce_phase(&mut self, progress: &mut dyn FnMut(&Progress), wall: WallInstant) {
        let actions = self.spread(
            self.cfg.announces,
            Action::Announce,
            Duration::from_secs(10),
        );
        self.timeline("announce", actions, progress, wall);
    }

    fn partition_phase(&mut self, progress: &mut dyn FnMut(&Progress), wall: WallInstant) {
        let mut side = Vec::new();
        for h in 0..self.sim.len() {
            if self.sim.rng().next_u32() & 1 == 0 {
                side.push(h);
            }
        }
        self.sim.partition(&[&side]);
        self.emit(progress, "partition", 0, 1, wall);
        let window = self
            .cfg
            .partition_for
            .saturating_sub(self.cfg.drain)
            .max(Duration::from_secs(1));
        let actions = self.spread(
            self.cfg.lookups,
            Action::Lookup {
                during_partition: true,
            },
            window,
        );
        let end = self.sim.now() + self.cfg.partition_for;
        self.timeline_until("partition", actions, end, progress, wall);
        self.sim.heal();
        self.run_for(self.cfg.settle);
        self.emit(progress, "heal", 1, 1, wall);
    }

    fn timeline(
        &mut self,
        phase: &'static str,
        actions: Vec<(Instant, Action)>,
        progress: &mut dyn FnMut(&Progress),
        wall: WallInstant,
    ) {
        let end = actions.last().map_or(self.sim.now(), |a| a.0) + self.cfg.drain;
        self.timeline_until(phase, actions, end, progress, wall);
    }

    /// Runs `actions` at their times, then the network until `end`; later actions (restarts)
    /// may be added on the way.
    fn timeline_until(
        &mut self,
        phase: &'static str,
        actions: Vec<(Instant, Action)>,
        end: Instant,
        progress: &mut dyn FnMut(&Progress),
        wall: WallInstant,
    ) {
        let mut queue: BTreeMap<(Instant, u64), Action> = BTreeMap::new();
        for (i, (t, a)) in actions.into_iter().enumerate() {
            queue.insert((t, i as u64), a);
        }
        let total = queue.len();
        let step = (total / 10).max(1);
        let mut seq = total as u64;
        let mut n = 0;
        while let Some(((t, _), a)) = queue.pop_first() {
            self.run_until(t);
            if let Some(later) = self.act(a) {
                seq += 1;
                queue.insert((later.0, seq), later.1);
            }
            n += 1;
            if n % step == 0 {
                self.emit(progress, phase, n.min(total), total, wall);
            }
        }
        let end = end.max(self.sim.now());
        self.run_until(end);
    }

    fn new_op(&mut self, kind: OpKind) -> OpId {
        self.next_op += 1;
        let op = OpId(self.next_op);
        self.ops.insert(
            op,
            OpInfo {
                kind,
                started: self.sim.now(),
            },
        );
        op
    }

    /// A random live, bootstrapped host (optionally persistent, optionally not `except`).
    fn pick_host(&mut self, persistent: bool, except: Option<HostId>) -> Option<HostId> {
        let n = self.sim.len();
        if n == 0 {
            return None;
        }
        let start = (self.sim.rng().next_u64() % n as u64) as usize;
        (0..n).map(|i| (start + i) % n).find(|&h| {
            Some(h) != except
                && self.sim.is_alive(h)
                && self.sim.try_node(h).is_some_and(|x| {
                    x.is_bootstrapped() && (!persistent || x.routing_id().is_some())
                })
        })
    }

    fn random_key(&mut self) -> NodeId {
        let mut k = [0u8; 32];
        self.sim.rng().fill_bytes(&mut k);
        NodeId(k)
    }

    fn act(&mut self, a: Action) -> Option<(Instant, Action)> {
        match a {
            Action::Announce => {
                let h = self.pick_host(false, None)?;
                let key = self.random_key();
                self.keys.push(key);
                let op = self.new_op(OpKind::Announce);
                self.workload.announce(&mut self.sim, h, key, op);
            }
            Action::Lookup { during_partition } => {
                if self.keys.is_empty() {
                    return None;
                }
                let h = self.pick_host(false, None)?;
                let key = self.keys[(self.sim.rng().next_u64() % self.keys.len() as u64) as usize];
                let op = self.new_op(if during_partition {
                    OpKind::PartitionLookup
                } else {
                    OpKind::Lookup
                });
                self.workload.lookup(&mut self.sim, h, key, op);
            }
            Action::NodeLookup => {
                let target = self.pick_host(true, None)?;
                let h = self.pick_host(false, Some(target))?;
                let id = self.sim.try_node(target)?.routing_id()?;
                let op = self.new_op(OpKind::NodeLookup { target });
                self.workload.find_node(&mut self.sim, h, id, op);
            }
            Action::Crash => {
                let n = self.sim.len();
                let start = (self.sim.rng().next_u64() % n as u64) as usize;
                let h = (0..n)
                    .map(|i| (start + i) % n)
                    .find(|&h| !self.is_bootstrapper(h) && self.sim.is_alive(h))?;
                let _ = self.sim.crash(h);
                self.workload.on_crash(h);
                self.report.crashed += 1;
                let new_address = self.sim.rng().next_u32() & 1 == 1;
                return Some((
                    self.sim.now() + self.cfg.restart_after,
                    Action::Restart {
                        host: h,
                        new_address,
                    },
                ));
            }
            Action::Restart { host, new_address } => {
                let spec = self.spec();
                let _ = self
                    .workload
                    .restart(&mut self.sim, host, new_address, &spec);
            }
        }
        None
    }
}

struct Snapshot {
    bootstrapped: f64,
    persistent: usize,
    firewalled: usize,
    classification: f64,
    table_size: Percentiles,
    convergence: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_mixes_parse() {
        for k in ScenarioKind::ALL {
            assert_eq!(k.name().parse::<ScenarioKind>(), Ok(k));
        }
        assert!("nope".parse::<ScenarioKind>().is_err());
        let m: NatMix = "open:7,symmetric:3".parse().unwrap();
        assert_eq!(
            m.parts(),
            &[(NatPreset::Open, 7), (NatPreset::Symmetric, 3)]
        );
        assert_eq!(m.to_string(), "open:7,symmetric:3");
        assert_eq!("cgnat".parse::<NatMix>().unwrap().to_string(), "cgnat");
        assert!("open:x".parse::<NatMix>().is_err());
        assert!("moon".parse::<NatMix>().is_err());
    }

    #[test]
    fn mix_weights_are_respected() {
        let m = NatMix::weighted(&[(NatPreset::Open, 3), (NatPreset::Symmetric, 1)]);
        let mut rng = <rand_chacha::ChaCha8Rng as rand_core::SeedableRng>::seed_from_u64(1);
        let open = (0..4000)
            .filter(|_| m.pick(&mut rng) == NatPreset::Open)
            .count();
        assert!((2800..3200).contains(&open), "{open}");
    }

    #[test]
    fn bad_options_are_typed_errors() {
        let mut c = ScenarioConfig::new(ScenarioKind::Lookup, 2, 1);
        assert_eq!(
            c.validate(),
            Err(ScenarioError::TooFewNodes { min: 4, got: 2 })
        );
        c.nodes = 10;
        c.loss = 1.5;
        assert!(matches!(
            c.validate(),
            Err(ScenarioError::BadFraction { name: "loss", .. })
        ));
    }
}
