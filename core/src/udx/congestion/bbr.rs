//! BBR congestion control (version 1: Cardwell et al., "BBR: Congestion-Based Congestion
//! Control", 2016; Linux `tcp_bbr.c`), the algorithm libudx runs (`udx_bbr.c`, a port of Linux's).
//!
//! BBR models the path instead of reacting to loss: the bottleneck bandwidth (`BtlBw`, the
//! windowed maximum of the delivery-rate samples over 10 round trips, see [`crate::udx::rate`]) and
//! the round-trip propagation time (`RTprop`, the minimum RTT over 10 s). It paces at
//! `pacing_gain × BtlBw` and caps the data in flight at `cwnd_gain × BDP` (+ the ACK
//! aggregation seen lately). States:
//! * STARTUP: gain 2/ln 2 until the bandwidth stops growing by 25% for 3 rounds;
//! * DRAIN: the inverse gain until the queue STARTUP built is gone;
//! * PROBE_BW: cycles the pacing gain over 1.25, 0.75, 1 × 6 (one RTprop each), cwnd gain 2;
//! * PROBE_RTT: when RTprop was not refreshed for 10 s, 4 packets in flight for 200 ms and a
//!   round, so the queue drains and the minimum RTT can be measured again.
//!
//! Loss does not shrink the model; during recovery the window follows packet conservation (the
//! data in flight plus what each ACK delivers) and is restored afterwards, as in Linux.
//!
//! Units are bytes, bytes per second and microseconds (libudx: packets and milliseconds), and
//! the state machine follows Linux where libudx's port differs: libudx never saves the window
//! before recovery (`bbr_ssthresh` has no caller), so it restores it from `ssthresh`, which
//! is 65,535 packets until the first DRAIN. One deliberate floor: the RTT in the BDP and in the
//! length of a PROBE_BW phase is at least 1 ms (libudx's clock resolution; its `min_rtt_ms` is
//! never below 1). On loopback or a LAN the minimum RTT is tens of microseconds while the
//! scheduling delays of the two processes come and go in milliseconds; a window of twice a
//! 50 µs BDP would stall the sender at every such hiccup.

use super::controller::{AckSample, Controller};
use crate::time::Instant;
use core::time::Duration;

/// Gains are fixed point in units of 1/256 (Linux's `BBR_UNIT`).
const UNIT: u64 = 256;
/// 2/ln(2): the smallest gain that doubles the sending rate each round in STARTUP.
const HIGH_GAIN: u64 = UNIT * 2885 / 1000 + 1;
/// Its inverse, to drain the STARTUP queue in one round.
const DRAIN_GAIN: u64 = UNIT * 1000 / 2885;
/// The window gain in PROBE_BW.
const CWND_GAIN: u64 = 2 * UNIT;
/// PROBE_BW's pacing gains, one phase per RTprop.
const PACING_GAINS: [u64; CYCLE_LEN] = [
    UNIT * 5 / 4,
    UNIT * 3 / 4,
    UNIT,
    UNIT,
    UNIT,
    UNIT,
    UNIT,
    UNIT,
];
const CYCLE_LEN: usize = 8;
/// The phase PROBE_BW starts in after the phase index advances once (libudx starts at 3, so 4).
const CYCLE_START: usize = 3;
/// Rounds the bandwidth filter remembers.
const BW_FILTER_ROUNDS: u64 = CYCLE_LEN as u64 + 2;
/// How long a minimum-RTT sample stays valid.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long PROBE_RTT holds the window at its minimum.
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// The smallest window, in packets.
const CWND_MIN_PACKETS: u64 = 4;
/// The initial window, in packets (libudx's too).
const INITIAL_CWND_PACKETS: u64 = 10;
/// The pipe is full when the bandwidth grew by less than this…
const FULL_BW_THRESH: u64 = UNIT * 5 / 4;
/// …for this many rounds.
const FULL_BW_ROUNDS: u32 = 3;
/// Rounds an ACK-aggregation maximum is kept (two windows of this, alternating).
const EXTRA_ACKED_WIN_ROUNDS: u32 = 5;
/// The aggregation allowance is at most this much data at the estimated bandwidth.
const EXTRA_ACKED_MAX: Duration = Duration::from_millis(100);
/// Pace 1% below the estimate so that queues drain.
const PACING_MARGIN_PCT: u64 = 1;
/// The floor of the RTT in the BDP and the PROBE_BW phase length (see the module doc).
const RTT_FLOOR: Duration = Duration::from_millis(1);
/// Largest burst the window allows for at once beyond the BDP (Linux: a 64 KB TSO segment).
const MAX_SEND_QUANTUM: u64 = 64 * 1024;

