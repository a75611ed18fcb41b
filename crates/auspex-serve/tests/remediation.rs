//! Remediation on the simulator (issue 7): every fault kind the simulator injects is served
//! through the real pipeline (simulator → windows, graph → the shipped model bundle → alert
//! tracker → rule table), and the action on each alert is compared with the injected fault's
//! cause. A config override changes an action.
//!
//! The confusion table in the README comes from `faults_get_the_action_their_cause_needs`:
//! `AUSPEX_CONFUSION_OUT=table.md cargo test -p auspex-serve --test remediation` writes it
//! (`AUSPEX_CONFUSION_SEEDS=21,22,23,24` for other seeds; `AUSPEX_REMEDIATION_DEBUG=1` prints
//! every attributed alert with its action, reason and evidence).

use std::collections::BTreeMap;
use std::path::PathBuf;

use auspex_ingest::simulator::SimulatorSource;
use auspex_ingest::{IngestError, NdjsonSink, Record, Source};
use auspex_model::{ActionKind, Alert, AlertState, EntityKind, IncidentLabel};
use auspex_nn::NnDevice;
use auspex_serve::remediation::{RemediationConfig, Rule};
use auspex_serve::{Engine, EngineConfig, Shared, model, pipeline};
use auspex_sim::{FaultKind, ScheduledFault, SimConfig};

fn fixture_model() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test"))
        .join("../../fixtures/model")
}

/// Where each pod ran and which service it served, from the samples as they streamed by.
struct Recording {
    inner: SimulatorSource,
    pods: BTreeMap<String, (Option<String>, Option<String>)>,
}

impl Source for Recording {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        let batch = self.inner.next_batch(max)?;
        for r in batch.iter().flatten() {
            if let Record::Sample(s) = r
                && s.entity.kind == EntityKind::Pod
            {
                let e = self
                    .pods
                    .entry(s.entity.id().as_str().to_string())
                    .or_default();
                if s.entity.node.is_some() {
                    e.0.clone_from(&s.entity.node);
                }
                if s.entity.service.is_some() {
                    e.1.clone_from(&s.entity.service);
                }
            }
        }
        Ok(batch)
    }

    fn labels(&self) -> Vec<IncidentLabel> {
        self.inner.labels()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Runs `sim` through the embedded pipeline with the shipped bundle; the alerts, the labels
/// and where pods ran.
fn serve(sim: SimConfig, remediation: RemediationConfig) -> (Vec<Alert>, Recording) {
    let mut config = EngineConfig {
        remediation,
        ..EngineConfig::default()
    };
    let scorer = model::open(Some(&fixture_model()), NnDevice::Cpu, &mut config, false).unwrap();
    let shared = Shared::new(Engine::new(config, scorer).unwrap());
    let mut source = Recording {
        inner: SimulatorSource::new(sim).unwrap(),
        pods: BTreeMap::new(),
    };
    let mut alerts = NdjsonSink::new("alerts", Vec::<u8>::new());
    let mut dead = NdjsonSink::new("dead letters", Vec::<u8>::new());
    pipeline::run(&shared, &mut source, &mut alerts, &mut dead, None).unwrap();
    let recent = shared.engine().recent_alerts();
    (recent, source)
}

const MINUTE: u64 = 60_000;

/// Every fault kind, one after another on a small cluster; network degradation twice (a node,
/// then a call link). Rolling deploys and reschedules off, so that pods stay where the
/// recording saw them.
fn every_fault(seed: u64) -> SimConfig {
    let kinds = [
        FaultKind::MemoryLeak,
        FaultKind::CpuSaturation,
        FaultKind::NoisyNeighbour,
        FaultKind::NetworkDegradation,
        FaultKind::CrashLoop,
        FaultKind::NodePressure,
        FaultKind::CascadingFailure,
        FaultKind::NetworkDegradation,
    ];
    let faults = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut f = ScheduledFault::new(*k, 60 * MINUTE + i as u64 * 70 * MINUTE);
            f.precursor_ms = Some(20 * MINUTE);
            f.incident_ms = Some(10 * MINUTE);
            f
        })
        .collect();
    SimConfig {
        seed,
        duration_ms: 60 * MINUTE + kinds.len() as u64 * 70 * MINUTE,
        nodes: 4,
        services: 6,
        replicas: 3,
        rolling_deploys_per_hour: 0.0,
        reschedules_per_hour: 0.0,
        faults: Some(faults),
        ..SimConfig::default()
    }
}

