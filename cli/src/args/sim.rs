//! `hdht sim` arguments: the scenario and its knobs, checked before anything runs.

use clap::Args;
use hdht_sim::scenario::ScenarioKind;
use hdht_sim::NatPreset;

/// What `hdht sim` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimScenario {
    /// A whole-network scenario.
    Network(ScenarioKind),
    /// The holepunch NAT matrix.
    HolepunchMatrix,
    /// Hyperswarm peers joining one topic.
    Swarm,
    /// Node lookups under a valid-id flood, adaptive timeouts vs the reference's timing.
    Flood,
}

/// `hdht sim` arguments.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// bootstrap, lookup, churn, partition, holepunch-matrix, swarm or flood.
    #[arg(value_name = "SCENARIO", value_parser = parse_scenario)]
    pub scenario: SimScenario,
    /// Number of nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// The seed every random choice derives from; the same seed replays the run exactly
    /// (holepunch-matrix: the first seed; run i of every pair uses seed + i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// NAT presets for the nodes (open, full-cone, restricted-cone, port-restricted,
    /// symmetric, cgnat, udp-blocked), optionally weighted: `open:7,symmetric:3`. Repeatable.
    #[arg(long = "nat", value_name = "PRESET[:WEIGHT]", value_delimiter = ',')]
    pub nat: Vec<String>,
    /// Datagram loss probability once the network has settled (0..1; default 0, and 0.01
    /// for holepunch-matrix).
    #[arg(long)]
    pub loss: Option<f64>,
    /// Fraction of nodes that crash and restart (churn scenario; 0..1).
    #[arg(long)]
    pub churn: Option<f64>,
    /// churn: run this many simulated hours of churn instead of one minute — every hour
    /// `--churn` of the nodes crash and come back, `--announces` fresh records are announced
    /// and `--lookups` looked up; heap per node is printed every hour (`{"event":"hour",…}`).
    #[arg(long, value_name = "HOURS")]
    pub hours: Option<u32>,
    /// Lookups to run.
    #[arg(long, default_value_t = 1000)]
    pub lookups: usize,
    /// Records announced before the lookups.
    #[arg(long, default_value_t = 100)]
    pub announces: usize,
    /// holepunch-matrix: runs (seeds) per pair.
    #[arg(long, default_value_t = 100)]
    pub seeds: usize,
    /// holepunch-matrix: round-trip time across the Internet, ms.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub rtt: u64,
    /// holepunch-matrix: client presets (rows), comma separated or repeated; default all.
    #[arg(long, value_name = "PRESET", value_delimiter = ',', value_parser = parse_preset)]
    pub client: Vec<NatPreset>,
    /// holepunch-matrix: server presets (columns), comma separated or repeated; default all.
    #[arg(long, value_name = "PRESET", value_delimiter = ',', value_parser = parse_preset)]
    pub server: Vec<NatPreset>,
    /// holepunch-matrix: open nodes in the public DHT.
    #[arg(long, default_value_t = 24)]
    pub public_nodes: usize,
    /// holepunch-matrix: worker threads (0 = one per core). The result does not depend on it.
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
    /// holepunch-matrix: a blind relay runs on one more public node and every server names
    /// it (`relayThrough`); each run then sends 64 KiB after the path settled, and cells add
    /// the relayed / upgraded counts and the time to the first byte. swarm: a blind relay
    /// on one more public node is every swarm's `relayThrough`, so every pair can connect
    /// (symmetric × symmetric through the relay).
    #[arg(long)]
    pub relay: bool,
    /// swarm: peers joining the topic, each behind its own NAT drawn from --nat.
    #[arg(long, default_value_t = 100)]
    pub peers: usize,
    /// swarm: each swarm's max peers (default: all, so the target is the full mesh).
    #[arg(long)]
    pub max_peers: Option<usize>,
    /// flood: lying nodes (valid ids, answer every lookup with k unresponsive addresses
    /// ground close to its target).
    #[arg(long, default_value_t = 30)]
    pub liars: usize,
    /// flood: nodes that join, get into routing tables, then go silent.
    #[arg(long, default_value_t = 60)]
    pub silent: usize,
}

impl SimArgs {
    /// Options that make no sense for the chosen scenario (a usage error).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let matrix = self.scenario == SimScenario::HolepunchMatrix;
        let matrix_only = [
            ("--client", !self.client.is_empty()),
            ("--server", !self.server.is_empty()),
            ("--relay", self.relay && self.scenario != SimScenario::Swarm),
        ];
        if !matrix {
            if let Some((name, _)) = matrix_only.iter().find(|(_, given)| *given) {
                return Err(if *name == "--relay" {
                    "--relay applies to holepunch-matrix and swarm only".to_string()
                } else {
                    format!("{name} applies to holepunch-matrix only")
                });
            }
        } else {
            if !self.nat.is_empty() || self.churn.is_some() {
                return Err(
                    "holepunch-matrix takes --client and --server, not --nat or --churn"
                        .to_string(),
                );
            }
            if self.seeds == 0 {
                return Err("--seeds must be at least 1".to_string());
            }
            if self.public_nodes < 2 {
                return Err("--public-nodes must be at least 2".to_string());
            }
        }
        if self.scenario == SimScenario::Swarm && self.peers < 2 {
            return Err(format!("--peers must be at least 2, got {}", self.peers));
        }
        if let Some(l) = self.loss {
            if !(0.0..=1.0).contains(&l) {
                return Err(format!("--loss must be in [0, 1], got {l}"));
            }
        }
        Ok(())
    }
}

fn parse_scenario(s: &str) -> std::result::Result<SimScenario, String> {
    if s == "holepunch-matrix" {
        return Ok(SimScenario::HolepunchMatrix);
    }
    if s == "swarm" {
        return Ok(SimScenario::Swarm);
    }
    if s == "flood" {
        return Ok(SimScenario::Flood);
    }
    s.parse().map(SimScenario::Network).map_err(|_| {
        format!("unknown scenario {s:?} (expected bootstrap, lookup, churn, partition, holepunch-matrix, swarm or flood)")
    })
}

fn parse_preset(s: &str) -> std::result::Result<NatPreset, String> {
    s.trim().parse().map_err(|e| format!("{e}"))
}
