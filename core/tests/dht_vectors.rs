//! Every vector in `tests/vectors/hyperdht-records.json` (generated with hyperdht 6.34.0,
//! dht-rpc 6.27.0, compact-encoding 3.5.2 and sodium-universal 5.0.1 by
//! `tests/vectors/gen/hyperdht-records.js`), checked against `hdht_core::dht::messages`,
//! `hdht_core::dht::sign`, `hdht_core::crypto` and `hdht_core::wire`.
//!
//! Sections covered: `constants`, `keypairs`, `default_key_pairs`, `error_codes`, `namespaces`,
//! `hashes`, `node_ids`, `peer_records`, `announce_messages`, `lookup_replies`, `announce_signatures`,
//! `mutable`, `mutable_get_requests`, `immutable`, `handshake_envelopes`, `holepunch_envelopes`,
//! `plugin_requests`, `decode_cases`, `frames`. A guard test fails if the file grows a section
//! this file does not know about.
//!
//! `tests/vectors/hyperdht-records-scenario.json` records a live testnet run; almost all of it
//! is observed behaviour (timeouts, replies, storage). The few deterministic encodings in it (the
//! raw LOOKUP value, the 2048-byte IMMUTABLE_PUT frame limit) are checked at the bottom.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;

use hdht_core::connect::ConnectError;
use hdht_core::crypto::{hash, hash_batch, keyed_hash, KeyPair};
use hdht_core::dht::messages::{
    self, command, decode_mutable_get_request, encode_lookup_reply, encode_mutable_get_request,
    mode, Announce, HandshakeEnvelope, HolepunchEnvelope, LookupReplyValue, MutableGetResponse,
    MutablePutRequest, Peer, PluginRequest,
};
use hdht_core::dht::sign::{self, announce_signable, mutable_signable};
use hdht_core::dht::OpError;
use hdht_core::rpc::{encode_addr, NodeId, RequestError};
use hdht_core::wire::{DecodeError, Message, Reader, Request, ERROR_OK};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/hyperdht-records.json"
);
const SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/hyperdht-records-scenario.json"
);

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read the hyperdht record vectors at {path}: {e}. \
             These tests need the vector file (regenerate it with tests/vectors/gen); they are never skipped."
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid JSON: {e}"))
}

fn vectors() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| load(VECTORS))
}

/// The non-empty array under `key`, which must have exactly `count` entries (spec §10).
fn list(key: &str, count: usize) -> &'static [Value] {
    let v = vectors()
        .get(key)
        .unwrap_or_else(|| panic!("hyperdht-records.json has no `{key}` key"))
        .as_array()
        .unwrap_or_else(|| panic!("hyperdht-records.json `{key}` is not an array"));
    assert_eq!(
        v.len(),
        count,
        "hyperdht-records.json `{key}` has an unexpected entry count"
    );
    v
}

// ---------------------------------------------------------------------------------------------
// Strict JSON helpers: a missing or mistyped field fails the test.
// ---------------------------------------------------------------------------------------------

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("{}: missing `{key}`", name(v)))
}

fn name(v: &Value) -> String {
    v.get("name")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{v}").chars().take(80).collect(), str::to_owned)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    get(v, key)
        .as_str()
        .unwrap_or_else(|| panic!("{}: `{key}` is not a string", name(v)))
}

fn u(v: &Value, key: &str) -> u64 {
    get(v, key)
        .as_u64()
        .unwrap_or_else(|| panic!("{}: `{key}` is not an unsigned int", name(v)))
}

fn unhex(h: &str) -> Vec<u8> {
    hex::decode(h).unwrap_or_else(|e| panic!("bad hex {h:?}: {e}"))
}

fn hx(v: &Value, key: &str) -> Vec<u8> {
    unhex(s(v, key))
}

fn arr<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("expected {N} bytes, got {}", bytes.len()))
}

fn h32(v: &Value, key: &str) -> [u8; 32] {
    arr(&hx(v, key))
}

fn h64(v: &Value, key: &str) -> [u8; 64] {
    arr(&hx(v, key))
}

/// A nullable hex field.
fn opt_hex(v: &Value, key: &str) -> Option<Vec<u8>> {
    match get(v, key) {
        Value::Null => None,
        Value::String(h) => Some(unhex(h)),
        other => panic!("{}: `{key}` is neither null nor hex: {other}", name(v)),
    }
}

fn addr(v: &Value) -> SocketAddrV4 {
    let host: Ipv4Addr = s(v, "host")
        .parse()
        .unwrap_or_else(|e| panic!("bad host in {v}: {e}"));
    let port = u16::try_from(u(v, "port")).expect("port fits u16");
    SocketAddrV4::new(host, port)
}

