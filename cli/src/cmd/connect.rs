//! `hdht listen [--seed HEX] [--echo]` and `hdht connect PUBLIC_KEY [--seed HEX]`: end-to-end
//! encrypted connections by public key, as byte pipes.
//!
//! stdout is the data pipe: it carries the peer's bytes and nothing else. Status lines (JSON
//! with `--json`, text otherwise) go to stderr. Both directions run at once with back-pressure:
//! stdin is read on a thread of its own into a small bounded queue (a blocking read of a
//! terminal can never be cancelled, so it must not hold up the runtime's shutdown), and the
//! peer's bytes are written by another thread, each chunk flushed, while the next is read.
//!
//! A side ends its direction with a half-close (at the end of stdin, or for `--echo` when the
//! peer ended). A command is done when both directions have ended and the peer has
//! acknowledged everything we sent: only then is the node destroyed, so a file piped through
//! loses no byte.
//!
//! Anything else is a failure, never a clean end: the peer aborted (it was interrupted, or
//! dropped the connection without ending it: a UDX DESTROY), the peer stopped answering (the
//! core's dead-peer detection: keep-alives and an idle timeout, 15 s), or we were interrupted
//! (SIGINT / SIGTERM: we abort the connection, so the peer learns at once). Then the command
//! exits 1 with the reason on stderr and in the `end` line — except `listen --echo`, a server,
//! which exits 0 at a signal.
//!
//! A background job of an interactive shell (`hdht listen > file &`) must not read its
//! terminal (the read would stop it with SIGTTIN): when stdin is the terminal and we are not
//! in its foreground process group, we send nothing and end our side at once, as with
//! `< /dev/null`.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdht_tokio::{
    Closed, ConnectOptions, Connection, Dht, DhtOptions, KeyPair, Persistence, RelayPath, Server,
    ServerOptions,
};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::common::{bootstrapped, ms_since, random_seed, until_signal, Error, Result};
use crate::args::{ConnectArgs, GlobalOpts, ListenArgs};
use crate::output::{short_hex, Addr, Event, Output};
use crate::signal::Shutdown;
use crate::tty;

/// Bytes per read from stdin or from a connection.
const CHUNK: usize = 64 * 1024;
/// Chunks queued between the runtime and the stdin / stdout threads.
const QUEUE: usize = 8;
/// How long the unannounce of a stopping `listen` may take (and its node's destroy).
pub(super) const DESTROY_TIMEOUT: Duration = Duration::from_secs(5);

/// The status lines of `listen` and `connect` (on stderr).
#[derive(Debug, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum PipeEvent {
    /// `listen`: the key is announced; connect to `publicKey`.
    Listening { public_key: String },
    /// `listen`: a peer connected. `relayPath`: as in `relayPath` (null: no relay tried).
    Connection {
        remote_public_key: String,
        handshake_hash: String,
        remote_address: Option<Addr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        relay_path: Option<&'static str>,
    },
    /// `connect`: the connection is open, `ms` after the connect started (the node's
    /// bootstrap included; `connectMs`: from the `connect()` call on, after the bootstrap).
    Connected {
        remote_public_key: String,
        public_key: String,
        handshake_hash: String,
        ms: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        connect_ms: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        relay_path: Option<&'static str>,
    },
    /// A connection that tried a blind relay changed path: `pairing`, `relayed` (its bytes
    /// cross the relay), `upgraded` (the same stream moved to a direct path), `direct` (a
    /// direct path won before the relay paired) or `failed`; `ms` since it opened.
    RelayPath {
        remote_public_key: String,
        path: &'static str,
        ms: f64,
    },
    /// A connection is over: both directions ended (`error` null) or it broke. `ms` since it
    /// opened.
    End {
        remote_public_key: String,
        bytes_received: u64,
        bytes_sent: u64,
        ms: f64,
        error: Option<String>,
    },
    /// `connect`, at the end: the first byte from the peer came `ms` after the `connect()` call
    /// (after the node's bootstrap) — with an echoing peer, connect-to-first-echo.
    FirstByte { ms: f64 },
    /// `connect --second-probe`: the second connect to the same server opened `connect_ms`
    /// after its `connect()` call and the probe's first echoed byte came `first_byte_ms` after
    /// it; `echoed`: the whole probe came back.
    Second {
        connect_ms: f64,
        first_byte_ms: Option<f64>,
        echoed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        relay_path: Option<&'static str>,
    },
}

