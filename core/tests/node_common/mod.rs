//! A node-level harness in the style of quinn-proto's test `Pair` (and of `udx_common`'s UDX
//! `Pair`): hyperdht [`DhtNode`]s wired through an in-memory network with virtual time, every
//! output drained after every input.
//!
//! - Each host has a public-looking address (`20.0.0.n`), its server socket on port 49737, its
//!   client socket on 40000, and pool sockets on 50000 + id, bound the moment the node asks.
//! - A datagram to an address that belongs to a host arrives [`Network::latency`] later, in
//!   the order sent; one to any other address goes to the [`outbox`](Network::take_outbox) at
//!   once (a fixture plays that peer by hand with [`Network::inject`]).
//! - After every input (a datagram, a timer, a call through [`Network::with`]) the host's
//!   socket commands, events and transmits are drained, as a driver does; events wait in the
//!   host until a test [`take`s](Network::take_events) them.
//! - Time moves only in [`Network::step`] / [`run_until`](Network::run_until) /
//!   [`advance`](Network::advance): to the next arrival or the next node deadline, arrivals
//!   first at one instant (as the drivers and the simulator read datagrams before a due
//!   timer).
//!
//! Every datagram sent is kept in [`Network::log`] (when `record` is on) for tests that look
//! at what went where.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdht_core::dht::{DhtConfig, DhtEvent, DhtNode, SocketCommand, MAX_DATAGRAM};
use hdht_core::rpc::{Persistence, RpcConfig, SocketKind};
use hdht_core::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

/// Which host.
pub type HostId = usize;

/// The server socket's port on every host.
pub const SERVER_PORT: u16 = 49737;
/// The client socket's port on every host.
pub const CLIENT_PORT: u16 = 40000;
/// Pool socket `id` is bound on this port + id.
pub const POOL_PORT_BASE: u16 = 50000;
/// The wall clock the nodes believe `Instant::ZERO` is.
pub const EPOCH_UNIX_MS: u64 = 1_700_000_000_000;

/// One datagram as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// When.
    pub at: Instant,
    /// The sending host.
    pub host: HostId,
    /// Its socket.
    pub socket: SocketKind,
    /// The sending socket's address.
    pub from: SocketAddrV4,
    /// Destination.
    pub to: SocketAddrV4,
    /// Bytes.
    pub bytes: Vec<u8>,
    /// IP TTL, if not the default.
    pub ttl: Option<u8>,
}

/// A hyperdht node on the network.
pub struct Host {
    /// The node.
    pub node: DhtNode<ChaCha8Rng>,
    /// Its IP.
    pub ip: Ipv4Addr,
    /// Events not yet taken.
    pub events: VecDeque<DhtEvent>,
    /// Pool sockets bound now (id → port).
    pool: BTreeMap<u32, u16>,
    /// Cut off (a crashed machine, a pulled cable): what it sends is lost, nothing reaches it.
    pub cut: bool,
}

impl Host {
    /// The address of one of its sockets (`None` for a pool socket not bound).
    pub fn addr(&self, socket: SocketKind) -> Option<SocketAddrV4> {
        let port = match socket {
            SocketKind::Server => SERVER_PORT,
            SocketKind::Client => CLIENT_PORT,
            SocketKind::Pool(id) => *self.pool.get(&id)?,
        };
        Some(SocketAddrV4::new(self.ip, port))
    }

    /// The server socket's address (the node's address in the DHT).
    pub fn server_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, SERVER_PORT)
    }

    /// The socket bound on `port`.
    fn socket_on(&self, port: u16) -> Option<SocketKind> {
        match port {
            SERVER_PORT => Some(SocketKind::Server),
            CLIENT_PORT => Some(SocketKind::Client),
            p => {
                let id = u32::from(p.checked_sub(POOL_PORT_BASE)?);
                self.pool.contains_key(&id).then_some(SocketKind::Pool(id))
            }
        }
    }
}

/// In-memory hosts, a link with a fixed latency, and virtual time.
pub struct Network {
    /// Virtual time.
    pub now: Instant,
    /// One-way latency between hosts.
    pub latency: Duration,
    /// The hosts, by id.
    pub hosts: Vec<Host>,
    /// Keep every datagram sent in [`log`](Self::log).
    pub record: bool,
    /// Every datagram sent (with `record`).
    pub log: Vec<Sent>,
    /// Datagrams sent to addresses no host has, oldest first.
    outbox: Vec<Sent>,
    /// Datagrams on the wire: (arrival, sequence) → datagram.
    wire: BTreeMap<(Instant, u64), Sent>,
    seq: u64,
    seed: u64,
    buf: Vec<u8>,
    /// Datagrams delivered to a host.
    pub delivered: u64,
}

