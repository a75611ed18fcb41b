//! Bring-your-own data sets with a fixed interface (`--format smd|nezha`): how `train` builds
//! its rows from them and how `evaluate` scores their labelled part into the report
//! `{"overall": {...}, "per_entity": {NAME: {...}}}` (see [`auspex_train::Report`]).
//!
//! `smd`: a directory of `NAME_train.csv[.gz]` / `NAME_test.csv[.gz]` per entity (header row,
//! numeric columns, a 0/1 `label` column in the test file). The training halves carry no labels,
//! so `train` injects synthetic anomalies into them ([`auspex_train::Injector`]) and the heads
//! learn to tell injected spans from normal data, with the detection horizon 0 (SMD's labels
//! mark the anomaly itself). Validation, calibration and thresholds use the latest part of the
//! training halves; the test halves are only read by `evaluate`, which replays each entity's
//! training half first (so windows are warm when the test half starts, as they would be live)
//! and scores every test row.
//!
//! `nezha`: faults start minutes after each day's first sample, so the fault-free prefix alone
//! is too short to learn from. `train` uses each day up to its later half of faults (the
//! labelled faults before it plus injected anomalies; horizon 0: the faults have no
//! precursors); `evaluate` scores every row of every day and reports the later part, which
//! training never saw, separately (`held_out`), with recall per fault type.
//!
//! `nab`: one series per file and no split, so NAB's own convention holds: the first
//! [`NAB_PROBATION`] of each series is the probationary period. `train` learns from it (with
//! injected anomalies; its few labelled windows count too) and `evaluate` reports only the
//! rest, event-wise with earliness (delay from a window's start to the first alert).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use auspex_hybrid::{HybridConfig, HybridModel};
use auspex_ingest::dataset::smd::SmdPointLabels;
use auspex_ingest::{SmdConfig, SmdHalf, SmdSource, Source};
use auspex_model::TimestampMs;
use auspex_train::{Dataset, EvalConfig, InjectorConfig, Report, Series, Shape};
use clap::ValueEnum;

/// The layout of `--data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// A source as for `run --source` (sim, dir:, ndjson:, nezha:, smd:, nab:).
    #[default]
    Source,
    /// A directory in the layout of the Server Machine Dataset.
    Smd,
    /// A directory in the layout of Nezha's OnlineBoutique data (`DAY/metric/*_metric.csv`,
    /// `DAY/fault_list.json`).
    Nezha,
    /// A directory in the layout of NAB (`CATEGORY/*.csv` with `timestamp,value`,
    /// `labels/combined_windows.json`).
    Nab,
}

/// Injected anomalies per entity-hour in SMD-style training halves: one every 4 hours. With
/// spans up to 4 hours on 1-5 metrics this labels about a fifth of the training rows (72k of
/// the rows kept on SMD's 19 machines), far more than real anomalies take; a fifth of the rate
/// (5 % of rows) was measured worse on SMD (mean point F1 0.03 against 0.19: its threshold,
/// for precision 0.8 on validation rows, let through far fewer test alerts), so the
/// rate stays.
const SMD_INJECTIONS_PER_HOUR: f64 = 0.25;

/// Sets up `config` for an SMD-style directory and builds the training rows.
pub fn smd_training(dir: &Path, config: &mut HybridConfig) -> Result<Dataset> {
    let src = SmdSource::new(SmdConfig::new(dir).half(SmdHalf::Train))
        .with_context(|| format!("reading {} as an SMD-style directory", dir.display()))?;
    config.dataset.windows.metrics = union_of_columns(&src);
    config.dataset.horizon_ms = 0;
    let injector = InjectorConfig {
        seed: config.seed,
        rate_per_entity_hour: SMD_INJECTIONS_PER_HOUR,
        // Shapes that show in any metric: a flat line or a mirror image of a metric that never
        // moves (many of SMD's do not) changes nothing and would only be label noise.
        shapes: vec![
            Shape::Spike,
            Shape::LevelShift,
            Shape::Drift,
            Shape::VarianceBurst,
        ],
        // Real incidents on servers last from minutes to hours and move several metrics.
        max_len: 240,
        max_metrics: 5,
        ..InjectorConfig::default()
    };
    let mut src = auspex_train::Injector::new(src, injector)?;
    let mut ds = auspex_train::build(&mut src, &config.dataset)?;
    one_head(&mut ds);
    Ok(ds)
}

