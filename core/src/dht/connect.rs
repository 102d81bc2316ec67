//! Connecting by public key, both ends, on top of the dht node: the client's find-peer and
//! handshake through a relay, the server's handshake handling and announcer, path selection,
//! and the connection itself — a UDX stream carrying a secret stream.
//!
//! Paths implemented: direct handshake, an OPEN server, and the LAN shortcut (the paths peers on
//! one host or LAN, or with a reachable server, take). Holepunching through NATs (puncher sockets,
//! probe rounds) is the next step; until then a connection that needs it fails with
//! [`ConnectError::CannotHolepunch`].

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};

use super::messages::{command, mode, Announce, HandshakeEnvelope, Peer};
use super::node::{bare_to, DhtNode, Forward};
use super::punch::{ClientPunch, PunchRequest, ServerPunch};
use super::sign;
use crate::connect::{
    ConnectError, ErrorCode, Firewall, Handshake, HandshakeResult, HolepunchInfo, NoisePayload,
    RandomPunchLimiter, RelayInfo, SecretStreamInfo, UdxInfo,
};
use crate::crypto::KeyPair;
use crate::rpc::{
    IncomingRequest, NodeId, QueryId, QueryReply, QuerySpec, RequestError, RequestId, RequestSpec,
    SocketKind, PING,
};
use crate::stream::{self, SecretStream};
use crate::udx::{self, Demux, Incoming, StreamConfig, StreamEvent, UdxStream};
use crate::Instant;

/// Concurrent PEER_HANDSHAKE attempts per connect.
const MAX_HANDSHAKE_ATTEMPTS: usize = 2;
/// How long a server waits for the client's first UDX packet after replying.
const SERVER_CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long a client that said OPEN waits for the server to connect to it.
const CLIENT_OPEN_WAIT: Duration = Duration::from_secs(10);
/// A server keeps a finished handshake this long to answer duplicates identically.
const HANDSHAKE_CLEAR_WAIT: Duration = Duration::from_secs(10);
/// Relays a server announces to.
const MAX_RELAYS: usize = 3;
/// Relay keep-alive period and rounds before re-announcing.
const RELAY_PING_INTERVAL: Duration = Duration::from_secs(3);
const RELAY_PING_ROUNDS: u32 = 100;
/// Decrypted bytes held for the application before UDX reads stop (back-pressure).
const READ_BUFFER: usize = 256 * 1024;
/// Ciphertext pulled from UDX per secret-stream read.
const RAW_READ_CHUNK: usize = 64 * 1024;
/// Plaintext per secret-stream frame when writing.
const WRITE_CHUNK: usize = 64 * 1024;
/// Most handshakes a server tracks at once (a flood of distinct msg1s costs bounded memory).
pub const MAX_SERVER_HANDSHAKES: usize = 4096;
/// UDX packets a client holds while its handshake reply is still on the way.
const MAX_EARLY_PACKETS: usize = 8;
/// Most connections (pending or open) a node holds.
const MAX_CONNECTIONS: usize = 16_384;
/// A connection closes with [`ConnError::Transport`]`(`[`udx::StreamError::TimedOut`]`)` when
/// nothing at all has arrived from the peer for this long: three of hyperdht's 5 s keep-alive
/// intervals (see [`udx::StreamConfig::idle_timeout`]). A live peer is never that quiet: while
/// its side is open it writes a keep-alive frame every 5 s, and whatever its state it answers
/// our packets, including the HEARTBEATs we send after 5 s of silence. This catches a dead peer
/// where the reference never does (our side ended, nothing in flight, so no RTO can give up);
/// with our side open the reference's own mechanism — a keep-alive frame every 5 s that the
/// dead peer never acknowledges, then the UDX RTO give-up 12–13 s later — still applies.
pub const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The UDX stream settings of a connection: the defaults plus the idle timeout.
fn connection_stream_config() -> StreamConfig {
    StreamConfig {
        idle_timeout: Some(CONNECTION_IDLE_TIMEOUT),
        ..StreamConfig::default()
    }
}

/// The UDX socket ids of the node's two dht-rpc sockets.
pub(crate) const UDX_SERVER_SOCKET: udx::SocketId = udx::SocketId(0);
pub(crate) const UDX_CLIENT_SOCKET: udx::SocketId = udx::SocketId(1);

/// Pool socket `n` is UDX socket `n + POOL_SOCKET_BASE`.
const POOL_SOCKET_BASE: u32 = 2;

pub(crate) fn udx_socket(kind: SocketKind) -> udx::SocketId {
    match kind {
        SocketKind::Server => UDX_SERVER_SOCKET,
        SocketKind::Client => UDX_CLIENT_SOCKET,
        SocketKind::Pool(n) => udx::SocketId(n.wrapping_add(POOL_SOCKET_BASE)),
    }
}

pub(crate) fn socket_kind(id: udx::SocketId) -> SocketKind {
    match id.0 {
        0 => SocketKind::Server,
        1 => SocketKind::Client,
        n => SocketKind::Pool(n - POOL_SOCKET_BASE),
    }
}

/// Identifies a connection (pending or open) for the lifetime of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Identifies a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub u64);

/// Options of [`DhtNode::connect`].
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
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            key_pair: None,
            relay_addresses: Vec::new(),
            local_connection: true,
            fast_open: true,
        }
    }
}

/// Options of [`DhtNode::create_server`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Ask the owner (a [`ConnectEvent::Firewall`] event) before accepting each handshake.
    /// Without it every handshake is accepted.
    pub firewall: bool,
    /// Advertise our local addresses (the LAN shortcut; default true as the reference).
    pub hide_local_addresses: bool,
}

/// What is known about an open connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Our public key.
    pub public_key: [u8; 32],
    /// The peer's public key.
    pub remote_public_key: [u8; 32],
    /// The Noise handshake hash (the same on both sides).
    pub handshake_hash: [u8; 64],
    /// Whether we initiated (client).
    pub is_initiator: bool,
    /// Where the UDX stream is connected to.
    pub remote_address: Option<SocketAddr>,
}

/// Transport state of one connection's UDX stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportInfo {
    /// Smoothed round-trip time.
    pub srtt: Duration,
    /// Current retransmission timeout.
    pub rto: Duration,
    /// Congestion window in bytes.
    pub cwnd: u64,
    /// Pacing rate in bytes per second.
    pub pacing_rate: u64,
    /// The peer's advertised receive window in bytes.
    pub send_window: u32,
    /// Path MTU in use.
    pub mtu: u16,
    /// Packet counters.
    pub stats: udx::StreamStats,
}

/// Connection-related events of a [`DhtNode`](super::DhtNode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectEvent {
    /// A client connection is open (its secret stream is established).
    Open {
        /// The connection.
        conn: ConnId,
        /// What we know about it.
        info: ConnectionInfo,
    },
    /// A client connection failed before opening.
    Failed {
        /// The connection.
        conn: ConnId,
        /// Why.
        error: ConnectError,
    },
    /// A server accepted a connection (its secret stream opens right after).
    Incoming {
        /// The server.
        server: ServerId,
        /// The new connection.
        conn: ConnId,
        /// What we know about it.
        info: ConnectionInfo,
    },
    /// A server asks whether to accept a handshake (only with [`ServerOptions::firewall`]);
    /// answer with [`DhtNode::firewall_decision`].
    Firewall {
        /// The server.
        server: ServerId,
        /// The pending handshake (answer with this).
        handshake: u64,
        /// Who connects.
        remote_public_key: [u8; 32],
        /// The client as seen by the relay.
        client_address: SocketAddrV4,
    },
    /// A server finished its first announce.
    Listening {
        /// The server.
        server: ServerId,
    },
    /// Decrypted bytes are ready for [`DhtNode::conn_read`].
    Readable(ConnId),
    /// Room opened for [`DhtNode::conn_write`] after a short write.
    Writable(ConnId),
    /// The peer ended its side; `conn_read` returns 0 once the buffer is drained.
    End(ConnId),
    /// The connection closed (`None` = gracefully).
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why, if not gracefully.
        error: Option<ConnError>,
    },
}

/// How much state the connect layer holds (bounded under floods; see `core/tests/hostile_connect.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectStats {
    /// Server handshakes remembered (answered, pending, or punching).
    pub handshakes: usize,
    /// Of those, the ones with a holepunch running.
    pub server_punches: usize,
    /// Client connects in progress.
    pub attempts: usize,
    /// Connections (pending or open).
    pub connections: usize,
    /// Pool sockets open.
    pub pool_sockets: usize,
    /// Requests of the holepunch layer in flight.
    pub punch_requests: usize,
}

/// Why a connection closed or an I/O call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// The transport failed (timeout, reset).
    #[error("transport: {0}")]
    Transport(udx::StreamError),
    /// The secret stream failed (bad frame, decryption).
    #[error("secret stream: {0}")]
    Crypto(stream::StreamError),
    /// The connection is not open (yet, or any more).
    #[error("connection not open")]
    NotOpen,
    /// This side already ended writing.
    #[error("write after end")]
    Ended,
    /// Destroyed locally.
    #[error("destroyed")]
    Destroyed,
}

