//! The pure holepunch building blocks: `connect::nat` (hyperdht `lib/nat.js`) and
//! `connect::puncher` (`lib/holepuncher.js` plus the round logic of `connect.js`/`server.js`).
//!
//! Classification cases are worked out by hand from `nat.js` (`add`, `addSample`,
//! `_updateFirewall`, `_updateAddresses`); schedules from `holepuncher.js`; and a deterministic
//! mini network at the end (two punchers, each behind a simply modelled NAT) shows
//! consistent×consistent and consistent×random punches succeeding and random×random failing fast.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdht_core::connect::nat::{coerce, firewall_from_wire_lenient, Nat};
use hdht_core::connect::puncher::{
    abort_payload, pick_server_relay, try_later_delay, Analysis, ProbeVerdict, Puncher,
    PuncherConfig, PuncherOutput, RandomPunchLimiter, RemoteUpdate, ReplyStatus, Strategy,
    BIRTHDAY_SOCKETS, DEFAULT_TTL, HOLEPUNCH_TTL, RANDOM_PROBES,
};
use hdht_core::connect::{ConnectError, ErrorCode, Firewall, HolepunchPayload, RelayInfo};
use hdht_core::udx::SocketId;
use hdht_core::Instant;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn a(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

fn node(i: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, i), 49737)
}

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

// ------------------------------------------------------------------------------------ nat.js

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

// ------------------------------------------------------------------------------------ puncher

const S0: SocketId = SocketId(100);

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn drain(p: &mut Puncher) -> Vec<PuncherOutput> {
    std::iter::from_fn(|| p.poll_output()).collect()
}

fn probes(outs: &[PuncherOutput]) -> Vec<(SocketId, SocketAddrV4, u8)> {
    outs.iter()
        .filter_map(|o| match o {
            PuncherOutput::Probe { socket, to, ttl } => Some((*socket, *to, *ttl)),
            _ => None,
        })
        .collect()
}

/// A puncher whose own NAT is `local` (Open = not firewalled), with no sampling nodes, fed
/// three samples to classify it, and remote state `remote` with the given addresses.
fn puncher(
    initiator: bool,
    local: Firewall,
    remote: Firewall,
    remote_addrs: &[SocketAddrV4],
    verified: bool,
) -> Puncher {
    let config = PuncherConfig {
        initiator,
        dht_firewalled: local != Firewall::Open,
        remote_firewall: Firewall::Unknown,
    };
    let mut p = Puncher::new(config, S0, &[], &mut rng(1));
    for i in 0..3u8 {
        let to = match local {
            Firewall::Random => SocketAddrV4::new(Ipv4Addr::new(7, 7, 7, 7), 2000 + u16::from(i)),
            Firewall::Unknown => return finish(p, remote, remote_addrs, verified),
            _ => a("7.7.7.7:2000"),
        };
        p.add_sample(to, node(i + 1));
    }
    finish(p, remote, remote_addrs, verified)
}

fn finish(
    mut p: Puncher,
    remote: Firewall,
    remote_addrs: &[SocketAddrV4],
    verified: bool,
) -> Puncher {
    p.update_remote(RemoteUpdate {
        punching: true,
        firewall: remote,
        addresses: Some(remote_addrs),
        verified: if verified {
            remote_addrs.first().map(|a| *a.ip())
        } else {
            None
        },
    });
    drain(&mut p);
    p
}

#[test]
fn strategy_selection_matrix() {
    use Firewall::*;
    let ra = [a("9.9.9.9:4000")];
    let cases: &[(Firewall, Firewall, bool, Result<Strategy, ConnectError>)] = &[
        (Consistent, Consistent, false, Ok(Strategy::Consistent)),
        (Open, Consistent, false, Ok(Strategy::Consistent)),
        (Consistent, Open, false, Ok(Strategy::Consistent)),
        (Open, Open, false, Ok(Strategy::Consistent)),
        (Consistent, Random, true, Ok(Strategy::RandomProbes)),
        (Open, Random, true, Ok(Strategy::RandomProbes)),
        (
            Consistent,
            Random,
            false,
            Err(ConnectError::RemoteNotHolepunchable),
        ),
        (Random, Consistent, true, Ok(Strategy::Birthday)),
        (Random, Open, true, Ok(Strategy::Birthday)),
        (
            Random,
            Consistent,
            false,
            Err(ConnectError::RemoteNotHolepunchable),
        ),
        (
            Random,
            Random,
            true,
            Err(ConnectError::HolepunchDoubleRandomizedNats),
        ),
        (
            Random,
            Random,
            false,
            Err(ConnectError::HolepunchDoubleRandomizedNats),
        ),
        (
            Unknown,
            Consistent,
            true,
            Err(ConnectError::RemoteNotHolepunchable),
        ),
        (
            Consistent,
            Unknown,
            true,
            Err(ConnectError::RemoteNotHolepunchable),
        ),
        (
            Unknown,
            Random,
            true,
            Err(ConnectError::RemoteNotHolepunchable),
        ),
        (
            Unknown,
            Unknown,
            true,
            Err(ConnectError::RemoteNotHolepunchable),
        ),
    ];
    for &(local, remote, verified, expect) in cases {
        for initiator in [true, false] {
            let mut p = puncher(initiator, local, remote, &ra, verified);
            assert_eq!(p.firewall(), local, "setup {local:?}");
            assert_eq!(
                p.punch(t(0)),
                expect,
                "{local:?} x {remote:?} verified={verified}"
            );
            assert_eq!(p.is_punching(), expect.is_ok());
            assert_eq!(p.punch(t(5)), expect, "punch() is memoised");
        }
    }
    // No remote addresses at all.
    let mut p = puncher(true, Consistent, Consistent, &[], false);
    assert_eq!(p.punch(t(0)), Err(ConnectError::RemoteNotHolepunchable));
}

