//! Every wire vector in `tests/vectors/dht-rpc.json` (generated with dht-rpc 6.27.0 and
//! compact-encoding 3.5.2 by `tests/vectors/gen/dht-rpc.js`),
//! checked against `hdht_core::wire` and the node-id helpers.
//!
//! Keys covered: `meta`, `primitives`, `primitive_decode_cases`, `node_ids`, `messages`,
//! `message_decode_cases`, `captured`, `xor_order`.
//!
//! A note on ids: the JS vectors record the id *after* dht-rpc's check that it equals
//! `H(ipv4Address(udp source))` (a mismatching id reads as `null`). The wire decoder keeps the
//! id as sent; that check belongs to the rpc layer. These tests apply it themselves with
//! [`validated_id`] before comparing against the recorded fields.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;

use hdht_core::crypto::hash;
use hdht_core::rpc::{encode_addr, NodeId};
use hdht_core::wire::{
    DecodeError, Message, Reader, Request, Response, Writer, MAX_SAFE_INTEGER, REQUEST_TYPE,
    RESPONSE_TYPE,
};
use serde_json::{Map, Value};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/dht-rpc.json");

fn vectors() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| {
        let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| {
            panic!(
                "cannot read the dht-rpc wire vectors at {VECTORS}: {e}. \
                 These tests need the vector file (regenerate it with tests/vectors/gen); they are never skipped."
            )
        });
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{VECTORS} is not valid JSON: {e}"))
    })
}

/// A non-empty array under `key`.
fn list(key: &str) -> &'static [Value] {
    let v = vectors()
        .get(key)
        .unwrap_or_else(|| panic!("dht-rpc.json has no `{key}` key"))
        .as_array()
        .unwrap_or_else(|| panic!("dht-rpc.json `{key}` is not an array"));
    assert!(!v.is_empty(), "dht-rpc.json `{key}` is empty");
    v
}

// ---------------------------------------------------------------------------------------------
// JSON helpers (all strict: a missing or mistyped field is a test failure, never a skip)
// ---------------------------------------------------------------------------------------------

fn get<'a>(v: &'a Value, key: &str, ctx: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("{ctx}: missing `{key}`"))
}

fn str_of<'a>(v: &'a Value, key: &str, ctx: &str) -> &'a str {
    get(v, key, ctx)
        .as_str()
        .unwrap_or_else(|| panic!("{ctx}: `{key}` is not a string"))
}

fn u64_of(v: &Value, key: &str, ctx: &str) -> u64 {
    get(v, key, ctx)
        .as_u64()
        .unwrap_or_else(|| panic!("{ctx}: `{key}` is not a u64"))
}

fn bool_of(v: &Value, key: &str, ctx: &str) -> bool {
    get(v, key, ctx)
        .as_bool()
        .unwrap_or_else(|| panic!("{ctx}: `{key}` is not a bool"))
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("<unnamed>")
}

fn unhex(s: &str, ctx: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("{ctx}: bad hex {s:?}: {e}"))
}

fn hex32(s: &str, ctx: &str) -> [u8; 32] {
    unhex(s, ctx)
        .try_into()
        .unwrap_or_else(|_| panic!("{ctx}: {s:?} is not 32 bytes"))
}

/// `null` => None, a hex string => Some(32 bytes).
fn opt32(v: &Value, key: &str, ctx: &str) -> Option<[u8; 32]> {
    match get(v, key, ctx) {
        Value::Null => None,
        Value::String(s) => Some(hex32(s, &format!("{ctx}.{key}"))),
        other => panic!("{ctx}: `{key}` is neither null nor a hex string: {other}"),
    }
}

/// `null` => None, a hex string => Some(bytes).
fn opt_bytes(v: &Value, key: &str, ctx: &str) -> Option<Vec<u8>> {
    match get(v, key, ctx) {
        Value::Null => None,
        Value::String(s) => Some(unhex(s, &format!("{ctx}.{key}"))),
        other => panic!("{ctx}: `{key}` is neither null nor a hex string: {other}"),
    }
}

