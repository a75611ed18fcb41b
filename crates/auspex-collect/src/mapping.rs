//! From Prometheus series to auspex [`MetricSample`]s: which standard series (cAdvisor,
//! kube-state-metrics, node-exporter) become which canonical metric of which entity, the
//! per-series state that turns counters into rates, and the grouping of everything one entity
//! reported in one time bucket into one sample.
//!
//! It owns no I/O: the remote-write handler and the query poller feed it series, a flusher asks
//! it for the samples whose bucket is complete. All state is bounded: series not seen for
//! `series_ttl_ms` are forgotten, at most `max_series` are tracked and at most
//! `max_open_groups` (entity, bucket) groups wait for completion. The series mapping table is
//! in docs/COLLECT.md.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use auspex_model::{Entity, EntityKind, EntityRef, MetricSample};
use serde::{Deserialize, Serialize};

use crate::remote_write::{Label, WriteRequest};
use crate::telemetry;

/// Every metric name the mapping understands (scrape mode queries exactly these).
pub const KNOWN_METRICS: [&str; 24] = [
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_cpu_cfs_throttled_periods_total",
    "container_cpu_cfs_periods_total",
    "container_spec_cpu_quota",
    "container_spec_cpu_period",
    "container_spec_memory_limit_bytes",
    "container_oom_events_total",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "container_network_receive_errors_total",
    "container_network_transmit_errors_total",
    "container_network_receive_packets_dropped_total",
    "container_network_transmit_packets_dropped_total",
    "kube_pod_container_status_restarts_total",
    "kube_pod_status_ready",
    "kube_pod_container_resource_limits",
    "kube_pod_info",
    "kube_node_status_condition",
    "kube_node_status_allocatable",
    "node_cpu_seconds_total",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "kube_pod_container_resource_requests",
];

/// `[mapping]`: how series become samples.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MappingConfig {
    /// Width of a sample's time bucket: everything an entity reports within one bucket becomes
    /// one sample, stamped with the bucket's start.
    pub resolution_ms: u64,
    /// A bucket is flushed once nothing arrived for it for this long (wall clock) and it is
    /// complete: a newer bucket of the entity has data, or its end has passed. Prometheus sends
    /// a batch at least every `batch_send_deadline` (default 5 s): keep this at least as long.
    pub flush_after_ms: u64,
    /// Series (and pods' node assignments) not seen for this long are forgotten.
    pub series_ttl_ms: u64,
    /// Most series tracked at once; samples of further new series are dropped
    /// (`reason="series_limit"`).
    pub max_series: usize,
    /// Most (entity, bucket) groups waiting to be flushed; beyond it the receiver answers 503
    /// so that Prometheus retries later.
    pub max_open_groups: usize,
    /// Labels naming the node of cAdvisor and node-exporter series, first present wins.
    /// kube-state-metrics series name theirs in `node`.
    pub node_labels: Vec<String>,
    /// Strip a `:port` suffix from the node label's value (`instance="10.0.0.1:9100"`).
    pub strip_port: bool,
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            resolution_ms: 15_000,
            flush_after_ms: 5_000,
            series_ttl_ms: 600_000,
            max_series: 1_000_000,
            max_open_groups: 200_000,
            node_labels: vec!["node".into(), "nodename".into(), "instance".into()],
            strip_port: true,
        }
    }
}

impl MappingConfig {
    /// Checks every key; the error names it (`mapping.<key>`).
    pub fn validate(&self) -> Result<(), String> {
        if self.resolution_ms < 1000 {
            return Err(format!(
                "mapping.resolution_ms = {}: must be at least 1000",
                self.resolution_ms
            ));
        }
        if self.flush_after_ms == 0 || self.flush_after_ms > 600_000 {
            return Err(format!(
                "mapping.flush_after_ms = {}: must be between 1 and 600000",
                self.flush_after_ms
            ));
        }
        if self.series_ttl_ms < self.resolution_ms.saturating_mul(2) {
            return Err(format!(
                "mapping.series_ttl_ms = {}: must be at least twice mapping.resolution_ms ({}), \
                 or every rate restarts",
                self.series_ttl_ms, self.resolution_ms
            ));
        }
        if self.max_series == 0 {
            return Err("mapping.max_series: must be at least 1".into());
        }
        if self.max_open_groups == 0 {
            return Err("mapping.max_open_groups: must be at least 1".into());
        }
        if self.node_labels.is_empty() || self.node_labels.iter().any(|l| l.is_empty()) {
            return Err(
                "mapping.node_labels: must name at least one label, none of them empty".into(),
            );
        }
        Ok(())
    }
}

/// Why a sample was not used. A small fixed set: the `reason` label of
/// `auspex_collect_series_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A metric name the mapping does not know.
    UnknownMetric,
    /// A known metric without the labels that name its entity (`namespace`, `pod`, a node
    /// label), e.g. cAdvisor's machine-level cgroups.
    MissingLabels,
    /// A staleness marker (NaN): the series ended.
    StaleMarker,
    /// An infinite value or a negative timestamp.
    Invalid,
    /// Older than the series' last sample.
    OutOfOrder,
    /// For a bucket already flushed.
    Late,
    /// A new series while `mapping.max_series` are tracked.
    SeriesLimit,
    /// A new group while `mapping.max_open_groups` wait.
    GroupLimit,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::UnknownMetric,
        DropReason::MissingLabels,
        DropReason::StaleMarker,
        DropReason::Invalid,
        DropReason::OutOfOrder,
        DropReason::Late,
        DropReason::SeriesLimit,
        DropReason::GroupLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownMetric => "unknown_metric",
            DropReason::MissingLabels => "missing_labels",
            DropReason::StaleMarker => "stale_marker",
            DropReason::Invalid => "invalid",
            DropReason::OutOfOrder => "out_of_order",
            DropReason::Late => "late",
            DropReason::SeriesLimit => "series_limit",
            DropReason::GroupLimit => "group_limit",
        }
    }
}

/// Which part of an entity's sample a series contributes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Slot {
    PodCpu,
    PodMemory,
    PodThrottled,
    PodPeriods,
    PodNet(Net),
    PodCpuQuota,
    PodCpuPeriod,
    PodSpecMemoryLimit,
    PodKsmCpuLimit,
    PodKsmMemoryLimit,
    PodKsmCpuRequest,
    PodKsmMemoryRequest,
    PodOom,
    PodRestarts,
    PodReady,
    NodeCpuBusy,
    NodeCpuIdle,
    NodeMemTotal,
    NodeMemAvailable,
    NodeAllocatableCpu,
    NodeAllocatableMemory,
    NodeReady,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Net {
    RxBytes,
    TxBytes,
    RxErrors,
    TxErrors,
    RxDropped,
    TxDropped,
}

