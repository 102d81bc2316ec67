//! HyperDHT on tokio: find peers by public key and connect to them end-to-end encrypted through
//! NATs, announce and look up topics, and store signed records, wire-compatible with the Node.js
//! `hyperdht`.
//!
//! This crate is the whole API: [`Dht`] (a node) and, re-exported at the root, every type its
//! methods take or return ([`KeyPair`], [`Connection`], [`Server`], [`DhtOptions`], …). The
//! sans-IO protocol core is there too, as [`core`], for what the flat list leaves out.
//!
//! # Quickstart
//!
//! `Cargo.toml` (tokio's `macros` and `rt-multi-thread` are for `#[tokio::main]` below;
//! `hdht-tokio` itself needs neither):
//!
//! ```toml
//! [dependencies]
//! hdht-tokio = "0.1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "io-util"] }
//! ```
//!
//! A private network on this machine: its first node (the bootstrapper), a server that echoes
//! what it reads, a client that connects to the server by its public key, and a mutable record
//! put and read back. To join the public network, leave `bootstrap` at its default instead.
//!
//! ```
//! use std::net::Ipv4Addr;
//!
//! use hdht_tokio::{Dht, DhtOptions, KeyPair};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // The network's first node, on any free port of 127.0.0.1.
//!     let bootstrapper = Dht::bootstrapper(0, Ipv4Addr::LOCALHOST).await?;
//!     let options = DhtOptions {
//!         bootstrap: vec![bootstrapper.server_address().to_string()],
//!         host: Ipv4Addr::LOCALHOST,
//!         ..DhtOptions::isolated()
//!     };
//!
//!     // A server, reachable by its key pair's public key, echoing every connection.
//!     let server_node = Dht::new(options.clone()).await?;
//!     server_node.ready().await?;
//!     let key_pair = KeyPair::from_seed(&[7; 32]);
//!     let mut server = server_node.create_server();
//!     server.listen(&key_pair).await?;
//!     tokio::spawn(async move {
//!         while let Some(mut connection) = server.accept().await {
//!             tokio::spawn(async move {
//!                 let mut buf = [0; 1024];
//!                 while let Ok(n @ 1..) = connection.read(&mut buf).await {
//!                     if connection.write_all(&buf[..n]).await.is_err() {
//!                         return;
//!                     }
//!                 }
//!                 let _ = connection.shutdown().await;
//!             });
//!         }
//!     });
//!
//!     // A client: connects by public key (holepunching if it must) and is echoed.
//!     let client_node = Dht::new(options).await?;
//!     client_node.ready().await?;
//!     let mut connection = client_node.connect(key_pair.public_key()).await?;
//!     connection.write_all(b"hello").await?;
//!     let mut echo = [0; 5];
//!     connection.read_exact(&mut echo).await?;
//!     assert_eq!(&echo, b"hello");
//!     connection.shutdown().await?;
//!     println!("echoed {}", String::from_utf8_lossy(&echo));
//!
//!     // A mutable record: signed by the key pair, found by its public key.
//!     client_node.mutable_put(&key_pair, b"v1", 1).await?;
//!     let record = client_node.mutable_get(key_pair.public_key(), 0, true).await?;
//!     let record = record.ok_or("no node returned the record")?;
//!     assert_eq!((record.value.as_slice(), record.seq), (&b"v1"[..], 1));
//!     println!("mutable record: {}", String::from_utf8_lossy(&record.value));
//!
//!     client_node.destroy().await;
//!     server_node.destroy().await;
//!     bootstrapper.destroy().await;
//!     Ok(())
//! }
//! ```
//!
//! `examples/` has the same as separate programs (an echo server and client, records, announce
//! and lookup) that talk over any network. `hdht-smol` has the same API on smol.
//!
//! # How it runs
//!
//! [`Dht`] binds the node's two UDP sockets, runs one I/O task that feeds the sans-IO core, and
//! exposes the async API of [`DhtHandle`] (through `Deref`). Pool sockets (holepunching) are
//! bound as the core asks, each with a small receive task; the I/O task sends from them. The
//! node needs tokio's `rt`, `net` and `time` only, and runs on either runtime flavour.

