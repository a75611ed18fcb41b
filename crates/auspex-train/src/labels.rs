//! Row labels from [`IncidentLabel`]s: the horizon label per kind (what the prediction heads
//! learn), the point label (inside the anomaly, for point-wise detection metrics) and the time
//! to the next incident.
//!
//! Definitions, for a row of entity `e` at label time `t` (the start of the newest slot in its
//! window, i.e. the timestamp of the newest sample it has seen), horizon `H >= 0`:
//! - `y_k = 1` when some incident of kind `k` on `e` has `incident_ms - H <= t <= end_ms`: the
//!   incident happens within `H` from now, or is under way. With `H = 0` it is the incident
//!   phase itself; the precursor (`onset..incident`) counts only when it is within `H` of the
//!   incident.
//! - `point = 1` when some incident (any kind) on `e` has `onset_ms <= t <= end_ms`: the sample
//!   is inside the labelled anomaly, precursor included (SMD's `label` column, NAB's windows).
//! - time to incident of kind `k`: `incident_ms - t` in seconds for the nearest incident with
//!   `end_ms >= t`, `0` while one is under way, absent when none is ahead.
//!
//! Labels on `root_cause = false` entities (where a fault spread to) count like root causes:
//! the entity does suffer the incident.

use std::collections::HashMap;

use auspex_model::{AnomalyKind, EntityId, IncidentLabel, TimestampMs};

/// Number of kinds (model heads), [`AnomalyKind::ALL`] order.
pub const K: usize = AnomalyKind::ALL.len();

/// Incidents grouped by entity, for labelling many rows.
#[derive(Debug, Clone, Default)]
pub struct LabelIndex {
    by_entity: HashMap<EntityId, Vec<IncidentLabel>>,
}

impl LabelIndex {
    /// Indexes `labels` by entity (each entity's sorted by onset).
    pub fn new(labels: &[IncidentLabel]) -> Self {
        let mut by_entity: HashMap<EntityId, Vec<IncidentLabel>> = HashMap::new();
        for l in labels {
            by_entity.entry(l.entity.id()).or_default().push(l.clone());
        }
        for v in by_entity.values_mut() {
            v.sort_by_key(|l| (l.onset_ms, l.incident_ms, l.end_ms));
        }
        LabelIndex { by_entity }
    }

    /// The incidents of one entity, by onset.
    pub fn of(&self, entity: &EntityId) -> &[IncidentLabel] {
        self.by_entity.get(entity).map_or(&[], Vec::as_slice)
    }

    /// Horizon labels per kind at `t` (see the module docs).
    pub fn horizon(&self, entity: &EntityId, t: TimestampMs, horizon_ms: i64) -> [bool; K] {
        let mut y = [false; K];
        for l in self.of(entity) {
            if l.incident_ms.saturating_sub(horizon_ms) <= t && t <= l.end_ms {
                y[l.kind.index()] = true;
            }
        }
        y
    }

    /// Whether `t` is inside an incident of `entity`, precursor included.
    pub fn inside(&self, entity: &EntityId, t: TimestampMs) -> bool {
        self.of(entity)
            .iter()
            .any(|l| l.onset_ms <= t && t <= l.end_ms)
    }

    /// Seconds until the next incident of each kind (`0` while one is under way).
    pub fn time_to_incident(&self, entity: &EntityId, t: TimestampMs) -> [Option<f64>; K] {
        let mut out = [None; K];
        for l in self.of(entity) {
            if l.end_ms < t {
                continue;
            }
            let s = (l.incident_ms - t).max(0) as f64 / 1000.0;
            let slot = &mut out[l.kind.index()];
            *slot = Some(slot.map_or(s, |o: f64| o.min(s)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auspex_model::EntityRef;

    fn label(kind: AnomalyKind, onset: i64, incident: i64, end: i64) -> IncidentLabel {
        IncidentLabel {
            entity: EntityRef::pod("ns", "a"),
            kind,
            fault: "test".into(),
            onset_ms: onset,
            incident_ms: incident,
            end_ms: end,
            root_cause: true,
        }
    }

    #[test]
    fn horizon_inside_and_time_to_incident() {
        let idx = LabelIndex::new(&[label(AnomalyKind::MemoryExhaustion, 100, 200, 300)]);
        let e = EntityRef::pod("ns", "a").id();
        let m = AnomalyKind::MemoryExhaustion.index();
        // Horizon 50: positive from 150 through 300.
        assert!(!idx.horizon(&e, 149, 50)[m]);
        assert!(idx.horizon(&e, 150, 50)[m]);
        assert!(idx.horizon(&e, 300, 50)[m]);
        assert!(!idx.horizon(&e, 301, 50)[m]);
        assert_eq!(idx.horizon(&e, 250, 50).iter().filter(|&&b| b).count(), 1);
        // Point label covers the precursor.
        assert!(!idx.inside(&e, 99));
        assert!(idx.inside(&e, 100));
        assert!(idx.inside(&e, 300));
        assert_eq!(idx.time_to_incident(&e, 0)[m], Some(0.2));
        assert_eq!(idx.time_to_incident(&e, 250)[m], Some(0.0));
        assert_eq!(idx.time_to_incident(&e, 301)[m], None);
        let other = EntityRef::pod("ns", "b").id();
        assert!(!idx.inside(&other, 150));
    }
}
