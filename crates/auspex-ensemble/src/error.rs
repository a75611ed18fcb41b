//! The crate's error type for fitting, predicting and (de)serialising models.
//! Bundle I/O has its own [`crate::BundleError`], which names files.

/// What went wrong while fitting, predicting or (de)serialising a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input has the wrong length for the shape the call implies.
    #[error("{what}: expected length {expected}, found {found}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// The length the call implies.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A label is neither 0 nor 1.
    #[error("label at row {row} is {value}, expected 0 or 1")]
    InvalidLabel {
        /// Row index.
        row: usize,
        /// The offending value.
        value: u8,
    },
    /// A value that must be finite is not (NaN features are allowed only where documented).
    #[error("{what} at row {row} is not finite ({value})")]
    NotFinite {
        /// Which input.
        what: &'static str,
        /// Row index.
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// A sample weight is negative or not finite.
    #[error("sample weight at row {row} is {value}, expected a finite value >= 0")]
    InvalidWeight {
        /// Row index.
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// There are no rows, or no rows with positive weight.
    #[error("{0}: no rows to fit on")]
    Empty(&'static str),
    /// Fitting needs both classes present.
    #[error("{0}: labels contain a single class")]
    SingleClass(&'static str),
    /// SMOTE needs at least two minority rows to interpolate between.
    #[error("SMOTE needs at least 2 minority rows, found {found}")]
    TooFewMinority {
        /// Number of minority rows found.
        found: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name, as in the config struct.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The gradient-boosting library refused.
    #[error("forust: {0}")]
    Forust(#[from] forust_ml::errors::ForustError),
    /// A serialised model could not be read or written.
    #[error("model (de)serialisation: {0}")]
    Serde(#[from] serde_json::Error),
    /// A serialised model has a format this version does not read.
    #[error("model format {found:?}, expected {expected:?}")]
    Format {
        /// The format tag this version writes.
        expected: &'static str,
        /// The tag found.
        found: String,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
