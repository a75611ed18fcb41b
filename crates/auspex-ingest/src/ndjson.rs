//! NDJSON in and out: [`NdjsonSource`] reads metric samples and topology events, one JSON
//! document a line, from a file, a gzip file or stdin; [`NdjsonSink`] writes any serialisable
//! type a line; [`DeadLetterSink`] writes dead letters as `{origin, reason, raw}` lines.
//!
//! A line that does not parse is never an error: it becomes a [`Record::DeadLetter`] with its
//! file and line number, its bytes and the parser's reason, and reading goes on. Only I/O stops
//! the source. Ordering is the file's; merging several files by time is
//! [`crate::DirectorySource`]'s job.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use auspex_model::{MetricSample, TopologyEvent};
use serde::Serialize;
use serde::de::IgnoredAny;

use crate::{DeadLetter, IngestError, Origin, Record, Sink, Source};

/// The gzip magic number; compressed input is recognised by content as well as by `.gz`.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens `path` for line reading: `-` is stdin; gzip (by `.gz` or by content) is decompressed.
pub fn open_reader(path: &str) -> Result<Box<dyn BufRead + Send>, IngestError> {
    let raw: Box<dyn std::io::Read + Send> = if path == "-" {
        Box::new(std::io::stdin())
    } else {
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => IngestError::missing(path, "input file"),
            _ => IngestError::io(path, e),
        })?;
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(256 * 1024, raw);
    let head = reader.fill_buf().map_err(|e| IngestError::io(path, e))?;
    let gzip = path.ends_with(".gz") || head.starts_with(&GZIP_MAGIC);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::bufread::MultiGzDecoder::new(reader),
        ))
    } else {
        Box::new(reader)
    })
}

/// Which wire type a line claims to be, read from its top-level keys only (no allocation).
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(default)]
    op: Option<IgnoredAny>,
    #[serde(default)]
    metrics: Option<IgnoredAny>,
}

/// A metric sample's fields, and whether the line also has a topology event's `"op"`: the
/// one parse a well-formed sample line needs (samples are nearly every line of a stream).
#[derive(serde::Deserialize)]
struct SampleLine {
    timestamp_ms: auspex_model::TimestampMs,
    entity: auspex_model::Entity,
    metrics: std::collections::BTreeMap<String, f64>,
    #[serde(default)]
    op: Option<IgnoredAny>,
}

/// Parses one line into a sample, a topology event, or a dead letter saying why not.
///
/// A line with a `"metrics"` key is a sample, one with an `"op"` key a topology event; the
/// model's `from_json` then parses and validates it.
pub fn parse_line(line: &[u8], origin: Origin) -> Record {
    let dead = |reason: String| {
        Record::DeadLetter(DeadLetter {
            origin: origin.clone(),
            raw: line.to_vec(),
            reason,
        })
    };
    // Serde would read a struct from a JSON array too; only objects are events.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return dead("invalid JSON: expected an object".into());
    }
    // Fast path: a well-formed sample in one parse. Anything else takes the probe below, so
    // the reasons given are the same either way.
    if let Ok(l) = serde_json::from_slice::<SampleLine>(line)
        && l.op.is_none()
    {
        let s = MetricSample {
            timestamp_ms: l.timestamp_ms,
            entity: l.entity,
            metrics: l.metrics,
        };
        return match s.validate() {
            Ok(()) => Record::Sample(s),
            Err(e) => dead(format!("metric sample: {e}")),
        };
    }
    let probe: Probe = match serde_json::from_slice(line) {
        Ok(p) => p,
        Err(e) => return dead(format!("invalid JSON: {e}")),
    };
    match (probe.metrics.is_some(), probe.op.is_some()) {
        (true, false) => match MetricSample::from_json(line) {
            Ok(s) => Record::Sample(s),
            Err(e) => dead(format!("metric sample: {e}")),
        },
        (false, true) => match TopologyEvent::from_json(line) {
            Ok(t) => Record::Topology(t),
            Err(e) => dead(format!("topology event: {e}")),
        },
        (true, true) => dead(
            "ambiguous: has both \"metrics\" (metric sample) and \"op\" (topology event)".into(),
        ),
        (false, false) => dead(
            "neither a metric sample (no \"metrics\" key) nor a topology event (no \"op\" key)"
                .into(),
        ),
    }
}

