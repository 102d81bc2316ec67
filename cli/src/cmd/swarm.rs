//! `hdht swarm TOPIC [--seed HEX] [--server | --client]`: a line-based group chat over a
//! Hyperswarm topic.
//!
//! stdin is read line by line on a thread of its own (a blocking read of a terminal can never
//! be cancelled) and every line goes to every connection open at the time. Each connection's
//! bytes are cut into lines by a task of its own; one writer puts whole lines on stdout, so the
//! lines of two peers never interleave. Lines are bounded ([`MAX_LINE`]): a peer cannot make
//! us buffer without end. Queues are bounded too: a peer that stops reading holds up stdin
//! (back-pressure, as a pipe), and a signal still ends the command. Status lines go to stderr. The end of stdin stops nothing: the
//! command runs until SIGINT / SIGTERM, then leaves the topic (unannounces) and exits 0.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::time::Duration;

use hdht_tokio::{Dht, DhtOptions, JoinOptions, Persistence, Swarm, SwarmOptions};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::common::{bootstrapped, Error, Result};
use crate::args::{GlobalOpts, SwarmArgs};
use crate::output::{Event, Output};
use crate::signal::Shutdown;
use crate::tty;

/// The longest line passed on whole; longer ones are cut into pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;
/// Lines queued per connection, and for stdout.
const QUEUE: usize = 64;
/// How long leaving the topic and destroying the node may take at the end.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(5);

/// The status lines of `swarm` (on stderr).
#[derive(Debug, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum SwarmLine {
    /// A connection to a peer is the swarm's now.
    Connection {
        remote_public_key: String,
        initiator: bool,
    },
    /// That connection closed.
    Disconnection { remote_public_key: String },
    /// The first `swarm.flush()` finished: every peer found so far was tried once.
    Flushed,
}

pub async fn run(args: SwarmArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let out = out.on_stderr();
    let mut shutdown = Shutdown::install();
    let topic = args.topic_bytes();
    let dht = Dht::new(DhtOptions {
        bootstrap: global.bootstrap_list(),
        host: global.bind_host(),
        port: args.port,
        persistence: Persistence::Adaptive,
        ..DhtOptions::isolated()
    })
    .await
    .map_err(|e| Error::new(format!("cannot start a node: {e}")))?;
    tokio::select! {
        r = bootstrapped(&dht) => r?,
        sig = shutdown.recv() => {
            out.event(&Event::Close { signal: sig.to_string() });
            let _ = tokio::time::timeout(DESTROY_TIMEOUT, dht.destroy()).await;
            return Ok(());
        }
    }
    let swarm = Swarm::with_dht(
        dht,
        SwarmOptions {
            seed: args.seed,
            relay_through: crate::args::relay_selector(&args.relay_through),
            ..SwarmOptions::default()
        },
    )
    .map_err(|e| Error::new(format!("cannot start the swarm: {e}")))?;
    let join = JoinOptions {
        server: !args.client,
        client: !args.server,
        limit: None,
    };
    let discovery = swarm
        .join(topic, join)
        .map_err(|e| Error::new(format!("cannot join the topic: {e}")))?;
    out.note(|| {
        format!(
            "joined topic {} as {}",
            hex::encode(topic),
            hex::encode(swarm.public_key())
        )
    });
    let sig = serve(&swarm, out, &mut shutdown).await;
    out.event(&Event::Close {
        signal: sig.to_string(),
    });
    discovery.destroy();
    let _ = tokio::time::timeout(DESTROY_TIMEOUT, swarm.destroy()).await;
    Ok(())
}

/// What the connection tasks tell the main loop.
enum Report {
    /// A connection ended (its reader stopped).
    Gone(u64),
}

