//! Encrypted connections and servers as the user sees them: a [`Connection`] is a byte stream
//! (`futures::io` `AsyncRead`/`AsyncWrite`, and with the `tokio` feature tokio's, written once
//! here for both runtimes); a [`Server`] yields connections.

use std::future::Future;
use std::io;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::task::{Context, Poll};

use hdht_core::connect::ConnectError;
use hdht_core::crypto::KeyPair;
use hdht_core::dht::{ConnError, ConnId, ConnectOptions, ConnectionInfo, ServerId, ServerOptions};

use crate::conn_slots::{conn_io_err, io_err, wake, Connections, ServerSlot};
use crate::firewall::Firewall;
use crate::{DhtError, Shared};

impl Shared {
    /// Starts a connect; resolves to the open connection.
    pub fn connect(&self, remote_public_key: [u8; 32], opts: ConnectOptions) -> Connecting {
        let conn = self.with_node_mut(|n, now| n.connect(now, remote_public_key, opts));
        self.with_inner(|inner| {
            inner.connections.conns.entry(conn).or_default();
        });
        Connecting {
            shared: self.clone(),
            conn: Some(conn),
        }
    }

    /// Creates a server.
    pub fn create_server(&self, opts: ServerOptions, firewall: Option<Firewall>) -> Server {
        let ask = firewall.is_some();
        let id = self.with_node_mut(|n, _| {
            n.create_server(ServerOptions {
                firewall: ask,
                ..opts
            })
        });
        self.with_inner(|inner| {
            inner
                .connections
                .servers
                .insert(id, ServerSlot::new(firewall));
        });
        Server {
            shared: self.clone(),
            id,
            public_key: None,
        }
    }
}

/// A connect in progress.
#[derive(Debug)]
#[must_use = "dropping a connect aborts it; await it for the connection"]
pub struct Connecting {
    shared: Shared,
    conn: Option<ConnId>,
}

impl Future for Connecting {
    type Output = Result<Connection, DhtError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(conn) = self.conn else {
            return Poll::Ready(Err(ConnectError::NodeDestroyed.into()));
        };
        let ready = self.shared.with_inner(|inner| {
            let destroyed = inner.node.is_destroyed();
            let slot = inner.connections.conns.entry(conn).or_default();
            match slot.open.take() {
                Some(r) => Some(*r),
                None if destroyed => Some(Err(ConnectError::NodeDestroyed)),
                None => {
                    slot.open_waker = Some(cx.waker().clone());
                    None
                }
            }
        });
        match ready {
            None => Poll::Pending,
            Some(Ok(info)) => {
                self.conn = None;
                Poll::Ready(Ok(Connection::from_parts(self.shared.clone(), conn, &info)))
            }
            Some(Err(e)) => {
                self.conn = None;
                self.shared
                    .with_inner(|inner| inner.connections.conns.remove(&conn));
                Poll::Ready(Err(e.into()))
            }
        }
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.with_node_mut(|n, _| n.conn_destroy(conn));
            self.shared.with_inner(|inner| {
                inner.connections.mark_dropped(conn);
            });
        }
    }
}

/// Reads one connection's [`RelayPath`](hdht_core::dht::RelayPath)
/// ([`Connection::relay_path_watch`]).
#[derive(Debug, Clone)]
pub struct RelayPathWatch {
    shared: Shared,
    conn: ConnId,
}

impl RelayPathWatch {
    /// The connection's path now, as [`Connection::relay_path`]; `None` once it is gone or if
    /// it never tried a relay.
    pub fn get(&self) -> Option<hdht_core::dht::RelayPath> {
        self.shared.with_node(|n| n.conn_relay_path(self.conn))
    }
}

/// An end-to-end encrypted connection to a peer, reached by public key.
///
/// The handle keeps no copy of the connection's keys and handshake hash (an idle connection's
/// memory: 128 bytes in every task that holds one): the node keeps them with the connection,
/// which it forgets only once this handle is dropped, and the accessors read them there.
#[derive(Debug)]
pub struct Connection {
    shared: Shared,
    conn: ConnId,
    is_initiator: bool,
}

impl Connection {
    /// A handle to a connection whose slot exists (the swarm's).
    pub(crate) fn from_parts(shared: Shared, conn: ConnId, info: &ConnectionInfo) -> Self {
        Connection {
            shared,
            conn,
            is_initiator: info.is_initiator,
        }
    }