/// BBR's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BbrState {
    /// Exponential growth until the bandwidth plateaus.
    Startup,
    /// Draining the queue STARTUP built.
    Drain,
    /// Steady state: cycling the pacing gain around the estimated bandwidth.
    ProbeBw,
    /// Holding the window at 4 packets to measure the minimum RTT again.
    ProbeRtt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CaState {
    Open,
    Recovery,
    Loss,
}

/// A windowed running maximum (Kathleen Nichols' algorithm, Linux `lib/minmax.c`): the best,
/// second best and third best samples of the window, each newer than the one before.
#[derive(Debug, Clone, Copy, Default)]
struct MaxFilter {
    s: [(u64, u64); 3], // (time, value)
}

impl MaxFilter {
    fn get(&self) -> u64 {
        self.s[0].1
    }

    fn reset(&mut self, t: u64, v: u64) {
        self.s = [(t, v); 3];
    }

    fn update(&mut self, win: u64, t: u64, v: u64) {
        if v >= self.s[0].1 || t.saturating_sub(self.s[2].0) > win {
            return self.reset(t, v);
        }
        if v >= self.s[1].1 {
            self.s[2] = (t, v);
            self.s[1] = (t, v);
        } else if v >= self.s[2].1 {
            self.s[2] = (t, v);
        }
        // Subwindow upkeep: the best sample expired, or the others are stale.
        let dt = t.saturating_sub(self.s[0].0);
        if dt > win {
            self.s[0] = self.s[1];
            self.s[1] = self.s[2];
            self.s[2] = (t, v);
            if t.saturating_sub(self.s[0].0) > win {
                self.s[0] = self.s[1];
                self.s[1] = self.s[2];
                self.s[2] = (t, v);
            }
        } else if self.s[1].0 == self.s[0].0 && dt > win / 4 {
            self.s[2] = (t, v);
            self.s[1] = (t, v);
        } else if self.s[2].0 == self.s[1].0 && dt > win / 2 {
            self.s[2] = (t, v);
        }
    }
}

/// BBR in bytes.
#[derive(Debug, Clone)]
pub struct Bbr {
    mss: u64,
    cwnd: u64,
    max_cwnd: u64,
    state: BbrState,
    ca: CaState,
    prev_ca: CaState,
    /// Bottleneck bandwidth filter, bytes/s, keyed by round count.
    bw: MaxFilter,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Instant,
    probe_rtt_done: Option<Instant>,
    probe_rtt_round_done: bool,
    prior_cwnd: u64,
    round_count: u64,
    next_round_delivered: u64,
    round_start: bool,
    packet_conservation: bool,
    idle_restart: bool,
    full_bw: u64,
    full_bw_count: u32,
    full_bw_reached: bool,
    cycle_index: usize,
    cycle_stamp: Instant,
    pacing_gain: u64,
    cwnd_gain: u64,
    /// Payload bytes per second.
    pacing_rate: u64,
    has_seen_rtt: bool,
    ack_epoch_start: Instant,
    ack_epoch_acked: u64,
    extra_acked: [u64; 2],
    extra_acked_win_rounds: u32,
    extra_acked_win_index: usize,
}

impl Bbr {
    /// A fresh controller: STARTUP with the initial window of 10 packets of `mss` bytes.
    pub fn new(now: Instant, mss: u64, max_cwnd: u64) -> Self {
        let mss = mss.max(1);
        let mut b = Bbr {
            mss,
            cwnd: INITIAL_CWND_PACKETS * mss,
            max_cwnd: max_cwnd.max(CWND_MIN_PACKETS * mss),
            state: BbrState::Startup,
            ca: CaState::Open,
            prev_ca: CaState::Open,
            bw: MaxFilter::default(),
            min_rtt: None,
            min_rtt_stamp: now,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            prior_cwnd: 0,
            round_count: 0,
            next_round_delivered: 0,
            round_start: false,
            packet_conservation: false,
            idle_restart: false,
            full_bw: 0,
            full_bw_count: 0,
            full_bw_reached: false,
            cycle_index: 0,
            cycle_stamp: now,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: HIGH_GAIN,
            pacing_rate: 0,
            has_seen_rtt: false,
            ack_epoch_start: now,
            ack_epoch_acked: 0,
            extra_acked: [0; 2],
            extra_acked_win_rounds: 0,
            extra_acked_win_index: 0,
        };
        b.init_pacing_rate(None);
        b
    }

