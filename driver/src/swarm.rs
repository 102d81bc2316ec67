//! Hyperswarm over a running node, written once for both runtimes: the core's sans-IO
//! [`Swarm`](hdht_core::swarm::Swarm) sits in the locked core beside the node; the shared
//! dispatch offers it every node event first and folds its timer into the I/O task's
//! deadline ([`Shared`]). [`SwarmHandle`] is what the user calls; the runtime crates wrap
//! it with the node it owns.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;
use hdht_core::crypto::KeyPair;
use hdht_core::swarm::{
    FlushId, JoinOptions, PeerInfo, SessionId, Swarm as CoreSwarm, SwarmConfig, SwarmError,
    SwarmStats,
};
use rand_core::SeedableRng;

use crate::connection::Connection;
use crate::firewall::Firewall;
use crate::swarm_state::{lock, SwarmState};
use crate::{DhtError, Node, Shared};

/// Options of a swarm (`new Hyperswarm(opts)`).
#[derive(Clone, Default)]
pub struct SwarmOptions {
    /// Our identity (`keyPair`); default: derived from [`seed`](Self::seed), else random.
    pub key_pair: Option<KeyPair>,
    /// Seed of the key pair (`seed`), when [`key_pair`](Self::key_pair) is not given.
    pub seed: Option<[u8; 32]>,
    /// `maxPeers` (default 64).
    pub max_peers: Option<usize>,
    /// `maxParallel`: dials in progress at once (default 3).
    pub max_parallel: Option<usize>,
    /// Incoming connections held at once (`maxServerConnections`, default 64). The reference
    /// stores this option and never checks it; here a handshake from a new peer beyond it is
    /// refused (as a firewall rejects: the client's connect fails), so a peer that floods
    /// connects under fresh keys gets at most this many. A peer we hold a connection to may
    /// still replace it (the duplicate rule). 0 refuses every new incoming connection.
    pub max_server_connections: Option<usize>,
    /// `firewall(remotePublicKey, payload)`: asked about each handshake the swarm itself would
    /// take (not banned, not our own key, within the bounds); `true` rejects. It runs as a
    /// server's firewall does: on the I/O task with the node unlocked, sync or async — an
    /// async firewall's answer is awaited (the reference takes a returned promise for a
    /// rejection of everyone). As in the reference, a rejected peer is banned: we never dial
    /// it either, and its later handshakes are refused without asking again
    /// ([`SwarmHandle::unban`] lifts it).
    pub firewall: Option<Firewall>,
    /// `relayThrough`: blind relay(s) for our dials — one key, a list drawn from at random,
    /// or a callback. As the reference's swarm: used when our NAT randomizes ports, and for a
    /// peer after a dial to it failed in a way punching cannot fix (then redialed at once
    /// through the relay). Default: none.
    pub relay_through: Option<hdht_core::relay::RelaySelector>,
}

impl std::fmt::Debug for SwarmOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmOptions")
            .field("key_pair", &self.key_pair.as_ref().map(KeyPair::public_key))
            .field("max_peers", &self.max_peers)
            .field("max_parallel", &self.max_parallel)
            .field("max_server_connections", &self.max_server_connections)
            .field("firewall", &self.firewall.is_some())
            .field("relay_through", &self.relay_through)
            .finish_non_exhaustive()
    }
}

impl SwarmOptions {
    /// The key pair these options give (random if neither a key pair nor a seed is set).
    pub fn resolve_key_pair(&self) -> KeyPair {
        match (&self.key_pair, &self.seed) {
            (Some(kp), _) => kp.clone(),
            (None, Some(seed)) => KeyPair::from_seed(seed),
            (None, None) => {
                let mut seed = [0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
                KeyPair::from_seed(&seed)
            }
        }
    }
}

/// The user's firewall, noting each key it rejects for the swarm to ban.
fn banning(user: Firewall, rejected: Arc<Mutex<Vec<[u8; 32]>>>) -> Firewall {
    Firewall::new_async(move |req| {
        let key = req.remote_public_key;
        let decision = user.ask(req);
        let rejected = rejected.clone();
        async move {
            let reject = decision.await;
            if reject {
                lock(&rejected).push(key);
            }
            reject
        }
    })
}

fn swarm_err(e: SwarmError) -> DhtError {
    DhtError::Swarm(e)
}

/// A swarm running on a node (`new Hyperswarm()`), runtime-agnostic: the runtime crates'
/// `Swarm` derefs to it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SwarmHandle {
    shared: Shared,
    public_key: [u8; 32],
}