#[test]
fn consistent_client_schedule() {
    let v = a("9.9.9.9:4000");
    let u = a("8.8.8.8:4001");
    let mut p = puncher(
        true,
        Firewall::Consistent,
        Firewall::Consistent,
        &[v, u],
        true,
    );
    assert!(p.remote_addresses()[0].verified && !p.remote_addresses()[1].verified);
    assert_eq!(p.punch(t(0)), Ok(Strategy::Consistent));
    let mut log = Vec::new();
    log.push((0, probes(&drain(&mut p))));
    let mut now = 0;
    while let Some(d) = p.poll_timeout() {
        now = d.as_millis();
        p.handle_timeout(d);
        log.push((now, probes(&drain(&mut p))));
        if p.is_destroyed() {
            break;
        }
    }
    // Ticks 1..=10 at 0..=9 s; the verified address every tick, the other on ticks 4 and 8.
    for (tick, (at, ps)) in log.iter().take(10).enumerate() {
        let tick = tick as u64 + 1;
        assert_eq!(*at, (tick - 1) * 1000);
        let mut want = vec![(S0, v, DEFAULT_TTL)];
        if tick % 4 == 0 {
            want.push((S0, u, DEFAULT_TTL));
        }
        assert_eq!(ps, &want, "tick {tick}");
    }
    assert_eq!(now, 10_000, "gives up one interval after the 10th tick");
    assert!(p.is_destroyed());
}

#[test]
fn consistent_server_waits_one_second_and_gives_up_after_eleven() {
    let v = a("9.9.9.9:4000");
    let mut p = puncher(
        false,
        Firewall::Consistent,
        Firewall::Consistent,
        &[v],
        true,
    );
    p.punch(t(0)).unwrap();
    assert!(
        probes(&drain(&mut p)).is_empty(),
        "server's first tick is after 1 s"
    );
    let mut ticks = Vec::new();
    let mut failed = None;
    while let Some(d) = p.poll_timeout() {
        p.handle_timeout(d);
        for o in drain(&mut p) {
            match o {
                PuncherOutput::Probe { .. } => ticks.push(d.as_millis()),
                PuncherOutput::Failed(e) => failed = Some((d.as_millis(), e)),
                _ => {}
            }
        }
    }
    assert_eq!(ticks, (1..=10).map(|s| s * 1000).collect::<Vec<_>>());
    assert_eq!(failed, Some((11_000, ConnectError::HolepunchAborted)));
}

#[test]
fn random_probe_schedule() {
    let v = a("9.9.9.9:0");
    let run = |seed| {
        let config = PuncherConfig {
            initiator: true,
            dht_firewalled: true,
            remote_firewall: Firewall::Unknown,
        };
        let mut p = Puncher::new(config, S0, &[], &mut rng(seed));
        for i in 0..3 {
            p.add_sample(a("7.7.7.7:2000"), node(i + 1));
        }
        p.update_remote(RemoteUpdate {
            punching: true,
            firewall: Firewall::Random,
            addresses: Some(&[v]),
            verified: Some(*v.ip()),
        });
        drain(&mut p);
        assert_eq!(p.punch(t(0)), Ok(Strategy::RandomProbes));
        let mut outs = drain(&mut p);
        assert_eq!(outs[0], PuncherOutput::RandomPunchBegin);
        let mut times = vec![0];
        while let Some(d) = p.poll_timeout() {
            p.handle_timeout(d);
            let o = drain(&mut p);
            if !probes(&o).is_empty() {
                times.push(d.as_millis());
            }
            outs.extend(o);
        }
        (outs, times)
    };
    let (outs, times) = run(5);
    let ps = probes(&outs);
    assert_eq!(ps.len(), RANDOM_PROBES as usize);
    assert!(ps.iter().all(|(s, to, ttl)| *s == S0
        && to.ip() == v.ip()
        && (1000..=65535).contains(&to.port())
        && *ttl == DEFAULT_TTL));
    let distinct: BTreeSet<u16> = ps.iter().map(|p| p.1.port()).collect();
    assert!(
        distinct.len() > 1600,
        "ports look random ({} distinct)",
        distinct.len()
    );
    assert_eq!(times.len(), RANDOM_PROBES as usize);
    // Every 2 ms (our deliberate deviation from the reference's 20 ms; see RANDOM_PROBE_INTERVAL).
    assert!(times.windows(2).all(|w| w[1] - w[0] == 2));
    assert_eq!(
        &outs[outs.len() - 3..],
        &[
            PuncherOutput::ReleaseSocket(S0),
            PuncherOutput::RandomPunchEnd,
            PuncherOutput::Failed(ConnectError::HolepunchAborted)
        ]
    );
    assert_eq!(times.last(), Some(&(1749 * 2)));
    // Deterministic per seed, different across seeds.
    assert_eq!(run(5).0, outs);
    assert_ne!(probes(&run(6).0), ps);
}