/// Metric samples and topology events from NDJSON, in file order.
pub struct NdjsonSource {
    path: String,
    reader: Box<dyn BufRead + Send>,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl NdjsonSource {
    /// Opens a file (gzip recognised) or stdin (`-`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, IngestError> {
        let path = path.as_ref().to_string_lossy().into_owned();
        let reader = open_reader(&path)?;
        Ok(Self::from_reader(path, reader))
    }

    /// Reads from any buffered reader; `name` appears in origins and errors.
    pub fn from_reader(name: impl Into<String>, reader: Box<dyn BufRead + Send>) -> Self {
        NdjsonSource {
            path: name.into(),
            reader,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Lines read so far (blank ones included).
    pub fn lines_read(&self) -> u64 {
        self.line
    }
}

impl Source for NdjsonSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        if self.done {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(max.min(4096));
        while out.len() < max {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| IngestError::io(&self.path, e))?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.line += 1;
            let line = trim_ascii_end(&self.buf);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let origin = Origin::File {
                path: self.path.clone(),
                line: self.line,
            };
            let record = parse_line(line, origin);
            if let Record::DeadLetter(d) = &record {
                tracing::debug!(origin = %d.origin, reason = %d.reason, "dead-lettered");
            }
            out.push(record);
        }
        if out.is_empty() && self.done {
            Ok(None)
        } else {
            Ok(Some(out))
        }
    }

    fn describe(&self) -> String {
        format!("ndjson {}", self.path)
    }
}

fn trim_ascii_end(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &b[..end]
}

/// Opens what `auspex replay` is pointed at: a directory written by `auspex simulate`
/// ([`crate::DirectorySource`]) or one NDJSON file / stdin ([`NdjsonSource`]).
pub fn open_path(path: impl AsRef<Path>) -> Result<Box<dyn Source>, IngestError> {
    let path = path.as_ref();
    if path.is_dir() {
        Ok(Box::new(crate::DirectorySource::open(path)?))
    } else {
        Ok(Box::new(NdjsonSource::open(path)?))
    }
}

/// Writes any serialisable value as one JSON line, buffered. Dropping the sink flushes it
/// (and finishes a gzip stream); call [`Sink::flush`] to see errors.
pub struct NdjsonSink<W: Write + Send> {
    name: String,
    out: BufWriter<W>,
    written: u64,
}

impl<W: Write + Send> NdjsonSink<W> {
    /// Wraps a writer; `name` appears in errors.
    pub fn new(name: impl Into<String>, writer: W) -> Self {
        NdjsonSink {
            name: name.into(),
            out: BufWriter::with_capacity(256 * 1024, writer),
            written: 0,
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes out what is buffered (the same as [`Sink::flush`], without naming the item type).
    pub fn flush(&mut self) -> Result<(), IngestError> {
        self.out.flush().map_err(|e| IngestError::io(&self.name, e))
    }

    /// Flushes and hands back the writer.
    pub fn into_inner(self) -> Result<W, IngestError> {
        let name = self.name;
        self.out
            .into_inner()
            .map_err(|e| IngestError::io(name, e.into_error()))
    }
}

impl NdjsonSink<Box<dyn Write + Send>> {
    /// A file (created or truncated; gzip-compressed when the name ends in `.gz`) or stdout
    /// (`-`).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, IngestError> {
        let name = path.as_ref().to_string_lossy().into_owned();
        let writer: Box<dyn Write + Send> = if name == "-" {
            Box::new(std::io::stdout())
        } else {
            let file = File::create(&name).map_err(|e| IngestError::io(&name, e))?;
            if name.ends_with(".gz") {
                Box::new(flate2::write::GzEncoder::new(
                    file,
                    flate2::Compression::fast(),
                ))
            } else {
                Box::new(file)
            }
        };
        Ok(NdjsonSink::new(name, writer))
    }

    /// Standard output.
    pub fn stdout() -> Self {
        NdjsonSink::new("-", Box::new(std::io::stdout()))
    }
}

impl<T: Serialize + ?Sized, W: Write + Send> Sink<T> for NdjsonSink<W> {
    fn send(&mut self, item: &T) -> Result<(), IngestError> {
        serde_json::to_writer(&mut self.out, item).map_err(|e| {
            if e.is_io() {
                IngestError::io(&self.name, e.into())
            } else {
                IngestError::format(&self.name, format!("cannot serialise: {e}"))
            }
        })?;
        self.out
            .write_all(b"\n")
            .map_err(|e| IngestError::io(&self.name, e))?;
        self.written += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IngestError> {
        NdjsonSink::flush(self)
    }
}

/// The line a [`DeadLetterSink`] writes, fields in reading order.
#[derive(Serialize)]
struct DeadLetterLine<'a> {
    origin: &'a Origin,
    reason: &'a str,
    raw: std::borrow::Cow<'a, str>,
}

/// Dead letters as NDJSON: `{"origin":{"type":"file","path":..,"line":..},"reason":..,"raw":..}`
/// with `raw` as lossy UTF-8.
pub struct DeadLetterSink<W: Write + Send> {
    inner: NdjsonSink<W>,
}

impl<W: Write + Send> DeadLetterSink<W> {
    pub fn new(name: impl Into<String>, writer: W) -> Self {
        DeadLetterSink {
            inner: NdjsonSink::new(name, writer),
        }
    }

