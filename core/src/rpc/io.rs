//! Requests in flight (dht-rpc `lib/io.js`): transaction ids, retransmission timers, the
//! congestion window's FIFO, and matching responses by tid.
//!
//! This module knows nothing about what a request is *for*: each carries an opaque owner tag
//! `O` that the node uses to route the outcome.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::SocketAddrV4;
use core::time::Duration;

use super::congestion::CongestionWindow;
use super::id::NodeId;
use super::rtt::backoff;
use super::socket::SocketKind;
use crate::Instant;

/// Requests in flight (queued ones included) at most. Beyond it new requests fail at once, so
/// transaction ids are never reused and sustained congestion can't grow state without bound.
pub(crate) const MAX_INFLIGHT: usize = 16_384;

/// Default time to wait for a response before retransmitting.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

/// One request waiting for its response.
#[derive(Debug)]
pub(crate) struct InFlight<O> {
    pub(crate) to: SocketAddrV4,
    pub(crate) to_id: Option<NodeId>,
    pub(crate) socket: SocketKind,
    pub(crate) bytes: Vec<u8>,
    pub(crate) ttl: Option<u8>,
    /// Transmissions so far.
    pub(crate) sent: u32,
    /// Retransmissions allowed after the first send.
    pub(crate) retries: u32,
    pub(crate) timeout: Duration,
    /// `timeout` is an adaptive first-try timeout: retransmissions double it (up to 1 s).
    pub(crate) adaptive: bool,
    /// When the latest transmission left (round trips are measured from it).
    pub(crate) last_sent: Option<Instant>,
    /// Timer expiries so far.
    pub(crate) expiries: u32,
    /// When the current timer fires; `None` while queued behind the congestion window.
    pub(crate) deadline: Option<Instant>,
    pub(crate) created: Instant,
    /// The cycle callback (first timer expiry) has run.
    pub(crate) cycled: bool,
    pub(crate) force: bool,
    pub(crate) owner: O,
}

/// A datagram to send, produced by the io layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) socket: SocketKind,
    pub(crate) to: SocketAddrV4,
    pub(crate) bytes: Vec<u8>,
    pub(crate) ttl: Option<u8>,
}

/// Requests by tid, flat: the requests in a slab (freed slots reused), and a vector of
/// `(tid, slot)` sorted by tid to find them and to walk them in tid order. A node has a
/// handful in flight; lookups bisect a few cache lines and starting a request allocates
/// nothing once the vectors have grown (a B-tree allocated a ~2 KB leaf per idle node's
/// first request).
#[derive(Debug)]
struct Requests<O> {
    index: Vec<(u16, u32)>,
    slab: Vec<Option<InFlight<O>>>,
    free: Vec<u32>,
}

impl<O> Requests<O> {
    const fn new() -> Self {
        Requests {
            index: Vec::new(),
            slab: Vec::new(),
            free: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn slot(&self, tid: u16) -> Option<usize> {
        let pos = self.index.binary_search_by(|e| e.0.cmp(&tid)).ok()?;
        self.index.get(pos).map(|e| e.1 as usize)
    }

    fn contains_key(&self, tid: &u16) -> bool {
        self.slot(*tid).is_some()
    }

    fn get(&self, tid: &u16) -> Option<&InFlight<O>> {
        self.slab.get(self.slot(*tid)?)?.as_ref()
    }

    fn get_mut(&mut self, tid: &u16) -> Option<&mut InFlight<O>> {
        let slot = self.slot(*tid)?;
        self.slab.get_mut(slot)?.as_mut()
    }

    /// Inserts a request under a tid not in use (the caller allocated it).
    fn insert(&mut self, tid: u16, req: InFlight<O>) {
        let Err(pos) = self.index.binary_search_by(|e| e.0.cmp(&tid)) else {
            return;
        };
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(x) = self.slab.get_mut(s as usize) {
                    *x = Some(req);
                }
                s
            }
            None => {
                let Ok(s) = u32::try_from(self.slab.len()) else {
                    return;
                };
                self.slab.push(Some(req));
                s
            }
        };
        self.index.insert(pos, (tid, slot));
    }

    fn remove(&mut self, tid: &u16) -> Option<InFlight<O>> {
        let pos = self.index.binary_search_by(|e| e.0.cmp(tid)).ok()?;
        let (_, slot) = self.index.remove(pos);
        let req = self.slab.get_mut(slot as usize)?.take();
        self.free.push(slot);
        if self.index.is_empty() {
            // Idle: free the vectors (a node is idle most of the time; see `Io::trim`).
            *self = Requests::new();
        }
        req
    }

    /// The requests in tid order.
    fn iter(&self) -> impl Iterator<Item = (u16, &InFlight<O>)> + '_ {
        self.index
            .iter()
            .filter_map(|&(tid, s)| Some((tid, self.slab.get(s as usize)?.as_ref()?)))
    }

    /// Takes every request, in tid order.
    fn take_all(&mut self) -> Vec<(u16, InFlight<O>)> {
        let mut all = core::mem::replace(self, Requests::new());
        all.index
            .iter()
            .filter_map(|&(tid, s)| Some((tid, all.slab.get_mut(s as usize)?.take()?)))
            .collect()
    }
}

/// The in-flight table.
#[derive(Debug)]
pub(crate) struct Io<O> {
    next_tid: u16,
    inflight: Requests<O>,
    /// Armed retransmission timers, sorted (earliest first; a tid breaks ties).
    deadlines: Vec<(Instant, u16)>,
    queued: VecDeque<u16>,
    pub(crate) congestion: CongestionWindow,
}

impl<O> Io<O> {
    /// Frees what emptied collections keep allocated (see `RpcNode::trim`).
    pub(crate) fn trim(&mut self) {
        if self.inflight.is_empty() {
            self.inflight = Requests::new();
        }
        if self.deadlines.is_empty() {
            self.deadlines = Vec::new();
        }
    }

