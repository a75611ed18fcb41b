//! Nezha's OnlineBoutique data (FSE 2023): per day, per-pod metrics a minute
//! (`<day>/metric/<pod>_metric.csv`), the frontend's service-level metrics
//! (`front_service.csv`), the call and placement graph (`dependency.csv`) and injected faults
//! (`fault_list.json`).
//!
//! Mapping decisions:
//! - Entities: each pod is a `pod` in namespace `hipster` (the name Nezha's own
//!   `root_cause_hipster.json` uses), named as in the file; its service and workload are the
//!   deployment prefix (`cartservice-579f59597d-wc2lz` → `cartservice`); its node is the IP
//!   `dependency.csv` places its service on. Nodes are `node` entities named by IP.
//! - Time: the `Time` strings are UTC (`... +0000 UTC`), and so is `inject_time` (it equals
//!   `inject_timestamp` read as UTC for 55 of the 56 faults). Rows are aligned on `Time`, never
//!   on `TimeStamp` (adservice's is off by +2e8 s on 2022-08-22): rows of one minute, across
//!   pods and the frontend file, get one timestamp, the earliest `Time` of that minute
//!   truncated to the second, so every entity's sample of a scrape shares an instant.
//! - Metrics (pod files):
//!   - `CpuUsage(m)` / 1000 → `cpu_usage_cores`; `MemoryUsage(Mi)` × 2^20 →
//!     `memory_working_set_bytes`;
//!   - `NetworkReceiveBytes` / `NetworkTransmitBytes` are per-second rates in the data (not
//!     cumulative: half the steps go down, values are fractional): they are kept under their
//!     own names and also integrated over the row interval into the counters
//!     `network_rx_bytes_total` / `network_tx_bytes_total` (starting at 0 each day), whose rate
//!     is the data's rate;
//!   - `PodServerLatencyP90(s)` / `P99(s)` → `latency_p90_seconds` / `latency_p99_seconds`;
//!     `PodClientLatencyP99(s)` → `client_latency_p99_seconds`;
//!   - `PodWorkload(Ops)` → `requests_per_second` (fractional values in fifteenths: a rate per
//!     second, not a count per minute);
//!   - `NodeCpuUsageRate(%)` / `NodeMemoryUsageRate(%)` / 100 →
//!     `node_cpu_utilization_ratio` / `node_memory_utilization_ratio`;
//!   - `PodSuccessRate(%)` is 0 in every row of both days, so it is *not* mapped to
//!     `success_ratio` (that would claim every request fails); it is kept under its own name;
//!   - the rest (`CpuUsageRate(%)`, `MemoryUsageRate(%)`, `SyscallRead`, `SyscallWrite`,
//!     client P90/P95, server P95, `NodeNetworkReceiveBytes`) keep their column names.
//!
//!   An empty or `NaN` field (a latency quantile of a minute without requests: 97 rows, in
//!   checkout, email, payment and ad services) leaves that metric out; any other non-numeric
//!   field dead-letters the row.
//! - `front_service.csv` becomes samples of the `service` entity `hipster/frontend`:
//!   `SuccessRate(%)` / 100 → `success_ratio`, `LatencyP50/P90/P99(s)` →
//!   `latency_p50/p90/p99_seconds`, `LatencyP95(s)` kept.
//! - Topology, at each day's first timestamp (before that instant's samples): upserts of nodes,
//!   services and pods, then `runs_on` (pod → node), `belongs_to` (pod → service) and `calls`
//!   (service → service) edges; on a later day, pods, `runs_on` and `calls` edges that are gone
//!   are deleted first. `loadgenerator` has no pod and no metrics, so it and its nodes are left
//!   out.
//! - Labels: each fault is an [`IncidentLabel`] on the injected pod (matched by name, else by
//!   service), `onset = incident = inject_time`, `end` 3 minutes later, fault = `inject_type`;
//!   kind: `cpu_contention`, `cpu_consumed` → cpu_exhaustion; `network_delay` →
//!   network_issue; `return`, `exception` (and any unknown type) → pod_failure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use auspex_model::metrics;
use auspex_model::{
    AnomalyKind, Edge, EdgeKind, Entity, EntityKind, EntityRef, IncidentLabel, MetricSample,
    TopologyChange, TopologyEvent,
};

