//! A client's connect by public key (hyperdht `connect.js`), from the FIND_PEER query to the
//! moment its UDX stream connects: find the server's relays, send the Noise msg1 through up to
//! two of them at once, read msg2 and choose the path — straight to a server that answered
//! itself or is reachable, wait for a server that connects to us, or holepunch
//! ([`punch`]) raced with a LAN ping.
//!
//! A [`ClientAttempt`] does no I/O: each `handle_*` method returns [`ClientAction`]s (requests,
//! probes, "connect the stream", "fail") that the node applies in order. The node owns the UDX
//! stream (its id is in msg1) and routes the query's replies, the requests' responses (named
//! by [`ClientRequest`]), probes and timers here.

mod action;
mod punch;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};

pub(crate) use self::action::{ClientAction, ClientRequest, EarlyPacket};
use self::punch::{ClientPunch, PunchEnd, PunchParams};
use super::addresses::{is_bogon, is_reserved, shared_octets};
use super::env::Env;
use super::messages::{command, mode, HandshakeEnvelope};
use super::pool::{udx_socket, UDX_SERVER_SOCKET};
use super::sign;
use crate::connect::RelayThroughInfo;
use crate::connect::{
    ConnectError, ErrorCode, Firewall, Handshake, HandshakeResult, NoisePayload, SecretStreamInfo,
    UdxInfo,
};
use crate::crypto::KeyPair;
use crate::relay::{client_plan, ClientView, RelayPlan, RelaySelector};
use crate::rpc::{NodeId, QueryReply, QuerySpec, RequestError, RequestSpec, PING};
use crate::udx;
use crate::Instant;

/// Concurrent PEER_HANDSHAKE attempts per connect.
const MAX_HANDSHAKE_ATTEMPTS: usize = 2;
/// How long a client that said OPEN waits for the server to connect to it.
const CLIENT_OPEN_WAIT: Duration = Duration::from_secs(10);
/// UDX packets a client holds while its handshake reply is still on the way.
const MAX_EARLY_PACKETS: usize = 8;

/// Options of [`DhtNode::connect`](super::DhtNode::connect).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Our key pair (the node's default if `None`).
    pub key_pair: Option<KeyPair>,
    /// Nodes to try the handshake through before the find-peer query finds relays.
    pub relay_addresses: Vec<SocketAddrV4>,
    /// Allow the LAN shortcut (the reference's `localConnection`, default true).
    pub local_connection: bool,
    /// Open our NAT toward the server with a TTL-5 probe before the first PEER_HOLEPUNCH and
    /// tell it where, so a consistent server can probe back at once (`fastOpen`, default true).
    pub fast_open: bool,
    /// A blind relay to offer the server (`relayThrough`: one key, a list drawn from with the
    /// node's RNG, or a callback), with a fresh pairing token per connect. The server's own
    /// relay wins when it names one. Relaying is skipped where a direct path exists (the
    /// server answered itself or is open, or we are open); otherwise the stream goes through
    /// the relay while punching continues, and moves to the direct path when a punch wins.
    pub relay_through: Option<RelaySelector>,
    /// The relay connection's keep-alive (`relayKeepAlive`; `None` or zero: 5 s).
    pub relay_keep_alive: Option<Duration>,
    /// Holepunch when the handshake says so (default true; the reference's `holepunch`
    /// veto returning false). Without punching a firewalled server is reached through a
    /// relay only.
    pub holepunch: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            key_pair: None,
            relay_addresses: Vec::new(),
            local_connection: true,
            fast_open: true,
            relay_through: None,
            relay_keep_alive: None,
            holepunch: true,
        }
    }
}

/// Where a connect is.
#[derive(Debug)]
enum AttemptPhase {
    /// Looking for relays and handshaking through them.
    Handshaking,
    /// Holepunching (the attempt's punch), raced with the LAN shortcut's PING to the server's
    /// local address when there is one (`lan`).
    Holepunching {
        remote_udx: u32,
        lan: Option<SocketAddrV4>,
    },
    /// We are OPEN: waiting for the server to connect to us.
    WaitingForServer { until: Instant, remote_udx: u32 },
    /// Waiting for the blind relay to pair (no punch, or the punch gave up).
    Relaying { remote_udx: u32 },
    /// The stream runs through the relay; the punch (if alive) may still move it.
    Relayed { remote_udx: u32 },
    /// The UDX stream is connected; the connection opens when the secret stream does.
    Opening,
}

