//! A busy server: one server process holding many idle encrypted connections while more
//! connect and move data, the Rust `hdht` server and the Node reference (hyperdht 6.34.0)
//! under the same load in the same run. `cargo bench -p hdht-tests --bench busy_server`.
//!
//! Both servers do the same thing on every connection: write one byte (0x2a) at once, hash
//! (SHA-256) whatever the peer sends, and when the peer ends, write the 32-byte digest and end.
//! The load comes from one Rust client node in the bench process (the same for both servers):
//!
//! 1. idle phase: `HDHT_BUSY_IDLE` connections (default 10,000), at most
//!    `HDHT_BUSY_CONCURRENCY` connects in flight (default 32: more only queue up in the DHT and
//!    time out and retry), each kept open after its first
//!    byte. Reported: handshakes per second of wall time and per CPU-second of the server
//!    process (= handshakes/s per core), and the server's resident memory per idle connection
//!    (VmRSS after minus before, divided by the count, measured `HDHT_BUSY_SETTLE_SECS`
//!    (default 12) after the last connect, once finished handshakes are forgotten);
//! 2. active phase, with the idle connections still open: `HDHT_BUSY_ACTIVE` more (default
//!    1,000), all at once (same concurrency bound), each sending `HDHT_BUSY_KIB` KiB (default
//!    256) and checking the digest the server returns. Reported: p50/p99 time from `connect()`
//!    to the server's first byte (TTFB) under that load, the data phase's handshakes/s, and
//!    the server's CPU-seconds.
//!
//! `HDHT_BENCH_CASES=rust,node` picks servers. The Rust server and client nodes get a
//! connection-buffer budget for the load (`HDHT_BUSY_BUDGET_MIB`, see [`budget`]): with the
//! default budget a node stops taking connections at ~3,400. Everything runs on 127.0.0.1; a UDX stream needs
//! no file descriptor of its own (all streams of a node share its two UDP sockets), so no
//! per-process limit has to be raised for 10,000 connections. The client and the DHT nodes
//! share the machine with the server, so wall-clock rates depend on the machine; the
//! per-CPU-second figures are the comparable ones.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdht_core::crypto::{hash, KeyPair};
use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;
use hdht_tests::NodePeers;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

const SERVER_ENV: &str = "HDHT_BUSY_SERVER";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of process `pid`.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident set of process `pid` in KiB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The connection-buffer budget of the server and the client node: a bound on what their
/// streams may reserve (receive windows plus send buffers), not memory in use. The default
/// (512 MiB) admits ~3,400 connections (half of it at full size, the rest at 80 KiB each);
/// a server meant to hold 11,000 raises it, like this bench (`HDHT_BUSY_BUDGET_MIB`, default
/// 4 GiB; the memory actually used is what the bench reports).
fn budget() -> usize {
    env_usize("HDHT_BUSY_BUDGET_MIB", 4096) << 20
}

fn opts(bootstrap: &[String], persistence: Persistence) -> DhtOptions {
    DhtOptions {
        bootstrap: bootstrap.to_vec(),
        host: Ipv4Addr::LOCALHOST,
        persistence,
        connection_budget: Some(budget()),
        ..DhtOptions::isolated()
    }
}

/// The Rust server, run as a child process on a current-thread runtime (one core, like Node):
/// prints its public key, serves until stdin closes.
fn server_main(bootstrap: String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dht = hdht_tokio::Dht::new(opts(&[bootstrap], Persistence::Persistent))
            .await
            .expect("dht");
        dht.ready().await.expect("bootstrapped");
        let kp = KeyPair::from_seed(&hash(b"busy rust server"));
        let mut server = dht.create_server();
        server.listen(&kp).await.expect("listen");
        println!("{}", json!({"publicKey": hex::encode(kp.public_key())}));
        std::io::stdout().flush().ok();
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        });
        let serve = async {
            while let Some(mut conn) = server.accept().await {
                tokio::spawn(async move {
                    if conn.write_all(&[0x2a]).await.is_err() {
                        return;
                    }
                    // While idle the task holds the connection and a one-byte first-read
                    // buffer only: the hash and the 16 KiB buffer are the active part's, a
                    // future of its own allocated when data comes (an idle task's memory; the
                    // Node server makes its hash lazily the same way).
                    let mut first = [0u8; 1];
                    let n = match conn.read(&mut first).await {
                        Ok(n) => n,
                        Err(_) => return,
                    };
                    Box::pin(hash_and_answer(conn, first, n)).await;
                });
            }
        };
        tokio::select! {
            _ = serve => {}
            _ = stdin_closed => {}
        }
    });
}

