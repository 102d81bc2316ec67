//! One topic's discovery (`lib/peer-discovery.js`): its sessions and their modes, the refresh
//! in flight (announce as a server, lookup as a client, lookup-and-unannounce when it stopped
//! being a server), the refresh timer, and hdht's rendezvous lookups. The swarm starts the
//! operations on the `DhtNode`; this module decides what and when.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use rand_core::RngCore;

use super::config::{DELAY_GRACE_PERIOD, MAX_DISCOVERY_CACHE};
use crate::dht::OpId;
use crate::time::Instant;

/// Names one `join` (the reference's `PeerDiscoverySession`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// What a discovery's query is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryKind {
    /// ANNOUNCE of our record (server mode).
    Announce,
    /// LOOKUP that also removes our record (client only, after having been a server).
    LookupAndUnannounce,
    /// Plain LOOKUP (client only).
    Lookup,
    /// A rendezvous lookup (not a refresh: no flush waits for it, no timer follows it).
    Rendezvous,
}

/// The query a discovery runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActiveQuery {
    pub(crate) op: OpId,
    pub(crate) kind: QueryKind,
    /// The refresh it belongs to.
    pub(crate) clock: u64,
}

/// The state of one topic.
#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    pub(crate) topic: [u8; 32],
    /// Sessions and their modes `(client, server)`.
    pub(crate) sessions: BTreeMap<SessionId, (bool, bool)>,
    pub(crate) is_client: bool,
    pub(crate) is_server: bool,
    /// New peers handed to the queue per refresh (`None` = no limit).
    pub(crate) limit: Option<usize>,
    /// What is left of `limit` in the running refresh.
    pub(crate) limit_left: Option<usize>,
    /// Peers found in the previous refresh, for `limit` (at most [`MAX_DISCOVERY_CACHE`]).
    pub(crate) discovered: Vec<[u8; 32]>,
    pub(crate) active: Option<ActiveQuery>,
    /// Refreshes started (`_refreshes`): the number of the latest.
    pub(crate) refreshes: u64,
    /// The refresh in flight (`_currentRefresh`), by number.
    pub(crate) current: Option<u64>,
    /// Every refresh up to this number has ended.
    pub(crate) done_through: u64,
    /// The refresh waits for the swarm's server to listen before it announces.
    pub(crate) waiting_listen: bool,
    /// The refresh waits for the previous discovery of this topic to unannounce.
    pub(crate) waiting_for: Option<OpId>,
    /// The refresh timer: when it fires and how long it was set for.
    pub(crate) timer: Option<(Instant, Instant, Duration)>,
    /// We announced and have not unannounced yet.
    pub(crate) needs_unannounce: bool,
    /// The next rendezvous lookup (index into the ladder, when).
    pub(crate) rendezvous: Option<(usize, Instant)>,
    /// When the first refresh ended: the ladder's delays count from here.
    pub(crate) rendezvous_base: Instant,
    /// A refresh of this discovery ended at least once.
    pub(crate) refreshed_once: bool,
}

impl Discovery {
    pub(crate) fn new(topic: [u8; 32], waiting_for: Option<OpId>) -> Self {
        Discovery {
            topic,
            sessions: BTreeMap::new(),
            is_client: false,
            is_server: false,
            limit: None,
            limit_left: None,
            discovered: Vec::new(),
            active: None,
            refreshes: 0,
            current: None,
            done_through: 0,
            waiting_listen: false,
            waiting_for,
            timer: None,
            needs_unannounce: false,
            rendezvous: None,
            rendezvous_base: Instant::ZERO,
            refreshed_once: false,
        }
    }

    /// The modes its sessions ask for `(client, server)`: the OR over them.
    pub(crate) fn wanted_modes(&self) -> (bool, bool) {
        self.sessions
            .values()
            .fold((false, false), |(c, s), (sc, ss)| (c || *sc, s || *ss))
    }

    /// Arms the refresh timer: `interval + U[0, jitter]`, or only the jitter when `eager`
    /// (`_refreshLater`).
    pub(crate) fn refresh_later(
        &mut self,
        now: Instant,
        eager: bool,
        interval: Duration,
        jitter: Duration,
        rng: &mut impl RngCore,
    ) {
        let j = jitter.as_millis() as u64;
        let extra = Duration::from_millis(if j == 0 { 0 } else { rng.next_u64() % (j + 1) });
        let delay = if eager { extra } else { interval + extra };
        self.timer = Some((now + delay, now, delay));
    }

    /// Whether the refresh timer is due, and if so whether the machine slept through it (more
    /// than [`DELAY_GRACE_PERIOD`] late): then it only re-arms eagerly.
    pub(crate) fn timer_due(&self, now: Instant) -> Option<bool> {
        let (at, set_at, delay) = self.timer?;
        if at > now {
            return None;
        }
        Some(now.saturating_duration_since(set_at) > delay + DELAY_GRACE_PERIOD)
    }

    /// The earliest time it needs the swarm's attention.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timer.map(|t| t.0);
        let r = self.rendezvous.map(|r| r.1);
        match (t, r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Remembers a peer found, for the next refresh's `limit`.
    pub(crate) fn remember(&mut self, key: [u8; 32]) {
        if self.limit.is_some()
            && self.discovered.len() < MAX_DISCOVERY_CACHE
            && !self.discovered.contains(&key)
        {
            self.discovered.push(key);
        }
    }

    /// A refresh starts (`_refresh`): its number. The budget is `limit` minus the peers of
    /// the previous refresh we are connected to (what the reference's `_discovered` loop
    /// means to do; see [`Swarm`](super::Swarm) for the difference).
    pub(crate) fn begin_refresh(&mut self, connected: impl Fn(&[u8; 32]) -> bool) -> u64 {
        self.refreshes += 1;
        self.current = Some(self.refreshes);
        self.limit_left = self.limit.map(|l| {
            let held = self.discovered.iter().filter(|k| connected(k)).count();
            l.saturating_sub(held)
        });
        self.discovered.clear();
        self.refreshes
    }

    /// The refresh `clock` ended (its query finished, failed, or was replaced).
    pub(crate) fn end_refresh(&mut self, clock: u64) {
        self.done_through = self.done_through.max(clock);
        if self.current == Some(clock) {
            self.current = None;
        }
    }
}
