//! Evaluation without point-adjust, at a threshold the caller chose without test labels.
//!
//! Conventions:
//! - A point alerts when `score >= threshold`; a NaN score never alerts and ranks last.
//! - A ratio whose denominator is zero is 0 (precision with no alert, recall with no positive);
//!   the counts beside it say which case it was.
//! - Point-wise: every labelled point counts once (micro-averaged over entities for
//!   `overall`).
//! - Event-wise: anomaly segments are runs of positive labels, alert segments runs of alerting
//!   points. An anomaly is detected when some point from `early_ms` before its start to its end
//!   alerts (an early alert is a prediction, with a negative delay); an alert segment is true
//!   when it touches such a span of some anomaly, false otherwise. Event precision is true alert
//!   segments over alert segments, event recall detected anomalies over anomalies.
//! - Delay: from an anomaly's first point to its first alerting point, in steps (points) and
//!   seconds; negative when the alert came early. Means are over detected anomalies.
//! - False alerts per entity-day: false alert segments over the observed time (first to last
//!   point plus one step) in days.
//! - Best F1 over all thresholds is an upper bound only, never a result: it reads the labels.
//! - PR-AUC is average precision (the step-wise sum `Σ (Rₙ − Rₙ₋₁) Pₙ` over distinct
//!   thresholds); VUS-PR is TSB-AD's volume under the range-based PR surface ([`vus_pr`]).

use std::collections::{BTreeMap, HashMap};

use auspex_model::{AnomalyKind, IncidentLabel, TimestampMs};
use serde::{Deserialize, Serialize};

use crate::{Dataset, TrainError};

const DAY_MS: f64 = 86_400_000.0;

/// One entity's scores and labels, in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Entity name ([`auspex_model::EntityId::as_str`] to match incident labels).
    pub name: String,
    pub timestamps_ms: Vec<TimestampMs>,
    pub scores: Vec<f64>,
    pub labels: Vec<bool>,
}

impl Series {
    /// One series per entity of a data set, from per-row `scores`; labels are the point labels
    /// (`kind` None) or the horizon labels of `kind`.
    pub fn from_dataset(
        ds: &Dataset,
        scores: &[f64],
        kind: Option<AnomalyKind>,
    ) -> Result<Vec<Series>, TrainError> {
        if scores.len() != ds.len() {
            return Err(TrainError::Input(format!(
                "{} scores for {} rows",
                scores.len(),
                ds.len()
            )));
        }
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); ds.entities.len()];
        for i in 0..ds.len() {
            rows[ds.entity[i] as usize].push(i);
        }
        Ok(rows
            .into_iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(e, mut r)| {
                r.sort_by_key(|&i| ds.label_ms[i]);
                Series {
                    name: ds.entities[e].clone(),
                    timestamps_ms: r.iter().map(|&i| ds.label_ms[i]).collect(),
                    scores: r.iter().map(|&i| scores[i]).collect(),
                    labels: r
                        .iter()
                        .map(|&i| match kind {
                            None => ds.point[i] != 0,
                            Some(k) => ds.label(i, k),
                        })
                        .collect(),
                }
            })
            .collect())
    }

    fn check(&self) -> Result<(), TrainError> {
        let n = self.timestamps_ms.len();
        if self.scores.len() != n || self.labels.len() != n {
            return Err(TrainError::Input(format!(
                "series {}: {} timestamps, {} scores, {} labels",
                self.name,
                n,
                self.scores.len(),
                self.labels.len()
            )));
        }
        if let Some(i) = self.timestamps_ms.windows(2).position(|w| w[1] < w[0]) {
            return Err(TrainError::Input(format!(
                "series {}: timestamps go back at point {}",
                self.name,
                i + 1
            )));
        }
        Ok(())
    }
}

/// What [`evaluate`] needs besides the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Alert threshold (chosen on training or validation data, never on the test labels).
    pub threshold: f64,
    /// Alerts up to this long before an anomaly starts count as detecting it (lead time).
    pub early_ms: i64,
    /// Step between points, for observed days; absent: each series' median step.
    pub step_ms: Option<i64>,
    /// Largest buffer window of VUS-PR, in points; 0 skips VUS-PR.
    pub vus_window: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            threshold: 0.5,
            early_ms: 0,
            step_ms: None,
            vus_window: 0,
        }
    }
}

