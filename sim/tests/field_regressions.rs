//! Known field failures of the reference (issue 17, item 5) as named simulator regressions,
//! each deterministic from its seed and a few seconds of wall time:
//!
//! * `regression_stale_relay_address_after_nat_mapping_expiry`: a server behind a NAT whose
//!   mapping expires (the box moves every mapping to a new public port) keeps announcing the
//!   old address in the reference; here a client connecting afterwards still reaches it.
//! * `regression_lan_connect_takes_the_lan_path_without_waiting`: two peers behind one NAT;
//!   the reference waits ~15 s before taking the LAN path; here the connect opens at once,
//!   over the server's LAN address.
//!
//! The other two named regressions are core tests: the NAT sampler's lucky sample
//! (`core/tests/holepunch_nat.rs`) and the holepunch map under many punch requests
//! (`core/tests/hostile_connect.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use hdht_core::connect::ConnectError;
use hdht_core::crypto::KeyPair;
use hdht_core::dht::{ConnId, ConnectEvent, ConnectOptions, DhtEvent, ServerOptions};
use hdht_core::rpc::{Persistence, RpcConfig};
use hdht_core::Instant;
use hdht_sim::{DhtHost, DhtNodeConfig, DhtSim, Engine, Handler, HostId, LinkModel, NatPreset};
use hdht_sim::{NatId, RealmId};

/// Connect outcomes and listening, as they happen.
#[derive(Debug, Default)]
struct Watch {
    listening: usize,
    opened: Vec<(HostId, ConnId, Instant, Option<SocketAddr>)>,
    failed: Vec<(HostId, ConnId, ConnectError)>,
}

impl Handler<DhtHost> for Watch {
    fn on_event(&mut self, sim: &mut Engine<DhtHost>, host: HostId, event: DhtEvent) {
        let DhtEvent::Connect(ev) = event else {
            return;
        };
        match ev {
            ConnectEvent::Listening { .. } => self.listening += 1,
            ConnectEvent::Open { conn, info } => {
                self.opened
                    .push((host, conn, sim.now(), info.remote_address));
            }
            ConnectEvent::Failed { conn, error } => self.failed.push((host, conn, error)),
            _ => {}
        }
    }
}

struct World {
    sim: DhtSim,
    w: Watch,
    boot: std::net::SocketAddrV4,
}

impl World {
    /// A public DHT of six open, persistent nodes on a clean link.
    fn new(seed: u64) -> World {
        let link = LinkModel {
            loss: 0.0,
            ..LinkModel::default()
        };
        let mut sim = DhtSim::new(seed, link);
        let mut w = Watch::default();
        let boot = sim.next_dht_server_addr();
        let mut public = vec![sim
            .add_dht_node_in(RealmId::INTERNET, DhtNodeConfig::bootstrapper(boot))
            .expect("bootstrapper")];
        for _ in 1..6 {
            sim.run_for_with(Duration::from_millis(200), &mut w);
            let mut c = DhtNodeConfig::joining(vec![boot]);
            c.dht.rpc.persistence = Persistence::Persistent;
            public.push(sim.add_dht_node_in(RealmId::INTERNET, c).expect("node"));
        }
        let mut world = World { sim, w, boot };
        assert!(
            world.run_until(Duration::from_secs(60), |sim, _| public
                .iter()
                .all(|&h| sim.try_node(h).is_some_and(
                    |n| n.rpc().is_bootstrapped() && !n.rpc().is_firewalled()
                ))),
            "the public DHT settled"
        );
        world
    }

    fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&DhtSim, &Watch) -> bool,
    ) -> bool {
        let end = self.sim.now() + limit;
        while !done(&self.sim, &self.w) {
            if self.sim.now() >= end {
                return false;
            }
            self.sim
                .run_for_with(Duration::from_millis(10), &mut self.w);
        }
        true
    }

    /// A hyperdht node in `realm`, bootstrapped.
    fn join(&mut self, realm: RealmId) -> HostId {
        let cfg = DhtNodeConfig {
            dht: hdht_core::dht::DhtConfig {
                rpc: RpcConfig {
                    bootstrap: vec![self.boot],
                    ..RpcConfig::default()
                },
                ..Default::default()
            },
        };
        let h = self.sim.add_dht_node_in(realm, cfg).expect("host");
        assert!(
            self.run_until(Duration::from_secs(60), |sim, _| sim
                .try_node(h)
                .is_some_and(|n| n.rpc().is_bootstrapped())),
            "the node bootstrapped"
        );
        h
    }

    /// Listens on a fresh key pair at `h`; returns its public key once announced.
    fn listen(&mut self, h: HostId) -> [u8; 32] {
        let kp = KeyPair::generate(self.sim.rng());
        let before = self.w.listening;
        self.sim
            .with_node(h, |n, now| {
                let id = n.create_server(ServerOptions::default());
                n.listen(now, id, Some(kp.clone()))
            })
            .expect("listen");
        assert!(
            self.run_until(Duration::from_secs(30), |_, w| w.listening > before),
            "the server announced"
        );
        kp.public_key()
    }

    /// Connects from `h` to `pk`; the time it took and the stream's remote address, or the
    /// error.
    fn connect(
        &mut self,
        h: HostId,
        pk: [u8; 32],
        limit: Duration,
    ) -> Result<(Duration, Option<SocketAddr>), Option<ConnectError>> {
        let started = self.sim.now();
        let conn = self
            .sim
            .with_node(h, |n, now| n.connect(now, pk, ConnectOptions::default()));
        let done = |w: &Watch| {
            w.opened.iter().any(|o| o.0 == h && o.1 == conn)
                || w.failed.iter().any(|f| f.0 == h && f.1 == conn)
        };
        self.run_until(limit, |_, w| done(w));
        if let Some(o) = self.w.opened.iter().find(|o| o.0 == h && o.1 == conn) {
            return Ok((o.2.saturating_duration_since(started), o.3));
        }
        Err(self
            .w
            .failed
            .iter()
            .find(|f| f.0 == h && f.1 == conn)
            .map(|f| f.2))
    }

    fn gateway(&self, realm: RealmId) -> NatId {
        self.sim
            .net()
            .gateway(realm)
            .expect("realm")
            .expect("behind a NAT")
    }
}

#[test]
fn regression_stale_relay_address_after_nat_mapping_expiry() {
    let mut world = World::new(1701);
    let (realm, _) = world
        .sim
        .add_preset(NatPreset::PortRestricted, None)
        .expect("nat");
    let server = world.join(realm);
    let pk = world.listen(server);
    let (client_realm, _) = world
        .sim
        .add_preset(NatPreset::PortRestricted, None)
        .expect("nat");
    let client = world.join(client_realm);
    let first = world.connect(client, pk, Duration::from_secs(30));
    assert!(first.is_ok(), "before the expiry: {first:?}");

    // The server's NAT mapping expires: every mapping moves to a new public port. The
    // addresses the server announced (and relays hold) are stale now.
    let nat = world.gateway(realm);
    world.sim.rebind_nat(nat).expect("rebind");
    world
        .sim
        .run_for_with(Duration::from_secs(60), &mut world.w);

    // A new client connects afterwards: it must reach the server.
    let (realm2, _) = world
        .sim
        .add_preset(NatPreset::PortRestricted, None)
        .expect("nat");
    let late = world.join(realm2);
    let after = world.connect(late, pk, Duration::from_secs(30));
    assert!(after.is_ok(), "after the expiry: {after:?}");
}

#[test]
fn regression_lan_connect_takes_the_lan_path_without_waiting() {
    let mut world = World::new(1702);
    // Both peers behind one NAT box: they share a public address and meet on its LAN. A
    // symmetric NAT, so that the public path cannot be punched and only the LAN path works.
    let (realm, _) = world
        .sim
        .add_preset(NatPreset::Symmetric, None)
        .expect("nat");
    let server = world.join(realm);
    let pk = world.listen(server);
    let client = world.join(realm);
    let server_lan = world.sim.dht_server_addr(server);
    let outcome = world.connect(client, pk, Duration::from_secs(30));
    let (took, remote) = outcome.expect("the LAN connect opened");
    assert_eq!(
        remote,
        Some(SocketAddr::V4(server_lan)),
        "the stream runs over the server's LAN address"
    );
    // Virtual time, deterministic: a few round trips through the DHT, not the reference's
    // ~15 s wait before it tries the LAN address.
    assert!(
        took < Duration::from_secs(3),
        "the LAN connect took {took:?}"
    );
}
