//! Congestion control.
//!
//! Sender-local (nothing here is on the wire, spec 04 §3), so any sane algorithm interoperates.
//! The stream talks to a controller only through [`Controller`]. Two are implemented:
//! [`Bbr`] (libudx's algorithm, the default) and [`NewReno`] (RFC 5681/6582 in
//! bytes, with slow start) plus Linux-style pacing gains (2× in slow start, 1.25× in congestion
//! avoidance, over `cwnd / srtt`). [`StreamConfig::congestion`](super::StreamConfig) picks one.

use super::bbr::Bbr;
use super::rate::RateSample;
use crate::time::Instant;
use core::time::Duration;

/// What one incoming acknowledgement did.
#[derive(Debug, Clone, Copy)]
pub struct AckSample {
    /// Now.
    pub now: Instant,
    /// Bytes newly acknowledged (cumulatively or selectively) by this packet.
    pub newly_acked: u64,
    /// Bytes newly declared lost (by this ACK, or by a timer since the previous one).
    pub newly_lost: u64,
    /// Bytes in flight before processing it.
    pub prior_in_flight: u64,
    /// Bytes still in flight after processing it.
    pub bytes_in_flight: u64,
    /// Bytes delivered (acknowledged or selectively acknowledged) so far, this ACK included.
    pub delivered: u64,
    /// Smoothed RTT.
    pub srtt: Duration,
    /// Minimum RTT seen.
    pub min_rtt: Duration,
    /// The RTT measured on this ACK (newest packet it delivers that was sent once).
    pub rtt: Option<Duration>,
    /// The delivery-rate sample of this ACK, if it gives a valid one.
    pub rate: Option<RateSample>,
    /// Whether the sender was limited by cwnd (not by the application) when these were sent.
    pub cwnd_limited: bool,
}

/// A congestion controller working in bytes.
pub trait Controller {
    /// A packet is sent while nothing was outstanding; `app_limited`: the sender had been idle
    /// for want of data.
    fn on_transmit_start(&mut self, now: Instant, app_limited: bool) {
        let _ = (now, app_limited);
    }
    /// Acknowledgement processed.
    fn on_ack(&mut self, sample: &AckSample, in_recovery: bool);
    /// Loss detected outside recovery: one multiplicative decrease per recovery episode.
    fn on_congestion_event(&mut self, now: Instant, bytes_in_flight: u64);
    /// The retransmission timer fired.
    fn on_rto(&mut self, now: Instant, bytes_in_flight: u64);
    /// Congestion window in bytes.
    fn window(&self) -> u64;
    /// Pacing rate in payload bytes per second given the smoothed RTT (`None` before any RTT
    /// sample).
    fn pacing_rate(&self, srtt: Option<Duration>) -> u64;
    /// The segment size changed (MTU probing, a new path).
    fn set_mss(&mut self, mss: u64);
    /// Whether the controller holds the window down on purpose (BBR's PROBE_RTT): delivery
    /// samples taken meanwhile measure that, not the path.
    fn probing_rtt(&self) -> bool {
        false
    }
}

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

/// NewReno in bytes.
#[derive(Debug, Clone)]
pub struct NewReno {
    mss: u64,
    cwnd: u64,
    ssthresh: u64,
    acked_in_ca: u64,
    max_cwnd: u64,
}

impl NewReno {
    /// Initial window of 10 packets (libudx's too), capped at `max_cwnd` bytes.
    pub fn new(mss: u64, max_cwnd: u64) -> Self {
        NewReno {
            mss,
            cwnd: 10 * mss,
            ssthresh: u64::MAX,
            acked_in_ca: 0,
            max_cwnd: max_cwnd.max(4 * mss),
        }
    }

    fn min_window(&self) -> u64 {
        2 * self.mss
    }

    /// Whether in slow start.
    pub fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }
}

impl Controller for NewReno {
    fn on_ack(&mut self, s: &AckSample, in_recovery: bool) {
        if in_recovery || !s.cwnd_limited {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(s.newly_acked);
        } else {
            self.acked_in_ca = self.acked_in_ca.saturating_add(s.newly_acked);
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(self.mss);
            }
        }
        self.cwnd = self.cwnd.min(self.max_cwnd);
    }

    fn on_congestion_event(&mut self, _now: Instant, _bytes_in_flight: u64) {
        // β = 0.7 (as CUBIC): less drastic than Reno's halving on random loss.
        self.cwnd = (self.cwnd * 7 / 10).max(self.min_window());
        self.ssthresh = self.cwnd;
        self.acked_in_ca = 0;
    }

    fn on_rto(&mut self, _now: Instant, bytes_in_flight: u64) {
        self.ssthresh = (bytes_in_flight.max(self.cwnd) / 2).max(self.min_window());
        self.cwnd = self.min_window();
        self.acked_in_ca = 0;
    }

    fn window(&self) -> u64 {
        self.cwnd
    }

    fn set_mss(&mut self, mss: u64) {
        let mss = mss.max(1);
        if self.cwnd == 10 * self.mss {
            self.cwnd = 10 * mss; // still the initial window
        }
        self.mss = mss;
    }

    fn pacing_rate(&self, srtt: Option<Duration>) -> u64 {
        let gain_pct: u128 = if self.in_slow_start() { 200 } else { 125 };
        match srtt {
            Some(rtt) => {
                let us = rtt.as_micros().max(1);
                let r = u128::from(self.cwnd) * 1_000_000 * gain_pct / 100 / us;
                u64::try_from(r).unwrap_or(u64::MAX)
            }
            // Before any sample: the window per millisecond (libudx starts from cwnd / 1 ms).
            None => self.cwnd.saturating_mul(1000) * 2,
        }
    }
}
