//! hyperdht's server side, request by request, against the reference's accept/reject rules
//! (the hyperdht records spec §4 and the checks of `tests/vectors/hyperdht-records-scenario.json`):
//! which requests are dropped, which get which reply form, and what ends up stored. One node on
//! the in-memory network of `node_common`; the clients are played by hand from outside it.

mod node_common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::messages::{
    command, Announce, LookupReplyValue, MutableGetResponse, MutablePutRequest, Peer,
};
use hdht_core::dht::{sign, DhtConfig, DhtEvent, DhtNode};
use hdht_core::rpc::{NodeId, RpcConfig, RpcEvent, SocketKind};
use hdht_core::wire::{Message, Request, Response};
use node_common::{HostId, Network, SERVER_PORT};
use rand_chacha::ChaCha8Rng;

/// The node under test: the network's first host.
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(20, 0, 0, 1), SERVER_PORT);
/// A client outside the network.
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000);

struct Server {
    net: Network,
    h: HostId,
    tid: u16,
}

impl Server {
    /// A bootstrapper: persistent with storage as soon as its first bootstrap round ends.
    fn new() -> Self {
        Self::with(DhtConfig {
            rpc: RpcConfig::bootstrapper(SERVER),
            ..DhtConfig::default()
        })
    }

    fn with(cfg: DhtConfig) -> Self {
        let mut net = Network::new(1);
        assert_eq!(net.next_server_addr(), SERVER);
        let h = net.add_node(cfg);
        let mut s = Server { net, h, tid: 0 };
        s.net.advance(Duration::from_millis(1));
        s.drain();
        s
    }

    fn node(&self) -> &DhtNode<ChaCha8Rng> {
        self.net.node(self.h)
    }

    /// Feeds a datagram from `from`, now.
    fn receive(&mut self, from: SocketAddrV4, bytes: &[u8]) {
        self.net.inject(self.h, SocketKind::Server, from, bytes);
    }

    /// The responses the node sent (to anyone) since the last drain.
    fn drain(&mut self) -> Vec<Response> {
        let mut out = Vec::new();
        for t in self.net.take_outbox() {
            if let Ok(Message::Response(r)) = Message::decode(&t.bytes) {
                out.push(r);
            }
        }
        for ev in self.net.take_events(self.h) {
            assert!(
                !matches!(ev, DhtEvent::Rpc(RpcEvent::Request(_))),
                "hyperdht handles every command itself"
            );
        }
        out
    }

    /// Sends one request; returns the reply, or `None` if the server stayed silent.
    fn send(
        &mut self,
        command: u64,
        target: Option<[u8; 32]>,
        token: Option<[u8; 32]>,
        value: Option<Vec<u8>>,
    ) -> Option<Response> {
        self.tid += 1;
        let req = Request {
            tid: self.tid,
            to: SERVER,
            id: None,
            token,
            internal: false,
            command,
            target,
            value,
        };
        self.net.advance(Duration::from_millis(10));
        self.receive(CLIENT, &req.to_bytes());
        let mut replies = self.drain();
        assert!(replies.len() <= 1);
        replies.pop().inspect(|r| assert_eq!(r.tid, self.tid))
    }

    fn token(&mut self) -> [u8; 32] {
        self.send(command::LOOKUP, Some([0; 32]), None, None)
            .and_then(|r| r.token)
            .expect("a LOOKUP reply carries a token")
    }

    fn id(&self) -> [u8; 32] {
        NodeId::from_addr(&SERVER).0
    }

    fn announce(
        &mut self,
        topic: [u8; 32],
        kp: &KeyPair,
        relays: Vec<SocketAddrV4>,
        bump: u64,
    ) -> Option<Response> {
        let token = self.token();
        let peer = Peer {
            public_key: kp.public_key(),
            relay_addresses: relays,
        };
        let signature = sign::sign_announce(kp, &topic, &self.id(), &token, &peer, None);
        let value = Announce {
            peer: Some(peer),
            refresh: None,
            signature: Some(signature),
            bump,
        }
        .to_bytes();
        self.send(command::ANNOUNCE, Some(topic), Some(token), Some(value))
    }

    fn lookup(&mut self, topic: [u8; 32]) -> Option<LookupReplyValue> {
        let r = self
            .send(command::LOOKUP, Some(topic), None, None)
            .expect("LOOKUP is answered");
        r.value
            .map(|v| LookupReplyValue::decode(&v).expect("valid lookup reply"))
    }
}

