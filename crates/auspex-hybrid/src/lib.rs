//! The hybrid ensemble wired together: training with out-of-fold stacking ([`train`]), the
//! model that scores feature rows ([`HybridModel`]), its bundle on disk, and the [`Scorer`]
//! the pipeline runs ([`HybridScorer`]).
//!
//! This crate owns the *composition* — which branches, how their out-of-fold scores feed the
//! gated meta-learner per kind, how thresholds are chosen — and none of the models: those live
//! in `auspex-nn` (burn branches) and `auspex-ensemble` (trees, logistic, meta-learner,
//! calibration, bundles). Datasets and metrics come from `auspex-train`.
//!
//! Branches (see docs/ENSEMBLE.md): gradient-boosted trees and logistic regression per kind;
//! multi-head networks over the tabular row (MLP), the window's sequences (LSTM, temporal CNN)
//! and the tick's topology (GNN).

mod inputs;
mod model;
mod scorer;
mod training;

pub use model::{
    BRANCH_NAMES, Branch, BranchTimings, HybridModel, KindModel, META, RowScores, ScoreInput,
};
pub use scorer::HybridScorer;
pub use training::{
    BranchReport, GNN_SNAPSHOT_EVERY_TICKS, HybridConfig, KindReport, TrainReport, train,
};

/// Errors from training, loading or scoring.
#[derive(Debug, thiserror::Error)]
pub enum HybridError {
    #[error("dataset: {0}")]
    Data(#[from] auspex_train::TrainError),
    #[error("ensemble: {0}")]
    Ensemble(#[from] auspex_ensemble::Error),
    #[error("neural branch: {0}")]
    Nn(#[from] auspex_nn::NnError),
    #[error("bundle: {0}")]
    Bundle(#[from] auspex_ensemble::BundleError),
    #[error("bundle {file}: {reason}")]
    BundleContent { file: String, reason: String },
    #[error("feature spec: {0}")]
    Spec(#[from] auspex_window::WindowError),
    #[error("{0}")]
    Invalid(String),
}
