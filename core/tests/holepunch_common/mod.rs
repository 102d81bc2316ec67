//! Helpers shared by the holepunch tests (`holepunch_nat`, `holepunch_puncher`,
//! `holepunch_mini_network`): addresses, DHT nodes that sample, time, a seeded RNG, and a
//! puncher's drained outputs.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

use hdht_core::connect::puncher::{Puncher, PuncherOutput};
use hdht_core::udx::SocketId;
use hdht_core::Instant;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// An address from text.
pub fn a(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

/// The `i`th DHT node (a NAT sample's source).
pub fn node(i: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, i), 49737)
}

/// A seeded RNG.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `ms` milliseconds after time zero.
pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Everything the puncher has queued.
pub fn drain(p: &mut Puncher) -> Vec<PuncherOutput> {
    std::iter::from_fn(|| p.poll_output()).collect()
}

/// The probes among `outs`: (socket, to, ttl).
pub fn probes(outs: &[PuncherOutput]) -> Vec<(SocketId, SocketAddrV4, u8)> {
    outs.iter()
        .filter_map(|o| match o {
            PuncherOutput::Probe { socket, to, ttl } => Some((*socket, *to, *ttl)),
            _ => None,
        })
        .collect()
}