#[test]
fn birthday_schedule() {
    let v = a("9.9.9.9:4000");
    let mut p = puncher(false, Firewall::Random, Firewall::Consistent, &[v], true);
    assert_eq!(p.punch(t(0)), Ok(Strategy::Birthday));
    let outs = drain(&mut p);
    assert_eq!(
        outs,
        vec![
            PuncherOutput::RandomPunchBegin,
            PuncherOutput::OpenSockets {
                count: BIRTHDAY_SOCKETS - 1
            }
        ]
    );
    assert_eq!(p.poll_timeout(), None, "nothing until the sockets arrive");
    // They arrive in two batches; each sends one TTL-5 probe.
    let extra: Vec<SocketId> = (1..BIRTHDAY_SOCKETS as u32)
        .map(|i| SocketId(1000 + i))
        .collect();
    p.add_sockets(t(3), &extra[..100]);
    assert_eq!(
        probes(&drain(&mut p)),
        extra[..100]
            .iter()
            .map(|s| (*s, v, HOLEPUNCH_TTL))
            .collect::<Vec<_>>()
    );
    assert_eq!(p.poll_timeout(), None);
    p.add_sockets(t(5), &extra[100..]);
    assert_eq!(probes(&drain(&mut p)).len(), BIRTHDAY_SOCKETS - 101);
    assert_eq!(p.sockets().len(), BIRTHDAY_SOCKETS);
    // A surplus socket is released at once.
    p.add_sockets(t(5), &[SocketId(5000)]);
    assert_eq!(
        drain(&mut p),
        vec![PuncherOutput::ReleaseSocket(SocketId(5000))]
    );
    // Keep-alive from 100 ms after the last socket, every 20 ms, cycling all sockets: the first
    // cycle at TTL 5, then TTL 64.
    assert_eq!(p.poll_timeout(), Some(t(105)));
    let mut ps = Vec::new();
    let mut at = Vec::new();
    while let Some(d) = p.poll_timeout() {
        p.handle_timeout(d);
        let o = drain(&mut p);
        for x in probes(&o) {
            ps.push(x);
            at.push(d.as_millis());
        }
        if o.contains(&PuncherOutput::Failed(ConnectError::HolepunchAborted)) {
            assert!(o.contains(&PuncherOutput::RandomPunchEnd));
            assert_eq!(
                o.iter()
                    .filter(|x| matches!(x, PuncherOutput::ReleaseSocket(_)))
                    .count(),
                BIRTHDAY_SOCKETS
            );
        }
    }
    assert_eq!(ps.len(), RANDOM_PROBES as usize);
    let all = p.sockets().to_vec();
    assert!(all.is_empty(), "destroyed puncher holds nothing");
    for (i, (s, to, ttl)) in ps.iter().enumerate() {
        let want_socket = if i % BIRTHDAY_SOCKETS == 0 {
            S0
        } else {
            extra[i % BIRTHDAY_SOCKETS - 1]
        };
        assert_eq!((*s, *to), (want_socket, v), "probe {i}");
        assert_eq!(
            *ttl,
            if i < BIRTHDAY_SOCKETS {
                HOLEPUNCH_TTL
            } else {
                DEFAULT_TTL
            },
            "probe {i}"
        );
    }
    assert_eq!(at[0], 105);
    assert!(at.windows(2).all(|w| w[1] - w[0] == 20));
}

#[test]
fn birthday_with_fewer_sockets() {
    let v = a("9.9.9.9:4000");
    let mut p = puncher(true, Firewall::Random, Firewall::Consistent, &[v], true);
    p.punch(t(0)).unwrap();
    drain(&mut p);
    p.add_sockets(t(1), &[SocketId(1), SocketId(2)]);
    p.sockets_unavailable(t(2));
    drain(&mut p);
    assert_eq!(p.poll_timeout(), Some(t(102)));
    let mut sockets = Vec::new();
    for _ in 0..6 {
        let d = p.poll_timeout().unwrap();
        p.handle_timeout(d);
        sockets.extend(probes(&drain(&mut p)).into_iter().map(|x| (x.0, x.2)));
    }
    assert_eq!(
        sockets,
        vec![
            (S0, 5),
            (SocketId(1), 5),
            (SocketId(2), 5),
            (S0, 64),
            (SocketId(1), 64),
            (SocketId(2), 64)
        ]
    );
}

#[test]
fn server_echoes_every_probe_client_connects_on_first() {
    let v = a("9.9.9.9:4000");
    let mut server = puncher(
        false,
        Firewall::Consistent,
        Firewall::Consistent,
        &[v],
        true,
    );
    assert!(server.handle_probe(t(0), S0, a("1.1.1.1:1")));
    assert!(server.handle_probe(t(1), S0, a("1.1.1.1:2")));
    assert_eq!(
        probes(&drain(&mut server)),
        vec![
            (S0, a("1.1.1.1:1"), DEFAULT_TTL),
            (S0, a("1.1.1.1:2"), DEFAULT_TTL)
        ]
    );
    assert!(
        !server.handle_probe(t(1), SocketId(77), a("1.1.1.1:2")),
        "not its socket"
    );
    assert_eq!(server.connected(), None);

    // Client random with birthday sockets: the probe on socket 2 wins, the rest are released.
    let mut client = puncher(true, Firewall::Random, Firewall::Consistent, &[v], true);
    client.punch(t(0)).unwrap();
    drain(&mut client);
    client.add_sockets(t(1), &[SocketId(1), SocketId(2), SocketId(3)]);
    drain(&mut client);
    assert!(client.handle_probe(t(2), SocketId(2), a("5.5.5.5:5")));
    let outs = drain(&mut client);
    assert!(outs.contains(&PuncherOutput::ReleaseSocket(S0)));
    assert!(outs.contains(&PuncherOutput::ReleaseSocket(SocketId(1))));
    assert!(outs.contains(&PuncherOutput::ReleaseSocket(SocketId(3))));
    assert!(!outs.contains(&PuncherOutput::ReleaseSocket(SocketId(2))));
    assert!(outs.contains(&PuncherOutput::RandomPunchEnd));
    assert_eq!(
        outs.last(),
        Some(&PuncherOutput::Connected {
            socket: SocketId(2),
            addr: a("5.5.5.5:5")
        })
    );
    assert_eq!(client.connected(), Some((SocketId(2), a("5.5.5.5:5"))));
    assert!(!client.is_punching());
    assert_eq!(client.poll_timeout(), None);
    // Later sockets and probes change nothing; destroy keeps the connected socket.
    client.add_sockets(t(3), &[SocketId(4)]);
    assert!(client.handle_probe(t(3), SocketId(2), a("6.6.6.6:6")));
    assert_eq!(
        drain(&mut client),
        vec![PuncherOutput::ReleaseSocket(SocketId(4))]
    );
    client.destroy();
    assert!(drain(&mut client).is_empty());
    assert_eq!(client.sockets(), &[SocketId(2)]);
}

