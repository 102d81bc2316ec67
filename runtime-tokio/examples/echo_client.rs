//! Connects to an echo server by its public key (holepunching or relaying as the network
//! needs), sends a message, ends its side and prints what came back: `echo: <message>`.
//!
//! ```sh
//! cargo run -p hdht-tokio --example echo_client -- <public key> hello --bootstrap 127.0.0.1:49737
//! ```

mod common;

use hdht_tokio::{Dht, DhtOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USAGE: &str = "echo_client PUBLIC_KEY [MESSAGE] [--bootstrap HOST:PORT]... [--host IP]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args(USAGE);
    let key = args
        .positional
        .first()
        .and_then(|s| common::key_from_hex(s));
    let server_key = key.unwrap_or_else(|| common::fail(USAGE));
    let message = args.positional.get(1).cloned().unwrap_or("hello".into());
    let mut options = DhtOptions::default();
    if !args.bootstrap.is_empty() {
        options.bootstrap = args.bootstrap;
    }
    if let Some(host) = args.host {
        options.host = host;
    }
    let node = Dht::new(options).await?;
    node.ready().await?;

    let mut connection = node.connect(server_key).await?;
    println!(
        "connected to {}",
        common::hex(&connection.remote_public_key())
    );
    connection.write_all(message.as_bytes()).await?;
    // Ending our side tells the server we are done; it echoes the rest and ends its side.
    connection.shutdown().await?;
    let mut echo = Vec::new();
    connection.read_to_end(&mut echo).await?;
    println!("echo: {}", String::from_utf8_lossy(&echo));

    node.destroy().await;
    Ok(())
}
