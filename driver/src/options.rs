use std::net::Ipv4Addr;

use hdht_core::rpc::Persistence;

/// Options for a node (the reference's `new DHT(opts)`).
#[derive(Debug, Clone)]
pub struct DhtOptions {
    /// Bootstrap entries (`host:port`, `ip@host:port` or a port). Empty: an isolated network.
    pub bootstrap: Vec<String>,
    /// Server port: a port `p` means the range `p..p+5`, then any free port; 0 means random.
    pub port: u16,
    /// Address to bind both sockets to.
    pub host: Ipv4Addr,
    /// Persistence mode (`ephemeral` option).
    pub persistence: Persistence,
    /// Start firewalled (default true, as the reference).
    pub firewalled: bool,
    /// Decide "not firewalled" from the first bootstrap replies (`quickFirewall`, default true).
    /// With `false` a node on a single host (all peers on one IP) stays firewalled, so its
    /// connections holepunch — how the reference tests punching on 127.0.0.1.
    pub quick_firewall: bool,
    /// Fail instead of falling back to a random port when `port` can't be bound.
    pub any_port: bool,
    /// Query concurrency.
    pub concurrency: usize,
    /// Bootstrapper mode: this is our public address.
    pub bootstrapper_public_host: Option<Ipv4Addr>,
    /// Seed for the node's RNG (tests); `None` uses OS randomness.
    pub seed: Option<[u8; 32]>,
    /// Hand requests for commands HyperDHT doesn't define to the user (see
    /// `incoming_requests`) instead of answering UNKNOWN_COMMAND.
    pub handle_requests: bool,
    /// `maxSize`: entries per record store (default 65536).
    pub max_size: Option<usize>,
    /// `maxAge`: how long records live (default 20 min; 48 h for mutable/immutable values).
    pub max_age: Option<std::time::Duration>,
}

impl Default for DhtOptions {
    fn default() -> Self {
        DhtOptions {
            bootstrap: Vec::new(),
            port: 0,
            host: Ipv4Addr::UNSPECIFIED,
            persistence: Persistence::Adaptive,
            firewalled: true,
            quick_firewall: true,
            any_port: true,
            concurrency: 10,
            bootstrapper_public_host: None,
            seed: None,
            handle_requests: false,
            max_size: None,
            max_age: None,
        }
    }
}

impl DhtOptions {
    /// The reference's `DHT.bootstrapper(port, host)`: persistent, not firewalled, no
    /// bootstrap, a fixed port, and `host` as our public address.
    pub fn bootstrapper(port: u16, host: Ipv4Addr) -> Self {
        DhtOptions {
            port,
            host,
            persistence: Persistence::Persistent,
            firewalled: false,
            any_port: false,
            bootstrapper_public_host: Some(host),
            ..DhtOptions::default()
        }
    }
}