#[test]
fn open_session_and_fast_mode() {
    let mut p = puncher(
        false,
        Firewall::Consistent,
        Firewall::Consistent,
        &[a("9.9.9.9:1")],
        true,
    );
    p.open_session(a("1.1.1.1:1"));
    p.ping(a("1.1.1.1:2"));
    assert_eq!(
        probes(&drain(&mut p)),
        vec![
            (S0, a("1.1.1.1:1"), HOLEPUNCH_TTL),
            (S0, a("1.1.1.1:2"), DEFAULT_TTL)
        ]
    );
    assert!(p.fast_mode(Some(a("7.7.7.7:2000"))));
    assert!(!p.fast_mode(Some(a("7.7.7.7:2001"))));
    assert!(!p.fast_mode(None));
    let r = puncher(
        false,
        Firewall::Random,
        Firewall::Consistent,
        &[a("9.9.9.9:1")],
        true,
    );
    assert!(!r.fast_mode(Some(a("7.7.7.7:2000"))));
}

#[test]
fn nat_pings_and_analysis() {
    let nodes: Vec<SocketAddrV4> = (1..=4).map(node).collect();
    let config = PuncherConfig {
        initiator: true,
        dht_firewalled: true,
        remote_firewall: Firewall::Consistent,
    };
    let mut p = Puncher::new(config, S0, &nodes, &mut rng(1));
    let outs = drain(&mut p);
    assert_eq!(
        outs,
        nodes
            .iter()
            .map(|n| PuncherOutput::NatPing { socket: S0, to: *n })
            .collect::<Vec<_>>()
    );
    assert_eq!(p.analyze(false), Analysis::Pending);
    p.handle_ping_reply(t(10), S0, a("7.7.7.7:1"), nodes[0]);
    p.handle_ping_reply(t(10), S0, a("7.7.7.7:1"), nodes[1]);
    assert!(drain(&mut p).is_empty());
    p.handle_ping_reply(t(10), S0, a("7.7.7.7:1"), nodes[2]);
    assert_eq!(drain(&mut p), vec![PuncherOutput::AnalysisReady]);
    assert_eq!(p.analyze(false), Analysis::Stable);
    assert_eq!(p.firewall(), Firewall::Consistent);
    // Replies for another socket are ignored.
    p.handle_ping_reply(t(10), SocketId(9), a("7.7.7.7:9"), nodes[3]);
    assert_eq!(p.nat().sampled(), 3);
}

#[test]
fn reopen_replaces_the_socket_until_consistent() {
    let nodes: Vec<SocketAddrV4> = (1..=4).map(node).collect();
    let config = PuncherConfig {
        initiator: true,
        dht_firewalled: true,
        remote_firewall: Firewall::Consistent,
    };
    let mut p = Puncher::new(config, S0, &nodes, &mut rng(1));
    drain(&mut p);
    for _ in 0..4 {
        p.handle_ping_timeout(t(1000), S0);
    }
    // Second pass has nothing new to ask: settled, UNKNOWN → unstable.
    assert_eq!(drain(&mut p), vec![]);
    assert_eq!(p.analyze(false), Analysis::Unstable);
    assert_eq!(p.analyze(true), Analysis::Pending);
    assert_eq!(
        drain(&mut p),
        vec![
            PuncherOutput::ReleaseSocket(S0),
            PuncherOutput::OpenSockets { count: 1 }
        ]
    );
    assert_eq!(p.socket(), None);
    let s1 = SocketId(1);
    p.add_sockets(t(1001), &[s1]);
    assert_eq!(p.socket(), Some(s1));
    let outs = drain(&mut p);
    assert_eq!(
        outs,
        nodes
            .iter()
            .map(|n| PuncherOutput::NatPing { socket: s1, to: *n })
            .collect::<Vec<_>>()
    );
    // Stale replies for the old socket are ignored.
    p.handle_ping_reply(t(1002), S0, a("7.7.7.7:1"), nodes[0]);
    assert_eq!(p.nat().sampled(), 0);
    for n in &nodes[..3] {
        p.handle_ping_reply(t(1010), s1, a("7.7.7.7:1"), *n);
    }
    assert_eq!(drain(&mut p), vec![PuncherOutput::AnalysisReady]);
    assert_eq!(p.analyze(true), Analysis::Stable);
    assert_eq!(p.firewall(), Firewall::Consistent);
}

#[test]
fn reopen_gives_up_after_three_replacements() {
    let nodes: Vec<SocketAddrV4> = (1..=4).map(node).collect();
    let config = PuncherConfig {
        initiator: false,
        dht_firewalled: true,
        remote_firewall: Firewall::Random,
    };
    let mut p = Puncher::new(config, S0, &nodes, &mut rng(1));
    drain(&mut p);
    let mut socket = S0;
    let mut reopened = 0;
    // Every socket samples as RANDOM: remote RANDOM too → unstable each time.
    let sample_random = |p: &mut Puncher, socket: SocketId| {
        for (i, n) in nodes.iter().enumerate() {
            p.handle_ping_reply(
                t(0),
                socket,
                SocketAddrV4::new(Ipv4Addr::new(7, 7, 7, 7), 3000 + i as u16),
                *n,
            );
        }
    };
    sample_random(&mut p, socket);
    assert_eq!(p.firewall(), Firewall::Random);
    assert_eq!(p.analyze(false), Analysis::Unstable);
    assert_eq!(p.analyze(true), Analysis::Pending);
    loop {
        let outs = drain(&mut p);
        if outs.contains(&PuncherOutput::AnalysisReady) {
            break;
        }
        assert!(
            outs.contains(&PuncherOutput::OpenSockets { count: 1 }),
            "{outs:?}"
        );
        reopened += 1;
        socket = SocketId(socket.0 + 1);
        p.add_sockets(t(0), &[socket]);
        drain(&mut p);
        sample_random(&mut p, socket);
    }
    assert_eq!(reopened, 3);
    assert_eq!(p.analyze(true), Analysis::Unstable);
    assert_eq!(
        p.analyze(true),
        Analysis::Unstable,
        "the reopen result is kept"
    );
}

