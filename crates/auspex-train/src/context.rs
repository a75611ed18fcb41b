//! Context features of a scored window (entity kind, completeness, how full the window is,
//! graph degree, volatility): what the meta-learner's gate looks at. One builder serves both
//! training (the dataset replay) and serving (the hybrid scorer), so the two cannot differ.

use std::collections::HashMap;

use auspex_graph::LiveGraph;
use auspex_model::{EntityId, EntityKind};
use auspex_window::{COMPLETENESS, FeatureSpec};

/// Names of the context columns, in order.
pub const CONTEXT_NAMES: [&str; 8] = [
    "kind.pod",
    "kind.node",
    "kind.service",
    "kind.container",
    "window.completeness",
    "window.fill",
    "graph.degree",
    "window.volatility",
];

/// Builds context rows; remembers when each entity was first scored (for `window.fill`).
#[derive(Debug, Clone)]
pub struct ContextBuilder {
    res_ms: i64,
    length: f32,
    completeness_idx: usize,
    /// (mean, std, missing_ratio) feature indices per tracked metric.
    vol_idx: Vec<(usize, usize, usize)>,
    first_head: HashMap<EntityId, i64>,
}

impl ContextBuilder {
    pub fn new(spec: &FeatureSpec) -> Self {
        let vol_idx = spec
            .metrics
            .iter()
            .filter_map(|m| {
                let at = |s: &str| spec.index_of(&format!("{m}.{s}"));
                Some((at("mean")?, at("std")?, at("missing_ratio")?))
            })
            .collect();
        ContextBuilder {
            res_ms: spec.resolution_ms as i64,
            length: spec.length as f32,
            completeness_idx: spec
                .index_of(COMPLETENESS)
                .expect("every spec ends with the completeness feature"),
            vol_idx,
            first_head: HashMap::new(),
        }
    }

    /// Appends the context of one scored entity: `row` is its feature row, `window_end_ms`
    /// what [`auspex_window::WindowStore::window_end_ms`] says.
    pub fn push_row(
        &mut self,
        id: &EntityId,
        row: &[f32],
        window_end_ms: i64,
        graph: &LiveGraph,
        out: &mut Vec<f32>,
    ) {
        let kind = id.kind();
        out.extend(
            EntityKind::ALL
                .iter()
                .map(|k| f32::from(u8::from(*k == kind))),
        );
        out.push(row[self.completeness_idx]);
        let head = window_end_ms.div_euclid(self.res_ms) - 1;
        let first = *self.first_head.entry(id.clone()).or_insert(head);
        out.push(((head - first + 1) as f32 / self.length).clamp(0.0, 1.0));
        let degree = graph.neighbours(id, 1).len();
        out.push((degree as f32).ln_1p());
        out.push(volatility(row, &self.vol_idx));
    }

    /// Forgets an entity that is gone.
    pub fn forget(&mut self, id: &EntityId) {
        self.first_head.remove(id);
    }
}

/// Mean over reported metrics (missing ratio below 1) of the capped coefficient of variation.
fn volatility(row: &[f32], idx: &[(usize, usize, usize)]) -> f32 {
    let (mut sum, mut n) = (0.0_f32, 0usize);
    for &(mean, std, missing) in idx {
        if row[missing] < 1.0 {
            sum += (row[std] / (row[mean].abs() + 1e-6)).min(10.0);
            n += 1;
        }
    }
    if n == 0 { 0.0 } else { sum / n as f32 }
}
