//! A scenario's outcome: success rates, latency and hop percentiles, datagram counts, speed
//! and memory — as a human summary and as one JSON line with camelCase keys.

use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::engine::NetStats;
use crate::mem::MemSource;
use crate::network::DropReason;
use crate::trace::TraceHash;

use super::kind::ScenarioKind;

/// Nearest-rank percentiles of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Sample size.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `values` (NaNs ignored; all zero when empty).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles {
            count: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// Success count of one kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Operations counted.
    pub total: usize,
    /// Of which succeeded.
    pub ok: usize,
}

impl Tally {
    /// Success fraction (1.0 when nothing was counted, so an empty phase is not a failure).
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.ok as f64 / self.total as f64
        }
    }

    pub(crate) fn add(&mut self, ok: bool) {
        self.total += 1;
        if ok {
            self.ok += 1;
        }
    }
}

/// Everything a scenario run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which scenario.
    pub scenario: ScenarioKind,
    /// Nodes started (bootstrappers included).
    pub nodes: usize,
    /// The run's seed.
    pub seed: u64,
    /// Hash over every delivered datagram.
    pub trace_hash: TraceHash,
    /// The NAT mix, as given.
    pub nat: String,
    /// Link loss.
    pub loss: f64,
    /// Fraction of nodes crashed and restarted.
    pub churn: f64,
    /// Nodes crashed during the run.
    pub crashed: usize,
    /// Fraction of nodes bootstrapped after the join phase.
    pub bootstrapped: f64,
    /// Persistent (routable) nodes.
    pub persistent: usize,
    /// Nodes that consider themselves firewalled.
    pub firewalled: usize,
    /// Fraction of nodes whose persistence matches what the reference implies for their NAT
    /// (open → persistent; behind a NAT or firewall → firewalled and ephemeral).
    pub nat_classification: f64,
    /// Routing table sizes.
    pub table_size: Percentiles,
    /// Mean fraction of a node's k closest persistent nodes present in its table (sampled).
    pub convergence: f64,
    /// Announces.
    pub announce: Tally,
    /// Record lookups (after healing, in the partition scenario).
    pub lookup: Tally,
    /// Record lookups run while partitioned.
    pub partition_lookup: Tally,
    /// FIND_NODE lookups for live node ids.
    pub node_lookup: Tally,
    /// Time to a successful lookup's first matching reply, ms.
    pub latency_ms: Percentiles,
    /// Referral depth of the answering node in successful lookups.
    pub hops: Percentiles,
    /// Successful replies per lookup.
    pub replies: Percentiles,
    /// Datagram counters.
    pub net: NetStats,
    /// Events processed.
    pub events: u64,
    /// Events per second of wall time.
    pub events_per_sec: f64,
    /// Wall time of the run.
    pub wall: Duration,
    /// Virtual time simulated.
    pub sim_time: Duration,
    /// Memory per node once the network is idle, bytes.
    pub memory_per_node: u64,
    /// How memory was measured.
    pub memory_source: MemSource,
}

impl Report {
    /// The headline success rate: record lookups, or node lookups in the bootstrap scenario.
    pub fn lookup_success(&self) -> f64 {
        match self.scenario {
            ScenarioKind::Bootstrap => self.node_lookup.rate(),
            _ => self.lookup.rate(),
        }
    }

