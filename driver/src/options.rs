use std::net::Ipv4Addr;

use hdht_core::crypto::KeyPair;
use hdht_core::rpc::Persistence;

use crate::DEFAULT_BOOTSTRAP;

/// Options for a node (the reference's `new DHT(opts)`).
///
/// [`DhtOptions::default()`] joins the public HyperDHT network, as the reference does: its
/// `bootstrap` is [`DEFAULT_BOOTSTRAP`]. A network of your own is an explicit choice:
/// [`DhtOptions::isolated()`] (no bootstrap nodes: the first node of a network, or a node
/// that learns its peers from [`add_node`](crate::DhtHandle::add_node)),
/// [`DhtOptions::with_bootstrap`] (your own bootstrap nodes) or
/// [`DhtOptions::bootstrapper`].
///
/// ```
/// use hdht_driver::{DhtOptions, DEFAULT_BOOTSTRAP};
///
/// assert_eq!(DhtOptions::default().bootstrap, DEFAULT_BOOTSTRAP);
/// assert!(DhtOptions::isolated().bootstrap.is_empty());
/// let local = DhtOptions::with_bootstrap(["127.0.0.1:49737"]);
/// assert_eq!(local.bootstrap, ["127.0.0.1:49737"]);
/// ```
#[derive(Clone)]
pub struct DhtOptions {
    /// Bootstrap entries (`host:port`, `ip@host:port` or a port). Default: the public
    /// network's [`DEFAULT_BOOTSTRAP`]; empty: an isolated network.
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
    /// `keyPair`: the node's default key pair, used by servers that listen and connects made
    /// without one of their own (the reference's `defaultKeyPair`). Wins over `seed`.
    pub key_pair: Option<KeyPair>,
    /// `seed`: derives the node's default key pair ([`KeyPair::from_seed`], the reference's
    /// `createKeyPair(seed)`) when `key_pair` is `None`. With neither, the node makes a fresh
    /// key pair from its RNG.
    pub seed: Option<[u8; 32]>,
    /// Seeds the node's random number generator (tests and reproducible runs; no reference
    /// equivalent). Everything random the node does follows from it: query ids, tokens'
    /// secrets, holepunch ids, stream ids, the default key pair when neither `key_pair` nor
    /// `seed` is set — and the Noise handshakes' ephemeral keys, so every connection's keys are
    /// predictable to anyone who knows the seed. Never set it outside tests. `None` (the
    /// default) seeds from the OS.
    pub rng_seed: Option<[u8; 32]>,
    /// Hand requests for commands HyperDHT doesn't define to the user (see
    /// `incoming_requests`) instead of answering UNKNOWN_COMMAND.
    pub handle_requests: bool,
    /// `maxSize`: entries per record store (default 65536).
    pub max_size: Option<usize>,
    /// `maxAge`: how long records live (default 20 min; 48 h for mutable/immutable values).
    pub max_age: Option<std::time::Duration>,
    /// Node-wide byte budget of the record stores: announce records, refresh chains, bumps,
    /// mutable and immutable values together (default 64 MiB,
    /// `hdht_core::dht::store::DEFAULT_STORE_BUDGET`). At the budget the store holding the
    /// most bytes drops its older generation, as its entry limit would. No reference
    /// equivalent (the reference bounds entries only).
    pub store_budget: Option<usize>,
    /// Node-wide budget of connection buffers: every UDX stream's receive window plus send
    /// buffer (default 512 MiB, `hdht_core::dht::budget::DEFAULT_CONNECTION_BUDGET`). New
    /// streams get smaller windows as it fills; when it is spent, connects fail with
    /// `BUFFER_BUDGET_SPENT` and servers answer handshakes with `TRY_LATER`. No reference
    /// equivalent.
    pub connection_budget: Option<usize>,
    /// `randomPunchInterval`: the least time between two punches of this node that involve a
    /// randomizing NAT (default 20 s). A connect whose punch must wait for it fails unless a
    /// blind relay carries it meanwhile (then it punches 10–20 s later, as the reference).
    pub random_punch_interval: Option<std::time::Duration>,
    /// `deferRandomPunch`: the first random punch also waits `random_punch_interval` from the
    /// node's start (the reference's option for apps that restart often).
    pub defer_random_punch: bool,
}

