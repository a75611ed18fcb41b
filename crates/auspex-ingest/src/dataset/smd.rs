//! The Server Machine Dataset (SMD): `machine-G-N_{train,test}.csv.gz`, 38 min-max scaled
//! metrics a row, one row a minute, no timestamps; the test half has a 0/1 `label` column.
//!
//! The same layout holds any bring-your-own data set: per entity `NAME_train.csv[.gz]` and
//! `NAME_test.csv[.gz]`, a header row naming numeric metric columns (any number), and a 0/1
//! `label` column (anywhere) in the test file; `interpretation_label/` is optional.
//!
//! Mapping decisions:
//! - Each machine is a `node` entity named `machine-G-N`.
//! - Timestamps are synthesised: row `i` of the train half is `epoch_ms + i` minutes
//!   ([`SMD_EPOCH_MS`], 2019-01-01T00:00Z, by default); the test half continues after the last
//!   train row, as in the original collection. Reading only the test half still counts the train
//!   rows, so a machine's timestamps are the same whichever half is read.
//! - Metrics keep the community's 38 column names with an `smd_` prefix (`smd_cpu_r`,
//!   `smd_mem_u`, ...): the prefix says the values are SMD's min-max scaled ones. None is mapped
//!   to a canonical name: after per-machine min-max scaling `cpu_r = 1.0` means "this machine's
//!   maximum", not "all cores busy", so no canonical unit (cores, bytes, 0..1 of capacity)
//!   holds. The `label` column is ground truth and never a metric.
//! - Labels: each run of consecutive `label == 1` rows in the test half is one
//!   [`IncidentLabel`] (`onset = incident` = first anomalous row, `end` = last), fault `smd`.
//!   SMD has no incident kinds of its own; the kind is inferred from the metrics that
//!   `interpretation_label/machine-G-N.txt` names for the overlapping segment, by column name:
//!   `cpu_*`, `load_*` → cpu_exhaustion; `*mem*` → memory_exhaustion; `eth*`, `tcp_*`, `udp_*`
//!   and the TCP counters (`active_opens`, `curr_estab`, `in_errs`, `in_segs`,
//!   `listen_overflows`, `out_rsts`, `out_segs`, `passive_opens`, `retransegs`) →
//!   network_issue; the kind with most named metrics wins (ties: cpu, memory, network); a
//!   segment naming only `disk_*`, `si`, `so` (or none) is pod_failure.
//! - Point labels (one 0/1 per test row, for evaluation without point-adjust) come from
//!   [`SmdSource::point_labels`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auspex_model::{AnomalyKind, Entity, EntityKind, EntityRef, IncidentLabel, MetricSample};

use super::{csv_error, dead_row, open_csv, read_to_string};
use crate::merge::{IterLane, Lane, Merge};
use crate::{IngestError, Record, Source};

/// Timestamp of the first train row: 2019-01-01T00:00:00Z.
pub const SMD_EPOCH_MS: i64 = 1_546_300_800_000;
/// One row a minute.
pub const SMD_STEP_MS: i64 = 60_000;
/// Prefix of SMD metric names.
pub const SMD_METRIC_PREFIX: &str = "smd_";

/// Which half of each machine's series to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmdHalf {
    /// The unlabelled first half.
    Train,
    /// The labelled second half (the default: it has ground truth).
    #[default]
    Test,
    /// Train then test, one continuous series.
    Both,
}

impl SmdHalf {
    fn train(self) -> bool {
        matches!(self, SmdHalf::Train | SmdHalf::Both)
    }
    fn test(self) -> bool {
        matches!(self, SmdHalf::Test | SmdHalf::Both)
    }
}

/// What to read from SMD.
#[derive(Debug, Clone)]
pub struct SmdConfig {
    /// The data set's root: holds `NAME_{train,test}.csv[.gz]` and, optionally,
    /// `interpretation_label/`.
    pub root: PathBuf,
    /// Machines to read (`machine-1-2`, ...); empty reads every machine found under `root`.
    pub machines: Vec<String>,
    /// Train, test or both halves.
    pub half: SmdHalf,
    /// Timestamp of each machine's first train row.
    pub epoch_ms: i64,
}

