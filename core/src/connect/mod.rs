//! Connecting by public key: the pure parts — Noise IK over Ed25519, the handshake and holepunch
//! payloads, their encryption, and the constants and error codes (spec 03 §0–§2, §4.1–4.2, §5.5).
//!
//! What is here (no I/O, no clocks; every random byte comes from an injected RNG, so a handshake
//! and every holepunch box replay exactly in the simulator):
//! - [`dh`]: noise-curve-ed's DH — Ed25519 scalar × Edwards point with libsodium's point checks.
//! - [`noise`]: [`Handshake`] (IK, `snow` with a custom resolver) and its [`HandshakeResult`]:
//!   `tx`/`rx` split keys, the 64-byte handshake hash, the remote public key, the holepunch
//!   secret and the secret-stream ids.
//! - [`payload`]: [`NoisePayload`], the plaintext of both Noise messages, with every field.
//! - [`holepunch`]: [`HolepunchPayload`], the plaintext of PEER_HOLEPUNCH.
//! - [`secure`]: [`SecurePayload`], the XSalsa20-Poly1305 box around a holepunch payload, and the
//!   address tokens.
//! - [`error`]: [`Firewall`], [`ErrorCode`] (payload `error` field) and [`ConnectError`]
//!   (`lib/errors.js`).
//!
//! The outer PEER_HANDSHAKE / PEER_HOLEPUNCH values are
//! [`crate::dht::messages::HandshakeEnvelope`] and [`crate::dht::messages::HolepunchEnvelope`].
//!
//! What the node builds on it (in [`crate::dht`]: `client/`, `server/`): the client's connect
//! and the server's handshakes (find the server, send msg1 through relays, dedupe msg1 bytes on
//! the server and answer duplicates with the identical msg2, firewall callback), NAT analysis
//! on puncher sockets, holepunch rounds, probes, aborts and timeouts. The client creates one
//! [`Handshake::initiator`] per connect and one [`SecurePayload`] from
//! [`HandshakeResult::holepunch_secret`]; the server one [`Handshake::responder`] per distinct
//! msg1. The stream layer takes `tx`, `rx`, `hash` and the public keys from the
//! [`HandshakeResult`].

pub mod dh;
pub mod error;
pub mod holepunch;
pub mod nat;
pub mod noise;
pub mod payload;
pub mod puncher;
pub mod reach;
pub mod secure;

pub use error::{ConnectError, ErrorCode, Firewall};
pub use holepunch::HolepunchPayload;
pub use nat::Nat;
pub use noise::{Handshake, HandshakeResult, NoiseError, Role};
pub use payload::{
    HolepunchInfo, NoisePayload, RelayInfo, RelayThroughInfo, SecretStreamInfo, UdxInfo,
};
pub use puncher::{
    punch_strategy, Puncher, PuncherConfig, PuncherOutput, RandomPunchLimiter, Strategy,
};
pub use reach::{expected_path, Reach};
pub use secure::{SecurePayload, SecurePayloadError};