impl Net {
    fn metric(self) -> &'static str {
        match self {
            Net::RxBytes => "network_rx_bytes_total",
            Net::TxBytes => "network_tx_bytes_total",
            Net::RxErrors => "network_rx_errors_total",
            Net::TxErrors => "network_tx_errors_total",
            Net::RxDropped => "network_rx_dropped_total",
            Net::TxDropped => "network_tx_dropped_total",
        }
    }
}

/// How the samples of one (slot, sub-key) combine within a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Combine {
    /// A counter turned into a rate: increases and elapsed time are added up.
    Rate,
    /// The latest value wins.
    Latest,
    /// The largest value wins (the same counter reported by two cgroups of one pod).
    Max,
}

/// What one series means: its entity, slot, the sub-key that separates it from the series it
/// is summed with, and how its samples combine.
struct Target {
    entity: EntityRef,
    slot: Slot,
    sub: String,
    combine: Combine,
    /// The node it runs on, when the series says (cAdvisor's node label).
    node_hint: Option<String>,
}

enum Classified {
    Target(Target),
    /// `kube_pod_info`: the pod's node and owner, no value.
    PodInfo {
        pod: EntityRef,
        node: Option<String>,
        workload: Option<String>,
    },
    /// A known series that carries nothing auspex uses (a `condition="false"` series, a pause
    /// container's CPU): skipped without counting.
    Ignored,
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy)]
enum Contribution {
    Rate { increase: f64, elapsed_ms: i64 },
    Value { value: f64, ts: i64 },
}

#[derive(Default)]
struct Group {
    /// Wall-clock time of the last contribution.
    touched_ms: i64,
    parts: BTreeMap<(Slot, String), Contribution>,
}

#[derive(Default)]
struct EntityState {
    groups: BTreeMap<i64, Group>,
    /// Buckets up to and including this one were flushed.
    flushed_through: Option<i64>,
    seen_ms: i64,
}

struct SeriesState {
    last_ts: i64,
    last_value: f64,
    seen_ms: i64,
}

struct PodMeta {
    node: Option<String>,
    workload: Option<String>,
    /// From kube_pod_info (authoritative) rather than a cAdvisor node label.
    from_info: bool,
    seen_ms: i64,
}

/// The mapper's state. Not thread-safe by itself: the server keeps it behind a mutex.
pub struct Mapper {
    config: MappingConfig,
    series: HashMap<u64, SeriesState>,
    entities: HashMap<EntityRef, EntityState>,
    pods: HashMap<(String, String), PodMeta>,
    open_groups: usize,
    dropped: HashMap<DropReason, u64>,
}

/// What one call to [`Mapper::ingest`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    pub used: u64,
    pub dropped: u64,
}

impl Mapper {
    pub fn new(config: MappingConfig) -> Self {
        Mapper {
            config,
            series: HashMap::new(),
            entities: HashMap::new(),
            pods: HashMap::new(),
            open_groups: 0,
            dropped: HashMap::new(),
        }
    }

    pub fn config(&self) -> &MappingConfig {
        &self.config
    }

    /// Samples dropped so far for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }

    /// Series tracked now.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// (entity, bucket) groups waiting to be flushed.
    pub fn open_groups(&self) -> usize {
        self.open_groups
    }

    /// True when no more groups should be opened: the receiver answers 503 (Prometheus
    /// retries) until flushing catches up.
    pub fn saturated(&self) -> bool {
        self.open_groups >= self.config.max_open_groups
    }

    fn drop_n(&mut self, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        *self.dropped.entry(reason).or_default() += n;
        metrics::counter!(telemetry::SERIES_DROPPED, "reason" => reason.as_str()).increment(n);
    }

    /// Feeds every series of a remote-write request; `now_ms` is the wall clock.
    pub fn ingest_request(&mut self, request: &WriteRequest, now_ms: i64) -> IngestStats {
        let mut stats = IngestStats::default();
        for ts in &request.timeseries {
            let s = self.ingest(
                &ts.labels,
                ts.samples.iter().map(|s| (s.timestamp, s.value)),
                now_ms,
            );
            stats.used += s.used;
            stats.dropped += s.dropped;
        }
        stats
    }

    /// Feeds one series' samples (`(timestamp_ms, value)`, oldest first).
    pub fn ingest(
        &mut self,
        labels: &[Label],
        samples: impl ExactSizeIterator<Item = (i64, f64)>,
        now_ms: i64,
    ) -> IngestStats {
        let n = samples.len() as u64;
        let id = series_id(labels);
        let target = match self.classify(labels, id) {
            Classified::Target(t) => t,
            Classified::PodInfo {
                pod,
                node,
                workload,
            } => {
                let key = (pod.namespace.clone().unwrap_or_default(), pod.name.clone());
                if !self.pods.contains_key(&key) && self.pods.len() >= self.config.max_series {
                    self.drop_n(DropReason::SeriesLimit, n);
                    return IngestStats {
                        used: 0,
                        dropped: n,
                    };
                }
                self.pods.insert(
                    key,
                    PodMeta {
                        node,
                        workload,
                        from_info: true,
                        seen_ms: now_ms,
                    },
                );
                return IngestStats {
                    used: n,
                    dropped: 0,
                };
            }
            Classified::Ignored => return IngestStats::default(),
            Classified::Drop(reason) => {
                self.drop_n(reason, n);
                return IngestStats {
                    used: 0,
                    dropped: n,
                };
            }
        };
        if let (Some(node), EntityKind::Pod) = (&target.node_hint, target.entity.kind) {
            let key = (
                target.entity.namespace.clone().unwrap_or_default(),
                target.entity.name.clone(),
            );
            // Bounded like the series: past the limit a pod just goes without its node.
            if self.pods.contains_key(&key) || self.pods.len() < self.config.max_series {
                let meta = self.pods.entry(key).or_insert_with(|| PodMeta {
                    node: None,
                    workload: None,
                    from_info: false,
                    seen_ms: now_ms,
                });
                if !meta.from_info {
                    meta.node = Some(node.clone());
                    meta.seen_ms = now_ms;
                }
            }
        }
        if !self.series.contains_key(&id) && self.series.len() >= self.config.max_series {
            self.drop_n(DropReason::SeriesLimit, n);
            return IngestStats {
                used: 0,
                dropped: n,
            };
        }
        let mut stats = IngestStats::default();
        for (ts, value) in samples {
            match self.apply(id, &target, ts, value, now_ms) {
                Ok(()) => stats.used += 1,
                Err(reason) => {
                    self.drop_n(reason, 1);
                    stats.dropped += 1;
                }
            }
        }
        stats
    }

