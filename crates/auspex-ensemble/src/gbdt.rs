//! Gradient-boosted trees for one incident kind: a thin wrapper over
//! `forust_ml::GradientBooster` with the log-loss objective.
//!
//! It owns the defaults for small, imbalanced data (shallow trees, a small learning rate,
//! early stopping on a validation set when one is given, class balancing through sample
//! weights), conversion from our row-major [`Features`] to forust's column-major matrix, and
//! a versioned JSON envelope. NaN features are allowed: forust routes them as missing.
//! It does not choose thresholds or calibrate (see [`crate::threshold`], [`crate::calibration`]).

use forust_ml::gradientbooster::{ContributionsMethod, EvaluationData};
use forust_ml::metric::Metric;
use forust_ml::objective::ObjectiveType;
use std::sync::OnceLock;

use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

use crate::data::{Features, check_labels, sigmoid};
use crate::error::{Error, Result};
use crate::forest::Forest;
use crate::weights::{ClassWeight, sample_weights};

const FORMAT: &str = "auspex-gbdt/1";

/// Hyper-parameters of the boosted trees; saved inside the model so a model describes itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GbdtConfig {
    /// Maximum number of trees (the budget when there is no validation set).
    pub iterations: usize,
    /// Shrinkage applied to each tree's leaf weights.
    pub learning_rate: f32,
    /// Maximum depth of a tree; shallow trees generalise better on small data.
    pub max_depth: usize,
    /// L2 penalty on leaf weights.
    pub l2: f32,
    /// Minimum hessian sum in a leaf (with log-loss, about `p(1-p)` times the rows' weight).
    pub min_leaf_weight: f32,
    /// Minimum loss reduction to split a node.
    pub gamma: f32,
    /// Histogram bins per feature.
    pub nbins: u16,
    /// Fraction of rows sampled per tree (1.0 = all rows, deterministic).
    pub subsample: f32,
    /// Fraction of features sampled per tree.
    pub colsample_bytree: f64,
    /// Stop after this many trees without improving the validation log-loss; only used when
    /// `fit` gets a validation set.
    pub early_stopping_rounds: usize,
    /// How to weight the classes (on top of caller sample weights).
    pub class_weight: ClassWeight,
    /// Seed for row and column sampling.
    pub seed: u64,
    /// Use forust's rayon parallelism (off by default: small models, shared cores).
    pub parallel: bool,
}

impl Default for GbdtConfig {
    fn default() -> Self {
        Self {
            iterations: 300,
            learning_rate: 0.05,
            max_depth: 4,
            l2: 1.0,
            min_leaf_weight: 1.0,
            gamma: 0.0,
            nbins: 128,
            subsample: 1.0,
            colsample_bytree: 1.0,
            early_stopping_rounds: 30,
            class_weight: ClassWeight::Balanced,
            seed: 0,
            parallel: false,
        }
    }
}

impl GbdtConfig {
    fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(Error::InvalidParameter {
                name,
                reason: reason.to_string(),
            })
        };
        if self.iterations == 0 {
            return bad("iterations", "must be > 0");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate", "must be in (0, 1]");
        }
        if self.max_depth == 0 {
            return bad("max_depth", "must be > 0");
        }
        if !(self.subsample > 0.0 && self.subsample <= 1.0) {
            return bad("subsample", "must be in (0, 1]");
        }
        if !(self.colsample_bytree > 0.0 && self.colsample_bytree <= 1.0) {
            return bad("colsample_bytree", "must be in (0, 1]");
        }
        if self.nbins < 2 {
            return bad("nbins", "must be >= 2");
        }
        Ok(())
    }

    fn booster(&self) -> GradientBooster {
        let sample_method = if self.subsample < 1.0 {
            forust_ml::sampler::SampleMethod::Random
        } else {
            forust_ml::sampler::SampleMethod::None
        };
        GradientBooster::default()
            .set_objective_type(ObjectiveType::LogLoss)
            .set_iterations(self.iterations)
            .set_learning_rate(self.learning_rate)
            .set_max_depth(self.max_depth)
            .set_l2(self.l2)
            .set_min_leaf_weight(self.min_leaf_weight)
            .set_gamma(self.gamma)
            .set_nbins(self.nbins)
            .set_subsample(self.subsample)
            .set_sample_method(sample_method)
            .set_colsample_bytree(self.colsample_bytree)
            .set_seed(self.seed)
            .set_parallel(self.parallel)
            .set_initialize_base_score(true)
            .set_evaluation_metric(Some(Metric::LogLoss))
    }
}

