//! The user-facing node API, identical on every runtime. Runtime crates wrap it in their own
//! `Dht` (which adds construction and the I/O task) and deref to it.

use std::net::{Ipv4Addr, SocketAddrV4};

use hdht_core::rpc::{
    NodeId, QueryReply, QuerySpec, RequestError, RequestSpec, RpcConfig, RpcEvent,
};

use crate::{
    Clock, DhtOptions, IncomingRequests, Node, PendingRequest, QueryStream, Shared,
};
use rand_core::SeedableRng;

/// The number of ports tried from a configured port before falling back to a random one.
pub const PORT_RANGE: u16 = 5;

/// The ports to try binding the server socket to, in order; `0` means "any".
pub fn port_candidates(opts: &DhtOptions) -> Vec<u16> {
    if opts.port == 0 {
        return vec![0];
    }
    let mut ports: Vec<u16> = (0..PORT_RANGE).filter_map(|i| opts.port.checked_add(i)).collect();
    if !opts.any_port {
        ports.truncate(1);
    } else {
        ports.push(0);
    }
    ports
}

/// Builds the core node for bound sockets and resolved bootstrap addresses.
pub fn build_node(opts: &DhtOptions, server_port: u16, bootstrap: Vec<SocketAddrV4>) -> Node {
    let rng = match opts.seed {
        Some(seed) => rand_chacha::ChaCha20Rng::from_seed(seed),
        None => rand_chacha::ChaCha20Rng::from_entropy(),
    };
    let mut cfg = match opts.bootstrapper_public_host {
        Some(host) => RpcConfig::bootstrapper(SocketAddrV4::new(host, server_port)),
        None => RpcConfig::default(),
    };
    cfg.bootstrap = bootstrap;
    cfg.server_port = server_port;
    cfg.persistence = opts.persistence;
    cfg.firewalled = opts.firewalled;
    cfg.concurrency = opts.concurrency;
    cfg.deliver_requests = opts.handle_requests;
    Node::new(cfg, rng, Clock::default().now())
}

/// A running node, as the user sees it.
#[derive(Debug, Clone)]
pub struct DhtHandle {
    shared: Shared,
    server: SocketAddrV4,
    client: SocketAddrV4,
}

impl DhtHandle {
    /// Wraps the shared core and the bound socket addresses.
    pub fn new(shared: Shared, server: SocketAddrV4, client: SocketAddrV4) -> Self {
        DhtHandle { shared, server, client }
    }

    /// The shared core (for drivers and layers built on top).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Waits until bootstrapping finished. False if the node was destroyed first.
    pub async fn ready(&self) -> bool {
        self.shared.ready().await
    }

    /// `address()`: the local address of the socket used for requests (client socket while
    /// firewalled, server socket otherwise). Host is the bind address.
    pub fn address(&self) -> SocketAddrV4 {
        if self.shared.with_node(|n| n.is_firewalled()) {
            self.client
        } else {
            self.server
        }
    }

    /// The server socket's local address (what other nodes store once we are persistent).
    pub fn server_address(&self) -> SocketAddrV4 {
        self.server
    }

    /// The client socket's local address.
    pub fn client_address(&self) -> SocketAddrV4 {
        self.client
    }

    /// `remoteAddress()`: our public address once reachable and consistent.
    pub fn remote_address(&self) -> Option<SocketAddrV4> {
        self.shared.with_node(|n| n.remote_address())
    }

    /// Our public host and port as other nodes report them.
    pub fn public_address(&self) -> (Option<Ipv4Addr>, u16) {
        self.shared.with_node(|n| n.public_address())
    }

    /// Our node id, while persistent.
    pub fn id(&self) -> Option<NodeId> {
        self.shared.with_node(|n| n.id())
    }

    /// Whether the node is firewalled.
    pub fn is_firewalled(&self) -> bool {
        self.shared.with_node(|n| n.is_firewalled())
    }

    /// Whether the node is ephemeral.
    pub fn is_ephemeral(&self) -> bool {
        self.shared.with_node(|n| n.is_ephemeral())
    }

    /// Whether bootstrapping finished.
    pub fn is_bootstrapped(&self) -> bool {
        self.shared.with_node(|n| n.is_bootstrapped())
    }

    /// `toArray()`: routing-table entries, most recently seen first.
    pub fn to_array(&self) -> Vec<SocketAddrV4> {
        self.shared.with_node(|n| n.to_array())
    }

    /// `addNode({host, port})`.
    pub fn add_node(&self, addr: SocketAddrV4) {
        self.shared.with_node_mut(|n, now| n.add_node(now, addr));
    }

    /// `findNode(target)`: a stream of replies; `.finish()` gives the closest nodes.
    pub fn find_node(&self, target: NodeId) -> QueryStream {
        let mut spec = QuerySpec::new(target, hdht_core::rpc::FIND_NODE);
        spec.internal = true;
        self.shared.query(spec)
    }

    /// `query({target, command, value}, opts)`: an external-command query.
    pub fn query(&self, spec: QuerySpec) -> QueryStream {
        self.shared.query(spec)
    }

    /// `request(...)`: one request.
    pub fn request(&self, spec: RequestSpec) -> PendingRequest {
        self.shared.request(spec)
    }

    /// `ping(to)`: an internal PING.
    pub async fn ping(&self, to: SocketAddrV4) -> Result<QueryReply, RequestError> {
        let mut spec = RequestSpec::new(to, hdht_core::rpc::PING);
        spec.internal = true;
        self.shared.request(spec).await
    }

    /// `refresh()`: a background FIND_NODE towards a random known node.
    pub fn refresh(&self) {
        self.shared.with_node_mut(|n, now| n.refresh(now));
    }

    /// Requests from other nodes for the application (needs `handle_requests`).
    pub fn incoming_requests(&self) -> IncomingRequests {
        self.shared.incoming_requests()
    }

    /// Node events not consumed elsewhere (persistent, nat-update, add-node, …).
    pub fn take_events(&self) -> Vec<RpcEvent> {
        self.shared.take_events()
    }
}
