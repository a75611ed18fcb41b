//! auspex's KEDA external scaler: KEDA's `externalscaler` gRPC interface (`IsActive`,
//! `StreamIsActive`, `GetMetricSpec`, `GetMetrics`), answered from auspex's demand forecasts,
//! so that a `ScaledObject` with a trigger of `type: external` scales a workload on what it
//! will need at `now + horizon` instead of what it uses now.
//!
//! With KEDA's default `AverageValue` metric type the HPA that KEDA manages runs
//! `ceil(forecast / targetPerPod)` replicas: [`GetMetricSpec`](proto) answers the trigger's
//! `targetPerPod`, [`GetMetrics`](proto) the forecast of the workload's total demand.
//!
//! The trigger's metadata ([`Trigger::parse`]):
//!
//! | key | | meaning |
//! |---|---|---|
//! | `workload` | required | `name` (in the ScaledObject's namespace) or `namespace/name` of a Deployment / StatefulSet |
//! | `resource` | required | `cpu` (cores), `memory` (bytes) or `requests` (requests per second) |
//! | `targetPerPod` | required | what one pod should carry: a Kubernetes quantity (`500m` cores, `512Mi` bytes, `40` requests/s) |
//! | `horizon` | optional | one of the served horizons (`5m`, `15m`, `30m` by default); default the shortest |
//! | `quantile` | optional | one of the served quantiles (`p50`, `p90`, or `0.9`); default p90, else the highest |
//! | `activationValue` | optional | the workload is active while its forecast is above this quantity; default 0 |
//!
//! KEDA's own keys for reaching the scaler (`scalerAddress`, `caCert`, `tlsCertFile`,
//! `tlsClientCert`, `tlsClientKey`, `unsafeSsl`, `enableTLS`) are ignored; any other key is an
//! error that names it, so a misspelt `targetPerPod` is not silently a default. Errors are
//! gRPC statuses: `InvalidArgument` for metadata (naming the key and why), `NotFound` for a
//! workload auspex does not know, `Unavailable` while a known workload has too little history
//! to forecast. auspex only answers; it never writes to the cluster.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

/// The generated messages and server (from `proto/externalscaler.proto`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("externalscaler");
}

/// A demand auspex forecasts for a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// CPU, in cores.
    Cpu,
    /// Memory working set, in bytes.
    Memory,
    /// Requests per second.
    Requests,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Cpu, Resource::Memory, Resource::Requests];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Requests => "requests",
        }
    }

    /// The unit forecasts and targets of this resource are in.
    pub fn unit(self) -> &'static str {
        match self {
            Resource::Cpu => "cores",
            Resource::Memory => "bytes",
            Resource::Requests => "requests per second",
        }
    }

    pub fn parse(s: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A workload (Deployment / StatefulSet) by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a forecast cannot be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unavailable {
    /// auspex has no such workload (not in the topology yet, or deleted).
    #[error("workload {0} is not known to auspex (not in the topology it follows)")]
    UnknownWorkload(Workload),
    /// The workload is known but cannot be forecast yet; the reason says why.
    #[error("{0}")]
    NotReady(String),
}

/// Where the scaler's numbers come from: auspex's demand forecasts.
pub trait Forecasts: Send + Sync + 'static {
    /// The horizons forecast, in seconds, ascending.
    fn horizons_s(&self) -> Vec<u64>;
    /// The quantiles forecast, in (0, 1), ascending.
    fn quantiles(&self) -> Vec<f64>;
    /// The `quantile` of `workload`'s total demand for `resource` at `now + horizon_s`
    /// (`horizon_s` and `quantile` are among those served).
    fn forecast(
        &self,
        workload: &Workload,
        resource: Resource,
        horizon_s: u64,
        quantile: f64,
    ) -> Result<f64, Unavailable>;
}

/// `[keda]`: the external scaler's gRPC listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KedaConfig {
    /// Address and port for KEDA's gRPC calls (`ip:port`, e.g. `0.0.0.0:9465`); empty (the
    /// default) runs no scaler.
    pub listen: String,
    /// How often, in milliseconds, an open `StreamIsActive` re-evaluates the workload's
    /// activity; it sends only changes (and the first answer at once).
    pub stream_interval_ms: u64,
}

impl Default for KedaConfig {
    fn default() -> Self {
        KedaConfig {
            listen: String::new(),
            stream_interval_ms: 5_000,
        }
    }
}

