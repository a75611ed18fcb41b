//! The LSTM branch: burn's `Lstm` over a metric window, the last hidden state through dropout
//! into `K` logits. Whole windows are scored in batches; [`LstmModel::step`] advances saved
//! per-entity states by one sample for streaming.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, LstmConfig as BurnLstmConfig, LstmState};
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use std::sync::OnceLock;

use crate::data::{Labeled, Sequences};
use crate::init::dropout;
use crate::lstm_cpu::LstmKernel;
use crate::mlp::{RowSource, check_dropout, check_pair, label_counts};
use crate::persist::Core;
use crate::train::{
    Batch, Net, Progress, Source, TrainConfig, TrainHistory, fit, probabilities, tensor2,
};
use crate::{K, NnDevice, NnError, shape_err};

/// LSTM hyper-parameters.
#[derive(Config, Debug)]
pub struct LstmConfig {
    /// Channels per step (values and masks).
    pub d_input: usize,
    /// Hidden state width.
    #[config(default = 32)]
    pub hidden: usize,
    /// Dropout on the last hidden state while training.
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// `Lstm(d_input → hidden)` → last hidden → `Linear(hidden → K)`.
#[derive(Module, Debug)]
pub struct Lstm {
    lstm: burn::nn::Lstm,
    head: Linear,
    dropout: f64,
}

impl Net for Lstm {
    type Config = LstmConfig;
    type Input = Tensor<3>;
    const BRANCH: &'static str = "lstm";

    fn build(c: &LstmConfig, device: &Device) -> Result<Self, NnError> {
        check_dropout(c.dropout)?;
        if c.d_input == 0 || c.hidden == 0 {
            return Err(NnError::Config(
                "lstm: d_input and hidden must be > 0".into(),
            ));
        }
        Ok(Lstm {
            lstm: BurnLstmConfig::new(c.d_input, c.hidden, true).init(device),
            head: LinearConfig::new(c.hidden, K).init(device),
            dropout: c.dropout,
        })
    }

    fn logits(&self, x: Tensor<3>, rng: Option<&mut ChaCha8Rng>) -> Tensor<2> {
        let (_, state) = self.lstm.forward(x, None);
        self.head.forward(dropout(state.hidden, self.dropout, rng))
    }
}

/// Windows `[n, t, m]` as training batches.
pub(crate) struct SeqSource<'a> {
    pub rows: RowSource<'a>,
    pub t: usize,
    pub m: usize,
}

impl Source for SeqSource<'_> {
    type Input = Tensor<3>;

    fn units(&self) -> usize {
        self.rows.units()
    }

    fn batch(&self, idx: &[usize], device: &Device) -> Batch<Tensor<3>> {
        let b = self.rows.batch(idx, device);
        Batch {
            input: b.input.reshape([idx.len(), self.t, self.m]),
            y: b.y,
            w: b.w,
            weight_sum: b.weight_sum,
        }
    }

    fn label_counts(&self) -> ([f64; K], [f64; K]) {
        label_counts(self.rows.labels)
    }
}

pub(crate) fn seq_source<'a>(s: &Labeled<'a, Sequences>) -> SeqSource<'a> {
    SeqSource {
        rows: RowSource {
            x: &s.x.x,
            d: s.x.t * s.x.m,
            labels: s.labels,
        },
        t: s.x.t,
        m: s.x.m,
    }
}