fn opt_addr(v: &Value, key: &str) -> Option<SocketAddrV4> {
    match get(v, key) {
        Value::Null => None,
        a => Some(addr(a)),
    }
}

fn peer(v: &Value) -> Peer {
    Peer {
        public_key: h32(v, "publicKey"),
        relay_addresses: get(v, "relayAddresses")
            .as_array()
            .expect("relayAddresses is an array")
            .iter()
            .map(addr)
            .collect(),
    }
}

fn opt_peer(v: &Value, key: &str) -> Option<Peer> {
    match get(v, key) {
        Value::Null => None,
        p => Some(peer(p)),
    }
}

fn announce_of(v: &Value) -> Announce {
    Announce {
        peer: opt_peer(v, "peer"),
        refresh: opt_hex(v, "refresh").map(|b| arr(&b)),
        signature: opt_hex(v, "signature").map(|b| arr(&b)),
        bump: u(v, "bump"),
    }
}

// ---------------------------------------------------------------------------------------------
// Guard: every section is known.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_section_is_covered() {
    let known: BTreeSet<&str> = [
        "about",
        "constants",
        "keypairs",
        "default_key_pairs",
        "error_codes",
        "namespaces",
        "hashes",
        "node_ids",
        "peer_records",
        "announce_messages",
        "lookup_replies",
        "announce_signatures",
        "mutable",
        "mutable_get_requests",
        "immutable",
        "handshake_envelopes",
        "holepunch_envelopes",
        "plugin_requests",
        "decode_cases",
        "frames",
    ]
    .into_iter()
    .collect();
    let present: BTreeSet<&str> = vectors()
        .as_object()
        .expect("top level is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        present, known,
        "hyperdht-records.json sections changed; update this test"
    );
}

#[test]
fn constants() {
    let c = get(vectors(), "constants");
    let cmds = get(c, "commands");
    let ours = [
        ("PEER_HANDSHAKE", command::PEER_HANDSHAKE),
        ("PEER_HOLEPUNCH", command::PEER_HOLEPUNCH),
        ("FIND_PEER", command::FIND_PEER),
        ("LOOKUP", command::LOOKUP),
        ("ANNOUNCE", command::ANNOUNCE),
        ("UNANNOUNCE", command::UNANNOUNCE),
        ("MUTABLE_PUT", command::MUTABLE_PUT),
        ("MUTABLE_GET", command::MUTABLE_GET),
        ("IMMUTABLE_PUT", command::IMMUTABLE_PUT),
        ("IMMUTABLE_GET", command::IMMUTABLE_GET),
        ("PLUGIN", command::PLUGIN),
    ];
    assert_eq!(cmds.as_object().unwrap().len(), ours.len());
    for (n, v) in ours {
        assert_eq!(u(cmds, n), v, "command {n}");
    }
    let hd = get(get(c, "response_error_codes"), "hyperdht");
    assert_eq!(u(hd, "SEQ_REUSED"), messages::ERROR_SEQ_REUSED);
    assert_eq!(u(hd, "SEQ_TOO_LOW"), messages::ERROR_SEQ_TOO_LOW);
    let modes = get(c, "router_modes");
    let ours = [
        ("FROM_CLIENT", mode::FROM_CLIENT),
        ("FROM_SERVER", mode::FROM_SERVER),
        ("FROM_RELAY", mode::FROM_RELAY),
        ("FROM_SECOND_RELAY", mode::FROM_SECOND_RELAY),
        ("REPLY", mode::REPLY),
    ];
    assert_eq!(modes.as_object().unwrap().len(), ours.len());
    for (n, v) in ours {
        assert_eq!(u(modes, n), v, "mode {n}");
    }
}

// ---------------------------------------------------------------------------------------------
// Keys, namespaces, hashes, node ids
// ---------------------------------------------------------------------------------------------

#[test]
fn keypairs() {
    for v in list("keypairs", 4) {
        let kp = KeyPair::from_seed(&h32(v, "seed"));
        assert_eq!(kp.public_key(), h32(v, "publicKey"), "{}", name(v));
        assert_eq!(kp.secret_key(), h64(v, "secretKey"), "{}", name(v));
    }
}

