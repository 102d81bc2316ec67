//! dht-rpc 6.27.0 lib/health.js: network health from per-tick snapshots of the cumulative
//! response and timeout counters.
//!
//! The reference's `NetworkHealth` calls one of `dht._online()`, `dht._degraded()` or
//! `dht._offline()` on every update that is neither cold nor idle; the DHT emits
//! `network-update` only when its own (online, degraded) pair changes. The two pairs are always
//! equal, so this type keeps one pair: [`Health::update`] returns the change (the
//! `network-update`), and [`Health::last_signal`] tells which callback the last update invoked.

/// A change of the node's network health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// Responses are arriving again.
    Online,
    /// More than half the requests time out.
    Degraded,
    /// Nothing answers.
    Offline,
}

/// Snapshots kept in the ring.
const WINDOW: usize = 4;
/// Offline snapshots in a row before the node counts as offline.
const OFFLINE_THRESHOLD: u32 = 2;
/// Fewer requests than this (responses + timeouts) in a tick is "idle".
const IDLE_THRESHOLD: u64 = 4;

/// One snapshot of the cumulative counters, plus its classification (`None` for snapshots taken
/// while cold or idle, which the reference leaves unclassified).
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    responses: u64,
    timeouts: u64,
    degraded: Option<bool>,
}

/// Health from per-tick (responses, timeouts) snapshots.
#[derive(Debug, Clone)]
pub struct Health {
    window: [Snapshot; WINDOW],
    /// Snapshots stored so far (at most 4).
    len: usize,
    /// Position of the newest snapshot (meaningless while `len == 0`).
    head: usize,
    offline_ticks: u32,
    /// Degraded snapshots in the ring. Signed: the reference decrements the healthy counter for
    /// departing *offline* snapshots too (their `degraded` is false), so it can go negative.
    degraded_ticks: i32,
    /// Healthy snapshots in the ring (see `degraded_ticks`).
    healthy_ticks: i32,
    online: bool,
    degraded: bool,
    last_signal: Option<HealthChange>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// Fresh state: online, not degraded, cold.
    pub fn new() -> Self {
        Health {
            window: [Snapshot::default(); WINDOW],
            len: 0,
            head: 0,
            offline_ticks: 0,
            degraded_ticks: 0,
            healthy_ticks: 0,
            online: true,
            degraded: false,
            last_signal: None,
        }
    }

    /// Records one tick's snapshot of the cumulative counters (`stats.requests.responses` and
    /// `stats.requests.timeouts`). Returns the new state when the node's online / degraded /
    /// offline state flipped (the reference emits `network-update` then).
    pub fn update(&mut self, total_responses: u64, total_timeouts: u64) -> Option<HealthChange> {
        self.last_signal = None;

        // The oldest snapshot leaves the ring: undo its count.
        if let Some(oldest) = self.oldest() {
            match oldest.degraded {
                Some(true) => self.degraded_ticks = self.degraded_ticks.saturating_sub(1),
                Some(false) => self.healthy_ticks = self.healthy_ticks.saturating_sub(1),
                None => {}
            }
        }

        self.head = self.tail();
        if let Some(slot) = self.window.get_mut(self.head) {
            *slot = Snapshot {
                responses: total_responses,
                timeouts: total_timeouts,
                degraded: None,
            };
        }
        if self.len < WINDOW {
            self.len = (self.head + 1).max(self.len);
        }

        if self.cold() || self.idle() {
            return None;
        }

        let responses = self.responses();
        let timeouts = self.timeouts();
        let offline = responses == 0;
        // timeouts / (responses + timeouts) > 0.5, in integers.
        let degraded = !offline && timeouts > responses;
        if let Some(slot) = self.window.get_mut(self.head) {
            slot.degraded = Some(degraded);
        }

        if offline {
            self.offline_ticks = self.offline_ticks.saturating_add(1);
        } else {
            self.offline_ticks = 0;
            if degraded {
                self.degraded_ticks = self.degraded_ticks.saturating_add(1);
            } else {
                self.healthy_ticks = self.healthy_ticks.saturating_add(1);
            }
        }

        let before = self.state();
        if !offline {
            self.online = true;
        } else if self.offline_ticks >= OFFLINE_THRESHOLD {
            self.online = false;
        }
        if !self.online || self.healthy_ticks == WINDOW as i32 {
            self.degraded = false;
        } else if self.degraded_ticks == WINDOW as i32 {
            self.degraded = true;
        }

        let now = self.state();
        self.last_signal = Some(now);
        if now != before {
            Some(now)
        } else {
            None
        }
    }

    /// True unless the node counts as offline.
    pub fn online(&self) -> bool {
        self.online
    }

    /// True when the node counts as degraded (online, but most requests time out).
    pub fn degraded(&self) -> bool {
        self.degraded
    }

    /// The current state as a [`HealthChange`] value.
    pub fn state(&self) -> HealthChange {
        if !self.online {
            HealthChange::Offline
        } else if self.degraded {
            HealthChange::Degraded
        } else {
            HealthChange::Online
        }
    }

    /// Which of the reference's `_online` / `_degraded` / `_offline` callbacks the last
    /// [`Health::update`] invoked (`None` when it was cold or idle).
    pub fn last_signal(&self) -> Option<HealthChange> {
        self.last_signal
    }

    /// Fewer than 4 snapshots so far.
    pub fn cold(&self) -> bool {
        self.len < WINDOW
    }

    /// Fewer than 4 requests finished (responses + timeouts) between the last two snapshots.
    pub fn idle(&self) -> bool {
        self.responses().saturating_add(self.timeouts()) < IDLE_THRESHOLD
    }

    /// Responses between the previous and the newest snapshot (0 with fewer than 2).
    pub fn responses(&self) -> u64 {
        match (self.newest(), self.previous()) {
            (Some(n), Some(p)) => n.responses.saturating_sub(p.responses),
            _ => 0,
        }
    }

    /// Timeouts between the previous and the newest snapshot (0 with fewer than 2).
    pub fn timeouts(&self) -> u64 {
        match (self.newest(), self.previous()) {
            (Some(n), Some(p)) => n.timeouts.saturating_sub(p.timeouts),
            _ => 0,
        }
    }

    /// Forgets all snapshots and becomes online and not degraded (wake-up). The reference then
    /// calls `_online()`, which emits `network-update` if the node was offline or degraded; use
    /// [`Health::reset_with_change`] to learn whether that happened.
    pub fn reset(&mut self) {
        *self = Health::new();
    }

    /// [`Health::reset`], returning `Some(Online)` if the state flipped (the reference emits
    /// `network-update` then).
    pub fn reset_with_change(&mut self) -> Option<HealthChange> {
        let before = self.state();
        self.reset();
        if before != HealthChange::Online {
            Some(HealthChange::Online)
        } else {
            None
        }
    }

    // ---------------------------------------------------------------------------------------

    /// The position the next snapshot goes to (also the oldest snapshot once the ring is full).
    fn tail(&self) -> usize {
        if self.len == 0 {
            0
        } else {
            (self.head + 1) % WINDOW
        }
    }

    fn at(&self, i: usize) -> Option<&Snapshot> {
        if i < self.len {
            self.window.get(i)
        } else {
            None
        }
    }

    fn oldest(&self) -> Option<&Snapshot> {
        self.at(self.tail())
    }

    fn newest(&self) -> Option<&Snapshot> {
        if self.len == 0 {
            None
        } else {
            self.at(self.head)
        }
    }

    fn previous(&self) -> Option<&Snapshot> {
        if self.len == 0 {
            None
        } else {
            self.at((self.head + WINDOW - 1) % WINDOW)
        }
    }
}
