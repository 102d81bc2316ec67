//! The client side of blind relaying (`relayThrough`), live over UDP on 127.0.0.1 against the
//! Node reference (hyperdht 6.34.0, blind-relay 1.6.1), on tokio and smol. Every peer is
//! firewalled (`quickFirewall: false`, as `punch_live.rs`); a client that vetoes punching
//! (`holepunch: false`, as the reference's relay tests) forces every byte through the relay.
//!
//! - Rust client ⇄ Rust server through the Node blind-relay server and through the Rust relay
//!   (the server names the relay);
//! - Rust client → Node server and Node client → Rust server, through the Node relay and the
//!   Rust relay (the client names it in one, the server in the other);
//! - Rust ⇄ Rust with punching allowed: the connection ends on the direct path — when it
//!   opened through the relay, the same stream moved there (`RelayPath::Upgraded`).
//!
//! Bytes are checked by SHA-256 on the receiving side.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::{ConnectOptions, RelayPath, ServerOptions};
use hdht_core::relay::RelaySelector;
use hdht_core::rpc::Persistence;
use hdht_driver::{DhtHandle, DhtOptions};
use hdht_tests::runtime::{Runtime, Smol, Tokio};
use hdht_tests::NodePeers;
use serde_json::json;
use sha2::{Digest, Sha256};

const STEP: Duration = Duration::from_secs(30);
const SIZE: usize = 256 * 1024;

fn firewalled_opts(bootstrap: &[String]) -> DhtOptions {
    DhtOptions {
        bootstrap: bootstrap.to_vec(),
        host: Ipv4Addr::LOCALHOST,
        persistence: Persistence::Ephemeral,
        quick_firewall: false,
        ..DhtOptions::isolated()
    }
}

fn node_firewalled_peer(bootstrap: &[String]) -> serde_json::Value {
    json!({"kind": "hyperdht", "bootstrap": bootstrap, "ephemeral": true, "opts": {"quickFirewall": false}})
}

fn payload(tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIZE);
    let mut block = hash(tag.as_bytes());
    while out.len() < SIZE {
        out.extend_from_slice(&block);
        block = hash(&block);
    }
    out.truncate(SIZE);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Both relays on one Node testnet: the Node one on a Node peer, the Rust one on a Rust node.
struct Net<R: Runtime> {
    peers: NodePeers,
    bootstrap: Vec<String>,
    node_relay: [u8; 32],
    rust_relay: [u8; 32],
    rust_relay_dht: R::Dht,
}

