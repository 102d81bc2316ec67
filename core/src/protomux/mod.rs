//! Protomux: channels multiplexed over one framed stream, byte-exact with protomux 3.12.1
//! (spec 05 §5). Over hyperdht the stream is a secret stream: one Protomux frame is one
//! secret-stream message.
//!
//! - [`frame`]: the frame codec (control open / reject / close, batches, channel messages).
//! - [`mux`]: the session state machine ([`Mux`]): dense local ids, pairing by
//!   `(protocol, id)`, early messages, open requests, cork/uncork.
//! - [`error`]: what ends a session or refuses a call.
//!
//! Not carried over from the reference: channel aliases and asynchronous open handlers (an
//! open is accepted or declined synchronously by the handler given to
//! [`Mux::handle_frame_with`]). Limits where the reference has none:
//! [`mux::MAX_REMOTE_CHANNELS`], [`mux::MAX_LOCAL_CHANNELS`], [`mux::MAX_BATCH_DEPTH`].

pub mod error;
pub mod frame;
pub mod mux;

pub use error::{ChannelError, ProtomuxError};
pub use frame::{BatchEntries, BatchWriter, Frame, Open};
pub use mux::{Accept, ChannelId, ChannelOptions, Mux, MuxEvent, OpenHandler};
