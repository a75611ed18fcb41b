//! The ANN branch: a multi-layer perceptron over a row of tabular features.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use crate::data::{Labeled, Tabular};
use crate::init::dropout;
use crate::persist::Core;
use crate::train::{
    Batch, Net, Progress, Source, TrainConfig, TrainHistory, fit, probabilities, tensor2,
};
use crate::{K, NnDevice, NnError, shape_err};

/// MLP hyper-parameters.
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input features per row.
    pub d_input: usize,
    /// Widths of the hidden layers (ReLU after each).
    #[config(default = "vec![64, 32]")]
    pub hidden: Vec<usize>,
    /// Dropout after each hidden layer while training.
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// `d_input → hidden… → K` logits.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    head: Linear,
    dropout: f64,
}

pub(crate) fn check_dropout(p: f64) -> Result<(), NnError> {
    if p.is_finite() && (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(NnError::Config(format!("dropout {p} outside [0, 1)")))
    }
}

impl Net for Mlp {
    type Config = MlpConfig;
    type Input = Tensor<2>;
    const BRANCH: &'static str = "mlp";

    fn build(c: &MlpConfig, device: &Device) -> Result<Self, NnError> {
        check_dropout(c.dropout)?;
        if c.d_input == 0 || c.hidden.contains(&0) {
            return Err(NnError::Config(
                "mlp: d_input and hidden widths must be > 0".into(),
            ));
        }
        let mut layers = Vec::new();
        let mut width = c.d_input;
        for &h in &c.hidden {
            layers.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        Ok(Mlp {
            layers,
            head: LinearConfig::new(width, K).init(device),
            dropout: c.dropout,
        })
    }

    fn logits(&self, mut x: Tensor<2>, mut rng: Option<&mut ChaCha8Rng>) -> Tensor<2> {
        for layer in &self.layers {
            x = dropout(relu(layer.forward(x)), self.dropout, rng.as_deref_mut());
        }
        self.head.forward(x)
    }
}

/// Rows of width `d` with their labels (also the LSTM/TCN windows, flattened).
pub(crate) struct RowSource<'a> {
    pub x: &'a [f32],
    pub d: usize,
    pub labels: &'a crate::Labels,
}

impl Source for RowSource<'_> {
    type Input = Tensor<2>;

    fn units(&self) -> usize {
        self.labels.n
    }

    fn batch(&self, idx: &[usize], device: &Device) -> Batch<Tensor<2>> {
        let (x, y, w, weight_sum) = gather_rows(self.x, self.d, self.labels, idx);
        Batch {
            input: tensor2(x, [idx.len(), self.d], device),
            y: tensor2(y, [idx.len(), K], device),
            w: tensor2(w, [idx.len(), 1], device),
            weight_sum,
        }
    }

    fn label_counts(&self) -> ([f64; K], [f64; K]) {
        label_counts(self.labels)
    }
}

/// Copies the rows `idx` (of width `d`) with their targets and weights.
pub(crate) fn gather_rows(
    x: &[f32],
    d: usize,
    labels: &crate::Labels,
    idx: &[usize],
) -> (Vec<f32>, Vec<f32>, Vec<f32>, f32) {
    let mut xs = Vec::with_capacity(idx.len() * d);
    let mut ys = Vec::with_capacity(idx.len() * K);
    let mut ws = Vec::with_capacity(idx.len());
    for &i in idx {
        xs.extend_from_slice(&x[i * d..(i + 1) * d]);
        ys.extend_from_slice(&labels.y[i * K..(i + 1) * K]);
        ws.push(labels.row_weight(i));
    }
    let sum = ws.iter().sum();
    (xs, ys, ws, sum)
}

pub(crate) fn label_counts(labels: &crate::Labels) -> ([f64; K], [f64; K]) {
    let mut pos = [0f64; K];
    let mut tot = [0f64; K];
    for i in 0..labels.n {
        let w = f64::from(labels.row_weight(i));
        for k in 0..K {
            tot[k] += w;
            pos[k] += w * f64::from(labels.y[i * K + k]);
        }
    }
    (pos, tot)
}