use super::{csv_error, dead_row, open_csv, read_to_string};
use crate::merge::{IterLane, Lane, Merge};
use crate::{DeadLetter, IngestError, Record, Source};

/// The namespace the pods are given.
pub const NEZHA_NAMESPACE: &str = "hipster";
/// How long each injected fault lasts.
pub const NEZHA_FAULT_MS: i64 = 3 * 60_000;

/// What to read from Nezha.
#[derive(Debug, Clone)]
pub struct NezhaConfig {
    /// The data set's root (`.../nezha-onlineboutique`), holding one directory per day.
    pub root: PathBuf,
    /// Days to read (`2022-08-22`); empty reads every `YYYY-MM-DD` directory under `root`.
    pub days: Vec<String>,
    /// Namespace for pods and services.
    pub namespace: String,
    /// Also replay `front_service.csv` as samples of the frontend service.
    pub frontend_service: bool,
}

impl NezhaConfig {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NezhaConfig {
            root: root.into(),
            days: Vec::new(),
            namespace: NEZHA_NAMESPACE.into(),
            frontend_service: true,
        }
    }

    pub fn days<S: Into<String>>(mut self, days: impl IntoIterator<Item = S>) -> Self {
        self.days = days.into_iter().map(Into::into).collect();
        self
    }
}

