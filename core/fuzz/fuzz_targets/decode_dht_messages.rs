//! Every hyperdht message decoder (`hdht_core::dht::messages`) on arbitrary bytes. Whatever
//! decodes must re-encode to a canonical form that decodes back to the same value, is stable,
//! and is no longer than the input (a legacy LOOKUP reply without a bump may grow by the one
//! `00` byte the encoder always writes).
#![no_main]

use hdht_core::dht::messages::{
    decode_mutable_get_request, encode_mutable_get_request, Announce, HandshakeEnvelope,
    HolepunchEnvelope, LookupReplyValue, MutableGetResponse, MutablePutRequest, Peer, PluginRequest,
};
use hdht_core::wire::DecodeError;
use libfuzzer_sys::fuzz_target;

fn check<T: PartialEq + core::fmt::Debug>(
    data: &[u8],
    decoded: Result<T, DecodeError>,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
    slack: usize,
) {
    let Ok(v) = decoded else { return };
    let bytes = encode(&v);
    assert!(bytes.len() <= data.len() + slack, "canonical form longer than the input");
    let again = decode(&bytes).expect("canonical re-encoding must decode");
    assert_eq!(again, v, "re-encode/decode changed the value");
    assert_eq!(encode(&again), bytes, "canonical encoding is not stable");
}

fuzz_target!(|data: &[u8]| {
    check(data, Peer::decode(data), Peer::to_bytes, Peer::decode, 0);
    check(data, Announce::decode(data), Announce::to_bytes, Announce::decode, 0);
    check(data, LookupReplyValue::decode(data), LookupReplyValue::to_bytes, LookupReplyValue::decode, 1);
    check(
        data,
        MutablePutRequest::decode(data),
        MutablePutRequest::to_bytes,
        MutablePutRequest::decode,
        0,
    );
    check(
        data,
        MutableGetResponse::decode(data),
        MutableGetResponse::to_bytes,
        MutableGetResponse::decode,
        0,
    );
    check(
        data,
        decode_mutable_get_request(data),
        |s| encode_mutable_get_request(*s),
        decode_mutable_get_request,
        0,
    );
    check(
        data,
        HandshakeEnvelope::decode(data),
        HandshakeEnvelope::to_bytes,
        HandshakeEnvelope::decode,
        0,
    );
    check(
        data,
        HolepunchEnvelope::decode(data),
        HolepunchEnvelope::to_bytes,
        HolepunchEnvelope::decode,
        0,
    );
    check(data, PluginRequest::decode(data), PluginRequest::to_bytes, PluginRequest::decode, 0);
});
