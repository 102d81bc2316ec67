//! dht-rpc's congestion window (lib/io.js `CongestionWindow`).
//!
//! Four slots of send counts; the current slot rotates on every 750 ms drain. The window is full
//! when the current slot reached `max_window` sends or all four together reached twice that.

/// 4 slots of send counts, drained every 750 ms.
#[derive(Debug, Clone)]
pub struct CongestionWindow {
    slot: usize,
    total: u32,
    window: [u32; 4],
    max_window: u32,
}

impl Default for CongestionWindow {
    /// A window with the reference's default `maxWindow` of 80.
    fn default() -> Self {
        CongestionWindow::new(Self::DEFAULT_MAX_WINDOW)
    }
}

impl CongestionWindow {
    /// The reference's default `maxWindow`.
    pub const DEFAULT_MAX_WINDOW: u32 = 80;

    /// An empty window allowing `max_window` sends per slot (the reference uses 80).
    pub fn new(max_window: u32) -> Self {
        CongestionWindow {
            slot: 0,
            total: 0,
            window: [0; 4],
            max_window,
        }
    }

    /// True when `total ≥ 2·max_window` or the current slot holds `max_window` sends.
    pub fn is_full(&self) -> bool {
        self.total >= self.max_window.saturating_mul(2) || self.current() >= self.max_window
    }

    /// Counts one transmission (first send or retry) in the current slot.
    pub fn send(&mut self) {
        self.total = self.total.saturating_add(1);
        if let Some(w) = self.window.get_mut(self.slot) {
            *w = w.saturating_add(1);
        }
    }

    /// Credits one matched response or destroyed request, only against the current slot and only
    /// if it is non-zero.
    pub fn recv(&mut self) {
        if let Some(w) = self.window.get_mut(self.slot) {
            if *w > 0 {
                *w -= 1;
                self.total = self.total.saturating_sub(1);
            }
        }
    }

    /// The 750 ms drain: advance to the next slot and forget what it held.
    pub fn drain(&mut self) {
        self.slot = (self.slot + 1) & 3;
        if let Some(w) = self.window.get_mut(self.slot) {
            self.total = self.total.saturating_sub(*w);
            *w = 0;
        }
    }

    /// Resets every slot (the reference's `clear()`, used on suspend).
    pub fn clear(&mut self) {
        self.slot = 0;
        self.total = 0;
        self.window = [0; 4];
    }

    /// Sends counted across all four slots.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// The current slot index (0..4).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The per-slot send counts.
    pub fn window(&self) -> [u32; 4] {
        self.window
    }

    /// The configured `max_window`.
    pub fn max_window(&self) -> u32 {
        self.max_window
    }

    fn current(&self) -> u32 {
        self.window.get(self.slot).copied().unwrap_or(0)
    }
}
