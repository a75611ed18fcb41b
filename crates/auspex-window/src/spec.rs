//! The feature spec: the stable, ordered list of feature names and the window settings that give
//! them their meaning, stored in a model bundle and checked against the running store.

use auspex_model::metrics;
use serde::{Deserialize, Serialize};

use crate::{WindowConfig, WindowError};

/// Version of the feature formulas; bumped whenever a feature changes meaning.
pub const FEATURE_VERSION: u32 = 2;

/// Per tracked metric, in this order: `<metric>.<stat>`. Counters' series are per-second rates;
/// `slope` is in units per second; `zscore` is `(last - mean) / std` over the window (0 when the
/// window is flat; at most `sqrt(length - 1)` in size); `baseline_z` is `(ewma - m) / s` against
/// the entity's long-run baseline mean `m` and standard deviation `s` of that metric
/// (`WindowConfig::baseline_ms`; `s` floored at `1e-3 |m| + 1e-9`, the result clipped to ±25;
/// 0 for counters and before the first sample). The two are scale-free views of "this is unusual
/// for this entity" — within the window and against its history — so a model trained on some
/// entities transfers to others. `missing_ratio` is the fraction of the window's slots with no
/// observation.
pub const STATS: [&str; 10] = [
    "mean",
    "std",
    "min",
    "max",
    "last",
    "slope",
    "ewma",
    "zscore",
    "baseline_z",
    "missing_ratio",
];

/// After the [`STATS`] of a usage metric that has a limit (`spec(name).limit`):
/// `last / limit`, and the linear time until usage reaches the limit, in seconds.
pub const LIMIT_STATS: [&str; 2] = ["utilisation", "time_to_exhaustion_seconds"];

/// The last feature: the fraction of (metric, slot) cells observed, over the metrics the entity
/// reported at least once in the window.
pub const COMPLETENESS: &str = "window.completeness";

/// After [`COMPLETENESS`], the last features: over the tracked metrics the entity reported in
/// the window, the largest `|zscore|`, the largest `|baseline_z|` and the mean `|baseline_z|`.
/// They say "something about this entity is unusual" whatever metrics it has, so they carry
/// over between entities with different metric sets (bring-your-own data).
pub const AGGREGATES: [&str; 3] = [
    "window.max_abs_zscore",
    "window.max_abs_baseline_z",
    "window.mean_abs_baseline_z",
];

/// Names and meaning of the feature vector; serialisable so that a model bundle can store the
/// spec it was trained on and [`FeatureSpec::check`] it against the store serving it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// [`FEATURE_VERSION`] of the formulas.
    pub version: u32,
    /// Slot width the windows were built with.
    pub resolution_ms: u64,
    /// Slots per window.
    pub length: usize,
    /// EWMA smoothing factor.
    pub ewma_alpha: f64,
    /// Cap of the time-to-exhaustion features.
    pub tte_cap_seconds: f64,
    /// Time constant of the long-run baselines.
    pub baseline_ms: u64,
    /// Tracked metrics, in order (also the order of the sequence batch's columns).
    pub metrics: Vec<String>,
    /// Feature names, in vector order.
    pub names: Vec<String>,
}

impl FeatureSpec {
    /// The spec of a store built from `config` (which need not be validated).
    pub fn new(config: &WindowConfig) -> Self {
        let mut names = Vec::new();
        for m in &config.metrics {
            names.extend(STATS.iter().map(|s| format!("{m}.{s}")));
            if limit_of(m).is_some() {
                names.extend(LIMIT_STATS.iter().map(|s| format!("{m}.{s}")));
            }
        }
        names.push(COMPLETENESS.to_string());
        names.extend(AGGREGATES.iter().map(|a| a.to_string()));
        FeatureSpec {
            version: FEATURE_VERSION,
            resolution_ms: config.resolution_ms,
            length: config.length,
            ewma_alpha: config.ewma_alpha,
            tte_cap_seconds: config.tte_cap_seconds,
            baseline_ms: config.baseline_ms,
            metrics: config.metrics.clone(),
            names,
        }
    }

