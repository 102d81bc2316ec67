//! Holepunching on the node: the client's probe and punch rounds (hyperdht `connect.js`
//! `holepunch`/`probeRound`/`roundPunch`), the server's PEER_HOLEPUNCH handler
//! (`server.js` `_onpeerholepunch`), and the plumbing between [`Puncher`]s and the node —
//! pool sockets, NAT-sampling pings, probes, and the random-punch throttle.

use core::net::SocketAddrV4;

use rand_core::{CryptoRng, RngCore};

use super::node::DhtNode;
use crate::Instant;

impl<R: RngCore + CryptoRng> DhtNode<R> {
    /// A 1-byte probe arrived on pool socket `id`.
    pub(crate) fn handle_probe(&mut self, _now: Instant, _id: u32, _from: SocketAddrV4) {}

    /// Pool socket `id` is gone (bind failed): its puncher gives up.
    pub(crate) fn on_pool_socket_failed(&mut self, _now: Instant, _id: u32) {}
}
