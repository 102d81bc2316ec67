//! NAT boxes after RFC 4787 ("NAT Behavioral Requirements for Unicast UDP").
//!
//! A [`NatBox`] is a pure state machine: [`NatBox::outbound`] translates a datagram leaving the
//! inside network (creating or refreshing a mapping), [`NatBox::inbound`] decides whether a
//! datagram arriving at a public endpoint is let in and where it goes. The box knows nothing
//! about the simulator's event loop, so every behaviour can be unit-tested on its own (see the
//! tests at the bottom of this file).
//!
//! The model's knobs are RFC 4787's:
//! - *mapping* (§4.1): which outbound flows share one public endpoint — one per internal
//!   endpoint (endpoint-independent), per remote address, or per remote address and port;
//! - *filtering* (§5): which inbound datagrams a mapping accepts — from anyone, from remote
//!   addresses the internal endpoint has sent to, or from exactly those remote endpoints;
//! - *port assignment* (§4.2.1): preserve the internal port when free, allocate sequentially,
//!   or at random;
//! - *mapping lifetime* (§4.3): a mapping and each of its permissions expire after an idle
//!   period; outbound traffic refreshes them, inbound traffic only if configured (REQ-6 makes
//!   outbound refresh mandatory and inbound refresh optional);
//! - *hairpinning* (§6): whether a datagram from inside to the box's own public endpoint is
//!   looped back in;
//! - *translation*: off for a stateful firewall that rewrites nothing but still filters.
//!
//! Plus two operational events: static port forwards, and [`NatBox::rebind`], which moves every
//! mapping to a new public port at once (a router reboot or a carrier NAT re-balancing).
//!
//! Every structure is a `BTreeMap` or a slab indexed in allocation order, so nothing depends
//! on hash iteration order.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;
use std::time::Duration;

use hdht_core::Instant;
use rand_core::RngCore;
use thiserror::Error;

/// RFC 4787 §4.1: which outbound flows of one internal endpoint share a public endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// One public endpoint per internal endpoint, whatever the destination ("cone").
    EndpointIndependent,
    /// A new public endpoint per remote IP address.
    AddressDependent,
    /// A new public endpoint per remote IP address and port ("symmetric").
    AddressAndPortDependent,
}

/// RFC 4787 §5: which inbound datagrams a mapping lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone may send to a live mapping ("full cone").
    EndpointIndependent,
    /// Only remote addresses the internal endpoint sent to ("restricted cone").
    AddressDependent,
    /// Only remote address-and-port pairs the internal endpoint sent to ("port-restricted").
    AddressAndPortDependent,
}

/// RFC 4787 §4.2.1: how a new mapping's public port is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortAssignment {
    /// Keep the internal port if it is free on the public address; otherwise a random free
    /// port (as Linux masquerading does).
    Preserving,
    /// The next free port after the last one handed out.
    Sequential,
    /// A uniformly random free port.
    Random,
}

/// One NAT box's behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// Mapping behaviour.
    pub mapping: Mapping,
    /// Filtering behaviour.
    pub filtering: Filtering,
    /// Port assignment for new mappings.
    pub ports: PortAssignment,
    /// Idle time after which a mapping (or one of its permissions) is gone.
    pub mapping_lifetime: Duration,
    /// Whether inbound datagrams also refresh the mapping (RFC 4787 REQ-6 allows it).
    pub inbound_refresh: bool,
    /// Whether datagrams from inside to the box's own public endpoints loop back in.
    pub hairpinning: bool,
    /// False for a stateful firewall: public endpoint = internal endpoint, only filtering
    /// applies (mapping behaviour is then endpoint-independent whatever `mapping` says).
    pub translate: bool,
    /// Ports handed out by sequential and random assignment (and preservation's fallback).
    pub port_range: (u16, u16),
}

impl NatConfig {
    /// A typical home router: endpoint-independent mapping with the given filtering, port
    /// preservation, 2-minute lifetime, hairpinning on.
    pub fn cone(filtering: Filtering) -> Self {
        NatConfig {
            mapping: Mapping::EndpointIndependent,
            filtering,
            ports: PortAssignment::Preserving,
            mapping_lifetime: Duration::from_secs(120),
            inbound_refresh: false,
            hairpinning: true,
            translate: true,
            port_range: (1024, 65535),
        }
    }

    /// A symmetric NAT: a new random port per destination endpoint, port-restricted filtering,
    /// no hairpinning.
    pub fn symmetric() -> Self {
        NatConfig {
            mapping: Mapping::AddressAndPortDependent,
            filtering: Filtering::AddressAndPortDependent,
            ports: PortAssignment::Random,
            hairpinning: false,
            ..NatConfig::cone(Filtering::AddressAndPortDependent)
        }
    }

