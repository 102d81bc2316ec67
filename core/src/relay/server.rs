//! The relay server's control plane (blind-relay 1.6.1 `Server`/`Session`, spec 05 §6.3): one
//! session per relay connection, a pairing table keyed by token, and the links it creates in
//! the [`Forwarder`].
//!
//! Semantics as the reference: a second request for a taken half is ignored silently; when both
//! halves are in, two relay streams are allocated (the non-initiator's first), linked, and each
//! session gets `pair {isInitiator, token, id = its relay stream id, seq 0}`, non-initiator
//! first; `unpair` drops a pending entry (from any session knowing the token) or destroys the
//! caller's link; a session's end drops its pending entries and destroys its links. Nothing
//! checks that the two halves come from different sessions (a session may pair with itself).
//!
//! Bounded where the reference is not ([`RelayLimits`]).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use rand_core::RngCore;

use super::error::RelayError;
use super::forward::{Forward, ForwardStats, Forwarder};
use super::message::{Pair, Token, Unpair, MESSAGE_TYPES, PROTOCOL, TYPE_PAIR, TYPE_UNPAIR};
use crate::protomux::{Accept, ChannelId, ChannelOptions, Mux, MuxEvent};
use crate::time::Instant;
use crate::udx::SocketId;

/// The owner's name for one relay connection.
pub type SessionId = u64;

/// How much a relay holds. The reference relay has none of these limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Pending pairings one session may have (reference: unlimited). A hyperdht peer opens one
    /// relay connection per relayed connect and pairs once on it; further requests of a full
    /// session are ignored (as duplicates are).
    pub pending_per_session: usize,
    /// Pending pairings in total (reference: unlimited). When full, the oldest pending entry
    /// is dropped for the new one, so a flood delays honest pairings rather than locking them
    /// out.
    pub pending_total: usize,
    /// How long a half-paired entry waits for its partner (reference: forever, until its
    /// session closes). hyperdht peers give up 15 s after their handshake.
    pub pairing_timeout: Duration,
    /// Relayed pairs (two relay streams each) at once (reference: unlimited). A pairing beyond
    /// it is dropped unanswered; both peers time out as when the relay never answers.
    pub relayed_pairs: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            pending_per_session: 16,
            pending_total: 4096,
            pairing_timeout: Duration::from_secs(30),
            relayed_pairs: 1024,
        }
    }
}

/// Counters, as the reference's `server.stats`, plus what the limits refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Sessions accepted.
    pub sessions_accepted: u64,
    /// Sessions whose channel both sides opened.
    pub sessions_opened: u64,
    /// Sessions ended.
    pub sessions_closed: u64,
    /// Pair requests taken into the table.
    pub pairings_requested: u64,
    /// Pairings completed.
    pub pairings_matched: u64,
    /// Pairings cancelled (unpair, session end).
    pub pairings_cancelled: u64,
    /// Pending entries now.
    pub pairings_pending: u64,
    /// Relayed pairs now.
    pub pairings_active: u64,
    /// Requests ignored because their half was taken (as the reference).
    pub pairings_duplicate: u64,
    /// Requests or pairings refused by a limit.
    pub pairings_refused: u64,
    /// Pending entries dropped by the timeout or for a newer one.
    pub pairings_expired: u64,
    /// Relay streams opened.
    pub streams_opened: u64,
    /// Relay streams closed.
    pub streams_closed: u64,
}

/// What the relay tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// Two requests matched: relay streams `follower_stream` (for the non-initiator) and
    /// `initiator_stream` now forward to each other.
    Paired {
        /// The token.
        token: Token,
        /// The non-initiator's session.
        follower: SessionId,
        /// The initiator's session.
        initiator: SessionId,
        /// The relay stream the non-initiator sends to.
        follower_stream: u32,
        /// The relay stream the initiator sends to.
        initiator_stream: u32,
    },
    /// The session's channel closed or its frames were invalid (`error`): close its
    /// connection. Its pending pairings and links are gone.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// Why, if it failed.
        error: Option<RelayError>,
    },
}

#[derive(Debug)]
struct Session {
    mux: Mux,
    channel: Option<ChannelId>,
    /// Accept the peer's `blind-relay` open with whatever id it uses.
    accept_any: bool,
    pending: BTreeSet<Token>,
    /// Every relay stream this session paired, with its token. The reference keeps one per
    /// token (a token paired again replaces the entry, orphaning the older link until a DESTROY
    /// passes); all are kept here, so a session's end removes every link it made.
    links: BTreeMap<u32, Token>,
}