fn kp(tag: &str) -> KeyPair {
    KeyPair::from_seed(&hash(tag.as_bytes()))
}

fn relay(i: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i as u8), 1000 + i)
}

#[test]
fn a_bootstrapper_is_persistent_with_storage() {
    let s = Server::new();
    assert!(s.node().has_storage());
    assert_eq!(s.node().rpc().id(), Some(NodeId::from_addr(&SERVER)));
}

#[test]
fn lookup_forms() {
    let mut s = Server::new();
    assert!(
        s.send(command::LOOKUP, None, None, None).is_none(),
        "LOOKUP without target is dropped"
    );
    let r = s.send(command::LOOKUP, Some([1; 32]), None, None).unwrap();
    assert_eq!(
        (r.error, r.value.is_none(), r.token.is_some()),
        (0, true, true),
        "empty topic: REPLY(null) with a token"
    );
}

#[test]
fn unknown_commands_and_ephemeral_nodes_answer_unknown_command() {
    let mut s = Server::new();
    assert_eq!(s.send(42, Some([1; 32]), None, None).unwrap().error, 1);
    let mut eph = Server::with(DhtConfig::default());
    assert!(!eph.node().has_storage());
    let r = eph
        .send(command::LOOKUP, Some([1; 32]), None, None)
        .unwrap();
    assert_eq!(
        (r.error, r.token),
        (1, None),
        "LOOKUP to an ephemeral node: UNKNOWN_COMMAND"
    );
}

#[test]
fn announce_accept_and_reject() {
    let mut s = Server::new();
    let topic = hash(b"topic");
    let k = kp("a");
    // Without a token: dropped. With a wrong token: INVALID_TOKEN with a fresh token.
    let peer = Peer {
        public_key: k.public_key(),
        relay_addresses: vec![],
    };
    let sig = sign::sign_announce(&k, &topic, &s.id(), &[9; 32], &peer, None);
    let value = Announce {
        peer: Some(peer.clone()),
        refresh: None,
        signature: Some(sig),
        bump: 0,
    }
    .to_bytes();
    assert!(s
        .send(command::ANNOUNCE, Some(topic), None, Some(value.clone()))
        .is_none());
    let r = s
        .send(command::ANNOUNCE, Some(topic), Some([9; 32]), Some(value))
        .unwrap();
    assert_eq!((r.error, r.token.is_some()), (2, true));

    // Valid: REPLY_BARE (no value, token or closer nodes); relays truncated to 3.
    let r = s
        .announce(topic, &k, (1..=5).map(relay).collect(), 0)
        .unwrap();
    assert_eq!(
        (r.error, r.value.clone(), r.token, r.closer_nodes.len()),
        (0, None, None, 0)
    );
    let l = s.lookup(topic).unwrap();
    assert_eq!(
        l.peers,
        vec![Peer {
            public_key: k.public_key(),
            relay_addresses: (1..=3).map(relay).collect()
        }]
    );
    assert_eq!(l.bump, 0);

    // A re-announce with other relays does not replace the fresh record.
    s.announce(topic, &k, vec![relay(9)], 0).unwrap();
    assert_eq!(
        s.lookup(topic).unwrap().peers[0].relay_addresses,
        (1..=3).map(relay).collect::<Vec<_>>()
    );

    // Signed for another node id: dropped.
    let other = kp("b");
    let token = s.token();
    let peer = Peer {
        public_key: other.public_key(),
        relay_addresses: vec![],
    };
    let sig = sign::sign_announce(&other, &topic, &[7; 32], &token, &peer, None);
    let value = Announce {
        peer: Some(peer),
        refresh: None,
        signature: Some(sig),
        bump: 0,
    }
    .to_bytes();
    assert!(s
        .send(command::ANNOUNCE, Some(topic), Some(token), Some(value))
        .is_none());
    // Tampered signature: dropped.
    let token = s.token();
    let peer = Peer {
        public_key: other.public_key(),
        relay_addresses: vec![],
    };
    let mut sig = sign::sign_announce(&other, &topic, &s.id(), &token, &peer, None);
    sig[5] ^= 1;
    let value = Announce {
        peer: Some(peer),
        refresh: None,
        signature: Some(sig),
        bump: 0,
    }
    .to_bytes();
    assert!(s
        .send(command::ANNOUNCE, Some(topic), Some(token), Some(value))
        .is_none());
    assert_eq!(
        s.lookup(topic).unwrap().peers.len(),
        1,
        "nothing invalid was stored"
    );
}

