//! Congestion control, one file per algorithm.
//!
//! Sender-local (nothing here is on the wire, spec 04 §3), so any sane algorithm interoperates.
//! The stream talks to a controller only through [`Controller`] ([`controller`]). Two are
//! implemented: [`Bbr`] ([`bbr`], libudx's algorithm, the default) and [`NewReno`]
//! ([`new_reno`]). [`StreamConfig::congestion`](super::StreamConfig) picks one; the stream holds
//! it as a [`Congestion`] (an enum, so no allocation and no indirect calls).

pub mod bbr;
pub mod controller;
pub mod new_reno;

pub use bbr::{Bbr, BbrState};
pub use controller::{AckSample, Controller};
pub use new_reno::NewReno;

use crate::time::Instant;
use core::time::Duration;

/// Which congestion controller a stream runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CongestionControl {
    /// BBR (libudx's).
    #[default]
    Bbr,
    /// NewReno with pacing.
    NewReno,
}

/// The stream's controller (an enum, not a trait object: no allocation, no indirect calls).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per stream, never moved around
pub enum Congestion {
    /// BBR.
    Bbr(Bbr),
    /// NewReno.
    NewReno(NewReno),
}

impl Congestion {
    /// A controller of the given kind.
    pub fn new(kind: CongestionControl, now: Instant, mss: u64, max_cwnd: u64) -> Self {
        match kind {
            CongestionControl::Bbr => Congestion::Bbr(Bbr::new(now, mss, max_cwnd)),
            CongestionControl::NewReno => Congestion::NewReno(NewReno::new(mss, max_cwnd)),
        }
    }
}

/// Calls the same method on whichever controller is inside.
macro_rules! each {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Congestion::Bbr($c) => $e,
            Congestion::NewReno($c) => $e,
        }
    };
}

impl Controller for Congestion {
    fn on_transmit_start(&mut self, now: Instant, app_limited: bool) {
        each!(self, c => c.on_transmit_start(now, app_limited))
    }
    fn on_ack(&mut self, sample: &AckSample, in_recovery: bool) {
        each!(self, c => c.on_ack(sample, in_recovery))
    }
    fn on_congestion_event(&mut self, now: Instant, bytes_in_flight: u64) {
        each!(self, c => c.on_congestion_event(now, bytes_in_flight))
    }
    fn on_rto(&mut self, now: Instant, bytes_in_flight: u64) {
        each!(self, c => c.on_rto(now, bytes_in_flight))
    }
    fn window(&self) -> u64 {
        each!(self, c => c.window())
    }
    fn pacing_rate(&self, srtt: Option<Duration>) -> u64 {
        each!(self, c => c.pacing_rate(srtt))
    }
    fn set_mss(&mut self, mss: u64) {
        each!(self, c => c.set_mss(mss))
    }
    fn probing_rtt(&self) -> bool {
        each!(self, c => c.probing_rtt())
    }
}
