//! An echo server reachable by public key: prints `listening <public key>`, then writes back
//! whatever each connection sends until that connection ends its side.
//!
//! ```sh
//! cargo run -p hdht-smol --example smol_echo_server -- --bootstrap 127.0.0.1:49737
//! cargo run -p hdht-smol --example smol_echo_client -- <public key> hello --bootstrap 127.0.0.1:49737
//! ```

mod common;

use async_executor::Executor;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use hdht_smol::{Connection, Dht, DhtOptions, KeyPair, RandomKeyPair};

const USAGE: &str = "smol_echo_server [--bootstrap HOST:PORT]... [--host IP]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args(USAGE);
    let mut options = DhtOptions::default();
    if !args.bootstrap.is_empty() {
        options.bootstrap = args.bootstrap;
    }
    if let Some(host) = args.host {
        options.host = host;
    }
    // Connections are served concurrently, each a task on this executor.
    let ex = Executor::new();
    future::block_on(ex.run(async {
        let node = Dht::new(options).await?;
        node.ready().await?;

        // A fresh identity each run; a fixed one would come from `KeyPair::from_seed`.
        let key_pair = KeyPair::random();
        let mut server = node.create_server();
        server.listen(&key_pair).await?;
        println!("listening {}", common::hex(&key_pair.public_key()));

        while let Some(connection) = server.accept().await {
            println!(
                "connection from {}",
                common::hex(&connection.remote_public_key())
            );
            ex.spawn(echo(connection)).detach();
        }
        Ok(())
    }))
}

/// Writes back what it reads, then ends our side once the client ended theirs.
async fn echo(mut connection: Connection) -> std::io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = connection.read(&mut buf).await?;
        if n == 0 {
            return connection.close().await;
        }
        connection.write_all(&buf[..n]).await?;
    }
}
