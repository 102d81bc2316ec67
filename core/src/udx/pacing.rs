//! A token-bucket pacer with **microsecond** refill.
//!
//! libudx refills its bucket once per millisecond and sleeps in 1 ms steps; a Rust port that
//! also rounds to whole milliseconds caps a sender near one burst per millisecond (the pitfall
//! in issue 6). Here tokens accrue continuously (`rate × elapsed µs`), carry over between
//! refills (fractional bytes are kept), and the wait for the next packet is computed to the
//! microsecond.

use crate::time::Instant;

/// Pacer state.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Available tokens in bytes × 1e6 (fixed point, so sub-byte accrual per µs is not lost).
    tokens_e6: u128,
    capacity: u64,
    rate: u64,
    last: Instant,
}

impl Pacer {
    /// A pacer starting with a full bucket of `capacity` bytes at `rate` bytes/s.
    pub fn new(now: Instant, rate: u64, capacity: u64) -> Self {
        Pacer {
            tokens_e6: u128::from(capacity) * 1_000_000,
            capacity,
            rate,
            last: now,
        }
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Bucket capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Change the rate and burst size (tokens already accrued are kept, up to the new capacity).
    pub fn set_rate(&mut self, now: Instant, rate: u64, capacity: u64) {
        self.refill(now);
        self.rate = rate;
        self.capacity = capacity;
        self.tokens_e6 = self.tokens_e6.min(u128::from(capacity) * 1_000_000);
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.as_micros().saturating_sub(self.last.as_micros());
        if dt > 0 {
            let cap = u128::from(self.capacity) * 1_000_000;
            self.tokens_e6 = self
                .tokens_e6
                .saturating_add(u128::from(dt) * u128::from(self.rate))
                .min(cap);
            self.last = now;
        } else if now > self.last {
            self.last = now;
        }
    }

    /// `None` if `bytes` may be sent now, else the instant (µs precision) at which they may.
    pub fn delay(&mut self, now: Instant, bytes: usize) -> Option<Instant> {
        self.refill(now);
        // A packet larger than the bucket is allowed once the bucket is full.
        let need = u128::from(bytes.min(self.capacity as usize) as u64) * 1_000_000;
        if self.tokens_e6 >= need {
            return None;
        }
        if self.rate == 0 {
            return Some(now + core::time::Duration::from_millis(1));
        }
        let missing = need - self.tokens_e6;
        let us = missing.div_ceil(u128::from(self.rate)).max(1);
        Some(Instant::from_micros(
            now.as_micros()
                .saturating_add(u64::try_from(us).unwrap_or(u64::MAX)),
        ))
    }

    /// Take the tokens for a sent packet.
    pub fn on_sent(&mut self, bytes: usize) {
        self.tokens_e6 = self
            .tokens_e6
            .saturating_sub(u128::from(bytes as u64) * 1_000_000);
    }
}
