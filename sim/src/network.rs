//! The network's shape: address spaces ("realms"), hosts with sockets, NAT boxes between
//! realms, partitions — and the path a datagram takes through them.
//!
//! The Internet is realm 0. Every NAT box sits in an *outside* realm with a public address
//! and owns an *inside* realm; boxes nest (a home router inside a carrier-grade NAT's realm).
//! Addresses are unique within a realm only, so every home can use 192.168.0.2.
//!
//! A datagram's path has two halves, evaluated at the moment they happen in the real world:
//!
//! 1. **Up** (`route_out`, at send time): look the destination up in the sender's
//!    realm; if it is not there, cross the realm's NAT outward (translating the source,
//!    creating or refreshing a mapping) and look again one level up, until a realm knows the
//!    destination. That realm is where the two sides *meet*: the Internet, a LAN, or a
//!    carrier's network. Going out to the box one just came through is hairpinning.
//! 2. **Down** (`route_in`, at arrival time, after the link delay): from the
//!    destination's entry in the meeting realm, cross NAT boxes inward (inbound filtering is
//!    checked *now*, so a hole punched while the datagram was in flight counts), down to a
//!    host and one of its sockets.
//!
//! Each NAT crossed is a router hop, the Internet is [`LinkModel::internet_hops`] more; a
//! datagram whose TTL runs out is dropped where it runs out — after the sender's own NATs
//! have already created their mappings, which is what low-TTL holepunch probes rely on.
//!
//! Lookups use hash maps with a fixed hasher (never iterated) and vectors indexed by
//! compact ids, so nothing depends on iteration order or on process state.

use std::net::{Ipv4Addr, SocketAddrV4};

use hdht_core::Instant;
use rand_core::RngCore;
use thiserror::Error;

use crate::fxhash::FxMap;
use crate::link::LinkModel;
use crate::nat::{NatBox, NatConfig, NatDrop};

/// Index of a simulated host.
pub type HostId = usize;

/// An address space: the Internet or the inside of one NAT box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RealmId(pub u32);

impl RealmId {
    /// The public Internet.
    pub const INTERNET: RealmId = RealmId(0);
}

/// Index of a NAT box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatId(pub u32);

/// Index of a socket within its host (the order the host bound them in; freed slots are
/// reused). An rpc node's server socket is 0 and its client socket 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(pub u16);

/// The most sockets one host may hold (a holepunch "random" strategy opens 256).
pub const MAX_SOCKETS: usize = 1024;

/// Errors of topology operations.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetError {
    /// No host with this id.
    #[error("no host {0}")]
    NoSuchHost(HostId),
    /// No NAT box with this id.
    #[error("no NAT box {0}")]
    NoSuchNat(u32),
    /// No realm with this id.
    #[error("no realm {0}")]
    NoSuchRealm(u32),
    /// The realm's address range is used up.
    #[error("address space of realm {0} exhausted")]
    AddressesExhausted(u32),
    /// The port is bound already on this host.
    #[error("port {0} in use")]
    AddrInUse(u16),
    /// No free ephemeral port, or too many sockets.
    #[error("too many sockets")]
    TooManySockets,
    /// No such socket on this host.
    #[error("no socket {0}")]
    NoSuchSocket(u16),
    /// A NAT box refused (e.g. a port forward on a used port).
    #[error("NAT: {0}")]
    Nat(#[from] NatDrop),
}

/// Why the network dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Random loss on the link.
    Loss,
    /// Larger than the MTU.
    Mtu,
    /// TTL ran out at a router.
    Ttl,
    /// No host or NAT has the destination address.
    NoRoute,
    /// A NAT box has no mapping for the destination port (or it expired).
    NatNoMapping,
    /// A NAT box's filtering rule refused the sender.
    NatFiltered,
    /// A NAT box had no free port for a new mapping.
    NatPorts,
    /// Hairpinning is off at the box.
    Hairpin,
    /// Sender and receiver are on different sides of a partition.
    Partition,
    /// Nothing is bound to the destination port (the host is down or the socket closed).
    PortUnreachable,
    /// The sending socket does not exist (the sender's app used a bad socket id).
    BadSocket,
}

impl DropReason {
    /// Every reason, in report order.
    pub const ALL: [DropReason; 11] = [
        DropReason::Loss,
        DropReason::Mtu,
        DropReason::Ttl,
        DropReason::NoRoute,
        DropReason::NatNoMapping,
        DropReason::NatFiltered,
        DropReason::NatPorts,
        DropReason::Hairpin,
        DropReason::Partition,
        DropReason::PortUnreachable,
        DropReason::BadSocket,
    ];

