//! Cryptographic building blocks, all from well-kept crates: BLAKE2b (`blake2`) and Ed25519
//! (`ed25519-dalek`). Nothing here is hand-rolled.

mod hash;
mod keypair;

pub use hash::{hash, hash_batch, keyed_hash};
pub use keypair::{verify, KeyPair};
