use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use hdht_core::rpc::{RpcConfig, RpcEvent, RpcNode, SocketKind};
use hdht_core::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Index of a simulated host (one node per host).
pub type HostId = usize;

/// Latency, jitter and loss applied to every datagram.
#[derive(Debug, Clone, Copy)]
pub struct LinkModel {
    /// One-way base latency.
    pub latency: Duration,
    /// Uniform extra delay in `[0, jitter)`.
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
}

impl Default for LinkModel {
    fn default() -> Self {
        LinkModel { latency: Duration::from_millis(20), jitter: Duration::from_millis(10), loss: 0.0 }
    }
}

/// How to start one simulated node.
#[derive(Debug, Clone)]
pub struct SimNodeConfig {
    /// The node's rpc options; `server_port` is filled in by the simulator.
    pub rpc: RpcConfig,
}

#[derive(Debug)]
enum EventKind {
    Deliver { to: HostId, socket: SocketKind, from: SocketAddrV4, bytes: Vec<u8> },
    Timer { host: HostId },
}

#[derive(Debug)]
struct Event {
    at: Instant,
    seq: u64,
    kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Host {
    node: RpcNode<ChaCha8Rng>,
    server: SocketAddrV4,
    client: SocketAddrV4,
    alive: bool,
    next_wake: Option<Instant>,
    events: VecDeque<RpcEvent>,
}

/// The simulator.
pub struct Sim {
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<Event>>,
    rng: ChaCha8Rng,
    seed: u64,
    hosts: Vec<Host>,
    by_addr: BTreeMap<SocketAddrV4, (HostId, SocketKind)>,
    link: LinkModel,
    trace: Blake2b<U32>,
    delivered: u64,
    dropped: u64,
    events_processed: u64,
}

/// The server port every simulated node binds (hosts differ by IP).
pub const SERVER_PORT: u16 = 49737;
/// The client port every simulated node binds.
pub const CLIENT_PORT: u16 = 40000;

impl Sim {
    /// A simulator whose every random choice derives from `seed`.
    pub fn new(seed: u64, link: LinkModel) -> Self {
        Sim {
            now: Instant::from_millis(0),
            seq: 0,
            queue: BinaryHeap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            hosts: Vec::new(),
            by_addr: BTreeMap::new(),
            link,
            trace: Blake2b::new(),
            delivered: 0,
            dropped: 0,
            events_processed: 0,
        }
    }

