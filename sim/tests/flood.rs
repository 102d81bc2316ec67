//! The valid-id flood scenario (issue 17): lookups under liars and silent joiners settle far
//! sooner with adaptive timeouts than with the reference's timing, and still find their
//! targets. Virtual time: the figures are deterministic for a seed.

use hdht_sim::scenario::flood::{run_flood, FloodConfig};

#[test]
fn lookups_under_a_valid_id_flood_stay_within_twice_their_unloaded_time() {
    let cfg = FloodConfig {
        nodes: 100,
        liars: 10,
        silent: 20,
        lookups: 20,
        seed: 1,
    };
    let r = run_flood(&cfg).expect("runs");
    for run in [&r.adaptive, &r.reference] {
        assert_eq!(run.unfinished, 0, "{}", r.to_json_line());
        assert_eq!(run.unloaded.count, 20);
        assert_eq!(run.found_unloaded, 20, "{}", r.to_json_line());
        assert_eq!(run.found_flooded, 20, "{}", r.to_json_line());
    }
    // The reference's timing stalls for seconds on the unresponsive entries...
    assert!(r.reference.ratio_p50() > 4.0, "{}", r.to_json_line());
    // ...adaptive timeouts keep the median lookup within 2x its unloaded time.
    assert!(r.adaptive.ratio_p50() <= 2.0, "{}", r.to_json_line());
    // Visits a lookup stopped waiting for still run out their retries (dead nodes leave
    // tables, referrers hear down hints), but the ones never heard from retry less.
    assert!(
        r.adaptive.dead_sends < r.reference.dead_sends,
        "{}",
        r.to_json_line()
    );
}
