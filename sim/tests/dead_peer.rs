//! Dead peers in the simulator (issue 11): a connection by public key between two hyperdht
//! nodes across a small public DHT, one side streaming without end (a cut-off 20 GB transfer)
//! while the other reads, with its own side still open or already ended (a `listen` whose
//! stdin hit EOF). Then the peer vanishes (crash: nothing more is sent, not even a DESTROY),
//! the link is cut (partition), or the NAT in front of the client loses its mapping (rebinding).
//! The survivor must learn within the connection's idle timeout (15 s, three keep-alive
//! intervals) plus a margin, as an error — a read returns the reason, never the end of the
//! stream — and never see a clean end of a direction the peer did not end. A control run shows
//! a quiet but live connection, on a lossy link, is never timed out, and a real end is a
//! clean end.

use std::time::Duration;

use hdht_core::crypto::KeyPair;
use hdht_core::dht::{
    ConnError, ConnId, ConnectEvent, ConnectOptions, DhtEvent, ServerOptions,
    CONNECTION_IDLE_TIMEOUT,
};
use hdht_core::rpc::{Persistence, RpcConfig};
use hdht_core::udx::StreamError;
use hdht_core::Instant;
use hdht_sim::replay::Replay;
use hdht_sim::{
    DhtHost, DhtNodeConfig, DhtSim, Engine, Handler, HostId, LinkModel, NatPreset, RealmId,
};

/// What the test tells the survivor's detection time apart from: the promise is the idle
/// timeout plus this (a round trip and timer slack, far below a keep-alive interval).
const MARGIN: Duration = Duration::from_secs(1);

/// Bytes per write of a streaming side.
const CHUNK: usize = 64 * 1024;

/// One end of the connection as its application sees it.
#[derive(Debug, Default)]
struct Side {
    host: HostId,
    conn: Option<ConnId>,
    /// Writes without end while it can.
    streams: bool,
    /// Ends its side as soon as the connection is there (a `listen` with stdin at EOF).
    ends_at_once: bool,
    /// Total bytes to write before ending (instead of streaming without end).
    total: Option<u64>,
    sent: u64,
    ended_ours: bool,
    received: u64,
    /// A read returned 0: the peer ended its side.
    eof: bool,
    /// The `End` event (the peer's END).
    end_event: bool,
    closed: Option<(Instant, Option<ConnError>)>,
    /// What a read returned after the close (`Ok(0)` would be a clean end).
    read_after_close: Option<Result<usize, ConnError>>,
    write_after_close: Option<Result<usize, ConnError>>,
}

#[derive(Debug, Default)]
struct Watch {
    client: Side,
    server: Side,
    listening: bool,
}

impl Watch {
    fn side(&mut self, host: HostId) -> Option<&mut Side> {
        if host == self.client.host {
            Some(&mut self.client)
        } else if host == self.server.host {
            Some(&mut self.server)
        } else {
            None
        }
    }
}

/// Reads everything there is; notes an end of stream or an error.
fn read_all(sim: &mut Engine<DhtHost>, side: &mut Side) {
    let Some(conn) = side.conn else { return };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let r = sim.with_node(side.host, |n, now| n.conn_read(now, conn, &mut buf));
        match r {
            Ok(0) => {
                side.eof |= sim.with_node(side.host, |n, _| n.conn_at_end(conn));
                return;
            }
            Ok(n) => side.received += n as u64,
            Err(_) => return,
        }
    }
}

/// Writes until back-pressure (streaming), or the rest of `total` and then the end.
fn write_more(sim: &mut Engine<DhtHost>, side: &mut Side) {
    let Some(conn) = side.conn else { return };
    if side.ended_ours || !(side.streams || side.total.is_some()) {
        return;
    }
    let data = vec![0x5a_u8; CHUNK];
    loop {
        let want = match side.total {
            Some(t) => (t - side.sent).min(CHUNK as u64) as usize,
            None => CHUNK,
        };
        if want == 0 {
            let _ = sim.with_node(side.host, |n, _| n.conn_end(conn));
            side.ended_ours = true;
            return;
        }
        let r = sim.with_node(side.host, |n, now| n.conn_write(now, conn, &data[..want]));
        match r {
            Ok(n) if n > 0 => side.sent += n as u64,
            _ => return,
        }
    }
}

