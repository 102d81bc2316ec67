//! What `ready()` says about the bootstrap, and input the reference cannot represent refused
//! before anything is sent, on both runtimes. Everything on 127.0.0.1 with ephemeral ports.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use futures_lite::future::poll_once;
use hdht_core::crypto::KeyPair;
use hdht_core::dht::{OpError, MAX_SEQ};
use hdht_core::rpc::Persistence;
use hdht_driver::{DhtError, DhtOptions};
use hdht_tests::runtime::{Runtime, Smol, Tokio};

/// Bootstrapping against silent nodes ends after its retries (a few seconds); this bounds it.
const BOOTSTRAP_LIMIT: Duration = Duration::from_secs(30);

fn client_opts(bootstrap: Vec<String>) -> DhtOptions {
    DhtOptions {
        bootstrap,
        host: Ipv4Addr::LOCALHOST,
        port: 0,
        persistence: Persistence::Ephemeral,
        ..DhtOptions::isolated()
    }
}

/// A bootstrap list of UDP sockets that receive and never answer, and one port nobody binds:
/// `ready()` reports that none answered, naming each address it tried; the node keeps running,
/// and once some node has answered (here a ping to a bootstrapper), `ready()` is `Ok`.
async fn silent_bootstrap_nodes_are_reported<R: Runtime>() {
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind a silent socket");
    let silent_addr = match silent.local_addr().expect("local addr") {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("not IPv4: {other}"),
    };
    // "Nobody binds" without freeing the port for another test's node to take (that made this
    // test flaky): a socket connected elsewhere holds the port, but the kernel delivers it
    // nothing from other senders and answers them as a closed port (ICMP port unreachable).
    let port_holder = UdpSocket::bind("127.0.0.1:0").expect("bind");
    port_holder
        .connect("127.0.0.1:9")
        .expect("connect the port holder away");
    let unbound = port_holder.local_addr().expect("local addr").to_string();
    let dht = R::dht(client_opts(vec![silent_addr.to_string(), unbound.clone()]))
        .await
        .expect("node");
    let outcome = R::timeout(BOOTSTRAP_LIMIT, dht.ready())
        .await
        .expect("bootstrap ends in time");
    let Err(DhtError::NoBootstrapReply { tried }) = outcome else {
        panic!("expected NoBootstrapReply, got {outcome:?}");
    };
    let unbound: SocketAddrV4 = unbound.parse().unwrap();
    assert_eq!(tried, vec![silent_addr, unbound]);
    let message = DhtError::NoBootstrapReply {
        tried: tried.clone(),
    }
    .to_string();
    assert!(
        message.contains(&silent_addr.to_string()) && message.contains(&unbound.to_string()),
        "{message}"
    );
    // The bootstrap query really asked the silent node.
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = R::blocking(|| silent.recv_from(&mut buf)).expect("the bootstrap query arrived");
    assert_eq!(buf[0], 0x03, "a dht-rpc request, {n} bytes");
    assert!(dht.to_array().is_empty(), "alone");

    // The node still works: as soon as any node answers, it is no longer alone.
    let boot = R::dht(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
        .await
        .expect("bootstrapper");
    R::timeout(BOOTSTRAP_LIMIT, boot.ready())
        .await
        .expect("bootstrapper in time")
        .expect("a bootstrapper (empty bootstrap list) is ready without anyone to answer it");
    R::timeout(BOOTSTRAP_LIMIT, dht.ping(boot.server_address()))
        .await
        .expect("ping in time")
        .expect("the bootstrapper answers");
    R::timeout(BOOTSTRAP_LIMIT, dht.ready())
        .await
        .expect("ready in time")
        .expect("a node answered: ready is Ok");
    R::destroy(dht).await;
    R::destroy(boot).await;
    drop(port_holder);
}

/// A node that reached its bootstrap node is `Ok`; a destroyed one says so.
async fn reachable_bootstrap_is_ok_and_destroyed_is_destroyed<R: Runtime>() {
    let boot = R::dht(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
        .await
        .expect("bootstrapper");
    R::timeout(BOOTSTRAP_LIMIT, boot.ready())
        .await
        .expect("in time")
        .expect("bootstrapper ready");
    let dht = R::dht(client_opts(vec![boot.server_address().to_string()]))
        .await
        .expect("node");
    R::timeout(BOOTSTRAP_LIMIT, dht.ready())
        .await
        .expect("in time")
        .expect("the bootstrapper answered");
    assert_eq!(dht.to_array(), vec![boot.server_address()]);

    // Destroyed while bootstrapping against a node that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind a silent socket");
    let early = R::dht(client_opts(vec![silent.local_addr().unwrap().to_string()]))
        .await
        .expect("node");
    early.shared().destroy(true);
    let outcome = R::timeout(BOOTSTRAP_LIMIT, early.ready())
        .await
        .expect("in time");
    assert!(
        matches!(outcome, Err(DhtError::Destroyed)),
        "destroyed before ready: {outcome:?}"
    );
    R::destroy(early).await;
    R::destroy(dht).await;
    R::destroy(boot).await;
}

/// A seq above 2^53 - 1 fails on the first poll with a typed error, and the node sends nothing.
async fn seq_beyond_the_reference_is_refused_before_sending<R: Runtime>() {
    // The first node of a network: nobody to talk to, so any datagram would be the put's.
    let dht = R::dht(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
        .await
        .expect("node");
    R::timeout(BOOTSTRAP_LIMIT, dht.ready())
        .await
        .expect("in time")
        .expect("ready");
    let sent = || dht.shared().with_node(|n| n.rpc().stats().datagrams_out);
    let before = sent();
    let kp = KeyPair::from_seed(&[5; 32]);
    for seq in [MAX_SEQ + 1, 1 << 60, u64::MAX] {
        let put = poll_once(dht.mutable_put(&kp, b"value", seq)).await;
        let put = put.map(|r| r.map_err(|e| e.as_op().cloned()));
        assert_eq!(
            put,
            Some(Err(Some(OpError::SeqOutOfRange { seq }))),
            "put {seq}"
        );
        let get = poll_once(dht.mutable_get(kp.public_key(), seq, true)).await;
        let get = get.map(|r| r.map_err(|e| e.as_op().cloned()));
        assert_eq!(
            get,
            Some(Err(Some(OpError::SeqOutOfRange { seq }))),
            "get {seq}"
        );
    }
    assert_eq!(sent(), before, "nothing was sent");
    let message = OpError::SeqOutOfRange { seq: MAX_SEQ + 1 }.to_string();
    assert!(
        message.contains("9007199254740992") && message.contains("0 to 9007199254740991"),
        "{message}"
    );
    R::destroy(dht).await;
}

#[test]
fn tokio_silent_bootstrap_nodes_are_reported() {
    Tokio::run(silent_bootstrap_nodes_are_reported::<Tokio>());
}

#[test]
fn smol_silent_bootstrap_nodes_are_reported() {
    Smol::run(silent_bootstrap_nodes_are_reported::<Smol>());
}

#[test]
fn tokio_reachable_bootstrap_is_ok_and_destroyed_is_destroyed() {
    Tokio::run(reachable_bootstrap_is_ok_and_destroyed_is_destroyed::<Tokio>());
}

#[test]
fn smol_reachable_bootstrap_is_ok_and_destroyed_is_destroyed() {
    Smol::run(reachable_bootstrap_is_ok_and_destroyed_is_destroyed::<Smol>());
}

#[test]
fn tokio_seq_beyond_the_reference_is_refused_before_sending() {
    Tokio::run(seq_beyond_the_reference_is_refused_before_sending::<Tokio>());
}

#[test]
fn smol_seq_beyond_the_reference_is_refused_before_sending() {
    Smol::run(seq_beyond_the_reference_is_refused_before_sending::<Smol>());
}
