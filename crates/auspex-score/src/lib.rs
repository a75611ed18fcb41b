//! Scoring: the [`Scorer`] contract every model branch and ensemble implements, the transparent
//! statistical scorer that serves until the learned ensemble lands ([`stat`]), the alert
//! lifecycle ([`tracker`]) and event-wise evaluation against labels ([`eval`]).
//!
//! Scorers read the state (windows, graph) and never change it: the pipeline in the binary
//! owns the state and calls the scorer once per tick with the entities that are due.

pub mod eval;
pub mod stat;
pub mod tracker;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use auspex_graph::LiveGraph;
use auspex_model::{
    Alert, AlertState, AnomalyKind, EntityId, EntityRef, FeatureContribution, ImplicatedNeighbour,
    TimestampMs,
};
use auspex_window::WindowStore;

pub use tracker::{AlertPolicy, AlertTracker};

/// One scorer's view of one (entity, kind) at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub entity: EntityRef,
    pub kind: AnomalyKind,
    /// Probability in [0, 1] that an incident of `kind` hits `entity` within the horizon.
    pub probability: f64,
    pub time_to_incident_s: Option<f64>,
    pub branch_scores: BTreeMap<String, f64>,
    pub branch_weights: BTreeMap<String, f64>,
    pub top_features: Vec<FeatureContribution>,
    pub neighbours: Vec<ImplicatedNeighbour>,
}

impl Prediction {
    pub fn new(entity: EntityRef, kind: AnomalyKind, probability: f64) -> Self {
        Prediction {
            entity,
            kind,
            probability,
            time_to_incident_s: None,
            branch_scores: BTreeMap::new(),
            branch_weights: BTreeMap::new(),
            top_features: Vec::new(),
            neighbours: Vec::new(),
        }
    }

    /// The alert message for this prediction.
    pub fn into_alert(
        self,
        now_ms: TimestampMs,
        starts_at_ms: TimestampMs,
        state: AlertState,
        model_version: &str,
    ) -> Alert {
        Alert {
            id: Alert::stable_id(&self.entity, self.kind, starts_at_ms),
            timestamp_ms: now_ms,
            starts_at_ms,
            severity: tracker::severity(self.probability, self.time_to_incident_s),
            entity: self.entity,
            kind: self.kind,
            state,
            probability: self.probability,
            time_to_incident_seconds: self.time_to_incident_s,
            model_version: model_version.to_string(),
            branch_scores: self.branch_scores,
            branch_weights: self.branch_weights,
            top_features: self.top_features,
            neighbours: self.neighbours,
        }
    }
}

/// What a scorer may read at a tick.
pub struct ScoringContext<'a> {
    pub now_ms: TimestampMs,
    pub windows: &'a WindowStore,
    pub graph: &'a LiveGraph,
}

/// A model that turns the current state into predictions. Implementations batch: one call
/// scores every due entity.
pub trait Scorer: Send {
    /// Model name and version, stamped on every alert.
    fn version(&self) -> String;

    /// Scores `entities` (all due this tick); returns one prediction per entity and kind.
    fn score(&mut self, ctx: &ScoringContext<'_>, entities: &[EntityId]) -> Vec<Prediction>;

    /// Drops any per-entity state of an entity that is gone.
    fn forget(&mut self, _id: &EntityId) {}

    /// Wall time of each stage of the last `score` call (a branch by its name, the
    /// meta-learners as `meta`), for the latency histograms. Names come from a small fixed set;
    /// empty when the scorer does not time its stages.
    fn stage_timings(&self) -> &[(&'static str, Duration)] {
        &[]
    }

    /// The per-kind fire thresholds the model was calibrated for; empty when it has none (the
    /// alert policy's own apply).
    fn thresholds(&self) -> HashMap<AnomalyKind, f64> {
        HashMap::new()
    }
}
