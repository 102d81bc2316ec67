//! Live interop of HyperDHT records with real Node.js reference peers (hyperdht 6.34.0) on
//! 127.0.0.1, both directions, on tokio and smol: immutable and mutable put/get (with the seq
//! rules), announce / lookup / unannounce, and Rust nodes storing records for Node clients.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use futures_lite::StreamExt;
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::OpError;
use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;
use hdht_tests::runtime::{Runtime, Smol, Tokio};
use hdht_tests::{NodePeers, Testnet};
use serde_json::{json, Value};

const STEP: Duration = Duration::from_secs(30);

fn addr_of(v: &Value) -> SocketAddrV4 {
    SocketAddrV4::new(
        v["host"].as_str().unwrap().parse().unwrap(),
        v["port"].as_u64().unwrap() as u16,
    )
}

fn seed(tag: &str) -> [u8; 32] {
    hash(tag.as_bytes())
}

/// A Node hyperdht testnet (bootstrapper + 5 persistent nodes) joined by `n` persistent Rust nodes.
async fn mixed<R: Runtime>(peers: &NodePeers, n: usize) -> (Testnet, Vec<R::Dht>) {
    let net = R::blocking(|| peers.testnet_with(json!({"size": 6, "kind": "hyperdht"})))
        .expect("node testnet");
    let mut rust = Vec::new();
    for _ in 0..n {
        let opts = DhtOptions {
            bootstrap: net.bootstrap.clone(),
            host: Ipv4Addr::LOCALHOST,
            persistence: Persistence::Persistent,
            ..DhtOptions::isolated()
        };
        let dht = R::dht(opts).await.expect("rust node");
        R::timeout(STEP, dht.ready())
            .await
            .expect("bootstrap timed out")
            .expect("bootstrapped");
        assert!(dht.has_storage(), "a persistent node stores records");
        rust.push(dht);
    }
    (net, rust)
}

async fn destroy_all<R: Runtime>(rust: Vec<R::Dht>) {
    for d in rust {
        R::destroy(d).await;
    }
}