    /// Dead letters written so far.
    pub fn written(&self) -> u64 {
        self.inner.written()
    }

    /// Flushes and hands back the writer.
    pub fn into_inner(self) -> Result<W, IngestError> {
        self.inner.into_inner()
    }
}

impl DeadLetterSink<Box<dyn Write + Send>> {
    /// A file (gzip when it ends in `.gz`) or stdout (`-`).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, IngestError> {
        Ok(DeadLetterSink {
            inner: NdjsonSink::create(path)?,
        })
    }
}

impl<W: Write + Send> Sink<DeadLetter> for DeadLetterSink<W> {
    fn send(&mut self, d: &DeadLetter) -> Result<(), IngestError> {
        self.inner.send(&DeadLetterLine {
            origin: &d.origin,
            reason: &d.reason,
            raw: String::from_utf8_lossy(&d.raw),
        })
    }

    fn flush(&mut self) -> Result<(), IngestError> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::File {
            path: "t".into(),
            line: 1,
        }
    }

    fn reason(line: &str) -> String {
        match parse_line(line.as_bytes(), origin()) {
            Record::DeadLetter(d) => d.reason,
            other => panic!("{line} parsed as {other:?}"),
        }
    }

    #[test]
    fn classifies_and_explains() {
        let s = r#"{"timestamp_ms":1,"entity":{"kind":"node","name":"n"},"metrics":{"a":1.0}}"#;
        assert!(matches!(
            parse_line(s.as_bytes(), origin()),
            Record::Sample(_)
        ));
        let t = r#"{"timestamp_ms":1,"op":"delete_entity","entity":{"kind":"node","name":"n"}}"#;
        assert!(matches!(
            parse_line(t.as_bytes(), origin()),
            Record::Topology(_)
        ));
        assert!(reason("{").starts_with("invalid JSON"));
        assert!(reason("[1,2]").starts_with("invalid JSON"));
        assert!(reason(r#"{"timestamp_ms":1}"#).starts_with("neither"));
        assert!(reason(r#"{"op":"x","metrics":{}}"#).starts_with("ambiguous"));
        let r = reason(r#"{"timestamp_ms":1,"op":"explode","entity":{"kind":"node","name":"n"}}"#);
        assert!(
            r.starts_with("topology event") && r.contains("explode"),
            "{r}"
        );
    }

    #[test]
    fn dead_letter_line_shape() {
        let mut sink = DeadLetterSink::new("mem", Vec::new());
        sink.send(&DeadLetter {
            origin: Origin::File {
                path: "x.ndjson".into(),
                line: 7,
            },
            raw: b"{oops".to_vec(),
            reason: "invalid JSON".into(),
        })
        .unwrap();
        let out = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        assert_eq!(
            out,
            "{\"origin\":{\"type\":\"file\",\"path\":\"x.ndjson\",\"line\":7},\"reason\":\"invalid JSON\",\"raw\":\"{oops\"}\n"
        );
    }
}
