//! The swarm scenario (`hdht sim swarm`): hyperswarm peers behind a NAT mix join one topic at
//! the same instant and end with exactly one shared connection per pair — the same
//! connection on both sides, so both applied the duplicate rule alike — within seconds
//! (the reference's peers would miss each other until their next refresh, 10–12 min away);
//! bans and limits hold; a seed replays a run byte for byte. `HDHT_SIM_SEED` replays a failure.

use std::time::Duration;

use hdht_core::dht::budget::{MIN_RECV_WINDOW, MIN_SEND_BUFFER};
use hdht_core::dht::DhtConfig;
use hdht_core::swarm::{JoinOptions, SwarmConfig};
use hdht_sim::replay::Replay;
use hdht_sim::scenario::swarm::{run_swarm, SwarmRun, SwarmScenarioConfig};
use hdht_sim::scenario::NatMix;
use hdht_sim::swarm::SwarmSim;
use hdht_sim::HostId;

/// NATs every pair of which can connect without a relay (one side with a consistent mapping).
fn consistent_mix() -> NatMix {
    "open:1,full-cone:1,port-restricted:2,cgnat:1,udp-blocked:1"
        .parse()
        .unwrap()
}

fn describe(r: &SwarmRun) -> String {
    format!("{} missing {:?}", r.to_json_line(), r.missing_pairs)
}

#[test]
fn a_hundred_peers_joining_together_mesh_within_seconds() {
    let replay = Replay::new(
        "swarm",
        "a_hundred_peers_joining_together_mesh_within_seconds",
        1,
    );
    let cfg = SwarmScenarioConfig::new(100, consistent_mix(), replay.seed());
    let r = run_swarm(&cfg).unwrap();
    assert_eq!(r.bootstrapped, 100, "{}", describe(&r));
    assert_eq!(r.connectable_pairs, 4950);
    assert!(r.meshed(), "{}", describe(&r));
    assert!(r.held, "the mesh held for 30 s more: {}", describe(&r));
    assert_eq!(r.mismatched_pairs, 0, "{}", describe(&r));
    assert!(r.missing_pairs.is_empty(), "{}", describe(&r));
    let t = r.mesh_time.unwrap();
    assert!(
        t < Duration::from_secs(30),
        "full mesh after {t:?}: {}",
        describe(&r)
    );
    // Every connection the swarms announced either is one of the pairs' or was announced and
    // then closed: no connection is announced twice.
    assert_eq!(
        r.connection_events,
        2 * r.connected_pairs as u64 + r.disconnection_events,
        "{}",
        describe(&r)
    );
    assert!(r.max_connecting <= 3, "maxParallel: {}", describe(&r));
    // Every peer's flush() ended: its announce was stored and every peer it found was tried.
    assert_eq!(r.flushed, 100, "{}", describe(&r));
    assert!(r.flush_ms.max < 30_000.0, "{}", describe(&r));
}

#[test]
fn a_seed_replays_the_run() {
    let replay = Replay::new("swarm", "a_seed_replays_the_run", 7);
    let nat: NatMix = "open:1,port-restricted:2,symmetric:1".parse().unwrap();
    let mut cfg = SwarmScenarioConfig::new(12, nat, replay.seed());
    cfg.mesh_timeout = Duration::from_secs(60);
    cfg.settle = Duration::from_secs(5);
    let a = run_swarm(&cfg).unwrap();
    let b = run_swarm(&cfg).unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.events, b.events);
    assert_eq!(
        (a.connected_pairs, a.mesh_time, a.dials, &a.missing_pairs),
        (b.connected_pairs, b.mesh_time, b.dials, &b.missing_pairs)
    );
    cfg.seed += 1;
    let c = run_swarm(&cfg).unwrap();
    assert_ne!(a.trace_hash, c.trace_hash);
}

fn no_rendezvous(_: usize, c: &mut SwarmConfig) {
    c.rendezvous.clear();
}

