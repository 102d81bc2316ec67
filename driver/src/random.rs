//! Key pairs from the operating system's randomness. This lives in the driver, not the core:
//! the core never touches OS randomness (its RNG is injected, so a seeded run replays byte for
//! byte, and it builds for targets without an OS).

use hdht_core::crypto::KeyPair;

/// `KeyPair::random()`: a fresh key pair from the OS's randomness (the reference's
/// `DHT.keyPair()` without a seed), whatever `rand` version the application uses. In scope
/// with `use hdht_tokio::RandomKeyPair` (or `hdht_smol::…`).
pub trait RandomKeyPair {
    /// A fresh key pair from the operating system's randomness.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide randomness (as `rand`'s `OsRng` does).
    fn random() -> Self;
}

impl RandomKeyPair for KeyPair {
    fn random() -> Self {
        KeyPair::generate(&mut rand_core::OsRng)
    }
}
