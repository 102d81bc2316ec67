//! Real holepunching over UDP on 127.0.0.1, as the reference's own "force holepunch" test does
//! it: every peer is ephemeral with `quickFirewall: false` (on one host every reply comes from
//! an address it already contacted, so nodes stay firewalled), and clients pass
//! `localConnection: false`. Both sides then sample their NAT from pool sockets, exchange
//! PEER_HOLEPUNCH rounds through the relays, probe each other, and the stream runs over the
//! puncher sockets — never the nodes' DHT sockets. Rust ⇄ Node both ways and Rust ⇄ Rust.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::{ConnectOptions, ServerOptions};
use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;
use hdht_tests::runtime::{Runtime, Smol, Tokio};
use hdht_tests::NodePeers;
use serde_json::json;

const STEP: Duration = Duration::from_secs(30);

/// A firewalled, ephemeral Rust node (the reference test's `quickFirewall: false, ephemeral`).
fn punching_opts(bootstrap: &[String]) -> DhtOptions {
    DhtOptions {
        bootstrap: bootstrap.to_vec(),
        host: Ipv4Addr::LOCALHOST,
        persistence: Persistence::Ephemeral,
        quick_firewall: false,
        ..DhtOptions::isolated()
    }
}

fn no_lan() -> ConnectOptions {
    ConnectOptions {
        local_connection: false,
        ..ConnectOptions::default()
    }
}

fn node_punching_peer(net_bootstrap: &[String]) -> serde_json::Value {
    json!({"kind": "hyperdht", "bootstrap": net_bootstrap, "ephemeral": true, "opts": {"quickFirewall": false}})
}