    /// The state.
    pub fn state(&self) -> BbrState {
        self.state
    }

    /// The bottleneck-bandwidth estimate in bytes per second.
    pub fn bandwidth(&self) -> u64 {
        self.bw.get()
    }

    /// The minimum RTT BBR uses, once measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Whether STARTUP found the pipe full.
    pub fn full_bw_reached(&self) -> bool {
        self.full_bw_reached
    }

    /// The RTT used for BDPs and phase lengths: the minimum RTT, at least [`RTT_FLOOR`].
    fn rtprop(&self) -> Option<Duration> {
        self.min_rtt.map(|r| r.max(RTT_FLOOR))
    }

    /// Bytes in flight that `gain` × the bandwidth-delay product allows.
    fn inflight_for(&self, bw: u64, gain: u64) -> u64 {
        let Some(rtt) = self.rtprop() else {
            return INITIAL_CWND_PACKETS * self.mss;
        };
        let bdp = u128::from(bw) * rtt.as_micros() / 1_000_000;
        let v = (bdp * u128::from(gain)).div_ceil(u128::from(UNIT));
        u64::try_from(v).unwrap_or(u64::MAX)
    }

    fn rate_for(&self, bw: u64, gain: u64) -> u64 {
        let r = u128::from(bw) * u128::from(gain) / u128::from(UNIT)
            * u128::from(100 - PACING_MARGIN_PCT)
            / 100;
        u64::try_from(r).unwrap_or(u64::MAX)
    }

    fn init_pacing_rate(&mut self, srtt: Option<Duration>) {
        let rtt = match srtt {
            Some(r) if !r.is_zero() => {
                self.has_seen_rtt = true;
                r
            }
            _ => Duration::from_millis(1),
        };
        let bw = u128::from(self.cwnd) * 1_000_000 / rtt.as_micros().max(1);
        self.pacing_rate = self
            .rate_for(u64::try_from(bw).unwrap_or(u64::MAX), HIGH_GAIN)
            .max(1);
    }

    fn set_pacing_rate(&mut self, bw: u64, gain: u64, srtt: Duration) {
        let rate = self.rate_for(bw, gain);
        if !self.has_seen_rtt && !srtt.is_zero() {
            self.init_pacing_rate(Some(srtt));
        }
        if (self.full_bw_reached || rate > self.pacing_rate) && rate > 0 {
            self.pacing_rate = rate;
        }
    }

    /// About 1 ms of data at the pacing rate (at least 2 packets, at most 64 KiB): one burst.
    fn send_quantum(&self) -> u64 {
        (self.pacing_rate / 1000).clamp(2 * self.mss, MAX_SEND_QUANTUM.max(2 * self.mss))
    }

    fn save_cwnd(&mut self) {
        if self.prev_ca < CaState::Recovery && self.state != BbrState::ProbeRtt {
            self.prior_cwnd = self.cwnd;
        } else {
            self.prior_cwnd = self.prior_cwnd.max(self.cwnd);
        }
    }

    fn reset_mode(&mut self, now: Instant) {
        if self.full_bw_reached {
            self.enter_probe_bw(now);
        } else {
            self.state = BbrState::Startup;
        }
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.state = BbrState::ProbeBw;
        self.cycle_index = CYCLE_START;
        self.advance_cycle_phase(now);
    }

    fn advance_cycle_phase(&mut self, now: Instant) {
        self.cycle_index = (self.cycle_index + 1) % CYCLE_LEN;
        self.cycle_stamp = now;
    }

