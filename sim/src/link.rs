//! What the network does to a datagram between two hosts: delay, loss, duplication,
//! reordering and a size limit.
//!
//! One model applies to the whole run (it can be swapped mid-run with
//! [`Engine::set_link`](crate::Engine::set_link)). The delay of a datagram is
//!
//! ```text
//! base latency (Internet) or lan_latency (when both ends meet inside one NAT)
//!   + access delay of the sending side + access delay of the receiving side
//!   + uniform jitter in [0, jitter)
//!   + reorder_delay with probability `reorder`
//! ```
//!
//! Access delays are drawn once per Internet-attached host or NAT box (uniform in
//! `[0, access)`), so each pair of endpoints has its own stable latency — the latency
//! distribution — while jitter varies per datagram.

use std::time::Duration;

/// The link model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// One-way base latency across the Internet.
    pub latency: Duration,
    /// Uniform extra delay per datagram in `[0, jitter)`.
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice (the copy has its own jitter).
    pub duplicate: f64,
    /// Probability a datagram is held back by `reorder_delay`, so later ones overtake it.
    pub reorder: f64,
    /// The hold-back of a reordered datagram.
    pub reorder_delay: Duration,
    /// Largest IP packet (payload + 28 bytes of IPv4/UDP headers); larger datagrams are
    /// dropped, as with the don't-fragment bit set.
    pub mtu: usize,
    /// Upper bound of the per-endpoint access delay (0 = every pair has the base latency).
    pub access: Duration,
    /// One-way latency between two endpoints that meet behind one NAT (a LAN or a carrier's
    /// network), and of hairpinned datagrams.
    pub lan_latency: Duration,
    /// Routers a datagram crosses on the Internet (each decrements its TTL). NAT boxes are
    /// routers too and count one each.
    pub internet_hops: u8,
}

impl Default for LinkModel {
    fn default() -> Self {
        LinkModel {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(50),
            mtu: 1500,
            access: Duration::ZERO,
            lan_latency: Duration::from_micros(500),
            internet_hops: 8,
        }
    }
}

impl LinkModel {
    /// A model with a latency distribution: base `latency` plus up to `access` per endpoint.
    pub fn wan(latency: Duration, access: Duration, jitter: Duration) -> Self {
        LinkModel {
            latency,
            access,
            jitter,
            ..LinkModel::default()
        }
    }

    /// The IPv4 + UDP header bytes counted against the MTU.
    pub const HEADER: usize = 28;
}
