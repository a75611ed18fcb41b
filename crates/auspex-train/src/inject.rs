//! Synthetic anomalies injected into a sample stream, with labels (NCAD, COUTA, CutAddPaste):
//! [`Injector`] wraps any [`Source`] and, for random entities at random times (seeded), bends
//! one metric's values over a span of samples. Supervised branches learn to tell injected spans
//! from normal data, so they can train on unlabelled data (SMD's training halves).
//!
//! Definitions. For each entity the injector keeps, per metric, the running mean `μ` and
//! standard deviation `σ` of the *original* values (Welford). An injection on metric `m` starts
//! at a sample (the *onset*) after `warmup_samples` of the entity, lasts `len` samples, and has
//! amplitude `A = magnitude × max(σ, 0.02 |μ|, scale_floor)` and a random sign `s`. At step
//! `i` (0-based) of the span the emitted value `v'` is, from the original `v`:
//! - [`Shape::Spike`]: `v + s·A` (span 1–3 samples);
//! - [`Shape::LevelShift`]: `v + s·A/2`;
//! - [`Shape::Drift`]: `v + s·A·(i+1)/len`, a slow ramp: the precursor shape;
//! - [`Shape::VarianceBurst`]: `v + (A/2)·z`, `z` standard normal;
//! - [`Shape::FlatLine`]: the value at the onset, held;
//! - [`Shape::CorrelationBreak`]: `2μ − v`, the metric mirrored around its mean, so it moves
//!   against the metrics it used to move with while keeping its level and spread.
//!
//! One anomaly may bend up to `max_metrics` distinct metrics of the entity at once, each an
//! injection of its own with the same shape and span.
//!
//! Each injection becomes one [`IncidentLabel`]: `onset_ms` = the first injected sample,
//! `end_ms` = the last, `incident_ms` = the first sample where the deviation reaches half its
//! full size — the midpoint of a drift (so a drift has a precursor phase to predict), the onset
//! for every other shape. Its kind comes from the metric's name ([`kind_for_metric`]), its fault
//! is `injected_<shape>`. Counters (`*_total`) and limits and requests are never injected into:
//! bending a cumulative counter would read as a reset, and a limit is configuration.
//!
//! Determinism: one ChaCha8 generator seeded from the config, drawn in stream order, so the same
//! source and config inject the same anomalies.

use std::collections::HashMap;

use auspex_ingest::{IngestError, Record, Source};
use auspex_model::{AnomalyKind, EntityId, EntityRef, IncidentLabel, MetricSample, TimestampMs};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{TrainError, config_error};

/// The shape of an injected deviation (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Spike,
    LevelShift,
    Drift,
    VarianceBurst,
    FlatLine,
    CorrelationBreak,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::Spike,
        Shape::LevelShift,
        Shape::Drift,
        Shape::VarianceBurst,
        Shape::FlatLine,
        Shape::CorrelationBreak,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Spike => "spike",
            Shape::LevelShift => "level_shift",
            Shape::Drift => "drift",
            Shape::VarianceBurst => "variance_burst",
            Shape::FlatLine => "flat_line",
            Shape::CorrelationBreak => "correlation_break",
        }
    }
}

/// The incident kind an anomaly on a metric stands for, from the metric's name (lower-cased):
/// `cpu`, `load_` (SMD's load averages), `throttl` → cpu_exhaustion; `net`, `eth`, `tcp`,
/// `udp`, `latency`, `err`, `drop`, `retrans`, `success`, `rx_`, `tx_`, `segs`, `rsts`, `estab`,
/// `opens`, `overflow` → network_issue; `mem`, `oom` → memory_exhaustion; anything else
/// (`restarts`, `ready`, `disk`, swap) → pod_failure. Checked in the order cpu, memory,
/// network, so `node_cpu_utilization_ratio` is cpu and `network_rx_errors_total` is network.
pub fn kind_for_metric(metric: &str) -> AnomalyKind {
    let m = metric.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(&["cpu", "load_", "throttl"]) {
        AnomalyKind::CpuExhaustion
    } else if any(&["mem", "oom"]) {
        AnomalyKind::MemoryExhaustion
    } else if any(&[
        "net", "eth", "tcp", "udp", "latency", "err", "drop", "retrans", "success", "rx_", "tx_",
        "segs", "rsts", "estab", "opens", "overflow",
    ]) {
        AnomalyKind::NetworkIssue
    } else {
        AnomalyKind::PodFailure
    }
}