/// The active part of a server connection: hashes the first `n` bytes of `first` and
/// everything after them until the peer ends, then writes the digest and ends.
async fn hash_and_answer(mut conn: hdht_tokio::Connection, first: [u8; 1], n: usize) {
    let mut h = Sha256::new();
    if n > 0 {
        h.update(&first[..n]);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => h.update(&buf[..n]),
                Err(_) => return,
            }
        }
    }
    let _ = conn.write_all(&h.finalize()).await;
    let _ = conn.shutdown().await;
    let _ = conn.closed().await;
}

/// The server's process: `pid`, or under a wrapper (`HDHT_BUSY_SERVER_WRAP`) the wrapper's
/// descendant running this executable.
fn server_pid(pid: u32) -> u32 {
    let exe = std::fs::read_link("/proc/self/exe").ok();
    let mut at = pid;
    for _ in 0..8 {
        if std::fs::read_link(format!("/proc/{at}/exe")).ok() == exe {
            return at;
        }
        let children =
            std::fs::read_to_string(format!("/proc/{at}/task/{at}/children")).unwrap_or_default();
        match children
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
        {
            Some(c) => at = c,
            None => break,
        }
    }
    pid
}

/// Where the server runs: its process (for CPU and memory) and its key.
struct Target {
    pid: u32,
    public_key: [u8; 32],
}

/// One connect: `Ok((ttfb, connection))` once the server's first byte arrived.
async fn open(
    dht: &hdht_tokio::Dht,
    pk: [u8; 32],
) -> Result<(Duration, hdht_tokio::Connection), String> {
    let t0 = Instant::now();
    let fut = async {
        let mut conn = dht.connect(pk).await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        if b[0] != 0x2a {
            return Err(format!("first byte {:#x}", b[0]));
        }
        Ok((t0.elapsed(), conn))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[derive(Default)]
struct Result_ {
    idle: usize,
    idle_failed: usize,
    idle_secs: f64,
    idle_cpu: f64,
    idle_ttfb: Vec<f64>,
    rss_before_kb: u64,
    rss_idle_kb: u64,
    active: usize,
    active_failed: usize,
    active_secs: f64,
    active_cpu: f64,
    active_ttfb: Vec<f64>,
    rss_peak_kb: u64,
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}

async fn run_load(
    client: Arc<hdht_tokio::Dht>,
    target: &Target,
    idle: usize,
    active: usize,
    kib: usize,
    concurrency: usize,
) -> Result_ {
    let mut r = Result_ {
        rss_before_kb: rss_kb(target.pid),
        ..Default::default()
    };
    let pk = target.public_key;
    let sem = Arc::new(Semaphore::new(concurrency));

    // 1. Idle connections.
    let cpu0 = cpu_secs(target.pid);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(idle);
    for _ in 0..idle {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = open(&client, pk).await;
            drop(permit);
            r
        }));
    }
    let mut held = Vec::with_capacity(idle);
    for t in tasks {
        match t.await.expect("task") {
            Ok((ttfb, conn)) => {
                r.idle_ttfb.push(ttfb.as_secs_f64() * 1e3);
                held.push(conn);
            }
            Err(e) => {
                if r.idle_failed == 0 {
                    eprintln!("idle connect failed: {e}");
                }
                r.idle_failed += 1;
            }
        }
    }
    r.idle_secs = t0.elapsed().as_secs_f64();
    r.idle_cpu = cpu_secs(target.pid) - cpu0;
    r.idle = held.len();
    // Let the server settle, then measure: both servers keep a finished handshake 10 s to
    // answer a duplicate the same way (hyperdht's and ours), so the last 10 s of handshakes
    // would count as connection memory otherwise.
    tokio::time::sleep(Duration::from_secs(
        env_usize("HDHT_BUSY_SETTLE_SECS", 12) as u64
    ))
    .await;
    r.rss_idle_kb = rss_kb(target.pid);

    // 2. Active connections, the idle ones still open.
    let mut chunk = vec![0u8; 16 * 1024];
    for (i, b) in chunk.iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    let chunk: Arc<[u8]> = chunk.into();
    let size = kib * 1024;
    let mut expect = Sha256::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        expect.update(&chunk[..n]);
        left -= n;
    }
    let expect: [u8; 32] = expect.finalize().into();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(r.rss_idle_kb));
    let sampler = {
        let peak = peak.clone();
        let pid = target.pid;
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kb(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let cpu0 = cpu_secs(target.pid);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(active);
    for _ in 0..active {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let client = client.clone();
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move {
            let out = async {
                let (ttfb, mut conn) = open(&client, pk).await?;
                let mut left = size;
                while left > 0 {
                    let n = left.min(chunk.len());
                    conn.write_all(&chunk[..n])
                        .await
                        .map_err(|e| e.to_string())?;
                    left -= n;
                }
                conn.shutdown().await.map_err(|e| e.to_string())?;
                let mut digest = Vec::new();
                tokio::time::timeout(CONNECT_TIMEOUT, conn.read_to_end(&mut digest))
                    .await
                    .map_err(|_| "digest timed out".to_string())?
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((ttfb, digest))
            }
            .await;
            drop(permit);
            out
        }));
    }
    for t in tasks {
        match t.await.expect("task") {
            Ok((ttfb, digest)) => {
                assert_eq!(digest, expect, "the server's SHA-256 of what we sent");
                r.active_ttfb.push(ttfb.as_secs_f64() * 1e3);
                r.active += 1;
            }
            Err(e) => {
                if r.active_failed == 0 {
                    eprintln!("active connection failed: {e}");
                }
                r.active_failed += 1;
            }
        }
    }
    r.active_secs = t0.elapsed().as_secs_f64();
    r.active_cpu = cpu_secs(target.pid) - cpu0;
    sampler.abort();
    r.rss_peak_kb = peak.load(std::sync::atomic::Ordering::Relaxed);
    for c in &held {
        c.destroy();
    }
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    r
}

