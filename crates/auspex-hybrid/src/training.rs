//! Training: dataset → time split → base branches with out-of-fold scores → gated meta-learner
//! per kind → calibration and threshold on validation rows.
//!
//! Leakage rules: folds are contiguous time blocks with a purge gap of at least the window plus
//! the horizon (`auspex_ensemble::folds`); the validation rows come after every training row
//! (with a gap of one horizon) and are used only for calibration, thresholds and the ablation
//! figures — never to fit a base branch's weights nor to stop its training: the networks
//! early-stop on the latest 20 % (by time) of the rows they are fitted on.
//!
//! The networks (MLP, LSTM, TCN, GNN) are multi-head: one fit per fold gives every kind's
//! out-of-fold scores. All fits are independent and seeded, so they run on `threads` workers
//! and give the same model whatever the thread count. A GNN fold trains on the snapshots
//! holding its training rows (loss on those rows' nodes only); the other nodes of a snapshot,
//! including entities held out by entity grouping, still pass their *features* as messages,
//! never their labels.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use auspex_ensemble::metrics::average_precision;
use auspex_ensemble::{
    AlertBudget, CalibrationMethod, Features, FoldConfig, Folds, Gbdt, GbdtConfig, LogisticConfig,
    LogisticRegression, MetaConfig, MetaLearner, Pca, PcaConfig, Smote, SmoteConfig,
    Standardizer as Scale, ThresholdChoice, threshold_for_alert_budget, threshold_for_max_f1,
    threshold_for_precision,
};
use auspex_model::AnomalyKind;
use auspex_nn::{
    GnnConfig, GnnModel, GraphSnapshot, Labeled, Labels, LstmConfig, LstmModel, MlpConfig,
    MlpModel, NnDevice, Sequences, Standardizer, Tabular, TcnConfig, TcnModel, TrainConfig,
};
use auspex_train::{Dataset, DatasetConfig, SplitScope};
use serde::{Deserialize, Serialize};

use crate::HybridError;
use crate::inputs::{self, RELATIONS};
use crate::model::{Branch, HybridModel, K, KindModel};

/// Graph snapshots are recorded at every tick when the GNN is selected
/// ([`HybridConfig::with_branches`]): the serving scorer runs the GNN at every tick, so with
/// every tick recorded each training, validation and evaluation row has a GNN score exactly as
/// served, and the meta-learner's gate learns from all rows rather than a strided subset.
/// Recording is cheap: one export per tick (the default simulator cluster has 46 nodes and
/// ~76 edges: ~30 KB of node features, ~90 MB for a 12-hour run). The cost is in fitting,
/// bounded by [`HybridConfig::gnn_max_snapshots`] (evenly spaced snapshots per fit:
/// neighbouring ticks are 15 s apart and nearly identical); the GNN's four fits took 14 s of
/// the 2-seed training's 220 CPU-seconds.
pub const GNN_SNAPSHOT_EVERY_TICKS: usize = 1;

/// Everything that shapes training; stored in the bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HybridConfig {
    /// How rows are built (windows, horizon).
    pub dataset: DatasetConfig,
    /// Branches in the ensemble.
    pub branches: Vec<Branch>,
    /// Share of negative rows kept (all positives are kept), to bound training time.
    pub negatives_keep: f64,
    /// Share of the time span (the latest part) held out for calibration and thresholds.
    pub valid_fraction: f64,
    /// Out-of-fold scheme for stacking.
    pub folds: FoldConfig,
    pub gbdt: GbdtConfig,
    pub logistic: LogisticConfig,
    /// SMOTE on the GBDT's training rows, inside every out-of-fold fit and the final one
    /// (never on held-out or validation rows); neighbours are found on standardised features.
    /// `None`: off. Every branch also weights its classes. The logistic branch gets no SMOTE:
    /// with it, its validation PR-AUC fell on all four kinds (CPU exhaustion 0.520 → 0.394,
    /// simulator seeds 1-2), while the GBDT's moved by -0.017..+0.018 and the ensemble's by
    /// -0.003..+0.008.
    pub smote: Option<SmoteConfig>,
    /// The PCA branch's fit (components for 90 % of the variance, at most 16).
    pub pca: PcaConfig,
    /// Hidden layer widths of the MLP branch.
    pub mlp_hidden: Vec<usize>,
    pub mlp_dropout: f64,
    /// Epochs, patience, learning rate... of the MLP.
    pub nn: TrainConfig,
    /// Hidden state width of the LSTM branch.
    pub lstm_hidden: usize,
    /// Feature maps per convolution of the TCN branch.
    pub tcn_channels: usize,
    /// Dilations of the TCN's causal convolutions (kernel 3): the receptive field is
    /// `1 + 2 Σ dilations` steps.
    pub tcn_dilations: Vec<usize>,
    /// Dropout of the sequence and graph networks.
    pub seq_dropout: f64,
    /// Epochs, patience, learning rate... of the sequence branches (LSTM, TCN): an epoch costs
    /// one pass of every window through `length` steps.
    pub seq_nn: TrainConfig,
    /// Windows per sequence-branch fit, at most: the positive rows (up to half) and a seeded
    /// sample of the negatives. Bounds training time; the branch still scores every row.
    pub seq_max_rows: usize,
    /// Node state width and message-passing layers (hops) of the GNN branch.
    pub gnn_hidden: usize,
    pub gnn_layers: usize,
    /// Epochs, snapshots per step... of the GNN.
    pub gnn_nn: TrainConfig,
    /// Snapshots per GNN fit, at most (evenly spaced in time).
    pub gnn_max_snapshots: usize,
    pub meta: MetaConfig,
    /// Branches to fit a leave-one-out meta-learner for (ablation: "ensemble without X");
    /// those not in `branches` are ignored.
    pub ablate: Vec<Branch>,
    /// Worker threads for the independent fits (0: one per core); the model does not depend
    /// on it.
    pub threads: usize,
    /// Each kind's threshold is the lowest reaching this precision on validation rows
    /// (falling back to the max-F1 threshold when none does).
    pub target_precision: f64,
    /// At least this many validation rows must alert at the chosen threshold.
    pub min_alerts: usize,
    /// A precision measured on fewer positive validation rows than this says little (Nezha's
    /// pod failures had 2): the threshold then keeps false alert episodes on the validation
    /// rows within `alert_budget` instead.
    pub min_valid_positives: usize,
    /// The false alert budget for kinds with too few validation positives. The validation
    /// negatives are subsampled (`negatives_keep`), which hides short false episodes, so the
    /// budget is scaled by that share: the rule errs towards fewer alerts.
    pub alert_budget: AlertBudget,
    /// A kind needs this many positive training rows to get a head.
    pub min_positives: usize,
    pub seed: u64,
}

