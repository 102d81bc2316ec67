//! Noise IK over Ed25519, as hyperdht's `lib/noise-wrap.js` runs it (spec 03 §1).
//!
//! `Noise_IK_Ed25519_ChaChaPoly_BLAKE2b` with the prologue `NS_PEER_HANDSHAKE`. The state machine,
//! BLAKE2b and ChaCha20-Poly1305 are the `snow` crate's; a custom resolver supplies the Ed25519 DH
//! of noise-curve-ed ([`super::dh`]) and an RNG that hands out exactly one pre-drawn ephemeral
//! seed, so the ephemeral key comes from the caller's injected RNG (or is fixed, for vectors) and
//! a handshake replays byte for byte.
//!
//! The initiator is always the connecting client, the responder the server. Two messages:
//! msg1 = `e.pub(32) ‖ AEAD(s.pub)(48) ‖ AEAD(payload1)`, msg2 = `e.pub(32) ‖ AEAD(payload2)`.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2bMac;
use curve25519_dalek::edwards::EdwardsPoint;
use once_cell::race::OnceBox;
use rand_core::{CryptoRng, RngCore};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::HandshakeState;
use thiserror::Error;
use zeroize::Zeroize;

use super::dh;
use super::payload::NoisePayload;
use crate::crypto::{hash, hash_batch, KeyPair};
use crate::dht::sign::{NS_PEER_HANDSHAKE, NS_PEER_HOLEPUNCH};
use crate::wire::DecodeError;

/// The protocol name hashed into the initial state (35 ASCII bytes).
pub const PROTOCOL_NAME: &str = "Noise_IK_Ed25519_ChaChaPoly_BLAKE2b";

/// The prologue: `NS_PEER_HANDSHAKE = ns("hyperswarm/dht", 0)`.
pub const PROLOGUE: [u8; 32] = NS_PEER_HANDSHAKE;

/// The largest Noise message either side accepts or produces.
pub const MAX_MESSAGE_LEN: usize = 65535;

/// Bytes msg1 adds to its payload: `e` (32), encrypted `s` (32 + 16), payload tag (16).
pub const MSG1_OVERHEAD: usize = 96;

/// Bytes msg2 adds to its payload: `e` (32), payload tag (16).
pub const MSG2_OVERHEAD: usize = 48;

/// Length of the handshake hash (BLAKE2b-512).
pub const HASH_LEN: usize = 64;

/// Which side of the handshake this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The connecting client: writes msg1, reads msg2.
    Initiator,
    /// The server: reads msg1, writes msg2.
    Responder,
}

/// Why a handshake step failed. Every failure ends the handshake (as in the reference, whose
/// handshake object is unusable after a failed `recv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NoiseError {
    /// A public key (the remote static key given to the initiator, or an `e`/`s` key in a
    /// message) is not a valid Ed25519 point under libsodium's rules, or a DH gave the identity.
    #[error("invalid public key in handshake")]
    InvalidPublicKey,
    /// An AEAD tag did not verify: the message was tampered with, truncated inside a ciphertext,
    /// or encrypted for another key ("could not verify data" in the reference).
    #[error("handshake message failed to decrypt")]
    Decrypt,
    /// The message is too short for its tokens or longer than 65535 bytes.
    #[error("malformed handshake message")]
    Malformed,
    /// The message to write would exceed 65535 bytes.
    #[error("handshake message would exceed 65535 bytes")]
    TooLarge,
    /// A message was read or written out of turn, after completion or after an earlier failure.
    #[error("handshake step out of order")]
    State,
    /// `finish` was called before both messages were processed.
    #[error("handshake did not finish")]
    Unfinished,
    /// The decrypted payload is not a NoisePayload.
    #[error("invalid noise payload: {0}")]
    Payload(DecodeError),
    /// The Noise state could not be set up (does not happen with this resolver).
    #[error("noise setup failed")]
    Setup,
}

fn map_snow(err: snow::Error, writing: bool) -> NoiseError {
    match err {
        snow::Error::Dh => NoiseError::InvalidPublicKey,
        snow::Error::Decrypt => NoiseError::Decrypt,
        snow::Error::Input if writing => NoiseError::TooLarge,
        snow::Error::Input => NoiseError::Malformed,
        snow::Error::State(_) | snow::Error::Rng => NoiseError::State,
        _ => NoiseError::Setup,
    }
}

