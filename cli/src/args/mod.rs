//! Command-line arguments and their parsers. Anything malformed is rejected here, by clap,
//! with a usage error (exit code 2) before any socket is opened.

use std::net::{Ipv4Addr, SocketAddrV4};

use clap::{Args, Parser, Subcommand};
use hdht_tokio::core::dht::value_size;
use hdht_tokio::NodeId;

mod parse;
pub mod relay;
pub mod sim;

use parse::{parse_bootstrap_entry, parse_node_id, parse_relay};
pub use parse::{parse_hex32, parse_seq, parse_topic, value_bytes};

/// The port a node or bootstrapper uses unless told otherwise (hyperdht's default).
pub const DEFAULT_PORT: u16 = 49737;

/// HyperDHT in Rust: run nodes and bootstrappers, make key pairs, look up nodes, announce
/// and look up topics, store and fetch immutable and mutable records.
#[derive(Debug, Parser)]
#[command(name = "hdht", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Bootstrap nodes, comma separated: `host:port`, `ip@host:port` or a bare port
    /// (127.0.0.1). Default: the public HyperDHT bootstrap nodes.
    #[arg(long, global = true, value_name = "HOST:PORT[,...]", value_delimiter = ',',
          value_parser = parse_bootstrap_entry)]
    pub bootstrap: Option<Vec<String>>,

    /// Print one JSON object per line instead of human-readable text (`listen` and
    /// `connect` print theirs on stderr: their stdout carries the peer's bytes).
    #[arg(long, global = true)]
    pub json: bool,

    /// IPv4 address to bind to (default 0.0.0.0). For `bootstrap` it is also the public
    /// address the bootstrapper announces, and is required.
    #[arg(long, global = true, value_name = "IPV4")]
    pub host: Option<Ipv4Addr>,

    /// Log the node's decisions on stderr: `-v` debug (NAT class, punch strategy, the path a
    /// connection takes and why one failed), `-vv` trace. `RUST_LOG` (e.g.
    /// `RUST_LOG=hdht_core=debug`) takes precedence. With `--json` log lines are JSON too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// `listen`, `connect`, `relay`: the least time in milliseconds between two punches of
    /// the node where a NAT randomizes (hyperdht's `randomPunchInterval`, default 20000). A
    /// punch that must wait fails, unless a blind relay carries the connection meanwhile: it
    /// then punches 10–20 s later and the stream moves to the direct path.
    #[arg(long, global = true, value_name = "MS")]
    pub random_punch_interval: Option<u64>,

    /// `listen`, `connect`, `relay`: the first such punch also waits that long from the
    /// node's start (hyperdht's `deferRandomPunch`).
    #[arg(long, global = true)]
    pub defer_random_punch: bool,
}

