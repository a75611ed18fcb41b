//! Demand per workload: pod samples summed per workload and averaged over a resolution step.
//!
//! Owns the step clock and the gap rule that the batch evaluation and the streaming API share,
//! so both see the same numbers. Does not know about models.

use std::collections::BTreeMap;

use auspex_model::metrics as m;
use auspex_model::{EntityKind, MetricSample};
use serde::{Deserialize, Serialize};

/// A demand resource of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// CPU in use, cores, summed over the workload's pods.
    CpuCores,
    /// Memory working set, bytes, summed over the workload's pods.
    MemoryBytes,
    /// Requests served per second, summed over the workload's pods (where samples carry it).
    RequestsPerSecond,
}

impl Resource {
    /// Every resource, in a fixed order (the index into per-resource arrays).
    pub const ALL: [Resource; 3] = [
        Resource::CpuCores,
        Resource::MemoryBytes,
        Resource::RequestsPerSecond,
    ];

    /// The canonical metric summed over pods.
    pub fn metric(self) -> &'static str {
        match self {
            Resource::CpuCores => m::CPU_USAGE_CORES,
            Resource::MemoryBytes => m::MEMORY_WORKING_SET_BYTES,
            Resource::RequestsPerSecond => m::REQUESTS_PER_SECOND,
        }
    }

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::CpuCores => "cpu_cores",
            Resource::MemoryBytes => "memory_bytes",
            Resource::RequestsPerSecond => "requests_per_second",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workload: namespace and owner name (Deployment / StatefulSet).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadKey {
    /// Kubernetes namespace (empty when the pod has none).
    pub namespace: String,
    /// The owning workload's name.
    pub workload: String,
}

impl WorkloadKey {
    /// A key from its parts.
    pub fn new(namespace: &str, workload: &str) -> Self {
        WorkloadKey {
            namespace: namespace.to_string(),
            workload: workload.to_string(),
        }
    }

    /// The workload a pod sample belongs to; `None` for other entities and for pods without an
    /// owner (container samples are skipped so that pod and container samples are not summed
    /// twice).
    pub fn of(sample: &MetricSample) -> Option<WorkloadKey> {
        if sample.entity.kind != EntityKind::Pod {
            return None;
        }
        let workload = sample.entity.workload.as_deref()?;
        Some(WorkloadKey::new(
            sample.entity.namespace.as_deref().unwrap_or(""),
            workload,
        ))
    }
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.workload)
    }
}

/// One workload's demand over one completed step: the per-timestamp sum over its pods, averaged
/// over the distinct timestamps of the step. `None` where no pod sample carried the metric.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDemand {
    /// The workload.
    pub key: WorkloadKey,
    /// Step index: the step covers `[index * step_ms, (index + 1) * step_ms)`.
    pub index: i64,
    /// Per [`Resource::ALL`] entry.
    pub values: [Option<f64>; 3],
}

#[derive(Debug, Clone, Default)]
struct Pending {
    sums: [f64; 3],
    seen: [bool; 3],
    ticks: u32,
    last_ts: Option<i64>,
}

/// Turns pod samples, in event-time order, into per-workload step demand. A step is complete
/// when a sample (or [`StepAggregator::advance`]) from a later step arrives; samples older than
/// the open step are dropped and counted. Pods that come and go are summed while present.
#[derive(Debug, Clone)]
pub struct StepAggregator {
    step_ms: i64,
    open: Option<i64>,
    pending: BTreeMap<WorkloadKey, Pending>,
    late: u64,
}

impl StepAggregator {
    /// An aggregator with steps of `step_ms` (> 0).
    pub fn new(step_ms: i64) -> Self {
        assert!(step_ms > 0, "step_ms must be > 0");
        StepAggregator {
            step_ms,
            open: None,
            pending: BTreeMap::new(),
            late: 0,
        }
    }

    /// The step length in milliseconds.
    pub fn step_ms(&self) -> i64 {
        self.step_ms
    }

