//! A node's blind relay as the node holds it: its server, the relay machine, and what it did.

use crate::dht::ids::ServerId;
use crate::relay::{ForwardStats, RelayServer, RelayStats};

/// The node's relay: its server and the relay machine.
#[derive(Debug)]
pub(crate) struct RelayService {
    pub(crate) server: ServerId,
    pub(crate) relay: RelayServer,
}

impl RelayService {
    /// Whether `id` is a relay stream (the demux must not use it).
    pub(crate) fn is_relay_stream(&self, id: u32) -> bool {
        self.relay.is_relay_stream(id)
    }

    /// The relay machine (stream ids in use, for new streams).
    pub(crate) fn machine(&self) -> &RelayServer {
        &self.relay
    }
}

/// What a node's relay did, for its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayServiceStats {
    /// The relay's server.
    pub server: ServerId,
    /// Sessions and pairings.
    pub control: RelayStats,
    /// Packets and bytes forwarded.
    pub forward: ForwardStats,
    /// Relay connections open now.
    pub sessions: usize,
}