/// One connection: a UDX stream and, once connected, the secret stream on it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(super) stream_id: u32,
    pub(super) handshake: HandshakeResult,
    pub(super) server: Option<ServerId>,
    pub(super) secret: Option<SecretStream>,
    /// Decrypted, not yet read by the application.
    pub(super) plain: VecDeque<u8>,
    pub(super) opened: bool,
    pub(super) remote_ended: bool,
    /// UDX reported the peer's END; `remote_ended` follows once every byte before it has been
    /// pulled through the secret stream (the plaintext buffer may have stopped the pump).
    pub(super) udx_ended: bool,
    pub(super) local_ended: bool,
    pub(super) closed: bool,
    /// Why it closed, if not gracefully: reads (once the buffered bytes are read) and writes
    /// then fail with it, never a clean end.
    pub(super) close_error: Option<ConnError>,
    /// A pending server connection is dropped if no packet arrives by then.
    pub(super) connect_deadline: Option<Instant>,
    pub(super) want_writable: bool,
}

impl Conn {
    fn new(
        stream_id: u32,
        handshake: HandshakeResult,
        server: Option<ServerId>,
        secret: SecretStream,
        connect_deadline: Option<Instant>,
    ) -> Self {
        Conn {
            stream_id,
            handshake,
            server,
            secret: Some(secret),
            plain: VecDeque::new(),
            opened: false,
            remote_ended: false,
            udx_ended: false,
            local_ended: false,
            closed: false,
            close_error: None,
            connect_deadline,
            want_writable: false,
        }
    }
}

#[derive(Debug)]
pub(super) enum AttemptPhase {
    /// Looking for relays and handshaking through them.
    Handshaking,
    /// Holepunching ([`Attempt::punch`]), raced with the LAN shortcut's PING to the server's
    /// local address when there is one (`lan`).
    Holepunching {
        remote_udx: u32,
        lan: Option<SocketAddrV4>,
    },
    /// We are OPEN: waiting for the server to connect to us.
    WaitingForServer { until: Instant, remote_udx: u32 },
    /// The UDX stream is connected; waiting for the secret stream to open.
    Opening,
}

/// A client's connect in progress.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(super) conn: ConnId,
    pub(super) target: [u8; 32],
    pub(super) handshake: Option<Handshake>,
    pub(super) result: Option<HandshakeResult>,
    msg1: Vec<u8>,
    pub(super) stream_id: u32,
    pub(super) query: Option<QueryId>,
    pub(super) queue: VecDeque<SocketAddrV4>,
    pub(super) tried: Vec<SocketAddrV4>,
    pub(super) inflight: BTreeMap<RequestId, SocketAddrV4>,
    pub(super) found: bool,
    pub(super) phase: AttemptPhase,
    pub(super) local_connection: bool,
    pub(super) fast_open: bool,
    /// UDX packets from the server that beat its handshake reply here (it connects as soon as
    /// it answered): replayed once our stream is connected, instead of waiting for a resend.
    pub(super) early: Vec<(udx::SocketId, SocketAddr, Vec<u8>)>,
    /// The holepunch, once the handshake says one is needed.
    pub(super) punch: Option<Box<ClientPunch>>,
}

#[derive(Debug)]
pub(super) struct ServerHandshake {
    pub(super) server: ServerId,
    /// Our msg2, sent again for duplicates of the same msg1 (each answered the way it came),
    /// and the puncher socket replies leave from (`None`: the socket the request came in on).
    pub(super) reply: Option<(Option<SocketKind>, Vec<u8>)>,
    pub(super) done_at: Option<Instant>,
    pub(super) pending: Option<PendingHandshake>,
    /// The holepunch (puncher and PEER_HOLEPUNCH state) while one runs.
    pub(super) punch: Option<Box<ServerPunch>>,
    /// The id PEER_HOLEPUNCH messages name this handshake by.
    pub(super) holepunch_id: Option<u64>,
}

/// A handshake waiting for the owner's firewall decision.
#[derive(Debug)]
pub(super) struct PendingHandshake {
    pub(super) req: IncomingRequest,
    pub(super) env: HandshakeEnvelope,
    pub(super) handshake: Handshake,
    pub(super) client_payload: NoisePayload,
    pub(super) client_address: SocketAddrV4,
}

#[derive(Debug)]
pub(crate) struct Server {
    pub(super) opts: ServerOptions,
    pub(super) key_pair: Option<KeyPair>,
    pub(super) target: [u8; 32],
    pub(super) relays: Vec<RelayInfo>,
    pub(super) announce_query: Option<QueryId>,
    pub(super) announce_requests: BTreeMap<RequestId, SocketAddrV4>,
    pub(super) next_relay_round: Option<Instant>,
    pub(super) ping_rounds: u32,
    pub(super) relay_pings: BTreeMap<RequestId, ()>,
    pub(super) pings_answered: usize,
    /// Relays of the last three announce cycles, newest last (`_serverRelays`): PEER_HOLEPUNCH
    /// from any of them counts as "from a server relay", and a relay that drops out of the
    /// newest cycle is unannounced.
    pub(super) relay_generations: [Vec<SocketAddrV4>; 3],
    /// Stale relays asked for a token (FIND_PEER) before their UNANNOUNCE.
    pub(super) unannounce_requests: BTreeMap<RequestId, SocketAddrV4>,
    pub(super) listening_emitted: bool,
    pub(super) closing: bool,
}

/// Everything the connect layer keeps on a node.
#[derive(Debug, Default)]
pub(crate) struct ConnectState {
    pub(crate) udx: Demux,
    pub(super) conns: BTreeMap<ConnId, Conn>,
    pub(super) by_stream: BTreeMap<u32, ConnId>,
    pub(super) attempts: BTreeMap<ConnId, Attempt>,
    pub(super) attempt_queries: BTreeMap<QueryId, ConnId>,
    pub(super) attempt_requests: BTreeMap<RequestId, ConnId>,
    pub(super) servers: BTreeMap<ServerId, Server>,
    pub(super) server_by_target: BTreeMap<[u8; 32], ServerId>,
    pub(super) server_queries: BTreeMap<QueryId, ServerId>,
    pub(super) server_requests: BTreeMap<RequestId, ServerId>,
    pub(super) handshakes: BTreeMap<Vec<u8>, ServerHandshake>,
    pub(super) pending_firewall: BTreeMap<u64, Vec<u8>>,
    /// Server connections waiting for the client's first packet: their remote stream id.
    pub(super) pending_remote: BTreeMap<ConnId, u32>,
    pub(super) next_conn: u64,
    pub(super) next_server: u64,
    pub(super) next_handshake: u64,
    pub(crate) events: VecDeque<ConnectEvent>,
    /// Local IPv4 addresses (with the server socket's port) to advertise for the LAN shortcut.
    pub(crate) local_addresses: Vec<SocketAddrV4>,
    pub(crate) default_key_pair: Option<KeyPair>,
    pub(super) buf: Vec<u8>,
    /// Scratch for ciphertext read from UDX and plaintext out of the secret stream.
    pub(super) raw_buf: Vec<u8>,
    pub(super) plain_buf: Vec<u8>,
    /// Requests of the punch layer in flight.
    pub(super) punch_requests: BTreeMap<RequestId, PunchRequest>,
    /// Server handshakes by holepunch id.
    pub(super) holepunch_ids: BTreeMap<u64, Vec<u8>>,
    /// The node-wide random-punch throttle.
    pub(super) random_punches: RandomPunchLimiter,
    /// UDX streams of forgotten connections that still have something to send (a DESTROY,
    /// acknowledgements) or linger; removed once drained.
    pub(super) retiring: Vec<u32>,
}

/// Where the server's handshake reply (`msg2`) to `req` goes, as the reference's router sends
/// it: straight back to a client that came directly; to the relay that forwarded it, naming
/// the client's address as that relay saw it; or, from a second relay, to the first one.
/// `(socket, to, value, relayed)`; `None` for a mode that gets no reply.
fn handshake_reply_route(
    req: &IncomingRequest,
    env: &HandshakeEnvelope,
    socket: SocketKind,
    msg2: Vec<u8>,
) -> Option<(SocketKind, SocketAddrV4, Vec<u8>, bool)> {
    match env.mode {
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
                peer_address: env.peer_address,
                relay_address: None,
            };
            Some((socket, req.from, v.to_bytes(), true))
        }
        mode::FROM_SECOND_RELAY => {
            let relay = env.relay_address?;
            let v = HandshakeEnvelope {
                mode: mode::FROM_SERVER,
                noise: msg2,
                peer_address: env.peer_address,
                relay_address: None,
            };
            Some((socket, relay, v.to_bytes(), true))
        }
        _ => None,
    }
}

/// A reserved or private address a client should not try to reach across the internet.
fn is_bogon(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || (o[0] == 192 && o[1] == 0 && (o[2] == 0 || o[2] == 2))
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || o[0] >= 224
}

/// Reserved (not merely private): never useful even on a LAN.
fn is_reserved(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 0
        || (o[0] == 192 && o[1] == 0 && (o[2] == 0 || o[2] == 2))
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || o[0] >= 224
}

/// Number of leading dotted octets two addresses share.
fn shared_octets(a: &Ipv4Addr, b: &Ipv4Addr) -> usize {
    a.octets()
        .iter()
        .zip(b.octets().iter())
        .take_while(|(x, y)| x == y)
        .count()
}

impl<R: RngCore + CryptoRng> DhtNode<R> {
    /// Sets the local addresses advertised for the LAN shortcut (the driver knows its
    /// interfaces; each with the server socket's port).
    pub fn set_local_addresses(&mut self, addresses: Vec<SocketAddrV4>) {
        self.connect.local_addresses = addresses;
    }

    /// Sets the key pair used when none is given (`defaultKeyPair`).
    pub fn set_default_key_pair(&mut self, key_pair: KeyPair) {
        self.connect.default_key_pair = Some(key_pair);
    }

