//! The relay's data plane (libudx `relay_to`, spec 05 §7): UDX packets for a relay-side stream
//! id go out verbatim to the other peer, with only the destination stream id (bytes 4..8)
//! rewritten. The relay holds no key, decrypts nothing, never acks, buffers or reorders.
//!
//! Each relayed pair is two relay streams. A relay stream attaches to the socket and source
//! address of the first packet addressed to it (the reference's firewall hook connects it
//! there); packets for it arriving on another socket are dropped. A packet is dropped while
//! the partner has not attached yet (the sender retransmits). A packet with the DESTROY bit is
//! forwarded if it can be, then the pair is gone either way — and removing a pair sends nothing (libudx destroys a
//! relay stream's partner without a DESTROY packet).
//!
//! No allocation per packet: [`Forwarder::forward_in_place`] rewrites the caller's buffer;
//! [`Forwarder::handle_datagram`] copies into a ring of datagram slots allocated once, drained
//! by [`Forwarder::poll_transmit`] (a full ring drops, like a full socket buffer).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::udx::packet::{peek_stream_id, Flags, MAX_DATAGRAM};
use crate::udx::SocketId;

/// Datagrams [`Forwarder::handle_datagram`] can hold until [`Forwarder::poll_transmit`]
/// (256 × 2,048 bytes = 512 KiB, allocated on the first queued packet).
pub const QUEUE_SLOTS: usize = 256;

/// One relay stream: the receiving half of a relayed pair.
#[derive(Debug, Clone, Copy)]
struct RelayStream {
    /// The relay-side id of the other half.
    partner: u32,
    /// The peer's own application stream id (from its `pair`): written into packets sent to it.
    remote_id: u32,
    /// Socket and peer address, from the first packet addressed to this stream.
    attached: Option<(SocketId, SocketAddr)>,
}

/// Where a datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Not for a relay stream: hand it to the UDX demux / dht-rpc.
    NotRelayed,
    /// Rewritten (in place) or queued: send it from `socket` to `to`.
    Forwarded {
        /// The partner's socket.
        socket: SocketId,
        /// The partner peer's address.
        to: SocketAddr,
        /// It carried DESTROY: the pair is gone now ([`Forwarder::poll_closed`]).
        closed_pair: bool,
    },
    /// For a relay stream, but dropped (a dropped DESTROY still removed the pair:
    /// [`Forwarder::poll_closed`]).
    Dropped(DropReason),
}

/// Why a relayed datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The partner has not sent its first packet yet, so its address is unknown.
    PartnerNotAttached,
    /// It arrived on another socket than the stream's first packet.
    WrongSocket,
    /// The forwarding ring is full ([`Forwarder::handle_datagram`] only).
    QueueFull,
    /// Longer than the 2,048-byte datagram ceiling.
    TooLong,
}

/// Counters of the data plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Packets for a relay stream that were dropped.
    pub dropped: u64,
}

/// The relay streams of a relay and their forwarding.
#[derive(Debug, Default)]
pub struct Forwarder {
    streams: BTreeMap<u32, RelayStream>,
    ring: Vec<u8>,
    queue: VecDeque<(SocketId, SocketAddr, u16, u16)>,
    ring_next: u16,
    closed: VecDeque<(u32, u32)>,
    stats: ForwardStats,
}

