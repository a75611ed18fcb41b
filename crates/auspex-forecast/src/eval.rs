//! Forecast quality against the naive references on the same origins: MASE per horizon and
//! scaled pinball loss per quantile and horizon, plus quantile coverage.
//!
//! Scaling (stated in every report): both MASE and pinball are divided by the mean absolute
//! one-step change of the series over the part before the evaluated range (its training and
//! validation splits for real data; the warm-up season of a held-out simulator seed), i.e.
//! Hyndman's in-sample one-step naive MAE. Per-series figures are averaged with equal weight.
//!
//! The references get fair quantiles: the empirical quantiles of their own residuals on the
//! training windows, in the model's per-window scale units ([`BaselineQuantiles::fit`]).

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::features::{Baseline, FeatureSpec};
use crate::model::ForecastModel;
use crate::series::Series;

/// One series with its chronological split, as origin ranges.
#[derive(Debug, Clone)]
pub struct Split {
    /// Name for reports.
    pub name: String,
    /// The series.
    pub series: Series,
    /// Training origins.
    pub train: Range<usize>,
    /// Validation origins.
    pub val: Range<usize>,
    /// Test origins (their scaling uses the steps before `test.start`).
    pub test: Range<usize>,
}

/// Residual quantiles of each reference: `[baseline][horizon][quantile]`, scale units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineQuantiles {
    /// Per [`Baseline::ALL`], per horizon, per quantile.
    pub residuals: Vec<Vec<Vec<f64>>>,
}

fn empirical_quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let frac = pos - lo as f64;
    sorted[lo] * (1.0 - frac) + sorted[hi] * frac
}

impl BaselineQuantiles {
    /// Residual quantiles `(y[t+h] - point) / scale` over the training origins of `splits`.
    pub fn fit(spec: &FeatureSpec, quantiles: &[f64], splits: &[Split]) -> Self {
        let nh = spec.horizons.len();
        let mut res: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); nh]; Baseline::ALL.len()];
        let mut scratch = Vec::new();
        for s in splits {
            let v = &s.series.values;
            let end = s.train.end.min(v.len().saturating_sub(spec.max_horizon()));
            for t in s.train.start..end {
                scratch.clear();
                let hist = &v[..=t];
                let Some(w) = spec.window(hist, s.series.time_of(t), &mut scratch) else {
                    continue;
                };
                for (hi, &h) in spec.horizons.iter().enumerate() {
                    let y = v[t + h];
                    if !y.is_finite() {
                        continue;
                    }
                    for (bi, b) in Baseline::ALL.iter().enumerate() {
                        if let Some(p) = b.point(spec, hist, h) {
                            res[bi][hi].push((y - p) / w.scale);
                        }
                    }
                }
            }
        }
        let residuals = res
            .into_iter()
            .map(|per_h| {
                per_h
                    .into_iter()
                    .map(|mut r| {
                        r.sort_by(f64::total_cmp);
                        quantiles
                            .iter()
                            .map(|&q| empirical_quantile(&r, q))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        BaselineQuantiles { residuals }
    }
}

/// Scores of one method at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MethodScores {
    /// MAE of the median forecast over the scaling MAE (see the module docs).
    pub mase: f64,
    /// Pinball loss averaged over the quantiles, over the same scaling.
    pub pinball: f64,
    /// Scaled pinball loss per quantile.
    pub pinball_by_quantile: Vec<f64>,
    /// Fraction of targets at or below each quantile forecast (calibration).
    pub coverage: Vec<f64>,
}

/// All methods at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonScores {
    /// Horizon in steps.
    pub steps: usize,
    /// Horizon in minutes.
    pub minutes: f64,
    /// The learned forecaster.
    pub model: MethodScores,
    /// `y[t + h] = y[t]`.
    pub last_value: MethodScores,
    /// Same time one season earlier.
    pub seasonal_naive: MethodScores,
    /// Least-squares line over the last hour.
    pub predict_linear: MethodScores,
}

/// The evaluation of one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Data set name.
    pub name: String,
    /// Series scored (those with origins and a non-zero scaling).
    pub series: usize,
    /// Forecast origins scored over all series.
    pub origins: usize,
    /// Quantile levels.
    pub quantiles: Vec<f64>,
    /// One entry per horizon.
    pub horizons: Vec<HorizonScores>,
    /// Per series: MASE per horizon of the model and each reference.
    pub per_series: Vec<SeriesMase>,
}

/// One series' MASE per horizon, model then references in [`Baseline::ALL`] order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesMase {
    /// The split's name.
    pub name: String,
    /// `[horizon][method]`, method 0 the model.
    pub mase: Vec<[f64; 4]>,
}