fn wanted(case: &str) -> bool {
    std::env::var("HDHT_BENCH_CASES").map_or(true, |v| v.split(',').any(|c| c.trim() == case))
}

fn main() {
    if let Ok(bootstrap) = std::env::var(SERVER_ENV) {
        return server_main(bootstrap);
    }
    let idle = env_usize("HDHT_BUSY_IDLE", 10_000);
    let active = env_usize("HDHT_BUSY_ACTIVE", 1_000);
    let kib = env_usize("HDHT_BUSY_KIB", 256);
    let concurrency = env_usize("HDHT_BUSY_CONCURRENCY", 32).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows: Vec<(&str, Result_)> = Vec::new();
    rt.block_on(async {
        let boot = hdht_tokio::Dht::new(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
            .await
            .expect("bootstrapper");
        boot.ready().await.expect("bootstrapped");
        let bootstrap = vec![boot.server_address().to_string()];
        let mut nodes = Vec::new();
        for _ in 0..4 {
            let d = hdht_tokio::Dht::new(opts(&bootstrap, Persistence::Persistent))
                .await
                .expect("node");
            d.ready().await.expect("bootstrapped");
            nodes.push(d);
        }
        let client = Arc::new(
            hdht_tokio::Dht::new(opts(&bootstrap, Persistence::Adaptive))
                .await
                .expect("client"),
        );
        client.ready().await.expect("bootstrapped");

        if wanted("rust") {
            // `HDHT_BUSY_SERVER_WRAP="heaptrack -o /tmp/busy"` (a command prefix, split on
            // spaces) runs the server under a profiler.
            let exe = std::env::current_exe().expect("exe");
            let wrap = std::env::var("HDHT_BUSY_SERVER_WRAP").unwrap_or_default();
            let mut argv: Vec<std::ffi::OsString> =
                wrap.split_whitespace().map(Into::into).collect();
            argv.push(exe.into());
            let mut child = Command::new(&argv[0])
                .args(&argv[1..])
                .env(SERVER_ENV, &bootstrap[0])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("server process");
            let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
            // (A wrapper may print lines of its own first.)
            let first: Value = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|l| serde_json::from_str::<Value>(&l).ok())
                .expect("the server's public key");
            let public_key = hex::decode(first["publicKey"].as_str().expect("pk"))
                .expect("hex")
                .try_into()
                .expect("32");
            let target = Target {
                pid: server_pid(child.id()),
                public_key,
            };
            eprintln!("rust server pid {}", target.pid);
            let r = run_load(client.clone(), &target, idle, active, kib, concurrency).await;
            drop(child.stdin.take());
            let _ = child.wait();
            rows.push(("Rust hdht", r));
        }
        if wanted("node") {
            let peers = NodePeers::start().expect("node server process");
            peers
                .spawn("srv", json!({"kind": "hyperdht", "bootstrap": bootstrap}))
                .expect("node server");
            let seed = hash(b"busy node server");
            peers
                .call(json!({"op": "busyListen", "name": "srv", "seed": hex::encode(seed)}))
                .expect("busyListen");
            let target = Target {
                pid: peers.pid(),
                public_key: KeyPair::from_seed(&seed).public_key(),
            };
            let r = run_load(client.clone(), &target, idle, active, kib, concurrency).await;
            drop(peers);
            rows.push(("Node hyperdht", r));
        }
    });

    println!(
        "busy server on 127.0.0.1: {idle} idle connections, then {active} active ones \
         ({kib} KiB each, SHA-256 checked) with the idle ones open; ≤ {concurrency} connects in flight"
    );
    println!(
        "{:<14} {:>8} {:>9} {:>11} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>8}",
        "server",
        "idle ok",
        "hs/s",
        "hs/CPU-s",
        "KiB/idle",
        "TTFB p50",
        "TTFB p99",
        "idle p99",
        "active ok",
        "act. hs/s",
        "act. CPU",
        "peak RSS"
    );
    for (name, r) in &rows {
        println!(
            "{:<14} {:>8} {:>9.0} {:>11.0} {:>10.2} {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>9} {:>10.0} {:>8.2}s {:>6.0}MB",
            name,
            format!("{}/{}", r.idle, r.idle + r.idle_failed),
            r.idle as f64 / r.idle_secs,
            r.idle as f64 / r.idle_cpu,
            (r.rss_idle_kb as f64 - r.rss_before_kb as f64) / r.idle.max(1) as f64,
            pct(&r.active_ttfb, 50.0),
            pct(&r.active_ttfb, 99.0),
            pct(&r.idle_ttfb, 99.0),
            format!("{}/{}", r.active, r.active + r.active_failed),
            r.active as f64 / r.active_secs,
            r.active_cpu,
            r.rss_peak_kb as f64 / 1024.0,
        );
    }
    if let [(_, a), (_, b)] = &rows[..] {
        println!(
            "Rust/Node: handshakes per server CPU-s {:.2}×, memory per idle connection {:.3}×, \
             TTFB p99 under load {:.2}×",
            (a.idle as f64 / a.idle_cpu) / (b.idle as f64 / b.idle_cpu),
            ((a.rss_idle_kb as f64 - a.rss_before_kb as f64) / a.idle.max(1) as f64)
                / ((b.rss_idle_kb as f64 - b.rss_before_kb as f64) / b.idle.max(1) as f64),
            pct(&a.active_ttfb, 99.0) / pct(&b.active_ttfb, 99.0),
        );
    }
    println!(
        "(hs/s: handshakes per second of wall time in the idle phase; hs/CPU-s: per CPU-second of \
         the server process, i.e. per core. KiB/idle: server VmRSS growth over the idle phase per \
         connection. TTFB: connect() to the server's first byte of the active connections, made \
         while the idle ones are open and the others move data; idle p99: the same for the idle \
         phase. HDHT_BUSY_IDLE / _ACTIVE / _KIB / _CONCURRENCY set the scale.)"
    );
}