impl Forwarder {
    /// No relay stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Relay streams held (two per relayed pair).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether `id` is a relay stream.
    pub fn contains(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    /// Counters.
    pub fn stats(&self) -> ForwardStats {
        self.stats
    }

    /// Link two fresh relay streams: packets to `a` go to the peer that paired `b`, rewritten to
    /// `b_remote`, and the other way round. Both ids must be unused (and nonzero).
    pub fn link(&mut self, a: u32, a_remote: u32, b: u32, b_remote: u32) {
        debug_assert!(a != b && !self.contains(a) && !self.contains(b));
        self.streams.insert(
            a,
            RelayStream {
                partner: b,
                remote_id: a_remote,
                attached: None,
            },
        );
        self.streams.insert(
            b,
            RelayStream {
                partner: a,
                remote_id: b_remote,
                attached: None,
            },
        );
    }

    /// Remove the pair `id` belongs to, silently; returns both ids.
    pub fn unlink(&mut self, id: u32) -> Option<(u32, u32)> {
        let s = self.streams.remove(&id)?;
        self.streams.remove(&s.partner);
        Some((id, s.partner))
    }

    /// Pairs removed by a forwarded DESTROY, for the owner's bookkeeping.
    pub fn poll_closed(&mut self) -> Option<(u32, u32)> {
        self.closed.pop_front()
    }

    /// Decide a datagram's fate; on `Forwarded` the caller writes `new_id` into bytes 4..8.
    fn route(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Option<(u32, Forward)>, DropReason> {
        let Some(id) = peek_stream_id(datagram) else {
            return Ok(None);
        };
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(None);
        };
        if datagram.len() > MAX_DATAGRAM {
            return Err(DropReason::TooLong);
        }
        match stream.attached {
            None => stream.attached = Some((socket, from)),
            Some((s, _)) if s != socket => return Err(DropReason::WrongSocket),
            Some(_) => {}
        }
        let partner_id = stream.partner;
        let partner = self.streams.get(&partner_id).copied();
        // libudx's `relay_packet`: a DESTROY closes the pair whether or not it could be sent.
        let destroy = Flags(datagram[2]).contains(Flags::DESTROY);
        if destroy {
            if let Some(pair) = self.unlink(id) {
                self.closed.push_back(pair);
            }
        }
        let Some((to_socket, to)) = partner.and_then(|p| p.attached) else {
            return Err(DropReason::PartnerNotAttached);
        };
        Ok(Some((
            partner.map_or(0, |p| p.remote_id),
            Forward::Forwarded {
                socket: to_socket,
                to,
                closed_pair: destroy,
            },
        )))
    }

    fn count(&mut self, result: &Result<Option<(u32, Forward)>, DropReason>, len: usize) {
        match result {
            Ok(Some(_)) => {
                self.stats.packets += 1;
                self.stats.bytes += len as u64;
            }
            Ok(None) => {}
            Err(_) => self.stats.dropped += 1,
        }
    }

    /// Forward a datagram by rewriting it in the caller's buffer: on
    /// [`Forward::Forwarded`] send `datagram` as it is now.
    pub fn forward_in_place(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Forward {
        let result = self.route(socket, from, datagram);
        self.count(&result, datagram.len());
        match result {
            Ok(None) => Forward::NotRelayed,
            Ok(Some((new_id, fwd))) => {
                datagram[4..8].copy_from_slice(&new_id.to_le_bytes());
                fwd
            }
            Err(why) => Forward::Dropped(why),
        }
    }

    /// Forward a datagram through the ring; [`Forwarder::poll_transmit`] hands it out.
    pub fn handle_datagram(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Forward {
        if peek_stream_id(datagram).is_some_and(|id| self.contains(id))
            && self.queue.len() >= QUEUE_SLOTS
        {
            self.stats.dropped += 1;
            return Forward::Dropped(DropReason::QueueFull);
        }
        let result = self.route(socket, from, datagram);
        self.count(&result, datagram.len());
        match result {
            Ok(None) => Forward::NotRelayed,
            Ok(Some((new_id, fwd))) => {
                if self.ring.is_empty() {
                    self.ring = vec![0u8; QUEUE_SLOTS * MAX_DATAGRAM];
                    self.queue.reserve_exact(QUEUE_SLOTS);
                }
                let slot = usize::from(self.ring_next);
                self.ring_next = ((slot + 1) % QUEUE_SLOTS) as u16;
                let start = slot * MAX_DATAGRAM;
                let buf = &mut self.ring[start..start + datagram.len()];
                buf.copy_from_slice(datagram);
                buf[4..8].copy_from_slice(&new_id.to_le_bytes());
                if let Forward::Forwarded { socket, to, .. } = fwd {
                    self.queue
                        .push_back((socket, to, slot as u16, datagram.len() as u16));
                }
                fwd
            }
            Err(why) => Forward::Dropped(why),
        }
    }

    /// The next queued datagram: copied into `buf` (at least 2,048 bytes); returns the socket,
    /// the destination and the length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketId, SocketAddr, usize)> {
        let &(socket, to, slot, len) = self.queue.front()?;
        let len = usize::from(len);
        let out = buf.get_mut(..len)?;
        self.queue.pop_front();
        let start = usize::from(slot) * MAX_DATAGRAM;
        out.copy_from_slice(&self.ring[start..start + len]);
        Some((socket, to, len))
    }
}
