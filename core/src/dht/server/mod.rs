//! A listening server (hyperdht `server.js`): its key pair and options, its [`announcer`], its
//! [`handshake`]s (one per distinct msg1, with the firewall question and the reply's route),
//! and each handshake's [`holepunch`] handler.
//!
//! A [`Server`] does no I/O: its `handle_*` methods return [`ServerAction`]s (queries,
//! requests, replies, probes, "open this connection", events) that the node applies in order.
//! The node routes to it what is its: PEER_HANDSHAKE / PEER_HOLEPUNCH for its key, the
//! responses to its requests (named by [`ServerRequest`]), probes on its punchers' sockets,
//! and timers. Handshakes are keyed by their msg1 bytes; the node gives the owner public ids
//! for firewall questions and connections.

mod action;
mod announcer;
mod handshake;
mod holepunch;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::net::SocketAddrV4;
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};

use self::announcer::{Announcer, MAX_RELAYS};
use self::handshake::{reply_route, PendingHandshake, ReplyRoute, ServerHandshake};
use self::holepunch::{HandlerResult, ServerPunch};
use super::addresses::{is_private, match_address};
use super::env::Env;
use super::ids::ConnId;
use super::messages::{mode, HandshakeEnvelope, HolepunchEnvelope};
use super::pool::{socket_kind, udx_socket};
use crate::connect::{
    ErrorCode, Firewall, Handshake, HolepunchInfo, NoisePayload, Puncher, RelayInfo,
    SecretStreamInfo, UdxInfo,
};
use crate::crypto::KeyPair;
use crate::relay::{server_plan, RelaySelector};
use crate::rpc::{IncomingRequest, QueryReply, ReplySpec, RequestError};
use crate::udx;
use crate::Instant;

use action::handshake_key;
pub(crate) use action::{Accepted, HandshakeKey, ServerAction, ServerRequest};

/// A server keeps a finished handshake this long to answer duplicates identically.
const HANDSHAKE_CLEAR_WAIT: Duration = Duration::from_secs(10);
/// Most handshakes a node's servers track at once (a flood of distinct msg1s costs bounded
/// memory).
pub const MAX_SERVER_HANDSHAKES: usize = 4096;
/// At that cap, an answered handshake at least this old is forgotten to make room for a new
/// one, instead of the new one being dropped: answered handshakes are kept only to answer
/// duplicates of their msg1 (the client's retries, the copy through its second relay), which
/// come within a few seconds. Without it a node at the cap accepted at most ~410 connections a
/// second (4,096 per 10 s); with it, ~820.
pub(crate) const HANDSHAKE_EVICT_AGE: Duration = Duration::from_secs(5);

/// Options of [`DhtNode::create_server`](super::DhtNode::create_server).
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Ask the owner (a [`ConnectEvent::Firewall`](super::ConnectEvent::Firewall) event)
    /// before accepting each handshake. Without it every handshake is accepted.
    pub firewall: bool,
    /// Advertise our local addresses (the LAN shortcut; default true as the reference).
    pub hide_local_addresses: bool,
    /// A blind relay to pair clients through (`relayThrough`: one key, a list drawn from with
    /// the node's RNG, or a callback), with a fresh token per handshake; it wins over a
    /// client's. Used when the client is firewalled and did not reach us directly, and we are
    /// not open ourselves; punching goes on and the stream moves to the direct path when a
    /// punch wins.
    pub relay_through: Option<RelaySelector>,
    /// Name `relay_through` only while our own NAT randomizes ports (the DHT sees our host but
    /// no stable port). Hyperswarm's server does this: its `relayThrough` is the swarm's
    /// `_maybeRelayConnection`, which the server calls without `force`, so the relay is named
    /// only when `dht.randomized`. Default false: always (hyperdht's `createServer`).
    pub relay_only_when_randomized: bool,
    /// The relay connections' keep-alive (`relayKeepAlive`; `None` or zero: 5 s).
    pub relay_keep_alive: Option<Duration>,
}