/// The node `listen` and `connect` work through: adaptive (as the reference's default), on
/// `port` (0: any free port), bound to `--host`. The signal handlers are installed first.
pub(super) async fn start_node(global: &GlobalOpts, port: u16) -> Result<(Dht, Shutdown)> {
    let shutdown = Shutdown::install();
    let opts = DhtOptions {
        bootstrap: global.bootstrap_list(),
        host: global.bind_host(),
        port,
        persistence: Persistence::Adaptive,
        random_punch_interval: global.random_punch_interval.map(Duration::from_millis),
        defer_random_punch: global.defer_random_punch,
        ..DhtOptions::isolated()
    };
    let dht = Dht::new(opts)
        .await
        .map_err(|e| Error::from_err("cannot start a node", &e))?;
    Ok((dht, shutdown))
}

// ----- listen -----

pub async fn run_listen(args: ListenArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let out = out.on_stderr();
    let seed = match args.seed {
        Some(seed) => seed,
        None => random_seed()?,
    };
    let kp = KeyPair::from_seed(&seed);
    let (dht, mut shutdown) = start_node(global, args.port).await?;
    let stdin = if args.echo {
        Stdin::Unused
    } else {
        stdin_source(out)
    };
    let mut server = dht.create_server_with(
        ServerOptions {
            relay_through: crate::args::relay_selector(&args.relay_through),
            ..ServerOptions::default()
        },
        None,
    );
    let result = listen(&dht, &mut server, &kp, stdin, out, &mut shutdown).await;
    // Unannounces the key (the record is gone from the DHT when this returns); past the
    // bound the node goes down anyway. The node's I/O task sends what is queued (the last
    // acknowledgements) before it stops.
    let _ = tokio::time::timeout(DESTROY_TIMEOUT, server.close()).await;
    drop(server);
    let _ = tokio::time::timeout(DESTROY_TIMEOUT, dht.destroy()).await;
    result
}

/// Listens, then serves: one piped connection, or (`Stdin::Unused`: `--echo`) echoes until a
/// signal.
async fn listen(
    dht: &Dht,
    server: &mut Server,
    kp: &KeyPair,
    stdin: Stdin,
    out: Output,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let listening = tokio::select! {
        r = async {
            bootstrapped(dht).await?;
            server
                .listen(kp)
                .await
                .map_err(|e| Error::from_err("cannot listen", &e))
        } => Ok(r),
        sig = shutdown.recv() => Err(sig),
    };
    match listening {
        Ok(r) => r?,
        Err(sig) => {
            closing(out, sig);
            return match stdin {
                Stdin::Unused => Ok(()),
                _ => Err(Error::coded(
                    "INTERRUPTED",
                    format!("interrupted by {sig} before a connection arrived"),
                )),
            };
        }
    }
    let public_key = hex::encode(kp.public_key());
    let text = format!("listening on {public_key}");
    out.emit(&PipeEvent::Listening { public_key }, || text);
    match stdin {
        Stdin::Unused => echo_until_signal(server, out, shutdown).await,
        stdin => pipe_one(server, stdin, out, shutdown).await,
    }
}

fn closing(out: Output, sig: &str) {
    out.event(&Event::Close {
        signal: sig.to_string(),
    });
}

/// Prints a `connection` line for an accepted connection.
fn emit_connection(out: Output, conn: &Connection) {
    let remote = conn.remote_public_key();
    let addr = conn.remote_address();
    let ev = PipeEvent::Connection {
        remote_public_key: hex::encode(remote),
        handshake_hash: hex::encode(conn.handshake_hash()),
        remote_address: addr.map(|a| Addr {
            host: a.ip().to_string(),
            port: a.port(),
        }),
        relay_path: conn.relay_path().map(path_name),
    };
    out.emit(&ev, || {
        format!(
            "connection from {}{} (handshake {})",
            hex::encode(remote),
            addr.map_or(String::new(), |a: SocketAddr| format!(" at {a}")),
            short_hex(&conn.handshake_hash())
        )
    });
}

