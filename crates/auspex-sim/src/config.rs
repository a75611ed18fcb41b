//! The simulator's configuration, its defaults and its validation, plus the fault vocabulary
//! ([`FaultKind`], [`ScheduledFault`]) that a config may use to force a fault list.

use serde::{Deserialize, Serialize};

/// Errors building a simulator.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimError {
    /// A config field is out of range or inconsistent with another.
    #[error("invalid simulator config: `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// After placement a node's nominal peak usage leaves too little headroom for faults to
    /// be the only thing that saturates it.
    #[error(
        "node {node} is overcommitted: nominal peak {resource} use is {ratio:.2} of its capacity \
         (at most 0.5 is allowed so that only injected faults saturate a node); add nodes or \
         capacity (`nodes`, `node_cpu_cores`, `node_memory_bytes`) or shrink pods"
    )]
    Overcommitted {
        node: String,
        resource: &'static str,
        ratio: f64,
    },
    /// A fault from `faults` could not be placed.
    #[error("cannot place faults[{index}] ({kind}): {reason}")]
    FaultUnplaceable {
        index: usize,
        kind: FaultKind,
        reason: String,
    },
}

/// The faults the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A pod's working set grows until it is OOM-killed.
    MemoryLeak,
    /// A pod's CPU demand climbs past its limit: throttling, latency, timeouts.
    CpuSaturation,
    /// A batch pod lands on a node and hogs its CPU; its neighbours get throttled.
    NoisyNeighbour,
    /// Packet errors and drops on a node, or on one service-to-service link.
    NetworkDegradation,
    /// A bad rolling deploy: the new pods fail, restart, then crash-loop.
    CrashLoop,
    /// A node's memory fills up and the kubelet evicts pods.
    NodePressure,
    /// A whole service saturates or crashes and its callers fail after it.
    CascadingFailure,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::MemoryLeak,
        FaultKind::CpuSaturation,
        FaultKind::NoisyNeighbour,
        FaultKind::NetworkDegradation,
        FaultKind::CrashLoop,
        FaultKind::NodePressure,
        FaultKind::CascadingFailure,
    ];

    /// The snake_case name, used as [`auspex_model::IncidentLabel::fault`].
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::MemoryLeak => "memory_leak",
            FaultKind::CpuSaturation => "cpu_saturation",
            FaultKind::NoisyNeighbour => "noisy_neighbour",
            FaultKind::NetworkDegradation => "network_degradation",
            FaultKind::CrashLoop => "crash_loop",
            FaultKind::NodePressure => "node_pressure",
            FaultKind::CascadingFailure => "cascading_failure",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Relative weights of the fault kinds when faults are drawn at random.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultMix {
    /// Weight of `memory_leak`.
    pub memory_leak: f64,
    /// Weight of `cpu_saturation`.
    pub cpu_saturation: f64,
    /// Weight of `noisy_neighbour`.
    pub noisy_neighbour: f64,
    /// Weight of `network_degradation`.
    pub network_degradation: f64,
    /// Weight of `crash_loop`.
    pub crash_loop: f64,
    /// Weight of `node_pressure`.
    pub node_pressure: f64,
    /// Weight of `cascading_failure`.
    pub cascading_failure: f64,
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix {
            memory_leak: 1.0,
            cpu_saturation: 1.0,
            noisy_neighbour: 0.7,
            network_degradation: 0.8,
            crash_loop: 0.8,
            node_pressure: 0.5,
            cascading_failure: 0.6,
        }
    }
}

impl FaultMix {
    /// The weight of `kind`.
    pub fn weight(&self, kind: FaultKind) -> f64 {
        match kind {
            FaultKind::MemoryLeak => self.memory_leak,
            FaultKind::CpuSaturation => self.cpu_saturation,
            FaultKind::NoisyNeighbour => self.noisy_neighbour,
            FaultKind::NetworkDegradation => self.network_degradation,
            FaultKind::CrashLoop => self.crash_loop,
            FaultKind::NodePressure => self.node_pressure,
            FaultKind::CascadingFailure => self.cascading_failure,
        }
    }
}

/// A fault forced at a given time, instead of drawing faults at random.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledFault {
    /// What to inject.
    pub kind: FaultKind,
    /// When the precursor begins, in milliseconds after `start_ms` (rounded down to a tick).
    pub onset_after_ms: u64,
    /// Where: a service name for pod and service faults (a replica is picked at random), a
    /// node name for node faults, a node name or `caller->callee` for `network_degradation`.
    /// Absent: picked at random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Length of the precursor phase; absent: drawn from the config's precursor range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precursor_ms: Option<u64>,
    /// How long the incident lasts before the fault is removed; absent: drawn from the
    /// config's incident range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_ms: Option<u64>,
}

