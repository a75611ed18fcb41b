//! The Alertmanager sink against a real Alertmanager (`prometheus-alertmanager`, installed by
//! `bash .ci/install`), one per test on a free loopback port, without clustering.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auspex_model::{
    ACTION_VERSION, ActionKind, ActionTarget, Alert, AlertState, AnomalyKind, EntityRef,
    RecommendedAction, Severity, TargetKind, TimestampMs,
};
use auspex_serve::alertmanager::{
    Alertmanager, AlertmanagerConfig, DeliveryStats, alertname, rfc3339,
};
use serde_json::Value;

/// A running Alertmanager, killed when dropped.
struct AmServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

/// `$ALERTMANAGER`, else `prometheus-alertmanager` (Debian's name) or `alertmanager` on PATH.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ALERTMANAGER") {
        return p.into();
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    ["prometheus-alertmanager", "alertmanager"]
        .iter()
        .flat_map(|name| std::env::split_paths(&paths).map(move |d| d.join(name)))
        .find(|p| p.is_file())
        .expect("Alertmanager is not installed: run `bash .ci/install` (or set $ALERTMANAGER)")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Polls `f` every 50 ms until it gives a value, or fails the test after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl AmServer {
    fn start() -> AmServer {
        AmServer::start_on(free_port())
    }

    fn start_on(port: u16) -> AmServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("am.yml");
        std::fs::write(&config, "route:\n  receiver: r\nreceivers:\n  - name: r\n")
            .expect("am.yml written");
        let log = std::fs::File::create(dir.path().join("am.log")).expect("am.log created");
        let child = Command::new(binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("Alertmanager starts (if it is missing, run `bash .ci/install`)");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a test runtime");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let am = AmServer {
            child,
            port,
            dir,
            rt,
            http,
        };
        let ready = Instant::now();
        while am.get("/-/ready").map(|(s, _)| s) != Some(200) {
            assert!(
                ready.elapsed() < Duration::from_secs(20),
                "Alertmanager not ready on port {port} within 20 s: {}",
                am.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        am
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        self.rt.block_on(async {
            let r = self
                .http
                .get(format!("{}{path}", self.url()))
                .send()
                .await
                .ok()?;
            let status = r.status().as_u16();
            Some((status, r.text().await.ok()?))
        })
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager holds as active (not past their endsAt).
    fn alerts(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/v2/alerts").expect("Alertmanager answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<Value>>(&body).expect("a JSON array of alerts")
    }

    fn find(&self, alert_id: &str) -> Option<Value> {
        self.alerts()
            .into_iter()
            .find(|a| a["labels"]["alert_id"] == alert_id)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("am.log")).unwrap_or_default()
    }
}

impl Drop for AmServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A firing alert stamped now (Alertmanager ignores alerts already past their endsAt).
fn firing(entity: EntityRef, kind: AnomalyKind) -> Alert {
    let now = now_ms();
    let starts_at_ms = now - 60_000;
    Alert {
        id: Alert::stable_id(&entity, kind, starts_at_ms),
        timestamp_ms: now,
        starts_at_ms,
        entity,
        kind,
        state: AlertState::Firing,
        probability: 0.91,
        severity: Severity::Critical,
        time_to_incident_seconds: Some(720.0),
        model_version: "test-1".into(),
        branch_scores: [("gbdt".to_string(), 0.82), ("lstm".to_string(), 0.9)].into(),
        branch_weights: Default::default(),
        top_features: vec![],
        neighbours: vec![],
        action: None,
    }
}

fn config(url: String) -> AlertmanagerConfig {
    AlertmanagerConfig {
        url,
        ..AlertmanagerConfig::default()
    }
}

#[test]
fn a_firing_alert_arrives_and_its_resolution_closes_it() {
    let am = AmServer::start();
    let sink = Alertmanager::start(AlertmanagerConfig {
        generator_url: "http://auspex:8080".into(),
        labels: [("cluster".to_string(), "test".to_string())].into(),
        ..config(am.url())
    })
    .expect("sink starts");
    let mut alert = firing(
        EntityRef::pod("shop", "cart-7"),
        AnomalyKind::MemoryExhaustion,
    );
    alert.action = Some(RecommendedAction {
        version: ACTION_VERSION,
        kind: ActionKind::RestartBeforeOom,
        cause: "memory_leak".into(),
        target: ActionTarget {
            kind: TargetKind::Pod,
            namespace: Some("shop".into()),
            name: "cart-7".into(),
        },
        params: [
            ("time_to_oom_seconds".to_string(), serde_json::json!(720.0)),
            (
                "alternative_memory_limit_bytes".to_string(),
                serde_json::json!(805306368),
            ),
        ]
        .into(),
        reason: "the working set grows 1.0 MiB/min towards its 512 MiB limit".into(),
        evidence: vec![],
        runbook: Some("https://runbooks.example/auspex/restart_before_oom".into()),
    });
    assert!(sink.offer(&alert));

    let got = wait_for(
        "the firing alert in Alertmanager",
        Duration::from_secs(10),
        || am.find(&alert.id),
    );
    let labels = &got["labels"];
    assert_eq!(labels["alertname"], "AuspexMemoryExhaustion");
    assert_eq!(labels["alertname"], alertname(alert.kind).as_str());
    assert_eq!(labels["kind"], "memory_exhaustion");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["entity"], "pod/shop/cart-7");
    assert_eq!(labels["entity_kind"], "pod");
    assert_eq!(labels["namespace"], "shop");
    assert_eq!(labels["pod"], "cart-7");
    assert_eq!(labels["cluster"], "test");
    let annotations = &got["annotations"];
    assert_eq!(
        annotations["summary"],
        "memory exhaustion predicted on pod shop/cart-7 in ~12 min (p=0.91)"
    );
    assert_eq!(annotations["probability"], "0.910");
    assert_eq!(annotations["time_to_incident_seconds"], "720");
    assert_eq!(annotations["branches"], "gbdt=0.82 lstm=0.90");
    assert_eq!(annotations["model_version"], "test-1");
    // The recommended action (issue 7), as Alertmanager stores and serves it.
    assert_eq!(
        annotations["action"],
        "restart_before_oom pod shop/cart-7 alternative_memory_limit_bytes=805306368 \
         time_to_oom_seconds=720.0"
    );
    assert_eq!(
        annotations["action_reason"],
        "the working set grows 1.0 MiB/min towards its 512 MiB limit"
    );
    assert_eq!(
        annotations["runbook"],
        "https://runbooks.example/auspex/restart_before_oom"
    );
    assert_eq!(annotations["runbook_url"], annotations["runbook"]);
    assert_eq!(got["status"]["state"], "active", "{got}");
    assert_eq!(got["startsAt"], rfc3339(alert.starts_at_ms).as_str());
    assert_eq!(
        got["generatorURL"],
        format!("http://auspex:8080/v1/alerts/{}", alert.id).as_str()
    );

    // The tracker refreshes an episode's evidence while it fires, so its resolution may carry
    // another severity: it must still close the alert that fired.
    let mut resolved = alert.clone();
    resolved.state = AlertState::Resolved;
    resolved.timestamp_ms = now_ms();
    resolved.probability = 0.1;
    resolved.severity = Severity::Warning;
    assert!(sink.offer(&resolved));
    wait_for("the alert resolved", Duration::from_secs(10), || {
        am.find(&alert.id).is_none().then_some(())
    });
    assert!(am.alerts().is_empty(), "{:?}", am.alerts());

    let stats = sink.shutdown(Duration::from_secs(5));
    assert_eq!(
        stats,
        DeliveryStats {
            sent: 2,
            ..DeliveryStats::default()
        }
    );
}

