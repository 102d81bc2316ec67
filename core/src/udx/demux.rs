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
use super::stream::{PacketOut, SocketId, StreamConfig, StreamEvent, UdxStream};
use crate::time::Instant;
use crate::timer_queue::TimerQueue;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use core::cell::RefCell;
use core::net::SocketAddr;
use core::ops::Bound;

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
///
/// The per-call work is proportional to the streams that have something to do, not to how
/// many are held: streams' timers sit in a deadline queue (`TimerQueue`), and a stream that
/// was handed out mutably, fed a packet or ran a timer is put on the transmit and event ready
/// lists until its `poll_transmit` / `poll_event` says it has nothing. A stream off the
/// transmit list has nothing to send until it is touched again or one of its timers is due
/// (pacing, RTO, probes are all timers), so a stream whose deadline passed is put back on
/// the list before sending. The lists keep the round-robin order of a walk over every stream
/// (ordered sets from the same cursors): the output is the same as without them.
#[derive(Debug, Default)]
pub struct Demux {
    /// Boxed: a B-tree node holds 11 entries and is often half full, and a stream is over a
    /// kilobyte — inline, the empty slots would cost as much again per idle connection.
    streams: BTreeMap<u32, Box<UdxStream>>,
    tx_cursor: u32,
    ev_cursor: u32,
    /// Sum of [`UdxStream::buffer_reservation`] over `streams`.
    reserved: usize,
    /// Streams that may have a datagram to send.
    tx_ready: BTreeSet<u32>,
    /// Streams that may have an event.
    ev_ready: BTreeSet<u32>,
    /// The streams' deadlines (interior: [`poll_timeout`](Self::poll_timeout) takes `&self`).
    timers: RefCell<TimerQueue<u32>>,
    /// Streams `poll_transmit` took off the queue as due, until `handle_timeout` runs them
    /// (they are not queued again meanwhile, so sending many datagrams does not take them
    /// again and again).
    overdue: BTreeSet<u32>,
    /// The tunables the last inserted stream brought: streams with equal ones share them.
    shared_config: Option<Arc<StreamConfig>>,
}

impl Demux {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a stream; returns the previous one with that id, if any.
    pub fn insert(&mut self, mut stream: UdxStream) -> Option<UdxStream> {
        stream.share_config(&mut self.shared_config);
        self.reserved += stream.buffer_reservation();
        let id = stream.local_id();
        self.touch(id);
        let old = self.streams.insert(id, Box::new(stream)).map(|b| *b);
        if let Some(o) = &old {
            self.reserved -= o.buffer_reservation();
        }
        old
    }

    /// Remove a stream.
    pub fn remove(&mut self, id: u32) -> Option<UdxStream> {
        let s = *self.streams.remove(&id)?;
        self.reserved -= s.buffer_reservation();
        self.forget(id);
        Some(s)
    }

    /// `id` may have changed: it may have something to send, an event, another deadline.
    fn touch(&mut self, id: u32) {
        self.tx_ready.insert(id);
        self.ev_ready.insert(id);
        self.timers.get_mut().touch(id);
    }

    /// `id` is gone.
    fn forget(&mut self, id: u32) {
        self.tx_ready.remove(&id);
        self.ev_ready.remove(&id);
        self.overdue.remove(&id);
        self.timers.get_mut().remove(id);
    }

    /// Queues the deadlines of the streams touched since the last call.
    fn refresh_timers(&mut self) {
        let streams = &self.streams;
        self.timers
            .get_mut()
            .refresh(|id| streams.get(&id).and_then(|s| s.poll_timeout()));
    }

    /// The buffer memory the streams held may use at most: the sum of their receive windows
    /// and send buffers ([`UdxStream::buffer_reservation`]).
    pub fn buffer_reservation(&self) -> usize {
        self.reserved
    }

    /// A stream by local id.
    pub fn get(&self, id: u32) -> Option<&UdxStream> {
        self.streams.get(&id).map(|s| &**s)
    }