/// A client's connect in progress.
#[derive(Debug)]
pub(crate) struct ClientAttempt {
    target: [u8; 32],
    handshake: Option<Handshake>,
    result: Option<HandshakeResult>,
    msg1: Vec<u8>,
    stream_id: u32,
    find_peer_running: bool,
    /// Relays to try, in order.
    queue: VecDeque<SocketAddrV4>,
    tried: Vec<SocketAddrV4>,
    /// Relays with a handshake in flight.
    inflight: Vec<SocketAddrV4>,
    /// The query found a record of the server.
    found: bool,
    phase: AttemptPhase,
    local_connection: bool,
    fast_open: bool,
    /// UDX packets from the server that beat its handshake reply here (it connects as soon as
    /// it answered): replayed once our stream is connected, instead of waiting for a resend.
    early: Vec<EarlyPacket>,
    /// The holepunch, once the handshake says one is needed.
    punch: Option<Box<ClientPunch>>,
    /// Our msg1's `relayThrough`.
    relay_ours: Option<RelayThroughInfo>,
    relay_keep_alive: Option<Duration>,
    /// A relay attempt runs for this connect.
    relaying: bool,
    /// The pairing started with the connect, through the relay we name (before the reply):
    /// the reply adopts it when the server names no relay of its own, else it is let go.
    relay_early: Option<RelayPlan>,
    /// The DHT node that forwarded our handshake to the server and its reply back, once the
    /// reply was accepted (the node remembers it for the next connect to this key).
    answered_through: Option<SocketAddrV4>,
    holepunch: bool,
}

impl ClientAttempt {
    /// `connect(remotePublicKey)`: msg1 carrying our stream id `stream_id`, the FIND_PEER
    /// query, and handshakes through the relays we were given.
    pub(crate) fn start<R: RngCore + CryptoRng>(
        env: &mut Env<'_, R>,
        key_pair: &KeyPair,
        remote_public_key: [u8; 32],
        opts: ConnectOptions,
        stream_id: u32,
        out: &mut Vec<ClientAction>,
    ) -> Result<Self, ConnectError> {
        let target = sign::target_of_key(&remote_public_key);
        let mut opts = opts;
        let relay_ours = opts
            .relay_through
            .as_mut()
            .and_then(|s| s.draw(&mut *env.rng));
        let payload = NoisePayload {
            firewall: env.our_firewall(),
            addresses4: env.our_addresses(opts.local_connection),
            udx: Some(UdxInfo::new(stream_id, false)),
            secret_stream: Some(SecretStreamInfo::default()),
            relay_through: relay_ours,
            ..NoisePayload::default()
        };
        let mut hs = Handshake::initiator(key_pair, &remote_public_key, env.rng)
            .map_err(|_| ConnectError::HandshakeInvalid)?;
        let msg1 = hs
            .send(&payload)
            .map_err(|_| ConnectError::HandshakeInvalid)?;
        let mut spec = QuerySpec::new(NodeId(target), command::FIND_PEER);
        spec.retries = Some(3);
        spec.seeds = opts.relay_addresses.clone();
        out.push(ClientAction::FindPeer(spec));
        // Better than the reference, wire-compatible: a relay we name carries our token, and
        // unless the server names its own it is the one both sides pair through (spec 05
        // §3.3) — so the relay connection (its lookup and handshake) and our pair request
        // start now, alongside the server's lookup and handshake, instead of after the reply
        // (hyperdht's `relayConnection` runs only then). An open client never relays.
        let relay_early = relay_ours
            .as_ref()
            .filter(|_| env.our_firewall() != Firewall::OPEN)
            .map(|info| RelayPlan {
                relay: info.public_key,
                token: info.token,
                is_initiator: true,
            });
        if let Some(plan) = relay_early {
            tracing::debug!(
                "connect: pairing through our blind relay from the start (before the handshake reply)"
            );
            out.push(ClientAction::Relay {
                plan,
                peer_udx: 0,
                keep_alive: opts.relay_keep_alive,
            });
        }
        let mut attempt = ClientAttempt {
            target,
            handshake: Some(hs),
            result: None,
            msg1,
            stream_id,
            find_peer_running: true,
            queue: opts.relay_addresses.into_iter().collect(),
            tried: Vec::new(),
            inflight: Vec::new(),
            found: false,
            phase: AttemptPhase::Handshaking,
            local_connection: opts.local_connection,
            fast_open: opts.fast_open,
            early: Vec::new(),
            punch: None,
            relay_ours,
            relay_keep_alive: opts.relay_keep_alive,
            relaying: false,
            relay_early,
            answered_through: None,
            holepunch: opts.holepunch,
        };
        attempt.pump(out);
        Ok(attempt)
    }