/// One listening server.
#[derive(Debug)]
pub(crate) struct Server {
    opts: ServerOptions,
    key_pair: Option<KeyPair>,
    target: [u8; 32],
    announcer: Announcer,
    /// Handshakes by msg1.
    handshakes: BTreeMap<HandshakeKey, ServerHandshake>,
    /// Handshakes by holepunch id.
    holepunch_ids: BTreeMap<u64, HandshakeKey>,
    /// The handshakes with a punch running (the only ones with timers besides forgetting), in
    /// the order of `handshakes`: the per-turn walks (timers, a connection's first packet)
    /// visit these, not every handshake kept for duplicates.
    punching: BTreeSet<HandshakeKey>,
    /// `(deadline, key)` of every punch with a timer: the timer walks read the due prefix
    /// instead of asking each of up to `max_server_handshakes` punches (a flood of valid
    /// handshakes made every turn of the node cost thousands of map lookups). Each punch
    /// remembers the deadline it is filed under (`ServerPunch::scheduled`).
    punch_timers: BTreeSet<(Instant, HandshakeKey)>,
    /// The punching handshakes by their connection.
    punch_conns: BTreeMap<ConnId, HandshakeKey>,
    /// `(done_at, key)` each time a handshake's `done_at` was set, in time order: the forget
    /// queue. An entry whose handshake has since punched or been done again is stale (a later
    /// entry stands for it) and is skipped.
    done: VecDeque<(Instant, HandshakeKey)>,
    /// Closed: no new handshakes, no announces; handshakes already running finish.
    closing: bool,
}

impl Server {
    /// `createServer(opts)`; [`listen`](Self::listen) gives it a key.
    pub(crate) fn new(opts: ServerOptions) -> Self {
        Server {
            opts,
            key_pair: None,
            target: [0; 32],
            announcer: Announcer::default(),
            handshakes: BTreeMap::new(),
            holepunch_ids: BTreeMap::new(),
            punching: BTreeSet::new(),
            punch_timers: BTreeSet::new(),
            punch_conns: BTreeMap::new(),
            done: VecDeque::new(),
            closing: false,
        }
    }

    /// Whether it already listens on a key.
    pub(crate) fn is_listening(&self) -> bool {
        self.key_pair.is_some()
    }

    /// Whether it was closed.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Closed, and nothing of it runs any more.
    pub(crate) fn is_drained(&self) -> bool {
        self.closing && self.handshakes.is_empty()
    }

    /// The current relays.
    pub(crate) fn relays(&self) -> &[RelayInfo] {
        self.announcer.relays()
    }

    /// Handshakes tracked, and how many of them punch.
    pub(crate) fn handshake_counts(&self) -> (usize, usize) {
        (self.handshakes.len(), self.punching.len())
    }

    /// Handshake `key` was answered or refused (or its punch ended) at `now`: it is forgotten
    /// [`HANDSHAKE_CLEAR_WAIT`] later unless it punches then.
    /// Drops the forget queue's stale entries at its front (see `done`): popping them early
    /// changes nothing, and keeps [`forget_due`](Self::forget_due) from walking past them on
    /// every turn (a flood of punching handshakes left thousands there).
    fn prune_stale_done(&mut self) {
        while let Some((t, k)) = self.done.front() {
            let current = self
                .handshakes
                .get(k)
                .is_some_and(|h| h.punch.is_none() && h.done_at == Some(*t));
            if current {
                break;
            }
            self.done.pop_front();
        }
    }

    fn mark_done(
        done: &mut VecDeque<(Instant, HandshakeKey)>,
        h: &mut ServerHandshake,
        key: &HandshakeKey,
        now: Instant,
    ) {
        h.done_at = Some(now);
        done.push_back((now, *key));
    }

    /// `server.listen(keyPair)`: answer handshakes for this key (target `target`) and
    /// announce it.
    pub(crate) fn listen(
        &mut self,
        key_pair: KeyPair,
        target: [u8; 32],
        out: &mut Vec<ServerAction>,
    ) {
        self.key_pair = Some(key_pair);
        self.target = target;
        self.announce(out);
    }

