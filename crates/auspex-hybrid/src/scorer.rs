//! The hybrid ensemble as the pipeline's [`Scorer`]: one batch per tick through every branch
//! and each kind's meta-learner.
//!
//! The sequence branches re-run each due entity's whole window every tick rather than stepping
//! a saved LSTM state by one sample: training saw windows scored from a zero state over
//! exactly `length` imputed slots, and a stepped state differs from that — it remembers
//! samples older than the window, and imputation revises past slots (a gap is interpolated
//! once the next sample arrives; a counter's oldest rate depends on the anchor). Stepping would
//! cost ~1.25 µs per entity (MODELING.md) instead of the ~70 µs measured for a whole window
//! (24 hidden units, 40 steps of 40 channels, `benches/hybrid.rs`), but would score inputs the
//! model never trained on. The GNN runs once per tick over the live graph's export, with the
//! due entities' feature rows as node features, as the training snapshots have them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use auspex_ensemble::Features;
use auspex_graph::LiveGraph;
use auspex_model::{AnomalyKind, EntityId, FeatureContribution, ImplicatedNeighbour};
use auspex_score::{Branches, Prediction, Scorer, ScoringContext};
use auspex_train::ContextBuilder;

use crate::model::{Branch, BranchTimings, HybridModel, K, ScoreInput};

/// Scores due entities with a trained [`HybridModel`].
pub struct HybridScorer {
    model: HybridModel,
    context: ContextBuilder,
    rows: Vec<f32>,
    ctx: Vec<f32>,
    seq_values: Vec<f32>,
    seq_mask: Vec<f32>,
    /// Explain (top features) and implicate neighbours only at or above this share of the
    /// kind's threshold: a SHAP walk per row is the scorer's biggest cost, and only rows that
    /// can fire become alerts (1.0 measured 2.9x faster end to end than 0.5, same alerts).
    explain_ratio: f64,
    /// Each (entity, kind)'s last explanation and when it was computed: a firing entity is
    /// re-explained at most once per `explain_every_ms` (SHAP is the biggest cost).
    explained: HashMap<(EntityId, AnomalyKind), (i64, Vec<FeatureContribution>)>,
    explain_every_ms: i64,
    /// The last `score` call's time per branch and in the meta-learners.
    timings: BranchTimings,
}

impl HybridScorer {
    pub fn new(model: HybridModel) -> Self {
        HybridScorer {
            context: ContextBuilder::new(&model.spec),
            model,
            rows: Vec::new(),
            ctx: Vec::new(),
            seq_values: Vec::new(),
            seq_mask: Vec::new(),
            explain_ratio: 1.0,
            explained: HashMap::new(),
            explain_every_ms: 60_000,
            timings: BranchTimings::default(),
        }
    }

    pub fn model(&self) -> &HybridModel {
        &self.model
    }
}

impl Scorer for HybridScorer {
    fn version(&self) -> String {
        format!("hybrid-{}", self.model.version)
    }

    fn forget(&mut self, id: &EntityId) {
        self.context.forget(id);
        self.explained.retain(|(e, _), _| e != id);
    }

