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

mod error;
pub mod keys;
mod secret;
mod unordered;

use core::time::Duration;

use zeroize::Zeroize;

pub use error::{MessageDropped, SecretStreamError};
pub use secret::SecretStream;
pub use unordered::ENVELOPE_OVERHEAD;

/// libsodium `crypto_secretstream_xchacha20poly1305_ABYTES`: encrypted tag byte + 16-byte MAC.
pub const ABYTES: usize = 17;
/// libsodium `crypto_secretstream_xchacha20poly1305_HEADERBYTES`.
pub const HEADER_BYTES: usize = 24;
/// Body length of the first frame: stream id (32) + secretstream header (24).
pub const ID_HEADER_LEN: usize = 32 + HEADER_BYTES;
/// The first frame on the wire, prefix included (59 bytes).
pub const HEADER_FRAME_LEN: usize = 3 + ID_HEADER_LEN;
/// Largest frame body a uint24 prefix can announce (`2^24 − 1`, the reference's
/// `MAX_ATOMIC_WRITE`).
pub const MAX_FRAME_LEN: usize = 0xff_ffff;
/// Largest plaintext of one [`SecretStream::write`] (16 777 198 bytes).
pub const MAX_WRITE: usize = MAX_FRAME_LEN - ABYTES;
/// hyperdht's keep-alive interval (`connectionKeepAlive`, 5000 ms).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_millis(5000);

/// Length of the frame carrying `plain_len` plaintext bytes, prefix included.
pub const fn frame_len(plain_len: usize) -> usize {
    3 + plain_len + ABYTES
}

/// The body length a frame's 3-byte prefix announces (uint24, little-endian).
pub const fn frame_body_len(prefix: [u8; 3]) -> usize {
    prefix[0] as usize | (prefix[1] as usize) << 8 | (prefix[2] as usize) << 16
}

/// Splits bytes a [`SecretStream`] wrote into its frames, prefixes included (a truncated last
/// frame comes out as it is).
pub fn split_frames(mut out: &[u8]) -> impl Iterator<Item = &[u8]> {
    core::iter::from_fn(move || {
        if out.is_empty() {
            return None;
        }
        let len = match out {
            [a, b, c, ..] => 3 + frame_body_len([*a, *b, *c]),
            _ => out.len(),
        };
        let (frame, rest) = out.split_at(len.min(out.len()));
        out = rest;
        Some(frame)
    })
}

/// The handshake result a secret stream is keyed with (`{ tx, rx, hash, publicKey,
/// remotePublicKey }`). Initiator `tx` = responder `rx` and vice versa.
#[derive(Clone, PartialEq, Eq)]
pub struct HandshakeKeys {
    /// Key of the direction this side sends (first 32 bytes of the Noise split key).
    pub tx: [u8; 32],
    /// Key of the direction this side receives.
    pub rx: [u8; 32],
    /// The 64-byte Noise handshake hash.
    pub hash: [u8; 64],
    /// Own static public key.
    pub public_key: [u8; 32],
    /// The peer's static public key.
    pub remote_public_key: [u8; 32],
}

impl core::fmt::Debug for HandshakeKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HandshakeKeys")
            .field("public_key", &self.public_key)
            .field("remote_public_key", &self.remote_public_key)
            .finish_non_exhaustive()
    }
}

impl Drop for HandshakeKeys {
    fn drop(&mut self) {
        self.tx.zeroize();
        self.rx.zeroize();
    }
}

impl From<&crate::connect::HandshakeResult> for HandshakeKeys {
    fn from(h: &crate::connect::HandshakeResult) -> Self {
        HandshakeKeys {
            tx: h.tx,
            rx: h.rx,
            hash: h.hash,
            public_key: h.public_key,
            remote_public_key: h.remote_public_key,
        }
    }
}

impl SecretStream {
    /// [`SecretStream::new`] from the connect layer's handshake result (role included).
    pub fn from_handshake<R: rand_core::RngCore + rand_core::CryptoRng>(
        handshake: &crate::connect::HandshakeResult,
        config: &Config,
        now: crate::Instant,
        rng: &mut R,
    ) -> Self {
        SecretStream::new(
            handshake.is_initiator,
            &HandshakeKeys::from(handshake),
            config,
            now,
            rng,
        )
    }
}

/// Options of a [`SecretStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Write an empty frame after this long without a write (`keepAlive`). hyperdht: 5 s
    /// (the default). `None` or zero: no keep-alive.
    pub keep_alive: Option<Duration>,
    /// Destroy the stream after this long without transport data (`setTimeout`). hyperdht does
    /// not set one (the default `None`).
    pub timeout: Option<Duration>,
    /// Largest frame accepted from the peer (clamped to `56..=MAX_FRAME_LEN`); larger ones are
    /// fatal. Default [`MAX_FRAME_LEN`], since a Node peer writes each `write()` as one frame of
    /// up to 16 MiB; a smaller limit bounds memory but may reject a legitimate Node peer.
    pub max_frame_len: usize,
    /// Drop empty messages instead of delivering them (`filterZeroByteMessages`). Always on
    /// while a keep-alive is configured, as in the reference.
    pub filter_empty_messages: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            timeout: None,
            max_frame_len: MAX_FRAME_LEN,
            filter_empty_messages: false,
        }
    }
}
