//! Input views shared by every model: a dense row-major feature matrix borrowed as `f32` or
//! `f64`, label and weight validation, the logistic link, and the per-kind container.

use crate::error::{Error, Result};

/// A borrowed dense row-major matrix of `rows × cols` features, `f32` or `f64`.
///
/// Models compute in `f64`; `f32` input is widened on read, never copied wholesale.
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    data: Data<'a>,
    rows: usize,
    cols: usize,
}

#[derive(Debug, Clone, Copy)]
enum Data<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl<'a> Features<'a> {
    /// A view of `f64` data with `cols` features per row.
    pub fn f64(data: &'a [f64], cols: usize) -> Result<Self> {
        Self::new(Data::F64(data), data.len(), cols)
    }

    /// A view of `f32` data with `cols` features per row.
    pub fn f32(data: &'a [f32], cols: usize) -> Result<Self> {
        Self::new(Data::F32(data), data.len(), cols)
    }

    fn new(data: Data<'a>, len: usize, cols: usize) -> Result<Self> {
        if cols == 0 {
            return Err(Error::InvalidParameter {
                name: "cols",
                reason: "a feature matrix needs at least one column".into(),
            });
        }
        if !len.is_multiple_of(cols) {
            return Err(Error::Shape {
                what: "feature matrix (a multiple of cols)",
                expected: len / cols * cols,
                found: len,
            });
        }
        Ok(Self {
            data,
            rows: len / cols,
            cols,
        })
    }

    /// Number of rows.
    pub fn rows(self) -> usize {
        self.rows
    }

    /// Number of features per row.
    pub fn cols(self) -> usize {
        self.cols
    }

    /// One value, widened to `f64`.
    #[inline]
    pub fn get(self, row: usize, col: usize) -> f64 {
        let i = row * self.cols + col;
        match self.data {
            Data::F32(d) => f64::from(d[i]),
            Data::F64(d) => d[i],
        }
    }

    /// Row `row` copied into `out` (`out.len() == cols`).
    pub fn row_into(self, row: usize, out: &mut [f64]) {
        let start = row * self.cols;
        match self.data {
            Data::F32(d) => {
                for (o, v) in out.iter_mut().zip(&d[start..start + self.cols]) {
                    *o = f64::from(*v);
                }
            }
            Data::F64(d) => out.copy_from_slice(&d[start..start + self.cols]),
        }
    }

    /// Row `row` as a new vector.
    pub fn row(self, row: usize) -> Vec<f64> {
        let mut out = vec![0.0; self.cols];
        self.row_into(row, &mut out);
        out
    }

    /// The matrix as owned row-major `f64`.
    pub fn to_row_major(self) -> Vec<f64> {
        match self.data {
            Data::F32(d) => d.iter().map(|v| f64::from(*v)).collect(),
            Data::F64(d) => d.to_vec(),
        }
    }

    /// The matrix as owned column-major `f64` (what `forust_ml::Matrix` reads).
    pub(crate) fn to_col_major(self) -> Vec<f64> {
        let mut out = vec![0.0; self.rows * self.cols];
        for r in 0..self.rows {
            for c in 0..self.cols {
                out[c * self.rows + r] = self.get(r, c);
            }
        }
        out
    }

