//! The service's own metrics: names, help texts and the few helpers that record them. Every
//! label has a small fixed set of values (topic, kind, state, branch, reason class): no series
//! per entity, so the number of series stays bounded however large the cluster.
//!
//! Two families break that rule on purpose, both capped and both rendered at scrape time from
//! the alerts firing then ([`render_firing`]), so a resolved alert's series is simply gone:
//! `auspex_alerts_firing{kind,namespace}` (at most `http.metrics_namespaces` namespaces, the
//! rest folded into `(other)`) and `auspex_alert_probability{entity,kind,namespace}` (the
//! `http.metrics_top_alerts` most probable alerts firing, like Prometheus's own `ALERTS`).
//! What a cap leaves out is counted in `auspex_metric_series_capped{metric}`.

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
pub const ALERT_LEAD_TIME: &str = "auspex_alert_lead_time_seconds";
// Rendered at scrape time from the firing alerts (render_firing).
pub const ALERTS_FIRING: &str = "auspex_alerts_firing";
pub const ALERT_PROBABILITY: &str = "auspex_alert_probability";
pub const SERIES_CAPPED: &str = "auspex_metric_series_capped";
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
pub const ALL: [&str; 29] = [
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
    ALERT_LEAD_TIME,
    ALERTS_FIRING,
    ALERT_PROBABILITY,
    SERIES_CAPPED,
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
    describe_counter!(
        "auspex_keda_requests_total",
        "Calls of KEDA's external scaler, by method and outcome (ok, invalid_argument, not_found, unavailable)."
    );
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
    describe_histogram!(
        ALERT_LEAD_TIME,
        "Predicted time to incident of each alert as it fires, by kind (alerts without a prediction are left out)."
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

/// Buckets of [`ALERT_LEAD_TIME`]: predictions run from about a minute to an hour ahead.
pub const LEAD_TIME_BUCKETS: [f64; 10] = [
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// Counts one alert message; a firing one's predicted lead time joins the histogram.
pub fn record_alert(a: &Alert) {
    let state = match a.state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    };
    metrics::counter!(ALERTS, "kind" => a.kind.as_str(), "state" => state).increment(1);
    if let (AlertState::Firing, Some(lead)) = (a.state, a.time_to_incident_seconds) {
        metrics::histogram!(ALERT_LEAD_TIME, "kind" => a.kind.as_str()).record(lead.max(0.0));
    }
}

/// The namespace label of an alert's entity: `(cluster)` for nodes. Parentheses cannot occur in
/// a Kubernetes namespace, so neither this nor `(other)` can collide with a real one.
fn namespace_of(a: &Alert) -> &str {
    a.entity.namespace.as_deref().unwrap_or("(cluster)")
}

/// The value of an overflowed namespace label.
pub const OTHER_NAMESPACE: &str = "(other)";

/// A label value escaped for the text exposition format.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text of the families computed from the alerts firing now: at most
/// `max_namespaces` namespaces in [`ALERTS_FIRING`] (those with the most alerts; the rest summed
/// under `(other)`), the `top` most probable alerts in [`ALERT_PROBABILITY`], and what either
/// cap left out in [`SERIES_CAPPED`]. `/metrics` appends it to the recorder's output.
pub fn render_firing(firing: &[Alert], max_namespaces: usize, top: usize) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let mut per_ns: BTreeMap<&str, usize> = BTreeMap::new();
    for a in firing {
        *per_ns.entry(namespace_of(a)).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = per_ns.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let kept: std::collections::BTreeSet<&str> = ranked
        .iter()
        .take(max_namespaces)
        .map(|(ns, _)| *ns)
        .collect();
    let folded = ranked.len().saturating_sub(max_namespaces);
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for a in firing {
        let ns = namespace_of(a);
        let ns = if kept.contains(ns) {
            ns
        } else {
            OTHER_NAMESPACE
        };
        *counts.entry((a.kind.as_str(), ns)).or_default() += 1;
    }
    let mut by_probability: Vec<&Alert> = firing.iter().collect();
    by_probability.sort_by(|a, b| {
        b.probability
            .total_cmp(&a.probability)
            .then_with(|| a.id.cmp(&b.id))
    });
    let shown = by_probability.len().min(top);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP {ALERTS_FIRING} Alerts firing now, by kind and namespace (namespaces past the cap summed under `(other)`; nodes under `(cluster)`).\n# TYPE {ALERTS_FIRING} gauge"
    );
    for ((kind, ns), n) in counts {
        let _ = writeln!(
            out,
            "{ALERTS_FIRING}{{kind=\"{kind}\",namespace=\"{}\"}} {n}",
            escape(ns)
        );
    }
    let _ = writeln!(
        out,
        "# HELP {ALERT_PROBABILITY} Probability of each alert firing now, for the most probable ones only; gone once it resolves.\n# TYPE {ALERT_PROBABILITY} gauge"
    );
    for a in &by_probability[..shown] {
        let _ = writeln!(
            out,
            "{ALERT_PROBABILITY}{{entity=\"{}\",kind=\"{}\",namespace=\"{}\"}} {}",
            escape(a.entity.id().as_str()),
            a.kind.as_str(),
            escape(namespace_of(a)),
            a.probability
        );
    }
    let _ = writeln!(
        out,
        "# HELP {SERIES_CAPPED} Label values (namespaces) or series (alerts) a capped family left out at this scrape.\n# TYPE {SERIES_CAPPED} gauge"
    );
    let _ = writeln!(
        out,
        "{SERIES_CAPPED}{{metric=\"{ALERTS_FIRING}\"}} {folded}\n{SERIES_CAPPED}{{metric=\"{ALERT_PROBABILITY}\"}} {}",
        by_probability.len() - shown
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use auspex_model::{AnomalyKind, EntityKind, EntityRef, Severity};

    fn firing(ns: Option<&str>, name: &str, kind: AnomalyKind, p: f64) -> Alert {
        let entity = match ns {
            Some(ns) => EntityRef::new(EntityKind::Pod, Some(ns), name),
            None => EntityRef::node(name),
        };
        Alert {
            id: Alert::stable_id(&entity, kind, 0),
            timestamp_ms: 0,
            starts_at_ms: 0,
            entity,
            kind,
            state: AlertState::Firing,
            probability: p,
            severity: Severity::Critical,
            time_to_incident_seconds: Some(600.0),
            model_version: "m".into(),
            branch_scores: Default::default(),
            branch_weights: Default::default(),
            top_features: Vec::new(),
            neighbours: Vec::new(),
            action: None,
        }
    }

    /// The value of the exposition line that starts with `series ` (`None` when absent).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{series} ")))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn namespaces_past_the_cap_fold_into_other_and_only_the_top_alerts_show() {
        use AnomalyKind::*;
        let alerts = vec![
            firing(Some("shop"), "a", MemoryExhaustion, 0.9),
            firing(Some("shop"), "b", MemoryExhaustion, 0.7),
            firing(Some("shop"), "c", PodFailure, 0.6),
            firing(Some("pay"), "d", PodFailure, 0.95),
            firing(Some("pay"), "e", CpuExhaustion, 0.5),
            firing(Some("tiny"), "f", PodFailure, 0.8),
            firing(None, "n1", NetworkIssue, 0.99),
        ];
        let text = render_firing(&alerts, 2, 3);
        let f = |kind: &str, ns: &str| {
            value(
                &text,
                &format!("{ALERTS_FIRING}{{kind=\"{kind}\",namespace=\"{ns}\"}}"),
            )
        };
        // shop (3) and pay (2) keep their names; tiny and the node's (cluster) fold.
        assert_eq!(f("memory_exhaustion", "shop"), Some(2.0), "{text}");
        assert_eq!(f("pod_failure", "shop"), Some(1.0), "{text}");
        assert_eq!(f("pod_failure", "pay"), Some(1.0), "{text}");
        assert_eq!(f("cpu_exhaustion", "pay"), Some(1.0), "{text}");
        assert_eq!(f("pod_failure", OTHER_NAMESPACE), Some(1.0), "{text}");
        assert_eq!(f("network_issue", OTHER_NAMESPACE), Some(1.0), "{text}");
        assert_eq!(f("pod_failure", "tiny"), None, "{text}");
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with(ALERTS_FIRING))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(total, alerts.len() as f64);
        // The three most probable, no more.
        let shown: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{ALERT_PROBABILITY}{{")))
            .collect();
        assert_eq!(shown.len(), 3, "{text}");
        assert!(
            shown.iter().any(|l| l.contains("entity=\"node/n1\"")
                && l.contains("namespace=\"(cluster)\"")
                && l.ends_with(" 0.99")),
            "{shown:?}"
        );
        assert!(shown.iter().any(|l| l.ends_with(" 0.95")), "{shown:?}");
        assert!(shown.iter().any(|l| l.ends_with(" 0.9")), "{shown:?}");
        let capped = |m: &str| value(&text, &format!("{SERIES_CAPPED}{{metric=\"{m}\"}}"));
        assert_eq!(capped(ALERTS_FIRING), Some(2.0));
        assert_eq!(capped(ALERT_PROBABILITY), Some(4.0));
    }

    #[test]
    fn no_alert_firing_leaves_no_series_but_the_capped_counts() {
        let text = render_firing(&[], 10, 10);
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with(ALERTS_FIRING) || l.starts_with(ALERT_PROBABILITY)),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                &format!("{SERIES_CAPPED}{{metric=\"{ALERTS_FIRING}\"}}")
            ),
            Some(0.0)
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
