//! HyperDHT record latency — lookup, announce, unannounce, immutable put/get, mutable put/get —
//! on one 50-node network on 127.0.0.1, measured from a Rust client and from a Node.js
//! reference client (hyperdht 6.34.0) in the same run, side by side.
//!
//! Run: `cargo bench -p hdht-tests --bench records` (options after `--`: `--reps N` (30),
//! `--rust-nodes N` (25), `--node-nodes N` (25)). Needs Node.js and the pinned packages, which
//! the harness installs on first use (`npm ci` in `tests/interop`).
//!
//! The setup, and why it is fair:
//! - ONE network: a Node bootstrapper plus Node hyperdht nodes (the harness testnet, all in one
//!   `peer.js` process, one event loop) and persistent Rust nodes (all on one current-thread
//!   tokio runtime, one thread). Both clients query the very same 50 servers, so the server
//!   side is identical for both and what differs is the client: its query engine, its
//!   commits, its signing. Each implementation's servers get one thread, so neither half of
//!   the network is favoured.
//! - Two clients, both ephemeral nodes with the default concurrency (10), bootstrapped from
//!   the same node: the Rust client on its own current-thread runtime (the bench's main
//!   thread), the Node client in its own process (`tests/interop/bench-records.js`). The Node
//!   client times each operation inside JS (`process.hrtime`), so the JSON-over-stdio hop
//!   that carries the request is not measured.
//! - They take turns — repetition i of an operation runs on one, then on the other, who goes
//!   first alternating — so they never overlap and slow drift (other load on the machine) hits
//!   both alike. A whole round of every operation runs unmeasured first (JIT warm-up). Inputs have the same
//!   sizes on both sides (each side has its own topics, keys and values, so neither finds the
//!   other's records already stored).

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::rpc::{NodeId, Persistence};
use hdht_tests::{interop_dir, NodePeers};
use hdht_tokio::{Dht, DhtOptions};
use serde_json::{json, Value};

/// How long one operation (or one node's bootstrap) may take before the bench gives up.
const STEP: Duration = Duration::from_secs(30);

/// Unmeasured repetitions of every operation before the measured ones.
const WARM_UP: usize = 5;

const OPS: [&str; 7] = [
    "lookup",
    "announce",
    "unannounce",
    "immutablePut",
    "immutableGet",
    "mutablePut",
    "mutableGet",
];

struct Opts {
    reps: usize,
    rust_nodes: usize,
    node_nodes: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        reps: 30,
        rust_nodes: 25,
        node_nodes: 25,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or_else(|| panic!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--reps" => o.reps = num("--reps"),
            "--rust-nodes" => o.rust_nodes = num("--rust-nodes"),
            "--node-nodes" => o.node_nodes = num("--node-nodes"),
            "--bench" => {} // added by `cargo bench`
            other => panic!("unknown option {other:?} (use --reps, --rust-nodes, --node-nodes)"),
        }
    }
    o
}

fn main() {
    let o = opts();
    println!(
        "setting up: {} Node hyperdht nodes (bootstrapper included) + {} Rust nodes on 127.0.0.1 …",
        o.node_nodes, o.rust_nodes
    );
    let setup = Instant::now();
    let peers = NodePeers::new();
    let net = peers
        .testnet_with(json!({"size": o.node_nodes, "kind": "hyperdht", "timeout": 300_000}))
        .expect("the Node testnet");
    let servers = RustServers::start(o.rust_nodes, net.bootstrap.clone());
    // A refresh round on the Node side too, so every Node node meets the Rust nodes.
    for n in net.nodes.iter().skip(1) {
        let target = hash(format!("bench refresh {}", n.name).as_bytes());
        peers
            .find_node(&n.name, &target)
            .expect("a Node refresh query");
    }
    let client = NodeClient::start(&net.bootstrap);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let results = rt.block_on(async {
        let opts = DhtOptions {
            bootstrap: net.bootstrap.clone(),
            host: Ipv4Addr::LOCALHOST,
            port: 0,
            persistence: Persistence::Ephemeral,
            ..DhtOptions::isolated()
        };
        let dht = Dht::new(opts).await.expect("the Rust client");
        assert!(
            matches!(tokio::time::timeout(STEP, dht.ready()).await, Ok(Ok(()))),
            "the Rust client did not bootstrap"
        );
        let client = Arc::new(Mutex::new(client));
        let size = network_size(&dht).await;
        println!(
            "network up in {:.1} s: {} + {} = {} nodes (the Rust client's lookup finds {size} closest)",
            setup.elapsed().as_secs_f64(),
            o.node_nodes,
            servers.addrs.len(),
            o.node_nodes + servers.addrs.len(),
        );
        let results = measure(&dht, &client, o.reps).await;
        dht.destroy_force().await;
        results
    });
    servers.stop();
    drop(peers);
    print_table(&o, &results);
}

