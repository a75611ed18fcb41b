//! The HTTP API on a real listening server: engines fed by the simulator through the embedded
//! pipeline (the statistical scorer, and the trained bundle under `fixtures/model`), reached
//! with reqwest.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use auspex_hybrid::HybridModel;
use auspex_ingest::simulator::SimulatorSource;
use auspex_ingest::{IngestError, NdjsonSink, Record, Source};
use auspex_model::{AnomalyKind, IncidentLabel};
use auspex_nn::NnDevice;
use auspex_serve::http::{self, HttpConfig};
use auspex_serve::model::ThresholdSource;
use auspex_serve::{Engine, EngineConfig, Shared, model, pipeline};
use auspex_sim::{FaultKind, ScheduledFault, SimConfig};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;

/// Held while a test's assertions read the process-wide gauges that `/metrics` refreshes from
/// its own engine: the tests run in parallel, each with its engine, and share one recorder.
static GAUGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server on a free loopback port, shut down when dropped.
struct Server {
    base: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(shared: Arc<Shared>, token: Option<&str>, cfg: HttpConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = http::router(
            shared,
            http::install_recorder(),
            token.map(str::to_string),
            &cfg,
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listener, router, async move {
            let _ = stopped.await;
        }));
        Server {
            base,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        json(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    /// `POST /v1/model/reload`: the bundle at `path`, or with no body the configured one.
    async fn reload(&self, path: Option<&Path>) -> (StatusCode, Value) {
        let body = path.map_or_else(Vec::new, |p| {
            serde_json::to_vec(&serde_json::json!({ "path": p })).unwrap()
        });
        self.post("/v1/model/reload", "application/json", body)
            .await
    }

    async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        json(resp).await
    }

    /// Stops the server and waits for it: graceful shutdown completes.
    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

async fn json(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    assert!(
        ct.starts_with("application/json"),
        "{status}: content-type {ct:?}, body {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}

/// Asserts an error answer: the status, the JSON shape, and a reason containing `needle`.
fn assert_error(got: &(StatusCode, Value), status: StatusCode, needle: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(got.1["error"].is_string(), "{}", got.1);
    let reason = got.1["reason"].as_str().expect("a reason");
    assert!(
        reason.contains(needle),
        "reason {reason:?} lacks {needle:?}"
    );
}

/// The repository root, found at run time (the target dir is shared between clones).
fn repo_root() -> PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    Path::new(&manifest).join("../..").canonicalize().unwrap()
}

fn fixture_model() -> PathBuf {
    repo_root().join("fixtures/model")
}

/// A small cluster for an hour, with one memory leak forced early so that something fires.
fn sim_config() -> SimConfig {
    SimConfig {
        seed: 7,
        duration_ms: 3_600_000,
        nodes: 2,
        services: 3,
        replicas: 2,
        rolling_deploys_per_hour: 0.0,
        reschedules_per_hour: 0.0,
        warmup_ms: 900_000,
        faults: Some(vec![ScheduledFault::new(FaultKind::MemoryLeak, 900_000)]),
        ..SimConfig::default()
    }
}

/// A source that remembers, for every pod it yielded a sample of, the node of the last one.
struct Recording<S> {
    inner: S,
    pods: BTreeMap<String, Option<String>>,
    /// Every sample's event time and wire JSON.
    samples: Vec<(i64, Vec<u8>)>,
}

impl<S> Recording<S> {
    /// The samples of the last `ms` of the run, as NDJSON lines.
    fn tail(&self, ms: i64) -> Vec<Vec<u8>> {
        let end = self.samples.last().map_or(0, |s| s.0);
        self.samples
            .iter()
            .filter(|s| s.0 > end - ms)
            .map(|s| s.1.clone())
            .collect()
    }
}

impl<S: Source> Source for Recording<S> {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        let batch = self.inner.next_batch(max)?;
        for r in batch.iter().flatten() {
            if let Record::Sample(s) = r {
                if s.entity.kind == auspex_model::EntityKind::Pod {
                    self.pods
                        .insert(s.entity.id().as_str().to_string(), s.entity.node.clone());
                }
                self.samples
                    .push((s.timestamp_ms, serde_json::to_vec(s).unwrap()));
            }
        }
        Ok(batch)
    }

    fn labels(&self) -> Vec<IncidentLabel> {
        self.inner.labels()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Runs the simulator through the embedded pipeline into `shared`'s engine.
fn feed(shared: &Shared) -> Recording<SimulatorSource> {
    feed_with(shared, sim_config())
}

/// Runs the simulator configured by `sim` through the embedded pipeline into `shared`'s engine.
fn feed_with(shared: &Shared, sim: SimConfig) -> Recording<SimulatorSource> {
    let mut source = Recording {
        inner: SimulatorSource::new(sim).unwrap(),
        pods: BTreeMap::new(),
        samples: Vec::new(),
    };
    let mut alerts = NdjsonSink::new("alerts", Vec::<u8>::new());
    let mut dead = NdjsonSink::new("dead letters", Vec::<u8>::new());
    let counts = pipeline::run(shared, &mut source, &mut alerts, &mut dead, None).unwrap();
    assert!(counts.samples > 1_000, "{counts:?}");
    assert!(counts.windows_scored > 0, "{counts:?}");
    source
}

fn statistical() -> Shared {
    let mut config = EngineConfig::default();
    let scorer = model::open(None, NnDevice::Cpu, &mut config, false).unwrap();
    Shared::new(Engine::new(config, scorer).unwrap())
}

/// An engine serving the bundle at `path` with its own thresholds (`model.bundle_thresholds`).
fn bundled(path: &Path) -> Shared {
    let mut config = EngineConfig::default();
    let scorer = model::open(Some(path), NnDevice::Cpu, &mut config, false).unwrap();
    let rule = ThresholdSource::Bundle {
        overrides: HashMap::new(),
    };
    Shared::new(Engine::new(config, scorer).unwrap())
        .with_loader(model::loader(NnDevice::Cpu), Some(path.to_path_buf()), rule)
        .unwrap()
}

/// A copy of the fixture bundle in `dir` whose per-kind thresholds are `thresholds` (in
/// `AnomalyKind::ALL` order), written by the bundle writer: checksums and version are its own.
fn bundle_with_thresholds(dir: &Path, thresholds: [f64; 4]) -> PathBuf {
    let mut m = HybridModel::load(&fixture_model(), NnDevice::Cpu).unwrap();
    for (km, t) in m.kinds.iter_mut().zip(thresholds) {
        km.threshold = t;
    }
    m.save(dir, serde_json::json!({ "test": "thresholds changed" }))
        .unwrap();
    dir.to_path_buf()
}

/// The thresholds a reload answered, in `AnomalyKind::ALL` order.
fn answered_thresholds(body: &Value) -> Vec<f64> {
    let t = body["thresholds"]
        .as_object()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(t.len(), 4, "{body}");
    AnomalyKind::ALL
        .iter()
        .map(|k| t[k.as_str()].as_f64().unwrap())
        .collect()
}

/// The thresholds the engine applies, in `AnomalyKind::ALL` order.
fn in_force(shared: &Shared) -> Vec<f64> {
    shared.engine().thresholds().into_values().collect()
}

/// The engine's read endpoints, the probes, `/metrics` and the input checks, on the
/// statistical scorer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistical_instance() {
    let shared = Arc::new(statistical());
    let fed = {
        let shared = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || feed(&shared))
            .await
            .unwrap()
    };
    let cfg = HttpConfig {
        body_limit_bytes: 16 * 1024,
        ..HttpConfig::default()
    };
    let server = Server::start(Arc::clone(&shared), None, cfg).await;

    // Probes.
    let (status, body) = server.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert!(body["uptime_seconds"].as_f64().unwrap() >= 0.0);
    let (status, body) = server.get("/readyz").await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &serde_json::json!({"ready": true}))
    );
    shared.readiness.draining.store(true, Ordering::Relaxed);
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
    assert_eq!(body["reason"], "shutting down");
    shared.readiness.draining.store(false, Ordering::Relaxed);
    shared
        .readiness
        .needs_assignment
        .store(true, Ordering::Relaxed);
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["reason"].as_str().unwrap().contains("assignment"));
    shared.readiness.assigned.store(true, Ordering::Relaxed);
    assert_eq!(server.get("/readyz").await.0, StatusCode::OK);

    // One entity: a pod the simulator ran, with its window's features and its scores.
    let (pod, node) = fed
        .pods
        .iter()
        .find_map(|(p, n)| n.as_ref().map(|n| (p.clone(), n.clone())))
        .expect("a pod with a node");
    let (status, view) = server.get(&format!("/v1/entities/{pod}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["id"], pod.as_str());
    assert_eq!(view["entity"]["kind"], "pod");
    let features = view["features"].as_object().unwrap();
    assert!(features.len() > 10, "{} features", features.len());
    assert!(features.values().all(|v| v.is_number()));
    let scores = view["scores"].as_array().unwrap();
    assert!(!scores.is_empty(), "{view}");
    for s in scores {
        let p = s["probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{s}");
        assert!(s["kind"].is_string());
    }
    let (status, node_view) = server.get(&format!("/v1/entities/node/{node}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node_view["entity"]["kind"], "node");
    assert_error(
        &server.get("/v1/entities/pod/shop/no-such-pod").await,
        StatusCode::NOT_FOUND,
        "pod/shop/no-such-pod",
    );
    assert_error(
        &server.get("/v1/entities/cluster/x").await,
        StatusCode::BAD_REQUEST,
        "unknown entity kind",
    );
    assert_error(
        &server.get("/v1/entities/pod/shop").await,
        StatusCode::BAD_REQUEST,
        "entity id",
    );

    // The graph around the pod lists its node, joined by a runs_on edge.
    let (status, sub) = server.get(&format!("/v1/graph?around={pod}")).await;
    assert_eq!(status, StatusCode::OK, "{sub}");
    assert_eq!(sub["center"], pod.as_str());
    assert_eq!(sub["hops"], 1);
    let node_id = format!("node/{node}");
    assert!(
        sub["vertices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == node_id.as_str() && v["hops"] == 1),
        "{sub}"
    );
    assert!(
        sub["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["from"] == pod.as_str()
                && e["to"] == node_id.as_str()
                && e["kind"] == "runs_on"),
        "{sub}"
    );
    let (status, wide) = server.get(&format!("/v1/graph?around={pod}&hops=3")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        wide["vertices"].as_array().unwrap().len() >= sub["vertices"].as_array().unwrap().len()
    );
    assert_error(
        &server.get(&format!("/v1/graph?around={pod}&hops=9")).await,
        StatusCode::BAD_REQUEST,
        "hops",
    );
    assert_error(
        &server.get("/v1/graph?hops=1").await,
        StatusCode::BAD_REQUEST,
        "around",
    );
    assert_error(
        &server.get("/v1/graph?around=node/nowhere").await,
        StatusCode::NOT_FOUND,
        "node/nowhere",
    );
    assert_error(
        &server
            .get(&format!("/v1/graph?around={pod}&hops=many"))
            .await,
        StatusCode::BAD_REQUEST,
        "hops",
    );

    // Alerts and their filters, against what the engine itself holds.
    let (active, recent) = {
        let e = shared.engine();
        (e.active_alerts(), e.recent_alerts())
    };
    let (status, all) = server.get("/v1/alerts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["active"].as_array().unwrap().len(), active.len());
    assert_eq!(all["recent"].as_array().unwrap().len(), recent.len());
    assert!(!recent.is_empty(), "the forced memory leak raised nothing");
    let kind = recent[0].kind;
    let (status, by_kind) = server
        .get(&format!("/v1/alerts?kind={}&state=firing", kind.as_str()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let expected = recent
        .iter()
        .filter(|a| a.kind == kind && a.state == auspex_model::AlertState::Firing)
        .count();
    let got = by_kind["recent"].as_array().unwrap();
    assert_eq!(got.len(), expected);
    assert!(
        got.iter()
            .all(|a| a["kind"] == kind.as_str() && a["state"] == "firing")
    );
    // Every firing alert carries its recommended action over HTTP (issue 7); the forced
    // leak's pod gets restart-before-OOM with the time to OOM read from its window.
    let listed = all["recent"].as_array().unwrap();
    let firing: Vec<&Value> = listed.iter().filter(|a| a["state"] == "firing").collect();
    assert!(!firing.is_empty());
    for a in &firing {
        let act = &a["action"];
        assert_eq!(act["version"], 1, "{a}");
        assert!(act["kind"].is_string() && act["reason"].is_string(), "{a}");
        assert!(act["target"]["name"].is_string(), "{a}");
    }
    let leak = firing
        .iter()
        .find(|a| a["kind"] == "memory_exhaustion" && a["entity"]["kind"] == "pod")
        .expect("the forced leak fires a memory alert on its pod");
    let act = &leak["action"];
    assert_eq!(act["kind"], "restart_before_oom", "{act}");
    assert_eq!(act["cause"], "memory_leak", "{act}");
    assert_eq!(act["target"]["name"], leak["entity"]["name"], "{act}");
    let tto = act["params"]["time_to_oom_seconds"].as_f64().unwrap();
    assert!(tto > 0.0 && tto < 6.0 * 3600.0, "{act}");
    let (_, one) = server
        .get(&format!("/v1/alerts/{}", leak["id"].as_str().unwrap()))
        .await;
    assert_eq!(one["action"]["kind"], "restart_before_oom", "{one}");
    let (_, limited) = server.get("/v1/alerts?limit=1").await;
    let newest = limited["recent"].as_array().unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["id"], recent.last().unwrap().id.as_str());
    assert_error(
        &server.get("/v1/alerts?kind=disk_full").await,
        StatusCode::BAD_REQUEST,
        "disk_full",
    );
    assert_error(
        &server.get("/v1/alerts?state=pending").await,
        StatusCode::BAD_REQUEST,
        "pending",
    );

    // One alert by id, as /v1/alerts lists it.
    let states = alerts_by_id(&server).await;
    assert!(
        states.contains("resolved"),
        "no resolved alert to fetch: {states:?}"
    );
    assert_error(
        &server.get("/v1/alerts/0123456789abcdef").await,
        StatusCode::NOT_FOUND,
        "0123456789abcdef",
    );

    // /metrics: what the pipeline recorded, and the gauges refreshed from the engine.
    let gauges = GAUGES.lock().await;
    let resp = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    for name in [
        auspex_serve::telemetry::RECORDS_IN,
        auspex_serve::telemetry::SAMPLES,
        auspex_serve::telemetry::TOPOLOGY_EVENTS,
        auspex_serve::telemetry::WINDOWS_SCORED,
        auspex_serve::telemetry::ALERTS,
        auspex_serve::telemetry::ENTITIES,
        auspex_serve::telemetry::GRAPH_VERTICES,
        auspex_serve::telemetry::GRAPH_EDGES,
        auspex_serve::telemetry::ALERTS_ACTIVE,
    ] {
        assert!(
            text.contains(&format!("\n{name}")),
            "{name} missing:\n{text}"
        );
    }
    assert!(text.contains("# HELP auspex_samples_total"), "{text}");
    assert!(
        text.contains("auspex_score_duration_seconds_bucket{branch=\"ensemble\""),
        "{text}"
    );
    let version = shared.engine().model_version();
    assert!(
        text.contains(&format!("auspex_model_info{{version=\"{version}\"}} 1")),
        "{text}"
    );
    let tracked = shared.engine().tracked_entities();
    assert!(
        text.contains(&format!("\nauspex_entities {tracked}\n")),
        "{text}"
    );
    drop(gauges);

    // Scoring needs a bundle; the body is checked first.
    let good = fed.tail(60_000)[..5].join(&b'\n');
    assert_error(
        &server.post("/v1/score", "application/x-ndjson", good).await,
        StatusCode::CONFLICT,
        "model bundle",
    );
    assert_error(
        &server
            .post("/v1/score", "application/x-ndjson", Vec::new())
            .await,
        StatusCode::BAD_REQUEST,
        "empty",
    );
    let garbage = server
        .post(
            "/v1/score",
            "application/x-ndjson",
            b"not json\n{\"a\":1}\n".to_vec(),
        )
        .await;
    assert_error(&garbage, StatusCode::BAD_REQUEST, "line 1: invalid JSON");
    assert_eq!(garbage.1["rejected"].as_array().unwrap().len(), 2);
    assert_eq!(garbage.1["rejected"][1]["line"], 2);
    assert_error(
        &server
            .post("/v1/score", "text/csv", b"a,b\n".to_vec())
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "text/csv",
    );
    let oversize = vec![b' '; 64 * 1024];
    assert_error(
        &server
            .post("/v1/score", "application/x-ndjson", oversize)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_limit_bytes",
    );
    assert_error(
        &server.reload(None).await,
        StatusCode::CONFLICT,
        "statistical scorer",
    );

    // Unknown routes and methods answer JSON too.
    assert_error(
        &server.get("/v2/nothing").await,
        StatusCode::NOT_FOUND,
        "/v2/nothing",
    );
    assert_error(
        &server
            .post("/v1/alerts", "application/json", Vec::new())
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "POST",
    );

    server.shutdown().await;
}

/// Ad hoc scoring and reloads on the trained bundle; a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_instance() {
    let fixture = fixture_model();
    let shared = {
        let fixture = fixture.clone();
        tokio::task::spawn_blocking(move || Arc::new(bundled(&fixture)))
            .await
            .unwrap()
    };
    let fed = {
        let shared = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || feed(&shared))
            .await
            .unwrap()
    };
    let cfg = HttpConfig {
        body_limit_bytes: 16 << 20,
        ..HttpConfig::default()
    };
    let server = Server::start(Arc::clone(&shared), None, cfg).await;
    let version = shared.engine().model_version();
    assert!(version.starts_with("hybrid-"), "{version}");
    alerts_by_id(&server).await;

    // Score: the records are parsed and the entities listed (their scores: see
    // `adhoc_scores_every_kind`).
    let pod = fed.pods.keys().next().unwrap();
    let (ndjson, array) = post_scores(&server, &fed.tail(20 * 60_000)).await;
    for body in [&ndjson, &array] {
        assert!(
            body["entities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["id"] == pod.as_str() && e["scores"].is_array()),
            "{pod} not listed: {body}"
        );
    }

    // Reloads: a missing bundle and a corrupted copy are refused; the served model stays.
    let missing = server.reload(Some(Path::new("/nonexistent/bundle"))).await;
    assert_error(
        &missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "/nonexistent/bundle",
    );
    assert_eq!(shared.engine().model_version(), version);

    let tmp = tempfile::tempdir().unwrap();
    let corrupt = tmp.path().join("model");
    copy_dir(&fixture, &corrupt);
    let victim = corrupt.join("lstm.bin");
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&victim, bytes).unwrap();
    let refused = server.reload(Some(&corrupt)).await;
    assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "SHA-256");
    assert!(refused.1["reason"].as_str().unwrap().contains("lstm.bin"));
    assert_eq!(shared.engine().model_version(), version);
    assert_error(
        &server
            .post(
                "/v1/model/reload",
                "application/json",
                br#"{"file": "x"}"#.to_vec(),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "unknown field",
    );

    // A good copy, then the configured bundle again (no body).
    let good = tmp.path().join("good");
    copy_dir(&fixture, &good);
    let (status, swapped) = server.reload(Some(&good)).await;
    assert_eq!(status, StatusCode::OK, "{swapped}");
    assert_eq!(swapped["previous"], version.as_str());
    assert_eq!(swapped["version"], version.as_str());
    let (status, again) = server.reload(None).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(shared.reloads.load(Ordering::Relaxed), 2);

    // A bundle with other thresholds puts them in force (model.bundle_thresholds); the
    // fixture's come back with it.
    let fixture_thresholds: Vec<f64> = HybridModel::load(&fixture, NnDevice::Cpu)
        .unwrap()
        .kinds
        .iter()
        .map(|k| k.threshold)
        .collect();
    assert_eq!(in_force(&shared), fixture_thresholds);
    let changed = [0.11, 0.22, 0.33, 0.44];
    let other = bundle_with_thresholds(&tmp.path().join("other"), changed);
    let (status, swapped) = server.reload(Some(&other)).await;
    assert_eq!(status, StatusCode::OK, "{swapped}");
    assert_ne!(swapped["version"], version.as_str(), "{swapped}");
    assert_eq!(answered_thresholds(&swapped), changed);
    assert_eq!(in_force(&shared), changed);
    let (status, back) = server.reload(Some(&fixture)).await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(back["version"], version.as_str());
    assert_eq!(answered_thresholds(&back), fixture_thresholds);
    assert_eq!(in_force(&shared), fixture_thresholds);

    let gauges = GAUGES.lock().await;
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!("auspex_model_info{{version=\"{version}\"}} 1")),
        "{text}"
    );
    let reloads = |outcome: &str| -> u64 {
        let prefix = format!("auspex_model_reloads_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix}in\n{text}"))
            .parse()
            .unwrap()
    };
    // The recorder is process-wide: other tests may reload too, never fewer.
    assert!(reloads("ok") >= 4);
    assert!(reloads("error") >= 2);
    // Scoring latency per branch the bundle has, for its meta-learners and the whole model;
    // none for a branch it lacks.
    let branches: Vec<String> =
        serde_json::from_slice(&std::fs::read(fixture.join("branches.json")).unwrap()).unwrap();
    assert!(branches.len() >= 2, "{branches:?}");
    let observed = |branch: &str| -> Option<u64> {
        let prefix = format!("auspex_score_duration_seconds_count{{branch=\"{branch}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.parse().unwrap())
    };
    for b in branches
        .iter()
        .map(String::as_str)
        .chain(["meta", "ensemble"])
    {
        let n = observed(b).unwrap_or_else(|| panic!("no latency of branch {b}:\n{text}"));
        assert!(n > 0, "branch {b}");
    }
    for absent in auspex_hybrid::BRANCH_NAMES {
        if !branches.iter().any(|b| b == absent) {
            assert_eq!(
                observed(absent),
                None,
                "branch {absent} is not in the bundle"
            );
        }
    }
    drop(gauges);

    // A request that outlives http.request_timeout_ms is answered 503.
    let hasty = Server::start(
        Arc::clone(&shared),
        None,
        HttpConfig {
            request_timeout_ms: 1,
            ..HttpConfig::default()
        },
    )
    .await;
    assert_error(
        &hasty.reload(None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "request_timeout_ms",
    );
    hasty.shutdown().await;
    server.shutdown().await;
}

/// Fetches every alert `/v1/alerts` lists by its id: a firing one as `active` has it, a
/// resolved one as its newest message. Returns the states seen.
async fn alerts_by_id(server: &Server) -> std::collections::BTreeSet<String> {
    let (status, all) = server.get("/v1/alerts").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let listed: Vec<&Value> = all["active"]
        .as_array()
        .unwrap()
        .iter()
        .chain(all["recent"].as_array().unwrap().iter().rev())
        .collect();
    assert!(!listed.is_empty(), "no alert to fetch");
    let mut states = std::collections::BTreeSet::new();
    for a in &listed {
        let id = a["id"].as_str().unwrap();
        let latest = listed.iter().find(|b| b["id"] == id).unwrap();
        let (status, got) = server.get(&format!("/v1/alerts/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(&got, *latest);
        states.insert(got["state"].as_str().unwrap().to_string());
    }
    eprintln!("alerts by id: {} listed, states {states:?}", listed.len());
    states
}

/// An instance serving the fixture as `serve` wires it: the bundle's thresholds or not (`rule`),
/// then the configured ones (`fire_threshold` 0.6, `configured`) win.
fn configured_instance(
    rule: ThresholdSource,
    configured: HashMap<AnomalyKind, f64>,
) -> Arc<Shared> {
    let mut config = EngineConfig::default();
    config.alerts.fire_threshold = 0.6;
    config.alerts.thresholds = configured.clone();
    let keep = rule == ThresholdSource::Config;
    let scorer = model::open(Some(&fixture_model()), NnDevice::Cpu, &mut config, keep).unwrap();
    config.alerts.thresholds.extend(configured);
    Arc::new(
        Shared::new(Engine::new(config, scorer).unwrap())
            .with_loader(model::loader(NnDevice::Cpu), Some(fixture_model()), rule)
            .unwrap(),
    )
}

/// Thresholds written in the configuration survive a reload: all of them when the bundle's are
/// off (`model.bundle_thresholds = false`), the overridden kinds when they are on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_thresholds_survive_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let changed = [0.11, 0.22, 0.33, 0.44];
    let other = bundle_with_thresholds(&tmp.path().join("other"), changed);
    let configured = HashMap::from([(AnomalyKind::MemoryExhaustion, 0.9)]);
    let memory = AnomalyKind::ALL
        .iter()
        .position(|k| *k == AnomalyKind::MemoryExhaustion)
        .unwrap();

    let kept = configured.clone();
    let shared =
        tokio::task::spawn_blocking(move || configured_instance(ThresholdSource::Config, kept))
            .await
            .unwrap();
    let mut expected = vec![0.6; 4];
    expected[memory] = 0.9;
    assert_eq!(in_force(&shared), expected);
    let server = Server::start(Arc::clone(&shared), None, HttpConfig::default()).await;
    let (status, swapped) = server.reload(Some(&other)).await;
    assert_eq!(status, StatusCode::OK, "{swapped}");
    assert_eq!(answered_thresholds(&swapped), expected);
    assert_eq!(in_force(&shared), expected);
    server.shutdown().await;

    let overrides = ThresholdSource::Bundle {
        overrides: configured.clone(),
    };
    let kept = configured.clone();
    let shared = tokio::task::spawn_blocking(move || configured_instance(overrides, kept))
        .await
        .unwrap();
    assert_eq!(in_force(&shared)[memory], 0.9);
    let server = Server::start(Arc::clone(&shared), None, HttpConfig::default()).await;
    let (status, swapped) = server.reload(Some(&other)).await;
    assert_eq!(status, StatusCode::OK, "{swapped}");
    let mut expected = changed.to_vec();
    expected[memory] = 0.9;
    assert_eq!(answered_thresholds(&swapped), expected);
    assert_eq!(in_force(&shared), expected);
    server.shutdown().await;
}

/// Posts `samples` to `/v1/score` as NDJSON (after one bad line) and as a JSON array; checks
/// the bad line is reported and the rest accepted both ways. Returns the two answers.
async fn post_scores(server: &Server, samples: &[Vec<u8>]) -> (Value, Value) {
    let mut ndjson = b"{\"metrics\": 3}\n".to_vec();
    ndjson.extend(samples.join(&b'\n'));
    let (status, lines) = server
        .post("/v1/score", "application/x-ndjson", ndjson)
        .await;
    assert_eq!(status, StatusCode::OK, "{lines}");
    let rejected = lines["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{lines}");
    assert_eq!(rejected[0]["line"], 1);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("metric sample")
    );
    assert!(!lines["entities"].as_array().unwrap().is_empty(), "{lines}");
    let items: Vec<&str> = samples
        .iter()
        .map(|s| std::str::from_utf8(s).unwrap())
        .collect();
    let (status, array) = server
        .post(
            "/v1/score",
            "application/json",
            format!("[{}]", items.join(",")).into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{array}");
    assert!(array["rejected"].as_array().unwrap().is_empty(), "{array}");
    (lines, array)
}

/// Twenty minutes of samples scored ad hoc give every pod a score per kind, from every
/// branch, the same from NDJSON as from a JSON array.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adhoc_scores_every_kind() {
    let fixture = fixture_model();
    let shared = tokio::task::spawn_blocking(move || Arc::new(bundled(&fixture)))
        .await
        .unwrap();
    let mut sim = Recording {
        inner: SimulatorSource::new(sim_config()).unwrap(),
        pods: BTreeMap::new(),
        samples: Vec::new(),
    };
    sim.drain().unwrap();
    let cfg = HttpConfig {
        body_limit_bytes: 16 << 20,
        ..HttpConfig::default()
    };
    let server = Server::start(shared, None, cfg).await;
    let (lines, array) = post_scores(&server, &sim.tail(20 * 60_000)).await;
    assert_eq!(lines["entities"], array["entities"]);
    let entities = lines["entities"].as_array().unwrap();
    for pod in sim.pods.keys() {
        let scored = entities
            .iter()
            .find(|e| e["id"] == pod.as_str())
            .unwrap_or_else(|| panic!("{pod} not listed: {lines}"));
        let scores = scored["scores"].as_array().unwrap();
        assert_eq!(scores.len(), 4, "one score per kind: {scored}");
        for s in scores {
            let p = s["probability"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p), "{s}");
            assert!(s["branch_scores"].as_object().unwrap().len() >= 2, "{s}");
        }
    }
    server.shutdown().await;
}

/// Everything but `/metrics` and the probes needs the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token() {
    let shared = Arc::new(statistical());
    // A leak late in the run, so that its alert still fires at the end.
    {
        let shared = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || {
            let sim = SimConfig {
                faults: Some(vec![ScheduledFault::new(FaultKind::MemoryLeak, 2_400_000)]),
                ..sim_config()
            };
            feed_with(&shared, sim)
        })
        .await
        .unwrap();
    }
    let firing = shared.engine().active_alerts();
    let server = Server::start(shared, Some("s3cret-token"), HttpConfig::default()).await;
    let get = |auth: Option<&'static str>, path: &str| {
        let mut req = server.client.get(server.url(path));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };

    let resp = get(None, "/v1/alerts").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_error(&json(resp).await, StatusCode::UNAUTHORIZED, "Authorization");

    let resp = get(Some("Bearer s3cret-tokem"), "/v1/alerts")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let resp = get(Some("Basic czNjcmV0LXRva2Vu"), "/v1/alerts")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = get(Some("Bearer s3cret-token-and-more"), "/v1/graph")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let (status, body) = json(
        get(Some("Bearer s3cret-token"), "/v1/alerts")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["active"].is_array() && body["recent"].is_array());

    // One alert by id: the same rule. With the token, a firing alert is served as the engine
    // holds it, and an unknown id is 404.
    let alert = firing
        .first()
        .expect("the late leak fires and is not resolved yet");
    let path = &format!("/v1/alerts/{}", alert.id);
    let resp = get(None, path).await.unwrap();
    assert_error(&json(resp).await, StatusCode::UNAUTHORIZED, "Authorization");
    let (status, got) = json(get(Some("Bearer s3cret-token"), path).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["state"], "firing");
    assert_eq!(got, serde_json::to_value(alert).unwrap());
    let resp = get(None, "/v1/alerts/0123456789abcdef").await.unwrap();
    assert_error(&json(resp).await, StatusCode::UNAUTHORIZED, "Authorization");
    let resp = get(Some("Bearer wrong"), "/v1/alerts/0123456789abcdef")
        .await
        .unwrap();
    assert_error(&json(resp).await, StatusCode::UNAUTHORIZED, "bearer token");
    let resp = get(Some("Bearer s3cret-token"), "/v1/alerts/0123456789abcdef")
        .await
        .unwrap();
    assert_error(&json(resp).await, StatusCode::NOT_FOUND, "0123456789abcdef");

    let gauges = GAUGES.lock().await;
    for open in ["/metrics", "/healthz", "/readyz"] {
        let resp = get(None, open).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{open}");
    }
    drop(gauges);
    server.shutdown().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
