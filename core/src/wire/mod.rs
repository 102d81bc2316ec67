//! Wire codecs: compact-encoding primitives and the dht-rpc message format.
//!
//! Every decoder works on a borrowed byte slice, checks every length against what remains
//! before reading, and returns a typed [`DecodeError`] instead of panicking. No decoder
//! allocates more than the input itself could justify.

mod compact;
mod error;
mod message;

pub(crate) use compact::uint_len;
pub use compact::{Reader, Writer, MAX_ARRAY_LEN, MAX_SAFE_INTEGER};
pub use error::DecodeError;
pub use message::{
    Message, Request, Response, ERROR_INVALID_TOKEN, ERROR_OK, ERROR_UNKNOWN_COMMAND,
    MAX_CLOSER_NODES, MAX_DATAGRAM_LEN, REQUEST_TYPE, RESPONSE_TYPE, VERSION,
};
