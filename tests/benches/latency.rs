//! Time to first byte and idle memory, Rust against the Node reference (hyperdht 6.34.0), side
//! by side in one run on 127.0.0.1: `cargo bench -p hdht-tests --bench latency`.
//!
//! 1. Time from calling `connect(publicKey)` to receiving the first byte the server sends, for
//!    Rust→Rust, Rust→Node, Node→Node and Node→Rust (client→server): the first connect of a
//!    freshly bootstrapped client, then `HDHT_BENCH_CONNECTS` (20) later ones in a row (median,
//!    p90). The server writes one byte on every connection as soon as it opens. Each client
//!    times itself (`Instant` / `process.hrtime`), so process start-up and the JSON pipes are
//!    not measured. `open` is when `connect` resolved, for the breakdown.
//! 2. Idle memory: a node joined to the network, idle for `HDHT_BENCH_IDLE_SECS` (10) after
//!    bootstrap — `hdht node` (the CLI), the lean `latency_peer node`, a Node hyperdht node — and
//!    an idle server (listening, announced): `latency_peer server`, `hdht listen --echo`, a Node
//!    `createServer().listen()`. VmRSS / VmHWM / RssAnon / RssFile from `/proc/PID/status`.
//!    The lean static build (README, "Lean static build": musl, statically linked) is measured
//!    beside them when its binaries exist — `target/x86_64-unknown-linux-musl/release/hdht` and
//!    `…/examples/latency_peer`, or `HDHT_BENCH_STATIC_HDHT` / `HDHT_BENCH_STATIC_PEER`; this
//!    bench does not build them (that needs the musl target) and says so when they are missing.
//!    `HDHT_BENCH_MEMORY_ONLY=1` measures memory alone (no connects).
//!
//! Every peer is its own process: the Rust ones are `target/release/hdht` and the example
//! `latency_peer` (both built by this bench with `cargo build --release`, or taken from
//! `HDHT_BENCH_HDHT` / `HDHT_BENCH_PEER`), the Node ones each a `tests/interop/peer.js`. One
//! round starts fresh servers (one per direction, so each direction's first connect meets a
//! server that has never been connected to) and fresh clients; `HDHT_BENCH_ROUNDS` (3) rounds,
//! the order of the directions rotating between rounds, give the spread. The network is a
//! Node testnet (`HDHT_BENCH_TESTNET=node`, the default: bootstrapper plus hyperdht nodes in one
//! peer.js) or `hdht` processes (`=rust`: `hdht bootstrap` plus `hdht node --persistent`), of
//! `HDHT_BENCH_NODES` (10) nodes, the same for both sides. `HDHT_BENCH_THREADS=N` runs the
//! Rust peers on an N-worker tokio runtime instead of a current-thread one; `HDHT_BENCH_GAP_MS`
//! (50) is the pause between connects; `HDHT_BENCH_VERBOSE=1` prints every sample on stderr.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use hdht_core::crypto::hash;
use hdht_tests::NodePeers;
use serde_json::{json, Value};

const STEP: Duration = Duration::from_secs(30);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ----- processes -------------------------------------------------------------------------------

/// A child process whose stdout and stderr lines arrive on one channel.
struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
}

impl Proc {
    fn spawn(name: &str, program: &Path, args: &[String]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines() {
                    let Ok(l) = l else { break };
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            name: name.to_string(),
            child,
            lines,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next JSON line with `"event": event` (other lines are skipped).
    fn wait_event(&self, event: &str) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("{}: no {event:?} line ({e})", self.name));
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                if v["event"] == event {
                    return v;
                }
                if v.get("i").is_some() {
                    panic!(
                        "{}: unexpected sample line while waiting for {event}: {l}",
                        self.name
                    );
                }
            } else if l.contains("error") || l.contains("panicked") {
                panic!("{}: {l}", self.name);
            }
        }
    }

    /// The client's sample lines up to `done`.
    fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("{}: no samples ({e})", self.name));
            let Ok(v) = serde_json::from_str::<Value>(&l) else {
                if l.contains("panicked") || l.contains("error") {
                    panic!("{}: {l}", self.name);
                }
                continue;
            };
            if v["event"] == "done" {
                return out;
            }
            if v.get("i").is_some() {
                out.push(Sample::from_json(&v));
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM (the CLI then leaves gracefully), stdin closed (latency_peer exits), then kill.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        drop(self.child.stdin.take());
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

// ----- memory ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    rss_kb: f64,
    hwm_kb: f64,
    anon_kb: f64,
    file_kb: f64,
    threads: f64,
}

