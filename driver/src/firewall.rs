//! A server's firewall (`createServer({ firewall })`), decided outside the node's lock.
//!
//! The core asks its owner about each handshake ([`ConnectEvent::Firewall`]) and waits for
//! [`DhtNode::firewall_decision`]. The driver queues the question under the lock; the node's
//! I/O task (both runtimes poll [`IoWakeup`](crate::IoWakeup), which runs this) then calls the
//! callback with the lock released and polls the decision it returns until it is ready. So a
//! firewall may call the node — `remote_address()`, `connect`, a lookup — and may await
//! (a database, a timer) without stalling the node or deadlocking it.
//!
//! At most [`MAX_PENDING_FIREWALL_DECISIONS`] decisions wait at once per node; a handshake
//! beyond that is rejected without asking, so a flood of handshakes costs bounded memory. A
//! decision that never resolves keeps its place until its server closes (its client gives up
//! on its own, as with a reference firewall that never settles): bound slow decisions with a
//! timeout of your own.
//!
//! [`ConnectEvent::Firewall`]: hdht_core::dht::ConnectEvent::Firewall
//! [`DhtNode::firewall_decision`]: hdht_core::dht::DhtNode::firewall_decision

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddrV4;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hdht_core::connect::NoisePayload;
use hdht_core::dht::ServerId;

/// Firewall decisions that may wait at once per node (queued or running). A handshake that
/// arrives while this many wait is rejected at once, without calling the firewall: a flood
/// of handshakes (each one costs the sender a signed Noise message, and a relay) must not
/// grow memory without limit. The core separately caps a node's handshakes at 4,096.
pub const MAX_PENDING_FIREWALL_DECISIONS: usize = 256;

/// What a firewall is asked about one connecting client: the arguments of the reference's
/// `firewall(remotePublicKey, remoteHandshakePayload, clientAddress)`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FirewallRequest {
    /// The client's public key (Noise-authenticated).
    pub remote_public_key: [u8; 32],
    /// The client's address as the relay (or, for a direct connect, we) saw it.
    pub client_address: SocketAddrV4,
    /// The client's handshake payload (`remoteHandshakePayload`): the addresses it names
    /// (`addresses4`: its public address if known, then its LAN addresses), its NAT class
    /// (`firewall`), its UDX stream, the relays it asks for.
    pub payload: NoisePayload,
}

impl FirewallRequest {
    /// Every address the client is known by: where the relay saw it, then the ones its
    /// payload names (without repeats).
    pub fn remote_addresses(&self) -> Vec<SocketAddrV4> {
        let mut all = vec![self.client_address];
        for a in &self.payload.addresses4 {
            if !all.contains(a) {
                all.push(*a);
            }
        }
        all
    }
}

/// A pending decision: `true` rejects.
pub type FirewallFuture = Pin<Box<dyn Future<Output = bool> + Send + 'static>>;

type Callback = dyn Fn(FirewallRequest) -> FirewallFuture + Send + Sync;

/// A server's firewall: decides whether to accept a connecting client; `true` rejects, as
/// the reference's firewall does (the client is not answered, and its connect fails after
/// its timeout with `PEER_CONNECTION_FAILED`). A callback that panics rejects, as a throwing
/// one does in the reference.
///
/// It runs on the node's I/O task with the node unlocked: it may call the node. A sync
/// callback must not block (it holds up the node's I/O while it runs); anything slow belongs
/// in an async one ([`Firewall::new_async`]).
///
/// ```
/// # use hdht_driver::Firewall;
/// let allowed = [7u8; 32];
/// let fw = Firewall::new(move |req| req.remote_public_key != allowed);
/// let slow = Firewall::new_async(|req| async move { req.client_address.port() == 0 });
/// # let _ = (fw, slow);
/// ```
#[derive(Clone)]
pub struct Firewall(Arc<Callback>);

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Firewall")
    }
}

impl Firewall {
    /// A firewall deciding at once: `true` rejects.
    pub fn new(f: impl Fn(&FirewallRequest) -> bool + Send + Sync + 'static) -> Self {
        Firewall(Arc::new(move |req: FirewallRequest| {
            let reject = f(&req);
            Box::pin(std::future::ready(reject)) as FirewallFuture
        }))
    }

    /// A firewall that may await before deciding: the future resolves to `true` to reject.
    pub fn new_async<F, Fut>(f: F) -> Self
    where
        F: Fn(FirewallRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        Firewall(Arc::new(move |req: FirewallRequest| {
            Box::pin(f(req)) as FirewallFuture
        }))
    }

    /// Asks; a panicking callback rejects.
    pub(crate) fn ask(&self, req: FirewallRequest) -> FirewallFuture {
        catch_unwind(AssertUnwindSafe(|| (self.0)(req)))
            .unwrap_or_else(|_| Box::pin(std::future::ready(true)))
    }
}

/// A question the node asked, waiting for the I/O task to hand it to the firewall.
#[derive(Debug)]
pub(crate) struct Question {
    pub(crate) handshake: u64,
    pub(crate) server: ServerId,
    pub(crate) firewall: Firewall,
    pub(crate) request: FirewallRequest,
}

/// What the driver does about a firewall question.
pub(crate) enum FirewallAsk {
    /// Answer now: the server has no firewall (any more).
    Decide(u64, bool),
    /// Hand it to the server's firewall, outside the lock.
    Ask(Box<Question>),
}

/// Decisions being awaited, polled by the I/O task (never under the node's lock).
#[derive(Default)]
pub(crate) struct Decisions {
    running: Vec<(u64, ServerId, FirewallFuture)>,
}

impl std::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decisions")
            .field("running", &self.running.len())
            .finish()
    }
}

impl Decisions {
    /// Starts the questions (calling each firewall), drops the decisions of `closed`
    /// servers (answered as rejections), then polls every decision; returns the answers
    /// `(handshake, reject)`.
    pub(crate) fn run(
        &mut self,
        questions: Vec<Question>,
        closed: &BTreeSet<ServerId>,
        cx: &mut Context<'_>,
    ) -> Vec<(u64, bool)> {
        for q in questions {
            let fut = q.firewall.ask(q.request);
            self.running.push((q.handshake, q.server, fut));
        }
        let mut answers = Vec::new();
        self.running.retain_mut(|(handshake, server, fut)| {
            if closed.contains(server) {
                answers.push((*handshake, true));
                return false;
            }
            match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                Ok(Poll::Pending) => true,
                Ok(Poll::Ready(reject)) => {
                    answers.push((*handshake, reject));
                    false
                }
                Err(_) => {
                    answers.push((*handshake, true));
                    false
                }
            }
        });
        answers
    }

    /// Servers with decisions in flight.
    pub(crate) fn servers(&self) -> BTreeSet<ServerId> {
        self.running.iter().map(|(_, s, _)| *s).collect()
    }

    /// Whether no decision is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Drops every decision (the node is gone).
    pub(crate) fn clear(&mut self) {
        self.running.clear();
    }
}
