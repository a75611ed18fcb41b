//! The data-set readers on the real files under `../shared/data`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;

use auspex_ingest::dataset::smd::{SMD_EPOCH_MS, SMD_STEP_MS};
use auspex_ingest::{
    IngestError, NabConfig, NabSource, NezhaConfig, NezhaSource, Record, SmdConfig, SmdHalf,
    SmdSource, Source,
};
use auspex_model::{AnomalyKind, EntityKind, TopologyChange, metrics};

fn data(set: &str) -> PathBuf {
    // Read at run time: the compile-time value is stale when a shared target directory holds
    // a binary built from another clone of the repository.
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test"))
        .join("../../../shared/data")
        .join(set)
}

/// Every record's timestamp is not before the previous one's; returns the samples per entity.
fn check_order(records: &[Record]) -> BTreeMap<String, usize> {
    let mut last = i64::MIN;
    let mut per_entity = BTreeMap::new();
    for r in records {
        if let Some(ts) = r.timestamp_ms() {
            assert!(ts >= last, "timestamp {ts} after {last}");
            last = ts;
        }
        if let Record::Sample(s) = r {
            *per_entity.entry(s.entity.id().to_string()).or_insert(0) += 1;
        }
    }
    per_entity
}

/// The `label` column counted straight from the gzip CSV, independently of the reader.
fn label_column_ones(machine: &str) -> (usize, usize) {
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(data("smd").join(format!("{machine}_test.csv.gz"))).unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    let rows: Vec<&str> = text.lines().skip(1).filter(|l| !l.is_empty()).collect();
    let ones = rows
        .iter()
        .filter(|l| l.rsplit(',').next() == Some("1"))
        .count();
    (rows.len(), ones)
}

