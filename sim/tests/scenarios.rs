//! Whole-network scenarios, small enough for a debug-build CI run. Every test prints its seed
//! and a replay command when it fails; `HDHT_SIM_SEED=<n>` reruns it with another seed.
//! The 10,000-node figures come from `cargo run --release -p hdht-sim --example scale`.

use std::time::Duration;

use hdht_core::rpc::{NodeId, Persistence, RpcConfig};
use hdht_sim::nat::{Filtering, NatConfig};
use hdht_sim::replay::Replay;
use hdht_sim::scenario::{NatMix, Report, Scenario, ScenarioConfig, ScenarioKind};
use hdht_sim::{DropReason, LinkModel, NatPreset, RealmId, Sim, SimNodeConfig};

/// Small, fast timelines for debug builds.
fn small(kind: ScenarioKind, nodes: usize, seed: u64) -> ScenarioConfig {
    let mut c = ScenarioConfig::new(kind, nodes, seed);
    c.lookups = 100;
    c.announces = 20;
    c.settle = Duration::from_secs(20);
    c.lookup_window = Duration::from_secs(20);
    c.drain = Duration::from_secs(15);
    c.partition_for = Duration::from_secs(40);
    c.convergence_sample = 20;
    c
}

fn run(cfg: ScenarioConfig) -> (Scenario, Report) {
    let mut s = Scenario::new(cfg).expect("valid config");
    let r = s.run(&mut |_| {}).expect("network builds");
    (s, r)
}

#[test]
fn nodes_bootstrap_and_routing_tables_converge() {
    let replay = Replay::new(
        "scenarios",
        "nodes_bootstrap_and_routing_tables_converge",
        101,
    );
    let (_, r) = run(small(ScenarioKind::Bootstrap, 200, replay.seed()));
    println!("{r}");
    assert_eq!(r.bootstrapped, 1.0, "every node bootstrapped");
    assert_eq!(r.persistent, 200, "every open node is persistent");
    assert!(
        r.convergence >= 0.95,
        "tables hold their k closest nodes: {}",
        r.convergence
    );
    assert!(r.table_size.p50 >= 20.0);
    assert_eq!(
        r.node_lookup.rate(),
        1.0,
        "FIND_NODE finds every live node id: {:?}",
        r.node_lookup
    );
    assert!(r.node_lookup.total >= 90);
    assert!(r.hops.mean >= 1.0);
}

#[test]
fn lookups_from_random_nodes_find_announced_records() {
    let replay = Replay::new(
        "scenarios",
        "lookups_from_random_nodes_find_announced_records",
        102,
    );
    let (s, r) = run(small(ScenarioKind::Lookup, 200, replay.seed()));
    println!("{r}");
    assert_eq!(r.announce.rate(), 1.0);
    assert!(
        s.workload().stored() >= 20 * 15,
        "each record sits on about k nodes: {}",
        s.workload().stored()
    );
    assert_eq!(r.lookup.rate(), 1.0, "{:?}", r.lookup);
    assert_eq!(r.lookup.total, 100);
    assert!(
        r.latency_ms.p50 > 0.0 && r.latency_ms.p99 < 5000.0,
        "{:?}",
        r.latency_ms
    );
    assert!(r.replies.mean >= 10.0);
}

#[test]
fn lookups_succeed_while_ten_percent_of_nodes_churn() {
    let replay = Replay::new(
        "scenarios",
        "lookups_succeed_while_ten_percent_of_nodes_churn",
        103,
    );
    let mut cfg = small(ScenarioKind::Churn, 200, replay.seed());
    cfg.churn = 0.1;
    let (s, r) = run(cfg);
    println!("{r}");
    assert_eq!(r.crashed, 20);
    assert!(r.lookup.rate() >= 0.97, "{:?}", r.lookup);
    assert!(r.node_lookup.rate() >= 0.9, "{:?}", r.node_lookup);
    let alive = (0..s.sim().len()).filter(|&h| s.sim().is_alive(h)).count();
    assert_eq!(alive, 200, "crashed nodes came back");
}

