use thiserror::Error;

/// Why a byte sequence could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A field needs more bytes than remain.
    #[error("out of bounds: a field needs more bytes than the input has")]
    OutOfBounds,
    /// A `uint` in its 9-byte form is larger than 2^53 - 1 (JavaScript's safe integer range).
    #[error("integer exceeds 2^53 - 1")]
    IntegerTooLarge,
    /// An array claims more elements than the decoder accepts.
    #[error("array length {0} exceeds the limit")]
    ArrayTooLong(u64),
    /// The first byte is not a dht-rpc request or response of version 3.
    #[error("unknown message type or version byte 0x{0:02x}")]
    UnknownType(u8),
    /// The datagram is too short to be a message at all.
    #[error("datagram too short")]
    TooShort,
}
