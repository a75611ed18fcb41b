//! The data set builder: labels with a horizon, replay equal to the pipeline's, determinism,
//! splits, subsampling, snapshots, and SMD.

mod common;

use std::collections::BTreeSet;

use auspex_ingest::{Record, SimulatorSource, SmdConfig, SmdSource, Source};
use auspex_model::{AnomalyKind, EntityId, EntityRef, IncidentLabel};
use auspex_sim::{FaultKind, ScheduledFault, SimConfig};
use auspex_train::{Dataset, DatasetConfig, SplitScope, build};
use auspex_window::{WindowConfig, WindowStore};
use common::{VecSource, data, pod_sample};

const RES: i64 = 15_000;
const T0: i64 = RES * 100_000;

fn small_windows() -> WindowConfig {
    WindowConfig {
        resolution_ms: RES as u64,
        length: 4,
        max_lateness_slots: 2,
        metrics: vec!["cpu_usage_cores".into(), "memory_working_set_bytes".into()],
        ..WindowConfig::default()
    }
}

fn label(name: &str, kind: AnomalyKind, onset: i64, incident: i64, end: i64) -> IncidentLabel {
    IncidentLabel {
        entity: EntityRef::pod("ns", name),
        kind,
        fault: "hand".into(),
        onset_ms: onset,
        incident_ms: incident,
        end_ms: end,
        root_cause: true,
    }
}

/// Two pods reporting every slot for 20 slots; pod `a` has a memory incident with onset at
/// step 6, incident at step 10, end at step 12.
fn hand_stream() -> VecSource {
    let mut records = Vec::new();
    for i in 0..20 {
        let ts = T0 + i * RES;
        for name in ["a", "b"] {
            records.push(pod_sample(
                name,
                ts,
                &[
                    ("cpu_usage_cores", 0.1 * i as f64),
                    ("memory_working_set_bytes", 1e6 + i as f64),
                ],
            ));
        }
    }
    let labels = vec![label(
        "a",
        AnomalyKind::MemoryExhaustion,
        T0 + 6 * RES,
        T0 + 10 * RES,
        T0 + 12 * RES,
    )];
    VecSource::new(records, labels, Some(RES as u64))
}

fn steps_where(ds: &Dataset, entity: &str, pred: impl Fn(usize) -> bool) -> Vec<i64> {
    (0..ds.len())
        .filter(|&i| ds.entity_name(i) == entity && pred(i))
        .map(|i| (ds.label_ms[i] - T0) / RES)
        .collect()
}

#[test]
fn horizon_labels_mark_exactly_the_expected_rows() {
    let config = DatasetConfig {
        windows: small_windows(),
        horizon_ms: 2 * RES,
        ..DatasetConfig::default()
    };
    let ds = build(&mut hand_stream(), &config).unwrap();
    // One row per sample: each slot is scored once, at the tick after it.
    assert_eq!(ds.len(), 40);
    let a = EntityRef::pod("ns", "a").id();
    let a = a.as_str();
    assert_eq!(steps_where(&ds, a, |_| true), (0..20).collect::<Vec<_>>());
    for i in 0..ds.len() {
        assert_eq!(
            ds.tick_at_ms[i],
            ds.label_ms[i] + RES,
            "scored at the next boundary"
        );
    }
    let mem = AnomalyKind::MemoryExhaustion;
    // Horizon 2 steps: from incident - 2 = step 8 through end = step 12.
    assert_eq!(
        steps_where(&ds, a, |i| ds.label(i, mem)),
        vec![8, 9, 10, 11, 12]
    );
    // Point label: onset (6) through end (12).
    assert_eq!(
        steps_where(&ds, a, |i| ds.point[i] == 1),
        vec![6, 7, 8, 9, 10, 11, 12]
    );
    for k in AnomalyKind::ALL {
        let expected = if k == mem { 5 } else { 0 };
        assert_eq!(ds.positives(k), expected, "{k}");
    }
    // Time to incident: 4 steps (60 s) before it at step 6, 0 during it, -1 after.
    let row = |step: i64| {
        (0..ds.len())
            .find(|&i| ds.entity_name(i) == a && ds.label_ms[i] == T0 + step * RES)
            .unwrap()
    };
    let tti = |i: usize| ds.time_to_incident_s[i * 4 + mem.index()];
    assert_eq!(tti(row(6)), 60.0);
    assert_eq!(tti(row(11)), 0.0);
    assert_eq!(tti(row(13)), -1.0);
    // Context: a pod, window filling up over the first 4 slots.
    assert_eq!(&ds.context_row(row(0))[..4], &[1.0, 0.0, 0.0, 0.0]);
    assert_eq!(ds.context_row(row(1))[5], 0.5);
    assert_eq!(ds.context_row(row(10))[5], 1.0);
}

