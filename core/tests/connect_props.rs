//! Property tests for `hdht_core::connect`: NoisePayload and holepunch payload round trips and
//! the reference's decoder leniency (trailing bytes) and strictness (every truncation fails),
//! arbitrary bytes never panicking any decoder, decryptor or handshake step, handshakes between
//! random key pairs agreeing on keys and hash, injected-RNG determinism, and tampered or truncated
//! handshake messages and boxes being rejected.
//!
//! The number of cases per property can be raised with `QUICKCHECK_TESTS=<n>`.

mod prop_common;

use std::net::{Ipv4Addr, SocketAddrV4};

use hdht_core::connect::{
    dh, Handshake, HolepunchInfo, HolepunchPayload, NoiseError, NoisePayload, RelayInfo,
    RelayThroughInfo, SecretStreamInfo, SecurePayload, SecurePayloadError, UdxInfo,
};
use hdht_core::crypto::KeyPair;
use hdht_core::wire::MAX_SAFE_INTEGER;
use prop_common::{arb_32, arb_addr4, arb_addr6, arb_opt, arb_uint_mostly_small, arb_vec};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn qc() -> QuickCheck {
    prop_common::qc(500)
}

/// Cases for properties that run handshakes (several scalar multiplications each).
fn qc_crypto() -> QuickCheck {
    prop_common::qc(100)
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct ArbNoise(NoisePayload);

impl Arbitrary for ArbNoise {
    fn arbitrary(g: &mut Gen) -> Self {
        ArbNoise(NoisePayload {
            version: 1,
            error: arb_uint_mostly_small(g),
            firewall: arb_uint_mostly_small(g),
            holepunch: arb_opt(g, |g| HolepunchInfo {
                id: arb_uint_mostly_small(g),
                relays: arb_vec(g, 4, |g| RelayInfo {
                    relay_address: arb_addr4(g),
                    peer_address: arb_addr4(g),
                }),
            }),
            addresses4: arb_vec(g, 4, arb_addr4),
            addresses6: arb_vec(g, 3, arb_addr6),
            udx: arb_opt(g, |g| UdxInfo {
                version: arb_uint_mostly_small(g),
                reusable_socket: bool::arbitrary(g),
                id: arb_uint_mostly_small(g),
                seq: arb_uint_mostly_small(g),
            }),
            secret_stream: arb_opt(g, |g| SecretStreamInfo {
                version: arb_uint_mostly_small(g),
            }),
            relay_through: arb_opt(g, |g| RelayThroughInfo {
                version: arb_uint_mostly_small(g),
                public_key: arb_32(g),
                token: arb_32(g),
            }),
            relay_addresses: arb_opt(g, |g| arb_vec(g, 4, arb_addr4)),
        })
    }
}

#[derive(Debug, Clone)]
struct ArbHolepunch(HolepunchPayload);

impl Arbitrary for ArbHolepunch {
    fn arbitrary(g: &mut Gen) -> Self {
        ArbHolepunch(HolepunchPayload {
            error: arb_uint_mostly_small(g),
            firewall: arb_uint_mostly_small(g),
            round: arb_uint_mostly_small(g),
            connected: bool::arbitrary(g),
            punching: bool::arbitrary(g),
            addresses: arb_opt(g, |g| arb_vec(g, 4, arb_addr4)),
            remote_address: arb_opt(g, arb_addr4),
            token: arb_opt(g, arb_32),
            remote_token: arb_opt(g, arb_32),
        })
    }
}

/// A 32-byte seed (key pairs, ephemerals, secrets).
#[derive(Debug, Clone, Copy)]
struct Seed([u8; 32]);

impl Arbitrary for Seed {
    fn arbitrary(g: &mut Gen) -> Self {
        Seed(arb_32(g))
    }
}

fn payload_bytes(g: &mut Gen) -> Vec<u8> {
    arb_vec(g, 200, u8::arbitrary)
}

#[derive(Debug, Clone)]
struct Bytes(Vec<u8>);

impl Arbitrary for Bytes {
    fn arbitrary(g: &mut Gen) -> Self {
        Bytes(payload_bytes(g))
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.0.shrink().map(Bytes))
    }
}

// ---------------------------------------------------------------------------------------------
// Payload codecs
// ---------------------------------------------------------------------------------------------

