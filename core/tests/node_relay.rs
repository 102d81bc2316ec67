//! A blind relay on a `DhtNode`, in memory (`node_common`): two peers connect to the relay
//! node's key, pair their streams by token over Protomux on message-framed connections, and the
//! relay forwards their UDX packets on its own sockets, rewriting only the stream id; a relay
//! connection that closes takes its pairs with it.

mod node_common;

use std::net::SocketAddrV4;
use std::time::Duration;

use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::{ConnError, ConnId, ConnectEvent, ConnectOptions, ConnectionInfo, DhtEvent};
use hdht_core::relay::{ClientEvent, RelayClient, RelayLimits, Token};
use hdht_core::rpc::SocketKind;
use hdht_core::udx::packet::{Flags, Header};
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

/// Connects `h` to `remote` and runs until the connection opens.
fn open(net: &mut Network, h: HostId, remote: [u8; 32]) -> (ConnId, ConnectionInfo) {
    // Framed from the start: the relay's channel open may arrive with its header.
    let conn = net.with(h, |n, now| {
        let conn = n.connect(now, remote, ConnectOptions::default());
        n.conn_set_message_framing(conn);
        conn
    });
    let mut got = None;
    net.run_until(Duration::from_secs(60), |net| {
        got = got.take().or_else(|| {
            net.take_event(h, |e| match connect_event(e) {
                Some(ConnectEvent::Open { conn: c, info }) if *c == conn => Some(info.clone()),
                Some(ConnectEvent::Failed { conn: c, error }) if *c == conn => {
                    panic!("host {h}'s connect to the relay failed: {error:?}")
                }
                _ => None,
            })
        });
        got.is_some()
    });
    let info = got.expect("the connect to the relay opened within a minute");
    assert!(net.node(h).conn_is_message_framed(conn));
    (conn, info)
}

/// One peer's relay connection and its blind-relay client.
struct Peer {
    host: HostId,
    conn: ConnId,
    client: RelayClient,
    paired: Option<u32>,
}

impl Peer {
    /// Moves frames both ways once; records a pairing.
    fn pump(&mut self, net: &mut Network) {
        let (host, conn) = (self.host, self.conn);
        while let Some(frame) = self.client.poll_frame() {
            let sent = net
                .with(host, |n, now| n.conn_write_message(now, conn, &frame))
                .expect("write a frame");
            assert!(sent, "a control frame fits the send buffer");
        }
        while let Some(msg) = net.with(host, |n, now| n.conn_read_message(now, conn)) {
            self.client.handle_frame(&msg).expect("a valid frame");
        }
        while let Some(ev) = self.client.poll_event() {
            match ev {
                ClientEvent::Paired {
                    relay_stream_id, ..
                } => self.paired = Some(relay_stream_id),
                ClientEvent::Failed { error, .. } | ClientEvent::Closed { error } => {
                    panic!("host {host}'s pairing failed: {error:?}")
                }
                ClientEvent::Opened => {}
            }
        }
    }
}

/// A UDX packet to `stream_id` with a payload.
fn packet(stream_id: u32, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let mut out = Header {
        flags,
        stream_id,
        rwnd: 65536,
        ..Header::default()
    }
    .to_bytes()
    .to_vec();
    out.extend_from_slice(payload);
    out
}

/// The UDX datagrams the relay host sent to `to` since the log was last cleared.
fn relayed_to(net: &Network, relay: HostId, to: SocketAddrV4) -> Vec<Vec<u8>> {
    net.log
        .iter()
        .filter(|s| s.host == relay && s.to == to && s.bytes.first() == Some(&0xff))
        .map(|s| s.bytes.clone())
        .collect()
}

/// Starts a relay on host 0 of a 4-node DHT and pairs hosts 1 and 2 through it.
fn paired() -> (Network, HostId, Peer, Peer) {
    let mut net = Network::new(14);
    let dht = net.public_dht(4);
    let (relay, a, b) = (dht[0], dht[1], dht[2]);
    let relay_key = key("relay");
    let server = net.with(relay, |n, now| {
        n.relay_server(now, relay_key.clone(), RelayLimits::default())
            .expect("start the relay")
    });
    let listening = net.run_until(Duration::from_secs(30), |net| {
        net.take_event(relay, |e| match connect_event(e) {
            Some(ConnectEvent::Listening { server: s }) if *s == server => Some(()),
            _ => None,
        })
        .is_some()
    });
    assert!(listening, "the relay announced itself");

    let token: Token = hash(b"pairing token");
    let mut peers = [a, b].map(|h| {
        let (conn, info) = open(&mut net, h, relay_key.public_key());
        Peer {
            host: h,
            conn,
            client: RelayClient::new(&info.public_key),
            paired: None,
        }
    });
    let now = net.now;
    peers[0]
        .client
        .pair(now, true, token, 0x1111)
        .expect("pair");
    peers[1]
        .client
        .pair(now, false, token, 0x2222)
        .expect("pair");
    let done = net.run_until(Duration::from_secs(30), |net| {
        for p in peers.iter_mut() {
            p.pump(net);
        }
        peers.iter().all(|p| p.paired.is_some())
    });
    assert!(done, "both peers were paired");
    // The relay's connections raise no events of their own.
    assert!(
        net.take_events(relay)
            .iter()
            .all(|e| !matches!(connect_event(e), Some(ConnectEvent::Incoming { .. }))),
        "the relay owns its connections"
    );
    let [pa, pb] = peers;
    (net, relay, pa, pb)
}

