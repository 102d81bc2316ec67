//! Ed25519 key pairs, equal to the reference's `DHT.keyPair(seed)` (libsodium
//! `crypto_sign_seed_keypair`).

use ed25519_dalek::SigningKey;
use rand_core::{CryptoRng, RngCore};

/// An Ed25519 key pair.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// The key pair derived from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        KeyPair {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// A fresh key pair from the given RNG (any `rand_core` 0.6 `CryptoRng`; an application
    /// that just wants a new key pair calls `KeyPair::random()` from the runtime crate's
    /// `RandomKeyPair` trait and needs no RNG crate — the core itself has no OS randomness).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(&seed)
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The 32-byte seed.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The secret key in libsodium's 64-byte form: seed ‖ public key.
    pub fn secret_key(&self) -> [u8; 64] {
        self.signing.to_keypair_bytes()
    }

    /// Signs `message` (detached Ed25519 signature).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.signing.sign(message).to_bytes()
    }
}

/// Verifies a detached Ed25519 signature as libsodium's `crypto_sign_verify_detached` does:
/// dalek's `verify_strict` rejects non-canonical `S`, small-order `R` and keys, and a
/// non-canonical `R`; libsodium also rejects a key written in a non-canonical form (y ≥ p),
/// which the re-encoding comparison adds.
pub fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    if key.to_edwards().compress().to_bytes() != *public_key {
        return false;
    }
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(message, &sig).is_ok()
}
