//! A client's holepunch (hyperdht `connect.js` `holepunch` / `probeRound` / `roundPunch`):
//! PEER_HOLEPUNCH rounds through the server's relay, each `await` of the reference a
//! [`ClientStep`] resumed by the event it waited for — a reply, the puncher's "analysis ready",
//! or a timer — around a [`Puncher`] that probes and sprays.
//!
//! It ends in a [`PunchEnd`]: a probe got through (connect the stream over that socket), or
//! the punch failed (the connect fails with that error).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::SocketAddrV4;

use rand_core::{CryptoRng, RngCore};

use super::action::{ClientAction, ClientRequest};
use crate::connect::puncher::{
    abort_payload, pick_server_relay, try_later_delay, Analysis, ProbeVerdict, ReplyStatus,
    UNKNOWN_REMOTE_WAIT,
};
use crate::connect::{
    ConnectError, ErrorCode, Firewall, HolepunchInfo, HolepunchPayload, Puncher, PuncherOutput,
    RelayInfo, SecurePayload,
};
use crate::dht::env::Env;
use crate::dht::messages::{command, mode, HolepunchEnvelope};
use crate::dht::pool::socket_kind;
use crate::rpc::{NodeId, QueryReply, RequestError, RequestSpec, PING};
use crate::udx;
use crate::Instant;

/// A NAT-sampling ping waits this long, once.
const NAT_PING_TIMEOUT: core::time::Duration = core::time::Duration::from_secs(1);

/// How a holepunch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PunchEnd {
    /// A probe from the server arrived on `socket` from `addr`.
    Connected {
        /// Our pool socket it arrived on.
        socket: udx::SocketId,
        /// The server's address behind its NAT.
        addr: SocketAddrV4,
    },
    /// The punch failed.
    Failed(ConnectError),
}

/// `Err` once the punch ended; the caller stops and acts on it.
pub(crate) type PunchResult = Result<(), PunchEnd>;

/// Where the client's holepunch is (each variant is an `await` of the reference).
#[derive(Debug)]
enum ClientStep {
    /// A probe round's PEER_HOLEPUNCH (of round `round`) is in flight.
    Probe {
        retry: bool,
        round: u64,
        to: SocketAddrV4,
        sent: HolepunchPayload,
    },
    /// The server's firewall is still UNKNOWN: give it a second to find out.
    ProbeSleep {
        retry: bool,
        until: Instant,
        token: Option<[u8; 32]>,
        peer_address: SocketAddrV4,
    },
    /// Waiting for our NAT analysis (`analyze(reopen)`).
    ProbeAnalyze {
        retry: bool,
        reopen: bool,
        token: Option<[u8; 32]>,
        peer_address: SocketAddrV4,
    },
    /// The punch round's PEER_HOLEPUNCH is in flight (`hold` = a random-punch slot is held).
    Punch {
        round: u64,
        to: SocketAddrV4,
        sent: HolepunchPayload,
        hold: bool,
    },
    /// The random-punch throttle delays our punch and a blind relay can carry the stream
    /// meanwhile: the one non-punching update of round `round` is in flight (`roundPunch`'s
    /// `delayed` branch).
    DelayNotice {
        round: u64,
        to: SocketAddrV4,
        sent: HolepunchPayload,
        remote_token: Option<[u8; 32]>,
        peer_address: SocketAddrV4,
    },
    /// `tryLater`: sleeping 10–20 s before the punch round is tried again (delayed: through
    /// the server's relay, without a token).
    TryLater {
        until: Instant,
        remote_token: Option<[u8; 32]>,
        peer_address: SocketAddrV4,
    },
    /// The strategy runs; the first probe that arrives connects.
    Punching,
}

/// What the handshake told the client about the server's holepunch.
#[derive(Debug, Clone)]
pub(crate) struct PunchParams<'a> {
    /// The server's key target (PEER_HOLEPUNCH requests name it).
    pub(crate) target: [u8; 32],
    /// The server's firewall (payload `firewall`).
    pub(crate) server_firewall: u64,
    /// The server's holepunch id and relays.
    pub(crate) holepunch: &'a HolepunchInfo,
    /// The node our handshake went through.
    pub(crate) client_relay: SocketAddrV4,
    /// The server's address as that relay saw it (its puncher socket).
    pub(crate) server_address: SocketAddrV4,
    /// The key of the PEER_HOLEPUNCH boxes.
    pub(crate) holepunch_secret: [u8; 32],
    /// Open our NAT toward the server first (`fastOpen`).
    pub(crate) fast_open: bool,
    /// A blind relay carries the connection if the punch must wait (the reference's
    /// `c.relayToken`): a throttled random punch or a TRY_LATER answer then waits and retries
    /// instead of failing.
    pub(crate) relay_token: bool,
}

