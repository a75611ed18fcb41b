//! Shared test helpers: a source over records in memory, and sample builders.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

use auspex_ingest::{IngestError, Record, Source};
use auspex_model::{Entity, EntityKind, IncidentLabel, MetricSample};

/// Root of the shared data sets. Read at run time (cargo sets `CARGO_MANIFEST_DIR` for the test
/// process): the compile-time value is stale when a shared target directory holds a binary
/// built from another clone of the repository.
pub fn data() -> String {
    format!("{}/../../../shared/data", manifest_dir())
}

/// This crate's directory, as cargo gives it to the running test.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")
}

/// A finite source over records held in memory.
pub struct VecSource {
    pub records: VecDeque<Record>,
    pub labels: Vec<IncidentLabel>,
    pub interval_ms: Option<u64>,
}

impl VecSource {
    pub fn new(records: Vec<Record>, labels: Vec<IncidentLabel>, interval_ms: Option<u64>) -> Self {
        VecSource {
            records: records.into(),
            labels,
            interval_ms,
        }
    }
}

impl Source for VecSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        if self.records.is_empty() {
            return Ok(None);
        }
        let n = max.min(self.records.len());
        Ok(Some(self.records.drain(..n).collect()))
    }

    fn labels(&self) -> Vec<IncidentLabel> {
        self.labels.clone()
    }

    fn describe(&self) -> String {
        format!("{} records in memory", self.records.len())
    }

    fn sample_interval_ms(&self) -> Option<u64> {
        self.interval_ms
    }
}

/// A pod sample in namespace `ns`.
pub fn pod_sample(name: &str, ts: i64, metrics: &[(&str, f64)]) -> Record {
    Record::Sample(MetricSample {
        timestamp_ms: ts,
        entity: Entity::new(EntityKind::Pod, Some("ns"), name),
        metrics: metrics
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
    })
}

/// The samples of a record list.
pub fn samples(records: &[Record]) -> Vec<&MetricSample> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Sample(s) => Some(s),
            _ => None,
        })
        .collect()
}