    /// Width of the feature vector.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never true: every spec has at least the completeness feature.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Position of a feature by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Ok when features computed under `self` mean what a model trained under `expected` saw;
    /// otherwise the error names the first difference.
    pub fn check(&self, expected: &FeatureSpec) -> Result<(), WindowError> {
        let differ = |field: &'static str, got: String, want: String| {
            Err(WindowError::SpecMismatch {
                field,
                reason: format!("store has {got}, model expects {want}"),
            })
        };
        if self.version != expected.version {
            return differ(
                "version",
                self.version.to_string(),
                expected.version.to_string(),
            );
        }
        if self.resolution_ms != expected.resolution_ms {
            let (a, b) = (self.resolution_ms, expected.resolution_ms);
            return differ("resolution_ms", a.to_string(), b.to_string());
        }
        if self.length != expected.length {
            return differ(
                "length",
                self.length.to_string(),
                expected.length.to_string(),
            );
        }
        if self.ewma_alpha != expected.ewma_alpha {
            let (a, b) = (self.ewma_alpha, expected.ewma_alpha);
            return differ("ewma_alpha", a.to_string(), b.to_string());
        }
        if self.tte_cap_seconds != expected.tte_cap_seconds {
            let (a, b) = (self.tte_cap_seconds, expected.tte_cap_seconds);
            return differ("tte_cap_seconds", a.to_string(), b.to_string());
        }
        if self.baseline_ms != expected.baseline_ms {
            let (a, b) = (self.baseline_ms, expected.baseline_ms);
            return differ("baseline_ms", a.to_string(), b.to_string());
        }
        if self.metrics != expected.metrics {
            return differ(
                "metrics",
                format!("{:?}", self.metrics),
                format!("{:?}", expected.metrics),
            );
        }
        if self.names != expected.names {
            let i = self
                .names
                .iter()
                .zip(&expected.names)
                .position(|(a, b)| a != b)
                .unwrap_or(self.names.len().min(expected.names.len()));
            let at = |v: &[String]| v.get(i).cloned().unwrap_or_else(|| "<end>".into());
            return differ(
                "names",
                format!("{} at {i}", at(&self.names)),
                at(&expected.names),
            );
        }
        Ok(())
    }
}

/// The limit metric of a usage metric, if the canonical vocabulary gives one.
pub(crate) fn limit_of(metric: &str) -> Option<&'static str> {
    metrics::spec(metric).and_then(|s| s.limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_names_and_width() {
        let c = WindowConfig::default();
        let s = FeatureSpec::new(&c);
        let with_limit = c.metrics.iter().filter(|m| limit_of(m).is_some()).count();
        assert_eq!(with_limit, 2);
        let tail = 1 + AGGREGATES.len();
        assert_eq!(
            s.len(),
            c.metrics.len() * STATS.len() + with_limit * 2 + tail
        );
        assert_eq!(s.names[0], "cpu_usage_cores.mean");
        assert_eq!(s.names[7], "cpu_usage_cores.zscore");
        assert_eq!(s.names[8], "cpu_usage_cores.baseline_z");
        assert_eq!(s.names[10], "cpu_usage_cores.utilisation");
        assert_eq!(s.names[11], "cpu_usage_cores.time_to_exhaustion_seconds");
        assert_eq!(s.names[s.len() - tail], COMPLETENESS);
        assert_eq!(s.names.last().unwrap(), AGGREGATES[2]);
        let mut sorted = s.names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), s.len(), "names are unique");
    }

    #[test]
    fn check_names_the_difference() {
        let a = FeatureSpec::new(&WindowConfig::default());
        a.check(&a.clone()).unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<FeatureSpec>(&json).unwrap(), a);

        let b = FeatureSpec::new(&WindowConfig {
            length: 20,
            ..WindowConfig::default()
        });
        assert!(matches!(
            a.check(&b),
            Err(WindowError::SpecMismatch {
                field: "length",
                ..
            })
        ));
        let mut c = a.clone();
        c.names.swap(1, 2);
        let err = a.check(&c).unwrap_err().to_string();
        assert!(err.contains("cpu_usage_cores.std at 1"), "{err}");
    }
}
