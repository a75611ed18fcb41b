//! L2-regularised logistic regression with sample and class weights, fitted by Newton's method
//! (iteratively reweighted least squares) with a backtracking line search.
//!
//! Written here rather than taken from `linfa-logistic`, which has L2 but neither class nor
//! sample weights; those are how we balance rare incidents. Features are standardised inside
//! the model (a [`Standardizer`] fitted on the training rows, also exposed), so the penalty
//! treats every feature alike and coefficients are comparable for explanations. Newton costs
//! `O(n d² + d³)` per step: right for the tens of features of a branch score table, not for
//! thousands. NaN or infinite features are refused (impute upstream).

use serde::{Deserialize, Serialize};

use crate::data::{Features, check_labels, logloss_from_logit, sigmoid};
use crate::error::{Error, Result};
use crate::gbdt::{Contribution, top_k};
use crate::weights::{ClassWeight, sample_weights};

const FORMAT: &str = "auspex-logistic/1";

/// Per-column mean and standard deviation; constant columns get a scale of 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Column means.
    pub mean: Vec<f64>,
    /// Column standard deviations (1 where a column is constant).
    pub scale: Vec<f64>,
}

impl Standardizer {
    /// Fits means and scales on every row of `x` (NaNs propagate: check upstream).
    pub fn fit(x: Features<'_>) -> Self {
        let (n, d) = (x.rows(), x.cols());
        let mut mean = vec![0.0; d];
        let mut m2 = vec![0.0; d];
        // Welford, so large offsets (timestamps, byte counts) do not lose precision.
        for r in 0..n {
            for c in 0..d {
                let v = x.get(r, c);
                let delta = v - mean[c];
                mean[c] += delta / (r + 1) as f64;
                m2[c] += delta * (v - mean[c]);
            }
        }
        let scale = m2
            .iter()
            .map(|s| {
                let sd = if n > 1 { (s / n as f64).sqrt() } else { 0.0 };
                if sd > 1e-12 { sd } else { 1.0 }
            })
            .collect();
        Self { mean, scale }
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.mean.len()
    }

    /// Standardises one row in place.
    pub fn transform_row(&self, row: &mut [f64]) {
        for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
            *v = (*v - m) / s;
        }
    }

    /// Standardised copy of `x`, row-major.
    pub fn transform(&self, x: Features<'_>) -> Vec<f64> {
        let mut out = x.to_row_major();
        for row in out.chunks_mut(self.cols()) {
            self.transform_row(row);
        }
        out
    }
}

/// Hyper-parameters of the logistic model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogisticConfig {
    /// L2 penalty on the (standardised) coefficients, relative to the mean weighted log-loss;
    /// the intercept is not penalised.
    pub l2: f64,
    /// Maximum Newton steps.
    pub max_iter: usize,
    /// Stop when the largest gradient component falls below this.
    pub tol: f64,
    /// How to weight the classes (on top of caller sample weights).
    pub class_weight: ClassWeight,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        Self {
            l2: 1e-3,
            max_iter: 100,
            tol: 1e-8,
            class_weight: ClassWeight::Balanced,
        }
    }
}

/// A fitted logistic regression: `p = σ(intercept + Σ coef_j · (x_j − mean_j) / scale_j)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogisticRegression {
    format: String,
    config: LogisticConfig,
    standardizer: Standardizer,
    /// Intercept (logit units).
    intercept: f64,
    /// Coefficients on standardised features.
    coef: Vec<f64>,
    /// Newton steps taken.
    iterations: usize,
}