#[test]
fn horizon_zero_is_the_incident_phase() {
    let config = DatasetConfig {
        windows: small_windows(),
        horizon_ms: 0,
        ..DatasetConfig::default()
    };
    let ds = build(&mut hand_stream(), &config).unwrap();
    let a = EntityRef::pod("ns", "a").id();
    assert_eq!(
        steps_where(&ds, a.as_str(), |i| ds
            .label(i, AnomalyKind::MemoryExhaustion)),
        vec![10, 11, 12]
    );
    assert!(
        DatasetConfig {
            horizon_ms: -1,
            ..DatasetConfig::default()
        }
        .validate()
        .is_err()
    );
}

fn sim_config() -> SimConfig {
    let minute = 60_000;
    let fault = |kind, at: u64| ScheduledFault {
        precursor_ms: Some(8 * minute),
        incident_ms: Some(5 * minute),
        ..ScheduledFault::new(kind, at * minute)
    };
    SimConfig {
        seed: 5,
        duration_ms: 180 * minute,
        warmup_ms: 20 * minute,
        rolling_deploys_per_hour: 0.0,
        reschedules_per_hour: 0.0,
        faults: Some(vec![
            fault(FaultKind::MemoryLeak, 25),
            fault(FaultKind::CpuSaturation, 60),
            fault(FaultKind::NetworkDegradation, 95),
            fault(FaultKind::CrashLoop, 130),
        ]),
        ..SimConfig::default()
    }
}

fn sim_records() -> (Vec<Record>, Vec<IncidentLabel>) {
    let mut src = SimulatorSource::new(sim_config()).unwrap();
    let records = src.drain().unwrap();
    (records, src.labels())
}

/// The pipeline's replay, written out independently: the feature rows a served model sees.
fn reference_rows(records: &[Record], wc: &WindowConfig) -> Vec<(EntityId, i64, Vec<f32>)> {
    let mut store = WindowStore::new(wc.clone()).unwrap();
    let tick = (wc.resolution_ms * wc.step as u64) as i64;
    let mut next: Option<i64> = None;
    let mut ticks = 0u64;
    let mut last: Option<i64> = None;
    let mut out = Vec::new();
    let mut due = Vec::new();
    let mut buf = Vec::new();
    let mut run_tick = |store: &mut WindowStore, now: i64, out: &mut Vec<_>| {
        ticks += 1;
        store.due_into(now - 1, &mut due);
        store.feature_matrix(&due, &mut buf).unwrap();
        let w = store.spec().len();
        for (i, id) in due.iter().enumerate() {
            out.push((id.clone(), now, buf[i * w..(i + 1) * w].to_vec()));
        }
        if ticks.is_multiple_of((60_000 / tick).max(1) as u64) {
            store.evict_stale(now);
        }
    };
    let mut advance = |store: &mut WindowStore, ts: i64, out: &mut Vec<_>| {
        let n = *next.get_or_insert((ts.div_euclid(tick) + 1) * tick);
        if ts >= n {
            let b = ts.div_euclid(tick) * tick;
            run_tick(store, b, out);
            next = Some(b + tick);
        }
    };
    for r in records {
        if let Some(ts) = r.timestamp_ms() {
            advance(&mut store, ts, &mut out);
            last = Some(last.map_or(ts, |l: i64| l.max(ts)));
        }
        if let Record::Sample(s) = r {
            store.push(s);
        }
    }
    if let Some(l) = last {
        advance(&mut store, l + tick, &mut out);
    }
    out
}