    fn check_probe_rtt_done(&mut self, now: Instant) {
        if self.probe_rtt_done.is_none_or(|t| now <= t) {
            return;
        }
        self.min_rtt_stamp = now;
        self.cwnd = self.cwnd.max(self.prior_cwnd);
        self.reset_mode(now);
    }

    // ----- the model, updated on every ACK (Linux `bbr_update_model`)

    fn update_bw(&mut self, s: &AckSample) {
        self.round_start = false;
        let Some(rs) = s.rate else { return };
        if rs.prior_delivered >= self.next_round_delivered {
            self.next_round_delivered = s.delivered;
            self.round_count += 1;
            self.round_start = true;
            self.packet_conservation = false;
        }
        let bw = rs.bandwidth();
        if !rs.is_app_limited || bw >= self.bw.get() {
            self.bw.update(BW_FILTER_ROUNDS, self.round_count, bw);
        }
    }

    fn update_ack_aggregation(&mut self, s: &AckSample) {
        if s.newly_acked == 0 || s.rate.is_none() {
            return;
        }
        if self.round_start {
            self.extra_acked_win_rounds = (self.extra_acked_win_rounds + 1).min(31);
            if self.extra_acked_win_rounds >= EXTRA_ACKED_WIN_ROUNDS {
                self.extra_acked_win_rounds = 0;
                self.extra_acked_win_index ^= 1;
                self.extra_acked[self.extra_acked_win_index] = 0;
            }
        }
        let epoch = s.now.saturating_duration_since(self.ack_epoch_start);
        let mut expected = u64::try_from(u128::from(self.bw.get()) * epoch.as_micros() / 1_000_000)
            .unwrap_or(u64::MAX);
        if self.ack_epoch_acked <= expected {
            // ACKs arrive no faster than expected: a new epoch.
            self.ack_epoch_acked = 0;
            self.ack_epoch_start = s.now;
            expected = 0;
        }
        self.ack_epoch_acked = self.ack_epoch_acked.saturating_add(s.newly_acked);
        let extra = (self.ack_epoch_acked - expected).min(self.cwnd);
        let slot = &mut self.extra_acked[self.extra_acked_win_index];
        if extra > *slot {
            *slot = extra;
        }
    }

    fn update_cycle_phase(&mut self, s: &AckSample) {
        if self.state != BbrState::ProbeBw {
            return;
        }
        let full_length = self
            .rtprop()
            .is_some_and(|r| s.now.saturating_duration_since(self.cycle_stamp) > r);
        let bw = self.bw.get();
        let next = if self.pacing_gain == UNIT {
            full_length
        } else if self.pacing_gain > UNIT {
            // Probing: until a full phase passed and the extra data reached the path (or loss).
            full_length
                && (s.newly_lost > 0
                    || s.prior_in_flight >= self.inflight_for(bw, self.pacing_gain))
        } else {
            // Draining what the probe queued: until a phase passed or the queue is gone.
            full_length || s.prior_in_flight <= self.inflight_for(bw, UNIT)
        };
        if next {
            self.advance_cycle_phase(s.now);
        }
    }

    fn check_full_bw_reached(&mut self, s: &AckSample) {
        if self.full_bw_reached || !self.round_start || s.rate.is_some_and(|r| r.is_app_limited) {
            return;
        }
        let thresh =
            u64::try_from(u128::from(self.full_bw) * u128::from(FULL_BW_THRESH) / u128::from(UNIT))
                .unwrap_or(u64::MAX);
        if self.bw.get() >= thresh {
            self.full_bw = self.bw.get();
            self.full_bw_count = 0;
            return;
        }
        self.full_bw_count += 1;
        self.full_bw_reached = self.full_bw_count >= FULL_BW_ROUNDS;
    }

    fn check_drain(&mut self, s: &AckSample) {
        if self.state == BbrState::Startup && self.full_bw_reached {
            self.state = BbrState::Drain;
        }
        if self.state == BbrState::Drain
            && s.bytes_in_flight <= self.inflight_for(self.bw.get(), UNIT)
        {
            self.enter_probe_bw(s.now);
        }
    }

