//! What the subcommands share: the error type, starting and bootstrapping a node, and
//! waiting for Ctrl-C / SIGTERM while printing a node's events.

use std::future::Future;
use std::time::{Duration, Instant};

use hdht_tokio::{Dht, DhtError, DhtOptions, Persistence};
use rand_core::{OsRng, RngCore};

use crate::args::GlobalOpts;
use crate::codes::Code;
use crate::output::{Event, Output, Warning};
use crate::signal::Shutdown;

/// A runtime failure: printed on stderr (`hdht: error: …`, or with `--json`
/// `{"error":CODE,"message":…}`), exit code 1.
#[derive(Debug)]
pub struct Error {
    code: &'static str,
    message: String,
}

impl Error {
    /// A failure without a more specific code (`ERROR`).
    pub fn new(msg: impl Into<String>) -> Self {
        Error::coded("ERROR", msg)
    }

    /// A failure with its code (see [`crate::codes`]).
    pub fn coded(code: &'static str, msg: impl Into<String>) -> Self {
        Error {
            code,
            message: msg.into(),
        }
    }

    /// `context: err`, with `err`'s code.
    pub fn from_err<E: Code + std::fmt::Display>(context: &str, err: &E) -> Self {
        Error::coded(err.cli_code(), format!("{context}: {err}"))
    }

    /// The code of the `--json` error line.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Milliseconds since `t0`, to the microsecond.
pub(super) fn ms_since(t0: Instant) -> f64 {
    (t0.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// 32 random bytes from the OS.
pub(super) fn random_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| Error::new(format!("no OS randomness: {e}")))?;
    Ok(seed)
}

/// Starts the node a one-shot command works through: ephemeral (it never becomes routable
/// or stores records), on any free port, bound to `--host`. The signal handlers are
/// installed first.
pub(super) async fn start_client(global: &GlobalOpts) -> Result<(Dht, Shutdown)> {
    let shutdown = Shutdown::install();
    let opts = DhtOptions {
        bootstrap: global.bootstrap_list(),
        host: global.bind_host(),
        port: 0,
        persistence: Persistence::Ephemeral,
        ..DhtOptions::isolated()
    };
    let dht = Dht::new(opts)
        .await
        .map_err(|e| Error::from_err("cannot start a node", &e))?;
    Ok((dht, shutdown))
}

/// Waits for the node's bootstrap; an error if no bootstrap node answered it, or if those
/// that did know no DHT node (so that a get through an unreachable network says so instead of
/// "not found", and a put fails at once instead of after its commit timeouts).
pub(super) async fn bootstrapped(dht: &Dht) -> Result<()> {
    match dht.ready().await {
        Ok(()) => {}
        Err(e @ DhtError::NoBootstrapReply { .. }) => {
            return Err(Error::coded(
                e.cli_code(),
                format!("{e}: check --bootstrap and that the network is reachable"),
            ))
        }
        Err(e) => return Err(Error::from_err("bootstrap failed", &e)),
    }
    if dht.to_array().is_empty() {
        return Err(Error::coded(
            "NO_NODES",
            "the bootstrap nodes answered but know no DHT node to ask or store at \
             (a network of ephemeral nodes only?)",
        ));
    }
    Ok(())
}

/// Runs `fut` unless a signal comes first (then an "interrupted" error).
pub(super) async fn until_signal<T>(
    shutdown: &mut Shutdown,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = fut => r,
        sig = shutdown.recv() => Err(Error::coded("INTERRUPTED", format!("interrupted by {sig}"))),
    }
}

/// How often pending node events are collected and printed.
pub(super) const EVENT_POLL: Duration = Duration::from_millis(100);

/// Prints the node's pending events.
pub(super) fn print_events(dht: &Dht, out: Output) {
    for ev in dht.take_events() {
        if let Some(ev) = Event::from_rpc(&ev, || dht.id()) {
            out.event(&ev);
        }
    }
}

/// Waits for bootstrapping to finish, printing events meanwhile, and warns when no bootstrap
/// node answered (the node still runs). `Err(signal)` if a signal came first.
pub(super) async fn ready_or_signal(
    dht: &Dht,
    out: Output,
    shutdown: &mut Shutdown,
) -> std::result::Result<(), &'static str> {
    let mut tick = tokio::time::interval(EVENT_POLL);
    let ready = dht.ready();
    tokio::pin!(ready);
    loop {
        tokio::select! {
            r = &mut ready => {
                return match r {
                    Ok(()) => Ok(()),
                    Err(DhtError::NoBootstrapReply { tried }) => {
                        out.warn(&Warning::no_bootstrap_reply(&tried));
                        Ok(())
                    }
                    Err(_) => Err("destroyed"),
                };
            }
            sig = shutdown.recv() => return Err(sig),
            _ = tick.tick() => print_events(dht, out),
        }
    }
}

/// Prints the node's events until a signal arrives; returns the signal's name.
pub(super) async fn events_until_signal(
    dht: &Dht,
    out: Output,
    shutdown: &mut Shutdown,
) -> &'static str {
    let mut tick = tokio::time::interval(EVENT_POLL);
    loop {
        tokio::select! {
            sig = shutdown.recv() => {
                print_events(dht, out);
                return sig;
            }
            _ = tick.tick() => print_events(dht, out),
        }
    }
}

/// Runs a started node until a signal: waits for `ready`, prints `ready_line`, then events,
/// then `close`, and destroys the node.
pub(super) async fn serve(
    dht: Dht,
    out: Output,
    mut shutdown: Shutdown,
    ready_line: impl FnOnce(&Dht) -> Event,
) -> Result<()> {
    let sig = match ready_or_signal(&dht, out, &mut shutdown).await {
        Ok(()) => {
            print_events(&dht, out);
            out.event(&ready_line(&dht));
            events_until_signal(&dht, out, &mut shutdown).await
        }
        Err(sig) => sig,
    };
    out.event(&Event::Close {
        signal: sig.to_string(),
    });
    dht.destroy().await;
    Ok(())
}
