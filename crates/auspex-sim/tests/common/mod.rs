//! Shared helpers: run a simulator to the end and index what it emitted.
#![allow(dead_code)]

use std::collections::BTreeMap;

use auspex_model::{EntityKind, EntityRef, IncidentLabel, TopologyChange, TopologyEvent};
use auspex_sim::{FaultKind, ScheduledFault, SimConfig, Simulator, Tick};

/// Metrics of one entity at one instant.
pub type Metrics = BTreeMap<String, f64>;

/// Everything a run emitted, indexed.
pub struct Run {
    pub config: SimConfig,
    pub labels: Vec<IncidentLabel>,
    pub ticks: Vec<Tick>,
    /// entity id -> timestamp -> metrics
    pub series: BTreeMap<String, BTreeMap<i64, Metrics>>,
    /// entity id -> timestamps it was upserted / deleted at
    pub upserts: BTreeMap<String, Vec<i64>>,
    pub deletes: BTreeMap<String, Vec<i64>>,
    pub topology: Vec<TopologyEvent>,
}

impl Run {
    pub fn new(config: SimConfig) -> Run {
        let mut sim = Simulator::new(config.clone()).expect("valid config");
        let labels = sim.labels().to_vec();
        let ticks: Vec<Tick> = std::iter::from_fn(|| sim.next_tick()).collect();
        let mut series: BTreeMap<String, BTreeMap<i64, Metrics>> = BTreeMap::new();
        let mut upserts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut deletes: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut topology = Vec::new();
        for t in &ticks {
            for e in &t.topology {
                match &e.change {
                    TopologyChange::UpsertEntity { entity } => upserts
                        .entry(entity.id().to_string())
                        .or_default()
                        .push(e.timestamp_ms),
                    TopologyChange::DeleteEntity { entity } => deletes
                        .entry(entity.id().to_string())
                        .or_default()
                        .push(e.timestamp_ms),
                    _ => {}
                }
                topology.push(e.clone());
            }
            for s in &t.samples {
                series
                    .entry(s.entity.id().to_string())
                    .or_default()
                    .insert(s.timestamp_ms, s.metrics.clone());
            }
        }
        Run {
            config,
            labels,
            ticks,
            series,
            upserts,
            deletes,
            topology,
        }
    }

    pub fn interval(&self) -> i64 {
        self.config.interval_ms as i64
    }

    /// The metrics of `entity` at `ts`, if it was sampled then.
    pub fn at(&self, entity: &EntityRef, ts: i64) -> Option<&Metrics> {
        self.series.get(entity.id().as_str())?.get(&ts)
    }

    pub fn metric(&self, entity: &EntityRef, ts: i64, name: &str) -> f64 {
        let m = self
            .at(entity, ts)
            .unwrap_or_else(|| panic!("{entity} has no sample at {ts}"));
        *m.get(name)
            .unwrap_or_else(|| panic!("{entity} has no {name} at {ts}: {m:?}"))
    }

    pub fn labels_of(&self, fault: FaultKind) -> Vec<&IncidentLabel> {
        self.labels
            .iter()
            .filter(|l| l.fault == fault.as_str())
            .collect()
    }

    /// Sum of the increases of counter `name` over samples in [from, to], resets counted as
    /// increases from zero.
    pub fn counter_increase(&self, entity: &EntityRef, name: &str, from: i64, to: i64) -> f64 {
        let s = &self.series[entity.id().as_str()];
        let mut prev: Option<f64> = None;
        let mut total = 0.0;
        for (_, m) in s.range(from - self.interval()..=to) {
            let v = m[name];
            if let Some(p) = prev {
                total += if v >= p { v - p } else { v };
            }
            prev = Some(v);
        }
        total
    }
}

/// A small cluster with no random churn or faults, for forcing one fault.
pub fn quiet_config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        duration_ms: 3 * 3_600_000,
        rolling_deploys_per_hour: 0.0,
        reschedules_per_hour: 0.0,
        faults: Some(Vec::new()),
        ..SimConfig::default()
    }
}

/// `quiet_config` with one fault forced 40 minutes in.
pub fn forced(kind: FaultKind, target: Option<&str>, seed: u64) -> Run {
    let mut fault = ScheduledFault::new(kind, 40 * 60_000);
    fault.target = target.map(str::to_string);
    let config = SimConfig {
        faults: Some(vec![fault]),
        ..quiet_config(seed)
    };
    Run::new(config)
}

/// True when some label on `entity` covers `ts`.
pub fn covered(labels: &[IncidentLabel], entity: &EntityRef, ts: i64) -> bool {
    labels
        .iter()
        .any(|l| &l.entity == entity && l.onset_ms <= ts && ts <= l.end_ms)
}

/// Checks, for every label, that the emitted metrics show its incident condition at
/// `incident_ms`, that its times are ordered, that its entity exists then, and that no two
/// labels on one entity overlap.
pub fn check_labels(run: &Run) {
    let iv = run.interval();
    let mut by_entity: BTreeMap<String, Vec<&IncidentLabel>> = BTreeMap::new();
    for l in &run.labels {
        assert!(
            l.onset_ms <= l.incident_ms && l.incident_ms <= l.end_ms,
            "times out of order: {l:?}"
        );
        for ts in [l.onset_ms, l.incident_ms] {
            assert!(
                run.at(&l.entity, ts).is_some(),
                "{} not sampled at {ts}: {l:?}",
                l.entity
            );
        }
        by_entity
            .entry(l.entity.id().to_string())
            .or_default()
            .push(l);
        check_condition(run, l, iv);
    }
    for (id, mut ls) in by_entity {
        ls.sort_by_key(|l| l.onset_ms);
        for w in ls.windows(2) {
            assert!(w[0].end_ms < w[1].onset_ms, "labels overlap on {id}: {w:?}");
        }
    }
}

