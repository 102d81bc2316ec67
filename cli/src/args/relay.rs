//! `hdht relay` arguments.

use clap::Args;

use super::parse::parse_hex32;

/// `hdht relay` arguments.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The relay key pair's 32-byte seed, as 64 hex characters (see `hdht keypair`): peers
    /// name its public key in `relayThrough`. Random if absent (the public key is in the
    /// `listening` line).
    #[arg(long, value_name = "HEX", value_parser = parse_hex32)]
    pub seed: Option<[u8; 32]>,

    /// UDP port of the node (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}