#[test]
fn simulator_rows_equal_the_served_windows_and_every_kind_has_positives() {
    let (records, labels) = sim_records();
    let config = DatasetConfig {
        horizon_ms: 10 * 60_000,
        graph_every_ticks: 40,
        ..DatasetConfig::default()
    };
    let ds = build(
        &mut VecSource::new(records.clone(), labels.clone(), Some(15_000)),
        &config,
    )
    .unwrap();

    let reference = reference_rows(&records, &config.windows);
    assert_eq!(ds.len(), reference.len());
    for (i, (id, tick, row)) in reference.iter().enumerate() {
        assert_eq!(ds.entity_name(i), id.as_str(), "row {i}");
        assert_eq!(ds.tick_at_ms[i], *tick, "row {i}");
        assert_eq!(ds.feature_row(i), row.as_slice(), "row {i} ({id})");
    }

    let kinds: BTreeSet<AnomalyKind> = labels.iter().map(|l| l.kind).collect();
    assert!(
        kinds.len() >= 3,
        "the forced faults label several kinds: {kinds:?}"
    );
    for k in &kinds {
        assert!(ds.positives(*k) > 0, "no positive row for {k}");
    }
    assert!(ds.point_positives() > 0);
    assert!(ds.point_positives() < ds.len() / 2);
    // Context: kind one-hots sum to 1, graph degree seen for pods.
    for i in 0..ds.len() {
        let c = ds.context_row(i);
        assert_eq!(c[..4].iter().sum::<f32>(), 1.0);
        assert!(c.iter().all(|v| v.is_finite()));
    }
    assert!((0..ds.len()).any(|i| ds.context_row(i)[6] > 0.0));

    // Snapshots: node features are the rows of that tick, labels one per node per kind.
    assert!(!ds.snapshots.is_empty());
    for s in &ds.snapshots {
        assert_eq!(s.labels.len(), s.graph.len() * 4);
        assert_eq!(s.point.len(), s.graph.len());
        for (n, r) in s.rows.iter().enumerate() {
            assert_eq!(s.graph.has_features[n], r.is_some());
            if let Some(r) = r {
                let r = *r as usize;
                assert_eq!(s.graph.features(n), ds.feature_row(r));
                assert_eq!(ds.entity_name(r), s.graph.ids[n].as_str());
                assert_eq!(ds.tick_at_ms[r], s.tick_ms);
            }
        }
    }
    assert!(ds.snapshots.iter().any(|s| s.graph.edge_count() > 0));
}

#[test]
fn builds_are_deterministic_and_survive_a_round_trip() {
    let config = DatasetConfig {
        sequences: true,
        graph_every_ticks: 50,
        ..DatasetConfig::default()
    };
    let a = build(&mut SimulatorSource::new(sim_config()).unwrap(), &config).unwrap();
    let b = build(&mut SimulatorSource::new(sim_config()).unwrap(), &config).unwrap();
    assert!(a == b, "two builds of one source differ");
    let seq = a.sequences.as_ref().unwrap();
    assert_eq!(seq.values.len(), a.len() * seq.length * seq.metrics);
    assert_eq!(seq.mask.len(), seq.values.len());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.json");
    a.save(&path).unwrap();
    let back = Dataset::load(&path).unwrap();
    let mut a_plain = a.clone();
    a_plain.snapshots.clear();
    assert!(back == a_plain, "JSON round trip changed the data set");
}