fn path_name(p: RelayPath) -> &'static str {
    match p {
        RelayPath::Pairing => "pairing",
        RelayPath::Relayed => "relayed",
        RelayPath::Upgraded => "upgraded",
        RelayPath::Direct => "direct",
        RelayPath::Failed => "failed",
    }
}

/// How often a relayed connection's path is looked at.
const RELAY_PATH_POLL: Duration = Duration::from_millis(20);

/// Prints a `relayPath` line whenever the path of `conn` (which tried a blind relay) changes,
/// until the task is aborted or the connection is gone.
fn watch_relay_path(out: Output, conn: &Connection) -> Option<tokio::task::JoinHandle<()>> {
    let mut last = conn.relay_path()?;
    let watch = conn.relay_path_watch();
    let remote = conn.remote_public_key();
    let opened = Instant::now();
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(RELAY_PATH_POLL).await;
            let Some(path) = watch.get() else {
                return;
            };
            if path == last {
                continue;
            }
            last = path;
            let ms = ms_since(opened);
            let name = path_name(path);
            let ev = PipeEvent::RelayPath {
                remote_public_key: hex::encode(remote),
                path: name,
                ms,
            };
            out.emit(&ev, || {
                format!(
                    "connection with {}: {name} after {:.3} s",
                    short_hex(&remote),
                    ms / 1e3
                )
            });
        }
    }))
}

/// Prints the `end` line of a connection.
fn emit_end(out: Output, remote: [u8; 32], counts: Counts, opened: Instant, error: Option<String>) {
    let ms = ms_since(opened);
    let text = format!(
        "connection with {} {}: received {} bytes, sent {} bytes in {:.3} s",
        short_hex(&remote),
        match &error {
            Some(e) => format!("failed ({e})"),
            None => "ended".to_string(),
        },
        counts.received,
        counts.sent,
        ms / 1e3
    );
    let ev = PipeEvent::End {
        remote_public_key: hex::encode(remote),
        bytes_received: counts.received,
        bytes_sent: counts.sent,
        ms,
        error,
    };
    out.emit(&ev, || text);
}

/// `--echo`: every connection's bytes go back to it, until a signal.
async fn echo_until_signal(server: &Server, out: Output, shutdown: &mut Shutdown) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            sig = shutdown.recv() => {
                closing(out, sig);
                // Dropping the connections aborts them: each peer gets a DESTROY.
                tasks.abort_all();
                return Ok(());
            }
            conn = server.accept() => match conn {
                Some(conn) => {
                    emit_connection(out, &conn);
                    tasks.spawn(echo(conn, out));
                }
                None => return Err(Error::new("the server closed")),
            },
            Some(_) = tasks.join_next() => {}
        }
    }
}

/// Echoes one connection until the peer ends, then ends ours and waits for the close.
async fn echo(mut conn: Connection, out: Output) {
    let watcher = watch_relay_path(out, &conn);
    let opened = Instant::now();
    let remote = conn.remote_public_key();
    let mut counts = Counts::default();
    let mut buf = vec![0u8; CHUNK];
    let result: io::Result<()> = async {
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            counts.received += n as u64;
            conn.write_all(&buf[..n]).await?;
            counts.sent += n as u64;
        }
        conn.shutdown().await?;
        conn.closed().await
    }
    .await;
    if let Some(w) = watcher {
        w.abort();
    }
    emit_end(
        out,
        remote,
        counts,
        opened,
        result.err().map(|e| e.to_string()),
    );
}

