//! Recommended actions: every firing alert gets one, from a rule table an SRE can read and
//! override (`[remediation]` in the serve config).
//!
//! Two steps, kept apart so that each can be read on its own:
//! 1. **Diagnosis** (fixed, documented below): from what serve holds when the alert fires —
//!    the alert's kind and entity, the entity's window features, the live graph (the pod's node
//!    and the other pods on it, the workload's replicas, `calls` edges), the latest scores of
//!    other entities and the revisions seen per workload — name the *cause*.
//! 2. **Rule table** (overridable): each cause maps to an action ([`ActionKind`]) and a
//!    runbook. The action's target and parameters (replica count, limits, revisions, pods to
//!    move, the root service) are computed from the same evidence.
//!
//! | cause | when | default action |
//! |---|---|---|
//! | `memory_leak` | memory exhaustion (or a pod failure near its memory limit) on a pod whose working set grows | `restart_before_oom` (time to OOM; a raised limit sized from the slope as alternative) |
//! | `bad_rollout` | a pod failure on a pod whose revision appeared within `rollout_window_s`, with an older revision known | `rollback` to the previous revision |
//! | `node_pressure` | memory or pod failure on a node, or on a pod whose node's memory is at `node_saturation` | `cordon_and_drain` the node |
//! | `node_cpu_contention` | CPU exhaustion on a node, or on a pod below its own limit on a node at `node_saturation` | `cordon_and_drain` the node |
//! | `node_network` | a network issue on a node, or on a pod whose node or fellow pods are scored for it too | `cordon_and_drain` the node |
//! | `cpu_load` | CPU exhaustion from the pod's or service's own demand | `scale_out` to N replicas |
//! | `cascade` | failures shared along `calls` edges, or by most pods of one service at once | `shed_load` at the root candidate |
//! | `call_path` | a network issue shared by most pods of one service across nodes, no node to blame | `shed_load` (open the circuit on its calls) |
//! | `unknown` | nothing above holds | `investigate` |
//!
//! auspex only recommends: nothing here writes to the cluster (its RBAC is read-only).
//! Not here: when alerts fire (the alert tracker), or how actions are delivered (the sinks).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use auspex_graph::LiveGraph;
use auspex_model::{
    ACTION_VERSION, ActionEvidence, ActionKind, ActionTarget, Alert, AnomalyKind, EntityId,
    EntityKind, EntityRef, RecommendedAction, TargetKind, TimestampMs,
};
use auspex_window::WindowStore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Fellow pods of a service count as failing from this fraction of `cascade_min_score`.
const SIBLING_RATIO: f64 = 0.6;

/// The label that names a pod's revision (a Deployment's ReplicaSet hash).
pub const REVISION_LABEL: &str = "pod-template-hash";

/// The causes the diagnosis can name, in the rule table's order.
pub const CAUSES: [&str; 9] = [
    "memory_leak",
    "bad_rollout",
    "node_pressure",
    "node_cpu_contention",
    "node_network",
    "cpu_load",
    "cascade",
    "call_path",
    "unknown",
];

/// The actions a cause may map to: the target and parameters of any other would be
/// meaningless (rolling back a node), so config asking for one is refused at start-up.
fn allowed(cause: &str) -> &'static [ActionKind] {
    use ActionKind::*;
    match cause {
        "memory_leak" => &[RestartBeforeOom, RaiseMemoryLimit, Investigate],
        "bad_rollout" => &[Rollback, Investigate],
        "node_pressure" | "node_network" => &[CordonAndDrain, Investigate],
        "node_cpu_contention" => &[CordonAndDrain, ScaleOut, Investigate],
        "cpu_load" => &[ScaleOut, RaiseCpuLimit, Investigate],
        "cascade" => &[ShedLoad, ScaleOut, Investigate],
        "call_path" => &[ShedLoad, Investigate],
        _ => &[Investigate],
    }
}

fn default_action(cause: &str) -> ActionKind {
    match cause {
        "memory_leak" => ActionKind::RestartBeforeOom,
        "bad_rollout" => ActionKind::Rollback,
        "node_pressure" | "node_network" | "node_cpu_contention" => ActionKind::CordonAndDrain,
        "cpu_load" => ActionKind::ScaleOut,
        "cascade" | "call_path" => ActionKind::ShedLoad,
        _ => ActionKind::Investigate,
    }
}

/// One row of the rule table (`[remediation.rules.<cause>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The action recommended for the cause (see [`CAUSES`] for what each cause allows).
    pub action: ActionKind,
    /// A runbook URL for it; absent: `runbook_base` + the action's name, if a base is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

/// `[remediation]`: the rule table and the parameters its actions are sized with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemediationConfig {
    /// Attach a recommended action to every firing alert.
    pub enabled: bool,
    /// Overrides of the default rules, by cause (`memory_leak`, `bad_rollout`,
    /// `node_pressure`, `node_cpu_contention`, `node_network`, `cpu_load`, `cascade`,
    /// `unknown`).
    pub rules: BTreeMap<String, Rule>,
    /// Runbooks not given per rule are `{runbook_base}/{action}` (e.g.
    /// `https://runbooks.example/auspex` → `.../rollback`); empty: none.
    pub runbook_base: String,
    /// `scale_out` sizes the workload so that each replica's CPU use is at most this
    /// fraction of its limit.
    pub target_cpu_utilisation: f64,
    /// Margin added to computed limits (and to the demand behind a replica count), as a
    /// fraction: 0.2 = 20 % above what the evidence asks for.
    pub headroom: f64,
    /// `scale_out` never recommends more replicas than this.
    pub max_replicas: u32,
    /// Demand is projected this far ahead along its slope before sizing replicas or a CPU
    /// limit, in seconds.
    pub projection_s: f64,
    /// `raise_memory_limit` sizes the new limit to absorb the leak for this long, in seconds.
    pub leak_runway_s: f64,
    /// `restart_before_oom` recommends restarting once this fraction of the time to OOM has
    /// passed (0.5: half-way), leaving the rest as margin.
    pub restart_at_fraction: f64,
    /// A node at or above this CPU or memory utilisation (0..1), now or `projection_s` ahead
    /// along its slope, counts as saturated.
    pub node_saturation: f64,
    /// A leak that needs longer than this to reach the limit, in seconds, is not the cause of
    /// an incident predicted now.
    pub max_time_to_oom_s: f64,
    /// A revision first seen at most this long before a pod failure counts as a rollout.
    pub rollout_window_s: f64,
    /// A service (or one of its pods) scored at least this for any kind counts as failing
    /// when looking for the root of a cascade.
    pub cascade_min_score: f64,
}