impl Default for HybridConfig {
    fn default() -> Self {
        let dataset = DatasetConfig::default();
        let window_s = dataset.windows.length as i64 * dataset.windows.resolution_ms as i64 / 1000;
        let config = HybridConfig {
            folds: FoldConfig {
                blocks: 3,
                purge_secs: window_s + dataset.horizon_ms / 1000,
                ..FoldConfig::default()
            },
            dataset,
            branches: Vec::new(),
            negatives_keep: 0.25,
            valid_fraction: 0.25,
            gbdt: GbdtConfig {
                iterations: 150,
                ..GbdtConfig::default()
            },
            logistic: LogisticConfig::default(),
            smote: Some(SmoteConfig {
                ratio: 0.5,
                max_seeds: Some(2_000),
                ..SmoteConfig::default()
            }),
            pca: PcaConfig::default(),
            mlp_hidden: vec![64, 32],
            mlp_dropout: 0.1,
            nn: TrainConfig::new().with_max_epochs(30).with_patience(4),
            lstm_hidden: 24,
            tcn_channels: 32,
            tcn_dilations: vec![1, 2, 4, 8],
            seq_dropout: 0.1,
            seq_nn: TrainConfig::new()
                .with_max_epochs(10)
                .with_patience(3)
                .with_learning_rate(3e-3),
            seq_max_rows: 12_000,
            gnn_hidden: 32,
            gnn_layers: 2,
            gnn_nn: TrainConfig::new()
                .with_max_epochs(30)
                .with_patience(4)
                .with_graphs_per_batch(16),
            gnn_max_snapshots: 2_000,
            meta: MetaConfig::default(),
            ablate: vec![Branch::Gnn],
            threads: 0,
            target_precision: 0.8,
            min_alerts: 5,
            min_valid_positives: 10,
            alert_budget: AlertBudget::default(),
            min_positives: 10,
            seed: 7,
        };
        config.with_branches(Branch::DEFAULT.to_vec())
    }
}

impl HybridConfig {
    /// Selects `branches` and makes the dataset record what they read: sequences for the LSTM
    /// and TCN, a graph snapshot every [`GNN_SNAPSHOT_EVERY_TICKS`] ticks for the GNN.
    pub fn with_branches(mut self, branches: Vec<Branch>) -> Self {
        self.dataset.sequences = branches.iter().any(|b| b.needs_sequences());
        self.dataset.graph_every_ticks = if branches.iter().any(|b| b.needs_graph()) {
            GNN_SNAPSHOT_EVERY_TICKS
        } else {
            0
        };
        self.branches = branches;
        self
    }

    fn workers(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// Validation figures of one branch for one kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BranchReport {
    pub branch: String,
    /// Average precision (PR-AUC) on validation rows.
    pub pr_auc: f64,
}

/// Validation figures of one kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindReport {
    pub kind: AnomalyKind,
    pub train_positives: usize,
    pub valid_positives: usize,
    pub threshold: f64,
    /// How the threshold was chosen: `target_precision`, `max_f1`, `alert_budget` or `none`.
    pub threshold_rule: String,
    pub valid_precision: Option<f64>,
    pub valid_recall: Option<f64>,
    /// PR-AUC of each branch alone, of the ensemble (`ensemble`) and of the leave-one-out
    /// ensembles (`ensemble without X`), on validation rows.
    pub ablation: Vec<BranchReport>,
    /// Whether the meta-learner's weights follow the context (the gate beat a fixed mix on
    /// validation rows by at least [`GATE_MARGIN`] PR-AUC).
    #[serde(default)]
    pub gated: bool,
    /// The branch that stands in for the stack, when one alone beat it on validation rows by
    /// at least [`GATE_MARGIN`] PR-AUC (the served model then reads that branch only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alone: Option<String>,
}

/// PR-AUC on validation rows that a more complex combination must add over a simpler one to
/// be kept: the context gate over a fixed mix, the stack over its best single branch.
pub const GATE_MARGIN: f64 = 0.01;

/// What training measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainReport {
    pub source: String,
    pub rows: usize,
    pub train_rows: usize,
    pub valid_rows: usize,
    pub kinds: Vec<KindReport>,
}

fn gather(x: &[f32], d: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        out.extend_from_slice(&x[i * d..(i + 1) * d]);
    }
    out
}

fn labels_of(ds: &Dataset, kind: AnomalyKind) -> Vec<u8> {
    (0..ds.len()).map(|i| u8::from(ds.label(i, kind))).collect()
}

/// Multi-head targets of `rows`.
fn multi_labels(ds: &Dataset, rows: &[usize]) -> Result<Labels, HybridError> {
    let y = rows
        .iter()
        .flat_map(|&i| ds.label_row(i).iter().map(|v| f32::from(*v)))
        .collect();
    Ok(Labels::new(rows.len(), y)?)
}

/// The last `frac` of `rows` by time (rows given in any order), as (earlier, later).
fn split_last(ds: &Dataset, rows: &[usize], frac: f64) -> (Vec<usize>, Vec<usize>) {
    let mut r = rows.to_vec();
    r.sort_by_key(|&i| (ds.tick_at_ms[i], i));
    let cut = ((r.len() as f64) * (1.0 - frac)).round() as usize;
    let later = r.split_off(cut.min(r.len()));
    (r, later)
}

/// splitmix64 of `(seed, i)`: a seeded order for sampling rows that does not depend on which
/// other rows are offered.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// At most `max` of `rows`, ascending: positive rows (any kind) up to half, negatives fill the
/// rest; seeded.
fn cap_rows(ds: &Dataset, rows: &[usize], max: usize, seed: u64) -> Vec<usize> {
    if rows.len() <= max {
        return rows.to_vec();
    }
    let (mut pos, mut neg): (Vec<usize>, Vec<usize>) = rows
        .iter()
        .partition(|&&i| ds.label_row(i).iter().any(|v| *v != 0));
    let pick = |v: &mut Vec<usize>, n: usize| {
        if v.len() > n {
            v.sort_by_key(|&i| mix(seed, i as u64));
            v.truncate(n);
        }
    };
    pick(&mut pos, max / 2);
    pick(&mut neg, max - pos.len());
    pos.extend(neg);
    pos.sort_unstable();
    pos
}