/// Where a column goes.
#[derive(Clone, Copy)]
enum Col {
    Skip,
    /// Kept under the column's own name.
    Raw,
    /// Mapped to a canonical name, scaled.
    Canonical(&'static str, f64),
    /// A per-second rate: kept raw and integrated into a counter.
    RateToCounter(&'static str),
}

fn pod_column(name: &str) -> Col {
    match name {
        "Time" | "TimeStamp" | "PodName" => Col::Skip,
        "CpuUsage(m)" => Col::Canonical(metrics::CPU_USAGE_CORES, 1e-3),
        "MemoryUsage(Mi)" => Col::Canonical(metrics::MEMORY_WORKING_SET_BYTES, 1_048_576.0),
        "NetworkReceiveBytes" => Col::RateToCounter(metrics::NETWORK_RX_BYTES_TOTAL),
        "NetworkTransmitBytes" => Col::RateToCounter(metrics::NETWORK_TX_BYTES_TOTAL),
        "PodServerLatencyP90(s)" => Col::Canonical(metrics::LATENCY_P90_SECONDS, 1.0),
        "PodServerLatencyP99(s)" => Col::Canonical(metrics::LATENCY_P99_SECONDS, 1.0),
        "PodClientLatencyP99(s)" => Col::Canonical(metrics::CLIENT_LATENCY_P99_SECONDS, 1.0),
        "PodWorkload(Ops)" => Col::Canonical(metrics::REQUESTS_PER_SECOND, 1.0),
        "NodeCpuUsageRate(%)" => Col::Canonical(metrics::NODE_CPU_UTILIZATION_RATIO, 0.01),
        "NodeMemoryUsageRate(%)" => Col::Canonical(metrics::NODE_MEMORY_UTILIZATION_RATIO, 0.01),
        _ => Col::Raw,
    }
}

fn frontend_column(name: &str) -> Col {
    match name {
        "Time" | "TimeStamp" | "ServiceName" => Col::Skip,
        "SuccessRate(%)" => Col::Canonical(metrics::SUCCESS_RATIO, 0.01),
        "LatencyP50(s)" => Col::Canonical(metrics::LATENCY_P50_SECONDS, 1.0),
        "LatencyP90(s)" => Col::Canonical(metrics::LATENCY_P90_SECONDS, 1.0),
        "LatencyP99(s)" => Col::Canonical(metrics::LATENCY_P99_SECONDS, 1.0),
        _ => Col::Raw,
    }
}

/// The incident kind of a Nezha fault type.
pub fn kind_for(inject_type: &str) -> Option<AnomalyKind> {
    match inject_type {
        "cpu_contention" | "cpu_consumed" => Some(AnomalyKind::CpuExhaustion),
        "network_delay" => Some(AnomalyKind::NetworkIssue),
        "return" | "exception" => Some(AnomalyKind::PodFailure),
        _ => None,
    }
}

/// The deployment a pod belongs to: its name without the ReplicaSet hash and pod suffix.
pub fn deployment_of(pod: &str) -> &str {
    let mut parts = pod.rsplitn(3, '-');
    let (_suffix, _hash, rest) = (parts.next(), parts.next(), parts.next());
    rest.unwrap_or(pod)
}

/// Parses a Nezha `Time` string (`2022-08-22 03:51:19.607158889 +0000 UTC m=+0.11`) to
/// milliseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let (date, time, offset) = (it.next()?, it.next()?, it.next()?);
    let t = chrono::DateTime::parse_from_str(
        &format!("{date} {time} {offset}"),
        "%Y-%m-%d %H:%M:%S%.f %z",
    )
    .ok()?;
    Some(t.timestamp_millis())
}

/// A parsed row before alignment.
enum RawRow {
    Values {
        raw_ms: i64,
        values: Vec<(usize, f64)>,
    },
    Dead(DeadLetter),
}

/// One metric file of one day.
struct Table {
    entity: Entity,
    columns: Vec<(String, Col)>,
    rows: Vec<RawRow>,
}

fn read_table(
    path: &Path,
    what: &str,
    map: fn(&str) -> Col,
    entity: Entity,
) -> Result<Table, IngestError> {
    let mut reader = open_csv(path, what)?;
    let header = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let columns: Vec<(String, Col)> = header
        .iter()
        .map(|h| (h.trim().to_string(), map(h.trim())))
        .collect();
    let time_col = columns
        .iter()
        .position(|(h, _)| h == "Time")
        .ok_or_else(|| IngestError::format(path.display().to_string(), "no `Time` column"))?;
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    while reader
        .read_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        row += 1;
        let time = record.get(time_col).unwrap_or_default();
        let Some(raw_ms) = parse_time(time) else {
            let reason = format!("Time {time:?} is not `YYYY-MM-DD HH:MM:SS.f +0000 ...`");
            rows.push(RawRow::Dead(dead_row(path, row, &record, reason)));
            continue;
        };
        let mut values = Vec::new();
        let mut bad = None;
        for (i, field) in record.iter().enumerate() {
            let Some((name, col)) = columns.get(i) else {
                break;
            };
            if matches!(col, Col::Skip) || field.trim().is_empty() {
                continue;
            }
            match field.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => values.push((i, v)),
                // Prometheus writes NaN where a quantile had no requests: no value, not an error.
                Ok(v) if v.is_nan() => {}
                _ => {
                    bad = Some(format!("{name}: {field:?} is not a finite number"));
                    break;
                }
            }
        }
        rows.push(match bad {
            Some(reason) => RawRow::Dead(dead_row(path, row, &record, reason)),
            None => RawRow::Values { raw_ms, values },
        });
    }
    Ok(Table {
        entity,
        columns,
        rows,
    })
}

/// One row, aligned, ready to become a record.
type Keyed = (i64, Record);

impl Table {
    /// Aligned samples (and dead letters in place).
    fn records(self, aligned: &HashMap<i64, i64>) -> Vec<Keyed> {
        let mut out = Vec::with_capacity(self.rows.len());
        let mut counters: HashMap<&'static str, f64> = HashMap::new();
        let mut prev_ts: Option<i64> = None;
        let mut key = i64::MIN;
        for row in self.rows {
            let (raw_ms, values) = match row {
                RawRow::Dead(d) => {
                    out.push((key, Record::DeadLetter(d)));
                    continue;
                }
                RawRow::Values { raw_ms, values } => (raw_ms, values),
            };
            let ts = aligned
                .get(&raw_ms.div_euclid(60_000))
                .copied()
                .unwrap_or(raw_ms);
            let dt_s = prev_ts.map_or(0.0, |p| (ts - p).max(0) as f64 / 1000.0);
            let mut m = BTreeMap::new();
            for (i, v) in values {
                let (name, col) = &self.columns[i];
                match *col {
                    Col::Skip => {}
                    Col::Raw => {
                        m.insert(name.clone(), v);
                    }
                    Col::Canonical(c, scale) => {
                        m.insert(c.to_string(), v * scale);
                    }
                    Col::RateToCounter(c) => {
                        m.insert(name.clone(), v);
                        let total = counters.entry(c).or_insert(0.0);
                        *total += v * dt_s;
                        m.insert(c.to_string(), *total);
                    }
                }
            }
            prev_ts = Some(ts);
            key = ts;
            out.push((
                ts,
                Record::Sample(MetricSample {
                    timestamp_ms: ts,
                    entity: self.entity.clone(),
                    metrics: m,
                }),
            ));
        }
        out
    }
}

