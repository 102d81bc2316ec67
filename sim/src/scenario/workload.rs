//! The pluggable part of a scenario: what runs on the nodes and what "announce" and "lookup"
//! mean.
//!
//! The scenario runner ([`super::Scenario`]) owns the network's shape, the timeline (joins,
//! churn, partitions) and the statistics; a [`Workload`] owns the node type and the
//! operations. [`RpcWorkload`] implements them with dht-rpc alone: an announce is an
//! external-command query with commit that stores a record on the k closest nodes, a lookup
//! is an external-command query answered from those records, and a node lookup is a
//! FIND_NODE for a node's id. A hyperdht workload (ANNOUNCE/LOOKUP records, signed values)
//! plugs in the same way with its own `App`.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use hdht_core::rpc::{
    NodeId, Persistence, QueryId, QuerySpec, ReplySpec, RpcConfig, RpcEvent, RpcNode,
};
use hdht_core::Instant;
use rand_chacha::ChaCha8Rng;

use crate::app::App;
use crate::engine::Engine;
use crate::fxhash::FxMap;
use crate::network::{HostId, NetError, RealmId};
use crate::rpc::SimNodeConfig;

/// Identifies one operation of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpResult {
    /// The operation.
    pub op: OpId,
    /// Whether it achieved its goal (record found, node found, record stored).
    pub ok: bool,
    /// Sequential round trips from the querying node to the node that answered (1 = a node
    /// from its own table); 0 if unknown.
    pub hops: u32,
    /// Successful replies the query collected.
    pub replies: u32,
    /// When the goal was reached (first matching reply) or the operation gave up.
    pub at: Instant,
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Bootstrap addresses.
    pub bootstrap: Vec<SocketAddrV4>,
    /// Set for the network's first node: its own public address.
    pub bootstrapper: Option<SocketAddrV4>,
    /// Persistence mode.
    pub persistence: Persistence,
}

/// What a scenario needs to see of a node.
pub trait DhtApp: App {
    /// Bootstrapping finished.
    fn is_bootstrapped(&self) -> bool;
    /// The node believes it is unreachable unsolicited.
    fn is_firewalled(&self) -> bool;
    /// The node is not routable.
    fn is_ephemeral(&self) -> bool;
    /// Its routing id while persistent.
    fn routing_id(&self) -> Option<NodeId>;
    /// The ids in its routing table.
    fn table_ids(&self) -> Vec<NodeId>;
}

impl DhtApp for RpcNode<ChaCha8Rng> {
    fn is_bootstrapped(&self) -> bool {
        RpcNode::is_bootstrapped(self)
    }
    fn is_firewalled(&self) -> bool {
        RpcNode::is_firewalled(self)
    }
    fn is_ephemeral(&self) -> bool {
        RpcNode::is_ephemeral(self)
    }
    fn routing_id(&self) -> Option<NodeId> {
        self.id()
    }
    fn table_ids(&self) -> Vec<NodeId> {
        self.table().latest_first().map(|e| e.id).collect()
    }
}

/// Node type and operations of a scenario.
pub trait Workload {
    /// What runs on every host.
    type App: DhtApp;

    /// Starts a node on a new host in `realm`.
    fn spawn(
        &mut self,
        sim: &mut Engine<Self::App>,
        realm: RealmId,
        spec: &NodeSpec,
    ) -> Result<HostId, NetError>;

    /// Replaces a host's node with a fresh one (it crashed), on the same or a new address.
    fn restart(
        &mut self,
        sim: &mut Engine<Self::App>,
        host: HostId,
        new_address: bool,
        spec: &NodeSpec,
    ) -> Result<(), NetError>;

    /// A host crashed: forget anything it held.
    fn on_crash(&mut self, host: HostId);

    /// Drops records stored before `before` (they expired; hyperdht keeps an announce 20
    /// minutes unless it is renewed). Long runs call it so records do not pile up.
    fn expire(&mut self, before: Instant) {
        let _ = before;
    }

