//! Whole-network behaviour of the dht-rpc core in the simulator.

use std::time::Duration;

use hdht_core::rpc::{NodeId, Persistence, RpcConfig, RpcEvent};
use hdht_sim::{LinkModel, Sim, SimNodeConfig};

fn network(seed: u64, n: usize, link: LinkModel) -> Sim {
    let mut sim = Sim::new(seed, link);
    let boot_addr = sim.next_server_addr();
    sim.add_node(SimNodeConfig {
        rpc: RpcConfig::bootstrapper(boot_addr),
    });
    for _ in 1..n {
        let rpc = RpcConfig {
            bootstrap: vec![boot_addr],
            persistence: Persistence::Persistent,
            ..RpcConfig::default()
        };
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
        assert!(
            node.is_bootstrapped(),
            "seed {seed}: host {h} not bootstrapped"
        );
        if !node.is_ephemeral() {
            persistent += 1;
            assert_eq!(
                node.id(),
                Some(NodeId::from_addr(&sim.server_addr(h))),
                "seed {seed}: host {h} id"
            );
        }
        assert!(
            node.table().len() >= 20,
            "seed {seed}: host {h} table has only {}",
            node.table().len()
        );
        let events = sim.take_events(h);
        assert!(
            events.contains(&RpcEvent::Ready),
            "seed {seed}: host {h} never ready"
        );
    }
    assert_eq!(
        persistent,
        sim.len(),
        "seed {seed}: every open node becomes persistent"
    );
}

#[test]
fn find_node_returns_the_true_closest_nodes() {
    let seed = 11;
    let mut sim = network(seed, 80, LinkModel::default());
    let target = NodeId([0x5a; 32]);
    let mut truth: Vec<NodeId> = (0..sim.len())
        .map(|h| NodeId::from_addr(&sim.server_addr(h)))
        .collect();
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
    let found: Vec<NodeId> = result
        .closest_replies
        .iter()
        .filter_map(|r| r.from_id)
        .collect();
    assert_eq!(
        found, truth,
        "seed {seed}: closest replies differ from the true closest ids"
    );
}

#[test]
fn same_seed_same_trace_different_seed_different_trace() {
    let a = network(
        3,
        30,
        LinkModel {
            loss: 0.02,
            ..LinkModel::default()
        },
    );
    let b = network(
        3,
        30,
        LinkModel {
            loss: 0.02,
            ..LinkModel::default()
        },
    );
    let c = network(
        4,
        30,
        LinkModel {
            loss: 0.02,
            ..LinkModel::default()
        },
    );
    assert_eq!(
        hex(&a.trace_hash()),
        hex(&b.trace_hash()),
        "seed 3 did not replay"
    );
    assert_ne!(a.trace_hash(), c.trace_hash());
    assert_eq!(a.datagram_counts(), b.datagram_counts());
}

fn join_adaptive(sim: &mut Sim) -> usize {
    let boot = sim.server_addr(0);
    let h = sim.add_node(SimNodeConfig {
        rpc: RpcConfig {
            bootstrap: vec![boot],
            ..RpcConfig::default()
        },
    });
    sim.run_for(Duration::from_secs(10));
    h
}

#[test]
fn adaptive_nodes_pass_the_quick_firewall_test_then_become_persistent_after_about_20_minutes() {
    let seed = 21;
    let mut sim = network(seed, 30, LinkModel::default());
    let h = join_adaptive(&mut sim);
    let node = sim.node(h);
    assert!(node.is_bootstrapped());
    assert!(
        !node.is_firewalled(),
        "seed {seed}: the quick PING_NAT test unfirewalls an open node"
    );
    assert!(
        node.is_ephemeral(),
        "seed {seed}: but an adaptive node stays ephemeral at first"
    );
    sim.run_for(Duration::from_secs(15 * 60));
    assert!(
        sim.node(h).is_ephemeral(),
        "seed {seed}: still ephemeral after 15 minutes"
    );
    sim.run_for(Duration::from_secs(10 * 60));
    assert!(
        !sim.node(h).is_ephemeral(),
        "seed {seed}: persistent after the 240-tick stable period"
    );
    assert!(sim.take_events(h).contains(&RpcEvent::Persistent));
    assert_eq!(
        sim.node(h).id(),
        Some(NodeId::from_addr(&sim.server_addr(h)))
    );
}

