//! Labels against the emitted metrics: each forced fault shows its incident condition at
//! `incident_ms`, and every clearly abnormal observation is covered by a label.

mod common;

use auspex_model::{AnomalyKind, EntityKind, TopologyChange, metrics as m};
use auspex_sim::{FaultKind, SimConfig};
use common::{Run, check_labels, check_precision, forced};

fn root(run: &Run, kind: FaultKind, entity: EntityKind) -> &auspex_model::IncidentLabel {
    run.labels_of(kind)
        .into_iter()
        .find(|l| l.root_cause && l.entity.kind == entity)
        .unwrap_or_else(|| panic!("no root {entity:?} label for {kind}: {:?}", run.labels))
}

#[test]
fn memory_leak_ends_in_an_oom_kill() {
    let run = forced(FaultKind::MemoryLeak, Some("checkout"), 1);
    check_labels(&run);
    check_precision(&run);
    let l = root(&run, FaultKind::MemoryLeak, EntityKind::Pod);
    assert_eq!(l.kind, AnomalyKind::MemoryExhaustion);
    assert!(l.entity.name.starts_with("checkout-"));
    // The working set grows through the precursor.
    let iv = run.interval();
    let mid = l.onset_ms + (l.incident_ms - l.onset_ms) / 2 / iv * iv;
    let ws = |t| run.metric(&l.entity, t, m::MEMORY_WORKING_SET_BYTES);
    assert!(ws(l.onset_ms) < ws(mid) && ws(mid) < ws(l.incident_ms - iv));
    assert!(l.incident_ms - l.onset_ms >= 10 * 60_000);
    // Ready again when the label ends.
    assert_eq!(run.metric(&l.entity, l.end_ms, m::READY), 1.0);
}

#[test]
fn cpu_saturation_throttles_at_the_limit() {
    let run = forced(FaultKind::CpuSaturation, Some("cart"), 2);
    check_labels(&run);
    check_precision(&run);
    let l = root(&run, FaultKind::CpuSaturation, EntityKind::Pod);
    assert_eq!(l.kind, AnomalyKind::CpuExhaustion);
    let before = run.metric(
        &l.entity,
        l.onset_ms - run.interval(),
        m::CPU_THROTTLED_RATIO,
    );
    assert!(before < 0.2, "throttled {before} before the onset");
    let p99 = |t| run.metric(&l.entity, t, m::LATENCY_P99_SECONDS);
    assert!(p99(l.incident_ms) > 2.0 * p99(l.onset_ms - run.interval()));
}

#[test]
fn noisy_neighbour_saturates_its_node_and_throttles_pods() {
    let run = forced(FaultKind::NoisyNeighbour, Some("node-001"), 3);
    check_labels(&run);
    check_precision(&run);
    let l = root(&run, FaultKind::NoisyNeighbour, EntityKind::Node);
    assert_eq!(l.entity.name, "node-001");
    // A batch pod lands on the node at the onset and leaves at the end.
    let hog = run.topology.iter().find_map(|e| match &e.change {
        TopologyChange::UpsertEntity { entity } if entity.namespace.as_deref() == Some("batch") => {
            Some((e.timestamp_ms, entity.clone()))
        }
        _ => None,
    });
    let (at, hog) = hog.expect("a batch pod is created");
    assert_eq!(at, l.onset_ms);
    assert_eq!(hog.node.as_deref(), Some("node-001"));
    assert_eq!(run.deletes[hog.id().as_str()], vec![l.end_ms]);
    let pods: Vec<_> = run
        .labels_of(FaultKind::NoisyNeighbour)
        .into_iter()
        .filter(|p| p.entity.kind == EntityKind::Pod)
        .collect();
    assert!(!pods.is_empty(), "some neighbour is throttled");
    assert!(
        pods.iter()
            .all(|p| !p.root_cause && p.kind == AnomalyKind::CpuExhaustion)
    );
}

#[test]
fn network_degradation_on_a_node_raises_drops_and_errors() {
    let run = forced(FaultKind::NetworkDegradation, Some("node-002"), 4);
    check_labels(&run);
    check_precision(&run);
    let l = root(&run, FaultKind::NetworkDegradation, EntityKind::Node);
    assert_eq!(l.kind, AnomalyKind::NetworkIssue);
    let pods: Vec<_> = run
        .labels_of(FaultKind::NetworkDegradation)
        .into_iter()
        .filter(|p| p.entity.kind == EntityKind::Pod && !p.root_cause)
        .collect();
    assert!(!pods.is_empty());
}

#[test]
fn network_degradation_on_a_link_fails_the_caller() {
    let probe = Run::new(common::quiet_config(5));
    // The first root service and one of its callees.
    let calls = probe
        .topology
        .iter()
        .find_map(|e| match &e.change {
            TopologyChange::UpsertEdge { edge } if edge.kind == auspex_model::EdgeKind::Calls => {
                Some((edge.from.name.clone(), edge.to.name.clone()))
            }
            _ => None,
        })
        .expect("a call edge");
    let target = format!("{}->{}", calls.0, calls.1);
    let run = forced(FaultKind::NetworkDegradation, Some(&target), 5);
    check_labels(&run);
    check_precision(&run);
    let l = root(&run, FaultKind::NetworkDegradation, EntityKind::Service);
    assert_eq!(l.entity.name, calls.0);
    let before = run.metric(&l.entity, l.onset_ms - run.interval(), m::SUCCESS_RATIO);
    assert!(before > 0.99);
    let cl = |t| run.metric(&l.entity, t, m::CLIENT_LATENCY_P99_SECONDS);
    assert!(cl(l.incident_ms) > cl(l.onset_ms - run.interval()) + 0.2);
}

