//! Hyperswarm (npm `hyperswarm@4.17.2`) as a sans-IO state machine: the policy layer that
//! turns "join a topic" into one encrypted connection per peer, over one [`DhtNode`].
//!
//! It has no wire protocol of its own: announces and lookups of the topic, the server's
//! handshakes and the client's connects are the node's. The [`Swarm`] decides what to start
//! and when — per topic a [`discovery`] (announce as a server, look up as a client, refresh
//! every 10–12 min, rendezvous lookups right after joining), a [`dial_queue`] by priority
//! within the limits, [`retry`] timers with the reference's backoff, bans, explicit peers —
//! and which of two connections to the same peer survives ([`duplicate`], the rule both sides
//! must agree on). Time is passed in, randomness is the injected RNG, output is
//! [`Swarm::poll_event`] and the calls it makes on the node.
//!
//! [`DhtNode`]: crate::dht::DhtNode

pub mod config;
pub mod dial_queue;
pub mod discovery;
pub mod duplicate;
pub mod event;
pub mod flush;
pub mod machine;
pub mod peer;
pub mod retry;

pub use config::{JoinOptions, SwarmConfig};
pub use discovery::SessionId;
pub use duplicate::Duplicate;
pub use event::SwarmEvent;
pub use flush::FlushId;
pub use machine::{topic_from_slice, Swarm, SwarmError, SwarmStats};
pub use peer::{PeerInfo, Priority};
