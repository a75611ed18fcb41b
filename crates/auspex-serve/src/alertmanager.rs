//! The Alertmanager sink: on-call routing of auspex alerts to any Alertmanager-compatible
//! endpoint (`POST {url}/api/v2/alerts`).
//!
//! Design, and why:
//! - **Never stalls the pipeline.** [`Alertmanager::offer`] puts the alert on a bounded queue and
//!   returns at once; when the queue is full the alert is dropped and counted
//!   (`auspex_alertmanager_dropped_total`). One dedicated thread, with its own single-threaded
//!   tokio runtime, drains the queue, so the sink does not depend on the caller's runtime.
//! - **Batches and retries.** The worker posts up to `batch_max` queued alerts at once, with a
//!   timeout on every request. Connection errors, timeouts, 5xx and 429 are retried with
//!   exponential backoff (from `backoff_ms`, doubling, capped at 30 s) up to `max_retries`;
//!   any other 4xx is a refusal: not retried, its body logged and the batch counted in
//!   `auspex_alertmanager_failed_total`.
//! - **`endsAt` is a lease.** Alertmanager resolves an alert when its `endsAt` passes, measured
//!   against its own wall clock. A firing alert is sent with `endsAt` = send time +
//!   `resolve_timeout_s`, and the worker re-sends every firing alert every `resend_interval_s`
//!   (as Prometheus does) because the alert tracker emits `Firing` once per episode. An alert
//!   auspex stops renewing (auspex stopped, or the resolution was dropped) therefore resolves
//!   by itself after `resolve_timeout_s` instead of paging forever. A resolution is sent with
//!   `endsAt` = its event time (never later than now), which Alertmanager reads as resolved.
//!   Renewals get one attempt per round (the next round is the retry), so that queued alerts do
//!   not wait behind them during an outage. The set of firing alerts is bounded by the episodes
//!   the caller has fired and not resolved.
//! - **The label set is the alert's identity** (Alertmanager fingerprints labels), so labels
//!   hold only what names the episode and routes it; the evidence (probability, branch scores,
//!   neighbours) goes in annotations. Severity is a label because routing needs it, but it can
//!   change during an episode, so a resolution is sent with the severity its episode last fired
//!   with; otherwise it would name a different alert and leave the firing one active.
//!
//! Metrics (mirrored by [`Alertmanager::stats`] for callers without a recorder), in alerts:
//! `auspex_alertmanager_sent_total`, `auspex_alertmanager_dropped_total{reason}` (`queue_full`,
//! `shutdown`, `closed`), `auspex_alertmanager_failed_total{reason}` (`refused`, `unreachable`,
//! `shutdown`), and `auspex_alertmanager_retries_total` (retried POSTs).
//!
//! Labels: `alertname` = `Auspex` + the kind in CamelCase (`AuspexMemoryExhaustion`), `kind`
//! (`memory_exhaustion`), `severity`, `entity` (the entity id, `pod/shop/cart-7`),
//! `entity_kind`, `namespace`, one of `pod` / `node` / `service` / `container` (a container also
//! gets `pod`), `alert_id`, plus the configured static labels.
//!
//! Annotations: `summary`, `probability`, `time_to_incident_seconds`, `branches`,
//! `neighbours`, `top_features`, `model_version`, and the recommended action
//! ([`crate::remediation`]): `action` (kind, target and parameters on one line),
//! `action_reason`, `runbook` and `runbook_url` (the same URL, under the name Alertmanager's
//! and Grafana's templates read).
//!
//! Not here: deciding when an alert fires or resolves (the alert tracker), or deduplication and
//! notification policy (Alertmanager's routing tree).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auspex_model::{Alert, AlertState, EntityKind, TimestampMs};
use metrics::counter;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, warn};

/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Neighbours listed in the `neighbours` annotation before "+N more".
const MAX_NEIGHBOURS: usize = 10;
/// Features named in the `top_features` annotation.
const MAX_FEATURES: usize = 5;
/// Characters of a refusal's body kept in the log.
const MAX_LOGGED_BODY: usize = 1024;
/// Label names auspex sets itself; static labels may not reuse them.
pub const RESERVED_LABELS: [&str; 11] = [
    "alertname",
    "kind",
    "severity",
    "entity",
    "entity_kind",
    "namespace",
    "pod",
    "node",
    "service",
    "container",
    "alert_id",
];

