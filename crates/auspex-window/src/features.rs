//! Reading windows back out: the observed series of a metric (counters turned into rates), its
//! imputed version, and the feature vector of [`crate::FeatureSpec`].
//!
//! Statistics (mean, std, min, max, last, slope) use observed slots only, so imputation never
//! invents evidence; the EWMA and the sequences use the imputed series, which has no holes:
//! linear interpolation between observed slots, the first observation carried back over a
//! leading gap, the last carried forward over a trailing one, and zero for a metric never seen
//! in the window.
//!
//! A counter's rate at an observed slot is the increase since the previous observed raw value
//! (the anchor for the oldest slot) over the slots between them times the resolution: jitter of
//! timestamps within a slot is ignored, and the very first value an entity reports has no rate.

use auspex_model::EntityId;

use crate::store::{NEVER, Storage};
use crate::{STATS, WindowError, WindowStore};

/// Per-call working buffers, one window long.
pub(crate) struct Scratch {
    pub(crate) vals: Vec<f64>,
    pub(crate) obs: Vec<bool>,
    pub(crate) imputed: Vec<f64>,
}

impl Scratch {
    pub(crate) fn new(len: usize) -> Self {
        Scratch {
            vals: vec![0.0; len],
            obs: vec![false; len],
            imputed: vec![0.0; len],
        }
    }
}

/// Summary of one metric over one window.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    observed: usize,
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
    last: f64,
    /// Least squares over observed slots, units per second.
    slope: f64,
    ewma: f64,
}

impl WindowStore {
    /// The feature vector of an entity's current window, in [`WindowStore::spec`] order.
    pub fn features(&self, id: &EntityId) -> Option<Vec<f32>> {
        let mut out = vec![0.0; self.spec.len()];
        self.features_into(id, &mut out).ok()?;
        Some(out)
    }

    /// [`WindowStore::features`] into a caller's buffer of exactly `spec().len()` values.
    pub fn features_into(&self, id: &EntityId, out: &mut [f32]) -> Result<(), WindowError> {
        check_len("feature", self.spec.len(), out.len())?;
        let e = self
            .slot_of(id)
            .ok_or_else(|| WindowError::UnknownEntity(id.clone()))?;
        self.extract(e, &mut Scratch::new(self.len), out);
        Ok(())
    }

    /// Features of `ids` as a dense row-major matrix (`ids.len()` rows of `spec().len()`),
    /// written into `out` (cleared first), for the models that need no arrow.
    pub fn feature_matrix(&self, ids: &[EntityId], out: &mut Vec<f32>) -> Result<(), WindowError> {
        let width = self.spec.len();
        out.clear();
        out.resize(ids.len() * width, 0.0);
        let mut scratch = Scratch::new(self.len);
        for (id, row) in ids.iter().zip(out.chunks_exact_mut(width)) {
            let e = self
                .slot_of(id)
                .ok_or_else(|| WindowError::UnknownEntity(id.clone()))?;
            self.extract(e, &mut scratch, row);
        }
        Ok(())
    }

    /// Imputed sequences of `ids` as dense tensors of shape `[ids.len(), length, metrics]`
    /// (batch-first, time-major rows, metrics in spec order): `values` holds the imputed series
    /// (counters as rates), `mask` 1.0 where a slot was observed and 0.0 where imputed.
    pub fn sequence_matrix(
        &self,
        ids: &[EntityId],
        values: &mut Vec<f32>,
        mask: &mut Vec<f32>,
    ) -> Result<(), WindowError> {
        let cells = self.len * self.columns.len();
        resize_cleared(values, ids.len() * cells);
        resize_cleared(mask, ids.len() * cells);
        let mut scratch = Scratch::new(self.len);
        for (i, id) in ids.iter().enumerate() {
            let e = self
                .slot_of(id)
                .ok_or_else(|| WindowError::UnknownEntity(id.clone()))?;
            for c in 0..self.columns.len() {
                self.imputed_series(e, c, &mut scratch);
                self.write_sequence(
                    &scratch,
                    c,
                    &mut values[i * cells..(i + 1) * cells],
                    &mut mask[i * cells..(i + 1) * cells],
                );
            }
        }
        Ok(())
    }

