//! dht-rpc nodes in the simulator: [`RpcNode`] as an [`App`] (server socket 0, client socket
//! 1), the [`Sim`] alias, and helpers to add, restart and address nodes.

use std::net::{Ipv4Addr, SocketAddrV4};

use hdht_core::rpc::{RpcConfig, RpcEvent, RpcNode, SocketKind};
use hdht_core::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::app::{App, Datagram};
use crate::engine::{Engine, HostSetup};
use crate::network::{HostId, NetError, RealmId, SocketId};

/// The server port every simulated rpc node binds by default (hosts differ by address).
pub const SERVER_PORT: u16 = 49737;

/// How to start one simulated rpc node.
#[derive(Debug, Clone, Default)]
pub struct SimNodeConfig {
    /// The node's rpc options; `server_port` is filled in by the simulator when 0.
    pub rpc: RpcConfig,
}

/// The simulator driving dht-rpc nodes.
pub type Sim = Engine<RpcNode<ChaCha8Rng>>;

/// The rpc node's sockets as simulator socket ids.
pub fn rpc_socket_id(kind: SocketKind) -> SocketId {
    match kind {
        SocketKind::Server => SocketId(0),
        SocketKind::Client => SocketId(1),
        // A bare dht-rpc node never opens pool sockets.
        SocketKind::Pool(n) => SocketId(u16::try_from(n.saturating_add(2)).unwrap_or(u16::MAX)),
    }
}

impl<R: RngCore> App for RpcNode<R> {
    type Event = RpcEvent;

    fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        let kind = match socket.0 {
            0 => SocketKind::Server,
            1 => SocketKind::Client,
            _ => return,
        };
        RpcNode::handle_datagram(self, now, kind, from, bytes);
    }

    fn handle_timeout(&mut self, now: Instant) {
        RpcNode::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Datagram> {
        let t = RpcNode::poll_transmit(self)?;
        Some(Datagram {
            socket: rpc_socket_id(t.socket),
            to: t.to,
            payload: t.payload,
            ttl: t.ttl,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        RpcNode::poll_timeout(self)
    }

    fn poll_event(&mut self) -> Option<RpcEvent> {
        RpcNode::poll_event(self)
    }

    fn crash(&mut self) {
        self.destroy();
    }
}

impl Sim {
    /// The address the next public host's server socket will have.
    pub fn next_server_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(
            self.net()
                .peek_ip(RealmId::INTERNET)
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            SERVER_PORT,
        )
    }

    /// Adds and starts an rpc node on a public address (panics if the address space is
    /// exhausted — 268 million hosts; see [`Sim::add_node_in`]).
    pub fn add_node(&mut self, cfg: SimNodeConfig) -> HostId {
        self.add_node_in(RealmId::INTERNET, cfg)
            .unwrap_or_else(|e| panic!("add_node: {e}"))
    }

    /// Adds and starts an rpc node in `realm` (behind that realm's NAT boxes).
    pub fn add_node_in(&mut self, realm: RealmId, cfg: SimNodeConfig) -> Result<HostId, NetError> {
        self.spawn(realm, |s| rpc_app(s, cfg))
    }

    /// Restarts a host with a fresh rpc node (same or new address).
    pub fn restart_node(
        &mut self,
        h: HostId,
        new_address: bool,
        cfg: SimNodeConfig,
    ) -> Result<(), NetError> {
        self.restart(h, new_address, |s| rpc_app(s, cfg))
    }

    /// A host's server address (its local address: behind a NAT, the private one).
    pub fn server_addr(&self, h: HostId) -> SocketAddrV4 {
        let ip = self.net().host_ip(h).unwrap_or(Ipv4Addr::UNSPECIFIED);
        let port = self
            .try_node(h)
            .map_or(SERVER_PORT, |n| n.config().server_port);
        SocketAddrV4::new(ip, port)
    }

    /// Stops a host: its node is destroyed and datagrams to it vanish.
    pub fn kill(&mut self, h: HostId) {
        let _ = self.crash(h);
    }
}

/// Binds an rpc node's two sockets (server on its configured port or [`SERVER_PORT`], client
/// on an ephemeral port) and builds the node.
fn rpc_app(s: &mut HostSetup<'_>, cfg: SimNodeConfig) -> Result<RpcNode<ChaCha8Rng>, NetError> {
    let mut rpc = cfg.rpc;
    // The simulated internet numbers hosts sequentially (256 to a /24), so the per-/24
    // routing-table cap would measure the numbering, not the network: off in the simulator.
    rpc.ip_limits = None;
    if rpc.server_port == 0 {
        rpc.server_port = SERVER_PORT;
    }
    let server = s.bind(rpc.server_port)?;
    let client = s.bind(0)?;
    debug_assert_eq!((server, client), (SocketId(0), SocketId(1)));
    let rng = ChaCha8Rng::seed_from_u64(s.seed());
    Ok(RpcNode::new(rpc, rng, s.now()))
}
