//! The UDX wire format: the 20-byte header, the type bits, the data-offset area and SACK blocks.
//!
//! Decoding borrows from the datagram and never allocates or panics; encoding writes into a
//! caller buffer. A decoded packet keeps its raw type byte and the bytes of its data-offset area,
//! so `decode` followed by `encode` reproduces the datagram byte for byte (spec 04 §1).

use thiserror::Error;

/// Length of the UDX header.
pub const HEADER_LEN: usize = 20;
/// Byte 0 of every UDX packet.
pub const MAGIC: u8 = 0xff;
/// Byte 1 of every UDX packet.
pub const VERSION: u8 = 1;
/// Largest datagram a libudx peer can receive (its per-datagram receive buffer, the ceiling
/// dht-rpc datagrams share: [`crate::wire::MAX_DATAGRAM_LEN`]).
pub const MAX_DATAGRAM: usize = crate::wire::MAX_DATAGRAM_LEN;
/// Most SACK blocks libudx puts in one ACK.
pub const MAX_SACK_BLOCKS: usize = 50;
/// Size of one SACK block on the wire.
pub const SACK_BLOCK_LEN: usize = 8;

/// The type byte: a set of bits. Unknown bits are kept (for byte-exact re-encoding) and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// No bit: a pure ACK.
    pub const ACK: Flags = Flags(0);
    /// Stream bytes; consumes one seq.
    pub const DATA: Flags = Flags(0x01);
    /// Half close; consumes one seq.
    pub const END: Flags = Flags(0x02);
    /// The payload holds SACK blocks.
    pub const SACK: Flags = Flags(0x04);
    /// One unreliable datagram for the stream.
    pub const MESSAGE: Flags = Flags(0x08);
    /// The sender aborted the stream.
    pub const DESTROY: Flags = Flags(0x10);
    /// "Please ack" (keep-alive, zero-window probe).
    pub const HEARTBEAT: Flags = Flags(0x20);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the packet consumes a sequence number (DATA or END).
    pub const fn consumes_seq(self) -> bool {
        self.intersects(Flags(0x03))
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// Why a datagram is not a UDX packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacketDecodeError {
    /// Fewer than 20 bytes.
    #[error("datagram shorter than the 20-byte UDX header")]
    TooShort,
    /// Byte 0 is not 0xFF.
    #[error("bad UDX magic byte")]
    BadMagic,
    /// Byte 1 is not 1.
    #[error("unsupported UDX version")]
    BadVersion,
    /// The data offset points past the end of the datagram (libudx drops such packets).
    #[error("data offset larger than the datagram")]
    DataOffsetTooLarge,
}

/// The output buffer cannot hold the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("output buffer too small for the UDX packet")]
pub struct BufferTooSmall;

/// The 20-byte header (all integers little-endian on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Type bits.
    pub flags: Flags,
    /// Bytes between the header and the payload (MTU-probe padding).
    pub data_offset: u8,
    /// The **receiver's** stream id.
    pub stream_id: u32,
    /// Sender's receive window in bytes.
    pub rwnd: u32,
    /// DATA/END: this packet's seq. Otherwise the sender's snd.nxt.
    pub seq: u32,
    /// Cumulative ack: the next seq the sender expects.
    pub ack: u32,
}

impl Header {
    /// Decode the first 20 bytes of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Header, PacketDecodeError> {
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(PacketDecodeError::TooShort)?;
        if h[0] != MAGIC {
            return Err(PacketDecodeError::BadMagic);
        }
        if h[1] != VERSION {
            return Err(PacketDecodeError::BadVersion);
        }
        let u = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Ok(Header {
            flags: Flags(h[2]),
            data_offset: h[3],
            stream_id: u(4),
            rwnd: u(8),
            seq: u(12),
            ack: u(16),
        })
    }

    /// The 20 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = MAGIC;
        out[1] = VERSION;
        out[2] = self.flags.0;
        out[3] = self.data_offset;
        out[4..8].copy_from_slice(&self.stream_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.rwnd.to_le_bytes());
        out[12..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..20].copy_from_slice(&self.ack.to_le_bytes());
        out
    }

    /// Write the header at the start of `out`.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        out.get_mut(..HEADER_LEN)
            .ok_or(BufferTooSmall)?
            .copy_from_slice(&self.to_bytes());
        Ok(HEADER_LEN)
    }
}

