//! `hdht doctor`, errors as JSON objects with `--json`, and `-v` / `RUST_LOG` logging, against
//! a local network of `hdht` processes on 127.0.0.1 (ephemeral ports, every process bounded by
//! a timeout and killed on drop; never the public network).

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hdht");
const QUICK: Duration = Duration::from_secs(10);
const ONE_SHOT: Duration = Duration::from_secs(40);

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// Runs `hdht args…` (with `env`) to completion, killing it (and failing) after `limit`.
fn run_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hdht");
    let read = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hdht {args:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let r = Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r
}

fn run(args: &[&str], limit: Duration) -> Run {
    run_env(args, &[], limit)
}

/// A long-running `hdht` printing JSON lines on stdout. Killed on drop.
struct Proc {
    child: Child,
    lines: Receiver<String>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hdht");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    fn expect_event(&mut self, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + QUICK;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {event:?} line within {QUICK:?}"));
            let v: Value = serde_json::from_str(&line).expect("JSON line");
            if v["event"] == event && pred(&v) {
                return v;
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_of(v: &Value) -> u16 {
    v["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("port")
}

/// A bootstrapper and `nodes` persistent nodes, each in the bootstrapper's table.
struct LocalNet {
    _procs: Vec<Proc>,
    bootstrap: String,
}

impl LocalNet {
    fn start(nodes: usize) -> LocalNet {
        let mut bs = Proc::spawn(&["bootstrap", "--host", "127.0.0.1", "--port", "0", "--json"]);
        let bootstrap = format!(
            "127.0.0.1:{}",
            port_of(&bs.expect_event("listening", |_| true))
        );
        let mut procs = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..nodes {
            let mut node = Proc::spawn(&[
                "node",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--persistent",
                "--bootstrap",
                &bootstrap,
                "--json",
            ]);
            ports.push(port_of(&node.expect_event("ready", |_| true)));
            procs.push(node);
        }
        for port in ports {
            bs.expect_event("addNode", |v| port_of(v) == port);
        }
        procs.push(bs);
        LocalNet {
            _procs: procs,
            bootstrap,
        }
    }
}

/// A bound socket that never answers: a dead bootstrap node.
fn silent_node() -> (UdpSocket, String) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let entry = s.local_addr().unwrap().to_string();
    (s, entry)
}

/// The public key of a seed (`hdht keypair`): a valid key nobody announced.
fn public_key(seed: &str) -> String {
    let r = run(&["keypair", "--seed", seed, "--json"], QUICK);
    json_lines(&r.stdout)[0]["publicKey"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The last stderr line as a JSON error object: `(code, message)`.
fn json_error(r: &Run) -> (String, String) {
    let lines = json_lines(&r.stderr);
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("no stderr line: {}", r.stderr));
    let obj = last.as_object().expect("an object");
    assert_eq!(obj.len(), 2, "error and message only: {last}");
    (
        last["error"].as_str().expect("error code").to_string(),
        last["message"].as_str().expect("message").to_string(),
    )
}

#[test]
fn doctor_reports_the_bootstrap_nodes_nat_and_reach() {
    let net = LocalNet::start(2);
    let (_dead, dead) = silent_node();
    let list = format!("{},{dead}", net.bootstrap);
    let r = run(
        &[
            "doctor",
            "--json",
            "--host",
            "127.0.0.1",
            "--bootstrap",
            &list,
        ],
        ONE_SHOT,
    );
    assert!(r.status.success(), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.is_empty(), "nothing on stderr: {}", r.stderr);
    let lines = json_lines(&r.stdout);
    assert_eq!(lines.len(), 6, "{lines:#?}");

    let alive = &lines[0];
    assert_eq!(alive["event"], "bootstrapNode");
    assert_eq!(
        format!("{}:{}", alive["host"].as_str().unwrap(), alive["port"]),
        net.bootstrap
    );
    assert_eq!(alive["answered"], true, "{alive}");
    assert!(
        alive["rttMs"].as_f64().is_some_and(|ms| ms > 0.0),
        "{alive}"
    );
    assert_eq!(alive["seenAs"]["host"], "127.0.0.1", "{alive}");
    let dead_line = &lines[1];
    assert_eq!(
        format!(
            "{}:{}",
            dead_line["host"].as_str().unwrap(),
            dead_line["port"]
        ),
        dead
    );
    assert_eq!(dead_line["answered"], false, "{dead_line}");
    assert!(dead_line["rttMs"].is_null() && dead_line["seenAs"].is_null());

    // On 127.0.0.1 the DHT reaches the node: open, at the address the bootstrapper saw.
    let nat = &lines[2];
    assert_eq!(nat["event"], "nat");
    assert_eq!(nat["natClass"], "open", "{nat}");
    assert_eq!(nat["firewalled"], false, "{nat}");
    assert_eq!(nat["publicAddress"]["host"], "127.0.0.1", "{nat}");
    let locals = nat["localAddresses"].as_array().expect("localAddresses");
    assert_eq!(locals.len(), 1, "bound to 127.0.0.1: {nat}");
    assert_eq!(locals[0]["host"], "127.0.0.1");

    // An open node reaches open peers directly, and firewalled ones connect back to it.
    let reach: Vec<(String, String, bool)> = lines[3..]
        .iter()
        .map(|v| {
            assert_eq!(v["event"], "reach", "{v}");
            assert!(v["strategy"].is_null(), "{v}");
            (
                v["remoteNatClass"].as_str().unwrap().to_string(),
                v["path"].as_str().unwrap().to_string(),
                v["relayOnly"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("open", "direct", false),
        ("consistent", "reverse", false),
        ("random", "reverse", false),
    ];
    let expected: Vec<(String, String, bool)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
        .collect();
    assert_eq!(reach, expected);

    // The human form says the same.
    let r = run(
        &[
            "doctor",
            "--host",
            "127.0.0.1",
            "--bootstrap",
            &net.bootstrap,
        ],
        ONE_SHOT,
    );
    assert!(r.status.success(), "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("bootstrap  {}", net.bootstrap))
            && r.stdout.contains("answered in"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("nat        open: "), "{}", r.stdout);
    assert!(r.stdout.contains("local      127.0.0.1:"), "{}", r.stdout);
}

#[test]
fn doctor_without_an_answer_fails_with_a_json_error() {
    let (_dead, dead) = silent_node();
    let r = run(
        &[
            "doctor",
            "--json",
            "--host",
            "127.0.0.1",
            "--bootstrap",
            &dead,
        ],
        ONE_SHOT,
    );
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    let lines = json_lines(&r.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"], "bootstrapNode");
    assert_eq!(lines[0]["answered"], false);
    let (code, message) = json_error(&r);
    assert_eq!(code, "NO_BOOTSTRAP_REPLY");
    assert!(message.contains(&format!("tried {dead}")), "{message}");
}

#[test]
fn errors_are_json_objects_with_json() {
    let net = LocalNet::start(2);
    let b = [
        "--host",
        "127.0.0.1",
        "--bootstrap",
        net.bootstrap.as_str(),
        "--json",
    ];

    // A connect to a key nobody announced: the reference's code, exit code 1. Every stderr
    // line of `connect` is JSON.
    let key = public_key(&"05".repeat(32));
    let mut args = vec!["connect", key.as_str()];
    args.extend(b);
    let r = run(&args, ONE_SHOT);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    let (code, message) = json_error(&r);
    assert_eq!(code, "PEER_NOT_FOUND", "{message}");
    assert!(message.contains(&key), "{message}");

    // A get that finds nothing.
    let mut args = vec!["immutable-get", key.as_str()];
    args.extend(b);
    let r = run(&args, ONE_SHOT);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert_eq!(json_error(&r).0, "NOT_FOUND");

    // No bootstrap node answered.
    let (_dead, dead) = silent_node();
    let r = run(
        &[
            "immutable-get",
            &key,
            "--host",
            "127.0.0.1",
            "--bootstrap",
            &dead,
            "--json",
        ],
        ONE_SHOT,
    );
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(json_error(&r).0, "NO_BOOTSTRAP_REPLY");

    // Usage errors keep exit code 2.
    let r = run(&["immutable-get", "zz", "--json"], QUICK);
    assert_eq!(r.status.code(), Some(2));
    let (code, message) = json_error(&r);
    assert_eq!(code, "USAGE");
    assert!(message.contains("not valid hex"), "{message}");
    let r = run(&["--json", "no-such-command"], QUICK);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(json_error(&r).0, "USAGE");

    // Without --json, the text form as before.
    let r = run(&["immutable-get", "zz"], QUICK);
    assert_eq!(r.status.code(), Some(2));
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    let r = run(
        &[
            "immutable-get",
            &key,
            "--host",
            "127.0.0.1",
            "--bootstrap",
            &dead,
        ],
        ONE_SHOT,
    );
    assert!(
        r.stderr
            .starts_with("hdht: error: no bootstrap node answered"),
        "{}",
        r.stderr
    );
}

#[test]
fn verbose_logs_say_why_a_connect_failed() {
    let net = LocalNet::start(2);
    let key = public_key(&"06".repeat(32));
    let args = [
        "connect",
        key.as_str(),
        "--host",
        "127.0.0.1",
        "--bootstrap",
        net.bootstrap.as_str(),
    ];
    let why = "connect: no relay left to try (no node holds an announcement of the key)";

    // Quiet by default: only the error.
    let r = run(&args, ONE_SHOT);
    assert_eq!(r.status.code(), Some(1));
    assert!(!r.stderr.contains("DEBUG"), "{}", r.stderr);

    // -v: the core's debug events on stderr, then the error.
    let mut verbose = args.to_vec();
    verbose.push("-v");
    let r = run(&verbose, ONE_SHOT);
    assert_eq!(r.status.code(), Some(1));
    assert!(r.stderr.contains(why), "{}", r.stderr);
    assert!(
        r.stderr.contains("connect failed") && r.stderr.contains("PEER_NOT_FOUND"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("bootstrap done"), "{}", r.stderr);
    assert!(
        r.stdout.is_empty(),
        "stdout stays the data pipe: {}",
        r.stdout
    );

    // RUST_LOG chooses instead (here the core only).
    let r = run_env(&args, &[("RUST_LOG", "hdht_core=debug")], ONE_SHOT);
    assert!(r.stderr.contains(why), "{}", r.stderr);
    assert!(!r.stderr.contains("hdht_driver"), "{}", r.stderr);

    // With --json, log lines are JSON objects too, and the error is the last one.
    let mut json = verbose.clone();
    json.push("--json");
    let r = run(&json, ONE_SHOT);
    let lines = json_lines(&r.stderr);
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"].as_str().is_some_and(|m| m == why)),
        "{}",
        r.stderr
    );
    assert_eq!(json_error(&r).0, "PEER_NOT_FOUND");
}