    /// A short camelCase name (report keys).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Loss => "loss",
            DropReason::Mtu => "mtu",
            DropReason::Ttl => "ttl",
            DropReason::NoRoute => "noRoute",
            DropReason::NatNoMapping => "natNoMapping",
            DropReason::NatFiltered => "natFiltered",
            DropReason::NatPorts => "natPorts",
            DropReason::Hairpin => "hairpin",
            DropReason::Partition => "partition",
            DropReason::PortUnreachable => "portUnreachable",
            DropReason::BadSocket => "badSocket",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl From<NatDrop> for DropReason {
    fn from(d: NatDrop) -> Self {
        match d {
            NatDrop::NoMapping => DropReason::NatNoMapping,
            NatDrop::Filtered => DropReason::NatFiltered,
            NatDrop::PortsExhausted | NatDrop::PortInUse => DropReason::NatPorts,
        }
    }
}

/// What an address in a realm leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    Host(u32),
    Nat(u32),
}

#[derive(Debug)]
struct Realm {
    /// The NAT box whose inside this is (`None` for the Internet).
    gateway: Option<u32>,
    addrs: FxMap<u32, Node>,
    next_ip: u32,
    last_ip: u32,
}

impl Realm {
    fn new(gateway: Option<u32>, first: Ipv4Addr, last: Ipv4Addr) -> Self {
        Realm {
            gateway,
            addrs: FxMap::default(),
            next_ip: u32::from(first),
            last_ip: u32::from(last),
        }
    }
}

#[derive(Debug)]
struct NetHost {
    realm: RealmId,
    ip: Ipv4Addr,
    /// Bound port per socket id (0 = free slot).
    ports: Ports,
    group: u32,
    access_us: u32,
}

/// Sockets a host's ports keep inline: a dht-rpc node has two (server, client), so routing a
/// datagram to one reads the host record alone, not a second heap block.
const INLINE_PORTS: usize = 2;

/// A host's bound ports by socket id (0 = a free slot): the first [`INLINE_PORTS`] inline,
/// the rest (a hyperdht node's pool sockets) in a vector.
#[derive(Debug, Default)]
struct Ports {
    len: u16,
    inline: [u16; INLINE_PORTS],
    spill: Vec<u16>,
}

impl Ports {
    fn len(&self) -> usize {
        usize::from(self.len)
    }

    fn get(&self, i: usize) -> Option<u16> {
        if i >= self.len() {
            return None;
        }
        match self.inline.get(i) {
            Some(p) => Some(*p),
            None => self.spill.get(i - INLINE_PORTS).copied(),
        }
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut u16> {
        if i >= self.len() {
            return None;
        }
        match self.inline.get_mut(i) {
            Some(p) => Some(p),
            None => self.spill.get_mut(i - INLINE_PORTS),
        }
    }

    fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        let n = self.len().min(INLINE_PORTS);
        self.inline[..n].iter().chain(self.spill.iter()).copied()
    }

    fn contains(&self, port: u16) -> bool {
        self.iter().any(|p| p == port)
    }

    /// The socket id bound to `port` (never a free slot).
    fn position(&self, port: u16) -> Option<usize> {
        if port == 0 {
            return None;
        }
        self.iter().position(|p| p == port)
    }

    fn push(&mut self, port: u16) {
        let i = self.len();
        match self.inline.get_mut(i) {
            Some(p) => *p = port,
            None => self.spill.push(port),
        }
        self.len += 1;
    }

    /// Drops free slots at the end.
    fn trim_end(&mut self) {
        while self.len > 0 && self.get(self.len() - 1) == Some(0) {
            if self.len() > INLINE_PORTS {
                self.spill.pop();
            }
            self.len -= 1;
        }
    }

    fn heap_bytes(&self) -> usize {
        self.spill.capacity() * 2
    }
}

#[derive(Debug)]
struct NatNode {
    nat: NatBox,
    outside: RealmId,
    inside: RealmId,
    access_us: u32,
}

/// A datagram on its way: the up half is done, the down half happens on arrival.
#[derive(Debug, Clone)]
pub(crate) struct Transit {
    pub(crate) src_host: u32,
    /// The destination's entry in the meeting realm.
    pub(crate) to: Node,
    /// The source as the receiver will see it (translated).
    pub(crate) src: SocketAddrV4,
    /// The destination address as the sender wrote it (rewritten on the way down).
    pub(crate) dst: SocketAddrV4,
    pub(crate) ttl: u8,
    /// Both ends meet behind a NAT (LAN latency), or the datagram hairpinned.
    pub(crate) lan: bool,
    /// Access delay of the sending and the receiving side in the meeting realm, µs.
    pub(crate) access_us: u32,
}

/// A datagram leaving a host's socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing {
    pub(crate) host: u32,
    pub(crate) socket: SocketId,
    pub(crate) dst: SocketAddrV4,
    pub(crate) ttl: u8,
}

/// The topology and its NAT state.
#[derive(Debug)]
pub struct Network {
    realms: Vec<Realm>,
    hosts: Vec<NetHost>,
    nats: Vec<NatNode>,
    /// Whether a partition is in force (else no arrival needs its sender's side).
    partitioned: bool,
}

const EPHEMERAL: (u16, u16) = (32768, 60999);

impl Default for Network {
    fn default() -> Self {
        Self::new()
    }
}