impl GlobalOpts {
    /// The bootstrap list to use: the one given, or hyperdht's public nodes.
    pub fn bootstrap_list(&self) -> Vec<String> {
        match &self.bootstrap {
            Some(list) => list.clone(),
            None => hdht_tokio::DEFAULT_BOOTSTRAP
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// The bind address (0.0.0.0 unless `--host` was given).
    pub fn bind_host(&self) -> Ipv4Addr {
        self.host.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an Ed25519 key pair, as `DHT.keyPair(seed)` makes it.
    Keypair(KeypairArgs),
    /// Run a bootstrap node (`DHT.bootstrapper(port, host)`) until Ctrl-C / SIGTERM. It
    /// starts a network of its own unless `--bootstrap` names other nodes to join.
    Bootstrap(BootstrapArgs),
    /// Run a DHT node until Ctrl-C / SIGTERM, printing its events.
    Node(NodeArgs),
    /// Look up the nodes closest to a 32-byte target.
    FindNode(FindNodeArgs),
    /// Look up the peers announced under a topic: a line per reply, then the closest nodes.
    Lookup(LookupArgs),
    /// Announce a key pair under a topic (once, or with `--keep` until Ctrl-C / SIGTERM).
    Announce(AnnounceArgs),
    /// Remove a key pair's announcement under a topic from every node that lists it.
    Unannounce(UnannounceArgs),
    /// Store a value under its BLAKE2b-256 hash (`immutablePut`).
    ImmutablePut(ImmutablePutArgs),
    /// Fetch a value by its hash, verified against it (`immutableGet`). Exit code 1 if no
    /// node holds it.
    ImmutableGet(ImmutableGetArgs),
    /// Store a value signed by a key pair, under its public key, with a sequence number
    /// (`mutablePut`). Exit code 1 if the nodes hold a newer record (or another value with
    /// the same seq).
    MutablePut(MutablePutArgs),
    /// Fetch the record signed by a public key, its signature verified (`mutableGet`). Exit
    /// code 1 if no node holds one with at least `--seq`.
    MutableGet(MutableGetArgs),
    /// Start a local network on 127.0.0.1 (a bootstrapper and N nodes), watch the routing
    /// tables fill, run a lookup, then announce, look up, put and get records on it, connect
    /// two of its nodes by public key and move data between them, and tear it all down.
    Demo(DemoArgs),
    /// Run a whole network in the deterministic simulator: `bootstrap`, `lookup` (announce
    /// records from random nodes, then look them up from others), `churn` or `partition`.
    /// Prints progress, a summary, and last one JSON line with `seed`, `traceHash` and the
    /// figures; the same `--seed` replays the run exactly (same `traceHash`).
    ///
    /// `holepunch-matrix` connects a client behind each NAT preset (`--client`, rows) to a
    /// server behind each preset (`--server`, columns) across a public DHT, `--seeds` runs per
    /// pair at `--rtt` and `--loss`, and prints a table of success rate, median/p99 time to
    /// connect and the most common failure; with `--json` one JSON object per pair
    /// (`client`, `server`, `runs`, `successes`, `medianMs`, `p99Ms`, `errors`). The last line
    /// is the summary with `seed` and a `traceHash` over every run.
    Sim(sim::SimArgs),
    /// Accept encrypted connections to a public key: pipe one to stdin/stdout, or echo
    /// every one (`--echo`).
    ///
    /// The node (adaptive, on `--port`, 0 = any free port) announces the key pair of `--seed`
    /// and prints `listening` with its public key. Without `--echo` it accepts one connection,
    /// writes the peer's bytes to stdout and sends stdin to the peer (our side ends at the end
    /// of stdin), and exits 0 once both directions have ended. With `--echo` it sends every
    /// connection's bytes back to it and ends it when the peer ends, until Ctrl-C / SIGTERM.
    ///
    /// stdout carries only the peer's bytes, exactly. Status lines go to stderr — with
    /// `--json` one JSON object per line: `{"event":"listening","publicKey"}`, per connection
    /// `{"event":"connection","remotePublicKey","handshakeHash","remoteAddress"}` and
    /// `{"event":"end","remotePublicKey","bytesReceived","bytesSent","ms","error"}`, and
    /// `{"event":"close","signal"}` after a signal.
    Listen(ListenArgs),
    /// Connect to a public key: stdin goes to the peer, the peer's bytes to stdout.
    ///
    /// At the end of stdin our side ends (half-close); the command exits 0 once the peer has
    /// ended too and has acknowledged every byte we sent. Exit code 1 if the connection fails
    /// (`PEER_NOT_FOUND`: no node holds an announcement of that key) or breaks.
    ///
    /// stdout carries only the peer's bytes, exactly. Status lines go to stderr — with
    /// `--json` one JSON object per line:
    /// `{"event":"connected","remotePublicKey","publicKey","handshakeHash","ms"}` and at the
    /// end `{"event":"end","remotePublicKey","bytesReceived","bytesSent","ms","error"}`.
    Connect(ConnectArgs),
    /// Check this machine against the DHT: bootstrap, PING every bootstrap node (answered or
    /// not, round-trip time, our address as it saw us), then our NAT class (open /
    /// consistent / random / firewalled / unknown), public address and port, local addresses,
    /// and which peers we can expect to reach directly, by holepunching, or only through a
    /// relay. Exit code 1 if no bootstrap node answered.
    ///
    /// With `--json` one object per line: `{"event":"bootstrapNode","host","port","answered",
    /// "rttMs","seenAs"}` per bootstrap node, `{"event":"nat","natClass","firewalled",
    /// "publicAddress","localAddresses"}`, then `{"event":"reach","remoteNatClass","path",
    /// "strategy","relayOnly"}` for open, consistent and random peers.
    Doctor(DoctorArgs),
    /// Run a blind relay: peers name its public key in `relayThrough` and pair their
    /// streams through it; the node forwards their encrypted packets without any key.
    ///
    /// The node (adaptive, on `--port`) announces the key pair of `--seed` and prints
    /// `listening` with its public key, then relays until Ctrl-C / SIGTERM (exit 0). Status
    /// lines go to stderr — with `--json` `{"event":"listening","publicKey"}`,
    /// `{"event":"close","signal"}` and at exit `{"event":"stats","sessions","pairings",
    /// "relayedPairs","packetsForwarded","bytesForwarded","packetsDropped"}`.
    Relay(relay::RelayArgs),
    /// Join a topic with a Hyperswarm: every line of stdin goes to every connected peer,
    /// every peer's lines go to stdout.
    ///
    /// TOPIC is 64 hex characters (the 32-byte topic itself), or any other string, whose
    /// BLAKE2b-256 hash of its UTF-8 bytes is the topic (hypercore-crypto's
    /// `hash(Buffer.from(TOPIC))`). Lines go out whole and come out whole: the lines of two
    /// peers never interleave (a line longer than 64 KiB is cut into pieces of 64 KiB, each
    /// ended with a newline, as is a peer's last unterminated line when its connection ends).
    /// Runs until Ctrl-C / SIGTERM (exit 0); the end of stdin does not stop it.
    ///
    /// Status lines go to stderr — with `--json` one JSON object per line:
    /// `{"event":"connection","remotePublicKey","initiator"}`,
    /// `{"event":"disconnection","remotePublicKey"}`, `{"event":"flushed"}` (every peer found
    /// by the first refresh was tried) and `{"event":"close","signal"}`.
    Swarm(SwarmArgs),
}

#[derive(Debug, Args)]
pub struct SwarmArgs {
    /// The topic: 64 hex characters, or a name that is hashed (BLAKE2b-256) into one. A name
    /// of 32 or more hex digits but not 64 is refused (a raw topic cut or padded by mistake).
    #[arg(value_name = "TOPIC", value_parser = parse_topic)]
    pub topic: String,

    /// Our key pair's 32-byte seed, as 64 hex characters. Random if absent.
    #[arg(long, value_name = "HEX", value_parser = parse_hex32)]
    pub seed: Option<[u8; 32]>,

    /// Only announce the topic and accept connections (no lookups, no dials).
    #[arg(long, conflicts_with = "client")]
    pub server: bool,

    /// Only look the topic up and dial the peers found (no announce).
    #[arg(long)]
    pub client: bool,

    /// A blind relay (its 64-hex public key, e.g. from `hdht relay`) for the swarm
    /// (hyperswarm's `relayThrough`); repeat to draw one at random per connection. Our dials
    /// go through it while our own NAT randomizes ports, and to a peer after a dial failed in
    /// a way punching cannot fix; our server names it while our NAT randomizes ports.
    #[arg(long = "relay-through", value_name = "PUBLIC_KEY", value_parser = parse_hex32)]
    pub relay_through: Vec<[u8; 32]>,

    /// UDP port of the node (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

impl SwarmArgs {
    /// The 32-byte topic TOPIC names.
    pub fn topic_bytes(&self) -> [u8; 32] {
        let t = self.topic.trim();
        if t.len() == 64 {
            if let Ok(bytes) = parse_hex32(t) {
                return bytes;
            }
        }
        hdht_tokio::hash(self.topic.as_bytes())
    }
}

#[derive(Debug, Args)]
pub struct KeypairArgs {
    /// 32-byte seed as 64 hex characters (random if absent).
    #[arg(long, value_name = "HEX", value_parser = parse_hex32)]
    pub seed: Option<[u8; 32]>,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// UDP port to bind (0: any free port).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// UDP port to try first (then the next four, then any free port); 0: any free port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Never become routable (`ephemeral: true`).
    #[arg(long, conflicts_with = "persistent")]
    pub ephemeral: bool,

    /// Try to become routable right away (`ephemeral: false`). Default: adaptive.
    #[arg(long)]
    pub persistent: bool,
}

#[derive(Debug, Args)]
pub struct FindNodeArgs {
    /// The 32-byte target, as 64 hex characters.
    #[arg(value_name = "TARGET_HEX", value_parser = parse_node_id)]
    pub target: NodeId,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// The 32-byte topic, as 64 hex characters.
    #[arg(value_name = "TOPIC", value_parser = parse_hex32)]
    pub topic: [u8; 32],
}

#[derive(Debug, Args)]
pub struct AnnounceArgs {
    /// The 32-byte topic, as 64 hex characters.
    #[arg(value_name = "TOPIC", value_parser = parse_hex32)]
    pub topic: [u8; 32],

    /// The key pair's 32-byte seed, as 64 hex characters (see `hdht keypair`).
    #[arg(long, value_name = "HEX", value_parser = parse_hex32)]
    pub seed: [u8; 32],

    /// A relay address to announce with the key (repeatable).
    #[arg(long = "relay", value_name = "IPV4:PORT", value_parser = parse_relay)]
    pub relays: Vec<SocketAddrV4>,

    /// Stay running, announcing again every 10 minutes, until Ctrl-C / SIGTERM; then
    /// unannounce and exit.
    #[arg(long)]
    pub keep: bool,

    /// Seconds between announces with `--keep` (for tests).
    #[arg(long, value_name = "SECS", default_value_t = 600, hide = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_interval: u64,
}

#[derive(Debug, Args)]
pub struct UnannounceArgs {
    /// The 32-byte topic, as 64 hex characters.
    #[arg(value_name = "TOPIC", value_parser = parse_hex32)]
    pub topic: [u8; 32],

    /// The key pair's 32-byte seed, as 64 hex characters.
    #[arg(long, value_name = "HEX", value_parser = parse_hex32)]
    pub seed: [u8; 32],
}

#[derive(Debug, Args)]
pub struct ImmutablePutArgs {
    /// The value: UTF-8 text, or hex with `--hex`.
    #[arg(value_name = "VALUE")]
    pub value: String,

    /// VALUE is hex-encoded bytes.
    #[arg(long)]
    pub hex: bool,
}

#[derive(Debug, Args)]
pub struct ImmutableGetArgs {
    /// The value's 32-byte hash, as 64 hex characters.
    #[arg(value_name = "HASH", value_parser = parse_hex32)]
    pub hash: [u8; 32],
}

#[derive(Debug, Args)]
pub struct MutablePutArgs {
    /// The key pair's 32-byte seed, as 64 hex characters (see `hdht keypair`).
    #[arg(long, value_name = "HEX", value_parser = parse_hex32)]
    pub seed: [u8; 32],

    /// The record's sequence number, 0 to 9007199254740991 (2^53 - 1): higher than the stored
    /// one replaces it. The top value can never be replaced.
    #[arg(long, value_name = "N", value_parser = parse_seq)]
    pub seq: u64,

    /// The value: UTF-8 text, or hex with `--hex`.
    #[arg(value_name = "VALUE")]
    pub value: String,

    /// VALUE is hex-encoded bytes.
    #[arg(long)]
    pub hex: bool,
}

#[derive(Debug, Args)]
pub struct MutableGetArgs {
    /// The signer's 32-byte public key, as 64 hex characters.
    #[arg(value_name = "PUBLIC_KEY", value_parser = parse_hex32)]
    pub public_key: [u8; 32],

    /// Only accept a record with at least this sequence number (0 to 2^53 - 1).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = parse_seq)]
    pub seq: u64,

    /// Ask every closest node and return the newest record (the default, as the
    /// reference's `latest: true`).
    #[arg(long, conflicts_with = "first")]
    pub latest: bool,

    /// Return the first valid record any node sends (`latest: false`): faster, maybe older.
    #[arg(long)]
    pub first: bool,
}

impl MutableGetArgs {
    /// The reference's `latest` option: true unless `--first`.
    pub fn latest(&self) -> bool {
        !self.first
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of nodes to start besides the bootstrapper (at least 2: records are written by
    /// one node and read by another).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(2..=64))]
    pub nodes: u16,

    /// MiB sent from the last node to node 0 through the encrypted connection at the end.
    #[arg(long, value_name = "MIB", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub transfer_mib: u32,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The server key pair's 32-byte seed, as 64 hex characters (see `hdht keypair`).
    /// Random if absent (the public key is in the `listening` line).
    #[arg(long, value_name = "HEX", value_parser = parse_hex32)]
    pub seed: Option<[u8; 32]>,

    /// Send every connection's bytes back to it, and keep accepting connections until
    /// Ctrl-C / SIGTERM (nothing is read from stdin or written to stdout).
    #[arg(long)]
    pub echo: bool,

    /// A blind relay (its 64-hex public key, e.g. from `hdht relay`) to pair firewalled
    /// clients through (`relayThrough`); repeat to draw one at random per connection.
    /// Punching goes on, and a connection moves to the direct path when a punch wins.
    #[arg(long = "relay-through", value_name = "PUBLIC_KEY", value_parser = parse_hex32)]
    pub relay_through: Vec<[u8; 32]>,

    /// UDP port of the node (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// UDP port of the node (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The server's 32-byte public key, as 64 hex characters.
    #[arg(value_name = "PUBLIC_KEY", value_parser = parse_hex32)]
    pub public_key: [u8; 32],

    /// Our key pair's 32-byte seed, as 64 hex characters (the server sees its public key).
    /// Random if absent.
    #[arg(long, value_name = "HEX", value_parser = parse_hex32)]
    pub seed: Option<[u8; 32]>,

    /// A blind relay (its 64-hex public key) to offer the server (`relayThrough`; the
    /// server's own relay wins); repeat to draw one at random. Used only when no direct path
    /// exists; the connection moves to the direct path when a punch wins.
    #[arg(long = "relay-through", value_name = "PUBLIC_KEY", value_parser = parse_hex32)]
    pub relay_through: Vec<[u8; 32]>,

    /// UDP port of the node (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// Once the first connection ended, connect to the same server again through the same
    /// node (its relay sessions still warm), write TEXT, read as many bytes back (an echoing
    /// server) and end; prints a `second` event (`connectMs`, `firstByteMs` from that
    /// `connect()` call). For benchmarks of a second connect.
    #[arg(long, value_name = "TEXT")]
    pub second_probe: Option<String>,
}

/// `--relay-through` keys as a selector: none, one key, or a list drawn from.
pub fn relay_selector(keys: &[[u8; 32]]) -> Option<hdht_tokio::RelaySelector> {
    match keys {
        [] => None,
        [k] => Some(hdht_tokio::RelaySelector::Key(*k)),
        many => Some(hdht_tokio::RelaySelector::List(many.to_vec())),
    }
}

/// Checks what clap cannot check alone (a `--hex` value). `Err((subcommand, message))` is a
/// usage error.
pub fn validate(command: &Command) -> Result<(), (&'static str, String)> {
    match command {
        // The client node is ephemeral; a value whose put or get can't fit a datagram is a
        // usage error, found before anything is sent.
        Command::ImmutablePut(a) => value_bytes(&a.value, a.hex)
            .and_then(|v| value_size::check_immutable(v.len(), false).map_err(|e| e.to_string()))
            .map_err(|e| ("immutable-put", e)),
        Command::MutablePut(a) => value_bytes(&a.value, a.hex)
            .and_then(|v| {
                value_size::check_mutable(v.len(), a.seq, false).map_err(|e| e.to_string())
            })
            .map_err(|e| ("mutable-put", e)),
        Command::Sim(a) => a.validate().map_err(|e| ("sim", e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn hex32() {
        assert_eq!(parse_hex32(&"00".repeat(32)), Ok([0; 32]));
        assert!(parse_hex32("zz").unwrap_err().contains("hex"));
        assert!(parse_hex32("0011").unwrap_err().contains("got 2 bytes"));
    }

    #[test]
    fn values_and_relays() {
        assert_eq!(value_bytes("héllo", false), Ok("héllo".as_bytes().to_vec()));
        assert_eq!(value_bytes("00ff", true), Ok(vec![0, 255]));
        assert!(value_bytes("0g", true)
            .unwrap_err()
            .contains("not valid hex"));
        assert_eq!(
            parse_relay("127.0.0.1:5"),
            Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5))
        );
        assert!(parse_relay("127.0.0.1").is_err());
        assert!(parse_relay("127.0.0.1:0").is_err());
        assert!(parse_relay("host:1").is_err());
    }

    #[test]
    fn mutable_get_is_latest_unless_first() {
        let cli = Cli::try_parse_from(["hdht", "mutable-get", &"11".repeat(32)]).unwrap();
        let Command::MutableGet(a) = cli.command else {
            panic!("mutable-get")
        };
        assert!(a.latest());
        let cli =
            Cli::try_parse_from(["hdht", "mutable-get", &"11".repeat(32), "--first"]).unwrap();
        let Command::MutableGet(a) = cli.command else {
            panic!("mutable-get")
        };
        assert!(!a.latest());
        assert!(Cli::try_parse_from([
            "hdht",
            "mutable-get",
            &"11".repeat(32),
            "--first",
            "--latest"
        ])
        .is_err());
    }

    #[test]
    fn swarm_topics() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Swarm(a) = cli.command else {
                panic!("swarm")
            };
            a
        };
        let a = parse(&["hdht", "swarm", &"ab".repeat(32)]);
        assert_eq!(a.topic_bytes(), [0xab; 32]);
        let a = parse(&["hdht", "swarm", "chat", "--server"]);
        // hypercore-crypto 3.7.0: `hash(Buffer.from('chat'))`.
        assert_eq!(
            hex::encode(a.topic_bytes()),
            "568ce007051fded19e9a754a5053f8eed8fa05984a34cd5d96685e5016d39dde"
        );
        assert!(a.server && !a.client);
        assert!(Cli::try_parse_from(["hdht", "swarm", "x", "--server", "--client"]).is_err());
        // A short hex name is a name; a raw topic of the wrong length or nothing is refused.
        assert_eq!(
            parse(&["hdht", "swarm", "cafe"]).topic_bytes(),
            hdht_tokio::hash(b"cafe")
        );
        for bad in [
            "ab".repeat(31) + "a",
            "ab".repeat(33),
            "ab".repeat(16),
            String::new(),
        ] {
            let e = Cli::try_parse_from(["hdht", "swarm", &bad]).unwrap_err();
            assert!(e.to_string().contains("topic"), "{bad}: {e}");
        }
    }

    #[test]
    fn bootstrap_entries() {
        assert!(parse_bootstrap_entry("127.0.0.1:49737").is_ok());
        assert!(parse_bootstrap_entry("88.99.3.86@node1.hyperdht.org:49737").is_ok());
        assert!(parse_bootstrap_entry("127.0.0.1").is_err());
        assert!(parse_bootstrap_entry("host:0").is_err());
    }
}