impl Handler<DhtHost> for Watch {
    fn on_event(&mut self, sim: &mut Engine<DhtHost>, host: HostId, event: DhtEvent) {
        let DhtEvent::Connect(ev) = event else {
            return;
        };
        if let ConnectEvent::Listening { .. } = ev {
            self.listening = true;
            return;
        }
        let Some(side) = self.side(host) else { return };
        match ev {
            ConnectEvent::Open { conn, .. } | ConnectEvent::Incoming { conn, .. } => {
                side.conn = Some(conn);
                if side.ends_at_once {
                    let _ = sim.with_node(host, |n, _| n.conn_end(conn));
                    side.ended_ours = true;
                }
                write_more(sim, side);
            }
            ConnectEvent::Readable(_) => read_all(sim, side),
            ConnectEvent::Writable(_) => write_more(sim, side),
            ConnectEvent::End(_) => {
                side.end_event = true;
                read_all(sim, side);
            }
            ConnectEvent::Closed { conn, error } => {
                side.closed = Some((sim.now(), error));
                read_all(sim, side);
                let mut buf = [0u8; 16];
                side.read_after_close =
                    Some(sim.with_node(host, |n, now| n.conn_read(now, conn, &mut buf)));
                side.write_after_close =
                    Some(sim.with_node(host, |n, now| n.conn_write(now, conn, b"late")));
            }
            _ => {}
        }
    }
}

/// The network and the open connection.
struct Net {
    sim: DhtSim,
    w: Watch,
    /// The NAT box in front of the client, if any.
    client_nat: Option<hdht_sim::NatId>,
}

impl Net {
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Watch) -> bool) -> bool {
        let deadline = self.sim.now() + limit;
        while !done(&self.w) {
            if self.sim.now() >= deadline {
                return false;
            }
            let next = (self.sim.now() + Duration::from_millis(50)).min(deadline);
            self.sim.run_until_with(next, &mut self.w);
        }
        true
    }
}

/// How the two sides behave once connected.
#[derive(Debug, Clone, Copy)]
struct Roles {
    client_streams: bool,
    server_streams: bool,
    server_ends_at_once: bool,
    client_total: Option<u64>,
}

/// A public DHT of 6 open nodes, a server on the Internet and a client (behind `client_nat`
/// if any), connected, with data flowing for a couple of seconds.
fn connected(seed: u64, link: LinkModel, client_nat: Option<NatPreset>, roles: Roles) -> Net {
    let mut sim = DhtSim::new(seed, link);
    let mut w = Watch::default();
    let clean = LinkModel { loss: 0.0, ..link };
    sim.set_link(clean);
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
    let joining = || DhtNodeConfig {
        dht: hdht_core::dht::DhtConfig {
            rpc: RpcConfig {
                bootstrap: vec![boot],
                ..RpcConfig::default()
            },
            ..Default::default()
        },
    };
    let server = sim
        .add_dht_node_in(RealmId::INTERNET, joining())
        .expect("server host");
    let (realm, client_nat) = match client_nat {
        Some(p) => {
            let (realm, _) = sim.add_preset(p, None).expect("nat");
            (realm, sim.net().gateway(realm).expect("gateway"))
        }
        None => (RealmId::INTERNET, None),
    };
    let client = sim.add_dht_node_in(realm, joining()).expect("client host");
    w.server = Side {
        host: server,
        streams: roles.server_streams,
        ends_at_once: roles.server_ends_at_once,
        ..Side::default()
    };
    w.client = Side {
        host: client,
        streams: roles.client_streams,
        total: roles.client_total,
        ..Side::default()
    };
    let mut net = Net { sim, w, client_nat };
    let ready =
        |h: HostId| move |sim: &DhtSim| sim.try_node(h).is_some_and(|n| n.rpc().is_bootstrapped());
    let deadline = net.sim.now() + Duration::from_secs(60);
    let all_ready = |sim: &DhtSim| {
        public.iter().all(|&h| ready(h)(sim)) && ready(server)(sim) && ready(client)(sim)
    };
    while !all_ready(&net.sim) {
        assert!(net.sim.now() < deadline, "the DHT did not bootstrap");
        net.sim.run_for_with(Duration::from_millis(100), &mut net.w);
    }
    net.sim.set_link(link);
    let server_kp = KeyPair::generate(net.sim.rng());
    net.sim
        .with_node(server, |n, now| {
            let id = n.create_server(ServerOptions::default());
            n.listen(now, id, Some(server_kp.clone()))
        })
        .expect("listen");
    assert!(
        net.run_until(Duration::from_secs(30), |w| w.listening),
        "not listening"
    );
    let pk = server_kp.public_key();
    let conn = net.sim.with_node(client, |n, now| {
        n.connect(now, pk, ConnectOptions::default())
    });
    assert!(
        net.run_until(Duration::from_secs(30), |w| w.client.conn == Some(conn)
            && w.server.conn.is_some()),
        "no connection: {:?}",
        net.w.client
    );
    net
}

