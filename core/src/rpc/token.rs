//! Round-trip tokens. STUB: interface fixed; implementation in progress.
use core::net::Ipv4Addr;
use rand_core::RngCore;

/// The two rotating secrets tokens are keyed with.
#[derive(Debug, Clone, Default)]
pub struct TokenSecrets {}

#[allow(unused_variables, missing_docs)]
impl TokenSecrets {
    pub fn new() -> Self { unimplemented!() }
    pub fn from_secrets(previous: [u8; 32], current: [u8; 32]) -> Self { unimplemented!() }
    pub fn token<R: RngCore + ?Sized>(&mut self, host: Ipv4Addr, rng: &mut R) -> [u8; 32] { unimplemented!() }
    pub fn is_valid(&self, host: Ipv4Addr, token: &[u8; 32]) -> bool { unimplemented!() }
    pub fn on_drain(&mut self) { unimplemented!() }
    pub fn secrets(&self) -> Option<[[u8; 32]; 2]> { unimplemented!() }
}