impl Network {
    /// An empty network at time 1 ms; node RNGs derive from `seed`.
    pub fn new(seed: u64) -> Self {
        Network {
            now: Instant::from_millis(1),
            latency: Duration::from_millis(5),
            hosts: Vec::new(),
            record: false,
            log: Vec::new(),
            outbox: Vec::new(),
            wire: BTreeMap::new(),
            seq: 0,
            seed,
            buf: vec![0; MAX_DATAGRAM],
            delivered: 0,
        }
    }

    /// The IP the next host gets.
    pub fn next_ip(&self) -> Ipv4Addr {
        let n = self.hosts.len() + 1;
        Ipv4Addr::new(20, 0, (n >> 8) as u8, n as u8)
    }

    /// The server address the next host gets.
    pub fn next_server_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.next_ip(), SERVER_PORT)
    }

    /// Starts a node with `cfg` (its server port is [`SERVER_PORT`]).
    pub fn add_node(&mut self, mut cfg: DhtConfig) -> HostId {
        let h = self.hosts.len();
        let ip = self.next_ip();
        cfg.rpc.server_port = SERVER_PORT;
        let rng =
            ChaCha8Rng::seed_from_u64(self.seed.wrapping_mul(1_000_003).wrapping_add(h as u64));
        let mut node = DhtNode::new(cfg, rng, self.now);
        node.set_wall_clock(self.now, EPOCH_UNIX_MS + self.now.as_millis());
        self.hosts.push(Host {
            node,
            ip,
            events: VecDeque::new(),
            pool: BTreeMap::new(),
            cut: false,
        });
        self.flush(h);
        h
    }

    /// A public DHT: a bootstrapper and `n - 1` persistent nodes joining it, run until every
    /// one is bootstrapped and reachable. Returns their ids (the bootstrapper first).
    pub fn public_dht(&mut self, n: usize) -> Vec<HostId> {
        let boot = self.next_server_addr();
        let mut ids = vec![self.add_node(DhtConfig {
            rpc: RpcConfig::bootstrapper(boot),
            ..DhtConfig::default()
        })];
        for _ in 1..n {
            self.advance(Duration::from_millis(100));
            ids.push(self.add_node(Self::joining(vec![boot], Persistence::Persistent)));
        }
        let all = ids.clone();
        let ok = self.run_until(Duration::from_secs(120), |net| {
            all.iter().all(|&h| {
                let rpc = net.hosts[h].node.rpc();
                rpc.is_bootstrapped() && !rpc.is_firewalled()
            })
        });
        assert!(ok, "the public DHT did not settle");
        ids
    }

    /// Options of a node that bootstraps from `bootstrap`.
    pub fn joining(bootstrap: Vec<SocketAddrV4>, persistence: Persistence) -> DhtConfig {
        DhtConfig {
            rpc: RpcConfig {
                bootstrap,
                persistence,
                ..RpcConfig::default()
            },
            ..DhtConfig::default()
        }
    }

    /// Adds a node joining the DHT through `bootstrap` and runs until it is bootstrapped.
    pub fn join(&mut self, bootstrap: SocketAddrV4, persistence: Persistence) -> HostId {
        let h = self.add_node(Self::joining(vec![bootstrap], persistence));
        let ok = self.run_until(Duration::from_secs(60), |net| {
            net.hosts[h].node.rpc().is_bootstrapped()
        });
        assert!(ok, "host {h} did not bootstrap");
        h
    }

    /// The node on `h`.
    pub fn node(&self, h: HostId) -> &DhtNode<ChaCha8Rng> {
        &self.hosts[h].node
    }

    /// Calls into the node on `h` at the current time, then drains its output.
    pub fn with<T>(
        &mut self,
        h: HostId,
        f: impl FnOnce(&mut DhtNode<ChaCha8Rng>, Instant) -> T,
    ) -> T {
        let now = self.now;
        let out = f(&mut self.hosts[h].node, now);
        self.flush(h);
        out
    }

    /// Feeds `bytes` to host `h`'s `socket` as if `from` sent them now (a peer played by hand).
    pub fn inject(&mut self, h: HostId, socket: SocketKind, from: SocketAddrV4, bytes: &[u8]) {
        let now = self.now;
        self.hosts[h].node.handle_datagram(now, socket, from, bytes);
        self.flush(h);
    }

    /// Takes the datagrams sent to addresses outside the network.
    pub fn take_outbox(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes host `h`'s events.
    pub fn take_events(&mut self, h: HostId) -> Vec<DhtEvent> {
        self.hosts[h].events.drain(..).collect()
    }

    /// Takes the first event of `h` that `pick` maps to something, leaving the others.
    pub fn take_event<T>(
        &mut self,
        h: HostId,
        mut pick: impl FnMut(&DhtEvent) -> Option<T>,
    ) -> Option<T> {
        let events = &mut self.hosts[h].events;
        let i = events.iter().position(|e| pick(e).is_some())?;
        events.remove(i).as_ref().and_then(pick)
    }

    /// Drains host `h`: socket commands (binding pool sockets), events, transmits.
    pub fn flush(&mut self, h: HostId) {
        let now = self.now;
        loop {
            let host = &mut self.hosts[h];
            while let Some(cmd) = host.node.poll_socket_command() {
                match cmd {
                    SocketCommand::Bind(id) => {
                        let port = u16::try_from(u32::from(POOL_PORT_BASE) + id)
                            .expect("pool socket id within the harness's port range");
                        host.pool.insert(id, port);
                    }
                    SocketCommand::Close(id) => {
                        host.pool.remove(&id);
                    }
                }
            }
            while let Some(ev) = host.node.poll_event() {
                host.events.push_back(ev);
            }
            let Some(t) = host.node.poll_transmit(now, &mut self.buf) else {
                break;
            };
            let Some(from) = host.addr(t.socket) else {
                continue; // sent from a socket already closed: dropped, as a failed send
            };
            let sent = Sent {
                at: now,
                host: h,
                socket: t.socket,
                from,
                to: t.to,
                bytes: self.buf[..t.len].to_vec(),
                ttl: t.ttl,
            };
            if self.record {
                self.log.push(sent.clone());
            }
            if self.hosts[h].cut {
                continue;
            }
            if self.host_at(t.to).is_some() {
                self.seq += 1;
                self.wire.insert((now + self.latency, self.seq), sent);
            } else {
                self.outbox.push(sent);
            }
        }
    }

    /// The host and socket bound at `addr`.
    pub fn host_at(&self, addr: SocketAddrV4) -> Option<(HostId, SocketKind)> {
        let h = self.hosts.iter().position(|x| x.ip == *addr.ip())?;
        Some((h, self.hosts[h].socket_on(addr.port())?))
    }

    /// The next instant anything happens.
    pub fn next_event(&self) -> Option<Instant> {
        let arrival = self.wire.keys().next().map(|(t, _)| *t);
        let timer = self
            .hosts
            .iter()
            .filter_map(|h| h.node.poll_timeout())
            .min();
        [arrival, timer].into_iter().flatten().min()
    }

    /// Moves to the next instant anything happens and runs it: arrivals first, then due
    /// timers. False when nothing is scheduled.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        while let Some(entry) = self.wire.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let d = entry.remove();
            // The socket may have closed while the datagram was on its way.
            if let Some((h, socket)) = self.host_at(d.to).filter(|(h, _)| !self.hosts[*h].cut) {
                self.delivered += 1;
                self.hosts[h]
                    .node
                    .handle_datagram(now, socket, d.from, &d.bytes);
                self.flush(h);
            }
        }
        for h in 0..self.hosts.len() {
            if self.hosts[h].node.poll_timeout().is_some_and(|t| t <= now) {
                self.hosts[h].node.handle_timeout(now);
                self.flush(h);
            }
        }
        true
    }

    /// Runs until `done` holds (checked after every step) or `limit` of virtual time passed;
    /// returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.next_event().is_none_or(|t| t > end) {
                self.now = self.now.max(end);
                return done(self);
            }
            self.step();
        }
    }

    /// Runs everything due in the next `d`, then sets the clock to its end.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.next_event().is_some_and(|t| t <= end) {
            self.step();
        }
        self.now = self.now.max(end);
    }
}
