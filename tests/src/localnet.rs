//! A private network on 127.0.0.1 for the live scenarios, on either runtime: a bootstrapper,
//! persistent nodes in its table, and options for more nodes on it.

use std::net::Ipv4Addr;
use std::time::Duration;

use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;

use crate::runtime::Runtime;

/// The bound on each step of setting a network up (bootstrap, ready).
pub const STEP: Duration = Duration::from_secs(30);

/// Options for a node on 127.0.0.1 that bootstraps from `bootstrap` (never the public network).
pub fn opts(bootstrap: &[String], persistence: Persistence) -> DhtOptions {
    DhtOptions {
        bootstrap: bootstrap.to_vec(),
        host: Ipv4Addr::LOCALHOST,
        persistence,
        ..DhtOptions::isolated()
    }
}

/// Waits (at most [`STEP`]) for `d`'s bootstrap, which must succeed.
pub async fn ready<R: Runtime>(d: &R::Dht) {
    R::timeout(STEP, d.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
}

/// A bootstrapper and `n` persistent nodes, and the bootstrap list naming the bootstrapper.
pub async fn network<R: Runtime>(n: usize) -> (Vec<R::Dht>, Vec<String>) {
    let boot = R::dht(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
        .await
        .expect("bootstrapper");
    ready::<R>(&boot).await;
    let bootstrap = vec![boot.server_address().to_string()];
    let mut nodes = vec![boot];
    for _ in 0..n {
        let d = R::dht(opts(&bootstrap, Persistence::Persistent))
            .await
            .expect("node");
        ready::<R>(&d).await;
        nodes.push(d);
    }
    (nodes, bootstrap)
}
