//! Pool sockets (hyperdht's `SocketPool`): the part of running them that both runtimes share.
//!
//! The core asks for extra UDP sockets with [`SocketCommand`]s — `Bind(id)`: a socket on the
//! node's host, port 0, known to the core as [`SocketKind::Pool`](hdht_core::rpc::SocketKind::Pool)`(id)`;
//! `Close(id)`. Holepunching opens them (one per puncher, 256 at once for a birthday punch,
//! at most [`MAX_POOL_SOCKETS`]) and a punched connection's UDX stream keeps running over one.
//!
//! How a runtime runs them:
//!
//! - **The I/O task owns a [`PoolSockets`] table** (id → the runtime's socket behind an `Arc`,
//!   plus the handle of its receive task). It fills each send batch through
//!   [`PoolSockets::fill`], which drains the core's socket commands *and* datagrams under one
//!   lock, then binds and closes sockets *before* any datagram of the batch is sent — so a
//!   socket exists before the first datagram from it, and a datagram for a socket that is not
//!   (or no longer) open finds no entry and is dropped. Sending from a pool socket is the same
//!   batched `try_send` (GSO runs are per socket already), with the same TTL handling.
//! - **Each pool socket has one receive task** that waits for readability, receives with
//!   [`PoolReceiver::recv_once`] and feeds the core, then wakes the I/O task so whatever the
//!   datagrams produced (replies, acknowledgements) goes out. An idle socket costs a parked
//!   task and nothing else; the server and client sockets' loop is untouched.
//! - **Receive buffers are shared.** A task borrows a [`RecvBatch`] of [`POOL_RECV_SLOTS`]
//!   slots only between "the socket is readable" and "the core has the datagrams" — never
//!   across an await — from a spare list kept per node (at most [`MAX_SPARE_BATCHES`]). A node
//!   therefore holds about as many batches as tasks receive *at the same moment* (bounded by
//!   executor threads), not one per socket: 256 birthday sockets cost no buffers until they
//!   receive, and then share one or two.
//! - **Closing** removes the entry, which drops the runtime's task handle; dropping it must
//!   stop the task (tokio: abort; async-task: cancel). The task's clone of the `Arc` goes with
//!   its future, and the socket closes. When the I/O task ends, [`PoolSockets::close_all`]
//!   hands every task handle back so the runtime can wait for them: no receive task outlives
//!   the node.
//! - **Failures.** A socket that cannot be bound (or registered with the runtime) is reported
//!   with [`DhtNode::socket_failed`](hdht_core::dht::DhtNode::socket_failed). A receive error
//!   that is not `WouldBlock` or transient noise ([`is_transient`]; ICMP-driven resets, for
//!   one) is reported the same way by the task, which then ends; the I/O task drops the entry
//!   at its next fill.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};

use hdht_core::dht::SocketCommand;
pub use hdht_core::dht::MAX_POOL_SOCKETS;

use crate::udp::{RecvBatch, SendBatch};
use crate::Shared;

/// `recvmmsg` slots of a pool socket's receive batch (64 KiB each, as a slot may receive a
/// whole GRO run): enough for a punched stream's bursts, small enough to allocate per receiver.
pub const POOL_RECV_SLOTS: usize = 4;

/// Receive batches a node keeps for reuse between pool-socket receives.
pub const MAX_SPARE_BATCHES: usize = 4;

/// Transient receive errors in a row, with nothing received in between, after which a pool
/// socket counts as failed (so a socket stuck in an error state cannot keep its task busy).
const MAX_TRANSIENT_ERRORS: u32 = 64;

/// Binds a pool socket: `host`, port 0 (the same host as the server socket; unspecified binds
/// every interface), non-blocking.
pub fn bind_pool_socket(host: Ipv4Addr) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV4::new(host, 0))?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// Whether a receive error is noise rather than a broken socket: `WouldBlock`, an interrupted
/// call, an ICMP error surfacing as a reset/refused/unreachable (a probe to a closed or
/// filtered port does that), or a momentary shortage of kernel memory.
pub fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        WouldBlock
            | Interrupted
            | ConnectionReset
            | ConnectionRefused
            | ConnectionAborted
            | HostUnreachable
            | NetworkUnreachable
            | TimedOut
            | OutOfMemory
    ) {
        return true;
    }
    #[cfg(target_os = "linux")]
    if matches!(
        e.raw_os_error(),
        Some(libc::ENOBUFS | libc::ENOMEM | libc::EHOSTDOWN | libc::ENONET)
    ) {
        return true;
    }
    false
}

