//! Established connections: a UDX stream carrying a secret stream, from the moment a connect
//! or a server's handshake chose its path until it is forgotten.
//!
//! [`Connections`] holds them all with the node's UDX [`Demux`] (one socket carries many
//! streams, and dht-rpc besides), so a [`Connection`] borrows its stream from the demux for
//! each call. The node feeds it: datagrams (through the demux), timers, and the application's
//! reads, writes and ends; a [`Connection`] reports what changed ([`ReadProgress`]) and the
//! node turns that into [`ConnectEvent`](super::ConnectEvent)s — it alone knows whether a
//! connection that failed before opening was a client's connect still in progress.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::SocketAddr;
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};

use super::budget::ConnectionBudget;
use super::ids::{ConnId, ServerId};
use crate::connect::HandshakeResult;
use crate::secret_stream::{self, SecretStream, SecretStreamError};
use crate::timer_queue::TimerQueue;
use crate::udx::{self, Demux, StreamConfig, UdxStream};
use crate::Instant;

/// Decrypted bytes held for the application before UDX reads stop (back-pressure).
const READ_BUFFER: usize = 256 * 1024;
/// Ciphertext fed to the secret stream per call when a frame has to be taken piecewise.
const RAW_READ_CHUNK: usize = 64 * 1024;
/// A frame up to this long (prefix included) is left in UDX's receive buffer until it is
/// complete (if the receive window has room for it), then decrypted in one piece.
const WHOLE_FRAME_WAIT: usize = 256 * 1024;
/// Plaintext per secret-stream frame when writing.
const WRITE_CHUNK: usize = 64 * 1024;
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
pub(crate) fn connection_stream_config() -> StreamConfig {
    StreamConfig {
        idle_timeout: Some(CONNECTION_IDLE_TIMEOUT),
        ..StreamConfig::default()
    }
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

/// Why a connection closed or an I/O call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// The transport failed (timeout, reset).
    #[error("transport: {0}")]
    Transport(udx::StreamError),
    /// The secret stream failed (bad frame, decryption).
    #[error("secret stream: {0}")]
    Crypto(SecretStreamError),
    /// The connection is not open (yet, or any more).
    #[error("connection not open")]
    NotOpen,
    /// This side already ended writing.
    #[error("write after end")]
    Ended,
    /// Destroyed locally.
    #[error("destroyed")]
    Destroyed,
    /// A message write on a connection that is not message-framed
    /// ([`DhtNode::conn_set_message_framing`](super::DhtNode::conn_set_message_framing)).
    #[error("connection is not message-framed")]
    NotMessageFramed,
    /// A message longer than one secret-stream frame may carry.
    #[error("message of {len} bytes exceeds {max}")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The most one message may hold.
        max: usize,
    },
}

/// What one pass of [`Connections::pump_read`] changed, in the order the node reports it.
#[derive(Debug, Default)]
pub(crate) struct ReadProgress {
    /// The secret stream failed: the connection must close with this error (nothing else
    /// below is reported then).
    pub(crate) error: Option<SecretStreamError>,
    /// The peer's header arrived: the connection is open from now on.
    pub(crate) opened: bool,
    /// Decrypted bytes wait for the application.
    pub(crate) readable: bool,
    /// The peer's end was reached (every byte before it decrypted).
    pub(crate) ended: bool,
}

/// How a connection stopped, for the node to report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopped {
    /// The owner had been told it opened (a connect's `Open`, sent when its stream started).
    pub(crate) announced: bool,
    /// We are the client.
    pub(crate) initiator: bool,
}

