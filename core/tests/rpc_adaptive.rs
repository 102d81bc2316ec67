//! Adaptive request timeouts, stalled-query settling, distrust of referrers whose referrals
//! never answer, and per-IP / per-/24 routing-table caps — all in virtual time.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdht_core::rpc::{
    IpLimits, NodeId, QuerySpec, RpcConfig, RpcEvent, RpcNode, Transmit, FIND_NODE,
};
use hdht_core::wire::{Message, Request, Response};
use hdht_core::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

fn public(last: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(93, 184, 1, last), port)
}

/// A bootstrapper (persistent, not firewalled) with its start-up output drained.
fn node(cfg: RpcConfig) -> RpcNode<ChaCha8Rng> {
    let mut n = RpcNode::new(cfg, ChaCha8Rng::seed_from_u64(7), Instant::ZERO);
    n.handle_timeout(Instant::from_millis(1));
    while n.poll_transmit().is_some() {}
    while n.poll_event().is_some() {}
    n
}

fn me() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 49737)
}

fn drain(n: &mut RpcNode<ChaCha8Rng>) -> Vec<Transmit> {
    std::iter::from_fn(|| n.poll_transmit()).collect()
}

fn request_tid(t: &Transmit) -> Option<u16> {
    match Message::decode(&t.payload) {
        Ok(Message::Request(r)) => Some(r.tid),
        _ => None,
    }
}

/// A reply from `from` (with its valid id) to request `tid`.
fn reply(tid: u16, from: SocketAddrV4, closer: Vec<SocketAddrV4>) -> Vec<u8> {
    Response {
        tid,
        to: me(),
        id: Some(NodeId::from_addr(&from).0),
        token: None,
        closer_nodes: closer,
        error: 0,
        value: None,
    }
    .to_bytes()
}

/// Advances to `until`, firing every timer on the way; returns (time, transmit) pairs.
fn run_until(
    n: &mut RpcNode<ChaCha8Rng>,
    now: &mut Instant,
    until: Instant,
) -> Vec<(u64, Transmit)> {
    let mut out = Vec::new();
    while let Some(t) = n.poll_timeout() {
        if t > until {
            break;
        }
        *now = t.max(*now);
        n.handle_timeout(*now);
        for x in drain(n) {
            out.push((now.as_millis(), x));
        }
    }
    *now = until;
    out
}

/// Times (ms after `start`) at which `to` was sent a request.
fn sends_to(log: &[(u64, Transmit)], to: SocketAddrV4, start: u64) -> Vec<u64> {
    log.iter()
        .filter(|(_, t)| t.to == to && request_tid(t).is_some())
        .map(|(at, _)| at - start)
        .collect()
}

/// Pings `peer` at `now` and answers after `rtt`: one round-trip sample.
fn measure(n: &mut RpcNode<ChaCha8Rng>, now: &mut Instant, peer: SocketAddrV4, rtt: u64) {
    n.ping(*now, peer);
    let t = drain(n)
        .into_iter()
        .find(|t| t.to == peer)
        .expect("ping sent");
    let tid = request_tid(&t).expect("a request");
    *now = *now + Duration::from_millis(rtt);
    n.handle_datagram(*now, t.socket, peer, &reply(tid, peer, vec![]));
    while n.poll_event().is_some() {}
}

#[test]
fn a_measured_node_gets_its_own_short_timeout_and_retries_back_off() {
    let mut n = node(RpcConfig::bootstrapper(me()));
    let mut now = Instant::from_millis(10);
    let peer = public(2, 5000);
    measure(&mut n, &mut now, peer, 5);
    let start = now.as_millis();
    n.ping(now, peer);
    let first = drain(&mut n);
    assert_eq!(first.len(), 1);
    let log = run_until(&mut n, &mut now, Instant::from_millis(start + 4000));
    // 150 ms floor, doubled per retransmission up to the reference's 1 s: 150, 300, 600.
    assert_eq!(sends_to(&log, peer, start), vec![150, 450, 1050]);
    assert!(log.iter().all(|(at, t)| t.to != peer || *at < start + 2050));
}

#[test]
fn an_unmeasured_node_gets_a_shorter_first_try_once_the_network_is_measured() {
    let mut n = node(RpcConfig::bootstrapper(me()));
    let mut now = Instant::from_millis(10);
    // Before any measurement: the reference's fixed 1 s.
    let never = public(3, 5000);
    let start = now.as_millis();
    n.ping(now, never);
    drain(&mut n);
    let log = run_until(&mut n, &mut now, Instant::from_millis(start + 2500));
    assert_eq!(sends_to(&log, never, start), vec![1000, 2000]);
    measure(&mut n, &mut now, public(2, 5000), 5);
    let other = public(4, 5000);
    let start = now.as_millis();
    n.ping(now, other);
    drain(&mut n);
    let log = run_until(&mut n, &mut now, Instant::from_millis(start + 2500));
    assert_eq!(sends_to(&log, other, start), vec![200, 600, 1400]);
}