async fn rust_client_node_server<R: Runtime>() {
    let peers = NodePeers::new();
    let net = R::blocking(|| peers.testnet_with(json!({"size": 8, "kind": "hyperdht"})))
        .expect("node testnet");
    let info = R::blocking(|| peers.spawn("srv", node_punching_peer(&net.bootstrap)))
        .expect("server node");
    assert!(
        info.firewalled,
        "the Node server must be firewalled for this test: {info:?}"
    );
    let seed = hash(b"node punching server");
    let pk = KeyPair::from_seed(&seed).public_key();
    let listening = R::blocking(|| {
        peers.call(json!({"op": "listen", "name": "srv", "seed": hex::encode(seed)}))
    })
    .expect("listen");
    let server_dht_port = listening["address"]["port"]
        .as_u64()
        .expect("server address");

    let client_dht = R::dht(punching_opts(&net.bootstrap)).await.expect("client");
    R::timeout(STEP, client_dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    assert!(
        client_dht.is_firewalled(),
        "the Rust client must be firewalled for this test"
    );
    let started = std::time::Instant::now();
    let mut conn = R::timeout(STEP, client_dht.connect_with(pk, no_lan()))
        .await
        .expect("connect timed out")
        .expect("punched to the Node server");
    let took = started.elapsed();
    assert_eq!(conn.remote_public_key(), pk);
    let remote = conn.remote_address().expect("a connected stream");
    assert_ne!(
        u64::from(remote.port()),
        server_dht_port,
        "the stream must run to the server's puncher socket, not its DHT socket"
    );
    let msg = b"rust client punched through to a node server".to_vec();
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
    eprintln!("rust client -> node server: punched in {took:?} to {remote}");
    drop(conn);
    R::destroy(client_dht).await;
}

async fn node_client_rust_server<R: Runtime>() {
    let peers = NodePeers::new();
    let net = R::blocking(|| peers.testnet_with(json!({"size": 8, "kind": "hyperdht"})))
        .expect("node testnet");
    let server_dht = R::dht(punching_opts(&net.bootstrap)).await.expect("server");
    R::timeout(STEP, server_dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    assert!(
        server_dht.is_firewalled(),
        "the Rust server must be firewalled for this test"
    );
    let server_port = server_dht.server_address().port();
    let client_port = server_dht.client_address().port();
    let kp = KeyPair::from_seed(&hash(b"rust punching server"));
    let opts = ServerOptions {
        hide_local_addresses: true,
        ..ServerOptions::default()
    };
    let mut server = server_dht.create_server_with(opts, None);
    R::timeout(STEP, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");
    let info = R::blocking(|| peers.spawn("cli", node_punching_peer(&net.bootstrap)))
        .expect("client node");
    assert!(
        info.firewalled,
        "the Node client must be firewalled for this test: {info:?}"
    );
    let message = hex::encode(b"node client punched through to a rust server");
    let pk = hex::encode(kp.public_key());
    let echo = std::thread::spawn(move || {
        futures_lite::future::block_on(async move {
            let mut conn = server.accept().await.expect("connection");
            let local_port = conn.remote_address();
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.expect("read");
            conn.write_all(&buf[..n]).await.expect("echo");
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest).await;
            (conn, server, local_port)
        })
    });
    let res = R::blocking(|| {
        peers.call_timeout(
            json!({"op": "connect", "name": "cli", "publicKey": pk, "message": message, "localConnection": false}),
            Duration::from_secs(25),
        )
    });
    let res = res.expect("the Node client punches through to the Rust server");
    assert_eq!(res["echoed"].as_str(), Some(message.as_str()));
    let remote_port = res["remote"]["port"]
        .as_u64()
        .expect("the Node client's stream address");
    assert_ne!(
        remote_port,
        u64::from(server_port),
        "the stream must reach our puncher socket, not the DHT server socket"
    );
    assert_ne!(
        remote_port,
        u64::from(client_port),
        "the stream must reach our puncher socket, not the DHT client socket"
    );
    let (conn, server, peer) = echo.join().expect("echo thread");
    eprintln!(
        "node client -> rust server: punched in {} ms, client at {peer:?}",
        res["openMs"]
    );
    drop(conn);
    drop(server);
    R::destroy(server_dht).await;
}

async fn rust_to_rust<R: Runtime>() {
    let peers = NodePeers::new();
    let net = R::blocking(|| peers.testnet_with(json!({"size": 8, "kind": "hyperdht"})))
        .expect("node testnet");
    let server_dht = R::dht(punching_opts(&net.bootstrap)).await.expect("server");
    let client_dht = R::dht(punching_opts(&net.bootstrap)).await.expect("client");
    R::timeout(STEP, server_dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    R::timeout(STEP, client_dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    assert!(server_dht.is_firewalled() && client_dht.is_firewalled());
    let server_port = server_dht.server_address().port();
    let kp = KeyPair::from_seed(&hash(b"rust to rust punch"));
    let mut server = server_dht.create_server_with(
        ServerOptions {
            hide_local_addresses: true,
            ..ServerOptions::default()
        },
        None,
    );
    R::timeout(STEP, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");
    let started = std::time::Instant::now();
    let connect = client_dht.connect_with(kp.public_key(), no_lan());
    let (mut client, mut accepted) = futures_lite::future::zip(
        async {
            R::timeout(STEP, connect)
                .await
                .expect("connect timed out")
                .expect("punched")
        },
        async {
            R::timeout(STEP, server.accept())
                .await
                .expect("accept timed out")
                .expect("a connection")
        },
    )
    .await;
    let took = started.elapsed();
    let remote: SocketAddr = client.remote_address().expect("connected");
    assert_ne!(
        remote.port(),
        server_port,
        "punched streams run over pool sockets"
    );
    assert_eq!(client.handshake_hash(), accepted.handshake_hash());
    R::timeout(STEP, client.write_all(b"punched"))
        .await
        .expect("timed out")
        .expect("write");
    let mut got = [0u8; 7];
    R::timeout(STEP, accepted.read_exact(&mut got))
        .await
        .expect("timed out")
        .expect("read");
    assert_eq!(&got, b"punched");
    eprintln!("rust -> rust: punched in {took:?} to {remote}");
    drop((client, accepted, server));
    R::destroy(client_dht).await;
    R::destroy(server_dht).await;
}

#[test]
fn tokio_rust_client_node_server_punch() {
    Tokio::run(rust_client_node_server::<Tokio>());
}
#[test]
fn smol_rust_client_node_server_punch() {
    Smol::run(rust_client_node_server::<Smol>());
}
#[test]
fn tokio_node_client_rust_server_punch() {
    Tokio::run(node_client_rust_server::<Tokio>());
}
#[test]
fn smol_node_client_rust_server_punch() {
    Smol::run(node_client_rust_server::<Smol>());
}
#[test]
fn tokio_rust_to_rust_punch() {
    Tokio::run(rust_to_rust::<Tokio>());
}
#[test]
fn smol_rust_to_rust_punch() {
    Smol::run(rust_to_rust::<Smol>());
}