    /// [`feature_matrix`](Self::feature_matrix) and [`sequence_matrix`](Self::sequence_matrix)
    /// in one pass: each metric's window is read and imputed once for both (a scorer with
    /// sequence branches needs both every tick).
    pub fn feature_and_sequence_matrix(
        &self,
        ids: &[EntityId],
        rows: &mut Vec<f32>,
        values: &mut Vec<f32>,
        mask: &mut Vec<f32>,
    ) -> Result<(), WindowError> {
        let width = self.spec.len();
        let cells = self.len * self.columns.len();
        resize_cleared(rows, ids.len() * width);
        resize_cleared(values, ids.len() * cells);
        resize_cleared(mask, ids.len() * cells);
        let mut scratch = Scratch::new(self.len);
        for (i, id) in ids.iter().enumerate() {
            let e = self
                .slot_of(id)
                .ok_or_else(|| WindowError::UnknownEntity(id.clone()))?;
            let sequence = (
                &mut values[i * cells..(i + 1) * cells],
                &mut mask[i * cells..(i + 1) * cells],
            );
            self.extract_with(
                e,
                &mut scratch,
                &mut rows[i * width..(i + 1) * width],
                Some(sequence),
            );
        }
        Ok(())
    }

    /// Writes metric `c`'s imputed window (in `scratch`) into one entity's `length × metrics`
    /// sequence cells.
    fn write_sequence(&self, scratch: &Scratch, c: usize, values: &mut [f32], mask: &mut [f32]) {
        let m = self.columns.len();
        for t in 0..self.len {
            values[t * m + c] = to_f32(scratch.imputed[t]);
            mask[t * m + c] = if scratch.obs[t] { 1.0 } else { 0.0 };
        }
    }

    /// Fills `scratch.vals`/`scratch.obs` with metric `c`'s observed series (oldest first) and
    /// `scratch.imputed` with its imputed version.
    pub(crate) fn imputed_series(&self, e: usize, c: usize, scratch: &mut Scratch) {
        self.observed_series(e, c, &mut scratch.vals, &mut scratch.obs);
        impute(&scratch.vals, &scratch.obs, &mut scratch.imputed);
    }

    /// Metric `c`'s window, oldest slot first: `vals[i]` is meaningful where `obs[i]`.
    fn observed_series(&self, e: usize, c: usize, vals: &mut [f64], obs: &mut [bool]) {
        let l = self.len;
        let head = self.state(e).head;
        let start = head - l as i64 + 1;
        let first = start.rem_euclid(l as i64) as usize;
        let n_cols = self.columns.len();
        // Ring positions of the window's slots, oldest first.
        let positions = (first..l).chain(0..first);
        let mask = &self.mask[e * l * n_cols..][..l * n_cols];
        match self.columns[c].storage {
            Storage::Gauge(g) => {
                let ng = self.n_gauges;
                let rows = &self.gauges[e * l * ng..][..l * ng];
                for (i, pos) in positions.enumerate() {
                    obs[i] = mask[pos * n_cols + c] != 0;
                    vals[i] = f64::from(rows[pos * ng + g]);
                }
            }
            Storage::Counter(k) => {
                let nc = self.n_counters;
                let rows = &self.raw[e * l * nc..][..l * nc];
                let anchor = self.anchors[e * nc + k];
                let res_s = self.res_seconds();
                // The previous observed raw value and its slot, starting from the anchor.
                let mut prev = (anchor.slot != NEVER).then_some((anchor.value, anchor.slot));
                for (i, pos) in positions.enumerate() {
                    obs[i] = false;
                    vals[i] = 0.0;
                    if mask[pos * n_cols + c] != 0 {
                        let raw = rows[pos * nc + k];
                        let t = start + i as i64;
                        if let Some((p, ps)) = prev {
                            obs[i] = true;
                            vals[i] = counter_rate(p, raw, (t - ps) as f64 * res_s);
                        }
                        prev = Some((raw, t));
                    }
                }
            }
        }
    }

    /// Writes the feature vector of entity slot `e` into `out` (`spec().len()` values).
    pub(crate) fn extract(&self, e: usize, scratch: &mut Scratch, out: &mut [f32]) {
        self.extract_with(e, scratch, out, None);
    }