    /// The next connection event.
    pub fn poll_connect_event(&mut self) -> Option<ConnectEvent> {
        self.connect.events.pop_front()
    }

    fn key_pair_or_default(&mut self, kp: Option<KeyPair>) -> KeyPair {
        if let Some(kp) = kp {
            return kp;
        }
        if let Some(kp) = &self.connect.default_key_pair {
            return kp.clone();
        }
        let kp = KeyPair::generate(self.rpc.rng());
        self.connect.default_key_pair = Some(kp.clone());
        kp
    }

    fn new_stream_id(&mut self) -> u32 {
        loop {
            let id = self.rpc.rng().next_u32();
            if id != 0 && !self.connect.udx.contains(id) {
                return id;
            }
        }
    }

    fn our_firewall(&self) -> u64 {
        if self.rpc.remote_address().is_some() {
            Firewall::OPEN
        } else {
            Firewall::UNKNOWN
        }
    }

    fn our_addresses(&self, include_local: bool) -> Vec<SocketAddrV4> {
        let mut out: Vec<SocketAddrV4> = self.rpc.remote_address().into_iter().collect();
        if include_local {
            for a in &self.connect.local_addresses {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
        }
        out
    }

    // ------------------------------------------------------------------ client

    /// `connect(remotePublicKey)`: finds the server, handshakes through a relay and opens an
    /// encrypted stream. The outcome is a [`ConnectEvent::Open`] or [`ConnectEvent::Failed`].
    pub fn connect(
        &mut self,
        now: Instant,
        remote_public_key: [u8; 32],
        opts: ConnectOptions,
    ) -> ConnId {
        let conn = ConnId(self.connect.next_conn);
        self.connect.next_conn += 1;
        if self.connect.conns.len() + self.connect.attempts.len() >= MAX_CONNECTIONS {
            self.connect.events.push_back(ConnectEvent::Failed {
                conn,
                error: ConnectError::PeerConnectionFailed,
            });
            return conn;
        }
        let kp = self.key_pair_or_default(opts.key_pair.clone());
        let stream_id = self.new_stream_id();
        let target = sign::target_of_key(&remote_public_key);
        let payload = NoisePayload {
            firewall: self.our_firewall(),
            addresses4: self.our_addresses(opts.local_connection),
            udx: Some(UdxInfo::new(stream_id, false)),
            secret_stream: Some(SecretStreamInfo::default()),
            ..NoisePayload::default()
        };
        let mut hs = match Handshake::initiator(&kp, &remote_public_key, self.rpc.rng()) {
            Ok(hs) => hs,
            Err(_) => {
                self.connect.events.push_back(ConnectEvent::Failed {
                    conn,
                    error: ConnectError::HandshakeInvalid,
                });
                return conn;
            }
        };
        let msg1 = match hs.send(&payload) {
            Ok(m) => m,
            Err(_) => {
                self.connect.events.push_back(ConnectEvent::Failed {
                    conn,
                    error: ConnectError::HandshakeInvalid,
                });
                return conn;
            }
        };
        self.connect
            .udx
            .insert(UdxStream::new(stream_id, now, connection_stream_config()));
        let mut spec = QuerySpec::new(NodeId(target), command::FIND_PEER);
        spec.retries = Some(3);
        spec.seeds = opts.relay_addresses.clone();
        let query = self.rpc.query(now, spec);
        self.connect.attempt_queries.insert(query, conn);
        self.connect.attempts.insert(
            conn,
            Attempt {
                conn,
                target,
                handshake: Some(hs),
                result: None,
                msg1,
                stream_id,
                query: Some(query),
                queue: opts.relay_addresses.into_iter().collect(),
                tried: Vec::new(),
                inflight: BTreeMap::new(),
                found: false,
                phase: AttemptPhase::Handshaking,
                local_connection: opts.local_connection,
                fast_open: opts.fast_open,
                early: Vec::new(),
                punch: None,
            },
        );
        self.pump_attempt(now, conn);
        conn
    }

    /// Sends handshakes to queued relays while fewer than the limit are in flight.
    fn pump_attempt(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(a) = self.connect.attempts.get_mut(&conn) else {
                return;
            };
            if !matches!(a.phase, AttemptPhase::Handshaking)
                || a.inflight.len() >= MAX_HANDSHAKE_ATTEMPTS
            {
                return;
            }
            let Some(relay) = a.queue.pop_front() else {
                return;
            };
            if a.tried.contains(&relay) {
                continue;
            }
            a.tried.push(relay);
            let env = HandshakeEnvelope {
                mode: mode::FROM_CLIENT,
                noise: a.msg1.clone(),
                peer_address: None,
                relay_address: None,
            };
            let mut spec = RequestSpec::new(relay, command::PEER_HANDSHAKE);
            spec.target = Some(NodeId(a.target));
            spec.value = Some(env.to_bytes());
            let rid = self.rpc.request(now, spec);
            if let Some(a) = self.connect.attempts.get_mut(&conn) {
                a.inflight.insert(rid, relay);
            }
            self.connect.attempt_requests.insert(rid, conn);
        }
    }

    pub(crate) fn on_attempt_query_reply(
        &mut self,
        now: Instant,
        conn: ConnId,
        reply: &QueryReply,
    ) {
        let Some(a) = self.connect.attempts.get_mut(&conn) else {
            return;
        };
        if reply.value.is_none() {
            return;
        }
        a.found = true;
        a.queue.push_back(reply.from);
        self.pump_attempt(now, conn);
    }

    pub(crate) fn on_attempt_query_done(&mut self, now: Instant, conn: ConnId) {
        if let Some(a) = self.connect.attempts.get_mut(&conn) {
            a.query = None;
        }
        self.check_attempt_exhausted(now, conn);
    }

    fn check_attempt_exhausted(&mut self, _now: Instant, conn: ConnId) {
        let Some(a) = self.connect.attempts.get(&conn) else {
            return;
        };
        if !matches!(a.phase, AttemptPhase::Handshaking)
            || a.query.is_some()
            || !a.inflight.is_empty()
            || !a.queue.is_empty()
        {
            return;
        }
        let error = if a.found || !a.tried.is_empty() {
            ConnectError::PeerConnectionFailed
        } else {
            ConnectError::PeerNotFound
        };
        self.fail_attempt(conn, error);
    }

    pub(super) fn fail_attempt(&mut self, conn: ConnId, error: ConnectError) {
        let now = self.last_now;
        self.drop_client_punch(now, conn);
        let Some(a) = self.connect.attempts.remove(&conn) else {
            return;
        };
        if let Some(q) = a.query {
            self.connect.attempt_queries.remove(&q);
            self.rpc.cancel_query(q);
        }
        self.connect.attempt_requests.retain(|_, c| *c != conn);
        if let Some(mut s) = self.connect.udx.remove(a.stream_id) {
            s.destroy();
            self.release_stream_socket(s.socket());
        }
        self.connect.conns.remove(&conn);
        self.connect.by_stream.remove(&a.stream_id);
        self.connect
            .events
            .push_back(ConnectEvent::Failed { conn, error });
    }