/// Point-wise precision, recall and F1 with the confusion counts.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PointwiseMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tn: u64,
}

impl PointwiseMetrics {
    fn from_counts(tp: u64, fp: u64, fn_: u64, tn: u64) -> Self {
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, tp + fn_);
        PointwiseMetrics {
            precision,
            recall,
            f1: f1(precision, recall),
            tp,
            fp,
            fn_,
            tn,
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Point-wise metrics of alerting at `score >= threshold`.
pub fn pointwise(scores: &[f64], labels: &[bool], threshold: f64) -> PointwiseMetrics {
    let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
    for (&s, &y) in scores.iter().zip(labels) {
        match (s >= threshold, y) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    PointwiseMetrics::from_counts(tp, fp, fn_, tn)
}

/// One point of a precision-recall curve: alerting at `score >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrPoint {
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
}

/// Ranks for the curves: NaN last.
fn key(s: f64) -> f64 {
    if s.is_nan() { f64::NEG_INFINITY } else { s }
}

/// The precision-recall curve: one point per distinct score, highest threshold first (tied
/// scores enter together). Empty for empty input.
pub fn pr_curve(scores: &[f64], labels: &[bool]) -> Vec<PrPoint> {
    let n = scores.len().min(labels.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])));
    let positives = labels[..n].iter().filter(|&&y| y).count() as u64;
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut i = 0;
    while i < n {
        let s = key(scores[order[i]]);
        while i < n && key(scores[order[i]]) == s {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push(PrPoint {
            threshold: s,
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, positives),
        });
    }
    out
}

/// Average precision (PR-AUC): `Σ (Rₙ − Rₙ₋₁) Pₙ` over distinct thresholds; 0 without
/// positives.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> f64 {
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    for p in pr_curve(scores, labels) {
        ap += (p.recall - prev_recall) * p.precision;
        prev_recall = p.recall;
    }
    ap
}

/// The best F1 over all thresholds: an upper bound a live service cannot reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestF1 {
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    pub threshold: f64,
}

/// Best F1 over the thresholds of [`pr_curve`] (the highest such threshold on ties); F1 0 at
/// threshold +∞ when no threshold finds anything.
pub fn best_f1(scores: &[f64], labels: &[bool]) -> BestF1 {
    let mut best = BestF1 {
        f1: 0.0,
        precision: 0.0,
        recall: 0.0,
        threshold: f64::INFINITY,
    };
    for p in pr_curve(scores, labels) {
        let f = f1(p.precision, p.recall);
        if f > best.f1 {
            best = BestF1 {
                f1: f,
                precision: p.precision,
                recall: p.recall,
                threshold: p.threshold,
            };
        }
    }
    best
}

/// A run of consecutive points, `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub start: usize,
    pub end: usize,
}

/// The runs of `true` in `flags`.
pub fn segments(flags: &[bool]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &f) in flags.iter().enumerate() {
        match (f, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(Segment {
                    start: s,
                    end: i - 1,
                });
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(Segment {
            start: s,
            end: flags.len() - 1,
        });
    }
    out
}

/// Event-wise counts and ratios.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EventMetrics {
    pub precision: f64,
    pub recall: f64,
    /// Anomaly segments.
    pub anomalies: u64,
    /// Anomaly segments with an alert in them (or up to `early_ms` before).
    pub detected: u64,
    /// Alert segments.
    pub alerts: u64,
    /// Alert segments touching an anomaly (or its early span).
    pub true_alerts: u64,
    /// Alert segments touching none.
    pub false_alerts: u64,
}

impl EventMetrics {
    fn finish(mut self) -> Self {
        self.precision = ratio(self.true_alerts, self.alerts);
        self.recall = ratio(self.detected, self.anomalies);
        self
    }

    fn add(&mut self, o: &EventMetrics) {
        self.anomalies += o.anomalies;
        self.detected += o.detected;
        self.alerts += o.alerts;
        self.true_alerts += o.true_alerts;
        self.false_alerts += o.false_alerts;
    }
}

/// The delay of one detected anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    pub steps: i64,
    pub ms: i64,
}