impl LogisticRegression {
    /// Fits on `x` / `labels` with optional sample weights.
    pub fn fit(
        config: &LogisticConfig,
        x: Features<'_>,
        labels: &[u8],
        weights: Option<&[f64]>,
    ) -> Result<Self> {
        if !(config.l2.is_finite() && config.l2 >= 0.0) {
            return Err(Error::InvalidParameter {
                name: "l2",
                reason: format!("must be finite and >= 0, got {}", config.l2),
            });
        }
        check_labels(labels, x.rows())?;
        x.require_finite("logistic features")?;
        let w = sample_weights(labels, weights, config.class_weight)?;
        let wsum: f64 = w.iter().sum();
        if x.rows() == 0 || wsum <= 0.0 {
            return Err(Error::Empty("logistic"));
        }
        if labels.iter().all(|y| *y == labels[0]) {
            return Err(Error::SingleClass("logistic"));
        }
        let standardizer = Standardizer::fit(x);
        let z = standardizer.transform(x);
        let (n, d) = (x.rows(), x.cols());
        let p = d + 1; // parameter 0 is the intercept
        let y: Vec<f64> = labels.iter().map(|v| f64::from(*v)).collect();
        let lambda = config.l2;

        let objective = |beta: &[f64]| -> f64 {
            let mut loss = 0.0;
            for i in 0..n {
                let row = &z[i * d..(i + 1) * d];
                let eta = beta[0] + dot(&beta[1..], row);
                loss += w[i] * logloss_from_logit(eta, y[i]);
            }
            loss / wsum + 0.5 * lambda * beta[1..].iter().map(|b| b * b).sum::<f64>()
        };

        // Start from the weighted base rate, coefficients 0.
        let pos: f64 = w.iter().zip(&y).map(|(w, y)| w * y).sum();
        let mut beta = vec![0.0; p];
        beta[0] = crate::data::logit(pos / wsum);
        let mut f = objective(&beta);
        let mut iterations = 0;
        for _ in 0..config.max_iter {
            iterations += 1;
            let mut grad = vec![0.0; p];
            let mut hess = vec![0.0; p * p];
            let mut xi = vec![0.0; p];
            xi[0] = 1.0;
            for i in 0..n {
                xi[1..].copy_from_slice(&z[i * d..(i + 1) * d]);
                let mu = sigmoid(dot(&beta, &xi));
                let g = w[i] * (mu - y[i]) / wsum;
                let h = w[i] * mu * (1.0 - mu) / wsum;
                for a in 0..p {
                    grad[a] += g * xi[a];
                    let hxa = h * xi[a];
                    // Upper triangle only; mirrored below.
                    for b in a..p {
                        hess[a * p + b] += hxa * xi[b];
                    }
                }
            }
            for a in 1..p {
                grad[a] += lambda * beta[a];
                hess[a * p + a] += lambda;
            }
            for a in 0..p {
                // A tiny ridge keeps the system positive definite on separable data with l2 = 0.
                hess[a * p + a] += 1e-10;
                for b in 0..a {
                    hess[a * p + b] = hess[b * p + a];
                }
            }
            let gmax = grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
            if gmax < config.tol {
                break;
            }
            let step = cholesky_solve(&mut hess, &grad, p).unwrap_or_else(|| grad.clone());
            // Armijo backtracking along the Newton direction.
            let slope: f64 = -dot(&grad, &step);
            let mut t = 1.0;
            let mut accepted = false;
            while t > 1e-10 {
                let trial: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b - t * s).collect();
                let ft = objective(&trial);
                if ft <= f + 1e-4 * t * slope {
                    beta = trial;
                    f = ft;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if !accepted {
                break;
            }
        }
        Ok(Self {
            format: FORMAT.to_string(),
            config: config.clone(),
            standardizer,
            intercept: beta[0],
            coef: beta[1..].to_vec(),
            iterations,
        })
    }

    /// The configuration it was fitted with.
    pub fn config(&self) -> &LogisticConfig {
        &self.config
    }

    /// The standardiser fitted on the training rows.
    pub fn standardizer(&self) -> &Standardizer {
        &self.standardizer
    }

    /// Coefficients on standardised features (one per column).
    pub fn coefficients(&self) -> &[f64] {
        &self.coef
    }

    /// Intercept in logit units.
    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    /// Newton steps taken by the fit.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    fn check_cols(&self, x: &Features<'_>) -> Result<()> {
        if x.cols() != self.coef.len() {
            return Err(Error::Shape {
                what: "features (cols)",
                expected: self.coef.len(),
                found: x.cols(),
            });
        }
        Ok(())
    }

    /// Log-odds for each row.
    pub fn predict_logit(&self, x: Features<'_>) -> Result<Vec<f64>> {
        self.check_cols(&x)?;
        let mut row = vec![0.0; x.cols()];
        Ok((0..x.rows())
            .map(|r| {
                x.row_into(r, &mut row);
                self.standardizer.transform_row(&mut row);
                self.intercept + dot(&self.coef, &row)
            })
            .collect())
    }

    /// Probability of an incident for each row.
    pub fn predict_proba(&self, x: Features<'_>) -> Result<Vec<f64>> {
        Ok(self.predict_logit(x)?.into_iter().map(sigmoid).collect())
    }

    /// The `k` features contributing most to each row's logit (`coef_j · z_j`, relative to the
    /// training mean), largest absolute value first.
    pub fn top_contributions(&self, x: Features<'_>, k: usize) -> Result<Vec<Vec<Contribution>>> {
        self.check_cols(&x)?;
        let mut row = vec![0.0; x.cols()];
        Ok((0..x.rows())
            .map(|r| {
                x.row_into(r, &mut row);
                self.standardizer.transform_row(&mut row);
                let c: Vec<f64> = row.iter().zip(&self.coef).map(|(z, b)| z * b).collect();
                top_k(&c, k)
            })
            .collect())
    }

    /// Serialises the model as JSON bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Reads a model written by [`LogisticRegression::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        crate::data::read_tagged(bytes, FORMAT, |m: &Self| &m.format)
    }
}

