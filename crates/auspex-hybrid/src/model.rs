//! The trained hybrid model: per-kind branches and meta-learners, thresholds, and its bundle.

use std::path::Path;

use auspex_ensemble::{
    Bundle, BundleWriter, Features, Gbdt, LogisticRegression, MetaLearner, sha256_hex,
};
use auspex_model::AnomalyKind;
use auspex_nn::{MlpModel, NnDevice, Standardizer, Tabular};
use auspex_window::FeatureSpec;
use serde::{Deserialize, Serialize};

use crate::HybridError;
use crate::training::{HybridConfig, TrainReport};

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
}

/// Branch names as they appear in alerts' `branch_scores`, in [`Branch`] order.
pub const BRANCH_NAMES: [&str; 3] = ["gbdt", "logistic", "mlp"];

impl Branch {
    pub const ALL: [Branch; 3] = [Branch::Gbdt, Branch::Logistic, Branch::Mlp];

    pub fn name(self) -> &'static str {
        BRANCH_NAMES[self as usize]
    }
}

/// What one kind's head holds.
#[derive(Debug)]
pub struct KindModel {
    pub gbdt: Option<Gbdt>,
    pub logistic: Option<LogisticRegression>,
    /// None when training had too few positives of this kind: the head then scores 0.
    pub meta: Option<MetaLearner>,
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

/// The trained ensemble.
#[derive(Debug)]
pub struct HybridModel {
    pub config: HybridConfig,
    pub spec: FeatureSpec,
    pub branches: Vec<Branch>,
    pub kinds: Vec<KindModel>,
    pub mlp: Option<(MlpModel, Standardizer)>,
    pub report: TrainReport,
    /// Set when loaded from a bundle: the bundle's model version.
    pub version: String,
}

impl HybridModel {
    /// Branch probabilities for every kind: `[kind][row * B + b]`.
    pub fn branch_scores(&self, x: &[f32], n: usize) -> Result<Vec<Vec<f64>>, HybridError> {
        let d = self.spec.len();
        let b = self.branches.len();
        let feats = Features::f32(x, d)?;
        let mlp = match &self.mlp {
            Some((m, scaler)) if self.branches.contains(&Branch::Mlp) => {
                let t = scaler.transform_tabular(&Tabular::new(n, d, x.to_vec())?)?;
                Some(m.predict_batched(&t, 4096)?)
            }
            _ => None,
        };
        let mut out = Vec::with_capacity(K);
        for (k, km) in self.kinds.iter().enumerate() {
            let mut s = vec![f64::NAN; n * b];
            for (j, br) in self.branches.iter().enumerate() {
                let col: Option<Vec<f64>> = match br {
                    Branch::Gbdt => km
                        .gbdt
                        .as_ref()
                        .map(|g| g.predict_proba(feats))
                        .transpose()?,
                    Branch::Logistic => km
                        .logistic
                        .as_ref()
                        .map(|l| l.predict_proba(feats))
                        .transpose()?,
                    Branch::Mlp => mlp
                        .as_ref()
                        .map(|p| (0..n).map(|i| f64::from(p[i * K + k])).collect()),
                };
                if let Some(col) = col {
                    for i in 0..n {
                        s[i * b + j] = col[i];
                    }
                }
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Ensemble scores of `n` rows: features (`n × spec.len()`) and context
    /// (`n × CONTEXT_NAMES.len()`).
    pub fn score(&self, x: &[f32], ctx: &[f32], n: usize) -> Result<Vec<RowScores>, HybridError> {
        let b = self.branches.len();
        let branch = self.branch_scores(x, n)?;
        let c = auspex_train::CONTEXT_NAMES.len();
        let mut out = Vec::with_capacity(K);
        for (km, s) in self.kinds.iter().zip(branch) {
            let rs = match &km.meta {
                Some(meta) => {
                    let p = meta.predict(Features::f64(&s, b)?, Some(Features::f32(ctx, c)?))?;
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
        Ok(out)
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
        }
        if let Some((m, scaler)) = &self.mlp {
            w.add_file("mlp.bin", &m.to_bytes()?)?;
            w.add_file("mlp_scaler.json", &json(scaler)?)?;
        }
        let manifest = w.finish(metadata)?;
        Ok(manifest.model_version)
    }

    /// Loads a bundle, verifying every file's checksum; the neural branches go to `device`.
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
            kinds.push(KindModel {
                gbdt,
                logistic,
                meta,
                threshold,
            });
        }
        let mlp = if has("mlp.bin") {
            let m = MlpModel::from_bytes(&bundle.read("mlp.bin")?, device)?;
            let scaler: Standardizer = de(typed("mlp_scaler.json")?)?;
            Some((m, scaler))
        } else {
            None
        };
        Ok(HybridModel {
            config,
            spec,
            branches,
            kinds,
            mlp,
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
