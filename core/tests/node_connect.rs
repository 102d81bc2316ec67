//! Two `DhtNode`s connecting by public key, in memory (`node_common`): straight to the server,
//! through a relaying DHT node, refused by the server's firewall, and a half-closed connection
//! whose two directions end one after the other.

mod node_common;

use std::net::SocketAddrV4;
use std::time::Duration;

use hdht_core::connect::ConnectError;
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::messages::{command, mode, HandshakeEnvelope};
use hdht_core::dht::{
    ConnError, ConnId, ConnectEvent, ConnectOptions, ConnectionInfo, DhtEvent, ServerId,
    ServerOptions,
};
use hdht_core::rpc::Persistence;
use hdht_core::wire::{Message, Request};
use node_common::{HostId, Network};

fn key(tag: &str) -> KeyPair {
    KeyPair::from_seed(&hash(tag.as_bytes()))
}

fn connect_event(ev: &DhtEvent) -> Option<&ConnectEvent> {
    match ev {
        DhtEvent::Connect(c) => Some(c),
        _ => None,
    }
}

/// Starts a server for `kp` on `h` and runs until its first announce is done.
fn listen(net: &mut Network, h: HostId, kp: &KeyPair, opts: ServerOptions) -> ServerId {
    let server = net.with(h, |n, now| {
        let s = n.create_server(opts);
        n.listen(now, s, Some(kp.clone())).expect("listen");
        s
    });
    let listening = net.run_until(Duration::from_secs(30), |net| {
        net.take_event(h, |e| match connect_event(e) {
            Some(ConnectEvent::Listening { server: s }) if *s == server => Some(()),
            _ => None,
        })
        .is_some()
    });
    assert!(listening, "the server announced itself");
    server
}

/// How a connect ended on the client.
#[derive(Debug)]
enum Outcome {
    Open(ConnectionInfo),
    Failed(ConnectError),
}

/// Runs until the client's connect opens or fails.
fn outcome(net: &mut Network, client: HostId, conn: ConnId) -> Outcome {
    let mut out = None;
    net.run_until(Duration::from_secs(60), |net| {
        out = out.take().or_else(|| {
            net.take_event(client, |e| match connect_event(e) {
                Some(ConnectEvent::Open { conn: c, info }) if *c == conn => {
                    Some(Outcome::Open(info.clone()))
                }
                Some(ConnectEvent::Failed { conn: c, error }) if *c == conn => {
                    Some(Outcome::Failed(*error))
                }
                _ => None,
            })
        });
        out.is_some()
    });
    out.expect("the connect ended within a minute")
}

/// The server's side of a connection it accepted.
fn incoming(net: &mut Network, server_host: HostId, server: ServerId) -> (ConnId, ConnectionInfo) {
    let mut got = None;
    net.run_until(Duration::from_secs(10), |net| {
        got = got.take().or_else(|| {
            net.take_event(server_host, |e| match connect_event(e) {
                Some(ConnectEvent::Incoming {
                    server: s,
                    conn,
                    info,
                }) if *s == server => Some((*conn, info.clone())),
                _ => None,
            })
        });
        got.is_some()
    });
    got.expect("the server accepted the connection")
}

/// Writes all of `data` (the transport has room for the small amounts used here).
fn write_all(net: &mut Network, h: HostId, conn: ConnId, data: &[u8]) {
    let n = net
        .with(h, |n, now| n.conn_write(now, conn, data))
        .expect("write");
    assert_eq!(n, data.len(), "short write of a small message");
}

/// Reads until the peer's end (`conn_read` returns 0 and `conn_at_end`), within a minute.
fn read_to_end(net: &mut Network, h: HostId, conn: ConnId) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let ended = net.run_until(Duration::from_secs(60), |net| loop {
        let n = net
            .with(h, |n, now| n.conn_read(now, conn, &mut buf))
            .expect("read");
        got.extend_from_slice(&buf[..n]);
        if n == 0 {
            return net.node(h).conn_at_end(conn);
        }
    });
    assert!(ended, "host {h} read to the end of the peer's stream");
    got
}

