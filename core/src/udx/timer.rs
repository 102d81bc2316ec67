//! The timers of one UDX stream, as one table (quinn-proto's `TimerTable`): each [`Timer`] has
//! at most one deadline, [`TimerTable::next_timeout`] is the earliest, and the stream's
//! `handle_timeout` runs the expired ones in a fixed order.
//!
//! The idle timeout is not in the table: it is derived from when the peer was last heard.

use crate::time::Instant;

/// One timer of a UDX stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Retransmission timeout: the oldest unacknowledged packet is presumed lost (RFC 6298).
    Rto,
    /// Tail-loss probe: resend the newest packet to provoke an ACK (RACK-TLP).
    Tlp,
    /// RACK's reordering window ran out: packets sent before the newest acknowledged one are
    /// lost.
    Rack,
    /// Zero-window probe: the peer advertised no room; ask again for its window.
    ZeroWindowProbe,
    /// Keep-alive HEARTBEAT after this much idle time (`StreamConfig::keepalive`).
    KeepAlive,
    /// The pacer lets the next packet go.
    Pacing,
    /// The peer has been silent: a liveness HEARTBEAT (`StreamConfig::idle_timeout`).
    LivenessProbe,
    /// After a graceful close: until when the peer's retransmissions are still acknowledged.
    Linger,
}

impl Timer {
    /// How many timers there are.
    const COUNT: usize = 8;

    fn index(self) -> usize {
        self as usize
    }
}

/// A deadline per [`Timer`], in microseconds, [`UNSET`] for none: half the size of
/// `Option<Instant>`s (an idle connection's memory). A deadline at the clock's very last
/// microsecond counts as unset (nothing is scheduled half a million years out).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimerTable {
    deadlines: [u64; Timer::COUNT],
}

/// The value of a stopped timer.
const UNSET: u64 = u64::MAX;

impl Default for TimerTable {
    fn default() -> Self {
        TimerTable {
            deadlines: [UNSET; Timer::COUNT],
        }
    }
}

fn unpack(micros: u64) -> Option<Instant> {
    (micros != UNSET).then(|| Instant::from_micros(micros))
}

impl TimerTable {
    /// Arms `timer` for `at` (replacing its deadline).
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = at.as_micros();
    }

    /// Arms `timer` for `at`, or stops it for `None`.
    pub(crate) fn set_or_stop(&mut self, timer: Timer, at: Option<Instant>) {
        self.deadlines[timer.index()] = at.map_or(UNSET, Instant::as_micros);
    }

    /// Stops `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = UNSET;
    }

    /// Its deadline.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        unpack(self.deadlines[timer.index()])
    }

    /// Whether it is armed.
    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// Whether it is armed and due by `now`.
    pub(crate) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// The earliest deadline of all.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        unpack(self.deadlines.iter().copied().min().unwrap_or(UNSET))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_armed_timer_is_next() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::Rto, Instant::from_millis(30));
        t.set(Timer::Pacing, Instant::from_millis(10));
        t.set(Timer::Linger, Instant::from_millis(20));
        assert_eq!(t.next_timeout(), Some(Instant::from_millis(10)));
        assert!(t.is_expired(Timer::Pacing, Instant::from_millis(10)));
        assert!(!t.is_expired(Timer::Rto, Instant::from_millis(29)));
        t.stop(Timer::Pacing);
        assert_eq!(t.next_timeout(), Some(Instant::from_millis(20)));
        t.set_or_stop(Timer::Linger, None);
        assert!(!t.is_set(Timer::Linger));
        assert_eq!(t.next_timeout(), Some(Instant::from_millis(30)));
    }
}
