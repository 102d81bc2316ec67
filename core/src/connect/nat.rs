//! The puncher's NAT sampler and classifier (hyperdht `lib/nat.js`, spec 03 §4.4).
//!
//! A [`Nat`] belongs to one puncher socket. It collects *samples*: the address this socket had as
//! seen by a remote DHT node (the `to` field of a dht-rpc response), counted once per responding
//! node. From the samples it derives the socket's [`Firewall`] class and the addresses a peer
//! should punch towards.
//!
//! Sources of samples, all fed through [`Nat::add`]:
//! - auto-sampling ([`Nat::auto_sample`]): dht-rpc PINGs from the puncher socket to up to 4 known
//!   nodes (the 5 most recent skipped when ≥ 8 are known), no retries; one more pass if fewer than
//!   4 samples arrive;
//! - PEER_HOLEPUNCH traffic: the client adds each reply's `to` (from the relay), the server each
//!   FROM_RELAY request that arrived on its puncher socket.
//!
//! Classification ([`Nat::firewall`], only with ≥ 3 samples and while not frozen):
//! not firewalled → OPEN; top `(host, port)` seen ≥ 3 times → CONSISTENT; top seen once → RANDOM;
//! top seen twice: a single host and > 3 samples → RANDOM, several hosts and the second
//! `(host, port)` seen ≥ 2 times → CONSISTENT, > 4 samples → RANDOM, else unchanged.
//!
//! Advertised addresses ([`Nat::addresses`]): UNKNOWN → none; RANDOM → `[top host : 0]`;
//! CONSISTENT → the two most-seen `(host, port)` plus every other one seen ≥ 2 times; OPEN leaves
//! them as they were (the reference never sets them for OPEN).
//!
//! "Settled" ([`Nat::is_settled`]) is the reference's resolved `analyzing` promise: CONSISTENT or
//! OPEN reached, or ≥ 4 samples, or sampling exhausted, or destroyed.
//!
//! Pure and bounded: no clocks, no I/O; at most [`MAX_SAMPLE_NODES`] distinct nodes are remembered
//! (further samples from new nodes are ignored), so hostile traffic cannot grow it.

use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

use super::error::Firewall;

/// Samples wanted before the analysis settles without a CONSISTENT/OPEN verdict (`_minSamples`).
pub const MIN_SAMPLES: usize = 4;
/// When at least this many nodes are known, the most recent [`SKIP_RECENT`] are not pinged.
pub const SKIP_THRESHOLD: usize = 8;
/// How many of the most recently seen nodes auto-sampling skips (they are likely the ones the
/// main socket talked to last).
pub const SKIP_RECENT: usize = 5;
/// Most distinct nodes (pinged or sampled) remembered; beyond it new nodes are ignored.
pub const MAX_SAMPLE_NODES: usize = 64;

/// One sample bucket: an address and how many distinct nodes reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The address (port 0 in the per-host list).
    pub addr: SocketAddrV4,
    /// Distinct nodes that reported it.
    pub hits: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// Pinged by auto-sampling (`_visited` value 1).
    Pinged,
    /// A sample from it was counted (`_visited` value 2).
    Sampled,
}

/// The NAT analysis of one puncher socket (`Nat` in `lib/nat.js`).
#[derive(Debug, Clone)]
pub struct Nat {
    dht_firewalled: bool,
    samples_host: Vec<Sample>,
    samples_full: Vec<Sample>,
    visited: Vec<(SocketAddrV4, Visit)>,
    min_samples: usize,
    auto_sampling: bool,
    /// Auto-sampling pings in flight (plus the guard count while a pass is being started).
    pending: usize,
    /// Whether the next exhausted pass may start another one (`retry`).
    retry: bool,
    sampled: usize,
    firewall: Firewall,
    addresses: Option<Vec<SocketAddrV4>>,
    frozen: bool,
    settled: bool,
}

impl Nat {
    /// A fresh analysis. `dht_firewalled` is the node's own firewall state (`dht.firewalled`):
    /// a node that is not firewalled starts (and stays) OPEN, otherwise UNKNOWN.
    pub fn new(dht_firewalled: bool) -> Self {
        Nat {
            dht_firewalled,
            samples_host: Vec::new(),
            samples_full: Vec::new(),
            visited: Vec::new(),
            min_samples: MIN_SAMPLES,
            auto_sampling: false,
            pending: 0,
            retry: true,
            sampled: 0,
            firewall: if dht_firewalled {
                Firewall::Unknown
            } else {
                Firewall::Open
            },
            addresses: None,
            frozen: false,
            settled: false,
        }
    }