impl Network {
    /// An empty Internet (public addresses from 16.0.0.1 on).
    pub fn new() -> Self {
        Network {
            realms: vec![Realm::new(
                None,
                Ipv4Addr::new(16, 0, 0, 1),
                Ipv4Addr::new(31, 255, 255, 254),
            )],
            hosts: Vec::new(),
            nats: Vec::new(),
            partitioned: false,
        }
    }

    /// Number of hosts.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Approximate bytes the topology holds (hosts, sockets, address maps, NAT tables).
    pub fn heap_bytes(&self) -> usize {
        let realms: usize = self
            .realms
            .iter()
            .map(|r| r.addrs.capacity() * (std::mem::size_of::<(u32, Node)>() + 1))
            .sum::<usize>()
            + self.realms.capacity() * std::mem::size_of::<Realm>();
        let hosts = self.hosts.capacity() * std::mem::size_of::<NetHost>()
            + self
                .hosts
                .iter()
                .map(|h| h.ports.heap_bytes())
                .sum::<usize>();
        let nats: usize = self.nats.capacity() * std::mem::size_of::<NatNode>()
            + self.nats.iter().map(|n| n.nat.heap_bytes()).sum::<usize>();
        realms + hosts + nats
    }

    /// Reserves room for `n` more hosts.
    pub fn reserve_hosts(&mut self, n: usize) {
        self.hosts.reserve_exact(n);
    }

    /// Number of NAT boxes.
    pub fn nat_count(&self) -> usize {
        self.nats.len()
    }

    fn realm(&self, r: RealmId) -> Result<&Realm, NetError> {
        self.realms
            .get(r.0 as usize)
            .ok_or(NetError::NoSuchRealm(r.0))
    }

    fn host(&self, h: HostId) -> Result<&NetHost, NetError> {
        self.hosts.get(h).ok_or(NetError::NoSuchHost(h))
    }

    fn host_mut(&mut self, h: HostId) -> Result<&mut NetHost, NetError> {
        self.hosts.get_mut(h).ok_or(NetError::NoSuchHost(h))
    }

    /// The NAT box `n`.
    pub fn nat(&self, n: NatId) -> Result<&NatBox, NetError> {
        self.nats
            .get(n.0 as usize)
            .map(|x| &x.nat)
            .ok_or(NetError::NoSuchNat(n.0))
    }

    /// The NAT box `n`, mutably (port forwards, tests).
    pub fn nat_mut(&mut self, n: NatId) -> Result<&mut NatBox, NetError> {
        self.nats
            .get_mut(n.0 as usize)
            .map(|x| &mut x.nat)
            .ok_or(NetError::NoSuchNat(n.0))
    }

    /// The realm behind NAT box `n`.
    pub fn nat_inside(&self, n: NatId) -> Result<RealmId, NetError> {
        self.nats
            .get(n.0 as usize)
            .map(|x| x.inside)
            .ok_or(NetError::NoSuchNat(n.0))
    }

    /// The NAT box a realm sits behind (`None` for the Internet).
    pub fn gateway(&self, r: RealmId) -> Result<Option<NatId>, NetError> {
        Ok(self.realm(r)?.gateway.map(NatId))
    }

    /// Whether the realm's NAT boxes, all the way up, are stateful firewalls that translate
    /// nothing (so a host's local address is its public one).
    fn translates(&self, n: u32) -> bool {
        self.nats[n as usize].nat.config().translate
    }

    /// The address the next host added to `realm` will get (`None` if exhausted).
    pub fn peek_ip(&self, realm: RealmId) -> Option<Ipv4Addr> {
        let r = self.realm(realm).ok()?;
        if let Some(g) = r.gateway.filter(|g| !self.translates(*g)) {
            return self.peek_ip(self.nats[g as usize].outside);
        }
        next_usable(r.next_ip, r.last_ip).map(Ipv4Addr::from)
    }

    fn alloc_ip(&mut self, realm: RealmId) -> Result<Ipv4Addr, NetError> {
        let gw = self.realm(realm)?.gateway;
        if let Some(g) = gw.filter(|g| !self.translates(*g)) {
            let outside = self.nats[g as usize].outside;
            return self.alloc_ip(outside);
        }
        let r = &mut self.realms[realm.0 as usize];
        let ip = next_usable(r.next_ip, r.last_ip).ok_or(NetError::AddressesExhausted(realm.0))?;
        r.next_ip = ip.wrapping_add(1);
        Ok(Ipv4Addr::from(ip))
    }

    /// Puts `node` at `ip` in `realm`, and — behind firewalls that do not translate — makes
    /// the same address lead to the firewall in the realms above.
    fn register(&mut self, realm: RealmId, ip: Ipv4Addr, node: Node) {
        let mut realm = realm;
        let mut node = node;
        loop {
            let r = &mut self.realms[realm.0 as usize];
            r.addrs.insert(u32::from(ip), node);
            match r.gateway {
                Some(g) if !self.nats[g as usize].nat.config().translate => {
                    node = Node::Nat(g);
                    realm = self.nats[g as usize].outside;
                }
                _ => return,
            }
        }
    }