#[test]
fn bumps_only_increase_and_may_not_lie_far_in_the_future() {
    let mut s = Server::new();
    let topic = hash(b"bumped");
    let now_ms = 1_700_000_000_000;
    s.announce(topic, &kp("a"), vec![], now_ms).unwrap();
    assert_eq!(s.lookup(topic).unwrap().bump, now_ms);
    s.announce(topic, &kp("b"), vec![], now_ms + 120_000)
        .unwrap();
    assert_eq!(
        s.lookup(topic).unwrap().bump,
        now_ms,
        "more than 60 s ahead is ignored"
    );
    s.announce(topic, &kp("c"), vec![], now_ms - 1).unwrap();
    assert_eq!(s.lookup(topic).unwrap().bump, now_ms, "lower is ignored");
    assert_eq!(s.lookup(topic).unwrap().peers.len(), 3);
}

#[test]
fn unannounce_rules() {
    let mut s = Server::new();
    let topic = hash(b"t");
    let (a, b) = (kp("a"), kp("b"));
    s.announce(topic, &a, vec![], 0).unwrap();
    s.announce(topic, &b, vec![], 0).unwrap();
    let unann = |s: &mut Server, k: &KeyPair, tamper: bool| {
        let token = s.token();
        let peer = Peer {
            public_key: k.public_key(),
            relay_addresses: vec![],
        };
        let mut sig = sign::sign_unannounce(k, &topic, &s.id(), &token, &peer, None);
        if tamper {
            sig[0] ^= 1;
        }
        let value = Announce {
            peer: Some(peer),
            refresh: None,
            signature: Some(sig),
            bump: 0,
        }
        .to_bytes();
        s.send(command::UNANNOUNCE, Some(topic), Some(token), Some(value))
    };
    assert!(unann(&mut s, &a, true).is_none(), "bad signature: dropped");
    let r = unann(&mut s, &a, false).unwrap();
    assert_eq!((r.error, r.token), (0, None));
    let left: Vec<[u8; 32]> = s
        .lookup(topic)
        .unwrap()
        .peers
        .iter()
        .map(|p| p.public_key)
        .collect();
    assert_eq!(
        left,
        vec![b.public_key()],
        "other keys on the topic are untouched"
    );
    assert_eq!(
        unann(&mut s, &a, false).unwrap().error,
        0,
        "unannouncing what isn't stored still replies"
    );
}

#[test]
fn self_announce_goes_to_the_router_and_find_peer() {
    let mut s = Server::new();
    let k = kp("server");
    let target = sign::target_of_key(&k.public_key());
    s.announce(target, &k, (1..=4).map(relay).collect(), 0)
        .unwrap();
    let r = s
        .send(command::FIND_PEER, Some(target), None, None)
        .unwrap();
    let peer = Peer::decode(&r.value.unwrap()).unwrap();
    assert_eq!(peer.relay_addresses.len(), 3);
    assert_eq!(
        s.lookup(target).unwrap().peers,
        vec![peer],
        "LOOKUP of H(pk) returns the router record"
    );
    assert!(s.send(command::FIND_PEER, None, None, None).is_none());
    assert_eq!(
        s.send(command::FIND_PEER, Some([3; 32]), None, None)
            .unwrap()
            .value,
        None
    );
}

#[test]
fn refresh_chain() {
    let mut s = Server::new();
    let topic = hash(b"refreshing");
    let k = kp("r");
    let secret = [42u8; 32];
    let refresh = hash(&secret);
    let token = s.token();
    let peer = Peer {
        public_key: k.public_key(),
        relay_addresses: vec![],
    };
    let sig = sign::sign_announce(&k, &topic, &s.id(), &token, &peer, Some(&refresh));
    let value = Announce {
        peer: Some(peer.clone()),
        refresh: Some(refresh),
        signature: Some(sig),
        bump: 0,
    }
    .to_bytes();
    assert_eq!(
        s.send(command::ANNOUNCE, Some(topic), Some(token), Some(value))
            .unwrap()
            .error,
        0
    );
    // Unannounce, then the refresh preimage alone restores it.
    let token = s.token();
    let sig = sign::sign_unannounce(&k, &topic, &s.id(), &token, &peer, None);
    let value = Announce {
        peer: Some(peer.clone()),
        refresh: None,
        signature: Some(sig),
        bump: 0,
    }
    .to_bytes();
    s.send(command::UNANNOUNCE, Some(topic), Some(token), Some(value))
        .unwrap();
    assert!(s.lookup(topic).is_none());
    let token = s.token();
    let only = Announce {
        peer: None,
        refresh: Some(secret),
        signature: None,
        bump: 0,
    }
    .to_bytes();
    assert_eq!(
        s.send(command::ANNOUNCE, Some(topic), Some(token), Some(only))
            .unwrap()
            .error,
        0
    );
    assert_eq!(s.lookup(topic).unwrap().peers, vec![peer]);
    let token = s.token();
    let unknown = Announce {
        peer: None,
        refresh: Some([1; 32]),
        signature: None,
        bump: 0,
    }
    .to_bytes();
    assert!(s
        .send(command::ANNOUNCE, Some(topic), Some(token), Some(unknown))
        .is_none());
}

