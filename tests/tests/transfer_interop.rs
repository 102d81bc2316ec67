//! Bulk data through DHT-established encrypted connections, Rust ⇄ Node.js, both directions:
//! every byte arrives, checked by SHA-256 of the whole stream.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;
use hdht_tests::runtime::{Runtime, Smol, Tokio};
use hdht_tests::NodePeers;
use rand_core::{RngCore, SeedableRng};
use serde_json::json;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

async fn both_directions<R: Runtime>(size: usize) {
    let budget = Duration::from_secs(120);
    let peers = NodePeers::new();
    let net = R::blocking(|| peers.testnet_with(json!({"size": 5, "kind": "hyperdht"})))
        .expect("node testnet");
    R::blocking(|| {
        peers.spawn(
            "node",
            json!({"kind": "hyperdht", "bootstrap": net.bootstrap}),
        )
    })
    .expect("node peer");
    let dht = R::dht(DhtOptions {
        bootstrap: net.bootstrap.clone(),
        host: Ipv4Addr::LOCALHOST,
        persistence: Persistence::Adaptive,
        ..DhtOptions::isolated()
    })
    .await
    .expect("rust node");
    R::timeout(Duration::from_secs(30), dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");

    // Rust → Node.
    let seed = hash(b"node sink");
    let node_pk = KeyPair::from_seed(&seed).public_key();
    R::blocking(|| {
        peers.call(json!({"op": "sinkListen", "name": "node", "seed": hex::encode(seed)}))
    })
    .expect("sink");
    let mut conn = R::timeout(budget, dht.connect(node_pk))
        .await
        .expect("connect timed out")
        .expect("connect");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(size as u64);
    let mut sent = Sha256::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        rng.fill_bytes(&mut chunk[..n]);
        sent.update(&chunk[..n]);
        R::timeout(budget, conn.write_all(&chunk[..n]))
            .await
            .expect("write timed out")
            .expect("write");
        left -= n;
    }
    R::timeout(budget, conn.close())
        .await
        .expect("timed out")
        .expect("end");
    let mut rest = Vec::new();
    R::timeout(budget, conn.read_to_end(&mut rest))
        .await
        .expect("peer end timed out")
        .expect("read to end");
    let sinks =
        R::blocking(|| peers.call(json!({"op": "sinkResults", "name": "node"}))).expect("results");
    let sink = &sinks["sinks"][0];
    assert_eq!(
        sink["bytes"].as_u64(),
        Some(size as u64),
        "Node received every byte"
    );
    assert_eq!(
        sink["sha256"].as_str(),
        Some(hex::encode(sent.finalize()).as_str()),
        "and in order"
    );
    drop(conn);

    // Node → Rust.
    let kp = KeyPair::from_seed(&hash(b"rust sink"));
    let mut server = dht.create_server();
    R::timeout(budget, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");
    let receiver = std::thread::spawn(move || {
        futures_lite::future::block_on(async move {
            let mut conn = server.accept().await.expect("connection");
            let mut got = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0usize;
            loop {
                let n = conn.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got.update(&buf[..n]);
                total += n;
            }
            conn.close().await.expect("end our side");
            (total, hex::encode(got.finalize()), server)
        })
    });
    let pk = hex::encode(kp.public_key());
    let sent = R::blocking(|| {
        peers.call_timeout(
            json!({"op": "sendRandom", "name": "node", "publicKey": pk, "size": size}),
            budget,
        )
    })
    .expect("node sends");
    let (total, digest, _server) = receiver.join().expect("receiver");
    assert_eq!(total, size, "Rust received every byte");
    assert_eq!(
        Some(digest.as_str()),
        sent["sha256"].as_str(),
        "and in order"
    );
    R::destroy(dht).await;
}

/// The full 256 MiB each way, on tokio.
#[test]
fn tokio_256_mib_both_directions() {
    Tokio::run(both_directions::<Tokio>(256 * MIB));
}

#[test]
fn smol_32_mib_both_directions() {
    Smol::run(both_directions::<Smol>(32 * MIB));
}
