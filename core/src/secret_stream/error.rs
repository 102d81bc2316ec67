//! Errors of the secret stream.

use thiserror::Error;

/// Why a secret stream failed, or why a call was refused.
///
/// Every error that comes from the peer's bytes, from a timer or from the transport destroys the
/// stream (the reference calls `destroy(err)`): the call that returns it leaves the stream in the
/// destroyed state, later calls return [`SecretStreamError::Destroyed`], and the driver must destroy
/// the transport (UDX DESTROY). Errors marked "refused" leave the stream as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SecretStreamError {
    /// The first frame from the peer is not 56 bytes (reference: "Invalid header message
    /// received"). Fatal.
    #[error("invalid header message received: first frame is {0} bytes, expected 56")]
    InvalidHeaderLength(usize),
    /// The first frame from the peer does not carry the peer role's stream id (reference:
    /// "Invalid header received"): another handshake, or both sides think they are the
    /// initiator. Fatal.
    #[error("invalid header received: stream id does not match the peer's role")]
    InvalidHeaderId,
    /// A message frame shorter than the 17 bytes of secretstream overhead (reference: "Invalid
    /// message received"). Fatal.
    #[error("invalid message received: frame of {0} bytes is shorter than 17")]
    MessageTooShort(usize),
    /// A frame announces more bytes than [`Config::max_frame_len`](super::Config). Fatal; nothing
    /// of that size is ever allocated.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced frame length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A message frame failed authentication: tampered, truncated, reordered, replayed or from
    /// another key. Fatal.
    #[error("message authentication failed (tampered, truncated or reordered frame)")]
    Decrypt,
    /// The transport ended in the middle of a frame. Fatal. (The reference ends the readable
    /// side silently here; a Node peer never ends mid-frame.)
    #[error("stream ended in the middle of a frame ({0} bytes of it received)")]
    TruncatedFrame(usize),
    /// No data arrived for the configured timeout (reference: "Stream timed out"). Fatal.
    #[error("stream timed out")]
    TimedOut,
    /// The 8-byte unordered-message counter wrapped back to its start (reference: "udp send
    /// nonce exchausted"). Fatal.
    #[error("unordered send nonce exhausted")]
    NonceExhausted,
    /// The transport closed before both directions had ended (the reference destroys the stream
    /// without an error of its own; streamx reports "Stream was destroyed"). Fatal.
    #[error("transport closed before the stream ended")]
    TransportClosed,
    /// Refused: a write of more than [`MAX_WRITE`](super::MAX_WRITE) bytes (reference: "Message
    /// is too large for an atomic write").
    #[error("message is too large for an atomic write: {len} bytes, at most {max}")]
    WriteTooLarge {
        /// Length of the refused plaintext.
        len: usize,
        /// The largest plaintext one frame can carry.
        max: usize,
    },
    /// Refused: a write after [`end`](super::SecretStream::end).
    #[error("write after end")]
    WriteAfterEnd,
    /// Refused: transport data after the transport's end was reported.
    #[error("read after end")]
    ReadAfterEnd,
    /// Refused: the stream is destroyed (locally, or by an earlier fatal error).
    #[error("stream destroyed")]
    Destroyed,
    /// Refused: the stream closed gracefully (both directions ended).
    #[error("stream closed")]
    Closed,
}

/// Why an incoming unordered message was dropped. The reference drops all of these silently;
/// none of them affects the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MessageDropped {
    /// Shorter than 24 bytes (8-byte counter + 16-byte MAC); includes hyperdht's empty
    /// direct-path nudges.
    #[error("unordered message shorter than 24 bytes")]
    TooShort,
    /// The secretbox did not authenticate.
    #[error("unordered message failed authentication")]
    Authentication,
    /// The stream is destroyed or closed.
    #[error("stream not open")]
    NotOpen,
}
