//! A hyperdht node destroyed gracefully in the simulator: its server closes and its announces
//! are unannounced before it stops (the node does it itself, `DhtNode::destroy(now, false)`),
//! so a lookup afterwards no longer finds it — where a crashed node's record stays until it
//! expires.

use std::time::Duration;

use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::{DhtEvent, OpId, OpOutput};
use hdht_core::rpc::Persistence;
use hdht_sim::network::{HostId, RealmId};
use hdht_sim::{DhtNodeConfig, DhtSim, LinkModel};

/// A public DHT of `n` persistent nodes, settled.
fn public_dht(seed: u64, n: usize) -> (DhtSim, Vec<HostId>) {
    let mut sim = DhtSim::new(seed, LinkModel::default());
    let boot = sim.next_dht_server_addr();
    let mut hosts = vec![sim
        .add_dht_node_in(RealmId::INTERNET, DhtNodeConfig::bootstrapper(boot))
        .expect("bootstrapper")];
    for _ in 1..n {
        sim.run_for(Duration::from_millis(200));
        let mut cfg = DhtNodeConfig::joining(vec![boot]);
        cfg.dht.rpc.persistence = Persistence::Persistent;
        hosts.push(sim.add_dht_node_in(RealmId::INTERNET, cfg).expect("node"));
    }
    sim.run_for(Duration::from_secs(30));
    for &h in &hosts {
        let rpc = sim.node(h).rpc();
        assert!(
            rpc.is_bootstrapped() && !rpc.is_firewalled(),
            "host {h} settled"
        );
    }
    (sim, hosts)
}

/// Runs until operation `op` of host `h` is done; returns its output.
fn finish(sim: &mut DhtSim, h: HostId, op: OpId) -> OpOutput {
    for _ in 0..600 {
        for ev in sim.take_events(h) {
            if let DhtEvent::OpDone { op: o, result } = ev {
                if o == op {
                    return result.expect("the operation succeeds");
                }
            }
        }
        sim.run_for(Duration::from_millis(100));
    }
    panic!("operation {op:?} of host {h} did not finish in a minute");
}

/// Whether a lookup of `topic` from `h` finds `public_key`.
fn finds(sim: &mut DhtSim, h: HostId, topic: [u8; 32], public_key: [u8; 32]) -> bool {
    let op = sim.with_node(h, |n, now| n.lookup(now, topic));
    let mut found = false;
    for _ in 0..600 {
        for ev in sim.take_events(h) {
            match ev {
                DhtEvent::LookupReply { op: o, reply } if o == op => {
                    found |= reply.peers.iter().any(|p| p.public_key == public_key);
                }
                DhtEvent::OpDone { op: o, .. } if o == op => return found,
                _ => {}
            }
        }
        sim.run_for(Duration::from_millis(100));
    }
    panic!("the lookup did not finish in a minute");
}

#[test]
fn a_gracefully_destroyed_node_unannounces_before_it_stops() {
    let (mut sim, hosts) = public_dht(11, 12);
    let (announcer, other, looker) = (hosts[5], hosts[6], hosts[9]);
    let topic = hash(b"graceful");
    let kp = KeyPair::from_seed(&hash(b"announcer"));
    let kp2 = KeyPair::from_seed(&hash(b"crashing announcer"));
    for (h, kp) in [(announcer, &kp), (other, &kp2)] {
        let op = sim.with_node(h, |n, now| n.announce(now, topic, kp, vec![], 0));
        assert!(matches!(finish(&mut sim, h, op), OpOutput::Announce { .. }));
    }
    assert!(finds(&mut sim, looker, topic, kp.public_key()));
    assert!(finds(&mut sim, looker, topic, kp2.public_key()));

    // Graceful: the node unannounces, then stops by itself.
    sim.with_node(announcer, |n, now| n.destroy(now, false));
    assert!(!sim.node(announcer).is_destroyed(), "it first unannounces");
    sim.run_for(Duration::from_secs(30));
    assert!(sim.node(announcer).is_destroyed(), "and then stops");
    let unannounced = sim.take_events(announcer).iter().any(|e| {
        matches!(
            e,
            DhtEvent::OpDone {
                result: Ok(OpOutput::Unannounce),
                ..
            }
        )
    });
    assert!(
        unannounced,
        "the unannounce finished before the node stopped"
    );
    // A crash leaves the record behind.
    sim.crash(other).expect("crash");
    sim.run_for(Duration::from_secs(1));

    assert!(
        !finds(&mut sim, looker, topic, kp.public_key()),
        "the gracefully destroyed node's record is gone"
    );
    assert!(
        finds(&mut sim, looker, topic, kp2.public_key()),
        "the crashed node's record stays until it expires"
    );
}