#[test]
fn lookups_succeed_with_five_percent_loss() {
    let replay = Replay::new("scenarios", "lookups_succeed_with_five_percent_loss", 104);
    let mut cfg = small(ScenarioKind::Lookup, 200, replay.seed());
    cfg.loss = 0.05;
    let (_, r) = run(cfg);
    println!("{r}");
    assert!(r.net.dropped(DropReason::Loss) > 100, "loss applied");
    assert!(r.lookup.rate() >= 0.97, "{:?}", r.lookup);
}

#[test]
fn a_partition_heals() {
    let replay = Replay::new("scenarios", "a_partition_heals", 105);
    let (_, r) = run(small(ScenarioKind::Partition, 200, replay.seed()));
    println!("{r}");
    assert!(
        r.net.dropped(DropReason::Partition) > 100,
        "the partition dropped traffic"
    );
    assert!(r.partition_lookup.total >= 90);
    assert!(r.lookup.rate() >= 0.97, "after healing: {:?}", r.lookup);
}

/// What the reference's firewall test implies for each NAT preset (spec §8.5): a node is
/// reachable only if PING_NAT replies sent to `public host : local server port` reach its
/// server socket. A dht-rpc node never sends from its server socket while firewalled (requests
/// leave from the client socket), so no NAT has a mapping for the server port, and even a
/// port-preserving full-cone NAT drops those replies: every NAT'd node stays firewalled and
/// ephemeral. The samples its peers report carry the *client* socket's public port (or, behind
/// address-dependent mappings, varying ports), which is never the server port either. A node
/// behind a NAT passes only when a mapping for its server port exists with the same public
/// port — a port forward (see the next test) — and then it *is* reachable: that is the
/// legitimate pass of a port-preserving full-cone NAT.
#[test]
fn nodes_behind_nats_stay_firewalled_and_ephemeral_while_open_nodes_become_persistent() {
    let replay = Replay::new(
        "scenarios",
        "nodes_behind_nats_stay_firewalled_and_ephemeral_while_open_nodes_become_persistent",
        106,
    );
    let mut cfg = small(ScenarioKind::Lookup, 140, replay.seed());
    cfg.nat = NatMix::uniform(&NatPreset::ALL);
    cfg.announces = 5;
    cfg.lookups = 30;
    let (s, r) = run(cfg);
    println!("{r}");
    let sim = s.sim();
    let mut seen = std::collections::BTreeSet::new();
    let mut nat_tables = Vec::new();
    for h in 0..sim.len() {
        let preset = s.preset(h).expect("placed");
        seen.insert(preset);
        let node = sim.node(h);
        assert!(node.is_bootstrapped(), "host {h} ({preset}) bootstrapped");
        if preset == NatPreset::Open {
            assert!(
                !node.is_firewalled() && !node.is_ephemeral(),
                "open host {h} is persistent"
            );
            assert_eq!(node.id(), Some(NodeId::from_addr(&sim.server_addr(h))));
        } else {
            assert!(
                node.is_firewalled(),
                "host {h} behind {preset} is firewalled"
            );
            assert!(node.is_ephemeral(), "host {h} behind {preset} is ephemeral");
            assert!(
                !node.table().is_empty(),
                "host {h} behind {preset} knows some nodes"
            );
            nat_tables.push(node.table().len());
        }
    }
    nat_tables.sort_unstable();
    assert_eq!(
        nat_tables[nat_tables.len() / 2],
        r.persistent,
        "NAT'd nodes learn every persistent node (median)"
    );
    assert_eq!(seen.len(), NatPreset::ALL.len(), "every preset was drawn");
    assert_eq!(r.nat_classification, 1.0);
    // Lookups are issued from NAT'd nodes too (clients): they work through their mappings.
    assert!(r.lookup.rate() >= 0.97, "{:?}", r.lookup);
    assert!(
        r.net.dropped(DropReason::NatNoMapping) > 0,
        "PING_NAT replies died at the NATs"
    );
}

