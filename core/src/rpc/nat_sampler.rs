//! nat-sampler 1.0.1: estimates our public address from what other nodes report.
//!
//! STUB: interface fixed; implementation in progress.
use core::net::{Ipv4Addr, SocketAddrV4};

/// The reference's NAT sampler.
#[derive(Debug, Clone, Default)]
pub struct NatSampler {}

#[allow(unused_variables, missing_docs)]
impl NatSampler {
    pub fn new() -> Self { unimplemented!() }
    pub fn add(&mut self, addr: SocketAddrV4) -> u32 { unimplemented!() }
    pub fn host(&self) -> Option<Ipv4Addr> { unimplemented!() }
    pub fn port(&self) -> u16 { unimplemented!() }
    pub fn size(&self) -> usize { unimplemented!() }
    pub fn threshold(&self) -> usize { unimplemented!() }
}
