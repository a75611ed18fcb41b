//! The stacking meta-learner: combines branch scores with weights that depend on context.
//!
//! Inputs per row: `B` branch scores (probabilities, out-of-fold during training — see
//! [`crate::folds`]) and `C` context features (entity kind one-hot, data completeness, graph
//! degree, volatility…). A gate turns context into branch weights, and each branch gets its
//! own affine correction of its logit:
//!
//! ```text
//! w     = softmax(W · standardise(ctx) + g)          (over available branches)
//! logit = Σ_b w_b · (a_b · logit(s_b) + c_b) + bias
//! p     = calibrate(logit)                            (Platt or isotonic)
//! ```
//!
//! A NaN branch score means the branch had nothing to say for that row (no graph, too little
//! history): its weight is forced to 0 and the others are renormalised. Parameters are fitted
//! by Adam on weighted log-loss with L2 (on `W`, `g`, `c`, and `a − 1`), starting from the
//! plain average of logits (`W = 0`, `a = 1`), with `a ≥ 0` (a branch may be discounted, never
//! read backwards) and the standardised context clipped to ±3 (no extrapolation of the gate). Plain Rust: the model is a few dozen numbers.
//! The calibrator is fitted on the training rows' logits by default; refit it on a later
//! slice with [`MetaLearner::calibrate`] when one is held back.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::calibration::{CalibrationMethod, Calibrator};
use crate::data::{Features, check_labels, logit, logloss_from_logit, sigmoid};
use crate::error::{Error, Result};
use crate::logistic::Standardizer;
use crate::weights::{ClassWeight, sample_weights};

const FORMAT: &str = "auspex-meta/1";

/// Hyper-parameters of the meta-learner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetaConfig {
    /// Passes over the training rows.
    pub epochs: usize,
    /// Adam step size.
    pub learning_rate: f64,
    /// L2 penalty (relative to the mean weighted log-loss).
    pub l2: f64,
    /// Rows per Adam step; `None` = full batch.
    pub batch_size: Option<usize>,
    /// Seed for mini-batch shuffling.
    pub seed: u64,
    /// Calibration fitted on the combined logit.
    pub calibration: CalibrationMethod,
    /// Class weighting of the training loss. `None` keeps probabilities honest; `Balanced`
    /// helps the gate when positives are very rare (recalibrate afterwards).
    pub class_weight: ClassWeight,
    /// Let the context set the branch weights (the gate). When false the weights are one
    /// softmax for every row: the context is accepted and ignored.
    pub use_context: bool,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            epochs: 300,
            learning_rate: 0.05,
            l2: 1e-3,
            batch_size: None,
            seed: 0,
            calibration: CalibrationMethod::Platt,
            class_weight: ClassWeight::None,
            use_context: true,
        }
    }
}

/// A fitted meta-learner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaLearner {
    format: String,
    config: MetaConfig,
    branches: usize,
    context: usize,
    ctx_scale: Option<Standardizer>,
    /// Gate weights, `branches × context`, row-major.
    gate_w: Vec<f64>,
    /// Gate offsets, one per branch.
    gate_b: Vec<f64>,
    /// Per-branch logit slope.
    a: Vec<f64>,
    /// Per-branch logit offset.
    c: Vec<f64>,
    bias: f64,
    calibrator: Calibrator,
    /// Final mean training log-loss (before calibration).
    train_loss: f64,
    /// The branches this model reads (`None`: all); the others count as absent, whatever
    /// their scores. See [`MetaLearner::fit_reading`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reads: Option<Vec<bool>>,
}

/// Predictions of the meta-learner.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaPrediction {
    /// Calibrated probability per row.
    pub proba: Vec<f64>,
    /// Combined logit per row (before calibration).
    pub logit: Vec<f64>,
    /// Branch weights, `rows × branches` row-major; each row sums to 1 (0 for a NaN branch).
    pub weights: Vec<f64>,
    /// Number of branches.
    pub branches: usize,
}

impl MetaPrediction {
    /// The branch weights of row `r`.
    pub fn weights_of(&self, r: usize) -> &[f64] {
        &self.weights[r * self.branches..(r + 1) * self.branches]
    }
}

