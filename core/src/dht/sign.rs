//! Namespaces, signables and signatures of hyperdht records (hyperdht 6.34 `lib/persistent.js`,
//! hypercore-crypto `namespace`).
//!
//! Every signable is 64 bytes, `NS ‖ H(…)`, and the Ed25519 signature is over the signable itself.
//! Signables are always built from the canonical encoding of decoded values.

use alloc::vec::Vec;

use crate::crypto::{hash, hash_batch, KeyPair};
use crate::wire::Writer;

use super::messages::{command, Peer};

/// `H(utf8("hyperswarm/dht"))`, the base of every hyperdht namespace.
pub const NS_BASE: [u8; 32] =
    hex32(b"d70d90f7efc42f93e1ad5837e682a6010cf551013c2d2d043f40d8fbe07dcb90");
/// Namespace of ANNOUNCE signatures (`namespace(4)`).
pub const NS_ANNOUNCE: [u8; 32] =
    hex32(b"36386adddf9f6fd60db83a6f42fc159d1146aa8644037664230aaa1f0179d497");
/// Namespace of UNANNOUNCE signatures (`namespace(5)`).
pub const NS_UNANNOUNCE: [u8; 32] =
    hex32(b"ded293cd93fb395e756ecf5fff426529e72c36eacc22e5ed944d9099a2561e32");
/// Namespace of MUTABLE_PUT signatures (`namespace(6)`).
pub const NS_MUTABLE_PUT: [u8; 32] =
    hex32(b"668e823edd5ce7f5338d68bf1161f4a3c28ce437ee2ab49efd30d99366039b1e");
/// Namespace used by the PEER_HANDSHAKE flow (`namespace(0)`).
pub const NS_PEER_HANDSHAKE: [u8; 32] =
    hex32(b"14d6d4b49214ab1033ed204976caa258bae9e1e8543b9ad1fd996a910b0c4e3a");
/// Namespace used by the PEER_HOLEPUNCH flow (`namespace(1)`).
pub const NS_PEER_HOLEPUNCH: [u8; 32] =
    hex32(b"f1191cd5e67b10b54a507033280ed1ff0e12278268d5679c8f93d417210d168b");
/// Namespace of plugin requests (`namespace(10)`).
pub const NS_PLUGIN: [u8; 32] =
    hex32(b"6b8a2a8623f28c6c02a1e22abe515ce31cafd9af61d4b69970639aa7eb96a8d5");

const fn hex_nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("bad hex digit"),
    }
}

