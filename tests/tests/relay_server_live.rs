//! A Rust blind relay between two Node peers (hyperdht 6.34.0's `relayThrough`) over real UDP
//! on 127.0.0.1: the Node server listens with `relayThrough: <the Rust relay's key>`, the Node
//! client connects; both are firewalled (`quickFirewall: false`, as in `punch_live.rs`) so the
//! server relays, and the client vetoes holepunching, so every byte crosses the Rust relay. The
//! bytes are checked by SHA-256, on tokio and smol.

use std::net::Ipv4Addr;
use std::time::Duration;

use hdht_core::crypto::{hash, KeyPair};
use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;
use hdht_tests::runtime::{Runtime, Smol, Tokio};
use hdht_tests::NodePeers;
use serde_json::json;

const STEP: Duration = Duration::from_secs(30);

fn node_firewalled_peer(bootstrap: &[String]) -> serde_json::Value {
    json!({"kind": "hyperdht", "bootstrap": bootstrap, "ephemeral": true, "opts": {"quickFirewall": false}})
}

async fn node_peers_through_rust_relay<R: Runtime>() {
    let peers = NodePeers::new();
    let net = R::blocking(|| peers.testnet_with(json!({"size": 8, "kind": "hyperdht"})))
        .expect("node testnet");
    let relay_dht = R::dht(DhtOptions {
        bootstrap: net.bootstrap.clone(),
        host: Ipv4Addr::LOCALHOST,
        persistence: Persistence::Adaptive,
        ..DhtOptions::isolated()
    })
    .await
    .expect("relay node");
    R::timeout(STEP, relay_dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    let relay_kp = KeyPair::from_seed(&hash(b"rust blind relay"));
    let relay = R::timeout(STEP, relay_dht.relay_server(&relay_kp))
        .await
        .expect("relay announce timed out")
        .expect("relay");

    for name in ["srv", "cli"] {
        let info = R::blocking(|| peers.spawn(name, node_firewalled_peer(&net.bootstrap)))
            .expect("node peer");
        assert!(info.firewalled, "{name} must be firewalled: {info:?}");
    }
    let seed = hash(b"node server behind a rust relay");
    let pk = hex::encode(KeyPair::from_seed(&seed).public_key());
    R::blocking(|| {
        peers.call(
            json!({"op": "sinkListen", "name": "srv", "seed": hex::encode(seed),
            "relayThrough": hex::encode(relay_kp.public_key()), "holepunch": false}),
        )
    })
    .expect("listen");
    let size = 1 << 20;
    let sent = R::blocking(|| {
        peers.call_timeout(
            json!({"op": "sendRandom", "name": "cli", "publicKey": pk, "size": size,
                "localConnection": false, "holepunch": false, "fastOpen": false}),
            Duration::from_secs(120),
        )
    })
    .expect("the node client sent through the relay");
    let sinks =
        R::blocking(|| peers.call(json!({"op": "sinkResults", "name": "srv"}))).expect("results");
    let sink = &sinks["sinks"][0];
    assert_eq!(
        sink["bytes"].as_u64(),
        Some(size as u64),
        "every byte arrived"
    );
    assert_eq!(sink["sha256"], sent["sha256"], "and in order");

    let stats = relay.stats();
    eprintln!("relay stats: {stats:?}");
    assert_eq!(
        stats.control.pairings_matched, 1,
        "the relay paired the two"
    );
    assert!(
        stats.forward.bytes > size as u64,
        "the stream crossed the relay: {stats:?}"
    );
    R::destroy(relay_dht).await;
}

#[test]
fn tokio_node_peers_through_rust_relay() {
    Tokio::run(node_peers_through_rust_relay::<Tokio>());
}

#[test]
fn smol_node_peers_through_rust_relay() {
    Smol::run(node_peers_through_rust_relay::<Smol>());
}