#[test]
fn delivery_is_retried_until_alertmanager_comes_up() {
    let port = free_port();
    let sink = Alertmanager::start(AlertmanagerConfig {
        backoff_ms: 50,
        max_retries: 20,
        ..config(format!("http://127.0.0.1:{port}"))
    })
    .expect("sink starts");
    let alert = firing(EntityRef::node("n1"), AnomalyKind::CpuExhaustion);
    assert!(sink.offer(&alert));
    // Nothing listens yet: the first attempts fail and are retried.
    wait_for("two retries", Duration::from_secs(5), || {
        (sink.stats().retries >= 2).then_some(())
    });
    assert_eq!(sink.stats().sent, 0);

    let am = AmServer::start_on(port);
    let got = wait_for("the retried alert", Duration::from_secs(20), || {
        am.find(&alert.id)
    });
    assert_eq!(got["labels"]["node"], "n1");
    assert_eq!(got["labels"]["alertname"], "AuspexCpuExhaustion");
    let stats = sink.shutdown(Duration::from_secs(5));
    assert_eq!(
        (stats.sent, stats.dropped, stats.failed),
        (1, 0, 0),
        "{stats:?}"
    );
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    // Nothing listens here, and the first retry waits 10 s: the worker is stuck on its batch.
    let sink = Alertmanager::start(AlertmanagerConfig {
        queue_capacity: 2,
        batch_max: 1,
        backoff_ms: 10_000,
        ..config(format!("http://127.0.0.1:{}", free_port()))
    })
    .expect("sink starts");
    let started = Instant::now();
    let accepted = (0..10)
        .map(|i| {
            firing(
                EntityRef::pod("shop", &format!("p{i}")),
                AnomalyKind::PodFailure,
            )
        })
        .filter(|a| sink.offer(a))
        .count() as u64;
    let offering = started.elapsed();
    assert!(
        offering < Duration::from_millis(500),
        "offer blocked: {offering:?}"
    );
    // The queue holds 2, plus at most one batch of 1 taken by the worker.
    assert!((2..=3).contains(&accepted), "accepted {accepted}");
    assert_eq!(sink.stats().dropped, 10 - accepted);

    let stopping = Instant::now();
    let stats = sink.shutdown(Duration::from_millis(300));
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "shutdown overran its deadline: {:?}",
        stopping.elapsed()
    );
    // Everything is accounted for: nothing sent, the batch in flight failed, the rest dropped.
    assert_eq!(stats.sent, 0);
    assert_eq!(stats.dropped + stats.failed, 10, "{stats:?}");
}