/// `new HyperDHT({ keyPair, seed }).defaultKeyPair`: `keyPair` if given, else the seed's key
/// pair — what `DhtNode::set_default_key_pair` is given by the drivers (`DhtOptions::key_pair` /
/// `seed`; `tests/tests/options.rs` checks the options end to end).
#[test]
fn default_key_pairs() {
    for v in list("default_key_pairs", 3) {
        let seed = match get(v, "keyPairSeed") {
            Value::Null => h32(v, "seed"),
            _ => h32(v, "keyPairSeed"),
        };
        let kp = KeyPair::from_seed(&seed);
        assert_eq!(kp.public_key(), h32(v, "publicKey"), "{}", name(v));
        assert_eq!(kp.secret_key(), h64(v, "secretKey"), "{}", name(v));
    }
}

/// `ConnectError::code()` is hyperdht's `err.code` for every error of its `lib/errors.js` (and
/// dht-rpc's `REQUEST_TIMEOUT`), and `Display` its `err.message`; `RequestError::code()` names
/// dht-rpc's codes.
#[test]
fn error_codes() {
    let e = get(vectors(), "error_codes");
    let reference = |key: &str| -> BTreeMap<String, String> {
        get(e, key)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (s(v, "code").to_owned(), s(v, "message").to_owned()))
            .collect()
    };
    let (hyperdht, dht_rpc) = (reference("hyperdht"), reference("dht_rpc"));
    assert_eq!(hyperdht.len(), 23);
    let ours: BTreeSet<&str> = ConnectError::ALL.iter().map(|e| e.code()).collect();
    let mut theirs: BTreeSet<&str> = hyperdht.keys().map(String::as_str).collect();
    theirs.insert("REQUEST_TIMEOUT");
    assert_eq!(ours, theirs);
    for err in ConnectError::ALL {
        let code = err.code();
        let message = hyperdht.get(code).or_else(|| dht_rpc.get(code)).unwrap();
        if let ConnectError::RemoteAborted(n) = err {
            // Ours names the server's error code after the reference's message.
            assert_eq!(err.to_string(), format!("{message} with error code {n}"));
        } else {
            assert_eq!(&err.to_string(), message, "{code}");
        }
        assert_eq!(ConnectError::from_code(code), Some(err));
    }
    for (err, code) in [
        (RequestError::Timeout, "REQUEST_TIMEOUT"),
        (RequestError::Destroyed, "REQUEST_DESTROYED"),
    ] {
        assert_eq!(err.code(), Some(code));
        assert!(dht_rpc.contains_key(code), "{code} is dht-rpc's");
    }
    assert_eq!(OpError::SeqTooLow.code(), Some("SEQ_TOO_LOW"));
    assert_eq!(OpError::SeqReused.code(), Some("SEQ_REUSED"));
    let wire = get(
        get(get(vectors(), "constants"), "response_error_codes"),
        "hyperdht",
    );
    assert!(wire.get("SEQ_TOO_LOW").is_some() && wire.get("SEQ_REUSED").is_some());
}

#[test]
fn namespaces() {
    let ns = get(vectors(), "namespaces");
    let name_bytes = hx(ns, "name_utf8_hex");
    assert_eq!(name_bytes, s(ns, "name").as_bytes());
    let base = h32(ns, "base_hash");
    assert_eq!(hash(&name_bytes), base);
    assert_eq!(sign::NS_BASE, base);
    let entries = get(ns, "entries").as_array().unwrap();
    assert_eq!(entries.len(), 6);
    for e in entries {
        let id = u8::try_from(u(e, "id")).unwrap();
        let mut pre = base.to_vec();
        pre.push(id);
        assert_eq!(pre, hx(e, "preimage_hex"), "{}", name(e));
        let value = h32(e, "value");
        assert_eq!(hash(&pre), value, "{}", name(e));
        assert_eq!(sign::namespace(id), value, "{}", name(e));
        let constant = match s(e, "name") {
            "NS_ANNOUNCE" => sign::NS_ANNOUNCE,
            "NS_UNANNOUNCE" => sign::NS_UNANNOUNCE,
            "NS_MUTABLE_PUT" => sign::NS_MUTABLE_PUT,
            "NS_PEER_HANDSHAKE" => sign::NS_PEER_HANDSHAKE,
            "NS_PEER_HOLEPUNCH" => sign::NS_PEER_HOLEPUNCH,
            "NS_PLUGIN" => sign::NS_PLUGIN,
            other => panic!("unknown namespace {other}"),
        };
        assert_eq!(constant, value, "{}", name(e));
    }
}