    fn apply(
        &mut self,
        id: u64,
        target: &Target,
        ts: i64,
        value: f64,
        now_ms: i64,
    ) -> Result<(), DropReason> {
        if value.is_nan() {
            // A staleness marker ends the series: a later sample starts a new rate.
            self.series.remove(&id);
            return Err(DropReason::StaleMarker);
        }
        if value.is_infinite() || ts < 0 {
            return Err(DropReason::Invalid);
        }
        let previous = self.series.get(&id).map(|s| (s.last_ts, s.last_value));
        if let Some((last_ts, _)) = previous
            && ts <= last_ts
        {
            // The same sample twice (the poller's overlapping look-back) is not news.
            return if ts == last_ts {
                Ok(())
            } else {
                Err(DropReason::OutOfOrder)
            };
        }
        self.series.insert(
            id,
            SeriesState {
                last_ts: ts,
                last_value: value,
                seen_ms: now_ms,
            },
        );
        let contribution = match target.combine {
            Combine::Rate => match previous {
                // A counter's first sample gives no rate yet.
                None => return Ok(()),
                Some((last_ts, last_value)) => Contribution::Rate {
                    // A counter that went down was reset (a restart) and counted up from zero.
                    increase: if value >= last_value {
                        value - last_value
                    } else {
                        value
                    },
                    elapsed_ms: ts - last_ts,
                },
            },
            Combine::Latest | Combine::Max => Contribution::Value { value, ts },
        };
        let resolution = self.config.resolution_ms as i64;
        let bucket = ts - ts.rem_euclid(resolution);
        let at_limit = self.open_groups >= self.config.max_open_groups;
        let entity = self.entities.entry(target.entity.clone()).or_default();
        entity.seen_ms = now_ms;
        if entity.flushed_through.is_some_and(|f| bucket <= f) {
            return Err(DropReason::Late);
        }
        if !entity.groups.contains_key(&bucket) {
            if at_limit {
                return Err(DropReason::GroupLimit);
            }
            self.open_groups += 1;
        }
        let group = entity.groups.entry(bucket).or_default();
        group.touched_ms = now_ms;
        let key = (target.slot, target.sub.clone());
        let merged = match (group.parts.get(&key), contribution, target.combine) {
            (
                Some(Contribution::Rate {
                    increase,
                    elapsed_ms,
                }),
                Contribution::Rate {
                    increase: i,
                    elapsed_ms: e,
                },
                _,
            ) => Contribution::Rate {
                increase: increase + i,
                elapsed_ms: elapsed_ms + e,
            },
            (
                Some(Contribution::Value { value: old, ts: t }),
                Contribution::Value { value, ts },
                c,
            ) => {
                let take_new = match c {
                    Combine::Max => value >= *old,
                    _ => ts >= *t,
                };
                if take_new {
                    Contribution::Value { value, ts }
                } else {
                    Contribution::Value {
                        value: *old,
                        ts: *t,
                    }
                }
            }
            (_, c, _) => c,
        };
        group.parts.insert(key, merged);
        Ok(())
    }

    /// The samples of every complete group (see [`MappingConfig::flush_after_ms`]); with
    /// `all`, of every group (shutdown). Also forgets series, pods and entities not seen for
    /// `series_ttl_ms`.
    pub fn flush(&mut self, now_ms: i64, all: bool) -> Vec<MetricSample> {
        let resolution = self.config.resolution_ms as i64;
        let quiet = self.config.flush_after_ms as i64;
        let mut out = Vec::new();
        let mut flushed_groups = 0;
        for (entity, state) in self.entities.iter_mut() {
            let newest = state.groups.keys().next_back().copied();
            let due: Vec<i64> = state
                .groups
                .iter()
                .filter(|(bucket, g)| {
                    let idle = now_ms - g.touched_ms;
                    let complete = Some(**bucket) < newest || now_ms >= **bucket + resolution;
                    all || (idle >= quiet && complete) || idle >= resolution + quiet
                })
                .map(|(b, _)| *b)
                .collect();
            for bucket in due {
                let Some(group) = state.groups.remove(&bucket) else {
                    continue;
                };
                flushed_groups += 1;
                state.flushed_through =
                    Some(state.flushed_through.map_or(bucket, |f| f.max(bucket)));
                let key = (
                    entity.namespace.clone().unwrap_or_default(),
                    entity.name.clone(),
                );
                let meta = self
                    .pods
                    .get(&key)
                    .filter(|_| entity.kind == EntityKind::Pod);
                if let Some(sample) = build_sample(entity, bucket, &group, meta) {
                    out.push(sample);
                }
            }
        }
        self.open_groups -= flushed_groups;
        let horizon = now_ms - self.config.series_ttl_ms as i64;
        self.series.retain(|_, s| s.seen_ms >= horizon);
        self.pods.retain(|_, p| p.seen_ms >= horizon);
        self.entities
            .retain(|_, e| !e.groups.is_empty() || e.seen_ms >= horizon);
        out.sort_by(|a, b| {
            (
                a.timestamp_ms,
                a.entity.kind,
                &a.entity.namespace,
                &a.entity.name,
            )
                .cmp(&(
                    b.timestamp_ms,
                    b.entity.kind,
                    &b.entity.namespace,
                    &b.entity.name,
                ))
        });
        out
    }