#[test]
fn two_peers_pair_through_a_relay_node_and_their_packets_are_forwarded() {
    let (mut net, relay, a, b) = paired();
    let (ra, rb) = (a.paired.unwrap(), b.paired.unwrap());
    assert_ne!(ra, rb, "each peer gets its own relay stream");
    let stats = net.node(relay).relay_stats().expect("a relay runs");
    assert_eq!(stats.control.pairings_matched, 1);
    assert_eq!(stats.control.sessions_opened, 2);
    assert_eq!(stats.sessions, 2);

    let a_addr = net.hosts[a.host].server_addr();
    let b_addr = net.hosts[b.host].server_addr();
    let relay_addr = net.hosts[relay].server_addr();
    net.record = true;
    net.log.clear();
    // A's first packet attaches its relay stream; B is not attached yet, so it is dropped.
    net.inject(
        relay,
        SocketKind::Server,
        a_addr,
        &packet(ra, Flags::DATA, b"first"),
    );
    assert!(relayed_to(&net, relay, b_addr).is_empty());
    // B's packet goes to A with A's own stream id, everything else untouched.
    let from_b = packet(rb, Flags::DATA, b"hello a");
    net.inject(relay, SocketKind::Server, b_addr, &from_b);
    let to_a = relayed_to(&net, relay, a_addr);
    assert_eq!(to_a.len(), 1, "one packet forwarded to A");
    let mut want = from_b.clone();
    want[4..8].copy_from_slice(&0x1111u32.to_le_bytes());
    assert_eq!(to_a[0], want);
    // And A's next packet reaches B as 0x2222.
    let from_a = packet(ra, Flags::DATA, b"hello b");
    net.inject(relay, SocketKind::Server, a_addr, &from_a);
    let to_b = relayed_to(&net, relay, b_addr);
    assert_eq!(to_b.len(), 1, "one packet forwarded to B");
    let mut want = from_a.clone();
    want[4..8].copy_from_slice(&0x2222u32.to_le_bytes());
    assert_eq!(to_b[0], want);
    assert!(
        net.log
            .iter()
            .all(|s| s.from == relay_addr || s.host != relay),
        "forwarded from the socket the streams attached to"
    );
    let stats = net.node(relay).relay_stats().unwrap();
    assert_eq!(stats.forward.packets, 2);
    assert_eq!(
        stats.forward.bytes,
        (from_a.len() + from_b.len()) as u64,
        "bytes forwarded"
    );
    assert_eq!(stats.forward.dropped, 1, "A's packet before B attached");

    // A DESTROY is forwarded and ends the pair: later packets are not relayed any more.
    net.log.clear();
    net.inject(
        relay,
        SocketKind::Server,
        b_addr,
        &packet(rb, Flags::DESTROY, b""),
    );
    assert_eq!(
        relayed_to(&net, relay, a_addr).len(),
        1,
        "the DESTROY reached A"
    );
    net.log.clear();
    net.inject(
        relay,
        SocketKind::Server,
        a_addr,
        &packet(ra, Flags::DATA, b"late"),
    );
    assert!(
        relayed_to(&net, relay, b_addr).is_empty(),
        "the pair is gone"
    );
    assert_eq!(net.node(relay).relay_stats().unwrap().forward.packets, 3);
}

#[test]
fn a_closed_relay_connection_ends_its_session_and_its_pairs() {
    let (mut net, relay, a, b) = paired();
    let (ra, rb) = (a.paired.unwrap(), b.paired.unwrap());
    let a_addr = net.hosts[a.host].server_addr();
    let b_addr = net.hosts[b.host].server_addr();
    net.with(a.host, |n, _| n.conn_destroy(a.conn));
    let gone = net.run_until(Duration::from_secs(30), |net| {
        net.node(relay).relay_stats().unwrap().sessions == 1
    });
    assert!(
        gone,
        "the relay ended A's session when its connection closed"
    );
    let stats = net.node(relay).relay_stats().unwrap();
    assert_eq!(stats.control.sessions_closed, 1);
    assert_eq!(
        stats.control.pairings_active, 0,
        "A's pair went with its session"
    );
    net.record = true;
    net.log.clear();
    net.inject(
        relay,
        SocketKind::Server,
        a_addr,
        &packet(ra, Flags::DATA, b"x"),
    );
    net.inject(
        relay,
        SocketKind::Server,
        b_addr,
        &packet(rb, Flags::DATA, b"y"),
    );
    assert!(relayed_to(&net, relay, a_addr).is_empty());
    assert!(relayed_to(&net, relay, b_addr).is_empty());
    assert_eq!(net.node(relay).relay_stats().unwrap().forward.packets, 0);
}

#[test]
fn message_writes_are_checked() {
    let (mut net, _relay, a, _b) = paired();
    let too_big = vec![0u8; hdht_core::secret_stream::MAX_WRITE + 1];
    let r = net.with(a.host, |n, now| n.conn_write_message(now, a.conn, &too_big));
    assert!(
        matches!(r, Err(ConnError::MessageTooLarge { len, .. }) if len == too_big.len()),
        "{r:?}"
    );
    // A byte-stream connection refuses message writes.
    let relay_key = key("relay");
    let conn = net.with(3, |n, now| {
        n.connect(now, relay_key.public_key(), ConnectOptions::default())
    });
    let opened = net.run_until(Duration::from_secs(60), |net| {
        net.take_event(3, |e| match connect_event(e) {
            Some(ConnectEvent::Open { conn: c, .. }) if *c == conn => Some(()),
            _ => None,
        })
        .is_some()
    });
    assert!(opened);
    assert!(!net.node(3).conn_is_message_framed(conn));
    let r = net.with(3, |n, now| n.conn_write_message(now, conn, b"frame"));
    assert_eq!(r, Err(ConnError::NotMessageFramed));
}