impl Default for RemediationConfig {
    fn default() -> Self {
        RemediationConfig {
            enabled: true,
            rules: BTreeMap::new(),
            runbook_base: String::new(),
            target_cpu_utilisation: 0.6,
            headroom: 0.2,
            max_replicas: 50,
            projection_s: 900.0,
            leak_runway_s: 4.0 * 3600.0,
            restart_at_fraction: 0.5,
            node_saturation: 0.85,
            max_time_to_oom_s: 7200.0,
            rollout_window_s: 3600.0,
            cascade_min_score: 0.5,
        }
    }
}

impl RemediationConfig {
    /// Checks every key; the error names it (`remediation.<key>`) and why.
    pub fn validate(&self) -> Result<(), String> {
        for (cause, rule) in &self.rules {
            if !CAUSES.contains(&cause.as_str()) {
                return Err(format!(
                    "remediation.rules.{cause}: unknown cause; expected one of {}",
                    CAUSES.join(", ")
                ));
            }
            let ok = allowed(cause);
            if !ok.contains(&rule.action) {
                let names: Vec<&str> = ok.iter().map(|a| a.as_str()).collect();
                return Err(format!(
                    "remediation.rules.{cause}.action = {:?}: not an action for this cause; \
                     expected one of {}",
                    rule.action.as_str(),
                    names.join(", ")
                ));
            }
            if rule.runbook.as_deref().is_some_and(str::is_empty) {
                return Err(format!(
                    "remediation.rules.{cause}.runbook: empty (leave it out for none)"
                ));
            }
        }
        let unit = |key: &str, v: f64, lo_open: bool| {
            let ok = v.is_finite() && v <= 1.0 && if lo_open { v > 0.0 } else { v >= 0.0 };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "remediation.{key} = {v}: must be within {}0, 1]",
                    if lo_open { "(" } else { "[" }
                ))
            }
        };
        unit("target_cpu_utilisation", self.target_cpu_utilisation, true)?;
        unit("restart_at_fraction", self.restart_at_fraction, true)?;
        unit("node_saturation", self.node_saturation, true)?;
        unit("cascade_min_score", self.cascade_min_score, true)?;
        for (key, v) in [
            ("headroom", self.headroom),
            ("projection_s", self.projection_s),
            ("leak_runway_s", self.leak_runway_s),
            ("rollout_window_s", self.rollout_window_s),
            ("max_time_to_oom_s", self.max_time_to_oom_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("remediation.{key} = {v}: must be a number >= 0"));
            }
        }
        if self.max_replicas == 0 {
            return Err("remediation.max_replicas = 0: must be at least 1".into());
        }
        Ok(())
    }

    /// The rule in force for `cause`: the configured one, else the default.
    pub fn rule(&self, cause: &str) -> Rule {
        let mut rule = self.rules.get(cause).cloned().unwrap_or(Rule {
            action: default_action(cause),
            runbook: None,
        });
        if rule.runbook.is_none() && !self.runbook_base.is_empty() {
            rule.runbook = Some(format!(
                "{}/{}",
                self.runbook_base.trim_end_matches('/'),
                rule.action
            ));
        }
        rule
    }
}

/// The revisions seen per workload, oldest first, with when each was first seen: enough to
/// tell a fresh rollout and to name the revision before it.
#[derive(Debug, Default)]
pub struct RevisionBook {
    by_workload: HashMap<(String, String), Vec<(String, TimestampMs)>>,
}

/// Revisions remembered per workload.
const MAX_REVISIONS: usize = 16;

impl RevisionBook {
    /// Notes a pod of `workload` in `namespace` at revision `hash`, seen at `ts`.
    pub fn observe(&mut self, namespace: &str, workload: &str, hash: &str, ts: TimestampMs) {
        let revs = self
            .by_workload
            .entry((namespace.to_string(), workload.to_string()))
            .or_default();
        if revs.iter().any(|(h, _)| h == hash) {
            return;
        }
        revs.push((hash.to_string(), ts));
        if revs.len() > MAX_REVISIONS {
            revs.remove(0);
        }
    }

    /// The revision of a pod entity: its `pod-template-hash` label.
    pub fn observe_entity(&mut self, e: &auspex_model::Entity, ts: TimestampMs) {
        if e.kind != EntityKind::Pod {
            return;
        }
        if let (Some(ns), Some(w), Some(h)) = (
            e.namespace.as_deref(),
            e.workload.as_deref(),
            e.labels.get(REVISION_LABEL),
        ) {
            self.observe(ns, w, h, ts);
        }
    }

    /// When `hash` was first seen, and the revision seen before it.
    fn rollout(&self, namespace: &str, workload: &str, hash: &str) -> Option<(TimestampMs, &str)> {
        let revs = self
            .by_workload
            .get(&(namespace.to_string(), workload.to_string()))?;
        let i = revs.iter().position(|(h, _)| h == hash)?;
        let prev = revs.get(i.checked_sub(1)?)?;
        Some((revs[i].1, prev.0.as_str()))
    }
}

