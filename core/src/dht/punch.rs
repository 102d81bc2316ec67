//! Holepunching on the node: the client's probe and punch rounds (hyperdht `connect.js`
//! `holepunch`/`probeRound`/`roundPunch`), the server's PEER_HOLEPUNCH handler
//! (`server.js` `_onpeerholepunch`), and the plumbing between [`Puncher`]s and the node —
//! pool sockets, NAT-sampling pings, probes, and the node-wide random-punch throttle.
//!
//! The reference writes these as `async` functions; here each `await` is a step of a small
//! state machine ([`ClientStep`], the server's pending requests) resumed by the event it
//! waited for: a PEER_HOLEPUNCH reply, the puncher's "analysis ready", or a timer.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::SocketAddrV4;
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};

use super::connect::{socket_kind, udx_socket, ConnId};
use super::messages::{command, mode, HolepunchEnvelope};
use super::node::DhtNode;
use crate::connect::nat::firewall_from_wire_lenient;
use crate::connect::puncher::{
    abort_payload, pick_server_relay, Analysis, ProbeVerdict, RemoteUpdate, ReplyStatus,
    MAX_SAMPLE_NODES, PREPUNCH_TIMEOUT, PROBE, UNKNOWN_REMOTE_WAIT,
};
use crate::connect::{
    ConnectError, ErrorCode, Firewall, HolepunchInfo, HolepunchPayload, Puncher, PuncherConfig,
    PuncherOutput, RelayInfo, SecurePayload,
};
use crate::rpc::{
    IncomingRequest, NodeId, QueryReply, RequestError, RequestId, RequestSpec, SocketKind, PING,
};
use crate::udx;
use crate::Instant;

/// A NAT-sampling ping waits this long, once.
const NAT_PING_TIMEOUT: Duration = Duration::from_secs(1);
/// PEER_HOLEPUNCH requests a server holds while its NAT analysis settles.
const MAX_PENDING_HOLEPUNCHES: usize = 4;

/// What a request sent by the punch layer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PunchRequest {
    /// A client's PEER_HOLEPUNCH.
    Client(ConnId),
    /// A NAT-sampling ping of a client's puncher.
    ClientPing { conn: ConnId, socket: udx::SocketId },
    /// A NAT-sampling ping of a server handshake's puncher (by holepunch id).
    ServerPing { id: u64, socket: udx::SocketId },
    /// A message whose answer nobody needs (the client's abort notice).
    Ignored,
}

/// Who runs a puncher: a client attempt, or a server handshake (by its key).
enum PunchOwner {
    Client(ConnId),
    Server(Vec<u8>),
}

/// Where the client's holepunch is (each variant is an `await` of the reference).
#[derive(Debug)]
pub(crate) enum ClientStep {
    /// A probe round's PEER_HOLEPUNCH is in flight.
    Probe {
        retry: bool,
        request: RequestId,
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
        request: RequestId,
        to: SocketAddrV4,
        sent: HolepunchPayload,
        hold: bool,
    },
    /// The strategy runs; the first probe that arrives connects.
    Punching,
}

/// A client's holepunch.
#[derive(Debug)]
pub(crate) struct ClientPunch {
    puncher: Puncher,
    secure: SecurePayload,
    holepunch_id: u64,
    server_relay: RelayInfo,
    /// The node our handshake went through.
    client_relay: SocketAddrV4,
    /// The server's address as the handshake relay saw it (its puncher socket).
    server_address: SocketAddrV4,
    fast_open: bool,
    round: u64,
    pub(super) remote_udx: u32,
    step: ClientStep,
}

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

/// A server handshake's holepunch.
#[derive(Debug)]
pub(crate) struct ServerPunch {
    pub(super) puncher: Puncher,
    secure: SecurePayload,
    round: u64,
    pub(super) conn: ConnId,
    pending: Vec<PendingHolepunch>,
    /// Without a punch starting by then, give up (`HANDSHAKE_INITIAL_TIMEOUT`).
    prepunch: Option<Instant>,
}

/// A private address a LAN peer may be reachable on (`bogon.isPrivate`).
fn is_private(ip: &core::net::Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
}

/// `Holepuncher.matchAddress`: the remote address sharing the most leading octets (at least
/// one) with one of ours.
pub(super) fn match_address(
    ours: &[SocketAddrV4],
    theirs: &[SocketAddrV4],
) -> Option<SocketAddrV4> {
    let mut best: Option<(usize, SocketAddrV4)> = None;
    for l in ours {
        for r in theirs {
            let shared = l
                .ip()
                .octets()
                .iter()
                .zip(r.ip().octets().iter())
                .take_while(|(a, b)| a == b)
                .count()
                .min(3);
            if shared == 3 {
                return Some(*r);
            }
            if shared >= 1 && best.is_none_or(|(s, _)| shared > s) {
                best = Some((shared, *r));
            }
        }
    }
    best.map(|(_, a)| a)
}

impl<R: RngCore + CryptoRng> DhtNode<R> {
    // ------------------------------------------------------------------ shared plumbing

