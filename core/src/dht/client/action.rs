//! What a connect asks the node to do, and how it names its requests: the client's whole
//! output (it does no I/O itself).

use alloc::vec::Vec;
use core::net::{SocketAddr, SocketAddrV4};
use core::time::Duration;

use crate::connect::{ConnectError, HandshakeResult};
use crate::relay::RelayPlan;
use crate::rpc::{QuerySpec, RequestSpec};
use crate::udx;

/// A request a connect sent, as it knows it (the node routes the response back with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientRequest {
    /// A PEER_HANDSHAKE through `relay`.
    Handshake {
        /// Where it went.
        relay: SocketAddrV4,
    },
    /// The LAN shortcut's PING to the server's local address.
    LanPing,
    /// A PEER_HOLEPUNCH of this round.
    Holepunch {
        /// Its round.
        round: u64,
    },
    /// A NAT-sampling ping from the puncher's `socket`.
    NatPing {
        /// The puncher socket it left from.
        socket: udx::SocketId,
    },
    /// The abort notice (nobody waits for its answer).
    AbortNotice,
}

/// A UDX packet from the server that arrived before we knew where the server is.
#[derive(Debug, Clone)]
pub(crate) struct EarlyPacket {
    /// Our socket it arrived on.
    pub(crate) socket: udx::SocketId,
    /// Its sender.
    pub(crate) from: SocketAddr,
    /// The datagram.
    pub(crate) bytes: Vec<u8>,
}

/// What a connect asks the node to do.
#[derive(Debug)]
pub(crate) enum ClientAction {
    /// Start the FIND_PEER query for the server's record; its replies and end come back.
    FindPeer(QuerySpec),
    /// Stop that query.
    CancelFindPeer,
    /// Send a request; its response comes back with `tag`.
    Request {
        /// The request.
        spec: RequestSpec,
        /// How the connect knows it.
        tag: ClientRequest,
    },
    /// Send a 1-byte holepunch probe.
    Probe {
        /// From this puncher socket.
        socket: udx::SocketId,
        /// To.
        to: SocketAddrV4,
        /// IP TTL.
        ttl: u8,
    },
    /// Connect our UDX stream to the server's stream `remote_udx` at `addr` over `socket` and
    /// open the connection (`handshake`); then feed it the server's early packets.
    ConnectStream {
        /// Our socket.
        socket: udx::SocketId,
        /// The server's stream id.
        remote_udx: u32,
        /// The server's address.
        addr: SocketAddrV4,
        /// The finished handshake.
        handshake: HandshakeResult,
        /// Packets that came before.
        early: Vec<EarlyPacket>,
    },
    /// Feed these packets again as if they just arrived (the server reached us before its
    /// handshake reply did).
    ReplayEarly(Vec<EarlyPacket>),
    /// The punch was dropped (the LAN path won): the answers to its requests no longer
    /// concern the connect.
    PunchDropped,
    /// Pair the stream through a blind relay (the node starts the relay connection; the
    /// attempt hears back with [`ClientAttempt::relay_paired`]).
    Relay {
        /// Which relay, which token, which role.
        plan: RelayPlan,
        /// The server's own stream id (where a direct path goes later).
        peer_udx: u32,
        /// The relay connection's keep-alive.
        keep_alive: Option<Duration>,
    },
    /// The handshake reply confirmed the relay our connect started pairing through at once
    /// (ours, the server naming none): that pairing carries the stream; a pairing the relay
    /// already answered connects it now.
    RelayAdopt {
        /// The server's own stream id (where a direct path goes later).
        peer_udx: u32,
    },
    /// The handshake reply chose another relay (the server's) or none: the relay pairing our
    /// connect started at once is let go.
    RelayCancel,
    /// The punch won while the stream runs through the relay: move the stream to the direct
    /// path (`changeRemote`).
    Upgrade {
        /// The puncher socket the probe came in on.
        socket: udx::SocketId,
        /// The server's stream id.
        remote_udx: u32,
        /// The server's address behind its NAT.
        addr: SocketAddrV4,
    },
    /// The connect failed.
    Fail(ConnectError),
}