/// What serve holds at alert time, for the diagnosis.
pub struct Facts<'a> {
    pub graph: &'a LiveGraph,
    pub windows: &'a WindowStore,
    /// An entity's latest score for a kind, if it was scored.
    pub score: &'a dyn Fn(&EntityId, AnomalyKind) -> Option<f64>,
    pub revisions: &'a RevisionBook,
}

impl Facts<'_> {
    /// One feature of an entity's current window.
    fn feature(&self, id: &EntityId, name: &str) -> Option<f64> {
        let i = self.windows.spec().index_of(name)?;
        let v = *self.windows.features(id)?.get(i)?;
        v.is_finite().then_some(f64::from(v))
    }

    /// The highest latest score of an entity over all kinds.
    fn any_score(&self, id: &EntityId) -> f64 {
        AnomalyKind::ALL
            .iter()
            .filter_map(|k| (self.score)(id, *k))
            .fold(0.0, f64::max)
    }

    /// A service's failing score: its own or its pods' highest.
    fn service_score(&self, svc: &EntityId) -> f64 {
        self.graph
            .members_of(svc)
            .iter()
            .map(|p| self.any_score(p))
            .fold(self.any_score(svc), f64::max)
    }
}

/// What the diagnosis found, before the rule table picks the action.
struct Diagnosis {
    cause: &'static str,
    /// Why, for people (the cause's part of the reason).
    why: String,
    evidence: Vec<ActionEvidence>,
    /// Candidate targets and parameters, filled as far as the evidence goes.
    pod: Option<EntityRef>,
    workload: Option<(Option<String>, String)>,
    node: Option<String>,
    root_service: Option<EntityRef>,
    replicas: Option<u32>,
    cpu_usage: Option<f64>,
    cpu_limit: Option<f64>,
    cpu_slope: Option<f64>,
    memory: Option<(f64, f64, f64)>,
    time_to_oom_s: Option<f64>,
    revisions: Option<(String, String)>,
    cascade_path: Vec<String>,
    /// The pods on `node` (a drain moves them).
    node_pods: Vec<String>,
}

impl Diagnosis {
    fn new(cause: &'static str, why: String) -> Self {
        Diagnosis {
            cause,
            why,
            evidence: Vec::new(),
            pod: None,
            workload: None,
            node: None,
            root_service: None,
            replicas: None,
            cpu_usage: None,
            cpu_limit: None,
            cpu_slope: None,
            memory: None,
            time_to_oom_s: None,
            revisions: None,
            cascade_path: Vec::new(),
            node_pods: Vec::new(),
        }
    }
}

fn ev(name: &str, value: impl Into<Value>) -> ActionEvidence {
    ActionEvidence {
        name: name.to_string(),
        value: value.into(),
    }
}

fn round(v: f64, step: f64) -> f64 {
    (v / step).round() * step
}

/// The rule table at work.
#[derive(Debug, Clone)]
pub struct Recommender {
    config: RemediationConfig,
}

impl Recommender {
    pub fn new(config: RemediationConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(Recommender { config })
    }

    pub fn config(&self) -> &RemediationConfig {
        &self.config
    }

    /// The recommended action for a firing alert; `None` when recommendations are off.
    pub fn recommend(&self, alert: &Alert, facts: &Facts<'_>) -> Option<RecommendedAction> {
        if !self.config.enabled {
            return None;
        }
        let mut d = self.diagnose(alert, facts);
        if let Some(n) = &d.node {
            let nid = EntityId::from_parts(EntityKind::Node, None, n);
            d.node_pods = facts
                .graph
                .pods_on(&nid)
                .iter()
                .map(|p| p.as_str().to_string())
                .collect();
        }
        let rule = self.config.rule(d.cause);
        Some(self.build(alert, rule, d))
    }

    fn diagnose(&self, alert: &Alert, f: &Facts<'_>) -> Diagnosis {
        let e = &alert.entity;
        let id = e.id();
        match e.kind {
            EntityKind::Node => {
                let (cause, what) = match alert.kind {
                    AnomalyKind::CpuExhaustion => ("node_cpu_contention", "CPU is saturated"),
                    AnomalyKind::NetworkIssue => ("node_network", "the network is degraded"),
                    _ => ("node_pressure", "memory pressure is evicting pods"),
                };
                let mut d = Diagnosis::new(cause, format!("on node {}: {what}", e.name));
                d.node = Some(e.name.clone());
                self.node_evidence(f, &id, &mut d);
                d
            }
            EntityKind::Service => self.diagnose_service(alert, f),
            EntityKind::Pod | EntityKind::Container => {
                // A container's name is `<pod>/<container>`.
                let pod_id = match e.kind {
                    EntityKind::Container => {
                        let pod = e.name.split('/').next().unwrap_or(&e.name);
                        EntityId::from_parts(EntityKind::Pod, e.namespace.as_deref(), pod)
                    }
                    _ => id.clone(),
                };
                let mut d = self.diagnose_pod(alert, f, &id, &pod_id);
                if d.pod.is_none() {
                    d.pod = f.graph.state(&pod_id).map(|s| s.entity().clone());
                }
                d
            }
        }
    }

    fn node_evidence(&self, f: &Facts<'_>, node: &EntityId, d: &mut Diagnosis) {
        for name in [
            "cpu_usage_cores.utilisation",
            "memory_working_set_bytes.utilisation",
        ] {
            if let Some(v) = f.feature(node, name) {
                d.evidence
                    .push(ev(&format!("node.{name}"), round(v, 0.001)));
            }
        }
    }

