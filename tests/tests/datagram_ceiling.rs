//! The datagram ceiling, live against the Node reference (hyperdht 6.34.0 / udx-native 1.21.3):
//!
//! * Node and Rust nodes read a datagram the same way: its first 2,048 bytes (libudx's receive
//!   buffer), so a message ending by byte 2,048 is answered whatever follows it and a longer one
//!   is not.
//! * **Amplification**: the same smallest requests, sent from fresh unknown sockets to a Node
//!   network and to a Rust network whose stores hold the largest values each accepts (and 20
//!   announced peers with 3 relays each, a server record, full routing tables), give Rust replies
//!   no larger than Node's, command by command; every Rust datagram fits 2,048 bytes. The table
//!   is printed (`cargo test -p hdht-tests --test datagram_ceiling -- --nocapture`); README.md
//!   shows it.
//! * A value at the limit round-trips on a mixed Rust/Node network, both ways; one byte more is
//!   refused before sending.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::messages::{
    command, encode_mutable_get_request, mode, Announce, HandshakeEnvelope, HolepunchEnvelope,
    MutablePutRequest, Peer,
};
use hdht_core::dht::value_size::{self, max_mutable_value};
use hdht_core::dht::{sign, OpError, MAX_IMMUTABLE_VALUE, MAX_MUTABLE_VALUE};
use hdht_core::rpc::{encode_addr, Persistence};
use hdht_core::wire::{Message, Request, Response, MAX_CLOSER_NODES, MAX_DATAGRAM_LEN};
use hdht_driver::{DhtError, DhtOptions};
use hdht_tests::runtime::{Runtime, Smol, Tokio};
use hdht_tests::NodePeers;
use serde_json::json;

/// How long a request may take to be answered before it counts as unanswered.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// After a datagram arrived, how long to keep listening for more caused by the same request.
const QUIET: Duration = Duration::from_millis(200);
/// Nodes per network: enough that the measured node's routing table fills 20 closer nodes.
const NETWORK: usize = 25;

fn local(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

fn fresh() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

fn addr_of(s: &UdpSocket) -> SocketAddrV4 {
    match s.local_addr().expect("local address") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => panic!("IPv6 {a}"),
    }
}

