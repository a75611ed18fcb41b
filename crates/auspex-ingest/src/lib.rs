//! Getting events in and results out: the [`Source`] and [`Sink`] traits and their
//! implementations (NDJSON files and stdin, the in-process simulator, readers for the shared
//! data sets SMD, NAB and Nezha). Kafka and remote-write sources drop in behind the same traits.
//!
//! This crate moves and parses data; it keeps no model state (windows, graph) and never scores.
//! A source never fails on one bad record: the record comes out as a [`DeadLetter`] with the
//! reason and where it came from, and the pipeline routes it to a dead-letter sink.

pub mod dataset;
pub mod directory;
mod merge;
pub mod ndjson;
pub mod pace;
pub mod simulator;

pub use dataset::nab::{NabConfig, NabSource};
pub use dataset::nezha::{NezhaConfig, NezhaSource};
pub use dataset::smd::{SmdConfig, SmdHalf, SmdPointLabels, SmdSource};
pub use directory::DirectorySource;
pub use ndjson::{DeadLetterSink, NdjsonSink, NdjsonSource, open_path, parse_line};
pub use pace::{Paced, Pacing};
pub use simulator::SimulatorSource;

use auspex_model::{IncidentLabel, MetricSample, TopologyEvent};

/// Where a record came from, precise enough to find it again (and, for Kafka, to commit it).
/// Serialised internally tagged: `{"type":"file","path":"x.ndjson","line":3}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Origin {
    /// A line of a file (1-based), or of stdin when `path` is `-`.
    File { path: String, line: u64 },
    /// A Kafka message.
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// Generated in-process (simulator tick number).
    Generated { tick: u64 },
    /// A row of a data set (file and 1-based row).
    Dataset { file: String, row: u64 },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{path}:{line}"),
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => write!(f, "{topic}[{partition}]@{offset}"),
            Origin::Generated { tick } => write!(f, "generated tick {tick}"),
            Origin::Dataset { file, row } => write!(f, "{file} row {row}"),
        }
    }
}

/// A record that could not be turned into an event, kept whole with the reason.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    pub origin: Origin,
    /// The raw bytes as received (lossy UTF-8 when written out).
    #[serde(serialize_with = "lossy_utf8")]
    pub raw: Vec<u8>,
    pub reason: String,
}

fn lossy_utf8<S: serde::Serializer>(raw: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(raw))
}

/// What a source yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Sample(MetricSample),
    Topology(TopologyEvent),
    DeadLetter(DeadLetter),
}

impl Record {
    /// Event time, where the record has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        match self {
            Record::Sample(s) => Some(s.timestamp_ms),
            Record::Topology(t) => Some(t.timestamp_ms),
            Record::DeadLetter(_) => None,
        }
    }
}

/// Written as the record itself: a sample or topology event as its wire JSON (so a sink of
/// records writes a file that [`NdjsonSource`] reads back), a dead letter as
/// `{origin, raw, reason}`.
impl serde::Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Record::Sample(x) => x.serialize(s),
            Record::Topology(x) => x.serialize(s),
            Record::DeadLetter(x) => x.serialize(s),
        }
    }
}

/// Errors that stop a source or sink (I/O, a missing file); bad records are not errors.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error("simulator: {0}")]
    Simulator(String),
    /// A file or directory the source needs is not there.
    #[error("{path}: {what} not found")]
    Missing { path: String, what: String },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid {key}: {reason}")]
    Config { key: &'static str, reason: String },
}

impl IngestError {
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        IngestError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn format(path: impl Into<String>, reason: impl Into<String>) -> Self {
        IngestError::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn missing(path: impl Into<String>, what: impl Into<String>) -> Self {
        IngestError::Missing {
            path: path.into(),
            what: what.into(),
        }
    }
}

/// A stream of records, pulled in batches. Sources are synchronous: a Kafka source runs its
/// consumer on its own thread and hands batches over a bounded channel.
pub trait Source: Send {
    /// Up to `max` records, in event-time order where the source has one.
    /// `Ok(None)` is the end of the stream; `Ok(Some(empty))` means nothing yet (a live source).
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError>;

    /// Ground truth, when the source knows it (the simulator, labelled data sets).
    fn labels(&self) -> Vec<IncidentLabel> {
        Vec::new()
    }

    /// A short description for logs and training metadata.
    fn describe(&self) -> String;

    /// The interval between an entity's samples, when the source knows it (a simulator's tick,
    /// a data set's row period), so the windows can use it as their resolution.
    fn sample_interval_ms(&self) -> Option<u64> {
        None
    }

    /// Everything that is left, in one vector (for tests, training on a finite data set).
    /// A live source that keeps answering "nothing yet" makes this spin; use it on finite ones.
    fn drain(&mut self) -> Result<Vec<Record>, IngestError>
    where
        Self: Sized,
    {
        let mut all = Vec::new();
        while let Some(batch) = self.next_batch(4096)? {
            all.extend(batch);
        }
        Ok(all)
    }
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        (**self).next_batch(max)
    }

    fn labels(&self) -> Vec<IncidentLabel> {
        (**self).labels()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn sample_interval_ms(&self) -> Option<u64> {
        (**self).sample_interval_ms()
    }
}

/// Somewhere results go (alerts, dead letters, samples written by the simulator).
pub trait Sink<T: ?Sized>: Send {
    fn send(&mut self, item: &T) -> Result<(), IngestError>;
    fn flush(&mut self) -> Result<(), IngestError>;
}