/// Whether a datagram looks like UDX (≥ 20 bytes, `0xFF 0x01`), and if so its stream id.
/// This is the demultiplexing test of spec 04 §4.2 (the id must still name a live stream).
pub fn peek_stream_id(datagram: &[u8]) -> Option<u32> {
    if datagram.len() < HEADER_LEN || datagram[0] != MAGIC || datagram[1] != VERSION {
        return None;
    }
    Some(u32::from_le_bytes([
        datagram[4],
        datagram[5],
        datagram[6],
        datagram[7],
    ]))
}

/// A decoded UDX packet, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The header.
    pub header: Header,
    /// The `data_offset` bytes after the header (zeros in MTU probes).
    pub padding: &'a [u8],
    /// Everything after the padding: stream bytes, message, or SACK blocks.
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Decode a whole datagram. Never panics, never allocates.
    pub fn decode(datagram: &'a [u8]) -> Result<Packet<'a>, PacketDecodeError> {
        let header = Header::decode(datagram)?;
        let rest = &datagram[HEADER_LEN..];
        let off = usize::from(header.data_offset);
        if off > rest.len() {
            return Err(PacketDecodeError::DataOffsetTooLarge);
        }
        let (padding, payload) = rest.split_at(off);
        Ok(Packet {
            header,
            padding,
            payload,
        })
    }

    /// Bytes `encode` writes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.padding.len() + self.payload.len()
    }

    /// Write the packet into `out`; returns its length. The header's `data_offset` is written as
    /// stored (a caller building a packet keeps it equal to `padding.len()`).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.encoded_len();
        let out = out.get_mut(..len).ok_or(BufferTooSmall)?;
        self.header.write(out)?;
        let p = HEADER_LEN + self.padding.len();
        out[HEADER_LEN..p].copy_from_slice(self.padding);
        out[p..].copy_from_slice(self.payload);
        Ok(len)
    }

    /// The SACK blocks `[start, end)` of a SACK packet (empty iterator otherwise).
    ///
    /// As libudx's `process_packet`: the block area is the first `data_offset` bytes after the
    /// header when `0 < data_offset < bytes after the header`, else the payload. A trailing
    /// partial block is ignored.
    pub fn sack_blocks(&self) -> SackBlocks<'a> {
        if !self.header.flags.contains(Flags::SACK) {
            return SackBlocks { bytes: &[] };
        }
        let total = self.padding.len() + self.payload.len();
        let bytes = if !self.padding.is_empty() && self.padding.len() < total {
            self.padding
        } else {
            self.payload
        };
        SackBlocks { bytes }
    }
}

/// Iterator over `(start, end)` SACK blocks (end exclusive).
#[derive(Debug, Clone)]
pub struct SackBlocks<'a> {
    bytes: &'a [u8],
}

impl Iterator for SackBlocks<'_> {
    type Item = (u32, u32);
    fn next(&mut self) -> Option<(u32, u32)> {
        let b = self.bytes.get(..SACK_BLOCK_LEN)?;
        let start = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let end = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        self.bytes = &self.bytes[SACK_BLOCK_LEN..];
        Some((start, end))
    }
}

/// Write SACK blocks into `out` (at most [`MAX_SACK_BLOCKS`] and as many as fit); returns the
/// number of bytes written.
pub fn write_sack_blocks(blocks: impl IntoIterator<Item = (u32, u32)>, out: &mut [u8]) -> usize {
    let mut n = 0;
    for (i, (s, e)) in blocks.into_iter().take(MAX_SACK_BLOCKS).enumerate() {
        let Some(slot) = out.get_mut(i * SACK_BLOCK_LEN..(i + 1) * SACK_BLOCK_LEN) else {
            break;
        };
        slot[..4].copy_from_slice(&s.to_le_bytes());
        slot[4..].copy_from_slice(&e.to_le_bytes());
        n = (i + 1) * SACK_BLOCK_LEN;
    }
    n
}

/// Serial-number comparison of 32-bit sequence numbers: `a < b` iff `(a - b) as i32 < 0`.
pub const fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Serial `a <= b`.
pub const fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}
