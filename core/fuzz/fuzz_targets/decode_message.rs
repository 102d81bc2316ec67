//! `Message::decode` on arbitrary bytes. Whatever decodes must re-encode to a canonical form
//! that is no longer than the input and decodes back to the same message.
#![no_main]

use hdht_core::wire::{Message, REQUEST_TYPE, RESPONSE_TYPE};
use libfuzzer_sys::fuzz_target;

fn encode(m: &Message) -> Vec<u8> {
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

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::decode(data) else {
        return;
    };
    match &m {
        Message::Request(_) => assert_eq!(data[0], REQUEST_TYPE),
        Message::Response(_) => assert_eq!(data[0], RESPONSE_TYPE),
    }
    let bytes = encode(&m);
    assert_eq!(
        encoded_len(&m),
        bytes.len(),
        "encoded_len disagrees with encode"
    );
    // Decoding never reads past the end, and the canonical form drops only redundancy
    // (non-minimal uints, unknown flag bits, empty closer lists, zero error codes, trailing bytes).
    assert!(
        bytes.len() <= data.len(),
        "canonical form longer than the input"
    );
    let again = Message::decode(&bytes).expect("canonical re-encoding must decode");
    assert_eq!(again, m, "re-encode/decode changed the message");
    assert_eq!(encode(&again), bytes, "canonical encoding is not stable");
});
