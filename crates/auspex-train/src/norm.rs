//! Causal per-entity score normalisation.
//!
//! A fixed threshold on a raw anomaly score fires everywhere or nowhere once an entity drifts
//! from what training saw (SMD's test halves drift from their training halves). Normalising each
//! score against the entity's own recent scores, with no labels and nothing from the future, as
//! a live service would, makes one threshold mean "unusual *for this entity*":
//!
//! `z_t = (s_t - median(H_t)) / scale(H_t)`, then `n_t = EWMA_alpha(z)_t`
//!
//! where `H_t` is the entity's history before `t`: earlier scores sampled at most once per
//! `span_ms / window` of event time, the latest `window` of them (so the history spans
//! `span_ms` whatever the sample rate), and `scale` the inter-quartile range over 1.349 (a
//! robust standard deviation), floored so a constant history does not blow up. With fewer than
//! `min_history` scores in `H_t` the output is NaN: not enough is known yet to say what is
//! unusual.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Settings of [`CausalNorm`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CausalNormConfig {
    /// How many past scores the history holds (its memory: 8 bytes each).
    pub window: usize,
    /// The event time the history spans.
    pub span_ms: i64,
    /// Scores in the history before any output.
    pub min_history: usize,
    /// EWMA weight of the newest robust z (1 = no smoothing).
    pub alpha: f64,
    /// Floor of the robust scale, as a share of |median| plus an absolute floor.
    pub min_scale: f64,
}

impl Default for CausalNormConfig {
    /// A day of scores held as 288 (one per five minutes), an hour before the first output,
    /// and light smoothing.
    fn default() -> Self {
        Self {
            window: 288,
            span_ms: 86_400_000,
            min_history: 12,
            alpha: 0.3,
            min_scale: 1e-3,
        }
    }
}

impl CausalNormConfig {
    /// Checks the settings make sense, saying which does not.
    pub fn validate(&self) -> Result<(), String> {
        if self.window < 2 {
            return Err(format!("window must be at least 2, got {}", self.window));
        }
        if self.span_ms < self.window as i64 {
            return Err(format!(
                "span_ms must be at least one millisecond per history entry, got {}",
                self.span_ms
            ));
        }
        if self.min_history < 2 || self.min_history > self.window {
            return Err(format!(
                "min_history must lie in 2..={}, got {}",
                self.window, self.min_history
            ));
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(format!("alpha must lie in (0, 1], got {}", self.alpha));
        }
        if self.min_scale.is_nan() || self.min_scale <= 0.0 {
            return Err(format!(
                "min_scale must be positive, got {}",
                self.min_scale
            ));
        }
        Ok(())
    }
}

/// One entity's normaliser state: a few KiB at the default window.
#[derive(Debug, Clone)]
pub struct CausalNorm {
    config: CausalNormConfig,
    /// The history in arrival order (to evict the oldest) ...
    fifo: VecDeque<f32>,
    /// ... and sorted (for quantiles).
    sorted: Vec<f32>,
    /// When the history last took a score.
    last_kept_ms: Option<i64>,
    ewma: Option<f64>,
}

impl CausalNorm {
    pub fn new(config: CausalNormConfig) -> Self {
        Self {
            config,
            fifo: VecDeque::with_capacity(config.window),
            sorted: Vec::with_capacity(config.window),
            last_kept_ms: None,
            ewma: None,
        }
    }

    /// Normalises `score`, observed at `t_ms`, against the history so far, then takes it into
    /// the history when the last one taken is at least `span_ms / window` old. A NaN score
    /// gives NaN and changes nothing.
    pub fn push(&mut self, t_ms: i64, score: f64) -> f64 {
        if score.is_nan() {
            return f64::NAN;
        }
        let out = if self.sorted.len() >= self.config.min_history {
            let (q1, med, q3) = (self.quantile(0.25), self.quantile(0.5), self.quantile(0.75));
            let floor = self.config.min_scale * (1.0 + med.abs());
            let z = (score - med) / ((q3 - q1) / 1.349).max(floor);
            let e = match self.ewma {
                Some(e) => e + self.config.alpha * (z - e),
                None => z,
            };
            self.ewma = Some(e);
            e
        } else {
            f64::NAN
        };
        let every = self.config.span_ms / self.config.window as i64;
        if self.last_kept_ms.is_none_or(|t| t_ms - t >= every) {
            self.remember(score as f32);
            self.last_kept_ms = Some(t_ms);
        }
        out
    }

