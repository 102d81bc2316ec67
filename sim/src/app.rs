//! What runs on a simulated host: any sans-IO state machine that reads datagrams and timers
//! and writes datagrams on numbered sockets — and, if it wants, opens and closes sockets while
//! it runs.
//!
//! The engine is generic over [`App`] so that later layers plug in without touching the event
//! loop. The dht-rpc core implements it in [`crate::rpc`] (two fixed sockets); the hyperdht
//! node, whose holepunching opens pool sockets at run time, in [`crate::dht`].

use std::net::SocketAddrV4;

use hdht_core::Instant;

use crate::network::{NetError, SocketId};

/// A datagram an app wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sending socket.
    pub socket: SocketId,
    /// Destination.
    pub to: SocketAddrV4,
    /// Bytes (a 1-byte holepunch probe is fine).
    pub payload: Vec<u8>,
    /// IP TTL (`None` = 64).
    pub ttl: Option<u8>,
}

/// The default IP TTL.
pub const DEFAULT_TTL: u8 = 64;

/// A socket an app wants opened or closed while it runs (see [`App::poll_socket_command`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketCommand {
    /// Bind a new socket on an ephemeral port of the host (port 0, as a real OS would pick
    /// it). The engine answers with [`App::socket_bound`], quoting `tag` (the app's own name
    /// for the socket).
    Bind {
        /// The app's name for the socket.
        tag: u64,
    },
    /// Close a socket; datagrams to it are dropped from now on (port unreachable).
    Close(SocketId),
}

/// A sans-IO protocol instance the simulator can drive.
pub trait App {
    /// What the app tells its owner.
    type Event;

    /// One datagram arrived on `socket` from `from`.
    fn handle_datagram(&mut self, now: Instant, socket: SocketId, from: SocketAddrV4, bytes: &[u8]);
    /// The deadline from [`App::poll_timeout`] (or a later time) has come.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, at `now` (the time of the call that produced it).
    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram>;
    /// When `handle_timeout` must run next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next event for the owner.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// The host crashed: stop, produce no more output.
    fn crash(&mut self);

    /// The next socket to open or close. The engine drains these after every call into the
    /// app and before each of its datagrams, so a socket exists before anything is sent from
    /// it. Apps with a fixed set of sockets (bound when the host starts) keep the default.
    fn poll_socket_command(&mut self) -> Option<SocketCommand> {
        None
    }

    /// The engine's answer to [`SocketCommand::Bind`]: the new socket, or why none could be
    /// bound (too many sockets, no free ephemeral port).
    fn socket_bound(&mut self, now: Instant, tag: u64, result: Result<SocketId, NetError>) {
        let _ = (now, tag, result);
    }
}