/// The number of closest nodes a lookup of a random target finds (k = 20 when the network
/// has at least 20 nodes).
async fn network_size(dht: &Dht) -> usize {
    let q = dht.find_node(NodeId(hash(b"bench: network size")));
    match tokio::time::timeout(STEP, q.finish()).await {
        Ok(Ok(r)) => r.closest_nodes().count(),
        _ => 0,
    }
}

// ----- the Rust servers -----

/// Persistent Rust nodes on one current-thread runtime in a thread of their own.
struct RustServers {
    addrs: Vec<SocketAddrV4>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl RustServers {
    fn start(n: usize, bootstrap: Vec<String>) -> RustServers {
        let (tx, rx) = mpsc::channel::<Result<Vec<SocketAddrV4>, String>>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rust-servers".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let mut nodes: Vec<Dht> = Vec::with_capacity(n);
                    for i in 0..n {
                        let opts = DhtOptions {
                            bootstrap: bootstrap.clone(),
                            host: Ipv4Addr::LOCALHOST,
                            port: 0,
                            persistence: Persistence::Persistent,
                            ..DhtOptions::isolated()
                        };
                        let dht = match Dht::new(opts).await {
                            Ok(d) => d,
                            Err(e) => {
                                let _ = tx.send(Err(format!("Rust node {i}: {e}")));
                                return;
                            }
                        };
                        if !matches!(tokio::time::timeout(STEP, dht.ready()).await, Ok(Ok(()))) {
                            let _ = tx.send(Err(format!("Rust node {i} did not bootstrap")));
                            return;
                        }
                        nodes.push(dht);
                    }
                    // A refresh round: every node meets the nodes that joined after it.
                    let queries: Vec<_> = nodes
                        .iter()
                        .enumerate()
                        .map(|(i, d)| {
                            d.find_node(NodeId(hash(format!("bench refresh {i}").as_bytes())))
                        })
                        .collect();
                    for q in queries {
                        let _ = tokio::time::timeout(STEP, q.finish()).await;
                    }
                    let _ = tx.send(Ok(nodes.iter().map(|d| d.server_address()).collect()));
                    let _ = stopped.await;
                    for d in nodes {
                        d.destroy_force().await;
                    }
                });
            })
            .expect("spawn the Rust servers' thread");
        let addrs = rx
            .recv()
            .expect("the Rust servers' thread ended")
            .unwrap_or_else(|e| panic!("{e}"));
        RustServers {
            addrs,
            stop,
            thread,
        }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

// ----- the Node client -----