    /// Starts an announce cycle (`refresh()`).
    pub(crate) fn announce(&mut self, out: &mut Vec<ServerAction>) {
        if !self.closing {
            self.announcer.announce(self.target, out);
        }
    }

    /// Its key pair, once listening.
    /// The relays its `relay_through` names by key (a key or a list; not a callback), at most
    /// `max`: the node keeps a session with each while the server listens.
    pub(crate) fn fixed_relays(&self, max: usize) -> Vec<[u8; 32]> {
        match &self.opts.relay_through {
            Some(RelaySelector::Key(k)) => alloc::vec![*k],
            Some(RelaySelector::List(l)) => l.iter().copied().take(max).collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn key_pair(&self) -> Option<&KeyPair> {
        self.key_pair.as_ref()
    }

    /// Its key's target (zero before `listen`).
    pub(crate) fn target(&self) -> [u8; 32] {
        self.target
    }

    /// `server.close()`: stop answering and announcing; false if it was closed already.
    pub(crate) fn close(&mut self, out: &mut Vec<ServerAction>) -> bool {
        if self.closing {
            return false;
        }
        self.closing = true;
        self.announcer.stop(out);
        true
    }

    /// The announce cycle's query ended.
    pub(crate) fn handle_announce_done(
        &mut self,
        now: Instant,
        closest: &[QueryReply],
        out: &mut Vec<ServerAction>,
    ) {
        if self.closing {
            return;
        }
        self.announcer
            .handle_query_done(now, self.key_pair.as_ref(), self.target, closest, out);
    }

    /// The response to one of our requests.
    pub(crate) fn handle_response<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        tag: ServerRequest,
        result: Result<QueryReply, RequestError>,
        out: &mut Vec<ServerAction>,
    ) {
        if let ServerRequest::NatPing {
            holepunch_id,
            socket,
        } = tag
        {
            let Some(key) = self.holepunch_ids.get(&holepunch_id).cloned() else {
                return;
            };
            let step = match self.punch_mut(&key) {
                Some(p) => p.handle_ping(env, socket, result, out),
                None => return,
            };
            return self.punch_step(env, &key, step, out);
        }
        if self.closing {
            return;
        }
        self.announcer.handle_response(
            env.now,
            self.key_pair.as_ref(),
            self.target,
            tag,
            result,
            out,
        );
    }

    fn punch_mut(&mut self, key: &[u8]) -> Option<&mut ServerPunch> {
        self.handshakes.get_mut(key)?.punch.as_deref_mut()
    }

    /// Ends the punch of handshake `key` if `step` says it ended.
    fn punch_step<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        key: &HandshakeKey,
        step: HandlerResult,
        out: &mut Vec<ServerAction>,
    ) {
        match step {
            Err(ended) => self.end_punch(env, key, ended.abort, out),
            Ok(()) => self.reschedule_punch(key),
        }
    }

    /// Files the punch of handshake `key` under its current deadline (after anything that
    /// may have moved it).
    fn reschedule_punch(&mut self, key: &HandshakeKey) {
        let Some(p) = self.handshakes.get_mut(key).and_then(|h| h.punch.as_mut()) else {
            return;
        };
        let due = p.poll_timeout();
        if due == p.scheduled {
            return;
        }
        if let Some(old) = core::mem::replace(&mut p.scheduled, due) {
            self.punch_timers.remove(&(old, *key));
        }
        if let Some(t) = due {
            self.punch_timers.insert((t, *key));
        }
    }

