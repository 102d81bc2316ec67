//! Blind relaying (blind-relay 1.6.1, spec 05 §6–§7): two peers that cannot reach each other
//! pair their UDX streams through a relay that forwards packets without any key.
//!
//! - [`message`]: `pair` / `unpair` on the Protomux channel `"blind-relay"`.
//! - [`client`]: a peer's side on its relay connection ([`RelayClient`]): open the channel,
//!   request pairings, learn the relay stream id.
//! - [`server`]: the relay's control plane ([`RelayServer`]): sessions, the pairing table,
//!   limits, timeouts.
//! - [`forward`]: the relay's data plane ([`Forwarder`]): relay stream pairs, rewriting only
//!   the destination stream id, no allocation per packet.
//! - [`plan`]: who relays through which relay in which role, from the two Noise payloads
//!   (the first piece of `relayThrough` in the connect path).
//! - [`error`]: typed failures.

pub mod client;
pub mod error;
pub mod forward;
pub mod message;
pub mod plan;
pub mod server;

pub use client::{ClientEvent, RelayClient, PAIRING_TIMEOUT};
pub use error::{PairError, RelayError};
pub use forward::{DropReason, Forward, ForwardStats, Forwarder};
pub use message::{Pair, Token, Unpair, PROTOCOL};
pub use plan::{client_plan, server_plan, ClientView, RelayCallback, RelayPlan, RelaySelector};
pub use server::{RelayEvent, RelayLimits, RelayServer, RelayStats, SessionId};