/// What, where and how often to inject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InjectorConfig {
    /// Seed of the injector's generator.
    pub seed: u64,
    /// Expected injections starting per entity per hour of event time (while the entity is
    /// warm and not injected into or cooling down).
    pub rate_per_entity_hour: f64,
    /// Shapes to draw from, uniformly.
    pub shapes: Vec<Shape>,
    /// Shortest span in samples (spikes: 1–3 samples whatever this says).
    pub min_len: usize,
    /// Longest span in samples.
    pub max_len: usize,
    /// Amplitude in units of the metric's running standard deviation.
    pub magnitude: f64,
    /// Samples of an entity seen before the first injection into it (its statistics warm up).
    pub warmup_samples: usize,
    /// Samples after an injection ends before the next one on the same entity.
    pub cooldown_samples: usize,
    /// Smallest scale of a deviation, in the metric's units (for metrics that never move).
    pub scale_floor: f64,
    /// Metrics that may be injected into; empty: every gauge the samples carry, except limits
    /// and requests.
    pub metrics: Vec<String>,
    /// Each anomaly bends between 1 and this many distinct metrics of the entity at once (same
    /// shape and span, each its own sign and scale; one label per metric): real incidents on a
    /// server move several correlated metrics together.
    pub max_metrics: usize,
}

impl Default for InjectorConfig {
    fn default() -> Self {
        InjectorConfig {
            seed: 7,
            rate_per_entity_hour: 0.5,
            shapes: Shape::ALL.to_vec(),
            min_len: 10,
            max_len: 60,
            magnitude: 6.0,
            warmup_samples: 30,
            cooldown_samples: 30,
            scale_floor: 1e-3,
            metrics: Vec::new(),
            max_metrics: 1,
        }
    }
}

impl InjectorConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.rate_per_entity_hour.is_finite() && self.rate_per_entity_hour >= 0.0) {
            return Err(config_error(
                "rate_per_entity_hour",
                format!("{} is not a finite rate >= 0", self.rate_per_entity_hour),
            ));
        }
        if self.shapes.is_empty() {
            return Err(config_error("shapes", "no shape to inject"));
        }
        if self.max_metrics == 0 {
            return Err(config_error("max_metrics", "must be at least 1"));
        }
        if self.min_len == 0 || self.min_len > self.max_len {
            return Err(config_error(
                "min_len",
                format!(
                    "need 1 <= min_len <= max_len, got {}..{}",
                    self.min_len, self.max_len
                ),
            ));
        }
        if !(self.magnitude.is_finite() && self.magnitude > 0.0) {
            return Err(config_error(
                "magnitude",
                format!("{} is not positive", self.magnitude),
            ));
        }
        if !(self.scale_floor.is_finite() && self.scale_floor > 0.0) {
            return Err(config_error(
                "scale_floor",
                format!("{} is not positive", self.scale_floor),
            ));
        }
        Ok(())
    }
}

/// One injection, as applied so far (complete once the stream has passed its end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Injection {
    pub entity: EntityRef,
    pub metric: String,
    pub shape: Shape,
    /// Signed amplitude `s·A`.
    pub amplitude: f64,
    /// The running mean of the metric at the onset.
    pub mean: f64,
    /// Samples injected so far.
    pub samples: usize,
    /// Span length it was drawn with, in samples.
    pub planned: usize,
    pub onset_ms: TimestampMs,
    /// First sample whose deviation reaches half its full size (the onset until then).
    pub incident_ms: TimestampMs,
    /// Last injected sample.
    pub end_ms: TimestampMs,
}