#[test]
fn immutable_rules() {
    let mut s = Server::new();
    let value = b"direct immutable".to_vec();
    let target = hash(&value);
    let token = s.token();
    assert!(
        s.send(
            command::IMMUTABLE_PUT,
            Some(target),
            None,
            Some(value.clone())
        )
        .is_none(),
        "no token"
    );
    assert!(
        s.send(
            command::IMMUTABLE_PUT,
            Some([0; 32]),
            Some(token),
            Some(value.clone())
        )
        .is_none(),
        "wrong hash"
    );
    let r = s
        .send(
            command::IMMUTABLE_PUT,
            Some(target),
            Some(token),
            Some(value.clone()),
        )
        .unwrap();
    assert_eq!(
        (r.error, r.token.is_some(), r.value),
        (0, true, None),
        "plain REPLY with a token"
    );
    assert_eq!(
        s.send(command::IMMUTABLE_GET, Some(target), None, None)
            .unwrap()
            .value,
        Some(value)
    );
    assert_eq!(
        s.send(command::IMMUTABLE_GET, Some([5; 32]), None, None)
            .unwrap()
            .value,
        None
    );
    // Present-but-empty is a value.
    let token = s.token();
    s.send(
        command::IMMUTABLE_PUT,
        Some(hash(b"")),
        Some(token),
        Some(vec![]),
    )
    .unwrap();
    assert_eq!(
        s.send(command::IMMUTABLE_GET, Some(hash(b"")), None, None)
            .unwrap()
            .value,
        Some(vec![])
    );
}

#[test]
fn mutable_rules() {
    let mut s = Server::new();
    let k = kp("m");
    let pk = k.public_key();
    let target = sign::target_of_key(&pk);
    let put =
        |s: &mut Server, seq: u64, value: &[u8], token: bool, tamper: bool, target: [u8; 32]| {
            let mut signature = sign::sign_mutable(&k, seq, value);
            if tamper {
                signature[9] ^= 1;
            }
            let v = MutablePutRequest {
                public_key: pk,
                seq,
                value: value.to_vec(),
                signature,
            }
            .to_bytes();
            let token = if token { Some(s.token()) } else { None };
            s.send(command::MUTABLE_PUT, Some(target), token, Some(v))
        };
    assert!(
        put(&mut s, 1, b"v1", false, false, target).is_none(),
        "no token"
    );
    assert!(
        put(&mut s, 1, b"v1", true, true, target).is_none(),
        "bad signature"
    );
    assert!(
        put(&mut s, 1, b"v1", true, false, [0; 32]).is_none(),
        "target != H(pk)"
    );
    let r = put(&mut s, 2, b"v2", true, false, target).unwrap();
    assert_eq!((r.error, r.token.is_some()), (0, true));
    let r = put(&mut s, 1, b"v1", true, false, target).unwrap();
    assert_eq!((r.error, r.token), (17, None), "SEQ_TOO_LOW, no token");
    assert_eq!(
        put(&mut s, 2, b"other", true, false, target).unwrap().error,
        16,
        "SEQ_REUSED"
    );
    assert_eq!(
        put(&mut s, 2, b"v2", true, false, target).unwrap().error,
        0,
        "same seq, same value: accepted"
    );

    let get = |s: &mut Server, seq: Option<u64>| {
        s.send(
            command::MUTABLE_GET,
            Some(target),
            None,
            seq.map(hdht_core::dht::messages::encode_mutable_get_request),
        )
    };
    assert!(
        get(&mut s, None).is_none(),
        "MUTABLE_GET without a value is dropped"
    );
    assert_eq!(get(&mut s, Some(3)).unwrap().value, None);
    let stored = MutableGetResponse::decode(&get(&mut s, Some(0)).unwrap().value.unwrap()).unwrap();
    assert_eq!((stored.seq, stored.value.as_slice()), (2, &b"v2"[..]));
    assert!(sign::verify_mutable(
        &pk,
        stored.seq,
        &stored.value,
        &stored.signature
    ));
}

