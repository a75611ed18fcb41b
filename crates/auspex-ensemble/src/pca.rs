//! PCA reconstruction error as an unsupervised anomaly score.
//!
//! On server metrics a linear model of the normal rows is a strong detector (MODELING.md: PCA
//! reconstruction is the best published no-point-adjust figure on SMD). The model standardises
//! each column on rows assumed normal, keeps the leading principal components that explain
//! `variance` of them (at most `max_components`), and scores a row by the squared norm of what
//! those components cannot reconstruct, as a robust z against the fitting rows' own errors
//! (median and inter-quartile range), through a logistic: a probability-like score that a
//! stacking meta-learner can weigh like any branch.
//!
//! The components come from subspace (block power) iteration on the covariance matrix with
//! Gram-Schmidt re-orthonormalisation: `d` is a few hundred here, so the `d × d` covariance is
//! small, and no linear-algebra crate is needed for the leading few eigenvectors.

use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{Features, sigmoid};
use crate::error::{Error, Result};

const FORMAT: &str = "auspex-pca/1";

/// Settings of [`Pca::fit`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PcaConfig {
    /// Share of the standardised variance the kept components explain.
    pub variance: f64,
    /// Components kept at most.
    pub max_components: usize,
    /// Power iterations.
    pub iterations: usize,
    /// Fitting rows at most (a seeded sample): the covariance costs `rows × d²`.
    pub max_rows: usize,
    pub seed: u64,
}

impl Default for PcaConfig {
    fn default() -> Self {
        Self {
            variance: 0.9,
            max_components: 16,
            iterations: 60,
            max_rows: 20_000,
            seed: 0,
        }
    }
}

/// A fitted PCA detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    format: String,
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// Kept components, `k × d` row-major, orthonormal.
    components: Vec<f64>,
    k: usize,
    /// Share of the standardised variance the components explain.
    explained: f64,
    /// Median and robust scale of the fitting rows' reconstruction errors.
    err_median: f64,
    err_scale: f64,
}

