//! A server's firewall and the ends of servers and connections, over real UDP on 127.0.0.1,
//! on tokio and smol:
//!
//! - a firewall that calls the node it guards (`remote_address()`, the routing table, even
//!   `connect`) decides without deadlocking it, and one that awaits a timer first; each
//!   rejects one client (whose connect fails with the reference's `PEER_CONNECTION_FAILED`)
//!   and accepts another;
//! - `Server::close().await` returns once unannounced: a find-peer afterwards finds no record;
//!   `Server::closed()` resolves then;
//! - `flush` resolves once the peer acknowledged, and fails for a destroyed peer; `shutdown`
//!   fails when the peer is destroyed instead of acknowledging our end;
//! - `Connection::closed()` resolves at every end: graceful, the peer's abort, our abort, a
//!   dropped connection, a destroyed node.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use hdht_core::connect::ConnectError;
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::{ConnectOptions, ServerOptions};
use hdht_core::rpc::Persistence;
use hdht_driver::{Connection, DhtHandle, Firewall, FirewallRequest};
use hdht_tests::runtime::{Runtime, Smol, Tokio};

use hdht_tests::localnet::{network, opts, ready, STEP};

async fn node<R: Runtime>(bootstrap: &[String]) -> R::Dht {
    let d = R::dht(opts(bootstrap, Persistence::Adaptive))
        .await
        .expect("node");
    ready::<R>(&d).await;
    d
}

async fn destroy_all<R: Runtime>(nodes: impl IntoIterator<Item = R::Dht>) {
    for d in nodes {
        R::destroy(d).await;
    }
}

