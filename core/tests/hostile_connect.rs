//! Hostile PEER_HANDSHAKE / PEER_HOLEPUNCH traffic against a server: garbage, truncated,
//! tampered and replayed messages are rejected (no reply, no state), a replayed valid first
//! message gets the identical reply and one handshake, and a flood of valid handshakes from
//! many keys costs bounded state that drains once the prepunch window passes. The server is
//! one node on the in-memory network of `node_common`; relays and clients are played by hand.

mod node_common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdht_core::connect::{Firewall, Handshake, NoisePayload, SecretStreamInfo, UdxInfo};
use hdht_core::crypto::KeyPair;
use hdht_core::dht::messages::{command, mode, HandshakeEnvelope, HolepunchEnvelope};
use hdht_core::dht::{
    sign, ConnectEvent, DhtConfig, DhtEvent, DhtNode, ServerOptions, MAX_POOL_SOCKETS,
    MAX_SERVER_HANDSHAKES,
};
use hdht_core::rpc::{RpcConfig, SocketKind};
use hdht_core::wire::{Message, Request};
use node_common::{HostId, Network, SERVER_PORT};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// The server's node: the network's first host.
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(20, 0, 0, 1), SERVER_PORT);
const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 49737);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(20, 0, 0, 2), 5000);

struct Fixture {
    net: Network,
    h: HostId,
    tid: u16,
    server_key: KeyPair,
    target: [u8; 32],
    rng: ChaCha8Rng,
    /// Clients that say they are OPEN: the server connects to them at once (an `Incoming`).
    open_clients: bool,
}

/// What the server sent in answer to one datagram.
#[derive(Debug, Default)]
struct Out {
    datagrams: Vec<Vec<u8>>,
    /// Where each datagram went.
    to: Vec<SocketAddrV4>,
}

impl Fixture {
    /// A firewalled server with no DHT around it: it answers handshakes through relays and
    /// sets up a puncher for each (the expensive path a flood would aim at).
    fn new() -> Self {
        Self::with(|_| {})
    }

    /// The same server with `tweak` applied to its configuration.
    fn with(tweak: impl FnOnce(&mut DhtConfig)) -> Self {
        let mut cfg = DhtConfig {
            rpc: RpcConfig {
                firewalled: true,
                ..RpcConfig::default()
            },
            // The caps under test here are the handshake and socket caps: no buffer budget
            // (each accepted handshake's waiting stream reserves buffers; `budgets.rs` tests
            // that budget).
            connection_budget: Some(usize::MAX),
            ..DhtConfig::default()
        };
        tweak(&mut cfg);
        let mut net = Network::new(7);
        assert_eq!(net.next_server_addr(), SERVER);
        let h = net.add_node(cfg);
        net.advance(Duration::from_millis(1));
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        let server_key = KeyPair::generate(&mut rng);
        net.with(h, |node, now| {
            let server = node.create_server(ServerOptions::default());
            node.listen(now, server, Some(server_key.clone()))
                .expect("listen");
        });
        let target = sign::target_of_key(&server_key.public_key());
        let mut f = Fixture {
            net,
            h,
            tid: 0,
            server_key,
            target,
            rng,
            open_clients: false,
        };
        f.flush();
        f
    }

    fn node(&self) -> &DhtNode<ChaCha8Rng> {
        self.net.node(self.h)
    }

    /// What the server sent since the last flush (it has no peers in the network: all of it).
    fn flush(&mut self) -> Out {
        let mut out = Out::default();
        for t in self.net.take_outbox() {
            out.datagrams.push(t.bytes);
            out.to.push(t.to);
        }
        for ev in self.net.take_events(self.h) {
            assert!(
                self.open_clients
                    || !matches!(ev, DhtEvent::Connect(ConnectEvent::Incoming { .. })),
                "no connection may open without a client: {ev:?}"
            );
        }
        out
    }

    fn request(&mut self, command: u64, value: Vec<u8>) -> Out {
        self.request_from(RELAY, command, value)
    }

    fn request_from(&mut self, from: SocketAddrV4, command: u64, value: Vec<u8>) -> Out {
        self.tid = self.tid.wrapping_add(1);
        let req = Request {
            tid: self.tid,
            to: SERVER,
            id: None,
            token: None,
            internal: false,
            command,
            target: Some(self.target),
            value: Some(value),
        };
        self.net.advance(Duration::from_micros(100));
        self.net
            .inject(self.h, SocketKind::Server, from, &req.to_bytes());
        self.flush()
    }

    fn handshake(&mut self, noise: Vec<u8>) -> Out {
        let env = HandshakeEnvelope {
            mode: mode::FROM_RELAY,
            noise,
            peer_address: Some(CLIENT),
            relay_address: None,
        };
        self.request(command::PEER_HANDSHAKE, env.to_bytes())
    }

