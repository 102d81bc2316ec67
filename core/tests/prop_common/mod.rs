//! Quickcheck helpers shared by the property tests (`connect_props`, `dht_props`,
//! `wire_props`, `dht_store`): how many cases run (`QUICKCHECK_TESTS=<n>` overrides every
//! default), and generators for the protocol's value shapes.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use hdht_core::wire::MAX_SAFE_INTEGER;
use quickcheck::{Arbitrary, Gen, QuickCheck};

/// Cases to run: `QUICKCHECK_TESTS`, else `default`.
pub fn cases(default: u64) -> u64 {
    std::env::var("QUICKCHECK_TESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A runner of [`cases`]`(default)` cases.
pub fn qc(default: u64) -> QuickCheck {
    QuickCheck::new().tests(cases(default))
}

/// A runner of [`cases`]`(default)` cases that may discard up to ten times as many (properties
/// that return `TestResult::discard`).
pub fn qc_discarding(default: u64) -> QuickCheck {
    let tests = cases(default);
    QuickCheck::new().tests(tests).max_tests(tests * 10)
}

/// Uniform in `0..n` (0 when `n` is 0).
pub fn below(g: &mut Gen, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        usize::arbitrary(g) % n
    }
}

/// Any IPv4 socket address.
pub fn arb_addr4(g: &mut Gen) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(u32::arbitrary(g)), u16::arbitrary(g))
}

/// Any IPv6 socket address (no flow info, no scope).
pub fn arb_addr6(g: &mut Gen) -> SocketAddrV6 {
    SocketAddrV6::new(Ipv6Addr::from(u128::arbitrary(g)), u16::arbitrary(g), 0, 0)
}

/// 32 arbitrary bytes (keys, ids, tokens).
pub fn arb_32(g: &mut Gen) -> [u8; 32] {
    let mut out = [0u8; 32];
    for b in &mut out {
        *b = u8::arbitrary(g);
    }
    out
}

/// `Some(f(g))` half the time.
pub fn arb_opt<T>(g: &mut Gen, f: impl Fn(&mut Gen) -> T) -> Option<T> {
    bool::arbitrary(g).then(|| f(g))
}

/// Up to `max` items.
pub fn arb_vec<T>(g: &mut Gen, max: usize, f: impl Fn(&mut Gen) -> T) -> Vec<T> {
    let n = usize::arbitrary(g) % (max + 1);
    (0..n).map(|_| f(g)).collect()
}

/// A compact `uint` that is mostly small, sometimes one of each varint width (payload fields:
/// error codes, firewall, ids), never above 2^53 − 1.
pub fn arb_uint_mostly_small(g: &mut Gen) -> u64 {
    match u8::arbitrary(g) % 8 {
        0 => 0xfc,
        1 => 0xfd + u64::from(u16::arbitrary(g)) % 0xff00,
        2 => 0x1_0000 + u64::from(u32::arbitrary(g)),
        3 => u64::arbitrary(g) % (MAX_SAFE_INTEGER + 1),
        _ => u64::from(u8::arbitrary(g) % 8),
    }
}

/// A compact `uint` a JavaScript peer can hold, spread evenly over every encoded width, with
/// each width's edges now and then.
pub fn arb_uint_every_width(g: &mut Gen) -> u64 {
    let x = u64::arbitrary(g);
    match u8::arbitrary(g) % 6 {
        0 => x % 0xfd,
        1 => 0xfd + x % (0x1_0000 - 0xfd),
        2 => 0x1_0000 + x % (0x1_0000_0000 - 0x1_0000),
        3 => 0x1_0000_0000 + x % (MAX_SAFE_INTEGER - 0x1_0000_0000 + 1),
        4 => *g
            .choose(&[
                0,
                0xfc,
                0xfd,
                0xffff,
                0x1_0000,
                0xffff_ffff,
                0x1_0000_0000,
                MAX_SAFE_INTEGER,
            ])
            .unwrap(),
        _ => x % 4,
    }
}

/// Every edge of the compact `uint` encoding (1, 3, 5 and 9 bytes) and of 2^53.
pub const UINT_BOUNDARIES: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xfb,
    0xfc,
    0xfd,
    0xfe,
    0xff,
    0x100,
    0xfffe,
    0xffff,
    0x1_0000,
    0x1_0001,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    MAX_SAFE_INTEGER - 1,
    MAX_SAFE_INTEGER,
];

/// A `uint` in 0..=2^53-1, biased towards the encoding boundaries and to every bit width.
pub fn arb_uint_boundaries(g: &mut Gen) -> u64 {
    match below(g, 4) {
        0 => *g.choose(UINT_BOUNDARIES).unwrap(),
        1 => u64::from(u8::arbitrary(g)),
        _ => {
            let bits = below(g, 54) as u32;
            if bits == 0 {
                0
            } else {
                u64::arbitrary(g) & ((1u64 << bits) - 1)
            }
        }
    }
}
