//! The router (hyperdht `lib/router.js`): where handshakes for a public key go — to the node
//! that self-announced it here (a remote server, `relay` = its address) or to a server on this
//! node — and the stateless relaying of PEER_HANDSHAKE and PEER_HOLEPUNCH between a client and
//! a server: the client's address travels inside the messages.

use alloc::vec::Vec;
use core::net::SocketAddrV4;
use core::time::Duration;

use super::messages::{mode, HandshakeEnvelope, HolepunchEnvelope};
use super::store::Xache;
use crate::rpc::{IncomingRequest, ReplySpec};
use crate::Instant;

/// A route to a server: a remote self-announce (`relay` = the announcer) or a local server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Where handshakes for this key go; `None` for a server on this node.
    pub relay: Option<SocketAddrV4>,
    /// The encoded `peer` record.
    pub record: Vec<u8>,
}

/// What to do with a PEER_HANDSHAKE / PEER_HOLEPUNCH.
#[derive(Debug)]
pub(crate) enum Routed<E> {
    /// It is for a server on this node.
    Local(E),
    /// Forward it (same tid) with a new value.
    Relay {
        /// The new value.
        value: Vec<u8>,
        /// To.
        to: SocketAddrV4,
    },
    /// Respond.
    Reply(ReplySpec),
    /// Drop it.
    Drop,
}

/// A response to an arbitrary address with no token and no closer nodes (`reply(v, {to})`).
pub(crate) fn bare_to(to: SocketAddrV4, value: Vec<u8>) -> ReplySpec {
    ReplySpec {
        token: false,
        closer_nodes: false,
        to: Some(to),
        ..ReplySpec::value(Some(value))
    }
}

/// The routes, by key target, with the reference's limits and expiry.
#[derive(Debug)]
pub(crate) struct Router {
    forwards: Xache<[u8; 32], Forward>,
}

impl Router {
    /// An empty router.
    pub(crate) fn new(max_size: usize, max_age: Duration, now: Instant) -> Self {
        Router {
            forwards: Xache::new(max_size, max_age, now),
        }
    }

    /// The route for `target` (refreshes it, as the reference's cache does on a hit).
    pub(crate) fn get(&mut self, target: &[u8; 32]) -> Option<&Forward> {
        self.forwards.get(target)
    }

    /// Routes `target` (a self-announce, or a refresh of one).
    pub(crate) fn set(&mut self, target: [u8; 32], forward: Forward) {
        self.forwards.set(target, forward);
    }

    /// Routes `target` to a server on this node, kept while it listens.
    pub(crate) fn set_local(&mut self, target: [u8; 32], record: Vec<u8>) {
        self.forwards.retain(
            target,
            Forward {
                relay: None,
                record,
            },
        );
    }

    /// Forgets the route of `target`.
    pub(crate) fn delete(&mut self, target: &[u8; 32]) {
        self.forwards.delete(target);
    }

    /// Expires old routes.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.forwards.handle_timeout(now);
    }

    /// When routes expire next.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.forwards.poll_timeout()
    }

    /// The route of a request's target, cloned.
    fn route(&mut self, req: &IncomingRequest) -> Option<Forward> {
        req.target.and_then(|t| self.forwards.get(&t.0).cloned())
    }

    /// PEER_HANDSHAKE (`router.js` `onpeerhandshake`).
    pub(crate) fn handle_peer_handshake(
        &mut self,
        req: &IncomingRequest,
    ) -> Routed<HandshakeEnvelope> {
        let Some(Ok(hs)) = req.value.as_deref().map(HandshakeEnvelope::decode) else {
            return Routed::Drop;
        };
        let route = self.route(req);
        if route.as_ref().is_some_and(|f| f.relay.is_none()) {
            return Routed::Local(hs);
        }
        let relay = route.and_then(|f| f.relay);
        match hs.mode {
            mode::FROM_CLIENT => {
                let Some(next) = hs.relay_address.or(relay) else {
                    // Help the client route: an empty reply with closer nodes.
                    return Routed::Reply(ReplySpec {
                        token: false,
                        ..ReplySpec::value(None)
                    });
                };
                let value = HandshakeEnvelope {
                    mode: mode::FROM_RELAY,
                    noise: hs.noise,
                    peer_address: Some(req.from),
                    relay_address: None,
                };
                Routed::Relay {
                    value: value.to_bytes(),
                    to: next,
                }
            }
            mode::FROM_RELAY => {
                let Some(next) = relay else {
                    return Routed::Drop;
                };
                let value = HandshakeEnvelope {
                    mode: mode::FROM_SECOND_RELAY,
                    noise: hs.noise,
                    peer_address: hs.peer_address,
                    relay_address: Some(req.from),
                };
                Routed::Relay {
                    value: value.to_bytes(),
                    to: next,
                }
            }
            mode::FROM_SERVER => {
                let Some(client) = hs.peer_address else {
                    return Routed::Drop;
                };
                let value = HandshakeEnvelope {
                    mode: mode::REPLY,
                    noise: hs.noise,
                    peer_address: Some(req.from),
                    relay_address: None,
                };
                Routed::Reply(bare_to(client, value.to_bytes()))
            }
            _ => Routed::Drop,
        }
    }

    /// PEER_HOLEPUNCH (`router.js` `onpeerholepunch`).
    pub(crate) fn handle_peer_holepunch(
        &mut self,
        req: &IncomingRequest,
    ) -> Routed<HolepunchEnvelope> {
        let Some(Ok(hp)) = req.value.as_deref().map(HolepunchEnvelope::decode) else {
            return Routed::Drop;
        };
        let route = self.route(req);
        let relay = route.as_ref().and_then(|f| f.relay);
        match hp.mode {
            mode::FROM_CLIENT => {
                // A node forwards to any address the client names, as the reference does.
                let Some(next) = hp.peer_address.or(relay) else {
                    return Routed::Drop;
                };
                let value = HolepunchEnvelope {
                    mode: mode::FROM_RELAY,
                    id: hp.id,
                    payload: hp.payload,
                    peer_address: Some(req.from),
                };
                Routed::Relay {
                    value: value.to_bytes(),
                    to: next,
                }
            }
            mode::FROM_SERVER => {
                let Some(client) = hp.peer_address else {
                    return Routed::Drop;
                };
                let value = HolepunchEnvelope {
                    mode: mode::REPLY,
                    id: hp.id,
                    payload: hp.payload,
                    peer_address: Some(req.from),
                };
                Routed::Reply(bare_to(client, value.to_bytes()))
            }
            // FROM_RELAY is for the node hosting the server.
            mode::FROM_RELAY if route.is_some_and(|f| f.relay.is_none()) => Routed::Local(hp),
            _ => Routed::Drop,
        }
    }
}
