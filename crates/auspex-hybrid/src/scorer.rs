//! The hybrid ensemble as the pipeline's [`Scorer`]: each tick, micro-batches of the due
//! entities through the branches, the GNN once over the tick's graph, then each kind's
//! meta-learner over all of them.
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
    /// Every due entity's feature row and context (the GNN and the meta-learners read all).
    rows: Vec<f32>,
    ctx: Vec<f32>,
    /// One micro-batch's feature rows and sequences.
    chunk_rows: Vec<f32>,
    /// Entities scored together by the branches other than the GNN.
    micro_batch: usize,
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
            chunk_rows: Vec::new(),
            micro_batch: 256,
            seq_values: Vec::new(),
            seq_mask: Vec::new(),
            explain_ratio: 1.0,
            explained: HashMap::new(),
            explain_every_ms: 60_000,
            timings: BranchTimings::default(),
        }
    }

    /// Scores at most `n` entities at a time through the branches other than the GNN
    /// (default 256): the scratch grows with it, the per-call overheads shrink.
    pub fn with_micro_batch(mut self, n: usize) -> Self {
        self.micro_batch = n.max(1);
        self
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
        let n = ids.len();
        let b = self.model.branches.len();
        // Every branch but the GNN scores micro-batches of entities, so the scratch
        // (the sequence matrices above all: 19 KiB an entity) stays the same size however
        // many entities are due; the GNN then runs once over the whole graph with every due
        // entity's feature row, and the meta-learners over all rows.
        self.rows.clear();
        self.ctx.clear();
        let mut branch: Vec<Vec<f64>> = (0..K).map(|_| Vec::with_capacity(n * b)).collect();
        let needs_sequences = self.model.needs_sequences();
        for chunk in ids.chunks(self.micro_batch) {
            // The sequence branches' input comes from the same reading of the windows.
            let read = if needs_sequences {
                sc.windows.feature_and_sequence_matrix(
                    chunk,
                    &mut self.chunk_rows,
                    &mut self.seq_values,
                    &mut self.seq_mask,
                )
            } else {
                sc.windows.feature_matrix(chunk, &mut self.chunk_rows)
            };
            if let Err(e) = read {
                eprintln!("hybrid scorer: windows: {e}");
                return Vec::new();
            }
            self.rows.extend_from_slice(&self.chunk_rows);
            let ctx_from = self.ctx.len();
            for (id, row) in chunk.iter().zip(self.chunk_rows.chunks_exact(d)) {
                let end = sc.windows.window_end_ms(id).unwrap_or(sc.now_ms);
                self.context.push_row(id, row, end, sc.graph, &mut self.ctx);
            }
            let input = ScoreInput {
                n: chunk.len(),
                features: &self.chunk_rows,
                context: &self.ctx[ctx_from..],
                sequences: needs_sequences
                    .then_some((self.seq_values.as_slice(), self.seq_mask.as_slice())),
                gnn: None,
            };
            match self.model.branch_scores_timed(&input, &mut self.timings) {
                Ok(part) => {
                    for (all, part) in branch.iter_mut().zip(part) {
                        all.extend(part);
                    }
                }
                Err(e) => {
                    eprintln!("hybrid scorer: {e}");
                    return Vec::new();
                }
            }
        }
        // The GNN's forward pass runs here, over the whole graph; its time is the branch's.
        let started = Instant::now();
        if let Some(g) = gnn_rows(&self.model, sc.graph, &ids, &self.rows, d)
            && let Some(j) = self.model.branches.iter().position(|b| *b == Branch::Gnn)
        {
            for (k, s) in branch.iter_mut().enumerate() {
                for i in 0..n {
                    s[i * b + j] = f64::from(g[i * K + k]);
                }
            }
            self.timings.add(Branch::Gnn.name(), started.elapsed());
        }
        let scores = match self
            .model
            .combine_timed(branch, &self.ctx, n, &mut self.timings)
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hybrid scorer: {e}");
                return Vec::new();
            }
        };
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
