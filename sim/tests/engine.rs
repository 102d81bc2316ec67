//! The engine with a minimal app: many sockets per host, per-datagram TTL, 1-byte probes, and
//! hole punching through NATs — what the holepunch and UDX layers will rely on.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Duration;

use hdht_core::Instant;
use hdht_sim::nat::{Filtering, NatConfig};
use hdht_sim::replay::Replay;
use hdht_sim::{App, Datagram, DropReason, Engine, HostId, LinkModel, RealmId, SocketId};

/// Sends what it is told, reports what it receives.
#[derive(Default)]
struct Probe {
    out: VecDeque<Datagram>,
    inbox: VecDeque<Got>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    socket: SocketId,
    from: SocketAddrV4,
    bytes: Vec<u8>,
}

impl App for Probe {
    type Event = Got;
    fn handle_datagram(
        &mut self,
        _now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        self.inbox.push_back(Got {
            socket,
            from,
            bytes: bytes.to_vec(),
        });
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self, _now: Instant) -> Option<Datagram> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_event(&mut self) -> Option<Got> {
        self.inbox.pop_front()
    }
    fn crash(&mut self) {
        self.out.clear();
    }
}

type Net = Engine<Probe>;

fn host(sim: &mut Net, realm: RealmId, sockets: usize) -> HostId {
    sim.spawn(realm, |s| {
        for i in 0..sockets {
            s.bind(if i == 0 { 5000 } else { 0 })?;
        }
        Ok(Probe::default())
    })
    .unwrap()
}

fn send(sim: &mut Net, h: HostId, socket: u16, to: SocketAddrV4, bytes: &[u8], ttl: Option<u8>) {
    let d = Datagram {
        socket: SocketId(socket),
        to,
        payload: bytes.to_vec(),
        ttl,
    };
    sim.with_node(h, |p, _| p.out.push_back(d));
}

fn addr(sim: &Net, h: HostId, s: u16) -> SocketAddrV4 {
    sim.socket_addr(h, SocketId(s)).unwrap()
}

/// A host's public endpoint for socket `s`, as a public server sees it.
fn observed(sim: &mut Net, h: HostId, s: u16, server: HostId) -> SocketAddrV4 {
    let to = addr(sim, server, 0);
    send(sim, h, s, to, b"?", None);
    sim.run_for(Duration::from_millis(200));
    sim.take_events(server)
        .last()
        .expect("the server heard it")
        .from
}

fn home(sim: &mut Net, cfg: NatConfig) -> RealmId {
    let n = sim.add_nat(cfg, RealmId::INTERNET).unwrap();
    sim.net().nat_inside(n).unwrap()
}

#[test]
fn a_host_owns_hundreds_of_sockets_and_each_datagram_leaves_from_the_one_it_names() {
    let replay = Replay::new(
        "engine",
        "a_host_owns_hundreds_of_sockets_and_each_datagram_leaves_from_the_one_it_names",
        1,
    );
    let mut sim = Net::new(replay.seed(), LinkModel::default());
    let a = host(&mut sim, RealmId::INTERNET, 257);
    let b = host(&mut sim, RealmId::INTERNET, 1);
    let to = addr(&sim, b, 0);
    for s in [0u16, 1, 128, 256] {
        send(&mut sim, a, s, to, &[s as u8], None);
    }
    sim.run_for(Duration::from_millis(200));
    let got = sim.take_events(b);
    let froms: Vec<SocketAddrV4> = got.iter().map(|g| g.from).collect();
    let want: Vec<SocketAddrV4> = [0u16, 1, 128, 256]
        .iter()
        .map(|s| addr(&sim, a, *s))
        .collect();
    let mut sorted = froms.clone();
    sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(
        sorted, want_sorted,
        "each datagram carries its own socket's port"
    );
    assert!(
        got.iter().all(|g| g.bytes.len() == 1),
        "1-byte probes are delivered as such"
    );
    // Replies land on the socket they are addressed to.
    send(&mut sim, b, 0, want[2], b"r", None);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(
        sim.take_events(a)
            .iter()
            .map(|g| g.socket)
            .collect::<Vec<_>>(),
        vec![SocketId(128)]
    );
}

