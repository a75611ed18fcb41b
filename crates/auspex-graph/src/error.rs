//! Errors from building and changing the live graph.

/// What went wrong, and with what.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A configuration value is out of range.
    #[error("invalid graph config `{key}`: {reason}")]
    InvalidConfig { key: &'static str, reason: String },
    /// The change would grow the graph past `max_entities`; nothing was changed.
    #[error("graph is full: {len} entities + {new} new would exceed max_entities = {max}")]
    Full { len: usize, new: usize, max: usize },
    /// An edge that cannot be stored, e.g. a `runs_on` edge whose target is not a node.
    #[error("invalid {kind} edge {from} -> {to}: {reason}")]
    InvalidEdge {
        kind: &'static str,
        from: String,
        to: String,
        reason: &'static str,
    },
    /// The feature callback of an export returned a row of the wrong length.
    #[error("features of {id} have length {got}, expected {expected}")]
    FeatureDim {
        id: String,
        expected: usize,
        got: usize,
    },
}