impl EvalReport {
    /// Per horizon (minutes): on how many series some reference has a lower MASE than the
    /// model, out of how many.
    pub fn series_lost(&self) -> Vec<(f64, usize, usize)> {
        self.horizons
            .iter()
            .enumerate()
            .map(|(hi, h)| {
                let lost = self
                    .per_series
                    .iter()
                    .filter(|s| s.mase[hi][1..].iter().any(|&b| b < s.mase[hi][0]))
                    .count();
                (h.minutes, lost, self.per_series.len())
            })
            .collect()
    }
}

/// Quantile forecasts (values, not scale units) for the origins `t` of `series` where the
/// model's window is complete: `(t, horizons × quantiles row-major)`. The batch path that
/// [`evaluate`] uses and the streaming API must agree with.
pub fn batch_forecasts(
    model: &ForecastModel,
    series: &Series,
    origins: impl IntoIterator<Item = usize>,
) -> Vec<(usize, Vec<f64>)> {
    let spec = &model.config().features;
    let mut x = Vec::new();
    let mut kept = Vec::new();
    for t in origins {
        if t >= series.values.len() {
            continue;
        }
        if let Some(w) = spec.window(&series.values[..=t], series.time_of(t), &mut x) {
            kept.push((t, w));
        }
    }
    let z = model.predict_z(&x, kept.len());
    let per = spec.horizons.len() * model.config().quantiles.len();
    kept.iter()
        .enumerate()
        .map(|(i, (t, w))| {
            let vals = z[i * per..(i + 1) * per]
                .iter()
                .map(|&z| w.last + w.scale * f64::from(z))
                .collect();
            (*t, vals)
        })
        .collect()
}

#[derive(Default, Clone)]
struct Acc {
    abs: f64,
    pin: Vec<f64>,
    below: Vec<f64>,
    n: usize,
}

impl Acc {
    fn add(&mut self, y: f64, median: f64, qs: &[f64], levels: &[f64]) {
        if self.pin.is_empty() {
            self.pin = vec![0.0; levels.len()];
            self.below = vec![0.0; levels.len()];
        }
        self.abs += (y - median).abs();
        for (i, (&q, &tau)) in qs.iter().zip(levels).enumerate() {
            let d = y - q;
            self.pin[i] += (tau * d).max((tau - 1.0) * d);
            self.below[i] += f64::from(u8::from(y <= q));
        }
        self.n += 1;
    }

    fn scores(&self, scale: f64) -> MethodScores {
        let n = self.n.max(1) as f64;
        let by_q: Vec<f64> = self.pin.iter().map(|p| p / n / scale).collect();
        MethodScores {
            mase: self.abs / n / scale,
            pinball: by_q.iter().sum::<f64>() / by_q.len().max(1) as f64,
            pinball_by_quantile: by_q,
            coverage: self.below.iter().map(|b| b / n).collect(),
        }
    }
}

fn mean_scores(all: &[MethodScores]) -> MethodScores {
    let n = all.len().max(1) as f64;
    let k = all.first().map_or(0, |s| s.coverage.len());
    let mut out = MethodScores {
        pinball_by_quantile: vec![0.0; k],
        coverage: vec![0.0; k],
        ..Default::default()
    };
    for s in all {
        out.mase += s.mase / n;
        out.pinball += s.pinball / n;
        for i in 0..k {
            out.pinball_by_quantile[i] += s.pinball_by_quantile[i] / n;
            out.coverage[i] += s.coverage[i] / n;
        }
    }
    out
}

