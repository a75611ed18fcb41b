//! The alert lifecycle: turns a stream of per-tick predictions into alerts that fire once per
//! episode and resolve once, with hysteresis so a score hovering around the threshold does not
//! flap, and stable ids so a re-delivered alert is harmless.

use std::collections::HashMap;

use auspex_model::{Alert, AlertState, AnomalyKind, EntityId, Severity, TimestampMs};
use serde::{Deserialize, Serialize};

use crate::Prediction;

/// When an alert fires and resolves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertPolicy {
    /// Probability at or above which a tick counts towards firing (per kind: see `thresholds`).
    pub fire_threshold: f64,
    /// Per-kind override of `fire_threshold`.
    pub thresholds: HashMap<AnomalyKind, f64>,
    /// A firing alert resolves once the probability stays below `resolve_ratio * threshold`.
    pub resolve_ratio: f64,
    /// Consecutive ticks at or above the threshold before firing (1 = fire at once).
    pub fire_after_ticks: u32,
    /// Consecutive ticks below the resolve level before resolving.
    pub resolve_after_ticks: u32,
    /// A firing alert whose entity is no longer scored resolves after this long.
    pub stale_after_ms: i64,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            fire_threshold: 0.5,
            thresholds: HashMap::new(),
            resolve_ratio: 0.6,
            fire_after_ticks: 2,
            resolve_after_ticks: 8,
            stale_after_ms: 10 * 60_000,
        }
    }
}

impl AlertPolicy {
    pub fn threshold(&self, kind: AnomalyKind) -> f64 {
        self.thresholds
            .get(&kind)
            .copied()
            .unwrap_or(self.fire_threshold)
    }

    /// Checks every field; the error names the field and why.
    pub fn validate(&self) -> Result<(), String> {
        let in_unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v}: must be within [0, 1]"))
            }
        };
        in_unit("fire_threshold", self.fire_threshold)?;
        in_unit("resolve_ratio", self.resolve_ratio)?;
        for (k, v) in &self.thresholds {
            in_unit(&format!("thresholds.{k}"), *v)?;
        }
        if self.fire_after_ticks == 0 {
            return Err("fire_after_ticks = 0: must be at least 1".into());
        }
        if self.resolve_after_ticks == 0 {
            return Err("resolve_after_ticks = 0: must be at least 1".into());
        }
        if self.stale_after_ms <= 0 {
            return Err(format!(
                "stale_after_ms = {}: must be positive",
                self.stale_after_ms
            ));
        }
        Ok(())
    }
}

/// Severity from probability and time to incident: soon and likely is critical.
pub fn severity(probability: f64, time_to_incident_s: Option<f64>) -> Severity {
    let soon = time_to_incident_s.is_some_and(|t| t <= 300.0);
    let within_half_hour = time_to_incident_s.is_some_and(|t| t <= 1800.0);
    if probability >= 0.9 || (soon && probability >= 0.6) {
        Severity::Critical
    } else if probability >= 0.7 || within_half_hour {
        Severity::Warning
    } else {
        Severity::Info
    }
}

#[derive(Debug)]
struct Episode {
    /// Consecutive ticks at/above threshold (while pending) or below resolve level (while firing).
    streak: u32,
    /// Set once fired: the alert as last emitted.
    firing: Option<Alert>,
    /// Start of the pending streak, which becomes `starts_at_ms` when it fires.
    pending_since: TimestampMs,
    last_seen_ms: TimestampMs,
}

/// Tracks one episode per (entity, kind).
#[derive(Debug)]
pub struct AlertTracker {
    policy: AlertPolicy,
    model_version: String,
    episodes: HashMap<(EntityId, AnomalyKind), Episode>,
}

