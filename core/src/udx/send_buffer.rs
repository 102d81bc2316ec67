//! The bytes the application wrote and the peer has not acknowledged yet.
//!
//! One ring of bytes addressed by absolute stream offset: `[base, base + len)`. Packets are cut
//! from it at transmit time (so writes made before a transmit share packets, like libudx's
//! coalescing) and retransmissions copy from it again. The total is bounded by `limit`: a
//! write accepts only what fits, which is the back-pressure the application sees.

use alloc::collections::VecDeque;

/// Bounded send buffer.
#[derive(Debug, Clone)]
pub struct SendBuffer {
    data: VecDeque<u8>,
    base: u64,
    limit: usize,
}

impl SendBuffer {
    /// An empty buffer holding at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        SendBuffer {
            data: VecDeque::new(),
            base: 0,
            limit,
        }
    }

    /// Append as much of `bytes` as fits; returns how much was taken.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        self.data.extend(&bytes[..n]);
        n
    }

    /// Room left.
    pub fn free(&self) -> usize {
        self.limit.saturating_sub(self.data.len())
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Offset of the first byte held.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Offset one past the last byte written.
    pub fn end(&self) -> u64 {
        self.base + self.data.len() as u64
    }

    /// The configured limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Copy the bytes at `[offset, offset + dst.len())` into `dst`; false if not all are held.
    pub fn copy_out(&self, offset: u64, dst: &mut [u8]) -> bool {
        let Some(start) = offset.checked_sub(self.base) else {
            return false;
        };
        let Ok(start) = usize::try_from(start) else {
            return false;
        };
        if start.saturating_add(dst.len()) > self.data.len() {
            return false;
        }
        let (a, b) = self.data.as_slices();
        let mut written = 0;
        if start < a.len() {
            let n = (a.len() - start).min(dst.len());
            dst[..n].copy_from_slice(&a[start..start + n]);
            written = n;
        }
        if written < dst.len() {
            let bstart = start + written - a.len();
            let n = dst.len() - written;
            dst[written..].copy_from_slice(&b[bstart..bstart + n]);
        }
        true
    }

    /// Forget everything before `offset` (acknowledged).
    pub fn release_to(&mut self, offset: u64) {
        let n = offset.saturating_sub(self.base).min(self.data.len() as u64) as usize;
        self.data.drain(..n);
        self.base += n as u64;
        if self.data.is_empty()
            && (self.data.capacity() <= super::release::RELEASE_DRAINED_MAX
                || self.data.capacity() > 4 * self.limit.max(1 << 16))
        {
            // Drained: a small ring is freed (an idle stream holds no send memory), a huge one
            // too; one in between is a stream moving data, kept for its next burst.
            self.data = VecDeque::new();
        }
    }

    /// Drop everything (stream destroyed).
    pub fn clear(&mut self) {
        self.base = self.end();
        self.data = VecDeque::new();
    }
}