    /// [`extract`](Self::extract), also writing the entity's imputed sequence cells into
    /// `sequence` (values, mask) when given.
    fn extract_with(
        &self,
        e: usize,
        scratch: &mut Scratch,
        out: &mut [f32],
        mut sequence: Option<(&mut [f32], &mut [f32])>,
    ) {
        debug_assert_eq!(out.len(), self.spec.len());
        let res_s = self.res_seconds();
        let cap = self.config.tte_cap_seconds;
        let l = self.len;
        let mut at = 0;
        let (mut cells, mut reported) = (0usize, 0usize);
        let (mut max_z, mut max_bz, mut sum_bz) = (0.0f64, 0.0f64, 0.0f64);
        for (c, col) in self.columns.iter().enumerate() {
            self.imputed_series(e, c, scratch);
            if let Some((values, mask)) = sequence.as_mut() {
                self.write_sequence(scratch, c, values, mask);
            }
            let s = summarise(
                &scratch.vals,
                &scratch.obs,
                &scratch.imputed,
                res_s,
                &self.ewma_weights,
            );
            let missing = 1.0 - s.observed as f64 / l as f64;
            let z = if s.std > 0.0 {
                (s.last - s.mean) / s.std
            } else {
                0.0
            };
            let base_z = match col.storage {
                Storage::Gauge(g) if s.observed > 0 => {
                    self.baselines[e * self.n_gauges + g].z(s.ewma)
                }
                _ => 0.0,
            };
            if s.observed > 0 {
                max_z = max_z.max(z.abs());
                max_bz = max_bz.max(base_z.abs());
                sum_bz += base_z.abs();
            }
            let stats = [
                s.mean, s.std, s.min, s.max, s.last, s.slope, s.ewma, z, base_z, missing,
            ];
            debug_assert_eq!(stats.len(), STATS.len());
            for v in stats {
                out[at] = to_f32(v);
                at += 1;
            }
            if let Some(k) = col.limit {
                let limit = self.sides[e * self.n_sides + k];
                let limit = (limit.slot != NEVER && limit.value > 0.0).then_some(limit.value);
                let (util, tte) = exhaustion(s.last, s.slope, limit, cap);
                out[at] = to_f32(util);
                out[at + 1] = to_f32(tte);
                at += 2;
            }
            if s.observed > 0 {
                cells += s.observed;
                reported += 1;
            }
        }
        out[at] = if reported == 0 {
            0.0
        } else {
            to_f32(cells as f64 / (reported * l) as f64)
        };
        out[at + 1] = to_f32(max_z);
        out[at + 2] = to_f32(max_bz);
        out[at + 3] = to_f32(sum_bz / reported.max(1) as f64);
        debug_assert_eq!(at + 4, out.len());
    }
}

/// Empties `v` and sizes it to `len` zeros, keeping its allocation.
fn resize_cleared(v: &mut Vec<f32>, len: usize) {
    v.clear();
    v.resize(len, 0.0);
}

/// Per-second rate between two raw counter values `dt_s` seconds apart. A decrease is a counter
/// reset: the counter restarted from zero, so it counted `raw` since. Never negative.
pub(crate) fn counter_rate(prev: f64, raw: f64, dt_s: f64) -> f64 {
    let delta = if raw >= prev { raw - prev } else { raw };
    (delta / dt_s).max(0.0)
}

/// Utilisation `last / limit` and time to exhaustion in seconds, `(limit - last) / slope` when
/// usage is rising, clamped to `[0, cap]`; `(0, cap)` when the limit is unknown.
fn exhaustion(last: f64, slope: f64, limit: Option<f64>, cap: f64) -> (f64, f64) {
    let Some(limit) = limit else {
        return (0.0, cap);
    };
    let util = last / limit;
    let tte = if last >= limit {
        0.0
    } else if slope > 0.0 {
        ((limit - last) / slope).clamp(0.0, cap)
    } else {
        cap
    };
    (util, tte)
}

/// Fills `imputed` from the observed slots: linear between observations, carried back over a
/// leading gap and forward over a trailing one, zero when nothing was observed.
pub(crate) fn impute(vals: &[f64], obs: &[bool], imputed: &mut [f64]) {
    if obs.iter().all(|&o| o) {
        imputed.copy_from_slice(vals);
        return;
    }
    let mut prev: Option<usize> = None;
    for i in 0..vals.len() {
        if !obs[i] {
            continue;
        }
        match prev {
            None => imputed[..i].fill(vals[i]),
            Some(p) => {
                let (a, b) = (vals[p], vals[i]);
                let span = (i - p) as f64;
                for (k, slot) in imputed[p + 1..i].iter_mut().enumerate() {
                    *slot = a + (b - a) * (k + 1) as f64 / span;
                }
            }
        }
        imputed[i] = vals[i];
        prev = Some(i);
    }
    match prev {
        Some(p) => {
            let last = vals[p];
            imputed[p + 1..].fill(last);
        }
        None => imputed.fill(0.0),
    }
}