impl SmdConfig {
    /// Every machine's test half, timestamps from [`SMD_EPOCH_MS`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SmdConfig {
            root: root.into(),
            machines: Vec::new(),
            half: SmdHalf::Test,
            epoch_ms: SMD_EPOCH_MS,
        }
    }

    pub fn machines<S: Into<String>>(mut self, machines: impl IntoIterator<Item = S>) -> Self {
        self.machines = machines.into_iter().map(Into::into).collect();
        self
    }

    pub fn half(mut self, half: SmdHalf) -> Self {
        self.half = half;
        self
    }
}

/// Point-wise ground truth for one machine's test half.
#[derive(Debug, Clone, PartialEq)]
pub struct SmdPointLabels {
    pub entity: EntityRef,
    /// Timestamp of the first test row.
    pub start_ms: i64,
    /// Milliseconds between rows ([`SMD_STEP_MS`]).
    pub step_ms: i64,
    /// The `label` column, one entry per test row.
    pub labels: Vec<bool>,
}

impl SmdPointLabels {
    /// The label of the row at `timestamp_ms`, if it is a test row.
    pub fn at(&self, timestamp_ms: i64) -> Option<bool> {
        let offset = timestamp_ms.checked_sub(self.start_ms)?;
        if offset < 0 || offset % self.step_ms != 0 {
            return None;
        }
        self.labels.get((offset / self.step_ms) as usize).copied()
    }

    pub fn anomalous_rows(&self) -> usize {
        self.labels.iter().filter(|l| **l).count()
    }
}

/// One machine, as checked and summarised at construction.
struct Machine {
    name: String,
    train: PathBuf,
    test: PathBuf,
    columns: Arc<[String]>,
    /// Index of the test file's `label` column.
    label_at: usize,
    train_rows: u64,
    points: SmdPointLabels,
}

/// SMD machines replayed as node samples, merged by time, with incident and point labels.
pub struct SmdSource {
    config: SmdConfig,
    machines: Vec<Machine>,
    labels: Vec<IncidentLabel>,
    merge: Merge,
}

impl SmdSource {
    /// Checks every selected machine's files and reads its labels; samples are read while
    /// replaying.
    pub fn new(config: SmdConfig) -> Result<Self, IngestError> {
        if !config.root.is_dir() {
            return Err(IngestError::missing(
                config.root.display().to_string(),
                "SMD data set directory",
            ));
        }
        let names = if config.machines.is_empty() {
            discover(&config.root)?
        } else {
            config.machines.clone()
        };
        if names.is_empty() {
            return Err(IngestError::missing(
                config
                    .root
                    .join("NAME_train.csv[.gz]")
                    .display()
                    .to_string(),
                "SMD machine files",
            ));
        }
        let mut machines = Vec::new();
        let mut labels = Vec::new();
        for name in names {
            let m = load_machine(&config, &name)?;
            if config.half.test() {
                labels.extend(incident_labels(&config.root, &m)?);
            }
            machines.push(m);
        }
        let lanes = machines
            .iter()
            .map(|m| lane(&config, m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SmdSource {
            config,
            machines,
            labels,
            merge: Merge::new(lanes),
        })
    }

    /// Machines read, in order.
    pub fn machines(&self) -> Vec<&str> {
        self.machines.iter().map(|m| m.name.as_str()).collect()
    }

    /// The 38 metric names (with prefix) of a machine.
    pub fn columns(&self, machine: &str) -> Option<&[String]> {
        self.machines
            .iter()
            .find(|m| m.name == machine)
            .map(|m| &m.columns[..])
    }

    /// (train rows, test rows) of a machine; test rows are 0 when only the train half is read.
    pub fn row_counts(&self, machine: &str) -> Option<(u64, u64)> {
        self.machines
            .iter()
            .find(|m| m.name == machine)
            .map(|m| (m.train_rows, m.points.labels.len() as u64))
    }

    /// Point-wise test labels per machine (empty when only the train half is read).
    pub fn point_labels(&self) -> Vec<SmdPointLabels> {
        if !self.config.half.test() {
            return Vec::new();
        }
        self.machines.iter().map(|m| m.points.clone()).collect()
    }
}

impl Source for SmdSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        self.merge.next_batch(max)
    }

    fn sample_interval_ms(&self) -> Option<u64> {
        Some(60_000)
    }

    fn labels(&self) -> Vec<IncidentLabel> {
        self.labels.clone()
    }

    fn describe(&self) -> String {
        format!(
            "smd {:?} {} ({})",
            self.config.half,
            self.machines().join(","),
            self.config.root.display()
        )
    }
}

