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

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn peer(attempts: u32, proven: bool, explicit: bool) -> PeerInfo {
        let mut p = PeerInfo::new([9; 32], Vec::new());
        p.attempts = attempts;
        p.proven = proven;
        p.explicit = explicit;
        p
    }

    #[test]
    fn selection_follows_the_reference() {
        use Backoff::*;
        // (attempts, proven, explicit) → timer.
        let table = [
            (0, false, false, Some(S)),
            (1, true, false, Some(S)),
            (2, true, false, Some(M)),
            (3, true, false, Some(L)),
            (1, false, false, Some(M)),
            (2, false, false, Some(L)),
            (3, false, false, Some(L)),
            (4, false, false, None),
            (4, true, false, None),
            (4, false, true, Some(X)),
            (9, true, true, Some(X)),
        ];
        for (a, proven, explicit, want) in table {
            assert_eq!(
                select(&peer(a, proven, explicit)),
                want,
                "{a} {proven} {explicit}"
            );
        }
        let mut banned = peer(1, true, true);
        banned.banned = true;
        assert_eq!(select(&banned), None);
        let mut quiet = peer(1, true, true);
        quiet.reconnecting = false;
        assert_eq!(select(&quiet), None);
    }

    #[test]
    fn default_periods_are_in_the_reference_ranges() {
        for seed in 0..200 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let b = default_backoffs(&mut rng);
            let t = RetryTimer::new(b, BACKOFF_JITTER, &mut rng);
            let ranges = [
                (1_000, 2_000),
                (5_000, 6_500),
                (15_000, 17_500),
                (600_000, 720_500),
            ];
            for (p, (lo, hi)) in t.periods().iter().zip(ranges) {
                let ms = p.as_millis() as u64;
                assert!((lo..=hi).contains(&ms), "{ms} not in {lo}..={hi}");
            }
        }
    }

    /// A bulk timer of period T ticks every floor(0.66 T); a peer added between ticks k and
    /// k + 1 fires at tick k + 2, so it waits [0.66 T, 1.32 T).
    #[test]
    fn bulk_timer_fires_at_the_tick_after_next() {
        let mut t = BulkTimer::new(Duration::from_millis(1_000)); // tick 660 ms
        let at = Instant::from_millis;
        t.add(at(0), [1; 32]); // starts the interval: ticks at 660, 1320, …
        assert_eq!(t.poll_timeout(), Some(at(660)));
        let mut out = Vec::new();
        t.handle_timeout(at(660), &mut out);
        assert!(out.is_empty(), "tick 1 only moves it to `next`");
        t.add(at(700), [2; 32]);
        t.handle_timeout(at(1_320), &mut out);
        assert_eq!(out, [[1; 32]], "fired at tick 2: waited 1.32 T");
        out.clear();
        t.handle_timeout(at(1_980), &mut out);
        assert_eq!(
            out,
            [[2; 32]],
            "added after tick 1, fired at tick 3: waited 1.28 T"
        );
        // Idle ticks pass without waking anyone; the phase stays on the grid.
        assert_eq!(t.poll_timeout(), None);
        out.clear();
        t.add(at(10_000), [3; 32]); // next ticks: 10_560, 11_220
        assert_eq!(t.poll_timeout(), Some(at(10_560)));
        t.handle_timeout(at(10_560), &mut out);
        t.handle_timeout(at(11_220), &mut out);
        assert_eq!(out, [[3; 32]]);
        let waited = 11_220 - 10_000;
        assert!((660..1_320).contains(&waited));
    }

    /// Worked example of spec 06 §6: a topic peer that never answers waits M, L, L and is then
    /// given up (until rediscovered).
    #[test]
    fn a_peer_that_never_answers_backs_off_then_stops() {
        let mut p = PeerInfo::new([7; 32], Vec::new());
        let mut timers = Vec::new();
        for i in 1..=5u64 {
            p.disconnected(Instant::from_millis(i * 1_000));
            timers.push(select(&p));
        }
        use Backoff::*;
        assert_eq!(timers, [Some(M), Some(L), Some(L), None, None]);
    }
}