#[test]
fn reply_handling_and_token_verification() {
    let mut p = puncher(true, Firewall::Consistent, Firewall::Unknown, &[], false);
    let server = a("9.9.9.9:4000");
    let token = [7u8; 32];
    let sent = p.punch_round_payload(1, Some(token), Some([1u8; 32]));
    assert!(sent.punching && sent.remote_address.is_none());
    assert_eq!(sent.addresses, Some(vec![a("7.7.7.7:2000")]));
    let mut reply = HolepunchPayload {
        firewall: Firewall::CONSISTENT,
        punching: true,
        addresses: Some(vec![server, a("10.0.0.2:4000")]),
        remote_token: Some(token),
        ..Default::default()
    };
    assert_eq!(
        p.handle_reply(&reply, &sent, server, false),
        Ok(ReplyStatus::Ok)
    );
    assert_eq!(p.remote_firewall(), Firewall::Consistent);
    assert!(p.remote_holepunching());
    assert!(p.remote_addresses()[0].verified);
    assert!(!p.remote_addresses()[1].verified);
    // A later update without the echo keeps the host verified.
    reply.remote_token = None;
    p.handle_reply(&reply, &sent, server, false).unwrap();
    assert!(p.remote_addresses()[0].verified);
    // Wrong echo on a fresh puncher: not verified.
    let mut q = puncher(true, Firewall::Consistent, Firewall::Unknown, &[], false);
    reply.remote_token = Some([8u8; 32]);
    q.handle_reply(&reply, &sent, server, false).unwrap();
    assert!(!q.remote_addresses()[0].verified);
    // TRY_LATER with a relay token on a punch request; otherwise REMOTE_ABORTED.
    let tl = HolepunchPayload {
        error: ErrorCode::TRY_LATER,
        ..Default::default()
    };
    assert_eq!(
        p.handle_reply(&tl, &sent, server, true),
        Ok(ReplyStatus::TryLater)
    );
    assert_eq!(
        p.remote_firewall(),
        Firewall::Consistent,
        "try-later leaves the state"
    );
    assert_eq!(
        p.handle_reply(&tl, &sent, server, false),
        Err(ConnectError::RemoteAborted(3))
    );
    let probe = p.probe_round_payload(0, Some(server));
    assert_eq!(
        p.handle_reply(&tl, &probe, server, true),
        Err(ConnectError::RemoteAborted(3))
    );
    let ab = abort_payload(ErrorCode::ABORTED, 4);
    assert_eq!(
        p.handle_reply(&ab, &sent, server, true),
        Err(ConnectError::RemoteAborted(1))
    );
}

#[test]
fn payload_builders() {
    let p = puncher(
        true,
        Firewall::Random,
        Firewall::Consistent,
        &[a("9.9.9.9:1")],
        true,
    );
    let probe = p.probe_round_payload(0, Some(a("9.9.9.9:1")));
    assert_eq!(
        probe,
        HolepunchPayload {
            error: 0,
            firewall: Firewall::RANDOM,
            round: 0,
            connected: false,
            punching: false,
            addresses: Some(vec![a("7.7.7.7:0")]),
            remote_address: Some(a("9.9.9.9:1")),
            token: None,
            remote_token: None,
        }
    );
    let delayed = p.delayed_update_payload(2, Some([1; 32]), Some([2; 32]));
    assert!(
        !delayed.punching && delayed.token == Some([1; 32]) && delayed.remote_address.is_none()
    );
    let reply = p.server_reply_payload(ErrorCode::TRY_LATER, 5, None, Some([3; 32]));
    assert_eq!(
        (reply.error, reply.round, reply.connected, reply.punching),
        (3, 5, false, false)
    );
    assert_eq!(reply.remote_token, Some([3; 32]));
    let ab = abort_payload(ErrorCode::ABORTED, 9);
    assert_eq!(
        ab.to_bytes(),
        HolepunchPayload {
            error: 1,
            round: 9,
            ..Default::default()
        }
        .to_bytes()
    );
    // Unknown NAT: no addresses field at all.
    let u = puncher(true, Firewall::Unknown, Firewall::Consistent, &[], false);
    assert_eq!(u.probe_round_payload(0, None).addresses, None);
}

#[test]
fn probe_round_verdicts() {
    use Firewall::*;
    let ra = [a("9.9.9.9:1")];
    let v = |local, remote, retry, token| {
        puncher(true, local, remote, &ra, false).probe_round_verdict(retry, token)
    };
    assert_eq!(v(Consistent, Unknown, true, true), ProbeVerdict::Retry);
    assert_eq!(v(Consistent, Consistent, true, false), ProbeVerdict::Retry);
    assert_eq!(v(Consistent, Consistent, true, true), ProbeVerdict::Proceed);
    assert_eq!(
        v(Consistent, Consistent, false, false),
        ProbeVerdict::Proceed
    );
    assert_eq!(
        v(Consistent, Unknown, false, true),
        ProbeVerdict::Abort(ConnectError::HolepunchProbeTimeout)
    );
    assert_eq!(
        v(Unknown, Consistent, true, true),
        ProbeVerdict::Abort(ConnectError::HolepunchProbeTimeout)
    );
    assert_eq!(
        v(Random, Random, true, true),
        ProbeVerdict::Abort(ConnectError::HolepunchDoubleRandomizedNats)
    );
    assert_eq!(v(Random, Consistent, true, true), ProbeVerdict::Proceed);
    assert_eq!(v(Open, Random, true, true), ProbeVerdict::Proceed);
}