    pub(crate) fn on_attempt_response(
        &mut self,
        now: Instant,
        rid: RequestId,
        conn: ConnId,
        result: Result<QueryReply, RequestError>,
    ) {
        let Some(a) = self.connect.attempts.get_mut(&conn) else {
            return;
        };
        let Some(relay) = a.inflight.remove(&rid) else {
            // The LAN ping, raced with punching.
            if let AttemptPhase::Holepunching {
                remote_udx,
                lan: Some(addr),
            } = a.phase
            {
                match result {
                    Ok(_) => {
                        self.drop_client_punch(now, conn);
                        self.client_connect_stream(now, conn, UDX_SERVER_SOCKET, remote_udx, addr);
                    }
                    Err(_) => {
                        a.phase = AttemptPhase::Holepunching {
                            remote_udx,
                            lan: None,
                        };
                        // A blocked LAN ping does not abort a punch that may still work.
                        if !self.attempt_is_punching(conn) {
                            self.fail_attempt(conn, ConnectError::HolepunchAborted);
                        }
                    }
                }
            }
            return;
        };
        if !matches!(a.phase, AttemptPhase::Handshaking) {
            return;
        }
        let accepted = result.ok().and_then(|reply| {
            let env = HandshakeEnvelope::decode(reply.value.as_deref()?).ok()?;
            (env.mode == mode::REPLY && reply.from == relay).then_some((env, reply))
        });
        let Some((env, reply)) = accepted else {
            self.pump_attempt(now, conn);
            return self.check_attempt_exhausted(now, conn);
        };
        let Some(mut hs) = a.handshake.take() else {
            return;
        };
        let payload = match hs.recv(&env.noise) {
            Ok(p) => p,
            Err(_) => return self.fail_attempt(conn, ConnectError::HandshakeInvalid),
        };
        if payload.version != 1 {
            return self.fail_attempt(conn, ConnectError::ServerIncompatible);
        }
        let Some(udx_info) = payload.udx.filter(|_| payload.error == ErrorCode::NONE) else {
            return self.fail_attempt(conn, ConnectError::ServerError);
        };
        let result = match hs.finish() {
            Ok(r) => r,
            Err(_) => return self.fail_attempt(conn, ConnectError::HandshakeInvalid),
        };
        a.result = Some(result);
        // Other attempts in flight are no longer needed.
        for other in core::mem::take(&mut a.inflight).into_keys() {
            self.connect.attempt_requests.remove(&other);
        }
        if let Some(q) = a.query.take() {
            self.connect.attempt_queries.remove(&q);
            self.rpc.cancel_query(q);
        }
        let remote_udx = udx_info.id as u32;
        let relayed = env.peer_address.is_some();
        let server_address = env.peer_address.unwrap_or(relay);
        let client_address = reply.to;
        let holepunchable = payload
            .holepunch
            .as_ref()
            .is_some_and(|h| !h.relays.is_empty());
        let main = udx_socket(self.rpc.primary_socket());
        let local_connection = a.local_connection;
        if !relayed {
            // The server itself answered: connect straight back over the same socket.
            return self.client_connect_stream(now, conn, main, remote_udx, server_address);
        }
        if payload.firewall == Firewall::OPEN || !holepunchable {
            let addr = payload
                .addresses4
                .iter()
                .find(|a| !is_bogon(a.ip()))
                .copied()
                .unwrap_or(server_address);
            return self.client_connect_stream(now, conn, main, remote_udx, addr);
        }
        if self.our_firewall() == Firewall::OPEN {
            if let Some(a) = self.connect.attempts.get_mut(&conn) {
                a.phase = AttemptPhase::WaitingForServer {
                    until: now + CLIENT_OPEN_WAIT,
                    remote_udx,
                };
            }
            return self.replay_early(now, conn);
        }
        // The LAN shortcut (same public host) races the punch.
        let mut lan = None;
        if local_connection && client_address.ip() == server_address.ip() {
            let locals: Vec<Ipv4Addr> = self
                .connect
                .local_addresses
                .iter()
                .map(|a| *a.ip())
                .collect();
            let candidates: Vec<SocketAddrV4> = payload
                .addresses4
                .iter()
                .filter(|a| !is_reserved(a.ip()))
                .copied()
                .collect();
            let best = candidates
                .iter()
                .max_by_key(|c| {
                    locals
                        .iter()
                        .map(|l| shared_octets(l, c.ip()))
                        .max()
                        .unwrap_or(0)
                })
                .copied();
            if let Some(addr) = best {
                let mut spec = RequestSpec::new(addr, PING);
                spec.internal = true;
                let rid = self.rpc.request(now, spec);
                self.connect.attempt_requests.insert(rid, conn);
                lan = Some(addr);
            }
        }
        if let Some(a) = self.connect.attempts.get_mut(&conn) {
            a.phase = AttemptPhase::Holepunching { remote_udx, lan };
        }
        let Some(holepunch) = payload.holepunch.as_ref() else {
            return;
        };
        let secret = self
            .connect
            .attempts
            .get(&conn)
            .and_then(|a| a.result.as_ref())
            .map(|r| r.holepunch_secret);
        let Some(secret) = secret else { return };
        self.start_client_punch(
            now,
            conn,
            payload.firewall,
            holepunch,
            relay,
            server_address,
            remote_udx,
            secret,
        );
        self.replay_early(now, conn);
    }

    /// Feeds the server's UDX packets that beat its handshake reply here again, now that the
    /// attempt knows where it stands: a server that reached us first connects at once, as in the
    /// reference, instead of after its retransmission timeout.
    fn replay_early(&mut self, now: Instant, conn: ConnId) {
        let early = self
            .connect
            .attempts
            .get_mut(&conn)
            .map(|a| core::mem::take(&mut a.early))
            .unwrap_or_default();
        for (socket, from, bytes) in early {
            if let SocketAddr::V4(from) = from {
                self.handle_udx(now, socket_kind(socket), from, &bytes);
            }
        }
    }

    pub(super) fn client_connect_stream(
        &mut self,
        now: Instant,
        conn: ConnId,
        socket: udx::SocketId,
        remote_udx: u32,
        addr: SocketAddrV4,
    ) {
        let Some(a) = self.connect.attempts.get_mut(&conn) else {
            return;
        };
        let Some(result) = a.result.clone() else {
            return;
        };
        a.phase = AttemptPhase::Opening;
        let stream_id = a.stream_id;
        let early = core::mem::take(&mut a.early);
        let Some(stream) = self.connect.udx.get_mut(stream_id) else {
            return;
        };
        if stream
            .connect_via(now, socket, remote_udx, SocketAddr::V4(addr))
            .is_err()
        {
            return self.fail_attempt(conn, ConnectError::PeerConnectionFailed);
        }
        self.start_conn(now, conn, stream_id, result, None);
        for (socket, from, bytes) in early {
            self.connect.udx.handle_datagram(now, socket, from, &bytes);
        }
        self.drive_udx_events(now);
    }

    // ------------------------------------------------------------------ connections

    fn start_conn(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        handshake: HandshakeResult,
        server: Option<ServerId>,
    ) {
        let secret = SecretStream::from_handshake(
            &handshake,
            &stream::Config::default(),
            now,
            self.rpc.rng(),
        );
        self.connect.by_stream.insert(stream_id, conn);
        self.connect
            .conns
            .insert(conn, Conn::new(stream_id, handshake, server, secret, None));
        self.flush_secret(conn);
        if let Some(server) = server {
            let info = self.conn_info(conn);
            if let Some(info) = info {
                self.connect
                    .events
                    .push_back(ConnectEvent::Incoming { server, conn, info });
            }
        }
    }

    /// Moves the secret stream's own output (header, keep-alive) into the UDX stream.
    fn flush_secret(&mut self, conn: ConnId) {
        let Some(c) = self.connect.conns.get_mut(&conn) else {
            return;
        };
        let Some(secret) = c.secret.as_mut() else {
            return;
        };
        let mut out = core::mem::take(&mut self.connect.buf);
        out.clear();
        if secret.poll_transmit(&mut out) {
            if let Some(s) = self.connect.udx.get_mut(c.stream_id) {
                // Header and keep-alive frames are tiny; the send buffer always has room for them.
                write_frames(s, &out);
            }
        }
        self.connect.buf = out;
    }

    fn conn_info(&self, conn: ConnId) -> Option<ConnectionInfo> {
        let c = self.connect.conns.get(&conn)?;
        Some(ConnectionInfo {
            public_key: c.handshake.public_key,
            remote_public_key: c.handshake.remote_public_key,
            handshake_hash: c.handshake.hash,
            is_initiator: c.handshake.is_initiator,
            remote_address: self
                .connect
                .udx
                .get(c.stream_id)
                .and_then(|s| s.remote_addr()),
        })
    }

    /// Sizes of the connect layer's state.
    pub fn connect_stats(&self) -> ConnectStats {
        ConnectStats {
            handshakes: self.connect.handshakes.len(),
            server_punches: self
                .connect
                .handshakes
                .values()
                .filter(|h| h.punch.is_some())
                .count(),
            attempts: self.connect.attempts.len(),
            connections: self.connect.conns.len(),
            pool_sockets: self.pool.len(),
            punch_requests: self.connect.punch_requests.len(),
        }
    }

    /// What is known about a connection.
    pub fn connection_info(&self, conn: ConnId) -> Option<ConnectionInfo> {
        self.conn_info(conn)
    }

    /// Transport state of a connection's UDX stream (round-trip time, congestion window, pacing
    /// rate, path MTU and counters), as the reference exposes on `rawStream`.
    pub fn connection_transport(&self, conn: ConnId) -> Option<TransportInfo> {
        let c = self.connect.conns.get(&conn)?;
        let s = self.connect.udx.get(c.stream_id)?;
        Some(TransportInfo {
            srtt: s.srtt(),
            rto: s.rto(),
            cwnd: s.cwnd(),
            pacing_rate: s.pacing_rate(),
            send_window: s.send_window(),
            mtu: s.mtu(),
            stats: s.stats(),
        })
    }

    /// Pulls bytes from UDX through the secret stream while the plaintext buffer has room.
    fn pump_read(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.connect.conns.get_mut(&conn) else {
            return;
        };
        let Some(s) = self.connect.udx.get_mut(c.stream_id) else {
            return;
        };
        // Reused scratch buffers: no allocation per read on the hot path.
        let mut raw = core::mem::take(&mut self.connect.raw_buf);
        raw.resize(RAW_READ_CHUNK, 0);
        let mut plain = core::mem::take(&mut self.connect.plain_buf);
        let mut error = None;
        while c.plain.len() < READ_BUFFER {
            let n = match s.read(&mut raw) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let Some(secret) = c.secret.as_mut() else {
                break;
            };
            plain.clear();
            let r = secret.read(&raw[..n], now, &mut plain);
            c.plain.extend(plain.iter());
            if let Err(e) = r {
                error = Some(e);
                break;
            }
        }
        plain.clear();
        self.connect.raw_buf = raw;
        self.connect.plain_buf = plain;
        let ended_now =
            error.is_none() && c.udx_ended && !c.remote_ended && s.readable_bytes() == 0;
        if ended_now {
            c.remote_ended = true;
            if let Some(secret) = c.secret.as_mut() {
                // A truncated last frame is dropped, as before.
                let _ = secret.handle_remote_end();
            }
        }
        let opened_now = !c.opened
            && c.secret
                .as_ref()
                .is_some_and(|s| s.remote_header_received());
        let readable = !c.plain.is_empty();
        if let Some(e) = error {
            return self.close_conn(conn, Some(ConnError::Crypto(e)));
        }
        if opened_now {
            self.on_conn_open(conn);
        }
        if readable {
            self.connect.events.push_back(ConnectEvent::Readable(conn));
        }
        if ended_now {
            self.connect.events.push_back(ConnectEvent::End(conn));
        }
    }