/// Reads exactly `len` bytes, within a minute.
fn read_exact(net: &mut Network, h: HostId, conn: ConnId, len: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let done = net.run_until(Duration::from_secs(60), |net| {
        let want = (len - got.len()).min(buf.len());
        let n = net
            .with(h, |n, now| n.conn_read(now, conn, &mut buf[..want]))
            .expect("read");
        got.extend_from_slice(&buf[..n]);
        got.len() == len
    });
    assert!(done, "host {h} read {len} bytes (got {})", got.len());
    got
}

/// The PEER_HANDSHAKE requests in the log: (from, to, envelope mode).
fn handshakes(net: &Network) -> Vec<(SocketAddrV4, SocketAddrV4, u64)> {
    net.log
        .iter()
        .filter_map(|s| match Message::decode(&s.bytes) {
            Ok(Message::Request(Request {
                command: c,
                value: Some(v),
                ..
            })) if c == command::PEER_HANDSHAKE => {
                let env = HandshakeEnvelope::decode(&v).ok()?;
                Some((s.from, s.to, env.mode))
            }
            _ => None,
        })
        .collect()
}

/// Both ends agree on keys and handshake hash, and one is the initiator.
fn assert_same_connection(client: &ConnectionInfo, server: &ConnectionInfo) {
    assert!(client.is_initiator && !server.is_initiator);
    assert_eq!(client.public_key, server.remote_public_key);
    assert_eq!(client.remote_public_key, server.public_key);
    assert_eq!(client.handshake_hash, server.handshake_hash);
}

/// Bytes both ways, then both ends end their side and the connection closes gracefully.
fn exchange_and_close(net: &mut Network, client: HostId, c: ConnId, server: HostId, s: ConnId) {
    write_all(net, client, c, b"hello server");
    assert_eq!(read_exact(net, server, s, 12), b"hello server");
    write_all(net, server, s, b"hello client");
    assert_eq!(read_exact(net, client, c, 12), b"hello client");
    net.with(client, |n, _| n.conn_end(c)).expect("end");
    net.with(server, |n, _| n.conn_end(s)).expect("end");
    assert_eq!(read_to_end(net, server, s), b"");
    assert_eq!(read_to_end(net, client, c), b"");
    for (h, conn) in [(client, c), (server, s)] {
        let closed = net.run_until(Duration::from_secs(30), |net| {
            net.take_event(h, |e| match connect_event(e) {
                Some(ConnectEvent::Closed { conn: x, error }) if *x == conn => Some(error.clone()),
                _ => None,
            })
            .is_some_and(|error| {
                assert_eq!(error, None, "host {h} closed gracefully");
                true
            })
        });
        assert!(closed, "host {h} saw its connection close");
    }
}

/// Two nodes and nothing else: the client names the server's address, its handshake goes
/// straight there (FROM_CLIENT), the server answers itself, and the stream connects back over
/// the same sockets.
#[test]
fn direct_connect_to_a_server_named_by_address() {
    let mut net = Network::new(1);
    net.record = true;
    let dht = net.public_dht(2);
    let (server_host, client) = (dht[0], dht[1]);
    let kp = key("direct server");
    let server = listen(&mut net, server_host, &kp, ServerOptions::default());
    let server_addr = net.hosts[server_host].server_addr();

    let opts = ConnectOptions {
        relay_addresses: vec![server_addr],
        ..ConnectOptions::default()
    };
    let conn = net.with(client, |n, now| n.connect(now, kp.public_key(), opts));
    let info = match outcome(&mut net, client, conn) {
        Outcome::Open(info) => info,
        Outcome::Failed(e) => panic!("the direct connect failed: {e}"),
    };
    let (s, server_info) = incoming(&mut net, server_host, server);
    assert_same_connection(&info, &server_info);
    assert_eq!(info.remote_public_key, kp.public_key());
    assert_eq!(
        info.remote_address,
        Some(server_addr.into()),
        "the stream runs to the server's own socket"
    );
    let hs = handshakes(&net);
    assert!(
        hs.iter()
            .any(|&(_, to, m)| to == server_addr && m == mode::FROM_CLIENT),
        "the handshake went straight to the server: {hs:?}"
    );
    exchange_and_close(&mut net, client, conn, server_host, s);
}