fn mem_of(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    Mem {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        anon_kb: field("RssAnon:"),
        file_kb: field("RssFile:"),
        threads: field("Threads:"),
    }
}

// ----- samples and statistics -----------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Sample {
    open_ms: f64,
    first_ms: f64,
}

impl Sample {
    fn from_json(v: &Value) -> Sample {
        Sample {
            open_ms: v["openMs"].as_f64().unwrap_or(f64::NAN),
            first_ms: v["firstByteMs"].as_f64().expect("firstByteMs"),
        }
    }
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[idx]
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

// ----- the network -----------------------------------------------------------------------------

enum Testnet {
    Node(#[allow(dead_code)] NodePeers),
    Rust(#[allow(dead_code)] Vec<Proc>),
}

fn start_testnet(kind: &str, size: usize, hdht: &Path) -> (Testnet, String) {
    match kind {
        "node" => {
            let peers = NodePeers::start().expect("testnet peer.js");
            let net = peers
                .testnet_with(json!({"size": size, "kind": "hyperdht", "timeout": 60000}))
                .expect("Node testnet");
            let b = net.bootstrap[0].clone();
            (Testnet::Node(peers), b)
        }
        "rust" => {
            let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
            let boot = Proc::spawn(
                "hdht bootstrap",
                hdht,
                &s(&["--json", "bootstrap", "--host", "127.0.0.1", "--port", "0"]),
            );
            let l = boot.wait_event("listening");
            let b = format!("127.0.0.1:{}", l["port"]);
            let mut procs = vec![boot];
            for i in 1..size {
                let p = Proc::spawn(
                    &format!("hdht node {i}"),
                    hdht,
                    &s(&[
                        "--json",
                        "--host",
                        "127.0.0.1",
                        "--bootstrap",
                        &b,
                        "node",
                        "--port",
                        "0",
                        "--persistent",
                    ]),
                );
                p.wait_event("ready");
                procs.push(p);
            }
            (Testnet::Rust(procs), b)
        }
        k => panic!("HDHT_BENCH_TESTNET={k}: use node or rust"),
    }
}

// ----- building the Rust peers -----------------------------------------------------------------

fn target_dir() -> PathBuf {
    // target/release/deps/latency-HASH → target
    let exe = std::env::current_exe().expect("exe");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

/// `target/release/hdht` and `target/release/examples/latency_peer`, built (release profile,
/// as this bench) unless given by `HDHT_BENCH_HDHT` / `HDHT_BENCH_PEER`.
fn rust_binaries() -> (PathBuf, PathBuf) {
    let given = (
        std::env::var_os("HDHT_BENCH_HDHT"),
        std::env::var_os("HDHT_BENCH_PEER"),
    );
    if let (Some(h), Some(p)) = &given {
        return (PathBuf::from(h), PathBuf::from(p));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let status = Command::new(cargo)
        .current_dir(&ws)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "hdht-cli",
            "--bin",
            "hdht",
            "-p",
            "hdht-tests",
            "--example",
            "latency_peer",
        ])
        .status()
        .expect("cargo build");
    assert!(status.success(), "building hdht and latency_peer failed");
    let dir = target_dir().join("release");
    (
        given
            .0
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("hdht")),
        given
            .1
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("examples").join("latency_peer")),
    )
}

// ----- one round -------------------------------------------------------------------------------

const DIRS: [&str; 4] = ["Rust→Rust", "Rust→Node", "Node→Node", "Node→Rust"];
const IDLE: [&str; 6] = [
    "Rust node (hdht node)",
    "Rust node (latency_peer)",
    "Node node (peer.js)",
    "Rust server (latency_peer)",
    "Rust server (hdht listen)",
    "Node server (peer.js)",
];
/// The same idle nodes from the lean static build, when it was found.
const IDLE_STATIC: [&str; 2] = [
    "Rust node (hdht node, static)",
    "Rust node (latency_peer, static)",
];

struct Round {
    /// Per direction: the first connect, then the later ones.
    samples: Vec<(&'static str, Vec<Sample>)>,
    idle: Vec<(&'static str, Mem)>,
    /// Servers' memory after serving their connects.
    busy: Vec<(&'static str, Mem)>,
}

struct Cfg {
    bootstrap: String,
    hdht: PathBuf,
    peer: PathBuf,
    /// The lean static build's `hdht` and `latency_peer`, when found.
    static_bins: Option<(PathBuf, PathBuf)>,
    memory_only: bool,
    connects: usize,
    idle: Duration,
    threads: usize,
    gap_ms: u64,
}

fn seed(round: usize, what: &str) -> [u8; 32] {
    hash(format!("latency bench {round} {what}").as_bytes())
}

fn run_round(cfg: &Cfg, round: usize) -> Round {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let threads = cfg.threads.to_string();
    let b = cfg.bootstrap.as_str();
    let peer_args = |role: &str, extra: &[&str]| {
        let mut a = s(&[role, "--bootstrap", b, "--threads", &threads]);
        a.extend(s(extra));
        a
    };

    // Everything idle-measured starts at once.
    let cli_node_args = s(&[
        "--json",
        "--host",
        "127.0.0.1",
        "--bootstrap",
        b,
        "node",
        "--port",
        "0",
    ]);
    let cli_node = Proc::spawn("hdht node", &cfg.hdht, &cli_node_args);
    let lean_node = Proc::spawn("latency_peer node", &cfg.peer, &peer_args("node", &[]));
    let static_nodes = cfg.static_bins.as_ref().map(|(hdht, peer)| {
        (
            Proc::spawn("hdht node (static)", hdht, &cli_node_args),
            Proc::spawn("latency_peer node (static)", peer, &peer_args("node", &[])),
        )
    });
    let rust_srv_seed = hex::encode(seed(round, "rust server"));
    let rust_srv_seed2 = hex::encode(seed(round, "rust server 2"));
    let rust_srv = Proc::spawn(
        "latency_peer server",
        &cfg.peer,
        &peer_args("server", &["--seed", &rust_srv_seed]),
    );
    let rust_srv2 = Proc::spawn(
        "latency_peer server 2",
        &cfg.peer,
        &peer_args("server", &["--seed", &rust_srv_seed2]),
    );
    let cli_srv = Proc::spawn(
        "hdht listen",
        &cfg.hdht,
        &s(&[
            "--json",
            "--host",
            "127.0.0.1",
            "--bootstrap",
            b,
            "listen",
            "--echo",
            "--seed",
            &hex::encode(seed(round, "cli")),
        ]),
    );

    let node_node = NodePeers::start().expect("peer.js");
    node_node
        .spawn("idle", json!({"kind": "hyperdht", "bootstrap": [b]}))
        .expect("Node node");
    let node_srv = NodePeers::start().expect("peer.js");
    let node_srv2 = NodePeers::start().expect("peer.js");
    let mut node_pks = Vec::new();
    for (i, p) in [&node_srv, &node_srv2].into_iter().enumerate() {
        p.spawn("srv", json!({"kind": "hyperdht", "bootstrap": [b]}))
            .expect("Node server node");
        let r = p
            .call(json!({"op": "firstByteListen", "name": "srv", "seed": hex::encode(seed(round, &format!("node server {i}")))}))
            .expect("firstByteListen");
        node_pks.push(r["publicKey"].as_str().expect("pk").to_string());
    }
    cli_node.wait_event("ready");
    lean_node.wait_event("ready");
    if let Some((cli, lean)) = &static_nodes {
        cli.wait_event("ready");
        lean.wait_event("ready");
    }
    let rust_pk = rust_srv.wait_event("listening")["publicKey"]
        .as_str()
        .expect("pk")
        .to_string();
    let rust_pk2 = rust_srv2.wait_event("listening")["publicKey"]
        .as_str()
        .expect("pk")
        .to_string();
    cli_srv.wait_event("listening");

    std::thread::sleep(cfg.idle);
    let mut idle = vec![
        (IDLE[0], mem_of(cli_node.pid())),
        (IDLE[1], mem_of(lean_node.pid())),
        (IDLE[2], mem_of(node_node.pid())),
        (IDLE[3], mem_of(rust_srv.pid())),
        (IDLE[4], mem_of(cli_srv.pid())),
        (IDLE[5], mem_of(node_srv.pid())),
    ];
    if let Some((cli, lean)) = &static_nodes {
        idle.push((IDLE_STATIC[0], mem_of(cli.pid())));
        idle.push((IDLE_STATIC[1], mem_of(lean.pid())));
    }
    drop(cli_node);
    drop(lean_node);
    drop(static_nodes);
    drop(node_node);
    drop(cli_srv);
    if cfg.memory_only {
        return Round {
            samples: Vec::new(),
            idle,
            busy: Vec::new(),
        };
    }

    let count = (cfg.connects + 1).to_string();
    let gap = cfg.gap_ms.to_string();
    let mut samples = Vec::new();
    for k in 0..DIRS.len() {
        let dir = DIRS[(k + round) % DIRS.len()];
        let got = match dir {
            "Rust→Rust" | "Rust→Node" => {
                let pk = if dir == "Rust→Rust" {
                    &rust_pk
                } else {
                    &node_pks[0]
                };
                let c = Proc::spawn(
                    &format!("latency_peer client {dir}"),
                    &cfg.peer,
                    &peer_args("client", &["--pk", pk, "--count", &count, "--gap-ms", &gap]),
                );
                c.wait_event("ready");
                c.samples()
            }
            _ => {
                let pk = if dir == "Node→Node" {
                    &node_pks[1]
                } else {
                    &rust_pk2
                };
                let c = NodePeers::start().expect("peer.js client");
                c.spawn("c", json!({"kind": "hyperdht", "bootstrap": [b]}))
                    .expect("Node client node");
                let r = c
                    .call_timeout(
                        json!({"op": "firstByte", "name": "c", "publicKey": pk, "count": cfg.connects + 1, "gapMs": cfg.gap_ms}),
                        Duration::from_secs(120),
                    )
                    .expect("firstByte");
                r["samples"]
                    .as_array()
                    .expect("samples")
                    .iter()
                    .map(Sample::from_json)
                    .collect()
            }
        };
        assert_eq!(got.len(), cfg.connects + 1, "{dir}: every connect reported");
        if std::env::var_os("HDHT_BENCH_VERBOSE").is_some() {
            let f = |s: &Sample| format!("{:.2}/{:.2}", s.open_ms, s.first_ms);
            eprintln!(
                "round {round} {dir} open/first ms: {}",
                got.iter().map(f).collect::<Vec<_>>().join(" ")
            );
        }
        samples.push((dir, got));
    }
    samples.sort_by_key(|(d, _)| DIRS.iter().position(|x| x == d));
    let busy = vec![
        ("Rust server (latency_peer)", mem_of(rust_srv.pid())),
        ("Node server (peer.js)", mem_of(node_srv.pid())),
    ];
    Round {
        samples,
        idle,
        busy,
    }
}

// ----- main ------------------------------------------------------------------------------------

fn main() {
    let rounds = env_num("HDHT_BENCH_ROUNDS", 3) as usize;
    let connects = env_num("HDHT_BENCH_CONNECTS", 20) as usize;
    let idle = Duration::from_secs(env_num("HDHT_BENCH_IDLE_SECS", 10));
    let nodes = env_num("HDHT_BENCH_NODES", 10) as usize;
    let threads = env_num("HDHT_BENCH_THREADS", 0) as usize;
    let gap_ms = env_num("HDHT_BENCH_GAP_MS", 50);
    let kind = std::env::var("HDHT_BENCH_TESTNET").unwrap_or_else(|_| "node".into());
    let memory_only = std::env::var_os("HDHT_BENCH_MEMORY_ONLY").is_some_and(|v| v != "0");

    let (hdht, peer) = rust_binaries();
    let (static_bins, static_note) = static_binaries();
    let (testnet, bootstrap) = start_testnet(&kind, nodes, &hdht);
    let cfg = Cfg {
        bootstrap,
        hdht,
        peer,
        static_bins,
        memory_only,
        connects,
        idle,
        threads,
        gap_ms,
    };
    let mut all = Vec::new();
    for r in 0..rounds {
        let t = Instant::now();
        all.push(run_round(&cfg, r));
        eprintln!(
            "round {}/{rounds} done in {:.1} s",
            r + 1,
            t.elapsed().as_secs_f64()
        );
    }
    drop(testnet);
    report(&all, &cfg, &kind, nodes, &static_note);
}

fn report(all: &[Round], cfg: &Cfg, kind: &str, nodes: usize, static_note: &str) {
    if !cfg.memory_only {
        report_latency(all, cfg, kind, nodes);
        println!();
    }
    report_memory(all, cfg, static_note);
}

fn report_latency(all: &[Round], cfg: &Cfg, kind: &str, nodes: usize) {
    let rounds = all.len();
    let rt = if cfg.threads == 0 {
        "current-thread".to_string()
    } else {
        format!("{}-worker", cfg.threads)
    };
    println!(
        "time from connect() to the server's first byte, 127.0.0.1, {kind} testnet of {nodes} nodes; {rounds} rounds × \
         (1 first + {} later connects, {} ms apart); Rust peers on a {rt} tokio runtime",
        cfg.connects, cfg.gap_ms
    );
    struct Stat {
        first: f64,
        first_lo: f64,
        first_hi: f64,
        later_med: f64,
        later_p90: f64,
        later_round_meds: (f64, f64),
        open_first: f64,
        open_later: f64,
    }
    let stat = |dir: &str| -> Stat {
        let per_round: Vec<&Vec<Sample>> = all
            .iter()
            .map(|r| {
                &r.samples
                    .iter()
                    .find(|(d, _)| *d == dir)
                    .expect("direction")
                    .1
            })
            .collect();
        let firsts: Vec<f64> = per_round.iter().map(|s| s[0].first_ms).collect();
        let later: Vec<f64> = per_round
            .iter()
            .flat_map(|s| s[1..].iter().map(|x| x.first_ms))
            .collect();
        let round_meds: Vec<f64> = per_round
            .iter()
            .map(|s| median(&s[1..].iter().map(|x| x.first_ms).collect::<Vec<_>>()))
            .collect();
        // first byte − open: what follows the handshake (stream set-up, the byte itself)
        let gap_first: Vec<f64> = per_round
            .iter()
            .map(|s| s[0].first_ms - s[0].open_ms)
            .collect();
        let gap_later: Vec<f64> = per_round
            .iter()
            .flat_map(|s| s[1..].iter().map(|x| x.first_ms - x.open_ms))
            .collect();
        let (lo, hi) = min_max(&firsts);
        Stat {
            first: median(&firsts),
            first_lo: lo,
            first_hi: hi,
            later_med: median(&later),
            later_p90: quantile(&later, 0.9),
            later_round_meds: min_max(&round_meds),
            open_first: median(&gap_first),
            open_later: median(&gap_later),
        }
    };
    let stats: Vec<(&str, Stat)> = DIRS.iter().map(|d| (*d, stat(d))).collect();
    let node = &stats
        .iter()
        .find(|(d, _)| *d == "Node→Node")
        .expect("Node→Node")
        .1;
    println!(
        "{:<10} {:>9} {:>15} {:>9} {:>15} {:>9} {:>13} {:>8} {:>8} {:>8}",
        "client→srv",
        "first ms",
        "(min–max)",
        "later md",
        "(round mds)",
        "later p90",
        "open→byte 1st/l",
        "×N first",
        "×N md",
        "×N p90"
    );
    for (d, s) in &stats {
        println!(
            "{:<10} {:>9.2} {:>15} {:>9.2} {:>15} {:>9.2} {:>13} {:>8.2} {:>8.2} {:>8.2}",
            d,
            s.first,
            format!("({:.1}–{:.1})", s.first_lo, s.first_hi),
            s.later_med,
            format!("({:.2}–{:.2})", s.later_round_meds.0, s.later_round_meds.1),
            s.later_p90,
            format!("{:.3}/{:.3}", s.open_first, s.open_later),
            s.first / node.first,
            s.later_med / node.later_med,
            s.later_p90 / node.later_p90,
        );
    }
    println!("(×N: against Node→Node; < 1 is faster than the reference. open→byte: ms from connect resolving to the first byte.)");
    for (a, b, what) in [
        ("Rust→Rust", "Node→Node", "Rust pair vs Node pair"),
        (
            "Rust→Node",
            "Node→Node",
            "Rust client vs Node client (Node server)",
        ),
        (
            "Node→Rust",
            "Node→Node",
            "Rust server vs Node server (Node client)",
        ),
        (
            "Rust→Rust",
            "Node→Rust",
            "Rust client vs Node client (Rust server)",
        ),
    ] {
        let sa = &stats.iter().find(|(d, _)| *d == a).expect("dir").1;
        let sb = &stats.iter().find(|(d, _)| *d == b).expect("dir").1;
        println!(
            "  {a} / {b} ({what}): first ×{:.2}, later median ×{:.2}, later p90 ×{:.2}",
            sa.first / sb.first,
            sa.later_med / sb.later_med,
            sa.later_p90 / sb.later_p90
        );
    }
}

fn report_memory(all: &[Round], cfg: &Cfg, static_note: &str) {
    let rounds = all.len();
    println!("memory, idle for {} s after bootstrap (servers: listening and announced); median over {rounds} rounds (min–max)", cfg.idle.as_secs());
    println!(
        "{:<32} {:>20} {:>9} {:>20} {:>9} {:>7} {:>9} {:>9}",
        "process",
        "VmRSS MB",
        "VmHWM",
        "RssAnon MB",
        "RssFile",
        "threads",
        "×Node RSS",
        "×Node anon"
    );
    let mem_stat =
        |rows: &[Vec<(&'static str, Mem)>], name: &str| -> (Mem, (f64, f64), (f64, f64)) {
            let ms: Vec<Mem> = rows
                .iter()
                .filter_map(|r| r.iter().find(|(n, _)| *n == name).map(|(_, m)| *m))
                .collect();
            let col = |f: fn(&Mem) -> f64| ms.iter().map(f).collect::<Vec<f64>>();
            let m = Mem {
                rss_kb: median(&col(|m| m.rss_kb)),
                hwm_kb: median(&col(|m| m.hwm_kb)),
                anon_kb: median(&col(|m| m.anon_kb)),
                file_kb: median(&col(|m| m.file_kb)),
                threads: median(&col(|m| m.threads)),
            };
            (m, min_max(&col(|m| m.rss_kb)), min_max(&col(|m| m.anon_kb)))
        };
    let idle_rows: Vec<Vec<(&'static str, Mem)>> = all.iter().map(|r| r.idle.clone()).collect();
    let mb = |kb: f64| kb / 1024.0;
    let print_rows = |rows: &[Vec<(&'static str, Mem)>], names: &[&str]| {
        for name in names {
            let (m, rss_mm, anon_mm) = mem_stat(rows, name);
            let reference = if name.contains("server") {
                "Node server (peer.js)"
            } else {
                "Node node (peer.js)"
            };
            let (n, _, _) = mem_stat(rows, reference);
            println!(
                "{:<32} {:>20} {:>9.1} {:>20} {:>9.1} {:>7} {:>9.3} {:>9.3}",
                name,
                format!(
                    "{:.2} ({:.2}–{:.2})",
                    mb(m.rss_kb),
                    mb(rss_mm.0),
                    mb(rss_mm.1)
                ),
                mb(m.hwm_kb),
                format!(
                    "{:.2} ({:.2}–{:.2})",
                    mb(m.anon_kb),
                    mb(anon_mm.0),
                    mb(anon_mm.1)
                ),
                mb(m.file_kb),
                m.threads,
                m.rss_kb / n.rss_kb,
                m.anon_kb / n.anon_kb,
            );
        }
    };
    print_rows(&idle_rows, &IDLE);
    if cfg.static_bins.is_some() {
        print_rows(&idle_rows, &IDLE_STATIC);
    }
    if !cfg.memory_only {
        let busy_rows: Vec<Vec<(&'static str, Mem)>> = all.iter().map(|r| r.busy.clone()).collect();
        println!(
            "after serving {} connects (same columns; VmHWM is the peak):",
            cfg.connects + 1
        );
        print_rows(
            &busy_rows,
            &["Rust server (latency_peer)", "Node server (peer.js)"],
        );
    }
    println!("(RssFile: mapped program and library pages — the executable's text above all; RssAnon: the process's own heap, stacks and buffers.)");
    println!(
        "binaries: hdht = {}, latency_peer = {} ({})",
        cfg.hdht.display(),
        cfg.peer.display(),
        linkage(&cfg.hdht)
    );
    println!("{static_note}");
}

/// How `bin` is linked, from its ELF program headers: a PT_INTERP header means a dynamic
/// executable (its loader and libc are mapped too); none, a static one.
fn linkage(bin: &Path) -> &'static str {
    use std::io::Read;
    let mut elf = Vec::new();
    // The ELF header and program headers are at the start of the file.
    let read = std::fs::File::open(bin).and_then(|f| f.take(64 * 1024).read_to_end(&mut elf));
    if read.is_err() {
        return "unreadable";
    }
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    if elf.get(..5) != Some(b"\x7fELF\x02".as_slice()) {
        return "not a 64-bit ELF file";
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return "not a 64-bit ELF file";
    };
    let interp = (0..phnum).any(|i| {
        elf.get(phoff + i * phentsize..phoff + i * phentsize + 4) == Some(&3u32.to_le_bytes()[..])
    });
    if interp {
        "dynamically linked"
    } else {
        "statically linked"
    }
}

/// The lean static build's binaries, if they exist, and a line saying what is measured — or
/// why nothing is, with the command that builds them.
fn static_binaries() -> (Option<(PathBuf, PathBuf)>, String) {
    const BUILD: &str = "cargo build --release --target x86_64-unknown-linux-musl -p hdht-cli --bin hdht -p hdht-tests --example latency_peer";
    let dir = target_dir()
        .join("x86_64-unknown-linux-musl")
        .join("release");
    let hdht =
        std::env::var_os("HDHT_BENCH_STATIC_HDHT").map_or_else(|| dir.join("hdht"), PathBuf::from);
    let peer = std::env::var_os("HDHT_BENCH_STATIC_PEER")
        .map_or_else(|| dir.join("examples").join("latency_peer"), PathBuf::from);
    let missing: Vec<String> = [&hdht, &peer]
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        let note = format!(
            "lean static build: NOT measured — {} not found. Build it (needs `rustup target add x86_64-unknown-linux-musl`) with:\n  {BUILD}",
            missing.join(" and ")
        );
        eprintln!("{note}");
        return (None, note);
    }
    // Binaries older than a source file may predate the code under test: say so.
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built = mtime(&hdht).into_iter().chain(mtime(&peer)).min();
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let newest = newest_source(&ws);
    let age = match (built, newest) {
        (Some(b), Some((n, path))) if b < n => format!(
            "; WARNING: built before the last change to {} ({:.0} min later), it may be stale — rebuild with: {BUILD}",
            path.strip_prefix(&ws).unwrap_or(&path).display(),
            n.duration_since(b).unwrap_or_default().as_secs_f64() / 60.0,
        ),
        _ => String::new(),
    };
    let note = format!(
        "lean static build: hdht = {}, latency_peer = {} ({}){age}",
        hdht.display(),
        peer.display(),
        linkage(&hdht)
    );
    (Some((hdht, peer)), note)
}

/// The most recently modified source of the Rust peers (the crates' `src/`, the
/// `latency_peer` example, the manifests and the lock file), and when.
fn newest_source(ws: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    fn walk(p: &Path, newest: &mut Option<(std::time::SystemTime, PathBuf)>) {
        let Ok(meta) = std::fs::metadata(p) else {
            return;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), newest);
            }
        } else if let Ok(t) = meta.modified() {
            if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                *newest = Some((t, p.to_path_buf()));
            }
        }
    }
    let mut newest = None;
    for dir in ["core", "driver", "runtime-tokio", "sim", "cli"] {
        walk(&ws.join(dir).join("src"), &mut newest);
        walk(&ws.join(dir).join("Cargo.toml"), &mut newest);
    }
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "tests/Cargo.toml",
        "tests/examples/latency_peer.rs",
    ] {
        walk(&ws.join(file), &mut newest);
    }
    newest
}
