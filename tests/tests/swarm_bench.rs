//! Swarm benchmarks, Rust next to Node hyperswarm@4.17.2 in the same run on the same local
//! network (a Rust bootstrapper and four persistent nodes on 127.0.0.1). Not in the default
//! run (`#[ignore]`): `tests/bench-swarm.sh`, or
//! `cargo test -p hdht-tests --test swarm_bench -- --ignored --nocapture`.
//!
//! * join → first connection and join → full mesh of [`N`] peers, all in one process per
//!   side (Rust: [`N`] swarms on nodes of their own in the test process; Node:
//!   tests/interop/swarm-bench.js), both when every peer joins at the same moment and when
//!   each joins once the previous one's discovery flushed;
//! * memory per connected peer: the resident set of one hub process (`hdht swarm` vs
//!   swarm-peer.js) before and after [`HUB_PEERS`] Rust swarms connected to it.
//!
//! Results print as one JSON line per measurement and a summary with the ratios.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::rpc::Persistence;
use hdht_driver::api::JoinOptions;
use hdht_driver::{Connection, SwarmHandle, SwarmOptions};
use hdht_tests::localnet::{network, opts, ready};
use hdht_tests::netns::hdht_binary;
use hdht_tests::runtime::{Runtime, Tokio};
use hdht_tests::{interop_dir, node_binary, NodePeers};
use serde_json::{json, Value};

/// Peers of the mesh measurement.
const N: usize = 10;
/// Rust swarms that connect to the hub of the memory measurement.
const HUB_PEERS: usize = 20;
/// Longest wait for a full mesh (the reference's peers that join together may miss each
/// other until their next refresh, 10–12 min away: they are reported as not meshed).
const MESH_TIMEOUT: Duration = Duration::from_secs(40);

/// Join → first connection per peer (ms) and first join → full mesh (ms), and the pairs
/// connected at the end.
#[derive(Debug)]
struct MeshRun {
    first_ms: Vec<Option<f64>>,
    mesh_ms: Option<f64>,
    pairs: usize,
}

impl MeshRun {
    fn median_first(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.first_ms.iter().flatten().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }
}

async fn rust_mesh(bootstrap: &[String], topic: [u8; 32], staggered: bool) -> MeshRun {
    let mut peers = Vec::new();
    for _ in 0..N {
        let dht = Tokio::dht(opts(bootstrap, Persistence::Adaptive))
            .await
            .expect("node");
        ready::<Tokio>(&dht).await;
        let swarm = SwarmHandle::start(dht.shared(), SwarmOptions::default()).expect("swarm");
        let stream = swarm.connection_stream();
        peers.push((dht, swarm, stream, Vec::<Connection>::new()));
    }
    let mut joined_at = [None; N];
    let mut first_ms = vec![None; N];
    let mut discoveries = Vec::new();
    let start = Instant::now();
    for (i, (_, swarm, _, _)) in peers.iter().enumerate() {
        joined_at[i] = Some(Instant::now());
        let d = swarm.join(topic, JoinOptions::default()).expect("join");
        if staggered {
            let _ = Tokio::timeout(MESH_TIMEOUT, d.flushed()).await;
        }
        discoveries.push(d);
    }
    let mut mesh_ms = None;
    while start.elapsed() < MESH_TIMEOUT {
        for (i, (_, _, stream, conns)) in peers.iter_mut().enumerate() {
            while let Some(Some((c, _))) =
                Tokio::timeout(Duration::from_millis(1), stream.next()).await
            {
                if first_ms[i].is_none() {
                    first_ms[i] = joined_at[i].map(|t: Instant| t.elapsed().as_secs_f64() * 1e3);
                }
                conns.push(c);
            }
        }
        // Meshed once every peer took a connection to each other one from its stream.
        let meshed = peers.iter().all(|p| {
            let held = p.1.connections();
            held.len() == N - 1
                && held
                    .iter()
                    .all(|k| p.3.iter().any(|c| c.remote_public_key() == *k))
        });
        if meshed {
            mesh_ms = Some(start.elapsed().as_secs_f64() * 1e3);
            break;
        }
        Tokio::sleep(Duration::from_millis(5)).await;
    }
    let pairs = peers.iter().map(|p| p.1.connections().len()).sum::<usize>() / 2;
    drop(discoveries);
    for (dht, swarm, stream, conns) in peers {
        let _ = Tokio::timeout(Duration::from_secs(5), swarm.shutdown()).await;
        drop(conns);
        drop(stream);
        Tokio::destroy(dht).await;
    }
    MeshRun {
        first_ms,
        mesh_ms,
        pairs,
    }
}

