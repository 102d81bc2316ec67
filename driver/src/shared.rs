//! The core behind a lock, plus the wakers that connect it to async callers.
//!
//! The I/O task feeds datagrams and timeouts in and flushes transmits out; user calls enqueue
//! work and kick the I/O task through [`IoWakeup`]. Events from the core are routed to the
//! future or stream waiting for them.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use hdht_core::dht::{
    DhtEvent, FindPeerReply, LookupReply, OpError, OpId, OpOutput, SocketCommand,
};
use hdht_core::rpc::{
    IncomingRequest, QueryError, QueryId, QueryReply, QueryResult, QuerySpec, ReplySpec,
    RequestError, RequestId, RequestSpec, RpcEvent, SocketKind,
};

use crate::firewall::{Decisions, FirewallAsk, Question, MAX_PENDING_FIREWALL_DECISIONS};
use crate::{Clock, DhtError, Node};

/// Requests delivered to the user but not yet taken; beyond this they are dropped (the remote
/// side times out, as with any overloaded server).
const MAX_QUEUED_REQUESTS: usize = 1024;

/// What a running query or operation has produced but nobody has taken yet.
#[derive(Debug)]
struct Slot<Item, Done> {
    replies: VecDeque<Item>,
    done: Option<Done>,
    waker: Option<Waker>,
}

impl<Item, Done> Default for Slot<Item, Done> {
    fn default() -> Self {
        Slot {
            replies: VecDeque::new(),
            done: None,
            waker: None,
        }
    }
}

impl<Item, Done> Slot<Item, Done> {
    fn push(&mut self, item: Item) {
        self.replies.push_back(item);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn finish(&mut self, done: Done) {
        self.done = Some(done);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The next reply of the slot `id`; `None` once it ended (or vanished).
fn poll_slot_next<K: Ord, Item, Done>(
    slots: &mut BTreeMap<K, Slot<Item, Done>>,
    id: &K,
    cx: &Context<'_>,
) -> Poll<Option<Item>> {
    let Some(slot) = slots.get_mut(id) else {
        return Poll::Ready(None);
    };
    if let Some(r) = slot.replies.pop_front() {
        return Poll::Ready(Some(r));
    }
    if slot.done.is_some() {
        return Poll::Ready(None);
    }
    slot.waker = Some(cx.waker().clone());
    Poll::Pending
}

/// The outcome of the slot `id`, discarding unread replies; `None` if it vanished (destroyed).
fn poll_slot_done<K: Ord, Item, Done>(
    slots: &mut BTreeMap<K, Slot<Item, Done>>,
    id: &K,
    cx: &Context<'_>,
) -> Poll<Option<Done>> {
    let Some(slot) = slots.get_mut(id) else {
        return Poll::Ready(None);
    };
    slot.replies.clear();
    if let Some(done) = slot.done.take() {
        slots.remove(id);
        return Poll::Ready(Some(done));
    }
    slot.waker = Some(cx.waker().clone());
    Poll::Pending
}

type QuerySlot = Slot<QueryReply, Result<QueryResult, QueryError>>;

/// A reply streamed by a HyperDHT operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpReply {
    /// A lookup/announce/unannounce reply with peers.
    Lookup(LookupReply),
    /// A find-peer reply.
    FindPeer(FindPeerReply),
}

type OpSlot = Slot<OpReply, Result<OpOutput, OpError>>;

#[derive(Debug, Default)]
struct RequestSlot {
    result: Option<Result<QueryReply, RequestError>>,
    waker: Option<Waker>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) node: Node,
    clock: Clock,
    io_waker: Option<Waker>,
    io_kick: bool,
    ready: bool,
    ready_wakers: Vec<Waker>,
    queries: BTreeMap<QueryId, QuerySlot>,
    requests: BTreeMap<RequestId, RequestSlot>,
    ops: BTreeMap<OpId, OpSlot>,
    incoming: VecDeque<IncomingRequest>,
    incoming_waker: Option<Waker>,
    events: VecDeque<RpcEvent>,
    pub(crate) connections: crate::conn_slots::Connections,
    /// Unannounces of closing servers: when one finishes, its server is closed.
    pub(crate) server_closes: BTreeMap<OpId, hdht_core::dht::ServerId>,
    /// Firewall questions for the I/O task to hand to the firewalls (outside the lock).
    firewall_queue: Vec<Question>,
    /// Firewall decisions queued or running (at most [`MAX_PENDING_FIREWALL_DECISIONS`]).
    firewall_pending: usize,
    interfaces: crate::interfaces::InterfaceWatch,
    /// The swarm beside the node, if one was started: it sees every node event first.
    pub(crate) swarm: Option<crate::swarm_state::SwarmState>,
}

impl Inner {
    fn op_reply(&mut self, op: OpId, reply: OpReply) {
        if let Some(slot) = self.ops.get_mut(&op) {
            slot.push(reply);
        }
    }