#[test]
fn noise_payload_round_trips() {
    fn prop(p: ArbNoise, trailing: Bytes) -> bool {
        let enc = p.0.to_bytes();
        let mut with_tail = enc.clone();
        with_tail.extend_from_slice(&trailing.0);
        NoisePayload::decode(&enc) == Ok(p.0.clone()) && NoisePayload::decode(&with_tail) == Ok(p.0)
    }
    qc().quickcheck(prop as fn(ArbNoise, Bytes) -> bool);
}

#[test]
fn noise_payload_truncations_fail() {
    fn prop(p: ArbNoise) -> bool {
        let enc = p.0.to_bytes();
        (0..enc.len()).all(|n| NoisePayload::decode(&enc[..n]).is_err())
    }
    qc().quickcheck(prop as fn(ArbNoise) -> bool);
}

#[test]
fn noise_payload_other_versions_decode_as_version_only() {
    fn prop(version: u64, rest: Bytes) -> TestResult {
        let version = version % (MAX_SAFE_INTEGER + 1);
        if version == 1 {
            return TestResult::discard();
        }
        let mut enc = NoisePayload::other_version(version).to_bytes();
        enc.extend_from_slice(&rest.0);
        TestResult::from_bool(
            NoisePayload::decode(&enc) == Ok(NoisePayload::other_version(version)),
        )
    }
    qc().quickcheck(prop as fn(u64, Bytes) -> TestResult);
}

#[test]
fn holepunch_payload_round_trips() {
    fn prop(p: ArbHolepunch, trailing: Bytes) -> bool {
        let enc = p.0.to_bytes();
        let mut with_tail = enc.clone();
        with_tail.extend_from_slice(&trailing.0);
        HolepunchPayload::decode(&enc) == Ok(p.0.clone())
            && HolepunchPayload::decode(&with_tail) == Ok(p.0)
    }
    qc().quickcheck(prop as fn(ArbHolepunch, Bytes) -> bool);
}

#[test]
fn holepunch_payload_truncations_fail() {
    fn prop(p: ArbHolepunch) -> bool {
        let enc = p.0.to_bytes();
        (0..enc.len()).all(|n| HolepunchPayload::decode(&enc[..n]).is_err())
    }
    qc().quickcheck(prop as fn(ArbHolepunch) -> bool);
}

#[test]
fn arbitrary_bytes_never_panic_the_decoders() {
    fn prop(data: Bytes, key: Seed) -> bool {
        let _ = NoisePayload::decode(&data.0);
        let _ = HolepunchPayload::decode(&data.0);
        let sp = SecurePayload::with_local_secret(key.0, key.0);
        let _ = sp.decrypt(&data.0);
        true
    }
    qc().quickcheck(prop as fn(Bytes, Seed) -> bool);
}

