//! The transparent statistical scorer: robust z-scores of each metric against the entity's own
//! slow baseline, plus linear time-to-exhaustion and a few hard state signals (restarts,
//! readiness). Every term is a named piece of evidence in [0, 1]; a kind's score is the
//! strongest of its terms, and the terms become the alert's `top_features`.
//!
//! It serves until the learned ensemble lands and stays on as a cheap, explainable branch
//! (per-metric robust z-scores are among the strongest detectors on real server data; see
//! ../shared/MODELING.md). It learns nothing offline: baselines are per entity and online, so it
//! transfers between clusters. Its settings were chosen on simulator seeds that the tests do
//! not evaluate on.

use std::collections::HashMap;

use auspex_model::metrics as m;
use auspex_model::{
    AnomalyKind, EntityId, EntityKind, FeatureContribution, ImplicatedNeighbour, TimestampMs,
};
use auspex_window::FeatureSpec;
use serde::{Deserialize, Serialize};

use crate::{Branches, Prediction, Scorer, ScoringContext};

/// Settings of the statistical scorer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatConfig {
    /// Time-to-exhaustion horizon in seconds: exhaustion predicted further out scores 0.
    pub horizon_s: f64,
    /// Half-life of the per-entity baselines, in seconds of event time.
    pub baseline_half_life_s: f64,
    /// Ticks of baseline before an entity's z-scores count (they score 0 until then).
    pub warmup_ticks: u32,
    /// |z| beyond which a value is treated as anomalous and kept out of the baseline.
    pub baseline_freeze_z: f64,
    /// z at which a z-score term starts to score, and where it saturates at 1.
    pub z_low: f64,
    pub z_high: f64,
    /// Neighbours listed on a prediction whose own score for the kind is at least this.
    pub neighbour_min_score: f64,
    /// Weight of latency z-scores (and of a pod's CPU z-score, gated by utilisation): load
    /// bursts move them too, so alone they stay below the default threshold.
    pub latency_weight: f64,
    /// Weight of the success-ratio z-score.
    pub success_weight: f64,
    /// Weight of a pod being not ready in its newest slot.
    pub not_ready_weight: f64,
}

impl Default for StatConfig {
    fn default() -> Self {
        StatConfig {
            horizon_s: 1800.0,
            baseline_half_life_s: 3600.0,
            warmup_ticks: 40,
            baseline_freeze_z: 4.0,
            z_low: 4.0,
            z_high: 10.0,
            neighbour_min_score: 0.2,
            latency_weight: 0.45,
            success_weight: 0.8,
            not_ready_weight: 0.6,
        }
    }
}