/// A seq the reference cannot represent (above 2^53 - 1) does not decode, so the request is
/// dropped without a reply and nothing is stored (as `c.decode(c.uint)` throws in the
/// reference's MUTABLE_PUT and MUTABLE_GET handlers). The top seq itself is accepted, and the
/// record is then final: a lower seq is SEQ_TOO_LOW, the same seq with another value
/// SEQ_REUSED, and no higher seq can be sent.
#[test]
fn mutable_seq_beyond_the_reference_is_dropped_and_the_top_seq_is_final() {
    use hdht_core::dht::messages::encode_mutable_get_request;
    use hdht_core::dht::MAX_SEQ;

    let mut s = Server::new();
    let k = kp("top");
    let pk = k.public_key();
    let target = sign::target_of_key(&pk);
    let put = |s: &mut Server, seq: u64, value: &[u8]| {
        let v = MutablePutRequest {
            public_key: pk,
            seq,
            value: value.to_vec(),
            signature: sign::sign_mutable(&k, seq, value),
        }
        .to_bytes();
        let token = s.token();
        s.send(command::MUTABLE_PUT, Some(target), Some(token), Some(v))
    };
    let get = |s: &mut Server, seq: u64| {
        s.send(
            command::MUTABLE_GET,
            Some(target),
            None,
            Some(encode_mutable_get_request(seq)),
        )
    };

    for seq in [MAX_SEQ + 1, 1 << 60, u64::MAX] {
        assert!(
            put(&mut s, seq, b"too far").is_none(),
            "put seq {seq} dropped"
        );
        assert!(get(&mut s, seq).is_none(), "get seq {seq} dropped");
    }
    assert_eq!(get(&mut s, 0).unwrap().value, None, "nothing was stored");

    let r = put(&mut s, MAX_SEQ, b"final").unwrap();
    assert_eq!(r.error, 0, "the top seq is accepted");
    let stored = MutableGetResponse::decode(&get(&mut s, MAX_SEQ).unwrap().value.unwrap()).unwrap();
    assert_eq!(
        (stored.seq, stored.value.as_slice()),
        (MAX_SEQ, &b"final"[..])
    );
    assert_eq!(
        put(&mut s, MAX_SEQ - 1, b"newer?").unwrap().error,
        17,
        "SEQ_TOO_LOW"
    );
    assert_eq!(
        put(&mut s, MAX_SEQ, b"other").unwrap().error,
        16,
        "SEQ_REUSED"
    );
    assert!(
        put(&mut s, MAX_SEQ + 1, b"higher").is_none(),
        "no higher seq gets through"
    );
    let still = MutableGetResponse::decode(&get(&mut s, 0).unwrap().value.unwrap()).unwrap();
    assert_eq!(
        (still.seq, still.value.as_slice()),
        (MAX_SEQ, &b"final"[..])
    );
}

#[test]
fn records_expire_after_at_most_four_thirds_of_max_age() {
    let max_age = Duration::from_secs(60);
    let mut s = Server::with(DhtConfig {
        rpc: RpcConfig::bootstrapper(SERVER),
        max_age: Some(max_age),
        ..DhtConfig::default()
    });
    let topic = hash(b"expiring");
    s.announce(topic, &kp("e"), vec![], 0).unwrap();
    assert!(s.lookup(topic).is_some());
    let until = s.net.now + max_age * 4 / 3 + Duration::from_secs(1);
    while s.net.now < until {
        s.net.advance(Duration::from_secs(1));
        s.drain();
    }
    assert!(s.lookup(topic).is_none());
}