/// A fitted boosted-tree classifier.
#[derive(Serialize, Deserialize)]
pub struct Gbdt {
    format: String,
    config: GbdtConfig,
    n_features: usize,
    booster: GradientBooster,
    /// The prediction trees laid out flat for serving, built on first use.
    #[serde(skip)]
    forest: OnceLock<Forest>,
}

impl std::fmt::Debug for Gbdt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gbdt")
            .field("config", &self.config)
            .field("n_features", &self.n_features)
            .field("trees", &self.n_trees())
            .finish()
    }
}

/// One feature's share of a row's log-odds, for explaining an alert.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// Feature (column) index.
    pub feature: usize,
    /// Contribution to the logit (positive pushes towards an incident).
    pub value: f64,
}

impl Gbdt {
    /// Fits on `x` / `labels` with optional sample weights; with `valid`, stops early on the
    /// validation log-loss (weighted with the same class weights) and keeps the best
    /// iteration's trees.
    pub fn fit(
        config: &GbdtConfig,
        x: Features<'_>,
        labels: &[u8],
        weights: Option<&[f64]>,
        valid: Option<(Features<'_>, &[u8])>,
    ) -> Result<Self> {
        config.validate()?;
        check_labels(labels, x.rows())?;
        if x.rows() == 0 {
            return Err(Error::Empty("gbdt"));
        }
        if labels.iter().all(|y| *y == labels[0]) {
            return Err(Error::SingleClass("gbdt"));
        }
        let w = sample_weights(labels, weights, config.class_weight)?;
        let y: Vec<f64> = labels.iter().map(|v| f64::from(*v)).collect();
        let cols = x.to_col_major();
        let matrix = Matrix::new(&cols, x.rows(), x.cols());

        let mut booster = config.booster();
        // Validation set buffers must outlive the fit call.
        let valid_bufs = match valid {
            Some((vx, vy)) => {
                check_labels(vy, vx.rows())?;
                if vx.cols() != x.cols() {
                    return Err(Error::Shape {
                        what: "validation features (cols)",
                        expected: x.cols(),
                        found: vx.cols(),
                    });
                }
                let vw = sample_weights(vy, None, config.class_weight)?;
                let vyf: Vec<f64> = vy.iter().map(|v| f64::from(*v)).collect();
                Some((vx.to_col_major(), vx.rows(), vx.cols(), vyf, vw))
            }
            None => None,
        };
        let eval: Option<Vec<EvaluationData>> = valid_bufs
            .as_ref()
            .map(|(d, r, c, vy, vw)| vec![(Matrix::new(d, *r, *c), vy.as_slice(), vw.as_slice())]);
        if eval.is_some() {
            booster = booster.set_early_stopping_rounds(Some(config.early_stopping_rounds));
        }
        booster.fit(&matrix, &y, &w, eval)?;
        Ok(Self {
            format: FORMAT.to_string(),
            config: config.clone(),
            n_features: x.cols(),
            booster,
            forest: OnceLock::new(),
        })
    }

    /// The configuration it was fitted with.
    pub fn config(&self) -> &GbdtConfig {
        &self.config
    }

    /// Number of features it expects.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of trees used for prediction (the best iteration under early stopping).
    pub fn n_trees(&self) -> usize {
        self.booster
            .prediction_iteration
            .unwrap_or(self.booster.trees.len())
    }

    fn check_cols(&self, x: &Features<'_>) -> Result<()> {
        if x.cols() != self.n_features {
            return Err(Error::Shape {
                what: "features (cols)",
                expected: self.n_features,
                found: x.cols(),
            });
        }
        Ok(())
    }

    fn matrix_check(&self, x: &Features<'_>) -> Result<Vec<f64>> {
        self.check_cols(x)?;
        Ok(x.to_col_major())
    }

    /// The flat trees ([`Forest`]) that serial prediction walks.
    fn forest(&self) -> &Forest {
        self.forest.get_or_init(|| Forest::new(&self.booster))
    }

    /// Log-odds of an incident for each row: forust's own (parallel) prediction when
    /// configured `parallel`, else the flat trees (the same sums, without a column-major copy).
    pub fn predict_logit(&self, x: Features<'_>) -> Result<Vec<f64>> {
        if !self.config.parallel {
            self.check_cols(&x)?;
            return Ok(self.forest().predict(x));
        }
        let cols = self.matrix_check(&x)?;
        let m = Matrix::new(&cols, x.rows(), x.cols());
        Ok(self.booster.predict(&m, true))
    }

    /// Probability of an incident for each row (uncalibrated when trained with class weights).
    pub fn predict_proba(&self, x: Features<'_>) -> Result<Vec<f64>> {
        Ok(self.predict_logit(x)?.into_iter().map(sigmoid).collect())
    }

    /// Per-row SHAP contributions to the logit: `rows × (n_features + 1)` row-major, the last
    /// column being the bias; each row sums to the row's logit. Parallel as `predict_logit`.
    pub fn contributions(&self, x: Features<'_>) -> Result<Vec<f64>> {
        if !self.config.parallel {
            self.check_cols(&x)?;
            return Ok(self.forest().contributions(x));
        }
        let cols = self.matrix_check(&x)?;
        let m = Matrix::new(&cols, x.rows(), x.cols());
        Ok(self
            .booster
            .predict_contributions(&m, ContributionsMethod::Shapley, true))
    }

    /// The `k` features with the largest absolute contribution for each row, largest first.
    pub fn top_contributions(&self, x: Features<'_>, k: usize) -> Result<Vec<Vec<Contribution>>> {
        let contrib = self.contributions(x)?;
        Ok(contrib
            .chunks(self.n_features + 1)
            .map(|row| top_k(&row[..self.n_features], k))
            .collect())
    }

    /// Serialises the model (config, trees) as JSON bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Reads a model written by [`Gbdt::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        crate::data::read_tagged(bytes, FORMAT, |m: &Self| &m.format)
    }
}

