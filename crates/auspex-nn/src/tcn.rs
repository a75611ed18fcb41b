//! The temporal CNN branch: causal dilated `Conv1d` layers (dilations 1, 2, 4, …) with residual
//! connections, then global-average and last-step pooling into `K` logits.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig1d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use crate::data::{Labeled, Sequences};
use crate::init::dropout;
use crate::lstm::{check_seq_sets, predict_windows, seq_source};
use crate::mlp::check_dropout;
use crate::persist::Core;
use crate::train::{Net, Progress, TrainConfig, TrainHistory, fit};
use crate::{K, NnDevice, NnError};

/// Temporal CNN hyper-parameters.
#[derive(Config, Debug)]
pub struct TcnConfig {
    /// Channels per step (values and masks).
    pub d_input: usize,
    /// Feature maps per convolution.
    #[config(default = 32)]
    pub channels: usize,
    /// Kernel width.
    #[config(default = 3)]
    pub kernel: usize,
    /// One causal convolution per entry, with this dilation.
    #[config(default = "vec![1, 2, 4]")]
    pub dilations: Vec<usize>,
    /// Dropout after each convolution while training.
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// Causal dilated convolutions → [mean over time, last step] → `Linear(2·channels → K)`.
#[derive(Module, Debug)]
pub struct Tcn {
    convs: Vec<Conv1d>,
    head: Linear,
    dropout: f64,
}

impl Net for Tcn {
    type Config = TcnConfig;
    type Input = Tensor<3>;
    const BRANCH: &'static str = "tcn";

    fn build(c: &TcnConfig, device: &Device) -> Result<Self, NnError> {
        check_dropout(c.dropout)?;
        if c.d_input == 0 || c.channels == 0 || c.kernel == 0 || c.dilations.is_empty() {
            return Err(NnError::Config(
                "tcn: d_input, channels, kernel and dilations must be non-empty".into(),
            ));
        }
        if c.dilations.contains(&0) {
            return Err(NnError::Config("tcn: dilations must be ≥ 1".into()));
        }
        let convs = c
            .dilations
            .iter()
            .enumerate()
            .map(|(i, &dil)| {
                let c_in = if i == 0 { c.d_input } else { c.channels };
                // Left padding only: step s sees steps ≤ s, so the last step summarises the
                // whole receptive field without looking ahead.
                Conv1dConfig::new(c_in, c.channels, c.kernel)
                    .with_dilation(dil)
                    .with_padding(PaddingConfig1d::Explicit((c.kernel - 1) * dil, 0))
                    .init(device)
            })
            .collect();
        Ok(Tcn {
            convs,
            head: LinearConfig::new(2 * c.channels, K).init(device),
            dropout: c.dropout,
        })
    }

    fn logits(&self, x: Tensor<3>, mut rng: Option<&mut ChaCha8Rng>) -> Tensor<2> {
        // [batch, time, channels] → [batch, channels, time]
        let mut h = x.swap_dims(1, 2);
        for (i, conv) in self.convs.iter().enumerate() {
            let y = relu(conv.forward(h.clone()));
            let y = if i == 0 { y } else { y + h };
            h = dropout(y, self.dropout, rng.as_deref_mut());
        }
        let [b, c, t] = h.dims();
        let mean = h.clone().mean_dim(2).reshape([b, c]);
        let last = h.narrow(2, t - 1, 1).reshape([b, c]);
        self.head.forward(Tensor::cat(vec![mean, last], 1))
    }
}

/// A trained temporal CNN branch.
#[derive(Debug, Clone)]
pub struct TcnModel {
    core: Core<Tcn>,
}

impl TcnModel {
    /// An untrained model with seeded random weights (for benchmarks and wiring tests).
    pub fn init(config: TcnConfig, device: NnDevice, seed: u64) -> Result<Self, NnError> {
        Ok(TcnModel {
            core: Core::init(config, device, seed)?,
        })
    }

    /// The device it runs on.
    pub fn device(&self) -> NnDevice {
        self.core.device
    }

    /// The hyper-parameters it was built with.
    pub fn config(&self) -> &TcnConfig {
        &self.core.config
    }

    /// `n × K` probabilities for whole windows, `batch` windows per forward pass.
    pub fn predict_batched(&self, x: &Sequences, batch: usize) -> Result<Vec<f32>, NnError> {
        predict_windows(&self.core, self.core.config.d_input, x, batch)
    }

    /// `n × K` probabilities for whole windows (batches of 1024).
    pub fn predict(&self, x: &Sequences) -> Result<Vec<f32>, NnError> {
        self.predict_batched(x, 1024)
    }

    /// Config JSON + weights, loadable with [`from_bytes`](Self::from_bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        self.core.to_bytes()
    }

    /// Loads a model saved by [`to_bytes`](Self::to_bytes) onto `device`.
    pub fn from_bytes(bytes: &[u8], device: NnDevice) -> Result<Self, NnError> {
        Ok(TcnModel {
            core: Core::from_bytes(bytes, device)?,
        })
    }
}

/// Trains a temporal CNN on `train` windows, early-stopping on `val`.
pub fn fit_tcn(
    config: &TcnConfig,
    train_config: &TrainConfig,
    train: Labeled<'_, Sequences>,
    val: Labeled<'_, Sequences>,
    device: NnDevice,
    progress: Option<Progress<'_>>,
) -> Result<(TcnModel, TrainHistory), NnError> {
    check_seq_sets([&train, &val], config.d_input)?;
    let (net, history) = fit::<Tcn, _>(
        config,
        train_config,
        &seq_source(&train),
        &seq_source(&val),
        (train_config.batch_size, train_config.eval_batch),
        device,
        progress,
    )?;
    Ok((
        TcnModel {
            core: Core::new(config.clone(), net, device)?,
        },
        history,
    ))
}
