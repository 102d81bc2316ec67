//! The Protomux frame codec (protomux 3.12.1, spec 05 §5.2, §5.5): `uint channel ‖ uint type ‖
//! body`, channel 0 carrying the control messages (batch, open, reject, close).
//!
//! Decoding borrows from the frame and never allocates; encoding appends to a `Vec`. Trailing
//! bytes after a control message are ignored, as the reference's decoders ignore them.

use alloc::vec::Vec;

use crate::wire::{DecodeError, Reader, Writer};

/// Channel id 0: the control session.
pub const CONTROL_CHANNEL: u64 = 0;
/// Control message type 0: a batch of entries.
pub const TYPE_BATCH: u64 = 0;
/// Control message type 1: a channel open.
pub const TYPE_OPEN: u64 = 1;
/// Control message type 2: a rejected open.
pub const TYPE_REJECT: u64 = 2;
/// Control message type 3: a one-way channel close.
pub const TYPE_CLOSE: u64 = 3;

/// A control `open`: the sender's local id, the protocol, the pairing id and the handshake
/// bytes (everything after the id; empty when the channel has no handshake encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open<'a> {
    /// The opener's local id of the channel (1-based; 0 is refused by the reference).
    pub local_id: u64,
    /// The protocol name as sent (UTF-8 by convention; the reference decodes it lossily).
    pub protocol: &'a [u8],
    /// The pairing id; a zero-length id is absent (`optionalBuffer`).
    pub id: Option<&'a [u8]>,
    /// Bytes after the id: the channel handshake, if the protocol has one.
    pub handshake: &'a [u8],
}

/// One decoded Protomux message (a whole frame, or one entry of a batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A channel message: `type` indexes the channel's message list.
    Message {
        /// The sender's local id of the channel (never 0).
        channel: u64,
        /// The message type.
        message_type: u64,
        /// The encoded message.
        body: &'a [u8],
    },
    /// A batch: `first_channel`, then entries ([`BatchEntries`]).
    Batch(BatchEntries<'a>),
    /// A channel open.
    Open(Open<'a>),
    /// A rejected open: the opener's local id.
    Reject {
        /// The local id the rejected opener used.
        local_id: u64,
    },
    /// A closed channel: the closer's local id.
    Close {
        /// The closer's local id.
        local_id: u64,
    },
    /// A control message type the reference ignores (≥ 4).
    UnknownControl {
        /// The type.
        message_type: u64,
    },
}

impl<'a> Frame<'a> {
    /// Decode a whole frame (one secret-stream message). An empty frame is not a frame: the
    /// caller ignores it, as the reference does (it is also the secret-stream keep-alive).
    pub fn decode(frame: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
        let mut r = Reader::new(frame);
        let channel = r.uint()?;
        Self::decode_on(channel, r.remaining())
    }

    /// Decode `uint type ‖ body` for `channel` (a frame's tail or a batch entry).
    pub fn decode_on(channel: u64, rest: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
        let mut r = Reader::new(rest);
        let message_type = r.uint()?;
        if channel != CONTROL_CHANNEL {
            return Ok(Frame::Message {
                channel,
                message_type,
                body: r.remaining(),
            });
        }
        match message_type {
            TYPE_BATCH => {
                let first_channel = r.uint()?;
                Ok(Frame::Batch(BatchEntries {
                    channel: first_channel,
                    rest: r.remaining(),
                }))
            }
            TYPE_OPEN => {
                let local_id = r.uint()?;
                let protocol = r.utf8()?;
                let id = r.buffer()?;
                Ok(Frame::Open(Open {
                    local_id,
                    protocol,
                    id: (!id.is_empty()).then_some(id),
                    handshake: r.remaining(),
                }))
            }
            TYPE_REJECT => Ok(Frame::Reject {
                local_id: r.uint()?,
            }),
            TYPE_CLOSE => Ok(Frame::Close {
                local_id: r.uint()?,
            }),
            other => Ok(Frame::UnknownControl {
                message_type: other,
            }),
        }
    }
}

/// The entries of a batch, as `(channel, uint type ‖ body)` pairs (spec 05 §5.5).
///
/// An entry is `uint len (> 0) ‖ len bytes`, or `00 ‖ uint channel` to switch the channel of the
/// entries that follow. A length running past the end of the batch is cut at the end, as the
/// reference does (`Math.min(start + len, end)`); a truncated length or channel is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchEntries<'a> {
    channel: u64,
    rest: &'a [u8],
}