/// SMD-style data has no incident kinds, so one head learns "any anomaly": every row's labels
/// are OR-ed into the first kind's and the other kinds get no positives (and so no head). Four
/// heads that each saw the others' anomalies as normal rows would learn which metric moved,
/// not that something did.
fn one_head(ds: &mut Dataset) {
    let k = auspex_model::AnomalyKind::ALL.len();
    for row in ds.labels.chunks_mut(k) {
        let any = row.iter().any(|&v| v != 0);
        row.fill(0);
        row[0] = u8::from(any);
    }
    for l in &mut ds.incidents {
        l.kind = auspex_model::AnomalyKind::ALL[0];
    }
}

/// Every entity's columns, in order of first appearance.
fn union_of_columns(src: &SmdSource) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in src.machines() {
        for c in src.columns(m).unwrap_or_default() {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
    }
    out
}

/// Replays `src` into rows as the model's training did, checks the features mean what the
/// model saw, and scores every row ([`anomaly_scores`]).
fn replay_and_score(model: &HybridModel, src: &mut dyn Source) -> Result<(Dataset, Scores)> {
    let ds = auspex_train::build(src, &model.config.dataset)
        .with_context(|| format!("replaying {}", src.describe()))?;
    ds.spec
        .check(&model.spec)
        .context("the data's features differ from the model's")?;
    let scores = anomaly_scores(model, &ds)?;
    Ok((ds, scores))
}

/// What [`anomaly_scores`] gives.
pub struct Scores {
    /// The ensemble's score per row; 1.0 is the alert threshold.
    pub ensemble: Vec<f64>,
    /// Each branch's score per row (the largest probability over the heads), for the
    /// ablation: branches alone have no threshold, so only their ranking means something.
    pub branches: Vec<(String, Vec<f64>)>,
}

/// One anomaly score per row: the largest, over the heads, of the head's probability over its
/// threshold, so a row alerts (score >= 1) when any head would.
pub fn anomaly_scores(model: &HybridModel, ds: &Dataset) -> Result<Scores> {
    let per_kind = model.score_dataset(ds)?;
    let b = model.branches.len();
    let mut out = Scores {
        ensemble: vec![f64::NAN; ds.len()],
        branches: model
            .branches
            .iter()
            .map(|br| (br.name().to_string(), vec![f64::NAN; ds.len()]))
            .collect(),
    };
    let take_max = |o: &mut f64, v: f64| {
        if o.is_nan() || v > *o {
            *o = v;
        }
    };
    for (km, s) in model.kinds.iter().zip(&per_kind) {
        if km.meta.is_none() {
            continue;
        }
        let t = km.threshold.max(1e-9);
        for (o, p) in out.ensemble.iter_mut().zip(&s.proba) {
            take_max(o, p / t);
        }
        for (j, (_, col)) in out.branches.iter_mut().enumerate() {
            for (i, o) in col.iter_mut().enumerate() {
                let v = s.branch[i * b + j];
                if !v.is_nan() {
                    take_max(o, v);
                }
            }
        }
    }
    Ok(out)
}

/// What `evaluate --format smd` writes.
pub struct SmdEvaluation {
    pub report: Report,
    /// The per-metric z-score baseline, at a threshold from the training halves.
    pub baseline: Report,
    /// Each branch alone (its threshold-free figures: PR-AUC, best F1).
    pub branches: Vec<(String, Report)>,
}

/// Scores every test row of an SMD-style directory.
pub fn smd_evaluate(model: &HybridModel, dir: &Path) -> Result<SmdEvaluation> {
    let mut src = SmdSource::new(SmdConfig::new(dir).half(SmdHalf::Both))
        .with_context(|| format!("reading {} as an SMD-style directory", dir.display()))?;
    let points = src.point_labels();
    let (ds, scores) = replay_and_score(model, &mut src)?;
    let baseline = zscore_baseline(&ds, &points)?;

    let series = |scores: &[f64]| series_of(&ds, &points, scores);
    let cfg = EvalConfig {
        threshold: 1.0,
        early_ms: 0,
        step_ms: Some(auspex_ingest::dataset::smd::SMD_STEP_MS),
        vus_window: 0,
    };
    let report = auspex_train::evaluate(&series(&scores.ensemble), &cfg)?;
    let baseline = auspex_train::evaluate(&series(&baseline), &cfg)?;
    let branches = scores
        .branches
        .iter()
        .map(|(name, s)| Ok((name.clone(), auspex_train::evaluate(&series(s), &cfg)?)))
        .collect::<Result<_>>()?;
    Ok(SmdEvaluation {
        report,
        baseline,
        branches,
    })
}

