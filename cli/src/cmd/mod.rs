//! One module per subcommand, plus what the long-running ones share.

pub mod announce;
pub mod bootstrap;
mod common;
pub mod connect;
pub mod demo;
pub mod doctor;
pub mod find_node;
pub mod immutable;
pub mod keypair;
pub mod lookup;
pub mod mutable;
pub mod node;
pub mod relay;
pub mod sim;
pub mod swarm;

pub use common::{Error, Result};

use crate::args::{Command, GlobalOpts};
use crate::output::Output;

/// Runs a subcommand that needs the async runtime.
pub async fn run_async(command: Command, global: GlobalOpts, out: Output) -> Result<()> {
    match command {
        Command::Keypair(args) => keypair::run(args, out),
        Command::Bootstrap(args) => bootstrap::run(args, &global, out).await,
        Command::Node(args) => node::run(args, &global, out).await,
        Command::FindNode(args) => find_node::run(args, &global, out).await,
        Command::Lookup(args) => lookup::run(args, &global, out).await,
        Command::Announce(args) => announce::run(args, &global, out).await,
        Command::Unannounce(args) => announce::run_unannounce(args, &global, out).await,
        Command::ImmutablePut(args) => immutable::run_put(args, &global, out).await,
        Command::ImmutableGet(args) => immutable::run_get(args, &global, out).await,
        Command::MutablePut(args) => mutable::run_put(args, &global, out).await,
        Command::MutableGet(args) => mutable::run_get(args, &global, out).await,
        Command::Demo(args) => demo::run(args, out).await,
        Command::Sim(args) => sim::run(args, out, global.json),
        Command::Listen(args) => connect::run_listen(args, &global, out).await,
        Command::Connect(args) => connect::run_connect(args, &global, out).await,
        Command::Doctor(args) => doctor::run(args, &global, out).await,
        Command::Relay(args) => relay::run(args, &global, out).await,
        Command::Swarm(args) => swarm::run(args, &global, out).await,
    }
}
