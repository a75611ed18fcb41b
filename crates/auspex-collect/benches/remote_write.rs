//! Throughput of the receiver's CPU work: decoding a remote-write body (snappy + protobuf) and
//! mapping its series, for a request as Prometheus sends them (`max_samples_per_send` = 2000
//! samples, one per series) from a cluster of 100 pods × 4 containers plus node-exporter.
//! `cargo bench -p auspex-collect --bench remote_write` prints samples per second.

use std::hint::black_box;

use auspex_collect::remote_write::{self, Label, Limits, Sample, TimeSeries, WriteRequest};
use auspex_collect::{Mapper, MappingConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const T0: i64 = 1_700_000_010_000;

fn request(ts: i64) -> WriteRequest {
    let mut timeseries = Vec::new();
    let metrics = [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_cpu_cfs_periods_total",
        "container_cpu_cfs_throttled_periods_total",
        "container_oom_events_total",
    ];
    'fill: for pod in 0..100 {
        for container in ["app", "sidecar", "init", "proxy"] {
            for m in metrics {
                if timeseries.len() == 2000 {
                    break 'fill;
                }
                timeseries.push(TimeSeries {
                    labels: vec![
                        Label::new("__name__", m),
                        Label::new("container", container),
                        Label::new("id", format!("/kubepods/pod{pod}/{container}")),
                        Label::new("image", "registry.example.com/app:1.0"),
                        Label::new("instance", format!("worker-{}", pod % 10)),
                        Label::new("job", "kubelet"),
                        Label::new("namespace", "shop"),
                        Label::new("node", format!("worker-{}", pod % 10)),
                        Label::new("pod", format!("app-{pod}")),
                    ],
                    samples: vec![Sample {
                        value: (ts - T0) as f64 / 1000.0 * 0.25,
                        timestamp: ts,
                    }],
                });
            }
        }
    }
    WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

fn bench(c: &mut Criterion) {
    let limits = Limits {
        max_body_bytes: 8 << 20,
        max_decoded_bytes: 64 << 20,
    };
    let bodies: Vec<Vec<u8>> = (0..16)
        .map(|i| remote_write::encode(&request(T0 + i * 1000)))
        .collect();
    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(2000));
    g.bench_function("decode 2000 samples", |b| {
        b.iter(|| black_box(remote_write::decode(&bodies[0], limits).unwrap()))
    });
    g.bench_function("decode + map 2000 samples", |b| {
        let mut mapper = Mapper::new(MappingConfig::default());
        let mut i = 0usize;
        let mut now = T0;
        b.iter(|| {
            let r = remote_write::decode(&bodies[i % bodies.len()], limits).unwrap();
            mapper.ingest_request(&r, now);
            i += 1;
            if i.is_multiple_of(bodies.len()) {
                now += 60_000;
                black_box(mapper.flush(now, true));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
