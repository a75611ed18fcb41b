//! Alert thresholds chosen on validation data (never on test labels).
//!
//! Rows alert when `score >= threshold`. Three rules:
//! - [`threshold_for_precision`]: the lowest threshold whose precision reaches a target with
//!   at least a minimum number of alerts (operating point for paging);
//! - [`threshold_for_alert_budget`]: the lowest threshold keeping false alert *episodes* per
//!   entity-day under a budget (operating point for noisy, label-poor fleets);
//! - [`threshold_for_max_f1`]: the best-F1 threshold, for reporting only — it is the
//!   optimistic figure the literature quotes, not an operating point.
//!
//! They do not calibrate; choose thresholds on calibrated scores if they are to be shown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::{check_finite, check_labels};
use crate::error::{Error, Result};

/// A threshold and how it performs on the rows it was chosen from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdChoice {
    /// Alert when `score >= threshold`.
    pub threshold: f64,
    /// Alerting rows.
    pub alerts: usize,
    /// Alerting rows that are positive.
    pub true_positives: usize,
    /// `true_positives / alerts`.
    pub precision: f64,
    /// `true_positives / positives`.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// Operating points at every distinct score, from the highest threshold down:
/// `(threshold, alerts, true positives)`.
fn sweep(scores: &[f64], labels: &[u8]) -> Vec<(f64, usize, usize)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out = Vec::new();
    let (mut alerts, mut tp) = (0, 0);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            alerts += 1;
            tp += usize::from(labels[idx[i]]);
            i += 1;
        }
        out.push((s, alerts, tp));
    }
    out
}

fn choice(threshold: f64, alerts: usize, tp: usize, positives: usize) -> ThresholdChoice {
    let precision = if alerts > 0 {
        tp as f64 / alerts as f64
    } else {
        0.0
    };
    let recall = if positives > 0 {
        tp as f64 / positives as f64
    } else {
        0.0
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    ThresholdChoice {
        threshold,
        alerts,
        true_positives: tp,
        precision,
        recall,
        f1,
    }
}

fn validate(scores: &[f64], labels: &[u8]) -> Result<usize> {
    check_labels(labels, scores.len())?;
    check_finite(scores, labels.len(), "threshold scores")?;
    Ok(labels.iter().filter(|y| **y == 1).count())
}

/// The lowest threshold at which precision is at least `target` and at least `min_alerts`
/// rows alert; `None` if no threshold qualifies. Precision is not monotone in the threshold,
/// so this scans every distinct score.
pub fn threshold_for_precision(
    scores: &[f64],
    labels: &[u8],
    target: f64,
    min_alerts: usize,
) -> Result<Option<ThresholdChoice>> {
    let positives = validate(scores, labels)?;
    if !(0.0..=1.0).contains(&target) {
        return Err(Error::InvalidParameter {
            name: "target",
            reason: format!("precision target must be in [0, 1], got {target}"),
        });
    }
    Ok(sweep(scores, labels)
        .into_iter()
        .rfind(|&(_, alerts, tp)| {
            alerts >= min_alerts.max(1) && tp as f64 >= target * alerts as f64
        })
        .map(|(t, a, tp)| choice(t, a, tp, positives)))
}

/// The threshold with the highest F1 on these rows (for reporting only); `None` without
/// positives.
pub fn threshold_for_max_f1(scores: &[f64], labels: &[u8]) -> Result<Option<ThresholdChoice>> {
    let positives = validate(scores, labels)?;
    if positives == 0 {
        return Ok(None);
    }
    Ok(sweep(scores, labels)
        .into_iter()
        .map(|(t, a, tp)| choice(t, a, tp, positives))
        .max_by(|a, b| {
            a.f1.total_cmp(&b.f1)
                .then(b.threshold.total_cmp(&a.threshold))
        }))
}

/// How false alerts are counted for [`threshold_for_alert_budget`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertBudget {
    /// Largest acceptable false alert episodes per entity-day.
    pub max_false_per_entity_day: f64,
    /// Alerting rows of one entity no more than this many seconds apart form one episode
    /// (one page). 0 counts every alerting row.
    pub merge_gap_secs: i64,
}

impl Default for AlertBudget {
    fn default() -> Self {
        Self {
            max_false_per_entity_day: 1.0,
            merge_gap_secs: 300,
        }
    }
}

/// The threshold chosen for an alert budget, and what it does on the rows it was chosen from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetChoice {
    /// Alert when `score >= threshold`.
    pub threshold: f64,
    /// Episodes with no positive row.
    pub false_episodes: usize,
    /// Episodes with at least one positive row.
    pub true_episodes: usize,
    /// Observed entity-days (each entity's time span plus one median sampling step).
    pub entity_days: f64,
    /// `false_episodes / entity_days`.
    pub false_per_entity_day: f64,
    /// Fraction of positive rows that alert.
    pub row_recall: f64,
}

/// Each entity's rows in time order, and the observed entity-days.
struct Episodes<'a> {
    scores: &'a [f64],
    labels: &'a [u8],
    timestamps: &'a [i64],
    series: Vec<Vec<usize>>,
    entity_days: f64,
    positives: usize,
}

