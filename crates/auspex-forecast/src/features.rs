//! The model's view of a series at a forecast origin, and the naive references.
//!
//! Everything here reads a history slice whose last element is the origin step `t` (the most
//! recent complete step), so a batch series prefix and a streaming ring give the same numbers.

use serde::{Deserialize, Serialize};

/// Inputs and targets are clipped to this many scale units (spikes on near-flat series).
const CLIP: f64 = 50.0;
/// Inputs are multiplied by this after clipping, for conditioning.
const INPUT_GAIN: f64 = 0.1;

/// What the network sees, in steps of the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Step length of the series, ms.
    pub step_ms: i64,
    /// Recent steps fed to the network (the origin included).
    pub history: usize,
    /// Forecast horizons, in steps (ascending, at least 1).
    pub horizons: Vec<usize>,
    /// Season length, in steps (1 day by default).
    pub season: usize,
    /// Whether the values around the same time one season ago are inputs.
    pub seasonal: bool,
    /// Half-width, in steps, of the average taken around each seasonal point.
    pub seasonal_smooth: usize,
    /// Points of the least-squares line of the `predict_linear` reference (one hour).
    pub linear_points: usize,
}

/// Scale and level of one window: predictions are `last + scale * z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The origin value `y[t]`.
    pub last: f64,
    /// The per-window scale: mean absolute one-step change over the history, plus 0.1 % of
    /// the mean level (so flat series have a small but non-zero scale).
    pub scale: f64,
    /// Whether the seasonal inputs were available (always false when `seasonal` is off).
    pub seasonal: bool,
}

impl FeatureSpec {
    /// Largest horizon, in steps.
    pub fn max_horizon(&self) -> usize {
        self.horizons.iter().copied().max().unwrap_or(0)
    }

    /// Width of one input row.
    pub fn width(&self) -> usize {
        // history - 1 differences, 2 time-of-day terms, and with seasonal inputs: a mask, the
        // origin against its seasonal value, and one seasonal change per horizon.
        (self.history - 1)
            + 2
            + if self.seasonal {
                2 + self.horizons.len()
            } else {
                0
            }
    }

    /// Steps of history a stream must keep to build a window and every reference.
    pub fn needed(&self) -> usize {
        let seasonal = self.season + self.seasonal_smooth + 1;
        self.history.max(self.linear_points).max(seasonal)
    }

    /// Checks sizes; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.step_ms <= 0 {
            return Err(format!("step_ms must be > 0, got {}", self.step_ms));
        }
        if self.history < 2 {
            return Err(format!("history must be >= 2 steps, got {}", self.history));
        }
        if self.horizons.is_empty() || self.horizons.contains(&0) {
            return Err(format!(
                "horizons must be non-empty and >= 1 step, got {:?}",
                self.horizons
            ));
        }
        if self.horizons.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("horizons must ascend, got {:?}", self.horizons));
        }
        if self.season < self.max_horizon() + self.seasonal_smooth {
            return Err(format!(
                "season ({} steps) must cover the largest horizon plus the smoothing ({} steps)",
                self.season,
                self.max_horizon() + self.seasonal_smooth
            ));
        }
        if self.linear_points < 2 {
            return Err(format!(
                "linear_points must be >= 2, got {}",
                self.linear_points
            ));
        }
        Ok(())
    }

    /// Mean of `hist` around the point `back` steps before the origin, ±`seasonal_smooth`
    /// (never past the origin); `None` if any of it is missing or out of range.
    fn seasonal_point(&self, hist: &[f64], back: usize) -> Option<f64> {
        let n = hist.len();
        let w = self.seasonal_smooth;
        if back < w || back + w >= n {
            return None;
        }
        let centre = n - 1 - back;
        let slice = &hist[centre - w..=centre + w];
        if slice.iter().any(|v| !v.is_finite()) {
            return None;
        }
        Some(slice.iter().sum::<f64>() / slice.len() as f64)
    }

    /// Appends the input row for the origin at the end of `hist` (time `origin_ms`, the
    /// origin step's start) to `out`; `None` (nothing appended) when the recent history is
    /// incomplete.
    pub fn window(&self, hist: &[f64], origin_ms: i64, out: &mut Vec<f32>) -> Option<Window> {
        let n = hist.len();
        if n < self.history {
            return None;
        }
        let recent = &hist[n - self.history..];
        if recent.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let last = recent[self.history - 1];
        let mean_abs_diff =
            recent.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (self.history - 1) as f64;
        let level = recent.iter().map(|v| v.abs()).sum::<f64>() / self.history as f64;
        let mut scale = mean_abs_diff + 1e-3 * level;
        if scale <= 1e-12 || !scale.is_finite() {
            scale = 1.0;
        }
        let z = |v: f64| (((v - last) / scale).clamp(-CLIP, CLIP) * INPUT_GAIN) as f32;
        out.extend(recent[..self.history - 1].iter().map(|&v| z(v)));
        let season_ms = self.season as f64 * self.step_ms as f64;
        let phase = (origin_ms as f64).rem_euclid(season_ms) / season_ms;
        let angle = std::f64::consts::TAU * phase;
        out.push(angle.sin() as f32);
        out.push(angle.cos() as f32);
        let mut seasonal = false;
        if self.seasonal {
            let base = self.seasonal_point(hist, self.season);
            let ahead: Option<Vec<f64>> = base.and_then(|_| {
                self.horizons
                    .iter()
                    .map(|&h| self.seasonal_point(hist, self.season - h))
                    .collect()
            });
            match (base, ahead) {
                (Some(b), Some(ahead)) => {
                    seasonal = true;
                    out.push(1.0);
                    out.push(z(b));
                    out.extend(
                        ahead
                            .iter()
                            .map(|&a| (((a - b) / scale).clamp(-CLIP, CLIP) * INPUT_GAIN) as f32),
                    );
                }
                _ => out.extend(std::iter::repeat_n(0.0, 2 + self.horizons.len())),
            }
        }
        Some(Window {
            last,
            scale,
            seasonal,
        })
    }

    /// The training target for horizon `h`: the change from the origin in scale units.
    pub fn target(&self, w: &Window, future: f64) -> f32 {
        ((future - w.last) / w.scale).clamp(-CLIP, CLIP) as f32
    }
}

