//! The simulation-directory source (merge order, labels, errors) and replay pacing.

use std::time::{Duration, Instant};

use auspex_ingest::{
    DirectorySource, IngestError, NdjsonSink, Paced, Pacing, Record, Source, open_path,
};
use auspex_model::{
    AnomalyKind, Entity, EntityKind, EntityRef, IncidentLabel, MetricSample, TopologyChange,
    TopologyEvent,
};

fn sample(ts: i64, name: &str) -> MetricSample {
    MetricSample {
        timestamp_ms: ts,
        entity: Entity::new(EntityKind::Pod, Some("ns"), name),
        metrics: [("cpu_usage_cores".to_string(), ts as f64 / 1000.0)].into(),
    }
}

fn topo(ts: i64, name: &str) -> TopologyEvent {
    TopologyEvent {
        timestamp_ms: ts,
        change: TopologyChange::UpsertEntity {
            entity: Entity::new(EntityKind::Pod, Some("ns"), name),
        },
    }
}

fn label(onset: i64) -> IncidentLabel {
    IncidentLabel {
        entity: EntityRef::pod("ns", "a"),
        kind: AnomalyKind::MemoryExhaustion,
        fault: "memory_leak".into(),
        onset_ms: onset,
        incident_ms: onset + 10,
        end_ms: onset + 20,
        root_cause: true,
    }
}

fn write<T: serde::Serialize>(path: &std::path::Path, items: &[T]) {
    let mut sink = NdjsonSink::create(path).unwrap();
    for i in items {
        auspex_ingest::Sink::send(&mut sink, i).unwrap();
    }
    sink.flush().unwrap();
}

fn key(r: &Record) -> (i64, &'static str) {
    match r {
        Record::Sample(s) => (s.timestamp_ms, "sample"),
        Record::Topology(t) => (t.timestamp_ms, "topology"),
        Record::DeadLetter(_) => (-1, "dead"),
    }
}

#[test]
fn directory_merges_by_time_topology_first_and_exposes_labels() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("samples.ndjson"),
        &[
            sample(0, "a"),
            sample(1000, "a"),
            sample(2000, "a"),
            sample(2000, "b"),
            sample(3000, "b"),
        ],
    );
    // Gzip is accepted for any of the three files.
    write(
        &dir.path().join("topology.ndjson.gz"),
        &[topo(0, "a"), topo(2000, "b"), topo(2500, "c")],
    );
    write(
        &dir.path().join("labels.ndjson"),
        &[label(100), label(5000)],
    );

    let mut src = DirectorySource::open(dir.path()).unwrap();
    assert_eq!(src.labels(), vec![label(100), label(5000)]);
    let mut got = Vec::new();
    // Small batches exercise the merge across batch boundaries.
    while let Some(b) = src.next_batch(2).unwrap() {
        assert!(b.len() <= 2);
        got.extend(b);
    }
    let keys: Vec<_> = got.iter().map(key).collect();
    assert_eq!(
        keys,
        vec![
            (0, "topology"),
            (0, "sample"),
            (1000, "sample"),
            (2000, "topology"),
            (2000, "sample"),
            (2000, "sample"),
            (2500, "topology"),
            (3000, "sample"),
        ]
    );
    // Samples at one instant keep their file order.
    let names: Vec<&str> = got
        .iter()
        .filter_map(|r| match r {
            Record::Sample(s) if s.timestamp_ms == 2000 => Some(s.entity.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["a", "b"]);

    // open_path picks the directory source for a directory.
    let n = open_path(dir.path()).unwrap().drain().unwrap().len();
    assert_eq!(n, 8);
}

#[test]
fn directory_dead_letters_pass_through_and_errors_name_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("samples.ndjson"),
        format!(
            "{}\nnot json\n{}\n",
            serde_json::to_string(&sample(0, "a")).unwrap(),
            serde_json::to_string(&sample(10, "a")).unwrap()
        ),
    )
    .unwrap();
    let got = DirectorySource::open(dir.path()).unwrap().drain().unwrap();
    assert_eq!(got.len(), 3);
    assert!(
        matches!(&got[1], Record::DeadLetter(d) if d.origin.to_string().ends_with("samples.ndjson:2"))
    );
    assert!(
        DirectorySource::open(dir.path())
            .unwrap()
            .labels()
            .is_empty()
    );

    std::fs::write(dir.path().join("labels.ndjson"), "{\"entity\":1}\n").unwrap();
    let err = DirectorySource::open(dir.path()).err().expect("bad label");
    assert!(err.to_string().contains("labels.ndjson:1"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    match DirectorySource::open(empty.path()) {
        Err(IngestError::Missing { path, .. }) => assert!(path.ends_with("samples.ndjson")),
        other => panic!("expected a missing samples file, got {:?}", other.err()),
    }
}

/// A finite in-memory source for pacing tests.
struct Fixed(Vec<Record>);

impl Source for Fixed {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let n = max.min(self.0.len());
        Ok(Some(self.0.drain(..n).collect()))
    }
    fn describe(&self) -> String {
        "fixed".into()
    }
}

fn stream() -> Vec<Record> {
    // 1 s of event time in 200 ms steps.
    (0..6)
        .map(|i| Record::Sample(sample(1_000_000 + i * 200, "a")))
        .collect()
}

fn drain_timed(src: &mut dyn Source) -> (Vec<Record>, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    while let Some(b) = src.next_batch(100).unwrap() {
        got.extend(b);
    }
    (got, start.elapsed())
}

#[test]
fn real_time_replay_takes_at_least_the_scaled_duration() {
    let mut paced = Paced::new(Fixed(stream()), Pacing::RealTime { speed: 5.0 })
        .unwrap()
        .max_wait(Duration::from_millis(20));
    let (got, took) = drain_timed(&mut paced);
    assert_eq!(
        got,
        stream(),
        "pacing changes timing, never order or content"
    );
    // 1000 ms of event time at 5x is at least 200 ms of wall time.
    assert!(took >= Duration::from_millis(200), "took {took:?}");
    assert!(paced.describe().contains("5x"));
}

#[test]
fn rate_replay_spaces_records_and_fast_does_not_wait() {
    let mut paced = Paced::new(
        Fixed(stream()),
        Pacing::Rate {
            records_per_second: 50.0,
        },
    )
    .unwrap();
    let (got, took) = drain_timed(&mut paced);
    assert_eq!(got, stream());
    // Six records at 50/s: the last is due 5 × 20 ms after the first.
    assert!(took >= Duration::from_millis(100), "took {took:?}");

    let mut fast = Paced::new(Fixed(stream()), Pacing::default()).unwrap();
    let (got, _) = drain_timed(&mut fast);
    assert_eq!(got, stream());
}

#[test]
fn pacing_flags_are_validated() {
    assert_eq!(
        Pacing::from_flags(None, None).unwrap(),
        Pacing::AsFastAsPossible
    );
    assert_eq!(
        Pacing::from_flags(Some(60.0), None).unwrap(),
        Pacing::RealTime { speed: 60.0 }
    );
    assert!(Pacing::from_flags(Some(0.0), None).is_err());
    assert!(Pacing::from_flags(None, Some(f64::NAN)).is_err());
    assert!(Pacing::from_flags(Some(1.0), Some(1.0)).is_err());
    assert!(Paced::new(Fixed(vec![]), Pacing::RealTime { speed: -1.0 }).is_err());
}
