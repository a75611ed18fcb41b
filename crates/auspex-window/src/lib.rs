//! Per-entity sliding windows over streaming metrics, and the features the scorers read.
//!
//! This crate owns the state between the sources and the scorers: a [`WindowStore`] keeps, for
//! every live entity, the last [`WindowConfig::length`] slots of each tracked metric on a time
//! grid aligned to [`WindowConfig::resolution_ms`] (counters as per-second rates), imputes
//! missing slots, and turns a window into a fixed-width feature vector described by a
//! [`FeatureSpec`], or into arrow batches (one row of features per entity, or one sequence per
//! metric per entity) for the model branches. It does no I/O and knows nothing of models,
//! scaling across entities or alerting.
//!
//! The flow per tick: [`WindowStore::push`] every sample, ask [`WindowStore::due`] which
//! entities have a new window to score, read their features
//! ([`WindowStore::feature_matrix`], [`WindowStore::feature_batch`],
//! [`WindowStore::sequence_batch`]), and now and then [`WindowStore::evict_stale`].

mod batch;
mod config;
mod features;
mod spec;
mod store;

pub use batch::{ENTITY_COLUMN, MASK_SUFFIX};
pub use config::{WindowConfig, default_metrics};
pub use spec::{AGGREGATES, COMPLETENESS, FEATURE_VERSION, FeatureSpec, LIMIT_STATS, STATS};
pub use store::{PushOutcome, WindowStats, WindowStore};

use auspex_model::EntityId;

/// Errors from building a store or reading windows out of it.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// A [`WindowConfig`] field holds a value the store cannot work with.
    #[error("invalid window config: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// A window was asked for an entity the store does not hold (never seen, or evicted).
    #[error("no window for entity {0} (never seen or evicted)")]
    UnknownEntity(EntityId),
    /// Two feature specs differ (e.g. a model bundle's and the running store's).
    #[error("feature spec mismatch: {field}: {reason}")]
    SpecMismatch { field: &'static str, reason: String },
    /// A caller's buffer has the wrong size.
    #[error("{what} buffer holds {got} values, expected {expected}")]
    BufferSize {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// Arrow refused a batch (a bug in this crate if it ever happens).
    #[error("building an arrow batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}