#[test]
fn without_adaptive_timeouts_the_reference_timing_is_kept() {
    let cfg = RpcConfig {
        adaptive_timeouts: false,
        ..RpcConfig::bootstrapper(me())
    };
    let mut n = node(cfg);
    let mut now = Instant::from_millis(10);
    let peer = public(2, 5000);
    measure(&mut n, &mut now, peer, 5);
    let start = now.as_millis();
    n.ping(now, peer);
    drain(&mut n);
    let log = run_until(&mut n, &mut now, Instant::from_millis(start + 3500));
    assert_eq!(sends_to(&log, peer, start), vec![1000, 2000, 3000]);
}

/// Runs a FIND_NODE query seeded with one honest node that answers at once with `dead`
/// addresses that never answer; returns (ms the query took, requests sent to dead addresses).
fn poisoned_query(adaptive: bool) -> (u64, usize) {
    let cfg = RpcConfig {
        adaptive_timeouts: adaptive,
        ..RpcConfig::bootstrapper(me())
    };
    let mut n = node(cfg);
    let mut now = Instant::from_millis(10);
    let honest = public(2, 5000);
    let dead: Vec<SocketAddrV4> = (0..20).map(|i| public(100 + i, 6000)).collect();
    let mut spec = QuerySpec::new(NodeId([7; 32]), FIND_NODE);
    spec.internal = true;
    spec.seeds = vec![honest];
    let start = now.as_millis();
    let qid = n.query(now, spec);
    let t = drain(&mut n)
        .into_iter()
        .find(|t| t.to == honest)
        .expect("visits the seed");
    now = now + Duration::from_millis(5);
    n.handle_datagram(
        now,
        t.socket,
        honest,
        &reply(request_tid(&t).unwrap(), honest, dead.clone()),
    );
    let mut log: Vec<(u64, Transmit)> = drain(&mut n)
        .into_iter()
        .map(|t| (now.as_millis(), t))
        .collect();
    let mut done = None;
    while done.is_none() {
        while let Some(ev) = n.poll_event() {
            if let RpcEvent::QueryDone { query, result } = ev {
                assert_eq!(query, qid);
                assert_eq!(result.expect("query succeeds").successes, 1);
                done = Some(now.as_millis() - start);
            }
        }
        if done.is_some() {
            break;
        }
        let t = n.poll_timeout().expect("timer");
        assert!(t.as_millis() < start + 60_000, "query ends");
        now = t;
        n.handle_timeout(now);
        log.extend(drain(&mut n).into_iter().map(|t| (now.as_millis(), t)));
    }
    let to_dead = log
        .iter()
        .filter(|(_, t)| dead.contains(&t.to) && request_tid(t).is_some())
        .count();
    (done.unwrap_or(0), to_dead)
}

#[test]
fn a_query_does_not_wait_out_every_retry_of_dead_referrals() {
    let (reference_ms, reference_sends) = poisoned_query(false);
    let (adaptive_ms, adaptive_sends) = poisoned_query(true);
    // The reference: two waves of 10 visits (the second starts when the first misses its
    // first 1 s timer), each waiting 6 × 1 s.
    assert!(reference_ms >= 7_000, "{reference_ms}");
    assert_eq!(reference_sends, 20 * 6);
    // Adaptive: the first wave misses its 200 ms timer; each miss lets one more referral go
    // until the second distrusts the referrer and drops its other referrals; the visits out
    // settle after their second miss (200 + 400 ms), three transmissions at most each.
    assert!(adaptive_ms <= 1_100, "{adaptive_ms}");
    assert!(adaptive_sends <= 13 * 3, "{adaptive_sends}");
}

fn hello(from: SocketAddrV4, tid: u16) -> Vec<u8> {
    Request {
        tid,
        to: me(),
        id: Some(NodeId::from_addr(&from).0),
        token: None,
        internal: true,
        command: 0,
        target: None,
        value: None,
    }
    .to_bytes()
}

fn table_count(n: &RpcNode<ChaCha8Rng>, pred: impl Fn(&SocketAddrV4) -> bool) -> usize {
    n.table().oldest_first().filter(|e| pred(&e.addr)).count()
}

