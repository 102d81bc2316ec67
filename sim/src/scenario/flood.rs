//! `flood`: node lookups under a valid-id flood (issue 17), with adaptive timeouts and with
//! the reference's fixed 1 s × retries, from the same seed.
//!
//! The network: `nodes` open, persistent dht-rpc nodes on a WAN link. It settles; a set of
//! FIND_NODE lookups (random persistent targets from random nodes) is timed: the unloaded
//! figures. Then the attack joins and the same lookups (same sources, same targets) run again:
//! - `liars`: nodes with valid ids (`H(ip:port)` of their own address) that introduce
//!   themselves to every node they hear of, answer pings, and answer every request that has
//!   a target with k closer nodes they ground to be close to it: valid-looking `ip:port`s on
//!   addresses where nothing ever answers;
//! - `silent`: ordinary nodes that join, get into routing tables, then go silent.
//!
//! Everything derives from the seed. The summary line is JSON (see [`FloodReport::to_json_line`]).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdht_core::rpc::{
    NodeId, Persistence, QueryId, RpcConfig, RpcEvent, RpcNode, SocketKind, FIND_NODE, K,
};
use hdht_core::wire::{Message, Request, Response};
use hdht_core::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use super::{Percentiles, ScenarioError};
use crate::app::{App, Datagram};
use crate::engine::{Engine, HostSetup};
use crate::link::LinkModel;
use crate::network::{DropReason, HostId, NetError, RealmId, SocketId};
use crate::rpc::{rpc_socket_id, SERVER_PORT};

/// Addresses liars hand out: a block the simulated internet never numbers (16.0.0.0/4 is
/// its range), so nothing there ever answers.
const DEAD_BLOCK: u32 = 0x2800_0000; // 40.0.0.0/8
/// Random addresses a liar tries per reply to find k close to the target.
const GRIND: usize = 256;
/// How often a liar introduces itself to nodes it heard of.
const LIAR_INTERVAL: Duration = Duration::from_secs(2);

/// Options of a flood run.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// Honest nodes (3 of them bootstrap the network).
    pub nodes: usize,
    /// Lying nodes.
    pub liars: usize,
    /// Nodes that join, then go silent.
    pub silent: usize,
    /// Lookups timed (each before and during the attack).
    pub lookups: usize,
    /// The seed.
    pub seed: u64,
}

impl FloodConfig {
    /// Defaults: 300 nodes, 30 liars, 60 silent joiners, 100 lookups.
    pub fn new(seed: u64) -> Self {
        FloodConfig {
            nodes: 300,
            liars: 30,
            silent: 60,
            lookups: 100,
            seed,
        }
    }
}

/// One mode's figures.
#[derive(Debug, Clone)]
pub struct FloodRun {
    /// Adaptive timeouts on.
    pub adaptive: bool,
    /// Lookup latency before the attack, ms.
    pub unloaded: Percentiles,
    /// Lookup latency during the attack, ms.
    pub flooded: Percentiles,
    /// Lookups that did not finish (either phase).
    pub unfinished: usize,
    /// Lookups before the attack whose target answered among the k closest.
    pub found_unloaded: usize,
    /// Lookups during the attack whose target answered among the k closest.
    pub found_flooded: usize,
    /// Datagrams sent, during the attack's lookups, to addresses where nothing answers (no
    /// host there, or a silent node's closed port) — by every node, background work included.
    pub dead_sends: u64,
}

impl FloodRun {
    /// Flooded median over unloaded median.
    pub fn ratio_p50(&self) -> f64 {
        self.flooded.p50 / self.unloaded.p50.max(1e-9)
    }

    /// Flooded p90 over unloaded p90.
    pub fn ratio_p90(&self) -> f64 {
        self.flooded.p90 / self.unloaded.p90.max(1e-9)
    }

    fn json(&self) -> String {
        let p = |x: &Percentiles| {
            format!(
                "{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"max\":{:.1},\"count\":{}}}",
                x.p50, x.p90, x.p99, x.max, x.count
            )
        };
        format!(
            "{{\"unloadedMs\":{},\"floodedMs\":{},\"ratioP50\":{:.2},\"ratioP90\":{:.2},\"unfinished\":{},\"foundUnloaded\":{},\"foundFlooded\":{},\"deadSends\":{}}}",
            p(&self.unloaded),
            p(&self.flooded),
            self.ratio_p50(),
            self.ratio_p90(),
            self.unfinished,
            self.found_unloaded,
            self.found_flooded,
            self.dead_sends
        )
    }
}

