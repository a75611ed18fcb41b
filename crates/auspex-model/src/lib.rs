//! auspex's data model: the three wire types ([`MetricSample`], [`TopologyEvent`], [`Alert`]),
//! the ground-truth [`IncidentLabel`], and the vocabulary they share (entities, anomaly kinds,
//! canonical metric names).
//!
//! This crate owns the contract with the outside world and nothing else: it has no I/O, so every
//! other crate can depend on it cheaply. The JSON Schemas under `schemas/` are generated from
//! these types (`cargo test -p auspex-model` fails when they drift; `UPDATE_SCHEMAS=1` rewrites
//! them), so the Rust types and the published schemas cannot disagree.

pub mod metrics;

mod alert;
mod entity;
mod label;
mod sample;
mod topology;

pub use alert::{
    ACTION_VERSION, ActionEvidence, ActionKind, ActionTarget, Alert, AlertState,
    FeatureContribution, ImplicatedNeighbour, RecommendedAction, Severity, TargetKind,
};
pub use entity::{Entity, EntityId, EntityKind, EntityRef};
pub use label::IncidentLabel;
pub use sample::MetricSample;
pub use topology::{Edge, EdgeKind, TopologyChange, TopologyEvent};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the wire schemas in `schemas/`; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Milliseconds since the Unix epoch (UTC). Every timestamp in auspex is event time in this unit.
pub type TimestampMs = i64;

/// The incidents auspex predicts; one model head per kind.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// The pod stops serving: crash loop, failed readiness, OOM kill, eviction.
    PodFailure,
    /// CPU demand reaches the limit (or the node's capacity): throttling, saturation.
    CpuExhaustion,
    /// Memory working set reaches the limit: an OOM kill follows.
    MemoryExhaustion,
    /// Packet errors or drops, latency or failed calls on a node, pod or call edge.
    NetworkIssue,
}

impl AnomalyKind {
    /// All kinds, in a fixed order (the order of model heads).
    pub const ALL: [AnomalyKind; 4] = [
        AnomalyKind::PodFailure,
        AnomalyKind::CpuExhaustion,
        AnomalyKind::MemoryExhaustion,
        AnomalyKind::NetworkIssue,
    ];

    /// The snake_case name used on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::PodFailure => "pod_failure",
            AnomalyKind::CpuExhaustion => "cpu_exhaustion",
            AnomalyKind::MemoryExhaustion => "memory_exhaustion",
            AnomalyKind::NetworkIssue => "network_issue",
        }
    }

    /// Position in [`AnomalyKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AnomalyKind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AnomalyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ModelError::UnknownAnomalyKind(s.to_string()))
    }
}

/// Errors from parsing or validating wire types.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "unknown anomaly kind {0:?} (expected one of pod_failure, cpu_exhaustion, memory_exhaustion, network_issue)"
    )]
    UnknownAnomalyKind(String),
    #[error("unknown entity kind {0:?} (expected one of pod, node, service, container)")]
    UnknownEntityKind(String),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}
