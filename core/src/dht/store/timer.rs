//! The rotation timer both caches share: `setInterval(_gcAuto, ceil(2/3 · maxAge))` plus the
//! `_gced` flag that makes a tick skip its rotation when one already happened since the previous
//! tick (`record-cache/index.js` and `xache/index.js`, `_gcAuto`).

use core::time::Duration;

use crate::time::Instant;

/// What `poll_timeout` reports when a cache has no timer (a `max_age` of zero, which the
/// reference treats as "never expire": `if (this.maxAge > 0 && this.maxAge < Infinity)`).
pub(crate) const NEVER: Instant = Instant::from_micros(u64::MAX);

/// The tick of a cache with the given maximum age: `Math.ceil(2 / 3 * maxAge)` milliseconds, or
/// `None` for a zero `max_age` (no interval is started).
///
/// The reference's `maxAge` is a number of milliseconds; a `Duration` with a fractional
/// millisecond part is treated as that real number of milliseconds and the tick is rounded up to
/// a whole millisecond. For integral millisecond ages this equals the JavaScript expression
/// exactly (the float error of `2 / 3 * maxAge` never crosses an integer).
pub(crate) fn tick_for(max_age: Duration) -> Option<Duration> {
    if max_age.is_zero() {
        return None;
    }
    let micros = max_age.as_micros();
    // ceil(2 · micros / 3000) whole milliseconds.
    let millis = (2 * micros).div_ceil(3000);
    let millis = u64::try_from(millis).unwrap_or(u64::MAX);
    Some(Duration::from_millis(millis))
}

/// The interval timer and the "already rotated since the previous tick" flag.
#[derive(Debug, Clone)]
pub(crate) struct RotationTimer {
    tick: Option<Duration>,
    next: Instant,
    /// `_gced`: set by every rotation (timer- or size-triggered) and by `clear`; a tick that
    /// finds it set skips its rotation and clears it.
    gced: bool,
}

impl RotationTimer {
    pub(crate) fn new(max_age: Duration, now: Instant) -> Self {
        let tick = tick_for(max_age);
        let next = match tick {
            Some(t) => now + t,
            None => NEVER,
        };
        RotationTimer {
            tick,
            next,
            gced: false,
        }
    }

    /// The next tick, or [`NEVER`].
    pub(crate) fn deadline(&self) -> Instant {
        self.next
    }

    /// Records that a rotation happened (`this._gced = true`).
    pub(crate) fn note_rotation(&mut self) {
        self.gced = true;
    }

    /// Runs the tick if it is due and says whether the cache must rotate now. The flag ends up
    /// cleared either way, so the caller must rotate *without* calling
    /// [`note_rotation`](Self::note_rotation).
    ///
    /// At most one tick runs per call. Like Node's `setInterval`, a late tick fires once and the
    /// next one is scheduled one interval after the time it actually ran (`now + tick`); missed
    /// ticks are not replayed. On time (`now == deadline`) this is the plain fixed schedule.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> bool {
        let Some(tick) = self.tick else { return false };
        if now < self.next {
            return false;
        }
        self.next = now + tick;
        // _gcAuto: if (!this._gced) this._gc(); this._gced = false
        let rotate = !self.gced;
        self.gced = false;
        rotate
    }
}