impl Pca {
    /// Fits on `x` (rows assumed normal; non-finite values count as the column mean).
    pub fn fit(config: &PcaConfig, x: Features<'_>) -> Result<Self> {
        let (n, d) = (x.rows(), x.cols());
        if n < 2 || d == 0 {
            return Err(Error::Empty("PCA fitting rows"));
        }
        if !(config.variance > 0.0 && config.variance <= 1.0) || config.max_components == 0 {
            return Err(Error::InvalidParameter {
                name: "pca config",
                reason: "variance in (0, 1] and max_components > 0 required".into(),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let rows: Vec<usize> = if n > config.max_rows {
            let mut r: Vec<usize> = (0..n).collect();
            for i in 0..config.max_rows {
                let j = rng.random_range(i..n);
                r.swap(i, j);
            }
            r.truncate(config.max_rows);
            r.sort_unstable();
            r
        } else {
            (0..n).collect()
        };
        // Column means and standard deviations over finite values.
        let (mut mean, mut m2, mut cnt) = (vec![0.0; d], vec![0.0; d], vec![0usize; d]);
        for &r in &rows {
            for c in 0..d {
                let v = x.get(r, c);
                if v.is_finite() {
                    cnt[c] += 1;
                    let delta = v - mean[c];
                    mean[c] += delta / cnt[c] as f64;
                    m2[c] += delta * (v - mean[c]);
                }
            }
        }
        let scale: Vec<f64> = (0..d)
            .map(|c| {
                let sd = if cnt[c] > 1 {
                    (m2[c] / cnt[c] as f64).sqrt()
                } else {
                    0.0
                };
                if sd > 1e-12 { sd } else { 1.0 }
            })
            .collect();
        let z = |r: usize, out: &mut [f64]| {
            for c in 0..d {
                let v = x.get(r, c);
                out[c] = if v.is_finite() {
                    (v - mean[c]) / scale[c]
                } else {
                    0.0
                };
            }
        };
        // Covariance of the standardised rows.
        let mut cov = vec![0.0; d * d];
        let mut row = vec![0.0; d];
        for &r in &rows {
            z(r, &mut row);
            for i in 0..d {
                let ri = row[i];
                if ri == 0.0 {
                    continue;
                }
                for (j, cj) in cov[i * d..(i + 1) * d].iter_mut().enumerate() {
                    *cj += ri * row[j];
                }
            }
        }
        let m = rows.len() as f64;
        cov.iter_mut().for_each(|v| *v /= m);
        let total: f64 = (0..d).map(|i| cov[i * d + i]).sum::<f64>().max(1e-12);

        // Subspace iteration for the leading `b` eigenvectors.
        let b = config.max_components.min(d);
        let mut q: Vec<f64> = (0..b * d).map(|_| rng.random::<f64>() - 0.5).collect();
        orthonormalise(&mut q, b, d);
        let mut next = vec![0.0; b * d];
        for _ in 0..config.iterations {
            for v in 0..b {
                let qv = &q[v * d..(v + 1) * d];
                for i in 0..d {
                    next[v * d + i] = cov[i * d..(i + 1) * d]
                        .iter()
                        .zip(qv)
                        .map(|(a, b)| a * b)
                        .sum();
                }
            }
            std::mem::swap(&mut q, &mut next);
            orthonormalise(&mut q, b, d);
        }
        // Eigenvalues (Rayleigh quotients), largest first, and how many reach `variance`.
        let mut eig: Vec<(f64, usize)> = (0..b)
            .map(|v| {
                let qv = &q[v * d..(v + 1) * d];
                let lambda: f64 = (0..d)
                    .map(|i| {
                        qv[i]
                            * cov[i * d..(i + 1) * d]
                                .iter()
                                .zip(qv)
                                .map(|(a, b)| a * b)
                                .sum::<f64>()
                    })
                    .sum();
                (lambda, v)
            })
            .collect();
        eig.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut k, mut explained) = (0, 0.0);
        while k < eig.len() && explained < config.variance * total {
            explained += eig[k].0.max(0.0);
            k += 1;
        }
        let components: Vec<f64> = eig[..k]
            .iter()
            .flat_map(|&(_, v)| q[v * d..(v + 1) * d].to_vec())
            .collect();
        let mut model = Pca {
            format: FORMAT.into(),
            mean,
            scale,
            components,
            k,
            explained: explained / total,
            err_median: 0.0,
            err_scale: 1.0,
        };
        let mut errs: Vec<f64> = rows.iter().map(|&r| model.error_of(&x, r)).collect();
        errs.sort_by(f64::total_cmp);
        let q = |p: f64| errs[((errs.len() - 1) as f64 * p).round() as usize];
        model.err_median = q(0.5);
        model.err_scale = ((q(0.75) - q(0.25)) / 1.349).max(1e-9 * (1.0 + model.err_median));
        Ok(model)
    }

    /// Squared reconstruction error of row `r` of `x`, standardised.
    fn error_of(&self, x: &Features<'_>, r: usize) -> f64 {
        let d = self.mean.len();
        let z: Vec<f64> = (0..d)
            .map(|c| {
                let v = x.get(r, c);
                if v.is_finite() {
                    (v - self.mean[c]) / self.scale[c]
                } else {
                    0.0
                }
            })
            .collect();
        let norm2: f64 = z.iter().map(|v| v * v).sum();
        let proj2: f64 = self
            .components
            .chunks_exact(d)
            .map(|pc| {
                let t: f64 = pc.iter().zip(&z).map(|(a, b)| a * b).sum();
                t * t
            })
            .sum();
        (norm2 - proj2).max(0.0)
    }

    /// Each row's score: the logistic of its reconstruction error as a robust z against the
    /// fitting rows' errors.
    pub fn predict_proba(&self, x: Features<'_>) -> Result<Vec<f64>> {
        if x.cols() != self.mean.len() {
            return Err(Error::Shape {
                what: "PCA features (cols)",
                expected: self.mean.len(),
                found: x.cols(),
            });
        }
        Ok((0..x.rows())
            .map(|r| sigmoid((self.error_of(&x, r) - self.err_median) / self.err_scale))
            .collect())
    }

    /// Components kept.
    pub fn components(&self) -> usize {
        self.k
    }

    /// Share of the fitting rows' standardised variance the components explain.
    pub fn explained(&self) -> f64 {
        self.explained
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        crate::data::read_tagged(bytes, FORMAT, |m: &Self| &m.format)
    }
}

/// Modified Gram-Schmidt on the `b` rows of `q` (`b × d`).
fn orthonormalise(q: &mut [f64], b: usize, d: usize) {
    for v in 0..b {
        for u in 0..v {
            let dot: f64 = (0..d).map(|i| q[v * d + i] * q[u * d + i]).sum();
            for i in 0..d {
                q[v * d + i] -= dot * q[u * d + i];
            }
        }
        let norm = (0..d).map(|i| q[v * d + i].powi(2)).sum::<f64>().sqrt();
        if norm > 1e-300 {
            q[v * d..(v + 1) * d].iter_mut().for_each(|x| *x /= norm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows on a 2-d plane in 6-d (plus a little noise); rows off the plane score high.
    #[test]
    fn rows_off_the_normal_subspace_score_high_and_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let basis = [
            [1.0, 2.0, 0.0, -1.0, 0.5, 0.0],
            [0.0, 1.0, 1.0, 1.0, -2.0, 3.0],
        ];
        let mut row = |off: f64| -> Vec<f64> {
            let (a, b): (f64, f64) = (rng.random::<f64>() * 4.0, rng.random::<f64>() * 4.0);
            (0..6)
                .map(|c| {
                    a * basis[0][c]
                        + b * basis[1][c]
                        + 0.01 * (rng.random::<f64>() - 0.5)
                        + if c == 2 { off } else { 0.0 }
                })
                .collect()
        };
        let x: Vec<f64> = (0..500).flat_map(|_| row(0.0)).collect();
        let pca = Pca::fit(&PcaConfig::default(), Features::f64(&x, 6).unwrap()).unwrap();
        assert_eq!(pca.components(), 2, "two directions explain the plane");
        assert!(pca.explained() > 0.9);
        let normal: Vec<f64> = (0..50).flat_map(|_| row(0.0)).collect();
        let odd: Vec<f64> = (0..50).flat_map(|_| row(3.0)).collect();
        let p = |v: &[f64]| pca.predict_proba(Features::f64(v, 6).unwrap()).unwrap();
        let (pn, po) = (p(&normal), p(&odd));
        let max_normal = pn.iter().copied().fold(0.0, f64::max);
        let min_odd = po.iter().copied().fold(1.0, f64::min);
        assert!(min_odd > max_normal, "odd {min_odd} vs normal {max_normal}");
        assert!(min_odd > 0.99);
        let back = Pca::from_bytes(&pca.to_bytes().unwrap()).unwrap();
        assert_eq!(back, pca);
        assert!(
            pca.predict_proba(Features::f64(&normal, 5).unwrap())
                .is_err()
        );
    }
}