/// Indices of the features the scorer reads (None when the metric is not tracked).
#[derive(Debug, Clone)]
struct Ix {
    width: usize,
    mem_util: Option<usize>,
    mem_tte: Option<usize>,
    mem_slope: Option<usize>,
    cpu_util: Option<usize>,
    cpu_tte: Option<usize>,
    throttled: Option<usize>,
    node_cpu: Option<usize>,
    node_mem: Option<usize>,
    node_mem_slope: Option<usize>,
    restarts_mean: Option<usize>,
    oom_mean: Option<usize>,
    ready_mean: Option<usize>,
    ready_last: Option<usize>,
    /// (metric, index of its `.ewma`) for every tracked metric with a z-score baseline.
    z: Vec<(&'static str, usize)>,
    window_s: f64,
}

/// Metrics whose rise (robust z) is evidence, and for which kind.
const Z_METRICS: [(&str, AnomalyKind); 8] = [
    (m::NETWORK_RX_ERRORS_TOTAL, AnomalyKind::NetworkIssue),
    (m::NETWORK_TX_ERRORS_TOTAL, AnomalyKind::NetworkIssue),
    (m::NETWORK_RX_DROPPED_TOTAL, AnomalyKind::NetworkIssue),
    (m::NETWORK_TX_DROPPED_TOTAL, AnomalyKind::NetworkIssue),
    (m::LATENCY_P99_SECONDS, AnomalyKind::NetworkIssue),
    (m::CLIENT_LATENCY_P99_SECONDS, AnomalyKind::NetworkIssue),
    (m::CPU_USAGE_CORES, AnomalyKind::CpuExhaustion),
    (m::CPU_THROTTLED_RATIO, AnomalyKind::CpuExhaustion),
];

impl Ix {
    fn new(spec: &FeatureSpec) -> Self {
        let f = |metric: &str, stat: &str| spec.index_of(&format!("{metric}.{stat}"));
        Ix {
            width: spec.len(),
            mem_util: f(m::MEMORY_WORKING_SET_BYTES, "utilisation"),
            mem_tte: f(m::MEMORY_WORKING_SET_BYTES, "time_to_exhaustion_seconds"),
            mem_slope: f(m::MEMORY_WORKING_SET_BYTES, "slope"),
            cpu_util: f(m::CPU_USAGE_CORES, "utilisation"),
            cpu_tte: f(m::CPU_USAGE_CORES, "time_to_exhaustion_seconds"),
            throttled: f(m::CPU_THROTTLED_RATIO, "ewma"),
            node_cpu: f(m::NODE_CPU_UTILIZATION_RATIO, "ewma"),
            node_mem: f(m::NODE_MEMORY_UTILIZATION_RATIO, "ewma"),
            node_mem_slope: f(m::NODE_MEMORY_UTILIZATION_RATIO, "slope"),
            restarts_mean: f(m::RESTARTS_TOTAL, "mean"),
            oom_mean: f(m::OOM_KILLS_TOTAL, "mean"),
            ready_mean: f(m::READY, "mean"),
            ready_last: f(m::READY, "last"),
            z: Z_METRICS
                .iter()
                .chain([(m::SUCCESS_RATIO, AnomalyKind::NetworkIssue)].iter())
                .filter_map(|(name, _)| f(name, "ewma").map(|i| (*name, i)))
                .collect(),
            window_s: spec.length as f64 * spec.resolution_ms as f64 / 1000.0,
        }
    }
}

/// A slow, robust-ish baseline of one metric: EWMA location and EWMA absolute deviation.
#[derive(Debug, Clone, Copy, Default)]
struct Baseline {
    loc: f64,
    dev: f64,
    n: u32,
}

impl Baseline {
    fn z(&self, x: f64, floor: f64) -> f64 {
        (x - self.loc) / (1.25 * self.dev).max(floor)
    }

    fn update(&mut self, x: f64, alpha: f64) {
        if self.n == 0 {
            self.loc = x;
            self.dev = 0.0;
        } else {
            let d = (x - self.loc).abs();
            self.loc += alpha * (x - self.loc);
            self.dev += alpha * (d - self.dev);
        }
        self.n = self.n.saturating_add(1);
    }
}

#[derive(Debug, Default)]
struct EntityState {
    baselines: Vec<Baseline>,
    last_ms: TimestampMs,
}

/// One named piece of evidence.
struct Term {
    kind: AnomalyKind,
    branch: &'static str,
    feature: String,
    value: f64,
    score: f64,
    tti_s: Option<f64>,
}

/// The statistical scorer.
pub struct StatScorer {
    config: StatConfig,
    ix: Ix,
    state: HashMap<EntityId, EntityState>,
    rows: Vec<f32>,
}

/// Branch names, as they appear in a prediction's `branches`.
pub const BRANCHES: [&str; 3] = ["exhaustion", "robust_z", "state"];

impl StatScorer {
    pub fn new(config: StatConfig, spec: &FeatureSpec) -> Self {
        StatScorer {
            config,
            ix: Ix::new(spec),
            state: HashMap::new(),
            rows: Vec::new(),
        }
    }

