//! Why a relay session or a pairing failed.

use thiserror::Error;

use super::message::MessageError;
use crate::protomux::{ChannelError, ProtomuxError};

/// A relay session (server side) or relay client ended, or a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RelayError {
    /// The peer's Protomux frames were invalid: destroy the connection.
    #[error(transparent)]
    Protomux(#[from] ProtomuxError),
    /// A `pair`/`unpair` message did not decode: destroy the connection (the reference's decode
    /// error destroys the stream too).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A local channel call was refused.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// No such session.
    #[error("unknown relay session {0}")]
    UnknownSession(u64),
    /// A session with this id exists already.
    #[error("relay session {0} exists already")]
    DuplicateSession(u64),
}

/// Why a client's pairing request ended without a relay stream (blind-relay's error codes, and
/// hyperdht's `RELAY_ABORTED` for the timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PairError {
    /// The channel closed: the relay closed or rejected it, or the connection ended
    /// (`CHANNEL_CLOSED`).
    #[error("CHANNEL_CLOSED: Channel closed")]
    ChannelClosed,
    /// The client was destroyed (`CHANNEL_DESTROYED`).
    #[error("CHANNEL_DESTROYED: Channel destroyed")]
    ChannelDestroyed,
    /// `unpair` cancelled it (`PAIRING_CANCELLED`).
    #[error("PAIRING_CANCELLED: Pairing cancelled")]
    PairingCancelled,
    /// No reply within the pairing timeout (hyperdht's `RELAY_ABORTED`).
    #[error("RELAY_ABORTED: Relay aborted")]
    TimedOut,
    /// A request with this token is already pending on this client (`ALREADY_PAIRING`).
    #[error("ALREADY_PAIRING: Already pairing")]
    AlreadyPairing,
    /// More pending requests than the client allows.
    #[error("too many pairing requests on one relay connection")]
    TooManyRequests,
}
