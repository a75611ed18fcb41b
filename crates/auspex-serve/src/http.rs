//! The HTTP API and the Prometheus endpoint of `auspex serve`: the routes, their JSON shapes,
//! bearer-token authentication, body limits and timeouts, and the process-wide metrics
//! recorder. It reads and drives [`Shared`]; it owns no state of the pipeline and starts no
//! loop but the metrics upkeep.
//!
//! | route | answers |
//! |---|---|
//! | `GET /metrics` | Prometheus text format (open) |
//! | `GET /healthz` | 200 while the process serves (open) |
//! | `GET /readyz` | 200, or 503 with what is missing (open) |
//! | `GET /v1/alerts` | active and recent alerts, `?kind=&state=&limit=` |
//! | `GET /v1/alerts/{id}` | one alert in its latest state (firing or resolved) |
//! | `GET /v1/entities/{id}` | one entity's window summary and scores |
//! | `GET /v1/graph?around=&hops=` | the topology around an entity |
//! | `GET /v1/forecasts?namespace=&workload=` | the latest demand forecasts per workload |
//! | `POST /v1/score` | scores posted samples on their own (NDJSON or a JSON array) |
//! | `POST /v1/model/reload` | swaps in a model bundle; answers the thresholds in force |
//!
//! Every error is `{"error": "<code>", "reason": "<sentence>"}` ([`AppError`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use auspex_graph::Subgraph;
use auspex_ingest::{Origin, Record};
use auspex_model::{Alert, AlertState, AnomalyKind, EntityId};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::engine::{Engine, EntityView, KindScores};
use crate::shared::{Reloaded, Shared};
use crate::telemetry;

/// The deepest `/v1/graph` neighbourhood served: past a few hops a view is most of the cluster.
pub const MAX_HOPS: usize = 4;

/// How often the metrics upkeep (draining histograms) runs.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Settings of the HTTP server (`[http]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on (`ip:port`); an empty string disables the server (and
    /// with it `/metrics` and the probes).
    pub listen: String,
    /// When set, every endpoint but `/metrics`, `/healthz` and `/readyz` requires
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// A file holding the bearer token (a mounted Kubernetes Secret), read at start; trailing
    /// whitespace is ignored. Exclusive with `bearer_token`.
    pub bearer_token_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes (`POST /v1/score`, `POST /v1/model/reload`);
    /// larger ones get 413.
    pub body_limit_bytes: usize,
    /// Longest a request may take, in milliseconds, before it is answered 503.
    pub request_timeout_ms: u64,
    /// Most namespaces `auspex_alerts_firing` names; the rest are summed under `(other)`.
    pub metrics_namespaces: usize,
    /// Most firing alerts `auspex_alert_probability` shows (the most probable); 0: none.
    pub metrics_top_alerts: usize,
    /// Most workloads `auspex_forecast_demand` shows (the largest by p50 CPU forecast).
    pub metrics_forecast_workloads: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
            bearer_token: None,
            bearer_token_file: None,
            body_limit_bytes: 1 << 20,
            request_timeout_ms: 10_000,
            metrics_namespaces: 50,
            metrics_top_alerts: 50,
            metrics_forecast_workloads: 100,
        }
    }
}

impl HttpConfig {
    /// Checks every key; the message names the first wrong one.
    pub fn validate(&self) -> Result<(), String> {
        if !self.listen.is_empty() && self.listen.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "http.listen: {:?} is not ip:port (e.g. 0.0.0.0:9464), nor empty to disable the server",
                self.listen
            ));
        }
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            return Err(
                "http.bearer_token and http.bearer_token_file are both set: keep one".into(),
            );
        }
        if let Some(t) = &self.bearer_token {
            check_token(t).map_err(|e| format!("http.bearer_token: {e}"))?;
        }
        if self.body_limit_bytes == 0 {
            return Err("http.body_limit_bytes: must be at least 1".into());
        }
        if self.request_timeout_ms == 0 {
            return Err("http.request_timeout_ms: must be at least 1".into());
        }
        if self.metrics_namespaces == 0 {
            return Err("http.metrics_namespaces: must be at least 1".into());
        }
        Ok(())
    }

    /// The address to listen on; `None` when the server is disabled.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    /// The bearer token, from `bearer_token` or read from `bearer_token_file`.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(t) = &self.bearer_token {
            return Ok(Some(t.clone()));
        }
        let Some(path) = &self.bearer_token_file else {
            return Ok(None);
        };
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("http.bearer_token_file: reading {}", path.display()))?;
        let token = raw.trim_end().to_string();
        check_token(&token).map_err(|e| {
            anyhow::anyhow!("http.bearer_token_file: {}: the token {e}", path.display())
        })?;
        Ok(Some(token))
    }
}