    fn dispatch_rpc(&mut self, ev: RpcEvent) {
        match ev {
            RpcEvent::QueryReply { query, reply } => {
                if let Some(slot) = self.queries.get_mut(&query) {
                    slot.push(reply);
                }
            }
            RpcEvent::QueryDone { query, result } => {
                if let Some(slot) = self.queries.get_mut(&query) {
                    slot.finish(result);
                }
            }
            RpcEvent::Response { request, result } => {
                if let Some(slot) = self.requests.get_mut(&request) {
                    slot.result = Some(result);
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
            }
            RpcEvent::Ready => {
                self.ready = true;
                for w in self.ready_wakers.drain(..) {
                    w.wake();
                }
            }
            RpcEvent::Request(req) => {
                if self.incoming.len() < MAX_QUEUED_REQUESTS {
                    self.incoming.push_back(req);
                    if let Some(w) = self.incoming_waker.take() {
                        w.wake();
                    }
                }
            }
            other => {
                if self.events.len() >= MAX_QUEUED_REQUESTS {
                    self.events.pop_front();
                }
                self.events.push_back(other);
            }
        }
    }

    fn kick(&mut self) {
        self.io_kick = true;
        if let Some(w) = self.io_waker.take() {
            w.wake();
        }
    }

    /// Queues a firewall question for the I/O task (which asks the firewall outside the
    /// lock), or rejects the handshake at once when too many decisions wait already.
    fn ask_firewall(&mut self, q: Box<Question>) {
        if self.firewall_pending < MAX_PENDING_FIREWALL_DECISIONS {
            self.firewall_pending += 1;
            self.firewall_queue.push(*q);
            self.kick();
        } else {
            let now = self.clock.now();
            self.node.firewall_decision(now, q.handshake, true);
        }
    }

    /// Routes every pending core event to whoever waits for it.
    fn dispatch(&mut self) {
        while let Some(ev) = self.node.poll_event() {
            let ev = match self.swarm.as_mut() {
                Some(swarm) => {
                    let now = self.clock.now();
                    let offer = swarm.offer(&mut self.node, now, ev);
                    swarm.drain(&mut self.node, &mut self.connections);
                    match offer {
                        crate::swarm_state::Offer::Theirs(ev) => ev,
                        crate::swarm_state::Offer::Taken => continue,
                        crate::swarm_state::Offer::Ask(q) => {
                            self.connections.swarm_server(q.server);
                            self.ask_firewall(q);
                            continue;
                        }
                    }
                }
                None => ev,
            };
            match ev {
                DhtEvent::Rpc(ev) => self.dispatch_rpc(ev),
                DhtEvent::LookupReply { op, reply } => self.op_reply(op, OpReply::Lookup(reply)),
                DhtEvent::FindPeerReply { op, reply } => {
                    self.op_reply(op, OpReply::FindPeer(reply))
                }
                DhtEvent::OpDone { op, result } => {
                    if let Some(server) = self.server_closes.remove(&op) {
                        self.connections.server_unannounced(server);
                    } else if let Some(slot) = self.ops.get_mut(&op) {
                        slot.finish(result);
                    }
                }
                DhtEvent::Connect(ev) => match self.connections.dispatch(ev) {
                    Some(FirewallAsk::Ask(q)) => self.ask_firewall(q),
                    Some(FirewallAsk::Decide(handshake, reject)) => {
                        let now = self.clock.now();
                        self.node.firewall_decision(now, handshake, reject);
                    }
                    None => {}
                },
            }
        }
        for conn in self.connections.take_forgettable() {
            self.node.conn_forget(conn);
        }
        if let Some(swarm) = self.swarm.as_mut() {
            swarm.drain(&mut self.node, &mut self.connections);
        }
        if self.node.is_destroyed() {
            if let Some(swarm) = self.swarm.as_mut() {
                swarm.wake_everyone();
            }
            self.connections.wake_all();
            for w in self.ready_wakers.drain(..) {
                w.wake();
            }
            if let Some(w) = self.incoming_waker.take() {
                w.wake();
            }
        }
    }
}

/// A handle to the locked core. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shared {
    inner: Arc<Mutex<Inner>>,
    /// Firewall decisions in flight, polled by the I/O task without the core's lock.
    decisions: Arc<Mutex<Decisions>>,
}

impl Shared {
    /// Wraps a freshly created node.
    pub fn new(node: Node, clock: Clock) -> Self {
        let mut inner = Inner {
            node,
            clock,
            io_waker: None,
            io_kick: false,
            ready: false,
            ready_wakers: Vec::new(),
            queries: BTreeMap::new(),
            requests: BTreeMap::new(),
            ops: BTreeMap::new(),
            incoming: VecDeque::new(),
            incoming_waker: None,
            events: VecDeque::new(),
            connections: Default::default(),
            server_closes: BTreeMap::new(),
            firewall_queue: Vec::new(),
            firewall_pending: 0,
            interfaces: crate::interfaces::InterfaceWatch::none(),
            swarm: None,
        };
        inner.dispatch();
        Shared {
            inner: Arc::new(Mutex::new(inner)),
            decisions: Arc::default(),
        }
    }