/// Every test row of every entity as a series, NaN (never alerting) where no row was scored.
fn series_of(ds: &Dataset, points: &[SmdPointLabels], scores: &[f64]) -> Vec<Series> {
    let by_entity = rows_by_entity(ds);
    points
        .iter()
        .map(|p| {
            let name = p.entity.id().as_str().to_string();
            let row_at: HashMap<TimestampMs, usize> = by_entity
                .get(name.as_str())
                .map(|rows| rows.iter().map(|&i| (ds.label_ms[i], i)).collect())
                .unwrap_or_default();
            let timestamps_ms: Vec<TimestampMs> = (0..p.labels.len())
                .map(|i| p.start_ms + i as i64 * p.step_ms)
                .collect();
            Series {
                scores: timestamps_ms
                    .iter()
                    .map(|t| row_at.get(t).map_or(f64::NAN, |&i| scores[i]))
                    .collect(),
                labels: p.labels.clone(),
                timestamps_ms,
                name,
            }
        })
        .collect()
}

fn rows_by_entity(ds: &Dataset) -> HashMap<&str, Vec<usize>> {
    let mut out: HashMap<&str, Vec<usize>> = HashMap::new();
    for i in 0..ds.len() {
        out.entry(ds.entity_name(i)).or_default().push(i);
    }
    out
}

/// Share of each entity's training-half rows that fit the baseline; the rest sets its
/// threshold.
const BASELINE_FIT: f64 = 0.7;

/// The per-metric z-score baseline of MODELING.md, scaled so 1.0 is its threshold: per entity,
/// each metric's mean and standard deviation over the first 70 % of its training half; a row's
/// score is the largest |z| of any metric's latest value; the threshold is the largest score on
/// the remaining 30 % of the training half (which is assumed normal). No test label is read.
fn zscore_baseline(ds: &Dataset, points: &[SmdPointLabels]) -> Result<Vec<f64>> {
    let last: Vec<usize> = ds
        .spec
        .metrics
        .iter()
        .map(|m| {
            ds.spec
                .index_of(&format!("{m}.last"))
                .with_context(|| format!("no {m}.last feature"))
        })
        .collect::<Result<_>>()?;
    let mut out = vec![f64::NAN; ds.len()];
    for (name, rows) in rows_by_entity(ds) {
        let Some(p) = points.iter().find(|p| p.entity.id().as_str() == name) else {
            bail!("no test labels for {name}");
        };
        let train: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&i| ds.label_ms[i] < p.start_ms)
            .collect();
        let n_fit = (train.len() as f64 * BASELINE_FIT) as usize;
        if n_fit < 2 {
            continue;
        }
        let stats: Vec<(f64, f64)> = last
            .iter()
            .map(|&f| {
                let v: Vec<f64> = train[..n_fit]
                    .iter()
                    .map(|&i| f64::from(ds.feature_row(i)[f]))
                    .collect();
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
                (mean, var.sqrt().max(1e-6))
            })
            .collect();
        let z = |i: usize| {
            let row = ds.feature_row(i);
            last.iter()
                .zip(&stats)
                .map(|(&f, (m, s))| (f64::from(row[f]) - m).abs() / s)
                .fold(0.0, f64::max)
        };
        let threshold = train[n_fit..].iter().map(|&i| z(i)).fold(0.0, f64::max);
        let threshold = if threshold > 0.0 { threshold } else { 1.0 };
        for &i in &rows {
            out[i] = z(i) / threshold;
        }
    }
    Ok(out)
}

/// Share of each Nezha day's faults that `train` learns from.
pub const NEZHA_TRAIN_SHARE: f64 = 0.5;

const DAY_MS: i64 = 86_400_000;

