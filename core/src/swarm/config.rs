//! Swarm options, with the reference's defaults (hyperswarm 4.17.2 `index.js:13-16`,
//! `lib/peer-discovery.js:4-8`) and hdht's own limits.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use crate::crypto::KeyPair;
use crate::relay::RelaySelector;

/// Soft cap on the connections our dials may bring us to (`MAX_PEERS`).
pub const MAX_PEERS: usize = 64;
/// Dials in progress at once (`MAX_PARALLEL`).
pub const MAX_PARALLEL: usize = 3;
/// Incoming connections held at once (hdht's bound; the reference has none, see
/// [`SwarmConfig::max_server_connections`]).
pub const MAX_SERVER_CONNECTIONS: usize = 64;
/// Time between two refreshes of a topic (`REFRESH_INTERVAL`).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Uniform extra delay of each refresh (`RANDOM_JITTER`).
pub const REFRESH_JITTER: Duration = Duration::from_secs(2 * 60);
/// A refresh timer firing later than this past its delay means the machine slept: the
/// refresh is postponed by a fresh jitter instead (`DELAY_GRACE_PERIOD`).
pub const DELAY_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Peer ids a discovery remembers for its `limit` (`MAX_DISCOVERY_CACHE`).
pub const MAX_DISCOVERY_CACHE: usize = 64;
/// Topics a swarm joins at once (hdht's bound; each one runs queries).
pub const MAX_TOPICS: usize = 1024;
/// Peers a swarm remembers (hdht's bound: discovery replies are network input).
pub const MAX_KNOWN_PEERS: usize = 16_384;

/// The default rendezvous lookups: after a topic's first refresh, extra lookups this long
/// after it ended (see [`SwarmConfig::rendezvous`]).
pub fn default_rendezvous() -> Vec<Duration> {
    vec![
        Duration::from_secs(2),
        Duration::from_secs(8),
        Duration::from_secs(30),
    ]
}

/// Options of a [`Swarm`](super::Swarm).
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Our identity, for listening and dialing.
    pub key_pair: KeyPair,
    /// Dialing stops while `factor × connections ≥ max_peers` (`maxPeers`, default 64; factor
    /// 1–4 by the number of explicit peers). Counts every connection, incoming too.
    pub max_peers: usize,
    /// Dials in progress at once (`maxParallel`, default 3).
    pub max_parallel: usize,
    /// Our dials (pending and open) at once (`maxClientConnections`, default unlimited).
    pub max_client_connections: usize,
    /// Incoming connections at once (`maxServerConnections`). The reference stores this
    /// option and never checks it, so its incoming connections are unbounded; hdht refuses a
    /// handshake from a new peer (silently, as a firewall does) once this many incoming
    /// connections are held, default [`MAX_SERVER_CONNECTIONS`]. A peer we already hold a
    /// connection to may always replace it (the duplicate rule).
    pub max_server_connections: usize,
    /// Retry periods S, M, L, X (`backoffs`); `None` = the reference's (1 s, 5 s, 15 s, 10 min
    /// plus their random extra of up to 0.5 s, 1 s, 2 s, 2 min).
    pub backoffs: Option<[Duration; 4]>,
    /// Random extra added once to each retry period (`jitter`, default 500 ms).
    pub jitter: Duration,
    /// Time between refreshes of a topic (default 10 min).
    pub refresh_interval: Duration,
    /// Uniform extra delay of each refresh (default 0–2 min).
    pub refresh_jitter: Duration,
    /// hdht's fix for peers that join a topic at the same moment (spec 06 §2.3, §12 #1: each
    /// one's lookup ran before the others' announces were stored, and the next refresh is
    /// 10–12 min away). After a client-mode discovery's first refresh ends — for a server
    /// that is when its own record is stored — the swarm looks the topic up again after each
    /// of these delays (default 2 s, 8 s, 30 s). By then the records of every peer that joined
    /// within the same few seconds have landed, so such peers find each other within seconds;
    /// the later rungs catch slow announces. Each rung is one plain lookup (no announce); an
    /// empty list gives the reference's behaviour.
    pub rendezvous: Vec<Duration>,
    /// `relayThrough`: the blind relay(s) our dials go through, as the reference's swarm uses
    /// them — only when our own NAT is randomizing (`dht.randomized`) or after a dial to that
    /// peer failed in a way punching cannot fix (`HOLEPUNCH_ABORTED`,
    /// `HOLEPUNCH_DOUBLE_RANDOMIZED_NATS`, `CANNOT_HOLEPUNCH`, `REMOTE_NOT_HOLEPUNCHABLE`: the
    /// peer is then marked [`force_relaying`](super::PeerInfo::force_relaying) and redialed
    /// at once). A callback is asked under the same rule (the reference passes it the
    /// `force` flag instead). The swarm's server names no relay of its own: a client that
    /// must relay brings one, and the core skips relaying where the path is direct.
    pub relay_through: Option<RelaySelector>,
}

impl SwarmConfig {
    /// The defaults with `key_pair`.
    pub fn new(key_pair: KeyPair) -> Self {
        SwarmConfig {
            key_pair,
            max_peers: MAX_PEERS,
            max_parallel: MAX_PARALLEL,
            max_client_connections: usize::MAX,
            max_server_connections: MAX_SERVER_CONNECTIONS,
            backoffs: None,
            jitter: super::retry::BACKOFF_JITTER,
            refresh_interval: REFRESH_INTERVAL,
            refresh_jitter: REFRESH_JITTER,
            rendezvous: default_rendezvous(),
            relay_through: None,
        }
    }
}

/// `join(topic, {server, client, limit})`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinOptions {
    /// Announce the topic and accept connections (default true).
    pub server: bool,
    /// Look the topic up and dial the peers found (default true).
    pub client: bool,
    /// At most this many new peers handed to the dial queue per refresh (`None` = no limit);
    /// one value per topic, the latest join or refresh sets it.
    pub limit: Option<usize>,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            server: true,
            client: true,
            limit: None,
        }
    }
}