#[derive(serde::Deserialize)]
struct Fault {
    inject_time: String,
    inject_pod: String,
    inject_type: String,
}

/// The graph a day implies, for diffing against the next day.
#[derive(Default)]
struct Graph {
    pods: BTreeSet<EntityRef>,
    edges: BTreeSet<(EdgeKind, EntityRef, EntityRef)>,
}

/// Summary of one day read.
#[derive(Debug, Clone, PartialEq)]
pub struct NezhaDay {
    pub day: String,
    pub pods: Vec<String>,
    /// Aligned scrape instants (rows per pod).
    pub rows: usize,
    pub faults: usize,
}

/// Nezha OnlineBoutique replayed as pod (and frontend service) samples plus topology, with the
/// injected faults as labels.
pub struct NezhaSource {
    config: NezhaConfig,
    days: Vec<NezhaDay>,
    labels: Vec<IncidentLabel>,
    merge: Merge,
}

impl NezhaSource {
    pub fn new(config: NezhaConfig) -> Result<Self, IngestError> {
        if !config.root.is_dir() {
            return Err(IngestError::missing(
                config.root.display().to_string(),
                "Nezha data set directory",
            ));
        }
        let days = if config.days.is_empty() {
            discover(&config.root)?
        } else {
            config.days.clone()
        };
        if days.is_empty() {
            return Err(IngestError::missing(
                config.root.join("YYYY-MM-DD").display().to_string(),
                "Nezha day directories",
            ));
        }
        let mut topology: Vec<Keyed> = Vec::new();
        let mut lanes_records: Vec<Vec<Keyed>> = Vec::new();
        let mut labels = Vec::new();
        let mut summaries = Vec::new();
        let mut graph = Graph::default();
        for day in &days {
            let d = read_day(&config, day, &mut graph)?;
            topology.extend(d.topology);
            lanes_records.extend(d.lanes);
            labels.extend(d.labels);
            summaries.push(d.summary);
        }
        labels.sort_by_key(|l: &IncidentLabel| l.onset_ms);
        // Topology first: on equal timestamps the first lane wins.
        let mut lanes: Vec<Box<dyn Lane>> =
            vec![Box::new(IterLane::new(topology.into_iter().map(Ok)))];
        for records in lanes_records {
            lanes.push(Box::new(IterLane::new(records.into_iter().map(Ok))));
        }
        Ok(NezhaSource {
            config,
            days: summaries,
            labels,
            merge: Merge::new(lanes),
        })
    }

    /// Days read, with their pods, rows and faults.
    pub fn days(&self) -> &[NezhaDay] {
        &self.days
    }
}

impl Source for NezhaSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        self.merge.next_batch(max)
    }

    fn sample_interval_ms(&self) -> Option<u64> {
        Some(60_000)
    }

    fn labels(&self) -> Vec<IncidentLabel> {
        self.labels.clone()
    }

    fn describe(&self) -> String {
        let days: Vec<&str> = self.days.iter().map(|d| d.day.as_str()).collect();
        format!("nezha {} ({})", days.join(","), self.config.root.display())
    }
}

fn discover(root: &Path) -> Result<Vec<String>, IngestError> {
    let entries =
        std::fs::read_dir(root).map_err(|e| IngestError::io(root.display().to_string(), e))?;
    let mut days: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
        .collect();
    days.sort();
    Ok(days)
}

struct Day {
    topology: Vec<Keyed>,
    lanes: Vec<Vec<Keyed>>,
    labels: Vec<IncidentLabel>,
    summary: NezhaDay,
}

