//! Swarms over real UDP on 127.0.0.1, on tokio and smol: three Rust swarm peers join one
//! topic at the same moment on a local bootstrap network; after their flushes every pair holds
//! exactly one connection (the same one on both sides), bytes flow both ways on each, a peer
//! that leaves and rejoins makes no duplicate, and a banned peer's dials are refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::ConnectOptions;
use hdht_core::rpc::Persistence;
use hdht_driver::api::JoinOptions;
use hdht_driver::{Connection, Firewall, SwarmConnections, SwarmHandle, SwarmOptions};
use hdht_tests::runtime::{Runtime, Smol, Tokio};

use hdht_tests::localnet::{network as rust_network, opts, ready, STEP};

/// One swarm peer: its node, the swarm, its connection stream and the newest connection it
/// got per peer (a newer one replaced the older: the duplicate rule closed that one).
struct Peer<R: Runtime> {
    dht: R::Dht,
    swarm: SwarmHandle,
    stream: SwarmConnections,
    conns: BTreeMap<[u8; 32], Connection>,
}

impl<R: Runtime> Peer<R> {
    async fn new(bootstrap: &[String]) -> Self {
        let dht = R::dht(opts(bootstrap, Persistence::Adaptive))
            .await
            .expect("swarm node");
        ready::<R>(&dht).await;
        let swarm = SwarmHandle::start(dht.shared(), SwarmOptions::default()).expect("swarm");
        assert!(
            SwarmHandle::start(dht.shared(), SwarmOptions::default()).is_err(),
            "one swarm per node"
        );
        let stream = swarm.connection_stream();
        Peer {
            dht,
            swarm,
            stream,
            conns: BTreeMap::new(),
        }
    }

    /// Takes every connection announced so far.
    async fn collect(&mut self) {
        while let Some(Some((conn, info))) =
            R::timeout(Duration::from_millis(20), self.stream.next()).await
        {
            assert_eq!(info.public_key, conn.remote_public_key());
            self.conns.insert(conn.remote_public_key(), conn);
        }
    }
}