#[test]
fn hashes() {
    for v in list("hashes", 5) {
        let input = hx(v, "input");
        let expected = h32(v, "hash");
        assert_eq!(hash(&input), expected, "{}", name(v));
        assert_eq!(sign::target_of_value(&input), expected, "{}", name(v));
        if s(v, "name").starts_with("target_of_public_key") {
            assert_eq!(sign::target_of_key(&arr(&input)), expected, "{}", name(v));
        }
    }
}

#[test]
fn node_ids() {
    for v in list("node_ids", 3) {
        let a = addr(v);
        assert_eq!(encode_addr(&a).to_vec(), hx(v, "address_encoding"));
        assert_eq!(NodeId::from_addr(&a).0, h32(v, "id"));
    }
}

// ---------------------------------------------------------------------------------------------
// Message encodings
// ---------------------------------------------------------------------------------------------

#[test]
fn peer_records() {
    for v in list("peer_records", 4) {
        let p = peer(get(v, "value"));
        let enc = hx(v, "encoded");
        assert_eq!(p.to_bytes(), enc, "{}", name(v));
        let mut out = vec![0xaa];
        p.encode(&mut out);
        assert_eq!(out[1..], enc[..], "encode appends");
        assert_eq!(Peer::decode(&enc).unwrap(), p, "{}", name(v));
        // Every strict prefix is truncated.
        for cut in 0..enc.len() {
            assert!(
                Peer::decode(&enc[..cut]).is_err(),
                "{} cut at {cut}",
                name(v)
            );
        }
    }
}

#[test]
fn announce_messages() {
    for v in list("announce_messages", 6) {
        let a = announce_of(get(v, "value"));
        let enc = hx(v, "encoded");
        assert_eq!(a.to_bytes(), enc, "{}", name(v));
        assert_eq!(u64::from(enc[0]), u(v, "flags"), "{}", name(v));
        let d = Announce::decode(&enc).unwrap();
        assert_eq!(d.bump, u(v, "decoded_bump"), "{}", name(v));
        assert_eq!(d, a, "{}", name(v));
        for cut in 0..enc.len() {
            assert!(
                Announce::decode(&enc[..cut]).is_err(),
                "{} cut at {cut}",
                name(v)
            );
        }
    }
}

#[test]
fn lookup_replies() {
    for v in list("lookup_replies", 4) {
        let peers: Vec<Peer> = get(v, "peers")
            .as_array()
            .unwrap()
            .iter()
            .map(peer)
            .collect();
        let r = LookupReplyValue {
            peers,
            bump: u(v, "bump"),
        };
        let enc = hx(v, "encoded");
        assert_eq!(LookupReplyValue::decode(&enc).unwrap(), r, "{}", name(v));
        if v.get("decode_only").and_then(Value::as_bool) == Some(true) {
            // A legacy reply without bump: our encoder always writes it.
            let mut with_bump = enc.clone();
            with_bump.push(0);
            assert_eq!(r.to_bytes(), with_bump, "{}", name(v));
            continue;
        }
        assert_eq!(r.to_bytes(), enc, "{}", name(v));
        let records: Vec<Vec<u8>> = r.peers.iter().map(Peer::to_bytes).collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let mut raw = Vec::new();
        encode_lookup_reply(&refs, r.bump, &mut raw);
        assert_eq!(raw, enc, "{} raw", name(v));
    }
}