    /// Samples dropped because their step was already complete.
    pub fn late_samples(&self) -> u64 {
        self.late
    }

    /// Adds one sample; completed steps are appended to `out`.
    pub fn observe(&mut self, sample: &MetricSample, out: &mut Vec<StepDemand>) {
        let Some(key) = WorkloadKey::of(sample) else {
            return;
        };
        let step = sample.timestamp_ms.div_euclid(self.step_ms);
        match self.open {
            Some(open) if step < open => {
                self.late += 1;
                return;
            }
            Some(open) if step > open => self.close(out, step),
            None => self.open = Some(step),
            _ => {}
        }
        let p = self.pending.entry(key).or_default();
        if p.last_ts != Some(sample.timestamp_ms) {
            p.ticks += 1;
            p.last_ts = Some(sample.timestamp_ms);
        }
        for r in Resource::ALL {
            if let Some(v) = sample.metrics.get(r.metric()) {
                p.sums[r.index()] += v;
                p.seen[r.index()] = true;
            }
        }
    }

    /// Completes every step that ends at or before `now_ms` (a clock tick without samples).
    pub fn advance(&mut self, now_ms: i64, out: &mut Vec<StepDemand>) {
        let step = now_ms.div_euclid(self.step_ms);
        if self.open.is_some_and(|open| step > open) {
            self.close(out, step);
        }
    }

    /// Completes the open step (end of a finite stream).
    pub fn finish(&mut self, out: &mut Vec<StepDemand>) {
        if let Some(open) = self.open {
            self.close(out, open + 1);
        }
    }

    fn close(&mut self, out: &mut Vec<StepDemand>, next: i64) {
        let Some(open) = self.open else { return };
        for (key, p) in std::mem::take(&mut self.pending) {
            let ticks = f64::from(p.ticks.max(1));
            let values: [Option<f64>; 3] =
                std::array::from_fn(|i| p.seen[i].then(|| p.sums[i] / ticks));
            out.push(StepDemand {
                key,
                index: open,
                values,
            });
        }
        self.open = Some(next);
    }
}

/// A regular series: `values[i]` is the demand of the step starting at
/// `start_ms + i * step_ms`; NaN where missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Start of the first step, ms since the epoch.
    pub start_ms: i64,
    /// Step length, ms.
    pub step_ms: i64,
    /// One value per step (NaN: missing).
    pub values: Vec<f64>,
}

impl Series {
    /// Start time of step `i`.
    pub fn time_of(&self, i: usize) -> i64 {
        self.start_ms + i as i64 * self.step_ms
    }
}

/// The gap rule shared by batch series and streaming rings: steps between the last known step
/// `last` (index, value) and the new `index` are filled with the last value when the gap is at
/// most `max_gap` steps, else with NaN. Calls `push` once per missing step.
pub(crate) fn fill_gap(
    last: Option<(i64, f64)>,
    index: i64,
    max_gap: usize,
    mut push: impl FnMut(f64),
) {
    let Some((li, lv)) = last else { return };
    let missing = index - li - 1;
    if missing <= 0 {
        return;
    }
    let fill = if missing as usize <= max_gap {
        lv
    } else {
        f64::NAN
    };
    for _ in 0..missing {
        push(fill);
    }
}

/// Builds one [`Series`] per (workload, resource) from step demand, in step order, applying
/// the gap rule. Series a workload never reported (no request rate) are absent.
#[derive(Debug, Clone, Default)]
pub struct SeriesBuilder {
    step_ms: i64,
    max_gap: usize,
    series: BTreeMap<(WorkloadKey, Resource), (i64, Series)>,
}

impl SeriesBuilder {
    /// A builder for steps of `step_ms`, forward-filling gaps of at most `max_gap` steps.
    pub fn new(step_ms: i64, max_gap: usize) -> Self {
        SeriesBuilder {
            step_ms,
            max_gap,
            series: BTreeMap::new(),
        }
    }