/// Without `--echo`: the first connection, piped to stdout and stdin; later ones are refused
/// (the server closes). Done when both directions ended; a signal first is a failure.
async fn pipe_one(
    server: &Server,
    stdin: Stdin,
    out: Output,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let accepted = tokio::select! {
        conn = server.accept() => Ok(conn),
        sig = shutdown.recv() => Err(sig),
    };
    let conn = match accepted {
        Ok(Some(conn)) => conn,
        Ok(None) => return Err(Error::new("the server closed")),
        Err(sig) => {
            closing(out, sig);
            return Err(Error::coded(
                "INTERRUPTED",
                format!("interrupted by {sig} before a connection arrived"),
            ));
        }
    };
    // Later connections are refused; the unannounce runs on (awaited when `listen` ends).
    drop(server.close());
    emit_connection(out, &conn);
    let remote = conn.remote_public_key();
    let opened = Instant::now();
    let watcher = watch_relay_path(out, &conn);
    let (counts, result) = pipe(conn, stdin, shutdown).await;
    if let Some(w) = watcher {
        w.abort();
    }
    let error = result.as_ref().err().map(ToString::to_string);
    emit_end(out, remote, counts, opened, error);
    if let Err(PipeError::Interrupted(sig)) = result {
        closing(out, sig);
    }
    result.map_err(|e| e.failure())
}

// ----- connect -----

pub async fn run_connect(args: ConnectArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let out = out.on_stderr();
    let (dht, mut shutdown) = start_node(global, args.port).await?;
    let stdin = stdin_source(out);
    let result = connect(&dht, &args, stdin, out, &mut shutdown).await;
    // Destroys the connection if it is still open (the peer gets a DESTROY) and the node; a
    // connection that closed gracefully is left alone, and the node's I/O task sends what is
    // queued (our acknowledgement of the peer's end) before it stops.
    dht.destroy().await;
    result
}

/// The options `hdht connect` connects with (its key pair, the relays it names).
fn connect_options(args: &ConnectArgs) -> ConnectOptions {
    ConnectOptions {
        key_pair: args.seed.map(|s| KeyPair::from_seed(&s)),
        relay_through: crate::args::relay_selector(&args.relay_through),
        ..ConnectOptions::default()
    }
}

async fn connect(
    dht: &Dht,
    args: &ConnectArgs,
    stdin: Stdin,
    out: Output,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let opts = connect_options(args);
    let remote = args.public_key;
    let t0 = Instant::now();
    let mut t_connect = t0;
    let conn = until_signal(shutdown, async {
        bootstrapped(dht).await?;
        t_connect = Instant::now();
        dht.connect_with(remote, opts)
            .await
            .map_err(|e| Error::from_err(&format!("cannot connect to {}", hex::encode(remote)), &e))
    })
    .await?;
    let ms = ms_since(t0);
    let ev = PipeEvent::Connected {
        remote_public_key: hex::encode(remote),
        public_key: hex::encode(conn.public_key()),
        handshake_hash: hex::encode(conn.handshake_hash()),
        ms,
        connect_ms: Some(ms_since(t_connect)),
        relay_path: conn.relay_path().map(path_name),
    };
    out.emit(&ev, || {
        format!(
            "connected to {} in {ms:.2} ms{} (handshake {})",
            hex::encode(remote),
            conn.remote_address()
                .map_or(String::new(), |a| format!(" at {a}")),
            short_hex(&conn.handshake_hash())
        )
    });
    let opened = Instant::now();
    let watcher = watch_relay_path(out, &conn);
    let (counts, result) = pipe(conn, stdin, shutdown).await;
    if let Some(w) = watcher {
        w.abort();
    }
    let error = result.as_ref().err().map(ToString::to_string);
    if let Some(first) = counts.first_byte {
        let ms = (first.saturating_duration_since(t_connect).as_secs_f64() * 1e6).round() / 1e3;
        out.emit(&PipeEvent::FirstByte { ms }, || {
            format!("the first byte came {ms:.2} ms after connect()")
        });
    }
    emit_end(out, remote, counts, opened, error);
    result.map_err(|e| e.failure())?;
    match &args.second_probe {
        Some(probe) => second_connect(dht, args, probe.as_bytes(), out, shutdown).await,
        None => Ok(()),
    }
}

