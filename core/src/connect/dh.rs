//! The Ed25519 "DH" of noise-curve-ed 2.1 (spec 03 §1.3).
//!
//! Public keys are plain Ed25519 public keys (compressed Edwards points); there is no conversion
//! to X25519 anywhere. The secret scalar is the Ed25519 signing scalar,
//! `clamp(SHA-512(seed)[0..32])`, and `DH(a, P)` is the compressed encoding of `a · P`, computed
//! like libsodium's `crypto_scalarmult_ed25519_noclamp` — including its rejection rules: `P` must
//! be a canonical encoding, decode to a curve point, not be of small order and lie in the
//! prime-order subgroup, and the result must not be the identity.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use sha2::{Digest, Sha512};
use thiserror::Error;
use zeroize::Zeroize;

/// Length of a public key, of a secret scalar and of a DH output.
pub const DH_LEN: usize = 32;

/// Why a Diffie-Hellman computation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DhError {
    /// The remote public key is not a canonical encoding, not a curve point, of small order or
    /// outside the prime-order subgroup (libsodium's checks).
    #[error("invalid remote public key")]
    InvalidPublicKey,
    /// The product is the identity point.
    #[error("DH result is the identity point")]
    IdentityResult,
}

/// The clamped Ed25519 secret scalar of a 32-byte seed: `clamp(SHA-512(seed)[0..32])`
/// (`s[0] &= 248; s[31] &= 127; s[31] |= 64`). Not reduced modulo ℓ.
pub fn secret_scalar(seed: &[u8; 32]) -> [u8; 32] {
    let mut digest = Sha512::digest(seed);
    let mut s = [0u8; 32];
    s.copy_from_slice(&digest[..32]);
    digest.as_mut_slice().zeroize();
    s[0] &= 248;
    s[31] &= 127;
    s[31] |= 64;
    s
}

/// The Ed25519 public key of a 32-byte seed (equal to libsodium `crypto_sign_seed_keypair`).
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    let mut scalar = secret_scalar(seed);
    let pk = public_key_from_scalar(&scalar);
    scalar.zeroize();
    pk
}

/// The public key of a clamped scalar: `scalar · B`, compressed.
pub fn public_key_from_scalar(scalar: &[u8; 32]) -> [u8; 32] {
    EdwardsPoint::mul_base_clamped(*scalar)
        .compress()
        .to_bytes()
}

/// Decodes a remote public key with libsodium's acceptance rules for
/// `crypto_scalarmult_ed25519`: canonical, on the curve, not small order, torsion-free.
pub fn decode_public_key(public_key: &[u8; 32]) -> Result<EdwardsPoint, DhError> {
    // dalek's decompression accepts two non-canonical encodings that libsodium refuses: y ≥ p
    // (reduced mod p) and a set sign bit on x = 0. The first is refused here by the encoding's
    // bytes (libsodium's `ge25519_is_canonical`); the second can only name x = 0, i.e. y = ±1,
    // the identity and the point of order 2, which the small-order check below refuses. (This
    // replaced re-encoding the point and comparing, a field inversion per key.)
    if !is_canonical_y(public_key) {
        return Err(DhError::InvalidPublicKey);
    }
    let point = CompressedEdwardsY(*public_key)
        .decompress()
        .ok_or(DhError::InvalidPublicKey)?;
    if point.is_small_order() || !in_prime_order_subgroup(&point) {
        return Err(DhError::InvalidPublicKey);
    }
    Ok(point)
}

/// Whether the y coordinate of encoding `s` (its low 255 bits, little-endian) is below
/// p = 2^255 − 19: false exactly for 2^255 − 19 ≤ y ≤ 2^255 − 1, i.e. byte 0 ≥ 0xed, bytes
/// 1..=30 all 0xff and byte 31 0x7f or 0xff. (Public data: no constant time needed.)
fn is_canonical_y(s: &[u8; 32]) -> bool {
    !(s[31] & 0x7f == 0x7f && s[1..31].iter().all(|&b| b == 0xff) && s[0] >= 0xed)
}

/// Whether `p` lies in the prime-order subgroup, `ℓ·P = 0` — what dalek's `is_torsion_free`
/// decides — checked as `(ℓ − 1)·P = −P` with dalek's variable-time multiplication: `P` is a
/// peer's public key (public data, so variable time leaks nothing), and this costs about half
/// the constant-time multiplication by `ℓ` (which was a quarter of a server's handshake CPU).
fn in_prime_order_subgroup(p: &EdwardsPoint) -> bool {
    // `-1 mod ℓ` is the integer `ℓ − 1`; the multiplication is by that integer on the whole
    // curve group (order 8ℓ), so `(ℓ − 1)·P + P = ℓ·P` for every point, torsion included.
    EdwardsPoint::vartime_double_scalar_mul_basepoint(&-Scalar::ONE, p, &Scalar::ZERO) == -p
}

/// `DH(scalar, P)`: the compressed encoding of `scalar · P` for a clamped scalar (as returned by
/// [`secret_scalar`]). Fails as libsodium does for bad points and an identity result.
pub fn dh_scalar(scalar: &[u8; 32], remote_public_key: &[u8; 32]) -> Result<[u8; 32], DhError> {
    dh_point(scalar, &decode_public_key(remote_public_key)?)
}

