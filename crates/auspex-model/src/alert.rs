//! Alerts: what auspex predicts, with the evidence behind it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AnomalyKind, EdgeKind, EntityRef, TimestampMs};

/// Lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// How urgent, from probability and time to incident.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One feature's part in a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeatureContribution {
    /// Feature name, e.g. `memory_working_set_bytes.slope`.
    pub feature: String,
    /// The feature's value in the scored window.
    pub value: f64,
    /// Its contribution to the score (units depend on the scorer; larger is more anomalous).
    pub contribution: f64,
}

/// A neighbour in the topology that shares in the prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImplicatedNeighbour {
    pub entity: EntityRef,
    /// The relation that links it to the alerted entity.
    pub relation: EdgeKind,
    /// The neighbour's own score for the same kind, in [0, 1].
    pub score: f64,
}

/// A prediction that an incident of `kind` will hit `entity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    /// Stable id: the same incident episode always yields the same id, so a re-delivered alert
    /// is harmless (hash of entity, kind and `starts_at_ms`).
    pub id: String,
    /// When this alert message was produced (event time).
    #[schemars(range(min = 0))]
    pub timestamp_ms: TimestampMs,
    /// When the episode began firing (event time).
    pub starts_at_ms: TimestampMs,
    pub entity: EntityRef,
    pub kind: AnomalyKind,
    pub state: AlertState,
    /// Calibrated probability that the incident happens within the model's horizon.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub probability: f64,
    pub severity: Severity,
    /// Predicted seconds until the incident; absent when the scorer cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_incident_seconds: Option<f64>,
    /// Version of the model (bundle) that produced the alert.
    pub model_version: String,
    /// Each branch's score for this kind, in [0, 1].
    pub branch_scores: BTreeMap<String, f64>,
    /// The meta-learner's weight on each branch for this prediction.
    pub branch_weights: BTreeMap<String, f64>,
    /// The features that drove the score, largest first.
    pub top_features: Vec<FeatureContribution>,
    /// Neighbours implicated in the prediction.
    pub neighbours: Vec<ImplicatedNeighbour>,
}

impl Alert {
    /// The stable alert id for an episode: FNV-1a over entity, kind and episode start, so it is
    /// identical across restarts, processes and platforms.
    pub fn stable_id(entity: &EntityRef, kind: AnomalyKind, starts_at_ms: TimestampMs) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let key = format!("{}|{}|{}", entity, kind.as_str(), starts_at_ms);
        for b in key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}
