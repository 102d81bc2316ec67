//! The sans-IO puncher, `connect::puncher` (hyperdht `lib/holepuncher.js` plus the round
//! logic of `connect.js` / `server.js`): strategy selection, the probe schedules of each
//! strategy, NAT pings and analysis, socket reopening, reply handling and tokens, payload
//! builders, probe-round verdicts, the random-punch throttle.

mod holepunch_common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdht_core::connect::puncher::{
    abort_payload, pick_server_relay, try_later_delay, Analysis, ProbeVerdict, Puncher,
    PuncherConfig, PuncherOutput, RandomPunchLimiter, RemoteUpdate, ReplyStatus, Strategy,
    BIRTHDAY_SOCKETS, DEFAULT_TTL, HOLEPUNCH_TTL, RANDOM_PROBES, RANDOM_PROBES_TAIL,
};
use hdht_core::connect::{ConnectError, ErrorCode, Firewall, HolepunchPayload, RelayInfo};
use hdht_core::udx::SocketId;
use holepunch_common::{a, drain, node, probes, rng, t};

const S0: SocketId = SocketId(100);

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
    let total = (RANDOM_PROBES + RANDOM_PROBES_TAIL) as usize;
    assert_eq!(ps.len(), total);
    assert!(ps.iter().all(|(s, to, ttl)| *s == S0
        && to.ip() == v.ip()
        && (1000..=65535).contains(&to.port())
        && *ttl == DEFAULT_TTL));
    let distinct: BTreeSet<u16> = ps.iter().map(|p| p.1.port()).collect();
    assert!(
        distinct.len() > 3000,
        "ports look random ({} distinct)",
        distinct.len()
    );
    assert_eq!(times.len(), total);
    // A burst every 2 ms (our deliberate deviation from the reference's 20 ms; see
    // RANDOM_PROBE_INTERVAL), then the reference's 20 ms to the end of its ~35 s window.
    let burst = RANDOM_PROBES as usize;
    assert!(times[..burst].windows(2).all(|w| w[1] - w[0] == 2));
    assert!(times[burst - 1..].windows(2).all(|w| w[1] - w[0] == 20));
    assert_eq!(
        &outs[outs.len() - 3..],
        &[
            PuncherOutput::ReleaseSocket(S0),
            PuncherOutput::RandomPunchEnd,
            PuncherOutput::Failed(ConnectError::HolepunchAborted)
        ]
    );
    assert_eq!(times.last(), Some(&(1749 * 2 + 1575 * 20)));
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
