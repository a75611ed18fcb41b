//! The window store's configuration: its grid, its length, and which metrics it tracks.

use std::collections::HashSet;

use auspex_model::metrics::{self, CANONICAL};
use serde::{Deserialize, Serialize};

use crate::WindowError;

/// Longest window accepted, in slots (a day at 15 s is 5760): bounds memory per entity.
const MAX_LENGTH: usize = 8192;

/// How the window store slices time and what it keeps. Built into a store by
/// [`crate::WindowStore::new`], which validates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Width of one slot in milliseconds. Slots are aligned to multiples of it since the Unix
    /// epoch, so every entity shares the same grid; a sample lands in the slot holding its
    /// timestamp.
    pub resolution_ms: u64,
    /// Slots per window: a window spans `length * resolution_ms` and ends at the entity's newest
    /// slot.
    pub length: usize,
    /// An entity is due for scoring once every `step` slots, on the grid of slot numbers that
    /// are multiples of `step` (so entities are scored on the same ticks and batch together).
    pub step: usize,
    /// Tracked metrics, in feature order. The feature vector has a fixed width and order set by
    /// this list, whatever samples carry. Counters (`_total`) are kept as per-second rates. The
    /// limit of a tracked usage metric (e.g. `cpu_limit_cores`) is kept as side information for
    /// utilisation and time to exhaustion without being listed. Other metrics are ignored.
    pub metrics: Vec<String>,
    /// Entities without a sample for this long (event time) are removed by
    /// [`crate::WindowStore::evict_stale`].
    pub stale_after_ms: u64,
    /// Smoothing factor of the EWMA feature in (0, 1]: the weight of the newest slot.
    pub ewma_alpha: f64,
    /// How many slots behind an entity's newest slot a late sample may still land; older samples
    /// are dropped and counted. Must be less than `length`.
    pub max_lateness_slots: usize,
    /// Cap in seconds of the time-to-exhaustion feature; also its value when usage is not rising
    /// or the limit is unknown.
    pub tte_cap_seconds: f64,
    /// Time constant of each gauge's long-run baseline (an exponentially weighted mean and
    /// variance of every sample the entity ever sent, not only the window's), in milliseconds;
    /// the `baseline_z` feature compares the window's EWMA with it.
    pub baseline_ms: u64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            resolution_ms: 15_000,
            length: 40,
            step: 1,
            metrics: default_metrics(),
            stale_after_ms: 600_000,
            ewma_alpha: 0.3,
            max_lateness_slots: 4,
            tte_cap_seconds: 86_400.0,
            baseline_ms: 86_400_000,
        }
    }
}

/// Every canonical metric except limits and requests, in canonical order: limits are side
/// information for utilisation, and requests are scheduling hints rather than behaviour.
pub fn default_metrics() -> Vec<String> {
    CANONICAL
        .iter()
        .filter(|s| {
            let is_limit = CANONICAL.iter().any(|u| u.limit == Some(s.name));
            let is_request =
                s.name == metrics::CPU_REQUEST_CORES || s.name == metrics::MEMORY_REQUEST_BYTES;
            !is_limit && !is_request
        })
        .map(|s| s.name.to_string())
        .collect()
}

impl WindowConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), WindowError> {
        let bad =
            |field: &'static str, reason: String| Err(WindowError::InvalidConfig { field, reason });
        if self.resolution_ms == 0 || self.resolution_ms > 86_400_000 {
            return bad(
                "resolution_ms",
                format!("{} is not in 1..=86400000 (one day)", self.resolution_ms),
            );
        }
        if !(2..=MAX_LENGTH).contains(&self.length) {
            return bad(
                "length",
                format!("{} slots is not in 2..={MAX_LENGTH}", self.length),
            );
        }
        if self.step == 0 {
            return bad("step", "must be at least 1 slot".into());
        }
        if self.metrics.is_empty() {
            return bad("metrics", "no metric to track".into());
        }
        let mut seen = HashSet::new();
        for m in &self.metrics {
            if m.is_empty() {
                return bad("metrics", "a metric name is empty".into());
            }
            if !seen.insert(m.as_str()) {
                return bad("metrics", format!("{m:?} is listed twice"));
            }
        }
        if self.stale_after_ms == 0 {
            return bad("stale_after_ms", "must be positive".into());
        }
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return bad(
                "ewma_alpha",
                format!("{} is not in (0, 1]", self.ewma_alpha),
            );
        }
        if self.max_lateness_slots >= self.length {
            return bad(
                "max_lateness_slots",
                format!(
                    "{} must be less than length ({})",
                    self.max_lateness_slots, self.length
                ),
            );
        }
        if !(self.tte_cap_seconds.is_finite() && self.tte_cap_seconds > 0.0) {
            return bad(
                "tte_cap_seconds",
                format!("{} is not a positive number", self.tte_cap_seconds),
            );
        }
        if self.baseline_ms < self.resolution_ms {
            return bad(
                "baseline_ms",
                format!(
                    "{} is shorter than one slot ({} ms)",
                    self.baseline_ms, self.resolution_ms
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_skips_limits_and_requests() {
        let c = WindowConfig::default();
        c.validate().unwrap();
        assert_eq!(c.metrics.len(), CANONICAL.len() - 4);
        for gone in [
            metrics::CPU_LIMIT_CORES,
            metrics::CPU_REQUEST_CORES,
            metrics::MEMORY_LIMIT_BYTES,
            metrics::MEMORY_REQUEST_BYTES,
        ] {
            assert!(!c.metrics.iter().any(|m| m == gone), "{gone} is tracked");
        }
        assert!(c.metrics.iter().any(|m| m == metrics::CPU_USAGE_CORES));
    }

    #[test]
    fn errors_name_the_field() {
        type Mutation = Box<dyn Fn(&mut WindowConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("resolution_ms", Box::new(|c| c.resolution_ms = 0)),
            ("length", Box::new(|c| c.length = 1)),
            ("step", Box::new(|c| c.step = 0)),
            ("metrics", Box::new(|c| c.metrics.clear())),
            ("metrics", Box::new(|c| c.metrics.push("ready".into()))),
            ("stale_after_ms", Box::new(|c| c.stale_after_ms = 0)),
            ("ewma_alpha", Box::new(|c| c.ewma_alpha = 0.0)),
            ("ewma_alpha", Box::new(|c| c.ewma_alpha = f64::NAN)),
            (
                "max_lateness_slots",
                Box::new(|c| c.max_lateness_slots = 40),
            ),
            ("tte_cap_seconds", Box::new(|c| c.tte_cap_seconds = -1.0)),
            ("baseline_ms", Box::new(|c| c.baseline_ms = 1)),
        ];
        for (field, mutate) in cases {
            let mut c = WindowConfig::default();
            mutate(&mut c);
            match c.validate() {
                Err(WindowError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn serde_fills_defaults_and_rejects_unknown_keys() {
        let c: WindowConfig = serde_json::from_str(r#"{"length": 20}"#).unwrap();
        assert_eq!(c.length, 20);
        assert_eq!(c.resolution_ms, 15_000);
        assert!(serde_json::from_str::<WindowConfig>(r#"{"lenght": 20}"#).is_err());
    }
}