    fn on_conn_open(&mut self, conn: ConnId) {
        let Some(c) = self.connect.conns.get_mut(&conn) else {
            return;
        };
        c.opened = true;
        if c.handshake.is_initiator {
            self.connect.attempts.remove(&conn);
            if let Some(info) = self.conn_info(conn) {
                self.connect
                    .events
                    .push_back(ConnectEvent::Open { conn, info });
            }
        }
    }

    /// Reads decrypted bytes. `Ok(0)` when nothing is buffered: at the end of the peer's
    /// stream if [`conn_at_end`](Self::conn_at_end) says so, else wait for
    /// [`ConnectEvent::Readable`]. A connection that was aborted or timed out returns its
    /// reason once its buffered bytes are read (unless the peer had ended its side before).
    pub fn conn_read(
        &mut self,
        now: Instant,
        conn: ConnId,
        buf: &mut [u8],
    ) -> Result<usize, ConnError> {
        let mut n = self.copy_plain(conn, buf)?;
        if self
            .connect
            .conns
            .get(&conn)
            .is_some_and(|c| c.plain.len() < READ_BUFFER)
        {
            self.pump_read(now, conn);
            if n == 0 {
                n = self.copy_plain(conn, buf)?;
            }
        }
        let c = self.connect.conns.get(&conn).ok_or(ConnError::NotOpen)?;
        if n == 0 && !buf.is_empty() && !c.remote_ended && c.closed && c.plain.is_empty() {
            return Err(c.close_error.clone().unwrap_or(ConnError::NotOpen));
        }
        Ok(n)
    }

    fn copy_plain(&mut self, conn: ConnId, buf: &mut [u8]) -> Result<usize, ConnError> {
        let c = self
            .connect
            .conns
            .get_mut(&conn)
            .ok_or(ConnError::NotOpen)?;
        let n = buf.len().min(c.plain.len());
        let (a, b) = c.plain.as_slices();
        let na = a.len().min(n);
        buf[..na].copy_from_slice(&a[..na]);
        buf[na..n].copy_from_slice(&b[..n - na]);
        c.plain.drain(..n);
        Ok(n)
    }

    /// Bytes ready for [`conn_read`](Self::conn_read).
    pub fn conn_readable(&self, conn: ConnId) -> usize {
        self.connect.conns.get(&conn).map_or(0, |c| c.plain.len())
    }

    /// Whether the peer ended and everything has been read.
    pub fn conn_at_end(&self, conn: ConnId) -> bool {
        self.connect.conns.get(&conn).is_none_or(|c| {
            let udx_drained = self
                .connect
                .udx
                .get(c.stream_id)
                .is_none_or(|s| s.readable_bytes() == 0);
            // A close without the peer's end is an error, never a clean end of stream.
            (c.remote_ended || (c.closed && c.close_error.is_none()))
                && c.plain.is_empty()
                && udx_drained
        })
    }

    /// Encrypts and queues as much of `data` as the transport has room for; a short count is
    /// back-pressure ([`ConnectEvent::Writable`] follows).
    pub fn conn_write(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
    ) -> Result<usize, ConnError> {
        let c = self
            .connect
            .conns
            .get_mut(&conn)
            .ok_or(ConnError::NotOpen)?;
        if c.closed {
            return Err(c.close_error.clone().unwrap_or(ConnError::NotOpen));
        }
        if c.local_ended {
            return Err(ConnError::Ended);
        }
        let Some(s) = self.connect.udx.get_mut(c.stream_id) else {
            return Err(ConnError::NotOpen);
        };
        let Some(secret) = c.secret.as_mut() else {
            return Err(ConnError::NotOpen);
        };
        let mut written = 0;
        let mut out = core::mem::take(&mut self.connect.buf);
        let overhead = stream::frame_len(0) + stream::HEADER_FRAME_LEN;
        // The smallest frame cut while more data waits (a blocked writer is woken once this
        // much fits, see drive_udx_events): a whole WRITE_CHUNK, or a quarter of a smaller buffer.
        let min_frame = WRITE_CHUNK.min(s.send_buffer_limit() / 4);
        while written < data.len() {
            let room = s.send_capacity();
            // Whole frames of up to WRITE_CHUNK: a frame cut to whatever room an ACK just freed
            // would be tiny, and each frame costs the peer a decrypt call (and Node a JS event).
            let want = (data.len() - written).min(WRITE_CHUNK);
            if room < overhead + want.min(min_frame) {
                break;
            }
            let n = want.min(room - overhead);
            out.clear();
            if let Err(e) = secret.write(&data[written..written + n], now, &mut out) {
                self.connect.buf = out;
                return Err(ConnError::Crypto(e));
            }
            // The capacity check above guarantees the whole frame fits.
            write_frames(s, &out);
            written += n;
        }
        self.connect.buf = out;
        if written < data.len() {
            c.want_writable = true;
        }
        Ok(written)
    }

    /// Ends our side (half-close): the peer reads to the end, then `0`.
    pub fn conn_end(&mut self, conn: ConnId) -> Result<(), ConnError> {
        let c = self
            .connect
            .conns
            .get_mut(&conn)
            .ok_or(ConnError::NotOpen)?;
        if c.local_ended {
            return Ok(());
        }
        c.local_ended = true;
        let mut out = Vec::new();
        if let Some(secret) = c.secret.as_mut() {
            let _ = secret.end(&mut out);
        }
        if let Some(s) = self.connect.udx.get_mut(c.stream_id) {
            write_frames(s, &out);
            let _ = s.end();
        }
        Ok(())
    }

    /// Destroys a connection (or a pending connect) at once.
    pub fn conn_destroy(&mut self, conn: ConnId) {
        if self.connect.attempts.contains_key(&conn) && !self.connect.conns.contains_key(&conn) {
            return self.fail_attempt(conn, ConnectError::HolepunchAborted);
        }
        if let Some(c) = self.connect.conns.get_mut(&conn) {
            if let Some(s) = self.connect.udx.get_mut(c.stream_id) {
                s.destroy();
            }
            if let Some(secret) = c.secret.as_mut() {
                secret.destroy();
            }
        }
        self.close_conn(conn, Some(ConnError::Destroyed));
    }

    /// The application let go of a connection. One whose two directions have both ended (ours
    /// by [`conn_end`](Self::conn_end), the peer's read to the end) finishes by itself — our
    /// END may still wait for its acknowledgement — and closes gracefully. Anything else is
    /// destroyed (UDX DESTROY): nobody reads the peer's bytes or writes ours any more, and the
    /// peer must learn at once that the stream stopped short rather than see a clean end.
    pub fn conn_drop(&mut self, conn: ConnId) {
        let Some(c) = self.connect.conns.get(&conn) else {
            return self.conn_destroy(conn);
        };
        if c.closed || (c.local_ended && self.conn_at_end(conn)) {
            return;
        }
        self.conn_destroy(conn);
    }

    /// Destroys every connection (the node is going away): each peer gets a DESTROY, as the
    /// reference's `destroy()` destroys every raw stream.
    pub(crate) fn destroy_connections(&mut self) {
        let open: Vec<ConnId> = self
            .connect
            .conns
            .iter()
            .filter(|(_, c)| !c.closed)
            .map(|(id, _)| *id)
            .collect();
        for conn in open {
            self.conn_destroy(conn);
        }
    }

    fn close_conn(&mut self, conn: ConnId, error: Option<ConnError>) {
        let Some(c) = self.connect.conns.get_mut(&conn) else {
            return;
        };
        if c.closed {
            return;
        }
        c.closed = true;
        c.close_error = error.clone();
        let (opened, initiator) = (c.opened, c.handshake.is_initiator);
        if let Some(s) = self.connect.udx.get_mut(c.stream_id) {
            match &error {
                // The peer went quiet: if it can still hear us (a NAT that moved our mapping,
                // a one-way outage), a DESTROY tells it at once instead of after its own timeout.
                Some(ConnError::Transport(udx::StreamError::TimedOut)) => s.reset_peer(),
                Some(_) => s.destroy(),
                None => {}
            }
        }
        if initiator && !opened && self.connect.attempts.contains_key(&conn) {
            self.connect.attempts.remove(&conn);
            self.connect.events.push_back(ConnectEvent::Failed {
                conn,
                error: ConnectError::PeerConnectionFailed,
            });
            return;
        }
        self.connect
            .events
            .push_back(ConnectEvent::Closed { conn, error });
    }

    /// Forgets a closed connection whose events have been consumed.
    pub fn conn_forget(&mut self, conn: ConnId) {
        if let Some(c) = self.connect.conns.remove(&conn) {
            self.connect.by_stream.remove(&c.stream_id);
            self.connect.pending_remote.remove(&conn);
            if let Some(s) = self.connect.udx.get_mut(c.stream_id) {
                if !s.is_closed() {
                    s.destroy();
                }
                // A DESTROY not sent yet must still go out: the peer would otherwise wait for
                // its timeout.
                self.connect.retiring.push(c.stream_id);
                self.sweep_retiring();
            }
        }
    }

    /// Removes the streams of forgotten connections that have nothing left to send.
    fn sweep_retiring(&mut self) {
        let mut retiring = core::mem::take(&mut self.connect.retiring);
        retiring.retain(|&id| {
            if !self.connect.udx.get(id).is_some_and(|s| s.is_drained()) {
                return self.connect.udx.contains(id);
            }
            if let Some(s) = self.connect.udx.remove(id) {
                self.release_stream_socket(s.socket());
            }
            false
        });
        self.connect.retiring = retiring;
    }