/// Streams for `warmup`, checking bytes flow; returns the instant the fault is applied at.
fn warm_up(net: &mut Net, warmup: Duration) -> Instant {
    net.run_until(warmup, |_| false);
    let (c, s) = (&net.w.client, &net.w.server);
    if c.streams {
        assert!(s.received > 0, "nothing arrived before the fault: {s:?}");
    }
    assert!(c.closed.is_none() && s.closed.is_none(), "{c:?} {s:?}");
    net.sim.now()
}

/// The survivor `side` learnt of the fault at `fault`: closed with `want` within the idle
/// timeout plus the margin (and not before `earliest`), its reads fail with the reason (no end
/// of stream) and so do its writes; it never saw the peer end a direction the peer did not end.
fn assert_detected(
    name: &str,
    side: &Side,
    fault: Instant,
    earliest: Duration,
    want: &[StreamError],
) -> Duration {
    let (at, error) = side
        .closed
        .clone()
        .unwrap_or_else(|| panic!("{name}: never closed: {side:?}"));
    let took = at.saturating_duration_since(fault);
    let reason = match &error {
        Some(ConnError::Transport(e)) if want.contains(e) => *e,
        other => panic!("{name}: closed with {other:?}, want one of {want:?}"),
    };
    assert!(
        took <= CONNECTION_IDLE_TIMEOUT + MARGIN,
        "{name}: detected after {took:?}, promised {CONNECTION_IDLE_TIMEOUT:?} + {MARGIN:?}"
    );
    assert!(
        took >= earliest,
        "{name}: closed after only {took:?}: {error:?}"
    );
    assert_eq!(
        side.read_after_close,
        Some(Err(ConnError::Transport(reason))),
        "{name}: a read must fail with the reason, never end the stream"
    );
    assert_eq!(
        side.write_after_close,
        Some(Err(ConnError::Transport(reason))),
        "{name}: a write fails with the same reason"
    );
    assert!(
        !side.eof && !side.end_event,
        "{name}: the peer never ended its side, yet: {side:?}"
    );
    println!(
        "{name}: {reason:?} {:.3} s after the fault",
        took.as_secs_f64()
    );
    took
}

fn lan() -> LinkModel {
    LinkModel {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(2),
        ..LinkModel::default()
    }
}

const SENDER_TO_LISTENER: Roles = Roles {
    client_streams: true,
    server_streams: false,
    server_ends_at_once: false,
    client_total: None,
};

#[test]
fn a_crashed_sender_is_detected_by_a_listener_whose_side_is_open_or_ended() {
    let replay = Replay::new(
        "dead_peer",
        "a_crashed_sender_is_detected_by_a_listener_whose_side_is_open_or_ended",
        1101,
    );
    for ends in [false, true] {
        let roles = Roles {
            server_ends_at_once: ends,
            ..SENDER_TO_LISTENER
        };
        let mut net = connected(replay.seed(), lan(), None, roles);
        let fault = warm_up(&mut net, Duration::from_secs(2));
        net.sim.crash(net.w.client.host).expect("crash");
        let limit = CONNECTION_IDLE_TIMEOUT + Duration::from_secs(10);
        assert!(net.run_until(limit, |w| w.server.closed.is_some()));
        // With its side open the listener's keep-alive frames go unanswered and the UDX RTO
        // gives up (the reference's mechanism) or the idle timeout fires, whichever is first;
        // with its side ended only the idle timeout can tell (the reference never does).
        let earliest = CONNECTION_IDLE_TIMEOUT - Duration::from_secs(5);
        let name = if ends {
            "crashed sender, listener ended"
        } else {
            "crashed sender, listener open"
        };
        assert_detected(
            name,
            &net.w.server,
            fault,
            earliest,
            &[StreamError::TimedOut],
        );
    }
}

