//! Live interop of the Rust dht-rpc node with real Node.js reference peers (dht-rpc 6.27.0)
//! on 127.0.0.1. Every scenario runs on both tokio and smol.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use futures_lite::StreamExt;
use hdht_core::rpc::{NodeId, Persistence, QuerySpec};
use hdht_driver::DhtOptions;
use hdht_tests::runtime::{Runtime, Smol, Tokio};
use hdht_tests::{NodePeers, PeerNode};
use serde_json::{json, Value};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
const STEP: Duration = Duration::from_secs(30);

fn opts(bootstrap: &[String], persistence: Persistence) -> DhtOptions {
    DhtOptions {
        bootstrap: bootstrap.to_vec(),
        host: LOCALHOST,
        persistence,
        ..DhtOptions::isolated()
    }
}

fn addr_of(v: &Value) -> SocketAddrV4 {
    SocketAddrV4::new(
        v["host"].as_str().unwrap().parse().unwrap(),
        v["port"].as_u64().unwrap() as u16,
    )
}

fn id_of(addr: &SocketAddrV4) -> NodeId {
    NodeId::from_addr(addr)
}

fn target(seed: u8) -> NodeId {
    NodeId(hdht_core::crypto::hash(&[seed, 0x42]))
}

async fn ready<R: Runtime>(dht: &R::Dht) {
    R::timeout(STEP, dht.ready())
        .await
        .expect("bootstrap timed out")
        .expect("bootstrapped");
}

/// A Rust node bootstraps from a Node network; its find-node returns the same closest nodes
/// the Node nodes' own find-node returns; it ends up in their routing tables; pings both ways.
async fn rust_joins_node_network<R: Runtime>() {
    let peers = NodePeers::new();
    let net = R::blocking(|| peers.testnet(24)).expect("node testnet");
    let dht = R::dht(opts(&net.bootstrap, Persistence::Persistent))
        .await
        .expect("rust node");
    ready::<R>(&dht).await;
    assert!(
        !dht.is_firewalled(),
        "a node on 127.0.0.1 passes the firewall test"
    );
    assert!(
        !dht.is_ephemeral(),
        "ephemeral: false makes the node persistent"
    );
    let own = dht.server_address();
    assert_eq!(dht.id(), Some(id_of(&own)));

    for seed in 0..3u8 {
        let t = target(seed);
        let ours = R::timeout(STEP, dht.find_node(t).finish())
            .await
            .expect("find_node timed out")
            .expect("find_node");
        let ours: Vec<SocketAddrV4> = ours.closest_nodes().collect();
        let theirs = R::blocking(|| peers.find_node("n5", &t.0)).expect("node findNode");
        let theirs: Vec<SocketAddrV4> = theirs["closest"]
            .as_array()
            .unwrap()
            .iter()
            .map(addr_of)
            .collect();
        // Each side cannot list itself: compare the top-k of (result ∪ self) on both sides.
        let n5 = net
            .node("n5")
            .addr_string()
            .parse::<SocketAddrV4>()
            .unwrap();
        let mut a: Vec<SocketAddrV4> = ours.iter().copied().chain([own]).collect();
        let mut b: Vec<SocketAddrV4> = theirs.iter().copied().chain([n5]).collect();
        for v in [&mut a, &mut b] {
            v.sort_by(|x, y| t.cmp_distance(&id_of(x), &id_of(y)));
            v.dedup();
            v.truncate(20);
        }
        assert_eq!(ours.len(), 20, "k closest replies");
        assert_eq!(
            a, b,
            "target {seed}: Rust and Node disagree on the closest nodes"
        );
    }

    // Pings in both directions, with ids that match the addresses.
    let n1 = net.node("n1");
    let n1_addr: SocketAddrV4 = n1.addr_string().parse().unwrap();
    let pong = R::timeout(STEP, dht.ping(n1_addr))
        .await
        .expect("ping timed out")
        .expect("ping");
    assert_eq!(pong.from_id, Some(id_of(&n1_addr)));
    assert_eq!(pong.to.ip(), &LOCALHOST);
    let theirs = R::blocking(|| peers.ping("n1", own.into())).expect("node pings rust");
    assert_eq!(addr_of(&theirs["from"]), own);
    assert_eq!(
        theirs["from"]["id"].as_str(),
        Some(id_of(&own).to_string().as_str())
    );

    // The persistent Rust node is in the Node nodes' routing tables.
    let mut holders = 0;
    for n in net.nodes.iter() {
        let table =
            R::blocking(|| peers.call(json!({"op": "table", "name": n.name}))).expect("table");
        let has = table["table"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| addr_of(e) == own);
        holders += usize::from(has);
    }
    assert!(
        holders >= net.nodes.len() / 2,
        "only {holders} of {} Node tables hold the Rust node",
        net.nodes.len()
    );
    R::destroy(dht).await;
}