    /// One event from a node. Finished operations go to `done`.
    fn on_event(
        &mut self,
        sim: &mut Engine<Self::App>,
        host: HostId,
        event: <Self::App as App>::Event,
        done: &mut Vec<OpResult>,
    );

    /// Starts storing a record under `key` from `host`.
    fn announce(&mut self, sim: &mut Engine<Self::App>, host: HostId, key: NodeId, op: OpId);

    /// Starts looking up the records under `key` from `host`.
    fn lookup(&mut self, sim: &mut Engine<Self::App>, host: HostId, key: NodeId, op: OpId);

    /// Starts looking for the node with routing id `target` from `host`.
    fn find_node(&mut self, sim: &mut Engine<Self::App>, host: HostId, target: NodeId, op: OpId);
}

/// External command: store the value under the target (with a token) — an "announce".
pub const CMD_STORE: u64 = 1000;
/// External command: return the value stored under the target.
pub const CMD_FETCH: u64 = 1001;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// Store: succeed when the commit succeeds.
    Store,
    /// Fetch: succeed on the first reply carrying the record.
    Fetch,
    /// Find the node with this id among the replies.
    Node(NodeId),
}

#[derive(Debug)]
struct Running {
    op: OpId,
    goal: Goal,
    /// Referral depth of every address the query heard of (1 = from the table or seeds).
    /// Lookup-only, so a hash map is safe; it is the hottest structure of the workload.
    depth: FxMap<SocketAddrV4, u32>,
    /// Set when the goal was reached before the query ended.
    reached: Option<(u32, Instant)>,
}

/// Announce/lookup with dht-rpc alone; see the module docs.
#[derive(Debug, Default)]
pub struct RpcWorkload {
    /// (host, key) → (record, when stored).
    records: BTreeMap<(HostId, NodeId), (Vec<u8>, Instant)>,
    running: BTreeMap<(HostId, QueryId), Running>,
}

impl RpcWorkload {
    /// A workload with no records.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records stored across the network.
    pub fn stored(&self) -> usize {
        self.records.len()
    }

    fn config(spec: &NodeSpec) -> SimNodeConfig {
        let rpc = match spec.bootstrapper {
            Some(public) => RpcConfig {
                deliver_requests: true,
                ..RpcConfig::bootstrapper(public)
            },
            None => RpcConfig {
                bootstrap: spec.bootstrap.clone(),
                persistence: spec.persistence,
                deliver_requests: true,
                ..RpcConfig::default()
            },
        };
        SimNodeConfig { rpc }
    }

    /// The record announced under `key` (what lookups must find).
    pub fn record_for(key: &NodeId) -> Vec<u8> {
        key.0[..16].to_vec()
    }

    fn start(
        &mut self,
        sim: &mut Engine<RpcNode<ChaCha8Rng>>,
        host: HostId,
        spec: QuerySpec,
        goal: Goal,
        op: OpId,
    ) {
        if !sim.is_alive(host) {
            return;
        }
        // The query starts from the k closest table entries and the bootstrap list: depth 1.
        let target = spec.target;
        let Some(q) = sim.try_with_node(host, |n, now| {
            let mut depth = FxMap::default();
            for e in n.table().closest(&target).take(hdht_core::rpc::K) {
                depth.insert(e.addr, 1);
            }
            for a in &n.config().bootstrap {
                depth.insert(*a, 1);
            }
            (n.query(now, spec), depth)
        }) else {
            return;
        };
        self.running.insert(
            (host, q.0),
            Running {
                op,
                goal,
                depth: q.1,
                reached: None,
            },
        );
    }
}

impl Workload for RpcWorkload {
    type App = RpcNode<ChaCha8Rng>;

    fn spawn(
        &mut self,
        sim: &mut Engine<Self::App>,
        realm: RealmId,
        spec: &NodeSpec,
    ) -> Result<HostId, NetError> {
        sim.add_node_in(realm, Self::config(spec))
    }