    fn new_puncher(&mut self, initiator: bool, remote_firewall: u64) -> Option<Puncher> {
        let id = self.pool.open()?;
        let samples: Vec<SocketAddrV4> = self
            .rpc
            .table()
            .latest_first()
            .take(MAX_SAMPLE_NODES)
            .map(|e| e.addr)
            .collect();
        let config = PuncherConfig {
            initiator,
            dht_firewalled: self.rpc.is_firewalled(),
            remote_firewall: firewall_from_wire_lenient(remote_firewall),
        };
        Some(Puncher::new(
            config,
            udx_socket(SocketKind::Pool(id)),
            &samples,
            self.rpc.rng(),
        ))
    }

    fn send_probe(&mut self, socket: udx::SocketId, to: SocketAddrV4, ttl: u8) {
        self.rpc
            .send_datagram(socket_kind(socket), to, PROBE.to_vec(), Some(ttl));
    }

    fn nat_ping(
        &mut self,
        now: Instant,
        socket: udx::SocketId,
        to: SocketAddrV4,
        owner: PunchRequest,
    ) {
        let mut spec = RequestSpec::new(to, PING);
        spec.internal = true;
        spec.retries = Some(0);
        spec.timeout = Some(NAT_PING_TIMEOUT);
        spec.socket = Some(socket_kind(socket));
        let rid = self.rpc.request(now, spec);
        self.connect.punch_requests.insert(rid, owner);
    }

    fn open_pool_sockets(&mut self, count: usize) -> Vec<udx::SocketId> {
        let mut out = Vec::new();
        for _ in 0..count {
            match self.pool.open() {
                Some(id) => out.push(udx_socket(SocketKind::Pool(id))),
                None => break,
            }
        }
        out
    }

    fn release_puncher_socket(&mut self, socket: udx::SocketId) {
        if let SocketKind::Pool(id) = socket_kind(socket) {
            self.pool.release_puncher(id);
        }
    }

    /// Destroys a puncher that is being dropped and applies its last outputs (socket releases,
    /// the end of a random punch).
    pub(super) fn retire_puncher(&mut self, now: Instant, mut puncher: Puncher) {
        let kept = puncher.connected().map(|(s, _)| s);
        puncher.destroy();
        while let Some(out) = puncher.poll_output() {
            match out {
                PuncherOutput::ReleaseSocket(s) => self.release_puncher_socket(s),
                PuncherOutput::RandomPunchBegin | PuncherOutput::RandomPunchEnd => {
                    self.connect.random_punches.apply(now, &out)
                }
                _ => {}
            }
        }
        // The connected socket now belongs to the stream (held before this).
        if let Some(s) = kept {
            self.release_puncher_socket(s);
        }
    }

    /// A request of the punch layer finished.
    pub(crate) fn on_punch_response(
        &mut self,
        now: Instant,
        rid: RequestId,
        owner: PunchRequest,
        result: Result<QueryReply, RequestError>,
    ) {
        match owner {
            PunchRequest::Client(conn) => self.on_client_holepunch_reply(now, conn, rid, result),
            PunchRequest::ClientPing { conn, socket } => {
                let Some(p) = self.client_punch_mut(conn) else {
                    return;
                };
                match result {
                    Ok(r) => p.puncher.handle_ping_reply(now, socket, r.to, r.from),
                    Err(_) => p.puncher.handle_ping_timeout(now, socket),
                }
                self.drive_client_puncher(now, conn);
            }
            PunchRequest::ServerPing { id, socket } => {
                let Some(key) = self.connect.holepunch_ids.get(&id).cloned() else {
                    return;
                };
                let Some(sp) = self.server_punch_mut(&key) else {
                    return;
                };
                match result {
                    Ok(r) => sp.puncher.handle_ping_reply(now, socket, r.to, r.from),
                    Err(_) => sp.puncher.handle_ping_timeout(now, socket),
                }
                self.drive_server_puncher(now, &key);
            }
            PunchRequest::Ignored => {}
        }
    }

    /// The punch whose puncher holds `socket`.
    fn punch_owner(&self, socket: udx::SocketId) -> Option<PunchOwner> {
        let owns = |p: &Puncher| p.owns_socket(socket);
        if let Some((conn, _)) = self
            .connect
            .attempts
            .iter()
            .find(|(_, a)| a.punch.as_ref().is_some_and(|p| owns(&p.puncher)))
        {
            return Some(PunchOwner::Client(*conn));
        }
        let (key, _) = self
            .connect
            .handshakes
            .iter()
            .find(|(_, h)| h.punch.as_ref().is_some_and(|p| owns(&p.puncher)))?;
        Some(PunchOwner::Server(key.clone()))
    }