#[test]
fn time_splits_do_not_overlap_and_subsampling_keeps_positives() {
    let (records, labels) = sim_records();
    let ds = build(
        &mut VecSource::new(records, labels, Some(15_000)),
        &DatasetConfig::default(),
    )
    .unwrap();

    let s = ds.split_by_time(0.25, SplitScope::Global, 0).unwrap();
    assert_eq!(s.train.len() + s.valid.len(), ds.len());
    let last_train = s.train.iter().map(|&i| ds.label_ms[i]).max().unwrap();
    let first_valid = s.valid.iter().map(|&i| ds.label_ms[i]).min().unwrap();
    assert!(last_train < first_valid);
    let frac = s.valid.len() as f64 / ds.len() as f64;
    assert!((0.2..0.3).contains(&frac), "{frac}");

    let gap = 10 * 60_000;
    let s = ds.split_by_time(0.25, SplitScope::PerEntity, gap).unwrap();
    let train: BTreeSet<usize> = s.train.iter().copied().collect();
    assert!(s.valid.iter().all(|i| !train.contains(i)));
    for e in 0..ds.entities.len() as u32 {
        let t = s.train.iter().filter(|&&i| ds.entity[i] == e);
        let v = s.valid.iter().filter(|&&i| ds.entity[i] == e);
        if let (Some(lt), Some(fv)) = (
            t.map(|&i| ds.label_ms[i]).max(),
            v.map(|&i| ds.label_ms[i]).min(),
        ) {
            assert!(
                lt + gap < fv,
                "entity {e}: train ends {lt}, valid starts {fv}"
            );
        }
    }
    assert!(ds.split_by_time(1.0, SplitScope::Global, 0).is_err());

    let sub = ds.subsample_negatives(0.2, 3).unwrap();
    let positives = |d: &Dataset| (0..d.len()).filter(|&i| !d.is_negative(i)).count();
    assert_eq!(positives(&sub), positives(&ds));
    let neg = |d: &Dataset| d.len() - positives(d);
    let kept = neg(&sub) as f64 / neg(&ds) as f64;
    assert!((0.17..0.23).contains(&kept), "{kept}");
    assert!(sub == ds.subsample_negatives(0.2, 3).unwrap());
    assert!(sub != ds.subsample_negatives(0.2, 4).unwrap());
    // Rows carry their features along.
    let i = (0..ds.len()).find(|&i| !ds.is_negative(i)).unwrap();
    let j = (0..sub.len())
        .find(|&j| sub.label_ms[j] == ds.label_ms[i] && sub.entity_name(j) == ds.entity_name(i))
        .unwrap();
    assert_eq!(sub.feature_row(j), ds.feature_row(i));

    let both = Dataset::concat(&[sub.clone(), sub.clone()]).unwrap();
    assert_eq!(both.len(), 2 * sub.len());
    assert_eq!(both.entities.len(), sub.entities.len());
    assert_eq!(both.feature_row(sub.len()), sub.feature_row(0));
}

#[test]
fn smd_positives_equal_the_label_column() {
    let root = format!("{}/smd", data());
    let mut src = SmdSource::new(SmdConfig::new(&root).machines(["machine-1-2"])).unwrap();
    let columns = src.columns("machine-1-2").unwrap().to_vec();
    let points = src.point_labels().remove(0);
    let config = DatasetConfig {
        windows: WindowConfig {
            length: 10,
            metrics: columns,
            ..WindowConfig::default()
        },
        horizon_ms: 0,
        ..DatasetConfig::default()
    };
    let ds = build(&mut src, &config).unwrap();
    // Each test row is one window: one row a minute, a tick a minute.
    assert_eq!(ds.len(), points.labels.len());
    assert_eq!(ds.tick_ms, 60_000);
    let anomalous = points.anomalous_rows();
    assert!(anomalous > 0);
    assert_eq!(ds.point_positives(), anomalous);
    for i in 0..ds.len() {
        assert_eq!(
            points.at(ds.label_ms[i]),
            Some(ds.point[i] == 1),
            "row {i} at {}",
            ds.label_ms[i]
        );
        // SMD incidents have onset = incident, so with H = 0 some kind is positive exactly on
        // the anomalous rows.
        assert_eq!(ds.label_row(i).contains(&1), ds.point[i] == 1);
    }
}