#[test]
fn crash_loop_follows_a_bad_deploy() {
    let run = forced(FaultKind::CrashLoop, Some("catalog"), 6);
    check_labels(&run);
    check_precision(&run);
    let iv = run.interval();
    let pods: Vec<_> = run
        .labels_of(FaultKind::CrashLoop)
        .into_iter()
        .filter(|l| l.root_cause && l.entity.kind == EntityKind::Pod)
        .collect();
    assert!(!pods.is_empty());
    for l in pods {
        let id = l.entity.id().to_string();
        // The pod is new: created by the deploy at its onset, deleted by the rollback at its end.
        assert_eq!(run.upserts[&id][0], l.onset_ms);
        assert_eq!(run.deletes[&id], vec![l.end_ms]);
        assert_eq!(l.kind, AnomalyKind::PodFailure);
        let restarts = |t| run.metric(&l.entity, t, m::RESTARTS_TOTAL);
        assert!(
            restarts(l.incident_ms - iv) >= 1.0,
            "a first restart in the precursor"
        );
        assert!(restarts(l.end_ms - iv) >= restarts(l.incident_ms - iv) + 2.0);
        let mut t = l.incident_ms;
        while t < l.end_ms {
            assert_eq!(
                run.metric(&l.entity, t, m::READY),
                0.0,
                "crash-looping at {t}"
            );
            t += iv;
        }
        let ok = run.metric(&l.entity, l.incident_ms - iv, m::SUCCESS_RATIO);
        assert!(ok < 0.95, "errors rise before the crash loop: {ok}");
    }
}

#[test]
fn node_pressure_evicts_pods() {
    let run = forced(FaultKind::NodePressure, Some("node-003"), 7);
    check_labels(&run);
    check_precision(&run);
    let node = root(&run, FaultKind::NodePressure, EntityKind::Node);
    assert_eq!(node.kind, AnomalyKind::MemoryExhaustion);
    let evicted: Vec<_> = run
        .labels_of(FaultKind::NodePressure)
        .into_iter()
        .filter(|l| l.entity.kind == EntityKind::Pod && l.kind == AnomalyKind::PodFailure)
        .collect();
    assert!(!evicted.is_empty());
    for l in evicted {
        assert_eq!(l.incident_ms, node.incident_ms);
        assert_eq!(run.deletes[l.entity.id().as_str()], vec![l.end_ms]);
    }
}

#[test]
fn cascading_failure_travels_up_the_call_graph() {
    for seed in [8, 9] {
        let run = forced(FaultKind::CascadingFailure, None, seed);
        check_labels(&run);
        check_precision(&run);
        let root = root(&run, FaultKind::CascadingFailure, EntityKind::Service);
        let callers: Vec<_> = run
            .labels_of(FaultKind::CascadingFailure)
            .into_iter()
            .filter(|l| l.entity.kind == EntityKind::Service && !l.root_cause)
            .collect();
        assert!(!callers.is_empty(), "seed {seed}: no caller failed");
        for c in callers {
            assert!(c.incident_ms > root.incident_ms, "{c:?} before {root:?}");
            assert_eq!(c.kind, AnomalyKind::NetworkIssue);
            let before = run.metric(&c.entity, c.onset_ms - run.interval(), m::SUCCESS_RATIO);
            let at = run.metric(&c.entity, c.incident_ms, m::SUCCESS_RATIO);
            assert!(before > 0.99 && at <= 0.95, "{c:?}: {before} -> {at}");
        }
    }
}

#[test]
fn random_runs_label_exactly_what_happens() {
    for seed in [42, 7] {
        let run = Run::new(SimConfig {
            seed,
            ..SimConfig::default()
        });
        let faults: std::collections::BTreeSet<_> = run
            .labels
            .iter()
            .filter(|l| l.root_cause)
            .map(|l| (l.fault.clone(), l.onset_ms))
            .collect();
        assert!(
            (12..=40).contains(&faults.len()),
            "seed {seed}: {} faults in 12 h",
            faults.len()
        );
        let warmup = run.config.start_ms + run.config.warmup_ms as i64;
        assert!(run.labels.iter().all(|l| l.onset_ms >= warmup));
        check_labels(&run);
        check_precision(&run);
    }
}

#[test]
fn unknown_targets_are_refused() {
    let mut c = common::quiet_config(1);
    c.faults = Some(vec![
        auspex_sim::ScheduledFault::new(FaultKind::MemoryLeak, 60_000).on("nope"),
    ]);
    let err = auspex_sim::Simulator::new(c).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn the_checks_catch_wrong_labels() {
    let mut run = forced(FaultKind::CascadingFailure, Some("cart"), 10);
    let labels = run.labels.clone();
    // Without the callers' labels, their failures are unexplained.
    run.labels.retain(|l| l.root_cause);
    assert!(std::panic::catch_unwind(|| check_precision(&run)).is_err());
    // An incident time a few ticks early does not match the metrics.
    run.labels = labels;
    let iv = run.interval();
    for l in &mut run.labels {
        l.incident_ms -= 4 * iv;
    }
    assert!(std::panic::catch_unwind(|| check_labels(&run)).is_err());
}

/// More seeds through both checks.
#[test]
fn many_seeds() {
    for seed in 100..104 {
        let run = Run::new(SimConfig {
            seed,
            ..SimConfig::default()
        });
        eprintln!("seed {seed}: {} labels", run.labels.len());
        check_labels(&run);
        check_precision(&run);
    }
}
