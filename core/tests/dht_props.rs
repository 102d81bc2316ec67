//! Property tests for `hdht_core::dht::messages` and `hdht_core::dht::sign`: round trips for
//! every message, the reference's decoder leniency (trailing bytes, unknown flag bits) and
//! strictness (truncation, integers above 2^53 − 1), arbitrary and mutated input never panicking,
//! sign/verify over random key pairs and records, tampering being rejected, and libsodium-parity
//! edge cases of Ed25519 verification (small-order keys, non-canonical `S` and keys).
//!
//! The number of cases per property can be raised with `QUICKCHECK_TESTS=<n>`.

mod prop_common;

use std::net::{Ipv4Addr, SocketAddrV4};

use hdht_core::crypto::KeyPair;
use hdht_core::dht::messages::{
    decode_mutable_get_request, encode_lookup_reply, encode_mutable_get_request, Announce,
    HandshakeEnvelope, HolepunchEnvelope, LookupReplyValue, MutableGetResponse, MutablePutRequest,
    Peer, PluginRequest,
};
use hdht_core::dht::sign;
use hdht_core::wire::{DecodeError, MAX_SAFE_INTEGER};
use prop_common::{arb_addr4, arb_opt, arb_uint_every_width};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

fn qc() -> QuickCheck {
    prop_common::qc(300)
}

/// Cases for the Ed25519 properties (each case derives keys, signs and verifies many times).
fn qc_crypto() -> QuickCheck {
    prop_common::qc(200)
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

fn arb_bytes(g: &mut Gen) -> Vec<u8> {
    // Mostly short, sometimes long enough to need a 3-byte length prefix.
    let len = if u8::arbitrary(g) % 16 == 0 {
        253 + usize::arbitrary(g) % 300
    } else {
        usize::arbitrary(g) % 24
    };
    (0..len).map(|_| u8::arbitrary(g)).collect()
}

fn arb_peer(g: &mut Gen) -> Peer {
    let n = usize::arbitrary(g) % 6;
    Peer {
        public_key: <[u8; 32]>::arbitrary(g),
        relay_addresses: (0..n).map(|_| arb_addr4(g)).collect(),
    }
}

macro_rules! wrapper {
    ($w:ident, $t:ty, |$g:ident| $body:expr) => {
        #[derive(Debug, Clone)]
        struct $w($t);
        impl Arbitrary for $w {
            fn arbitrary($g: &mut Gen) -> Self {
                $w($body)
            }
        }
    };
}

wrapper!(APeer, Peer, |g| arb_peer(g));
wrapper!(AAnnounce, Announce, |g| Announce {
    peer: bool::arbitrary(g).then(|| arb_peer(g)),
    refresh: bool::arbitrary(g).then(|| <[u8; 32]>::arbitrary(g)),
    signature: bool::arbitrary(g).then(|| <[u8; 64]>::arbitrary(g)),
    bump: if bool::arbitrary(g) {
        0
    } else {
        arb_uint_every_width(g)
    },
});
wrapper!(ALookup, LookupReplyValue, |g| {
    let n = usize::arbitrary(g) % 5;
    LookupReplyValue {
        peers: (0..n).map(|_| arb_peer(g)).collect(),
        bump: arb_uint_every_width(g),
    }
});
wrapper!(APut, MutablePutRequest, |g| MutablePutRequest {
    public_key: <[u8; 32]>::arbitrary(g),
    seq: arb_uint_every_width(g),
    value: arb_bytes(g),
    signature: <[u8; 64]>::arbitrary(g),
});
wrapper!(AGet, MutableGetResponse, |g| MutableGetResponse {
    seq: arb_uint_every_width(g),
    value: arb_bytes(g),
    signature: <[u8; 64]>::arbitrary(g),
});
wrapper!(AHandshake, HandshakeEnvelope, |g| HandshakeEnvelope {
    mode: arb_uint_every_width(g),
    noise: arb_bytes(g),
    peer_address: arb_opt(g, arb_addr4),
    relay_address: arb_opt(g, arb_addr4),
});
wrapper!(AHolepunch, HolepunchEnvelope, |g| HolepunchEnvelope {
    mode: arb_uint_every_width(g),
    id: arb_uint_every_width(g),
    payload: arb_bytes(g),
    peer_address: arb_opt(g, arb_addr4),
});
wrapper!(APlugin, PluginRequest, |g| PluginRequest {
    plugin: arb_bytes(g),
    version: arb_uint_every_width(g),
    command: arb_uint_every_width(g),
    value: bool::arbitrary(g).then(|| arb_bytes(g)),
});
wrapper!(AUint, u64, |g| arb_uint_every_width(g));

/// Any message, for the "decoding is total" properties.
#[derive(Debug, Clone)]
enum AnyMsg {
    Peer(Peer),
    Announce(Announce),
    Lookup(LookupReplyValue),
    Put(MutablePutRequest),
    Get(MutableGetResponse),
    GetReq(u64),
    Handshake(HandshakeEnvelope),
    Holepunch(HolepunchEnvelope),
    Plugin(PluginRequest),
}

impl Arbitrary for AnyMsg {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 9 {
            0 => AnyMsg::Peer(APeer::arbitrary(g).0),
            1 => AnyMsg::Announce(AAnnounce::arbitrary(g).0),
            2 => AnyMsg::Lookup(ALookup::arbitrary(g).0),
            3 => AnyMsg::Put(APut::arbitrary(g).0),
            4 => AnyMsg::Get(AGet::arbitrary(g).0),
            5 => AnyMsg::GetReq(arb_uint_every_width(g)),
            6 => AnyMsg::Handshake(AHandshake::arbitrary(g).0),
            7 => AnyMsg::Holepunch(AHolepunch::arbitrary(g).0),
            _ => AnyMsg::Plugin(APlugin::arbitrary(g).0),
        }
    }
}

