//! SecurePayload: encryption of the holepunch payload and address tokens (hyperdht
//! `lib/secure-payload.js`, spec 03 §4.2).
//!
//! Key: the handshake's `holepunch_secret` (`BLAKE2b-256(NS_PEER_HOLEPUNCH, key = hash)`).
//! Box: `nonce(24, random) ‖ crypto_secretbox_easy(plaintext)` = nonce ‖ Poly1305 tag(16) ‖
//! XSalsa20 ciphertext; 40 bytes plus the plaintext. Nonces and the per-handshake local token
//! secret come from the caller's RNG.

use alloc::string::ToString;
use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddrV4;

use crypto_secretbox::aead::generic_array::GenericArray;
use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;
use zeroize::Zeroize;

use super::holepunch::HolepunchPayload;
use crate::crypto::keyed_hash;
use crate::wire::DecodeError;

/// Nonce length.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a box adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Why a box was rejected (the reference returns `null` for all three; a server then drops the
/// message, a client fails with `HOLEPUNCH_INVALID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SecurePayloadError {
    /// 40 bytes or fewer: no room for a non-empty plaintext.
    #[error("secure payload too short")]
    TooShort,
    /// The tag did not verify (tampered, or another handshake's key).
    #[error("secure payload failed to authenticate")]
    Authentication,
    /// The plaintext is not a holepunch payload.
    #[error("holepunch payload: {0}")]
    Decode(DecodeError),
}

/// Per-handshake holepunch encryption state: the shared key and this side's local token secret.
#[derive(Clone)]
pub struct SecurePayload {
    shared_secret: [u8; 32],
    local_secret: [u8; 32],
}

impl fmt::Debug for SecurePayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurePayload").finish_non_exhaustive()
    }
}

impl Drop for SecurePayload {
    fn drop(&mut self) {
        self.shared_secret.zeroize();
        self.local_secret.zeroize();
    }
}

impl SecurePayload {
    /// Keyed with `holepunch_secret`; the 32-byte local token secret is drawn from `rng`.
    pub fn new<R: RngCore + CryptoRng>(holepunch_secret: [u8; 32], rng: &mut R) -> Self {
        let mut local_secret = [0u8; 32];
        rng.fill_bytes(&mut local_secret);
        Self::with_local_secret(holepunch_secret, local_secret)
    }

    /// Keyed with `holepunch_secret`, with a given local token secret.
    pub fn with_local_secret(holepunch_secret: [u8; 32], local_secret: [u8; 32]) -> Self {
        SecurePayload {
            shared_secret: holepunch_secret,
            local_secret,
        }
    }

    /// Encrypts `payload` under a fresh random nonce from `rng`.
    pub fn encrypt<R: RngCore + CryptoRng>(
        &self,
        payload: &HolepunchPayload,
        rng: &mut R,
    ) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        self.encrypt_with_nonce(payload, &nonce)
    }

    /// Encrypts `payload` under `nonce` (never reuse a nonce with the same key).
    pub fn encrypt_with_nonce(
        &self,
        payload: &HolepunchPayload,
        nonce: &[u8; NONCE_LEN],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(OVERHEAD + 80);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&[0u8; TAG_LEN]);
        payload.encode(&mut out);
        let cipher = XSalsa20Poly1305::new(GenericArray::from_slice(&self.shared_secret));
        let (head, body) = out.split_at_mut(OVERHEAD);
        // XSalsa20-Poly1305 without associated data only fails past its 2^70-byte keystream.
        let tag = cipher
            .encrypt_in_place_detached(GenericArray::from_slice(nonce), &[], body)
            .unwrap_or_else(|_| unreachable!("secretbox encryption of a short message"));
        head[NONCE_LEN..].copy_from_slice(&tag);
        out
    }

    /// Opens a box and decodes the holepunch payload inside (trailing plaintext bytes ignored).
    pub fn decrypt(&self, sealed: &[u8]) -> Result<HolepunchPayload, SecurePayloadError> {
        if sealed.len() <= OVERHEAD {
            return Err(SecurePayloadError::TooShort);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (tag, ciphertext) = rest.split_at(TAG_LEN);
        let mut plain = ciphertext.to_vec();
        let cipher = XSalsa20Poly1305::new(GenericArray::from_slice(&self.shared_secret));
        cipher
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                &[],
                &mut plain,
                GenericArray::from_slice(tag),
            )
            .map_err(|_| SecurePayloadError::Authentication)?;
        let decoded = HolepunchPayload::decode(&plain).map_err(SecurePayloadError::Decode);
        plain.zeroize();
        decoded
    }

    /// `token(addr) = BLAKE2b-256(utf8(host), key = local secret)`: the host only, the port is
    /// not included.
    pub fn token(&self, addr: &SocketAddrV4) -> [u8; 32] {
        self.token_for_host(&addr.ip().to_string())
    }

    /// [`token`](Self::token) for a host string as the reference would print it.
    pub fn token_for_host(&self, host: &str) -> [u8; 32] {
        keyed_hash(&self.local_secret, host.as_bytes())
    }
}