    fn unregister(&mut self, realm: RealmId, ip: Ipv4Addr) {
        let mut realm = realm;
        loop {
            let r = &mut self.realms[realm.0 as usize];
            r.addrs.remove(&u32::from(ip));
            match r.gateway {
                Some(g) if !self.nats[g as usize].nat.config().translate => {
                    realm = self.nats[g as usize].outside
                }
                _ => return,
            }
        }
    }

    fn draw_access(realm: RealmId, link: &LinkModel, rng: &mut impl RngCore) -> u32 {
        let max = u32::try_from(link.access.as_micros()).unwrap_or(u32::MAX);
        if realm == RealmId::INTERNET && max > 0 {
            rng.next_u32() % max
        } else {
            0
        }
    }

    /// Adds a NAT box with a public address in `outside`; hosts and boxes behind it go into
    /// the returned box's inside realm, addressed from `inside_first` upward.
    pub fn add_nat(
        &mut self,
        cfg: NatConfig,
        outside: RealmId,
        inside_first: Ipv4Addr,
        inside_last: Ipv4Addr,
        link: &LinkModel,
        rng: &mut impl RngCore,
    ) -> Result<NatId, NetError> {
        self.realm(outside)?;
        let id = self.nats.len() as u32;
        let translate = cfg.translate;
        let public = if translate {
            self.alloc_ip(outside)?
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let inside = RealmId(self.realms.len() as u32);
        self.realms
            .push(Realm::new(Some(id), inside_first, inside_last));
        let access_us = Self::draw_access(outside, link, rng);
        self.nats.push(NatNode {
            nat: NatBox::new(cfg, public),
            outside,
            inside,
            access_us,
        });
        if translate {
            self.register(outside, public, Node::Nat(id));
        }
        Ok(NatId(id))
    }

    /// Adds a host (with no socket yet) to `realm`.
    pub fn add_host(
        &mut self,
        realm: RealmId,
        link: &LinkModel,
        rng: &mut impl RngCore,
    ) -> Result<HostId, NetError> {
        let ip = self.alloc_ip(realm)?;
        let id = self.hosts.len();
        let top = self.top_realm(realm);
        let access_us = Self::draw_access(top, link, rng);
        self.hosts.push(NetHost {
            realm,
            ip,
            ports: Ports::default(),
            group: 0,
            access_us,
        });
        self.register(realm, ip, Node::Host(id as u32));
        Ok(id)
    }

    /// The realm where a host's address is visible from outside (through firewalls that do
    /// not translate).
    fn top_realm(&self, realm: RealmId) -> RealmId {
        let mut realm = realm;
        while let Some(g) = self.realms[realm.0 as usize]
            .gateway
            .filter(|g| !self.translates(*g))
        {
            realm = self.nats[g as usize].outside;
        }
        realm
    }

    /// Gives a host a fresh address in its realm (its sockets keep their ports).
    pub fn renumber(&mut self, h: HostId) -> Result<Ipv4Addr, NetError> {
        let (realm, old) = {
            let host = self.host(h)?;
            (host.realm, host.ip)
        };
        let ip = self.alloc_ip(realm)?;
        self.unregister(realm, old);
        self.register(realm, ip, Node::Host(h as u32));
        self.hosts[h].ip = ip;
        Ok(ip)
    }

    /// A host's address in its own realm.
    pub fn host_ip(&self, h: HostId) -> Result<Ipv4Addr, NetError> {
        Ok(self.host(h)?.ip)
    }

    /// A host's realm.
    pub fn host_realm(&self, h: HostId) -> Result<RealmId, NetError> {
        Ok(self.host(h)?.realm)
    }

    /// Binds a socket on `port` (0 = an ephemeral port chosen with `rng`).
    pub fn bind(
        &mut self,
        h: HostId,
        port: u16,
        rng: &mut impl RngCore,
    ) -> Result<SocketId, NetError> {
        let host = self.host_mut(h)?;
        let port = if port == 0 {
            let span = u32::from(EPHEMERAL.1 - EPHEMERAL.0) + 1;
            let start = rng.next_u32() % span;
            (0..span)
                .map(|i| EPHEMERAL.0 + ((start + i) % span) as u16)
                .find(|p| !host.ports.contains(*p))
                .ok_or(NetError::TooManySockets)?
        } else if host.ports.contains(port) {
            return Err(NetError::AddrInUse(port));
        } else {
            port
        };
        let free = host.ports.iter().position(|p| p == 0);
        let slot = match free {
            Some(i) => i,
            None if host.ports.len() < MAX_SOCKETS => {
                host.ports.push(0);
                host.ports.len() - 1
            }
            None => return Err(NetError::TooManySockets),
        };
        if let Some(p) = host.ports.get_mut(slot) {
            *p = port;
        }
        Ok(SocketId(slot as u16))
    }

    /// Closes a socket.
    pub fn unbind(&mut self, h: HostId, s: SocketId) -> Result<(), NetError> {
        let host = self.host_mut(h)?;
        match host.ports.get_mut(usize::from(s.0)) {
            Some(p) if *p != 0 => {
                *p = 0;
                host.ports.trim_end();
                Ok(())
            }
            _ => Err(NetError::NoSuchSocket(s.0)),
        }
    }

    /// Closes every socket of a host (a crash).
    pub fn unbind_all(&mut self, h: HostId) -> Result<(), NetError> {
        let host = self.host_mut(h)?;
        host.ports = Ports::default();
        Ok(())
    }

    /// A socket's local address.
    pub fn socket_addr(&self, h: HostId, s: SocketId) -> Option<SocketAddrV4> {
        let host = self.hosts.get(h)?;
        let port = host.ports.get(usize::from(s.0)).filter(|p| *p != 0)?;
        Some(SocketAddrV4::new(host.ip, port))
    }

    /// Puts each listed set of hosts on its own side of a partition; unlisted hosts form one
    /// more side. Datagrams between sides are dropped until [`Network::heal`].
    pub fn partition(&mut self, sides: &[&[HostId]]) {
        for h in &mut self.hosts {
            h.group = 0;
        }
        self.partitioned = true;
        for (i, side) in sides.iter().enumerate() {
            for &h in side.iter() {
                if let Some(host) = self.hosts.get_mut(h) {
                    host.group = i as u32 + 1;
                }
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        for h in &mut self.hosts {
            h.group = 0;
        }
        self.partitioned = false;
    }

    /// The up half of a datagram's path, at send time. See the module docs.
    pub(crate) fn route_out(
        &mut self,
        now: Instant,
        out: Outgoing,
        link: &LinkModel,
        rng: &mut impl RngCore,
    ) -> Result<Transit, DropReason> {
        let Outgoing {
            host: h,
            socket,
            dst,
            ttl,
        } = out;
        let host = self.hosts.get(h as usize).ok_or(DropReason::BadSocket)?;
        let port = host
            .ports
            .get(usize::from(socket.0))
            .filter(|p| *p != 0)
            .ok_or(DropReason::BadSocket)?;
        let mut src = SocketAddrV4::new(host.ip, port);
        let mut realm = host.realm;
        let mut from = Node::Host(h);
        let mut last_up: Option<u32> = None;
        let mut ttl = ttl;
        let dst_ip = u32::from(*dst.ip());
        // A realm tree is finite, but a bound keeps a malformed topology from looping.
        for _ in 0..64 {
            let r = &self.realms[realm.0 as usize];
            if let Some(&to) = r.addrs.get(&dst_ip) {
                let hairpin = matches!(to, Node::Nat(n) if Some(n) == last_up);
                if hairpin && !self.nats[to_index(to)].nat.config().hairpinning {
                    return Err(DropReason::Hairpin);
                }
                if realm == RealmId::INTERNET && !hairpin {
                    if ttl <= link.internet_hops {
                        return Err(DropReason::Ttl);
                    }
                    ttl -= link.internet_hops;
                }
                let access_us = if realm == RealmId::INTERNET && !hairpin {
                    self.access(from).saturating_add(self.access(to))
                } else {
                    0
                };
                return Ok(Transit {
                    src_host: h,
                    to,
                    src,
                    dst,
                    ttl,
                    lan: realm != RealmId::INTERNET || hairpin,
                    access_us,
                });
            }
            let Some(g) = r.gateway else {
                return Err(DropReason::NoRoute);
            };
            if ttl <= 1 {
                return Err(DropReason::Ttl);
            }
            ttl -= 1;
            let node = &mut self.nats[g as usize];
            src = node.nat.outbound(now, src, dst, rng)?;
            from = Node::Nat(g);
            last_up = Some(g);
            realm = node.outside;
        }
        Err(DropReason::NoRoute)
    }

    /// The down half, at arrival time: the receiving host and socket.
    pub(crate) fn route_in(
        &mut self,
        now: Instant,
        t: &Transit,
    ) -> Result<(u32, SocketId), DropReason> {
        let mut to = t.to;
        let mut dst = t.dst;
        let mut ttl = t.ttl;
        for _ in 0..64 {
            match to {
                Node::Host(h) => {
                    let host = &self.hosts[h as usize];
                    // Without a partition every group is 0: no need to read the sender's record.
                    if self.partitioned {
                        let sender_group =
                            self.hosts.get(t.src_host as usize).map_or(0, |s| s.group);
                        if sender_group != host.group {
                            return Err(DropReason::Partition);
                        }
                    }
                    let slot = host
                        .ports
                        .position(dst.port())
                        .ok_or(DropReason::PortUnreachable)?;
                    return Ok((h, SocketId(slot as u16)));
                }
                Node::Nat(n) => {
                    if ttl <= 1 {
                        return Err(DropReason::Ttl);
                    }
                    ttl -= 1;
                    let node = &mut self.nats[n as usize];
                    dst = node.nat.inbound(now, t.src, dst)?;
                    let inside = node.inside;
                    to = *self.realms[inside.0 as usize]
                        .addrs
                        .get(&u32::from(*dst.ip()))
                        .ok_or(DropReason::NoRoute)?;
                }
            }
        }
        Err(DropReason::NoRoute)
    }

    fn access(&self, n: Node) -> u32 {
        match n {
            Node::Host(h) => self.hosts[h as usize].access_us,
            Node::Nat(n) => self.nats[n as usize].access_us,
        }
    }

    /// Moves every mapping of a NAT box to a new public port.
    pub fn rebind(&mut self, n: NatId, rng: &mut impl RngCore) -> Result<(), NetError> {
        self.nats
            .get_mut(n.0 as usize)
            .ok_or(NetError::NoSuchNat(n.0))?
            .nat
            .rebind(rng);
        Ok(())
    }
}

fn to_index(n: Node) -> usize {
    match n {
        Node::Host(i) | Node::Nat(i) => i as usize,
    }
}

/// The next address at or after `from` whose last octet is neither 0 nor 255.
fn next_usable(from: u32, last: u32) -> Option<u32> {
    let mut ip = from;
    while ip <= last {
        let low = ip & 0xff;
        if low != 0 && low != 255 {
            return Some(ip);
        }
        ip = ip.checked_add(1)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::{Filtering, NatConfig};
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn setup() -> (Network, LinkModel, ChaCha8Rng) {
        (
            Network::new(),
            LinkModel::default(),
            ChaCha8Rng::seed_from_u64(9),
        )
    }

    fn home(
        net: &mut Network,
        cfg: NatConfig,
        link: &LinkModel,
        rng: &mut ChaCha8Rng,
    ) -> (NatId, RealmId) {
        let n = net
            .add_nat(
                cfg,
                RealmId::INTERNET,
                Ipv4Addr::new(192, 168, 0, 2),
                Ipv4Addr::new(192, 168, 255, 254),
                link,
                rng,
            )
            .unwrap();
        (n, net.nat_inside(n).unwrap())
    }

    fn host(
        net: &mut Network,
        realm: RealmId,
        port: u16,
        link: &LinkModel,
        rng: &mut ChaCha8Rng,
    ) -> (HostId, SocketAddrV4) {
        let h = net.add_host(realm, link, rng).unwrap();
        let s = net.bind(h, port, rng).unwrap();
        (h, net.socket_addr(h, s).unwrap())
    }

    /// Sends from socket 0 of `from` and delivers at once: (receiving host, source seen).
    fn send(
        net: &mut Network,
        link: &LinkModel,
        rng: &mut ChaCha8Rng,
        from: HostId,
        to: SocketAddrV4,
        ttl: u8,
    ) -> Result<(u32, SocketAddrV4), DropReason> {
        let t = net.route_out(
            Instant::ZERO,
            Outgoing {
                host: from as u32,
                socket: SocketId(0),
                dst: to,
                ttl,
            },
            link,
            rng,
        )?;
        let (h, _) = net.route_in(Instant::ZERO, &t)?;
        Ok((h, t.src))
    }

    #[test]
    fn public_hosts_reach_each_other_with_untranslated_sources() {
        let (mut net, link, mut rng) = setup();
        let (a, aa) = host(&mut net, RealmId::INTERNET, 1000, &link, &mut rng);
        let (b, ba) = host(&mut net, RealmId::INTERNET, 2000, &link, &mut rng);
        assert_eq!(aa.ip(), &Ipv4Addr::new(16, 0, 0, 1));
        assert_eq!(
            send(&mut net, &link, &mut rng, a, ba, 64),
            Ok((b as u32, aa))
        );
        assert_eq!(
            send(
                &mut net,
                &link,
                &mut rng,
                a,
                SocketAddrV4::new(*ba.ip(), 2001),
                64
            ),
            Err(DropReason::PortUnreachable)
        );
        assert_eq!(
            send(
                &mut net,
                &link,
                &mut rng,
                a,
                "16.9.9.9:1".parse().unwrap(),
                64
            ),
            Err(DropReason::NoRoute)
        );
    }

    #[test]
    fn a_host_behind_nat_is_reachable_only_through_its_mapping() {
        let (mut net, link, mut rng) = setup();
        let (_, inside) = home(
            &mut net,
            NatConfig::cone(Filtering::AddressAndPortDependent),
            &link,
            &mut rng,
        );
        let (a, aa) = host(&mut net, inside, 5000, &link, &mut rng);
        let (b, ba) = host(&mut net, RealmId::INTERNET, 7000, &link, &mut rng);
        assert_eq!(aa.ip(), &Ipv4Addr::new(192, 168, 0, 2));
        let (to, seen) = send(&mut net, &link, &mut rng, a, ba, 64).unwrap();
        assert_eq!(to, b as u32);
        assert_eq!(seen.port(), 5000, "port preserved");
        assert_ne!(seen.ip(), aa.ip(), "translated");
        // b answers to what it saw.
        assert_eq!(
            send(&mut net, &link, &mut rng, b, seen, 64),
            Ok((a as u32, ba))
        );
        // A third host is filtered.
        let (c, _) = host(&mut net, RealmId::INTERNET, 7000, &link, &mut rng);
        assert_eq!(
            send(&mut net, &link, &mut rng, c, seen, 64),
            Err(DropReason::NatFiltered)
        );
        // Private addresses are not routed on the Internet.
        assert_eq!(
            send(&mut net, &link, &mut rng, b, aa, 64),
            Err(DropReason::NoRoute)
        );
    }

    #[test]
    fn hosts_behind_one_nat_meet_on_the_lan_and_hairpin_through_the_public_address() {
        let (mut net, link, mut rng) = setup();
        let (nat, inside) = home(
            &mut net,
            NatConfig::cone(Filtering::EndpointIndependent),
            &link,
            &mut rng,
        );
        let (a, aa) = host(&mut net, inside, 5000, &link, &mut rng);
        let (b, ba) = host(&mut net, inside, 5000, &link, &mut rng);
        let (_, server) = host(&mut net, RealmId::INTERNET, 7000, &link, &mut rng);
        // LAN: direct, untranslated.
        let t = net
            .route_out(
                Instant::ZERO,
                Outgoing {
                    host: a as u32,
                    socket: SocketId(0),
                    dst: ba,
                    ttl: 64,
                },
                &link,
                &mut rng,
            )
            .unwrap();
        assert!(t.lan);
        assert_eq!(t.src, aa);
        // b's public endpoint, learnt from a server.
        let (_, b_pub) = send(&mut net, &link, &mut rng, b, server, 64).unwrap();
        let (_, a_pub) = send(&mut net, &link, &mut rng, a, server, 64).unwrap();
        assert_eq!(b_pub.port(), 5000, "b asked first and keeps its port");
        assert_ne!(a_pub.port(), 5000, "a collides and gets another one");
        // Hairpin: a sends to b's public endpoint and is seen with its own public endpoint.
        let (to, seen) = send(&mut net, &link, &mut rng, a, b_pub, 64).unwrap();
        assert_eq!((to, seen), (b as u32, a_pub));
        // With hairpinning off the same datagram dies at the box.
        let mut off = NatConfig::cone(Filtering::EndpointIndependent);
        off.hairpinning = false;
        let (_, inside2) = home(&mut net, off, &link, &mut rng);
        let (c, _) = host(&mut net, inside2, 5000, &link, &mut rng);
        let (d, _) = host(&mut net, inside2, 6000, &link, &mut rng);
        let (_, d_pub) = send(&mut net, &link, &mut rng, d, server, 64).unwrap();
        assert_eq!(
            send(&mut net, &link, &mut rng, c, d_pub, 64),
            Err(DropReason::Hairpin)
        );
        let _ = nat;
    }

    #[test]
    fn nat_behind_nat_translates_twice() {
        let (mut net, link, mut rng) = setup();
        let cg = net
            .add_nat(
                NatConfig::carrier(),
                RealmId::INTERNET,
                Ipv4Addr::new(100, 64, 0, 2),
                Ipv4Addr::new(100, 127, 255, 254),
                &link,
                &mut rng,
            )
            .unwrap();
        let carrier = net.nat_inside(cg).unwrap();
        let h1 = net
            .add_nat(
                NatConfig::cone(Filtering::AddressAndPortDependent),
                carrier,
                Ipv4Addr::new(192, 168, 0, 2),
                Ipv4Addr::new(192, 168, 255, 254),
                &link,
                &mut rng,
            )
            .unwrap();
        let home1 = net.nat_inside(h1).unwrap();
        let h2 = net
            .add_nat(
                NatConfig::cone(Filtering::AddressAndPortDependent),
                carrier,
                Ipv4Addr::new(192, 168, 0, 2),
                Ipv4Addr::new(192, 168, 255, 254),
                &link,
                &mut rng,
            )
            .unwrap();
        let home2 = net.nat_inside(h2).unwrap();
        let (a, _) = host(&mut net, home1, 5000, &link, &mut rng);
        let (b, _) = host(&mut net, home2, 5000, &link, &mut rng);
        assert_eq!(net.host_ip(a), net.host_ip(b), "both homes use 192.168.0.2");
        let (s, sa) = host(&mut net, RealmId::INTERNET, 7000, &link, &mut rng);
        let (_, a_pub) = send(&mut net, &link, &mut rng, a, sa, 64).unwrap();
        assert_eq!(
            a_pub.ip(),
            &net.nat(cg).unwrap().public_ip(),
            "seen with the carrier's address"
        );
        assert_eq!(
            send(&mut net, &link, &mut rng, s, a_pub, 64).map(|x| x.0),
            Ok(a as u32),
            "the reply crosses both boxes"
        );
        // Two routers (home + carrier) before the Internet's 8: TTL 2 dies at the carrier,
        // TTL 3 reaches the Internet and dies there, but both mappings exist by then.
        assert_eq!(
            send(
                &mut net,
                &link,
                &mut rng,
                b,
                "16.200.0.1:1".parse().unwrap(),
                2
            ),
            Err(DropReason::Ttl)
        );
        let before = net.nat(cg).unwrap().mappings();
        assert_eq!(
            send(&mut net, &link, &mut rng, b, sa, 3),
            Err(DropReason::Ttl)
        );
        assert_eq!(
            net.nat(cg).unwrap().mappings(),
            before + 1,
            "the low-TTL probe opened b's carrier mapping"
        );
        assert_eq!(
            send(&mut net, &link, &mut rng, b, sa, 11).map(|x| x.0),
            Ok(s as u32),
            "TTL 11 = 2 NATs + 8 hops + 1"
        );
        assert_eq!(
            send(&mut net, &link, &mut rng, b, sa, 10),
            Err(DropReason::Ttl)
        );
    }

    #[test]
    fn ttl_one_dies_at_the_first_router_without_a_mapping() {
        let (mut net, link, mut rng) = setup();
        let (nat, inside) = home(
            &mut net,
            NatConfig::cone(Filtering::AddressAndPortDependent),
            &link,
            &mut rng,
        );
        let (a, _) = host(&mut net, inside, 5000, &link, &mut rng);
        let (_, sa) = host(&mut net, RealmId::INTERNET, 7000, &link, &mut rng);
        assert_eq!(
            send(&mut net, &link, &mut rng, a, sa, 1),
            Err(DropReason::Ttl)
        );
        assert_eq!(net.nat(nat).unwrap().mappings(), 0);
        assert_eq!(
            send(&mut net, &link, &mut rng, a, sa, 2),
            Err(DropReason::Ttl)
        );
        assert_eq!(net.nat(nat).unwrap().mappings(), 1);
    }

    #[test]
    fn a_firewall_keeps_public_addresses_and_drops_unsolicited_datagrams() {
        let (mut net, link, mut rng) = setup();
        let fw = net
            .add_nat(
                NatConfig::udp_firewall(),
                RealmId::INTERNET,
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 254),
                &link,
                &mut rng,
            )
            .unwrap();
        let inside = net.nat_inside(fw).unwrap();
        let (a, aa) = host(&mut net, inside, 49737, &link, &mut rng);
        assert_eq!(aa.ip(), &Ipv4Addr::new(16, 0, 0, 1), "a public address");
        let (b, ba) = host(&mut net, RealmId::INTERNET, 7000, &link, &mut rng);
        assert_eq!(
            send(&mut net, &link, &mut rng, b, aa, 64),
            Err(DropReason::NatNoMapping),
            "unsolicited"
        );
        assert_eq!(
            send(&mut net, &link, &mut rng, a, ba, 64),
            Ok((b as u32, aa)),
            "untranslated"
        );
        assert_eq!(
            send(&mut net, &link, &mut rng, b, aa, 64).map(|x| x.0),
            Ok(a as u32),
            "a reply"
        );
    }

    #[test]
    fn partitions_drop_datagrams_between_sides_until_healed() {
        let (mut net, link, mut rng) = setup();
        let (a, _) = host(&mut net, RealmId::INTERNET, 1, &link, &mut rng);
        let (b, ba) = host(&mut net, RealmId::INTERNET, 1, &link, &mut rng);
        let (c, ca) = host(&mut net, RealmId::INTERNET, 1, &link, &mut rng);
        net.partition(&[&[a, c]]);
        assert_eq!(
            send(&mut net, &link, &mut rng, a, ba, 64),
            Err(DropReason::Partition)
        );
        assert_eq!(
            send(&mut net, &link, &mut rng, a, ca, 64).map(|x| x.0),
            Ok(c as u32)
        );
        net.heal();
        assert_eq!(
            send(&mut net, &link, &mut rng, a, ba, 64).map(|x| x.0),
            Ok(b as u32)
        );
    }

    #[test]
    fn sockets_bind_unbind_and_renumber() {
        let (mut net, link, mut rng) = setup();
        let h = net.add_host(RealmId::INTERNET, &link, &mut rng).unwrap();
        let s0 = net.bind(h, 49737, &mut rng).unwrap();
        let s1 = net.bind(h, 0, &mut rng).unwrap();
        assert_eq!((s0, s1), (SocketId(0), SocketId(1)));
        assert_eq!(
            net.bind(h, 49737, &mut rng),
            Err(NetError::AddrInUse(49737))
        );
        let p1 = net.socket_addr(h, s1).unwrap().port();
        assert!((32768..=60999).contains(&p1));
        net.unbind(h, s0).unwrap();
        assert_eq!(net.socket_addr(h, s0), None);
        assert_eq!(
            net.bind(h, 1, &mut rng),
            Ok(SocketId(0)),
            "the free slot is reused"
        );
        let old = net.host_ip(h).unwrap();
        let new = net.renumber(h).unwrap();
        assert_ne!(old, new);
        let (b, _) = host(&mut net, RealmId::INTERNET, 1, &link, &mut rng);
        assert_eq!(
            send(&mut net, &link, &mut rng, b, SocketAddrV4::new(old, 1), 64),
            Err(DropReason::NoRoute)
        );
        assert_eq!(
            send(&mut net, &link, &mut rng, b, SocketAddrV4::new(new, 1), 64).map(|x| x.0),
            Ok(h as u32)
        );
        for _ in 0..300 {
            let _ = net.bind(h, 0, &mut rng);
        }
        assert!(
            net.socket_addr(h, SocketId(257)).is_some(),
            "hundreds of sockets per host"
        );
    }
}