impl SwarmHandle {
    /// Starts a swarm beside the node behind `shared`. [`DhtError::SwarmExists`] if the node
    /// already runs one, [`DhtError::Destroyed`] if the node was destroyed.
    pub fn start(shared: &Shared, opts: SwarmOptions) -> Result<SwarmHandle, DhtError> {
        let key_pair = opts.resolve_key_pair();
        let public_key = key_pair.public_key();
        let mut cfg = SwarmConfig::new(key_pair);
        if let Some(n) = opts.max_peers {
            cfg.max_peers = n;
        }
        if let Some(n) = opts.max_parallel {
            if n == 0 {
                return Err(DhtError::InvalidOption("max_parallel must be at least 1"));
            }
            cfg.max_parallel = n;
        }
        if let Some(n) = opts.max_server_connections {
            cfg.max_server_connections = n;
        }
        cfg.relay_through = opts.relay_through.clone();
        let rejected = Arc::new(Mutex::new(Vec::new()));
        let firewall = opts.firewall.map(|fw| banning(fw, rejected.clone()));
        shared.with_inner_kick(|inner, _| {
            if inner.node.is_destroyed() {
                return Err(DhtError::Destroyed);
            }
            if inner.swarm.is_some() {
                return Err(DhtError::SwarmExists);
            }
            inner.swarm = Some(SwarmState {
                swarm: CoreSwarm::new(cfg, rand_chacha::ChaCha20Rng::from_entropy()),
                firewall,
                incoming: VecDeque::new(),
                incoming_waker: None,
                flushes: BTreeMap::new(),
                flush_wakers: Vec::new(),
                refreshed: BTreeMap::new(),
                wakers: Vec::new(),
                online: true,
                rejected,
            });
            Ok(())
        })?;
        Ok(SwarmHandle {
            shared: shared.clone(),
            public_key,
        })
    }

    /// Our public key (`swarm.keyPair.publicKey`).
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// Runs `f` on the swarm and the node, then routes what it started.
    fn with_swarm<T>(
        &self,
        f: impl FnOnce(&mut CoreSwarm<rand_chacha::ChaCha20Rng>, &mut Node, hdht_core::Instant) -> T,
    ) -> Result<T, DhtError> {
        self.shared.with_inner_kick(|inner, now| {
            let Some(s) = inner.swarm.as_mut() else {
                return Err(DhtError::Destroyed);
            };
            if inner.node.is_destroyed() {
                return Err(DhtError::Destroyed);
            }
            Ok(f(&mut s.swarm, &mut inner.node, now))
        })
    }

    /// `join(topic, {server, client, limit})`: announces the topic (server) and dials the
    /// peers found on it (client). Keep the returned [`Discovery`]: dropping it does not leave
    /// (call [`Discovery::destroy`] or [`leave`](Self::leave)).
    pub fn join(&self, topic: [u8; 32], opts: JoinOptions) -> Result<Discovery, DhtError> {
        let session = self
            .with_swarm(|s, n, now| s.join(now, n, topic, opts))?
            .map_err(swarm_err)?;
        Ok(Discovery {
            shared: self.shared.clone(),
            topic,
            session,
        })
    }

    /// `swarm.listen()`: starts the swarm's server without joining a topic (a join as a server
    /// does it too), so peers that know our key can `join_peer` us; resolves once our key is
    /// announced.
    pub async fn listen(&self) -> Result<(), DhtError> {
        self.with_swarm(|s, n, now| s.listen(now, n))?
            .map_err(swarm_err)?;
        std::future::poll_fn(|cx| {
            self.shared.with_inner(|inner| {
                let destroyed = inner.node.is_destroyed();
                match inner.swarm.as_mut() {
                    Some(s) if s.swarm.is_listening() => Poll::Ready(Ok(())),
                    Some(s) if !destroyed => {
                        s.wakers.push(cx.waker().clone());
                        Poll::Pending
                    }
                    _ => Poll::Ready(Err(DhtError::Destroyed)),
                }
            })
        })
        .await
    }

    /// `leave(topic)`: stops discovering the topic and unannounces it; open connections stay.
    pub fn leave(&self, topic: &[u8; 32]) -> Result<(), DhtError> {
        self.with_swarm(|s, n, now| s.leave(now, n, topic))
    }

