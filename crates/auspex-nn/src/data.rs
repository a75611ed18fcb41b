//! The plain dense arrays the branches read, and a NaN-safe standardiser. No tensors here: the
//! callers (training-data builder, ensemble) fill these without knowing burn.

use serde::{Deserialize, Serialize};

use crate::{K, NnError, shape_err};

/// `n` rows of `d` features, row-major (`x[i * d + j]`). Features should be scaled (see
/// [`Standardizer`]) and finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tabular {
    /// Rows.
    pub n: usize,
    /// Features per row.
    pub d: usize,
    /// `n × d` values.
    pub x: Vec<f32>,
}

impl Tabular {
    /// Checks that `x` holds `n × d` values.
    pub fn new(n: usize, d: usize, x: Vec<f32>) -> Result<Self, NnError> {
        let t = Tabular { n, d, x };
        t.validate()?;
        Ok(t)
    }

    /// Errors when `x.len() != n × d` or `d == 0`.
    pub fn validate(&self) -> Result<(), NnError> {
        if self.d == 0 {
            return Err(shape_err("tabular", "d = 0"));
        }
        if self.x.len() != self.n * self.d {
            return Err(shape_err(
                "tabular",
                format!("x has {} values, n × d = {}", self.x.len(), self.n * self.d),
            ));
        }
        Ok(())
    }
}

/// `n` windows of `t` steps of `m` channels: `x[(i * t + s) * m + c]` (time-major per window).
/// Callers pass values and mask channels concatenated along `m`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequences {
    /// Windows.
    pub n: usize,
    /// Steps per window (oldest first).
    pub t: usize,
    /// Channels per step.
    pub m: usize,
    /// `n × t × m` values.
    pub x: Vec<f32>,
}

impl Sequences {
    /// Checks that `x` holds `n × t × m` values.
    pub fn new(n: usize, t: usize, m: usize, x: Vec<f32>) -> Result<Self, NnError> {
        let s = Sequences { n, t, m, x };
        s.validate()?;
        Ok(s)
    }

    /// Errors when `x.len() != n × t × m` or `t` or `m` is zero.
    pub fn validate(&self) -> Result<(), NnError> {
        if self.t == 0 || self.m == 0 {
            return Err(shape_err("sequences", "t and m must be > 0"));
        }
        if self.x.len() != self.n * self.t * self.m {
            return Err(shape_err(
                "sequences",
                format!(
                    "x has {} values, n × t × m = {}",
                    self.x.len(),
                    self.n * self.t * self.m
                ),
            ));
        }
        Ok(())
    }
}

/// Targets for `n` rows: `y[i * K + k]` in {0, 1}, optional per-row weights (≥ 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    /// Rows.
    pub n: usize,
    /// `n × K` targets.
    pub y: Vec<f32>,
    /// Per-row weights; `None` means 1.
    pub weight: Option<Vec<f32>>,
}

impl Labels {
    /// Unweighted labels; checks that `y` holds `n × K` values.
    pub fn new(n: usize, y: Vec<f32>) -> Result<Self, NnError> {
        let l = Labels { n, y, weight: None };
        l.validate()?;
        Ok(l)
    }

    /// Errors on a length mismatch or a negative / non-finite weight.
    pub fn validate(&self) -> Result<(), NnError> {
        if self.y.len() != self.n * K {
            return Err(shape_err(
                "labels",
                format!("y has {} values, n × K = {}", self.y.len(), self.n * K),
            ));
        }
        if self.y.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(shape_err("labels", "targets must lie in [0, 1]"));
        }
        if let Some(w) = &self.weight {
            if w.len() != self.n {
                return Err(shape_err(
                    "labels",
                    format!("weight has {} values, n = {}", w.len(), self.n),
                ));
            }
            if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(shape_err("labels", "weights must be finite and ≥ 0"));
            }
        }
        Ok(())
    }

    pub(crate) fn row_weight(&self, i: usize) -> f32 {
        self.weight.as_ref().map_or(1.0, |w| w[i])
    }
}

/// Inputs with their targets, as the `fit_*` functions take them.
#[derive(Debug)]
pub struct Labeled<'a, X> {
    /// Inputs.
    pub x: &'a X,
    /// Targets (one row per input row / window).
    pub labels: &'a Labels,
}

impl<X> Clone for Labeled<'_, X> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<X> Copy for Labeled<'_, X> {}

/// The topology of one scoring tick: `n` nodes with `d` features, typed directed edges (a
/// message flows from `edge_src` to `edge_dst`), targets and a loss mask per node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphSnapshot {
    /// Nodes.
    pub n: usize,
    /// Features per node.
    pub d: usize,
    /// `n × d` node features, row-major.
    pub x: Vec<f32>,
    /// Edge sources (node indices).
    pub edge_src: Vec<u32>,
    /// Edge destinations (node indices).
    pub edge_dst: Vec<u32>,
    /// Edge relation ids, each `< R` (the GNN's `relations`).
    pub edge_rel: Vec<u8>,
    /// `n × K` targets (ignored at inference; may be empty there).
    pub y: Vec<f32>,
    /// Which nodes count in the loss (may be empty at inference).
    pub mask: Vec<bool>,
}

