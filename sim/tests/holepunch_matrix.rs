//! The holepunch NAT matrix: hyperdht nodes behind every pair of NAT presets connect by public
//! key across a public DHT (50 ms RTT, 1% loss), a few seeds per pair — the targets,
//! checked with fewer seeds than `hdht sim holepunch-matrix` runs (100 per pair):
//!
//! - 100% where at least one side is open or has consistent (endpoint-independent) mapping;
//! - consistent × random ≥ 99% (with a few seeds: every run);
//! - random × random fails fast with `HOLEPUNCH_DOUBLE_RANDOMIZED_NATS` (until relaying);
//! - median time to connect under 1 s for consistent × consistent, under 1.5 s for
//!   consistent × random.
//!
//! Mapping behaviour of the presets (`sim/src/nat.rs`): full-cone, restricted-cone,
//! port-restricted, cgnat (a port-restricted home behind an endpoint-independent carrier NAT)
//! and udp-blocked (a stateful firewall: no translation, unsolicited datagrams dropped, so its
//! mapping is the identity — consistent) are consistent; symmetric is random.
//!
//! Every run is its own deterministic simulation; `HDHT_SIM_SEED` sets the first seed.

use std::time::Duration;

use hdht_core::connect::ConnectError;
use hdht_sim::replay::Replay;
use hdht_sim::scenario::holepunch::{
    run_holepunch, run_matrix, HolepunchConfig, HolepunchFailure, MatrixConfig, MatrixReport,
    PairReport,
};
use hdht_sim::NatPreset;

/// Seeds per pair here (the CLI's default is 100).
const SEEDS: usize = 10;

const CONSISTENT: [NatPreset; 5] = [
    NatPreset::FullCone,
    NatPreset::RestrictedCone,
    NatPreset::PortRestricted,
    NatPreset::Cgnat,
    NatPreset::UdpBlocked,
];
const RANDOM: [NatPreset; 1] = [NatPreset::Symmetric];

fn matrix(seed: u64, seeds: usize, clients: &[NatPreset], servers: &[NatPreset]) -> MatrixReport {
    let mut cfg = MatrixConfig::new(seed, seeds);
    cfg.clients = clients.to_vec();
    cfg.servers = servers.to_vec();
    // Test functions already run in parallel.
    cfg.jobs = 1;
    run_matrix(&cfg, &mut |_| {}, &mut |_| {}).expect("the matrix runs")
}

fn describe(p: &PairReport) -> String {
    let runs: Vec<String> = p
        .details
        .iter()
        .map(|r| format!("seed {}: {:?} after {:?}", r.seed, r.outcome, r.elapsed))
        .collect();
    format!(
        "{} -> {}: {}/{} connected, errors {:?}\n  {}",
        p.client,
        p.server,
        p.successes,
        p.runs,
        p.errors,
        runs.join("\n  ")
    )
}

fn assert_all_connect(report: &MatrixReport) {
    for p in &report.pairs {
        assert_eq!(p.successes, p.runs, "{}", describe(p));
    }
}

/// A server with a public address is reached directly, and a client with one is connected to
/// by the server: no punching involved.
#[test]
fn pairs_with_an_open_side_always_connect() {
    let replay = Replay::new(
        "holepunch_matrix",
        "pairs_with_an_open_side_always_connect",
        1,
    );
    let to_open = matrix(replay.seed(), SEEDS, &NatPreset::ALL, &[NatPreset::Open]);
    assert_all_connect(&to_open);
    for p in &to_open.pairs {
        // The handshake round trips, then the stream's first round trip: a few RTTs.
        assert!(p.connect_ms.p50 < 1000.0, "{}", describe(p));
    }
}

/// Whatever the core can do today, a connect between two NATed hosts ends with a connection
/// or a typed connect error quickly — never a hang until the timeout, never a setup failure.
#[test]
fn nat_pairs_connect_or_fail_fast_with_a_clear_error() {
    let replay = Replay::new(
        "holepunch_matrix",
        "nat_pairs_connect_or_fail_fast_with_a_clear_error",
        1,
    );
    let nat: Vec<NatPreset> = NatPreset::ALL
        .into_iter()
        .filter(|p| *p != NatPreset::Open)
        .collect();
    let report = matrix(replay.seed(), 2, &nat, &nat);
    for p in &report.pairs {
        for r in &p.details {
            match &r.outcome {
                Ok(_) => {}
                Err(HolepunchFailure::Connect(_)) => {
                    let took = r.elapsed.expect("connect was called");
                    assert!(took < Duration::from_secs(45), "{}", describe(p));
                }
                Err(other) => panic!("{other} is not a connect outcome\n{}", describe(p)),
            }
        }
    }
    // Both random: no punching strategy exists, and the error says so (or, before punching,
    // that it cannot punch at all).
    let rr = report
        .pair(NatPreset::Symmetric, NatPreset::Symmetric)
        .expect("the cell");
    assert_eq!(rr.successes, 0, "{}", describe(rr));
    for name in rr.errors.keys() {
        assert!(
            ["HOLEPUNCH_DOUBLE_RANDOMIZED_NATS", "CANNOT_HOLEPUNCH"].contains(&name.as_str()),
            "{}",
            describe(rr)
        );
    }
}