#[test]
fn smd_test_half_samples_and_labels() {
    let mut src =
        SmdSource::new(SmdConfig::new(data("smd")).machines(["machine-1-2", "machine-2-3"]))
            .unwrap();
    let records = src.drain().unwrap();
    let per_entity = check_order(&records);
    let (rows_12, ones_12) = label_column_ones("machine-1-2");
    let (rows_23, _) = label_column_ones("machine-2-3");
    assert_eq!(rows_12, 23_694);
    assert_eq!(per_entity.len(), 2);
    assert_eq!(per_entity["node/machine-1-2"], rows_12);
    assert_eq!(per_entity["node/machine-2-3"], rows_23);
    assert!(records.iter().all(|r| !matches!(r, Record::DeadLetter(_))));

    // Samples: 38 prefixed metrics, no label column; test half starts after the train half.
    let (train_rows, test_rows) = src.row_counts("machine-1-2").unwrap();
    assert_eq!(test_rows as usize, rows_12);
    let first = records
        .iter()
        .find_map(|r| match r {
            Record::Sample(s) if s.entity.name == "machine-1-2" => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(first.entity.kind, EntityKind::Node);
    assert_eq!(first.metrics.len(), 38);
    assert_eq!(first.metrics["smd_cpu_r"], 0.23);
    assert!(!first.metrics.contains_key("smd_label"));
    assert_eq!(
        first.timestamp_ms,
        SMD_EPOCH_MS + train_rows as i64 * SMD_STEP_MS
    );

    // Point labels agree with the label column; incident labels are its runs.
    let points = src.point_labels();
    let p12 = points
        .iter()
        .find(|p| p.entity.name == "machine-1-2")
        .unwrap();
    assert_eq!(ones_12, 542);
    assert_eq!(p12.anomalous_rows(), ones_12);
    let labels: Vec<_> = src
        .labels()
        .into_iter()
        .filter(|l| l.entity.name == "machine-1-2")
        .collect();
    assert_eq!(labels.len(), 10);
    let covered: i64 = labels
        .iter()
        .map(|l| (l.end_ms - l.onset_ms) / SMD_STEP_MS + 1)
        .sum();
    assert_eq!(covered as usize, ones_12);
    for l in &labels {
        assert_eq!(l.fault, "smd");
        assert_eq!(l.onset_ms, l.incident_ms);
        assert_eq!(p12.at(l.onset_ms), Some(true));
        assert_eq!(p12.at(l.end_ms), Some(true));
        assert_eq!(p12.at(l.end_ms + SMD_STEP_MS), Some(false));
    }
    // interpretation_label: 4629-4688 names disk_* and `so` only; 22264-22336 names cpu_r, load_*.
    let at_row = |row: i64| p12.start_ms + row * SMD_STEP_MS;
    let kind_at = |row| {
        labels
            .iter()
            .find(|l| l.onset_ms == at_row(row))
            .unwrap()
            .kind
    };
    assert_eq!(kind_at(4629), AnomalyKind::PodFailure);
    assert_eq!(kind_at(22264), AnomalyKind::CpuExhaustion);
    assert!(labels.iter().any(|l| l.kind == AnomalyKind::MemoryExhaustion || l.kind == AnomalyKind::NetworkIssue));
}

#[test]
fn smd_both_halves_are_one_continuous_series() {
    let mut src = SmdSource::new(
        SmdConfig::new(data("smd"))
            .machines(["machine-2-3"])
            .half(SmdHalf::Both),
    )
    .unwrap();
    let (train, test) = src.row_counts("machine-2-3").unwrap();
    let ts: Vec<i64> = src
        .drain()
        .unwrap()
        .iter()
        .filter_map(Record::timestamp_ms)
        .collect();
    assert_eq!(ts.len() as u64, train + test);
    assert!(
        ts.windows(2).all(|w| w[1] - w[0] == SMD_STEP_MS),
        "one row a minute, no gap at the halves"
    );
    assert_eq!(ts[0], SMD_EPOCH_MS);

    let train_only = SmdSource::new(
        SmdConfig::new(data("smd"))
            .machines(["machine-2-3"])
            .half(SmdHalf::Train),
    )
    .unwrap();
    assert!(train_only.labels().is_empty());
    assert!(train_only.point_labels().is_empty());
}

#[test]
fn smd_missing_machine_names_the_file() {
    match SmdSource::new(SmdConfig::new(data("smd")).machines(["machine-9-9"])) {
        Err(IngestError::Missing { path, .. }) => {
            assert!(path.ends_with("machine-9-9_train.csv"), "{path}")
        }
        other => panic!("expected Missing, got {:?}", other.err()),
    }
}

/// The bring-your-own layout: any entity names, plain `.csv`, any columns, `label` anywhere in
/// the test file, no interpretation labels.
#[test]
fn smd_layout_with_own_names_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("db-1_train.csv"),
        "qps,lat\n1,10\n2,11\n3,12\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("db-1_test.csv"),
        "qps,label,lat\n4,0,13\n5,1,90\n6,1,95\n7,0,14\n",
    )
    .unwrap();
    let mut src = SmdSource::new(SmdConfig::new(dir.path()).half(SmdHalf::Both)).unwrap();
    assert_eq!(src.machines(), ["db-1"]);
    assert_eq!(src.columns("db-1").unwrap(), ["smd_qps", "smd_lat"]);
    let points = src.point_labels();
    assert_eq!(points[0].labels, [false, true, true, false]);
    assert_eq!(points[0].start_ms, SMD_EPOCH_MS + 3 * SMD_STEP_MS);
    let labels = src.labels();
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].incident_ms, SMD_EPOCH_MS + 4 * SMD_STEP_MS);
    let records = src.drain().unwrap();
    assert_eq!(records.len(), 7);
    let Record::Sample(s) = &records[4] else {
        panic!("{:?}", records[4])
    };
    assert_eq!(s.metrics["smd_qps"], 5.0);
    assert_eq!(s.metrics["smd_lat"], 90.0);
    assert!(!s.metrics.contains_key("smd_label"));
}