const fn hex32(s: &[u8; 64]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (hex_nibble(s[2 * i]) << 4) | hex_nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// Computes namespace `id`: `H(H(utf8("hyperswarm/dht")) ‖ byte(id))` (33-byte preimage).
/// The hyperdht namespaces use the command number as `id`.
pub fn namespace(id: u8) -> [u8; 32] {
    let base = hash(b"hyperswarm/dht");
    hash_batch(&[&base, &[id]])
}

// Keep the hard-coded table tied to the command numbers it is derived from.
const _: () = {
    assert!(command::ANNOUNCE == 4 && command::UNANNOUNCE == 5 && command::MUTABLE_PUT == 6);
    assert!(command::PEER_HANDSHAKE == 0 && command::PEER_HOLEPUNCH == 1 && command::PLUGIN == 10);
};

/// The 64-byte announce / unannounce signable:
/// `namespace ‖ H(target ‖ node_id ‖ token ‖ enc_peer ‖ refresh?)`.
///
/// `node_id` is the storing node's id, `token` the token that node issued to the requester,
/// `enc_peer` the canonical `peer` encoding with **all** relay addresses as sent. The flags and
/// the bump are not covered.
pub fn announce_signable(
    namespace: &[u8; 32],
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer: &Peer,
    refresh: Option<&[u8; 32]>,
) -> [u8; 64] {
    let enc_peer = peer.to_bytes();
    let refresh: &[u8] = match refresh {
        Some(r) => r,
        None => &[],
    };
    let h = hash_batch(&[target, node_id, token, &enc_peer, refresh]);
    concat64(namespace, &h)
}

fn concat64(a: &[u8; 32], b: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(a);
    out[32..].copy_from_slice(b);
    out
}

/// Signs an ANNOUNCE for one storing node (see [`announce_signable`]).
pub fn sign_announce(
    key_pair: &KeyPair,
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer: &Peer,
    refresh: Option<&[u8; 32]>,
) -> [u8; 64] {
    key_pair.sign(&announce_signable(
        &NS_ANNOUNCE,
        target,
        node_id,
        token,
        peer,
        refresh,
    ))
}

/// Signs an UNANNOUNCE for one storing node (see [`announce_signable`]).
pub fn sign_unannounce(
    key_pair: &KeyPair,
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer: &Peer,
    refresh: Option<&[u8; 32]>,
) -> [u8; 64] {
    key_pair.sign(&announce_signable(
        &NS_UNANNOUNCE,
        target,
        node_id,
        token,
        peer,
        refresh,
    ))
}

/// Verifies an ANNOUNCE signature against `peer.public_key`, as the storing node does.
pub fn verify_announce(
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer: &Peer,
    refresh: Option<&[u8; 32]>,
    signature: &[u8; 64],
) -> bool {
    let signable = announce_signable(&NS_ANNOUNCE, target, node_id, token, peer, refresh);
    verify_detached(&peer.public_key, &signable, signature)
}

/// Verifies an UNANNOUNCE signature against `peer.public_key`, as the storing node does.
pub fn verify_unannounce(
    target: &[u8; 32],
    node_id: &[u8; 32],
    token: &[u8; 32],
    peer: &Peer,
    refresh: Option<&[u8; 32]>,
    signature: &[u8; 64],
) -> bool {
    let signable = announce_signable(&NS_UNANNOUNCE, target, node_id, token, peer, refresh);
    verify_detached(&peer.public_key, &signable, signature)
}

/// The 64-byte mutable signable: `NS_MUTABLE_PUT ‖ H(uint seq ‖ buffer value)`.
pub fn mutable_signable(seq: u64, value: &[u8]) -> [u8; 64] {
    let mut enc = Vec::with_capacity(18 + value.len());
    let mut w = Writer::new(&mut enc);
    w.uint(seq);
    w.buffer(value);
    concat64(&NS_MUTABLE_PUT, &hash(&enc))
}

/// Signs a mutable record (independent of any node or token).
pub fn sign_mutable(key_pair: &KeyPair, seq: u64, value: &[u8]) -> [u8; 64] {
    key_pair.sign(&mutable_signable(seq, value))
}

/// Verifies a mutable record's signature.
pub fn verify_mutable(public_key: &[u8; 32], seq: u64, value: &[u8], signature: &[u8; 64]) -> bool {
    verify_detached(public_key, &mutable_signable(seq, value), signature)
}

/// The target of a public key: `H(public_key)` (FIND_PEER, mutable records, server announces).
pub fn target_of_key(public_key: &[u8; 32]) -> [u8; 32] {
    hash(public_key)
}

/// The target of an immutable value: `H(value)`.
pub fn target_of_value(value: &[u8]) -> [u8; 32] {
    hash(value)
}

/// Detached Ed25519 verification with libsodium `crypto_sign_verify_detached` semantics.
///
/// ed25519-dalek's `verify_strict` already rejects a non-canonical `S` (≥ ℓ), a small-order `R`,
/// a small-order public key and a non-canonical `R` (the recomputed `R` is compared as canonical
/// bytes). It *accepts* a non-canonical public-key encoding (y ≥ p), which libsodium's
/// `ge25519_is_canonical` rejects, so that is checked here by re-compressing the decoded point.
/// Both are cofactorless and accept mixed-order (torsion-carrying) keys alike.
pub fn verify_detached(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    crate::crypto::verify(public_key, message, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_match_their_derivation() {
        assert_eq!(hash(b"hyperswarm/dht"), NS_BASE);
        assert_eq!(namespace(4), NS_ANNOUNCE);
        assert_eq!(namespace(5), NS_UNANNOUNCE);
        assert_eq!(namespace(6), NS_MUTABLE_PUT);
        assert_eq!(namespace(0), NS_PEER_HANDSHAKE);
        assert_eq!(namespace(1), NS_PEER_HOLEPUNCH);
        assert_eq!(namespace(10), NS_PLUGIN);
    }
}
