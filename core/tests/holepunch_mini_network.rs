//! A deterministic mini network: two punchers, each behind a simply modelled NAT, exchanging
//! probes through the `connect::puncher` logic alone — consistent × consistent and
//! consistent × random punches succeed, random × random fails fast.

mod holepunch_common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdht_core::connect::puncher::{
    Analysis, ProbeVerdict, Puncher, PuncherConfig, PuncherOutput, RandomPunchLimiter,
    RemoteUpdate, Strategy,
};
use hdht_core::connect::{ConnectError, Firewall};
use hdht_core::udx::SocketId;
use hdht_core::Instant;
use holepunch_common::{node, t};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
