//! Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation; Linux `tcp_rate.c`,
//! libudx `udx_rate.c`), in bytes and microseconds.
//!
//! Every (re)transmission snapshots how much had been delivered, and when, into the packet
//! ([`PacketRate`]). When an ACK delivers packets, the snapshot of the most recently sent one
//! gives the sample: bytes delivered since it was sent, over the longer of the send and ACK
//! intervals ([`RateSample`]). A sample taken while the sender had nothing to send is marked
//! application-limited: it measures the application, not the path. BBR ([`super::congestion::bbr`]) builds
//! its bandwidth model from these samples.

use crate::time::Instant;
use core::time::Duration;

/// Delivery state recorded in a packet when it is (re)transmitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRate {
    /// Bytes delivered (acked or sacked) when the packet was sent.
    pub delivered: u64,
    /// When `delivered` last changed, as of sending.
    pub delivered_time: Instant,
    /// Send time of the packet that started the current send interval.
    pub first_sent_time: Instant,
    /// Whether the sender was application-limited when it was sent.
    pub app_limited: bool,
}

/// One delivery-rate sample (one per ACK that delivered something).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSample {
    /// Bytes delivered over `interval`.
    pub delivered: u64,
    /// `delivered` at the send of the packet the sample is taken from: a new round trip
    /// starts when this passes the mark set at the previous round's start.
    pub prior_delivered: u64,
    /// The longer of the send and the ACK interval.
    pub interval: Duration,
    /// Taken while the application, not the network, limited the sender.
    pub is_app_limited: bool,
}

impl RateSample {
    /// Bytes per second.
    pub fn bandwidth(&self) -> u64 {
        let us = u128::from(self.interval.as_micros().max(1) as u64);
        u64::try_from(u128::from(self.delivered) * 1_000_000 / us).unwrap_or(u64::MAX)
    }
}

/// Per-ACK accumulator, filled by [`RateSampler::on_delivered`] for each newly delivered
/// packet and turned into a sample by [`RateSampler::generate`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AckRate {
    prior_delivered: u64,
    prior_time: Option<Instant>,
    is_app_limited: bool,
    last_sent: Option<(Instant, u32)>,
    send_interval: Duration,
}

/// The stream's delivery counters.
#[derive(Debug, Clone)]
pub struct RateSampler {
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    /// 0: not application-limited; else samples stay app-limited until `delivered` passes it.
    app_limited: u64,
}

impl RateSampler {
    /// Fresh counters; the sender starts application-limited (nothing was written yet).
    pub fn new(now: Instant) -> Self {
        RateSampler {
            delivered: 0,
            delivered_time: now,
            first_sent_time: now,
            app_limited: 1,
        }
    }

    /// Bytes delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Whether samples are currently marked application-limited.
    pub fn is_app_limited(&self) -> bool {
        self.app_limited != 0
    }

    /// The snapshot for a packet sent now; `nothing_outstanding`: no packet was unacknowledged
    /// before this one (a new send interval starts).
    pub fn on_sent(&mut self, now: Instant, nothing_outstanding: bool) -> PacketRate {
        if nothing_outstanding {
            self.first_sent_time = now;
            self.delivered_time = now;
        }
        PacketRate {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            app_limited: self.app_limited != 0,
        }
    }

    /// The sender ran out of data with room in its window: samples until everything now in
    /// flight is delivered measure the application (`tcp_rate_check_app_limited`).
    pub fn mark_app_limited(&mut self, bytes_in_flight: u64) {
        self.app_limited = (self.delivered + bytes_in_flight).max(1);
    }

    /// A packet of `len` bytes (an empty END counts as one), sent at `sent_time` with sequence
    /// `seq`, was delivered (acked or sacked) for the first time.
    pub fn on_delivered(
        &mut self,
        acc: &mut AckRate,
        rate: &PacketRate,
        sent_time: Instant,
        seq: u32,
        len: u64,
    ) {
        self.delivered += len.max(1);
        let newer = match acc.last_sent {
            None => true,
            Some((t, s)) => sent_time > t || (sent_time == t && super::packet::seq_lt(s, seq)),
        };
        if acc.prior_time.is_none() || newer {
            acc.prior_delivered = rate.delivered;
            acc.prior_time = Some(rate.delivered_time);
            acc.is_app_limited = rate.app_limited;
            acc.last_sent = Some((sent_time, seq));
            self.first_sent_time = sent_time;
            acc.send_interval = sent_time.saturating_duration_since(rate.first_sent_time);
        }
    }