    /// A stream over a pool socket is gone: the socket may close.
    fn release_stream_socket(&mut self, socket: Option<udx::SocketId>) {
        if let Some(SocketKind::Pool(id)) = socket.map(socket_kind) {
            self.pool.release_stream(id);
        }
    }

    /// Feeds a UDX datagram; false if it was not UDX for us (then it is dht-rpc's).
    pub(crate) fn handle_udx(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddrV4,
        bytes: &[u8],
    ) -> bool {
        let sock = udx_socket(socket);
        match self
            .connect
            .udx
            .handle_datagram(now, sock, SocketAddr::V4(from), bytes)
        {
            Incoming::NotUdx | Incoming::UnknownStream { .. } => return false,
            Incoming::Consumed { .. } => {}
            Incoming::Unattached {
                stream_id,
                from,
                socket,
            } => {
                // Connect on first packet: a server stream, or a client whose server reached it
                // first, learns its peer from the packet.
                let Some((conn, remote)) = self.unattached_owner(stream_id) else {
                    if let Some(a) = self
                        .connect
                        .attempts
                        .values_mut()
                        .find(|a| a.stream_id == stream_id)
                    {
                        if a.early.len() < MAX_EARLY_PACKETS {
                            a.early.push((socket, from, bytes.to_vec()));
                        }
                    }
                    return true;
                };
                let attached = self
                    .connect
                    .udx
                    .get_mut(stream_id)
                    .is_some_and(|s| s.connect_via(now, socket, remote, from).is_ok());
                if !attached {
                    return true;
                }
                self.connect.pending_remote.remove(&conn);
                if let SocketKind::Pool(id) = socket_kind(socket) {
                    // The stream keeps the puncher's socket.
                    self.pool.hold_stream(id);
                }
                if let Some(c) = self.connect.conns.get_mut(&conn) {
                    c.connect_deadline = None;
                    self.server_conn_attached(now, conn);
                } else if let Some(result) = self.connect.attempts.get_mut(&conn).and_then(|a| {
                    a.phase = AttemptPhase::Opening;
                    a.result.clone()
                }) {
                    self.drop_client_punch(now, conn);
                    self.start_conn(now, conn, stream_id, result, None);
                }
                self.connect.udx.handle_datagram(now, socket, from, bytes);
                if let Some(server) = self.connect.conns.get(&conn).and_then(|c| c.server) {
                    if let Some(info) = self.conn_info(conn) {
                        self.connect.events.push_back(ConnectEvent::Incoming {
                            server,
                            conn,
                            info,
                        });
                    }
                }
                self.flush_secret(conn);
            }
        }
        self.drive_udx_events(now);
        true
    }

    /// Who waits for the first packet of `stream_id`, and the peer's stream id.
    fn unattached_owner(&self, stream_id: u32) -> Option<(ConnId, u32)> {
        if let Some(conn) = self.connect.by_stream.get(&stream_id) {
            return self.connect.pending_remote.get(conn).map(|r| (*conn, *r));
        }
        self.connect
            .attempts
            .values()
            .find(|a| a.stream_id == stream_id)
            .and_then(|a| match a.phase {
                AttemptPhase::WaitingForServer { remote_udx, .. }
                | AttemptPhase::Holepunching { remote_udx, .. } => Some((a.conn, remote_udx)),
                _ => None,
            })
    }

    /// Turns UDX stream events into connection events.
    pub(crate) fn drive_udx_events(&mut self, now: Instant) {
        while let Some((stream_id, ev)) = self.connect.udx.poll_event() {
            let Some(conn) = self.connect.by_stream.get(&stream_id).copied() else {
                continue;
            };
            match ev {
                StreamEvent::Readable => self.pump_read(now, conn),
                StreamEvent::Writable => {}
                StreamEvent::End => {
                    if let Some(c) = self.connect.conns.get_mut(&conn) {
                        c.udx_ended = true;
                    }
                    // Ends the connection once the bytes before the END have been decrypted.
                    self.pump_read(now, conn);
                }
                StreamEvent::Closed { error } => {
                    self.close_conn(conn, error.map(ConnError::Transport))
                }
                StreamEvent::Connected
                | StreamEvent::Finished
                | StreamEvent::RemoteChanged
                | StreamEvent::Message(_) => {}
            }
        }
        // Writers stopped short by us (we never hand UDX more than it has room for, so it
        // never reports a short write itself) resume once acknowledgements free room.
        let overhead = stream::frame_len(0) + stream::HEADER_FRAME_LEN;
        let mut resumed = Vec::new();
        for (conn, c) in self.connect.conns.iter_mut() {
            let room_for_a_frame = |s: &UdxStream| {
                s.send_capacity() >= overhead + WRITE_CHUNK.min(s.send_buffer_limit() / 4)
            };
            if c.want_writable
                && self
                    .connect
                    .udx
                    .get(c.stream_id)
                    .is_some_and(room_for_a_frame)
            {
                c.want_writable = false;
                resumed.push(*conn);
            }
        }
        for conn in resumed {
            self.connect.events.push_back(ConnectEvent::Writable(conn));
        }
    }