impl GraphSnapshot {
    /// Errors on length mismatches, out-of-range node indices or relation ids `≥ relations`.
    /// `labelled` also requires `y` (`n × K`) and `mask` (`n`).
    pub fn validate(&self, relations: usize, labelled: bool) -> Result<(), NnError> {
        if self.d == 0 || self.x.len() != self.n * self.d {
            return Err(shape_err(
                "graph",
                format!(
                    "x has {} values, n × d = {} (d > 0)",
                    self.x.len(),
                    self.n * self.d
                ),
            ));
        }
        let e = self.edge_src.len();
        if self.edge_dst.len() != e || self.edge_rel.len() != e {
            return Err(shape_err(
                "graph edges",
                format!(
                    "edge_src {e}, edge_dst {}, edge_rel {} differ",
                    self.edge_dst.len(),
                    self.edge_rel.len()
                ),
            ));
        }
        if let Some(bad) = self
            .edge_src
            .iter()
            .chain(&self.edge_dst)
            .find(|&&v| v as usize >= self.n)
        {
            return Err(shape_err(
                "graph edges",
                format!("node {bad} out of range (n = {})", self.n),
            ));
        }
        if let Some(bad) = self.edge_rel.iter().find(|&&r| r as usize >= relations) {
            return Err(shape_err(
                "graph edges",
                format!("relation {bad} ≥ R = {relations}"),
            ));
        }
        if labelled && (self.y.len() != self.n * K || self.mask.len() != self.n) {
            return Err(shape_err(
                "graph labels",
                format!(
                    "y has {} values (n × K = {}), mask {} (n = {})",
                    self.y.len(),
                    self.n * K,
                    self.mask.len(),
                    self.n
                ),
            ));
        }
        Ok(())
    }
}

/// Per-column mean and standard deviation fitted on training rows, ignoring non-finite values;
/// `transform` maps `(v - mean) / std` and non-finite values to 0 (the mean).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Column means.
    pub mean: Vec<f32>,
    /// Column standard deviations (1 where a column is constant or empty).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits on row-major `x` with `d` columns (a [`Sequences`] is `n × t` rows of `m`).
    pub fn fit(x: &[f32], d: usize) -> Result<Self, NnError> {
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(shape_err(
                "standardizer",
                format!("{} values are not rows of {d}", x.len()),
            ));
        }
        let mut sum = vec![0f64; d];
        let mut sq = vec![0f64; d];
        let mut cnt = vec![0u64; d];
        for row in x.chunks_exact(d) {
            for (j, &v) in row.iter().enumerate() {
                if v.is_finite() {
                    sum[j] += f64::from(v);
                    sq[j] += f64::from(v) * f64::from(v);
                    cnt[j] += 1;
                }
            }
        }
        let mut mean = vec![0f32; d];
        let mut std = vec![1f32; d];
        for j in 0..d {
            if cnt[j] > 0 {
                let m = sum[j] / cnt[j] as f64;
                let var = (sq[j] / cnt[j] as f64 - m * m).max(0.0);
                mean[j] = m as f32;
                let s = var.sqrt() as f32;
                std[j] = if s > 1e-6 { s } else { 1.0 };
            }
        }
        Ok(Standardizer { mean, std })
    }

    /// Fits on a [`Tabular`]'s rows.
    pub fn fit_tabular(t: &Tabular) -> Result<Self, NnError> {
        Self::fit(&t.x, t.d)
    }

    /// Fits per channel on all steps of all windows.
    pub fn fit_sequences(s: &Sequences) -> Result<Self, NnError> {
        Self::fit(&s.x, s.m)
    }

    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Standardises row-major `x` (columns = [`dim`](Self::dim)) in place.
    pub fn transform_in_place(&self, x: &mut [f32]) -> Result<(), NnError> {
        let d = self.dim();
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(shape_err(
                "standardizer input",
                format!("{} values are not rows of {d}", x.len()),
            ));
        }
        for row in x.chunks_exact_mut(d) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = if v.is_finite() { (*v - m) / s } else { 0.0 };
            }
        }
        Ok(())
    }

    /// A standardised copy of a [`Tabular`].
    pub fn transform_tabular(&self, t: &Tabular) -> Result<Tabular, NnError> {
        let mut out = t.clone();
        self.transform_in_place(&mut out.x)?;
        Ok(out)
    }

    /// A standardised copy of a [`Sequences`] (per channel).
    pub fn transform_sequences(&self, s: &Sequences) -> Result<Sequences, NnError> {
        let mut out = s.clone();
        self.transform_in_place(&mut out.x)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardizer_ignores_nan_and_maps_it_to_zero() {
        let x = vec![1.0, 10.0, f32::NAN, 10.0, 3.0, 10.0];
        let s = Standardizer::fit(&x, 2).unwrap();
        assert_eq!(s.mean, vec![2.0, 10.0]);
        assert_eq!(s.std, vec![1.0, 1.0]); // constant column → 1
        let mut y = x.clone();
        s.transform_in_place(&mut y).unwrap();
        assert_eq!(y, vec![-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Standardizer>(&json).unwrap(), s);
    }

    #[test]
    fn shapes_are_checked() {
        assert!(Tabular::new(2, 3, vec![0.0; 5]).is_err());
        assert!(Sequences::new(2, 3, 1, vec![0.0; 6]).is_ok());
        assert!(Labels::new(2, vec![0.0; 7]).is_err());
        assert!(Labels::new(1, vec![0.0, 1.0, f32::NAN, 0.0]).is_err());
        let g = GraphSnapshot {
            n: 2,
            d: 1,
            x: vec![0.0, 1.0],
            edge_src: vec![0],
            edge_dst: vec![2],
            edge_rel: vec![0],
            y: vec![],
            mask: vec![],
        };
        assert!(g.validate(6, false).is_err());
    }
}
