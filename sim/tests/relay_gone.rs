//! A connect whose blind relay failed while its punch waited for the random-punch throttle
//! (issue 15: `hdht sim swarm --peers 100 --relay` left 101 pairs unconnected).
//!
//! A consistent client dials a server behind a symmetric NAT that names a blind relay; the
//! punch is random, and the client's node ran a random punch recently (throttled), so the
//! punch waits (`tryLater`) while the relay carries the stream. Here the relay fails (its key
//! is nobody's). The reference then drops the connect's relay token (`resetRelayConnection`)
//! and the punch's next wait throws `HOLEPUNCH_ABORTED`: the connect fails, and a swarm retries
//! the peer through its relay. Before the fix the punch kept its "a relay carries the stream"
//! flag and waited again and again, 10–20 s at a time, for as long as the node's random punches
//! stayed throttled: the connect never ended, and in a swarm it held one of the few dial slots
//! (`maxParallel`) for good, so the peer's queue stopped.
//!
//! Every run is its own deterministic simulation; `HDHT_SIM_SEED` sets the first seed.

use std::time::Duration;

use hdht_core::connect::ConnectError;
use hdht_core::crypto::KeyPair;
use hdht_core::dht::{ConnectEvent, ConnectOptions, DhtEvent, ServerOptions};
use hdht_core::relay::RelaySelector;
use hdht_core::rpc::{Persistence, RpcConfig};
use hdht_sim::replay::Replay;
use hdht_sim::{DhtNodeConfig, DhtSim, HostId, LinkModel, NatPreset, RealmId};

fn ready(sim: &DhtSim, h: HostId) -> bool {
    sim.try_node(h).is_some_and(|n| n.rpc().is_bootstrapped())
}

fn run_until_ready(sim: &mut DhtSim, hosts: &[HostId]) {
    let deadline = sim.now() + Duration::from_secs(60);
    while !hosts.iter().all(|&h| ready(sim, h)) {
        assert!(sim.now() < deadline, "hosts bootstrap within 60 s");
        sim.run_for(Duration::from_millis(100));
    }
}

/// The client's connect outcome within `within` of virtual time (`None`: still pending).
fn connect_outcome(seed: u64, within: Duration) -> Option<Result<(), ConnectError>> {
    let link = LinkModel {
        latency: Duration::from_millis(25),
        ..LinkModel::default()
    };
    let mut sim = DhtSim::new(seed, link);
    let boot = sim.next_dht_server_addr();
    let mut public = vec![sim
        .add_dht_node_in(RealmId::INTERNET, DhtNodeConfig::bootstrapper(boot))
        .expect("bootstrapper")];
    for _ in 1..10 {
        sim.run_for(Duration::from_millis(10));
        let mut c = DhtNodeConfig::joining(vec![boot]);
        c.dht.rpc.persistence = Persistence::Persistent;
        public.push(
            sim.add_dht_node_in(RealmId::INTERNET, c)
                .expect("public node"),
        );
    }
    run_until_ready(&mut sim, &public);
    let seeds: Vec<_> = public.iter().map(|&h| sim.dht_server_addr(h)).collect();
    let joining = || {
        let mut c = DhtNodeConfig::joining(seeds.clone());
        c.dht.rpc = RpcConfig {
            bootstrap: seeds.clone(),
            ..RpcConfig::default()
        };
        c
    };

    // The server, behind a symmetric NAT, names a relay no node serves.
    let nobody = KeyPair::generate(sim.rng()).public_key();
    let server_kp = KeyPair::generate(sim.rng());
    let (realm, _) = sim.add_preset(NatPreset::Symmetric, None).expect("nat");
    let server = sim.add_dht_node_in(realm, joining()).expect("server");
    run_until_ready(&mut sim, &[server]);
    sim.with_node(server, |n, now| {
        let id = n.create_server(ServerOptions {
            relay_through: Some(RelaySelector::Key(nobody)),
            ..ServerOptions::default()
        });
        n.listen(now, id, Some(server_kp.clone()))
    })
    .expect("listen");
    sim.run_for(Duration::from_secs(5));

    // The client, behind a consistent NAT, whose node's random punches are throttled for
    // longer than the run (it "punched one just now").
    let (realm, _) = sim
        .add_preset(NatPreset::PortRestricted, None)
        .expect("nat");
    let client = sim.add_dht_node_in(realm, joining()).expect("client");
    run_until_ready(&mut sim, &[client]);
    sim.with_node(client, |n, now| {
        n.node_mut()
            .set_random_punch_limits(now, Some(Duration::from_secs(3600)), true)
    });
    sim.take_events(client);
    let conn = sim.with_node(client, |n, now| {
        n.connect(now, server_kp.public_key(), ConnectOptions::default())
    });
    let deadline = sim.now() + within;
    while sim.now() < deadline {
        sim.run_for(Duration::from_millis(100));
        for ev in sim.take_events(client) {
            match ev {
                DhtEvent::Connect(ConnectEvent::Open { conn: c, .. }) if c == conn => {
                    return Some(Ok(()))
                }
                DhtEvent::Connect(ConnectEvent::Failed { conn: c, error }) if c == conn => {
                    return Some(Err(error))
                }
                _ => {}
            }
        }
    }
    None
}

#[test]
fn a_punch_waiting_on_a_relay_that_failed_aborts() {
    let replay = Replay::new(
        "relay_gone",
        "a_punch_waiting_on_a_relay_that_failed_aborts",
        1,
    );
    for seed in replay.seed()..replay.seed() + 2 {
        // The relay fails within seconds; the punch's next turn (a wait of 10–20 s at most)
        // then aborts.
        let outcome = connect_outcome(seed, Duration::from_secs(60));
        assert_eq!(
            outcome,
            Some(Err(ConnectError::HolepunchAborted)),
            "seed {seed}: the connect ends once its relay is gone"
        );
    }
}
