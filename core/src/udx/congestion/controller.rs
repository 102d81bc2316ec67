//! The interface between a UDX stream and its congestion controller: what the stream reports
//! ([`AckSample`], congestion events, RTOs) and what it asks ([`Controller::window`],
//! [`Controller::pacing_rate`]).

use crate::time::Instant;
use crate::udx::rate::RateSample;
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