    /// Appends completed steps.
    pub fn push(&mut self, steps: &[StepDemand]) {
        for s in steps {
            for r in Resource::ALL {
                let Some(v) = s.values[r.index()] else {
                    continue;
                };
                let entry = self.series.entry((s.key.clone(), r)).or_insert_with(|| {
                    (
                        s.index - 1,
                        Series {
                            start_ms: s.index * self.step_ms,
                            step_ms: self.step_ms,
                            values: Vec::new(),
                        },
                    )
                });
                let (last_index, series) = entry;
                let last = series.values.last().map(|&lv| (*last_index, lv));
                fill_gap(last, s.index, self.max_gap, |x| series.values.push(x));
                series.values.push(v);
                *last_index = s.index;
            }
        }
    }

    /// The series built so far.
    pub fn finish(self) -> BTreeMap<(WorkloadKey, Resource), Series> {
        self.series.into_iter().map(|(k, (_, s))| (k, s)).collect()
    }
}

/// Aggregates a finite, time-ordered stream of samples (owned or borrowed) into series.
pub fn aggregate(
    samples: impl IntoIterator<Item = impl std::borrow::Borrow<MetricSample>>,
    step_ms: i64,
    max_gap: usize,
) -> BTreeMap<(WorkloadKey, Resource), Series> {
    let mut agg = StepAggregator::new(step_ms);
    let mut builder = SeriesBuilder::new(step_ms, max_gap);
    let mut out = Vec::new();
    for s in samples {
        agg.observe(s.borrow(), &mut out);
        builder.push(&out);
        out.clear();
    }
    agg.finish(&mut out);
    builder.push(&out);
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use auspex_model::Entity;

    fn pod(
        ns: &str,
        name: &str,
        workload: &str,
        ts: i64,
        cpu: f64,
        rps: Option<f64>,
    ) -> MetricSample {
        let mut entity = Entity::new(EntityKind::Pod, Some(ns), name);
        entity.workload = Some(workload.into());
        let mut metrics = BTreeMap::new();
        metrics.insert(m::CPU_USAGE_CORES.to_string(), cpu);
        if let Some(r) = rps {
            metrics.insert(m::REQUESTS_PER_SECOND.to_string(), r);
        }
        MetricSample {
            timestamp_ms: ts,
            entity,
            metrics,
        }
    }

    #[test]
    fn sums_pods_averages_ticks_and_fills_short_gaps_only() {
        let s = vec![
            // step 0: two ticks; pod b appears on the second tick (churn)
            pod("ns", "a-1", "a", 0, 1.0, Some(10.0)),
            pod("ns", "a-1", "a", 30_000, 1.0, Some(10.0)),
            pod("ns", "a-2", "a", 30_000, 2.0, None),
            // step 1: gap; step 2
            pod("ns", "a-1", "a", 120_000, 4.0, None),
            // step 9: a gap of 6 steps, longer than max_gap 2
            pod("ns", "a-1", "a", 540_000, 5.0, None),
        ];
        let series = aggregate(&s, 60_000, 2);
        let cpu = &series[&(WorkloadKey::new("ns", "a"), Resource::CpuCores)];
        assert_eq!(cpu.start_ms, 0);
        // (1 + 1 + 2) / 2 ticks = 2, then the 1-step gap filled, then 4, six NaN, 5.
        assert_eq!(cpu.values[..3], [2.0, 2.0, 4.0]);
        assert!(cpu.values[3..9].iter().all(|v| v.is_nan()));
        assert_eq!(cpu.values[9], 5.0);
        let rps = &series[&(WorkloadKey::new("ns", "a"), Resource::RequestsPerSecond)];
        assert_eq!(rps.values, vec![10.0]);
        assert!(!series.contains_key(&(WorkloadKey::new("ns", "a"), Resource::MemoryBytes)));
    }
}
