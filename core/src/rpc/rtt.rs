//! Adaptive request timeouts from measured round-trip times (RFC 6298 style).
//!
//! The reference waits a fixed 1 s per transmission (dht-rpc's optional `adaptiveTimeout`
//! is off by default), so a query visiting an unresponsive address spends `1 s × (retries +
//! 1)` on it. Here every response to a first transmission (Karn's rule: retransmitted
//! requests are ambiguous) feeds two estimators: one for the node that answered, one for the
//! network as a whole. A request then waits
//! - for a node we measured: `srtt + 4·rttvar`, at least [`MIN_RTO`];
//! - for a node we never heard from: the network's `srtt + 4·rttvar` (its spread across
//!   nodes is in `rttvar`), at least
//!   [`MIN_UNMEASURED_RTO`];
//! - before any measurement: the reference's 1 s;
//!
//! never more than the reference's 1 s, doubling on each retransmission up to that 1 s. Only
//! local timing changes: nothing on the wire does.

use alloc::vec::Vec;
use core::net::SocketAddrV4;
use core::time::Duration;

/// The reference's fixed per-transmission timeout, the ceiling of every adaptive one.
pub(crate) const MAX_RTO: Duration = Duration::from_millis(1000);
/// The smallest timeout for a node with measured round trips.
pub(crate) const MIN_RTO: Duration = Duration::from_millis(150);
/// The smallest first-try timeout for a node never measured.
pub(crate) const MIN_UNMEASURED_RTO: Duration = Duration::from_millis(200);
/// Nodes whose round trips are remembered at most (a bounded map; see [`RttTable`]): the most
/// recently sampled ones. A node of a 100,000-node network hears from several hundred
/// addresses; at 20 bytes each a cap of 1,024 let this map outgrow the routing table (the
/// largest per-node structure of a large simulation). An address without an estimate is timed
/// from the network-wide one, so the cap trades a little precision for a bounded 2.5 KB.
pub(crate) const MAX_RTT_ENTRIES: usize = 128;

/// Smoothed round-trip time and its variation, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rtt {
    srtt: u32,
    rttvar: u32,
}

impl Rtt {
    /// The estimator after its first sample (`srtt = R`, `rttvar = R/2`).
    pub(crate) fn first(sample: Duration) -> Self {
        let r = micros(sample);
        Rtt {
            srtt: r,
            rttvar: r / 2,
        }
    }

    /// Folds in one sample (`rttvar = 3/4 rttvar + 1/4 |srtt − R|`, `srtt = 7/8 srtt + 1/8 R`).
    pub(crate) fn update(&mut self, sample: Duration) {
        let r = micros(sample);
        let dev = self.srtt.abs_diff(r);
        self.rttvar = self.rttvar - self.rttvar / 4 + dev / 4;
        self.srtt = self.srtt - self.srtt / 8 + r / 8;
    }

    /// `srtt + 4·rttvar`, unclamped.
    pub(crate) fn rto(&self) -> Duration {
        let us = u64::from(self.srtt) + 4 * u64::from(self.rttvar);
        Duration::from_micros(us)
    }

    /// The smoothed round-trip time.
    pub(crate) fn srtt(&self) -> Duration {
        Duration::from_micros(u64::from(self.srtt))
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn key(addr: &SocketAddrV4) -> u64 {
    (u64::from(u32::from(*addr.ip())) << 16) | u64::from(addr.port())
}

/// Round trips per address plus the network-wide estimator. The per-address map is a sorted
/// vector bounded by [`MAX_RTT_ENTRIES`]; entries leave when their node leaves the routing
/// table, and once full a new address takes the place of the least recently sampled one (the
/// addresses met only in queries would otherwise fill it for good, and new table members
/// would be timed from the network estimate alone).
/// One address's estimator: 20 bytes (a `(u64, Rtt, u64)` tuple took 24; a node of a large
/// simulated network holds hundreds).
#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: u32,
    port: u16,
    rtt: Rtt,
    /// The sample counter at its last sample (low 32 bits; ages are taken wrapping).
    used: u32,
}

impl Entry {
    fn key(&self) -> u64 {
        (u64::from(self.ip) << 16) | u64::from(self.port)
    }
}

#[derive(Debug, Default)]
pub(crate) struct RttTable {
    /// Sorted by address key.
    nodes: Vec<Entry>,
    network: Option<Rtt>,
    /// Samples taken so far: the recency order for eviction.
    samples: u64,
}

impl RttTable {
    /// Records a round trip to `addr`.
    pub(crate) fn sample(&mut self, addr: &SocketAddrV4, rtt: Duration) {
        match &mut self.network {
            Some(n) => n.update(rtt),
            None => self.network = Some(Rtt::first(rtt)),
        }
        self.samples += 1;
        let now = self.samples as u32;
        let k = key(addr);
        match self.nodes.binary_search_by(|e| e.key().cmp(&k)) {
            Ok(i) => {
                if let Some(e) = self.nodes.get_mut(i) {
                    e.rtt.update(rtt);
                    e.used = now;
                }
            }
            Err(mut i) => {
                if self.nodes.len() >= MAX_RTT_ENTRIES {
                    // The least recently sampled: the largest age (stamps are unique).
                    let oldest = self
                        .nodes
                        .iter()
                        .enumerate()
                        .max_by_key(|(_, e)| now.wrapping_sub(e.used))
                        .map(|(j, _)| j);
                    if let Some(j) = oldest {
                        self.nodes.remove(j);
                        if j < i {
                            i -= 1;
                        }
                    }
                }
                self.nodes.insert(
                    i,
                    Entry {
                        ip: u32::from(*addr.ip()),
                        port: addr.port(),
                        rtt: Rtt::first(rtt),
                        used: now,
                    },
                );
            }
        }
    }