/// Checks an `(x, labels)` pair: shapes agree and labels are well-formed.
pub(crate) fn check_pair(n: usize, labels: &crate::Labels) -> Result<(), NnError> {
    labels.validate()?;
    if labels.n != n {
        return Err(shape_err(
            "labels",
            format!("{} label rows for {n} inputs", labels.n),
        ));
    }
    Ok(())
}

/// A trained MLP branch.
#[derive(Debug, Clone)]
pub struct MlpModel {
    core: Core<Mlp>,
}

impl MlpModel {
    /// An untrained model with seeded random weights (for benchmarks and wiring tests).
    pub fn init(config: MlpConfig, device: NnDevice, seed: u64) -> Result<Self, NnError> {
        Ok(MlpModel {
            core: Core::init(config, device, seed)?,
        })
    }

    /// The device it runs on.
    pub fn device(&self) -> NnDevice {
        self.core.device
    }

    /// The hyper-parameters it was built with.
    pub fn config(&self) -> &MlpConfig {
        &self.core.config
    }

    /// `n × K` probabilities, computed in batches of `batch` rows.
    pub fn predict_batched(&self, x: &Tabular, batch: usize) -> Result<Vec<f32>, NnError> {
        x.validate()?;
        if x.d != self.core.config.d_input {
            return Err(shape_err(
                "tabular",
                format!("d = {}, model expects {}", x.d, self.core.config.d_input),
            ));
        }
        let mut out = Vec::with_capacity(x.n * K);
        for start in (0..x.n).step_by(batch.max(1)) {
            let rows = batch.max(1).min(x.n - start);
            let input = tensor2(
                x.x[start * x.d..(start + rows) * x.d].to_vec(),
                [rows, x.d],
                &self.core.burn,
            );
            out.extend(probabilities(self.core.net.logits(input, None)));
        }
        Ok(out)
    }

    /// `n × K` probabilities (batches of 4096 rows).
    pub fn predict(&self, x: &Tabular) -> Result<Vec<f32>, NnError> {
        self.predict_batched(x, 4096)
    }

    /// Config JSON + weights, loadable with [`from_bytes`](Self::from_bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        self.core.to_bytes()
    }

    /// Loads a model saved by [`to_bytes`](Self::to_bytes) onto `device`.
    pub fn from_bytes(bytes: &[u8], device: NnDevice) -> Result<Self, NnError> {
        Ok(MlpModel {
            core: Core::from_bytes(bytes, device)?,
        })
    }
}

/// Trains an MLP on `train`, early-stopping on `val`.
pub fn fit_mlp(
    config: &MlpConfig,
    train_config: &TrainConfig,
    train: Labeled<'_, Tabular>,
    val: Labeled<'_, Tabular>,
    device: NnDevice,
    progress: Option<Progress<'_>>,
) -> Result<(MlpModel, TrainHistory), NnError> {
    for set in [&train, &val] {
        set.x.validate()?;
        check_pair(set.x.n, set.labels)?;
        if set.x.d != config.d_input {
            return Err(shape_err(
                "tabular",
                format!("d = {}, config.d_input = {}", set.x.d, config.d_input),
            ));
        }
    }
    fn src(s: Labeled<'_, Tabular>) -> RowSource<'_> {
        RowSource {
            x: &s.x.x,
            d: s.x.d,
            labels: s.labels,
        }
    }
    let (net, history) = fit::<Mlp, _>(
        config,
        train_config,
        &src(train),
        &src(val),
        (train_config.batch_size, train_config.eval_batch),
        device,
        progress,
    )?;
    Ok((
        MlpModel {
            core: Core::new(config.clone(), net, device)?,
        },
        history,
    ))
}