impl<'a> Episodes<'a> {
    fn new<E: Ord>(
        scores: &'a [f64],
        labels: &'a [u8],
        timestamps: &'a [i64],
        entities: &[E],
    ) -> Result<Self> {
        let positives = validate(scores, labels)?;
        for (what, len) in [
            ("timestamps", timestamps.len()),
            ("entities", entities.len()),
        ] {
            if len != scores.len() {
                return Err(Error::Shape {
                    what,
                    expected: scores.len(),
                    found: len,
                });
            }
        }
        if scores.is_empty() {
            return Err(Error::Empty("alert budget"));
        }
        let mut by_entity: BTreeMap<&E, Vec<usize>> = BTreeMap::new();
        for (i, e) in entities.iter().enumerate() {
            by_entity.entry(e).or_default().push(i);
        }
        let mut series: Vec<Vec<usize>> = by_entity.into_values().collect();
        let mut entity_secs = 0.0;
        for rows in &mut series {
            rows.sort_by_key(|&i| timestamps[i]);
            let mut steps: Vec<i64> = rows
                .windows(2)
                .map(|w| timestamps[w[1]] - timestamps[w[0]])
                .filter(|d| *d > 0)
                .collect();
            steps.sort_unstable();
            // One sampling step per entity, so a single-row entity still counts some time.
            let step = steps.get(steps.len() / 2).copied().unwrap_or(60);
            let span = timestamps[rows[rows.len() - 1]] - timestamps[rows[0]];
            entity_secs += (span + step) as f64;
        }
        Ok(Self {
            scores,
            labels,
            timestamps,
            series,
            entity_days: entity_secs / 86_400.0,
            positives,
        })
    }

    fn evaluate(&self, t: f64, merge_gap_secs: i64) -> BudgetChoice {
        let (ts, labels) = (self.timestamps, self.labels);
        let (mut false_ep, mut true_ep, mut tp_rows) = (0, 0, 0);
        for rows in &self.series {
            // (last alerting time, episode has a positive row)
            let mut open: Option<(i64, bool)> = None;
            for &i in rows {
                if self.scores[i] < t {
                    continue;
                }
                let pos = labels[i] == 1;
                tp_rows += usize::from(pos);
                open = match open {
                    Some((last, any)) if ts[i] - last <= merge_gap_secs => {
                        Some((ts[i], any || pos))
                    }
                    Some((_, any)) => {
                        if any {
                            true_ep += 1
                        } else {
                            false_ep += 1
                        }
                        Some((ts[i], pos))
                    }
                    None => Some((ts[i], pos)),
                };
            }
            match open {
                Some((_, true)) => true_ep += 1,
                Some((_, false)) => false_ep += 1,
                None => {}
            }
        }
        BudgetChoice {
            threshold: t,
            false_episodes: false_ep,
            true_episodes: true_ep,
            entity_days: self.entity_days,
            false_per_entity_day: false_ep as f64 / self.entity_days,
            row_recall: if self.positives > 0 {
                tp_rows as f64 / self.positives as f64
            } else {
                0.0
            },
        }
    }
}

/// Alert episodes at a given threshold: how a threshold chosen elsewhere does on these rows
/// (e.g. the test period). Episodes are defined as in [`threshold_for_alert_budget`].
pub fn alert_episodes_at<E: Ord>(
    scores: &[f64],
    labels: &[u8],
    timestamps: &[i64],
    entities: &[E],
    threshold: f64,
    merge_gap_secs: i64,
) -> Result<BudgetChoice> {
    Ok(Episodes::new(scores, labels, timestamps, entities)?.evaluate(threshold, merge_gap_secs))
}