/// A fault as the labels show it: its kind (network degradation split by node or link), its
/// root entities and its span.
struct Fault {
    kind: String,
    roots: Vec<String>,
    from_ms: i64,
    to_ms: i64,
}

fn faults(labels: &[IncidentLabel]) -> Vec<Fault> {
    let mut out: Vec<Fault> = Vec::new();
    for l in labels.iter().filter(|l| l.root_cause) {
        let from = l.onset_ms - 10 * MINUTE as i64;
        let to = l.end_ms + 5 * MINUTE as i64;
        let id = l.entity.id().as_str().to_string();
        match out
            .iter_mut()
            .find(|f| f.kind.starts_with(&l.fault) && f.from_ms <= to && from <= f.to_ms)
        {
            Some(f) => {
                f.roots.push(id);
                f.from_ms = f.from_ms.min(from);
                f.to_ms = f.to_ms.max(to);
            }
            None => out.push(Fault {
                kind: l.fault.clone(),
                roots: vec![id],
                from_ms: from,
                to_ms: to,
            }),
        }
    }
    for f in &mut out {
        if f.kind == "network_degradation" {
            let on_node = f.roots.iter().any(|r| r.starts_with("node/"));
            f.kind = if on_node {
                "network_degradation (node)".into()
            } else {
                "network_degradation (link)".into()
            };
        }
    }
    out
}

/// The actions that address each fault's cause.
fn expected(kind: &str) -> &'static [ActionKind] {
    use ActionKind::*;
    match kind {
        "memory_leak" => &[RestartBeforeOom, RaiseMemoryLimit],
        "cpu_saturation" => &[ScaleOut, RaiseCpuLimit],
        "noisy_neighbour" | "node_pressure" | "network_degradation (node)" => &[CordonAndDrain],
        "crash_loop" => &[Rollback],
        "cascading_failure" => &[ShedLoad, ScaleOut],
        // Open the circuit on the degraded calls (shed_load on the caller).
        "network_degradation (link)" => &[ShedLoad],
        _ => &[],
    }
}

/// Whether `entity` (an alert's) is one of the fault's roots, or a pod on a root node or of a
/// root service.
fn touches(f: &Fault, entity: &str, rec: &Recording) -> bool {
    f.roots.iter().any(|r| {
        r == entity
            || rec.pods.get(entity).is_some_and(|(node, svc)| {
                node.as_deref().is_some_and(|n| r == &format!("node/{n}"))
                    || svc
                        .as_deref()
                        .is_some_and(|s| r.starts_with("service/") && r.ends_with(&format!("/{s}")))
            })
    })
}

/// Whether an action's target is the fault's root: the root itself, the node a root pod ran
/// on, a root pod's service or workload (the simulator names workloads after services), or a
/// pod on a root node.
fn targets_root(f: &Fault, t: &auspex_model::ActionTarget, rec: &Recording) -> bool {
    use auspex_model::TargetKind;
    let ns = t.namespace.as_deref().unwrap_or("");
    f.roots.iter().any(|r| {
        let pod = rec.pods.get(r);
        match t.kind {
            TargetKind::Node => {
                r == &format!("node/{}", t.name)
                    || pod.is_some_and(|(n, _)| n.as_deref() == Some(t.name.as_str()))
            }
            TargetKind::Pod => {
                let id = format!("pod/{ns}/{}", t.name);
                r == &id
                    || rec.pods.get(&id).is_some_and(|(n, s)| {
                        n.as_ref().is_some_and(|n| r == &format!("node/{n}"))
                            || s.as_ref()
                                .is_some_and(|s| r == &format!("service/{ns}/{s}"))
                    })
            }
            TargetKind::Service | TargetKind::Workload => {
                r == &format!("service/{ns}/{}", t.name)
                    || (r.starts_with(&format!("pod/{ns}/"))
                        && pod.is_some_and(|(_, s)| s.as_deref() == Some(t.name.as_str())))
            }
        }
    })
}