#[test]
fn public_ips_and_subnets_take_a_bounded_share_of_the_table() {
    let mut n = node(RpcConfig::bootstrapper(me()));
    let now = Instant::from_millis(10);
    let limits = IpLimits::default();
    // One public IP, many ports (all valid ids): at most `per_ip` entries.
    for port in 1000..1200u16 {
        n.handle_datagram(
            now,
            hdht_core::rpc::SocketKind::Server,
            public(9, port),
            &hello(public(9, port), port),
        );
    }
    assert_eq!(
        table_count(&n, |a| *a.ip() == *public(9, 0).ip()),
        limits.per_ip
    );
    // One /24, many IPs: at most `per_subnet` entries in it.
    for last in 10..200u8 {
        for port in [2000u16, 2001] {
            n.handle_datagram(
                now,
                hdht_core::rpc::SocketKind::Server,
                public(last, port),
                &hello(public(last, port), port),
            );
        }
    }
    assert_eq!(
        table_count(&n, |a| a.ip().octets()[..3] == [93, 184, 1]),
        limits.per_subnet
    );
    // Loopback and private addresses are exempt: local testnets share one IP.
    for port in 3000..3100u16 {
        let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        n.handle_datagram(now, hdht_core::rpc::SocketKind::Server, a, &hello(a, port));
    }
    assert!(table_count(&n, |a| a.ip().is_loopback()) > limits.per_subnet);
    // Without limits a public IP fills its rows like any other.
    let mut open = node(RpcConfig {
        ip_limits: None,
        ..RpcConfig::bootstrapper(me())
    });
    for port in 1000..1200u16 {
        open.handle_datagram(
            now,
            hdht_core::rpc::SocketKind::Server,
            public(9, port),
            &hello(public(9, port), port),
        );
    }
    assert!(table_count(&open, |_| true) > limits.per_subnet);
}