/// One connection: the secret stream over the UDX stream `stream_id`, and what the application
/// has not read yet.
#[derive(Debug)]
pub(crate) struct Connection {
    stream_id: u32,
    server: Option<ServerId>,
    /// The secret stream keeps what the connection reports of its handshake (keys, hash): the
    /// handshake's result is not kept beside it (an idle connection's memory).
    secret: SecretStream,
    /// Decrypted, not yet read by the application.
    plain: Plain,
    /// Message-framed (Protomux over the secret stream): decrypted messages, whole, instead
    /// of `plain`; `None` for a byte stream.
    messages: Option<Box<Messages>>,
    opened: bool,
    /// A connect's `Open` was reported (when its stream started, as the reference's secret
    /// stream opens then: writes go right behind our header, not after the peer's).
    announced: bool,
    remote_ended: bool,
    /// UDX reported the peer's END; `remote_ended` follows once every byte before it has been
    /// pulled through the secret stream (the plaintext buffer may have stopped the pump).
    udx_ended: bool,
    local_ended: bool,
    closed: bool,
    /// Why it closed, if not gracefully: reads (once the buffered bytes are read) and writes
    /// then fail with it, never a clean end.
    close_error: Option<ConnError>,
    /// A server connection waiting for the client's first packet: the client's stream id.
    waiting_for: Option<u32>,
    /// A waiting server connection is dropped if no packet arrives by then.
    connect_deadline: Option<Instant>,
    want_writable: bool,
    /// The application waits until everything written is acknowledged (see
    /// [`Connections::flushed`]).
    want_flushed: bool,
}

/// Decrypted bytes not yet read: the secret stream decrypts straight into `buf` (frames land
/// at its end), the application reads from `head`. Reset whenever it is read empty; the dead
/// front is dropped once it outweighs the live bytes, so it stays within about twice
/// [`READ_BUFFER`] plus a frame.
#[derive(Debug, Default)]
struct Plain {
    buf: Vec<u8>,
    head: usize,
}

impl Plain {
    fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer to append decrypted bytes to.
    fn tail(&mut self) -> &mut Vec<u8> {
        if self.head > 0 && self.head >= self.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        &mut self.buf
    }

    /// Copies out up to `dst.len()` bytes.
    fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        dst[..n].copy_from_slice(&self.buf[self.head..self.head + n]);
        self.head += n;
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
            // Read empty: a small buffer is freed (an idle connection holds none).
            if self.buf.capacity() <= udx::RELEASE_DRAINED_MAX {
                self.buf = Vec::new();
            }
        }
        n
    }
}

/// The decrypted messages of a message-framed connection, not yet read.
#[derive(Debug, Default)]
struct Messages {
    queue: VecDeque<Vec<u8>>,
    /// Bytes held in `queue` (bounded by [`READ_BUFFER`] like `plain`).
    bytes: usize,
}

impl Connection {
    /// Decrypted bytes waiting for the application, in either framing.
    fn buffered(&self) -> usize {
        self.plain.len() + self.messages.as_ref().map_or(0, |m| m.bytes)
    }
}

/// Scratch buffers shared by every connection: no allocation per read or write.
#[derive(Debug, Default)]
struct Scratch {
    /// Secret-stream output on its way into UDX.
    frames: Vec<u8>,
}

/// A connection's own deadline: its first-packet wait or its secret stream's timer.
fn conn_deadline(c: &Connection) -> Option<Instant> {
    [c.connect_deadline, c.secret.poll_timeout()]
        .into_iter()
        .flatten()
        .min()
}

/// The connections by id, with their deadlines in a [`TimerQueue`]: every mutable access
/// touches the connection's entry, so the earliest deadline and the due connections are found
/// without walking every connection.
#[derive(Debug, Default)]
struct ConnMap {
    /// Boxed, like the demux's streams: a connection is a kilobyte, and half-empty B-tree
    /// nodes would hold as much again in empty slots.
    map: BTreeMap<ConnId, Box<Connection>>,
    /// Interior: [`Connections::poll_timeout`] takes `&self`.
    timers: RefCell<TimerQueue<ConnId>>,
}

impl ConnMap {
    fn get(&self, id: &ConnId) -> Option<&Connection> {
        self.map.get(id).map(|c| &**c)
    }

    fn get_mut(&mut self, id: &ConnId) -> Option<&mut Connection> {
        let c = self.map.get_mut(id)?;
        self.timers.get_mut().touch(*id);
        Some(&mut **c)
    }