/// Event-wise metrics of one series, and the delay of each anomaly segment (None: missed).
/// `alerts[i]` says whether point `i` alerts; `timestamps_ms` are ascending.
pub fn event_metrics(
    timestamps_ms: &[TimestampMs],
    labels: &[bool],
    alerts: &[bool],
    early_ms: i64,
) -> (EventMetrics, Vec<Option<Delay>>) {
    let anomalies = segments(labels);
    let alert_segs = segments(alerts);
    let mut covered = vec![false; labels.len()];
    let mut delays = Vec::with_capacity(anomalies.len());
    let mut m = EventMetrics {
        anomalies: anomalies.len() as u64,
        alerts: alert_segs.len() as u64,
        ..EventMetrics::default()
    };
    for seg in &anomalies {
        let from_ms = timestamps_ms[seg.start].saturating_sub(early_ms);
        let from = timestamps_ms
            .partition_point(|&t| t < from_ms)
            .min(seg.start);
        covered[from..=seg.end].fill(true);
        let first = (from..=seg.end).find(|&i| alerts[i]);
        if first.is_some() {
            m.detected += 1;
        }
        delays.push(first.map(|i| Delay {
            steps: i as i64 - seg.start as i64,
            ms: timestamps_ms[i] - timestamps_ms[seg.start],
        }));
    }
    for seg in &alert_segs {
        if covered[seg.start..=seg.end].iter().any(|&c| c) {
            m.true_alerts += 1;
        } else {
            m.false_alerts += 1;
        }
    }
    (m.finish(), delays)
}

/// Metrics of one entity, or of all pooled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Points evaluated.
    pub points: u64,
    pub pointwise: PointwiseMetrics,
    pub event: EventMetrics,
    /// Mean delay over detected anomalies, in points (None when none was detected).
    pub mean_delay_steps: Option<f64>,
    pub mean_delay_seconds: Option<f64>,
    pub median_delay_seconds: Option<f64>,
    /// Observed time in days.
    pub days: f64,
    /// False alert segments per day of observed time (None when no time was observed).
    pub false_alerts_per_day: Option<f64>,
    /// Average precision.
    pub pr_auc: f64,
    /// Best F1 over all thresholds: an upper bound, not a result.
    pub best_f1_upper_bound: BestF1,
    /// VUS-PR (mean over entities with anomalies for `overall`); None when skipped or no
    /// anomaly.
    pub vus_pr: Option<f64>,
}

/// The bring-your-own evaluation report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub threshold: f64,
    pub early_ms: i64,
    pub overall: Summary,
    pub per_entity: BTreeMap<String, Summary>,
}

impl Report {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }
}

/// Evaluates each series at the config's threshold, and all of them pooled.
pub fn evaluate(series: &[Series], config: &EvalConfig) -> Result<Report, TrainError> {
    let mut names = HashMap::new();
    for s in series {
        s.check()?;
        if names.insert(s.name.as_str(), ()).is_some() {
            return Err(TrainError::Input(format!(
                "series {} appears twice",
                s.name
            )));
        }
    }
    let mut per_entity = BTreeMap::new();
    let (mut all_scores, mut all_labels) = (Vec::new(), Vec::new());
    let mut events = EventMetrics::default();
    let mut delays = Vec::new();
    let mut days = 0.0;
    let mut vus = Vec::new();
    for s in series {
        let (summary, d) = summarise(
            &s.timestamps_ms,
            &s.scores,
            &s.labels,
            config,
            series_days(&s.timestamps_ms, config.step_ms),
        );
        all_scores.extend_from_slice(&s.scores);
        all_labels.extend_from_slice(&s.labels);
        events.add(&summary.event);
        delays.extend(d);
        days += summary.days;
        vus.extend(summary.vus_pr);
        per_entity.insert(s.name.clone(), summary);
    }
    let p = pointwise(&all_scores, &all_labels, config.threshold);
    let overall = Summary {
        points: all_scores.len() as u64,
        pointwise: p,
        event: events.finish(),
        mean_delay_steps: mean(delays.iter().map(|d| d.steps as f64)),
        mean_delay_seconds: mean(delays.iter().map(|d| d.ms as f64 / 1000.0)),
        median_delay_seconds: median(delays.iter().map(|d| d.ms as f64 / 1000.0)),
        days,
        false_alerts_per_day: (days > 0.0).then(|| events.false_alerts as f64 / days),
        pr_auc: average_precision(&all_scores, &all_labels),
        best_f1_upper_bound: best_f1(&all_scores, &all_labels),
        vus_pr: mean(vus.iter().copied()),
    };
    Ok(Report {
        threshold: config.threshold,
        early_ms: config.early_ms,
        overall,
        per_entity,
    })
}