#[test]
fn a_low_ttl_probe_opens_the_senders_nat_and_dies_before_the_peer_then_the_hole_is_punched() {
    let replay = Replay::new(
        "engine",
        "a_low_ttl_probe_opens_the_senders_nat_and_dies_before_the_peer_then_the_hole_is_punched",
        2,
    );
    let mut sim = Net::new(replay.seed(), LinkModel::default());
    let server = host(&mut sim, RealmId::INTERNET, 1);
    let ra = home(
        &mut sim,
        NatConfig::cone(Filtering::AddressAndPortDependent),
    );
    let rb = home(
        &mut sim,
        NatConfig::cone(Filtering::AddressAndPortDependent),
    );
    let a = host(&mut sim, ra, 1);
    let b = host(&mut sim, rb, 1);
    let a_pub = observed(&mut sim, a, 0, server);
    let b_pub = observed(&mut sim, b, 0, server);
    // B → A first: A's NAT has no permission for B yet.
    send(&mut sim, b, 0, a_pub, b"x", None);
    sim.run_for(Duration::from_millis(200));
    assert!(sim.take_events(a).is_empty());
    assert!(sim.stats().dropped(DropReason::NatFiltered) >= 1);
    // A sends a TTL-3 probe to B: it passes A's NAT (one hop), dies on the Internet (8 hops).
    let ttl_drops = sim.stats().dropped(DropReason::Ttl);
    send(&mut sim, a, 0, b_pub, b"p", Some(3));
    sim.run_for(Duration::from_millis(200));
    assert_eq!(
        sim.stats().dropped(DropReason::Ttl),
        ttl_drops + 1,
        "the probe died in transit"
    );
    assert!(sim.take_events(b).is_empty(), "and never reached B");
    // …but A's NAT now admits B.
    send(&mut sim, b, 0, a_pub, b"hello", None);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(
        sim.take_events(a),
        vec![Got {
            socket: SocketId(0),
            from: b_pub,
            bytes: b"hello".to_vec()
        }]
    );
    // And B's NAT admits A (B sent to A just now).
    send(&mut sim, a, 0, b_pub, b"hi", None);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.take_events(b).len(), 1);
}

#[test]
fn simultaneous_open_works_because_filtering_is_checked_when_a_datagram_arrives() {
    let replay = Replay::new(
        "engine",
        "simultaneous_open_works_because_filtering_is_checked_when_a_datagram_arrives",
        3,
    );
    let mut sim = Net::new(
        replay.seed(),
        LinkModel {
            jitter: Duration::ZERO,
            ..LinkModel::default()
        },
    );
    let server = host(&mut sim, RealmId::INTERNET, 1);
    let ra = home(
        &mut sim,
        NatConfig::cone(Filtering::AddressAndPortDependent),
    );
    let rb = home(
        &mut sim,
        NatConfig::cone(Filtering::AddressAndPortDependent),
    );
    let a = host(&mut sim, ra, 1);
    let b = host(&mut sim, rb, 1);
    let a_pub = observed(&mut sim, a, 0, server);
    let b_pub = observed(&mut sim, b, 0, server);
    // Both send at the same instant: each datagram reaches the other NAT 20 ms later, after
    // that NAT's own outbound datagram opened the way.
    send(&mut sim, a, 0, b_pub, b"a", None);
    send(&mut sim, b, 0, a_pub, b"b", None);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.take_events(a).len(), 1);
    assert_eq!(sim.take_events(b).len(), 1);
}

#[test]
fn a_symmetric_nat_defeats_punching_to_the_endpoint_a_server_observed() {
    let replay = Replay::new(
        "engine",
        "a_symmetric_nat_defeats_punching_to_the_endpoint_a_server_observed",
        4,
    );
    let mut sim = Net::new(replay.seed(), LinkModel::default());
    let server = host(&mut sim, RealmId::INTERNET, 1);
    let ra = home(
        &mut sim,
        NatConfig::cone(Filtering::AddressAndPortDependent),
    );
    let rb = home(&mut sim, NatConfig::symmetric());
    let a = host(&mut sim, ra, 1);
    let b = host(&mut sim, rb, 1);
    let a_pub = observed(&mut sim, a, 0, server);
    let b_pub = observed(&mut sim, b, 0, server);
    send(&mut sim, a, 0, b_pub, b"a", None);
    send(&mut sim, b, 0, a_pub, b"b", None);
    sim.run_for(Duration::from_millis(200));
    assert!(
        sim.take_events(b).is_empty(),
        "A aimed at the mapping B uses for the server: filtered"
    );
    assert!(
        sim.take_events(a).is_empty(),
        "B left through a new mapping A's NAT never saw: filtered"
    );
    assert_eq!(sim.stats().dropped(DropReason::NatFiltered), 2);
}

