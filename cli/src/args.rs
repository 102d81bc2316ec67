//! Command-line arguments and their parsers. Anything malformed is rejected here, by clap,
//! with a usage error (exit code 2) before any socket is opened.

use std::net::Ipv4Addr;

use clap::{Args, Parser, Subcommand};
use hdht_core::rpc::NodeId;

/// The port a node or bootstrapper uses unless told otherwise (hyperdht's default).
pub const DEFAULT_PORT: u16 = 49737;

/// HyperDHT in Rust: run nodes and bootstrappers, make key pairs, look up nodes.
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

    /// Print one JSON object per line instead of human-readable text.
    #[arg(long, global = true)]
    pub json: bool,

    /// IPv4 address to bind to (default 0.0.0.0). For `bootstrap` it is also the public
    /// address the bootstrapper announces, and is required.
    #[arg(long, global = true, value_name = "IPV4")]
    pub host: Option<Ipv4Addr>,
}

impl GlobalOpts {
    /// The bootstrap list to use: the one given, or hyperdht's public nodes.
    pub fn bootstrap_list(&self) -> Vec<String> {
        match &self.bootstrap {
            Some(list) => list.clone(),
            None => hdht_driver::DEFAULT_BOOTSTRAP
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
    /// Start a local network on 127.0.0.1 (a bootstrapper and N nodes), watch the routing
    /// tables fill, run a lookup, and tear it all down.
    Demo(DemoArgs),
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
pub struct DemoArgs {
    /// Number of nodes to start besides the bootstrapper.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
}

/// Exactly 32 bytes of hex.
pub fn parse_hex32(s: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(s.trim()).map_err(|e| format!("not valid hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "expected 32 bytes (64 hex characters), got {} bytes",
            bytes.len()
        )
    })
}

fn parse_node_id(s: &str) -> Result<NodeId, String> {
    parse_hex32(s).map(NodeId)
}

/// One bootstrap entry, validated (host names are resolved later, when the node starts).
fn parse_bootstrap_entry(s: &str) -> Result<String, String> {
    hdht_driver::parse_bootstrap(s).map_err(|e| e.to_string())?;
    Ok(s.trim().to_string())
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
    fn bootstrap_entries() {
        assert!(parse_bootstrap_entry("127.0.0.1:49737").is_ok());
        assert!(parse_bootstrap_entry("88.99.3.86@node1.hyperdht.org:49737").is_ok());
        assert!(parse_bootstrap_entry("127.0.0.1").is_err());
        assert!(parse_bootstrap_entry("host:0").is_err());
    }
}
