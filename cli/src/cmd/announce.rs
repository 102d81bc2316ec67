//! `hdht announce TOPIC --seed HEX [--relay A]… [--keep]` and `hdht unannounce TOPIC --seed HEX`.
//!
//! A one-shot announce leaves the record in place when it exits (its node is destroyed with
//! `force`, which skips the unannounce a graceful destroy does); the record then lives as long
//! as the storing nodes keep records (20 min in the reference). With `--keep` the command
//! announces again every 10 minutes until a signal, then unannounces and exits 0.

use std::time::Duration;

use hdht_tokio::{Dht, KeyPair};
use serde::Serialize;

use super::common::{bootstrapped, start_client, until_signal, Error, Result};
use super::lookup;
use crate::args::{AnnounceArgs, GlobalOpts, UnannounceArgs};
use crate::output::{Event, NodeAddr, Output};
use crate::signal::Shutdown;

/// How long the unannounce after a signal (with `--keep`) may take.
const UNANNOUNCE_TIMEOUT: Duration = Duration::from_secs(20);

/// The lines `announce` and `unannounce` end with.
#[derive(Debug, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum RecordEvent {
    /// The record is stored at `closestNodes`.
    Announced {
        public_key: String,
        closest_nodes: Vec<NodeAddr>,
    },
    /// The record was removed from every node that listed it.
    Unannounced { public_key: String },
}

pub async fn run(args: AnnounceArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let kp = KeyPair::from_seed(&args.seed);
    let (dht, mut shutdown) = start_client(global).await?;
    let first = until_signal(&mut shutdown, async {
        bootstrapped(&dht).await?;
        announce_once(&dht, &args, &kp, out).await
    })
    .await;
    if let Err(e) = first {
        // Whatever part of the record was stored is removed again with --keep (the user
        // asked for an announcement that ends with the command); a one-shot leaves it.
        if args.keep {
            destroy_gracefully(dht).await;
        } else {
            dht.destroy_force().await;
        }
        return Err(e);
    }
    if !args.keep {
        dht.destroy_force().await;
        return Ok(());
    }

    let sig = keep_announcing(&dht, &args, &kp, out, &mut shutdown).await;
    out.event(&Event::Close {
        signal: sig.to_string(),
    });
    let unannounced = tokio::select! {
        r = tokio::time::timeout(UNANNOUNCE_TIMEOUT, dht.unannounce(args.topic, &kp)) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::from_err("unannounce failed", &e)),
            Err(_) => Err(Error::coded("TIMEOUT", format!(
                "unannounce took longer than {} s", UNANNOUNCE_TIMEOUT.as_secs()
            ))),
        },
        sig = shutdown.recv() => Err(Error::coded("INTERRUPTED", format!("unannounce interrupted by {sig}"))),
    };
    match unannounced {
        Ok(()) => {
            emit_unannounced(out, &kp);
            destroy_gracefully(dht).await;
            Ok(())
        }
        Err(e) => {
            dht.destroy_force().await;
            Err(e)
        }
    }
}

/// Announces again every `--keep-interval` seconds until a signal; returns its name. A failed
/// refresh is reported on stderr and retried at the next interval.
async fn keep_announcing(
    dht: &Dht,
    args: &AnnounceArgs,
    kp: &KeyPair,
    out: Output,
    shutdown: &mut Shutdown,
) -> &'static str {
    let interval = Duration::from_secs(args.keep_interval);
    loop {
        tokio::select! {
            sig = shutdown.recv() => return sig,
            _ = tokio::time::sleep(interval) => {}
        }
        tokio::select! {
            sig = shutdown.recv() => return sig,
            r = announce_once(dht, args, kp, out) => {
                if let Err(e) = r {
                    eprintln!("hdht: warning: {e}; trying again in {} s", interval.as_secs());
                }
            }
        }
    }
}

/// One announce: a line per lookup reply, then `announced` with the nodes that store it.
async fn announce_once(dht: &Dht, args: &AnnounceArgs, kp: &KeyPair, out: Output) -> Result<()> {
    let stream = dht.announce(args.topic, kp, &args.relays);
    let (_, closest) = lookup::drain(stream, out, "announce").await?;
    let public_key = hex::encode(kp.public_key());
    let text = format!(
        "announced {public_key} under {} at {} node(s)",
        hex::encode(args.topic),
        closest.len()
    );
    let ev = RecordEvent::Announced {
        public_key,
        closest_nodes: closest.into_iter().map(NodeAddr::from).collect(),
    };
    out.emit(&ev, || text);
    Ok(())
}

fn emit_unannounced(out: Output, kp: &KeyPair) {
    let public_key = hex::encode(kp.public_key());
    let text = format!("unannounced {public_key}");
    out.emit(&RecordEvent::Unannounced { public_key }, || text);
}

/// A graceful destroy (it unannounces whatever this node still announces), bounded in time;
/// past the bound the node is dropped, which forces it down.
async fn destroy_gracefully(dht: Dht) {
    let _ = tokio::time::timeout(UNANNOUNCE_TIMEOUT, dht.destroy()).await;
}

pub async fn run_unannounce(args: UnannounceArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let kp = KeyPair::from_seed(&args.seed);
    let (dht, mut shutdown) = start_client(global).await?;
    let result = until_signal(&mut shutdown, async {
        bootstrapped(&dht).await?;
        dht.unannounce(args.topic, &kp)
            .await
            .map_err(|e| Error::from_err("unannounce failed", &e))
    })
    .await;
    dht.destroy_force().await;
    result?;
    emit_unannounced(out, &kp);
    Ok(())
}