#[derive(Debug, Clone, Copy)]
struct Half {
    session: SessionId,
    remote_id: u32,
}

#[derive(Debug)]
struct PendingPair {
    /// `[non-initiator, initiator]`, as the reference's `links`.
    halves: [Option<Half>; 2],
    since: Instant,
}

/// A blind-relay server: sessions, pairing table, forwarder.
#[derive(Debug, Default)]
pub struct RelayServer {
    limits: RelayLimits,
    sessions: BTreeMap<SessionId, Session>,
    /// Sessions that may have frames to write ([`poll_frame`](Self::poll_frame) looks only at
    /// these, not at every session: a relay for a large swarm holds tens of thousands).
    dirty: BTreeSet<SessionId>,
    pending: BTreeMap<Token, PendingPair>,
    expiry: BTreeSet<(Instant, Token)>,
    /// Relay stream → its session.
    owners: BTreeMap<u32, SessionId>,
    forward: Forwarder,
    events: VecDeque<RelayEvent>,
    stats: RelayStats,
}

impl RelayServer {
    /// A relay with these limits.
    pub fn new(limits: RelayLimits) -> Self {
        RelayServer {
            limits,
            ..Self::default()
        }
    }

    /// Counters.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Data-plane counters.
    pub fn forward_stats(&self) -> ForwardStats {
        self.forward.stats()
    }

    /// Sessions held.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Pending pairing entries.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Relay streams (two per relayed pair).
    pub fn relay_streams(&self) -> usize {
        self.forward.streams()
    }

    /// Whether `id` is one of this relay's streams (the owner's demux must not use it).
    pub fn is_relay_stream(&self, id: u32) -> bool {
        self.forward.contains(id)
    }

    /// Start a session on a new relay connection (`relay.accept(socket, {id})`). With
    /// `channel_id` the relay opens `("blind-relay", channel_id)` at once — hyperdht relays use
    /// the peer's public key, the only id a hyperdht peer's channel pairs with; without, it
    /// answers the peer's `blind-relay` open with the id the peer chose.
    pub fn accept(
        &mut self,
        session: SessionId,
        channel_id: Option<&[u8]>,
    ) -> Result<(), RelayError> {
        if self.sessions.contains_key(&session) {
            return Err(RelayError::DuplicateSession(session));
        }
        let mut mux = Mux::new();
        let channel = match channel_id {
            Some(id) => {
                Some(mux.open_channel(ChannelOptions::new(PROTOCOL, Some(id), MESSAGE_TYPES))?)
            }
            None => {
                mux.pair(PROTOCOL, None);
                None
            }
        };
        self.sessions.insert(
            session,
            Session {
                mux,
                channel,
                accept_any: channel_id.is_none(),
                pending: BTreeSet::new(),
                links: BTreeMap::new(),
            },
        );
        self.dirty.insert(session);
        self.stats.sessions_accepted += 1;
        Ok(())
    }

    /// The relay connection closed (or the owner drops it): its pending pairings and links go.
    pub fn close_session(&mut self, session: SessionId) {
        self.end_session(session, None, false);
    }