/// Debug output never shows secrets: `seed` and `rng_seed` print as set or not (the key pair
/// prints its public key only).
impl std::fmt::Debug for DhtOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<[u8; 32]>| s.map(|_| "<redacted>");
        f.debug_struct("DhtOptions")
            .field("bootstrap", &self.bootstrap)
            .field("port", &self.port)
            .field("host", &self.host)
            .field("persistence", &self.persistence)
            .field("firewalled", &self.firewalled)
            .field("quick_firewall", &self.quick_firewall)
            .field("any_port", &self.any_port)
            .field("concurrency", &self.concurrency)
            .field("bootstrapper_public_host", &self.bootstrapper_public_host)
            .field("key_pair", &self.key_pair)
            .field("seed", &redact(&self.seed))
            .field("rng_seed", &redact(&self.rng_seed))
            .field("handle_requests", &self.handle_requests)
            .field("max_size", &self.max_size)
            .field("max_age", &self.max_age)
            .field("store_budget", &self.store_budget)
            .field("connection_budget", &self.connection_budget)
            .field("random_punch_interval", &self.random_punch_interval)
            .field("defer_random_punch", &self.defer_random_punch)
            .finish()
    }
}

impl Default for DhtOptions {
    /// The reference's defaults: the public network's bootstrap nodes, any port, adaptive
    /// persistence, firewalled until proven otherwise.
    fn default() -> Self {
        DhtOptions {
            bootstrap: DEFAULT_BOOTSTRAP.iter().map(|s| (*s).to_owned()).collect(),
            ..DhtOptions::isolated()
        }
    }
}

impl DhtOptions {
    /// The defaults with no bootstrap nodes: a node that joins no network by itself (the
    /// reference's `bootstrap: []`). Tests and private networks start here.
    pub fn isolated() -> Self {
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
            key_pair: None,
            seed: None,
            rng_seed: None,
            handle_requests: false,
            max_size: None,
            max_age: None,
            store_budget: None,
            connection_budget: None,
            random_punch_interval: None,
            defer_random_punch: false,
        }
    }

    /// The defaults with these bootstrap nodes instead of the public ones: a private network.
    pub fn with_bootstrap<S: Into<String>>(bootstrap: impl IntoIterator<Item = S>) -> Self {
        DhtOptions {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            ..DhtOptions::isolated()
        }
    }

    /// The reference's `DHT.bootstrapper(port, host)`: persistent, not firewalled, no
    /// bootstrap (isolated: it is the network's entry point), a fixed port, and `host` as our
    /// public address.
    pub fn bootstrapper(port: u16, host: Ipv4Addr) -> Self {
        DhtOptions {
            port,
            host,
            persistence: Persistence::Persistent,
            firewalled: false,
            any_port: false,
            bootstrapper_public_host: Some(host),
            ..DhtOptions::isolated()
        }
    }

    /// The node's default key pair as these options fix it (`key_pair`, else one from
    /// `seed`); `None` when the node will draw one from its RNG.
    pub fn default_key_pair(&self) -> Option<KeyPair> {
        self.key_pair
            .clone()
            .or_else(|| self.seed.as_ref().map(KeyPair::from_seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_joins_the_public_network_and_isolated_does_not() {
        let d = DhtOptions::default();
        assert_eq!(d.bootstrap, DEFAULT_BOOTSTRAP);
        assert_eq!(d.bootstrap.len(), 3);
        assert!(DhtOptions::isolated().bootstrap.is_empty());
        assert!(DhtOptions::bootstrapper(49737, Ipv4Addr::LOCALHOST)
            .bootstrap
            .is_empty());
        // Everything else is the same.
        let i = DhtOptions::isolated();
        assert_eq!(
            (
                d.port,
                d.host,
                d.persistence,
                d.firewalled,
                d.quick_firewall
            ),
            (
                i.port,
                i.host,
                i.persistence,
                i.firewalled,
                i.quick_firewall
            )
        );
        assert_eq!((d.any_port, d.concurrency), (i.any_port, i.concurrency));
        assert!(d.key_pair.is_none() && d.seed.is_none() && d.rng_seed.is_none());
    }

    #[test]
    fn debug_hides_the_seeds() {
        let o = DhtOptions {
            seed: Some([0xab; 32]),
            rng_seed: Some([0xcd; 32]),
            ..DhtOptions::isolated()
        };
        let text = format!("{o:?}");
        assert!(text.contains("<redacted>"), "{text}");
        assert!(!text.contains("171") && !text.contains("205"), "{text}");
        assert!(!text.to_lowercase().contains("abab"), "{text}");
    }

    #[test]
    fn key_pair_wins_over_seed() {
        let seed = [7u8; 32];
        let other = KeyPair::from_seed(&[9u8; 32]);
        let mut o = DhtOptions::isolated();
        assert!(o.default_key_pair().is_none());
        o.seed = Some(seed);
        assert_eq!(
            o.default_key_pair().map(|k| k.public_key()),
            Some(KeyPair::from_seed(&seed).public_key())
        );
        o.key_pair = Some(other.clone());
        assert_eq!(
            o.default_key_pair().map(|k| k.public_key()),
            Some(other.public_key())
        );
    }
}
