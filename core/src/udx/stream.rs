//! One UDX stream as a sans-IO state machine.
//!
//! Inputs: [`UdxStream::handle_packet`] (a decoded datagram for this stream's id),
//! [`UdxStream::handle_timeout`], and the application calls (`write`, `read`, `end`,
//! `send_message`, `destroy`, `connect`, `change_remote`). Outputs:
//! [`UdxStream::poll_transmit`] (one datagram at a time, written into the caller's buffer),
//! [`UdxStream::poll_timeout`] and [`UdxStream::poll_event`]. Time is always passed in.
//!
//! Behaviour follows libudx (spec 04 §1.7, §2): no handshake, seq 0 both ways, one immediate
//! standalone ACK for DATA/END received (with SACK blocks when holding out-of-order packets),
//! END consumes a seq and may ride on the last DATA packet, graceful close after both ENDs
//! with nothing extra on the wire (but see the linger below), fire-and-forget DESTROY, RACK-TLP + RTO with libudx's
//! timer values and give-up rule. Differences, all sender- or receiver-local:
//! * Times are microseconds (libudx: whole ms), so the RTT estimate and pacing are precise.
//! * The receive window is real: the advertised `rwnd` is the free space of a bounded receive
//!   buffer, and data beyond it is dropped (libudx always advertises 4 MiB and buffers without
//!   limit); a window update ACK is sent when the application's reads reopen the window. The
//!   next in-order packet is never refused because of out-of-order data held behind it (it is
//!   checked against the in-order bytes alone), so a hole can always be filled: the buffer is
//!   bounded by twice the window plus slack, and a full window of out-of-order data cannot
//!   deadlock the stream.
//! * The peer's window is read as an edge that does not move back when ACKs are reordered:
//!   `rwnd` + the bytes that same ACK SACKs (which the peer's free space already excludes),
//!   against every byte not yet cumulatively acknowledged. A reordered, older ACK with the same
//!   cumulative ack and a larger `rwnd` then cannot make the sender overrun the peer's buffer.
//! * After a graceful close the stream lingers (TCP's TIME_WAIT; a TODO in libudx's
//!   `close_stream`): for [`UdxStream::linger_duration`] it still answers a retransmitted
//!   DATA/END/HEARTBEAT with an ACK, so a lost final ACK does not leave the peer's END
//!   unacknowledged until it times out. Nothing else is processed; the owner sees `Closed` at
//!   the same moment as before.
//! * An RTO declares every in-flight packet lost (libudx: the oldest plus RACK-expired ones).
//! * An optional idle timeout ([`StreamConfig::idle_timeout`]; libudx has none) closes the
//!   stream with `TimedOut` when the peer has been silent for that long, probing it with
//!   HEARTBEATs first; [`UdxStream::reset_peer`] then tells a peer that may still hear us
//!   (libudx closes silently after a timeout).
//! * Congestion control is BBR with pacing, as in libudx (NewReno on request); see
//!   [`super::congestion`] (BBR and NewReno). Pacing and the RTT are in microseconds.
//! * MTU probing as libudx's (1200 up to 1500 in 32-byte steps, [`super::mtu`]), but working:
//!   the libudx inside udx-native 1.21.3 never sends a probe and stays at 1200. Incoming packets
//!   of any size and any data offset are accepted.
//! * ACKs: one ACK per `poll_transmit` opportunity covering every DATA/END packet handled
//!   since the last one. A driver that polls after each datagram reproduces libudx exactly;
//!   one that feeds a batch first sends one ACK for the batch.

use super::assembler::Assembler;
use super::congestion::{AckSample, Congestion, CongestionControl, Controller};
use super::mtu::{MtuProber, MtuState, MAX_PADDING};
use super::pacing::Pacer;
use super::packet::{self, seq_le, seq_lt, Flags, Header, Packet, HEADER_LEN};
use super::rack::{PacketState, Rack, SentPacket, SentPackets};
use super::rate::{AckRate, RateSampler};
use super::recv_buffer::RecvBuffer;
use super::rtt::RttEstimator;
use super::send_buffer::SendBuffer;
use super::timer::{Timer, TimerTable};
use crate::time::Instant;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;
use thiserror::Error;

/// Which of the owner's UDP sockets a stream is attached to (opaque to UDX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SocketId(pub u32);

/// Tunables. Defaults follow libudx where it has a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Most bytes the application may have queued and unacknowledged (back-pressure bound).
    pub send_buffer: usize,
    /// Receive buffer (in-order unread + out-of-order held); the advertised window is its free
    /// space. libudx's `UDX_DEFAULT_RWND_MAX` is 4 MiB.
    pub recv_window: usize,
    /// IP packet size DATA payloads start from (1200..=1500; libudx's `UDX_MTU_BASE` is 1200).
    pub mtu: u16,
    /// Largest IP packet size MTU probing tries (up to 1500, libudx's `UDX_MTU_MAX`); `mtu` or
    /// less turns probing off.
    pub mtu_max: u16,
    /// The congestion controller.
    pub congestion: CongestionControl,
    /// Initial RTO.
    pub initial_rto: Duration,
    /// Lower bound of the RTO.
    pub min_rto: Duration,
    /// Upper bound of the RTO.
    pub max_rto: Duration,
    /// RTO expiries marking the same packet lost before the stream gives up (libudx: 6).
    pub max_rto_timeouts: u8,
    /// Send a HEARTBEAT after this much idle time with nothing in flight.
    pub keepalive: Option<Duration>,
    /// Close with [`StreamError::TimedOut`] once nothing at all (data, ACK, HEARTBEAT, MESSAGE)
    /// has arrived from the peer for this long while connected, whatever the stream is doing:
    /// dead-peer detection that also works when we have nothing in flight (our side ended, or
    /// idle), where the RTO give-up never runs. To keep a live but quiet peer talking, a
    /// HEARTBEAT (which the peer answers with an ACK, libudx included) goes out after a third
    /// of it without a packet, then every RTO while the silence lasts. libudx has no such
    /// timeout (`None`, the default).
    pub idle_timeout: Option<Duration>,
    /// Most outgoing MESSAGE packets queued, and most incoming messages held for the app.
    pub max_queued_messages: usize,
    /// Upper bound of the congestion window in bytes.
    pub max_cwnd: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            send_buffer: 1 << 20,
            recv_window: 4 << 20,
            mtu: super::mtu::MTU_BASE,
            mtu_max: super::mtu::MTU_MAX,
            congestion: CongestionControl::default(),
            initial_rto: Duration::from_millis(1000),
            min_rto: Duration::from_millis(1000),
            max_rto: Duration::from_millis(30_000),
            max_rto_timeouts: 6,
            keepalive: None,
            idle_timeout: None,
            max_queued_messages: 256,
            max_cwnd: 64 << 20,
        }
    }
}

/// Why a stream closed with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StreamError {
    /// The peer sent DESTROY (`ECONNRESET`): it aborted the stream.
    #[error("stream reset by the peer (it aborted)")]
    Reset,
    /// Retransmissions gave up (`ETIMEDOUT`), or nothing arrived from the peer for the
    /// [idle timeout](StreamConfig::idle_timeout).
    #[error("stream timed out (the peer stopped answering)")]
    TimedOut,
}

/// What the application is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// `connect` recorded the peer (UDX has no handshake; nothing was sent).
    Connected,
    /// New bytes can be read.
    Readable,
    /// Room opened in the send buffer after a write was cut short.
    Writable,
    /// An unreliable stream message arrived.
    Message(Vec<u8>),
    /// The peer ended its side; after the buffered bytes, `read` returns 0.
    End,
    /// Our END and everything before it was acknowledged.
    Finished,
    /// A `change_remote` completed (the peer acknowledged everything sent before it).
    RemoteChanged,
    /// The stream closed: `None` = graceful (both ended) or destroyed locally.
    Closed {
        /// The error, if any.
        error: Option<StreamError>,
    },
}

/// `write` failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WriteError {
    /// The send buffer is full: wait for [`StreamEvent::Writable`].
    #[error("send buffer full")]
    WouldBlock,
    /// `end()` was called.
    #[error("stream already ended")]
    Ended,
    /// The stream is closed.
    #[error("stream closed")]
    Closed(Option<StreamError>),
}

/// `read` failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReadError {
    /// Nothing buffered yet: wait for [`StreamEvent::Readable`].
    #[error("no data available")]
    WouldBlock,
    /// The stream was reset or timed out.
    #[error("stream failed: {0}")]
    Failed(StreamError),
    /// Destroyed locally.
    #[error("stream destroyed")]
    Destroyed,
}

/// `send_message` failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MessageError {
    /// Larger than one packet.
    #[error("message larger than one packet")]
    TooLarge,
    /// Too many messages queued.
    #[error("message queue full")]
    QueueFull,
    /// Not connected or closed.
    #[error("stream not connected or closed")]
    NotConnected,
}

/// `connect` failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StreamConnectError {
    /// Already connected (use `change_remote`).
    #[error("stream already connected")]
    AlreadyConnected,
    /// Closed.
    #[error("stream closed")]
    Closed,
}

/// A datagram written by `poll_transmit` into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketOut {
    /// Destination.
    pub to: SocketAddr,
    /// Socket to send from.
    pub socket: SocketId,
    /// Bytes written at the start of the buffer.
    pub len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Remote {
    id: u32,
    addr: SocketAddr,
    socket: SocketId,
}

/// Receive-side slack above the advertised window (a Node sender rounds the window to whole
/// packets, at least one).
const RECV_SLACK: usize = 2048;
/// Record ends remembered at most (bounded memory whatever the writer does); past it, packets
/// may mix records, which costs a Node receiver time but nothing else.
const MAX_RECORD_ENDS: usize = 4096;

/// The queues of a stream, in one allocation made when the stream first needs one of them.
#[derive(Debug, Default)]
struct QueueSet {
    /// Stream offsets where a record (a secret-stream frame) ends: no packet spans one. See
    /// [`UdxStream::write_record`].
    record_ends: VecDeque<u64>,
    sent: SentPackets,
    retransmit: VecDeque<u32>,
    messages_out: VecDeque<Vec<u8>>,
    events: VecDeque<StreamEvent>,
}

/// What an idle stream's queues read as.
static NO_QUEUES: QueueSet = QueueSet {
    record_ends: VecDeque::new(),
    sent: VecDeque::new(),
    retransmit: VecDeque::new(),
    messages_out: VecDeque::new(),
    events: VecDeque::new(),
};

/// A stream's [`QueueSet`], boxed and present only while one of its queues holds memory.
#[derive(Debug)]
struct Queues(Option<alloc::boxed::Box<QueueSet>>);