    /// Hands queued firewall questions to their firewalls and polls the decisions (with `cx`,
    /// the I/O task's context), then applies the answers. The firewalls run and are polled
    /// without the core's lock, so they may call the node.
    fn run_firewalls(&self, cx: &mut Context<'_>) {
        let mut decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        let (questions, closed) = {
            let mut inner = self.lock();
            if inner.node.is_destroyed() {
                inner.firewall_queue.clear();
                inner.firewall_pending = 0;
                drop(inner);
                decisions.clear();
                return;
            }
            let questions = std::mem::take(&mut inner.firewall_queue);
            let closed = inner.connections.closed_servers(
                decisions
                    .servers()
                    .into_iter()
                    .chain(questions.iter().map(|q| q.server)),
            );
            (questions, closed)
        };
        if questions.is_empty() && decisions.is_empty() {
            return;
        }
        let answers = decisions.run(questions, &closed, cx);
        drop(decisions);
        if answers.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let now = inner.clock.now();
        for (handshake, reject) in answers {
            inner.firewall_pending = inner.firewall_pending.saturating_sub(1);
            inner.node.firewall_decision(now, handshake, reject);
        }
        inner.dispatch();
        inner.kick();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with read access to the node.
    pub fn with_node<T>(&self, f: impl FnOnce(&Node) -> T) -> T {
        f(&self.lock().node)
    }

    /// Runs `f` with write access to the node, then routes events and kicks the I/O task.
    pub fn with_node_mut<T>(&self, f: impl FnOnce(&mut Node, hdht_core::Instant) -> T) -> T {
        let mut inner = self.lock();
        let now = inner.clock.now();
        let out = f(&mut inner.node, now);
        inner.dispatch();
        inner.kick();
        out
    }

    /// Runs `f` on the locked state (connections and servers).
    pub(crate) fn with_inner<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.lock())
    }

    /// Runs `f` on the locked state with the current time, then routes events and wakes the
    /// I/O task (reads open windows, writes queue packets).
    pub(crate) fn with_inner_kick<T>(
        &self,
        f: impl FnOnce(&mut Inner, hdht_core::Instant) -> T,
    ) -> T {
        let mut inner = self.lock();
        let now = inner.clock.now();
        let out = f(&mut inner, now);
        inner.dispatch();
        inner.kick();
        out
    }

    /// The clock shared with the I/O task.
    pub fn clock(&self) -> Clock {
        self.lock().clock
    }

    // ----- the I/O task's side -----

    /// Feeds a received datagram.
    pub fn handle_datagram(&self, socket: SocketKind, from: SocketAddrV4, bytes: &[u8]) {
        let mut inner = self.lock();
        let now = inner.clock.now();
        inner.node.handle_datagram(now, socket, from, bytes);
        inner.dispatch();
    }