    /// Fails if any feature is NaN or infinite (models that cannot route missing values).
    pub(crate) fn require_finite(self, what: &'static str) -> Result<()> {
        for r in 0..self.rows {
            for c in 0..self.cols {
                let v = self.get(r, c);
                if !v.is_finite() {
                    return Err(Error::NotFinite {
                        what,
                        row: r,
                        value: v,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Checks that `labels` has `rows` entries, all 0 or 1.
pub(crate) fn check_labels(labels: &[u8], rows: usize) -> Result<()> {
    if labels.len() != rows {
        return Err(Error::Shape {
            what: "labels",
            expected: rows,
            found: labels.len(),
        });
    }
    if let Some((row, &value)) = labels.iter().enumerate().find(|(_, v)| **v > 1) {
        return Err(Error::InvalidLabel { row, value });
    }
    Ok(())
}

/// Checks that `values` has `rows` finite entries.
pub(crate) fn check_finite(values: &[f64], rows: usize, what: &'static str) -> Result<()> {
    if values.len() != rows {
        return Err(Error::Shape {
            what,
            expected: rows,
            found: values.len(),
        });
    }
    if let Some((row, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NotFinite { what, row, value });
    }
    Ok(())
}

/// The logistic function, stable for large `|z|`.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Log-odds of `p`, clipped to `[1e-7, 1 - 1e-7]` so that 0 and 1 map to finite values.
#[inline]
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-7, 1.0 - 1e-7);
    (p / (1.0 - p)).ln()
}

/// Log-loss of one prediction given as a logit, computed without forming the probability.
#[inline]
pub(crate) fn logloss_from_logit(z: f64, y: f64) -> f64 {
    // log(1 + e^z) - y z, in a form that does not overflow.
    let softplus = if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    };
    softplus - y * z
}

/// Number of incident kinds the caller trains one model for.
pub const KINDS: usize = 4;

/// One value per incident kind (pod failure, CPU exhaustion, memory exhaustion, network issue),
/// indexed by the caller's kind index `0..KINDS`; this crate attaches no meaning to the order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PerKind<T>(pub [T; KINDS]);

impl<T> PerKind<T> {
    /// Builds each kind's value from its index.
    pub fn from_fn(f: impl FnMut(usize) -> T) -> Self {
        Self(std::array::from_fn(f))
    }

    /// Builds each kind's value from its index, stopping at the first error.
    pub fn try_from_fn<E>(mut f: impl FnMut(usize) -> Result<T, E>) -> Result<Self, E> {
        let mut items = Vec::with_capacity(KINDS);
        for k in 0..KINDS {
            items.push(f(k)?);
        }
        match items.try_into() {
            Ok(array) => Ok(Self(array)),
            Err(_) => unreachable!("exactly KINDS items were pushed"),
        }
    }

    /// The value for kind `k`, if `k < KINDS`.
    pub fn get(&self, k: usize) -> Option<&T> {
        self.0.get(k)
    }

    /// Iterates `(kind index, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.0.iter().enumerate()
    }

    /// Applies `f` to every kind's value.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> PerKind<U> {
        PerKind(self.0.map(f))
    }
}

/// Reads a model saved as JSON with a `format` tag, refusing a tag other than `expected` (a
/// model of another kind or version).
pub(crate) fn read_tagged<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    expected: &'static str,
    format: impl FnOnce(&T) -> &String,
) -> Result<T> {
    let model: T = serde_json::from_slice(bytes)?;
    let found = format(&model);
    if found != expected {
        return Err(Error::Format {
            expected,
            found: found.clone(),
        });
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_and_f64_views_agree_and_shapes_are_checked() {
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let fa = Features::f32(&a, 3).unwrap();
        let fb = Features::f64(&b, 3).unwrap();
        assert_eq!(fa.rows(), 2);
        assert_eq!(fa.row(1), fb.row(1));
        assert_eq!(fb.to_col_major(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert!(Features::f64(&b, 4).is_err());
        assert!(check_labels(&[0, 2], 2).is_err());
    }

    #[test]
    fn logloss_from_logit_matches_the_direct_formula() {
        for &z in &[-30.0, -2.0, 0.0, 1.5, 20.0] {
            for &y in &[0.0, 1.0] {
                let p: f64 = sigmoid(z);
                let direct = -(y * p.max(1e-300).ln() + (1.0 - y) * (1.0 - p).max(1e-300).ln());
                assert!(
                    (logloss_from_logit(z, y) - direct).abs() < 1e-6,
                    "z={z} y={y}"
                );
            }
        }
        let kinds = PerKind::try_from_fn(|k| Ok::<_, ()>(k * 2)).unwrap();
        assert_eq!(kinds.get(3), Some(&6));
    }
}
