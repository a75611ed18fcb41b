//! The live graph's configuration: expiry and size guard.

use auspex_model::EntityKind;
use serde::{Deserialize, Serialize};

use crate::GraphError;

const MINUTE_MS: i64 = 60_000;

/// How long entities live without being seen, and how large the graph may grow.
///
/// Pods and containers churn (rollouts, rescheduling), so they expire quickly. Nodes and
/// services are long-lived and often only *referenced* by pod samples (a sample names the node
/// it runs on), so they get a longer TTL: a node briefly without reporting pods should not lose
/// its place in the graph, and a service between deploys keeps its call edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphConfig {
    /// A pod or container not seen in a sample or topology event for this many milliseconds is
    /// expired by [`crate::LiveGraph::expire`]. Default 15 minutes.
    pub ttl_ms: i64,
    /// TTL in milliseconds for nodes. A node is also refreshed whenever a pod sample or event
    /// names it. Default 1 hour.
    pub node_ttl_ms: i64,
    /// TTL in milliseconds for services. A service is also refreshed whenever a pod sample or
    /// event names it, or a call edge touches it. Default 1 hour.
    pub service_ttl_ms: i64,
    /// Most vertices the graph holds. A change that would create more is refused with
    /// [`GraphError::Full`] (and changes nothing), so a flood of bogus entity names cannot
    /// exhaust memory. Default 200 000 (ten times a large cluster).
    pub max_entities: usize,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            ttl_ms: 15 * MINUTE_MS,
            node_ttl_ms: 60 * MINUTE_MS,
            service_ttl_ms: 60 * MINUTE_MS,
            max_entities: 200_000,
        }
    }
}

impl GraphConfig {
    /// Checks every field; the error names the offending key.
    pub fn validate(&self) -> Result<(), GraphError> {
        for (key, v) in [
            ("ttl_ms", self.ttl_ms),
            ("node_ttl_ms", self.node_ttl_ms),
            ("service_ttl_ms", self.service_ttl_ms),
        ] {
            if v <= 0 {
                return Err(GraphError::InvalidConfig {
                    key,
                    reason: format!("must be positive, got {v}"),
                });
            }
        }
        if self.max_entities == 0 {
            return Err(GraphError::InvalidConfig {
                key: "max_entities",
                reason: "must be at least 1".into(),
            });
        }
        // Exported indices are u32.
        if self.max_entities > u32::MAX as usize {
            return Err(GraphError::InvalidConfig {
                key: "max_entities",
                reason: format!("must be at most {}", u32::MAX),
            });
        }
        Ok(())
    }

    /// The TTL that applies to an entity of `kind`.
    pub fn ttl_for(&self, kind: EntityKind) -> i64 {
        match kind {
            EntityKind::Pod | EntityKind::Container => self.ttl_ms,
            EntityKind::Node => self.node_ttl_ms,
            EntityKind::Service => self.service_ttl_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_name_their_key() {
        GraphConfig::default().validate().expect("default is valid");
        let bad = GraphConfig {
            node_ttl_ms: 0,
            ..GraphConfig::default()
        };
        match bad.validate() {
            Err(GraphError::InvalidConfig { key, .. }) => assert_eq!(key, "node_ttl_ms"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
        let bad = GraphConfig {
            max_entities: 0,
            ..GraphConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