/// `{host, port}` => SocketAddrV4.
fn addr(v: &Value, ctx: &str) -> SocketAddrV4 {
    let host: Ipv4Addr = str_of(v, "host", ctx)
        .parse()
        .unwrap_or_else(|e| panic!("{ctx}: bad host: {e}"));
    let port = u16::try_from(u64_of(v, "port", ctx))
        .unwrap_or_else(|_| panic!("{ctx}: port out of range"));
    SocketAddrV4::new(host, port)
}

fn addr_list(v: &Value, ctx: &str) -> Vec<SocketAddrV4> {
    v.as_array()
        .unwrap_or_else(|| panic!("{ctx}: not an array of addresses"))
        .iter()
        .enumerate()
        .map(|(i, a)| addr(a, &format!("{ctx}[{i}]")))
        .collect()
}

fn assert_keys(v: &Value, expected: &[&str], ctx: &str) {
    let got: BTreeSet<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("{ctx}: not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = expected.iter().copied().collect();
    assert_eq!(
        got, want,
        "{ctx}: unexpected field set (the vectors changed shape?)"
    );
}

const REQUEST_KEYS: &[&str] = &[
    "tid", "to", "id", "token", "internal", "command", "target", "value",
];
const RESPONSE_KEYS: &[&str] = &["tid", "to", "id", "token", "closer_nodes", "error", "value"];

fn request_from_fields(f: &Value, ctx: &str) -> Request {
    assert_keys(f, REQUEST_KEYS, ctx);
    Request {
        tid: u16::try_from(u64_of(f, "tid", ctx)).expect("tid fits u16"),
        to: addr(get(f, "to", ctx), &format!("{ctx}.to")),
        id: opt32(f, "id", ctx),
        token: opt32(f, "token", ctx),
        internal: bool_of(f, "internal", ctx),
        command: u64_of(f, "command", ctx),
        target: opt32(f, "target", ctx),
        value: opt_bytes(f, "value", ctx),
    }
}

fn response_from_fields(f: &Value, ctx: &str) -> Response {
    assert_keys(f, RESPONSE_KEYS, ctx);
    let closer_nodes = match get(f, "closer_nodes", ctx) {
        Value::Null => Vec::new(),
        v => {
            let nodes = addr_list(v, &format!("{ctx}.closer_nodes"));
            // dht-rpc never encodes an empty list (the flag is left clear instead), so a
            // present list in a vector is non-empty.
            assert!(
                !nodes.is_empty(),
                "{ctx}: present but empty closer_nodes in a vector"
            );
            nodes
        }
    };
    Response {
        tid: u16::try_from(u64_of(f, "tid", ctx)).expect("tid fits u16"),
        to: addr(get(f, "to", ctx), &format!("{ctx}.to")),
        id: opt32(f, "id", ctx),
        token: opt32(f, "token", ctx),
        closer_nodes,
        error: u64_of(f, "error", ctx),
        value: opt_bytes(f, "value", ctx),
    }
}

/// The rpc-layer rule (spec §2.5): an id counts only if it equals `H(ipv4Address(udp source))`;
/// otherwise the message is processed as if it carried no id.
fn validated_id(id: Option<[u8; 32]>, udp_from: &SocketAddrV4) -> Option<[u8; 32]> {
    id.filter(|id| *id == NodeId::from_addr(udp_from).0)
}

/// Applies [`validated_id`] to a decoded message.
fn with_validated_id(m: &Message, udp_from: &SocketAddrV4) -> Message {
    match m.clone() {
        Message::Request(mut r) => {
            r.id = validated_id(r.id, udp_from);
            Message::Request(r)
        }
        Message::Response(mut r) => {
            r.id = validated_id(r.id, udp_from);
            Message::Response(r)
        }
    }
}

fn encode_message(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

fn encoded_len(m: &Message) -> usize {
    match m {
        Message::Request(r) => r.encoded_len(),
        Message::Response(r) => r.encoded_len(),
    }
}

fn flags_of(m: &Message) -> u64 {
    match m {
        Message::Request(r) => r.flags(),
        Message::Response(r) => r.flags(),
    }
}

fn map_error(msg: &str, ctx: &str) -> DecodeError {
    if msg == "Out of bounds" {
        DecodeError::OutOfBounds
    } else if msg.starts_with("uint must be between 0 and 9007199254740991") {
        DecodeError::IntegerTooLarge
    } else {
        panic!("{ctx}: unknown reference error message {msg:?}")
    }
}

// ---------------------------------------------------------------------------------------------
// meta
// ---------------------------------------------------------------------------------------------

#[test]
fn meta_matches_reference_versions_and_constants() {
    let meta = get(vectors(), "meta", "dht-rpc.json");
    let pk = get(meta, "packages", "meta");
    assert_eq!(str_of(pk, "dht-rpc", "meta.packages"), "6.27.0");
    assert_eq!(str_of(pk, "compact-encoding", "meta.packages"), "3.5.2");
    let c = get(meta, "constants", "meta");
    assert_eq!(
        u64_of(c, "REQUEST_TYPE_BYTE", "meta.constants"),
        u64::from(REQUEST_TYPE)
    );
    assert_eq!(
        u64_of(c, "RESPONSE_TYPE_BYTE", "meta.constants"),
        u64::from(RESPONSE_TYPE)
    );
    let errors = get(c, "errors", "meta.constants");
    assert_eq!(u64_of(errors, "OK", "errors"), hdht_core::wire::ERROR_OK);
    assert_eq!(
        u64_of(errors, "UNKNOWN_COMMAND", "errors"),
        hdht_core::wire::ERROR_UNKNOWN_COMMAND
    );
    assert_eq!(
        u64_of(errors, "INVALID_TOKEN", "errors"),
        hdht_core::wire::ERROR_INVALID_TOKEN
    );
}

// ---------------------------------------------------------------------------------------------
// primitives
// ---------------------------------------------------------------------------------------------

fn encode_with(f: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut Writer::new(&mut out));
    out
}

/// Runs `f` on a reader over `bytes` and asserts that it consumed every byte.
fn decode_all<'a, T>(
    bytes: &'a [u8],
    ctx: &str,
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> T {
    let mut r = Reader::new(bytes);
    let v = f(&mut r).unwrap_or_else(|e| panic!("{ctx}: decode failed: {e:?}"));
    assert!(
        r.remaining().is_empty(),
        "{ctx}: decode left {} bytes",
        r.remaining().len()
    );
    v
}

#[test]
fn primitives_encode_and_decode() {
    let mut seen = BTreeSet::new();
    let prims = list("primitives");
    for p in prims {
        let name = name_of(p);
        let codec = str_of(p, "codec", name);
        let fields = get(p, "fields", name);
        let want = unhex(str_of(p, "hex", name), name);
        seen.insert(codec);
        match codec {
            "uint" => {
                let v = u64_of(fields, "value", name);
                assert!(v <= MAX_SAFE_INTEGER);
                assert_eq!(encode_with(|w| w.uint(v)), want, "{name}: encode");
                assert_eq!(decode_all(&want, name, |r| r.uint()), v, "{name}: decode");
            }
            "uint16" => {
                let v = u16::try_from(u64_of(fields, "value", name)).unwrap();
                assert_eq!(encode_with(|w| w.u16(v)), want, "{name}: encode");
                assert_eq!(decode_all(&want, name, |r| r.u16()), v, "{name}: decode");
            }
            "uint32" => {
                let v = u32::try_from(u64_of(fields, "value", name)).unwrap();
                assert_eq!(encode_with(|w| w.u32(v)), want, "{name}: encode");
                assert_eq!(decode_all(&want, name, |r| r.u32()), v, "{name}: decode");
            }
            "uint64" => {
                let v = u64_of(fields, "value", name);
                assert_eq!(encode_with(|w| w.u64(v)), want, "{name}: encode");
                assert_eq!(decode_all(&want, name, |r| r.u64()), v, "{name}: decode");
            }
            "bool" => {
                let v = bool_of(fields, "value", name);
                assert_eq!(encode_with(|w| w.bool(v)), want, "{name}: encode");
                assert_eq!(decode_all(&want, name, |r| r.bool()), v, "{name}: decode");
            }
            "buffer" => {
                let v = unhex(str_of(fields, "value", name), name);
                assert_eq!(encode_with(|w| w.buffer(&v)), want, "{name}: encode");
                assert_eq!(
                    decode_all(&want, name, |r| r.buffer()),
                    &v[..],
                    "{name}: decode"
                );
            }
            "string" => {
                let v = str_of(fields, "value", name);
                assert_eq!(encode_with(|w| w.utf8(v)), want, "{name}: encode");
                let got = decode_all(&want, name, |r| r.utf8());
                assert_eq!(
                    std::str::from_utf8(got).expect("valid UTF-8"),
                    v,
                    "{name}: decode"
                );
            }
            "fixed32" => {
                let v = hex32(str_of(fields, "value", name), name);
                assert_eq!(encode_with(|w| w.fixed32(&v)), want, "{name}: encode");
                assert_eq!(
                    decode_all(&want, name, |r| r.fixed32()),
                    v,
                    "{name}: decode"
                );
            }
            "ipv4Address" => {
                let v = addr(fields, name);
                assert_eq!(encode_with(|w| w.ipv4(&v)), want, "{name}: encode");
                assert_eq!(decode_all(&want, name, |r| r.ipv4()), v, "{name}: decode");
                assert_eq!(encode_addr(&v).to_vec(), want, "{name}: rpc::encode_addr");
            }
            "ipv4Array" => {
                let v = addr_list(get(fields, "value", name), name);
                assert_eq!(encode_with(|w| w.ipv4_array(&v)), want, "{name}: encode");
                assert_eq!(
                    decode_all(&want, name, |r| r.ipv4_array()),
                    v,
                    "{name}: decode"
                );
            }
            "array<uint>" => {
                let v: Vec<u64> = get(fields, "value", name)
                    .as_array()
                    .expect("array<uint> value is an array")
                    .iter()
                    .map(|x| x.as_u64().expect("array<uint> element is a u64"))
                    .collect();
                assert_eq!(encode_with(|w| w.uint_array(&v)), want, "{name}: encode");
                assert_eq!(
                    decode_all(&want, name, |r| r.uint_array()),
                    v,
                    "{name}: decode"
                );
            }
            other => panic!("{name}: unknown primitive codec {other:?} (add it to this test)"),
        }
    }
    let expected: BTreeSet<&str> = [
        "uint",
        "uint16",
        "uint32",
        "uint64",
        "bool",
        "buffer",
        "string",
        "fixed32",
        "ipv4Address",
        "ipv4Array",
        "array<uint>",
    ]
    .into_iter()
    .collect();
    assert_eq!(
        seen, expected,
        "every primitive codec is covered by at least one vector"
    );
    eprintln!("primitives: {} vectors checked", prims.len());
}

#[test]
fn primitive_decode_cases() {
    let cases = list("primitive_decode_cases");
    for c in cases {
        let name = name_of(c);
        let codec = str_of(c, "codec", name);
        let input = unhex(str_of(c, "hex", name), name);
        let result = get(c, "result", name);
        let mut r = Reader::new(&input);
        // Decode with the codec, rendering the value the way the generator's JSON does.
        let got: Result<Value, DecodeError> = match codec {
            "uint" => r.uint().map(Value::from),
            "uint16" => r.u16().map(Value::from),
            "uint32" => r.u32().map(Value::from),
            "uint64" => r.u64().map(Value::from),
            "bool" => r.bool().map(Value::from),
            "buffer" => r.buffer().map(|b| Value::from(hex::encode(b))),
            "string" => r
                .utf8()
                .map(|b| Value::from(String::from_utf8(b.to_vec()).unwrap())),
            "fixed32" => r.fixed32().map(|b| Value::from(hex::encode(b))),
            "ipv4Address" => r
                .ipv4()
                .map(|a| serde_json::json!({"host": a.ip().to_string(), "port": a.port()})),
            other => panic!("{name}: unknown codec {other:?} in primitive_decode_cases"),
        };
        let consumed = input.len() - r.remaining().len();
        if bool_of(result, "ok", name) {
            let v = got.unwrap_or_else(|e| {
                panic!("{name}: reference accepts {input:02x?}, we fail: {e:?}")
            });
            assert_eq!(&v, get(result, "value", name), "{name}: value");
            assert_eq!(
                consumed as u64,
                u64_of(result, "consumed", name),
                "{name}: consumed bytes"
            );
        } else {
            let want = map_error(str_of(result, "error", name), name);
            match got {
                Ok(v) => panic!("{name}: reference rejects {input:02x?}, we decoded {v}"),
                Err(e) => assert_eq!(e, want, "{name}: error kind"),
            }
        }
    }
    eprintln!("primitive_decode_cases: {} vectors checked", cases.len());
}

// ---------------------------------------------------------------------------------------------
// node ids and XOR order
// ---------------------------------------------------------------------------------------------

#[test]
fn node_ids() {
    let ids = list("node_ids");
    for n in ids {
        let name = name_of(n);
        let a = addr(get(n, "fields", name), name);
        let addr_hex = unhex(str_of(n, "addr_hex", name), name);
        let id = hex32(str_of(n, "id_hex", name), name);
        assert_eq!(encode_addr(&a).to_vec(), addr_hex, "{name}: 6-byte address");
        assert_eq!(
            encode_with(|w| w.ipv4(&a)),
            addr_hex,
            "{name}: Writer::ipv4"
        );
        assert_eq!(hash(&addr_hex), id, "{name}: BLAKE2b-256 of the address");
        assert_eq!(
            NodeId::from_addr(&a),
            NodeId(id),
            "{name}: NodeId::from_addr"
        );
    }
    eprintln!("node_ids: {} vectors checked", ids.len());
}

#[test]
fn xor_order() {
    let x = get(vectors(), "xor_order", "dht-rpc.json");
    let target = NodeId(hex32(str_of(x, "target", "xor_order"), "xor_order.target"));
    let parse = |key: &str| -> Vec<NodeId> {
        get(x, key, "xor_order")
            .as_array()
            .unwrap_or_else(|| panic!("xor_order.{key} is not an array"))
            .iter()
            .map(|h| NodeId(hex32(h.as_str().expect("hex id"), "xor_order")))
            .collect()
    };
    let ids = parse("ids");
    let want = parse("sorted");
    assert_eq!(ids.len(), want.len());
    assert!(ids.len() >= 2);
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| target.cmp_distance(a, b));
    assert_eq!(sorted, want, "ascending XOR distance to the target");
    // cmp_distance is a consistent total order on this set.
    for a in &ids {
        assert_eq!(target.cmp_distance(a, a), std::cmp::Ordering::Equal);
        for b in &ids {
            assert_eq!(
                target.cmp_distance(a, b),
                target.cmp_distance(b, a).reverse()
            );
        }
    }
    // The target itself is in the set and sorts first (distance 0).
    assert_eq!(want[0], target);
    eprintln!("xor_order: {} ids checked", ids.len());
}

