//! The trained hybrid model: per-kind branches and meta-learners, thresholds, and its bundle.

use std::path::Path;
use std::time::{Duration, Instant};

use auspex_ensemble::{
    Bundle, BundleWriter, Features, Gbdt, LogisticRegression, MetaLearner, Pca, sha256_hex,
};
use auspex_graph::GraphExport;
use auspex_model::AnomalyKind;
use auspex_nn::{
    GnnModel, LstmModel, MlpModel, NnDevice, Sequences, Standardizer, Tabular, TcnModel,
};
use auspex_train::Dataset;
use auspex_window::FeatureSpec;
use serde::{Deserialize, Serialize};

use crate::training::{HybridConfig, TrainReport};
use crate::{HybridError, inputs};

/// Number of kinds (heads).
pub const K: usize = AnomalyKind::ALL.len();

/// A base branch of the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Branch {
    /// Gradient-boosted trees over the tabular features (forust-ml).
    Gbdt,
    /// L2 logistic regression over the tabular features.
    Logistic,
    /// The ANN branch: an MLP over the standardised tabular features (burn).
    Mlp,
    /// An LSTM over the window's imputed metric sequences and masks (burn).
    Lstm,
    /// A temporal CNN (causal dilated convolutions) over the same sequences (burn).
    Tcn,
    /// A relation-typed GraphSAGE network over the tick's topology (burn).
    Gnn,
    /// The unsupervised detector: how unusual the window is for its own entity (the context
    /// column `detector.z`, a causal robust z of the largest |baseline z| of any metric
    /// against the entity's previous day). Trains nothing; the meta-learner weighs it.
    Detector,
    /// PCA reconstruction error of the standardised tabular features, fitted on the training
    /// rows without incidents (unsupervised; `auspex_ensemble::Pca`).
    Pca,
}

/// Branch names as they appear in alerts' `branch_scores`, in [`Branch`] order.
pub const BRANCH_NAMES: [&str; 8] = [
    "gbdt", "logistic", "mlp", "lstm", "tcn", "gnn", "detector", "pca",
];

impl Branch {
    pub const ALL: [Branch; 8] = [
        Branch::Gbdt,
        Branch::Logistic,
        Branch::Mlp,
        Branch::Lstm,
        Branch::Tcn,
        Branch::Gnn,
        Branch::Detector,
        Branch::Pca,
    ];

    /// The default ensemble (`auspex train` without `--branches`): the branches whose removal
    /// cost held-out PR-AUC on average (2 training runs × 3 held-out simulator seeds × 4 kinds;
    /// docs/ENSEMBLE.md has the table). The TCN's did not: −0.002.
    pub const DEFAULT: [Branch; 5] = [
        Branch::Gbdt,
        Branch::Logistic,
        Branch::Mlp,
        Branch::Lstm,
        Branch::Gnn,
    ];

    pub fn name(self) -> &'static str {
        BRANCH_NAMES[self as usize]
    }

    /// Whether the branch reads the window's sequences (the dataset must record them).
    pub fn needs_sequences(self) -> bool {
        matches!(self, Branch::Lstm | Branch::Tcn)
    }

    /// Whether the branch reads graph snapshots (the dataset must record them).
    pub fn needs_graph(self) -> bool {
        self == Branch::Gnn
    }

    /// Whether one multi-head network serves every kind (fitted once per fold, not per kind).
    pub fn is_neural(self) -> bool {
        matches!(self, Branch::Mlp | Branch::Lstm | Branch::Tcn | Branch::Gnn)
    }
}

impl std::fmt::Display for Branch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Branch {
    type Err = HybridError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Branch::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                HybridError::Invalid(format!(
                    "unknown branch {s:?} (expected one of {})",
                    BRANCH_NAMES.join(", ")
                ))
            })
    }
}

/// The stage name of the meta-learners in [`BranchTimings`].
pub const META: &str = "meta";

/// Wall time spent per stage of scoring: each branch that ran (by [`Branch::name`]) and the
/// meta-learners ([`META`]), summed over the calls since the last [`clear`](Self::clear).
/// The names form a fixed, small set, fit for a metric label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BranchTimings(Vec<(&'static str, Duration)>);

