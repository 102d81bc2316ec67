//! In-order bytes delivered by the network and not yet read by the application.

use alloc::collections::VecDeque;

/// Received, in-order, unread bytes.
#[derive(Debug, Clone, Default)]
pub struct RecvBuffer {
    data: VecDeque<u8>,
}

impl RecvBuffer {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append.
    pub fn push(&mut self, bytes: &[u8]) {
        self.data.extend(bytes);
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Move up to `dst.len()` bytes out; returns how many.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let (a, b) = self.data.as_slices();
        let na = a.len().min(dst.len());
        dst[..na].copy_from_slice(&a[..na]);
        let nb = b.len().min(dst.len() - na);
        dst[na..na + nb].copy_from_slice(&b[..nb]);
        let n = na + nb;
        self.data.drain(..n);
        n
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.data = VecDeque::new();
    }
}
