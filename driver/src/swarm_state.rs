//! The swarm's state inside the locked core: the sans-IO swarm beside the node, the
//! connections it announced until the user takes them, finished flushes and who waits.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use hdht_core::dht::{ConnId, ConnectEvent, ConnectionInfo, DhtEvent};
use hdht_core::rpc::RpcEvent;
use hdht_core::swarm::{FlushId, Swarm as CoreSwarm, SwarmEvent};

use crate::conn_slots::Connections;
use crate::firewall::{Firewall, FirewallRequest, Question};
use crate::Node;

/// Connections announced but not yet taken from
/// [`SwarmConnections`](crate::SwarmConnections); beyond this the oldest is dropped (aborted),
/// as an unread accept queue would.
pub(crate) const MAX_QUEUED_CONNECTIONS: usize = 1024;

/// A connection announced by the swarm, waiting to be taken.
#[derive(Debug)]
pub(crate) struct Announced {
    pub(crate) conn: ConnId,
    pub(crate) info: ConnectionInfo,
}

/// What became of a node event offered to the swarm.
pub(crate) enum Offer {
    /// Not the swarm's: route it as usual.
    Theirs(DhtEvent),
    /// The swarm took it.
    Taken,
    /// A handshake for the user's swarm firewall.
    Ask(Box<Question>),
}

/// The swarm's state inside the locked core.
pub(crate) struct SwarmState {
    pub(crate) swarm: CoreSwarm<rand_chacha::ChaCha20Rng>,
    pub(crate) firewall: Option<Firewall>,
    pub(crate) incoming: VecDeque<Announced>,
    pub(crate) incoming_waker: Option<Waker>,
    /// Finished flushes (`ok`), until their future takes them.
    pub(crate) flushes: BTreeMap<FlushId, bool>,
    pub(crate) flush_wakers: Vec<Waker>,
    /// Per topic: refreshes ended so far and whether the last one succeeded.
    pub(crate) refreshed: BTreeMap<[u8; 32], (u64, bool)>,
    /// Who waits for a discovery's flush or the end of the swarm's unannounces.
    pub(crate) wakers: Vec<Waker>,
    /// The node's last `online` (it was bootstrapped, or is being, when the swarm started).
    pub(crate) online: bool,
    /// Keys the user's firewall rejected since the last drain: banned there (as the
    /// reference's `_handleFirewall`). Bounded by the firewall decisions that may wait at once.
    pub(crate) rejected: Arc<Mutex<Vec<[u8; 32]>>>,
}

impl std::fmt::Debug for SwarmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmState")
            .field("swarm", &self.swarm)
            .field("queued", &self.incoming.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn wake_all(w: &mut Vec<Waker>) {
    w.drain(..).for_each(Waker::wake);
}

impl SwarmState {
    /// Offers a node event to the swarm. A handshake to the swarm's server that the swarm
    /// would take goes to the user's firewall first (outside the lock, as a server's).
    pub(crate) fn offer(
        &mut self,
        node: &mut Node,
        now: hdht_core::Instant,
        ev: DhtEvent,
    ) -> Offer {
        if let (
            Some(fw),
            DhtEvent::Connect(ConnectEvent::Firewall {
                server,
                handshake,
                remote_public_key,
                client_address,
                payload,
            }),
        ) = (&self.firewall, &ev)
        {
            if self.swarm.is_own_server(*server) && !self.swarm.refuses_incoming(remote_public_key)
            {
                return Offer::Ask(Box::new(Question {
                    handshake: *handshake,
                    server: *server,
                    firewall: fw.clone(),
                    request: FirewallRequest {
                        remote_public_key: *remote_public_key,
                        client_address: *client_address,
                        payload: (**payload).clone(),
                    },
                }));
            }
        }
        if let DhtEvent::Rpc(RpcEvent::NetworkUpdate { online, .. }) = &ev {
            // Back online (`network-update`'s rising edge): refresh every topic and poke every
            // connection, so dead ones show up at once (hyperswarm `_handleNetworkUpdate`).
            if *online && !self.online {
                self.swarm.network_changed(now, node);
            }
            self.online = *online;
        }
        match self.swarm.handle_event(now, node, ev) {
            Some(ev) => Offer::Theirs(ev),
            None => Offer::Taken,
        }
    }

    /// Takes the swarm's events: connections queue for the stream, flushes resolve.
    pub(crate) fn drain(&mut self, node: &mut Node, connections: &mut Connections) {
        let rejected = std::mem::take(&mut *lock(&self.rejected));
        for key in rejected {
            self.swarm.ban(key, true);
        }
        while let Some(ev) = self.swarm.poll_event() {
            match ev {
                SwarmEvent::Connection { conn, .. } => {
                    let Some(info) = node.connection_info(conn) else {
                        continue;
                    };
                    connections.adopt(conn, info.clone());
                    if self.incoming.len() >= MAX_QUEUED_CONNECTIONS {
                        if let Some(old) = self.incoming.pop_front() {
                            node.conn_destroy(old.conn);
                            connections.mark_dropped(old.conn);
                        }
                    }
                    self.incoming.push_back(Announced { conn, info });
                    if let Some(w) = self.incoming_waker.take() {
                        w.wake();
                    }
                }
                SwarmEvent::Disconnection { .. } => {}
                SwarmEvent::DiscoveryFlushed { topic, ok } => {
                    let e = self.refreshed.entry(topic).or_insert((0, true));
                    e.0 += 1;
                    e.1 = ok;
                    wake_all(&mut self.wakers);
                }
                SwarmEvent::Flushed { flush, ok } => {
                    self.flushes.insert(flush, ok);
                    wake_all(&mut self.flush_wakers);
                }
            }
        }
        // Whoever waits (a discovery's flush, listening, the end of the unannounces)
        // re-checks its condition.
        wake_all(&mut self.wakers);
    }

    /// The swarm's timer.
    pub(crate) fn poll_timeout(&self) -> Option<hdht_core::Instant> {
        self.swarm.poll_timeout()
    }

    /// Runs the swarm's timer if due.
    pub(crate) fn handle_timeout(&mut self, node: &mut Node, now: hdht_core::Instant) {
        if self.swarm.poll_timeout().is_some_and(|t| t <= now) {
            self.swarm.handle_timeout(now, node);
        }
    }

    /// The node was destroyed: everyone waiting wakes up.
    pub(crate) fn wake_everyone(&mut self) {
        if let Some(w) = self.incoming_waker.take() {
            w.wake();
        }
        wake_all(&mut self.flush_wakers);
        wake_all(&mut self.wakers);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