/// The reference's behaviour (spec 06 §2.3): peers that join at the same instant each look up
/// before the others' announces are stored, and stay apart until a refresh 10–12 min later.
/// The rendezvous lookups close that gap.
#[test]
fn rendezvous_lookups_let_simultaneous_joiners_meet() {
    let replay = Replay::new(
        "swarm",
        "rendezvous_lookups_let_simultaneous_joiners_meet",
        3,
    );
    let mut cfg = SwarmScenarioConfig::new(8, consistent_mix(), replay.seed());
    cfg.mesh_timeout = Duration::from_secs(120);
    cfg.settle = Duration::ZERO;
    let with = run_swarm(&cfg).unwrap();
    assert!(with.meshed(), "{}", describe(&with));
    assert!(
        with.mesh_time.unwrap() < Duration::from_secs(15),
        "{}",
        describe(&with)
    );
    cfg.configure = Some(no_rendezvous);
    let without = run_swarm(&cfg).unwrap();
    assert!(
        !without.meshed() && without.connected_pairs < without.connectable_pairs / 2,
        "without rendezvous lookups the peers should miss each other for minutes: {}",
        describe(&without)
    );
}

fn limits(i: usize, c: &mut SwarmConfig) {
    if i == 2 {
        c.max_peers = 3;
        c.max_server_connections = 2;
    }
}

fn ban_one(sim: &mut SwarmSim, hosts: &[HostId], keys: &[[u8; 32]]) {
    let k = keys[1];
    sim.with_node(hosts[0], |n, now| {
        n.with_swarm(now, |s, _| s.ban(k, true));
    });
}

/// Peer 0 bans peer 1: they never connect (0 never dials 1 and refuses its handshakes),
/// everyone else does. Peer 2 dials until it holds 3 connections and takes at most 2
/// incoming ones.
#[test]
fn a_ban_holds_and_limits_bound_connections() {
    let replay = Replay::new("swarm", "a_ban_holds_and_limits_bound_connections", 5);
    let mut cfg = SwarmScenarioConfig::new(10, consistent_mix(), replay.seed());
    cfg.mesh_timeout = Duration::from_secs(60);
    cfg.settle = Duration::from_secs(10);
    cfg.configure = Some(limits);
    cfg.before_join = Some(ban_one);
    let r = run_swarm(&cfg).unwrap();
    assert!(r.missing_pairs.contains(&(0, 1)), "{}", describe(&r));
    let (ours, theirs) = r.peer_connections[2];
    assert!(theirs <= 2, "incoming bounded: {}", describe(&r));
    assert!(ours <= 3, "dials stop at max peers: {}", describe(&r));
    assert!(
        ours + theirs >= 3,
        "peer 2 still connects: {}",
        describe(&r)
    );
    // Everything else meshes: the only missing pairs are (0, 1) and peer 2's.
    for &(a, b) in &r.missing_pairs {
        assert!((a, b) == (0, 1) || a == 2 || b == 2, "{}", describe(&r));
    }
    assert_eq!(r.mismatched_pairs, 0, "{}", describe(&r));
}

fn explicit_zero_to_one(sim: &mut SwarmSim, hosts: &[HostId], keys: &[[u8; 32]]) {
    let k = keys[1];
    sim.with_node(hosts[0], |n, now| {
        n.with_swarm(now, |s, node| s.join_peer(now, node, k));
    });
}