    /// The server's key target and the DHT node that forwarded our accepted handshake, once.
    pub(crate) fn take_route(&mut self) -> Option<([u8; 32], SocketAddrV4)> {
        self.answered_through.take().map(|r| (self.target, r))
    }

    /// Our UDX stream's id.
    pub(crate) fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Whether our puncher owns `socket`.
    pub(crate) fn owns_socket(&self, socket: udx::SocketId) -> bool {
        self.punch.as_ref().is_some_and(|p| p.owns_socket(socket))
    }

    /// Sends handshakes to queued relays while fewer than the limit are in flight.
    fn pump(&mut self, out: &mut Vec<ClientAction>) {
        while matches!(self.phase, AttemptPhase::Handshaking)
            && self.inflight.len() < MAX_HANDSHAKE_ATTEMPTS
        {
            let Some(relay) = self.queue.pop_front() else {
                return;
            };
            if self.tried.contains(&relay) {
                continue;
            }
            self.tried.push(relay);
            let envelope = HandshakeEnvelope {
                mode: mode::FROM_CLIENT,
                noise: self.msg1.clone(),
                peer_address: None,
                relay_address: None,
            };
            let mut spec = RequestSpec::new(relay, command::PEER_HANDSHAKE);
            spec.target = Some(NodeId(self.target));
            spec.value = Some(envelope.to_bytes());
            self.inflight.push(relay);
            out.push(ClientAction::Request {
                spec,
                tag: ClientRequest::Handshake { relay },
            });
        }
    }

    /// A FIND_PEER reply: a node that holds the server's record is a relay to try.
    pub(crate) fn handle_find_peer_reply(
        &mut self,
        reply: &QueryReply,
        out: &mut Vec<ClientAction>,
    ) {
        if reply.value.is_none() {
            return;
        }
        self.found = true;
        self.queue.push_back(reply.from);
        self.pump(out);
    }

    /// The FIND_PEER query ended.
    pub(crate) fn handle_find_peer_done(&mut self, out: &mut Vec<ClientAction>) {
        self.find_peer_running = false;
        self.check_exhausted(out);
    }

    /// Nothing left to try: the connect fails.
    fn check_exhausted(&mut self, out: &mut Vec<ClientAction>) {
        if !matches!(self.phase, AttemptPhase::Handshaking)
            || self.find_peer_running
            || !self.inflight.is_empty()
            || !self.queue.is_empty()
        {
            return;
        }
        let error = if self.found || !self.tried.is_empty() {
            ConnectError::PeerConnectionFailed
        } else {
            ConnectError::PeerNotFound
        };
        tracing::debug!(
            found = self.found,
            relays_tried = self.tried.len(),
            "connect: no relay left to try ({})",
            if self.found {
                "nodes hold the server's record, but no handshake through them succeeded"
            } else if self.tried.is_empty() {
                "no node holds an announcement of the key"
            } else {
                "no handshake through the given relays succeeded"
            }
        );
        out.push(ClientAction::Fail(error));
    }