    fn holepunch(&mut self, id: u64, payload: Vec<u8>) -> Out {
        let env = HolepunchEnvelope {
            mode: mode::FROM_RELAY,
            id,
            payload,
            peer_address: Some(CLIENT),
        };
        self.request(command::PEER_HOLEPUNCH, env.to_bytes())
    }

    /// A valid first handshake message from a fresh client key.
    fn msg1(&mut self) -> Vec<u8> {
        self.msg1_with_firewall(Firewall::UNKNOWN)
    }

    /// The same from a client that says its firewall is `firewall` (an OPEN one the server
    /// connects to at once: no punch).
    fn msg1_with_firewall(&mut self, firewall: u64) -> Vec<u8> {
        let client = KeyPair::generate(&mut self.rng);
        let mut hs = Handshake::initiator(&client, &self.server_key.public_key(), &mut self.rng)
            .expect("initiator");
        let payload = NoisePayload {
            udx: Some(UdxInfo::new(self.rng.next_u32() | 1, false)),
            secret_stream: Some(SecretStreamInfo::default()),
            firewall,
            addresses4: vec![CLIENT],
            ..NoisePayload::default()
        };
        hs.send(&payload).expect("msg1")
    }

    fn advance(&mut self, d: Duration) {
        self.net.advance(d);
        self.flush();
    }
}

/// The relayed reply's handshake envelope (the server answers FROM_SERVER to the relay).
fn reply_envelope(out: &Out) -> Option<HandshakeEnvelope> {
    out.datagrams.iter().find_map(|d| match Message::decode(d) {
        Ok(Message::Request(r)) if r.command == command::PEER_HANDSHAKE => {
            HandshakeEnvelope::decode(r.value.as_deref()?).ok()
        }
        _ => None,
    })
}

#[test]
fn garbage_and_truncated_messages_leave_no_state_and_get_no_reply() {
    let mut f = Fixture::new();
    let base = f.node().connect_stats();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for i in 0..5_000 {
        let mut noise = vec![0u8; (rng.next_u32() % 200) as usize];
        rng.fill_bytes(&mut noise);
        let out = f.handshake(noise);
        assert!(
            reply_envelope(&out).is_none(),
            "garbage handshake {i} answered"
        );
        // Random bytes as the whole envelope, and truncated envelopes.
        let mut value = vec![0u8; (rng.next_u32() % 120) as usize];
        rng.fill_bytes(&mut value);
        let out = f.request(command::PEER_HANDSHAKE, value.clone());
        assert!(reply_envelope(&out).is_none());
        let len = value.len();
        let out = f.request(command::PEER_HOLEPUNCH, value);
        // Whatever decodes as a FROM_CLIENT/FROM_SERVER envelope is relayed as the reference's
        // stateless router does: one datagram, no amplification.
        assert!(out.datagrams.len() <= 1, "garbage holepunch multiplied");
        assert!(
            out.datagrams.iter().all(|d| d.len() <= len + 64),
            "garbage holepunch amplified"
        );
    }
    let msg1 = f.msg1();
    let env = HandshakeEnvelope {
        mode: mode::FROM_RELAY,
        noise: msg1,
        peer_address: Some(CLIENT),
        relay_address: None,
    }
    .to_bytes();
    for cut in 0..env.len() {
        let out = f.request(command::PEER_HANDSHAKE, env[..cut].to_vec());
        assert!(
            reply_envelope(&out).is_none(),
            "a handshake truncated to {cut} bytes was answered"
        );
    }
    assert_eq!(
        f.node().connect_stats(),
        base,
        "rejected input must not leave state"
    );
}

#[test]
fn tampered_first_messages_are_rejected() {
    let mut f = Fixture::new();
    let base = f.node().connect_stats();
    let msg1 = f.msg1();
    for i in 0..msg1.len() {
        let mut bad = msg1.clone();
        bad[i] ^= 0x40;
        let out = f.handshake(bad);
        assert!(
            reply_envelope(&out).is_none(),
            "byte {i} tampered and still answered"
        );
    }
    assert_eq!(f.node().connect_stats(), base);
}

#[test]
fn a_replayed_first_message_gets_the_identical_reply_and_one_handshake() {
    let mut f = Fixture::new();
    let msg1 = f.msg1();
    let first = reply_envelope(&f.handshake(msg1.clone())).expect("a valid handshake is answered");
    assert_eq!(first.mode, mode::FROM_SERVER);
    let stats = f.node().connect_stats();
    assert_eq!(stats.handshakes, 1);
    assert_eq!(stats.connections, 1, "one pending server connection");
    for _ in 0..1_000 {
        let again = reply_envelope(&f.handshake(msg1.clone())).expect("duplicates are answered");
        assert_eq!(again, first, "a duplicate gets the identical reply");
    }
    assert_eq!(f.node().connect_stats(), stats, "replays add no state");
}