/// The same under the reference's default (adaptive) persistence: open nodes pass the quick
/// test and turn persistent after ~20 minutes; NAT'd ones never do.
#[test]
fn adaptive_nodes_behind_nats_stay_ephemeral_after_the_stable_period() {
    let replay = Replay::new(
        "scenarios",
        "adaptive_nodes_behind_nats_stay_ephemeral_after_the_stable_period",
        107,
    );
    let mut sim = Sim::new(replay.seed(), LinkModel::default());
    let boot = sim.next_server_addr();
    sim.add_node(SimNodeConfig {
        rpc: RpcConfig::bootstrapper(boot),
    });
    for _ in 0..12 {
        let rpc = RpcConfig {
            bootstrap: vec![boot],
            persistence: Persistence::Persistent,
            ..RpcConfig::default()
        };
        sim.add_node(SimNodeConfig { rpc });
        sim.run_for(Duration::from_millis(200));
    }
    let mut placed = Vec::new();
    for preset in NatPreset::ALL {
        let (realm, _) = sim.add_preset(preset, None).unwrap();
        let h = sim
            .add_node_in(
                realm,
                SimNodeConfig {
                    rpc: RpcConfig {
                        bootstrap: vec![boot],
                        ..RpcConfig::default()
                    },
                },
            )
            .unwrap();
        placed.push((h, preset));
        sim.run_for(Duration::from_millis(200));
    }
    sim.run_for(Duration::from_secs(25 * 60));
    for (h, preset) in placed {
        let n = sim.node(h);
        if preset == NatPreset::Open {
            assert!(
                !n.is_ephemeral() && !n.is_firewalled(),
                "open adaptive node persistent"
            );
        } else {
            assert!(
                n.is_firewalled() && n.is_ephemeral(),
                "{preset}: firewalled {} ephemeral {}",
                n.is_firewalled(),
                n.is_ephemeral()
            );
        }
    }
}

#[test]
fn a_port_forward_on_a_full_cone_nat_legitimately_passes_the_firewall_test() {
    let replay = Replay::new(
        "scenarios",
        "a_port_forward_on_a_full_cone_nat_legitimately_passes_the_firewall_test",
        108,
    );
    let mut sim = Sim::new(replay.seed(), LinkModel::default());
    let boot = sim.next_server_addr();
    sim.add_node(SimNodeConfig {
        rpc: RpcConfig::bootstrapper(boot),
    });
    for _ in 0..10 {
        let rpc = RpcConfig {
            bootstrap: vec![boot],
            persistence: Persistence::Persistent,
            ..RpcConfig::default()
        };
        sim.add_node(SimNodeConfig { rpc });
        sim.run_for(Duration::from_millis(200));
    }
    sim.run_for(Duration::from_secs(5));
    let mut result = Vec::new();
    for forward in [false, true] {
        let nat = sim
            .add_nat(
                NatConfig::cone(Filtering::EndpointIndependent),
                RealmId::INTERNET,
            )
            .unwrap();
        let realm = sim.net().nat_inside(nat).unwrap();
        let local =
            std::net::SocketAddrV4::new(sim.net().peek_ip(realm).unwrap(), hdht_sim::SERVER_PORT);
        if forward {
            sim.net_mut()
                .nat_mut(nat)
                .unwrap()
                .forward(hdht_sim::SERVER_PORT, local)
                .unwrap();
        }
        let rpc = RpcConfig {
            bootstrap: vec![boot],
            persistence: Persistence::Persistent,
            ..RpcConfig::default()
        };
        let h = sim.add_node_in(realm, SimNodeConfig { rpc }).unwrap();
        sim.run_for(Duration::from_secs(20));
        let public =
            std::net::SocketAddrV4::new(sim.nat(nat).unwrap().public_ip(), hdht_sim::SERVER_PORT);
        result.push((
            sim.node(h).is_firewalled(),
            sim.node(h).id() == Some(NodeId::from_addr(&public)),
        ));
    }
    assert_eq!(
        result,
        vec![(true, false), (false, true)],
        "without / with the forward"
    );
}