    /// Ends a punch; `abort` also drops its connection if the client never arrived.
    fn end_punch<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        key: &HandshakeKey,
        abort: bool,
        out: &mut Vec<ServerAction>,
    ) {
        let Some(h) = self.handshakes.get_mut(key) else {
            return;
        };
        let Some(punch) = h.punch.take() else { return };
        self.punching.remove(key);
        self.punch_conns.remove(&punch.conn());
        if let Some(t) = punch.scheduled {
            self.punch_timers.remove(&(t, *key));
        }
        Self::mark_done(&mut self.done, h, key, env.now);
        self.prune_stale_done();
        let conn = punch.conn();
        punch.retire(env);
        if abort {
            out.push(ServerAction::AbandonConnection(conn));
        }
    }

    /// A PEER_HANDSHAKE for this server's key (`_onpeerhandshake`). `room`: the node tracks
    /// fewer than [`DhtConfig::max_server_handshakes`](super::DhtConfig::max_server_handshakes).
    pub(crate) fn handle_handshake<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        req: &IncomingRequest,
        envelope: HandshakeEnvelope,
        room: bool,
        out: &mut Vec<ServerAction>,
    ) {
        // Duplicates of a msg1 we answered (the client sends it through up to two relays at
        // once, and retransmits) get the same msg2, routed back the way each one came — to
        // its own relay, with its own peer address — as the reference's router does with the
        // reply `_onpeerhandshake` returns.
        let key = handshake_key(&envelope.noise);
        if let Some(h) = self.handshakes.get(&key) {
            if let Some((socket, msg2)) = h.reply.clone() {
                if let Some(route) = reply_route(req, &envelope, socket.unwrap_or(req.socket), msg2)
                {
                    send_reply(req, route, out);
                }
            }
            return;
        }
        if !room {
            tracing::debug!(from = %req.from, "server: handshake dropped (too many in progress)");
            return;
        }
        let Some(kp) = self.key_pair.as_ref() else {
            return;
        };
        let Ok(mut hs) = Handshake::responder(kp, env.rng) else {
            return;
        };
        let Ok(client_payload) = hs.recv(&envelope.noise) else {
            tracing::debug!(from = %req.from, "server: handshake rejected (msg1 is not for our key or malformed)");
            return;
        };
        let Some(remote_public_key) = hs.remote_public_key() else {
            return;
        };
        let client_address = if envelope.mode == mode::FROM_CLIENT {
            req.from
        } else {
            envelope.peer_address.unwrap_or(req.from)
        };
        let pending = PendingHandshake {
            req: req.clone(),
            envelope,
            handshake: hs,
            client_payload,
            client_address,
        };
        if self.opts.firewall {
            let payload = Box::new(pending.client_payload.clone());
            self.handshakes.insert(
                key,
                ServerHandshake {
                    pending: Some(Box::new(pending)),
                    ..ServerHandshake::default()
                },
            );
            out.push(ServerAction::AskFirewall {
                key,
                remote_public_key,
                client_address,
                payload,
            });
            return;
        }
        self.handshakes.insert(key, ServerHandshake::default());
        self.accept(env, key, pending, out);
    }

    /// The owner's answer to [`ServerAction::AskFirewall`]: `reject` drops the handshake
    /// silently, as the reference's firewall returning true does.
    pub(crate) fn firewall_decision<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        key: HandshakeKey,
        reject: bool,
        out: &mut Vec<ServerAction>,
    ) {
        let Some(h) = self.handshakes.get_mut(&key) else {
            return;
        };
        let Some(pending) = h.pending.take() else {
            return;
        };
        if reject {
            tracing::debug!(client = %pending.client_address, "server: handshake rejected by the firewall");
            Self::mark_done(&mut self.done, h, &key, env.now);
            return;
        }
        self.accept(env, key, *pending, out);
    }

    /// Answers a handshake (msg2), choosing the path first; on success asks the node to open
    /// the connection ([`ServerAction::Accept`]).
    fn accept<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        key: HandshakeKey,
        p: PendingHandshake,
        out: &mut Vec<ServerAction>,
    ) {
        let PendingHandshake {
            req,
            envelope,
            mut handshake,
            client_payload,
            client_address,
        } = p;
        let error = if client_payload.version != 1 {
            ErrorCode::VERSION_MISMATCH
        } else if client_payload.udx.is_none() {
            ErrorCode::ABORTED
        } else if env.node.budget_spent {
            ErrorCode::TRY_LATER
        } else {
            ErrorCode::NONE
        };
        let stream_id = if error == ErrorCode::NONE {
            env.new_stream_id()
        } else {
            tracing::debug!(
                %client_address,
                version = client_payload.version,
                "server: handshake answered with an error ({})",
                if error == ErrorCode::VERSION_MISMATCH {
                    "VERSION_MISMATCH: the client speaks another version"
                } else if error == ErrorCode::TRY_LATER {
                    "TRY_LATER: the connection-buffer budget is spent"
                } else {
                    "ABORTED: the client offered no UDX stream"
                }
            );
            0
        };
        // A server closed while its owner decided answers nothing (after the stream id is
        // drawn, so the RNG runs as it always did and a simulation replays unchanged).
        if self.closing {
            return;
        }
        let relays = self.announcer.relays().to_vec();
        let hide_local = self.opts.hide_local_addresses;
        let firewall = env.our_firewall();
        // `relayAddresses`: our own address first when we are reachable, then the relays (≤ 3).
        let relay_addresses: Vec<SocketAddrV4> = env
            .node
            .remote_address
            .filter(|_| !env.node.firewalled)
            .into_iter()
            .chain(relays.iter().map(|r| r.relay_address))
            .take(MAX_RELAYS)
            .collect();
        let holepunch_id = (firewall != Firewall::OPEN).then(|| self.alloc_holepunch_id(&key));
        // Our relay, with a fresh token per handshake (not when we are open: the client then
        // reaches us directly, and ours skips relaying to an open server).
        let relay_ours = if error == ErrorCode::NONE
            && firewall != Firewall::OPEN
            && (!self.opts.relay_only_when_randomized || env.node.randomized)
        {
            self.opts
                .relay_through
                .as_mut()
                .and_then(|sel| sel.draw(&mut *env.rng))
        } else {
            None
        };
        if let Some(h) = self.handshakes.get_mut(&key) {
            h.holepunch_id = holepunch_id;
        }
        let payload = NoisePayload {
            error,
            firewall,
            holepunch: holepunch_id.map(|id| HolepunchInfo {
                id,
                relays: relays.clone(),
            }),
            addresses4: env.our_addresses(!hide_local),
            udx: Some(UdxInfo::new(stream_id, false)),
            secret_stream: Some(SecretStreamInfo::default()),
            relay_addresses: (!relay_addresses.is_empty()).then_some(relay_addresses),
            relay_through: relay_ours,
            ..NoisePayload::default()
        };
        let Ok(msg2) = handshake.send(&payload) else {
            return;
        };
        let Ok(result) = handshake.finish() else {
            return;
        };

        // Choose the path before replying: a server that will punch answers from its puncher
        // socket, so the relay reports that socket's address to the client. A client on our
        // LAN gets a puncher too (it may prepunch), but the reply keeps our main socket.
        let direct = envelope.mode == mode::FROM_CLIENT;
        let connect_now = direct || client_payload.firewall == Firewall::OPEN;
        let mut puncher: Option<Puncher> = None;
        let mut reply_from_puncher = false;
        if error == ErrorCode::NONE && !connect_now {
            let lan = !hide_local
                && lan_match(
                    env.node.local_addresses,
                    &client_payload.addresses4,
                    client_address,
                    req.to,
                );
            if lan || firewall != Firewall::OPEN {
                puncher = env.new_puncher(false, client_payload.firewall);
                reply_from_puncher = !lan;
            }
        }
        if error == ErrorCode::NONE {
            tracing::debug!(
                %client_address,
                client_firewall = client_payload.firewall,
                "server: handshake accepted, path {}",
                if direct {
                    "direct (the client reached us itself)"
                } else if connect_now {
                    "direct (the client is open: we connect to it)"
                } else if puncher.is_some() && !reply_from_puncher {
                    "LAN or holepunch (the client shares our network)"
                } else if puncher.is_some() {
                    "holepunch (the client is firewalled)"
                } else if firewall == Firewall::OPEN {
                    "wait for the client (we are open)"
                } else {
                    "none: no pool socket left to punch from"
                }
            );
        }
        let puncher_socket = match puncher.as_ref().and_then(|p| p.socket()) {
            Some(s) if reply_from_puncher => Some(socket_kind(s)),
            _ => None,
        };

        // The reply travels back the way the handshake came.
        let Some(route) = reply_route(
            &req,
            &envelope,
            puncher_socket.unwrap_or(req.socket),
            msg2.clone(),
        ) else {
            if let Some(p) = puncher {
                env.retire_puncher(p);
            }
            return;
        };
        if let Some(h) = self.handshakes.get_mut(&key) {
            h.reply = Some((puncher_socket, msg2));
            Self::mark_done(&mut self.done, h, &key, env.now);
        }
        send_reply(&req, route, out);
        if error != ErrorCode::NONE {
            return;
        }
        let Some(client_udx) = client_payload.udx.as_ref().map(|u| u.id as u32) else {
            return;
        };
        let connect_now = connect_now.then(|| {
            if direct {
                udx_socket(req.socket)
            } else {
                udx_socket(env.node.primary_socket)
            }
        });
        let secret = result.holepunch_secret;
        let relay = server_plan(
            relay_ours.as_ref(),
            client_payload.relay_through.as_ref(),
            error,
            Firewall::from_wire(client_payload.firewall).unwrap_or(Firewall::Unknown),
            direct,
        )
        .filter(|_| firewall != Firewall::OPEN);
        if let Some(plan) = &relay {
            tracing::debug!(
                %client_address,
                is_initiator = plan.is_initiator,
                "server: pairing the connection through a blind relay while punching"
            );
        }
        out.push(ServerAction::Accept(Box::new(Accepted {
            key,
            stream_id,
            client_udx,
            client_address,
            handshake: result,
            connect_now,
            // A puncher is only set up for a connection that waits.
            punch: puncher.map(|p| (p, secret)),
            relay,
            relay_keep_alive: self.opts.relay_keep_alive,
        })));
    }

    /// The smallest free holepunch id (the reference reuses slots of its `_holepunches` array).
    fn alloc_holepunch_id(&mut self, key: &HandshakeKey) -> u64 {
        let mut id = 0;
        while self.holepunch_ids.contains_key(&id) {
            id += 1;
        }
        self.holepunch_ids.insert(id, *key);
        id
    }

    /// The accepted handshake `key`'s connection `conn` waits for the client: its punch (when
    /// it has one) starts sampling our NAT. `relay_token`: a blind relay carries the
    /// connection (a throttled random punch then answers TRY_LATER and waits for a later round).
    #[allow(clippy::too_many_arguments)] // the accepted handshake's parts
    pub(crate) fn attach_punch<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        key: &HandshakeKey,
        puncher: Puncher,
        holepunch_secret: [u8; 32],
        conn: ConnId,
        relay_token: bool,
        out: &mut Vec<ServerAction>,
    ) {
        let holepunch_id = self.handshakes.get(key).and_then(|h| h.holepunch_id);
        let punch = ServerPunch::new(
            env,
            puncher,
            holepunch_secret,
            holepunch_id,
            conn,
            relay_token,
        );
        let Some(h) = self.handshakes.get_mut(key) else {
            return punch.retire(env);
        };
        self.punching.insert(*key);
        self.punch_conns.insert(conn, *key);
        h.punch = Some(punch);
        self.prune_stale_done();
        let step = match self.punch_mut(key) {
            Some(p) => p.start(env, out),
            None => return,
        };
        self.punch_step(env, key, step, out);
    }

    /// A PEER_HOLEPUNCH for this server (`_onpeerholepunch`).
    pub(crate) fn handle_holepunch<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        req: &IncomingRequest,
        hp: HolepunchEnvelope,
        out: &mut Vec<ServerAction>,
    ) {
        let Some(key) = self.holepunch_ids.get(&hp.id).cloned() else {
            return;
        };
        let Some(peer_address) = hp.peer_address else {
            return;
        };
        if self.closing || !self.handshakes.contains_key(&key) {
            return;
        }
        let is_server_relay = self.announcer.is_relay(&req.from);
        let step = match self.punch_mut(&key) {
            Some(p) => {
                p.handle_holepunch(env, req, peer_address, &hp.payload, is_server_relay, out)
            }
            None => return,
        };
        self.punch_step(env, &key, step, out);
    }

    /// The handshake whose puncher owns `socket`.
    fn punch_owner(&self, socket: udx::SocketId) -> Option<HandshakeKey> {
        self.punching_handshakes()
            .find(|(_, h)| h.punch.as_ref().is_some_and(|p| p.owns_socket(socket)))
            .map(|(k, _)| *k)
    }

    /// Whether one of our punchers owns `socket`.
    pub(crate) fn owns_socket(&self, socket: udx::SocketId) -> bool {
        self.punch_owner(socket).is_some()
    }

    /// A 1-byte probe arrived on `socket` (one of our punchers').
    pub(crate) fn handle_probe<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        socket: udx::SocketId,
        from: SocketAddrV4,
        out: &mut Vec<ServerAction>,
    ) {
        let Some(key) = self.punch_owner(socket) else {
            return;
        };
        let step = match self.punch_mut(&key) {
            Some(p) => p.handle_probe(env, socket, from, out),
            None => return,
        };
        self.punch_step(env, &key, step, out);
    }

    /// Pool socket `socket` is gone: the punch that used it gives up.
    pub(crate) fn socket_failed<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        socket: udx::SocketId,
        out: &mut Vec<ServerAction>,
    ) {
        if let Some(key) = self.punch_owner(socket) {
            self.end_punch(env, &key, true, out);
        }
    }

    /// The connection `conn` got the client's first packet: its punch is over.
    pub(crate) fn connection_attached<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        conn: ConnId,
        out: &mut Vec<ServerAction>,
    ) {
        if let Some(key) = self.punch_conns.get(&conn).cloned() {
            self.end_punch(env, &key, false, out);
        }
    }

    /// Whether a punch for connection `conn` still runs.
    pub(crate) fn punching_for(&self, conn: ConnId) -> bool {
        self.punch_conns.contains_key(&conn)
    }

    /// The handshakes with a punch running, in key order.
    fn punching_handshakes(&self) -> impl Iterator<Item = (&HandshakeKey, &ServerHandshake)> + '_ {
        self.punching
            .iter()
            .filter_map(|k| Some((k, self.handshakes.get(k)?)))
    }

    /// The blind relay paired connection `conn`: its punch no longer has to start within the
    /// prepunch window (the reference clears `prepunching` then) — the client may ask to punch
    /// 10–20 s later, after a TRY_LATER or its own throttle.
    pub(crate) fn relay_paired_for(&mut self, conn: ConnId) {
        let Some(key) = self.punch_conns.get(&conn).cloned() else {
            return;
        };
        if let Some(p) = self.punch_mut(&key) {
            p.clear_prepunch();
        }
        self.reschedule_punch(&key);
    }

    /// Whether a relay round is due.
    pub(crate) fn relay_round_due(&self, now: Instant) -> bool {
        self.announcer.round_due(now)
    }

    /// A relay round of the announcer.
    pub(crate) fn handle_relay_timeout(&mut self, now: Instant, out: &mut Vec<ServerAction>) {
        self.announcer.handle_timeout(now, self.target, out);
    }

    /// Whether a punch timer is due.
    pub(crate) fn punch_due(&self, now: Instant) -> bool {
        self.punch_timers.first().is_some_and(|(t, _)| *t <= now)
    }

    /// The punches' due timers (prepunch windows, puncher timers).
    pub(crate) fn handle_punch_timeout<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ServerAction>,
    ) {
        let now = env.now;
        let mut due: Vec<HandshakeKey> = self
            .punch_timers
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, k)| *k)
            .collect();
        // In key order, as the walk over every punch ran them.
        due.sort_unstable();
        for key in due {
            let step = match self.punch_mut(&key) {
                Some(p) => p.handle_timeout(env, out),
                None => continue,
            };
            self.punch_step(env, &key, step, out);
        }
    }

    /// Finished handshakes are forgotten a while after (a punch keeps its handshake).
    pub(crate) fn forget_stale_handshakes(&mut self, now: Instant) {
        while let Some((t, _)) = self.done.front() {
            if *t + HANDSHAKE_CLEAR_WAIT > now {
                break;
            }
            let Some((t, k)) = self.done.pop_front() else {
                break;
            };
            // A handshake punching now, or done again since, has a later entry (its punch's
            // end marks it done again).
            let current = self
                .handshakes
                .get(&k)
                .is_some_and(|h| h.punch.is_none() && h.done_at == Some(t));
            if current {
                if let Some(id) = self.handshakes.remove(&k).and_then(|h| h.holepunch_id) {
                    self.holepunch_ids.remove(&id);
                }
            }
        }
    }

    /// When its oldest answered handshake (the next one to forget) was answered.
    pub(crate) fn oldest_answered(&self) -> Option<Instant> {
        self.done.iter().find_map(|(t, k)| {
            let h = self.handshakes.get(k)?;
            (h.punch.is_none() && h.done_at == Some(*t)).then_some(*t)
        })
    }

    /// Forgets its oldest answered handshake early if it was answered at least
    /// `HANDSHAKE_EVICT_AGE` before `now` (the node is at its handshake cap); whether it did.
    pub(crate) fn forget_oldest_answered(&mut self, now: Instant) -> bool {
        self.prune_stale_done();
        let Some(&(t, k)) = self.done.front() else {
            return false;
        };
        if t + HANDSHAKE_EVICT_AGE > now {
            return false;
        }
        self.done.pop_front();
        if let Some(id) = self.handshakes.remove(&k).and_then(|h| h.holepunch_id) {
            self.holepunch_ids.remove(&id);
        }
        self.prune_stale_done();
        true
    }

    /// When the oldest handshake to forget is due (stale queue entries skipped).
    fn forget_due(&self) -> Option<Instant> {
        self.done.iter().find_map(|(t, k)| {
            let h = self.handshakes.get(k)?;
            (h.punch.is_none() && h.done_at == Some(*t)).then(|| *t + HANDSHAKE_CLEAR_WAIT)
        })
    }

    /// The earliest timer: relay rounds, punches, forgetting handshakes.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.announcer.poll_timeout();
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        min(self.punch_timers.first().map(|(t, _)| *t));
        // A punch keeps its handshake (`forget_stale_handshakes`): only a handshake without one
        // is forgotten when it is due. Counting a punching handshake's `done_at` too asked for
        // a timer that does nothing while a birthday punch ran — a busy loop (`hdht sim swarm`
        // spun at 1 µs steps for its length).
        min(self.forget_due());
        t
    }
}

/// Sends a handshake reply the way [`reply_route`] chose.
fn send_reply(req: &IncomingRequest, route: ReplyRoute, out: &mut Vec<ServerAction>) {
    let (socket, to, value, relayed) = route;
    if relayed {
        out.push(ServerAction::Relay {
            req: req.clone(),
            value,
            to,
            socket: Some(socket),
        });
    } else {
        out.push(ServerAction::Reply {
            req: req.clone(),
            spec: ReplySpec {
                token: false,
                closer_nodes: false,
                to: Some(to),
                socket: Some(socket),
                ..ReplySpec::value(Some(value))
            },
        });
    }
}

/// Whether the server should prepunch on the LAN: the client shares our public host and
/// advertised a private address matching one of ours.
fn lan_match(
    local_addresses: &[SocketAddrV4],
    client_addresses: &[SocketAddrV4],
    client: SocketAddrV4,
    server_seen_as: SocketAddrV4,
) -> bool {
    if client.ip() != server_seen_as.ip() {
        return false;
    }
    let private: Vec<SocketAddrV4> = client_addresses
        .iter()
        .filter(|a| is_private(a.ip()))
        .copied()
        .collect();
    !private.is_empty() && match_address(local_addresses, &private).is_some()
}