/// Parameter layout inside the flat vector Adam updates.
struct Layout {
    b: usize,
    c: usize,
}

impl Layout {
    fn len(&self) -> usize {
        self.b * self.c + 3 * self.b + 1
    }
    fn gate_b(&self) -> usize {
        self.b * self.c
    }
    fn a(&self) -> usize {
        self.gate_b() + self.b
    }
    fn c_off(&self) -> usize {
        self.a() + self.b
    }
    fn bias(&self) -> usize {
        self.c_off() + self.b
    }
}

/// Standardised context is clipped to ±3: the gate is linear in it, and a context unlike any
/// seen in training (a volatility far beyond the training range) must not push all the weight
/// onto one branch.
fn clip_context(v: f64) -> f64 {
    v.clamp(-3.0, 3.0)
}

/// Forward pass for one row: fills `w` (weights) and `u` (corrected logits), returns the logit.
fn forward(
    theta: &[f64],
    lay: &Layout,
    l: &[f64],
    ctx: &[f64],
    w: &mut [f64],
    u: &mut [f64],
) -> f64 {
    let (b, c) = (lay.b, lay.c);
    let mut max_h = f64::NEG_INFINITY;
    for j in 0..b {
        if l[j].is_nan() {
            w[j] = f64::NEG_INFINITY;
            continue;
        }
        let mut h = theta[lay.gate_b() + j];
        for k in 0..c {
            h += theta[j * c + k] * ctx[k];
        }
        w[j] = h;
        max_h = max_h.max(h);
    }
    let mut z = theta[lay.bias()];
    if max_h == f64::NEG_INFINITY {
        // No branch available: only the bias speaks.
        w.iter_mut().for_each(|v| *v = 0.0);
        u.iter_mut().for_each(|v| *v = 0.0);
        return z;
    }
    let mut sum = 0.0;
    for v in w.iter_mut() {
        *v = if v.is_finite() {
            (*v - max_h).exp()
        } else {
            0.0
        };
        sum += *v;
    }
    for j in 0..b {
        w[j] /= sum;
        u[j] = if l[j].is_nan() {
            0.0
        } else {
            theta[lay.a() + j] * l[j] + theta[lay.c_off() + j]
        };
        z += w[j] * u[j];
    }
    z
}

