//! The service's own metrics: names, help texts and the few helpers that record them. Every
//! label has a small fixed set of values (topic, kind, state, branch, reason class): no series
//! per entity, so the number of series stays bounded however large the cluster.

use auspex_ingest::Record;
use auspex_model::{Alert, AlertState};

pub const RECORDS_IN: &str = "auspex_records_consumed_total";
pub const SAMPLES: &str = "auspex_samples_total";
pub const TOPOLOGY_EVENTS: &str = "auspex_topology_events_total";
pub const PARSE_ERRORS: &str = "auspex_parse_errors_total";
pub const DEAD_LETTERS: &str = "auspex_dead_letters_total";
pub const CONSUMER_LAG: &str = "auspex_consumer_lag_messages";
pub const PAUSED: &str = "auspex_consumer_paused";
pub const ASSIGNED_PARTITIONS: &str = "auspex_assigned_partitions";
pub const WATERMARK: &str = "auspex_watermark_seconds";
pub const SCORE_SECONDS: &str = "auspex_score_duration_seconds";
pub const WINDOWS_SCORED: &str = "auspex_windows_scored_total";
pub const ALERTS: &str = "auspex_alerts_total";
pub const ALERTS_ACTIVE: &str = "auspex_alerts_active";
pub const ALERT_LATENCY: &str = "auspex_alert_latency_seconds";
pub const ENTITIES: &str = "auspex_entities";
pub const GRAPH_VERTICES: &str = "auspex_graph_vertices";
pub const GRAPH_EDGES: &str = "auspex_graph_edges";
pub const MODEL_INFO: &str = "auspex_model_info";
pub const MODEL_RELOADS: &str = "auspex_model_reloads_total";
pub const OFFSETS_STORED: &str = "auspex_offsets_stored_total";
pub const PRODUCER_IN_FLIGHT: &str = "auspex_producer_in_flight";
// The Alertmanager sink's (crate::alertmanager).
pub const AM_SENT: &str = "auspex_alertmanager_sent_total";
pub const AM_DROPPED: &str = "auspex_alertmanager_dropped_total";
pub const AM_FAILED: &str = "auspex_alertmanager_failed_total";
pub const AM_RETRIES: &str = "auspex_alertmanager_retries_total";

/// Every metric auspex exports: deploy/'s rules and dashboards may name only these.
pub const ALL: [&str; 25] = [
    RECORDS_IN,
    SAMPLES,
    TOPOLOGY_EVENTS,
    PARSE_ERRORS,
    DEAD_LETTERS,
    CONSUMER_LAG,
    PAUSED,
    ASSIGNED_PARTITIONS,
    WATERMARK,
    SCORE_SECONDS,
    WINDOWS_SCORED,
    ALERTS,
    ALERTS_ACTIVE,
    ALERT_LATENCY,
    ENTITIES,
    GRAPH_VERTICES,
    GRAPH_EDGES,
    MODEL_INFO,
    MODEL_RELOADS,
    OFFSETS_STORED,
    PRODUCER_IN_FLIGHT,
    AM_SENT,
    AM_DROPPED,
    AM_FAILED,
    AM_RETRIES,
];

/// Registers help texts with the installed recorder (a no-op without one).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        RECORDS_IN,
        "Records read, by source (topic, or `embedded`)."
    );
    describe_counter!(SAMPLES, "Metric samples applied to the windows.");
    describe_counter!(TOPOLOGY_EVENTS, "Topology events applied to the graph.");
    describe_counter!(
        PARSE_ERRORS,
        "Records that failed to parse or validate, by source."
    );
    describe_counter!(
        DEAD_LETTERS,
        "Records published to the dead-letter sink, by source."
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Messages behind the high watermark, by topic (summed over assigned partitions)."
    );
    describe_gauge!(PAUSED, "1 while consumption is paused for backpressure.");
    describe_gauge!(
        ASSIGNED_PARTITIONS,
        "Partitions of the samples topic assigned to this instance."
    );
    describe_gauge!(
        WATERMARK,
        "Event-time watermark (Unix seconds) the scoring ticks follow."
    );
    describe_histogram!(
        SCORE_SECONDS,
        "Time to score one tick's due entities, by branch: each base branch of the model by name, `meta` (the meta-learners) and `ensemble` (the whole model)."
    );
    describe_counter!(WINDOWS_SCORED, "Entity windows scored.");
    describe_counter!(ALERTS, "Alert messages emitted, by kind and state.");
    describe_gauge!(ALERTS_ACTIVE, "Alerts firing now.");
    describe_histogram!(
        ALERT_LATENCY,
        "Wall time from reading the message that closed a tick to the broker's acknowledgement of the alert."
    );
    describe_gauge!(ENTITIES, "Entities with a window.");
    describe_gauge!(GRAPH_VERTICES, "Vertices of the live topology graph.");
    describe_gauge!(GRAPH_EDGES, "Edges of the live topology graph.");
    describe_gauge!(MODEL_INFO, "1, labelled with the served model's version.");
    describe_counter!(MODEL_RELOADS, "Model reloads, by outcome.");
    describe_counter!(
        OFFSETS_STORED,
        "Offset stores (each after every output of the messages before it was acknowledged)."
    );
    describe_gauge!(
        PRODUCER_IN_FLIGHT,
        "Alerts and dead letters handed to the producer and not yet acknowledged."
    );
}

/// Counts one record read from `source`.
pub fn record_in(record: &Record, source: &str) {
    metrics::counter!(RECORDS_IN, "source" => source.to_string()).increment(1);
    match record {
        Record::Sample(_) => metrics::counter!(SAMPLES).increment(1),
        Record::Topology(_) => metrics::counter!(TOPOLOGY_EVENTS).increment(1),
        Record::DeadLetter(_) => {
            metrics::counter!(PARSE_ERRORS, "source" => source.to_string()).increment(1)
        }
    }
}

/// Counts one alert message.
pub fn record_alert(a: &Alert) {
    let state = match a.state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    };
    metrics::counter!(ALERTS, "kind" => a.kind.as_str(), "state" => state).increment(1);
}
