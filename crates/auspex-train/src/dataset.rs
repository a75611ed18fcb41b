//! The labelled window data set: a [`Source`] replayed through a [`WindowStore`] and a
//! [`LiveGraph`] exactly as the serving pipeline (`auspex::pipeline`) replays it, so a training
//! row is the window a served model would have seen at that tick.
//!
//! Replay, as in the pipeline: every record with a timestamp first advances event time; a
//! scoring tick happens each time the stream crosses a boundary of the `resolution_ms * step`
//! grid, at the last boundary crossed (a gap is not replayed tick by tick); at a tick at
//! boundary `b` the due entities are `due_into(b - 1)`; every `60 s / tick` ticks stale windows
//! are evicted and the graph expires; after the last record one more tick scores the last slot.
//! Samples go to the windows and the graph (`observe`), topology events to the graph.
//!
//! Each due entity at a tick becomes one row: its feature vector ([`FeatureSpec`] order), the
//! context features ([`CONTEXT_NAMES`]), optionally its imputed sequence and mask, and labels
//! (see [`crate::labels`] for the definitions) at its *label time*: the start of the newest slot
//! in its window, i.e. the timestamp of the newest sample it has seen (one slot before the tick
//! for an entity that reports every slot). Labels are attached after the replay, from the
//! source's `labels()` at the end, because a wrapped source such as [`crate::Injector`] learns
//! its labels while streaming and a horizon label looks ahead.

use std::collections::HashMap;
use std::path::Path;

use auspex_graph::{GraphConfig, GraphExport, LiveGraph};
use auspex_ingest::{Record, Source};
use auspex_model::{AnomalyKind, EntityId, IncidentLabel, TimestampMs};
use auspex_window::{FeatureSpec, WindowConfig, WindowStore};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::context::ContextBuilder;
use crate::labels::{K, LabelIndex};
use crate::{TrainError, config_error};

/// Records pulled from the source per batch (as the pipeline does).
const BATCH: usize = 4096;

/// Context features per row, in order: the entity kind one-hot ([`EntityKind::ALL`] order), the
/// window's completeness (fraction of observed cells over reported metrics), its fill (slots
/// since the entity's first sample over the window length, at most 1), the entity's graph degree
/// as `ln(1 + distinct neighbours)`, and its volatility: the mean over reported metrics of
/// `std / (|mean| + 1e-6)`, each capped at 10.
pub use crate::context::CONTEXT_NAMES;

/// How to build a data set from a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetConfig {
    /// The windows, as the serving pipeline would build them (metrics, length, step...).
    pub windows: WindowConfig,
    /// The live graph.
    pub graph: GraphConfig,
    /// Take `windows.resolution_ms` from the source's sample interval when it has one, as
    /// `auspex run` does.
    pub resolution_from_source: bool,
    /// Prediction horizon H in milliseconds: a row is positive for kind k when an incident of
    /// kind k on its entity happens within H after its label time, or is under way.
    pub horizon_ms: i64,
    /// Also record each row's imputed sequence and mask (`length × metrics` per row).
    pub sequences: bool,
    /// Record a graph snapshot every this many ticks (0: none).
    pub graph_every_ticks: usize,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            windows: WindowConfig::default(),
            graph: GraphConfig::default(),
            resolution_from_source: true,
            horizon_ms: 15 * 60_000,
            sequences: false,
            graph_every_ticks: 0,
        }
    }
}

impl DatasetConfig {
    /// Checks the fields this crate owns (the store and graph check their own).
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.horizon_ms < 0 {
            return Err(config_error(
                "horizon_ms",
                format!("{} is negative", self.horizon_ms),
            ));
        }
        Ok(())
    }
}

/// Imputed sequences of every row: `[rows, length, metrics]`, row-major, metrics in spec order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequences {
    pub length: usize,
    pub metrics: usize,
    /// Imputed values (counters as rates).
    pub values: Vec<f32>,
    /// 1.0 where observed, 0.0 where imputed.
    pub mask: Vec<f32>,
}

impl Sequences {
    fn row_len(&self) -> usize {
        self.length * self.metrics
    }
}

