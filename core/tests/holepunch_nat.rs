//! NAT classification, `connect::nat` (hyperdht `lib/nat.js`): cases worked out by hand from
//! `add`, `addSample`, `_updateFirewall` and `_updateAddresses`.

mod holepunch_common;

use std::net::{Ipv4Addr, SocketAddrV4};

use hdht_core::connect::nat::{coerce, firewall_from_wire_lenient, Nat};
use hdht_core::connect::Firewall;
use holepunch_common::{a, node};

/// Feed `(to, from-node-index)` samples into a firewalled Nat.
fn nat_with(samples: &[(&str, u8)]) -> Nat {
    let mut nat = Nat::new(true);
    for (to, from) in samples {
        nat.add(a(to), node(*from));
    }
    nat
}

fn addrs(nat: &Nat) -> Option<Vec<SocketAddrV4>> {
    nat.addresses().map(|x| x.to_vec())
}

#[test]
fn nat_starts_unknown_or_open() {
    let nat = Nat::new(true);
    assert_eq!(nat.firewall(), Firewall::Unknown);
    assert_eq!(nat.addresses(), None);
    assert!(!nat.is_settled());
    assert_eq!(Nat::new(false).firewall(), Firewall::Open);
}

#[test]
fn nat_fewer_than_three_samples_stay_unknown() {
    let nat = nat_with(&[("1.2.3.4:5000", 1), ("1.2.3.4:5000", 2)]);
    assert_eq!(nat.sampled(), 2);
    assert_eq!(nat.firewall(), Firewall::Unknown);
    assert_eq!(addrs(&nat), None);
    assert!(!nat.is_settled());
}

#[test]
fn nat_three_equal_samples_are_consistent_and_settle() {
    let nat = nat_with(&[
        ("1.2.3.4:5000", 1),
        ("1.2.3.4:5000", 2),
        ("1.2.3.4:5000", 3),
    ]);
    assert_eq!(nat.firewall(), Firewall::Consistent);
    assert_eq!(addrs(&nat), Some(vec![a("1.2.3.4:5000")]));
    assert!(
        nat.is_settled(),
        "CONSISTENT resolves `analyzing` before 4 samples"
    );
}

#[test]
fn nat_three_distinct_ports_are_random_with_port_zero() {
    let nat = nat_with(&[
        ("1.2.3.4:5000", 1),
        ("1.2.3.4:5001", 2),
        ("1.2.3.4:5002", 3),
    ]);
    assert_eq!(nat.firewall(), Firewall::Random);
    assert_eq!(addrs(&nat), Some(vec![a("1.2.3.4:0")]));
    assert!(!nat.is_settled(), "RANDOM waits for the 4th sample");
}

#[test]
fn nat_same_node_counts_once() {
    let mut nat = nat_with(&[("1.2.3.4:5000", 1)]);
    nat.add(a("1.2.3.4:5000"), node(1));
    nat.add(a("1.2.3.4:6000"), node(1));
    assert_eq!(nat.sampled(), 1);
    assert_eq!(nat.samples()[0].hits, 1);
}

#[test]
fn nat_max_two_single_host() {
    // A, A, B on one host: 3 samples, max 2, one host, not > 3 → undecided.
    let mut nat = nat_with(&[
        ("1.2.3.4:5000", 1),
        ("1.2.3.4:5000", 2),
        ("1.2.3.4:5001", 3),
    ]);
    assert_eq!(nat.firewall(), Firewall::Unknown);
    assert!(!nat.is_settled());
    // 4th on the same host, another port: one host and > 3 samples → RANDOM.
    nat.add(a("1.2.3.4:5002"), node(4));
    assert_eq!(nat.firewall(), Firewall::Random);
    assert_eq!(addrs(&nat), Some(vec![a("1.2.3.4:0")]));
    assert!(nat.is_settled());
}

#[test]
fn nat_double_hit_on_two_hosts_is_consistent() {
    // h1:p1 twice, h2:p2 once: second-best has 1 hit → undecided.
    let mut nat = nat_with(&[
        ("1.1.1.1:5000", 1),
        ("1.1.1.1:5000", 2),
        ("2.2.2.2:6000", 3),
    ]);
    assert_eq!(nat.firewall(), Firewall::Unknown);
    // h2:p2 again: two hosts, second-best seen twice → CONSISTENT; both advertised.
    nat.add(a("2.2.2.2:6000"), node(4));
    assert_eq!(nat.firewall(), Firewall::Consistent);
    assert_eq!(
        addrs(&nat),
        Some(vec![a("1.1.1.1:5000"), a("2.2.2.2:6000")])
    );
}

#[test]
fn nat_five_samples_without_decision_are_random() {
    let mut nat = nat_with(&[
        ("1.1.1.1:5000", 1),
        ("1.1.1.1:5000", 2),
        ("2.2.2.2:6000", 3),
        ("2.2.2.2:6001", 4),
    ]);
    // 4 samples, max 2, two hosts, second-best 1 hit, not > 4 → still undecided (but settled).
    assert_eq!(nat.firewall(), Firewall::Unknown);
    assert!(nat.is_settled());
    nat.add(a("3.3.3.3:7000"), node(5));
    assert_eq!(nat.firewall(), Firewall::Random);
    // RANDOM advertises the top host (h1 with 2 hits) with port 0.
    assert_eq!(addrs(&nat), Some(vec![a("1.1.1.1:0")]));
}

