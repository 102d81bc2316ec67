//! A server whose public address changes announces again at once (the reference refreshes
//! its servers on a network change): a listening server behind a port-restricted NAT, whose
//! NAT then moves every mapping to a new port. The relays hold the address the server
//! announced from, so until it announces again a handshake goes to the dead mapping. The
//! node's NAT sampler learns the new address as it resamples known nodes (dht-rpc resamples a
//! node after 30 min); the server sends ANNOUNCEs within 2 s of that (without the change it
//! would wait for its own cycle, every ~5 min: the control run, with the refresh disabled,
//! fails this test), and a new client connects.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdht_core::crypto::KeyPair;
use hdht_core::dht::messages::command;
use hdht_core::dht::{ConnId, ConnectEvent, ConnectOptions, DhtEvent, ServerOptions};
use hdht_core::rpc::{Persistence, RpcConfig, RpcEvent};
use hdht_core::wire::Message;
use hdht_core::Instant;
use hdht_sim::replay::Replay;
use hdht_sim::{DhtHost, DhtNodeConfig, DhtSim, Engine, Handler, HostId, LinkModel, NatPreset};
use hdht_sim::{RealmId, TapKind};

/// Open nodes of the public DHT: more than the 13 agreeing samples (of the last 16) the NAT
/// sampler needs to believe an address, so one resampling round can move the estimate.
const PUBLIC_NODES: usize = 20;
/// A node resamples a known node's view of our address once that sample is 360 ticks (30 min)
/// old (dht-rpc's `OLD_NODE`), so a changed public address shows within about that.
const RESAMPLE_LIMIT: Duration = Duration::from_secs(75 * 60);

#[derive(Debug, Default)]
struct Watch {
    server: Option<HostId>,
    client: Option<HostId>,
    listening: u32,
    /// The server's public-address estimates, in order.
    nat_updates: Vec<(Instant, Option<std::net::Ipv4Addr>, u16)>,
    opened: Option<(ConnId, Instant)>,
    failed: Option<String>,
}

impl Handler<DhtHost> for Watch {
    fn on_event(&mut self, sim: &mut Engine<DhtHost>, host: HostId, event: DhtEvent) {
        match event {
            DhtEvent::Rpc(RpcEvent::NatUpdate { host: h, port }) if Some(host) == self.server => {
                self.nat_updates.push((sim.now(), h, port));
            }
            DhtEvent::Connect(ConnectEvent::Listening { .. }) => self.listening += 1,
            DhtEvent::Connect(ConnectEvent::Open { conn, .. }) if Some(host) == self.client => {
                self.opened = Some((conn, sim.now()));
            }
            DhtEvent::Connect(ConnectEvent::Failed { error, .. }) if Some(host) == self.client => {
                self.failed = Some(error.to_string());
            }
            _ => {}
        }
    }
}

/// Runs until `done` holds (checked every 100 ms of virtual time); false after `limit`.
fn run_until(
    sim: &mut DhtSim,
    w: &mut Watch,
    limit: Duration,
    done: impl Fn(&DhtSim, &Watch) -> bool,
) -> bool {
    let deadline = sim.now() + limit;
    while !done(sim, w) {
        if sim.now() >= deadline {
            return false;
        }
        let next = (sim.now() + Duration::from_millis(100)).min(deadline);
        sim.run_until_with(next, w);
    }
    true
}

fn ready(sim: &DhtSim, h: HostId) -> bool {
    sim.try_node(h).is_some_and(|n| n.rpc().is_bootstrapped())
}

