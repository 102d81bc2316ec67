//! The simulator's own speed and memory: `hdht sim lookup` (the lookup scenario with its CLI
//! defaults: 100 announces, 1000 record lookups, 250 node lookups, all nodes open) at 1,000
//! and 10,000 nodes, printing events per second, wall time, heap per node, peak heap, whether
//! every operation succeeded, and the trace hash (the same every run of a seed).
//!
//! ```text
//! cargo bench -p hdht-sim --bench lookup
//! HDHT_SIM_BENCH_NODES=1000,10000,100000 cargo bench -p hdht-sim --bench lookup
//! HDHT_SIM_BENCH_SEED=7 cargo bench -p hdht-sim --bench lookup
//! ```
//!
//! Heap is counted by the allocator installed below (live bytes at the end of the run divided
//! by the node count, as `hdht sim` reports it). The issue 16 targets are printed beside the
//! figures: ≥ 1 M events/s, 10,000 nodes in < 10 s wall. Wall-clock figures depend on the
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
    println!("hdht-sim lookup scenario, seed {seed} (targets: >= 1,000,000 events/s; 10,000 nodes < 10 s wall)");
    println!(
        "{:>8} {:>11} {:>12} {:>9} {:>13} {:>14} {:>8}  trace",
        "nodes", "events", "events/s", "wall s", "heap/node B", "peak heap MB", "all ok"
    );
    for nodes in sizes {
        let mut cfg = ScenarioConfig::new(ScenarioKind::Lookup, nodes, seed);
        // The CLI defaults of `hdht sim lookup`.
        cfg.lookups = 1000;
        cfg.announces = 100;
        let mut scenario = match Scenario::new(cfg) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{nodes} nodes: {e}");
                std::process::exit(2);
            }
        };
        let start = Instant::now();
        let report = match scenario.run(&mut |_| {}) {
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
        println!(
            "{:>8} {:>11} {:>12.0} {:>9.2} {:>13} {:>14.1} {:>8}  {}",
            nodes,
            report.events,
            report.events as f64 / wall.as_secs_f64(),
            wall.as_secs_f64(),
            report.memory_per_node,
            hdht_sim::mem::peak_heap_bytes() as f64 / 1e6,
            all_ok,
            report.trace_hash
        );
    }
}