fn read_day(config: &NezhaConfig, day: &str, graph: &mut Graph) -> Result<Day, IngestError> {
    let ns = config.namespace.as_str();
    let dir = config.root.join(day);
    let metric_dir = dir.join("metric");
    if !metric_dir.is_dir() {
        return Err(IngestError::missing(
            metric_dir.display().to_string(),
            format!("Nezha metric directory of {day}"),
        ));
    }

    // Placement and calls.
    let dep_path = metric_dir.join("dependency.csv");
    let mut reader = open_csv(&dep_path, "Nezha dependency file")?;
    let mut node_of: BTreeMap<String, String> = BTreeMap::new();
    let mut calls: BTreeSet<(String, String)> = BTreeSet::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| csv_error(&dep_path, e))?;
        let (Some(src), Some(dst)) = (rec.get(0), rec.get(1)) else {
            continue;
        };
        let (src, dst) = (src.trim().to_string(), dst.trim().to_string());
        if dst.parse::<std::net::IpAddr>().is_ok() {
            node_of.entry(src).or_insert(dst);
        } else {
            calls.insert((src, dst));
        }
    }

    // Pods, from the metric files.
    let entries = std::fs::read_dir(&metric_dir)
        .map_err(|e| IngestError::io(metric_dir.display().to_string(), e))?;
    let mut pod_files: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let pod = name.strip_suffix("_metric.csv")?.to_string();
            Some((pod, e.path()))
        })
        .collect();
    pod_files.sort();
    if pod_files.is_empty() {
        return Err(IngestError::missing(
            metric_dir.join("<pod>_metric.csv").display().to_string(),
            "Nezha pod metric files",
        ));
    }
    let mut pods = Vec::new();
    let mut tables = Vec::new();
    for (pod, path) in &pod_files {
        let service = deployment_of(pod).to_string();
        let mut entity = Entity::new(EntityKind::Pod, Some(ns), pod);
        entity.node = node_of.get(&service).cloned();
        entity.service = Some(service.clone());
        entity.workload = Some(service);
        pods.push(entity.clone());
        tables.push(read_table(
            path,
            "Nezha pod metric file",
            pod_column,
            entity,
        )?);
    }
    if config.frontend_service {
        let path = metric_dir.join("front_service.csv");
        let entity = Entity::new(EntityKind::Service, Some(ns), "frontend");
        tables.push(read_table(
            &path,
            "Nezha frontend service file",
            frontend_column,
            entity,
        )?);
    }

    // Alignment: one instant per scrape minute, the earliest Time of it, whole seconds.
    let mut aligned: HashMap<i64, i64> = HashMap::new();
    for t in &tables {
        for r in &t.rows {
            if let RawRow::Values { raw_ms, .. } = r {
                let second = raw_ms.div_euclid(1000) * 1000;
                aligned
                    .entry(raw_ms.div_euclid(60_000))
                    .and_modify(|v| *v = (*v).min(second))
                    .or_insert(second);
            }
        }
    }
    let Some(&t0) = aligned.values().min() else {
        return Err(IngestError::format(
            metric_dir.display().to_string(),
            "no parsable rows",
        ));
    };

    let topology = topology_events(ns, t0, &pods, &calls, graph);
    let labels = read_faults(&dir.join("fault_list.json"), ns, &pods)?;
    let summary = NezhaDay {
        day: day.to_string(),
        pods: pods.iter().map(|p| p.name.clone()).collect(),
        rows: aligned.len(),
        faults: labels.len(),
    };
    let lanes = tables.into_iter().map(|t| t.records(&aligned)).collect();
    Ok(Day {
        topology,
        lanes,
        labels,
        summary,
    })
}

