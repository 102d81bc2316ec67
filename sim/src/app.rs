//! What runs on a simulated host: any sans-IO state machine that reads datagrams and timers
//! and writes datagrams on numbered sockets.
//!
//! The engine is generic over [`App`] so that later layers (a hyperdht `Node` owning an
//! `RpcNode`, holepunching with many sockets, UDX) plug in without touching the event loop.
//! The dht-rpc core implements it in [`crate::rpc`].

use std::net::SocketAddrV4;

use hdht_core::Instant;

use crate::network::SocketId;

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

/// A sans-IO protocol instance the simulator can drive.
pub trait App {
    /// What the app tells its owner.
    type Event;

    /// One datagram arrived on `socket` from `from`.
    fn handle_datagram(&mut self, now: Instant, socket: SocketId, from: SocketAddrV4, bytes: &[u8]);
    /// The deadline from [`App::poll_timeout`] (or a later time) has come.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Datagram>;
    /// When `handle_timeout` must run next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next event for the owner.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// The host crashed: stop, produce no more output.
    fn crash(&mut self);
}