#![deny(missing_docs)]

/// The sans-IO protocol core (`hdht-core`): wire codecs, dht-rpc, Noise, holepunching, UDX, for
/// what the flat list at the root leaves out.
pub use hdht_core as core;
#[doc(inline)]
pub use hdht_driver::api::*;

use std::future::Future;
use std::net::Ipv4Addr;
use std::ops::Deref;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use hdht_core::rpc::SocketKind;
use hdht_driver::flush::{flush, BatchSocket};
use hdht_driver::pool::{PoolReceiver, PoolSockets, RecvStep};
use hdht_driver::udp::{self, RecvBatch, SendBatch, UdpSocketState, UdpTransmit};
use hdht_driver::{BoundNode, Shared};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Batched receives per wake-up before the loop looks at timers and user calls again.
const MAX_RECV_ROUNDS: usize = 16;
use tokio::task::JoinHandle;

/// A HyperDHT (dht-rpc level) node running on tokio.
#[derive(Debug)]
pub struct Dht {
    handle: DhtHandle,
    task: Option<JoinHandle<()>>,
}

impl Deref for Dht {
    type Target = DhtHandle;
    fn deref(&self) -> &DhtHandle {
        &self.handle
    }
}

impl Dht {
    /// Binds, resolves the bootstrap nodes and starts bootstrapping. Await
    /// [`ready`](DhtHandle::ready) for the end of bootstrap.
    pub async fn new(opts: DhtOptions) -> Result<Dht, DhtError> {
        let bootstrap = if hdht_driver::needs_dns(&opts.bootstrap) {
            let entries = opts.bootstrap.clone();
            tokio::task::spawn_blocking(move || hdht_driver::resolve_bootstrap(&entries))
                .await
                .map_err(|e| DhtError::Io(std::io::Error::other(e)))??
        } else {
            hdht_driver::resolve_bootstrap(&opts.bootstrap)?
        };
        let bound = BoundNode::bind(&opts, bootstrap)?;
        let server = Sock::new(UdpSocket::from_std(bound.server)?)?;
        let client = Sock::new(UdpSocket::from_std(bound.client)?)?;
        let shared = bound.handle.shared().clone();
        let pool = Pool::new(shared.clone(), *bound.handle.server_address().ip());
        let task = tokio::spawn(io_loop(shared, server, client, pool));
        Ok(Dht {
            handle: bound.handle,
            task: Some(task),
        })
    }

    /// `DHT.bootstrapper(port, host)`: a bootstrap node for a private network, bound to
    /// `host:port`, with `host` as its public address.
    pub async fn bootstrapper(port: u16, host: Ipv4Addr) -> Result<Dht, DhtError> {
        Self::new(DhtOptions::bootstrapper(port, host)).await
    }

    /// Stops the node and waits for its I/O task to end. Records this node announced are
    /// unannounced first; [`destroy_force`](Self::destroy_force) skips that.
    pub async fn destroy(self) {
        self.destroy_with(false).await
    }

    /// `destroy({force: true})`: stops at once, leaving announced records to expire.
    pub async fn destroy_force(self) {
        self.destroy_with(true).await
    }

    async fn destroy_with(mut self, force: bool) {
        self.handle.shared().destroy(force);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Dht {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.handle.shared().destroy(true);
        }
    }
}

/// A socket with its batched-I/O state.
struct Sock {
    io: UdpSocket,
    state: UdpSocketState,
}

impl Sock {
    fn new(io: UdpSocket) -> std::io::Result<Sock> {
        let state = udp::socket_state(&io)?;
        Ok(Sock { io, state })
    }
}

/// A pool socket's receive task; dropping the handle aborts it.
struct PoolTask(Option<JoinHandle<()>>);