/// What a completed handshake hands to the holepunch and stream layers (`NoiseWrap.final()`).
#[derive(Clone, PartialEq, Eq)]
pub struct HandshakeResult {
    /// True on the client.
    pub is_initiator: bool,
    /// Own static public key.
    pub public_key: [u8; 32],
    /// The peer's static public key (on the server: learned from msg1).
    pub remote_public_key: [u8; 32],
    /// The 64-byte handshake hash.
    pub hash: [u8; 64],
    /// Key for data this side sends (initiator `k1`, responder `k2` of Split).
    pub tx: [u8; 32],
    /// Key for data this side receives.
    pub rx: [u8; 32],
    /// `BLAKE2b-256(NS_PEER_HOLEPUNCH, key = hash)`: the SecurePayload key.
    pub holepunch_secret: [u8; 32],
}

impl fmt::Debug for HandshakeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeResult")
            .field("is_initiator", &self.is_initiator)
            .field("public_key", &self.public_key)
            .field("remote_public_key", &self.remote_public_key)
            .finish_non_exhaustive()
    }
}

impl HandshakeResult {
    /// This side's secret-stream id: `BLAKE2b-256(NS_INITIATOR or NS_RESPONDER, key = hash)`.
    pub fn stream_id(&self) -> [u8; 32] {
        secret_stream_id(&self.hash, self.is_initiator)
    }

    /// The peer's secret-stream id (`remoteId` in the reference).
    pub fn remote_id(&self) -> [u8; 32] {
        secret_stream_id(&self.hash, !self.is_initiator)
    }
}

