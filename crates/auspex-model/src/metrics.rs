//! Canonical metric names: the vocabulary the feature extractor understands.
//!
//! Samples may carry any metric name; these are the ones auspex knows the meaning of. Names
//! follow Prometheus conventions: base units in the name, `_total` for monotonic counters
//! (which may reset to zero when a container restarts), `_ratio` for 0..1 fractions.

/// Whether a metric is an instantaneous value or a cumulative counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    /// Monotonic, may reset to zero; features use its rate per second.
    Counter,
}

/// What auspex knows about a canonical metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    pub name: &'static str,
    pub unit: &'static str,
    pub metric_type: MetricType,
    /// For a usage metric: the metric holding its limit (use vs limit, time to exhaustion).
    pub limit: Option<&'static str>,
    pub doc: &'static str,
}

macro_rules! canonical {
    ($( $const:ident = $name:literal, $unit:literal, $ty:ident, $limit:expr, $doc:literal; )*) => {
        $( #[doc = $doc] pub const $const: &str = $name; )*
        /// Every canonical metric, in a fixed order.
        pub const CANONICAL: &[MetricSpec] = &[
            $( MetricSpec { name: $name, unit: $unit, metric_type: MetricType::$ty, limit: $limit, doc: $doc }, )*
        ];
    };
}

canonical! {
    CPU_USAGE_CORES = "cpu_usage_cores", "cores", Gauge, Some("cpu_limit_cores"),
        "CPU in use, in cores (rate of container_cpu_usage_seconds_total).";
    CPU_LIMIT_CORES = "cpu_limit_cores", "cores", Gauge, None,
        "CPU limit in cores (for a node: allocatable cores).";
    CPU_REQUEST_CORES = "cpu_request_cores", "cores", Gauge, None,
        "CPU request in cores.";
    CPU_THROTTLED_RATIO = "cpu_throttled_ratio", "ratio", Gauge, None,
        "Fraction of CFS periods throttled (0..1).";
    MEMORY_WORKING_SET_BYTES = "memory_working_set_bytes", "bytes", Gauge, Some("memory_limit_bytes"),
        "Memory working set in bytes (what the OOM killer looks at).";
    MEMORY_LIMIT_BYTES = "memory_limit_bytes", "bytes", Gauge, None,
        "Memory limit in bytes (for a node: allocatable memory).";
    MEMORY_REQUEST_BYTES = "memory_request_bytes", "bytes", Gauge, None,
        "Memory request in bytes.";
    RESTARTS_TOTAL = "restarts_total", "restarts", Counter, None,
        "Container restarts (kube_pod_container_status_restarts_total).";
    OOM_KILLS_TOTAL = "oom_kills_total", "kills", Counter, None,
        "OOM kills of the entity's containers.";
    READY = "ready", "bool", Gauge, None,
        "1 when the pod (or node) is Ready, else 0.";
    NETWORK_RX_BYTES_TOTAL = "network_rx_bytes_total", "bytes", Counter, None,
        "Bytes received.";
    NETWORK_TX_BYTES_TOTAL = "network_tx_bytes_total", "bytes", Counter, None,
        "Bytes transmitted.";
    NETWORK_RX_ERRORS_TOTAL = "network_rx_errors_total", "packets", Counter, None,
        "Receive errors.";
    NETWORK_TX_ERRORS_TOTAL = "network_tx_errors_total", "packets", Counter, None,
        "Transmit errors.";
    NETWORK_RX_DROPPED_TOTAL = "network_rx_dropped_total", "packets", Counter, None,
        "Received packets dropped.";
    NETWORK_TX_DROPPED_TOTAL = "network_tx_dropped_total", "packets", Counter, None,
        "Transmitted packets dropped.";
    REQUESTS_PER_SECOND = "requests_per_second", "requests/s", Gauge, None,
        "Requests served per second.";
    SUCCESS_RATIO = "success_ratio", "ratio", Gauge, None,
        "Fraction of requests that succeeded (0..1).";
    LATENCY_P50_SECONDS = "latency_p50_seconds", "seconds", Gauge, None,
        "Median server-side request latency.";
    LATENCY_P90_SECONDS = "latency_p90_seconds", "seconds", Gauge, None,
        "90th percentile server-side request latency.";
    LATENCY_P99_SECONDS = "latency_p99_seconds", "seconds", Gauge, None,
        "99th percentile server-side request latency.";
    CLIENT_LATENCY_P99_SECONDS = "client_latency_p99_seconds", "seconds", Gauge, None,
        "99th percentile latency of the entity's outgoing calls, as the caller sees it.";
    NODE_CPU_UTILIZATION_RATIO = "node_cpu_utilization_ratio", "ratio", Gauge, None,
        "CPU utilisation of the node the entity runs on (0..1).";
    NODE_MEMORY_UTILIZATION_RATIO = "node_memory_utilization_ratio", "ratio", Gauge, None,
        "Memory utilisation of the node the entity runs on (0..1).";
}

/// The spec of a canonical metric, if `name` is one.
pub fn spec(name: &str) -> Option<&'static MetricSpec> {
    CANONICAL.iter().find(|s| s.name == name)
}

/// How to treat a metric: canonical ones by their spec, unknown ones by the Prometheus naming
/// convention (`_total` means counter).
pub fn metric_type(name: &str) -> MetricType {
    match spec(name) {
        Some(s) => s.metric_type,
        None if name.ends_with("_total") => MetricType::Counter,
        None => MetricType::Gauge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_limits_exist() {
        let mut names: Vec<_> = CANONICAL.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CANONICAL.len());
        for s in CANONICAL {
            if let Some(l) = s.limit {
                assert!(spec(l).is_some(), "{} names unknown limit {l}", s.name);
            }
            assert_eq!(
                s.metric_type == MetricType::Counter,
                s.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                s.name
            );
        }
        assert_eq!(metric_type("my_requests_total"), MetricType::Counter);
        assert_eq!(metric_type("queue_depth"), MetricType::Gauge);
    }
}
