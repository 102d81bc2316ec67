//! A server handshake's holepunch (hyperdht `server.js` `_onpeerholepunch`): the PEER_HOLEPUNCH
//! handler around the handshake's [`Puncher`]. Each request is answered once the NAT analysis
//! can be read (the reference `await`s it; here the requests wait in a short queue, resumed by
//! "analysis ready"); a request that says the client punches starts our strategy.
//!
//! It ends with [`Ended`]: the handshake's owner then retires the puncher and, on an abort,
//! drops the connection that waits for the client's first packet.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::SocketAddrV4;

use rand_core::{CryptoRng, RngCore};

use super::action::{ServerAction, ServerRequest};
use crate::connect::nat::firewall_from_wire_lenient;
use crate::connect::puncher::{abort_payload, Analysis, RemoteUpdate, PREPUNCH_TIMEOUT};
use crate::connect::{ErrorCode, Firewall, Puncher, PuncherOutput, SecurePayload};
use crate::dht::env::Env;
use crate::dht::ids::ConnId;
use crate::dht::messages::{mode, HolepunchEnvelope};
use crate::dht::pool::{socket_kind, udx_socket};
use crate::rpc::{IncomingRequest, QueryReply, RequestError, RequestSpec, PING};
use crate::udx;
use crate::Instant;

/// PEER_HOLEPUNCH requests a server holds while its NAT analysis settles.
const MAX_PENDING_HOLEPUNCHES: usize = 4;
/// A NAT-sampling ping waits this long, once.
const NAT_PING_TIMEOUT: core::time::Duration = core::time::Duration::from_secs(1);

/// The punch is over; with `abort`, its waiting connection goes too if the client never
/// arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    pub(crate) abort: bool,
}

/// `Err` once the punch ended.
pub(crate) type HandlerResult<T = ()> = Result<T, Ended>;

/// A PEER_HOLEPUNCH a server answers once its analysis settles.
#[derive(Debug)]
struct PendingHolepunch {
    req: IncomingRequest,
    peer_address: SocketAddrV4,
    remote_address: Option<SocketAddrV4>,
    client_token: Option<[u8; 32]>,
    token: [u8; 32],
    is_server_relay: bool,
    reopen: bool,
}

/// One server handshake's holepunch.
#[derive(Debug)]
pub(crate) struct ServerPunch {
    puncher: Puncher,
    secure: SecurePayload,
    /// The id PEER_HOLEPUNCH messages name the handshake by (`None` for a LAN prepunch of an
    /// OPEN server: its NAT pings then go unanswered).
    holepunch_id: Option<u64>,
    round: u64,
    /// The connection waiting for the client's first packet.
    conn: ConnId,
    pending: Vec<PendingHolepunch>,
    /// Without a punch starting by then, give up (`HANDSHAKE_INITIAL_TIMEOUT`).
    prepunch: Option<Instant>,
    /// A blind relay carries the connection (the reference's `h.relayToken`).
    relay_token: bool,
    /// The deadline its server's timer index holds for it (see `Server::punch_timers`).
    pub(crate) scheduled: Option<Instant>,
}

impl ServerPunch {
    /// A punch for the connection `conn` (its NAT sampling starts with
    /// [`start`](Self::start)).
    pub(crate) fn new<R: RngCore + CryptoRng>(
        env: &mut Env<'_, R>,
        puncher: Puncher,
        holepunch_secret: [u8; 32],
        holepunch_id: Option<u64>,
        conn: ConnId,
        relay_token: bool,
    ) -> Box<Self> {
        let secure = SecurePayload::new(holepunch_secret, env.rng);
        Box::new(ServerPunch {
            puncher,
            secure,
            holepunch_id,
            round: 0,
            conn,
            pending: Vec::new(),
            prepunch: Some(env.now + PREPUNCH_TIMEOUT),
            relay_token,
            scheduled: None,
        })
    }

    /// The connection it punches for.
    pub(crate) fn conn(&self) -> ConnId {
        self.conn
    }

    /// No prepunch window any more (the connection runs through a blind relay).
    pub(crate) fn clear_prepunch(&mut self) {
        self.prepunch = None;
    }

    /// Whether the puncher owns `socket`.
    pub(crate) fn owns_socket(&self, socket: udx::SocketId) -> bool {
        self.puncher.owns_socket(socket)
    }

