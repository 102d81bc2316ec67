//! The blind-relay messages (blind-relay 1.6.1 `messages`, spec 05 §6.2):
//!
//! ```text
//! pair   := flags ‖ fixed32 token ‖ uint id ‖ uint seq      (type 0 on the channel)
//! unpair := flags ‖ fixed32 token                           (type 1)
//! flags  := compact-encoding-bitfield(7): one byte, bit 0 = isInitiator
//! ```
//!
//! The decoders read as the reference's do: the bitfield's first byte may be a width prefix
//! (`0xfd`/`0xfe`/`0xff` → 2/4/8 bytes follow, the first of which holds the bits), only bit 0 is
//! read, and trailing bytes after the message are ignored.

use alloc::vec::Vec;

use crate::wire::{DecodeError, Reader, Writer};

/// The Protomux protocol name of the channel.
pub const PROTOCOL: &str = "blind-relay";
/// Message type of [`Pair`] on the channel.
pub const TYPE_PAIR: u32 = 0;
/// Message type of [`Unpair`] on the channel.
pub const TYPE_UNPAIR: u32 = 1;
/// Message types the channel has.
pub const MESSAGE_TYPES: u32 = 2;

/// A pairing token: 32 random bytes carried in the Noise payload.
pub type Token = [u8; 32];

/// `pair`: a request (id = the sender's application stream id) or the relay's reply (id = the
/// relay-side stream id allocated for the receiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// Whether the sender's side chose the relay and the token.
    pub is_initiator: bool,
    /// The pairing token.
    pub token: Token,
    /// A UDX stream id (compact `uint`; values above `u32::MAX` are refused on decode).
    pub id: u32,
    /// Always 0 on the wire; nobody reads it.
    pub seq: u64,
}

/// `unpair`: cancel a pairing by token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpair {
    /// The pairing token.
    pub token: Token,
}

/// Why a blind-relay message did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A field is truncated or malformed.
    #[error("malformed blind-relay message: {0}")]
    Decode(#[from] DecodeError),
    /// A stream id that is not a 32-bit UDX id (the reference would pass it to libudx, which
    /// truncates it; no honest peer sends one).
    #[error("stream id {0} does not fit 32 bits")]
    StreamIdTooLarge(u64),
}

/// The bitfield(7) flags byte (`compact-encoding-bitfield` decode).
fn read_flags(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let first = r.u8()?;
    let width = match first {
        0xfd => 2,
        0xfe => 4,
        0xff => 8,
        b => return Ok(b),
    };
    Ok(r.bytes(width)?[0])
}

impl Pair {
    /// Encode (39 bytes for a 32-bit id and seq 0).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u8(u8::from(self.is_initiator));
        w.fixed32(&self.token);
        w.uint(u64::from(self.id));
        w.uint(self.seq);
    }

    /// The encoded message.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(39);
        self.encode(&mut out);
        out
    }

    /// Decode; trailing bytes are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Pair, MessageError> {
        let mut r = Reader::new(bytes);
        let flags = read_flags(&mut r)?;
        let token = r.fixed32()?;
        let id = r.uint()?;
        let seq = r.uint()?;
        let id = u32::try_from(id).map_err(|_| MessageError::StreamIdTooLarge(id))?;
        Ok(Pair {
            is_initiator: flags & 1 == 1,
            token,
            id,
            seq,
        })
    }
}

impl Unpair {
    /// Encode (33 bytes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u8(0);
        w.fixed32(&self.token);
    }

    /// The encoded message.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33);
        self.encode(&mut out);
        out
    }

    /// Decode; trailing bytes are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Unpair, MessageError> {
        let mut r = Reader::new(bytes);
        read_flags(&mut r)?;
        Ok(Unpair {
            token: r.fixed32()?,
        })
    }
}
