//! The learned quantile forecaster: an MLP head over one window's inputs
//! ([`FeatureSpec::window`]) with `horizons × quantiles` outputs kept monotone (the lowest
//! quantile, then cumulative softplus increments), trained with the pinball loss, Adam with
//! L2, dropout and early stopping on a validation set; plus its versioned, checksummed file.
//!
//! Backend-generic the burn 0.22 way: the module holds no backend type, the device decides;
//! [`auspex_nn::NnDevice`] is the only place a backend is named.

use std::path::Path;

use auspex_nn::{NnDevice, dropout, seeded_init};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ForecastError;
use crate::features::FeatureSpec;

/// Everything that defines a forecaster; saved inside its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastConfig {
    /// The inputs: step, history, horizons, season.
    pub features: FeatureSpec,
    /// Quantile levels, ascending in (0, 1), e.g. `[0.1, 0.5, 0.9]`.
    pub quantiles: Vec<f64>,
    /// Hidden layer widths (ReLU).
    pub hidden: Vec<usize>,
    /// Dropout after each hidden layer while training.
    pub dropout: f64,
    /// Gaps of at most this many steps are filled with the last value; longer ones stay
    /// missing (no forecast until the history is whole again).
    pub max_gap: usize,
}

impl ForecastConfig {
    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), ForecastError> {
        let bad = |m: String| Err(ForecastError::Config(m));
        if let Err(m) = self.features.validate() {
            return bad(format!("features: {m}"));
        }
        if self.quantiles.is_empty()
            || self.quantiles.iter().any(|q| !(*q > 0.0 && *q < 1.0))
            || self.quantiles.windows(2).any(|w| w[0] >= w[1])
        {
            return bad(format!(
                "quantiles must ascend inside (0, 1), got {:?}",
                self.quantiles
            ));
        }
        if self.hidden.contains(&0) {
            return bad("hidden widths must be > 0".into());
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return bad(format!("dropout {} outside [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Index of the median in `quantiles` (the nearest level to 0.5).
    pub fn median_index(&self) -> usize {
        let mut best = 0;
        for (i, q) in self.quantiles.iter().enumerate() {
            if (q - 0.5).abs() < (self.quantiles[best] - 0.5).abs() {
                best = i;
            }
        }
        best
    }
}

/// Optimisation settings (not saved: they do not change what the model computes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Upper bound on passes over the training windows.
    pub max_epochs: usize,
    /// Stop after this many epochs without a validation improvement.
    pub patience: usize,
    /// Windows per optimiser step.
    pub batch_size: usize,
    /// Adam step size.
    pub learning_rate: f64,
    /// L2 penalty (Adam weight decay).
    pub weight_decay: f32,
    /// Seed of initialisation, subsampling, shuffling and dropout.
    pub seed: u64,
    /// Training windows are subsampled (seeded) to at most this many.
    pub max_windows: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            max_epochs: 40,
            patience: 5,
            batch_size: 256,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            seed: 42,
            max_windows: 100_000,
        }
    }
}

/// The network: `width → hidden… → horizons × quantiles`, monotone in the quantile axis.
#[derive(Module, Debug)]
pub struct QuantileNet {
    layers: Vec<Linear>,
    head: Linear,
    dropout: f64,
    horizons: usize,
    quantiles: usize,
}