impl PoolTask {
    /// Aborts the task and waits until it is gone (its socket closed with it).
    async fn stop(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for PoolTask {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

type Pool = PoolSockets<Sock, PoolTask>;

/// Registers a freshly bound pool socket with tokio and starts its receive task.
fn open_pool_socket(
    std: std::net::UdpSocket,
    receiver: PoolReceiver,
) -> std::io::Result<(Arc<Sock>, PoolTask)> {
    let sock = Arc::new(Sock::new(UdpSocket::from_std(std)?)?);
    let task = tokio::spawn(pool_recv(receiver, sock.clone()));
    Ok((sock, PoolTask(Some(task))))
}

/// A pool socket's receive task: waits until the socket is readable, feeds what it receives to
/// the core (which wakes the I/O task to send the answers), until aborted or the socket fails.
async fn pool_recv(mut receiver: PoolReceiver, sock: Arc<Sock>) {
    loop {
        if sock.io.readable().await.is_err() {
            receiver.fail();
            return;
        }
        for _ in 0..MAX_RECV_ROUNDS {
            let step = receiver.recv_once(|rx| {
                sock.io.try_io(Interest::READABLE, || {
                    rx.try_recv(&sock.state, (&sock.io).into())
                })
            });
            match step {
                RecvStep::More => {}
                RecvStep::Idle => break,
                RecvStep::Stop => return,
            }
        }
    }
}

impl BatchSocket for Sock {
    fn state(&self) -> &UdpSocketState {
        &self.state
    }
    fn set_ttl(&self, ttl: u8) {
        let _ = self.io.set_ttl(u32::from(ttl));
    }
    fn send(&self, t: &UdpTransmit<'_>) -> impl std::future::Future<Output = std::io::Result<()>> {
        self.io.async_io(Interest::WRITABLE, move || {
            self.state.try_send((&self.io).into(), t)
        })
    }
}

/// Receives from `sock` in batches until it has nothing ready (bounded), sending what each
/// batch produced (acknowledgements) before the next.
fn drain(shared: &Shared, kind: SocketKind, sock: &Sock, rx: &mut RecvBatch) -> bool {
    match sock.io.try_io(Interest::READABLE, || {
        rx.try_recv(&sock.state, (&sock.io).into())
    }) {
        Ok(n) if n > 0 => {
            shared.handle_recv_batch(kind, rx);
            true
        }
        _ => false,
    }
}

/// Resolves when any of the four does (what `tokio::select!` would do here, written out so the
/// crate needs no `macros` feature and forces none on its users). Outcomes are ignored: the loop
/// looks at every source again anyway.
async fn wait_any<A, B, C, D>(a: A, b: B, c: C, d: D)
where
    A: Future,
    B: Future,
    C: Future,
    D: Future,
{
    let (mut a, mut b, mut c, mut d) = (pin!(a), pin!(b), pin!(c), pin!(d));
    std::future::poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready()
            || b.as_mut().poll(cx).is_ready()
            || c.as_mut().poll(cx).is_ready()
            || d.as_mut().poll(cx).is_ready()
        {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// The one I/O task per node: the server and client sockets and the core's timer in,
/// transmits out (from pool sockets too, whose receive tasks wake it).
async fn io_loop(shared: Shared, server: Sock, client: Sock, mut pool: Pool) {
    let mut tx = SendBatch::new();
    let mut rx = RecvBatch::new();
    loop {
        flush(&mut tx, &server, &client, &mut pool, open_pool_socket).await;
        let Some(deadline) = shared.poll_timeout() else {
            // Destroyed, perhaps by another thread after the flush above: what it queued
            // (each connection's DESTROY) still leaves before the sockets close.
            flush(&mut tx, &server, &client, &mut pool, open_pool_socket).await;
            break;
        };
        wait_any(
            server.io.readable(),
            client.io.readable(),
            tokio::time::sleep_until(deadline.into()),
            shared.io_wakeup(),
        )
        .await;
        // Everything that is ready, in batches, answering each batch before reading the next.
        for _ in 0..MAX_RECV_ROUNDS {
            let a = drain(&shared, SocketKind::Server, &server, &mut rx);
            let b = drain(&shared, SocketKind::Client, &client, &mut rx);
            if !a && !b {
                break;
            }
            flush(&mut tx, &server, &client, &mut pool, open_pool_socket).await;
        }
        if std::time::Instant::now() >= deadline {
            shared.handle_timeout();
        }
    }
    // The node is gone: close every pool socket and wait for the receive tasks to end.
    for task in pool.close_all() {
        task.stop().await;
    }
}

#[cfg(test)]
mod tests {
    //! The pool-socket plumbing on a real tokio runtime. The core opens pool sockets only for
    //! holepunching, so these tests apply the core's commands to the I/O task's table directly,
    //! then let the real I/O loop send from them.

    use super::*;
    use hdht_core::dht::SocketCommand;
    use hdht_core::rpc::{RequestError, RequestSpec, PING};
    use std::net::SocketAddrV4;
    use std::sync::Weak;
    use std::time::Duration;

    const STEP: Duration = Duration::from_secs(5);

    fn local(sock: &Sock) -> SocketAddrV4 {
        match sock.io.local_addr().expect("local address") {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(a) => panic!("IPv6 {a}"),
        }
    }

    /// Waits (bounded) until the socket behind `weak` is gone.
    async fn gone(weak: &Weak<Sock>) -> bool {
        for _ in 0..500 {
            if weak.upgrade().is_none() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_sockets_bind_receive_send_and_close() {
        let opts = DhtOptions {
            host: Ipv4Addr::LOCALHOST,
            ..DhtOptions::isolated()
        };
        let bound = BoundNode::bind(&opts, Vec::new()).expect("bind");
        let shared = bound.handle.shared().clone();
        let server = Sock::new(UdpSocket::from_std(bound.server).expect("server")).expect("server");
        let client = Sock::new(UdpSocket::from_std(bound.client).expect("client")).expect("client");
        let mut pool = Pool::new(shared.clone(), *bound.handle.server_address().ip());
        let mut open = open_pool_socket;

        // Bind: on the server socket's host, each on its own port.
        assert!(pool.apply(SocketCommand::Bind(7), &mut open));
        assert!(pool.apply(SocketCommand::Bind(8), &mut open));
        let (addr7, addr8) = (
            local(pool.get(7).expect("7")),
            local(pool.get(8).expect("8")),
        );
        assert_eq!(*addr7.ip(), Ipv4Addr::LOCALHOST);
        assert!(addr7.port() != 0 && addr8.port() != 0 && addr7.port() != addr8.port());
        let weak7 = Arc::downgrade(&pool.get_arc(7).expect("7"));
        let weak8 = Arc::downgrade(&pool.get_arc(8).expect("8"));

        // Receive: the socket's task reads the datagram, feeds the core and wakes the I/O task.
        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("peer");
        let _ = futures_lite::future::poll_once(shared.io_wakeup()).await;
        peer.send_to(b"not dht-rpc", addr7)
            .await
            .expect("send to pool socket");
        tokio::time::timeout(STEP, shared.io_wakeup())
            .await
            .expect("the receive task woke the I/O task");

        // Close: the task ends and the socket with it (its port is free again).
        assert!(pool.apply(SocketCommand::Close(8), &mut open));
        assert!(gone(&weak8).await, "socket 8 closed");
        std::net::UdpSocket::bind(addr8).expect("port of the closed socket is free");

        // Send, through the real I/O loop: a request from pool socket 99 (never bound) is
        // dropped; one from socket 7 leaves from its port, with the TTL put back afterwards.
        let io = tokio::spawn(io_loop(shared.clone(), server, client, pool));
        let peer_addr = match peer.local_addr().expect("peer address") {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(a) => panic!("IPv6 {a}"),
        };
        let mut spec = RequestSpec::new(peer_addr, PING);
        spec.internal = true;
        spec.retries = Some(0);
        spec.timeout = Some(Duration::from_millis(300));
        spec.socket = Some(SocketKind::Pool(99));
        let dropped = shared.request(spec.clone());
        spec.socket = Some(SocketKind::Pool(7));
        spec.ttl = Some(5);
        let sent = shared.request(spec);
        let mut buf = [0u8; 2048];
        let (_, from) = tokio::time::timeout(STEP, peer.recv_from(&mut buf))
            .await
            .expect("a datagram")
            .expect("recv");
        assert_eq!(
            from,
            std::net::SocketAddr::V4(addr7),
            "sent from pool socket 7"
        );
        let mut restored = false;
        for _ in 0..100 {
            if weak7.upgrade().expect("7 open").io.ttl().expect("ttl") == 64 {
                restored = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(restored, "TTL back to 64 after the TTL-5 send");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), peer.recv_from(&mut buf))
                .await
                .is_err(),
            "nothing else was sent (the datagram for socket 99 was dropped)"
        );
        assert_eq!(dropped.await.err(), Some(RequestError::Timeout));
        assert_eq!(sent.await.err(), Some(RequestError::Timeout));

        // Destroy: the I/O task ends only after every pool socket's task has ended.
        shared.destroy(true);
        tokio::time::timeout(STEP, io)
            .await
            .expect("I/O task ended")
            .expect("no panic");
        assert!(weak7.upgrade().is_none(), "socket 7 closed with the node");
        std::net::UdpSocket::bind(addr7).expect("port of socket 7 is free");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_pool_sockets_open_and_close_without_leaks() {
        let opts = DhtOptions {
            host: Ipv4Addr::LOCALHOST,
            ..DhtOptions::isolated()
        };
        let bound = BoundNode::bind(&opts, Vec::new()).expect("bind");
        let shared = bound.handle.shared().clone();
        let mut pool = Pool::new(shared.clone(), Ipv4Addr::LOCALHOST);
        let mut open = open_pool_socket;
        // A birthday punch's worth.
        for id in 0..256 {
            assert!(pool.apply(SocketCommand::Bind(id), &mut open));
        }
        let weak: Vec<Weak<Sock>> = (0..256)
            .map(|id| Arc::downgrade(&pool.get_arc(id).expect("open")))
            .collect();
        for id in (0..256).step_by(2) {
            assert!(pool.apply(SocketCommand::Close(id), &mut open));
        }
        for w in weak.iter().step_by(2) {
            assert!(gone(w).await, "closed sockets are released");
        }
        assert_eq!(pool.len(), 128);
        for task in pool.close_all() {
            tokio::time::timeout(STEP, task.stop())
                .await
                .expect("task stops");
        }
        assert!(
            weak.iter().all(|w| w.upgrade().is_none()),
            "every socket released"
        );
    }
}

/// A Hyperswarm (`new Hyperswarm(opts)`) on its own node: join topics and get one encrypted
/// connection per peer. Derefs to [`SwarmHandle`] for `join`, `flush`, the connection stream
/// and the rest; [`destroy`](Self::destroy) leaves every topic and destroys the node.
#[derive(Debug)]
pub struct Swarm {
    handle: SwarmHandle,
    dht: Dht,
}

impl Deref for Swarm {
    type Target = SwarmHandle;
    fn deref(&self) -> &SwarmHandle {
        &self.handle
    }
}

impl Swarm {
    /// A swarm on a new node built with `dht` (bootstrap list, port, …); resolves once the
    /// node is bootstrapped ([`DhtError::NoBootstrapReply`] if no bootstrap node answered).
    pub async fn new(opts: SwarmOptions, dht: DhtOptions) -> Result<Swarm, DhtError> {
        let dht = Dht::new(dht).await?;
        dht.ready().await?;
        Self::with_dht(dht, opts)
    }

    /// A swarm on an existing node (`new Hyperswarm({ dht })`); the swarm owns it from now on.
    pub fn with_dht(dht: Dht, opts: SwarmOptions) -> Result<Swarm, DhtError> {
        let handle = SwarmHandle::start(dht.shared(), opts)?;
        Ok(Swarm { handle, dht })
    }

    /// The node the swarm runs on.
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// `swarm.destroy()`: leaves every topic (waiting for the unannounces), closes the
    /// swarm's server, then destroys the node (which closes every connection).
    pub async fn destroy(self) {
        self.handle.shutdown().await;
        self.dht.destroy().await;
    }
}
