//! `hdht listen` and `hdht connect` when the other side dies or is interrupted (issue 11), as
//! real processes on 127.0.0.1 with ephemeral ports: SIGKILL and SIGINT of each side, with the
//! survivor's stdin at its end or kept open. The survivor must exit 1 within a bounded time
//! with the reason on stderr and in its `end` line (`timed out` for a killed peer, `reset` for
//! an interrupted one, which aborts the connection at once), and never exit 0 with a cut
//! stream. Also: the README's by-hand transfer with `hdht listen … > file &` in a shell with
//! job control (a background job must not read its terminal). Every process is killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hdht");

/// How long a step that needs no timeout may take (a busy machine, a debug build).
const QUICK: Duration = Duration::from_secs(20);
/// How long the survivor may take to notice: the connection's idle timeout (15 s) plus a wide
/// margin for a loaded machine. A bound, not a speed claim: the detection times are printed.
const DETECT: Duration = Duration::from_secs(45);

/// A running `hdht`: JSON lines from stderr (or stdout), the rest of stdout collected.
struct Proc {
    child: Child,
    name: String,
    lines: Receiver<String>,
    seen: Vec<Value>,
    stderr_text: Vec<String>,
    stdout: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Proc {
    /// `hdht args…`; with `events_on_stderr` (listen, connect) stdout is data, else JSON lines.
    fn spawn(args: &[String], stdin: Stdio, events_on_stderr: bool) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hdht");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let forward = move |r: Box<dyn Read + Send>| {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
        };
        let stdout = if events_on_stderr {
            forward(Box::new(err));
            Some(thread::spawn(move || {
                let mut out = out;
                let mut bytes = Vec::new();
                let _ = out.read_to_end(&mut bytes);
                bytes
            }))
        } else {
            forward(Box::new(out));
            thread::spawn(move || {
                let _ = std::io::copy(&mut { err }, &mut std::io::sink());
            });
            None
        };
        Proc {
            child,
            name: format!("hdht {}", args.join(" ")),
            lines,
            seen: Vec::new(),
            stderr_text: Vec::new(),
            stdout,
        }
    }

    fn take_line(&mut self, line: String) {
        match serde_json::from_str::<Value>(&line) {
            Ok(v) => self.seen.push(v),
            Err(_) => self.stderr_text.push(line),
        }
    }

    /// Waits for the first JSON line with this `event`.
    fn expect_event(&mut self, event: &str, limit: Duration) -> Value {
        if let Some(v) = self.seen.iter().find(|v| v["event"] == event) {
            return v.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "{}: no {event:?} line within {limit:?}; saw {:#?} {:#?}",
                    self.name, self.seen, self.stderr_text
                )
            });
            self.take_line(line);
            if let Some(v) = self.seen.last().filter(|v| v["event"] == event) {
                return v.clone();
            }
        }
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -{signal} failed");
    }

    /// Waits for the exit (failing after `limit`), then reads what is left.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}; saw {:#?}",
                self.name,
                self.seen
            );
            thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.take_line(line);
        }
        status
    }

    fn stdout(&mut self) -> Vec<u8> {
        self.stdout
            .take()
            .map(|t| t.join().expect("stdout reader"))
            .unwrap_or_default()
    }

    /// The command's failure as `--json` prints it: `{"error":CODE,"message":text}` (code, text).
    fn error_line(&self) -> (String, String) {
        let v = self
            .seen
            .iter()
            .rev()
            .find(|v| v.get("error").is_some() && v.get("event").is_none())
            .unwrap_or_else(|| panic!("{}: no error line in {:#?}", self.name, self.seen));
        assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{v}");
        (
            v["error"].as_str().unwrap_or_default().to_string(),
            v["message"].as_str().unwrap_or_default().to_string(),
        )
    }

    fn end_line(&self) -> Value {
        self.seen
            .iter()
            .rev()
            .find(|v| v["event"] == "end")
            .cloned()
            .unwrap_or_else(|| panic!("{}: no end line in {:#?}", self.name, self.seen))
    }

    fn error_text(&self) -> String {
        self.stderr_text.join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bootstrapper and three persistent nodes.
struct LocalNet {
    _procs: Vec<Proc>,
    bootstrap: String,
}

impl LocalNet {
    fn start() -> LocalNet {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut bs = Proc::spawn(
            &s(&["bootstrap", "--host", "127.0.0.1", "--port", "0", "--json"]),
            Stdio::null(),
            false,
        );
        let port = bs.expect_event("listening", QUICK)["port"].clone();
        let bootstrap = format!("127.0.0.1:{port}");
        let mut procs = vec![bs];
        for _ in 0..3 {
            let mut node = Proc::spawn(
                &s(&[
                    "node",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--persistent",
                    "--bootstrap",
                    &bootstrap,
                    "--json",
                ]),
                Stdio::null(),
                false,
            );
            node.expect_event("ready", QUICK);
            procs.push(node);
        }
        LocalNet {
            _procs: procs,
            bootstrap,
        }
    }
}

/// The options that put a command on the local network.
struct NetArgs(String);

impl NetArgs {
    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        for a in ["--host", "127.0.0.1", "--bootstrap", &self.0, "--json"] {
            all.push(a.to_string());
        }
        all
    }
}

