//! Peer discovery by topic: announces a key pair under a topic (the topic is the hash of a
//! name), looks the topic up and prints every peer found, then unannounces.
//!
//! ```sh
//! cargo run -p hdht-smol --example smol_lookup_announce -- my-topic --bootstrap 127.0.0.1:49737
//! ```

mod common;

use futures_lite::{future, StreamExt};
use hdht_smol::{hash, Dht, DhtOptions, KeyPair, RandomKeyPair};

const USAGE: &str = "smol_lookup_announce [TOPIC] [--bootstrap HOST:PORT]... [--host IP]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args(USAGE);
    let name = args
        .positional
        .first()
        .cloned()
        .unwrap_or("hdht example".into());
    let mut options = DhtOptions::default();
    if !args.bootstrap.is_empty() {
        options.bootstrap = args.bootstrap;
    }
    if let Some(host) = args.host {
        options.host = host;
    }
    future::block_on(async {
        let node = Dht::new(options).await?;
        node.ready().await?;

        let topic = hash(name.as_bytes());
        let key_pair = KeyPair::random();
        // The announce's stream yields the lookup replies on the way; finishing it stores the record.
        let stored_at = node.announce(topic, &key_pair, &[]).finish().await?;
        println!(
            "announced {} under {} at {} nodes",
            common::hex(&key_pair.public_key()),
            common::hex(&topic),
            stored_at.len()
        );

        let mut lookup = node.lookup(topic);
        while let Some(reply) = lookup.next().await {
            for peer in reply.peers {
                println!(
                    "found {} (from {})",
                    common::hex(&peer.public_key),
                    reply.from
                );
            }
        }

        node.unannounce(topic, &key_pair).await?;
        println!("unannounced");
        node.destroy().await;
        Ok(())
    })
}
