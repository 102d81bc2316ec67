//! `@hyperswarm/secret-stream` (6.9.2) as hyperdht uses it, byte-compatible with Node: an
//! encrypted, framed byte stream over a reliable transport (a UDX stream), keyed by the Noise IK
//! handshake that already ran over the DHT (spec 04 §5).
//!
//! Wire format (each direction independent):
//! * first frame: `38 00 00 ‖ own stream id (32) ‖ secretstream header (24)`;
//! * then message frames: `uint24le(len(plain) + 17) ‖ crypto_secretstream_xchacha20poly1305_push(
//!   plain, TAG_MESSAGE)` (libsodium-compatible [`crypto_secretstream`] crate, never hand-rolled);
//! * empty message frames are keep-alives (every 5 s of write silence in hyperdht);
//! * no end marker: the transport's END ends the stream.
//!
//! Unordered messages (`send`/`trySend`) are separate: secretbox envelopes
//! `counter(8) ‖ MAC(16) ‖ ciphertext` in UDX MESSAGE packets.
//!
//! # Driving a [`SecretStream`]
//!
//! The state machine does no I/O and reads no clock. The connection layer:
//! 1. creates it when the UDX stream is connected (`SecretStream::new`, or
//!    [`SecretStream::from_handshake`] with the connect layer's `HandshakeResult`), then calls
//!    [`poll_transmit`](SecretStream::poll_transmit) and writes those bytes (the 59-byte header
//!    frame) to the UDX stream at once — do not wait for the peer's header;
//! 2. for each application write: [`write`](SecretStream::write) appends a frame (header
//!    first if still pending) to its buffer, which it hands to the UDX stream; large writes are
//!    cut into frames of at most [`MAX_WRITE`] (64 KiB frames recommended); back-pressure is the
//!    UDX send buffer's — stop calling `write` while it is full;
//! 3. for each in-order chunk of UDX stream data: [`read`](SecretStream::read) (byte mode, for
//!    `AsyncRead`) or [`read_messages`](SecretStream::read_messages) (per message); chunks may
//!    split or join frames arbitrarily. Stop feeding (and let UDX's receive window close) when
//!    the application's read buffer is full;
//! 4. for each UDX MESSAGE payload: [`open_message`](SecretStream::open_message) (or
//!    `open_message_in_place`); a `MessageDropped` is ignored. `send`/`trySend`:
//!    [`send_message`](SecretStream::send_message), then one UDX MESSAGE packet;
//! 5. timers: wake at [`poll_timeout`](SecretStream::poll_timeout), call
//!    [`handle_timeout`](SecretStream::handle_timeout), then
//!    [`poll_transmit`](SecretStream::poll_transmit) (keep-alive frames);
//! 6. UDX END received → [`handle_remote_end`](SecretStream::handle_remote_end) (EOF to the
//!    reader); application shutdown → [`end`](SecretStream::end), send what it appended, then
//!    UDX END; UDX closed → [`handle_transport_closed`](SecretStream::handle_transport_closed);
//!    application drop/abort → [`destroy`](SecretStream::destroy) and UDX DESTROY;
//! 7. any `Err` from `read*`, `handle_*`, `send_message` other than the "refused" kinds (see
//!    [`SecretStreamError`]) means the stream is destroyed: destroy the UDX stream (DESTROY) and
//!    surface the error to the application. A UDX error (reset, timeout) → `destroy()`.

mod config;
mod error;
mod frame;
pub mod keys;
mod secret;
mod unordered;

pub use config::{Config, HandshakeKeys};
pub use error::{MessageDropped, SecretStreamError};
pub use frame::{
    frame_body_len, frame_len, split_frames, ABYTES, DEFAULT_KEEP_ALIVE, HEADER_BYTES,
    HEADER_FRAME_LEN, ID_HEADER_LEN, MAX_FRAME_LEN, MAX_WRITE,
};
pub use secret::SecretStream;
pub use unordered::ENVELOPE_OVERHEAD;