/// Connects `client` to `pk` and accepts on `server`: (client side, server side).
async fn pair<R: Runtime>(
    client: &DhtHandle,
    server: &hdht_driver::Server,
    pk: [u8; 32],
) -> (Connection, Connection) {
    let connect = client.connect(pk);
    futures_lite::future::zip(
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
    .await
}

/// Runs one rejected and one accepted connect against a server guarded by `firewall`
/// (which rejects the key of `key("rejected")`); returns how often it was asked.
async fn firewall_scenario<R: Runtime>(
    make: impl FnOnce(DhtHandle, [u8; 32]) -> Firewall,
    asked: Arc<AtomicUsize>,
) {
    let (nodes, bootstrap) = network::<R>(4).await;
    let server_dht = node::<R>(&bootstrap).await;
    let client_dht = node::<R>(&bootstrap).await;
    let rejected = KeyPair::from_seed(&hash(b"rejected client"));
    let kp = KeyPair::from_seed(&hash(b"firewalled server"));
    let firewall = make((*server_dht).clone(), rejected.public_key());
    let mut server = server_dht.create_server_with(ServerOptions::default(), Some(firewall));
    R::timeout(STEP, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");

    // Rejected: the client's connect fails as against the reference (no answer, then
    // PEER_CONNECTION_FAILED), and the server accepts nothing.
    let opts = ConnectOptions {
        key_pair: Some(rejected.clone()),
        ..ConnectOptions::default()
    };
    let failed = R::timeout(
        Duration::from_secs(60),
        client_dht.connect_with(kp.public_key(), opts),
    )
    .await
    .expect("the rejected connect ended");
    assert_eq!(
        failed.err().as_ref().and_then(|e| e.as_connect()),
        Some(&ConnectError::PeerConnectionFailed),
        "a rejected client fails with PEER_CONNECTION_FAILED"
    );
    assert!(asked.load(Ordering::SeqCst) >= 1, "the firewall was asked");
    let nothing = R::timeout(Duration::from_millis(200), server.accept()).await;
    assert!(nothing.is_none(), "no connection was accepted");

    // The node kept working while (and after) its firewall called it.
    assert!(server_dht.remote_address().is_some() || !server_dht.to_array().is_empty());

    // Accepted.
    let (mut client, mut accepted) = pair::<R>(&client_dht, &server, kp.public_key()).await;
    assert_eq!(accepted.remote_public_key(), client.public_key());
    R::timeout(STEP, client.write_all(b"let in"))
        .await
        .expect("write timed out")
        .expect("write");
    let mut got = [0u8; 6];
    R::timeout(STEP, accepted.read_exact(&mut got))
        .await
        .expect("read timed out")
        .expect("read");
    assert_eq!(&got, b"let in");
    drop((client, accepted));
    R::timeout(STEP, server.close())
        .await
        .expect("server closed");
    drop(server);
    destroy_all::<R>([client_dht, server_dht].into_iter().chain(nodes)).await;
}

/// A sync firewall that calls the node it guards: its public address, its routing table, and
/// a connect (to a key nobody serves), which it drops again.
async fn firewall_that_calls_the_node<R: Runtime>() {
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    firewall_scenario::<R>(
        move |dht, reject| {
            Firewall::new(move |req: &FirewallRequest| {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = dht.remote_address();
                let _ = dht.to_array();
                drop(dht.connect(hash(b"nobody serves this key")));
                assert!(
                    req.remote_addresses().contains(&req.client_address),
                    "the client's addresses"
                );
                req.remote_public_key == reject
            })
        },
        asked,
    )
    .await;
}

/// An async firewall that awaits a timer, and a request through the node, before deciding.
async fn firewall_that_awaits<R: Runtime>() {
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    firewall_scenario::<R>(
        move |dht, reject| {
            Firewall::new_async(move |req: FirewallRequest| {
                count.fetch_add(1, Ordering::SeqCst);
                let dht = dht.clone();
                async move {
                    R::sleep(Duration::from_millis(300)).await;
                    // A lookup through the node this firewall guards.
                    let _ = dht.find_peer(req.remote_public_key).finish().await;
                    req.remote_public_key == reject
                }
            })
        },
        asked,
    )
    .await;
}

/// `close().await` returns once the record is gone from the DHT; `closed()` resolves then.
async fn close_waits_for_the_unannounce<R: Runtime>() {
    let (nodes, bootstrap) = network::<R>(5).await;
    let server_dht = node::<R>(&bootstrap).await;
    let client_dht = node::<R>(&bootstrap).await;
    let kp = KeyPair::from_seed(&hash(b"closing server"));
    let mut server = server_dht.create_server();
    R::timeout(STEP, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");
    let records = |d: &DhtHandle| {
        let mut s = d.find_peer(kp.public_key());
        async move {
            let mut n = 0;
            while s.next().await.is_some() {
                n += 1;
            }
            n
        }
    };
    let before = R::timeout(STEP, records(&client_dht)).await.expect("find");
    assert!(before > 0, "the announced record is found");
    let mut closed = server.closed();
    assert_eq!(
        futures_lite::future::poll_once(&mut closed).await,
        None,
        "not closed before close()"
    );
    R::timeout(STEP, server.close())
        .await
        .expect("close finished");
    assert!(
        futures_lite::future::poll_once(&mut closed).await.is_some(),
        "closed() resolved with close()"
    );
    let after = R::timeout(STEP, records(&client_dht)).await.expect("find");
    assert_eq!(after, 0, "no node holds the record after close().await");
    assert!(
        R::timeout(STEP, server.accept())
            .await
            .expect("accept")
            .is_none(),
        "a closed server accepts nothing"
    );
    drop(server);
    destroy_all::<R>([client_dht, server_dht].into_iter().chain(nodes)).await;
}

/// Flush and shutdown wait for the peer's acknowledgements; a destroyed peer fails them.
async fn flush_and_shutdown<R: Runtime>() {
    let (nodes, bootstrap) = network::<R>(3).await;
    let server_dht = node::<R>(&bootstrap).await;
    let client_dht = node::<R>(&bootstrap).await;
    let kp = KeyPair::from_seed(&hash(b"flush server"));
    let mut server = server_dht.create_server();
    R::timeout(STEP, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");

    // Flushed: the bytes are in the peer's buffer before it reads them.
    let (mut client, mut accepted) = pair::<R>(&client_dht, &server, kp.public_key()).await;
    let data = vec![9u8; 200_000];
    R::timeout(STEP, async {
        client.write_all(&data).await?;
        client.flush().await
    })
    .await
    .expect("flush timed out")
    .expect("flushed");
    // Shutdown: returns once our end is acknowledged; the peer then reads to the end.
    R::timeout(STEP, client.close())
        .await
        .expect("shutdown timed out")
        .expect("shutdown");
    let mut got = Vec::new();
    R::timeout(STEP, accepted.read_to_end(&mut got))
        .await
        .expect("read timed out")
        .expect("read to end");
    assert_eq!(got, data);
    drop((client, accepted));

    // A destroyed peer: the flush (or the write before it) fails, never succeeds.
    let (mut client, accepted) = pair::<R>(&client_dht, &server, kp.public_key()).await;
    accepted.destroy();
    let r = R::timeout(STEP, async {
        client.write_all(&data).await?;
        client.flush().await
    })
    .await
    .expect("flush to a destroyed peer ended");
    assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    drop((client, accepted));

    // Shutdown against a peer destroyed instead of acknowledging our end fails.
    let (mut client, accepted) = pair::<R>(&client_dht, &server, kp.public_key()).await;
    accepted.destroy();
    let r = R::timeout(STEP, client.close())
        .await
        .expect("shutdown to a destroyed peer ended");
    assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    drop((client, accepted, server));
    destroy_all::<R>([client_dht, server_dht].into_iter().chain(nodes)).await;
}

/// Ends our side (waiting for its acknowledgement), then reads the peer's to the end.
async fn end(c: &mut Connection) -> std::io::Result<()> {
    c.close().await?;
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.map(|_| ())
}

/// `closed()` resolves at every end of a connection.
async fn closed_at_every_end<R: Runtime>() {
    let (nodes, bootstrap) = network::<R>(3).await;
    let server_dht = node::<R>(&bootstrap).await;
    let client_dht = node::<R>(&bootstrap).await;
    let kp = KeyPair::from_seed(&hash(b"closed server"));
    let mut server = server_dht.create_server();
    R::timeout(STEP, server.listen(&kp))
        .await
        .expect("listen timed out")
        .expect("listen");
    let pk = kp.public_key();
    let wait = |c: hdht_driver::Closed| async move {
        R::timeout(STEP, c).await.expect("closed() resolved")
    };

    // Graceful: both sides end and read to the end.
    let (mut a, mut b) = pair::<R>(&client_dht, &server, pk).await;
    let (ca, cb) = (a.closed(), b.closed());
    assert!(futures_lite::future::poll_once(a.closed()).await.is_none());
    let (ra, rb) = futures_lite::future::zip(end(&mut a), end(&mut b)).await;
    ra.expect("a ended");
    rb.expect("b ended");
    assert!(wait(ca).await.is_ok(), "graceful end");
    assert!(wait(cb).await.is_ok(), "graceful end");
    drop((a, b));

    // The peer aborts; we abort.
    let (a, b) = pair::<R>(&client_dht, &server, pk).await;
    let (ca, cb) = (a.closed(), b.closed());
    b.destroy();
    assert_eq!(
        wait(ca).await.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset)
    );
    assert_eq!(
        wait(cb).await.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionAborted)
    );
    drop((a, b));

    // Dropped without an end: a watcher still learns how it ended.
    let (a, b) = pair::<R>(&client_dht, &server, pk).await;
    let (ca, cb) = (a.closed(), b.closed());
    drop(a);
    assert_eq!(
        wait(ca).await.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionAborted)
    );
    assert_eq!(
        wait(cb).await.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset)
    );
    drop(b);

    // The client's node is destroyed.
    let (a, b) = pair::<R>(&client_dht, &server, pk).await;
    let (ca, cb) = (a.closed(), b.closed());
    R::destroy(client_dht).await;
    assert_eq!(
        wait(ca).await.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionAborted)
    );
    assert_eq!(
        wait(cb).await.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset)
    );
    drop((a, b));
    drop(server);
    destroy_all::<R>([server_dht].into_iter().chain(nodes)).await;
}

