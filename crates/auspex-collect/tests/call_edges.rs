//! `calls` edges from mesh request counters, end to end through a live collector: real
//! remote-write bodies (snappy protobuf) carrying Istio or Linkerd series with growing counters
//! are posted over HTTP, and the topology events are read back from the NDJSON output; the
//! counters come from the collector's own `/metrics`.
//!
//! The tests share the process's one metrics recorder, so they run one at a time ([`SERIAL`])
//! and compare counters before and after.

use std::path::Path;
use std::time::{Duration, Instant};

use auspex_collect::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use auspex_collect::{CollectConfig, Collector};
use auspex_model::{Edge, EdgeKind, EntityRef, TopologyChange, TopologyEvent};
use auspex_watch::{CallsConfig, Mesh};

mod common;
use common::handle;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An `istio_requests_total` series as an Envoy sidecar reports it (reporter, response code
/// and the rest are not read).
fn istio(from: &str, code: &str) -> Vec<Label> {
    [
        ("__name__", "istio_requests_total"),
        ("reporter", "source"),
        ("source_workload", &format!("{from}-v1")),
        ("source_canonical_service", from),
        ("source_workload_namespace", "shop"),
        ("destination_workload", "checkout-v2"),
        ("destination_service", "checkout.shop.svc.cluster.local"),
        ("destination_service_name", "checkout"),
        ("destination_service_namespace", "shop"),
        ("response_code", code),
        ("request_protocol", "http"),
        ("pod", &format!("{from}-5d8f-abcde")),
        ("namespace", "shop"),
    ]
    .into_iter()
    .map(|(k, v)| Label::new(k, v))
    .collect()
}

/// A Linkerd proxy's `response_total` series from `deployment` in `shop` to `dst_service` in
/// `payments`, on `direction`'s side.
fn linkerd(direction: &str, deployment: &str, dst_service: &str) -> Vec<Label> {
    [
        ("__name__", "response_total"),
        ("direction", direction),
        ("namespace", "shop"),
        ("deployment", deployment),
        ("pod", &format!("{deployment}-7c9d-xk2lp")),
        ("dst_namespace", "payments"),
        ("dst_service", dst_service),
        ("tls", "true"),
        ("status_code", "200"),
        ("classification", "success"),
    ]
    .into_iter()
    .map(|(k, v)| Label::new(k, v))
    .collect()
}

/// A cAdvisor series the mapping knows, sent in the same requests.
fn memory(pod: &str) -> Vec<Label> {
    vec![
        Label::new("__name__", "container_memory_working_set_bytes"),
        Label::new("container", "app"),
        Label::new("namespace", "shop"),
        Label::new("pod", pod),
    ]
}

/// One series of a request: its labels and its `(timestamp_ms, value)` samples.
type Series<'a> = (&'a [Label], &'a [(i64, f64)]);

fn body(series: &[Series]) -> Vec<u8> {
    remote_write::encode(&WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, samples)| TimeSeries {
                labels: labels.to_vec(),
                samples: samples
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
            })
            .collect(),
        metadata: vec![],
    })
}

