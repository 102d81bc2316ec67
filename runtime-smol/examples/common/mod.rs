//! What every example parses from its command line, and hex for keys (kept out of the examples
//! so each shows only the hdht calls).
//!
//! Flags: `--bootstrap HOST:PORT` (repeatable; the default is `DhtOptions::default()`'s list)
//! and `--host IP` (the address to bind, default `0.0.0.0`). Everything else is positional.

#![allow(dead_code)] // each example uses a part

use std::net::Ipv4Addr;

/// The parsed command line.
pub struct Args {
    /// `--bootstrap` entries, in order; empty when none was given.
    pub bootstrap: Vec<String>,
    /// `--host`, if given.
    pub host: Option<Ipv4Addr>,
    /// The positional arguments.
    pub positional: Vec<String>,
}

/// Parses `std::env::args()`, exiting with a usage line on a malformed flag.
pub fn args(usage: &str) -> Args {
    let mut out = Args {
        bootstrap: Vec::new(),
        host: None,
        positional: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bootstrap" => out.bootstrap.push(it.next().unwrap_or_else(|| fail(usage))),
            "--host" => {
                let ip = it.next().and_then(|s| s.parse().ok());
                out.host = Some(ip.unwrap_or_else(|| fail(usage)));
            }
            "-h" | "--help" => {
                println!("usage: {usage}");
                std::process::exit(0);
            }
            _ => out.positional.push(arg),
        }
    }
    out
}

/// Prints the usage line and exits with status 2.
pub fn fail(usage: &str) -> ! {
    eprintln!("usage: {usage}");
    std::process::exit(2)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from 64 hex characters.
pub fn key_from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}
