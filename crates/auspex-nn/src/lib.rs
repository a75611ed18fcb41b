//! auspex's neural branches on burn 0.22: an MLP over tabular features, an LSTM and a temporal
//! CNN over metric windows, and a relation-typed GraphSAGE network over the topology of one
//! scoring tick. Each branch has a `#[derive(Config)]` with defaults, a training function
//! (`fit_*`: class-weighted logit BCE, Adam with L2, dropout, mini-batches, early stopping on a
//! validation set the caller passes, seeded) and a trained model that predicts probabilities
//! and saves itself to self-describing bytes (config JSON + burnpack weights).
//!
//! The crate owns the models and their training; it does not build features, windows or graphs
//! (the window, graph and train crates do) and names no other auspex crate: data comes in as
//! dense row-major `f32` arrays ([`Tabular`], [`Sequences`], [`GraphSnapshot`]) and leaves as
//! `n × K` probabilities, one sigmoid head per [`KINDS`] entry, in that order.
//!
//! burn 0.22 facts this crate relies on: modules and tensors carry no backend type parameter —
//! the backend lives in the [`burn::tensor::Device`] — so the branches are backend-generic by
//! construction and [`NnDevice`] is the only place a concrete backend is named. burn's random
//! number generator is process-global (flex keeps one `Mutex<Option<Rng>>`), so seeding it does
//! not make concurrent trainings reproducible: weights are initialised and dropout masks drawn
//! from a per-training ChaCha generator instead.

mod data;
mod device;
mod gnn;
mod init;
mod loss;
mod lstm;
mod lstm_cpu;
mod metrics;
mod mlp;
mod persist;
mod tcn;
mod train;

pub use data::{GraphSnapshot, Labeled, Labels, Sequences, Standardizer, Tabular};
pub use device::NnDevice;
pub use gnn::{Gnn, GnnConfig, GnnModel, fit_gnn};
pub use init::{dropout, seeded_init};
pub use lstm::{Lstm, LstmConfig, LstmModel, LstmStreamState, fit_lstm};
pub use metrics::{recall_at, roc_auc};
pub use mlp::{Mlp, MlpConfig, MlpModel, fit_mlp};
pub use tcn::{Tcn, TcnConfig, TcnModel, fit_tcn};
pub use train::{EpochStats, Progress, TrainConfig, TrainHistory};

/// Number of heads: one per anomaly kind.
pub const K: usize = 4;

/// The heads, in output order.
pub const KINDS: [&str; K] = [
    "pod_failure",
    "cpu_exhaustion",
    "memory_exhaustion",
    "network_issue",
];

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// Input arrays whose lengths disagree with their declared shape, or out-of-range indices.
    #[error("invalid {what}: {reason}")]
    Shape {
        /// Which input (e.g. `"tabular"`, `"graph edges"`).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A device name that is not `cpu` or `wgpu`, or `wgpu` in a build without the `gpu` feature.
    #[error("device: {0}")]
    Device(String),
    /// A configuration that cannot be built (zero sizes, probabilities outside `[0, 1)`).
    #[error("config: {0}")]
    Config(String),
    /// Bytes that are not a saved model of the expected branch.
    #[error("model bytes: {0}")]
    Format(String),
    /// burn failed to write or read the weights.
    #[error("weights record: {0}")]
    Record(String),
    /// Training produced a non-finite loss (diverged or non-finite inputs).
    #[error("training diverged at epoch {epoch}: loss {loss}")]
    Diverged {
        /// The epoch (1-based) where the loss stopped being finite.
        epoch: usize,
        /// The offending loss.
        loss: f32,
    },
}

pub(crate) fn shape_err(what: &'static str, reason: impl Into<String>) -> NnError {
    NnError::Shape {
        what,
        reason: reason.into(),
    }
}
