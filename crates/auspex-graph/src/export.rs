//! [`GraphExport`]: the graph as dense, compactly indexed arrays for a GNN.

use auspex_model::{EdgeKind, EntityId, EntityKind};
use petgraph::Direction::Outgoing;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::{EdgeRef, NodeIndexable};

use crate::{GraphError, LiveGraph};

/// A snapshot of the graph with vertices numbered `0..n`, ready to become tensors.
///
/// Vertices are sorted by [`EntityId`], and edges by (source, target, kind), so the same graph
/// always exports the same arrays, however it was built. Each stored directed edge appears once,
/// as named by its [`EdgeKind`] (pod → node, pod → service, caller → callee); message passing
/// usually wants both directions: see [`GraphExport::message_edges`].
#[derive(Debug, Clone, PartialEq)]
pub struct GraphExport {
    /// Entity of each row; sorted, so row `i` is `ids[i]`.
    pub ids: Vec<EntityId>,
    /// Kind of each row.
    pub kinds: Vec<EntityKind>,
    /// Source row of each edge.
    pub edge_src: Vec<u32>,
    /// Target row of each edge.
    pub edge_dst: Vec<u32>,
    /// Relation of each edge.
    pub edge_kind: Vec<EdgeKind>,
    /// Feature width.
    pub dim: usize,
    /// Row-major `n × dim` features; zeros where `has_features` is false.
    pub node_features: Vec<f32>,
    /// Whether the feature callback gave a row for each vertex.
    pub has_features: Vec<bool>,
}

/// Edges for message passing: the stored edges (`reversed` false) followed by each one
/// reversed (`reversed` true), so information flows both ways with a distinct relation per
/// direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEdges {
    pub src: Vec<u32>,
    pub dst: Vec<u32>,
    pub kind: Vec<EdgeKind>,
    pub reversed: Vec<bool>,
}

impl MessageEdges {
    /// Number of distinct relations [`MessageEdges::relation`] can return.
    pub const RELATIONS: usize = 2 * EdgeKind::ALL.len();

    /// Number of edges.
    pub fn len(&self) -> usize {
        self.src.len()
    }

    /// Whether there are no edges.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty()
    }

    /// Relation id of edge `i` in `0..RELATIONS`: `2 × kind + reversed`, for per-relation
    /// weights (R-GCN style).
    pub fn relation(&self, i: usize) -> usize {
        2 * self.kind[i] as usize + usize::from(self.reversed[i])
    }
}

impl GraphExport {
    /// Number of vertices (rows).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the export has no vertices.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edge_src.len()
    }

    /// Row of an entity (O(log n)).
    pub fn index_of(&self, id: &EntityId) -> Option<u32> {
        self.ids
            .binary_search(id)
            .ok()
            .map(|i| u32::try_from(i).expect("max_entities keeps rows within u32"))
    }

    /// Features of row `i`.
    pub fn features(&self, i: usize) -> &[f32] {
        &self.node_features[i * self.dim..(i + 1) * self.dim]
    }

    /// Each edge in both directions (see [`MessageEdges`]).
    pub fn message_edges(&self) -> MessageEdges {
        let e = self.edge_count();
        let cat = |a: &[u32], b: &[u32]| [a, b].concat();
        MessageEdges {
            src: cat(&self.edge_src, &self.edge_dst),
            dst: cat(&self.edge_dst, &self.edge_src),
            kind: [self.edge_kind.as_slice(), self.edge_kind.as_slice()].concat(),
            reversed: (0..2 * e).map(|i| i >= e).collect(),
        }
    }
}

impl LiveGraph {
    /// Exports the graph with compact indices (see [`GraphExport`]); `features` gives each
    /// entity's row of length `dim`, or `None` for a zero row masked out in `has_features`.
    ///
    /// O(n log n + e): one sort of the ids, then one pass over vertices and edges (each
    /// vertex's out-edges are sorted, and out-degrees are small).
    pub fn export<'f, F>(&self, dim: usize, mut features: F) -> Result<GraphExport, GraphError>
    where
        F: FnMut(&EntityId) -> Option<&'f [f32]>,
    {
        let g = self.topology();
        let mut order: Vec<NodeIndex> = g.node_indices().collect();
        order.sort_unstable_by(|a, b| g[*a].id().cmp(g[*b].id()));
        let n = order.len();

        // StableGraph indices have holes: map each live index to its row.
        let mut row = vec![u32::MAX; g.node_bound()];
        for (i, ix) in order.iter().enumerate() {
            row[ix.index()] = u32::try_from(i).expect("max_entities keeps rows within u32");
        }

        let mut ids = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut node_features = vec![0.0_f32; n * dim];
        let mut has_features = vec![false; n];
        let e = g.edge_count();
        let (mut edge_src, mut edge_dst, mut edge_kind) = (
            Vec::with_capacity(e),
            Vec::with_capacity(e),
            Vec::with_capacity(e),
        );
        let mut out: Vec<(u32, EdgeKind)> = Vec::new();
        for (i, &ix) in order.iter().enumerate() {
            let s = &g[ix];
            if let Some(f) = features(s.id()) {
                if f.len() != dim {
                    return Err(GraphError::FeatureDim {
                        id: s.id().to_string(),
                        expected: dim,
                        got: f.len(),
                    });
                }
                node_features[i * dim..(i + 1) * dim].copy_from_slice(f);
                has_features[i] = true;
            }
            ids.push(s.id().clone());
            kinds.push(s.kind());

            out.clear();
            out.extend(
                g.edges_directed(ix, Outgoing)
                    .map(|e| (row[e.target().index()], *e.weight())),
            );
            out.sort_unstable();
            let src = row[ix.index()];
            for &(dst, kind) in &out {
                edge_src.push(src);
                edge_dst.push(dst);
                edge_kind.push(kind);
            }
        }
        Ok(GraphExport {
            ids,
            kinds,
            edge_src,
            edge_dst,
            edge_kind,
            dim,
            node_features,
            has_features,
        })
    }
}