/// The graph at one tick, for GNN training. Node features are the rows' feature vectors at that
/// tick (`has_features` false for entities not due then, e.g. services without samples).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphSnapshot {
    /// The tick (slot boundary).
    pub tick_ms: TimestampMs,
    /// The time node labels refer to: one slot before the tick.
    pub label_ms: TimestampMs,
    pub graph: GraphExport,
    /// The data set row of each node at this tick, if it has one.
    pub rows: Vec<Option<u32>>,
    /// Horizon labels, `nodes × K`, [`AnomalyKind::ALL`] order.
    pub labels: Vec<u8>,
    /// Point labels, one per node.
    pub point: Vec<u8>,
}

/// A labelled window data set: dense row-major arrays plus row metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// The source's description.
    pub source: String,
    /// Names and meaning of the feature columns.
    pub spec: FeatureSpec,
    /// Names of the context columns ([`CONTEXT_NAMES`]).
    pub context_names: Vec<String>,
    /// The horizon the labels were made with.
    pub horizon_ms: i64,
    /// Milliseconds between ticks (`resolution_ms * step`).
    pub tick_ms: i64,
    /// Entity names ([`EntityId::as_str`]); rows refer to them by index.
    pub entities: Vec<String>,
    /// Entity of each row (index into `entities`).
    pub entity: Vec<u32>,
    /// The tick each row was scored at.
    pub tick_at_ms: Vec<TimestampMs>,
    /// The time each row's labels refer to (its newest sample's slot).
    pub label_ms: Vec<TimestampMs>,
    /// `rows × spec.len()` features.
    pub features: Vec<f32>,
    /// `rows × context_names.len()` context features.
    pub context: Vec<f32>,
    /// `rows × K` horizon labels (0/1), [`AnomalyKind::ALL`] order.
    pub labels: Vec<u8>,
    /// One 0/1 point label per row: inside an anomaly (precursor included).
    pub point: Vec<u8>,
    /// `rows × K` seconds to the next incident of each kind, 0 while one is under way, -1 when
    /// none is ahead.
    pub time_to_incident_s: Vec<f32>,
    /// Imputed sequences, when asked for.
    pub sequences: Option<Sequences>,
    /// The incidents the labels came from.
    pub incidents: Vec<IncidentLabel>,
    /// Graph snapshots, when asked for (not serialised).
    #[serde(skip)]
    pub snapshots: Vec<GraphSnapshot>,
}

/// Which rows go where in a time split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitScope {
    /// One cutoff time for all rows.
    Global,
    /// Each entity's rows split at its own cutoff.
    PerEntity,
}

/// Row indices of a time-ordered split; every train row is earlier than every validation row of
/// the same scope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
}

/// Replays `source` to its end and returns the labelled data set (see the module docs).
pub fn build<S: Source + ?Sized>(
    source: &mut S,
    config: &DatasetConfig,
) -> Result<Dataset, TrainError> {
    config.validate()?;
    let mut windows = config.windows.clone();
    if config.resolution_from_source
        && let Some(ms) = source.sample_interval_ms()
    {
        windows.resolution_ms = ms;
    }
    let mut replay = Replay::new(windows, config)?;
    while let Some(batch) = source.next_batch(BATCH)? {
        if batch.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(5));
            continue;
        }
        for record in batch {
            if let Some(ts) = record.timestamp_ms() {
                replay.advance(ts)?;
            }
            replay.ingest(record);
        }
    }
    if let Some(last) = replay.last_event_ms {
        replay.advance(last + replay.tick_ms)?;
    }
    Ok(replay.finish(source.labels(), source.describe()))
}

/// The pipeline's replay state plus the rows recorded so far.
struct Replay {
    windows: WindowStore,
    graph: LiveGraph,
    horizon_ms: i64,
    res_ms: i64,
    tick_ms: i64,
    next_tick_ms: Option<TimestampMs>,
    last_event_ms: Option<TimestampMs>,
    ticks: u64,
    graph_every: usize,
    due: Vec<EntityId>,
    buf: Vec<f32>,
    seq_values: Vec<f32>,
    seq_mask: Vec<f32>,
    /// (mean, std, missing_ratio) feature indices per metric, for volatility.
    context_builder: ContextBuilder,
    interned: HashMap<EntityId, u32>,
    ids: Vec<EntityId>,
    entity: Vec<u32>,
    tick_at: Vec<TimestampMs>,
    label_at: Vec<TimestampMs>,
    features: Vec<f32>,
    context: Vec<f32>,
    sequences: Option<Sequences>,
    snapshots: Vec<GraphSnapshot>,
}

