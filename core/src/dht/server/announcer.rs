//! A server's announcer (hyperdht `lib/announcer.js`): find the closest nodes to the server's
//! key, ANNOUNCE the server's record to up to three of them (its relays), PING the relays every
//! 3 s and announce again when one stops answering (or after 100 rounds), and unannounce at
//! relays that dropped out of the newest cycle. Relays of the last three cycles count as the
//! server's relays for PEER_HOLEPUNCH.

use alloc::vec::Vec;
use core::net::SocketAddrV4;
use core::time::Duration;

use super::action::{ServerAction, ServerRequest};
use crate::connect::RelayInfo;
use crate::crypto::KeyPair;
use crate::dht::messages::{command, Announce, Peer};
use crate::dht::sign;
use crate::rpc::{NodeId, QueryReply, QuerySpec, RequestError, RequestSpec, PING};
use crate::Instant;

/// Relays a server announces to.
pub(crate) const MAX_RELAYS: usize = 3;
/// Relay keep-alive period and rounds before re-announcing.
const RELAY_PING_INTERVAL: Duration = Duration::from_secs(3);
const RELAY_PING_ROUNDS: u32 = 100;

/// The announce cycles of one server.
#[derive(Debug, Default)]
pub(crate) struct Announcer {
    /// The relays of the current cycle, with our address as each saw it.
    relays: Vec<RelayInfo>,
    /// A FIND_PEER query of a new cycle runs.
    announcing: bool,
    /// Relays with an ANNOUNCE in flight (one entry per request).
    announce_requests: Vec<SocketAddrV4>,
    next_relay_round: Option<Instant>,
    ping_rounds: u32,
    pings_answered: usize,
    /// A relay's PING reply saw us at another address than its ANNOUNCE did: our NAT mapping
    /// moved (expired and was recreated), so the relay forwards handshakes to a stale
    /// address. The next relay round announces again (the reference keeps the stale one until
    /// a relay stops answering).
    mapping_moved: bool,
    /// Relays of the last three announce cycles, newest last (`_serverRelays`): PEER_HOLEPUNCH
    /// from any of them counts as "from a server relay", and a relay that drops out of the
    /// newest cycle is unannounced.
    relay_generations: [Vec<SocketAddrV4>; 3],
    listening_emitted: bool,
}

/// The signed ANNOUNCE / UNANNOUNCE value of the server's record (no relay addresses).
fn signed_record(
    kp: &KeyPair,
    target: &[u8; 32],
    node_id: &NodeId,
    token: &[u8; 32],
    unannounce: bool,
) -> Vec<u8> {
    let peer = Peer {
        public_key: kp.public_key(),
        relay_addresses: Vec::new(),
    };
    let signature = if unannounce {
        sign::sign_unannounce(kp, target, &node_id.0, token, &peer, None)
    } else {
        sign::sign_announce(kp, target, &node_id.0, token, &peer, None)
    };
    Announce {
        peer: Some(peer),
        refresh: None,
        signature: Some(signature),
        bump: 0,
    }
    .to_bytes()
}

impl Announcer {
    /// The current relays.
    pub(crate) fn relays(&self) -> &[RelayInfo] {
        &self.relays
    }

    /// Whether `addr` was a relay in any of the last three cycles (`announcer.isRelay`).
    pub(crate) fn is_relay(&self, addr: &SocketAddrV4) -> bool {
        self.relay_generations.iter().any(|g| g.contains(addr))
    }

    /// Starts a cycle (`_cycle()`): a FIND_PEER query seeded with the current relays. Does
    /// nothing while one runs.
    pub(crate) fn announce(&mut self, target: [u8; 32], out: &mut Vec<ServerAction>) {
        if self.announcing {
            return;
        }
        // A new generation of relays starts with this update.
        self.relay_generations.rotate_left(1);
        self.relay_generations[2].clear();
        let mut spec = QuerySpec::new(NodeId(target), command::FIND_PEER);
        spec.seeds = self.relays.iter().map(|r| r.relay_address).collect();
        self.announcing = true;
        self.next_relay_round = None;
        out.push(ServerAction::Announce(spec));
    }

    /// Stops: no query, no more rounds.
    pub(crate) fn stop(&mut self, out: &mut Vec<ServerAction>) {
        self.next_relay_round = None;
        if core::mem::take(&mut self.announcing) {
            out.push(ServerAction::CancelAnnounce);
        }
    }

    /// The cycle's query ended: ANNOUNCE to the closest nodes that gave a token.
    pub(crate) fn handle_query_done(
        &mut self,
        now: Instant,
        kp: Option<&KeyPair>,
        target: [u8; 32],
        closest: &[QueryReply],
        out: &mut Vec<ServerAction>,
    ) {
        self.announcing = false;
        let Some(kp) = kp else { return };
        // Relays of the previous cycle keep our record until it expires there (≤ 27 min).
        self.relays.clear();
        let mut sent = 0;
        for r in closest.iter().take(MAX_RELAYS) {
            let (Some(token), Some(id)) = (r.token, r.from_id) else {
                continue;
            };
            let mut spec = RequestSpec::new(r.from, command::ANNOUNCE);
            spec.token = Some(token);
            spec.target = Some(NodeId(target));
            spec.value = Some(signed_record(kp, &target, &id, &token, false));
            self.announce_requests.push(r.from);
            out.push(ServerAction::Request {
                spec,
                tag: ServerRequest::Announce { relay: r.from },
            });
            sent += 1;
        }
        if sent == 0 {
            self.announced(now, out);
        }
    }