fn summarise(
    ts: &[TimestampMs],
    scores: &[f64],
    labels: &[bool],
    config: &EvalConfig,
    days: f64,
) -> (Summary, Vec<Delay>) {
    let alerts: Vec<bool> = scores.iter().map(|&s| s >= config.threshold).collect();
    let (event, delays) = event_metrics(ts, labels, &alerts, config.early_ms);
    let delays: Vec<Delay> = delays.into_iter().flatten().collect();
    let summary = Summary {
        points: scores.len() as u64,
        pointwise: pointwise(scores, labels, config.threshold),
        event,
        mean_delay_steps: mean(delays.iter().map(|d| d.steps as f64)),
        mean_delay_seconds: mean(delays.iter().map(|d| d.ms as f64 / 1000.0)),
        median_delay_seconds: median(delays.iter().map(|d| d.ms as f64 / 1000.0)),
        days,
        false_alerts_per_day: (days > 0.0).then(|| event.false_alerts as f64 / days),
        pr_auc: average_precision(scores, labels),
        best_f1_upper_bound: best_f1(scores, labels),
        vus_pr: (config.vus_window > 0)
            .then(|| vus_pr(scores, labels, config.vus_window))
            .flatten(),
    };
    (summary, delays)
}

/// Observed days: first to last point plus one step.
fn series_days(ts: &[TimestampMs], step_ms: Option<i64>) -> f64 {
    let (Some(&first), Some(&last)) = (ts.first(), ts.last()) else {
        return 0.0;
    };
    let step = step_ms.unwrap_or_else(|| {
        let mut d: Vec<i64> = ts
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|&d| d > 0)
            .collect();
        d.sort_unstable();
        d.get(d.len() / 2).copied().unwrap_or(0)
    });
    (last - first + step) as f64 / DAY_MS
}