impl Replay {
    fn new(windows: WindowConfig, config: &DatasetConfig) -> Result<Self, TrainError> {
        let store = WindowStore::new(windows)?;
        let spec = store.spec().clone();
        let context_builder = ContextBuilder::new(&spec);
        let c = store.config();
        let res_ms = c.resolution_ms as i64;
        let tick_ms = res_ms * c.step as i64;
        let sequences = config.sequences.then(|| Sequences {
            length: c.length,
            metrics: c.metrics.len(),
            values: Vec::new(),
            mask: Vec::new(),
        });
        Ok(Replay {
            graph: LiveGraph::new(config.graph.clone())?,
            windows: store,
            horizon_ms: config.horizon_ms,
            res_ms,
            tick_ms,
            next_tick_ms: None,
            last_event_ms: None,
            ticks: 0,
            graph_every: config.graph_every_ticks,
            due: Vec::new(),
            buf: Vec::new(),
            seq_values: Vec::new(),
            seq_mask: Vec::new(),
            context_builder,
            interned: HashMap::new(),
            ids: Vec::new(),
            entity: Vec::new(),
            tick_at: Vec::new(),
            label_at: Vec::new(),
            features: Vec::new(),
            context: Vec::new(),
            sequences,
            snapshots: Vec::new(),
        })
    }

    fn ingest(&mut self, record: Record) {
        match record {
            Record::Sample(s) => {
                self.note_time(s.timestamp_ms);
                self.windows.push(&s);
                // As in the pipeline: a sample's topology hints may be refused; the sample stays.
                let _ = self.graph.observe(&s);
            }
            Record::Topology(t) => {
                self.note_time(t.timestamp_ms);
                let _ = self.graph.apply(&t);
            }
            Record::DeadLetter(_) => {}
        }
    }

    fn note_time(&mut self, ts: TimestampMs) {
        self.last_event_ms = Some(self.last_event_ms.map_or(ts, |l| l.max(ts)));
    }

    /// The pipeline's `advance`: one tick at the last boundary crossed.
    fn advance(&mut self, ts: TimestampMs) -> Result<(), TrainError> {
        let tick = self.tick_ms;
        let next = *self
            .next_tick_ms
            .get_or_insert_with(|| (ts.div_euclid(tick) + 1) * tick);
        if ts < next {
            return Ok(());
        }
        let boundary = ts.div_euclid(tick) * tick;
        self.tick(boundary)?;
        self.next_tick_ms = Some(boundary + tick);
        Ok(())
    }

    fn tick(&mut self, now_ms: TimestampMs) -> Result<(), TrainError> {
        self.ticks += 1;
        self.windows.due_into(now_ms - 1, &mut self.due);
        let first_row = self.entity.len();
        if !self.due.is_empty() {
            self.record_rows(now_ms)?;
        }
        if self.graph_every > 0 && (self.ticks - 1).is_multiple_of(self.graph_every as u64) {
            self.snapshot(now_ms, first_row)?;
        }
        if self
            .ticks
            .is_multiple_of((60_000 / self.tick_ms).max(1) as u64)
        {
            for id in self.windows.evict_stale(now_ms) {
                self.context_builder.forget(&id);
            }
            self.graph.expire(now_ms);
        }
        Ok(())
    }

    fn record_rows(&mut self, now_ms: TimestampMs) -> Result<(), TrainError> {
        self.windows.feature_matrix(&self.due, &mut self.buf)?;
        let width = self.windows.spec().len();
        for (i, id) in self.due.iter().enumerate() {
            let row = &self.buf[i * width..(i + 1) * width];
            let end = self
                .windows
                .window_end_ms(id)
                .expect("a due entity has a window");
            let e = match self.interned.get(id) {
                Some(&e) => e,
                None => {
                    let e = u32::try_from(self.ids.len()).expect("fewer than 2^32 entities");
                    self.interned.insert(id.clone(), e);
                    self.ids.push(id.clone());
                    e
                }
            };
            self.entity.push(e);
            self.tick_at.push(now_ms);
            self.label_at.push(end - self.res_ms);
            self.features.extend_from_slice(row);

            self.context_builder
                .push_row(id, row, end, &self.graph, &mut self.context);
        }
        if let Some(seq) = &mut self.sequences {
            self.windows
                .sequence_matrix(&self.due, &mut self.seq_values, &mut self.seq_mask)?;
            seq.values.extend_from_slice(&self.seq_values);
            seq.mask.extend_from_slice(&self.seq_mask);
        }
        Ok(())
    }