    /// An ANNOUNCE, relay PING or stale relay's FIND_PEER was answered (or failed).
    pub(crate) fn handle_response(
        &mut self,
        now: Instant,
        kp: Option<&KeyPair>,
        target: [u8; 32],
        tag: ServerRequest,
        result: Result<QueryReply, RequestError>,
        out: &mut Vec<ServerAction>,
    ) {
        match tag {
            ServerRequest::Announce { relay } => {
                let Some(i) = self.announce_requests.iter().position(|r| *r == relay) else {
                    return;
                };
                self.announce_requests.remove(i);
                if let Ok(r) = &result {
                    if r.error == 0 && self.relays.len() < MAX_RELAYS {
                        self.relays.push(RelayInfo {
                            relay_address: relay,
                            peer_address: r.to,
                        });
                    }
                    if r.error == 0 && !self.relay_generations[2].contains(&relay) {
                        self.relay_generations[2].push(relay);
                    }
                }
                if self.announce_requests.is_empty() {
                    self.announced(now, out);
                    self.unannounce_stale_relays(target, out);
                }
            }
            ServerRequest::RelayPing => {
                if let Ok(r) = &result {
                    self.pings_answered += 1;
                    if self
                        .relays
                        .iter()
                        .any(|i| i.relay_address == r.from && i.peer_address != r.to)
                    {
                        self.mapping_moved = true;
                    }
                }
            }
            ServerRequest::UnannounceLookup { relay } => {
                // Step two of `_unannounce`: the token and id from FIND_PEER sign the UNANNOUNCE.
                let Ok(r) = result else { return };
                let (Some(token), Some(id), Some(_), Some(kp)) =
                    (r.token, r.from_id, r.value.as_ref(), kp)
                else {
                    return;
                };
                let mut spec = RequestSpec::new(relay, command::UNANNOUNCE);
                spec.token = Some(token);
                spec.target = Some(NodeId(target));
                spec.value = Some(signed_record(kp, &target, &id, &token, true));
                // Nobody waits for the answer.
                out.push(ServerAction::Request {
                    spec,
                    tag: ServerRequest::Unanswered,
                });
            }
            ServerRequest::Unanswered | ServerRequest::NatPing { .. } => {}
        }
    }

    /// A cycle's announces settled: relay rounds start, and the first time the server is
    /// listening.
    fn announced(&mut self, now: Instant, out: &mut Vec<ServerAction>) {
        self.ping_rounds = 0;
        self.next_relay_round = Some(now + RELAY_PING_INTERVAL);
        if !self.listening_emitted {
            self.listening_emitted = true;
            out.push(ServerAction::Listening);
        }
    }

    /// Relays of the previous cycle that are not in the newest one lose our record (FIND_PEER
    /// for a token first).
    fn unannounce_stale_relays(&mut self, target: [u8; 32], out: &mut Vec<ServerAction>) {
        let stale: Vec<SocketAddrV4> = self.relay_generations[1]
            .iter()
            .filter(|r| !self.relay_generations[2].contains(r))
            .copied()
            .collect();
        for relay in stale {
            let mut spec = RequestSpec::new(relay, command::FIND_PEER);
            spec.target = Some(NodeId(target));
            out.push(ServerAction::Request {
                spec,
                tag: ServerRequest::UnannounceLookup { relay },
            });
        }
    }

    /// Whether a relay round is due.
    pub(crate) fn round_due(&self, now: Instant) -> bool {
        self.next_relay_round.is_some_and(|t| t <= now)
    }

    /// A relay round: PING every relay; announce again if one did not answer the previous
    /// round (or after 100 rounds, or without relays).
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        target: [u8; 32],
        out: &mut Vec<ServerAction>,
    ) {
        if !self.round_due(now) {
            return;
        }
        let expected = self.relays.len().min(MAX_RELAYS);
        let answered = core::mem::take(&mut self.pings_answered);
        let lost = self.ping_rounds > 0 && answered < expected;
        let moved = core::mem::take(&mut self.mapping_moved);
        self.ping_rounds += 1;
        if lost || moved || self.ping_rounds > RELAY_PING_ROUNDS || self.relays.is_empty() {
            return self.announce(target, out);
        }
        self.next_relay_round = Some(now + RELAY_PING_INTERVAL);
        for relay in self.relays.iter().map(|r| r.relay_address) {
            let mut spec = RequestSpec::new(relay, PING);
            spec.internal = true;
            spec.retries = Some(0);
            out.push(ServerAction::Request {
                spec,
                tag: ServerRequest::RelayPing,
            });
        }
    }

    /// The next relay round.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next_relay_round
    }
}