    /// The seed this run was made from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The address the next added host's server socket will have.
    pub fn next_server_addr(&self) -> SocketAddrV4 {
        host_ip(self.hosts.len()).map_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), |ip| SocketAddrV4::new(ip, SERVER_PORT))
    }

    /// Adds and starts a node.
    pub fn add_node(&mut self, cfg: SimNodeConfig) -> HostId {
        let id = self.hosts.len();
        let ip = host_ip(id).unwrap_or(Ipv4Addr::UNSPECIFIED);
        let server = SocketAddrV4::new(ip, SERVER_PORT);
        let client = SocketAddrV4::new(ip, CLIENT_PORT);
        let mut rpc = cfg.rpc;
        rpc.server_port = SERVER_PORT;
        let node_rng = ChaCha8Rng::seed_from_u64(self.rng.next_u64());
        let node = RpcNode::new(rpc, node_rng, self.now);
        self.hosts.push(Host { node, server, client, alive: true, next_wake: None, events: VecDeque::new() });
        self.by_addr.insert(server, (id, SocketKind::Server));
        self.by_addr.insert(client, (id, SocketKind::Client));
        self.flush(id);
        id
    }

    /// The node on a host.
    pub fn node(&self, host: HostId) -> &RpcNode<ChaCha8Rng> {
        &self.hosts[host].node
    }

    /// Runs `f` on a host's node at the current time, then collects its output.
    pub fn with_node<T>(&mut self, host: HostId, f: impl FnOnce(&mut RpcNode<ChaCha8Rng>, Instant) -> T) -> T {
        let now = self.now;
        let out = f(&mut self.hosts[host].node, now);
        self.flush(host);
        out
    }

    /// A host's server address.
    pub fn server_addr(&self, host: HostId) -> SocketAddrV4 {
        self.hosts[host].server
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there are no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Takes the events a host's node emitted so far.
    pub fn take_events(&mut self, host: HostId) -> Vec<RpcEvent> {
        self.hosts[host].events.drain(..).collect()
    }

    /// Stops a host: its node is destroyed and datagrams to it vanish.
    pub fn kill(&mut self, host: HostId) {
        self.hosts[host].alive = false;
        self.hosts[host].node.destroy();
    }

    /// The hash of every datagram delivered so far (time, source, destination, bytes).
    pub fn trace_hash(&self) -> [u8; 32] {
        self.trace.clone().finalize().into()
    }

    /// (delivered, dropped) datagram counts.
    pub fn datagram_counts(&self) -> (u64, u64) {
        (self.delivered, self.dropped)
    }

    /// Events processed so far.
    pub fn events_processed(&self) -> u64 {
        self.events_processed
    }

    fn push(&mut self, at: Instant, kind: EventKind) {
        self.seq += 1;
        self.queue.push(Reverse(Event { at, seq: self.seq, kind }));
    }

    fn flush(&mut self, id: HostId) {
        let host = &mut self.hosts[id];
        while let Some(ev) = host.node.poll_event() {
            host.events.push_back(ev);
        }
        let mut sends = Vec::new();
        while let Some(t) = host.node.poll_transmit() {
            let from = match t.socket {
                SocketKind::Server => host.server,
                SocketKind::Client => host.client,
            };
            sends.push((from, t.to, t.payload));
        }
        let wake = if host.alive { host.node.poll_timeout() } else { None };
        let reschedule = wake.is_some() && wake != host.next_wake;
        if reschedule {
            host.next_wake = wake;
        }
        if let (true, Some(at)) = (reschedule, wake) {
            self.push(at.max(self.now), EventKind::Timer { host: id });
        }
        for (from, to, bytes) in sends {
            if self.link.loss > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < self.link.loss {
                self.dropped += 1;
                continue;
            }
            let Some(&(dest, socket)) = self.by_addr.get(&to) else {
                self.dropped += 1;
                continue;
            };
            let jitter_us = self.link.jitter.as_micros() as u64;
            let extra = if jitter_us > 0 { self.rng.next_u64() % jitter_us } else { 0 };
            let at = self.now + self.link.latency + Duration::from_micros(extra);
            self.push(at, EventKind::Deliver { to: dest, socket, from, bytes });
        }
    }

    /// Processes one event; false when the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some(Reverse(ev)) = self.queue.pop() else { return false };
        self.now = ev.at;
        self.events_processed += 1;
        match ev.kind {
            EventKind::Deliver { to, socket, from, bytes } => {
                if !self.hosts[to].alive {
                    self.dropped += 1;
                    return true;
                }
                self.delivered += 1;
                let dest = match socket {
                    SocketKind::Server => self.hosts[to].server,
                    SocketKind::Client => self.hosts[to].client,
                };
                self.trace.update(ev.at.as_micros().to_le_bytes());
                self.trace.update(hdht_core::rpc::encode_addr(&from));
                self.trace.update(hdht_core::rpc::encode_addr(&dest));
                self.trace.update((bytes.len() as u32).to_le_bytes());
                self.trace.update(&bytes);
                let now = self.now;
                self.hosts[to].node.handle_datagram(now, socket, from, &bytes);
                self.flush(to);
            }
            EventKind::Timer { host } => {
                let h = &mut self.hosts[host];
                if !h.alive || h.next_wake != Some(ev.at) {
                    return true;
                }
                h.next_wake = None;
                let now = self.now;
                h.node.handle_timeout(now);
                self.flush(host);
            }
        }
        true
    }

    /// Runs until virtual time reaches `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(Reverse(ev)) = self.queue.peek() {
            if ev.at > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }
}

/// 10.0.0.1, 10.0.0.2, … one address per host.
fn host_ip(i: usize) -> Option<Ipv4Addr> {
    let n = u32::try_from(i).ok()?.checked_add(1)?;
    if n >= 1 << 24 {
        return None;
    }
    Some(Ipv4Addr::from((10u32 << 24) | n))
}