    /// The node a pod runs on, its utilisation as the pod reports it, and its pods.
    fn pod_node(&self, f: &Facts<'_>, pod: &EntityId) -> Option<(EntityId, String)> {
        let n = f.graph.node_of(pod)?.clone();
        let name = f.graph.state(&n)?.entity().name.clone();
        Some((n, name))
    }

    fn diagnose_pod(
        &self,
        alert: &Alert,
        f: &Facts<'_>,
        id: &EntityId,
        pod_id: &EntityId,
    ) -> Diagnosis {
        let c = &self.config;
        let state = f.graph.state(pod_id);
        let ns = alert.entity.namespace.clone();
        let workload = state
            .and_then(|s| s.workload().map(str::to_string))
            .map(|w| (ns.clone(), w));
        let node = self.pod_node(f, pod_id);
        let feat = |name: &str| f.feature(id, name);
        let mem_util = feat("memory_working_set_bytes.utilisation");
        let mem_slope = feat("memory_working_set_bytes.slope");
        let mem_last = feat("memory_working_set_bytes.last");
        let node_cpu = feat("node_cpu_utilization_ratio.last");
        let node_mem = feat("node_memory_utilization_ratio.last");
        let cpu_util = feat("cpu_usage_cores.utilisation");
        let throttled = feat("cpu_throttled_ratio.last");

        let fill = |mut d: Diagnosis| {
            d.pod = state.map(|s| s.entity().clone());
            d.workload = workload.clone();
            d.node = node.as_ref().map(|n| n.1.clone());
            for (k, v) in [
                ("memory_working_set_bytes.utilisation", mem_util),
                ("cpu_usage_cores.utilisation", cpu_util),
                ("cpu_throttled_ratio.last", throttled),
                ("node_cpu_utilization_ratio.last", node_cpu),
                ("node_memory_utilization_ratio.last", node_mem),
            ] {
                if let Some(v) = v {
                    d.evidence.push(ev(k, round(v, 0.001)));
                }
            }
            d
        };

        // A fresh revision failing: a bad rollout.
        if alert.kind == AnomalyKind::PodFailure
            && let (Some((ns, w)), Some(hash)) = (
                workload.as_ref(),
                state.and_then(|s| s.labels().get(REVISION_LABEL)),
            )
            && let Some((first_seen, prev)) =
                f.revisions.rollout(ns.as_deref().unwrap_or(""), w, hash)
            && (alert.timestamp_ms - first_seen) as f64 <= c.rollout_window_s * 1000.0
        {
            let age_s = (alert.timestamp_ms - first_seen) as f64 / 1000.0;
            let mut d = Diagnosis::new(
                "bad_rollout",
                format!(
                    "pods of revision {hash} of {w} fail {:.0} min after it rolled out; \
                     {prev} ran before it",
                    age_s / 60.0
                ),
            );
            d.evidence.push(ev("revision", hash.as_str()));
            d.evidence.push(ev("previous_revision", prev));
            d.evidence.push(ev("revision_age_seconds", age_s.round()));
            if let Some(r) = feat("restarts_total.slope") {
                d.evidence.push(ev("restarts_total.slope", r));
            }
            d.revisions = Some((hash.clone(), prev.to_string()));
            return fill(d);
        }

        // The node is out of memory (kubelet evictions) or of CPU (a noisy neighbour).
        if let Some((nid, nname)) = &node {
            // The node's utilisation as the pod reports it (else the node's own window),
            // projected `projection_s` ahead along its slope: pressure builds before evictions.
            let projected = |pod_metric: &str, node_metric: &str| {
                let (last, slope) = match feat(&format!("{pod_metric}.last")) {
                    Some(l) => (Some(l), feat(&format!("{pod_metric}.slope"))),
                    None => (f.feature(nid, &format!("{node_metric}.utilisation")), None),
                };
                last.map(|l| (l, l + slope.unwrap_or(0.0).max(0.0) * c.projection_s))
            };
            let node_mem = projected("node_memory_utilization_ratio", "memory_working_set_bytes");
            let node_cpu = projected("node_cpu_utilization_ratio", "cpu_usage_cores");
            if matches!(
                alert.kind,
                AnomalyKind::PodFailure | AnomalyKind::MemoryExhaustion
            ) && let Some((now, ahead)) = node_mem
                && ahead >= c.node_saturation
                && mem_util.is_none_or(|m| m < 0.9)
            {
                let mut d = Diagnosis::new(
                    "node_pressure",
                    format!(
                        "node {nname} is at {:.0} % memory (about {:.0} % in {:.0} min) while \
                         the pod is within its own limit",
                        now * 100.0,
                        ahead.min(1.0) * 100.0,
                        c.projection_s / 60.0
                    ),
                );
                self.node_evidence(f, nid, &mut d);
                return fill(d);
            }
            // Throttled while using little of its own limit: the CPU goes to someone else.
            let starved =
                cpu_util.is_some_and(|u| u < 0.35) && throttled.is_some_and(|t| t >= 0.05);
            if alert.kind == AnomalyKind::CpuExhaustion
                && cpu_util.is_none_or(|u| u < 0.9)
                && (node_cpu.is_some_and(|(_, ahead)| ahead >= c.node_saturation) || starved)
            {
                let mut d = Diagnosis::new(
                    "node_cpu_contention",
                    format!(
                        "node {nname} is at {:.0} % CPU and the pod is throttled {:.0} % of \
                         periods while using {:.0} % of its own limit: a neighbour takes the CPU",
                        node_cpu.map_or(f64::NAN, |n| n.0) * 100.0,
                        throttled.unwrap_or(0.0) * 100.0,
                        cpu_util.unwrap_or(0.0) * 100.0
                    ),
                );
                self.node_evidence(f, nid, &mut d);
                return fill(d);
            }
            if alert.kind == AnomalyKind::NetworkIssue {
                // The node, or other pods on it, scored for the network too: the node's
                // network, not this pod's calls.
                let threshold = c.cascade_min_score;
                let node_scored =
                    (f.score)(nid, AnomalyKind::NetworkIssue).is_some_and(|s| s >= threshold);
                let others: Vec<String> = f
                    .graph
                    .pods_on(nid)
                    .into_iter()
                    .filter(|p| p != pod_id)
                    // A service's own trouble shows on all its pods, and its callers' and
                    // callees' pods see it too; a node's shows across unrelated services.
                    .filter(|p| {
                        let other = f.graph.state(p).and_then(|s| s.service());
                        let mine = state.and_then(|s| s.service());
                        match (other, mine) {
                            (Some(o), Some(m)) => {
                                let o = EntityId::from_parts(
                                    EntityKind::Service,
                                    f.graph
                                        .state(p)
                                        .and_then(|s| s.entity().namespace.as_deref()),
                                    o,
                                );
                                let m = EntityId::from_parts(EntityKind::Service, ns.as_deref(), m);
                                o != m
                                    && !f.graph.callers_of(&m).contains(&o)
                                    && !f.graph.callees_of(&m).contains(&o)
                            }
                            _ => true,
                        }
                    })
                    .filter(|p| {
                        (f.score)(p, AnomalyKind::NetworkIssue).is_some_and(|s| s >= threshold)
                    })
                    .map(|p| p.as_str().to_string())
                    .collect();
                if node_scored || !others.is_empty() {
                    let mut d = Diagnosis::new(
                        "node_network",
                        format!(
                            "the network of node {nname} is degraded: {} other pod(s) on it{} \
                             show it too",
                            others.len(),
                            if node_scored {
                                " and the node itself"
                            } else {
                                ""
                            }
                        ),
                    );
                    d.evidence.push(ev("node.network_scored", node_scored));
                    d.evidence.push(ev("node.pods_with_network_issue", others));
                    return fill(d);
                }
            }
        }

        // A leak: the working set grows towards the limit.
        if (alert.kind == AnomalyKind::MemoryExhaustion
            || (alert.kind == AnomalyKind::PodFailure && mem_util.is_some_and(|m| m >= 0.8)))
            && let (Some(slope), Some(util), Some(last)) = (mem_slope, mem_util, mem_last)
            && slope > 0.0
            && util > 0.0
            && (last / util - last) / slope <= c.max_time_to_oom_s
        {
            let limit = last / util;
            let tto = ((limit - last) / slope).max(0.0);
            let mut d = Diagnosis::new(
                "memory_leak",
                format!(
                    "the working set grows {:.1} MiB/min towards its {:.0} MiB limit: OOM in \
                     about {:.0} min",
                    slope * 60.0 / 1048576.0,
                    limit / 1048576.0,
                    tto / 60.0
                ),
            );
            d.evidence
                .push(ev("memory_working_set_bytes.slope", slope.round()));
            d.evidence
                .push(ev("memory_working_set_bytes.last", last.round()));
            d.evidence.push(ev("memory_limit_bytes", limit.round()));
            d.evidence.push(ev("time_to_oom_seconds", tto.round()));
            d.memory = Some((last, limit, slope));
            d.time_to_oom_s = Some(tto);
            return fill(d);
        }

        // Failures shared along calls edges.
        if alert.kind != AnomalyKind::MemoryExhaustion
            && let Some(svc) = state
                .and_then(|s| s.service())
                .map(|s| EntityId::from_parts(EntityKind::Service, ns.as_deref(), s))
            && let Some(d) = self.cascade(f, &svc, alert.kind != AnomalyKind::CpuExhaustion)
        {
            return fill(d);
        }

        // The whole service fails at once, across nodes: the service is the root (its callers
        // fail after it), or, for the network, its calls are degraded.
        if alert.kind != AnomalyKind::CpuExhaustion
            && let Some(svc) = state
                .and_then(|s| s.service())
                .map(|s| EntityId::from_parts(EntityKind::Service, ns.as_deref(), s))
            && let Some(d) = self.service_wide(f, &svc, alert.kind)
        {
            return fill(d);
        }

        if alert.kind == AnomalyKind::CpuExhaustion || cpu_util.is_some_and(|u| u >= 0.9) {
            let mut d = Diagnosis::new(
                "cpu_load",
                format!(
                    "the pod's own CPU demand is at {:.0} % of its limit{}",
                    cpu_util.unwrap_or(0.0) * 100.0,
                    throttled
                        .filter(|t| *t > 0.0)
                        .map(|t| format!(", throttled {:.0} % of periods", t * 100.0))
                        .unwrap_or_default()
                ),
            );
            let usage = feat("cpu_usage_cores.last");
            d.cpu_usage = usage;
            d.cpu_limit = usage
                .zip(cpu_util)
                .and_then(|(u, r)| (r > 0.0).then(|| u / r));
            d.cpu_slope = feat("cpu_usage_cores.slope");
            d.replicas = state.and_then(|s| s.service()).map(|s| {
                let svc = EntityId::from_parts(EntityKind::Service, ns.as_deref(), s);
                f.graph.members_of(&svc).len().max(1) as u32
            });
            return fill(d);
        }
        let d = Diagnosis::new(
            "unknown",
            format!(
                "no rule matched the evidence for {} on this pod",
                alert.kind.as_str().replace('_', " ")
            ),
        );
        fill(d)
    }

