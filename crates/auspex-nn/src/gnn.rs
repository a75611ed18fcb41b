//! The GNN branch: relation-typed GraphSAGE layers over one scoring tick's topology. Per
//! relation `r`, node `v` averages its in-neighbours' states (gather with `select`, scatter-add
//! with `select_assign(.., IndexingUpdateOp::Add)`, divide by the in-degree); the self state and
//! the `R` averages are mixed by one `Linear` over their concatenation, computed as a self
//! projection plus one per relation (its weight's row blocks), averaged after projecting.
//! ReLU and dropout follow; a `Linear` head gives `K` logits per node.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;

use crate::data::GraphSnapshot;
use crate::init::dropout;
use crate::mlp::check_dropout;
use crate::persist::Core;
use crate::train::{
    Batch, Net, Progress, Source, TrainConfig, TrainHistory, fit, probabilities, tensor2,
};
use crate::{K, NnDevice, NnError, shape_err};

/// GNN hyper-parameters.
#[derive(Config, Debug)]
pub struct GnnConfig {
    /// Features per node.
    pub d_input: usize,
    /// Node state width after each layer.
    #[config(default = 32)]
    pub hidden: usize,
    /// Message-passing layers (receptive field in hops).
    #[config(default = 2)]
    pub layers: usize,
    /// Edge relation ids `0..relations` (default: 3 edge kinds × 2 directions).
    #[config(default = 6)]
    pub relations: usize,
    /// Dropout after each layer while training.
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// One relation-typed SAGE layer: `Linear([h_v, mean_r h_u for r in 0..R]) `.
#[derive(Module, Debug)]
pub struct SageLayer {
    mix: Linear,
}

/// Message-passing layers → per-node `Linear(hidden → K)`.
#[derive(Module, Debug)]
pub struct Gnn {
    layers: Vec<SageLayer>,
    head: Linear,
    relations: usize,
    dropout: f64,
}

/// The edges of one relation, as index tensors.
#[derive(Debug, Clone)]
pub(crate) struct RelEdges {
    src: Tensor<1, Int>,
    dst: Tensor<1, Int>,
    /// `[n, 1]`: 1 / in-degree of each node for this relation (0 without in-edges).
    inv_deg: Tensor<2>,
}

/// A (possibly disjoint-union) graph as tensors.
#[derive(Debug, Clone)]
pub(crate) struct GraphInput {
    x: Tensor<2>,
    rels: Vec<Option<RelEdges>>,
}

impl SageLayer {
    /// `mix([h, mean_1 h, .., mean_R h])`, computed as `h·W_0 + b + Σ_r mean_r(h·W_r)` with
    /// `W_r` the weight's row blocks: the same function (the mean over in-neighbours is linear
    /// and commutes with the projection), but the messages gathered and scattered along the
    /// edges are `hidden` wide instead of the input's width, and no `[n, (R+1)·d]`
    /// concatenation is built (together 60 % of the GNN's time in a profile of serve, the
    /// first layer's input being the ~200 tabular features).
    fn forward(&self, h: Tensor<2>, rels: &[Option<RelEdges>]) -> Tensor<2> {
        let [n, d] = h.dims();
        let device = h.device();
        let w = self.mix.weight.val();
        let hidden = w.dims()[1];
        let block = |r: usize| w.clone().slice([r * d..(r + 1) * d, 0..hidden]);
        let mut out = h.clone().matmul(block(0));
        if let Some(b) = &self.mix.bias {
            out = out + b.val().unsqueeze::<2>();
        }
        for (r, rel) in rels.iter().enumerate() {
            if let Some(e) = rel {
                let messages = h.clone().matmul(block(r + 1)).select(0, e.src.clone());
                out = out
                    + Tensor::<2>::zeros([n, hidden], &device).select_assign(
                        0,
                        e.dst.clone(),
                        messages,
                        IndexingUpdateOp::Add,
                    ) * e.inv_deg.clone();
            }
        }
        out
    }
}

impl Net for Gnn {
    type Config = GnnConfig;
    type Input = GraphInput;
    const BRANCH: &'static str = "gnn";

    fn build(c: &GnnConfig, device: &Device) -> Result<Self, NnError> {
        check_dropout(c.dropout)?;
        if c.d_input == 0 || c.hidden == 0 || c.layers == 0 || c.relations == 0 {
            return Err(NnError::Config(
                "gnn: d_input, hidden, layers and relations must be > 0".into(),
            ));
        }
        if c.relations > 256 {
            return Err(NnError::Config("gnn: relation ids are u8 (≤ 256)".into()));
        }
        let layers = (0..c.layers)
            .map(|i| {
                let d_in = if i == 0 { c.d_input } else { c.hidden };
                SageLayer {
                    mix: LinearConfig::new((c.relations + 1) * d_in, c.hidden).init(device),
                }
            })
            .collect();
        Ok(Gnn {
            layers,
            head: LinearConfig::new(c.hidden, K).init(device),
            relations: c.relations,
            dropout: c.dropout,
        })
    }

