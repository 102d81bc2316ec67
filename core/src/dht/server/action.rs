//! What a server asks the node to do, and how it names its requests: the server's whole
//! output (it does no I/O itself).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::SocketAddrV4;

use crate::connect::{HandshakeResult, NoisePayload, Puncher};
use crate::dht::ids::ConnId;
use crate::relay::RelayPlan;
use crate::rpc::{IncomingRequest, QuerySpec, ReplySpec, RequestSpec, SocketKind};
use crate::udx;

/// A server's name for a handshake: the BLAKE2b-256 digest of its msg1 (one entry per distinct
/// msg1, as keying by the msg1 bytes would give, up to a hash collision). 32 bytes inline
/// instead of a heap copy of the ~100-byte msg1 in each of the tables that name it: a busy
/// server keeps every handshake 10 s, and their freed copies were heap holes among the idle
/// connections' memory.
pub(crate) type HandshakeKey = [u8; 32];

/// The key of the handshake whose msg1 is `msg1`.
pub(crate) fn handshake_key(msg1: &[u8]) -> HandshakeKey {
    crate::crypto::hash(msg1)
}

/// A request a server sent, as it knows it (the node routes the response back with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerRequest {
    /// An ANNOUNCE of our record to `relay`.
    Announce {
        /// Where it went.
        relay: SocketAddrV4,
    },
    /// A relay round's PING.
    RelayPing,
    /// The FIND_PEER (for a token) before unannouncing at a stale `relay`.
    UnannounceLookup {
        /// The stale relay.
        relay: SocketAddrV4,
    },
    /// A NAT-sampling ping of the puncher of handshake `holepunch_id`, from `socket`.
    NatPing {
        /// The handshake's holepunch id.
        holepunch_id: u64,
        /// The puncher socket it left from.
        socket: udx::SocketId,
    },
    /// Nobody waits for the answer (the UNANNOUNCE at a stale relay).
    Unanswered,
}

/// What a server asks the node to do.
#[derive(Debug)]
pub(crate) enum ServerAction {
    /// Start an announce cycle's FIND_PEER query; its end comes back.
    Announce(QuerySpec),
    /// Stop that query.
    CancelAnnounce,
    /// Send a request; its response comes back with `tag`.
    Request {
        /// The request.
        spec: RequestSpec,
        /// How the server knows it.
        tag: ServerRequest,
    },
    /// Forward `req` (once, untracked) with a new value.
    Relay {
        /// The request being answered this way.
        req: IncomingRequest,
        /// The new value.
        value: Vec<u8>,
        /// To.
        to: SocketAddrV4,
        /// From this socket (`None`: the one `req` came in on).
        socket: Option<SocketKind>,
    },
    /// Respond to `req`.
    Reply {
        /// The request.
        req: IncomingRequest,
        /// The response.
        spec: ReplySpec,
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
    /// The first announce cycle is done: the server is listening.
    Listening,
    /// Ask the owner whether to accept this handshake (answered with
    /// [`Server::firewall_decision`] and the same `key`).
    AskFirewall {
        /// The handshake (the digest of its msg1).
        key: HandshakeKey,
        /// Who connects.
        remote_public_key: [u8; 32],
        /// The client as the relay saw it.
        client_address: SocketAddrV4,
        /// The client's handshake payload (its addresses, firewall, UDX and relay fields).
        payload: Box<NoisePayload>,
    },
    /// Open the connection of an accepted handshake (then hand its punch back with
    /// [`Server::attach_punch`]).
    Accept(Box<Accepted>),
    /// The connection's first-packet wait gives way to a punch.
    WaitForPunch(ConnId),
    /// Drop the connection if it still waits for the client's first packet (the punch for it
    /// was aborted).
    AbandonConnection(ConnId),
}

/// A handshake the server answered with success: the node opens the connection.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The handshake it answers (the server's name for it: the digest of its msg1).
    pub(crate) key: HandshakeKey,
    /// Our UDX stream id (in msg2).
    pub(crate) stream_id: u32,
    /// The client's UDX stream id.
    pub(crate) client_udx: u32,
    /// The client as the relay saw it.
    pub(crate) client_address: SocketAddrV4,
    /// The finished handshake.
    pub(crate) handshake: HandshakeResult,
    /// `Some(socket)`: connect to the client at once over that socket (it came directly, or
    /// is OPEN); `None`: wait for the client's first packet.
    pub(crate) connect_now: Option<udx::SocketId>,
    /// The puncher for a waiting connection, with the key of its PEER_HOLEPUNCH boxes.
    pub(crate) punch: Option<(Puncher, [u8; 32])>,
    /// Pair the connection through this blind relay.
    pub(crate) relay: Option<RelayPlan>,
    /// The relay connection's keep-alive.
    pub(crate) relay_keep_alive: Option<core::time::Duration>,
}
