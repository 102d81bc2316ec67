//! The connect decoders (`hdht_core::connect`) on arbitrary bytes: NoisePayload and the
//! holepunch payload must, when they decode, re-encode to a canonical form that is no longer
//! than the input, decodes back to the same value and is stable; a decoded holepunch payload must
//! survive a SecurePayload seal/open; and the same bytes fed to a SecurePayload box opener and to
//! both sides of a Noise handshake (with fixed keys) must fail cleanly, never panic.
#![no_main]

use hdht_core::connect::{Handshake, HolepunchPayload, NoisePayload, SecurePayload};
use hdht_core::crypto::KeyPair;
use hdht_core::wire::DecodeError;
use libfuzzer_sys::fuzz_target;

fn check<T: PartialEq + core::fmt::Debug>(
    data: &[u8],
    decoded: &Result<T, DecodeError>,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
) {
    let Ok(v) = decoded else { return };
    let bytes = encode(v);
    assert!(
        bytes.len() <= data.len(),
        "canonical form longer than the input"
    );
    let again = decode(&bytes).expect("canonical re-encoding must decode");
    assert_eq!(&again, v, "re-encode/decode changed the value");
    assert_eq!(encode(&again), bytes, "canonical encoding is not stable");
}

fuzz_target!(|data: &[u8]| {
    let noise = NoisePayload::decode(data);
    check(data, &noise, NoisePayload::to_bytes, NoisePayload::decode);

    let hp = HolepunchPayload::decode(data);
    check(
        data,
        &hp,
        HolepunchPayload::to_bytes,
        HolepunchPayload::decode,
    );

    let sp = SecurePayload::with_local_secret([7; 32], [9; 32]);
    let _ = sp.decrypt(data);
    if let Ok(p) = &hp {
        let sealed = sp.encrypt_with_nonce(p, &[1; 24]);
        assert_eq!(
            sp.decrypt(&sealed).as_ref(),
            Ok(p),
            "seal/open changed the payload"
        );
    }

    let server = KeyPair::from_seed(&[2; 32]);
    let mut responder = Handshake::responder_with_ephemeral(&server, &[4; 32]).expect("responder");
    let _ = responder.recv(data);
    let client = KeyPair::from_seed(&[1; 32]);
    let mut initiator =
        Handshake::initiator_with_ephemeral(&client, &server.public_key(), &[3; 32])
            .expect("initiator");
    let _ = initiator.write_message(b"");
    let _ = initiator.recv(data);
});