fn topology_events(
    ns: &str,
    t0: i64,
    pods: &[Entity],
    calls: &BTreeSet<(String, String)>,
    prev: &mut Graph,
) -> Vec<Keyed> {
    let mut now = Graph::default();
    let mut upserts = Vec::new();
    let nodes: BTreeSet<&String> = pods.iter().filter_map(|p| p.node.as_ref()).collect();
    for n in &nodes {
        upserts.push(TopologyChange::UpsertEntity {
            entity: Entity::new(EntityKind::Node, None, n),
        });
    }
    let mut services: BTreeSet<&str> = pods.iter().filter_map(|p| p.service.as_deref()).collect();
    for (a, b) in calls {
        services.insert(a);
        services.insert(b);
    }
    for s in &services {
        upserts.push(TopologyChange::UpsertEntity {
            entity: Entity::new(EntityKind::Service, Some(ns), s),
        });
    }
    for p in pods {
        upserts.push(TopologyChange::UpsertEntity { entity: p.clone() });
        now.pods.insert(p.reference());
    }
    for p in pods {
        if let Some(n) = &p.node {
            now.edges
                .insert((EdgeKind::RunsOn, p.reference(), EntityRef::node(n)));
        }
        if let Some(s) = &p.service {
            now.edges.insert((
                EdgeKind::BelongsTo,
                p.reference(),
                EntityRef::service(ns, s),
            ));
        }
    }
    for (a, b) in calls {
        now.edges.insert((
            EdgeKind::Calls,
            EntityRef::service(ns, a),
            EntityRef::service(ns, b),
        ));
    }
    let mut changes = Vec::new();
    // What the previous day had and this one lacks goes first.
    for p in prev.pods.difference(&now.pods) {
        changes.push(TopologyChange::DeleteEntity { entity: p.clone() });
    }
    for (kind, from, to) in prev.edges.difference(&now.edges) {
        if prev.pods.contains(from) && !now.pods.contains(from) {
            continue; // went with its pod
        }
        changes.push(TopologyChange::DeleteEdge {
            edge: Edge {
                kind: *kind,
                from: from.clone(),
                to: to.clone(),
            },
        });
    }
    changes.extend(upserts);
    for (kind, from, to) in &now.edges {
        changes.push(TopologyChange::UpsertEdge {
            edge: Edge {
                kind: *kind,
                from: from.clone(),
                to: to.clone(),
            },
        });
    }
    *prev = now;
    changes
        .into_iter()
        .map(|change| {
            (
                t0,
                Record::Topology(TopologyEvent {
                    timestamp_ms: t0,
                    change,
                }),
            )
        })
        .collect()
}

fn read_faults(path: &Path, ns: &str, pods: &[Entity]) -> Result<Vec<IncidentLabel>, IngestError> {
    let name = path.display().to_string();
    let text = read_to_string(path, "Nezha fault list")?;
    let by_hour: BTreeMap<String, Vec<Fault>> =
        serde_json::from_str(&text).map_err(|e| IngestError::format(&name, e.to_string()))?;
    let mut labels = Vec::new();
    for f in by_hour.into_values().flatten() {
        let at = super::parse_naive_utc_ms(&f.inject_time).ok_or_else(|| {
            IngestError::format(
                &name,
                format!("inject_time {:?} is not YYYY-MM-DD HH:MM:SS", f.inject_time),
            )
        })?;
        let kind = kind_for(&f.inject_type).unwrap_or_else(|| {
            tracing::warn!(file = %name, inject_type = %f.inject_type, "unknown fault type, labelled pod_failure");
            AnomalyKind::PodFailure
        });
        let service = deployment_of(&f.inject_pod);
        let entity = pods
            .iter()
            .find(|p| p.name == f.inject_pod)
            .or_else(|| pods.iter().find(|p| p.service.as_deref() == Some(service)))
            .map(Entity::reference)
            .unwrap_or_else(|| EntityRef::pod(ns, &f.inject_pod));
        labels.push(IncidentLabel {
            entity,
            kind,
            fault: f.inject_type,
            onset_ms: at,
            incident_ms: at,
            end_ms: at + NEZHA_FAULT_MS,
            root_cause: true,
        });
    }
    labels.sort_by_key(|l| l.onset_ms);
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_times() {
        assert_eq!(deployment_of("cartservice-579f59597d-wc2lz"), "cartservice");
        assert_eq!(deployment_of("redis"), "redis");
        assert_eq!(
            parse_time("2022-08-22 03:51:19.607158889 +0000 UTC m=+0.113112869"),
            Some(1_661_140_279_607)
        );
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(kind_for("cpu_consumed"), Some(AnomalyKind::CpuExhaustion));
        assert_eq!(kind_for("exception"), Some(AnomalyKind::PodFailure));
    }
}
