//! Tabular scorers and the stacking ensemble of auspex.
//!
//! This crate owns everything between "each branch produced a score" and "a calibrated,
//! thresholded alert probability with per-branch weights":
//!
//! - [`gbdt`]: gradient-boosted trees over `forust_ml::GradientBooster` (log-loss, sample and
//!   class weights, early stopping, per-feature contributions for explanations);
//! - [`logistic`]: L2 logistic regression with sample and class weights (Newton / IRLS);
//! - [`smote`]: SMOTE and borderline-SMOTE oversampling;
//! - [`calibration`]: Platt scaling and isotonic regression;
//! - [`threshold`]: thresholds for a target precision, an alert budget, or max-F1;
//! - [`folds`]: time-blocked, purged, optionally entity-grouped folds for out-of-fold stacking;
//! - [`meta`]: the context-gated meta-learner that stacks branch scores;
//! - [`pca`]: PCA reconstruction error as an unsupervised score;
//! - [`bundle`]: the versioned, hash-verified model directory;
//! - [`metrics`]: small AUC / average-precision / log-loss helpers.
//!
//! It depends on no other auspex crate: inputs are dense row-major `f32`/`f64` matrices
//! ([`Features`]), labels are `0`/`1` bytes, and sample weights are optional. Incident kinds
//! are the caller's business: train one model per kind, and hold them in a [`PerKind`].

pub mod bundle;
pub mod calibration;
pub mod folds;
pub mod gbdt;
pub mod logistic;
pub mod meta;
pub mod metrics;
pub mod pca;
pub mod smote;
pub mod threshold;

mod data;
mod error;
mod forest;
mod weights;

pub use bundle::{Bundle, BundleError, BundleWriter, Manifest, sha256_hex};
pub use calibration::{CalibrationMethod, Calibrator, Isotonic, Platt};
pub use data::{Features, KINDS, PerKind, logit, sigmoid};
pub use error::Error;
pub use folds::{Fold, FoldConfig, FoldScheme, Folds};
pub use gbdt::{Contribution, Gbdt, GbdtConfig};
pub use logistic::{LogisticConfig, LogisticRegression, Standardizer};
pub use meta::{MetaConfig, MetaLearner, MetaPrediction};
pub use pca::{Pca, PcaConfig};
pub use smote::{Augmented, Smote, SmoteConfig, SmoteVariant};
pub use threshold::{
    AlertBudget, BudgetChoice, ThresholdChoice, alert_episodes_at, threshold_for_alert_budget,
    threshold_for_max_f1, threshold_for_precision,
};
pub use weights::{ClassWeight, sample_weights};
