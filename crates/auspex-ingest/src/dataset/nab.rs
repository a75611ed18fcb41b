//! The Numenta Anomaly Benchmark's real categories `realAWSCloudwatch` and `realKnownCause`:
//! univariate `timestamp,value` CSVs with anomaly windows in `labels/combined_windows.json`.
//!
//! Mapping decisions:
//! - Each file is one `node` entity named after the file's stem
//!   (`ec2_cpu_utilization_24ae8d`); NAB's series are machines or whole systems, never pods.
//! - Timestamps are naive in the files; they are read as UTC (the windows are in the same
//!   frame, so labels line up whatever the true zone was).
//! - Every sample carries the raw series as `value`. Where the series' meaning and unit are
//!   plain from its CloudWatch name, a canonical metric is added beside it:
//!   - `*cpu_utilization*` (EC2/RDS `CPUUtilization`, percent) → `node_cpu_utilization_ratio`
//!     = value / 100;
//!   - `*network_in*` / `*NetworkIn*` (`NetworkIn`, bytes received per 5-minute period) →
//!     `network_rx_bytes_total`, the running sum (a counter whose rate is the series);
//!   - `elb_request_count*` (`RequestCount` per 5-minute period) → `requests_per_second` =
//!     value / 300.
//!
//!   Everything else (disk write bytes, request latency of unstated unit, temperatures, taxi
//!   passengers, key holds, `grok_asg_anomaly`) keeps only `value`.
//! - A row whose timestamp is not after the previous row's (the files repeat an hour at a
//!   daylight-saving change) is dead-lettered, so each entity's series stays strictly
//!   increasing; a row that does not parse is dead-lettered too.
//! - Labels: one [`IncidentLabel`] per window, `onset = incident` = window start, `end` =
//!   window end, fault `nab`; kind from the file name: `cpu` → cpu_exhaustion; `network`,
//!   `request` or `latency` → network_issue; anything else → pod_failure (NAB has no kinds).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use auspex_model::metrics;
use auspex_model::{AnomalyKind, Entity, EntityKind, EntityRef, IncidentLabel, MetricSample};

use super::{csv_error, dead_row, open_csv, parse_naive_utc_ms, read_to_string};
use crate::merge::{IterLane, Lane, Merge};
use crate::{DeadLetter, IngestError, Record, Source};

/// The categories read by default.
pub const NAB_CATEGORIES: [&str; 2] = ["realAWSCloudwatch", "realKnownCause"];
/// The name of the raw series' metric.
pub const NAB_VALUE_METRIC: &str = "value";
/// CloudWatch's period in these files, for per-period sums.
const CLOUDWATCH_PERIOD_S: f64 = 300.0;

/// What to read from NAB.
#[derive(Debug, Clone)]
pub struct NabConfig {
    /// The data set's root: holds the category directories and `labels/`.
    pub root: PathBuf,
    /// Files as `category/file.csv`; empty reads every CSV of [`NAB_CATEGORIES`].
    pub files: Vec<String>,
}

impl NabConfig {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NabConfig {
            root: root.into(),
            files: Vec::new(),
        }
    }

    pub fn files<S: Into<String>>(mut self, files: impl IntoIterator<Item = S>) -> Self {
        self.files = files.into_iter().map(Into::into).collect();
        self
    }
}

/// How a series maps to canonical metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Canonical {
    None,
    CpuPercent,
    BytesInPerPeriod,
    RequestsPerPeriod,
}

fn canonical_for(stem: &str) -> Canonical {
    let s = stem.to_ascii_lowercase();
    if s.contains("cpu_utilization") {
        Canonical::CpuPercent
    } else if s.contains("network_in") || s.contains("networkin") {
        Canonical::BytesInPerPeriod
    } else if s.starts_with("elb_request_count") {
        Canonical::RequestsPerPeriod
    } else {
        Canonical::None
    }
}

/// The incident kind NAB's file name suggests (see the module doc).
pub fn kind_for(file: &str) -> AnomalyKind {
    let s = file.to_ascii_lowercase();
    if s.contains("cpu") {
        AnomalyKind::CpuExhaustion
    } else if s.contains("network") || s.contains("request") || s.contains("latency") {
        AnomalyKind::NetworkIssue
    } else {
        AnomalyKind::PodFailure
    }
}