/// `node bench-records.js`: one ephemeral hyperdht node that times operations on request.
struct NodeClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl NodeClient {
    fn start(bootstrap: &[String]) -> NodeClient {
        let node = std::env::var("HDHT_NODE").unwrap_or_else(|_| "node".into());
        let mut child = Command::new(&node)
            .arg("bench-records.js")
            .arg(bootstrap.join(","))
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{node} bench-records.js`: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut client = NodeClient {
            stdin: child.stdin.take(),
            child,
            lines,
        };
        let ready = client.recv();
        assert_eq!(ready["event"], "ready", "bench-records.js: {ready}");
        client
    }

    fn recv(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(STEP)
            .unwrap_or_else(|_| panic!("bench-records.js gave no answer within {STEP:?}"));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("bench-records.js printed a non-JSON line ({e}): {line}"))
    }

    /// One request; the reply (with its `ms`), or the error it reported.
    fn call(&mut self, req: &Value) -> Result<Value, String> {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{req}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("writing to bench-records.js: {e}"))?;
        let reply = self.recv();
        match reply.get("error").and_then(Value::as_str) {
            Some(e) => Err(e.to_string()),
            None => Ok(reply),
        }
    }
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        drop(self.stdin.take()); // it destroys its node and exits
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls the Node client from the runtime without blocking it (the Rust client's node keeps
/// running meanwhile).
async fn node_call(client: &Arc<Mutex<NodeClient>>, req: Value) -> Result<Value, String> {
    let client = client.clone();
    tokio::task::spawn_blocking(move || client.lock().unwrap().call(&req))
        .await
        .map_err(|e| format!("join: {e}"))?
}

// ----- the measurements -----

/// The inputs of one side: its own topics, keys and values, the same sizes on both sides.
struct Side {
    name: &'static str,
    announcer_seed: [u8; 32],
    mutable_seed: [u8; 32],
}

impl Side {
    fn new(name: &'static str) -> Side {
        Side {
            name,
            announcer_seed: hash(format!("bench {name} announcer").as_bytes()),
            mutable_seed: hash(format!("bench {name} mutable key").as_bytes()),
        }
    }
    fn topic(&self, i: usize) -> [u8; 32] {
        hash(format!("bench {} topic {i}", self.name).as_bytes())
    }
    fn immutable_value(&self, i: usize) -> Vec<u8> {
        format!("{} immutable value {i:06}", self.name).into_bytes()
    }
    fn mutable_value(&self, i: usize) -> Vec<u8> {
        format!("{} mutable value {i:06}", self.name).into_bytes()
    }
}

/// The topic both clients look up; each client announces itself under it first, so every
/// lookup reply lists peers.
fn lookup_topic() -> [u8; 32] {
    hash(b"bench lookup topic")
}

/// Per operation, the latencies of each side in ms, and the failed repetitions.
struct Results {
    rust: Vec<Vec<f64>>,
    node: Vec<Vec<f64>>,
    failures: Vec<String>,
}

async fn measure(dht: &Dht, client: &Arc<Mutex<NodeClient>>, reps: usize) -> Results {
    let (rs, ns) = (Side::new("rust"), Side::new("node"));
    let rust_announcer = KeyPair::from_seed(&rs.announcer_seed);
    let lt = lookup_topic();

    // Warm-up, which also puts peers under the lookup topic.
    tokio::time::timeout(STEP, dht.announce(lt, &rust_announcer, &[]).finish())
        .await
        .expect("warm-up announce timed out")
        .expect("Rust warm-up announce");
    node_call(
        client,
        json!({"op": "announce", "topic": hex::encode(lt), "seed": hex::encode(ns.announcer_seed)}),
    )
    .await
    .expect("Node warm-up announce");
    // A whole unmeasured round of every operation first, so the Node client's JIT is warm.
    let warm_up = round(dht, client, (&rs, &ns), 0, WARM_UP).await;
    let mut res = round(dht, client, (&rs, &ns), WARM_UP, reps).await;
    let warm_up_failures = warm_up
        .failures
        .into_iter()
        .map(|f| format!("(warm-up) {f}"));
    res.failures.extend(warm_up_failures);
    res
}

/// Repetitions `first..first + reps` of every operation, Rust and Node taking turns.
async fn round(
    dht: &Dht,
    client: &Arc<Mutex<NodeClient>>,
    (rs, ns): (&Side, &Side),
    first: usize,
    reps: usize,
) -> Results {
    let rust_announcer = KeyPair::from_seed(&rs.announcer_seed);
    let rust_signer = KeyPair::from_seed(&rs.mutable_seed);
    let node_signer_pk = KeyPair::from_seed(&ns.mutable_seed).public_key();
    let lt = lookup_topic();
    let last_seq = (first + reps) as u64;
    let mut res = Results {
        rust: vec![Vec::new(); OPS.len()],
        node: vec![Vec::new(); OPS.len()],
        failures: Vec::new(),
    };
    let mut rust_hashes = Vec::new();
    let mut node_hashes = Vec::new();
    for (k, op) in OPS.iter().enumerate() {
        for (n, i) in (first..first + reps).enumerate() {
            let rust_hashes = &mut rust_hashes;
            let node_hashes = &mut node_hashes;
            let rust = async {
                let t0 = Instant::now();
                let outcome: Result<(), String> = match *op {
                    "lookup" => rust_lookup(dht, lt).await.and_then(|peers| {
                        (peers >= 2)
                            .then_some(())
                            .ok_or(format!("lookup saw {peers} peers"))
                    }),
                    "announce" => timed(dht.announce(rs.topic(i), &rust_announcer, &[]).finish())
                        .await
                        .map(drop),
                    "unannounce" => timed(dht.unannounce(rs.topic(i), &rust_announcer)).await,
                    "immutablePut" => timed(dht.immutable_put(&rs.immutable_value(i)))
                        .await
                        .map(|p| rust_hashes.push(p.hash)),
                    "immutableGet" => match rust_hashes.get(n) {
                        Some(h) => timed(dht.immutable_get(*h))
                            .await
                            .and_then(|v| v.map(drop).ok_or("not found".into())),
                        None => Err("no hash (its put failed)".into()),
                    },
                    "mutablePut" => {
                        timed(dht.mutable_put(&rust_signer, &rs.mutable_value(i), i as u64 + 1))
                            .await
                            .map(drop)
                    }
                    "mutableGet" => timed(dht.mutable_get(rust_signer.public_key(), 0, true))
                        .await
                        .and_then(|v| match v {
                            Some(v) if v.seq == last_seq => Ok(()),
                            Some(v) => Err(format!("seq {} instead of {last_seq}", v.seq)),
                            None => Err("not found".into()),
                        }),
                    _ => unreachable!(),
                };
                outcome.map(|()| t0.elapsed().as_secs_f64() * 1e3)
            };
            let node = async {
                let req = match *op {
                    "lookup" => json!({"op": op, "topic": hex::encode(lt)}),
                    "announce" | "unannounce" => json!({
                        "op": op, "topic": hex::encode(ns.topic(i)), "seed": hex::encode(ns.announcer_seed)
                    }),
                    "immutablePut" => {
                        json!({"op": op, "value": hex::encode(ns.immutable_value(i))})
                    }
                    "immutableGet" => match node_hashes.get(n) {
                        Some(h) => json!({"op": op, "hash": h}),
                        None => return Err("no hash (its put failed)".to_string()),
                    },
                    "mutablePut" => json!({
                        "op": op, "seed": hex::encode(ns.mutable_seed),
                        "value": hex::encode(ns.mutable_value(i)), "seq": i + 1
                    }),
                    "mutableGet" => {
                        json!({"op": op, "publicKey": hex::encode(node_signer_pk), "latest": true})
                    }
                    _ => unreachable!(),
                };
                node_call(client, req).await.and_then(|r| {
                    let ok = match *op {
                        "lookup" => r["peers"].as_u64() >= Some(2),
                        "immutablePut" => {
                            node_hashes.push(r["hash"].clone());
                            true
                        }
                        "immutableGet" => r["found"] == true,
                        "mutableGet" => r["seq"].as_u64() == Some(last_seq),
                        _ => true,
                    };
                    if ok {
                        r["ms"].as_f64().ok_or(format!("no ms in {r}"))
                    } else {
                        Err(format!("unexpected reply {r}"))
                    }
                })
            };
            // Who goes first alternates, so neither side always runs right after the other.
            let (rust, node) = if n % 2 == 0 {
                let r = rust.await;
                (r, node.await)
            } else {
                let x = node.await;
                (rust.await, x)
            };
            match rust {
                Ok(ms) => res.rust[k].push(ms),
                Err(e) => res.failures.push(format!("rust {op} #{i}: {e}")),
            }
            match node {
                Ok(ms) => res.node[k].push(ms),
                Err(e) => res.failures.push(format!("node {op} #{i}: {e}")),
            }
        }
    }
    res
}

/// Awaits an operation with the bench's time bound; errors as text.
async fn timed<T, E: std::fmt::Display>(
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(STEP, fut).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("timed out after {STEP:?}")),
    }
}

/// A lookup drained to its end; the number of peers the replies listed.
async fn rust_lookup(dht: &Dht, topic: [u8; 32]) -> Result<usize, String> {
    timed(async {
        let mut stream = dht.lookup(topic);
        let mut peers = 0;
        while let Some(reply) = stream.next().await {
            peers += reply.peers.len();
        }
        stream.finish().await.map(|_| peers)
    })
    .await
}

// ----- the report -----

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn stats(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    (
        percentile(&s, 0.5),
        percentile(&s, 0.9),
        s.last().copied().unwrap_or(f64::NAN),
    )
}

fn print_table(o: &Opts, r: &Results) {
    println!();
    println!(
        "latency in ms, {} repetitions per operation, one network of {} Node (hyperdht 6.34.0) + {} Rust nodes on 127.0.0.1",
        o.reps, o.node_nodes, o.rust_nodes
    );
    println!(
        "clients: one ephemeral Rust node, one ephemeral Node node, taking turns, after {WARM_UP} unmeasured repetitions"
    );
    println!();
    println!(
        "{:<13} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>10}",
        "operation", "rust p50", "p90", "max", "node p50", "p90", "max", "node/rust"
    );
    println!("{}", "-".repeat(13 + 3 + 26 + 3 + 26 + 3 + 10));
    for (k, op) in OPS.iter().enumerate() {
        let (rp50, rp90, rmax) = stats(&r.rust[k]);
        let (np50, np90, nmax) = stats(&r.node[k]);
        println!(
            "{:<13} | {rp50:>8.2} {rp90:>8.2} {rmax:>8.2} | {np50:>8.2} {np90:>8.2} {nmax:>8.2} | {:>9.2}x",
            op,
            np50 / rp50
        );
    }
    println!();
    println!("node/rust: the Node client's p50 divided by the Rust client's (> 1: Rust is faster)");
    if r.failures.is_empty() {
        println!("every repetition succeeded and returned what was expected");
    } else {
        println!(
            "{} failed repetitions (left out of the figures):",
            r.failures.len()
        );
        for f in &r.failures {
            println!("  {f}");
        }
    }
}
