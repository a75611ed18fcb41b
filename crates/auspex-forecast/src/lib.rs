//! Demand forecasts per workload (issue 7): CPU cores, memory bytes and request rate of each
//! Deployment / StatefulSet, summed over its pods per resolution step, forecast at several
//! horizons as quantiles by a learned head (burn), next to the naive references an operator
//! would otherwise use (last value, same time yesterday, Prometheus' `predict_linear`).
//!
//! Pipeline position: a stage after the samples source, beside the scorers; it reads
//! [`auspex_model::MetricSample`]s and names no other auspex stage. Modules: [`series`]
//! (aggregation and the gap rule), [`features`] (the model's inputs and the references),
//! [`model`] (the network, training, the model file), [`eval`] (MASE and pinball against the
//! references), [`stream`] (the streaming API).

pub mod eval;
pub mod features;
pub mod model;
pub mod series;
pub mod stream;

pub use eval::{
    BaselineQuantiles, EvalReport, HorizonScores, MethodScores, Split, evaluate, markdown_table,
};
pub use features::{Baseline, FeatureSpec};
pub use model::{ForecastConfig, ForecastModel, TrainReport, TrainSettings, WindowSet};
pub use series::{
    Resource, Series, SeriesBuilder, StepAggregator, StepDemand, WorkloadKey, aggregate,
};
pub use stream::{DemandForecaster, Forecast, HorizonForecast};

/// Default horizons: 5, 15 and 30 minutes.
pub const DEFAULT_HORIZONS_MS: [i64; 3] = [5 * 60_000, 15 * 60_000, 30 * 60_000];
/// Default quantile levels.
pub const DEFAULT_QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];
/// Default season: one day.
pub const DAY_MS: i64 = 24 * 3_600_000;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    /// A configuration that cannot be built.
    #[error("forecast config: {0}")]
    Config(String),
    /// Training could not run or diverged.
    #[error("forecast training: {0}")]
    Train(String),
    /// A model file that cannot be read; names the file and what is wrong.
    #[error("forecast model file {path}: {reason}")]
    ModelFile {
        /// The file (or the name the bytes were given).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ForecastConfig {
    /// A config from durations: horizons that are not a whole number of steps are dropped
    /// (returned second), the season and the hour of `predict_linear` rounded to steps.
    /// `history` is in steps.
    pub fn from_durations(
        step_ms: i64,
        history: usize,
        horizons_ms: &[i64],
        season_ms: i64,
        quantiles: &[f64],
    ) -> Result<(ForecastConfig, Vec<i64>), ForecastError> {
        if step_ms <= 0 {
            return Err(ForecastError::Config(format!(
                "step_ms must be > 0, got {step_ms}"
            )));
        }
        let (kept, dropped): (Vec<i64>, Vec<i64>) = horizons_ms
            .iter()
            .partition(|&&h| h >= step_ms && h % step_ms == 0);
        let config = ForecastConfig {
            features: FeatureSpec {
                step_ms,
                history,
                horizons: kept.iter().map(|&h| (h / step_ms) as usize).collect(),
                season: (season_ms / step_ms).max(1) as usize,
                seasonal: true,
                seasonal_smooth: 1,
                linear_points: ((3_600_000 / step_ms) as usize).max(2),
            },
            quantiles: quantiles.to_vec(),
            hidden: vec![64, 64],
            dropout: 0.1,
            max_gap: 5,
        };
        config.validate()?;
        Ok((config, dropped))
    }
}
