//! Readers for the shared labelled data sets (SMD, NAB, Nezha OnlineBoutique), each a
//! [`crate::Source`] yielding samples (and topology, where the data set has one) in time order
//! with [`auspex_model::IncidentLabel`]s on the side, so every data set replays through the
//! same pipeline as the simulator and live input.
//!
//! Each reader loads its selection into compact arrays when built (these data sets are tens of
//! megabytes) and builds samples lazily while replaying. A row that does not parse becomes a
//! dead letter with its file and row, like a bad NDJSON line.

pub mod nab;
pub mod nezha;
pub mod smd;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::{DeadLetter, IngestError, Origin};

/// A CSV reader over a file, gunzipped when the name ends in `.gz`; a missing file is
/// [`IngestError::Missing`] naming it and `what` it is.
pub(crate) fn open_csv(
    path: &Path,
    what: &str,
) -> Result<csv::Reader<Box<dyn Read + Send>>, IngestError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IngestError::missing(&name, what),
        _ => IngestError::io(&name, e),
    })?;
    let reader: Box<dyn Read + Send> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader))
}

/// Reads a whole (small) file to a string, naming it when missing.
pub(crate) fn read_to_string(path: &Path, what: &str) -> Result<String, IngestError> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IngestError::missing(path.display().to_string(), what),
        _ => IngestError::io(path.display().to_string(), e),
    })
}

/// A csv error as a stopping error (I/O, broken gzip) naming the file.
pub(crate) fn csv_error(path: &Path, e: csv::Error) -> IngestError {
    let name = path.display().to_string();
    if e.is_io_error() {
        match e.into_kind() {
            csv::ErrorKind::Io(io) => IngestError::io(name, io),
            other => IngestError::format(name, format!("{other:?}")),
        }
    } else {
        IngestError::format(name, e.to_string())
    }
}

/// A dead letter for a data-set row (1-based, header not counted).
pub(crate) fn dead_row(
    file: &Path,
    row: u64,
    record: &csv::StringRecord,
    reason: String,
) -> DeadLetter {
    let raw = record.iter().collect::<Vec<_>>().join(",").into_bytes();
    DeadLetter {
        origin: Origin::Dataset {
            file: file.display().to_string(),
            row,
        },
        raw,
        reason,
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fff]` as UTC, to milliseconds since the epoch.
pub(crate) fn parse_naive_utc_ms(s: &str) -> Option<i64> {
    let t = chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()?;
    Some(t.and_utc().timestamp_millis())
}