    fn terms(&mut self, id: &EntityId, row: &[f32], now_ms: TimestampMs, out: &mut Vec<Term>) {
        let ix = &self.ix;
        let cfg = &self.config;
        let get = |i: Option<usize>| i.map(|i| f64::from(row[i]));
        let h = cfg.horizon_s;
        let mut push = |kind, branch, feature: &str, value: f64, score: f64, tti| {
            if score > 0.0 {
                out.push(Term {
                    kind,
                    branch,
                    feature: feature.to_string(),
                    value,
                    score: score.clamp(0.0, 1.0),
                    tti_s: tti,
                });
            }
        };

        // Exhaustion: use vs limit now, and how soon a linear trend reaches it.
        if let (Some(util), Some(tte)) = (get(ix.mem_util), get(ix.mem_tte)) {
            let rising = get(ix.mem_slope).is_some_and(|s| s > 0.0);
            let soon = ramp(h - tte, 0.0, h) * ramp(util, 0.5, 0.7);
            if rising {
                push(
                    AnomalyKind::MemoryExhaustion,
                    "exhaustion",
                    "memory_working_set_bytes.time_to_exhaustion_seconds",
                    tte,
                    soon,
                    Some(tte),
                );
            }
            push(
                AnomalyKind::MemoryExhaustion,
                "exhaustion",
                "memory_working_set_bytes.utilisation",
                util,
                ramp(util, 0.9, 0.98),
                None,
            );
        }
        if let (Some(util), Some(tte)) = (get(ix.cpu_util), get(ix.cpu_tte)) {
            push(
                AnomalyKind::CpuExhaustion,
                "exhaustion",
                "cpu_usage_cores.time_to_exhaustion_seconds",
                tte,
                ramp(h - tte, 0.0, h) * ramp(util, 0.7, 0.85),
                Some(tte),
            );
            push(
                AnomalyKind::CpuExhaustion,
                "exhaustion",
                "cpu_usage_cores.utilisation",
                util,
                ramp(util, 0.85, 0.97),
                None,
            );
        }
        if let Some(t) = get(ix.throttled) {
            push(
                AnomalyKind::CpuExhaustion,
                "exhaustion",
                "cpu_throttled_ratio.ewma",
                t,
                ramp(t, 0.15, 0.5),
                None,
            );
        }
        if id.kind() == EntityKind::Node {
            if let Some(u) = get(ix.node_cpu) {
                push(
                    AnomalyKind::CpuExhaustion,
                    "exhaustion",
                    "node_cpu_utilization_ratio.ewma",
                    u,
                    ramp(u, 0.88, 0.97),
                    None,
                );
            }
            if let Some(u) = get(ix.node_mem) {
                let slope = get(ix.node_mem_slope).unwrap_or(0.0);
                let tte = if slope > 0.0 {
                    ((1.0 - u) / slope).max(0.0)
                } else {
                    f64::INFINITY
                };
                push(
                    AnomalyKind::MemoryExhaustion,
                    "exhaustion",
                    "node_memory_utilization_ratio.ewma",
                    u,
                    ramp(u, 0.88, 0.97).max(ramp(h - tte, 0.0, h) * ramp(u, 0.7, 0.8)),
                    tte.is_finite().then_some(tte),
                );
            }
        }

        // State: restarts and readiness. A restart that came with an OOM kill is memory's.
        let window_s = ix.window_s;
        let restarts = get(ix.restarts_mean).map_or(0.0, |r| r * window_s);
        let ooms = get(ix.oom_mean).map_or(0.0, |r| r * window_s);
        if restarts > 0.5 {
            let kind = if ooms >= restarts - 0.5 {
                AnomalyKind::MemoryExhaustion
            } else {
                AnomalyKind::PodFailure
            };
            push(
                kind,
                "state",
                "restarts_total.rate_in_window",
                restarts,
                ramp(restarts, 0.5, 2.5),
                None,
            );
        }
        let is_pod = matches!(id.kind(), EntityKind::Pod | EntityKind::Container);
        if let (Some(mean), Some(last)) = (get(ix.ready_mean), get(ix.ready_last))
            && is_pod
        {
            push(
                AnomalyKind::PodFailure,
                "state",
                "ready.mean",
                mean,
                ramp(1.0 - mean, 0.15, 0.5) * ramp(1.0 - last, 0.0, 1.0).max(0.5),
                None,
            );
            // Not ready right now, whatever the window says (unless an OOM kill explains it:
            // that incident is memory's).
            let oom_explains = ooms > 0.5;
            push(
                AnomalyKind::PodFailure,
                "state",
                "ready.last",
                last,
                if oom_explains {
                    0.0
                } else {
                    cfg.not_ready_weight * ramp(1.0 - last, 0.0, 1.0)
                },
                None,
            );
        }

        // Robust z-scores against the entity's own baseline. Latency and CPU moves are weak
        // evidence alone (load bursts move them too), so they weigh less and need company.
        let cpu_util = get(ix.cpu_util).unwrap_or(0.0);
        let st = self.state.entry(id.clone()).or_default();
        if st.baselines.len() != ix.z.len() {
            st.baselines = vec![Baseline::default(); ix.z.len()];
        }
        let dt_s = if st.last_ms == 0 {
            0.0
        } else {
            ((now_ms - st.last_ms) as f64 / 1000.0).max(0.0)
        };
        st.last_ms = now_ms;
        let alpha = if dt_s > 0.0 {
            1.0 - (-dt_s * std::f64::consts::LN_2 / cfg.baseline_half_life_s).exp()
        } else {
            0.05
        };
        for (k, (name, i)) in ix.z.iter().enumerate() {
            let x = f64::from(row[*i]);
            let b = &mut st.baselines[k];
            let floor = z_floor(name, b.loc);
            let z = b.z(x, floor);
            let warm = b.n >= cfg.warmup_ticks;
            if warm {
                let (kind, z_eff) = if *name == m::SUCCESS_RATIO {
                    (AnomalyKind::NetworkIssue, -z)
                } else {
                    let kind = Z_METRICS
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, k)| *k)
                        .expect("z metrics come from Z_METRICS or success ratio");
                    (kind, z)
                };
                let weight = match *name {
                    m::LATENCY_P99_SECONDS | m::CLIENT_LATENCY_P99_SECONDS => cfg.latency_weight,
                    m::SUCCESS_RATIO => cfg.success_weight,
                    m::CPU_USAGE_CORES if is_pod => cfg.latency_weight * ramp(cpu_util, 0.6, 0.8),
                    m::CPU_USAGE_CORES => 0.0,
                    _ => 1.0,
                };
                let score = weight * ramp(z_eff, cfg.z_low, cfg.z_high);
                if score > 0.0 {
                    out.push(Term {
                        kind,
                        branch: "robust_z",
                        feature: format!("{name}.z"),
                        value: z_eff,
                        score,
                        tti_s: None,
                    });
                    // Failing requests on a pod that restarts are the pod failing.
                    if *name == m::SUCCESS_RATIO && is_pod && restarts > 0.5 {
                        out.push(Term {
                            kind: AnomalyKind::PodFailure,
                            branch: "robust_z",
                            feature: format!("{name}.z"),
                            value: z_eff,
                            score,
                            tti_s: None,
                        });
                    }
                }
            }
            if !warm || z.abs() < cfg.baseline_freeze_z {
                b.update(x, alpha);
            }
        }
    }
}