/// The naive references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// `y[t + h] = y[t]`.
    LastValue,
    /// `y[t + h] = y[t + h - season]`: the same time one season (a day) earlier.
    SeasonalNaive,
    /// Prometheus' `predict_linear` over the last hour: the least-squares line through the
    /// last `linear_points` steps, read at `t + h`.
    PredictLinear,
}

impl Baseline {
    /// All references, in table order.
    pub const ALL: [Baseline; 3] = [
        Baseline::LastValue,
        Baseline::SeasonalNaive,
        Baseline::PredictLinear,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Baseline::LastValue => "last_value",
            Baseline::SeasonalNaive => "seasonal_naive",
            Baseline::PredictLinear => "predict_linear",
        }
    }

    /// The point forecast `h` steps after the origin at the end of `hist`; `None` when the
    /// history it needs is missing.
    pub fn point(self, spec: &FeatureSpec, hist: &[f64], h: usize) -> Option<f64> {
        let n = hist.len();
        let v = match self {
            Baseline::LastValue => *hist.last()?,
            Baseline::SeasonalNaive => {
                let back = spec.season.checked_sub(h)?;
                *hist.get(n.checked_sub(1 + back)?)?
            }
            Baseline::PredictLinear => {
                let k = spec.linear_points;
                let pts = hist.get(n.checked_sub(k)?..)?;
                // x = 0 at the origin, so the intercept is the line's value now.
                let xs = (0..k).map(|i| i as f64 - (k - 1) as f64);
                let mx = xs.clone().sum::<f64>() / k as f64;
                let my = pts.iter().sum::<f64>() / k as f64;
                let (mut sxy, mut sxx) = (0.0, 0.0);
                for (x, &y) in xs.zip(pts) {
                    sxy += (x - mx) * (y - my);
                    sxx += (x - mx) * (x - mx);
                }
                let slope = sxy / sxx;
                my + slope * (h as f64 - mx)
            }
        };
        v.is_finite().then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FeatureSpec {
        FeatureSpec {
            step_ms: 60_000,
            history: 4,
            horizons: vec![1, 3],
            season: 10,
            seasonal: true,
            seasonal_smooth: 1,
            linear_points: 3,
        }
    }

    #[test]
    fn references_read_the_right_steps() {
        let s = spec();
        let hist: Vec<f64> = (0..20).map(|i| i as f64 * 2.0).collect();
        assert_eq!(Baseline::LastValue.point(&s, &hist, 3), Some(38.0));
        // t = 19, h = 3: y[12] = 24.
        assert_eq!(Baseline::SeasonalNaive.point(&s, &hist, 3), Some(24.0));
        // A line is extrapolated exactly: y[22] = 44.
        let lin = Baseline::PredictLinear.point(&s, &hist, 3).unwrap();
        assert!((lin - 44.0).abs() < 1e-9, "{lin}");
        assert_eq!(Baseline::SeasonalNaive.point(&s, &hist[..5], 1), None);
    }

    #[test]
    fn window_masks_seasonal_inputs_until_a_season_is_there() {
        let s = spec();
        let hist: Vec<f64> = (0..20).map(|i| (i as f64).sin() + 5.0).collect();
        let mut row = Vec::new();
        let w = s.window(&hist[..6], 0, &mut row).unwrap();
        assert!(!w.seasonal);
        assert_eq!(row.len(), s.width());
        row.clear();
        let w = s.window(&hist, 0, &mut row).unwrap();
        assert!(w.seasonal);
        assert_eq!(row.len(), s.width());
        assert!(s.window(&hist[..3], 0, &mut row).is_none());
    }
}