impl AnyMsg {
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            AnyMsg::Peer(m) => m.to_bytes(),
            AnyMsg::Announce(m) => m.to_bytes(),
            AnyMsg::Lookup(m) => m.to_bytes(),
            AnyMsg::Put(m) => m.to_bytes(),
            AnyMsg::Get(m) => m.to_bytes(),
            AnyMsg::GetReq(m) => encode_mutable_get_request(*m),
            AnyMsg::Handshake(m) => m.to_bytes(),
            AnyMsg::Holepunch(m) => m.to_bytes(),
            AnyMsg::Plugin(m) => m.to_bytes(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

/// Round trip, `encode` appends, trailing bytes are ignored, and every strict prefix fails
/// (except prefixes listed in `decodable_prefix`, which must decode to `prefix_value`).
fn check_codec<T: PartialEq + std::fmt::Debug>(
    value: &T,
    encode: impl Fn(&T, &mut Vec<u8>),
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
    trailing: &[u8],
    decodable_prefix: Option<(usize, T)>,
) -> bool {
    let mut enc = Vec::new();
    encode(value, &mut enc);
    if decode(&enc).as_ref() != Ok(value) {
        return false;
    }
    let mut appended = vec![0xee, 0xdd];
    encode(value, &mut appended);
    if appended[2..] != enc[..] {
        return false;
    }
    let mut with_tail = enc.clone();
    with_tail.extend_from_slice(trailing);
    if decode(&with_tail).as_ref() != Ok(value) {
        return false;
    }
    (0..enc.len()).all(|cut| match &decodable_prefix {
        Some((len, v)) if *len == cut => decode(&enc[..cut]).as_ref() == Ok(v),
        _ => decode(&enc[..cut]).is_err(),
    })
}

#[test]
fn roundtrip_peer() {
    fn prop(p: APeer, tail: Vec<u8>) -> bool {
        check_codec(&p.0, Peer::encode, Peer::decode, &tail, None)
    }
    qc().quickcheck(prop as fn(APeer, Vec<u8>) -> bool);
}

#[test]
fn roundtrip_announce() {
    fn prop(a: AAnnounce, tail: Vec<u8>) -> bool {
        let a = a.0;
        let bytes = a.to_bytes();
        let flags = u64::from(a.peer.is_some())
            | (u64::from(a.refresh.is_some()) << 1)
            | (u64::from(a.signature.is_some()) << 2)
            | (u64::from(a.bump != 0) << 3);
        bytes[0] as u64 == flags && check_codec(&a, Announce::encode, Announce::decode, &tail, None)
    }
    qc().quickcheck(prop as fn(AAnnounce, Vec<u8>) -> bool);
}

#[test]
fn roundtrip_lookup_reply() {
    fn prop(r: ALookup, tail: Vec<u8>) -> bool {
        let r = r.0;
        // Without its bump the reply is a legacy reply: it decodes with bump 0.
        let bump_len = encode_mutable_get_request(r.bump).len();
        let full = r.to_bytes();
        let legacy = LookupReplyValue {
            peers: r.peers.clone(),
            bump: 0,
        };
        // Raw-record encoding equals the structured one.
        let recs: Vec<Vec<u8>> = r.peers.iter().map(Peer::to_bytes).collect();
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        let mut raw = Vec::new();
        encode_lookup_reply(&refs, r.bump, &mut raw);
        raw == full
            && check_codec(
                &r,
                LookupReplyValue::encode,
                LookupReplyValue::decode,
                &tail,
                Some((full.len() - bump_len, legacy)),
            )
    }
    qc().quickcheck(prop as fn(ALookup, Vec<u8>) -> bool);
}

#[test]
fn roundtrip_mutable_put_request() {
    fn prop(m: APut, tail: Vec<u8>) -> bool {
        check_codec(
            &m.0,
            MutablePutRequest::encode,
            MutablePutRequest::decode,
            &tail,
            None,
        )
    }
    qc().quickcheck(prop as fn(APut, Vec<u8>) -> bool);
}

#[test]
fn roundtrip_mutable_get_response() {
    fn prop(m: AGet, tail: Vec<u8>) -> bool {
        let put = MutablePutRequest {
            public_key: [7; 32],
            seq: m.0.seq,
            value: m.0.value.clone(),
            signature: m.0.signature,
        };
        put.to_bytes()[32..] == m.0.to_bytes()[..]
            && check_codec(
                &m.0,
                MutableGetResponse::encode,
                MutableGetResponse::decode,
                &tail,
                None,
            )
    }
    qc().quickcheck(prop as fn(AGet, Vec<u8>) -> bool);
}

#[test]
fn roundtrip_mutable_get_request() {
    fn prop(seq: AUint, tail: Vec<u8>) -> bool {
        check_codec(
            &seq.0,
            |s, out| out.extend(encode_mutable_get_request(*s)),
            decode_mutable_get_request,
            &tail,
            None,
        )
    }
    qc().quickcheck(prop as fn(AUint, Vec<u8>) -> bool);
}

#[test]
fn roundtrip_handshake_envelope() {
    fn prop(m: AHandshake, tail: Vec<u8>) -> bool {
        check_codec(
            &m.0,
            HandshakeEnvelope::encode,
            HandshakeEnvelope::decode,
            &tail,
            None,
        )
    }
    qc().quickcheck(prop as fn(AHandshake, Vec<u8>) -> bool);
}

#[test]
fn roundtrip_holepunch_envelope() {
    fn prop(m: AHolepunch, tail: Vec<u8>) -> bool {
        check_codec(
            &m.0,
            HolepunchEnvelope::encode,
            HolepunchEnvelope::decode,
            &tail,
            None,
        )
    }
    qc().quickcheck(prop as fn(AHolepunch, Vec<u8>) -> bool);
}

#[test]
fn roundtrip_plugin_request() {
    fn prop(m: APlugin, tail: Vec<u8>) -> bool {
        check_codec(
            &m.0,
            PluginRequest::encode,
            PluginRequest::decode,
            &tail,
            None,
        )
    }
    qc().quickcheck(prop as fn(APlugin, Vec<u8>) -> bool);
}

#[test]
fn to_bytes_equals_encode() {
    fn prop(m: AnyMsg) -> bool {
        let a = m.to_bytes();
        let mut b = Vec::new();
        match &m {
            AnyMsg::Peer(x) => x.encode(&mut b),
            AnyMsg::Announce(x) => x.encode(&mut b),
            AnyMsg::Lookup(x) => x.encode(&mut b),
            AnyMsg::Put(x) => x.encode(&mut b),
            AnyMsg::Get(x) => x.encode(&mut b),
            AnyMsg::GetReq(x) => b = encode_mutable_get_request(*x),
            AnyMsg::Handshake(x) => x.encode(&mut b),
            AnyMsg::Holepunch(x) => x.encode(&mut b),
            AnyMsg::Plugin(x) => x.encode(&mut b),
        }
        a == b
    }
    qc().quickcheck(prop as fn(AnyMsg) -> bool);
}

// ---------------------------------------------------------------------------------------------
// Leniency and strictness details
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_flag_bits_are_ignored() {
    fn prop(a: AAnnounce, h: AHandshake, hp: AHolepunch, p: APlugin, extra: u8) -> bool {
        // Bits above the known ones, still a 1-byte uint (≤ 0xfc).
        let hi = u64::from(extra % 0x0f) << 4;
        let mut ab = a.0.to_bytes();
        ab[0] |= hi as u8;
        let mut hb = h.0.to_bytes();
        hb[0] |= (u64::from(extra % 0x3f) << 2) as u8;
        let mut hpb = hp.0.to_bytes();
        hpb[0] |= (u64::from(extra % 0x7e) << 1) as u8;
        let mut pb = p.0.to_bytes();
        let flags_at = pb.len()
            - p.0.value.as_ref().map_or(0, |v| {
                encode_mutable_get_request(v.len() as u64).len() + v.len()
            })
            - 1;
        pb[flags_at] |= (u64::from(extra % 0x7e) << 1) as u8;
        Announce::decode(&ab).as_ref() == Ok(&a.0)
            && HandshakeEnvelope::decode(&hb).as_ref() == Ok(&h.0)
            && HolepunchEnvelope::decode(&hpb).as_ref() == Ok(&hp.0)
            && PluginRequest::decode(&pb).as_ref() == Ok(&p.0)
    }
    qc().quickcheck(prop as fn(AAnnounce, AHandshake, AHolepunch, APlugin, u8) -> bool);
}

#[test]
fn non_minimal_uints_decode_and_reencode_minimally() {
    // flags written as `fd 05 00` (= 5): accepted, and the canonical re-encoding is minimal.
    let a = Announce {
        peer: Some(Peer::default()),
        refresh: None,
        signature: Some([9; 64]),
        bump: 0,
    };
    let canonical = a.to_bytes();
    let mut loose = vec![0xfd, 0x05, 0x00];
    loose.extend_from_slice(&canonical[1..]);
    let d = Announce::decode(&loose).unwrap();
    assert_eq!(d, a);
    assert_eq!(d.to_bytes(), canonical);
    assert_eq!(
        decode_mutable_get_request(&[0xff, 7, 0, 0, 0, 0, 0, 0, 0]),
        Ok(7)
    );
}

/// A 9-byte `uint` holding 2^53.
const TOO_BIG: [u8; 9] = [0xff, 0, 0, 0, 0, 0, 0, 0x20, 0];

#[test]
fn integers_above_2_pow_53_minus_1_are_errors() {
    let max = {
        let mut v = vec![0xff];
        v.extend_from_slice(&MAX_SAFE_INTEGER.to_le_bytes());
        v
    };
    assert_eq!(decode_mutable_get_request(&max), Ok(MAX_SAFE_INTEGER));
    assert_eq!(
        decode_mutable_get_request(&TOO_BIG),
        Err(DecodeError::IntegerTooLarge)
    );
    assert_eq!(
        decode_mutable_get_request(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Err(DecodeError::IntegerTooLarge)
    );

    let too_big = |prefix: &[u8], suffix: &[u8]| [prefix, &TOO_BIG, suffix].concat();
    // flags
    assert_eq!(
        Announce::decode(&too_big(&[], &[])),
        Err(DecodeError::IntegerTooLarge)
    );
    // bump
    assert_eq!(
        Announce::decode(&too_big(&[8], &[])),
        Err(DecodeError::IntegerTooLarge)
    );
    // lookup count, lookup bump
    assert_eq!(
        LookupReplyValue::decode(&too_big(&[], &[])),
        Err(DecodeError::IntegerTooLarge)
    );
    assert_eq!(
        LookupReplyValue::decode(&too_big(&[0], &[])),
        Err(DecodeError::IntegerTooLarge)
    );
    // seq
    let sig = [1u8; 64];
    assert_eq!(
        MutablePutRequest::decode(&[&[3u8; 32][..], &TOO_BIG, &[0], &sig].concat()),
        Err(DecodeError::IntegerTooLarge)
    );
    assert_eq!(
        MutableGetResponse::decode(&too_big(&[], &[0])),
        Err(DecodeError::IntegerTooLarge)
    );
    // envelope mode and id, plugin version and command
    assert_eq!(
        HandshakeEnvelope::decode(&too_big(&[0], &[0])),
        Err(DecodeError::IntegerTooLarge)
    );
    assert_eq!(
        HolepunchEnvelope::decode(&too_big(&[0], &[0, 0])),
        Err(DecodeError::IntegerTooLarge)
    );
    assert_eq!(
        HolepunchEnvelope::decode(&too_big(&[0, 0], &[0])),
        Err(DecodeError::IntegerTooLarge)
    );
    assert_eq!(
        PluginRequest::decode(&too_big(&[0], &[0, 0])),
        Err(DecodeError::IntegerTooLarge)
    );
    assert_eq!(
        PluginRequest::decode(&too_big(&[0, 0], &[0])),
        Err(DecodeError::IntegerTooLarge)
    );
}

#[test]
fn hostile_counts_are_rejected_before_allocating() {
    // 0x100000 peers claimed, none present.
    assert_eq!(
        LookupReplyValue::decode(&[0xfe, 0, 0, 0x10, 0]),
        Err(DecodeError::OutOfBounds)
    );
    assert_eq!(
        LookupReplyValue::decode(&[0xfe, 1, 0, 0x10, 0]),
        Err(DecodeError::ArrayTooLong(0x10_0001))
    );
    assert!(Peer::decode(&[&[0u8; 32][..], &[0xfe, 0xff, 0xff, 0xff, 0x7f]].concat()).is_err());
    // A buffer length far past the input.
    assert_eq!(
        MutableGetResponse::decode(&[0, 0xfe, 0xff, 0xff, 0xff, 0xff]),
        Err(DecodeError::OutOfBounds)
    );
}

// ---------------------------------------------------------------------------------------------
// Total decoding
// ---------------------------------------------------------------------------------------------

/// Runs every decoder on `bytes`; each successful decode must re-encode to something that
/// decodes to the same value (canonical form is a fixed point).
fn decode_all(bytes: &[u8]) -> bool {
    fn stable<T: PartialEq>(
        r: Result<T, DecodeError>,
        enc: impl Fn(&T) -> Vec<u8>,
        dec: impl Fn(&[u8]) -> Result<T, DecodeError>,
    ) -> bool {
        match r {
            Ok(v) => dec(&enc(&v)).is_ok_and(|w| w == v),
            Err(_) => true,
        }
    }
    stable(Peer::decode(bytes), Peer::to_bytes, Peer::decode)
        && stable(
            Announce::decode(bytes),
            Announce::to_bytes,
            Announce::decode,
        )
        && stable(
            LookupReplyValue::decode(bytes),
            LookupReplyValue::to_bytes,
            LookupReplyValue::decode,
        )
        && stable(
            MutablePutRequest::decode(bytes),
            MutablePutRequest::to_bytes,
            MutablePutRequest::decode,
        )
        && stable(
            MutableGetResponse::decode(bytes),
            MutableGetResponse::to_bytes,
            MutableGetResponse::decode,
        )
        && stable(
            decode_mutable_get_request(bytes),
            |s| encode_mutable_get_request(*s),
            decode_mutable_get_request,
        )
        && stable(
            HandshakeEnvelope::decode(bytes),
            HandshakeEnvelope::to_bytes,
            HandshakeEnvelope::decode,
        )
        && stable(
            HolepunchEnvelope::decode(bytes),
            HolepunchEnvelope::to_bytes,
            HolepunchEnvelope::decode,
        )
        && stable(
            PluginRequest::decode(bytes),
            PluginRequest::to_bytes,
            PluginRequest::decode,
        )
}

#[test]
fn arbitrary_bytes_never_panic() {
    fn prop(bytes: Vec<u8>) -> bool {
        decode_all(&bytes)
    }
    qc().quickcheck(prop as fn(Vec<u8>) -> bool);
}

#[test]
fn mutated_encodings_never_panic() {
    fn prop(m: AnyMsg, edits: Vec<(u16, u8)>, cut: u16) -> bool {
        let mut bytes = m.to_bytes();
        if bytes.is_empty() {
            return decode_all(&bytes);
        }
        for (at, val) in edits {
            let i = at as usize % bytes.len();
            bytes[i] = val;
        }
        let cut = cut as usize % (bytes.len() + 1);
        decode_all(&bytes) && decode_all(&bytes[..cut])
    }
    qc().quickcheck(prop as fn(AnyMsg, Vec<(u16, u8)>, u16) -> bool);
}

#[test]
fn short_inputs_exhaustively() {
    // Every input of up to 2 bytes, and 3-byte inputs over a set of interesting bytes.
    assert!(decode_all(&[]));
    for a in 0..=255u8 {
        assert!(decode_all(&[a]));
        for b in 0..=255u8 {
            assert!(decode_all(&[a, b]));
        }
    }
    let interesting = [0u8, 1, 2, 3, 4, 5, 7, 8, 0x0f, 0xfc, 0xfd, 0xfe, 0xff];
    for a in interesting {
        for b in interesting {
            for c in interesting {
                assert!(decode_all(&[a, b, c]));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures over random records
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct AnnounceCase {
    seed: [u8; 32],
    target: [u8; 32],
    node_id: [u8; 32],
    token: [u8; 32],
    relays: Vec<SocketAddrV4>,
    refresh: Option<[u8; 32]>,
    unannounce: bool,
}

impl Arbitrary for AnnounceCase {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = usize::arbitrary(g) % 6;
        AnnounceCase {
            seed: <[u8; 32]>::arbitrary(g),
            target: <[u8; 32]>::arbitrary(g),
            node_id: <[u8; 32]>::arbitrary(g),
            token: <[u8; 32]>::arbitrary(g),
            relays: (0..n).map(|_| arb_addr4(g)).collect(),
            refresh: bool::arbitrary(g).then(|| <[u8; 32]>::arbitrary(g)),
            unannounce: bool::arbitrary(g),
        }
    }
}

type VerifyFn = fn(&[u8; 32], &[u8; 32], &[u8; 32], &Peer, Option<&[u8; 32]>, &[u8; 64]) -> bool;

fn flip(mut b: [u8; 32], bit: u8) -> [u8; 32] {
    b[(bit / 8 % 32) as usize] ^= 1 << (bit % 8);
    b
}

#[test]
fn announce_sign_verify_and_tamper() {
    fn prop(c: AnnounceCase, bit: u8, sig_bit: u16, relay: (u32, u16)) -> bool {
        let kp = KeyPair::from_seed(&c.seed);
        let peer = Peer {
            public_key: kp.public_key(),
            relay_addresses: c.relays.clone(),
        };
        let (sign_fn, verify, other): (_, VerifyFn, VerifyFn) = if c.unannounce {
            (
                sign::sign_unannounce
                    as fn(
                        &KeyPair,
                        &[u8; 32],
                        &[u8; 32],
                        &[u8; 32],
                        &Peer,
                        Option<&[u8; 32]>,
                    ) -> [u8; 64],
                sign::verify_unannounce as VerifyFn,
                sign::verify_announce as VerifyFn,
            )
        } else {
            (
                sign::sign_announce as _,
                sign::verify_announce as VerifyFn,
                sign::verify_unannounce as VerifyFn,
            )
        };
        let r = c.refresh.as_ref();
        let sig = sign_fn(&kp, &c.target, &c.node_id, &c.token, &peer, r);
        let ns = if c.unannounce {
            sign::NS_UNANNOUNCE
        } else {
            sign::NS_ANNOUNCE
        };
        let signable = sign::announce_signable(&ns, &c.target, &c.node_id, &c.token, &peer, r);
        if kp.sign(&signable) != sig || signable[..32] != ns {
            return false;
        }
        if !verify(&c.target, &c.node_id, &c.token, &peer, r, &sig) {
            return false;
        }
        // Bound to the namespace, target, node id, token, record and refresh.
        let mut bad_sig = sig;
        bad_sig[(sig_bit / 8 % 64) as usize] ^= 1 << (sig_bit % 8);
        let mut more_relays = peer.clone();
        more_relays
            .relay_addresses
            .push(SocketAddrV4::new(Ipv4Addr::from(relay.0), relay.1));
        let mut fewer_relays = peer.clone();
        let had_relays = fewer_relays.relay_addresses.pop().is_some();
        let other_key = Peer {
            public_key: KeyPair::from_seed(&flip(c.seed, bit)).public_key(),
            ..peer.clone()
        };
        let flipped_refresh = c.refresh.map(|x| flip(x, bit));
        let refresh_cases: [Option<&[u8; 32]>; 2] = if c.refresh.is_some() {
            [flipped_refresh.as_ref(), None]
        } else {
            [Some(&c.target), Some(&c.token)]
        };
        !other(&c.target, &c.node_id, &c.token, &peer, r, &sig)
            && !verify(&c.target, &c.node_id, &c.token, &peer, r, &bad_sig)
            && !verify(&flip(c.target, bit), &c.node_id, &c.token, &peer, r, &sig)
            && !verify(&c.target, &flip(c.node_id, bit), &c.token, &peer, r, &sig)
            && !verify(&c.target, &c.node_id, &flip(c.token, bit), &peer, r, &sig)
            && !verify(&c.target, &c.node_id, &c.token, &more_relays, r, &sig)
            && !(had_relays && verify(&c.target, &c.node_id, &c.token, &fewer_relays, r, &sig))
            && !verify(&c.target, &c.node_id, &c.token, &other_key, r, &sig)
            && refresh_cases.iter().all(|rr| !verify(&c.target, &c.node_id, &c.token, &peer, *rr, &sig))
            // Swapping node id and token (same bytes, other order) must not verify either.
            && (c.node_id == c.token || !verify(&c.target, &c.token, &c.node_id, &peer, r, &sig))
    }
    qc_crypto().quickcheck(prop as fn(AnnounceCase, u8, u16, (u32, u16)) -> bool);
}

#[test]
fn announce_signature_survives_the_wire() {
    // Sign, send as an Announce value with a bump, decode, verify with the decoded fields: the
    // bump and flags are not covered, the record is.
    fn prop(c: AnnounceCase, bump: AUint) -> bool {
        let kp = KeyPair::from_seed(&c.seed);
        let peer = Peer {
            public_key: kp.public_key(),
            relay_addresses: c.relays.clone(),
        };
        let sig = sign::sign_announce(
            &kp,
            &c.target,
            &c.node_id,
            &c.token,
            &peer,
            c.refresh.as_ref(),
        );
        let wire = Announce {
            peer: Some(peer),
            refresh: c.refresh,
            signature: Some(sig),
            bump: bump.0,
        }
        .to_bytes();
        let d = Announce::decode(&wire).unwrap();
        let p = d.peer.as_ref().unwrap();
        sign::verify_announce(
            &c.target,
            &c.node_id,
            &c.token,
            p,
            d.refresh.as_ref(),
            &d.signature.unwrap(),
        )
    }
    qc_crypto().quickcheck(prop as fn(AnnounceCase, AUint) -> bool);
}

#[test]
fn mutable_sign_verify_and_tamper() {
    fn prop(seed: [u8; 32], seq: AUint, value: Vec<u8>, bit: u16, other_seq: AUint) -> TestResult {
        let kp = KeyPair::from_seed(&seed);
        let pk = kp.public_key();
        let seq = seq.0;
        let sig = sign::sign_mutable(&kp, seq, &value);
        if kp.sign(&sign::mutable_signable(seq, &value)) != sig {
            return TestResult::failed();
        }
        if !sign::verify_mutable(&pk, seq, &value, &sig) {
            return TestResult::failed();
        }
        // Through the wire.
        let put = MutablePutRequest::decode(
            &MutablePutRequest {
                public_key: pk,
                seq,
                value: value.clone(),
                signature: sig,
            }
            .to_bytes(),
        )
        .unwrap();
        if !sign::verify_mutable(&put.public_key, put.seq, &put.value, &put.signature) {
            return TestResult::failed();
        }
        let mut bad_sig = sig;
        bad_sig[(bit / 8 % 64) as usize] ^= 1 << (bit % 8);
        let mut bad_value = value.clone();
        if bad_value.is_empty() {
            bad_value.push(0);
        } else {
            let i = bit as usize % bad_value.len();
            bad_value[i] ^= 1 << (bit % 8);
        }
        let mut longer = value.clone();
        longer.push(0);
        let other_pk = KeyPair::from_seed(&flip(seed, bit as u8)).public_key();
        let ok = !sign::verify_mutable(&pk, seq, &value, &bad_sig)
            && !sign::verify_mutable(&pk, seq, &bad_value, &sig)
            && !sign::verify_mutable(&pk, seq, &longer, &sig)
            && (other_seq.0 == seq || !sign::verify_mutable(&pk, other_seq.0, &value, &sig))
            && !sign::verify_mutable(&pk, seq.wrapping_add(1), &value, &sig)
            && !sign::verify_mutable(&other_pk, seq, &value, &sig)
            && sign::target_of_key(&pk) != sign::target_of_key(&other_pk);
        TestResult::from_bool(ok)
    }
    qc_crypto().quickcheck(prop as fn([u8; 32], AUint, Vec<u8>, u16, AUint) -> TestResult);
}

#[test]
fn signables_are_64_bytes_with_their_namespace() {
    let p = Peer::default();
    let z = [0u8; 32];
    assert_eq!(
        sign::announce_signable(&sign::NS_ANNOUNCE, &z, &z, &z, &p, None)[..32],
        sign::NS_ANNOUNCE
    );
    assert_eq!(sign::mutable_signable(0, b"")[..32], sign::NS_MUTABLE_PUT);
    // Absent refresh appends nothing: differs from a present all-zero refresh.
    assert_ne!(
        sign::announce_signable(&sign::NS_ANNOUNCE, &z, &z, &z, &p, None),
        sign::announce_signable(&sign::NS_ANNOUNCE, &z, &z, &z, &p, Some(&z))
    );
}

// ---------------------------------------------------------------------------------------------
// libsodium parity of Ed25519 verification
// ---------------------------------------------------------------------------------------------

/// The canonical encodings of the 8 points of small order (orders 1, 2, 4, 4, 8, 8, 8, 8).
const SMALL_ORDER: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];

/// The compressed Ed25519 base point B.
const BASEPOINT: &str = "5866666666666666666666666666666666666666666666666666666666666666";

fn h32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// Cofactorless, non-strict verification (ed25519-dalek `Verifier::verify`): what a lax
/// verifier would accept. Used to show that the forgeries below are "valid" unless the strict
/// checks reject them.
fn lax_verify(pk: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    use ed25519_dalek::Verifier;
    let Ok(k) = ed25519_dalek::VerifyingKey::from_bytes(pk) else {
        return false;
    };
    k.verify(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
}

#[test]
fn small_order_public_keys_are_rejected() {
    // With a small-order key A, the signature (R = B, S = 1) satisfies [S]B = R + [h]A whenever
    // [h]A is the identity, i.e. for about 1 in ord(A) messages. A lax verifier accepts those;
    // libsodium and `sign::verify_*` must not.
    let mut forged = [0u8; 64];
    forged[..32].copy_from_slice(&h32(BASEPOINT));
    forged[32] = 1;
    for pk_hex in SMALL_ORDER {
        let pk = h32(pk_hex);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&pk).expect("small-order points decode");
        assert!(key.is_weak(), "{pk_hex} is small order");
        let mut lax_accepted = 0;
        for seq in 0..64u64 {
            let value = b"forged";
            let signable = sign::mutable_signable(seq, value);
            if lax_verify(&pk, &signable, &forged) {
                lax_accepted += 1;
            }
            assert!(
                !sign::verify_mutable(&pk, seq, value, &forged),
                "{pk_hex} seq {seq}"
            );
            assert!(!sign::verify_detached(&pk, &signable, &forged));
            assert!(!hdht_core::crypto::verify(&pk, &signable, &forged));
            if seq % 8 != 0 {
                continue;
            }
            let peer = Peer {
                public_key: pk,
                relay_addresses: vec![],
            };
            let token = [seq as u8; 32];
            assert!(!sign::verify_announce(
                &[1; 32], &[2; 32], &token, &peer, None, &forged
            ));
            assert!(!sign::verify_unannounce(
                &[1; 32], &[2; 32], &token, &peer, None, &forged
            ));
        }
        assert!(
            lax_accepted > 0,
            "{pk_hex}: the forgery should fool a lax verifier at least once"
        );
    }
    // Both R and A small order: (R = identity, S = 0) with A = identity verifies laxly for every message.
    let identity = h32(SMALL_ORDER[0]);
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    let signable = sign::mutable_signable(1, b"x");
    assert!(lax_verify(&identity, &signable, &sig));
    assert!(!sign::verify_mutable(&identity, 1, b"x", &sig));
}

/// The group order ℓ, little-endian.
const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// `s + ℓ` as 256-bit little-endian integers (plain byte addition with carry).
fn add_ell(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let t = u16::from(s[i]) + u16::from(ELL[i]) + carry;
        out[i] = t as u8;
        carry = t >> 8;
    }
    assert_eq!(carry, 0);
    out
}

#[test]
fn non_canonical_s_is_rejected() {
    // S' = S + ℓ is the same scalar mod ℓ, so a verifier that reduces S would accept it
    // (malleability). libsodium rejects S ≥ ℓ; so must we.
    let mut checked = 0;
    for i in 0..64u8 {
        let kp = KeyPair::from_seed(&[i; 32]);
        let sig = sign::sign_mutable(&kp, u64::from(i), b"value");
        assert!(sign::verify_mutable(
            &kp.public_key(),
            u64::from(i),
            b"value",
            &sig
        ));
        let s_plus = add_ell(&sig[32..]);
        if s_plus[31] & 0xe0 != 0 {
            continue; // would not even fit the 253-bit form; uninteresting
        }
        let mut mall = sig;
        mall[32..].copy_from_slice(&s_plus);
        assert!(
            !sign::verify_mutable(&kp.public_key(), u64::from(i), b"value", &mall),
            "seed {i}"
        );
        assert!(!hdht_core::crypto::verify(
            &kp.public_key(),
            &sign::mutable_signable(u64::from(i), b"value"),
            &mall
        ));
        checked += 1;
    }
    assert!(checked > 40);
    // S = ℓ exactly, and S with the top bits set.
    let kp = KeyPair::from_seed(&[1; 32]);
    let mut sig = sign::sign_mutable(&kp, 0, b"");
    sig[32..].copy_from_slice(&ELL);
    assert!(!sign::verify_mutable(&kp.public_key(), 0, b"", &sig));
    sig[63] = 0xff;
    assert!(!sign::verify_mutable(&kp.public_key(), 0, b"", &sig));
}

#[test]
fn non_canonical_public_keys_are_rejected() {
    // y = p + k (k = 0..=18) is a non-canonical encoding of y = k; libsodium's
    // `ge25519_is_canonical` rejects all of them. curve25519-dalek decodes some of them to
    // ordinary (not small-order) points, which `verify_strict` alone would not reject — hence
    // the explicit check in `sign::verify_detached`.
    let mut decodable_not_weak = 0;
    let kp = KeyPair::from_seed(&[5; 32]);
    let sig = sign::sign_mutable(&kp, 0, b"v");
    for k in 0..=18u8 {
        for sign_bit in [0u8, 0x80] {
            let mut pk = [0xffu8; 32];
            pk[0] = 0xed + k;
            pk[31] = 0x7f | sign_bit;
            if let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&pk) {
                if !key.is_weak() {
                    decodable_not_weak += 1;
                    // Same point as the canonical encoding of y = k.
                    assert_ne!(key.to_edwards().compress().to_bytes(), pk);
                }
            }
            assert!(!sign::verify_mutable(&pk, 0, b"v", &sig), "k {k}");
            assert!(!sign::verify_detached(
                &pk,
                &sign::mutable_signable(0, b"v"),
                &sig
            ));
        }
    }
    assert!(
        decodable_not_weak > 0,
        "some non-canonical encodings decode to ordinary points"
    );
}

#[test]
fn non_canonical_r_is_rejected() {
    // Replacing R by a non-canonical encoding of the same point (only possible for y < 19, so
    // use the small-order forgery's R = identity: y = 1 ⇒ p + 1) must not verify.
    let identity = h32(SMALL_ORDER[0]);
    let mut sig = [0u8; 64];
    let mut r = [0xffu8; 32];
    r[0] = 0xee;
    r[31] = 0x7f;
    sig[..32].copy_from_slice(&r);
    let signable = sign::mutable_signable(1, b"x");
    assert!(
        !lax_verify(&identity, &signable, &sig),
        "dalek compares canonical R bytes"
    );
    assert!(!sign::verify_detached(&identity, &signable, &sig));
}
