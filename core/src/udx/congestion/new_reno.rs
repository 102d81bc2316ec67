//! NewReno (RFC 5681/6582) in bytes, with slow start, a CUBIC-like β = 0.7 on loss, and
//! Linux-style pacing gains (2× in slow start, 1.25× in congestion avoidance, over
//! `cwnd / srtt`). Selectable with [`CongestionControl::NewReno`](super::CongestionControl).

use super::controller::{AckSample, Controller};
use crate::time::Instant;
use core::time::Duration;

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
