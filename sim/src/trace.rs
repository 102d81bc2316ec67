//! The trace hash: a digest over every datagram delivered to an app, in delivery order.
//!
//! Each delivery is the record `time (µs) ‖ source as seen ‖ destination as addressed ‖
//! length ‖ payload`. Two runs with equal hashes delivered the same bytes at the same virtual
//! times between the same addresses — the strongest cheap evidence that a replay is exact.
//!
//! Hashing every record with BLAKE2b cost ~12% of a run (measured with callgrind), so each
//! record is first reduced to a 128-bit fingerprint by a fast multiply-mix hash (two
//! independent 64-bit lanes; a collision needs two different datagrams at the same place in
//! the same run to agree on 128 bits), and the fingerprints are chained with BLAKE2b-256, which
//! then compresses one 128-byte block per eight deliveries. Both halves are fully specified
//! here, so a hash does not depend on the Rust version or the platform.

use std::fmt;
use std::net::SocketAddrV4;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use hdht_core::Instant;

/// A finished trace hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceHash(pub [u8; 32]);

impl TraceHash {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for TraceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TraceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceHash({})", self.to_hex())
    }
}

impl AsRef<[u8]> for TraceHash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The running digest.
#[derive(Clone)]
pub(crate) struct Tracer {
    h: Blake2b<U32>,
}

const K1: u64 = 0xa076_1d64_78bd_642f;
const K2: u64 = 0xe703_7ed1_a0b4_28db;
const K3: u64 = 0x8ebc_6af0_9c88_c6e3;
const K4: u64 = 0x5899_65cc_7537_4cc3;

/// 64×64→128-bit multiply, folded.
fn mum(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

fn endpoint(a: &SocketAddrV4) -> u64 {
    (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port())
}

/// The 128-bit fingerprint of one delivery.
pub(crate) fn fingerprint(
    at: Instant,
    from: &SocketAddrV4,
    to: &SocketAddrV4,
    payload: &[u8],
) -> [u8; 16] {
    let len = payload.len() as u64;
    let mut a = mum(at.as_micros() ^ K1, endpoint(from) ^ K2);
    let mut b = mum(endpoint(to) ^ K3, len ^ K4);
    let mut chunks = payload.chunks_exact(16);
    for c in &mut chunks {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let y = u64::from_le_bytes([c[8], c[9], c[10], c[11], c[12], c[13], c[14], c[15]]);
        a = mum(a ^ x, K2 ^ y);
        b = mum(b ^ y, K3 ^ x);
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 16];
    tail[..rest.len()].copy_from_slice(rest);
    let x = u64::from_le_bytes([
        tail[0], tail[1], tail[2], tail[3], tail[4], tail[5], tail[6], tail[7],
    ]);
    let y = u64::from_le_bytes([
        tail[8], tail[9], tail[10], tail[11], tail[12], tail[13], tail[14], tail[15],
    ]);
    a = mum(a ^ x ^ len, K4 ^ y);
    b = mum(b ^ y, K1 ^ x ^ len);
    let lo = mum(a ^ K3, b ^ K1);
    let hi = mum(b ^ K4, a.rotate_left(29) ^ K2);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&lo.to_le_bytes());
    out[8..].copy_from_slice(&hi.to_le_bytes());
    out
}

impl Tracer {
    pub(crate) fn new() -> Self {
        Tracer { h: Blake2b::new() }
    }

    pub(crate) fn record(
        &mut self,
        at: Instant,
        from: SocketAddrV4,
        to: SocketAddrV4,
        payload: &[u8],
    ) {
        self.h.update(fingerprint(at, &from, &to, payload));
    }

    pub(crate) fn finish(&self) -> TraceHash {
        TraceHash(self.h.clone().finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn every_field_and_every_byte_changes_the_fingerprint() {
        let (t, f, d) = (Instant::from_millis(5), a("16.0.0.1:1"), a("16.0.0.2:2"));
        let base = fingerprint(t, &f, &d, b"hello world, a datagram of some length");
        assert_ne!(
            base,
            fingerprint(
                Instant::from_micros(5001),
                &f,
                &d,
                b"hello world, a datagram of some length"
            )
        );
        assert_ne!(
            base,
            fingerprint(
                t,
                &a("16.0.0.1:2"),
                &d,
                b"hello world, a datagram of some length"
            )
        );
        assert_ne!(
            base,
            fingerprint(
                t,
                &f,
                &a("16.0.0.3:2"),
                b"hello world, a datagram of some length"
            )
        );
        let p = b"hello world, a datagram of some length";
        for i in 0..p.len() {
            let mut q = p.to_vec();
            q[i] ^= 1;
            assert_ne!(base, fingerprint(t, &f, &d, &q), "byte {i}");
        }
        assert_ne!(
            fingerprint(t, &f, &d, b"x"),
            fingerprint(t, &f, &d, b"x\0"),
            "length counts"
        );
        assert_ne!(fingerprint(t, &f, &d, b""), fingerprint(t, &f, &d, b"\0"));
    }

    #[test]
    fn the_hash_is_pinned() {
        // Changing the record format or the hash changes every trace; do it on purpose only.
        let mut t = Tracer::new();
        t.record(
            Instant::from_millis(1),
            a("16.0.0.1:49737"),
            a("16.0.0.2:49737"),
            &[1, 2, 3],
        );
        assert_eq!(t.finish().to_hex().len(), 64);
        let again = {
            let mut u = Tracer::new();
            u.record(
                Instant::from_millis(1),
                a("16.0.0.1:49737"),
                a("16.0.0.2:49737"),
                &[1, 2, 3],
            );
            u.finish()
        };
        assert_eq!(t.finish(), again);
        assert_ne!(t.finish(), Tracer::new().finish());
    }
}
