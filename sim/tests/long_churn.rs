//! Hours of churn with memory per node flat (issue 17): 100 nodes, 10 % of them crashing and
//! coming back every simulated hour, three hours; heap per node sampled each hour. The
//! 1,000-node, 24-hour run is `hdht sim churn --nodes 1000 --hours 24` (`.ci/soak churn`).

use std::time::Duration;

use hdht_sim::replay::Replay;
use hdht_sim::scenario::{Scenario, ScenarioConfig, ScenarioKind};

#[global_allocator]
static ALLOC: hdht_sim::mem::CountingAlloc = hdht_sim::mem::CountingAlloc;

#[test]
fn three_hours_of_churn_keep_lookups_working_and_memory_per_node_flat() {
    let replay = Replay::new(
        "long_churn",
        "three_hours_of_churn_keep_lookups_working_and_memory_per_node_flat",
        1,
    );
    let seed = replay.seed();
    let mut cfg = ScenarioConfig::new(ScenarioKind::Churn, 100, seed);
    cfg.lookups = 40;
    cfg.announces = 10;
    cfg.settle = Duration::from_secs(30);
    let mut s = Scenario::new(cfg).expect("valid config");
    let hours = s
        .run_hours(3, &mut |_| {}, &mut |h| eprintln!("{}", h.to_json()))
        .expect("runs");
    assert_eq!(hours.len(), 3);
    for h in &hours {
        assert_eq!(h.crashed, 10, "hour {}", h.hour);
        assert_eq!(h.lookup.ok, h.lookup.total, "hour {}: {h:?}", h.hour);
        assert_eq!(
            h.node_lookup.ok, h.node_lookup.total,
            "hour {}: {h:?}",
            h.hour
        );
        assert_eq!(h.announce.ok, h.announce.total, "hour {}: {h:?}", h.hour);
        assert!(h.lookup.total >= 30, "hour {}: {h:?}", h.hour);
    }
    // Flat: after the first hour (tables and stores filled), heap per node moves by at most
    // 10 % — a leak of the in-flight or per-crash kind grows every hour.
    let first = hours[0].memory_per_node as f64;
    assert!(first > 0.0, "the counting allocator is installed");
    for h in &hours[1..] {
        let ratio = h.memory_per_node as f64 / first;
        assert!(
            ratio < 1.10,
            "hour {}: {} B/node vs {} B/node in hour 1 (×{ratio:.2})",
            h.hour,
            h.memory_per_node,
            first
        );
    }
}
