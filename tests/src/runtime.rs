//! One trait over the two runtimes so every interop scenario runs on both tokio and smol.

use std::future::Future;
use std::ops::Deref;
use std::time::Duration;

use hdht_driver::{DhtError, DhtHandle, DhtOptions};

/// A runtime the scenarios can run on.
pub trait Runtime {
    /// The runtime's node type.
    type Dht: Deref<Target = DhtHandle> + Send + Sync + 'static;
    /// Creates a node.
    fn dht(opts: DhtOptions) -> impl Future<Output = Result<Self::Dht, DhtError>>;
    /// Destroys a node and waits for its I/O task.
    fn destroy(dht: Self::Dht) -> impl Future<Output = ()>;
    /// Runs blocking work (talking to the Node peers) without starving the runtime.
    fn blocking<T>(f: impl FnOnce() -> T) -> T;
    /// Sleeps.
    fn sleep(d: Duration) -> impl Future<Output = ()> + Send;
    /// Runs a whole scenario.
    fn run<F: Future>(f: F) -> F::Output;
    /// Fails the future if it takes longer than `d`.
    fn timeout<F: Future>(d: Duration, f: F) -> impl Future<Output = Option<F::Output>>;
}

/// tokio (multi-threaded, so blocking calls can move off a worker).
pub struct Tokio;

impl Runtime for Tokio {
    type Dht = hdht_tokio::Dht;
    async fn dht(opts: DhtOptions) -> Result<Self::Dht, DhtError> {
        hdht_tokio::Dht::new(opts).await
    }
    async fn destroy(dht: Self::Dht) {
        dht.destroy().await
    }
    fn blocking<T>(f: impl FnOnce() -> T) -> T {
        tokio::task::block_in_place(f)
    }
    async fn sleep(d: Duration) {
        tokio::time::sleep(d).await
    }
    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f)
    }
    async fn timeout<F: Future>(d: Duration, f: F) -> Option<F::Output> {
        tokio::time::timeout(d, f).await.ok()
    }
}

/// smol / async-io.
pub struct Smol;

impl Runtime for Smol {
    type Dht = hdht_smol::Dht;
    async fn dht(opts: DhtOptions) -> Result<Self::Dht, DhtError> {
        hdht_smol::Dht::new(opts).await
    }
    async fn destroy(dht: Self::Dht) {
        dht.destroy().await
    }
    fn blocking<T>(f: impl FnOnce() -> T) -> T {
        f()
    }
    async fn sleep(d: Duration) {
        async_io::Timer::after(d).await;
    }
    fn run<F: Future>(f: F) -> F::Output {
        async_io::block_on(f)
    }
    async fn timeout<F: Future>(d: Duration, f: F) -> Option<F::Output> {
        futures_lite::future::or(async { Some(f.await) }, async {
            async_io::Timer::after(d).await;
            None
        })
        .await
    }
}
