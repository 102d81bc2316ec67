//! Which of two connections to the same peer survives (`_handleServerConnection`, hyperswarm
//! 4.17.2 `index.js:346-375`). Only the side receiving a connection decides; both sides apply
//! the same rule, so they agree without a message: **the connection dialed by the peer with
//! the larger public key survives**, unless the existing one has already carried a message
//! each way — then the peer must have lost it and is reconnecting, and the new one wins.

use core::cmp::Ordering;

/// What to do with a new incoming connection from a peer we already hold a connection to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// Keep the existing connection (poke it with a keep-alive); destroy the new one unseen.
    KeepExisting,
    /// Destroy the existing connection; the new one takes its place once it has closed.
    KeepNew,
}

/// The rule. `local` / `remote`: the two public keys (compared as unsigned bytes, as
/// `Buffer.compare`); `new_is_initiator`: whether we dialed the new connection (always false
/// on the receiving side, kept to state the reference's comparison literally);
/// `existing_bytes`: the existing connection's secret-stream message bytes `(read, written)`.
pub fn resolve(
    local: &[u8; 32],
    remote: &[u8; 32],
    new_is_initiator: bool,
    existing_bytes: (u64, u64),
) -> Duplicate {
    let existing_is_outdated = existing_bytes.0 > 0 && existing_bytes.1 > 0;
    let expected_initiator = local.cmp(remote) == Ordering::Greater;
    if existing_is_outdated || expected_initiator == new_is_initiator {
        Duplicate::KeepNew
    } else {
        Duplicate::KeepExisting
    }
}
