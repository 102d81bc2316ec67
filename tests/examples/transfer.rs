//! Bulk transfer between two Rust nodes on 127.0.0.1 through a DHT-established connection:
//! `cargo run --release -p hdht-tests --example transfer -- [MiB]`.

use std::net::Ipv4Addr;
use std::time::Instant;

use hdht_core::crypto::{hash, KeyPair};
use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let boot = hdht_tokio::Dht::new(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
            .await
            .unwrap();
        boot.ready().await.expect("bootstrapped");
        let bootstrap = vec![boot.server_address().to_string()];
        let o = |p| DhtOptions {
            bootstrap: bootstrap.clone(),
            host: Ipv4Addr::LOCALHOST,
            persistence: p,
            ..DhtOptions::isolated()
        };
        let mut nodes = Vec::new();
        for _ in 0..4 {
            let d = hdht_tokio::Dht::new(o(Persistence::Persistent))
                .await
                .unwrap();
            d.ready().await.expect("bootstrapped");
            nodes.push(d);
        }
        let a = hdht_tokio::Dht::new(o(Persistence::Adaptive))
            .await
            .unwrap();
        let b = hdht_tokio::Dht::new(o(Persistence::Adaptive))
            .await
            .unwrap();
        a.ready().await.expect("bootstrapped");
        b.ready().await.expect("bootstrapped");
        let kp = KeyPair::from_seed(&hash(b"sink"));
        let mut server = b.create_server();
        server.listen(&kp).await.unwrap();
        let t0 = Instant::now();
        let sink = tokio::spawn(async move {
            let mut conn = server.accept().await.unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0usize;
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                total += n;
            }
            (total, server)
        });
        let mut conn = a.connect(kp.public_key()).await.unwrap();
        let connected = t0.elapsed();
        let chunk = vec![0x5au8; 64 * 1024];
        let t1 = Instant::now();
        for _ in 0..(mib * 16) {
            conn.write_all(&chunk).await.unwrap();
        }
        conn.shutdown().await.unwrap();
        let (total, _server) = sink.await.unwrap();
        let secs = t1.elapsed().as_secs_f64();
        println!(
            "connect {:?}; {} bytes; {} MiB in {:.2} s = {:.1} MB/s",
            connected,
            total,
            total / (1 << 20),
            secs,
            total as f64 / secs / 1e6
        );
    });
}
