//! The holepunch scenario and the NAT matrix: two hyperdht nodes behind NAT presets connect by
//! public key across a public DHT — the entry point of `hdht sim holepunch-matrix`.
//!
//! One run ([`run_holepunch`]) is an independent deterministic simulation:
//!
//! 1. a public DHT: one bootstrapper and `public_nodes - 1` open, persistent nodes joining it
//!    on a clean link, until every one is bootstrapped and reachable;
//! 2. the link turns lossy (`loss`); a *server* host behind a fresh NAT of preset `server` (its
//!    own realm) bootstraps, then `create_server` + `listen(key pair)`, and announces until
//!    `Listening`;
//! 3. a *client* host behind a fresh NAT of preset `client` bootstraps, then `connect`s to the
//!    server's public key. The result is the time from `connect` to [`ConnectEvent::Open`], or
//!    the error of [`ConnectEvent::Failed`] (or a timeout).
//!
//! Both key pairs come from the run's RNG; the client and the server sit behind separate NAT
//! boxes (two `cgnat` hosts get two carriers), so they never share a public address and the
//! LAN shortcut does not apply. The matrix ([`run_matrix`]) runs every (client preset, server
//! preset) pair for seeds `seed, seed + 1, …` — the same seeds for every pair, so seed `s`
//! builds the same public DHT in every cell — spread over worker threads; each run depends on
//! its seed alone, so the report does not depend on the number of threads.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant as WallInstant};

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use hdht_core::connect::ConnectError;
use hdht_core::crypto::KeyPair;
use hdht_core::dht::{ConnId, ConnectEvent, ConnectOptions, DhtEvent, RelayPath, ServerOptions};
use hdht_core::relay::{RelayLimits, RelaySelector};
use hdht_core::rpc::{Persistence, RpcConfig};
use hdht_core::Instant;

use crate::dht::{DhtHost, DhtNodeConfig, DhtSim};
use crate::engine::{Engine, Handler, NetStats, Tap};
use crate::link::LinkModel;
use crate::nat::NatPreset;
use crate::network::{HostId, RealmId};
use crate::trace::TraceHash;

use super::report::{Json, Percentiles};
use super::ScenarioError;

/// Options of one holepunch run.
#[derive(Debug, Clone)]
pub struct HolepunchConfig {
    /// The connecting side's NAT.
    pub client: NatPreset,
    /// The listening side's NAT.
    pub server: NatPreset,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Open nodes of the public DHT (the bootstrapper included).
    pub public_nodes: usize,
    /// How many public nodes the server and the client bootstrap from.
    pub bootstrap_nodes: usize,
    /// Round-trip time across the Internet (one way = half).
    pub rtt: Duration,
    /// Uniform extra one-way delay per datagram in `[0, jitter)`.
    pub jitter: Duration,
    /// Datagram loss once the public DHT exists (server and client phases).
    pub loss: f64,
    /// Time between two public nodes joining.
    pub join_interval: Duration,
    /// Longest wait for the public DHT to settle.
    pub settle_timeout: Duration,
    /// Longest wait for a host to bootstrap.
    pub ready_timeout: Duration,
    /// Longest wait for the server's `Listening`.
    pub listen_timeout: Duration,
    /// Longest wait for the connect's outcome.
    pub connect_timeout: Duration,
    /// Run a blind relay on one more public node and have the server name it
    /// (`relayThrough`): a random × random pair connects through it, and a pair that can punch
    /// moves to the direct path. The run then also sends [`RELAY_PROBE_BYTES`] from the client,
    /// half at once and half after [`RELAY_SETTLE`], and checks the server reads them all.
    pub relay: bool,
    /// The server's `randomPunchInterval` with `deferRandomPunch` (the spacing clock starts
    /// when it listens): a random punch asked of it within the interval is answered TRY_LATER
    /// (with a relay) and the client asks again 10–20 s later. `None`: the defaults, no defer.
    pub server_defers_random_punch: Option<Duration>,
    /// A relay run: the relay behind this NAT (then firewalled: every relay connection
    /// punches to it, and its random-punch throttle answers the later ones TRY_LATER).
    /// `None`: on an open node.
    pub relay_nat: Option<NatPreset>,
    /// A relay run: the server names the relay (default true).
    pub server_names_relay: bool,
    /// A relay run: the relay the client names in its connect (`None`: none, the default).
    pub client_relay: Option<ClientRelay>,
    /// A relay run: after the first connection carried its bytes, both sides end it and the
    /// client connects to the same server again ([`HolepunchRun::second`]).
    pub second_connect: Option<SecondConnect>,
}

/// How a relay run's second connect follows the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondConnect {
    /// Right after the first connection ended (its pairing released): the relay sessions
    /// both sides hold are warm.
    Warm,
    /// The same, but the client's relay session is destroyed first (a failed session).
    SessionFailed,
}

/// A relay run's second connect to the same server.
#[derive(Debug, Clone)]
pub struct SecondRun {
    /// Relayed pairs the relay held once the first connection ended and its pairing was
    /// released (before the second connect).
    pub relay_pairs_between: u64,
    /// The client's relay sessions `(all, idle)` then.
    pub client_sessions_between: (usize, usize),
    /// Time from the second `connect` to `Open`, or why there was none.
    pub outcome: Result<Duration, HolepunchFailure>,
    /// The second connection's relay path at `Open`.
    pub relay_path: Option<RelayPath>,
    /// Time from the second `connect` to the server reading its first byte.
    pub first_byte: Option<Duration>,
}

/// The relay a relay run's client names (`relayThrough` on its connect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRelay {
    /// The run's relay.
    TheRelay,
    /// A key no node serves (its relay connection fails).
    Nobody,
}

