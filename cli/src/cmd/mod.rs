//! One module per subcommand, plus what the long-running ones share.

pub mod bootstrap;
pub mod demo;
pub mod find_node;
pub mod keypair;
pub mod node;

use std::time::Duration;

use hdht_tokio::Dht;

use crate::args::{Command, GlobalOpts};
use crate::output::{Event, Output};
use crate::signal::Shutdown;

/// A runtime failure: printed on stderr, exit code 1.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Runs a subcommand that needs the async runtime.
pub async fn run_async(command: Command, global: GlobalOpts, out: Output) -> Result<()> {
    match command {
        Command::Keypair(args) => keypair::run(args, out),
        Command::Bootstrap(args) => bootstrap::run(args, &global, out).await,
        Command::Node(args) => node::run(args, &global, out).await,
        Command::FindNode(args) => find_node::run(args, &global, out).await,
        Command::Demo(args) => demo::run(args, out).await,
    }
}

/// How often pending node events are collected and printed.
const EVENT_POLL: Duration = Duration::from_millis(100);

/// Prints the node's pending events.
fn print_events(dht: &Dht, out: Output) {
    for ev in dht.take_events() {
        if let Some(ev) = Event::from_rpc(&ev, || dht.id()) {
            out.event(&ev);
        }
    }
}

/// Waits for bootstrapping to finish, printing events meanwhile. `Err(signal)` if a signal
/// came first.
async fn ready_or_signal(
    dht: &Dht,
    out: Output,
    shutdown: &mut Shutdown,
) -> std::result::Result<(), &'static str> {
    let mut tick = tokio::time::interval(EVENT_POLL);
    let ready = dht.ready();
    tokio::pin!(ready);
    loop {
        tokio::select! {
            ok = &mut ready => {
                return if ok { Ok(()) } else { Err("destroyed") };
            }
            sig = shutdown.recv() => return Err(sig),
            _ = tick.tick() => print_events(dht, out),
        }
    }
}

/// Prints the node's events until a signal arrives; returns the signal's name.
async fn events_until_signal(dht: &Dht, out: Output, shutdown: &mut Shutdown) -> &'static str {
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
async fn serve(
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