/// Scores the model and the references on the test origins of `splits` where every method has
/// its inputs and every horizon its target.
pub fn evaluate(
    name: &str,
    model: &ForecastModel,
    baselines: &BaselineQuantiles,
    splits: &[Split],
) -> EvalReport {
    let spec = &model.config().features;
    let levels = &model.config().quantiles;
    let (nh, nq) = (spec.horizons.len(), levels.len());
    let med = model.config().median_index();
    // per horizon: per method (model + 3 references): per-series scores
    let mut per: Vec<Vec<Vec<MethodScores>>> = vec![vec![Vec::new(); 4]; nh];
    let (mut n_series, mut n_origins) = (0, 0);
    let mut per_series = Vec::new();
    for s in splits {
        let v = &s.series.values;
        let pre = &v[..s.test.start.min(v.len())];
        let diffs: Vec<f64> = pre
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .filter(|d| d.is_finite())
            .collect();
        if diffs.is_empty() {
            continue;
        }
        let scale = diffs.iter().sum::<f64>() / diffs.len() as f64;
        if scale <= 0.0 {
            continue;
        }
        let usable = s.test.clone().filter(|&t| {
            t + spec.max_horizon() < v.len()
                && spec.horizons.iter().all(|&h| {
                    v[t + h].is_finite()
                        && Baseline::ALL
                            .iter()
                            .all(|b| b.point(spec, &v[..=t], h).is_some())
                })
        });
        let forecasts = batch_forecasts(model, &s.series, usable);
        if forecasts.is_empty() {
            continue;
        }
        let mut accs = vec![vec![Acc::default(); 4]; nh];
        let mut scratch = Vec::new();
        for (t, f) in &forecasts {
            let hist = &v[..=*t];
            scratch.clear();
            let w = spec
                .window(hist, s.series.time_of(*t), &mut scratch)
                .expect("batch_forecasts kept only complete windows");
            for (hi, &h) in spec.horizons.iter().enumerate() {
                let y = v[t + h];
                let qs = &f[hi * nq..(hi + 1) * nq];
                accs[hi][0].add(y, qs[med], qs, levels);
                for (bi, b) in Baseline::ALL.iter().enumerate() {
                    let p = b.point(spec, hist, h).expect("filtered above");
                    let bq: Vec<f64> = baselines.residuals[bi][hi]
                        .iter()
                        .map(|r| p + w.scale * r)
                        .collect();
                    accs[hi][bi + 1].add(y, p, &bq, levels);
                }
            }
        }
        n_series += 1;
        n_origins += forecasts.len();
        let mut mase = vec![[0.0; 4]; nh];
        for hi in 0..nh {
            for m in 0..4 {
                let sc = accs[hi][m].scores(scale);
                mase[hi][m] = sc.mase;
                per[hi][m].push(sc);
            }
        }
        per_series.push(SeriesMase {
            name: s.name.clone(),
            mase,
        });
    }
    let step_min = spec.step_ms as f64 / 60_000.0;
    let horizons = spec
        .horizons
        .iter()
        .enumerate()
        .map(|(hi, &h)| HorizonScores {
            steps: h,
            minutes: h as f64 * step_min,
            model: mean_scores(&per[hi][0]),
            last_value: mean_scores(&per[hi][1]),
            seasonal_naive: mean_scores(&per[hi][2]),
            predict_linear: mean_scores(&per[hi][3]),
        })
        .collect();
    EvalReport {
        name: name.to_string(),
        series: n_series,
        origins: n_origins,
        quantiles: levels.clone(),
        horizons,
        per_series,
    }
}

/// The Markdown table of several reports: one row per data set and horizon, MASE then mean
/// scaled pinball for the model and each reference; the best MASE of a row in bold.
pub fn markdown_table(reports: &[EvalReport]) -> String {
    let mut s = String::from(
        "| data set | horizon | series / origins | MASE model | MASE last | MASE seasonal | MASE linear | pinball model | pinball last | pinball seasonal | pinball linear | model p90 coverage |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        for h in &r.horizons {
            let ms = [
                &h.model,
                &h.last_value,
                &h.seasonal_naive,
                &h.predict_linear,
            ];
            let best_mase = ms.iter().map(|m| m.mase).fold(f64::INFINITY, f64::min);
            let best_pin = ms.iter().map(|m| m.pinball).fold(f64::INFINITY, f64::min);
            let cell = |x: f64, best: f64| {
                if x == best {
                    format!("**{x:.3}**")
                } else {
                    format!("{x:.3}")
                }
            };
            let p90 = r
                .quantiles
                .iter()
                .position(|q| (q - 0.9).abs() < 1e-9)
                .map_or("-".to_string(), |i| format!("{:.3}", h.model.coverage[i]));
            s.push_str(&format!(
                "| {} | {} min | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.name,
                h.minutes,
                r.series,
                r.origins,
                cell(ms[0].mase, best_mase),
                cell(ms[1].mase, best_mase),
                cell(ms[2].mase, best_mase),
                cell(ms[3].mase, best_mase),
                cell(ms[0].pinball, best_pin),
                cell(ms[1].pinball, best_pin),
                cell(ms[2].pinball, best_pin),
                cell(ms[3].pinball, best_pin),
                p90,
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empirical_quantiles_interpolate() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(empirical_quantile(&v, 0.5), 2.0);
        assert_eq!(empirical_quantile(&v, 0.9), 3.6);
        assert_eq!(empirical_quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn pinball_and_coverage_accumulate() {
        let mut a = Acc::default();
        // y = 1; quantiles 0.1 -> 0, 0.9 -> 2: pinball 0.1 * 1 and 0.1 * 1.
        a.add(1.0, 1.0, &[0.0, 2.0], &[0.1, 0.9]);
        let s = a.scores(1.0);
        assert!((s.pinball_by_quantile[0] - 0.1).abs() < 1e-12);
        assert!((s.pinball_by_quantile[1] - 0.1).abs() < 1e-12);
        assert_eq!(s.coverage, vec![0.0, 1.0]);
        assert_eq!(s.mase, 0.0);
    }
}