/// Statistics of one window; all zero when nothing was observed. `ewma_weights` are
/// [`ewma_weights`] for the window's length.
fn summarise(
    vals: &[f64],
    obs: &[bool],
    imputed: &[f64],
    res_s: f64,
    ewma_weights: &[f64],
) -> Summary {
    let Some(first) = obs.iter().position(|&o| o) else {
        return Summary::default();
    };
    // One pass with independent accumulators (they pipeline), on values shifted by the first
    // observation so that the moments of large values (bytes) keep their precision.
    let shift = vals[first];
    let (mut n, mut sy, mut syy, mut sx, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut min, mut max, mut last) = (shift, shift, shift);
    for (i, (&v, &o)) in vals.iter().zip(obs).enumerate().skip(first) {
        if o {
            let (x, y) = (i as f64, v - shift);
            n += 1.0;
            sy += y;
            syy += y * y;
            sx += x;
            sxx += x * x;
            sxy += x * y;
            min = if v < min { v } else { min };
            max = if v > max { v } else { max };
            last = v;
        }
    }
    let mean_y = sy / n;
    let var = (syy / n - mean_y * mean_y).max(0.0);
    let (cov, var_x) = (sxy / n - sx / n * mean_y, sxx / n - (sx / n) * (sx / n));
    let slope = if var_x > 0.0 {
        cov / var_x / res_s
    } else {
        0.0
    };
    Summary {
        observed: n as usize,
        mean: shift + mean_y,
        std: var.sqrt(),
        min,
        max,
        last,
        slope,
        ewma: dot(imputed, ewma_weights),
    }
}

/// Weights that make the EWMA of a whole window a dot product: the recursion
/// `e_0 = x_0, e_i = a x_i + (1 - a) e_(i-1)` unrolled, so no serial dependency per slot.
pub(crate) fn ewma_weights(alpha: f64, len: usize) -> Vec<f64> {
    let mut w = vec![0.0; len];
    let mut decay = 1.0;
    for i in (0..len).rev() {
        w[i] = if i == 0 { decay } else { alpha * decay };
        decay *= 1.0 - alpha;
    }
    w
}

/// Dot product with four partial sums, so the additions pipeline.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// Narrows to `f32` without producing NaN or infinity: NaN becomes 0, overflow saturates.
pub(crate) fn to_f32(v: f64) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32
    }
}

pub(crate) fn check_len(
    what: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), WindowError> {
    if expected == got {
        Ok(())
    } else {
        Err(WindowError::BufferSize {
            what,
            expected,
            got,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impute_interpolates_and_carries() {
        let vals = [0.0, 2.0, 0.0, 0.0, 8.0, 0.0];
        let obs = [false, true, false, false, true, false];
        let mut out = [f64::NAN; 6];
        impute(&vals, &obs, &mut out);
        assert_eq!(out, [2.0, 2.0, 4.0, 6.0, 8.0, 8.0]);
        impute(&vals, &[false; 6], &mut out);
        assert_eq!(out, [0.0; 6]);
    }

    #[test]
    fn ewma_weights_match_the_recursion() {
        let xs = [1.0, 3.0, 2.0, 5.0, 4.0, 7.0, -1.0];
        for alpha in [0.1, 0.5, 1.0] {
            let mut e = xs[0];
            for &x in &xs[1..] {
                e = alpha * x + (1.0 - alpha) * e;
            }
            let w = ewma_weights(alpha, xs.len());
            assert!((dot(&xs, &w) - e).abs() < 1e-12, "alpha {alpha}");
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn rate_handles_resets() {
        assert_eq!(counter_rate(10.0, 40.0, 15.0), 2.0);
        assert_eq!(counter_rate(100.0, 30.0, 15.0), 2.0);
        assert_eq!(counter_rate(100.0, -5.0, 15.0), 0.0);
    }

    #[test]
    fn exhaustion_cases() {
        assert_eq!(exhaustion(4.0, 0.8, Some(8.0), 100.0), (0.5, 5.0));
        assert_eq!(exhaustion(4.0, 0.01, Some(8.0), 100.0), (0.5, 100.0));
        assert_eq!(exhaustion(4.0, -1.0, Some(8.0), 100.0), (0.5, 100.0));
        assert_eq!(exhaustion(9.0, 1.0, Some(8.0), 100.0), (1.125, 0.0));
        assert_eq!(exhaustion(4.0, 1.0, None, 100.0), (0.0, 100.0));
    }
}
