//! The training loop every branch shares: seeded init, shuffled mini-batches, class-weighted
//! BCE, Adam with L2, validation loss per epoch, early stopping that returns the best epoch.

use burn::config::Config;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::init::seeded_init;
use crate::loss::{pos_weights, weighted_bce_sum};
use crate::{K, NnDevice, NnError};

/// Called after every epoch with `(epoch, train_loss, val_loss)` (epoch 1-based).
pub type Progress<'a> = &'a mut dyn FnMut(usize, f32, f32);

/// Optimisation settings shared by all branches.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// Upper bound on passes over the training set.
    #[config(default = 60)]
    pub max_epochs: usize,
    /// Stop after this many epochs without a validation-loss improvement.
    #[config(default = 6)]
    pub patience: usize,
    /// Smallest validation-loss decrease that counts as an improvement.
    #[config(default = 1e-4)]
    pub min_delta: f32,
    /// Rows (MLP) or windows (LSTM, TCN) per optimiser step.
    #[config(default = 128)]
    pub batch_size: usize,
    /// Graph snapshots per optimiser step (GNN); they are joined into one disjoint graph.
    #[config(default = 1)]
    pub graphs_per_batch: usize,
    /// Adam step size.
    #[config(default = 3e-3)]
    pub learning_rate: f64,
    /// L2 penalty added to the gradients (Adam weight decay); 0 disables it.
    #[config(default = 1e-4)]
    pub weight_decay: f32,
    /// Clip each parameter's gradient to this L2 norm; 0 disables clipping.
    #[config(default = 5.0)]
    pub grad_clip_norm: f32,
    /// Weight positives of each head by `negatives / positives` of the training labels.
    #[config(default = true)]
    pub class_weighting: bool,
    /// Upper bound on a head's positive weight.
    #[config(default = 50.0)]
    pub pos_weight_cap: f32,
    /// Seed for initialisation, shuffling and dropout.
    #[config(default = 42)]
    pub seed: u64,
    /// Rows or windows per forward pass when evaluating and predicting.
    #[config(default = 2048)]
    pub eval_batch: usize,
}

/// Losses after one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean weighted training loss over the epoch's steps (dropout on).
    pub train_loss: f32,
    /// Mean weighted validation loss after the epoch (inference mode).
    pub val_loss: f32,
}

/// What happened during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainHistory {
    /// One entry per epoch run.
    pub epochs: Vec<EpochStats>,
    /// The epoch whose weights were returned (lowest validation loss).
    pub best_epoch: usize,
    /// Its validation loss.
    pub best_val_loss: f32,
    /// Whether patience ran out before `max_epochs`.
    pub stopped_early: bool,
    /// The per-head positive weights used in the loss.
    pub pos_weight: [f32; K],
}

/// One mini-batch as tensors.
pub(crate) struct Batch<I> {
    pub input: I,
    /// `[rows, K]` targets.
    pub y: Tensor<2>,
    /// `[rows, 1]` row weights (0 for rows outside the loss).
    pub w: Tensor<2>,
    /// `Σ w` (host side).
    pub weight_sum: f32,
}

/// A branch's network: built from its config, maps an input batch to `[rows, K]` logits.
pub(crate) trait Net: Module + Sized {
    type Config: Config + Clone;
    type Input;
    /// Tag stored in saved bytes.
    const BRANCH: &'static str;
    fn build(config: &Self::Config, device: &Device) -> Result<Self, NnError>;
    /// `rng` is `Some` only while training (dropout on).
    fn logits(&self, input: Self::Input, rng: Option<&mut ChaCha8Rng>) -> Tensor<2>;
}

/// A labelled data set cut into batches of shuffle units (rows, windows or graph snapshots).
pub(crate) trait Source {
    type Input;
    fn units(&self) -> usize;
    fn batch(&self, idx: &[usize], device: &Device) -> Batch<Self::Input>;
    /// Weighted positives and weighted rows per head.
    fn label_counts(&self) -> ([f64; K], [f64; K]);
}

