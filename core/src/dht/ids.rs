//! Identifiers of the node's connections and servers, for the lifetime of a node.

/// Identifies a connection: a client's connect in progress, or an open connection (either
/// side), for the lifetime of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Identifies a server ([`DhtNode::create_server`](super::DhtNode::create_server)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub u64);
