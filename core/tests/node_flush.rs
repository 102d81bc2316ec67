//! `DhtNode::conn_flush` in memory (`node_common`, virtual time): written bytes count as
//! flushed only once the peer's acknowledgements arrived, our end only once its own
//! acknowledgement did; a peer that is destroyed or goes silent makes the flush fail, never
//! succeed.

mod node_common;

use std::time::Duration;

use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::{
    ConnError, ConnId, ConnectEvent, ConnectOptions, DhtEvent, ServerId, ServerOptions,
};
use hdht_core::udx::StreamError;
use node_common::{HostId, Network};

fn connect_event(ev: &DhtEvent) -> Option<&ConnectEvent> {
    match ev {
        DhtEvent::Connect(c) => Some(c),
        _ => None,
    }
}

/// A connection between two public nodes: (network, client host, client conn, server host,
/// server conn).
fn connected(seed: u64) -> (Network, HostId, ConnId, HostId, ConnId) {
    let mut net = Network::new(seed);
    let dht = net.public_dht(2);
    let (server_host, client) = (dht[0], dht[1]);
    let kp = KeyPair::from_seed(&hash(b"flush server"));
    let server: ServerId = net.with(server_host, |n, now| {
        let s = n.create_server(ServerOptions::default());
        n.listen(now, s, Some(kp.clone())).expect("listen");
        s
    });
    let opts = ConnectOptions {
        relay_addresses: vec![net.hosts[server_host].server_addr()],
        ..ConnectOptions::default()
    };
    let conn = net.with(client, |n, now| n.connect(now, kp.public_key(), opts));
    let mut open = false;
    let mut accepted = None;
    net.run_until(Duration::from_secs(60), |net| {
        open = open
            || net
                .take_event(client, |e| match connect_event(e) {
                    Some(ConnectEvent::Open { conn: c, .. }) if *c == conn => Some(()),
                    _ => None,
                })
                .is_some();
        accepted = accepted.or_else(|| {
            net.take_event(server_host, |e| match connect_event(e) {
                Some(ConnectEvent::Incoming {
                    server: s, conn, ..
                }) if *s == server => Some(*conn),
                _ => None,
            })
        });
        open && accepted.is_some()
    });
    assert!(open, "the client connected");
    let s = accepted.expect("the server accepted");
    // Let the secret-stream headers and their acknowledgements settle.
    net.advance(Duration::from_millis(100));
    (net, client, conn, server_host, s)
}

fn flushed_event(net: &mut Network, h: HostId, conn: ConnId) -> bool {
    net.take_event(h, |e| match connect_event(e) {
        Some(ConnectEvent::Flushed(c)) if *c == conn => Some(()),
        _ => None,
    })
    .is_some()
}

fn closed_event(net: &mut Network, h: HostId, conn: ConnId) -> Option<Option<ConnError>> {
    net.take_event(h, |e| match connect_event(e) {
        Some(ConnectEvent::Closed { conn: c, error }) if *c == conn => Some(error.clone()),
        _ => None,
    })
}

#[test]
fn a_flush_waits_for_the_peers_acknowledgement() {
    let (mut net, client, conn, server_host, s) = connected(11);
    assert_eq!(
        net.with(client, |n, _| n.conn_flush(conn)),
        Ok(true),
        "nothing written yet: flushed"
    );
    let data = vec![7u8; 20_000];
    let n = net
        .with(client, |n, now| n.conn_write(now, conn, &data))
        .expect("write");
    assert_eq!(n, data.len());
    let written_at = net.now;
    assert_eq!(
        net.with(client, |n, _| n.conn_flush(conn)),
        Ok(false),
        "just written: not acknowledged"
    );
    // When the data reaches the server, the client still has no acknowledgement.
    let arrived = net.run_until(Duration::from_secs(10), |net| {
        net.node(server_host).conn_readable(s) > 0
    });
    assert!(arrived, "the data arrived");
    assert_eq!(net.with(client, |n, _| n.conn_flush(conn)), Ok(false));
    assert!(!flushed_event(&mut net, client, conn));
    // The acknowledgements come back: Flushed, and the flush holds from then on.
    let done = net.run_until(Duration::from_secs(10), |net| {
        flushed_event(net, client, conn)
    });
    assert!(done, "Flushed follows the acknowledgements");
    assert!(
        net.now >= written_at + net.latency * 2,
        "not before a round trip (virtual time)"
    );
    assert_eq!(net.with(client, |n, _| n.conn_flush(conn)), Ok(true));
    assert!(
        closed_event(&mut net, client, conn).is_none(),
        "the connection stays open"
    );
}

