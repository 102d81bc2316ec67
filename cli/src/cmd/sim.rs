//! `hdht sim SCENARIO`: runs a whole network in the deterministic simulator (`hdht-sim`) and
//! reports success rates, latency percentiles, hops, datagrams, events per second and memory
//! per node; the last line is one JSON object with the seed and the trace hash, so a run can be
//! replayed exactly (`--seed`).

use std::time::Duration;

use clap::Args;
use hdht_sim::scenario::{NatMix, Progress, Scenario, ScenarioConfig, ScenarioKind};

use super::{Error, Result};
use crate::output::Output;

/// `hdht sim` arguments.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// bootstrap, lookup, churn or partition.
    #[arg(value_name = "SCENARIO", value_parser = parse_kind)]
    pub scenario: ScenarioKind,
    /// Number of nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// The seed every random choice derives from; the same seed replays the run exactly.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// NAT presets for the nodes (open, full-cone, restricted-cone, port-restricted,
    /// symmetric, cgnat, udp-blocked), optionally weighted: `open:7,symmetric:3`. Repeatable.
    #[arg(long = "nat", value_name = "PRESET[:WEIGHT]", value_delimiter = ',')]
    pub nat: Vec<String>,
    /// Datagram loss probability once the network has settled (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Fraction of nodes that crash and restart (churn scenario; 0..1).
    #[arg(long)]
    pub churn: Option<f64>,
    /// Lookups to run.
    #[arg(long, default_value_t = 1000)]
    pub lookups: usize,
    /// Records announced before the lookups.
    #[arg(long, default_value_t = 100)]
    pub announces: usize,
}

fn parse_kind(s: &str) -> std::result::Result<ScenarioKind, String> {
    s.parse().map_err(|e| format!("{e}"))
}

/// The progress line `{"event":"progress",...}`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgressOut {
    event: &'static str,
    phase: &'static str,
    done: usize,
    total: usize,
    sim_ms: u128,
    events: u64,
    wall_ms: u128,
}

pub fn run(args: SimArgs, out: Output, json: bool) -> Result<()> {
    let mut cfg = ScenarioConfig::new(args.scenario, args.nodes, args.seed);
    cfg.lookups = args.lookups;
    cfg.announces = args.announces;
    cfg.loss = args.loss;
    if let Some(c) = args.churn {
        cfg.churn = c;
    }
    if !args.nat.is_empty() {
        cfg.nat = args.nat.join(",").parse::<NatMix>().map_err(|e| Error::new(format!("--nat: {e}")))?;
    }
    let mut scenario = Scenario::new(cfg).map_err(|e| Error::new(format!("{e}")))?;
    let mut last_phase = "";
    let mut last_report = Duration::ZERO;
    let mut progress = |p: &Progress| {
        // A line per phase change, and at most one a second of wall time within a phase.
        if p.phase == last_phase && p.wall < last_report + Duration::from_secs(1) && p.done != p.total {
            return;
        }
        last_phase = p.phase;
        last_report = p.wall;
        let rec = ProgressOut {
            event: "progress",
            phase: p.phase,
            done: p.done,
            total: p.total,
            sim_ms: p.sim_time.as_millis(),
            events: p.events,
            wall_ms: p.wall.as_millis(),
        };
        out.emit(&rec, || {
            format!(
                "{:<10} {:>6}/{:<6} simulated {:>8.1} s  events {:>10}  wall {:>6.1} s",
                p.phase,
                p.done,
                p.total,
                p.sim_time.as_secs_f64(),
                p.events,
                p.wall.as_secs_f64()
            )
        });
    };
    let report = scenario.run(&mut progress).map_err(|e| Error::new(format!("simulation failed: {e}")))?;
    if !json {
        println!("{report}");
    }
    println!("{}", report.to_json_line());
    Ok(())
}