impl MetaLearner {
    /// Fits on branch scores `scores` (`rows × B`, probabilities; NaN = branch absent),
    /// context `ctx` (`rows × C`, or `None`), labels and optional sample weights.
    pub fn fit(
        config: &MetaConfig,
        scores: Features<'_>,
        ctx: Option<Features<'_>>,
        labels: &[u8],
        weights: Option<&[f64]>,
    ) -> Result<Self> {
        if !(config.learning_rate > 0.0 && config.l2 >= 0.0) || config.epochs == 0 {
            return Err(Error::InvalidParameter {
                name: "meta config",
                reason: "learning_rate > 0, l2 >= 0 and epochs > 0 required".into(),
            });
        }
        let n = scores.rows();
        check_labels(labels, n)?;
        if n == 0 {
            return Err(Error::Empty("meta-learner"));
        }
        if let Some(cx) = &ctx {
            if cx.rows() != n {
                return Err(Error::Shape {
                    what: "context rows",
                    expected: n,
                    found: cx.rows(),
                });
            }
            cx.require_finite("context features")?;
        }
        let sw = sample_weights(labels, weights, config.class_weight)?;
        let wsum: f64 = sw.iter().sum();
        if wsum <= 0.0 {
            return Err(Error::Empty("meta-learner (all weights 0)"));
        }
        let b = scores.cols();
        let ctx_scale = ctx.map(Standardizer::fit);
        let c = ctx.map_or(0, |cx| cx.cols());
        let lay = Layout { b, c };
        let l: Vec<f64> = scores.to_row_major().into_iter().map(to_logit).collect();
        let z_ctx: Vec<f64> = match (&ctx, &ctx_scale) {
            (Some(cx), Some(s)) if config.use_context => {
                s.transform(*cx).into_iter().map(clip_context).collect()
            }
            (Some(cx), Some(_)) => vec![0.0; cx.rows() * cx.cols()],
            _ => Vec::new(),
        };
        let y: Vec<f64> = labels.iter().map(|v| f64::from(*v)).collect();

        let mut theta = vec![0.0; lay.len()];
        for j in 0..b {
            theta[lay.a() + j] = 1.0;
        }

        let (mut m1, mut m2) = (vec![0.0; lay.len()], vec![0.0; lay.len()]);
        let (beta1, beta2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
        let mut step = 0i32;
        let mut order: Vec<usize> = (0..n).collect();
        let batch = config.batch_size.unwrap_or(n).clamp(1, n);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let (mut w, mut u) = (vec![0.0; b], vec![0.0; b]);
        let mut grad = vec![0.0; lay.len()];
        let empty: [f64; 0] = [];
        for _ in 0..config.epochs {
            if batch < n {
                order.shuffle(&mut rng);
            }
            for chunk in order.chunks(batch) {
                grad.iter_mut().for_each(|g| *g = 0.0);
                let bw: f64 = chunk.iter().map(|&i| sw[i]).sum();
                if bw <= 0.0 {
                    continue;
                }
                for &i in chunk {
                    let li = &l[i * b..(i + 1) * b];
                    let ci = if c > 0 {
                        &z_ctx[i * c..(i + 1) * c]
                    } else {
                        &empty[..]
                    };
                    let z = forward(&theta, &lay, li, ci, &mut w, &mut u);
                    let g = sw[i] * (sigmoid(z) - y[i]) / bw;
                    grad[lay.bias()] += g;
                    for j in 0..b {
                        if w[j] == 0.0 {
                            continue;
                        }
                        // dz/du_j = w_j ; dz/dh_j = w_j (u_j − Σ w u)
                        let zbar = z - theta[lay.bias()];
                        let gh = g * w[j] * (u[j] - zbar);
                        grad[lay.gate_b() + j] += gh;
                        for k in 0..c {
                            grad[j * c + k] += gh * ci[k];
                        }
                        grad[lay.a() + j] += g * w[j] * li[j];
                        grad[lay.c_off() + j] += g * w[j];
                    }
                }
                // L2: on gate and offsets towards 0, on slopes towards 1.
                for p in 0..lay.bias() {
                    let anchor = if (lay.a()..lay.c_off()).contains(&p) {
                        1.0
                    } else {
                        0.0
                    };
                    grad[p] += config.l2 * (theta[p] - anchor);
                }
                step += 1;
                let (bc1, bc2) = (1.0 - beta1.powi(step), 1.0 - beta2.powi(step));
                for p in 0..lay.len() {
                    m1[p] = beta1 * m1[p] + (1.0 - beta1) * grad[p];
                    m2[p] = beta2 * m2[p] + (1.0 - beta2) * grad[p] * grad[p];
                    theta[p] -= config.learning_rate * (m1[p] / bc1) / ((m2[p] / bc2).sqrt() + eps);
                }
                // A branch's evidence may be discounted, never reversed.
                for slope in &mut theta[lay.a()..lay.c_off()] {
                    *slope = slope.max(0.0);
                }
            }
        }

        let mut model = Self {
            format: FORMAT.to_string(),
            config: config.clone(),
            branches: b,
            context: c,
            ctx_scale,
            gate_w: theta[..lay.gate_b()].to_vec(),
            gate_b: theta[lay.gate_b()..lay.a()].to_vec(),
            a: theta[lay.a()..lay.c_off()].to_vec(),
            c: theta[lay.c_off()..lay.bias()].to_vec(),
            bias: theta[lay.bias()],
            calibrator: Calibrator::None,
            train_loss: 0.0,
            reads: None,
        };
        let pred = model.predict(scores, ctx)?;
        model.train_loss = pred
            .logit
            .iter()
            .zip(&y)
            .zip(&sw)
            .map(|((z, y), w)| w * logloss_from_logit(*z, *y))
            .sum::<f64>()
            / wsum;
        if config.calibration != CalibrationMethod::None {
            model.calibrator = Calibrator::fit(config.calibration, &pred.logit, labels)?;
        }
        Ok(model)
    }

    /// Fits like [`MetaLearner::fit`] on the branches marked in `keep` only; the model still
    /// takes all `B` scores and ignores the others (so it can stand in for a model that reads
    /// them all, e.g. when one branch alone beats the stack on validation rows). Keeping every
    /// branch is [`MetaLearner::fit`].
    pub fn fit_reading(
        config: &MetaConfig,
        scores: Features<'_>,
        ctx: Option<Features<'_>>,
        labels: &[u8],
        weights: Option<&[f64]>,
        keep: &[bool],
    ) -> Result<Self> {
        let b = scores.cols();
        if keep.len() != b {
            return Err(Error::Shape {
                what: "branches kept",
                expected: b,
                found: keep.len(),
            });
        }
        let mut masked = scores.to_row_major();
        mask_row_major(&mut masked, keep);
        let mut model = Self::fit(config, Features::f64(&masked, b)?, ctx, labels, weights)?;
        model.reads = (!keep.iter().all(|k| *k)).then(|| keep.to_vec());
        Ok(model)
    }

    /// The branches this model reads (`None`: all).
    pub fn reads(&self) -> Option<&[bool]> {
        self.reads.as_deref()
    }

    /// Refits the calibration on other rows (e.g. a later time slice held back from `fit`).
    pub fn calibrate(
        &mut self,
        method: CalibrationMethod,
        scores: Features<'_>,
        ctx: Option<Features<'_>>,
        labels: &[u8],
    ) -> Result<()> {
        let pred = self.predict(scores, ctx)?;
        self.calibrator = match method {
            CalibrationMethod::None => Calibrator::None,
            m => Calibrator::fit(m, &pred.logit, labels)?,
        };
        Ok(())
    }

    /// Number of branches.
    pub fn branches(&self) -> usize {
        self.branches
    }

    /// Number of context features.
    pub fn context_features(&self) -> usize {
        self.context
    }

    /// Mean (weighted) training log-loss of the uncalibrated combination.
    pub fn train_loss(&self) -> f64 {
        self.train_loss
    }

    /// The fitted calibration.
    pub fn calibrator(&self) -> &Calibrator {
        &self.calibrator
    }

    fn theta(&self) -> (Vec<f64>, Layout) {
        let lay = Layout {
            b: self.branches,
            c: self.context,
        };
        let mut t = Vec::with_capacity(lay.len());
        t.extend_from_slice(&self.gate_w);
        t.extend_from_slice(&self.gate_b);
        t.extend_from_slice(&self.a);
        t.extend_from_slice(&self.c);
        t.push(self.bias);
        (t, lay)
    }

    /// Probabilities and per-row branch weights.
    pub fn predict(
        &self,
        scores: Features<'_>,
        ctx: Option<Features<'_>>,
    ) -> Result<MetaPrediction> {
        let n = scores.rows();
        if scores.cols() != self.branches {
            return Err(Error::Shape {
                what: "branch scores (cols)",
                expected: self.branches,
                found: scores.cols(),
            });
        }
        match (&ctx, self.context) {
            (None, 0) => {}
            (Some(cx), c) if cx.cols() == c && cx.rows() == n => {}
            (cx, c) => {
                return Err(Error::Shape {
                    what: "context (rows × cols)",
                    expected: n * c,
                    found: cx.map_or(0, |cx| cx.rows() * cx.cols()),
                });
            }
        }
        let (theta, lay) = self.theta();
        let b = self.branches;
        let mut out = MetaPrediction {
            proba: Vec::with_capacity(n),
            logit: Vec::with_capacity(n),
            weights: vec![0.0; n * b],
            branches: b,
        };
        let (mut srow, mut crow, mut u) = (vec![0.0; b], vec![0.0; self.context], vec![0.0; b]);
        for r in 0..n {
            scores.row_into(r, &mut srow);
            srow.iter_mut().for_each(|s| *s = to_logit(*s));
            if let Some(keep) = &self.reads {
                mask_row_major(&mut srow, keep);
            }
            if let (Some(cx), Some(scale)) = (&ctx, &self.ctx_scale) {
                cx.row_into(r, &mut crow);
                if self.config.use_context {
                    scale.transform_row(&mut crow);
                    crow.iter_mut().for_each(|v| *v = clip_context(*v));
                } else {
                    crow.fill(0.0);
                }
            }
            let z = forward(
                &theta,
                &lay,
                &srow,
                &crow,
                &mut out.weights[r * b..(r + 1) * b],
                &mut u,
            );
            out.logit.push(z);
            out.proba.push(match self.calibrator {
                Calibrator::None => sigmoid(z),
                ref cal => cal.apply(z),
            });
        }
        Ok(out)
    }

    /// Serialises the model as JSON bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Reads a model written by [`MetaLearner::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        crate::data::read_tagged(bytes, FORMAT, |m: &Self| &m.format)
    }
}