/// The `k` entries of `values` with the largest absolute value, largest first.
pub(crate) fn top_k(values: &[f64], k: usize) -> Vec<Contribution> {
    let mut all: Vec<Contribution> = values
        .iter()
        .enumerate()
        .map(|(feature, &value)| Contribution { feature, value })
        .collect();
    all.sort_by(|a, b| b.value.abs().total_cmp(&a.value.abs()));
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// y = 1 when x0 > 0.6 and x1 < 0.4 (an interaction a linear model cannot fit), with
    /// 2 % of labels flipped; x2..x5 are noise. Also returns the noiseless rule, whose AUC is
    /// the Bayes bound.
    fn rule_data(n: usize, seed: u64) -> (Vec<f64>, Vec<u8>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = 6;
        let mut x = vec![0.0; n * d];
        let mut y = vec![0u8; n];
        let mut bayes = vec![0.0; n];
        for i in 0..n {
            for j in 0..d {
                x[i * d + j] = rng.random::<f64>();
            }
            let rule = x[i * d] > 0.6 && x[i * d + 1] < 0.4;
            let flip = rng.random::<f64>() < 0.02;
            y[i] = u8::from(rule ^ flip);
            bayes[i] = f64::from(u8::from(rule));
        }
        (x, y, bayes)
    }

    /// The flat trees give forust's own predictions and SHAP values bit for bit, with missing
    /// values (NaN) taking forust's missing branches, on f32 and f64 input.
    #[test]
    fn flat_trees_agree_with_forust_exactly() {
        let (mut x, y, _) = rule_data(3000, 11);
        let (vx, vy, _) = rule_data(1000, 12);
        let (mut tx, _, _) = rule_data(500, 13);
        // Holes in training and test data, so trees grow missing branches.
        for (i, v) in x.iter_mut().enumerate() {
            if i % 17 == 3 {
                *v = f64::NAN;
            }
        }
        for (i, v) in tx.iter_mut().enumerate() {
            if i % 13 == 5 {
                *v = f64::NAN;
            }
        }
        let config = GbdtConfig {
            max_depth: 5,
            ..GbdtConfig::default()
        };
        let fx = Features::f64(&x, 6).unwrap();
        let fv = Features::f64(&vx, 6).unwrap();
        let model = Gbdt::fit(&config, fx, &y, None, Some((fv, &vy))).unwrap();
        assert!(model.n_trees() > 10, "{} trees", model.n_trees());
        let t32: Vec<f32> = tx.iter().map(|v| *v as f32).collect();
        for ft in [
            Features::f64(&tx, 6).unwrap(),
            Features::f32(&t32, 6).unwrap(),
        ] {
            let cols = ft.to_col_major();
            let m = Matrix::new(&cols, ft.rows(), ft.cols());
            let theirs = model.booster.predict(&m, false);
            assert_eq!(model.predict_logit(ft).unwrap(), theirs);
            let theirs =
                model
                    .booster
                    .predict_contributions(&m, ContributionsMethod::Shapley, false);
            let ours = model.contributions(ft).unwrap();
            assert_eq!(ours.len(), theirs.len());
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert!(a == b, "contribution {i}: {a} vs forust {b}");
            }
        }
    }

    #[test]
    fn learns_an_interaction_rule_and_round_trips() {
        let (x, y, _) = rule_data(2000, 1);
        let (vx, vy, _) = rule_data(1000, 2);
        let (tx, ty, bayes) = rule_data(2000, 3);
        let fx = Features::f64(&x, 6).unwrap();
        let fv = Features::f64(&vx, 6).unwrap();
        let ft = Features::f64(&tx, 6).unwrap();
        let model = Gbdt::fit(&GbdtConfig::default(), fx, &y, None, Some((fv, &vy))).unwrap();
        let p = model.predict_proba(ft).unwrap();
        let auc = roc_auc(&p, &ty);
        let bound = roc_auc(&bayes, &ty);
        println!(
            "gbdt rule AUC {auc:.4} (Bayes {bound:.4}) with {} trees",
            model.n_trees()
        );
        // Bayes AUC with 2 % flips is about 0.95; the best single-feature split is near 0.8.
        assert!(auc > bound - 0.02, "AUC {auc} vs Bayes {bound}");

        // SHAP contributions sum to the logit, and the rule's features dominate.
        let logit = model.predict_logit(ft).unwrap();
        let contrib = model.contributions(ft).unwrap();
        for (row, z) in contrib.chunks(7).zip(&logit).take(50) {
            let s: f64 = row.iter().sum();
            assert!((s - z).abs() < 1e-6, "contributions sum {s} vs logit {z}");
        }
        let top = model.top_contributions(ft, 2).unwrap();
        let rule_first = top.iter().filter(|t| t[0].feature <= 1).count();
        assert!(rule_first as f64 > 0.95 * top.len() as f64, "{rule_first}");

        let bytes = model.to_bytes().unwrap();
        let back = Gbdt::from_bytes(&bytes).unwrap();
        assert_eq!(back.predict_logit(ft).unwrap(), logit);
        assert!(Gbdt::from_bytes(b"{}").is_err());
    }

    #[test]
    fn missing_values_are_routed_not_refused() {
        let (mut x, y, _) = rule_data(1500, 4);
        for i in (0..1500).step_by(10) {
            x[i * 6] = f64::NAN;
        }
        let fx = Features::f64(&x, 6).unwrap();
        let model = Gbdt::fit(&GbdtConfig::default(), fx, &y, None, None).unwrap();
        let p = model.predict_proba(fx).unwrap();
        assert!(p.iter().all(|v| v.is_finite()));
        let auc = roc_auc(&p, &y);
        assert!(auc > 0.9, "AUC with 10 % missing x0: {auc}");
    }

    #[test]
    fn class_weights_raise_minority_recall() {
        // 4 % positives, a weak noisy signal: unweighted trees rarely cross 0.5.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 3000;
        let d = 3;
        let mut x = vec![0.0f32; n * d];
        let mut y = vec![0u8; n];
        for i in 0..n {
            let pos = rng.random::<f64>() < 0.04;
            y[i] = u8::from(pos);
            for j in 0..d {
                let shift = if pos && j == 0 { 1.0 } else { 0.0 };
                x[i * d + j] = (rng.random::<f64>() * 2.0 - 1.0 + shift) as f32;
            }
        }
        let fx = Features::f32(&x, d).unwrap();
        let recall = |cw| {
            let cfg = GbdtConfig {
                class_weight: cw,
                iterations: 100,
                ..GbdtConfig::default()
            };
            let m = Gbdt::fit(&cfg, fx, &y, None, None).unwrap();
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
        println!("gbdt recall@0.5 plain {plain:.3} balanced {balanced:.3}");
        assert!(balanced > plain + 0.3, "plain {plain} balanced {balanced}");
    }
}