#[test]
fn a_flood_of_puts_and_announces_stays_bounded() {
    let mut s = Server::with(DhtConfig {
        rpc: RpcConfig::bootstrapper(SERVER),
        max_size: Some(64),
        ..DhtConfig::default()
    });
    let topic = hash(b"flood");
    for i in 0..600u32 {
        let token = s.token();
        let value = i.to_le_bytes().to_vec();
        s.send(
            command::IMMUTABLE_PUT,
            Some(hash(&value)),
            Some(token),
            Some(value),
        )
        .unwrap();
        s.announce(
            topic,
            &KeyPair::from_seed(&hash(&i.to_le_bytes())),
            vec![],
            0,
        )
        .unwrap();
    }
    // At most two generations of max_size survive; a lookup returns at most 20.
    let stored = (0..600u32)
        .filter(|i| {
            s.send(
                command::IMMUTABLE_GET,
                Some(hash(&i.to_le_bytes())),
                None,
                None,
            )
            .unwrap()
            .value
            .is_some()
        })
        .count();
    assert!(
        stored <= 64,
        "{stored} immutables kept with max_size 64 (half for values)"
    );
    assert_eq!(s.lookup(topic).unwrap().peers.len(), 20);
}

mod router {
    use super::*;
    use hdht_core::dht::messages::{mode, HandshakeEnvelope, HolepunchEnvelope};
    use hdht_core::wire::Request;