    fn stage_timings(&self) -> &[(&'static str, Duration)] {
        self.timings.as_slice()
    }

    /// The per-kind thresholds the model was calibrated for, for the alert policy.
    fn thresholds(&self) -> HashMap<AnomalyKind, f64> {
        AnomalyKind::ALL
            .into_iter()
            .zip(&self.model.kinds)
            .map(|(k, m)| (k, m.threshold.clamp(0.0, 1.0)))
            .collect()
    }

    fn score(&mut self, sc: &ScoringContext<'_>, entities: &[EntityId]) -> Vec<Prediction> {
        self.timings.clear();
        let d = self.model.spec.len();
        // Entities evicted between `due` and now are skipped.
        let ids: Vec<EntityId> = entities
            .iter()
            .filter(|id| sc.windows.contains(id))
            .cloned()
            .collect();
        // The sequence branches' input comes from the same reading of the windows.
        let read = if self.model.needs_sequences() {
            sc.windows.feature_and_sequence_matrix(
                &ids,
                &mut self.rows,
                &mut self.seq_values,
                &mut self.seq_mask,
            )
        } else {
            sc.windows.feature_matrix(&ids, &mut self.rows)
        };
        if let Err(e) = read {
            eprintln!("hybrid scorer: windows: {e}");
            return Vec::new();
        }
        self.ctx.clear();
        for (i, id) in ids.iter().enumerate() {
            let end = sc.windows.window_end_ms(id).unwrap_or(sc.now_ms);
            self.context.push_row(
                id,
                &self.rows[i * d..(i + 1) * d],
                end,
                sc.graph,
                &mut self.ctx,
            );
        }
        let n = ids.len();
        let sequences = self
            .model
            .needs_sequences()
            .then_some((self.seq_values.as_slice(), self.seq_mask.as_slice()));
        // The GNN's forward pass runs here, over the whole graph; its time is the branch's.
        let started = Instant::now();
        let gnn = gnn_rows(&self.model, sc.graph, &ids, &self.rows, d);
        if gnn.is_some() {
            self.timings.add(Branch::Gnn.name(), started.elapsed());
        }
        let input = ScoreInput {
            n,
            features: &self.rows,
            context: &self.ctx,
            sequences,
            gnn: gnn.as_deref(),
        };
        let scores = match self.model.score_inputs_timed(&input, &mut self.timings) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hybrid scorer: {e}");
                return Vec::new();
            }
        };
        let b = self.model.branches.len();
        let mut by_kind: HashMap<(EntityId, AnomalyKind), f64> = HashMap::new();
        let mut preds = Vec::with_capacity(ids.len() * K);
        for (i, id) in ids.iter().enumerate() {
            let Ok(entity) = EntityId::parse(id.as_str()) else {
                continue;
            };
            for (k, kind) in AnomalyKind::ALL.into_iter().enumerate() {
                let rs = &scores[k];
                let mut p = Prediction::new(entity.clone(), kind, rs.proba[i]);
                p.branches = Branches::with_capacity(b);
                for (j, br) in self.model.branches.iter().enumerate() {
                    let s = rs.branch[i * b + j];
                    p.branches
                        .push(br.name(), (!s.is_nan()).then_some(s), rs.weights[i * b + j]);
                }
                if rs.proba[i] > 0.0 {
                    by_kind.insert((id.clone(), kind), rs.proba[i]);
                }
                preds.push(p);
            }
        }
        // Explanations for the predictions near or above their threshold.
        for (n, p) in preds.iter_mut().enumerate() {
            let (i, k) = (n / K, n % K);
            let km = &self.model.kinds[k];
            if p.probability < km.threshold * self.explain_ratio {
                continue;
            }
            let row = &self.rows[i * d..(i + 1) * d];
            let key = (ids[i].clone(), p.kind);
            match self.explained.get(&key) {
                Some((at, top)) if sc.now_ms - at < self.explain_every_ms => {
                    p.top_features = top.clone();
                }
                _ => {
                    if let Some(g) = &km.gbdt
                        && let Ok(f) = Features::f32(row, d)
                        && let Ok(top) = g.top_contributions(f, 5)
                    {
                        p.top_features = top
                            .into_iter()
                            .flatten()
                            .map(|c| FeatureContribution {
                                feature: self.model.spec.names[c.feature].clone(),
                                value: f64::from(row[c.feature]),
                                contribution: c.value,
                            })
                            .collect();
                    }
                    self.explained
                        .insert(key, (sc.now_ms, p.top_features.clone()));
                }
            }
            let tte = |metric: &str| {
                self.model
                    .spec
                    .index_of(&format!("{metric}.time_to_exhaustion_seconds"))
                    .map(|j| f64::from(row[j]))
                    .filter(|t| *t < self.model.spec.tte_cap_seconds)
            };
            p.time_to_incident_s = match p.kind {
                AnomalyKind::MemoryExhaustion => tte("memory_working_set_bytes"),
                AnomalyKind::CpuExhaustion => tte("cpu_usage_cores"),
                _ => None,
            };
            for nb in sc.graph.neighbours(&ids[i], 1) {
                if let Some(&s) = by_kind.get(&(nb.id.clone(), p.kind))
                    && s >= km.threshold * self.explain_ratio
                {
                    p.neighbours.push(ImplicatedNeighbour {
                        entity: nb.entity.clone(),
                        relation: nb.relation,
                        score: s,
                    });
                }
            }
        }
        preds
    }
}

/// The GNN's scores of the due entities `ids` (`n × K`, NaN for an entity not in the graph):
/// one forward pass over the whole live graph, with `rows` (their feature rows) as node
/// features; `None` without a GNN or when the graph cannot be exported.
fn gnn_rows(
    model: &HybridModel,
    graph: &LiveGraph,
    ids: &[EntityId],
    rows: &[f32],
    d: usize,
) -> Option<Vec<f32>> {
    if model.gnn.is_none() || !model.branches.contains(&Branch::Gnn) {
        return None;
    }
    let at: HashMap<&EntityId, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let export = match graph.export(d, |id| at.get(id).map(|&i| &rows[i * d..(i + 1) * d])) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("hybrid scorer: graph export: {e}");
            return None;
        }
    };
    let p = match model.gnn_scores(&export) {
        Ok(p) => p?,
        Err(e) => {
            eprintln!("hybrid scorer: gnn: {e}");
            return None;
        }
    };
    let mut out = vec![f32::NAN; ids.len() * K];
    for (i, id) in ids.iter().enumerate() {
        if let Some(node) = export.index_of(id) {
            let node = node as usize;
            out[i * K..(i + 1) * K].copy_from_slice(&p[node * K..(node + 1) * K]);
        }
    }
    Some(out)
}