/// Confusion of injected cause × recommended action over the firing alerts on the faults'
/// root entities; per fault kind, the alerts whose action matches.
struct Confusion {
    rows: BTreeMap<String, BTreeMap<ActionKind, usize>>,
    /// Per fault kind: alerts whose action matches the cause and names the fault's root (or
    /// its node, service or workload) as its target.
    on_root: BTreeMap<String, usize>,
}

impl Confusion {
    fn matched(&self, kind: &str) -> (usize, usize) {
        let row = self.rows.get(kind);
        let total = row.map_or(0, |r| r.values().sum());
        let ok = row.map_or(0, |r| {
            r.iter()
                .filter(|(a, _)| expected(kind).contains(a))
                .map(|(_, n)| n)
                .sum()
        });
        (ok, total)
    }

    fn markdown(&self) -> String {
        let mut s = String::from("| injected fault | alerts |");
        for a in ActionKind::ALL {
            s += &format!(" {a} |");
        }
        s += " matches cause | ... and targets the root |\n|---|---|";
        for _ in ActionKind::ALL {
            s += "---|";
        }
        s += "---|---|\n";
        for (kind, row) in &self.rows {
            let (ok, total) = self.matched(kind);
            s += &format!("| {kind} | {total} |");
            for a in ActionKind::ALL {
                match row.get(&a) {
                    Some(n) => s += &format!(" {n} |"),
                    None => s += " |",
                }
            }
            let hit = self.on_root.get(kind).copied().unwrap_or(0);
            let pct = |n: usize| 100.0 * n as f64 / total.max(1) as f64;
            s += &format!(" {:.0} % | {:.0} % |\n", pct(ok), pct(hit));
        }
        s
    }
}

fn confusion(alerts: &[Alert], rec: &Recording) -> Confusion {
    let faults = faults(&rec.labels());
    let mut rows: BTreeMap<String, BTreeMap<ActionKind, usize>> = BTreeMap::new();
    let mut on_root: BTreeMap<String, usize> = BTreeMap::new();
    for f in &faults {
        rows.entry(f.kind.clone()).or_default();
    }
    for a in alerts.iter().filter(|a| a.state == AlertState::Firing) {
        let entity = a.entity.id().as_str().to_string();
        let Some(f) = faults
            .iter()
            .find(|f| (f.from_ms..=f.to_ms).contains(&a.starts_at_ms) && touches(f, &entity, rec))
        else {
            continue;
        };
        let action = a.action.as_ref().expect("every firing alert has an action");
        if std::env::var_os("AUSPEX_REMEDIATION_DEBUG").is_some() {
            eprintln!(
                "{} | {} on {entity} p={:.2} | {} ({}) -> {}: {}",
                f.kind,
                a.kind,
                a.probability,
                action.kind,
                action.cause,
                action.target.name,
                action.reason
            );
            eprintln!(
                "    evidence {}",
                serde_json::to_string(&action.evidence).unwrap()
            );
        }
        *rows
            .get_mut(&f.kind)
            .expect("a row per fault")
            .entry(action.kind)
            .or_default() += 1;
        if expected(&f.kind).contains(&action.kind) && targets_root(f, &action.target, rec) {
            *on_root.entry(f.kind.clone()).or_default() += 1;
        }
    }
    Confusion { rows, on_root }
}

