//! Bulk throughput through DHT-established encrypted connections on 127.0.0.1, side by side in
//! one run: Rust→Rust, Rust→Node, Node→Rust and Node→Node (the reference), each peer in its own
//! process. `cargo bench -p hdht-tests --bench transfer` (size: `HDHT_BENCH_MIB`, default 1024;
//! `HDHT_BENCH_CASES=rr,rn,nr,nn` picks directions).
//!
//! Per direction: MB/s, CPU-seconds per GiB on each side (`/proc/self/stat` for Rust,
//! `process.cpuUsage()` for Node) and each side's max RSS, with ratios against Node→Node.
//! Every sender hashes what it sends and every sink hashes what it receives (SHA-256), so the
//! CPU figures are comparable; senders repeat one random 64 KiB chunk. The kernel's UDP
//! receive-buffer drops during each run are shown too (machine-wide `RcvbufErrors`).

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdht_core::crypto::{hash, KeyPair};
use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;
use hdht_tests::NodePeers;
use rand_core::{RngCore, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SINK_ENV: &str = "HDHT_BENCH_SINK";
const SINK_SEED_ENV: &str = "HDHT_BENCH_SINK_SEED";

/// CPU seconds (user + system) of this process.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime); `after` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set of this process in KiB.
fn max_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn opts(bootstrap: &[String], persistence: Persistence) -> DhtOptions {
    DhtOptions {
        bootstrap: bootstrap.to_vec(),
        host: Ipv4Addr::LOCALHOST,
        persistence,
        ..DhtOptions::isolated()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The Rust sink, run as a child process: listens, reads one connection to the end, reports.
fn sink_main(bootstrap: String) {
    runtime().block_on(async move {
        let dht = hdht_tokio::Dht::new(opts(&[bootstrap], Persistence::Adaptive)).await.expect("dht");
        dht.ready().await.expect("bootstrapped");
        let seed = std::env::var(SINK_SEED_ENV).unwrap_or_else(|_| "bench rust sink".into());
        let kp = KeyPair::from_seed(&hash(seed.as_bytes()));
        let mut server = dht.create_server();
        server.listen(&kp).await.expect("listen");
        println!("{}", json!({"publicKey": hex::encode(kp.public_key())}));
        std::io::stdout().flush().ok();
        let mut conn = server.accept().await.expect("accept");
        let cpu0 = cpu_secs();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = conn.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            total += n as u64;
        }
        let cpu = cpu_secs() - cpu0;
        conn.shutdown().await.ok();
        println!("{}", json!({"bytes": total, "sha256": hex::encode(h.finalize()), "cpu": cpu, "maxRssKb": max_rss_kb()}));
        std::io::stdout().flush().ok();
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
}

struct Row {
    name: &'static str,
    mbps: f64,
    send_cpu_per_gib: f64,
    recv_cpu_per_gib: f64,
    send_rss_mb: f64,
    recv_rss_mb: f64,
    /// Datagrams the kernel dropped for a full receive buffer during the run (whole machine).
    rcvbuf_drops: u64,
}

/// `Udp: … RcvbufErrors` from /proc/net/snmp: datagrams dropped because a receiving socket's
/// buffer was full (counted for the whole machine; other processes' drops show up too).
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn node_usage(peers: &NodePeers) -> (f64, f64) {
    let u = peers.call(json!({"op": "usage"})).expect("usage");
    let cpu = (u["userUs"].as_f64().unwrap_or(0.0) + u["systemUs"].as_f64().unwrap_or(0.0)) / 1e6;
    (cpu, u["maxRssKb"].as_f64().unwrap_or(0.0) / 1024.0)
}

/// Sends `size` bytes from a Rust node to `pk`; returns (seconds, sender CPU-s, sha256).
async fn rust_send(dht: &hdht_tokio::Dht, pk: [u8; 32], size: u64) -> (f64, f64, String) {
    let mut conn = dht.connect(pk).await.expect("connect");
    let mut chunk = vec![0u8; 64 * 1024];
    rand_chacha::ChaCha8Rng::seed_from_u64(7).fill_bytes(&mut chunk);
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let mut h = Sha256::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        h.update(&chunk[..n]);
        conn.write_all(&chunk[..n]).await.expect("write");
        left -= n as u64;
    }
    conn.shutdown().await.expect("end");
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await.expect("peer end");
    (
        t0.elapsed().as_secs_f64(),
        cpu_secs() - cpu0,
        hex::encode(h.finalize()),
    )
}

/// A Rust sink in a child process (listening on the key from `seed`), with its output lines.
struct RustSink {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    public_key: [u8; 32],
}

impl RustSink {
    fn start(bootstrap: &str, seed: &str) -> RustSink {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .env(SINK_ENV, bootstrap)
            .env(SINK_SEED_ENV, seed)
            .stdout(Stdio::piped())
            .spawn()
            .expect("sink process");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first: Value =
            serde_json::from_str(&lines.next().expect("sink line").expect("read")).expect("json");
        let public_key = hex::decode(first["publicKey"].as_str().expect("pk"))
            .expect("hex")
            .try_into()
            .expect("32");
        RustSink {
            child,
            lines,
            public_key,
        }
    }

    /// Waits for the sink's report.
    fn finish(mut self) -> Value {
        let done: Value =
            serde_json::from_str(&self.lines.next().expect("sink result").expect("read"))
                .expect("json");
        let _ = self.child.wait();
        done
    }
}

/// Which directions to run: `HDHT_BENCH_CASES`, comma-separated among `rr`, `rn`, `nr`, `nn`
/// (default: all four).
fn wanted(case: &str) -> bool {
    std::env::var("HDHT_BENCH_CASES").map_or(true, |v| v.split(',').any(|c| c.trim() == case))
}

fn main() {
    if let Ok(bootstrap) = std::env::var(SINK_ENV) {
        return sink_main(bootstrap);
    }
    let mib: u64 = std::env::var("HDHT_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let gib = size as f64 / (1u64 << 30) as f64;
    let rt = runtime();
    let mut rows = Vec::new();
    rt.block_on(async {
        let boot = hdht_tokio::Dht::new(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST)).await.expect("bootstrapper");
        boot.ready().await.expect("bootstrapped");
        let bootstrap = vec![boot.server_address().to_string()];
        let mut nodes = Vec::new();
        for _ in 0..4 {
            let d = hdht_tokio::Dht::new(opts(&bootstrap, Persistence::Persistent)).await.expect("node");
            d.ready().await.expect("bootstrapped");
            nodes.push(d);
        }
        let sender = hdht_tokio::Dht::new(opts(&bootstrap, Persistence::Adaptive)).await.expect("sender");
        sender.ready().await.expect("bootstrapped");

        // Rust → Rust (the sink is a child process).
        if wanted("rr") {
            let sink = RustSink::start(&bootstrap[0], "bench rust sink");
            let rss0 = max_rss_kb();
            let drops0 = udp_rcvbuf_errors();
            let (secs, cpu, sha) = rust_send(&sender, sink.public_key, size).await;
            let drops = udp_rcvbuf_errors() - drops0;
            let done = sink.finish();
            assert_eq!(done["bytes"].as_u64(), Some(size), "Rust sink got every byte");
            assert_eq!(done["sha256"].as_str(), Some(sha.as_str()), "in order");
            rows.push(Row {
                name: "Rust→Rust",
                mbps: size as f64 / secs / 1e6,
                send_cpu_per_gib: cpu / gib,
                recv_cpu_per_gib: done["cpu"].as_f64().unwrap_or(0.0) / gib,
                send_rss_mb: rss0.max(max_rss_kb()) as f64 / 1024.0,
                recv_rss_mb: done["maxRssKb"].as_f64().unwrap_or(0.0) / 1024.0,
                rcvbuf_drops: drops,
            });
        }

        // The Node sink (its own process) and the Node sender (another one).
        let sink = NodePeers::start().expect("node sink process");
        sink.spawn("sink", json!({"kind": "hyperdht", "bootstrap": bootstrap})).expect("node sink");
        let src = NodePeers::start().expect("node sender process");
        src.spawn("src", json!({"kind": "hyperdht", "bootstrap": bootstrap})).expect("node sender");

        // Rust → Node.
        if wanted("rn") {
            let seed = hash(b"bench node sink");
            sink.call(json!({"op": "sinkListen", "name": "sink", "seed": hex::encode(seed)})).expect("sinkListen");
            let (ncpu0, _) = node_usage(&sink);
            let drops0 = udp_rcvbuf_errors();
            let (secs, cpu, sha) = rust_send(&sender, KeyPair::from_seed(&seed).public_key(), size).await;
            let drops = udp_rcvbuf_errors() - drops0;
            let (ncpu1, nrss) = node_usage(&sink);
            let r = sink.call(json!({"op": "sinkResults", "name": "sink"})).expect("results");
            let got = r["sinks"].as_array().and_then(|a| a.last()).cloned().unwrap_or(Value::Null);
            assert_eq!(got["bytes"].as_u64(), Some(size), "Node sink got every byte");
            assert_eq!(got["sha256"].as_str(), Some(sha.as_str()), "in order");
            rows.push(Row {
                name: "Rust→Node",
                mbps: size as f64 / secs / 1e6,
                send_cpu_per_gib: cpu / gib,
                recv_cpu_per_gib: (ncpu1 - ncpu0) / gib,
                send_rss_mb: max_rss_kb() as f64 / 1024.0,
                recv_rss_mb: nrss,
                rcvbuf_drops: drops,
            });
        }

        // Node → Rust: the Node sender to a Rust sink process.
        if wanted("nr") {
            let rsink = RustSink::start(&bootstrap[0], "bench rust sink 2");
            let (scpu0, _) = node_usage(&src);
            let drops0 = udp_rcvbuf_errors();
            let sent = src
                .call_timeout(
                    json!({"op": "sendRandom", "name": "src", "publicKey": hex::encode(rsink.public_key), "size": size, "reuse": true}),
                    Duration::from_secs(600),
                )
                .expect("node sends");
            let drops = udp_rcvbuf_errors() - drops0;
            let (scpu1, srss) = node_usage(&src);
            let done = rsink.finish();
            assert_eq!(done["bytes"].as_u64(), Some(size), "Rust sink got every byte");
            assert_eq!(done["sha256"], sent["sha256"], "in order");
            let secs = sent["ms"].as_f64().map_or(f64::NAN, |ms| ms / 1000.0);
            rows.push(Row {
                name: "Node→Rust",
                mbps: size as f64 / secs / 1e6,
                send_cpu_per_gib: (scpu1 - scpu0) / gib,
                recv_cpu_per_gib: done["cpu"].as_f64().unwrap_or(0.0) / gib,
                send_rss_mb: srss,
                recv_rss_mb: done["maxRssKb"].as_f64().unwrap_or(0.0) / 1024.0,
                rcvbuf_drops: drops,
            });
        }

        // Node → Node: the reference, two Node processes.
        if wanted("nn") {
            let seed2 = hash(b"bench node sink 2");
            sink.call(json!({"op": "sinkListen", "name": "sink", "seed": hex::encode(seed2)})).expect("sinkListen");
            let (rcpu0, _) = node_usage(&sink);
            let (scpu0, _) = node_usage(&src);
            let pk2 = hex::encode(KeyPair::from_seed(&seed2).public_key());
            let t0 = Instant::now();
            let drops0 = udp_rcvbuf_errors();
            let sent = src
                .call_timeout(json!({"op": "sendRandom", "name": "src", "publicKey": pk2, "size": size, "reuse": true}), Duration::from_secs(600))
                .expect("node sends");
            let drops = udp_rcvbuf_errors() - drops0;
            let secs = t0.elapsed().as_secs_f64();
            let (rcpu1, rrss) = node_usage(&sink);
            let (scpu1, srss) = node_usage(&src);
            let r = sink.call(json!({"op": "sinkResults", "name": "sink"})).expect("results");
            let got = r["sinks"].as_array().and_then(|a| a.last()).cloned().unwrap_or(Value::Null);
            assert_eq!(got["bytes"].as_u64(), Some(size), "Node sink got every byte");
            assert_eq!(got["sha256"], sent["sha256"], "in order");
            // The Node sender's own clock excludes connecting, like ours.
            let node_secs = sent["ms"].as_f64().map_or(secs, |ms| ms / 1000.0);
            rows.push(Row {
                name: "Node→Node",
                mbps: size as f64 / node_secs / 1e6,
                send_cpu_per_gib: (scpu1 - scpu0) / gib,
                recv_cpu_per_gib: (rcpu1 - rcpu0) / gib,
                send_rss_mb: srss,
                recv_rss_mb: rrss,
                rcvbuf_drops: drops,
            });
        }
        drop(src);
        drop(sink);
    });

    let node = rows
        .iter()
        .find(|r| r.name == "Node→Node")
        .map_or(f64::NAN, |r| r.mbps);
    let node_cpu = rows
        .iter()
        .find(|r| r.name == "Node→Node")
        .map_or((f64::NAN, f64::NAN), |r| {
            (r.send_cpu_per_gib, r.recv_cpu_per_gib)
        });
    println!("{mib} MiB one way through a DHT-established encrypted connection, 127.0.0.1");
    println!(
        "{:<10} {:>8} {:>7} {:>14} {:>14} {:>9} {:>9} {:>14} {:>14} {:>8} {:>8} {:>10}",
        "direction",
        "MB/s",
        "×Node",
        "send CPU-s/GiB",
        "recv CPU-s/GiB",
        "send RSS",
        "recv RSS",
        "send CPU ×Node",
        "recv CPU ×Node",
        "send CPU",
        "recv CPU",
        "UDP drops"
    );
    for r in &rows {
        // Share of one core each side used while sending (CPU-s per GiB × GiB/s).
        let gib_per_s = r.mbps * 1e6 / (1u64 << 30) as f64;
        println!(
            "{:<10} {:>8.1} {:>7.2} {:>14.2} {:>14.2} {:>7.1}MB {:>7.1}MB {:>14.2} {:>14.2} {:>7.0}% {:>7.0}% {:>10}",
            r.name,
            r.mbps,
            r.mbps / node,
            r.send_cpu_per_gib,
            r.recv_cpu_per_gib,
            r.send_rss_mb,
            r.recv_rss_mb,
            r.send_cpu_per_gib / node_cpu.0,
            r.recv_cpu_per_gib / node_cpu.1,
            r.send_cpu_per_gib * gib_per_s * 100.0,
            r.recv_cpu_per_gib * gib_per_s * 100.0,
            r.rcvbuf_drops
        );
    }
    // What the bench's own verification costs: every side hashes each byte once (SHA-256),
    // included in its CPU-s/GiB above. Measured here on the same machine, same crate.
    let hash_cpu = {
        let chunk = vec![0x5au8; 64 * 1024];
        let mut h = Sha256::new();
        let cpu0 = cpu_secs();
        for _ in 0..(256 * 1024 * 1024 / chunk.len()) {
            h.update(&chunk);
        }
        std::hint::black_box(h.finalize());
        (cpu_secs() - cpu0) * 4.0
    };
    println!("SHA-256 alone (the bench's verification, once a side): {hash_cpu:.2} CPU-s/GiB");
    for r in rows.iter().filter(|r| r.name == "Rust→Rust") {
        println!(
            "Rust→Rust without it: {:.2} send / {:.2} recv CPU-s/GiB",
            r.send_cpu_per_gib - hash_cpu,
            r.recv_cpu_per_gib - hash_cpu
        );
    }
    println!(
        "(Rust send RSS is the whole bench process: bootstrapper, 4 DHT nodes and the sender."
    );
    println!(" send/recv CPU: share of one core each side used during the transfer. UDP drops: the kernel's");
    println!(" RcvbufErrors during the run, machine-wide. HDHT_BENCH_CASES=rr,rn,nr,nn picks directions.)");
}