#[test]
fn which_addresses_the_limits_apply_to() {
    for ip in [[93, 184, 1, 1], [1, 1, 1, 1], [8, 8, 8, 8]] {
        assert!(IpLimits::applies_to(&Ipv4Addr::from(ip)), "{ip:?}");
    }
    for ip in [
        [127, 0, 0, 1],
        [10, 1, 2, 3],
        [192, 168, 1, 1],
        [172, 16, 0, 1],
        [169, 254, 1, 1],
        [100, 64, 0, 1],
        [198, 18, 0, 1],
        [0, 0, 0, 0],
        [255, 255, 255, 255],
        [224, 0, 0, 1],
    ] {
        assert!(!IpLimits::applies_to(&Ipv4Addr::from(ip)), "{ip:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Idle drains: a node leaves the 750 ms drain out of `poll_timeout` while nothing waits behind
// its congestion window, and runs the drains it missed before its next input. Driven that way
// a network must send exactly what it sends when every node is also woken on every drain.

/// One run of a small lossy network of rpc nodes; `eager` also wakes every node on each of its
/// 750 ms drain instants (as a driver did before drains were lazy). Returns every datagram
/// sent, in order, with its time and sender, and the number of `handle_timeout` calls.
/// Datagrams sent: (time µs, sender, destination, bytes).
type SendLog = Vec<(u64, usize, SocketAddrV4, Vec<u8>)>;
/// In flight: (arrival µs, sequence) → (receiver, to its server socket?, source, bytes).
type Flights = std::collections::BTreeMap<(u64, u64), (usize, bool, SocketAddrV4, Vec<u8>)>;

fn drain_network(eager: bool) -> (SendLog, usize) {
    use std::collections::BTreeMap;
    const NODES: usize = 12;
    const DRAIN_US: u64 = 750_000;
    let server = |i: usize| SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i as u8 + 1), 49737);
    let client = |i: usize| SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i as u8 + 1), 50000);
    let mut nodes: Vec<RpcNode<ChaCha8Rng>> = (0..NODES)
        .map(|i| {
            let mut cfg = if i == 0 {
                RpcConfig::bootstrapper(server(0))
            } else {
                RpcConfig {
                    bootstrap: vec![server(0)],
                    persistence: hdht_core::rpc::Persistence::Persistent,
                    ..RpcConfig::default()
                }
            };
            cfg.ip_limits = None;
            cfg.server_port = 49737;
            // A tiny window on some nodes: requests queue behind it, so drains have work.
            if i % 3 == 1 {
                cfg.max_window = 2;
            }
            RpcNode::new(
                cfg,
                ChaCha8Rng::seed_from_u64(100 + i as u64),
                Instant::ZERO,
            )
        })
        .collect();
    let mut link = ChaCha8Rng::seed_from_u64(9);
    // In flight: (arrival µs, sequence) → (node, server socket?, from, bytes).
    let mut flights: Flights = BTreeMap::new();
    let mut seq = 0u64;
    let mut log = Vec::new();
    let mut timeouts = 0;
    // Queries started from the outside; some exactly on drain instants (nodes start at 0).
    let mut actions: Vec<(u64, usize)> = (1..40u64)
        .map(|k| {
            let at = if k % 4 == 0 {
                k * 2 * DRAIN_US
            } else {
                k * 1_234_567
            };
            (at, (k as usize * 5) % NODES)
        })
        .collect();
    actions.sort();
    let mut next_action = 0;
    let end = 90_000_000u64;
    let mut now = 0u64;
    // Eager: the next drain instant each node is woken for even when it did not ask.
    let mut next_grid = [DRAIN_US; NODES];
    let flush = |i: usize,
                 now: u64,
                 nodes: &mut Vec<RpcNode<ChaCha8Rng>>,
                 flights: &mut Flights,
                 seq: &mut u64,
                 link: &mut ChaCha8Rng,
                 log: &mut SendLog| {
        while nodes[i].poll_event().is_some() {}
        while let Some(t) = nodes[i].poll_transmit() {
            log.push((now, i, t.to, t.payload.clone()));
            let r = link.next_u64();
            if r % 20 == 0 {
                continue; // 5 % loss
            }
            let delay = 20_000 + (r >> 8) % 30_000;
            let to = (0..NODES).find(|&j| server(j) == t.to || client(j) == t.to);
            if let Some(j) = to {
                *seq += 1;
                let from = match t.socket {
                    hdht_core::rpc::SocketKind::Server => server(i),
                    _ => client(i),
                };
                flights.insert((now + delay, *seq), (j, server(j) == t.to, from, t.payload));
            }
        }
    };
    for i in 0..NODES {
        flush(
            i,
            0,
            &mut nodes,
            &mut flights,
            &mut seq,
            &mut link,
            &mut log,
        );
    }
    loop {
        let arrival = flights.keys().next().map(|k| k.0);
        let action = actions.get(next_action).map(|a| a.0);
        let timer = (0..NODES)
            .filter_map(|i| {
                let t = nodes[i].poll_timeout().map(|t| t.as_micros());
                let t = match (t, eager) {
                    (Some(t), true) => Some(t.min(next_grid[i])),
                    (None, true) => Some(next_grid[i]),
                    (t, false) => t,
                };
                t.map(|t| (t.max(now), i))
            })
            .min();
        // Inputs of an instant (arrivals, then outside calls) run before its timers.
        let input = match (arrival, action) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let t_next = match (input, timer) {
            (Some(a), Some((b, _))) => a.min(b),
            (Some(a), None) => a,
            (None, Some((b, _))) => b,
            (None, None) => break,
        };
        if t_next > end {
            break;
        }
        now = t_next;
        let at = Instant::from_micros(now);
        // The node that took the input sends what it answered.
        let fed = if arrival == Some(now) {
            let Some((_, (j, to_server, from, bytes))) = flights.pop_first() else {
                break;
            };
            let kind = if to_server {
                hdht_core::rpc::SocketKind::Server
            } else {
                hdht_core::rpc::SocketKind::Client
            };
            nodes[j].handle_datagram(at, kind, from, &bytes);
            j
        } else if action == Some(now) {
            let i = actions[next_action].1;
            next_action += 1;
            let mut target = [0u8; 32];
            target[0] = next_action as u8;
            let mut spec = QuerySpec::new(NodeId(target), FIND_NODE);
            spec.internal = true;
            nodes[i].query(at, spec);
            i
        } else if let Some((_, i)) = timer {
            timeouts += 1;
            while next_grid[i] <= now {
                next_grid[i] += DRAIN_US;
            }
            nodes[i].handle_timeout(at);
            i
        } else {
            continue;
        };
        flush(
            fed,
            now,
            &mut nodes,
            &mut flights,
            &mut seq,
            &mut link,
            &mut log,
        );
    }
    (log, timeouts)
}

#[test]
fn idle_drains_run_late_but_send_exactly_what_timely_drains_send() {
    let (eager, eager_timeouts) = drain_network(true);
    let (lazy, lazy_timeouts) = drain_network(false);
    eprintln!(
        "{} datagrams; handle_timeout calls: {eager_timeouts} timely, {lazy_timeouts} lazy",
        eager.len()
    );
    assert!(
        eager.len() > 1000,
        "the network did little: {}",
        eager.len()
    );
    assert_eq!(eager.len(), lazy.len(), "datagram counts differ");
    for (n, (a, b)) in eager.iter().zip(&lazy).enumerate() {
        assert_eq!(a, b, "datagram {n} differs");
    }
    assert!(
        lazy_timeouts * 2 < eager_timeouts,
        "lazy drains should save most wake-ups: {lazy_timeouts} vs {eager_timeouts}"
    );
}