/// Server-only peers never dial each other; `join_peer` dials one peer whatever the topics
/// (retrying until its server listens).
#[test]
fn join_peer_dials_an_explicit_peer() {
    let replay = Replay::new("swarm", "join_peer_dials_an_explicit_peer", 9);
    let mut cfg = SwarmScenarioConfig::new(4, consistent_mix(), replay.seed());
    cfg.mesh_timeout = Duration::from_secs(60);
    cfg.settle = Duration::from_secs(5);
    cfg.join = JoinOptions {
        server: true,
        client: false,
        limit: None,
    };
    cfg.before_join = Some(explicit_zero_to_one);
    let r = run_swarm(&cfg).unwrap();
    assert_eq!(r.connected_after_settle, 1, "{}", describe(&r));
    assert!(!r.missing_pairs.contains(&(0, 1)), "{}", describe(&r));
    assert_eq!(r.peer_connections[0], (1, 0), "{}", describe(&r));
    assert_eq!(r.peer_connections[1], (0, 1), "{}", describe(&r));
}

/// Peer 0 leaves the topic once the mesh formed: its record goes, its connections stay (the
/// reference's `leave`).
fn zero_leaves(sim: &mut SwarmSim, hosts: &[HostId], _: &[[u8; 32]]) {
    sim.with_node(hosts[0], |n, now| {
        n.with_swarm(now, |s, node| {
            let topics: Vec<[u8; 32]> = s.topics().copied().collect();
            assert_eq!(topics.len(), 1);
            for t in &topics {
                s.leave(now, node, t);
            }
            assert_eq!(s.topics().count(), 0);
        });
    });
}

/// Peer 0 leaves, then every connection it holds drops.
fn zero_leaves_and_drops(sim: &mut SwarmSim, hosts: &[HostId], keys: &[[u8; 32]]) {
    zero_leaves(sim, hosts, keys);
    sim.with_node(hosts[0], |n, now| {
        n.with_swarm(now, |s, node| {
            let conns: Vec<_> = s.connections().map(|(c, _)| c).collect();
            assert_eq!(conns.len(), hosts.len() - 1, "meshed before the drop");
            for c in conns {
                node.conn_destroy(c);
            }
        });
    });
}

/// A leave keeps the connections: after it (and 30 s more) every pair still holds its one
/// shared connection.
#[test]
fn a_leave_keeps_connections() {
    let replay = Replay::new("swarm", "a_leave_keeps_connections", 11);
    let mut cfg = SwarmScenarioConfig::new(8, consistent_mix(), replay.seed());
    cfg.mesh_timeout = Duration::from_secs(60);
    cfg.after_mesh = Some(zero_leaves);
    let r = run_swarm(&cfg).unwrap();
    assert!(r.meshed(), "{}", describe(&r));
    assert_eq!(r.connected_after_settle, 28, "{}", describe(&r));
    assert_eq!(r.mismatched_pairs, 0, "{}", describe(&r));
}

/// After a leave the peer dials no one for that topic: once its connections drop, it redials
/// none of them (its peers' topic is no longer joined); what it holds 60 s later are only the
/// others' dials (they still look for the topic and retry the peer, which still listens, as
/// the reference's). The pairs without it stay meshed.
#[test]
fn after_a_leave_the_peer_dials_no_one() {
    let replay = Replay::new("swarm", "after_a_leave_the_peer_dials_no_one", 13);
    let mut cfg = SwarmScenarioConfig::new(8, consistent_mix(), replay.seed());
    cfg.mesh_timeout = Duration::from_secs(60);
    cfg.settle = Duration::from_secs(60);
    cfg.after_mesh = Some(zero_leaves_and_drops);
    let r = run_swarm(&cfg).unwrap();
    assert!(r.meshed(), "{}", describe(&r));
    assert_eq!(
        r.peer_connections[0].0,
        0,
        "no connection dialed by the peer that left: {}",
        describe(&r)
    );
    for &(a, b) in &r.missing_pairs {
        assert_eq!(
            a,
            0,
            "only pairs with the leaver may be missing: {}",
            describe(&r)
        );
        let _ = b;
    }
    assert_eq!(r.mismatched_pairs, 0, "{}", describe(&r));
}