/// The unscaled sequence input of `rows`.
fn seq_rows(ds: &Dataset, rows: &[usize]) -> Result<Sequences, HybridError> {
    let s = ds.sequences.as_ref().ok_or_else(|| {
        HybridError::Invalid("the dataset has no sequences (DatasetConfig::sequences)".into())
    })?;
    let cells = s.length * s.metrics;
    inputs::seq_raw(
        &gather(&s.values, cells, rows),
        &gather(&s.mask, cells, rows),
        rows.len(),
        s.length,
        s.metrics,
    )
}

/// Where each dataset row sits in the graph snapshots: (snapshot, node).
struct SnapIndex {
    at: Vec<Option<(u32, u32)>>,
}

impl SnapIndex {
    fn new(ds: &Dataset) -> Self {
        let mut at = vec![None; ds.len()];
        for (si, s) in ds.snapshots.iter().enumerate() {
            for (node, r) in s.rows.iter().enumerate() {
                if let Some(r) = r {
                    at[*r as usize] = Some((si as u32, node as u32));
                }
            }
        }
        SnapIndex { at }
    }

    /// The snapshots holding `rows`, each with its (node, row) members, in time order.
    fn members(&self, rows: &[usize]) -> BTreeMap<u32, Vec<(u32, usize)>> {
        let mut out: BTreeMap<u32, Vec<(u32, usize)>> = BTreeMap::new();
        for (pos, &r) in rows.iter().enumerate() {
            if let Some((s, node)) = self.at[r] {
                out.entry(s).or_default().push((node, pos));
            }
        }
        out
    }
}

/// A fitted network branch with the scaler of its input.
struct Fitted {
    net: Net,
    scaler: Standardizer,
}

/// Boxed: the models differ in size by kilobytes.
enum Net {
    Mlp(Box<MlpModel>),
    Lstm(Box<LstmModel>),
    Tcn(Box<TcnModel>),
    Gnn(Box<GnnModel>),
}

