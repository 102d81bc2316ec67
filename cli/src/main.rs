//! `hdht`: a command-line front end for the Rust HyperDHT (on tokio).
//!
//! Exit codes: 0 success, 1 runtime failure (message on stderr), 2 usage error (from clap).

mod args;
mod cmd;
mod output;
mod signal;
mod tty;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use output::Output;

/// Counts heap use so `hdht sim` can report memory per node (a few atomic adds per
/// allocation; negligible for the other commands).
#[global_allocator]
static ALLOC: hdht_sim::mem::CountingAlloc = hdht_sim::mem::CountingAlloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Bootstrap(_)) && cli.global.host.is_none() {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "`hdht bootstrap` needs --host <IPV4>: the address to bind and announce",
            )
            .exit();
    }
    if let Err((name, msg)) = args::validate(&cli.command) {
        let mut command = Cli::command();
        command.build();
        let sub = command.find_subcommand_mut(name).expect("a subcommand");
        sub.error(clap::error::ErrorKind::ValueValidation, msg)
            .exit();
    }
    let out = Output::new(cli.global.json);
    let result = match cli.command {
        Command::Keypair(args) => cmd::keypair::run(args, out),
        command => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(cmd::run_async(command, cli.global, out)),
            Err(e) => Err(cmd::Error::new(format!(
                "cannot start the tokio runtime: {e}"
            ))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hdht: error: {e}");
            ExitCode::FAILURE
        }
    }
}