/// Sets the scores of branches not in `keep` to NaN (absent), row by row.
fn mask_row_major(scores: &mut [f64], keep: &[bool]) {
    for row in scores.chunks_exact_mut(keep.len()) {
        for (s, k) in row.iter_mut().zip(keep) {
            if !k {
                *s = f64::NAN;
            }
        }
    }
}

/// Branch probability to logit, keeping NaN (absent branch) as NaN.
fn to_logit(s: f64) -> f64 {
    if s.is_nan() { f64::NAN } else { logit(s) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::Platt;
    use crate::metrics::{log_loss, roc_auc};
    use rand::RngExt;

    fn gauss(rng: &mut ChaCha8Rng) -> f64 {
        let u: f64 = rng.random::<f64>().max(1e-12);
        let v: f64 = rng.random();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Branch A is informative when ctx = 0 and noise when ctx = 1; branch B the reverse.
    /// Context also carries a useless noise column.
    fn data(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<u8>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut s, mut ctx, mut y) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let label = rng.random::<f64>() < 0.3;
            let k = rng.random::<f64>() < 0.5;
            let good = |rng: &mut ChaCha8Rng| 2.0 * if label { 1.0 } else { -1.0 } + gauss(rng);
            let bad = |rng: &mut ChaCha8Rng| 1.5 * gauss(rng) - 0.8;
            let (la, lb) = if k {
                (bad(&mut rng), good(&mut rng))
            } else {
                (good(&mut rng), bad(&mut rng))
            };
            s.push(sigmoid(la));
            s.push(sigmoid(lb));
            ctx.push(f64::from(u8::from(k)));
            ctx.push(gauss(&mut rng));
            y.push(u8::from(label));
        }
        (s, ctx, y)
    }

    #[test]
    fn a_model_reading_one_branch_ignores_the_others_and_round_trips() {
        let (s, c, y) = data(2000, 3);
        let (fs, fc) = (Features::f64(&s, 2).unwrap(), Features::f64(&c, 2).unwrap());
        let cfg = MetaConfig {
            use_context: false,
            ..MetaConfig::default()
        };
        let only_b =
            MetaLearner::fit_reading(&cfg, fs, Some(fc), &y, None, &[false, true]).unwrap();
        assert_eq!(only_b.reads(), Some(&[false, true][..]));
        let p = only_b.predict(fs, Some(fc)).unwrap();
        // Changing branch A's scores changes nothing; every weight sits on B.
        let flipped: Vec<f64> = s.chunks(2).flat_map(|r| [1.0 - r[0], r[1]]).collect();
        let q = only_b
            .predict(Features::f64(&flipped, 2).unwrap(), Some(fc))
            .unwrap();
        assert_eq!(p.proba, q.proba);
        assert!((0..y.len()).all(|r| p.weights_of(r) == [0.0, 1.0]));
        // It ranks like branch B alone (a monotone map of its logit).
        let pb: Vec<f64> = s.chunks(2).map(|r| r[1]).collect();
        assert!((roc_auc(&p.proba, &y) - roc_auc(&pb, &y)).abs() < 1e-9);
        let back = MetaLearner::from_bytes(&only_b.to_bytes().unwrap()).unwrap();
        assert_eq!(back.predict(fs, Some(fc)).unwrap(), p);
        assert!(MetaLearner::fit_reading(&cfg, fs, Some(fc), &y, None, &[true]).is_err());
    }

    #[test]
    fn gate_learns_context_dependence_and_beats_branches_and_average() {
        let (s, c, y) = data(4000, 1);
        let (ts, tc, ty) = data(4000, 2);
        let (fs, fc) = (Features::f64(&s, 2).unwrap(), Features::f64(&c, 2).unwrap());
        let (fts, ftc) = (
            Features::f64(&ts, 2).unwrap(),
            Features::f64(&tc, 2).unwrap(),
        );
        let meta = MetaLearner::fit(&MetaConfig::default(), fs, Some(fc), &y, None).unwrap();
        let pred = meta.predict(fts, Some(ftc)).unwrap();

        let col = |v: &[f64], j: usize| v.chunks(2).map(|r| r[j]).collect::<Vec<f64>>();
        let (pa, pb) = (col(&ts, 0), col(&ts, 1));
        // Fixed equal-weight average of logits, then Platt-calibrated on the training rows:
        // the strongest context-blind combination of the two.
        let avg = |v: &[f64]| {
            v.chunks(2)
                .map(|r| 0.5 * (logit(r[0]) + logit(r[1])))
                .collect::<Vec<f64>>()
        };
        let platt = Platt::fit(&avg(&s), &y).unwrap();
        let pavg: Vec<f64> = avg(&ts).iter().map(|z| platt.apply(*z)).collect();

        let ll = |p: &[f64]| log_loss(p, &ty, None);
        let (l_meta, l_a, l_b, l_avg) = (ll(&pred.proba), ll(&pa), ll(&pb), ll(&pavg));
        let (auc_meta, auc_a, auc_b, auc_avg) = (
            roc_auc(&pred.proba, &ty),
            roc_auc(&pa, &ty),
            roc_auc(&pb, &ty),
            roc_auc(&pavg, &ty),
        );
        // Mean gate weight on branch A by context value.
        let mean_wa = |k: f64| {
            let rows: Vec<usize> = (0..ty.len()).filter(|&r| tc[r * 2] == k).collect();
            rows.iter().map(|&r| pred.weights_of(r)[0]).sum::<f64>() / rows.len() as f64
        };
        let (wa0, wa1) = (mean_wa(0.0), mean_wa(1.0));
        println!(
            "meta log-loss {l_meta:.4} (A {l_a:.4}, B {l_b:.4}, avg+platt {l_avg:.4}); \
             AUC {auc_meta:.4} (A {auc_a:.4}, B {auc_b:.4}, avg {auc_avg:.4}); \
             w_A|ctx=0 {wa0:.3}, w_A|ctx=1 {wa1:.3}"
        );
        assert!(wa0 > 0.8 && wa1 < 0.2, "gate weights {wa0} {wa1}");
        assert!(l_meta < l_a.min(l_b) - 0.1, "{l_meta} vs {l_a} {l_b}");
        assert!(l_meta < l_avg - 0.05, "{l_meta} vs avg {l_avg}");
        assert!(
            auc_meta > auc_avg + 0.01 && auc_meta > auc_a.max(auc_b),
            "{auc_meta}"
        );
        for r in 0..ty.len() {
            let w = pred.weights_of(r);
            assert!((w[0] + w[1] - 1.0).abs() < 1e-9);
        }

        // Mini-batches (shuffled, seeded) reach the same gate with fewer epochs.
        let mini = MetaConfig {
            batch_size: Some(256),
            epochs: 30,
            calibration: CalibrationMethod::Isotonic,
            ..MetaConfig::default()
        };
        let m2 = MetaLearner::fit(&mini, fs, Some(fc), &y, None).unwrap();
        let p2 = m2.predict(fts, Some(ftc)).unwrap();
        let l_mini = ll(&p2.proba);
        println!("mini-batch + isotonic log-loss {l_mini:.4}");
        assert!(l_mini < l_avg - 0.05, "{l_mini}");
        assert!(p2.proba.iter().all(|p| (0.0..=1.0).contains(p)));

        // Round trip, and a missing branch gets weight 0.
        let back = MetaLearner::from_bytes(&meta.to_bytes().unwrap()).unwrap();
        assert_eq!(back.predict(fts, Some(ftc)).unwrap(), pred);
        let one = [f64::NAN, 0.9];
        let p = meta
            .predict(
                Features::f64(&one, 2).unwrap(),
                Some(Features::f64(&[0.0, 0.0], 2).unwrap()),
            )
            .unwrap();
        assert_eq!(p.weights, vec![0.0, 1.0]);
        assert!(p.proba[0] > 0.5);
    }
}