#[test]
fn random_punch_limiter() {
    let mut l = RandomPunchLimiter::new();
    assert!(!l.is_throttled(t(0)));
    l.apply(t(0), &PuncherOutput::RandomPunchBegin);
    assert!(l.is_throttled(t(0)));
    l.apply(t(5_000), &PuncherOutput::RandomPunchEnd);
    assert_eq!(l.active(), 0);
    assert!(l.is_throttled(t(24_999)));
    assert!(!l.is_throttled(t(25_000)));
    // The client's hold around its punch request does not stamp the clock.
    let mut l = RandomPunchLimiter::new();
    l.begin();
    l.release();
    assert!(!l.is_throttled(t(0)));
    let l = RandomPunchLimiter::new().deferred(t(1_000));
    assert!(l.is_throttled(t(20_999)) && !l.is_throttled(t(21_000)));
}

#[test]
fn misc_helpers() {
    let mut r = rng(3);
    for _ in 0..1000 {
        let d = try_later_delay(&mut r);
        assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(20));
    }
    let relays = [
        RelayInfo {
            relay_address: a("1.1.1.1:1"),
            peer_address: a("2.2.2.2:2"),
        },
        RelayInfo {
            relay_address: a("3.3.3.3:3"),
            peer_address: a("4.4.4.4:4"),
        },
    ];
    assert_eq!(pick_server_relay(&relays, a("3.3.3.3:3")), Some(&relays[1]));
    assert_eq!(pick_server_relay(&relays, a("5.5.5.5:5")), Some(&relays[0]));
    assert_eq!(pick_server_relay(&[], a("5.5.5.5:5")), None);
}

// ------------------------------------------------------------------------------- mini network

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NatKind {
    /// Endpoint-independent mapping, address+port-dependent filtering, port preserving per socket.
    Consistent,
    /// Address+port-dependent mapping with random ports, address+port-dependent filtering.
    Random,
}

/// Hops between the two NATs: a TTL-5 probe opens the sender's mapping and dies on the way.
const HOPS: u8 = 8;
const ONE_WAY: Duration = Duration::from_millis(25);
const DHT_RTT: Duration = Duration::from_millis(10);

struct Side {
    p: Puncher,
    ip: Ipv4Addr,
    kind: NatKind,
    /// (socket, destination or 0.0.0.0:0 for endpoint-independent) → public port.
    map: BTreeMap<(SocketId, SocketAddrV4), u16>,
    /// (public port, remote) allowed in.
    allow: BTreeSet<(u16, SocketAddrV4)>,
    next_socket: u32,
    connected: Option<(Instant, SocketId, SocketAddrV4)>,
    failed: Option<(Instant, ConnectError)>,
    probes_sent: usize,
}

enum Ev {
    Datagram {
        side: usize,
        dst: SocketAddrV4,
        from: SocketAddrV4,
    },
    PingReply {
        side: usize,
        socket: SocketId,
        to: SocketAddrV4,
        from: SocketAddrV4,
    },
}

struct Net {
    sides: [Side; 2],
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    rng: ChaCha8Rng,
    limiter: [RandomPunchLimiter; 2],
}

