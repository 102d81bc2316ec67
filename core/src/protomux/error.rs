//! Why a Protomux session ends or refuses a call.

use thiserror::Error;

use crate::wire::DecodeError;

/// A frame the peer sent that ends the whole session: the owner destroys the stream, as the
/// reference does (`_safeDestroy`). After it every channel is closed (`remote = true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProtomuxError {
    /// A frame or control message did not decode.
    #[error("malformed protomux frame: {0}")]
    Decode(#[from] DecodeError),
    /// An open used the control channel id 0 (the reference fails encoding its reply and
    /// destroys the stream).
    #[error("open of the control channel")]
    OpenOfControlChannel,
    /// An open whose id is neither a free slot nor the next one ("Invalid open message").
    #[error("invalid open: remote channel id {0} is in use or not the next one")]
    InvalidOpen(u64),
    /// A reject for a channel that is not waiting to be opened ("Invalid reject message").
    #[error("invalid reject: local channel id {0} is not waiting")]
    InvalidReject(u64),
    /// More remote channel ids than [`super::mux::MAX_REMOTE_CHANNELS`] (the reference has no limit).
    #[error("the peer opened more channels than allowed")]
    TooManyRemoteChannels,
    /// Batches nested deeper than [`super::mux::MAX_BATCH_DEPTH`] (no reference peer nests them).
    #[error("batches nested too deeply")]
    BatchTooDeep,
    /// The session already ended.
    #[error("the protomux session is destroyed")]
    Destroyed,
}

/// Why a local call could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ChannelError {
    /// A unique channel with this protocol and id is already open (`createChannel` → null).
    #[error("a channel with this protocol and id is already open")]
    Duplicate,
    /// The channel is closed (or the handle is stale).
    #[error("the channel is closed")]
    Closed,
    /// The message type is not one of the channel's.
    #[error("message type {0} is not registered on the channel")]
    UnknownMessageType(u32),
    /// The session is destroyed.
    #[error("the protomux session is destroyed")]
    Destroyed,
    /// More local channels than [`super::mux::MAX_LOCAL_CHANNELS`].
    #[error("too many local channels")]
    TooManyChannels,
}
