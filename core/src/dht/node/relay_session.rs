//! One relay connection of ours as the node holds it: a blind-relay session that carries the
//! pairings of every [`RelayLink`](super::relay_link::RelayLink) through that relay (client
//! and server side alike), and lingers idle for the next one.
//!
//! blind-relay 1.6.1's session takes any number of `pair` requests with distinct tokens
//! (spec 05 §6.3), so a second pairing through a relay we are already connected to sends its
//! `pair` at once: no relay lookup, no handshake. The reference makes a new relay connection
//! per pairing; on the wire the difference is only that one connection carries several
//! tokens. A pairing that is released (the relayed connection closed, moved to the direct
//! path, or a direct path won first) sends `unpair`, which on the relay drops a pending entry
//! or destroys both relay streams of a pair — what closing the relay connection does for the
//! reference (§6.3 `_onclose`), so no relayed pair outlives its use.

use alloc::collections::{BTreeMap, BTreeSet};
use core::time::Duration;

use crate::dht::ids::ConnId;
use crate::relay::{RelayClient, Token};
use crate::Instant;

/// How long a relay session with no pairing stays open for the next one.
///
/// 30 s: long enough for the reconnects that follow a connection (an application's next
/// connect, a swarm's retry, a server's next client) to find it warm, short enough that an
/// idle node holds a relay's session (one connection, no relay streams) only briefly. While
/// idle the connection sends keep-alives every [`SESSION_KEEP_ALIVE`], so its NAT mapping
/// and the relay's view of it stay fresh.
pub(crate) const SESSION_LINGER: Duration = Duration::from_secs(30);

/// The keep-alive of a relay session (hyperdht's `connectionKeepAlive`, 5 s).
pub(crate) const SESSION_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Idle relay sessions kept at most; beyond it the longest idle one ends.
pub(crate) const MAX_IDLE_SESSIONS: usize = 8;

/// Relays of one listening server whose sessions the node opens at `listen` and keeps while
/// it listens (the first ones of its `relay_through` list).
pub(crate) const MAX_PINNED_PER_SERVER: usize = 4;

/// One relay connection of ours and the pairings on it.
#[derive(Debug)]
pub(crate) struct RelaySession {
    /// The relay's public key.
    pub(crate) relay: [u8; 32],
    /// The blind-relay client, once the connection's stream connected.
    pub(crate) client: Option<RelayClient>,
    /// The application connections whose pairing uses this session.
    pub(crate) links: BTreeSet<ConnId>,
    /// Pair requests sent (or to send once connected) by token → their connection.
    pub(crate) pending: BTreeMap<Token, ConnId>,
    /// Since when no link uses the session (it ends [`SESSION_LINGER`] later).
    pub(crate) idle_since: Option<Instant>,
    /// New pairings may use it (the node's session for its relay); false once it failed,
    /// ends, or another session replaced it.
    pub(crate) reusable: bool,
}

impl RelaySession {
    pub(crate) fn new(relay: [u8; 32]) -> Self {
        RelaySession {
            relay,
            client: None,
            links: BTreeSet::new(),
            pending: BTreeMap::new(),
            idle_since: None,
            reusable: true,
        }
    }

    /// Whether a new pairing with `token` can go on this session.
    pub(crate) fn takes(&self, token: &Token) -> bool {
        self.reusable
            && !self.pending.contains_key(token)
            && self.pending.len() < crate::relay::client::MAX_REQUESTS
            && !self.client.as_ref().is_some_and(|c| c.is_closed())
    }

    /// When an idle session ends.
    pub(crate) fn idle_deadline(&self) -> Option<Instant> {
        self.idle_since.map(|t| t + SESSION_LINGER)
    }
}
