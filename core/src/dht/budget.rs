//! The node-wide budget of connection buffers.
//!
//! Every UDX stream may buffer up to its receive window (in-order unread plus out-of-order
//! data) and its send buffer (written, not yet acknowledged). With libudx's defaults (4 MiB +
//! 1 MiB) and up to 16,384 connections, nothing bounds the total. [`ConnectionBudget`] does:
//! the sum of the windows and send buffers of the node's streams never exceeds it.
//!
//! * A stream is sized when it is created, from what is left of the budget: while taking the
//!   full defaults leaves at least half the budget free, it gets them (51 streams with the
//!   default budget); after that every stream gets [`MIN_RECV_WINDOW`] and
//!   [`MIN_SEND_BUFFER`], so thousands more still fit (3,276 with the default budget), with
//!   small windows. Two tiers rather than a share of what is left: a share shrinks
//!   geometrically and let only ~260 connections in, so a few hundred pending handshakes
//!   could spend a server's budget.
//! * When not even the minimum fits, the budget is spent: a client connect fails with
//!   [`ConnectError::BufferBudgetSpent`](crate::connect::ConnectError::BufferBudgetSpent) and
//!   a server answers the handshake with `TRY_LATER` (the client sees the server refused).
//! * A stream's share returns to the budget when the stream is removed.

use crate::udx::StreamConfig;

/// hdht's default connection-buffer budget: 512 MiB (the reference has none). A bound on
/// what streams may buffer, not what they hold: an idle connection holds a few KiB.
pub const DEFAULT_CONNECTION_BUDGET: usize = 512 << 20;
/// The smallest receive window a stream is given under pressure: 64 KiB.
pub const MIN_RECV_WINDOW: usize = 64 << 10;
/// The smallest send buffer a stream is given under pressure: 16 KiB.
pub const MIN_SEND_BUFFER: usize = 16 << 10;

/// A node-wide bound on the receive windows plus send buffers of its UDX streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// The bound in bytes.
    pub limit: usize,
}

impl Default for ConnectionBudget {
    fn default() -> Self {
        ConnectionBudget {
            limit: DEFAULT_CONNECTION_BUDGET,
        }
    }
}

impl ConnectionBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        ConnectionBudget { limit }
    }

    /// `base` sized for a new stream when `reserved` bytes are already taken: the full
    /// window and send buffer of `base` while taking them leaves half the budget free, else
    /// [`MIN_RECV_WINDOW`] and [`MIN_SEND_BUFFER`]; `None` when not even those fit (the
    /// budget is spent).
    pub fn size(&self, reserved: usize, base: StreamConfig) -> Option<StreamConfig> {
        let free = self.limit.saturating_sub(reserved);
        let full = base.recv_window.saturating_add(base.send_buffer);
        if reserved.saturating_add(full) <= self.limit / 2 {
            return Some(base);
        }
        let recv_window = MIN_RECV_WINDOW.min(base.recv_window);
        let send_buffer = MIN_SEND_BUFFER.min(base.send_buffer);
        if free < recv_window + send_buffer {
            return None;
        }
        Some(StreamConfig {
            recv_window,
            send_buffer,
            ..base
        })
    }

    /// Whether a new stream still fits with `reserved` bytes taken.
    pub fn fits(&self, reserved: usize) -> bool {
        let free = self.limit.saturating_sub(reserved);
        free >= MIN_RECV_WINDOW + MIN_SEND_BUFFER
    }
}