    fn update_min_rtt(&mut self, s: &AckSample) {
        let now = s.now;
        let expired = now.saturating_duration_since(self.min_rtt_stamp) > MIN_RTT_WINDOW;
        if let Some(rtt) = s.rtt {
            if self.min_rtt.is_none_or(|m| rtt < m) || expired {
                self.min_rtt = Some(rtt);
                self.min_rtt_stamp = now;
            }
        }
        if expired && !self.idle_restart && self.state != BbrState::ProbeRtt {
            self.state = BbrState::ProbeRtt;
            self.save_cwnd();
            self.probe_rtt_done = None;
        }
        if self.state == BbrState::ProbeRtt {
            if self.probe_rtt_done.is_none() && s.bytes_in_flight <= CWND_MIN_PACKETS * self.mss {
                self.probe_rtt_done = Some(now + PROBE_RTT_DURATION);
                self.probe_rtt_round_done = false;
                self.next_round_delivered = s.delivered;
            } else if self.probe_rtt_done.is_some() {
                if self.round_start {
                    self.probe_rtt_round_done = true;
                }
                if self.probe_rtt_round_done {
                    self.check_probe_rtt_done(now);
                }
            }
        }
        if s.newly_acked > 0 {
            self.idle_restart = false;
        }
    }

    fn update_gains(&mut self) {
        (self.pacing_gain, self.cwnd_gain) = match self.state {
            BbrState::Startup => (HIGH_GAIN, HIGH_GAIN),
            BbrState::Drain => (DRAIN_GAIN, HIGH_GAIN),
            BbrState::ProbeBw => (PACING_GAINS[self.cycle_index], CWND_GAIN),
            BbrState::ProbeRtt => (UNIT, UNIT),
        };
    }

    // ----- the window

    /// Packet conservation in recovery, the saved window restored after (Linux
    /// `bbr_set_cwnd_to_recover_or_restore`). Returns the window and whether it is final.
    fn recover_or_restore(&mut self, s: &AckSample) -> (u64, bool) {
        let mut cwnd = self.cwnd;
        if s.newly_lost > 0 {
            cwnd = cwnd.saturating_sub(s.newly_lost).max(self.mss);
        }
        if self.ca == CaState::Recovery && self.prev_ca != CaState::Recovery {
            self.packet_conservation = true;
            self.next_round_delivered = s.delivered; // a round starts now
            cwnd = s.bytes_in_flight + s.newly_acked;
        } else if self.prev_ca >= CaState::Recovery && self.ca == CaState::Open {
            cwnd = cwnd.max(self.prior_cwnd);
            self.packet_conservation = false;
        }
        self.prev_ca = self.ca;
        if self.packet_conservation {
            return (cwnd.max(s.bytes_in_flight + s.newly_acked), true);
        }
        (cwnd, false)
    }

    fn ack_aggregation_cwnd(&self) -> u64 {
        if !self.full_bw_reached {
            return 0;
        }
        let max =
            u64::try_from(u128::from(self.bw.get()) * EXTRA_ACKED_MAX.as_micros() / 1_000_000)
                .unwrap_or(u64::MAX);
        self.extra_acked[0].max(self.extra_acked[1]).min(max)
    }

    fn set_cwnd(&mut self, s: &AckSample) {
        let mut cwnd = self.cwnd;
        if s.newly_acked > 0 {
            let (c, done) = self.recover_or_restore(s);
            cwnd = c;
            if !done {
                let mut target =
                    self.inflight_for(self.bw.get(), self.cwnd_gain) + self.ack_aggregation_cwnd();
                // Room for the bursts pacing sends (Linux's quantization budget).
                target += 3 * self.send_quantum();
                if self.state == BbrState::ProbeBw && self.cycle_index == 0 {
                    target += 2 * self.mss;
                }
                if self.full_bw_reached {
                    cwnd = (cwnd + s.newly_acked).min(target);
                } else if cwnd < target || s.delivered < INITIAL_CWND_PACKETS * self.mss {
                    cwnd += s.newly_acked;
                }
                cwnd = cwnd.max(CWND_MIN_PACKETS * self.mss);
            }
        }
        cwnd = cwnd.min(self.max_cwnd);
        if self.state == BbrState::ProbeRtt {
            cwnd = cwnd.min(CWND_MIN_PACKETS * self.mss);
        }
        self.cwnd = cwnd;
    }
}