enum Row {
    Value { ts: i64, value: f64 },
    Dead { key: i64, letter: DeadLetter },
}

/// One NAB file, parsed.
struct Series {
    key: String,
    entity: Entity,
    canonical: Canonical,
    rows: Vec<Row>,
}

/// NAB series replayed as node samples, merged by time, with window labels.
pub struct NabSource {
    config: NabConfig,
    files: Vec<(String, usize)>,
    labels: Vec<IncidentLabel>,
    merge: Merge,
}

impl NabSource {
    pub fn new(config: NabConfig) -> Result<Self, IngestError> {
        if !config.root.is_dir() {
            return Err(IngestError::missing(
                config.root.display().to_string(),
                "NAB data set directory",
            ));
        }
        let keys = if config.files.is_empty() {
            discover(&config.root)?
        } else {
            config.files.clone()
        };
        let windows_path = config.root.join("labels").join("combined_windows.json");
        let windows: HashMap<String, Vec<Vec<String>>> =
            serde_json::from_str(&read_to_string(&windows_path, "NAB label windows")?).map_err(
                |e| IngestError::format(windows_path.display().to_string(), e.to_string()),
            )?;

        let mut series = Vec::new();
        let mut labels = Vec::new();
        for key in keys {
            let s = read_series(&config.root, &key)?;
            match windows.get(&key) {
                Some(ws) => {
                    for w in ws {
                        labels.push(window_label(&windows_path, &key, &s.entity, w)?);
                    }
                }
                None => tracing::warn!(file = %key, "no NAB label windows for this file"),
            }
            series.push(s);
        }
        let files = series
            .iter()
            .map(|s| (s.key.clone(), s.rows.len()))
            .collect();
        let lanes: Vec<Box<dyn Lane>> = series
            .into_iter()
            .map(|s| Box::new(IterLane::new(samples(s))) as Box<dyn Lane>)
            .collect();
        Ok(NabSource {
            config,
            files,
            labels,
            merge: Merge::new(lanes),
        })
    }

    /// Files read (`category/file.csv`) with their data rows.
    pub fn files(&self) -> &[(String, usize)] {
        &self.files
    }
}

impl Source for NabSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        self.merge.next_batch(max)
    }

    fn sample_interval_ms(&self) -> Option<u64> {
        // Most NAB series are five-minute series (nyc_taxi is 30 min, ambient_temperature hourly).
        Some(300_000)
    }

    fn labels(&self) -> Vec<IncidentLabel> {
        self.labels.clone()
    }

    fn describe(&self) -> String {
        format!(
            "nab {} files ({})",
            self.files.len(),
            self.config.root.display()
        )
    }
}

fn discover(root: &Path) -> Result<Vec<String>, IngestError> {
    let mut keys = Vec::new();
    for cat in NAB_CATEGORIES {
        let dir = root.join(cat);
        let entries = std::fs::read_dir(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                IngestError::missing(dir.display().to_string(), "NAB category directory")
            }
            _ => IngestError::io(dir.display().to_string(), e),
        })?;
        let mut files: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|f| f.ends_with(".csv"))
            .map(|f| format!("{cat}/{f}"))
            .collect();
        files.sort();
        keys.extend(files);
    }
    Ok(keys)
}