/// What the receive tasks of one node share with its I/O task.
#[derive(Debug)]
struct Context {
    shared: Shared,
    /// Receive batches not in use.
    spare: Mutex<Vec<RecvBatch>>,
    /// Sockets whose task reported them failed and ended: (id, generation), for the I/O task to
    /// drop from its table.
    dead: Mutex<Vec<(u32, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a pool socket's receive loop should do next (see [`PoolReceiver::recv_once`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvStep {
    /// Datagrams were fed to the core (or a transient error was skipped): receive again.
    More,
    /// Nothing was ready: wait for readability.
    Idle,
    /// The socket failed and was reported: end the task.
    Stop,
}

/// A pool socket's receive side: where its datagrams go. Owned by its receive task.
#[derive(Debug)]
pub struct PoolReceiver {
    ctx: Arc<Context>,
    id: u32,
    generation: u64,
    transient_errors: u32,
}

impl PoolReceiver {
    /// The pool socket's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// One batched receive: `recv` fills a batch (the runtime's non-blocking receive, e.g.
    /// [`RecvBatch::try_recv`] inside its readiness guard) whose datagrams are fed to the core
    /// as `SocketKind::Pool(id)`, then the I/O task is woken. No await may happen inside
    /// `recv`; the batch goes back to the node's spare list afterwards.
    pub fn recv_once(
        &mut self,
        recv: impl FnOnce(&mut RecvBatch) -> io::Result<usize>,
    ) -> RecvStep {
        let mut batch = lock(&self.ctx.spare)
            .pop()
            .unwrap_or_else(|| RecvBatch::with_slots(POOL_RECV_SLOTS));
        let step = match recv(&mut batch) {
            Ok(0) => RecvStep::Idle,
            Ok(_) => {
                self.transient_errors = 0;
                self.ctx.shared.handle_pool_recv_batch(self.id, &batch);
                RecvStep::More
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => RecvStep::Idle,
            Err(e) if is_transient(&e) && self.transient_errors < MAX_TRANSIENT_ERRORS => {
                self.transient_errors += 1;
                RecvStep::More
            }
            Err(e) => {
                tracing::warn!(socket = self.id, error = %e, "pool socket receive failed; the socket is dropped");
                self.fail();
                RecvStep::Stop
            }
        };
        let mut spare = lock(&self.ctx.spare);
        if spare.len() < MAX_SPARE_BATCHES {
            spare.push(batch);
        }
        step
    }

    /// Reports the socket failed (the runtime's readiness wait errored, say): the core is told,
    /// and the I/O task drops the socket at its next fill. The task should end after this.
    pub fn fail(&self) {
        lock(&self.ctx.dead).push((self.id, self.generation));
        self.ctx.shared.pool_sockets_failed(&[self.id]);
    }
}

#[derive(Debug)]
struct Entry<S, T> {
    sock: Arc<S>,
    generation: u64,
    /// Dropping it stops the receive task.
    task: T,
}

/// A node's open pool sockets, owned by its I/O task. `S` is the runtime's socket (async
/// wrapper plus batched-I/O state), `T` the handle of its receive task — dropping a `T` must
/// stop the task.
#[derive(Debug)]
pub struct PoolSockets<S, T> {
    ctx: Arc<Context>,
    host: Ipv4Addr,
    open: BTreeMap<u32, Entry<S, T>>,
    next_generation: u64,
    commands: Vec<SocketCommand>,
    /// Sockets the core closed in the batch being sent: they go once it has gone out, so a
    /// connection's last datagrams (a DESTROY when the node is destroyed) still leave.
    closing: Vec<u32>,
    failed: Vec<u32>,
}

impl<S, T> PoolSockets<S, T> {
    /// No sockets yet; they will be bound on `host` (the server socket's IP).
    pub fn new(shared: Shared, host: Ipv4Addr) -> Self {
        PoolSockets {
            ctx: Arc::new(Context {
                shared,
                spare: Mutex::new(Vec::new()),
                dead: Mutex::new(Vec::new()),
            }),
            host,
            open: BTreeMap::new(),
            next_generation: 0,
            commands: Vec::new(),
            closing: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Where pool sockets are bound.
    pub fn host(&self) -> Ipv4Addr {
        self.host
    }

    /// The open socket `id`.
    pub fn get(&self, id: u32) -> Option<&S> {
        self.open.get(&id).map(|e| &*e.sock)
    }

    /// The open socket `id`, shared.
    pub fn get_arc(&self, id: u32) -> Option<Arc<S>> {
        self.open.get(&id).map(|e| e.sock.clone())
    }

    /// How many sockets are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The ids of the open sockets, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.open.keys().copied()
    }

    /// Fills `batch` for sending, the one way the I/O task should: the core's socket commands
    /// and datagrams are taken under one lock, then sockets are bound (through `open`) before
    /// the caller sends anything; sockets the core closed stay until the caller has sent the
    /// batch and called [`apply_closes`](Self::apply_closes). Sockets that could
    /// not be bound, and sockets whose receive task reported them failed, are taken care of
    /// too. Returns whether the core may have more datagrams.
    ///
    /// `open` turns a bound std socket into the runtime's socket and spawns its receive task
    /// (which owns the [`PoolReceiver`] and a clone of the `Arc`).
    pub fn fill(
        &mut self,
        batch: &mut SendBatch,
        mut open: impl FnMut(UdpSocket, PoolReceiver) -> io::Result<(Arc<S>, T)>,
    ) -> bool {
        self.reap();
        let mut commands = std::mem::take(&mut self.commands);
        let mut more = self.ctx.shared.fill_send_batch(batch, &mut commands);
        for cmd in commands.drain(..) {
            match cmd {
                // The batch may still hold datagrams from it: closed by `apply_closes`.
                SocketCommand::Close(id) => self.closing.push(id),
                SocketCommand::Bind(id) => {
                    // An id bound again (after wrapping) replaces the old socket at once.
                    self.closing.retain(|&c| c != id);
                    self.apply(cmd, &mut open);
                }
            }
        }
        self.commands = commands;
        if !self.failed.is_empty() {
            self.ctx.shared.pool_sockets_failed(&self.failed);
            self.failed.clear();
            // Whatever the failures made the core send goes out in this flush.
            more = true;
        }
        more
    }

    /// Applies one command: `Bind` binds on the host and registers through `open` (a failure
    /// is remembered and reported to the core at the end of [`fill`](Self::fill), or by
    /// [`report_failures`](Self::report_failures)); `Close` drops the socket and its task
    /// (unknown ids are ignored). Returns whether a `Bind` succeeded (`true` for a `Close`).
    pub fn apply(
        &mut self,
        cmd: SocketCommand,
        open: &mut impl FnMut(UdpSocket, PoolReceiver) -> io::Result<(Arc<S>, T)>,
    ) -> bool {
        match cmd {
            SocketCommand::Bind(id) => {
                // Ids are not reused while open; if one were, the old socket goes first.
                self.open.remove(&id);
                if self.open.len() >= MAX_POOL_SOCKETS {
                    self.failed.push(id);
                    return false;
                }
                let generation = self.next_generation;
                self.next_generation += 1;
                let receiver = PoolReceiver {
                    ctx: self.ctx.clone(),
                    id,
                    generation,
                    transient_errors: 0,
                };
                match bind_pool_socket(self.host).and_then(|std| open(std, receiver)) {
                    Ok((sock, task)) => {
                        self.open.insert(
                            id,
                            Entry {
                                sock,
                                generation,
                                task,
                            },
                        );
                        true
                    }
                    Err(e) => {
                        tracing::debug!(socket = id, error = %e, "cannot bind a pool socket");
                        self.failed.push(id);
                        false
                    }
                }
            }
            SocketCommand::Close(id) => {
                self.open.remove(&id);
                true
            }
        }
    }

    /// Tells the core about sockets [`apply`](Self::apply) could not bind (done by
    /// [`fill`](Self::fill) already).
    pub fn report_failures(&mut self) {
        self.ctx.shared.pool_sockets_failed(&self.failed);
        self.failed.clear();
    }

    /// Drops the sockets whose receive task reported them failed.
    fn reap(&mut self) {
        let dead = std::mem::take(&mut *lock(&self.ctx.dead));
        for (id, generation) in dead {
            if self
                .open
                .get(&id)
                .is_some_and(|e| e.generation == generation)
            {
                self.open.remove(&id);
            }
        }
    }

    /// Closes the sockets the core closed during the last [`fill`](Self::fill); call it once
    /// that batch has been sent.
    pub fn apply_closes(&mut self) {
        for id in self.closing.drain(..) {
            self.open.remove(&id);
        }
    }

    /// Closes every socket (the I/O task is ending) and returns the receive tasks' handles, for
    /// the runtime to wait on; dropping them instead stops the tasks without waiting.
    pub fn close_all(&mut self) -> Vec<T> {
        self.closing.clear();
        std::mem::take(&mut self.open)
            .into_values()
            .map(|e| e.task)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build_node, Clock, DhtOptions};
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context as TaskContext, Waker};
    use std::time::Duration;