// ---------------------------------------------------------------------------------------------
// messages
// ---------------------------------------------------------------------------------------------

fn message_from_vector(kind: &str, fields: &Value, ctx: &str) -> Message {
    match kind {
        "request" => Message::Request(request_from_fields(fields, ctx)),
        "response" => Message::Response(response_from_fields(fields, ctx)),
        other => panic!("{ctx}: unknown kind {other:?}"),
    }
}

/// Asserts `bytes` decodes to `want` (after the rpc-layer id check against `udp_from`) and that
/// re-encoding the decoded message reproduces `bytes` exactly.
fn check_decode_reencode(bytes: &[u8], want: &Message, udp_from: &SocketAddrV4, ctx: &str) {
    let decoded = Message::decode(bytes).unwrap_or_else(|e| panic!("{ctx}: decode failed: {e:?}"));
    assert_eq!(
        &with_validated_id(&decoded, udp_from),
        want,
        "{ctx}: decoded fields"
    );
    assert_eq!(
        encode_message(&decoded),
        bytes,
        "{ctx}: re-encode is not byte-identical"
    );
    assert_eq!(encoded_len(&decoded), bytes.len(), "{ctx}: encoded_len");
}

#[test]
fn messages_encode_byte_exact_and_decode() {
    let msgs = list("messages");
    let (mut requests, mut responses) = (0, 0);
    for m in msgs {
        let name = name_of(m);
        let kind = str_of(m, "kind", name);
        let bytes = unhex(str_of(m, "hex", name), name);
        let udp_from = addr(get(m, "udp_from", name), name);
        let built = message_from_vector(kind, get(m, "fields", name), name);

        // Encode == hex, byte for byte.
        let encoded = encode_message(&built);
        assert_eq!(hex::encode(&encoded), hex::encode(&bytes), "{name}: encode");
        assert_eq!(encoded_len(&built), bytes.len(), "{name}: encoded_len");
        match &built {
            Message::Request(r) => {
                assert_eq!(r.to_bytes(), bytes, "{name}: Request::to_bytes");
                requests += 1;
            }
            Message::Response(r) => {
                assert_eq!(r.to_bytes(), bytes, "{name}: Response::to_bytes");
                responses += 1;
            }
        }
        assert_eq!(
            flags_of(&built),
            u64_of(m, "flags", name),
            "{name}: flags byte"
        );
        assert_eq!(
            u64::from(bytes[1]),
            u64_of(m, "flags", name),
            "{name}: flags on the wire"
        );

        // A persistent sender's id is H(its address); an ephemeral sender sends none.
        let id = match &built {
            Message::Request(r) => r.id,
            Message::Response(r) => r.id,
        };
        if bool_of(m, "sender_persistent", name) {
            assert_eq!(
                id,
                Some(NodeId::from_addr(&udp_from).0),
                "{name}: persistent sender id"
            );
        } else {
            assert_eq!(id, None, "{name}: ephemeral sender sends no id");
        }

        // Decode(hex) == fields; the raw decode already equals the fields (every vector id is
        // valid for its udp_from), and the id check must not change that.
        let decoded =
            Message::decode(&bytes).unwrap_or_else(|e| panic!("{name}: decode failed: {e:?}"));
        assert_eq!(decoded, built, "{name}: decode");
        check_decode_reencode(&bytes, &built, &udp_from, name);

        // Layout segments tile the datagram and agree with our bytes.
        let mut off = 0usize;
        for seg in get(m, "layout", name)
            .as_array()
            .expect("layout is an array")
        {
            let o = usize::try_from(u64_of(seg, "offset", name)).unwrap();
            let l = usize::try_from(u64_of(seg, "length", name)).unwrap();
            assert_eq!(o, off, "{name}: layout is contiguous");
            assert_eq!(
                hex::encode(&encoded[o..o + l]),
                str_of(seg, "hex", name),
                "{name}: layout {}",
                str_of(seg, "field", name)
            );
            off += l;
        }
        assert_eq!(off, bytes.len(), "{name}: layout covers every byte");

        // A response also carries the request it answers: that request must round-trip too,
        // and its tid is the one the response echoes.
        if let Message::Response(res) = &built {
            let req_bytes = unhex(str_of(m, "in_reply_to_hex", name), name);
            let req = match Message::decode(&req_bytes) {
                Ok(Message::Request(r)) => r,
                other => panic!("{name}: in_reply_to_hex is not a request: {other:?}"),
            };
            assert_eq!(req.to_bytes(), req_bytes, "{name}: in_reply_to re-encode");
            assert_eq!(
                req.encoded_len(),
                req_bytes.len(),
                "{name}: in_reply_to encoded_len"
            );
            assert_eq!(req.tid, res.tid, "{name}: response echoes the request tid");
        }
    }
    assert!(requests > 0 && responses > 0);
    eprintln!(
        "messages: {} vectors checked ({requests} requests, {responses} responses)",
        msgs.len()
    );
}