#[test]
fn after_an_end_a_flush_waits_for_the_ack_of_the_end() {
    let (mut net, client, conn, server_host, s) = connected(12);
    net.with(client, |n, now| n.conn_write(now, conn, b"last words"))
        .expect("write");
    net.with(client, |n, _| n.conn_end(conn)).expect("end");
    assert_eq!(net.with(client, |n, _| n.conn_flush(conn)), Ok(false));
    let done = net.run_until(Duration::from_secs(10), |net| {
        flushed_event(net, client, conn)
    });
    assert!(done, "the end was acknowledged");
    assert_eq!(net.with(client, |n, _| n.conn_flush(conn)), Ok(true));
    // Half-closed: the server has not ended, so the connection is still open both ways.
    assert!(closed_event(&mut net, client, conn).is_none());
    net.with(server_host, |n, now| n.conn_write(now, s, b"reply"))
        .expect("the server still writes");
}

#[test]
fn a_destroyed_peer_makes_the_flush_fail() {
    let (mut net, client, conn, server_host, s) = connected(13);
    net.with(client, |n, now| n.conn_write(now, conn, &[1u8; 5000]))
        .expect("write");
    // The peer aborts before our bytes reach it.
    net.with(server_host, |n, _| n.conn_destroy(s));
    assert_eq!(net.with(client, |n, _| n.conn_flush(conn)), Ok(false));
    let mut closed = None;
    net.run_until(Duration::from_secs(60), |net| {
        closed = closed.take().or_else(|| closed_event(net, client, conn));
        closed.is_some()
    });
    assert_eq!(
        closed,
        Some(Some(ConnError::Transport(StreamError::Reset))),
        "the peer's DESTROY closed the connection"
    );
    assert!(!flushed_event(&mut net, client, conn), "never flushed");
    assert_eq!(
        net.with(client, |n, _| n.conn_flush(conn)),
        Err(ConnError::Transport(StreamError::Reset))
    );
}

#[test]
fn a_silent_peer_makes_the_flush_fail_after_the_timeout() {
    let (mut net, client, conn, server_host, _) = connected(14);
    net.hosts[server_host].cut = true;
    net.with(client, |n, now| n.conn_write(now, conn, &[2u8; 5000]))
        .expect("write");
    assert_eq!(net.with(client, |n, _| n.conn_flush(conn)), Ok(false));
    net.advance(Duration::from_secs(3));
    assert_eq!(
        net.with(client, |n, _| n.conn_flush(conn)),
        Ok(false),
        "unacknowledged bytes stay unflushed"
    );
    let mut closed = None;
    net.run_until(Duration::from_secs(120), |net| {
        closed = closed.take().or_else(|| closed_event(net, client, conn));
        closed.is_some()
    });
    assert_eq!(
        closed,
        Some(Some(ConnError::Transport(StreamError::TimedOut))),
        "the dead peer was noticed"
    );
    assert!(!flushed_event(&mut net, client, conn), "never flushed");
    assert_eq!(
        net.with(client, |n, _| n.conn_flush(conn)),
        Err(ConnError::Transport(StreamError::TimedOut))
    );
}

/// Issue 17 item 3: a writer blocked on a full send buffer when the peer goes silent learns
/// of the timeout — from its write, its read, its end and its flush alike — never a bare
/// "connection not open".
#[test]
fn a_blocked_writer_of_a_timed_out_connection_reads_the_timeout() {
    let (mut net, client, conn, server_host, _) = connected(15);
    net.hosts[server_host].cut = true;
    // Fill the send buffer: nothing is acknowledged any more.
    let mut blocked = false;
    for _ in 0..10_000 {
        let n = net
            .with(client, |n, now| n.conn_write(now, conn, &[3u8; 16 * 1024]))
            .expect("write while open");
        if n == 0 {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "the send buffer filled");
    let mut closed = None;
    net.run_until(Duration::from_secs(120), |net| {
        closed = closed.take().or_else(|| closed_event(net, client, conn));
        closed.is_some()
    });
    let timed_out = ConnError::Transport(StreamError::TimedOut);
    assert_eq!(closed, Some(Some(timed_out.clone())));
    assert_eq!(
        net.with(client, |n, now| n.conn_write(now, conn, b"more")),
        Err(timed_out.clone())
    );
    let mut buf = [0u8; 64];
    assert_eq!(
        net.with(client, |n, now| n.conn_read(now, conn, &mut buf)),
        Err(timed_out.clone())
    );
    assert_eq!(
        net.with(client, |n, _| n.conn_end(conn)),
        Err(timed_out.clone())
    );
    assert_eq!(net.with(client, |n, _| n.conn_flush(conn)), Err(timed_out));
}
