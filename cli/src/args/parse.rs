//! Parsers for argument values: anything malformed is a usage error before a socket opens.

use std::net::SocketAddrV4;

use hdht_tokio::core::dht::check_seq;
use hdht_tokio::{NodeId, MAX_SEQ};

/// Exactly 32 bytes of hex.
pub fn parse_hex32(s: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(s.trim()).map_err(|e| format!("not valid hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "expected 32 bytes (64 hex characters), got {} bytes",
            bytes.len()
        )
    })
}

/// A swarm TOPIC: not empty, and not a raw topic of the wrong length (32 or more hex digits,
/// but not 64: a topic is 32 bytes). Any other name is hashed into one.
pub fn parse_topic(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty topic: give 64 hex characters or a name to hash".to_string());
    }
    if t.len() >= 32 && t.len() != 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{} hex characters: a raw topic is 32 bytes (64 hex characters); to hash a name \
             into a topic, use one that is not all hex digits",
            t.len()
        ));
    }
    Ok(s.to_string())
}

/// A mutable record's sequence number: what the reference can represent, 0 to 2^53 - 1.
pub fn parse_seq(s: &str) -> Result<u64, String> {
    let range = format!(
        "the allowed range is 0 to {MAX_SEQ} (2^53 - 1, the largest seq the reference can encode)"
    );
    let seq: u64 = s
        .trim()
        .parse()
        .map_err(|e| format!("not a sequence number ({e}); {range}"))?;
    check_seq(seq).map_err(|_| format!("{seq} is too large; {range}"))
}

/// A value argument: UTF-8 text as given, or hex-decoded bytes with `--hex`.
pub fn value_bytes(value: &str, hex: bool) -> Result<Vec<u8>, String> {
    if hex {
        hex::decode(value.trim()).map_err(|e| format!("VALUE is not valid hex: {e}"))
    } else {
        Ok(value.as_bytes().to_vec())
    }
}

/// A relay address: `IPV4:PORT`, port not 0.
pub(super) fn parse_relay(s: &str) -> Result<SocketAddrV4, String> {
    let a: SocketAddrV4 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected IPV4:PORT, got {s:?}"))?;
    if a.port() == 0 {
        return Err(format!("port 0 is not a relay address: {s:?}"));
    }
    Ok(a)
}

pub(super) fn parse_node_id(s: &str) -> Result<NodeId, String> {
    parse_hex32(s).map(NodeId)
}

/// One bootstrap entry, validated (host names are resolved later, when the node starts).
pub(super) fn parse_bootstrap_entry(s: &str) -> Result<String, String> {
    hdht_tokio::parse_bootstrap(s).map_err(|e| e.to_string())?;
    Ok(s.trim().to_string())
}