    /// The earliest timer: the puncher's, the prepunch window.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [self.puncher.poll_timeout(), self.prepunch]
            .into_iter()
            .flatten()
            .min()
    }

    /// Destroys the puncher.
    pub(crate) fn retire<R: RngCore + CryptoRng>(self: Box<Self>, env: &mut Env<'_, R>) {
        env.retire_puncher(self.puncher);
    }

    /// Starts NAT sampling.
    pub(crate) fn start<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult {
        self.drive(env, out)
    }

    /// A 1-byte probe arrived on one of the puncher's sockets.
    pub(crate) fn handle_probe<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        socket: udx::SocketId,
        from: SocketAddrV4,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult {
        self.puncher.handle_probe(env.now, socket, from);
        self.drive(env, out)
    }

    /// A NAT-sampling ping from `socket` was answered (or timed out).
    pub(crate) fn handle_ping<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        socket: udx::SocketId,
        result: Result<QueryReply, RequestError>,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult {
        match result {
            Ok(r) => self
                .puncher
                .handle_ping_reply(env.now, socket, r.to, r.from),
            Err(_) => self.puncher.handle_ping_timeout(env.now, socket),
        }
        self.drive(env, out)
    }

    /// The prepunch window and the puncher's timers.
    pub(crate) fn handle_timeout<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult {
        let now = env.now;
        if self.prepunch.is_some_and(|t| t <= now) {
            self.prepunch = None;
            tracing::debug!(
                "server holepunch: the client never asked to punch (prepunch window over)"
            );
            return Err(Ended { abort: true });
        }
        if self.puncher.poll_timeout().is_some_and(|t| t <= now) {
            self.puncher.handle_timeout(now);
        }
        self.drive(env, out)
    }

    /// A PEER_HOLEPUNCH for this punch (`_onpeerholepunch`), relayed by `req.from` on behalf
    /// of the client at `peer_address`.
    pub(crate) fn handle_holepunch<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        req: &IncomingRequest,
        peer_address: SocketAddrV4,
        sealed: &[u8],
        is_server_relay: bool,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult {
        if self.puncher.is_destroyed() {
            return Ok(());
        }
        let Ok(payload) = self.secure.decrypt(sealed) else {
            return Ok(());
        };
        if self.puncher.socket().is_none() {
            return self.abort(env, req, peer_address, ErrorCode::ABORTED, out);
        }
        if payload.error != ErrorCode::NONE {
            tracing::debug!(%peer_address, code = payload.error, "server holepunch: the client aborted");
            self.round = self.round.max(payload.round);
            return self.abort(env, req, peer_address, ErrorCode::ABORTED, out);
        }
        let token = self.secure.token(&peer_address);
        let echoed = is_server_relay && payload.remote_token == Some(token);
        if Some(udx_socket(req.socket)) == self.puncher.socket() {
            self.puncher.add_sample(req.to, req.from);
        }
        if payload.round >= self.round {
            self.round = payload.round;
            self.puncher.update_remote(RemoteUpdate {
                punching: payload.punching,
                firewall: firewall_from_wire_lenient(payload.firewall),
                addresses: payload.addresses.as_deref(),
                verified: echoed.then(|| *peer_address.ip()),
            });
        }
        if self.pending.len() >= MAX_PENDING_HOLEPUNCHES {
            self.pending.remove(0);
        }
        self.pending.push(PendingHolepunch {
            req: req.clone(),
            peer_address,
            remote_address: payload.remote_address,
            client_token: payload.token,
            token,
            is_server_relay,
            reopen: false,
        });
        self.drive(env, out)?;
        self.answer_ready(env, out)
    }

    /// Answers the pending PEER_HOLEPUNCH requests whose analysis is ready.
    fn answer_ready<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult {
        loop {
            if self.puncher.is_destroyed() {
                self.pending.clear();
                return Ok(());
            }
            let Some(first) = self.pending.first() else {
                return Ok(());
            };
            let reopen = first.reopen;
            let analysis = self.puncher.analyze(reopen);
            let remote_punching = self.puncher.remote_holepunching();
            match analysis {
                Analysis::Pending => {
                    // Sampling goes on; "analysis ready" brings us back (or already did).
                    if self.apply_outputs(env, out)? {
                        continue;
                    }
                    return Ok(());
                }
                Analysis::Unstable if !remote_punching && !reopen => {
                    self.pending[0].reopen = true;
                    self.apply_outputs(env, out)?;
                    continue;
                }
                Analysis::Unstable if !remote_punching => {
                    let p = self.pending.remove(0);
                    return self.abort(env, &p.req, p.peer_address, ErrorCode::ABORTED, out);
                }
                _ => {}
            }
            let p = self.pending.remove(0);
            self.answer(env, p, out)?;
        }
    }

    fn answer<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        p: PendingHolepunch,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult {
        let now = env.now;
        // Fast mode: the client opened a session to our address; probe it back right away.
        if self.puncher.fast_mode(p.remote_address) {
            self.puncher.ping(p.peer_address);
        }
        if self.puncher.remote_holepunching() {
            self.prepunch = None;
            // The throttle is for new random punches: a resent request of a punch that already
            // runs here (its reply was lost) gets the same answer again, not TRY_LATER (the
            // reference would refuse its own punch).
            if self.puncher.is_random_punch()
                && !self.puncher.is_punching()
                && env.random_punches.is_throttled(now)
            {
                if !self.relay_token {
                    // Without a blind relay the client cannot wait its turn.
                    return self.abort(env, &p.req, p.peer_address, ErrorCode::TRY_LATER, out);
                }
                // The relay carries the stream: TRY_LATER with our state, and the punch stays
                // (the client asks again through our relay 10–20 s later).
                tracing::debug!("server holepunch: a random punch ran recently (throttled): TRY_LATER, the relay carries the stream");
                return self.reply(env, p, ErrorCode::TRY_LATER, out);
            }
            // Punching may take longer than the first-packet wait.
            out.push(ServerAction::WaitForPunch(self.conn));
            if self.puncher.punch(now).is_err() {
                return self.abort(env, &p.req, p.peer_address, ErrorCode::ABORTED, out);
            }
        }
        self.reply(env, p, ErrorCode::NONE, out)
    }

    /// Answers `p` with our state and `error` (NONE, or TRY_LATER for a throttled punch).
    fn reply<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        p: PendingHolepunch,
        error: u64,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult {
        // Freeze the analysis once we tell the peer a result.
        if self.puncher.firewall() != Firewall::Unknown {
            self.puncher.freeze();
        }
        let reply = self.puncher.server_reply_payload(
            error,
            self.round,
            p.is_server_relay.then_some(p.token),
            p.client_token,
        );
        let sealed = self.secure.encrypt(&reply, env.rng);
        let socket = self.puncher.socket().map(socket_kind);
        let envelope = HolepunchEnvelope {
            mode: mode::FROM_SERVER,
            id: 0,
            payload: sealed,
            peer_address: Some(p.peer_address),
        };
        let to = p.req.from;
        out.push(ServerAction::Relay {
            req: p.req,
            value: envelope.to_bytes(),
            to,
            socket,
        });
        self.apply_outputs(env, out)?;
        Ok(())
    }

    /// `_abort(h, error)`: an abort notice from the node's primary socket, and the punch ends
    /// (its waiting connection with it).
    fn abort<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        req: &IncomingRequest,
        peer_address: SocketAddrV4,
        error: u64,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult {
        tracing::debug!(
            %peer_address,
            code = error,
            local = ?self.puncher.firewall(),
            remote = ?self.puncher.remote_firewall(),
            "server holepunch: aborting"
        );
        let sealed = self
            .secure
            .encrypt(&abort_payload(error, self.round), env.rng);
        let envelope = HolepunchEnvelope {
            mode: mode::FROM_SERVER,
            id: 0,
            payload: sealed,
            peer_address: Some(peer_address),
        };
        out.push(ServerAction::Relay {
            req: req.clone(),
            value: envelope.to_bytes(),
            to: req.from,
            socket: Some(env.node.primary_socket),
        });
        Err(Ended { abort: true })
    }

    /// Applies the puncher's outputs, then answers requests whose analysis got ready.
    fn drive<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult {
        if self.apply_outputs(env, out)? {
            self.answer_ready(env, out)?;
        }
        Ok(())
    }

    /// Applies the puncher's outputs; `Ok(true)` when its analysis got ready.
    fn apply_outputs<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ServerAction>,
    ) -> HandlerResult<bool> {
        let mut ready = false;
        while let Some(output) = self.puncher.poll_output() {
            match output {
                PuncherOutput::Probe { socket, to, ttl } => {
                    out.push(ServerAction::Probe { socket, to, ttl })
                }
                PuncherOutput::NatPing { socket, to } => match self.holepunch_id {
                    Some(holepunch_id) => {
                        let mut spec = RequestSpec::new(to, PING);
                        spec.internal = true;
                        spec.retries = Some(0);
                        spec.timeout = Some(NAT_PING_TIMEOUT);
                        spec.socket = Some(socket_kind(socket));
                        out.push(ServerAction::Request {
                            spec,
                            tag: ServerRequest::NatPing {
                                holepunch_id,
                                socket,
                            },
                        });
                    }
                    None => self.puncher.handle_ping_timeout(env.now, socket),
                },
                PuncherOutput::OpenSockets { count } => {
                    let sockets = env.open_pool_sockets(count);
                    self.puncher.add_sockets(env.now, &sockets);
                    if sockets.len() < count {
                        self.puncher.sockets_unavailable(env.now);
                    }
                }
                PuncherOutput::ReleaseSocket(s) => env.release_puncher_socket(s),
                PuncherOutput::RandomPunchBegin | PuncherOutput::RandomPunchEnd => {
                    env.random_punches.apply(env.now, &output)
                }
                PuncherOutput::AnalysisReady => ready = true,
                // Only the client's puncher connects.
                PuncherOutput::Connected { .. } => {}
                PuncherOutput::Failed(e) => {
                    tracing::debug!(error = %e, "server holepunch: the puncher gave up");
                    return Err(Ended { abort: true });
                }
            }
        }
        Ok(ready)
    }
}