/// Entities with a train file (`NAME_train.csv` or `NAME_train.csv.gz`) under `root`, SMD's
/// machines in (group, number) order and any other name after them, alphabetically.
fn discover(root: &Path) -> Result<Vec<String>, IngestError> {
    let entries =
        std::fs::read_dir(root).map_err(|e| IngestError::io(root.display().to_string(), e))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name().to_str().and_then(|f| {
                f.strip_suffix("_train.csv.gz")
                    .or_else(|| f.strip_suffix("_train.csv"))
                    .map(str::to_string)
            })
        })
        .collect();
    names.sort_by_key(|n| machine_order(n));
    names.dedup();
    Ok(names)
}

/// `root/NAME_HALF.csv.gz` when it exists, else `root/NAME_HALF.csv` (named in the error when
/// neither does).
fn half_file(root: &Path, name: &str, half: &str) -> PathBuf {
    let gz = root.join(format!("{name}_{half}.csv.gz"));
    if gz.exists() {
        gz
    } else {
        root.join(format!("{name}_{half}.csv"))
    }
}

fn machine_order(name: &str) -> (u32, u32, String) {
    let mut parts = name.trim_start_matches("machine-").split('-');
    let g = parts
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(u32::MAX);
    let n = parts
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(u32::MAX);
    (g, n, name.to_string())
}

fn load_machine(config: &SmdConfig, name: &str) -> Result<Machine, IngestError> {
    let train = half_file(&config.root, name, "train");
    let test = half_file(&config.root, name, "test");
    // The train half fixes the metric names and, by its length, the test half's timestamps.
    let mut reader = open_csv(&train, &format!("SMD train file of {name}"))?;
    let columns: Arc<[String]> = reader
        .headers()
        .map_err(|e| csv_error(&train, e))?
        .iter()
        .map(|c| format!("{SMD_METRIC_PREFIX}{}", c.trim()))
        .collect();
    let mut train_rows = 0u64;
    let mut record = csv::ByteRecord::new();
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(&train, e))?
    {
        train_rows += 1;
    }
    let start_ms = config.epoch_ms + train_rows as i64 * SMD_STEP_MS;
    let mut labels = Vec::new();
    let mut label_at = columns.len();
    if config.half.test() {
        let mut reader = open_csv(&test, &format!("SMD test file of {name}"))?;
        let header = reader.headers().map_err(|e| csv_error(&test, e))?.clone();
        label_at = check_test_header(&test, &header, &columns)?;
        let mut record = csv::StringRecord::new();
        while reader
            .read_record(&mut record)
            .map_err(|e| csv_error(&test, e))?
        {
            // A row whose label does not parse counts as normal; the row itself dead-letters.
            let label = record
                .get(label_at)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .is_some_and(|v| v != 0.0);
            labels.push(label);
        }
    }
    Ok(Machine {
        name: name.to_string(),
        points: SmdPointLabels {
            entity: EntityRef::node(name),
            start_ms,
            step_ms: SMD_STEP_MS,
            labels,
        },
        train,
        test,
        columns,
        label_at,
        train_rows,
    })
}

