//! The k-bucket routing table (kademlia-routing-table 1.0.6) fused with the recency list
//! (time-ordered-set 2.0.1) that dht-rpc keeps beside it.
//!
//! STUB: interface fixed; implementation in progress.

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use super::NodeId;

/// One routing-table record (dht-rpc's node object). Tick counters are maintenance-tick numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node's id, `H(addr)`.
    pub id: NodeId,
    /// Where to reach it.
    pub addr: SocketAddrV4,
    /// Our own address as this node reported it, if known.
    pub to: Option<SocketAddrV4>,
    /// Tick it was inserted.
    pub added: u32,
    /// Last tick we sent it something or heard from it.
    pub pinged: u32,
    /// Last tick we heard from it.
    pub seen: u32,
    /// Tick its `to` last fed the NAT sampler (0 = never).
    pub sampled: u32,
    /// Down hints received about it.
    pub down_hints: u32,
}

/// What [`RoutingTable::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// A new node was inserted (and appended at the latest end of the recency list).
    Inserted,
    /// A node with this id was present; its record was replaced (recency unchanged).
    Updated,
    /// The node's row holds k nodes already; nothing changed.
    Full,
}

/// The routing table: 256 lazily created rows of at most k nodes sorted by id, plus a
/// recency list over all entries (oldest → latest).
#[derive(Debug, Clone)]
pub struct RoutingTable {
    id: NodeId,
}

#[allow(unused_variables, missing_docs)]
impl RoutingTable {
    pub fn new(id: NodeId) -> Self { unimplemented!() }
    pub fn id(&self) -> &NodeId { unimplemented!() }
    pub fn len(&self) -> usize { unimplemented!() }
    pub fn is_empty(&self) -> bool { unimplemented!() }
    pub fn get(&self, id: &NodeId) -> Option<&NodeEntry> { unimplemented!() }
    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut NodeEntry> { unimplemented!() }
    pub fn add(&mut self, entry: NodeEntry) -> AddOutcome { unimplemented!() }
    pub fn remove(&mut self, id: &NodeId) -> Option<NodeEntry> { unimplemented!() }
    pub fn touch(&mut self, id: &NodeId) { unimplemented!() }
    pub fn closest<'a>(&'a self, target: &NodeId) -> impl Iterator<Item = &'a NodeEntry> + 'a { core::iter::empty() }
    pub fn nth(&self, index: usize) -> Option<&NodeEntry> { unimplemented!() }
    pub fn row(&self, index: usize) -> &[NodeEntry] { unimplemented!() }
    pub fn oldest_first(&self) -> impl Iterator<Item = &NodeEntry> + '_ { core::iter::empty() }
    pub fn latest_first(&self) -> impl Iterator<Item = &NodeEntry> + '_ { core::iter::empty() }
    pub fn rebuild(&mut self, new_id: NodeId) -> Vec<NodeEntry> { unimplemented!() }
}