#[test]
fn nab_all_real_files() {
    let mut src = NabSource::new(NabConfig::new(data("nab"))).unwrap();
    assert_eq!(src.files().len(), 24);
    let rows: usize = src.files().iter().map(|(_, n)| n).sum();
    let labels = src.labels();
    assert_eq!(labels.len(), 49);
    let records = src.drain().unwrap();
    assert_eq!(records.len(), rows);
    let per_entity = check_order(&records);
    assert_eq!(per_entity.len(), 24);

    // Repeated hours (daylight saving) are dead-lettered; nothing else is.
    let dead: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::DeadLetter(d) => Some(d),
            _ => None,
        })
        .collect();
    assert!(!dead.is_empty());
    assert!(
        dead.iter()
            .all(|d| d.reason.contains("not after the previous row")),
        "{dead:?}"
    );
    assert_eq!(per_entity.values().sum::<usize>() + dead.len(), rows);
    assert_eq!(per_entity["node/ec2_cpu_utilization_24ae8d"], 4032);

    // Canonical metrics where the series is plain.
    let first = |name: &str| {
        records
            .iter()
            .find_map(|r| match r {
                Record::Sample(s) if s.entity.name == name => Some(s.clone()),
                _ => None,
            })
            .unwrap()
    };
    let cpu = first("ec2_cpu_utilization_5f5533");
    assert_eq!(cpu.metrics["value"], 51.846000000000004);
    assert!((cpu.metrics[metrics::NODE_CPU_UTILIZATION_RATIO] - 0.51846).abs() < 1e-12);
    assert_eq!(first("nyc_taxi").metrics.len(), 1);
    assert!(
        first("elb_request_count_8c0756")
            .metrics
            .contains_key(metrics::REQUESTS_PER_SECOND)
    );

    // Kinds from file names; every label on a replayed entity.
    let kinds: BTreeSet<_> = labels.iter().map(|l| l.kind).collect();
    assert!(
        kinds.contains(&AnomalyKind::CpuExhaustion) && kinds.contains(&AnomalyKind::NetworkIssue)
    );
    for l in &labels {
        assert_eq!(l.fault, "nab");
        assert!(
            per_entity.contains_key(l.entity.id().as_str()),
            "{}",
            l.entity
        );
        assert!(l.onset_ms <= l.end_ms);
    }
}

#[test]
fn nab_selected_file_and_missing_file() {
    let src = NabSource::new(
        NabConfig::new(data("nab"))
            .files(["realKnownCause/machine_temperature_system_failure.csv"]),
    )
    .unwrap();
    assert_eq!(src.labels().len(), 4);
    assert!(
        src.labels()
            .iter()
            .all(|l| l.kind == AnomalyKind::PodFailure)
    );
    let err = NabSource::new(NabConfig::new(data("nab")).files(["realKnownCause/nope.csv"]))
        .err()
        .expect("missing file");
    assert!(err.to_string().contains("realKnownCause/nope.csv"), "{err}");
}