    /// [`join`](Self::join) with a topic given as bytes of any length:
    /// [`SwarmError::TopicLength`] unless it is 32 bytes.
    pub fn join_bytes(&self, topic: &[u8], opts: JoinOptions) -> Result<Discovery, DhtError> {
        let topic = hdht_core::swarm::topic_from_slice(topic).map_err(swarm_err)?;
        self.join(topic, opts)
    }

    /// `joinPeer(publicKey)`: keeps a connection to this peer, redialing it when it drops.
    pub fn join_peer(&self, public_key: [u8; 32]) -> Result<(), DhtError> {
        if public_key == self.public_key {
            return Err(DhtError::InvalidOption("cannot join our own public key"));
        }
        self.with_swarm(|s, n, now| s.join_peer(now, n, public_key))
    }

    /// `leavePeer(publicKey)`: stops redialing the peer; an open connection stays.
    pub fn leave_peer(&self, public_key: &[u8; 32]) -> Result<(), DhtError> {
        self.with_swarm(|s, _, _| s.leave_peer(public_key))
    }

    /// `peerInfo.ban(true)`: the peer is never dialed again and its handshakes are refused.
    /// An open connection stays (as the reference): destroy it to end it.
    pub fn ban(&self, public_key: [u8; 32]) -> Result<(), DhtError> {
        self.with_swarm(|s, _, _| s.ban(public_key, true))
    }

    /// `peerInfo.ban(false)`.
    pub fn unban(&self, public_key: [u8; 32]) -> Result<(), DhtError> {
        self.with_swarm(|s, _, _| s.ban(public_key, false))
    }

    /// `swarm.flush()`: resolves once every topic's current refresh ended and every peer found
    /// so far was tried once (`Ok(true)`); `Ok(false)` if the swarm was destroyed first.
    pub fn flush(&self) -> SwarmFlush {
        let id = self.with_swarm(|s, n, now| s.flush(now, n)).ok();
        SwarmFlush {
            shared: self.shared.clone(),
            id,
        }
    }

    /// `swarm.connections`: the public keys of the peers we hold a connection to.
    pub fn connections(&self) -> Vec<[u8; 32]> {
        self.shared.with_inner(|inner| {
            inner
                .swarm
                .as_ref()
                .map(|s| s.swarm.connections().map(|(_, k)| *k).collect())
                .unwrap_or_default()
        })
    }