pub(crate) fn tensor2(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Trains `N` on `train`, early-stopping on `val`; returns the best-validation network in
/// inference mode (no autodiff) and the history.
pub(crate) fn fit<N, S>(
    config: &N::Config,
    tc: &TrainConfig,
    train: &S,
    val: &S,
    (batch_units, eval_units): (usize, usize),
    device: NnDevice,
    mut progress: Option<Progress<'_>>,
) -> Result<(N, TrainHistory), NnError>
where
    N: Net,
    S: Source<Input = N::Input>,
{
    if train.units() == 0 || val.units() == 0 {
        return Err(NnError::Config("empty training or validation set".into()));
    }
    if tc.max_epochs == 0 || batch_units == 0 || eval_units == 0 {
        return Err(NnError::Config(
            "max_epochs, batch sizes must be > 0".into(),
        ));
    }
    let base = device.burn_device()?;
    let train_dev = base.clone().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(tc.seed);
    let mut model = seeded_init(N::build(config, &train_dev)?, &mut rng);

    let mut adam = AdamConfig::new().with_weight_decay(
        (tc.weight_decay > 0.0).then(|| WeightDecayConfig::new(tc.weight_decay)),
    );
    if tc.grad_clip_norm > 0.0 {
        adam = adam.with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(
            tc.grad_clip_norm,
        )));
    }
    let mut optim = adam.init();

    let (pos, total) = train.label_counts();
    let pw = pos_weights(pos, total, tc.class_weighting, tc.pos_weight_cap);
    let pw_train = tensor2(pw.to_vec(), [1, K], &train_dev);
    let pw_eval = tensor2(pw.to_vec(), [1, K], &base);

    let mut order: Vec<usize> = (0..train.units()).collect();
    let mut history = TrainHistory {
        epochs: Vec::new(),
        best_epoch: 0,
        best_val_loss: f32::INFINITY,
        stopped_early: false,
        pos_weight: pw,
    };
    let mut best = model.valid();
    let mut waited = 0;
    for epoch in 1..=tc.max_epochs {
        order.shuffle(&mut rng);
        let (mut sum, mut wsum) = (0f64, 0f64);
        for chunk in order.chunks(batch_units) {
            let b = train.batch(chunk, &train_dev);
            if b.weight_sum <= 0.0 {
                continue;
            }
            let logits = model.logits(b.input, Some(&mut rng));
            let loss = weighted_bce_sum(logits, b.y, b.w, pw_train.clone())
                .div_scalar(b.weight_sum * K as f32);
            let value = loss.clone().into_scalar::<f32>();
            if !value.is_finite() {
                return Err(NnError::Diverged { epoch, loss: value });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(tc.learning_rate, model, grads);
            sum += f64::from(value) * f64::from(b.weight_sum);
            wsum += f64::from(b.weight_sum);
        }
        let train_loss = if wsum > 0.0 {
            (sum / wsum) as f32
        } else {
            f32::NAN
        };
        let snapshot = model.valid();
        let val_loss = eval_loss(&snapshot, val, &base, &pw_eval, eval_units);
        if !val_loss.is_finite() {
            return Err(NnError::Diverged {
                epoch,
                loss: val_loss,
            });
        }
        history.epochs.push(EpochStats {
            epoch,
            train_loss,
            val_loss,
        });
        if let Some(p) = progress.as_mut() {
            p(epoch, train_loss, val_loss);
        }
        if val_loss < history.best_val_loss - tc.min_delta {
            history.best_val_loss = val_loss;
            history.best_epoch = epoch;
            best = snapshot;
            waited = 0;
        } else {
            waited += 1;
            if waited >= tc.patience {
                history.stopped_early = epoch < tc.max_epochs;
                break;
            }
        }
    }
    Ok((best, history))
}

/// Mean weighted loss of an inference-mode network over a whole set.
pub(crate) fn eval_loss<N, S>(
    net: &N,
    data: &S,
    device: &Device,
    pos_w: &Tensor<2>,
    eval_units: usize,
) -> f32
where
    N: Net,
    S: Source<Input = N::Input>,
{
    let idx: Vec<usize> = (0..data.units()).collect();
    let (mut sum, mut wsum) = (0f64, 0f64);
    for chunk in idx.chunks(eval_units) {
        let b = data.batch(chunk, device);
        if b.weight_sum <= 0.0 {
            continue;
        }
        let logits = net.logits(b.input, None);
        sum += f64::from(weighted_bce_sum(logits, b.y, b.w, pos_w.clone()).into_scalar::<f32>());
        wsum += f64::from(b.weight_sum);
    }
    if wsum > 0.0 {
        (sum / (wsum * K as f64)) as f32
    } else {
        f32::NAN
    }
}

/// Sigmoid of the logits, flattened row-major.
pub(crate) fn probabilities(logits: Tensor<2>) -> Vec<f32> {
    burn::tensor::activation::sigmoid(logits)
        .into_data()
        .try_into_vec::<f32>()
        .expect("logits are f32")
}
