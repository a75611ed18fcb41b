//! Training data and evaluation for auspex's models.
//!
//! This crate owns three things, all offline (training and `auspex evaluate`), none on the
//! serving path:
//! - [`dataset`]: replays a [`Source`](auspex_ingest::Source) through a
//!   [`WindowStore`](auspex_window::WindowStore) and a [`LiveGraph`](auspex_graph::LiveGraph)
//!   exactly as the serving pipeline does (ticks at slot boundaries), and records every scored
//!   window as a labelled row: features, optional sequences, context, horizon labels per
//!   [`AnomalyKind`](auspex_model::AnomalyKind) and the point label; optionally graph snapshots
//!   for the GNN branch.
//! - [`inject`]: a [`Source`](auspex_ingest::Source) wrapper that injects synthetic anomalies
//!   (spikes, level shifts, drifts, variance bursts, flat-lines, correlation breaks) with labels,
//!   so supervised branches can train on unlabelled data.
//! - [`eval`], [`plot`], [`table`]: metrics without point-adjust at a caller-given threshold
//!   (point-wise, event-wise, delay, false alerts per entity-day, PR-AUC, VUS-PR), SVG plots, and
//!   the Markdown table of ablation results.
//!
//! It does not train models (that is `auspex-nn` and `auspex-ensemble`) and never picks a
//! threshold from test labels: every threshold comes from the caller.

pub mod context;
pub mod dataset;
pub mod eval;
pub mod inject;
pub mod labels;
pub mod norm;
pub mod plot;
pub mod table;

pub use context::{ContextBuilder, DETECTOR_Z};
pub use dataset::{
    CONTEXT_NAMES, Dataset, DatasetConfig, GraphSnapshot, Sequences, Split, SplitScope, build,
};
pub use eval::{
    BestF1, EvalConfig, EventMetrics, LeadTime, PointwiseMetrics, PrPoint, Report, Segment, Series,
    Summary, average_precision, best_f1, evaluate, event_metrics, lead_times, pointwise, pr_curve,
    segments, vus_pr,
};
pub use inject::{Injection, Injector, InjectorConfig, Shape, kind_for_metric};
pub use labels::LabelIndex;
pub use norm::{CausalNorm, CausalNormConfig};
pub use table::AblationTable;

/// Errors of this crate; each says what and where.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The source failed (I/O, a missing file).
    #[error("source: {0}")]
    Ingest(#[from] auspex_ingest::IngestError),
    /// The window store refused its config or a read.
    #[error("windows: {0}")]
    Window(#[from] auspex_window::WindowError),
    /// The live graph refused its config or an export.
    #[error("graph: {0}")]
    Graph(#[from] auspex_graph::GraphError),
    /// A configuration value is out of range.
    #[error("invalid {key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// Inputs that do not fit together (lengths, names, order).
    #[error("invalid input: {0}")]
    Input(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// (De)serialising a data set or report.
    #[error("{path}: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// Drawing a plot.
    #[error("plot {path}: {reason}")]
    Plot { path: String, reason: String },
}

pub(crate) fn config_error(key: &'static str, reason: impl Into<String>) -> TrainError {
    TrainError::Config {
        key,
        reason: reason.into(),
    }
}