    fn insert(&mut self, id: ConnId, c: Connection) -> Option<Connection> {
        self.timers.get_mut().touch(id);
        self.map.insert(id, Box::new(c)).map(|c| *c)
    }

    fn remove(&mut self, id: &ConnId) -> Option<Connection> {
        self.timers.get_mut().remove(*id);
        self.map.remove(id).map(|c| *c)
    }

    fn contains_key(&self, id: &ConnId) -> bool {
        self.map.contains_key(id)
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&ConnId, &Connection)> {
        self.map.iter().map(|(id, c)| (id, &**c))
    }

    /// The earliest connection deadline.
    fn poll_timeout(&self) -> Option<Instant> {
        let mut timers = self.timers.borrow_mut();
        let map = &self.map;
        timers.refresh(|id| map.get(&id).and_then(|c| conn_deadline(c)));
        timers.next()
    }

    /// The connections whose deadline is due, in id order.
    fn take_due(&mut self, now: Instant) -> Vec<ConnId> {
        let map = &self.map;
        let timers = self.timers.get_mut();
        timers.refresh(|id| map.get(&id).and_then(|c| conn_deadline(c)));
        timers.take_due(now)
    }
}

/// Every connection of a node and the UDX streams under them.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    /// The node's UDX streams (connections', and client connects' not yet connected).
    pub(crate) udx: Demux,
    conns: ConnMap,
    /// Connections with a writer stopped short or a waiter for [`flushed`](Self::flushed)
    /// (`want_writable` / `want_flushed`): the only ones [`take_writable`](Self::take_writable)
    /// looks at.
    waiting: BTreeSet<ConnId>,
    by_stream: BTreeMap<u32, ConnId>,
    /// UDX streams of forgotten connections that still have something to send (a DESTROY,
    /// acknowledgements) or linger; removed once drained.
    retiring: Vec<u32>,
    scratch: Scratch,
    /// The node-wide bound on the streams' windows and send buffers.
    budget: ConnectionBudget,
}

/// Hands secret-stream output to UDX one frame per record, so no packet holds part of a frame
/// with another (see [`UdxStream::write_record`]). Callers have checked the send buffer has
/// room for all of it.
fn write_frames(s: &mut UdxStream, out: &[u8]) {
    for frame in secret_stream::split_frames(out) {
        let _ = s.write_record(frame);
    }
}

/// Whether the peer acknowledged everything written to `s`, and its END if `ended`.
fn acked_all(s: &UdxStream, ended: bool) -> bool {
    s.send_buffered() == 0 && (!ended || s.is_end_acked())
}

/// Whether a writer stopped short may resume: a whole frame fits (see `write`).
fn room_for_a_frame(s: &UdxStream) -> bool {
    let overhead = secret_stream::frame_len(0) + secret_stream::HEADER_FRAME_LEN;
    s.send_capacity() >= overhead + WRITE_CHUNK.min(s.send_buffer_limit() / 4)
}

impl Connections {
    /// No connections, under `budget`.
    pub(crate) fn with_budget(budget: ConnectionBudget) -> Self {
        Connections {
            budget,
            ..Connections::default()
        }
    }

    /// The settings of a new connection's UDX stream, sized by what is left of the buffer
    /// budget; `None` when it is spent.
    pub(crate) fn stream_config(&self) -> Option<StreamConfig> {
        self.budget
            .size(self.udx.buffer_reservation(), connection_stream_config())
    }

    /// The buffer budget's bound.
    pub(crate) fn budget_limit(&self) -> usize {
        self.budget.limit
    }

    /// Whether the buffer budget is spent (no new stream fits).
    pub(crate) fn budget_spent(&self) -> bool {
        !self.budget.fits(self.udx.buffer_reservation())
    }

    /// Connections (pending or open).
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether `conn` is a connection (not only a connect in progress).
    pub(crate) fn contains(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The connection over UDX stream `stream_id`.
    pub(crate) fn by_stream(&self, stream_id: u32) -> Option<ConnId> {
        self.by_stream.get(&stream_id).copied()
    }

    /// The connections whose own timer (first-packet wait, secret-stream keep-alive) is due,
    /// in id order: the only ones whose [`wait_expired`](Self::wait_expired) or
    /// [`handle_secret_timeout`](Self::handle_secret_timeout) does anything at `now`.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<ConnId> {
        self.conns.take_due(now)
    }