#[test]
fn mappings_expire_after_the_idle_lifetime() {
    let replay = Replay::new("engine", "mappings_expire_after_the_idle_lifetime", 5);
    let mut sim = Net::new(replay.seed(), LinkModel::default());
    let server = host(&mut sim, RealmId::INTERNET, 1);
    let r = home(
        &mut sim,
        NatConfig {
            mapping_lifetime: Duration::from_secs(30),
            ..NatConfig::cone(Filtering::EndpointIndependent)
        },
    );
    let a = host(&mut sim, r, 1);
    let a_pub = observed(&mut sim, a, 0, server);
    send(&mut sim, server, 0, a_pub, b"1", None);
    sim.run_for(Duration::from_secs(29));
    assert_eq!(sim.take_events(a).len(), 1);
    sim.run_for(Duration::from_secs(2));
    send(&mut sim, server, 0, a_pub, b"2", None);
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.take_events(a).is_empty(),
        "the mapping idled out 30 s after A's last datagram"
    );
}

#[test]
fn a_crashed_host_drops_datagrams_and_a_restarted_one_receives_them_again() {
    let replay = Replay::new(
        "engine",
        "a_crashed_host_drops_datagrams_and_a_restarted_one_receives_them_again",
        6,
    );
    let mut sim = Net::new(replay.seed(), LinkModel::default());
    let a = host(&mut sim, RealmId::INTERNET, 1);
    let b = host(&mut sim, RealmId::INTERNET, 1);
    let to = addr(&sim, b, 0);
    sim.crash(b).unwrap();
    send(&mut sim, a, 0, to, b"x", None);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.stats().dropped(DropReason::PortUnreachable), 1);
    sim.restart(b, false, |s| {
        s.bind(5000)?;
        Ok(Probe::default())
    })
    .unwrap();
    send(&mut sim, a, 0, to, b"y", None);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.take_events(b).len(), 1);
    // On a new address the old one goes dark.
    sim.restart(b, true, |s| {
        s.bind(5000)?;
        Ok(Probe::default())
    })
    .unwrap();
    assert_ne!(addr(&sim, b, 0), to);
    send(&mut sim, a, 0, to, b"z", None);
    sim.run_for(Duration::from_millis(200));
    assert!(sim.take_events(b).is_empty());
    assert_eq!(sim.stats().dropped(DropReason::NoRoute), 1);
}

/// A datagram's fate through each preset: (reply from the contacted endpoint, from another
/// port of that host, from another host), and whether the public port stays the same for a
/// second destination (endpoint-independent mapping) and equals the local port.
#[test]
fn each_preset_treats_replies_strangers_and_new_destinations_as_rfc_4787_says() {
    use hdht_sim::NatPreset;
    let replay = Replay::new(
        "engine",
        "each_preset_treats_replies_strangers_and_new_destinations_as_rfc_4787_says",
        7,
    );
    // (preset, reply, other port, other host, same public port for a 2nd destination, port kept)
    let table = [
        (NatPreset::Open, true, true, true, true, true),
        (NatPreset::FullCone, true, true, true, true, true),
        (NatPreset::RestrictedCone, true, true, false, true, true),
        (NatPreset::PortRestricted, true, false, false, true, true),
        (NatPreset::Symmetric, true, false, false, false, false),
        (NatPreset::Cgnat, true, false, false, true, false),
        (NatPreset::UdpBlocked, true, false, false, true, true),
    ];
    for (preset, reply, other_port, other_host, stable, kept) in table {
        let mut sim = Net::new(replay.seed(), LinkModel::default());
        let s1 = sim
            .spawn(RealmId::INTERNET, |s| {
                s.bind(7000)?;
                s.bind(7001)?;
                Ok(Probe::default())
            })
            .unwrap();
        let s2 = host(&mut sim, RealmId::INTERNET, 1);
        let (realm, _) = sim.add_preset(preset, None).unwrap();
        let a = host(&mut sim, realm, 1);
        let local = addr(&sim, a, 0);
        let seen1 = observed(&mut sim, a, 0, s1);
        let seen2 = observed(&mut sim, a, 0, s2);
        assert_eq!(
            seen1 == seen2,
            stable,
            "{preset}: mapping reuse for a second destination"
        );
        assert_eq!(
            seen1.port() == local.port(),
            kept,
            "{preset}: port preservation"
        );
        assert_eq!(
            preset == NatPreset::Open || preset == NatPreset::UdpBlocked,
            seen1 == local,
            "{preset}: translation"
        );
        let _ = sim.take_events(a);
        for (from, socket, want, what) in [
            (s1, 0u16, reply, "reply"),
            (s1, 1, other_port, "other port"),
            (s2, 0, other_host, "other host"),
        ] {
            // s2 did talk to `a` (seen2), so "other host" uses a fresh third host.
            let from = if what == "other host" {
                host(&mut sim, RealmId::INTERNET, 1)
            } else {
                from
            };
            send(&mut sim, from, socket, seen1, what.as_bytes(), None);
            sim.run_for(Duration::from_millis(200));
            assert_eq!(!sim.take_events(a).is_empty(), want, "{preset}: {what}");
        }
    }
}