/// Sends `bytes` from `from` to `to`; returns every datagram arriving on `from` or `also`
/// until `QUIET` passes without one (waiting up to `ANSWER_WAIT` for the first).
fn exchange(from: &UdpSocket, also: &[&UdpSocket], to: SocketAddrV4, bytes: &[u8]) -> Vec<Vec<u8>> {
    from.send_to(bytes, to).expect("send");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut deadline = Instant::now() + ANSWER_WAIT;
    while Instant::now() < deadline {
        let mut any = false;
        for s in std::iter::once(from).chain(also.iter().copied()) {
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
                any = true;
            }
        }
        if any {
            deadline = Instant::now() + QUIET;
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    got
}

fn response(bytes: &[u8]) -> Option<Response> {
    match Message::decode(bytes) {
        Ok(Message::Response(r)) => Some(r),
        _ => None,
    }
}

/// A request from an ephemeral sender (no id), as the smallest requests are.
fn request(
    to: SocketAddrV4,
    internal: bool,
    command: u64,
    target: Option<[u8; 32]>,
    token: Option<[u8; 32]>,
    value: Option<Vec<u8>>,
) -> Vec<u8> {
    Request {
        tid: 0x4242,
        to,
        id: None,
        token,
        internal,
        command,
        target,
        value,
    }
    .to_bytes()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn kp(tag: &str) -> KeyPair {
    KeyPair::from_seed(&hash(tag.as_bytes()))
}

/// A distinct value of `len` bytes.
fn value(tag: &str, len: usize) -> Vec<u8> {
    let mut v = vec![0x61; len];
    let h = hash(tag.as_bytes());
    let n = len.min(32);
    v[..n].copy_from_slice(&h[..n]);
    v
}

/// An internal PING whose message ends at byte `end`, followed by junk up to `total` bytes.
fn ping_ending_at(to: SocketAddrV4, end: usize, total: usize) -> Vec<u8> {
    let mut bytes = (0..end)
        .rev()
        .map(|len| request(to, true, 0, None, None, Some(vec![0xab; len])))
        .find(|b| b.len() <= end)
        .expect("a short enough ping");
    assert_eq!(bytes.len(), end);
    bytes.resize(total, 0xcd);
    bytes
}

/// Whether a node answers each of the truncation probes (sent at once, each from its own
/// socket, so the unanswered ones wait together).
fn truncation(to: SocketAddrV4) -> [bool; 5] {
    let probes = [
        (2048, 2048),
        (2048, 3000),
        (2048, 65_000),
        (2049, 2049),
        (2049, 3000),
    ];
    std::thread::scope(|scope| {
        probes
            .map(|(end, total)| {
                scope.spawn(move || {
                    !exchange(&fresh(), &[], to, &ping_ending_at(to, end, total)).is_empty()
                })
            })
            .map(|h| h.join().expect("probe thread"))
    })
}

/// What a probe found at one node.
#[derive(Debug, Clone, Default)]
struct Measured {
    request: usize,
    reply: usize,
    largest: usize,
}

/// One measured node (Rust or Node), filled to make replies as large as possible.
struct Target {
    addr: SocketAddrV4,
    id: [u8; 32],
    /// The largest immutable and mutable values it stored (and their keys).
    immutable: (usize, [u8; 32]),
    mutable: (usize, [u8; 32]),
    topic: [u8; 32],
    server_key: [u8; 32],
}

/// A token for our host from `to` (IMMUTABLE_GET replies carry one), with the node's id.
fn token_and_id(to: SocketAddrV4) -> ([u8; 32], [u8; 32]) {
    let s = fresh();
    let req = request(to, false, command::IMMUTABLE_GET, Some([0; 32]), None, None);
    let r = exchange(&s, &[], to, &req)
        .iter()
        .find_map(|b| response(b))
        .expect("IMMUTABLE_GET answered");
    (r.token.expect("a token"), r.id.expect("a persistent node"))
}

/// Waits until `to` names the full 20 closer nodes (its routing table is full enough).
fn wait_for_full_table(to: SocketAddrV4) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let req = request(to, true, 2, Some(hash(b"any target")), None, None);
        let n = exchange(&fresh(), &[], to, &req)
            .iter()
            .find_map(|b| response(b))
            .map_or(0, |r| r.closer_nodes.len());
        if n == MAX_CLOSER_NODES {
            return;
        }
        assert!(
            Instant::now() < until,
            "{to} knows only {n} nodes after 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The largest value a datagram carries from an ephemeral sender, whatever the receiver does
/// with it (1,970 bytes immutable, 1,870 mutable under seq 1).
fn largest_in_a_datagram(frame: impl Fn(usize) -> usize) -> usize {
    (0..MAX_DATAGRAM_LEN)
        .rev()
        .find(|&n| frame(n) <= MAX_DATAGRAM_LEN)
        .expect("some value fits")
}

/// Fills `to`'s stores with the largest values it accepts, 20 announced peers (3 relays each)
/// under one topic and one server record; returns what was stored.
fn fill(to: SocketAddrV4, name: &str) -> Target {
    wait_for_full_table(to);
    let id = token_and_id(to).1;
    // Puts are sent without waiting for their replies (a dropped one would cost the whole
    // answer wait, and tokens rotate every 7.5 s); what was stored is read back. A node
    // handles its datagrams in order, so a put sent first is stored before the read arrives.
    let sender = fresh();
    let send = |req: &[u8]| {
        sender.send_to(req, to).expect("send");
    };
    let token = || token_and_id(to).0;

    // Immutable values: the largest a datagram can carry, one byte more (truncated to 2,048
    // bytes), and our limit and one byte more. Which ones are stored is read back below.
    let in_datagram = largest_in_a_datagram(|n| value_size::immutable_put_frame_len(n, false));
    let sizes = [
        in_datagram + 1,
        in_datagram,
        MAX_IMMUTABLE_VALUE + 1,
        MAX_IMMUTABLE_VALUE,
    ];
    for &n in &sizes {
        let v = value(&format!("immutable {n}"), n);
        // One is a 2,049-byte datagram: the reference's ceiling being measured.
        send(&request(
            to,
            false,
            command::IMMUTABLE_PUT,
            Some(hash(&v)),
            Some(token()),
            Some(v),
        ));
    }
    let stored_immutable = sizes
        .iter()
        .filter_map(|&n| {
            let v = value(&format!("immutable {n}"), n);
            let req = request(
                to,
                false,
                command::IMMUTABLE_GET,
                Some(hash(&v)),
                None,
                None,
            );
            let got = exchange(&fresh(), &[], to, &req)
                .iter()
                .find_map(|b| response(b))
                .and_then(|r| r.value);
            (got == Some(v.clone())).then_some((n, hash(&v)))
        })
        .max()
        .unwrap_or_else(|| panic!("{name} stored no immutable value"));
    println!(
        "{name}: immutable values of {sizes:?} bytes put, largest stored {} bytes",
        stored_immutable.0
    );

    // Mutable values under seq 1, the same way.
    let seq = 1;
    let in_datagram = largest_in_a_datagram(|n| value_size::mutable_put_frame_len(n, seq, false));
    let max_mutable = max_mutable_value(seq);
    let sizes = [in_datagram + 1, in_datagram, max_mutable + 1, max_mutable];
    let mutable_put = |n: usize, token: [u8; 32]| {
        let k = kp(&format!("mutable {n}"));
        let v = value(&format!("mutable {n}"), n);
        let record = MutablePutRequest {
            public_key: k.public_key(),
            seq,
            value: v.clone(),
            signature: sign::sign_mutable(&k, seq, &v),
        }
        .to_bytes();
        let target = sign::target_of_key(&k.public_key());
        (
            target,
            request(
                to,
                false,
                command::MUTABLE_PUT,
                Some(target),
                Some(token),
                Some(record),
            ),
        )
    };
    for &n in &sizes {
        send(&mutable_put(n, token()).1);
    }
    let stored_mutable = sizes
        .iter()
        .filter_map(|&n| {
            let (target, _) = mutable_put(n, [0; 32]);
            let req = request(
                to,
                false,
                command::MUTABLE_GET,
                Some(target),
                None,
                Some(encode_mutable_get_request(0)),
            );
            exchange(&fresh(), &[], to, &req)
                .iter()
                .find_map(|b| response(b))
                .and_then(|r| r.value)
                .map(|_| (n, target))
        })
        .max()
        .unwrap_or_else(|| panic!("{name} stored no mutable value"));
    println!(
        "{name}: mutable values of {sizes:?} bytes put (seq 1), largest stored {} bytes",
        stored_mutable.0
    );

    // 20 peers with 3 relays each under one topic (a lookup returns at most 20), with a bump.
    let topic = hash(b"a crowded topic");
    let relays: Vec<SocketAddrV4> = (1..=3).map(|i| local(40_000 + i)).collect();
    let announce = |topic: [u8; 32], k: &KeyPair, bump: u64| {
        let token = token();
        let peer = Peer {
            public_key: k.public_key(),
            relay_addresses: relays.clone(),
        };
        let signature = sign::sign_announce(k, &topic, &id, &token, &peer, None);
        let value = Announce {
            peer: Some(peer),
            refresh: None,
            signature: Some(signature),
            bump,
        }
        .to_bytes();
        request(
            to,
            false,
            command::ANNOUNCE,
            Some(topic),
            Some(token),
            Some(value),
        )
    };
    for i in 0..20 {
        send(&announce(topic, &kp(&format!("peer {i}")), unix_ms()));
    }
    // A server's self-announce: the router's record, returned by FIND_PEER.
    let server = kp("server");
    let server_key = server.public_key();
    send(&announce(sign::target_of_key(&server_key), &server, 0));
    let lookup = request(to, false, command::LOOKUP, Some(topic), None, None);
    let peers = exchange(&fresh(), &[], to, &lookup)
        .iter()
        .find_map(|b| response(b))
        .and_then(|r| r.value)
        .and_then(|v| hdht_core::dht::messages::LookupReplyValue::decode(&v).ok())
        .map_or(0, |l| l.peers.len());
    assert_eq!(peers, 20, "{name} lists the 20 announced peers");
    Target {
        addr: to,
        id,
        immutable: stored_immutable,
        mutable: stored_mutable,
        topic,
        server_key,
    }
}

/// A probe: the smallest request for one command (and variant), built for a target, and the
/// sockets the node may answer to besides the sender.
struct Probe {
    command: &'static str,
    variant: &'static str,
    build: fn(&Target, &Sockets) -> Vec<u8>,
    /// Needs a token for the sender's host first (obtained in a separate exchange).
    needs_token: bool,
}

/// The sender and a second socket on the same host (replies sent elsewhere: PING_NAT's port,
/// a relay target, a holepunch peer address).
struct Sockets {
    sender: UdpSocket,
    other: UdpSocket,
    token: [u8; 32],
}

fn probes() -> Vec<Probe> {
    fn stranger_token() -> [u8; 32] {
        [0x77; 32]
    }
    vec![
        Probe {
            command: "PING",
            variant: "",
            build: |t, _| request(t.addr, true, 0, None, None, None),
            needs_token: false,
        },
        Probe {
            command: "PING_NAT",
            variant: "reply to another port",
            build: |t, s| {
                let port = addr_of(&s.other).port().to_le_bytes().to_vec();
                request(t.addr, true, 1, None, None, Some(port))
            },
            needs_token: false,
        },
        Probe {
            command: "FIND_NODE",
            variant: "",
            build: |t, _| request(t.addr, true, 2, Some(hash(b"find")), None, None),
            needs_token: false,
        },
        Probe {
            command: "DOWN_HINT",
            variant: "",
            build: |t, s| {
                let about = encode_addr(&addr_of(&s.other)).to_vec();
                request(t.addr, true, 3, None, None, Some(about))
            },
            needs_token: false,
        },
        Probe {
            command: "DELAYED_PING",
            variant: "0 ms",
            build: |t, _| {
                request(
                    t.addr,
                    true,
                    4,
                    None,
                    None,
                    Some(0u32.to_le_bytes().to_vec()),
                )
            },
            needs_token: false,
        },
        Probe {
            command: "unknown internal",
            variant: "UNKNOWN_COMMAND",
            build: |t, _| request(t.addr, true, 9, Some(hash(b"x")), None, None),
            needs_token: false,
        },
        Probe {
            command: "any request",
            variant: "wrong token: INVALID_TOKEN",
            build: |t, _| {
                request(
                    t.addr,
                    false,
                    command::LOOKUP,
                    Some(hash(b"x")),
                    Some(stranger_token()),
                    None,
                )
            },
            needs_token: false,
        },
        Probe {
            command: "PEER_HANDSHAKE",
            variant: "no route: closer nodes",
            build: |t, _| {
                let value = HandshakeEnvelope {
                    mode: mode::FROM_CLIENT,
                    noise: vec![0],
                    peer_address: None,
                    relay_address: None,
                }
                .to_bytes();
                request(
                    t.addr,
                    false,
                    command::PEER_HANDSHAKE,
                    Some(hash(b"nobody")),
                    None,
                    Some(value),
                )
            },
            needs_token: false,
        },
        Probe {
            command: "PEER_HANDSHAKE",
            variant: "relayed to a named address",
            build: |t, s| {
                let value = HandshakeEnvelope {
                    mode: mode::FROM_CLIENT,
                    noise: vec![0],
                    peer_address: None,
                    relay_address: Some(addr_of(&s.other)),
                }
                .to_bytes();
                request(
                    t.addr,
                    false,
                    command::PEER_HANDSHAKE,
                    Some(hash(b"nobody")),
                    None,
                    Some(value),
                )
            },
            needs_token: false,
        },
        Probe {
            command: "PEER_HOLEPUNCH",
            variant: "relayed to a named address",
            build: |t, s| {
                let value = HolepunchEnvelope {
                    mode: mode::FROM_CLIENT,
                    id: 0,
                    payload: vec![0],
                    peer_address: Some(addr_of(&s.other)),
                }
                .to_bytes();
                request(
                    t.addr,
                    false,
                    command::PEER_HOLEPUNCH,
                    Some(hash(b"nobody")),
                    None,
                    Some(value),
                )
            },
            needs_token: false,
        },
        Probe {
            command: "FIND_PEER",
            variant: "a server's record",
            build: |t, _| {
                let target = sign::target_of_key(&t.server_key);
                request(t.addr, false, command::FIND_PEER, Some(target), None, None)
            },
            needs_token: false,
        },
        Probe {
            command: "LOOKUP",
            variant: "20 peers, 3 relays each",
            build: |t, _| request(t.addr, false, command::LOOKUP, Some(t.topic), None, None),
            needs_token: false,
        },
        Probe {
            command: "ANNOUNCE",
            variant: "valid, no relays",
            build: |t, s| {
                let k = kp(&format!("fresh announcer {}", addr_of(&s.sender).port()));
                let topic = hash(b"another topic");
                let peer = Peer {
                    public_key: k.public_key(),
                    relay_addresses: vec![],
                };
                let signature = sign::sign_announce(&k, &topic, &t.id, &s.token, &peer, None);
                let value = Announce {
                    peer: Some(peer),
                    refresh: None,
                    signature: Some(signature),
                    bump: 0,
                }
                .to_bytes();
                request(
                    t.addr,
                    false,
                    command::ANNOUNCE,
                    Some(topic),
                    Some(s.token),
                    Some(value),
                )
            },
            needs_token: true,
        },
        Probe {
            command: "UNANNOUNCE",
            variant: "valid",
            build: |t, s| {
                let k = kp("never announced");
                let topic = hash(b"another topic");
                let peer = Peer {
                    public_key: k.public_key(),
                    relay_addresses: vec![],
                };
                let signature = sign::sign_unannounce(&k, &topic, &t.id, &s.token, &peer, None);
                let value = Announce {
                    peer: Some(peer),
                    refresh: None,
                    signature: Some(signature),
                    bump: 0,
                }
                .to_bytes();
                request(
                    t.addr,
                    false,
                    command::UNANNOUNCE,
                    Some(topic),
                    Some(s.token),
                    Some(value),
                )
            },
            needs_token: true,
        },
        Probe {
            command: "MUTABLE_PUT",
            variant: "valid, empty value",
            build: |t, s| {
                let k = kp(&format!("fresh signer {}", addr_of(&s.sender).port()));
                let record = MutablePutRequest {
                    public_key: k.public_key(),
                    seq: 0,
                    value: vec![],
                    signature: sign::sign_mutable(&k, 0, &[]),
                }
                .to_bytes();
                let target = sign::target_of_key(&k.public_key());
                request(
                    t.addr,
                    false,
                    command::MUTABLE_PUT,
                    Some(target),
                    Some(s.token),
                    Some(record),
                )
            },
            needs_token: true,
        },
        Probe {
            command: "MUTABLE_GET",
            variant: "largest stored value",
            build: |t, _| {
                let seq = Some(encode_mutable_get_request(0));
                request(
                    t.addr,
                    false,
                    command::MUTABLE_GET,
                    Some(t.mutable.1),
                    None,
                    seq,
                )
            },
            needs_token: false,
        },
        Probe {
            command: "IMMUTABLE_PUT",
            variant: "valid, empty value",
            build: |t, s| {
                request(
                    t.addr,
                    false,
                    command::IMMUTABLE_PUT,
                    Some(hash(b"")),
                    Some(s.token),
                    Some(vec![]),
                )
            },
            needs_token: true,
        },
        Probe {
            command: "IMMUTABLE_GET",
            variant: "largest stored value",
            build: |t, _| {
                request(
                    t.addr,
                    false,
                    command::IMMUTABLE_GET,
                    Some(t.immutable.1),
                    None,
                    None,
                )
            },
            needs_token: false,
        },
        Probe {
            command: "unknown command",
            variant: "UNKNOWN_COMMAND",
            build: |t, _| request(t.addr, false, 11, Some(hash(b"x")), None, None),
            needs_token: false,
        },
    ]
}

/// Runs every probe from fresh sockets; the bytes of every datagram the node sent because of it.
fn measure(t: &Target) -> Vec<Measured> {
    probes()
        .iter()
        .map(|p| {
            let sender = fresh();
            let other = fresh();
            let token = if p.needs_token {
                let req = request(
                    t.addr,
                    false,
                    command::IMMUTABLE_GET,
                    Some([1; 32]),
                    None,
                    None,
                );
                exchange(&sender, &[], t.addr, &req)
                    .iter()
                    .find_map(|b| response(b))
                    .and_then(|r| r.token)
                    .expect("a token")
            } else {
                [0; 32]
            };
            let s = Sockets {
                sender,
                other,
                token,
            };
            let req = (p.build)(t, &s);
            let got = exchange(&s.sender, &[&s.other], t.addr, &req);
            Measured {
                request: req.len(),
                reply: got.iter().map(Vec::len).sum(),
                largest: got.iter().map(Vec::len).max().unwrap_or(0),
            }
        })
        .collect()
}

/// A Rust network on tokio: a bootstrapper (the measured node) and persistent nodes.
fn rust_network(rt: &tokio::runtime::Runtime) -> Vec<hdht_tokio::Dht> {
    rt.block_on(async {
        let boot = hdht_tokio::Dht::new(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
            .await
            .expect("bootstrapper");
        let bootstrap = vec![boot.server_address().to_string()];
        let mut nodes = vec![boot];
        for _ in 1..NETWORK {
            let dht = hdht_tokio::Dht::new(DhtOptions {
                bootstrap: bootstrap.clone(),
                host: Ipv4Addr::LOCALHOST,
                persistence: Persistence::Persistent,
                ..DhtOptions::isolated()
            })
            .await
            .expect("node");
            tokio::time::timeout(Duration::from_secs(30), dht.ready())
                .await
                .expect("bootstrap timed out")
                .expect("a bootstrap node answered");
            nodes.push(dht);
        }
        nodes
    })
}

#[test]
fn node_and_rust_read_datagrams_up_to_2048_bytes() {
    let peers = NodePeers::new();
    let net = peers
        .testnet_with(json!({"size": 2, "kind": "hyperdht"}))
        .expect("node testnet");
    let node = local(net.node("n1").port);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rust = rt
        .block_on(hdht_tokio::Dht::new(DhtOptions::bootstrapper(
            0,
            Ipv4Addr::LOCALHOST,
        )))
        .expect("rust node");
    // Ending at 2,048 (alone or followed by junk): answered; ending at 2,049: not.
    let expected = [true, true, true, false, false];
    let rust_addr = rust.server_address();
    let (node_answers, rust_answers) = std::thread::scope(|scope| {
        let n = scope.spawn(|| truncation(node));
        let r = scope.spawn(|| truncation(rust_addr));
        (
            n.join().expect("node probes"),
            r.join().expect("rust probes"),
        )
    });
    assert_eq!(node_answers, expected, "the reference");
    assert_eq!(rust_answers, expected, "hdht");
    rt.block_on(rust.destroy());
}

#[test]
fn amplification_is_at_most_the_references_per_command() {
    let peers = NodePeers::new();
    let net = peers
        .testnet_with(json!({"size": NETWORK, "kind": "hyperdht"}))
        .expect("node testnet");
    let node_target = fill(local(net.node("b").port), "node");
    // The reference's ceiling, measured: it stores what arrives in 2,048 bytes and no more.
    let in_datagram = largest_in_a_datagram(|n| value_size::immutable_put_frame_len(n, false));
    assert_eq!(
        node_target.immutable.0, in_datagram,
        "Node stores 1,970 bytes"
    );
    let node = measure(&node_target);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rust_nodes = rust_network(&rt);
    let rust_target = fill(rust_nodes[0].server_address(), "rust");
    assert_eq!(rust_target.immutable.0, MAX_IMMUTABLE_VALUE);
    assert_eq!(rust_target.mutable.0, MAX_MUTABLE_VALUE);
    let rust = measure(&rust_target);

    println!();
    println!(
        "{:<17} {:<28} {:>7} | {:>6} {:>6} | {:>6} {:>6}",
        "command", "request", "bytes", "rust", "ratio", "node", "ratio"
    );
    let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
    for ((p, r), n) in probes().iter().zip(&rust).zip(&node) {
        assert_eq!(r.request, n.request, "{}: the same request", p.command);
        let ratio = |m: &Measured| m.reply as f64 / m.request as f64;
        println!(
            "{:<17} {:<28} {:>7} | {:>6} {:>5.1}× | {:>6} {:>5.1}×",
            p.command,
            p.variant,
            r.request,
            r.reply,
            ratio(r),
            n.reply,
            ratio(n)
        );
        assert!(
            r.reply > 0 && n.reply > 0,
            "{} ({}): every probe is answered by both",
            p.command,
            p.variant
        );
        assert!(
            r.largest <= MAX_DATAGRAM_LEN,
            "{}: a {}-byte datagram",
            p.command,
            r.largest
        );
        assert!(
            r.reply <= n.reply,
            "{} ({}): rust replied {} bytes, node {}",
            p.command,
            p.variant,
            r.reply,
            n.reply
        );
        let w = worst.entry("rust").or_default();
        *w = w.max(ratio(r));
        let w = worst.entry("node").or_default();
        *w = w.max(ratio(n));
    }
    println!(
        "worst ratio: rust {:.1}×, node {:.1}×",
        worst["rust"], worst["node"]
    );
    assert!(worst["rust"] <= worst["node"]);
    rt.block_on(async {
        for d in rust_nodes {
            d.destroy().await;
        }
    });
}

/// A Node hyperdht testnet (bootstrapper + 5) joined by 3 persistent Rust nodes.
async fn mixed<R: Runtime>(peers: &NodePeers) -> Vec<R::Dht> {
    let net = R::blocking(|| peers.testnet_with(json!({"size": 6, "kind": "hyperdht"})))
        .expect("node testnet");
    let mut rust = Vec::new();
    for _ in 0..3 {
        let opts = DhtOptions {
            bootstrap: net.bootstrap.clone(),
            host: Ipv4Addr::LOCALHOST,
            persistence: Persistence::Persistent,
            ..DhtOptions::isolated()
        };
        let dht = R::dht(opts).await.expect("rust node");
        R::timeout(Duration::from_secs(30), dht.ready())
            .await
            .expect("bootstrap timed out")
            .expect("a bootstrap node answered");
        rust.push(dht);
    }
    rust
}

async fn values_at_the_limit_round_trip_on_a_mixed_network<R: Runtime>() {
    const STEP: Duration = Duration::from_secs(30);
    let peers = NodePeers::new();
    let rust = mixed::<R>(&peers).await;

    // One byte more: refused before anything is sent.
    let over = value("over", MAX_IMMUTABLE_VALUE + 1);
    match R::timeout(STEP, rust[0].immutable_put(&over)).await {
        Some(Err(DhtError::Op(OpError::ValueTooLarge(e)))) => {
            assert_eq!(e.max, MAX_IMMUTABLE_VALUE)
        }
        other => panic!("an oversize immutable put: {other:?}"),
    }
    let signer = kp("limit signer");
    let seq = 5;
    let max = max_mutable_value(seq);
    match R::timeout(
        STEP,
        rust[0].mutable_put(&signer, &value("over", max + 1), seq),
    )
    .await
    {
        Some(Err(DhtError::Op(OpError::ValueTooLarge(e)))) => assert_eq!(e.max, max),
        other => panic!("an oversize mutable put: {other:?}"),
    }

    // Rust puts the largest immutable value; a Node client reads it back.
    let v = value("rust immutable", MAX_IMMUTABLE_VALUE);
    let put = R::timeout(STEP, rust[0].immutable_put(&v))
        .await
        .expect("put timed out")
        .expect("rust immutable_put");
    let got = R::blocking(|| {
        peers.call(json!({"op": "immutableGet", "name": "n3", "hash": hex::encode(put.hash)}))
    })
    .expect("node get");
    assert_eq!(got["value"].as_str(), Some(hex::encode(&v).as_str()));

    // A Node client puts the largest value; Rust reads it back.
    let v = value("node immutable", MAX_IMMUTABLE_VALUE);
    R::blocking(|| {
        peers.call(json!({"op": "immutablePut", "name": "n4", "value": hex::encode(&v)}))
    })
    .expect("node put");
    let got = R::timeout(STEP, rust[1].immutable_get(hash(&v)))
        .await
        .expect("get timed out")
        .expect("rust immutable_get");
    assert_eq!(got.map(|g| g.value), Some(v));

    // Mutable, both ways.
    let v = value("rust mutable", max);
    R::timeout(STEP, rust[0].mutable_put(&signer, &v, seq))
        .await
        .expect("put timed out")
        .expect("rust mutable_put");
    let got = R::blocking(|| {
        peers.call(json!({"op": "mutableGet", "name": "n2", "publicKey": hex::encode(signer.public_key())}))
    })
    .expect("node get");
    assert_eq!(got["value"].as_str(), Some(hex::encode(&v).as_str()));
    assert_eq!(got["seq"].as_u64(), Some(seq));

    let node_seed = hash(b"node limit signer");
    let node_signer = KeyPair::from_seed(&node_seed);
    let v = value("node mutable", max);
    R::blocking(|| {
        peers.call(
            json!({"op": "mutablePut", "name": "n5", "seed": hex::encode(node_seed),
            "value": hex::encode(&v), "seq": seq}),
        )
    })
    .expect("node put");
    let got = R::timeout(STEP, rust[2].mutable_get(node_signer.public_key(), 0, true))
        .await
        .expect("get timed out")
        .expect("rust mutable_get")
        .expect("found");
    assert_eq!((got.seq, got.value), (seq, v));

    for d in rust {
        R::destroy(d).await;
    }
}

#[test]
fn tokio_values_at_the_limit_round_trip_on_a_mixed_network() {
    Tokio::run(values_at_the_limit_round_trip_on_a_mixed_network::<Tokio>());
}

#[test]
fn smol_values_at_the_limit_round_trip_on_a_mixed_network() {
    Smol::run(values_at_the_limit_round_trip_on_a_mixed_network::<Smol>());
}