impl Fitted {
    /// `rows × K` probabilities; NaN for rows the branch cannot score (a GNN row in no
    /// snapshot).
    fn predict(
        &self,
        ds: &Dataset,
        rows: &[usize],
        snaps: &SnapIndex,
    ) -> Result<Vec<f32>, HybridError> {
        let d = ds.width();
        let mut out = Vec::with_capacity(rows.len() * K);
        match &self.net {
            Net::Mlp(m) => {
                for chunk in rows.chunks(16_384) {
                    let t = self.scaler.transform_tabular(&Tabular::new(
                        chunk.len(),
                        d,
                        gather(&ds.features, d, chunk),
                    )?)?;
                    out.extend(m.predict_batched(&t, 4096)?);
                }
            }
            Net::Lstm(_) | Net::Tcn(_) => {
                for chunk in rows.chunks(4096) {
                    let mut x = seq_rows(ds, chunk)?;
                    self.scaler.transform_in_place(&mut x.x)?;
                    out.extend(match &self.net {
                        Net::Lstm(m) => m.predict_batched(&x, 1024)?,
                        Net::Tcn(m) => m.predict_batched(&x, 1024)?,
                        _ => unreachable!("matched above"),
                    });
                }
            }
            Net::Gnn(m) => {
                out.resize(rows.len() * K, f32::NAN);
                for (s, members) in snaps.members(rows) {
                    let g = inputs::gnn_input(&ds.snapshots[s as usize].graph, &self.scaler)?;
                    let p = m.predict(&g)?;
                    for (node, pos) in members {
                        let node = node as usize;
                        out[pos * K..(pos + 1) * K].copy_from_slice(&p[node * K..(node + 1) * K]);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The snapshots holding `rows` (at most `max`, evenly spaced in time), with targets and a
/// loss mask on those rows' nodes only.
fn labelled_snapshots(
    ds: &Dataset,
    rows: &[usize],
    scaler: &Standardizer,
    snaps: &SnapIndex,
    max: usize,
) -> Result<Vec<GraphSnapshot>, HybridError> {
    let all: Vec<(u32, Vec<(u32, usize)>)> = snaps.members(rows).into_iter().collect();
    let max = max.max(1);
    let chosen: Vec<&(u32, Vec<(u32, usize)>)> = if all.len() > max {
        (0..max).map(|i| &all[i * all.len() / max]).collect()
    } else {
        all.iter().collect()
    };
    chosen
        .into_iter()
        .map(|(s, members)| {
            let mut g = inputs::gnn_input(&ds.snapshots[*s as usize].graph, scaler)?;
            g.y = vec![0.0; g.n * K];
            g.mask = vec![false; g.n];
            for &(node, pos) in members {
                let node = node as usize;
                g.mask[node] = true;
                for (k, v) in ds.label_row(rows[pos]).iter().enumerate() {
                    g.y[node * K + k] = f32::from(*v);
                }
            }
            Ok(g)
        })
        .collect()
}

/// Fits one network branch on `rows` of `ds`, early-stopping on their latest 20 % (by time);
/// `say` hears each epoch's losses, prefixed with `label`.
fn fit_neural(
    branch: Branch,
    ds: &Dataset,
    rows: &[usize],
    config: &HybridConfig,
    device: NnDevice,
    snaps: &SnapIndex,
    (label, say): (&str, &dyn Fn(String)),
) -> Result<Fitted, HybridError> {
    let d = ds.width();
    let seed = config.seed;
    let mut epochs = |e: usize, train: f32, val: f32| {
        say(format!(
            "{label} epoch {e}: training loss {train:.4}, early-stopping loss {val:.4}"
        ))
    };
    let progress = Some(&mut epochs as auspex_nn::Progress<'_>);
    match branch {
        Branch::Mlp => {
            let (fit_rows, stop_rows) = split_last(ds, rows, 0.2);
            let tab = |r: &[usize]| Tabular::new(r.len(), d, gather(&ds.features, d, r));
            let train_x = tab(&fit_rows)?;
            let scaler = Standardizer::fit_tabular(&train_x)?;
            let train_x = scaler.transform_tabular(&train_x)?;
            let stop_x = scaler.transform_tabular(&tab(&stop_rows)?)?;
            let (train_y, stop_y) = (multi_labels(ds, &fit_rows)?, multi_labels(ds, &stop_rows)?);
            let mlp = MlpConfig::new(d)
                .with_hidden(config.mlp_hidden.clone())
                .with_dropout(config.mlp_dropout);
            let (model, _history) = auspex_nn::fit_mlp(
                &mlp,
                &config.nn.clone().with_seed(seed),
                Labeled {
                    x: &train_x,
                    labels: &train_y,
                },
                Labeled {
                    x: &stop_x,
                    labels: &stop_y,
                },
                device,
                progress,
            )?;
            Ok(Fitted {
                net: Net::Mlp(Box::new(model)),
                scaler,
            })
        }
        Branch::Lstm | Branch::Tcn => {
            let rows = cap_rows(ds, rows, config.seq_max_rows, seed);
            let (fit_rows, stop_rows) = split_last(ds, &rows, 0.2);
            let mut train_x = seq_rows(ds, &fit_rows)?;
            let scaler = Standardizer::fit_sequences(&train_x)?;
            scaler.transform_in_place(&mut train_x.x)?;
            let mut stop_x = seq_rows(ds, &stop_rows)?;
            scaler.transform_in_place(&mut stop_x.x)?;
            let (train_y, stop_y) = (multi_labels(ds, &fit_rows)?, multi_labels(ds, &stop_rows)?);
            let tc = config.seq_nn.clone().with_seed(seed);
            let train = Labeled {
                x: &train_x,
                labels: &train_y,
            };
            let stop = Labeled {
                x: &stop_x,
                labels: &stop_y,
            };
            let c = train_x.m;
            let net = if branch == Branch::Lstm {
                let cfg = LstmConfig::new(c)
                    .with_hidden(config.lstm_hidden)
                    .with_dropout(config.seq_dropout);
                Net::Lstm(Box::new(
                    auspex_nn::fit_lstm(&cfg, &tc, train, stop, device, progress)?.0,
                ))
            } else {
                let cfg = TcnConfig::new(c)
                    .with_channels(config.tcn_channels)
                    .with_dilations(config.tcn_dilations.clone())
                    .with_dropout(config.seq_dropout);
                Net::Tcn(Box::new(
                    auspex_nn::fit_tcn(&cfg, &tc, train, stop, device, progress)?.0,
                ))
            };
            Ok(Fitted { net, scaler })
        }
        Branch::Gnn => {
            let (fit_rows, stop_rows) = split_last(ds, rows, 0.2);
            let scaler = Standardizer::fit(&gather(&ds.features, d, &fit_rows), d)?;
            let max = config.gnn_max_snapshots;
            let train = labelled_snapshots(ds, &fit_rows, &scaler, snaps, max)?;
            let stop = labelled_snapshots(ds, &stop_rows, &scaler, snaps, max.div_ceil(4))?;
            if train.is_empty() || stop.is_empty() {
                return Err(HybridError::Invalid(format!(
                    "gnn: {} training and {} early-stopping snapshots hold the fold's rows; \
                     build the dataset with graph snapshots (DatasetConfig::graph_every_ticks)",
                    train.len(),
                    stop.len()
                )));
            }
            let cfg = GnnConfig::new(inputs::gnn_width(d))
                .with_hidden(config.gnn_hidden)
                .with_layers(config.gnn_layers)
                .with_relations(RELATIONS)
                .with_dropout(config.seq_dropout);
            let tc = config.gnn_nn.clone().with_seed(seed);
            let (model, _) = auspex_nn::fit_gnn(&cfg, &tc, &train, &stop, device, progress)?;
            Ok(Fitted {
                net: Net::Gnn(Box::new(model)),
                scaler,
            })
        }
        Branch::Gbdt | Branch::Logistic | Branch::Detector | Branch::Pca => {
            unreachable!("tabular branches are fitted per kind, the detectors once for all")
        }
    }
}

/// Fits one kind's single-output branch on `rows`, or None when they hold one class only.
fn fit_tabular(
    branch: Branch,
    config: &HybridConfig,
    x: &[f32],
    d: usize,
    y: &[u8],
) -> Result<Option<TabularModel>, HybridError> {
    if y.iter().all(|v| *v == y[0]) {
        return Ok(None);
    }
    let augmented = match &config.smote {
        Some(sc) if branch == Branch::Gbdt => oversample(
            &SmoteConfig {
                seed: sc.seed ^ config.seed,
                ..*sc
            },
            x,
            d,
            y,
        )?,
        _ => None,
    };
    let (x, y) = match &augmented {
        Some((x, y)) => (x.as_slice(), y.as_slice()),
        None => (x, y),
    };
    let f = Features::f32(x, d)?;
    Ok(Some(match branch {
        Branch::Gbdt => TabularModel::Gbdt(Box::new(Gbdt::fit(&config.gbdt, f, y, None, None)?)),
        Branch::Logistic => {
            TabularModel::Logistic(LogisticRegression::fit(&config.logistic, f, y, None)?)
        }
        _ => unreachable!("the networks are multi-head and fitted once for all kinds"),
    }))
}

/// Row-major features and their labels.
type Rows = (Vec<f32>, Vec<u8>);

/// `x`/`y` with SMOTE's synthetic minority rows appended, or `None` when there are too few
/// minority rows to interpolate between. Neighbours are found on standardised features (a
/// column holding a non-finite value is left out of the distance); each synthetic row is
/// interpolated between the original rows, which is the same point as interpolating the
/// standardised ones.
fn oversample(
    sc: &SmoteConfig,
    x: &[f32],
    d: usize,
    y: &[u8],
) -> Result<Option<Rows>, HybridError> {
    let n_pos = y.iter().filter(|v| **v == 1).count();
    if n_pos.min(y.len() - n_pos) < 2 {
        return Ok(None);
    }
    let finite: Vec<f64> = x
        .iter()
        .map(|v| {
            if v.is_finite() {
                f64::from(*v)
            } else {
                f64::NAN
            }
        })
        .collect();
    let scale = Scale::fit(Features::f64(&finite, d)?);
    let mut z = scale.transform(Features::f64(&finite, d)?);
    z.iter_mut()
        .filter(|v| !v.is_finite())
        .for_each(|v| *v = 0.0);
    let aug = Smote::resample(sc, Features::f64(&z, d)?, y)?;
    let mut out_x = Vec::with_capacity(aug.y.len() * d);
    out_x.extend_from_slice(x);
    for &(base, nb, gap) in &aug.origins {
        let (a, b) = (&x[base * d..(base + 1) * d], &x[nb * d..(nb + 1) * d]);
        out_x.extend(a.iter().zip(b).map(|(a, b)| a + gap as f32 * (b - a)));
    }
    Ok(Some((out_x, aug.y)))
}

enum TabularModel {
    Gbdt(Box<Gbdt>),
    Logistic(LogisticRegression),
}

impl TabularModel {
    fn predict(&self, x: &[f32], d: usize) -> Result<Vec<f64>, HybridError> {
        let f = Features::f32(x, d)?;
        Ok(match self {
            TabularModel::Gbdt(g) => g.predict_proba(f)?,
            TabularModel::Logistic(l) => l.predict_proba(f)?,
        })
    }
}

/// Runs `f` on every item with `threads` scoped workers and returns the results in item order.
/// What a worker says (`f`'s second argument) reaches `progress` on the calling thread.
fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    progress: &mut dyn FnMut(&str),
    f: impl Fn(&T, &dyn Fn(String)) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            let tx = tx.clone();
            let (next, results, f) = (&next, &results, &f);
            scope.spawn(move || {
                let say = |m: String| {
                    // The receiver outlives every worker (it drains until they all hang up).
                    let _ = tx.send(m);
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item, &say);
                    results.lock().expect("no worker panics holding the lock")[i] = Some(r);
                }
            });
        }
        drop(tx);
        for m in rx {
            progress(&m);
        }
    });
    results
        .into_inner()
        .expect("no worker panicked holding the lock")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// A network branch's multi-head scores: out-of-fold on the training rows, and from the final
/// fit on the validation rows (`rows × K`, NaN where absent).
struct NeuralScores {
    oof: Vec<f32>,
    val: Vec<f32>,
}

enum NeuralOut {
    Oof(Vec<f32>),
    Final(Fitted, Vec<f32>),
}

/// What every kind's stacking reads.
struct Stack<'a> {
    config: &'a HybridConfig,
    ds: &'a Dataset,
    fit_rows: &'a [usize],
    val_rows: &'a [usize],
    x_fit: &'a [f32],
    x_val: &'a [f32],
    ctx_fit: &'a [f32],
    ctx_val: &'a [f32],
    folds: &'a Folds,
    neural: &'a std::collections::HashMap<Branch, NeuralScores>,
    /// The PCA branch's scores of the training and validation rows.
    pca: Option<(Vec<f64>, Vec<f64>)>,
}

impl Stack<'_> {
    /// Fits the meta-learner on the out-of-fold scores of columns `cols`, calibrates it on the
    /// validation rows (when they hold both classes), and keeps the context gate only when it
    /// beats a fixed mix there; returns the model and whether it is gated.
    fn fit_meta(
        &self,
        (oof, val): (&[f64], &[f64]),
        cols: &[usize],
        (y_fit, y_val): (&[u8], &[u8]),
    ) -> Result<(MetaLearner, bool), HybridError> {
        let b = self.config.branches.len();
        let pick = |s: &[f64]| -> Vec<f64> {
            s.chunks_exact(b)
                .flat_map(|row| cols.iter().map(|&j| row[j]))
                .collect()
        };
        let (o, v) = (pick(oof), pick(val));
        let (c, w) = (cols.len(), auspex_train::CONTEXT_NAMES.len());
        let pos_val = y_val.iter().filter(|v| **v == 1).count();
        let fit = |use_context: bool| -> Result<(MetaLearner, f64), HybridError> {
            let mc = auspex_ensemble::MetaConfig {
                use_context,
                ..self.config.meta.clone()
            };
            let mut meta = MetaLearner::fit(
                &mc,
                Features::f64(&o, c)?,
                Some(Features::f32(self.ctx_fit, w)?),
                y_fit,
                None,
            )?;
            if pos_val > 0 && pos_val < y_val.len() {
                meta.calibrate(
                    CalibrationMethod::Platt,
                    Features::f64(&v, c)?,
                    Some(Features::f32(self.ctx_val, w)?),
                    y_val,
                )?;
            }
            let p = meta
                .predict(Features::f64(&v, c)?, Some(Features::f32(self.ctx_val, w)?))?
                .proba;
            Ok((meta, average_precision(&p, y_val)))
        };
        // The context gate is kept only where it earns its place on validation rows: a gate
        // fitted on out-of-fold scores can swing every row's weights on a context it never saw
        // (measured: PR-AUC 0.09 gated against 0.70 for a fixed mix on an SMD-style set).
        let (plain, ap_plain) = fit(false)?;
        if self.config.meta.use_context && pos_val > 0 {
            let (gated, ap_gated) = fit(true)?;
            if ap_gated >= ap_plain + GATE_MARGIN {
                return Ok((gated, true));
            }
        }
        Ok((plain, false))
    }

    /// The lowest threshold that keeps false alert episodes on the validation rows within
    /// the (subsampling-scaled) budget, with its precision and recall there.
    fn threshold_for_budget(
        &self,
        p_val: &[f64],
        y_val: &[u8],
    ) -> Result<Option<ThresholdChoice>, HybridError> {
        let ds = self.ds;
        let secs: Vec<i64> = self
            .val_rows
            .iter()
            .map(|&i| ds.label_ms[i] / 1000)
            .collect();
        let ents: Vec<u32> = self.val_rows.iter().map(|&i| ds.entity[i]).collect();
        let budget = AlertBudget {
            max_false_per_entity_day: self.config.alert_budget.max_false_per_entity_day
                * self.config.negatives_keep,
            ..self.config.alert_budget
        };
        let Some(c) = threshold_for_alert_budget(p_val, y_val, &secs, &ents, &budget)? else {
            return Ok(None);
        };
        let (mut tp, mut fp) = (0usize, 0usize);
        for (p, y) in p_val.iter().zip(y_val) {
            if *p >= c.threshold {
                if *y == 1 {
                    tp += 1;
                } else {
                    fp += 1;
                }
            }
        }
        let precision = if tp + fp > 0 {
            tp as f64 / (tp + fp) as f64
        } else {
            0.0
        };
        let recall = c.row_recall;
        Ok(Some(ThresholdChoice {
            threshold: c.threshold,
            alerts: tp + fp,
            true_positives: tp,
            precision,
            recall,
            f1: if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            },
        }))
    }

