//! BLAKE2b-256, libsodium's `crypto_generichash` with a 32-byte output.

use blake2::digest::consts::U32;
use blake2::digest::{Digest, KeyInit, Mac};
use blake2::{Blake2b, Blake2bMac};

/// `H(data)`: unkeyed BLAKE2b with a 32-byte output.
pub fn hash(data: &[u8]) -> [u8; 32] {
    Blake2b::<U32>::digest(data).into()
}

/// `H(a || b || …)`: the hash of the concatenation of `parts` (libsodium `crypto_generichash_batch`).
pub fn hash_batch(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `H_key(data)`: BLAKE2b keyed with a 32-byte key, 32-byte output.
pub fn keyed_hash(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    // A 32-byte key is always a valid BLAKE2b key length (1..=64), so this cannot fail.
    let mut mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("32-byte keys are valid for BLAKE2b"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}