fn read_series(root: &Path, key: &str) -> Result<Series, IngestError> {
    let path = root.join(key);
    let stem = Path::new(key)
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| IngestError::Config {
            key: "nab files",
            reason: format!("{key:?} is not category/file.csv"),
        })?
        .to_string();
    let mut reader = open_csv(&path, "NAB series file")?;
    let mut rows = Vec::new();
    let mut last: Option<i64> = None;
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    while reader
        .read_record(&mut record)
        .map_err(|e| csv_error(&path, e))?
    {
        row += 1;
        let key_ts = last.unwrap_or(i64::MIN);
        let dead = |reason: String| Row::Dead {
            key: key_ts,
            letter: dead_row(&path, row, &record, reason),
        };
        let ts = record.get(0).and_then(parse_naive_utc_ms);
        let value = record
            .get(1)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite());
        rows.push(match (ts, value) {
            (None, _) => dead(format!(
                "timestamp {:?} is not YYYY-MM-DD HH:MM:SS",
                record.get(0)
            )),
            (_, None) => dead(format!("value {:?} is not a finite number", record.get(1))),
            (Some(ts), Some(_)) if last.is_some_and(|l| ts <= l) => dead(format!(
                "timestamp {} is not after the previous row's (repeated in the source)",
                record.get(0).unwrap_or_default()
            )),
            (Some(ts), Some(value)) => {
                last = Some(ts);
                Row::Value { ts, value }
            }
        });
    }
    Ok(Series {
        key: key.to_string(),
        entity: Entity::new(EntityKind::Node, None, &stem),
        canonical: canonical_for(&stem),
        rows,
    })
}

fn window_label(
    path: &Path,
    key: &str,
    entity: &Entity,
    window: &[String],
) -> Result<IncidentLabel, IngestError> {
    let bad = || {
        IngestError::format(
            path.display().to_string(),
            format!("{key}: window {window:?} is not [start, end]"),
        )
    };
    let [start, end] = window else {
        return Err(bad());
    };
    let start = parse_naive_utc_ms(start).ok_or_else(bad)?;
    let end = parse_naive_utc_ms(end).ok_or_else(bad)?;
    if end < start {
        return Err(bad());
    }
    Ok(IncidentLabel {
        entity: EntityRef::new(entity.kind, None, &entity.name),
        kind: kind_for(key),
        fault: "nab".into(),
        onset_ms: start,
        incident_ms: start,
        end_ms: end,
        root_cause: true,
    })
}

fn samples(s: Series) -> impl Iterator<Item = Result<(i64, Record), IngestError>> + Send {
    let mut cumulative = 0.0;
    let Series {
        entity,
        canonical,
        rows,
        ..
    } = s;
    rows.into_iter().map(move |row| {
        Ok(match row {
            Row::Dead { key, letter } => (key, Record::DeadLetter(letter)),
            Row::Value { ts, value } => {
                let mut m = BTreeMap::new();
                m.insert(NAB_VALUE_METRIC.to_string(), value);
                match canonical {
                    Canonical::None => {}
                    Canonical::CpuPercent => {
                        m.insert(metrics::NODE_CPU_UTILIZATION_RATIO.into(), value / 100.0);
                    }
                    Canonical::BytesInPerPeriod => {
                        cumulative += value;
                        m.insert(metrics::NETWORK_RX_BYTES_TOTAL.into(), cumulative);
                    }
                    Canonical::RequestsPerPeriod => {
                        m.insert(
                            metrics::REQUESTS_PER_SECOND.into(),
                            value / CLOUDWATCH_PERIOD_S,
                        );
                    }
                }
                (
                    ts,
                    Record::Sample(MetricSample {
                        timestamp_ms: ts,
                        entity: entity.clone(),
                        metrics: m,
                    }),
                )
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_canonical_names() {
        assert_eq!(
            kind_for("realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv"),
            AnomalyKind::CpuExhaustion
        );
        assert_eq!(
            kind_for("realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"),
            AnomalyKind::NetworkIssue
        );
        assert_eq!(
            kind_for("realKnownCause/ec2_request_latency_system_failure.csv"),
            AnomalyKind::NetworkIssue
        );
        assert_eq!(
            kind_for("realKnownCause/nyc_taxi.csv"),
            AnomalyKind::PodFailure
        );
        assert_eq!(
            canonical_for("rds_cpu_utilization_cc0c53"),
            Canonical::CpuPercent
        );
        assert_eq!(
            canonical_for("iio_us-east-1_i-a2eb1cd9_NetworkIn"),
            Canonical::BytesInPerPeriod
        );
        assert_eq!(
            canonical_for("ec2_disk_write_bytes_1ef3de"),
            Canonical::None
        );
    }
}
