//! The streaming API: observe samples as they arrive, ask for a workload's forecast.
//!
//! Per (workload, resource) it keeps a ring of the last [`FeatureSpec::needed`] completed
//! steps (bounded memory: about a season of `f64`s), so `observe` is a map lookup and a few
//! additions; the network runs only when a forecast is asked for, batched in
//! [`DemandForecaster::forecast_all`].
//!
//! TODO(issue 7): wire into `auspex serve` (one forecaster fed from the samples topic, a
//! forecast tick), expose `auspex_forecast_demand{workload, resource, horizon, quantile}`
//! gauges, and serve the KEDA external scaler (gRPC `GetMetrics` reading
//! [`DemandForecaster::forecast`]); the closed-loop HPA simulation reads the same call.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use auspex_model::MetricSample;
use serde::{Deserialize, Serialize};

use crate::features::FeatureSpec;
use crate::model::ForecastModel;
use crate::series::{Resource, StepAggregator, StepDemand, WorkloadKey, fill_gap};

/// One horizon's quantile forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonForecast {
    /// Horizon after the origin step, ms.
    pub horizon_ms: i64,
    /// Start of the forecast step (`origin_ms + horizon_ms`), ms since the epoch.
    pub at_ms: i64,
    /// One value per quantile level, non-decreasing.
    pub values: Vec<f64>,
}

/// A workload's demand forecast for one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// The workload.
    pub workload: WorkloadKey,
    /// The resource (its unit: cores, bytes, requests/s).
    pub resource: Resource,
    /// Start of the last complete step the forecast is made from.
    pub origin_ms: i64,
    /// Quantile levels of `values`.
    pub quantiles: Vec<f64>,
    /// One entry per horizon, ascending.
    pub horizons: Vec<HorizonForecast>,
}

#[derive(Debug, Clone)]
struct Ring {
    buf: VecDeque<f64>,
    last: i64,
}

/// Streaming per-workload demand forecasts from a trained model.
#[derive(Debug, Clone)]
pub struct DemandForecaster {
    model: ForecastModel,
    agg: StepAggregator,
    rings: BTreeMap<(WorkloadKey, Resource), Ring>,
    steps: Vec<StepDemand>,
    cap: usize,
    newest: i64,
}

impl DemandForecaster {
    /// A forecaster with no history yet.
    pub fn new(model: ForecastModel) -> Self {
        let spec = &model.config().features;
        DemandForecaster {
            agg: StepAggregator::new(spec.step_ms),
            cap: spec.needed(),
            model,
            rings: BTreeMap::new(),
            steps: Vec::new(),
            newest: i64::MIN,
        }
    }

    /// The model in use.
    pub fn model(&self) -> &ForecastModel {
        &self.model
    }

    /// Adds one sample (pods with a `workload`; anything else is ignored). Samples must come
    /// in event-time order; a sample from an already completed step is dropped.
    pub fn observe(&mut self, sample: &MetricSample) {
        self.agg.observe(sample, &mut self.steps);
        self.absorb();
    }

    /// Completes the steps that end at or before `now_ms` (call on a clock tick).
    pub fn advance(&mut self, now_ms: i64) {
        self.agg.advance(now_ms, &mut self.steps);
        self.absorb();
    }

    /// Completes the open step (end of a finite stream).
    pub fn finish(&mut self) {
        self.agg.finish(&mut self.steps);
        self.absorb();
    }

    /// Samples dropped as late.
    pub fn late_samples(&self) -> u64 {
        self.agg.late_samples()
    }

    fn absorb(&mut self) {
        let max_gap = self.model.config().max_gap;
        for s in self.steps.drain(..) {
            self.newest = self.newest.max(s.index);
            for (i, r) in Resource::ALL.iter().enumerate() {
                let Some(v) = s.values[i] else { continue };
                let ring = self
                    .rings
                    .entry((s.key.clone(), *r))
                    .or_insert_with(|| Ring {
                        buf: VecDeque::with_capacity(self.cap + 1),
                        last: s.index - 1,
                    });
                let last = ring.buf.back().map(|&lv| (ring.last, lv));
                let cap = self.cap;
                let buf = &mut ring.buf;
                fill_gap(last, s.index, max_gap, |x| {
                    buf.push_back(x);
                    if buf.len() > cap {
                        buf.pop_front();
                    }
                });
                buf.push_back(v);
                if buf.len() > cap {
                    buf.pop_front();
                }
                ring.last = s.index;
            }
        }
        // A workload silent for a whole ring is gone (deleted, renamed): free its history.
        let horizon = self.cap as i64;
        let newest = self.newest;
        self.rings.retain(|_, r| newest - r.last <= horizon);
    }

    /// Workloads with history, sorted.
    pub fn workloads(&self) -> Vec<WorkloadKey> {
        let set: BTreeSet<&WorkloadKey> = self.rings.keys().map(|(k, _)| k).collect();
        set.into_iter().cloned().collect()
    }

    /// Resources known for `workload`.
    pub fn resources(&self, workload: &WorkloadKey) -> Vec<Resource> {
        Resource::ALL
            .into_iter()
            .filter(|r| self.rings.contains_key(&(workload.clone(), *r)))
            .collect()
    }

    /// The forecast from the last complete step; `None` when the workload had no samples in
    /// that step, while the recent history is shorter than the model's, or has a long gap (the seasonal inputs are masked until a season of
    /// history is there).
    pub fn forecast(&mut self, workload: &WorkloadKey, resource: Resource) -> Option<Forecast> {
        self.forecast_many(&[(workload.clone(), resource)]).pop()
    }

    /// Forecasts for every known (workload, resource) that has enough history, in one batch.
    pub fn forecast_all(&mut self) -> Vec<Forecast> {
        let keys: Vec<(WorkloadKey, Resource)> = self.rings.keys().cloned().collect();
        self.forecast_many(&keys)
    }

    fn forecast_many(&mut self, keys: &[(WorkloadKey, Resource)]) -> Vec<Forecast> {
        let spec: &FeatureSpec = &self.model.config().features;
        let mut x = Vec::new();
        let mut kept = Vec::new();
        for key in keys {
            let Some(ring) = self.rings.get_mut(key) else {
                continue;
            };
            // No samples in the latest complete step: the workload is gone or silent, and a
            // forecast from older data would look current.
            if ring.last != self.newest {
                continue;
            }
            let origin_ms = ring.last * spec.step_ms;
            if let Some(w) = spec.window(ring.buf.make_contiguous(), origin_ms, &mut x) {
                kept.push((key, origin_ms, w));
            }
        }
        let z = self.model.predict_z(&x, kept.len());
        let q = self.model.config().quantiles.clone();
        let nq = q.len();
        kept.iter()
            .enumerate()
            .map(|(i, (key, origin_ms, w))| {
                let horizons = spec
                    .horizons
                    .iter()
                    .enumerate()
                    .map(|(hi, &h)| {
                        let base = (i * spec.horizons.len() + hi) * nq;
                        let horizon_ms = h as i64 * spec.step_ms;
                        HorizonForecast {
                            horizon_ms,
                            at_ms: origin_ms + horizon_ms,
                            values: z[base..base + nq]
                                .iter()
                                .map(|&z| w.last + w.scale * f64::from(z))
                                .collect(),
                        }
                    })
                    .collect();
                Forecast {
                    workload: key.0.clone(),
                    resource: key.1,
                    origin_ms: *origin_ms,
                    quantiles: q.clone(),
                    horizons,
                }
            })
            .collect()
    }
}