fn node_mesh(bootstrap: &str, topic: [u8; 32], staggered: bool) -> MeshRun {
    let out = Command::new(node_binary())
        .arg("swarm-bench.js")
        .args([
            bootstrap,
            &hex::encode(topic),
            &N.to_string(),
            if staggered { "staggered" } else { "together" },
            &MESH_TIMEOUT.as_millis().to_string(),
        ])
        .current_dir(interop_dir())
        .stderr(Stdio::inherit())
        .output()
        .expect("run swarm-bench.js");
    assert!(out.status.success(), "swarm-bench.js failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("swarm-bench.js: not JSON ({e}): {text}"));
    MeshRun {
        first_ms: v["firstMs"]
            .as_array()
            .expect("firstMs")
            .iter()
            .map(Value::as_f64)
            .collect(),
        mesh_ms: v["meshMs"].as_f64(),
        pairs: v["pairs"].as_u64().unwrap_or(0) as usize,
    }
}

/// A process's resident set, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The hub process; killed on drop.
struct Hub(Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns a hub (joined to `topic` with the key of `seed`), waits until it announced, then
/// connects [`HUB_PEERS`] Rust swarms to it (client only): its RSS before and after, KiB.
async fn hub_memory(
    mut hub: Hub,
    bootstrap: &[String],
    topic: [u8; 32],
    seed: [u8; 32],
) -> (u64, u64) {
    let hub_key = KeyPair::from_seed(&seed).public_key();
    // Wait for the hub's announce: a lookup from a probe swarm finds it (as client only).
    let mut peers = Vec::new();
    for _ in 0..HUB_PEERS {
        let dht = Tokio::dht(opts(bootstrap, Persistence::Ephemeral))
            .await
            .expect("node");
        ready::<Tokio>(&dht).await;
        let swarm = SwarmHandle::start(dht.shared(), SwarmOptions::default()).expect("swarm");
        let stream = swarm.connection_stream();
        peers.push((dht, swarm, stream, Vec::<Connection>::new()));
    }
    // Let the hub settle (bootstrapped, announced, its runtime warmed up).
    Tokio::sleep(Duration::from_secs(3)).await;
    let before = rss_kib(hub.0.id());
    let client = JoinOptions {
        server: false,
        client: true,
        limit: None,
    };
    let mut discoveries = Vec::new();
    for (_, swarm, _, _) in &peers {
        discoveries.push(swarm.join(topic, client).expect("join"));
    }
    let start = Instant::now();
    loop {
        for (_, _, stream, conns) in peers.iter_mut() {
            while let Some(Some((c, _))) =
                Tokio::timeout(Duration::from_millis(1), stream.next()).await
            {
                conns.push(c);
            }
        }
        if peers.iter().all(|p| p.1.connections().contains(&hub_key)) {
            break;
        }
        assert!(
            start.elapsed() < MESH_TIMEOUT,
            "not every peer reached the hub: {}",
            peers
                .iter()
                .filter(|p| p.1.connections().contains(&hub_key))
                .count()
        );
        Tokio::sleep(Duration::from_millis(20)).await;
    }
    Tokio::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(hub.0.id());
    if let Some(status) = hub.0.try_wait().expect("hub status") {
        panic!("the hub exited: {status}");
    }
    drop(discoveries);
    for (dht, swarm, stream, conns) in peers {
        let _ = Tokio::timeout(Duration::from_secs(5), swarm.shutdown()).await;
        drop(conns);
        drop(stream);
        Tokio::destroy(dht).await;
    }
    drop(hub);
    (before, after)
}

fn rust_hub(bootstrap: &str, topic: [u8; 32], seed: [u8; 32]) -> Hub {
    let bin = hdht_binary().expect("the hdht binary");
    let mut child = Command::new(bin)
        .args([
            "--bootstrap",
            bootstrap,
            "--host",
            "127.0.0.1",
            "swarm",
            &hex::encode(topic),
            "--seed",
            &hex::encode(seed),
            "--server",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hdht swarm");
    // Its stderr: drained on a thread (status lines).
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    Hub(child)
}

fn node_hub(bootstrap: &str, topic: [u8; 32], seed: [u8; 32]) -> Hub {
    let mut child = Command::new(node_binary())
        .arg("swarm-peer.js")
        .args([
            bootstrap,
            &hex::encode(topic),
            &hex::encode(seed),
            "server-only",
        ])
        .current_dir(interop_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn swarm-peer.js");
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
    Hub(child)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Value {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 100.0).round() / 100.0),
        _ => Value::Null,
    }
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture (tests/bench-swarm.sh)"]
fn swarm_bench_rust_vs_node() {
    drop(NodePeers::new());
    Tokio::run(async {
        let (net, bootstrap) = network::<Tokio>(4).await;
        let boot = bootstrap[0].clone();
        let mut summary = serde_json::Map::new();
        for (round, staggered) in [(0u8, true), (1, false)] {
            let mode = if staggered { "staggered" } else { "together" };
            let rust = rust_mesh(&bootstrap, hash(&[b'r', round]), staggered).await;
            let node = Tokio::blocking(|| node_mesh(&boot, hash(&[b'n', round]), staggered));
            for (side, r) in [("rust", &rust), ("node", &node)] {
                println!(
                    "{}",
                    json!({"bench": "swarmMesh", "side": side, "mode": mode, "peers": N,
                           "firstConnectionMs": r.first_ms, "medianFirstMs": r.median_first(),
                           "meshMs": r.mesh_ms, "pairs": r.pairs})
                );
            }
            summary.insert(
                format!("{mode}FirstRustOverNode"),
                ratio(rust.median_first(), node.median_first()),
            );
            summary.insert(format!("{mode}MeshRustMs"), json!(rust.mesh_ms));
            summary.insert(format!("{mode}MeshNodeMs"), json!(node.mesh_ms));
            summary.insert(
                format!("{mode}MeshRustOverNode"),
                ratio(rust.mesh_ms, node.mesh_ms),
            );
        }
        let mut per_peer = Vec::new();
        for (side, seed) in [("rust", [0x11u8; 32]), ("node", [0x22; 32])] {
            let topic = hash(format!("hub {side}").as_bytes());
            let hub = if side == "rust" {
                rust_hub(&boot, topic, seed)
            } else {
                node_hub(&boot, topic, seed)
            };
            let (before, after) = hub_memory(hub, &bootstrap, topic, seed).await;
            let kib = (after as f64 - before as f64) / HUB_PEERS as f64;
            println!(
                "{}",
                json!({"bench": "swarmMemory", "side": side, "peers": HUB_PEERS,
                       "rssBeforeKiB": before, "rssAfterKiB": after, "kibPerPeer": kib})
            );
            per_peer.push(kib);
        }
        summary.insert("memoryPerPeerRustKiB".into(), json!(per_peer[0]));
        summary.insert("memoryPerPeerNodeKiB".into(), json!(per_peer[1]));
        summary.insert(
            "memoryPerPeerRustOverNode".into(),
            ratio(Some(per_peer[0]), Some(per_peer[1])),
        );
        println!("{}", Value::Object(summary));
        for d in net {
            Tokio::destroy(d).await;
        }
    });
}
