//! A server's handshakes (hyperdht `server.js` `_onpeerhandshake` / `_addHandshake`): one entry
//! per distinct msg1, so that every copy of it (a client sends through two relays at once, and
//! retransmits) gets the identical msg2, routed back the way that copy came; the firewall
//! question while the owner decides; and the route of a reply.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::SocketAddrV4;

use super::holepunch::ServerPunch;
use crate::connect::{Handshake, NoisePayload};
use crate::dht::messages::{mode, HandshakeEnvelope};
use crate::rpc::{IncomingRequest, SocketKind};
use crate::Instant;

/// One distinct msg1 a server got.
#[derive(Debug, Default)]
pub(crate) struct ServerHandshake {
    /// Our msg2, sent again for duplicates of the same msg1 (each answered the way it came),
    /// and the puncher socket replies leave from (`None`: the socket the request came in on).
    pub(crate) reply: Option<(Option<SocketKind>, Vec<u8>)>,
    /// When it was answered or refused (it is forgotten a while after).
    pub(crate) done_at: Option<Instant>,
    /// Waiting for the owner's firewall decision. Boxed: the handshake state is over a
    /// kilobyte, and every handshake stays in the server's table 10 s after it is answered.
    pub(crate) pending: Option<Box<PendingHandshake>>,
    /// The holepunch while one runs.
    pub(crate) punch: Option<Box<ServerPunch>>,
    /// The id PEER_HOLEPUNCH messages name this handshake by.
    pub(crate) holepunch_id: Option<u64>,
}

/// A handshake read but not answered yet (waiting for the firewall decision, or about to be
/// accepted).
#[derive(Debug)]
pub(crate) struct PendingHandshake {
    pub(crate) req: IncomingRequest,
    pub(crate) envelope: HandshakeEnvelope,
    pub(crate) handshake: Handshake,
    pub(crate) client_payload: NoisePayload,
    pub(crate) client_address: SocketAddrV4,
}

/// A reply to send: `(socket, to, value, relayed)` — relayed replies are forwarded requests,
/// the others responses.
pub(crate) type ReplyRoute = (SocketKind, SocketAddrV4, Vec<u8>, bool);

/// Where the server's handshake reply (`msg2`) to `req` goes, as the reference's router sends
/// it: straight back to a client that came directly; to the relay that forwarded it, naming
/// the client's address as that relay saw it; or, from a second relay, to the first one.
/// `None` for a mode that gets no reply.
pub(crate) fn reply_route(
    req: &IncomingRequest,
    envelope: &HandshakeEnvelope,
    socket: SocketKind,
    msg2: Vec<u8>,
) -> Option<ReplyRoute> {
    match envelope.mode {
        mode::FROM_CLIENT => {
            let v = HandshakeEnvelope {
                mode: mode::REPLY,
                noise: msg2,
                peer_address: None,
                relay_address: None,
            };
            Some((socket, req.from, v.to_bytes(), false))
        }
        mode::FROM_RELAY => {
            let v = HandshakeEnvelope {
                mode: mode::FROM_SERVER,
                noise: msg2,
                peer_address: envelope.peer_address,
                relay_address: None,
            };
            Some((socket, req.from, v.to_bytes(), true))
        }
        mode::FROM_SECOND_RELAY => {
            let relay = envelope.relay_address?;
            let v = HandshakeEnvelope {
                mode: mode::FROM_SERVER,
                noise: msg2,
                peer_address: envelope.peer_address,
                relay_address: None,
            };
            Some((socket, relay, v.to_bytes(), true))
        }
        _ => None,
    }
}