/// A public DHT stores the server's announcement at its closest nodes; the client finds one
/// of them with FIND_PEER and handshakes through it (FROM_CLIENT to the relay, FROM_RELAY on
/// to the server, the reply back the same way), then connects to the (reachable) server.
#[test]
fn connect_through_a_relaying_dht_node() {
    let mut net = Network::new(2);
    net.record = true;
    let dht = net.public_dht(8);
    let boot = net.hosts[dht[0]].server_addr();
    let server_host = net.join(boot, Persistence::Adaptive);
    let client = net.join(boot, Persistence::Adaptive);
    let kp = key("relayed server");
    let server = listen(&mut net, server_host, &kp, ServerOptions::default());
    let relays = net.node(server_host).server_relays(server);
    assert!(!relays.is_empty(), "the server announced to relays");

    let conn = net.with(client, |n, now| {
        n.connect(now, kp.public_key(), ConnectOptions::default())
    });
    let info = match outcome(&mut net, client, conn) {
        Outcome::Open(info) => info,
        Outcome::Failed(e) => panic!("the relayed connect failed: {e}"),
    };
    let (s, server_info) = incoming(&mut net, server_host, server);
    assert_same_connection(&info, &server_info);

    let server_addr = net.hosts[server_host].server_addr();
    let hs = handshakes(&net);
    let relayed: Vec<_> = hs
        .iter()
        .filter(|&&(from, to, m)| {
            to == server_addr && m == mode::FROM_RELAY && relays.contains(&from)
        })
        .collect();
    assert!(
        !relayed.is_empty(),
        "a relay forwarded the client's handshake to the server: {hs:?}"
    );
    assert!(
        !hs.iter()
            .any(|&(_, to, m)| to == server_addr && m == mode::FROM_CLIENT),
        "the client never handshook with the server directly: {hs:?}"
    );
    exchange_and_close(&mut net, client, conn, server_host, s);
}

/// A server that asks its owner about every handshake: a rejected client gets no answer and
/// its connect fails; the next one, accepted, connects.
#[test]
fn a_connect_rejected_by_the_server_firewall_fails() {
    let mut net = Network::new(3);
    let dht = net.public_dht(6);
    let boot = net.hosts[dht[0]].server_addr();
    let server_host = net.join(boot, Persistence::Adaptive);
    let client = net.join(boot, Persistence::Adaptive);
    let kp = key("firewalled server");
    let opts = ServerOptions {
        firewall: true,
        ..ServerOptions::default()
    };
    let server = listen(&mut net, server_host, &kp, opts);
    let client_key = key("unwelcome client").public_key();

    // Rejected.
    let opts = ConnectOptions {
        key_pair: Some(key("unwelcome client")),
        ..ConnectOptions::default()
    };
    let conn = net.with(client, |n, now| n.connect(now, kp.public_key(), opts));
    let mut asked = 0;
    let mut failed = None;
    net.run_until(Duration::from_secs(60), |net| {
        while let Some((handshake, remote)) =
            net.take_event(server_host, |e| match connect_event(e) {
                Some(ConnectEvent::Firewall {
                    server: s,
                    handshake,
                    remote_public_key,
                    ..
                }) if *s == server => Some((*handshake, *remote_public_key)),
                _ => None,
            })
        {
            assert_eq!(remote, client_key, "the firewall sees who connects");
            asked += 1;
            net.with(server_host, |n, now| {
                n.firewall_decision(now, handshake, true)
            });
        }
        failed = failed.take().or_else(|| {
            net.take_event(client, |e| match connect_event(e) {
                Some(ConnectEvent::Failed { conn: c, error }) if *c == conn => Some(*error),
                Some(ConnectEvent::Open { conn: c, .. }) if *c == conn => {
                    panic!("a rejected client connected")
                }
                _ => None,
            })
        });
        failed.is_some()
    });
    assert!(asked >= 1, "the server's owner was asked");
    assert_eq!(failed, Some(ConnectError::PeerConnectionFailed));
    assert!(
        !net.take_events(server_host)
            .iter()
            .any(|e| matches!(connect_event(e), Some(ConnectEvent::Incoming { .. }))),
        "no connection was accepted"
    );

    // Accepted.
    let conn = net.with(client, |n, now| {
        n.connect(now, kp.public_key(), ConnectOptions::default())
    });
    let mut opened = None;
    net.run_until(Duration::from_secs(60), |net| {
        while let Some(handshake) = net.take_event(server_host, |e| match connect_event(e) {
            Some(ConnectEvent::Firewall { handshake, .. }) => Some(*handshake),
            _ => None,
        }) {
            net.with(server_host, |n, now| {
                n.firewall_decision(now, handshake, false)
            });
        }
        opened = opened.take().or_else(|| {
            net.take_event(client, |e| match connect_event(e) {
                Some(ConnectEvent::Open { conn: c, .. }) if *c == conn => Some(true),
                Some(ConnectEvent::Failed { conn: c, .. }) if *c == conn => Some(false),
                _ => None,
            })
        });
        opened.is_some()
    });
    assert_eq!(opened, Some(true), "an accepted client connects");
}

