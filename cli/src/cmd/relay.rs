//! `hdht relay`: a blind relay (hyperdht's relay server) on an adaptive node, until a signal.

use hdht_tokio::{KeyPair, RelayServiceStats};
use serde::Serialize;

use super::common::{bootstrapped, random_seed, Error, Result};
use super::connect::{start_node, DESTROY_TIMEOUT};
use crate::args::relay::RelayArgs;
use crate::args::GlobalOpts;
use crate::output::{Event, Output};

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
