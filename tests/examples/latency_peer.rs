//! The Rust peer of the latency bench (`tests/benches/latency.rs`), one role per process:
//!
//! ```text
//! latency_peer server --bootstrap H:P --seed HEX   # writes one byte (0x2a) on every connection
//! latency_peer client --bootstrap H:P --pk HEX [--count N] [--gap-ms MS]
//! latency_peer node   --bootstrap H:P              # a DHT node, idle
//! ```
//!
//! Common options: `--threads N` (0, the default: a current-thread tokio runtime, as the `hdht`
//! CLI; N > 0: a multi-threaded one with N workers).
//!
//! Output on stdout, one JSON object per line: `{"event":"listening","publicKey"}` (server),
//! `{"event":"ready"}` (node and client), a `{"i","openMs","firstByteMs"}` line per connect and
//! `{"event":"done"}` (client). `openMs` is when `connect` resolved, `firstByteMs` when the
//! server's first byte was read, both from the call to `connect`. Server and node run until
//! stdin closes.
//!
//! Built by the bench itself (`cargo build --release -p hdht-tests --example latency_peer`).

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hdht_core::crypto::KeyPair;
use hdht_core::rpc::Persistence;
use hdht_tokio::{Dht, DhtOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    role: String,
    bootstrap: Vec<String>,
    seed: Option<[u8; 32]>,
    pk: Option<[u8; 32]>,
    count: usize,
    gap: Duration,
    threads: usize,
}

fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .unwrap_or_else(|| panic!("not 32 bytes of hex: {s}"))
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let role = it.next().expect("role: server | client | node");
    let mut a = Args {
        role,
        bootstrap: Vec::new(),
        seed: None,
        pk: None,
        count: 1,
        gap: Duration::ZERO,
        threads: 0,
    };
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--bootstrap" => a.bootstrap = v.split(',').map(String::from).collect(),
            "--seed" => a.seed = Some(hex32(&v)),
            "--pk" => a.pk = Some(hex32(&v)),
            "--count" => a.count = v.parse().expect("--count"),
            "--gap-ms" => a.gap = Duration::from_millis(v.parse().expect("--gap-ms")),
            "--threads" => a.threads = v.parse().expect("--threads"),
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

fn line(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")
        .and_then(|()| out.flush())
        .expect("stdout");
}

/// Exits the process once stdin closes (the bench dropped us).
fn exit_on_stdin_eof() {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

async fn node(a: &Args) -> Dht {
    let opts = DhtOptions {
        bootstrap: a.bootstrap.clone(),
        host: Ipv4Addr::LOCALHOST,
        persistence: Persistence::Adaptive,
        ..DhtOptions::isolated()
    };
    let dht = Dht::new(opts).await.expect("dht");
    dht.ready().await.expect("bootstrapped");
    dht
}

async fn run(a: Args) {
    match a.role.as_str() {
        "node" => {
            exit_on_stdin_eof();
            let _dht = node(&a).await;
            line(json!({"event": "ready"}));
            std::future::pending::<()>().await;
        }
        "server" => {
            exit_on_stdin_eof();
            let dht = node(&a).await;
            let kp = KeyPair::from_seed(&a.seed.expect("--seed"));
            let mut server = dht.create_server();
            server.listen(&kp).await.expect("listen");
            line(json!({"event": "listening", "publicKey": hex::encode(kp.public_key())}));
            while let Some(mut conn) = server.accept().await {
                tokio::spawn(async move {
                    if conn.write_all(&[0x2a]).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 4096];
                    while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
                    let _ = conn.shutdown().await;
                    // Keep the connection until the peer acknowledged our end.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                });
            }
        }
        "client" => {
            let dht = node(&a).await;
            let pk = a.pk.expect("--pk");
            line(json!({"event": "ready"}));
            for i in 0..a.count {
                let t0 = Instant::now();
                let mut conn = dht.connect(pk).await.expect("connect");
                let open = t0.elapsed();
                let mut b = [0u8; 1];
                conn.read_exact(&mut b).await.expect("first byte");
                let first = t0.elapsed();
                line(
                    json!({"i": i, "openMs": open.as_secs_f64() * 1e3, "firstByteMs": first.as_secs_f64() * 1e3}),
                );
                let _ = conn.shutdown().await;
                let mut rest = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut rest)).await;
                drop(conn);
                tokio::time::sleep(a.gap).await;
            }
            line(json!({"event": "done"}));
            let _ = tokio::time::timeout(Duration::from_secs(2), dht.destroy()).await;
        }
        r => panic!("unknown role {r}"),
    }
}

fn main() {
    let a = args();
    let rt = if a.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    rt.block_on(run(a));
}
