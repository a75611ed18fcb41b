//! The injector: labels match the injected spans, the deviation is in the emitted metrics,
//! untouched values stay untouched, and the same seed injects the same anomalies.

mod common;

use auspex_ingest::{Record, Source};
use auspex_model::{AnomalyKind, EntityRef, MetricSample};
use auspex_train::{
    DatasetConfig, Injection, Injector, InjectorConfig, Shape, build, kind_for_metric,
};
use auspex_window::WindowConfig;
use common::{VecSource, pod_sample, samples};

const STEP: i64 = 60_000;
const T0: i64 = STEP * 20_000_000;
const N: i64 = 2_000;

/// Three pods, a sample a minute, noisy cpu and memory gauges and a restart counter.
fn stream() -> Vec<Record> {
    let mut out = Vec::new();
    for i in 0..N {
        for (p, name) in ["a", "b", "c"].iter().enumerate() {
            let x = i as f64 + 17.0 * p as f64;
            let noise = ((x * 12.9898).sin() * 43_758.547).fract();
            out.push(pod_sample(
                name,
                T0 + i * STEP,
                &[
                    (
                        "cpu_usage_cores",
                        0.5 + 0.1 * (x / 30.0).sin() + 0.02 * noise,
                    ),
                    ("memory_working_set_bytes", 2e8 + 1e6 * noise),
                    ("restarts_total", (i / 500) as f64),
                    ("cpu_limit_cores", 1.0),
                ],
            ));
        }
    }
    out
}

fn config(seed: u64) -> InjectorConfig {
    InjectorConfig {
        seed,
        rate_per_entity_hour: 1.0,
        min_len: 5,
        max_len: 20,
        ..InjectorConfig::default()
    }
}

fn run(
    seed: u64,
    shapes: &[Shape],
) -> (
    Vec<Record>,
    Vec<Injection>,
    Vec<auspex_model::IncidentLabel>,
) {
    let mut inj = Injector::new(
        VecSource::new(stream(), Vec::new(), Some(STEP as u64)),
        InjectorConfig {
            shapes: shapes.to_vec(),
            ..config(seed)
        },
    )
    .unwrap();
    let out = inj.drain().unwrap();
    let labels = inj.labels();
    (out, inj.injections().to_vec(), labels)
}