/// A client's holepunch.
#[derive(Debug)]
pub(crate) struct ClientPunch {
    puncher: Puncher,
    secure: SecurePayload,
    target: [u8; 32],
    holepunch_id: u64,
    server_relay: RelayInfo,
    /// The node our handshake went through.
    client_relay: SocketAddrV4,
    /// The server's address as the handshake relay saw it (its puncher socket).
    server_address: SocketAddrV4,
    fast_open: bool,
    relay_token: bool,
    round: u64,
    step: ClientStep,
}

impl ClientPunch {
    /// Sets up the punch (`new Holepuncher`): a relay of the server's to punch through and a
    /// puncher on a new pool socket.
    pub(crate) fn new<R: RngCore + CryptoRng>(
        env: &mut Env<'_, R>,
        p: PunchParams<'_>,
    ) -> Result<Box<Self>, ConnectError> {
        let server_relay = pick_server_relay(&p.holepunch.relays, p.client_relay)
            .cloned()
            .ok_or(ConnectError::CannotHolepunch)?;
        let puncher = env
            .new_puncher(true, p.server_firewall)
            .ok_or(ConnectError::HolepunchAborted)?;
        let secure = SecurePayload::new(p.holepunch_secret, env.rng);
        Ok(Box::new(ClientPunch {
            puncher,
            secure,
            target: p.target,
            holepunch_id: p.holepunch.id,
            server_relay,
            client_relay: p.client_relay,
            server_address: p.server_address,
            fast_open: p.fast_open,
            relay_token: p.relay_token,
            round: 0,
            step: ClientStep::Punching,
        }))
    }

