//! Test harness for hdht integration tests.
//!
//! [`NodePeers`] runs `node tests/interop/peer.js`: one Node.js process hosting any number of
//! *reference* DHT nodes (dht-rpc 6.27.0 / hyperdht 6.34.0) on 127.0.0.1. It is driven with
//! newline-delimited JSON over the child's stdin/stdout; every request gets an `"id"` and the
//! reply with the same id is routed back to the caller. See `tests/interop/peer.js` for the
//! complete list of ops.
//!
//! ```no_run
//! use hdht_tests::NodePeers;
//! use serde_json::json;
//!
//! let peers = NodePeers::new(); // panics with setup instructions if node/node_modules is missing
//! let net = peers.testnet(5).unwrap();
//! let res = peers.call(json!({"op": "findNode", "name": "n1", "target": "00".repeat(32)})).unwrap();
//! assert!(res["closest"].as_array().unwrap().len() >= 4);
//! drop(peers); // closes stdin, kills and reaps the child
//! # let _ = net;
//! ```
//!
//! Everything here is blocking std code; from async tests call it directly or via
//! `spawn_blocking`. `NodePeers` is `Send + Sync`, so it can be shared behind an `Arc`.

pub mod localnet;
pub mod netns;
pub mod programs;
pub mod runtime;

/// The README's Rust examples, compiled as doctests of this crate (not run: they join a
/// network on a fixed port), so the README cannot drift from the library's API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default time peer.js gives each op before answering with a timeout error.
pub const JS_OP_TIMEOUT: Duration = Duration::from_secs(20);
/// Extra time the Rust side waits beyond the JS-side timeout before giving up itself.
const GRACE: Duration = Duration::from_secs(5);
/// How long to wait for peer.js to start (load its modules and print its ready line).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of peer.js stderr kept for error messages.
const STDERR_TAIL: usize = 40;

const SETUP_HINT: &str = "the Node.js interop peers need Node.js (>= 18) on PATH (or $HDHT_NODE) \
     and the pinned npm packages: run `npm ci --prefix tests/interop` from the workspace root";

/// Errors from the harness.
#[derive(Debug)]
pub enum HarnessError {
    /// `node` or `tests/interop/node_modules` is missing, or peer.js failed to start.
    Setup(String),
    /// I/O error talking to the child.
    Io(std::io::Error),
    /// No reply within the timeout.
    Timeout { op: String, after: Duration },
    /// peer.js exited (or closed stdout); carries the tail of its stderr.
    PeerExited(String),
    /// peer.js answered `{"error": ...}` for this op.
    Remote { op: String, message: String },
    /// A malformed request or reply.
    Protocol(String),
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::Setup(m) => write!(f, "interop harness setup failed: {m}"),
            HarnessError::Io(e) => write!(f, "interop harness I/O error: {e}"),
            HarnessError::Timeout { op, after } => {
                write!(f, "peer.js op {op:?} got no reply within {after:?}")
            }
            HarnessError::PeerExited(m) => write!(f, "peer.js exited: {m}"),
            HarnessError::Remote { op, message } => {
                write!(f, "peer.js op {op:?} failed: {message}")
            }
            HarnessError::Protocol(m) => write!(f, "peer.js protocol error: {m}"),
        }
    }
}

impl std::error::Error for HarnessError {}

impl From<std::io::Error> for HarnessError {
    fn from(e: std::io::Error) -> Self {
        HarnessError::Io(e)
    }
}

/// A reference node as described by peer.js (`spawn`, `state`, `testnet` replies).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PeerNode {
    pub name: String,
    pub host: String,
    /// The node's server-socket port (its DHT address).
    pub port: u16,
    /// Hex node id; `None` while the node is ephemeral.
    pub node_id: Option<String>,
    #[serde(default)]
    pub firewalled: bool,
    #[serde(default)]
    pub ephemeral: bool,
}

impl PeerNode {
    pub fn addr(&self) -> SocketAddr {
        let ip: Ipv4Addr = self.host.parse().expect("peer.js reported a non-IPv4 host");
        SocketAddr::V4(SocketAddrV4::new(ip, self.port))
    }