fn check_condition(run: &Run, l: &IncidentLabel, iv: i64) {
    use auspex_model::AnomalyKind::*;
    use auspex_model::metrics as m;
    let e = &l.entity;
    let t = l.incident_ms;
    let get = |name: &str| run.metric(e, t, name);
    match (e.kind, l.kind) {
        (EntityKind::Node, CpuExhaustion) => {
            assert!(get(m::NODE_CPU_UTILIZATION_RATIO) >= 0.97, "{l:?}");
            assert!(
                run.metric(e, t - iv, m::NODE_CPU_UTILIZATION_RATIO) < 0.97,
                "{l:?}"
            );
        }
        (EntityKind::Node, MemoryExhaustion) => {
            assert!(get(m::NODE_MEMORY_UTILIZATION_RATIO) >= 0.97, "{l:?}");
            assert!(
                run.metric(e, t - iv, m::NODE_MEMORY_UTILIZATION_RATIO) < 0.97,
                "{l:?}"
            );
        }
        (EntityKind::Node, NetworkIssue) => {
            let before = ["rx", "tx"]
                .iter()
                .flat_map(|d| {
                    [
                        format!("network_{d}_errors_total"),
                        format!("network_{d}_dropped_total"),
                    ]
                })
                .map(|c| run.counter_increase(e, &c, l.onset_ms - 20 * iv, l.onset_ms))
                .sum::<f64>();
            let during = ["rx", "tx"]
                .iter()
                .flat_map(|d| {
                    [
                        format!("network_{d}_errors_total"),
                        format!("network_{d}_dropped_total"),
                    ]
                })
                .map(|c| run.counter_increase(e, &c, t, t + 19 * iv))
                .sum::<f64>();
            assert!(
                during >= 10.0 * (before + 1.0),
                "{l:?}: {before} -> {during}"
            );
        }
        (EntityKind::Pod, MemoryExhaustion) => {
            let limit = run.metric(e, t - iv, m::MEMORY_LIMIT_BYTES);
            assert!(
                run.metric(e, t - iv, m::MEMORY_WORKING_SET_BYTES) >= 0.95 * limit,
                "{l:?}"
            );
            assert_eq!(
                get(m::OOM_KILLS_TOTAL),
                run.metric(e, t - iv, m::OOM_KILLS_TOTAL) + 1.0
            );
            assert_eq!(
                get(m::RESTARTS_TOTAL),
                run.metric(e, t - iv, m::RESTARTS_TOTAL) + 1.0
            );
            assert_eq!(get(m::READY), 0.0);
            assert!(get(m::MEMORY_WORKING_SET_BYTES) < 0.5 * limit);
            assert!(
                get(m::NETWORK_RX_BYTES_TOTAL) < run.metric(e, t - iv, m::NETWORK_RX_BYTES_TOTAL),
                "network counters reset on the restart"
            );
        }
        (EntityKind::Pod, CpuExhaustion) => {
            let throttle = get(m::CPU_THROTTLED_RATIO);
            if l.root_cause {
                assert!(
                    get(m::CPU_USAGE_CORES) >= 0.98 * get(m::CPU_LIMIT_CORES),
                    "{l:?}"
                );
                assert!(throttle >= 0.5, "{l:?}: throttled {throttle}");
                assert!(run.metric(e, t - iv, m::CPU_THROTTLED_RATIO) < 0.5, "{l:?}");
            } else {
                assert!(throttle >= 0.3, "{l:?}: throttled {throttle}");
            }
        }
        (EntityKind::Pod, PodFailure) if get(m::READY) == 0.0 => {}
        (EntityKind::Pod | EntityKind::Service, _) => {
            let ok = get(m::SUCCESS_RATIO);
            assert!(ok <= 0.95, "{l:?}: success ratio {ok} at incident");
        }
        _ => panic!("unexpected label {l:?}"),
    }
}

/// Checks that every clearly abnormal observation is covered by a label on that entity.
pub fn check_precision(run: &Run) {
    use auspex_model::metrics as m;
    for (id, series) in &run.series {
        let entity = auspex_model::EntityId::parse(id).unwrap();
        if entity.namespace.as_deref() == Some(run.config.batch_namespace.as_str()) {
            continue;
        }
        for (ts, mm) in series {
            let bad = match entity.kind {
                EntityKind::Node => {
                    mm[m::NODE_CPU_UTILIZATION_RATIO] >= 0.97
                        || mm[m::NODE_MEMORY_UTILIZATION_RATIO] >= 0.97
                }
                EntityKind::Pod => {
                    mm[m::READY] == 0.0
                        || mm[m::CPU_THROTTLED_RATIO] >= 0.5
                        || mm.get(m::SUCCESS_RATIO).is_some_and(|v| *v < 0.94)
                }
                _ => mm.get(m::SUCCESS_RATIO).is_some_and(|v| *v < 0.94),
            };
            assert!(
                !bad || covered(&run.labels, &entity, *ts),
                "{id} at {ts} is abnormal but unlabelled: {mm:?}"
            );
        }
    }
}