async fn net<R: Runtime>() -> Net<R> {
    let peers = NodePeers::new();
    let net = R::blocking(|| peers.testnet_with(json!({"size": 8, "kind": "hyperdht"})))
        .expect("node testnet");
    R::blocking(|| {
        peers.spawn(
            "relay",
            json!({"kind": "hyperdht", "bootstrap": net.bootstrap, "ephemeral": false}),
        )
    })
    .expect("node relay peer");
    let node_relay = R::blocking(|| {
        peers.call(json!({"op": "relayServer", "name": "relay",
            "seed": hex::encode(hash(b"node blind relay"))}))
    })
    .expect("node relay");
    let node_relay: [u8; 32] = hex::decode(node_relay["publicKey"].as_str().expect("key"))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let rust_relay_dht = R::dht(DhtOptions {
        bootstrap: net.bootstrap.clone(),
        host: Ipv4Addr::LOCALHOST,
        persistence: Persistence::Adaptive,
        ..DhtOptions::isolated()
    })
    .await
    .expect("relay node");
    R::timeout(STEP, rust_relay_dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    let kp = KeyPair::from_seed(&hash(b"rust blind relay (client tests)"));
    let relay = R::timeout(STEP, rust_relay_dht.relay_server(&kp))
        .await
        .expect("relay announce timed out")
        .expect("relay");
    Net {
        bootstrap: net.bootstrap,
        peers,
        node_relay,
        rust_relay: relay.public_key(),
        rust_relay_dht,
    }
}

async fn firewalled<R: Runtime>(bootstrap: &[String]) -> R::Dht {
    let dht = R::dht(firewalled_opts(bootstrap)).await.expect("node");
    R::timeout(STEP, dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    assert!(dht.is_firewalled(), "the Rust peer must be firewalled");
    dht
}

/// What a Rust server saw of its one connection.
#[derive(Debug)]
struct Sunk {
    sha256: String,
    bytes: usize,
    path_at_accept: Option<RelayPath>,
    path_at_end: Option<RelayPath>,
}

/// A Rust server on `dht` (relaying through `relay` if given) that takes one connection,
/// reads it to the end, ends its side, and reports the hash — on a thread of its own.
async fn rust_sink<R: Runtime>(
    dht: &DhtHandle,
    seed: &[u8],
    relay: Option<[u8; 32]>,
    wait_upgrade: bool,
) -> ([u8; 32], std::thread::JoinHandle<Sunk>) {
    let kp = KeyPair::from_seed(&hash(seed));
    let opts = ServerOptions {
        hide_local_addresses: true,
        relay_through: relay.map(RelaySelector::Key),
        ..ServerOptions::default()
    };
    let mut server = dht.create_server_with(opts, None);
    R::timeout(STEP, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");
    let sink = std::thread::spawn(move || {
        futures_lite::future::block_on(async move {
            let mut conn = server.accept().await.expect("a connection");
            let path_at_accept = conn.relay_path();
            // Give a punch behind the relay time to move the stream (bounded).
            for _ in 0..200 {
                if !wait_upgrade || conn.relay_path() != Some(RelayPath::Relayed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut got = Vec::new();
            let t = std::time::Instant::now();
            conn.read_to_end(&mut got).await.expect("read to the end");
            eprintln!("  sink read {} bytes in {:?}", got.len(), t.elapsed());
            let path_at_end = conn.relay_path();
            let _ = conn.close().await;
            Sunk {
                sha256: sha256_hex(&got),
                bytes: got.len(),
                path_at_accept,
                path_at_end,
            }
        })
    });
    (kp.public_key(), sink)
}

/// A Rust client sends [`SIZE`] bytes to `pk` and ends; returns the path it saw at open and
/// after the peer's end.
async fn rust_send<R: Runtime>(
    dht: &DhtHandle,
    pk: [u8; 32],
    data: &[u8],
    opts: ConnectOptions,
) -> (Option<RelayPath>, Option<RelayPath>) {
    let t0 = std::time::Instant::now();
    let mut conn = R::timeout(STEP, dht.connect_with(pk, opts))
        .await
        .expect("connect timed out")
        .expect("connected");
    let at_open = conn.relay_path();
    eprintln!("  connected in {:?}: {at_open:?}", t0.elapsed());
    R::timeout(STEP, conn.write_all(data))
        .await
        .expect("write timed out")
        .expect("write");
    eprintln!("  written at {:?}", t0.elapsed());
    R::timeout(STEP, conn.close())
        .await
        .expect("end timed out")
        .expect("end");
    eprintln!("  ended at {:?}", t0.elapsed());
    let mut rest = Vec::new();
    R::timeout(STEP, conn.read_to_end(&mut rest))
        .await
        .expect("the server's end timed out")
        .expect("read the server's end");
    (at_open, conn.relay_path())
}

fn relay_only(relay: Option<[u8; 32]>) -> ConnectOptions {
    ConnectOptions {
        local_connection: false,
        holepunch: false,
        relay_through: relay.map(RelaySelector::Key),
        ..ConnectOptions::default()
    }
}

async fn rust_peers<R: Runtime>() {
    let t0 = std::time::Instant::now();
    let n = net::<R>().await;
    eprintln!("[{:?}] net up", t0.elapsed());
    let server_dht = firewalled::<R>(&n.bootstrap).await;
    let client_dht = firewalled::<R>(&n.bootstrap).await;
    eprintln!("[{:?}] peers up", t0.elapsed());
    for (name, relay) in [("node relay", n.node_relay), ("rust relay", n.rust_relay)] {
        let (pk, sink) = rust_sink::<R>(&server_dht, name.as_bytes(), Some(relay), false).await;
        let data = payload(name);
        let (at_open, at_end) = rust_send::<R>(&client_dht, pk, &data, relay_only(None)).await;
        let sunk = R::blocking(|| sink.join()).expect("the sink");
        assert_eq!(sunk.bytes, SIZE, "{name}: every byte arrived");
        assert_eq!(sunk.sha256, sha256_hex(&data), "{name}: in order");
        assert_eq!(at_open, Some(RelayPath::Relayed), "{name}: client relayed");
        assert_eq!(at_end, Some(RelayPath::Relayed), "{name}: and stayed");
        assert_eq!(sunk.path_at_accept, Some(RelayPath::Relayed), "{name}");
        assert_eq!(sunk.path_at_end, Some(RelayPath::Relayed), "{name}");
        eprintln!(
            "[{:?}] rust -> rust through the {name}: {sunk:?}",
            t0.elapsed()
        );
    }
    let stats = R::blocking(|| n.peers.call(json!({"op": "relayStats", "name": "relay"})))
        .expect("node relay stats");
    eprintln!("node relay stats: {stats}");

    // Punching allowed: the connection ends on the direct path.
    let (pk, sink) = rust_sink::<R>(&server_dht, b"upgrade", Some(n.rust_relay), true).await;
    let data = payload("upgrade");
    let opts = ConnectOptions {
        local_connection: false,
        ..ConnectOptions::default()
    };
    let (at_open, at_end) = rust_send::<R>(&client_dht, pk, &data, opts).await;
    let sunk = R::blocking(|| sink.join()).expect("the sink");
    eprintln!(
        "[{:?}] rust -> rust, punching allowed: client {at_open:?} -> {at_end:?}, server {sunk:?}",
        t0.elapsed()
    );
    assert_eq!(sunk.sha256, sha256_hex(&data), "every byte, in order");
    assert!(
        matches!(at_end, Some(RelayPath::Upgraded | RelayPath::Direct)),
        "ends direct: {at_end:?}"
    );
    if at_open == Some(RelayPath::Relayed) {
        assert_eq!(
            at_end,
            Some(RelayPath::Upgraded),
            "the relayed stream moved"
        );
    }
    R::destroy(client_dht).await;
    R::destroy(server_dht).await;
    R::destroy(n.rust_relay_dht).await;
}

async fn mixed_pairs<R: Runtime>() {
    let n = net::<R>().await;
    let bootstrap = n.bootstrap.clone();
    for name in ["srv", "cli"] {
        let info = R::blocking(|| n.peers.spawn(name, node_firewalled_peer(&bootstrap)))
            .expect("node peer");
        assert!(info.firewalled, "{name} must be firewalled: {info:?}");
    }
    let rust_dht = firewalled::<R>(&n.bootstrap).await;
    for (name, relay) in [("node relay", n.node_relay), ("rust relay", n.rust_relay)] {
        // Rust client (naming the relay) → Node server.
        let seed = hash(format!("node server, {name}").as_bytes());
        let pk = KeyPair::from_seed(&seed).public_key();
        R::blocking(|| {
            n.peers.call(
                json!({"op": "sinkListen", "name": "srv", "seed": hex::encode(seed),
                "holepunch": false}),
            )
        })
        .expect("node listen");
        let data = payload(name);
        let (at_open, _) = rust_send::<R>(&rust_dht, pk, &data, relay_only(Some(relay))).await;
        let mut sinks = serde_json::Value::Null;
        for _ in 0..100 {
            sinks = R::blocking(|| n.peers.call(json!({"op": "sinkResults", "name": "srv"})))
                .expect("results");
            if sinks["sinks"].as_array().is_some_and(|a| !a.is_empty()) {
                break;
            }
            R::sleep(Duration::from_millis(50)).await;
        }
        let sink = sinks["sinks"]
            .as_array()
            .and_then(|a| a.last())
            .expect("a sink");
        assert_eq!(
            sink["bytes"].as_u64(),
            Some(SIZE as u64),
            "{name}: rust -> node"
        );
        assert_eq!(sink["sha256"], sha256_hex(&data), "{name}: rust -> node");
        assert_eq!(
            at_open,
            Some(RelayPath::Relayed),
            "{name}: rust -> node relayed"
        );
        eprintln!("rust client -> node server through the {name}: relayed");

        // Node client → Rust server (naming the relay).
        let (pk, sink) = rust_sink::<R>(
            &rust_dht,
            format!("rust server, {name}").as_bytes(),
            Some(relay),
            false,
        )
        .await;
        let sent = R::blocking(|| {
            n.peers.call_timeout(
                json!({"op": "sendRandom", "name": "cli", "publicKey": hex::encode(pk),
                    "size": SIZE, "localConnection": false, "holepunch": false,
                    "fastOpen": false}),
                Duration::from_secs(60),
            )
        })
        .expect("the node client sent through the relay");
        let sunk = R::blocking(|| sink.join()).expect("the sink");
        assert_eq!(sunk.bytes, SIZE, "{name}: node -> rust");
        assert_eq!(
            sunk.sha256,
            sent["sha256"].as_str().expect("hash"),
            "{name}: node -> rust"
        );
        assert_eq!(
            sunk.path_at_accept,
            Some(RelayPath::Relayed),
            "{name}: node -> rust relayed"
        );
        eprintln!("node client -> rust server through the {name}: {sunk:?}");
    }
    // Punching allowed on both sides: the connection ends on the direct path.
    let (pk, sink) =
        rust_sink::<R>(&rust_dht, b"rust server, upgrade", Some(n.rust_relay), true).await;
    let sent = R::blocking(|| {
        n.peers.call_timeout(
            json!({"op": "sendRandom", "name": "cli", "publicKey": hex::encode(pk),
                "size": SIZE, "localConnection": false}),
            Duration::from_secs(60),
        )
    })
    .expect("the node client sent");
    let sunk = R::blocking(|| sink.join()).expect("the sink");
    eprintln!("node client -> rust server, punching allowed: {sunk:?}");
    assert_eq!(sunk.sha256, sent["sha256"].as_str().expect("hash"));
    assert!(
        matches!(
            sunk.path_at_end,
            Some(RelayPath::Upgraded | RelayPath::Direct)
        ),
        "ends direct: {sunk:?}"
    );
    let stats = n
        .rust_relay_dht
        .shared()
        .with_node(|node| node.relay_stats());
    eprintln!("rust relay stats: {stats:?}");
    R::destroy(rust_dht).await;
    R::destroy(n.rust_relay_dht).await;
}

#[test]
fn tokio_rust_peers_through_node_and_rust_relays() {
    Tokio::run(rust_peers::<Tokio>());
}

#[test]
fn smol_rust_peers_through_node_and_rust_relays() {
    Smol::run(rust_peers::<Smol>());
}

#[test]
fn tokio_mixed_pairs_through_node_and_rust_relays() {
    Tokio::run(mixed_pairs::<Tokio>());
}

#[test]
fn smol_mixed_pairs_through_node_and_rust_relays() {
    Smol::run(mixed_pairs::<Smol>());
}

/// Many Rust clients connect at once to one Rust server that names the Node relay: every
/// pairing must succeed (the server holds one relay connection per pairing, all with its one
/// default key pair, to the same relay).
async fn many_pairs_at_once<R: Runtime>(pairs: usize) {
    let t0 = std::time::Instant::now();
    let n = net::<R>().await;
    let server_dht = firewalled::<R>(&n.bootstrap).await;
    let mut clients = Vec::new();
    for _ in 0..pairs {
        clients.push(firewalled::<R>(&n.bootstrap).await);
    }
    eprintln!("[{:?}] net and {pairs} clients up", t0.elapsed());
    let kp = KeyPair::from_seed(&hash(b"many pairs at once"));
    let opts = ServerOptions {
        hide_local_addresses: true,
        relay_through: Some(RelaySelector::Key(n.node_relay)),
        ..ServerOptions::default()
    };
    let mut server = server_dht.create_server_with(opts, None);
    R::timeout(STEP, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");
    let pk = kp.public_key();
    let accepting = std::thread::spawn(move || {
        futures_lite::future::block_on(async move {
            let mut ends = Vec::new();
            for _ in 0..pairs {
                let Some(mut conn) = server.accept().await else {
                    break;
                };
                ends.push(std::thread::spawn(move || {
                    futures_lite::future::block_on(async move {
                        let mut got = Vec::new();
                        let _ = conn.read_to_end(&mut got).await;
                        let _ = conn.write_all(&got).await;
                        let _ = conn.close().await;
                    })
                }));
            }
            for e in ends {
                let _ = e.join();
            }
            server
        })
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let dht: DhtHandle = (**c).clone();
        tasks.spawn(async move {
            let data = format!("pair {i}").into_bytes();
            let mut conn =
                match tokio::time::timeout(STEP, dht.connect_with(pk, relay_only(None))).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return Err(format!("pair {i}: {e}")),
                    Err(_) => return Err(format!("pair {i}: connect timed out")),
                };
            let path = conn.relay_path();
            conn.write_all(&data)
                .await
                .map_err(|e| format!("pair {i}: {e}"))?;
            conn.close().await.map_err(|e| format!("pair {i}: {e}"))?;
            let mut back = Vec::new();
            tokio::time::timeout(STEP, conn.read_to_end(&mut back))
                .await
                .map_err(|_| format!("pair {i}: echo timed out"))?
                .map_err(|e| format!("pair {i}: {e}"))?;
            if back != data {
                return Err(format!("pair {i}: echo differs"));
            }
            Ok(path)
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.expect("the task") {
            Ok(Some(RelayPath::Relayed)) => {}
            Ok(p) => failures.push(format!("not relayed: {p:?}")),
            Err(e) => failures.push(e),
        }
    }
    eprintln!("[{:?}] {pairs} pairs done: {failures:?}", t0.elapsed());
    let stats = R::blocking(|| n.peers.call(json!({"op": "relayStats", "name": "relay"})))
        .expect("node relay stats");
    eprintln!("node relay stats: {stats}");
    assert!(
        failures.is_empty(),
        "{} of {pairs} pairs failed: {failures:#?}",
        failures.len()
    );
    let server = R::blocking(|| accepting.join()).expect("the server");
    drop(server);
    for c in clients {
        R::destroy(c).await;
    }
    R::destroy(server_dht).await;
    R::destroy(n.rust_relay_dht).await;
}

#[test]
fn tokio_many_pairs_at_once_through_the_node_relay() {
    Tokio::run(many_pairs_at_once::<Tokio>(16));
}
