//! The wire framing: sizes of secret-stream frames and how a byte run splits into them.

use core::time::Duration;

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
/// Largest plaintext of one [`SecretStream::write`](super::SecretStream::write) (16 777 198 bytes).
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

/// Splits bytes a [`SecretStream`](super::SecretStream) wrote into its frames, prefixes
/// included (a truncated last frame comes out as it is).
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