    fn logits(&self, g: GraphInput, mut rng: Option<&mut ChaCha8Rng>) -> Tensor<2> {
        let mut h = g.x;
        for layer in &self.layers {
            h = dropout(
                relu(layer.forward(h, &g.rels)),
                self.dropout,
                rng.as_deref_mut(),
            );
        }
        self.head.forward(h)
    }
}

/// Joins `graphs` into one disjoint graph on `device`; returns it with the node count.
pub(crate) fn graph_input(
    graphs: &[&GraphSnapshot],
    relations: usize,
    device: &Device,
) -> (GraphInput, usize) {
    let d = graphs[0].d;
    let n: usize = graphs.iter().map(|g| g.n).sum();
    let mut x = Vec::with_capacity(n * d);
    let mut src = vec![Vec::<i64>::new(); relations];
    let mut dst = vec![Vec::<i64>::new(); relations];
    let mut deg = vec![vec![0f32; n]; relations];
    let mut offset = 0usize;
    for g in graphs {
        x.extend_from_slice(&g.x);
        for ((&s, &t), &r) in g.edge_src.iter().zip(&g.edge_dst).zip(&g.edge_rel) {
            let (s, t, r) = (s as usize + offset, t as usize + offset, r as usize);
            src[r].push(s as i64);
            dst[r].push(t as i64);
            deg[r][t] += 1.0;
        }
        offset += g.n;
    }
    let rels = (0..relations)
        .map(|r| {
            if src[r].is_empty() {
                return None;
            }
            let e = src[r].len();
            let idx = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v, [e]), device);
            let inv: Vec<f32> = deg[r]
                .iter()
                .map(|&c| if c > 0.0 { 1.0 / c } else { 0.0 })
                .collect();
            Some(RelEdges {
                src: idx(std::mem::take(&mut src[r])),
                dst: idx(std::mem::take(&mut dst[r])),
                inv_deg: tensor2(inv, [n, 1], device),
            })
        })
        .collect();
    (
        GraphInput {
            x: tensor2(x, [n, d], device),
            rels,
        },
        n,
    )
}

struct GraphSource<'a> {
    graphs: &'a [GraphSnapshot],
    relations: usize,
}

impl Source for GraphSource<'_> {
    type Input = GraphInput;

    fn units(&self) -> usize {
        self.graphs.len()
    }

    fn batch(&self, idx: &[usize], device: &Device) -> Batch<GraphInput> {
        let graphs: Vec<&GraphSnapshot> = idx.iter().map(|&i| &self.graphs[i]).collect();
        let (input, n) = graph_input(&graphs, self.relations, device);
        let mut y = Vec::with_capacity(n * K);
        let mut w = Vec::with_capacity(n);
        for g in &graphs {
            y.extend_from_slice(&g.y);
            w.extend(g.mask.iter().map(|&m| if m { 1.0f32 } else { 0.0 }));
        }
        let weight_sum = w.iter().sum();
        Batch {
            input,
            y: tensor2(y, [n, K], device),
            w: tensor2(w, [n, 1], device),
            weight_sum,
        }
    }

    fn label_counts(&self) -> ([f64; K], [f64; K]) {
        let mut pos = [0f64; K];
        let mut tot = [0f64; K];
        for g in self.graphs {
            for (i, _) in g.mask.iter().enumerate().filter(|(_, m)| **m) {
                for k in 0..K {
                    tot[k] += 1.0;
                    pos[k] += f64::from(g.y[i * K + k]);
                }
            }
        }
        (pos, tot)
    }
}

/// A trained GNN branch.
#[derive(Debug, Clone)]
pub struct GnnModel {
    core: Core<Gnn>,
}

impl GnnModel {
    /// An untrained model with seeded random weights (for benchmarks and wiring tests).
    pub fn init(config: GnnConfig, device: NnDevice, seed: u64) -> Result<Self, NnError> {
        Ok(GnnModel {
            core: Core::init(config, device, seed)?,
        })
    }

    /// The device it runs on.
    pub fn device(&self) -> NnDevice {
        self.core.device
    }

    /// The hyper-parameters it was built with.
    pub fn config(&self) -> &GnnConfig {
        &self.core.config
    }

    /// `n × K` probabilities for every node of one snapshot, in one forward pass (labels and
    /// mask are ignored).
    pub fn predict(&self, g: &GraphSnapshot) -> Result<Vec<f32>, NnError> {
        let c = &self.core.config;
        g.validate(c.relations, false)?;
        if g.d != c.d_input {
            return Err(shape_err(
                "graph",
                format!("d = {}, model expects {}", g.d, c.d_input),
            ));
        }
        if g.n == 0 {
            return Ok(Vec::new());
        }
        let (input, _) = graph_input(&[g], c.relations, &self.core.burn);
        Ok(probabilities(self.core.net.logits(input, None)))
    }

    /// Config JSON + weights, loadable with [`from_bytes`](Self::from_bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        self.core.to_bytes()
    }

    /// Loads a model saved by [`to_bytes`](Self::to_bytes) onto `device`.
    pub fn from_bytes(bytes: &[u8], device: NnDevice) -> Result<Self, NnError> {
        Ok(GnnModel {
            core: Core::from_bytes(bytes, device)?,
        })
    }
}

/// Trains a GNN on labelled snapshots (loss over `mask`ed nodes), early-stopping on `val`.
pub fn fit_gnn(
    config: &GnnConfig,
    train_config: &TrainConfig,
    train: &[GraphSnapshot],
    val: &[GraphSnapshot],
    device: NnDevice,
    progress: Option<Progress<'_>>,
) -> Result<(GnnModel, TrainHistory), NnError> {
    for g in train.iter().chain(val) {
        g.validate(config.relations, true)?;
        if g.d != config.d_input {
            return Err(shape_err(
                "graph",
                format!("d = {}, config.d_input = {}", g.d, config.d_input),
            ));
        }
    }
    let train_src = GraphSource {
        graphs: train,
        relations: config.relations,
    };
    let val_src = GraphSource {
        graphs: val,
        relations: config.relations,
    };
    let (net, history) = fit::<Gnn, _>(
        config,
        train_config,
        &train_src,
        &val_src,
        (train_config.graphs_per_batch, 1),
        device,
        progress,
    )?;
    Ok((
        GnnModel {
            core: Core::new(config.clone(), net, device)?,
        },
        history,
    ))
}
