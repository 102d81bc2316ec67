//! What a [`Swarm`](super::Swarm) tells its owner.

use crate::dht::{ConnError, ConnId};

use super::flush::FlushId;

/// What a [`Swarm`](super::Swarm) tells its owner, through
/// [`poll_event`](super::Swarm::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmEvent {
    /// A connection to a peer is the swarm's connection to it now (`connection`): ours once
    /// its stream opened, the peer's as soon as it was accepted and is not a duplicate. Read
    /// and write it through the `DhtNode`; [`Swarm::peer`](super::Swarm::peer) has its info.
    Connection {
        /// The connection.
        conn: ConnId,
        /// The peer.
        remote_public_key: [u8; 32],
        /// We dialed it.
        initiator: bool,
    },
    /// A connection the swarm had announced with [`SwarmEvent::Connection`] closed
    /// (`None` = gracefully).
    Disconnection {
        /// The connection.
        conn: ConnId,
        /// The peer.
        remote_public_key: [u8; 32],
        /// Why, if not gracefully.
        error: Option<ConnError>,
    },
    /// A refresh of a topic ended (`discovery.flushed()`): its announce was stored or its
    /// lookup finished (`ok`), or it failed.
    DiscoveryFlushed {
        /// The topic.
        topic: [u8; 32],
        /// It succeeded.
        ok: bool,
    },
    /// A [`Swarm::flush`](super::Swarm::flush) finished: every topic's current refresh
    /// ended and every peer found so far was tried once (`ok`), or the swarm was destroyed.
    Flushed {
        /// The flush.
        flush: FlushId,
        /// `false` when the swarm was destroyed first.
        ok: bool,
    },
}
