//! Connections by public key over real UDP on 127.0.0.1: Rust ⇄ Rust, Rust client → Node
//! server, Node client → Rust server, with default options on both sides, on tokio and smol.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;
use hdht_tests::runtime::{Runtime, Smol, Tokio};
use hdht_tests::NodePeers;
use serde_json::json;

const STEP: Duration = Duration::from_secs(30);

fn opts(bootstrap: &[String], persistence: Persistence) -> DhtOptions {
    DhtOptions {
        bootstrap: bootstrap.to_vec(),
        host: Ipv4Addr::LOCALHOST,
        persistence,
        ..DhtOptions::isolated()
    }
}

async fn rust_network<R: Runtime>(n: usize) -> (R::Dht, Vec<R::Dht>, Vec<String>) {
    let boot = R::dht(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
        .await
        .expect("bootstrapper");
    R::timeout(STEP, boot.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    let bootstrap = vec![boot.server_address().to_string()];
    let mut nodes = Vec::new();
    for _ in 0..n {
        let d = R::dht(opts(&bootstrap, Persistence::Persistent))
            .await
            .expect("node");
        R::timeout(STEP, d.ready())
            .await
            .expect("bootstrap in time")
            .expect("bootstrapped");
        nodes.push(d);
    }
    (boot, nodes, bootstrap)
}

async fn rust_to_rust<R: Runtime>() {
    let (boot, nodes, bootstrap) = rust_network::<R>(5).await;
    let server_dht = R::dht(opts(&bootstrap, Persistence::Adaptive))
        .await
        .expect("server node");
    let client_dht = R::dht(opts(&bootstrap, Persistence::Adaptive))
        .await
        .expect("client node");
    R::timeout(STEP, server_dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    R::timeout(STEP, client_dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    let kp = KeyPair::from_seed(&hash(b"rust server"));
    let mut server = server_dht.create_server();
    R::timeout(STEP, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");
    assert!(!server.relay_addresses().is_empty(), "announced to relays");

    let connect = client_dht.connect(kp.public_key());
    let (client, accepted) = futures_lite::future::zip(
        async {
            R::timeout(STEP, connect)
                .await
                .expect("connect timed out")
                .expect("connect")
        },
        async {
            R::timeout(STEP, server.accept())
                .await
                .expect("accept timed out")
                .expect("a connection")
        },
    )
    .await;
    assert_eq!(client.remote_public_key(), kp.public_key());
    assert_eq!(accepted.remote_public_key(), client.public_key());
    assert_eq!(client.handshake_hash(), accepted.handshake_hash());

    let (mut client, mut accepted) = (client, accepted);
    let msg = b"hello over an encrypted UDX stream".to_vec();
    R::timeout(STEP, client.write_all(&msg))
        .await
        .expect("write timed out")
        .expect("write");
    let mut got = vec![0u8; msg.len()];
    R::timeout(STEP, accepted.read_exact(&mut got))
        .await
        .expect("read timed out")
        .expect("read");
    assert_eq!(got, msg);
    R::timeout(STEP, accepted.write_all(b"and back"))
        .await
        .expect("timed out")
        .expect("write back");
    let mut back = [0u8; 8];
    R::timeout(STEP, client.read_exact(&mut back))
        .await
        .expect("timed out")
        .expect("read back");
    assert_eq!(&back, b"and back");
    // Half-close: the server reads to the end.
    R::timeout(STEP, client.close())
        .await
        .expect("timed out")
        .expect("close");
    let mut rest = Vec::new();
    R::timeout(STEP, accepted.read_to_end(&mut rest))
        .await
        .expect("end timed out")
        .expect("read to end");
    assert!(rest.is_empty());
    drop((client, accepted, server));
    for d in [client_dht, server_dht]
        .into_iter()
        .chain(nodes)
        .chain([boot])
    {
        R::destroy(d).await;
    }
}

async fn rust_client_node_server<R: Runtime>() {
    let peers = NodePeers::new();
    let net = R::blocking(|| peers.testnet_with(json!({"size": 6, "kind": "hyperdht"})))
        .expect("node testnet");
    R::blocking(|| {
        peers.spawn(
            "srv",
            json!({"kind": "hyperdht", "bootstrap": net.bootstrap}),
        )
    })
    .expect("server node");
    let seed = hash(b"node server");
    let pk = KeyPair::from_seed(&seed).public_key();
    R::blocking(|| peers.call(json!({"op": "listen", "name": "srv", "seed": hex::encode(seed)})))
        .expect("listen");
    let client_dht = R::dht(opts(&net.bootstrap, Persistence::Adaptive))
        .await
        .expect("client");
    R::timeout(STEP, client_dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    let mut conn = R::timeout(STEP, client_dht.connect(pk))
        .await
        .expect("connect timed out")
        .expect("connect to a Node server");
    assert_eq!(conn.remote_public_key(), pk);
    let msg = b"rust client to node echo server".to_vec();
    R::timeout(STEP, conn.write_all(&msg))
        .await
        .expect("timed out")
        .expect("write");
    let mut got = vec![0u8; msg.len()];
    R::timeout(STEP, conn.read_exact(&mut got))
        .await
        .expect("echo timed out")
        .expect("read echo");
    assert_eq!(got, msg);
    drop(conn);
    R::destroy(client_dht).await;
}

async fn node_client_rust_server<R: Runtime>() {
    let peers = NodePeers::new();
    let net = R::blocking(|| peers.testnet_with(json!({"size": 6, "kind": "hyperdht"})))
        .expect("node testnet");
    let server_dht = R::dht(opts(&net.bootstrap, Persistence::Adaptive))
        .await
        .expect("server");
    R::timeout(STEP, server_dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    let kp = KeyPair::from_seed(&hash(b"rust echo server"));
    let mut server = server_dht.create_server();
    R::timeout(STEP, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");
    R::blocking(|| {
        peers.spawn(
            "cli",
            json!({"kind": "hyperdht", "bootstrap": net.bootstrap}),
        )
    })
    .expect("client node");
    let message = hex::encode(b"node client to rust echo server");
    let pk = hex::encode(kp.public_key());
    // The echo side runs on its own thread: the Node call below blocks this one.
    let echo = std::thread::spawn(move || {
        futures_lite::future::block_on(async move {
            let mut conn = server.accept().await.expect("connection");
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.expect("read");
            conn.write_all(&buf[..n]).await.expect("echo");
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest).await;
            (conn, server)
        })
    });
    let res = R::blocking(|| {
        peers.call_timeout(
            json!({"op": "connect", "name": "cli", "publicKey": pk, "message": message}),
            Duration::from_secs(25),
        )
    });
    let res = res.expect("Node client connects to the Rust server");
    assert_eq!(res["echoed"].as_str(), Some(message.as_str()));
    let (conn, server) = echo.join().expect("echo thread");
    drop(conn);
    drop(server);
    R::destroy(server_dht).await;
}

#[test]
fn tokio_rust_to_rust() {
    Tokio::run(rust_to_rust::<Tokio>());
}
#[test]
fn smol_rust_to_rust() {
    Smol::run(rust_to_rust::<Smol>());
}
#[test]
fn tokio_rust_client_node_server() {
    Tokio::run(rust_client_node_server::<Tokio>());
}
#[test]
fn smol_rust_client_node_server() {
    Smol::run(rust_client_node_server::<Smol>());
}
#[test]
fn tokio_node_client_rust_server() {
    Tokio::run(node_client_rust_server::<Tokio>());
}
#[test]
fn smol_node_client_rust_server() {
    Smol::run(node_client_rust_server::<Smol>());
}
