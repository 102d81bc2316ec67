//! The connections' and servers' state inside the locked core: wakers, queued accepts, how
//! each ended. The user's handles ([`Connection`](crate::Connection),
//! [`Server`](crate::Server)) read and wait on it.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::task::Waker;

use hdht_core::connect::ConnectError;
use hdht_core::dht::{ConnError, ConnId, ConnectEvent, ConnectionInfo, ServerId};

use crate::firewall::{Firewall, FirewallAsk, FirewallRequest, Question};

#[derive(Debug, Default)]
pub(crate) struct ConnSlot {
    /// How the connect ended, until [`Connecting`](crate::Connecting) takes it. Boxed: a
    /// slot lives as long as its connection, and this is only ever filled for a moment.
    pub(crate) open: Option<Box<Result<ConnectionInfo, ConnectError>>>,
    pub(crate) open_waker: Option<Waker>,
    pub(crate) read_waker: Option<Waker>,
    pub(crate) write_waker: Option<Waker>,
    /// Who waits for a flush or a shutdown.
    pub(crate) flush_waker: Option<Waker>,
    /// Who waits in [`Closed`](crate::Closed).
    pub(crate) close_wakers: Vec<Waker>,
    pub(crate) closed: Option<Option<ConnError>>,
    pub(crate) dropped: bool,
    /// [`Closed`](crate::Closed) futures alive: the slot (and the close reason) outlives the
    /// connection for them.
    pub(crate) watchers: usize,
    /// The core forgot the connection (dropped and closed); only watchers keep the slot.
    pub(crate) forgotten: bool,
}

pub(crate) struct ServerSlot {
    pub(crate) incoming: VecDeque<(ConnId, ConnectionInfo)>,
    pub(crate) accept_waker: Option<Waker>,
    pub(crate) listening: bool,
    pub(crate) listen_waker: Option<Waker>,
    pub(crate) firewall: Option<Firewall>,
    pub(crate) closed: bool,
    /// The unannounce of a closing server is running.
    pub(crate) unannouncing: bool,
    /// Closed and unannounced: [`ServerClosed`](crate::ServerClosed) resolves.
    pub(crate) done: bool,
    pub(crate) close_wakers: Vec<Waker>,
}

impl ServerSlot {
    /// A server not listening yet; `firewall` decides its handshakes (`None`: accept all).
    pub(crate) fn new(firewall: Option<Firewall>) -> Self {
        ServerSlot {
            incoming: VecDeque::new(),
            accept_waker: None,
            listening: false,
            listen_waker: None,
            firewall,
            closed: false,
            unannouncing: false,
            done: false,
            close_wakers: Vec::new(),
        }
    }

    pub(crate) fn finish_close(&mut self) {
        self.unannouncing = false;
        self.done = true;
        self.close_wakers.drain(..).for_each(Waker::wake);
    }
}

impl std::fmt::Debug for ServerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSlot")
            .field("listening", &self.listening)
            .finish_non_exhaustive()
    }
}

/// Connection bookkeeping inside the shared core.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    /// Boxed: sequential ids leave B-tree nodes half full, and a slot inline (~150 bytes)
    /// cost twice its size per idle connection.
    pub(crate) conns: BTreeMap<ConnId, Box<ConnSlot>>,
    /// Connections dropped or closed since the last [`take_forgettable`](Self::take_forgettable):
    /// the only ones that may have become forgettable (both conditions only ever turn true),
    /// so a dispatch does not walk every connection.
    pub(crate) maybe_forgettable: Vec<ConnId>,
    pub(crate) servers: BTreeMap<ServerId, ServerSlot>,
    /// Servers of a swarm (the swarm closes them itself).
    pub(crate) swarm_servers: std::collections::BTreeSet<ServerId>,
}

pub(crate) fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