/// Bytes the client sends in a relay run (after the path settled), checked on the server.
pub const RELAY_PROBE_BYTES: usize = 64 * 1024;
/// How long a relay run waits (between its two halves of bytes) for a punch to move the
/// stream to a direct path.
pub const RELAY_SETTLE: Duration = Duration::from_secs(20);

impl HolepunchConfig {
    /// Defaults: 24 public nodes, 50 ms RTT, no jitter, 1% loss, 60 s to connect.
    pub fn new(client: NatPreset, server: NatPreset, seed: u64) -> Self {
        HolepunchConfig {
            client,
            server,
            seed,
            public_nodes: 24,
            bootstrap_nodes: 3,
            rtt: Duration::from_millis(50),
            jitter: Duration::ZERO,
            loss: 0.01,
            join_interval: Duration::from_millis(10),
            settle_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(30),
            listen_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(60),
            relay: false,
            server_defers_random_punch: None,
            relay_nat: None,
            server_names_relay: true,
            client_relay: None,
            second_connect: None,
        }
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<(), ScenarioError> {
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

    /// The link model: `rtt / 2` one way, `jitter`, no loss (set per phase).
    pub fn link(&self) -> LinkModel {
        LinkModel {
            latency: self.rtt / 2,
            jitter: self.jitter,
            access: Duration::ZERO,
            loss: 0.0,
            ..LinkModel::default()
        }
    }
}

/// Why a run did not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolepunchFailure {
    /// The client's connect failed with this error.
    Connect(ConnectError),
    /// The public DHT did not settle in time.
    PublicDhtNotReady,
    /// The server host did not bootstrap in time.
    ServerNotReady,
    /// The server did not report `Listening` in time.
    ListenTimeout,
    /// `listen` itself failed.
    Listen(ConnectError),
    /// The client host did not bootstrap in time.
    ClientNotReady,
    /// Neither `Open` nor `Failed` arrived in time.
    ConnectTimeout,
    /// Building the network failed.
    Net(String),
    /// A relay run's bytes did not all arrive, in order.
    RelayData,
}

impl HolepunchFailure {
    /// A short upper-case name: the reference's error code for connect errors.
    pub fn name(&self) -> &'static str {
        match self {
            HolepunchFailure::Connect(e) => e.code(),
            HolepunchFailure::PublicDhtNotReady => "PUBLIC_DHT_NOT_READY",
            HolepunchFailure::ServerNotReady => "SERVER_NOT_READY",
            HolepunchFailure::ListenTimeout => "LISTEN_TIMEOUT",
            HolepunchFailure::Listen(_) => "LISTEN_FAILED",
            HolepunchFailure::ClientNotReady => "CLIENT_NOT_READY",
            HolepunchFailure::ConnectTimeout => "CONNECT_TIMEOUT",
            HolepunchFailure::Net(_) => "NETWORK_SETUP_FAILED",
            HolepunchFailure::RelayData => "RELAY_DATA_MISMATCH",
        }
    }
}

impl fmt::Display for HolepunchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HolepunchFailure::Connect(e) => write!(f, "{e}"),
            HolepunchFailure::Listen(e) => write!(f, "listen: {e}"),
            HolepunchFailure::Net(e) => write!(f, "network: {e}"),
            other => f.write_str(other.name()),
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct HolepunchRun {
    /// The client's preset.
    pub client: NatPreset,
    /// The server's preset.
    pub server: NatPreset,
    /// The run's seed.
    pub seed: u64,
    /// Time from `connect` to `Open`, or why there was no connection.
    pub outcome: Result<Duration, HolepunchFailure>,
    /// Time from `connect` to the outcome (`Open`, `Failed` or the timeout); `None` if the
    /// run never got to `connect`.
    pub elapsed: Option<Duration>,
    /// Time from `listen` to `Listening`.
    pub listen_time: Option<Duration>,
    /// Pool sockets the client and the server bound.
    pub pool_binds: (u64, u64),
    /// Hash over every delivered datagram.
    pub trace_hash: TraceHash,
    /// Datagram counters.
    pub net: NetStats,
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated.
    pub sim_time: Duration,
    /// A relay run: the client connection's relay path at `Open` and after the settle time.
    pub relay_path: Option<(Option<RelayPath>, Option<RelayPath>)>,
    /// A relay run: time from `connect` to the server reading the first byte.
    pub first_byte: Option<Duration>,
    /// A relay run with [`HolepunchConfig::second_connect`]: the second connect.
    pub second: Option<SecondRun>,
}

impl HolepunchRun {
    /// Whether a relay run's connection went through the relay and then moved to a direct
    /// path.
    pub fn upgraded(&self) -> bool {
        matches!(self.relay_path, Some((_, Some(RelayPath::Upgraded))))
    }

    /// Whether a relay run's connection ever ran through the relay.
    pub fn relayed(&self) -> bool {
        matches!(
            self.relay_path,
            Some((_, Some(RelayPath::Relayed | RelayPath::Upgraded)))
        )
    }