impl Controller for Bbr {
    fn on_transmit_start(&mut self, now: Instant, app_limited: bool) {
        if !app_limited {
            return;
        }
        self.idle_restart = true;
        self.ack_epoch_start = now;
        self.ack_epoch_acked = 0;
        match self.state {
            BbrState::ProbeBw => {
                // Restarting from idle: pace at the estimate, no faster.
                let rate = self.rate_for(self.bw.get(), UNIT);
                if rate > 0 {
                    self.pacing_rate = rate;
                }
            }
            BbrState::ProbeRtt => self.check_probe_rtt_done(now),
            _ => {}
        }
    }

    fn on_ack(&mut self, s: &AckSample, in_recovery: bool) {
        if !in_recovery {
            self.ca = CaState::Open;
        }
        self.update_bw(s);
        self.update_ack_aggregation(s);
        self.update_cycle_phase(s);
        self.check_full_bw_reached(s);
        self.check_drain(s);
        self.update_min_rtt(s);
        self.update_gains();
        self.set_pacing_rate(self.bw.get(), self.pacing_gain, s.srtt);
        self.set_cwnd(s);
    }

    fn on_congestion_event(&mut self, _now: Instant, _bytes_in_flight: u64) {
        self.save_cwnd();
        self.ca = CaState::Recovery;
    }

    fn on_rto(&mut self, _now: Instant, _bytes_in_flight: u64) {
        self.save_cwnd();
        self.ca = CaState::Loss;
        self.prev_ca = CaState::Loss;
        self.full_bw = 0;
        self.round_start = true;
        // Everything in flight was declared lost: one packet, then growth per ACK up to the
        // model's window (restored when the recovery ends).
        self.cwnd = self.mss;
    }

    fn window(&self) -> u64 {
        self.cwnd
    }

    fn pacing_rate(&self, _srtt: Option<Duration>) -> u64 {
        self.pacing_rate
    }

    fn set_mss(&mut self, mss: u64) {
        let mss = mss.max(1);
        if self.cwnd == INITIAL_CWND_PACKETS * self.mss {
            self.cwnd = INITIAL_CWND_PACKETS * mss;
        }
        self.mss = mss;
    }