    /// One kind's tabular branches, meta-learner (and leave-one-out ablations), threshold.
    fn fit_kind(
        &self,
        k: usize,
        kind: AnomalyKind,
        say: &dyn Fn(String),
    ) -> Result<(KindModel, KindReport), HybridError> {
        let config = self.config;
        let (fit_rows, val_rows) = (self.fit_rows, self.val_rows);
        let d = self.ds.width();
        let b = config.branches.len();
        let ctx_w = auspex_train::CONTEXT_NAMES.len();
        let y_all = labels_of(self.ds, kind);
        let y_fit: Vec<u8> = fit_rows.iter().map(|&i| y_all[i]).collect();
        let y_val: Vec<u8> = val_rows.iter().map(|&i| y_all[i]).collect();
        let (pos_fit, pos_val) = (
            y_fit.iter().filter(|v| **v == 1).count(),
            y_val.iter().filter(|v| **v == 1).count(),
        );
        let mut report = KindReport {
            kind,
            train_positives: pos_fit,
            valid_positives: pos_val,
            threshold: 1.0,
            threshold_rule: "none".into(),
            valid_precision: None,
            valid_recall: None,
            ablation: Vec::new(),
            gated: false,
            alone: None,
        };
        let mut km = KindModel {
            gbdt: None,
            logistic: None,
            meta: None,
            ablations: Vec::new(),
            threshold: 1.0,
        };
        if pos_fit < config.min_positives {
            say(format!("{kind}: {pos_fit} positive training rows, no head"));
            return Ok((km, report));
        }

        // Out-of-fold scores of every branch, then the final fits on all training rows.
        let mut oof = vec![f64::NAN; fit_rows.len() * b];
        let mut val_scores = vec![f64::NAN; val_rows.len() * b];
        for (j, &branch) in config.branches.iter().enumerate() {
            if let (Branch::Pca, Some((fit, val))) = (branch, &self.pca) {
                // Fitted once on the training rows without incidents: their scores stand in
                // for out-of-fold ones (16 components of a few hundred features barely fit
                // the rows they saw).
                for (i, p) in fit.iter().enumerate() {
                    oof[i * b + j] = *p;
                }
                for (i, p) in val.iter().enumerate() {
                    val_scores[i * b + j] = *p;
                }
                continue;
            }
            if branch == Branch::Detector {
                // Nothing to fit: its scores are the same out of fold as anywhere.
                let det =
                    |ctx: &[f32], rows: usize| crate::model::detector_probabilities(ctx, rows);
                for (i, p) in det(self.ctx_fit, fit_rows.len())?.into_iter().enumerate() {
                    oof[i * b + j] = p;
                }
                for (i, p) in det(self.ctx_val, val_rows.len())?.into_iter().enumerate() {
                    val_scores[i * b + j] = p;
                }
                continue;
            }
            if let Some(ns) = self.neural.get(&branch) {
                for i in 0..fit_rows.len() {
                    oof[i * b + j] = f64::from(ns.oof[i * K + k]);
                }
                for i in 0..val_rows.len() {
                    val_scores[i * b + j] = f64::from(ns.val[i * K + k]);
                }
                continue;
            }
            say(format!("{kind}: {branch}"));
            let scores = self
                .folds
                .out_of_fold(|fold| -> Result<Vec<f64>, HybridError> {
                    let xt = gather(self.x_fit, d, &fold.train);
                    let yt: Vec<u8> = fold.train.iter().map(|&i| y_fit[i]).collect();
                    let xh = gather(self.x_fit, d, &fold.holdout);
                    match fit_tabular(branch, config, &xt, d, &yt)? {
                        Some(m) => m.predict(&xh, d),
                        // A fold without both classes says nothing: absent for the meta-learner.
                        None => Ok(vec![f64::NAN; fold.holdout.len()]),
                    }
                })?;
            for (i, s) in scores.into_iter().enumerate() {
                oof[i * b + j] = s.unwrap_or(f64::NAN);
            }
            if let Some(m) = fit_tabular(branch, config, self.x_fit, d, &y_fit)? {
                let p = m.predict(self.x_val, d)?;
                for (i, v) in p.into_iter().enumerate() {
                    val_scores[i * b + j] = v;
                }
                match m {
                    TabularModel::Gbdt(g) => km.gbdt = Some(*g),
                    TabularModel::Logistic(l) => km.logistic = Some(l),
                }
            }
        }

        let scores = (oof.as_slice(), val_scores.as_slice());
        let labels = (y_fit.as_slice(), y_val.as_slice());
        let all: Vec<usize> = (0..b).collect();
        let (mut meta, gated) = self.fit_meta(scores, &all, labels)?;
        report.gated = gated;
        // A branch that alone beats the stack on validation rows stands in for it: stacking
        // must earn its place like the gate (measured: simulator CPU exhaustion, the stack
        // 0.696 validation PR-AUC against the LSTM's 0.744).
        if pos_val > 0 && b > 1 {
            let ctx = Some(Features::f32(self.ctx_val, ctx_w)?);
            let p = meta.predict(Features::f64(&val_scores, b)?, ctx)?.proba;
            let ap_stack = average_precision(&p, &y_val);
            let best = (0..b)
                .map(|j| {
                    let s: Vec<f64> = (0..val_rows.len())
                        .map(|i| val_scores[i * b + j])
                        .map(|v| if v.is_nan() { 0.0 } else { v })
                        .collect();
                    (j, average_precision(&s, &y_val))
                })
                .max_by(|x, y| x.1.total_cmp(&y.1));
            if let Some((j, ap)) = best.filter(|(_, ap)| *ap >= ap_stack + GATE_MARGIN) {
                // Served as a meta-learner reading that branch only: Platt scaling of the
                // branch's final fit on the validation rows (its out-of-fold scores can be
                // absent where a fold held no positive, which would leave a constant).
                let keep: Vec<bool> = (0..b).map(|c| c == j).collect();
                let mc = MetaConfig {
                    use_context: false,
                    ..config.meta.clone()
                };
                let ctx = Some(Features::f32(self.ctx_val, ctx_w)?);
                let v = Features::f64(&val_scores, b)?;
                let alone = MetaLearner::fit_reading(&mc, v, ctx, &y_val, None, &keep)?;
                let p = alone.predict(v, ctx)?.proba;
                let ap_alone = average_precision(&p, &y_val);
                let name = config.branches[j].name();
                if ap_alone >= ap_stack + GATE_MARGIN {
                    say(format!(
                        "{kind}: {name} alone (validation PR-AUC {ap_alone:.3}) stands in for \
                         the stack ({ap_stack:.3})"
                    ));
                    meta = alone;
                    report.gated = false;
                    report.alone = Some(name.into());
                } else {
                    say(format!(
                        "{kind}: {name} ranks validation rows better ({ap:.3}) than the stack \
                         ({ap_stack:.3}), but calibrated alone it reaches {ap_alone:.3}: the \
                         stack stays"
                    ));
                }
            }
        }
        if b > 1 {
            for (j, &branch) in config.branches.iter().enumerate() {
                if config.ablate.contains(&branch) {
                    let cols: Vec<usize> = all.iter().copied().filter(|c| *c != j).collect();
                    km.ablations
                        .push((branch, self.fit_meta(scores, &cols, labels)?.0));
                }
            }
        }
        let ctx_val = Some(Features::f32(self.ctx_val, ctx_w)?);
        let p_val = meta.predict(Features::f64(&val_scores, b)?, ctx_val)?.proba;
        if pos_val > 0 {
            let chosen = if pos_val < config.min_valid_positives {
                self.threshold_for_budget(&p_val, &y_val)?
                    .map(|t| (t, "alert_budget"))
            } else {
                match threshold_for_precision(
                    &p_val,
                    &y_val,
                    config.target_precision,
                    config.min_alerts,
                )? {
                    Some(c) => Some((c, "target_precision")),
                    None => threshold_for_max_f1(&p_val, &y_val)?.map(|c| (c, "max_f1")),
                }
            };
            if let Some((c, rule)) = chosen {
                km.threshold = c.threshold;
                report.threshold = c.threshold;
                report.threshold_rule = rule.into();
                report.valid_precision = Some(c.precision);
                report.valid_recall = Some(c.recall);
            }
            for (j, branch) in config.branches.iter().enumerate() {
                let s: Vec<f64> = (0..val_rows.len())
                    .map(|i| val_scores[i * b + j])
                    .map(|v| if v.is_nan() { 0.0 } else { v })
                    .collect();
                report.ablation.push(BranchReport {
                    branch: branch.name().into(),
                    pr_auc: average_precision(&s, &y_val),
                });
            }
            report.ablation.push(BranchReport {
                branch: "ensemble".into(),
                pr_auc: average_precision(&p_val, &y_val),
            });
            for (branch, m) in &km.ablations {
                let j = config
                    .branches
                    .iter()
                    .position(|b| b == branch)
                    .expect("ablations are of selected branches");
                let kept = crate::model::without_column(&val_scores, b, j);
                let p = m.predict(Features::f64(&kept, b - 1)?, ctx_val)?.proba;
                report.ablation.push(BranchReport {
                    branch: format!("ensemble without {branch}"),
                    pr_auc: average_precision(&p, &y_val),
                });
            }
        }
        say(format!(
            "{kind}: threshold {:.3} ({}), validation precision {:?} recall {:?}",
            report.threshold, report.threshold_rule, report.valid_precision, report.valid_recall
        ));
        km.meta = Some(meta);
        Ok((km, report))
    }
}

