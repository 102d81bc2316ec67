//! Retry timers (`lib/retry-timer.js`, `lib/bulk-timer.js`): after one of our dials closes,
//! the peer waits in one of four bulk timers — S, M, L (seconds) or X (minutes) — chosen by
//! whether it ever connected and how many attempts failed, then goes back to the dial queue.
//!
//! A bulk timer ticks every `floor(0.66 × T)` from its first use; a peer added between two
//! ticks fires at the tick after the next, so it waits `[0.66 T, 1.32 T)`.

use alloc::vec::Vec;
use core::time::Duration;

use rand_core::RngCore;

use super::peer::PeerInfo;
use crate::time::Instant;

/// The base periods S, M, L, X before jitter.
pub const BACKOFF_BASE: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(600),
];

/// The jitter unit (`BACKOFF_JITTER`, also the default per-timer jitter).
pub const BACKOFF_JITTER: Duration = Duration::from_millis(500);

/// How many jitter units each default period may add (0–500 ms, 0–1 s, 0–2 s, 0–2 min).
const JITTER_UNITS: [u32; 4] = [1, 2, 4, 240];

/// `round(max × random())` in whole milliseconds.
fn random_ms(rng: &mut impl RngCore, max: Duration) -> Duration {
    let max_ms = max.as_millis() as u64;
    if max_ms == 0 {
        return Duration::ZERO;
    }
    // A uniform draw in [0, max] inclusive, as `Math.round(max * Math.random())` gives.
    Duration::from_millis(rng.next_u64() % (max_ms + 1))
}

/// The reference's default periods: each base plus its module jitter (drawn once per process
/// there, once per swarm here).
pub fn default_backoffs(rng: &mut impl RngCore) -> [Duration; 4] {
    let mut out = BACKOFF_BASE;
    for (b, units) in out.iter_mut().zip(JITTER_UNITS) {
        *b += random_ms(rng, BACKOFF_JITTER * units);
    }
    out
}

/// One bulk timer: a fixed tick; peers added between ticks k and k+1 fire at tick k+2.
#[derive(Debug, Clone)]
pub struct BulkTimer {
    /// Its period `T` (the tick is `floor(0.66 T)`).
    period: Duration,
    tick: Duration,
    /// The next tick (`None` before the first use).
    next_tick: Option<Instant>,
    /// Fired at the next tick.
    next: Vec<[u8; 32]>,
    /// Fired at the tick after.
    pending: Vec<[u8; 32]>,
}

impl BulkTimer {
    /// A timer of period `period`.
    pub fn new(period: Duration) -> Self {
        let tick = Duration::from_millis((period.as_millis() as u64 * 66) / 100)
            .max(Duration::from_millis(1));
        BulkTimer {
            period,
            tick,
            next_tick: None,
            next: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// The period `T`.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Moves the tick phase past `now` over ticks that had nothing to fire.
    fn catch_up(&mut self, now: Instant) {
        if let Some(t) = self.next_tick {
            if t <= now && self.next.is_empty() && self.pending.is_empty() {
                let behind = now.as_micros() - t.as_micros();
                let tick = self.tick.as_micros() as u64;
                let skip = behind / tick + 1;
                self.next_tick = Some(Instant::from_micros(t.as_micros() + skip * tick));
            }
        }
    }

    /// Adds a peer at `now`.
    pub fn add(&mut self, now: Instant, key: [u8; 32]) {
        self.catch_up(now);
        if self.next_tick.is_none() {
            self.next_tick = Some(now + self.tick);
        }
        self.pending.push(key);
    }

    /// When it must be called next (`None` while nothing waits).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.next.is_empty() && self.pending.is_empty() {
            return None;
        }
        self.next_tick
    }

    /// Runs the ticks due at `now`; appends the peers that fire to `out`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<[u8; 32]>) {
        while let Some(t) = self.next_tick.filter(|t| *t <= now) {
            if self.next.is_empty() && self.pending.is_empty() {
                self.catch_up(now);
                return;
            }
            out.append(&mut self.next);
            self.next = core::mem::take(&mut self.pending);
            self.next_tick = Some(t + self.tick);
        }
    }

    /// Forgets every waiting peer.
    pub fn clear(&mut self) {
        self.next.clear();
        self.pending.clear();
    }
}

/// Which retry timer a closed dial goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// ~1–2 s.
    S = 0,
    /// ~5–6.5 s.
    M = 1,
    /// ~15–17.5 s.
    L = 2,
    /// ~10–12 min (explicit peers only).
    X = 3,
}

/// `_selectRetryTimer`: none for a banned peer or one told not to reconnect; after more than 3
/// attempts X for an explicit peer, none for a topic peer (it waits for rediscovery); else S / M
/// / L for a proven peer and M / L / L for one that never connected.
pub fn select(peer: &PeerInfo) -> Option<Backoff> {
    if peer.banned || !peer.reconnecting {
        return None;
    }
    if peer.attempts > 3 {
        return peer.explicit.then_some(Backoff::X);
    }
    match (peer.attempts, peer.proven) {
        (0, _) | (1, true) => Some(Backoff::S),
        (2, true) | (1, false) => Some(Backoff::M),
        _ => Some(Backoff::L),
    }
}

/// The four timers of a swarm.
#[derive(Debug, Clone)]
pub struct RetryTimer {
    timers: [BulkTimer; 4],
}

impl RetryTimer {
    /// Timers of periods `backoffs[i] + round(jitter × random())` (one draw per timer).
    pub fn new(backoffs: [Duration; 4], jitter: Duration, rng: &mut impl RngCore) -> Self {
        let timers = backoffs.map(|b| BulkTimer::new(b + random_ms(rng, jitter)));
        RetryTimer { timers }
    }

    /// The timer periods S, M, L, X.
    pub fn periods(&self) -> [Duration; 4] {
        [0, 1, 2, 3].map(|i| self.timers[i].period())
    }

    /// Puts `peer` in its timer (`add`); `false` if no timer applies (it is not retried).
    pub fn add(&mut self, now: Instant, peer: &PeerInfo) -> bool {
        match select(peer) {
            Some(b) => {
                self.timers[b as usize].add(now, peer.public_key);
                true
            }
            None => false,
        }
    }

    /// The earliest tick that has peers to fire.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().filter_map(BulkTimer::poll_timeout).min()
    }

    /// Runs due ticks; returns the peers to requeue.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        for t in &mut self.timers {
            t.handle_timeout(now, &mut out);
        }
        out
    }

    /// Forgets every waiting peer (suspend).
    pub fn clear(&mut self) {
        for t in &mut self.timers {
            t.clear();
        }
    }
}