fn find<'a>(xs: &'a [&'a MetricSample], entity: &EntityRef, ts: i64) -> &'a MetricSample {
    xs.iter()
        .find(|s| s.timestamp_ms == ts && s.entity.reference() == *entity)
        .unwrap()
}

#[test]
fn labels_match_spans_and_deviations_are_in_the_metrics() {
    let original = stream();
    let orig = samples(&original);
    let (out, injections, labels) = run(11, &Shape::ALL);
    let emitted = samples(&out);
    assert_eq!(orig.len(), emitted.len());
    assert!(injections.len() >= 20, "{} injections", injections.len());
    for shape in Shape::ALL {
        assert!(
            injections.iter().any(|i| i.shape == shape),
            "no {shape:?} drawn"
        );
    }
    assert_eq!(labels.len(), injections.len());

    for (inj, label) in injections.iter().zip(&labels) {
        // The label is the span.
        assert_eq!(label.entity, inj.entity);
        assert_eq!(label.onset_ms, inj.onset_ms);
        assert_eq!(label.end_ms, inj.end_ms);
        assert_eq!(label.kind, kind_for_metric(&inj.metric));
        assert_eq!(label.fault, format!("injected_{}", inj.shape.as_str()));
        assert!(label.onset_ms <= label.incident_ms && label.incident_ms <= label.end_ms);
        assert_eq!(inj.samples, inj.planned, "the stream outlasts every span");
        assert_eq!(
            inj.end_ms - inj.onset_ms,
            (inj.planned as i64 - 1) * STEP,
            "one sample a minute"
        );
        // Never a counter or a limit.
        assert!(inj.metric == "cpu_usage_cores" || inj.metric == "memory_working_set_bytes");

        for step in 0..inj.planned {
            let ts = inj.onset_ms + step as i64 * STEP;
            let v0 = find(&orig, &inj.entity, ts).metrics[&inj.metric];
            let v1 = find(&emitted, &inj.entity, ts).metrics[&inj.metric];
            let a = inj.amplitude;
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * (1.0 + y.abs());
            match inj.shape {
                Shape::Spike => assert!(close(v1 - v0, a)),
                Shape::LevelShift => assert!(close(v1 - v0, a / 2.0)),
                Shape::Drift => {
                    assert!(close(v1 - v0, a * (step + 1) as f64 / inj.planned as f64))
                }
                Shape::FlatLine => {
                    let held = find(&orig, &inj.entity, inj.onset_ms).metrics[&inj.metric];
                    assert_eq!(v1, held);
                }
                Shape::CorrelationBreak => assert!(close(v1, 2.0 * inj.mean - v0)),
                Shape::VarianceBurst => assert!(v1 != v0),
            }
        }
        // A drift's incident is its midpoint: a precursor phase to predict.
        if inj.shape == Shape::Drift {
            let mid = (inj.planned.div_ceil(2) - 1) as i64;
            assert_eq!(label.incident_ms, inj.onset_ms + mid * STEP);
            assert!(inj.planned < 2 || label.incident_ms > label.onset_ms);
        } else {
            assert_eq!(label.incident_ms, label.onset_ms);
        }
    }

    // Outside the spans nothing changed, and the other metrics never change.
    let inside = |s: &MetricSample, metric: &str| {
        injections.iter().any(|i| {
            i.entity == s.entity.reference()
                && i.metric == metric
                && i.onset_ms <= s.timestamp_ms
                && s.timestamp_ms <= i.end_ms
        })
    };
    let mut changed = 0;
    for (o, e) in orig.iter().zip(&emitted) {
        assert_eq!(o.timestamp_ms, e.timestamp_ms);
        for (k, v) in &o.metrics {
            if inside(o, k) {
                changed += usize::from(e.metrics[k] != *v);
            } else {
                assert_eq!(
                    e.metrics[k], *v,
                    "{k} changed outside a span at {}",
                    o.timestamp_ms
                );
            }
        }
    }
    assert!(changed > 0);
}

#[test]
fn same_seed_same_injections_other_seed_others() {
    let (a, ia, _) = run(3, &Shape::ALL);
    let (b, ib, _) = run(3, &Shape::ALL);
    let (_, ic, _) = run(4, &Shape::ALL);
    assert!(a == b);
    assert_eq!(ia, ib);
    assert_ne!(ia, ic);
}

#[test]
fn kinds_follow_metric_names() {
    use AnomalyKind::*;
    for (m, k) in [
        ("cpu_usage_cores", CpuExhaustion),
        ("node_cpu_utilization_ratio", CpuExhaustion),
        ("cpu_throttled_ratio", CpuExhaustion),
        ("smd_load_1", CpuExhaustion),
        ("memory_working_set_bytes", MemoryExhaustion),
        ("smd_mem_u", MemoryExhaustion),
        ("network_rx_errors_total", NetworkIssue),
        ("latency_p99_seconds", NetworkIssue),
        ("success_ratio", NetworkIssue),
        ("smd_eth1_fi", NetworkIssue),
        ("smd_tcp_tw", NetworkIssue),
        ("smd_retransegs", NetworkIssue),
        ("restarts_total", PodFailure),
        ("ready", PodFailure),
        ("smd_disk_q", PodFailure),
        ("requests_per_second", PodFailure),
    ] {
        assert_eq!(kind_for_metric(m), k, "{m}");
    }
}

#[test]
fn bad_configs_are_refused() {
    let src = || VecSource::new(Vec::new(), Vec::new(), None);
    for bad in [
        InjectorConfig {
            shapes: Vec::new(),
            ..InjectorConfig::default()
        },
        InjectorConfig {
            min_len: 30,
            max_len: 10,
            ..InjectorConfig::default()
        },
        InjectorConfig {
            rate_per_entity_hour: f64::NAN,
            ..InjectorConfig::default()
        },
        InjectorConfig {
            magnitude: 0.0,
            ..InjectorConfig::default()
        },
    ] {
        assert!(Injector::new(src(), bad).is_err());
    }
}

/// An unlabelled stream becomes a labelled data set: supervised branches can train on it.
#[test]
fn injected_stream_gives_a_labelled_dataset() {
    let mut inj = Injector::new(
        VecSource::new(stream(), Vec::new(), Some(STEP as u64)),
        InjectorConfig {
            shapes: vec![Shape::Drift, Shape::LevelShift],
            ..config(9)
        },
    )
    .unwrap();
    let ds = build(
        &mut inj,
        &DatasetConfig {
            windows: WindowConfig {
                length: 10,
                metrics: vec!["cpu_usage_cores".into(), "memory_working_set_bytes".into()],
                ..WindowConfig::default()
            },
            horizon_ms: 5 * STEP,
            ..DatasetConfig::default()
        },
    )
    .unwrap();
    assert_eq!(ds.len(), 3 * N as usize);
    assert_eq!(ds.incidents.len(), inj.injections().len());
    let covered: usize = inj.injections().iter().map(|i| i.planned).sum();
    assert_eq!(
        ds.point_positives(),
        covered,
        "spans never overlap on an entity"
    );
    assert!(ds.positives(AnomalyKind::CpuExhaustion) > 0);
    assert!(ds.positives(AnomalyKind::MemoryExhaustion) > 0);
}

/// With `max_metrics`, one anomaly bends several distinct metrics of an entity over the same
/// span, each with its own label.
#[test]
fn one_anomaly_can_bend_several_metrics() {
    let mut src = Injector::new(
        VecSource::new(stream(), Vec::new(), Some(STEP as u64)),
        InjectorConfig {
            max_metrics: 2,
            ..config(11)
        },
    )
    .unwrap();
    let _ = src.drain().unwrap();
    let injections = src.injections().to_vec();
    let mut groups: std::collections::BTreeMap<(String, i64), Vec<&Injection>> = Default::default();
    for i in &injections {
        groups
            .entry((i.entity.id().as_str().to_string(), i.onset_ms))
            .or_default()
            .push(i);
    }
    assert!(groups.len() >= 10, "{} anomalies", groups.len());
    let mut pairs = 0;
    for g in groups.values() {
        assert!(g.len() <= 2, "{} metrics in one anomaly", g.len());
        if g.len() == 2 {
            pairs += 1;
            assert_ne!(g[0].metric, g[1].metric);
            assert_eq!(g[0].shape, g[1].shape);
            assert_eq!(g[0].planned, g[1].planned);
            assert_eq!(g[0].end_ms, g[1].end_ms);
        }
    }
    // Two eligible gauges (cpu, memory): about half the anomalies should take both.
    assert!(pairs * 4 >= groups.len(), "{pairs} of {}", groups.len());
    assert_eq!(src.labels().len(), injections.len());
}