/// Checks that `ds` records what the selected branches read.
fn check_inputs(ds: &Dataset, config: &HybridConfig) -> Result<(), HybridError> {
    for &b in &config.branches {
        if b.needs_sequences() {
            match &ds.sequences {
                None => {
                    return Err(HybridError::Invalid(format!(
                        "the {b} branch reads sequences: build the dataset with \
                         `dataset.sequences = true` (HybridConfig::with_branches sets it)"
                    )));
                }
                Some(s) => inputs::check_sequence_shape(s, &ds.spec)?,
            }
        }
        if b.needs_graph() && ds.snapshots.is_empty() {
            return Err(HybridError::Invalid(format!(
                "the {b} branch reads graph snapshots: build the dataset with \
                 `dataset.graph_every_ticks > 0` (HybridConfig::with_branches sets it)"
            )));
        }
    }
    Ok(())
}

/// Trains the ensemble on `ds`. `progress` hears a line per step.
pub fn train(
    ds: &Dataset,
    config: &HybridConfig,
    device: NnDevice,
    progress: &mut dyn FnMut(&str),
) -> Result<HybridModel, HybridError> {
    if config.branches.is_empty() {
        return Err(HybridError::Invalid("no branch selected".into()));
    }
    check_inputs(ds, config)?;
    let ds = ds.subsample_negatives(config.negatives_keep, config.seed)?;
    let split = ds.split_by_time(
        config.valid_fraction,
        SplitScope::Global,
        config.dataset.horizon_ms,
    )?;
    let (fit_rows, val_rows) = (split.train, split.valid);
    if fit_rows.is_empty() || val_rows.is_empty() {
        return Err(HybridError::Invalid(format!(
            "{} rows split into {} training and {} validation rows: need both",
            ds.len(),
            fit_rows.len(),
            val_rows.len()
        )));
    }
    progress(&format!(
        "{} rows ({} training, {} validation), {} features",
        ds.len(),
        fit_rows.len(),
        val_rows.len(),
        ds.width()
    ));
    let d = ds.width();
    let x_fit = gather(&ds.features, d, &fit_rows);
    let x_val = gather(&ds.features, d, &val_rows);
    let ctx_w = auspex_train::CONTEXT_NAMES.len();
    let ctx_fit = gather(&ds.context, ctx_w, &fit_rows);
    let ctx_val = gather(&ds.context, ctx_w, &val_rows);
    let ts: Vec<i64> = fit_rows.iter().map(|&i| ds.tick_at_ms[i] / 1000).collect();
    let ents: Vec<u32> = fit_rows.iter().map(|&i| ds.entity[i]).collect();
    let folds = Folds::new(&config.folds, &ts, &ents)?;
    let threads = config.workers();
    let snaps = SnapIndex::new(&ds);

    // The networks: one job per (branch, fold) and a final fit per branch, costliest first.
    let mut neural: Vec<Branch> = config
        .branches
        .iter()
        .copied()
        .filter(|b| b.is_neural())
        .collect();
    neural.sort_by_key(|b| match b {
        Branch::Lstm => 0,
        Branch::Tcn => 1,
        Branch::Gnn => 2,
        _ => 3,
    });
    let jobs: Vec<(Branch, Option<usize>)> = neural
        .iter()
        .flat_map(|&br| {
            std::iter::once((br, None)).chain((0..folds.folds.len()).map(move |f| (br, Some(f))))
        })
        .collect();
    let n_folds = folds.folds.len();
    let outputs = par_map(&jobs, threads, progress, |&(br, fold), say| {
        let (rows, predict, label): (Vec<usize>, &[usize], String) = match fold {
            Some(f) => {
                let fold = &folds.folds[f];
                let rows = fold.train.iter().map(|&i| fit_rows[i]).collect();
                (rows, &[], format!("{br} fold {}/{n_folds}", f + 1))
            }
            None => (fit_rows.clone(), &val_rows, format!("{br} final fit")),
        };
        let started = std::time::Instant::now();
        let m = fit_neural(br, &ds, &rows, config, device, &snaps, (&label, say))?;
        say(format!(
            "{label}: fitted in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        match fold {
            Some(f) => {
                let hold: Vec<usize> = folds.folds[f]
                    .holdout
                    .iter()
                    .map(|&i| fit_rows[i])
                    .collect();
                Ok(NeuralOut::Oof(m.predict(&ds, &hold, &snaps)?))
            }
            None => {
                let val = m.predict(&ds, predict, &snaps)?;
                Ok::<_, HybridError>(NeuralOut::Final(m, val))
            }
        }
    });
    let mut scores: std::collections::HashMap<Branch, NeuralScores> = neural
        .iter()
        .map(|&b| {
            (
                b,
                NeuralScores {
                    oof: vec![f32::NAN; fit_rows.len() * K],
                    val: Vec::new(),
                },
            )
        })
        .collect();
    let (mut mlp, mut lstm, mut tcn, mut gnn) = (None, None, None, None);
    for (&(br, fold), out) in jobs.iter().zip(outputs) {
        let entry = scores.get_mut(&br).expect("one entry per network");
        match (out?, fold) {
            (NeuralOut::Oof(p), Some(f)) => {
                for (j, &i) in folds.folds[f].holdout.iter().enumerate() {
                    entry.oof[i * K..(i + 1) * K].copy_from_slice(&p[j * K..(j + 1) * K]);
                }
            }
            (NeuralOut::Final(m, val), None) => {
                entry.val = val;
                let scaler = m.scaler;
                match m.net {
                    Net::Mlp(n) => mlp = Some((*n, scaler)),
                    Net::Lstm(n) => lstm = Some((*n, scaler)),
                    Net::Tcn(n) => tcn = Some((*n, scaler)),
                    Net::Gnn(n) => gnn = Some((*n, scaler)),
                }
            }
            _ => unreachable!("fold jobs give out-of-fold scores, final jobs models"),
        }
    }

    // The PCA detector: fitted on the training rows without incidents, for every kind.
    let pca = if config.branches.contains(&Branch::Pca) {
        let normal: Vec<usize> = fit_rows
            .iter()
            .copied()
            .filter(|&i| ds.is_negative(i))
            .collect();
        let pc = PcaConfig {
            seed: config.seed,
            ..config.pca
        };
        let p = Pca::fit(&pc, Features::f32(&gather(&ds.features, d, &normal), d)?)?;
        progress(&format!(
            "pca: {} components explain {:.2} of the variance",
            p.components(),
            p.explained()
        ));
        let fit = p.predict_proba(Features::f32(&x_fit, d)?)?;
        let val = p.predict_proba(Features::f32(&x_val, d)?)?;
        Some((p, fit, val))
    } else {
        None
    };
    // Per kind: the tabular branches, the meta-learner, calibration and threshold.
    let stack = Stack {
        config,
        ds: &ds,
        fit_rows: &fit_rows,
        val_rows: &val_rows,
        x_fit: &x_fit,
        x_val: &x_val,
        ctx_fit: &ctx_fit,
        ctx_val: &ctx_val,
        folds: &folds,
        neural: &scores,
        pca: pca.as_ref().map(|(_, f, v)| (f.clone(), v.clone())),
    };
    let pca = pca.map(|(p, _, _)| p);
    let kinds_out = par_map(
        &AnomalyKind::ALL.into_iter().enumerate().collect::<Vec<_>>(),
        threads,
        progress,
        |&(k, kind), say| stack.fit_kind(k, kind, say),
    );
    let mut kinds = Vec::with_capacity(K);
    let mut reports = Vec::with_capacity(K);
    for out in kinds_out {
        let (km, report) = out?;
        kinds.push(km);
        reports.push(report);
    }

    Ok(HybridModel {
        config: config.clone(),
        spec: ds.spec.clone(),
        branches: config.branches.clone(),
        kinds,
        mlp,
        lstm,
        tcn,
        gnn,
        pca,
        report: TrainReport {
            source: ds.source.clone(),
            rows: ds.len(),
            train_rows: fit_rows.len(),
            valid_rows: val_rows.len(),
            kinds: reports,
        },
        version: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SMOTE's synthetic rows lie between two original positives in the original units, even
    /// though neighbours are found on standardised features; columns on wildly different
    /// scales (bytes next to ratios) do not decide the neighbours alone.
    #[test]
    fn oversampling_interpolates_positives_in_original_units() {
        let d = 2;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..60u8 {
            let pos = i % 6 == 0;
            // Column 0 in bytes (1e9 scale), column 1 a ratio; positives sit high on both.
            let bytes = if pos { 8e9 } else { 2e9 } + f32::from(i) * 1e6;
            let ratio = if pos { 0.9 } else { 0.1 } + f32::from(i) * 1e-3;
            x.extend([bytes, ratio]);
            y.push(u8::from(pos));
        }
        let sc = SmoteConfig {
            ratio: 0.5,
            ..SmoteConfig::default()
        };
        let (ax, ay) = oversample(&sc, &x, d, &y).unwrap().unwrap();
        // 50 negatives × 0.5 = 25 positives wanted, 10 present: 15 synthetic.
        assert_eq!(ay.len(), 75);
        assert_eq!(&ax[..x.len()], &x[..]);
        for row in ax[x.len()..].chunks(d) {
            assert!((8e9..=8.06e9).contains(&row[0]), "{row:?}");
            assert!((0.9..=0.96).contains(&row[1]), "{row:?}");
        }
        assert!(ay[60..].iter().all(|v| *v == 1));
        // One positive only: nothing to interpolate between.
        let mut one = vec![0u8; 60];
        one[3] = 1;
        assert!(oversample(&sc, &x, d, &one).unwrap().is_none());
    }

    #[test]
    fn par_map_keeps_item_order_and_relays_messages() {
        let items: Vec<u64> = (0..50).collect();
        let mut heard = 0;
        let out = par_map(&items, 3, &mut |_| heard += 1, |&i, say| {
            say(format!("item {i}"));
            i * i
        });
        assert_eq!(out, items.iter().map(|i| i * i).collect::<Vec<_>>());
        assert_eq!(heard, 50);
    }

    #[test]
    fn branches_set_what_the_dataset_records() {
        let c = HybridConfig::default().with_branches(vec![Branch::Gbdt, Branch::Lstm]);
        assert!(c.dataset.sequences);
        assert_eq!(c.dataset.graph_every_ticks, 0);
        let c = c.with_branches(vec![Branch::Gnn]);
        assert!(!c.dataset.sequences);
        assert_eq!(c.dataset.graph_every_ticks, GNN_SNAPSHOT_EVERY_TICKS);
        assert_eq!("TCN".parse::<Branch>().unwrap(), Branch::Tcn);
        assert!("svm".parse::<Branch>().is_err());
    }
}