/// `DH(scalar, P)` for a point `P` already decoded (by [`decode_public_key`], or decompressed
/// from a key it accepted): only the identity result is refused.
pub fn dh_point(scalar: &[u8; 32], point: &EdwardsPoint) -> Result<[u8; 32], DhError> {
    // `mul_clamped` re-applies the (idempotent) clamp and multiplies by the unreduced scalar,
    // exactly what libsodium's `_noclamp` variant does with an already clamped scalar.
    let product = point.mul_clamped(*scalar);
    if product.is_identity() {
        return Err(DhError::IdentityResult);
    }
    Ok(product.compress().to_bytes())
}

/// [`dh_scalar`] for a remote key already validated by [`decode_public_key`] in this
/// handshake: the point is only decompressed (a key that does not decompress still fails), and
/// the identity result is still refused. The canonical-encoding, small-order and subgroup
/// checks (the subgroup check alone is a point multiplication) are not repeated.
pub fn dh_scalar_validated(
    scalar: &[u8; 32],
    remote_public_key: &[u8; 32],
) -> Result<[u8; 32], DhError> {
    let point = CompressedEdwardsY(*remote_public_key)
        .decompress()
        .ok_or(DhError::InvalidPublicKey)?;
    dh_point(scalar, &point)
}

/// `DH(seed, P)`: [`dh_scalar`] with the scalar derived from a 32-byte Ed25519 seed (the first
/// half of a libsodium 64-byte secret key).
pub fn dh(seed: &[u8; 32], remote_public_key: &[u8; 32]) -> Result<[u8; 32], DhError> {
    let mut scalar = secret_scalar(seed);
    let out = dh_scalar(&scalar, remote_public_key);
    scalar.zeroize();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};

    /// The variable-time subgroup check decides exactly what dalek's `is_torsion_free` does:
    /// every point `k·B + T` for the 8 torsion points `T` (only `T = 0` is in the subgroup).
    #[test]
    fn the_subgroup_check_agrees_with_is_torsion_free() {
        let mut k = Scalar::from(7u64);
        for i in 0..64u64 {
            k = k * Scalar::from(0x9e37_79b9_7f4a_7c15u64) + Scalar::from(i);
            let p = ED25519_BASEPOINT_POINT * k;
            for (j, t) in EIGHT_TORSION.iter().enumerate() {
                let q = p + t;
                assert_eq!(
                    in_prime_order_subgroup(&q),
                    q.is_torsion_free(),
                    "k #{i}, T #{j}"
                );
                assert_eq!(in_prime_order_subgroup(&q), j == 0);
            }
        }
        for t in EIGHT_TORSION.iter() {
            assert_eq!(in_prime_order_subgroup(t), t.is_torsion_free());
        }
    }

    /// For a valid key the unchecked DH gives the checked one's bytes; it still refuses a key
    /// that does not decompress and an identity product.
    #[test]
    fn the_validated_dh_matches_the_checked_one() {
        let scalar = secret_scalar(&[7u8; 32]);
        for i in 1..16u8 {
            let pk = public_key(&[i; 32]);
            assert_eq!(dh_scalar_validated(&scalar, &pk), dh_scalar(&scalar, &pk));
        }
        // y = 2 is not on the curve.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert_eq!(
            dh_scalar_validated(&scalar, &not_a_point),
            Err(DhError::InvalidPublicKey)
        );
        // The identity (y = 1): the product is the identity.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            dh_scalar_validated(&scalar, &identity),
            Err(DhError::IdentityResult)
        );
    }

    /// The re-encoding rule the byte-range check replaced: decompress, re-encode, compare,
    /// then the small-order and subgroup checks.
    fn decode_by_reencoding(public_key: &[u8; 32]) -> Option<EdwardsPoint> {
        let compressed = CompressedEdwardsY(*public_key);
        let point = compressed.decompress()?;
        (point.compress() == compressed && !point.is_small_order() && point.is_torsion_free())
            .then_some(point)
    }

    /// The byte-range canonicity check accepts and refuses exactly what re-encoding did: every
    /// y from p − 8 to 2^255 − 1 and from 0 to 8, both sign bits (x = 0 with the sign set
    /// among them), the torsion points, and valid keys with either sign bit.
    #[test]
    fn the_byte_range_canonical_check_agrees_with_reencoding() {
        let mut encodings = Vec::new();
        for low in 0u8..=0xff {
            // y = 2^255 − 256 + low, which covers p − 8 … 2^255 − 1 (p = 2^255 − 19).
            let mut e = [0xffu8; 32];
            e[0] = low;
            e[31] = 0x7f;
            encodings.push(e);
            let mut small = [0u8; 32];
            small[0] = low;
            encodings.push(small);
        }
        for t in EIGHT_TORSION.iter() {
            encodings.push(t.compress().to_bytes());
        }
        for i in 1..32u8 {
            encodings.push(public_key(&[i; 32]));
        }
        for e in encodings.clone() {
            let mut flipped = e;
            flipped[31] ^= 0x80;
            encodings.push(flipped);
        }
        let mut accepted = 0;
        for e in &encodings {
            let want = decode_by_reencoding(e);
            let got = decode_public_key(e).ok();
            assert_eq!(got.is_some(), want.is_some(), "{e:02x?}");
            if let (Some(a), Some(b)) = (got, want) {
                assert_eq!(a, b);
                accepted += 1;
            }
        }
        // At least the valid keys and their negations (the sign bit flipped).
        assert!(accepted >= 62, "{accepted}");
    }
}
