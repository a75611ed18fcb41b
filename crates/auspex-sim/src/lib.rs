//! auspex's cluster simulator: a deterministic Kubernetes cluster (nodes, services with a call
//! graph, pods) under diurnal load with noise and bursts, pod churn, and injected faults, each
//! with a precursor phase and exact ground-truth [`IncidentLabel`](auspex_model::IncidentLabel)s.
//!
//! It is a pure source: [`Simulator::next_tick`] yields each interval's topology events and
//! metric samples; it does no I/O (the ingest crate and the binary write files). The whole run —
//! churn, faults and labels — is planned when the simulator is built, from one seeded
//! `ChaCha8Rng`, so the same config gives byte-identical output and the labels are known up
//! front.
//!
//! How labels are made exact: faults are deterministic functions of time (`fault.rs`); the
//! planner runs each fault alone through the same noise-free effect model the simulator uses,
//! labels each entity at the first tick its incident condition holds, and refuses (or, for
//! random faults, postpones) faults that would touch an entity another fault or a deploy holds.
//! Noise stays below the incident thresholds. Every time below is a tick timestamp.
//!
//! | fault | precursor (onset → incident) | `incident_ms` | labels |
//! |---|---|---|---|
//! | `memory_leak` | pod working set ramps (linear to accelerating) to 99% of its limit | the OOM kill: `oom_kills_total` and `restarts_total` +1, `ready` 0, network counters reset | the pod, `memory_exhaustion`; end when ready again |
//! | `cpu_saturation` | pod CPU demand ramps 50% → 95% of its limit, throttling and latency rise | demand passes the limit: usage = limit, throttled ≥ 0.5, some timeouts | the pod, `cpu_exhaustion` |
//! | `noisy_neighbour` | a batch pod lands on the node; node CPU ramps 55% → 92% | node CPU utilisation reaches 1 | the node (`cpu_exhaustion`, root); each pod whose added throttling reaches 0.3 (not root) |
//! | `network_degradation` | node: packet errors/drops ×1→×200, pods' errors to 3%; link: call errors to 3% | node: drops ×3000, pods fail 10-30% of requests; link: 15-40% of calls fail | node: the node (root) and its pods; link: the calling service (root) and its pods; `network_issue` |
//! | `crash_loop` | a rolling deploy brings a new pod; its errors rise, it restarts twice | CrashLoopBackOff: `ready` 0 until the rollback deletes it, restarts with 10 s → 5 min back-off | the new pods, `pod_failure`; end at the rollback |
//! | `node_pressure` | node memory ramps 60% → 95% | node memory reaches 98.5%; the kubelet evicts a third of its pods (`ready` 0, replaced elsewhere two ticks later) | the node (`memory_exhaustion`, root); evicted pods (`pod_failure`) |
//! | `cascading_failure` | all of a service's pods saturate, or fail and restart | the pods crash-loop or shed 30-60% of requests | its pods and the service (root) |
//!
//! Beyond the roots, failures travel: a service whose requests fail at least 5% of the time
//! (noise-free `success_ratio` ≤ 0.95) is labelled when it crosses that line, as are its pods
//! (`network_issue` when the failures come from its callees, the root's kind otherwise), and its
//! callers see them 30 s later per hop. So every entity whose metrics cross an incident condition
//! is labelled, and only those.

mod cluster;
mod config;
mod fault;
mod plan;
mod sim;

pub use config::{FaultKind, FaultMix, ScheduledFault, SimConfig, SimError};
pub use sim::{Simulator, Tick};