    fn probing_rtt(&self) -> bool {
        self.state == BbrState::ProbeRtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udx::rate::RateSample;
    use alloc::vec::Vec;

    const MSS: u64 = 1000;
    const RTT: Duration = Duration::from_millis(10);

    /// Drives a controller with one ACK per round trip, as a path of a given bandwidth would.
    struct Path {
        bbr: Bbr,
        now: Instant,
        delivered: u64,
    }

    impl Path {
        fn new() -> Self {
            Path {
                bbr: Bbr::new(Instant::ZERO, MSS, 64 << 20),
                now: Instant::ZERO,
                delivered: 0,
            }
        }

        /// One round trip: the path delivered `bw × RTT` bytes at `bw` bytes/s; `inflight`
        /// bytes remain in flight.
        fn round(&mut self, bw: u64, inflight: u64, app_limited: bool) -> AckSample {
            self.round_rtt(bw, inflight, app_limited, RTT, 0, false)
        }

        fn round_rtt(
            &mut self,
            bw: u64,
            inflight: u64,
            app_limited: bool,
            rtt: Duration,
            lost: u64,
            in_recovery: bool,
        ) -> AckSample {
            self.now = self.now + rtt;
            let acked = (u128::from(bw) * rtt.as_micros() / 1_000_000) as u64;
            let prior = self.delivered;
            self.delivered += acked;
            let s = AckSample {
                now: self.now,
                newly_acked: acked,
                newly_lost: lost,
                prior_in_flight: inflight + acked,
                bytes_in_flight: inflight,
                delivered: self.delivered,
                srtt: rtt,
                min_rtt: rtt,
                rtt: Some(rtt),
                rate: Some(RateSample {
                    delivered: acked,
                    prior_delivered: prior,
                    interval: rtt,
                    is_app_limited: app_limited,
                }),
                cwnd_limited: true,
            };
            self.bbr.on_ack(&s, in_recovery);
            s
        }

        /// Grows through STARTUP on a `bw` path until the pipe is found full.
        fn fill(&mut self, bw: u64) {
            let mut rate = 100_000;
            for _ in 0..40 {
                rate = (rate * 2).min(bw);
                let cwnd = self.bbr.window();
                self.round(rate, cwnd, false);
                if self.bbr.full_bw_reached() {
                    return;
                }
            }
            panic!("STARTUP never ended");
        }
    }

    fn gain_of(rate: u64, bw: u64) -> f64 {
        rate as f64 / bw as f64 / 0.99
    }

    #[test]
    fn startup_doubles_then_drains_then_probes_at_the_bottleneck_rate() {
        let mut p = Path::new();
        assert_eq!(p.bbr.state(), BbrState::Startup);
        assert_eq!(p.bbr.window(), 10 * MSS);
        // Before any RTT sample: 2.885 × 10 packets per millisecond.
        assert!((gain_of(p.bbr.pacing_rate(None), 10 * MSS * 1000) - 2.885).abs() < 0.02);
        let bw = 8_000_000;
        let mut prev_cwnd = p.bbr.window();
        let mut rate = 100_000;
        while rate < bw {
            rate *= 2;
            let cwnd = p.bbr.window();
            p.round(rate.min(bw), cwnd, false);
            assert_eq!(p.bbr.state(), BbrState::Startup);
            assert!(
                p.bbr.window() > prev_cwnd,
                "the window grows every round in STARTUP"
            );
            prev_cwnd = p.bbr.window();
            // (Never below the rate the first RTT sample gave: 2.885 × 10 packets per RTT.)
            assert!(gain_of(p.bbr.pacing_rate(None), p.bbr.bandwidth()) >= 2.88);
        }
        assert!((gain_of(p.bbr.pacing_rate(None), p.bbr.bandwidth()) - 2.885).abs() < 0.02);
        // Three rounds without 25% growth: the pipe is full. A big queue is still in flight.
        for _ in 0..3 {
            p.round(bw, 5 * 80_000, false);
        }
        assert!(p.bbr.full_bw_reached());
        assert_eq!(p.bbr.state(), BbrState::Drain);
        assert_eq!(p.bbr.bandwidth(), bw);
        assert!(
            gain_of(p.bbr.pacing_rate(None), bw) < 0.36,
            "drain paces at 1/2.885"
        );
        // Queue drained to one BDP (8 MB/s × 10 ms = 80 kB): PROBE_BW.
        p.round(bw, 80_000, false);
        assert_eq!(p.bbr.state(), BbrState::ProbeBw);
        // The window settles at 2 BDP plus headroom for bursts, and pacing cycles around bw.
        let mut gains = Vec::new();
        for _ in 0..16 {
            p.round(bw, 80_000, false);
            gains.push((gain_of(p.bbr.pacing_rate(None), bw) * 100.0).round() as u32);
            let cwnd = p.bbr.window();
            assert!(
                (2 * 80_000..=3 * 80_000 + 3 * 64 * 1024 + 2 * MSS).contains(&cwnd),
                "cwnd {cwnd}"
            );
        }
        assert!(
            gains.contains(&125) && gains.contains(&75) && gains.contains(&100),
            "{gains:?}"
        );
        assert_eq!(
            gains.iter().filter(|&&g| g == 100).count(),
            12,
            "6 of 8 phases cruise: {gains:?}"
        );
    }

    #[test]
    fn app_limited_samples_do_not_lower_the_estimate_and_old_maxima_expire() {
        let mut p = Path::new();
        p.fill(8_000_000);
        for _ in 0..3 {
            p.round(8_000_000, 80_000, false);
        }
        // The application goes quiet: low, app-limited samples leave the model alone.
        for _ in 0..20 {
            p.round(1_000_000, 10_000, true);
        }
        assert_eq!(p.bbr.bandwidth(), 8_000_000);
        // The path really slowed down: after 10 rounds of real samples the old max is gone.
        for _ in 0..11 {
            p.round(2_000_000, 20_000, false);
        }
        assert_eq!(p.bbr.bandwidth(), 2_000_000);
    }

    #[test]
    fn probe_rtt_every_10_s_holds_4_packets_for_200_ms_then_restores_the_window() {
        let mut p = Path::new();
        p.fill(8_000_000);
        // Keep going with RTT samples above the minimum (a standing queue): min RTT is not
        // refreshed, so after 10 s BBR enters PROBE_RTT.
        let mut entered = None;
        for _ in 0..2000 {
            let cwnd = p.bbr.window();
            p.round_rtt(
                8_000_000,
                cwnd.min(160_000),
                false,
                Duration::from_millis(12),
                0,
                false,
            );
            if p.bbr.state() == BbrState::ProbeRtt {
                entered = Some(p.now);
                break;
            }
        }
        let entered = entered.expect("PROBE_RTT");
        assert!(
            entered.as_micros() >= 10_000_000 && entered.as_micros() < 10_500_000,
            "{}",
            entered.as_micros()
        );
        assert_eq!(p.bbr.window(), 4 * MSS);
        assert!(p.bbr.probing_rtt());
        // Hold while the flight drains and for 200 ms more, then back to PROBE_BW. (The stream
        // marks what is delivered meanwhile application-limited.)
        let mut left = None;
        for _ in 0..100 {
            p.round_rtt(400_000, 4 * MSS, true, RTT, 0, false);
            if p.bbr.state() != BbrState::ProbeRtt {
                left = Some(p.now);
                break;
            }
            assert_eq!(p.bbr.window(), 4 * MSS);
        }
        let left = left.expect("PROBE_RTT ends");
        assert!(left.as_micros() - entered.as_micros() >= 200_000);
        assert_eq!(p.bbr.state(), BbrState::ProbeBw);
        assert!(
            p.bbr.window() >= 160_000,
            "window restored: {}",
            p.bbr.window()
        );
        assert_eq!(p.bbr.min_rtt(), Some(RTT));
    }

    #[test]
    fn recovery_conserves_packets_and_restores_the_window_after() {
        let mut p = Path::new();
        p.fill(8_000_000);
        for _ in 0..5 {
            p.round(8_000_000, 80_000, false);
        }
        let before = p.bbr.window();
        // Loss: the stream enters recovery; the next ACK sets the window to what is in flight
        // plus what it delivered.
        p.bbr.on_congestion_event(p.now, 50_000);
        p.round_rtt(2_000_000, 30_000, false, RTT, 10_000, true);
        assert_eq!(p.bbr.window(), 30_000 + 20_000);
        // Recovery over: the saved window is back.
        p.round_rtt(8_000_000, 60_000, false, RTT, 0, false);
        assert!(p.bbr.window() >= before, "{} < {before}", p.bbr.window());
        // An RTO: one packet, growth per ACK, then the saved window again.
        let before = p.bbr.window();
        p.bbr.on_rto(p.now, 80_000);
        assert_eq!(p.bbr.window(), MSS);
        p.round_rtt(100_000, 0, false, RTT, 0, true);
        assert!(p.bbr.window() > MSS && p.bbr.window() < before);
        p.round_rtt(8_000_000, 0, false, RTT, 0, false);
        assert!(p.bbr.window() >= before);
        // The bandwidth model survived both.
        assert_eq!(p.bbr.bandwidth(), 8_000_000);
    }

    #[test]
    fn loopback_sized_rtts_still_get_a_window_of_a_millisecond() {
        let mut p = Path::new();
        let rtt = Duration::from_micros(50);
        let mut rate = 1_000_000;
        for _ in 0..200 {
            rate = (rate * 2).min(200_000_000);
            let cwnd = p.bbr.window();
            p.round_rtt(rate, cwnd.min(400_000), false, rtt, 0, false);
        }
        assert!(p.bbr.full_bw_reached());
        assert_eq!(p.bbr.min_rtt(), Some(rtt));
        // 200 MB/s × 50 µs = 10 kB; the floor makes the BDP 200 kB (1 ms), the window ≥ 2 BDP.
        assert!(p.bbr.window() >= 400_000, "{}", p.bbr.window());
    }

    #[test]
    fn the_windowed_max_filter_keeps_the_best_of_the_window() {
        let mut f = MaxFilter::default();
        f.update(10, 0, 5);
        f.update(10, 1, 9);
        f.update(10, 2, 7);
        assert_eq!(f.get(), 9);
        for t in 3..=11 {
            f.update(10, t, 6);
        }
        assert_eq!(f.get(), 9, "still within 10 rounds of the 9");
        f.update(10, 12, 6);
        assert!(f.get() < 9, "the 9 expired");
        assert!(f.get() >= 6);
    }
}
