//! `collect` against real parts: a tiny HTTP server serves the recorded cAdvisor,
//! kube-state-metrics and node-exporter exposition in `fixtures/` (counters growing at known
//! rates), a real `prometheus` process scrapes it every second and
//!
//! - remote-writes to a live collector that publishes into a real tansu broker; the test reads
//!   the samples back from the topic and checks entities, node keys and values;
//! - or is polled by a collector in scrape mode writing NDJSON, with the same checks;
//! - or, with `calls.mesh = "istio"`, is polled for an Envoy sidecar's `istio_requests_total`
//!   and the `calls` edge comes out as a topology event.
//!
//! The remote-write receiver's HTTP answers (204, 400, 413, 415, 401) are checked on the same
//! live server.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auspex_collect::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use auspex_collect::{CollectConfig, Collector};
use auspex_kafka::KafkaSettings;
use auspex_kafka::testing::Broker;
use auspex_model::{Edge, EdgeKind, EntityRef, MetricSample, TopologyChange, TopologyEvent};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

mod common;
use common::handle;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `BASE+RATE/s` → BASE + RATE × elapsed seconds; anything else unchanged.
fn render(text: &str, elapsed_s: f64) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let rendered = (|| {
            if line.starts_with('#') {
                return None;
            }
            let (series, value) = line.rsplit_once(' ')?;
            let (base, rate) = value.rsplit_once('+')?;
            let rate = rate.strip_suffix("/s")?.parse::<f64>().ok()?;
            let base = base.parse::<f64>().ok()?;
            Some(format!("{series} {}", base + rate * elapsed_s))
        })();
        out.push_str(rendered.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Serves the fixtures: `/cadvisor/NODE`, `/ksm`, `/node-exporter/NODE`, `/istio-proxy/frontend`.
fn exposition_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fixture server");
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = serve_one(stream, started);
        }
    });
    port
}

fn serve_one(mut stream: TcpStream, started: Instant) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let file = match path {
        "/cadvisor/worker-1" => Some("cadvisor-worker-1.prom"),
        "/cadvisor/worker-2" => Some("cadvisor-worker-2.prom"),
        "/ksm" => Some("kube-state-metrics.prom"),
        "/node-exporter/worker-1" => Some("node-exporter-worker-1.prom"),
        "/node-exporter/worker-2" => Some("node-exporter-worker-2.prom"),
        "/istio-proxy/frontend" => Some("istio-proxy-frontend.prom"),
        _ => None,
    };
    let (status, body) = match file {
        Some(f) => {
            let text = std::fs::read_to_string(fixtures().join(f))?;
            ("200 OK", render(&text, started.elapsed().as_secs_f64()))
        }
        None => ("404 Not Found", String::new()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A `prometheus` process, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

fn prometheus_binary() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("prometheus"))
                .find(|p| p.is_file())
        })
        .expect("prometheus is not installed: run `bash .ci/install` (it installs it with apt)")
}

async fn start_prometheus(exposition: u16, remote_write: Option<&str>) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let target = format!("'127.0.0.1:{exposition}'");
    let per_node = |path: &str| {
        format!(
            "      - {{ targets: [{target}], labels: {{ __metrics_path__: '/{path}/worker-1', node: worker-1 }} }}\n\
             \x20     - {{ targets: [{target}], labels: {{ __metrics_path__: '/{path}/worker-2', node: worker-2 }} }}\n"
        )
    };
    let mut config = format!(
        "global: {{ scrape_interval: 1s, scrape_timeout: 1s }}\n\
         scrape_configs:\n\
         \x20 - job_name: kubelet-cadvisor\n\
         \x20   static_configs:\n{}\
         \x20 - job_name: kube-state-metrics\n\
         \x20   metrics_path: /ksm\n\
         \x20   static_configs: [ {{ targets: [{target}] }} ]\n\
         \x20 - job_name: istio-proxy\n\
         \x20   metrics_path: /istio-proxy/frontend\n\
         \x20   static_configs: [ {{ targets: [{target}] }} ]\n\
         \x20 - job_name: node-exporter\n\
         \x20   static_configs:\n{}",
        per_node("cadvisor"),
        per_node("node-exporter"),
    );
    if let Some(url) = remote_write {
        config.push_str(&format!(
            "remote_write:\n  - url: '{url}'\n    queue_config: {{ batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s }}\n"
        ));
    }
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, &config).unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new(prometheus_binary())
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus starts");
    let p = Prometheus {
        child,
        port,
        _dir: dir,
    };
    let ready = format!("http://127.0.0.1:{port}/-/ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(&ready).await
            && r.status().is_success()
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready in 30 s; config:\n{config}\nlog:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn config() -> CollectConfig {
    let mut c = CollectConfig::default();
    c.http.listen = "127.0.0.1:0".into();
    c.mapping.resolution_ms = 5_000;
    c.mapping.flush_after_ms = 1_500;
    c
}

const CART: &str = "pod/shop/cart-7d9f8b6c5-x2x4q";
const DB: &str = "pod/shop/db-0";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Samples of each entity by id, in arrival order.
type ById = BTreeMap<String, Vec<(Option<String>, MetricSample)>>;

fn complete(by_id: &ById) -> bool {
    [CART, DB, "node/worker-1", "node/worker-2"]
        .iter()
        .all(|id| {
            by_id.get(*id).is_some_and(|v| {
                v.iter()
                    .filter(|(_, s)| s.metrics.contains_key("cpu_usage_cores"))
                    .count()
                    >= 2
            })
        })
}

fn close(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance * want.abs().max(1e-9),
        "{what}: got {got}, want {want} ± {:.0} %",
        tolerance * 100.0
    );
}