/// Moves lines until a signal; returns its name.
async fn serve(swarm: &Swarm, out: Output, shutdown: &mut Shutdown) -> &'static str {
    let mut conns = swarm.connection_stream();
    let mut stdin = read_stdin(out);
    let stdout = write_stdout();
    let (report_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    // Per connection: the peer's key and the queue of lines to send it.
    let mut peers: BTreeMap<u64, ([u8; 32], mpsc::Sender<Vec<u8>>)> = BTreeMap::new();
    let mut next_id = 0u64;
    let flush = swarm.flush();
    tokio::pin!(flush);
    let mut flushed = false;
    loop {
        tokio::select! {
            sig = shutdown.recv() => return sig,
            ok = &mut flush, if !flushed => {
                flushed = true;
                if ok {
                    out.emit(&SwarmLine::Flushed, || "flushed".to_string());
                }
            }
            next = futures_lite::StreamExt::next(&mut conns) => {
                let Some((conn, _info)) = next else {
                    // The node is gone: nothing more will happen.
                    return shutdown.recv().await;
                };
                let key = conn.remote_public_key();
                let initiator = conn.is_initiator();
                out.emit(
                    &SwarmLine::Connection { remote_public_key: hex::encode(key), initiator },
                    || format!("connection {} ({})", hex::encode(key),
                        if initiator { "we dialed" } else { "it dialed" }),
                );
                let id = next_id;
                next_id += 1;
                let (rd, mut wr) = tokio::io::split(conn);
                let (line_tx, mut line_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
                tokio::spawn(async move {
                    while let Some(line) = line_rx.recv().await {
                        if wr.write_all(&line).await.is_err() {
                            return;
                        }
                    }
                });
                let to_stdout = stdout.clone();
                let report = report_tx.clone();
                tokio::spawn(async move {
                    let _ = read_lines(rd, to_stdout).await;
                    let _ = report.send(Report::Gone(id));
                });
                peers.insert(id, (key, line_tx));
            }
            Some(Report::Gone(id)) = reports.recv() => {
                if let Some((key, _)) = peers.remove(&id) {
                    out.emit(
                        &SwarmLine::Disconnection { remote_public_key: hex::encode(key) },
                        || format!("disconnection {}", hex::encode(key)),
                    );
                }
            }
            Some(line) = stdin.recv() => {
                for (_, tx) in peers.values() {
                    // Back-pressure: a peer that stops reading holds up stdin (as a pipe
                    // would), never a signal. A connection whose writer ended drops the line;
                    // its reader reports the disconnection.
                    tokio::select! {
                        _ = tx.send(line.clone()) => {}
                        sig = shutdown.recv() => return sig,
                    }
                }
            }
        }
    }
}

/// Cuts a connection's bytes into lines (at most [`MAX_LINE`] each) for stdout. Ends at the
/// peer's end or the connection's failure; a last unterminated piece gets a newline.
async fn read_lines(mut rd: impl AsyncRead + Unpin, tx: mpsc::Sender<Vec<u8>>) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match rd.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) => {
                flush_rest(&mut pending, &tx).await;
                return Err(e);
            }
        };
        if n == 0 {
            flush_rest(&mut pending, &tx).await;
            return Ok(());
        }
        pending.extend_from_slice(&chunk[..n]);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            if tx.send(line).await.is_err() {
                return Ok(());
            }
        }
        while pending.len() >= MAX_LINE {
            let mut piece: Vec<u8> = pending.drain(..MAX_LINE).collect();
            piece.push(b'\n');
            if tx.send(piece).await.is_err() {
                return Ok(());
            }
        }
    }
}

async fn flush_rest(pending: &mut Vec<u8>, tx: &mpsc::Sender<Vec<u8>>) {
    if !pending.is_empty() {
        let mut rest = std::mem::take(pending);
        rest.push(b'\n');
        let _ = tx.send(rest).await;
    }
}

/// One writer for stdout, on a thread: each line is written whole and flushed.
fn write_stdout() -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    std::thread::spawn(move || {
        while let Some(line) = rx.blocking_recv() {
            let mut out = io::stdout().lock();
            if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                return;
            }
        }
    });
    tx
}

/// stdin's lines (each at most [`MAX_LINE`] bytes, newline kept), read on a thread. Nothing
/// is read when stdin is the terminal of a background job (reading would stop us).
fn read_stdin(out: Output) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    if tty::stdin_is_background_terminal() {
        out.note(|| "stdin is the terminal of a background job: sending nothing".to_string());
        return rx;
    }
    std::thread::spawn(move || {
        let stdin = io::stdin();
        let mut lock = stdin.lock();
        loop {
            let mut line = Vec::new();
            match std::io::Read::take(&mut lock, MAX_LINE as u64).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if line.last() != Some(&b'\n') {
                        line.push(b'\n');
                    }
                    if tx.blocking_send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}
