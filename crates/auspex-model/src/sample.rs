//! The metric sample: one entity's metrics at one instant.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Entity, ModelError, TimestampMs};

/// One entity's metrics at one instant. Metric names are free-form; the canonical ones
/// (see [`crate::metrics`]) are understood by the feature extractor, unknown ones are kept and
/// ignored by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricSample {
    /// Event time, milliseconds since the Unix epoch (UTC).
    #[schemars(range(min = 0))]
    pub timestamp_ms: TimestampMs,
    /// The entity measured.
    pub entity: Entity,
    /// Metric name -> value. Canonical names (cpu_usage_cores, memory_working_set_bytes,
    /// restarts_total, network_rx_errors_total, latency_p99_seconds, success_ratio, ... — the
    /// full list with units is in docs/METRICS.md) are understood; unknown names are accepted.
    /// Counters (names ending in `_total`) are cumulative and may reset.
    pub metrics: BTreeMap<String, f64>,
}

impl MetricSample {
    /// Parses and validates one JSON document. Errors say what is wrong, for dead-lettering.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let s: MetricSample = serde_json::from_slice(bytes)?;
        s.validate()?;
        Ok(s)
    }

    /// Checks what serde cannot: a non-empty name and finite values.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.entity.name.is_empty() {
            return Err(ModelError::Invalid {
                what: "metric sample",
                reason: "entity.name is empty".into(),
            });
        }
        if self.timestamp_ms < 0 {
            return Err(ModelError::Invalid {
                what: "metric sample",
                reason: format!("timestamp_ms {} is negative", self.timestamp_ms),
            });
        }
        // serde_json cannot produce NaN or infinity, but samples built in code can.
        if let Some((k, v)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(ModelError::Invalid {
                what: "metric sample",
                reason: format!("metric {k:?} is not finite ({v})"),
            });
        }
        Ok(())
    }
}
