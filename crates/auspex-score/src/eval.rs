//! Event-wise evaluation of alerts against ground-truth incident labels: recall (incidents
//! alerted), precision (alerts that point at a real incident), lead time, false alerts per
//! entity-day. Point-wise metrics over scores belong to the training/evaluation commands.

use std::collections::{BTreeMap, HashMap};

use auspex_model::{Alert, AlertState, AnomalyKind, EntityId, IncidentLabel, TimestampMs};
use serde::{Deserialize, Serialize};

/// How alerts are matched to incidents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatchPolicy {
    /// An alert may start this long before the label's onset and still count (precursors
    /// often show before the injected fault's nominal onset is labelled).
    pub early_ms: i64,
    /// ... or this long after the label's end (late detections still count, with negative lead).
    pub late_ms: i64,
    /// Whether an alert of another kind on the right entity counts as a hit.
    pub any_kind: bool,
}

impl Default for MatchPolicy {
    fn default() -> Self {
        MatchPolicy {
            early_ms: 10 * 60_000,
            late_ms: 5 * 60_000,
            any_kind: false,
        }
    }
}

impl MatchPolicy {
    /// Whether alert `a` counts as a detection of incident `l` (the entity is checked by the
    /// caller).
    pub fn matches(&self, a: &Alert, l: &IncidentLabel) -> bool {
        (self.any_kind || a.kind == l.kind)
            && a.starts_at_ms >= l.onset_ms - self.early_ms
            && a.starts_at_ms <= l.end_ms + self.late_ms
    }
}

/// Figures for one anomaly kind (or all kinds together).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindReport {
    /// Labelled incidents.
    pub incidents: usize,
    /// Incidents with at least one matching alert.
    pub detected: usize,
    /// detected / incidents (None without incidents).
    pub recall: Option<f64>,
    /// Firing alerts (episodes).
    pub alerts: usize,
    /// Alerts that match an incident.
    pub true_alerts: usize,
    /// true_alerts / alerts (None without alerts).
    pub precision: Option<f64>,
    /// Median of incident_ms - first matching alert's start, in seconds, over detected
    /// incidents (negative: alerted after the incident began).
    pub median_lead_time_s: Option<f64>,
    /// Share of detected incidents alerted before the incident itself.
    pub predicted_before_incident: Option<f64>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventReport {
    pub overall: KindReport,
    pub by_kind: BTreeMap<AnomalyKind, KindReport>,
    /// Alerts that match no incident, per entity-day of observation.
    pub false_alerts_per_entity_day: Option<f64>,
    /// Root-cause incidents only (the injected faults, not where they spread).
    pub root_cause_recall: Option<f64>,
}

/// Evaluates firing alerts (resolved messages are ignored) against labels. `entity_days` is
/// the observed entity-time, for the false-alert rate.
pub fn evaluate(
    alerts: &[Alert],
    labels: &[IncidentLabel],
    policy: &MatchPolicy,
    entity_days: f64,
) -> EventReport {
    let firing: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .collect();
    let mut by_entity: HashMap<EntityId, Vec<&Alert>> = HashMap::new();
    for a in &firing {
        by_entity.entry(a.entity.id()).or_default().push(a);
    }
    let matches = |a: &Alert, l: &IncidentLabel| policy.matches(a, l);

    let mut per_kind: BTreeMap<AnomalyKind, (KindReport, Vec<f64>, usize)> = BTreeMap::new();
    let mut all_leads = Vec::new();
    let mut all_before = 0usize;
    let (mut roots, mut roots_hit) = (0usize, 0usize);
    for l in labels {
        let entry = per_kind.entry(l.kind).or_default();
        entry.0.incidents += 1;
        if l.root_cause {
            roots += 1;
        }
        let first: Option<TimestampMs> = by_entity
            .get(&l.entity.id())
            .into_iter()
            .flatten()
            .filter(|a| matches(a, l))
            .map(|a| a.starts_at_ms)
            .min();
        if let Some(start) = first {
            entry.0.detected += 1;
            let lead = (l.incident_ms - start) as f64 / 1000.0;
            entry.1.push(lead);
            all_leads.push(lead);
            if start < l.incident_ms {
                entry.2 += 1;
                all_before += 1;
            }
            if l.root_cause {
                roots_hit += 1;
            }
        }
    }

    let mut labels_by_entity: HashMap<EntityId, Vec<&IncidentLabel>> = HashMap::new();
    for l in labels {
        labels_by_entity.entry(l.entity.id()).or_default().push(l);
    }
    let mut false_alerts = 0usize;
    for a in &firing {
        let hit = labels_by_entity
            .get(&a.entity.id())
            .is_some_and(|ls| ls.iter().any(|l| matches(a, l)));
        let entry = per_kind.entry(a.kind).or_default();
        entry.0.alerts += 1;
        if hit {
            entry.0.true_alerts += 1;
        } else {
            false_alerts += 1;
        }
    }

    let mut report = EventReport::default();
    let mut overall = KindReport::default();
    for (kind, (mut r, mut leads, before)) in per_kind {
        finish(&mut r, &mut leads, before);
        overall.incidents += r.incidents;
        overall.detected += r.detected;
        overall.alerts += r.alerts;
        overall.true_alerts += r.true_alerts;
        report.by_kind.insert(kind, r);
    }
    finish(&mut overall, &mut all_leads, all_before);
    report.overall = overall;
    report.false_alerts_per_entity_day =
        (entity_days > 0.0).then(|| false_alerts as f64 / entity_days);
    report.root_cause_recall = (roots > 0).then(|| roots_hit as f64 / roots as f64);
    report
}