    /// Runs due timers.
    pub fn handle_timeout(&self) {
        let mut inner = self.lock();
        let now = inner.clock.now();
        inner.node.handle_timeout(now);
        if let Some(locals) = inner.interfaces.poll(std::time::Instant::now()) {
            inner.node.update_local_addresses(now, locals);
        }
        let inner = &mut *inner;
        if let Some(swarm) = inner.swarm.as_mut() {
            swarm.handle_timeout(&mut inner.node, now);
        }
        inner.dispatch();
    }

    /// Reads the machine's interfaces again every few seconds (from
    /// [`handle_timeout`](Self::handle_timeout)) for a server socket bound to `bound`, and
    /// tells the core when its local addresses changed.
    pub fn watch_interfaces(&self, bound: SocketAddrV4) {
        self.lock().interfaces = crate::interfaces::InterfaceWatch::new(bound);
    }

    /// Pulls queued datagrams into `batch` (one lock for many datagrams, no allocation per
    /// packet), after moving the node's pool-socket commands into `commands`: apply those
    /// before sending the batch, so a socket is bound before anything is sent from it (the
    /// runtimes do both through [`PoolSockets::fill`](crate::pool::PoolSockets::fill)).
    /// Returns whether the core may have more once the batch has been sent.
    pub fn fill_send_batch(
        &self,
        batch: &mut crate::udp::SendBatch,
        commands: &mut Vec<SocketCommand>,
    ) -> bool {
        let mut inner = self.lock();
        let now = inner.clock.now();
        batch.fill(&mut inner.node, now, commands)
    }

    /// Feeds every datagram of a batched receive under one lock.
    pub fn handle_recv_batch(&self, socket: SocketKind, batch: &crate::udp::RecvBatch) {
        let mut inner = self.lock();
        let now = inner.clock.now();
        for (from, bytes) in batch.datagrams() {
            inner.node.handle_datagram(now, socket, from, bytes);
        }
        inner.dispatch();
    }

    /// Feeds a batched receive of pool socket `id` (from its receive task, not the I/O task),
    /// then wakes the I/O task so whatever the datagrams produced goes out. Returns how many
    /// datagrams were fed.
    pub(crate) fn handle_pool_recv_batch(&self, id: u32, batch: &crate::udp::RecvBatch) -> usize {
        let mut inner = self.lock();
        let now = inner.clock.now();
        let mut fed = 0;
        for (from, bytes) in batch.datagrams() {
            inner
                .node
                .handle_datagram(now, SocketKind::Pool(id), from, bytes);
            fed += 1;
        }
        inner.dispatch();
        inner.kick();
        fed
    }

    /// Tells the node these pool sockets could not be bound or failed, then wakes the I/O task.
    pub(crate) fn pool_sockets_failed(&self, ids: &[u32]) {
        if ids.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let now = inner.clock.now();
        for &id in ids {
            inner.node.socket_failed(now, id);
        }
        inner.dispatch();
        inner.kick();
    }

    /// When the core next needs [`handle_timeout`](Self::handle_timeout); `None` once destroyed.
    pub fn poll_timeout(&self) -> Option<std::time::Instant> {
        let inner = self.lock();
        let node = inner.node.poll_timeout()?;
        // The swarm's timers (retries, refreshes, rendezvous lookups) wake the I/O task too.
        let t = match inner.swarm.as_ref().and_then(|s| s.poll_timeout()) {
            Some(s) => node.min(s),
            None => node,
        };
        Some(inner.clock.to_std(t))
    }

    /// Whether the node was destroyed (the I/O task then stops).
    pub fn is_destroyed(&self) -> bool {
        self.lock().node.is_destroyed()
    }

    /// A future that resolves when a user call queued work for the I/O task.
    pub fn io_wakeup(&self) -> IoWakeup {
        IoWakeup {
            shared: self.clone(),
        }
    }

    /// Node events nobody else consumed (persistent, nat-update, add-node, …), oldest first.
    pub fn take_events(&self) -> Vec<RpcEvent> {
        self.lock().events.drain(..).collect()
    }

    // ----- the user's side -----

    /// Resolves when bootstrapping finished (or the node was destroyed).
    pub fn ready(&self) -> Ready {
        Ready {
            shared: self.clone(),
        }
    }