/// The server's handshake answer (request or response) in `out`: where it went, its tid, its
/// envelope.
fn handshake_answer(out: &Out) -> Option<(SocketAddrV4, u16, HandshakeEnvelope)> {
    out.datagrams.iter().zip(&out.to).find_map(|(d, to)| {
        let (tid, value) = match Message::decode(d).ok()? {
            Message::Request(r) if r.command == command::PEER_HANDSHAKE => (r.tid, r.value?),
            Message::Response(r) => (r.tid, r.value?),
            _ => return None,
        };
        Some((*to, tid, HandshakeEnvelope::decode(&value).ok()?))
    })
}

/// A client sends its msg1 through two relays at once (hyperdht's `findAndConnect` runs two
/// attempts), and may also reach the server directly: every copy is answered with the same
/// msg2 the way it came — to its own relay with the client's address as that relay saw it,
/// or straight back to the client — as the reference's router does with the reply
/// `_onpeerhandshake` returns for a known handshake. The server used to send every duplicate
/// to the first relay with the first relay's envelope, which the client rejects (the reply
/// must come from the relay it asked): a lost first reply then failed the connect (simulator,
/// consistent clients -> cgnat server, seed 4, 5% loss: PEER_CONNECTION_FAILED).
#[test]
fn a_first_message_arriving_through_another_relay_is_answered_through_that_relay() {
    const RELAY_B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 10), 49737);
    const CLIENT_VIA_B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(20, 0, 0, 2), 6000);
    let mut f = Fixture::new();
    let msg1 = f.msg1();
    let (to, tid, first) =
        handshake_answer(&f.handshake(msg1.clone())).expect("a valid handshake is answered");
    assert_eq!(
        (to, tid, first.mode, first.peer_address),
        (RELAY, f.tid, mode::FROM_SERVER, Some(CLIENT))
    );
    let stats = f.node().connect_stats();

    let env = HandshakeEnvelope {
        mode: mode::FROM_RELAY,
        noise: msg1.clone(),
        peer_address: Some(CLIENT_VIA_B),
        relay_address: None,
    };
    let out = f.request_from(RELAY_B, command::PEER_HANDSHAKE, env.to_bytes());
    let (to, tid, again) =
        handshake_answer(&out).expect("the copy through the second relay is answered");
    assert_eq!(
        (to, tid),
        (RELAY_B, f.tid),
        "answered through the relay it came from"
    );
    assert_eq!(
        again,
        HandshakeEnvelope {
            mode: mode::FROM_SERVER,
            noise: first.noise.clone(),
            peer_address: Some(CLIENT_VIA_B),
            relay_address: None
        }
    );

    let env = HandshakeEnvelope {
        mode: mode::FROM_CLIENT,
        noise: msg1,
        peer_address: None,
        relay_address: None,
    };
    let out = f.request_from(CLIENT, command::PEER_HANDSHAKE, env.to_bytes());
    let (to, tid, direct) = handshake_answer(&out).expect("a direct copy is answered");
    assert_eq!((to, tid), (CLIENT, f.tid), "answered straight back");
    assert_eq!(
        direct,
        HandshakeEnvelope {
            mode: mode::REPLY,
            noise: first.noise,
            peer_address: None,
            relay_address: None
        }
    );
    assert_eq!(f.node().connect_stats(), stats, "copies add no state");
}