    /// A carrier-grade NAT (RFC 6888): endpoint-independent mapping (REQ-1), address-dependent
    /// filtering, ports not preserved, hairpinning required (REQ-7).
    pub fn carrier() -> Self {
        NatConfig {
            ports: PortAssignment::Random,
            ..NatConfig::cone(Filtering::AddressDependent)
        }
    }

    /// A stateful firewall in front of a public host: nothing is translated, and only replies
    /// to flows the host opened get in — every unsolicited UDP datagram is dropped.
    pub fn udp_firewall() -> Self {
        NatConfig {
            translate: false,
            hairpinning: false,
            ..NatConfig::cone(Filtering::AddressAndPortDependent)
        }
    }
}

/// The named NAT situations a host can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatPreset {
    /// No NAT: a public address.
    Open,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering (most home routers).
    PortRestricted,
    /// Address-and-port-dependent mapping and filtering, random ports.
    Symmetric,
    /// A port-restricted home router behind a shared carrier-grade NAT.
    Cgnat,
    /// A firewall that drops all unsolicited UDP (no translation).
    UdpBlocked,
}

impl NatPreset {
    /// Every preset, in a fixed order.
    pub const ALL: [NatPreset; 7] = [
        NatPreset::Open,
        NatPreset::FullCone,
        NatPreset::RestrictedCone,
        NatPreset::PortRestricted,
        NatPreset::Symmetric,
        NatPreset::Cgnat,
        NatPreset::UdpBlocked,
    ];

    /// The preset's plain name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            NatPreset::Open => "open",
            NatPreset::FullCone => "full-cone",
            NatPreset::RestrictedCone => "restricted-cone",
            NatPreset::PortRestricted => "port-restricted",
            NatPreset::Symmetric => "symmetric",
            NatPreset::Cgnat => "cgnat",
            NatPreset::UdpBlocked => "udp-blocked",
        }
    }

    /// The NAT boxes between a host and the Internet, the host's own box first. For
    /// [`NatPreset::Cgnat`] the second (carrier) box is meant to be shared by many homes.
    pub fn chain(self) -> Vec<NatConfig> {
        match self {
            NatPreset::Open => Vec::new(),
            NatPreset::FullCone => vec![NatConfig::cone(Filtering::EndpointIndependent)],
            NatPreset::RestrictedCone => vec![NatConfig::cone(Filtering::AddressDependent)],
            NatPreset::PortRestricted => vec![NatConfig::cone(Filtering::AddressAndPortDependent)],
            NatPreset::Symmetric => vec![NatConfig::symmetric()],
            NatPreset::Cgnat => vec![
                NatConfig::cone(Filtering::AddressAndPortDependent),
                NatConfig::carrier(),
            ],
            NatPreset::UdpBlocked => vec![NatConfig::udp_firewall()],
        }
    }
}

impl fmt::Display for NatPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown preset name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown NAT preset {0:?} (expected one of open, full-cone, restricted-cone, port-restricted, symmetric, cgnat, udp-blocked)")]
pub struct UnknownPreset(pub String);

impl FromStr for NatPreset {
    type Err = UnknownPreset;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NatPreset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPreset(s.to_string()))
    }
}

/// Why a NAT box dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Error)]
pub enum NatDrop {
    /// Inbound to a public endpoint with no live mapping (never made, or idled out).
    #[error("no mapping for this public endpoint")]
    NoMapping,
    /// Inbound from a remote the filtering rule does not admit.
    #[error("filtered")]
    Filtered,
    /// No public port left for a new mapping.
    #[error("no free public port")]
    PortsExhausted,
    /// A static forward would clash with an existing public endpoint.
    #[error("public port in use")]
    PortInUse,
}

/// Packs an endpoint into one orderable integer.
fn pack(a: SocketAddrV4) -> u64 {
    (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port())
}

/// One mapping: an internal endpoint bound to a public endpoint, with the remote endpoints it
/// has sent to (its filtering permissions).
#[derive(Debug, Clone)]
struct MapEntry {
    internal: SocketAddrV4,
    external: SocketAddrV4,
    /// The `by_key` key, kept to remove the entry.
    key: (u64, u64),
    /// Last refresh (outbound, or inbound with `inbound_refresh`).
    refreshed: Instant,
    /// Remote (masked to the filtering rule) → last outbound to it. Unused with
    /// endpoint-independent filtering.
    permits: BTreeMap<u64, Instant>,
    /// A static port forward: never expires, admits everyone.
    permanent: bool,
}