#[test]
fn flag_bytes_with_huge_counts_never_panic() {
    // Every flag set and the array counts pushed to their limits must fail cleanly.
    for count in [0xfdu8, 0xfe, 0xff] {
        let mut hostile = vec![1u8, 0x7f, 0, 0, 0, count];
        hostile.extend_from_slice(&[0xff; 12]);
        assert!(NoisePayload::decode(&hostile).is_err());
        let mut hostile = vec![0x3fu8, 0, 0, 0, count];
        hostile.extend_from_slice(&[0xff; 12]);
        assert!(HolepunchPayload::decode(&hostile).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// SecurePayload
// ---------------------------------------------------------------------------------------------

#[test]
fn secure_payload_round_trips_and_rejects_tampering() {
    fn prop(p: ArbHolepunch, key: Seed, rng_seed: Seed, flip: usize, other: Seed) -> TestResult {
        if other.0 == key.0 {
            return TestResult::discard();
        }
        let mut rng = ChaCha20Rng::from_seed(rng_seed.0);
        let sp = SecurePayload::new(key.0, &mut rng);
        let sealed = sp.encrypt(&p.0, &mut rng);
        if sealed.len() != 40 + p.0.to_bytes().len() || sp.decrypt(&sealed) != Ok(p.0.clone()) {
            return TestResult::failed();
        }
        // Any peer holding the same holepunch secret opens it, whatever its local secret.
        if SecurePayload::with_local_secret(key.0, other.0).decrypt(&sealed) != Ok(p.0.clone()) {
            return TestResult::failed();
        }
        let mut tampered = sealed.clone();
        let bit = flip % (tampered.len() * 8);
        tampered[bit / 8] ^= 1 << (bit % 8);
        let wrong = SecurePayload::with_local_secret(other.0, key.0);
        TestResult::from_bool(
            sp.decrypt(&tampered) == Err(SecurePayloadError::Authentication)
                && wrong.decrypt(&sealed) == Err(SecurePayloadError::Authentication)
                && (0..=40).all(|n| sp.decrypt(&sealed[..n]) == Err(SecurePayloadError::TooShort)),
        )
    }
    qc().quickcheck(prop as fn(ArbHolepunch, Seed, Seed, usize, Seed) -> TestResult);
}

#[test]
fn secure_payload_nonces_come_from_the_rng() {
    fn prop(p: ArbHolepunch, key: Seed, rng_seed: Seed) -> bool {
        let run = || {
            let mut rng = ChaCha20Rng::from_seed(rng_seed.0);
            let sp = SecurePayload::new(key.0, &mut rng);
            (sp.encrypt(&p.0, &mut rng), sp.encrypt(&p.0, &mut rng))
        };
        let (a1, a2) = run();
        let (b1, b2) = run();
        a1 == b1 && a2 == b2 && a1 != a2
    }
    qc().quickcheck(prop as fn(ArbHolepunch, Seed, Seed) -> bool);
}

#[test]
fn tokens_ignore_the_port() {
    fn prop(secret: Seed, ip: u32, p1: u16, p2: u16, other_ip: u32) -> TestResult {
        if ip == other_ip {
            return TestResult::discard();
        }
        let sp = SecurePayload::with_local_secret([0; 32], secret.0);
        let a = SocketAddrV4::new(Ipv4Addr::from(ip), p1);
        let b = SocketAddrV4::new(Ipv4Addr::from(ip), p2);
        let c = SocketAddrV4::new(Ipv4Addr::from(other_ip), p1);
        TestResult::from_bool(sp.token(&a) == sp.token(&b) && sp.token(&a) != sp.token(&c))
    }
    qc().quickcheck(prop as fn(Seed, u32, u16, u16, u32) -> TestResult);
}

// ---------------------------------------------------------------------------------------------
// Handshakes
// ---------------------------------------------------------------------------------------------

struct Run {
    msg1: Vec<u8>,
    msg2: Vec<u8>,
}

fn handshake(
    client: &KeyPair,
    server: &KeyPair,
    rng_seed: [u8; 32],
    p1: &NoisePayload,
    p2: &NoisePayload,
) -> Result<Run, String> {
    let mut rng = ChaCha20Rng::from_seed(rng_seed);
    let mut c =
        Handshake::initiator(client, &server.public_key(), &mut rng).map_err(|e| e.to_string())?;
    let mut s = Handshake::responder(server, &mut rng).map_err(|e| e.to_string())?;
    let msg1 = c.send(p1).map_err(|e| e.to_string())?;
    if s.recv(&msg1).map_err(|e| e.to_string())? != *p1 {
        return Err("server read another payload".into());
    }
    let msg2 = s.send(p2).map_err(|e| e.to_string())?;
    if c.recv(&msg2).map_err(|e| e.to_string())? != *p2 {
        return Err("client read another payload".into());
    }
    let rc = c.finish().map_err(|e| e.to_string())?;
    let rs = s.finish().map_err(|e| e.to_string())?;
    let ok = rc.tx == rs.rx
        && rc.rx == rs.tx
        && rc.tx != rc.rx
        && rc.hash == rs.hash
        && rc.holepunch_secret == rs.holepunch_secret
        && rc.remote_public_key == server.public_key()
        && rs.remote_public_key == client.public_key()
        && rc.public_key == client.public_key()
        && rs.public_key == server.public_key()
        && rc.is_initiator
        && !rs.is_initiator
        && rc.stream_id() == rs.remote_id()
        && rs.stream_id() == rc.remote_id()
        && rc.stream_id() != rs.stream_id();
    if !ok {
        return Err("the two sides disagree".into());
    }
    Ok(Run { msg1, msg2 })
}

#[test]
fn random_handshakes_agree_and_replay() {
    fn prop(c: Seed, s: Seed, rng: Seed, p1: ArbNoise, p2: ArbNoise) -> TestResult {
        let (client, server) = (KeyPair::from_seed(&c.0), KeyPair::from_seed(&s.0));
        let a = match handshake(&client, &server, rng.0, &p1.0, &p2.0) {
            Ok(r) => r,
            Err(e) => return TestResult::error(e),
        };
        let b = handshake(&client, &server, rng.0, &p1.0, &p2.0).expect("second run");
        let p1_len = p1.0.to_bytes().len();
        let p2_len = p2.0.to_bytes().len();
        TestResult::from_bool(
            a.msg1 == b.msg1
                && a.msg2 == b.msg2
                && a.msg1.len() == 96 + p1_len
                && a.msg2.len() == 48 + p2_len,
        )
    }
    qc_crypto().quickcheck(prop as fn(Seed, Seed, Seed, ArbNoise, ArbNoise) -> TestResult);
}

#[test]
fn wrong_server_key_fails() {
    // A client that dials another key than the server's gets no handshake.
    fn prop(c: Seed, s: Seed, other: Seed, e: Seed) -> TestResult {
        if s.0 == other.0 {
            return TestResult::discard();
        }
        let client = KeyPair::from_seed(&c.0);
        let server = KeyPair::from_seed(&s.0);
        let wrong = KeyPair::from_seed(&other.0).public_key();
        let mut hc = Handshake::initiator_with_ephemeral(&client, &wrong, &e.0).unwrap();
        let mut hs = Handshake::responder_with_ephemeral(&server, &e.0).unwrap();
        let msg1 = hc.write_message(b"hello").unwrap();
        TestResult::from_bool(hs.read_message(&msg1) == Err(NoiseError::Decrypt))
    }
    qc_crypto().quickcheck(prop as fn(Seed, Seed, Seed, Seed) -> TestResult);
}

#[test]
fn tampered_or_truncated_messages_are_rejected() {
    fn prop(c: Seed, s: Seed, ec: Seed, es: Seed, payload: Bytes, flip: usize, cut: usize) -> bool {
        let client = KeyPair::from_seed(&c.0);
        let server = KeyPair::from_seed(&s.0);
        let fresh = || {
            (
                Handshake::initiator_with_ephemeral(&client, &server.public_key(), &ec.0).unwrap(),
                Handshake::responder_with_ephemeral(&server, &es.0).unwrap(),
            )
        };
        let flip_bit = |m: &[u8]| {
            let mut t = m.to_vec();
            let bit = flip % (t.len() * 8);
            t[bit / 8] ^= 1 << (bit % 8);
            t
        };

        // msg1 tampered / truncated at the server.
        let (mut hc, _) = fresh();
        let msg1 = hc.write_message(&payload.0).unwrap();
        let (_, mut hs) = fresh();
        let t1 = hs.read_message(&flip_bit(&msg1)).is_err() && hs.is_failed();
        let (_, mut hs) = fresh();
        let c1 = hs.read_message(&msg1[..cut % msg1.len()]).is_err();

        // msg2 tampered / truncated at the client.
        let (mut hc, mut hs) = fresh();
        let msg1 = hc.write_message(&payload.0).unwrap();
        hs.read_message(&msg1).unwrap();
        let msg2 = hs.write_message(&payload.0).unwrap();
        let (mut hc2, _) = fresh();
        hc2.write_message(&payload.0).unwrap();
        let t2 = hc.read_message(&flip_bit(&msg2)).is_err() && hc.finish().is_err();
        let c2 = hc2.read_message(&msg2[..cut % msg2.len()]).is_err();
        t1 && c1 && t2 && c2
    }
    qc_crypto().quickcheck(prop as fn(Seed, Seed, Seed, Seed, Bytes, usize, usize) -> bool);
}

#[test]
fn arbitrary_bytes_never_panic_a_handshake() {
    fn prop(s: Seed, e: Seed, data: Bytes, c: Seed) -> bool {
        let server = KeyPair::from_seed(&s.0);
        let mut hs = Handshake::responder_with_ephemeral(&server, &e.0).unwrap();
        let _ = hs.read_message(&data.0);
        let _ = hs.recv(&data.0);
        let _ = hs.write_message(&data.0);
        let client = KeyPair::from_seed(&c.0);
        let mut hc =
            Handshake::initiator_with_ephemeral(&client, &server.public_key(), &e.0).unwrap();
        let _ = hc.read_message(&data.0); // out of turn
        let _ = hc.write_message(&data.0);
        let _ = hc.recv(&data.0);
        let _ = hc.write_message(&data.0); // after the end
        true
    }
    qc_crypto().quickcheck(prop as fn(Seed, Seed, Bytes, Seed) -> bool);
}

#[test]
fn out_of_order_steps_are_state_errors() {
    let client = KeyPair::from_seed(&[1; 32]);
    let server = KeyPair::from_seed(&[2; 32]);
    let mut hc =
        Handshake::initiator_with_ephemeral(&client, &server.public_key(), &[3; 32]).unwrap();
    let mut hs = Handshake::responder_with_ephemeral(&server, &[4; 32]).unwrap();
    assert_eq!(hs.write_message(b"").unwrap_err(), NoiseError::State);
    let mut hs = Handshake::responder_with_ephemeral(&server, &[4; 32]).unwrap();
    assert_eq!(hc.read_message(&[0; 48]).unwrap_err(), NoiseError::State);
    let mut hc =
        Handshake::initiator_with_ephemeral(&client, &server.public_key(), &[3; 32]).unwrap();
    let msg1 = hc.write_message(b"").unwrap();
    assert_eq!(hc.write_message(b"").unwrap_err(), NoiseError::State);
    let mut hc =
        Handshake::initiator_with_ephemeral(&client, &server.public_key(), &[3; 32]).unwrap();
    assert_eq!(hc.write_message(b"").unwrap(), msg1);
    hs.read_message(&msg1).unwrap();
    let msg2 = hs.write_message(b"").unwrap();
    hc.read_message(&msg2).unwrap();
    assert!(hc.is_finished() && hs.is_finished());
    assert_eq!(hs.read_message(&msg1).unwrap_err(), NoiseError::State);
    assert!(hc.finish().is_ok());
    // A message that would exceed 65535 bytes is refused, not truncated.
    let mut hc =
        Handshake::initiator_with_ephemeral(&client, &server.public_key(), &[3; 32]).unwrap();
    assert_eq!(
        hc.write_message(&vec![0; 65535 - 96 + 1]).unwrap_err(),
        NoiseError::TooLarge
    );
    let mut hc =
        Handshake::initiator_with_ephemeral(&client, &server.public_key(), &[3; 32]).unwrap();
    assert_eq!(hc.write_message(&vec![0; 65535 - 96]).unwrap().len(), 65535);
    let mut hs = Handshake::responder_with_ephemeral(&server, &[4; 32]).unwrap();
    assert_eq!(
        hs.read_message(&vec![0; 65536]).unwrap_err(),
        NoiseError::Malformed
    );
    // The same limit for msg2.
    let mut hc =
        Handshake::initiator_with_ephemeral(&client, &server.public_key(), &[3; 32]).unwrap();
    let msg1 = hc.write_message(b"").unwrap();
    for (len, ok) in [(65535 - 48, true), (65535 - 48 + 1, false)] {
        let mut hs = Handshake::responder_with_ephemeral(&server, &[4; 32]).unwrap();
        hs.read_message(&msg1).unwrap();
        let res = hs.write_message(&vec![0; len]);
        if ok {
            assert_eq!(res.unwrap().len(), 65535);
        } else {
            assert_eq!(res.unwrap_err(), NoiseError::TooLarge);
        }
    }
    // Unfinished handshakes do not finish.
    let hs = Handshake::responder_with_ephemeral(&server, &[4; 32]).unwrap();
    assert_eq!(hs.finish().unwrap_err(), NoiseError::Unfinished);
}

#[test]
fn dh_is_symmetric_for_random_keys() {
    fn prop(a: Seed, b: Seed) -> bool {
        let (pa, pb) = (dh::public_key(&a.0), dh::public_key(&b.0));
        pa == KeyPair::from_seed(&a.0).public_key()
            && dh::dh(&a.0, &pb).ok() == dh::dh(&b.0, &pa).ok()
            && dh::dh(&a.0, &pb).is_ok()
    }
    qc_crypto().quickcheck(prop as fn(Seed, Seed) -> bool);
}
