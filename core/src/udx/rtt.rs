//! Round-trip time estimation and the retransmission timeout (spec 04 §2.5).
//!
//! Same rules as libudx (RFC 6298 smoothing, Karn's rule applied by the caller, the outlier
//! clamp, `rto = max(srtt + 4 rttvar, min_rto)` capped at `max_rto`) but in **microseconds**
//! instead of libuv's whole milliseconds, so sub-millisecond paths get a real estimate.

use crate::time::Instant;
use core::time::Duration;

const OUTLIER_US: u64 = 5_000_000;

/// RTT estimator.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: u64,
    rttvar: u64,
    rto: u64,
    min_rto: u64,
    max_rto: u64,
    has_sample: bool,
    min_rtt: u64,
    min_rtt_at: Instant,
    min_rtt_window: u64,
    latest: u64,
}

impl RttEstimator {
    /// A fresh estimator: `rto = initial`.
    pub fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        RttEstimator {
            srtt: 0,
            rttvar: 0,
            rto: us(initial),
            min_rto: us(min_rto),
            max_rto: us(max_rto),
            has_sample: false,
            min_rtt: u64::MAX,
            min_rtt_at: Instant::ZERO,
            min_rtt_window: 300_000_000,
            latest: 0,
        }
    }

    /// Feed one RTT sample (from a packet that was never retransmitted).
    pub fn on_sample(&mut self, now: Instant, rtt: Duration) {
        let mut r = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        if !self.has_sample {
            r = r.min(self.max_rto);
            self.srtt = r;
            self.rttvar = r / 2;
            self.has_sample = true;
        } else {
            let bound = self.srtt.saturating_add(self.rttvar.saturating_mul(5));
            if r > OUTLIER_US && r > bound {
                r = bound.min(self.max_rto);
            }
            let diff = self.srtt.abs_diff(r);
            self.rttvar = (3 * self.rttvar + diff) / 4;
            self.srtt = (7 * self.srtt + r) / 8;
        }
        self.latest = r;
        self.rto = self
            .srtt
            .saturating_add(4 * self.rttvar)
            .clamp(self.min_rto, self.max_rto);
        if r <= self.min_rtt
            || now.saturating_duration_since(self.min_rtt_at).as_micros() as u64
                > self.min_rtt_window
        {
            self.min_rtt = r;
            self.min_rtt_at = now;
        }
    }

    /// Whether any sample was taken.
    pub fn has_sample(&self) -> bool {
        self.has_sample
    }

    /// Smoothed RTT (zero before the first sample).
    pub fn srtt(&self) -> Duration {
        Duration::from_micros(self.srtt)
    }

    /// RTT variation.
    pub fn rttvar(&self) -> Duration {
        Duration::from_micros(self.rttvar)
    }

    /// Current retransmission timeout.
    pub fn rto(&self) -> Duration {
        Duration::from_micros(self.rto)
    }

    /// Windowed minimum RTT (300 s), `None` before the first sample.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.has_sample.then(|| Duration::from_micros(self.min_rtt))
    }

    /// The latest (clamped) sample.
    pub fn latest(&self) -> Duration {
        Duration::from_micros(self.latest)
    }
}