/// Per UTC day, the time that splits training rows from held-out ones: the onset of the first
/// fault of the day's later [`NEZHA_TRAIN_SHARE`] of faults (a day without faults is all
/// training). Faults come early in Nezha's days, so splitting the day's time would leave none
/// to test on.
fn nezha_cutoffs(faults: &[auspex_model::IncidentLabel]) -> HashMap<i64, TimestampMs> {
    let mut onsets: HashMap<i64, Vec<TimestampMs>> = HashMap::new();
    for l in faults {
        onsets
            .entry(l.onset_ms.div_euclid(DAY_MS))
            .or_default()
            .push(l.onset_ms);
    }
    onsets
        .into_iter()
        .map(|(d, mut v)| {
            v.sort_unstable();
            let first_held =
                ((v.len() as f64 * NEZHA_TRAIN_SHARE).ceil() as usize).min(v.len() - 1);
            (d, v[first_held] - 60_000)
        })
        .collect()
}

fn is_held_out(cut: &HashMap<i64, TimestampMs>, t: TimestampMs) -> bool {
    cut.get(&t.div_euclid(DAY_MS)).is_some_and(|&c| t >= c)
}

fn nezha_source(dir: &Path) -> Result<auspex_ingest::NezhaSource> {
    auspex_ingest::NezhaSource::new(auspex_ingest::NezhaConfig::new(dir))
        .with_context(|| format!("reading {} as a Nezha-style directory", dir.display()))
}

/// Sets up `config` for a Nezha-style directory and builds the training rows: the first part
/// of each day, with injected anomalies besides the labelled faults.
pub fn nezha_training(dir: &Path, config: &mut HybridConfig) -> Result<Dataset> {
    config.dataset.horizon_ms = 0;
    let injector = InjectorConfig {
        seed: config.seed,
        rate_per_entity_hour: 0.5,
        max_len: 10,
        min_len: 2,
        ..InjectorConfig::default()
    };
    let mut src = auspex_train::Injector::new(nezha_source(dir)?, injector)?;
    let ds = auspex_train::build(&mut src, &config.dataset)?;
    let cut = nezha_cutoffs(&src.inner().labels());
    let keep: Vec<usize> = (0..ds.len())
        .filter(|&i| !is_held_out(&cut, ds.label_ms[i]))
        .collect();
    Ok(ds.select(&keep))
}

/// Detection of one fault type's faults.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FaultTypeRecall {
    pub faults: usize,
    pub detected: usize,
    pub recall: f64,
}

/// What `evaluate --format nezha` writes.
pub struct NezhaEvaluation {
    /// Every row of every day.
    pub report: Report,
    /// Only rows after each day's training cut-off.
    pub held_out: Report,
    /// Per fault type, over every day, and over the held-out part.
    pub fault_types: std::collections::BTreeMap<String, FaultTypeRecall>,
    pub fault_types_held_out: std::collections::BTreeMap<String, FaultTypeRecall>,
}

/// Scores every row of a Nezha-style directory.
pub fn nezha_evaluate(model: &HybridModel, dir: &Path) -> Result<NezhaEvaluation> {
    let mut src = nezha_source(dir)?;
    let (ds, scores) = replay_and_score(model, &mut src)?;
    let scores = scores.ensemble;
    let cut = nezha_cutoffs(&ds.incidents);
    let held = |t: TimestampMs| is_held_out(&cut, t);
    let cfg = EvalConfig {
        threshold: 1.0,
        ..EvalConfig::default()
    };
    let all = Series::from_dataset(&ds, &scores, None)?;
    let report = auspex_train::evaluate(&all, &cfg)?;
    let later: Vec<Series> = all
        .iter()
        .map(|s| {
            let keep: Vec<usize> = (0..s.timestamps_ms.len())
                .filter(|&i| held(s.timestamps_ms[i]))
                .collect();
            Series {
                name: s.name.clone(),
                timestamps_ms: keep.iter().map(|&i| s.timestamps_ms[i]).collect(),
                scores: keep.iter().map(|&i| s.scores[i]).collect(),
                labels: keep.iter().map(|&i| s.labels[i]).collect(),
            }
        })
        .filter(|s| !s.timestamps_ms.is_empty())
        .collect();
    let held_out = auspex_train::evaluate(&later, &cfg)?;

    let mut fault_types = std::collections::BTreeMap::new();
    let mut fault_types_held_out = std::collections::BTreeMap::new();
    for l in &ds.incidents {
        let id = l.entity.id();
        let detected = all.iter().find(|s| s.name == id.as_str()).is_some_and(|s| {
            (0..s.timestamps_ms.len()).any(|i| {
                (l.onset_ms..=l.end_ms).contains(&s.timestamps_ms[i]) && s.scores[i] >= 1.0
            })
        });
        let tally = |m: &mut std::collections::BTreeMap<String, FaultTypeRecall>| {
            let e: &mut FaultTypeRecall = m.entry(l.fault.clone()).or_default();
            e.faults += 1;
            e.detected += usize::from(detected);
            e.recall = e.detected as f64 / e.faults as f64;
        };
        tally(&mut fault_types);
        if held(l.onset_ms) {
            tally(&mut fault_types_held_out);
        }
    }
    Ok(NezhaEvaluation {
        report,
        held_out,
        fault_types,
        fault_types_held_out,
    })
}

