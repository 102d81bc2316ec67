//! compact-encoding 3.5.2 primitives, as dht-rpc uses them.
//!
//! Encoding is always minimal; decoding is lenient about non-minimal `uint` forms exactly as the
//! reference is (it only looks at the prefix byte).

use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

use super::DecodeError;

/// The largest integer a JavaScript peer can represent exactly (2^53 − 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The largest element count an `array` decoder accepts (the reference's 0x100000).
pub const MAX_ARRAY_LEN: u64 = 0x10_0000;

/// A bounds-checked cursor over an input slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// The bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::OutOfBounds);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian `uint16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian `uint32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian `uint64`, limited to 2^53 − 1 like the reference.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let v = u64::from_le_bytes(self.array()?);
        if v > MAX_SAFE_INTEGER {
            return Err(DecodeError::IntegerTooLarge);
        }
        Ok(v)
    }

    /// A variable-length `uint`.
    pub fn uint(&mut self) -> Result<u64, DecodeError> {
        match self.u8()? {
            0xfd => self.u16().map(u64::from),
            0xfe => self.u32().map(u64::from),
            0xff => self.u64(),
            b => Ok(u64::from(b)),
        }
    }

    /// A `bool`: 1 is true, anything else false.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? == 1)
    }

    /// A `buffer`: `uint` length then that many bytes. Empty is a present, empty value.
    pub fn buffer(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.uint()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::OutOfBounds)?;
        self.bytes(len)
    }

    /// A `string`: a `buffer` of UTF-8. Invalid UTF-8 is returned as bytes; callers decide.
    pub fn utf8(&mut self) -> Result<&'a [u8], DecodeError> {
        self.buffer()
    }

    /// Exactly 32 bytes.
    pub fn fixed32(&mut self) -> Result<[u8; 32], DecodeError> {
        self.array()
    }

    /// An IPv4 address and port: 4 octets, then the port as uint16 LE.
    pub fn ipv4(&mut self) -> Result<SocketAddrV4, DecodeError> {
        let octets: [u8; 4] = self.array()?;
        let port = self.u16()?;
        Ok(SocketAddrV4::new(Ipv4Addr::from(octets), port))
    }

    /// An array's element count, checked against `MAX_ARRAY_LEN` and against the bytes left
    /// given each element's minimum encoded size, so a hostile count can't force an allocation.
    pub fn array_len(&mut self, min_element_size: usize) -> Result<usize, DecodeError> {
        let len = self.uint()?;
        if len > MAX_ARRAY_LEN {
            return Err(DecodeError::ArrayTooLong(len));
        }
        let len = len as usize;
        // Every element takes at least one byte, so a count beyond the input is a lie.
        if len.saturating_mul(min_element_size.max(1)) > self.buf.len() {
            return Err(DecodeError::OutOfBounds);
        }
        Ok(len)
    }

    /// An `array(ipv4Address)`.
    pub fn ipv4_array(&mut self) -> Result<Vec<SocketAddrV4>, DecodeError> {
        let len = self.array_len(6)?;
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(self.ipv4()?);
        }
        Ok(out)
    }

    /// An `array(uint)`.
    pub fn uint_array(&mut self) -> Result<Vec<u64>, DecodeError> {
        let len = self.array_len(1)?;
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(self.uint()?);
        }
        Ok(out)
    }
}

/// An appending encoder over a `Vec<u8>`.
#[derive(Debug)]
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// A writer that appends to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    /// Raw bytes, no length prefix.
    pub fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    /// A little-endian `uint16`.
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian `uint32`.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian `uint64`.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// A variable-length `uint`, minimal form.
    pub fn uint(&mut self, v: u64) {
        if v <= 0xfc {
            self.u8(v as u8);
        } else if v <= 0xffff {
            self.u8(0xfd);
            self.u16(v as u16);
        } else if v <= 0xffff_ffff {
            self.u8(0xfe);
            self.u32(v as u32);
        } else {
            self.u8(0xff);
            self.u64(v);
        }
    }

    /// A `bool`.
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// A `buffer`: `uint` length, then the bytes.
    pub fn buffer(&mut self, b: &[u8]) {
        self.uint(b.len() as u64);
        self.bytes(b);
    }

    /// A `string`.
    pub fn utf8(&mut self, s: &str) {
        self.buffer(s.as_bytes());
    }

    /// Exactly 32 bytes.
    pub fn fixed32(&mut self, b: &[u8; 32]) {
        self.bytes(b);
    }

    /// An IPv4 address and port.
    pub fn ipv4(&mut self, addr: &SocketAddrV4) {
        self.bytes(&addr.ip().octets());
        self.u16(addr.port());
    }

    /// An `array(ipv4Address)`.
    pub fn ipv4_array(&mut self, addrs: &[SocketAddrV4]) {
        self.uint(addrs.len() as u64);
        for a in addrs {
            self.ipv4(a);
        }
    }

    /// An `array(uint)`.
    pub fn uint_array(&mut self, values: &[u64]) {
        self.uint(values.len() as u64);
        for v in values {
            self.uint(*v);
        }
    }
}

/// The encoded size of a `uint`.
pub(crate) const fn uint_len(v: u64) -> usize {
    match v {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}