pub(crate) fn check_seq_sets(sets: [&Labeled<'_, Sequences>; 2], m: usize) -> Result<(), NnError> {
    for set in sets {
        set.x.validate()?;
        check_pair(set.x.n, set.labels)?;
        if set.x.m != m {
            return Err(shape_err(
                "sequences",
                format!("m = {}, config.d_input = {m}", set.x.m),
            ));
        }
    }
    Ok(())
}

/// Scores windows in batches with any sequence network.
pub(crate) fn predict_windows<N: Net<Input = Tensor<3>>>(
    core: &Core<N>,
    d_input: usize,
    x: &Sequences,
    batch: usize,
) -> Result<Vec<f32>, NnError> {
    x.validate()?;
    if x.m != d_input {
        return Err(shape_err(
            "sequences",
            format!("m = {}, model expects {d_input}", x.m),
        ));
    }
    let w = x.t * x.m;
    let batch = batch.max(1);
    let mut out = Vec::with_capacity(x.n * K);
    for start in (0..x.n).step_by(batch) {
        let rows = batch.min(x.n - start);
        let input = tensor2(
            x.x[start * w..(start + rows) * w].to_vec(),
            [rows, w],
            &core.burn,
        )
        .reshape([rows, x.t, x.m]);
        out.extend(probabilities(core.net.logits(input, None)));
    }
    Ok(out)
}

/// The recurrent state of `n` entities between [`LstmModel::step`] calls.
#[derive(Debug, Clone)]
pub struct LstmStreamState {
    state: LstmState<2>,
    n: usize,
}

impl LstmStreamState {
    /// Entities in the state.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether it holds no entity.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// A trained LSTM branch.
#[derive(Debug, Clone)]
pub struct LstmModel {
    core: Core<Lstm>,
    /// On the CPU, whole windows are scored by plain loops over the same weights (see
    /// [`LstmKernel`]); built on first use.
    kernel: OnceLock<Option<LstmKernel>>,
}

impl LstmModel {
    fn new(core: Core<Lstm>) -> Self {
        LstmModel {
            core,
            kernel: OnceLock::new(),
        }
    }

    /// An untrained model with seeded random weights (for benchmarks and wiring tests).
    pub fn init(config: LstmConfig, device: NnDevice, seed: u64) -> Result<Self, NnError> {
        Ok(LstmModel::new(Core::init(config, device, seed)?))
    }

    /// The device it runs on.
    pub fn device(&self) -> NnDevice {
        self.core.device
    }

    /// The hyper-parameters it was built with.
    pub fn config(&self) -> &LstmConfig {
        &self.core.config
    }

    /// `n × K` probabilities for whole windows, `batch` windows per forward pass. On the CPU
    /// the windows are scored by [`LstmKernel`] (the same probabilities to about 10⁻⁶, several
    /// times faster) and `batch` does not matter.
    pub fn predict_batched(&self, x: &Sequences, batch: usize) -> Result<Vec<f32>, NnError> {
        if let Some(k) = self.cpu_kernel() {
            x.validate()?;
            if x.m != self.core.config.d_input {
                return Err(shape_err(
                    "sequences",
                    format!("m = {}, model expects {}", x.m, self.core.config.d_input),
                ));
            }
            return Ok(k.predict(&x.x, x.n, x.t));
        }
        self.predict_batched_burn(x, batch)
    }

    /// [`predict_batched`](Self::predict_batched) through burn on the model's device.
    pub fn predict_batched_burn(&self, x: &Sequences, batch: usize) -> Result<Vec<f32>, NnError> {
        predict_windows(&self.core, self.core.config.d_input, x, batch)
    }

    fn cpu_kernel(&self) -> Option<&LstmKernel> {
        if self.core.device != NnDevice::Cpu {
            return None;
        }
        self.kernel
            .get_or_init(|| LstmKernel::new(&self.core.net.lstm, &self.core.net.head))
            .as_ref()
    }

    /// `n × K` probabilities for whole windows (batches of 1024).
    pub fn predict(&self, x: &Sequences) -> Result<Vec<f32>, NnError> {
        self.predict_batched(x, 1024)
    }

    /// Advances `n` entities by one sample each (`x`: `n × m`, row-major) from `state` (`None`:
    /// zeros) and returns their `n × K` probabilities after this step and the new state.
    /// Stepping a window sample by sample gives the same probabilities as [`predict`](Self::predict).
    pub fn step(
        &self,
        x: &[f32],
        state: Option<LstmStreamState>,
    ) -> Result<(Vec<f32>, LstmStreamState), NnError> {
        let m = self.core.config.d_input;
        if !x.len().is_multiple_of(m) {
            return Err(shape_err(
                "lstm step",
                format!("{} values are not rows of {m}", x.len()),
            ));
        }
        let n = x.len() / m;
        if let Some(s) = &state
            && s.n != n
        {
            return Err(shape_err(
                "lstm step",
                format!("state holds {} entities, input {n}", s.n),
            ));
        }
        let input = tensor2(x.to_vec(), [n, m], &self.core.burn).reshape([n, 1, m]);
        let (_, new) = self.core.net.lstm.forward(input, state.map(|s| s.state));
        let probs = probabilities(self.core.net.head.forward(new.hidden.clone()));
        Ok((probs, LstmStreamState { state: new, n }))
    }

    /// Config JSON + weights, loadable with [`from_bytes`](Self::from_bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        self.core.to_bytes()
    }

    /// Loads a model saved by [`to_bytes`](Self::to_bytes) onto `device`.
    pub fn from_bytes(bytes: &[u8], device: NnDevice) -> Result<Self, NnError> {
        Ok(LstmModel::new(Core::from_bytes(bytes, device)?))
    }
}

/// Trains an LSTM on `train` windows, early-stopping on `val`.
pub fn fit_lstm(
    config: &LstmConfig,
    train_config: &TrainConfig,
    train: Labeled<'_, Sequences>,
    val: Labeled<'_, Sequences>,
    device: NnDevice,
    progress: Option<Progress<'_>>,
) -> Result<(LstmModel, TrainHistory), NnError> {
    check_seq_sets([&train, &val], config.d_input)?;
    let (net, history) = fit::<Lstm, _>(
        config,
        train_config,
        &seq_source(&train),
        &seq_source(&val),
        (train_config.batch_size, train_config.eval_batch),
        device,
        progress,
    )?;
    Ok((
        LstmModel::new(Core::new(config.clone(), net, device)?),
        history,
    ))
}