    const SERVER_HOST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 7000);

    fn requests(s: &mut Server) -> Vec<(SocketAddrV4, Request)> {
        let mut out = Vec::new();
        for t in s.net.take_outbox() {
            if let Ok(Message::Request(r)) = Message::decode(&t.bytes) {
                out.push((t.to, r));
            }
        }
        out
    }

    /// A node that accepted a self-announce from SERVER_HOST relays handshakes to it and
    /// replies to the client when the server answers.
    #[test]
    fn relays_handshakes_and_holepunches_in_every_mode() {
        let mut s = Server::new();
        let server_kp = kp("server");
        let target = sign::target_of_key(&server_kp.public_key());
        // The self-announce arrives from the server's address.
        let token = {
            let req = Request {
                tid: 900,
                to: SERVER,
                id: None,
                token: None,
                internal: false,
                command: command::LOOKUP,
                target: Some(target),
                value: None,
            };
            s.receive(SERVER_HOST, &req.to_bytes());
            s.drain().pop().unwrap().token.unwrap()
        };
        let peer = Peer {
            public_key: server_kp.public_key(),
            relay_addresses: vec![],
        };
        let sig = sign::sign_announce(&server_kp, &target, &s.id(), &token, &peer, None);
        let ann = Request {
            tid: 901,
            to: SERVER,
            id: None,
            token: Some(token),
            internal: false,
            command: command::ANNOUNCE,
            target: Some(target),
            value: Some(
                Announce {
                    peer: Some(peer),
                    refresh: None,
                    signature: Some(sig),
                    bump: 0,
                }
                .to_bytes(),
            ),
        };
        s.receive(SERVER_HOST, &ann.to_bytes());
        assert_eq!(s.drain().pop().unwrap().error, 0);

        // FROM_CLIENT → FROM_RELAY to the server, with the client's address, same tid.
        let hs = HandshakeEnvelope {
            mode: mode::FROM_CLIENT,
            noise: vec![1, 2, 3],
            peer_address: None,
            relay_address: None,
        };
        let req = Request {
            tid: 77,
            to: SERVER,
            id: None,
            token: None,
            internal: false,
            command: command::PEER_HANDSHAKE,
            target: Some(target),
            value: Some(hs.to_bytes()),
        };
        s.receive(CLIENT, &req.to_bytes());
        let out = requests(&mut s);
        assert_eq!(out.len(), 1);
        let (to, fwd) = &out[0];
        assert_eq!(
            (*to, fwd.tid, fwd.token, fwd.target),
            (SERVER_HOST, 77, None, Some(target))
        );
        let env = HandshakeEnvelope::decode(fwd.value.as_ref().unwrap()).unwrap();
        assert_eq!(
            env,
            HandshakeEnvelope {
                mode: mode::FROM_RELAY,
                noise: vec![1, 2, 3],
                peer_address: Some(CLIENT),
                relay_address: None
            }
        );

        // FROM_SERVER → a response REPLY to the client, naming the server.
        let back = HandshakeEnvelope {
            mode: mode::FROM_SERVER,
            noise: vec![4, 5],
            peer_address: Some(CLIENT),
            relay_address: None,
        };
        let req = Request {
            tid: 77,
            to: SERVER,
            id: None,
            token: None,
            internal: false,
            command: command::PEER_HANDSHAKE,
            target: Some(target),
            value: Some(back.to_bytes()),
        };
        s.receive(SERVER_HOST, &req.to_bytes());
        let mut replies = Vec::new();
        for t in s.net.take_outbox() {
            if let Ok(Message::Response(r)) = Message::decode(&t.bytes) {
                replies.push((t.to, r));
            }
        }
        assert_eq!(replies.len(), 1);
        let (to, res) = &replies[0];
        assert_eq!(
            (*to, res.tid, res.to, res.token, res.closer_nodes.len()),
            (CLIENT, 77, CLIENT, None, 0)
        );
        let env = HandshakeEnvelope::decode(res.value.as_ref().unwrap()).unwrap();
        assert_eq!(
            env,
            HandshakeEnvelope {
                mode: mode::REPLY,
                noise: vec![4, 5],
                peer_address: Some(SERVER_HOST),
                relay_address: None
            }
        );

        // FROM_RELAY at a relay node → FROM_SECOND_RELAY to its route.
        let hs = HandshakeEnvelope {
            mode: mode::FROM_RELAY,
            noise: vec![6],
            peer_address: Some(CLIENT),
            relay_address: None,
        };
        let req = Request {
            tid: 78,
            to: SERVER,
            id: None,
            token: None,
            internal: false,
            command: command::PEER_HANDSHAKE,
            target: Some(target),
            value: Some(hs.to_bytes()),
        };
        let other = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), 1234);
        s.receive(other, &req.to_bytes());
        let out = requests(&mut s);
        let env = HandshakeEnvelope::decode(out[0].1.value.as_ref().unwrap()).unwrap();
        assert_eq!(
            (out[0].0, env.mode, env.relay_address, env.peer_address),
            (
                SERVER_HOST,
                mode::FROM_SECOND_RELAY,
                Some(other),
                Some(CLIENT)
            )
        );

        // No route and no relay address: an empty reply with closer nodes, no token.
        let hs = HandshakeEnvelope {
            mode: mode::FROM_CLIENT,
            noise: vec![1],
            peer_address: None,
            relay_address: None,
        };
        let r = s
            .send(
                command::PEER_HANDSHAKE,
                Some([8; 32]),
                None,
                Some(hs.to_bytes()),
            )
            .unwrap();
        assert_eq!((r.error, r.value, r.token), (0, None, None));

        // Holepunch: FROM_CLIENT forwarded to the route, FROM_SERVER answered to the client.
        let hp = HolepunchEnvelope {
            mode: mode::FROM_CLIENT,
            id: 5,
            payload: vec![9; 10],
            peer_address: None,
        };
        let req = Request {
            tid: 79,
            to: SERVER,
            id: None,
            token: None,
            internal: false,
            command: command::PEER_HOLEPUNCH,
            target: Some(target),
            value: Some(hp.to_bytes()),
        };
        s.receive(CLIENT, &req.to_bytes());
        let out = requests(&mut s);
        let env = HolepunchEnvelope::decode(out[0].1.value.as_ref().unwrap()).unwrap();
        assert_eq!(
            (out[0].0, env.mode, env.id, env.peer_address),
            (SERVER_HOST, mode::FROM_RELAY, 5, Some(CLIENT))
        );
        let hp = HolepunchEnvelope {
            mode: mode::FROM_SERVER,
            id: 0,
            payload: vec![1; 4],
            peer_address: Some(CLIENT),
        };
        let req = Request {
            tid: 79,
            to: SERVER,
            id: None,
            token: None,
            internal: false,
            command: command::PEER_HOLEPUNCH,
            target: Some(target),
            value: Some(hp.to_bytes()),
        };
        s.receive(SERVER_HOST, &req.to_bytes());
        let res = s.drain().pop().expect("REPLY to the client");
        assert_eq!(res.to, CLIENT);
        let env = HolepunchEnvelope::decode(res.value.as_ref().unwrap()).unwrap();
        assert_eq!(
            (env.mode, env.peer_address),
            (mode::REPLY, Some(SERVER_HOST))
        );
        // Garbage envelopes are dropped silently.
        assert!(s
            .send(
                command::PEER_HANDSHAKE,
                Some(target),
                None,
                Some(vec![0xff, 0xff])
            )
            .is_none());
        assert!(s
            .send(command::PEER_HOLEPUNCH, Some(target), None, None)
            .is_none());
    }
}