/// The lowest threshold at which false alert episodes per entity-day stay within the budget.
///
/// An episode is a run of one entity's alerting rows, consecutive in time and at most
/// `merge_gap_secs` apart; it is false when none of its rows is positive. Entity-days are each
/// entity's observed span plus one median sampling step. Lowering the threshold can merge
/// episodes, so the count is not strictly monotone: the search bisects over the distinct
/// scores for the boundary (exact when the count is monotone) and the returned choice is
/// always evaluated, so it is always within budget. Returns `None` when even the highest
/// score breaks the budget. `timestamps` are seconds; `entities` are any ordered ids.
pub fn threshold_for_alert_budget<E: Ord>(
    scores: &[f64],
    labels: &[u8],
    timestamps: &[i64],
    entities: &[E],
    budget: &AlertBudget,
) -> Result<Option<BudgetChoice>> {
    let max_ok =
        budget.max_false_per_entity_day.is_finite() && budget.max_false_per_entity_day >= 0.0;
    if !max_ok || budget.merge_gap_secs < 0 {
        return Err(Error::InvalidParameter {
            name: "budget",
            reason: "max_false_per_entity_day and merge_gap_secs must be >= 0".into(),
        });
    }
    let episodes = Episodes::new(scores, labels, timestamps, entities)?;
    let within = |t: f64| {
        episodes
            .evaluate(t, budget.merge_gap_secs)
            .false_per_entity_day
            <= budget.max_false_per_entity_day
    };
    let mut distinct: Vec<f64> = scores.to_vec();
    distinct.sort_by(|a, b| b.total_cmp(a));
    distinct.dedup();
    if !within(distinct[0]) {
        return Ok(None);
    }
    // Invariant: distinct[lo] is within budget; distinct[hi] is over it (or past the end).
    let (mut lo, mut hi) = (0usize, distinct.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if within(distinct[mid]) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(Some(episodes.evaluate(distinct[lo], budget.merge_gap_secs)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn noisy_scores(n: usize, seed: u64) -> (Vec<f64>, Vec<u8>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut s = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let pos = rng.random::<f64>() < 0.1;
            y.push(u8::from(pos));
            s.push(rng.random::<f64>() + if pos { 0.6 } else { 0.0 });
        }
        (s, y)
    }

    #[test]
    fn precision_threshold_achieves_its_target_on_its_data() {
        let (s, y) = noisy_scores(5000, 3);
        for target in [0.5, 0.7, 0.9] {
            let c = threshold_for_precision(&s, &y, target, 20)
                .unwrap()
                .unwrap();
            // Recompute independently.
            let alerts: Vec<usize> = (0..s.len()).filter(|&i| s[i] >= c.threshold).collect();
            let tp = alerts.iter().filter(|&&i| y[i] == 1).count();
            let precision = tp as f64 / alerts.len() as f64;
            println!(
                "target {target}: threshold {:.4} precision {precision:.3} recall {:.3} alerts {}",
                c.threshold,
                c.recall,
                alerts.len()
            );
            assert!(precision >= target, "{precision} < {target}");
            assert!(alerts.len() >= 20);
            assert_eq!(alerts.len(), c.alerts);
            // Lowest: the next lower distinct score misses the target or the support.
            let lower = s
                .iter()
                .copied()
                .filter(|v| *v < c.threshold)
                .fold(f64::MIN, f64::max);
            let a2: Vec<usize> = (0..s.len()).filter(|&i| s[i] >= lower).collect();
            let p2 = a2.iter().filter(|&&i| y[i] == 1).count() as f64 / a2.len() as f64;
            assert!(p2 < target);
        }
        assert!(
            threshold_for_precision(&s, &y, 1.0, 10_000)
                .unwrap()
                .is_none()
        );
        let f1 = threshold_for_max_f1(&s, &y).unwrap().unwrap();
        assert!(f1.f1 > 0.5, "{f1:?}");
    }

    #[test]
    fn alert_budget_keeps_false_episodes_under_budget() {
        // 20 entities × 2 days at one-minute steps; positives in a few bursts.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut s, mut y, mut t, mut e) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ent in 0..20u32 {
            let burst = rng.random_range(0..2800i64);
            for m in 0..2880i64 {
                let pos = (burst..burst + 30).contains(&m);
                y.push(u8::from(pos));
                s.push(rng.random::<f64>() + if pos { 0.5 } else { 0.0 });
                t.push(m * 60);
                e.push(format!("pod-{ent}"));
            }
        }
        let budget = AlertBudget {
            max_false_per_entity_day: 2.0,
            merge_gap_secs: 300,
        };
        let c = threshold_for_alert_budget(&s, &y, &t, &e, &budget)
            .unwrap()
            .unwrap();
        println!("budget choice {c:?}");
        assert!((c.entity_days - 40.0).abs() < 0.01);
        assert!(c.false_per_entity_day <= 2.0);
        assert!(c.row_recall > 0.3, "{c:?}");
        // Independent episode count at the chosen threshold, and the next lower score breaks
        // the budget.
        let mut false_ep = 0;
        for ent in 0..20usize {
            let rows = ent * 2880..(ent + 1) * 2880;
            let mut last: Option<(i64, bool)> = None;
            for i in rows {
                if s[i] >= c.threshold {
                    match last {
                        Some((lt, any)) if t[i] - lt <= 300 => {
                            last = Some((t[i], any || y[i] == 1))
                        }
                        Some((_, any)) => {
                            false_ep += usize::from(!any);
                            last = Some((t[i], y[i] == 1));
                        }
                        None => last = Some((t[i], y[i] == 1)),
                    }
                }
            }
            false_ep += usize::from(matches!(last, Some((_, false))));
        }
        assert_eq!(false_ep, c.false_episodes);
        let lower = s
            .iter()
            .copied()
            .filter(|v| *v < c.threshold)
            .fold(f64::MIN, f64::max);
        let at_lower = alert_episodes_at(&s, &y, &t, &e, lower, 300).unwrap();
        assert!(at_lower.false_per_entity_day > 2.0, "{at_lower:?}");
        let tighter = AlertBudget {
            max_false_per_entity_day: 0.0,
            ..budget
        };
        let strict = threshold_for_alert_budget(&s, &y, &t, &e, &tighter)
            .unwrap()
            .unwrap();
        assert_eq!(strict.false_episodes, 0);
        assert!(strict.threshold >= c.threshold);
    }
}