    /// Connection timers: secret-stream keep-alives, server connect waits, client waits.
    pub(crate) fn connect_timeout(&mut self, now: Instant) {
        self.connect.udx.handle_timeout(now);
        self.sweep_retiring();
        let conns: Vec<ConnId> = self.connect.conns.keys().copied().collect();
        for conn in conns {
            let expired = self
                .connect
                .conns
                .get(&conn)
                .is_some_and(|c| c.connect_deadline.is_some_and(|d| d <= now));
            if expired {
                self.conn_forget(conn);
                continue;
            }
            let due = self
                .connect
                .conns
                .get(&conn)
                .and_then(|c| c.secret.as_ref())
                .and_then(|s| s.poll_timeout())
                .is_some_and(|t| t <= now);
            if due {
                let failed = self
                    .connect
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| c.secret.as_mut())
                    .and_then(|s| s.handle_timeout(now).err());
                match failed {
                    Some(e) => self.close_conn(conn, Some(ConnError::Crypto(e))),
                    None => self.flush_secret(conn),
                }
            }
        }
        let waiting: Vec<ConnId> = self
            .connect
            .attempts
            .values()
            .filter(
                |a| matches!(a.phase, AttemptPhase::WaitingForServer { until, .. } if until <= now),
            )
            .map(|a| a.conn)
            .collect();
        for conn in waiting {
            self.fail_attempt(conn, ConnectError::HolepunchAborted);
        }
        self.server_timeouts(now);
        self.punch_timeout(now);
        // Finished handshakes are forgotten a while after (a punch keeps its handshake).
        let stale: Vec<Vec<u8>> = self
            .connect
            .handshakes
            .iter()
            .filter(|(_, h)| {
                h.punch.is_none() && h.done_at.is_some_and(|t| t + HANDSHAKE_CLEAR_WAIT <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(id) = self
                .connect
                .handshakes
                .remove(&k)
                .and_then(|h| h.holepunch_id)
            {
                self.connect.holepunch_ids.remove(&id);
            }
        }
        self.drive_udx_events(now);
    }

    /// The earliest connection timer.
    pub(crate) fn connect_poll_timeout(&self) -> Option<Instant> {
        let mut t = self.connect.udx.poll_timeout();
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for c in self.connect.conns.values() {
            min(c.connect_deadline);
            min(c.secret.as_ref().and_then(|s| s.poll_timeout()));
        }
        for a in self.connect.attempts.values() {
            if let AttemptPhase::WaitingForServer { until, .. } = a.phase {
                min(Some(until));
            }
        }
        for s in self.connect.servers.values() {
            min(s.next_relay_round);
        }
        for h in self.connect.handshakes.values() {
            min(h.done_at.map(|d| d + HANDSHAKE_CLEAR_WAIT));
        }
        min(self.punch_poll_timeout());
        t
    }

    // ------------------------------------------------------------------ servers

    /// `createServer(opts)`: a server; [`listen`](Self::listen) makes it reachable.
    pub fn create_server(&mut self, opts: ServerOptions) -> ServerId {
        let id = ServerId(self.connect.next_server);
        self.connect.next_server += 1;
        self.connect.servers.insert(
            id,
            Server {
                opts,
                key_pair: None,
                target: [0; 32],
                relays: Vec::new(),
                announce_query: None,
                announce_requests: BTreeMap::new(),
                next_relay_round: None,
                ping_rounds: 0,
                relay_pings: BTreeMap::new(),
                pings_answered: 0,
                relay_generations: Default::default(),
                unannounce_requests: BTreeMap::new(),
                listening_emitted: false,
                closing: false,
            },
        );
        id
    }

    /// `server.listen(keyPair)`: answer handshakes for this key and announce it to the closest
    /// nodes ([`ConnectEvent::Listening`] when the first announce completes).
    pub fn listen(
        &mut self,
        now: Instant,
        server: ServerId,
        key_pair: Option<KeyPair>,
    ) -> Result<(), ConnectError> {
        let kp = self.key_pair_or_default(key_pair);
        let target = sign::target_of_key(&kp.public_key());
        if self.connect.server_by_target.contains_key(&target) {
            return Err(ConnectError::KeypairAlreadyUsed);
        }
        let s = self
            .connect
            .servers
            .get_mut(&server)
            .ok_or(ConnectError::NodeDestroyed)?;
        if s.key_pair.is_some() {
            return Err(ConnectError::AlreadyListening);
        }
        s.key_pair = Some(kp.clone());
        s.target = target;
        self.connect.server_by_target.insert(target, server);
        let record = Peer {
            public_key: kp.public_key(),
            relay_addresses: Vec::new(),
        }
        .to_bytes();
        self.forwards.retain(
            target,
            Forward {
                relay: None,
                record,
            },
        );
        self.announce_server(now, server);
        Ok(())
    }

    /// The server's current relays (`relayAddresses`).
    pub fn server_relays(&self, server: ServerId) -> Vec<SocketAddrV4> {
        self.connect
            .servers
            .get(&server)
            .map_or_else(Vec::new, |s| {
                s.relays.iter().map(|r| r.relay_address).collect()
            })
    }

    /// `server.refresh()`: re-announce now.
    pub fn refresh_server(&mut self, now: Instant, server: ServerId) {
        self.announce_server(now, server);
    }

    fn announce_server(&mut self, now: Instant, server: ServerId) {
        let Some(s) = self.connect.servers.get_mut(&server) else {
            return;
        };
        if s.closing || s.announce_query.is_some() {
            return;
        }
        // `_cycle()`: a new generation of relays starts with this update.
        s.relay_generations.rotate_left(1);
        s.relay_generations[2].clear();
        let mut spec = QuerySpec::new(NodeId(s.target), command::FIND_PEER);
        spec.seeds = s.relays.iter().map(|r| r.relay_address).collect();
        let q = self.rpc.query(now, spec);
        if let Some(s) = self.connect.servers.get_mut(&server) {
            s.announce_query = Some(q);
            s.next_relay_round = None;
        }
        self.connect.server_queries.insert(q, server);
    }

    pub(crate) fn on_server_query_done(
        &mut self,
        now: Instant,
        server: ServerId,
        closest: Vec<QueryReply>,
    ) {
        let Some(s) = self.connect.servers.get_mut(&server) else {
            return;
        };
        s.announce_query = None;
        let Some(kp) = s.key_pair.clone() else { return };
        let target = s.target;
        // Relays of the previous cycle keep our record until it expires there (≤ 27 min).
        s.relays.clear();
        let mut sent = 0;
        for r in closest.iter().take(MAX_RELAYS) {
            let (Some(token), Some(id)) = (r.token, r.from_id) else {
                continue;
            };
            let peer = Peer {
                public_key: kp.public_key(),
                relay_addresses: Vec::new(),
            };
            let signature = sign::sign_announce(&kp, &target, &id.0, &token, &peer, None);
            let value = Announce {
                peer: Some(peer),
                refresh: None,
                signature: Some(signature),
                bump: 0,
            }
            .to_bytes();
            let mut spec = RequestSpec::new(r.from, command::ANNOUNCE);
            spec.token = Some(token);
            spec.target = Some(NodeId(target));
            spec.value = Some(value);
            let rid = self.rpc.request(now, spec);
            self.connect.server_requests.insert(rid, server);
            if let Some(s) = self.connect.servers.get_mut(&server) {
                s.announce_requests.insert(rid, r.from);
            }
            sent += 1;
        }
        if sent == 0 {
            self.after_announce(now, server);
        }
    }

    pub(crate) fn on_server_response(
        &mut self,
        now: Instant,
        server: ServerId,
        rid: RequestId,
        result: Result<QueryReply, RequestError>,
    ) {
        let Some(s) = self.connect.servers.get_mut(&server) else {
            return;
        };
        if let Some(relay) = s.announce_requests.remove(&rid) {
            if let Ok(r) = &result {
                if r.error == 0 && s.relays.len() < MAX_RELAYS {
                    s.relays.push(RelayInfo {
                        relay_address: relay,
                        peer_address: r.to,
                    });
                }
                if r.error == 0 && !s.relay_generations[2].contains(&relay) {
                    s.relay_generations[2].push(relay);
                }
            }
            if s.announce_requests.is_empty() {
                self.after_announce(now, server);
                self.unannounce_stale_relays(now, server);
            }
        } else if s.relay_pings.remove(&rid).is_some() {
            if result.is_ok() {
                s.pings_answered += 1;
            }
        } else if let Some(relay) = s.unannounce_requests.remove(&rid) {
            // Step two of `_unannounce`: the token and id from FIND_PEER sign the UNANNOUNCE.
            let Ok(r) = result else { return };
            let (Some(token), Some(id), Some(_), Some(kp)) =
                (r.token, r.from_id, r.value.as_ref(), s.key_pair.clone())
            else {
                return;
            };
            let target = s.target;
            let peer = Peer {
                public_key: kp.public_key(),
                relay_addresses: Vec::new(),
            };
            let signature = sign::sign_unannounce(&kp, &target, &id.0, &token, &peer, None);
            let mut spec = RequestSpec::new(relay, command::UNANNOUNCE);
            spec.token = Some(token);
            spec.target = Some(NodeId(target));
            spec.value = Some(
                Announce {
                    peer: Some(peer),
                    refresh: None,
                    signature: Some(signature),
                    bump: 0,
                }
                .to_bytes(),
            );
            // Nobody waits for the answer: an unknown request id is dropped on arrival.
            self.rpc.request(now, spec);
        }
    }

    /// Relays of the previous cycle that are not in the newest one lose our record.
    fn unannounce_stale_relays(&mut self, now: Instant, server: ServerId) {
        let Some(s) = self.connect.servers.get(&server) else {
            return;
        };
        let stale: Vec<SocketAddrV4> = s.relay_generations[1]
            .iter()
            .filter(|r| !s.relay_generations[2].contains(r))
            .copied()
            .collect();
        let target = s.target;
        for relay in stale {
            let mut spec = RequestSpec::new(relay, command::FIND_PEER);
            spec.target = Some(NodeId(target));
            let rid = self.rpc.request(now, spec);
            self.connect.server_requests.insert(rid, server);
            if let Some(s) = self.connect.servers.get_mut(&server) {
                s.unannounce_requests.insert(rid, relay);
            }
        }
    }

    /// Whether `addr` was a relay of this server in any of its last three announce cycles
    /// (`announcer.isRelay`).
    pub(super) fn is_server_relay(&self, server: ServerId, addr: &SocketAddrV4) -> bool {
        self.connect
            .servers
            .get(&server)
            .is_some_and(|s| s.relay_generations.iter().any(|g| g.contains(addr)))
    }

    fn after_announce(&mut self, now: Instant, server: ServerId) {
        let Some(s) = self.connect.servers.get_mut(&server) else {
            return;
        };
        s.ping_rounds = 0;
        s.next_relay_round = Some(now + RELAY_PING_INTERVAL);
        if !s.listening_emitted {
            s.listening_emitted = true;
            self.connect
                .events
                .push_back(ConnectEvent::Listening { server });
        }
    }

    fn server_timeouts(&mut self, now: Instant) {
        let due: Vec<ServerId> = self
            .connect
            .servers
            .iter()
            .filter(|(_, s)| s.next_relay_round.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for server in due {
            let Some(s) = self.connect.servers.get_mut(&server) else {
                continue;
            };
            let expected = s.relays.len().min(MAX_RELAYS);
            let answered = core::mem::take(&mut s.pings_answered);
            let lost = s.ping_rounds > 0 && answered < expected;
            s.ping_rounds += 1;
            if lost || s.ping_rounds > RELAY_PING_ROUNDS || s.relays.is_empty() {
                self.announce_server(now, server);
                continue;
            }
            s.next_relay_round = Some(now + RELAY_PING_INTERVAL);
            let relays: Vec<SocketAddrV4> = s.relays.iter().map(|r| r.relay_address).collect();
            for relay in relays {
                let mut spec = RequestSpec::new(relay, PING);
                spec.internal = true;
                spec.retries = Some(0);
                let rid = self.rpc.request(now, spec);
                self.connect.server_requests.insert(rid, server);
                if let Some(s) = self.connect.servers.get_mut(&server) {
                    s.relay_pings.insert(rid, ());
                }
            }
        }
        // Server streams nobody connected to in time.
        let expired: Vec<ConnId> = self
            .connect
            .conns
            .iter()
            .filter(|(_, c)| c.connect_deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for conn in expired {
            self.conn_forget(conn);
        }
    }

    /// `server.close()`: stop answering, and unannounce the server's record.
    pub fn close_server(&mut self, now: Instant, server: ServerId) -> Option<super::OpId> {
        let s = self.connect.servers.get_mut(&server)?;
        s.closing = true;
        s.next_relay_round = None;
        let kp = s.key_pair.clone();
        let target = s.target;
        self.connect.server_by_target.remove(&target);
        self.forwards.delete(&target);
        if let Some(q) = self
            .connect
            .servers
            .get_mut(&server)
            .and_then(|s| s.announce_query.take())
        {
            self.rpc.cancel_query(q);
        }
        self.connect.servers.remove(&server);
        kp.map(|kp| self.unannounce(now, target, &kp))
    }

    /// A PEER_HANDSHAKE for a server hosted here (`_onpeerhandshake`).
    pub(crate) fn on_server_handshake(
        &mut self,
        now: Instant,
        req: &IncomingRequest,
        env: HandshakeEnvelope,
        server: ServerId,
    ) {
        // Duplicates of a msg1 we answered (the client sends it through up to two relays at
        // once, and retransmits) get the same msg2, routed back the way each one came — to
        // its own relay, with its own peer address — as the reference's router does with the
        // reply `_onpeerhandshake` returns.
        if let Some(h) = self.connect.handshakes.get(&env.noise) {
            if let Some((socket, msg2)) = h.reply.clone() {
                if let Some((socket, to, value, relayed)) =
                    handshake_reply_route(req, &env, socket.unwrap_or(req.socket), msg2)
                {
                    self.send_handshake_reply(req, socket, to, value, relayed);
                }
            }
            return;
        }
        if self.connect.handshakes.len() >= MAX_SERVER_HANDSHAKES {
            return;
        }
        let Some(kp) = self
            .connect
            .servers
            .get(&server)
            .and_then(|s| s.key_pair.clone())
        else {
            return;
        };
        let mut hs = match Handshake::responder(&kp, self.rpc.rng()) {
            Ok(h) => h,
            Err(_) => return,
        };
        let Ok(client_payload) = hs.recv(&env.noise) else {
            return;
        };
        let Some(remote_pk) = hs.remote_public_key() else {
            return;
        };
        let client_address = if env.mode == mode::FROM_CLIENT {
            req.from
        } else {
            env.peer_address.unwrap_or(req.from)
        };
        let ask = self
            .connect
            .servers
            .get(&server)
            .is_some_and(|s| s.opts.firewall);
        let key = env.noise.clone();
        let pending = PendingHandshake {
            req: req.clone(),
            env,
            handshake: hs,
            client_payload,
            client_address,
        };
        if ask {
            let id = self.connect.next_handshake;
            self.connect.next_handshake += 1;
            self.connect.pending_firewall.insert(id, key.clone());
            self.connect.handshakes.insert(
                key,
                ServerHandshake {
                    server,
                    reply: None,
                    done_at: None,
                    pending: Some(pending),
                    punch: None,
                    holepunch_id: None,
                },
            );
            self.connect.events.push_back(ConnectEvent::Firewall {
                server,
                handshake: id,
                remote_public_key: remote_pk,
                client_address,
            });
            return;
        }
        self.connect.handshakes.insert(
            key.clone(),
            ServerHandshake {
                server,
                reply: None,
                done_at: None,
                pending: None,
                punch: None,
                holepunch_id: None,
            },
        );
        self.accept_handshake(now, server, key, pending);
    }

    /// Answers a [`ConnectEvent::Firewall`]: `reject = true` drops the handshake silently, as
    /// the reference's firewall returning true does.
    pub fn firewall_decision(&mut self, now: Instant, handshake: u64, reject: bool) {
        let Some(key) = self.connect.pending_firewall.remove(&handshake) else {
            return;
        };
        let Some(h) = self.connect.handshakes.get_mut(&key) else {
            return;
        };
        let Some(pending) = h.pending.take() else {
            return;
        };
        let server = h.server;
        if reject {
            h.done_at = Some(now);
            return;
        }
        self.accept_handshake(now, server, key, pending);
    }

    fn accept_handshake(
        &mut self,
        now: Instant,
        server: ServerId,
        key: Vec<u8>,
        p: PendingHandshake,
    ) {
        let PendingHandshake {
            req,
            env,
            mut handshake,
            client_payload,
            client_address,
        } = p;
        let error = if client_payload.version != 1 {
            ErrorCode::VERSION_MISMATCH
        } else if client_payload.udx.is_none() {
            ErrorCode::ABORTED
        } else {
            ErrorCode::NONE
        };
        let stream_id = if error == ErrorCode::NONE {
            self.new_stream_id()
        } else {
            0
        };
        let (relays, hide_local) = match self.connect.servers.get(&server) {
            Some(s) => (s.relays.clone(), s.opts.hide_local_addresses),
            None => return,
        };
        let firewall = self.our_firewall();
        // `relayAddresses`: our own address first when we are reachable, then the relays (≤ 3).
        let relay_addresses: Vec<SocketAddrV4> = self
            .rpc
            .remote_address()
            .filter(|_| !self.rpc.is_firewalled())
            .into_iter()
            .chain(relays.iter().map(|r| r.relay_address))
            .take(MAX_RELAYS)
            .collect();
        let holepunch_id = (firewall != Firewall::OPEN).then(|| self.alloc_holepunch_id(&key));
        if let Some(h) = self.connect.handshakes.get_mut(&key) {
            h.holepunch_id = holepunch_id;
        }
        let payload = NoisePayload {
            error,
            firewall,
            holepunch: holepunch_id.map(|id| HolepunchInfo {
                id,
                relays: relays.clone(),
            }),
            addresses4: self.our_addresses(!hide_local),
            udx: Some(UdxInfo::new(stream_id, false)),
            secret_stream: Some(SecretStreamInfo::default()),
            relay_addresses: (!relay_addresses.is_empty()).then_some(relay_addresses),
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
        let direct = env.mode == mode::FROM_CLIENT;
        let connect_now = direct || client_payload.firewall == Firewall::OPEN;
        let mut puncher = None;
        let mut reply_from_puncher = false;
        if error == ErrorCode::NONE && !connect_now {
            let lan = !hide_local
                && self.server_lan_match(&client_payload.addresses4, client_address, req.to);
            if lan || firewall != Firewall::OPEN {
                puncher = self.new_server_puncher(client_payload.firewall);
                reply_from_puncher = !lan;
            }
        }
        let puncher_socket = match puncher.as_ref().and_then(|p| p.socket()) {
            Some(s) if reply_from_puncher => Some(socket_kind(s)),
            _ => None,
        };

        // The reply travels back the way the handshake came.
        let Some((socket, to, value, relayed)) = handshake_reply_route(
            &req,
            &env,
            puncher_socket.unwrap_or(req.socket),
            msg2.clone(),
        ) else {
            if let Some(p) = puncher {
                self.retire_puncher(now, p);
            }
            return;
        };
        if let Some(h) = self.connect.handshakes.get_mut(&key) {
            h.reply = Some((puncher_socket, msg2));
            h.done_at = Some(now);
        }
        self.send_handshake_reply(&req, socket, to, value, relayed);
        if error != ErrorCode::NONE {
            return;
        }
        let Some(client_udx) = client_payload.udx.as_ref().map(|u| u.id as u32) else {
            return;
        };
        let conn = ConnId(self.connect.next_conn);
        self.connect.next_conn += 1;
        self.connect
            .udx
            .insert(UdxStream::new(stream_id, now, connection_stream_config()));
        if connect_now {
            let sock = if direct {
                udx_socket(req.socket)
            } else {
                udx_socket(self.rpc.primary_socket())
            };
            if let Some(s) = self.connect.udx.get_mut(stream_id) {
                let _ = s.connect_via(now, sock, client_udx, SocketAddr::V4(client_address));
            }
            self.start_conn(now, conn, stream_id, result, Some(server));
            return;
        }
        // Wait for the client's first UDX packet (LAN shortcut or punching on its side).
        let secret = result.holepunch_secret;
        self.start_pending_server_conn(now, conn, stream_id, result, server, client_udx);
        if let Some(p) = puncher {
            self.attach_server_punch(now, &key, p, secret, conn);
        }
    }

    fn send_handshake_reply(
        &mut self,
        req: &IncomingRequest,
        socket: SocketKind,
        to: SocketAddrV4,
        value: Vec<u8>,
        relayed: bool,
    ) {
        if relayed {
            self.rpc.relay(req, Some(value), to, Some(socket));
        } else {
            let mut spec = bare_to(to, value);
            spec.socket = Some(socket);
            self.rpc.reply(req, spec);
        }
    }

    fn start_pending_server_conn(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        handshake: HandshakeResult,
        server: ServerId,
        client_udx: u32,
    ) {
        let secret = SecretStream::from_handshake(
            &handshake,
            &stream::Config::default(),
            now,
            self.rpc.rng(),
        );
        self.connect.by_stream.insert(stream_id, conn);
        self.connect.pending_remote.insert(conn, client_udx);
        let deadline = Some(now + SERVER_CONNECT_WAIT);
        self.connect.conns.insert(
            conn,
            Conn::new(stream_id, handshake, Some(server), secret, deadline),
        );
    }
}

impl ConnectState {
    pub(crate) fn attempt_for_query(&mut self, q: &QueryId) -> Option<ConnId> {
        self.attempt_queries.get(q).copied()
    }

    pub(crate) fn take_attempt_query(&mut self, q: &QueryId) -> Option<ConnId> {
        self.attempt_queries.remove(q)
    }

    pub(crate) fn take_attempt_request(&mut self, r: &RequestId) -> Option<ConnId> {
        self.attempt_requests.remove(r)
    }

    pub(crate) fn server_ids(&self) -> Vec<ServerId> {
        self.servers.keys().copied().collect()
    }

    pub(crate) fn is_server_query(&self, q: &QueryId) -> bool {
        self.server_queries.contains_key(q)
    }

    pub(crate) fn server_for_query(&mut self, q: &QueryId) -> Option<ServerId> {
        self.server_queries.remove(q)
    }

    pub(crate) fn server_for_request(&mut self, r: &RequestId) -> Option<ServerId> {
        self.server_requests.remove(r)
    }

    pub(crate) fn server_for_target(&self, target: &[u8; 32]) -> Option<ServerId> {
        self.server_by_target.get(target).copied()
    }
}

/// Hands secret-stream output to UDX one frame per record, so no packet holds part of a frame
/// with another (see [`UdxStream::write_record`]). Callers have checked the send buffer has
/// room for all of it.
fn write_frames(s: &mut UdxStream, out: &[u8]) {
    for frame in stream::split_frames(out) {
        let _ = s.write_record(frame);
    }
}
