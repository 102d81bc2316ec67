//! hdht on tokio. [`Dht`] binds the node's two UDP sockets, runs one I/O task that feeds the
//! sans-IO core, and exposes the async API of [`DhtHandle`] (through `Deref`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), hdht_tokio::DhtError> {
//! use hdht_tokio::{Dht, DhtOptions};
//! let dht = Dht::new(DhtOptions { bootstrap: vec!["127.0.0.1:49737".into()], ..Default::default() }).await?;
//! dht.ready().await;
//! # Ok(()) }
//! ```

use std::net::Ipv4Addr;
use std::ops::Deref;

use hdht_core::rpc::SocketKind;
use hdht_driver::udp::{self, RecvBatch, SendBatch, UdpSocketState};
use hdht_driver::{BoundNode, Shared};
pub use hdht_driver::{
    DhtError, DhtHandle, DhtOptions, IncomingRequests, PendingRequest, QueryStream,
    ReceivedRequest,
};
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
        let task = tokio::spawn(io_loop(bound.handle.shared().clone(), server, client));
        Ok(Dht { handle: bound.handle, task: Some(task) })
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

/// Sends everything the core has queued: GSO runs where possible, one lock per batch.
async fn flush(shared: &Shared, batch: &mut SendBatch, server: &Sock, client: &Sock) {
    let mut no_gso = false;
    loop {
        let more = shared.fill_send_batch(batch);
        loop {
            let Some(socket) = batch.peek(1).map(|g| g.socket) else { break };
            let sock = match socket {
                SocketKind::Server => server,
                SocketKind::Client => client,
                // Pool sockets are not bound by this driver yet: the datagram is lost.
                SocketKind::Pool(_) => {
                    batch.advance(1);
                    continue;
                }
            };
            let Some(g) = batch.peek(if no_gso { 1 } else { sock.state.max_gso_segments() }) else { break };
            if let Some(ttl) = g.ttl {
                let _ = sock.io.set_ttl(u32::from(ttl));
            }
            let t = g.transmit();
            let r = sock.io.async_io(Interest::WRITABLE, || sock.state.try_send((&sock.io).into(), &t)).await;
            if g.ttl.is_some() {
                let _ = sock.io.set_ttl(64);
            }
            let n = g.segments;
            if r.is_err() && n > 1 && !no_gso {
                // The kernel refused the GSO run: send its datagrams one by one from now on.
                no_gso = true;
                continue;
            }
            // Otherwise a failed send is a lost datagram; the protocol retries.
            batch.advance(n);
        }
        if !more {
            break;
        }
    }
}

/// Receives from `sock` in batches until it has nothing ready (bounded), sending what each
/// batch produced (acknowledgements) before the next.
fn drain(shared: &Shared, kind: SocketKind, sock: &Sock, rx: &mut RecvBatch) -> bool {
    match sock.io.try_io(Interest::READABLE, || rx.try_recv(&sock.state, (&sock.io).into())) {
        Ok(n) if n > 0 => {
            shared.handle_recv_batch(kind, rx);
            true
        }
        _ => false,
    }
}

/// The one task per node: sockets and the core's timer in, transmits out.
async fn io_loop(shared: Shared, server: Sock, client: Sock) {
    let mut tx = SendBatch::new();
    let mut rx = RecvBatch::new();
    loop {
        flush(&shared, &mut tx, &server, &client).await;
        let Some(deadline) = shared.poll_timeout() else { break };
        tokio::select! {
            _ = server.io.readable() => {}
            _ = client.io.readable() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = shared.io_wakeup() => {}
        }
        // Everything that is ready, in batches, answering each batch before reading the next.
        for _ in 0..MAX_RECV_ROUNDS {
            let a = drain(&shared, SocketKind::Server, &server, &mut rx);
            let b = drain(&shared, SocketKind::Client, &client, &mut rx);
            if !a && !b {
                break;
            }
            flush(&shared, &mut tx, &server, &client).await;
        }
        if std::time::Instant::now() >= deadline {
            shared.handle_timeout();
        }
    }
}