    /// A stream by local id, mutably.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut UdxStream> {
        if self.streams.contains_key(&id) {
            self.touch(id);
        }
        self.streams.get_mut(&id).map(|s| &mut **s)
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
        self.deliver(now, Some(socket), from, datagram)
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
        matches!(
            self.deliver(now, None, from, datagram),
            Incoming::Consumed { .. }
        )
    }

    /// A datagram to its live stream; with `socket`, only if the stream is attached to it.
    fn deliver(
        &mut self,
        now: Instant,
        socket: Option<SocketId>,
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
        if let Some(socket) = socket.filter(|&s| stream.socket() != Some(s)) {
            return Incoming::Unattached {
                stream_id: id,
                from,
                socket,
            };
        }
        match Packet::decode(datagram) {
            Ok(pkt) => {
                stream.handle_packet(now, &pkt, from);
                self.touch(id);
                Incoming::Consumed { stream_id: id }
            }
            // libudx consumes (drops) a known stream's packet with a bad data offset.
            Err(_) => Incoming::Consumed { stream_id: id },
        }
    }

    /// Next datagram from any stream, round-robin (from the stream after the last one that
    /// sent).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(u32, PacketOut)> {
        // Streams whose timers are due may send (a pacing delay ran out) before
        // `handle_timeout` runs them: back on the list.
        self.refresh_timers();
        let timers = self.timers.get_mut();
        if timers.next().is_some_and(|t| t <= now) {
            for id in timers.take_due_untouched(now) {
                self.tx_ready.insert(id);
                self.overdue.insert(id);
            }
        }
        let mut walk = RoundRobin::from(self.tx_cursor);
        loop {
            let id = walk.next(&self.tx_ready)?;
            let out = match self.streams.get_mut(&id) {
                Some(s) => s.poll_transmit(now, buf),
                None => None,
            };
            // Sending (or finding nothing to send) may move its timers and queue events.
            if self.streams.contains_key(&id) {
                self.ev_ready.insert(id);
                self.timers.get_mut().touch(id);
            }
            match out {
                Some(t) => {
                    self.tx_cursor = id.wrapping_add(1);
                    return Some((id, t));
                }
                None => {
                    self.tx_ready.remove(&id);
                    walk.past(id);
                }
            }
        }
    }

    /// Earliest timer of any stream.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut timers = self.timers.borrow_mut();
        let streams = &self.streams;
        timers.refresh(|id| streams.get(&id).and_then(|s| s.poll_timeout()));
        let overdue = self
            .overdue
            .iter()
            .filter_map(|id| streams.get(id).and_then(|s| s.poll_timeout()));
        timers.next().into_iter().chain(overdue).min()
    }

    /// Run expired timers of every stream (in stream id order).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.refresh_timers();
        let mut due = self.timers.get_mut().take_due(now);
        if !self.overdue.is_empty() {
            due.extend(core::mem::take(&mut self.overdue));
            due.sort_unstable();
            due.dedup();
        }
        for id in due {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            self.touch(id);
        }
    }

    /// Next event of any stream (from the last stream that had one).
    pub fn poll_event(&mut self) -> Option<(u32, StreamEvent)> {
        let mut walk = RoundRobin::from(self.ev_cursor);
        loop {
            let id = walk.next(&self.ev_ready)?;
            match self.streams.get_mut(&id).and_then(|s| s.poll_event()) {
                Some(e) => {
                    self.ev_cursor = id;
                    return Some((id, e));
                }
                None => {
                    self.ev_ready.remove(&id);
                    walk.past(id);
                }
            }
        }
    }

    /// Drop closed streams with nothing left to send; returns how many.
    pub fn remove_drained(&mut self) -> usize {
        let before = self.streams.len();
        let mut freed = 0;
        let mut gone = alloc::vec::Vec::new();
        self.streams.retain(|id, s| {
            let keep = !s.is_drained();
            if !keep {
                freed += s.buffer_reservation();
                gone.push(*id);
            }
            keep
        });
        for id in gone {
            self.forget(id);
        }
        self.reserved -= freed;
        before - self.streams.len()
    }
}

/// A walk over a ready set in id order starting at a cursor and wrapping around once: ids at
/// or after the cursor, then from 0 up to it. Members may be removed as the walk goes.
struct RoundRobin {
    start: u32,
    from: Bound<u32>,
    wrapped: bool,
}

impl RoundRobin {
    fn from(start: u32) -> Self {
        RoundRobin {
            start,
            from: Bound::Included(start),
            wrapped: false,
        }
    }

    /// The next ready id not yet passed, or `None` once the walk is back at its start.
    fn next(&mut self, ready: &BTreeSet<u32>) -> Option<u32> {
        loop {
            let next = if self.wrapped {
                ready.range((self.from, Bound::Excluded(self.start))).next()
            } else {
                ready.range((self.from, Bound::Unbounded)).next()
            };
            match next {
                Some(&id) => return Some(id),
                None if self.wrapped => return None,
                None => {
                    self.wrapped = true;
                    self.from = Bound::Included(0);
                }
            }
        }
    }

    /// Goes on after `id`.
    fn past(&mut self, id: u32) {
        self.from = Bound::Excluded(id);
    }
}