    fn classify(&self, labels: &[Label], id: u64) -> Classified {
        let get = |name: &str| {
            labels
                .iter()
                .find(|l| l.name == name)
                .map(|l| l.value.as_str())
                .filter(|v| !v.is_empty())
        };
        let Some(name) = get("__name__") else {
            return Classified::Drop(DropReason::MissingLabels);
        };
        let node_label = || {
            self.config
                .node_labels
                .iter()
                .find_map(|l| get(l))
                .map(|v| node_name(v, self.config.strip_port))
        };
        // cAdvisor names pods `pod` (older kubelets: `pod_name`) and containers `container`
        // (`container_name`); `container=""` is the pod's own cgroup (the sum of its
        // containers) and `POD` the pause container (docker).
        // Standalone cAdvisor (not the kubelet's) has only the runtime's labels.
        let pod = || {
            let ns =
                get("namespace").or_else(|| get("container_label_io_kubernetes_pod_namespace"))?;
            let pod = get("pod")
                .or_else(|| get("pod_name"))
                .or_else(|| get("container_label_io_kubernetes_pod_name"))?;
            Some(EntityRef::pod(ns, pod))
        };
        let container = get("container")
            .or_else(|| get("container_name"))
            .or_else(|| get("container_label_io_kubernetes_container_name"));
        let is_app_container = !matches!(container, None | Some("POD"));
        let cadvisor = |slot: Slot, combine: Combine, sub: String, app_only: bool| {
            let Some(entity) = pod() else {
                return Classified::Drop(DropReason::MissingLabels);
            };
            if app_only && !is_app_container {
                return Classified::Ignored;
            }
            Classified::Target(Target {
                entity,
                slot,
                sub,
                combine,
                node_hint: node_label(),
            })
        };
        let container_sub = container.unwrap_or("").to_string();
        let series_sub = format!("{id:016x}");
        let ksm_pod = |slot: Slot, combine: Combine, sub: String| match pod() {
            Some(entity) => Classified::Target(Target {
                entity,
                slot,
                sub,
                combine,
                node_hint: None,
            }),
            None => Classified::Drop(DropReason::MissingLabels),
        };
        let node = |slot: Slot, combine: Combine, sub: String, node: Option<String>| match node {
            Some(n) => Classified::Target(Target {
                entity: EntityRef::node(&n),
                slot,
                sub,
                combine,
                node_hint: None,
            }),
            None => Classified::Drop(DropReason::MissingLabels),
        };
        let net = |field: Net| {
            // Containers of a pod share the pause container's network namespace: only the
            // pod-level series (`container=""` or `POD`) count, once per interface.
            if is_app_container {
                return Classified::Ignored;
            }
            cadvisor(
                Slot::PodNet(field),
                Combine::Max,
                get("interface").unwrap_or("").to_string(),
                false,
            )
        };
        match name {
            "container_cpu_usage_seconds_total" => {
                cadvisor(Slot::PodCpu, Combine::Rate, series_sub, true)
            }
            "container_memory_working_set_bytes" => {
                cadvisor(Slot::PodMemory, Combine::Latest, container_sub, true)
            }
            "container_cpu_cfs_throttled_periods_total" => {
                cadvisor(Slot::PodThrottled, Combine::Rate, series_sub, true)
            }
            "container_cpu_cfs_periods_total" => {
                cadvisor(Slot::PodPeriods, Combine::Rate, series_sub, true)
            }
            "container_spec_cpu_quota" => {
                cadvisor(Slot::PodCpuQuota, Combine::Latest, container_sub, true)
            }
            "container_spec_cpu_period" => {
                cadvisor(Slot::PodCpuPeriod, Combine::Latest, container_sub, true)
            }
            "container_spec_memory_limit_bytes" => cadvisor(
                Slot::PodSpecMemoryLimit,
                Combine::Latest,
                container_sub,
                true,
            ),
            "container_oom_events_total" => {
                cadvisor(Slot::PodOom, Combine::Latest, container_sub, true)
            }
            "container_network_receive_bytes_total" => net(Net::RxBytes),
            "container_network_transmit_bytes_total" => net(Net::TxBytes),
            "container_network_receive_errors_total" => net(Net::RxErrors),
            "container_network_transmit_errors_total" => net(Net::TxErrors),
            "container_network_receive_packets_dropped_total" => net(Net::RxDropped),
            "container_network_transmit_packets_dropped_total" => net(Net::TxDropped),
            "kube_pod_container_status_restarts_total" => {
                ksm_pod(Slot::PodRestarts, Combine::Latest, container_sub)
            }
            "kube_pod_status_ready" => match get("condition") {
                Some("true") => ksm_pod(Slot::PodReady, Combine::Latest, String::new()),
                Some(_) => Classified::Ignored,
                None => Classified::Drop(DropReason::MissingLabels),
            },
            "kube_pod_container_resource_limits" => match get("resource") {
                Some("cpu") => ksm_pod(Slot::PodKsmCpuLimit, Combine::Latest, container_sub),
                Some("memory") => ksm_pod(Slot::PodKsmMemoryLimit, Combine::Latest, container_sub),
                Some(_) => Classified::Ignored,
                None => Classified::Drop(DropReason::MissingLabels),
            },
            "kube_pod_container_resource_requests" => match get("resource") {
                Some("cpu") => ksm_pod(Slot::PodKsmCpuRequest, Combine::Latest, container_sub),
                Some("memory") => {
                    ksm_pod(Slot::PodKsmMemoryRequest, Combine::Latest, container_sub)
                }
                Some(_) => Classified::Ignored,
                None => Classified::Drop(DropReason::MissingLabels),
            },
            "kube_pod_info" => match pod() {
                Some(pod) => Classified::PodInfo {
                    pod,
                    node: get("node").map(str::to_string),
                    workload: workload(get("created_by_kind"), get("created_by_name")),
                },
                None => Classified::Drop(DropReason::MissingLabels),
            },
            "kube_node_status_condition" => match (get("condition"), get("status")) {
                (Some("Ready"), Some("true")) => node(
                    Slot::NodeReady,
                    Combine::Latest,
                    String::new(),
                    get("node").map(str::to_string),
                ),
                (Some(_), Some(_)) => Classified::Ignored,
                _ => Classified::Drop(DropReason::MissingLabels),
            },
            "kube_node_status_allocatable" => {
                let slot = match get("resource") {
                    Some("cpu") => Slot::NodeAllocatableCpu,
                    Some("memory") => Slot::NodeAllocatableMemory,
                    Some(_) => return Classified::Ignored,
                    None => return Classified::Drop(DropReason::MissingLabels),
                };
                node(
                    slot,
                    Combine::Latest,
                    String::new(),
                    get("node").map(str::to_string),
                )
            }
            "node_cpu_seconds_total" => {
                let slot = match get("mode") {
                    Some("idle") => Slot::NodeCpuIdle,
                    Some(_) => Slot::NodeCpuBusy,
                    None => return Classified::Drop(DropReason::MissingLabels),
                };
                node(slot, Combine::Rate, series_sub, node_label())
            }
            "node_memory_MemTotal_bytes" => node(
                Slot::NodeMemTotal,
                Combine::Latest,
                String::new(),
                node_label(),
            ),
            "node_memory_MemAvailable_bytes" => node(
                Slot::NodeMemAvailable,
                Combine::Latest,
                String::new(),
                node_label(),
            ),
            _ => Classified::Drop(DropReason::UnknownMetric),
        }
    }
}

/// The owning workload from kube_pod_info's `created_by_*`: a ReplicaSet's name without its
/// pod-template hash is its Deployment's.
fn workload(kind: Option<&str>, name: Option<&str>) -> Option<String> {
    let name = name?;
    match kind {
        Some("ReplicaSet") => match name.rsplit_once('-') {
            Some((deployment, hash))
                if !deployment.is_empty() && hash.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Some(deployment.to_string())
            }
            _ => Some(name.to_string()),
        },
        Some("<none>") | None => None,
        Some(_) => Some(name.to_string()),
    }
}

