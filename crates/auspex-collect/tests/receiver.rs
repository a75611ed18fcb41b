//! The remote-write receiver over real HTTP, without Prometheus: bearer token, the decompressed
//! size limit read from the snappy header, and backpressure (503 while too many buckets wait,
//! so Prometheus retries from its WAL instead of collect growing without bound).

use std::sync::OnceLock;
use std::time::Duration;

use auspex_collect::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use auspex_collect::{CollectConfig, Collector};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

fn handle() -> PrometheusHandle {
    static H: OnceLock<PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| PrometheusBuilder::new().build_recorder().handle())
        .clone()
}

fn body(pods: &[&str], ts: i64) -> Vec<u8> {
    remote_write::encode(&WriteRequest {
        timeseries: pods
            .iter()
            .map(|pod| TimeSeries {
                labels: vec![
                    Label::new("__name__", "container_memory_working_set_bytes"),
                    Label::new("container", "app"),
                    Label::new("namespace", "shop"),
                    Label::new("pod", *pod),
                ],
                samples: vec![Sample {
                    value: 1e6,
                    timestamp: ts,
                }],
            })
            .collect(),
        metadata: vec![],
    })
}

async fn post(url: &str, body: Vec<u8>, token: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_limits_and_backpressure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("samples.ndjson");
    let mut cfg = CollectConfig::default();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.http.bearer_token = Some("s3cret".into());
    cfg.http.max_body_bytes = 1024;
    cfg.http.max_decoded_bytes = 4096;
    cfg.mapping.max_open_groups = 2;
    cfg.mapping.flush_after_ms = 60_000;
    cfg.output.path = out.display().to_string();
    let collector = Collector::start(cfg, handle()).await.unwrap();
    let base = format!("http://{}", collector.local_addr());
    let url = format!("{base}/api/v1/write");
    let now = auspex_collect::now_ms();

    assert_eq!(post(&url, body(&["a"], now), None).await.status(), 401);
    assert_eq!(
        post(&url, body(&["a"], now), Some("wrong")).await.status(),
        401
    );
    assert_eq!(
        post(&url, body(&["a"], now), Some("s3cret")).await.status(),
        204
    );

    // A small body announcing 1 MiB decompressed: refused from the header.
    let mut bomb = vec![0x80, 0x80, 0x40];
    bomb.extend_from_slice(&[0; 16]);
    let r = post(&url, bomb, Some("s3cret")).await;
    assert_eq!(r.status(), 413);
    let reason: serde_json::Value = r.json().await.unwrap();
    assert!(
        reason["reason"].as_str().unwrap().contains("decompressed"),
        "{reason}"
    );
    assert_eq!(
        post(&url, vec![0; 2000], Some("s3cret")).await.status(),
        413
    );

    // Two groups wait (flush_after_ms is a minute): the next request is told to retry.
    assert_eq!(
        post(&url, body(&["b"], now), Some("s3cret")).await.status(),
        204
    );
    let r = post(&url, body(&["c"], now), Some("s3cret")).await;
    assert_eq!(r.status(), 503);
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );

    // Stopping flushes what waited: a and b, not c.
    tokio::time::timeout(Duration::from_secs(30), collector.stop())
        .await
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let names: Vec<String> = text
        .lines()
        .map(|l| {
            auspex_model::MetricSample::from_json(l.as_bytes())
                .unwrap()
                .entity
                .name
        })
        .collect();
    assert_eq!(names, ["a", "b"]);
}