/// A token must survive a round trip through an HTTP header.
fn check_token(t: &str) -> Result<(), &'static str> {
    if t.is_empty() {
        return Err("is empty");
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces");
    }
    Ok(())
}

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle (the same handle
/// on every call). The `_seconds` histograms are rendered with buckets, so they aggregate
/// across instances. If another recorder was installed first, the handle renders an empty
/// registry and a warning says why.
pub fn install_recorder() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            const SECONDS: [f64; 14] = [
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
                .expect("the bucket list is not empty")
                // Lead times run to an hour: a Full matcher wins over the suffix.
                .set_buckets_for_metric(
                    Matcher::Full(telemetry::ALERT_LEAD_TIME.into()),
                    &telemetry::LEAD_TIME_BUCKETS,
                )
                .expect("the bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(%e, "another metrics recorder is installed: /metrics will be empty");
            }
            telemetry::describe();
            handle
        })
        .clone()
}

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    handle: PrometheusHandle,
    token: Option<Arc<str>>,
    timeout: Duration,
    /// The version `auspex_model_info` was last set for, to zero its series on a change.
    model_info: Arc<Mutex<Option<String>>>,
    /// Caps of the per-namespace, per-alert and per-workload families (`metrics_namespaces`,
    /// `metrics_top_alerts`, `metrics_forecast_workloads`).
    caps: (usize, usize, usize),
}

/// The API's error: a status and a JSON body `{"error", "reason"}`.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    reason: String,
    /// Per-record reasons (`POST /v1/score` when every record is refused).
    rejected: Option<Vec<Rejected>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<&'a [Rejected]>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            reason: reason.into(),
            rejected: None,
        }
    }

    fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", reason)
    }

    fn internal(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", reason)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            reason: &self.reason,
            rejected: self.rejected.as_deref(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = if self.code == "invalid_token" {
                r#"Bearer realm="auspex", error="invalid_token""#
            } else {
                r#"Bearer realm="auspex""#
            };
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        resp
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::new(r.status(), "bad_query", r.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        AppError::new(r.status(), "bad_path", r.body_text())
    }
}

impl From<BytesRejection> for AppError {
    fn from(r: BytesRejection) -> Self {
        use axum::extract::rejection::FailedToBufferBody;
        match r {
            // The body limit surfaces here, wrapped twice: Bytes -> FailedToBuffer -> LengthLimit.
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body exceeds http.body_limit_bytes",
                )
            }
            other => AppError::new(other.status(), "bad_body", other.body_text()),
        }
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!(%e, "a request's blocking task failed");
        AppError::internal(format!("the request's task failed: {e}"))
    }
}

/// The API's routes over `shared`; `token` protects everything but `/metrics` and the probes.
pub fn router(
    shared: Arc<Shared>,
    handle: PrometheusHandle,
    token: Option<String>,
    cfg: &HttpConfig,
) -> Router {
    let state = AppState {
        shared,
        handle,
        token: token.map(Arc::from),
        timeout: Duration::from_millis(cfg.request_timeout_ms),
        model_info: Arc::new(Mutex::new(None)),
        caps: (
            cfg.metrics_namespaces,
            cfg.metrics_top_alerts,
            cfg.metrics_forecast_workloads,
        ),
    };
    let api = Router::new()
        .route("/v1/alerts", get(alerts))
        // Alert ids are 16 hex digits (`Alert::stable_id`): one path segment.
        .route("/v1/alerts/{id}", get(alert))
        .route("/v1/entities/{*id}", get(entity))
        .route("/v1/graph", get(graph))
        .route("/v1/forecasts", get(forecasts))
        .route("/v1/score", post(score))
        .route("/v1/model/reload", post(reload))
        // route_layer: an unknown path is 404 whether or not the token is right.
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(DefaultBodyLimit::max(cfg.body_limit_bytes))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes the requests in
/// flight. Runs the metrics upkeep meanwhile when [`install_recorder`] was called.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = RECORDER.get().cloned().map(|handle| {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        })
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(u) = upkeep {
        u.abort();
    }
    served
}