/// A node label's value as a node name: `host:port` loses its port when `strip_port`.
fn node_name(value: &str, strip_port: bool) -> String {
    if strip_port
        && let Some((host, port)) = value.rsplit_once(':')
        && !host.is_empty()
        && !port.is_empty()
        && port.chars().all(|c| c.is_ascii_digit())
        && (!host.contains(':') || host.ends_with(']'))
    {
        return host.to_string();
    }
    value.to_string()
}

/// A series' identity: a hash of its labels in name order.
fn series_id(labels: &[Label]) -> u64 {
    let mut h = DefaultHasher::new();
    if labels.is_sorted_by(|a, b| a.name <= b.name) {
        for l in labels {
            (&l.name, &l.value).hash(&mut h);
        }
    } else {
        let mut sorted: Vec<&Label> = labels.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for l in sorted {
            (&l.name, &l.value).hash(&mut h);
        }
    }
    h.finish()
}

/// One group's sample, or none when it holds nothing auspex measures.
fn build_sample(
    entity: &EntityRef,
    bucket: i64,
    group: &Group,
    meta: Option<&PodMeta>,
) -> Option<MetricSample> {
    let mut sum: BTreeMap<Slot, f64> = BTreeMap::new();
    let mut present: BTreeMap<Slot, bool> = BTreeMap::new();
    // Increases and elapsed time of the throttling counters, summed over containers.
    let (mut throttled, mut periods) = (0.0, 0.0);
    let mut quota: BTreeMap<&str, f64> = BTreeMap::new();
    let mut period: BTreeMap<&str, f64> = BTreeMap::new();
    let mut memory_unlimited = false;
    for ((slot, sub), part) in &group.parts {
        let v = match *part {
            Contribution::Rate {
                increase,
                elapsed_ms,
            } => {
                match slot {
                    Slot::PodThrottled => throttled += increase,
                    Slot::PodPeriods => periods += increase,
                    _ => {}
                }
                if elapsed_ms <= 0 {
                    continue;
                }
                increase / (elapsed_ms as f64 / 1000.0)
            }
            Contribution::Value { value, .. } => value,
        };
        match slot {
            Slot::PodCpuQuota => {
                quota.insert(sub, v);
            }
            Slot::PodCpuPeriod => {
                period.insert(sub, v);
            }
            // 0 is cAdvisor's "no limit": one unlimited container leaves the pod unlimited.
            Slot::PodSpecMemoryLimit if v <= 0.0 => memory_unlimited = true,
            _ => {
                *sum.entry(*slot).or_default() += v;
                present.insert(*slot, true);
            }
        }
    }
    let has = |s: Slot| present.contains_key(&s);
    let mut metrics = BTreeMap::new();
    let mut put = |name: &str, v: f64| {
        if v.is_finite() {
            metrics.insert(name.to_string(), v);
        }
    };
    match entity.kind {
        EntityKind::Node => {
            let busy = sum.get(&Slot::NodeCpuBusy).copied();
            let idle = sum.get(&Slot::NodeCpuIdle).copied();
            if let Some(b) = busy {
                put("cpu_usage_cores", b);
                let total = b + idle.unwrap_or(0.0);
                if total > 0.0 {
                    put("node_cpu_utilization_ratio", (b / total).clamp(0.0, 1.0));
                }
            }
            if let (Some(t), Some(a)) = (
                sum.get(&Slot::NodeMemTotal).copied(),
                sum.get(&Slot::NodeMemAvailable).copied(),
            ) {
                put("memory_working_set_bytes", (t - a).max(0.0));
                if t > 0.0 {
                    put(
                        "node_memory_utilization_ratio",
                        (1.0 - a / t).clamp(0.0, 1.0),
                    );
                }
            }
            if let Some(v) = sum.get(&Slot::NodeAllocatableCpu) {
                put("cpu_limit_cores", *v);
            }
            if let Some(v) = sum.get(&Slot::NodeAllocatableMemory) {
                put("memory_limit_bytes", *v);
            }
            if let Some(v) = sum.get(&Slot::NodeReady) {
                put("ready", v.clamp(0.0, 1.0));
            }
        }
        _ => {
            for (slot, name) in [
                (Slot::PodCpu, "cpu_usage_cores"),
                (Slot::PodMemory, "memory_working_set_bytes"),
                (Slot::PodOom, "oom_kills_total"),
                (Slot::PodRestarts, "restarts_total"),
                (Slot::PodKsmCpuRequest, "cpu_request_cores"),
                (Slot::PodKsmMemoryRequest, "memory_request_bytes"),
            ] {
                if has(slot) {
                    put(name, sum[&slot]);
                }
            }
            if has(Slot::PodReady) {
                put("ready", sum[&Slot::PodReady].clamp(0.0, 1.0));
            }
            for field in [
                Net::RxBytes,
                Net::TxBytes,
                Net::RxErrors,
                Net::TxErrors,
                Net::RxDropped,
                Net::TxDropped,
            ] {
                if let Some(v) = sum.get(&Slot::PodNet(field)) {
                    put(field.metric(), *v);
                }
            }
            if has(Slot::PodPeriods) && periods > 0.0 {
                put("cpu_throttled_ratio", (throttled / periods).clamp(0.0, 1.0));
            }
            // kube-state-metrics' limits when present, else cAdvisor's cgroup spec.
            if has(Slot::PodKsmCpuLimit) {
                put("cpu_limit_cores", sum[&Slot::PodKsmCpuLimit]);
            } else {
                let cores: f64 = quota
                    .iter()
                    .filter_map(|(c, q)| {
                        let p = period.get(c)?;
                        (*q > 0.0 && *p > 0.0).then(|| q / p)
                    })
                    .sum();
                if cores > 0.0 {
                    put("cpu_limit_cores", cores);
                }
            }
            if has(Slot::PodKsmMemoryLimit) {
                put("memory_limit_bytes", sum[&Slot::PodKsmMemoryLimit]);
            } else if let Some(v) = sum.get(&Slot::PodSpecMemoryLimit)
                && !memory_unlimited
            {
                put("memory_limit_bytes", *v);
            }
        }
    }
    if metrics.is_empty() {
        return None;
    }
    let mut e = Entity::new(entity.kind, entity.namespace.as_deref(), &entity.name);
    if let Some(m) = meta {
        e.node = m.node.clone();
        e.workload = m.workload.clone();
    }
    Some(MetricSample {
        timestamp_ms: bucket,
        entity: e,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A bucket start (a multiple of the default 15 s resolution).
    const T0: i64 = 1_700_000_010_000;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        let mut v: Vec<Label> = pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect();
        v.sort();
        v
    }

    fn cadvisor(name: &str, pod: &str, container: &str, extra: &[(&str, &str)]) -> Vec<Label> {
        let mut p = vec![
            ("__name__", name),
            ("namespace", "shop"),
            ("pod", pod),
            ("container", container),
            ("node", "worker-1"),
            ("id", "/kubepods/x"),
        ];
        p.extend_from_slice(extra);
        labels(&p)
    }

    fn feed(m: &mut Mapper, l: &[Label], samples: &[(i64, f64)]) -> IngestStats {
        m.ingest(l, samples.iter().copied(), 0)
    }

    /// Everything flushed, one sample per entity expected in bucket `T0`.
    fn flush_one(m: &mut Mapper, entity: &str) -> MetricSample {
        let out = m.flush(i64::MAX / 2, true);
        let found: Vec<&MetricSample> = out
            .iter()
            .filter(|s| s.entity.id().as_str() == entity && s.timestamp_ms == T0)
            .collect();
        assert_eq!(found.len(), 1, "{entity} in {out:#?}");
        found[0].clone()
    }

    #[test]
    fn pod_cpu_is_the_sum_of_container_rates_without_pause_or_aggregate() {
        let mut m = Mapper::new(MappingConfig::default());
        let cpu = "container_cpu_usage_seconds_total";
        // server: 0.5 cores, sidecar: 0.25 cores over 10 s.
        feed(
            &mut m,
            &cadvisor(cpu, "cart-1", "server", &[]),
            &[(T0, 100.0), (T0 + 10_000, 105.0)],
        );
        feed(
            &mut m,
            &cadvisor(cpu, "cart-1", "sidecar", &[]),
            &[(T0, 10.0), (T0 + 10_000, 12.5)],
        );
        // The pod cgroup (sum of both) and the pause container must not count again.
        feed(
            &mut m,
            &cadvisor(cpu, "cart-1", "", &[]),
            &[(T0, 110.0), (T0 + 10_000, 117.5)],
        );
        feed(
            &mut m,
            &cadvisor(cpu, "cart-1", "POD", &[]),
            &[(T0, 1.0), (T0 + 10_000, 9.0)],
        );
        let s = flush_one(&mut m, "pod/shop/cart-1");
        assert!((s.metrics["cpu_usage_cores"] - 0.75).abs() < 1e-9, "{s:?}");
        assert_eq!(s.entity.node.as_deref(), Some("worker-1"));
    }

    #[test]
    fn standalone_cadvisor_labels_name_the_pod() {
        let mut m = Mapper::new(MappingConfig::default());
        let l = |container: &str, cpu: &str| {
            labels(&[
                ("__name__", "container_cpu_usage_seconds_total"),
                ("container_label_io_kubernetes_container_name", container),
                ("container_label_io_kubernetes_pod_name", "cart-1"),
                ("container_label_io_kubernetes_pod_namespace", "shop"),
                ("cpu", cpu),
                ("id", "/docker/abc"),
                ("instance", "worker-3:8080"),
            ])
        };
        // Per-CPU series (cAdvisor's percpu metrics) add up.
        feed(
            &mut m,
            &l("server", "cpu00"),
            &[(T0, 1.0), (T0 + 1000, 1.5)],
        );
        feed(
            &mut m,
            &l("server", "cpu01"),
            &[(T0, 1.0), (T0 + 1000, 1.25)],
        );
        feed(&mut m, &l("POD", "cpu00"), &[(T0, 1.0), (T0 + 1000, 2.0)]);
        let s = flush_one(&mut m, "pod/shop/cart-1");
        assert!((s.metrics["cpu_usage_cores"] - 0.75).abs() < 1e-9, "{s:?}");
        assert_eq!(s.entity.node.as_deref(), Some("worker-3"));
    }

    #[test]
    fn memory_is_summed_per_pod_once_per_container() {
        let mut m = Mapper::new(MappingConfig::default());
        let mem = "container_memory_working_set_bytes";
        feed(
            &mut m,
            &cadvisor(mem, "cart-1", "server", &[("id", "/a")]),
            &[(T0, 100.0)],
        );
        // The same container's previous cgroup, still reported after a restart: not twice.
        feed(
            &mut m,
            &cadvisor(mem, "cart-1", "server", &[("id", "/b")]),
            &[(T0 + 1000, 120.0)],
        );
        feed(
            &mut m,
            &cadvisor(mem, "cart-1", "sidecar", &[]),
            &[(T0, 30.0)],
        );
        feed(&mut m, &cadvisor(mem, "cart-1", "", &[]), &[(T0, 150.0)]);
        feed(&mut m, &cadvisor(mem, "cart-1", "POD", &[]), &[(T0, 1.0)]);
        let s = flush_one(&mut m, "pod/shop/cart-1");
        assert_eq!(s.metrics["memory_working_set_bytes"], 150.0);
    }

    #[test]
    fn throttling_network_limits_and_ooms() {
        let mut m = Mapper::new(MappingConfig::default());
        let thr = "container_cpu_cfs_throttled_periods_total";
        let per = "container_cpu_cfs_periods_total";
        feed(
            &mut m,
            &cadvisor(thr, "api-1", "app", &[]),
            &[(T0, 10.0), (T0 + 5000, 40.0)],
        );
        feed(
            &mut m,
            &cadvisor(per, "api-1", "app", &[]),
            &[(T0, 100.0), (T0 + 5000, 200.0)],
        );
        for (container, iface, v) in [
            ("", "eth0", 1000.0),
            ("POD", "eth0", 1000.0),
            ("", "eth1", 24.0),
            ("app", "eth0", 1000.0),
        ] {
            feed(
                &mut m,
                &cadvisor(
                    "container_network_receive_bytes_total",
                    "api-1",
                    container,
                    &[("interface", iface)],
                ),
                &[(T0, v)],
            );
        }
        feed(
            &mut m,
            &cadvisor("container_spec_cpu_quota", "api-1", "app", &[]),
            &[(T0, 50_000.0)],
        );
        feed(
            &mut m,
            &cadvisor("container_spec_cpu_period", "api-1", "app", &[]),
            &[(T0, 100_000.0)],
        );
        feed(
            &mut m,
            &cadvisor("container_spec_memory_limit_bytes", "api-1", "app", &[]),
            &[(T0, 256.0)],
        );
        feed(
            &mut m,
            &cadvisor("container_oom_events_total", "api-1", "app", &[]),
            &[(T0, 2.0)],
        );
        let s = flush_one(&mut m, "pod/shop/api-1");
        assert!(
            (s.metrics["cpu_throttled_ratio"] - 0.3).abs() < 1e-9,
            "{s:?}"
        );
        assert_eq!(s.metrics["network_rx_bytes_total"], 1024.0);
        assert_eq!(s.metrics["cpu_limit_cores"], 0.5);
        assert_eq!(s.metrics["memory_limit_bytes"], 256.0);
        assert_eq!(s.metrics["oom_kills_total"], 2.0);
    }

    #[test]
    fn kube_state_metrics_restarts_ready_limits_and_node() {
        let mut m = Mapper::new(MappingConfig::default());
        let ksm = |name: &str, extra: &[(&str, &str)]| {
            let mut p = vec![
                ("__name__", name),
                ("namespace", "shop"),
                ("pod", "cart-1"),
                ("instance", "10.0.0.9:8080"),
            ];
            p.extend_from_slice(extra);
            labels(&p)
        };
        feed(
            &mut m,
            &ksm(
                "kube_pod_info",
                &[
                    ("node", "worker-2"),
                    ("created_by_kind", "ReplicaSet"),
                    ("created_by_name", "cart-7d9f8b"),
                ],
            ),
            &[(T0, 1.0)],
        );
        feed(
            &mut m,
            &ksm(
                "kube_pod_container_status_restarts_total",
                &[("container", "server")],
            ),
            &[(T0, 3.0)],
        );
        feed(
            &mut m,
            &ksm(
                "kube_pod_container_status_restarts_total",
                &[("container", "sidecar")],
            ),
            &[(T0, 1.0)],
        );
        feed(
            &mut m,
            &ksm("kube_pod_status_ready", &[("condition", "true")]),
            &[(T0, 0.0)],
        );
        feed(
            &mut m,
            &ksm("kube_pod_status_ready", &[("condition", "false")]),
            &[(T0, 1.0)],
        );
        feed(
            &mut m,
            &ksm(
                "kube_pod_container_resource_limits",
                &[
                    ("container", "server"),
                    ("resource", "cpu"),
                    ("unit", "core"),
                ],
            ),
            &[(T0, 2.0)],
        );
        feed(
            &mut m,
            &ksm(
                "kube_pod_container_resource_limits",
                &[
                    ("container", "server"),
                    ("resource", "memory"),
                    ("unit", "byte"),
                ],
            ),
            &[(T0, 1e9)],
        );
        feed(
            &mut m,
            &ksm(
                "kube_pod_container_resource_requests",
                &[
                    ("container", "server"),
                    ("resource", "cpu"),
                    ("unit", "core"),
                ],
            ),
            &[(T0, 0.5)],
        );
        // cAdvisor's quota loses to kube-state-metrics' limit.
        feed(
            &mut m,
            &cadvisor("container_spec_cpu_quota", "cart-1", "server", &[]),
            &[(T0, 50_000.0)],
        );
        feed(
            &mut m,
            &cadvisor("container_spec_cpu_period", "cart-1", "server", &[]),
            &[(T0, 100_000.0)],
        );
        let s = flush_one(&mut m, "pod/shop/cart-1");
        assert_eq!(s.metrics["restarts_total"], 4.0);
        assert_eq!(s.metrics["ready"], 0.0);
        assert_eq!(s.metrics["cpu_limit_cores"], 2.0);
        assert_eq!(s.metrics["memory_limit_bytes"], 1e9);
        assert_eq!(s.metrics["cpu_request_cores"], 0.5);
        // kube_pod_info's node wins over the cAdvisor series' node label.
        assert_eq!(s.entity.node.as_deref(), Some("worker-2"));
        assert_eq!(s.entity.workload.as_deref(), Some("cart"));
        assert_eq!(crate::output::key_of(&s), "worker-2");
    }

    #[test]
    fn node_exporter_cpu_and_memory() {
        let mut m = Mapper::new(MappingConfig::default());
        let cpu = |cpu: &str, mode: &str| {
            labels(&[
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", cpu),
                ("mode", mode),
                ("instance", "worker-1:9100"),
                ("job", "node"),
            ])
        };
        // Two CPUs over 10 s: cpu0 busy 6 s (user 4 + system 2), cpu1 busy 2 s.
        feed(
            &mut m,
            &cpu("0", "user"),
            &[(T0, 100.0), (T0 + 10_000, 104.0)],
        );
        feed(
            &mut m,
            &cpu("0", "system"),
            &[(T0, 50.0), (T0 + 10_000, 52.0)],
        );
        feed(
            &mut m,
            &cpu("0", "idle"),
            &[(T0, 1000.0), (T0 + 10_000, 1004.0)],
        );
        feed(
            &mut m,
            &cpu("1", "user"),
            &[(T0, 10.0), (T0 + 10_000, 12.0)],
        );
        feed(
            &mut m,
            &cpu("1", "idle"),
            &[(T0, 2000.0), (T0 + 10_000, 2008.0)],
        );
        let mem = |name: &str| labels(&[("__name__", name), ("instance", "worker-1:9100")]);
        feed(&mut m, &mem("node_memory_MemTotal_bytes"), &[(T0, 1000.0)]);
        feed(
            &mut m,
            &mem("node_memory_MemAvailable_bytes"),
            &[(T0, 250.0)],
        );
        feed(
            &mut m,
            &labels(&[
                ("__name__", "kube_node_status_condition"),
                ("node", "worker-1"),
                ("condition", "Ready"),
                ("status", "true"),
            ]),
            &[(T0, 1.0)],
        );
        feed(
            &mut m,
            &labels(&[
                ("__name__", "kube_node_status_condition"),
                ("node", "worker-1"),
                ("condition", "Ready"),
                ("status", "false"),
            ]),
            &[(T0, 0.0)],
        );
        feed(
            &mut m,
            &labels(&[
                ("__name__", "kube_node_status_allocatable"),
                ("node", "worker-1"),
                ("resource", "cpu"),
                ("unit", "core"),
            ]),
            &[(T0, 2.0)],
        );
        let s = flush_one(&mut m, "node/worker-1");
        assert!((s.metrics["cpu_usage_cores"] - 0.8).abs() < 1e-9, "{s:?}");
        assert!((s.metrics["node_cpu_utilization_ratio"] - 0.4).abs() < 1e-9);
        assert_eq!(s.metrics["memory_working_set_bytes"], 750.0);
        assert_eq!(s.metrics["node_memory_utilization_ratio"], 0.75);
        assert_eq!(s.metrics["ready"], 1.0);
        assert_eq!(s.metrics["cpu_limit_cores"], 2.0);
        assert_eq!(crate::output::key_of(&s), "worker-1");
    }

    #[test]
    fn unknown_and_unlabelled_series_are_counted_and_dropped() {
        let mut m = Mapper::new(MappingConfig::default());
        let st = feed(
            &mut m,
            &labels(&[("__name__", "go_goroutines")]),
            &[(T0, 1.0), (T0 + 1, 2.0)],
        );
        assert_eq!(
            st,
            IngestStats {
                used: 0,
                dropped: 2
            }
        );
        assert_eq!(m.dropped(DropReason::UnknownMetric), 2);
        // cAdvisor's machine-level cgroup (id="/") has no pod.
        feed(
            &mut m,
            &labels(&[
                ("__name__", "container_memory_working_set_bytes"),
                ("id", "/"),
            ]),
            &[(T0, 1.0)],
        );
        feed(&mut m, &labels(&[("job", "x")]), &[(T0, 1.0)]);
        assert_eq!(m.dropped(DropReason::MissingLabels), 2);
        feed(
            &mut m,
            &cadvisor("container_memory_working_set_bytes", "a", "b", &[]),
            &[(T0, f64::NAN), (T0 + 1, f64::INFINITY), (-5, 1.0)],
        );
        assert_eq!(m.dropped(DropReason::StaleMarker), 1);
        assert_eq!(m.dropped(DropReason::Invalid), 2);
        assert!(m.flush(i64::MAX / 2, true).is_empty());
    }

    #[test]
    fn a_group_waits_until_complete_and_late_samples_are_dropped() {
        let cfg = MappingConfig::default();
        let mut m = Mapper::new(cfg.clone());
        let mem = cadvisor("container_memory_working_set_bytes", "a", "c", &[]);
        m.ingest(&mem, [(T0 + 1000, 1.0)].into_iter(), T0 + 1000);
        // Quiet but the bucket has not ended and nothing newer arrived: not yet.
        assert!(
            m.flush(T0 + 1000 + cfg.flush_after_ms as i64, false)
                .is_empty()
        );
        // A newer bucket arrives: the old one flushes once it is quiet.
        m.ingest(&mem, [(T0 + 15_000, 2.0)].into_iter(), T0 + 15_100);
        let out = m.flush(T0 + 15_100 + cfg.flush_after_ms as i64 - 1000, false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].timestamp_ms, T0);
        assert_eq!(m.open_groups(), 1);
        // A sample for the flushed bucket is late.
        let other = cadvisor("container_memory_working_set_bytes", "a", "d", &[]);
        m.ingest(&other, [(T0 + 2000, 5.0)].into_iter(), T0 + 16_000);
        assert_eq!(m.dropped(DropReason::Late), 1);
        // Out of order within a series, and an exact duplicate (not counted).
        m.ingest(
            &mem,
            [(T0 + 14_000, 2.0), (T0 + 15_000, 2.0)].into_iter(),
            T0 + 16_000,
        );
        assert_eq!(m.dropped(DropReason::OutOfOrder), 1);
        // The last bucket flushes once its end passed and it is quiet.
        let out = m.flush(T0 + 30_000 + cfg.flush_after_ms as i64, false);
        assert_eq!(out.len(), 1);
        assert_eq!(m.open_groups(), 0);
    }

    #[test]
    fn state_is_bounded() {
        let cfg = MappingConfig {
            max_series: 2,
            max_open_groups: 3,
            ..MappingConfig::default()
        };
        let mut m = Mapper::new(cfg.clone());
        let mem = |pod: &str| cadvisor("container_memory_working_set_bytes", pod, "c", &[]);
        m.ingest(&mem("a"), [(T0, 1.0)].into_iter(), 0);
        m.ingest(&mem("b"), [(T0, 1.0)].into_iter(), 0);
        m.ingest(&mem("c"), [(T0, 1.0)].into_iter(), 0);
        assert_eq!(m.dropped(DropReason::SeriesLimit), 1);
        assert_eq!(m.series_count(), 2);
        m.ingest(&mem("a"), [(T0 + 15_000, 1.0)].into_iter(), 0);
        assert_eq!(m.open_groups(), 3);
        assert!(m.saturated());
        m.ingest(&mem("b"), [(T0 + 15_000, 1.0)].into_iter(), 0);
        assert_eq!(m.dropped(DropReason::GroupLimit), 1);
        // Everything flushed and, past the TTL, forgotten.
        m.flush(cfg.series_ttl_ms as i64 + 1, true);
        assert_eq!((m.series_count(), m.open_groups()), (0, 0));
        assert!(!m.saturated());
    }

    #[test]
    fn node_label_is_configurable_and_ports_are_stripped() {
        assert_eq!(node_name("10.0.0.1:9100", true), "10.0.0.1");
        assert_eq!(node_name("[::1]:9100", true), "[::1]");
        assert_eq!(node_name("fe80::1", true), "fe80::1");
        assert_eq!(node_name("worker-1:9100", false), "worker-1:9100");
        let mut m = Mapper::new(MappingConfig {
            node_labels: vec!["kubernetes_node".into()],
            ..MappingConfig::default()
        });
        let l = labels(&[
            ("__name__", "node_memory_MemTotal_bytes"),
            ("instance", "10.0.0.1:9100"),
            ("kubernetes_node", "worker-9"),
        ]);
        feed(&mut m, &l, &[(T0, 1.0)]);
        feed(
            &mut m,
            &labels(&[
                ("__name__", "node_memory_MemAvailable_bytes"),
                ("instance", "x:1"),
            ]),
            &[(T0, 1.0)],
        );
        assert_eq!(m.dropped(DropReason::MissingLabels), 1);
    }

    proptest! {
        /// A counter that resets (a restart) never yields a negative rate, and without resets
        /// the rate is the increase over the time.
        #[test]
        fn counter_resets_never_give_negative_rates(
            steps in proptest::collection::vec((0.0f64..1e6, any::<bool>()), 2..60),
        ) {
            let mut m = Mapper::new(MappingConfig::default());
            let l = cadvisor("container_cpu_usage_seconds_total", "p", "c", &[]);
            let mut value = 0.0;
            let samples: Vec<(i64, f64)> = steps
                .iter()
                .enumerate()
                .map(|(i, (inc, reset))| {
                    value = if *reset { *inc } else { value + inc };
                    (T0 + i as i64 * 1000, value)
                })
                .collect();
            m.ingest(&l, samples.into_iter(), 0);
            for s in m.flush(i64::MAX / 2, true) {
                let v = s.metrics["cpu_usage_cores"];
                prop_assert!(v >= 0.0 && v.is_finite(), "{v}");
            }
        }
    }
}
