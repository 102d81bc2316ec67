//! What a [`DhtNode`](super::DhtNode) tells its owner, through its one
//! [`poll_event`](super::DhtNode::poll_event).

use core::net::SocketAddrV4;

use super::connection::{ConnError, ConnectionInfo};
use super::ids::{ConnId, ServerId};
use super::ops::{FindPeerReply, LookupReply, OpError, OpId, OpOutput};
use crate::connect::{ConnectError, NoisePayload};
use crate::rpc::RpcEvent;
use alloc::boxed::Box;

/// What a [`DhtNode`](super::DhtNode) tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtEvent {
    /// A dht-rpc event not consumed by an operation (ready, persistent, replies to raw queries…).
    Rpc(RpcEvent),
    /// A lookup/announce/unannounce reply carrying peers.
    LookupReply {
        /// The operation.
        op: OpId,
        /// The reply.
        reply: LookupReply,
    },
    /// A find-peer reply carrying a record.
    FindPeerReply {
        /// The operation.
        op: OpId,
        /// The reply.
        reply: FindPeerReply,
    },
    /// An operation finished.
    OpDone {
        /// The operation.
        op: OpId,
        /// Its outcome.
        result: Result<OpOutput, OpError>,
    },
    /// A server or connection event (connect, listen, read/write readiness, close).
    Connect(ConnectEvent),
}

/// Server and connection events of a [`DhtNode`](super::DhtNode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectEvent {
    /// A client connection is open: the peer's secret-stream header arrived — or, for a
    /// stream through a blind relay, as soon as it started and our header went out (as the
    /// reference's secret stream opens; writes go right behind our header). A failure after
    /// this is a [`Closed`](Self::Closed) with its error.
    Open {
        /// The connection.
        conn: ConnId,
        /// What we know about it.
        info: ConnectionInfo,
    },
    /// A client connection failed before opening.
    Failed {
        /// The connection.
        conn: ConnId,
        /// Why.
        error: ConnectError,
    },
    /// A server accepted a connection (its secret stream opens right after).
    Incoming {
        /// The server.
        server: ServerId,
        /// The new connection.
        conn: ConnId,
        /// What we know about it.
        info: ConnectionInfo,
    },
    /// A server asks whether to accept a handshake (only with
    /// [`ServerOptions::firewall`](super::ServerOptions::firewall)); answer with
    /// [`DhtNode::firewall_decision`](super::DhtNode::firewall_decision).
    Firewall {
        /// The server.
        server: ServerId,
        /// The pending handshake (answer with this).
        handshake: u64,
        /// Who connects.
        remote_public_key: [u8; 32],
        /// The client as seen by the relay.
        client_address: SocketAddrV4,
        /// The client's handshake payload, as the reference hands its firewall
        /// (`remoteHandshakePayload`): its addresses, firewall class, UDX stream, relays.
        payload: Box<NoisePayload>,
    },
    /// A server finished its first announce.
    Listening {
        /// The server.
        server: ServerId,
    },
    /// Decrypted bytes are ready for [`DhtNode::conn_read`](super::DhtNode::conn_read).
    Readable(ConnId),
    /// Room opened for [`DhtNode::conn_write`](super::DhtNode::conn_write) after a short
    /// write.
    Writable(ConnId),
    /// Everything written (and our end, if we ended) was acknowledged by the peer, after a
    /// [`DhtNode::conn_flush`](super::DhtNode::conn_flush) that returned `false`.
    Flushed(ConnId),
    /// The peer ended its side; `conn_read` returns 0 once the buffer is drained.
    End(ConnId),
    /// The connection closed (`None` = gracefully).
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why, if not gracefully.
        error: Option<ConnError>,
    },
}