impl Queues {
    /// The queues to read (empty ones if none are allocated).
    fn get(&self) -> &QueueSet {
        self.0.as_deref().unwrap_or(&NO_QUEUES)
    }

    /// The queues to add to, allocated if they are not.
    fn make(&mut self) -> &mut QueueSet {
        self.0.get_or_insert_with(Default::default)
    }

    /// The queues to take from or change, if allocated (nothing to take otherwise).
    fn opt(&mut self) -> Option<&mut QueueSet> {
        self.0.as_deref_mut()
    }

    /// Frees each drained small queue (see [`super::release::RELEASE_DRAINED_MAX`]), and the
    /// set once none holds memory.
    fn release_drained(&mut self) {
        let Some(q) = self.0.as_deref_mut() else {
            return;
        };
        super::release::release_if_drained(&mut q.record_ends);
        super::release::release_if_drained(&mut q.sent);
        super::release::release_if_drained(&mut q.retransmit);
        super::release::release_if_drained(&mut q.messages_out);
        super::release::release_if_drained(&mut q.events);
        if q.record_ends.capacity() == 0
            && q.sent.capacity() == 0
            && q.retransmit.capacity() == 0
            && q.messages_out.capacity() == 0
            && q.events.capacity() == 0
        {
            self.0 = None;
        }
    }
}

/// One UDX stream.
#[derive(Debug)]
pub struct UdxStream {
    local_id: u32,
    /// Shared by the streams of a demux with equal tunables (see [`UdxStream::share_config`]):
    /// 120 bytes a stream otherwise. The one tunable a stream changes, the keep-alive, is
    /// `keepalive`.
    cfg: Arc<StreamConfig>,
    keepalive: Option<Duration>,
    remote: Option<Remote>,
    closed: Option<Option<StreamError>>,
    destroyed_locally: bool,
    max_payload: usize,
    // --- send side
    sendbuf: SendBuffer,
    packetized: u64,
    /// The stream's queues (record ends, packets in flight, retransmissions, messages,
    /// events), allocated when one is first used and freed when all drain: an idle stream
    /// holds one pointer, not five empty queue headers.
    q: Queues,
    /// The last record end packetized (0 at the start).
    last_record_end: u64,
    end_requested: bool,
    end_seq: Option<u32>,
    end_acked: bool,
    snd_una: u32,
    snd_nxt: u32,
    inflight_bytes: u64,
    sacked_packets: u32,
    send_rwnd: u32,
    /// Bytes the ACK that set `send_rwnd` selectively acknowledged.
    send_rwnd_sacked: u64,
    wl1: u32,
    wl2: u32,
    rtt: RttEstimator,
    rack: Rack,
    cc: Congestion,
    rate: RateSampler,
    /// Bytes declared lost since the last ACK was processed (timer-driven loss detection).
    lost_since_ack: u64,
    mtu: MtuProber,
    pacer: Pacer,
    in_recovery: bool,
    recovery_point: u32,
    /// Every deadline of the stream (RTO, TLP, RACK, zero-window probe, keep-alive, pacing,
    /// liveness probe, linger).
    timers: TimerTable,
    zwp_backoff: bool,
    /// When the last packet from the peer arrived (or we connected): the idle timeout's origin.
    last_heard: Instant,
    tlp_pending: bool,
    tlp_allowed: bool,
    heartbeat_pending: bool,
    destroy_pending: bool,
    remote_change_seq: Option<u32>,
    write_blocked: bool,
    // --- receive side
    rcv_nxt: u32,
    rcv_nxt_ext: u64,
    recvbuf: RecvBuffer,
    assembler: Assembler,
    remote_end_ext: Option<u64>,
    remote_ended: bool,
    ack_pending: bool,
    /// The out-of-order packet received last (its run leads a truncated SACK list).
    last_ooo_ext: Option<u64>,
    last_adv_wnd: u32,
    readable_pending: bool,
    messages_in: usize,
    stats: StreamStats,
}

/// Counters for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// DATA/END packets sent for the first time.
    pub packets_sent: u64,
    /// Retransmissions (RACK, RTO and TLP).
    pub retransmits: u64,
    /// Tail-loss probes sent.
    pub tlp_probes: u64,
    /// RTO expiries.
    pub rto_expiries: u64,
    /// ACK packets sent.
    pub acks_sent: u64,
    /// Incoming DATA packets dropped because the receive buffer was full.
    pub recv_dropped_window: u64,
    /// Incoming duplicate or stale DATA packets.
    pub recv_duplicates: u64,
    /// HEARTBEAT packets sent.
    pub heartbeats_sent: u64,
    /// Largest receive-buffer occupancy (in-order + out-of-order bytes).
    pub max_recv_buffered: usize,
}

impl UdxStream {
    /// Uses `shared` in place of this stream's own copy of the tunables if they are equal;
    /// otherwise hands back this stream's, for the next stream to share.
    pub(crate) fn share_config(&mut self, shared: &mut Option<Arc<StreamConfig>>) {
        match shared {
            Some(c) if **c == *self.cfg => self.cfg = Arc::clone(c),
            _ => *shared = Some(Arc::clone(&self.cfg)),
        }
    }