/// A NAT box (RFC 4787) — or, with `translate: false`, a stateful firewall.
#[derive(Debug, Clone)]
pub struct NatBox {
    cfg: NatConfig,
    public_ip: Ipv4Addr,
    slots: Vec<Option<MapEntry>>,
    free: Vec<u32>,
    /// (internal endpoint, remote masked to the mapping rule) → slot.
    by_key: BTreeMap<(u64, u64), u32>,
    /// Public endpoint → slot.
    by_ext: BTreeMap<u64, u32>,
    /// Internal endpoint → slot of its static forward.
    forwards: BTreeMap<u64, u32>,
    next_port: u16,
    next_sweep: Instant,
    live: usize,
}

impl NatBox {
    /// A box with no mappings whose public address is `public_ip` (ignored when `translate`
    /// is off).
    pub fn new(cfg: NatConfig, public_ip: Ipv4Addr) -> Self {
        let next_port = cfg.port_range.0;
        NatBox {
            cfg,
            public_ip,
            slots: Vec::new(),
            free: Vec::new(),
            by_key: BTreeMap::new(),
            by_ext: BTreeMap::new(),
            forwards: BTreeMap::new(),
            next_port,
            next_sweep: Instant::ZERO,
            live: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// The public address.
    pub fn public_ip(&self) -> Ipv4Addr {
        self.public_ip
    }

    /// Approximate heap bytes (mapping slab, indexes, permissions).
    pub fn heap_bytes(&self) -> usize {
        // BTreeMap nodes hold up to 11 entries; count ~1.5x the entry size for slack and edges.
        let entry = |k: usize, v: usize| (k + v) * 3 / 2;
        self.slots.capacity() * std::mem::size_of::<Option<MapEntry>>()
            + self
                .slots
                .iter()
                .flatten()
                .map(|m| m.permits.len() * entry(8, 8))
                .sum::<usize>()
            + self.by_key.len() * entry(16, 4)
            + self.by_ext.len() * entry(8, 4)
            + self.forwards.len() * entry(8, 4)
            + self.free.capacity() * 4
    }

    /// Mappings currently held (live or not yet swept).
    pub fn mappings(&self) -> usize {
        self.live
    }

    /// The public endpoint of a live mapping from `internal` to `remote`, if one exists,
    /// without touching any state.
    pub fn lookup(
        &self,
        now: Instant,
        internal: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> Option<SocketAddrV4> {
        let slot = self.find_out(internal, remote)?;
        let m = self.slots.get(slot as usize)?.as_ref()?;
        (!self.is_expired(m, now)).then_some(m.external)
    }

    /// A datagram from `internal` (inside) to `remote` (outside) leaves through the box:
    /// returns the public source endpoint it carries from now on.
    pub fn outbound(
        &mut self,
        now: Instant,
        internal: SocketAddrV4,
        remote: SocketAddrV4,
        rng: &mut impl RngCore,
    ) -> Result<SocketAddrV4, NatDrop> {
        self.maybe_sweep(now);
        if let Some(slot) = self.find_out(internal, remote) {
            let expired = self.slots[slot as usize]
                .as_ref()
                .is_some_and(|m| self.is_expired(m, now));
            if expired {
                self.remove(slot);
            } else if let Some(m) = self.slots[slot as usize].as_mut() {
                m.refreshed = now;
                if !m.permanent && self.cfg.filtering != Filtering::EndpointIndependent {
                    m.permits
                        .insert(mask_filter(self.cfg.filtering, remote), now);
                }
                return Ok(m.external);
            }
        }
        let port = if self.cfg.translate {
            self.allocate(internal.port(), rng)?
        } else {
            internal.port()
        };
        let ip = if self.cfg.translate {
            self.public_ip
        } else {
            *internal.ip()
        };
        let external = SocketAddrV4::new(ip, port);
        if !self.cfg.translate && self.by_ext.contains_key(&pack(external)) {
            return Err(NatDrop::PortInUse);
        }
        let key = (pack(internal), self.mask_map(remote));
        let mut permits = BTreeMap::new();
        if self.cfg.filtering != Filtering::EndpointIndependent {
            permits.insert(mask_filter(self.cfg.filtering, remote), now);
        }
        let entry = MapEntry {
            internal,
            external,
            key,
            refreshed: now,
            permits,
            permanent: false,
        };
        self.insert(entry);
        Ok(external)
    }

    /// A datagram from `remote` arrives at the public endpoint `external`: returns the internal
    /// endpoint it is forwarded to, or why it is dropped.
    pub fn inbound(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        external: SocketAddrV4,
    ) -> Result<SocketAddrV4, NatDrop> {
        self.maybe_sweep(now);
        let slot = *self.by_ext.get(&pack(external)).ok_or(NatDrop::NoMapping)?;
        let Some(m) = self.slots[slot as usize].as_ref() else {
            return Err(NatDrop::NoMapping);
        };
        if self.is_expired(m, now) {
            self.remove(slot);
            return Err(NatDrop::NoMapping);
        }
        let admitted = m.permanent
            || match self.cfg.filtering {
                Filtering::EndpointIndependent => true,
                f => m
                    .permits
                    .get(&mask_filter(f, remote))
                    .is_some_and(|t| now - *t < self.cfg.mapping_lifetime),
            };
        if !admitted {
            return Err(NatDrop::Filtered);
        }
        let inbound_refresh = self.cfg.inbound_refresh;
        let Some(m) = self.slots[slot as usize].as_mut() else {
            return Err(NatDrop::NoMapping);
        };
        if inbound_refresh {
            m.refreshed = now;
        }
        Ok(m.internal)
    }

    /// Adds a static port forward: `external_port` on the public address always reaches
    /// `internal`, from anyone, and `internal`'s outbound traffic uses it.
    pub fn forward(&mut self, external_port: u16, internal: SocketAddrV4) -> Result<(), NatDrop> {
        let ip = if self.cfg.translate {
            self.public_ip
        } else {
            *internal.ip()
        };
        let external = SocketAddrV4::new(ip, external_port);
        if self.by_ext.contains_key(&pack(external)) || self.forwards.contains_key(&pack(internal))
        {
            return Err(NatDrop::PortInUse);
        }
        let key = (pack(internal), u64::MAX);
        let entry = MapEntry {
            internal,
            external,
            key,
            refreshed: Instant::ZERO,
            permits: BTreeMap::new(),
            permanent: true,
        };
        let slot = self.insert(entry);
        self.forwards.insert(pack(internal), slot);
        Ok(())
    }

    /// Moves every dynamic mapping to a new public port (permissions are kept). Datagrams to
    /// the old ports are dropped from now on; the inside learns of it only through what the
    /// outside reports.
    pub fn rebind(&mut self, rng: &mut impl RngCore) {
        if !self.cfg.translate {
            return;
        }
        let slots: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| {
                self.slots[s as usize]
                    .as_ref()
                    .is_some_and(|m| !m.permanent)
            })
            .collect();
        // Old ports stay reserved while new ones are drawn, so that every port changes.
        let mut moved = Vec::with_capacity(slots.len());
        for slot in slots {
            let Some(internal_port) = self.slots[slot as usize]
                .as_ref()
                .map(|m| m.internal.port())
            else {
                continue;
            };
            let Ok(port) = self.allocate_avoiding(internal_port, rng, true) else {
                continue;
            };
            let new_ext = SocketAddrV4::new(self.public_ip, port);
            self.by_ext.insert(pack(new_ext), slot);
            moved.push((slot, new_ext));
        }
        for (slot, new_ext) in moved {
            if let Some(m) = self.slots[slot as usize].as_mut() {
                let old = std::mem::replace(&mut m.external, new_ext);
                self.by_ext.remove(&pack(old));
            }
        }
    }

    /// Drops every mapping that idled out (called lazily; exposed for tests).
    pub fn sweep(&mut self, now: Instant) {
        let dead: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                m.as_ref()
                    .filter(|m| self.is_expired(m, now))
                    .map(|_| i as u32)
            })
            .collect();
        for slot in dead {
            self.remove(slot);
        }
        let lifetime = self.cfg.mapping_lifetime;
        for m in self.slots.iter_mut().flatten() {
            m.permits.retain(|_, t| now - *t < lifetime);
        }
        self.next_sweep = now + lifetime;
    }