    /// The current classification.
    pub fn firewall(&self) -> Firewall {
        self.firewall
    }

    /// The addresses to advertise (`null` → `None`). RANDOM advertises its host with port 0.
    pub fn addresses(&self) -> Option<&[SocketAddrV4]> {
        self.addresses.as_deref()
    }

    /// Samples counted so far (one per distinct node).
    pub fn sampled(&self) -> usize {
        self.sampled
    }

    /// The per-`(host, port)` samples, most hits first (ties: first seen first).
    pub fn samples(&self) -> &[Sample] {
        &self.samples_full
    }

    /// The per-host samples (port 0), most hits first.
    pub fn host_samples(&self) -> &[Sample] {
        &self.samples_host
    }

    /// Whether reclassification is stopped ([`freeze`](Self::freeze)).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Whether the analysis has settled (the reference's `analyzing` promise resolved).
    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// Auto-sampling pings still outstanding.
    pub fn pending_pings(&self) -> usize {
        self.pending
    }

    /// The node's own firewall state changed (`dht.firewalled` is read live by the reference).
    /// Takes effect at the next reclassification.
    pub fn set_dht_firewalled(&mut self, firewalled: bool) {
        self.dht_firewalled = firewalled;
    }

    /// `autoSample()`: the nodes to PING from this socket, given the known nodes most recent
    /// first (`dht.nodes.latest` walking `prev`). Send each as an internal dht-rpc PING without
    /// retries; report every outcome with [`ping_done`](Self::ping_done) (after
    /// [`add`](Self::add) for a response). Does nothing after the first call.
    pub fn auto_sample(&mut self, nodes_latest_first: &[SocketAddrV4]) -> Vec<SocketAddrV4> {
        if self.auto_sampling {
            return Vec::new();
        }
        self.auto_sampling = true;
        self.start_pass(nodes_latest_first)
    }

