//! hdht on smol (async-io). [`Dht`] binds the node's two UDP sockets, runs one I/O task that
//! feeds the sans-IO core, and exposes the async API of [`DhtHandle`] (through `Deref`) — the
//! same API as `hdht-tokio`.
//!
//! The I/O task is spawned on a small global executor thread (`smol::spawn`'s model), so a
//! `Dht` works under `smol::block_on`, `async_io::block_on` or any executor.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::Deref;
use std::sync::OnceLock;

use async_io::{Async, Timer};
use futures_lite::future;
use hdht_core::rpc::{SocketKind, Transmit};
use hdht_driver::{BoundNode, Shared};
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
        let server = Async::new(bound.server)?;
        let client = Async::new(bound.client)?;
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

async fn send_all(out: &mut Vec<Transmit>, server: &Async<UdpSocket>, client: &Async<UdpSocket>) {
    for t in out.drain(..) {
        let sock = match t.socket {
            SocketKind::Server => server,
            SocketKind::Client => client,
        };
        if let Some(ttl) = t.ttl {
            let _ = sock.get_ref().set_ttl(u32::from(ttl));
        }
        // A failed send is a lost datagram; the protocol retries.
        let _ = sock.send_to(&t.payload, SocketAddr::V4(t.to)).await;
        if t.ttl.is_some() {
            let _ = sock.get_ref().set_ttl(64);
        }
    }
}

enum Wake {
    Server(std::io::Result<(usize, SocketAddr)>),
    Client(std::io::Result<(usize, SocketAddr)>),
    Other,
}

/// The one task per node: sockets and the core's timer in, transmits out.
async fn io_loop(shared: Shared, server: Async<UdpSocket>, client: Async<UdpSocket>) {
    let mut server_buf = vec![0u8; 65536];
    let mut client_buf = vec![0u8; 65536];
    let mut out = Vec::new();
    loop {
        shared.drain_transmits(&mut out);
        send_all(&mut out, &server, &client).await;
        let Some(deadline) = shared.poll_timeout() else { break };
        let wake = future::or(
            future::or(
                async { Wake::Server(server.recv_from(&mut server_buf).await) },
                async { Wake::Client(client.recv_from(&mut client_buf).await) },
            ),
            future::or(
                async {
                    Timer::at(deadline).await;
                    Wake::Other
                },
                async {
                    shared.io_wakeup().await;
                    Wake::Other
                },
            ),
        )
        .await;
        match wake {
            Wake::Server(Ok((n, SocketAddr::V4(from)))) => {
                shared.handle_datagram(SocketKind::Server, from, &server_buf[..n])
            }
            Wake::Client(Ok((n, SocketAddr::V4(from)))) => {
                shared.handle_datagram(SocketKind::Client, from, &client_buf[..n])
            }
            _ => {}
        }
        if std::time::Instant::now() >= deadline {
            shared.handle_timeout();
        }
    }
}