async fn immutable_both_ways<R: Runtime>() {
    let peers = NodePeers::new();
    let (_net, rust) = mixed::<R>(&peers, 3).await;

    let value = b"immutable from rust".to_vec();
    let put = R::timeout(STEP, rust[0].immutable_put(&value))
        .await
        .expect("put timed out")
        .expect("rust immutable_put");
    assert_eq!(put.hash, hash(&value));
    assert!(
        put.closest_nodes.len() >= 6,
        "committed to {} nodes",
        put.closest_nodes.len()
    );
    let got = R::blocking(|| {
        peers.call(json!({"op": "immutableGet", "name": "n3", "hash": hex::encode(put.hash)}))
    })
    .expect("node get");
    assert_eq!(got["found"], json!(true));
    assert_eq!(got["value"].as_str(), Some(hex::encode(&value).as_str()));

    let value = b"immutable from node".to_vec();
    let put = R::blocking(|| {
        peers.call(json!({"op": "immutablePut", "name": "n4", "value": hex::encode(&value)}))
    })
    .expect("node put");
    let h: [u8; 32] = hex::decode(put["hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let got = R::timeout(STEP, rust[1].immutable_get(h))
        .await
        .expect("get timed out")
        .expect("rust immutable_get");
    assert_eq!(got.map(|v| v.value), Some(value));

    // Rust nodes store for Node clients: the Node client committed to some of them, and they
    // serve the value to a direct IMMUTABLE_GET.
    let rust_addrs: BTreeSet<SocketAddrV4> = rust.iter().map(|d| d.server_address()).collect();
    let holders: Vec<SocketAddrV4> = put["closestNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(addr_of)
        .filter(|a| rust_addrs.contains(a))
        .collect();
    assert!(
        !holders.is_empty(),
        "the Node client's put reached Rust nodes: {put}"
    );
    for a in holders {
        let res = R::blocking(|| {
            peers.call(json!({"op": "request", "name": "n2", "host": a.ip().to_string(), "port": a.port(), "command": 9, "target": hex::encode(h)}))
        })
        .expect("direct get");
        assert_eq!(
            res["response"]["value"].as_str(),
            Some(hex::encode(b"immutable from node").as_str()),
            "{a} serves it"
        );
    }

    let missing = R::timeout(STEP, rust[2].immutable_get(hash(b"nobody stored this")))
        .await
        .expect("timed out")
        .expect("get");
    assert!(missing.is_none());
    destroy_all::<R>(rust).await;
}

async fn mutable_both_ways_with_seq_rules<R: Runtime>() {
    let peers = NodePeers::new();
    let (_net, rust) = mixed::<R>(&peers, 3).await;
    let s = seed("mutable-key");
    let kp = KeyPair::from_seed(&s);
    let pk = kp.public_key();

    let put = R::blocking(|| peers.call(json!({"op": "mutablePut", "name": "n2", "seed": hex::encode(s), "value": hex::encode(b"v1"), "seq": 1}))).expect("node put");
    assert_eq!(put["publicKey"].as_str(), Some(hex::encode(pk).as_str()));
    let got = R::timeout(STEP, rust[0].mutable_get(pk, 0, true))
        .await
        .expect("timed out")
        .expect("rust get")
        .expect("found");
    assert_eq!((got.value.as_slice(), got.seq), (&b"v1"[..], 1));

    let put = R::timeout(STEP, rust[1].mutable_put(&kp, b"v2", 2))
        .await
        .expect("timed out")
        .expect("rust put seq 2");
    assert_eq!(put.seq, 2);
    let got = R::blocking(|| {
        peers.call(json!({"op": "mutableGet", "name": "n3", "publicKey": hex::encode(pk)}))
    })
    .expect("node get");
    assert_eq!(
        (got["value"].as_str(), got["seq"].as_u64()),
        (Some(hex::encode(b"v2").as_str()), Some(2))
    );
    assert_eq!(
        got["signature"].as_str(),
        Some(hex::encode(put.signature).as_str())
    );

    // A lower seq is refused, a reused seq with another value too. rust[1] wrote seq 2 to every
    // other node (a node never commits to itself), so every node it commits to refuses.
    assert_eq!(put.closest_nodes.len(), 8, "seq 2 reached all other nodes");
    let low = R::timeout(STEP, rust[1].mutable_put(&kp, b"v0", 1))
        .await
        .expect("timed out");
    assert_eq!(low.unwrap_err().as_op(), Some(&OpError::SeqTooLow));
    let reused = R::timeout(STEP, rust[1].mutable_put(&kp, b"v2 but different", 2))
        .await
        .expect("timed out");
    assert_eq!(reused.unwrap_err().as_op(), Some(&OpError::SeqReused));
    // The reference client resolves on the same refusal; the record is unchanged either way.
    R::blocking(|| peers.call(json!({"op": "mutablePut", "name": "n2", "seed": hex::encode(s), "value": hex::encode(b"old"), "seq": 1}))).expect("node put");
    let got = R::timeout(STEP, rust[0].mutable_get(pk, 0, true))
        .await
        .expect("timed out")
        .expect("get")
        .expect("found");
    assert_eq!(got.value, b"v2");

    // `seq` is a minimum, honoured on both sides.
    let none = R::timeout(STEP, rust[0].mutable_get(pk, 3, true))
        .await
        .expect("timed out")
        .expect("get");
    assert!(none.is_none());
    let got = R::blocking(|| {
        peers
            .call(json!({"op": "mutableGet", "name": "n3", "publicKey": hex::encode(pk), "seq": 3}))
    })
    .expect("node get");
    assert_eq!(got["found"], json!(false));
    // `latest: false` returns the first valid record.
    let first = R::timeout(STEP, rust[0].mutable_get(pk, 2, false))
        .await
        .expect("timed out")
        .expect("get")
        .expect("found");
    assert_eq!(first.seq, 2);
    // An unknown key is not found.
    let unknown = R::timeout(
        STEP,
        rust[0].mutable_get(KeyPair::from_seed(&seed("nobody")).public_key(), 0, true),
    )
    .await
    .expect("timed out")
    .expect("get");
    assert!(unknown.is_none());
    destroy_all::<R>(rust).await;
}

async fn announce_lookup_unannounce<R: Runtime>() {
    let peers = NodePeers::new();
    let (_net, rust) = mixed::<R>(&peers, 3).await;
    let topic = hash(b"a topic");
    let rust_kp = KeyPair::from_seed(&seed("rust announcer"));
    let relay = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40001);
    let closest = R::timeout(STEP, rust[0].announce(topic, &rust_kp, &[relay]).finish())
        .await
        .expect("timed out")
        .expect("announce");
    assert!(closest.len() >= 6);

    let found = R::blocking(|| {
        peers.call(json!({"op": "lookup", "name": "n3", "topic": hex::encode(topic)}))
    })
    .expect("node lookup");
    let listed: Vec<&str> = found["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        listed.contains(&hex::encode(rust_kp.public_key()).as_str()),
        "Node lookup sees the Rust announce: {found}"
    );
    let relays: Vec<SocketAddrV4> = found["replies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["peers"].as_array().unwrap().iter())
        .filter(|p| p["publicKey"].as_str() == Some(hex::encode(rust_kp.public_key()).as_str()))
        .flat_map(|p| p["relayAddresses"].as_array().unwrap().iter().map(addr_of))
        .collect();
    assert!(relays.iter().all(|a| *a == relay) && !relays.is_empty());

    let node_seed = seed("node announcer");
    let node_pk = KeyPair::from_seed(&node_seed).public_key();
    R::blocking(|| peers.call(json!({"op": "announce", "name": "n4", "topic": hex::encode(topic), "seed": hex::encode(node_seed)}))).expect("node announce");
    let mut stream = rust[1].lookup(topic);
    let mut seen = BTreeSet::new();
    while let Some(reply) = R::timeout(STEP, stream.next())
        .await
        .expect("lookup reply timed out")
    {
        assert!(reply.from_id.is_some() || reply.token.is_some());
        seen.extend(reply.peers.iter().map(|p| p.public_key));
    }
    assert!(stream.finish().await.expect("lookup").len() >= 6);
    assert!(
        seen.contains(&node_pk),
        "Rust lookup sees the Node announce"
    );
    assert!(seen.contains(&rust_kp.public_key()));

    R::timeout(STEP, rust[0].unannounce(topic, &rust_kp))
        .await
        .expect("timed out")
        .expect("unannounce");
    let found = R::blocking(|| {
        peers.call(json!({"op": "lookup", "name": "n3", "topic": hex::encode(topic)}))
    })
    .expect("node lookup");
    let listed: Vec<&str> = found["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !listed.contains(&hex::encode(rust_kp.public_key()).as_str()),
        "unannounced everywhere: {found}"
    );
    assert!(listed.contains(&hex::encode(node_pk).as_str()));

    // A Node unannounce is honoured by the Rust nodes too.
    R::blocking(|| peers.call(json!({"op": "unannounce", "name": "n4", "topic": hex::encode(topic), "seed": hex::encode(node_seed)}))).expect("node unannounce");
    let mut stream = rust[2].lookup(topic);
    let mut seen = BTreeSet::new();
    while let Some(reply) = R::timeout(STEP, stream.next()).await.expect("timed out") {
        seen.extend(reply.peers.iter().map(|p| p.public_key));
    }
    assert!(seen.is_empty(), "nothing left under the topic: {seen:?}");
    destroy_all::<R>(rust).await;
}

async fn destroy_unannounces_unless_forced<R: Runtime>() {
    let peers = NodePeers::new();
    let (_net, mut rust) = mixed::<R>(&peers, 2).await;
    let topic = hash(b"destroy topic");
    let kp = KeyPair::from_seed(&seed("leaver"));
    R::timeout(STEP, rust[1].announce(topic, &kp, &[]).finish())
        .await
        .expect("timed out")
        .expect("announce");
    let leaver = rust.pop().unwrap();
    R::timeout(STEP, R::destroy(leaver))
        .await
        .expect("graceful destroy timed out");
    let found = R::blocking(|| {
        peers.call(json!({"op": "lookup", "name": "n3", "topic": hex::encode(topic)}))
    })
    .expect("lookup");
    assert!(
        found["peers"].as_array().unwrap().is_empty(),
        "a graceful destroy unannounced: {found}"
    );
    destroy_all::<R>(rust).await;
}

#[test]
fn tokio_immutable_both_ways() {
    Tokio::run(immutable_both_ways::<Tokio>());
}
#[test]
fn smol_immutable_both_ways() {
    Smol::run(immutable_both_ways::<Smol>());
}
#[test]
fn tokio_mutable_both_ways_with_seq_rules() {
    Tokio::run(mutable_both_ways_with_seq_rules::<Tokio>());
}
#[test]
fn smol_mutable_both_ways_with_seq_rules() {
    Smol::run(mutable_both_ways_with_seq_rules::<Smol>());
}
#[test]
fn tokio_announce_lookup_unannounce() {
    Tokio::run(announce_lookup_unannounce::<Tokio>());
}
#[test]
fn smol_announce_lookup_unannounce() {
    Smol::run(announce_lookup_unannounce::<Smol>());
}
#[test]
fn tokio_destroy_unannounces_unless_forced() {
    Tokio::run(destroy_unannounces_unless_forced::<Tokio>());
}
#[test]
fn smol_destroy_unannounces_unless_forced() {
    Smol::run(destroy_unannounces_unless_forced::<Smol>());
}
