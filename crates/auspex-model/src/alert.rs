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
    /// What to do about it: auspex recommends, it never acts on the cluster. Absent on alerts
    /// from before remediation existed, and where recommendations are switched off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RecommendedAction>,
}

/// Version of [`RecommendedAction`]: bumped when a field changes meaning, so a consumer can
/// refuse an action it does not understand instead of acting on a misreading.
pub const ACTION_VERSION: u32 = 1;

/// The remediations auspex can recommend.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Add replicas to the workload (`params.replicas`: the count to scale to).
    ScaleOut,
    /// Raise the workload's CPU limit (`params.cpu_limit_cores`).
    RaiseCpuLimit,
    /// Restart the pod before it is OOM-killed (`params.restart_before_ms`).
    RestartBeforeOom,
    /// Raise the workload's memory limit (`params.memory_limit_bytes`), sized from the leak.
    RaiseMemoryLimit,
    /// Roll the workload back to its previous revision (`params.to_revision`).
    Rollback,
    /// Cordon the node and drain its pods elsewhere (`params.pods`: the pods affected).
    CordonAndDrain,
    /// Shed load at, or open the circuit breakers in front of, the root service of a cascade.
    ShedLoad,
    /// No rule matched with enough evidence: look at the alert's evidence.
    Investigate,
}

impl ActionKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ActionKind; 8] = [
        ActionKind::ScaleOut,
        ActionKind::RaiseCpuLimit,
        ActionKind::RestartBeforeOom,
        ActionKind::RaiseMemoryLimit,
        ActionKind::Rollback,
        ActionKind::CordonAndDrain,
        ActionKind::ShedLoad,
        ActionKind::Investigate,
    ];

    /// The snake_case name used on the wire and in config.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::ScaleOut => "scale_out",
            ActionKind::RaiseCpuLimit => "raise_cpu_limit",
            ActionKind::RestartBeforeOom => "restart_before_oom",
            ActionKind::RaiseMemoryLimit => "raise_memory_limit",
            ActionKind::Rollback => "rollback",
            ActionKind::CordonAndDrain => "cordon_and_drain",
            ActionKind::ShedLoad => "shed_load",
            ActionKind::Investigate => "investigate",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an action applies to. Workloads are not topology entities, hence a type of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Workload,
    Pod,
    Node,
    Service,
}

/// The object an action applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ActionTarget {
    pub kind: TargetKind,
    /// Absent for nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

/// One measured fact behind a recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionEvidence {
    /// What was measured, e.g. `memory_working_set_bytes.slope` or `node.pods`.
    pub name: String,
    /// Its value (number, text or list), as serve saw it when the alert fired.
    pub value: serde_json::Value,
}

/// A recommended remediation, from the rule table (`[remediation]` in the serve config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecommendedAction {
    /// [`ACTION_VERSION`] when written.
    #[schemars(range(min = 1))]
    pub version: u32,
    pub kind: ActionKind,
    /// The cause the rule table matched (`cpu_load`, `memory_leak`, `bad_rollout`,
    /// `node_pressure`, `node_network`, `node_cpu_contention`, `cascade`, `unknown`).
    pub cause: String,
    pub target: ActionTarget,
    /// The action's parameters (replicas, limits, revisions, pods), by name.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Why, in one sentence for people.
    pub reason: String,
    /// The measurements the rule read.
    #[serde(default)]
    pub evidence: Vec<ActionEvidence>,
    /// A runbook for the action; absent when none is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
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