#[test]
fn message_decode_cases() {
    let cases = list("message_decode_cases");
    let mut id_checks = 0;
    for c in cases {
        let name = name_of(c);
        let bytes = unhex(str_of(c, "hex", name), name);
        let udp_from = addr(get(c, "udp_from", name), name);
        let decoded = Message::decode(&bytes);
        match get(c, "result", name) {
            Value::Null => {
                let e = decoded.expect_err(&format!("{name}: the reference drops this datagram"));
                // The error is the right one for the reason the vector gives.
                match bytes[0] {
                    REQUEST_TYPE | RESPONSE_TYPE => {
                        assert_eq!(e, DecodeError::OutOfBounds, "{name}: truncation error")
                    }
                    b => assert_eq!(e, DecodeError::UnknownType(b), "{name}: type error"),
                }
            }
            Value::Object(obj) => {
                let mut fields: Map<String, Value> = obj.clone();
                let kind = fields
                    .remove("type")
                    .and_then(|t| t.as_str().map(str::to_owned));
                let kind = kind.unwrap_or_else(|| panic!("{name}: result has no type"));
                let want = message_from_vector(&kind, &Value::Object(fields), name);
                let decoded = decoded.unwrap_or_else(|e| panic!("{name}: decode failed: {e:?}"));

                // The wire decoder keeps the id as sent; the rpc layer's check against the UDP
                // source is what turns a mismatching id into "absent".
                let raw_id = match &decoded {
                    Message::Request(r) => r.id,
                    Message::Response(r) => r.id,
                };
                let want_id = match &want {
                    Message::Request(r) => r.id,
                    Message::Response(r) => r.id,
                };
                if raw_id.is_some() {
                    id_checks += 1;
                    let expected_valid = raw_id == Some(NodeId::from_addr(&udp_from).0);
                    assert_eq!(want_id.is_some(), expected_valid, "{name}: id validity");
                    if name == "decode_id_mismatch_ignored" {
                        assert!(
                            !expected_valid,
                            "{name}: the id must not match the UDP source"
                        );
                    }
                }
                assert_eq!(
                    with_validated_id(&decoded, &udp_from),
                    want,
                    "{name}: decoded fields"
                );

                // Re-encoding gives the canonical form: trailing bytes dropped, unknown flag bits
                // cleared and the flags varint minimal. Decoding that gives the same message.
                let canon = encode_message(&decoded);
                assert_eq!(
                    Message::decode(&canon).as_ref(),
                    Ok(&decoded),
                    "{name}: canonical round trip"
                );
                assert!(
                    canon.len() <= bytes.len(),
                    "{name}: canonical form is never longer"
                );
            }
            other => panic!("{name}: unexpected result {other}"),
        }
    }
    assert!(
        id_checks >= 2,
        "both the valid and the mismatching id case were exercised"
    );

    // The cases the generator documents, by name, so a regenerated file can't silently drop one.
    let names: BTreeSet<&str> = cases.iter().map(name_of).collect();
    for n in [
        "decode_id_mismatch_ignored",
        "decode_id_valid",
        "decode_trailing_bytes_ignored",
        "decode_truncated_request",
        "decode_unknown_flag_bits_ignored",
        "decode_noncanonical_flags_varint",
        "decode_wrong_version",
        "decode_response_truncated_closer",
    ] {
        assert!(names.contains(n), "message_decode_cases lacks {n}");
    }
    eprintln!("message_decode_cases: {} vectors checked", cases.len());
}