    /// A stand-in runtime: the socket is the std socket, the "task" a flag set when dropped.
    struct Sock {
        io: UdpSocket,
        state: crate::udp::UdpSocketState,
    }

    struct Task {
        stopped: Arc<AtomicBool>,
        receiver: Option<PoolReceiver>,
    }

    impl Drop for Task {
        fn drop(&mut self) {
            self.stopped.store(true, Ordering::SeqCst);
        }
    }

    type Table = PoolSockets<Sock, Task>;

    fn shared() -> Shared {
        let opts = DhtOptions {
            host: Ipv4Addr::LOCALHOST,
            ..DhtOptions::isolated()
        };
        let clock = Clock::default();
        let node = build_node(&opts, 0, Vec::new(), &clock);
        Shared::new(node, clock)
    }

    /// Each started task's id and "stopped" flag.
    type Flags = Arc<Mutex<Vec<(u32, Arc<AtomicBool>)>>>;

    fn opener(
        stopped: &Flags,
    ) -> impl FnMut(UdpSocket, PoolReceiver) -> io::Result<(Arc<Sock>, Task)> + '_ {
        move |io, receiver| {
            let state = crate::udp::socket_state(&io)?;
            let flag = Arc::new(AtomicBool::new(false));
            lock(stopped).push((receiver.id(), flag.clone()));
            Ok((
                Arc::new(Sock { io, state }),
                Task {
                    stopped: flag,
                    receiver: Some(receiver),
                },
            ))
        }
    }

