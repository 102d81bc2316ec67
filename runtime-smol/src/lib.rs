//! hdht on smol (async-io). [`Dht`] binds the node's two UDP sockets, runs one I/O task that
//! feeds the sans-IO core, and exposes the async API of [`DhtHandle`] (through `Deref`) — the
//! same API as `hdht-tokio`.
//!
//! The I/O task is spawned on a small global executor thread (`smol::spawn`'s model), so a
//! `Dht` works under `smol::block_on`, `async_io::block_on` or any executor.

use std::net::{Ipv4Addr, UdpSocket};
use std::ops::Deref;
use std::sync::OnceLock;

use async_io::{Async, Timer};
use futures_lite::future;
use hdht_core::rpc::SocketKind;
use hdht_driver::udp::{self, RecvBatch, SendBatch, UdpSocketState};
use hdht_driver::{BoundNode, Shared};

/// Batched receives per wake-up before the loop looks at timers and user calls again.
const MAX_RECV_ROUNDS: usize = 16;
pub use hdht_driver::{
    DhtError, DhtHandle, DhtOptions, IncomingRequests, PendingRequest, QueryStream,
    ReceivedRequest,
};

/// A HyperDHT (dht-rpc level) node running on smol.
#[derive(Debug)]
pub struct Dht {
    handle: DhtHandle,
    task: Option<async_task::Task<()>>,
}

impl Deref for Dht {
    type Target = DhtHandle;
    fn deref(&self) -> &DhtHandle {
        &self.handle
    }
}

fn executor() -> &'static async_executor::Executor<'static> {
    static EXECUTOR: OnceLock<async_executor::Executor<'static>> = OnceLock::new();
    EXECUTOR.get_or_init(|| {
        std::thread::Builder::new()
            .name("hdht-smol".into())
            .spawn(|| {
                let ex = executor();
                async_io::block_on(ex.run(future::pending::<()>()));
            })
            .unwrap_or_else(|e| panic!("cannot start the hdht-smol executor thread: {e}"));
        async_executor::Executor::new()
    })
}

impl Dht {
    /// Binds, resolves the bootstrap nodes and starts bootstrapping. Await
    /// [`ready`](DhtHandle::ready) for the end of bootstrap.
    pub async fn new(opts: DhtOptions) -> Result<Dht, DhtError> {
        let bootstrap = if hdht_driver::needs_dns(&opts.bootstrap) {
            let entries = opts.bootstrap.clone();
            blocking::unblock(move || hdht_driver::resolve_bootstrap(&entries)).await?
        } else {
            hdht_driver::resolve_bootstrap(&opts.bootstrap)?
        };
        let bound = BoundNode::bind(&opts, bootstrap)?;
        let server = Sock::new(bound.server)?;
        let client = Sock::new(bound.client)?;
        let task = executor().spawn(io_loop(bound.handle.shared().clone(), server, client));
        Ok(Dht { handle: bound.handle, task: Some(task) })
    }

    /// `DHT.bootstrapper(port, host)`: a bootstrap node for a private network.
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
            task.await;
        }
    }
}

impl Drop for Dht {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.handle.shared().destroy(true);
            task.detach();
        }
    }
}

/// A socket with its batched-I/O state.
struct Sock {
    io: Async<UdpSocket>,
    state: UdpSocketState,
}

impl Sock {
    fn new(io: UdpSocket) -> std::io::Result<Sock> {
        let io = Async::new(io)?;
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
                let _ = sock.io.get_ref().set_ttl(u32::from(ttl));
            }
            let t = g.transmit();
            let r = sock.io.write_with(|io| sock.state.try_send(io.into(), &t)).await;
            if g.ttl.is_some() {
                let _ = sock.io.get_ref().set_ttl(64);
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

/// One non-blocking batched receive from `sock`, fed to the core; false if nothing was ready.
fn drain(shared: &Shared, kind: SocketKind, sock: &Sock, rx: &mut RecvBatch) -> bool {
    match rx.try_recv(&sock.state, sock.io.get_ref().into()) {
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
        future::or(
            future::or(
                async {
                    let _ = server.io.readable().await;
                },
                async {
                    let _ = client.io.readable().await;
                },
            ),
            future::or(
                async {
                    Timer::at(deadline).await;
                },
                shared.io_wakeup(),
            ),
        )
        .await;
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