/// BLAKE2b-256 of `data` keyed with a 64-byte handshake hash (libsodium `crypto_generichash`).
fn keyed_hash64(key: &[u8; 64], data: &[u8]) -> [u8; 32] {
    // 64 bytes is BLAKE2b's maximum key length, so this cannot fail.
    let mut mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("64-byte keys are valid for BLAKE2b"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `holepunchSecret = BLAKE2b-256(NS_PEER_HOLEPUNCH, key = handshake hash)`.
pub fn holepunch_secret(handshake_hash: &[u8; 64]) -> [u8; 32] {
    keyed_hash64(handshake_hash, &NS_PEER_HOLEPUNCH)
}

/// `ns("hyperswarm/secret-stream", id)`: 0 initiator, 1 responder, 2 send.
pub fn secret_stream_namespace(id: u8) -> [u8; 32] {
    hash_batch(&[&hash(b"hyperswarm/secret-stream"), &[id]])
}

/// The secret-stream id of the initiator (`initiator = true`) or responder side:
/// `BLAKE2b-256(NS_INITIATOR | NS_RESPONDER, key = handshake hash)`.
pub fn secret_stream_id(handshake_hash: &[u8; 64], initiator: bool) -> [u8; 32] {
    let ns = secret_stream_namespace(if initiator { 0 } else { 1 });
    keyed_hash64(handshake_hash, &ns)
}

/// snow `Dh` over noise-curve-ed. The "private key" is the 32-byte Ed25519 seed (snow hands in
/// whatever it was given; a 64-byte libsodium secret key is accepted and its seed half used).
#[derive(Default)]
struct Ed25519Dh {
    seed: [u8; 32],
    scalar: [u8; 32],
    public: [u8; 32],
    /// The static key pair the handshake was built with (seed, public key): `set` with that
    /// seed takes the public key from it instead of a base-point multiplication per handshake.
    known: Option<([u8; 32], [u8; 32])>,
    /// Whether this object's DHs may skip the remote key's validation (canonical encoding, small
    /// order, subgroup): true only for the object whose every DH comes after the other object
    /// already validated the same key in this handshake (see [`Resolver::trusting`]).
    trusting: bool,
    /// The remote keys this handshake's validating object accepted, decompressed: the trusting
    /// object multiplies the point instead of decompressing the key again (a field square
    /// root each). Shared by the handshake's two objects only.
    checked: Option<Arc<CheckedKeys>>,
}

/// The (at most two: `re` and `rs`) remote keys a handshake validated, with their points.
#[derive(Default)]
struct CheckedKeys {
    slots: [OnceBox<([u8; 32], EdwardsPoint)>; 2],
}

impl CheckedKeys {
    /// Records that `key` passed [`dh::decode_public_key`] as `point`.
    fn put(&self, key: &[u8; 32], point: EdwardsPoint) {
        let mut entry = Box::new((*key, point));
        for slot in &self.slots {
            if slot.get().is_some_and(|(k, _)| k == key) {
                return;
            }
            match slot.set(entry) {
                Ok(()) => return,
                Err(back) => entry = back,
            }
        }
    }

    /// The point of `key` if it was validated in this handshake.
    fn get(&self, key: &[u8; 32]) -> Option<EdwardsPoint> {
        self.slots
            .iter()
            .find_map(|slot| slot.get().filter(|(k, _)| k == key).map(|(_, p)| *p))
    }
}

/// `a == b` without a data-dependent branch or early exit (the seeds are secret).
fn ct_eq32(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Drop for Ed25519Dh {
    fn drop(&mut self) {
        self.seed.zeroize();
        self.scalar.zeroize();
        if let Some((seed, _)) = self.known.as_mut() {
            seed.zeroize();
        }
    }
}

impl Dh for Ed25519Dh {
    fn name(&self) -> &'static str {
        "Ed25519"
    }

    fn pub_len(&self) -> usize {
        dh::DH_LEN
    }

    fn priv_len(&self) -> usize {
        dh::DH_LEN
    }

    fn set(&mut self, privkey: &[u8]) {
        let n = privkey.len().min(32);
        self.seed = [0; 32];
        self.seed[..n].copy_from_slice(&privkey[..n]);
        self.scalar = dh::secret_scalar(&self.seed);
        self.public = match &self.known {
            Some((seed, public)) if ct_eq32(seed, &self.seed) => *public,
            _ => dh::public_key_from_scalar(&self.scalar),
        };
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut seed = [0u8; 32];
        rng.try_fill_bytes(&mut seed)?;
        self.set(&seed);
        seed.zeroize();
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.seed
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // snow passes its whole key buffer (MAXDHLEN bytes); the key is the first 32.
        let remote: &[u8; 32] = pubkey
            .get(..dh::DH_LEN)
            .and_then(|k| k.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let checked = self.checked.as_deref();
        let shared = if self.trusting {
            match checked.and_then(|c| c.get(remote)) {
                Some(point) => dh::dh_point(&self.scalar, &point),
                None => dh::dh_scalar_validated(&self.scalar, remote),
            }
        } else {
            dh::decode_public_key(remote).and_then(|point| {
                if let Some(c) = checked {
                    c.put(remote, point);
                }
                dh::dh_point(&self.scalar, &point)
            })
        }
        .map_err(|_| snow::Error::Dh)?;
        let dst = out.get_mut(..32).ok_or(snow::Error::Dh)?;
        dst.copy_from_slice(&shared);
        Ok(())
    }
}

/// snow `Random` that yields one pre-drawn 32-byte ephemeral seed, then refuses. IK generates
/// exactly one ephemeral per side, so this is all the randomness snow ever asks for.
struct OneSeed {
    seed: Option<[u8; 32]>,
}

impl Drop for OneSeed {
    fn drop(&mut self) {
        if let Some(s) = self.seed.as_mut() {
            s.zeroize();
        }
    }
}

impl Random for OneSeed {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        match self.seed.take() {
            Some(mut seed) if dest.len() == seed.len() => {
                dest.copy_from_slice(&seed);
                seed.zeroize();
                Ok(())
            }
            Some(mut seed) => {
                seed.zeroize();
                Err(snow::Error::Rng)
            }
            None => Err(snow::Error::Rng),
        }
    }
}

/// Which of the two DH objects may skip validating the remote key: in IK every remote key
/// enters two DHs, one per local key, and snow's token order fixes which comes first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trusting {
    /// The responder's ephemeral: `ee` (`re`) and `se` (`rs`) in msg2 come after `es` (`re`)
    /// and `ss` (`rs`) in msg1, both done by the static key, which validated them.
    Ephemeral,
    /// The initiator's static: `ss` (`rs`, also checked before the handshake starts) comes after
    /// `es` (`rs`) in msg1, and `se` (`re`) after `ee` (`re`) in msg2, both the ephemeral's.
    Static,
}

/// The resolver: Ed25519 DH in place of snow's `25519` choice, the ephemeral seed as the RNG,
/// snow's own BLAKE2b and ChaChaPoly.
struct Resolver {
    ephemeral_seed: [u8; 32],
    /// The static key pair (seed, public key), so snow's `set` does not recompute the key.
    static_key: ([u8; 32], [u8; 32]),
    /// Which DH object skips the second validation of each remote key. A handshake fails at
    /// its first failed DH (and the wrapper refuses every later step), so a key the trusting
    /// object receives has passed the other object's checks in this handshake.
    trusting: Trusting,
    /// DH objects handed out so far: snow's builder asks for the static one first, then the
    /// ephemeral one.
    dh_count: core::cell::Cell<u8>,
    /// The remote keys validated in this handshake, shared by its two DH objects.
    checked: Arc<CheckedKeys>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.ephemeral_seed.zeroize();
        self.static_key.0.zeroize();
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(OneSeed {
            seed: Some(self.ephemeral_seed),
        }))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => {
                let n = self.dh_count.get();
                self.dh_count.set(n.saturating_add(1));
                let is_static = n == 0;
                Some(Box::new(Ed25519Dh {
                    known: is_static.then_some(self.static_key),
                    trusting: match self.trusting {
                        Trusting::Static => is_static,
                        Trusting::Ephemeral => n == 1,
                    },
                    checked: Some(Arc::clone(&self.checked)),
                    ..Ed25519Dh::default()
                }))
            }
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

fn params() -> Result<NoiseParams, NoiseError> {
    // snow only parses `25519`/`448` as DH names; the resolver maps `25519` to Ed25519, and the
    // name that gets hashed into the initial state is `params.name`, overwritten here.
    let mut params: NoiseParams = "Noise_IK_25519_ChaChaPoly_BLAKE2b"
        .parse()
        .map_err(|_| NoiseError::Setup)?;
    params.name = PROTOCOL_NAME.into();
    Ok(params)
}

/// One side of an IK handshake.
///
/// Client: [`Handshake::initiator`] → [`send`](Self::send) msg1 → [`recv`](Self::recv) msg2 →
/// [`finish`](Self::finish). Server: [`Handshake::responder`] → `recv` msg1 → `send` msg2 →
/// `finish`. The raw [`write_message`](Self::write_message) / [`read_message`](Self::read_message)
/// take and return payload bytes instead of [`NoisePayload`]s.
pub struct Handshake {
    state: HandshakeState,
    role: Role,
    public_key: [u8; 32],
    failed: bool,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("public_key", &self.public_key)
            .field("finished", &self.is_finished())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// The client side, connecting to `remote_public_key`; the ephemeral seed is drawn from `rng`
    /// now (32 bytes).
    pub fn initiator<R: RngCore + CryptoRng>(
        key_pair: &KeyPair,
        remote_public_key: &[u8; 32],
        rng: &mut R,
    ) -> Result<Self, NoiseError> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let hs = Self::initiator_with_ephemeral(key_pair, remote_public_key, &seed);
        seed.zeroize();
        hs
    }

    /// The client side with a given ephemeral seed (the ephemeral key pair is the Ed25519 key
    /// pair of that seed). The same inputs give byte-identical messages.
    ///
    /// Fails with [`NoiseError::InvalidPublicKey`] if `remote_public_key` is not a point
    /// libsodium would multiply (the reference fails on its first `send` instead).
    pub fn initiator_with_ephemeral(
        key_pair: &KeyPair,
        remote_public_key: &[u8; 32],
        ephemeral_seed: &[u8; 32],
    ) -> Result<Self, NoiseError> {
        dh::decode_public_key(remote_public_key).map_err(|_| NoiseError::InvalidPublicKey)?;
        Self::build(key_pair, Some(remote_public_key), ephemeral_seed)
    }

    /// The server side; the ephemeral seed is drawn from `rng` now (32 bytes).
    pub fn responder<R: RngCore + CryptoRng>(
        key_pair: &KeyPair,
        rng: &mut R,
    ) -> Result<Self, NoiseError> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let hs = Self::responder_with_ephemeral(key_pair, &seed);
        seed.zeroize();
        hs
    }

    /// The server side with a given ephemeral seed.
    pub fn responder_with_ephemeral(
        key_pair: &KeyPair,
        ephemeral_seed: &[u8; 32],
    ) -> Result<Self, NoiseError> {
        Self::build(key_pair, None, ephemeral_seed)
    }

    fn build(
        key_pair: &KeyPair,
        remote_public_key: Option<&[u8; 32]>,
        ephemeral_seed: &[u8; 32],
    ) -> Result<Self, NoiseError> {
        let mut seed = key_pair.seed();
        let resolver = Resolver {
            ephemeral_seed: *ephemeral_seed,
            static_key: (seed, key_pair.public_key()),
            trusting: if remote_public_key.is_some() {
                Trusting::Static
            } else {
                Trusting::Ephemeral
            },
            dh_count: core::cell::Cell::new(0),
            checked: Arc::default(),
        };
        let builder = snow::Builder::with_resolver(params()?, Box::new(resolver));
        let built = (|| {
            let mut b = builder.local_private_key(&seed)?.prologue(&PROLOGUE)?;
            if let Some(rs) = remote_public_key {
                b = b.remote_public_key(rs)?;
                b.build_initiator()
            } else {
                b.build_responder()
            }
        })();
        seed.zeroize();
        let state = built.map_err(|_| NoiseError::Setup)?;
        Ok(Handshake {
            state,
            role: if remote_public_key.is_some() {
                Role::Initiator
            } else {
                Role::Responder
            },
            public_key: key_pair.public_key(),
            failed: false,
        })
    }

    /// Which side this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Own static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The peer's static public key: known from the start on the initiator, after msg1 on the
    /// responder.
    pub fn remote_public_key(&self) -> Option<[u8; 32]> {
        self.state
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
    }

    /// The current handshake hash `h` (the final one once finished).
    pub fn handshake_hash(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        let h = self.state.get_handshake_hash();
        let n = h.len().min(64);
        out[..n].copy_from_slice(&h[..n]);
        out
    }

    /// Both messages have been processed.
    pub fn is_finished(&self) -> bool {
        !self.failed && self.state.is_handshake_finished()
    }

    /// A step failed; the handshake is dead.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Writes the next message (msg1 on the initiator, msg2 on the responder) carrying `payload`.
    pub fn write_message(&mut self, payload: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if self.failed {
            return Err(NoiseError::State);
        }
        let cap = payload
            .len()
            .saturating_add(MSG1_OVERHEAD)
            .min(MAX_MESSAGE_LEN + 1);
        let mut buf = vec![0u8; cap];
        match self.state.write_message(payload, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => {
                self.failed = true;
                Err(map_snow(e, true))
            }
        }
    }

    /// Reads the peer's message and returns its decrypted payload bytes.
    pub fn read_message(&mut self, message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if self.failed {
            return Err(NoiseError::State);
        }
        let mut buf = vec![0u8; message.len()];
        match self.state.read_message(message, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => {
                self.failed = true;
                Err(map_snow(e, false))
            }
        }
    }

    /// [`write_message`](Self::write_message) with an encoded NoisePayload (`NoiseWrap.send`).
    pub fn send(&mut self, payload: &NoisePayload) -> Result<Vec<u8>, NoiseError> {
        self.write_message(&payload.to_bytes())
    }

    /// [`read_message`](Self::read_message) then NoisePayload decoding (`NoiseWrap.recv`). A
    /// payload that does not decode fails the handshake, as in the reference. A payload whose
    /// `version` is not 1 decodes (as version only); the caller decides (the server answers
    /// `VERSION_MISMATCH`, the client fails with `SERVER_INCOMPATIBLE`).
    pub fn recv(&mut self, message: &[u8]) -> Result<NoisePayload, NoiseError> {
        let bytes = self.read_message(message)?;
        NoisePayload::decode(&bytes).map_err(|e| {
            self.failed = true;
            NoiseError::Payload(e)
        })
    }

    /// The result of a finished handshake (`NoiseWrap.final()`).
    pub fn finish(mut self) -> Result<HandshakeResult, NoiseError> {
        if !self.is_finished() {
            return Err(NoiseError::Unfinished);
        }
        let remote_public_key = self.remote_public_key().ok_or(NoiseError::Unfinished)?;
        let hash = self.handshake_hash();
        let (k1, k2) = self.state.dangerously_get_raw_split();
        let (tx, rx) = match self.role {
            Role::Initiator => (k1, k2),
            Role::Responder => (k2, k1),
        };
        Ok(HandshakeResult {
            is_initiator: self.role == Role::Initiator,
            public_key: self.public_key,
            remote_public_key,
            hash,
            tx,
            rx,
            holepunch_secret: holepunch_secret(&hash),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(trusting: Trusting) -> Resolver {
        let kp = KeyPair::from_seed(&[3u8; 32]);
        Resolver {
            ephemeral_seed: [9u8; 32],
            static_key: (kp.seed(), kp.public_key()),
            trusting,
            dh_count: core::cell::Cell::new(0),
            checked: Arc::default(),
        }
    }

    fn trusts(obj: &dyn Dh) -> (bool, bool) {
        // A key outside the prime-order subgroup (B plus a point of order 8): a checking object
        // refuses it, a trusting one multiplies it (the clamped scalar clears the torsion).
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        let mixed = (ED25519_BASEPOINT_POINT + EIGHT_TORSION[1])
            .compress()
            .to_bytes();
        let mut out = [0u8; 32];
        let trusting = obj.dh(&mixed, &mut out).is_ok();
        (
            trusting,
            obj.pubkey() == KeyPair::from_seed(&[3u8; 32]).public_key(),
        )
    }

    /// The builder asks for the static object first: the initiator's static object and the
    /// responder's ephemeral one skip the checks, the other one checks; the static object
    /// takes its public key from the key pair.
    #[test]
    fn exactly_the_second_user_of_each_key_trusts_it() {
        for (trusting, static_trusts) in [(Trusting::Static, true), (Trusting::Ephemeral, false)] {
            let r = resolver(trusting);
            let mut s = r.resolve_dh(&DHChoice::Curve25519).unwrap();
            let mut e = r.resolve_dh(&DHChoice::Curve25519).unwrap();
            s.set(&[3u8; 32]);
            e.set(&[4u8; 32]);
            assert_eq!(trusts(&*s), (static_trusts, true));
            assert_eq!(trusts(&*e), (!static_trusts, false));
            assert_eq!(e.pubkey(), dh::public_key(&[4u8; 32]));
        }
    }

    /// The validating object records each key it accepted (and only those) with its point; the
    /// trusting object's DH with a recorded key multiplies that point and gives the bytes of a
    /// fully checked DH.
    #[test]
    fn validated_keys_are_shared_decompressed() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        let r = resolver(Trusting::Ephemeral);
        let mut s = r.resolve_dh(&DHChoice::Curve25519).unwrap();
        let mut e = r.resolve_dh(&DHChoice::Curve25519).unwrap();
        s.set(&[3u8; 32]);
        e.set(&[4u8; 32]);
        let mixed = (ED25519_BASEPOINT_POINT + EIGHT_TORSION[1])
            .compress()
            .to_bytes();
        let mut out = [0u8; 32];
        assert!(s.dh(&mixed, &mut out).is_err());
        assert!(
            r.checked.get(&mixed).is_none(),
            "a refused key is not recorded"
        );
        let keys = [dh::public_key(&[5u8; 32]), dh::public_key(&[6u8; 32])];
        for k in &keys {
            s.dh(k, &mut out).unwrap();
            assert_eq!(out, dh::dh(&[3u8; 32], k).unwrap());
        }
        for k in &keys {
            assert!(r.checked.get(k).is_some());
            e.dh(k, &mut out).unwrap();
            assert_eq!(out, dh::dh(&[4u8; 32], k).unwrap());
        }
        // A third key finds no slot: it is not recorded, and the trusting object decompresses.
        let third = dh::public_key(&[7u8; 32]);
        s.dh(&third, &mut out).unwrap();
        assert!(r.checked.get(&third).is_none());
        e.dh(&third, &mut out).unwrap();
        assert_eq!(out, dh::dh(&[4u8; 32], &third).unwrap());
    }
}