impl ScheduledFault {
    /// A fault of `kind` whose precursor starts `onset_after_ms` into the run, target random.
    pub fn new(kind: FaultKind, onset_after_ms: u64) -> Self {
        ScheduledFault {
            kind,
            onset_after_ms,
            target: None,
            precursor_ms: None,
            incident_ms: None,
        }
    }

    /// The same fault aimed at `target` (see [`ScheduledFault::target`]).
    pub fn on(mut self, target: &str) -> Self {
        self.target = Some(target.to_string());
        self
    }
}

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Everything that shapes a simulated run. Same config (seed included), same output, byte for
/// byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Seed of the one random generator every random choice derives from.
    pub seed: u64,
    /// Timestamp of the first tick, milliseconds since the Unix epoch (UTC).
    pub start_ms: i64,
    /// Length of the run in milliseconds; the run has `duration_ms / interval_ms` ticks.
    pub duration_ms: u64,
    /// Sample interval: time between two ticks, in milliseconds.
    pub interval_ms: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Allocatable CPU of each node, in cores.
    pub node_cpu_cores: f64,
    /// Allocatable memory of each node, in bytes.
    pub node_memory_bytes: u64,
    /// Number of services.
    pub services: usize,
    /// Pods per service.
    pub replicas: usize,
    /// Namespaces the services are spread over.
    pub namespaces: Vec<String>,
    /// Namespace of the batch pods that noisy-neighbour faults bring in.
    pub batch_namespace: String,
    /// Fraction of services that are roots of the call graph (frontends taking outside
    /// traffic); at least one.
    pub root_service_fraction: f64,
    /// Most callers a backend service has (each has at least one).
    pub max_callers: usize,
    /// Requests per second a root service takes at the diurnal peak.
    pub root_requests_per_second: f64,
    /// CPU request of a medium pod, in cores (services come in 0.5x, 1x and 2x sizes).
    pub pod_cpu_request_cores: f64,
    /// CPU limit of a medium pod, in cores.
    pub pod_cpu_limit_cores: f64,
    /// Memory request of a medium pod, in bytes.
    pub pod_memory_request_bytes: u64,
    /// Memory limit of a medium pod, in bytes.
    pub pod_memory_limit_bytes: u64,
    /// Period of the diurnal load cycle, in milliseconds (shorten it so short runs see a cycle).
    pub diurnal_period_ms: u64,
    /// Depth of the diurnal cycle: the trough carries `1 - amplitude` of the peak load.
    pub diurnal_amplitude: f64,
    /// Standard deviation of the slow relative noise on root load.
    pub load_noise: f64,
    /// Load bursts per hour per root service (each lifts its load by 20-60% for 2-8 minutes).
    pub bursts_per_hour: f64,
    /// Rolling deploys per hour across the cluster (each replaces a service's pods).
    pub rolling_deploys_per_hour: f64,
    /// Pod reschedules per hour across the cluster (a pod moves to another node).
    pub reschedules_per_hour: f64,
    /// Faults offered per hour across the cluster when faults are drawn at random; one whose
    /// targets are busy with another fault waits a little or is dropped, so the default 12 h
    /// run gets about 20-27 faults.
    pub fault_rate_per_hour: f64,
    /// Relative weights of the fault kinds when faults are drawn at random.
    pub fault_mix: FaultMix,
    /// Time from the start with no fault onset, so detectors see a baseline.
    pub warmup_ms: u64,
    /// Shortest precursor phase (onset to incident), in milliseconds.
    pub precursor_min_ms: u64,
    /// Longest precursor phase, in milliseconds.
    pub precursor_max_ms: u64,
    /// Shortest incident phase (incident to fault removal), in milliseconds.
    pub incident_min_ms: u64,
    /// Longest incident phase, in milliseconds.
    pub incident_max_ms: u64,
    /// Faults to inject instead of random ones (`fault_rate_per_hour` is then ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Vec<ScheduledFault>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            // 2026-01-05T00:00:00Z, a Monday.
            start_ms: 1_767_571_200_000,
            duration_ms: 12 * HOUR_MS,
            interval_ms: 15_000,
            nodes: 6,
            node_cpu_cores: 8.0,
            node_memory_bytes: 32 * GIB,
            services: 10,
            replicas: 3,
            namespaces: vec!["shop".into(), "payments".into()],
            batch_namespace: "batch".into(),
            root_service_fraction: 0.1,
            max_callers: 2,
            root_requests_per_second: 150.0,
            pod_cpu_request_cores: 0.25,
            pod_cpu_limit_cores: 1.0,
            pod_memory_request_bytes: 256 * MIB,
            pod_memory_limit_bytes: 512 * MIB,
            diurnal_period_ms: 24 * HOUR_MS,
            diurnal_amplitude: 0.6,
            load_noise: 0.05,
            bursts_per_hour: 0.5,
            rolling_deploys_per_hour: 1.0,
            reschedules_per_hour: 2.0,
            fault_rate_per_hour: 3.5,
            fault_mix: FaultMix::default(),
            warmup_ms: HOUR_MS,
            precursor_min_ms: 10 * MINUTE_MS,
            precursor_max_ms: 40 * MINUTE_MS,
            incident_min_ms: 5 * MINUTE_MS,
            incident_max_ms: 20 * MINUTE_MS,
            faults: None,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SimError {
    SimError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

fn check_rate(field: &'static str, v: f64) -> Result<(), SimError> {
    if !v.is_finite() || v < 0.0 {
        return Err(invalid(field, format!("must be finite and >= 0, got {v}")));
    }
    Ok(())
}

fn check_positive(field: &'static str, v: f64) -> Result<(), SimError> {
    if !v.is_finite() || v <= 0.0 {
        return Err(invalid(field, format!("must be finite and > 0, got {v}")));
    }
    Ok(())
}

impl SimConfig {
    /// Number of ticks in the run.
    pub fn ticks(&self) -> u64 {
        self.duration_ms / self.interval_ms.max(1)
    }

    /// Checks every field; the error names the first wrong field and why.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.start_ms < 0 {
            return Err(invalid("start_ms", "must not be before 1970"));
        }
        if self.interval_ms < 1000 {
            return Err(invalid(
                "interval_ms",
                format!("must be at least 1000 ms, got {}", self.interval_ms),
            ));
        }
        if self.duration_ms < self.interval_ms {
            return Err(invalid(
                "duration_ms",
                format!(
                    "must cover at least one interval ({} ms), got {}",
                    self.interval_ms, self.duration_ms
                ),
            ));
        }
        if self.nodes == 0 {
            return Err(invalid("nodes", "must be at least 1"));
        }
        if self.services == 0 {
            return Err(invalid("services", "must be at least 1"));
        }
        if self.replicas == 0 {
            return Err(invalid("replicas", "must be at least 1"));
        }
        if self.namespaces.is_empty() {
            return Err(invalid("namespaces", "must name at least one namespace"));
        }
        for (field, ns) in self
            .namespaces
            .iter()
            .map(|n| ("namespaces", n))
            .chain(std::iter::once(("batch_namespace", &self.batch_namespace)))
        {
            let ok = !ns.is_empty()
                && ns.len() <= 63
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(invalid(
                    field,
                    format!("{ns:?} is not a DNS label (lowercase letters, digits, '-')"),
                ));
            }
        }
        if self.namespaces.contains(&self.batch_namespace) {
            return Err(invalid(
                "batch_namespace",
                "must differ from the service namespaces",
            ));
        }
        if !(self.root_service_fraction > 0.0 && self.root_service_fraction <= 1.0) {
            return Err(invalid(
                "root_service_fraction",
                format!("must be in (0, 1], got {}", self.root_service_fraction),
            ));
        }
        if self.max_callers == 0 {
            return Err(invalid("max_callers", "must be at least 1"));
        }
        check_positive("root_requests_per_second", self.root_requests_per_second)?;
        check_positive("node_cpu_cores", self.node_cpu_cores)?;
        check_positive("node_memory_bytes", self.node_memory_bytes as f64)?;
        check_positive("pod_cpu_request_cores", self.pod_cpu_request_cores)?;
        check_positive("pod_cpu_limit_cores", self.pod_cpu_limit_cores)?;
        check_positive(
            "pod_memory_request_bytes",
            self.pod_memory_request_bytes as f64,
        )?;
        check_positive("pod_memory_limit_bytes", self.pod_memory_limit_bytes as f64)?;
        if self.pod_cpu_request_cores > self.pod_cpu_limit_cores {
            return Err(invalid(
                "pod_cpu_request_cores",
                "must not exceed pod_cpu_limit_cores",
            ));
        }
        if self.pod_memory_request_bytes > self.pod_memory_limit_bytes {
            return Err(invalid(
                "pod_memory_request_bytes",
                "must not exceed pod_memory_limit_bytes",
            ));
        }
        // Scheduling: the pods' requests (2x pods are the largest) must fit somewhere.
        let pods = (self.services * self.replicas) as f64;
        let per_node = (pods / self.nodes as f64).ceil();
        if per_node * self.pod_cpu_request_cores * 1.2 > self.node_cpu_cores {
            return Err(invalid(
                "node_cpu_cores",
                format!(
                    "{} cores cannot hold the CPU requests of ~{per_node} pods per node",
                    self.node_cpu_cores
                ),
            ));
        }
        if per_node * self.pod_memory_request_bytes as f64 * 1.2 > self.node_memory_bytes as f64 {
            return Err(invalid(
                "node_memory_bytes",
                format!(
                    "{} bytes cannot hold the memory requests of ~{per_node} pods per node",
                    self.node_memory_bytes
                ),
            ));
        }
        if self.diurnal_period_ms == 0 {
            return Err(invalid("diurnal_period_ms", "must be > 0"));
        }
        if !(0.0..=0.9).contains(&self.diurnal_amplitude) {
            return Err(invalid(
                "diurnal_amplitude",
                format!("must be in [0, 0.9], got {}", self.diurnal_amplitude),
            ));
        }
        if !(0.0..=0.2).contains(&self.load_noise) {
            return Err(invalid(
                "load_noise",
                format!(
                    "must be in [0, 0.2] (more would saturate pods without a fault), got {}",
                    self.load_noise
                ),
            ));
        }
        check_rate("bursts_per_hour", self.bursts_per_hour)?;
        check_rate("rolling_deploys_per_hour", self.rolling_deploys_per_hour)?;
        check_rate("reschedules_per_hour", self.reschedules_per_hour)?;
        check_rate("fault_rate_per_hour", self.fault_rate_per_hour)?;
        let mut total = 0.0;
        for kind in FaultKind::ALL {
            let w = self.fault_mix.weight(kind);
            if !w.is_finite() || w < 0.0 {
                return Err(invalid(
                    "fault_mix",
                    format!("weight of {kind} must be finite and >= 0, got {w}"),
                ));
            }
            total += w;
        }
        if total <= 0.0 && self.fault_rate_per_hour > 0.0 && self.faults.is_none() {
            return Err(invalid(
                "fault_mix",
                "all weights are zero but fault_rate_per_hour > 0",
            ));
        }
        // The precursor needs a few ticks to be a ramp and not a step.
        let min_phase = 4 * self.interval_ms;
        if self.precursor_min_ms < min_phase {
            return Err(invalid(
                "precursor_min_ms",
                format!("must be at least 4 intervals ({min_phase} ms)"),
            ));
        }
        if self.precursor_max_ms < self.precursor_min_ms {
            return Err(invalid("precursor_max_ms", "must be >= precursor_min_ms"));
        }
        if self.incident_min_ms < min_phase {
            return Err(invalid(
                "incident_min_ms",
                format!("must be at least 4 intervals ({min_phase} ms)"),
            ));
        }
        if self.incident_max_ms < self.incident_min_ms {
            return Err(invalid("incident_max_ms", "must be >= incident_min_ms"));
        }
        if let Some(faults) = &self.faults {
            for f in faults {
                if f.onset_after_ms >= self.duration_ms {
                    return Err(invalid(
                        "faults",
                        format!(
                            "{} onset {} ms is past the end of the run ({} ms)",
                            f.kind, f.onset_after_ms, self.duration_ms
                        ),
                    ));
                }
                for (what, v) in [
                    ("precursor_ms", f.precursor_ms),
                    ("incident_ms", f.incident_ms),
                ] {
                    if let Some(v) = v
                        && v < min_phase
                    {
                        return Err(invalid(
                            "faults",
                            format!(
                                "{} {what} {v} is shorter than 4 intervals ({min_phase} ms)",
                                f.kind
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips() {
        let c = SimConfig::default();
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: SimConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        // Partial configs take the defaults for the rest.
        let partial: SimConfig = serde_json::from_str(r#"{"seed": 7, "nodes": 3}"#).unwrap();
        assert_eq!(partial.seed, 7);
        assert_eq!(partial.services, c.services);
    }

    #[test]
    fn validation_names_the_field() {
        type Mutate = Box<dyn Fn(&mut SimConfig)>;
        let cases: Vec<(&str, Mutate)> = vec![
            ("interval_ms", Box::new(|c| c.interval_ms = 10)),
            ("nodes", Box::new(|c| c.nodes = 0)),
            (
                "namespaces",
                Box::new(|c| c.namespaces = vec!["Bad_NS".into()]),
            ),
            (
                "pod_cpu_request_cores",
                Box::new(|c| c.pod_cpu_request_cores = 2.0),
            ),
            ("node_cpu_cores", Box::new(|c| c.node_cpu_cores = 0.5)),
            ("fault_mix", Box::new(|c| c.fault_mix.memory_leak = -1.0)),
            ("precursor_max_ms", Box::new(|c| c.precursor_max_ms = 1)),
            (
                "faults",
                Box::new(|c| {
                    c.faults = Some(vec![ScheduledFault::new(FaultKind::MemoryLeak, u64::MAX)])
                }),
            ),
        ];
        for (field, mutate) in cases {
            let mut c = SimConfig::default();
            mutate(&mut c);
            match c.validate() {
                Err(SimError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }
}