impl QuantileNet {
    fn build(c: &ForecastConfig, device: &Device) -> Self {
        let mut layers = Vec::new();
        let mut width = c.features.width();
        for &h in &c.hidden {
            layers.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        let (nh, nq) = (c.features.horizons.len(), c.quantiles.len());
        QuantileNet {
            layers,
            head: LinearConfig::new(width, nh * nq).init(device),
            dropout: c.dropout,
            horizons: nh,
            quantiles: nq,
        }
    }

    /// `[rows, width]` → `[rows, horizons, quantiles]`, non-decreasing along the last axis.
    /// `rng` is `Some` only while training (dropout on).
    fn forward(&self, mut x: Tensor<2>, mut rng: Option<&mut ChaCha8Rng>) -> Tensor<3> {
        for layer in &self.layers {
            x = dropout(relu(layer.forward(x)), self.dropout, rng.as_deref_mut());
        }
        let rows = x.dims()[0];
        let (nh, nq) = (self.horizons, self.quantiles);
        let out: Tensor<3> = self.head.forward(x).reshape([rows, nh, nq]);
        if nq == 1 {
            return out;
        }
        let first = out.clone().slice([0..rows, 0..nh, 0..1]);
        let steps = softplus(out.slice([0..rows, 0..nh, 1..nq]), 1.0);
        Tensor::cat(vec![first, steps], 2).cumsum(2)
    }
}

/// Mean pinball loss of `pred` `[rows, h, q]` against `y` `[rows, h]`, levels `tau` `[1, 1, q]`.
fn pinball(pred: Tensor<3>, y: Tensor<2>, tau: Tensor<3>) -> Tensor<1> {
    let [rows, nh] = y.dims();
    let diff = y.reshape([rows, nh, 1]) - pred;
    let over = diff.clone() * tau.clone();
    let under = diff * tau.sub_scalar(1.0);
    over.max_pair(under).mean()
}

/// Model inputs and targets, row-major: `x` is `rows × width`, `y` is `rows × horizons`
/// (targets in scale units, see [`FeatureSpec::target`]).
#[derive(Debug, Clone, Default)]
pub struct WindowSet {
    /// Inputs.
    pub x: Vec<f32>,
    /// Targets.
    pub y: Vec<f32>,
    /// Rows.
    pub rows: usize,
    /// Rows whose seasonal inputs were available.
    pub seasonal_rows: usize,
}

impl WindowSet {
    /// Appends every origin in `origins` of `values` (steps starting at `start_ms`) whose
    /// window and targets are complete.
    pub fn extend(
        &mut self,
        spec: &FeatureSpec,
        values: &[f64],
        start_ms: i64,
        origins: std::ops::Range<usize>,
    ) {
        let hmax = spec.max_horizon();
        let end = origins.end.min(values.len().saturating_sub(hmax));
        for t in origins.start..end {
            let targets: Option<Vec<f64>> = spec
                .horizons
                .iter()
                .map(|&h| Some(values[t + h]).filter(|v| v.is_finite()))
                .collect();
            let Some(targets) = targets else { continue };
            let before = self.x.len();
            let origin_ms = start_ms + t as i64 * spec.step_ms;
            let Some(w) = spec.window(&values[..=t], origin_ms, &mut self.x) else {
                continue;
            };
            debug_assert_eq!(self.x.len() - before, spec.width());
            self.y.extend(targets.iter().map(|&f| spec.target(&w, f)));
            self.rows += 1;
            self.seasonal_rows += usize::from(w.seasonal);
        }
    }

    /// A seeded subsample of at most `n` rows (all rows, reordered, when fewer).
    fn subsample(&self, width: usize, nh: usize, n: usize, rng: &mut ChaCha8Rng) -> WindowSet {
        let mut idx: Vec<usize> = (0..self.rows).collect();
        idx.shuffle(rng);
        idx.truncate(n);
        idx.sort_unstable();
        let mut out = WindowSet::default();
        for i in idx {
            out.x.extend_from_slice(&self.x[i * width..(i + 1) * width]);
            out.y.extend_from_slice(&self.y[i * nh..(i + 1) * nh]);
            out.rows += 1;
        }
        out
    }
}

/// One epoch's losses (mean pinball, scale units).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochLoss {
    /// 1-based epoch.
    pub epoch: usize,
    /// Training loss (dropout on).
    pub train: f32,
    /// Validation loss.
    pub val: f32,
}

/// What training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Training windows used (after subsampling).
    pub train_windows: usize,
    /// Validation windows.
    pub val_windows: usize,
    /// Per-epoch losses.
    pub epochs: Vec<EpochLoss>,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
}

/// A trained forecaster in inference mode.
#[derive(Debug, Clone)]
pub struct ForecastModel {
    config: ForecastConfig,
    net: QuantileNet,
    device: Device,
}

const MAGIC: &[u8; 8] = b"AUSPXFC\0";
/// Version of the file layout; bumped when the layout or the meaning of a field changes.
pub const FILE_VERSION: u32 = 1;

