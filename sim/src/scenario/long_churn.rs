//! Hours of churn (`hdht sim churn --hours N`): the network is built and settled as in the
//! `churn` scenario, then every simulated hour a fraction of the non-bootstrap nodes crash
//! (each comes back [`ScenarioConfig::restart_after`] later, half of them at a new address: a
//! node leaving and another joining), fresh records are announced and looked up, and node
//! lookups target live nodes. At the end of each hour the heap per node is sampled, so a slow
//! leak — routing tables, stores, in-flight state that never drains — shows as a rising line.
//!
//! [`ScenarioConfig::restart_after`]: super::ScenarioConfig::restart_after

use std::time::{Duration, Instant as WallInstant};

use super::{Action, DhtApp, Progress, Scenario, ScenarioError, Tally, Workload};
use crate::mem::{self, MemSource};

/// One simulated hour of a long churn run.
#[derive(Debug, Clone, PartialEq)]
pub struct HourSample {
    /// The hour (1 = the first hour after the network settled).
    pub hour: u32,
    /// Heap (or RSS, see `memory_source`) per node at the end of the hour, bytes, over the
    /// baseline taken before the network was built.
    pub memory_per_node: u64,
    /// How `memory_per_node` was measured.
    pub memory_source: MemSource,
    /// Nodes alive at the end of the hour.
    pub alive: usize,
    /// Nodes crashed during the hour.
    pub crashed: usize,
    /// Record lookups of the hour's announces.
    pub lookup: Tally,
    /// Node lookups of live nodes.
    pub node_lookup: Tally,
    /// Announces of the hour.
    pub announce: Tally,
    /// Median routing-table size over live nodes at the end of the hour.
    pub table_median: f64,
    /// Events processed so far.
    pub events: u64,
    /// Wall time so far.
    pub wall: Duration,
}

impl HourSample {
    /// The sample as one JSON object (camelCase).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"event\":\"hour\",\"hour\":{},\"memoryPerNode\":{},\"memorySource\":\"{}\",\"alive\":{},\"crashed\":{},\"lookupOk\":{},\"lookups\":{},\"nodeLookupOk\":{},\"nodeLookups\":{},\"announceOk\":{},\"announces\":{},\"tableMedian\":{},\"events\":{},\"wallMs\":{}}}",
            self.hour,
            self.memory_per_node,
            match self.memory_source {
                MemSource::Heap => "heap",
                MemSource::Rss => "rss",
                MemSource::None => "none",
            },
            self.alive,
            self.crashed,
            self.lookup.ok,
            self.lookup.total,
            self.node_lookup.ok,
            self.node_lookup.total,
            self.announce.ok,
            self.announce.total,
            self.table_median,
            self.events,
            self.wall.as_millis()
        )
    }
}

fn diff(after: Tally, before: Tally) -> Tally {
    Tally {
        total: after.total - before.total,
        ok: after.ok - before.ok,
    }
}

impl<W: Workload> Scenario<W> {
    /// Builds and settles the network, then runs `hours` simulated hours of churn (see the
    /// module docs): per hour `cfg.churn × nodes` crashes, `cfg.announces` announces,
    /// `cfg.lookups` record lookups and `cfg.lookups / 4` node lookups, spread over the hour.
    /// `on_hour` sees each hour's sample as it ends; all of them are returned.
    pub fn run_hours(
        &mut self,
        hours: u32,
        progress: &mut dyn FnMut(&Progress),
        on_hour: &mut dyn FnMut(&HourSample),
    ) -> Result<Vec<HourSample>, ScenarioError> {
        let wall = WallInstant::now();
        let (mem_before, _) = mem::live_bytes();
        self.build(progress, wall)?;
        self.settle(progress, wall);
        let hour = Duration::from_secs(3600);
        let mut samples = Vec::new();
        for h in 1..=hours {
            let start = self.sim.now();
            let (announce0, lookup0, node0, crashed0) = (
                self.report.announce,
                self.report.lookup,
                self.report.node_lookup,
                self.report.crashed,
            );
            // Records last 20 minutes (hyperdht's announce lifetime; nobody renews them here);
            // each hour looks up its own, announced in its first ten seconds.
            self.keys.clear();
            let before = start.as_micros().saturating_sub(20 * 60 * 1_000_000);
            self.workload
                .expire(hdht_core::Instant::from_micros(before));
            self.announce_phase(progress, wall);
            let left = hour.saturating_sub(self.sim.now().saturating_duration_since(start));
            let window = left.saturating_sub(self.cfg.drain + self.cfg.restart_after);
            let mut actions = self.spread(
                self.cfg.lookups,
                Action::Lookup {
                    during_partition: false,
                },
                window,
            );
            actions.extend(self.spread(self.cfg.lookups / 4, Action::NodeLookup, window));
            let n = ((self.cfg.nodes as f64) * self.cfg.churn).round() as usize;
            actions.extend(self.spread(n, Action::Crash, window));
            actions.sort_by_key(|a| a.0);
            self.timeline_until("hour", actions, start + hour, progress, wall);
            let (live, source) = mem::live_bytes();
            let mut sizes: Vec<usize> = (0..self.sim.len())
                .filter(|&x| self.sim.is_alive(x))
                .filter_map(|x| self.sim.try_node(x).map(|n| n.table_ids().len()))
                .collect();
            sizes.sort_unstable();
            let sample = HourSample {
                hour: h,
                memory_per_node: live.saturating_sub(mem_before) / self.cfg.nodes as u64,
                memory_source: source,
                alive: (0..self.sim.len())
                    .filter(|&x| self.sim.is_alive(x))
                    .count(),
                crashed: self.report.crashed - crashed0,
                lookup: diff(self.report.lookup, lookup0),
                node_lookup: diff(self.report.node_lookup, node0),
                announce: diff(self.report.announce, announce0),
                table_median: sizes.get(sizes.len() / 2).copied().unwrap_or(0) as f64,
                events: self.sim.events_processed(),
                wall: wall.elapsed(),
            };
            on_hour(&sample);
            samples.push(sample);
        }
        Ok(samples)
    }
}
