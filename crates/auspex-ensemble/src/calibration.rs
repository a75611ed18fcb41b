//! Probability calibration fitted on held-out (validation) scores: Platt scaling and isotonic
//! regression (pool-adjacent-violators).
//!
//! Both map a raw score to a probability through `fit(scores, labels)` / `apply(score)` and are
//! serialisable. Platt is a two-parameter sigmoid on the score as given — pass logits, not
//! probabilities, when the score is a probability ([`crate::logit`]) — and is the safer choice
//! with few positives; isotonic is any monotone map and needs more data. A NaN score maps to
//! NaN. This module does not choose which scores to fit on: use out-of-fold or validation
//! scores, never the scores of the rows the model was trained on.

use serde::{Deserialize, Serialize};

use crate::data::{check_finite, check_labels, sigmoid};
use crate::error::{Error, Result};

/// Which calibration to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// Leave scores as they are (they must already be probabilities).
    None,
    /// Two-parameter sigmoid.
    #[default]
    Platt,
    /// Monotone step-linear map.
    Isotonic,
}

/// Platt scaling: `p = σ(a · score + b)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    /// Slope.
    pub a: f64,
    /// Offset.
    pub b: f64,
}

impl Platt {
    /// Fits `a`, `b` by Newton's method on log-loss against Platt's smoothed targets
    /// (`(n₊+1)/(n₊+2)` and `1/(n₋+2)`), which keeps the fit finite on separable scores.
    pub fn fit(scores: &[f64], labels: &[u8]) -> Result<Self> {
        check_labels(labels, scores.len())?;
        check_finite(scores, labels.len(), "calibration scores")?;
        if scores.is_empty() {
            return Err(Error::Empty("platt"));
        }
        let n_pos = labels.iter().filter(|y| **y == 1).count() as f64;
        let n_neg = labels.len() as f64 - n_pos;
        let t_pos = (n_pos + 1.0) / (n_pos + 2.0);
        let t_neg = 1.0 / (n_neg + 2.0);
        let targets: Vec<f64> = labels
            .iter()
            .map(|y| if *y == 1 { t_pos } else { t_neg })
            .collect();
        let loss = |a: f64, b: f64| -> f64 {
            scores
                .iter()
                .zip(&targets)
                .map(|(s, t)| crate::data::logloss_from_logit(a * s + b, *t))
                .sum()
        };
        let (mut a, mut b) = (0.0, ((n_pos + 1.0) / (n_neg + 1.0)).ln());
        let mut f = loss(a, b);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-12, 0.0, 1e-12);
            for (s, t) in scores.iter().zip(&targets) {
                let p = sigmoid(a * s + b);
                let d = p - t;
                let h = p * (1.0 - p);
                ga += d * s;
                gb += d;
                haa += h * s * s;
                hab += h * s;
                hbb += h;
            }
            if ga.abs().max(gb.abs()) < 1e-9 * scores.len() as f64 {
                break;
            }
            let det = haa * hbb - hab * hab;
            let (da, db) = if det > 1e-18 {
                ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det)
            } else {
                (ga, gb)
            };
            let mut t = 1.0;
            let mut improved = false;
            while t > 1e-10 {
                let (na, nb) = (a - t * da, b - t * db);
                let nf = loss(na, nb);
                if nf < f {
                    (a, b, f) = (na, nb, nf);
                    improved = true;
                    break;
                }
                t *= 0.5;
            }
            if !improved {
                break;
            }
        }
        Ok(Self { a, b })
    }

    /// The calibrated probability of `score`.
    pub fn apply(&self, score: f64) -> f64 {
        sigmoid(self.a * score + self.b)
    }
}

/// Isotonic regression: a non-decreasing map from score to probability, linear between the
/// ends of the pooled blocks and constant beyond the fitted range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Isotonic {
    /// Knot scores, non-decreasing.
    x: Vec<f64>,
    /// Knot probabilities, non-decreasing, in `[0, 1]`.
    y: Vec<f64>,
}

impl Isotonic {
    /// Fits by pool-adjacent-violators on scores sorted ascending (equal scores pooled first).
    pub fn fit(scores: &[f64], labels: &[u8]) -> Result<Self> {
        check_labels(labels, scores.len())?;
        check_finite(scores, labels.len(), "calibration scores")?;
        if scores.is_empty() {
            return Err(Error::Empty("isotonic"));
        }
        let mut idx: Vec<usize> = (0..scores.len()).collect();
        idx.sort_by(|&i, &j| scores[i].total_cmp(&scores[j]));
        // Blocks: (sum of labels, weight, min score, max score).
        let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
        for &i in &idx {
            let (s, y) = (scores[i], f64::from(labels[i]));
            match blocks.last_mut() {
                Some(last) if last.3 == s => {
                    last.0 += y;
                    last.1 += 1.0;
                }
                _ => blocks.push((y, 1.0, s, s)),
            }
            // Merge backwards while the mean decreases.
            while blocks.len() >= 2 {
                let n = blocks.len();
                let (b, a) = (blocks[n - 1], blocks[n - 2]);
                if a.0 / a.1 >= b.0 / b.1 {
                    blocks[n - 2] = (a.0 + b.0, a.1 + b.1, a.2, b.3);
                    blocks.pop();
                } else {
                    break;
                }
            }
        }
        let mut x = Vec::with_capacity(blocks.len() * 2);
        let mut y = Vec::with_capacity(blocks.len() * 2);
        for (sum, w, lo, hi) in blocks {
            let v = sum / w;
            x.push(lo);
            y.push(v);
            if hi > lo {
                x.push(hi);
                y.push(v);
            }
        }
        Ok(Self { x, y })
    }