    fn diagnose_service(&self, alert: &Alert, f: &Facts<'_>) -> Diagnosis {
        let e = &alert.entity;
        let id = e.id();
        let members = f.graph.members_of(&id);
        let workload = members
            .iter()
            .find_map(|p| {
                f.graph
                    .state(p)
                    .and_then(|s| s.workload().map(str::to_string))
            })
            .unwrap_or_else(|| e.name.clone());
        if let Some(mut d) = self.cascade(f, &id, alert.kind != AnomalyKind::CpuExhaustion) {
            d.workload = Some((e.namespace.clone(), workload));
            return d;
        }
        // The pod most affected speaks for the service.
        let worst = members.iter().max_by(|a, b| {
            let sa = (f.score)(a, alert.kind).unwrap_or(0.0);
            let sb = (f.score)(b, alert.kind).unwrap_or(0.0);
            sa.total_cmp(&sb).then_with(|| b.cmp(a))
        });
        if let Some(pod) = worst
            && let Some(state) = f.graph.state(pod)
        {
            let mut as_pod = alert.clone();
            as_pod.entity = state.entity().clone();
            let mut d = self.diagnose_pod(&as_pod, f, pod, pod);
            d.workload = Some((e.namespace.clone(), workload));
            if d.cause == "cpu_load" {
                d.replicas = Some(members.len().max(1) as u32);
            }
            return d;
        }
        let mut d = Diagnosis::new("unknown", format!("no pod of service {} is known", e.name));
        d.workload = Some((e.namespace.clone(), workload));
        d
    }