fn tensor2(values: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

impl ForecastModel {
    /// Trains on `train`, early-stopping on `val` (both from [`WindowSet::extend`] with the
    /// config's features). `progress` gets `(epoch, train_loss, val_loss)`.
    pub fn fit(
        config: ForecastConfig,
        settings: &TrainSettings,
        train: &WindowSet,
        val: &WindowSet,
        device: NnDevice,
        mut progress: Option<&mut dyn FnMut(usize, f32, f32)>,
    ) -> Result<(ForecastModel, TrainReport), ForecastError> {
        config.validate()?;
        if train.rows == 0 || val.rows == 0 {
            return Err(ForecastError::Train(format!(
                "need training and validation windows, got {} and {}",
                train.rows, val.rows
            )));
        }
        if settings.max_epochs == 0 || settings.batch_size == 0 {
            return Err(ForecastError::Config(
                "max_epochs and batch_size must be > 0".into(),
            ));
        }
        let base = device
            .burn_device()
            .map_err(|e| ForecastError::Config(e.to_string()))?;
        let train_dev = base.clone().autodiff();
        let width = config.features.width();
        let (nh, nq) = (config.features.horizons.len(), config.quantiles.len());
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let train = train.subsample(width, nh, settings.max_windows, &mut rng);
        let mut model = seeded_init(QuantileNet::build(&config, &train_dev), &mut rng);
        let mut optim = AdamConfig::new()
            .with_weight_decay(
                (settings.weight_decay > 0.0)
                    .then(|| WeightDecayConfig::new(settings.weight_decay)),
            )
            .init();
        let taus: Vec<f32> = config.quantiles.iter().map(|&q| q as f32).collect();
        let tau_train = Tensor::<1>::from_data(TensorData::new(taus.clone(), [nq]), &train_dev)
            .reshape([1, 1, nq]);
        let tau_eval =
            Tensor::<1>::from_data(TensorData::new(taus, [nq]), &base).reshape([1, 1, nq]);

        let mut report = TrainReport {
            train_windows: train.rows,
            val_windows: val.rows,
            epochs: Vec::new(),
            best_epoch: 0,
        };
        let mut best = model.valid();
        let mut best_val = f32::INFINITY;
        let mut waited = 0;
        let mut order: Vec<usize> = (0..train.rows).collect();
        let (mut xb, mut yb) = (Vec::new(), Vec::new());
        for epoch in 1..=settings.max_epochs {
            order.shuffle(&mut rng);
            let (mut sum, mut n) = (0f64, 0usize);
            for chunk in order.chunks(settings.batch_size) {
                xb.clear();
                yb.clear();
                for &i in chunk {
                    xb.extend_from_slice(&train.x[i * width..(i + 1) * width]);
                    yb.extend_from_slice(&train.y[i * nh..(i + 1) * nh]);
                }
                let x = tensor2(&xb, [chunk.len(), width], &train_dev);
                let y = tensor2(&yb, [chunk.len(), nh], &train_dev);
                let loss = pinball(model.forward(x, Some(&mut rng)), y, tau_train.clone());
                let value = loss.clone().into_scalar::<f32>();
                if !value.is_finite() {
                    return Err(ForecastError::Train(format!(
                        "loss not finite ({value}) at epoch {epoch}"
                    )));
                }
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(settings.learning_rate, model, grads);
                sum += f64::from(value) * chunk.len() as f64;
                n += chunk.len();
            }
            let snapshot = model.valid();
            let val_loss = eval_loss(&snapshot, val, width, nh, &base, &tau_eval);
            let train_loss = (sum / n.max(1) as f64) as f32;
            report.epochs.push(EpochLoss {
                epoch,
                train: train_loss,
                val: val_loss,
            });
            if let Some(p) = progress.as_mut() {
                p(epoch, train_loss, val_loss);
            }
            if val_loss < best_val - 1e-5 {
                best_val = val_loss;
                best = snapshot;
                report.best_epoch = epoch;
                waited = 0;
            } else {
                waited += 1;
                if waited >= settings.patience {
                    break;
                }
            }
        }
        Ok((
            ForecastModel {
                config,
                net: best,
                device: base,
            },
            report,
        ))
    }

    /// The config the model was built from.
    pub fn config(&self) -> &ForecastConfig {
        &self.config
    }

    /// Quantile outputs in scale units for `rows` input rows: `rows × horizons × quantiles`,
    /// row-major.
    pub fn predict_z(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let width = self.config.features.width();
        let mut out = Vec::with_capacity(
            rows * self.config.features.horizons.len() * self.config.quantiles.len(),
        );
        const CHUNK: usize = 4096;
        let mut start = 0;
        while start < rows {
            let n = (rows - start).min(CHUNK);
            let t = tensor2(
                &x[start * width..(start + n) * width],
                [n, width],
                &self.device,
            );
            let z = self.net.forward(t, None).into_data();
            out.extend(z.iter::<f32>());
            start += n;
        }
        out
    }

    /// The model as bytes: magic, layout version, the config as JSON, the weights (burnpack)
    /// and a SHA-256 of everything before it.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ForecastError> {
        let header = serde_json::to_vec(&self.config)
            .map_err(|e| ForecastError::Config(format!("config to JSON: {e}")))?;
        let weights = self
            .net
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| ForecastError::Config(format!("weights record: {e}")))?;
        let mut out = Vec::with_capacity(8 + 4 + 4 + header.len() + 8 + weights.len() + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FILE_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&(weights.len() as u64).to_le_bytes());
        out.extend_from_slice(&weights);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// Reads [`ForecastModel::to_bytes`]; `source` names the bytes in errors (a path).
    pub fn from_bytes(bytes: &[u8], source: &str, device: NnDevice) -> Result<Self, ForecastError> {
        let bad = |reason: String| ForecastError::ModelFile {
            path: source.to_string(),
            reason,
        };
        if bytes.len() < 8 + 4 + 4 + 8 + 32 || &bytes[..8] != MAGIC {
            return Err(bad(
                "not an auspex forecast model (bad magic or too short)".into()
            ));
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err(bad(
                "checksum mismatch: the file is corrupt or truncated".into()
            ));
        }
        let version = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
        if version != FILE_VERSION {
            return Err(bad(format!(
                "layout version {version}, this build reads version {FILE_VERSION}"
            )));
        }
        let hlen = u32::from_le_bytes(body[12..16].try_into().expect("4 bytes")) as usize;
        let header = body
            .get(16..16 + hlen)
            .ok_or_else(|| bad("truncated config header".into()))?;
        let config: ForecastConfig =
            serde_json::from_slice(header).map_err(|e| bad(format!("config JSON: {e}")))?;
        config.validate().map_err(|e| bad(format!("config: {e}")))?;
        let rest = &body[16 + hlen..];
        let wlen = rest
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or_else(|| bad("truncated weights length".into()))?;
        let weights = rest
            .get(8..8 + wlen)
            .ok_or_else(|| bad("truncated weights".into()))?;
        let burn = device
            .burn_device()
            .map_err(|e| ForecastError::Config(e.to_string()))?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights.to_vec()))
            .map_err(|e| bad(format!("weights record: {e}")))?;
        let net = QuantileNet::build(&config, &burn)
            .try_load_record(record)
            .map_err(|e| bad(format!("weights do not fit the config: {e}")))?
            .valid();
        Ok(ForecastModel {
            config,
            net,
            device: burn,
        })
    }

    /// Writes the model to `path`.
    pub fn save(&self, path: &Path) -> Result<(), ForecastError> {
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|e| ForecastError::ModelFile {
            path: path.display().to_string(),
            reason: format!("write: {e}"),
        })
    }

    /// Reads a model written by [`ForecastModel::save`].
    pub fn load(path: &Path, device: NnDevice) -> Result<Self, ForecastError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ForecastError::ModelFile {
            path: name.clone(),
            reason: format!("read: {e}"),
        })?;
        Self::from_bytes(&bytes, &name, device)
    }
}

fn eval_loss(
    net: &QuantileNet,
    data: &WindowSet,
    width: usize,
    nh: usize,
    device: &Device,
    tau: &Tensor<3>,
) -> f32 {
    const CHUNK: usize = 8192;
    let (mut sum, mut n) = (0f64, 0usize);
    let mut start = 0;
    while start < data.rows {
        let rows = (data.rows - start).min(CHUNK);
        let x = tensor2(
            &data.x[start * width..(start + rows) * width],
            [rows, width],
            device,
        );
        let y = tensor2(&data.y[start * nh..(start + rows) * nh], [rows, nh], device);
        let l = pinball(net.forward(x, None), y, tau.clone()).into_scalar::<f32>();
        sum += f64::from(l) * rows as f64;
        n += rows;
        start += rows;
    }
    (sum / n.max(1) as f64) as f32
}