    /// Whether the connection opened.
    pub fn connected(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// What the run watches for in the nodes' events.
#[derive(Debug, Default)]
struct Watch {
    relay_host: Option<HostId>,
    relay_listening: bool,
    server_conn: Option<ConnId>,
    server: Option<HostId>,
    client: Option<HostId>,
    conn: Option<ConnId>,
    listening: Option<Instant>,
    outcome: Option<(Instant, Result<(), ConnectError>)>,
}

impl Handler<DhtHost> for Watch {
    fn on_event(&mut self, sim: &mut Engine<DhtHost>, host: HostId, event: DhtEvent) {
        let DhtEvent::Connect(ev) = event else {
            return;
        };
        match ev {
            ConnectEvent::Listening { .. } if Some(host) == self.relay_host => {
                self.relay_listening = true;
            }
            ConnectEvent::Incoming { conn, .. } if Some(host) == self.server => {
                self.server_conn.get_or_insert(conn);
            }
            ConnectEvent::Listening { .. } if Some(host) == self.server => {
                self.listening.get_or_insert(sim.now());
            }
            ConnectEvent::Open { conn, .. }
                if Some(host) == self.client && Some(conn) == self.conn =>
            {
                self.outcome.get_or_insert((sim.now(), Ok(())));
            }
            ConnectEvent::Failed { conn, error }
                if Some(host) == self.client && Some(conn) == self.conn =>
            {
                self.outcome.get_or_insert((sim.now(), Err(error)));
            }
            _ => {}
        }
    }
}

/// Runs the simulation in slices until `done` holds (true) or `deadline` passes (false).
fn run_until(
    sim: &mut DhtSim,
    w: &mut Watch,
    deadline: Instant,
    slice: Duration,
    done: impl Fn(&DhtSim, &Watch) -> bool,
) -> bool {
    loop {
        if done(sim, w) {
            return true;
        }
        if sim.now() >= deadline {
            return false;
        }
        let next = (sim.now() + slice).min(deadline);
        sim.run_until_with(next, w);
    }
}

fn ready(sim: &DhtSim, h: HostId) -> bool {
    sim.try_node(h).is_some_and(|n| n.rpc().is_bootstrapped())
}

/// Runs one holepunch simulation (see the module docs).
pub fn run_holepunch(cfg: &HolepunchConfig) -> Result<HolepunchRun, ScenarioError> {
    run_holepunch_with(cfg, None)
}

/// Runs one holepunch simulation with a datagram tap installed from the start (to debug a
/// run; the run is the same as without). The public nodes are hosts `0..public_nodes`, the
/// server host `public_nodes`, the client host `public_nodes + 1`.
pub fn run_holepunch_with(
    cfg: &HolepunchConfig,
    tap: Option<Tap>,
) -> Result<HolepunchRun, ScenarioError> {
    cfg.validate()?;
    let mut sim = DhtSim::new(cfg.seed, cfg.link());
    sim.set_tap(tap);
    sim.reserve_hosts(cfg.public_nodes + 2);
    let mut w = Watch::default();
    let mut run = placeholder_run(cfg);
    run.outcome = phases(cfg, &mut sim, &mut w, &mut run);
    let binds = |h: Option<HostId>| {
        h.and_then(|h| sim.try_node(h))
            .map_or(0, |n| n.pool_binds())
    };
    run.pool_binds = (binds(w.client), binds(w.server));
    run.trace_hash = sim.trace();
    run.net = sim.stats();
    run.events = sim.events_processed();
    run.sim_time = Duration::from_micros(sim.now().as_micros());
    Ok(run)
}

fn phases(
    cfg: &HolepunchConfig,
    sim: &mut DhtSim,
    w: &mut Watch,
    run: &mut HolepunchRun,
) -> Result<Duration, HolepunchFailure> {
    let net = |e: crate::network::NetError| HolepunchFailure::Net(e.to_string());
    // 1. The public DHT, on a clean link.
    let boot = sim.next_dht_server_addr();
    let mut public = vec![sim
        .add_dht_node_in(RealmId::INTERNET, DhtNodeConfig::bootstrapper(boot))
        .map_err(net)?];
    let mut addrs = vec![boot];
    for _ in 1..cfg.public_nodes {
        sim.run_for_with(cfg.join_interval, w);
        let mut c = DhtNodeConfig::joining(vec![boot]);
        c.dht.rpc.persistence = Persistence::Persistent;
        let h = sim.add_dht_node_in(RealmId::INTERNET, c).map_err(net)?;
        addrs.push(sim.dht_server_addr(h));
        public.push(h);
    }
    let deadline = sim.now() + cfg.settle_timeout;
    let settled = run_until(sim, w, deadline, Duration::from_millis(100), |sim, _| {
        public.iter().all(|&h| {
            sim.try_node(h)
                .is_some_and(|n| n.rpc().is_bootstrapped() && !n.rpc().is_firewalled())
        })
    });
    if !settled {
        return Err(HolepunchFailure::PublicDhtNotReady);
    }
    // 1b. A blind relay on one more open node.
    let relay_pk = if cfg.relay {
        let mut c = DhtNodeConfig::joining(vec![boot]);
        c.dht.rpc.persistence = Persistence::Persistent;
        let realm = match cfg.relay_nat {
            Some(p) => sim.add_preset(p, None).map_err(net)?.0,
            None => RealmId::INTERNET,
        };
        let natted = cfg.relay_nat.is_some();
        let h = sim.add_dht_node_in(realm, c).map_err(net)?;
        w.relay_host = Some(h);
        let deadline = sim.now() + cfg.settle_timeout;
        if !run_until(sim, w, deadline, Duration::from_millis(10), |sim, _| {
            sim.try_node(h)
                .is_some_and(|n| n.rpc().is_bootstrapped() && (natted || !n.rpc().is_firewalled()))
        }) {
            return Err(HolepunchFailure::PublicDhtNotReady);
        }
        let kp = KeyPair::generate(sim.rng());
        sim.with_node(h, |n, now| {
            n.relay_server(now, kp.clone(), RelayLimits::default())
        })
        .map_err(HolepunchFailure::Listen)?;
        let deadline = sim.now() + cfg.listen_timeout;
        if !run_until(sim, w, deadline, Duration::from_millis(10), |_, w| {
            w.relay_listening
        }) {
            return Err(HolepunchFailure::ListenTimeout);
        }
        Some(kp.public_key())
    } else {
        None
    };
    let mut link = sim.link().to_owned();
    link.loss = cfg.loss;
    sim.set_link(link);
    let seeds: Vec<_> = addrs
        .iter()
        .copied()
        .take(cfg.bootstrap_nodes.max(1))
        .collect();
    let joining = || DhtNodeConfig {
        dht: hdht_core::dht::DhtConfig {
            rpc: RpcConfig {
                bootstrap: seeds.clone(),
                ..RpcConfig::default()
            },
            ..Default::default()
        },
    };

    // 2. The server behind its NAT: bootstrap, listen, announce.
    let server_kp = KeyPair::generate(sim.rng());
    let client_kp = KeyPair::generate(sim.rng());
    let (realm, _) = sim.add_preset(cfg.server, None).map_err(net)?;
    let server = sim.add_dht_node_in(realm, joining()).map_err(net)?;
    w.server = Some(server);
    let deadline = sim.now() + cfg.ready_timeout;
    if !run_until(sim, w, deadline, Duration::from_millis(10), |sim, _| {
        ready(sim, server)
    }) {
        return Err(HolepunchFailure::ServerNotReady);
    }
    let listen_at = sim.now();
    let listened = sim.with_node(server, |n, now| {
        if let Some(interval) = cfg.server_defers_random_punch {
            n.set_random_punch_limits(now, Some(interval), true);
        }
        let id = n.create_server(ServerOptions {
            relay_through: relay_pk
                .filter(|_| cfg.server_names_relay)
                .map(RelaySelector::Key),
            ..ServerOptions::default()
        });
        n.listen(now, id, Some(server_kp.clone()))
    });
    listened.map_err(HolepunchFailure::Listen)?;
    let deadline = sim.now() + cfg.listen_timeout;
    if !run_until(sim, w, deadline, Duration::from_millis(10), |_, w| {
        w.listening.is_some()
    }) {
        return Err(HolepunchFailure::ListenTimeout);
    }
    run.listen_time = w.listening.map(|t| t.saturating_duration_since(listen_at));

    // 3. The client behind its NAT: bootstrap, connect.
    let (realm, _) = sim.add_preset(cfg.client, None).map_err(net)?;
    let client = sim.add_dht_node_in(realm, joining()).map_err(net)?;
    w.client = Some(client);
    let deadline = sim.now() + cfg.ready_timeout;
    if !run_until(sim, w, deadline, Duration::from_millis(10), |sim, _| {
        ready(sim, client)
    }) {
        return Err(HolepunchFailure::ClientNotReady);
    }
    let client_relay = match cfg.client_relay {
        Some(ClientRelay::TheRelay) => relay_pk,
        Some(ClientRelay::Nobody) => Some(KeyPair::generate(sim.rng()).public_key()),
        None => None,
    };
    let started = sim.now();
    let server_pk = server_kp.public_key();
    let conn = sim.with_node(client, |n, now| {
        n.connect(
            now,
            server_pk,
            ConnectOptions {
                key_pair: Some(client_kp.clone()),
                relay_through: client_relay.map(RelaySelector::Key),
                ..ConnectOptions::default()
            },
        )
    });
    w.conn = Some(conn);
    let deadline = started + cfg.connect_timeout;
    // Failed may already be queued by `connect` itself; the handler sees it on the first run.
    let finished = run_until(sim, w, deadline, Duration::from_millis(5), |_, w| {
        w.outcome.is_some()
    });
    match (finished, w.outcome) {
        (true, Some((at, result))) => {
            let took = at.saturating_duration_since(started);
            run.elapsed = Some(took);
            if cfg.relay && result.is_ok() {
                relay_phase(sim, w, run, client, server, conn, started)?;
                if let (Some(mode), Some(relay)) = (cfg.second_connect, relay_pk) {
                    let opts = ConnectOptions {
                        key_pair: Some(client_kp.clone()),
                        relay_through: client_relay.map(RelaySelector::Key),
                        ..ConnectOptions::default()
                    };
                    let second = second_phase(
                        cfg, sim, w, client, server, conn, server_pk, opts, relay, mode,
                    );
                    run.second = Some(second);
                }
            }
            result.map(|()| took).map_err(HolepunchFailure::Connect)
        }
        _ => {
            run.elapsed = Some(cfg.connect_timeout);
            Err(HolepunchFailure::ConnectTimeout)
        }
    }
}

/// A relay run after `Open`: the client sends half of [`RELAY_PROBE_BYTES`] at once (the
/// time to the server's first byte is measured), the path settles for [`RELAY_SETTLE`] (a
/// punch may move the stream off the relay), then the other half; the server must read every
/// byte, in order.
fn relay_phase(
    sim: &mut DhtSim,
    w: &mut Watch,
    run: &mut HolepunchRun,
    client: HostId,
    server: HostId,
    conn: ConnId,
    started: Instant,
) -> Result<(), HolepunchFailure> {
    let at_open = sim.try_node(client).and_then(|n| n.conn_relay_path(conn));
    let data: Vec<u8> = (0..RELAY_PROBE_BYTES).map(|i| (i * 7 + 3) as u8).collect();
    let half = data.len() / 2;
    let mut got = Vec::new();
    transfer(
        sim,
        w,
        run,
        client,
        server,
        conn,
        &data[..half],
        &mut got,
        started,
    )?;
    let settle = sim.now() + RELAY_SETTLE;
    sim.run_until_with(settle, w);
    let settled = sim.try_node(client).and_then(|n| n.conn_relay_path(conn));
    run.relay_path = Some((at_open, settled));
    transfer(
        sim,
        w,
        run,
        client,
        server,
        conn,
        &data[half..],
        &mut got,
        started,
    )?;
    if got != data {
        return Err(HolepunchFailure::RelayData);
    }
    Ok(())
}

/// A relay run's second connect (see [`SecondConnect`]): both sides end the first
/// connection, its pairing is released, then the client connects again with the same options
/// and sends a few bytes.
#[allow(clippy::too_many_arguments)]
fn second_phase(
    cfg: &HolepunchConfig,
    sim: &mut DhtSim,
    w: &mut Watch,
    client: HostId,
    server: HostId,
    first: ConnId,
    server_pk: [u8; 32],
    opts: ConnectOptions,
    relay: [u8; 32],
    mode: SecondConnect,
) -> SecondRun {
    let _ = sim.with_node(client, |n, _| n.conn_end(first));
    if let Some(sconn) = w.server_conn {
        let _ = sim.with_node(server, |n, _| n.conn_end(sconn));
    }
    // The relayed connection's linger (3 s), then its pairing is released.
    let until = sim.now() + Duration::from_secs(8);
    sim.run_until_with(until, w);
    let relay_pairs_between = w
        .relay_host
        .and_then(|h| sim.try_node(h))
        .and_then(|n| n.relay_stats())
        .map_or(0, |s| s.control.pairings_active);
    let client_sessions_between = sim
        .try_node(client)
        .map_or((0, 0), |n| n.relay_session_counts());
    if mode == SecondConnect::SessionFailed {
        let rconn = sim
            .try_node(client)
            .and_then(|n| n.relay_session_conn(&relay));
        if let Some(rconn) = rconn {
            sim.with_node(client, |n, _| n.conn_destroy(rconn));
        }
        let until = sim.now() + Duration::from_secs(1);
        sim.run_until_with(until, w);
    }
    w.server_conn = None;
    w.outcome = None;
    let started = sim.now();
    let conn = sim.with_node(client, |n, now| n.connect(now, server_pk, opts));
    w.conn = Some(conn);
    let deadline = started + cfg.connect_timeout;
    let finished = run_until(sim, w, deadline, Duration::from_millis(5), |_, w| {
        w.outcome.is_some()
    });
    let mut second = SecondRun {
        relay_pairs_between,
        client_sessions_between,
        outcome: Err(HolepunchFailure::ConnectTimeout),
        relay_path: None,
        first_byte: None,
    };
    match (finished, w.outcome) {
        (true, Some((at, Ok(())))) => {
            second.outcome = Ok(at.saturating_duration_since(started));
            second.relay_path = sim.try_node(client).and_then(|n| n.conn_relay_path(conn));
            let data: Vec<u8> = (0..4096).map(|i| (i * 5 + 1) as u8).collect();
            let mut got = Vec::new();
            let mut probe = HolepunchRun {
                first_byte: None,
                ..placeholder_run(cfg)
            };
            if transfer(
                sim, w, &mut probe, client, server, conn, &data, &mut got, started,
            )
            .is_ok()
                && got == data
            {
                second.first_byte = probe.first_byte;
            }
        }
        (true, Some((_, Err(e)))) => second.outcome = Err(HolepunchFailure::Connect(e)),
        _ => {}
    }
    second
}

/// A run of `cfg` that has not got anywhere yet (its fields filled in as the phases go).
fn placeholder_run(cfg: &HolepunchConfig) -> HolepunchRun {
    HolepunchRun {
        client: cfg.client,
        server: cfg.server,
        seed: cfg.seed,
        outcome: Err(HolepunchFailure::PublicDhtNotReady),
        elapsed: None,
        listen_time: None,
        pool_binds: (0, 0),
        trace_hash: TraceHash([0; 32]),
        net: NetStats::default(),
        events: 0,
        sim_time: Duration::ZERO,
        relay_path: None,
        first_byte: None,
        second: None,
    }
}

/// Writes `data` on the client's connection until the server read as much (bounded).
#[allow(clippy::too_many_arguments)]
fn transfer(
    sim: &mut DhtSim,
    w: &mut Watch,
    run: &mut HolepunchRun,
    client: HostId,
    server: HostId,
    conn: ConnId,
    data: &[u8],
    got: &mut Vec<u8>,
    started: Instant,
) -> Result<(), HolepunchFailure> {
    let target = got.len() + data.len();
    let mut written = 0;
    let deadline = sim.now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 16 * 1024];
    while got.len() < target && sim.now() < deadline {
        if written < data.len() {
            let rest = &data[written..];
            if let Ok(n) = sim.with_node(client, |n, now| n.conn_write(now, conn, rest)) {
                written += n;
            }
        }
        if let Some(sconn) = w.server_conn {
            loop {
                let n = sim
                    .with_node(server, |n, now| n.conn_read(now, sconn, &mut buf))
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                if run.first_byte.is_none() {
                    run.first_byte = Some(sim.now().saturating_duration_since(started));
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        let next = sim.now() + Duration::from_millis(5);
        sim.run_until_with(next, w);
    }
    if got.len() < target {
        return Err(HolepunchFailure::RelayData);
    }
    Ok(())
}

/// Options of the whole matrix.
#[derive(Debug, Clone)]
pub struct MatrixConfig {
    /// The first seed; run `i` of every pair uses `seed + i`.
    pub seed: u64,
    /// Runs per pair.
    pub seeds: usize,
    /// Client presets (rows).
    pub clients: Vec<NatPreset>,
    /// Server presets (columns).
    pub servers: Vec<NatPreset>,
    /// Every other option of a run (its presets and seed are replaced per run).
    pub run: HolepunchConfig,
    /// Worker threads (1 = run on the calling thread; 0 = one per available core).
    pub jobs: usize,
}

impl MatrixConfig {
    /// Every preset × every preset, `seeds` runs each from `seed`, default run options.
    pub fn new(seed: u64, seeds: usize) -> Self {
        MatrixConfig {
            seed,
            seeds,
            clients: NatPreset::ALL.to_vec(),
            servers: NatPreset::ALL.to_vec(),
            run: HolepunchConfig::new(NatPreset::Open, NatPreset::Open, seed),
            jobs: 0,
        }
    }

    fn runs(&self) -> usize {
        self.clients.len() * self.servers.len() * self.seeds
    }

    /// The run options of run `i` (pairs in row-major order, seeds innermost).
    fn run_config(&self, i: usize) -> HolepunchConfig {
        let per_pair = self.seeds.max(1);
        let pair = i / per_pair;
        let mut c = self.run.clone();
        c.client = self.clients[pair / self.servers.len()];
        c.server = self.servers[pair % self.servers.len()];
        c.seed = self.seed.wrapping_add((i % per_pair) as u64);
        c
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone)]
pub struct PairReport {
    /// The client's preset.
    pub client: NatPreset,
    /// The server's preset.
    pub server: NatPreset,
    /// Runs.
    pub runs: usize,
    /// Runs that connected.
    pub successes: usize,
    /// Time to connect of the successful runs, ms.
    pub connect_ms: Percentiles,
    /// Time from `connect` to the failure of the failed runs, ms.
    pub fail_ms: Percentiles,
    /// Failures by name ([`HolepunchFailure::name`]).
    pub errors: BTreeMap<String, usize>,
    /// Relay runs: connections whose bytes crossed the relay (still, or before moving).
    pub relayed: usize,
    /// Relay runs: connections that opened through the relay and moved to a direct path.
    pub upgraded: usize,
    /// Relay runs: time from `connect` to the server's first byte, ms.
    pub first_byte_ms: Percentiles,
    /// The runs, in seed order.
    pub details: Vec<HolepunchRun>,
}

impl PairReport {
    fn of(client: NatPreset, server: NatPreset, details: Vec<HolepunchRun>) -> Self {
        let ok: Vec<f64> = details
            .iter()
            .filter_map(|r| r.outcome.as_ref().ok())
            .map(ms)
            .collect();
        let failed: Vec<f64> = details
            .iter()
            .filter(|r| !r.connected())
            .filter_map(|r| r.elapsed.as_ref())
            .map(ms)
            .collect();
        let mut errors = BTreeMap::new();
        for r in &details {
            if let Err(e) = &r.outcome {
                *errors.entry(e.name().to_string()).or_insert(0) += 1;
            }
        }
        let first: Vec<f64> = details
            .iter()
            .filter(|r| r.connected())
            .filter_map(|r| r.first_byte.as_ref())
            .map(ms)
            .collect();
        PairReport {
            relayed: details.iter().filter(|r| r.relayed()).count(),
            upgraded: details.iter().filter(|r| r.upgraded()).count(),
            first_byte_ms: Percentiles::of(&first),
            client,
            server,
            runs: details.len(),
            successes: ok.len(),
            connect_ms: Percentiles::of(&ok),
            fail_ms: Percentiles::of(&failed),
            errors,
            details,
        }
    }

    /// Fraction of runs that connected.
    pub fn rate(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.successes as f64 / self.runs as f64
        }
    }

    /// Median time to connect, ms (`None` without a success).
    pub fn median_ms(&self) -> Option<f64> {
        (self.successes > 0).then_some(self.connect_ms.p50)
    }

    /// 99th-percentile time to connect, ms (`None` without a success).
    pub fn p99_ms(&self) -> Option<f64> {
        (self.successes > 0).then_some(self.connect_ms.p99)
    }

    /// The most common failure and its count (ties: the first name in order).
    pub fn top_error(&self) -> Option<(&str, usize)> {
        let mut best: Option<(&str, usize)> = None;
        for (k, v) in &self.errors {
            if best.is_none_or(|(_, n)| *v > n) {
                best = Some((k.as_str(), *v));
            }
        }
        best
    }

    /// The seeds of the runs that did not connect (replay one with `--seed S --seeds 1`).
    pub fn failed_seeds(&self) -> impl Iterator<Item = u64> + '_ {
        self.details
            .iter()
            .filter(|r| !r.connected())
            .map(|r| r.seed)
    }

    /// The pair as one JSON object: `client`, `server`, `runs`, `successes`, `successRate`,
    /// `medianMs`, `p99Ms` (null without a success), `failMedianMs` (null without a failure),
    /// `errors` {name: count}, `failedSeeds` (the first ten).
    pub fn to_json_line(&self) -> String {
        let mut j = Json::default();
        j.str("event", "pair");
        j.str("client", self.client.name());
        j.str("server", self.server.name());
        j.num("runs", self.runs as f64);
        j.num("successes", self.successes as f64);
        j.num("successRate", self.rate());
        j.num("medianMs", self.median_ms().map_or(f64::NAN, round3));
        j.num("p99Ms", self.p99_ms().map_or(f64::NAN, round3));
        j.num(
            "failMedianMs",
            if self.fail_ms.count > 0 {
                round3(self.fail_ms.p50)
            } else {
                f64::NAN
            },
        );
        let mut e = Json::default();
        for (k, v) in &self.errors {
            e.num(k, *v as f64);
        }
        j.raw("errors", &e.finish());
        if self.first_byte_ms.count > 0 || self.relayed > 0 {
            j.num("relayed", self.relayed as f64);
            j.num("upgraded", self.upgraded as f64);
            j.num(
                "upgradeRate",
                if self.relayed == 0 {
                    0.0
                } else {
                    self.upgraded as f64 / self.relayed as f64
                },
            );
            j.num(
                "firstByteMedianMs",
                if self.first_byte_ms.count > 0 {
                    round3(self.first_byte_ms.p50)
                } else {
                    f64::NAN
                },
            );
        }
        let seeds: Vec<String> = self
            .failed_seeds()
            .take(MAX_SEEDS_SHOWN)
            .map(|s| s.to_string())
            .collect();
        j.raw("failedSeeds", &format!("[{}]", seeds.join(",")));
        j.finish()
    }
}

/// Failed seeds listed per pair in the table and the JSON line.
const MAX_SEEDS_SHOWN: usize = 10;

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The whole matrix.
#[derive(Debug, Clone)]
pub struct MatrixReport {
    /// The first seed.
    pub seed: u64,
    /// Runs per pair.
    pub seeds: usize,
    /// Client presets (rows).
    pub clients: Vec<NatPreset>,
    /// Server presets (columns).
    pub servers: Vec<NatPreset>,
    /// The cells, row-major.
    pub pairs: Vec<PairReport>,
    /// BLAKE2b-256 over every run's trace hash, in run order: one value that replays.
    pub trace_hash: TraceHash,
    /// Events processed by all runs.
    pub events: u64,
    /// Virtual time simulated by all runs.
    pub sim_time: Duration,
    /// Wall time.
    pub wall: Duration,
    /// Worker threads used.
    pub jobs: usize,
    /// The run options (presets and seed are per run).
    pub run: HolepunchConfig,
}

impl MatrixReport {
    /// The cell for a pair.
    pub fn pair(&self, client: NatPreset, server: NatPreset) -> Option<&PairReport> {
        self.pairs
            .iter()
            .find(|p| p.client == client && p.server == server)
    }

    /// The summary as one JSON object: `event` "summary", `seed`, `seeds`, `pairs`, `runs`,
    /// `successes`, `traceHash`, `rttMs`, `loss`, `publicNodes`, `events`, `simMs`, `wallMs`,
    /// `jobs`.
    pub fn to_json_line(&self) -> String {
        let runs: usize = self.pairs.iter().map(|p| p.runs).sum();
        let ok: usize = self.pairs.iter().map(|p| p.successes).sum();
        let mut j = Json::default();
        j.str("event", "summary");
        j.raw("seed", &self.seed.to_string());
        j.num("seeds", self.seeds as f64);
        j.num("pairs", self.pairs.len() as f64);
        j.num("runs", runs as f64);
        j.num("successes", ok as f64);
        j.str("traceHash", &self.trace_hash.to_hex());
        j.num("rttMs", ms(&self.run.rtt));
        j.num("loss", self.run.loss);
        j.num("publicNodes", self.run.public_nodes as f64);
        j.num("events", self.events as f64);
        j.num("simMs", self.sim_time.as_millis() as f64);
        j.num("wallMs", (self.wall.as_secs_f64() * 1000.0).round());
        j.num("jobs", self.jobs as f64);
        j.finish()
    }

    /// The matrix as a text table: a row per client preset, a column per server preset; each
    /// cell is the success rate and the median/p99 time to connect in ms, with the most common
    /// failure (shortened) on a second line; then every failing pair with its failures in full.
    pub fn table(&self) -> String {
        let mut cells: Vec<Vec<(String, String)>> = Vec::new();
        for c in &self.clients {
            let mut row = Vec::new();
            for s in &self.servers {
                let Some(p) = self.pair(*c, *s) else {
                    row.push((String::new(), String::new()));
                    continue;
                };
                let mut top = percent(p.successes, p.runs);
                if let (Some(m), Some(p99)) = (p.median_ms(), p.p99_ms()) {
                    top.push_str(&format!(" {m:.0}/{p99:.0}"));
                }
                let mut bottom = p
                    .top_error()
                    .map(|(e, _)| e.strip_prefix("HOLEPUNCH_").unwrap_or(e).to_string())
                    .unwrap_or_default();
                if self.run.relay && bottom.is_empty() {
                    bottom = format!(
                        "r{} u{} fb{:.0}",
                        p.relayed, p.upgraded, p.first_byte_ms.p50
                    );
                }
                row.push((top, bottom));
            }
            cells.push(row);
        }
        let head = "client \\ server";
        let first = self
            .clients
            .iter()
            .map(|c| c.name().len())
            .chain([head.len()])
            .max()
            .unwrap_or(0);
        let width = cells
            .iter()
            .flatten()
            .map(|(a, _)| a.len())
            .chain(self.servers.iter().map(|s| s.name().len()))
            .max()
            .unwrap_or(0);
        let clip = |s: &str| -> String {
            if s.chars().count() <= width {
                s.to_string()
            } else {
                s.chars()
                    .take(width.saturating_sub(1))
                    .chain(['…'])
                    .collect()
            }
        };
        let mut out = format!("{head:<first$}");
        for s in &self.servers {
            out.push_str(&format!("  {:<width$}", s.name()));
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        for (c, row) in self.clients.iter().zip(&cells) {
            let mut line = format!("{:<first$}", c.name());
            for (top, _) in row {
                line.push_str(&format!("  {top:<width$}"));
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if row.iter().any(|(_, b)| !b.is_empty()) {
                let mut line = format!("{:<first$}", "");
                for (_, bottom) in row {
                    line.push_str(&format!("  {:<width$}", clip(bottom)));
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        out.push_str("cells: connected %, median/p99 ms from connect to open; second line: the most common failure\n");
        if self.run.relay {
            out.push_str("relay runs, second line without a failure: rN = runs relayed, uN = of those moved to the direct path, fbMS = median ms from connect to the server's first byte\n");
        }
        let failing: Vec<&PairReport> =
            self.pairs.iter().filter(|p| !p.errors.is_empty()).collect();
        if !failing.is_empty() {
            out.push_str("failures:\n");
            for p in failing {
                let errors: Vec<String> =
                    p.errors.iter().map(|(e, n)| format!("{e} x{n}")).collect();
                let mut seeds: Vec<String> = p
                    .failed_seeds()
                    .take(MAX_SEEDS_SHOWN)
                    .map(|s| s.to_string())
                    .collect();
                if p.runs - p.successes > MAX_SEEDS_SHOWN {
                    seeds.push("…".to_string());
                }
                out.push_str(&format!(
                    "  {} -> {}: {} of {}; median {:.0} ms from connect to failure; seeds {}\n",
                    p.client,
                    p.server,
                    errors.join(", "),
                    p.runs,
                    p.fail_ms.p50,
                    seeds.join(" ")
                ));
            }
        }
        let runs: usize = self.pairs.iter().map(|p| p.runs).sum();
        let ok: usize = self.pairs.iter().map(|p| p.successes).sum();
        out.push_str(&format!(
            "{} pairs x {} seeds = {} runs, {} connected; rtt {:.0} ms, loss {}, {} public nodes; events {}, simulated {:.0} s, wall {:.1} s on {} threads\n",
            self.pairs.len(),
            self.seeds,
            runs,
            ok,
            ms(&self.run.rtt),
            self.run.loss,
            self.run.public_nodes,
            self.events,
            self.sim_time.as_secs_f64(),
            self.wall.as_secs_f64(),
            self.jobs
        ));
        out.push_str(&format!("seed {}  trace {}", self.seed, self.trace_hash));
        out
    }
}

/// `ok` of `n` as a percentage that reads 100% only when every run succeeded.
fn percent(ok: usize, n: usize) -> String {
    if n == 0 {
        return "-".to_string();
    }
    if ok == n {
        return "100%".to_string();
    }
    let p = ok as f64 * 100.0 / n as f64;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{:.1}%", p.min(99.9))
    }
}

/// Where the matrix is, for progress output.
#[derive(Debug, Clone, Copy)]
pub struct MatrixProgress {
    /// Runs finished.
    pub done: usize,
    /// Runs in all.
    pub total: usize,
    /// Pairs whose every run finished.
    pub pairs_done: usize,
    /// Events processed by the finished runs.
    pub events: u64,
    /// Virtual time simulated by the finished runs.
    pub sim_time: Duration,
    /// Wall time so far.
    pub wall: Duration,
}

/// Runs the matrix: `progress` after every finished run, `pair` for every finished cell (in
/// row-major order, as soon as it and every cell before it are done).
pub fn run_matrix(
    cfg: &MatrixConfig,
    progress: &mut dyn FnMut(&MatrixProgress),
    pair: &mut dyn FnMut(&PairReport),
) -> Result<MatrixReport, ScenarioError> {
    cfg.run.validate()?;
    let wall = WallInstant::now();
    let total = cfg.runs();
    let jobs = match cfg.jobs {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(total.max(1));
    let mut results: Vec<Option<HolepunchRun>> = vec![None; total];
    let mut pairs = Vec::new();
    let mut emitted = 0;
    let mut events = 0u64;
    let mut simulated = Duration::ZERO;
    let mut done = 0usize;
    let per_pair = cfg.seeds;
    let mut take = |i: usize,
                    r: HolepunchRun,
                    results: &mut Vec<Option<HolepunchRun>>,
                    pairs: &mut Vec<PairReport>| {
        events += r.events;
        simulated += r.sim_time;
        results[i] = Some(r);
        done += 1;
        // Emit every finished cell at the head of the order.
        while per_pair > 0
            && emitted < total / per_pair
            && results[emitted * per_pair..(emitted + 1) * per_pair]
                .iter()
                .all(Option::is_some)
        {
            let details: Vec<HolepunchRun> = results[emitted * per_pair..(emitted + 1) * per_pair]
                .iter()
                .flatten()
                .cloned()
                .collect();
            let c = cfg.clients[emitted / cfg.servers.len()];
            let s = cfg.servers[emitted % cfg.servers.len()];
            let p = PairReport::of(c, s, details);
            pair(&p);
            pairs.push(p);
            emitted += 1;
        }
        progress(&MatrixProgress {
            done,
            total,
            pairs_done: emitted,
            events,
            sim_time: simulated,
            wall: wall.elapsed(),
        });
    };
    if jobs <= 1 {
        for i in 0..total {
            let r = run_holepunch(&cfg.run_config(i))?;
            take(i, r, &mut results, &mut pairs);
        }
    } else {
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::channel::<(usize, Result<HolepunchRun, ScenarioError>)>();
        let mut failure = None;
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                let tx = tx.clone();
                let next = &next;
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    if tx.send((i, run_holepunch(&cfg.run_config(i)))).is_err() {
                        return;
                    }
                });
            }
            drop(tx);
            for (i, r) in rx {
                match r {
                    Ok(r) => take(i, r, &mut results, &mut pairs),
                    Err(e) => {
                        // Stop handing out work; the workers finish their current run.
                        next.store(total, Ordering::Relaxed);
                        failure.get_or_insert(e);
                    }
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
    }
    let mut h = Blake2b::<U32>::new();
    let mut sim_time = Duration::ZERO;
    for r in results.iter().flatten() {
        h.update(r.trace_hash.0);
        sim_time += r.sim_time;
    }
    Ok(MatrixReport {
        seed: cfg.seed,
        seeds: cfg.seeds,
        clients: cfg.clients.clone(),
        servers: cfg.servers.clone(),
        pairs,
        trace_hash: TraceHash(h.finalize().into()),
        events,
        sim_time,
        wall: wall.elapsed(),
        jobs,
        run: cfg.run.clone(),
    })
}