    /// The sample for one ACK (`None` if it delivered nothing usable, or the interval is
    /// shorter than the minimum RTT, which a real delivery rate cannot be).
    pub fn generate(
        &mut self,
        now: Instant,
        acc: &AckRate,
        newly_delivered: u64,
        min_rtt: Option<Duration>,
    ) -> Option<RateSample> {
        if self.app_limited != 0 && self.delivered > self.app_limited {
            self.app_limited = 0;
        }
        if newly_delivered > 0 {
            self.delivered_time = now;
        }
        let prior_time = acc.prior_time?;
        let ack_interval = now.saturating_duration_since(prior_time);
        let interval = acc.send_interval.max(ack_interval);
        if interval.is_zero() || min_rtt.is_some_and(|m| interval < m) {
            return None;
        }
        Some(RateSample {
            delivered: self.delivered - acc.prior_delivered,
            prior_delivered: acc.prior_delivered,
            interval,
            is_app_limited: acc.is_app_limited,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn ms(n: u64) -> Instant {
        Instant::from_micros(n * 1000)
    }

    #[test]
    fn a_window_acked_one_rtt_later_gives_its_bandwidth() {
        let mut r = RateSampler::new(ms(0));
        // 10 packets of 1000 bytes sent at t=0 (not app-limited).
        r.app_limited = 0;
        let pkts: Vec<PacketRate> = (0..10).map(|i| r.on_sent(ms(0), i == 0)).collect();
        // All acked at t=10 ms by one ACK.
        let mut acc = AckRate::default();
        for (i, p) in pkts.iter().enumerate() {
            r.on_delivered(&mut acc, p, ms(0), i as u32, 1000);
        }
        let s = r
            .generate(ms(10), &acc, 10_000, Some(Duration::from_millis(10)))
            .unwrap();
        assert_eq!(s.delivered, 10_000);
        assert_eq!(s.interval, Duration::from_millis(10));
        assert_eq!(s.bandwidth(), 1_000_000);
        assert!(!s.is_app_limited);
        // The next packet, sent now, starts from the new delivery state.
        let p = r.on_sent(ms(10), true);
        assert_eq!(p.delivered, 10_000);
        assert_eq!(p.delivered_time, ms(10));
    }

    #[test]
    fn the_longer_of_send_and_ack_intervals_is_used() {
        let mut r = RateSampler::new(ms(0));
        r.app_limited = 0;
        // Packet A at 0, B at 20 ms (B's send interval starts at A): acked together at 30 ms,
        // 30 ms after A's delivery state: the ack interval (30 ms) is the longer one.
        let a = r.on_sent(ms(0), true);
        let b = r.on_sent(ms(20), false);
        let mut acc = AckRate::default();
        r.on_delivered(&mut acc, &a, ms(0), 0, 1000);
        r.on_delivered(&mut acc, &b, ms(20), 1, 1000);
        let s = r.generate(ms(30), &acc, 2000, None).unwrap();
        assert_eq!(s.interval, Duration::from_millis(30));
        assert_eq!(s.delivered, 2000);
    }

    #[test]
    fn samples_are_app_limited_until_the_bubble_is_delivered() {
        let mut r = RateSampler::new(ms(0));
        assert!(r.is_app_limited(), "nothing written yet");
        let p = r.on_sent(ms(0), true);
        assert!(p.app_limited);
        r.mark_app_limited(1000);
        let mut acc = AckRate::default();
        r.on_delivered(&mut acc, &p, ms(0), 0, 1000);
        let s = r.generate(ms(5), &acc, 1000, None).unwrap();
        assert!(s.is_app_limited);
        // Delivered (1000) has not passed the mark (1000) yet; one more byte clears it.
        assert!(r.is_app_limited());
        let q = r.on_sent(ms(5), true);
        let mut acc = AckRate::default();
        r.on_delivered(&mut acc, &q, ms(5), 1, 1);
        r.generate(ms(6), &acc, 1, None);
        assert!(!r.is_app_limited());
    }

    #[test]
    fn intervals_shorter_than_the_min_rtt_and_acks_without_deliveries_give_no_sample() {
        let mut r = RateSampler::new(ms(0));
        let p = r.on_sent(ms(0), true);
        let mut acc = AckRate::default();
        r.on_delivered(&mut acc, &p, ms(0), 0, 1000);
        // Interval 1 ms < min RTT 2 ms: not a real rate.
        assert_eq!(
            r.generate(ms(1), &acc, 1000, Some(Duration::from_millis(2))),
            None
        );
        assert_eq!(r.generate(ms(3), &AckRate::default(), 0, None), None);
    }
}
