//! Live soaks on 127.0.0.1 (issue 17, item 4), the Node reference side by side: each builds a
//! small network of real processes — a Rust one (`hdht bootstrap` + `hdht node`, the release
//! binary from `HDHT_BIN` or built on demand) and a Node one (`tests/interop/soak-node.js`,
//! hyperdht 6.34.0, one process per node) — attacks it for a bounded time from this process,
//! measures the attacked process's resident set and the operations of a client of the same
//! implementation, and prints one JSON line per implementation. `#[ignore]`d (tens of seconds
//! each, and timing figures are not assertions); `.ci/soak live` runs them:
//!
//! - `soak_garbage_flood`: random datagrams as fast as one thread sends them at the network's
//!   bootstrap node (which every operation of a 4-node network touches); lookups, immutable
//!   puts and gets before and during the flood, RSS before, peak during, after.
//! - `soak_valid_id_flood`: lying nodes with valid ids (`BLAKE2b(ip:port)`) on other loopback
//!   addresses (127.0.0.2…) join every node's routing table, then answer every request with
//!   k addresses ground close to its target where nothing answers; lookups timed before and
//!   after. On loopback hdht's per-IP / per-/24 caps do not apply (loopback is exempt, as local
//!   testnets need), so this measures only the query timing: adaptive timeouts, early settle,
//!   distrust of referrers.
//!
//! What is asserted: every operation of the Rust side succeeds and the attacked process is
//! alive at the end. The Node side's figures are reported, not asserted.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use hdht_core::crypto::hash;
use hdht_core::rpc::{NodeId, Persistence};
use hdht_core::wire::{Message, Request, Response};
use hdht_tests::interop_dir;
use hdht_tests::netns::hdht_binary;
use hdht_tokio::{Dht, DhtOptions};
use serde_json::{json, Value};

const STEP: Duration = Duration::from_secs(60);

// ----- processes -----

/// A child that prints JSON lines; killed on drop.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    name: String,
}

impl Proc {
    fn spawn(cmd: Command, name: &str) -> Proc {
        Proc::spawn_reading(cmd, name, false)
    }