    fn maybe_sweep(&mut self, now: Instant) {
        if now >= self.next_sweep {
            self.sweep(now);
        }
    }

    fn is_expired(&self, m: &MapEntry, now: Instant) -> bool {
        !m.permanent && now - m.refreshed >= self.cfg.mapping_lifetime
    }

    fn find_out(&self, internal: SocketAddrV4, remote: SocketAddrV4) -> Option<u32> {
        if let Some(&slot) = self.forwards.get(&pack(internal)) {
            return Some(slot);
        }
        self.by_key
            .get(&(pack(internal), self.mask_map(remote)))
            .copied()
    }

    /// The remote part of the mapping key: what distinguishes mappings of one internal
    /// endpoint.
    fn mask_map(&self, remote: SocketAddrV4) -> u64 {
        match (self.cfg.translate, self.cfg.mapping) {
            (false, _) | (true, Mapping::EndpointIndependent) => 0,
            (true, Mapping::AddressDependent) => pack(SocketAddrV4::new(*remote.ip(), 0)),
            (true, Mapping::AddressAndPortDependent) => pack(remote),
        }
    }

    fn insert(&mut self, entry: MapEntry) -> u32 {
        let (key, ext) = (entry.key, pack(entry.external));
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(entry);
                s
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        if key.1 != u64::MAX {
            self.by_key.insert(key, slot);
        }
        self.by_ext.insert(ext, slot);
        self.live += 1;
        slot
    }