/// The leniency cases re-encode to specific canonical datagrams.
#[test]
fn message_decode_cases_canonical_forms() {
    let cases = list("message_decode_cases");
    let by_name = |n: &str| {
        let c = cases
            .iter()
            .find(|c| name_of(c) == n)
            .unwrap_or_else(|| panic!("no {n}"));
        unhex(str_of(c, "hex", n), n)
    };
    let ping = unhex(
        str_of(
            list("messages")
                .iter()
                .find(|m| name_of(m) == "req_ping_ephemeral")
                .expect("req_ping_ephemeral"),
            "hex",
            "req_ping_ephemeral",
        ),
        "req_ping_ephemeral",
    );
    for n in [
        "decode_trailing_bytes_ignored",
        "decode_unknown_flag_bits_ignored",
        "decode_noncanonical_flags_varint",
    ] {
        let m = Message::decode(&by_name(n)).unwrap_or_else(|e| panic!("{n}: {e:?}"));
        assert_eq!(
            encode_message(&m),
            ping,
            "{n}: canonical re-encoding is req_ping_ephemeral"
        );
    }
}

#[test]
fn captured_datagrams_decode_and_reencode_identically() {
    let caps = list("captured");
    let (mut requests, mut responses, mut with_id) = (0, 0, 0);
    for c in caps {
        let name = name_of(c);
        let kind = str_of(c, "kind", name);
        let bytes = unhex(str_of(c, "hex", name), name);
        let udp_from = addr(get(c, "udp_from", name), name);
        let want = message_from_vector(kind, get(c, "fields", name), name);
        match &want {
            Message::Request(_) => requests += 1,
            Message::Response(_) => responses += 1,
        }
        check_decode_reencode(&bytes, &want, &udp_from, name);
        if matches!(
            &want,
            Message::Request(Request { id: Some(_), .. })
                | Message::Response(Response { id: Some(_), .. })
        ) {
            with_id += 1;
        }
    }
    assert_eq!(requests + responses, caps.len());
    eprintln!(
        "captured: {} datagrams checked ({requests} requests, {responses} responses, {with_id} with a valid id)",
        caps.len()
    );
}
