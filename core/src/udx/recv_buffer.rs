//! In-order bytes delivered by the network and not yet read by the application.
//!
//! One contiguous buffer with a read offset, so a reader can work on the bytes where they are
//! ([`peek`](RecvBuffer::peek) then [`consume`](RecvBuffer::consume)) instead of copying them
//! out first: the connection layer decrypts secret-stream frames straight out of it.

use alloc::vec::Vec;

/// Consumed bytes at the front are moved out of the way (the live tail copied down) when a
/// push would not fit the allocation, or once they are at least this many and outnumber the
/// live bytes; a reader that drains everything resets the buffer for free. So the allocation
/// stays within about twice the most ever held, and a reader that leaves the tail of a frame
/// behind each time (waiting for the rest) costs a move only now and then.
const COMPACT_MIN: usize = 1024 * 1024;

/// Received, in-order, unread bytes.
#[derive(Debug, Clone, Default)]
pub struct RecvBuffer {
    data: Vec<u8>,
    /// Bytes of `data` already consumed.
    head: usize,
}

impl RecvBuffer {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append.
    pub fn push(&mut self, bytes: &[u8]) {
        let full = self.data.len() + bytes.len() > self.data.capacity();
        if self.head > 0 && (full || (self.head >= COMPACT_MIN && self.head >= self.len())) {
            self.data.drain(..self.head);
            self.head = 0;
        }
        self.data.extend_from_slice(bytes);
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.data.len() - self.head
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes held, in order, without consuming them.
    pub fn peek(&self) -> &[u8] {
        &self.data[self.head..]
    }

    /// Drops the first `n` bytes held (at most all of them).
    pub fn consume(&mut self, n: usize) {
        self.head += n.min(self.len());
        if self.head == self.data.len() {
            self.data.clear();
            self.head = 0;
            // A small drained buffer is freed: an idle stream holds no receive memory. (A
            // large one is a stream moving data: kept for the next burst.)
            if self.data.capacity() <= super::release::RELEASE_DRAINED_MAX {
                self.data = Vec::new();
            }
        }
    }

    /// Move up to `dst.len()` bytes out; returns how many.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        dst[..n].copy_from_slice(&self.data[self.head..self.head + n]);
        self.consume(n);
        n
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.data = Vec::new();
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_consume_and_read_see_the_bytes_in_order_across_compactions() {
        let mut b = RecvBuffer::new();
        let mut next_in = 0u32;
        let mut next_out = 0u32;
        let mut out = [0u8; 1000];
        for round in 0..2000usize {
            let chunk: Vec<u8> = (0..(round * 37) % 1500)
                .map(|_| {
                    next_in += 1;
                    next_in as u8
                })
                .collect();
            b.push(&chunk);
            // Bounded: after a push the dead front is below COMPACT_MIN or the live bytes.
            assert!(b.head < COMPACT_MIN || b.head < b.len());
            let take = (round * 53) % 1700;
            let got: Vec<u8> = if round % 2 == 0 {
                let n = b.read(&mut out[..take.min(1000)]);
                out[..n].to_vec()
            } else {
                let v = b.peek()[..take.min(b.len())].to_vec();
                b.consume(v.len());
                v
            };
            for x in got {
                next_out += 1;
                assert_eq!(x, next_out as u8);
            }
            assert_eq!(b.len() as u32, next_in - next_out);
        }
    }
}