impl KedaConfig {
    /// The address to listen on; `None` when the scaler is off. Errors name the key.
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|e| {
            format!(
                "keda.listen: expected ip:port (e.g. 0.0.0.0:9465), got {:?}: {e}",
                self.listen
            )
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.listen_addr()?;
        if self.stream_interval_ms == 0 {
            return Err("keda.stream_interval_ms: must be > 0".into());
        }
        Ok(())
    }
}

/// Metadata keys KEDA itself uses to reach an external scaler; passed along, ignored here.
const KEDA_KEYS: [&str; 7] = [
    "scalerAddress",
    "caCert",
    "tlsCertFile",
    "tlsClientCert",
    "tlsClientKey",
    "unsafeSsl",
    "enableTLS",
];

/// auspex's own metadata keys.
const KEYS: [&str; 6] = [
    "workload",
    "resource",
    "targetPerPod",
    "horizon",
    "quantile",
    "activationValue",
];

/// Bad trigger metadata: which key, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("scaler metadata `{key}`: {reason}")]
pub struct MetadataError {
    pub key: String,
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> MetadataError {
    MetadataError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// One ScaledObject trigger, parsed and checked against what is served.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub workload: Workload,
    pub resource: Resource,
    pub target_per_pod: f64,
    pub horizon_s: u64,
    pub quantile: f64,
    pub activation: f64,
}

impl Trigger {
    /// Parses a ScaledObject's trigger metadata; `horizons_s` and `quantiles` are those the
    /// forecasts serve.
    pub fn parse(
        so: &ScaledObjectRef,
        horizons_s: &[u64],
        quantiles: &[f64],
    ) -> Result<Trigger, MetadataError> {
        let meta = &so.scaler_metadata;
        let mut unknown: Vec<&String> = meta
            .keys()
            .filter(|k| !KEYS.contains(&k.as_str()) && !KEDA_KEYS.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some(k) = unknown.first() {
            return Err(bad(
                k,
                format!("unknown key; auspex reads {}", KEYS.join(", ")),
            ));
        }
        let get = |k: &str| meta.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let required = |k: &str| get(k).ok_or_else(|| bad(k, "required"));

        let workload = {
            let w = required("workload")?;
            let (namespace, name) = match w.split_once('/') {
                Some((ns, name)) => (ns, name),
                None if !so.namespace.is_empty() => (so.namespace.as_str(), w),
                None => {
                    return Err(bad(
                        "workload",
                        format!(
                            "{w:?} has no namespace and the ScaledObject names none: use namespace/name"
                        ),
                    ));
                }
            };
            if !is_dns_label(namespace) || !is_dns_subdomain(name) {
                return Err(bad(
                    "workload",
                    format!("{w:?} is not a Kubernetes namespace/name"),
                ));
            }
            Workload {
                namespace: namespace.into(),
                name: name.into(),
            }
        };
        let resource = {
            let r = required("resource")?;
            Resource::parse(r).ok_or_else(|| {
                bad(
                    "resource",
                    format!("expected cpu, memory or requests, got {r:?}"),
                )
            })?
        };
        let quantity = |k: &str, v: &str| {
            parse_quantity(v).ok_or_else(|| {
                bad(
                    k,
                    format!(
                        "expected a Kubernetes quantity in {} (e.g. 500m, 2, 512Mi), got {v:?}",
                        resource.unit()
                    ),
                )
            })
        };
        let target_per_pod = {
            let v = required("targetPerPod")?;
            let t = quantity("targetPerPod", v)?;
            if !(t > 0.0 && t.is_finite()) {
                return Err(bad("targetPerPod", format!("must be > 0, got {v:?}")));
            }
            t
        };
        let activation = match get("activationValue") {
            None => 0.0,
            Some(v) => {
                let a = quantity("activationValue", v)?;
                if !(a >= 0.0 && a.is_finite()) {
                    return Err(bad("activationValue", format!("must be >= 0, got {v:?}")));
                }
                a
            }
        };
        let horizon_s = match get("horizon") {
            None => *horizons_s
                .first()
                .ok_or_else(|| bad("horizon", "auspex serves no horizons"))?,
            Some(v) => {
                let h = parse_duration_s(v).ok_or_else(|| {
                    bad(
                        "horizon",
                        format!("expected a duration such as 15m, 900s or 1h, got {v:?}"),
                    )
                })?;
                if !horizons_s.contains(&h) {
                    return Err(bad(
                        "horizon",
                        format!(
                            "{v:?} is not forecast; auspex serves {}",
                            horizons_s
                                .iter()
                                .map(|h| show_duration(*h))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                h
            }
        };
        let served = |q: f64| quantiles.iter().copied().find(|s| (s - q).abs() < 1e-9);
        let quantile = match get("quantile") {
            None => served(0.9)
                .or_else(|| quantiles.last().copied())
                .ok_or_else(|| bad("quantile", "auspex serves no quantiles"))?,
            Some(v) => {
                let q = parse_quantile(v).ok_or_else(|| {
                    bad(
                        "quantile",
                        format!("expected p50, p90 or a fraction such as 0.9, got {v:?}"),
                    )
                })?;
                served(q).ok_or_else(|| {
                    bad(
                        "quantile",
                        format!(
                            "{v:?} is not forecast; auspex serves {}",
                            quantiles
                                .iter()
                                .map(|q| show_quantile(*q))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?
            }
        };
        Ok(Trigger {
            workload,
            resource,
            target_per_pod,
            horizon_s,
            quantile,
            activation,
        })
    }

    /// The metric's name, as the HPA shows it: `auspex-<resource>-<quantile>-<horizon>-<namespace>-<name>`.
    pub fn metric_name(&self) -> String {
        format!(
            "auspex-{}-{}-{}-{}-{}",
            self.resource.as_str(),
            show_quantile(self.quantile),
            show_duration(self.horizon_s),
            self.workload.namespace,
            self.workload.name
        )
        .to_ascii_lowercase()
        .replace('.', "-")
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A Kubernetes quantity (`500m`, `2`, `1.5`, `512Mi`, `1G`, `1e3`) as a number.
pub fn parse_quantity(s: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let s = s.trim();
    let plain = |n: &str| {
        (!n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)))
        .then(|| n.parse::<f64>().ok())
        .flatten()
        .filter(|v| v.is_finite())
    };
    if let Some(v) = plain(s) {
        return Some(v);
    }
    SUFFIXES.iter().find_map(|(suffix, scale)| {
        s.strip_suffix(suffix)
            .and_then(|n| plain(n).filter(|_| !n.ends_with(['e', 'E'])))
            .map(|v| v * scale)
    })
}

/// `15m`, `900s`, `1h`, `90` (seconds) as seconds.
pub fn parse_duration_s(s: &str) -> Option<u64> {
    let s = s.trim();
    let (n, scale) = match s.as_bytes().last()? {
        b's' => (&s[..s.len() - 1], 1),
        b'm' => (&s[..s.len() - 1], 60),
        b'h' => (&s[..s.len() - 1], 3600),
        _ => (s, 1),
    };
    n.parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(scale))
        .filter(|v| *v > 0)
}

/// `p90`, `P90`, `p99.9` or `0.9` as a fraction in (0, 1).
pub fn parse_quantile(s: &str) -> Option<f64> {
    let s = s.trim();
    let q = match s.strip_prefix(['p', 'P']) {
        Some(pct) => pct.parse::<f64>().ok()? / 100.0,
        None => s.parse::<f64>().ok()?,
    };
    // 99.9 / 100 is 0.9990000000000001 in binary: round off the division's noise.
    let q = (q * 1e9).round() / 1e9;
    (q > 0.0 && q < 1.0).then_some(q)
}

/// `900` -> `15m`, `3600` -> `1h`, `90` -> `90s`.
pub fn show_duration(s: u64) -> String {
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// `0.9` -> `p90`, `0.999` -> `p99.9`.
pub fn show_quantile(q: f64) -> String {
    let pct = (q * 1000.0).round() / 10.0;
    format!("p{pct}")
}

/// The gRPC service.
pub struct Scaler {
    forecasts: Arc<dyn Forecasts>,
    stream_interval: Duration,
    stopping: watch::Receiver<bool>,
}

impl Scaler {
    fn trigger(&self, so: &ScaledObjectRef) -> Result<Trigger, Status> {
        Trigger::parse(
            so,
            &self.forecasts.horizons_s(),
            &self.forecasts.quantiles(),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

fn forecast(f: &dyn Forecasts, t: &Trigger) -> Result<f64, Status> {
    f.forecast(&t.workload, t.resource, t.horizon_s, t.quantile)
        .map_err(|e| match e {
            Unavailable::UnknownWorkload(_) => Status::not_found(e.to_string()),
            Unavailable::NotReady(_) => Status::unavailable(e.to_string()),
        })
}

fn active(f: &dyn Forecasts, t: &Trigger) -> Result<bool, Status> {
    forecast(f, t).map(|v| v > t.activation)
}

/// Counts a call by method and outcome (`auspex_keda_requests_total{method, code}`).
fn counted<T>(method: &'static str, r: Result<T, Status>) -> Result<T, Status> {
    let code = match &r {
        Ok(_) => "ok",
        Err(s) => match s.code() {
            tonic::Code::InvalidArgument => "invalid_argument",
            tonic::Code::NotFound => "not_found",
            tonic::Code::Unavailable => "unavailable",
            _ => "other",
        },
    };
    metrics::counter!("auspex_keda_requests_total", "method" => method, "code" => code)
        .increment(1);
    if let Err(s) = &r {
        tracing::debug!(method, code = ?s.code(), message = s.message(), "keda request refused");
    }
    r
}

type ActivityStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        counted(
            "IsActive",
            self.trigger(request.get_ref())
                .and_then(|t| active(&*self.forecasts, &t))
                .map(|result| Response::new(IsActiveResponse { result })),
        )
    }

    type StreamIsActiveStream = ActivityStream;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<ActivityStream>, Status> {
        // Bad metadata or an unknown workload fail the call itself, not a later message.
        let trigger = counted("StreamIsActive", {
            let t = self.trigger(request.get_ref());
            t.and_then(|t| active(&*self.forecasts, &t).map(|_| t))
        })?;
        struct State {
            forecasts: Arc<dyn Forecasts>,
            trigger: Trigger,
            every: Duration,
            stopping: watch::Receiver<bool>,
            last: Option<bool>,
            done: bool,
        }
        let state = State {
            forecasts: self.forecasts.clone(),
            trigger,
            every: self.stream_interval,
            stopping: self.stopping.clone(),
            last: None,
            done: false,
        };
        // The first answer at once, then only changes; an error ends the stream, and so does
        // the server stopping (a graceful shutdown waits for open streams).
        let stream = futures::stream::unfold(state, |mut s| async move {
            if s.done {
                return None;
            }
            loop {
                if s.last.is_some() {
                    tokio::select! {
                        _ = tokio::time::sleep(s.every) => {}
                        _ = s.stopping.wait_for(|stop| *stop) => return None,
                    }
                }
                match active(&*s.forecasts, &s.trigger) {
                    Ok(a) if Some(a) == s.last => continue,
                    Ok(a) => {
                        s.last = Some(a);
                        return Some((Ok(IsActiveResponse { result: a }), s));
                    }
                    Err(e) => {
                        s.done = true;
                        return Some((Err(e), s));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        counted(
            "GetMetricSpec",
            self.trigger(request.get_ref()).map(|t| {
                Response::new(GetMetricSpecResponse {
                    metric_specs: vec![MetricSpec {
                        metric_name: t.metric_name(),
                        target_size: t.target_per_pod.ceil() as i64,
                        target_size_float: t.target_per_pod,
                    }],
                })
            }),
        )
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let r = request.get_ref();
        let so = r
            .scaled_object_ref
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("GetMetrics: scaledObjectRef is required"));
        counted(
            "GetMetrics",
            so.and_then(|so| self.trigger(so)).and_then(|t| {
                let v = forecast(&*self.forecasts, &t)?;
                // KEDA asks by the name GetMetricSpec gave; answer under the name it used.
                let metric_name = if r.metric_name.is_empty() {
                    t.metric_name()
                } else {
                    r.metric_name.clone()
                };
                Ok(Response::new(GetMetricsResponse {
                    metric_values: vec![MetricValue {
                        metric_name,
                        metric_value: v.ceil() as i64,
                        metric_value_float: v,
                    }],
                }))
            }),
        )
    }
}

/// Serves the scaler on `listener` until `shutdown` completes; open `StreamIsActive` streams
/// end then, and the server drains.
pub async fn serve(
    listener: TcpListener,
    forecasts: Arc<dyn Forecasts>,
    config: &KedaConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (stop, stopping) = watch::channel(false);
    let scaler = Scaler {
        forecasts,
        stream_interval: Duration::from_millis(config.stream_interval_ms),
        stopping,
    };
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(64)
        .add_service(ExternalScalerServer::new(scaler))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async move {
                shutdown.await;
                let _ = stop.send(true);
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn so(pairs: &[(&str, &str)]) -> ScaledObjectRef {
        ScaledObjectRef {
            name: "cart".into(),
            namespace: "shop".into(),
            scaler_metadata: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    const H: [u64; 3] = [300, 900, 1800];
    const Q: [f64; 2] = [0.5, 0.9];

    #[test]
    fn a_full_trigger_parses() {
        let t = Trigger::parse(
            &so(&[
                ("scalerAddress", "auspex.auspex:9465"),
                ("workload", "payments/api"),
                ("resource", "cpu"),
                ("targetPerPod", "500m"),
                ("horizon", "15m"),
                ("quantile", "p50"),
                ("activationValue", "100m"),
            ]),
            &H,
            &Q,
        )
        .unwrap();
        assert_eq!(t.workload.to_string(), "payments/api");
        assert_eq!(t.resource, Resource::Cpu);
        assert!((t.target_per_pod - 0.5).abs() < 1e-12);
        assert!((t.activation - 0.1).abs() < 1e-12);
        assert_eq!((t.horizon_s, t.quantile), (900, 0.5));
        assert_eq!(t.metric_name(), "auspex-cpu-p50-15m-payments-api");
    }

    #[test]
    fn defaults_are_the_scaled_objects_namespace_the_shortest_horizon_and_p90() {
        let t = Trigger::parse(
            &so(&[
                ("workload", "cart"),
                ("resource", "memory"),
                ("targetPerPod", "512Mi"),
            ]),
            &H,
            &Q,
        )
        .unwrap();
        assert_eq!(t.workload.to_string(), "shop/cart");
        assert_eq!((t.horizon_s, t.quantile, t.activation), (300, 0.9, 0.0));
        assert_eq!(t.target_per_pod, 512.0 * 1048576.0);
    }

    #[test]
    fn bad_metadata_names_the_key() {
        let base = [
            ("workload", "cart"),
            ("resource", "cpu"),
            ("targetPerPod", "1"),
        ];
        let with = |k: &str, v: &str| {
            let mut m: Vec<(&str, &str)> = base.iter().copied().filter(|(x, _)| *x != k).collect();
            if !v.is_empty() {
                m.push((k, v));
            }
            Trigger::parse(&so(&m), &H, &Q).unwrap_err()
        };
        for (key, value, says) in [
            ("workload", "", "required"),
            ("workload", "Shop/Cart", "not a Kubernetes"),
            ("resource", "gpu", "expected cpu, memory or requests"),
            ("resource", "", "required"),
            ("targetPerPod", "lots", "Kubernetes quantity"),
            ("targetPerPod", "0", "must be > 0"),
            ("targetPerPod", "-1", "must be > 0"),
            ("horizon", "10m", "auspex serves 5m, 15m, 30m"),
            ("horizon", "soon", "expected a duration"),
            ("quantile", "p95", "auspex serves p50, p90"),
            ("quantile", "1.5", "expected p50"),
            ("activationValue", "-2", "must be >= 0"),
            ("targetPerPd", "1", "unknown key"),
        ] {
            let e = with(key, value);
            assert_eq!(e.key, key, "{key}={value:?}: {e}");
            assert!(e.to_string().contains(says), "{key}={value:?}: {e}");
        }
        // No namespace anywhere.
        let mut o = so(&base);
        o.namespace.clear();
        let e = Trigger::parse(&o, &H, &Q).unwrap_err();
        assert!(e.reason.contains("namespace/name"), "{e}");
    }

    #[test]
    fn quantities_durations_and_quantiles() {
        for (s, v) in [
            ("2", 2.0),
            ("1.5", 1.5),
            ("250m", 0.25),
            ("1k", 1e3),
            ("1Ki", 1024.0),
            ("2Gi", 2.0 * 1073741824.0),
            ("1e3", 1e3),
            ("3M", 3e6),
        ] {
            assert_eq!(parse_quantity(s), Some(v), "{s}");
        }
        for s in ["", "m", "1x", "Mi", "1eM", "NaN", "inf"] {
            assert_eq!(parse_quantity(s), None, "{s}");
        }
        assert_eq!(parse_duration_s("15m"), Some(900));
        assert_eq!(parse_duration_s("1h"), Some(3600));
        assert_eq!(parse_duration_s("90"), Some(90));
        assert_eq!(parse_duration_s("0s"), None);
        assert_eq!(parse_quantile("p99.9"), Some(0.999));
        assert_eq!(parse_quantile("0.9"), Some(0.9));
        assert_eq!(parse_quantile("p100"), None);
        assert_eq!(show_quantile(0.999), "p99.9");
        assert_eq!(show_duration(5400), "90m");
    }

    #[test]
    fn config_errors_name_the_key() {
        let c = KedaConfig {
            listen: "nowhere".into(),
            ..KedaConfig::default()
        };
        assert!(c.validate().unwrap_err().starts_with("keda.listen"));
        let c = KedaConfig {
            stream_interval_ms: 0,
            ..KedaConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("keda.stream_interval_ms")
        );
        assert_eq!(KedaConfig::default().listen_addr(), Ok(None));
    }
}
