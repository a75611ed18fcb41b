//! Demand forecasts in `serve` (issue 7): the `[forecast]` settings, the KEDA external
//! scaler's view of the engine's forecasts, and the capped `auspex_forecast_demand` gauges.
//!
//! The engine feeds every sample to an [`auspex_forecast::DemandForecaster`] and forecasts
//! every workload once per forecast step; readers here only look the latest forecast up, so a
//! KEDA poll or a scrape never runs the network.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use auspex_forecast::{Forecast, Resource as ForecastResource, WorkloadKey};
use auspex_keda::{Forecasts, Resource, Unavailable, Workload};
use serde::Deserialize;

use crate::shared::Shared;

/// `[forecast]`: per-workload demand forecasts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastSettings {
    /// A forecast model file written by `auspex evaluate-forecast --save-model` (versioned,
    /// checksum verified at load). Absent: no forecasts, and the KEDA scaler cannot start.
    pub model: Option<PathBuf>,
}

/// The gauge family of forecasts.
pub const FORECAST_DEMAND: &str = "auspex_forecast_demand";

fn resource_of(r: Resource) -> ForecastResource {
    match r {
        Resource::Cpu => ForecastResource::CpuCores,
        Resource::Memory => ForecastResource::MemoryBytes,
        Resource::Requests => ForecastResource::RequestsPerSecond,
    }
}

/// The engine's forecasts, as KEDA's scaler asks for them.
pub struct EngineForecasts {
    shared: Arc<Shared>,
    horizons_ms: Vec<i64>,
    quantiles: Vec<f64>,
}

impl EngineForecasts {
    /// `None` when the engine has no forecast model.
    pub fn new(shared: Arc<Shared>) -> Option<Self> {
        let (horizons_ms, quantiles) = shared.engine().forecast_grid()?;
        Some(EngineForecasts {
            shared,
            horizons_ms,
            quantiles,
        })
    }
}

impl Forecasts for EngineForecasts {
    fn horizons_s(&self) -> Vec<u64> {
        self.horizons_ms
            .iter()
            .map(|h| (*h / 1000) as u64)
            .collect()
    }

    fn quantiles(&self) -> Vec<f64> {
        self.quantiles.clone()
    }

    fn forecast(
        &self,
        workload: &Workload,
        resource: Resource,
        horizon_s: u64,
        quantile: f64,
    ) -> Result<f64, Unavailable> {
        let key = WorkloadKey::new(&workload.namespace, &workload.name);
        let engine = self.shared.engine();
        let f = engine
            .forecast_of(&key, resource_of(resource))
            .map_err(|known| {
                if known {
                    Unavailable::NotReady(format!(
                        "workload {workload}: not enough recent {} history to forecast yet",
                        resource.as_str()
                    ))
                } else {
                    Unavailable::UnknownWorkload(workload.clone())
                }
            })?;
        let h = f
            .horizons
            .iter()
            .find(|h| h.horizon_ms == horizon_s as i64 * 1000);
        let q = f.quantiles.iter().position(|q| (q - quantile).abs() < 1e-9);
        match (h, q) {
            // Demand is never negative, whatever a low quantile's extrapolation says.
            (Some(h), Some(q)) => Ok(h.values[q].max(0.0)),
            _ => Err(Unavailable::NotReady(format!(
                "workload {workload}: no forecast at {horizon_s} s, quantile {quantile}"
            ))),
        }
    }
}

/// The `auspex_forecast_demand{namespace,workload,resource,horizon,quantile}` family for at
/// most `cap` workloads (the largest by p50 CPU at the first horizon), and how many workloads
/// it left out (for `auspex_series_capped`, whose lines `/metrics` keeps together).
pub fn render(forecasts: &[&Forecast], cap: usize) -> (String, usize) {
    use std::fmt::Write;
    let mut size: BTreeMap<&WorkloadKey, f64> = BTreeMap::new();
    for f in forecasts {
        let cpu = (f.resource == ForecastResource::CpuCores)
            .then(|| {
                let mid = f.quantiles.len() / 2;
                f.horizons.first().map(|h| h.values[mid])
            })
            .flatten()
            .unwrap_or(0.0);
        let e = size.entry(&f.workload).or_insert(0.0);
        *e = e.max(cpu);
    }
    let mut ranked: Vec<(&WorkloadKey, f64)> = size.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let kept: std::collections::BTreeSet<&WorkloadKey> =
        ranked.iter().take(cap).map(|(w, _)| *w).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP {FORECAST_DEMAND} Forecast demand of a workload (cpu_cores, memory_bytes, requests_per_second summed over its pods) at a horizon and quantile, for the largest workloads only.\n# TYPE {FORECAST_DEMAND} gauge"
    );
    let mut shown: Vec<&&Forecast> = forecasts
        .iter()
        .filter(|f| kept.contains(&f.workload))
        .collect();
    shown.sort_by(|a, b| (&a.workload, a.resource).cmp(&(&b.workload, b.resource)));
    for f in shown {
        for h in &f.horizons {
            for (q, v) in f.quantiles.iter().zip(&h.values) {
                let _ = writeln!(
                    out,
                    "{FORECAST_DEMAND}{{namespace=\"{}\",workload=\"{}\",resource=\"{}\",horizon=\"{}\",quantile=\"{q}\"}} {}",
                    crate::telemetry::escape(&f.workload.namespace),
                    crate::telemetry::escape(&f.workload.workload),
                    f.resource.as_str(),
                    auspex_keda::show_duration((h.horizon_ms / 1000) as u64),
                    v.max(0.0)
                );
            }
        }
    }
    (out, ranked.len() - kept.len())
}
