//! `hdht relay`: a blind relay (hyperdht's relay server) on an adaptive node, until a signal.

use clap::Args;
use hdht_tokio::{KeyPair, RelayServiceStats};
use serde::Serialize;

use super::connect::{start_node, DESTROY_TIMEOUT};
use super::{bootstrapped, random_seed, Error, Result};
use crate::args::{parse_hex32, GlobalOpts};
use crate::output::{Event, Output};

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

/// What `relay` prints (on stderr).
#[derive(Debug, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum RelayEvent {
    /// The relay's key is announced; peers relay through `publicKey`.
    Listening { public_key: String },
    /// At exit: what the relay did.
    Stats {
        /// Relay connections accepted.
        sessions: u64,
        /// Pairings completed.
        pairings: u64,
        /// Relayed pairs still active at exit.
        relayed_pairs: u64,
        /// UDX packets forwarded.
        packets_forwarded: u64,
        /// Bytes forwarded (whole UDX datagrams).
        bytes_forwarded: u64,
        /// Packets for a relay stream that were dropped.
        packets_dropped: u64,
    },
}

impl RelayEvent {
    fn stats(s: &RelayServiceStats) -> Self {
        RelayEvent::Stats {
            sessions: s.control.sessions_accepted,
            pairings: s.control.pairings_matched,
            relayed_pairs: s.control.pairings_active,
            packets_forwarded: s.forward.packets,
            bytes_forwarded: s.forward.bytes,
            packets_dropped: s.forward.dropped,
        }
    }
}

pub async fn run(args: RelayArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let out = out.on_stderr();
    let seed = match args.seed {
        Some(seed) => seed,
        None => random_seed()?,
    };
    let kp = KeyPair::from_seed(&seed);
    let (dht, mut shutdown) = start_node(global, args.port).await?;
    let started = tokio::select! {
        r = async {
            bootstrapped(&dht).await?;
            dht.relay_server(&kp)
                .await
                .map_err(|e| Error::new(format!("cannot start the relay: {e}")))
        } => Some(r),
        sig = shutdown.recv() => {
            out.event(&Event::Close { signal: sig.to_string() });
            None
        }
    };
    let result = match started {
        None => Ok(()),
        Some(Err(e)) => Err(e),
        Some(Ok(relay)) => {
            let public_key = hex::encode(relay.public_key());
            let text = format!("relaying on {public_key}");
            out.emit(&RelayEvent::Listening { public_key }, || text);
            let sig = shutdown.recv().await;
            out.event(&Event::Close {
                signal: sig.to_string(),
            });
            let s = relay.stats();
            out.emit(&RelayEvent::stats(&s), || {
                format!(
                    "relayed {} pairing(s) over {} session(s): {} packets, {} bytes forwarded, {} dropped",
                    s.control.pairings_matched,
                    s.control.sessions_accepted,
                    s.forward.packets,
                    s.forward.bytes,
                    s.forward.dropped
                )
            });
            Ok(())
        }
    };
    let _ = tokio::time::timeout(DESTROY_TIMEOUT, dht.destroy()).await;
    result
}