/// Where and how to send alerts to Alertmanager (`[alertmanager]` in the serve config).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL of Alertmanager, e.g. `http://alertmanager:9093`; alerts are posted to
    /// `{url}/api/v2/alerts`.
    pub url: String,
    /// Alerts waiting to be sent; when full, new alerts are dropped and counted rather than
    /// stall the pipeline.
    pub queue_capacity: usize,
    /// Retries of a POST that failed for a transient reason (connection error, timeout, 5xx,
    /// 429), after the first attempt.
    pub max_retries: u32,
    /// Timeout of one POST, in milliseconds.
    pub timeout_ms: u64,
    /// Delay before the first retry, in milliseconds; it doubles on each retry, up to 30 s.
    pub backoff_ms: u64,
    /// Most alerts in one POST.
    pub batch_max: usize,
    /// Base URL of auspex's HTTP API for each alert's `generatorURL`
    /// (`{generator_url}/v1/alerts/{alert id}`, served by `GET /v1/alerts/{id}`); empty: no
    /// link.
    pub generator_url: String,
    /// Lifetime of a firing alert in Alertmanager, in seconds: it is sent with `endsAt` = now +
    /// this and renewed while it fires, so an alert auspex stops renewing resolves by itself.
    pub resolve_timeout_s: u64,
    /// How often firing alerts are re-sent to renew their `endsAt`, in seconds; below
    /// `resolve_timeout_s`.
    pub resend_interval_s: u64,
    /// Static labels added to every alert (e.g. `cluster = "prod"`); they may not reuse the
    /// names of auspex's own labels.
    pub labels: BTreeMap<String, String>,
    /// Token sent as `Authorization: Bearer <token>` (e.g. to an authenticating proxy); absent:
    /// no authorization header.
    pub bearer_token: Option<String>,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            url: String::new(),
            queue_capacity: 1024,
            max_retries: 5,
            timeout_ms: 5000,
            backoff_ms: 200,
            batch_max: 64,
            generator_url: String::new(),
            resolve_timeout_s: 300,
            resend_interval_s: 60,
            labels: BTreeMap::new(),
            bearer_token: None,
        }
    }
}