    /// The response to one of our requests.
    pub(crate) fn handle_response<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        tag: ClientRequest,
        result: Result<QueryReply, RequestError>,
        out: &mut Vec<ClientAction>,
    ) {
        match tag {
            ClientRequest::Handshake { relay } => {
                self.handle_handshake_reply(env, relay, result, out)
            }
            ClientRequest::LanPing => self.handle_lan_ping(env, result, out),
            ClientRequest::Holepunch { round } => {
                let step = match self.punch.as_mut() {
                    Some(p) => p.handle_reply(env, out, round, result),
                    None => return,
                };
                self.punch_step(env, step, out);
            }
            ClientRequest::NatPing { socket } => {
                let step = match self.punch.as_mut() {
                    Some(p) => p.handle_ping(env, out, socket, result),
                    None => return,
                };
                self.punch_step(env, step, out);
            }
            ClientRequest::AbortNotice => {}
        }
    }

    /// The LAN ping, raced with punching: an answer connects there at once.
    fn handle_lan_ping<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        result: Result<QueryReply, RequestError>,
        out: &mut Vec<ClientAction>,
    ) {
        let AttemptPhase::Holepunching {
            remote_udx,
            lan: Some(addr),
        } = self.phase
        else {
            return;
        };
        match result {
            Ok(_) => {
                tracing::debug!(%addr, "connect: path LAN (the server's local address answered)");
                self.drop_punch(env);
                out.push(ClientAction::PunchDropped);
                self.connect_stream(UDX_SERVER_SOCKET, remote_udx, addr, out);
            }
            Err(_) => {
                tracing::debug!(%addr, "connect: the LAN address did not answer; punching goes on");
                self.phase = AttemptPhase::Holepunching {
                    remote_udx,
                    lan: None,
                };
                // A blocked LAN ping does not abort a punch (or a relay) that may still work.
                if self.punch.is_none() {
                    self.punch_gone(ConnectError::HolepunchAborted, out);
                }
            }
        }
    }

    /// msg2 (or a failure) from `relay`: on success, choose the path.
    fn handle_handshake_reply<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        relay: SocketAddrV4,
        result: Result<QueryReply, RequestError>,
        out: &mut Vec<ClientAction>,
    ) {
        let Some(i) = self.inflight.iter().position(|r| *r == relay) else {
            return; // another relay's answer already settled the handshake
        };
        self.inflight.remove(i);
        if !matches!(self.phase, AttemptPhase::Handshaking) {
            return;
        }
        let accepted = result.ok().and_then(|reply| {
            let envelope = HandshakeEnvelope::decode(reply.value.as_deref()?).ok()?;
            (envelope.mode == mode::REPLY && reply.from == relay).then_some((envelope, reply))
        });
        let Some((envelope, reply)) = accepted else {
            tracing::debug!(%relay, "connect: no usable handshake reply through this relay");
            self.pump(out);
            return self.check_exhausted(out);
        };
        let Some(mut hs) = self.handshake.take() else {
            return;
        };
        let fail = |out: &mut Vec<ClientAction>, e| out.push(ClientAction::Fail(e));
        let payload = match hs.recv(&envelope.noise) {
            Ok(p) => p,
            Err(_) => return fail(out, ConnectError::HandshakeInvalid),
        };
        if payload.version != 1 {
            tracing::debug!(
                version = payload.version,
                "connect: the server speaks another version"
            );
            return fail(out, ConnectError::ServerIncompatible);
        }
        let Some(udx_info) = payload.udx.filter(|_| payload.error == ErrorCode::NONE) else {
            tracing::debug!(
                code = payload.error,
                "connect: the server answered with an error"
            );
            return fail(out, ConnectError::ServerError);
        };
        let result = match hs.finish() {
            Ok(r) => r,
            Err(_) => return fail(out, ConnectError::HandshakeInvalid),
        };
        let holepunch_secret = result.holepunch_secret;
        self.result = Some(result);
        // Other handshakes in flight are no longer needed.
        self.inflight.clear();
        if self.find_peer_running {
            self.find_peer_running = false;
            out.push(ClientAction::CancelFindPeer);
        }
        let remote_udx = udx_info.id as u32;
        let relayed = envelope.peer_address.is_some();
        if relayed {
            self.answered_through = Some(relay);
        }
        let server_address = envelope.peer_address.unwrap_or(relay);
        let client_address = reply.to;
        let holepunchable = payload
            .holepunch
            .as_ref()
            .is_some_and(|h| !h.relays.is_empty());
        let main = udx_socket(env.node.primary_socket);
        // Blind relaying (spec 05 §3.3): the server's relay wins. Better than the reference,
        // and where the server skips it too: no relay when a direct path exists (the server
        // answered itself or is open, or we are open — the server then connects to us).
        let view = ClientView {
            direct: !relayed,
            server_firewall: Firewall::from_wire(payload.firewall).unwrap_or(Firewall::Unknown),
            like_reference: false,
        };
        let plan = client_plan(
            self.relay_ours.as_ref(),
            payload.relay_through.as_ref(),
            view,
        )
        .filter(|_| env.our_firewall() != Firewall::OPEN);
        let early = self.relay_early.take();
        if early.is_some() && early != plan {
            tracing::debug!(
                servers_relay = payload.relay_through.is_some(),
                "connect: the reply chose another relay or none: our early pairing is let go"
            );
            out.push(ClientAction::RelayCancel);
        }
        if let Some(plan) = plan {
            tracing::debug!(
                is_initiator = plan.is_initiator,
                servers_relay = payload.relay_through.is_some(),
                "connect: pairing through a blind relay while the direct path is tried"
            );
            self.relaying = true;
            if early == Some(plan) {
                tracing::debug!(
                    "connect: the handshake reply confirms our relay; its pairing already runs"
                );
                out.push(ClientAction::RelayAdopt {
                    peer_udx: remote_udx,
                });
            } else {
                out.push(ClientAction::Relay {
                    plan,
                    peer_udx: remote_udx,
                    keep_alive: self.relay_keep_alive,
                });
            }
        }
        if !relayed {
            // The server itself answered: connect straight back over the same socket.
            tracing::debug!(%server_address, "connect: path direct (the server answered itself)");
            return self.connect_stream(main, remote_udx, server_address, out);
        }
        if payload.firewall == Firewall::OPEN || !holepunchable {
            let addr = payload
                .addresses4
                .iter()
                .find(|a| !is_bogon(a.ip()))
                .copied()
                .unwrap_or(server_address);
            tracing::debug!(
                %addr,
                "connect: path direct ({})",
                if payload.firewall == Firewall::OPEN {
                    "the server is open"
                } else {
                    "the server announced no relays to punch through"
                }
            );
            return self.connect_stream(main, remote_udx, addr, out);
        }
        if env.our_firewall() == Firewall::OPEN {
            tracing::debug!(
                %server_address,
                "connect: path reverse (we are open: waiting for the server to connect to us)"
            );
            self.phase = AttemptPhase::WaitingForServer {
                until: env.now + CLIENT_OPEN_WAIT,
                remote_udx,
            };
            return out.push(ClientAction::ReplayEarly(core::mem::take(&mut self.early)));
        }
        // The LAN shortcut (same public host) races the punch.
        let mut lan = None;
        if self.local_connection && client_address.ip() == server_address.ip() {
            let locals: Vec<Ipv4Addr> = env.node.local_addresses.iter().map(|a| *a.ip()).collect();
            let best = payload
                .addresses4
                .iter()
                .filter(|a| !is_reserved(a.ip()))
                .max_by_key(|c| {
                    locals
                        .iter()
                        .map(|l| shared_octets(l, c.ip()))
                        .max()
                        .unwrap_or(0)
                })
                .copied();
            if let Some(addr) = best {
                tracing::debug!(%addr, "connect: same public host as the server: pinging its LAN address");
                let mut spec = RequestSpec::new(addr, PING);
                spec.internal = true;
                out.push(ClientAction::Request {
                    spec,
                    tag: ClientRequest::LanPing,
                });
                lan = Some(addr);
            }
        }
        self.phase = AttemptPhase::Holepunching { remote_udx, lan };
        if !self.holepunch {
            tracing::debug!("connect: holepunching vetoed by the options");
            if lan.is_none() {
                return self.punch_gone(ConnectError::HolepunchAborted, out);
            }
            return;
        }
        let Some(holepunch) = payload.holepunch.as_ref() else {
            return;
        };
        let params = PunchParams {
            target: self.target,
            server_firewall: payload.firewall,
            holepunch,
            client_relay: relay,
            server_address,
            holepunch_secret,
            fast_open: self.fast_open,
            relay_token: self.relaying,
        };
        tracing::debug!(
            %server_address,
            server_firewall = payload.firewall,
            "connect: path holepunch (the server is firewalled)"
        );
        let mut punch = match ClientPunch::new(env, params) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "connect: cannot start the punch");
                return self.punch_gone(e, out);
            }
        };
        let step = punch.start(env, out);
        self.punch = Some(punch);
        if self.punch_step(env, step, out) {
            out.push(ClientAction::ReplayEarly(core::mem::take(&mut self.early)));
        }
    }

    /// Acts on the end of the punch, if it ended; true while the connect goes on as before.
    fn punch_step<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        step: punch::PunchResult,
        out: &mut Vec<ClientAction>,
    ) -> bool {
        match step {
            Ok(()) => true,
            Err(PunchEnd::Failed(e)) => {
                if let Some(p) = self.punch.take() {
                    p.retire(env);
                }
                self.punch_gone(e, out);
                false
            }
            Err(PunchEnd::Connected { socket, addr }) => {
                // The first probe arrived: connect the stream over that socket (`onsocket`).
                tracing::debug!(%addr, "connect: path punched (a probe arrived)");
                let Some(p) = self.punch.take() else {
                    return false;
                };
                env.hold_stream_socket(socket);
                p.retire(env);
                match self.phase {
                    AttemptPhase::Holepunching { remote_udx, .. }
                    | AttemptPhase::Relaying { remote_udx } => {
                        self.connect_stream(socket, remote_udx, addr, out)
                    }
                    AttemptPhase::Relayed { remote_udx } => {
                        tracing::debug!(%addr, "connect: the punch won: the relayed stream moves to the direct path");
                        out.push(ClientAction::Upgrade {
                            socket,
                            remote_udx,
                            addr,
                        });
                    }
                    _ => {}
                }
                false
            }
        }
    }

    /// The punch is over without a direct path (or never started): the connect waits for
    /// its relay if it has one, else fails with `error`.
    fn punch_gone(&mut self, error: ConnectError, out: &mut Vec<ClientAction>) {
        if !self.relaying {
            return out.push(ClientAction::Fail(error));
        }
        // (While the LAN ping runs, or once the stream goes through the relay, nothing changes.)
        if let AttemptPhase::Holepunching {
            remote_udx,
            lan: None,
        } = self.phase
        {
            tracing::debug!(error = %error, "connect: no punch; the relay carries the stream");
            self.phase = AttemptPhase::Relaying { remote_udx };
        }
    }

    /// Whether the handshake reply is still awaited (a relay that pairs now waits for it).
    pub(crate) fn awaiting_reply(&self) -> bool {
        matches!(self.phase, AttemptPhase::Handshaking)
    }

    /// The relay paired our stream: connect it through the relay (returns the handshake to
    /// open the connection with), unless a direct path already won. The punch goes on.
    pub(crate) fn relay_paired(&mut self) -> Option<HandshakeResult> {
        let remote_udx = match self.phase {
            AttemptPhase::Holepunching { remote_udx, .. }
            | AttemptPhase::Relaying { remote_udx }
            | AttemptPhase::WaitingForServer { remote_udx, .. } => remote_udx,
            _ => return None,
        };
        self.phase = AttemptPhase::Relayed { remote_udx };
        self.early.clear();
        self.result.clone()
    }

    /// The relay failed (pairing timed out, the relay connection broke): the connect fails
    /// with `RELAY_ABORTED` unless a punch or the LAN ping is still alive.
    pub(crate) fn relay_failed(&mut self, out: &mut Vec<ClientAction>) {
        self.relaying = false;
        if let Some(p) = self.punch.as_mut() {
            p.relay_gone();
        }
        let alive = self.punch.is_some()
            || matches!(self.phase, AttemptPhase::Holepunching { lan: Some(_), .. });
        let waiting = match self.phase {
            AttemptPhase::Relaying { .. } => true,
            AttemptPhase::Holepunching { .. } => !alive,
            _ => false,
        };
        if waiting {
            tracing::debug!("connect: the relay failed and no punch is alive: RELAY_ABORTED");
            out.push(ClientAction::Fail(ConnectError::RelayAborted));
        }
    }

    /// Whether the connection opened through the relay and a punch still runs behind it (the
    /// attempt then lives on after the connection opens).
    pub(crate) fn punching_behind_relay(&self) -> bool {
        matches!(self.phase, AttemptPhase::Relayed { .. }) && self.punch.is_some()
    }

    /// Connects our stream to the server's and opens the connection.
    fn connect_stream(
        &mut self,
        socket: udx::SocketId,
        remote_udx: u32,
        addr: SocketAddrV4,
        out: &mut Vec<ClientAction>,
    ) {
        let Some(handshake) = self.result.clone() else {
            return;
        };
        self.phase = AttemptPhase::Opening;
        out.push(ClientAction::ConnectStream {
            socket,
            remote_udx,
            addr,
            handshake,
            early: core::mem::take(&mut self.early),
        });
    }

    /// A 1-byte probe arrived on one of our puncher's sockets.
    pub(crate) fn handle_probe<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        socket: udx::SocketId,
        from: SocketAddrV4,
        out: &mut Vec<ClientAction>,
    ) {
        let step = match self.punch.as_mut() {
            Some(p) => p.handle_probe(env, out, socket, from),
            None => Ok(()),
        };
        self.punch_step(env, step, out);
    }

    /// The punch's timers.
    pub(crate) fn handle_punch_timeout<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
    ) {
        let step = match self.punch.as_mut() {
            Some(p) if p.poll_timeout().is_some_and(|t| t <= env.now) => p.handle_timeout(env, out),
            _ => return,
        };
        self.punch_step(env, step, out);
    }

    /// Whether the wait for the server ran out by `now`.
    pub(crate) fn wait_expired(&self, now: Instant) -> bool {
        matches!(self.phase, AttemptPhase::WaitingForServer { until, .. } if until <= now)
    }

    /// Whether a punch timer is due by `now`.
    pub(crate) fn punch_due(&self, now: Instant) -> bool {
        self.punch
            .as_ref()
            .and_then(|p| p.poll_timeout())
            .is_some_and(|t| t <= now)
    }

    /// The earliest timer: the wait for the server, the punch's.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let wait = match self.phase {
            AttemptPhase::WaitingForServer { until, .. } => Some(until),
            _ => None,
        };
        [wait, self.punch.as_ref().and_then(|p| p.poll_timeout())]
            .into_iter()
            .flatten()
            .min()
    }

    /// The server's stream id, if a packet from it may connect our stream now (we wait for
    /// it, or punch).
    pub(crate) fn expects_packets_from(&self) -> Option<u32> {
        match self.phase {
            AttemptPhase::WaitingForServer { remote_udx, .. }
            | AttemptPhase::Holepunching { remote_udx, .. } => Some(remote_udx),
            _ => None,
        }
    }

    /// Keeps a packet from the server that came before its handshake reply.
    pub(crate) fn keep_early(&mut self, packet: EarlyPacket) {
        if self.early.len() < MAX_EARLY_PACKETS {
            self.early.push(packet);
        }
    }

    /// The server's packet connected our stream: the punch is over, the connection opens
    /// (returns the handshake to open it with).
    pub(crate) fn stream_attached<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
    ) -> Option<HandshakeResult> {
        self.phase = AttemptPhase::Opening;
        let result = self.result.clone()?;
        self.drop_punch(env);
        Some(result)
    }

    /// Drops the punch (the LAN path won, or the connect ends).
    pub(crate) fn drop_punch<R: RngCore + CryptoRng>(&mut self, env: &mut Env<'_, R>) {
        if let Some(p) = self.punch.take() {
            p.retire(env);
        }
    }
}