/// What the fixture's rates and values imply (fixtures/README.md).
fn check(by_id: &ById, keyed: bool) {
    let values = |id: &str, metric: &str| -> Vec<f64> {
        by_id[id]
            .iter()
            .filter_map(|(_, s)| s.metrics.get(metric).copied())
            .collect()
    };
    close(
        median(values(CART, "cpu_usage_cores")),
        0.30,
        0.1,
        "cart cpu",
    );
    close(
        median(values(CART, "memory_working_set_bytes")),
        262_144_000.0,
        1e-9,
        "cart memory",
    );
    close(median(values(CART, "ready")), 1.0, 0.0, "cart ready");
    close(
        median(values(CART, "network_rx_bytes_total")),
        1.2345e8,
        0.01,
        "cart rx bytes",
    );
    close(median(values(DB, "cpu_usage_cores")), 0.8, 0.1, "db cpu");
    close(
        median(values(DB, "cpu_throttled_ratio")),
        0.2,
        0.1,
        "db throttled",
    );
    close(
        median(values(DB, "restarts_total")),
        3.0,
        0.0,
        "db restarts",
    );
    assert_eq!(median(values(DB, "ready")), 0.0);
    close(
        median(values(DB, "cpu_limit_cores")),
        1.0,
        0.0,
        "db cpu limit",
    );
    close(
        median(values(DB, "memory_limit_bytes")),
        1073741824.0,
        0.0,
        "db memory limit",
    );
    close(median(values(DB, "oom_kills_total")), 2.0, 0.0, "db ooms");
    let n1 = "node/worker-1";
    close(
        median(values(n1, "cpu_usage_cores")),
        0.6,
        0.1,
        "worker-1 cpu",
    );
    close(
        median(values(n1, "node_cpu_utilization_ratio")),
        0.3,
        0.1,
        "worker-1 cpu utilisation",
    );
    close(
        median(values(n1, "memory_working_set_bytes")),
        2147483648.0,
        1e-9,
        "worker-1 memory",
    );
    close(
        median(values(n1, "node_memory_utilization_ratio")),
        0.25,
        1e-9,
        "worker-1 memory utilisation",
    );
    close(median(values(n1, "ready")), 1.0, 0.0, "worker-1 ready");
    close(
        median(values("node/worker-2", "cpu_usage_cores")),
        1.3,
        0.1,
        "worker-2 cpu",
    );
    // Every sample of the cart pod names its node (from kube_pod_info), and the node is the
    // Kafka key.
    for (id, node) in [(CART, "worker-1"), (DB, "worker-2"), (n1, "worker-1")] {
        for (key, s) in &by_id[id] {
            if s.entity.kind == auspex_model::EntityKind::Pod {
                assert_eq!(s.entity.node.as_deref(), Some(node), "{s:?}");
            }
            if keyed {
                assert_eq!(key.as_deref(), Some(node), "{s:?}");
            }
            s.validate().unwrap();
        }
    }
    let workload = by_id[CART][0].1.entity.workload.clone();
    assert_eq!(workload.as_deref(), Some("cart"));
    // The machine's own cgroup (no pod) and unknown series became no entity.
    assert!(
        by_id
            .keys()
            .all(|id| id.starts_with("pod/shop/") || id.starts_with("node/worker-")),
        "{:?}",
        by_id.keys().collect::<Vec<_>>()
    );
}