    /// The server that accepted `conn` (`None` for our own connects).
    pub(crate) fn server_of(&self, conn: ConnId) -> Option<ServerId> {
        self.conns.get(&conn).and_then(|c| c.server)
    }

    /// A fresh, nonzero stream id not in use.
    pub(crate) fn new_stream_id<R: RngCore>(&self, rng: &mut R) -> u32 {
        loop {
            let id = rng.next_u32();
            if id != 0 && !self.udx.contains(id) {
                return id;
            }
        }
    }

    /// Opens the connection `conn` over the already connected stream `stream_id`: the secret
    /// stream starts and sends its header.
    pub(crate) fn open<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        handshake: HandshakeResult,
        server: Option<ServerId>,
        rng: &mut R,
    ) {
        self.insert(now, conn, stream_id, handshake, server, None, rng);
        self.flush_secret(conn);
    }

    /// A server connection whose client connects to us (LAN shortcut, or punching on its
    /// side): it waits for the client's first UDX packet (stream `client_udx`) until
    /// `deadline`.
    #[allow(clippy::too_many_arguments)] // the accepted handshake's outcome, field by field
    pub(crate) fn open_waiting<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        handshake: HandshakeResult,
        server: ServerId,
        client_udx: u32,
        deadline: Instant,
        rng: &mut R,
    ) {
        self.insert(
            now,
            conn,
            stream_id,
            handshake,
            Some(server),
            Some((client_udx, deadline)),
            rng,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn insert<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        handshake: HandshakeResult,
        server: Option<ServerId>,
        waiting: Option<(u32, Instant)>,
        rng: &mut R,
    ) {
        let secret =
            SecretStream::from_handshake(&handshake, &secret_stream::Config::default(), now, rng);
        self.by_stream.insert(stream_id, conn);
        self.conns.insert(
            conn,
            Connection {
                stream_id,
                server,
                secret,
                plain: Plain::default(),
                messages: None,
                opened: false,
                announced: false,
                remote_ended: false,
                udx_ended: false,
                local_ended: false,
                closed: false,
                close_error: None,
                waiting_for: waiting.map(|(id, _)| id),
                connect_deadline: waiting.map(|(_, d)| d),
                want_writable: false,
                want_flushed: false,
            },
        );
    }

    /// Whether `conn`'s secret stream opened (the peer's header arrived).
    pub(crate) fn is_opened(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.opened)
    }

    /// Whether `conn`'s owner was told it opened.
    pub(crate) fn is_announced(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.announced)
    }

    /// Records that `conn`'s owner was told it opened; false if it already was (or is gone).
    pub(crate) fn announce(&mut self, conn: ConnId) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if !c.announced => {
                c.announced = true;
                true
            }
            _ => false,
        }
    }

    /// `conn`'s UDX stream id.
    pub(crate) fn stream_of(&self, conn: ConnId) -> Option<u32> {
        self.conns.get(&conn).map(|c| c.stream_id)
    }

    /// Changes `conn`'s keep-alive interval (`setKeepAlive`; `None` or zero: off).
    pub(crate) fn set_keep_alive(
        &mut self,
        now: Instant,
        conn: ConnId,
        interval: Option<Duration>,
    ) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.secret.set_keep_alive(interval, now);
        }
    }

    /// The client's stream id a waiting server connection expects a first packet from.
    pub(crate) fn waiting_for(&self, conn: ConnId) -> Option<u32> {
        self.conns.get(&conn).and_then(|c| c.waiting_for)
    }

    /// The client's first packet arrived: the connection no longer waits.
    pub(crate) fn attached(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.waiting_for = None;
            c.connect_deadline = None;
        }
    }

    /// A holepunch runs for this waiting connection: punching may take longer than the
    /// first-packet wait, so it waits for the punch instead.
    pub(crate) fn wait_for_punch(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.connect_deadline = None;
        }
    }

    /// Moves the secret stream's own output (header, keep-alive) into the UDX stream.
    pub(crate) fn flush_secret(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let out = &mut self.scratch.frames;
        out.clear();
        if c.secret.poll_transmit(out) {
            if let Some(s) = self.udx.get_mut(c.stream_id) {
                // Header and keep-alive frames are tiny; the send buffer always has room for them.
                write_frames(s, out);
            }
        }
    }

    /// `conn`'s secret-stream message bytes read and written (`rawBytesRead`,
    /// `rawBytesWritten`: frames after the header, keep-alives included).
    pub(crate) fn raw_bytes(&self, conn: ConnId) -> Option<(u64, u64)> {
        let c = self.conns.get(&conn)?;
        Some((c.secret.raw_bytes_read(), c.secret.raw_bytes_written()))
    }

    /// Sends an empty message frame on `conn` now (`sendKeepAlive()`).
    pub(crate) fn send_keep_alive(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.secret.queue_keep_alive();
            self.flush_secret(conn);
        }
    }

    /// What is known about `conn`.
    pub(crate) fn info(&self, conn: ConnId) -> Option<ConnectionInfo> {
        let c = self.conns.get(&conn)?;
        Some(ConnectionInfo {
            public_key: *c.secret.public_key(),
            remote_public_key: *c.secret.remote_public_key(),
            handshake_hash: *c.secret.handshake_hash(),
            is_initiator: c.secret.is_initiator(),
            remote_address: self.udx.get(c.stream_id).and_then(|s| s.remote_addr()),
        })
    }

    /// Transport state of `conn`'s UDX stream.
    pub(crate) fn transport(&self, conn: ConnId) -> Option<TransportInfo> {
        let c = self.conns.get(&conn)?;
        let s = self.udx.get(c.stream_id)?;
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
    pub(crate) fn pump_read(&mut self, now: Instant, conn: ConnId) -> ReadProgress {
        let mut progress = ReadProgress::default();
        let Some(c) = self.conns.get_mut(&conn) else {
            return progress;
        };
        let Some(s) = self.udx.get_mut(c.stream_id) else {
            return progress;
        };
        while c.buffered() < READ_BUFFER {
            // Frames are decrypted where they lie in UDX's receive buffer, whole frames at a
            // time when possible (then the plaintext is the only copy made).
            let avail = s.peek_readable();
            if avail.is_empty() {
                break;
            }
            let room = READ_BUFFER - c.buffered();
            let feed = match c.secret.whole_frames_len(avail, room) {
                Some(0) => {
                    // Only part of the next frame is here. Wait for the rest if it is small
                    // and the receive window has room for it, else take it piecewise.
                    let want = match avail {
                        [x, y, z, ..] => 3 + secret_stream::frame_body_len([*x, *y, *z]),
                        _ => 3,
                    };
                    if !c.udx_ended
                        && want <= WHOLE_FRAME_WAIT
                        && s.recv_room() >= want - avail.len()
                    {
                        s.consume(0);
                        break;
                    }
                    avail.len().min(RAW_READ_CHUNK)
                }
                Some(n) => n,
                None => avail.len().min(RAW_READ_CHUNK),
            };
            let data = &avail[..feed];
            let r = match c.messages.as_mut() {
                None => c.secret.read(data, now, c.plain.tail()).map(|_| ()),
                Some(m) => c.secret.read_messages(data, now, |msg| {
                    m.bytes += msg.len();
                    m.queue.push_back(msg.to_vec());
                }),
            };
            s.consume(feed);
            if let Err(e) = r {
                progress.error = Some(e);
                break;
            }
        }
        if progress.error.is_some() {
            return progress;
        }
        if c.udx_ended && !c.remote_ended && s.readable_bytes() == 0 {
            progress.ended = true;
            c.remote_ended = true;
            // A truncated last frame is dropped, as before.
            let _ = c.secret.handle_remote_end();
        }
        if !c.opened && c.secret.remote_header_received() {
            c.opened = true;
            progress.opened = true;
        }
        progress.readable =
            !c.plain.is_empty() || c.messages.as_ref().is_some_and(|m| !m.queue.is_empty());
        progress
    }

    /// Makes `conn` message-framed: from now on each decrypted secret-stream message is kept
    /// whole ([`pop_message`](Self::pop_message)) instead of joining the byte stream. Bytes
    /// already decrypted stay readable as bytes.
    pub(crate) fn set_message_framing(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.messages.get_or_insert_with(Box::default);
        }
    }

    /// Whether `conn` is message-framed.
    pub(crate) fn is_message_framed(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.messages.is_some())
    }

    /// The next decrypted message of a message-framed connection.
    pub(crate) fn pop_message(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        let m = self.conns.get_mut(&conn)?.messages.as_mut()?;
        let msg = m.queue.pop_front()?;
        m.bytes -= msg.len();
        Some(msg)
    }

    /// Encrypts `msg` as one secret-stream message (one Protomux frame). `Ok(false)` when the
    /// transport has no room for it now (the connection reports
    /// [`ConnectEvent::Writable`](super::ConnectEvent::Writable) when it may resume).
    pub(crate) fn write_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: &[u8],
    ) -> Result<bool, ConnError> {
        let c = self.conns.get_mut(&conn).ok_or(ConnError::NotOpen)?;
        if c.messages.is_none() {
            return Err(ConnError::NotMessageFramed);
        }
        if c.closed {
            return Err(c.close_error.clone().unwrap_or(ConnError::NotOpen));
        }
        if c.local_ended {
            return Err(ConnError::Ended);
        }
        let Some(s) = self.udx.get_mut(c.stream_id) else {
            return Err(ConnError::NotOpen);
        };
        let max = secret_stream::MAX_WRITE.min(s.send_buffer_limit() / 2);
        if msg.len() > max {
            return Err(ConnError::MessageTooLarge {
                len: msg.len(),
                max,
            });
        }
        let overhead = secret_stream::frame_len(0) + secret_stream::HEADER_FRAME_LEN;
        if s.send_capacity() < overhead + msg.len() {
            c.want_writable = true;
            self.waiting.insert(conn);
            return Ok(false);
        }
        let out = &mut self.scratch.frames;
        out.clear();
        c.secret.write(msg, now, out).map_err(ConnError::Crypto)?;
        write_frames(s, out);
        Ok(true)
    }

    /// UDX reported the peer's END on `conn`'s stream.
    pub(crate) fn udx_ended(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.udx_ended = true;
        }
    }

    /// Whether the plaintext buffer has room for another pump.
    pub(crate) fn has_read_room(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.buffered() < READ_BUFFER)
    }

    /// Copies decrypted bytes out.
    pub(crate) fn copy_plain(&mut self, conn: ConnId, buf: &mut [u8]) -> Result<usize, ConnError> {
        let c = self.conns.get_mut(&conn).ok_or(ConnError::NotOpen)?;
        let n = c.plain.read(buf);
        Ok(n)
    }

    /// After a read returned nothing: a connection that closed without the peer's end fails
    /// the read instead of ending it.
    pub(crate) fn check_read_end(
        &self,
        conn: ConnId,
        n: usize,
        buf_len: usize,
    ) -> Result<usize, ConnError> {
        let c = self.conns.get(&conn).ok_or(ConnError::NotOpen)?;
        if n == 0 && buf_len > 0 && !c.remote_ended && c.closed && c.buffered() == 0 {
            return Err(c.close_error.clone().unwrap_or(ConnError::NotOpen));
        }
        Ok(n)
    }

    /// Bytes ready to read.
    pub(crate) fn readable(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.plain.len())
    }

    /// Whether the peer ended and everything has been read.
    pub(crate) fn at_end(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_none_or(|c| {
            let udx_drained = self
                .udx
                .get(c.stream_id)
                .is_none_or(|s| s.readable_bytes() == 0);
            // A close without the peer's end is an error, never a clean end of stream.
            (c.remote_ended || (c.closed && c.close_error.is_none()))
                && c.buffered() == 0
                && udx_drained
        })
    }

    /// Encrypts and queues as much of `data` as the transport has room for; a short count is
    /// back-pressure (the connection then reports when it may resume, see
    /// [`take_writable`](Self::take_writable)).
    pub(crate) fn write(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
    ) -> Result<usize, ConnError> {
        let c = self.conns.get_mut(&conn).ok_or(ConnError::NotOpen)?;
        if c.closed {
            return Err(c.close_error.clone().unwrap_or(ConnError::NotOpen));
        }
        if c.local_ended {
            return Err(ConnError::Ended);
        }
        let Some(s) = self.udx.get_mut(c.stream_id) else {
            return Err(ConnError::NotOpen);
        };
        let mut written = 0;
        let out = &mut self.scratch.frames;
        let overhead = secret_stream::frame_len(0) + secret_stream::HEADER_FRAME_LEN;
        // The smallest frame cut while more data waits (a blocked writer is woken once this
        // much fits, see `take_writable`): a whole WRITE_CHUNK, or a quarter of a smaller
        // buffer.
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
            c.secret
                .write(&data[written..written + n], now, out)
                .map_err(ConnError::Crypto)?;
            // The capacity check above guarantees the whole frame fits.
            write_frames(s, out);
            written += n;
        }
        if written < data.len() {
            c.want_writable = true;
            self.waiting.insert(conn);
        }
        Ok(written)
    }

    /// Ends our side (half-close): the peer reads to the end, then `0`.
    pub(crate) fn end(&mut self, conn: ConnId) -> Result<(), ConnError> {
        let c = self.conns.get_mut(&conn).ok_or(ConnError::NotOpen)?;
        if c.closed {
            // Too late to end: a connection that broke says why (a timeout, a reset).
            return c.close_error.clone().map_or(Ok(()), Err);
        }
        if c.local_ended {
            return Ok(());
        }
        c.local_ended = true;
        let mut out = Vec::new();
        let _ = c.secret.end(&mut out);
        if let Some(s) = self.udx.get_mut(c.stream_id) {
            write_frames(s, &out);
            let _ = s.end();
        }
        Ok(())
    }

    /// Destroys both streams of `conn` at once (DESTROY to the peer).
    pub(crate) fn destroy(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let Some(s) = self.udx.get_mut(c.stream_id) {
                s.destroy();
            }
            c.secret.destroy();
        }
    }

    /// Whether `conn` closed.
    pub(crate) fn is_closed(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.closed)
    }

    /// Whether we ended our side of `conn`.
    pub(crate) fn local_ended(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.local_ended)
    }

    /// The connections not closed yet.
    pub(crate) fn open_ids(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.closed)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Marks `conn` closed, with `error` unless gracefully (the UDX stream is then destroyed,
    /// or, when the peer went quiet, reset); `None` if it was already closed or is unknown.
    pub(crate) fn close(&mut self, conn: ConnId, error: Option<ConnError>) -> Option<Stopped> {
        let c = self.conns.get_mut(&conn)?;
        if c.closed {
            return None;
        }
        c.closed = true;
        if let Some(s) = self.udx.get_mut(c.stream_id) {
            match &error {
                // The peer went quiet: if it can still hear us (a NAT that moved our mapping,
                // a one-way outage), a DESTROY tells it at once instead of after its own timeout.
                Some(ConnError::Transport(udx::StreamError::TimedOut)) => s.reset_peer(),
                Some(_) => s.destroy(),
                None => {}
            }
        }
        c.close_error = error;
        Some(Stopped {
            announced: c.announced,
            initiator: c.secret.is_initiator(),
        })
    }

    /// Forgets `conn`. Its UDX stream is destroyed if still open and retires: it stays until
    /// what it still has to send (a DESTROY not sent yet, acknowledgements while it lingers)
    /// went out, or the peer would wait for its own timeout (see
    /// [`sweep_retiring`](Self::sweep_retiring)).
    pub(crate) fn forget(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.by_stream.remove(&c.stream_id);
        if let Some(s) = self.udx.get_mut(c.stream_id) {
            if !s.is_closed() {
                s.destroy();
            }
            self.retiring.push(c.stream_id);
        }
    }

    /// Removes the retiring streams that have nothing left to send; returns the sockets they
    /// ran over (a pool socket may then close).
    pub(crate) fn sweep_retiring(&mut self) -> Vec<Option<udx::SocketId>> {
        let mut released = Vec::new();
        let udx = &mut self.udx;
        self.retiring.retain(|&id| {
            if !udx.get(id).is_some_and(|s| s.is_drained()) {
                return udx.contains(id);
            }
            if let Some(s) = udx.remove(id) {
                released.push(s.socket());
            }
            false
        });
        released
    }

    /// Drops a connection entry without touching its stream (a connect that failed owns the
    /// stream and removes it itself).
    pub(crate) fn remove_entry(&mut self, conn: ConnId, stream_id: u32) {
        self.conns.remove(&conn);
        self.by_stream.remove(&stream_id);
    }

    /// Connections whose UDX stream runs over `socket`.
    pub(crate) fn over_socket(&self, socket: udx::SocketId) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| self.udx.get(c.stream_id).and_then(|s| s.socket()) == Some(socket))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether a waiting connection's first-packet deadline passed.
    pub(crate) fn wait_expired(&self, conn: ConnId, now: Instant) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.connect_deadline.is_some_and(|d| d <= now))
    }

    /// Runs the secret stream's due timer (keep-alive, idle timeout) and sends what it wrote.
    pub(crate) fn handle_secret_timeout(
        &mut self,
        now: Instant,
        conn: ConnId,
    ) -> Result<(), SecretStreamError> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        if c.secret.poll_timeout().is_none_or(|t| t > now) {
            return Ok(());
        }
        c.secret.handle_timeout(now)?;
        self.flush_secret(conn);
        Ok(())
    }

    /// Whether the peer acknowledged every byte written to `conn` — and our end, once we
    /// ended. A connection closed gracefully is flushed (its close waited for that); one that
    /// closed with an error fails with it. While not flushed, the connection remembers that
    /// someone waits (see [`take_writable`](Self::take_writable)).
    pub(crate) fn flushed(&mut self, conn: ConnId) -> Result<bool, ConnError> {
        let c = self.conns.get_mut(&conn).ok_or(ConnError::NotOpen)?;
        if c.closed {
            return match &c.close_error {
                None => Ok(true),
                Some(e) => Err(e.clone()),
            };
        }
        let done = self
            .udx
            .get(c.stream_id)
            .is_none_or(|s| acked_all(s, c.local_ended));
        c.want_flushed = !done;
        if !done {
            self.waiting.insert(conn);
        }
        Ok(done)
    }

    /// Writers stopped short (we never hand UDX more than it has room for, so it never reports
    /// a short write itself) that may resume now that acknowledgements freed room, then
    /// connections whose waiters for [`flushed`](Self::flushed) may look again.
    pub(crate) fn take_writable(&mut self) -> (Vec<ConnId>, Vec<ConnId>) {
        let mut resumed = Vec::new();
        let mut flushed = Vec::new();
        let udx = &self.udx;
        let conns = &mut self.conns.map;
        self.waiting.retain(|conn| {
            let Some(c) = conns.get_mut(conn) else {
                return false;
            };
            let s = udx.get(c.stream_id);
            if c.want_writable && s.is_some_and(room_for_a_frame) {
                c.want_writable = false;
                resumed.push(*conn);
            }
            if c.want_flushed && c.closed {
                // Its Closed event answers the waiter.
                c.want_flushed = false;
            } else if c.want_flushed && s.is_none_or(|s| acked_all(s, c.local_ended)) {
                c.want_flushed = false;
                flushed.push(*conn);
            }
            c.want_writable || c.want_flushed
        });
        (resumed, flushed)
    }

    /// The earliest connection timer (UDX streams, secret streams, first-packet waits).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [self.udx.poll_timeout(), self.conns.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
}
