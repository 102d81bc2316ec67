//! Node options (dht-rpc's constructor options, with the reference's defaults).

use alloc::vec::Vec;
use core::net::SocketAddrV4;

/// How a node decides whether to become persistent (routable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Persistence {
    /// The default: start ephemeral, become persistent once the network has been stable and
    /// reachable for a while (dht-rpc's `adaptive`).
    #[default]
    Adaptive,
    /// `ephemeral: true`: never routable.
    Ephemeral,
    /// `ephemeral: false`: try to become persistent during bootstrap.
    Persistent,
}

/// Options for an [`RpcNode`](super::RpcNode).
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// Resolved bootstrap addresses (the driver resolves host names).
    pub bootstrap: Vec<SocketAddrV4>,
    /// Nodes to put in the routing table at start (`nodes`).
    pub nodes: Vec<SocketAddrV4>,
    /// The persistence mode.
    pub persistence: Persistence,
    /// Start firewalled (the reference's default is true).
    pub firewalled: bool,
    /// Try the quick PING_NAT test during bootstrap.
    pub quick_firewall: bool,
    /// Query concurrency.
    pub concurrency: usize,
    /// Congestion window per 750 ms slot.
    pub max_window: u32,
    /// Largest DELAYED_PING delay honoured, in ms.
    pub max_ping_delay: u32,
    /// Send DOWN_HINTs about dead nodes to the nodes that referred them.
    pub send_down_hints: bool,
    /// Down hints per tick (`None` = unlimited).
    pub down_hints_rate_limit: Option<u32>,
    /// The port our server socket is bound to (the driver knows it).
    pub server_port: u16,
    /// Bootstrapper mode: our public address, seeded into the NAT sampler.
    pub bootstrapper: Option<SocketAddrV4>,
    /// Hand external (application) requests to the owner as events instead of answering
    /// UNKNOWN_COMMAND.
    pub deliver_requests: bool,
    /// Adaptive request timeouts (local timing only, nothing changes on the wire): per-node
    /// timeouts from measured round trips, shorter first tries to nodes never heard from,
    /// fewer retries for never-heard nodes a query was referred to, and queries that stop
    /// waiting for visits that missed two timers. `false` keeps the reference's fixed 1 s per
    /// transmission.
    pub adaptive_timeouts: bool,
    /// Caps on routing-table entries per IP and per /24, applied to public addresses only
    /// (loopback and private networks, where every node may share an address, are exempt).
    /// `None` disables them.
    pub ip_limits: Option<IpLimits>,
}

/// How many routing-table entries one public IP, or one /24, may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpLimits {
    /// Entries per IPv4 address.
    pub per_ip: usize,
    /// Entries per /24 network.
    pub per_subnet: usize,
}

impl Default for IpLimits {
    fn default() -> Self {
        IpLimits {
            per_ip: 2,
            per_subnet: 8,
        }
    }
}

impl IpLimits {
    /// Whether the limits apply to `ip`: public unicast addresses only (not loopback,
    /// private, link-local, shared/CGNAT, benchmarking, documentation, multicast, reserved).
    pub fn applies_to(ip: &core::net::Ipv4Addr) -> bool {
        let o = ip.octets();
        !(ip.is_loopback()
            || ip.is_private()
            || ip.is_link_local()
            || ip.is_unspecified()
            || ip.is_broadcast()
            || ip.is_documentation()
            || ip.is_multicast()
            || o[0] == 0
            || o[0] >= 240
            || (o[0] == 100 && (o[1] & 0xc0) == 64)
            || (o[0] == 198 && (o[1] & 0xfe) == 18))
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            bootstrap: Vec::new(),
            nodes: Vec::new(),
            persistence: Persistence::Adaptive,
            firewalled: true,
            quick_firewall: true,
            concurrency: 10,
            max_window: 80,
            max_ping_delay: 10_000,
            send_down_hints: true,
            down_hints_rate_limit: Some(50),
            server_port: 0,
            bootstrapper: None,
            deliver_requests: false,
            adaptive_timeouts: true,
            ip_limits: Some(IpLimits::default()),
        }
    }
}

impl RpcConfig {
    /// A bootstrapper's options: persistent, not firewalled, no bootstrap, seeded with `public`.
    pub fn bootstrapper(public: SocketAddrV4) -> Self {
        RpcConfig {
            persistence: Persistence::Persistent,
            firewalled: false,
            bootstrapper: Some(public),
            server_port: public.port(),
            ..RpcConfig::default()
        }
    }
}
