//! Values derived from the Noise handshake result (spec 04 §5.2, `secret-stream:index.js`).
//!
//! * `NS_i = BLAKE2b-256(BLAKE2b-256("hyperswarm/secret-stream") || byte(i))`
//!   (`hypercore-crypto` `namespace('hyperswarm/secret-stream', 3)`): 0 initiator, 1 responder,
//!   2 send.
//! * stream id of a role = `BLAKE2b-256(NS_<role>, key = handshake hash)`.
//! * unordered-message send key of a role = `BLAKE2b-256(NS_<role> || NS_SEND, key = hash)`;
//!   the receive key is the peer role's send key.

use blake2::digest::consts::U32;
use blake2::digest::{Digest, KeyInit, Mac};
use blake2::{Blake2b, Blake2bMac};

/// `NS_INITIATOR` (`a931a015…2bf7`).
pub const NS_INITIATOR: [u8; 32] = [
    0xa9, 0x31, 0xa0, 0x15, 0x5b, 0x5c, 0x09, 0xe6, 0xd2, 0x86, 0x28, 0x23, 0x6a, 0xf8, 0x3c, 0x4b,
    0x8a, 0x6a, 0xf9, 0xaf, 0x60, 0x98, 0x6e, 0xde, 0xed, 0xe9, 0xdc, 0x5d, 0x63, 0x19, 0x2b, 0xf7,
];

/// `NS_RESPONDER` (`742c9d83…1061`).
pub const NS_RESPONDER: [u8; 32] = [
    0x74, 0x2c, 0x9d, 0x83, 0x3d, 0x43, 0x0a, 0xf4, 0xc4, 0x8a, 0x87, 0x05, 0xe9, 0x16, 0x31, 0xee,
    0xcf, 0x29, 0x54, 0x42, 0xbb, 0xca, 0x18, 0x99, 0x6e, 0x59, 0x70, 0x97, 0x72, 0x3b, 0x10, 0x61,
];

/// `NS_SEND` (`aab97d09…dcbf`).
pub const NS_SEND: [u8; 32] = [
    0xaa, 0xb9, 0x7d, 0x09, 0x74, 0x71, 0xf5, 0x66, 0x51, 0xb0, 0x46, 0x0f, 0xfc, 0x8a, 0xaa, 0x7d,
    0x33, 0x42, 0xf7, 0x37, 0x75, 0x97, 0xd6, 0x0b, 0x92, 0x5a, 0x1d, 0xac, 0x68, 0x9a, 0xdc, 0xbf,
];

/// Recomputes namespace `i` from its definition (the constants above are these values; the
/// vector tests check both).
pub fn namespace(i: u8) -> [u8; 32] {
    let h: [u8; 32] = Blake2b::<U32>::digest(b"hyperswarm/secret-stream").into();
    let mut d = Blake2b::<U32>::new();
    d.update(h);
    d.update([i]);
    d.finalize().into()
}

/// BLAKE2b-256 of the concatenation of `parts`, keyed with the 64-byte handshake hash
/// (libsodium `crypto_generichash_batch(out, parts, key)`).
fn keyed_hash64(key: &[u8; 64], parts: &[&[u8]]) -> [u8; 32] {
    // 64 bytes is BLAKE2b's maximum key length: this cannot fail.
    let mut mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("64-byte keys are valid for BLAKE2b"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The secret-stream id of the initiator (`is_initiator = true`) or the responder.
///
/// A side writes its own id in its header frame and checks the peer's id,
/// `stream_id(hash, !is_initiator)`, in the header frame it receives.
pub fn stream_id(handshake_hash: &[u8; 64], is_initiator: bool) -> [u8; 32] {
    let ns = if is_initiator {
        &NS_INITIATOR
    } else {
        &NS_RESPONDER
    };
    keyed_hash64(handshake_hash, &[ns])
}

/// The key with which the initiator (`is_initiator = true`) or the responder seals its
/// unordered messages; the peer opens them with the same key.
pub fn unordered_send_key(handshake_hash: &[u8; 64], is_initiator: bool) -> [u8; 32] {
    let ns = if is_initiator {
        &NS_INITIATOR
    } else {
        &NS_RESPONDER
    };
    keyed_hash64(handshake_hash, &[ns, &NS_SEND])
}
