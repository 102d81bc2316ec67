//! Logging for `-v` / `-vv` / `RUST_LOG`: the libraries emit `tracing` events, and only the
//! binary installs a subscriber (on stderr, so stdout stays the data pipe). Without either
//! nothing is installed and the events cost a branch each.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// hdht's own crates (the binary's target is `hdht`).
const CRATES: [&str; 5] = ["hdht", "hdht_core", "hdht_driver", "hdht_tokio", "hdht_sim"];

/// The filter for `-v` × `verbose`, unless `RUST_LOG` says otherwise; `None`: no logging.
fn filter(verbose: u8) -> Option<EnvFilter> {
    if let Ok(spec) = std::env::var(EnvFilter::DEFAULT_ENV) {
        if !spec.trim().is_empty() {
            return Some(EnvFilter::new(spec));
        }
    }
    let level = match verbose {
        0 => return None,
        1 => "debug",
        _ => "trace",
    };
    let spec: Vec<String> = CRATES.iter().map(|c| format!("{c}={level}")).collect();
    Some(EnvFilter::new(format!("warn,{}", spec.join(","))))
}

/// Installs the stderr subscriber if `-v` or `RUST_LOG` asks for one: text lines, or with
/// `--json` one JSON object per line (tracing-subscriber's JSON format).
pub fn init(verbose: u8, json: bool) {
    let Some(filter) = filter(verbose) else {
        return;
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let result = if json {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    if let Err(e) = result {
        eprintln!("hdht: warning: cannot install the log subscriber: {e}");
    }
}