/// NAB's probationary share of each series.
pub const NAB_PROBATION: f64 = 0.15;

fn nab_source(dir: &Path) -> Result<auspex_ingest::NabSource> {
    auspex_ingest::NabSource::new(auspex_ingest::NabConfig::new(dir))
        .with_context(|| format!("reading {} as a NAB-style directory", dir.display()))
}

/// Per entity, the end of its probationary period.
fn nab_cutoffs(ds: &Dataset) -> HashMap<u32, TimestampMs> {
    let mut span: HashMap<u32, (TimestampMs, TimestampMs)> = HashMap::new();
    for (&e, &t) in ds.entity.iter().zip(&ds.label_ms) {
        let s = span.entry(e).or_insert((t, t));
        s.0 = s.0.min(t);
        s.1 = s.1.max(t);
    }
    span.into_iter()
        .map(|(e, (a, b))| (e, a + ((b - a) as f64 * NAB_PROBATION) as i64))
        .collect()
}

/// Sets up `config` for a NAB-style directory (the raw `value` of each series, horizon 0) and
/// builds the training rows: each series' probationary period, with injected anomalies.
pub fn nab_training(dir: &Path, config: &mut HybridConfig) -> Result<Dataset> {
    config.dataset.windows.metrics = vec![auspex_ingest::dataset::nab::NAB_VALUE_METRIC.into()];
    config.dataset.horizon_ms = 0;
    let injector = InjectorConfig {
        seed: config.seed,
        // Five-minute samples: one injection every 10 hours, 3 to 48 samples long.
        rate_per_entity_hour: 0.1,
        min_len: 3,
        max_len: 48,
        shapes: vec![
            Shape::Spike,
            Shape::LevelShift,
            Shape::Drift,
            Shape::VarianceBurst,
        ],
        ..InjectorConfig::default()
    };
    let mut src = auspex_train::Injector::new(nab_source(dir)?, injector)?;
    let mut ds = auspex_train::build(&mut src, &config.dataset)?;
    one_head(&mut ds);
    let cut = nab_cutoffs(&ds);
    let keep: Vec<usize> = (0..ds.len())
        .filter(|&i| ds.label_ms[i] < cut[&ds.entity[i]])
        .collect();
    Ok(ds.select(&keep))
}

/// Scores a NAB-style directory; the report covers each series after its probationary period.
pub fn nab_evaluate(model: &HybridModel, dir: &Path) -> Result<Report> {
    let mut src = nab_source(dir)?;
    let (ds, scores) = replay_and_score(model, &mut src)?;
    let scores = scores.ensemble;
    let cut = nab_cutoffs(&ds);
    let keep: Vec<usize> = (0..ds.len())
        .filter(|&i| ds.label_ms[i] >= cut[&ds.entity[i]])
        .collect();
    let later = ds.select(&keep);
    let scores: Vec<f64> = keep.iter().map(|&i| scores[i]).collect();
    let cfg = EvalConfig {
        threshold: 1.0,
        ..EvalConfig::default()
    };
    Ok(auspex_train::evaluate(
        &Series::from_dataset(&later, &scores, None)?,
        &cfg,
    )?)
}
