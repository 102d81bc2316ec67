//! Node.js clients connect to Node.js servers through a DHT made only of Rust nodes: every
//! FIND_PEER, PEER_HANDSHAKE and PEER_HOLEPUNCH is answered or relayed by hdht's router.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures_lite::StreamExt;
use hdht_core::crypto::hash;
use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;
use hdht_tests::runtime::{Runtime, Smol, Tokio};
use hdht_tests::NodePeers;
use serde_json::json;

const STEP: Duration = Duration::from_secs(30);

async fn node_peers_connect_through_rust_relays<R: Runtime>() {
    let peers = NodePeers::new();
    let boot = R::dht(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
        .await
        .expect("bootstrapper");
    R::timeout(STEP, boot.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    let bootstrap = vec![boot.server_address().to_string()];
    let mut rust = vec![];
    for _ in 0..8 {
        let opts = DhtOptions {
            bootstrap: bootstrap.clone(),
            host: Ipv4Addr::LOCALHOST,
            persistence: Persistence::Persistent,
            ..DhtOptions::isolated()
        };
        let d = R::dht(opts).await.expect("rust node");
        R::timeout(STEP, d.ready())
            .await
            .expect("bootstrap in time")
            .expect("bootstrapped");
        rust.push(d);
    }
    // Node server and client are ordinary (adaptive, hence ephemeral) hyperdht nodes: the only
    // routable nodes, and so the only relays, are Rust nodes.
    R::blocking(|| peers.spawn("srv", json!({"kind": "hyperdht", "bootstrap": bootstrap})))
        .expect("server node");
    R::blocking(|| peers.spawn("cli", json!({"kind": "hyperdht", "bootstrap": bootstrap})))
        .expect("client node");
    let seed = hash(b"relay test server");
    let listening = R::blocking(|| {
        peers.call(json!({"op": "listen", "name": "srv", "seed": hex::encode(seed)}))
    })
    .expect("listen");
    let pk = listening["publicKey"].as_str().unwrap().to_string();

    // Rust nodes hold the server's self-announce (the router record): a find-peer from a Rust
    // node is answered by the server's relays, all of them Rust nodes.
    let pk_bytes: [u8; 32] = hex::decode(&pk).unwrap().try_into().unwrap();
    let mut found = rust[0].find_peer(pk_bytes);
    let mut relays = Vec::new();
    while let Some(reply) = R::timeout(STEP, found.next())
        .await
        .expect("find-peer timed out")
    {
        assert_eq!(reply.peer.public_key, pk_bytes);
        relays.push(reply.from);
    }
    let rust_addrs: Vec<_> = rust
        .iter()
        .chain([&boot])
        .map(|d| d.server_address())
        .collect();
    assert!(
        !relays.is_empty() && relays.iter().all(|r| rust_addrs.contains(r)),
        "relays {relays:?}"
    );

    for local_connection in [true, false] {
        let message = hex::encode(format!(
            "hello through rust relays, local={local_connection}"
        ));
        let res = R::blocking(|| {
            peers.call_timeout(
                json!({"op": "connect", "name": "cli", "publicKey": pk, "message": message, "localConnection": local_connection}),
                Duration::from_secs(25),
            )
        })
        .unwrap_or_else(|e| panic!("Node client connect (localConnection={local_connection}) through Rust relays: {e}"));
        assert_eq!(res["echoed"].as_str(), Some(message.as_str()));
        assert_eq!(res["remotePublicKey"].as_str(), Some(pk.as_str()));
    }
    for d in rust {
        R::destroy(d).await;
    }
    R::destroy(boot).await;
}

#[test]
fn tokio_node_peers_connect_through_rust_relays() {
    Tokio::run(node_peers_connect_through_rust_relays::<Tokio>());
}

#[test]
fn smol_node_peers_connect_through_rust_relays() {
    Smol::run(node_peers_connect_through_rust_relays::<Smol>());
}
