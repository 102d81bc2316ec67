//! Large scenario runs, outside the test suite.
//!
//! ```text
//! cargo run --release -p hdht-sim --example scale -- --nodes 10000
//! cargo run --release -p hdht-sim --example scale -- --scenario churn --nodes 10000 --churn 0.1
//! cargo run --release -p hdht-sim --example scale -- --scenario lookup --nodes 1000 --loss 0.05 --json
//! ```
//!
//! Options: `--scenario bootstrap|lookup|churn|partition` (default lookup), `--nodes N`,
//! `--seed S`, `--nat MIX` (e.g. `open:7,port-restricted:2,symmetric:1`), `--loss P`,
//! `--churn P`, `--lookups N`, `--announces N`, `--join-ms MS`, `--settle-s S`, `--json`
//! (print only the JSON line). Memory is counted by the allocator installed below.

use std::process::ExitCode;
use std::time::Duration;

use hdht_sim::scenario::{Scenario, ScenarioConfig, ScenarioKind};

#[global_allocator]
static ALLOC: hdht_sim::mem::CountingAlloc = hdht_sim::mem::CountingAlloc;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let kind: ScenarioKind = get("--scenario")
        .unwrap_or_else(|| "lookup".into())
        .parse()
        .map_err(|e| format!("{e}"))?;
    let nodes: usize = get("--nodes")
        .map_or(Ok(1000), |s| s.parse())
        .map_err(|e| format!("--nodes: {e}"))?;
    let seed: u64 = get("--seed")
        .map_or(Ok(1), |s| s.parse())
        .map_err(|e| format!("--seed: {e}"))?;
    let mut cfg = ScenarioConfig::new(kind, nodes, seed);
    cfg.lookups = 1000;
    cfg.announces = 100;
    if let Some(m) = get("--nat") {
        cfg.nat = m.parse().map_err(|e| format!("--nat: {e}"))?;
    }
    if let Some(p) = get("--loss") {
        cfg.loss = p.parse().map_err(|e| format!("--loss: {e}"))?;
    }
    if let Some(p) = get("--churn") {
        cfg.churn = p.parse().map_err(|e| format!("--churn: {e}"))?;
    }
    if let Some(n) = get("--lookups") {
        cfg.lookups = n.parse().map_err(|e| format!("--lookups: {e}"))?;
    }
    if let Some(n) = get("--announces") {
        cfg.announces = n.parse().map_err(|e| format!("--announces: {e}"))?;
    }
    if let Some(n) = get("--join-ms") {
        cfg.join_interval =
            Duration::from_millis(n.parse().map_err(|e| format!("--join-ms: {e}"))?);
    }
    if let Some(n) = get("--settle-s") {
        cfg.settle = Duration::from_secs(n.parse().map_err(|e| format!("--settle-s: {e}"))?);
    }
    let json = args.iter().any(|a| a == "--json");
    let mut scenario = Scenario::new(cfg).map_err(|e| e.to_string())?;
    let report = scenario
        .run(&mut |p| {
            if !json {
                eprintln!(
                    "[{:>7.1}s wall {:>8.1}s sim] {:<9} {}/{}  events {}",
                    p.wall.as_secs_f64(),
                    p.sim_time.as_secs_f64(),
                    p.phase,
                    p.done,
                    p.total,
                    p.events
                );
            }
        })
        .map_err(|e| e.to_string())?;
    if !json {
        println!("{report}");
        println!(
            "peak heap {} MB",
            hdht_sim::mem::peak_heap_bytes() / 1_000_000
        );
    }
    println!("{}", report.to_json_line());
    Ok(())
}
