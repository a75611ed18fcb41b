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

/// One branch's part in a prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BranchPart {
    pub branch: &'static str,
    /// Its probability; `None` when it had nothing to say about this row (absent input).
    pub score: Option<f64>,
    /// Its weight in the combination.
    pub weight: f64,
}

/// The branches behind one prediction, in the scorer's order.
///
/// A short list under static names rather than two maps of owned strings: every tick makes
/// one per entity and kind, and serve keeps the latest for `/v1/entities` (in a profile at
/// 1,000 entities the maps' allocations were about a tenth of serve's time). It serialises as
/// the alert's two maps, `branch_scores` and `branch_weights`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Branches(Vec<BranchPart>);

impl Branches {
    pub fn with_capacity(n: usize) -> Self {
        Branches(Vec::with_capacity(n))
    }

    pub fn push(&mut self, branch: &'static str, score: Option<f64>, weight: f64) {
        self.0.push(BranchPart {
            branch,
            score,
            weight,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &BranchPart> {
        self.0.iter()
    }

    /// `branch`'s probability, when it gave one.
    pub fn score(&self, branch: &str) -> Option<f64> {
        self.0.iter().find(|p| p.branch == branch)?.score
    }

    /// `branch`'s weight.
    pub fn weight(&self, branch: &str) -> Option<f64> {
        Some(self.0.iter().find(|p| p.branch == branch)?.weight)
    }

    /// The probabilities by branch, as alerts carry them (branches without one left out).
    pub fn scores(&self) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter_map(|p| Some((p.branch.to_string(), p.score?)))
            .collect()
    }

    /// The weights by branch, as alerts carry them.
    pub fn weights(&self) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .map(|p| (p.branch.to_string(), p.weight))
            .collect()
    }
}

impl serde::Serialize for Branches {
    /// `{"branch_scores": {..}, "branch_weights": {..}}` (flatten it into the parent).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Scores<'a>(&'a Branches, bool);
        impl serde::Serialize for Scores<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                for p in self.0.iter() {
                    match (self.1, p.score) {
                        (true, Some(v)) => m.serialize_entry(p.branch, &v)?,
                        (true, None) => {}
                        (false, _) => m.serialize_entry(p.branch, &p.weight)?,
                    }
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("branch_scores", &Scores(self, true))?;
        m.serialize_entry("branch_weights", &Scores(self, false))?;
        m.end()
    }
}

/// One scorer's view of one (entity, kind) at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub entity: EntityRef,
    pub kind: AnomalyKind,
    /// Probability in [0, 1] that an incident of `kind` hits `entity` within the horizon.
    pub probability: f64,
    pub time_to_incident_s: Option<f64>,
    /// Each branch's probability and weight.
    pub branches: Branches,
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
            branches: Branches::default(),
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
            branch_scores: self.branches.scores(),
            branch_weights: self.branches.weights(),
            top_features: self.top_features,
            neighbours: self.neighbours,
            action: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Serialised (flattened into its parent) as the two maps alerts carry; a branch without
    /// a probability has a weight but no score.
    #[test]
    fn branches_serialise_as_the_alerts_two_maps() {
        let mut b = Branches::default();
        b.push("lstm", Some(0.75), 0.5);
        b.push("gnn", None, 0.0);
        b.push("gbdt", Some(0.25), 0.5);
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "branch_scores": {"lstm": 0.75, "gbdt": 0.25},
                "branch_weights": {"lstm": 0.5, "gnn": 0.0, "gbdt": 0.5},
            })
        );
        assert_eq!(
            json["branch_scores"],
            serde_json::to_value(b.scores()).unwrap()
        );
        assert_eq!(
            json["branch_weights"],
            serde_json::to_value(b.weights()).unwrap()
        );
        assert_eq!((b.score("gnn"), b.weight("gnn")), (None, Some(0.0)));
        assert_eq!(b.score("tcn"), None);
    }
}
