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
