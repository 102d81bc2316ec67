//! Whether a connection relays, through which relay and in which role (spec 05 §2.1, §3.3),
//! decided from the two Noise payloads' `relayThrough` fields (ARCHITECTURE §8).
//!
//! | client named | server named | relay, token | client `isInitiator` | server `isInitiator` |
//! |---|---|---|---|---|
//! | Kc, Tc | — | Kc, Tc | true | false |
//! | — | Ks, Ts | Ks, Ts | false | true |
//! | Kc, Tc | Ks, Ts | Ks, Ts (the server's wins) | false | true |
//!
//! The server relays only when its reply carried no error, the client is not OPEN and the
//! handshake did not come straight from the client (hyperdht PR #220). The reference's client
//! relays regardless; [`client_plan`] lets the caller skip where the server would.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use rand_core::RngCore;

use super::message::Token;
use crate::connect::{Firewall, RelayThroughInfo};

/// The callback form of [`RelaySelector`]: asked per connect / per handshake.
pub type RelayCallback = dyn Fn() -> Option<[u8; 32]> + Send + Sync;

/// Where `relayThrough` comes from (the reference's key, array or function).
#[derive(Clone)]
pub enum RelaySelector {
    /// Always this relay.
    Key([u8; 32]),
    /// One of these, uniformly at random per connect / per handshake (none if empty).
    List(Vec<[u8; 32]>),
    /// Asked per connect / per handshake, with no arguments as the reference calls it.
    Callback(Arc<RelayCallback>),
}

impl fmt::Debug for RelaySelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelaySelector::Key(k) => f.debug_tuple("Key").field(k).finish(),
            RelaySelector::List(l) => f.debug_tuple("List").field(&l.len()).finish(),
            RelaySelector::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

impl RelaySelector {
    /// The relay for one connect or handshake (`selectRelay`).
    pub fn select<R: RngCore>(&mut self, rng: &mut R) -> Option<[u8; 32]> {
        match self {
            RelaySelector::Key(k) => Some(*k),
            RelaySelector::List(list) if list.is_empty() => None,
            RelaySelector::List(list) => {
                // Uniform: the high bits of a 32-bit draw times the length.
                let i = (u64::from(rng.next_u32()) * list.len() as u64) >> 32;
                list.get(i as usize).copied()
            }
            RelaySelector::Callback(f) => f(),
        }
    }

    /// The `relayThrough` field to send: the selected relay and a fresh 32-byte token
    /// (`blind-relay`'s `token()`), or `None` when no relay is selected (no token is drawn then).
    pub fn draw<R: RngCore>(&mut self, rng: &mut R) -> Option<RelayThroughInfo> {
        let public_key = self.select(rng)?;
        let mut token = [0u8; 32];
        rng.fill_bytes(&mut token);
        Some(RelayThroughInfo {
            version: 1,
            public_key,
            token,
        })
    }
}

/// A relay attempt: pair `token` at `relay` in this role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPlan {
    /// The relay's public key.
    pub relay: [u8; 32],
    /// The pairing token.
    pub token: Token,
    /// This side's blind-relay role (unrelated to the Noise initiator).
    pub is_initiator: bool,
}

/// What the client knows after msg2 that decides whether relaying is useful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientView {
    /// The server's reply came straight from the server (not through a DHT node).
    pub direct: bool,
    /// The server's payload firewall.
    pub server_firewall: Firewall,
    /// Follow the reference and relay even when `direct` or the server is OPEN (the server
    /// then never pairs, and the attempt is abandoned after the 15 s timeout).
    pub like_reference: bool,
}

/// The client's relay attempt after msg2: `ours` is what msg1 carried, `theirs` msg2's field.
pub fn client_plan(
    ours: Option<&RelayThroughInfo>,
    theirs: Option<&RelayThroughInfo>,
    view: ClientView,
) -> Option<RelayPlan> {
    let plan = match (ours, theirs) {
        (_, Some(s)) => RelayPlan {
            relay: s.public_key,
            token: s.token,
            is_initiator: false,
        },
        (Some(c), None) => RelayPlan {
            relay: c.public_key,
            token: c.token,
            is_initiator: true,
        },
        (None, None) => return None,
    };
    if !view.like_reference && (view.direct || view.server_firewall == Firewall::Open) {
        // The server skips relaying in these cases (it never pairs), and a direct path exists.
        return None;
    }
    Some(plan)
}

/// The server's relay attempt for one handshake: `ours` is what its msg2 carries, `theirs`
/// msg1's field; `reply_error` the error code of its msg2; `client_firewall` msg1's firewall;
/// `direct` whether msg1 came straight from the client.
pub fn server_plan(
    ours: Option<&RelayThroughInfo>,
    theirs: Option<&RelayThroughInfo>,
    reply_error: u64,
    client_firewall: Firewall,
    direct: bool,
) -> Option<RelayPlan> {
    if reply_error != 0 || client_firewall == Firewall::Open || direct {
        return None;
    }
    match (ours, theirs) {
        (Some(s), _) => Some(RelayPlan {
            relay: s.public_key,
            token: s.token,
            is_initiator: true,
        }),
        (None, Some(c)) => Some(RelayPlan {
            relay: c.public_key,
            token: c.token,
            is_initiator: false,
        }),
        (None, None) => None,
    }
}