/// Opens and closes sockets while it runs: a datagram names its socket by the app's tag, which
/// must be bound by the time the datagram is polled.
#[derive(Default)]
struct Opener {
    commands: VecDeque<hdht_sim::SocketCommand>,
    out: VecDeque<(u64, SocketAddrV4, Vec<u8>)>,
    bound: std::collections::BTreeMap<u64, SocketId>,
    answers: Vec<(u64, Result<SocketId, hdht_sim::NetError>)>,
    inbox: VecDeque<Got>,
}

impl App for Opener {
    type Event = Got;
    fn handle_datagram(
        &mut self,
        _now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        self.inbox.push_back(Got {
            socket,
            from,
            bytes: bytes.to_vec(),
        });
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self, _now: Instant) -> Option<Datagram> {
        let (tag, to, payload) = self.out.pop_front()?;
        let socket = *self
            .bound
            .get(&tag)
            .expect("bound before its first datagram");
        Some(Datagram {
            socket,
            to,
            payload,
            ttl: None,
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_event(&mut self) -> Option<Got> {
        self.inbox.pop_front()
    }
    fn crash(&mut self) {}
    fn poll_socket_command(&mut self) -> Option<hdht_sim::SocketCommand> {
        self.commands.pop_front()
    }
    fn socket_bound(
        &mut self,
        _now: Instant,
        tag: u64,
        result: Result<SocketId, hdht_sim::NetError>,
    ) {
        if let Ok(s) = result {
            self.bound.insert(tag, s);
        }
        self.answers.push((tag, result));
    }
}

#[test]
fn apps_open_and_close_sockets_at_run_time_before_sending_from_them() {
    use hdht_sim::{NetError, SocketCommand};
    let replay = Replay::new(
        "engine",
        "apps_open_and_close_sockets_at_run_time_before_sending_from_them",
        11,
    );
    let mut sim: Engine<Opener> = Engine::new(replay.seed(), LinkModel::default());
    let a = sim
        .spawn(RealmId::INTERNET, |s| {
            s.bind(5000)?;
            Ok(Opener::default())
        })
        .unwrap();
    let b = sim
        .spawn(RealmId::INTERNET, |s| {
            s.bind(6000)?;
            Ok(Opener::default())
        })
        .unwrap();
    let to = sim.socket_addr(b, SocketId(0)).unwrap();
    // Bind and send in one call: the socket exists before the datagram leaves.
    sim.with_node(a, |o, _| {
        o.commands.push_back(SocketCommand::Bind { tag: 7 });
        o.out.push_back((7, to, b"from 7".to_vec()));
    });
    assert_eq!(sim.node(a).answers, vec![(7, Ok(SocketId(1)))]);
    let port = sim.socket_addr(a, SocketId(1)).expect("bound").port();
    assert!((32768..=60999).contains(&port), "an ephemeral port: {port}");
    sim.run_for(Duration::from_millis(100));
    let got = sim.take_events(b);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from.port(), port);
    // Close it: datagrams to its port are unreachable from now on.
    sim.with_node(a, |o, _| {
        o.commands.push_back(SocketCommand::Close(SocketId(1)))
    });
    assert_eq!(sim.socket_addr(a, SocketId(1)), None);
    let a_addr = SocketAddrV4::new(*sim.socket_addr(a, SocketId(0)).unwrap().ip(), port);
    sim.with_node(b, |o, _| {
        o.commands.push_back(SocketCommand::Bind { tag: 1 });
        o.out.push_back((1, a_addr, b"late".to_vec()));
    });
    sim.run_for(Duration::from_millis(100));
    assert!(sim.take_events(a).is_empty());
    assert_eq!(sim.stats().dropped(DropReason::PortUnreachable), 1);
    // The freed slot is reused; past the per-host limit the app hears why.
    sim.with_node(a, |o, _| {
        for t in 0..1100 {
            o.commands.push_back(SocketCommand::Bind { tag: 100 + t });
        }
    });
    let answers = &sim.node(a).answers;
    assert_eq!(answers[1], (100, Ok(SocketId(1))), "the closed slot first");
    assert_eq!(
        answers.iter().filter(|(_, r)| r.is_ok()).count(),
        1 + hdht_sim::network::MAX_SOCKETS - 1
    );
    assert_eq!(answers.last().unwrap().1, Err(NetError::TooManySockets));
}

/// A request/reply pair with a retransmission timer: what a `Requester` logs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Reply(Instant),
    Timeout(Instant),
}

/// Sends "ping" with a deadline (the requester), or answers "ping" with "pong" at once (the
/// responder). A reply disarms the deadline, as a response completes a dht-rpc request.
#[derive(Default)]
struct Requester {
    out: VecDeque<Datagram>,
    deadline: Option<Instant>,
    log: VecDeque<Heard>,
}

impl App for Requester {
    type Event = Heard;
    fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        if bytes == b"ping" {
            self.out.push_back(Datagram {
                socket,
                to: from,
                payload: b"pong".to_vec(),
                ttl: None,
            });
        } else {
            self.deadline = None;
            self.log.push_back(Heard::Reply(now));
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            self.log.push_back(Heard::Timeout(now));
        }
    }
    fn poll_transmit(&mut self, _now: Instant) -> Option<Datagram> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }
    fn poll_event(&mut self) -> Option<Heard> {
        self.log.pop_front()
    }
    fn crash(&mut self) {
        self.out.clear();
    }
}