#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solves `A x = b` for symmetric positive-definite `A` (`p × p`, row-major, overwritten by its
/// Cholesky factor). `None` if `A` is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], p: usize) -> Option<Vec<f64>> {
    for j in 0..p {
        let mut s = a[j * p + j];
        for k in 0..j {
            s -= a[j * p + k] * a[j * p + k];
        }
        if s <= 0.0 || !s.is_finite() {
            return None;
        }
        let l = s.sqrt();
        a[j * p + j] = l;
        for i in j + 1..p {
            let mut s = a[i * p + j];
            for k in 0..j {
                s -= a[i * p + k] * a[j * p + k];
            }
            a[i * p + j] = s / l;
        }
    }
    let mut y = vec![0.0; p];
    for i in 0..p {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * p + k] * y[k];
        }
        y[i] = s / a[i * p + i];
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        let mut s = y[i];
        for k in i + 1..p {
            s -= a[k * p + i] * x[k];
        }
        x[i] = s / a[i * p + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn gauss(rng: &mut ChaCha8Rng) -> f64 {
        // Box–Muller; enough for tests.
        let u: f64 = rng.random::<f64>().max(1e-12);
        let v: f64 = rng.random();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Logit = 2 x0 − 1.5 x1 + 0 x2, features on very different scales.
    fn linear_data(n: usize, seed: u64, pos_shift: f64) -> (Vec<f64>, Vec<u8>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = vec![0.0; n * 3];
        let mut y = vec![0; n];
        for i in 0..n {
            let (a, b, c) = (gauss(&mut rng), gauss(&mut rng), gauss(&mut rng));
            x[i * 3] = a;
            x[i * 3 + 1] = 1000.0 * b + 5e4;
            x[i * 3 + 2] = 1e-3 * c;
            let eta = 2.0 * a - 1.5 * b + pos_shift;
            y[i] = u8::from(rng.random::<f64>() < sigmoid(eta));
        }
        (x, y)
    }

    #[test]
    fn recovers_coefficients_and_ranks_well() {
        let (x, y) = linear_data(4000, 11, 0.0);
        let fx = Features::f64(&x, 3).unwrap();
        let cfg = LogisticConfig {
            class_weight: ClassWeight::None,
            l2: 0.0,
            ..LogisticConfig::default()
        };
        let m = LogisticRegression::fit(&cfg, fx, &y, None).unwrap();
        let c = m.coefficients();
        println!("logistic coef {c:?}, {} Newton steps", m.iterations());
        assert!((c[0] - 2.0).abs() < 0.25, "{c:?}");
        assert!((c[1] + 1.5).abs() < 0.25, "{c:?}");
        assert!(c[2].abs() < 0.15, "{c:?}");
        let (tx, ty) = linear_data(2000, 12, 0.0);
        let ft = Features::f64(&tx, 3).unwrap();
        let auc = roc_auc(&m.predict_proba(ft).unwrap(), &ty);
        println!("logistic AUC {auc:.4}");
        // Bayes AUC of this model is about 0.88.
        assert!(auc > 0.85, "AUC {auc}");
        let back = LogisticRegression::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(
            back.predict_logit(ft).unwrap(),
            m.predict_logit(ft).unwrap()
        );
        let top = m.top_contributions(ft, 1).unwrap();
        let noise_first = top.iter().filter(|t| t[0].feature == 2).count();
        assert!(
            noise_first * 50 < top.len(),
            "noise feature ranked first {noise_first} times"
        );
    }

    #[test]
    fn class_weights_raise_minority_recall_and_l2_shrinks() {
        let (x, y) = linear_data(4000, 13, -4.0); // about 5 % positives
        let fx = Features::f64(&x, 3).unwrap();
        let recall = |cw| {
            let cfg = LogisticConfig {
                class_weight: cw,
                ..LogisticConfig::default()
            };
            let m = LogisticRegression::fit(&cfg, fx, &y, None).unwrap();
            let p = m.predict_proba(fx).unwrap();
            let tp = p
                .iter()
                .zip(&y)
                .filter(|(p, y)| **p >= 0.5 && **y == 1)
                .count();
            tp as f64 / y.iter().filter(|y| **y == 1).count() as f64
        };
        let plain = recall(ClassWeight::None);
        let balanced = recall(ClassWeight::Balanced);
        println!("logistic recall@0.5 plain {plain:.3} balanced {balanced:.3}");
        assert!(balanced > plain + 0.3, "plain {plain} balanced {balanced}");

        let strong = LogisticConfig {
            l2: 10.0,
            ..LogisticConfig::default()
        };
        let m = LogisticRegression::fit(&strong, fx, &y, None).unwrap();
        assert!(
            m.coefficients().iter().all(|c| c.abs() < 0.2),
            "{:?}",
            m.coefficients()
        );
    }
}