/// Swarm-level `relayThrough` (hyperswarm's): peers behind randomizing NATs dial through the
/// swarm's relay, so with one every pair connects — symmetric × symmetric too, which cannot
/// punch — and each pair still holds exactly one connection.
#[test]
fn with_a_relay_symmetric_peers_mesh_too() {
    let replay = Replay::new("swarm", "with_a_relay_symmetric_peers_mesh_too", 1);
    // Every peer behind a symmetric NAT: no pair can punch, every pair needs the relay.
    let mix: NatMix = "symmetric:1".parse().unwrap();
    let mut cfg = SwarmScenarioConfig::new(6, mix, replay.seed());
    cfg.relay = true;
    cfg.mesh_timeout = Duration::from_secs(120);
    cfg.settle = Duration::from_secs(10);
    let r = run_swarm(&cfg).unwrap();
    assert_eq!(r.bootstrapped, 6, "{}", describe(&r));
    assert_eq!(
        r.connectable_pairs, 15,
        "with a relay every pair can connect"
    );
    assert!(r.meshed(), "{}", describe(&r));
    assert!(r.missing_pairs.is_empty(), "{}", describe(&r));
    assert_eq!(r.mismatched_pairs, 0, "{}", describe(&r));
    assert!(r.to_json_line().contains("\"relay\":true"));
    assert_eq!(
        r.dial_failures.get("RELAY_ABORTED"),
        None,
        "the relay has room for every pair: {}",
        describe(&r)
    );
}

/// A relay node with room for 3 UDX streams (3 relay connections: a peer keeps one relay
/// session for all its pairings through that relay, so 3 peers) and 8 remembered handshakes,
/// as hdht's defaults (a 512 MiB connection budget, 4,096 handshakes) are for a mesh of
/// hundreds.
fn tiny_relay_node(c: &mut DhtConfig) {
    c.connection_budget = Some(3 * (MIN_RECV_WINDOW + MIN_SEND_BUFFER));
    c.max_server_handshakes = Some(8);
}

/// Every peer's relay session is a connect to the relay node, a stream it keeps and a
/// handshake its server remembers for 10 s (before relay sessions were shared, every relayed
/// pair was two such connects). A relay node out of room answers `TRY_LATER` (the relay
/// connection fails with `SERVER_ERROR`) or drops the handshake, and the relayed connect
/// fails with `RELAY_ABORTED`: so the 100-peer mesh saw 83 of them, and the symmetric peers
/// of a 1,000-peer swarm stayed below 64 connections for minutes. The scenario sizes its relay
/// node for the mesh (`relay_node_config`; `with_a_relay_symmetric_peers_mesh_too` has no
/// `RELAY_ABORTED`); squeezed to 3 relay connections, the same six symmetric peers cannot
/// mesh: only pairs among the 3 peers with a session relay.
#[test]
fn a_relay_node_out_of_room_aborts_relayed_connects() {
    let replay = Replay::new(
        "swarm",
        "a_relay_node_out_of_room_aborts_relayed_connects",
        1,
    );
    let mix: NatMix = "symmetric:1".parse().unwrap();
    let mut cfg = SwarmScenarioConfig::new(6, mix, replay.seed());
    cfg.relay = true;
    cfg.relay_node = Some(tiny_relay_node);
    cfg.mesh_timeout = Duration::from_secs(40);
    cfg.settle = Duration::ZERO;
    let r = run_swarm(&cfg).unwrap();
    assert!(!r.meshed(), "{}", describe(&r));
    assert!(
        r.connected_pairs <= 3,
        "at most the 3 pairs among 3 peers relay at once: {}",
        describe(&r)
    );
    assert!(
        r.dial_failures.get("RELAY_ABORTED").copied().unwrap_or(0) > 0,
        "{}",
        describe(&r)
    );
}