// --- middleware ---

/// Answers 401 unless the request carries the bearer token (compared in constant time).
async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = &state.token else {
        return next.run(req).await;
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs an Authorization: Bearer <token> header",
        )
        .into_response();
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => next.run(req).await,
        _ => AppError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the bearer token is not the one this instance expects",
        )
        .into_response(),
    }
}

/// Equality whose time depends on the lengths only, not on where the bytes first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

/// Answers 503 when a request outlives `http.request_timeout_ms`. A blocking task it started
/// (scoring, loading a bundle) still runs to its end; only the answer is given up.
async fn time_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than http.request_timeout_ms ({} ms)",
                state.timeout.as_millis()
            ),
        )
        .into_response(),
    }
}

async fn unknown_route(req: Request) -> AppError {
    AppError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Runs `f` on the engine in a blocking task: the pipeline may hold the lock for a whole batch,
/// and an async worker must not wait on it.
async fn with_engine<T, F>(shared: &Arc<Shared>, f: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&Engine) -> T + Send + 'static,
{
    let shared = Arc::clone(shared);
    Ok(tokio::task::spawn_blocking(move || f(&shared.engine())).await?)
}

// --- open endpoints ---

async fn prometheus(State(state): State<AppState>) -> Result<Response, AppError> {
    let cap = state.caps.2;
    let (entities, vertices, edges, firing, version) = with_engine(&state.shared, |e| {
        (
            e.tracked_entities(),
            e.graph().len(),
            e.graph().edge_count(),
            e.active_alerts(),
            e.model_version(),
        )
    })
    .await?;
    let active = firing.len();
    metrics::gauge!(telemetry::ENTITIES).set(entities as f64);
    metrics::gauge!(telemetry::GRAPH_VERTICES).set(vertices as f64);
    metrics::gauge!(telemetry::GRAPH_EDGES).set(edges as f64);
    metrics::gauge!(telemetry::ALERTS_ACTIVE).set(active as f64);
    {
        let mut last = state.model_info.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() != Some(version.as_str()) {
            // One series at 1; a replaced version stays at 0 rather than growing the set.
            if let Some(old) = last.take() {
                metrics::gauge!(telemetry::MODEL_INFO, "version" => old).set(0.0);
            }
            metrics::gauge!(telemetry::MODEL_INFO, "version" => version.clone()).set(1.0);
            *last = Some(version);
        }
    }
    let (forecasts, forecasts_left_out) = with_engine(&state.shared, move |e| {
        crate::forecasts::render(&e.forecasts().collect::<Vec<_>>(), cap)
    })
    .await?;
    let mut body = state.handle.render();
    body.push_str(&forecasts);
    // Ends with the `auspex_metric_series_capped` family: the forecasts' line joins it.
    body.push_str(&telemetry::render_firing(
        &firing,
        state.caps.0,
        state.caps.1,
    ));
    body.push_str(&format!(
        "{}{{metric=\"{}\"}} {forecasts_left_out}\n",
        telemetry::SERIES_CAPPED,
        crate::forecasts::FORECAST_DEMAND
    ));
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForecastQuery {
    namespace: Option<String>,
    workload: Option<String>,
}

/// The latest forecast of every workload (and resource), optionally of one namespace or
/// workload; 404 when no forecast model is loaded.
async fn forecasts(
    State(state): State<AppState>,
    query: Result<Query<ForecastQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let Query(q) = query?;
    let found = with_engine(&state.shared, move |e| {
        e.forecast_grid().map(|_| {
            e.forecasts()
                .filter(|f| {
                    q.namespace
                        .as_ref()
                        .is_none_or(|n| *n == f.workload.namespace)
                })
                .filter(|f| {
                    q.workload
                        .as_ref()
                        .is_none_or(|w| *w == f.workload.workload)
                })
                .cloned()
                .collect::<Vec<_>>()
        })
    })
    .await?;
    match found {
        Some(f) => Ok(Json(json!({ "forecasts": f }))),
        None => Err(AppError::new(
            StatusCode::NOT_FOUND,
            "no_forecast_model",
            "no forecast model is loaded (set forecast.model)",
        )),
    }
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "uptime_seconds": state.shared.started.elapsed().as_secs_f64(),
    }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.shared.readiness.check() {
        Ok(()) => Json(json!({ "ready": true })).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

// --- /v1 ---

#[derive(Debug, Deserialize)]
struct AlertsQuery {
    kind: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct AlertsBody {
    /// Firing now, by id.
    active: Vec<Alert>,
    /// The latest alert messages (firing and resolved), oldest first.
    recent: Vec<Alert>,
}

/// Active and recent alerts; `kind` and `state` filter both lists, `limit` keeps the first
/// active ones and the newest recent ones.
async fn alerts(
    State(state): State<AppState>,
    query: Result<Query<AlertsQuery>, QueryRejection>,
) -> Result<Json<AlertsBody>, AppError> {
    let Query(q) = query?;
    let kind = q
        .kind
        .as_deref()
        .map(str::parse::<AnomalyKind>)
        .transpose()
        .map_err(|e| AppError::bad_request(format!("kind: {e}")))?;
    let wanted_state = match q.state.as_deref() {
        None => None,
        Some("firing") => Some(AlertState::Firing),
        Some("resolved") => Some(AlertState::Resolved),
        Some(other) => {
            return Err(AppError::bad_request(format!(
                "state: unknown alert state {other:?} (expected firing or resolved)"
            )));
        }
    };
    let (active, recent) =
        with_engine(&state.shared, |e| (e.active_alerts(), e.recent_alerts())).await?;
    let keep =
        |a: &Alert| kind.is_none_or(|k| a.kind == k) && wanted_state.is_none_or(|s| a.state == s);
    let mut active: Vec<Alert> = active.into_iter().filter(keep).collect();
    let mut recent: Vec<Alert> = recent.into_iter().filter(keep).collect();
    if let Some(n) = q.limit {
        active.truncate(n);
        recent.drain(..recent.len().saturating_sub(n));
    }
    Ok(Json(AlertsBody { active, recent }))
}

/// One alert in its latest state (firing, or its newest message when it is no longer
/// active): the link Alertmanager's `generatorURL` carries.
async fn alert(
    State(state): State<AppState>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<Alert>, AppError> {
    let UrlPath(id) = path?;
    let lookup = id.clone();
    let (found, kept) = with_engine(&state.shared, move |e| {
        (e.alert(&lookup), e.config().recent_alerts)
    })
    .await?;
    found.map(Json).ok_or_else(|| {
        AppError::not_found(format!(
            "no alert {id} is firing on this instance nor among its last {kept} alert messages"
        ))
    })
}

/// Parses an entity id from a URL or a query.
fn entity_id(raw: &str) -> Result<EntityId, AppError> {
    EntityId::parse(raw)
        .map(|r| r.id())
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, "bad_entity_id", e.to_string()))
}

async fn entity(
    State(state): State<AppState>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<EntityView>, AppError> {
    let UrlPath(raw) = path?;
    // The wildcard keeps a leading slash on some paths (`/v1/entities//x`); ids never start with one.
    let id = entity_id(raw.trim_start_matches('/'))?;
    let lookup = id.clone();
    with_engine(&state.shared, move |e| e.entity(&lookup))
        .await?
        .map(Json)
        .ok_or_else(|| AppError::not_found(format!("no entity {id} is known to this instance")))
}

#[derive(Debug, Deserialize)]
struct GraphQuery {
    around: Option<String>,
    hops: Option<usize>,
}

async fn graph(
    State(state): State<AppState>,
    query: Result<Query<GraphQuery>, QueryRejection>,
) -> Result<Json<Subgraph>, AppError> {
    let Query(q) = query?;
    let around = q
        .around
        .ok_or_else(|| AppError::bad_request("around: missing (the entity id to centre on)"))?;
    let id = entity_id(&around)?;
    let hops = q.hops.unwrap_or(1);
    if hops > MAX_HOPS {
        return Err(AppError::bad_request(format!(
            "hops: {hops} is more than the {MAX_HOPS} served"
        )));
    }
    let lookup = id.clone();
    with_engine(&state.shared, move |e| e.subgraph(&lookup, hops))
        .await?
        .map(Json)
        .ok_or_else(|| AppError::not_found(format!("no entity {id} in the topology graph")))
}

/// A posted record that was not scored.
#[derive(Debug, Clone, Serialize)]
struct Rejected {
    /// 1-based line of the NDJSON body, or element of the JSON array.
    line: u64,
    reason: String,
}

#[derive(Debug, Serialize)]
struct ScoredEntity {
    id: String,
    scores: Vec<KindScores>,
}

#[derive(Debug, Serialize)]
struct ScoreBody {
    entities: Vec<ScoredEntity>,
    rejected: Vec<Rejected>,
}

/// Where a posted record came from, for its dead letter.
fn origin(line: u64) -> Origin {
    Origin::File {
        path: "POST /v1/score".into(),
        line,
    }
}

/// Splits a posted body into records: a JSON array of events, or NDJSON (one per line).
fn parse_records(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(u64, Record)>, AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match content_type.as_deref() {
        None
        | Some("application/json")
        | Some("application/x-ndjson")
        | Some("application/ndjson")
        | Some("application/jsonl") => {}
        Some(other) => {
            return Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("content-type {other} (expected application/x-ndjson or application/json)"),
            ));
        }
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_none() {
        return Err(AppError::bad_request(
            "the body is empty: post metric samples or topology events, one JSON object per line or a JSON array",
        ));
    }
    if first == Some(&b'[') {
        let items: Vec<serde_json::Value> = serde_json::from_slice(body)
            .map_err(|e| AppError::bad_request(format!("the body is not a JSON array: {e}")))?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let line = i as u64 + 1;
            let bytes = serde_json::to_vec(item).expect("a JSON value serialises");
            out.push((line, auspex_ingest::parse_line(&bytes, origin(line))));
        }
        return Ok(out);
    }
    Ok(body
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| {
            let line = i as u64 + 1;
            (
                line,
                auspex_ingest::parse_line(l.trim_ascii(), origin(line)),
            )
        })
        .collect())
}

/// Scores posted records on their own, apart from the live state.
async fn score(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ScoreBody>, AppError> {
    let body = body?;
    let parsed = parse_records(&headers, &body)?;
    let mut rejected = Vec::new();
    let mut records = Vec::with_capacity(parsed.len());
    for (line, r) in parsed {
        match r {
            Record::DeadLetter(d) => rejected.push(Rejected {
                line,
                reason: d.reason,
            }),
            r => records.push(r),
        }
    }
    if records.is_empty() {
        let shown: Vec<String> = rejected
            .iter()
            .take(3)
            .map(|r| format!("line {}: {}", r.line, r.reason))
            .collect();
        let more = rejected.len().saturating_sub(shown.len());
        let mut reason = format!("every record was rejected: {}", shown.join("; "));
        if more > 0 {
            reason.push_str(&format!(" (and {more} more)"));
        }
        let mut err = AppError::new(StatusCode::BAD_REQUEST, "no_valid_records", reason);
        err.rejected = Some(rejected);
        return Err(err);
    }
    let shared = Arc::clone(&state.shared);
    let scored = tokio::task::spawn_blocking(move || shared.score_adhoc(records))
        .await?
        // Its only failure is a missing bundle: the scratch engine reuses the live config,
        // which was validated when the live engine was built.
        .map_err(|e| AppError::new(StatusCode::CONFLICT, "no_model", format!("{e:#}")))?;
    Ok(Json(ScoreBody {
        entities: scored
            .into_iter()
            .map(|(id, scores)| ScoredEntity { id, scores })
            .collect(),
        rejected,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    /// The bundle to load; absent: the configured one again.
    path: Option<PathBuf>,
}

/// The start of [`Shared::reload`]'s message when no loader is configured.
const NO_BUNDLE: &str = "this instance serves the statistical scorer";

async fn reload(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Reloaded>, AppError> {
    let body = body?;
    let req: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            AppError::bad_request(format!(
                "the body is not {{\"path\": \"<bundle dir>\"}}: {e}"
            ))
        })?
    };
    let shared = Arc::clone(&state.shared);
    let outcome =
        tokio::task::spawn_blocking(move || shared.reload(req.path.as_deref().map(Path::new)))
            .await?;
    match outcome {
        Ok(done) => {
            metrics::counter!(telemetry::MODEL_RELOADS, "outcome" => "ok").increment(1);
            tracing::info!(
                previous = %done.previous,
                version = %done.version,
                thresholds = ?done.thresholds,
                "model reloaded"
            );
            Ok(Json(done))
        }
        Err(e) => {
            metrics::counter!(telemetry::MODEL_RELOADS, "outcome" => "error").increment(1);
            let reason = format!("{e:#}");
            tracing::warn!(%reason, "model reload refused");
            if e.root_cause().to_string().starts_with(NO_BUNDLE) {
                Err(AppError::new(StatusCode::CONFLICT, "no_bundle", reason))
            } else {
                Err(AppError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "reload_failed",
                    reason,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cres"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn validate_names_the_key() {
        let bad = |c: HttpConfig| c.validate().unwrap_err();
        assert!(HttpConfig::default().validate().is_ok());
        assert!(
            HttpConfig {
                listen: String::new(),
                ..HttpConfig::default()
            }
            .validate()
            .is_ok()
        );
        assert!(
            bad(HttpConfig {
                listen: "localhost".into(),
                ..HttpConfig::default()
            })
            .starts_with("http.listen:")
        );
        assert!(
            bad(HttpConfig {
                bearer_token: Some("a".into()),
                bearer_token_file: Some("/x".into()),
                ..HttpConfig::default()
            })
            .contains("http.bearer_token_file")
        );
        assert!(
            bad(HttpConfig {
                bearer_token: Some("two words".into()),
                ..HttpConfig::default()
            })
            .starts_with("http.bearer_token:")
        );
        assert!(
            bad(HttpConfig {
                body_limit_bytes: 0,
                ..HttpConfig::default()
            })
            .starts_with("http.body_limit_bytes:")
        );
        assert!(
            bad(HttpConfig {
                metrics_namespaces: 0,
                ..HttpConfig::default()
            })
            .starts_with("http.metrics_namespaces:")
        );
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let e = toml::from_str::<HttpConfig>("listen = \"0.0.0.0:1\"\nrecent_alerts = 5\n")
            .unwrap_err();
        assert!(e.to_string().contains("recent_alerts"), "{e}");
        let c: HttpConfig = toml::from_str("request_timeout_ms = 50").unwrap();
        assert_eq!(c.request_timeout_ms, 50);
        assert_eq!(c.listen, "127.0.0.1:9464");
    }

    #[test]
    fn token_file_is_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc123\n").unwrap();
        let c = HttpConfig {
            bearer_token_file: Some(path.clone()),
            ..HttpConfig::default()
        };
        assert_eq!(c.token().unwrap().as_deref(), Some("abc123"));
        std::fs::write(&path, "\n").unwrap();
        assert!(format!("{:#}", c.token().unwrap_err()).contains("empty"));
        let missing = HttpConfig {
            bearer_token_file: Some(dir.path().join("nope")),
            ..HttpConfig::default()
        };
        assert!(format!("{:#}", missing.token().unwrap_err()).contains("http.bearer_token_file"));
    }
}