fn public_key(seed: &str) -> String {
    let out = Command::new(BIN)
        .args(["keypair", "--seed", seed, "--json"])
        .output()
        .expect("keypair");
    let v: Value = serde_json::from_slice(&out.stdout).expect("keypair JSON");
    v["publicKey"].as_str().expect("publicKey").to_string()
}

/// Feeds a child's stdin from a thread: `Some(n)` bytes then the end, or (`None`) 64 KiB every
/// 10 ms without end, until the pipe breaks (the child died).
fn feed(stdin: ChildStdin, total: Option<usize>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut stdin = stdin;
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut left = total;
        loop {
            let n = left.map_or(chunk.len(), |l| l.min(chunk.len()));
            if n == 0 || stdin.write_all(&chunk[..n]).is_err() {
                return;
            }
            match &mut left {
                Some(l) => *l -= n,
                None => thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// `connect`, streaming without end into the listener.
    Connect,
    /// `listen`, its own side open (it never ends).
    Listen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    Kill,
    Int,
}

/// The survivor's stdin: at its end (its side ended: a listener with `< /dev/null`, a connect
/// that sent a file), or open (a listener whose stdin stays open, a connect still streaming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdin {
    Eof,
    Open,
}

/// Bytes a surviving `connect` with `Stdin::Eof` sends before its end.
const FILE: usize = 300_000;

fn one_case(net: &NetArgs, n: usize, victim: Victim, sig: Sig, stdin: Stdin) -> Duration {
    let name = format!("{victim:?} {sig:?}, survivor's stdin {stdin:?}");
    let seed = format!("{:02x}", 0x60 + n).repeat(32);
    let pk = public_key(&seed);
    let listen_open = victim == Victim::Listen || stdin == Stdin::Open;
    let mut listener = Proc::spawn(
        &net.args(&["listen", "--seed", &seed]),
        if listen_open {
            Stdio::piped()
        } else {
            Stdio::null()
        },
        true,
    );
    // Held open (never written) while the test runs.
    let _listen_stdin = listener.child.stdin.take();
    listener.expect_event("listening", QUICK);
    let mut connect = Proc::spawn(&net.args(&["connect", &pk]), Stdio::piped(), true);
    let total = (victim == Victim::Listen && stdin == Stdin::Eof).then_some(FILE);
    let _feeder = feed(connect.child.stdin.take().unwrap(), total);
    connect.expect_event("connected", QUICK);
    listener.expect_event("connection", QUICK);
    // Let bytes flow (and a surviving connect with a file send all of it and end).
    thread::sleep(Duration::from_millis(1500));

    let (mut dead, mut survivor) = match victim {
        Victim::Connect => (connect, listener),
        Victim::Listen => (listener, connect),
    };
    let t0 = Instant::now();
    match sig {
        Sig::Kill => dead.signal("KILL"),
        Sig::Int => dead.signal("INT"),
    }
    let status = survivor.wait(DETECT);
    let took = t0.elapsed();
    let dead_status = dead.wait(QUICK);

    // The survivor failed, with the reason.
    let reason = match sig {
        Sig::Kill => "timed out (the peer stopped answering)",
        Sig::Int => "reset by the peer (it aborted)",
    };
    assert_eq!(
        status.code(),
        Some(1),
        "{name}: the survivor must fail: {:#?} {}",
        survivor.seen,
        survivor.error_text()
    );
    let end = survivor.end_line();
    let error = end["error"].as_str().unwrap_or_default();
    assert!(error.contains(reason), "{name}: end line {end}");
    // With --json the failure is a JSON object: udx's code for the reason, and the message.
    let (code, message) = survivor.error_line();
    let want_code = match sig {
        Sig::Kill => "ETIMEDOUT",
        Sig::Int => "ECONNRESET",
    };
    assert_eq!(code, want_code, "{name}: {message}");
    assert!(
        message.starts_with("the connection failed:") && message.contains(reason),
        "{name}: error message {message}"
    );
    let stderr = survivor.error_text();
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    // What it printed is what it received, and it is no complete stream.
    let received = survivor.stdout();
    assert_eq!(
        end["bytesReceived"].as_u64(),
        Some(received.len() as u64),
        "{name}: {end}"
    );
    if victim == Victim::Connect {
        assert!(
            !received.is_empty(),
            "{name}: bytes flowed before the fault"
        );
    }
    if victim == Victim::Listen && stdin == Stdin::Eof {
        assert_eq!(
            end["bytesSent"].as_u64(),
            Some(FILE as u64),
            "{name}: {end}"
        );
    }

    // An interrupted side aborts, says so and fails too; a killed one just died.
    match sig {
        Sig::Kill => assert_eq!(dead_status.code(), None, "{name}: SIGKILL"),
        Sig::Int => {
            assert_eq!(dead_status.code(), Some(1), "{name}: interrupted");
            let end = dead.end_line();
            assert_eq!(end["error"], "interrupted by SIGINT", "{name}: {end}");
            let (code, message) = dead.error_line();
            assert_eq!(code, "INTERRUPTED", "{name}: {message}");
            assert_eq!(
                message, "interrupted by SIGINT: the transfer did not complete",
                "{name}"
            );
        }
    }
    println!("{name}: the survivor exited 1 after {took:.2?}: {error}");
    took
}

/// Every victim × signal × survivor's stdin, at once (the timeouts overlap).
#[test]
fn a_killed_or_interrupted_peer_makes_the_survivor_fail_with_the_reason() {
    let net = LocalNet::start();
    let net_args = NetArgs(net.bootstrap.clone());
    let mut cases = Vec::new();
    for victim in [Victim::Connect, Victim::Listen] {
        for sig in [Sig::Kill, Sig::Int] {
            for stdin in [Stdin::Eof, Stdin::Open] {
                cases.push((victim, sig, stdin));
            }
        }
    }
    let took: Vec<(String, Duration)> = thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .enumerate()
            .map(|(n, &(victim, sig, stdin))| {
                let net = &net_args;
                s.spawn(move || {
                    (
                        format!("{victim:?} {sig:?} {stdin:?}"),
                        one_case(net, n, victim, sig, stdin),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a case failed"))
            .collect()
    });
    for (name, t) in took {
        println!("{name}: {t:.2?}");
    }
}

/// The README's transfer by hand: `hdht listen … > received.bin &` in a shell with job control
/// (bash `set -m`, in a pseudo-terminal from `script`), then `hdht connect PK < file` in the
/// foreground. The background listener must not read the terminal (a read would stop it with
/// SIGTTIN, "Stopped (tty input)", and the file would stay empty): it sends nothing, receives
/// the file and exits 0.
#[test]
#[cfg(target_os = "linux")]
fn the_readme_background_listener_receives_the_file() {
    for tool in ["script", "bash"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "this test needs `{tool}` (util-linux `script`, GNU bash)"
        );
    }
    let net = LocalNet::start();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("background-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(dir.join("file.bin"), &data).expect("file");
    let seed = "5a".repeat(32);
    let pk = public_key(&seed);
    let net_args = format!("--bootstrap {} --host 127.0.0.1", net.bootstrap);
    let script = format!(
        r#"set -m
cd '{dir}'
timeout 60 '{bin}' listen --seed {seed} {net_args} > received.bin 2> listen.log &
for i in $(seq 200); do grep -q listening listen.log && break; sleep 0.1; done
timeout 60 '{bin}' connect {pk} {net_args} < file.bin > /dev/null 2> connect.log
echo "connect $?" > status
wait %1
echo "listen $?" >> status
"#,
        dir = dir.display(),
        bin = BIN,
    );
    std::fs::write(dir.join("run.sh"), script).expect("script");
    let mut child = Command::new("script")
        .args(["-qec", "bash run.sh", "/dev/null"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the shell session did not finish within 90 s");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let listen_log = read("listen.log");
    assert!(status.success(), "script: {status:?}; {listen_log}");
    assert_eq!(
        read("status"),
        "connect 0\nlisten 0\n",
        "listen: {listen_log}\nconnect: {}",
        read("connect.log")
    );
    assert!(
        listen_log.contains("stdin is the terminal of a background job: sending nothing"),
        "{listen_log}"
    );
    let received = std::fs::read(dir.join("received.bin")).expect("received.bin");
    assert!(
        received == data,
        "received {} of {} bytes",
        received.len(),
        data.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