    /// Starts a query; its replies stream out of the returned [`QueryStream`].
    pub fn query(&self, spec: QuerySpec) -> QueryStream {
        let mut inner = self.lock();
        let now = inner.clock.now();
        let id = inner.node.query(now, spec);
        inner.queries.insert(id, QuerySlot::default());
        inner.dispatch();
        inner.kick();
        QueryStream {
            shared: self.clone(),
            id,
            finished: false,
        }
    }

    /// Sends one request.
    pub fn request(&self, spec: RequestSpec) -> PendingRequest {
        let mut inner = self.lock();
        let now = inner.clock.now();
        let id = inner.node.request(now, spec);
        inner.requests.insert(id, RequestSlot::default());
        inner.dispatch();
        inner.kick();
        PendingRequest {
            shared: self.clone(),
            id,
        }
    }

    /// Requests from other nodes, for the application to answer.
    pub fn incoming_requests(&self) -> IncomingRequests {
        IncomingRequests {
            shared: self.clone(),
        }
    }

    /// Answers a request.
    pub fn reply(&self, req: &IncomingRequest, reply: ReplySpec) {
        self.with_node_mut(|node, now| node.reply(now, req, reply));
    }

    /// Stops the node: pending futures fail with "destroyed", the I/O task exits. Unless
    /// `force`, records this node announced are unannounced first.
    pub fn destroy(&self, force: bool) {
        let mut inner = self.lock();
        let now = inner.clock.now();
        inner.node.destroy(now, force);
        inner.dispatch();
        inner.kick();
    }

    /// Starts a HyperDHT operation and returns its stream of replies.
    pub fn op(&self, start: impl FnOnce(&mut Node, hdht_core::Instant) -> OpId) -> OpStream {
        let mut inner = self.lock();
        let now = inner.clock.now();
        let id = start(&mut inner.node, now);
        inner.ops.insert(id, OpSlot::default());
        inner.dispatch();
        inner.kick();
        OpStream {
            shared: self.clone(),
            id,
            finished: false,
        }
    }
}

/// Resolves when the I/O task has new work (see [`Shared::io_wakeup`]). Polling it also runs
/// the servers' firewalls (see [`Firewall`](crate::Firewall)): the I/O task of each runtime
/// polls it, so firewall decisions need no task of their own.
#[derive(Debug)]
pub struct IoWakeup {
    shared: Shared,
}

impl Future for IoWakeup {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.shared.lock();
        if inner.firewall_pending > 0 {
            drop(inner);
            self.shared.run_firewalls(cx);
            inner = self.shared.lock();
        }
        if inner.io_kick || inner.node.is_destroyed() {
            inner.io_kick = false;
            return Poll::Ready(());
        }
        inner.io_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Resolves when the node is bootstrapped: [`DhtError::NoBootstrapReply`] if it had bootstrap
/// nodes and none of them (nor any other node) has answered it, [`DhtError::Destroyed`] if it
/// was destroyed first.
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct Ready {
    shared: Shared,
}

impl Future for Ready {
    type Output = Result<(), DhtError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.shared.lock();
        if inner.ready {
            let rpc = inner.node.rpc();
            let tried = &rpc.config().bootstrap;
            // A node with no bootstrap list starts a network: alone is what it expects.
            if !tried.is_empty() && rpc.stats().responses_matched == 0 {
                return Poll::Ready(Err(DhtError::NoBootstrapReply {
                    tried: tried.clone(),
                }));
            }
            return Poll::Ready(Ok(()));
        }
        if inner.node.is_destroyed() {
            return Poll::Ready(Err(DhtError::Destroyed));
        }
        inner.ready_wakers.push(cx.waker().clone());
        Poll::Pending
    }
}

/// A running query: a [`Stream`] of successful replies. Dropping it cancels the query.
#[derive(Debug)]
#[must_use = "dropping a query stream cancels the query; read it or call `finish().await`"]
pub struct QueryStream {
    shared: Shared,
    id: QueryId,
    finished: bool,
}

impl QueryStream {
    /// The query's id in the core.
    pub fn id(&self) -> QueryId {
        self.id
    }

    /// Waits for the end, discarding replies not yet read, and returns the outcome.
    pub async fn finish(mut self) -> Result<QueryResult, QueryError> {
        std::future::poll_fn(|cx| self.poll_done(cx)).await
    }

    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Result<QueryResult, QueryError>> {
        let done = poll_slot_done(&mut self.shared.lock().queries, &self.id, cx);
        done.map(|d| {
            self.finished = true;
            d.unwrap_or(Err(QueryError::Destroyed))
        })
    }
}

