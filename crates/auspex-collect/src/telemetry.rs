//! `collect`'s own metrics. Every label has a small fixed set of values (a drop reason, an HTTP
//! status class, a poll result): no series per entity or per scraped series.

pub const SERIES_DROPPED: &str = "auspex_collect_series_dropped_total";
pub const SAMPLES_RECEIVED: &str = "auspex_collect_samples_received_total";
pub const WRITE_REQUESTS: &str = "auspex_collect_write_requests_total";
pub const SAMPLES_PUBLISHED: &str = "auspex_collect_samples_published_total";
pub const PUBLISH_FAILED: &str = "auspex_collect_publish_failed_total";
pub const SERIES_TRACKED: &str = "auspex_collect_series_tracked";
pub const OPEN_GROUPS: &str = "auspex_collect_open_groups";
pub const POLLS: &str = "auspex_collect_polls_total";
pub const TOPOLOGY_PUBLISHED: &str = "auspex_collect_topology_events_published_total";
pub const TOPOLOGY_FAILED: &str = "auspex_collect_topology_events_failed_total";
pub const CALL_EDGE_EVENTS: &str = "auspex_collect_call_edge_events_published_total";
pub const CALL_SERIES_DROPPED: &str = "auspex_collect_call_series_dropped_total";
pub const CALL_EDGES: &str = "auspex_collect_call_edges";

/// Every metric `collect` exports.
pub const ALL: [&str; 13] = [
    SERIES_DROPPED,
    SAMPLES_RECEIVED,
    WRITE_REQUESTS,
    SAMPLES_PUBLISHED,
    PUBLISH_FAILED,
    SERIES_TRACKED,
    OPEN_GROUPS,
    POLLS,
    TOPOLOGY_PUBLISHED,
    TOPOLOGY_FAILED,
    CALL_EDGE_EVENTS,
    CALL_SERIES_DROPPED,
    CALL_EDGES,
];

/// Registers help texts with the installed recorder (a no-op without one).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        SERIES_DROPPED,
        "Prometheus samples not used, by reason (unknown_metric, missing_labels, stale_marker, \
         invalid, out_of_order, late, series_limit, group_limit)."
    );
    describe_counter!(
        SAMPLES_RECEIVED,
        "Prometheus samples received, by source (remote_write or query)."
    );
    describe_counter!(
        WRITE_REQUESTS,
        "Remote-write requests answered, by status code."
    );
    describe_counter!(
        SAMPLES_PUBLISHED,
        "Metric samples written to the output (Kafka acknowledged, or NDJSON written)."
    );
    describe_counter!(
        PUBLISH_FAILED,
        "Metric samples the output failed to take (Kafka delivery failed after retries)."
    );
    describe_gauge!(
        SERIES_TRACKED,
        "Prometheus series with state (rates, dedup)."
    );
    describe_gauge!(
        OPEN_GROUPS,
        "(entity, bucket) groups waiting to be flushed."
    );
    describe_counter!(
        TOPOLOGY_PUBLISHED,
        "Topology events (the Kubernetes watcher's and the call edges') written to the output."
    );
    describe_counter!(
        TOPOLOGY_FAILED,
        "Topology events the output failed to take; the batch is retried, holding the watcher \
         back meanwhile."
    );
    describe_counter!(
        CALL_EDGE_EVENTS,
        "Call-edge events (from the mesh's request counters) written to the output, by change \
         (upsert_edge or delete_edge); also counted in the topology events published."
    );
    describe_counter!(
        CALL_SERIES_DROPPED,
        "Samples of mesh request-counter series not tracked because calls.max_series series are."
    );
    describe_gauge!(
        CALL_EDGES,
        "Live call edges (a counter grew within calls.expire_after_secs)."
    );
    describe_counter!(
        POLLS,
        "Queries of the Prometheus HTTP API in scrape mode, by result (ok or error)."
    );
}