impl Net {
    fn new(seed: u64, client: NatKind, server: NatKind) -> Net {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dht: Vec<SocketAddrV4> = (1..=6).map(node).collect();
        let mk = |initiator: bool, kind: NatKind, ip: Ipv4Addr, rng: &mut ChaCha8Rng| {
            let config = PuncherConfig {
                initiator,
                dht_firewalled: true,
                remote_firewall: Firewall::Unknown,
            };
            Side {
                p: Puncher::new(config, SocketId(0), &dht, rng),
                ip,
                kind,
                map: BTreeMap::new(),
                allow: BTreeSet::new(),
                next_socket: 1,
                connected: None,
                failed: None,
                probes_sent: 0,
            }
        };
        let c = mk(true, client, Ipv4Addr::new(203, 0, 113, 1), &mut rng);
        let s = mk(false, server, Ipv4Addr::new(203, 0, 113, 2), &mut rng);
        let mut net = Net {
            sides: [c, s],
            queue: BTreeMap::new(),
            seq: 0,
            rng,
            limiter: [RandomPunchLimiter::new(); 2],
        };
        net.flush(0, t(0));
        net.flush(1, t(0));
        net
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    /// The NAT's public port for `socket` → `to` (creating the mapping and the filter entry).
    fn outbound(&mut self, side: usize, socket: SocketId, to: SocketAddrV4) -> u16 {
        let s = &mut self.sides[side];
        let key = match s.kind {
            NatKind::Consistent => (socket, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            NatKind::Random => (socket, to),
        };
        let port = match s.map.get(&key) {
            Some(p) => *p,
            None => {
                let p = match s.kind {
                    NatKind::Consistent => 40_000 + socket.0 as u16,
                    NatKind::Random => loop {
                        let p = 1024 + (self.rng.next_u32() % 64_000) as u16;
                        if !s.map.values().any(|x| *x == p) {
                            break p;
                        }
                    },
                };
                s.map.insert(key, p);
                p
            }
        };
        s.allow.insert((port, to));
        port
    }

    fn flush(&mut self, side: usize, now: Instant) {
        while let Some(o) = self.sides[side].p.poll_output() {
            self.limiter[side].apply(now, &o);
            match o {
                PuncherOutput::Probe { socket, to, ttl } => {
                    self.sides[side].probes_sent += 1;
                    let port = self.outbound(side, socket, to);
                    let from = SocketAddrV4::new(self.sides[side].ip, port);
                    let other = 1 - side;
                    if ttl >= HOPS && *to.ip() == self.sides[other].ip {
                        self.push(
                            now + ONE_WAY,
                            Ev::Datagram {
                                side: other,
                                dst: to,
                                from,
                            },
                        );
                    }
                }
                PuncherOutput::NatPing { socket, to } => {
                    let port = self.outbound(side, socket, to);
                    let seen = SocketAddrV4::new(self.sides[side].ip, port);
                    self.push(
                        now + DHT_RTT,
                        Ev::PingReply {
                            side,
                            socket,
                            to: seen,
                            from: to,
                        },
                    );
                }
                PuncherOutput::OpenSockets { count } => {
                    let s = &mut self.sides[side];
                    let ids: Vec<SocketId> = (0..count as u32)
                        .map(|i| SocketId(s.next_socket + i))
                        .collect();
                    s.next_socket += count as u32;
                    s.p.add_sockets(now, &ids);
                }
                PuncherOutput::Connected { socket, addr } => {
                    self.sides[side].connected = Some((now, socket, addr))
                }
                PuncherOutput::Failed(e) => self.sides[side].failed = Some((now, e)),
                PuncherOutput::ReleaseSocket(_) | PuncherOutput::AnalysisReady => {}
                PuncherOutput::RandomPunchBegin | PuncherOutput::RandomPunchEnd => {}
            }
        }
    }

    fn deliver(&mut self, now: Instant, ev: Ev) {
        match ev {
            Ev::PingReply {
                side,
                socket,
                to,
                from,
            } => {
                self.sides[side].p.handle_ping_reply(now, socket, to, from);
                self.flush(side, now);
            }
            Ev::Datagram { side, dst, from } => {
                let s = &self.sides[side];
                if *dst.ip() != s.ip || !s.allow.contains(&(dst.port(), from)) {
                    return; // filtered
                }
                let Some(((socket, _), _)) = s.map.iter().find(|(_, p)| **p == dst.port()) else {
                    return;
                };
                let socket = *socket;
                self.sides[side].p.handle_probe(now, socket, from);
                self.flush(side, now);
            }
        }
    }

    /// Run until `until` or the client is connected or failed.
    fn run(&mut self, until: Instant) -> Instant {
        let mut now = t(0);
        loop {
            if self.sides[0].connected.is_some() || self.sides[0].failed.is_some() {
                return now;
            }
            let q = self.queue.keys().next().map(|k| k.0);
            let timers = [
                self.sides[0].p.poll_timeout(),
                self.sides[1].p.poll_timeout(),
            ];
            let next = [q, timers[0], timers[1]].into_iter().flatten().min();
            let Some(next) = next else { return now };
            if next > until {
                return now;
            }
            now = next;
            if q == Some(next) {
                let key = *self.queue.keys().next().unwrap();
                let ev = self.queue.remove(&key).unwrap();
                self.deliver(now, ev);
                continue;
            }
            for (side, timer) in timers.into_iter().enumerate() {
                if timer == Some(next) {
                    self.sides[side].p.handle_timeout(now);
                    self.flush(side, now);
                }
            }
        }
    }

    /// The PEER_HOLEPUNCH exchange, simplified to its effect: both analyses are done, each side
    /// learns the other's firewall and addresses with the host verified (token echo), the server
    /// punches (and fast-mode pings), the client punches one relay round trip later.
    fn exchange_and_punch(
        &mut self,
        now: Instant,
    ) -> (
        Result<Strategy, ConnectError>,
        Result<Strategy, ConnectError>,
    ) {
        let info = |s: &Side| {
            (
                s.p.firewall(),
                s.p.addresses().map(|x| x.to_vec()).unwrap_or_default(),
                s.ip,
            )
        };
        let (cfw, caddrs, cip) = info(&self.sides[0]);
        let (sfw, saddrs, sip) = info(&self.sides[1]);
        self.sides[0].p.freeze();
        self.sides[1].p.freeze();
        self.sides[1].p.update_remote(RemoteUpdate {
            punching: true,
            firewall: cfw,
            addresses: Some(&caddrs),
            verified: Some(cip),
        });
        self.sides[0].p.update_remote(RemoteUpdate {
            punching: true,
            firewall: sfw,
            addresses: Some(&saddrs),
            verified: Some(sip),
        });
        // Fast open: the client's TTL-5 probe to the server's address opened its mapping; the
        // server sees that address among its own and pings back.
        if let Some(first) = saddrs.first().copied().filter(|a| a.port() != 0) {
            self.sides[0].p.open_session(first);
            self.flush(0, now);
            if self.sides[1].p.fast_mode(Some(first)) {
                if let Some(c) = caddrs.first().copied() {
                    self.sides[1].p.ping(c);
                }
            }
        }
        let server = self.sides[1].p.punch(now);
        self.flush(1, now);
        let client = self.sides[0].p.punch(now + ONE_WAY + ONE_WAY);
        self.flush(0, now + ONE_WAY + ONE_WAY);
        (client, server)
    }

    fn settle(&mut self) -> Instant {
        // Sampling: all pings answer after 10 ms.
        let done = self.run(t(100));
        assert!(self.queue.is_empty());
        assert_ne!(self.sides[0].p.analyze(false), Analysis::Pending);
        assert_ne!(self.sides[1].p.analyze(false), Analysis::Pending);
        done
    }
}

#[test]
fn mini_network_consistent_x_consistent() {
    for seed in 0..20 {
        let mut net = Net::new(seed, NatKind::Consistent, NatKind::Consistent);
        let now = net.settle();
        assert_eq!(net.sides[0].p.firewall(), Firewall::Consistent);
        assert_eq!(net.sides[1].p.firewall(), Firewall::Consistent);
        let (c, s) = net.exchange_and_punch(now);
        assert_eq!(
            net.sides[0].p.probe_round_verdict(false, true),
            ProbeVerdict::Proceed
        );
        assert_eq!((c, s), (Ok(Strategy::Consistent), Ok(Strategy::Consistent)));
        let end = net.run(now + Duration::from_secs(15));
        let (at, socket, addr) = net.sides[0].connected.expect("connected");
        assert_eq!(end, at);
        assert_eq!(socket, SocketId(0));
        assert_eq!(
            addr,
            SocketAddrV4::new(net.sides[1].ip, 40_000),
            "connected to the server's puncher mapping"
        );
        // Fast open + fast mode: one way after the exchange.
        assert!(at - now <= Duration::from_millis(60), "took {:?}", at - now);
    }
}

#[test]
fn mini_network_consistent_x_consistent_without_fast_mode() {
    let mut net = Net::new(1, NatKind::Consistent, NatKind::Consistent);
    let now = net.settle();
    let info = |s: &Side| (s.p.firewall(), s.p.addresses().unwrap().to_vec(), s.ip);
    let (cfw, caddrs, cip) = info(&net.sides[0]);
    let (sfw, saddrs, sip) = info(&net.sides[1]);
    net.sides[1].p.update_remote(RemoteUpdate {
        punching: true,
        firewall: cfw,
        addresses: Some(&caddrs),
        verified: Some(cip),
    });
    net.sides[0].p.update_remote(RemoteUpdate {
        punching: true,
        firewall: sfw,
        addresses: Some(&saddrs),
        verified: Some(sip),
    });
    net.sides[1].p.punch(now).unwrap();
    net.flush(1, now);
    net.sides[0].p.punch(now + ONE_WAY * 2).unwrap();
    net.flush(0, now + ONE_WAY * 2);
    net.run(now + Duration::from_secs(15));
    let (at, _, _) = net.sides[0].connected.expect("connected");
    // The client's first probe is filtered by the server NAT; the server's first tick (1 s)
    // passes the client NAT the client probe opened.
    assert_eq!(at - now, Duration::from_secs(1) + ONE_WAY);
}

fn report(what: &str, mut ok: Vec<Duration>) {
    ok.sort();
    eprintln!(
        "{what}: {} connected, median {:?}, max {:?}",
        ok.len(),
        ok[ok.len() / 2],
        ok[ok.len() - 1]
    );
}

fn consistent_x_random(seed: u64, client: NatKind, server: NatKind) -> Option<Duration> {
    let mut net = Net::new(seed, client, server);
    let now = net.settle();
    let kinds = [client, server];
    for (i, k) in kinds.iter().enumerate() {
        let want = if *k == NatKind::Random {
            Firewall::Random
        } else {
            Firewall::Consistent
        };
        assert_eq!(net.sides[i].p.firewall(), want, "side {i}");
    }
    assert!(!net.sides[0].p.is_unstable());
    let (c, s) = net.exchange_and_punch(now);
    let expect = |k: NatKind| {
        if k == NatKind::Random {
            Strategy::Birthday
        } else {
            Strategy::RandomProbes
        }
    };
    assert_eq!(c, Ok(expect(client)));
    assert_eq!(s, Ok(expect(server)));
    assert_eq!(net.limiter[0].active(), 1);
    assert_eq!(net.limiter[1].active(), 1);
    net.run(now + Duration::from_secs(40));
    if client == NatKind::Random {
        assert!(net.sides[0].p.sockets().len() <= 1);
    }
    match (net.sides[0].connected, net.sides[0].failed) {
        (Some((at, _, addr)), _) => {
            assert_eq!(*addr.ip(), net.sides[1].ip);
            assert_eq!(net.limiter[0].active(), 0, "client's random punch ended");
            Some(at - now)
        }
        (None, Some((_, e))) => {
            assert_eq!(e, ConnectError::HolepunchAborted);
            None
        }
        (None, None) => panic!("neither connected nor failed"),
    }
}

#[test]
fn mini_network_consistent_client_x_random_server() {
    let times: Vec<Option<Duration>> = (0..30)
        .map(|s| consistent_x_random(s, NatKind::Consistent, NatKind::Random))
        .collect();
    let ok: Vec<Duration> = times.iter().flatten().copied().collect();
    assert!(ok.len() >= 29, "{times:?}");
    assert!(ok.iter().all(|d| *d < Duration::from_secs(36)));
    report("consistent client x random server", ok);
}

#[test]
fn mini_network_random_client_x_consistent_server() {
    let times: Vec<Option<Duration>> = (0..30)
        .map(|s| consistent_x_random(s, NatKind::Random, NatKind::Consistent))
        .collect();
    let ok: Vec<Duration> = times.iter().flatten().copied().collect();
    assert!(ok.len() >= 29, "{times:?}");
    report("random client x consistent server", ok);
}

#[test]
fn mini_network_random_x_random_fails_fast() {
    let mut net = Net::new(3, NatKind::Random, NatKind::Random);
    let now = net.settle();
    assert!(now <= t(20), "sampling took {now:?}");
    assert_eq!(net.sides[0].p.firewall(), Firewall::Random);
    assert_eq!(net.sides[1].p.firewall(), Firewall::Random);
    let (c, s) = net.exchange_and_punch(now);
    assert_eq!(c, Err(ConnectError::HolepunchDoubleRandomizedNats));
    assert_eq!(s, Err(ConnectError::HolepunchDoubleRandomizedNats));
    // And the client's probe round would already have aborted with it.
    assert!(net.sides[0].p.is_unstable());
    assert_eq!(net.sides[0].p.analyze(false), Analysis::Unstable);
    assert_eq!(
        net.sides[0].p.probe_round_verdict(false, true),
        ProbeVerdict::Abort(ConnectError::HolepunchDoubleRandomizedNats)
    );
    assert_eq!(net.sides[0].p.poll_timeout(), None, "nothing keeps running");
    assert_eq!(net.limiter[0].active() + net.limiter[1].active(), 0);
}