#[test]
fn tokio_firewall_that_calls_the_node() {
    Tokio::run(firewall_that_calls_the_node::<Tokio>());
}
#[test]
fn smol_firewall_that_calls_the_node() {
    Smol::run(firewall_that_calls_the_node::<Smol>());
}
#[test]
fn tokio_firewall_that_awaits() {
    Tokio::run(firewall_that_awaits::<Tokio>());
}
#[test]
fn smol_firewall_that_awaits() {
    Smol::run(firewall_that_awaits::<Smol>());
}
#[test]
fn tokio_close_waits_for_the_unannounce() {
    Tokio::run(close_waits_for_the_unannounce::<Tokio>());
}
#[test]
fn smol_close_waits_for_the_unannounce() {
    Smol::run(close_waits_for_the_unannounce::<Smol>());
}
#[test]
fn tokio_flush_and_shutdown() {
    Tokio::run(flush_and_shutdown::<Tokio>());
}
#[test]
fn smol_flush_and_shutdown() {
    Smol::run(flush_and_shutdown::<Smol>());
}
#[test]
fn tokio_closed_at_every_end() {
    Tokio::run(closed_at_every_end::<Tokio>());
}
#[test]
fn smol_closed_at_every_end() {
    Smol::run(closed_at_every_end::<Smol>());
}

