//! Sample weights from class weights: the one place where class balancing is decided, so the
//! tree and linear models balance the same way.

use crate::data::check_labels;
use crate::error::{Error, Result};

/// How to weight the two classes, on top of any caller-given sample weights.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every row keeps its sample weight.
    None,
    /// Each class gets half the total weight (`n / (2 n_class)` per row), so the rare class
    /// counts as much as the common one.
    #[default]
    Balanced,
    /// Positive rows are multiplied by this factor, negatives by 1.
    Positive(f64),
}

/// Per-row weights: `base` (or 1) times the class weight of each row's label.
///
/// Fails on a label other than 0/1, a negative or non-finite weight, or a bad length.
pub fn sample_weights(labels: &[u8], base: Option<&[f64]>, class: ClassWeight) -> Result<Vec<f64>> {
    let n = labels.len();
    check_labels(labels, n)?;
    let mut w = match base {
        Some(b) => {
            if b.len() != n {
                return Err(Error::Shape {
                    what: "sample weights",
                    expected: n,
                    found: b.len(),
                });
            }
            if let Some((row, &value)) = b
                .iter()
                .enumerate()
                .find(|(_, v)| !v.is_finite() || **v < 0.0)
            {
                return Err(Error::InvalidWeight { row, value });
            }
            b.to_vec()
        }
        None => vec![1.0; n],
    };
    let (pos_factor, neg_factor) = match class {
        ClassWeight::None => (1.0, 1.0),
        ClassWeight::Positive(f) => {
            if !(f.is_finite() && f > 0.0) {
                return Err(Error::InvalidParameter {
                    name: "class_weight",
                    reason: format!("positive factor must be finite and > 0, got {f}"),
                });
            }
            (f, 1.0)
        }
        ClassWeight::Balanced => {
            // Balance the *weighted* class totals, so caller weights are respected.
            let pos: f64 = labels
                .iter()
                .zip(&w)
                .filter(|(y, _)| **y == 1)
                .map(|(_, w)| w)
                .sum();
            let neg: f64 = labels
                .iter()
                .zip(&w)
                .filter(|(y, _)| **y == 0)
                .map(|(_, w)| w)
                .sum();
            let total = pos + neg;
            if pos <= 0.0 || neg <= 0.0 {
                (1.0, 1.0)
            } else {
                (total / (2.0 * pos), total / (2.0 * neg))
            }
        }
    };
    for (wi, y) in w.iter_mut().zip(labels) {
        *wi *= if *y == 1 { pos_factor } else { neg_factor };
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_weights_equalise_class_totals() {
        let y = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let w = sample_weights(&y, None, ClassWeight::Balanced).unwrap();
        let pos: f64 = w
            .iter()
            .zip(&y)
            .filter(|(_, y)| **y == 1)
            .map(|(w, _)| w)
            .sum();
        let neg: f64 = w
            .iter()
            .zip(&y)
            .filter(|(_, y)| **y == 0)
            .map(|(w, _)| w)
            .sum();
        assert!((pos - 5.0).abs() < 1e-12 && (neg - 5.0).abs() < 1e-12);
        assert!(sample_weights(&y, Some(&[-1.0; 10]), ClassWeight::None).is_err());
    }
}