    /// A 1-byte probe arrived on pool socket `id`.
    pub(crate) fn handle_probe(&mut self, now: Instant, id: u32, from: SocketAddrV4) {
        let socket = udx_socket(SocketKind::Pool(id));
        match self.punch_owner(socket) {
            Some(PunchOwner::Client(conn)) => {
                if let Some(p) = self.client_punch_mut(conn) {
                    p.puncher.handle_probe(now, socket, from);
                }
                self.drive_client_puncher(now, conn);
            }
            Some(PunchOwner::Server(key)) => {
                if let Some(sp) = self.server_punch_mut(&key) {
                    sp.puncher.handle_probe(now, socket, from);
                }
                self.drive_server_puncher(now, &key);
            }
            None => {}
        }
    }

    /// Pool socket `id` is gone (bind failed): whoever used it gives up.
    pub(crate) fn on_pool_socket_failed(&mut self, now: Instant, id: u32) {
        let socket = udx_socket(SocketKind::Pool(id));
        match self.punch_owner(socket) {
            Some(PunchOwner::Client(conn)) => {
                return self.fail_attempt(conn, ConnectError::HolepunchAborted)
            }
            Some(PunchOwner::Server(key)) => return self.end_server_punch(now, &key, true),
            None => {}
        }
        let conns: Vec<ConnId> = self
            .connect
            .conns
            .iter()
            .filter(|(_, c)| {
                self.connect.udx.get(c.stream_id).and_then(|s| s.socket()) == Some(socket)
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            self.conn_destroy(conn);
        }
    }

    /// Puncher timers, the client's sleeps and the servers' prepunch windows.
    pub(crate) fn punch_timeout(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        let clients: Vec<ConnId> = self
            .connect
            .attempts
            .iter()
            .filter(|(_, a)| {
                a.punch.as_ref().is_some_and(|p| {
                    due(p.puncher.poll_timeout())
                        || matches!(p.step, ClientStep::ProbeSleep { until, .. } if until <= now)
                })
            })
            .map(|(c, _)| *c)
            .collect();
        for conn in clients {
            let Some(p) = self.client_punch_mut(conn) else {
                continue;
            };
            if p.puncher.poll_timeout().is_some_and(|t| t <= now) {
                p.puncher.handle_timeout(now);
            }
            if let ClientStep::ProbeSleep {
                retry,
                until,
                token,
                peer_address,
            } = p.step
            {
                if until <= now {
                    p.step = ClientStep::ProbeAnalyze {
                        retry,
                        reopen: false,
                        token,
                        peer_address,
                    };
                    self.drive_client_puncher(now, conn);
                    self.client_continue_probe(now, conn);
                    continue;
                }
            }
            self.drive_client_puncher(now, conn);
        }
        let servers: Vec<Vec<u8>> = self
            .connect
            .handshakes
            .iter()
            .filter(|(_, h)| {
                h.punch
                    .as_ref()
                    .is_some_and(|p| due(p.prepunch) || due(p.puncher.poll_timeout()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in servers {
            let Some(sp) = self.server_punch_mut(&key) else {
                continue;
            };
            if sp.prepunch.is_some_and(|t| t <= now) {
                sp.prepunch = None;
                self.end_server_punch(now, &key, true);
                continue;
            }
            if sp.puncher.poll_timeout().is_some_and(|t| t <= now) {
                sp.puncher.handle_timeout(now);
            }
            self.drive_server_puncher(now, &key);
        }
    }

    /// The earliest punch timer.
    pub(crate) fn punch_poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for a in self.connect.attempts.values() {
            if let Some(p) = &a.punch {
                min(p.puncher.poll_timeout());
                if let ClientStep::ProbeSleep { until, .. } = p.step {
                    min(Some(until));
                }
            }
        }
        for h in self.connect.handshakes.values() {
            if let Some(sp) = &h.punch {
                min(sp.puncher.poll_timeout());
                min(sp.prepunch);
            }
        }
        t
    }

    // ------------------------------------------------------------------ client

    fn client_punch_mut(&mut self, conn: ConnId) -> Option<&mut ClientPunch> {
        self.connect.attempts.get_mut(&conn)?.punch.as_deref_mut()
    }

    /// Starts holepunching after the handshake (`holepunch()` from `new Holepuncher` on).
    #[allow(clippy::too_many_arguments)] // the handshake's outcome; becomes a type with the connect-path restructure
    pub(super) fn start_client_punch(
        &mut self,
        now: Instant,
        conn: ConnId,
        server_firewall: u64,
        holepunch: &HolepunchInfo,
        client_relay: SocketAddrV4,
        server_address: SocketAddrV4,
        remote_udx: u32,
        holepunch_secret: [u8; 32],
    ) {
        let Some(server_relay) = pick_server_relay(&holepunch.relays, client_relay).cloned() else {
            return self.fail_attempt(conn, ConnectError::CannotHolepunch);
        };
        let Some(puncher) = self.new_puncher(true, server_firewall) else {
            return self.fail_attempt(conn, ConnectError::HolepunchAborted);
        };
        let secure = SecurePayload::new(holepunch_secret, self.rpc.rng());
        let Some(a) = self.connect.attempts.get_mut(&conn) else {
            return self.retire_puncher(now, puncher);
        };
        let fast_open = a.fast_open;
        a.punch = Some(Box::new(ClientPunch {
            puncher,
            secure,
            holepunch_id: holepunch.id,
            server_relay,
            client_relay,
            server_address,
            fast_open,
            round: 0,
            remote_udx,
            step: ClientStep::Punching,
        }));
        self.drive_client_puncher(now, conn);
        self.client_probe_round(now, conn, true);
    }

    /// Sends a PEER_HOLEPUNCH from the puncher's socket through `relay` to `peer_address`.
    fn send_client_holepunch(
        &mut self,
        now: Instant,
        conn: ConnId,
        payload: &HolepunchPayload,
        peer_address: SocketAddrV4,
        relay: SocketAddrV4,
    ) -> Option<RequestId> {
        let a = self.connect.attempts.get_mut(&conn)?;
        let target = a.target;
        let p = a.punch.as_deref_mut()?;
        let socket = p.puncher.socket()?;
        let sealed = p.secure.encrypt(payload, self.rpc.rng());
        let env = HolepunchEnvelope {
            mode: mode::FROM_CLIENT,
            id: p.holepunch_id,
            payload: sealed,
            peer_address: Some(peer_address),
        };
        let mut spec = RequestSpec::new(relay, command::PEER_HOLEPUNCH);
        spec.target = Some(NodeId(target));
        spec.value = Some(env.to_bytes());
        spec.socket = Some(socket_kind(socket));
        let rid = self.rpc.request(now, spec);
        self.connect
            .punch_requests
            .insert(rid, PunchRequest::Client(conn));
        Some(rid)
    }

    /// `probeRound`: tell the server our NAT state and learn its.
    fn client_probe_round(&mut self, now: Instant, conn: ConnId, retry: bool) {
        let Some(p) = self.client_punch_mut(conn) else {
            return;
        };
        // A low-TTL probe toward the server opens our mapping for its fast-mode probe.
        let fast_open = p.fast_open.then_some(p.server_address);
        if let Some(addr) = fast_open {
            p.puncher.open_session(addr);
        }
        let sent = p.puncher.probe_round_payload(p.round, fast_open);
        p.round += 1;
        let (peer, relay) = (p.server_relay.peer_address, p.server_relay.relay_address);
        self.drive_client_puncher(now, conn);
        match self.send_client_holepunch(now, conn, &sent, peer, relay) {
            Some(request) => {
                if let Some(p) = self.client_punch_mut(conn) {
                    p.step = ClientStep::Probe {
                        retry,
                        request,
                        to: relay,
                        sent,
                    };
                }
            }
            None => self.fail_attempt(conn, ConnectError::HolepunchAborted),
        }
    }

    fn on_client_holepunch_reply(
        &mut self,
        now: Instant,
        conn: ConnId,
        rid: RequestId,
        result: Result<QueryReply, RequestError>,
    ) {
        let Some(p) = self.client_punch_mut(conn) else {
            return;
        };
        let (probe, retry, to, sent, hold) = match &p.step {
            ClientStep::Probe {
                retry,
                request,
                to,
                sent,
            } if *request == rid => (true, *retry, *to, sent.clone(), false),
            ClientStep::Punch {
                request,
                to,
                sent,
                hold,
            } if *request == rid => (false, false, *to, sent.clone(), *hold),
            _ => return,
        };
        if hold {
            // `_randomPunches--` after the punch request: the puncher counts its own punch.
            self.connect.random_punches.release();
        }
        let reply = match result {
            Ok(r) => r,
            Err(RequestError::Timeout) => {
                return self.fail_attempt(conn, ConnectError::RequestTimeout)
            }
            Err(_) => return self.fail_attempt(conn, ConnectError::HolepunchAborted),
        };
        let env = reply
            .value
            .as_deref()
            .and_then(|v| HolepunchEnvelope::decode(v).ok());
        let Some(env) = env.filter(|e| e.mode == mode::REPLY && reply.from == to) else {
            return self.fail_attempt(conn, ConnectError::BadHolepunchReply);
        };
        let peer_address = env.peer_address.unwrap_or(to);
        let Some(p) = self.client_punch_mut(conn) else {
            return;
        };
        let Ok(payload) = p.secure.decrypt(&env.payload) else {
            return self.fail_attempt(conn, ConnectError::HolepunchInvalid);
        };
        // No relay token (blind relays are not supported), so TRY_LATER is an abort.
        match p.puncher.handle_reply(&payload, &sent, peer_address, false) {
            Ok(ReplyStatus::Ok) => {}
            Ok(ReplyStatus::TryLater) => {
                return self.fail_attempt(conn, ConnectError::HolepunchAborted)
            }
            Err(e) => return self.fail_attempt(conn, e),
        }
        if probe {
            p.puncher.add_sample(reply.to, reply.from);
            // (The reference then opens a session to `payload.address`, a field the payload
            // does not have: that branch never runs.)
            let token = payload.token;
            if p.puncher.remote_firewall() == Firewall::Unknown {
                p.step = ClientStep::ProbeSleep {
                    retry,
                    until: now + UNKNOWN_REMOTE_WAIT,
                    token,
                    peer_address,
                };
                return self.drive_client_puncher(now, conn);
            }
            p.step = ClientStep::ProbeAnalyze {
                retry,
                reopen: false,
                token,
                peer_address,
            };
            self.drive_client_puncher(now, conn);
            return self.client_continue_probe(now, conn);
        }
        if !p.puncher.remote_holepunching() {
            return self.fail_attempt(conn, ConnectError::RemoteNotHolepunching);
        }
        if p.puncher.punch(now).is_err() {
            return self.fail_attempt(conn, ConnectError::RemoteNotHolepunchable);
        }
        p.step = ClientStep::Punching;
        self.drive_client_puncher(now, conn);
    }

    /// The rest of `probeRound` once the analysis can be read.
    fn client_continue_probe(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(p) = self.client_punch_mut(conn) else {
                return;
            };
            let ClientStep::ProbeAnalyze {
                retry,
                reopen,
                token,
                peer_address,
            } = p.step
            else {
                return;
            };
            let analysis = p.puncher.analyze(reopen);
            self.drive_client_puncher(now, conn);
            let Some(p) = self.client_punch_mut(conn) else {
                return;
            };
            match analysis {
                Analysis::Pending => return,
                Analysis::Stable if reopen => return self.client_probe_round(now, conn, false),
                Analysis::Stable => {}
                Analysis::Unstable if !reopen => {
                    // Try to make it stable with a fresh socket (mobile networks).
                    p.step = ClientStep::ProbeAnalyze {
                        retry,
                        reopen: true,
                        token,
                        peer_address,
                    };
                    continue;
                }
                Analysis::Unstable => {}
            }
            return match p.puncher.probe_round_verdict(retry, token.is_some()) {
                ProbeVerdict::Retry => self.client_probe_round(now, conn, false),
                ProbeVerdict::Abort(e) => self.client_abort(now, conn, e),
                ProbeVerdict::Proceed => self.client_punch_round(now, conn, token, peer_address),
            };
        }
    }

    /// `roundPunch`: ask the server to punch, then punch.
    fn client_punch_round(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote_token: Option<[u8; 32]>,
        peer_address: SocketAddrV4,
    ) {
        let Some(p) = self.client_punch_mut(conn) else {
            return;
        };
        // The server rerolled its socket: use the address it reported (same relay only).
        if p.server_relay.relay_address == p.client_relay && p.server_address != peer_address {
            p.server_address = peer_address;
            p.puncher.open_session(peer_address);
        }
        // We now tell the peer our final NAT state: stop reclassifying.
        p.puncher.freeze();
        let random = p.puncher.is_random_punch();
        if random && self.connect.random_punches.is_throttled(now) {
            // Only a blind relay could help, and we have none.
            return self.fail_attempt(conn, ConnectError::HolepunchAborted);
        }
        if random {
            self.connect.random_punches.begin();
        }
        let Some(p) = self.client_punch_mut(conn) else {
            return;
        };
        let server_address = p.server_address;
        let token = p.secure.token(&server_address);
        let sent = p
            .puncher
            .punch_round_payload(p.round, Some(token), remote_token);
        p.round += 1;
        let relay = p.client_relay;
        self.drive_client_puncher(now, conn);
        match self.send_client_holepunch(now, conn, &sent, server_address, relay) {
            Some(request) => {
                if let Some(p) = self.client_punch_mut(conn) {
                    p.step = ClientStep::Punch {
                        request,
                        to: relay,
                        sent,
                        hold: random,
                    };
                }
            }
            None => {
                if random {
                    self.connect.random_punches.release();
                }
                self.fail_attempt(conn, ConnectError::HolepunchAborted)
            }
        }
    }

    /// `abort()`: tell the server (through its relay) and fail with `error`. The notice is
    /// not waited for.
    fn client_abort(&mut self, now: Instant, conn: ConnId, error: ConnectError) {
        if let Some(p) = self.client_punch_mut(conn) {
            let payload = abort_payload(ErrorCode::ABORTED, p.round);
            p.round += 1;
            let (peer, relay) = (p.server_relay.peer_address, p.server_relay.relay_address);
            if let Some(rid) = self.send_client_holepunch(now, conn, &payload, peer, relay) {
                self.connect
                    .punch_requests
                    .insert(rid, PunchRequest::Ignored);
            }
        }
        self.fail_attempt(conn, error);
    }

    /// Applies a client puncher's outputs.
    pub(super) fn drive_client_puncher(&mut self, now: Instant, conn: ConnId) {
        let mut analysis_ready = false;
        loop {
            let Some(p) = self.client_punch_mut(conn) else {
                return;
            };
            let Some(out) = p.puncher.poll_output() else {
                break;
            };
            match out {
                PuncherOutput::Probe { socket, to, ttl } => self.send_probe(socket, to, ttl),
                PuncherOutput::NatPing { socket, to } => {
                    self.nat_ping(now, socket, to, PunchRequest::ClientPing { conn, socket })
                }
                PuncherOutput::OpenSockets { count } => {
                    let sockets = self.open_pool_sockets(count);
                    let Some(p) = self.client_punch_mut(conn) else {
                        return;
                    };
                    p.puncher.add_sockets(now, &sockets);
                    if sockets.len() < count {
                        p.puncher.sockets_unavailable(now);
                    }
                }
                PuncherOutput::ReleaseSocket(s) => self.release_puncher_socket(s),
                PuncherOutput::RandomPunchBegin | PuncherOutput::RandomPunchEnd => {
                    self.connect.random_punches.apply(now, &out)
                }
                PuncherOutput::AnalysisReady => analysis_ready = true,
                PuncherOutput::Connected { socket, addr } => {
                    return self.client_punched(now, conn, socket, addr)
                }
                PuncherOutput::Failed(_) => {
                    return self.fail_attempt(conn, ConnectError::HolepunchAborted)
                }
            }
        }
        if analysis_ready {
            self.client_continue_probe(now, conn);
        }
    }

    /// The first probe arrived: connect the stream over that socket (`onsocket`).
    fn client_punched(
        &mut self,
        now: Instant,
        conn: ConnId,
        socket: udx::SocketId,
        addr: SocketAddrV4,
    ) {
        let Some(p) = self
            .connect
            .attempts
            .get_mut(&conn)
            .and_then(|a| a.punch.take())
        else {
            return;
        };
        if let SocketKind::Pool(id) = socket_kind(socket) {
            self.pool.hold_stream(id);
        }
        let remote_udx = p.remote_udx;
        self.retire_puncher(now, p.puncher);
        self.client_connect_stream(now, conn, socket, remote_udx, addr);
    }

    /// Drops a client's punch (the LAN path won, or the attempt ended).
    pub(super) fn drop_client_punch(&mut self, now: Instant, conn: ConnId) {
        if let Some(p) = self
            .connect
            .attempts
            .get_mut(&conn)
            .and_then(|a| a.punch.take())
        {
            self.retire_puncher(now, p.puncher);
        }
        self.connect.punch_requests.retain(|_, o| !matches!(o, PunchRequest::Client(c) | PunchRequest::ClientPing { conn: c, .. } if *c == conn));
    }

    /// Whether an attempt still has a punch running (a failed LAN ping then is not fatal).
    pub(super) fn attempt_is_punching(&self, conn: ConnId) -> bool {
        self.connect
            .attempts
            .get(&conn)
            .is_some_and(|a| a.punch.is_some())
    }

    // ------------------------------------------------------------------ server

    fn server_punch_mut(&mut self, key: &[u8]) -> Option<&mut ServerPunch> {
        self.connect.handshakes.get_mut(key)?.punch.as_deref_mut()
    }

    /// The smallest free holepunch id (the reference reuses slots of its `_holepunches` array).
    pub(super) fn alloc_holepunch_id(&mut self, key: &[u8]) -> u64 {
        let mut id = 0;
        while self.connect.holepunch_ids.contains_key(&id) {
            id += 1;
        }
        self.connect.holepunch_ids.insert(id, key.to_vec());
        id
    }

    /// Whether the server should prepunch on the LAN: the client shares our public host and
    /// advertised a private address matching one of ours.
    pub(super) fn server_lan_match(
        &self,
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
        !private.is_empty() && match_address(&self.connect.local_addresses, &private).is_some()
    }

    /// A puncher for a server handshake (`setupHolepuncher`); `None` when no socket is left.
    pub(super) fn new_server_puncher(&mut self, client_firewall: u64) -> Option<Puncher> {
        self.new_puncher(false, client_firewall)
    }

    /// Records a server handshake's punch and starts its NAT sampling.
    pub(super) fn attach_server_punch(
        &mut self,
        now: Instant,
        key: &[u8],
        puncher: Puncher,
        holepunch_secret: [u8; 32],
        conn: ConnId,
    ) {
        let secure = SecurePayload::new(holepunch_secret, self.rpc.rng());
        let punch = ServerPunch {
            puncher,
            secure,
            round: 0,
            conn,
            pending: Vec::new(),
            prepunch: Some(now + PREPUNCH_TIMEOUT),
        };
        match self.connect.handshakes.get_mut(key) {
            Some(h) => h.punch = Some(Box::new(punch)),
            None => return self.retire_puncher(now, punch.puncher),
        }
        self.drive_server_puncher(now, key);
    }

    /// A PEER_HOLEPUNCH for a server on this node (`_onpeerholepunch`).
    pub(crate) fn on_server_holepunch(
        &mut self,
        now: Instant,
        req: &IncomingRequest,
        hp: HolepunchEnvelope,
    ) {
        let Some(key) = self.connect.holepunch_ids.get(&hp.id).cloned() else {
            return;
        };
        let Some(peer_address) = hp.peer_address else {
            return;
        };
        let Some(h) = self.connect.handshakes.get(&key) else {
            return;
        };
        let server = h.server;
        if self.connect.servers.get(&server).is_none_or(|s| s.closing) {
            return;
        }
        let is_server_relay = self.is_server_relay(server, &req.from);
        let Some(sp) = self.server_punch_mut(&key) else {
            return;
        };
        if sp.puncher.is_destroyed() {
            return;
        }
        let Ok(payload) = sp.secure.decrypt(&hp.payload) else {
            return;
        };
        if sp.puncher.socket().is_none() {
            return self.server_abort(now, &key, req, peer_address, ErrorCode::ABORTED);
        }
        if payload.error != ErrorCode::NONE {
            sp.round = sp.round.max(payload.round);
            return self.server_abort(now, &key, req, peer_address, ErrorCode::ABORTED);
        }
        let token = sp.secure.token(&peer_address);
        let echoed = is_server_relay && payload.remote_token == Some(token);
        if Some(udx_socket(req.socket)) == sp.puncher.socket() {
            sp.puncher.add_sample(req.to, req.from);
        }
        if payload.round >= sp.round {
            sp.round = payload.round;
            sp.puncher.update_remote(RemoteUpdate {
                punching: payload.punching,
                firewall: firewall_from_wire_lenient(payload.firewall),
                addresses: payload.addresses.as_deref(),
                verified: echoed.then(|| *peer_address.ip()),
            });
        }
        if sp.pending.len() >= MAX_PENDING_HOLEPUNCHES {
            sp.pending.remove(0);
        }
        sp.pending.push(PendingHolepunch {
            req: req.clone(),
            peer_address,
            remote_address: payload.remote_address,
            client_token: payload.token,
            token,
            is_server_relay,
            reopen: false,
        });
        self.drive_server_puncher(now, &key);
        self.server_continue(now, &key);
    }

    /// Answers the pending PEER_HOLEPUNCH requests whose analysis is ready.
    fn server_continue(&mut self, now: Instant, key: &[u8]) {
        loop {
            let Some(sp) = self.server_punch_mut(key) else {
                return;
            };
            if sp.puncher.is_destroyed() {
                sp.pending.clear();
                return;
            }
            let Some(first) = sp.pending.first() else {
                return;
            };
            let reopen = first.reopen;
            let analysis = sp.puncher.analyze(reopen);
            let remote_punching = sp.puncher.remote_holepunching();
            match analysis {
                Analysis::Pending => {
                    // Sampling goes on; "analysis ready" brings us back (or already did).
                    if self.apply_server_puncher_outputs(now, key) {
                        continue;
                    }
                    return;
                }
                Analysis::Unstable if !remote_punching && !reopen => {
                    sp.pending[0].reopen = true;
                    self.apply_server_puncher_outputs(now, key);
                    continue;
                }
                Analysis::Unstable if !remote_punching => {
                    let p = sp.pending.remove(0);
                    return self.server_abort(now, key, &p.req, p.peer_address, ErrorCode::ABORTED);
                }
                _ => {}
            }
            let p = sp.pending.remove(0);
            self.server_answer(now, key, p);
        }
    }

    fn server_answer(&mut self, now: Instant, key: &[u8], p: PendingHolepunch) {
        let Some(sp) = self.server_punch_mut(key) else {
            return;
        };
        // Fast mode: the client opened a session to our address; probe it back right away.
        if sp.puncher.fast_mode(p.remote_address) {
            sp.puncher.ping(p.peer_address);
        }
        if sp.puncher.remote_holepunching() {
            sp.prepunch = None;
            let conn = sp.conn;
            // The throttle is for new random punches: a resent request of a punch that already
            // runs here (its reply was lost) gets the same answer again, not TRY_LATER (the
            // reference would refuse its own punch).
            if sp.puncher.is_random_punch()
                && !sp.puncher.is_punching()
                && self.connect.random_punches.is_throttled(now)
            {
                // Without a blind relay the client cannot wait its turn.
                return self.server_abort(now, key, &p.req, p.peer_address, ErrorCode::TRY_LATER);
            }
            if let Some(c) = self.connect.conns.get_mut(&conn) {
                // Punching may take longer than the first-packet wait.
                c.connect_deadline = None;
            }
            let Some(sp) = self.server_punch_mut(key) else {
                return;
            };
            if sp.puncher.punch(now).is_err() {
                return self.server_abort(now, key, &p.req, p.peer_address, ErrorCode::ABORTED);
            }
        }
        let Some(sp) = self
            .connect
            .handshakes
            .get_mut(key)
            .and_then(|h| h.punch.as_deref_mut())
        else {
            return;
        };
        // Freeze the analysis once we tell the peer a result.
        if sp.puncher.firewall() != Firewall::Unknown {
            sp.puncher.freeze();
        }
        let reply = sp.puncher.server_reply_payload(
            ErrorCode::NONE,
            sp.round,
            p.is_server_relay.then_some(p.token),
            p.client_token,
        );
        let sealed = sp.secure.encrypt(&reply, self.rpc.rng());
        let socket = sp.puncher.socket().map(socket_kind);
        let env = HolepunchEnvelope {
            mode: mode::FROM_SERVER,
            id: 0,
            payload: sealed,
            peer_address: Some(p.peer_address),
        };
        self.rpc
            .relay(&p.req, Some(env.to_bytes()), p.req.from, socket);
        self.apply_server_puncher_outputs(now, key);
    }

    /// `_abort(h, error)`: an abort notice from the node's primary socket, and the punch ends
    /// (its pending connection with it).
    fn server_abort(
        &mut self,
        now: Instant,
        key: &[u8],
        req: &IncomingRequest,
        peer_address: SocketAddrV4,
        error: u64,
    ) {
        let Some(sp) = self
            .connect
            .handshakes
            .get_mut(key)
            .and_then(|h| h.punch.as_deref_mut())
        else {
            return;
        };
        let sealed = sp
            .secure
            .encrypt(&abort_payload(error, sp.round), self.rpc.rng());
        let env = HolepunchEnvelope {
            mode: mode::FROM_SERVER,
            id: 0,
            payload: sealed,
            peer_address: Some(peer_address),
        };
        let socket = self.rpc.primary_socket();
        self.rpc
            .relay(req, Some(env.to_bytes()), req.from, Some(socket));
        self.end_server_punch(now, key, true);
    }

    /// Ends a server punch; `abort` also drops its connection if the client never arrived.
    pub(super) fn end_server_punch(&mut self, now: Instant, key: &[u8], abort: bool) {
        let Some(h) = self.connect.handshakes.get_mut(key) else {
            return;
        };
        let Some(sp) = h.punch.take() else { return };
        h.done_at = Some(now);
        let conn = sp.conn;
        self.retire_puncher(now, sp.puncher);
        if abort && self.connect.pending_remote.contains_key(&conn) {
            self.connect.pending_remote.remove(&conn);
            self.conn_forget(conn);
        }
    }

    /// The server connection `conn` got its first packet: its punch is over.
    pub(super) fn server_conn_attached(&mut self, now: Instant, conn: ConnId) {
        let key = self
            .connect
            .handshakes
            .iter()
            .find(|(_, h)| h.punch.as_ref().is_some_and(|p| p.conn == conn))
            .map(|(k, _)| k.clone());
        if let Some(key) = key {
            self.end_server_punch(now, &key, false);
        }
    }

    /// Applies a server puncher's outputs, then answers requests whose analysis got ready.
    fn drive_server_puncher(&mut self, now: Instant, key: &[u8]) {
        if self.apply_server_puncher_outputs(now, key) {
            self.server_continue(now, key);
        }
    }

    /// Applies a server puncher's outputs; returns whether its analysis got ready.
    fn apply_server_puncher_outputs(&mut self, now: Instant, key: &[u8]) -> bool {
        let mut ready = false;
        let id = self
            .connect
            .handshakes
            .get(key)
            .and_then(|h| h.holepunch_id);
        loop {
            let Some(sp) = self.server_punch_mut(key) else {
                return false;
            };
            let Some(out) = sp.puncher.poll_output() else {
                break;
            };
            match out {
                PuncherOutput::Probe { socket, to, ttl } => self.send_probe(socket, to, ttl),
                PuncherOutput::NatPing { socket, to } => match id {
                    Some(id) => {
                        self.nat_ping(now, socket, to, PunchRequest::ServerPing { id, socket })
                    }
                    None => {
                        if let Some(sp) = self.server_punch_mut(key) {
                            sp.puncher.handle_ping_timeout(now, socket);
                        }
                    }
                },
                PuncherOutput::OpenSockets { count } => {
                    let sockets = self.open_pool_sockets(count);
                    let Some(sp) = self.server_punch_mut(key) else {
                        return false;
                    };
                    sp.puncher.add_sockets(now, &sockets);
                    if sockets.len() < count {
                        sp.puncher.sockets_unavailable(now);
                    }
                }
                PuncherOutput::ReleaseSocket(s) => self.release_puncher_socket(s),
                PuncherOutput::RandomPunchBegin | PuncherOutput::RandomPunchEnd => {
                    self.connect.random_punches.apply(now, &out)
                }
                PuncherOutput::AnalysisReady => ready = true,
                // Only the client's puncher connects.
                PuncherOutput::Connected { .. } => {}
                PuncherOutput::Failed(_) => {
                    self.end_server_punch(now, key, true);
                    return false;
                }
            }
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn a(s: [u8; 4]) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(s), 1)
    }

    #[test]
    fn match_address_prefers_the_longest_prefix() {
        let ours = [a([192, 168, 122, 238])];
        assert_eq!(
            match_address(&ours, &[a([192, 168, 0, 23]), a([192, 168, 122, 1])]),
            Some(a([192, 168, 122, 1]))
        );
        assert_eq!(
            match_address(&ours, &[a([192, 1, 0, 23]), a([192, 168, 0, 1])]),
            Some(a([192, 168, 0, 1]))
        );
        assert_eq!(match_address(&ours, &[a([10, 0, 0, 1])]), None);
        assert_eq!(match_address(&ours, &[]), None);
    }
}