    /// Whether the I/O task was woken since the last call (consumes the wake-up).
    fn kicked(shared: &Shared) -> bool {
        let mut fut = std::pin::pin!(shared.io_wakeup());
        fut.as_mut()
            .poll(&mut TaskContext::from_waker(Waker::noop()))
            .is_ready()
    }

    fn local(sock: &UdpSocket) -> SocketAddrV4 {
        crate::local_v4(sock).expect("v4")
    }

    #[test]
    fn binds_on_the_host_port_zero_and_closes() {
        let shared = shared();
        let mut table = Table::new(shared, Ipv4Addr::LOCALHOST);
        let flags = Arc::new(Mutex::new(Vec::new()));
        let mut open = opener(&flags);
        assert!(table.apply(SocketCommand::Bind(3), &mut open));
        assert!(table.apply(SocketCommand::Bind(9), &mut open));
        assert_eq!(table.ids().collect::<Vec<_>>(), vec![3, 9]);
        let a = local(&table.get(3).expect("3 open").io);
        let b = local(&table.get(9).expect("9 open").io);
        assert_eq!(*a.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(a.port(), 0);
        assert_ne!(a.port(), b.port());

        // Close: the entry and its task go; the fd is closed, so the port can be bound again.
        let weak = Arc::downgrade(&table.get_arc(3).expect("3"));
        assert!(table.apply(SocketCommand::Close(3), &mut open));
        assert!(table.get(3).is_none());
        assert!(
            lock(&flags)[0].1.load(Ordering::SeqCst),
            "task of 3 stopped"
        );
        assert!(
            !lock(&flags)[1].1.load(Ordering::SeqCst),
            "task of 9 still running"
        );
        assert!(weak.upgrade().is_none(), "socket 3 dropped");
        UdpSocket::bind(a).expect("port of the closed socket is free again");

        // Closing an unknown id does nothing.
        assert!(table.apply(SocketCommand::Close(77), &mut open));
        assert_eq!(table.len(), 1);

        // Shutdown hands back every task.
        let tasks = table.close_all();
        assert_eq!(tasks.len(), 1);
        assert!(table.is_empty());
        drop(tasks);
        assert!(lock(&flags)[1].1.load(Ordering::SeqCst));
        UdpSocket::bind(b).expect("port of 9 is free again");
    }

    #[test]
    fn binds_on_the_unspecified_host() {
        let mut table = Table::new(shared(), Ipv4Addr::UNSPECIFIED);
        let flags = Arc::new(Mutex::new(Vec::new()));
        assert!(table.apply(SocketCommand::Bind(0), &mut opener(&flags)));
        let addr = local(&table.get(0).expect("open").io);
        assert!(addr.ip().is_unspecified());
        assert_ne!(addr.port(), 0);
    }

    #[test]
    fn a_failed_bind_is_reported_to_the_core_and_nothing_is_kept() {
        let shared = shared();
        // TEST-NET-1 is not an address of this machine: binding fails (EADDRNOTAVAIL).
        let mut table = Table::new(shared.clone(), Ipv4Addr::new(192, 0, 2, 1));
        let flags = Arc::new(Mutex::new(Vec::new()));
        let _ = kicked(&shared);
        assert!(!table.apply(SocketCommand::Bind(5), &mut opener(&flags)));
        assert!(table.is_empty());
        assert!(lock(&flags).is_empty(), "no task was started");
        table.report_failures();
        assert!(kicked(&shared), "reporting the failure woke the I/O task");

        // A runtime that cannot register the socket is a failure too.
        let mut table = Table::new(shared, Ipv4Addr::LOCALHOST);
        let mut refuse = |_: UdpSocket, _: PoolReceiver| -> io::Result<(Arc<Sock>, Task)> {
            Err(io::Error::other("cannot register"))
        };
        assert!(!table.apply(SocketCommand::Bind(6), &mut refuse));
        assert!(table.is_empty());
    }

    #[test]
    fn fill_with_nothing_queued_and_sends_for_unknown_sockets_are_absent() {
        let shared = shared();
        let mut table = Table::new(shared, Ipv4Addr::LOCALHOST);
        let flags = Arc::new(Mutex::new(Vec::new()));
        let mut batch = SendBatch::new();
        // A fresh node with no bootstrap has nothing to send and no socket to open.
        assert!(!table.fill(&mut batch, opener(&flags)));
        assert!(table.is_empty());
        // A transmit for a pool socket that isn't open has no socket to go out of.
        assert!(table.get(42).is_none());
    }

    #[test]
    fn a_socket_the_core_closes_stays_until_the_batch_is_sent() {
        // The core closes a pool socket in the same turn as it queues that socket's last
        // datagrams (a node destroyed while a connection runs over it: the DESTROY): the
        // socket must outlive the batch, or the peer never learns the connection ended.
        let mut table = Table::new(shared(), Ipv4Addr::LOCALHOST);
        let flags = Arc::new(Mutex::new(Vec::new()));
        assert!(table.apply(SocketCommand::Bind(4), &mut opener(&flags)));
        assert!(table.apply(SocketCommand::Bind(5), &mut opener(&flags)));
        let mut batch = SendBatch::new();
        table.commands.push(SocketCommand::Close(4));
        table.commands.push(SocketCommand::Close(5));
        table.fill(&mut batch, opener(&flags));
        assert!(table.get(4).is_some(), "open while its batch is sent");
        table.apply_closes();
        assert!(table.get(4).is_none(), "closed once the batch went out");
        assert!(table.get(5).is_none());
        assert!(
            lock(&flags)[0].1.load(Ordering::SeqCst),
            "task of 4 stopped"
        );

        // An id bound again in the same turn is a new socket: the close does not touch it.
        assert!(table.apply(SocketCommand::Bind(6), &mut opener(&flags)));
        table.commands.push(SocketCommand::Close(6));
        table.commands.push(SocketCommand::Bind(6));
        table.fill(&mut batch, opener(&flags));
        table.apply_closes();
        assert!(table.get(6).is_some(), "the new socket 6 stays");
        assert!(
            lock(&flags)[2].1.load(Ordering::SeqCst),
            "the old 6 was replaced"
        );
    }

    #[test]
    fn the_receiver_feeds_the_core_and_wakes_the_io_task() {
        let shared = shared();
        let mut table = Table::new(shared.clone(), Ipv4Addr::LOCALHOST);
        let flags = Arc::new(Mutex::new(Vec::new()));
        assert!(table.apply(SocketCommand::Bind(4), &mut opener(&flags)));
        let sock = table.get_arc(4).expect("open");
        let to = local(&sock.io);

        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("peer");
        // A 1-byte holepunch probe and a (garbage) dht-rpc datagram.
        peer.send_to(&[0], to).expect("send");
        peer.send_to(b"not a real request", to).expect("send");

        let mut tasks = table.close_all();
        let mut task = tasks.pop().expect("one task");
        let mut receiver = task.receiver.take().expect("receiver");
        let _ = kicked(&shared);
        let mut fed = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while fed < 2 && std::time::Instant::now() < deadline {
            let step = receiver.recv_once(|b| {
                let r = b.try_recv(&sock.state, (&sock.io).into());
                if let Ok(n) = r {
                    assert!(n > 0);
                    fed += b.datagrams().count();
                }
                r
            });
            if step == RecvStep::Idle {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert_eq!(fed, 2, "both datagrams received");
        assert!(kicked(&shared), "the I/O task was woken");
        // Drained: the next receive finds nothing.
        assert_eq!(
            receiver.recv_once(|b| b.try_recv(&sock.state, (&sock.io).into())),
            RecvStep::Idle
        );
        // The batch went back to the spare list (one, not one per receive).
        assert_eq!(lock(&receiver.ctx.spare).len(), 1);
        assert_eq!(lock(&receiver.ctx.spare)[0].slots(), POOL_RECV_SLOTS);
    }

    #[test]
    fn receive_errors_noise_is_skipped_failure_is_reported_and_reaped() {
        let shared = shared();
        let mut table = Table::new(shared.clone(), Ipv4Addr::LOCALHOST);
        let flags = Arc::new(Mutex::new(Vec::new()));
        assert!(table.apply(SocketCommand::Bind(1), &mut opener(&flags)));
        assert!(table.apply(SocketCommand::Bind(2), &mut opener(&flags)));
        // A receiver for socket 1 (the test plays its task).
        let mut receiver = PoolReceiver {
            ctx: table.ctx.clone(),
            id: 1,
            generation: 0,
            transient_errors: 0,
        };

        let would_block = || Err(io::Error::from(io::ErrorKind::WouldBlock));
        assert_eq!(receiver.recv_once(|_| would_block()), RecvStep::Idle);
        let reset = || Err(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(receiver.recv_once(|_| reset()), RecvStep::More);
        let refused = || Err(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(receiver.recv_once(|_| refused()), RecvStep::More);
        assert!(table.get(1).is_some());

        let _ = kicked(&shared);
        let broken = || Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(receiver.recv_once(|_| broken()), RecvStep::Stop);
        assert!(kicked(&shared), "the failure woke the I/O task");
        // The next fill drops the failed socket (only that one).
        let mut batch = SendBatch::new();
        table.fill(&mut batch, opener(&flags));
        assert!(table.get(1).is_none());
        assert!(table.get(2).is_some());

        // A stale report (an older generation of the same id) does not touch a newer socket.
        assert!(table.apply(SocketCommand::Bind(1), &mut opener(&flags)));
        lock(&table.ctx.dead).push((1, 0));
        table.fill(&mut batch, opener(&flags));
        assert!(table.get(1).is_some());
    }

    #[test]
    fn endless_transient_errors_count_as_a_failure() {
        let table = Table::new(shared(), Ipv4Addr::LOCALHOST);
        let mut receiver = PoolReceiver {
            ctx: table.ctx.clone(),
            id: 1,
            generation: 0,
            transient_errors: 0,
        };
        let reset = || Err(io::Error::from(io::ErrorKind::ConnectionReset));
        let mut steps = 0;
        while receiver.recv_once(|_| reset()) == RecvStep::More {
            steps += 1;
            assert!(steps <= MAX_TRANSIENT_ERRORS, "gave up in time");
        }
        assert_eq!(steps, MAX_TRANSIENT_ERRORS);
    }

    #[test]
    fn noise_classification() {
        for kind in [
            io::ErrorKind::WouldBlock,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::Interrupted,
        ] {
            assert!(is_transient(&io::Error::from(kind)), "{kind:?}");
        }
        for kind in [
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::InvalidInput,
            io::ErrorKind::NotConnected,
        ] {
            assert!(!is_transient(&io::Error::from(kind)), "{kind:?}");
        }
        #[cfg(target_os = "linux")]
        {
            assert!(is_transient(&io::Error::from_raw_os_error(libc::ENOBUFS)));
            assert!(!is_transient(&io::Error::from_raw_os_error(libc::EBADF)));
        }
    }
}