#[test]
fn nat_sample_ordering_and_consistent_addresses() {
    // p1, p2, p3, p3, p1, p1 → [p1:3, p3:2, p2:1] (bubbling; ties keep first-seen order).
    let mut nat = nat_with(&[
        ("1.2.3.4:1001", 1),
        ("1.2.3.4:1002", 2),
        ("1.2.3.4:1003", 3),
        ("1.2.3.4:1003", 4),
        ("1.2.3.4:1001", 5),
        ("1.2.3.4:1001", 6),
    ]);
    let order: Vec<(u16, u32)> = nat
        .samples()
        .iter()
        .map(|s| (s.addr.port(), s.hits))
        .collect();
    assert_eq!(order, vec![(1001, 3), (1003, 2), (1002, 1)]);
    assert_eq!(nat.firewall(), Firewall::Consistent);
    // Two most seen; p2 (1 hit) only while fewer than two are listed.
    assert_eq!(
        addrs(&nat),
        Some(vec![a("1.2.3.4:1001"), a("1.2.3.4:1003")])
    );
    // A third address seen twice is advertised too, after the first two.
    nat.add(a("1.2.3.4:1004"), node(7));
    nat.add(a("1.2.3.4:1004"), node(8));
    assert_eq!(
        addrs(&nat),
        Some(vec![
            a("1.2.3.4:1001"),
            a("1.2.3.4:1003"),
            a("1.2.3.4:1004")
        ])
    );
    // Host list: one host with 8 hits, port 0.
    assert_eq!(nat.host_samples().len(), 1);
    assert_eq!(nat.host_samples()[0].hits, 8);
    assert_eq!(nat.host_samples()[0].addr, a("1.2.3.4:0"));
}

#[test]
fn nat_consistent_with_one_stray_sample_lists_it_second() {
    let nat = nat_with(&[
        ("1.2.3.4:1001", 1),
        ("1.2.3.4:1001", 2),
        ("1.2.3.4:1001", 3),
        ("5.6.7.8:9", 4),
    ]);
    assert_eq!(nat.firewall(), Firewall::Consistent);
    assert_eq!(addrs(&nat), Some(vec![a("1.2.3.4:1001"), a("5.6.7.8:9")]));
}

#[test]
fn nat_freeze_and_unfreeze() {
    let mut nat = nat_with(&[("1.2.3.4:1", 1), ("1.2.3.4:1", 2), ("1.2.3.4:1", 3)]);
    nat.freeze();
    for i in 0..6u8 {
        nat.add(
            SocketAddrV4::new(Ipv4Addr::new(9, 9, 9, 9), 100 + u16::from(i)),
            node(10 + i),
        );
    }
    // Top is still 1.2.3.4:1 with 3 hits, so even unfrozen it stays CONSISTENT, but addresses are
    // recomputed then (the frozen ones were not touched meanwhile).
    assert_eq!(nat.firewall(), Firewall::Consistent);
    assert_eq!(addrs(&nat), Some(vec![a("1.2.3.4:1")]));
    nat.unfreeze();
    assert_eq!(addrs(&nat), Some(vec![a("1.2.3.4:1"), a("9.9.9.9:100")]));

    // A frozen RANDOM stays RANDOM even when later samples would make it CONSISTENT.
    let mut nat = nat_with(&[("1.2.3.4:1", 1), ("1.2.3.4:2", 2), ("1.2.3.4:3", 3)]);
    nat.freeze();
    for i in 0..3 {
        nat.add(a("1.2.3.4:1"), node(20 + i));
    }
    assert_eq!(nat.firewall(), Firewall::Random);
    nat.unfreeze();
    assert_eq!(nat.firewall(), Firewall::Consistent);
}

#[test]
fn nat_open_node_and_becoming_firewalled() {
    let mut nat = Nat::new(false);
    nat.add(a("1.2.3.4:1"), node(1));
    assert_eq!(nat.firewall(), Firewall::Open);
    assert!(nat.is_settled());
    assert_eq!(
        addrs(&nat),
        None,
        "the reference never sets addresses for OPEN"
    );
    // dht.firewalled flips: no update below 3 samples, so OPEN stays…
    nat.set_dht_firewalled(true);
    nat.add(a("1.2.3.4:1"), node(2));
    assert_eq!(nat.firewall(), Firewall::Open);
    // …until the 3rd: OPEN is reset to UNKNOWN, and A, A, B on one host is undecided.
    nat.add(a("1.2.3.4:2"), node(3));
    assert_eq!(nat.firewall(), Firewall::Unknown);
    assert_eq!(addrs(&nat), None);
    nat.add(a("1.2.3.4:1"), node(4));
    assert_eq!(nat.firewall(), Firewall::Consistent);
}