/// The smallest scale a z-score divides by, so that flat series do not explode on noise.
fn z_floor(metric: &str, loc: f64) -> f64 {
    let rel = 0.05 * loc.abs();
    match metric {
        m::CPU_THROTTLED_RATIO | m::SUCCESS_RATIO => 0.01_f64.max(rel),
        m::LATENCY_P99_SECONDS | m::CLIENT_LATENCY_P99_SECONDS => 0.002_f64.max(rel),
        m::CPU_USAGE_CORES => 0.01_f64.max(rel),
        // Error and drop rates per second.
        _ => 0.05_f64.max(rel),
    }
}

/// 0 below `lo`, 1 above `hi`, linear between.
fn ramp(x: f64, lo: f64, hi: f64) -> f64 {
    if !x.is_finite() {
        return if x > 0.0 { 1.0 } else { 0.0 };
    }
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

impl Scorer for StatScorer {
    fn version(&self) -> String {
        format!("stat-{}", env!("CARGO_PKG_VERSION"))
    }

    fn forget(&mut self, id: &EntityId) {
        self.state.remove(id);
    }

    fn score(&mut self, ctx: &ScoringContext<'_>, entities: &[EntityId]) -> Vec<Prediction> {
        let mut rows = std::mem::take(&mut self.rows);
        if ctx.windows.feature_matrix(entities, &mut rows).is_err() {
            // An entity vanished between `due` and now; score the rest one by one.
            rows.clear();
            rows.resize(entities.len() * self.ix.width, 0.0);
            for (id, row) in entities.iter().zip(rows.chunks_exact_mut(self.ix.width)) {
                let _ = ctx.windows.features_into(id, row);
            }
        }
        let mut preds = Vec::with_capacity(entities.len() * AnomalyKind::ALL.len());
        let mut terms = Vec::new();
        let mut scores: HashMap<(EntityId, AnomalyKind), f64> = HashMap::new();
        for (id, row) in entities.iter().zip(rows.chunks_exact(self.ix.width)) {
            terms.clear();
            self.terms(id, row, ctx.now_ms, &mut terms);
            let Ok(entity) = EntityId::parse(id.as_str()) else {
                continue;
            };
            for kind in AnomalyKind::ALL {
                let mut p = Prediction::new(entity.clone(), kind, 0.0);
                let mut mine: Vec<&Term> = terms.iter().filter(|t| t.kind == kind).collect();
                mine.sort_by(|a, b| b.score.total_cmp(&a.score));
                if let Some(best) = mine.first() {
                    // Independent pieces of evidence add up (noisy-OR).
                    p.probability = 1.0 - mine.iter().map(|t| 1.0 - t.score).product::<f64>();
                    p.time_to_incident_s = best
                        .tti_s
                        .or_else(|| mine.iter().filter_map(|t| t.tti_s).min_by(f64::total_cmp));
                    // Each branch's strongest term, and its share of the evidence.
                    let strongest = BRANCHES.map(|b| {
                        mine.iter()
                            .filter(|t| t.branch == b)
                            .map(|t| t.score)
                            .reduce(f64::max)
                    });
                    let total: f64 = strongest.iter().flatten().sum();
                    p.branches = Branches::with_capacity(BRANCHES.len());
                    for (b, s) in BRANCHES.into_iter().zip(strongest) {
                        p.branches.push(b, s, s.map_or(0.0, |s| s / total));
                    }
                }
                p.top_features = mine
                    .iter()
                    .take(5)
                    .map(|t| FeatureContribution {
                        feature: t.feature.clone(),
                        value: t.value,
                        contribution: t.score,
                    })
                    .collect();
                if p.probability > 0.0 {
                    scores.insert((id.clone(), kind), p.probability);
                }
                preds.push(p);
            }
        }
        // Implicate neighbours that score for the same kind this tick.
        for p in preds
            .iter_mut()
            .filter(|p| p.probability >= self.config.neighbour_min_score)
        {
            let id = p.entity.id();
            for n in ctx.graph.neighbours(&id, 1) {
                if let Some(&s) = scores.get(&(n.id.clone(), p.kind))
                    && s >= self.config.neighbour_min_score
                {
                    p.neighbours.push(ImplicatedNeighbour {
                        entity: n.entity.clone(),
                        relation: n.relation,
                        score: s,
                    });
                }
            }
        }
        self.rows = rows;
        preds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_is_clamped_and_handles_infinity() {
        assert_eq!(ramp(0.5, 0.0, 1.0), 0.5);
        assert_eq!(ramp(-1.0, 0.0, 1.0), 0.0);
        assert_eq!(ramp(9.0, 0.0, 1.0), 1.0);
        assert_eq!(ramp(f64::INFINITY, 0.0, 1.0), 1.0);
        assert_eq!(ramp(f64::NEG_INFINITY, 0.0, 1.0), 0.0);
    }

    #[test]
    fn baseline_z_grows_with_distance() {
        let mut b = Baseline::default();
        for i in 0..100 {
            b.update(1.0 + 0.1 * f64::from(i % 2), 0.1);
        }
        assert!(b.z(1.05, 0.01).abs() < 1.0);
        assert!(b.z(2.0, 0.01) > 5.0);
    }
}