    /// One JSON object on one line, camelCase keys, for machines (the CLI's last line).
    pub fn to_json_line(&self) -> String {
        let mut j = Json::default();
        j.str("scenario", self.scenario.name());
        j.num("nodes", self.nodes as f64);
        j.raw("seed", &self.seed.to_string());
        j.str("traceHash", &self.trace_hash.to_hex());
        j.str("nat", &self.nat);
        j.num("loss", self.loss);
        j.num("churn", self.churn);
        j.num("crashed", self.crashed as f64);
        j.num("bootstrapped", self.bootstrapped);
        j.num("persistent", self.persistent as f64);
        j.num("firewalled", self.firewalled as f64);
        j.num("natClassification", self.nat_classification);
        j.pct("tableSize", &self.table_size);
        j.num("convergence", self.convergence);
        j.num("lookupSuccess", self.lookup_success());
        j.num("lookups", self.lookup.total as f64);
        j.num("recordLookupSuccess", self.lookup.rate());
        j.num("partitionLookupSuccess", self.partition_lookup.rate());
        j.num("partitionLookups", self.partition_lookup.total as f64);
        j.num("nodeLookupSuccess", self.node_lookup.rate());
        j.num("nodeLookups", self.node_lookup.total as f64);
        j.num("announceSuccess", self.announce.rate());
        j.num("announces", self.announce.total as f64);
        j.pct("latencyMs", &self.latency_ms);
        j.pct("hops", &self.hops);
        j.pct("replies", &self.replies);
        j.num("datagramsSent", self.net.sent as f64);
        j.num("datagramsDelivered", self.net.delivered as f64);
        j.num("datagramsDropped", self.net.dropped_total() as f64);
        let mut drops = Json::default();
        for r in DropReason::ALL {
            drops.num(r.name(), self.net.dropped(r) as f64);
        }
        j.raw("dropped", &drops.finish());
        j.num("events", self.events as f64);
        j.num("eventsPerSec", self.events_per_sec.round());
        j.num("wallMs", (self.wall.as_secs_f64() * 1000.0).round());
        j.num("simMs", self.sim_time.as_millis() as f64);
        j.num("memoryPerNode", self.memory_per_node as f64);
        j.str("memorySource", self.memory_source.name());
        j.finish()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |t: &Tally| format!("{:.2}% ({}/{})", t.rate() * 100.0, t.ok, t.total);
        writeln!(
            f,
            "scenario {}  nodes {}  nat {}  loss {}  churn {}",
            self.scenario.name(),
            self.nodes,
            self.nat,
            self.loss,
            self.churn
        )?;
        writeln!(
            f,
            "  bootstrapped {:.2}%  persistent {}  firewalled {}  NAT classification {:.2}%",
            self.bootstrapped * 100.0,
            self.persistent,
            self.firewalled,
            self.nat_classification * 100.0
        )?;
        writeln!(
            f,
            "  table size p50 {:.0} (mean {:.1})  convergence {:.2}%",
            self.table_size.p50,
            self.table_size.mean,
            self.convergence * 100.0
        )?;
        if self.announce.total > 0 {
            writeln!(f, "  announces {}", pct(&self.announce))?;
        }
        if self.lookup.total > 0 {
            writeln!(f, "  record lookups {}", pct(&self.lookup))?;
        }
        if self.partition_lookup.total > 0 {
            writeln!(
                f,
                "  lookups while partitioned {}",
                pct(&self.partition_lookup)
            )?;
        }
        if self.node_lookup.total > 0 {
            writeln!(f, "  node lookups {}", pct(&self.node_lookup))?;
        }
        if self.crashed > 0 {
            writeln!(f, "  crashed and restarted {}", self.crashed)?;
        }
        let l = &self.latency_ms;
        writeln!(
            f,
            "  latency ms p50 {:.0}  p90 {:.0}  p99 {:.0}",
            l.p50, l.p90, l.p99
        )?;
        let h = &self.hops;
        writeln!(
            f,
            "  hops mean {:.2}  p50 {:.0}  p90 {:.0}  p99 {:.0}   replies/lookup mean {:.1}",
            h.mean, h.p50, h.p90, h.p99, self.replies.mean
        )?;
        writeln!(
            f,
            "  datagrams sent {}  delivered {}  dropped {}",
            self.net.sent,
            self.net.delivered,
            self.net.dropped_total()
        )?;
        writeln!(
            f,
            "  events {}  {:.0}/s  wall {:.2}s  simulated {:.1}s  memory/node {} B ({})",
            self.events,
            self.events_per_sec,
            self.wall.as_secs_f64(),
            self.sim_time.as_secs_f64(),
            self.memory_per_node,
            self.memory_source.name()
        )?;
        write!(f, "  seed {}  trace {}", self.seed, self.trace_hash)
    }
}

/// A tiny JSON object writer (keys are fixed identifiers; strings are escaped).
#[derive(Default)]
pub(super) struct Json {
    out: String,
}

impl Json {
    fn key(&mut self, k: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
    }

    pub(super) fn raw(&mut self, k: &str, v: &str) {
        self.key(k);
        self.out.push_str(v);
    }

    pub(super) fn num(&mut self, k: &str, v: f64) {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.out, "{v}");
        } else {
            self.out.push_str("null");
        }
    }

    pub(super) fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.out.push('"');
        for c in v.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.out, "\\u{:04x}", c as u32);
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    pub(super) fn pct(&mut self, k: &str, p: &Percentiles) {
        let mut o = Json::default();
        o.num("mean", p.mean);
        o.num("p50", p.p50);
        o.num("p90", p.p90);
        o.num("p99", p.p99);
        o.num("max", p.max);
        self.raw(k, &o.finish());
    }

    pub(super) fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max, p.count),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert_eq!(Percentiles::of(&[]).count, 0);
        assert_eq!(Percentiles::of(&[7.0]).p99, 7.0);
    }

    #[test]
    fn json_escapes_strings() {
        let mut j = Json::default();
        j.str("a", "x\"y\\z\n");
        j.num("b", f64::NAN);
        assert_eq!(j.finish(), r#"{"a":"x\"y\\z\u000a","b":null}"#);
    }
}
