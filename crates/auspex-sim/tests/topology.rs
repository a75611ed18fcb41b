//! Topology consistency and counter semantics over a run with churn and faults.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use auspex_model::{TopologyChange, metrics};
use auspex_sim::SimConfig;
use common::Run;

fn churny() -> Run {
    Run::new(SimConfig {
        seed: 5,
        duration_ms: 6 * 3_600_000,
        rolling_deploys_per_hour: 4.0,
        reschedules_per_hour: 6.0,
        ..SimConfig::default()
    })
}

#[test]
fn samples_follow_upserts_and_stop_at_deletes() {
    let run = churny();
    let mut live: BTreeMap<String, auspex_model::Entity> = BTreeMap::new();
    let mut gone = BTreeSet::new();
    let (mut moves, mut deletes) = (0, 0);
    for tick in &run.ticks {
        for e in &tick.topology {
            assert_eq!(e.timestamp_ms, tick.timestamp_ms);
            match &e.change {
                TopologyChange::UpsertEntity { entity } => {
                    let id = entity.id().to_string();
                    if let Some(old) = live.get(&id)
                        && old.node != entity.node
                    {
                        moves += 1;
                    }
                    assert!(!gone.contains(&id), "{id} came back after its delete");
                    live.insert(id, entity.clone());
                }
                TopologyChange::DeleteEntity { entity } => {
                    let id = entity.id().to_string();
                    assert!(
                        live.remove(&id).is_some(),
                        "{id} deleted but never upserted"
                    );
                    gone.insert(id);
                    deletes += 1;
                }
                TopologyChange::UpsertEdge { edge } | TopologyChange::DeleteEdge { edge } => {
                    for end in [&edge.from, &edge.to] {
                        assert!(
                            live.contains_key(end.id().as_str()),
                            "edge to unknown {end}"
                        );
                    }
                }
            }
        }
        let mut seen = BTreeSet::new();
        for s in &tick.samples {
            let id = s.entity.id().to_string();
            let known = live
                .get(&id)
                .unwrap_or_else(|| panic!("sample of {id} before its upsert or after its delete"));
            assert_eq!(
                known, &s.entity,
                "sample entity differs from the upserted one"
            );
            assert!(seen.insert(id.clone()), "{id} sampled twice in one tick");
            s.validate().unwrap();
        }
        // Every live entity is sampled every tick.
        assert_eq!(seen.len(), live.len(), "tick {}", tick.index);
    }
    assert!(moves > 5, "reschedules move pods: {moves}");
    assert!(deletes > 20, "deploys replace pods: {deletes}");
}

#[test]
fn counters_only_fall_on_a_restart() {
    let run = churny();
    let mut resets = 0;
    for (id, series) in &run.series {
        let mut prev: Option<&common::Metrics> = None;
        for (ts, m) in series {
            if let Some(p) = prev {
                let restarted = m.get(metrics::RESTARTS_TOTAL) > p.get(metrics::RESTARTS_TOTAL);
                for spec in metrics::CANONICAL
                    .iter()
                    .filter(|s| s.metric_type == metrics::MetricType::Counter)
                {
                    let (Some(a), Some(b)) = (p.get(spec.name), m.get(spec.name)) else {
                        continue;
                    };
                    assert!(b.fract() == 0.0, "{id} {} not whole: {b}", spec.name);
                    if b < a {
                        assert!(
                            restarted && spec.name.starts_with("network_"),
                            "{id} {} fell from {a} to {b} at {ts} without a restart",
                            spec.name
                        );
                        resets += 1;
                    }
                }
            }
            prev = Some(m);
        }
    }
    assert!(resets > 0, "some restart resets network counters");
}

#[test]
fn every_sample_has_the_canonical_metrics() {
    let run = churny();
    let tick = &run.ticks[100];
    for s in &tick.samples {
        for name in s.metrics.keys() {
            assert!(metrics::spec(name).is_some(), "non-canonical metric {name}");
        }
        let need: &[&str] = match s.entity.kind {
            auspex_model::EntityKind::Pod if s.entity.service.is_some() => &[
                metrics::CPU_USAGE_CORES,
                metrics::CPU_LIMIT_CORES,
                metrics::MEMORY_WORKING_SET_BYTES,
                metrics::MEMORY_LIMIT_BYTES,
                metrics::READY,
                metrics::RESTARTS_TOTAL,
                metrics::NETWORK_RX_BYTES_TOTAL,
                metrics::NODE_CPU_UTILIZATION_RATIO,
            ],
            auspex_model::EntityKind::Service => &[
                metrics::REQUESTS_PER_SECOND,
                metrics::SUCCESS_RATIO,
                metrics::LATENCY_P99_SECONDS,
            ],
            auspex_model::EntityKind::Node => &[
                metrics::NODE_CPU_UTILIZATION_RATIO,
                metrics::NODE_MEMORY_UTILIZATION_RATIO,
            ],
            _ => &[],
        };
        for n in need {
            assert!(s.metrics.contains_key(*n), "{} lacks {n}", s.entity.name);
        }
        if s.entity.kind == auspex_model::EntityKind::Pod {
            assert!(s.entity.node.is_some() && s.entity.workload.is_some());
        }
    }
}