/// The index of the `label` column in a test file whose other columns are the train file's, in
/// the same order.
fn check_test_header(
    path: &Path,
    header: &csv::StringRecord,
    columns: &[String],
) -> Result<usize, IngestError> {
    let names: Vec<&str> = header.iter().map(str::trim).collect();
    let Some(label_at) = names.iter().position(|n| *n == "label") else {
        return Err(IngestError::format(
            path.display().to_string(),
            "no `label` column in the header",
        ));
    };
    let metrics = names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != label_at)
        .map(|(_, n)| *n);
    let same = names.len() == columns.len() + 1
        && metrics
            .zip(columns)
            .all(|(a, b)| b.strip_prefix(SMD_METRIC_PREFIX) == Some(a));
    if same {
        Ok(label_at)
    } else {
        Err(IngestError::format(
            path.display().to_string(),
            "header is not the train file's columns plus `label`",
        ))
    }
}

/// A machine's rows (train then test, as configured) as a lazily read lane.
fn lane(config: &SmdConfig, m: &Machine) -> Result<Box<dyn Lane>, IngestError> {
    let mut parts: Vec<(PathBuf, i64, Option<usize>)> = Vec::new();
    if config.half.train() {
        parts.push((m.train.clone(), config.epoch_ms, None));
    }
    if config.half.test() {
        parts.push((m.test.clone(), m.points.start_ms, Some(m.label_at)));
    }
    let mut readers = Vec::new();
    for (path, start, label_at) in parts {
        let reader = open_csv(&path, "SMD file")?;
        readers.push(Rows {
            reader,
            path,
            start_ms: start,
            row: 0,
            record: csv::StringRecord::new(),
            columns: m.columns.clone(),
            label_at,
            entity: Entity::new(EntityKind::Node, None, &m.name),
        });
    }
    Ok(Box::new(IterLane::new(readers.into_iter().flatten())))
}

/// One SMD file read row by row.
struct Rows {
    reader: csv::Reader<Box<dyn std::io::Read + Send>>,
    path: PathBuf,
    start_ms: i64,
    row: u64,
    record: csv::StringRecord,
    columns: Arc<[String]>,
    /// The `label` field of a test file, skipped.
    label_at: Option<usize>,
    entity: Entity,
}

impl Iterator for Rows {
    type Item = Result<(i64, Record), IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.read_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(csv_error(&self.path, e))),
        }
        let ts = self.start_ms + self.row as i64 * SMD_STEP_MS;
        self.row += 1;
        Some(Ok((ts, self.sample(ts))))
    }
}

impl Rows {
    fn sample(&self, ts: i64) -> Record {
        let rec = &self.record;
        let n = self.columns.len() + usize::from(self.label_at.is_some());
        if rec.len() < n {
            let reason = format!("{} fields, expected {n}", rec.len());
            return Record::DeadLetter(dead_row(&self.path, self.row, rec, reason));
        }
        let fields = rec
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.label_at)
            .map(|(_, f)| f);
        let mut metrics = BTreeMap::new();
        for (name, field) in self.columns.iter().zip(fields) {
            match field.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    metrics.insert(name.clone(), v);
                }
                _ => {
                    let reason = format!("{name}: {field:?} is not a finite number");
                    return Record::DeadLetter(dead_row(&self.path, self.row, rec, reason));
                }
            }
        }
        Record::Sample(MetricSample {
            timestamp_ms: ts,
            entity: self.entity.clone(),
            metrics,
        })
    }
}

/// The category a column stands for, by its community name (without prefix).
fn column_kind(column: &str) -> Option<AnomalyKind> {
    const TCP_COUNTERS: [&str; 9] = [
        "active_opens",
        "curr_estab",
        "in_errs",
        "in_segs",
        "listen_overflows",
        "out_rsts",
        "out_segs",
        "passive_opens",
        "retransegs",
    ];
    if column.starts_with("cpu") || column.starts_with("load") {
        Some(AnomalyKind::CpuExhaustion)
    } else if column.contains("mem") {
        Some(AnomalyKind::MemoryExhaustion)
    } else if column.starts_with("eth")
        || column.starts_with("tcp")
        || column.starts_with("udp")
        || column.starts_with("net")
        || TCP_COUNTERS.contains(&column)
    {
        Some(AnomalyKind::NetworkIssue)
    } else {
        None
    }
}