#[test]
fn a_crashed_listener_is_detected_by_the_sender() {
    let replay = Replay::new(
        "dead_peer",
        "a_crashed_listener_is_detected_by_the_sender",
        1102,
    );
    for ends in [false, true] {
        let roles = Roles {
            server_ends_at_once: ends,
            ..SENDER_TO_LISTENER
        };
        let mut net = connected(replay.seed(), lan(), None, roles);
        let fault = warm_up(&mut net, Duration::from_secs(2));
        net.sim.crash(net.w.server.host).expect("crash");
        let limit = CONNECTION_IDLE_TIMEOUT + Duration::from_secs(10);
        assert!(net.run_until(limit, |w| w.client.closed.is_some()));
        let c = &net.w.client;
        // Data in flight: the RTO gives up after libudx's 6 backed-off expiries (~13 s).
        let (_, error) = c.closed.clone().unwrap();
        assert_eq!(error, Some(ConnError::Transport(StreamError::TimedOut)));
        let (at, _) = c.closed.clone().unwrap();
        let took = at.saturating_duration_since(fault);
        assert!(took <= CONNECTION_IDLE_TIMEOUT + MARGIN, "{took:?}");
        assert!(took >= Duration::from_secs(10), "{took:?}");
        assert_eq!(
            c.write_after_close,
            Some(Err(ConnError::Transport(StreamError::TimedOut)))
        );
        // The listener wrote nothing and, if it ended, its end arrived long before the crash:
        // only then may the sender read a clean end.
        assert_eq!(c.eof, ends, "{c:?}");
        println!(
            "crashed listener ({}): sender timed out {:.3} s after the crash",
            if ends { "ended" } else { "open" },
            took.as_secs_f64()
        );
    }
}

#[test]
fn a_cut_link_is_detected_on_both_sides() {
    let replay = Replay::new("dead_peer", "a_cut_link_is_detected_on_both_sides", 1103);
    for ends in [false, true] {
        let roles = Roles {
            server_ends_at_once: ends,
            ..SENDER_TO_LISTENER
        };
        let mut net = connected(replay.seed(), lan(), None, roles);
        let fault = warm_up(&mut net, Duration::from_secs(2));
        let client = net.w.client.host;
        net.sim.partition(&[&[client]]);
        let limit = CONNECTION_IDLE_TIMEOUT + Duration::from_secs(10);
        assert!(net.run_until(limit, |w| w.server.closed.is_some()
            && w.client.closed.is_some()));
        let earliest = Duration::from_secs(10);
        assert_detected(
            "cut link: listener",
            &net.w.server,
            fault,
            earliest,
            &[StreamError::TimedOut],
        );
        let (at, error) = net.w.client.closed.clone().unwrap();
        assert_eq!(error, Some(ConnError::Transport(StreamError::TimedOut)));
        assert!(at.saturating_duration_since(fault) <= CONNECTION_IDLE_TIMEOUT + MARGIN);
        // Healing the link later changes nothing: both connections are gone for good.
        net.sim.heal();
        net.run_until(Duration::from_secs(5), |_| false);
    }
}

#[test]
fn a_lost_nat_mapping_is_detected_on_both_sides() {
    let replay = Replay::new(
        "dead_peer",
        "a_lost_nat_mapping_is_detected_on_both_sides",
        1104,
    );
    for (preset, ends) in [
        (NatPreset::FullCone, false),
        (NatPreset::PortRestricted, true),
    ] {
        let roles = Roles {
            server_ends_at_once: ends,
            ..SENDER_TO_LISTENER
        };
        let mut net = connected(replay.seed(), lan(), Some(preset), roles);
        let fault = warm_up(&mut net, Duration::from_secs(2));
        let nat = net.client_nat.expect("the client is behind a NAT");
        net.sim.rebind_nat(nat).expect("rebind");
        let limit = CONNECTION_IDLE_TIMEOUT + Duration::from_secs(10);
        assert!(net.run_until(limit, |w| w.server.closed.is_some()
            && w.client.closed.is_some()));
        // The client hears nothing more (the server answers the old mapping) and times out;
        // its DESTROY leaves through the new mapping and tells the server at once.
        let (at, error) = net.w.client.closed.clone().unwrap();
        assert_eq!(
            error,
            Some(ConnError::Transport(StreamError::TimedOut)),
            "{preset:?}"
        );
        let client_took = at.saturating_duration_since(fault);
        assert!(
            client_took <= CONNECTION_IDLE_TIMEOUT + MARGIN,
            "{preset:?}: {client_took:?}"
        );
        let server_took = assert_detected(
            &format!("lost {preset:?} mapping: listener"),
            &net.w.server,
            fault,
            Duration::from_secs(5),
            &[StreamError::Reset, StreamError::TimedOut],
        );
        assert!(server_took >= client_took, "{preset:?}");
    }
}

