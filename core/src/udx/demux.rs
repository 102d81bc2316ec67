//! Many UDX streams on the owner's sockets, keyed by local stream id (spec 04 §1.7, §4.2).
//!
//! A datagram is UDX when it is at least 20 bytes, starts `0xFF 0x01` and names a live local
//! stream; everything else (dht-rpc `0x03`/`0x13`, hole-punch probes, unknown ids) is returned
//! to the owner. A datagram for a stream that is not attached to the socket it arrived on (not
//! connected yet, or connected elsewhere) is returned as [`Incoming::Unattached`]: the owner
//! plays libudx's firewall hook — call [`UdxStream::connect_via`] or
//! [`UdxStream::change_remote`] and feed the same datagram again ("connect on first packet"),
//! or drop it.

use super::packet::{peek_stream_id, Packet};
use super::stream::{PacketOut, SocketId, StreamEvent, UdxStream};
use crate::time::Instant;
use alloc::collections::BTreeMap;
use core::net::SocketAddr;

/// What `handle_datagram` did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Not a UDX packet (or malformed): hand it to dht-rpc / ignore.
    NotUdx,
    /// UDX-shaped, but no live stream has this id: not UDX for this node (libudx passes it to
    /// the socket's message handler). The owner may also create the stream and feed it again.
    UnknownStream {
        /// The id in bytes 4..8.
        stream_id: u32,
    },
    /// For a live stream not attached to this socket: decide (firewall), then feed again or drop.
    Unattached {
        /// The stream.
        stream_id: u32,
        /// Where the datagram came from.
        from: SocketAddr,
        /// The socket it arrived on.
        socket: SocketId,
    },
    /// Processed by the stream.
    Consumed {
        /// The stream.
        stream_id: u32,
    },
}

/// A set of streams sharing sockets.
#[derive(Debug, Default)]
pub struct Demux {
    streams: BTreeMap<u32, UdxStream>,
    tx_cursor: u32,
    ev_cursor: u32,
    /// Sum of [`UdxStream::buffer_reservation`] over `streams`.
    reserved: usize,
}

impl Demux {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a stream; returns the previous one with that id, if any.
    pub fn insert(&mut self, stream: UdxStream) -> Option<UdxStream> {
        self.reserved += stream.buffer_reservation();
        let old = self.streams.insert(stream.local_id(), stream);
        if let Some(o) = &old {
            self.reserved -= o.buffer_reservation();
        }
        old
    }

    /// Remove a stream.
    pub fn remove(&mut self, id: u32) -> Option<UdxStream> {
        let s = self.streams.remove(&id)?;
        self.reserved -= s.buffer_reservation();
        Some(s)
    }

    /// The buffer memory the streams held may use at most: the sum of their receive windows
    /// and send buffers ([`UdxStream::buffer_reservation`]).
    pub fn buffer_reservation(&self) -> usize {
        self.reserved
    }

    /// A stream by local id.
    pub fn get(&self, id: u32) -> Option<&UdxStream> {
        self.streams.get(&id)
    }

    /// A stream by local id, mutably.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut UdxStream> {
        self.streams.get_mut(&id)
    }

    /// Whether an id is in use.
    pub fn contains(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    /// Number of streams held.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is held.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Classify and, if it is for an attached live stream, process one datagram.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Incoming {
        let Some(id) = peek_stream_id(datagram) else {
            return Incoming::NotUdx;
        };
        let Some(stream) = self.streams.get_mut(&id) else {
            return Incoming::UnknownStream { stream_id: id };
        };
        // A gracefully closed stream still acknowledges retransmissions while it lingers.
        if stream.is_closed() && !stream.is_lingering() {
            return Incoming::UnknownStream { stream_id: id };
        }
        if stream.socket() != Some(socket) {
            return Incoming::Unattached {
                stream_id: id,
                from,
                socket,
            };
        }
        match Packet::decode(datagram) {
            Ok(pkt) => {
                stream.handle_packet(now, &pkt, from);
                Incoming::Consumed { stream_id: id }
            }
            // libudx consumes (drops) a known stream's packet with a bad data offset.
            Err(_) => Incoming::Consumed { stream_id: id },
        }
    }

    /// Process a datagram for a live stream whatever socket it came on (the owner vouches for
    /// the source: a relayed stream's late packets from its relay after it moved to a direct
    /// path). False if it is not UDX or not for a live stream.
    pub fn handle_datagram_from_any_socket(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        let Some(stream) = peek_stream_id(datagram).and_then(|id| self.streams.get_mut(&id)) else {
            return false;
        };
        if stream.is_closed() && !stream.is_lingering() {
            return false;
        }
        if let Ok(pkt) = Packet::decode(datagram) {
            stream.handle_packet(now, &pkt, from);
        }
        true
    }

    /// Next datagram from any stream, round-robin.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(u32, PacketOut)> {
        let start = self.tx_cursor;
        let mut found = None;
        for (id, s) in self.streams.range_mut(start..) {
            if let Some(t) = s.poll_transmit(now, buf) {
                found = Some((*id, t));
                break;
            }
        }
        if found.is_none() {
            for (id, s) in self.streams.range_mut(..start) {
                if let Some(t) = s.poll_transmit(now, buf) {
                    found = Some((*id, t));
                    break;
                }
            }
        }
        if let Some((id, _)) = found {
            self.tx_cursor = id.wrapping_add(1);
        }
        found
    }

    /// Earliest timer of any stream.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.streams
            .values()
            .filter_map(UdxStream::poll_timeout)
            .min()
    }

    /// Run expired timers of every stream.
    pub fn handle_timeout(&mut self, now: Instant) {
        for s in self.streams.values_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
    }

    /// Next event of any stream.
    pub fn poll_event(&mut self) -> Option<(u32, StreamEvent)> {
        let start = self.ev_cursor;
        let mut hit = None;
        for (id, s) in self.streams.range_mut(start..) {
            if let Some(e) = s.poll_event() {
                hit = Some((*id, e));
                break;
            }
        }
        if hit.is_none() {
            for (id, s) in self.streams.range_mut(..start) {
                if let Some(e) = s.poll_event() {
                    hit = Some((*id, e));
                    break;
                }
            }
        }
        if let Some((id, _)) = &hit {
            self.ev_cursor = *id;
        }
        hit
    }

    /// Drop closed streams with nothing left to send; returns how many.
    pub fn remove_drained(&mut self) -> usize {
        let before = self.streams.len();
        let mut freed = 0;
        self.streams.retain(|_, s| {
            let keep = !s.is_drained();
            if !keep {
                freed += s.buffer_reservation();
            }
            keep
        });
        self.reserved -= freed;
        before - self.streams.len()
    }
}