async fn post(collector: &Collector, series: &[Series<'_>]) {
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/write", collector.local_addr()))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(body(series))
        .send()
        .await
        .expect("the receiver answers");
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
}

/// The sum of a metric's series whose labels contain `labels` (`""`: all), from `/metrics`.
async fn metric(collector: &Collector, name: &str, labels: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", collector.local_addr()))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']) && rest.contains(labels))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The topology events in the NDJSON output (the lines with an `op`), and how many metric
/// samples are there besides.
fn read_output(path: &Path) -> (Vec<TopologyEvent>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut events = Vec::new();
    let mut samples = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("NDJSON lines are JSON");
        if v.get("op").is_some() {
            events.push(TopologyEvent::from_json(line.as_bytes()).expect("a topology event"));
        } else {
            samples += 1;
        }
    }
    (events, samples)
}

fn calls(from_ns: &str, from: &str, to_ns: &str, to: &str) -> Edge {
    Edge {
        kind: EdgeKind::Calls,
        from: EntityRef::service(from_ns, from),
        to: EntityRef::service(to_ns, to),
    }
}

fn changes(events: &[TopologyEvent]) -> Vec<TopologyChange> {
    events.iter().map(|e| e.change.clone()).collect()
}

async fn start(mesh: Mesh, expire_after_secs: u64, max_series: usize, out: &Path) -> Collector {
    let mut cfg = CollectConfig::default();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.output.path = out.display().to_string();
    cfg.mapping.flush_after_ms = 200;
    cfg.mapping.resolution_ms = 1_000;
    cfg.mapping.series_ttl_ms = 60_000;
    cfg.calls = CallsConfig {
        mesh,
        expire_after_secs,
        max_series,
    };
    Collector::start(cfg, handle()).await.unwrap()
}

/// Polls the output until `done` holds for its events, or panics after `within`.
async fn wait_for(
    out: &Path,
    within: Duration,
    what: &str,
    done: impl Fn(&[TopologyEvent]) -> bool,
) -> Vec<TopologyEvent> {
    let deadline = Instant::now() + within;
    loop {
        let (events, _) = read_output(out);
        if done(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen in {within:?}; events: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_counters_that_grow_make_a_calls_edge_that_expires_when_they_stop() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    // Two series tracked at most: the third (another caller) is dropped and counted.
    let collector = start(Mesh::Istio, 3, 2, &out).await;
    let before = |name: &'static str, labels: &'static str| metric(&collector, name, labels);
    let unknown0 = before(
        "auspex_collect_series_dropped_total",
        "reason=\"unknown_metric\"",
    )
    .await;
    let upserts0 = before(
        "auspex_collect_call_edge_events_published_total",
        "change=\"upsert_edge\"",
    )
    .await;
    let deletes0 = before(
        "auspex_collect_call_edge_events_published_total",
        "change=\"delete_edge\"",
    )
    .await;
    let topology0 = before("auspex_collect_topology_events_published_total", "").await;
    let capped0 = before("auspex_collect_call_series_dropped_total", "").await;

    let ok = istio("frontend", "200");
    let failed = istio("frontend", "503");
    let other_caller = istio("cart", "200");
    let mem = memory("frontend-5d8f-abcde");
    let t = auspex_collect::now_ms();
    // First sight of the counters (and flat ones) is a baseline, not a call.
    post(
        &collector,
        &[
            (&ok, &[(t - 1_000, 10.0), (t - 500, 10.0)]),
            (&failed, &[(t - 500, 1.0)]),
            (&mem, &[(t - 500, 1e6)]),
        ],
    )
    .await;
    // Long enough for a publish tick, short enough that the series (unseen for
    // expire_after_secs) are not forgotten.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(read_output(&out).0, vec![], "flat counters are no calls");

    // Growth is a call; both series name the same edge, which appears once.
    let last_call = Instant::now();
    let t = auspex_collect::now_ms();
    post(
        &collector,
        &[
            (&ok, &[(t, 12.0)]),
            (&failed, &[(t, 2.0)]),
            (&other_caller, &[(t - 1_000, 1.0), (t, 5.0)]),
            (&mem, &[(t, 1e6)]),
        ],
    )
    .await;
    let events = wait_for(&out, Duration::from_secs(10), "the upsert", |e| {
        !e.is_empty()
    })
    .await;
    let edge = calls("shop", "frontend", "shop", "checkout");
    assert_eq!(
        changes(&events),
        vec![TopologyChange::UpsertEdge { edge: edge.clone() }]
    );
    assert_eq!(
        events[0].timestamp_ms, t,
        "stamped with the growing sample's time"
    );

    // The counters are still written, but flat: the edge expires 3 s after its last call.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let t = auspex_collect::now_ms();
        post(&collector, &[(&ok, &[(t, 12.0)]), (&failed, &[(t, 2.0)])]).await;
    }
    let events = wait_for(&out, Duration::from_secs(10), "the delete", |e| {
        e.len() >= 2
    })
    .await;
    assert!(
        last_call.elapsed() >= Duration::from_secs(3),
        "deleted {:?} after the last call, before expire_after_secs",
        last_call.elapsed()
    );
    assert_eq!(
        changes(&events),
        vec![
            TopologyChange::UpsertEdge { edge: edge.clone() },
            TopologyChange::DeleteEdge { edge }
        ]
    );

    let after = |name: &'static str, labels: &'static str| metric(&collector, name, labels);
    assert_eq!(
        after(
            "auspex_collect_call_edge_events_published_total",
            "change=\"upsert_edge\""
        )
        .await
            - upserts0,
        1.0
    );
    assert_eq!(
        after(
            "auspex_collect_call_edge_events_published_total",
            "change=\"delete_edge\""
        )
        .await
            - deletes0,
        1.0
    );
    assert_eq!(
        after("auspex_collect_topology_events_published_total", "").await - topology0,
        2.0
    );
    // Both samples of the third series were dropped at calls.max_series.
    assert_eq!(
        after("auspex_collect_call_series_dropped_total", "").await - capped0,
        2.0
    );
    // The mesh series were taken, not dropped as unknown; the memory series was mapped.
    assert_eq!(
        after(
            "auspex_collect_series_dropped_total",
            "reason=\"unknown_metric\""
        )
        .await
            - unknown0,
        0.0
    );
    collector.stop().await.unwrap();
    let (events, samples) = read_output(&out);
    assert_eq!(events.len(), 2, "nothing more at shutdown: {events:?}");
    assert!(samples >= 1, "the memory series still became samples");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_mesh_the_same_series_are_unknown_and_make_no_edge() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let collector = start(Mesh::None, 2, 100, &out).await;
    let unknown = || {
        metric(
            &collector,
            "auspex_collect_series_dropped_total",
            "reason=\"unknown_metric\"",
        )
    };
    let unknown0 = unknown().await;
    let ok = istio("frontend", "200");
    let t = auspex_collect::now_ms();
    post(
        &collector,
        &[(&ok, &[(t - 2_000, 10.0), (t - 1_000, 11.0)])],
    )
    .await;
    post(&collector, &[(&ok, &[(t, 12.0)])]).await;
    assert_eq!(unknown().await - unknown0, 3.0);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    collector.stop().await.unwrap();
    assert_eq!(read_output(&out), (vec![], 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkerd_outbound_counters_make_an_edge_inbound_ones_do_not() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let collector = start(Mesh::Linkerd, 60, 100, &out).await;
    let unknown = || {
        metric(
            &collector,
            "auspex_collect_series_dropped_total",
            "reason=\"unknown_metric\"",
        )
    };
    let unknown0 = unknown().await;
    // The inbound side of a call (as the callee's proxy reports it) names no edge; the
    // outbound side of another one does.
    let inbound = linkerd("inbound", "web", "ledger");
    let outbound = linkerd("outbound", "frontend", "ledger");
    let t = auspex_collect::now_ms();
    post(
        &collector,
        &[
            (&inbound, &[(t - 2_000, 1.0), (t - 1_000, 4.0), (t, 9.0)]),
            (&outbound, &[(t - 1_000, 1.0), (t, 2.0)]),
        ],
    )
    .await;
    wait_for(&out, Duration::from_secs(10), "the outbound edge", |e| {
        !e.is_empty()
    })
    .await;
    // Inbound series are the mesh's counters, understood and skipped, not unknown.
    assert_eq!(unknown().await - unknown0, 0.0);
    collector.stop().await.unwrap();
    let (events, _) = read_output(&out);
    assert_eq!(
        changes(&events),
        vec![TopologyChange::UpsertEdge {
            edge: calls("shop", "frontend", "payments", "ledger")
        }]
    );
}
