//! Whole-network behaviour of the dht-rpc core in the simulator.

use std::time::Duration;

use hdht_core::rpc::{NodeId, Persistence, RpcConfig, RpcEvent};
use hdht_sim::{LinkModel, Sim, SimNodeConfig};

fn network(seed: u64, n: usize, link: LinkModel) -> Sim {
    let mut sim = Sim::new(seed, link);
    let boot_addr = sim.next_server_addr();
    sim.add_node(SimNodeConfig { rpc: RpcConfig::bootstrapper(boot_addr) });
    for _ in 1..n {
        let rpc = RpcConfig { bootstrap: vec![boot_addr], persistence: Persistence::Persistent, ..RpcConfig::default() };
        sim.add_node(SimNodeConfig { rpc });
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(Duration::from_secs(30));
    sim
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn nodes_bootstrap_become_persistent_and_fill_tables() {
    let seed = 7;
    let mut sim = network(seed, 60, LinkModel::default());
    let mut persistent = 0;
    for h in 0..sim.len() {
        let node = sim.node(h);
        assert!(node.is_bootstrapped(), "seed {seed}: host {h} not bootstrapped");
        if !node.is_ephemeral() {
            persistent += 1;
            assert_eq!(node.id(), Some(NodeId::from_addr(&sim.server_addr(h))), "seed {seed}: host {h} id");
        }
        assert!(node.table().len() >= 20, "seed {seed}: host {h} table has only {}", node.table().len());
        let events = sim.take_events(h);
        assert!(events.contains(&RpcEvent::Ready), "seed {seed}: host {h} never ready");
    }
    assert_eq!(persistent, sim.len(), "seed {seed}: every open node becomes persistent");
}

#[test]
fn find_node_returns_the_true_closest_nodes() {
    let seed = 11;
    let mut sim = network(seed, 80, LinkModel::default());
    let target = NodeId([0x5a; 32]);
    let mut truth: Vec<NodeId> = (0..sim.len()).map(|h| NodeId::from_addr(&sim.server_addr(h))).collect();
    // The querying node itself never answers its own query.
    let own = NodeId::from_addr(&sim.server_addr(42));
    truth.retain(|id| *id != own);
    truth.sort_by(|a, b| target.cmp_distance(a, b));
    truth.truncate(20);
    let q = sim.with_node(42, |n, now| n.find_node(now, target));
    sim.run_for(Duration::from_secs(20));
    let done = sim
        .take_events(42)
        .into_iter()
        .find_map(|e| match e {
            RpcEvent::QueryDone { query, result } if query == q => Some(result),
            _ => None,
        })
        .expect("query finished");
    let result = done.expect("query succeeded");
    let found: Vec<NodeId> = result.closest_replies.iter().filter_map(|r| r.from_id).collect();
    assert_eq!(found, truth, "seed {seed}: closest replies differ from the true closest ids");
}

#[test]
fn same_seed_same_trace_different_seed_different_trace() {
    let a = network(3, 30, LinkModel { loss: 0.02, ..LinkModel::default() });
    let b = network(3, 30, LinkModel { loss: 0.02, ..LinkModel::default() });
    let c = network(4, 30, LinkModel { loss: 0.02, ..LinkModel::default() });
    assert_eq!(hex(&a.trace_hash()), hex(&b.trace_hash()), "seed 3 did not replay");
    assert_ne!(a.trace_hash(), c.trace_hash());
    assert_eq!(a.datagram_counts(), b.datagram_counts());
}
