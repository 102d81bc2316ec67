//! A blind relay on the node (`hyperdht`'s relay server, blind-relay 1.6.1): peers connect to
//! its key, pair their streams by token, and the node forwards their UDX packets without any
//! key. The relay lives as long as the node; the core does the work
//! ([`DhtNode::relay_server`](hdht_core::dht::DhtNode::relay_server)).

use std::task::Poll;

use hdht_core::connect::ConnectError;
use hdht_core::crypto::KeyPair;
use hdht_core::dht::{RelayServiceStats, ServerId};
use hdht_core::relay::RelayLimits;

use crate::{DhtError, Shared};

/// A running blind relay ([`DhtHandle::relay_server`](crate::DhtHandle::relay_server)).
#[derive(Debug, Clone)]
pub struct BlindRelay {
    shared: Shared,
    server: ServerId,
    public_key: [u8; 32],
}

impl BlindRelay {
    /// The key peers connect to (their `relayThrough`).
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// Sessions, pairings and packets/bytes forwarded so far.
    pub fn stats(&self) -> RelayServiceStats {
        let server = self.server;
        self.shared.with_node(|n| {
            n.relay_stats().unwrap_or(RelayServiceStats {
                server,
                control: Default::default(),
                forward: Default::default(),
                sessions: 0,
            })
        })
    }
}

impl Shared {
    /// Starts the node's blind relay on `key_pair` and resolves once it is announced.
    pub async fn relay_server(
        &self,
        key_pair: &KeyPair,
        limits: RelayLimits,
    ) -> Result<BlindRelay, DhtError> {
        let kp = key_pair.clone();
        let server = self.with_node_mut(|n, now| n.relay_server(now, kp, limits))?;
        self.with_inner(|inner| inner.connections.track_server(server));
        std::future::poll_fn(|cx| -> Poll<Result<(), DhtError>> {
            self.with_inner(|inner| {
                if inner.node.is_destroyed() {
                    return Poll::Ready(Err(ConnectError::NodeDestroyed.into()));
                }
                match inner.connections.listening(server, cx.waker()) {
                    Some(true) => Poll::Ready(Ok(())),
                    Some(false) => Poll::Pending,
                    None => Poll::Ready(Err(ConnectError::NodeDestroyed.into())),
                }
            })
        })
        .await?;
        Ok(BlindRelay {
            shared: self.clone(),
            server,
            public_key: key_pair.public_key(),
        })
    }
}
