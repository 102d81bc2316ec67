//! `hdht sim SCENARIO`: runs a whole network in the deterministic simulator (`hdht-sim`) and
//! reports success rates, latency percentiles, hops, datagrams, events per second and memory
//! per node; the last line is one JSON object with the seed and the trace hash, so a run can be
//! replayed exactly (`--seed`).
//!
//! `hdht sim holepunch-matrix` connects a client behind every NAT preset to a server behind
//! every NAT preset across a small public DHT, `--seeds` runs per pair, and prints the matrix
//! of success rates and times to connect (with `--json`, one JSON object per pair); the last
//! line is the summary with the seed and a trace hash over every run.

use std::time::Duration;

use hdht_sim::scenario::holepunch::{run_matrix, MatrixConfig, MatrixProgress, PairReport};
use hdht_sim::scenario::{NatMix, Progress, Scenario, ScenarioConfig, ScenarioKind};

use super::common::{Error, Result};
use crate::args::sim::{SimArgs, SimScenario};
use crate::output::Output;

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

impl ProgressOut {
    fn print(&self, out: Output) {
        out.emit(self, || {
            format!(
                "{:<10} {:>6}/{:<6} simulated {:>8.1} s  events {:>10}  wall {:>6.1} s",
                self.phase,
                self.done,
                self.total,
                self.sim_ms as f64 / 1000.0,
                self.events,
                self.wall_ms as f64 / 1000.0
            )
        });
    }
}

/// Prints a line per phase change, and at most one a second of wall time within a phase.
#[derive(Debug, Default)]
struct Throttle {
    last_phase: &'static str,
    last_report: Duration,
}

impl Throttle {
    fn due(&mut self, phase: &'static str, wall: Duration, finished: bool) -> bool {
        if phase == self.last_phase && wall < self.last_report + Duration::from_secs(1) && !finished
        {
            return false;
        }
        self.last_phase = phase;
        self.last_report = wall;
        true
    }
}

pub fn run(args: SimArgs, out: Output, json: bool) -> Result<()> {
    let kind = match args.scenario {
        SimScenario::HolepunchMatrix => return run_holepunch_matrix(args, out, json),
        SimScenario::Swarm => return run_swarm_scenario(args, json),
        SimScenario::Flood => return run_flood_scenario(args, json),
        SimScenario::Network(kind) => kind,
    };
    let mut cfg = ScenarioConfig::new(kind, args.nodes, args.seed);
    cfg.lookups = args.lookups;
    cfg.announces = args.announces;
    cfg.loss = args.loss.unwrap_or(0.0);
    if let Some(c) = args.churn {
        cfg.churn = c;
    }
    if !args.nat.is_empty() {
        cfg.nat = args
            .nat
            .join(",")
            .parse::<NatMix>()
            .map_err(|e| Error::new(format!("--nat: {e}")))?;
    }
    if args.hours.is_some() && kind != ScenarioKind::Churn {
        return Err(Error::new("--hours applies to the churn scenario only"));
    }
    let mut scenario = Scenario::new(cfg).map_err(|e| Error::new(format!("{e}")))?;
    let mut throttle = Throttle::default();
    let mut progress = |p: &Progress| {
        if !throttle.due(p.phase, p.wall, p.done == p.total) {
            return;
        }
        ProgressOut {
            event: "progress",
            phase: p.phase,
            done: p.done,
            total: p.total,
            sim_ms: p.sim_time.as_millis(),
            events: p.events,
            wall_ms: p.wall.as_millis(),
        }
        .print(out);
    };
    if let Some(hours) = args.hours {
        return run_hours(&mut scenario, hours, &mut progress, json);
    }
    let report = scenario
        .run(&mut progress)
        .map_err(|e| Error::new(format!("simulation failed: {e}")))?;
    if !json {
        println!("{report}");
    }
    println!("{}", report.to_json_line());
    Ok(())
}