#[test]
fn announce_signatures() {
    for v in list("announce_signatures", 5) {
        let n = name(v);
        let kp = KeyPair::from_seed(&h32(v, "seed"));
        assert_eq!(kp.public_key(), h32(v, "publicKey"), "{n}");
        assert_eq!(kp.secret_key(), h64(v, "secretKey"), "{n}");
        let target = h32(v, "target");
        let token = h32(v, "token");
        let node_id = h32(v, "node_id");
        assert_eq!(
            NodeId::from_addr(&addr(get(v, "node_address"))).0,
            node_id,
            "{n}"
        );
        let p = peer(get(v, "peer"));
        let refresh: Option<[u8; 32]> = opt_hex(v, "refresh").map(|b| arr(&b));
        let bump = u(v, "bump");
        let (ns, unannounce) = match s(v, "namespace") {
            "ANNOUNCE" => (sign::NS_ANNOUNCE, false),
            "UNANNOUNCE" => (sign::NS_UNANNOUNCE, true),
            other => panic!("{n}: namespace {other}"),
        };
        assert_eq!(ns, h32(v, "namespace_value"), "{n}");

        // The hash input, part by part.
        let parts: Vec<Vec<u8>> = get(v, "hash_input_parts")
            .as_array()
            .unwrap()
            .iter()
            .map(|p| unhex(p.as_str().unwrap()))
            .collect();
        assert_eq!(parts.len(), 5, "{n}");
        assert_eq!(parts[0], target, "{n}");
        assert_eq!(parts[1], node_id, "{n}");
        assert_eq!(parts[2], token, "{n}");
        assert_eq!(parts[3], p.to_bytes(), "{n}");
        assert_eq!(
            parts[4],
            refresh.map(|r| r.to_vec()).unwrap_or_default(),
            "{n}"
        );
        assert_eq!(parts.concat(), hx(v, "hash_input"), "{n}");
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let h = hash_batch(&refs);
        assert_eq!(h, h32(v, "signable_hash"), "{n}");

        let signable = announce_signable(&ns, &target, &node_id, &token, &p, refresh.as_ref());
        assert_eq!(signable, h64(v, "signable"), "{n}");
        assert_eq!(signable[32..], h, "{n}");

        let sig = h64(v, "signature");
        let (made, ok, cross) = if unannounce {
            (
                sign::sign_unannounce(&kp, &target, &node_id, &token, &p, refresh.as_ref()),
                sign::verify_unannounce(&target, &node_id, &token, &p, refresh.as_ref(), &sig),
                sign::verify_announce(&target, &node_id, &token, &p, refresh.as_ref(), &sig),
            )
        } else {
            (
                sign::sign_announce(&kp, &target, &node_id, &token, &p, refresh.as_ref()),
                sign::verify_announce(&target, &node_id, &token, &p, refresh.as_ref(), &sig),
                sign::verify_unannounce(&target, &node_id, &token, &p, refresh.as_ref(), &sig),
            )
        };
        assert_eq!(made, sig, "{n}: signature byte-exact");
        assert_eq!(kp.sign(&signable), sig, "{n}");
        assert!(ok, "{n}: verifies");
        assert!(!cross, "{n}: the other namespace must not verify");

        let req = Announce {
            peer: Some(p.clone()),
            refresh,
            signature: Some(sig),
            bump,
        };
        let value = hx(v, "request_value");
        assert_eq!(req.to_bytes(), value, "{n}: request value");
        assert_eq!(Announce::decode(&value).unwrap(), req, "{n}");
    }
}

#[test]
fn mutable() {
    for v in list("mutable", 6) {
        let n = name(v);
        let kp = KeyPair::from_seed(&h32(v, "seed"));
        let pk = h32(v, "publicKey");
        assert_eq!(kp.public_key(), pk, "{n}");
        assert_eq!(kp.secret_key(), h64(v, "secretKey"), "{n}");
        assert_eq!(sign::target_of_key(&pk), h32(v, "target"), "{n}");
        let seq = u(v, "seq");
        let value = hx(v, "value");
        let inner = hx(v, "signable_inner");
        assert_eq!(hash(&inner), h32(v, "signable_inner_hash"), "{n}");
        let signable = mutable_signable(seq, &value);
        assert_eq!(signable, h64(v, "signable"), "{n}");
        assert_eq!(signable[..32], sign::NS_MUTABLE_PUT, "{n}");
        assert_eq!(signable[32..], hash(&inner), "{n}");
        let sig = h64(v, "signature");
        assert_eq!(sign::sign_mutable(&kp, seq, &value), sig, "{n}");
        assert!(sign::verify_mutable(&pk, seq, &value, &sig), "{n}");
        assert!(!sign::verify_mutable(&pk, seq + 1, &value, &sig), "{n}");

        let put = MutablePutRequest {
            public_key: pk,
            seq,
            value: value.clone(),
            signature: sig,
        };
        let put_enc = hx(v, "mutable_put_request");
        assert_eq!(put.to_bytes(), put_enc, "{n}");
        assert_eq!(MutablePutRequest::decode(&put_enc).unwrap(), put, "{n}");
        let get_ = MutableGetResponse {
            seq,
            value,
            signature: sig,
        };
        let get_enc = hx(v, "mutable_get_response");
        assert_eq!(get_.to_bytes(), get_enc, "{n}");
        assert_eq!(MutableGetResponse::decode(&get_enc).unwrap(), get_, "{n}");
        // The get response is the put request without the public key.
        assert_eq!(put_enc[32..], get_enc[..], "{n}");
        for cut in 0..put_enc.len() {
            assert!(
                MutablePutRequest::decode(&put_enc[..cut]).is_err(),
                "{n} cut {cut}"
            );
        }
        for cut in 0..get_enc.len() {
            assert!(
                MutableGetResponse::decode(&get_enc[..cut]).is_err(),
                "{n} cut {cut}"
            );
        }
    }
}

