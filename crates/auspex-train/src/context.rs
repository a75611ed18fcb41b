//! Context features of a scored window (entity kind, completeness, how full the window is,
//! graph degree, volatility, and how unusual the window is for its entity): what the
//! meta-learner's gate looks at, and the unsupervised detector branch's input. One builder
//! serves both training (the dataset replay) and serving (the hybrid scorer), so the two
//! cannot differ.

use std::collections::HashMap;

use auspex_graph::LiveGraph;
use auspex_model::{EntityId, EntityKind};
use auspex_window::{COMPLETENESS, FeatureSpec};

use crate::norm::{CausalNorm, CausalNormConfig};

/// The feature the detector column normalises: the largest |baseline z| of any metric.
pub const DETECTOR_INPUT: &str = "window.max_abs_baseline_z";

/// The detector column ([`ContextBuilder`]): [`DETECTOR_INPUT`] as a robust z against the
/// entity's own previous day of it ([`CausalNorm`]), 0 until an hour of history is known.
pub const DETECTOR_Z: &str = "detector.z";

/// Names of the context columns, in order.
pub const CONTEXT_NAMES: [&str; 9] = [
    "kind.pod",
    "kind.node",
    "kind.service",
    "kind.container",
    "window.completeness",
    "window.fill",
    "graph.degree",
    "window.volatility",
    DETECTOR_Z,
];

/// Bound of the detector column: a spike after a flat history has an enormous robust z.
const DETECTOR_CAP: f64 = 50.0;

/// Builds context rows; remembers when each entity was first scored (for `window.fill`).
#[derive(Debug, Clone)]
pub struct ContextBuilder {
    res_ms: i64,
    length: f32,
    completeness_idx: usize,
    /// (mean, std, missing_ratio) feature indices per tracked metric.
    vol_idx: Vec<(usize, usize, usize)>,
    first_head: HashMap<EntityId, i64>,
    detector_idx: Option<usize>,
    detector: HashMap<EntityId, CausalNorm>,
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
            detector_idx: spec.index_of(DETECTOR_INPUT),
            detector: HashMap::new(),
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
        let z = match self.detector_idx {
            Some(j) => self
                .detector
                .entry(id.clone())
                .or_insert_with(|| CausalNorm::new(CausalNormConfig::default()))
                .push(window_end_ms, f64::from(row[j])),
            None => f64::NAN,
        };
        out.push(if z.is_nan() {
            0.0
        } else {
            z.clamp(-DETECTOR_CAP, DETECTOR_CAP) as f32
        });
    }

    /// Forgets an entity that is gone.
    pub fn forget(&mut self, id: &EntityId) {
        self.first_head.remove(id);
        self.detector.remove(id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use auspex_graph::GraphConfig;
    use auspex_window::WindowConfig;

    /// The detector column says how unusual a window is for *its* entity: a jump stands out,
    /// a level that is always high for an entity does not.
    #[test]
    fn detector_column_is_relative_to_the_entitys_own_history() {
        let spec = FeatureSpec::new(&WindowConfig::default());
        let at = spec
            .index_of(DETECTOR_INPUT)
            .expect("the spec has the detector input");
        let z = CONTEXT_NAMES.iter().position(|n| *n == DETECTOR_Z).unwrap();
        let graph = LiveGraph::new(GraphConfig::default()).unwrap();
        let mut b = ContextBuilder::new(&spec);
        let (calm, busy) = (
            EntityId::parse("pod/default/calm").unwrap().id(),
            EntityId::parse("pod/default/busy").unwrap().id(),
        );
        let mut row = vec![0.0f32; spec.len()];
        let mut last = |b: &mut ContextBuilder, id: &EntityId, v: f32, t: i64| {
            row[at] = v;
            let mut out = Vec::new();
            b.push_row(id, &row, t, &graph, &mut out);
            assert_eq!(out.len(), CONTEXT_NAMES.len());
            out[z]
        };
        let minute = 60_000;
        for i in 0..180 {
            let wiggle = (i % 7) as f32 * 0.1;
            let t = i * minute;
            let (c, h) = (
                last(&mut b, &calm, 0.5 + wiggle, t),
                last(&mut b, &busy, 8.0 + wiggle, t),
            );
            if i <= 55 {
                assert_eq!(
                    (c, h),
                    (0.0, 0.0),
                    "no output before twelve five-minute samples"
                );
            } else {
                assert!(c.abs() < 3.0 && h.abs() < 3.0, "{c} {h} at minute {i}");
            }
        }
        let jump = last(&mut b, &calm, 6.0, 180 * minute);
        let steady = last(&mut b, &busy, 8.3, 180 * minute);
        assert!(jump > 5.0, "a jump to 6 on the calm entity: {jump}");
        assert!(
            steady.abs() < 3.0,
            "the busy entity's usual level: {steady}"
        );
        b.forget(&calm);
        assert_eq!(
            last(&mut b, &calm, 6.0, 181 * minute),
            0.0,
            "forgotten: history anew"
        );
    }
}