impl Injection {
    /// The ground truth this injection stands for.
    pub fn label(&self) -> IncidentLabel {
        IncidentLabel {
            entity: self.entity.clone(),
            kind: kind_for_metric(&self.metric),
            fault: format!("injected_{}", self.shape.as_str()),
            onset_ms: self.onset_ms,
            incident_ms: self.incident_ms.clamp(self.onset_ms, self.end_ms),
            end_ms: self.end_ms,
            root_cause: true,
        }
    }

    /// Step (0-based) at which the deviation reaches half its full size.
    fn incident_step(&self) -> usize {
        match self.shape {
            // (i+1)/len >= 1/2
            Shape::Drift => self.planned.div_ceil(2) - 1,
            _ => 0,
        }
    }
}

/// Running mean and variance (Welford).
#[derive(Debug, Clone, Copy, Default)]
struct Running {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Running {
    fn push(&mut self, v: f64) {
        self.n += 1;
        let d = v - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (v - self.mean);
    }

    fn std(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f64).sqrt()
        }
    }
}

#[derive(Debug, Default)]
struct EntityState {
    seen: usize,
    last_ms: Option<TimestampMs>,
    interval_ms: Option<i64>,
    stats: HashMap<String, Running>,
    /// Indices into `injections` of the ones under way (one span, one or more metrics).
    active: Vec<usize>,
    cooldown: usize,
    /// Value held by a flat-line, per active injection.
    held: Vec<f64>,
}

/// A [`Source`] that injects synthetic anomalies into another's samples (see the module docs).
pub struct Injector<S> {
    inner: S,
    config: InjectorConfig,
    rng: ChaCha8Rng,
    entities: HashMap<EntityId, EntityState>,
    injections: Vec<Injection>,
}

impl<S: Source> Injector<S> {
    /// Wraps `inner`; fails when the config does not validate.
    pub fn new(inner: S, config: InjectorConfig) -> Result<Self, TrainError> {
        config.validate()?;
        Ok(Injector {
            inner,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            entities: HashMap::new(),
            injections: Vec::new(),
        })
    }

