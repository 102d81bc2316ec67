//! hyperdht nodes in the simulator: [`DhtNode`] wrapped as an [`App`] ([`DhtHost`]), with its
//! pool sockets opened and closed at run time, and helpers to add such nodes.
//!
//! A hyperdht node has dht-rpc's two sockets (server = simulator socket 0, client = 1), bound
//! when the host starts, plus *pool sockets* that holepunching asks for while it runs
//! ([`CoreSocketCommand::Bind`]`(id)`, one per puncher, up to 256 for a birthday punch). The
//! engine binds each on an ephemeral port of the host, as an OS would, and answers with the
//! simulator socket id; pool ids are `u32`s that keep growing while simulator ids are `u16`
//! slots that get reused, so [`DhtHost`] keeps the map both ways. A datagram the node sends
//! from a pool socket it already closed is dropped, as a send on a closed socket fails.
//!
//! TTLs are the core's: a holepunch probe with TTL 5 opens the sender's NAT mappings and then
//! dies on the Internet ([`LinkModel::internet_hops`](crate::LinkModel) = 8 routers), exactly
//! as on a real path; TTL-64 probes arrive.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::{Deref, DerefMut};

use hdht_core::dht::{
    DhtConfig, DhtEvent, DhtNode, SocketCommand as CoreSocketCommand, MAX_DATAGRAM,
};
use hdht_core::rpc::{NodeId, RpcConfig, SocketKind};
use hdht_core::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::app::{App, Datagram, SocketCommand};
use crate::engine::{Engine, HostSetup};
use crate::network::{HostId, NetError, RealmId, SocketId};
use crate::rpc::SERVER_PORT;
use crate::scenario::DhtApp;

/// The simulator driving hyperdht nodes.
pub type DhtSim = Engine<DhtHost>;

/// Wall-clock milliseconds the simulated nodes believe `Instant::ZERO` is (announce bumps are
/// wall-clock timestamps); fixed, so runs replay.
pub const SIM_EPOCH_UNIX_MS: u64 = 1_767_225_600_000;

/// How to start one simulated hyperdht node.
#[derive(Debug, Clone, Default)]
pub struct DhtNodeConfig {
    /// The node's options; `rpc.server_port` is filled in with [`SERVER_PORT`] when 0.
    pub dht: DhtConfig,
}

impl DhtNodeConfig {
    /// A node that bootstraps from `bootstrap` with dht-rpc's defaults otherwise.
    pub fn joining(bootstrap: Vec<SocketAddrV4>) -> Self {
        DhtNodeConfig {
            dht: DhtConfig {
                rpc: RpcConfig {
                    bootstrap,
                    ..RpcConfig::default()
                },
                ..DhtConfig::default()
            },
        }
    }

    /// The first node of a network, on its own public address.
    pub fn bootstrapper(public: SocketAddrV4) -> Self {
        DhtNodeConfig {
            dht: DhtConfig {
                rpc: RpcConfig::bootstrapper(public),
                ..DhtConfig::default()
            },
        }
    }
}

/// A [`DhtNode`] on a simulated host, with the map between its pool sockets and the host's
/// socket slots. Derefs to the node.
#[derive(Debug)]
pub struct DhtHost {
    node: DhtNode<ChaCha8Rng>,
    /// Pool id → simulator socket.
    pool: BTreeMap<u32, SocketId>,
    /// Simulator socket → pool id.
    by_socket: BTreeMap<SocketId, u32>,
    /// The latest time the node was called with (for `crash`, which carries none).
    last_now: Instant,
    /// Datagrams the node sent from a pool socket that was closed (or never bound).
    unbound_sends: u64,
    /// Pool sockets bound so far.
    pool_binds: u64,
    /// Where the node writes each datagram it sends.
    transmit_buf: Vec<u8>,
}

impl DhtHost {
    /// Wraps a node (its server and client sockets must be simulator sockets 0 and 1).
    pub fn new(node: DhtNode<ChaCha8Rng>, now: Instant) -> Self {
        DhtHost {
            node,
            pool: BTreeMap::new(),
            by_socket: BTreeMap::new(),
            last_now: now,
            unbound_sends: 0,
            pool_binds: 0,
            transmit_buf: vec![0; MAX_DATAGRAM],
        }
    }

    /// The node.
    pub fn node(&self) -> &DhtNode<ChaCha8Rng> {
        &self.node
    }

    /// The node, mutably.
    pub fn node_mut(&mut self) -> &mut DhtNode<ChaCha8Rng> {
        &mut self.node
    }

    /// Pool sockets open now.
    pub fn pool_sockets(&self) -> usize {
        self.pool.len()
    }

    /// Pool sockets bound since the node started.
    pub fn pool_binds(&self) -> u64 {
        self.pool_binds
    }

    /// Datagrams dropped because their pool socket was closed.
    pub fn unbound_sends(&self) -> u64 {
        self.unbound_sends
    }

    /// The simulator socket a node socket is bound as (`None` for a pool socket not open).
    pub fn socket_id(&self, kind: SocketKind) -> Option<SocketId> {
        match kind {
            SocketKind::Server => Some(SocketId(0)),
            SocketKind::Client => Some(SocketId(1)),
            SocketKind::Pool(id) => self.pool.get(&id).copied(),
        }
    }

    /// The node socket a simulator socket carries.
    pub fn socket_kind(&self, socket: SocketId) -> Option<SocketKind> {
        match socket.0 {
            0 => Some(SocketKind::Server),
            1 => Some(SocketKind::Client),
            _ => self.by_socket.get(&socket).map(|id| SocketKind::Pool(*id)),
        }
    }
}

impl Deref for DhtHost {
    type Target = DhtNode<ChaCha8Rng>;
    fn deref(&self) -> &Self::Target {
        &self.node
    }
}

