//! What the swarm knows about one remote peer (`lib/peer-info.js`): its relays, topics, ban,
//! whether it is queued or waiting in a retry timer, and the attempt counter that sets its dial
//! priority and its retry backoff.

use alloc::vec::Vec;
use core::net::SocketAddrV4;
use core::time::Duration;

use crate::time::Instant;

/// A connection that stayed up this long resets the attempt counter when it drops
/// (`MIN_CONNECTION_TIME`), so the next retry is a fast one.
pub const MIN_CONNECTION_TIME: Duration = Duration::from_secs(15);

/// Dial priority; the queue always dials from the highest non-empty one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// More than 3 failed attempts: not dialed until rediscovered.
    VeryLow = 0,
    /// The third retry.
    Low = 1,
    /// A peer never tried (or reset by rediscovery).
    Normal = 2,
    /// The second retry.
    High = 3,
    /// The first retry: jumps the queue.
    VeryHigh = 4,
}

impl Priority {
    /// All priorities, lowest first (the queue's bucket index).
    pub const COUNT: usize = 5;

    /// The priority after `attempts` failed attempts (`_getPriority`; the reference's "stale"
    /// rule needs a `tried` flag that is never set, so it is left out).
    pub fn for_attempts(attempts: u32) -> Priority {
        match attempts {
            0 => Priority::Normal,
            1 => Priority::VeryHigh,
            2 => Priority::High,
            3 => Priority::Low,
            _ => Priority::VeryLow,
        }
    }
}

/// What the swarm knows about one peer (`PeerInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's public key.
    pub public_key: [u8; 32],
    /// Where its server's handshakes go (from the latest discovery; "new is always better").
    pub relay_addresses: Vec<SocketAddrV4>,
    /// `false` after `reconnect(false)`: no timer-based retries (rediscovery still re-queues).
    pub reconnecting: bool,
    /// One of our dials to it opened once.
    pub proven: bool,
    /// When our current connection to it opened.
    pub connected_time: Option<Instant>,
    /// When our latest connection to it closed.
    pub disconnected_time: Instant,
    /// Never dialed, and refused when it connects.
    pub banned: bool,
    /// Joined with `join_peer`: dialed whatever the topics, retried for ever.
    pub explicit: bool,
    /// In a retry timer.
    pub waiting: bool,
    /// In the dial queue.
    pub queued: bool,
    /// The latest connection to it was ours (we dialed).
    pub client: bool,
    /// Topics whose discovery found it (server-side connections never learn one).
    pub topics: Vec<[u8; 32]>,
    /// Failed attempts since the last reset.
    pub attempts: u32,
    /// Its dial priority.
    pub priority: Priority,
    /// `forceRelaying`: a dial to it failed in a way punching cannot fix, so our dials go
    /// through the swarm's relay ([`SwarmConfig::relay_through`](super::SwarmConfig)) even
    /// when our NAT is not randomizing.
    pub force_relaying: bool,
    /// The flush tick when it was queued: flushes started later do not wait for it.
    pub(crate) flush_tick: u64,
}

impl PeerInfo {
    /// A peer just learned of.
    pub fn new(public_key: [u8; 32], relay_addresses: Vec<SocketAddrV4>) -> Self {
        PeerInfo {
            public_key,
            relay_addresses,
            reconnecting: true,
            proven: false,
            connected_time: None,
            disconnected_time: Instant::ZERO,
            banned: false,
            explicit: false,
            waiting: false,
            queued: false,
            client: false,
            topics: Vec::new(),
            attempts: 0,
            priority: Priority::Normal,
            force_relaying: false,
            flush_tick: 0,
        }
    }

    /// The latest connection was the peer's (true also for a peer never connected).
    pub fn server(&self) -> bool {
        !self.client
    }

    /// Priority at least normal.
    pub fn prioritized(&self) -> bool {
        self.priority >= Priority::Normal
    }

    /// Our dial opened (`_connected`).
    pub(crate) fn connected(&mut self, now: Instant) {
        self.proven = true;
        self.connected_time = Some(now);
    }

    /// Our dial closed, opened or not (`_disconnected`): one more attempt, unless the
    /// connection lasted [`MIN_CONNECTION_TIME`], which makes this the first retry again.
    pub(crate) fn disconnected(&mut self, now: Instant) {
        self.disconnected_time = now;
        if let Some(at) = self.connected_time.take() {
            if now.saturating_duration_since(at) >= MIN_CONNECTION_TIME {
                self.attempts = 0;
            }
        }
        self.attempts = self.attempts.saturating_add(1);
    }

    /// A fresh start (`_reset`): rediscovered after failing, or found again after it dialed us.
    pub(crate) fn reset(&mut self) {
        self.client = false;
        self.proven = false;
        self.attempts = 0;
    }

    /// Recomputes the priority (`_updatePriority`); `false` = do not queue it (banned, already
    /// queued, or given up on). An explicit peer never gives up: it is held at 3 attempts.
    pub(crate) fn update_priority(&mut self) -> bool {
        if self.explicit && self.attempts > 3 {
            self.attempts = 3;
        }
        if self.banned || self.queued || self.attempts > 3 {
            return false;
        }
        self.priority = Priority::for_attempts(self.attempts);
        true
    }

    /// Records that a discovery of `topic` found it.
    pub(crate) fn add_topic(&mut self, topic: [u8; 32]) {
        if !self.topics.contains(&topic) {
            self.topics.push(topic);
        }
    }

    /// Nothing keeps this record alive (`shouldGC`).
    pub(crate) fn should_gc(&self) -> bool {
        !(self.banned || self.queued || self.explicit || self.waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_attempts() {
        let mut p = PeerInfo::new([1; 32], Vec::new());
        let mut seen = Vec::new();
        for _ in 0..4 {
            assert!(p.update_priority());
            seen.push(p.priority);
            p.disconnected(Instant::from_millis(1));
        }
        assert_eq!(
            seen,
            [
                Priority::Normal,
                Priority::VeryHigh,
                Priority::High,
                Priority::Low
            ]
        );
        assert_eq!(p.attempts, 4);
        assert!(
            !p.update_priority(),
            "a topic peer is given up after 4 attempts"
        );
        p.explicit = true;
        assert!(
            p.update_priority(),
            "an explicit peer is held at 3 attempts"
        );
        assert_eq!((p.attempts, p.priority), (3, Priority::Low));
    }

    #[test]
    fn long_connection_resets_attempts() {
        let mut p = PeerInfo::new([1; 32], Vec::new());
        p.attempts = 2;
        p.connected(Instant::from_millis(1_000));
        p.disconnected(Instant::from_millis(16_000));
        assert_eq!(p.attempts, 1, "up 15 s: the next retry is the first");
        p.connected(Instant::from_millis(20_000));
        p.disconnected(Instant::from_millis(34_999));
        assert_eq!(p.attempts, 2, "up less than 15 s: one more attempt");
    }
}
