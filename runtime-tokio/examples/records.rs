//! Records stored on the DHT: an immutable value (found by its hash) and a mutable one (signed,
//! found by the signer's public key, replaced by a higher sequence number). Prints each step.
//!
//! ```sh
//! cargo run -p hdht-tokio --example records -- "some value" --bootstrap 127.0.0.1:49737
//! ```

mod common;

use hdht_tokio::{Dht, DhtOptions, KeyPair, RandomKeyPair};

const USAGE: &str = "records [VALUE] [--bootstrap HOST:PORT]... [--host IP]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args(USAGE);
    let value = args.positional.first().cloned().unwrap_or("hello".into());
    let mut options = DhtOptions::default();
    if !args.bootstrap.is_empty() {
        options.bootstrap = args.bootstrap;
    }
    if let Some(host) = args.host {
        options.host = host;
    }
    let node = Dht::new(options).await?;
    node.ready().await?;

    // Immutable: the key is the value's hash, so anyone holding the hash can check the value.
    let put = node.immutable_put(value.as_bytes()).await?;
    println!("immutable put {}", common::hex(&put.hash));
    let got = node
        .immutable_get(put.hash)
        .await?
        .ok_or("immutable value not found")?;
    println!("immutable get: {}", String::from_utf8_lossy(&got.value));

    // Mutable: signed by a key pair; a put with a higher seq replaces the value.
    let key_pair = KeyPair::random();
    for (seq, text) in [(1, format!("{value} v1")), (2, format!("{value} v2"))] {
        node.mutable_put(&key_pair, text.as_bytes(), seq).await?;
        println!("mutable put seq {seq}");
    }
    let latest = node.mutable_get(key_pair.public_key(), 0, true).await?;
    let latest = latest.ok_or("mutable value not found")?;
    println!(
        "mutable get seq {}: {}",
        latest.seq,
        String::from_utf8_lossy(&latest.value)
    );

    node.destroy().await;
    Ok(())
}