fn mean(it: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for v in it {
        s += v;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

fn median(it: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = it.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// How early (or late) each incident was first alerted, for lead-time histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadTime {
    pub entity: String,
    pub kind: AnomalyKind,
    pub incident_ms: TimestampMs,
    /// First alert from `incident_ms - horizon_ms` to `end_ms`; None: missed.
    pub first_alert_ms: Option<TimestampMs>,
    /// `incident_ms - first_alert_ms` (positive: predicted ahead).
    pub lead_ms: Option<i64>,
}

/// The lead time of every incident whose entity has a series (matched by
/// [`auspex_model::EntityId::as_str`]).
pub fn lead_times(
    series: &[Series],
    incidents: &[IncidentLabel],
    threshold: f64,
    horizon_ms: i64,
) -> Vec<LeadTime> {
    let by_name: HashMap<&str, &Series> = series.iter().map(|s| (s.name.as_str(), s)).collect();
    incidents
        .iter()
        .filter_map(|l| {
            let name = l.entity.id();
            let s = by_name.get(name.as_str())?;
            let from = l.incident_ms.saturating_sub(horizon_ms);
            let first = s
                .timestamps_ms
                .iter()
                .zip(&s.scores)
                .find(|&(&t, &sc)| t >= from && t <= l.end_ms && sc >= threshold)
                .map(|(&t, _)| t);
            Some(LeadTime {
                entity: name.as_str().to_string(),
                kind: l.kind,
                incident_ms: l.incident_ms,
                first_alert_ms: first,
                lead_ms: first.map(|t| l.incident_ms - t),
            })
        })
        .collect()
}

/// Thresholds VUS-PR tries, at evenly spaced ranks of the sorted scores (TSB-AD's 250).
const VUS_THRESHOLDS: usize = 250;

/// VUS-PR (Paparrizos et al., VLDB 2022; TSB-AD's recommended measure): the mean over buffer
/// windows `w = 0..=max_window` of the range-based average precision, where labels get soft
/// ramps `sqrt(1 - d/w)` up to `w/2` points either side of each anomaly, recall is weighted by
/// the fraction of anomalies touched (existence), and precision counts the soft labels. A port
/// of TSB-AD's `RangeAUC_volume_opt` (250 thresholds at evenly spaced ranks). None without
/// anomalies.
pub fn vus_pr(scores: &[f64], labels: &[bool], max_window: usize) -> Option<f64> {
    let n = scores.len().min(labels.len());
    let seq = segments(&labels[..n]);
    if seq.is_empty() {
        return None;
    }
    let scores: Vec<f64> = scores[..n].iter().map(|&s| key(s)).collect();
    let mut sorted = scores.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let p = seq.iter().map(|s| s.end - s.start + 1).sum::<usize>() as f64;
    let outer = extend(&seq, max_window, n);
    let mut total = 0.0;
    let thresholds: Vec<f64> = (0..VUS_THRESHOLDS)
        .map(|i| {
            // np.linspace(0, n - 1, 250).astype(int)
            let at = if VUS_THRESHOLDS == 1 {
                0.0
            } else {
                i as f64 * (n - 1) as f64 / (VUS_THRESHOLDS - 1) as f64
            };
            sorted[at as usize]
        })
        .collect();
    let mut soft = vec![0.0; n];
    let mut lab = vec![0.0; n];
    let mut pred = vec![false; n];
    for w in 0..=max_window {
        soft_labels(&labels[..n], &seq, w, &mut soft);
        let ext = extend(&seq, w, n);
        let mut tpr = vec![0.0];
        let mut precision = vec![1.0];
        for &th in &thresholds {
            for (p, &s) in pred.iter_mut().zip(&scores) {
                *p = s >= th;
            }
            lab.copy_from_slice(&soft);
            let mut existence = 0usize;
            for seg in &ext {
                let mut hit = false;
                for i in seg.start..=seg.end {
                    lab[i] = soft[i] * f64::from(u8::from(pred[i]));
                    hit |= pred[i];
                }
                existence += usize::from(hit);
            }
            for seg in &seq {
                lab[seg.start..=seg.end].fill(1.0);
            }
            let (mut tp, mut n_labels) = (0.0, 0.0);
            for seg in &outer {
                for i in seg.start..=seg.end {
                    if pred[i] {
                        tp += lab[i];
                    }
                    n_labels += lab[i];
                }
            }
            let predicted = pred.iter().filter(|&&b| b).count() as f64;
            let p_new = (p + n_labels) / 2.0;
            let recall = (tp / p_new).min(1.0);
            tpr.push(recall * existence as f64 / ext.len() as f64);
            precision.push(if predicted > 0.0 { tp / predicted } else { 0.0 });
        }
        // AP = Σ (tpr[i+1] - tpr[i]) · precision[i+1], as TSB-AD's dot(width_PR, height_PR).
        let ap: f64 = (0..precision.len() - 1)
            .map(|i| (tpr[i + 1] - tpr[i]) * precision[i + 1])
            .sum();
        total += ap;
    }
    Some(total / (max_window + 1) as f64)
}

/// Labels with ramps `sqrt(1 - d / w)` over `w / 2` points either side of each segment, capped
/// at 1 (TSB-AD's `sequencing`).
// The ramps are distances from the segment ends: indices read better than iterators here.
#[allow(clippy::needless_range_loop)]
fn soft_labels(labels: &[bool], seq: &[Segment], w: usize, out: &mut [f64]) {
    for (o, &l) in out.iter_mut().zip(labels) {
        *o = f64::from(u8::from(l));
    }
    if w == 0 {
        return;
    }
    let n = labels.len();
    let half = w / 2;
    for s in seq {
        for x in s.end + 1..(s.end + half + 1).min(n) {
            out[x] += (1.0 - (x - s.end) as f64 / w as f64).sqrt();
        }
        for x in s.start.saturating_sub(half)..s.start {
            out[x] += (1.0 - (s.start - x) as f64 / w as f64).sqrt();
        }
    }
    for o in out.iter_mut() {
        *o = o.min(1.0);
    }
}

/// Segments widened by `w / 2` points either side, merged where they meet (TSB-AD's
/// `new_sequence`).
fn extend(seq: &[Segment], w: usize, n: usize) -> Vec<Segment> {
    let half = w / 2;
    let mut out = Vec::new();
    let mut a = seq[0].start.saturating_sub(half);
    for pair in seq.windows(2) {
        if pair[0].end + half < pair[1].start.saturating_sub(half) {
            out.push(Segment {
                start: a,
                end: (pair[0].end + half).min(n - 1),
            });
            a = pair[1].start.saturating_sub(half);
        }
    }
    let last = seq[seq.len() - 1];
    out.push(Segment {
        start: a,
        end: (last.end + half).min(n - 1),
    });
    out
}
