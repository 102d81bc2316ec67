//! RACK-TLP loss detection (RFC 8985), as libudx applies it (spec 04 §2.6).
//!
//! This module holds the per-stream RACK state and the time-based loss test; the stream owns the
//! list of sent packets ([`SentPackets`]) and calls [`Rack::on_delivered`] for every packet an
//! ACK or SACK newly delivers, then [`Rack::detect_loss`].

use super::packet::seq_lt;
use super::rate::PacketRate;
use crate::time::Instant;
use alloc::collections::VecDeque;
use core::time::Duration;

/// Where a sent packet stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketState {
    /// Sent, not yet acknowledged or declared lost.
    InFlight,
    /// Declared lost, waiting for retransmission.
    Lost,
    /// Selectively acknowledged (kept until the cumulative ack passes it).
    Sacked,
}

/// A sent DATA/END packet.
#[derive(Debug, Clone)]
pub struct SentPacket {
    /// Its sequence number.
    pub seq: u32,
    /// Stream offset of its first byte.
    pub offset: u64,
    /// Payload bytes.
    pub len: u32,
    /// Whether it carries END.
    pub end: bool,
    /// Time of its latest transmission.
    pub sent_time: Instant,
    /// How many times it was sent.
    pub transmissions: u8,
    /// How many RTO expiries marked it lost.
    pub rto_count: u8,
    /// State.
    pub state: PacketState,
    /// Delivery state when last sent (for delivery-rate samples).
    pub rate: PacketRate,
    /// Whether the copy in flight is an MTU probe (padded to a size being tried).
    pub mtu_probe: bool,
}

/// Unacknowledged packets from `snd.una` upwards (index = `seq - snd.una`).
pub type SentPackets = VecDeque<SentPacket>;

/// RACK state.
#[derive(Debug, Clone, Default)]
pub struct Rack {
    /// Send time of the most recently sent packet that was delivered.
    pub xmit_ts: Option<Instant>,
    /// Its seq.
    pub end_seq: u32,
    /// RTT measured on it.
    pub rtt: Duration,
    /// Highest seq delivered so far (`rack.fack`).
    pub fack: Option<u32>,
    /// Whether reordering was observed.
    pub reordering_seen: bool,
}

/// Result of a loss scan.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossScan {
    /// Packets newly declared lost.
    pub lost: u32,
    /// Bytes newly declared lost.
    pub lost_bytes: u64,
    /// How many of the lost packets were MTU probes (their flag is cleared: they go out again
    /// unpadded, and their loss says nothing about congestion).
    pub probes_lost: u32,
    /// When the earliest not-yet-lost candidate would become lost.
    pub timer: Option<Instant>,
}

impl Rack {
    /// Record that `p` was delivered at `now` (RFC 8985 §6.2 steps 1–2).
    pub fn on_delivered(&mut self, now: Instant, p: &SentPacket, min_rtt: Option<Duration>) {
        let rtt = now.saturating_duration_since(p.sent_time);
        if p.transmissions == 1 {
            if let Some(f) = self.fack {
                if seq_lt(p.seq, f) {
                    self.reordering_seen = true;
                }
            }
        }
        if self.fack.is_none_or(|f| seq_lt(f, p.seq)) {
            self.fack = Some(p.seq);
        }
        if p.transmissions > 1 && rtt < min_rtt.unwrap_or(Duration::ZERO) {
            return; // possibly the ack of an earlier copy: ambiguous
        }
        let newer = match self.xmit_ts {
            None => true,
            Some(t) => p.sent_time > t || (p.sent_time == t && seq_lt(self.end_seq, p.seq)),
        };
        if newer {
            self.xmit_ts = Some(p.sent_time);
            self.end_seq = p.seq;
            self.rtt = rtt;
        }
    }

    /// The reordering window.
    pub fn reo_wnd(
        &self,
        in_recovery: bool,
        sacked: u32,
        srtt: Duration,
        min_rtt: Option<Duration>,
    ) -> Duration {
        if !self.reordering_seen && (in_recovery || sacked >= 3) {
            return Duration::ZERO;
        }
        (min_rtt.unwrap_or(Duration::ZERO) / 4).min(srtt)
    }

    /// Declare lost every in-flight packet sent before the most recently delivered one whose
    /// RACK deadline (`sent + rack.rtt + reo_wnd`) has passed; report the next deadline.
    /// Lost packets' seqs are appended to `lost_out` in ascending order.
    pub fn detect_loss(
        &self,
        now: Instant,
        sent: &mut SentPackets,
        reo_wnd: Duration,
        lost_out: &mut VecDeque<u32>,
    ) -> LossScan {
        let mut scan = LossScan::default();
        let Some(xmit_ts) = self.xmit_ts else {
            return scan;
        };
        let Some(first) = sent.front().map(|p| p.seq) else {
            return scan;
        };
        // Only packets below end_seq can have been sent before it (retransmissions of higher
        // packets are left to the next scan or the RTO).
        let limit = if seq_lt(self.end_seq, first) {
            0
        } else {
            (self.end_seq.wrapping_sub(first) as usize)
                .saturating_add(1)
                .min(sent.len())
        };
        for p in sent.iter_mut().take(limit) {
            if p.state != PacketState::InFlight {
                continue;
            }
            let before =
                p.sent_time < xmit_ts || (p.sent_time == xmit_ts && seq_lt(p.seq, self.end_seq));
            if !before {
                continue;
            }
            let deadline = p.sent_time + self.rtt + reo_wnd;
            if now >= deadline {
                p.state = PacketState::Lost;
                scan.lost += 1;
                scan.lost_bytes += u64::from(p.len);
                if p.mtu_probe {
                    p.mtu_probe = false;
                    scan.probes_lost += 1;
                }
                lost_out.push_back(p.seq);
            } else {
                scan.timer = Some(scan.timer.map_or(deadline, |t: Instant| t.min(deadline)));
            }
        }
        scan
    }
}
