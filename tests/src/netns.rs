//! Real Linux kernel NATs in network namespaces, for holepunching tests (`tests/kernel_nat.rs`).
//!
//! [`Topology::up`] builds, all inside fresh network namespaces (nothing is added to the root
//! namespace, nothing uses 127.0.0.1):
//!
//! ```text
//!   ns "pub" (the internet): bridge br0, 20.0.0.1/24 plus one address per public DHT node
//!   (20.0.0.10, .11, …; the first one hosts the bootstrapper on port 49737) and 20.0.0.50 for
//!   servers that need no NAT. 20.0.0.0/8 is what hyperdht's `bogon` check calls public.
//!        │ tap "wan-a"                                   │ tap "wan-b"
//!        │ 20 ms each way (user-space delay pump)        │ 20 ms each way
//!        │ tap "wan" 20.0.0.101                          │ tap "wan" 20.0.0.102
//!   ns "nat-a": nftables masquerade [fully-random]  ns "nat-b": the same
//!        │ veth "lan" 10.1.0.1/24                        │ veth "lan" 192.168.2.1/24
//!   ns "host-a": eth0 10.1.0.2 (server side)       ns "host-b": eth0 192.168.2.2 (client side)
//! ```
//!
//! Each NAT is either [`Nat::Consistent`] (`masquerade`: Linux keeps the source port, so one
//! mapping per local port — endpoint-independent mapping) or [`Nat::Random`] (`masquerade
//! fully-random`: a random port per connection-tracking entry, i.e. per destination — a
//! symmetric NAT). Filtering is conntrack's (address-and-port dependent); unsolicited inbound
//! packets are dropped at the router's input hook, so they never create a conntrack entry that
//! would steal a later outbound mapping.
//!
//! The 20 ms delays run in this process: `sch_netem` is often not built into CI kernels (it is
//! not in the Firecracker kernel this was written on), so each NAT's public link is a pair of
//! tap devices joined by two threads that hold every frame for the delay. RTT host ⇄ public
//! node = 40 ms, host A ⇄ host B = 80 ms.
//!
//! Teardown (Drop, also on panic): kills every process in the namespaces, stops the delay
//! pumps (closing the taps deletes them) and deletes the namespaces. Namespace names are
//! `hdht-<pid>-<n>-<role>`; leftovers of a process that died without unwinding (SIGKILL) are
//! swept by the next `Topology::up` on the machine.
//!
//! Requirements (checked loudly, never skipped): root, `ip` (iproute2), `nft` (installed with
//! apt-get when missing), /dev/net/tun, Node.js and the pinned packages in tests/interop.

use serde_json::Value;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One-way delay of each NAT's public link.
pub const LINK_DELAY: Duration = Duration::from_millis(20);
/// Number of public DHT nodes (bootstrapper included). hyperdht's NAT sampler skips the 5 most
/// recent nodes when it knows 8 or more, so it needs a dozen to get its 4 samples.
pub const PUBLIC_NODES: usize = 12;
/// Port of every public DHT node (each has its own address).
pub const PUBLIC_PORT: u16 = 49737;
/// An address on the public bridge for servers without a NAT (`Site::Public`).
pub const PUBLIC_HOST: &str = "20.0.0.50";

const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Where things run

/// How a NAT router maps ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// nftables `masquerade`: the source port is kept (endpoint-independent mapping).
    Consistent,
    /// nftables `masquerade fully-random`: a random port per destination (symmetric NAT).
    Random,
}

impl Nat {
    pub const ALL: [Nat; 2] = [Nat::Consistent, Nat::Random];

    pub fn name(self) -> &'static str {
        match self {
            Nat::Consistent => "consistent",
            Nat::Random => "random",
        }
    }

    fn masquerade(self) -> &'static str {
        match self {
            Nat::Consistent => "masquerade",
            Nat::Random => "masquerade fully-random",
        }
    }
}

/// A place to run a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// The public namespace (the DHT nodes' side, no NAT). Bind to [`PUBLIC_HOST`].
    Public,
    /// The host behind NAT A (10.1.0.2). Servers run here.
    A,
    /// A second host on NAT A's LAN (10.1.0.3): a peer behind the same NAT, for the LAN
    /// shortcut.
    A2,
    /// The host behind NAT B (192.168.2.2). Clients run here.
    B,
}

impl Site {
    /// The site's own address.
    pub fn address(self) -> &'static str {
        match self {
            Site::Public => PUBLIC_HOST,
            Site::A => "10.1.0.2",
            Site::A2 => "10.1.0.3",
            Site::B => "192.168.2.2",
        }
    }
}

/// Which implementation runs a server or a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// The Node.js reference (tests/netns/server.js, client.js).
    Node,
    /// The `hdht` CLI (`hdht listen --echo`, `hdht connect`).
    Rust,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Node => "node",
            Impl::Rust => "rust",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Preflight

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Installs a Debian package for a missing command (fresh CI machines lack nftables), or fails.
fn ensure_command(cmd: &str, package: &str) -> Result<(), String> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if have(cmd) {
        return Ok(());
    }
    if !have("apt-get") {
        return Err(format!(
            "`{cmd}` is missing and there is no apt-get to install it: install {package}"
        ));
    }
    eprintln!("hdht-tests: `{cmd}` is missing; installing {package} with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !install() {
        // A fresh machine may have no package lists yet.
        let _ = Command::new("apt-get")
            .args(["update"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status();
        install();
    }
    if have(cmd) {
        Ok(())
    } else {
        Err(format!(
            "`apt-get install {package}` did not provide `{cmd}`; install it by hand"
        ))
    }
}

/// Loud checks for everything the topology needs. Fails (never skips) when something is
/// missing; installs nftables / iproute2 with apt-get when absent. Done once per process.
pub fn preflight() -> Result<(), String> {
    static RESULT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    RESULT.get_or_init(preflight_once).clone()
}

fn preflight_once() -> Result<(), String> {
    const DESELECT: &str = "(CI runs these as root; elsewhere run them as root, e.g. \
        `sudo -E cargo test -p hdht-tests --test kernel_nat`, or deselect them with \
        `cargo test --workspace -- --skip kernel_nat`)";
    if !is_root() {
        return Err(format!(
            "the kernel-NAT tests need root: they create network namespaces, veth/tap devices and \
             nftables rules {DESELECT}"
        ));
    }
    ensure_command("ip", "iproute2")?;
    ensure_command("nft", "nftables")?;
    if !Path::new("/dev/net/tun").exists() {
        return Err(format!(
            "/dev/net/tun is missing (the delayed public links are tap devices) {DESELECT}"
        ));
    }
    let node = crate::node_binary();
    match Command::new(&node).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => {
            return Err(format!(
                "cannot run `{node} --version`: the kernel-NAT tests need Node.js (>= 18)"
            ))
        }
    }
    crate::ensure_node_modules(&crate::interop_dir()).map_err(|e| e.to_string())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Commands

/// Runs a command to completion (bounded), feeding `stdin`; returns stdout or a loud error.
fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, String> {
    let desc = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {desc}: {e}"))?;
    if let Some(input) = stdin {
        let mut s = child.stdin.take().expect("piped stdin");
        s.write_all(input.as_bytes())
            .map_err(|e| format!("{desc}: writing stdin: {e}"))?;
    }
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| format!("{desc}: {e}"))? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{desc} did not finish within {COMMAND_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("{desc} failed ({status}): {}", stderr.trim()))
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(args), None)
}