/// Node nodes bootstrap from a Rust bootstrapper and find each other through it.
async fn node_network_on_rust_bootstrapper<R: Runtime>() {
    let peers = NodePeers::new();
    let boot = R::dht(DhtOptions::bootstrapper(0, LOCALHOST))
        .await
        .expect("bootstrapper");
    ready::<R>(&boot).await;
    let boot_addr = boot.server_address();
    assert_eq!(
        boot.id(),
        Some(id_of(&boot_addr)),
        "a bootstrapper is persistent with id H(host:port)"
    );
    let bootstrap = vec![boot_addr.to_string()];
    let mut nodes: Vec<PeerNode> = Vec::new();
    for i in 0..6 {
        let name = format!("m{i}");
        let spawned =
            R::blocking(|| peers.spawn(&name, json!({"bootstrap": bootstrap, "ephemeral": false})))
                .expect("spawn");
        assert!(
            !spawned.firewalled && !spawned.ephemeral,
            "{name} became persistent via the Rust bootstrapper"
        );
        nodes.push(spawned);
    }
    let t = target(9);
    let res = R::blocking(|| peers.find_node("m5", &t.0)).expect("findNode");
    let found: BTreeSet<SocketAddrV4> = res["closest"]
        .as_array()
        .unwrap()
        .iter()
        .map(addr_of)
        .collect();
    for n in &nodes[..5] {
        assert!(
            found.contains(&n.addr_string().parse().unwrap()),
            "{} not found through the Rust bootstrapper",
            n.name
        );
    }
    assert!(
        found.contains(&boot_addr),
        "the Rust bootstrapper answers as a persistent node"
    );
    let table: BTreeSet<SocketAddrV4> = boot.to_array().into_iter().collect();
    for n in &nodes {
        assert!(
            table.contains(&n.addr_string().parse().unwrap()),
            "{} missing from the bootstrapper's table",
            n.name
        );
    }
    R::destroy(boot).await;
}

/// A Node query (external command, with commit) through a network mixing Rust and Node nodes
/// completes with the Rust nodes answering; a Rust query through the same network too.
async fn mixed_network_queries<R: Runtime>() {
    const CMD: u64 = 42;
    let peers = NodePeers::new();
    let net = R::blocking(|| peers.testnet(8)).expect("node testnet");
    let mut rust = Vec::new();
    for _ in 0..6 {
        let mut o = opts(&net.bootstrap, Persistence::Persistent);
        o.handle_requests = true;
        let dht = R::dht(o).await.expect("rust node");
        ready::<R>(&dht).await;
        rust.push(dht);
    }
    // Each Rust node answers command 42 with "rust:<port>" (commits included), from its own
    // thread so that blocking calls to the Node peers can't starve it.
    let mut servers = Vec::new();
    for dht in &rust {
        let mut incoming = dht.incoming_requests();
        let port = dht.server_address().port();
        servers.push(std::thread::spawn(move || {
            futures_lite::future::block_on(async {
                while let Some(req) = incoming.next().await {
                    if req.request.command == CMD {
                        req.reply(Some(format!("rust:{port}").into_bytes()));
                    } else {
                        req.error(1);
                    }
                }
            })
        }));
    }
    let serve = futures_lite::future::race(futures_lite::future::pending::<()>(), async {
        let t = target(77);
        let res =
            R::blocking(|| peers.query("n3", &t.0, CMD, Some(b"hi"), true)).expect("node query");
        let values: Vec<String> = res["replies"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["value"].as_str())
            .map(|h| String::from_utf8(hex::decode(h).unwrap()).unwrap())
            .collect();
        let rust_replies = values.iter().filter(|v| v.starts_with("rust:")).count();
        let node_replies = values.iter().filter(|v| v.starts_with("node:")).count();
        assert_eq!(
            rust_replies, 6,
            "every Rust node answers the Node query: {values:?}"
        );
        assert!(node_replies >= 6, "Node nodes answer too: {values:?}");
        let commits = res["commits"].as_array().unwrap();
        let rust_ports: BTreeSet<u16> = rust.iter().map(|d| d.server_address().port()).collect();
        let rust_commits: Vec<&Value> = commits
            .iter()
            .filter(|c| rust_ports.contains(&(c["from"]["port"].as_u64().unwrap() as u16)))
            .collect();
        assert!(
            !rust_commits.is_empty(),
            "some closest nodes are Rust nodes: {commits:?}"
        );
        for c in rust_commits {
            assert_eq!(
                c["error"],
                json!(0),
                "a Rust node accepted the echoed token: {c}"
            );
        }

        // A Rust query through the mixed network, with auto-commit.
        let mut spec = QuerySpec::new(target(78), CMD);
        spec.value = Some(b"hello".to_vec());
        spec.commit = true;
        let mut stream = rust[0].query(spec);
        let mut values = Vec::new();
        while let Some(reply) = R::timeout(STEP, stream.next())
            .await
            .expect("reply timed out")
        {
            values.push(String::from_utf8(reply.value.unwrap_or_default()).unwrap());
        }
        let done = R::timeout(STEP, stream.finish())
            .await
            .expect("query end timed out")
            .expect("rust query committed");
        assert!(
            values.iter().filter(|v| v.starts_with("node:")).count() >= 7,
            "{values:?}"
        );
        assert!(
            values.iter().filter(|v| v.starts_with("rust:")).count() >= 5,
            "{values:?}"
        );
        assert!(done.closest_replies.len() >= 12);
    });
    serve.await;
    for dht in rust {
        R::destroy(dht).await;
    }
    for s in servers {
        s.join().expect("responder thread");
    }
}

#[test]
fn tokio_rust_joins_node_network() {
    Tokio::run(rust_joins_node_network::<Tokio>());
}

#[test]
fn smol_rust_joins_node_network() {
    Smol::run(rust_joins_node_network::<Smol>());
}

#[test]
fn tokio_node_network_on_rust_bootstrapper() {
    Tokio::run(node_network_on_rust_bootstrapper::<Tokio>());
}

#[test]
fn smol_node_network_on_rust_bootstrapper() {
    Smol::run(node_network_on_rust_bootstrapper::<Smol>());
}

#[test]
fn tokio_mixed_network_queries() {
    Tokio::run(mixed_network_queries::<Tokio>());
}

#[test]
fn smol_mixed_network_queries() {
    Smol::run(mixed_network_queries::<Smol>());
}