/// The kind for a set of 1-based metric indices (see the module doc).
pub fn infer_kind(columns: &[String], indices: &[usize]) -> AnomalyKind {
    let mut counts = [0usize; 3];
    for &i in indices {
        let Some(col) = i.checked_sub(1).and_then(|i| columns.get(i)) else {
            continue;
        };
        let col = col.strip_prefix(SMD_METRIC_PREFIX).unwrap_or(col);
        match column_kind(col) {
            Some(AnomalyKind::CpuExhaustion) => counts[0] += 1,
            Some(AnomalyKind::MemoryExhaustion) => counts[1] += 1,
            Some(AnomalyKind::NetworkIssue) => counts[2] += 1,
            _ => {}
        }
    }
    let kinds = [
        AnomalyKind::CpuExhaustion,
        AnomalyKind::MemoryExhaustion,
        AnomalyKind::NetworkIssue,
    ];
    let best = (0..3).fold(0, |b, i| if counts[i] > counts[b] { i } else { b });
    if counts[best] == 0 {
        AnomalyKind::PodFailure
    } else {
        kinds[best]
    }
}

/// `interpretation_label/<machine>.txt`: lines `start-end:i,j,k` (rows, 1-based metric indices).
fn read_interpretation(path: &Path) -> Result<Vec<(u64, u64, Vec<usize>)>, IngestError> {
    let text = read_to_string(path, "SMD interpretation label file")?;
    let name = path.display().to_string();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || {
            IngestError::format(
                format!("{name}:{}", i + 1),
                format!("{line:?} is not start-end:i,j,k"),
            )
        };
        let (range, metrics) = line.split_once(':').ok_or_else(bad)?;
        let (a, b) = range.split_once('-').ok_or_else(bad)?;
        let a: u64 = a.trim().parse().map_err(|_| bad())?;
        let b: u64 = b.trim().parse().map_err(|_| bad())?;
        let metrics = metrics
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse::<usize>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        out.push((a, b, metrics));
    }
    Ok(out)
}

/// Runs of anomalous test rows as incident labels, kinds from the interpretation file.
fn incident_labels(root: &Path, m: &Machine) -> Result<Vec<IncidentLabel>, IngestError> {
    let runs = runs(&m.points.labels);
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let path = root
        .join("interpretation_label")
        .join(format!("{}.txt", m.name));
    // Optional: without it (a bring-your-own directory) every segment is pod_failure.
    let segments = if path.exists() {
        read_interpretation(&path)?
    } else {
        Vec::new()
    };
    let ts = |row: usize| m.points.start_ms + row as i64 * SMD_STEP_MS;
    Ok(runs
        .into_iter()
        .map(|(first, last)| {
            // Segment ends in the file are one past the last row; overlap is checked loosely.
            let indices: Vec<usize> = segments
                .iter()
                .filter(|(a, b, _)| *a as usize <= last && first <= *b as usize)
                .flat_map(|(_, _, idx)| idx.iter().copied())
                .collect();
            IncidentLabel {
                entity: m.points.entity.clone(),
                kind: infer_kind(&m.columns, &indices),
                fault: "smd".into(),
                onset_ms: ts(first),
                incident_ms: ts(first),
                end_ms: ts(last),
                root_cause: true,
            }
        })
        .collect())
}

/// (first, last) row of each run of `true`.
fn runs(labels: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &l) in labels.iter().enumerate() {
        match (l, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, labels.len() - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_kinds() {
        let l = [false, true, true, false, true];
        assert_eq!(runs(&l), vec![(1, 2), (4, 4)]);
        let cols: Vec<String> = ["cpu_r", "mem_u", "eth1_fi", "disk_q", "tcp_tw"]
            .iter()
            .map(|c| format!("smd_{c}"))
            .collect();
        assert_eq!(infer_kind(&cols, &[1]), AnomalyKind::CpuExhaustion);
        assert_eq!(infer_kind(&cols, &[2, 3, 5]), AnomalyKind::NetworkIssue);
        assert_eq!(infer_kind(&cols, &[4]), AnomalyKind::PodFailure);
        assert_eq!(infer_kind(&cols, &[]), AnomalyKind::PodFailure);
        assert_eq!(infer_kind(&cols, &[1, 2]), AnomalyKind::CpuExhaustion);
    }
}