    fn snapshot(&mut self, now_ms: TimestampMs, first_row: usize) -> Result<(), TrainError> {
        let width = self.windows.spec().len();
        let rows: HashMap<&EntityId, usize> = (first_row..self.entity.len())
            .map(|r| (&self.ids[self.entity[r] as usize], r))
            .collect();
        let features = &self.features;
        let graph = self.graph.export(width, |id| {
            rows.get(id).map(|&r| &features[r * width..(r + 1) * width])
        })?;
        let node_rows = graph
            .ids
            .iter()
            .map(|id| rows.get(id).map(|&r| r as u32))
            .collect();
        self.snapshots.push(GraphSnapshot {
            tick_ms: now_ms,
            label_ms: now_ms - self.res_ms,
            graph,
            rows: node_rows,
            labels: Vec::new(),
            point: Vec::new(),
        });
        Ok(())
    }

    fn finish(self, incidents: Vec<IncidentLabel>, source: String) -> Dataset {
        let index = LabelIndex::new(&incidents);
        let n = self.entity.len();
        let mut labels = Vec::with_capacity(n * K);
        let mut point = Vec::with_capacity(n);
        let mut tti = Vec::with_capacity(n * K);
        for r in 0..n {
            let id = &self.ids[self.entity[r] as usize];
            let t = self.label_at[r];
            labels.extend(index.horizon(id, t, self.horizon_ms).map(u8::from));
            point.push(u8::from(index.inside(id, t)));
            tti.extend(
                index
                    .time_to_incident(id, t)
                    .map(|s| s.map_or(-1.0, |s| s as f32)),
            );
        }
        let mut snapshots = self.snapshots;
        for s in &mut snapshots {
            for id in &s.graph.ids {
                s.labels
                    .extend(index.horizon(id, s.label_ms, self.horizon_ms).map(u8::from));
                s.point.push(u8::from(index.inside(id, s.label_ms)));
            }
        }
        Dataset {
            source,
            spec: self.windows.spec().clone(),
            context_names: CONTEXT_NAMES.iter().map(|s| s.to_string()).collect(),
            horizon_ms: self.horizon_ms,
            tick_ms: self.tick_ms,
            entities: self.ids.iter().map(|id| id.as_str().to_string()).collect(),
            entity: self.entity,
            tick_at_ms: self.tick_at,
            label_ms: self.label_at,
            features: self.features,
            context: self.context,
            labels,
            point,
            time_to_incident_s: tti,
            sequences: self.sequences,
            incidents,
            snapshots,
        }
    }
}