    /// One message received on the session's connection. `in_use` says which stream ids the
    /// owner's UDX demux holds, so relay streams get ids nobody else has. On an error the
    /// session has ended: destroy its connection.
    pub fn handle_frame<R: RngCore>(
        &mut self,
        now: Instant,
        session: SessionId,
        frame: &[u8],
        rng: &mut R,
        in_use: impl Fn(u32) -> bool,
    ) -> Result<(), RelayError> {
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(RelayError::UnknownSession(session))?;
        self.dirty.insert(session);
        let accept_any = s.accept_any && s.channel.is_none();
        let mut accepted = false;
        let result = s.mux.handle_frame_with(frame, &mut |protocol, _id| {
            (protocol == PROTOCOL && accept_any && !accepted).then(|| {
                accepted = true;
                Accept::new(MESSAGE_TYPES)
            })
        });
        if let Err(e) = result {
            let e = RelayError::from(e);
            self.end_session(session, Some(e), true);
            return Err(e);
        }
        loop {
            let Some(s) = self.sessions.get_mut(&session) else {
                return Ok(());
            };
            let Some(ev) = s.mux.poll_event() else {
                return Ok(());
            };
            if s.channel.is_none() {
                // The channel a handler accepted (`accept(session, None)`).
                if let MuxEvent::Opened {
                    channel, protocol, ..
                } = &ev
                {
                    if protocol == PROTOCOL {
                        s.channel = Some(*channel);
                    }
                }
            }
            match ev {
                MuxEvent::Opened { channel, .. } if Some(channel) == s.channel => {
                    self.stats.sessions_opened += 1;
                }
                MuxEvent::Message {
                    channel,
                    message_type,
                    body,
                } if Some(channel) == s.channel => {
                    let handled = match message_type {
                        TYPE_PAIR => {
                            Pair::decode(&body).map(|p| self.on_pair(now, session, p, rng, &in_use))
                        }
                        TYPE_UNPAIR => {
                            Unpair::decode(&body).map(|u| self.on_unpair(session, u.token))
                        }
                        _ => Ok(()),
                    };
                    if let Err(e) = handled {
                        let e = RelayError::from(e);
                        self.end_session(session, Some(e), true);
                        return Err(e);
                    }
                }
                MuxEvent::Closed { channel, .. } if Some(channel) == s.channel => {
                    self.end_session(session, None, true);
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    fn on_pair<R: RngCore>(
        &mut self,
        now: Instant,
        session: SessionId,
        p: Pair,
        rng: &mut R,
        in_use: &impl Fn(u32) -> bool,
    ) {
        let idx = usize::from(p.is_initiator);
        let exists = match self.pending.get(&p.token) {
            Some(pp) if pp.halves[idx].is_some() => {
                self.stats.pairings_duplicate += 1;
                return;
            }
            Some(_) => true,
            None => false,
        };
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        if !s.pending.contains(&p.token) && s.pending.len() >= self.limits.pending_per_session {
            self.stats.pairings_refused += 1;
            return;
        }
        if !exists {
            if self.pending.len() >= self.limits.pending_total {
                if let Some(&(_, oldest)) = self.expiry.first() {
                    self.drop_pending(&oldest);
                    self.stats.pairings_expired += 1;
                }
            }
            self.pending.insert(
                p.token,
                PendingPair {
                    halves: [None, None],
                    since: now,
                },
            );
            self.expiry.insert((now, p.token));
            self.stats.pairings_pending += 1;
        }
        let Some(pp) = self.pending.get_mut(&p.token) else {
            return;
        };
        pp.halves[idx] = Some(Half {
            session,
            remote_id: p.id,
        });
        let complete = pp.halves.iter().all(Option::is_some);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.pending.insert(p.token);
        }
        self.stats.pairings_requested += 1;
        if complete {
            self.complete(p.token, rng, in_use);
        }
    }

    /// Both halves are in: link two relay streams and answer both sessions.
    fn complete<R: RngCore>(&mut self, token: Token, rng: &mut R, in_use: &impl Fn(u32) -> bool) {
        let Some(pp) = self.pending.remove(&token) else {
            return;
        };
        self.expiry.remove(&(pp.since, token));
        self.stats.pairings_pending -= 1;
        let [Some(follower), Some(initiator)] = pp.halves else {
            return;
        };
        for h in [follower, initiator] {
            if let Some(s) = self.sessions.get_mut(&h.session) {
                s.pending.remove(&token);
            }
        }
        if self.forward.streams() / 2 >= self.limits.relayed_pairs {
            self.stats.pairings_refused += 1;
            return;
        }
        self.stats.pairings_matched += 1;
        let a = self.fresh_id(rng, in_use, 0);
        let b = self.fresh_id(rng, in_use, a);
        self.forward
            .link(a, follower.remote_id, b, initiator.remote_id);
        self.owners.insert(a, follower.session);
        self.owners.insert(b, initiator.session);
        self.stats.streams_opened += 2;
        self.stats.pairings_active += 1;
        for (half, stream, is_initiator) in [(follower, a, false), (initiator, b, true)] {
            if let Some(s) = self.sessions.get_mut(&half.session) {
                s.links.insert(stream, token);
                if let Some(ch) = s.channel {
                    let reply = Pair {
                        is_initiator,
                        token,
                        id: stream,
                        seq: 0,
                    };
                    let _ = s.mux.send(ch, TYPE_PAIR, &reply.to_vec());
                    self.dirty.insert(half.session);
                }
            }
        }
        self.events.push_back(RelayEvent::Paired {
            token,
            follower: follower.session,
            initiator: initiator.session,
            follower_stream: a,
            initiator_stream: b,
        });
    }

    /// A nonzero id that is neither a relay stream, nor the owner's, nor `not`.
    fn fresh_id<R: RngCore>(&self, rng: &mut R, in_use: &impl Fn(u32) -> bool, not: u32) -> u32 {
        loop {
            let id = rng.next_u32();
            if id != 0 && id != not && !self.forward.contains(id) && !in_use(id) {
                return id;
            }
        }
    }

    fn on_unpair(&mut self, session: SessionId, token: Token) {
        if self.pending.contains_key(&token) {
            self.drop_pending(&token);
            self.stats.pairings_cancelled += 1;
            return;
        }
        let streams: Vec<u32> = self
            .sessions
            .get(&session)
            .map(|s| {
                s.links
                    .iter()
                    .filter(|(_, t)| **t == token)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        if streams.is_empty() {
            return;
        }
        for stream in streams {
            if let Some((x, y)) = self.forward.unlink(stream) {
                self.forget_streams(x, y);
            }
        }
        self.stats.pairings_cancelled += 1;
    }

    /// Remove a pending entry and its halves' references.
    fn drop_pending(&mut self, token: &Token) {
        let Some(pp) = self.pending.remove(token) else {
            return;
        };
        self.expiry.remove(&(pp.since, *token));
        self.stats.pairings_pending -= 1;
        for h in pp.halves.into_iter().flatten() {
            if let Some(s) = self.sessions.get_mut(&h.session) {
                s.pending.remove(token);
            }
        }
    }

    /// A pair left the forwarder: drop the sessions' references to it.
    fn forget_streams(&mut self, x: u32, y: u32) {
        for id in [x, y] {
            if let Some(session) = self.owners.remove(&id) {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.links.remove(&id);
                }
            }
        }
        self.stats.streams_closed += 2;
        self.stats.pairings_active = self.stats.pairings_active.saturating_sub(1);
    }

    fn end_session(&mut self, session: SessionId, error: Option<RelayError>, notify: bool) {
        let Some(mut s) = self.sessions.remove(&session) else {
            return;
        };
        s.mux.shutdown();
        self.stats.sessions_closed += 1;
        for token in &s.pending {
            if self.pending.contains_key(token) {
                self.drop_pending(token);
                self.stats.pairings_cancelled += 1;
            }
        }
        for stream in s.links.keys() {
            if let Some((x, y)) = self.forward.unlink(*stream) {
                self.forget_streams(x, y);
            }
        }
        if notify {
            self.events
                .push_back(RelayEvent::SessionEnded { session, error });
        }
    }

    /// Expire pending entries older than the pairing timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(since, token)) = self.expiry.first() {
            if since + self.limits.pairing_timeout > now {
                break;
            }
            self.drop_pending(&token);
            self.stats.pairings_expired += 1;
        }
    }

    /// When the oldest pending entry expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiry
            .first()
            .map(|&(since, _)| since + self.limits.pairing_timeout)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// The next frame to write to a session's connection (one secret-stream message).
    pub fn poll_frame(&mut self) -> Option<(SessionId, Vec<u8>)> {
        // In session order, as a walk over every session would give them.
        while let Some(&id) = self.dirty.first() {
            if let Some(f) = self.sessions.get_mut(&id).and_then(|s| s.mux.poll_frame()) {
                return Some((id, f));
            }
            self.dirty.remove(&id);
        }
        None
    }

    /// Forward a datagram in place (see [`Forwarder::forward_in_place`]).
    pub fn forward_in_place(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Forward {
        let f = self.forward.forward_in_place(socket, from, datagram);
        self.reap();
        f
    }

    /// Forward a datagram through the queue (see [`Forwarder::handle_datagram`]).
    pub fn handle_datagram(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Forward {
        let f = self.forward.handle_datagram(socket, from, datagram);
        self.reap();
        f
    }

    /// The next queued forwarded datagram (see [`Forwarder::poll_transmit`]).
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketId, SocketAddr, usize)> {
        self.forward.poll_transmit(buf)
    }

    fn reap(&mut self) {
        while let Some((x, y)) = self.forward.poll_closed() {
            self.forget_streams(x, y);
        }
    }
}
