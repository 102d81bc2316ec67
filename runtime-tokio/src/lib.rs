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

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;

use hdht_core::rpc::{SocketKind, Transmit};
use hdht_driver::{BoundNode, Shared};
pub use hdht_driver::{
    DhtError, DhtHandle, DhtOptions, IncomingRequests, PendingRequest, QueryStream,
    ReceivedRequest,
};
use tokio::net::UdpSocket;
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
        let server = UdpSocket::from_std(bound.server)?;
        let client = UdpSocket::from_std(bound.client)?;
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

async fn send_all(out: &mut Vec<Transmit>, server: &UdpSocket, client: &UdpSocket) {
    for t in out.drain(..) {
        let sock = match t.socket {
            SocketKind::Server => server,
            SocketKind::Client => client,
        };
        if let Some(ttl) = t.ttl {
            let _ = sock.set_ttl(u32::from(ttl));
        }
        // A failed send is a lost datagram; the protocol retries.
        let _ = sock.send_to(&t.payload, t.to).await;
        if t.ttl.is_some() {
            let _ = sock.set_ttl(64);
        }
    }
}

/// The one task per node: sockets and the core's timer in, transmits out.
async fn io_loop(shared: Shared, server: UdpSocket, client: UdpSocket) {
    let mut server_buf = vec![0u8; 65536];
    let mut client_buf = vec![0u8; 65536];
    let mut out = Vec::new();
    loop {
        shared.drain_transmits(&mut out);
        send_all(&mut out, &server, &client).await;
        let Some(deadline) = shared.poll_timeout() else { break };
        tokio::select! {
            r = server.recv_from(&mut server_buf) => {
                if let Ok((n, SocketAddr::V4(from))) = r {
                    shared.handle_datagram(SocketKind::Server, from, &server_buf[..n]);
                }
            }
            r = client.recv_from(&mut client_buf) => {
                if let Ok((n, SocketAddr::V4(from))) = r {
                    shared.handle_datagram(SocketKind::Client, from, &client_buf[..n]);
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = shared.io_wakeup() => {}
        }
        if std::time::Instant::now() >= deadline {
            shared.handle_timeout();
        }
    }
}