    /// `events_on_stderr`: its JSON lines come on stderr (`hdht listen`).
    fn spawn_reading(mut cmd: Command, name: &str, events_on_stderr: bool) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(if events_on_stderr {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stderr(if events_on_stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let out: Box<dyn std::io::Read + Send> = if events_on_stderr {
            Box::new(child.stderr.take().expect("piped"))
        } else {
            Box::new(child.stdout.take().expect("piped"))
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            stdin: child.stdin.take(),
            child,
            lines,
            name: name.to_string(),
        }
    }

    /// The next JSON line with `"event": event`.
    fn wait_event(&mut self, event: &str) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{}: no {event:?} event within {STEP:?}", self.name));
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["event"] == event {
                    return v;
                }
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident set, KiB.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

fn node_bin() -> String {
    std::env::var("HDHT_NODE").unwrap_or_else(|_| "node".into())
}

fn node_script(args: &[&str]) -> Command {
    let mut c = Command::new(node_bin());
    c.arg("soak-node.js").args(args).current_dir(interop_dir());
    c
}

fn hdht(args: &[&str]) -> Command {
    let bin: PathBuf = hdht_binary().expect("the hdht binary (HDHT_BIN or cargo build)");
    let mut c = Command::new(bin);
    c.args(args);
    c
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Imp {
    Rust,
    Node,
}

impl Imp {
    fn name(self) -> &'static str {
        match self {
            Imp::Rust => "rust",
            Imp::Node => "node",
        }
    }
}

/// A bootstrapper and `n` persistent nodes, each a process; (processes, bootstrap address).
fn network(imp: Imp, n: usize) -> (Vec<Proc>, SocketAddrV4) {
    let port = free_udp_port();
    let boot_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let b = boot_addr.to_string();
    let p = port.to_string();
    let mut boot = match imp {
        Imp::Rust => Proc::spawn(
            hdht(&["bootstrap", "--host", "127.0.0.1", "--port", &p, "--json"]),
            "hdht bootstrap",
        ),
        Imp::Node => Proc::spawn(
            node_script(&["bootstrapper", &p]),
            "soak-node.js bootstrapper",
        ),
    };
    boot.wait_event(if imp == Imp::Rust {
        "listening"
    } else {
        "ready"
    });
    let mut procs = vec![boot];
    for _ in 0..n {
        let mut node = match imp {
            Imp::Rust => Proc::spawn(
                hdht(&[
                    "node",
                    "--bootstrap",
                    &b,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--persistent",
                    "--json",
                ]),
                "hdht node",
            ),
            Imp::Node => Proc::spawn(node_script(&["node", &b]), "soak-node.js node"),
        };
        node.wait_event("ready");
        procs.push(node);
    }
    (procs, boot_addr)
}

// ----- clients -----

/// A record client of either implementation: lookup, immutable put, immutable get.
enum Client {
    Rust(Box<Dht>),
    Node(Box<Proc>),
}

impl Client {
    async fn start(imp: Imp, boot: SocketAddrV4) -> Client {
        match imp {
            Imp::Rust => {
                let dht = Dht::new(DhtOptions {
                    bootstrap: vec![boot.to_string()],
                    host: Ipv4Addr::LOCALHOST,
                    persistence: Persistence::Ephemeral,
                    ..DhtOptions::isolated()
                })
                .await
                .expect("client node");
                tokio::time::timeout(STEP, dht.ready())
                    .await
                    .expect("bootstrap in time")
                    .expect("bootstrapped");
                Client::Rust(Box::new(dht))
            }
            Imp::Node => {
                let mut c = Command::new(node_bin());
                c.arg("bench-records.js")
                    .arg(boot.to_string())
                    .current_dir(interop_dir());
                let mut p = Proc::spawn(c, "bench-records.js");
                p.wait_event("ready");
                Client::Node(Box::new(p))
            }
        }
    }

    /// One operation; (ok, milliseconds).
    async fn op(&mut self, op: &str, arg: [u8; 32]) -> (bool, f64) {
        match self {
            Client::Rust(dht) => {
                let t = Instant::now();
                let ok = tokio::time::timeout(STEP, async {
                    match op {
                        "lookup" => {
                            let mut s = dht.lookup(arg);
                            while s.next().await.is_some() {}
                            s.finish().await.is_ok()
                        }
                        "findNode" => {
                            let mut s = dht.find_node(NodeId(arg));
                            while s.next().await.is_some() {}
                            s.finish().await.is_ok()
                        }
                        "immutablePut" => dht.immutable_put(&arg).await.is_ok(),
                        "immutableGet" => {
                            matches!(dht.immutable_get(hash(&arg)).await, Ok(Some(_)))
                        }
                        other => panic!("unknown op {other}"),
                    }
                })
                .await
                .unwrap_or(false);
                (ok, t.elapsed().as_secs_f64() * 1000.0)
            }
            Client::Node(p) => {
                let hex: String = arg.iter().map(|b| format!("{b:02x}")).collect();
                let req = match op {
                    "lookup" | "findNode" => json!({"op": "lookup", "topic": hex}),
                    "immutablePut" => json!({"op": "immutablePut", "value": hex}),
                    "immutableGet" => {
                        let h: String = hash(&arg).iter().map(|b| format!("{b:02x}")).collect();
                        json!({"op": "immutableGet", "hash": h})
                    }
                    other => panic!("unknown op {other}"),
                };
                let stdin = p.stdin.as_mut().expect("stdin");
                writeln!(stdin, "{req}").expect("write to bench-records.js");
                stdin.flush().expect("flush");
                let line = tokio::task::block_in_place(|| p.lines.recv_timeout(STEP))
                    .expect("bench-records.js answers");
                let v: Value = serde_json::from_str(&line).expect("JSON");
                let ms = v["ms"].as_f64().unwrap_or(f64::NAN);
                let ok = v.get("error").is_none() && (op != "immutableGet" || v["found"] == true);
                (ok, ms)
            }
        }
    }
}

/// Per operation: (ok, total, sorted ms).
type Tallies = HashMap<&'static str, (usize, usize, Vec<f64>)>;

async fn ops_round(client: &mut Client, ops: &[&'static str], reps: usize, salt: u64) -> Tallies {
    let mut t: Tallies = HashMap::new();
    for i in 0..reps {
        let arg = hash(format!("soak {salt} {i}").as_bytes());
        for &op in ops {
            let (ok, ms) = client.op(op, arg).await;
            let e = t.entry(op).or_default();
            e.1 += 1;
            if ok {
                e.0 += 1;
                e.2.push(ms);
            }
        }
    }
    for e in t.values_mut() {
        e.2.sort_by(f64::total_cmp);
    }
    t
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn tallies_json(t: &Tallies) -> Value {
    let mut m = serde_json::Map::new();
    for (op, (ok, total, ms)) in t {
        m.insert(
            (*op).to_string(),
            json!({"ok": ok, "total": total, "p50Ms": round1(pct(ms, 0.5)), "p90Ms": round1(pct(ms, 0.9))}),
        );
    }
    Value::Object(m)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A cheap deterministic generator for attack bytes (not crypto).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

// ----- garbage flood -----

fn garbage_flood(imp: Imp, secs: u64) -> Value {
    let rt = runtime();
    let (mut procs, boot) = network(imp, 3);
    let ops = ["lookup", "immutablePut", "immutableGet"];
    let reps = 20;
    rt.block_on(async {
        let mut client = Client::start(imp, boot).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let unloaded = ops_round(&mut client, &ops, reps, 1).await;
        let rss_before = procs[0].rss_kib();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(rss_before));
        let flooder = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").expect("flood socket");
                // 4,096 random datagrams of 1..1200 bytes made up front (the send loop is the
                // test's hot path, in a debug build); a third start like dht-rpc messages.
                let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
                let pool: Vec<Vec<u8>> = (0..4096)
                    .map(|_| {
                        let r = rng.next();
                        let mut d: Vec<u8> = (0..1 + (r as usize % 1200))
                            .map(|_| rng.next() as u8)
                            .collect();
                        d[0] = match r >> 60 {
                            0..=2 => 0x03,
                            3..=5 => 0x13,
                            _ => d[0],
                        };
                        d
                    })
                    .collect();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        i = (i + 1) % pool.len();
                        let buf = &pool[i];
                        if sock.send_to(buf, boot).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        let sampler = {
            let (stop, peak) = (stop.clone(), peak.clone());
            let pid = procs[0].pid();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let flooded = ops_round(&mut client, &ops, reps, 2).await;
        let left = Duration::from_secs(secs).saturating_sub(started.elapsed());
        tokio::time::sleep(left).await;
        stop.store(true, Ordering::Relaxed);
        let flood_secs = started.elapsed().as_secs_f64();
        flooder.join().expect("flooder");
        sampler.join().expect("sampler");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_after = procs[0].rss_kib();
        let alive = procs.iter_mut().all(Proc::alive);
        let n = sent.load(Ordering::Relaxed);
        let after = ops_round(&mut client, &ops, 5, 3).await;
        json!({
            "soak": "garbageFlood",
            "impl": imp.name(),
            "datagrams": n,
            "datagramsPerSec": (n as f64 / flood_secs).round(),
            "floodSecs": round1(flood_secs),
            "rssBeforeKiB": rss_before,
            "rssPeakKiB": peak.load(Ordering::Relaxed),
            "rssAfterKiB": rss_after,
            "alive": alive,
            "unloaded": tallies_json(&unloaded),
            "flooded": tallies_json(&flooded),
            "after": tallies_json(&after),
        })
    })
}

#[test]
#[ignore = "a soak: .ci/soak live"]
fn soak_garbage_flood() {
    let secs = env_u64("HDHT_SOAK_SECS", 20);
    let mut out = Vec::new();
    for imp in [Imp::Rust, Imp::Node] {
        let v = garbage_flood(imp, secs);
        println!("{v}");
        out.push(v);
    }
    let rust = &out[0];
    assert_eq!(rust["alive"], true, "{rust}");
    for phase in ["unloaded", "flooded", "after"] {
        for (op, t) in rust[phase].as_object().expect("ops") {
            assert_eq!(t["ok"], t["total"], "{phase} {op}: {rust}");
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ----- valid-id flood -----

/// A pool of dead addresses (nothing listens there) with their node ids, to answer a target
/// with the k closest — "ground close to the target".
struct DeadPool(Vec<(NodeId, SocketAddrV4)>);

impl DeadPool {
    fn new(n: usize) -> DeadPool {
        let mut v = Vec::with_capacity(n);
        let mut i = 0u32;
        while v.len() < n {
            // 127.1.x.y: a separate range from the liars (127.0.0.x) and the network.
            let ip = Ipv4Addr::new(127, 1, (i >> 8) as u8, i as u8);
            let addr = SocketAddrV4::new(ip, 40000 + (i % 97) as u16);
            v.push((NodeId::from_addr(&addr), addr));
            i += 1;
        }
        DeadPool(v)
    }

    fn closest(&self, target: &NodeId, k: usize) -> Vec<SocketAddrV4> {
        let mut best: Vec<(NodeId, SocketAddrV4)> = Vec::with_capacity(k + 1);
        for &(id, a) in &self.0 {
            if best.len() < k || target.cmp_distance(&id, &best[k - 1].0).is_lt() {
                let pos = best
                    .binary_search_by(|(x, _)| target.cmp_distance(x, &id))
                    .unwrap_or_else(|e| e);
                best.insert(pos, (id, a));
                best.truncate(k);
            }
        }
        best.into_iter().map(|(_, a)| a).collect()
    }
}

/// `liars` sockets on 127.0.0.2…: each sends a FIND_NODE with its valid id to every node in
/// `nodes` (so they add it), then answers every request with the k dead addresses closest to
/// its target. Runs until `stop`.
fn run_liars(
    liars: usize,
    nodes: Vec<SocketAddrV4>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    let pool = Arc::new(DeadPool::new(50_000));
    let per_thread = 8;
    let mut handles = Vec::new();
    for chunk in 0..liars.div_ceil(per_thread) {
        let (stop, answered, pool, nodes) =
            (stop.clone(), answered.clone(), pool.clone(), nodes.clone());
        let count = per_thread.min(liars - chunk * per_thread);
        handles.push(std::thread::spawn(move || {
            let socks: Vec<(UdpSocket, SocketAddrV4)> = (0..count)
                .map(|j| {
                    let ip = Ipv4Addr::new(127, 0, 0, (2 + chunk * per_thread + j) as u8);
                    let s = UdpSocket::bind(SocketAddrV4::new(ip, 0)).expect("liar socket");
                    s.set_nonblocking(true).expect("nonblocking");
                    let a = match s.local_addr().expect("addr") {
                        SocketAddr::V4(a) => a,
                        SocketAddr::V6(_) => unreachable!(),
                    };
                    (s, a)
                })
                .collect();
            let mut tid = 1u16;
            let mut last_join = Instant::now() - Duration::from_secs(60);
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                // (Re)join every 5 s: a FIND_NODE for our own id to every node.
                if last_join.elapsed() > Duration::from_secs(5) {
                    last_join = Instant::now();
                    for (s, a) in &socks {
                        for n in &nodes {
                            tid = tid.wrapping_add(1);
                            let req = Request {
                                tid,
                                to: *n,
                                id: Some(NodeId::from_addr(a).0),
                                token: None,
                                internal: true,
                                command: hdht_core::rpc::FIND_NODE,
                                target: Some(NodeId::from_addr(a).0),
                                value: None,
                            };
                            let mut out = Vec::new();
                            Message::Request(req).encode(&mut out);
                            let _ = s.send_to(&out, n);
                        }
                    }
                }
                let mut idle = true;
                for (s, a) in &socks {
                    while let Ok((len, from)) = s.recv_from(&mut buf) {
                        idle = false;
                        let (Ok(Message::Request(r)), SocketAddr::V4(from)) =
                            (Message::decode(&buf[..len]), from)
                        else {
                            continue;
                        };
                        let closer = r
                            .target
                            .map(|t| pool.closest(&NodeId(t), 20))
                            .unwrap_or_default();
                        let resp = Response {
                            tid: r.tid,
                            to: from,
                            id: Some(NodeId::from_addr(a).0),
                            token: Some(hash(&from.ip().octets())),
                            closer_nodes: closer,
                            error: 0,
                            value: None,
                        };
                        let mut out = Vec::new();
                        Message::Response(resp).encode(&mut out);
                        let _ = s.send_to(&out, from);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }));
    }
    handles
}

/// Every 127.0.0.1 UDP address of the network's processes (the bootstrapper's is known; the
/// others' are read from the OS).
fn node_addrs(procs: &[Proc], boot: SocketAddrV4) -> Vec<SocketAddrV4> {
    let mut v = vec![boot];
    for p in procs.iter().skip(1) {
        v.extend(
            udp_ports(p.pid())
                .into_iter()
                .map(|port| SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
        );
    }
    v
}

/// The 127.0.0.1 UDP ports process `pid` has bound (from /proc/net/udp and its fds).
fn udp_ports(pid: u32) -> Vec<u16> {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                let t = t.to_string_lossy().to_string();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.insert(i.to_string());
                }
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let mut ports = Vec::new();
    for l in table.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 9 && inodes.contains(f[9]) {
            if let Some((ip, port)) = f[1].split_once(':') {
                if ip == "0100007F" {
                    if let Ok(p) = u16::from_str_radix(port, 16) {
                        ports.push(p);
                    }
                }
            }
        }
    }
    ports
}

fn valid_id_flood(imp: Imp, liars: usize) -> Value {
    let rt = runtime();
    let (mut procs, boot) = network(imp, 7);
    let nodes = node_addrs(&procs, boot);
    let ops = ["lookup"];
    let reps = 20;
    rt.block_on(async {
        let mut client = Client::start(imp, boot).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let unloaded = ops_round(&mut client, &ops, reps, 10).await;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let handles = run_liars(liars, nodes.clone(), stop.clone(), answered.clone());
        // Let the liars get into the tables (two join rounds).
        tokio::time::sleep(Duration::from_secs(8)).await;
        let flooded = ops_round(&mut client, &ops, reps, 11).await;
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().expect("liar thread");
        }
        let alive = procs.iter_mut().all(Proc::alive);
        let p50 = |t: &Tallies| pct(&t["lookup"].2, 0.5);
        let p90 = |t: &Tallies| pct(&t["lookup"].2, 0.9);
        json!({
            "soak": "validIdFlood",
            "impl": imp.name(),
            "nodes": nodes.len(),
            "liars": liars,
            "liarAnswers": answered.load(Ordering::Relaxed),
            "alive": alive,
            "unloaded": tallies_json(&unloaded),
            "flooded": tallies_json(&flooded),
            "ratioP50": round1(p50(&flooded) / p50(&unloaded)),
            "ratioP90": round1(p90(&flooded) / p90(&unloaded)),
        })
    })
}

#[test]
#[ignore = "a soak: .ci/soak live"]
fn soak_valid_id_flood() {
    let liars = env_u64("HDHT_SOAK_LIARS", 40) as usize;
    let mut out = Vec::new();
    for imp in [Imp::Rust, Imp::Node] {
        let v = valid_id_flood(imp, liars);
        println!("{v}");
        out.push(v);
    }
    let rust = &out[0];
    assert_eq!(rust["alive"], true, "{rust}");
    for phase in ["unloaded", "flooded"] {
        for (op, t) in rust[phase].as_object().expect("ops") {
            assert_eq!(t["ok"], t["total"], "{phase} {op}: {rust}");
        }
    }
}

// ----- abandoned peers -----

/// A server of `imp` on a small network; `n` connections from a Node client process that
/// writes 64 KiB on each, reads it back, and is then SIGKILLed (its connections never close).
/// Samples the server's RSS and open connections until they are all gone (or 60 s).
fn abandoned_peers(imp: Imp, n: usize) -> Value {
    let (mut procs, boot) = network(imp, 3);
    let b = boot.to_string();
    let seed = "ab".repeat(32);
    let mut server = match imp {
        Imp::Rust => Proc::spawn_reading(
            hdht(&[
                "listen",
                "--echo",
                "--json",
                "--bootstrap",
                &b,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--seed",
                &seed,
            ]),
            "hdht listen --echo",
            true,
        ),
        Imp::Node => Proc::spawn(node_script(&["server", &b, &seed]), "soak-node.js server"),
    };
    let ready = server.wait_event(if imp == Imp::Rust {
        "listening"
    } else {
        "ready"
    });
    let key = ready["publicKey"].as_str().expect("publicKey").to_string();
    std::thread::sleep(Duration::from_secs(2));
    let rss_baseline = server.rss_kib();
    // Count the server's open connections from its events.
    let mut open: i64 = 0;
    let drain = |server: &mut Proc, open: &mut i64| {
        while let Ok(line) = server.lines.try_recv() {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            match (imp, v["event"].as_str()) {
                (Imp::Rust, Some("connection")) => *open += 1,
                (Imp::Rust, Some("end")) => *open -= 1,
                (Imp::Node, Some("connections")) => *open = v["n"].as_i64().unwrap_or(0),
                _ => {}
            }
        }
    };
    // Two rounds: the second shows whether what the first left behind is reused or leaked.
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let mut client = Proc::spawn(
            node_script(&["client", &b, &key, &n.to_string()]),
            "soak-node.js client",
        );
        client.wait_event("connected");
        std::thread::sleep(Duration::from_secs(1));
        drain(&mut server, &mut open);
        let open_before = open;
        let rss_connected = server.rss_kib();
        // Vanish: SIGKILL, so nothing is closed or ended.
        let _ = client.child.kill();
        let _ = client.child.wait();
        let killed = Instant::now();
        let mut detected = None;
        while killed.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(250));
            drain(&mut server, &mut open);
            if open <= 0 {
                detected = Some(killed.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(5));
        rounds.push(json!({
            "openBeforeKill": open_before,
            "openAtEnd": open,
            "detectedSecs": detected.map(|d| round1(d.as_secs_f64())),
            "rssConnectedKiB": rss_connected,
            "rssAfterKiB": server.rss_kib(),
        }));
    }
    let alive = server.alive() && procs.iter_mut().all(Proc::alive);
    json!({
        "soak": "abandonedPeers",
        "impl": imp.name(),
        "connections": n,
        "rssBaselineKiB": rss_baseline,
        "rounds": rounds,
        "alive": alive,
    })
}

#[test]
#[ignore = "a soak: .ci/soak live"]
fn soak_abandoned_peers() {
    let n = env_u64("HDHT_SOAK_PEERS", 50) as usize;
    let mut out = Vec::new();
    for imp in [Imp::Rust, Imp::Node] {
        let v = abandoned_peers(imp, n);
        println!("{v}");
        out.push(v);
    }
    let rust = &out[0];
    assert_eq!(rust["alive"], true, "{rust}");
    for r in rust["rounds"].as_array().expect("rounds") {
        assert_eq!(r["openBeforeKill"], n, "{rust}");
        assert_eq!(
            r["openAtEnd"], 0,
            "every abandoned connection detected: {rust}"
        );
    }
}