#[test]
fn nat_auto_sample_skips_recent_and_retries_once() {
    let nodes: Vec<SocketAddrV4> = (1..=10).map(node).collect();
    let mut nat = Nat::new(true);
    // ≥ 8 known: skip the 5 most recent, ping the next 4.
    let pings = nat.auto_sample(&nodes);
    assert_eq!(pings, nodes[5..9].to_vec());
    assert!(
        nat.auto_sample(&nodes).is_empty(),
        "auto-sampling runs once"
    );
    // Two answer, two time out → 2 samples < 4 → a second pass pings the one unvisited node.
    nat.add(a("1.2.3.4:1"), nodes[5]);
    assert!(nat.ping_done(&nodes).is_empty());
    nat.add(a("1.2.3.4:1"), nodes[6]);
    assert!(nat.ping_done(&nodes).is_empty());
    assert!(nat.ping_done(&nodes).is_empty());
    let second = nat.ping_done(&nodes);
    assert_eq!(second, vec![nodes[9]]);
    assert!(!nat.is_settled());
    // It times out: sampling exhausted → settled, still UNKNOWN.
    assert!(nat.ping_done(&nodes).is_empty());
    assert!(nat.is_settled());
    assert_eq!(nat.firewall(), Firewall::Unknown);
}

#[test]
fn nat_auto_sample_small_tables_and_empty() {
    let nodes: Vec<SocketAddrV4> = (1..=3).map(node).collect();
    let mut nat = Nat::new(true);
    assert_eq!(nat.auto_sample(&nodes), nodes, "< 8 known: nothing skipped");
    let mut nat = Nat::new(true);
    assert!(nat.auto_sample(&[]).is_empty());
    assert!(nat.is_settled(), "no node to ask: both passes end at once");
}

#[test]
fn nat_is_bounded_against_sample_floods() {
    let mut nat = Nat::new(true);
    for i in 0..10_000u32 {
        let from = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 1);
        nat.add(SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 + i), 1), from);
    }
    assert!(nat.sampled() <= hdht_core::connect::nat::MAX_SAMPLE_NODES);
    assert!(nat.samples().len() <= hdht_core::connect::nat::MAX_SAMPLE_NODES);
}

#[test]
fn firewall_helpers() {
    assert_eq!(coerce(Firewall::Open), Firewall::Consistent);
    assert_eq!(coerce(Firewall::Random), Firewall::Random);
    assert_eq!(firewall_from_wire_lenient(2), Firewall::Consistent);
    assert_eq!(firewall_from_wire_lenient(7), Firewall::Random);
}

/// Field failure of the reference (issue 17, item 5): the NAT sampler locking in CONSISTENT
/// after one lucky sample. A randomizing NAT (a new port per destination) whose mapping for one
/// destination happens to repeat a port ("lucky"), or one node answering several times, must
/// never read as CONSISTENT: that takes three distinct nodes agreeing, or two double hits on
/// two hosts. Seeded random ports, every prefix of the sample sequence checked.
#[test]
fn regression_nat_sampler_does_not_lock_consistent_after_one_lucky_sample() {
    let mut seed = 17u32;
    let mut next_port = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        10_000 + (seed >> 16) % 50_000
    };
    for lucky_at in 0..6u8 {
        let mut nat = Nat::new(true);
        let first = format!("1.2.3.4:{}", next_port());
        nat.add(a(&first), node(0));
        // The same node reporting the lucky address again counts once.
        nat.add(a(&first), node(0));
        nat.add(a(&first), node(0));
        assert_eq!(nat.sampled(), 1);
        for i in 1..8u8 {
            let to = if i == lucky_at {
                first.clone() // one coincidental repeat of the first port
            } else {
                format!("1.2.3.4:{}", next_port())
            };
            nat.add(a(&to), node(i));
            assert_ne!(
                nat.firewall(),
                Firewall::Consistent,
                "lucky sample at {lucky_at}, after {} samples: {:?}",
                nat.sampled(),
                nat.samples()
            );
        }
        assert_eq!(nat.firewall(), Firewall::Random, "lucky at {lucky_at}");
        assert_eq!(addrs(&nat), Some(vec![a("1.2.3.4:0")]));
    }
    // A frozen analysis (told to a peer) reclassifies as soon as it is unfrozen: an early
    // verdict is not locked in.
    let mut nat = nat_with(&[("1.2.3.4:5000", 1), ("1.2.3.4:5000", 2)]);
    nat.freeze();
    nat.add(a("1.2.3.4:5000"), node(3));
    assert_eq!(
        nat.firewall(),
        Firewall::Unknown,
        "frozen: not reclassified"
    );
    for i in 4..12u8 {
        nat.add(a(&format!("1.2.3.4:{}", 6000 + u32::from(i))), node(i));
    }
    nat.unfreeze();
    assert_eq!(nat.firewall(), Firewall::Consistent);
    assert_eq!(nat.samples()[0].hits, 3);
}