    pub(crate) fn new(first_tid: u16, max_window: u32) -> Self {
        Io {
            next_tid: first_tid,
            inflight: Requests::new(),
            deadlines: Vec::new(),
            queued: VecDeque::new(),
            congestion: CongestionWindow::new(max_window),
        }
    }

    fn disarm(&mut self, deadline: Instant, tid: u16) {
        if let Ok(pos) = self.deadlines.binary_search(&(deadline, tid)) {
            self.deadlines.remove(pos);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inflight.len()
    }

    /// Takes the next free tid (the counter wraps; tids still in flight are skipped). `None`
    /// when every tid is in use: the caller fails the request instead of overwriting another.
    pub(crate) fn allocate_tid(&mut self) -> Option<u16> {
        if self.inflight.len() >= MAX_INFLIGHT {
            return None;
        }
        loop {
            let tid = self.next_tid;
            self.next_tid = self.next_tid.wrapping_add(1);
            if !self.inflight.contains_key(&tid) {
                return Some(tid);
            }
        }
    }

    /// Registers a request under `tid` and sends it (or queues it behind the window).
    pub(crate) fn start(
        &mut self,
        now: Instant,
        tid: u16,
        req: InFlight<O>,
        out: &mut impl FnMut(Outgoing),
    ) {
        self.inflight.insert(tid, req);
        self.send(now, tid, out);
    }

    fn send(&mut self, now: Instant, tid: u16, out: &mut impl FnMut(Outgoing)) {
        let Some(req) = self.inflight.get_mut(&tid) else {
            return;
        };
        if !req.force && self.congestion.is_full() {
            req.deadline = None;
            self.queued.push_back(tid);
            return;
        }
        self.congestion.send();
        req.sent += 1;
        req.last_sent = Some(now);
        let wait = if req.adaptive {
            backoff(req.timeout, req.sent)
        } else {
            req.timeout
        };
        let deadline = now + wait;
        req.deadline = Some(deadline);
        if let Err(pos) = self.deadlines.binary_search(&(deadline, tid)) {
            self.deadlines.insert(pos, (deadline, tid));
        }
        out(Outgoing {
            socket: req.socket,
            to: req.to,
            bytes: req.bytes.clone(),
            ttl: req.ttl,
        });
    }

    /// The 750 ms drain: rotate the window and release queued requests while it has room.
    pub(crate) fn drain(&mut self, now: Instant, out: &mut impl FnMut(Outgoing)) {
        self.congestion.drain();
        while !self.congestion.is_full() {
            let Some(tid) = self.queued.pop_front() else {
                break;
            };
            if self
                .inflight
                .get(&tid)
                .is_some_and(|r| r.deadline.is_none())
            {
                self.send(now, tid, out);
            }
        }
    }

    /// Whether requests wait behind the congestion window (the next drain sends them).
    pub(crate) fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// The earliest retransmission deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Pops one request whose timer fired at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<u16> {
        let &(t, tid) = self.deadlines.first()?;
        if t > now {
            return None;
        }
        self.deadlines.remove(0);
        if let Some(req) = self.inflight.get_mut(&tid) {
            req.deadline = None;
            req.expiries += 1;
        }
        Some(tid)
    }

    /// Whether this expiry is the request's first (its cycle hook has not run yet); marks it run.
    pub(crate) fn take_cycle(&mut self, tid: u16) -> bool {
        match self.inflight.get_mut(&tid) {
            Some(r) if !r.cycled => {
                r.cycled = true;
                true
            }
            _ => false,
        }
    }

    /// After a timer fired (and any cycle hook ran): retransmit, or fail when retries are used up.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        tid: u16,
        out: &mut impl FnMut(Outgoing),
    ) -> Option<InFlight<O>> {
        let req = self.inflight.get(&tid)?;
        if req.deadline.is_some() {
            // Re-armed by the owner in the meantime.
            return None;
        }
        if req.sent > req.retries {
            // A request destroyed by its timeout hands back a congestion credit, as the reference.
            self.congestion.recv();
            return self.inflight.remove(&tid);
        }
        self.send(now, tid, out);
        None
    }

    /// Removes the request a response answers, returning a congestion credit.
    pub(crate) fn complete(&mut self, tid: u16) -> Option<InFlight<O>> {
        let req = self.inflight.remove(&tid)?;
        if let Some(d) = req.deadline {
            self.disarm(d, tid);
        }
        self.congestion.recv();
        Some(req)
    }

    /// Cancels a request (session destroyed): no event, two congestion credits as the reference.
    pub(crate) fn cancel(&mut self, tid: u16) -> Option<InFlight<O>> {
        let req = self.complete(tid)?;
        self.congestion.recv();
        Some(req)
    }

    /// The tids of requests whose owner matches.
    pub(crate) fn tids_where(&self, mut pred: impl FnMut(&O) -> bool) -> Vec<u16> {
        self.inflight
            .iter()
            .filter(|(_, r)| pred(&r.owner))
            .map(|(t, _)| t)
            .collect()
    }

    /// The owner of a request, to hand it over.
    pub(crate) fn owner_mut(&mut self, tid: u16) -> Option<&mut O> {
        self.inflight.get_mut(&tid).map(|r| &mut r.owner)
    }

    pub(crate) fn get(&self, tid: u16) -> Option<&InFlight<O>> {
        self.inflight.get(&tid)
    }

    /// Fails everything (destroy): returns all requests in tid order.
    pub(crate) fn clear(&mut self) -> Vec<(u16, InFlight<O>)> {
        self.deadlines.clear();
        self.queued.clear();
        self.inflight.take_all()
    }
}
