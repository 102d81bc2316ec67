//! Hours of churn with memory per node flat (issue 17): 24 nodes, 10 % of them crashing and
//! coming back every simulated hour (half at a new address), three hours; heap per node
//! sampled each hour. Small so that a debug build runs it in seconds. The
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
    let mut cfg = ScenarioConfig::new(ScenarioKind::Churn, 24, seed);
    cfg.lookups = 20;
    cfg.announces = 5;
    cfg.settle = Duration::from_secs(30);
    let mut s = Scenario::new(cfg).expect("valid config");
    let hours = s
        .run_hours(3, &mut |_| {}, &mut |h| eprintln!("{}", h.to_json()))
        .expect("runs");
    assert_eq!(hours.len(), 3);
    for h in &hours {
        assert_eq!(h.crashed, 2, "hour {}", h.hour);
        assert_eq!(h.lookup.ok, h.lookup.total, "hour {}: {h:?}", h.hour);
        assert_eq!(
            h.node_lookup.ok, h.node_lookup.total,
            "hour {}: {h:?}",
            h.hour
        );
        assert_eq!(h.announce.ok, h.announce.total, "hour {}: {h:?}", h.hour);
        assert!(h.lookup.total >= 15, "hour {}: {h:?}", h.hour);
    }
    // Flat: the first hour fills tables, stores and round-trip estimators; after it, heap per
    // node stays within 30 % of the second hour's. At 24 nodes heap per node moves ±20 % from
    // hour to hour (vector capacities, records in flight), so this catches fast leaks — per
    // crash, per operation, per restart address — not slow ones: the 24-hour run at 1,000
    // nodes shows those (README, "Hours of churn").
    let second = hours[1].memory_per_node as f64;
    assert!(second > 0.0, "the counting allocator is installed");
    let ratio = hours[2].memory_per_node as f64 / second;
    assert!(
        ratio < 1.3,
        "hour 3: {} B/node vs {} B/node in hour 2 (×{ratio:.3})",
        hours[2].memory_per_node,
        second
    );
}