/// `hdht sim holepunch-matrix`.
fn run_holepunch_matrix(args: SimArgs, out: Output, json: bool) -> Result<()> {
    let mut cfg = MatrixConfig::new(args.seed, args.seeds);
    if !args.client.is_empty() {
        cfg.clients = args.client.clone();
    }
    if !args.server.is_empty() {
        cfg.servers = args.server.clone();
    }
    cfg.run.rtt = Duration::from_millis(args.rtt);
    cfg.run.loss = args.loss.unwrap_or(cfg.run.loss);
    cfg.run.public_nodes = args.public_nodes;
    cfg.run.relay = args.relay;
    cfg.jobs = args.jobs;
    let mut throttle = Throttle::default();
    let mut progress = |p: &MatrixProgress| {
        if !throttle.due("holepunch", p.wall, p.done == p.total) {
            return;
        }
        ProgressOut {
            event: "progress",
            phase: "holepunch",
            done: p.done,
            total: p.total,
            sim_ms: p.sim_time.as_millis(),
            events: p.events,
            wall_ms: p.wall.as_millis(),
        }
        .print(out);
    };
    let mut pair = |p: &PairReport| {
        if json {
            println!("{}", p.to_json_line());
        }
    };
    let report = run_matrix(&cfg, &mut progress, &mut pair)
        .map_err(|e| Error::new(format!("simulation failed: {e}")))?;
    if !json {
        println!("{}", report.table());
    }
    println!("{}", report.to_json_line());
    Ok(())
}

/// `hdht sim flood`: `--nodes` honest nodes settle, `--lookups` node lookups are timed, then
/// `--liars` and `--silent` attackers join and the same lookups are timed again — once with
/// adaptive timeouts, once with the reference's fixed 1 s per transmission, from one seed.
fn run_flood_scenario(args: SimArgs, json: bool) -> Result<()> {
    use hdht_sim::scenario::flood::{run_flood, FloodConfig};
    let mut cfg = FloodConfig::new(args.seed);
    cfg.nodes = args.nodes;
    cfg.lookups = args.lookups;
    cfg.liars = args.liars;
    cfg.silent = args.silent;
    let r = run_flood(&cfg).map_err(|e| Error::new(format!("simulation failed: {e}")))?;
    if !json {
        for run in [&r.adaptive, &r.reference] {
            println!(
                "flood ({}): lookups unloaded p50 {:.0} ms p90 {:.0} ms; flooded p50 {:.0} ms \
                 p90 {:.0} ms (x{:.2} / x{:.2}); target found {}/{} unloaded, {}/{} flooded; \
                 unfinished {}; datagrams to dead addresses {}",
                if run.adaptive {
                    "adaptive timeouts"
                } else {
                    "reference timing"
                },
                run.unloaded.p50,
                run.unloaded.p90,
                run.flooded.p50,
                run.flooded.p90,
                run.ratio_p50(),
                run.ratio_p90(),
                run.found_unloaded,
                run.unloaded.count,
                run.found_flooded,
                run.flooded.count,
                run.unfinished,
                run.dead_sends
            );
        }
    }
    println!("{}", r.to_json_line());
    Ok(())
}

/// `hdht sim swarm`: `--peers` swarms behind `--nat` join one topic at the same instant; the
/// time until every pair that can connect shares exactly one connection (or, with
/// `--max-peers`, until every peer holds that many).
fn run_swarm_scenario(args: SimArgs, json: bool) -> Result<()> {
    use hdht_sim::scenario::swarm::{run_swarm, SwarmScenarioConfig};
    let nat = if args.nat.is_empty() {
        NatMix::open()
    } else {
        args.nat
            .join(",")
            .parse::<NatMix>()
            .map_err(|e| Error::new(format!("--nat: {e}")))?
    };
    let mut cfg = SwarmScenarioConfig::new(args.peers, nat, args.seed);
    cfg.rtt = Duration::from_millis(args.rtt);
    cfg.loss = args.loss.unwrap_or(0.0);
    cfg.public_nodes = args.public_nodes;
    cfg.max_peers = args.max_peers;
    cfg.relay = args.relay;
    cfg.progress = Some(|p| {
        // On stderr: stdout's last line stays the summary. `belowTarget`: of the peers below
        // their target (at most 100 counted), how many dial, have peers queued or waiting for
        // a retry, and over them the peers they are not connected to that refuse them (full)
        // or that they do not know.
        let b = &p.below_target;
        let count = |f: &dyn Fn(&hdht_sim::scenario::swarm::BelowTarget) -> usize| -> usize {
            b.iter().map(f).sum()
        };
        eprintln!(
            "{{\"event\":\"progress\",\"sinceJoinMs\":{},\"connectedPairs\":{},\"connectablePairs\":{},\"peersAtTarget\":{},\"peers\":{},\"wallMs\":{},\"belowTarget\":{{\"peers\":{},\"dialing\":{},\"withQueued\":{},\"withWaiting\":{},\"missing\":{},\"othersFull\":{},\"othersUnknown\":{},\"others\":{}}}}}",
            p.since_join.as_millis(),
            p.connected_pairs,
            p.connectable_pairs,
            p.peers_at_target,
            p.peers,
            p.wall.as_millis(),
            b.len(),
            count(&|x| usize::from(x.connecting > 0)),
            count(&|x| usize::from(x.queued > 0)),
            count(&|x| usize::from(x.waiting > 0)),
            count(&|x| x.target - x.degree),
            count(&|x| x.others_full),
            count(&|x| x.others_unknown),
            count(&|x| x.others),
        );
    });
    let run = run_swarm(&cfg).map_err(|e| Error::new(format!("simulation failed: {e}")))?;
    if !json {
        let ms = |d: Option<Duration>| {
            d.map_or("not reached".to_string(), |d| {
                format!("{:.2} s", d.as_secs_f64())
            })
        };
        println!(
            "swarm: {} peers ({}), {} pairs can connect, {} connected; target reached after {}, \
             every peer connected after {}; held: {}; duplicates dropped {}; dials {}",
            run.peers,
            run.nat,
            run.connectable_pairs,
            run.connected_pairs,
            ms(run.mesh_time),
            ms(run.all_connected_time),
            run.held,
            run.duplicates_dropped,
            run.dials
        );
    }
    println!("{}", run.to_json_line());
    Ok(())
}