    fn remember(&mut self, v: f32) {
        if self.fifo.len() == self.config.window
            && let Some(old) = self.fifo.pop_front()
        {
            let i = self.sorted.partition_point(|x| *x < old);
            self.sorted.remove(i);
        }
        self.fifo.push_back(v);
        let i = self.sorted.partition_point(|x| *x < v);
        self.sorted.insert(i, v);
    }

    /// Linear-interpolated quantile of the (non-empty) history.
    fn quantile(&self, q: f64) -> f64 {
        let n = self.sorted.len();
        let pos = q * (n - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let (a, b) = (f64::from(self.sorted[lo]), f64::from(self.sorted[hi]));
        a + (b - a) * (pos - lo as f64)
    }

    /// Normalises one entity's scores, one per `step_ms`, in time order.
    pub fn series(config: CausalNormConfig, step_ms: i64, scores: &[f64]) -> Vec<f64> {
        let mut n = Self::new(config);
        (0..)
            .zip(scores)
            .map(|(i, &s)| n.push(i * step_ms, s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CausalNormConfig {
        CausalNormConfig {
            window: 50,
            span_ms: 50,
            min_history: 10,
            alpha: 1.0,
            min_scale: 1e-6,
        }
    }

    #[test]
    fn a_jump_stands_out_against_the_entitys_own_level() {
        // Two entities at very different levels and spreads: the same relative jump gives the
        // same normalised score.
        let a: Vec<f64> = (0..60)
            .map(|i| 1.0 + 0.1 * ((i % 5) as f64))
            .chain([1.8])
            .collect();
        let b: Vec<f64> = a.iter().map(|v| 100.0 + 10.0 * v).collect();
        let (na, nb) = (
            CausalNorm::series(cfg(), 1, &a),
            CausalNorm::series(cfg(), 1, &b),
        );
        assert!(
            na[..10].iter().all(|v| v.is_nan()),
            "no output before min_history"
        );
        let (za, zb) = (na[60], nb[60]);
        assert!(za > 3.0, "jump z {za}");
        assert!((za - zb).abs() < 1e-3, "{za} vs {zb}");
        assert!(na[20..60].iter().all(|v| v.abs() < 3.0));
    }

    #[test]
    fn history_is_causal_and_bounded() {
        let s: Vec<f64> = (0..500).map(|i| ((i * 37) % 101) as f64).collect();
        // The output at t depends on nothing after t: a prefix gives the same outputs.
        let whole = CausalNorm::series(cfg(), 1, &s);
        let prefix = CausalNorm::series(cfg(), 1, &s[..200]);
        assert_eq!(format!("{:?}", &whole[..200]), format!("{prefix:?}"));
        let mut n = CausalNorm::new(cfg());
        for (i, v) in (0..500).map(|i| i as f64).enumerate() {
            n.push(i as i64, v);
            assert!(
                n.sorted.len() <= 50 && n.fifo.len() == n.sorted.len(),
                "at {i}"
            );
        }
        // The history holds the latest 50: its median is near 474.5.
        assert!((n.quantile(0.5) - 474.5).abs() < 1e-9);
        assert!(n.sorted.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn the_history_samples_event_time_and_skips_nan() {
        // Span 150 ms over 50 entries: one score per 3 ms enters the history, whatever the rate.
        let c = CausalNormConfig {
            span_ms: 150,
            ..cfg()
        };
        let mut n = CausalNorm::new(c);
        for i in 0..30 {
            n.push(i, i as f64);
        }
        assert_eq!(n.fifo.len(), 10);
        let mut m = CausalNorm::new(c);
        for i in 0..10 {
            m.push(i * 9, i as f64);
        }
        assert_eq!(m.fifo.len(), 10);
        assert!(n.push(30, f64::NAN).is_nan());
        assert_eq!(n.fifo.len(), 10);
    }

    #[test]
    fn bad_settings_say_which() {
        let mut c = CausalNormConfig::default();
        assert!(c.validate().is_ok());
        c.alpha = 0.0;
        assert!(c.validate().unwrap_err().contains("alpha"));
        c = CausalNormConfig {
            min_history: 1000,
            ..CausalNormConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("min_history"));
    }
}