#[test]
fn mutable_get_requests() {
    for v in list("mutable_get_requests", 8) {
        let seq = u(v, "seq");
        let enc = hx(v, "encoded");
        assert_eq!(encode_mutable_get_request(seq), enc, "seq {seq}");
        assert_eq!(decode_mutable_get_request(&enc), Ok(seq), "seq {seq}");
        let mut trailing = enc.clone();
        trailing.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            decode_mutable_get_request(&trailing),
            Ok(seq),
            "seq {seq} trailing"
        );
    }
    assert_eq!(
        decode_mutable_get_request(&[]),
        Err(DecodeError::OutOfBounds)
    );
}

#[test]
fn immutable() {
    for v in list("immutable", 3) {
        assert_eq!(
            sign::target_of_value(&hx(v, "value")),
            h32(v, "target"),
            "{}",
            name(v)
        );
    }
}

#[test]
fn handshake_envelopes() {
    for v in list("handshake_envelopes", 4) {
        let e = HandshakeEnvelope {
            mode: u(v, "mode"),
            noise: hx(v, "noise"),
            peer_address: opt_addr(v, "peerAddress"),
            relay_address: opt_addr(v, "relayAddress"),
        };
        let enc = hx(v, "encoded");
        assert_eq!(e.to_bytes(), enc, "{}", name(v));
        assert_eq!(HandshakeEnvelope::decode(&enc).unwrap(), e, "{}", name(v));
        for cut in 0..enc.len() {
            assert!(
                HandshakeEnvelope::decode(&enc[..cut]).is_err(),
                "{} cut {cut}",
                name(v)
            );
        }
    }
}

#[test]
fn holepunch_envelopes() {
    for v in list("holepunch_envelopes", 3) {
        let e = HolepunchEnvelope {
            mode: u(v, "mode"),
            id: u(v, "id"),
            payload: hx(v, "payload"),
            peer_address: opt_addr(v, "peerAddress"),
        };
        let enc = hx(v, "encoded");
        assert_eq!(e.to_bytes(), enc, "{}", name(v));
        assert_eq!(HolepunchEnvelope::decode(&enc).unwrap(), e, "{}", name(v));
        for cut in 0..enc.len() {
            assert!(
                HolepunchEnvelope::decode(&enc[..cut]).is_err(),
                "{} cut {cut}",
                name(v)
            );
        }
    }
}

#[test]
fn plugin_requests() {
    for v in list("plugin_requests", 2) {
        let p = PluginRequest {
            plugin: s(v, "plugin").as_bytes().to_vec(),
            version: u(v, "version"),
            command: u(v, "command"),
            value: opt_hex(v, "value"),
        };
        let enc = hx(v, "encoded");
        assert_eq!(p.to_bytes(), enc, "{v}");
        assert_eq!(PluginRequest::decode(&enc).unwrap(), p, "{v}");
        for cut in 0..enc.len() {
            assert!(PluginRequest::decode(&enc[..cut]).is_err(), "{v} cut {cut}");
        }
    }
}