    fn remove(&mut self, slot: u32) {
        let Some(m) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.by_key.remove(&m.key);
        self.by_ext.remove(&pack(m.external));
        self.free.push(slot);
        self.live -= 1;
    }

    fn port_free(&self, port: u16) -> bool {
        port != 0
            && !self
                .by_ext
                .contains_key(&pack(SocketAddrV4::new(self.public_ip, port)))
    }

    fn allocate(&mut self, preferred: u16, rng: &mut impl RngCore) -> Result<u16, NatDrop> {
        self.allocate_avoiding(preferred, rng, false)
    }

    /// Picks a free public port. `rebinding` disables preservation (the point is to move).
    fn allocate_avoiding(
        &mut self,
        preferred: u16,
        rng: &mut impl RngCore,
        rebinding: bool,
    ) -> Result<u16, NatDrop> {
        let (lo, hi) = (
            self.cfg.port_range.0.max(1),
            self.cfg.port_range.1.max(self.cfg.port_range.0.max(1)),
        );
        let span = u32::from(hi - lo) + 1;
        match self.cfg.ports {
            PortAssignment::Preserving if !rebinding && self.port_free(preferred) => Ok(preferred),
            PortAssignment::Sequential => {
                let start = self.next_port.clamp(lo, hi);
                for i in 0..span {
                    let p = lo + ((u32::from(start - lo) + i) % span) as u16;
                    if self.port_free(p) {
                        self.next_port = if p == hi { lo } else { p + 1 };
                        return Ok(p);
                    }
                }
                Err(NatDrop::PortsExhausted)
            }
            PortAssignment::Preserving | PortAssignment::Random => {
                for _ in 0..32 {
                    let p = lo + (rng.next_u32() % span) as u16;
                    if self.port_free(p) {
                        return Ok(p);
                    }
                }
                let start = rng.next_u32() % span;
                for i in 0..span {
                    let p = lo + ((start + i) % span) as u16;
                    if self.port_free(p) {
                        return Ok(p);
                    }
                }
                Err(NatDrop::PortsExhausted)
            }
        }
    }

    /// Every live mapping as (internal, external), in slot order (for tests and debugging).
    pub fn dump(&self, now: Instant) -> Vec<(SocketAddrV4, SocketAddrV4)> {
        self.slots
            .iter()
            .flatten()
            .filter(|m| !self.is_expired(m, now))
            .map(|m| (m.internal, m.external))
            .collect()
    }
}

