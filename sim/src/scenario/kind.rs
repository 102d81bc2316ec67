//! The whole-network scenarios by name.

use std::fmt;
use std::str::FromStr;

use super::error::ScenarioError;

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScenarioKind {
    /// Nodes join; tables converge; node-id lookups.
    Bootstrap,
    /// Announce records, look them up.
    Lookup,
    /// Lookups while nodes crash and restart.
    Churn,
    /// Lookups across a partition that heals.
    Partition,
}

impl ScenarioKind {
    /// Every scenario.
    pub const ALL: [ScenarioKind; 4] = [
        ScenarioKind::Bootstrap,
        ScenarioKind::Lookup,
        ScenarioKind::Churn,
        ScenarioKind::Partition,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Bootstrap => "bootstrap",
            ScenarioKind::Lookup => "lookup",
            ScenarioKind::Churn => "churn",
            ScenarioKind::Partition => "partition",
        }
    }
}

impl fmt::Display for ScenarioKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ScenarioKind {
    type Err = ScenarioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScenarioKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ScenarioError::UnknownScenario(s.to_string()))
    }
}