impl<'a> BatchEntries<'a> {
    /// The channel of the first entry.
    pub fn first_channel(&self) -> u64 {
        self.channel
    }

    /// The next entry: `Ok(None)` at the end.
    pub fn next_entry(&mut self) -> Result<Option<(u64, &'a [u8])>, DecodeError> {
        loop {
            if self.rest.is_empty() {
                return Ok(None);
            }
            let mut r = Reader::new(self.rest);
            let len = r.uint()?;
            if len == 0 {
                self.channel = r.uint()?;
                self.rest = r.remaining();
                continue;
            }
            let tail = r.remaining();
            let take = usize::try_from(len).unwrap_or(usize::MAX).min(tail.len());
            let (entry, rest) = tail.split_at(take);
            self.rest = rest;
            return Ok(Some((self.channel, entry)));
        }
    }

    /// Whether entries (or channel switches) follow the one last returned.
    pub fn has_more(&self) -> bool {
        !self.rest.is_empty()
    }
}

/// `00 01 uint localId ‖ string protocol ‖ optionalBuffer id ‖ handshake` (`Channel.open`).
pub fn encode_open(
    out: &mut Vec<u8>,
    local_id: u64,
    protocol: &str,
    id: Option<&[u8]>,
    handshake: &[u8],
) {
    let mut w = Writer::new(out);
    w.uint(CONTROL_CHANNEL);
    w.uint(TYPE_OPEN);
    w.uint(local_id);
    w.utf8(protocol);
    w.buffer(id.unwrap_or(&[]));
    w.bytes(handshake);
}

/// `00 02 uint localId` — the rejected opener's id (`_rejectSession`).
pub fn encode_reject(out: &mut Vec<u8>, local_id: u64) {
    let mut w = Writer::new(out);
    w.uint(CONTROL_CHANNEL);
    w.uint(TYPE_REJECT);
    w.uint(local_id);
}

/// `00 03 uint localId` (`Channel.close`).
pub fn encode_close(out: &mut Vec<u8>, local_id: u64) {
    let mut w = Writer::new(out);
    w.uint(CONTROL_CHANNEL);
    w.uint(TYPE_CLOSE);
    w.uint(local_id);
}

/// `uint channel ‖ uint type ‖ body` (`addMessage().send`, uncorked).
pub fn encode_message(out: &mut Vec<u8>, channel: u64, message_type: u64, body: &[u8]) {
    let mut w = Writer::new(out);
    w.uint(channel);
    w.uint(message_type);
    w.bytes(body);
}

/// Builds one batch frame (`_pushBatch` / `_sendBatch`): `00 00 ‖ uint channel ‖ entries`,
/// switching channel with `00 ‖ uint channel` only when it changes.
#[derive(Debug, Default, Clone)]
pub struct BatchWriter {
    buf: Vec<u8>,
    channel: Option<u64>,
}

impl BatchWriter {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.channel.is_none()
    }

    /// Bytes of the frame so far (the reference flushes a batch once this reaches 8 MiB).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Append an entry `uint type ‖ body` of `channel` (0 for a control message).
    pub fn push(&mut self, channel: u64, message_type: u64, body: &[u8]) {
        let mut w = Writer::new(&mut self.buf);
        match self.channel {
            None => {
                w.uint(CONTROL_CHANNEL);
                w.uint(TYPE_BATCH);
                w.uint(channel);
            }
            Some(c) if c != channel => {
                w.u8(0);
                w.uint(channel);
            }
            Some(_) => {}
        }
        self.channel = Some(channel);
        let len = crate::wire::uint_len(message_type) + body.len();
        w.uint(len as u64);
        w.uint(message_type);
        w.bytes(body);
    }

    /// The finished frame (`None` if empty); the writer is empty again.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        self.channel.take()?;
        Some(core::mem::take(&mut self.buf))
    }
}
