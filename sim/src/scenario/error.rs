//! Why a scenario cannot run.

use thiserror::Error;

use crate::nat::UnknownPreset;
use crate::network::NetError;

/// Why a scenario cannot run.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ScenarioError {
    /// Unknown scenario name.
    #[error("unknown scenario {0:?} (expected bootstrap, lookup, churn or partition)")]
    UnknownScenario(String),
    /// Unknown NAT preset.
    #[error(transparent)]
    Preset(#[from] UnknownPreset),
    /// A NAT mix weight that is not a number.
    #[error("bad NAT weight in {0:?}")]
    BadWeight(String),
    /// Too few nodes for the scenario.
    #[error("need at least {min} nodes, got {got}")]
    TooFewNodes {
        /// Required.
        min: usize,
        /// Given.
        got: usize,
    },
    /// A probability or fraction outside [0, 1].
    #[error("{name} must be in [0, 1], got {value}")]
    BadFraction {
        /// Which option.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// Building the network failed.
    #[error("network: {0}")]
    Net(#[from] NetError),
    /// The scenario's blind relay did not start.
    #[error("relay server: {0}")]
    RelayServer(hdht_core::connect::ConnectError),
}
