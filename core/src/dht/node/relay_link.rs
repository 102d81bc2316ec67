//! One connection's relay attempt as the node holds it, and where its path stands.

use core::net::SocketAddr;
use core::time::Duration;

use crate::dht::ids::{ConnId, ServerId};
use crate::relay::RelayPlan;
use crate::udx;
use crate::Instant;

/// A connection's path with respect to its blind relay
/// ([`DhtNode::conn_relay_path`](crate::dht::DhtNode::conn_relay_path)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayPath {
    /// The relay connection is being set up, or the relay has not paired yet.
    Pairing,
    /// The stream runs through the relay.
    Relayed,
    /// The stream ran through the relay and moved to a direct path (a punch won).
    Upgraded,
    /// A direct path won before the relay paired; the relay was let go.
    Direct,
    /// The relay failed before pairing.
    Failed,
}

/// One connection's relay attempt.
#[derive(Debug)]
pub(crate) struct RelayLink {
    /// The relay session (its connection) the pairing uses, until it is released.
    pub(crate) relay_conn: Option<ConnId>,
    pub(crate) plan: RelayPlan,
    /// The application stream's own id.
    pub(crate) app_stream: u32,
    /// The peer's own stream id (where the direct path goes).
    pub(crate) peer_udx: u32,
    /// Pairing must be done by then.
    pub(crate) deadline: Instant,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) path: RelayPath,
    /// Where relayed packets come from once paired: the relay connection's socket and the
    /// relay's address.
    pub(crate) via: Option<(udx::SocketId, SocketAddr)>,
    /// The server that accepted the connection (`None`: our connect).
    pub(crate) server: Option<ServerId>,
    /// After the move to the direct path: the first direct packet ends the relay connection.
    pub(crate) confirm_direct: bool,
    /// The empty UDX message announcing the direct path was sent.
    pub(crate) announced: bool,
    /// The first packet through the relay arrived (what we sent before it was resent).
    pub(crate) heard_through_relay: bool,
    /// Once paired: when what we sent first through the relay is sent again if nothing came
    /// through it yet (`first_resend_delay` in the relay client).
    pub(crate) resend_at: Option<Instant>,
    /// The application connection closed over the relay: the relay connection ends then
    /// (after the stream's last acknowledgements crossed it).
    pub(crate) end_at: Option<Instant>,
    /// A connect's pairing started before its handshake reply: the relay's stream id if the
    /// relay paired before the reply came (the stream connects through it once it has).
    pub(crate) paired_early: Option<u32>,
}