    /// `f` of what the node knows about this connection. The node keeps the connection while
    /// this handle lives (it forgets only dropped ones), so `None` does not occur.
    fn with_info<T>(&self, f: impl FnOnce(&ConnectionInfo) -> T) -> Option<T> {
        self.shared
            .with_node(|n| n.connection_info(self.conn))
            .as_ref()
            .map(f)
    }

    /// The peer's public key.
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.with_info(|i| i.remote_public_key).unwrap_or_default()
    }

    /// Our public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.with_info(|i| i.public_key).unwrap_or_default()
    }

    /// The Noise handshake hash, the same on both sides.
    pub fn handshake_hash(&self) -> [u8; 64] {
        self.with_info(|i| i.handshake_hash).unwrap_or([0; 64])
    }

    /// Whether we initiated the connection.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// Where the underlying UDX stream is connected.
    pub fn remote_address(&self) -> Option<std::net::SocketAddr> {
        self.shared
            .with_node(|n| n.connection_info(self.conn))
            .and_then(|i| i.remote_address)
            .map(|a| match a {
                core::net::SocketAddr::V4(v4) => std::net::SocketAddr::V4(v4),
                core::net::SocketAddr::V6(v6) => std::net::SocketAddr::V6(v6),
            })
    }

    /// The UDX transport's state: round-trip time, congestion window, pacing rate, path MTU
    /// and packet counters (the reference shows these on `rawStream`). `None` once the
    /// connection has been forgotten.
    pub fn transport(&self) -> Option<hdht_core::dht::TransportInfo> {
        self.shared.with_node(|n| n.connection_transport(self.conn))
    }

    /// How this connection relates to a blind relay (`relayThrough`): `None` if it never
    /// tried one; [`RelayPath::Relayed`](hdht_core::dht::RelayPath::Relayed) while its bytes
    /// cross the relay; [`RelayPath::Upgraded`](hdht_core::dht::RelayPath::Upgraded) once a
    /// punch moved the same stream to a direct path.
    pub fn relay_path(&self) -> Option<hdht_core::dht::RelayPath> {
        self.shared.with_node(|n| n.conn_relay_path(self.conn))
    }

    /// A handle that reads [`relay_path`](Self::relay_path) while the connection itself is
    /// elsewhere (split into halves, moved into a task): to watch the relay → direct upgrade.
    pub fn relay_path_watch(&self) -> RelayPathWatch {
        RelayPathWatch {
            shared: self.shared.clone(),
            conn: self.conn,
        }
    }

    /// Whether the connection's bytes cross a blind relay now.
    pub fn is_relayed(&self) -> bool {
        self.relay_path() == Some(hdht_core::dht::RelayPath::Relayed)
    }

    /// Bytes as they come; `Ok(0)` only at the peer's explicit end of its writes (UDX END
    /// after every byte). A connection that was aborted or timed out reads its buffered bytes,
    /// then the error — never an end of stream.
    fn read_impl(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let conn = self.conn;
        self.shared.with_inner_kick(|inner, now| {
            match inner.node.conn_read(now, conn, buf) {
                Ok(n) if n > 0 => return Poll::Ready(Ok(n)),
                Ok(_) => {}
                Err(_) if inner.node.conn_at_end(conn) => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(conn_io_err(&inner.connections, conn, e))),
            }
            // The peer's direction ended cleanly even if the connection broke afterwards.
            if buf.is_empty() || inner.node.conn_at_end(conn) {
                return Poll::Ready(Ok(0));
            }
            if let Some(Some(err)) = inner
                .connections
                .conns
                .get(&conn)
                .and_then(|s| s.closed.clone())
            {
                return Poll::Ready(Err(io_err(err)));
            }
            if let Some(slot) = inner.connections.conns.get_mut(&conn) {
                slot.read_waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    fn write_impl(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let conn = self.conn;
        self.shared
            .with_inner_kick(|inner, now| match inner.node.conn_write(now, conn, data) {
                Ok(0) if !data.is_empty() => {
                    if let Some(slot) = inner.connections.conns.get_mut(&conn) {
                        slot.write_waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                Err(e) => Poll::Ready(Err(conn_io_err(&inner.connections, conn, e))),
            })
    }

    /// Resolves once the connection has closed: `Ok` when it closed gracefully (both sides
    /// ended and the peer acknowledged our end, so every byte we wrote arrived), the reason
    /// otherwise (`ConnectionReset`: the peer aborted; `TimedOut`: the peer stopped answering;
    /// `ConnectionAborted`: destroyed here, dropped before both sides ended, or its node
    /// destroyed). Independent of the connection's lifetime, so it can watch a connection
    /// whose halves are busy elsewhere, or one that was dropped: it still tells how it ended.
    pub fn closed(&self) -> Closed {
        let conn = self.conn;
        self.shared.with_inner(|inner| {
            if let Some(s) = inner.connections.conns.get_mut(&conn) {
                s.watchers += 1;
            }
        });
        Closed {
            shared: self.shared.clone(),
            conn,
        }
    }

    /// Aborts the connection now: the peer gets a UDX DESTROY and reads an error
    /// (`ConnectionReset`), never a clean end; our reads and writes fail with
    /// `ConnectionAborted`.
    pub fn destroy(&self) {
        let conn = self.conn;
        self.shared
            .with_inner_kick(|inner, _| inner.node.conn_destroy(conn));
    }

    /// Ready once the peer acknowledged every byte written (and our end, after a shutdown);
    /// the connection's error if it breaks first.
    fn poll_acked(
        node: &mut crate::Node,
        slots: &mut Connections,
        conn: ConnId,
        cx: &Context<'_>,
    ) -> Poll<io::Result<()>> {
        match node.conn_flush(conn) {
            Ok(true) => Poll::Ready(Ok(())),
            Ok(false) => {
                if let Some(slot) = slots.conns.get_mut(&conn) {
                    slot.flush_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(conn_io_err(slots, conn, e))),
        }
    }

    /// `flush`: resolves once the peer acknowledged every byte written so far (UDX
    /// acknowledgements: the bytes are in the peer's receive buffer, not necessarily read by
    /// its application). Fails with the connection's error if it breaks first — a flush never
    /// succeeds for bytes the peer did not get.
    fn flush_impl(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let conn = self.conn;
        self.shared
            .with_inner(|inner| Self::poll_acked(&mut inner.node, &mut inner.connections, conn, cx))
    }

    /// `shutdown` / `close`: ends our side (the peer reads to the end, then 0), then waits
    /// until the peer acknowledged the end and everything before it. The peer's direction
    /// stays open: read it to the end to let the connection close.
    fn shutdown_impl(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let conn = self.conn;
        self.shared.with_inner_kick(|inner, _| {
            if let Err(e) = inner.node.conn_end(conn) {
                return Poll::Ready(Err(conn_io_err(&inner.connections, conn, e)));
            }
            Self::poll_acked(&mut inner.node, &mut inner.connections, conn, cx)
        })
    }
}

impl Drop for Connection {
    /// After `shutdown` and a read to the end, the connection finishes by itself (our end still
    /// waits for its acknowledgement). Otherwise dropping aborts it: the peer gets a UDX
    /// DESTROY and reads an error, never a clean end of a stream we cut short. The core
    /// forgets the connection once it has closed.
    fn drop(&mut self) {
        let conn = self.conn;
        self.shared.with_inner_kick(|inner, _| {
            inner.node.conn_drop(conn);
            inner.connections.mark_dropped(conn);
        });
    }
}

/// The future of [`Connection::closed`].
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct Closed {
    shared: Shared,
    conn: ConnId,
}

impl Drop for Closed {
    fn drop(&mut self) {
        let conn = self.conn;
        self.shared.with_inner(|inner| {
            let conns = &mut inner.connections.conns;
            if let Some(s) = conns.get_mut(&conn) {
                s.watchers = s.watchers.saturating_sub(1);
                if s.watchers == 0 && s.forgotten {
                    conns.remove(&conn);
                }
            }
        });
    }
}

impl Future for Closed {
    type Output = io::Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let conn = self.conn;
        self.shared.with_inner(|inner| {
            let destroyed = inner.node.is_destroyed();
            let Some(slot) = inner.connections.conns.get_mut(&conn) else {
                // Only before the connection ever opened (a watcher keeps the slot).
                return Poll::Ready(Err(io_err(ConnError::NotOpen)));
            };
            match slot.closed.clone() {
                Some(None) => Poll::Ready(Ok(())),
                Some(Some(e)) => Poll::Ready(Err(io_err(e))),
                None if destroyed => Poll::Ready(Err(io_err(ConnError::Destroyed))),
                None => {
                    if !slot.close_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        slot.close_wakers.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
    }
}

impl futures_io::AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.read_impl(cx, buf)
    }
}

impl futures_io::AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_impl(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_impl(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shutdown_impl(cx)
    }
}

#[cfg(feature = "tokio")]
impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.read_impl(cx, buf.initialize_unfilled()) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(feature = "tokio")]
impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_impl(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_impl(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shutdown_impl(cx)
    }
}

/// A server accepting connections for one key pair.
#[derive(Debug)]
#[must_use = "dropping a server closes it"]
pub struct Server {
    shared: Shared,
    id: ServerId,
    public_key: Option<[u8; 32]>,
}

impl Server {
    /// `listen(keyPair)`: announces the key and resolves once the first announce completed.
    /// `listen(None)` listens on the node's
    /// [`default_key_pair`](crate::DhtHandle::default_key_pair), as the reference's `listen()`.
    pub async fn listen<'k>(
        &mut self,
        key_pair: impl Into<Option<&'k KeyPair>>,
    ) -> Result<(), DhtError> {
        let id = self.id;
        let given = key_pair.into().cloned();
        let public_key = self.shared.with_node_mut(|n, now| {
            let kp = given.unwrap_or_else(|| n.default_key_pair());
            let public_key = kp.public_key();
            n.listen(now, id, Some(kp)).map(|()| public_key)
        })?;
        self.public_key = Some(public_key);
        std::future::poll_fn(|cx| {
            self.shared.with_inner(|inner| {
                if inner.node.is_destroyed() {
                    return Poll::Ready(Err(ConnectError::NodeDestroyed.into()));
                }
                match inner.connections.servers.get_mut(&id) {
                    Some(s) if s.listening => Poll::Ready(Ok(())),
                    Some(s) => {
                        s.listen_waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                    None => Poll::Ready(Err(ConnectError::NodeDestroyed.into())),
                }
            })
        })
        .await
    }

    /// The public key we listen on.
    pub fn public_key(&self) -> Option<[u8; 32]> {
        self.public_key
    }

    /// The nodes holding our announcement (`relayAddresses`).
    pub fn relay_addresses(&self) -> Vec<SocketAddrV4> {
        let id = self.id;
        self.shared.with_node(|n| n.server_relays(id))
    }

    /// The next incoming connection; `None` once the server or node closed.
    pub async fn accept(&self) -> Option<Connection> {
        let id = self.id;
        let (conn, info) = std::future::poll_fn(|cx| {
            self.shared.with_inner(|inner| {
                let destroyed = inner.node.is_destroyed();
                match inner.connections.servers.get_mut(&id) {
                    Some(s) => match s.incoming.pop_front() {
                        Some(c) => Poll::Ready(Some(c)),
                        None if s.closed || destroyed => Poll::Ready(None),
                        None => {
                            s.accept_waker = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    },
                    None => Poll::Ready(None),
                }
            })
        })
        .await?;
        Some(Connection::from_parts(self.shared.clone(), conn, &info))
    }

    /// `refresh()`: re-announce now.
    pub fn refresh(&self) {
        let id = self.id;
        self.shared
            .with_node_mut(|n, now| n.refresh_server(now, id));
    }

    /// `close()`: stops accepting (handshakes already answered still connect; open
    /// connections are not touched) and unannounces the key. Closing starts at the call;
    /// await the returned future to wait until the unannounce finished (the nodes that held
    /// the record have been told to drop it), as the reference's `await server.close()`.
    pub fn close(&self) -> ServerClosed {
        let id = self.id;
        self.shared.with_inner_kick(|inner, now| {
            let op = inner.node.close_server(now, id);
            if let Some(op) = op {
                inner.server_closes.insert(op, id);
            }
            if let Some(s) = inner.connections.servers.get_mut(&id) {
                s.closed = true;
                // Breaks a cycle if the firewall holds a handle to the node.
                s.firewall = None;
                wake(&mut s.accept_waker);
                if op.is_some() {
                    s.unannouncing = true;
                } else if !s.unannouncing {
                    s.finish_close();
                }
            }
        });
        self.closed()
    }

    /// Resolves once the server has closed: [`close`](Self::close) was called (or the
    /// server dropped) and its unannounce finished, or the node was destroyed.
    pub fn closed(&self) -> ServerClosed {
        ServerClosed {
            shared: self.shared.clone(),
            id: self.id,
        }
    }
}

impl Drop for Server {
    /// Closes the server (the unannounce runs on without anyone waiting).
    fn drop(&mut self) {
        drop(self.close());
    }
}

/// The future of [`Server::close`] and [`Server::closed`].
#[derive(Debug)]
pub struct ServerClosed {
    shared: Shared,
    id: ServerId,
}

impl Future for ServerClosed {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let id = self.id;
        self.shared.with_inner(|inner| {
            if inner.node.is_destroyed() {
                return Poll::Ready(());
            }
            match inner.connections.servers.get_mut(&id) {
                Some(s) if s.done => Poll::Ready(()),
                Some(s) => {
                    if !s.close_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        s.close_wakers.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
                None => Poll::Ready(()),
            }
        })
    }
}