#[test]
fn a_server_announces_again_when_its_public_address_changes() {
    let replay = Replay::new(
        "reannounce",
        "a_server_announces_again_when_its_public_address_changes",
        1301,
    );
    let link = LinkModel {
        latency: Duration::from_millis(10),
        ..LinkModel::default()
    };
    let mut sim = DhtSim::new(replay.seed(), link);
    let mut w = Watch::default();
    let boot = sim.next_dht_server_addr();
    let mut public = vec![sim
        .add_dht_node_in(RealmId::INTERNET, DhtNodeConfig::bootstrapper(boot))
        .expect("bootstrapper")];
    for _ in 1..PUBLIC_NODES {
        sim.run_for_with(Duration::from_millis(200), &mut w);
        let mut c = DhtNodeConfig::joining(vec![boot]);
        c.dht.rpc.persistence = Persistence::Persistent;
        public.push(sim.add_dht_node_in(RealmId::INTERNET, c).expect("node"));
    }
    let joining = || DhtNodeConfig {
        dht: hdht_core::dht::DhtConfig {
            rpc: RpcConfig {
                bootstrap: vec![boot],
                ..RpcConfig::default()
            },
            ..Default::default()
        },
    };
    let (realm, _) = sim
        .add_preset(NatPreset::PortRestricted, None)
        .expect("nat");
    let nat = sim.net().gateway(realm).expect("gateway").expect("a NAT");
    let server = sim.add_dht_node_in(realm, joining()).expect("server host");
    w.server = Some(server);
    assert!(
        run_until(&mut sim, &mut w, Duration::from_secs(60), |sim, _| {
            ready(sim, server) && public.iter().all(|&h| ready(sim, h))
        }),
        "the DHT bootstrapped"
    );
    let kp = KeyPair::generate(sim.rng());
    sim.with_node(server, |n, now| {
        let id = n.create_server(ServerOptions::default());
        n.listen(now, id, Some(kp.clone()))
    })
    .expect("listen");
    assert!(run_until(
        &mut sim,
        &mut w,
        Duration::from_secs(30),
        |_, w| w.listening > 0
    ));
    let before = sim.with_node(server, |n, _| n.rpc().public_address());
    assert!(
        before.0.is_some() && before.1 != 0,
        "a consistent estimate: {before:?}"
    );

    // Every ANNOUNCE the server sends from now on, with its time.
    let announces: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = announces.clone();
    sim.set_tap(Some(Box::new(move |r| {
        if r.from_host != server || r.kind != TapKind::Sent {
            return;
        }
        if let Ok(Message::Request(req)) = Message::decode(r.payload) {
            if !req.internal && req.command == command::ANNOUNCE {
                seen.lock().unwrap().push(r.at);
            }
        }
    })));

    // The NAT moves every mapping: the server's address is now another port.
    sim.rebind_nat(nat).expect("rebind");
    let rebound = sim.now();
    let moved = |_: &DhtSim, w: &Watch| {
        w.nat_updates
            .iter()
            .any(|(t, h, p)| *t >= rebound && *h == before.0 && *p != 0 && *p != before.1)
    };
    assert!(
        run_until(&mut sim, &mut w, RESAMPLE_LIMIT, moved),
        "the sampler never settled on the new address: {:?}",
        w.nat_updates
    );
    // The server announced again at once (its own cycle would wait for 100 relay-ping rounds).
    let (changed, _, _) = *w
        .nat_updates
        .iter()
        .find(|(t, h, p)| *t >= rebound && *h == before.0 && *p != 0 && *p != before.1)
        .expect("the new estimate");
    run_until(&mut sim, &mut w, Duration::from_secs(2), |_, _| false);
    let soon: Vec<Instant> = announces
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|t| *t >= changed && t.saturating_duration_since(changed) <= Duration::from_secs(2))
        .collect();
    assert!(
        !soon.is_empty(),
        "no ANNOUNCE within 2 s of the new address ({:?}); all since the rebind: {:?}",
        changed,
        announces.lock().unwrap()
    );

    // Give the new announce cycle time to finish, then connect from a fresh node.
    run_until(&mut sim, &mut w, Duration::from_secs(5), |_, _| false);
    let client = sim
        .add_dht_node_in(RealmId::INTERNET, joining())
        .expect("client host");
    w.client = Some(client);
    assert!(run_until(
        &mut sim,
        &mut w,
        Duration::from_secs(30),
        |sim, _| ready(sim, client)
    ));
    let pk = kp.public_key();
    sim.with_node(client, |n, now| {
        n.connect(now, pk, ConnectOptions::default())
    });
    assert!(
        run_until(&mut sim, &mut w, Duration::from_secs(30), |_, w| w
            .opened
            .is_some()
            || w.failed.is_some()),
        "no outcome"
    );
    assert!(
        w.opened.is_some(),
        "the client reached the server at its new address: {:?} (nat updates {:?})",
        w.failed,
        w.nat_updates
    );
}