    fn start_pass(&mut self, nodes: &[SocketAddrV4]) -> Vec<SocketAddrV4> {
        let mut out = Vec::new();
        let mut skip = if nodes.len() >= SKIP_THRESHOLD {
            SKIP_RECENT
        } else {
            0
        };
        for node in nodes {
            if self.sampled + self.pending >= self.min_samples {
                break;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if self.visit(node).is_some() {
                continue;
            }
            if self.visited.len() >= MAX_SAMPLE_NODES {
                break;
            }
            self.visited.push((*node, Visit::Pinged));
            self.pending += 1;
            out.push(*node);
        }
        // The reference's `pending++; onskip()` guard: with nothing in flight the pass ends now.
        self.pending += 1;
        out.extend(self.skip(nodes));
        out
    }

    /// One auto-sampling ping finished (answered or not; call [`add`](Self::add) first with an
    /// answer). `nodes_latest_first` as for [`auto_sample`](Self::auto_sample): when the pass
    /// ends with fewer than 4 samples the first time, a second pass starts and its pings are
    /// returned.
    pub fn ping_done(&mut self, nodes_latest_first: &[SocketAddrV4]) -> Vec<SocketAddrV4> {
        if self.pending == 0 {
            return Vec::new();
        }
        self.skip(nodes_latest_first)
    }

    fn skip(&mut self, nodes: &[SocketAddrV4]) -> Vec<SocketAddrV4> {
        self.pending = self.pending.saturating_sub(1);
        if self.pending == 0 && self.sampled < self.min_samples {
            if self.retry {
                self.retry = false;
                return self.start_pass(nodes);
            }
            self.settled = true;
        }
        Vec::new()
    }

    fn visit(&self, node: &SocketAddrV4) -> Option<Visit> {
        self.visited
            .iter()
            .find(|(a, _)| a == node)
            .map(|(_, v)| *v)
    }

    /// `add(addr, from)`: `to` is this socket's address as `from` saw it. Counted once per node.
    pub fn add(&mut self, to: SocketAddrV4, from: SocketAddrV4) {
        match self.visited.iter().position(|(a, _)| *a == from) {
            Some(i) => {
                if self.visited[i].1 == Visit::Sampled {
                    return;
                }
                self.visited[i].1 = Visit::Sampled;
            }
            None => {
                if self.visited.len() >= MAX_SAMPLE_NODES {
                    return;
                }
                self.visited.push((from, Visit::Sampled));
            }
        }

        add_sample(&mut self.samples_host, SocketAddrV4::new(*to.ip(), 0));
        add_sample(&mut self.samples_full, to);

        self.sampled += 1;
        if (self.sampled >= 3 || !self.dht_firewalled) && !self.frozen {
            self.update();
        }

        if matches!(self.firewall, Firewall::Consistent | Firewall::Open)
            || self.sampled >= self.min_samples
        {
            self.settled = true;
        }
    }

    /// `update()`: reclassify and recompute the addresses.
    pub fn update(&mut self) {
        if self.dht_firewalled && self.firewall == Firewall::Open {
            self.firewall = Firewall::Unknown;
        }
        self.update_firewall();
        self.update_addresses();
    }

    /// Stop reclassifying (the state was told to the peer).
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Resume reclassifying and reclassify now.
    pub fn unfreeze(&mut self) {
        self.frozen = false;
        self.update_firewall();
        self.update_addresses();
    }

    /// `destroy()`: no more sampling; the analysis counts as settled.
    pub fn destroy(&mut self) {
        self.auto_sampling = true;
        self.min_samples = 0;
        self.pending = 0;
        self.settled = true;
    }

    fn update_firewall(&mut self) {
        if !self.dht_firewalled {
            self.firewall = Firewall::Open;
            return;
        }
        if self.sampled < 3 {
            return;
        }
        let Some(top) = self.samples_full.first() else {
            return;
        };
        let max = top.hits;
        if max >= 3 {
            self.firewall = Firewall::Consistent;
            return;
        }
        if max == 1 {
            self.firewall = Firewall::Random;
            return;
        }
        // max == 2
        // One host, ≥ 4 samples: two bad ones → random.
        if self.samples_host.len() == 1 && self.sampled > 3 {
            self.firewall = Firewall::Random;
            return;
        }
        // A double hit on two different hosts → assume consistent.
        if self.samples_host.len() > 1 && self.samples_full.get(1).is_some_and(|s| s.hits > 1) {
            self.firewall = Firewall::Consistent;
            return;
        }
        // More than the samples we expect and no decision → assume random.
        if self.sampled > 4 {
            self.firewall = Firewall::Random;
        }
    }

    fn update_addresses(&mut self) {
        match self.firewall {
            Firewall::Unknown => self.addresses = None,
            Firewall::Random => {
                self.addresses = self.samples_host.first().map(|s| alloc::vec![s.addr]);
            }
            Firewall::Consistent => {
                let mut out = Vec::new();
                for s in &self.samples_full {
                    if s.hits >= 2 || out.len() < 2 {
                        out.push(s.addr);
                    }
                }
                self.addresses = Some(out);
            }
            Firewall::Open => {}
        }
    }

    /// Whether `addr` is one of the advertised addresses (`hasSameAddr`).
    pub fn has_address(&self, addr: &SocketAddrV4) -> bool {
        self.addresses.as_ref().is_some_and(|a| a.contains(addr))
    }

    /// The most-seen host, if any sample arrived.
    pub fn top_host(&self) -> Option<Ipv4Addr> {
        self.samples_host.first().map(|s| *s.addr.ip())
    }
}

/// `addSample`: count a hit and bubble the bucket up past buckets with fewer hits.
fn add_sample(samples: &mut Vec<Sample>, addr: SocketAddrV4) {
    if let Some(mut i) = samples.iter().position(|s| s.addr == addr) {
        samples[i].hits = samples[i].hits.saturating_add(1);
        while i > 0 && samples[i - 1].hits < samples[i].hits {
            samples.swap(i - 1, i);
            i -= 1;
        }
        return;
    }
    samples.push(Sample { addr, hits: 1 });
}

/// `coerceFirewall`: OPEN counts as CONSISTENT for strategy selection.
pub fn coerce(firewall: Firewall) -> Firewall {
    if firewall == Firewall::Open {
        Firewall::Consistent
    } else {
        firewall
    }
}

/// A wire firewall value as the reference compares it numerically: 0 UNKNOWN, 1 OPEN,
/// 2 CONSISTENT, anything ≥ 3 behaves as RANDOM (`>= FIREWALL.RANDOM`).
pub fn firewall_from_wire_lenient(v: u64) -> Firewall {
    Firewall::from_wire(v).unwrap_or(Firewall::Random)
}
