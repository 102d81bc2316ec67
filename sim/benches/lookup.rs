//! The simulator's own speed and memory: `hdht sim lookup` (the lookup scenario with its CLI
//! defaults: 100 announces, 1000 record lookups, 250 node lookups, all nodes open) at 1,000
//! and 10,000 nodes, printing events per second, wall time, heap per node, peak heap, whether
//! every operation succeeded, and the trace hash (the same every run of a seed).
//!
//! ```text
//! cargo bench -p hdht-sim --bench lookup
//! HDHT_SIM_BENCH_NODES=1000,10000,100000 cargo bench -p hdht-sim --bench lookup
//! HDHT_SIM_BENCH_SEED=7 cargo bench -p hdht-sim --bench lookup
//! HDHT_SIM_BENCH_PHASES=1 cargo bench -p hdht-sim --bench lookup   # heap at every phase step
//! ```
//!
//! Heap is counted by the allocator installed below (live bytes at the end of the run divided
//! by the node count, as `hdht sim` reports it). The issue 16 targets are printed beside the
//! figures as ratios (above 1 meets them): `x 1M/s` is events/s over 1,000,000, `x goal` the
//! wall-time goal scaled from 10,000 nodes in 10 s (n / 1,000 seconds) over the wall time.
//! An event is a datagram arrival or a timer that ran; idle nodes ask for no timer (their
//! 750 ms drains run late, see `RpcNode::poll_timeout`), so the event count measures work,
//! and wall time is the figure to compare across versions. Wall-clock figures depend on the
//! machine and on what else runs on it; the trace hash and the event count do not.

use std::time::Instant;

use hdht_sim::scenario::{Scenario, ScenarioConfig, ScenarioKind};

#[global_allocator]
static ALLOC: hdht_sim::mem::CountingAlloc = hdht_sim::mem::CountingAlloc;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported (run everything).
    let sizes: Vec<usize> = std::env::var("HDHT_SIM_BENCH_NODES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000]);
    let seed: u64 = std::env::var("HDHT_SIM_BENCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    println!("hdht-sim lookup scenario, seed {seed} (targets: >= 1,000,000 events/s; 10,000 nodes < 10 s wall; 100,000 nodes within 2.5 GB)");
    println!(
        "{:>8} {:>11} {:>12} {:>8} {:>9} {:>8} {:>13} {:>14} {:>8}  trace",
        "nodes",
        "events",
        "events/s",
        "x 1M/s",
        "wall s",
        "x goal",
        "heap/node B",
        "peak heap MB",
        "all ok"
    );
    for nodes in sizes {
        let mut cfg = ScenarioConfig::new(ScenarioKind::Lookup, nodes, seed);
        // The CLI defaults of `hdht sim lookup`.
        cfg.lookups = 1000;
        cfg.announces = 100;
        // HDHT_SIM_BENCH_JOIN_BATCH=N: nodes joining together every 20 ms (default n / 1,000).
        if let Some(b) = std::env::var("HDHT_SIM_BENCH_JOIN_BATCH")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            cfg.join_batch = b;
        }
        let mut scenario = match Scenario::new(cfg) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{nodes} nodes: {e}");
                std::process::exit(2);
            }
        };
        let start = Instant::now();
        // HDHT_SIM_BENCH_PHASES=1: live and peak heap at every progress step, on stderr.
        let phases = std::env::var_os("HDHT_SIM_BENCH_PHASES").is_some();
        let mut progress = |p: &hdht_sim::scenario::Progress| {
            if phases {
                eprintln!(
                    "{nodes} nodes: {} {}/{} at {:.1} s virtual, {} events, live heap {:.1} MB, peak {:.1} MB, rss {:.1} MB",
                    p.phase,
                    p.done,
                    p.total,
                    p.sim_time.as_secs_f64(),
                    p.events,
                    hdht_sim::mem::live_bytes().0 as f64 / 1e6,
                    hdht_sim::mem::peak_heap_bytes() as f64 / 1e6,
                    hdht_sim::mem::rss_bytes().unwrap_or(0) as f64 / 1e6,
                );
            }
        };
        let report = match scenario.run(&mut progress) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{nodes} nodes: simulation failed: {e}");
                std::process::exit(1);
            }
        };
        let wall = start.elapsed();
        let all_ok = report.announce.ok == report.announce.total
            && report.lookup.ok == report.lookup.total
            && report.node_lookup.ok == report.node_lookup.total;
        let events_per_sec = report.events as f64 / wall.as_secs_f64();
        // The wall-time goal scales with the node count from 10,000 nodes in 10 s (a ratio
        // above 1 meets it).
        let wall_goal = nodes as f64 / 1000.0;
        println!(
            "{:>8} {:>11} {:>12.0} {:>8.2} {:>9.2} {:>8.2} {:>13} {:>14.1} {:>8}  {}",
            nodes,
            report.events,
            events_per_sec,
            events_per_sec / 1e6,
            wall.as_secs_f64(),
            wall_goal / wall.as_secs_f64(),
            report.memory_per_node,
            hdht_sim::mem::peak_heap_bytes() as f64 / 1e6,
            all_ok,
            report.trace_hash
        );
    }
}
