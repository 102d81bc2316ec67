use hdht_core::Instant;

/// Maps the OS monotonic clock onto the core's [`Instant`] (microseconds from a fixed origin).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            origin: std::time::Instant::now(),
        }
    }
}

impl Clock {
    /// The current time in the core's terms.
    pub fn now(&self) -> Instant {
        self.to_core(std::time::Instant::now())
    }

    /// Converts an OS instant.
    pub fn to_core(&self, t: std::time::Instant) -> Instant {
        let micros = t.saturating_duration_since(self.origin).as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// Converts a core instant back to an OS instant (for sleeping until it).
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        self.origin + std::time::Duration::from_micros(t.as_micros())
    }
}