#[test]
fn nezha_both_days() {
    let mut src = NezhaSource::new(NezhaConfig::new(data("nezha-onlineboutique"))).unwrap();
    let days = src.days().to_vec();
    assert_eq!(days.len(), 2);
    assert_eq!((days[0].rows, days[1].rows), (1209, 721));
    assert!(days.iter().all(|d| d.pods.len() == 10));
    let labels = src.labels();
    assert_eq!(labels.len(), 56);
    let records = src.drain().unwrap();
    let per_entity = check_order(&records);
    let dead: Vec<_> = records
        .iter()
        .filter(|r| matches!(r, Record::DeadLetter(_)))
        .collect();
    assert!(dead.is_empty(), "{:?}", &dead[..dead.len().min(3)]);

    // 11 pods over two days (productcatalogservice was rescheduled) plus the frontend service.
    assert_eq!(per_entity.len(), 12);
    assert_eq!(
        per_entity["pod/hipster/cartservice-579f59597d-wc2lz"],
        1209 + 721
    );
    assert_eq!(
        per_entity["pod/hipster/productcatalogservice-668d5f85fb-wckp8"],
        1209
    );
    assert_eq!(per_entity["service/hipster/frontend"], 1209 + 721);

    // Topology comes first and places every pod on a node.
    assert!(matches!(records[0], Record::Topology(_)));
    let runs_on = records
        .iter()
        .filter(|r| matches!(r, Record::Topology(t) if matches!(&t.change, TopologyChange::UpsertEdge { edge } if edge.kind == auspex_model::EdgeKind::RunsOn)))
        .count();
    assert_eq!(runs_on, 20);
    let deleted: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Topology(t) => match &t.change {
                TopologyChange::DeleteEntity { entity } => Some(entity.name.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["productcatalogservice-668d5f85fb-wckp8"]);

    // Alignment: adservice's TimeStamp is 2e8 s off on 2022-08-22; its samples still share
    // cartservice's instants, all within that day.
    let times = |pod: &str| -> Vec<i64> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Sample(s) if s.entity.name == pod => Some(s.timestamp_ms),
                _ => None,
            })
            .collect()
    };
    let ad = times("adservice-5f6585d649-fnmft");
    let cart = times("cartservice-579f59597d-wc2lz");
    assert_eq!(ad, cart);
    let day1 = (1_661_126_400_000, 1_661_212_800_000); // 2022-08-22 UTC
    assert_eq!(
        ad.iter().filter(|t| (day1.0..day1.1).contains(*t)).count(),
        1209
    );
    assert_eq!(ad[0], 1_661_140_279_000); // 03:51:19 UTC, the first Time string

    // Canonical metrics.
    let s = records
        .iter()
        .find_map(|r| match r {
            Record::Sample(s) if s.entity.name == "cartservice-579f59597d-wc2lz" => Some(s),
            _ => None,
        })
        .unwrap();
    assert!((s.metrics[metrics::CPU_USAGE_CORES] - 0.0028428216598097054).abs() < 1e-15);
    assert_eq!(
        s.metrics[metrics::MEMORY_WORKING_SET_BYTES],
        33.41015625 * 1_048_576.0
    );
    assert_eq!(s.metrics[metrics::NETWORK_RX_BYTES_TOTAL], 0.0);
    assert!(!s.metrics.contains_key(metrics::SUCCESS_RATIO));
    assert_eq!(s.entity.node.as_deref(), Some("33.33.33.80"));
    assert_eq!(s.entity.service.as_deref(), Some("cartservice"));

    // Labels: 3 minutes from inject_time (UTC), on a replayed pod.
    let kinds = labels.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l.kind).or_insert(0) += 1;
        m
    });
    assert_eq!(kinds[&AnomalyKind::CpuExhaustion], 26);
    assert_eq!(kinds[&AnomalyKind::NetworkIssue], 16);
    assert_eq!(kinds[&AnomalyKind::PodFailure], 14);
    for l in &labels {
        assert_eq!(l.end_ms - l.incident_ms, 180_000);
        assert!(
            per_entity.contains_key(l.entity.id().as_str()),
            "{}",
            l.entity
        );
    }
    assert_eq!(labels[0].onset_ms, 1_661_140_434_000); // 2022-08-22 03:53:54 UTC
}

#[test]
fn nezha_one_day_and_missing_day() {
    let src = NezhaSource::new(NezhaConfig::new(data("nezha-onlineboutique")).days(["2022-08-23"]))
        .unwrap();
    assert_eq!(src.labels().len(), 32);
    let err = NezhaSource::new(NezhaConfig::new(data("nezha-onlineboutique")).days(["2022-08-24"]))
        .err()
        .expect("missing day");
    assert!(err.to_string().contains("2022-08-24"), "{err}");
}
