//! Throughput of the window stage over 10k entities: JSON parsing, pushing samples, extracting
//! features (vectors and arrow batches), and the three together per sample. Elements are samples
//! (or feature rows), so criterion prints samples per second.

use std::collections::BTreeMap;
use std::hint::black_box;

use auspex_model::{Entity, EntityId, EntityKind, MetricSample};
use auspex_window::{WindowConfig, WindowStore};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ENTITIES: usize = 10_000;
const T0: i64 = 1_700_000_000_000;
const RES: i64 = 15_000;

/// Deterministic pseudo-random numbers in [0, 1) (no rand dependency needed for a bench).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn entity(i: usize) -> Entity {
    let mut e = Entity::new(
        EntityKind::Pod,
        Some("shop"),
        &format!("svc{}-7d9f8b6c4-{i:05}", i % 50),
    );
    e.node = Some(format!("ip-10-0-{}-{}", i % 7, i % 40));
    e.service = Some(format!("svc{}", i % 50));
    e.workload = Some(format!("svc{}", i % 50));
    e.labels = BTreeMap::from([("app".into(), format!("svc{}", i % 50))]);
    e
}

/// A realistic pod sample at slot `t`: every tracked metric plus the two limits (22 values).
fn sample(i: usize, t: i64, rng: &mut Lcg) -> MetricSample {
    let x = t as f64;
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: f64| {
        m.insert(k.to_string(), v);
    };
    put("cpu_usage_cores", 0.2 + 0.1 * rng.next());
    put("cpu_limit_cores", 1.0);
    put("cpu_throttled_ratio", 0.05 * rng.next());
    put("memory_working_set_bytes", 2e8 + 1e5 * x + 1e6 * rng.next());
    put("memory_limit_bytes", 5e8);
    put("restarts_total", (i % 3) as f64);
    put("oom_kills_total", 0.0);
    put("ready", 1.0);
    put(
        "network_rx_bytes_total",
        1e9 + 1.5e5 * x * (1.0 + rng.next()),
    );
    put(
        "network_tx_bytes_total",
        8e8 + 1.2e5 * x * (1.0 + rng.next()),
    );
    put("network_rx_errors_total", (x / 10.0).floor());
    put("network_tx_errors_total", 0.0);
    put("network_rx_dropped_total", (x / 20.0).floor());
    put("network_tx_dropped_total", 0.0);
    put("requests_per_second", 50.0 + 10.0 * rng.next());
    put("success_ratio", 0.99 + 0.01 * rng.next());
    put("latency_p50_seconds", 0.01 + 0.002 * rng.next());
    put("latency_p90_seconds", 0.03 + 0.01 * rng.next());
    put("latency_p99_seconds", 0.08 + 0.05 * rng.next());
    put("client_latency_p99_seconds", 0.1 + 0.05 * rng.next());
    put("node_cpu_utilization_ratio", 0.5 + 0.1 * rng.next());
    put("node_memory_utilization_ratio", 0.6 + 0.1 * rng.next());
    MetricSample {
        timestamp_ms: T0 + t * RES,
        entity: entity(i),
        metrics: m,
    }
}

/// One slot's worth of samples for every entity.
fn tick(t: i64, rng: &mut Lcg) -> Vec<MetricSample> {
    (0..ENTITIES).map(|i| sample(i, t, rng)).collect()
}

/// A store whose windows are all full (`length` slots pushed).
fn warm_store(rng: &mut Lcg) -> (WindowStore, Vec<EntityId>, i64) {
    let config = WindowConfig::default();
    let length = config.length as i64;
    let mut store = WindowStore::new(config).expect("default config is valid");
    for t in 0..length {
        for s in tick(t, rng) {
            store.push(&s);
        }
    }
    let ids: Vec<_> = (0..ENTITIES).map(|i| entity(i).id()).collect();
    (store, ids, length)
}

fn bench(c: &mut Criterion) {
    let mut rng = Lcg(42);
    let samples = tick(0, &mut rng);
    let bytes: Vec<Vec<u8>> = samples
        .iter()
        .map(|s| serde_json::to_vec(s).expect("samples serialise"))
        .collect();
    let avg = bytes.iter().map(Vec::len).sum::<usize>() / bytes.len();
    eprintln!(
        "sample JSON: {avg} bytes on average, {} metrics",
        samples[0].metrics.len()
    );

    let mut g = c.benchmark_group("window");
    g.throughput(Throughput::Elements(ENTITIES as u64));

    g.bench_function("parse", |b| {
        b.iter(|| {
            for raw in &bytes {
                black_box(MetricSample::from_json(black_box(raw)).expect("valid sample"));
            }
        })
    });

    let (mut store, ids, mut t) = warm_store(&mut rng);
    let mut next = samples.clone();
    g.bench_function("push", |b| {
        b.iter(|| {
            for s in &mut next {
                s.timestamp_ms = T0 + t * RES;
                black_box(store.push(s));
            }
            t += 1;
        })
    });

    let (store, ids_full, _) = warm_store(&mut rng);
    assert_eq!(ids_full, ids);
    let mut matrix = Vec::new();
    g.bench_function("features", |b| {
        b.iter(|| {
            store.feature_matrix(&ids, &mut matrix).expect("all live");
            black_box(&matrix);
        })
    });
    g.bench_function("feature_batch", |b| {
        b.iter(|| black_box(store.feature_batch(&ids).expect("all live")))
    });
    g.bench_function("sequence_batch", |b| {
        b.iter(|| black_box(store.sequence_batch(&ids).expect("all live")))
    });

    // The pipeline's tick: parse and push one sample per entity, then score the due ones.
    let (mut store, _, mut t) = warm_store(&mut rng);
    let (mut due, mut matrix) = (Vec::new(), Vec::new());
    g.bench_function("parse_push_features", |b| {
        b.iter(|| {
            for raw in &bytes {
                let mut s = MetricSample::from_json(raw).expect("valid sample");
                s.timestamp_ms = T0 + t * RES;
                store.push(&s);
            }
            store.due_into(T0 + t * RES, &mut due);
            assert_eq!(due.len(), ENTITIES);
            store.feature_matrix(&due, &mut matrix).expect("all live");
            black_box(&matrix);
            t += 1;
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