#[test]
fn forged_holepunch_messages_are_ignored() {
    let mut f = Fixture::new();
    let msg1 = f.msg1();
    assert!(reply_envelope(&f.handshake(msg1)).is_some());
    let stats = f.node().connect_stats();
    assert_eq!(
        stats.server_punches, 1,
        "a firewalled server punches for a relayed client"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..3_000u64 {
        // The right id (0) and others, with payloads that cannot decrypt.
        let mut payload = vec![0u8; (rng.next_u32() % 160) as usize];
        rng.fill_bytes(&mut payload);
        let out = f.holepunch(i % 3, payload);
        assert!(
            out.datagrams.is_empty(),
            "a forged holepunch ({i}) was answered"
        );
    }
    let after = f.node().connect_stats();
    assert_eq!(
        (after.handshakes, after.server_punches, after.connections),
        (stats.handshakes, stats.server_punches, stats.connections)
    );
    assert!(
        after.punch_requests <= stats.punch_requests,
        "forgeries start no requests"
    );
}

/// Also the named regression for a field failure of the reference (issue 17, item 5): an
/// unbounded holepunch map under many punch requests. hyperdht's server keeps a holepunch
/// entry per handshake it answered until the punch ends; here every valid handshake is
/// followed by PEER_HOLEPUNCH requests for its id and a random one, and the server's punches
/// stay within [`MAX_SERVER_HANDSHAKES`] and drain once nobody punches.
#[test]
fn a_flood_of_valid_handshakes_costs_bounded_state_that_drains_regression_unbounded_holepunch_map()
{
    let mut f = Fixture::new();
    let total = MAX_SERVER_HANDSHAKES + 500;
    let mut answered = 0;
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for i in 0..total {
        let m = f.msg1();
        if reply_envelope(&f.handshake(m)).is_some() {
            answered += 1;
        }
        for id in [i as u64, rng.next_u64() % (total as u64 * 2)] {
            let mut payload = vec![0u8; 64 + (rng.next_u32() % 64) as usize];
            rng.fill_bytes(&mut payload);
            f.holepunch(id, payload);
        }
        let s = f.node().connect_stats();
        assert!(s.server_punches <= MAX_SERVER_HANDSHAKES, "{s:?}");
        assert!(s.handshakes <= MAX_SERVER_HANDSHAKES, "{s:?}");
        assert!(s.pool_sockets <= MAX_POOL_SOCKETS, "{s:?}");
        assert!(s.connections <= MAX_SERVER_HANDSHAKES, "{s:?}");
    }
    assert_eq!(
        answered, MAX_SERVER_HANDSHAKES,
        "beyond the cap new handshakes are dropped"
    );
    let s = f.node().connect_stats();
    assert_eq!(
        s.pool_sockets, MAX_POOL_SOCKETS,
        "punchers stop at the socket cap: {s:?}"
    );
    // Nobody punches: the prepunch window (10 s) and the clear wait (10 s) free everything.
    f.advance(Duration::from_secs(25));
    let s = f.node().connect_stats();
    assert_eq!(
        (
            s.handshakes,
            s.server_punches,
            s.connections,
            s.pool_sockets
        ),
        (0, 0, 0, 0),
        "{s:?}"
    );
    // And the server answers again.
    let m = f.msg1();
    assert!(reply_envelope(&f.handshake(m)).is_some());
}

/// A server at its handshake cap that keeps accepting: the cap counts answered handshakes (kept
/// 10 s to answer duplicates), so at a steady rate above cap / 10 s it used to drop new clients.
/// Now an answered handshake at least 5 s old is forgotten to make room; a younger one is not
/// (its duplicates still get the identical reply), and the table never outgrows the cap.
#[test]
fn a_server_at_its_handshake_cap_forgets_old_answered_handshakes_for_new_clients() {
    const CAP: usize = 32;
    let mut f = Fixture::with(|cfg| {
        cfg.rpc.firewalled = false;
        cfg.max_server_handshakes = Some(CAP);
    });
    f.open_clients = true;
    let first: Vec<Vec<u8>> = (0..CAP)
        .map(|_| f.msg1_with_firewall(Firewall::OPEN))
        .collect();
    let replies: Vec<HandshakeEnvelope> = first
        .iter()
        .map(|m| reply_envelope(&f.handshake(m.clone())).expect("answered below the cap"))
        .collect();
    let stats = f.node().connect_stats();
    assert_eq!(
        (stats.handshakes, stats.server_punches),
        (CAP, 0),
        "{stats:?}"
    );

    // At the cap, within the 5 s: a new client is dropped, a duplicate answered identically.
    f.advance(Duration::from_secs(4));
    let late = f.msg1_with_firewall(Firewall::OPEN);
    assert!(reply_envelope(&f.handshake(late.clone())).is_none());
    let again = reply_envelope(&f.handshake(first[0].clone())).expect("a duplicate");
    assert_eq!(
        again.noise, replies[0].noise,
        "the same msg2 for a duplicate"
    );

    // Past 5 s: each new client takes the place of the oldest answered handshake.
    f.advance(Duration::from_secs(2));
    for i in 0..CAP / 2 {
        let m = f.msg1_with_firewall(Firewall::OPEN);
        assert!(
            reply_envelope(&f.handshake(m)).is_some(),
            "new client {i} answered at the cap"
        );
        assert!(f.node().connect_stats().handshakes <= CAP);
    }
    assert!(
        reply_envelope(&f.handshake(late)).is_some(),
        "the dropped client's retry"
    );
    // The oldest went first: the first client's duplicate is a new handshake now (another
    // msg2), the last first-round client's still gets its own.
    let last = CAP - 1;
    let kept = reply_envelope(&f.handshake(first[last].clone())).expect("kept");
    assert_eq!(kept.noise, replies[last].noise);
    let anew = reply_envelope(&f.handshake(first[0].clone())).expect("answered anew");
    assert_ne!(
        anew.noise, replies[0].noise,
        "forgotten: a new handshake, a new msg2"
    );
    assert_eq!(f.node().connect_stats().handshakes, CAP);

    // Nobody connects: everything drains as before.
    f.advance(Duration::from_secs(25));
    assert_eq!(f.node().connect_stats().handshakes, 0);
}
