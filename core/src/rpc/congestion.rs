//! dht-rpc's congestion window. STUB: interface fixed; implementation in progress.

/// 4 slots of send counts, drained every 750 ms.
#[derive(Debug, Clone)]
pub struct CongestionWindow {}

#[allow(unused_variables, missing_docs)]
impl CongestionWindow {
    pub fn new(max_window: u32) -> Self { unimplemented!() }
    pub fn is_full(&self) -> bool { unimplemented!() }
    pub fn send(&mut self) { unimplemented!() }
    pub fn recv(&mut self) { unimplemented!() }
    pub fn drain(&mut self) { unimplemented!() }
}