/// Waits (bounded) until every swarm holds a connection to each of the others and has taken
/// it from its stream.
async fn meshed<R: Runtime>(peers: &mut [Peer<R>]) {
    let keys: Vec<[u8; 32]> = peers.iter().map(|p| p.swarm.public_key()).collect();
    let mut waited = Duration::ZERO;
    loop {
        let mut done = true;
        for p in peers.iter_mut() {
            p.collect().await;
            let mut held = p.swarm.connections();
            held.sort();
            let mut want: Vec<[u8; 32]> = keys
                .iter()
                .copied()
                .filter(|k| *k != p.swarm.public_key())
                .collect();
            want.sort();
            done &= held == want && want.iter().all(|k| p.conns.contains_key(k));
        }
        if done {
            return;
        }
        assert!(waited < STEP, "the swarms did not mesh within {STEP:?}");
        R::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
}

/// Exactly one connection per pair: both sides hold the same one (same handshake), and bytes
/// written on each side arrive on the other.
async fn one_connection_each_way<R: Runtime>(peers: &mut [Peer<R>], round: &str) {
    for i in 0..peers.len() {
        for j in 0..peers.len() {
            if i == j {
                continue;
            }
            let (ki, kj) = (peers[i].swarm.public_key(), peers[j].swarm.public_key());
            assert_eq!(
                peers[i].conns[&kj].handshake_hash(),
                peers[j].conns[&ki].handshake_hash(),
                "both sides of a pair hold the same connection"
            );
            let msg = format!("{round}: {i} to {j}\n");
            let w = peers[i].conns.get_mut(&kj).expect("connection");
            R::timeout(STEP, async {
                w.write_all(msg.as_bytes()).await?;
                w.flush().await
            })
            .await
            .expect("write in time")
            .expect("write");
            let r = peers[j].conns.get_mut(&ki).expect("connection");
            let mut buf = vec![0; msg.len()];
            R::timeout(STEP, r.read_exact(&mut buf))
                .await
                .expect("read in time")
                .expect("read");
            assert_eq!(buf, msg.as_bytes());
        }
    }
}

async fn three_peers<R: Runtime>() {
    let (network, bootstrap) = rust_network::<R>(4).await;
    let topic = hash(b"hdht swarm_live topic");
    let mut peers = Vec::new();
    for _ in 0..3 {
        peers.push(Peer::<R>::new(&bootstrap).await);
    }
    // All three join at the same moment: each one's first lookup may run before the others'
    // announces landed; the rendezvous lookups make them meet anyway.
    let mut discoveries = Vec::new();
    for p in &peers {
        discoveries.push(p.swarm.join(topic, JoinOptions::default()).expect("join"));
    }
    for d in &discoveries {
        let ok = R::timeout(STEP, d.flushed())
            .await
            .expect("discovery flushed in time")
            .expect("discovery flushed");
        assert!(ok, "announce stored");
    }
    for p in &peers {
        assert!(
            R::timeout(STEP, p.swarm.flush())
                .await
                .expect("flush in time"),
            "flushed"
        );
    }
    meshed(&mut peers).await;
    one_connection_each_way(&mut peers, "first").await;
    for p in &peers {
        assert_eq!(p.swarm.connections().len(), 2, "one connection per peer");
        let st = p.swarm.stats();
        assert!(
            st.client_opened + st.server_opened >= 2,
            "connections counted: {st:?}"
        );
    }

    // Leave then rejoin: connections stay across the leave, the rejoin makes no duplicate.
    let last = discoveries.pop().expect("three discoveries");
    peers[2].swarm.leave(&topic).expect("leave");
    drop(last);
    assert_eq!(
        peers[2].swarm.connections().len(),
        2,
        "leave keeps connections"
    );
    let again = peers[2]
        .swarm
        .join(topic, JoinOptions::default())
        .expect("rejoin");
    R::timeout(STEP, again.flushed())
        .await
        .expect("rejoin flushed in time")
        .expect("rejoin flushed");
    assert!(R::timeout(STEP, peers[2].swarm.flush())
        .await
        .expect("flush in time"));
    meshed(&mut peers).await;
    one_connection_each_way(&mut peers, "rejoined").await;

    // A ban holds: peer 0 bans peer 1 and ends their connection; peer 1's explicit dials of
    // peer 0 are refused, and peer 0 never dials peer 1.
    let k1 = peers[1].swarm.public_key();
    let k0 = peers[0].swarm.public_key();
    peers[0].swarm.ban(k1).expect("ban");
    assert!(peers[0].swarm.peer(&k1).expect("known peer").banned);
    let refused_before = peers[0].swarm.stats().incoming_refused;
    peers[0].conns.remove(&k1).expect("connection").destroy();
    peers[1].swarm.join_peer(k0).expect("join peer");
    let mut waited = Duration::ZERO;
    while peers[0].swarm.stats().incoming_refused == refused_before {
        assert!(waited < STEP, "peer 1 never dialed the peer that banned it");
        R::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    peers[0].collect().await;
    assert!(
        !peers[0].conns.contains_key(&k1),
        "no new connection from a banned peer"
    );
    assert!(!peers[0].swarm.connections().contains(&k1));
    assert!(
        peers[1]
            .swarm
            .join_peer(peers[1].swarm.public_key())
            .is_err(),
        "joining our own key is refused"
    );

    drop(again);
    drop(discoveries);
    for p in peers {
        R::timeout(STEP, p.swarm.shutdown())
            .await
            .expect("swarm shutdown in time");
        assert!(p.swarm.join(topic, JoinOptions::default()).is_err());
        drop(p.conns);
        drop(p.stream);
        R::destroy(p.dht).await;
    }
    for d in network {
        R::destroy(d).await;
    }
}

/// A swarm's firewall is asked about handshakes to its server: the key it rejects never
/// connects, another one does.
async fn firewall<R: Runtime>() {
    let (network, bootstrap) = rust_network::<R>(3).await;
    let mut blocked = Peer::<R>::new(&bootstrap).await;
    let mut allowed = Peer::<R>::new(&bootstrap).await;
    let reject = blocked.swarm.public_key();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let dht = R::dht(opts(&bootstrap, Persistence::Adaptive))
        .await
        .expect("server node");
    ready::<R>(&dht).await;
    let server = SwarmHandle::start(
        dht.shared(),
        SwarmOptions {
            firewall: Some(Firewall::new(move |req| {
                let no = req.remote_public_key == reject;
                if no {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                no
            })),
            ..SwarmOptions::default()
        },
    )
    .expect("swarm");
    let mut accepted = server.connection_stream();
    let d = server
        .join(
            hash(b"firewalled topic"),
            JoinOptions {
                server: true,
                client: false,
                limit: None,
            },
        )
        .expect("join");
    assert!(R::timeout(STEP, d.flushed())
        .await
        .expect("in time")
        .expect("flushed"));
    blocked
        .swarm
        .join_peer(server.public_key())
        .expect("join peer");
    allowed
        .swarm
        .join_peer(server.public_key())
        .expect("join peer");
    let (conn, info) = R::timeout(STEP, accepted.next())
        .await
        .expect("a connection in time")
        .expect("a connection");
    assert_eq!(info.public_key, allowed.swarm.public_key());
    let mut waited = Duration::ZERO;
    while asked.load(Ordering::SeqCst) == 0 {
        assert!(
            waited < STEP,
            "the firewall was not asked about the blocked peer"
        );
        R::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    blocked.collect().await;
    allowed.collect().await;
    assert!(blocked.conns.is_empty(), "the rejected peer never connects");
    assert_eq!(server.connections(), vec![allowed.swarm.public_key()]);
    drop(conn);
    drop(d);
    R::timeout(STEP, server.shutdown()).await.expect("shutdown");
    drop(accepted);
    R::destroy(dht).await;
    for p in [blocked, allowed] {
        drop(p.conns);
        drop(p.stream);
        R::destroy(p.dht).await;
    }
    for d in network {
        R::destroy(d).await;
    }
}

/// `listen()` without a topic: a peer that knows our key reaches us with `join_peer`.
async fn listen_then_join_peer<R: Runtime>() {
    let (network, bootstrap) = rust_network::<R>(3).await;
    let mut a = Peer::<R>::new(&bootstrap).await;
    let mut b = Peer::<R>::new(&bootstrap).await;
    R::timeout(STEP, a.swarm.listen())
        .await
        .expect("listening in time")
        .expect("listening");
    b.swarm.join_peer(a.swarm.public_key()).expect("join peer");
    let mut waited = Duration::ZERO;
    loop {
        a.collect().await;
        b.collect().await;
        if a.conns.contains_key(&b.swarm.public_key())
            && b.conns.contains_key(&a.swarm.public_key())
        {
            break;
        }
        assert!(waited < STEP, "join_peer did not reach the listening swarm");
        R::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    let mut peers = [a, b];
    one_connection_each_way(&mut peers, "explicit").await;
    let peer = peers[1]
        .swarm
        .peer(&peers[0].swarm.public_key())
        .expect("peer info");
    assert!(peer.explicit, "{peer:?}");
    for p in peers {
        R::timeout(STEP, p.swarm.shutdown())
            .await
            .expect("shutdown");
        assert!(R::timeout(STEP, p.swarm.listen())
            .await
            .expect("in time")
            .is_err());
        drop(p.conns);
        drop(p.stream);
        R::destroy(p.dht).await;
    }
    for d in network {
        R::destroy(d).await;
    }
}

/// A peer that floods a swarm with connects under fresh keys gets at most the swarm's
/// `max_server_connections`; the rest are refused (counted, no state kept for them, no
/// panic), and a flood under a key it already holds a connection with keeps one connection.
async fn connect_flood<R: Runtime>() {
    const LIMIT: usize = 3;
    const FLOOD: usize = 24;
    let (network, bootstrap) = rust_network::<R>(3).await;
    let dht = R::dht(opts(&bootstrap, Persistence::Adaptive))
        .await
        .expect("server node");
    ready::<R>(&dht).await;
    let server = SwarmHandle::start(
        dht.shared(),
        SwarmOptions {
            max_server_connections: Some(LIMIT),
            ..SwarmOptions::default()
        },
    )
    .expect("swarm");
    let mut accepted = server.connection_stream();
    R::timeout(STEP, server.listen())
        .await
        .expect("listening in time")
        .expect("listening");
    let flooder = R::dht(opts(&bootstrap, Persistence::Adaptive))
        .await
        .expect("flooder node");
    ready::<R>(&flooder).await;
    let key = |i: usize| KeyPair::from_seed(&hash(format!("flooder {i}").as_bytes()));
    let connects: Vec<_> = (0..FLOOD)
        .map(|i| {
            flooder.connect_with(
                server.public_key(),
                ConnectOptions {
                    key_pair: Some(key(i)),
                    ..ConnectOptions::default()
                },
            )
        })
        .collect();
    let mut waited = Duration::ZERO;
    let mut conns = BTreeMap::new();
    loop {
        while let Some(Some((c, _))) = R::timeout(Duration::from_millis(20), accepted.next()).await
        {
            conns.insert(c.remote_public_key(), c);
        }
        let st = server.stats();
        if st.incoming_refused >= (FLOOD - LIMIT) as u64 && conns.len() == LIMIT {
            break;
        }
        assert!(
            waited < STEP,
            "the flood was not bounded within {STEP:?}: {st:?}, {} taken",
            conns.len()
        );
        R::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert_eq!(server.connections().len(), LIMIT, "{:?}", server.stats());
    assert_eq!(server.stats().server_opened, LIMIT as u64);
    assert!(
        server.peers().len() <= LIMIT,
        "no state kept for refused peers: {} known",
        server.peers().len()
    );
    // The connects that got through resolve (keep them open); the refused ones fail
    // (PEER_CONNECTION_FAILED) or would after their timeout: drop them.
    let mut opened = Vec::new();
    for mut c in connects {
        if let Some(Ok(conn)) = R::timeout(Duration::from_millis(20), &mut c).await {
            opened.push(conn);
        }
    }
    assert_eq!(opened.len(), LIMIT, "as many opened as the swarm took");
    // A second flood under a key that holds a connection: the duplicate rule keeps one.
    let held = *conns.keys().next().expect("a connection");
    let index = (0..FLOOD)
        .find(|i| key(*i).public_key() == held)
        .expect("a flooder key");
    let before = server.stats();
    let again: Vec<_> = (0..8)
        .map(|_| {
            flooder.connect_with(
                server.public_key(),
                ConnectOptions {
                    key_pair: Some(key(index)),
                    ..ConnectOptions::default()
                },
            )
        })
        .collect();
    let mut waited = Duration::ZERO;
    while server.stats().duplicates_dropped < before.duplicates_dropped + 8 {
        assert!(
            waited < STEP,
            "repeated connects under one key not resolved: {:?}",
            server.stats()
        );
        while let Some(Some((c, _))) = R::timeout(Duration::from_millis(20), accepted.next()).await
        {
            conns.insert(c.remote_public_key(), c);
        }
        R::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    R::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server.connections().len(),
        LIMIT,
        "still one per peer: {:?}",
        server.stats()
    );
    assert!(server.peers().len() <= LIMIT);
    drop(again);
    drop(opened);
    drop(conns);
    R::timeout(STEP, server.shutdown()).await.expect("shutdown");
    drop(accepted);
    R::destroy(flooder).await;
    R::destroy(dht).await;
    for d in network {
        R::destroy(d).await;
    }
}

#[test]
fn tokio_connect_flood_is_bounded() {
    Tokio::run(connect_flood::<Tokio>());
}

#[test]
fn smol_connect_flood_is_bounded() {
    Smol::run(connect_flood::<Smol>());
}

/// An async firewall's answer is what happens: the key it rejects (after awaiting) never
/// connects, and is banned as in the reference — found on a topic later, it is never dialed;
/// an allowed peer on that topic is.
async fn async_firewall_bans<R: Runtime>() {
    let (network, bootstrap) = rust_network::<R>(3).await;
    let mut blocked = Peer::<R>::new(&bootstrap).await;
    let mut allowed = Peer::<R>::new(&bootstrap).await;
    let reject = blocked.swarm.public_key();
    let dht = R::dht(opts(&bootstrap, Persistence::Adaptive))
        .await
        .expect("server node");
    ready::<R>(&dht).await;
    let server = SwarmHandle::start(
        dht.shared(),
        SwarmOptions {
            firewall: Some(Firewall::new_async(move |req| async move {
                R::sleep(Duration::from_millis(50)).await;
                req.remote_public_key == reject
            })),
            ..SwarmOptions::default()
        },
    )
    .expect("swarm");
    let mut accepted = server.connection_stream();
    R::timeout(STEP, server.listen())
        .await
        .expect("listening in time")
        .expect("listening");
    blocked
        .swarm
        .join_peer(server.public_key())
        .expect("join peer");
    let mut waited = Duration::ZERO;
    while !server.peer(&reject).is_some_and(|p| p.banned) {
        assert!(waited < STEP, "the rejected peer was not banned");
        R::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert!(server.connections().is_empty());
    let refused = server.stats().incoming_refused;
    // Both announce a topic; the server looks it up: it dials the allowed peer only.
    let topic = hash(b"async firewall topic");
    let server_only = JoinOptions {
        server: true,
        client: false,
        limit: None,
    };
    let db = blocked.swarm.join(topic, server_only).expect("join");
    let da = allowed.swarm.join(topic, server_only).expect("join");
    for d in [&db, &da] {
        assert!(R::timeout(STEP, d.flushed())
            .await
            .expect("in time")
            .expect("flushed"));
    }
    let ds = server
        .join(
            topic,
            JoinOptions {
                server: false,
                client: true,
                limit: None,
            },
        )
        .expect("join");
    assert!(R::timeout(STEP, ds.flushed())
        .await
        .expect("in time")
        .expect("flushed"));
    assert!(R::timeout(STEP, server.flush()).await.expect("in time"));
    let (conn, info) = R::timeout(STEP, accepted.next())
        .await
        .expect("a connection in time")
        .expect("a connection");
    assert_eq!(info.public_key, allowed.swarm.public_key());
    assert!(conn.is_initiator(), "the server dialed the allowed peer");
    assert_eq!(server.connections(), vec![allowed.swarm.public_key()]);
    blocked.collect().await;
    allowed.collect().await;
    assert!(blocked.conns.is_empty(), "the banned peer never connects");
    assert_eq!(blocked.swarm.stats().server_opened, 0, "never dialed");
    assert!(server.peer(&reject).expect("known").banned);
    // Its later handshakes are refused without asking the firewall again.
    assert!(server.stats().incoming_refused >= refused);
    drop(conn);
    drop((da, db, ds));
    R::timeout(STEP, server.shutdown()).await.expect("shutdown");
    drop(accepted);
    R::destroy(dht).await;
    for p in [blocked, allowed] {
        drop(p.conns);
        drop(p.stream);
        R::destroy(p.dht).await;
    }
    for d in network {
        R::destroy(d).await;
    }
}

#[test]
fn tokio_async_firewall_rejects_and_bans() {
    Tokio::run(async_firewall_bans::<Tokio>());
}

#[test]
fn smol_async_firewall_rejects_and_bans() {
    Smol::run(async_firewall_bans::<Smol>());
}

#[test]
fn tokio_listen_then_join_peer() {
    Tokio::run(listen_then_join_peer::<Tokio>());
}

#[test]
fn smol_listen_then_join_peer() {
    Smol::run(listen_then_join_peer::<Smol>());
}

#[test]
fn tokio_firewall_rejects_one_key() {
    Tokio::run(firewall::<Tokio>());
}

#[test]
fn smol_firewall_rejects_one_key() {
    Smol::run(firewall::<Smol>());
}

#[test]
fn tokio_three_peers_mesh_leave_rejoin_ban() {
    Tokio::run(three_peers::<Tokio>());
}

#[test]
fn smol_three_peers_mesh_leave_rejoin_ban() {
    Smol::run(three_peers::<Smol>());
}

/// The runtime crates' own `Swarm` (a node it owns plus the handle): options, a join and
/// its flush, a join with neither mode refused, destroy.
macro_rules! swarm_type_test {
    ($name:ident, $rt:ty, $swarm:ty) => {
        #[test]
        fn $name() {
            <$rt>::run(async {
                let (network, bootstrap) = rust_network::<$rt>(2).await;
                let a = <$swarm>::new(
                    SwarmOptions {
                        seed: Some([7; 32]),
                        ..SwarmOptions::default()
                    },
                    opts(&bootstrap, Persistence::Adaptive),
                )
                .await
                .expect("swarm");
                assert_eq!(
                    a.public_key(),
                    hdht_core::crypto::KeyPair::from_seed(&[7; 32]).public_key()
                );
                let d = a
                    .join(
                        hash(b"t"),
                        JoinOptions {
                            server: false,
                            client: false,
                            limit: None,
                        },
                    )
                    .expect_err("neither client nor server");
                assert!(matches!(d, hdht_driver::DhtError::Swarm(_)), "{d}");
                // A topic of the wrong length: a clear error, nothing joined.
                for len in [0, 31, 33] {
                    let e = a
                        .join_bytes(&vec![1; len], JoinOptions::default())
                        .expect_err("wrong length");
                    assert!(
                        matches!(
                            e,
                            hdht_driver::DhtError::Swarm(hdht_core::swarm::SwarmError::TopicLength { len: l }) if l == len
                        ),
                        "{e}"
                    );
                    assert!(e.to_string().contains("32 bytes"), "{e}");
                }
                a.join_bytes(&[2; 32], JoinOptions::default())
                    .expect("a 32-byte topic")
                    .destroy();
                let d = a.join(hash(b"t"), JoinOptions::default()).expect("join");
                assert!(<$rt>::timeout(STEP, d.flushed())
                    .await
                    .expect("in time")
                    .expect("flushed"));
                <$rt>::timeout(STEP, a.destroy())
                    .await
                    .expect("destroy in time");
                for n in network {
                    <$rt>::destroy(n).await;
                }
            });
        }
    };
}

swarm_type_test!(
    tokio_swarm_type_joins_and_destroys,
    Tokio,
    hdht_tokio::Swarm
);
swarm_type_test!(smol_swarm_type_joins_and_destroys, Smol, hdht_smol::Swarm);