    /// Most of `svc`'s pods (at least two, on more than one node) scored at least
    /// `cascade_min_score` for `kind`: a service-wide failure. For the network: `call_path`
    /// (its calls degrade, no node is to blame); otherwise `cascade` with `svc` as the root.
    fn service_wide(&self, f: &Facts<'_>, svc: &EntityId, kind: AnomalyKind) -> Option<Diagnosis> {
        // Siblings count from the alert tracker's default resolve level (60 % of the bar):
        // the first pod to fire is rarely alone for long, and its siblings trail it.
        let min = self.config.cascade_min_score * SIBLING_RATIO;
        let members = f.graph.members_of(svc);
        let failing: Vec<&EntityId> = members.iter().filter(|p| f.any_score(p) >= min).collect();
        let nodes: BTreeSet<&EntityId> =
            failing.iter().filter_map(|p| f.graph.node_of(p)).collect();
        if failing.len() < 2 || failing.len() * 2 < members.len() || nodes.len() < 2 {
            return None;
        }
        let svc_ref = f.graph.state(svc)?.entity().clone();
        let callers = f.graph.callers_of(svc);
        let callees = f.graph.callees_of(svc);
        let names = |v: &[EntityId]| v.iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>();
        let mut d = if kind == AnomalyKind::NetworkIssue {
            Diagnosis::new(
                "call_path",
                format!(
                    "{} of {} pods of service {} on {} nodes show the network issue and no node \
                     does: its calls degrade",
                    failing.len(),
                    members.len(),
                    svc_ref.name,
                    nodes.len()
                ),
            )
        } else {
            Diagnosis::new(
                "cascade",
                format!(
                    "{} of {} pods of service {} fail at once on {} nodes: the service is the \
                     root and its {} caller(s) fail after it",
                    failing.len(),
                    members.len(),
                    svc_ref.name,
                    nodes.len(),
                    callers.len()
                ),
            )
        };
        d.evidence.push(ev(
            "service.pods_failing",
            names(&failing.into_iter().cloned().collect::<Vec<_>>()),
        ));
        d.evidence.push(ev("service.callers", names(&callers)));
        d.evidence.push(ev("service.callees", names(&callees)));
        d.cascade_path = vec![svc.as_str().to_string()];
        d.root_service = Some(svc_ref);
        Some(d)
    }