impl Dataset {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.entity.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.entity.is_empty()
    }

    /// Width of a feature row.
    pub fn width(&self) -> usize {
        self.spec.len()
    }

    /// Feature row `i`.
    pub fn feature_row(&self, i: usize) -> &[f32] {
        let w = self.width();
        &self.features[i * w..(i + 1) * w]
    }

    /// Context row `i`.
    pub fn context_row(&self, i: usize) -> &[f32] {
        let w = self.context_names.len();
        &self.context[i * w..(i + 1) * w]
    }

    /// Horizon labels of row `i`, [`AnomalyKind::ALL`] order.
    pub fn label_row(&self, i: usize) -> &[u8] {
        &self.labels[i * K..(i + 1) * K]
    }

    /// Whether row `i` is positive for `kind`.
    pub fn label(&self, i: usize, kind: AnomalyKind) -> bool {
        self.labels[i * K + kind.index()] != 0
    }

    /// Entity name of row `i`.
    pub fn entity_name(&self, i: usize) -> &str {
        &self.entities[self.entity[i] as usize]
    }

    /// Rows positive for `kind`.
    pub fn positives(&self, kind: AnomalyKind) -> usize {
        (0..self.len()).filter(|&i| self.label(i, kind)).count()
    }

    /// Rows inside an anomaly (point label 1).
    pub fn point_positives(&self) -> usize {
        self.point.iter().filter(|&&p| p != 0).count()
    }

    /// Whether row `i` is negative for every kind and outside every anomaly.
    pub fn is_negative(&self, i: usize) -> bool {
        self.point[i] == 0 && self.label_row(i).iter().all(|&y| y == 0)
    }

    /// The rows `idx`, in that order (snapshots keep their graphs; their row references follow
    /// the rows, or become `None` for rows left out).
    pub fn select(&self, idx: &[usize]) -> Dataset {
        let w = self.width();
        let c = self.context_names.len();
        let mut new_of_old = vec![None; self.len()];
        for (new, &old) in idx.iter().enumerate() {
            new_of_old[old] = Some(new as u32);
        }
        let gather = |v: &[f32], width: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(idx.len() * width);
            for &i in idx {
                out.extend_from_slice(&v[i * width..(i + 1) * width]);
            }
            out
        };
        let gather_u8 = |v: &[u8], width: usize| -> Vec<u8> {
            let mut out = Vec::with_capacity(idx.len() * width);
            for &i in idx {
                out.extend_from_slice(&v[i * width..(i + 1) * width]);
            }
            out
        };
        let sequences = self.sequences.as_ref().map(|s| Sequences {
            length: s.length,
            metrics: s.metrics,
            values: gather(&s.values, s.row_len()),
            mask: gather(&s.mask, s.row_len()),
        });
        let snapshots = self
            .snapshots
            .iter()
            .map(|s| GraphSnapshot {
                rows: s
                    .rows
                    .iter()
                    .map(|r| r.and_then(|r| new_of_old[r as usize]))
                    .collect(),
                ..s.clone()
            })
            .collect();
        Dataset {
            source: self.source.clone(),
            spec: self.spec.clone(),
            context_names: self.context_names.clone(),
            horizon_ms: self.horizon_ms,
            tick_ms: self.tick_ms,
            entities: self.entities.clone(),
            entity: idx.iter().map(|&i| self.entity[i]).collect(),
            tick_at_ms: idx.iter().map(|&i| self.tick_at_ms[i]).collect(),
            label_ms: idx.iter().map(|&i| self.label_ms[i]).collect(),
            features: gather(&self.features, w),
            context: gather(&self.context, c),
            labels: gather_u8(&self.labels, K),
            point: gather_u8(&self.point, 1),
            time_to_incident_s: gather(&self.time_to_incident_s, K),
            sequences,
            incidents: self.incidents.clone(),
            snapshots,
        }
    }

    /// Keeps every row that is positive somewhere (any kind or the point label) and each
    /// negative row with probability `keep` (seeded, so the same call keeps the same rows).
    pub fn subsample_negatives(&self, keep: f64, seed: u64) -> Result<Dataset, TrainError> {
        if !(keep > 0.0 && keep <= 1.0) {
            return Err(config_error("keep", format!("{keep} is not in (0, 1]")));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let idx: Vec<usize> = (0..self.len())
            .filter(|&i| {
                // Draw for every row, so which negatives survive does not depend on the labels
                // of other rows.
                let u: f64 = rng.random();
                !self.is_negative(i) || u < keep
            })
            .collect();
        Ok(self.select(&idx))
    }

    /// Splits rows by label time: the last `valid_fraction` of rows (by time, over all rows or
    /// within each entity) are validation; training rows end `gap_ms` before the cutoff, so
    /// overlapping windows do not leak across the split. Rows at the cutoff time go to
    /// validation.
    pub fn split_by_time(
        &self,
        valid_fraction: f64,
        scope: SplitScope,
        gap_ms: i64,
    ) -> Result<Split, TrainError> {
        if !(0.0..1.0).contains(&valid_fraction) {
            return Err(config_error(
                "valid_fraction",
                format!("{valid_fraction} is not in [0, 1)"),
            ));
        }
        if gap_ms < 0 {
            return Err(config_error("gap_ms", format!("{gap_ms} is negative")));
        }
        let groups: Vec<Vec<usize>> = match scope {
            SplitScope::Global => vec![(0..self.len()).collect()],
            SplitScope::PerEntity => {
                let mut g = vec![Vec::new(); self.entities.len()];
                for i in 0..self.len() {
                    g[self.entity[i] as usize].push(i);
                }
                g
            }
        };
        let mut split = Split::default();
        for rows in groups {
            if rows.is_empty() {
                continue;
            }
            let mut times: Vec<TimestampMs> = rows.iter().map(|&i| self.label_ms[i]).collect();
            times.sort_unstable();
            let at = ((times.len() as f64) * (1.0 - valid_fraction)).floor() as usize;
            let cutoff = times.get(at).copied().unwrap_or(TimestampMs::MAX);
            for i in rows {
                let t = self.label_ms[i];
                if t >= cutoff {
                    split.valid.push(i);
                } else if t < cutoff.saturating_sub(gap_ms) {
                    split.train.push(i);
                }
            }
        }
        split.train.sort_unstable();
        split.valid.sort_unstable();
        Ok(split)
    }

    /// Rows of several data sets built with the same spec, context and horizon, one after the
    /// other (entities merged by name; snapshots concatenated with their rows shifted).
    pub fn concat(parts: &[Dataset]) -> Result<Dataset, TrainError> {
        let Some(first) = parts.first() else {
            return Err(TrainError::Input("no data set to concatenate".into()));
        };
        let mut out = first.select(&[]);
        out.entities.clear();
        out.incidents.clear();
        out.snapshots.clear();
        out.source = parts
            .iter()
            .map(|p| p.source.as_str())
            .collect::<Vec<_>>()
            .join(" + ");
        let mut names: HashMap<String, u32> = HashMap::new();
        for p in parts {
            p.spec
                .check(&first.spec)
                .map_err(|e| TrainError::Input(format!("{}: {e}", p.source)))?;
            if p.context_names != first.context_names
                || p.horizon_ms != first.horizon_ms
                || p.tick_ms != first.tick_ms
                || p.sequences.is_some() != first.sequences.is_some()
            {
                return Err(TrainError::Input(format!(
                    "{}: context, horizon, tick or sequences differ from {}",
                    p.source, first.source
                )));
            }
            let offset = out.len() as u32;
            let map: Vec<u32> = p
                .entities
                .iter()
                .map(|n| {
                    let next = names.len() as u32;
                    *names.entry(n.clone()).or_insert_with(|| {
                        out.entities.push(n.clone());
                        next
                    })
                })
                .collect();
            out.entity.extend(p.entity.iter().map(|&e| map[e as usize]));
            out.tick_at_ms.extend_from_slice(&p.tick_at_ms);
            out.label_ms.extend_from_slice(&p.label_ms);
            out.features.extend_from_slice(&p.features);
            out.context.extend_from_slice(&p.context);
            out.labels.extend_from_slice(&p.labels);
            out.point.extend_from_slice(&p.point);
            out.time_to_incident_s
                .extend_from_slice(&p.time_to_incident_s);
            if let (Some(o), Some(s)) = (&mut out.sequences, &p.sequences) {
                o.values.extend_from_slice(&s.values);
                o.mask.extend_from_slice(&s.mask);
            }
            out.incidents.extend_from_slice(&p.incidents);
            out.snapshots
                .extend(p.snapshots.iter().map(|s| GraphSnapshot {
                    rows: s.rows.iter().map(|r| r.map(|r| r + offset)).collect(),
                    ..s.clone()
                }));
        }
        Ok(out)
    }

    /// Writes the data set as JSON (without graph snapshots).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let name = path.display().to_string();
        let file = std::fs::File::create(path).map_err(|source| TrainError::Io {
            path: name.clone(),
            source,
        })?;
        serde_json::to_writer(std::io::BufWriter::new(file), self)
            .map_err(|source| TrainError::Json { path: name, source })
    }

    /// Reads a data set written by [`Dataset::save`].
    pub fn load(path: &Path) -> Result<Dataset, TrainError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| TrainError::Io {
            path: name.clone(),
            source,
        })?;
        serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|source| TrainError::Json { path: name, source })
    }
}