/// `ip -n NS args…`
fn ipn(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    ip(&all)
}

fn in_ns(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

// ---------------------------------------------------------------------------------------------
// Namespace bookkeeping and teardown

const PREFIX: &str = "hdht-";

fn namespaces_on_machine() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process in `ns` and deletes it. Errors are reported, not fatal.
fn destroy_namespace(ns: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for _ in 0..50 {
        let pids = ip(&["netns", "pids", ns]).unwrap_or_default();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-9", pid])
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = ip(&["netns", "del", ns]) {
        problems.push(e);
    }
    problems
}

/// Is the test process that created namespace `ns` still running? A zombie is not, nor a
/// process that started after the namespace was created (a reused pid).
fn owner_alive(pid: u32, ns: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Fields after "(comm)": state is the 1st, starttime (clock ticks since boot) the 20th.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return true;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return false;
    }
    let started = (|| {
        let ticks: u64 = fields.get(19)?.parse().ok()?;
        let btime: u64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))?;
        Some(btime + ticks / 100) // USER_HZ is 100
    })();
    let created = std::fs::metadata(format!("/run/netns/{ns}"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    match (started, created) {
        (Some(started), Some(created)) => started <= created + 2,
        _ => true,
    }
}

/// Deletes namespaces left behind by test processes that no longer exist.
fn sweep_stale() {
    static SWEEP: Mutex<()> = Mutex::new(());
    let _guard = SWEEP.lock().unwrap_or_else(|e| e.into_inner());
    for ns in namespaces_on_machine() {
        let Some(rest) = ns.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !owner_alive(pid, &ns) {
            eprintln!("hdht-tests: removing stale namespace {ns} (its test process {pid} is gone)");
            for p in destroy_namespace(&ns) {
                eprintln!("hdht-tests: {p}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Delayed links: two tap devices in two namespaces, joined by two pump threads

mod sys {
    use std::os::raw::{c_int, c_short, c_ulong};

    #[repr(C)]
    pub struct PollFd {
        pub fd: c_int,
        pub events: c_short,
        pub revents: c_short,
    }

    pub const POLLIN: c_short = 0x1;
    pub const CLONE_NEWNET: c_int = 0x4000_0000;
    pub const TUNSETIFF: c_ulong = 0x4004_54ca;
    pub const IFF_TAP: c_short = 0x0002;
    pub const IFF_NO_PI: c_short = 0x1000;
    pub const O_NONBLOCK: i32 = 0o4000;

    /// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (union padded to 24).
    #[repr(C)]
    pub struct IfReq {
        pub name: [u8; 16],
        pub flags: c_short,
        pub pad: [u8; 22],
    }

    extern "C" {
        pub fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
        pub fn setns(fd: c_int, nstype: c_int) -> c_int;
        pub fn poll(fds: *mut PollFd, nfds: c_ulong, timeout: c_int) -> c_int;
    }
}

/// Creates tap device `name` inside namespace `ns` and returns its (non-blocking) queue. The
/// device lives as long as the returned file (and its clones).
fn create_tap(ns: &str, name: &str) -> Result<File, String> {
    let ns_path = format!("/run/netns/{ns}");
    let name_owned = name.to_string();
    // setns() switches only the calling thread; a short-lived thread keeps ours untouched.
    std::thread::spawn(move || -> Result<File, String> {
        let nsf = File::open(&ns_path).map_err(|e| format!("open {ns_path}: {e}"))?;
        if unsafe { sys::setns(nsf.as_raw_fd(), sys::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "setns({ns_path}): {}",
                std::io::Error::last_os_error()
            ));
        }
        let tun = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(sys::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(|e| format!("open /dev/net/tun: {e}"))?;
        let mut req = sys::IfReq {
            name: [0; 16],
            flags: sys::IFF_TAP | sys::IFF_NO_PI,
            pad: [0; 22],
        };
        req.name[..name_owned.len()].copy_from_slice(name_owned.as_bytes());
        if unsafe { sys::ioctl(tun.as_raw_fd(), sys::TUNSETIFF, &mut req as *mut sys::IfReq) } != 0
        {
            return Err(format!(
                "TUNSETIFF {name_owned}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(tun)
    })
    .join()
    .map_err(|_| "tap creation thread panicked".to_string())?
}

/// Frames read from `from` are written to `to` `delay` later, in order.
fn pump(from: File, mut to: File, delay: Duration, stop: Arc<AtomicBool>) {
    const MAX_QUEUED: usize = 20_000;
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; 65_536];
    let mut from = from;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while queue.front().is_some_and(|(due, _)| *due <= now) {
            let (_, frame) = queue.pop_front().expect("checked");
            let _ = to.write(&frame); // a full tap queue drops, like a real link
        }
        let wait = queue
            .front()
            .map(|(due, _)| due.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(50))
            .min(Duration::from_millis(50));
        // poll() counts milliseconds: round up so nothing leaves early.
        let ms = wait.as_micros().div_ceil(1000) as i32;
        let mut pfd = sys::PollFd {
            fd: from.as_raw_fd(),
            events: sys::POLLIN,
            revents: 0,
        };
        let n = unsafe { sys::poll(&mut pfd, 1, ms) };
        if n <= 0 {
            continue;
        }
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if queue.len() < MAX_QUEUED {
                        queue.push_back((Instant::now() + delay, buf[..n].to_vec()));
                    }
                }
                Err(_) => break, // WouldBlock: drained
            }
        }
    }
}

struct DelayLink {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DelayLink {
    /// Tap `a_name` in `a_ns` ⇄ tap `b_name` in `b_ns`, `delay` each way.
    fn new(
        a_ns: &str,
        a_name: &str,
        b_ns: &str,
        b_name: &str,
        delay: Duration,
    ) -> Result<Self, String> {
        let a = create_tap(a_ns, a_name)?;
        let b = create_tap(b_ns, b_name)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (from, to, label) in [
            (
                a.try_clone().map_err(|e| e.to_string())?,
                b.try_clone().map_err(|e| e.to_string())?,
                format!("{a_name}>{b_name}"),
            ),
            (b, a, format!("{b_name}>{a_name}")),
        ] {
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("delay {label}"))
                    .spawn(move || pump(from, to, delay, stop))
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(DelayLink { stop, threads })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for DelayLink {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A process started in a namespace. Its stdout and stderr lines are collected; JSON lines can
/// be awaited by `"event"`. Dropping it kills and reaps it.
pub struct Proc {
    pub label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines_rx: Receiver<(Stream, String)>,
    /// Every line seen so far.
    pub lines: Vec<(Stream, String)>,
    started: Instant,
}

impl Proc {
    fn spawn(label: String, mut cmd: Command) -> Result<Proc, String> {
        let desc = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot spawn {desc}: {e}"))?;
        let (tx, lines_rx) = mpsc::channel();
        for (stream, reader) in [
            (
                Stream::Stdout,
                Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            ),
            (
                Stream::Stderr,
                Box::new(child.stderr.take().expect("piped")) as Box<dyn Read + Send>,
            ),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((stream, line)).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Proc {
            label,
            child,
            stdin,
            lines_rx,
            lines: Vec::new(),
            started: Instant::now(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since the process was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for a JSON line (stdout or stderr) whose `"event"` is one of `events`.
    pub fn wait_event(&mut self, events: &[&str], timeout: Duration) -> Result<Value, String> {
        let is_match = |line: &str| -> Option<Value> {
            let v: Value = serde_json::from_str(line).ok()?;
            let e = v.get("event")?.as_str()?;
            events.contains(&e).then_some(v)
        };
        for (_, line) in &self.lines {
            if let Some(v) = is_match(line) {
                return Ok(v);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines_rx.recv_timeout(left) {
                Ok((stream, line)) => {
                    let hit = is_match(&line);
                    self.lines.push((stream, line));
                    if let Some(v) = hit {
                        return Ok(v);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{}: no {events:?} line within {timeout:?}\n{}",
                        self.label,
                        self.transcript()
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    return Err(format!(
                        "{}: exited ({status:?}) without a {events:?} line\n{}",
                        self.label,
                        self.transcript()
                    ));
                }
            }
        }
    }

    /// Writes to the process's stdin.
    pub fn write_stdin(&mut self, bytes: &[u8]) -> Result<(), String> {
        let s = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}: stdin already closed", self.label))?;
        s.write_all(bytes)
            .and_then(|_| s.flush())
            .map_err(|e| format!("{}: stdin: {e}", self.label))
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit, collecting its output; kills it at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(l) = self.lines_rx.try_recv() {
                self.lines.push(l);
            }
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                // Collect what the reader threads still hold.
                let drain_until = Instant::now() + Duration::from_millis(500);
                while let Ok(l) = self
                    .lines_rx
                    .recv_timeout(drain_until.saturating_duration_since(Instant::now()))
                {
                    self.lines.push(l);
                }
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                while let Ok(l) = self.lines_rx.try_recv() {
                    self.lines.push(l);
                }
                return Err(format!(
                    "{}: still running after {timeout:?}, killed\n{}",
                    self.label,
                    self.transcript()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The lines of one stream, joined with newlines.
    pub fn text(&self, stream: Stream) -> String {
        let mut s = String::new();
        for (st, l) in &self.lines {
            if *st == stream {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// The last lines of output, for error messages.
    pub fn transcript(&self) -> String {
        let mut s = String::new();
        let keep = std::env::var("HDHT_NETNS_TRANSCRIPT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        let skip = self.lines.len().saturating_sub(keep);
        for (st, l) in &self.lines[skip..] {
            let tag = if *st == Stream::Stdout { "out" } else { "err" };
            let l: String = l.chars().take(400).collect();
            let _ = writeln!(s, "  [{} {tag}] {l}", self.label);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The topology

/// The namespaces, links, NAT rules and public DHT of one test. Everything is torn down on drop.
pub struct Topology {
    pub prefix: String,
    ns_pub: String,
    ns_nat_a: String,
    ns_nat_b: String,
    ns_host_a: String,
    ns_host_a2: String,
    ns_host_b: String,
    created: Vec<String>,
    links: Vec<DelayLink>,
    public_dht: Option<Proc>,
    nat: [Nat; 2],
    /// `["20.0.0.10:49737"]`: the public bootstrapper.
    pub bootstrap: Vec<String>,
    /// The public nodes as public.js reports them.
    pub public_nodes: Value,
    /// How long `up` took.
    pub setup_time: Duration,
    next_port: u16,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn public_ip(i: usize) -> String {
    format!("20.0.0.{}", 10 + i)
}

impl Topology {
    /// Builds the whole topology with both NATs [`Nat::Consistent`] and starts the public DHT
    /// (Node reference nodes). Panics (loudly, after tearing down what exists) on any failure.
    pub fn up() -> Topology {
        if let Err(e) = preflight() {
            panic!("kernel-NAT harness: {e}");
        }
        sweep_stale();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX}{}-{n}", std::process::id());
        let ns = |role: &str| format!("{prefix}-{role}");
        let mut topo = Topology {
            ns_pub: ns("pub"),
            ns_nat_a: ns("nat-a"),
            ns_nat_b: ns("nat-b"),
            ns_host_a: ns("host-a"),
            ns_host_a2: ns("host-a2"),
            ns_host_b: ns("host-b"),
            prefix,
            created: Vec::new(),
            links: Vec::new(),
            public_dht: None,
            nat: [Nat::Consistent, Nat::Consistent],
            bootstrap: Vec::new(),
            public_nodes: Value::Null,
            setup_time: Duration::ZERO,
            next_port: 20_000,
        };
        let t0 = Instant::now();
        if let Err(e) = topo.build() {
            drop(topo); // tear down first, then fail
            panic!("kernel-NAT harness: building the topology failed: {e}");
        }
        if let Err(e) = topo.start_public_dht() {
            drop(topo);
            panic!("kernel-NAT harness: starting the public DHT failed: {e}");
        }
        topo.setup_time = t0.elapsed();
        topo
    }

    fn build(&mut self) -> Result<(), String> {
        for name in [
            &self.ns_pub,
            &self.ns_nat_a,
            &self.ns_nat_b,
            &self.ns_host_a,
            &self.ns_host_a2,
            &self.ns_host_b,
        ] {
            ip(&["netns", "add", name]).map_err(|e| {
                format!("{e}\n(network namespaces unavailable? the kernel needs CONFIG_NET_NS and we need CAP_SYS_ADMIN)")
            })?;
            self.created.push(name.clone());
            ipn(name, &["link", "set", "lo", "up"])?;
        }
        let (p, na, nb, ha, hb) = (
            self.ns_pub.clone(),
            self.ns_nat_a.clone(),
            self.ns_nat_b.clone(),
            self.ns_host_a.clone(),
            self.ns_host_b.clone(),
        );

        // The internet: a bridge with the public nodes' addresses.
        ipn(&p, &["link", "add", "br0", "type", "bridge"])?;
        ipn(&p, &["addr", "add", "20.0.0.1/24", "dev", "br0"])?;
        for i in 0..PUBLIC_NODES {
            ipn(
                &p,
                &["addr", "add", &format!("{}/24", public_ip(i)), "dev", "br0"],
            )?;
        }
        ipn(
            &p,
            &["addr", "add", &format!("{PUBLIC_HOST}/24"), "dev", "br0"],
        )?;
        ipn(&p, &["link", "set", "br0", "up"])?;

        // NAT routers and their LANs.
        for (nat_ns, host_ns, bridge_port, wan_ip, lan_router, lan_host) in [
            (
                &na,
                &ha,
                "wan-a",
                "20.0.0.101/24",
                "10.1.0.1/24",
                "10.1.0.2/24",
            ),
            (
                &nb,
                &hb,
                "wan-b",
                "20.0.0.102/24",
                "192.168.2.1/24",
                "192.168.2.2/24",
            ),
        ] {
            self.links
                .push(DelayLink::new(nat_ns, "wan", &p, bridge_port, LINK_DELAY)?);
            ipn(&p, &["link", "set", bridge_port, "master", "br0"])?;
            ipn(&p, &["link", "set", bridge_port, "up"])?;
            ipn(nat_ns, &["addr", "add", wan_ip, "dev", "wan"])?;
            ipn(nat_ns, &["link", "set", "wan", "up"])?;
            if nat_ns == &na {
                // NAT A's LAN is a bridge with two hosts on it (A and A2).
                ipn(nat_ns, &["link", "add", "lan", "type", "bridge"])?;
                for (port, ns) in [("lan-a", &ha), ("lan-a2", &self.ns_host_a2)] {
                    ipn(
                        nat_ns,
                        &[
                            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
                            ns,
                        ],
                    )?;
                    ipn(nat_ns, &["link", "set", port, "master", "lan"])?;
                    ipn(nat_ns, &["link", "set", port, "up"])?;
                }
                // Frames between the two hosts are bridged, never routed or filtered (where
                // br_netfilter is loaded it would hand them to the forward chain).
                let _ = run(
                    in_ns(nat_ns, "sh").args([
                        "-c",
                        "f=/proc/sys/net/bridge/bridge-nf-call-iptables; [ ! -e $f ] || echo 0 > $f",
                    ]),
                    None,
                );
                let a2 = self.ns_host_a2.clone();
                ipn(&a2, &["addr", "add", "10.1.0.3/24", "dev", "eth0"])?;
                ipn(&a2, &["link", "set", "eth0", "up"])?;
                ipn(&a2, &["route", "add", "default", "via", "10.1.0.1"])?;
            } else {
                ipn(
                    nat_ns,
                    &[
                        "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns",
                        host_ns,
                    ],
                )?;
            }
            ipn(nat_ns, &["addr", "add", lan_router, "dev", "lan"])?;
            ipn(nat_ns, &["link", "set", "lan", "up"])?;
            ipn(host_ns, &["addr", "add", lan_host, "dev", "eth0"])?;
            ipn(host_ns, &["link", "set", "eth0", "up"])?;
            let gw = lan_router.split('/').next().expect("cidr");
            ipn(host_ns, &["route", "add", "default", "via", gw])?;
            run(
                in_ns(nat_ns, "sh").args(["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]),
                None,
            )?;
        }
        self.set_nat(Site::A, Nat::Consistent)?;
        self.set_nat(Site::B, Nat::Consistent)?;
        Ok(())
    }

    fn nat_ns(&self, site: Site) -> &str {
        match site {
            Site::A | Site::A2 => &self.ns_nat_a,
            Site::B => &self.ns_nat_b,
            Site::Public => panic!("the public site has no NAT"),
        }
    }

    /// The namespace processes for `site` run in.
    pub fn namespace(&self, site: Site) -> &str {
        match site {
            Site::Public => &self.ns_pub,
            Site::A => &self.ns_host_a,
            Site::A2 => &self.ns_host_a2,
            Site::B => &self.ns_host_b,
        }
    }

    /// The NAT in front of `site` (A or B).
    pub fn nat(&self, site: Site) -> Nat {
        match site {
            Site::A | Site::A2 => self.nat[0],
            Site::B => self.nat[1],
            Site::Public => panic!("the public site has no NAT"),
        }
    }

    /// Replaces the nftables rules of the NAT in front of `site`. Existing conntrack entries
    /// keep their mappings, so each run should use fresh ports ([`Topology::fresh_port`]).
    pub fn set_nat(&mut self, site: Site, nat: Nat) -> Result<(), String> {
        let rules = format!(
            "flush ruleset\n\
             table ip hdht_nat {{\n\
               chain postrouting {{ type nat hook postrouting priority srcnat; policy accept; oifname \"wan\" {}; }}\n\
               chain forward {{ type filter hook forward priority filter; policy drop; ct state established,related accept; iifname \"lan\" oifname \"wan\" accept; }}\n\
               chain input {{ type filter hook input priority filter; policy drop; ct state established,related accept; iifname {{ \"lo\", \"lan\" }} accept; }}\n\
             }}\n",
            nat.masquerade()
        );
        let ns = self.nat_ns(site).to_string();
        run(in_ns(&ns, "nft").args(["-f", "-"]), Some(&rules))?;
        match site {
            Site::A | Site::A2 => self.nat[0] = nat,
            Site::B => self.nat[1] = nat,
            Site::Public => unreachable!(),
        }
        Ok(())
    }

    /// A port no earlier run of this topology used (conntrack entries outlive processes).
    pub fn fresh_port(&mut self) -> u16 {
        self.next_port += 7; // hyperdht tries port..port+5
        self.next_port
    }

    fn start_public_dht(&mut self) -> Result<(), String> {
        let ips: Vec<String> = (0..PUBLIC_NODES).map(public_ip).collect();
        let script = netns_dir().join("public.js");
        let mut cmd = in_ns(&self.ns_pub, &crate::node_binary());
        cmd.arg(script)
            .args(["--ips", &ips.join(","), "--port", &PUBLIC_PORT.to_string()]);
        let mut p = Proc::spawn("public-dht".into(), cmd)?;
        let ready = p.wait_event(&["ready", "error"], SETUP_TIMEOUT)?;
        if ready["event"] != "ready" {
            return Err(format!("public.js: {ready}\n{}", p.transcript()));
        }
        self.bootstrap = ready["bootstrap"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        self.public_nodes = ready["nodes"].clone();
        self.public_dht = Some(p);
        Ok(())
    }

    /// `--bootstrap` value: the public bootstrapper.
    pub fn bootstrap_arg(&self) -> String {
        self.bootstrap.join(",")
    }

    /// Starts `program args…` in `site`'s namespace.
    pub fn spawn(
        &self,
        site: Site,
        label: &str,
        program: &Path,
        args: &[String],
    ) -> Result<Proc, String> {
        let mut cmd = in_ns(self.namespace(site), &program.to_string_lossy());
        cmd.args(args);
        Proc::spawn(label.to_string(), cmd)
    }

    /// Starts a Node script from tests/netns in `site`'s namespace.
    pub fn spawn_node(
        &self,
        site: Site,
        label: &str,
        script: &str,
        args: &[String],
    ) -> Result<Proc, String> {
        let mut all = vec![netns_dir().join(script).to_string_lossy().into_owned()];
        all.extend_from_slice(args);
        self.spawn(site, label, Path::new(&crate::node_binary()), &all)
    }

    /// Minimum round-trip time (dht-rpc PINGs, ms) from `site` to the public DHT nodes: a
    /// self-check of the delay pumps (expect ~2 × [`LINK_DELAY`] from A or B).
    pub fn measure_rtt(&mut self, site: Site) -> Result<f64, String> {
        let to: Vec<String> = (1..PUBLIC_NODES.min(6))
            .map(|i| format!("{}:{PUBLIC_PORT}", public_ip(i)))
            .collect();
        let port = self.fresh_port().to_string();
        let mut p = self.spawn_node(
            site,
            "rtt",
            "rtt.js",
            &[
                "--to".into(),
                to.join(","),
                "--count".into(),
                "10".into(),
                "--port".into(),
                port,
            ],
        )?;
        let v = p.wait_event(&["rtt", "error"], Duration::from_secs(20))?;
        v["minMs"]
            .as_f64()
            .ok_or_else(|| format!("rtt.js: {v}\n{}", p.transcript()))
    }

    /// A human-readable description of the addresses.
    pub fn describe(&self) -> String {
        format!(
            "namespaces {p}-{{pub,nat-a,nat-b,host-a,host-b}}; public 20.0.0.0/24 (bootstrap {b}, {n} DHT nodes \
             on 20.0.0.10..{last}, no-NAT host {PUBLIC_HOST}); NAT A {a} wan 20.0.0.101 / lan 10.1.0.0/24 (host 10.1.0.2); \
             NAT B {bn} wan 20.0.0.102 / lan 192.168.2.0/24 (host 192.168.2.2); {d:?} each way on each NAT's public link",
            p = self.prefix,
            b = self.bootstrap_arg(),
            n = PUBLIC_NODES,
            last = public_ip(PUBLIC_NODES - 1),
            a = self.nat[0].name(),
            bn = self.nat[1].name(),
            d = LINK_DELAY,
        )
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        drop(self.public_dht.take());
        let mut problems = Vec::new();
        // Processes first (a namespace lives while a process is in it), then the taps.
        for ns in &self.created {
            let pids = ip(&["netns", "pids", ns]).unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill")
                    .args(["-9", pid])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for mut l in self.links.drain(..) {
            l.stop();
        }
        for ns in self.created.drain(..).rev() {
            problems.extend(destroy_namespace(&ns));
        }
        if !problems.is_empty() {
            eprintln!(
                "hdht-tests: kernel-NAT teardown problems:\n{}",
                problems.join("\n")
            );
        }
    }
}

/// `tests/netns` (the Node scripts).
pub fn netns_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netns")
}

// ---------------------------------------------------------------------------------------------
// The hdht binary

/// The `hdht` CLI: `$HDHT_BIN`, else `cargo build -p hdht-cli` in this test binary's profile
/// and target directory (a no-op when it is up to date).
pub fn hdht_binary() -> Result<PathBuf, String> {
    static BIN: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut cached = BIN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cached.as_ref() {
        return Ok(p.clone());
    }
    if let Ok(p) = std::env::var("HDHT_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(format!("HDHT_BIN={} is not a file", p.display()));
        }
        *cached = Some(p.clone());
        return Ok(p);
    }
    // …/target/<profile>/deps/kernel_nat-<hash>
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test binary path {}", exe.display()))?;
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let profile = profile_dir
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("debug");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "hdht-cli",
        "--bin",
        "hdht",
        "--target-dir",
    ])
    .arg(target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build -p hdht-cli` failed ({status}); set HDHT_BIN to a built hdht"
        ));
    }
    let bin = profile_dir.join("hdht");
    if !bin.is_file() {
        return Err(format!("{} missing after cargo build", bin.display()));
    }
    *cached = Some(bin.clone());
    Ok(bin)
}

// ---------------------------------------------------------------------------------------------
// Servers and clients

/// Random 32 bytes as hex (a fresh key pair seed per run: no stale announcements).
pub fn random_seed() -> String {
    let mut b = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom");
    hex::encode(b)
}

/// A server that echoes every connection, announced under its public key.
pub struct Server {
    pub imp: Impl,
    pub site: Site,
    pub public_key: String,
    /// The `listening` line.
    pub listening: Value,
    /// Time from spawn to `listening` (process start, bootstrap and announce).
    pub ready_time: Duration,
    pub proc: Proc,
}

/// How long a server gets to bootstrap and announce, and a client to connect and echo.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(30);
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

/// Options of a server ([`start_server_with`]) or a streaming client ([`run_stream_client`]).
#[derive(Clone, Debug, Default)]
pub struct PeerSetup {
    /// A blind relay's public key (hex) to name in `relayThrough`.
    pub relay_through: Option<String>,
    /// hyperdht's `deferRandomPunch`: no punch involving a random NAT until
    /// `random_punch_interval_ms` after the node started.
    pub defer_random_punch: bool,
    /// hyperdht's `randomPunchInterval` (default 20 s).
    pub random_punch_interval_ms: Option<u64>,
    /// A client: after the first echo, end that connection and connect again on the same
    /// node with the same options, sending this probe ([`Outcome::second_connect_ms`]).
    pub second_probe: Option<String>,
}

impl PeerSetup {
    /// The same options as command-line flags (the `hdht` CLI and the Node scripts agree).
    fn flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(k) = &self.relay_through {
            out.extend(["--relay-through".to_string(), k.clone()]);
        }
        if self.defer_random_punch {
            out.push("--defer-random-punch".into());
        }
        if let Some(ms) = self.random_punch_interval_ms {
            out.extend(["--random-punch-interval".to_string(), ms.to_string()]);
        }
        if let Some(p) = &self.second_probe {
            out.extend(["--second-probe".to_string(), p.clone()]);
        }
        out
    }
}

/// `-v` for `hdht` when `HDHT_NETNS_VERBOSE` is set (its debug log in failure transcripts).
fn verbose() -> Option<String> {
    std::env::var_os("HDHT_NETNS_VERBOSE").map(|_| "-v".to_string())
}

/// Starts an echo server of `imp` at `site`.
pub fn start_server(topo: &mut Topology, imp: Impl, site: Site) -> Result<Server, String> {
    start_server_with(topo, imp, site, &PeerSetup::default())
}

/// Starts an echo server of `imp` at `site` with `setup`.
pub fn start_server_with(
    topo: &mut Topology,
    imp: Impl,
    site: Site,
    setup: &PeerSetup,
) -> Result<Server, String> {
    let seed = random_seed();
    let port = topo.fresh_port().to_string();
    let boot = topo.bootstrap_arg();
    let label = format!("{}-server", imp.name());
    let mut proc = match imp {
        Impl::Node => {
            let mut args = vec![
                "--bootstrap".into(),
                boot,
                "--seed".into(),
                seed,
                "--port".into(),
                port,
            ];
            if site == Site::Public {
                args.extend(["--host".into(), PUBLIC_HOST.into()]);
            }
            args.extend(setup.flags());
            topo.spawn_node(site, &label, "server.js", &args)?
        }
        Impl::Rust => {
            let bin = hdht_binary()?;
            let mut args: Vec<String> = vec![
                "listen".into(),
                "--json".into(),
                "--bootstrap".into(),
                boot,
                "--seed".into(),
                seed,
                "--echo".into(),
                "--port".into(),
                port,
            ];
            if site == Site::Public {
                args.extend(["--host".into(), PUBLIC_HOST.into()]);
            }
            args.extend(setup.flags());
            args.extend(verbose());
            topo.spawn(site, &label, &bin, &args)?
        }
    };
    let listening = proc.wait_event(&["listening", "error"], SERVER_TIMEOUT)?;
    if listening["event"] != "listening" {
        return Err(format!(
            "{label} failed: {listening}\n{}",
            proc.transcript()
        ));
    }
    let public_key = listening["publicKey"]
        .as_str()
        .ok_or_else(|| format!("{label}: listening line without publicKey: {listening}"))?
        .to_string();
    Ok(Server {
        imp,
        site,
        public_key,
        listening,
        ready_time: proc.elapsed(),
        proc,
    })
}

/// What a client run gave.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub client: Impl,
    pub server: Impl,
    pub server_nat: Option<Nat>,
    pub client_nat: Nat,
    pub connected: bool,
    /// As the client reports it: from `connect()` (after its DHT bootstrapped) to open.
    pub connect_ms: Option<f64>,
    /// From `connect()` (after the bootstrap) to the first echoed byte (Node: the whole
    /// 30-byte echo).
    pub first_byte_ms: Option<f64>,
    /// With [`PeerSetup::second_probe`]: the second connect's `connect()` → open.
    pub second_connect_ms: Option<f64>,
    /// With [`PeerSetup::second_probe`]: the second connect's `connect()` → first echoed byte
    /// (Node: the whole probe's echo).
    pub second_first_byte_ms: Option<f64>,
    /// Client process start to exit.
    pub wall: Duration,
    /// Server process start to `listening` (bootstrapped and announced).
    pub server_ready: Option<Duration>,
    /// Error code or message, when not connected.
    pub error: Option<String>,
    /// Node client: every hyperdht error created on the way (reveals HOLEPUNCH_DOUBLE_RANDOMIZED_NATS
    /// behind a surfaced HOLEPUNCH_ABORTED).
    pub reasons: Vec<String>,
    /// Client and server transcripts, for failures.
    pub detail: String,
}

impl Outcome {
    pub fn summary(&self) -> String {
        let nats = format!(
            "server {}{} × client {}",
            self.server.name(),
            self.server_nat
                .map(|n| format!(" ({})", n.name()))
                .unwrap_or_else(|| " (no NAT)".into()),
            format_args!("{} ({})", self.client.name(), self.client_nat.name()),
        );
        let server = self
            .server_ready
            .map(|d| format!("; server listening after {:.2} s", d.as_secs_f64()))
            .unwrap_or_default();
        if self.connected {
            format!(
                "{nats}: connected in {:.0} ms (client wall {:.2} s{server})",
                self.connect_ms.unwrap_or(f64::NAN),
                self.wall.as_secs_f64()
            )
        } else {
            format!(
                "{nats}: FAILED {} after {:.2} s{server}{}",
                self.error.as_deref().unwrap_or("?"),
                self.wall.as_secs_f64(),
                if self.reasons.is_empty() {
                    String::new()
                } else {
                    format!(" (errors created: {})", self.reasons.join(", "))
                }
            )
        }
    }

    /// Did the run fail because both NATs are randomized (the reference's verdict)?
    pub fn double_randomized(&self) -> bool {
        !self.connected
            && (self
                .error
                .as_deref()
                .is_some_and(|e| e.contains("DOUBLE_RANDOMIZED"))
                || self
                    .reasons
                    .iter()
                    .any(|r| r == "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS"))
    }
}

/// The error code in a message (`…: HOLEPUNCH_DOUBLE_RANDOMIZED_NATS: Both…` → the code), or the
/// whole message.
fn error_code(msg: &str) -> String {
    msg.split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .find(|t| t.len() >= 6 && t.contains('_') && !t.starts_with('_'))
        .map(String::from)
        .unwrap_or_else(|| msg.to_string())
}

const MESSAGE: &[u8] = b"hello through the kernel NATs\n";

/// Runs one client of `imp` at `site` against `server`: connect, send a line, expect the echo.
pub fn run_client(topo: &mut Topology, imp: Impl, site: Site, server: &mut Server) -> Outcome {
    run_client_with(topo, imp, site, server, &PeerSetup::default())
}

/// [`run_client`] with `setup` (`relay_through`: the client names that relay on its connect).
pub fn run_client_with(
    topo: &mut Topology,
    imp: Impl,
    site: Site,
    server: &mut Server,
    setup: &PeerSetup,
) -> Outcome {
    let port = topo.fresh_port().to_string();
    let boot = topo.bootstrap_arg();
    let label = format!("{}-client", imp.name());
    let mut out = Outcome {
        client: imp,
        server: server.imp,
        server_nat: (server.site != Site::Public).then(|| topo.nat(server.site)),
        client_nat: topo.nat(site),
        connected: false,
        connect_ms: None,
        first_byte_ms: None,
        second_connect_ms: None,
        second_first_byte_ms: None,
        wall: Duration::ZERO,
        server_ready: Some(server.ready_time),
        error: None,
        reasons: Vec::new(),
        detail: String::new(),
    };
    let started = Instant::now();
    let result: Result<(), String> = (|| match imp {
        Impl::Node => {
            let mut args = vec![
                "--bootstrap".into(),
                boot,
                "--public-key".into(),
                server.public_key.clone(),
                "--port".into(),
                port,
                "--timeout".into(),
                (CLIENT_TIMEOUT.as_millis() as u64 - 5000).to_string(),
            ];
            args.extend(setup.flags());
            let mut p = topo.spawn_node(site, &label, "client.js", &args)?;
            let res = p.wait_event(&["connected", "error"], CLIENT_TIMEOUT);
            let _ = p.wait_exit(Duration::from_secs(5));
            out.wall = started.elapsed();
            out.detail = p.transcript();
            let v = res?;
            out.reasons = v["errorsCreated"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if v["event"] == "connected" {
                out.connected = true;
                out.connect_ms = v["connectMs"].as_f64();
                out.first_byte_ms = v["echoMs"].as_f64();
                out.second_connect_ms = v["secondConnectMs"].as_f64();
                out.second_first_byte_ms = v["secondEchoMs"].as_f64();
            } else {
                out.error = Some(
                    v["code"]
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v["message"].to_string()),
                );
            }
            Ok(())
        }
        Impl::Rust => {
            let bin = hdht_binary()?;
            let mut args: Vec<String> = vec![
                "connect".into(),
                server.public_key.clone(),
                "--json".into(),
                "--bootstrap".into(),
                boot,
                "--port".into(),
                port,
            ];
            args.extend(setup.flags());
            args.extend(verbose());
            let mut p = topo.spawn(site, &label, &bin, &args)?;
            p.write_stdin(MESSAGE)?;
            p.close_stdin();
            let status = p.wait_exit(CLIENT_TIMEOUT);
            out.wall = started.elapsed();
            out.detail = p.transcript();
            let status = status?;
            let connected = p.wait_event(&["connected"], Duration::ZERO).ok();
            out.connect_ms = connected
                .as_ref()
                .and_then(|v| v["connectMs"].as_f64().or_else(|| v["ms"].as_f64()));
            out.first_byte_ms = p
                .wait_event(&["firstByte"], Duration::ZERO)
                .ok()
                .and_then(|v| v["ms"].as_f64());
            if let Ok(v) = p.wait_event(&["second"], Duration::ZERO) {
                if v["echoed"] == true {
                    out.second_connect_ms = v["connectMs"].as_f64();
                    out.second_first_byte_ms = v["firstByteMs"].as_f64();
                }
            }
            let echoed = p.text(Stream::Stdout).as_bytes() == MESSAGE;
            if status.success() && echoed {
                out.connected = true;
            } else {
                let end = p.wait_event(&["end"], Duration::ZERO).ok();
                let err = end
                    .as_ref()
                    .and_then(|v| v["error"].as_str().map(String::from))
                    .or_else(|| {
                        p.text(Stream::Stderr)
                            .lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .map(String::from)
                    })
                    .unwrap_or_else(|| format!("{status}"));
                out.error = Some(if status.success() {
                    format!("bad echo: {err}")
                } else {
                    error_code(&err)
                });
            }
            Ok(())
        }
    })();
    if let Err(e) = result {
        out.wall = started.elapsed();
        out.error = Some(e.lines().next().unwrap_or("").to_string());
        out.detail = e;
    }
    // The server's side of the story.
    while let Ok(l) = server.proc.lines_rx.try_recv() {
        server.proc.lines.push(l);
    }
    out.detail.push_str(&server.proc.transcript());
    out
}

/// One server behind NAT A and one client behind NAT B with the given NATs: fresh server
/// process, fresh key, fresh ports.
pub fn run_pair(
    topo: &mut Topology,
    server: Impl,
    client: Impl,
    server_nat: Nat,
    client_nat: Nat,
) -> Outcome {
    if let Err(e) = topo
        .set_nat(Site::A, server_nat)
        .and_then(|_| topo.set_nat(Site::B, client_nat))
    {
        panic!("kernel-NAT harness: setting the NATs failed: {e}");
    }
    match start_server(topo, server, Site::A) {
        Ok(mut s) => run_client(topo, client, Site::B, &mut s),
        Err(e) => Outcome {
            client,
            server,
            server_nat: Some(server_nat),
            client_nat,
            connected: false,
            connect_ms: None,
            first_byte_ms: None,
            second_connect_ms: None,
            second_first_byte_ms: None,
            wall: Duration::ZERO,
            server_ready: None,
            error: Some(format!(
                "server did not start: {}",
                e.lines().next().unwrap_or("")
            )),
            reasons: Vec::new(),
            detail: e,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Blind relays and streams whose path changes

/// A blind relay on the public side ([`start_relay`]).
pub struct Relay {
    pub imp: Impl,
    /// Its key (hex), for `relayThrough`.
    pub public_key: String,
    /// `host:port` it relays from.
    pub address: String,
    pub proc: Proc,
}

/// Starts a blind relay of `imp` on the public side (no NAT): `hdht relay` or blind-relay's
/// server on a hyperdht node (`relay.js`).
pub fn start_relay(topo: &mut Topology, imp: Impl) -> Result<Relay, String> {
    let seed = random_seed();
    let port = topo.fresh_port();
    let mut args: Vec<String> = vec![
        "--bootstrap".into(),
        topo.bootstrap_arg(),
        "--seed".into(),
        seed,
        "--port".into(),
        port.to_string(),
        "--host".into(),
        PUBLIC_HOST.into(),
    ];
    let label = format!("{}-relay", imp.name());
    let mut proc = match imp {
        Impl::Node => topo.spawn_node(Site::Public, &label, "relay.js", &args)?,
        Impl::Rust => {
            let mut all = vec!["relay".to_string(), "--json".into()];
            all.append(&mut args);
            topo.spawn(Site::Public, &label, &hdht_binary()?, &all)?
        }
    };
    let listening = proc.wait_event(&["listening", "error"], SERVER_TIMEOUT)?;
    let public_key = listening["publicKey"]
        .as_str()
        .ok_or_else(|| format!("{label} failed: {listening}\n{}", proc.transcript()))?
        .to_string();
    Ok(Relay {
        imp,
        public_key,
        address: format!("{PUBLIC_HOST}:{port}"),
        proc,
    })
}

/// What a streaming client run ([`run_stream_client`]) gave.
#[derive(Clone, Debug, Default)]
pub struct StreamOutcome {
    pub connected: bool,
    /// From `connect()` to open, as the client reports it.
    pub connect_ms: Option<f64>,
    /// The client's stream at open went through the relay.
    pub relayed_at_open: bool,
    /// When (ms after open for Rust, after `connect()` for Node) the client's stream moved to
    /// a direct path.
    pub upgraded_ms: Option<f64>,
    /// The server saw its stream move off the relay (`relayPath: upgraded` from `hdht`, a new
    /// remote address from Node).
    pub server_upgraded: bool,
    /// Bytes sent, and whether the echo's SHA-256 equals theirs.
    pub bytes: usize,
    pub echo_intact: bool,
    pub error: Option<String>,
    pub detail: String,
}

impl StreamOutcome {
    pub fn summary(&self) -> String {
        format!(
            "connected {} in {:?} ms, relayed at open {}, client upgraded at {:?} ms, server upgraded {}, {} bytes echo intact {}{}",
            self.connected,
            self.connect_ms,
            self.relayed_at_open,
            self.upgraded_ms,
            self.server_upgraded,
            self.bytes,
            self.echo_intact,
            self.error
                .as_ref()
                .map(|e| format!(", error {e}"))
                .unwrap_or_default()
        )
    }
}

/// One 1000-byte line of the stream (printable, so the harness reads the echo as lines).
fn stream_line(i: usize) -> String {
    let h = hex::encode(hdht_core::crypto::hash(i.to_string().as_bytes()));
    let mut l = h.repeat(16);
    l.truncate(999);
    l.push('\n');
    l
}

/// How long a streaming client streams waiting for the upgrade before it ends anyway.
pub const UPGRADE_WAIT: Duration = Duration::from_secs(35);

/// Runs a client of `imp` at `site` that streams to `server` (an echo) through `relay`: a line
/// every 50 ms from open until the stream moved to a direct path, then 40 more, then the end;
/// the echo must be byte-identical (SHA-256).
pub fn run_stream_client(
    topo: &mut Topology,
    imp: Impl,
    site: Site,
    server: &mut Server,
    relay: &Relay,
    setup: &PeerSetup,
) -> StreamOutcome {
    let port = topo.fresh_port().to_string();
    let boot = topo.bootstrap_arg();
    let label = format!("{}-stream-client", imp.name());
    let mut out = StreamOutcome::default();
    let timeout = UPGRADE_WAIT + Duration::from_secs(30);
    let result: Result<(), String> = (|| match imp {
        Impl::Node => {
            let mut args = vec![
                "--bootstrap".into(),
                boot,
                "--public-key".into(),
                server.public_key.clone(),
                "--port".into(),
                port,
                "--timeout".into(),
                (timeout.as_millis() as u64 - 5000).to_string(),
                "--upgrade-wait".into(),
                UPGRADE_WAIT.as_millis().to_string(),
            ];
            args.extend(setup.flags());
            let mut p = topo.spawn_node(site, &label, "stream-client.js", &args)?;
            let connected = p.wait_event(&["connected", "error"], CLIENT_TIMEOUT);
            let done = p.wait_event(&["done", "error"], timeout);
            let _ = p.wait_exit(Duration::from_secs(5));
            out.detail = p.transcript();
            let c = connected?;
            if c["event"] != "connected" {
                return Err(format!("{c}"));
            }
            out.connected = true;
            out.connect_ms = c["connectMs"].as_f64();
            out.relayed_at_open = c["remoteAddress"].as_str() == Some(relay.address.as_str());
            out.upgraded_ms = p
                .wait_event(&["path"], Duration::ZERO)
                .ok()
                .filter(|v| v["remoteAddress"].as_str() != Some(relay.address.as_str()))
                .and_then(|v| v["ms"].as_f64());
            let d = done?;
            if d["event"] != "done" {
                return Err(format!("{d}"));
            }
            out.bytes = d["bytes"].as_u64().unwrap_or(0) as usize;
            out.echo_intact = d["bytes"] == d["echoed"] && d["sentSha256"] == d["echoSha256"];
            Ok(())
        }
        Impl::Rust => {
            let mut args: Vec<String> = vec![
                "connect".into(),
                server.public_key.clone(),
                "--json".into(),
                "--bootstrap".into(),
                boot,
                "--port".into(),
                port,
            ];
            args.extend(setup.flags());
            args.extend(verbose());
            let mut p = topo.spawn(site, &label, &hdht_binary()?, &args)?;
            let c = p.wait_event(&["connected", "end"], CLIENT_TIMEOUT);
            let c = match c {
                Ok(c) if c["event"] == "connected" => c,
                other => {
                    let _ = p.wait_exit(Duration::from_secs(5));
                    out.detail = p.transcript();
                    return Err(format!("no connection: {other:?}"));
                }
            };
            out.connected = true;
            out.connect_ms = c["connectMs"].as_f64().or_else(|| c["ms"].as_f64());
            out.relayed_at_open = c["relayPath"] == "relayed";
            let mut sent = String::new();
            let started = Instant::now();
            let mut extra: Option<usize> = None;
            for i in 0.. {
                let l = stream_line(i);
                p.write_stdin(l.as_bytes())?;
                sent.push_str(&l);
                std::thread::sleep(Duration::from_millis(50));
                while let Ok(l) = p.lines_rx.try_recv() {
                    p.lines.push(l);
                }
                if extra.is_none() {
                    if let Some(ms) = p.lines.iter().find_map(|(_, l)| {
                        let v: Value = serde_json::from_str(l).ok()?;
                        (v["event"] == "relayPath" && v["path"] == "upgraded")
                            .then(|| v["ms"].as_f64())
                            .flatten()
                    }) {
                        out.upgraded_ms = Some(ms);
                        extra = Some(40);
                    }
                }
                match &mut extra {
                    Some(0) => break,
                    Some(n) => *n -= 1,
                    None if started.elapsed() > UPGRADE_WAIT => break,
                    None => {}
                }
            }
            p.close_stdin();
            let status = p.wait_exit(Duration::from_secs(30));
            out.detail = p.transcript();
            let status = status?;
            out.bytes = sent.len();
            out.echo_intact = p.text(Stream::Stdout) == sent;
            if !status.success() {
                return Err(format!("the client exited with {status}"));
            }
            Ok(())
        }
    })();
    if let Err(e) = result {
        out.error = Some(e.lines().next().unwrap_or("").to_string());
        out.detail.push_str(&e);
    }
    // The server's side: did it see the move?
    let _ = server
        .proc
        .wait_event(&["end", "error"], Duration::from_secs(5));
    while let Ok(l) = server.proc.lines_rx.try_recv() {
        server.proc.lines.push(l);
    }
    out.server_upgraded = server.proc.lines.iter().any(|(_, l)| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| {
            (v["event"] == "relayPath" && v["path"] == "upgraded")
                || (v["event"] == "remoteChanged"
                    && v["remoteAddress"].as_str() != Some(relay.address.as_str()))
        })
    });
    out.detail.push_str(&server.proc.transcript());
    out
}

/// CPU seconds (user + system) a process used so far, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ
}

/// Resident memory of a process in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Spawns `hdht connect` toward `server` at `site` (extra args appended), stdin left open.
pub fn spawn_rust_client(
    topo: &mut Topology,
    site: Site,
    server: &Server,
    label: &str,
) -> Result<Proc, String> {
    let port = topo.fresh_port().to_string();
    let args: Vec<String> = vec![
        "connect".into(),
        server.public_key.clone(),
        "--json".into(),
        "--bootstrap".into(),
        topo.bootstrap_arg(),
        "--port".into(),
        port,
    ];
    topo.spawn(site, label, &hdht_binary()?, &args)
}

/// Starts `hdht listen` (one connection piped to stdout, no echo) at `site` naming `relay`.
pub fn start_rust_sink(topo: &mut Topology, site: Site, relay: &Relay) -> Result<Server, String> {
    let seed = random_seed();
    let port = topo.fresh_port().to_string();
    let args: Vec<String> = vec![
        "listen".into(),
        "--json".into(),
        "--bootstrap".into(),
        topo.bootstrap_arg(),
        "--seed".into(),
        seed,
        "--port".into(),
        port,
        "--relay-through".into(),
        relay.public_key.clone(),
    ];
    let mut proc = topo.spawn(site, "rust-sink", &hdht_binary()?, &args)?;
    let listening = proc.wait_event(&["listening", "error"], SERVER_TIMEOUT)?;
    let public_key = listening["publicKey"]
        .as_str()
        .ok_or_else(|| format!("sink failed: {listening}\n{}", proc.transcript()))?
        .to_string();
    Ok(Server {
        imp: Impl::Rust,
        site,
        public_key,
        listening,
        ready_time: proc.elapsed(),
        proc,
    })
}

/// `bytes` of printable payload in 1000-byte lines (the harness reads outputs as lines).
pub fn hex_payload(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes);
    let mut i = 0usize;
    while out.len() < bytes {
        out.extend_from_slice(stream_line(i).as_bytes());
        i += 1;
    }
    out.truncate(bytes);
    if let Some(l) = out.last_mut() {
        *l = b'\n';
    }
    out
}