fn read_topic(broker: &Broker, topic: &str, timeout: Duration) -> ById {
    let c: BaseConsumer = KafkaSettings::new(broker.addr.clone())
        .client_config(&[
            ("group.id", "collect-e2e-reader"),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
        ])
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let started = Instant::now();
    let mut by_id = ById::new();
    while started.elapsed() < timeout && !complete(&by_id) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            let sample = MetricSample::from_json(m.payload().unwrap_or_default())
                .expect("collect publishes valid MetricSample JSON");
            by_id
                .entry(sample.entity.id().to_string())
                .or_default()
                .push((key, sample));
        }
    }
    by_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_remote_writes_through_collect_into_kafka() {
    let broker = Broker::start();
    broker.create_topic("samples", 3);
    let exposition = exposition_server();
    let mut cfg = config();
    cfg.kafka.brokers = broker.addr.clone();
    let collector = Collector::start(cfg, handle()).await.unwrap();
    let url = format!("http://{}/api/v1/write", collector.local_addr());
    let prometheus = start_prometheus(exposition, Some(&url)).await;

    let by_id =
        tokio::task::block_in_place(|| read_topic(&broker, "samples", Duration::from_secs(90)));
    assert!(
        complete(&by_id),
        "not every entity arrived twice: {:?}\nprometheus log:\n{}",
        by_id.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>(),
        prometheus.log()
    );
    check(&by_id, true);

    // Prometheus's own series (up, scrape_*) and the exporters' unmapped ones were counted.
    let metrics = reqwest::get(format!("http://{}/metrics", collector.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped = |reason: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("auspex_collect_series_dropped_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(dropped("unknown_metric") > 0.0, "{metrics}");
    assert!(dropped("missing_labels") > 0.0, "{metrics}");
    assert!(
        metrics.contains("auspex_collect_write_requests_total{code=\"204\"}"),
        "{metrics}"
    );
    for probe in ["healthz", "readyz"] {
        let r = reqwest::get(format!("http://{}/{probe}", collector.local_addr()))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{probe}");
    }

    // The receiver's refusals, on the same live server.
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>, ct: &'static str, enc: &'static str| {
        client
            .post(&url)
            .header("Content-Type", ct)
            .header("Content-Encoding", enc)
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
    };
    let good = remote_write::encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label::new("__name__", "up")],
            samples: vec![Sample {
                value: 1.0,
                timestamp: auspex_collect::now_ms(),
            }],
        }],
        metadata: vec![],
    });
    let pb = "application/x-protobuf";
    assert_eq!(
        post(good.clone(), pb, "snappy").await.unwrap().status(),
        204
    );
    assert_eq!(
        post(good.clone(), "application/json", "snappy")
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(post(good.clone(), pb, "gzip").await.unwrap().status(), 415);
    let v2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
    assert_eq!(
        post(good.clone(), v2, "snappy").await.unwrap().status(),
        415
    );
    let v1 = "application/x-protobuf;proto=prometheus.WriteRequest";
    assert_eq!(
        post(good.clone(), v1, "snappy").await.unwrap().status(),
        204
    );
    let r = post(b"\xff\xff\xff\xff garbage".to_vec(), pb, "snappy")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["reason"].as_str().unwrap().contains("snappy"),
        "{body}"
    );
    let not_protobuf = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff\xff\x0f")
        .unwrap();
    let r = post(not_protobuf, pb, "snappy").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["reason"].as_str().unwrap().contains("WriteRequest"),
        "{body}"
    );
    let huge = vec![0u8; CollectConfig::default().http.max_body_bytes + 10];
    assert_eq!(post(huge, pb, "snappy").await.unwrap().status(), 413);

    collector.stop().await.unwrap();
    drop(prometheus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrape_mode_polls_prometheus_into_ndjson() {
    let exposition = exposition_server();
    let prometheus = start_prometheus(exposition, None).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("samples.ndjson");
    let mut cfg = config();
    cfg.output.path = out.display().to_string();
    cfg.scrape.url = Some(format!("http://127.0.0.1:{}", prometheus.port));
    cfg.scrape.interval_ms = 1_000;
    cfg.scrape.timeout_ms = 1_000;
    let collector = Collector::start(cfg, handle()).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut by_id = ById::new();
    while Instant::now() < deadline && !complete(&by_id) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&out) {
            f.read_to_string(&mut text).unwrap();
        }
        by_id.clear();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let s = MetricSample::from_json(line.as_bytes()).expect("valid NDJSON samples");
            by_id
                .entry(s.entity.id().to_string())
                .or_default()
                .push((None, s));
        }
    }
    collector.stop().await.unwrap();
    assert!(
        complete(&by_id),
        "not every entity arrived twice: {:?}\nprometheus log:\n{}",
        by_id.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>(),
        prometheus.log()
    );
    check(&by_id, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrape_mode_polls_mesh_counters_into_call_edges() {
    let exposition = exposition_server();
    let prometheus = start_prometheus(exposition, None).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let mut cfg = config();
    cfg.output.path = out.display().to_string();
    cfg.scrape.url = Some(format!("http://127.0.0.1:{}", prometheus.port));
    cfg.scrape.interval_ms = 1_000;
    cfg.scrape.timeout_ms = 1_000;
    cfg.calls.mesh = auspex_watch::Mesh::Istio;
    let collector = Collector::start(cfg, handle()).await.unwrap();

    let events = || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("\"op\""))
            .map(|l| TopologyEvent::from_json(l.as_bytes()).expect("a topology event"))
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && events().is_empty() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A few more polls, whose look-backs overlap: no other edge, no repeat.
    tokio::time::sleep(Duration::from_secs(4)).await;
    collector.stop().await.unwrap();
    let edge = Edge {
        kind: EdgeKind::Calls,
        from: EntityRef::service("shop", "frontend"),
        to: EntityRef::service("shop", "cart"),
    };
    let changes: Vec<TopologyChange> = events().into_iter().map(|e| e.change).collect();
    assert_eq!(
        changes,
        vec![TopologyChange::UpsertEdge { edge }],
        "prometheus log:\n{}",
        prometheus.log()
    );
}
