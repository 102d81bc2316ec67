//! The user-facing node API, identical on every runtime. Runtime crates wrap it in their own
//! `Dht` (which adds construction and the I/O task) and deref to it.

use std::net::{Ipv4Addr, SocketAddrV4};

use hdht_core::crypto::KeyPair;
use hdht_core::dht::{
    DhtConfig, FindPeerReply, ImmutableValue, LookupReply, MutableValue, OpError, OpOutput,
};
use hdht_core::rpc::{
    NodeId, QueryOptions, QueryReply, QuerySpec, RequestSpec, RpcConfig, RpcEvent,
};

use crate::op_options::{AnnounceOptions, MutableGetOptions, MutablePutOptions};
use crate::{
    Clock, DhtError, DhtOptions, IncomingRequests, Node, OpFuture, OpReply, OpStream,
    PendingRequest, QueryStream, Shared,
};
use rand_core::SeedableRng;

/// Builds the core node for bound sockets and resolved bootstrap addresses.
pub fn build_node(
    opts: &DhtOptions,
    server_port: u16,
    bootstrap: Vec<SocketAddrV4>,
    clock: &Clock,
) -> Node {
    let rng = match opts.rng_seed {
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
    cfg.quick_firewall = opts.quick_firewall;
    cfg.concurrency = opts.concurrency;
    cfg.deliver_requests = opts.handle_requests;
    let now = clock.now();
    let dht = DhtConfig {
        rpc: cfg,
        max_size: opts.max_size,
        max_age: opts.max_age,
        store_budget: opts.store_budget,
        connection_budget: opts.connection_budget,
        max_server_handshakes: None,
    };
    let mut node = Node::new(dht, rng, now);
    node.set_random_punch_limits(now, opts.random_punch_interval, opts.defer_random_punch);
    if let Some(kp) = opts.default_key_pair() {
        node.set_default_key_pair(kp);
    }
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    node.set_wall_clock(now, unix_ms);
    node
}

/// A node whose sockets are bound and whose core is built, ready for a runtime to wrap the
/// sockets and spawn its I/O task: everything in `Dht::new` that is not runtime-specific.
#[derive(Debug)]
pub struct BoundNode {
    /// The user-facing handle.
    pub handle: DhtHandle,
    /// The server socket (non-blocking).
    pub server: std::net::UdpSocket,
    /// The client socket (non-blocking).
    pub client: std::net::UdpSocket,
}

impl BoundNode {
    /// Binds the sockets and builds the core for already-resolved bootstrap addresses.
    pub fn bind(
        opts: &DhtOptions,
        bootstrap: Vec<SocketAddrV4>,
    ) -> Result<BoundNode, crate::DhtError> {
        let (server, client) = crate::bind_sockets(opts)?;
        let (server_addr, client_addr) = (crate::local_v4(&server)?, crate::local_v4(&client)?);
        let clock = Clock::default();
        let mut node = build_node(opts, server_addr.port(), bootstrap, &clock);
        // Local addresses for the LAN shortcut: the machine's interfaces (read again every
        // 5 s by the I/O task's timer calls), or the bind address.
        let locals = crate::interfaces::local_addresses(server_addr);
        tracing::debug!(server = %server_addr, client = %client_addr, local_addresses = ?locals, "node bound");
        node.set_local_addresses(locals);
        let shared = Shared::new(node, clock);
        shared.watch_interfaces(server_addr);
        let handle = DhtHandle::new(shared, server_addr, client_addr);
        Ok(BoundNode {
            handle,
            server,
            client,
        })
    }
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
        DhtHandle {
            shared,
            server,
            client,
        }
    }

    /// The shared core (for drivers and layers built on top).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Waits until bootstrapping finished (the reference's `ready()` / `fullyBootstrapped()`).
    ///
    /// Unlike the reference, which resolves either way, this tells when the node is alone:
    /// [`DhtError::NoBootstrapReply`] if the bootstrap list was non-empty and no node has
    /// answered (the node keeps running and keeps asking the bootstrap nodes, so a later call
    /// returns `Ok` once one did). A node with an empty bootstrap list — the first node of a
    /// network — is `Ok`. [`DhtError::Destroyed`] if the node was destroyed first.
    pub async fn ready(&self) -> Result<(), DhtError> {
        let r = self.shared.ready().await;
        match &r {
            Ok(()) => tracing::debug!(
                nodes = self.shared.with_node(|n| n.rpc().table().len()),
                "bootstrapped"
            ),
            Err(e) => tracing::debug!(error = %e, "bootstrap outcome"),
        }
        r
    }

    /// `address()`: the local address of the socket used for requests (client socket while
    /// firewalled, server socket otherwise). Host is the bind address.
    pub fn address(&self) -> SocketAddrV4 {
        if self.shared.with_node(|n| n.rpc().is_firewalled()) {
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
        self.shared.with_node(|n| n.rpc().remote_address())
    }

    /// Our public host and port as other nodes report them.
    pub fn public_address(&self) -> (Option<Ipv4Addr>, u16) {
        self.shared.with_node(|n| n.rpc().public_address())
    }

    /// What the connect layer holds right now: server handshakes remembered, client
    /// connects in progress, connections, pool sockets (for monitoring a busy server).
    pub fn connect_stats(&self) -> hdht_core::dht::ConnectStats {
        self.shared.with_node(|n| n.connect_stats())
    }

    /// Our node id, while persistent.
    pub fn id(&self) -> Option<NodeId> {
        self.shared.with_node(|n| n.rpc().id())
    }

    /// Whether the node is firewalled.
    pub fn is_firewalled(&self) -> bool {
        self.shared.with_node(|n| n.rpc().is_firewalled())
    }

    /// Whether the node is ephemeral.
    pub fn is_ephemeral(&self) -> bool {
        self.shared.with_node(|n| n.rpc().is_ephemeral())
    }

    /// Whether bootstrapping finished.
    pub fn is_bootstrapped(&self) -> bool {
        self.shared.with_node(|n| n.rpc().is_bootstrapped())
    }

    /// `toArray()`: routing-table entries, most recently seen first.
    pub fn to_array(&self) -> Vec<SocketAddrV4> {
        self.shared.with_node(|n| n.rpc().to_array())
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
    pub async fn ping(&self, to: SocketAddrV4) -> Result<QueryReply, DhtError> {
        let mut spec = RequestSpec::new(to, hdht_core::rpc::PING);
        spec.internal = true;
        Ok(self.shared.request(spec).await?)
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

    /// Whether this node stores records (it has been persistent).
    pub fn has_storage(&self) -> bool {
        self.shared.with_node(|n| n.has_storage())
    }

    // ----- connections -----

    /// `defaultKeyPair`: the key pair servers listen on and connects use when given none —
    /// [`DhtOptions::key_pair`], else the one [`DhtOptions::seed`] derives, else one the node
    /// drew from its RNG (and keeps).
    pub fn default_key_pair(&self) -> KeyPair {
        self.shared.with_node_mut(|n, _| n.default_key_pair())
    }

    /// `connect(remotePublicKey)`: an end-to-end encrypted connection to the server listening
    /// on that key, found through the DHT, made with the node's
    /// [`default_key_pair`](Self::default_key_pair) (the reference's default).
    pub fn connect(&self, remote_public_key: [u8; 32]) -> crate::Connecting {
        self.shared
            .connect(remote_public_key, hdht_core::dht::ConnectOptions::default())
    }

    /// `connect` with options (key pair, relays to try, `local_connection`, and blind
    /// relaying: `relay_through` as one key, a list or a callback —
    /// [`RelaySelector`](hdht_core::relay::RelaySelector) — with `relay_keep_alive`). A
    /// relayed connection reports it with [`Connection::relay_path`](crate::Connection::relay_path).
    pub fn connect_with(
        &self,
        remote_public_key: [u8; 32],
        opts: hdht_core::dht::ConnectOptions,
    ) -> crate::Connecting {
        self.shared.connect(remote_public_key, opts)
    }

    /// `createServer()`: call [`Server::listen`](crate::Server::listen), then
    /// [`accept`](crate::Server::accept) connections.
    pub fn create_server(&self) -> crate::Server {
        self.shared
            .create_server(hdht_core::dht::ServerOptions::default(), None)
    }

    /// `createServer({ firewall, relayThrough, relayKeepAlive })`: the callback returns `true`
    /// to reject a connection; `opts.relay_through` pairs firewalled clients through a blind
    /// relay ([`RelaySelector`](hdht_core::relay::RelaySelector)).
    pub fn create_server_with(
        &self,
        opts: hdht_core::dht::ServerOptions,
        firewall: Option<crate::Firewall>,
    ) -> crate::Server {
        self.shared.create_server(opts, firewall)
    }

    /// Runs a blind relay on this node (`hyperdht`'s relay server): listens on `key_pair`
    /// and resolves once announced; peers then pair their streams through it and the node
    /// forwards their packets. One per node; it runs until the node is destroyed.
    pub async fn relay_server(&self, key_pair: &KeyPair) -> Result<crate::BlindRelay, DhtError> {
        self.shared
            .relay_server(key_pair, hdht_core::relay::RelayLimits::default())
            .await
    }

    // ----- HyperDHT records -----

    /// `lookup(topic)`: a stream of replies listing the peers announced under `topic`.
    pub fn lookup(&self, topic: [u8; 32]) -> LookupStream {
        self.lookup_with(topic, QueryOptions::default())
    }

    /// `lookup(topic, opts)`: [`lookup`](Self::lookup) with the query options.
    pub fn lookup_with(&self, topic: [u8; 32], opts: QueryOptions) -> LookupStream {
        LookupStream(self.op(opts, |n, now| n.lookup(now, topic)))
    }

    /// `findPeer(publicKey)`: the replies of the nodes holding a server's record (its relays).
    pub fn find_peer(&self, public_key: [u8; 32]) -> FindPeerStream {
        self.find_peer_with(public_key, QueryOptions::default())
    }

    /// `findPeer(publicKey, opts)`: [`find_peer`](Self::find_peer) with the query options.
    pub fn find_peer_with(&self, public_key: [u8; 32], opts: QueryOptions) -> FindPeerStream {
        FindPeerStream(self.op(opts, |n, now| n.find_peer(now, &public_key)))
    }

    /// `announce(topic, keyPair, relayAddresses)`: the lookup's replies stream out; the record is
    /// stored, signed per node, at the closest nodes when the stream finishes. `.await` the
    /// stream to announce and wait for the commits; dropping it early cancels the announce (see
    /// [`LookupStream`]).
    pub fn announce(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: &[SocketAddrV4],
    ) -> LookupStream {
        let opts = AnnounceOptions {
            relay_addresses: relay_addresses.to_vec(),
            ..AnnounceOptions::default()
        };
        self.announce_with(topic, key_pair, opts)
    }

    /// `announce(topic, keyPair, relayAddresses, {bump, ...})`: [`announce`](Self::announce)
    /// with the relay addresses, bump and query options of `opts`.
    pub fn announce_with(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        opts: AnnounceOptions,
    ) -> LookupStream {
        let AnnounceOptions {
            relay_addresses,
            bump,
            query,
        } = opts;
        LookupStream(self.op(query, |n, now| {
            n.announce(now, topic, key_pair, relay_addresses, bump)
        }))
    }

    /// `unannounce(topic, keyPair)`: removes the record from every node that lists it.
    pub async fn unannounce(&self, topic: [u8; 32], key_pair: &KeyPair) -> Result<(), DhtError> {
        self.unannounce_with(topic, key_pair, QueryOptions::default())
            .await
    }

    /// `unannounce(topic, keyPair, opts)`: [`unannounce`](Self::unannounce) with the query
    /// options.
    pub async fn unannounce_with(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        opts: QueryOptions,
    ) -> Result<(), DhtError> {
        self.op(opts, |n, now| n.unannounce(now, topic, key_pair))
            .finish()
            .await?;
        Ok(())
    }

    /// `immutablePut(value)`: stores `value` under its BLAKE2b-256 hash. Values over
    /// [`MAX_IMMUTABLE_VALUE`](hdht_core::dht::MAX_IMMUTABLE_VALUE) (1,850 bytes) fail with
    /// [`OpError::ValueTooLarge`] before anything is sent: their get could not fit a datagram.
    pub async fn immutable_put(&self, value: &[u8]) -> Result<ImmutablePut, DhtError> {
        self.immutable_put_with(value, QueryOptions::default())
            .await
    }

    /// `immutablePut(value, opts)`: [`immutable_put`](Self::immutable_put) with the query
    /// options.
    pub async fn immutable_put_with(
        &self,
        value: &[u8],
        opts: QueryOptions,
    ) -> Result<ImmutablePut, DhtError> {
        let value = value.to_vec();
        match self
            .op(opts, |n, now| n.immutable_put(now, value))
            .finish()
            .await?
        {
            OpOutput::ImmutablePut {
                hash,
                closest_nodes,
            } => Ok(ImmutablePut {
                hash,
                closest_nodes,
            }),
            other => Err(unexpected(other).into()),
        }
    }

    /// `immutableGet(hash)`: the value, verified against its hash; `None` if no node has it.
    pub async fn immutable_get(&self, hash: [u8; 32]) -> Result<Option<ImmutableValue>, DhtError> {
        self.immutable_get_with(hash, QueryOptions::default()).await
    }

    /// `immutableGet(hash, opts)`: [`immutable_get`](Self::immutable_get) with the query
    /// options.
    pub async fn immutable_get_with(
        &self,
        hash: [u8; 32],
        opts: QueryOptions,
    ) -> Result<Option<ImmutableValue>, DhtError> {
        match self
            .op(opts, |n, now| n.immutable_get(now, hash))
            .finish()
            .await?
        {
            OpOutput::ImmutableGet(v) => Ok(v),
            other => Err(unexpected(other).into()),
        }
    }

    /// `mutablePut(keyPair, value, {seq})`: a record signed by `key_pair`, stored under
    /// `H(publicKey)`. Fails with [`OpError::SeqTooLow`] when every node holds a newer one, and
    /// at once, sending nothing, with [`OpError::SeqOutOfRange`] when `seq` is above
    /// [`MAX_SEQ`](hdht_core::dht::MAX_SEQ) (2^53 - 1, the largest seq the reference can
    /// represent; a record put with exactly `MAX_SEQ` can never be replaced under this key),
    /// and with [`OpError::ValueTooLarge`] for a value over
    /// [`max_mutable_value(seq)`](hdht_core::dht::value_size::max_mutable_value) (1,774–1,782
    /// bytes). The errors arrive as [`DhtError::Op`].
    pub async fn mutable_put(
        &self,
        key_pair: &KeyPair,
        value: &[u8],
        seq: u64,
    ) -> Result<MutablePut, DhtError> {
        let opts = MutablePutOptions {
            seq,
            ..MutablePutOptions::default()
        };
        self.mutable_put_with(key_pair, value, opts).await
    }

    /// `mutablePut(keyPair, value, opts)`: [`mutable_put`](Self::mutable_put) with the seq and
    /// query options of `opts`.
    pub async fn mutable_put_with(
        &self,
        key_pair: &KeyPair,
        value: &[u8],
        opts: MutablePutOptions,
    ) -> Result<MutablePut, DhtError> {
        let value = value.to_vec();
        let MutablePutOptions { seq, query } = opts;
        match self
            .op(query, |n, now| n.mutable_put(now, key_pair, value, seq))
            .finish()
            .await?
        {
            OpOutput::MutablePut {
                public_key,
                closest_nodes,
                seq,
                signature,
            } => Ok(MutablePut {
                public_key,
                closest_nodes,
                seq,
                signature,
            }),
            other => Err(unexpected(other).into()),
        }
    }

    /// `mutableGet(publicKey, {seq, latest})`: the record with at least `seq` (with `latest`,
    /// the newest any node has), its signature verified; `None` if none qualifies.
    /// [`OpError::SeqOutOfRange`] at once when `seq` is above
    /// [`MAX_SEQ`](hdht_core::dht::MAX_SEQ). (The reference's default is `latest: true`, as
    /// [`MutableGetOptions::default`].)
    pub async fn mutable_get(
        &self,
        public_key: [u8; 32],
        seq: u64,
        latest: bool,
    ) -> Result<Option<MutableValue>, DhtError> {
        let opts = MutableGetOptions {
            seq,
            latest,
            ..MutableGetOptions::default()
        };
        self.mutable_get_with(public_key, opts).await
    }

    /// `mutableGet(publicKey, opts)`: [`mutable_get`](Self::mutable_get) with the seq, latest
    /// and query options of `opts`.
    pub async fn mutable_get_with(
        &self,
        public_key: [u8; 32],
        opts: MutableGetOptions,
    ) -> Result<Option<MutableValue>, DhtError> {
        let MutableGetOptions { seq, latest, query } = opts;
        match self
            .op(query, |n, now| n.mutable_get(now, public_key, seq, latest))
            .finish()
            .await?
        {
            OpOutput::MutableGet(v) => Ok(v),
            other => Err(unexpected(other).into()),
        }
    }

    /// Starts an operation whose query runs with `query`.
    fn op(
        &self,
        query: QueryOptions,
        start: impl FnOnce(&mut Node, hdht_core::Instant) -> hdht_core::dht::OpId,
    ) -> OpStream {
        self.shared
            .op(|n, now| n.with_query_options(query, |n| start(n, now)))
    }
}

fn unexpected(out: OpOutput) -> OpError {
    // Each operation kind has exactly one output kind; anything else is a bug worth reporting
    // as an error rather than a panic.
    OpError::Unexpected(format!("{out:?}"))
}

/// The result of [`DhtHandle::immutable_put`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutablePut {
    /// `H(value)`: the key to get it by.
    pub hash: [u8; 32],
    /// The closest nodes it was committed to.
    pub closest_nodes: Vec<SocketAddrV4>,
}

/// The result of [`DhtHandle::mutable_put`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutablePut {
    /// The record's key.
    pub public_key: [u8; 32],
    /// The closest nodes it was committed to.
    pub closest_nodes: Vec<SocketAddrV4>,
    /// Its sequence number.
    pub seq: u64,
    /// Its signature.
    pub signature: [u8; 64],
}

/// The replies of a find-peer: a `Stream` of [`FindPeerReply`], then
/// [`finish`](Self::finish) for the closest nodes (or `.await` it for them alone).
/// Dropping it before the end cancels the query.
#[derive(Debug)]
#[must_use = "dropping a find-peer stream cancels it; read it or `.await` it"]
pub struct FindPeerStream(OpStream);

impl std::future::IntoFuture for FindPeerStream {
    type Output = Result<Vec<SocketAddrV4>, DhtError>;
    type IntoFuture = OpFinish;
    /// The closest nodes that answered, discarding the replies.
    fn into_future(self) -> OpFinish {
        OpFinish(self.0.into_future())
    }
}

impl FindPeerStream {
    /// Waits for the end; the closest nodes that answered.
    pub async fn finish(self) -> Result<Vec<SocketAddrV4>, DhtError> {
        match self.0.finish().await? {
            OpOutput::Lookup { closest_nodes } => Ok(closest_nodes),
            other => Err(unexpected(other).into()),
        }
    }
}

impl futures_core::Stream for FindPeerStream {
    type Item = FindPeerReply;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<FindPeerReply>> {
        loop {
            match std::pin::Pin::new(&mut self.0).poll_next(cx) {
                std::task::Poll::Ready(Some(OpReply::FindPeer(r))) => {
                    return std::task::Poll::Ready(Some(r))
                }
                std::task::Poll::Ready(Some(OpReply::Lookup(_))) => continue,
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

/// The replies of a lookup or announce: a `Stream` of [`LookupReply`], then
/// [`finish`](Self::finish) for the closest nodes (and, for an announce, the commit outcome).
///
/// `.await` it (or call `finish().await`) to run it to the end without reading the replies:
/// `dht.announce(topic, &key_pair, &[]).await?` resolves once the record is stored at the closest
/// nodes. The stream ends (`None`) only once the operation is over, commits included.
///
/// Dropping it before the end **cancels** the operation, as dropping a future does: the query
/// stops, and an announce sends no further commits (nodes that already stored the record keep
/// it until it expires, 20 minutes, or is unannounced).
///
/// ```no_run
/// # use hdht_core::crypto::KeyPair;
/// # use hdht_driver::RandomKeyPair;
/// # async fn run(dht: &hdht_driver::DhtHandle) -> Result<(), hdht_driver::DhtError> {
/// let key_pair = KeyPair::random();
/// let topic = [7; 32];
/// let stored_at = dht.announce(topic, &key_pair, &[]).await?; // the announce is complete
/// let closest = dht.lookup(topic).await?; // the replies are discarded
/// # let _ = (stored_at, closest);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping a lookup or announce stream cancels it; read it to the end or `.await` it"]
pub struct LookupStream(OpStream);

impl std::future::IntoFuture for LookupStream {
    type Output = Result<Vec<SocketAddrV4>, DhtError>;
    type IntoFuture = OpFinish;
    /// The closest nodes that answered (and, for an announce, stored the record).
    fn into_future(self) -> OpFinish {
        OpFinish(self.0.into_future())
    }
}

/// The end of a [`LookupStream`] or [`FindPeerStream`] that was awaited: the closest nodes.
/// Dropping it before it resolves cancels the operation.
#[derive(Debug)]
#[must_use = "dropping the future cancels the operation; await it"]
pub struct OpFinish(OpFuture);

impl std::future::Future for OpFinish {
    type Output = Result<Vec<SocketAddrV4>, DhtError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| match r? {
            OpOutput::Lookup { closest_nodes } | OpOutput::Announce { closest_nodes } => {
                Ok(closest_nodes)
            }
            other => Err(unexpected(other).into()),
        })
    }
}

impl LookupStream {
    /// Waits for the end; the closest nodes that answered (and, for an announce, stored it).
    pub async fn finish(self) -> Result<Vec<SocketAddrV4>, DhtError> {
        match self.0.finish().await? {
            OpOutput::Lookup { closest_nodes } | OpOutput::Announce { closest_nodes } => {
                Ok(closest_nodes)
            }
            other => Err(unexpected(other).into()),
        }
    }
}

impl futures_core::Stream for LookupStream {
    type Item = LookupReply;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<LookupReply>> {
        loop {
            match std::pin::Pin::new(&mut self.0).poll_next(cx) {
                std::task::Poll::Ready(Some(OpReply::Lookup(r))) => {
                    return std::task::Poll::Ready(Some(r))
                }
                std::task::Poll::Ready(Some(OpReply::FindPeer(_))) => continue,
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}