impl Connections {
    /// Routes one connect event; returns a firewall question to answer, if any.
    pub(crate) fn dispatch(&mut self, ev: ConnectEvent) -> Option<FirewallAsk> {
        match ev {
            ConnectEvent::Open { conn, info } => {
                let slot = self.conns.entry(conn).or_default();
                slot.open = Some(Box::new(Ok(info)));
                wake(&mut slot.open_waker);
            }
            ConnectEvent::Failed { conn, error } => {
                let slot = self.conns.entry(conn).or_default();
                slot.open = Some(Box::new(Err(error)));
                wake(&mut slot.open_waker);
            }
            ConnectEvent::Incoming { server, conn, info } => {
                if let Some(s) = self.servers.get_mut(&server) {
                    // The accepted handle carries the info; nothing takes it from the slot.
                    self.conns.insert(conn, Box::default());
                    s.incoming.push_back((conn, info));
                    wake(&mut s.accept_waker);
                }
            }
            ConnectEvent::Firewall {
                server,
                handshake,
                remote_public_key,
                client_address,
                payload,
            } => {
                let firewall = self.servers.get(&server).and_then(|s| s.firewall.clone());
                return Some(match firewall {
                    Some(firewall) => FirewallAsk::Ask(Box::new(Question {
                        handshake,
                        server,
                        firewall,
                        request: FirewallRequest {
                            remote_public_key,
                            client_address,
                            payload: *payload,
                        },
                    })),
                    // Closed: the core answers nothing for a closing server anyway.
                    None => FirewallAsk::Decide(handshake, false),
                });
            }
            ConnectEvent::Listening { server } => {
                if let Some(s) = self.servers.get_mut(&server) {
                    s.listening = true;
                    wake(&mut s.listen_waker);
                }
            }
            ConnectEvent::Readable(conn) | ConnectEvent::End(conn) => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    wake(&mut slot.read_waker);
                }
            }
            ConnectEvent::Writable(conn) => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    wake(&mut slot.write_waker);
                }
            }
            ConnectEvent::Flushed(conn) => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    wake(&mut slot.flush_waker);
                }
            }
            ConnectEvent::Closed { conn, error } => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    slot.closed = Some(error);
                    self.maybe_forgettable.push(conn);
                    wake(&mut slot.read_waker);
                    wake(&mut slot.write_waker);
                    wake(&mut slot.flush_waker);
                    wake(&mut slot.open_waker);
                    slot.close_wakers.drain(..).for_each(Waker::wake);
                }
            }
        }
        None
    }

    /// Takes over a connection the swarm opened (its `Open`/`Incoming` never came here).
    pub(crate) fn adopt(&mut self, conn: ConnId, info: ConnectionInfo) {
        let slot = self.conns.entry(conn).or_default();
        slot.open = Some(Box::new(Ok(info)));
    }

    /// A connection whose handle is gone or will never exist (the core forgets it once closed).
    pub(crate) fn mark_dropped(&mut self, conn: ConnId) {
        if let Some(s) = self.conns.get_mut(&conn) {
            s.dropped = true;
            self.maybe_forgettable.push(conn);
        }
    }

    /// Connections whose handles are gone and which have closed: the core may forget them.
    /// Their slots stay while a [`Closed`](crate::Closed) watches them.
    pub(crate) fn take_forgettable(&mut self) -> Vec<ConnId> {
        if self.maybe_forgettable.is_empty() {
            return Vec::new();
        }
        let mut done = std::mem::take(&mut self.maybe_forgettable);
        done.sort_unstable();
        done.dedup();
        done.retain(|c| {
            self.conns
                .get(c)
                .is_some_and(|s| s.dropped && s.closed.is_some() && !s.forgotten)
        });
        for c in &done {
            if let Some(s) = self.conns.get_mut(c) {
                s.forgotten = true;
                if s.watchers == 0 {
                    self.conns.remove(c);
                }
            }
        }
        done
    }

    /// An unannounce finished: the server it closed is done.
    pub(crate) fn server_unannounced(&mut self, server: ServerId) {
        if let Some(s) = self.servers.get_mut(&server) {
            s.finish_close();
        }
    }

    /// `server` is a swarm's: its firewall questions stay valid although it has no slot here.
    pub(crate) fn swarm_server(&mut self, server: ServerId) {
        self.swarm_servers.insert(server);
    }

    /// Servers that closed (or are gone): their pending firewall decisions are moot.
    pub(crate) fn closed_servers(
        &self,
        among: impl Iterator<Item = ServerId>,
    ) -> std::collections::BTreeSet<ServerId> {
        among
            .filter(|id| {
                !self.swarm_servers.contains(id) && self.servers.get(id).is_none_or(|s| s.closed)
            })
            .collect()
    }

    /// Wakes everything (the node was destroyed).
    pub(crate) fn wake_all(&mut self) {
        for s in self.conns.values_mut() {
            wake(&mut s.open_waker);
            wake(&mut s.read_waker);
            wake(&mut s.write_waker);
            wake(&mut s.flush_waker);
            s.close_wakers.drain(..).for_each(Waker::wake);
        }
        for s in self.servers.values_mut() {
            wake(&mut s.accept_waker);
            wake(&mut s.listen_waker);
            // The node is gone: nothing will ask the firewalls again.
            s.firewall = None;
            s.close_wakers.drain(..).for_each(Waker::wake);
        }
    }
}

/// The I/O error a connection's failure reads as: the peer's abort is `ConnectionReset`, a
/// dead peer (nothing heard, retransmissions given up) `TimedOut`; the error's source is the
/// [`ConnError`] with the exact reason.
pub(crate) fn io_err(e: ConnError) -> io::Error {
    use hdht_core::secret_stream::SecretStreamError as Crypto;
    use hdht_core::udx::StreamError as Transport;
    let kind = match e {
        ConnError::Transport(Transport::Reset) => io::ErrorKind::ConnectionReset,
        ConnError::Transport(Transport::TimedOut) | ConnError::Crypto(Crypto::TimedOut) => {
            io::ErrorKind::TimedOut
        }
        ConnError::Crypto(_) => io::ErrorKind::InvalidData,
        ConnError::NotOpen => io::ErrorKind::NotConnected,
        ConnError::Ended => io::ErrorKind::BrokenPipe,
        ConnError::Destroyed => io::ErrorKind::ConnectionAborted,
        ConnError::NotMessageFramed | ConnError::MessageTooLarge { .. } => {
            io::ErrorKind::InvalidInput
        }
    };
    io::Error::new(kind, e)
}

/// [`io_err`] for a call on `conn`: when the core no longer knows the connection ("not
/// open") but it closed with an error, that error — a connection that timed out reads as
/// `TimedOut` from every call, however late.
pub(crate) fn conn_io_err(slots: &Connections, conn: ConnId, e: ConnError) -> io::Error {
    if matches!(e, ConnError::NotOpen) {
        if let Some(Some(closed)) = slots.conns.get(&conn).and_then(|s| s.closed.clone()) {
            return io_err(closed);
        }
    }
    io_err(e)
}

impl Connections {
    /// Tracks a server the application does not accept from (the node's relay): only its
    /// listening state, for [`listening`](Self::listening).
    pub(crate) fn track_server(&mut self, id: ServerId) {
        self.servers.insert(id, ServerSlot::new(None));
    }

    /// Whether server `id` announced itself; `None` if it is gone.
    pub(crate) fn listening(&mut self, id: ServerId, waker: &Waker) -> Option<bool> {
        let s = self.servers.get_mut(&id)?;
        if !s.listening {
            s.listen_waker = Some(waker.clone());
        }
        Some(s.listening)
    }
}