impl AlertTracker {
    pub fn new(policy: AlertPolicy, model_version: impl Into<String>) -> Self {
        AlertTracker {
            policy,
            model_version: model_version.into(),
            episodes: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &AlertPolicy {
        &self.policy
    }

    /// Number of alerts currently firing.
    pub fn firing(&self) -> usize {
        self.episodes
            .values()
            .filter(|e| e.firing.is_some())
            .count()
    }

    /// The alerts firing now, with their latest evidence.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.episodes.values().filter_map(|e| e.firing.as_ref())
    }

    /// Forgets an entity's episodes without resolving them (its partition moved to another
    /// instance, which takes the episodes up).
    pub fn forget(&mut self, id: &EntityId) {
        self.episodes.retain(|(e, _), _| e != id);
    }

    /// Applies `policy` from the next prediction on (a reloaded model's thresholds); episodes
    /// firing or pending stay.
    pub fn set_policy(&mut self, policy: AlertPolicy) {
        self.policy = policy;
    }

    /// Sets the version stamped on alerts from now on (a model was reloaded).
    pub fn set_model_version(&mut self, version: impl Into<String>) {
        self.model_version = version.into();
    }

    /// Feeds one prediction; returns an alert when the episode fires or resolves.
    pub fn observe(&mut self, now_ms: TimestampMs, p: Prediction) -> Option<Alert> {
        let threshold = self.policy.threshold(p.kind);
        let key = (p.entity.id(), p.kind);
        let high = p.probability >= threshold;
        let low = p.probability < threshold * self.policy.resolve_ratio;
        let ep = self.episodes.entry(key).or_insert(Episode {
            streak: 0,
            firing: None,
            pending_since: now_ms,
            last_seen_ms: now_ms,
        });
        ep.last_seen_ms = now_ms;
        match &mut ep.firing {
            None => {
                if !high {
                    ep.streak = 0;
                    return None;
                }
                if ep.streak == 0 {
                    ep.pending_since = now_ms;
                }
                ep.streak += 1;
                if ep.streak < self.policy.fire_after_ticks {
                    return None;
                }
                ep.streak = 0;
                let alert = p.into_alert(
                    now_ms,
                    ep.pending_since,
                    AlertState::Firing,
                    &self.model_version,
                );
                ep.firing = Some(alert.clone());
                Some(alert)
            }
            Some(alert) => {
                if !low {
                    ep.streak = 0;
                    // Keep the evidence current for the resolved message and HTTP views.
                    if p.probability >= alert.probability {
                        let starts = alert.starts_at_ms;
                        // The action recommended when the episode fired stays with it.
                        let action = alert.action.take();
                        *alert =
                            p.into_alert(now_ms, starts, AlertState::Firing, &self.model_version);
                        alert.action = action;
                    }
                    return None;
                }
                ep.streak += 1;
                if ep.streak < self.policy.resolve_after_ticks {
                    return None;
                }
                let mut resolved = ep.firing.take().expect("matched Some above");
                resolved.state = AlertState::Resolved;
                resolved.timestamp_ms = now_ms;
                resolved.probability = p.probability;
                ep.streak = 0;
                Some(resolved)
            }
        }
    }

    /// Attaches a recommended action to the firing episode of (`id`, `kind`), so that its
    /// later views (HTTP, the resolution) carry it too; no-op when it is not firing.
    pub fn set_action(
        &mut self,
        id: &EntityId,
        kind: AnomalyKind,
        action: Option<auspex_model::RecommendedAction>,
    ) {
        if let Some(a) = self
            .episodes
            .get_mut(&(id.clone(), kind))
            .and_then(|e| e.firing.as_mut())
        {
            a.action = action;
        }
    }

    /// Resolves firing alerts whose entity has not been scored for `stale_after_ms` (deleted
    /// pods, silent nodes) and forgets idle episodes.
    pub fn sweep(&mut self, now_ms: TimestampMs) -> Vec<Alert> {
        let stale = self.policy.stale_after_ms;
        let mut out = Vec::new();
        self.episodes.retain(|_, ep| {
            if now_ms - ep.last_seen_ms < stale {
                return true;
            }
            if let Some(mut a) = ep.firing.take() {
                a.state = AlertState::Resolved;
                a.timestamp_ms = now_ms;
                out.push(a);
            }
            false
        });
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auspex_model::EntityRef;

    fn pred(p: f64) -> Prediction {
        Prediction::new(EntityRef::pod("ns", "p"), AnomalyKind::CpuExhaustion, p)
    }

    #[test]
    fn fires_once_resolves_once_with_hysteresis() {
        let mut t = AlertTracker::new(
            AlertPolicy {
                fire_after_ticks: 2,
                resolve_after_ticks: 2,
                ..AlertPolicy::default()
            },
            "test",
        );
        let probs = [0.1, 0.6, 0.4, 0.6, 0.7, 0.8, 0.45, 0.6, 0.2, 0.29, 0.1, 0.1];
        let mut out = Vec::new();
        for (i, p) in probs.iter().enumerate() {
            if let Some(a) = t.observe(i as i64 * 1000, pred(*p)) {
                out.push((i, a));
            }
        }
        // 0.6 at tick 1 is interrupted; ticks 3-4 fire (starting at 3); 0.45 and 0.6 keep it
        // (0.45 is above 0.6 * 0.5 = 0.3); ticks 8-9 are below 0.3 and resolve it.
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].0, 4);
        assert_eq!(out[0].1.state, AlertState::Firing);
        assert_eq!(out[0].1.starts_at_ms, 3000);
        assert_eq!(out[1].0, 9);
        assert_eq!(out[1].1.state, AlertState::Resolved);
        assert_eq!(out[0].1.id, out[1].1.id, "one episode, one id");
    }

    #[test]
    fn stale_entities_resolve() {
        let mut t = AlertTracker::new(
            AlertPolicy {
                fire_after_ticks: 1,
                ..AlertPolicy::default()
            },
            "test",
        );
        assert!(t.observe(0, pred(0.9)).is_some());
        assert!(t.sweep(60_000).is_empty());
        let r = t.sweep(11 * 60_000);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].state, AlertState::Resolved);
        assert_eq!(t.firing(), 0);
    }

    #[test]
    fn severity_orders() {
        assert_eq!(severity(0.95, None), Severity::Critical);
        assert_eq!(severity(0.65, Some(120.0)), Severity::Critical);
        assert_eq!(severity(0.55, Some(900.0)), Severity::Warning);
        assert_eq!(severity(0.55, None), Severity::Info);
    }

    #[test]
    fn policy_validation_names_the_field() {
        let p = AlertPolicy {
            resolve_ratio: 1.5,
            ..AlertPolicy::default()
        };
        assert!(p.validate().unwrap_err().contains("resolve_ratio"));
    }
}