impl Stream for QueryStream {
    type Item = QueryReply;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<QueryReply>> {
        poll_slot_next(&mut self.shared.lock().queries, &self.id, cx)
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut inner = self.shared.lock();
        let running = inner
            .queries
            .remove(&self.id)
            .is_some_and(|s| s.done.is_none());
        if running {
            let now = inner.clock.now();
            inner.node.cancel_query(now, self.id);
            inner.dispatch();
            inner.kick();
        }
    }
}

/// A single request's outcome.
#[derive(Debug)]
#[must_use = "dropping a pending request cancels it; await it for the reply"]
pub struct PendingRequest {
    shared: Shared,
    id: RequestId,
}

impl Future for PendingRequest {
    type Output = Result<QueryReply, RequestError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.shared.lock();
        let Some(slot) = inner.requests.get_mut(&self.id) else {
            return Poll::Ready(Err(RequestError::Destroyed));
        };
        if let Some(r) = slot.result.take() {
            inner.requests.remove(&self.id);
            return Poll::Ready(r);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for PendingRequest {
    fn drop(&mut self) {
        self.shared.lock().requests.remove(&self.id);
    }
}

/// A request from another node, with the means to answer it.
#[derive(Debug)]
pub struct ReceivedRequest {
    shared: Shared,
    /// The request.
    pub request: IncomingRequest,
}

impl ReceivedRequest {
    /// `req.reply(value)`: value, a token and closer nodes.
    pub fn reply(&self, value: Option<Vec<u8>>) {
        self.shared.reply(&self.request, ReplySpec::value(value));
    }

    /// `req.error(code)`.
    pub fn error(&self, code: u64) {
        self.shared.reply(&self.request, ReplySpec::error(code));
    }

    /// Answers with full control over the reply.
    pub fn respond(&self, spec: ReplySpec) {
        self.shared.reply(&self.request, spec);
    }
}

/// A [`Stream`] of requests for the application. Ends when the node is destroyed.
#[derive(Debug)]
pub struct IncomingRequests {
    shared: Shared,
}

impl Stream for IncomingRequests {
    type Item = ReceivedRequest;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ReceivedRequest>> {
        let mut inner = self.shared.lock();
        if let Some(request) = inner.incoming.pop_front() {
            return Poll::Ready(Some(ReceivedRequest {
                shared: self.shared.clone(),
                request,
            }));
        }
        if inner.node.is_destroyed() {
            return Poll::Ready(None);
        }
        inner.incoming_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A running HyperDHT operation: a [`Stream`] of replies (lookups stream peers), then its
/// outcome from [`finish`](Self::finish). Dropping it abandons the operation.
#[derive(Debug)]
#[must_use = "dropping an operation stream cancels the operation; read it or call `finish().await`"]
pub struct OpStream {
    shared: Shared,
    id: OpId,
    finished: bool,
}

impl OpStream {
    /// Waits for the end, discarding replies not yet read.
    pub async fn finish(mut self) -> Result<OpOutput, OpError> {
        std::future::poll_fn(|cx| self.poll_done(cx)).await
    }

    /// Waits for the end as a future.
    pub fn into_future(self) -> OpFuture {
        OpFuture { stream: self }
    }

    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Result<OpOutput, OpError>> {
        let done = poll_slot_done(&mut self.shared.lock().ops, &self.id, cx);
        done.map(|d| {
            self.finished = true;
            d.unwrap_or(Err(OpError::Destroyed))
        })
    }
}

impl Stream for OpStream {
    type Item = OpReply;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<OpReply>> {
        poll_slot_next(&mut self.shared.lock().ops, &self.id, cx)
    }
}

impl Drop for OpStream {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut inner = self.shared.lock();
        let running = inner.ops.remove(&self.id).is_some_and(|s| s.done.is_none());
        if running {
            let now = inner.clock.now();
            inner.node.cancel(now, self.id);
            inner.dispatch();
            inner.kick();
        }
    }
}

/// The outcome of an operation whose replies don't matter.
#[derive(Debug)]
#[must_use = "dropping the future cancels the operation; await it"]
pub struct OpFuture {
    stream: OpStream,
}

impl Future for OpFuture {
    type Output = Result<OpOutput, OpError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.stream.poll_done(cx)
    }
}