#[test]
fn a_refusal_is_counted_and_not_retried() {
    let am = AmServer::start();
    // A path Alertmanager does not serve: 404.
    let sink = Alertmanager::start(config(format!("{}/nowhere", am.url()))).expect("sink starts");
    assert!(sink.offer(&firing(
        EntityRef::service("shop", "cart"),
        AnomalyKind::NetworkIssue
    )));
    wait_for("the refusal", Duration::from_secs(10), || {
        (sink.stats().failed == 1).then_some(())
    });
    let stats = sink.shutdown(Duration::from_secs(1));
    assert_eq!(
        stats,
        DeliveryStats {
            failed: 1,
            ..DeliveryStats::default()
        }
    );
    assert!(am.alerts().is_empty());
}

#[test]
fn firing_alerts_are_renewed_and_expire_once_auspex_stops() {
    let am = AmServer::start();
    let sink = Alertmanager::start(AlertmanagerConfig {
        resolve_timeout_s: 3,
        resend_interval_s: 1,
        ..config(am.url())
    })
    .expect("sink starts");
    let alert = firing(
        EntityRef::pod("shop", "db-0"),
        AnomalyKind::MemoryExhaustion,
    );
    assert!(sink.offer(&alert));
    let first = wait_for("the firing alert", Duration::from_secs(10), || {
        am.find(&alert.id)
    });
    // Past the first lease: only renewals keep it active.
    std::thread::sleep(Duration::from_secs(4));
    let renewed = am
        .find(&alert.id)
        .expect("still active after its first lease");
    let ends = |a: &Value| a["endsAt"].as_str().expect("endsAt").to_string();
    // Same format (RFC 3339, UTC, milliseconds): the strings order as the instants do.
    assert!(ends(&renewed) > ends(&first), "{first} then {renewed}");
    assert!(sink.stats().sent >= 3, "{:?}", sink.stats());

    // Stopped without a resolution: the lease runs out and Alertmanager resolves it.
    sink.shutdown(Duration::from_secs(1));
    wait_for(
        "the unrenewed alert to expire",
        Duration::from_secs(6),
        || am.find(&alert.id).is_none().then_some(()),
    );
}

#[test]
fn config_errors_name_the_key() {
    let parse = |toml: &str| toml::from_str::<AlertmanagerConfig>(toml);
    let ok = parse("url = \"http://alertmanager:9093\"\nlabels = { cluster = \"prod\" }")
        .expect("a valid config");
    assert_eq!(ok.queue_capacity, 1024);
    assert_eq!(ok.validate(), Ok(()));

    let unknown = parse("url = \"http://am:9093\"\nqueue_capacty = 3").unwrap_err();
    assert!(unknown.to_string().contains("queue_capacty"), "{unknown}");

    let cases = [
        ("", "alertmanager.url"),
        ("url = \"alertmanager:9093\"", "alertmanager.url"),
        ("url = \"ftp://am\"", "alertmanager.url"),
        (
            "url = \"http://am\"\nqueue_capacity = 0",
            "alertmanager.queue_capacity",
        ),
        (
            "url = \"http://am\"\nbatch_max = 0",
            "alertmanager.batch_max",
        ),
        (
            "url = \"http://am\"\ntimeout_ms = 0",
            "alertmanager.timeout_ms",
        ),
        (
            "url = \"http://am\"\nbackoff_ms = 0",
            "alertmanager.backoff_ms",
        ),
        (
            "url = \"http://am\"\nresolve_timeout_s = 30",
            "alertmanager.resolve_timeout_s",
        ),
        (
            "url = \"http://am\"\ngenerator_url = \"x\"",
            "alertmanager.generator_url",
        ),
        (
            "url = \"http://am\"\nlabels = { kind = \"x\" }",
            "alertmanager.labels.kind",
        ),
        (
            "url = \"http://am\"\nbearer_token = \"\"",
            "alertmanager.bearer_token",
        ),
    ];
    for (toml, key) in cases {
        let cfg = parse(toml).expect("parses");
        let err = cfg.validate().unwrap_err();
        assert!(err.starts_with(key), "{toml:?}: {err}");
        // `start` refuses it with the same message.
        let refused = Alertmanager::start(cfg).err().expect("refused");
        assert!(refused.to_string().starts_with(key), "{refused}");
    }
}
