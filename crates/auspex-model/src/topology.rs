//! Topology events: entities and edges appearing, changing and disappearing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Entity, EntityRef, ModelError, TimestampMs};

/// The relation an edge stands for. Edges are directed as named.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// pod (or container) -> node it is scheduled on.
    RunsOn,
    /// pod -> service that selects it (or container -> pod).
    BelongsTo,
    /// service -> service it calls.
    Calls,
}

impl EdgeKind {
    pub const ALL: [EdgeKind; 3] = [EdgeKind::RunsOn, EdgeKind::BelongsTo, EdgeKind::Calls];

    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::RunsOn => "runs_on",
            EdgeKind::BelongsTo => "belongs_to",
            EdgeKind::Calls => "calls",
        }
    }
}

/// A directed, typed edge between two entities.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Edge {
    pub kind: EdgeKind,
    pub from: EntityRef,
    pub to: EntityRef,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TopologyChange {
    /// An entity appeared or changed (e.g. a pod was scheduled or moved to another node).
    UpsertEntity { entity: Entity },
    /// An entity is gone; its edges go with it.
    DeleteEntity { entity: EntityRef },
    /// An edge appeared.
    UpsertEdge { edge: Edge },
    /// An edge is gone.
    DeleteEdge { edge: Edge },
}

impl TopologyChange {
    /// What the change is about, as a compaction key: the entity id, or
    /// `from|kind|to` for an edge (an upsert and a later delete of one thing share a key).
    pub fn key(&self) -> String {
        match self {
            TopologyChange::UpsertEntity { entity } => entity.id().as_str().to_string(),
            TopologyChange::DeleteEntity { entity } => entity.id().as_str().to_string(),
            TopologyChange::UpsertEdge { edge } | TopologyChange::DeleteEdge { edge } => {
                format!(
                    "{}|{}|{}",
                    edge.from.id().as_str(),
                    edge.kind.as_str(),
                    edge.to.id().as_str()
                )
            }
        }
    }
}

/// A change to the cluster topology at an instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopologyEvent {
    /// Event time, milliseconds since the Unix epoch (UTC).
    #[schemars(range(min = 0))]
    pub timestamp_ms: TimestampMs,
    #[serde(flatten)]
    pub change: TopologyChange,
}

impl TopologyEvent {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let e: TopologyEvent = serde_json::from_slice(bytes)?;
        if e.timestamp_ms < 0 {
            return Err(ModelError::Invalid {
                what: "topology event",
                reason: format!("timestamp_ms {} is negative", e.timestamp_ms),
            });
        }
        Ok(e)
    }
}