    /// The calibrated probability of `score`.
    pub fn apply(&self, score: f64) -> f64 {
        if score.is_nan() {
            return f64::NAN;
        }
        let n = self.x.len();
        if score <= self.x[0] {
            return self.y[0];
        }
        if score >= self.x[n - 1] {
            return self.y[n - 1];
        }
        // First knot strictly above the score; x[j-1] <= score < x[j].
        let j = self.x.partition_point(|&k| k <= score);
        let (x0, x1, y0, y1) = (self.x[j - 1], self.x[j], self.y[j - 1], self.y[j]);
        if x1 > x0 {
            y0 + (y1 - y0) * (score - x0) / (x1 - x0)
        } else {
            y1
        }
    }

    /// Number of knots.
    pub fn knots(&self) -> usize {
        self.x.len()
    }
}

/// A fitted calibration of any method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Calibrator {
    /// The identity, clamped to `[0, 1]`.
    None,
    /// Platt scaling.
    Platt(Platt),
    /// Isotonic regression.
    Isotonic(Isotonic),
}

impl Calibrator {
    /// Fits the given method on validation scores and labels.
    pub fn fit(method: CalibrationMethod, scores: &[f64], labels: &[u8]) -> Result<Self> {
        Ok(match method {
            CalibrationMethod::None => Self::None,
            CalibrationMethod::Platt => Self::Platt(Platt::fit(scores, labels)?),
            CalibrationMethod::Isotonic => Self::Isotonic(Isotonic::fit(scores, labels)?),
        })
    }

    /// The calibrated probability of `score`.
    pub fn apply(&self, score: f64) -> f64 {
        match self {
            Self::None => score.clamp(0.0, 1.0),
            Self::Platt(p) => p.apply(score),
            Self::Isotonic(i) => i.apply(score),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::logit;
    use crate::metrics::{expected_calibration_error, log_loss};
    use proptest::prelude::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// True probability q; the model reports an overconfident, shifted score logit(q)·3 + 1.
    fn miscalibrated(n: usize, seed: u64) -> (Vec<f64>, Vec<u8>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut s = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let q: f64 = rng.random_range(0.02..0.98);
            y.push(u8::from(rng.random::<f64>() < q));
            s.push(3.0 * logit(q) + 1.0);
        }
        (s, y)
    }

    #[test]
    fn platt_and_isotonic_reduce_log_loss_and_ece() {
        let (vs, vy) = miscalibrated(5000, 1);
        let (ts, ty) = miscalibrated(5000, 2);
        let raw: Vec<f64> = ts.iter().map(|s| sigmoid(*s)).collect();
        let platt = Platt::fit(&vs, &vy).unwrap();
        let iso = Isotonic::fit(&vs, &vy).unwrap();
        let pp: Vec<f64> = ts.iter().map(|s| platt.apply(*s)).collect();
        let pi: Vec<f64> = ts.iter().map(|s| iso.apply(*s)).collect();
        let (l_raw, l_p, l_i) = (
            log_loss(&raw, &ty, None),
            log_loss(&pp, &ty, None),
            log_loss(&pi, &ty, None),
        );
        let (e_raw, e_p, e_i) = (
            expected_calibration_error(&raw, &ty, 10),
            expected_calibration_error(&pp, &ty, 10),
            expected_calibration_error(&pi, &ty, 10),
        );
        println!(
            "calibration log-loss raw {l_raw:.4} platt {l_p:.4} isotonic {l_i:.4}; \
             ECE raw {e_raw:.4} platt {e_p:.4} isotonic {e_i:.4}; platt a={:.3} b={:.3}",
            platt.a, platt.b
        );
        // The true map is σ((s − 1)/3): Platt should find a ≈ 1/3, b ≈ −1/3.
        assert!((platt.a - 1.0 / 3.0).abs() < 0.05 && (platt.b + 1.0 / 3.0).abs() < 0.1);
        assert!(l_p < l_raw - 0.05 && l_i < l_raw - 0.05);
        assert!(e_p < e_raw / 2.0 && e_i < e_raw / 2.0);
        let c = Calibrator::fit(CalibrationMethod::Isotonic, &vs, &vy).unwrap();
        let back: Calibrator = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    proptest! {
        #[test]
        fn isotonic_is_monotone_and_in_unit_interval(
            data in prop::collection::vec((-50.0f64..50.0, 0u8..2), 1..200),
            probes in prop::collection::vec(-100.0f64..100.0, 1..50),
        ) {
            let (s, y): (Vec<f64>, Vec<u8>) = data.into_iter().unzip();
            let iso = Isotonic::fit(&s, &y).unwrap();
            let mut probes = probes;
            probes.sort_by(f64::total_cmp);
            let out: Vec<f64> = probes.iter().map(|p| iso.apply(*p)).collect();
            for w in out.windows(2) {
                prop_assert!(w[0] <= w[1] + 1e-12, "{:?}", out);
            }
            for p in &out {
                prop_assert!((0.0..=1.0).contains(p));
            }
        }

        #[test]
        fn platt_output_is_a_probability(
            data in prop::collection::vec((-50.0f64..50.0, 0u8..2), 1..100),
            probe in -1e6f64..1e6,
        ) {
            let (s, y): (Vec<f64>, Vec<u8>) = data.into_iter().unzip();
            let p = Platt::fit(&s, &y).unwrap();
            let v = p.apply(probe);
            prop_assert!(p.a.is_finite() && p.b.is_finite());
            prop_assert!((0.0..=1.0).contains(&v));
        }
    }
}