impl BranchTimings {
    /// Adds `d` to `stage`.
    pub fn add(&mut self, stage: &'static str, d: Duration) {
        match self.0.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, t)) => *t += d,
            None => self.0.push((stage, d)),
        }
    }

    /// The time of `stage`; `None` when it did not run.
    pub fn get(&self, stage: &str) -> Option<Duration> {
        self.0.iter().find(|(s, _)| *s == stage).map(|(_, d)| *d)
    }

    /// Every stage that ran, in the order it first ran.
    pub fn as_slice(&self) -> &[(&'static str, Duration)] {
        &self.0
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Row-major `rows × b` scores without column `j` (`rows × (b - 1)`): what a leave-one-out
/// meta-learner reads.
pub(crate) fn without_column(scores: &[f64], b: usize, j: usize) -> Vec<f64> {
    scores
        .chunks_exact(b)
        .flat_map(|row| {
            row.iter()
                .enumerate()
                .filter(|(c, _)| *c != j)
                .map(|(_, v)| *v)
        })
        .collect()
}

/// The detector branch's probability of each of `n` context rows: the logistic of its
/// `detector.z` column (the meta-learner refits slope and offset).
pub(crate) fn detector_probabilities(context: &[f32], n: usize) -> Result<Vec<f64>, HybridError> {
    let c = auspex_train::CONTEXT_NAMES.len();
    let z = auspex_train::CONTEXT_NAMES
        .iter()
        .position(|name| *name == auspex_train::DETECTOR_Z)
        .expect("the context has a detector column");
    if context.len() != n * c {
        return Err(HybridError::Invalid(format!(
            "{} context values for {n} rows of {c}",
            context.len()
        )));
    }
    Ok(context
        .chunks_exact(c)
        .map(|row| auspex_ensemble::sigmoid(f64::from(row[z])))
        .collect())
}

/// What one kind's head holds.
#[derive(Debug)]
pub struct KindModel {
    pub gbdt: Option<Gbdt>,
    pub logistic: Option<LogisticRegression>,
    /// None when training had too few positives of this kind: the head then scores 0.
    pub meta: Option<MetaLearner>,
    /// Leave-one-out meta-learners for the ablation (`HybridConfig::ablate`): each fitted and
    /// calibrated exactly like `meta` on the same out-of-fold and validation scores, without
    /// that branch's column — the ensemble training would give without the branch (the base
    /// branches are fitted independently of each other). Not used for serving.
    pub ablations: Vec<(Branch, MetaLearner)>,
    /// Alert at or above this calibrated probability (chosen on validation data).
    pub threshold: f64,
}

/// Scores of a batch of rows for one kind.
#[derive(Debug, Clone, Default)]
pub struct RowScores {
    /// Calibrated ensemble probability per row.
    pub proba: Vec<f64>,
    /// Branch probabilities, `rows × branches` (NaN where a branch is absent).
    pub branch: Vec<f64>,
    /// Meta-learner weights, `rows × branches`.
    pub weights: Vec<f64>,
}

/// A batch of rows as every branch reads them.
#[derive(Debug, Clone, Copy)]
pub struct ScoreInput<'a> {
    /// Rows.
    pub n: usize,
    /// `n × spec.len()` features.
    pub features: &'a [f32],
    /// `n × CONTEXT_NAMES.len()` context features.
    pub context: &'a [f32],
    /// Imputed values and observed masks, `n × length × metrics` each
    /// (`WindowStore::sequence_matrix`); `None`: the sequence branches are absent.
    pub sequences: Option<(&'a [f32], &'a [f32])>,
    /// GNN probabilities of each row's entity, `n × K` (from [`HybridModel::gnn_scores`]; NaN
    /// for a row whose entity is in no graph); `None`: the GNN is absent.
    pub gnn: Option<&'a [f32]>,
}

impl<'a> ScoreInput<'a> {
    /// Tabular rows only: the sequence and graph branches count as absent.
    pub fn tabular(features: &'a [f32], context: &'a [f32], n: usize) -> Self {
        ScoreInput {
            n,
            features,
            context,
            sequences: None,
            gnn: None,
        }
    }
}

/// The trained ensemble.
#[derive(Debug)]
pub struct HybridModel {
    pub config: HybridConfig,
    pub spec: FeatureSpec,
    pub branches: Vec<Branch>,
    pub kinds: Vec<KindModel>,
    pub mlp: Option<(MlpModel, Standardizer)>,
    /// With the standardiser of its input channels (see `inputs`).
    pub lstm: Option<(LstmModel, Standardizer)>,
    pub tcn: Option<(TcnModel, Standardizer)>,
    /// With the standardiser of the node feature rows.
    pub gnn: Option<(GnnModel, Standardizer)>,
    pub pca: Option<Pca>,
    pub report: TrainReport,
    /// Set when loaded from a bundle: the bundle's model version.
    pub version: String,
}

impl HybridModel {
    /// Whether the model has a trained branch that reads sequences.
    pub fn needs_sequences(&self) -> bool {
        self.branches.iter().any(|b| b.needs_sequences())
            && (self.lstm.is_some() || self.tcn.is_some())
    }

    /// GNN probabilities of every node of one tick's graph, `nodes × K` (row `i` is
    /// `g.ids[i]`); `None` when the model has no GNN. `g`'s features are the feature rows of
    /// the entities scored at that tick (`LiveGraph::export`), as in training.
    pub fn gnn_scores(&self, g: &GraphExport) -> Result<Option<Vec<f32>>, HybridError> {
        let Some((m, scaler)) = self
            .gnn
            .as_ref()
            .filter(|_| self.branches.contains(&Branch::Gnn))
        else {
            return Ok(None);
        };
        if g.is_empty() {
            return Ok(Some(Vec::new()));
        }
        Ok(Some(m.predict(&inputs::gnn_input(g, scaler)?)?))
    }

    /// One branch's probabilities of every row, per kind: `[kind][row]`; `None` for a kind
    /// (or all kinds) where the branch is absent — not trained, or its input not given.
    pub fn branch_probabilities(
        &self,
        branch: Branch,
        input: &ScoreInput<'_>,
    ) -> Result<Vec<Option<Vec<f64>>>, HybridError> {
        let n = input.n;
        let d = self.spec.len();
        let feats = Features::f32(input.features, d)?;
        if feats.rows() != n {
            return Err(HybridError::Invalid(format!(
                "{} feature rows for {n} rows",
                feats.rows()
            )));
        }
        let absent = || Ok((0..K).map(|_| None).collect());
        if !self.branches.contains(&branch) {
            return absent();
        }
        let heads = |p: Vec<f32>| -> Vec<Option<Vec<f64>>> {
            (0..K)
                .map(|k| Some((0..n).map(|i| f64::from(p[i * K + k])).collect()))
                .collect()
        };
        let sequences = |scaler: &Standardizer| -> Result<Option<Sequences>, HybridError> {
            let Some((values, mask)) = input.sequences else {
                return Ok(None);
            };
            let (length, metrics) = (self.spec.length, self.spec.metrics.len());
            let mut s = inputs::seq_raw(values, mask, n, length, metrics)?;
            scaler.transform_in_place(&mut s.x)?;
            Ok(Some(s))
        };
        match branch {
            Branch::Gbdt => self
                .kinds
                .iter()
                .map(|km| km.gbdt.as_ref().map(|g| g.predict_proba(feats)).transpose())
                .collect::<Result<_, _>>()
                .map_err(HybridError::from),
            Branch::Logistic => self
                .kinds
                .iter()
                .map(|km| {
                    km.logistic
                        .as_ref()
                        .map(|l| l.predict_proba(feats))
                        .transpose()
                })
                .collect::<Result<_, _>>()
                .map_err(HybridError::from),
            Branch::Mlp => match &self.mlp {
                Some((m, scaler)) => {
                    let t =
                        scaler.transform_tabular(&Tabular::new(n, d, input.features.to_vec())?)?;
                    Ok(heads(m.predict_batched(&t, 4096)?))
                }
                None => absent(),
            },
            Branch::Lstm => match &self.lstm {
                Some((m, scaler)) => match sequences(scaler)? {
                    Some(s) => Ok(heads(m.predict_batched(&s, 1024)?)),
                    None => absent(),
                },
                None => absent(),
            },
            Branch::Tcn => match &self.tcn {
                Some((m, scaler)) => match sequences(scaler)? {
                    Some(s) => Ok(heads(m.predict_batched(&s, 1024)?)),
                    None => absent(),
                },
                None => absent(),
            },
            Branch::Detector => {
                let p = detector_probabilities(input.context, n)?;
                Ok((0..K).map(|_| Some(p.clone())).collect())
            }
            Branch::Pca => match &self.pca {
                Some(pca) => {
                    let p = pca.predict_proba(feats)?;
                    Ok((0..K).map(|_| Some(p.clone())).collect())
                }
                None => absent(),
            },
            Branch::Gnn => match input.gnn {
                Some(g) if self.gnn.is_some() => {
                    if g.len() != n * K {
                        return Err(HybridError::Invalid(format!(
                            "{} GNN scores for {n} rows of {K} kinds",
                            g.len()
                        )));
                    }
                    Ok(heads(g.to_vec()))
                }
                _ => absent(),
            },
        }
    }

    /// Branch probabilities for every kind: `[kind][row * B + b]` (NaN where absent).
    pub fn branch_scores(&self, input: &ScoreInput<'_>) -> Result<Vec<Vec<f64>>, HybridError> {
        self.branch_scores_timed(input, &mut BranchTimings::default())
    }

    /// [`branch_scores`](Self::branch_scores), adding each branch's time to `timings`.
    pub fn branch_scores_timed(
        &self,
        input: &ScoreInput<'_>,
        timings: &mut BranchTimings,
    ) -> Result<Vec<Vec<f64>>, HybridError> {
        let n = input.n;
        let b = self.branches.len();
        let mut out = vec![vec![f64::NAN; n * b]; K];
        for (j, &br) in self.branches.iter().enumerate() {
            let started = Instant::now();
            let cols = self.branch_probabilities(br, input)?;
            timings.add(br.name(), started.elapsed());
            for (s, col) in out.iter_mut().zip(cols) {
                if let Some(col) = col {
                    for (i, v) in col.into_iter().enumerate() {
                        s[i * b + j] = v;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Ensemble scores of `n` tabular rows: features (`n × spec.len()`) and context
    /// (`n × CONTEXT_NAMES.len()`). The sequence and graph branches count as absent (the
    /// meta-learner renormalises over the others): feed them with [`score_inputs`](Self::score_inputs)
    /// or [`score_dataset`](Self::score_dataset).
    pub fn score(&self, x: &[f32], ctx: &[f32], n: usize) -> Result<Vec<RowScores>, HybridError> {
        self.score_inputs(&ScoreInput::tabular(x, ctx, n))
    }

    /// Ensemble scores of a batch of rows with every input the branches read.
    pub fn score_inputs(&self, input: &ScoreInput<'_>) -> Result<Vec<RowScores>, HybridError> {
        self.score_inputs_timed(input, &mut BranchTimings::default())
    }

    /// [`score_inputs`](Self::score_inputs), adding each branch's and the meta-learners' time
    /// to `timings`.
    pub fn score_inputs_timed(
        &self,
        input: &ScoreInput<'_>,
        timings: &mut BranchTimings,
    ) -> Result<Vec<RowScores>, HybridError> {
        let branch = self.branch_scores_timed(input, timings)?;
        self.combine_timed(branch, input.context, input.n, timings)
    }

    /// Each kind's meta-learner over branch scores (`[kind][row * B + b]`, as
    /// [`branch_scores`](Self::branch_scores) gives them) and the rows' context
    /// (`n × CONTEXT_NAMES.len()`), adding its time to `timings`.
    pub fn combine_timed(
        &self,
        branch: Vec<Vec<f64>>,
        context: &[f32],
        n: usize,
        timings: &mut BranchTimings,
    ) -> Result<Vec<RowScores>, HybridError> {
        let b = self.branches.len();
        let c = auspex_train::CONTEXT_NAMES.len();
        if branch.len() != K || branch.iter().any(|s| s.len() != n * b) || context.len() != n * c {
            return Err(HybridError::Invalid(format!(
                "{} kinds of branch scores and {} context values for {n} rows of {b} branches",
                branch.len(),
                context.len()
            )));
        }
        let mut out = Vec::with_capacity(K);
        let started = Instant::now();
        for (km, s) in self.kinds.iter().zip(branch) {
            let rs = match &km.meta {
                Some(meta) => {
                    let p =
                        meta.predict(Features::f64(&s, b)?, Some(Features::f32(context, c)?))?;
                    RowScores {
                        proba: p.proba,
                        branch: s,
                        weights: p.weights,
                    }
                }
                None => RowScores {
                    proba: vec![0.0; n],
                    branch: s,
                    weights: vec![0.0; n * b],
                },
            };
            out.push(rs);
        }
        timings.add(META, started.elapsed());
        Ok(out)
    }

    /// GNN probabilities of every row of `ds`, `rows × K`, from its graph snapshots (NaN for
    /// rows in no snapshot); `None` when the model has no GNN or `ds` no snapshots.
    pub fn gnn_rows(&self, ds: &Dataset) -> Result<Option<Vec<f32>>, HybridError> {
        if self.gnn.is_none() || !self.branches.contains(&Branch::Gnn) || ds.snapshots.is_empty() {
            return Ok(None);
        }
        let mut out = vec![f32::NAN; ds.len() * K];
        for snap in &ds.snapshots {
            let Some(p) = self.gnn_scores(&snap.graph)? else {
                return Ok(None);
            };
            for (node, row) in snap.rows.iter().enumerate() {
                if let Some(r) = row {
                    let r = *r as usize;
                    out[r * K..(r + 1) * K].copy_from_slice(&p[node * K..(node + 1) * K]);
                }
            }
        }
        Ok(Some(out))
    }

    /// Ensemble scores of every row of a data set built with `config.dataset` (sequences and
    /// snapshots, when the model's branches need them, come from `ds`), in chunks of rows.
    pub fn score_dataset(&self, ds: &Dataset) -> Result<Vec<RowScores>, HybridError> {
        let n = ds.len();
        let (d, c) = (ds.width(), auspex_train::CONTEXT_NAMES.len());
        let gnn = self.gnn_rows(ds)?;
        let seq = ds.sequences.as_ref().filter(|_| self.needs_sequences());
        if let Some(s) = seq {
            inputs::check_sequence_shape(s, &self.spec)?;
        }
        let mut out: Vec<RowScores> = (0..K).map(|_| RowScores::default()).collect();
        const CHUNK: usize = 8192;
        for start in (0..n).step_by(CHUNK) {
            let end = (start + CHUNK).min(n);
            let cells = self.spec.length * self.spec.metrics.len();
            let input = ScoreInput {
                n: end - start,
                features: &ds.features[start * d..end * d],
                context: &ds.context[start * c..end * c],
                sequences: seq.map(|s| {
                    (
                        &s.values[start * cells..end * cells],
                        &s.mask[start * cells..end * cells],
                    )
                }),
                gnn: gnn.as_ref().map(|g| &g[start * K..end * K]),
            };
            for (o, part) in out.iter_mut().zip(self.score_inputs(&input)?) {
                o.proba.extend(part.proba);
                o.branch.extend(part.branch);
                o.weights.extend(part.weights);
            }
        }
        Ok(out)
    }

    /// Kind `k`'s ensemble without `branch` (its leave-one-out meta-learner, see
    /// [`KindModel::ablations`]) on rows already scored into `rs` with `context`; `None` when
    /// training fitted no such ablation.
    pub fn ensemble_without(
        &self,
        k: usize,
        branch: Branch,
        rs: &RowScores,
        context: &[f32],
    ) -> Result<Option<Vec<f64>>, HybridError> {
        let Some((_, meta)) = self.kinds[k].ablations.iter().find(|(b, _)| *b == branch) else {
            return Ok(None);
        };
        let Some(j) = self.branches.iter().position(|b| *b == branch) else {
            return Ok(None);
        };
        let b = self.branches.len();
        let kept = without_column(&rs.branch, b, j);
        let c = auspex_train::CONTEXT_NAMES.len();
        let p = meta.predict(
            Features::f64(&kept, b - 1)?,
            Some(Features::f32(context, c)?),
        )?;
        Ok(Some(p.proba))
    }

    /// Writes the model as a bundle directory (every file listed with its SHA-256).
    pub fn save(&self, dir: &Path, metadata: serde_json::Value) -> Result<String, HybridError> {
        let mut w = BundleWriter::new(dir)?;
        let json = |v: &dyn erased::Json| v.to_json();
        w.add_file("config.json", &json(&self.config)?)?;
        w.add_file("feature_spec.json", &json(&self.spec)?)?;
        w.add_file("branches.json", &json(&self.branches)?)?;
        w.add_file("report.json", &json(&self.report)?)?;
        let thresholds: Vec<f64> = self.kinds.iter().map(|k| k.threshold).collect();
        w.add_file("thresholds.json", &json(&thresholds)?)?;
        for (kind, km) in AnomalyKind::ALL.iter().zip(&self.kinds) {
            if let Some(g) = &km.gbdt {
                w.add_file(&format!("{kind}/gbdt.json"), &g.to_bytes()?)?;
            }
            if let Some(l) = &km.logistic {
                w.add_file(&format!("{kind}/logistic.json"), &l.to_bytes()?)?;
            }
            if let Some(m) = &km.meta {
                w.add_file(&format!("{kind}/meta.json"), &m.to_bytes()?)?;
            }
            for (branch, m) in &km.ablations {
                w.add_file(
                    &format!("{kind}/meta_without_{branch}.json"),
                    &m.to_bytes()?,
                )?;
            }
        }
        if let Some((m, scaler)) = &self.mlp {
            w.add_file("mlp.bin", &m.to_bytes()?)?;
            w.add_file("mlp_scaler.json", &json(scaler)?)?;
        }
        if let Some((m, scaler)) = &self.lstm {
            w.add_file("lstm.bin", &m.to_bytes()?)?;
            w.add_file("lstm_scaler.json", &json(scaler)?)?;
        }
        if let Some((m, scaler)) = &self.tcn {
            w.add_file("tcn.bin", &m.to_bytes()?)?;
            w.add_file("tcn_scaler.json", &json(scaler)?)?;
        }
        if let Some((m, scaler)) = &self.gnn {
            w.add_file("gnn.bin", &m.to_bytes()?)?;
            w.add_file("gnn_scaler.json", &json(scaler)?)?;
        }
        if let Some(p) = &self.pca {
            w.add_file("pca.json", &p.to_bytes()?)?;
        }
        let manifest = w.finish(metadata)?;
        Ok(manifest.model_version)
    }

    /// Loads a bundle, verifying every file's checksum; the neural branches go to `device`.
    /// Bundles written before a branch existed load without it.
    pub fn load(dir: &Path, device: NnDevice) -> Result<HybridModel, HybridError> {
        let bundle = Bundle::open(dir)?;
        let read_json = |name: &str| -> Result<serde_json::Value, HybridError> {
            let bytes = bundle.read(name)?;
            serde_json::from_slice(&bytes).map_err(|e| HybridError::BundleContent {
                file: name.to_string(),
                reason: e.to_string(),
            })
        };
        let typed = |name: &str| {
            let v = read_json(name)?;
            Ok::<_, HybridError>((name.to_string(), v))
        };
        fn de<T: serde::de::DeserializeOwned>(
            (name, v): (String, serde_json::Value),
        ) -> Result<T, HybridError> {
            serde_json::from_value(v).map_err(|e| HybridError::BundleContent {
                file: name,
                reason: e.to_string(),
            })
        }
        let config: HybridConfig = de(typed("config.json")?)?;
        let spec: FeatureSpec = de(typed("feature_spec.json")?)?;
        let branches: Vec<Branch> = de(typed("branches.json")?)?;
        let report: TrainReport = de(typed("report.json")?)?;
        let thresholds: Vec<f64> = de(typed("thresholds.json")?)?;
        if thresholds.len() != K {
            return Err(HybridError::BundleContent {
                file: "thresholds.json".into(),
                reason: format!("{} thresholds, expected {K}", thresholds.len()),
            });
        }
        let has = |name: &str| bundle.manifest().files.iter().any(|f| f.path == name);
        let mut kinds = Vec::with_capacity(K);
        for (kind, threshold) in AnomalyKind::ALL.iter().zip(thresholds) {
            let file = |m: &str| format!("{kind}/{m}.json");
            let gbdt = has(&file("gbdt"))
                .then(|| Gbdt::from_bytes(&bundle.read(&file("gbdt"))?).map_err(HybridError::from))
                .transpose()?;
            let logistic = has(&file("logistic"))
                .then(|| {
                    LogisticRegression::from_bytes(&bundle.read(&file("logistic"))?)
                        .map_err(HybridError::from)
                })
                .transpose()?;
            let meta = has(&file("meta"))
                .then(|| {
                    MetaLearner::from_bytes(&bundle.read(&file("meta"))?).map_err(HybridError::from)
                })
                .transpose()?;
            let ctx = auspex_train::CONTEXT_NAMES.len();
            if let Some(m) = meta.as_ref().filter(|m| m.context_features() != ctx) {
                return Err(HybridError::BundleContent {
                    file: file("meta"),
                    reason: format!(
                        "the meta-learner reads {} context columns; this auspex computes {ctx} \
                         ({}): retrain the bundle with this version",
                        m.context_features(),
                        auspex_train::CONTEXT_NAMES.join(", ")
                    ),
                });
            }
            let mut ablations = Vec::new();
            for &branch in &branches {
                let name = file(&format!("meta_without_{branch}"));
                if has(&name) {
                    ablations.push((branch, MetaLearner::from_bytes(&bundle.read(&name)?)?));
                }
            }
            kinds.push(KindModel {
                gbdt,
                logistic,
                meta,
                ablations,
                threshold,
            });
        }
        let scaler = |name: &str| -> Result<Standardizer, HybridError> {
            de(typed(&format!("{name}_scaler.json"))?)
        };
        let weights = |name: &str| -> Result<Option<Vec<u8>>, HybridError> {
            let file = format!("{name}.bin");
            Ok(if has(&file) {
                Some(bundle.read(&file)?)
            } else {
                None
            })
        };
        let mlp = match weights("mlp")? {
            Some(b) => Some((MlpModel::from_bytes(&b, device)?, scaler("mlp")?)),
            None => None,
        };
        let lstm = match weights("lstm")? {
            Some(b) => Some((LstmModel::from_bytes(&b, device)?, scaler("lstm")?)),
            None => None,
        };
        let tcn = match weights("tcn")? {
            Some(b) => Some((TcnModel::from_bytes(&b, device)?, scaler("tcn")?)),
            None => None,
        };
        let gnn = match weights("gnn")? {
            Some(b) => Some((GnnModel::from_bytes(&b, device)?, scaler("gnn")?)),
            None => None,
        };
        let pca = has("pca.json")
            .then(|| Pca::from_bytes(&bundle.read("pca.json")?).map_err(HybridError::from))
            .transpose()?;
        Ok(HybridModel {
            config,
            spec,
            branches,
            kinds,
            mlp,
            lstm,
            tcn,
            gnn,
            pca,
            report,
            version: bundle.manifest().model_version.clone(),
        })
    }

    /// A stable hash of a dataset's features and labels, for training metadata.
    pub fn data_hash(ds: &auspex_train::Dataset) -> String {
        let mut bytes = Vec::with_capacity(ds.features.len() * 4 + ds.labels.len());
        for v in &ds.features {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&ds.labels);
        sha256_hex(&bytes)
    }
}

/// Serialising heterogenous values to JSON bytes with one error type.
mod erased {
    use crate::HybridError;

    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>, HybridError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, HybridError> {
            serde_json::to_vec_pretty(self).map_err(|e| HybridError::Invalid(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_sum_per_stage_in_first_run_order() {
        let mut t = BranchTimings::default();
        t.add("gbdt", Duration::from_millis(2));
        t.add(META, Duration::from_millis(1));
        t.add("gbdt", Duration::from_millis(3));
        assert_eq!(
            t.as_slice(),
            &[
                ("gbdt", Duration::from_millis(5)),
                (META, Duration::from_millis(1))
            ]
        );
        assert_eq!(t.get("lstm"), None);
        t.clear();
        assert!(t.as_slice().is_empty());
    }
}
