//! The node's pool sockets (hyperdht `lib/socket-pool.js`): extra UDP sockets, bound to port 0
//! on the node's host, that holepunching uses — one per puncher, 256 for the birthday
//! strategy — and that a punched connection's UDX stream keeps using afterwards.
//!
//! The core names sockets and says when to open and close them; the driver does it. A socket
//! stays open while anything holds it (a puncher, a stream); the last release closes it.
//! Drivers drain [`SocketCommand`]s before transmits, so a socket exists before the first
//! datagram sent from it; a socket that could not be bound is reported with
//! [`DhtNode::socket_failed`](super::DhtNode::socket_failed).

use alloc::collections::{BTreeMap, VecDeque};

use crate::rpc::SocketKind;
use crate::udx;

/// Pool sockets open at once at most (a birthday punch needs 256; the node allows one random
/// punch at a time, plus ordinary punchers and punched connections).
pub const MAX_POOL_SOCKETS: usize = 1024;

/// The UDX socket ids of the node's two dht-rpc sockets.
pub(crate) const UDX_SERVER_SOCKET: udx::SocketId = udx::SocketId(0);
pub(crate) const UDX_CLIENT_SOCKET: udx::SocketId = udx::SocketId(1);

/// Pool socket `n` is UDX socket `n + POOL_SOCKET_BASE`.
const POOL_SOCKET_BASE: u32 = 2;

/// The UDX layer's name for one of the node's sockets.
pub(crate) fn udx_socket(kind: SocketKind) -> udx::SocketId {
    match kind {
        SocketKind::Server => UDX_SERVER_SOCKET,
        SocketKind::Client => UDX_CLIENT_SOCKET,
        SocketKind::Pool(n) => udx::SocketId(n.wrapping_add(POOL_SOCKET_BASE)),
    }
}

/// The node's name for a UDX socket id.
pub(crate) fn socket_kind(id: udx::SocketId) -> SocketKind {
    match id.0 {
        0 => SocketKind::Server,
        1 => SocketKind::Client,
        n => SocketKind::Pool(n - POOL_SOCKET_BASE),
    }
}

/// What the driver must do with a pool socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketCommand {
    /// Bind a new UDP socket on the node's host, port 0, as [`SocketKind::Pool`](crate::rpc::SocketKind::Pool)`(id)`,
    /// and feed what it receives to the node with that kind.
    Bind(u32),
    /// Close it; datagrams still queued for it may be dropped.
    Close(u32),
}

/// Who holds a pool socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Holders {
    /// A puncher uses it.
    pub(crate) puncher: bool,
    /// A UDX stream is connected over it.
    pub(crate) stream: bool,
}

/// The pool: ids, holders, and the commands for the driver.
#[derive(Debug, Default)]
pub(crate) struct SocketPool {
    next: u32,
    open: BTreeMap<u32, Holders>,
    commands: VecDeque<SocketCommand>,
}

impl SocketPool {
    /// Opens a socket held by a puncher; `None` at the limit.
    pub(crate) fn open(&mut self) -> Option<u32> {
        if self.open.len() >= MAX_POOL_SOCKETS {
            return None;
        }
        // Ids are never reused while open; u32 wraps after 4 billion sockets.
        let mut id = self.next;
        while self.open.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next = id.wrapping_add(1);
        self.open.insert(
            id,
            Holders {
                puncher: true,
                stream: false,
            },
        );
        self.commands.push_back(SocketCommand::Bind(id));
        Some(id)
    }

    /// Whether `id` is open.
    pub(crate) fn contains(&self, id: u32) -> bool {
        self.open.contains_key(&id)
    }

    /// A stream now runs over `id` (it stays open until [`release_stream`](Self::release_stream)).
    pub(crate) fn hold_stream(&mut self, id: u32) {
        if let Some(h) = self.open.get_mut(&id) {
            h.stream = true;
        }
    }

    /// The puncher let go of `id`.
    pub(crate) fn release_puncher(&mut self, id: u32) {
        if let Some(h) = self.open.get_mut(&id) {
            h.puncher = false;
        }
        self.close_if_free(id);
    }

    /// The stream over `id` is gone.
    pub(crate) fn release_stream(&mut self, id: u32) {
        if let Some(h) = self.open.get_mut(&id) {
            h.stream = false;
        }
        self.close_if_free(id);
    }

    /// The driver could not bind (or lost) `id`: forget it without a close command.
    pub(crate) fn failed(&mut self, id: u32) -> bool {
        self.open.remove(&id).is_some()
    }

    fn close_if_free(&mut self, id: u32) {
        if self.open.get(&id).is_some_and(|h| !h.puncher && !h.stream) {
            self.open.remove(&id);
            self.commands.push_back(SocketCommand::Close(id));
        }
    }

    /// Closes every socket (the node is being destroyed).
    pub(crate) fn close_all(&mut self) {
        for id in core::mem::take(&mut self.open).into_keys() {
            self.commands.push_back(SocketCommand::Close(id));
        }
    }

    /// Sockets open.
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    pub(crate) fn poll_command(&mut self) -> Option<SocketCommand> {
        self.commands.pop_front()
    }
}
