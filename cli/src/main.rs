//! `hdht`: a command-line front end for the Rust HyperDHT (on tokio).
//!
//! Exit codes: 0 success, 1 runtime failure (message on stderr), 2 usage error (from clap).

mod args;
mod cmd;
mod codes;
mod logging;
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e, json_requested()),
    };
    let json = cli.global.json;
    if matches!(cli.command, Command::Bootstrap(_)) && cli.global.host.is_none() {
        usage_error(
            Cli::command().error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "`hdht bootstrap` needs --host <IPV4>: the address to bind and announce",
            ),
            json,
        );
    }
    if let Err((name, msg)) = args::validate(&cli.command) {
        let mut command = Cli::command();
        command.build();
        let sub = command.find_subcommand_mut(name).expect("a subcommand");
        usage_error(
            sub.error(clap::error::ErrorKind::ValueValidation, msg),
            json,
        );
    }
    logging::init(cli.global.verbose, cli.global.json);
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
            out.error(e.code(), e.message());
            ExitCode::FAILURE
        }
    }
}

/// Whether `--json` is among the arguments (for a command line clap could not parse).
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Exits with clap's usage error (code 2; help and version print and exit 0). With `--json`
/// the error is one line on stderr: `{"error":"USAGE","message":…}`, the message without
/// clap's `error: ` prefix and usage hint.
fn usage_error(e: clap::Error, json: bool) -> ! {
    use clap::error::ErrorKind;
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "a subcommand is required (see hdht --help)".to_string()
    } else {
        let rendered = e.render().to_string();
        rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string()
    };
    Output::new(true).error("USAGE", &message);
    std::process::exit(e.exit_code());
}