/// Regression (found by `hdht doctor` on 127.0.0.1, one run in three): on a network of three
/// nodes the bootstrap query often ended before the reply to the quick PING_NAT arrived, so
/// the NAT test was skipped and an open node stayed firewalled until a later update (the
/// reference has the same race). The bootstrap now waits for the quick ping's outcome.
#[test]
fn on_a_tiny_network_the_quick_firewall_test_is_not_lost_to_the_bootstrap_query() {
    for seed in 1..=12 {
        let mut sim = network(seed, 3, LinkModel::default());
        let h = join_adaptive(&mut sim);
        let node = sim.node(h);
        assert!(node.is_bootstrapped(), "seed {seed}");
        assert!(
            !node.is_firewalled(),
            "seed {seed}: an open node on a 3-node network passes the quick firewall test"
        );
    }
}

#[test]
fn ephemeral_nodes_never_enter_routing_tables() {
    let seed = 5;
    let mut sim = network(seed, 25, LinkModel::default());
    let boot = sim.server_addr(0);
    let h = sim.add_node(SimNodeConfig {
        rpc: RpcConfig {
            bootstrap: vec![boot],
            persistence: Persistence::Ephemeral,
            ..RpcConfig::default()
        },
    });
    sim.run_for(Duration::from_secs(120));
    assert!(sim.node(h).is_ephemeral());
    assert!(
        sim.node(h).table().len() >= 20,
        "an ephemeral node still learns the network"
    );
    let addr = sim.server_addr(h);
    for other in 0..h {
        assert!(
            !sim.node(other).to_array().contains(&addr),
            "seed {seed}: host {other} stored an ephemeral node"
        );
    }
}

#[test]
fn a_dead_node_is_reported_with_down_hints_and_removed() {
    let seed = 13;
    let mut sim = network(seed, 12, LinkModel::default());
    let dead = 6;
    let dead_addr = sim.server_addr(dead);
    let holders_before = (0..sim.len())
        .filter(|&h| h != dead && sim.node(h).to_array().contains(&dead_addr))
        .count();
    assert!(holders_before >= 5);
    sim.kill(dead);
    let q = sim.with_node(3, |n, now| n.find_node(now, NodeId::from_addr(&dead_addr)));
    sim.run_for(Duration::from_secs(20));
    assert!(sim
        .take_events(3)
        .iter()
        .any(|e| matches!(e, RpcEvent::QueryDone { query, .. } if *query == q)));
    let holders_after = (0..sim.len())
        .filter(|&h| h != dead && sim.node(h).to_array().contains(&dead_addr))
        .count();
    assert_eq!(holders_after, 0, "seed {seed}: down hints and timeouts removed the dead node everywhere ({holders_before} held it)");
}

#[test]
fn a_long_pause_is_a_wakeup_and_adaptive_nodes_turn_ephemeral() {
    let seed = 17;
    let mut sim = network(seed, 20, LinkModel::default());
    let h = join_adaptive(&mut sim);
    sim.run_for(Duration::from_secs(25 * 60));
    assert!(!sim.node(h).is_ephemeral());
    let _ = sim.take_events(h);
    // Feed the node a timer far in the future, as after a laptop sleep.
    let tick_before = sim.node(h).tick();
    sim.with_node(h, |n, now| n.handle_timeout(now + Duration::from_secs(600)));
    let events = sim.take_events(h);
    assert!(events.contains(&RpcEvent::Wakeup), "{events:?}");
    assert!(events.contains(&RpcEvent::Ephemeral));
    assert!(sim.node(h).is_ephemeral());
    let t = sim.node(h).tick();
    assert!(
        (tick_before + 719..=tick_before + 726).contains(&t) && t % 8 == 6,
        "tick {tick_before} -> {t}"
    );
}