    /// The injections so far, in onset order per entity.
    pub fn injections(&self) -> &[Injection] {
        &self.injections
    }

    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn apply(&mut self, sample: &mut MetricSample) {
        let id = sample.entity.id();
        let default_interval = self.inner.sample_interval_ms().map(|v| v as i64);
        let st = self.entities.entry(id).or_default();
        if let Some(last) = st.last_ms
            && sample.timestamp_ms > last
        {
            st.interval_ms = Some(sample.timestamp_ms - last);
        }
        st.last_ms = Some(sample.timestamp_ms);
        st.seen += 1;

        // Statistics of the original values, before anything is bent.
        for (name, &v) in &sample.metrics {
            if v.is_finite() {
                st.stats.entry(name.clone()).or_default().push(v);
            }
        }

        if st.active.is_empty() {
            if st.cooldown > 0 {
                st.cooldown -= 1;
            } else if st.seen > self.config.warmup_samples {
                let interval = st.interval_ms.or(default_interval).unwrap_or(60_000).max(1);
                let p = (self.config.rate_per_entity_hour * interval as f64 / 3_600_000.0).min(1.0);
                let start = self.rng.random::<f64>() < p;
                if start {
                    let mut candidates: Vec<&String> = sample
                        .metrics
                        .keys()
                        .filter(|m| eligible(&self.config.metrics, m))
                        .collect();
                    if !candidates.is_empty() {
                        let k = self
                            .rng
                            .random_range(1..=self.config.max_metrics.min(candidates.len()));
                        // A partial Fisher-Yates shuffle: k distinct metrics.
                        for j in 0..k {
                            let pick = self.rng.random_range(j..candidates.len());
                            candidates.swap(j, pick);
                        }
                        let shape =
                            self.config.shapes[self.rng.random_range(0..self.config.shapes.len())];
                        let planned = match shape {
                            Shape::Spike => self.rng.random_range(1..=3),
                            _ => self
                                .rng
                                .random_range(self.config.min_len..=self.config.max_len),
                        };
                        for metric in candidates.into_iter().take(k) {
                            let sign = if self.rng.random::<bool>() { 1.0 } else { -1.0 };
                            let run = st.stats.get(metric).copied().unwrap_or_default();
                            let scale = run
                                .std()
                                .max(0.02 * run.mean.abs())
                                .max(self.config.scale_floor);
                            st.active.push(self.injections.len());
                            st.held.push(sample.metrics[metric]);
                            self.injections.push(Injection {
                                entity: sample.entity.reference(),
                                metric: metric.clone(),
                                shape,
                                amplitude: sign * self.config.magnitude * scale,
                                mean: run.mean,
                                samples: 0,
                                planned,
                                onset_ms: sample.timestamp_ms,
                                incident_ms: sample.timestamp_ms,
                                end_ms: sample.timestamp_ms,
                            });
                        }
                    }
                }
            }
        }

        for (slot, &k) in st.active.iter().enumerate() {
            let inj = &mut self.injections[k];
            let i = inj.samples;
            inj.samples += 1;
            // A metric absent from this sample: the span goes on without it.
            let Some(v) = sample.metrics.get_mut(&inj.metric) else {
                continue;
            };
            let a = inj.amplitude;
            *v = match inj.shape {
                Shape::Spike => *v + a,
                Shape::LevelShift => *v + a / 2.0,
                Shape::Drift => *v + a * (i + 1) as f64 / inj.planned as f64,
                Shape::VarianceBurst => *v + a.abs() / 2.0 * standard_normal(&mut self.rng),
                Shape::FlatLine => st.held[slot],
                Shape::CorrelationBreak => 2.0 * inj.mean - *v,
            };
            inj.end_ms = sample.timestamp_ms;
            if i <= inj.incident_step() {
                inj.incident_ms = sample.timestamp_ms;
            }
        }
        // The metrics of one anomaly share its span, so they end together.
        if let Some(&k) = st.active.first()
            && self.injections[k].samples >= self.injections[k].planned
        {
            st.active.clear();
            st.held.clear();
            st.cooldown = self.config.cooldown_samples;
        }
    }
}

/// Whether `metric` may be injected into: listed, or (no list) a gauge that is not a limit or
/// request.
fn eligible(listed: &[String], metric: &str) -> bool {
    if !listed.is_empty() {
        return listed.iter().any(|m| m == metric);
    }
    !metric.ends_with("_total") && !metric.contains("_limit_") && !metric.contains("_request_")
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl<S: Source> Source for Injector<S> {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, IngestError> {
        let Some(mut batch) = self.inner.next_batch(max)? else {
            return Ok(None);
        };
        for r in &mut batch {
            if let Record::Sample(s) = r {
                self.apply(s);
            }
        }
        Ok(Some(batch))
    }

    /// The inner source's labels, then one per injection so far.
    fn labels(&self) -> Vec<IncidentLabel> {
        let mut labels = self.inner.labels();
        labels.extend(
            self.injections
                .iter()
                .filter(|i| i.samples > 0)
                .map(Injection::label),
        );
        labels
    }

    fn describe(&self) -> String {
        format!(
            "{} with injected anomalies (seed {}, {}/entity-hour)",
            self.inner.describe(),
            self.config.seed,
            self.config.rate_per_entity_hour
        )
    }

    fn sample_interval_ms(&self) -> Option<u64> {
        self.inner.sample_interval_ms()
    }
}