    /// Starts it: the puncher's first outputs, then the first probe round.
    pub(crate) fn start<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
    ) -> PunchResult {
        self.drive(env, out)?;
        self.probe_round(env, out, true)
    }

    /// The connect's blind relay failed (the reference's `resetRelayConnection` clears
    /// `c.relayToken`): no relay carries the stream while the punch waits any more, so a
    /// throttled random punch or a TRY_LATER answer now aborts (`HOLEPUNCH_ABORTED`) at its
    /// next turn instead of waiting again — a wait that, on a node whose random punches stay
    /// throttled, never ended and kept the connect pending forever.
    pub(crate) fn relay_gone(&mut self) {
        self.relay_token = false;
    }

    /// Whether the puncher owns `socket`.
    pub(crate) fn owns_socket(&self, socket: udx::SocketId) -> bool {
        self.puncher.owns_socket(socket)
    }

    /// The earliest punch timer.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let sleep = match self.step {
            ClientStep::ProbeSleep { until, .. } | ClientStep::TryLater { until, .. } => {
                Some(until)
            }
            _ => None,
        };
        [self.puncher.poll_timeout(), sleep]
            .into_iter()
            .flatten()
            .min()
    }

    /// Destroys the puncher (the attempt is over or took another path).
    pub(crate) fn retire<R: RngCore + CryptoRng>(self: Box<Self>, env: &mut Env<'_, R>) {
        env.retire_puncher(self.puncher);
    }

    /// A 1-byte probe arrived on one of the puncher's sockets.
    pub(crate) fn handle_probe<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
        socket: udx::SocketId,
        from: SocketAddrV4,
    ) -> PunchResult {
        self.puncher.handle_probe(env.now, socket, from);
        self.drive(env, out)
    }

    /// The NAT-sampling ping from `socket` was answered (or timed out).
    pub(crate) fn handle_ping<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
        socket: udx::SocketId,
        result: Result<QueryReply, RequestError>,
    ) -> PunchResult {
        match result {
            Ok(r) => self
                .puncher
                .handle_ping_reply(env.now, socket, r.to, r.from),
            Err(_) => self.puncher.handle_ping_timeout(env.now, socket),
        }
        self.drive(env, out)
    }

    /// Puncher timers and the probe round's sleep.
    pub(crate) fn handle_timeout<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
    ) -> PunchResult {
        let now = env.now;
        if self.puncher.poll_timeout().is_some_and(|t| t <= now) {
            self.puncher.handle_timeout(now);
        }
        if let ClientStep::TryLater {
            until,
            remote_token,
            peer_address,
        } = self.step
        {
            if until <= now {
                self.step = ClientStep::Punching;
                self.drive(env, out)?;
                return self.punch_round(env, out, remote_token, peer_address, true);
            }
        }
        if let ClientStep::ProbeSleep {
            retry,
            until,
            token,
            peer_address,
        } = self.step
        {
            if until <= now {
                self.step = ClientStep::ProbeAnalyze {
                    retry,
                    reopen: false,
                    token,
                    peer_address,
                };
                self.drive(env, out)?;
                return self.continue_probe(env, out);
            }
        }
        self.drive(env, out)
    }

    /// Sends a PEER_HOLEPUNCH from the puncher's socket through `relay` to `peer_address`;
    /// false when the puncher has no socket.
    fn send_holepunch<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
        payload: &HolepunchPayload,
        peer_address: SocketAddrV4,
        relay: SocketAddrV4,
        tag: ClientRequest,
    ) -> bool {
        let Some(socket) = self.puncher.socket() else {
            return false;
        };
        let sealed = self.secure.encrypt(payload, env.rng);
        let envelope = HolepunchEnvelope {
            mode: mode::FROM_CLIENT,
            id: self.holepunch_id,
            payload: sealed,
            peer_address: Some(peer_address),
        };
        let mut spec = RequestSpec::new(relay, command::PEER_HOLEPUNCH);
        spec.target = Some(NodeId(self.target));
        spec.value = Some(envelope.to_bytes());
        spec.socket = Some(socket_kind(socket));
        out.push(ClientAction::Request { spec, tag });
        true
    }

    /// `probeRound`: tell the server our NAT state and learn its.
    fn probe_round<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
        retry: bool,
    ) -> PunchResult {
        // A low-TTL probe toward the server opens our mapping for its fast-mode probe.
        let fast_open = self.fast_open.then_some(self.server_address);
        if let Some(addr) = fast_open {
            self.puncher.open_session(addr);
        }
        let round = self.round;
        let sent = self.puncher.probe_round_payload(round, fast_open);
        self.round += 1;
        let (peer, relay) = (
            self.server_relay.peer_address,
            self.server_relay.relay_address,
        );
        self.drive(env, out)?;
        if !self.send_holepunch(
            env,
            out,
            &sent,
            peer,
            relay,
            ClientRequest::Holepunch { round },
        ) {
            return Err(PunchEnd::Failed(ConnectError::HolepunchAborted));
        }
        self.step = ClientStep::Probe {
            retry,
            round,
            to: relay,
            sent,
        };
        Ok(())
    }

    /// The answer to the PEER_HOLEPUNCH of round `round`.
    pub(crate) fn handle_reply<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
        round: u64,
        result: Result<QueryReply, RequestError>,
    ) -> PunchResult {
        let now = env.now;
        let mut delayed = None;
        let (probe, retry, to, sent, hold) = match &self.step {
            ClientStep::Probe {
                retry,
                round: r,
                to,
                sent,
            } if *r == round => (true, *retry, *to, sent.clone(), false),
            ClientStep::Punch {
                round: r,
                to,
                sent,
                hold,
            } if *r == round => (false, false, *to, sent.clone(), *hold),
            ClientStep::DelayNotice {
                round: r,
                to,
                sent,
                remote_token,
                peer_address,
            } if *r == round => {
                delayed = Some((*remote_token, *peer_address));
                (false, false, *to, sent.clone(), false)
            }
            _ => return Ok(()),
        };
        let fail = |e: ConnectError| {
            tracing::debug!(round, error = %e, "holepunch: the round failed");
            Err(PunchEnd::Failed(e))
        };
        if hold {
            // `_randomPunches--` after the punch request: the puncher counts its own punch.
            env.random_punches.release();
        }
        let reply = match result {
            Ok(r) => r,
            Err(RequestError::Timeout) => return fail(ConnectError::RequestTimeout),
            Err(_) => return fail(ConnectError::HolepunchAborted),
        };
        let envelope = reply
            .value
            .as_deref()
            .and_then(|v| HolepunchEnvelope::decode(v).ok());
        let Some(envelope) = envelope.filter(|e| e.mode == mode::REPLY && reply.from == to) else {
            return fail(ConnectError::BadHolepunchReply);
        };
        let peer_address = envelope.peer_address.unwrap_or(to);
        let Ok(payload) = self.secure.decrypt(&envelope.payload) else {
            return fail(ConnectError::HolepunchInvalid);
        };
        // TRY_LATER to our punch request: with a blind relay, wait and punch again through
        // the server's relay (`tryLater`, then `roundPunch(…, delayed)`); without, abort.
        match self
            .puncher
            .handle_reply(&payload, &sent, peer_address, self.relay_token)
        {
            Ok(ReplyStatus::Ok) => {}
            Ok(ReplyStatus::TryLater) => {
                let remote_token = sent.remote_token;
                tracing::debug!(
                    "holepunch: the server is busy punching (TRY_LATER): the relay carries the stream; punching again later"
                );
                return self.try_later(env, remote_token, peer_address);
            }
            Err(e) => return fail(e),
        }
        if let Some((remote_token, peer_address)) = delayed {
            // The delayed update was taken: sleep, then punch.
            return self.try_later(env, remote_token, peer_address);
        }
        if probe {
            self.puncher.add_sample(reply.to, reply.from);
            // (The reference then opens a session to `payload.address`, a field the payload
            // does not have: that branch never runs.)
            let token = payload.token;
            if self.puncher.remote_firewall() == Firewall::Unknown {
                self.step = ClientStep::ProbeSleep {
                    retry,
                    until: now + UNKNOWN_REMOTE_WAIT,
                    token,
                    peer_address,
                };
                return self.drive(env, out);
            }
            self.step = ClientStep::ProbeAnalyze {
                retry,
                reopen: false,
                token,
                peer_address,
            };
            self.drive(env, out)?;
            return self.continue_probe(env, out);
        }
        if !self.puncher.remote_holepunching() {
            tracing::debug!("holepunch: the server's punch reply does not say it is punching");
            return fail(ConnectError::RemoteNotHolepunching);
        }
        if self.puncher.punch(now).is_err() {
            return fail(ConnectError::RemoteNotHolepunchable);
        }
        self.step = ClientStep::Punching;
        self.drive(env, out)
    }

    /// The rest of `probeRound` once the analysis can be read.
    fn continue_probe<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
    ) -> PunchResult {
        loop {
            let ClientStep::ProbeAnalyze {
                retry,
                reopen,
                token,
                peer_address,
            } = self.step
            else {
                return Ok(());
            };
            let analysis = self.puncher.analyze(reopen);
            self.drive(env, out)?;
            if analysis != Analysis::Pending {
                tracing::debug!(
                    local = ?self.puncher.firewall(),
                    remote = ?self.puncher.remote_firewall(),
                    samples = self.puncher.nat().sampled(),
                    stable = analysis == Analysis::Stable,
                    reopened = reopen,
                    "holepunch: NAT classes as sampled"
                );
            }
            match analysis {
                Analysis::Pending => return Ok(()),
                Analysis::Stable if reopen => return self.probe_round(env, out, false),
                Analysis::Stable => {}
                Analysis::Unstable if !reopen => {
                    // Try to make it stable with a fresh socket (mobile networks).
                    self.step = ClientStep::ProbeAnalyze {
                        retry,
                        reopen: true,
                        token,
                        peer_address,
                    };
                    continue;
                }
                Analysis::Unstable => {}
            }
            return match self.puncher.probe_round_verdict(retry, token.is_some()) {
                ProbeVerdict::Retry => self.probe_round(env, out, false),
                ProbeVerdict::Abort(e) => self.abort(env, out, e),
                ProbeVerdict::Proceed => self.punch_round(env, out, token, peer_address, false),
            };
        }
    }

    /// `tryLater`: sleep 10–20 s, then run the punch round again (delayed).
    fn try_later<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        remote_token: Option<[u8; 32]>,
        peer_address: SocketAddrV4,
    ) -> PunchResult {
        if !self.relay_token {
            // `tryLater`: only a relay could carry the stream meanwhile, and it is gone.
            tracing::debug!("holepunch: the punch must wait and the blind relay is gone");
            return Err(PunchEnd::Failed(ConnectError::HolepunchAborted));
        }
        let delay = try_later_delay(env.rng);
        tracing::debug!(
            delay_ms = delay.as_millis() as u64,
            "holepunch: trying the punch again later"
        );
        self.step = ClientStep::TryLater {
            until: env.now + delay,
            remote_token,
            peer_address,
        };
        Ok(())
    }

    /// `roundPunch`: ask the server to punch, then punch. `delayed`: after a wait (the
    /// request then goes to the server's relay, without a token).
    fn punch_round<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
        remote_token: Option<[u8; 32]>,
        peer_address: SocketAddrV4,
        delayed: bool,
    ) -> PunchResult {
        // The server rerolled its socket: use the address it reported (same relay only).
        if self.server_relay.relay_address == self.client_relay
            && self.server_address != peer_address
        {
            self.server_address = peer_address;
            self.puncher.open_session(peer_address);
        }
        // We now tell the peer our final NAT state: stop reclassifying.
        self.puncher.freeze();
        let random = self.puncher.is_random_punch();
        if random && env.random_punches.is_throttled(env.now) {
            if !self.relay_token {
                // Only a blind relay could help, and we have none.
                tracing::debug!("holepunch: a random punch ran recently on this node (throttled) and we have no blind relay");
                return Err(PunchEnd::Failed(ConnectError::HolepunchAborted));
            }
            if delayed {
                return self.try_later(env, remote_token, peer_address);
            }
            // Tell the server our final state once (not punching yet), then wait.
            tracing::debug!("holepunch: a random punch ran recently on this node (throttled): the relay carries the stream; punching later");
            let token = self.secure.token(&self.server_address);
            let round = self.round;
            let sent = self
                .puncher
                .delayed_update_payload(round, Some(token), remote_token);
            self.round += 1;
            let (relay, server_address) = (self.client_relay, self.server_address);
            self.drive(env, out)?;
            let tag = ClientRequest::Holepunch { round };
            if !self.send_holepunch(env, out, &sent, server_address, relay, tag) {
                return Err(PunchEnd::Failed(ConnectError::HolepunchAborted));
            }
            self.step = ClientStep::DelayNotice {
                round,
                to: relay,
                sent,
                remote_token,
                peer_address,
            };
            return Ok(());
        }
        if random {
            env.random_punches.begin();
        }
        let token = (!delayed).then(|| self.secure.token(&self.server_address));
        let round = self.round;
        let sent = self.puncher.punch_round_payload(round, token, remote_token);
        self.round += 1;
        // Delayed: through the server's chosen relay (validated already).
        let (relay, server_address) = if delayed {
            (
                self.server_relay.relay_address,
                self.server_relay.peer_address,
            )
        } else {
            (self.client_relay, self.server_address)
        };
        if let Err(end) = self.drive(env, out) {
            if random {
                env.random_punches.release();
            }
            return Err(end);
        }
        let tag = ClientRequest::Holepunch { round };
        if !self.send_holepunch(env, out, &sent, server_address, relay, tag) {
            if random {
                env.random_punches.release();
            }
            return Err(PunchEnd::Failed(ConnectError::HolepunchAborted));
        }
        self.step = ClientStep::Punch {
            round,
            to: relay,
            sent,
            hold: random,
        };
        Ok(())
    }

    /// `abort()`: tell the server (through its relay) and fail with `error`. The notice is
    /// not waited for.
    fn abort<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
        error: ConnectError,
    ) -> PunchResult {
        tracing::debug!(
            error = %error,
            local = ?self.puncher.firewall(),
            remote = ?self.puncher.remote_firewall(),
            "holepunch: aborting, telling the server"
        );
        let payload = abort_payload(ErrorCode::ABORTED, self.round);
        self.round += 1;
        let (peer, relay) = (
            self.server_relay.peer_address,
            self.server_relay.relay_address,
        );
        self.send_holepunch(env, out, &payload, peer, relay, ClientRequest::AbortNotice);
        Err(PunchEnd::Failed(error))
    }

    /// Applies the puncher's outputs.
    fn drive<R: RngCore + CryptoRng>(
        &mut self,
        env: &mut Env<'_, R>,
        out: &mut Vec<ClientAction>,
    ) -> PunchResult {
        let mut analysis_ready = false;
        while let Some(output) = self.puncher.poll_output() {
            match output {
                PuncherOutput::Probe { socket, to, ttl } => {
                    out.push(ClientAction::Probe { socket, to, ttl })
                }
                PuncherOutput::NatPing { socket, to } => {
                    let mut spec = RequestSpec::new(to, PING);
                    spec.internal = true;
                    spec.retries = Some(0);
                    spec.timeout = Some(NAT_PING_TIMEOUT);
                    spec.socket = Some(socket_kind(socket));
                    out.push(ClientAction::Request {
                        spec,
                        tag: ClientRequest::NatPing { socket },
                    });
                }
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
                PuncherOutput::AnalysisReady => analysis_ready = true,
                PuncherOutput::Connected { socket, addr } => {
                    return Err(PunchEnd::Connected { socket, addr })
                }
                PuncherOutput::Failed(e) => {
                    tracing::debug!(error = %e, "holepunch: the puncher gave up (no probe came back)");
                    return Err(PunchEnd::Failed(ConnectError::HolepunchAborted));
                }
            }
        }
        if analysis_ready {
            self.continue_probe(env, out)?;
        }
        Ok(())
    }
}
