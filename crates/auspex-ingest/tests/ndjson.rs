//! NDJSON source and sinks: round trips (plain and gzip), dead letters for every kind of bad
//! line, and line numbers that point at the right line.

use std::collections::BTreeMap;
use std::io::Write;

use auspex_ingest::{
    DeadLetter, NdjsonSink, NdjsonSource, Origin, Record, Sink, Source, parse_line,
};
use auspex_model::{
    Edge, EdgeKind, Entity, EntityKind, EntityRef, MetricSample, TopologyChange, TopologyEvent,
};
use proptest::prelude::*;

fn sample(ts: i64, name: &str, metrics: &[(&str, f64)]) -> MetricSample {
    let mut entity = Entity::new(EntityKind::Pod, Some("shop"), name);
    entity.node = Some("n1".into());
    entity.service = Some("cart".into());
    entity.labels.insert("app".into(), "cart".into());
    MetricSample {
        timestamp_ms: ts,
        entity,
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

fn records() -> Vec<Record> {
    let pod = EntityRef::pod("shop", "cart-1");
    vec![
        Record::Topology(TopologyEvent {
            timestamp_ms: 0,
            change: TopologyChange::UpsertEntity {
                entity: Entity::new(EntityKind::Node, None, "n1"),
            },
        }),
        Record::Topology(TopologyEvent {
            timestamp_ms: 0,
            change: TopologyChange::UpsertEdge {
                edge: Edge {
                    kind: EdgeKind::RunsOn,
                    from: pod.clone(),
                    to: EntityRef::node("n1"),
                },
            },
        }),
        Record::Sample(sample(
            1_000,
            "cart-1",
            &[("cpu_usage_cores", 0.25), ("x", -1e-300)],
        )),
        Record::Sample(sample(2_000, "cart-1", &[])),
        Record::Topology(TopologyEvent {
            timestamp_ms: 3_000,
            change: TopologyChange::DeleteEdge {
                edge: Edge {
                    kind: EdgeKind::Calls,
                    from: EntityRef::service("shop", "a"),
                    to: EntityRef::service("shop", "b"),
                },
            },
        }),
        Record::Topology(TopologyEvent {
            timestamp_ms: 3_000,
            change: TopologyChange::DeleteEntity { entity: pod },
        }),
    ]
}

fn write_all(path: &std::path::Path, records: &[Record]) {
    let mut sink = NdjsonSink::create(path).unwrap();
    for r in records {
        sink.send(r).unwrap();
    }
    sink.flush().unwrap();
    assert_eq!(sink.written(), records.len() as u64);
}

#[test]
fn round_trip_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["out.ndjson", "out.ndjson.gz"] {
        let path = dir.path().join(name);
        write_all(&path, &records());
        let back = NdjsonSource::open(&path).unwrap().drain().unwrap();
        assert_eq!(back, records(), "{name}");
    }
    // Gzip is recognised by content too, not only by the name.
    let gz = std::fs::read(dir.path().join("out.ndjson.gz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let renamed = dir.path().join("compressed.ndjson");
    std::fs::write(&renamed, gz).unwrap();
    assert_eq!(
        NdjsonSource::open(&renamed).unwrap().drain().unwrap(),
        records()
    );
}

#[test]
fn small_batches_keep_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.ndjson");
    write_all(&path, &records());
    let mut src = NdjsonSource::open(&path).unwrap();
    let mut got = Vec::new();
    while let Some(batch) = src.next_batch(4).unwrap() {
        assert!(batch.len() <= 4);
        got.extend(batch);
    }
    assert_eq!(got, records());
}

#[test]
fn bad_lines_become_dead_letters_and_good_lines_survive() {
    let good_sample = r#"{"timestamp_ms":5,"entity":{"kind":"pod","namespace":"a","name":"p"},"metrics":{"m":1.5}}"#;
    let good_topo =
        r#"{"timestamp_ms":6,"op":"upsert_entity","entity":{"kind":"node","name":"n"}}"#;
    // (line content, expected substring of the reason); None = valid.
    let lines: Vec<(&[u8], Option<&str>)> = vec![
        (good_sample.as_bytes(), None),
        (b"{\"timestamp_ms\":1,", Some("invalid JSON")),
        (b"", None), // blank: skipped, still counted
        (
            br#"{"timestamp_ms":"soon","entity":{"kind":"pod","name":"p"},"metrics":{}}"#,
            Some("metric sample: invalid JSON"),
        ),
        (
            br#"{"timestamp_ms":1,"metrics":{"m":1}}"#,
            Some("missing field `entity`"),
        ),
        (
            br#"{"timestamp_ms":-5,"entity":{"kind":"pod","name":"p"},"metrics":{}}"#,
            Some("timestamp_ms -5 is negative"),
        ),
        (
            br#"{"timestamp_ms":-1,"op":"delete_entity","entity":{"kind":"node","name":"n"}}"#,
            Some("timestamp_ms -1 is negative"),
        ),
        (
            br#"{"timestamp_ms":1,"op":"reboot","entity":{"kind":"node","name":"n"}}"#,
            Some("unknown variant `reboot`"),
        ),
        (
            br#"{"timestamp_ms":1,"entity":{"kind":"pod","name":"p"},"metrics":{"m":"high"}}"#,
            Some("metric sample"),
        ),
        (
            br#"{"timestamp_ms":1,"entity":{"kind":"pod","name":""},"metrics":{}}"#,
            Some("entity.name is empty"),
        ),
        (br#"{"hello":"world"}"#, Some("neither a metric sample")),
        (b"\xff\xfe not utf8", Some("invalid JSON")),
        (b"   ", None),
        (good_topo.as_bytes(), None),
        (b"42", Some("invalid JSON")),
    ];
    let mut text = Vec::new();
    for (l, _) in &lines {
        text.extend_from_slice(l);
        text.extend_from_slice(b"\r\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.ndjson");
    std::fs::write(&path, &text).unwrap();
    let got = NdjsonSource::open(&path).unwrap().drain().unwrap();

    let expected_dead: Vec<(u64, &str)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, (_, r))| r.map(|r| (i as u64 + 1, r)))
        .collect();
    let dead: Vec<&DeadLetter> = got
        .iter()
        .filter_map(|r| match r {
            Record::DeadLetter(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dead.len(), expected_dead.len(), "{dead:#?}");
    for (d, (line, reason)) in dead.iter().zip(&expected_dead) {
        assert_eq!(
            d.origin,
            Origin::File {
                path: path.display().to_string(),
                line: *line
            }
        );
        assert!(
            d.reason.contains(reason),
            "line {line}: {:?} lacks {reason:?}",
            d.reason
        );
        assert_eq!(
            d.raw,
            lines[*line as usize - 1].0,
            "raw bytes kept, without the newline"
        );
    }
    let good: Vec<&Record> = got
        .iter()
        .filter(|r| !matches!(r, Record::DeadLetter(_)))
        .collect();
    assert_eq!(good.len(), 2);
    assert!(matches!(good[0], Record::Sample(s) if s.timestamp_ms == 5));
    assert!(matches!(good[1], Record::Topology(t) if t.timestamp_ms == 6));
    // Order is the file's: the topology event (line 14) comes after every earlier dead letter.
    assert!(matches!(got.last(), Some(Record::DeadLetter(d)) if d.raw == b"42"));
}

#[test]
fn missing_file_is_named() {
    let err = match NdjsonSource::open("/nonexistent/x.ndjson") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened a missing file"),
    };
    assert!(err.contains("/nonexistent/x.ndjson"), "{err}");
}

#[test]
fn corrupt_gzip_is_an_error_not_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.ndjson.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for _ in 0..1000 {
        writeln!(
            enc,
            r#"{{"timestamp_ms":1,"entity":{{"kind":"node","name":"n"}},"metrics":{{}}}}"#
        )
        .unwrap();
    }
    let mut bytes = enc.finish().unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, bytes).unwrap();
    let mut src = NdjsonSource::open(&path).unwrap();
    let result = src.drain();
    assert!(
        result.is_err(),
        "a truncated gzip stream must stop the source"
    );
}

fn arb_sample() -> impl Strategy<Value = MetricSample> {
    (
        0i64..=i64::MAX / 2,
        "[a-z][a-z0-9-]{0,20}",
        proptest::option::of("[a-z]{1,8}"),
        proptest::collection::btree_map(
            "[a-z_]{1,12}",
            proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
            0..6,
        ),
    )
        .prop_map(
            |(ts, name, ns, metrics): (i64, String, Option<String>, BTreeMap<String, f64>)| {
                let kind = if ns.is_some() {
                    EntityKind::Pod
                } else {
                    EntityKind::Node
                };
                MetricSample {
                    timestamp_ms: ts,
                    entity: Entity::new(kind, ns.as_deref(), &name),
                    metrics,
                }
            },
        )
}

proptest! {
    /// parse ∘ serialise is the identity on valid samples, through the sink and the parser.
    #[test]
    fn sink_then_parse_is_identity(samples in proptest::collection::vec(arb_sample(), 1..8)) {
        let mut sink = NdjsonSink::new("mem", Vec::new());
        for s in &samples {
            sink.send(s).unwrap();
        }
        let bytes = sink.into_inner().unwrap();
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        prop_assert_eq!(lines.len(), samples.len());
        for (i, (line, s)) in lines.iter().zip(&samples).enumerate() {
            let origin = Origin::File { path: "mem".into(), line: i as u64 + 1 };
            prop_assert_eq!(parse_line(line, origin), Record::Sample(s.clone()));
        }
    }
}