/// The client sends a request and ends its side; the server reads it to the end, and only then
/// answers and ends — the connection is half-closed in between, and the client reads the whole
/// answer before its end.
#[test]
fn a_half_closed_connection_still_carries_the_other_direction() {
    let mut net = Network::new(4);
    let dht = net.public_dht(2);
    let (server_host, client) = (dht[0], dht[1]);
    let kp = key("half-close server");
    let server = listen(&mut net, server_host, &kp, ServerOptions::default());
    let opts = ConnectOptions {
        relay_addresses: vec![net.hosts[server_host].server_addr()],
        ..ConnectOptions::default()
    };
    let conn = net.with(client, |n, now| n.connect(now, kp.public_key(), opts));
    assert!(matches!(outcome(&mut net, client, conn), Outcome::Open(_)));
    let (s, _) = incoming(&mut net, server_host, server);

    let request: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
    let mut sent = 0;
    net.run_until(Duration::from_secs(30), |net| {
        sent += net
            .with(client, |n, now| n.conn_write(now, conn, &request[sent..]))
            .expect("write");
        sent == request.len()
    });
    assert_eq!(sent, request.len());
    net.with(client, |n, _| n.conn_end(conn)).expect("end");
    assert_eq!(
        net.with(client, |n, now| n.conn_write(now, conn, b"more")),
        Err(ConnError::Ended),
        "no writes after the end"
    );

    assert_eq!(
        read_to_end(&mut net, server_host, s),
        request,
        "the server read the request to its end"
    );
    assert!(net.node(server_host).conn_at_end(s));
    assert!(
        !net.take_events(server_host).iter().any(|e| matches!(
            connect_event(e),
            Some(ConnectEvent::Closed { conn, .. }) if *conn == s
        )),
        "half-closed, not closed"
    );

    let answer: Vec<u8> = request.iter().rev().copied().collect();
    let mut sent = 0;
    net.run_until(Duration::from_secs(30), |net| {
        sent += net
            .with(server_host, |n, now| n.conn_write(now, s, &answer[sent..]))
            .expect("the server still writes after the client's end");
        sent == answer.len()
    });
    net.with(server_host, |n, _| n.conn_end(s)).expect("end");
    assert_eq!(
        read_to_end(&mut net, client, conn),
        answer,
        "the client read the whole answer"
    );
    for (h, c) in [(client, conn), (server_host, s)] {
        let closed = net.run_until(Duration::from_secs(30), |net| {
            net.take_event(h, |e| match connect_event(e) {
                Some(ConnectEvent::Closed { conn: x, error }) if *x == c => Some(error.clone()),
                _ => None,
            })
            .is_some_and(|e| {
                assert_eq!(e, None, "graceful close");
                true
            })
        });
        assert!(closed, "host {h}'s connection closed once both sides ended");
    }
}