#[test]
fn a_nat_that_rebinds_mid_run_keeps_its_nodes_working() {
    let replay = Replay::new(
        "scenarios",
        "a_nat_that_rebinds_mid_run_keeps_its_nodes_working",
        109,
    );
    let mut sim = Sim::new(replay.seed(), LinkModel::default());
    let boot = sim.next_server_addr();
    sim.add_node(SimNodeConfig {
        rpc: RpcConfig::bootstrapper(boot),
    });
    for _ in 0..25 {
        let rpc = RpcConfig {
            bootstrap: vec![boot],
            persistence: Persistence::Persistent,
            ..RpcConfig::default()
        };
        sim.add_node(SimNodeConfig { rpc });
        sim.run_for(Duration::from_millis(100));
    }
    let nat = sim
        .add_nat(
            NatConfig::cone(Filtering::AddressAndPortDependent),
            RealmId::INTERNET,
        )
        .unwrap();
    let realm = sim.net().nat_inside(nat).unwrap();
    let h = sim
        .add_node_in(
            realm,
            SimNodeConfig {
                rpc: RpcConfig {
                    bootstrap: vec![boot],
                    ..RpcConfig::default()
                },
            },
        )
        .unwrap();
    sim.run_for(Duration::from_secs(30));
    let before = sim.nat(nat).unwrap().dump(sim.now());
    assert!(!before.is_empty());
    sim.rebind_nat(nat).unwrap();
    let after = sim.nat(nat).unwrap().dump(sim.now());
    assert_eq!(before.len(), after.len());
    assert!(
        before
            .iter()
            .zip(&after)
            .all(|(a, b)| a.0 == b.0 && a.1 != b.1),
        "every public port moved"
    );
    let _ = sim.take_events(h);
    let target = NodeId::from_addr(&sim.server_addr(7));
    let q = sim.with_node(h, |n, now| n.find_node(now, target));
    sim.run_for(Duration::from_secs(20));
    let ok = sim.take_events(h).into_iter().any(|e| match e {
        hdht_core::rpc::RpcEvent::QueryDone {
            query,
            result: Ok(r),
        } if query == q => r.closest_replies.first().and_then(|c| c.from_id) == Some(target),
        _ => false,
    });
    assert!(ok, "a lookup after the rebinding finds its target");
}

#[test]
fn duplication_reordering_and_jitter_do_not_break_lookups_and_oversized_datagrams_are_dropped() {
    let replay = Replay::new("scenarios", "duplication_reordering_and_jitter_do_not_break_lookups_and_oversized_datagrams_are_dropped", 110);
    let mut cfg = small(ScenarioKind::Lookup, 40, replay.seed());
    cfg.link.duplicate = 0.05;
    cfg.link.reorder = 0.1;
    cfg.link.jitter = Duration::from_millis(40);
    cfg.lookups = 20;
    cfg.announces = 5;
    let (_, r) = run(cfg);
    assert!(r.net.duplicated > 100);
    assert_eq!(r.lookup.rate(), 1.0, "{:?}", r.lookup);
    // With a 120-byte MTU, replies carrying 20 closer nodes no longer fit.
    let mut sim = Sim::new(
        replay.seed(),
        LinkModel {
            mtu: 120,
            ..LinkModel::default()
        },
    );
    let boot = sim.next_server_addr();
    sim.add_node(SimNodeConfig {
        rpc: RpcConfig::bootstrapper(boot),
    });
    for _ in 0..25 {
        sim.add_node(SimNodeConfig {
            rpc: RpcConfig {
                bootstrap: vec![boot],
                persistence: Persistence::Persistent,
                ..RpcConfig::default()
            },
        });
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(Duration::from_secs(10));
    assert!(sim.stats().dropped(DropReason::Mtu) > 0);
}

#[test]
fn same_seed_same_report_different_seed_different_trace() {
    let replay = Replay::new(
        "scenarios",
        "same_seed_same_report_different_seed_different_trace",
        111,
    );
    let seed = replay.seed();
    let cfg = |s| {
        let mut c = small(ScenarioKind::Churn, 30, s);
        c.nat = NatMix::uniform(&[
            NatPreset::Open,
            NatPreset::PortRestricted,
            NatPreset::Symmetric,
        ]);
        c.loss = 0.02;
        c.lookups = 15;
        c.announces = 4;
        c
    };
    let (_, a) = run(cfg(seed));
    let (_, b) = run(cfg(seed));
    let (_, c) = run(cfg(seed.wrapping_add(1)));
    assert_eq!(a.trace_hash, b.trace_hash, "seed {seed} did not replay");
    assert_eq!((a.net, a.lookup, a.events), (b.net, b.lookup, b.events));
    assert_ne!(a.trace_hash, c.trace_hash);
    let line = a.to_json_line();
    assert!(line.starts_with('{') && line.ends_with('}') && !line.contains('\n'));
    assert!(line.contains(&format!("\"seed\":{seed},")));
    assert!(line.contains(&format!("\"traceHash\":\"{}\"", a.trace_hash)));
    assert!(line.contains("\"lookupSuccess\":"));
}
