//! Pool sockets through the public API, on tokio and smol.
//!
//! The core opens pool sockets only for holepunching, so this test can't make one from the
//! outside; binding, receiving, sending (with TTL) and closing on a real runtime are covered
//! by the unit tests of `hdht-driver` (`pool.rs`), `hdht-tokio` and `hdht-smol`. What this test
//! proves end to end: a datagram the core routes to a pool socket that is not open — a request
//! or a reply — is dropped silently, nothing reaches the peer, and the node keeps working and
//! shuts down cleanly.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures_lite::StreamExt;
use hdht_core::rpc::{ReplySpec, RequestError, RequestSpec, SocketKind};
use hdht_driver::DhtOptions;
use hdht_tests::runtime::{Runtime, Smol, Tokio};

const STEP: Duration = Duration::from_secs(10);
/// A command HyperDHT doesn't define, so it reaches the application.
const CMD: u64 = 1000;

fn opts() -> DhtOptions {
    DhtOptions {
        host: Ipv4Addr::LOCALHOST,
        handle_requests: true,
        ..DhtOptions::isolated()
    }
}

fn request(to: std::net::SocketAddrV4, value: &[u8], socket: Option<SocketKind>) -> RequestSpec {
    let mut spec = RequestSpec::new(to, CMD);
    spec.value = Some(value.to_vec());
    spec.retries = Some(0);
    spec.timeout = Some(Duration::from_millis(500));
    spec.socket = socket;
    spec
}

async fn unopened_pool_sockets_drop_their_datagrams<R: Runtime>() {
    let a = R::dht(opts()).await.expect("node a");
    let b = R::dht(opts()).await.expect("node b");
    let mut incoming = b.incoming_requests();
    let to = b.server_address();

    // A request from pool socket 5, which the core never opened: it never leaves.
    let lost = a.request(request(
        to,
        b"from a pool socket",
        Some(SocketKind::Pool(5)),
    ));
    assert_eq!(
        R::timeout(STEP, lost).await.expect("settles"),
        Err(RequestError::Timeout)
    );

    // The same from the ordinary socket arrives — and is the first thing b ever receives.
    let pending = a.request(request(to, b"from the client socket", None));
    let req = R::timeout(STEP, incoming.next())
        .await
        .expect("a request in time")
        .expect("a request");
    assert_eq!(
        req.request.value.as_deref(),
        Some(&b"from the client socket"[..])
    );
    req.reply(Some(b"pong".to_vec()));
    let reply = R::timeout(STEP, pending)
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(reply.value.as_deref(), Some(&b"pong"[..]));

    // A reply routed to b's pool socket 3 (never opened) is dropped as well.
    let pending = a.request(request(to, b"answer from a pool socket", None));
    let req = R::timeout(STEP, incoming.next())
        .await
        .expect("a request in time")
        .expect("a request");
    req.respond(ReplySpec {
        socket: Some(SocketKind::Pool(3)),
        ..ReplySpec::value(Some(b"lost".to_vec()))
    });
    assert_eq!(
        R::timeout(STEP, pending).await.expect("settles"),
        Err(RequestError::Timeout)
    );

    // Both nodes still work, and stop cleanly.
    let pending = a.request(request(to, b"still there?", None));
    let req = R::timeout(STEP, incoming.next())
        .await
        .expect("a request in time")
        .expect("a request");
    req.reply(Some(b"yes".to_vec()));
    let reply = R::timeout(STEP, pending)
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(reply.value.as_deref(), Some(&b"yes"[..]));
    drop(incoming);
    R::timeout(STEP, R::destroy(a)).await.expect("a stops");
    R::timeout(STEP, R::destroy(b)).await.expect("b stops");
}

#[test]
fn unopened_pool_sockets_drop_their_datagrams_tokio() {
    Tokio::run(unopened_pool_sockets_drop_their_datagrams::<Tokio>());
}

#[test]
fn unopened_pool_sockets_drop_their_datagrams_smol() {
    Smol::run(unopened_pool_sockets_drop_their_datagrams::<Smol>());
}