/// `--second-probe`: connects to the same server again on the same node, writes `probe`,
/// reads as many bytes back, ends, and reports the times.
async fn second_connect(
    dht: &Dht,
    args: &ConnectArgs,
    probe: &[u8],
    out: Output,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let opts = connect_options(args);
    let remote = args.public_key;
    let t = Instant::now();
    let mut conn = until_signal(shutdown, async {
        dht.connect_with(remote, opts)
            .await
            .map_err(|e| Error::from_err(&format!("cannot connect to {}", hex::encode(remote)), &e))
    })
    .await?;
    let connect_ms = ms_since(t);
    let relay_path = conn.relay_path().map(path_name);
    let mut got = Vec::with_capacity(probe.len());
    let mut first_byte_ms = None;
    let io: io::Result<()> = async {
        conn.write_all(probe).await?;
        let mut buf = vec![0u8; CHUNK];
        while got.len() < probe.len() {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            first_byte_ms.get_or_insert_with(|| ms_since(t));
            got.extend_from_slice(&buf[..n]);
        }
        conn.shutdown().await
    }
    .await;
    let echoed = got == probe;
    out.emit(
        &PipeEvent::Second {
            connect_ms,
            first_byte_ms,
            echoed,
            relay_path,
        },
        || {
            format!(
                "second connect: open in {connect_ms:.2} ms, first echoed byte {} ms, echoed: {echoed}",
                first_byte_ms.map_or("-".to_string(), |m| format!("{m:.2}"))
            )
        },
    );
    io.map_err(|e| Error::from_err("the second connection", &e))?;
    if !echoed {
        return Err(Error::from_err(
            "the second connection",
            &io::Error::other("the probe did not come back"),
        ));
    }
    Ok(())
}

// ----- the pipe -----

/// Bytes moved through a connection.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    received: u64,
    sent: u64,
    /// When the first byte from the peer was read.
    first_byte: Option<Instant>,
}

/// Where our direction's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdin {
    /// Read stdin to its end.
    Read,
    /// Send nothing: stdin is the terminal of a background job (reading would stop us).
    Nothing,
    /// `--echo`: stdin is not used.
    Unused,
}

/// What to send: stdin, unless reading it would stop a background job (then a note says so).
fn stdin_source(out: Output) -> Stdin {
    if tty::stdin_is_background_terminal() {
        out.note(|| {
            "stdin is the terminal of a background job: sending nothing (our side ends at once)"
                .to_string()
        });
        Stdin::Nothing
    } else {
        Stdin::Read
    }
}

/// Why a pipe did not finish.
#[derive(Debug)]
enum PipeError {
    /// The connection broke (the peer aborted or stopped answering), or stdin / stdout failed.
    Io(io::Error),
    /// A signal: we aborted the connection.
    Interrupted(&'static str),
}

impl std::fmt::Display for PipeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipeError::Io(e) => write!(f, "{e}"),
            PipeError::Interrupted(sig) => write!(f, "interrupted by {sig}"),
        }
    }
}

impl PipeError {
    /// The command's failure.
    fn failure(&self) -> Error {
        match self {
            PipeError::Io(e) => Error::from_err("the connection failed", e),
            PipeError::Interrupted(sig) => Error::coded(
                "INTERRUPTED",
                format!("interrupted by {sig}: the transfer did not complete"),
            ),
        }
    }
}

/// Bytes moved so far, readable after the transfer was cut short.
#[derive(Debug, Default)]
struct Counters {
    /// Bytes the stdout writer wrote (it counts them itself, so a transfer cut short never
    /// reports bytes that did not reach stdout).
    received: Arc<AtomicU64>,
    sent: Cell<u64>,
    first_byte: Cell<Option<Instant>>,
}