    /// The root of a cascade through `svc`: the failing service, along `calls` edges from
    /// `svc` to what it calls, that calls no failing service itself; ranked by its own score.
    /// `None` unless at least two services on the path fail (a cascade, not a local fault).
    /// `up_too`: also count failing callers (the alerted service may be the root).
    fn cascade(&self, f: &Facts<'_>, svc: &EntityId, up_too: bool) -> Option<Diagnosis> {
        let min = self.config.cascade_min_score;
        let own = f.service_score(svc);
        if own < min {
            return None;
        }
        // Breadth-first down the calls edges, failing services only.
        let mut seen: BTreeSet<EntityId> = BTreeSet::from([svc.clone()]);
        let mut frontier = vec![svc.clone()];
        let mut failing: Vec<(EntityId, f64, usize)> = vec![(svc.clone(), own, 0)];
        for depth in 1..=6 {
            let mut next = Vec::new();
            for s in &frontier {
                for callee in f.graph.callees_of(s) {
                    if !seen.insert(callee.clone()) {
                        continue;
                    }
                    let score = f.service_score(&callee);
                    if score >= min {
                        failing.push((callee.clone(), score, depth));
                        next.push(callee);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        let failing_callers: Vec<EntityId> = if up_too {
            f.graph
                .callers_of(svc)
                .into_iter()
                .filter(|c| f.service_score(c) >= min)
                .collect()
        } else {
            Vec::new()
        };
        if failing.len() < 2 && failing_callers.is_empty() {
            return None;
        }
        // Roots: failing services none of whose callees fail; the highest-scored, deepest first.
        let fails = |s: &EntityId| failing.iter().any(|(x, _, _)| x == s);
        let (root, score, depth) = failing
            .iter()
            .filter(|(s, _, _)| !f.graph.callees_of(s).iter().any(fails))
            .max_by(|a, b| {
                a.1.total_cmp(&b.1)
                    .then(a.2.cmp(&b.2))
                    .then_with(|| b.0.cmp(&a.0))
            })
            .cloned()?;
        let root_ref = f.graph.state(&root)?.entity().clone();
        let mut d = Diagnosis::new(
            "cascade",
            if depth == 0 {
                format!(
                    "service {} fails and its callers fail after it ({} of them)",
                    root_ref.name,
                    failing_callers.len()
                )
            } else {
                format!(
                    "the failure comes from service {} ({depth} call(s) downstream, score \
                     {score:.2}), which calls no failing service",
                    root_ref.name
                )
            },
        );
        let mut ranked: Vec<&(EntityId, f64, usize)> = failing.iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.2.cmp(&a.2)));
        d.cascade_path = ranked
            .iter()
            .map(|(s, _, _)| s.as_str().to_string())
            .collect();
        d.evidence.push(ev(
            "failing_services",
            ranked
                .iter()
                .map(|(s, sc, dp)| json!({"service": s.as_str(), "score": round(*sc, 0.001), "depth": dp}))
                .collect::<Vec<_>>(),
        ));
        d.evidence.push(ev(
            "failing_callers",
            failing_callers
                .iter()
                .map(|s| s.as_str().to_string())
                .collect::<Vec<_>>(),
        ));
        d.root_service = Some(root_ref);
        Some(d)
    }

    fn build(&self, alert: &Alert, rule: Rule, d: Diagnosis) -> RecommendedAction {
        let c = &self.config;
        let mut params: BTreeMap<String, Value> = BTreeMap::new();
        let entity_target = || {
            let e = &alert.entity;
            ActionTarget {
                kind: match e.kind {
                    EntityKind::Node => TargetKind::Node,
                    EntityKind::Service => TargetKind::Service,
                    _ => TargetKind::Pod,
                },
                namespace: e.namespace.clone(),
                name: e.name.clone(),
            }
        };
        let workload_target = || {
            d.workload.as_ref().map(|(ns, w)| ActionTarget {
                kind: TargetKind::Workload,
                namespace: ns.clone(),
                name: w.clone(),
            })
        };
        let mut kind = rule.action;
        let mut missing: Option<&str> = None;
        let target = match kind {
            ActionKind::ScaleOut => {
                // Scale the root of a cascade, else the alerted workload.
                let t = match &d.root_service {
                    Some(r) => Some(ActionTarget {
                        kind: TargetKind::Service,
                        namespace: r.namespace.clone(),
                        name: r.name.clone(),
                    }),
                    None => workload_target(),
                };
                if let (Some(usage), Some(limit)) = (d.cpu_usage, d.cpu_limit) {
                    // TODO(issue 7): size from the demand forecast (crates/auspex-forecast)
                    // once it is wired into serve; until then the window's own slope projects
                    // demand `projection_s` ahead.
                    let projected = usage + d.cpu_slope.unwrap_or(0.0).max(0.0) * c.projection_s;
                    let now = d.replicas.unwrap_or(1).max(1);
                    let demand = f64::from(now) * projected * (1.0 + c.headroom);
                    let want = (demand / (limit * c.target_cpu_utilisation)).ceil() as u32;
                    let replicas = want.max(now + 1).min(c.max_replicas.max(now));
                    params.insert("replicas".into(), json!(replicas));
                    params.insert("current_replicas".into(), json!(now));
                    params.insert(
                        "projected_cpu_cores_per_replica".into(),
                        json!(round(projected, 0.001)),
                    );
                } else if let Some(now) = d.replicas {
                    params.insert(
                        "replicas".into(),
                        json!((now + 1).min(c.max_replicas.max(now))),
                    );
                    params.insert("current_replicas".into(), json!(now));
                }
                if !params.contains_key("replicas") {
                    missing = Some("the current replica count");
                }
                t
            }
            ActionKind::RaiseCpuLimit => {
                if let (Some(usage), Some(limit)) = (d.cpu_usage, d.cpu_limit) {
                    let projected = usage + d.cpu_slope.unwrap_or(0.0).max(0.0) * c.projection_s;
                    let new = (projected * (1.0 + c.headroom) / c.target_cpu_utilisation)
                        .max(limit * 1.1);
                    params.insert("cpu_limit_cores".into(), json!((new * 10.0).ceil() / 10.0));
                    params.insert("current_cpu_limit_cores".into(), json!(round(limit, 0.001)));
                } else {
                    missing = Some("the CPU limit");
                }
                workload_target()
            }
            ActionKind::RestartBeforeOom | ActionKind::RaiseMemoryLimit => {
                if let (Some((last, limit, slope)), Some(tto)) = (d.memory, d.time_to_oom_s) {
                    params.insert("time_to_oom_seconds".into(), json!(tto.round()));
                    let grow = slope * c.leak_runway_s;
                    let new = ((last + grow) * (1.0 + c.headroom)).max(limit * 1.1);
                    let mib = 1048576.0;
                    let new_limit = (new / mib).ceil() * mib;
                    if kind == ActionKind::RestartBeforeOom {
                        let at = alert.timestamp_ms + (tto * c.restart_at_fraction * 1000.0) as i64;
                        params.insert("restart_before_ms".into(), json!(at));
                        params.insert("alternative_memory_limit_bytes".into(), json!(new_limit));
                    } else {
                        params.insert("memory_limit_bytes".into(), json!(new_limit));
                        params.insert("current_memory_limit_bytes".into(), json!(limit.round()));
                    }
                } else {
                    missing = Some("a growing working set");
                }
                if kind == ActionKind::RestartBeforeOom {
                    d.pod.as_ref().map(|p| ActionTarget {
                        kind: TargetKind::Pod,
                        namespace: p.namespace.clone(),
                        name: p.name.clone(),
                    })
                } else {
                    workload_target()
                }
            }
            ActionKind::Rollback => {
                match &d.revisions {
                    Some((from, to)) => {
                        params.insert("from_revision".into(), json!(from));
                        params.insert("to_revision".into(), json!(to));
                    }
                    None => missing = Some("a previous revision"),
                }
                workload_target()
            }
            ActionKind::CordonAndDrain => match &d.node {
                Some(n) => {
                    params.insert("pods".into(), json!(d.node_pods));
                    Some(ActionTarget {
                        kind: TargetKind::Node,
                        namespace: None,
                        name: n.clone(),
                    })
                }
                None => {
                    missing = Some("the node");
                    None
                }
            },
            ActionKind::ShedLoad => match &d.root_service {
                Some(r) => {
                    params.insert("root_candidates".into(), json!(d.cascade_path));
                    Some(ActionTarget {
                        kind: TargetKind::Service,
                        namespace: r.namespace.clone(),
                        name: r.name.clone(),
                    })
                }
                None => {
                    missing = Some("a root service");
                    None
                }
            },
            ActionKind::Investigate => Some(entity_target()),
        };
        let (target, reason) = match (target, missing) {
            (Some(t), None) => {
                let reason = format!("{}: {}", d.why, describe(kind, &t, &params));
                (t, reason)
            }
            (_, why) => {
                let wanted = kind;
                kind = ActionKind::Investigate;
                params.clear();
                (
                    entity_target(),
                    format!(
                        "{}; the rule says {wanted} but {} is unknown, so investigate",
                        d.why,
                        why.unwrap_or("its target")
                    ),
                )
            }
        };
        let runbook = if kind == rule.action {
            rule.runbook
        } else {
            c.rule("unknown").runbook
        };
        RecommendedAction {
            version: ACTION_VERSION,
            kind,
            cause: d.cause.to_string(),
            target,
            params,
            reason,
            evidence: d.evidence,
            runbook,
        }
    }
}

/// The action in words, for the reason.
fn describe(kind: ActionKind, t: &ActionTarget, p: &BTreeMap<String, Value>) -> String {
    let name = match &t.namespace {
        Some(ns) => format!("{ns}/{}", t.name),
        None => t.name.clone(),
    };
    let num = |k: &str| p.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    match kind {
        ActionKind::ScaleOut => format!(
            "scale {name} out from {} to {} replicas",
            num("current_replicas"),
            num("replicas")
        ),
        ActionKind::RaiseCpuLimit => format!(
            "raise the CPU limit of {name} to {} cores",
            num("cpu_limit_cores")
        ),
        ActionKind::RestartBeforeOom => format!(
            "restart pod {name} before it is OOM-killed in about {:.0} min (or raise its \
             memory limit to {:.0} MiB)",
            num("time_to_oom_seconds") / 60.0,
            num("alternative_memory_limit_bytes") / 1048576.0
        ),
        ActionKind::RaiseMemoryLimit => format!(
            "raise the memory limit of {name} to {:.0} MiB",
            num("memory_limit_bytes") / 1048576.0
        ),
        ActionKind::Rollback => format!(
            "roll {name} back to revision {}",
            p.get("to_revision").and_then(Value::as_str).unwrap_or("?")
        ),
        ActionKind::CordonAndDrain => format!(
            "cordon node {name} and drain its {} pod(s)",
            p.get("pods").and_then(Value::as_array).map_or(0, Vec::len)
        ),
        ActionKind::ShedLoad => {
            format!("shed load at service {name} (or open the circuit breakers of its callers)")
        }
        ActionKind::Investigate => format!("investigate {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_rule(cause: &str, action: ActionKind) -> RemediationConfig {
        RemediationConfig {
            rules: [(
                cause.to_string(),
                Rule {
                    action,
                    runbook: None,
                },
            )]
            .into(),
            ..RemediationConfig::default()
        }
    }

    #[test]
    fn validation_names_the_key() {
        assert!(RemediationConfig::default().validate().is_ok());
        let e = with_rule("gremlins", ActionKind::Investigate)
            .validate()
            .unwrap_err();
        assert!(e.contains("remediation.rules.gremlins"), "{e}");
        let e = with_rule("memory_leak", ActionKind::Rollback)
            .validate()
            .unwrap_err();
        assert!(e.contains("remediation.rules.memory_leak.action"), "{e}");
        assert!(e.contains("raise_memory_limit"), "{e}");
        let e = RemediationConfig {
            target_cpu_utilisation: 0.0,
            ..RemediationConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("remediation.target_cpu_utilisation"), "{e}");
        let e = RemediationConfig {
            max_replicas: 0,
            ..RemediationConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("remediation.max_replicas"), "{e}");
    }

    #[test]
    fn every_default_rule_is_allowed_and_overrides_win() {
        for cause in CAUSES {
            assert!(allowed(cause).contains(&default_action(cause)), "{cause}");
        }
        let c = RemediationConfig {
            runbook_base: "https://rb.example/".into(),
            ..with_rule("cpu_load", ActionKind::RaiseCpuLimit)
        };
        let r = c.rule("cpu_load");
        assert_eq!(r.action, ActionKind::RaiseCpuLimit);
        assert_eq!(
            r.runbook.as_deref(),
            Some("https://rb.example/raise_cpu_limit")
        );
        assert_eq!(c.rule("bad_rollout").action, ActionKind::Rollback);
    }

    #[test]
    fn the_revision_book_names_the_previous_revision() {
        let mut b = RevisionBook::default();
        b.observe("shop", "cart", "aaa", 0);
        b.observe("shop", "cart", "bbb", 60_000);
        b.observe("shop", "cart", "aaa", 120_000);
        assert_eq!(b.rollout("shop", "cart", "bbb"), Some((60_000, "aaa")));
        assert_eq!(
            b.rollout("shop", "cart", "aaa"),
            None,
            "the first has none before it"
        );
        assert_eq!(b.rollout("shop", "other", "bbb"), None);
    }
}