// By hand, so that the bearer token never reaches a log.
impl fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertmanagerConfig")
            .field("url", &self.url)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_retries", &self.max_retries)
            .field("timeout_ms", &self.timeout_ms)
            .field("backoff_ms", &self.backoff_ms)
            .field("batch_max", &self.batch_max)
            .field("generator_url", &self.generator_url)
            .field("resolve_timeout_s", &self.resolve_timeout_s)
            .field("resend_interval_s", &self.resend_interval_s)
            .field("labels", &self.labels)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl AlertmanagerConfig {
    /// Checks every field; the error names the key (`alertmanager.<field>`) and why.
    pub fn validate(&self) -> Result<(), String> {
        check_http_url("alertmanager.url", &self.url)?;
        if !self.generator_url.is_empty() {
            check_http_url("alertmanager.generator_url", &self.generator_url)?;
        }
        let positive = |key: &str, v: u64| {
            if v == 0 {
                Err(format!("alertmanager.{key} = 0: must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("queue_capacity", self.queue_capacity as u64)?;
        positive("batch_max", self.batch_max as u64)?;
        positive("timeout_ms", self.timeout_ms)?;
        positive("backoff_ms", self.backoff_ms)?;
        positive("resend_interval_s", self.resend_interval_s)?;
        if self.resolve_timeout_s <= self.resend_interval_s {
            return Err(format!(
                "alertmanager.resolve_timeout_s = {}: must exceed resend_interval_s ({}), or \
                 firing alerts expire between renewals",
                self.resolve_timeout_s, self.resend_interval_s
            ));
        }
        for (name, value) in &self.labels {
            let key = format!("alertmanager.labels.{name}");
            if RESERVED_LABELS.contains(&name.as_str()) {
                return Err(format!("{key}: auspex sets this label itself"));
            }
            let mut chars = name.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with("__");
            if !valid {
                return Err(format!(
                    "{key}: not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                ));
            }
            if value.is_empty() {
                return Err(format!(
                    "{key}: empty value (Alertmanager drops empty labels)"
                ));
            }
        }
        if let Some(token) = &self.bearer_token
            && (token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(
                "alertmanager.bearer_token: must be non-empty visible ASCII (no spaces)".into(),
            );
        }
        Ok(())
    }

    /// `{url}/api/v2/alerts`.
    pub fn endpoint(&self) -> String {
        format!("{}/api/v2/alerts", self.url.trim_end_matches('/'))
    }
}

fn check_http_url(key: &str, url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err(format!("{key}: required (e.g. http://alertmanager:9093)"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{key} = {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err(format!(
            "{key} = {url:?}: must be an http:// or https:// URL with a host"
        ));
    }
    Ok(())
}

/// One alert as Alertmanager's v2 API takes it (`postableAlert`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    /// The alert's identity and routing keys.
    pub labels: BTreeMap<String, String>,
    /// The evidence, for people.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub starts_at: String,
    /// RFC 3339, UTC; in the past means resolved.
    pub ends_at: String,
    /// A link back to auspex's view of the alert.
    #[serde(
        rename = "generatorURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generator_url: Option<String>,
}

/// Maps an auspex alert to Alertmanager's form, as sent at wall-clock time `now_ms`.
///
/// `startsAt` is the episode start. A firing alert's `endsAt` is its lease, `max(timestamp,
/// now) + resolve_timeout_s`: Alertmanager compares it with its own clock, so event time alone
/// would expire a replayed alert at once. A resolution's `endsAt` is its event time, capped at
/// `now` so Alertmanager reads it as resolved even from a feed whose clock runs ahead, and never
/// before `startsAt` (Alertmanager refuses that).
pub fn postable(alert: &Alert, cfg: &AlertmanagerConfig, now_ms: TimestampMs) -> PostableAlert {
    let ends_at_ms = match alert.state {
        AlertState::Firing => alert.timestamp_ms.max(now_ms).saturating_add(
            i64::try_from(cfg.resolve_timeout_s).map_or(i64::MAX, |s| s.saturating_mul(1000)),
        ),
        AlertState::Resolved => alert.timestamp_ms.min(now_ms).max(alert.starts_at_ms),
    };
    PostableAlert {
        labels: labels(alert, cfg),
        annotations: annotations(alert),
        starts_at: rfc3339(alert.starts_at_ms),
        ends_at: rfc3339(ends_at_ms),
        generator_url: (!cfg.generator_url.is_empty()).then(|| {
            format!(
                "{}/v1/alerts/{}",
                cfg.generator_url.trim_end_matches('/'),
                alert.id
            )
        }),
    }
}

/// `Auspex` + the kind in CamelCase: `memory_exhaustion` → `AuspexMemoryExhaustion`.
pub fn alertname(kind: auspex_model::AnomalyKind) -> String {
    let mut name = String::from("Auspex");
    for word in kind.as_str().split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.push(first.to_ascii_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

fn labels(alert: &Alert, cfg: &AlertmanagerConfig) -> BTreeMap<String, String> {
    let entity = &alert.entity;
    let mut labels = cfg.labels.clone();
    let mut set = |k: &str, v: &str| {
        labels.insert(k.to_string(), v.to_string());
    };
    set("alertname", &alertname(alert.kind));
    set("kind", alert.kind.as_str());
    set("severity", alert.severity.as_str());
    set("entity", entity.id().as_str());
    set("entity_kind", entity.kind.as_str());
    set("alert_id", &alert.id);
    if let Some(ns) = &entity.namespace {
        set("namespace", ns);
    }
    match entity.kind {
        EntityKind::Pod => set("pod", &entity.name),
        EntityKind::Node => set("node", &entity.name),
        EntityKind::Service => set("service", &entity.name),
        // A container's name is `<pod>/<container>`.
        EntityKind::Container => match entity.name.split_once('/') {
            Some((pod, container)) => {
                set("pod", pod);
                set("container", container);
            }
            None => set("container", &entity.name),
        },
    }
    labels
}

fn annotations(alert: &Alert) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("summary".into(), summary(alert));
    out.insert("probability".into(), format!("{:.3}", alert.probability));
    if let Some(t) = alert.time_to_incident_seconds.filter(|t| t.is_finite()) {
        out.insert(
            "time_to_incident_seconds".into(),
            format!("{:.0}", t.max(0.0)),
        );
    }
    let branches: Vec<String> = alert
        .branch_scores
        .iter()
        .map(|(b, s)| format!("{b}={s:.2}"))
        .collect();
    if !branches.is_empty() {
        out.insert("branches".into(), branches.join(" "));
    }
    if !alert.neighbours.is_empty() {
        let mut ids: Vec<String> = alert
            .neighbours
            .iter()
            .take(MAX_NEIGHBOURS)
            .map(|n| n.entity.id().to_string())
            .collect();
        if alert.neighbours.len() > MAX_NEIGHBOURS {
            ids.push(format!("+{} more", alert.neighbours.len() - MAX_NEIGHBOURS));
        }
        out.insert("neighbours".into(), ids.join(", "));
    }
    if !alert.top_features.is_empty() {
        let names: Vec<&str> = alert
            .top_features
            .iter()
            .take(MAX_FEATURES)
            .map(|f| f.feature.as_str())
            .collect();
        out.insert("top_features".into(), names.join(", "));
    }
    out.insert("model_version".into(), alert.model_version.clone());
    if let Some(a) = &alert.action {
        out.insert("action".into(), action_line(a));
        out.insert("action_reason".into(), a.reason.clone());
        if let Some(r) = &a.runbook {
            out.insert("runbook".into(), r.clone());
            // Alertmanager's default templates and Grafana read this name.
            out.insert("runbook_url".into(), r.clone());
        }
    }
    out
}

/// The action in one line: `rollback workload shop/cart to_revision=7d9f8c6b5`.
fn action_line(a: &auspex_model::RecommendedAction) -> String {
    let t = &a.target;
    let kind = match t.kind {
        auspex_model::TargetKind::Workload => "workload",
        auspex_model::TargetKind::Pod => "pod",
        auspex_model::TargetKind::Node => "node",
        auspex_model::TargetKind::Service => "service",
    };
    let mut line = match &t.namespace {
        Some(ns) => format!("{} {kind} {ns}/{}", a.kind, t.name),
        None => format!("{} {kind} {}", a.kind, t.name),
    };
    for (k, v) in &a.params {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => format!("{} items", items.len()),
            other => other.to_string(),
        };
        line.push_str(&format!(" {k}={v}"));
    }
    line
}

/// "memory exhaustion predicted on pod shop/cart-7 in ~12 min (p=0.91)".
fn summary(alert: &Alert) -> String {
    let what = alert.kind.as_str().replace('_', " ");
    let e = &alert.entity;
    let on = match &e.namespace {
        Some(ns) => format!("{} {ns}/{}", e.kind, e.name),
        None => format!("{} {}", e.kind, e.name),
    };
    let p = alert.probability;
    match alert.state {
        AlertState::Resolved => format!("{what} no longer predicted on {on} (p={p:.2})"),
        AlertState::Firing => match alert.time_to_incident_seconds.filter(|t| t.is_finite()) {
            Some(t) => format!("{what} predicted on {on} in {} (p={p:.2})", approx(t)),
            None => format!("{what} predicted on {on} (p={p:.2})"),
        },
    }
}

/// A duration for people: "~40 s", "~12 min", "~3 h".
fn approx(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 90.0 {
        format!("~{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("~{:.0} min", s / 60.0)
    } else {
        format!("~{:.0} h", s / 3600.0)
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC with milliseconds
/// (`2024-03-01T12:00:00.000Z`), clamped to years 1970..=9999.
pub fn rfc3339(ms: TimestampMs) -> String {
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let ms = ms.clamp(0, MAX_MS);
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("clamped to a representable range")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertmanagerError {
    #[error("{0}")]
    Config(String),
    #[error("alertmanager HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("alertmanager worker thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// What the sink has done so far, in alerts (a re-sent firing alert counts again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Accepted by Alertmanager.
    pub sent: u64,
    /// Never attempted: the queue was full, or still queued at the shutdown deadline.
    pub dropped: u64,
    /// Attempted and given up: refused (4xx), retries exhausted, or cut by the deadline.
    pub failed: u64,
    /// Retried POSTs (each retry of a batch counts once).
    pub retries: u64,
}

/// Atomics mirroring the Prometheus counters, readable without a metrics recorder.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
}

impl Counters {
    fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Relaxed);
        counter!(crate::telemetry::AM_SENT).increment(n);
    }

    fn dropped(&self, n: u64, reason: &'static str) {
        self.dropped.fetch_add(n, Relaxed);
        counter!(crate::telemetry::AM_DROPPED, "reason" => reason).increment(n);
    }

    fn failed(&self, n: u64, reason: &'static str) {
        self.failed.fetch_add(n, Relaxed);
        counter!(crate::telemetry::AM_FAILED, "reason" => reason).increment(n);
    }

    fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
        counter!(crate::telemetry::AM_RETRIES).increment(1);
    }

    fn snapshot(&self) -> DeliveryStats {
        DeliveryStats {
            sent: self.sent.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retries: self.retries.load(Relaxed),
        }
    }
}

/// The firing alerts to renew, by alert id: the last firing version offered of each.
type Firing = Arc<Mutex<HashMap<String, Alert>>>;

/// The running sink: a bounded queue and the worker thread that drains it. Dropped without
/// [`Alertmanager::shutdown`], the worker finishes the queue in the background, with no deadline.
pub struct Alertmanager {
    tx: mpsc::Sender<Alert>,
    firing: Firing,
    counters: Arc<Counters>,
    /// Set once, by `shutdown`: when the worker must give up.
    deadline: watch::Sender<Option<Instant>>,
    worker: JoinHandle<()>,
}

impl Alertmanager {
    /// Validates `cfg` and starts the worker thread.
    pub fn start(cfg: AlertmanagerConfig) -> Result<Self, AlertmanagerError> {
        cfg.validate().map_err(AlertmanagerError::Config)?;
        let mut headers = HeaderMap::new();
        if let Some(token) = &cfg.bearer_token {
            if plaintext_off_loopback(&cfg.url) {
                warn!(url = %cfg.url, "alertmanager bearer token sent over plain http");
            }
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .expect("validate admits only visible ASCII tokens");
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .build()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let (deadline, deadline_rx) = watch::channel(None);
        let firing = Firing::default();
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            endpoint: cfg.endpoint(),
            cfg,
            client,
            firing: firing.clone(),
            counters: counters.clone(),
            deadline: deadline_rx,
        };
        let worker = std::thread::Builder::new()
            .name("auspex-alertmanager".into())
            .spawn(move || runtime.block_on(worker.run(rx)))?;
        Ok(Alertmanager {
            tx,
            firing,
            counters,
            deadline,
            worker,
        })
    }

    /// Queues `alert` for delivery without blocking; `false` when the queue is full (the alert
    /// is dropped and counted).
    ///
    /// Firing alerts are also remembered for renewal and forgotten on their resolution, even
    /// when the queue is full: a dropped resolution then still expires in Alertmanager.
    pub fn offer(&self, alert: &Alert) -> bool {
        let alert = {
            let mut firing = self.firing.lock().unwrap_or_else(PoisonError::into_inner);
            match alert.state {
                AlertState::Firing => {
                    firing.insert(alert.id.clone(), alert.clone());
                    alert.clone()
                }
                AlertState::Resolved => {
                    let mut resolved = alert.clone();
                    // Same label set as the firing alert, or Alertmanager sees another alert.
                    if let Some(fired) = firing.remove(&alert.id) {
                        resolved.severity = fired.severity;
                    }
                    resolved
                }
            }
        };
        match self.tx.try_send(alert) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(a)) => {
                debug!(alert_id = %a.id, "alertmanager queue full: alert dropped");
                self.counters.dropped(1, "queue_full");
                false
            }
            Err(mpsc::error::TrySendError::Closed(a)) => {
                warn!(alert_id = %a.id, "alertmanager worker gone: alert dropped");
                self.counters.dropped(1, "closed");
                false
            }
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> DeliveryStats {
        self.counters.snapshot()
    }

    /// Stops accepting alerts, sends what is queued until `deadline` has passed (whatever is
    /// left then counts as dropped, a batch in flight as failed) and returns the final counts.
    /// Blocks the calling thread; from async code call it in `spawn_blocking`.
    ///
    /// Firing alerts are not resolved: they stay active in Alertmanager until their lease
    /// (`resolve_timeout_s`) runs out, so a quick restart does not flap them.
    pub fn shutdown(self, deadline: Duration) -> DeliveryStats {
        let Alertmanager {
            tx,
            deadline: deadline_tx,
            worker,
            counters,
            ..
        } = self;
        deadline_tx.send_replace(Some(Instant::now() + deadline));
        drop(tx);
        if worker.join().is_err() {
            warn!("alertmanager worker panicked");
        }
        counters.snapshot()
    }
}

/// `http://` to a host other than the loopback interface.
fn plaintext_off_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| {
        u.scheme() == "http"
            && !matches!(
                u.host_str(),
                Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
            )
    })
}

/// A POST that did not go through.
enum PostError {
    /// Worth retrying: connection error, timeout, 5xx, 429.
    Transient(String),
    /// Refused for good (any other 4xx): retrying would not help.
    Refused(StatusCode, String),
}

struct Worker {
    cfg: AlertmanagerConfig,
    endpoint: String,
    client: reqwest::Client,
    firing: Firing,
    counters: Arc<Counters>,
    deadline: watch::Receiver<Option<Instant>>,
}

impl Worker {
    /// Drains the queue in batches, renewing firing alerts on the side, until the queue is
    /// closed and empty.
    async fn run(mut self, mut rx: mpsc::Receiver<Alert>) {
        let period = Duration::from_secs(self.cfg.resend_interval_s);
        let mut renew = tokio::time::interval_at(Instant::now() + period, period);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let shutting_down = self.deadline.borrow().is_some();
            // Not `biased`: a queue that never empties must not starve the renewals.
            let first = tokio::select! {
                next = rx.recv() => match next {
                    Some(alert) => alert,
                    None => break,
                },
                _ = renew.tick(), if !shutting_down => {
                    self.renew().await;
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < self.cfg.batch_max {
                match rx.try_recv() {
                    Ok(alert) => batch.push(alert),
                    Err(_) => break,
                }
            }
            self.deliver(&batch, self.cfg.max_retries).await;
        }
    }

    /// Re-sends every firing alert, pushing its `endsAt` forward. One attempt per batch, and
    /// the round stops at the first failure: the next round retries anyway, and queued alerts
    /// (resolutions among them) should not wait behind renewals during an outage.
    async fn renew(&mut self) {
        let mut alerts: Vec<Alert> = {
            let firing = self.firing.lock().unwrap_or_else(PoisonError::into_inner);
            firing.values().cloned().collect()
        };
        alerts.sort_by(|a, b| a.id.cmp(&b.id));
        debug!(alerts = alerts.len(), "renewing firing alerts");
        for batch in alerts.chunks(self.cfg.batch_max) {
            if !self.deliver(batch, 0).await {
                return;
            }
        }
    }

    /// Posts one batch, retrying transient failures up to `max_retries` times; counts the
    /// outcome and returns whether Alertmanager took it.
    async fn deliver(&mut self, batch: &[Alert], max_retries: u32) -> bool {
        let n = batch.len() as u64;
        let mut retry = 0;
        loop {
            let Some(timeout) = self.attempt_timeout() else {
                if retry == 0 {
                    self.counters.dropped(n, "shutdown");
                } else {
                    self.counters.failed(n, "shutdown");
                }
                return false;
            };
            let now = now_ms();
            let body: Vec<PostableAlert> =
                batch.iter().map(|a| postable(a, &self.cfg, now)).collect();
            match self.post(&body, timeout).await {
                Ok(()) => {
                    self.counters.sent(n);
                    return true;
                }
                Err(PostError::Refused(status, body)) => {
                    warn!(%status, %body, alerts = n, "alertmanager refused alerts");
                    self.counters.failed(n, "refused");
                    return false;
                }
                Err(PostError::Transient(reason)) if retry >= max_retries => {
                    warn!(%reason, alerts = n, retries = retry, "alertmanager unreachable");
                    self.counters.failed(n, "unreachable");
                    return false;
                }
                Err(PostError::Transient(reason)) => {
                    let wait = backoff(self.cfg.backoff_ms, retry);
                    let wait_ms = wait.as_millis() as u64;
                    retry += 1;
                    warn!(%reason, alerts = n, retry, wait_ms, "alertmanager: retrying");
                    self.counters.retried();
                    self.pause(wait).await;
                }
            }
        }
    }

    async fn post(&self, body: &[PostableAlert], timeout: Duration) -> Result<(), PostError> {
        let response = self
            .client
            .post(&self.endpoint)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| PostError::Transient(error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut text = response.text().await.unwrap_or_default();
        if let Some((cut, _)) = text.char_indices().nth(MAX_LOGGED_BODY) {
            text.truncate(cut);
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(PostError::Transient(format!("{status}: {text}")))
        } else {
            Err(PostError::Refused(status, text))
        }
    }

    /// The timeout for the next attempt: the configured one, shortened to the shutdown
    /// deadline; `None` once the deadline has passed.
    fn attempt_timeout(&self) -> Option<Duration> {
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        match *self.deadline.borrow() {
            None => Some(timeout),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| timeout.min(left))
            }
        }
    }

    /// Sleeps for `wait`, or until the shutdown deadline if that comes first.
    async fn pause(&mut self, wait: Duration) {
        let wake = Instant::now() + wait;
        loop {
            let until = self
                .deadline
                .borrow_and_update()
                .map_or(wake, |d| d.min(wake));
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                changed = self.deadline.changed() => {
                    if changed.is_err() {
                        // The handle was dropped without `shutdown`: no deadline will come.
                        tokio::time::sleep_until(until).await;
                        return;
                    }
                }
            }
        }
    }
}

/// `backoff_ms * 2^retry`, capped at [`MAX_BACKOFF`].
fn backoff(initial_ms: u64, retry: u32) -> Duration {
    let ms = initial_ms.saturating_mul(1u64 << retry.min(32));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// An error with its sources ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use auspex_model::{
        AnomalyKind, EdgeKind, EntityRef, FeatureContribution, ImplicatedNeighbour, Severity,
    };

    const T: TimestampMs = 1_709_294_400_000; // 2024-03-01T12:00:00Z

    fn alert(entity: EntityRef, state: AlertState) -> Alert {
        Alert {
            id: Alert::stable_id(&entity, AnomalyKind::MemoryExhaustion, T - 60_000),
            timestamp_ms: T,
            starts_at_ms: T - 60_000,
            entity,
            kind: AnomalyKind::MemoryExhaustion,
            state,
            probability: 0.912,
            severity: Severity::Critical,
            time_to_incident_seconds: Some(720.0),
            model_version: "m-1".into(),
            branch_scores: [("gbdt".to_string(), 0.8), ("lstm".to_string(), 0.95)].into(),
            branch_weights: BTreeMap::new(),
            top_features: vec![FeatureContribution {
                feature: "memory_working_set_bytes.slope".into(),
                value: 1.0,
                contribution: 0.5,
            }],
            neighbours: vec![ImplicatedNeighbour {
                entity: EntityRef::node("n1"),
                relation: EdgeKind::RunsOn,
                score: 0.4,
            }],
            action: None,
        }
    }

    fn cfg() -> AlertmanagerConfig {
        AlertmanagerConfig {
            url: "http://alertmanager:9093/".into(),
            labels: [("cluster".to_string(), "prod".to_string())].into(),
            ..AlertmanagerConfig::default()
        }
    }

    #[test]
    fn firing_pod_alert_maps_to_labels_annotations_and_a_lease() {
        let a = alert(EntityRef::pod("shop", "cart-7"), AlertState::Firing);
        let p = postable(&a, &cfg(), T + 5_000);
        let l = |k: &str| p.labels.get(k).map(String::as_str);
        assert_eq!(l("alertname"), Some("AuspexMemoryExhaustion"));
        assert_eq!(l("kind"), Some("memory_exhaustion"));
        assert_eq!(l("severity"), Some("critical"));
        assert_eq!(l("entity"), Some("pod/shop/cart-7"));
        assert_eq!(l("entity_kind"), Some("pod"));
        assert_eq!(l("namespace"), Some("shop"));
        assert_eq!(l("pod"), Some("cart-7"));
        assert_eq!(l("node"), None);
        assert_eq!(l("alert_id"), Some(a.id.as_str()));
        assert_eq!(l("cluster"), Some("prod"));
        assert_eq!(
            p.annotations["summary"],
            "memory exhaustion predicted on pod shop/cart-7 in ~12 min (p=0.91)"
        );
        assert_eq!(p.annotations["probability"], "0.912");
        assert_eq!(p.annotations["time_to_incident_seconds"], "720");
        assert_eq!(p.annotations["branches"], "gbdt=0.80 lstm=0.95");
        assert_eq!(p.annotations["neighbours"], "node/n1");
        assert_eq!(p.annotations["model_version"], "m-1");
        assert_eq!(p.starts_at, "2024-03-01T11:59:00.000Z");
        // Lease from the send time (later than the event time here), 300 s by default.
        assert_eq!(p.ends_at, "2024-03-01T12:05:05.000Z");
        assert_eq!(p.generator_url, None);
        let json = serde_json::to_value(&p).unwrap();
        assert!(json.get("startsAt").is_some() && json.get("generatorURL").is_none());
    }

    #[test]
    fn resolved_alert_ends_at_its_event_time_never_in_the_future() {
        let mut a = alert(EntityRef::node("n1"), AlertState::Resolved);
        a.time_to_incident_seconds = None;
        let c = AlertmanagerConfig {
            generator_url: "http://auspex:8080/".into(),
            ..cfg()
        };
        let p = postable(&a, &c, T + 1000);
        assert_eq!(p.ends_at, "2024-03-01T12:00:00.000Z");
        assert_eq!(p.labels["node"], "n1");
        assert!(!p.labels.contains_key("namespace"));
        assert_eq!(
            p.annotations["summary"],
            "memory exhaustion no longer predicted on node n1 (p=0.91)"
        );
        assert!(!p.annotations.contains_key("time_to_incident_seconds"));
        assert_eq!(
            p.generator_url.as_deref(),
            Some(format!("http://auspex:8080/v1/alerts/{}", a.id).as_str())
        );
        // A feed clock ahead of ours: capped at now, so Alertmanager sees it resolved.
        assert_eq!(
            postable(&a, &c, T - 10_000).ends_at,
            "2024-03-01T11:59:50.000Z"
        );
        // ...but never before startsAt, which Alertmanager would refuse.
        assert_eq!(postable(&a, &c, 0).ends_at, p.starts_at);
    }

    #[test]
    fn containers_and_services_get_their_own_labels() {
        let c = EntityRef::new(EntityKind::Container, Some("shop"), "cart-7/server");
        let p = postable(&alert(c, AlertState::Firing), &cfg(), T);
        assert_eq!(
            (p.labels["pod"].as_str(), p.labels["container"].as_str()),
            ("cart-7", "server")
        );
        let s = postable(
            &alert(EntityRef::service("shop", "cart"), AlertState::Firing),
            &cfg(),
            T,
        );
        assert_eq!(s.labels["service"], "cart");
        assert_eq!(s.labels["entity"], "service/shop/cart");
    }

    #[test]
    fn alertnames_are_camel_case() {
        let names: Vec<String> = AnomalyKind::ALL.into_iter().map(alertname).collect();
        assert_eq!(
            names,
            [
                "AuspexPodFailure",
                "AuspexCpuExhaustion",
                "AuspexMemoryExhaustion",
                "AuspexNetworkIssue"
            ]
        );
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(T + 123), "2024-03-01T12:00:00.123Z");
        assert_eq!(rfc3339(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn summaries_round_durations() {
        assert_eq!(approx(40.4), "~40 s");
        assert_eq!(approx(720.0), "~12 min");
        assert_eq!(approx(3.0 * 3600.0), "~3 h");
        assert_eq!(approx(-5.0), "~0 s");
    }

    #[test]
    fn validation_names_the_key() {
        let err = |c: AlertmanagerConfig| c.validate().unwrap_err();
        assert!(cfg().validate().is_ok());
        assert!(err(AlertmanagerConfig::default()).starts_with("alertmanager.url: required"));
        assert!(
            err(AlertmanagerConfig {
                url: "ftp://x".into(),
                ..cfg()
            })
            .contains("alertmanager.url = \"ftp://x\": must be an http:// or https://")
        );
        assert!(
            err(AlertmanagerConfig {
                queue_capacity: 0,
                ..cfg()
            })
            .starts_with("alertmanager.queue_capacity = 0")
        );
        assert!(
            err(AlertmanagerConfig {
                batch_max: 0,
                ..cfg()
            })
            .starts_with("alertmanager.batch_max")
        );
        assert!(
            err(AlertmanagerConfig {
                resolve_timeout_s: 60,
                ..cfg()
            })
            .starts_with("alertmanager.resolve_timeout_s = 60")
        );
        let labelled = |k: &str, v: &str| AlertmanagerConfig {
            labels: [(k.to_string(), v.to_string())].into(),
            ..cfg()
        };
        assert!(err(labelled("severity", "x")).starts_with("alertmanager.labels.severity"));
        assert!(err(labelled("9lives", "x")).starts_with("alertmanager.labels.9lives"));
        assert!(err(labelled("team", "")).starts_with("alertmanager.labels.team"));
        assert!(
            err(AlertmanagerConfig {
                bearer_token: Some("a b".into()),
                ..cfg()
            })
            .starts_with("alertmanager.bearer_token")
        );
        assert!(
            err(AlertmanagerConfig {
                generator_url: "auspex".into(),
                ..cfg()
            })
            .starts_with("alertmanager.generator_url")
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let c = AlertmanagerConfig {
            bearer_token: Some("s3cret".into()),
            ..cfg()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(200, 0), Duration::from_millis(200));
        assert_eq!(backoff(200, 3), Duration::from_millis(1600));
        assert_eq!(backoff(200, 40), MAX_BACKOFF);
    }
}