/// stdin → the connection (ended at the end of stdin) and the connection → stdout, at once;
/// then waits until the peer acknowledged our end. The first failure stops both: a broken
/// connection (noticed even while we wait for stdin), stdin or stdout failing, or a signal —
/// then the connection is aborted, so the peer never mistakes the cut for an end.
async fn pipe(conn: Connection, stdin: Stdin, shutdown: &mut Shutdown) -> (Counts, PipeResult) {
    let counters = Counters::default();
    let broken = conn.closed();
    let done = conn.closed();
    // The stdout writer lives here, not in `to_stdout`: however the transfer ends (the peer's
    // end, a failure of the other direction, a signal), what was read from the peer is still
    // written out (bounded after a signal: stdout may be a stalled pipe), and `bytesReceived`
    // is what the writer wrote.
    let StdoutWriter {
        chunks,
        done: written,
        spare,
    } = stdout_writer(counters.received.clone());
    let (mut rd, mut wr) = tokio::io::split(conn);
    let transfer = async {
        tokio::try_join!(
            to_stdout(&mut rd, &chunks, &spare, &counters.first_byte),
            from_stdin(&mut wr, stdin, &counters.sent, broken)
        )?;
        done.await
    };
    let mut result = tokio::select! {
        r = transfer => r.map_err(PipeError::Io),
        sig = shutdown.recv() => Err(PipeError::Interrupted(sig)),
    };
    drop(chunks);
    let drained = match result {
        Err(PipeError::Interrupted(_)) => tokio::time::timeout(DESTROY_TIMEOUT, written)
            .await
            .unwrap_or(Ok(Ok(()))),
        _ => written.await,
    };
    let written = match drained {
        Ok(r) => r.map_err(context("writing to stdout")),
        Err(_) => Err(io::Error::other("the stdout writer stopped")),
    };
    // A failed stdout is the reason the transfer stopped (`to_stdout` only saw the queue close).
    if let Err(e) = written {
        if !matches!(result, Err(PipeError::Interrupted(_))) {
            result = Err(PipeError::Io(e));
        }
    }
    let conn = rd.unsplit(wr);
    if result.is_err() {
        conn.destroy();
    }
    let counts = Counts {
        received: counters.received.load(Ordering::Relaxed),
        first_byte: counters.first_byte.get(),
        sent: counters.sent.get(),
    };
    (counts, result)
}

type PipeResult = std::result::Result<(), PipeError>;

fn context(what: &'static str) -> impl Fn(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The connection's bytes to stdout (through the writer thread's queue `chunks`) until the peer
/// ends. A read that fails ends it with the reason; a writer that stopped ends it too (the
/// caller reads the writer's error).
async fn to_stdout(
    rd: &mut (impl AsyncRead + Unpin),
    chunks: &mpsc::Sender<Vec<u8>>,
    spare: &std::sync::mpsc::Receiver<Vec<u8>>,
    first_byte: &Cell<Option<Instant>>,
) -> io::Result<()> {
    loop {
        // A chunk the writer is done with, or a new one: never an allocation per chunk (a
        // 64 KiB allocation can be a fresh mapping each time, with musl's malloc for one).
        let mut buf = spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        buf.clear();
        match rd.read_buf(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(_) => {
                if first_byte.get().is_none() {
                    first_byte.set(Some(Instant::now()));
                }
            }
            Err(e) => return Err(context("reading from the peer")(e)),
        }
        if chunks.send(buf).await.is_err() {
            // The writer stopped: its error (read by the caller) says why.
            return Err(io::Error::other("the stdout writer stopped"));
        }
    }
}

/// stdin to the connection, then our end; `count` follows what was written. While it waits
/// for stdin it watches the connection (`broken`): a peer that aborted or stopped answering
/// ends the wait with the reason.
async fn from_stdin(
    wr: &mut (impl AsyncWrite + Unpin),
    stdin: Stdin,
    count: &Cell<u64>,
    mut broken: Closed,
) -> io::Result<()> {
    if stdin == Stdin::Read {
        let (mut rx, spare) = stdin_reader();
        loop {
            let next = tokio::select! {
                chunk = rx.recv() => chunk,
                closed = &mut broken => return Err(closed.err().unwrap_or_else(|| {
                    io::Error::other("the connection closed before our side ended")
                })),
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(context("reading stdin"))?;
            wr.write_all(&chunk)
                .await
                .map_err(context("sending to the peer"))?;
            count.set(count.get() + chunk.len() as u64);
            let _ = spare.send(chunk);
        }
    }
    wr.shutdown().await.map_err(context("ending our side"))
}

/// A thread reading stdin into a bounded queue (back-pressure: it stops reading while the
/// queue is full). The queue ends at the end of stdin, after an error item on a failure.
/// Chunks sent back on the second channel are reused.
fn stdin_reader() -> (
    mpsc::Receiver<io::Result<Vec<u8>>>,
    std::sync::mpsc::Sender<Vec<u8>>,
) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (spare_tx, spare) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let mut buf = spare.try_recv().unwrap_or_default();
            // Zeroes only what the last read did not fill.
            buf.resize(CHUNK, 0);
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    (rx, spare_tx)
}

/// The ends of the stdout writer thread.
struct StdoutWriter {
    /// Chunks to write, in order.
    chunks: mpsc::Sender<Vec<u8>>,
    /// The outcome, once `chunks` is closed and drained, or at the first error (then the queue
    /// is dropped).
    done: oneshot::Receiver<io::Result<()>>,
    /// Written chunks come back here, for reuse.
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
}

/// A thread writing queued chunks to stdout, each flushed.
fn stdout_writer(written: Arc<AtomicU64>) -> StdoutWriter {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let (done_tx, done) = oneshot::channel();
    let (spare_tx, spare) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = RawStdout::lock();
        let mut result = Ok(());
        while let Some(buf) = rx.blocking_recv() {
            if let Err(e) = stdout.write_all(&buf).and_then(|()| stdout.flush()) {
                result = Err(e);
                break;
            }
            written.fetch_add(buf.len() as u64, Ordering::Relaxed);
            let _ = spare_tx.send(buf);
        }
        drop(rx);
        let _ = done_tx.send(result);
    });
    StdoutWriter {
        chunks: tx,
        done,
        spare,
    }
}

