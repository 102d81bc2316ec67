//! What a secret stream is created from: the handshake's keys and its options.

use core::time::Duration;

use zeroize::Zeroize;

use super::frame::{DEFAULT_KEEP_ALIVE, MAX_FRAME_LEN};

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

/// Options of a [`SecretStream`](super::SecretStream).
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