/// A flood of handshakes against a firewall that never decides: at most
/// `MAX_PENDING_FIREWALL_DECISIONS` are asked, the rest are rejected without asking, and the
/// node stays responsive. (The queue is driver logic shared by both runtimes.)
#[test]
fn tokio_pending_firewall_decisions_are_capped() {
    Tokio::run(async {
        let (nodes, bootstrap) = network::<Tokio>(2).await;
        let server_dht = node::<Tokio>(&bootstrap).await;
        // Several client nodes: one node's request window lets ~14 handshakes a second out
        // while the unanswered ones retry, and the flood should land in seconds.
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(node::<Tokio>(&bootstrap).await);
        }
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        let firewall = Firewall::new_async(move |_req| {
            count.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<bool>()
        });
        let kp = KeyPair::from_seed(&hash(b"flooded server"));
        let mut server = server_dht.create_server_with(ServerOptions::default(), Some(firewall));
        Tokio::timeout(STEP, server.listen(&kp))
            .await
            .expect("listen timed out")
            .expect("listen");
        let cap = hdht_driver::MAX_PENDING_FIREWALL_DECISIONS;
        let flood = cap + 44;
        let let_in = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..flood {
            let client = (*clients[i % clients.len()]).clone();
            let opts = ConnectOptions {
                key_pair: Some(KeyPair::from_seed(&hash(format!("flood {i}").as_bytes()))),
                relay_addresses: vec![server_dht.server_address()],
                ..ConnectOptions::default()
            };
            let pk = kp.public_key();
            let let_in = let_in.clone();
            tasks.push(tokio::spawn(async move {
                if client.connect_with(pk, opts).await.is_ok() {
                    let_in.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        // Every handshake reaches the server (it remembers each, answered or not, for the
        // clear wait); the ones beyond the cap are rejected without asking, the others wait for
        // a decision that never comes (their connects would end only when the client gives up
        // on them, over a minute later — nothing more to learn from that wait).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while asked.load(Ordering::SeqCst) < cap || server_dht.connect_stats().handshakes < flood {
            assert!(
                std::time::Instant::now() < deadline,
                "after 60 s: asked {}, server handshakes {:?}",
                asked.load(Ordering::SeqCst),
                server_dht.connect_stats()
            );
            Tokio::sleep(Duration::from_millis(50)).await;
        }
        // Retransmitted handshakes of the waiting connects do not ask again.
        Tokio::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            asked.load(Ordering::SeqCst),
            cap,
            "the firewall was asked exactly up to the cap"
        );
        assert_eq!(let_in.load(Ordering::SeqCst), 0, "nobody was let in");
        for t in &tasks {
            t.abort();
        }
        // Still responsive.
        Tokio::timeout(STEP, clients[0].ping(server_dht.server_address()))
            .await
            .expect("ping timed out")
            .expect("the flooded node answers");
        drop(server);
        destroy_all::<Tokio>(clients.into_iter().chain([server_dht]).chain(nodes)).await;
    });
}