/// The remote as the filtering rule sees it.
fn mask_filter(f: Filtering, remote: SocketAddrV4) -> u64 {
    match f {
        Filtering::EndpointIndependent => 0,
        Filtering::AddressDependent => pack(SocketAddrV4::new(*remote.ip(), 0)),
        Filtering::AddressAndPortDependent => pack(remote),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    const PUB: Ipv4Addr = Ipv4Addr::new(16, 0, 0, 1);

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(1)
    }

    fn t(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    fn nat(cfg: NatConfig) -> NatBox {
        NatBox::new(cfg, PUB)
    }

    const IN1: &str = "192.168.0.2:5000";
    const IN2: &str = "192.168.0.3:5000";
    const R1: &str = "20.0.0.1:7000";
    const R1B: &str = "20.0.0.1:7001";
    const R2: &str = "20.0.0.2:7000";

    #[test]
    fn endpoint_independent_mapping_reuses_one_public_endpoint_for_every_destination() {
        let mut n = nat(NatConfig::cone(Filtering::AddressAndPortDependent));
        let e1 = n.outbound(t(0), a(IN1), a(R1), &mut rng()).unwrap();
        let e2 = n.outbound(t(1), a(IN1), a(R2), &mut rng()).unwrap();
        let e3 = n.outbound(t(2), a(IN1), a(R1B), &mut rng()).unwrap();
        assert_eq!(e1, SocketAddrV4::new(PUB, 5000), "port preserved");
        assert_eq!((e1, e1), (e2, e3));
        assert_eq!(n.mappings(), 1);
    }

    #[test]
    fn address_dependent_mapping_is_new_per_remote_address_only() {
        let cfg = NatConfig {
            mapping: Mapping::AddressDependent,
            ports: PortAssignment::Random,
            ..NatConfig::cone(Filtering::AddressDependent)
        };
        let mut n = nat(cfg);
        let mut r = rng();
        let e1 = n.outbound(t(0), a(IN1), a(R1), &mut r).unwrap();
        let e1b = n.outbound(t(0), a(IN1), a(R1B), &mut r).unwrap();
        let e2 = n.outbound(t(0), a(IN1), a(R2), &mut r).unwrap();
        assert_eq!(e1, e1b, "same remote address, other port: same mapping");
        assert_ne!(e1, e2, "other remote address: new mapping");
        assert_eq!(n.mappings(), 2);
    }

    #[test]
    fn address_and_port_dependent_mapping_is_new_per_remote_endpoint() {
        let mut n = nat(NatConfig::symmetric());
        let mut r = rng();
        let e1 = n.outbound(t(0), a(IN1), a(R1), &mut r).unwrap();
        let e1b = n.outbound(t(0), a(IN1), a(R1B), &mut r).unwrap();
        let e2 = n.outbound(t(0), a(IN1), a(R2), &mut r).unwrap();
        let again = n.outbound(t(1), a(IN1), a(R1), &mut r).unwrap();
        assert_ne!(e1, e1b);
        assert_ne!(e1, e2);
        assert_ne!(e1b, e2);
        assert_eq!(e1, again, "the same flow keeps its mapping");
        assert_eq!(n.mappings(), 3);
        assert_ne!(
            e1.port(),
            5000,
            "random ports (a 1/64512 coincidence would fail this seed)"
        );
    }

    #[test]
    fn endpoint_independent_filtering_admits_anyone_once_a_mapping_exists() {
        let mut n = nat(NatConfig::cone(Filtering::EndpointIndependent));
        assert_eq!(
            n.inbound(t(0), a(R1), SocketAddrV4::new(PUB, 5000)),
            Err(NatDrop::NoMapping),
            "unsolicited, no mapping"
        );
        let e = n.outbound(t(0), a(IN1), a(R1), &mut rng()).unwrap();
        assert_eq!(n.inbound(t(1), a(R2), e), Ok(a(IN1)), "a stranger gets in");
        assert_eq!(n.inbound(t(1), a(R1B), e), Ok(a(IN1)));
    }

    #[test]
    fn address_dependent_filtering_admits_only_addresses_sent_to() {
        let mut n = nat(NatConfig::cone(Filtering::AddressDependent));
        let e = n.outbound(t(0), a(IN1), a(R1), &mut rng()).unwrap();
        assert_eq!(n.inbound(t(1), a(R1), e), Ok(a(IN1)));
        assert_eq!(
            n.inbound(t(1), a(R1B), e),
            Ok(a(IN1)),
            "any port of a contacted address"
        );
        assert_eq!(n.inbound(t(1), a(R2), e), Err(NatDrop::Filtered));
    }

    #[test]
    fn address_and_port_dependent_filtering_admits_only_endpoints_sent_to() {
        let mut n = nat(NatConfig::cone(Filtering::AddressAndPortDependent));
        let e = n.outbound(t(0), a(IN1), a(R1), &mut rng()).unwrap();
        assert_eq!(n.inbound(t(1), a(R1), e), Ok(a(IN1)));
        assert_eq!(n.inbound(t(1), a(R1B), e), Err(NatDrop::Filtered));
        assert_eq!(n.inbound(t(1), a(R2), e), Err(NatDrop::Filtered));
        // Sending to R2 opens it (the mapping is shared: endpoint-independent mapping).
        n.outbound(t(2), a(IN1), a(R2), &mut rng()).unwrap();
        assert_eq!(n.inbound(t(3), a(R2), e), Ok(a(IN1)));
    }

    #[test]
    fn symmetric_nat_admits_a_reply_only_on_the_mapping_of_that_flow() {
        let mut n = nat(NatConfig::symmetric());
        let mut r = rng();
        let e1 = n.outbound(t(0), a(IN1), a(R1), &mut r).unwrap();
        let e2 = n.outbound(t(0), a(IN1), a(R2), &mut r).unwrap();
        assert_eq!(n.inbound(t(1), a(R1), e1), Ok(a(IN1)));
        assert_eq!(
            n.inbound(t(1), a(R2), e1),
            Err(NatDrop::Filtered),
            "R2 knows only its own mapping"
        );
        assert_eq!(n.inbound(t(1), a(R2), e2), Ok(a(IN1)));
    }

    #[test]
    fn mappings_expire_when_idle_and_outbound_traffic_refreshes_them() {
        let mut n = nat(NatConfig::cone(Filtering::AddressAndPortDependent)); // 120 s lifetime
        let e = n.outbound(t(0), a(IN1), a(R1), &mut rng()).unwrap();
        assert_eq!(n.inbound(t(119), a(R1), e), Ok(a(IN1)));
        // Inbound does not refresh: still gone at 120 s after the last outbound.
        assert_eq!(n.inbound(t(120), a(R1), e), Err(NatDrop::NoMapping));
        assert_eq!(n.mappings(), 0);
        let e = n.outbound(t(200), a(IN1), a(R1), &mut rng()).unwrap();
        n.outbound(t(300), a(IN1), a(R1), &mut rng()).unwrap();
        assert_eq!(
            n.inbound(t(400), a(R1), e),
            Ok(a(IN1)),
            "refreshed at 300 s"
        );
        assert_eq!(n.inbound(t(420), a(R1), e), Err(NatDrop::NoMapping));
    }

    #[test]
    fn inbound_refresh_is_configurable() {
        let cfg = NatConfig {
            inbound_refresh: true,
            ..NatConfig::cone(Filtering::EndpointIndependent)
        };
        let mut n = nat(cfg);
        let e = n.outbound(t(0), a(IN1), a(R1), &mut rng()).unwrap();
        assert_eq!(n.inbound(t(100), a(R1), e), Ok(a(IN1)));
        assert_eq!(
            n.inbound(t(200), a(R1), e),
            Ok(a(IN1)),
            "kept alive by inbound traffic"
        );
        assert_eq!(n.inbound(t(400), a(R1), e), Err(NatDrop::NoMapping));
    }

    #[test]
    fn permissions_expire_separately_from_a_mapping_kept_alive_by_other_flows() {
        let mut n = nat(NatConfig::cone(Filtering::AddressAndPortDependent));
        let e = n.outbound(t(0), a(IN1), a(R1), &mut rng()).unwrap();
        for s in (60..=300).step_by(60) {
            n.outbound(t(s), a(IN1), a(R2), &mut rng()).unwrap();
        }
        assert_eq!(n.inbound(t(301), a(R2), e), Ok(a(IN1)));
        assert_eq!(
            n.inbound(t(301), a(R1), e),
            Err(NatDrop::Filtered),
            "R1's permission idled out at 120 s"
        );
    }

    #[test]
    fn port_preservation_falls_back_to_another_port_on_collision() {
        let mut n = nat(NatConfig::cone(Filtering::AddressAndPortDependent));
        let e1 = n.outbound(t(0), a(IN1), a(R1), &mut rng()).unwrap();
        let e2 = n.outbound(t(0), a(IN2), a(R1), &mut rng()).unwrap();
        assert_eq!(e1.port(), 5000);
        assert_ne!(e2.port(), 5000, "the second host's port 5000 is taken");
        assert_eq!(*e2.ip(), PUB);
        assert_eq!(n.inbound(t(1), a(R1), e1), Ok(a(IN1)));
        assert_eq!(n.inbound(t(1), a(R1), e2), Ok(a(IN2)));
    }

    #[test]
    fn sequential_assignment_hands_out_consecutive_ports() {
        let cfg = NatConfig {
            ports: PortAssignment::Sequential,
            port_range: (30000, 30002),
            ..NatConfig::symmetric()
        };
        let mut n = nat(cfg);
        let mut r = rng();
        let p: Vec<u16> = [R1, R1B, R2]
            .iter()
            .map(|x| n.outbound(t(0), a(IN1), a(x), &mut r).unwrap().port())
            .collect();
        assert_eq!(p, vec![30000, 30001, 30002]);
        assert_eq!(
            n.outbound(t(0), a(IN2), a(R1), &mut r),
            Err(NatDrop::PortsExhausted)
        );
        assert_eq!(
            n.inbound(t(200), a(R1), SocketAddrV4::new(PUB, 30000)),
            Err(NatDrop::NoMapping)
        );
        assert_eq!(
            n.outbound(t(200), a(IN2), a(R1), &mut r).map(|e| e.port()),
            Ok(30000),
            "freed by expiry; the counter wraps around"
        );
    }

    #[test]
    fn random_assignment_stays_in_range_and_never_collides() {
        let cfg = NatConfig {
            port_range: (40000, 40099),
            ..NatConfig::symmetric()
        };
        let mut n = nat(cfg);
        let mut r = rng();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..100u16 {
            let e = n
                .outbound(
                    t(0),
                    a(IN1),
                    SocketAddrV4::new(Ipv4Addr::new(20, 0, 0, 9), 1000 + i),
                    &mut r,
                )
                .unwrap();
            assert!((40000..40100).contains(&e.port()));
            assert!(seen.insert(e.port()), "port {} reused", e.port());
        }
        assert_eq!(
            n.outbound(t(0), a(IN2), a(R1), &mut r),
            Err(NatDrop::PortsExhausted)
        );
    }

    #[test]
    fn rebinding_moves_every_mapping_to_a_new_port() {
        let mut n = nat(NatConfig::cone(Filtering::EndpointIndependent));
        let mut r = rng();
        let e1 = n.outbound(t(0), a(IN1), a(R1), &mut r).unwrap();
        let e2 = n.outbound(t(0), a(IN2), a(R1), &mut r).unwrap();
        n.rebind(&mut r);
        assert_eq!(
            n.inbound(t(1), a(R1), e1),
            Err(NatDrop::NoMapping),
            "old public port is dead"
        );
        assert_eq!(n.inbound(t(1), a(R1), e2), Err(NatDrop::NoMapping));
        let n1 = n.outbound(t(1), a(IN1), a(R1), &mut r).unwrap();
        let n2 = n.outbound(t(1), a(IN2), a(R1), &mut r).unwrap();
        assert_ne!(n1, e1);
        assert_ne!(n2, e2);
        assert_eq!(n.mappings(), 2, "the mappings moved, none were added");
        assert_eq!(n.inbound(t(2), a(R2), n1), Ok(a(IN1)));
    }

    #[test]
    fn a_stateful_firewall_translates_nothing_and_drops_unsolicited_udp() {
        let mut n = NatBox::new(NatConfig::udp_firewall(), Ipv4Addr::UNSPECIFIED);
        let host = a("20.0.0.50:49737");
        assert_eq!(
            n.inbound(t(0), a(R1), host),
            Err(NatDrop::NoMapping),
            "unsolicited"
        );
        assert_eq!(
            n.outbound(t(0), host, a(R1), &mut rng()),
            Ok(host),
            "not translated"
        );
        assert_eq!(n.inbound(t(1), a(R1), host), Ok(host), "the reply gets in");
        assert_eq!(
            n.inbound(t(1), a(R2), host),
            Err(NatDrop::Filtered),
            "a stranger does not"
        );
    }

    #[test]
    fn static_forwards_admit_everyone_forever_and_carry_outbound_traffic() {
        let mut n = nat(NatConfig::symmetric());
        let server = a("192.168.0.2:49737");
        n.forward(49737, server).unwrap();
        let public = SocketAddrV4::new(PUB, 49737);
        assert_eq!(n.inbound(t(10_000), a(R2), public), Ok(server));
        assert_eq!(n.outbound(t(10_000), server, a(R1), &mut rng()), Ok(public));
        assert_eq!(n.forward(49737, a(IN1)), Err(NatDrop::PortInUse));
    }

    #[test]
    fn lookup_reports_a_live_mapping_without_creating_one() {
        let mut n = nat(NatConfig::cone(Filtering::EndpointIndependent));
        assert_eq!(n.lookup(t(0), a(IN1), a(R1)), None);
        assert_eq!(n.mappings(), 0);
        let e = n.outbound(t(0), a(IN1), a(R1), &mut rng()).unwrap();
        assert_eq!(n.lookup(t(1), a(IN1), a(R2)), Some(e));
        assert_eq!(n.lookup(t(121), a(IN1), a(R2)), None);
    }

    #[test]
    fn presets_parse_from_their_plain_names() {
        for p in NatPreset::ALL {
            assert_eq!(p.name().parse::<NatPreset>(), Ok(p));
        }
        assert!("cone".parse::<NatPreset>().is_err());
        assert_eq!(NatPreset::Cgnat.chain().len(), 2);
        assert!(NatPreset::Open.chain().is_empty());
    }
}