    /// A stream with local id `local_id` (the id the peer writes in bytes 4..8).
    pub fn new(local_id: u32, now: Instant, cfg: StreamConfig) -> Self {
        let (base, max) = Self::mtu_range(&cfg);
        let max_payload = usize::from(base) - 68;
        let cc = Congestion::new(cfg.congestion, now, max_payload as u64, cfg.max_cwnd);
        let rate = Self::wire_rate(cc.pacing_rate(None), max_payload);
        UdxStream {
            local_id,
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto),
            sendbuf: SendBuffer::new(cfg.send_buffer),
            last_adv_wnd: u32::try_from(cfg.recv_window).unwrap_or(u32::MAX),
            pacer: Pacer::new(now, rate, 25_000),
            cc,
            rate: RateSampler::new(now),
            lost_since_ack: 0,
            mtu: MtuProber::new(base, max),
            keepalive: cfg.keepalive,
            cfg: Arc::new(cfg),
            remote: None,
            closed: None,
            destroyed_locally: false,
            max_payload,
            packetized: 0,
            q: Queues(None),
            last_record_end: 0,
            end_requested: false,
            end_seq: None,
            end_acked: false,
            snd_una: 0,
            snd_nxt: 0,
            inflight_bytes: 0,
            sacked_packets: 0,
            send_rwnd: 4 << 20,
            send_rwnd_sacked: 0,
            wl1: 0,
            wl2: 0,
            rack: Rack::default(),
            in_recovery: false,
            recovery_point: 0,
            timers: TimerTable::default(),
            zwp_backoff: false,
            last_heard: now,
            tlp_pending: false,
            tlp_allowed: true,
            heartbeat_pending: false,
            destroy_pending: false,
            remote_change_seq: None,
            write_blocked: false,
            rcv_nxt: 0,
            rcv_nxt_ext: 0,
            recvbuf: RecvBuffer::new(),
            assembler: Assembler::new(),
            remote_end_ext: None,
            remote_ended: false,
            ack_pending: false,
            last_ooo_ext: None,
            readable_pending: false,
            messages_in: 0,
            stats: StreamStats::default(),
        }
    }

    // ------------------------------------------------------------------ accessors

    /// Our id.
    pub fn local_id(&self) -> u32 {
        self.local_id
    }

    /// The peer's id, once connected.
    pub fn remote_id(&self) -> Option<u32> {
        self.remote.map(|r| r.id)
    }

    /// The peer's address, once connected.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote.map(|r| r.addr)
    }

    /// The socket the stream sends from, once connected.
    pub fn socket(&self) -> Option<SocketId> {
        self.remote.map(|r| r.socket)
    }

    /// Whether `connect` was called.
    pub fn is_connected(&self) -> bool {
        self.remote.is_some()
    }

    /// `Some(error)` once closed.
    pub fn close_reason(&self) -> Option<Option<StreamError>> {
        self.closed
    }

    /// Whether closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Whether closed and nothing is left to transmit (the owner may drop it). A gracefully
    /// closed stream is drained once its linger has run out.
    pub fn is_drained(&self) -> bool {
        self.closed.is_some()
            && !self.ack_pending
            && !self.destroy_pending
            && !self.timers.is_set(Timer::Linger)
    }

    /// Whether closed gracefully and still acknowledging the peer's retransmissions (the
    /// demultiplexer keeps handing it its packets).
    pub fn is_lingering(&self) -> bool {
        self.timers.is_set(Timer::Linger)
    }

    /// How long a gracefully closed stream keeps acknowledging retransmissions: four RTOs (the
    /// peer's first two END retransmissions), 4 s to 30 s.
    pub fn linger_duration(&self) -> Duration {
        (self.rtt.rto() * 4).clamp(Duration::from_secs(4), Duration::from_secs(30))
    }

    /// Bytes the application can still write before `write` pushes back.
    pub fn send_capacity(&self) -> usize {
        if self.end_requested || self.closed.is_some() {
            0
        } else {
            self.sendbuf.free()
        }
    }

    /// The send buffer's size (`StreamConfig::send_buffer`).
    pub fn send_buffer_limit(&self) -> usize {
        self.cfg.send_buffer
    }

    /// The receive buffer's size (the most the advertised window can be).
    pub fn recv_window_limit(&self) -> usize {
        self.cfg.recv_window
    }

    /// What this stream's buffers may hold at most: its receive window plus its send buffer.
    pub fn buffer_reservation(&self) -> usize {
        self.cfg.recv_window.saturating_add(self.cfg.send_buffer)
    }

    /// Bytes written but not yet acknowledged (including unsent).
    pub fn send_buffered(&self) -> usize {
        self.sendbuf.len()
    }

    /// Whether our END (and so every byte before it) was acknowledged by the peer.
    pub fn is_end_acked(&self) -> bool {
        self.end_acked
    }

    /// Bytes ready for `read`.
    pub fn readable_bytes(&self) -> usize {
        self.recvbuf.len()
    }

    /// Bytes held by the receive side (in order + out of order).
    pub fn recv_buffered(&self) -> usize {
        self.recvbuf.len() + self.assembler.bytes()
    }

    /// Smoothed RTT.
    pub fn srtt(&self) -> Duration {
        self.rtt.srtt()
    }

    /// Current RTO.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// Congestion window in bytes.
    pub fn cwnd(&self) -> u64 {
        self.cc.window()
    }

    /// Current pacing rate in bytes per second.
    pub fn pacing_rate(&self) -> u64 {
        self.pacer.rate()
    }

    /// The window last received from the peer.
    pub fn send_window(&self) -> u32 {
        self.send_rwnd
    }

    /// Bytes per DATA packet.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// The IP packet size in use (MTU probing raises it from `StreamConfig::mtu`).
    pub fn mtu(&self) -> u16 {
        self.mtu.mtu()
    }

    /// Where MTU probing stands.
    pub fn mtu_state(&self) -> MtuState {
        self.mtu.state()
    }

    /// The congestion controller (for diagnostics: BBR's state and model).
    pub fn congestion(&self) -> &Congestion {
        &self.cc
    }

    /// Counters.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Largest stream MESSAGE payload.
    pub fn max_message_len(&self) -> usize {
        self.max_payload
    }

    // ------------------------------------------------------------------ application calls

    /// Record the peer (no packet is sent; UDX has no handshake). Data already received is
    /// acknowledged at the next `poll_transmit`.
    pub fn connect(
        &mut self,
        now: Instant,
        remote_id: u32,
        addr: SocketAddr,
    ) -> Result<(), StreamConnectError> {
        self.connect_via(now, SocketId::default(), remote_id, addr)
    }

    /// `connect` on a given socket of the owner.
    pub fn connect_via(
        &mut self,
        now: Instant,
        socket: SocketId,
        remote_id: u32,
        addr: SocketAddr,
    ) -> Result<(), StreamConnectError> {
        if self.closed.is_some() {
            return Err(StreamConnectError::Closed);
        }
        if self.remote.is_some() {
            return Err(StreamConnectError::AlreadyConnected);
        }
        self.remote = Some(Remote {
            id: remote_id,
            addr,
            socket,
        });
        self.set_path_mtu();
        self.q.make().events.push_back(StreamEvent::Connected);
        self.arm_keepalive(now);
        self.heard(now);
        Ok(())
    }

    /// The configured starting and largest IP packet sizes, within libudx's 1200..=1500.
    fn mtu_range(cfg: &StreamConfig) -> (u16, u16) {
        let base = cfg.mtu.clamp(super::mtu::MTU_BASE, super::mtu::MTU_MAX);
        (base, cfg.mtu_max.clamp(base, super::mtu::MTU_MAX))
    }

    /// IP + UDP + UDX header bytes per packet to the peer (libudx's `UDX_IPV4_HEADER_SIZE` /
    /// `UDX_IPV6_HEADER_SIZE`).
    fn packet_overhead(&self) -> usize {
        match self.remote.map(|r| r.addr) {
            Some(SocketAddr::V4(_)) => 48,
            _ => 68,
        }
    }

    /// A new path (connect, change of remote): MTU probing starts over from the base size, as
    /// libudx's `reset_mtu_state_machine`.
    fn set_path_mtu(&mut self) {
        let (base, max) = Self::mtu_range(&self.cfg);
        self.mtu = MtuProber::new(base, max);
        self.apply_mtu();
    }

    fn apply_mtu(&mut self) {
        self.max_payload = usize::from(self.mtu.mtu()) - self.packet_overhead();
        self.cc.set_mss(self.max_payload as u64);
    }

    /// The pacer counts whole packets (header included); controllers rate payload bytes.
    fn wire_rate(payload_rate: u64, max_payload: usize) -> u64 {
        let mp = max_payload.max(1) as u128;
        u64::try_from(u128::from(payload_rate) * (mp + HEADER_LEN as u128) / mp).unwrap_or(u64::MAX)
    }

    /// Switch to a new peer address / id / socket (NAT rebinding, relay → direct). New packets and
    /// retransmissions go to the new path at once; [`StreamEvent::RemoteChanged`] fires when the
    /// peer has acknowledged everything sent before the switch.
    pub fn change_remote(
        &mut self,
        socket: SocketId,
        remote_id: u32,
        addr: SocketAddr,
    ) -> Result<(), StreamConnectError> {
        if self.closed.is_some() {
            return Err(StreamConnectError::Closed);
        }
        self.remote = Some(Remote {
            id: remote_id,
            addr,
            socket,
        });
        self.set_path_mtu();
        if self.q.get().sent.is_empty() {
            self.remote_change_seq = None;
            self.q.make().events.push_back(StreamEvent::RemoteChanged);
        } else {
            self.remote_change_seq = Some(self.snd_nxt);
        }
        Ok(())
    }

    /// Queue bytes. Accepts as many as the send buffer has room for (a short count is
    /// back-pressure; [`StreamEvent::Writable`] follows when room opens). Never waits for an ACK:
    /// queued bytes go out as the windows and the pacer allow.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        if let Some(e) = self.closed {
            return Err(WriteError::Closed(e));
        }
        if self.end_requested {
            return Err(WriteError::Ended);
        }
        let n = self.sendbuf.write(data);
        if n < data.len() {
            self.write_blocked = true;
        }
        if n == 0 && !data.is_empty() {
            return Err(WriteError::WouldBlock);
        }
        Ok(n)
    }

    /// Writes `data` as one record. A record never shares a packet with part of another:
    /// one longer than a packet starts a packet and its last packet may be short; whole records
    /// that fit are packed together. udx-native's framed read mode (hyperdht streams are
    /// `framed: true`) hands a whole secret-stream frame to JavaScript in one callback, but
    /// drops to a callback per packet for good at the first packet holding bytes of two frames
    /// — which libudx's combined writes always produce. Bulk data (frames larger than a packet)
    /// thus keeps a Node receiver framed; streams of small frames are packed, as libudx does.
    /// Wire-invisible otherwise. A record only partly written gets no boundary.
    pub fn write_record(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        let n = self.write(data)?;
        if n == data.len() && n > 0 && self.q.get().record_ends.len() < MAX_RECORD_ENDS {
            self.q.make().record_ends.push_back(self.sendbuf.end());
        }
        Ok(n)
    }

    /// How much of `room` the next new packet takes under the record rule of
    /// [`write_record`](Self::write_record).
    fn record_room(&mut self, room: usize) -> usize {
        while let Some(&e) = self.q.get().record_ends.front() {
            if e > self.packetized {
                break;
            }
            self.last_record_end = e;
            self.q.opt().and_then(|q| q.record_ends.pop_front());
        }
        let Some(&first) = self.q.get().record_ends.front() else {
            return room;
        };
        let limit = self.packetized + room as u64;
        let len = |end: u64| usize::try_from(end - self.packetized).unwrap_or(usize::MAX);
        if first > limit {
            // A record longer than what is left of this packet: a full packet of it.
            return room;
        }
        if self.packetized != self.last_record_end {
            // The tail of a record that began in an earlier packet ends this one.
            return len(first);
        }
        // Whole records from here, as many as fit.
        let last = self
            .q
            .get()
            .record_ends
            .iter()
            .take_while(|&&e| e <= limit)
            .last()
            .copied()
            .unwrap_or(first);
        len(last)
    }

    /// Half close: END goes out after the queued bytes (on the last DATA packet if it fits).
    pub fn end(&mut self) -> Result<(), WriteError> {
        if let Some(e) = self.closed {
            return Err(WriteError::Closed(e));
        }
        self.end_requested = true;
        Ok(())
    }

    /// Read in-order bytes. `Ok(0)` (with a non-empty `buf`) means the peer ended and everything
    /// was read.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        self.readable_pending = false;
        match self.closed {
            Some(Some(e)) => return Err(ReadError::Failed(e)),
            Some(None) if self.destroyed_locally => return Err(ReadError::Destroyed),
            _ => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.recvbuf.is_empty() {
            return if self.remote_ended {
                Ok(0)
            } else {
                Err(ReadError::WouldBlock)
            };
        }
        let n = self.recvbuf.read(buf);
        self.maybe_window_update();
        Ok(n)
    }

    /// The in-order bytes [`read`](Self::read) would return, in place (no copy); empty when
    /// `read` would fail or has nothing. Pass what was used to [`consume`](Self::consume).
    pub fn peek_readable(&self) -> &[u8] {
        match self.closed {
            Some(Some(_)) => &[],
            Some(None) if self.destroyed_locally => &[],
            _ => self.recvbuf.peek(),
        }
    }

    /// Drops the first `n` bytes of [`peek_readable`](Self::peek_readable) as read (a window
    /// update follows when enough room opened). Like `read`, re-arms
    /// [`StreamEvent::Readable`] for the next delivery, so `consume(0)` means "wake me when
    /// more arrives".
    pub fn consume(&mut self, n: usize) {
        self.readable_pending = false;
        if n > 0 {
            self.recvbuf.consume(n);
            self.maybe_window_update();
        }
    }

    /// Room left in the receive window (bytes the peer may still send before we read).
    pub fn recv_room(&self) -> usize {
        self.advertised_window() as usize
    }

    /// Queue an unreliable stream MESSAGE (one packet, no seq, never retransmitted).
    pub fn send_message(&mut self, data: &[u8]) -> Result<(), MessageError> {
        if self.closed.is_some() || self.remote.is_none() {
            return Err(MessageError::NotConnected);
        }
        if data.len() > self.max_payload {
            return Err(MessageError::TooLarge);
        }
        if self.q.get().messages_out.len() >= self.cfg.max_queued_messages {
            return Err(MessageError::QueueFull);
        }
        self.q.make().messages_out.push_back(data.to_vec());
        Ok(())
    }

    /// Abort: one DESTROY packet (if connected), queued data dropped, closed at once.
    pub fn destroy(&mut self) {
        if self.closed.is_some() {
            self.timers.stop(Timer::Linger);
            return;
        }
        self.destroy_pending = self.remote.is_some();
        self.destroyed_locally = true;
        self.close(None);
    }

    /// After the stream closed with an error of its own (a timeout), sends the peer one
    /// DESTROY, so that a peer that still hears us learns at once instead of timing out in turn.
    /// libudx closes silently here; for a libudx peer the packet is an ordinary DESTROY (a
    /// reset, or nothing if its stream is gone). Does nothing on an open stream, after a
    /// graceful close, after the peer's own DESTROY, or twice.
    pub fn reset_peer(&mut self) {
        if matches!(self.closed, Some(Some(StreamError::TimedOut)))
            && self.remote.is_some()
            && !self.destroyed_locally
        {
            self.destroy_pending = true;
            self.destroyed_locally = true;
        }
    }

    /// Send a HEARTBEAT whenever nothing was sent for `interval` and nothing is in flight.
    pub fn set_keepalive(&mut self, now: Instant, interval: Option<Duration>) {
        self.keepalive = interval.filter(|d| !d.is_zero());
        self.arm_keepalive(now);
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        let ev = self.q.opt().and_then(|q| q.events.pop_front());
        match ev {
            Some(StreamEvent::Message(_)) => {
                self.messages_in = self.messages_in.saturating_sub(1);
            }
            Some(_) => {}
            None => self.q.release_drained(),
        }
        ev
    }

    /// Frees the small queues that drained (see [`super::release::RELEASE_DRAINED_MAX`]): an idle
    /// stream keeps no allocation of them.
    fn release_drained(&mut self) {
        self.q.release_drained();
    }

    // ------------------------------------------------------------------ internals

    fn close(&mut self, error: Option<StreamError>) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(error);
        if let Some(q) = self.q.opt() {
            q.sent.clear();
            q.retransmit.clear();
        }
        self.inflight_bytes = 0;
        self.sacked_packets = 0;
        self.timers.stop(Timer::Rto);
        self.timers.stop(Timer::Tlp);
        self.timers.stop(Timer::Rack);
        self.timers.stop(Timer::ZeroWindowProbe);
        self.timers.stop(Timer::KeepAlive);
        self.timers.stop(Timer::LivenessProbe);
        self.timers.stop(Timer::Pacing);
        self.tlp_pending = false;
        self.heartbeat_pending = false;
        if let Some(q) = self.q.opt() {
            q.messages_out.clear();
        }
        self.assembler.clear();
        if error.is_some() || self.destroyed_locally {
            self.sendbuf.clear();
            self.recvbuf.clear();
            self.ack_pending = false;
        } else {
            self.sendbuf.clear();
        }
        self.q
            .make()
            .events
            .push_back(StreamEvent::Closed { error });
    }

    fn advertised_window(&self) -> u32 {
        let used = self.recvbuf.len() + self.assembler.bytes();
        u32::try_from(self.cfg.recv_window.saturating_sub(used)).unwrap_or(u32::MAX)
    }

    fn maybe_window_update(&mut self) {
        let w = self.advertised_window();
        let mp = self.max_payload as u32;
        let step = u32::try_from((self.cfg.recv_window / 4).min(64 * 1024))
            .unwrap_or(u32::MAX)
            .max(mp);
        if (self.last_adv_wnd < mp && w >= mp) || w >= self.last_adv_wnd.saturating_add(step) {
            self.ack_pending = true;
        }
    }

    fn arm_keepalive(&mut self, now: Instant) {
        let at = match (self.keepalive, self.remote, self.closed) {
            (Some(d), Some(_), None) => Some(now + d),
            _ => None,
        };
        self.timers.set_or_stop(Timer::KeepAlive, at);
    }

    /// A packet from the peer (or the connect): the idle timeout starts over.
    fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.timers.set_or_stop(
            Timer::LivenessProbe,
            self.cfg.idle_timeout.map(|t| now + t / 3),
        );
    }

    /// When the idle timeout closes the stream, if nothing arrives before.
    fn idle_deadline(&self) -> Option<Instant> {
        match (self.cfg.idle_timeout, self.remote, self.closed) {
            (Some(t), Some(_), None) => Some(self.last_heard + t),
            _ => None,
        }
    }

    fn ext_of(&self, seq: u32) -> Option<u64> {
        let d = seq.wrapping_sub(self.rcv_nxt) as i32;
        (d >= 0).then(|| self.rcv_nxt_ext + d as u64)
    }

    fn note_recv_buffered(&mut self) {
        let b = self.recv_buffered();
        if b > self.stats.max_recv_buffered {
            self.stats.max_recv_buffered = b;
        }
    }

    fn deliver(&mut self, data: &[u8], end: bool) {
        if !data.is_empty() {
            self.recvbuf.push(data);
            if !self.readable_pending {
                self.readable_pending = true;
                self.q.make().events.push_back(StreamEvent::Readable);
            }
        }
        if end {
            self.remote_end_ext = Some(self.rcv_nxt_ext);
        }
        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        self.rcv_nxt_ext += 1;
        if end {
            self.remote_ended = true;
            self.assembler.clear();
            self.q.make().events.push_back(StreamEvent::End);
        }
    }

    /// Process one decoded packet addressed to this stream. `from` is its source; like libudx,
    /// packets are accepted from any source once the stream exists and replies always go to the
    /// recorded peer address.
    pub fn handle_packet(&mut self, now: Instant, pkt: &Packet<'_>, from: SocketAddr) {
        let _ = from;
        if self.closed.is_some() {
            // Lingering: everything the peer (re)sends was received; acknowledge it again.
            let flags = pkt.header.flags;
            if self.timers.get(Timer::Linger).is_some_and(|t| now < t)
                && (flags.consumes_seq() || flags.contains(Flags::HEARTBEAT))
                && !flags.contains(Flags::DESTROY)
            {
                self.ack_pending = true;
            }
            return;
        }
        if self.remote.is_some() {
            self.heard(now);
        }
        let h = &pkt.header;
        if h.flags.contains(Flags::HEARTBEAT) {
            self.ack_pending = true;
            return;
        }
        let carries = h.flags.consumes_seq();
        if let Some(ext) = self.ext_of(h.seq) {
            if h.flags.contains(Flags::DESTROY) {
                self.close(Some(StreamError::Reset));
                return;
            }
            if carries && !self.remote_ended {
                let end = h.flags.contains(Flags::END);
                let data: &[u8] = if h.flags.contains(Flags::DATA) {
                    pkt.payload
                } else {
                    &[]
                };
                let room = self.cfg.recv_window + RECV_SLACK;
                // The next in-order packet only needs room next to the in-order bytes: refusing
                // it for out-of-order data held behind it could never be undone (that data waits
                // for it), so a window full of out-of-order data would deadlock the stream.
                let held = if ext == self.rcv_nxt_ext {
                    self.recvbuf.len()
                } else {
                    self.recv_buffered()
                };
                if held + data.len() > room {
                    self.stats.recv_dropped_window += 1;
                } else if ext == self.rcv_nxt_ext {
                    self.deliver(data, end);
                    while !self.remote_ended {
                        let Some(seg) = self.assembler.pop(self.rcv_nxt_ext) else {
                            break;
                        };
                        self.deliver(&seg.data, seg.end);
                    }
                } else if self.assembler.insert(ext, data, end) {
                    self.last_ooo_ext = Some(ext);
                } else {
                    self.stats.recv_duplicates += 1;
                }
                self.note_recv_buffered();
            }
        } else if carries {
            self.stats.recv_duplicates += 1;
        }
        if h.flags.contains(Flags::MESSAGE) && self.messages_in < self.cfg.max_queued_messages {
            self.messages_in += 1;
            self.q
                .make()
                .events
                .push_back(StreamEvent::Message(pkt.payload.to_vec()));
        }
        // An ack for something we never sent: no window update, no ACK (libudx step 10).
        if seq_lt(self.snd_nxt, h.ack) {
            return;
        }
        self.on_ack(now, pkt);
        self.release_drained();
        if carries && self.closed.is_none() {
            self.ack_pending = true;
        }
        if self.closed.is_none() && self.end_acked && self.remote_ended {
            self.close(None);
            self.timers.set(Timer::Linger, now + self.linger_duration());
        }
    }

    fn on_ack(&mut self, now: Instant, pkt: &Packet<'_>) {
        let h = &pkt.header;
        let ack = h.ack;
        let window_update = seq_le(self.snd_una, ack)
            && (seq_lt(self.wl1, h.seq) || (self.wl1 == h.seq && seq_le(self.wl2, ack)));
        if window_update {
            let opened = h.rwnd > self.send_rwnd;
            self.send_rwnd = h.rwnd;
            self.wl1 = h.seq;
            self.wl2 = ack;
            if opened && h.rwnd as usize >= self.max_payload.min(1) {
                self.timers.stop(Timer::ZeroWindowProbe);
                self.zwp_backoff = false;
            }
        }
        let inflight_before = self.inflight_bytes;
        let mut newly_acked = 0u64;
        let mut rtt_from: Option<Instant> = None;
        let min_rtt = self.rtt.min_rtt();
        let mut end_acked_now = false;
        let mut progressed = false;
        let mut acc = AckRate::default();
        let mut mtu_grew = false;
        while seq_lt(self.snd_una, ack) {
            let Some(p) = self.q.opt().and_then(|q| q.sent.pop_front()) else {
                // Acks beyond our packets (DESTROY's seq): just advance.
                self.snd_una = ack;
                break;
            };
            match p.state {
                PacketState::InFlight | PacketState::Lost => {
                    if p.state == PacketState::InFlight {
                        self.inflight_bytes -= u64::from(p.len);
                        if p.transmissions == 1 && rtt_from.is_none_or(|t| p.sent_time > t) {
                            rtt_from = Some(p.sent_time);
                        }
                    }
                    newly_acked += u64::from(p.len).max(1);
                    self.rack.on_delivered(now, &p, min_rtt);
                    self.rate
                        .on_delivered(&mut acc, &p.rate, p.sent_time, p.seq, u64::from(p.len));
                    mtu_grew |= self.mtu.on_acked(p.mtu_probe);
                }
                PacketState::Sacked => self.sacked_packets -= 1,
            }
            if p.end {
                end_acked_now = true;
            }
            self.snd_una = self.snd_una.wrapping_add(1);
            progressed = true;
        }
        if progressed {
            let release = self
                .q
                .get()
                .sent
                .front()
                .map_or(self.packetized, |p| p.offset);
            self.sendbuf.release_to(release);
        }
        let mut sacked_in_ack = 0u64;
        for (s, e) in pkt.sack_blocks() {
            if !(seq_le(self.snd_una, s) && seq_lt(s, e) && seq_le(e, self.snd_nxt)) {
                continue;
            }
            let first = s.wrapping_sub(self.snd_una) as usize;
            let last = (e.wrapping_sub(self.snd_una) as usize).min(self.q.get().sent.len());
            for i in first..last {
                let p = &mut self.q.make().sent[i];
                sacked_in_ack += u64::from(p.len);
                match p.state {
                    PacketState::Sacked => continue,
                    PacketState::InFlight => {
                        self.inflight_bytes -= u64::from(p.len);
                        if p.transmissions == 1 && rtt_from.is_none_or(|t| p.sent_time > t) {
                            rtt_from = Some(p.sent_time);
                        }
                    }
                    PacketState::Lost => {}
                }
                p.state = PacketState::Sacked;
                newly_acked += u64::from(p.len).max(1);
                self.sacked_packets += 1;
                let probe = core::mem::take(&mut p.mtu_probe);
                let p = p.clone();
                self.rack.on_delivered(now, &p, min_rtt);
                self.rate
                    .on_delivered(&mut acc, &p.rate, p.sent_time, p.seq, u64::from(p.len));
                mtu_grew |= self.mtu.on_acked(probe);
            }
        }
        if mtu_grew {
            self.apply_mtu();
        }
        if window_update {
            self.send_rwnd_sacked = sacked_in_ack;
        }
        let rtt_sample = rtt_from.map(|t| now.saturating_duration_since(t));
        if let Some(r) = rtt_sample {
            self.rtt.on_sample(now, r);
            self.tlp_allowed = true;
        }
        if newly_acked == 0 {
            return;
        }
        if progressed {
            let at = (!self.q.get().sent.is_empty()).then(|| now + self.rtt.rto());
            self.timers.set_or_stop(Timer::Rto, at);
        }
        if self.in_recovery && seq_le(self.recovery_point, self.snd_una) {
            self.in_recovery = false;
        }
        self.detect_loss(now);
        let rate = self
            .rate
            .generate(now, &acc, newly_acked, self.rtt.min_rtt());
        let sample = AckSample {
            now,
            newly_acked,
            newly_lost: core::mem::take(&mut self.lost_since_ack),
            prior_in_flight: inflight_before,
            bytes_in_flight: self.inflight_bytes,
            delivered: self.rate.delivered(),
            srtt: self.rtt.srtt(),
            min_rtt: self.rtt.min_rtt().unwrap_or_default(),
            rtt: rtt_sample,
            rate,
            cwnd_limited: inflight_before.saturating_mul(2) >= self.cc.window(),
        };
        self.cc.on_ack(&sample, self.in_recovery);
        if self.cc.probing_rtt() {
            // The window is held down on purpose: what gets delivered meanwhile is no rate.
            self.rate.mark_app_limited(self.inflight_bytes);
        }
        self.update_pacer(now);
        self.timers.stop(Timer::Tlp);
        if !self.in_recovery && self.sacked_packets == 0 && self.inflight_bytes > 0 {
            self.arm_tlp(now);
        }
        if end_acked_now && !self.end_acked {
            self.end_acked = true;
            self.q.make().events.push_back(StreamEvent::Finished);
            if !self.remote_ended {
                self.ack_pending = true; // libudx's "final state" ACK
            }
        }
        if let Some(cs) = self.remote_change_seq {
            if seq_le(cs, self.snd_una) {
                self.remote_change_seq = None;
                self.q.make().events.push_back(StreamEvent::RemoteChanged);
            }
        }
        if self.write_blocked && self.sendbuf.free() > 0 && !self.end_requested {
            self.write_blocked = false;
            self.q.make().events.push_back(StreamEvent::Writable);
        }
        if self.q.get().sent.is_empty() {
            self.arm_keepalive(now);
        }
    }

    fn detect_loss(&mut self, now: Instant) {
        let reo = self.rack.reo_wnd(
            self.in_recovery,
            self.sacked_packets,
            self.rtt.srtt(),
            self.rtt.min_rtt(),
        );
        let Some(q) = self.q.opt() else {
            self.timers.stop(Timer::Rack);
            return;
        };
        let scan = self
            .rack
            .detect_loss(now, &mut q.sent, reo, &mut q.retransmit);
        self.timers.set_or_stop(Timer::Rack, scan.timer);
        for _ in 0..scan.probes_lost {
            self.mtu.on_probe_lost();
        }
        if scan.lost > 0 {
            self.inflight_bytes -= scan.lost_bytes;
            self.lost_since_ack += scan.lost_bytes;
            // Lost MTU probes alone are no congestion (libudx: `resending > mtu_probes_lost`).
            if !self.in_recovery && scan.lost > scan.probes_lost {
                self.in_recovery = true;
                self.recovery_point = self.snd_nxt;
                self.cc.on_congestion_event(now, self.inflight_bytes);
                self.update_pacer(now);
            }
        }
    }

    fn update_pacer(&mut self, now: Instant) {
        let srtt = self.rtt.has_sample().then(|| self.rtt.srtt());
        let rate = Self::wire_rate(self.cc.pacing_rate(srtt), self.max_payload).max(1);
        // Burst: 1 ms worth at the current rate, at least 10 packets, at most 256 KiB.
        let mtu = (self.max_payload + HEADER_LEN) as u64;
        let cap = (rate / 1000).clamp(10 * mtu, 256 * 1024);
        self.pacer.set_rate(now, rate, cap);
    }

    fn arm_tlp(&mut self, now: Instant) {
        if !self.tlp_allowed {
            return;
        }
        let pto = if self.rtt.has_sample() {
            let mut p = self.rtt.srtt() * 2;
            if self.q.get().sent.len() == 1 {
                p += Duration::from_millis(2);
            }
            p.max(Duration::from_micros(100))
        } else {
            Duration::from_secs(1)
        };
        let mut at = now + pto;
        if let Some(r) = self.timers.get(Timer::Rto) {
            at = at.min(r);
        }
        self.timers.set(Timer::Tlp, at);
    }

    /// The earliest instant `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return self.timers.get(Timer::Linger);
        }
        [self.timers.next_timeout(), self.idle_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Run expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            if self.timers.is_expired(Timer::Linger, now) {
                self.timers.stop(Timer::Linger);
            }
            return;
        }
        if self.idle_deadline().is_some_and(|t| t <= now) {
            self.close(Some(StreamError::TimedOut));
            return;
        }
        if self.timers.is_expired(Timer::Pacing, now) {
            self.timers.stop(Timer::Pacing);
        }
        if self.timers.is_expired(Timer::LivenessProbe, now) {
            // The peer has been silent for a while: ask it for an ACK, then again every RTO
            // (at most a third of the timeout apart, so a lost probe or two costs nothing).
            self.heartbeat_pending = true;
            let third = self.cfg.idle_timeout.unwrap_or_default() / 3;
            self.timers
                .set(Timer::LivenessProbe, now + self.rtt.rto().min(third));
        }
        if self.timers.is_expired(Timer::Rack, now) {
            self.timers.stop(Timer::Rack);
            self.detect_loss(now);
        }
        if self.timers.is_expired(Timer::Rto, now) {
            self.on_rto(now);
            if self.closed.is_some() {
                return;
            }
        }
        if self.timers.is_expired(Timer::Tlp, now) {
            self.timers.stop(Timer::Tlp);
            if !self.q.get().sent.is_empty() && !self.in_recovery {
                self.tlp_pending = true;
                self.tlp_allowed = false;
            }
        }
        if self.timers.is_expired(Timer::ZeroWindowProbe, now) {
            self.heartbeat_pending = true;
            let rto = self.rtt.rto();
            self.timers.set(
                Timer::ZeroWindowProbe,
                now + if self.zwp_backoff { rto * 2 } else { rto },
            );
            self.zwp_backoff = true;
        }
        if self.timers.is_expired(Timer::KeepAlive, now) {
            self.timers.stop(Timer::KeepAlive);
            if self.q.get().sent.is_empty() {
                self.heartbeat_pending = true;
            }
            self.arm_keepalive(now);
        }
    }

    /// Resends every packet still in flight at once, with no congestion response: for a path
    /// known to have dropped them without congestion — a blind relay drops what reaches it
    /// before the other peer's first packet told it where that peer is, and waiting for the
    /// first RTO (1 s) would delay the relayed connection by that much.
    pub fn resend_in_flight(&mut self) {
        let mut lost_bytes = 0u64;
        let Some(q) = self.q.opt() else {
            return;
        };
        for p in q.sent.iter_mut() {
            if p.state == PacketState::InFlight {
                p.state = PacketState::Lost;
                p.mtu_probe = false; // no sign about the path MTU
                lost_bytes += u64::from(p.len);
                q.retransmit.push_back(p.seq);
            }
        }
        self.inflight_bytes -= lost_bytes;
    }

    fn on_rto(&mut self, now: Instant) {
        self.stats.rto_expiries += 1;
        let Some(front) = self
            .q
            .opt()
            .into_iter()
            .flat_map(|q| q.sent.iter_mut())
            .find(|p| p.state != PacketState::Sacked)
        else {
            self.timers.stop(Timer::Rto);
            return;
        };
        if front.rto_count >= self.cfg.max_rto_timeouts {
            self.close(Some(StreamError::TimedOut));
            return;
        }
        front.rto_count += 1;
        let inflight = self.inflight_bytes;
        let mut probes_lost = 0;
        if let Some(q) = self.q.opt() {
            q.retransmit.clear();
            for p in q.sent.iter_mut() {
                if p.state == PacketState::InFlight {
                    p.state = PacketState::Lost;
                    if core::mem::take(&mut p.mtu_probe) {
                        probes_lost += 1;
                    }
                }
                if p.state == PacketState::Lost {
                    q.retransmit.push_back(p.seq);
                }
            }
        }
        for _ in 0..probes_lost {
            self.mtu.on_probe_lost();
        }
        self.inflight_bytes = 0;
        self.cc.on_rto(now, inflight);
        self.in_recovery = true;
        self.recovery_point = self.snd_nxt;
        self.timers.stop(Timer::Tlp);
        self.tlp_pending = false;
        self.timers.stop(Timer::Rack);
        self.update_pacer(now);
        self.timers.set(Timer::Rto, now + self.rtt.rto() * 2);
    }

    // ------------------------------------------------------------------ output

    fn header(&self, flags: Flags, seq: u32) -> Option<Header> {
        let r = self.remote?;
        Some(Header {
            flags,
            data_offset: 0,
            stream_id: r.id,
            rwnd: self.advertised_window(),
            seq,
            ack: self.rcv_nxt,
        })
    }

    fn transmit(&mut self, len: usize) -> Option<PacketOut> {
        let r = self.remote?;
        self.last_adv_wnd = self.advertised_window();
        Some(PacketOut {
            to: r.addr,
            socket: r.socket,
            len,
        })
    }

    /// Write the next datagram into `buf` (which should hold at least `max_payload + 20`
    /// bytes, 1500 is always enough; smaller buffers get smaller packets). Call until `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<PacketOut> {
        self.remote?;
        if buf.len() < HEADER_LEN {
            return None;
        }
        if self.destroy_pending {
            self.destroy_pending = false;
            self.ack_pending = false;
            let h = self.header(Flags::DESTROY, self.snd_nxt)?;
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            let n = h.write(buf).ok()?;
            return self.transmit(n);
        }
        if self.ack_pending {
            self.ack_pending = false;
            return self.write_ack(buf);
        }
        if self.closed.is_some() {
            return None;
        }
        if self.heartbeat_pending {
            self.heartbeat_pending = false;
            self.stats.heartbeats_sent += 1;
            let h = self.header(Flags::HEARTBEAT, self.snd_nxt)?;
            let n = h.write(buf).ok()?;
            return self.transmit(n);
        }
        if let Some(m) = self.q.get().messages_out.front() {
            if buf.len() >= HEADER_LEN + m.len() {
                let m = self.q.opt()?.messages_out.pop_front()?;
                let h = self.header(Flags::MESSAGE, self.snd_nxt)?;
                let pkt = Packet {
                    header: h,
                    padding: &[],
                    payload: &m,
                };
                let n = pkt.encode(buf).ok()?;
                return self.transmit(n);
            }
            self.q.opt().and_then(|q| q.messages_out.pop_front());
        }
        self.poll_data(now, buf)
    }

    fn write_ack(&mut self, buf: &mut [u8]) -> Option<PacketOut> {
        let base = self.rcv_nxt_ext;
        let rcv_nxt = self.rcv_nxt;
        let to_seq = |x: u64| rcv_nxt.wrapping_add(x.wrapping_sub(base) as u32);
        // Like libudx: the lowest runs, at most 50. When there are more, the run holding the
        // packet received last goes first instead (RFC 2018's rule): otherwise a sender facing
        // many holes learns nothing about what it sent since, and waits for its RTO.
        let latest = match self.last_ooo_ext {
            Some(x) if self.assembler.runs().nth(packet::MAX_SACK_BLOCKS).is_some() => {
                self.assembler.runs().find(|&(s, e)| s <= x && x < e)
            }
            _ => None,
        };
        let n = packet::write_sack_blocks(
            latest
                .into_iter()
                .chain(self.assembler.runs().filter(|r| Some(*r) != latest))
                .map(|(s, e)| (to_seq(s), to_seq(e))),
            &mut buf[HEADER_LEN..],
        );
        let flags = if n > 0 { Flags::SACK } else { Flags::ACK };
        let h = self.header(flags, self.snd_nxt)?;
        h.write(buf).ok()?;
        self.stats.acks_sent += 1;
        self.transmit(HEADER_LEN + n)
    }

    fn unsent(&self) -> u64 {
        self.sendbuf.end() - self.packetized
    }

    fn has_new(&self) -> bool {
        self.unsent() > 0 || (self.end_requested && self.end_seq.is_none())
    }

    fn poll_data(&mut self, now: Instant, buf: &mut [u8]) -> Option<PacketOut> {
        let room = (buf.len() - HEADER_LEN).min(self.max_payload);
        let room = self.record_room(room);
        let cwnd = self.cc.window();
        // 1. Retransmissions (cwnd-limited, not rwnd-limited). A packet keeps its size even if
        // the MTU went down since (a new path): it only needs to fit the caller's buffer.
        while let Some(&seq) = self.q.get().retransmit.front() {
            let idx = seq.wrapping_sub(self.snd_una) as usize;
            let live = self
                .q
                .get()
                .sent
                .get(idx)
                .is_some_and(|p| p.seq == seq && p.state == PacketState::Lost);
            if !live {
                self.q.opt().and_then(|q| q.retransmit.pop_front());
                continue;
            }
            let len = self.q.get().sent[idx].len as usize;
            if len > buf.len() - HEADER_LEN {
                return None;
            }
            if self.inflight_bytes > 0 && self.inflight_bytes + len as u64 > cwnd {
                return None;
            }
            if let Some(t) = self.pacer.delay(now, len + HEADER_LEN) {
                self.timers.set(Timer::Pacing, t);
                return None;
            }
            self.q.opt().and_then(|q| q.retransmit.pop_front());
            return self.send_existing(now, idx, buf, true);
        }
        // 2. Tail loss probe: new data beyond cwnd, else the highest packet again.
        if self.tlp_pending {
            self.tlp_pending = false;
            self.stats.tlp_probes += 1;
            if self.has_new() && self.rwnd_allows(room).is_some() {
                return self.send_new(now, buf, room, true);
            }
            if let Some(idx) = self
                .q
                .get()
                .sent
                .iter()
                .rposition(|p| p.state == PacketState::InFlight)
            {
                if self.q.get().sent[idx].len as usize <= buf.len() - HEADER_LEN {
                    return self.send_existing(now, idx, buf, false);
                }
            }
        }
        // 3. New data.
        if !self.has_new() {
            // Out of data with room in the window: the application limits the rate now.
            if self.inflight_bytes < cwnd && self.q.get().retransmit.is_empty() {
                self.rate.mark_app_limited(self.inflight_bytes);
            }
            return None;
        }
        let Some(len) = self.rwnd_allows(room) else {
            if self.q.get().sent.is_empty() && !self.timers.is_set(Timer::ZeroWindowProbe) {
                self.timers
                    .set(Timer::ZeroWindowProbe, now + self.rtt.rto());
                self.zwp_backoff = false;
                self.heartbeat_pending = true;
                return self.poll_transmit(now, buf);
            }
            return None;
        };
        if self.inflight_bytes > 0 && self.inflight_bytes + len as u64 > cwnd {
            return None;
        }
        if let Some(t) = self.pacer.delay(now, len + HEADER_LEN) {
            self.timers.set(Timer::Pacing, t);
            return None;
        }
        self.send_new(now, buf, room, false)
    }

    /// Bytes of new data the peer's window allows in the next packet (`Some(0)` for an
    /// END-only packet), `None` if blocked.
    fn rwnd_allows(&self, room: usize) -> Option<usize> {
        let want = (self.unsent() as usize).min(room);
        if want == 0 {
            return Some(0);
        }
        // The peer's edge: its free space plus what that same ACK SACKed (held, so already
        // excluded from the free space), against every byte not cumulatively acked (in flight,
        // SACKed, or lost and awaiting retransmission — those need their room again).
        let outstanding = self
            .q
            .get()
            .sent
            .front()
            .map_or(0, |p| self.packetized - p.offset);
        let edge = u64::from(self.send_rwnd) + self.send_rwnd_sacked;
        let allowed = usize::try_from(edge.saturating_sub(outstanding)).unwrap_or(usize::MAX);
        if allowed >= want {
            Some(want)
        } else if allowed > 0 && outstanding == 0 {
            Some(allowed)
        } else {
            None
        }
    }

    /// The padding that makes a DATA packet of `len` bytes an MTU probe of the wanted size, if
    /// one is wanted and this packet can be it (libudx's `mtu_probeify_packet`: not a TLP, not
    /// during a change of remote, at most 255 bytes of padding).
    fn probe_padding(&self, len: usize, tlp: bool, buf_len: usize) -> Option<usize> {
        if len == 0 || tlp || self.remote_change_seq.is_some() {
            return None;
        }
        let wanted = usize::from(self.mtu.wanted()?);
        let padding = wanted.checked_sub(self.packet_overhead() + len)?;
        (padding <= MAX_PADDING && HEADER_LEN + padding + len <= buf_len).then_some(padding)
    }

    fn send_new(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        room: usize,
        tlp: bool,
    ) -> Option<PacketOut> {
        let len = self.rwnd_allows(room)?;
        let offset = self.packetized;
        let end = self.end_requested
            && self.end_seq.is_none()
            && offset + len as u64 == self.sendbuf.end();
        if len == 0 && !end {
            return None;
        }
        let mut flags = Flags::ACK;
        if len > 0 {
            flags |= Flags::DATA;
        }
        if end {
            flags |= Flags::END;
        }
        let seq = self.snd_nxt;
        let padding = self.probe_padding(len, tlp, buf.len());
        let pad = padding.unwrap_or(0);
        let mut h = self.header(flags, seq)?;
        h.data_offset = pad as u8;
        h.write(buf).ok()?;
        buf[HEADER_LEN..HEADER_LEN + pad].fill(0);
        let data = HEADER_LEN + pad;
        if !self.sendbuf.copy_out(offset, &mut buf[data..data + len]) {
            return None;
        }
        if self.unsent() <= len as u64
            && self.inflight_bytes + (len as u64) < self.cc.window()
            && self.q.get().retransmit.is_empty()
        {
            // This packet drains what the application gave us.
            self.rate.mark_app_limited(self.inflight_bytes);
        }
        let nothing_outstanding = self.q.get().sent.is_empty();
        if nothing_outstanding {
            self.cc.on_transmit_start(now, self.rate.is_app_limited());
        }
        let rate = self.rate.on_sent(now, nothing_outstanding);
        if padding.is_some() {
            self.mtu.on_probe_sent();
        }
        self.snd_nxt = seq.wrapping_add(1);
        self.packetized += len as u64;
        if end {
            self.end_seq = Some(seq);
        }
        self.q.make().sent.push_back(SentPacket {
            seq,
            offset,
            len: len as u32,
            end,
            sent_time: now,
            transmissions: 1,
            rto_count: 0,
            state: PacketState::InFlight,
            rate,
            mtu_probe: padding.is_some(),
        });
        self.inflight_bytes += len as u64;
        self.stats.packets_sent += 1;
        self.after_send(now, data + len, true);
        self.transmit(data + len)
    }

    fn send_existing(
        &mut self,
        now: Instant,
        idx: usize,
        buf: &mut [u8],
        was_lost: bool,
    ) -> Option<PacketOut> {
        let (seq, offset, len, end) = {
            let p = &self.q.get().sent[idx];
            (p.seq, p.offset, p.len as usize, p.end)
        };
        let mut flags = Flags::ACK;
        if len > 0 {
            flags |= Flags::DATA;
        }
        if end {
            flags |= Flags::END;
        }
        let h = self.header(flags, seq)?;
        h.write(buf).ok()?;
        if !self
            .sendbuf
            .copy_out(offset, &mut buf[HEADER_LEN..HEADER_LEN + len])
        {
            return None;
        }
        let rate = self.rate.on_sent(now, false);
        let p = &mut self.q.make().sent[idx];
        p.sent_time = now;
        p.rate = rate;
        p.transmissions = p.transmissions.saturating_add(1);
        if core::mem::take(&mut p.mtu_probe) {
            // Sent again (unpadded) before its fate was known: the probe proves nothing.
            self.mtu.on_probe_lost();
        }
        if was_lost {
            p.state = PacketState::InFlight;
            self.inflight_bytes += len as u64;
        }
        self.stats.retransmits += 1;
        self.after_send(now, HEADER_LEN + len, false);
        self.transmit(HEADER_LEN + len)
    }

    fn after_send(&mut self, now: Instant, bytes: usize, new_data: bool) {
        self.pacer.on_sent(bytes);
        if !self.timers.is_set(Timer::Rto) {
            self.timers.set(Timer::Rto, now + self.rtt.rto());
        }
        if new_data && !self.in_recovery && self.sacked_packets == 0 {
            self.arm_tlp(now);
        }
        self.timers.stop(Timer::KeepAlive);
        self.timers.stop(Timer::ZeroWindowProbe);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const MSS: usize = 1152;

    fn addr() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 4000))
    }

    /// Encodes one packet for stream `to`.
    fn packet(flags: Flags, to: u32, rwnd: u32, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let header = Header {
            flags,
            data_offset: 0,
            stream_id: to,
            rwnd,
            seq,
            ack,
        };
        let mut buf = vec![0u8; HEADER_LEN + payload.len()];
        let n = Packet {
            header,
            padding: &[],
            payload,
        }
        .encode(&mut buf)
        .unwrap();
        buf.truncate(n);
        buf
    }

    fn feed(s: &mut UdxStream, now: Instant, bytes: &[u8]) {
        s.handle_packet(now, &Packet::decode(bytes).unwrap(), addr());
    }

    /// Seqs of the DATA packets `s` sends now.
    fn data_sent(s: &mut UdxStream, now: Instant) -> Vec<u32> {
        let mut buf = [0u8; 1500];
        let mut seqs = Vec::new();
        while let Some(t) = s.poll_transmit(now, &mut buf) {
            let h = Header::decode(&buf[..t.len]).unwrap();
            if h.flags.contains(Flags::DATA) {
                seqs.push(h.seq);
            }
        }
        seqs
    }

    #[test]
    fn the_next_in_order_packet_is_accepted_behind_a_full_window_of_out_of_order_data() {
        let now = Instant::ZERO;
        let cfg = StreamConfig {
            recv_window: 4 * MSS,
            ..StreamConfig::default()
        };
        let room = 4 * MSS + RECV_SLACK;
        let mut b = UdxStream::new(2, now, cfg);
        b.connect(now, 1, addr()).unwrap();
        let data = [7u8; MSS];
        // Seq 0 is missing; 1..=5 fill the buffer with out-of-order data, 6 no longer fits.
        for seq in 1..=6 {
            feed(&mut b, now, &packet(Flags::DATA, 2, 1 << 20, seq, 0, &data));
        }
        assert_eq!(b.recv_buffered(), 5 * MSS);
        assert_eq!(b.stats().recv_dropped_window, 1);
        // The hole: refusing it would leave the stream stuck for good, whatever the app reads.
        feed(&mut b, now, &packet(Flags::DATA, 2, 1 << 20, 0, 0, &data));
        assert_eq!(b.readable_bytes(), 6 * MSS);
        assert_eq!(b.stats().recv_dropped_window, 1);
        assert!(b.recv_buffered() <= 2 * room);
        // Still bounded: the next in-order packet needs room next to the unread bytes.
        feed(&mut b, now, &packet(Flags::DATA, 2, 1 << 20, 6, 0, &data));
        assert_eq!(b.stats().recv_dropped_window, 2);
        assert_eq!(b.readable_bytes(), 6 * MSS);
        let mut out = vec![0u8; 8 * MSS];
        assert_eq!(b.read(&mut out), Ok(6 * MSS));
        feed(&mut b, now, &packet(Flags::DATA, 2, 1 << 20, 6, 0, &data));
        assert_eq!(b.readable_bytes(), MSS);
    }

    /// Every datagram `s` sends now.
    fn drain(s: &mut UdxStream, now: Instant) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 1500];
        let mut out = Vec::new();
        while let Some(t) = s.poll_transmit(now, &mut buf) {
            out.push(buf[..t.len].to_vec());
        }
        out
    }

    /// Headers of every datagram `s` sends now.
    fn headers(s: &mut UdxStream, now: Instant) -> Vec<Header> {
        drain(s, now)
            .iter()
            .map(|d| Header::decode(d).unwrap())
            .collect()
    }

    fn idle_stream(now: Instant, idle: u64) -> UdxStream {
        let cfg = StreamConfig {
            idle_timeout: Some(Duration::from_secs(idle)),
            ..StreamConfig::default()
        };
        let mut s = UdxStream::new(1, now, cfg);
        s.connect(now, 2, addr()).unwrap();
        s
    }

    #[test]
    fn a_silent_peer_is_probed_then_times_the_stream_out_even_with_nothing_in_flight() {
        let t0 = Instant::ZERO;
        let mut s = idle_stream(t0, 15);
        assert!(headers(&mut s, t0).is_empty(), "nothing to send yet");
        // A third of the timeout without a packet: a HEARTBEAT asks the peer for an ACK.
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        let t = t0 + Duration::from_secs(5);
        s.handle_timeout(t);
        let sent = headers(&mut s, t);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].flags.contains(Flags::HEARTBEAT), "{:?}", sent[0]);
        assert_eq!(s.stats().heartbeats_sent, 1);
        // Then every RTO (1 s here) while the silence lasts, and at 15 s the stream gives up.
        let mut now = t;
        while s.close_reason().is_none() {
            now = s.poll_timeout().expect("a timer while open");
            s.handle_timeout(now);
            let _ = drain(&mut s, now);
        }
        assert_eq!(s.close_reason(), Some(Some(StreamError::TimedOut)));
        assert_eq!(now, t0 + Duration::from_secs(15));
        assert_eq!(
            s.stats().heartbeats_sent,
            10,
            "at 5 s, then each second to 14 s"
        );
        let mut buf = [0u8; 8];
        assert_eq!(
            s.read(&mut buf),
            Err(ReadError::Failed(StreamError::TimedOut)),
            "a timed-out stream never reads as a clean end"
        );
        assert_eq!(
            s.write(b"x"),
            Err(WriteError::Closed(Some(StreamError::TimedOut)))
        );
    }

    #[test]
    fn any_packet_from_the_peer_restarts_the_idle_timeout() {
        let t0 = Instant::ZERO;
        let mut s = idle_stream(t0, 15);
        // An ACK (answering a probe) every 12 s keeps the stream open for a minute.
        let mut now = t0;
        for _ in 0..5 {
            while s
                .poll_timeout()
                .is_some_and(|t| t <= now + Duration::from_secs(12))
            {
                let t = s.poll_timeout().unwrap();
                s.handle_timeout(t);
                let _ = drain(&mut s, t);
            }
            now = now + Duration::from_secs(12);
            feed(&mut s, now, &packet(Flags(0), 1, 1 << 20, 0, 0, &[]));
            assert_eq!(s.close_reason(), None);
        }
        assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(5)));
        // A stream whose own END is acknowledged (nothing in flight, no RTO) still times out.
        s.end().unwrap();
        let sent = headers(&mut s, now);
        assert!(sent.iter().any(|h| h.flags.contains(Flags::END)));
        feed(&mut s, now, &packet(Flags(0), 1, 1 << 20, 0, 1, &[]));
        let _ = drain(&mut s, now);
        while s.close_reason().is_none() {
            let t = s.poll_timeout().expect("a timer while open");
            s.handle_timeout(t);
            let _ = drain(&mut s, t);
        }
        assert_eq!(s.close_reason(), Some(Some(StreamError::TimedOut)));
    }

    #[test]
    fn a_timed_out_stream_resets_the_peer_once_on_request() {
        let t0 = Instant::ZERO;
        let mut s = idle_stream(t0, 15);
        s.reset_peer();
        assert!(
            headers(&mut s, t0).is_empty(),
            "an open stream is not reset"
        );
        while s.close_reason().is_none() {
            let t = s.poll_timeout().unwrap();
            s.handle_timeout(t);
            let _ = drain(&mut s, t);
        }
        let t = t0 + Duration::from_secs(15);
        s.reset_peer();
        s.reset_peer();
        let sent = headers(&mut s, t);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].flags.contains(Flags::DESTROY));
        assert!(s.is_drained());
    }

    #[test]
    fn without_an_idle_timeout_an_idle_stream_waits_forever_as_libudx() {
        let t0 = Instant::ZERO;
        let mut s = UdxStream::new(1, t0, StreamConfig::default());
        s.connect(t0, 2, addr()).unwrap();
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_gracefully_closed_stream_lingers_to_acknowledge_a_retransmitted_end() {
        use super::super::demux::{Demux, Incoming};
        let t0 = Instant::ZERO;
        let mut a = Demux::new();
        a.insert(UdxStream::new(1, t0, StreamConfig::default()));
        let mut b = UdxStream::new(2, t0, StreamConfig::default());
        a.get_mut(1).unwrap().connect(t0, 2, addr()).unwrap();
        b.connect(t0, 1, addr()).unwrap();
        let sa = super::SocketId::default();
        // A sends "hello" + END; B reads to EOF and ends too.
        a.get_mut(1).unwrap().write(b"hello").unwrap();
        a.get_mut(1).unwrap().end().unwrap();
        let mut buf = [0u8; 1500];
        let (_, t) = a.poll_transmit(t0, &mut buf).unwrap();
        feed(&mut b, t0, &buf[..t.len]);
        let mut got = [0u8; 16];
        assert_eq!(b.read(&mut got), Ok(5));
        assert_eq!(b.read(&mut got), Ok(0));
        b.end().unwrap();
        let t1 = t0 + Duration::from_millis(20);
        let from_b = drain(&mut b, t1);
        assert!(!from_b.is_empty());
        for d in &from_b {
            assert!(matches!(
                a.handle_datagram(t1, sa, addr(), d),
                Incoming::Consumed { .. }
            ));
        }
        // A has both ENDs acknowledged/received: closed gracefully. Its final ACK is lost.
        let sa_stream = a.get(1).unwrap();
        assert_eq!(sa_stream.close_reason(), Some(None));
        assert!(sa_stream.is_lingering() && !sa_stream.is_drained());
        let linger_end = a.poll_timeout().expect("linger timer");
        assert!(linger_end >= t1 + Duration::from_secs(4));
        while a.poll_transmit(t1, &mut buf).is_some() {}
        // B's END times out and is retransmitted; the lingering A acknowledges it again.
        let rto = b.poll_timeout().expect("B waits for its END's ack");
        b.handle_timeout(rto);
        let again = drain(&mut b, rto);
        assert!(again
            .iter()
            .any(|d| Header::decode(d).unwrap().flags.contains(Flags::END)));
        for d in &again {
            assert!(matches!(
                a.handle_datagram(rto, sa, addr(), d),
                Incoming::Consumed { .. }
            ));
        }
        let mut acks = 0;
        while let Some((_, t)) = a.poll_transmit(rto, &mut buf) {
            acks += 1;
            feed(&mut b, rto, &buf[..t.len]);
        }
        assert_eq!(acks, 1);
        let closed: Vec<_> = core::iter::from_fn(|| b.poll_event())
            .filter(|e| matches!(e, StreamEvent::Closed { .. }))
            .collect();
        assert_eq!(
            closed,
            vec![StreamEvent::Closed { error: None }],
            "B closes gracefully instead of timing out"
        );
        // The linger runs out: the stream is drained and its id no longer claims packets.
        a.handle_timeout(linger_end);
        assert!(a.get(1).unwrap().is_drained() && a.poll_timeout().is_none());
        assert!(matches!(
            a.handle_datagram(linger_end, sa, addr(), &again[0]),
            Incoming::UnknownStream { .. }
        ));
        assert!(a.poll_transmit(linger_end, &mut buf).is_none());
    }

    #[test]
    fn a_reordered_older_ack_does_not_widen_the_peer_window() {
        let t0 = Instant::ZERO;
        let mut a = UdxStream::new(1, t0, StreamConfig::default());
        a.connect(t0, 2, addr()).unwrap();
        assert_eq!(a.write(&[1u8; 30 * MSS]), Ok(30 * MSS));
        assert_eq!(
            data_sent(&mut a, t0),
            (0..10).collect::<Vec<_>>(),
            "initial window"
        );
        // The peer's buffer holds 12 packets. Its newer ACK: 1 and 2 held out of order, free
        // space 10 packets; 0 and 3..=9 are still in flight, so 2 more fit.
        let window = 12 * MSS as u32;
        let mut sack = [0u8; 8];
        packet::write_sack_blocks([(1u32, 3u32)], &mut sack);
        let t1 = t0 + Duration::from_millis(50);
        feed(
            &mut a,
            t1,
            &packet(Flags::SACK, 1, window - 2 * MSS as u32, 0, 0, &sack),
        );
        assert_eq!(data_sent(&mut a, t1), vec![10, 11]);
        // An older ACK overtaken by the newer one: same cumulative ack, nothing held yet, so a
        // larger free space. It carries no news: nothing more may be sent.
        let t2 = t1 + Duration::from_millis(1);
        feed(&mut a, t2, &packet(Flags::ACK, 1, window, 0, 0, &[]));
        assert_eq!(
            data_sent(&mut a, t2),
            Vec::<u32>::new(),
            "overran the peer's buffer"
        );
        // The peer reads everything: cumulative ack 12, whole window free again.
        let t3 = t2 + Duration::from_millis(50);
        feed(&mut a, t3, &packet(Flags::ACK, 1, window, 0, 12, &[]));
        // (The pacer spreads them out; let it refill.)
        let sent: usize = (0..20)
            .map(|ms| data_sent(&mut a, t3 + Duration::from_millis(ms)).len())
            .sum();
        assert_eq!(sent, 12);
    }

    /// A and B over a path with 1 ms one-way latency that drops datagrams longer than
    /// `path_mtu - 28` bytes (the IP and UDP headers) and, optionally, every `drop_every`-th
    /// datagram from A. A sends `len` bytes; returns what B read and every datagram A sent.
    struct Path {
        a: UdxStream,
        b: UdxStream,
        now: Instant,
        path_mtu: usize,
        drop_every: Option<usize>,
        in_flight: alloc::collections::BTreeMap<(u64, u64), (bool, Vec<u8>)>,
        n: u64,
        a_sent: Vec<Vec<u8>>,
    }

    impl Path {
        fn new(path_mtu: usize) -> Self {
            let now = Instant::ZERO;
            let mut a = UdxStream::new(1, now, StreamConfig::default());
            let mut b = UdxStream::new(2, now, StreamConfig::default());
            a.connect(now, 2, addr()).unwrap();
            b.connect(now, 1, addr()).unwrap();
            Path {
                a,
                b,
                now,
                path_mtu,
                drop_every: None,
                in_flight: Default::default(),
                n: 0,
                a_sent: Vec::new(),
            }
        }

        fn pump(&mut self) {
            let mut buf = [0u8; 2048];
            for from_a in [true, false] {
                loop {
                    let s = if from_a { &mut self.a } else { &mut self.b };
                    let Some(t) = s.poll_transmit(self.now, &mut buf) else {
                        break;
                    };
                    let d = buf[..t.len].to_vec();
                    self.n += 1;
                    if from_a {
                        self.a_sent.push(d.clone());
                        if self.drop_every.is_some_and(|k| self.a_sent.len() % k == 0) {
                            continue;
                        }
                    }
                    if d.len() + 28 > self.path_mtu {
                        continue;
                    }
                    self.in_flight
                        .insert((self.now.as_micros() + 1_000, self.n), (from_a, d));
                }
            }
        }

        fn run(&mut self, data: &[u8], limit: Duration) -> Vec<u8> {
            let mut pos = 0;
            let mut got = Vec::new();
            let mut rbuf = vec![0u8; 1 << 16];
            while self.now < Instant::ZERO + limit
                && (got.len() < data.len() || self.a.send_buffered() > 0)
            {
                if pos < data.len() {
                    pos += self.a.write(&data[pos..]).unwrap_or(0);
                }
                self.pump();
                let next = [
                    self.in_flight
                        .keys()
                        .next()
                        .map(|k| Instant::from_micros(k.0)),
                    self.a.poll_timeout(),
                    self.b.poll_timeout(),
                ]
                .into_iter()
                .flatten()
                .min()
                .expect("something to wait for");
                self.now = self.now.max(next);
                while let Some(e) = self.in_flight.first_entry() {
                    if e.key().0 > self.now.as_micros() {
                        break;
                    }
                    let (to_b, d) = e.remove();
                    let to = if to_b { &mut self.b } else { &mut self.a };
                    to.handle_packet(self.now, &Packet::decode(&d).unwrap(), addr());
                }
                for s in [&mut self.a, &mut self.b] {
                    if s.poll_timeout().is_some_and(|t| t <= self.now) {
                        s.handle_timeout(self.now);
                    }
                }
                while let Ok(n) = self.b.read(&mut rbuf) {
                    got.extend_from_slice(&rbuf[..n]);
                }
            }
            got
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn mtu_probing_climbs_to_1500_in_32_byte_steps_with_padded_packets() {
        let mut p = Path::new(1500);
        assert_eq!((p.a.mtu(), p.a.max_payload()), (1200, 1152));
        let data = pattern(16 << 20);
        assert!(p.run(&data, Duration::from_secs(20)) == data);
        assert_eq!(p.a.mtu(), 1500);
        assert_eq!(p.a.mtu_state(), MtuState::Complete);
        assert_eq!(p.a.max_payload(), 1452);
        // The probes: padded (data offset) DATA packets of 1200 (the base: no padding), 1232, …
        let probes: Vec<(usize, u8)> = p
            .a_sent
            .iter()
            .map(|d| (d.len(), Header::decode(d).unwrap()))
            .filter(|(_, h)| h.flags.contains(Flags::DATA) && h.data_offset > 0)
            .map(|(len, h)| (len + 28, h.data_offset))
            .collect();
        let sizes: Vec<usize> = probes.iter().map(|p| p.0).collect();
        assert_eq!(
            sizes,
            (1..=9)
                .map(|i| 1200 + 32 * i)
                .chain([1500])
                .collect::<Vec<_>>()
        );
        assert!(probes.iter().all(|&(_, pad)| pad == 32 || pad == 12));
        // Nothing was lost, nothing resent.
        assert_eq!(p.a.stats().retransmits, 0);
        // Full-size packets after the search.
        assert!(p.a_sent.iter().rev().take(100).any(|d| d.len() == 1472));
    }

    #[test]
    fn lost_probes_end_the_search_at_the_largest_size_the_path_carries() {
        // A path MTU of 1350: 1328 gets through, 1360 never does.
        let mut p = Path::new(1350);
        let data = pattern(4 << 20);
        assert!(p.run(&data, Duration::from_secs(30)) == data);
        assert_eq!(p.a.mtu(), 1328);
        assert_eq!(p.a.mtu_state(), MtuState::Complete);
        // Three probes of 1360 were sent and lost; their data went again in ordinary packets.
        let too_big = p.a_sent.iter().filter(|d| d.len() + 28 == 1360).count();
        assert_eq!(too_big, 3);
        assert!(p.a.stats().retransmits >= 3);
        assert!(p.a_sent.iter().all(|d| d.len() + 28 <= 1360));
    }

    #[test]
    fn a_new_path_restarts_probing_and_larger_packets_in_flight_are_still_resent() {
        let mut p = Path::new(1500);
        let data = pattern(32 << 20);
        let first = 16 << 20;
        assert!(p.run(&data[..first], Duration::from_secs(20)) == data[..first]);
        assert_eq!(p.a.mtu(), 1500);
        // 1452-byte packets in flight, every 5th of them lost, when the remote changes: the MTU
        // is back at 1200 (probing starts over), yet the big packets are resent whole.
        p.a.write(&data[first..first + 200_000]).unwrap();
        p.drop_every = Some(5);
        p.pump();
        let before = p.a_sent.len();
        let lens: Vec<usize> = p
            .a_sent
            .iter()
            .rev()
            .skip(1)
            .take(10)
            .map(|d| d.len())
            .collect();
        assert!(
            lens.iter().all(|&l| l == 1472),
            "{lens:?} {}",
            p.a_sent.len()
        );
        p.a.change_remote(SocketId::default(), 2, addr()).unwrap();
        assert_eq!(
            (p.a.mtu(), p.a.max_payload(), p.a.mtu_state()),
            (1200, 1152, MtuState::Base)
        );
        let got = p.run(&data[first + 200_000..], Duration::from_secs(60));
        assert!(got == data[first..], "every byte, in order");
        assert!(p.a.stats().retransmits > 0);
        let resent_big = p.a_sent[before..]
            .iter()
            .filter(|d| d.len() == 1472 && Header::decode(d).unwrap().flags.contains(Flags::DATA))
            .count();
        assert!(resent_big > 0);
        assert_eq!(p.a.mtu(), 1500, "probed up again");
    }
}

#[cfg(test)]
mod shared_config {
    use super::*;
    use crate::udx::demux::Demux;

    /// Streams with equal tunables share one copy in a demux; one with other tunables keeps
    /// its own (and is shared from then on); a stream's keep-alive stays its own.
    #[test]
    fn equal_configs_are_shared_and_keepalives_stay_per_stream() {
        let now = Instant::from_millis(0);
        let mut d = Demux::new();
        d.insert(UdxStream::new(1, now, StreamConfig::default()));
        d.insert(UdxStream::new(2, now, StreamConfig::default()));
        let small = StreamConfig {
            recv_window: 64 << 10,
            ..StreamConfig::default()
        };
        d.insert(UdxStream::new(3, now, small.clone()));
        d.insert(UdxStream::new(4, now, small));
        let cfg = |d: &Demux, id| Arc::clone(&d.get(id).unwrap().cfg);
        assert!(Arc::ptr_eq(&cfg(&d, 1), &cfg(&d, 2)));
        assert!(!Arc::ptr_eq(&cfg(&d, 2), &cfg(&d, 3)));
        assert!(Arc::ptr_eq(&cfg(&d, 3), &cfg(&d, 4)));
        assert_eq!(d.get(3).unwrap().cfg.recv_window, 64 << 10);
        let ka = Some(Duration::from_secs(5));
        d.get_mut(1).unwrap().set_keepalive(now, ka);
        assert_eq!(d.get(1).unwrap().keepalive, ka);
        assert_eq!(d.get(2).unwrap().keepalive, None);
        assert_eq!(d.get(2).unwrap().cfg.keepalive, None);
    }
}
