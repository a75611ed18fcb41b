//! The HTTP side: `POST /api/v1/write` (Prometheus remote write, protocol 1), `/metrics`,
//! `/healthz` and `/readyz`. Every refusal is `{"error": "<code>", "reason": "<sentence>"}`
//! with the status Prometheus acts on: 4xx are dropped by Prometheus (the body cannot get
//! better), 503 is retried (we are saturated, or the output is failing).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::calls::Calls;
use crate::mapping::Mapper;
use crate::remote_write::{self, DecodeError, Limits};
use crate::telemetry;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub mapper: Arc<Mutex<Mapper>>,
    /// With `calls.mesh` set: takes the mesh's request counters before the mapping.
    pub calls: Option<Arc<Calls>>,
    pub handle: PrometheusHandle,
    pub limits: Limits,
    pub token: Option<Arc<str>>,
    /// False while the output is failing: `/readyz` answers 503.
    pub output_ok: Arc<AtomicBool>,
    pub timeout: Duration,
}

/// A refusal: a status and a JSON body with a reason.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    reason: &'a str,
}

impl AppError {
    fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            reason: &self.reason,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(r#"Bearer realm="auspex-collect""#),
            );
        }
        resp
    }
}

pub fn router(state: AppState) -> Router {
    // axum refuses a larger body itself (413, mapped to our JSON in `write`); one byte of
    // slack so that a body of exactly the limit reaches `decode`'s own check.
    let limit = state.limits.max_body_bytes.saturating_add(1);
    Router::new()
        .route("/api/v1/write", post(write))
        .route("/metrics", get(prometheus))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { AppError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn count(status: StatusCode) {
    metrics::counter!(telemetry::WRITE_REQUESTS, "code" => status_label(status)).increment(1);
}

fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        204 => "204",
        400 => "400",
        401 => "401",
        413 => "413",
        415 => "415",
        503 => "503",
        _ => "other",
    }
}

async fn write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = write_inner(&state, &headers, body).await;
    let status = match &result {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(e) => e.status,
    };
    count(status);
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::debug!(status = %e.status, reason = %e.reason, "remote write refused");
            e.into_response()
        }
    }
}

async fn write_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(), AppError> {
    if let Some(expected) = &state.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !presented.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes())) {
            return Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "POST /api/v1/write needs Authorization: Bearer <http.bearer_token>",
            ));
        }
    }
    let header_str = |h: header::HeaderName| {
        headers.get(&h).map(|v| {
            v.to_str()
                .unwrap_or("<not text>")
                .trim()
                .to_ascii_lowercase()
        })
    };
    let content_type = header_str(header::CONTENT_TYPE).unwrap_or_default();
    if content_type.split(';').next().map(str::trim) != Some("application/x-protobuf") {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type {content_type:?}: remote write 1.0 sends application/x-protobuf"),
        ));
    }
    // Remote write 2.0 sends `application/x-protobuf;proto=io.prometheus.write.v2.Request`:
    // another message on the same media type, which must not be read as 1.0.
    if let Some(proto) = content_type
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("proto="))
        && proto.trim_matches('"') != "prometheus.writerequest"
    {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {content_type:?}: only remote write 1.0 (prometheus.WriteRequest) \
                 is accepted"
            ),
        ));
    }
    let encoding = header_str(header::CONTENT_ENCODING).unwrap_or_default();
    if encoding != "snappy" {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Encoding {encoding:?}: remote write 1.0 sends snappy"),
        ));
    }
    let too_large = |size: String| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body is {size} bytes, over http.max_body_bytes ({})",
                state.limits.max_body_bytes
            ),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > state.limits.max_body_bytes as u64
    {
        return Err(too_large(len.to_string()));
    }
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(too_large("more than that".into()));
        }
        Err(r) => {
            return Err(AppError::new(r.status(), "bad_body", r.body_text()));
        }
    };
    if state
        .mapper
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .saturated()
    {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "saturated",
            "mapping.max_open_groups samples wait for the output: retry later",
        ));
    }
    let limits = state.limits;
    let mapper = state.mapper.clone();
    let calls = state.calls.clone();
    // Decoding and mapping are CPU work: off the async workers.
    let decoded = tokio::task::spawn_blocking(move || {
        let request = remote_write::decode(&body, limits)?;
        let n: usize = request.timeseries.iter().map(|t| t.samples.len()).sum();
        metrics::counter!(telemetry::SAMPLES_RECEIVED, "source" => "remote_write")
            .increment(n as u64);
        let series = request.timeseries.iter().map(|t| {
            (
                t.labels.as_slice(),
                t.samples.iter().map(|s| (s.timestamp, s.value)),
            )
        });
        let rest = match &calls {
            Some(c) => c.take_mesh_series(series),
            None => series.collect(),
        };
        let now = crate::now_ms();
        let mut m = mapper.lock().unwrap_or_else(|p| p.into_inner());
        for (labels, samples) in rest {
            m.ingest(labels, samples, now);
        }
        Ok::<(), DecodeError>(())
    })
    .await
    .map_err(|e| {
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("decoding failed: {e}"),
        )
    })?;
    decoded.map_err(|e| match e {
        DecodeError::TooLarge { what, size, limit } => AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{what} is {size} bytes, over the limit of {limit} bytes \
                 (http.max_body_bytes / http.max_decoded_bytes)"
            ),
        ),
        other => AppError::new(StatusCode::BAD_REQUEST, "bad_request", other.to_string()),
    })
}

async fn prometheus(State(state): State<AppState>) -> Response {
    {
        let m = state.mapper.lock().unwrap_or_else(|p| p.into_inner());
        metrics::gauge!(telemetry::SERIES_TRACKED).set(m.series_count() as f64);
        metrics::gauge!(telemetry::OPEN_GROUPS).set(m.open_groups() as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.handle.render(),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let saturated = state
        .mapper
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .saturated();
    if !state.output_ok.load(Ordering::Relaxed) {
        return AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "output_failing",
            "the last publish to the output failed",
        )
        .into_response();
    }
    if saturated {
        return AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "saturated",
            "mapping.max_open_groups groups wait for the output",
        )
        .into_response();
    }
    "ready\n".into_response()
}

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

/// Equality whose time depends on the lengths only, not on where the bytes first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}