    /// Forgets `addr` (it left the routing table).
    pub(crate) fn forget(&mut self, addr: &SocketAddrV4) {
        let k = key(addr);
        if let Ok(i) = self.nodes.binary_search_by(|e| e.key().cmp(&k)) {
            self.nodes.remove(i);
        }
        if self.nodes.is_empty() {
            self.nodes = Vec::new();
        }
    }

    /// What we measured for `addr`.
    pub(crate) fn get(&self, addr: &SocketAddrV4) -> Option<Rtt> {
        let k = key(addr);
        let i = self.nodes.binary_search_by(|e| e.key().cmp(&k)).ok()?;
        self.nodes.get(i).map(|e| e.rtt)
    }

    /// The network-wide estimator.
    pub(crate) fn network(&self) -> Option<Rtt> {
        self.network
    }

    /// Whether `addr` has been measured.
    pub(crate) fn is_measured(&self, addr: &SocketAddrV4) -> bool {
        self.get(addr).is_some()
    }

    /// The first-transmission timeout for a request to `addr`.
    pub(crate) fn timeout_for(&self, addr: &SocketAddrV4) -> Duration {
        if let Some(r) = self.get(addr) {
            return r.rto().clamp(MIN_RTO, MAX_RTO);
        }
        match self.network {
            Some(n) => n.rto().clamp(MIN_UNMEASURED_RTO, MAX_RTO),
            None => MAX_RTO,
        }
    }
}

/// The timeout of transmission number `sent` (1 = the first) when the first waits `first`:
/// doubled per retransmission, capped at [`MAX_RTO`] (never below `first` itself).
pub(crate) fn backoff(first: Duration, sent: u32) -> Duration {
    if first >= MAX_RTO {
        return first;
    }
    let shift = sent.saturating_sub(1).min(8);
    (first * (1u32 << shift)).min(MAX_RTO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(core::net::Ipv4Addr::new(1, 2, 3, 4), port)
    }

    #[test]
    fn estimator_follows_rfc6298() {
        let mut r = Rtt::first(Duration::from_millis(100));
        assert_eq!(r.srtt(), Duration::from_millis(100));
        assert_eq!(r.rto(), Duration::from_millis(300));
        r.update(Duration::from_millis(100));
        // rttvar 50 → 37.5, srtt stays 100.
        assert_eq!(r.srtt(), Duration::from_millis(100));
        assert_eq!(r.rto(), Duration::from_micros(100_000 + 4 * 37_500));
    }

    #[test]
    fn timeouts_are_clamped_and_back_off() {
        let mut t = RttTable::default();
        // Nothing measured: the reference's 1 s.
        assert_eq!(t.timeout_for(&a(1)), MAX_RTO);
        t.sample(&a(1), Duration::from_millis(2));
        // Measured node on a fast link: the floor.
        assert_eq!(t.timeout_for(&a(1)), MIN_RTO);
        // Unmeasured node: the unmeasured floor.
        assert_eq!(t.timeout_for(&a(2)), MIN_UNMEASURED_RTO);
        t.sample(&a(3), Duration::from_millis(400));
        // A slow node: its own estimate, capped at 1 s.
        assert_eq!(t.timeout_for(&a(3)), MAX_RTO);
        t.forget(&a(3));
        assert!(!t.is_measured(&a(3)));
        assert_eq!(backoff(MIN_RTO, 1), MIN_RTO);
        assert_eq!(backoff(MIN_RTO, 2), Duration::from_millis(300));
        assert_eq!(backoff(MIN_RTO, 4), MAX_RTO);
        assert_eq!(backoff(MAX_RTO, 3), MAX_RTO);
        // An explicit long timeout is kept as it is.
        assert_eq!(backoff(Duration::from_secs(3), 2), Duration::from_secs(3));
    }

    #[test]
    fn per_node_map_is_bounded() {
        let mut t = RttTable::default();
        for p in 0..(MAX_RTT_ENTRIES as u16 + 100) {
            t.sample(&a(p), Duration::from_millis(10));
        }
        assert_eq!(t.nodes.len(), MAX_RTT_ENTRIES);
        assert!(t.network().is_some());
        // Full: the newest addresses are measured, the least recently sampled gave way...
        let last = MAX_RTT_ENTRIES as u16 + 99;
        assert!(t.is_measured(&a(last)));
        assert!(!t.is_measured(&a(0)) && !t.is_measured(&a(99)));
        // ...and an address sampled again stays while others come and go.
        t.sample(&a(100), Duration::from_millis(10));
        for p in 0..50u16 {
            t.sample(&a(last + 1 + p), Duration::from_millis(10));
        }
        assert!(t.is_measured(&a(100)));
        assert!(!t.is_measured(&a(101)));
        assert_eq!(t.nodes.len(), MAX_RTT_ENTRIES);
        assert!(
            t.nodes.windows(2).all(|w| w[0].key() < w[1].key()),
            "still sorted"
        );
        assert_eq!(core::mem::size_of::<Entry>(), 20);
    }
}