    fn restart(
        &mut self,
        sim: &mut Engine<Self::App>,
        host: HostId,
        new_address: bool,
        spec: &NodeSpec,
    ) -> Result<(), NetError> {
        self.on_crash(host);
        sim.restart_node(host, new_address, Self::config(spec))
    }

    fn expire(&mut self, before: Instant) {
        self.records.retain(|_, r| r.1 >= before);
    }

    fn on_crash(&mut self, host: HostId) {
        let keys: Vec<(HostId, NodeId)> = self
            .records
            .range((host, NodeId([0; 32]))..=(host, NodeId([0xff; 32])))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.records.remove(&k);
        }
    }

    fn on_event(
        &mut self,
        sim: &mut Engine<Self::App>,
        host: HostId,
        event: RpcEvent,
        done: &mut Vec<OpResult>,
    ) {
        match event {
            RpcEvent::Request(req) => {
                let reply = match (req.command, req.target) {
                    (CMD_STORE, Some(t)) => {
                        if req.token.is_some() {
                            if let Some(v) = &req.value {
                                self.records.insert((host, t), (v.clone(), sim.now()));
                            }
                        }
                        ReplySpec::value(None)
                    }
                    (CMD_FETCH, Some(t)) => {
                        ReplySpec::value(self.records.get(&(host, t)).map(|r| r.0.clone()))
                    }
                    _ => ReplySpec::error(hdht_core::wire::ERROR_UNKNOWN_COMMAND),
                };
                if sim.is_alive(host) {
                    sim.try_with_node(host, |n, _| n.reply(&req, reply));
                }
            }
            RpcEvent::QueryReply { query, reply } => {
                let Some(r) = self.running.get_mut(&(host, query)) else {
                    return;
                };
                let d = r.depth.get(&reply.from).copied().unwrap_or(1);
                for c in &reply.closer_nodes {
                    let e = r.depth.entry(*c).or_insert(d + 1);
                    *e = (*e).min(d + 1);
                }
                if r.reached.is_none() {
                    let hit = match r.goal {
                        Goal::Store => false,
                        Goal::Fetch => reply.value.is_some(),
                        Goal::Node(id) => reply.from_id == Some(id),
                    };
                    if hit {
                        r.reached = Some((d, sim.now()));
                    }
                }
            }
            RpcEvent::QueryDone { query, result } => {
                let Some(r) = self.running.remove(&(host, query)) else {
                    return;
                };
                let now = sim.now();
                let replies = result.as_ref().map_or(0, |x| x.successes as u32);
                let (ok, hops, at) = match (r.goal, r.reached, &result) {
                    (_, Some((d, at)), _) => (true, d, at),
                    (Goal::Store, None, Ok(res)) => {
                        let hops = res
                            .closest_replies
                            .first()
                            .and_then(|c| r.depth.get(&c.from))
                            .copied()
                            .unwrap_or(1);
                        (true, hops, now)
                    }
                    _ => (false, 0, now),
                };
                done.push(OpResult {
                    op: r.op,
                    ok,
                    hops,
                    replies,
                    at,
                });
            }
            _ => {}
        }
    }

    fn announce(&mut self, sim: &mut Engine<Self::App>, host: HostId, key: NodeId, op: OpId) {
        let mut spec = QuerySpec::new(key, CMD_STORE);
        spec.value = Some(Self::record_for(&key));
        spec.commit = true;
        self.start(sim, host, spec, Goal::Store, op);
    }

    fn lookup(&mut self, sim: &mut Engine<Self::App>, host: HostId, key: NodeId, op: OpId) {
        self.start(sim, host, QuerySpec::new(key, CMD_FETCH), Goal::Fetch, op);
    }

    fn find_node(&mut self, sim: &mut Engine<Self::App>, host: HostId, target: NodeId, op: OpId) {
        let mut spec = QuerySpec::new(target, hdht_core::rpc::FIND_NODE);
        spec.internal = true;
        self.start(sim, host, spec, Goal::Node(target), op);
    }
}