/// The control: a live but quiet connection, on a link losing 5% of its datagrams, is never
/// timed out (keep-alive frames while a side is open, HEARTBEATs after our end), and a real end
/// is a clean end on both sides.
#[test]
fn a_quiet_live_connection_stays_open_and_a_real_end_is_clean() {
    let replay = Replay::new(
        "dead_peer",
        "a_quiet_live_connection_stays_open_and_a_real_end_is_clean",
        1105,
    );
    let lossy = LinkModel {
        loss: 0.05,
        ..lan()
    };
    // The client sends 100 KiB and ends its side; the listener keeps its side open and says
    // nothing. From then on only the listener's keep-alive frames and the client's HEARTBEATs
    // (its side ended, it has nothing in flight) show either that the other is alive.
    let roles = Roles {
        client_streams: false,
        server_streams: false,
        server_ends_at_once: false,
        client_total: Some(100 * 1024),
    };
    let mut net = connected(replay.seed(), lossy, Some(NatPreset::PortRestricted), roles);
    // Two quiet minutes: the client's side ended, the listener's open and silent.
    net.run_until(Duration::from_secs(120), |_| false);
    let (c, s) = (&net.w.client, &net.w.server);
    assert!(c.closed.is_none(), "client: {c:?}");
    assert!(s.closed.is_none(), "server: {s:?}");
    assert_eq!(s.received, 100 * 1024);
    assert!(
        s.eof && s.end_event,
        "the client's end is a clean end: {s:?}"
    );
    assert!(!c.eof);
    let heartbeats = net
        .sim
        .with_node(c.host, |n, _| n.connection_transport(c.conn.unwrap()))
        .expect("transport")
        .stats
        .heartbeats_sent;
    assert!(
        heartbeats > 0,
        "the client, its side ended, probes the quiet listener"
    );
    // Now the listener ends too: both close gracefully, reads end cleanly.
    let (host, conn) = (s.host, s.conn.unwrap());
    net.sim
        .with_node(host, |n, _| n.conn_end(conn))
        .expect("end");
    assert!(
        net.run_until(Duration::from_secs(30), |w| w.server.closed.is_some()
            && w.client.closed.is_some())
    );
    let (c, s) = (&net.w.client, &net.w.server);
    assert_eq!(c.closed.clone().unwrap().1, None, "{c:?}");
    assert_eq!(s.closed.clone().unwrap().1, None, "{s:?}");
    assert_eq!(c.read_after_close, Some(Ok(0)));
    assert!(c.eof);
}

/// Letting go of a connection (`conn_drop`, what dropping a `Connection` does) before both
/// directions ended aborts it: the peer reads "reset" one trip later, even when the owner
/// forgets the connection before the DESTROY went out. After both ends it finishes cleanly.
#[test]
fn letting_go_early_aborts_and_letting_go_after_both_ends_finishes() {
    let replay = Replay::new(
        "dead_peer",
        "letting_go_early_aborts_and_letting_go_after_both_ends_finishes",
        1106,
    );
    // Early: the client is still streaming; it lets go and forgets at once.
    let mut net = connected(replay.seed(), lan(), None, SENDER_TO_LISTENER);
    let fault = warm_up(&mut net, Duration::from_secs(1));
    let (host, conn) = (net.w.client.host, net.w.client.conn.unwrap());
    net.sim.with_node(host, |n, _| {
        n.conn_drop(conn);
        n.conn_forget(conn);
    });
    assert!(net.run_until(Duration::from_secs(5), |w| w.server.closed.is_some()));
    let took = assert_detected(
        "let go mid-stream",
        &net.w.server,
        fault,
        Duration::ZERO,
        &[StreamError::Reset],
    );
    assert!(
        took < Duration::from_millis(200),
        "one trip, not a timeout: {took:?}"
    );

    // After both ends: the client sent 100 KiB and ended, the listener ended at once; the
    // client read the listener's end, then lets go: nothing is aborted.
    let roles = Roles {
        client_streams: false,
        server_streams: false,
        server_ends_at_once: true,
        client_total: Some(100 * 1024),
    };
    let mut net = connected(replay.seed(), lan(), None, roles);
    assert!(net.run_until(Duration::from_secs(10), |w| w.client.eof));
    let (host, conn) = (net.w.client.host, net.w.client.conn.unwrap());
    net.sim.with_node(host, |n, _| n.conn_drop(conn));
    assert!(
        net.run_until(Duration::from_secs(10), |w| w.server.closed.is_some()
            && w.client.closed.is_some())
    );
    let s = &net.w.server;
    assert_eq!(s.closed.clone().unwrap().1, None, "{s:?}");
    assert_eq!(s.received, 100 * 1024);
    assert!(s.eof, "a clean end: {s:?}");
}