/// `hdht sim churn --hours N`: one line per simulated hour, then a summary line with the
/// per-hour heap per node, the drift between the second and the last hour, and success rates.
fn run_hours(
    scenario: &mut Scenario,
    hours: u32,
    progress: &mut dyn FnMut(&Progress),
    json: bool,
) -> Result<()> {
    let mut on_hour = |h: &hdht_sim::scenario::long_churn::HourSample| {
        if json {
            println!("{}", h.to_json());
        } else {
            println!(
                "hour {:>3}  heap/node {:>7} B  alive {:>6}  crashed {:>5}  lookups {}/{}  node lookups {}/{}  announces {}/{}  table p50 {}  events {}  wall {:.1} s",
                h.hour,
                h.memory_per_node,
                h.alive,
                h.crashed,
                h.lookup.ok,
                h.lookup.total,
                h.node_lookup.ok,
                h.node_lookup.total,
                h.announce.ok,
                h.announce.total,
                h.table_median,
                h.events,
                h.wall.as_secs_f64()
            );
        }
    };
    let samples = scenario
        .run_hours(hours, progress, &mut on_hour)
        .map_err(|e| Error::new(format!("simulation failed: {e}")))?;
    let mem: Vec<String> = samples
        .iter()
        .map(|s| s.memory_per_node.to_string())
        .collect();
    let sum = |f: fn(&hdht_sim::scenario::long_churn::HourSample) -> (usize, usize)| {
        samples
            .iter()
            .map(f)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let (lok, lt) = sum(|s| (s.lookup.ok, s.lookup.total));
    let (nok, nt) = sum(|s| (s.node_lookup.ok, s.node_lookup.total));
    let (aok, at) = sum(|s| (s.announce.ok, s.announce.total));
    let crashed: usize = samples.iter().map(|s| s.crashed).sum();
    let drift = match (samples.get(1), samples.last()) {
        (Some(a), Some(b)) if a.memory_per_node > 0 => {
            b.memory_per_node as f64 / a.memory_per_node as f64
        }
        _ => 1.0,
    };
    println!(
        "{{\"scenario\":\"churn\",\"hours\":{},\"nodes\":{},\"seed\":{},\"traceHash\":\"{}\",\"crashed\":{},\"lookupOk\":{},\"lookups\":{},\"nodeLookupOk\":{},\"nodeLookups\":{},\"announceOk\":{},\"announces\":{},\"memoryPerNodeByHour\":[{}],\"memoryDriftSecondToLast\":{:.3},\"events\":{},\"wallMs\":{}}}",
        hours,
        scenario.sim().len(),
        scenario.sim().seed(),
        scenario.sim().trace().to_hex(),
        crashed,
        lok,
        lt,
        nok,
        nt,
        aok,
        at,
        mem.join(","),
        drift,
        samples.last().map_or(0, |s| s.events),
        samples.last().map_or(0, |s| s.wall.as_millis())
    );
    Ok(())
}