fn finish(r: &mut KindReport, leads: &mut [f64], before: usize) {
    r.recall = (r.incidents > 0).then(|| r.detected as f64 / r.incidents as f64);
    r.precision = (r.alerts > 0).then(|| r.true_alerts as f64 / r.alerts as f64);
    r.median_lead_time_s = median(leads);
    r.predicted_before_incident = (r.detected > 0).then(|| before as f64 / r.detected as f64);
}

/// Median of a slice (sorts it in place); None when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Prediction;
    use auspex_model::EntityRef;

    fn label(pod: &str, kind: AnomalyKind, onset: i64, incident: i64) -> IncidentLabel {
        IncidentLabel {
            entity: EntityRef::pod("ns", pod),
            kind,
            fault: "test".into(),
            onset_ms: onset,
            incident_ms: incident,
            end_ms: incident + 60_000,
            root_cause: true,
        }
    }

    fn alert(pod: &str, kind: AnomalyKind, start: i64) -> Alert {
        Prediction::new(EntityRef::pod("ns", pod), kind, 0.9).into_alert(
            start,
            start,
            AlertState::Firing,
            "t",
        )
    }

    #[test]
    fn counts_hits_misses_and_lead_time() {
        use AnomalyKind::*;
        let labels = vec![
            label("a", MemoryExhaustion, 0, 600_000),
            label("b", CpuExhaustion, 0, 300_000),
            label("c", NetworkIssue, 0, 100_000),
        ];
        let alerts = vec![
            alert("a", MemoryExhaustion, 120_000), // 480 s ahead
            alert("a", MemoryExhaustion, 200_000), // a second alert for the same incident: true, not a new detection
            alert("b", CpuExhaustion, 360_000),    // 60 s late
            alert("c", CpuExhaustion, 50_000),     // wrong kind
            alert("d", NetworkIssue, 50_000),      // no incident
        ];
        let r = evaluate(&alerts, &labels, &MatchPolicy::default(), 2.0);
        assert_eq!(r.overall.incidents, 3);
        assert_eq!(r.overall.detected, 2);
        assert_eq!(r.overall.alerts, 5);
        assert_eq!(r.overall.true_alerts, 3);
        assert_eq!(r.by_kind[&MemoryExhaustion].median_lead_time_s, Some(480.0));
        assert_eq!(r.by_kind[&CpuExhaustion].median_lead_time_s, Some(-60.0));
        assert_eq!(r.overall.median_lead_time_s, Some(210.0));
        assert_eq!(r.overall.predicted_before_incident, Some(0.5));
        assert_eq!(r.false_alerts_per_entity_day, Some(1.0));

        let any = evaluate(
            &alerts,
            &labels,
            &MatchPolicy {
                any_kind: true,
                ..MatchPolicy::default()
            },
            2.0,
        );
        assert_eq!(any.overall.detected, 3);
    }

    #[test]
    fn alerts_outside_the_window_do_not_count() {
        let labels = vec![label("a", AnomalyKind::PodFailure, 3_600_000, 3_700_000)];
        let alerts = vec![alert("a", AnomalyKind::PodFailure, 0)];
        let r = evaluate(&alerts, &labels, &MatchPolicy::default(), 1.0);
        assert_eq!(r.overall.detected, 0);
        assert_eq!(r.overall.precision, Some(0.0));
    }
}
