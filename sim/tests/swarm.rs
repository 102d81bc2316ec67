//! The swarm scenario: peers behind a NAT mix join one topic at the same instant and end with
//! exactly one shared connection per pair that can connect, within seconds; a seed replays
//! the run byte for byte.

mod common;

use hdht_sim::scenario::swarm::{run_swarm, SwarmScenarioConfig};
use hdht_sim::scenario::NatMix;

#[test]
fn debug_small() {
    let nat: NatMix = "open:1,port-restricted:2,symmetric:1".parse().unwrap();
    let cfg = SwarmScenarioConfig::new(10, nat, 1);
    let run = run_swarm(&cfg).unwrap();
    println!("{}", run.to_json_line());
}
