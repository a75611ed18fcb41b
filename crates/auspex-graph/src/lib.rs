//! The live topology: which pods run on which nodes, belong to which services, and which
//! services call which, kept current from topology events and from the entity fields that
//! metric samples carry. It answers neighbourhood queries (for alert context and the HTTP API)
//! and exports the graph as compactly indexed arrays for the GNN branch.
//!
//! This crate owns the graph and its expiry. It does not read sources, compute features or
//! hold models: features come in through a callback at export time.

mod config;
mod error;
mod export;
mod graph;

pub use config::GraphConfig;
pub use error::GraphError;
pub use export::{GraphExport, MessageEdges};
pub use graph::{
    Direction, LiveGraph, Neighbour, NodeState, Subgraph, SubgraphEdge, SubgraphVertex, Topology,
};