    /// `"127.0.0.1:port"`, the form `bootstrap` lists take.
    pub fn addr_string(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn node_id_bytes(&self) -> Option<[u8; 32]> {
        let v = hex::decode(self.node_id.as_ref()?).ok()?;
        v.try_into().ok()
    }
}

/// Reply of the `testnet` op.
#[derive(Debug, Clone, Deserialize)]
pub struct Testnet {
    /// `b` (the bootstrapper) first, then `n1`, `n2`, ...
    pub nodes: Vec<PeerNode>,
    /// `["127.0.0.1:<bootstrapper port>"]`
    pub bootstrap: Vec<String>,
}

impl Testnet {
    pub fn node(&self, name: &str) -> &PeerNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no testnet node named {name:?}"))
    }
}

type Pending = Arc<Mutex<HashMap<u64, Sender<Value>>>>;

/// Handle to one running `node tests/interop/peer.js` process. Dropping it closes the
/// child's stdin (peer.js then destroys its nodes), kills the child if it has not exited
/// within a second, and reaps it.
pub struct NodePeers {
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    pending: Pending,
    next_id: AtomicU64,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    threads: Vec<JoinHandle<()>>,
    pid: u32,
}

/// The `tests/interop` directory (holding peer.js, package.json and node_modules).
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// Installs the pinned Node packages (`npm ci`) the first time they are needed, so that
/// `cargo test --workspace` works on a fresh clone. One install per machine at a time: a lock
/// directory serialises concurrent test processes. Any failure is loud.
fn ensure_node_modules(dir: &std::path::Path) -> Result<(), HarnessError> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let installed = || {
        ["dht-rpc", "hyperdht", "b4a", "hyperswarm"]
            .iter()
            .all(|pkg| {
                dir.join("node_modules")
                    .join(pkg)
                    .join("package.json")
                    .is_file()
            })
    };
    if installed() {
        return Ok(());
    }
    let lock = dir.join(".npm-install.lock");
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::fs::create_dir(&lock).is_err() {
        if Instant::now() > deadline {
            return Err(HarnessError::Setup(format!(
                "timed out waiting for {}; {SETUP_HINT}",
                lock.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let result = if installed() {
        Ok(())
    } else {
        eprintln!(
            "hdht-tests: installing the pinned Node reference packages (npm ci) in {}",
            dir.display()
        );
        match Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status()
        {
            Ok(st) if st.success() && installed() => Ok(()),
            Ok(st) => Err(HarnessError::Setup(format!(
                "`npm ci` in {} failed ({st}); {SETUP_HINT}",
                dir.display()
            ))),
            Err(e) => Err(HarnessError::Setup(format!(
                "cannot run npm ({e}); {SETUP_HINT}"
            ))),
        }
    };
    let _ = std::fs::remove_dir(&lock);
    result
}

/// The Node binary the interop tests run (`HDHT_NODE`, default `node`).
pub fn node_binary() -> String {
    std::env::var("HDHT_NODE").unwrap_or_else(|_| "node".to_string())
}

impl NodePeers {
    /// Starts peer.js, panicking with setup instructions if that is impossible.
    /// Interop tests never skip silently.
    #[allow(clippy::new_without_default)] // starting a process is not a "default" value
    pub fn new() -> Self {
        match Self::start() {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts peer.js and waits for its ready line.
    pub fn start() -> Result<Self, HarnessError> {
        let dir = interop_dir();
        let node = node_binary();

        // Loud preflight checks.
        match Command::new(&node).arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(HarnessError::Setup(format!(
                    "`{node} --version` failed ({}): {SETUP_HINT}",
                    out.status
                )))
            }
            Err(e) => {
                return Err(HarnessError::Setup(format!(
                    "cannot run `{node}` ({e}); {SETUP_HINT}"
                )))
            }
        }
        ensure_node_modules(&dir)?;

        let mut child = Command::new(&node)
            .arg("peer.js")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError::Setup(format!("cannot spawn `{node} peer.js`: {e}")))?;
        let pid = child.id();
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<Value>();

        // stdout reader: route replies by id. At EOF the pending map is cleared, which
        // disconnects every waiting caller's channel (-> PeerExited).
        let reader = {
            let pending = pending.clone();
            std::thread::Builder::new()
                .name("peer.js-stdout".into())
                .spawn(move || {
                    let mut ready_tx = Some(ready_tx);
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if line.trim().is_empty() {
                            continue;
                        }
                        let msg: Value = match serde_json::from_str(&line) {
                            Ok(v) => v,
                            Err(e) => {
                                eprintln!("[peer.js] unparsable stdout line ({e}): {line}");
                                continue;
                            }
                        };
                        match msg.get("id").and_then(Value::as_u64) {
                            Some(id) => {
                                if let Some(tx) = pending.lock().unwrap().remove(&id) {
                                    let _ = tx.send(msg);
                                }
                                // else: the caller already timed out; drop the late reply.
                            }
                            None if msg.get("event").and_then(Value::as_str) == Some("ready") => {
                                if let Some(tx) = ready_tx.take() {
                                    let _ = tx.send(msg);
                                }
                            }
                            None => eprintln!("[peer.js] unsolicited: {line}"),
                        }
                    }
                    pending.lock().unwrap().clear();
                })?
        };

        // stderr reader: forward logs and keep a tail for error messages.
        let err_reader = {
            let tail = stderr_tail.clone();
            std::thread::Builder::new()
                .name("peer.js-stderr".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        eprintln!("[peer.js stderr] {line}");
                        let mut t = tail.lock().unwrap();
                        if t.len() == STDERR_TAIL {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                })?
        };

        let peers = NodePeers {
            child: Mutex::new(child),
            stdin: Mutex::new(Some(stdin)),
            pending,
            next_id: AtomicU64::new(1),
            stderr_tail,
            threads: vec![reader, err_reader],
            pid,
        };

        match ready_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(_) => Ok(peers),
            Err(RecvTimeoutError::Timeout) => Err(HarnessError::Setup(format!(
                "peer.js printed no ready line within {STARTUP_TIMEOUT:?}; stderr: {}",
                peers.stderr_text()
            ))),
            Err(RecvTimeoutError::Disconnected) => {
                // Give the stderr thread a moment to collect the reason (e.g. a missing module).
                std::thread::sleep(Duration::from_millis(200));
                Err(HarnessError::Setup(format!(
                    "peer.js exited during startup ({SETUP_HINT}); stderr: {}",
                    peers.stderr_text()
                )))
            }
        }
    }

    /// Process id of the node child.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn stderr_text(&self) -> String {
        let t = self.stderr_tail.lock().unwrap();
        if t.is_empty() {
            "<empty>".into()
        } else {
            t.iter().cloned().collect::<Vec<_>>().join("\n")
        }
    }

    /// Sends one op (a JSON object with `"op"` and its fields; the `"id"` is added here) and
    /// waits for its reply: JS-side timeout (`"timeout"` ms in the op, default 20 s) plus a
    /// few seconds of grace. `{"error": ..}` replies become [`HarnessError::Remote`]; on
    /// success the whole reply object (including `"id"`) is returned.
    pub fn call(&self, op: Value) -> Result<Value, HarnessError> {
        let js_timeout = op
            .get("timeout")
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
            .unwrap_or(JS_OP_TIMEOUT);
        self.call_with_deadline(op, js_timeout + GRACE)
    }

    /// Like [`call`](Self::call) with an explicit timeout: it is also passed to peer.js as the
    /// op's `"timeout"` (unless the op sets one) so the JS side gives up first.
    pub fn call_timeout(&self, mut op: Value, timeout: Duration) -> Result<Value, HarnessError> {
        if let Some(obj) = op.as_object_mut() {
            obj.entry("timeout")
                .or_insert_with(|| json!(timeout.as_millis() as u64));
        }
        self.call(op)
    }

    fn call_with_deadline(&self, mut op: Value, wait: Duration) -> Result<Value, HarnessError> {
        if !op.is_object() {
            return Err(HarnessError::Protocol(format!(
                "op must be a JSON object: {op}"
            )));
        }
        let obj = op.as_object_mut().expect("checked above");
        let op_name = obj
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| HarnessError::Protocol("op has no \"op\" string".into()))?
            .to_string();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        obj.insert("id".into(), json!(id));

        let (tx, rx): (Sender<Value>, Receiver<Value>) = mpsc::channel();
        self.pending.lock().unwrap().insert(id, tx);

        let mut line = serde_json::to_string(&op).expect("serialize op");
        line.push('\n');
        let written = {
            let mut stdin = self.stdin.lock().unwrap();
            match stdin.as_mut() {
                Some(s) => s.write_all(line.as_bytes()).and_then(|_| s.flush()),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "stdin closed",
                )),
            }
        };
        if let Err(e) = written {
            self.pending.lock().unwrap().remove(&id);
            return Err(HarnessError::PeerExited(format!(
                "writing {op_name:?} failed ({e}); stderr: {}",
                self.stderr_text()
            )));
        }

        let start = Instant::now();
        let reply = match rx.recv_timeout(wait) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => {
                self.pending.lock().unwrap().remove(&id);
                return Err(HarnessError::Timeout {
                    op: op_name,
                    after: start.elapsed(),
                });
            }
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(100));
                return Err(HarnessError::PeerExited(format!(
                    "while waiting for {op_name:?}; stderr: {}",
                    self.stderr_text()
                )));
            }
        };
        if let Some(err) = reply.get("error").and_then(Value::as_str) {
            return Err(HarnessError::Remote {
                op: op_name,
                message: err.to_string(),
            });
        }
        Ok(reply)
    }

    // ---- thin typed helpers over `call` ------------------------------------------------

    /// `testnet`: a bootstrapper `b` plus `size - 1` persistent rpc nodes `n1..`.
    pub fn testnet(&self, size: usize) -> Result<Testnet, HarnessError> {
        self.testnet_with(json!({ "size": size }))
    }

    /// `testnet` with extra fields (`"kind"`, `"prefix"`, `"opts"`, `"timeout"`).
    pub fn testnet_with(&self, mut fields: Value) -> Result<Testnet, HarnessError> {
        fields["op"] = json!("testnet");
        let v = self.call(fields)?;
        serde_json::from_value(v).map_err(|e| HarnessError::Protocol(format!("testnet reply: {e}")))
    }

    /// `spawn` a node; `fields` holds the optional spawn fields (`"bootstrap"`, `"ephemeral"`,
    /// `"firewalled"`, `"kind"`, `"bootstrapper"`, `"port"`, `"opts"`, ...).
    pub fn spawn(&self, name: &str, mut fields: Value) -> Result<PeerNode, HarnessError> {
        if fields.is_null() {
            fields = json!({});
        }
        fields["op"] = json!("spawn");
        fields["name"] = json!(name);
        let v = self.call(fields)?;
        serde_json::from_value(v).map_err(|e| HarnessError::Protocol(format!("spawn reply: {e}")))
    }

    /// `state` of a node.
    pub fn state(&self, name: &str) -> Result<PeerNode, HarnessError> {
        let v = self.call(json!({ "op": "state", "name": name }))?;
        serde_json::from_value(v).map_err(|e| HarnessError::Protocol(format!("state reply: {e}")))
    }

    /// `findNode` from `name` for `target`.
    pub fn find_node(&self, name: &str, target: &[u8; 32]) -> Result<Value, HarnessError> {
        self.call(json!({ "op": "findNode", "name": name, "target": hex::encode(target) }))
    }

    /// `query` from `name`.
    pub fn query(
        &self,
        name: &str,
        target: &[u8; 32],
        command: u64,
        value: Option<&[u8]>,
        commit: bool,
    ) -> Result<Value, HarnessError> {
        self.call(json!({
            "op": "query", "name": name, "target": hex::encode(target), "command": command,
            "value": value.map(hex::encode), "commit": commit,
        }))
    }

    /// `ping` `addr` from `name`.
    pub fn ping(&self, name: &str, addr: SocketAddr) -> Result<Value, HarnessError> {
        self.call(json!({ "op": "ping", "name": name, "host": addr.ip().to_string(), "port": addr.port() }))
    }

    /// `destroy` a node.
    pub fn destroy(&self, name: &str) -> Result<(), HarnessError> {
        self.call(json!({ "op": "destroy", "name": name }))
            .map(|_| ())
    }
}

impl Drop for NodePeers {
    fn drop(&mut self) {
        // Closing stdin makes peer.js destroy its nodes and exit.
        drop(self.stdin.lock().unwrap().take());
        let mut child = self.child.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        drop(child);
        // The child is gone, so its pipes are closed and the reader threads finish.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