/// The targets for the pairs that need a holepunch (was `#[ignore]`d until punching was
/// wired into the node, commit ac90c02).
#[test]
fn nat_pairs_meet_the_holepunch_targets() {
    let replay = Replay::new(
        "holepunch_matrix",
        "nat_pairs_meet_the_holepunch_targets",
        1,
    );
    let mut nat: Vec<NatPreset> = CONSISTENT.to_vec();
    nat.extend(RANDOM);
    // A client with a public address has the server connect to it.
    let mut clients = nat.clone();
    clients.insert(0, NatPreset::Open);
    let report = matrix(replay.seed(), SEEDS, &clients, &nat);
    for p in &report.pairs {
        let random = (RANDOM.contains(&p.client), RANDOM.contains(&p.server));
        // A punched connection runs over pool sockets on both sides; a random side opens
        // birthday sockets.
        for r in p
            .details
            .iter()
            .filter(|r| r.connected() && p.client != NatPreset::Open)
        {
            let (c, s) = r.pool_binds;
            assert!(
                c >= 1 && s >= 1,
                "pool sockets {:?}: {}",
                r.pool_binds,
                describe(p)
            );
            assert!(
                (!random.0 || c > 1) && (!random.1 || s > 1),
                "birthday sockets {:?}: {}",
                r.pool_binds,
                describe(p)
            );
        }
        match random {
            (false, false) => {
                assert_eq!(
                    p.successes,
                    p.runs,
                    "consistent x consistent: {}",
                    describe(p)
                );
                assert!(
                    p.connect_ms.p50 < 1000.0,
                    "consistent x consistent median {} ms: {}",
                    p.connect_ms.p50,
                    describe(p)
                );
            }
            (true, false) | (false, true) => {
                assert_eq!(p.successes, p.runs, "consistent x random: {}", describe(p));
                assert!(
                    p.connect_ms.p50 < 1500.0,
                    "consistent x random median {} ms: {}",
                    p.connect_ms.p50,
                    describe(p)
                );
            }
            (true, true) => {
                assert_eq!(p.successes, 0, "{}", describe(p));
                for r in &p.details {
                    assert_eq!(
                        r.outcome,
                        Err(HolepunchFailure::Connect(
                            ConnectError::HolepunchDoubleRandomizedNats
                        )),
                        "{}",
                        describe(p)
                    );
                    assert!(
                        r.elapsed.expect("connected was called") < Duration::from_secs(5),
                        "fails fast: {}",
                        describe(p)
                    );
                }
            }
        }
    }
}

/// The same seed replays a run exactly (outcome and trace hash), another seed does not; the
/// matrix does not depend on the number of worker threads.
#[test]
fn runs_replay_from_their_seed() {
    let replay = Replay::new("holepunch_matrix", "runs_replay_from_their_seed", 5);
    let cfg = HolepunchConfig::new(
        NatPreset::PortRestricted,
        NatPreset::Symmetric,
        replay.seed(),
    );
    let a = run_holepunch(&cfg).unwrap();
    let b = run_holepunch(&cfg).unwrap();
    assert_eq!(
        a.trace_hash,
        b.trace_hash,
        "seed {} did not replay",
        replay.seed()
    );
    assert_eq!(
        (&a.outcome, a.elapsed, a.events),
        (&b.outcome, b.elapsed, b.events)
    );
    let c = run_holepunch(&HolepunchConfig {
        seed: replay.seed() + 1,
        ..cfg
    })
    .unwrap();
    assert_ne!(a.trace_hash, c.trace_hash);

    let presets = [
        NatPreset::Open,
        NatPreset::PortRestricted,
        NatPreset::Symmetric,
    ];
    let mut m = MatrixConfig::new(replay.seed(), 2);
    m.clients = presets.to_vec();
    m.servers = presets.to_vec();
    m.jobs = 1;
    let one = run_matrix(&m, &mut |_| {}, &mut |_| {}).unwrap();
    m.jobs = 3;
    let three = run_matrix(&m, &mut |_| {}, &mut |_| {}).unwrap();
    assert_eq!(one.trace_hash, three.trace_hash);
    for (x, y) in one.pairs.iter().zip(&three.pairs) {
        assert_eq!(x.to_json_line(), y.to_json_line());
    }
    let line = one.to_json_line();
    assert!(
        line.contains(&format!("\"seed\":{}", replay.seed()))
            && line.contains(&one.trace_hash.to_hex()),
        "{line}"
    );
}

/// At 5% loss, seed 15: the server behind a symmetric NAT announces to the three nodes closest
/// to its key (hyperdht's `pickBest`), and the client's first FIND_PEER to each of them is lost
/// (two replies, one request). Their retransmissions' replies, carrying the record, arrive at
/// the very instant another visit's first timeout leaves only slow visits in flight, which
/// settles the query (dht-rpc: `_slow === inflight` with k replies). The replies must be
/// read before that timer runs — as the real drivers do — or the connect ends in
/// PEER_NOT_FOUND (it did, for every consistent client, until the engine ran arrivals before
/// timers at one instant).
#[test]
fn replies_that_arrive_as_the_find_peer_query_settles_are_counted() {
    for client in [
        NatPreset::FullCone,
        NatPreset::RestrictedCone,
        NatPreset::PortRestricted,
        NatPreset::UdpBlocked,
    ] {
        let mut cfg = HolepunchConfig::new(client, NatPreset::Symmetric, 15);
        cfg.loss = 0.05;
        let r = run_holepunch(&cfg).unwrap();
        assert!(
            r.connected(),
            "{client} -> symmetric, seed 15, 5% loss: {:?} after {:?}",
            r.outcome,
            r.elapsed
        );
    }
}
