//! The swarm scenario: peers behind a NAT mix join one topic at the same instant and end with
//! exactly one shared connection per pair that can connect, within seconds; a seed replays
//! the run byte for byte.

mod common;

use hdht_sim::scenario::swarm::{run_swarm, SwarmScenarioConfig};
use hdht_sim::scenario::NatMix;

#[test]
fn debug_small() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let nat: NatMix = std::env::var("NAT")
        .unwrap_or("open:1,port-restricted:2,symmetric:1".into())
        .parse()
        .unwrap();
    let mut cfg = SwarmScenarioConfig::new(n, nat, 1);
    if let Some(t) = std::env::var("T").ok().and_then(|v| v.parse().ok()) {
        cfg.mesh_timeout = std::time::Duration::from_secs(t);
    }
    let run = run_swarm(&cfg).unwrap();
    println!("{}", run.to_json_line());
}