#[test]
fn decode_cases() {
    for v in list("decode_cases", 6) {
        let n = name(v);
        let input = hx(v, "input");
        let decodes = get(v, "decodes").as_bool().unwrap();
        let err = v.get("error").and_then(Value::as_str);
        match s(v, "encoding") {
            "announce" => {
                let r = Announce::decode(&input);
                assert_eq!(r.is_ok(), decodes, "{n}: {r:?}");
                if decodes {
                    assert_eq!(r.unwrap(), announce_of(get(v, "decoded")), "{n}");
                } else {
                    assert_eq!(err, Some("Out of bounds"), "{n}");
                    assert_eq!(r, Err(DecodeError::OutOfBounds), "{n}");
                }
            }
            "mutableGetResponse" => {
                let r = MutableGetResponse::decode(&input);
                assert_eq!(r.is_ok(), decodes, "{n}: {r:?}");
                let d = get(v, "decoded");
                let expected = MutableGetResponse {
                    seq: u(d, "seq"),
                    value: hx(d, "value"),
                    signature: h64(d, "signature"),
                };
                assert_eq!(r.unwrap(), expected, "{n}");
            }
            "mutablePutRequest" => {
                let r = MutablePutRequest::decode(&input);
                assert!(!decodes, "{n}");
                assert!(err.unwrap().contains("9007199254740991"), "{n}");
                assert_eq!(r, Err(DecodeError::IntegerTooLarge), "{n}");
            }
            "uint" => {
                assert!(decodes, "{n}");
                let want = get(v, "decoded").as_u64().unwrap();
                assert_eq!(decode_mutable_get_request(&input), Ok(want), "{n}");
                assert_eq!(Reader::new(&input).uint(), Ok(want), "{n}");
            }
            other => panic!("{n}: unknown encoding {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Full dht-rpc frames
// ---------------------------------------------------------------------------------------------

#[test]
fn frames() {
    let frames = get(vectors(), "frames");
    let list = get(frames, "list").as_array().unwrap();
    assert_eq!(list.len(), 10);
    let mut seen_requests = 0;
    let mut seen_responses = 0;
    for v in list {
        let n = name(v);
        let frame = hx(v, "frame");
        let msg = Message::decode(&frame).unwrap_or_else(|e| panic!("{n}: {e:?}"));
        let mut re = Vec::new();
        msg.encode(&mut re);
        assert_eq!(re, frame, "{n}: frame re-encodes byte-exact");
        let value = opt_hex(v, "value");
        match (s(v, "kind"), msg) {
            ("request", Message::Request(req)) => {
                seen_requests += 1;
                assert_eq!(u64::from(req.tid), u(v, "tid"), "{n}");
                assert_eq!(req.to, addr(get(v, "to")), "{n}");
                assert_eq!(req.id, None, "{n}: requests come from an ephemeral client");
                assert!(!req.internal, "{n}: hyperdht commands are never internal");
                assert_eq!(req.command, u(v, "command"), "{n}");
                assert_eq!(req.token.map(|t| t.to_vec()), opt_hex(v, "token"), "{n}");
                assert_eq!(req.target, Some(h32(v, "target")), "{n}");
                assert_eq!(req.value, value, "{n}");
                check_request_value(&n, &req);
            }
            ("response", Message::Response(res)) => {
                seen_responses += 1;
                assert_eq!(u64::from(res.tid), u(v, "tid"), "{n}");
                assert_eq!(res.to, addr(get(v, "to")), "{n}");
                let responder = addr(get(v, "responder_address"));
                assert_eq!(res.id, Some(NodeId::from_addr(&responder).0), "{n}");
                assert_eq!(res.id, Some(h32(v, "responder_id")), "{n}");
                assert_eq!(res.error, u(v, "error"), "{n}");
                assert!(res.closer_nodes.is_empty(), "{n}");
                let token_included = get(v, "token_included").as_bool().unwrap();
                assert_eq!(res.token.is_some(), token_included, "{n}");
                assert_eq!(res.token.map(|t| t.to_vec()), opt_hex(v, "token"), "{n}");
                if let Some(t) = res.token {
                    // keyed BLAKE2b-256 of utf8(requester host), keyed with the secret.
                    let secret = h32(v, "token_secret_hex");
                    let host = s(get(v, "to"), "host");
                    assert_eq!(
                        keyed_hash(&secret, host.as_bytes()),
                        t,
                        "{n}: token formula"
                    );
                }
                assert_eq!(res.value, value, "{n}");
                check_response_value(&n, &res.value, res.error);
            }
            (kind, m) => panic!("{n}: kind {kind} but decoded {m:?}"),
        }
    }
    assert_eq!((seen_requests, seen_responses), (6, 4));
}

/// Decodes a request's value with the decoder its command calls for and cross-checks it
/// against the other vector sections.
fn check_request_value(n: &str, req: &Request) {
    let target = req.target.unwrap();
    match req.command {
        command::LOOKUP | command::FIND_PEER => {
            assert_eq!(req.value, None, "{n}");
            assert!(req.token.is_none(), "{n}: query phase sends no token");
        }
        command::ANNOUNCE => {
            let a = Announce::decode(req.value.as_deref().unwrap()).unwrap();
            // This is the `announce_topic_no_relays` signature vector, committed to node_ids[0].
            let p = a.peer.clone().expect("peer");
            let node_id = NodeId::from_addr(&req.to).0;
            assert!(
                sign::verify_announce(
                    &target,
                    &node_id,
                    &req.token.unwrap(),
                    &p,
                    a.refresh.as_ref(),
                    &a.signature.unwrap()
                ),
                "{n}: the committed announce verifies at the node it was sent to"
            );
            assert_eq!(a.bump, 0, "{n}");
            assert_eq!(a.to_bytes(), req.value.clone().unwrap(), "{n}");
        }
        command::MUTABLE_GET => {
            assert_eq!(
                decode_mutable_get_request(req.value.as_deref().unwrap()),
                Ok(0),
                "{n}"
            );
        }
        command::MUTABLE_PUT => {
            let m = MutablePutRequest::decode(req.value.as_deref().unwrap()).unwrap();
            assert_eq!(sign::target_of_key(&m.public_key), target, "{n}");
            assert!(
                sign::verify_mutable(&m.public_key, m.seq, &m.value, &m.signature),
                "{n}"
            );
            assert_eq!(m.to_bytes(), req.value.clone().unwrap(), "{n}");
            assert!(req.token.is_some(), "{n}: commit carries a token");
        }
        command::IMMUTABLE_PUT => {
            assert_eq!(
                sign::target_of_value(req.value.as_deref().unwrap()),
                target,
                "{n}"
            );
            assert!(req.token.is_some(), "{n}: commit carries a token");
        }
        other => panic!("{n}: unexpected command {other}"),
    }
}

fn check_response_value(n: &str, value: &Option<Vec<u8>>, error: u64) {
    match n {
        "frame_lookup_response" => {
            let r = LookupReplyValue::decode(value.as_deref().unwrap()).unwrap();
            assert_eq!(r.peers.len(), 1, "{n}");
            assert_eq!(r.bump, 0, "{n}");
            assert_eq!(r.to_bytes(), value.clone().unwrap(), "{n}");
        }
        "frame_announce_ok_response" => {
            assert_eq!((error, value), (ERROR_OK, &None), "{n}");
        }
        "frame_mutable_put_seq_too_low" => {
            assert_eq!((error, value), (messages::ERROR_SEQ_TOO_LOW, &None), "{n}");
        }
        "frame_mutable_get_response" => {
            let m = MutableGetResponse::decode(value.as_deref().unwrap()).unwrap();
            assert_eq!((m.seq, m.value.as_slice()), (1, &b"world"[..]), "{n}");
            // Signed by kp0 (the `mutable_seq1_world` vector).
            let pk = KeyPair::from_seed(&[0; 32]).public_key();
            assert!(
                sign::verify_mutable(&pk, m.seq, &m.value, &m.signature),
                "{n}"
            );
            assert_eq!(m.to_bytes(), value.clone().unwrap(), "{n}");
        }
        other => panic!("unexpected response frame {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The deterministic parts of the live scenario
// ---------------------------------------------------------------------------------------------

#[test]
fn scenario_deterministic_encodings() {
    let sc = load(SCENARIO);
    let results = get(&sc, "results").as_array().unwrap();
    let find = |title: &str| {
        results
            .iter()
            .find(|r| s(r, "name") == title)
            .unwrap_or_else(|| panic!("scenario has no result named {title:?}"))
    };

    // The raw LOOKUP value (1 peer, no relays, bump 0) and its decoded form.
    let raw = unhex(
        get(
            find("raw lookup value bytes (1 peer, no relays, bump 0)"),
            "observed",
        )
        .as_str()
        .unwrap(),
    );
    let decoded = get(
        get(
            find("LOOKUP after direct announce returns lookupRawReply with the record and bump 0"),
            "observed",
        ),
        "decoded",
    );
    let r = LookupReplyValue::decode(&raw).unwrap();
    let pks: Vec<String> = r.peers.iter().map(|p| hex::encode(p.public_key)).collect();
    let want: Vec<String> = get(decoded, "peers")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pks, want);
    assert_eq!(r.bump, u(decoded, "bump"));
    assert!(r.peers.iter().all(|p| p.relay_addresses.is_empty()));
    assert_eq!(r.to_bytes(), raw);

    // "IMMUTABLE_PUT frame of exactly 2048 bytes": an ephemeral client's commit request (token,
    // target, value) with a 1970-byte value is 2048 bytes, with 1971 bytes it is 2049.
    let obs = get(
        find(
            "IMMUTABLE_PUT frame of exactly 2048 bytes is answered, 2049 bytes is silently ignored",
        ),
        "observed",
    );
    assert_eq!(get(obs, "value1970_frame2048").as_bool(), Some(true));
    for (len, frame_len) in [(1970usize, 2048usize), (1971, 2049)] {
        let value = vec![0x61; len];
        let req = Request {
            tid: 1,
            to: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 49738),
            id: None,
            token: Some([2; 32]),
            internal: false,
            command: command::IMMUTABLE_PUT,
            target: Some(sign::target_of_value(&value)),
            value: Some(value),
        };
        let mut out = Vec::new();
        Message::Request(req).encode(&mut out);
        assert_eq!(out.len(), frame_len);
    }
}
