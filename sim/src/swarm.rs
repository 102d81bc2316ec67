//! Hyperswarm peers in the simulator: a [`DhtHost`] with a [`Swarm`] beside its node
//! ([`SwarmHost`]), driven as the swarm's contract says — every node event is offered to the
//! swarm first, the swarm's timers run when due, and the node is drained again after every
//! swarm call. What the swarm hands back (reads and closes of its connections) is consumed
//! here: the peers only connect, they read and drop whatever arrives.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::{Deref, DerefMut};

use hdht_core::dht::{ConnectEvent, DhtEvent};
use hdht_core::swarm::{JoinOptions, SessionId, Swarm, SwarmConfig, SwarmError, SwarmEvent};
use hdht_core::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::app::{App, Datagram, SocketCommand};
use crate::dht::{dht_app, DhtHost, DhtNodeConfig};
use crate::engine::Engine;
use crate::network::{HostId, NetError, RealmId, SocketId};
use crate::rpc::SERVER_PORT;

/// The simulator driving swarm peers (and plain DHT nodes, which have no swarm).
pub type SwarmSim = Engine<SwarmHost>;

/// A hyperdht node, with a swarm once [`SwarmHost::start_swarm`] ran. Derefs to the
/// [`DhtHost`].
#[derive(Debug)]
pub struct SwarmHost {
    host: DhtHost,
    swarm: Option<Swarm<ChaCha8Rng>>,
    events: VecDeque<SwarmEvent>,
    /// Bytes the peers' connections delivered (read and dropped).
    bytes_read: u64,
    scratch: Vec<u8>,
}

impl SwarmHost {
    fn new(host: DhtHost) -> Self {
        SwarmHost {
            host,
            swarm: None,
            events: VecDeque::new(),
            bytes_read: 0,
            scratch: vec![0; 4096],
        }
    }

    /// The swarm, if started.
    pub fn swarm(&self) -> Option<&Swarm<ChaCha8Rng>> {
        self.swarm.as_ref()
    }

    /// Starts a swarm on this node; its RNG is seeded with `seed`.
    pub fn start_swarm(&mut self, cfg: SwarmConfig, seed: u64) {
        self.swarm = Some(Swarm::new(cfg, ChaCha8Rng::seed_from_u64(seed)));
    }

    /// `swarm.join(topic, opts)`.
    pub fn join(
        &mut self,
        now: Instant,
        topic: [u8; 32],
        opts: JoinOptions,
    ) -> Result<SessionId, SwarmError> {
        let swarm = self.swarm.as_mut().ok_or(SwarmError::Destroyed)?;
        let r = swarm.join(now, self.host.node_mut(), topic, opts);
        self.pump(now);
        r
    }

    /// Runs `f` on the swarm and the node, then drains what it started.
    pub fn with_swarm<T>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Swarm<ChaCha8Rng>, &mut hdht_core::dht::DhtNode<ChaCha8Rng>) -> T,
    ) -> Option<T> {
        let swarm = self.swarm.as_mut()?;
        let out = f(swarm, self.host.node_mut());
        self.pump(now);
        Some(out)
    }

    /// Bytes read from the swarm's connections.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Hands every node event to the swarm, runs its due timers, until both are quiet.
    fn pump(&mut self, now: Instant) {
        let Some(swarm) = self.swarm.as_mut() else {
            return;
        };
        loop {
            let mut busy = false;
            if swarm.poll_timeout().is_some_and(|t| t <= now) {
                swarm.handle_timeout(now, self.host.node_mut());
                busy = true;
            }
            while let Some(ev) = self.host.node_mut().poll_event() {
                busy = true;
                let Some(ev) = swarm.handle_event(now, self.host.node_mut(), ev) else {
                    continue;
                };
                match ev {
                    DhtEvent::Connect(ConnectEvent::Readable(conn)) => loop {
                        match self.host.node_mut().conn_read(now, conn, &mut self.scratch) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => self.bytes_read += n as u64,
                        }
                    },
                    DhtEvent::Connect(ConnectEvent::Closed { conn, .. }) => {
                        self.host.node_mut().conn_forget(conn);
                    }
                    _ => {}
                }
            }
            while let Some(e) = swarm.poll_event() {
                self.events.push_back(e);
            }
            if !busy {
                return;
            }
        }
    }
}

impl Deref for SwarmHost {
    type Target = DhtHost;
    fn deref(&self) -> &DhtHost {
        &self.host
    }
}

impl DerefMut for SwarmHost {
    fn deref_mut(&mut self) -> &mut DhtHost {
        &mut self.host
    }
}

impl App for SwarmHost {
    type Event = SwarmEvent;

    fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        self.host.handle_datagram(now, socket, from, bytes);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.host.node().poll_timeout().is_some_and(|t| t <= now) {
            self.host.handle_timeout(now);
        }
        self.pump(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram> {
        self.host.poll_transmit(now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let node = self.host.node().poll_timeout();
        let swarm = self.swarm.as_ref().and_then(Swarm::poll_timeout);
        match (node, swarm) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn poll_event(&mut self) -> Option<SwarmEvent> {
        if self.swarm.is_none() {
            // A plain DHT node: its events are nobody's business here.
            while self.host.node_mut().poll_event().is_some() {}
        }
        self.events.pop_front()
    }

    fn crash(&mut self) {
        self.swarm = None;
        self.host.crash();
    }

    fn poll_socket_command(&mut self) -> Option<SocketCommand> {
        self.host.poll_socket_command()
    }

    fn socket_bound(&mut self, now: Instant, tag: u64, result: Result<SocketId, NetError>) {
        self.host.socket_bound(now, tag, result);
        self.pump(now);
    }
}

impl SwarmSim {
    /// The address the next public host's server socket will have.
    pub fn next_swarm_server_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(
            self.net()
                .peek_ip(RealmId::INTERNET)
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            SERVER_PORT,
        )
    }

    /// A host's server address (behind a NAT, the private one).
    pub fn swarm_server_addr(&self, h: HostId) -> SocketAddrV4 {
        let ip = self.net().host_ip(h).unwrap_or(Ipv4Addr::UNSPECIFIED);
        let port = self
            .try_node(h)
            .map_or(SERVER_PORT, |n| n.rpc().config().server_port);
        SocketAddrV4::new(ip, port)
    }

    /// Adds and starts a hyperdht node (no swarm yet) in `realm`.
    pub fn add_swarm_node_in(
        &mut self,
        realm: RealmId,
        cfg: DhtNodeConfig,
    ) -> Result<HostId, NetError> {
        self.spawn(realm, |s| dht_app(s, cfg).map(SwarmHost::new))
    }
}
