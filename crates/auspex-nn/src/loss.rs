//! Class-weighted binary cross-entropy on logits, one term per head.

use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;

use crate::K;

/// `Σ_rows w_i Σ_k −(pw_k · y_ik · log σ(z_ik) + (1 − y_ik) · log σ(−z_ik))`, as a one-element
/// tensor. `logits`, `y`: `[rows, K]`; `row_w`: `[rows, 1]`; `pos_w`: `[1, K]`. Divide by
/// `Σ w_i · K` for the mean.
pub(crate) fn weighted_bce_sum(
    logits: Tensor<2>,
    y: Tensor<2>,
    row_w: Tensor<2>,
    pos_w: Tensor<2>,
) -> Tensor<1> {
    let pos = log_sigmoid(logits.clone()) * y.clone() * pos_w;
    let neg = log_sigmoid(logits.neg()) * y.neg().add_scalar(1.0);
    ((pos + neg).neg() * row_w).sum()
}

/// Per-head positive weight `neg / pos` from weighted label counts, clamped to
/// `[1 / cap, cap]`; 1 for a head without positives or negatives, or when weighting is off.
pub(crate) fn pos_weights(positives: [f64; K], total: [f64; K], on: bool, cap: f32) -> [f32; K] {
    let mut out = [1f32; K];
    if !on {
        return out;
    }
    let cap = cap.max(1.0);
    for k in 0..K {
        let (p, n) = (positives[k], total[k] - positives[k]);
        if p > 0.0 && n > 0.0 {
            out[k] = ((n / p) as f32).clamp(1.0 / cap, cap);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn matches_the_closed_form() {
        let dev = Device::flex();
        let t = |v: Vec<f32>, s: [usize; 2]| Tensor::<2>::from_data(TensorData::new(v, s), &dev);
        let z = t(vec![0.0, 2.0, -1.0, 0.5], [1, K]);
        let y = t(vec![1.0, 0.0, 1.0, 0.0], [1, K]);
        let got = weighted_bce_sum(
            z,
            y,
            t(vec![2.0], [1, 1]),
            t(vec![3.0, 1.0, 1.0, 1.0], [1, K]),
        )
        .into_scalar::<f32>();
        let sp = |x: f32| (1.0 + x.exp()).ln(); // −log σ(−x)
        let want = 2.0 * (3.0 * sp(-0.0) + sp(2.0) + sp(1.0) + sp(0.5));
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }

    #[test]
    fn pos_weight_is_capped() {
        let w = pos_weights(
            [1.0, 50.0, 0.0, 90.0],
            [1000.0, 100.0, 10.0, 100.0],
            true,
            50.0,
        );
        assert_eq!(w, [50.0, 1.0, 1.0, 1.0 / 9.0]);
        assert_eq!(pos_weights([1.0; K], [10.0; K], false, 50.0), [1.0; K]);
    }
}
