//! Ground-truth incident labels, written by the simulator and the data-set readers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AnomalyKind, EntityRef, TimestampMs};

/// One labelled incident on one entity.
///
/// `onset_ms <= incident_ms <= end_ms`. The span from onset to incident is the precursor phase
/// (a leak growing, throttling rising): an alert inside it is a prediction, with lead time
/// `incident_ms - alert time`. From incident to end the incident itself is under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentLabel {
    pub entity: EntityRef,
    pub kind: AnomalyKind,
    /// The injected fault or recorded cause, e.g. `memory_leak`, `cpu_contention`.
    pub fault: String,
    /// When the precursor begins.
    pub onset_ms: TimestampMs,
    /// When the incident itself happens (OOM kill, saturation, errors seen by callers).
    pub incident_ms: TimestampMs,
    /// When the incident is over.
    pub end_ms: TimestampMs,
    /// True on the entity where the fault was injected; false where it spread to.
    #[serde(default = "yes")]
    pub root_cause: bool,
}

fn yes() -> bool {
    true
}
