//! `flush()` bookkeeping (`index.js:142-150, 158-172, 571-584`). A flush ends when every
//! topic's refresh running at the call has ended and then every peer queued or connecting at
//! that point was tried once: its dial opened, failed, or was skipped. It also ends when the
//! swarm is at capacity with nothing connecting (no more dials can happen).

use alloc::vec::Vec;

/// Names one [`Swarm::flush`](super::Swarm::flush) call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlushId(pub u64);

/// A flush still waiting.
#[derive(Debug, Clone)]
pub(crate) struct PendingFlush {
    pub(crate) id: FlushId,
    /// Refreshes it waits for first: `(topic, refresh number)`.
    pub(crate) refreshes: Vec<([u8; 32], u64)>,
    /// Then: peers queued or connecting before it that have not been tried yet (`None` until
    /// the refreshes ended).
    pub(crate) missing: Option<usize>,
    /// The flush tick it was registered at: peers queued later do not count.
    pub(crate) tick: u64,
}

/// Every pending flush.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flushes {
    pub(crate) pending: Vec<PendingFlush>,
    /// `_flushTick`.
    pub(crate) tick: u64,
    next_id: u64,
}

impl Flushes {
    /// A new flush waiting for `refreshes`.
    pub(crate) fn start(&mut self, refreshes: Vec<([u8; 32], u64)>) -> FlushId {
        let id = FlushId(self.next_id);
        self.next_id += 1;
        self.pending.push(PendingFlush {
            id,
            refreshes,
            missing: None,
            tick: 0,
        });
        id
    }

    /// A peer queued at `peer_tick` was tried (`_flushMaybe`): the flushes counting it that
    /// reach zero are returned (finished).
    pub(crate) fn peer_tried(&mut self, peer_tick: u64) -> Vec<FlushId> {
        let mut done = Vec::new();
        self.pending.retain_mut(|f| {
            let Some(m) = f.missing.as_mut() else {
                return true;
            };
            if peer_tick > f.tick {
                return true;
            }
            *m = m.saturating_sub(1);
            if *m > 0 {
                return true;
            }
            done.push(f.id);
            false
        });
        done
    }

    /// Ends every flush that is past its refreshes (at capacity, nothing connecting).
    pub(crate) fn all_counting(&mut self) -> Vec<FlushId> {
        let mut done = Vec::new();
        self.pending.retain(|f| {
            if f.missing.is_some() {
                done.push(f.id);
                false
            } else {
                true
            }
        });
        done
    }

    /// Ends every flush (destroy).
    pub(crate) fn take_all(&mut self) -> Vec<FlushId> {
        self.pending.drain(..).map(|f| f.id).collect()
    }
}