#[test]
fn faults_get_the_action_their_cause_needs() {
    let mut all = Confusion {
        rows: BTreeMap::new(),
        on_root: BTreeMap::new(),
    };
    // More seeds for the README's table: AUSPEX_CONFUSION_SEEDS=21,22,23,24.
    let seeds: Vec<u64> = std::env::var("AUSPEX_CONFUSION_SEEDS")
        .map(|v| v.split(',').map(|s| s.trim().parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![21, 22]);
    for &seed in &seeds {
        let (alerts, rec) = serve(every_fault(seed), RemediationConfig::default());
        // Every firing alert carries an action with a reason, a target and evidence.
        for a in alerts.iter().filter(|a| a.state == AlertState::Firing) {
            let act = a.action.as_ref().expect("an action on every firing alert");
            assert_eq!(act.version, auspex_model::ACTION_VERSION);
            assert!(
                !act.reason.is_empty() && !act.target.name.is_empty(),
                "{act:?}"
            );
        }
        let c = confusion(&alerts, &rec);
        eprintln!("seed {seed}:\n{}", c.markdown());
        for (kind, n) in c.on_root {
            *all.on_root.entry(kind).or_default() += n;
        }
        for (kind, row) in c.rows {
            let into = all.rows.entry(kind).or_default();
            for (a, n) in row {
                *into.entry(a).or_default() += n;
            }
        }
    }
    let table = all.markdown();
    eprintln!("seeds {seeds:?}:\n{table}");
    if let Ok(path) = std::env::var("AUSPEX_CONFUSION_OUT") {
        std::fs::write(path, &table).unwrap();
    }
    let (mut ok, mut total) = (0, 0);
    for kind in [
        "memory_leak",
        "cpu_saturation",
        "noisy_neighbour",
        "network_degradation (node)",
        "crash_loop",
        "node_pressure",
        "cascading_failure",
    ] {
        let (k_ok, k_total) = all.matched(kind);
        assert!(k_total > 0, "no alert on the roots of {kind}:\n{table}");
        let k_hit = all.on_root.get(kind).copied().unwrap_or(0);
        assert!(
            k_hit * 2 > k_total,
            "{kind}: {k_hit} of {k_total} alerts recommend an action for its cause on its \
             root ({k_ok} the right action):\n{table}"
        );
        ok += k_ok;
        total += k_total;
    }
    assert!(
        ok as f64 >= 0.75 * total as f64,
        "{ok} of {total} alerts match their cause:\n{table}"
    );
}

/// The forced leak of `http.rs`'s small cluster: an override of the `memory_leak` rule turns
/// restart-before-OOM into a raised limit sized from the slope, with the configured runbook.
#[test]
fn a_config_override_changes_the_action() {
    let sim = || SimConfig {
        seed: 7,
        duration_ms: 3_600_000,
        nodes: 2,
        services: 3,
        replicas: 2,
        rolling_deploys_per_hour: 0.0,
        reschedules_per_hour: 0.0,
        warmup_ms: 900_000,
        faults: Some(vec![ScheduledFault::new(FaultKind::MemoryLeak, 900_000)]),
        ..SimConfig::default()
    };
    let leak_actions = |alerts: &[Alert]| -> Vec<auspex_model::RecommendedAction> {
        alerts
            .iter()
            .filter(|a| {
                a.state == AlertState::Firing
                    && a.kind == auspex_model::AnomalyKind::MemoryExhaustion
                    && a.entity.kind == EntityKind::Pod
            })
            .filter_map(|a| a.action.clone())
            .collect()
    };
    let (alerts, _) = serve(sim(), RemediationConfig::default());
    let before = leak_actions(&alerts);
    assert!(!before.is_empty(), "the leak fired no memory alert");
    assert!(
        before
            .iter()
            .all(|a| a.kind == ActionKind::RestartBeforeOom && a.cause == "memory_leak"),
        "{before:?}"
    );

    // The override, as an SRE writes it in the serve config.
    let text = r#"
        [rules.memory_leak]
        action = "raise_memory_limit"
        runbook = "https://runbooks.example/memory-leak"
    "#;
    let overridden: RemediationConfig = toml::from_str(text).unwrap();
    assert_eq!(
        overridden.rules["memory_leak"],
        Rule {
            action: ActionKind::RaiseMemoryLimit,
            runbook: Some("https://runbooks.example/memory-leak".into()),
        }
    );
    let (alerts, _) = serve(sim(), overridden);
    let after = leak_actions(&alerts);
    assert_eq!(after.len(), before.len());
    for a in &after {
        assert_eq!(a.kind, ActionKind::RaiseMemoryLimit, "{a:?}");
        assert_eq!(
            a.runbook.as_deref(),
            Some("https://runbooks.example/memory-leak")
        );
        assert_eq!(a.target.kind, auspex_model::TargetKind::Workload, "{a:?}");
        let new = a.params["memory_limit_bytes"].as_f64().unwrap();
        let now = a.params["current_memory_limit_bytes"].as_f64().unwrap();
        assert!(new > now, "{a:?}");
    }
}