/// A reply that arrives at the very instant its requester's deadline comes is in time: of the
/// events due at one instant, the engine delivers every datagram before it runs any timer, as
/// the tokio and smol drivers do (they read all that is ready, then run a due timer) — even
/// though the timer was queued first (when the request left) and the reply's arrival later
/// (when the responder answered). Queued in plain FIFO order the timer went first: a lone
/// FIND_PEER's timeout settled the query at the instant the replies carrying the record came
/// in (full-cone -> symmetric, seed 15, 5% loss: PEER_NOT_FOUND).
#[test]
fn a_reply_due_at_the_requesters_deadline_is_delivered_before_the_timer_runs() {
    let replay = Replay::new(
        "engine",
        "a_reply_due_at_the_requesters_deadline_is_delivered_before_the_timer_runs",
        1,
    );
    // 50 ms each way, no jitter: the round trip is exactly 100 ms.
    let link = LinkModel {
        latency: Duration::from_millis(50),
        jitter: Duration::ZERO,
        ..LinkModel::default()
    };
    let mut sim: Engine<Requester> = Engine::new(replay.seed(), link);
    let spawn = |sim: &mut Engine<Requester>| {
        sim.spawn(RealmId::INTERNET, |s| {
            s.bind(5000)?;
            Ok(Requester::default())
        })
        .unwrap()
    };
    let requester = spawn(&mut sim);
    let responder = spawn(&mut sim);
    let to = sim.socket_addr(responder, SocketId(0)).unwrap();
    let start = sim.now();
    let rtt = Duration::from_millis(100);
    sim.with_node(requester, |r, now| {
        r.deadline = Some(now + rtt);
        r.out.push_back(Datagram {
            socket: SocketId(0),
            to,
            payload: b"ping".to_vec(),
            ttl: None,
        });
    });
    sim.run_for(Duration::from_millis(500));
    assert_eq!(
        sim.take_events(requester),
        vec![Heard::Reply(start + rtt)],
        "the reply, and no timeout"
    );

    // A reply one microsecond late still loses to the timer.
    let start = sim.now();
    let early = Duration::from_micros(99_999);
    sim.with_node(requester, |r, now| {
        r.deadline = Some(now + early);
        r.out.push_back(Datagram {
            socket: SocketId(0),
            to,
            payload: b"ping".to_vec(),
            ttl: None,
        });
    });
    sim.run_for(Duration::from_millis(500));
    assert_eq!(
        sim.take_events(requester),
        vec![Heard::Timeout(start + early), Heard::Reply(start + rtt)]
    );
}
