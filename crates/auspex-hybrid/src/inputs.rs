//! What the sequence and graph networks read, built by one function each for training and for
//! the serving scorer, so the two cannot drift apart.
//!
//! - A *sequence* step has `2 × metrics` channels: each metric's imputed value in signed-log
//!   scale (`sign(v) · ln(1 + |v|)`: bytes, cores and rates differ by ten orders of magnitude
//!   between nodes and pods, and a per-channel standardiser alone would leave every pod at the
//!   bottom of a node-dominated range), then its observed mask (1 observed, 0 imputed). The
//!   branch's [`Standardizer`] then scales every channel.
//! - A *graph* node has the standardised feature row of its entity when the entity was scored
//!   at that tick (zeros otherwise), a `has_features` flag, and its entity kind one-hot; edges
//!   are the live graph's relations in both directions, relation id `2 × kind + reversed`.

use auspex_graph::{GraphExport, MessageEdges};
use auspex_model::EntityKind;
use auspex_nn::{GraphSnapshot, Sequences, Standardizer};

use crate::HybridError;

/// Channels per step of a sequence input.
pub(crate) fn seq_channels(metrics: usize) -> usize {
    2 * metrics
}

/// Node feature width of a graph input for feature rows of width `d`.
pub(crate) fn gnn_width(d: usize) -> usize {
    d + 1 + EntityKind::ALL.len()
}

/// Edge relations of a graph input.
pub(crate) const RELATIONS: usize = MessageEdges::RELATIONS;

fn slog(v: f32) -> f32 {
    if v.is_finite() {
        v.signum() * v.abs().ln_1p()
    } else {
        0.0
    }
}

/// Channels of `n` windows from imputed values and masks (`n × length × metrics` each, as
/// `WindowStore::sequence_matrix` writes them), unscaled.
pub(crate) fn seq_raw(
    values: &[f32],
    mask: &[f32],
    n: usize,
    length: usize,
    metrics: usize,
) -> Result<Sequences, HybridError> {
    let cells = n * length * metrics;
    if values.len() != cells || mask.len() != cells {
        return Err(HybridError::Invalid(format!(
            "sequences: {} values and {} mask cells for {n} windows of {length} × {metrics}",
            values.len(),
            mask.len()
        )));
    }
    let c = seq_channels(metrics);
    let mut x = Vec::with_capacity(n * length * c);
    for (v, m) in values.chunks_exact(metrics).zip(mask.chunks_exact(metrics)) {
        x.extend(v.iter().map(|&v| slog(v)));
        x.extend_from_slice(m);
    }
    Ok(Sequences::new(n, length, c, x)?)
}

/// Checks that recorded sequences have the windows' shape (`spec.length × spec.metrics`).
pub(crate) fn check_sequence_shape(
    s: &auspex_train::Sequences,
    spec: &auspex_window::FeatureSpec,
) -> Result<(), HybridError> {
    if (s.length, s.metrics) == (spec.length, spec.metrics.len()) {
        return Ok(());
    }
    Err(HybridError::Invalid(format!(
        "sequences of {} × {} for windows of {} × {}",
        s.length,
        s.metrics,
        spec.length,
        spec.metrics.len()
    )))
}

/// One tick's graph as the GNN's input (no labels); `scaler` standardises feature rows.
pub(crate) fn gnn_input(
    g: &GraphExport,
    scaler: &Standardizer,
) -> Result<GraphSnapshot, HybridError> {
    let d = g.dim;
    if scaler.dim() != d {
        return Err(HybridError::Invalid(format!(
            "graph features of width {d}, the GNN's scaler expects {}",
            scaler.dim()
        )));
    }
    let n = g.len();
    let w = gnn_width(d);
    let mut x = vec![0f32; n * w];
    for (i, node) in x.chunks_exact_mut(w).enumerate() {
        if g.has_features[i] {
            node[..d].copy_from_slice(g.features(i));
            scaler.transform_in_place(&mut node[..d])?;
            node[d] = 1.0;
        }
        let kind = EntityKind::ALL
            .iter()
            .position(|k| *k == g.kinds[i])
            .expect("EntityKind::ALL lists every kind");
        node[d + 1 + kind] = 1.0;
    }
    let e = g.message_edges();
    let edge_rel = (0..e.len())
        .map(|i| u8::try_from(e.relation(i)).expect("RELATIONS ≤ 256"))
        .collect();
    Ok(GraphSnapshot {
        n,
        d: w,
        x,
        edge_src: e.src,
        edge_dst: e.dst,
        edge_rel,
        y: Vec::new(),
        mask: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_channels_are_signed_log_values_then_masks() {
        // 1 window, 2 steps, 2 metrics.
        let values = [0.0, -(std::f32::consts::E - 1.0), 1e9, f32::NAN];
        let mask = [1.0, 0.0, 1.0, 0.0];
        let s = seq_raw(&values, &mask, 1, 2, 2).unwrap();
        assert_eq!((s.n, s.t, s.m), (1, 2, 4));
        assert_eq!(s.x[0], 0.0);
        assert!((s.x[1] + 1.0).abs() < 1e-6);
        assert_eq!(&s.x[2..4], &[1.0, 0.0]);
        assert!((s.x[4] - 1e9f32.ln_1p()).abs() < 1e-4);
        assert_eq!(s.x[5], 0.0, "NaN becomes 0");
        assert!(seq_raw(&values, &mask[..3], 1, 2, 2).is_err());
    }
}