/// Standard output without std's line buffering: `Stdout` is a `LineWriter`, which scans every
/// chunk of the peer's bytes for a newline (a `memrchr` over each 64 KiB, ~5% of a receiving
/// `listen`'s CPU) and splits writes at them. Holds std's lock so nothing else interleaves.
struct RawStdout {
    _guard: io::StdoutLock<'static>,
    #[cfg(unix)]
    fd: std::mem::ManuallyDrop<std::fs::File>,
}

impl RawStdout {
    fn lock() -> Self {
        let mut guard = io::stdout().lock();
        let _ = guard.flush();
        #[cfg(unix)]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: fd 1 stays open for the life of the process; ManuallyDrop never closes it.
            let fd = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
            RawStdout { _guard: guard, fd }
        }
        #[cfg(not(unix))]
        RawStdout { _guard: guard }
    }
}

impl Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(unix)]
        return (&*self.fd).write(buf);
        #[cfg(not(unix))]
        return self._guard.write(buf);
    }

    fn flush(&mut self) -> io::Result<()> {
        #[cfg(unix)]
        return Ok(());
        #[cfg(not(unix))]
        return self._guard.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let ev = PipeEvent::Listening {
            public_key: "aa".into(),
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"listening","publicKey":"aa"}"#
        );
        let ev = PipeEvent::Connection {
            remote_public_key: "bb".into(),
            handshake_hash: "cc".into(),
            remote_address: Some(Addr {
                host: "127.0.0.1".into(),
                port: 5,
            }),
            relay_path: None,
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"connection","remotePublicKey":"bb","handshakeHash":"cc","remoteAddress":{"host":"127.0.0.1","port":5}}"#
        );
        let ev = PipeEvent::Connected {
            remote_public_key: "bb".into(),
            public_key: "aa".into(),
            handshake_hash: "cc".into(),
            ms: 1.5,
            connect_ms: None,
            relay_path: None,
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"connected","remotePublicKey":"bb","publicKey":"aa","handshakeHash":"cc","ms":1.5}"#
        );
        let ev = PipeEvent::Connected {
            remote_public_key: "bb".into(),
            public_key: "aa".into(),
            handshake_hash: "cc".into(),
            ms: 1.5,
            connect_ms: None,
            relay_path: Some(path_name(RelayPath::Relayed)),
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"connected","remotePublicKey":"bb","publicKey":"aa","handshakeHash":"cc","ms":1.5,"relayPath":"relayed"}"#
        );
        let ev = PipeEvent::RelayPath {
            remote_public_key: "bb".into(),
            path: path_name(RelayPath::Upgraded),
            ms: 2.0,
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"relayPath","remotePublicKey":"bb","path":"upgraded","ms":2.0}"#
        );
        let ev = PipeEvent::End {
            remote_public_key: "bb".into(),
            bytes_received: 1,
            bytes_sent: 2,
            ms: 3.0,
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"end","remotePublicKey":"bb","bytesReceived":1,"bytesSent":2,"ms":3.0,"error":null}"#
        );
    }
}