/// Both modes from one seed.
#[derive(Debug, Clone)]
pub struct FloodReport {
    /// The options.
    pub cfg: FloodConfig,
    /// Adaptive timeouts (this implementation's default).
    pub adaptive: FloodRun,
    /// The reference's timing (fixed 1 s per transmission, no settling on stalled visits).
    pub reference: FloodRun,
}

impl FloodReport {
    /// One JSON object: `scenario`, `nodes`, `liars`, `silent`, `lookups`, `seed`, then
    /// `adaptive` and `reference`, each with `unloadedMs` and `floodedMs` percentiles,
    /// `ratioP50`, `ratioP90`, `unfinished`, `foundUnloaded`, `foundFlooded` (lookups whose
    /// target answered among the k closest) and `deadSends`.
    pub fn to_json_line(&self) -> String {
        format!(
            "{{\"scenario\":\"flood\",\"nodes\":{},\"liars\":{},\"silent\":{},\"lookups\":{},\"seed\":{},\"adaptive\":{},\"reference\":{}}}",
            self.cfg.nodes,
            self.cfg.liars,
            self.cfg.silent,
            self.cfg.lookups,
            self.cfg.seed,
            self.adaptive.json(),
            self.reference.json()
        )
    }
}

/// Runs the scenario twice from the same seed: adaptive timeouts on, then off.
pub fn run_flood(cfg: &FloodConfig) -> Result<FloodReport, ScenarioError> {
    if cfg.nodes < 10 {
        return Err(ScenarioError::TooFewNodes {
            min: 10,
            got: cfg.nodes,
        });
    }
    Ok(FloodReport {
        cfg: cfg.clone(),
        adaptive: run_one(cfg, true)?,
        reference: run_one(cfg, false)?,
    })
}

/// A host of the flood scenario.
#[allow(clippy::large_enum_variant)]
pub enum FloodApp {
    /// An ordinary dht-rpc node.
    Honest(RpcNode<ChaCha8Rng>),
    /// A lying node.
    Liar(Liar),
}

/// A node that answers with k unresponsive, valid-looking closer nodes.
pub struct Liar {
    id: NodeId,
    rng: ChaCha8Rng,
    out: VecDeque<Datagram>,
    known: Vec<SocketAddrV4>,
    next: Instant,
    tid: u16,
    dead: bool,
}

impl Liar {
    fn new(addr: SocketAddrV4, boot: Vec<SocketAddrV4>, seed: u64, now: Instant) -> Self {
        Liar {
            id: NodeId::from_addr(&addr),
            rng: ChaCha8Rng::seed_from_u64(seed),
            out: VecDeque::new(),
            known: boot,
            next: now,
            tid: 0,
            dead: false,
        }
    }

    /// k addresses in the dead block whose ids are closest to `target` among [`GRIND`] tries.
    fn fabricate(&mut self, target: &NodeId) -> Vec<SocketAddrV4> {
        let mut c: Vec<(NodeId, SocketAddrV4)> = (0..GRIND)
            .map(|_| {
                let ip = DEAD_BLOCK | (self.rng.next_u32() & 0x00ff_ffff);
                let port = 1024 + (self.rng.next_u32() % 60_000) as u16;
                let a = SocketAddrV4::new(Ipv4Addr::from(ip), port);
                (NodeId::from_addr(&a), a)
            })
            .collect();
        c.sort_by(|x, y| target.cmp_distance(&x.0, &y.0));
        c.into_iter().take(K).map(|x| x.1).collect()
    }

    fn send(&mut self, to: SocketAddrV4, payload: Vec<u8>) {
        self.out.push_back(Datagram {
            socket: SocketId(0),
            to,
            payload,
            ttl: None,
        });
    }
}

impl App for FloodApp {
    type Event = RpcEvent;

    fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        match self {
            FloodApp::Honest(n) => App::handle_datagram(n, now, socket, from, bytes),
            FloodApp::Liar(l) => match Message::decode(bytes) {
                Ok(Message::Request(req)) => {
                    let closer_nodes = match req.target {
                        Some(t) => l.fabricate(&NodeId(t)),
                        None => Vec::new(),
                    };
                    let res = Response {
                        tid: req.tid,
                        to: from,
                        id: Some(l.id.0),
                        token: None,
                        closer_nodes,
                        error: 0,
                        value: None,
                    };
                    l.send(from, res.to_bytes());
                    if !l.known.contains(&from) && l.known.len() < 1024 {
                        l.known.push(from);
                    }
                }
                Ok(Message::Response(res)) => {
                    for a in res.closer_nodes {
                        if !l.known.contains(&a) && l.known.len() < 1024 {
                            l.known.push(a);
                        }
                    }
                }
                Err(_) => {}
            },
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            FloodApp::Honest(n) => RpcNode::handle_timeout(n, now),
            FloodApp::Liar(l) => {
                if now < l.next || l.dead {
                    return;
                }
                l.next = now + LIAR_INTERVAL;
                // Introduce ourselves (a request with our valid id puts us in tables) to a
                // few nodes we heard of, asking for nodes near us to hear of more.
                for _ in 0..4 {
                    if l.known.is_empty() {
                        break;
                    }
                    let to = l.known[(l.rng.next_u32() as usize) % l.known.len()];
                    l.tid = l.tid.wrapping_add(1);
                    let req = Request {
                        tid: l.tid,
                        to,
                        id: Some(l.id.0),
                        token: None,
                        internal: true,
                        command: FIND_NODE,
                        target: Some(l.id.0),
                        value: None,
                    };
                    l.send(to, req.to_bytes());
                }
            }
        }
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram> {
        match self {
            FloodApp::Honest(n) => App::poll_transmit(n, now),
            FloodApp::Liar(l) => l.out.pop_front(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            FloodApp::Honest(n) => RpcNode::poll_timeout(n),
            FloodApp::Liar(l) => (!l.dead).then_some(l.next),
        }
    }

    fn poll_event(&mut self) -> Option<RpcEvent> {
        match self {
            FloodApp::Honest(n) => RpcNode::poll_event(n),
            FloodApp::Liar(_) => None,
        }
    }

    fn crash(&mut self) {
        match self {
            FloodApp::Honest(n) => n.destroy(),
            FloodApp::Liar(l) => {
                l.dead = true;
                l.out.clear();
            }
        }
    }
}

fn honest(s: &mut HostSetup<'_>, mut rpc: RpcConfig) -> Result<FloodApp, NetError> {
    rpc.server_port = SERVER_PORT;
    rpc.ip_limits = None;
    let server = s.bind(SERVER_PORT)?;
    let client = s.bind(0)?;
    debug_assert_eq!(
        (server, client),
        (
            rpc_socket_id(SocketKind::Server),
            rpc_socket_id(SocketKind::Client)
        )
    );
    let rng = ChaCha8Rng::seed_from_u64(s.seed());
    Ok(FloodApp::Honest(RpcNode::new(rpc, rng, s.now())))
}

fn node_cfg(boot: &[SocketAddrV4], adaptive: bool) -> RpcConfig {
    RpcConfig {
        bootstrap: boot.to_vec(),
        persistence: Persistence::Persistent,
        adaptive_timeouts: adaptive,
        ..RpcConfig::default()
    }
}

fn server_addr(sim: &Engine<FloodApp>, h: HostId) -> Result<SocketAddrV4, NetError> {
    sim.socket_addr(h, SocketId(0))
        .ok_or(NetError::NoSuchSocket(0))
}

/// Times `plan`'s lookups (started one every 200 ms); returns latencies in ms, how many did
/// not finish within a minute, and how many had their target among the closest replies.
fn time_lookups(sim: &mut Engine<FloodApp>, plan: &[(HostId, NodeId)]) -> (Vec<f64>, usize, usize) {
    let mut started: Vec<(HostId, QueryId, Instant, NodeId)> = Vec::new();
    let mut done: Vec<(HostId, QueryId, Instant, Vec<NodeId>)> = Vec::new();
    let mut finished: Vec<f64> = Vec::new();
    for &(h, target) in plan {
        let q = sim.try_with_node(h, |app, now| match app {
            FloodApp::Honest(n) => Some(n.find_node(now, target)),
            FloodApp::Liar(_) => None,
        });
        if let Some(Some(q)) = q {
            started.push((h, q, sim.now(), target));
        }
        let mut record = |sim: &mut Engine<FloodApp>, h: HostId, ev: RpcEvent| {
            if let RpcEvent::QueryDone { query, result } = ev {
                let ids = result
                    .map(|r| r.closest_replies.iter().filter_map(|x| x.from_id).collect())
                    .unwrap_or_default();
                done.push((h, query, sim.now(), ids));
            }
        };
        sim.run_for_with(Duration::from_millis(200), &mut record);
    }
    let deadline = sim.now() + Duration::from_secs(60);
    while sim.now() < deadline
        && !started
            .iter()
            .all(|s| done.iter().any(|d| d.0 == s.0 && d.1 == s.1))
    {
        let mut record = |sim: &mut Engine<FloodApp>, h: HostId, ev: RpcEvent| {
            if let RpcEvent::QueryDone { query, result } = ev {
                let ids = result
                    .map(|r| r.closest_replies.iter().filter_map(|x| x.from_id).collect())
                    .unwrap_or_default();
                done.push((h, query, sim.now(), ids));
            }
        };
        sim.run_for_with(Duration::from_millis(100), &mut record);
    }
    let (mut unfinished, mut found) = (0, 0);
    for (h, q, at, target) in &started {
        match done.iter().find(|d| d.0 == *h && d.1 == *q) {
            Some(d) => {
                finished.push(d.2.saturating_duration_since(*at).as_secs_f64() * 1000.0);
                found += usize::from(d.3.contains(target));
            }
            None => unfinished += 1,
        }
    }
    (finished, unfinished, found)
}

fn run_one(cfg: &FloodConfig, adaptive: bool) -> Result<FloodRun, ScenarioError> {
    let link = LinkModel::wan(
        Duration::from_millis(20),
        Duration::from_millis(40),
        Duration::from_millis(10),
    );
    let mut sim: Engine<FloodApp> = Engine::new(cfg.seed, link);
    let mut ignore = |_: &mut Engine<FloodApp>, _: HostId, _: RpcEvent| {};
    // Bootstrappers, then the honest nodes.
    let mut boot = Vec::new();
    for i in 0..3 {
        let ip = sim
            .net()
            .peek_ip(RealmId::INTERNET)
            .ok_or(NetError::AddressesExhausted(0))?;
        let rpc = if i == 0 {
            RpcConfig {
                adaptive_timeouts: adaptive,
                ..RpcConfig::bootstrapper(SocketAddrV4::new(ip, SERVER_PORT))
            }
        } else {
            node_cfg(&boot, adaptive)
        };
        let h = sim.spawn(RealmId::INTERNET, |s| honest(s, rpc))?;
        boot.push(server_addr(&sim, h)?);
        sim.run_for_with(Duration::from_secs(2), &mut ignore);
    }
    for _ in 3..cfg.nodes {
        let rpc = node_cfg(&boot, adaptive);
        sim.spawn(RealmId::INTERNET, |s| honest(s, rpc))?;
        sim.run_for_with(Duration::from_millis(20), &mut ignore);
    }
    sim.run_for_with(Duration::from_secs(60), &mut ignore);
    // The plan: random sources looking up random persistent targets.
    let honest_hosts = cfg.nodes;
    let mut plan = Vec::with_capacity(cfg.lookups);
    while plan.len() < cfg.lookups {
        let from = (sim.rng().next_u64() % honest_hosts as u64) as usize;
        let to = (sim.rng().next_u64() % honest_hosts as u64) as usize;
        if from == to {
            continue;
        }
        let Some(target) = sim.try_node(to).and_then(|a| match a {
            FloodApp::Honest(n) => n.id(),
            FloodApp::Liar(_) => None,
        }) else {
            continue;
        };
        plan.push((from, target));
    }
    let (unloaded, unfinished_before, found_before) = time_lookups(&mut sim, &plan);
    // The attack: silent joiners, liars, 30 s to spread, the silent ones go quiet.
    let mut silent = Vec::new();
    for _ in 0..cfg.silent {
        let rpc = node_cfg(&boot, adaptive);
        silent.push(sim.spawn(RealmId::INTERNET, |s| honest(s, rpc))?);
        sim.run_for_with(Duration::from_millis(20), &mut ignore);
    }
    for _ in 0..cfg.liars {
        let b = boot.clone();
        sim.spawn(RealmId::INTERNET, |s| {
            let sock = s.bind(SERVER_PORT)?;
            let addr = s.local_addr(sock).ok_or(NetError::NoSuchSocket(0))?;
            let seed = s.seed();
            Ok(FloodApp::Liar(Liar::new(addr, b, seed, s.now())))
        })?;
        sim.run_for_with(Duration::from_millis(20), &mut ignore);
    }
    sim.run_for_with(Duration::from_secs(30), &mut ignore);
    for h in silent {
        let _ = sim.crash(h);
    }
    let nowhere = |sim: &Engine<FloodApp>| {
        let st = sim.stats();
        st.dropped(DropReason::NoRoute) + st.dropped(DropReason::PortUnreachable)
    };
    let before = nowhere(&sim);
    let (flooded, unfinished_after, found_after) = time_lookups(&mut sim, &plan);
    let dead_sends = nowhere(&sim) - before;
    Ok(FloodRun {
        adaptive,
        unloaded: Percentiles::of(&unloaded),
        flooded: Percentiles::of(&flooded),
        unfinished: unfinished_before + unfinished_after,
        found_unloaded: found_before,
        found_flooded: found_after,
        dead_sends,
    })
}