impl DerefMut for DhtHost {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.node
    }
}

impl App for DhtHost {
    type Event = DhtEvent;

    fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        self.last_now = now;
        if let Some(kind) = self.socket_kind(socket) {
            self.node.handle_datagram(now, kind, from, bytes);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.node.handle_timeout(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram> {
        loop {
            let t = self.node.poll_transmit(now, &mut self.transmit_buf)?;
            match self.socket_id(t.socket) {
                Some(socket) => {
                    return Some(Datagram {
                        socket,
                        to: t.to,
                        payload: self.transmit_buf[..t.len].to_vec(),
                        ttl: t.ttl,
                    })
                }
                None => self.unbound_sends += 1,
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.node.poll_timeout()
    }

    fn poll_event(&mut self) -> Option<DhtEvent> {
        self.node.poll_event()
    }

    fn crash(&mut self) {
        if !self.node.is_destroyed() {
            self.node.destroy(self.last_now, true);
        }
        // A crashed host sends nothing more: not the DESTROYs a destroy queues for its
        // connections, nor anything else still waiting.
        while self
            .node
            .poll_transmit(self.last_now, &mut self.transmit_buf)
            .is_some()
        {}
        // The engine closes every socket of a crashed host.
        self.pool.clear();
        self.by_socket.clear();
        while self.node.poll_socket_command().is_some() {}
    }

    fn poll_socket_command(&mut self) -> Option<SocketCommand> {
        loop {
            match self.node.poll_socket_command()? {
                CoreSocketCommand::Bind(id) => {
                    return Some(SocketCommand::Bind { tag: u64::from(id) })
                }
                CoreSocketCommand::Close(id) => {
                    if let Some(s) = self.pool.remove(&id) {
                        self.by_socket.remove(&s);
                        return Some(SocketCommand::Close(s));
                    }
                }
            }
        }
    }

    fn socket_bound(&mut self, now: Instant, tag: u64, result: Result<SocketId, NetError>) {
        self.last_now = now;
        let Ok(id) = u32::try_from(tag) else { return };
        match result {
            Ok(s) => {
                self.pool_binds += 1;
                if let Some(old) = self.pool.insert(id, s) {
                    self.by_socket.remove(&old);
                }
                self.by_socket.insert(s, id);
            }
            Err(_) => self.node.socket_failed(now, id),
        }
    }
}

impl DhtApp for DhtHost {
    fn is_bootstrapped(&self) -> bool {
        self.node.rpc().is_bootstrapped()
    }
    fn is_firewalled(&self) -> bool {
        self.node.rpc().is_firewalled()
    }
    fn is_ephemeral(&self) -> bool {
        self.node.rpc().is_ephemeral()
    }
    fn routing_id(&self) -> Option<NodeId> {
        self.node.rpc().id()
    }
    fn table_ids(&self) -> Vec<NodeId> {
        self.node
            .rpc()
            .table()
            .latest_first()
            .map(|e| e.id)
            .collect()
    }
}

impl DhtSim {
    /// The address the next public host's server socket will have.
    pub fn next_dht_server_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(
            self.net()
                .peek_ip(RealmId::INTERNET)
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            SERVER_PORT,
        )
    }

    /// Adds and starts a hyperdht node in `realm` (behind that realm's NAT boxes).
    pub fn add_dht_node_in(
        &mut self,
        realm: RealmId,
        cfg: DhtNodeConfig,
    ) -> Result<HostId, NetError> {
        self.spawn(realm, |s| dht_app(s, cfg))
    }

    /// Restarts a host with a fresh hyperdht node (same or new address).
    pub fn restart_dht_node(
        &mut self,
        h: HostId,
        new_address: bool,
        cfg: DhtNodeConfig,
    ) -> Result<(), NetError> {
        self.restart(h, new_address, |s| dht_app(s, cfg))
    }

    /// A host's server address (its local address: behind a NAT, the private one).
    pub fn dht_server_addr(&self, h: HostId) -> SocketAddrV4 {
        let ip = self.net().host_ip(h).unwrap_or(Ipv4Addr::UNSPECIFIED);
        let port = self
            .try_node(h)
            .map_or(SERVER_PORT, |n| n.rpc().config().server_port);
        SocketAddrV4::new(ip, port)
    }
}

/// Binds a hyperdht node's two dht-rpc sockets (server on its configured port or
/// [`SERVER_PORT`], client on an ephemeral port) and builds the node: wall clock at
/// [`SIM_EPOCH_UNIX_MS`], its server socket's local address advertised for the LAN shortcut.
pub(crate) fn dht_app(s: &mut HostSetup<'_>, cfg: DhtNodeConfig) -> Result<DhtHost, NetError> {
    let mut dht = cfg.dht;
    // The simulated internet numbers hosts sequentially (256 to a /24), so the per-/24
    // routing-table cap would measure the numbering, not the network: off in the simulator.
    dht.rpc.ip_limits = None;
    if dht.rpc.server_port == 0 {
        dht.rpc.server_port = SERVER_PORT;
    }
    let server = s.bind(dht.rpc.server_port)?;
    let client = s.bind(0)?;
    debug_assert_eq!((server, client), (SocketId(0), SocketId(1)));
    let local = s.local_addr(server).ok_or(NetError::NoSuchSocket(0))?;
    let rng = ChaCha8Rng::seed_from_u64(s.seed());
    let now = s.now();
    let mut node = DhtNode::new(dht, rng, now);
    node.set_wall_clock(now, SIM_EPOCH_UNIX_MS + now.as_millis());
    node.set_local_addresses(vec![local]);
    Ok(DhtHost::new(node, now))
}
