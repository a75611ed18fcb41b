//! The directory `auspex simulate` writes: `samples.ndjson`, `topology.ndjson` and
//! `labels.ndjson` side by side (each may also be `.ndjson.gz`). [`DirectorySource`] replays
//! samples and topology merged by event time, topology first at the same instant (a pod exists
//! before its first sample), and exposes the labels.
//!
//! Each file is expected in time order, as the simulator writes it; the merge does not sort.

use std::path::{Path, PathBuf};

use auspex_model::IncidentLabel;

use crate::merge::{Lane, Merge, SourceLane};
use crate::ndjson::{NdjsonSource, open_reader};
use crate::{IngestError, Record, Source};

/// File names inside a simulation directory.
pub const SAMPLES_FILE: &str = "samples.ndjson";
pub const TOPOLOGY_FILE: &str = "topology.ndjson";
pub const LABELS_FILE: &str = "labels.ndjson";

/// Samples and topology from a simulation directory, merged by time; labels on the side.
pub struct DirectorySource {
    dir: PathBuf,
    merge: Merge,
    labels: Vec<IncidentLabel>,
}

impl DirectorySource {
    /// Opens `dir`. `samples.ndjson` is required; `topology.ndjson` and `labels.ndjson` are
    /// optional (absent: no topology, no labels). Labels are read whole now: a malformed label
    /// is an error, since ground truth with holes would skew every evaluation.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, IngestError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(IngestError::missing(
                dir.display().to_string(),
                "simulation directory",
            ));
        }
        let samples = find(&dir, SAMPLES_FILE).ok_or_else(|| {
            IngestError::missing(dir.join(SAMPLES_FILE).display().to_string(), "samples file")
        })?;
        let mut lanes: Vec<Box<dyn Lane>> = Vec::new();
        // Topology first: on equal timestamps the first lane wins.
        if let Some(topology) = find(&dir, TOPOLOGY_FILE) {
            lanes.push(Box::new(SourceLane::new(NdjsonSource::open(topology)?)));
        }
        lanes.push(Box::new(SourceLane::new(NdjsonSource::open(samples)?)));
        let labels = match find(&dir, LABELS_FILE) {
            Some(path) => read_labels(&path)?,
            None => Vec::new(),
        };
        Ok(DirectorySource {
            dir,
            merge: Merge::new(lanes),
            labels,
        })
    }
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Some(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    gz.is_file().then_some(gz)
}

/// Reads an NDJSON file of [`IncidentLabel`]s (blank lines skipped).
pub fn read_labels(path: &Path) -> Result<Vec<IncidentLabel>, IngestError> {
    use std::io::BufRead;
    let name = path.display().to_string();
    let reader = open_reader(&name)?;
    let mut labels = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| IngestError::io(&name, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let label: IncidentLabel = serde_json::from_str(&line)
            .map_err(|e| IngestError::format(format!("{name}:{}", i + 1), e.to_string()))?;
        if !(label.onset_ms <= label.incident_ms && label.incident_ms <= label.end_ms) {
            return Err(IngestError::format(
                format!("{name}:{}", i + 1),
                "label times must satisfy onset_ms <= incident_ms <= end_ms",
            ));
        }
        labels.push(label);
    }
    Ok(labels)
}

impl Source for DirectorySource {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        self.merge.next_batch(max)
    }

    fn labels(&self) -> Vec<IncidentLabel> {
        self.labels.clone()
    }

    fn describe(&self) -> String {
        format!("simulation directory {}", self.dir.display())
    }
}