/// A mix with symmetric peers and a relay: consistent × symmetric pairs punch (the server side
/// of such a punch runs a birthday punch for a while after its handshake is done) and the rest
/// relay. Every pair connects and no host keeps a deadline in the past: a server counted a
/// punching handshake's 10 s clear-wait as a timer it never acts on, so once that wait was
/// over its deadline stayed in the past for the rest of the punch — the simulator advanced
/// 1 µs per step (a runtime would busy-loop) and `hdht sim swarm --relay` over this mix at 30
/// peers never finished.
#[test]
fn with_a_relay_a_mix_with_symmetric_peers_meshes_without_busy_timers() {
    let replay = Replay::new(
        "swarm",
        "with_a_relay_a_mix_with_symmetric_peers_meshes_without_busy_timers",
        1,
    );
    let mix: NatMix = "port-restricted:1,symmetric:1".parse().unwrap();
    let mut cfg = SwarmScenarioConfig::new(10, mix, replay.seed());
    cfg.relay = true;
    cfg.mesh_timeout = Duration::from_secs(120);
    cfg.settle = Duration::from_secs(10);
    let r = run_swarm(&cfg).unwrap();
    assert_eq!(
        r.connectable_pairs, 45,
        "with a relay every pair can connect"
    );
    assert!(r.meshed(), "{}", describe(&r));
    assert!(r.missing_pairs.is_empty(), "{}", describe(&r));
    assert_eq!(r.mismatched_pairs, 0, "{}", describe(&r));
    assert_eq!(r.net.busy_timers, 0, "{}", describe(&r));
}

/// Pairs (a peer whose NAT keeps ports, a peer whose NAT randomizes them) checked by
/// `consistent_to_random_pairs_are_relayed`.
static RELAY_PAIRS_CHECKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether this peer's NAT randomizes ports, as its DHT sees it (`dht.randomized`).
fn randomized(sim: &SwarmSim, h: HostId) -> bool {
    matches!(sim.node(h).node().rpc().public_address(), (Some(_), 0))
}

fn consistent_to_random_pairs_are_relayed(sim: &mut SwarmSim, hosts: &[HostId], keys: &[[u8; 32]]) {
    for (i, &a) in hosts.iter().enumerate() {
        for (j, &b) in hosts.iter().enumerate() {
            if i == j || randomized(sim, a) || !randomized(sim, b) {
                continue;
            }
            let host = sim.node(a);
            let swarm = host.swarm().unwrap();
            let conn = swarm
                .connection_to(&keys[j])
                .unwrap_or_else(|| panic!("peer {i} holds a connection to peer {j}"));
            assert!(
                host.node().conn_relay_path(conn).is_some(),
                "peer {i} (consistent) to peer {j} (randomizing): the connection went through \
                 the relay, whichever side dialed"
            );
            RELAY_PAIRS_CHECKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Hyperswarm's server names the swarm's relay while its own NAT randomizes ports (its
/// `relayThrough` is the swarm's rule asked without `force`). So between a peer behind a
/// consistent NAT and one behind a symmetric NAT the connection is relayed whichever side
/// dials: the symmetric side's dials use the relay (its NAT randomizes), and its server names
/// the relay to the consistent side's dials (which would otherwise try a birthday punch).
#[test]
fn a_randomizing_peers_server_names_the_swarm_relay() {
    let replay = Replay::new(
        "swarm",
        "a_randomizing_peers_server_names_the_swarm_relay",
        1,
    );
    let mix: NatMix = "port-restricted:1,symmetric:1".parse().unwrap();
    let mut cfg = SwarmScenarioConfig::new(8, mix, replay.seed());
    cfg.relay = true;
    cfg.mesh_timeout = Duration::from_secs(120);
    cfg.settle = Duration::from_secs(1);
    cfg.after_mesh = Some(consistent_to_random_pairs_are_relayed);
    let r = run_swarm(&cfg).unwrap();
    assert!(r.meshed(), "{}", describe(&r));
    assert!(
        RELAY_PAIRS_CHECKED.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the mix has consistent and randomizing peers: {}",
        describe(&r)
    );
}