    /// `swarm.peers`: what the swarm knows of every peer (found, connected, banned, explicit).
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.with_inner(|inner| {
            inner
                .swarm
                .as_ref()
                .map(|s| s.swarm.peers().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// The swarm's counters (dials, incoming connections, refusals, duplicates dropped).
    pub fn stats(&self) -> SwarmStats {
        self.shared.with_inner(|inner| {
            inner
                .swarm
                .as_ref()
                .map(|s| s.swarm.stats())
                .unwrap_or_default()
        })
    }

    /// What the swarm knows of one peer.
    pub fn peer(&self, public_key: &[u8; 32]) -> Option<PeerInfo> {
        self.shared.with_inner(|inner| {
            inner
                .swarm
                .as_ref()
                .and_then(|s| s.swarm.peer(public_key).cloned())
        })
    }

    /// The swarm's connections as they come (`swarm.on('connection')`), with what the swarm
    /// knows of the peer. Take them from one stream (several streams share one queue).
    pub fn connection_stream(&self) -> SwarmConnections {
        SwarmConnections {
            shared: self.shared.clone(),
        }
    }

    /// Leaves every topic, stops dialing and closes the swarm's server, then waits until its
    /// unannounces finished (or the node was destroyed). Open connections stay the node's;
    /// the runtime crates' `destroy` then destroys the node.
    pub async fn shutdown(&self) {
        if self
            .with_swarm(|s, n, now| s.destroy(now, n, false))
            .is_err()
        {
            return;
        }
        std::future::poll_fn(|cx| {
            self.shared.with_inner(|inner| {
                let destroyed = inner.node.is_destroyed();
                match inner.swarm.as_mut() {
                    Some(s) if s.swarm.has_operations() && !destroyed => {
                        s.wakers.push(cx.waker().clone());
                        Poll::Pending
                    }
                    _ => Poll::Ready(()),
                }
            })
        })
        .await
    }
}

/// A joined topic (`swarm.join()`'s `PeerDiscovery` session).
#[derive(Debug)]
pub struct Discovery {
    shared: Shared,
    topic: [u8; 32],
    session: SessionId,
}

impl Discovery {
    /// The topic.
    pub fn topic(&self) -> [u8; 32] {
        self.topic
    }

    /// `discovery.flushed()`: resolves once the topic's current refresh ended (our record is
    /// stored as a server, the lookup finished as a client): `Ok(true)` if it succeeded,
    /// `Ok(false)` if its query failed; at once if no refresh runs.
    pub async fn flushed(&self) -> Result<bool, DhtError> {
        let topic = self.topic;
        let target = self.shared.with_inner(|inner| {
            let s = inner.swarm.as_ref()?;
            let done = s.refreshed.get(&topic).map_or(0, |r| r.0);
            (s.swarm.is_refreshing(&topic) == Some(true)).then_some(done + 1)
        });
        let Some(target) = target else {
            return Ok(true);
        };
        std::future::poll_fn(|cx| {
            self.shared.with_inner(|inner| {
                let destroyed = inner.node.is_destroyed();
                let Some(s) = inner.swarm.as_mut() else {
                    return Poll::Ready(Err(DhtError::Destroyed));
                };
                match s.refreshed.get(&topic) {
                    Some(&(n, ok)) if n >= target => Poll::Ready(Ok(ok)),
                    // Left or destroyed while waiting: this refresh will never end.
                    _ if destroyed => Poll::Ready(Err(DhtError::Destroyed)),
                    _ if s.swarm.is_refreshing(&topic).is_none() => Poll::Ready(Ok(false)),
                    _ => {
                        s.wakers.push(cx.waker().clone());
                        Poll::Pending
                    }
                }
            })
        })
        .await
    }

    /// `discovery.refresh({client, server, limit})`: changes this session's modes and
    /// refreshes the topic now.
    pub fn refresh(&self, opts: JoinOptions) -> Result<(), DhtError> {
        let session = self.session;
        self.shared
            .with_inner_kick(|inner, now| {
                let s = inner.swarm.as_mut().ok_or(SwarmError::Destroyed)?;
                s.swarm.refresh_session(now, &mut inner.node, session, opts)
            })
            .map_err(swarm_err)
    }

    /// `discovery.destroy()`: ends this session; the last session of a topic leaves it.
    pub fn destroy(self) {
        let session = self.session;
        self.shared.with_inner_kick(|inner, now| {
            if let Some(s) = inner.swarm.as_mut() {
                s.swarm.destroy_session(now, &mut inner.node, session);
            }
        });
    }
}

/// The future of [`SwarmHandle::flush`].
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct SwarmFlush {
    shared: Shared,
    id: Option<FlushId>,
}

impl std::future::Future for SwarmFlush {
    type Output = bool;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let Some(id) = self.id else {
            return Poll::Ready(false);
        };
        self.shared.with_inner(|inner| {
            let destroyed = inner.node.is_destroyed();
            let Some(s) = inner.swarm.as_mut() else {
                return Poll::Ready(false);
            };
            if let Some(ok) = s.flushes.remove(&id) {
                return Poll::Ready(ok);
            }
            if destroyed {
                return Poll::Ready(false);
            }
            s.flush_wakers.push(cx.waker().clone());
            Poll::Pending
        })
    }
}

/// A [`Stream`] of the swarm's connections with what it knows of each peer; ends once the
/// node is destroyed.
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct SwarmConnections {
    shared: Shared,
}

impl Stream for SwarmConnections {
    type Item = (Connection, PeerInfo);
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.shared.with_inner(|inner| {
            let destroyed = inner.node.is_destroyed();
            let Some(s) = inner.swarm.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(a) = s.incoming.pop_front() {
                let key = a.info.remote_public_key;
                let peer = s
                    .swarm
                    .peer(&key)
                    .cloned()
                    .unwrap_or_else(|| PeerInfo::new(key, Vec::new()));
                return Poll::Ready(Some((a, peer)));
            }
            if destroyed {
                return Poll::Ready(None);
            }
            s.incoming_waker = Some(cx.waker().clone());
            Poll::Pending
        });
        next.map(|o| {
            o.map(|(a, peer)| {
                (
                    Connection::from_parts(self.shared.clone(), a.conn, &a.info),
                    peer,
                )
            })
        })
    }
}
