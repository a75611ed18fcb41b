//! [`LiveGraph`]: the mutable topology, kept current from topology events and metric samples.

use std::collections::{BTreeMap, HashMap};

use auspex_model::{
    Edge, EdgeKind, Entity, EntityId, EntityKind, EntityRef, MetricSample, TimestampMs,
    TopologyChange, TopologyEvent,
};
use petgraph::Direction::{Incoming, Outgoing};
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableGraph};
use petgraph::visit::EdgeRef;

use crate::{GraphConfig, GraphError};

/// The petgraph type underneath: vertices are entities, edges are typed relations, directed as
/// [`EdgeKind`] names them.
pub type Topology = StableGraph<NodeState, EdgeKind>;

/// What the graph knows about one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    id: EntityId,
    entity: EntityRef,
    last_seen_ms: TimestampMs,
    node: Option<String>,
    service: Option<String>,
    workload: Option<String>,
    labels: BTreeMap<String, String>,
}

impl NodeState {
    fn new(id: EntityId, entity: EntityRef, seen_ms: TimestampMs) -> Self {
        NodeState {
            id,
            entity,
            last_seen_ms: seen_ms,
            node: None,
            service: None,
            workload: None,
            labels: BTreeMap::new(),
        }
    }

    /// The entity's canonical key.
    pub fn id(&self) -> &EntityId {
        &self.id
    }

    /// The entity's identity.
    pub fn entity(&self) -> &EntityRef {
        &self.entity
    }

    /// Pod, node, service or container.
    pub fn kind(&self) -> EntityKind {
        self.entity.kind
    }

    /// Latest event time at which a sample or event showed (or named) this entity.
    pub fn last_seen_ms(&self) -> TimestampMs {
        self.last_seen_ms
    }

    /// Name of the node this pod or container runs on; always the target of its `runs_on` edge.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The service this pod last declared (the `service` field of its samples or events). A pod
    /// may belong to more services through topology edges; [`LiveGraph::neighbours`] sees them.
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// The owning workload, as last declared.
    pub fn workload(&self) -> Option<&str> {
        self.workload.as_deref()
    }

    /// Kubernetes labels, as last declared.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

/// Which way the edge that reached a [`Neighbour`] points.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// `via --relation--> neighbour` (e.g. pod `runs_on` node, seen from the pod).
    Out,
    /// `neighbour --relation--> via` (e.g. pod `runs_on` node, seen from the node).
    In,
}

/// An entity within some hops of another, and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub id: EntityId,
    pub entity: EntityRef,
    /// The relation of the edge between `via` and this neighbour.
    pub relation: EdgeKind,
    /// Which way that edge points.
    pub direction: Direction,
    /// Smallest number of edges (in either direction) from the start; at least 1.
    pub hops: usize,
    /// The entity one hop closer to the start through which this one was reached.
    pub via: EntityId,
}

/// A serialisable view of the graph around one entity (for the HTTP API).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Subgraph {
    /// The entity the view is centred on.
    pub center: String,
    /// The radius requested.
    pub hops: usize,
    /// The centre (hops 0) and every entity within `hops`, by hops then id.
    pub vertices: Vec<SubgraphVertex>,
    /// Every stored edge between two vertices of the view, by (from, to, kind).
    pub edges: Vec<SubgraphEdge>,
}

/// A vertex of a [`Subgraph`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubgraphVertex {
    pub id: String,
    pub entity: EntityRef,
    pub hops: usize,
    pub last_seen_ms: TimestampMs,
}

/// An edge of a [`Subgraph`], between vertex ids.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubgraphEdge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
}

/// The live pod / node / service / container graph.
///
/// Invariants kept by every change (checked by the property tests):
/// - one vertex per [`EntityId`], and the id index agrees with the graph;
/// - at most one edge of a kind between two vertices, in one direction;
/// - a pod or container has at most one `runs_on` edge, and [`NodeState::node`] names its target.
///
/// Not thread-safe by itself: the owner wraps it in a lock or owns it in one task.
#[derive(Debug, Clone)]
pub struct LiveGraph {
    config: GraphConfig,
    graph: Topology,
    index: HashMap<EntityId, NodeIndex>,
    kind_counts: [usize; EntityKind::ALL.len()],
}

impl Default for LiveGraph {
    fn default() -> Self {
        LiveGraph::new(GraphConfig::default()).expect("the default config is valid")
    }
}

impl LiveGraph {
    /// An empty graph; fails when the config does not validate.
    pub fn new(config: GraphConfig) -> Result<Self, GraphError> {
        config.validate()?;
        Ok(LiveGraph {
            config,
            graph: Topology::default(),
            index: HashMap::new(),
            kind_counts: [0; EntityKind::ALL.len()],
        })
    }

    /// The configuration the graph was built with.
    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    /// Read-only access to the petgraph graph (its indices have holes; see [`LiveGraph::export`]).
    pub fn topology(&self) -> &Topology {
        &self.graph
    }

    // ---- changes -------------------------------------------------------------------------

    /// Applies one topology event.
    ///
    /// - `upsert_entity` creates or refreshes the entity and merges its metadata like
    ///   [`LiveGraph::observe`] does (including moving a pod whose `node` changed);
    /// - `delete_entity` removes the entity and its edges (absent: no-op);
    /// - `upsert_edge` creates missing endpoints, refreshes both and adds the edge unless one of
    ///   the same kind already joins them; a `runs_on` edge replaces the source's previous one;
    /// - `delete_edge` removes the edge (absent: no-op).
    ///
    /// Nothing changes when an error is returned.
    pub fn apply(&mut self, event: &TopologyEvent) -> Result<(), GraphError> {
        let ts = event.timestamp_ms;
        match &event.change {
            TopologyChange::UpsertEntity { entity } => self.upsert_entity(entity, ts),
            TopologyChange::DeleteEntity { entity } => {
                self.remove(&entity.id());
                Ok(())
            }
            TopologyChange::UpsertEdge { edge } => self.upsert_edge(edge, ts),
            TopologyChange::DeleteEdge { edge } => {
                self.delete_edge(edge);
                Ok(())
            }
        }
    }

    /// Records that a sample's entity is alive at the sample's time, and derives edges from its
    /// fields:
    /// - pod or container with `node` → `runs_on` that node (moving it if the node changed);
    /// - pod with `service` → `belongs_to` that service in the pod's namespace (dropping the edge
    ///   to the service it declared before, if that changed);
    /// - container named `<pod>/<container>` → `belongs_to` that pod.
    ///
    /// Referenced nodes, services and pods are created when missing and refreshed otherwise: a
    /// node named by a live pod is alive. An absent field means "not known", not "none": it keeps
    /// existing edges. Present `workload` and non-empty `labels` replace the stored ones.
    /// Nothing changes when an error is returned.
    pub fn observe(&mut self, sample: &MetricSample) -> Result<(), GraphError> {
        self.upsert_entity(&sample.entity, sample.timestamp_ms)
    }

    /// Removes every entity not seen for more than its TTL before `now_ms` (see
    /// [`GraphConfig`]), with its edges; returns their ids, sorted.
    pub fn expire(&mut self, now_ms: TimestampMs) -> Vec<EntityId> {
        let stale: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|&ix| {
                let s = &self.graph[ix];
                now_ms.saturating_sub(s.last_seen_ms) > self.config.ttl_for(s.kind())
            })
            .collect();
        let mut gone: Vec<EntityId> = stale.into_iter().map(|ix| self.remove_vertex(ix)).collect();
        gone.sort_unstable();
        gone
    }

    /// Removes an entity and its edges; false when it was not there.
    pub fn remove(&mut self, id: &EntityId) -> bool {
        match self.index.get(id) {
            Some(&ix) => {
                self.remove_vertex(ix);
                true
            }
            None => false,
        }
    }

    fn upsert_entity(&mut self, e: &Entity, ts: TimestampMs) -> Result<(), GraphError> {
        let me_id = e.id();
        let ns = e.namespace.as_deref();
        let node = match e.kind {
            EntityKind::Pod | EntityKind::Container => e.node.as_deref().filter(|n| !n.is_empty()),
            _ => None,
        };
        let service = match e.kind {
            EntityKind::Pod => e.service.as_deref().filter(|s| !s.is_empty()),
            _ => None,
        };
        let pod = match e.kind {
            EntityKind::Container => e
                .name
                .split_once('/')
                .map(|(p, _)| p)
                .filter(|p| !p.is_empty()),
            _ => None,
        };
        let node_id = node.map(|n| EntityId::from_parts(EntityKind::Node, None, n));
        let service_id = service.map(|s| EntityId::from_parts(EntityKind::Service, ns, s));
        let pod_id = pod.map(|p| EntityId::from_parts(EntityKind::Pod, ns, p));
        let wanted: Vec<&EntityId> = [Some(&me_id), node_id.as_ref(), service_id.as_ref()]
            .into_iter()
            .chain([pod_id.as_ref()])
            .flatten()
            .collect();
        self.reserve(&wanted)?;

        let me = self.ensure(&me_id, ts, || e.reference());
        let state = &mut self.graph[me];
        if e.workload.is_some() && state.workload != e.workload {
            state.workload.clone_from(&e.workload);
        }
        if !e.labels.is_empty() && state.labels != e.labels {
            state.labels.clone_from(&e.labels);
        }

        if let (Some(name), Some(id)) = (node, &node_id) {
            let n = self.ensure(id, ts, || EntityRef::node(name));
            self.set_runs_on(me, n);
        }
        if let (Some(name), Some(id)) = (service, &service_id) {
            let s = self.ensure(id, ts, || EntityRef::new(EntityKind::Service, ns, name));
            if let Some(old) = self.graph[me].service.as_deref()
                && old != name
            {
                let old_id = EntityId::from_parts(EntityKind::Service, ns, old);
                if let Some(&o) = self.index.get(&old_id) {
                    self.remove_edges(me, o, EdgeKind::BelongsTo);
                }
            }
            self.add_edge_unique(me, s, EdgeKind::BelongsTo);
            if self.graph[me].service.as_deref() != Some(name) {
                self.graph[me].service = Some(name.to_string());
            }
        }
        if let (Some(name), Some(id)) = (pod, &pod_id) {
            let p = self.ensure(id, ts, || EntityRef::new(EntityKind::Pod, ns, name));
            self.add_edge_unique(me, p, EdgeKind::BelongsTo);
        }
        Ok(())
    }

    fn upsert_edge(&mut self, edge: &Edge, ts: TimestampMs) -> Result<(), GraphError> {
        let invalid = |reason| GraphError::InvalidEdge {
            kind: edge.kind.as_str(),
            from: edge.from.to_string(),
            to: edge.to.to_string(),
            reason,
        };
        if edge.from.name.is_empty() || edge.to.name.is_empty() {
            return Err(invalid("an endpoint has an empty name"));
        }
        match edge.kind {
            EdgeKind::RunsOn => {
                if !matches!(edge.from.kind, EntityKind::Pod | EntityKind::Container) {
                    return Err(invalid("runs_on must start at a pod or container"));
                }
                if edge.to.kind != EntityKind::Node {
                    return Err(invalid("runs_on must end at a node"));
                }
            }
            EdgeKind::BelongsTo if edge.from == edge.to => {
                return Err(invalid("an entity cannot belong to itself"));
            }
            _ => {}
        }
        let (from_id, to_id) = (edge.from.id(), edge.to.id());
        self.reserve(&[&from_id, &to_id])?;
        let from = self.ensure(&from_id, ts, || edge.from.clone());
        let to = self.ensure(&to_id, ts, || edge.to.clone());
        if edge.kind == EdgeKind::RunsOn {
            self.set_runs_on(from, to);
        } else {
            self.add_edge_unique(from, to, edge.kind);
        }
        Ok(())
    }

    fn delete_edge(&mut self, edge: &Edge) {
        let (Some(&from), Some(&to)) = (
            self.index.get(&edge.from.id()),
            self.index.get(&edge.to.id()),
        ) else {
            return;
        };
        self.remove_edges(from, to, edge.kind);
    }

    /// Fails when creating the missing ones among `ids` would exceed `max_entities`.
    fn reserve(&self, ids: &[&EntityId]) -> Result<(), GraphError> {
        let new = ids
            .iter()
            .enumerate()
            .filter(|&(i, id)| !self.index.contains_key(*id) && !ids[..i].contains(id))
            .count();
        let (len, max) = (self.index.len(), self.config.max_entities);
        if len + new > max {
            return Err(GraphError::Full { len, new, max });
        }
        Ok(())
    }

    /// The vertex of `id`, created from `make` if missing; its last-seen time is raised to `ts`
    /// (never lowered, so late events cannot make an entity look older).
    fn ensure(
        &mut self,
        id: &EntityId,
        ts: TimestampMs,
        make: impl FnOnce() -> EntityRef,
    ) -> NodeIndex {
        if let Some(&ix) = self.index.get(id) {
            let s = &mut self.graph[ix];
            s.last_seen_ms = s.last_seen_ms.max(ts);
            return ix;
        }
        let entity = make();
        let kind = entity.kind;
        let ix = self.graph.add_node(NodeState::new(id.clone(), entity, ts));
        self.index.insert(id.clone(), ix);
        self.kind_counts[kind as usize] += 1;
        ix
    }

    fn add_edge_unique(&mut self, from: NodeIndex, to: NodeIndex, kind: EdgeKind) {
        let exists = self
            .graph
            .edges_connecting(from, to)
            .any(|e| *e.weight() == kind);
        if !exists {
            self.graph.add_edge(from, to, kind);
        }
    }

    /// Makes `to` the only node `from` runs on.
    fn set_runs_on(&mut self, from: NodeIndex, to: NodeIndex) {
        let stale: Vec<EdgeIndex> = self
            .graph
            .edges_directed(from, Outgoing)
            .filter(|e| *e.weight() == EdgeKind::RunsOn && e.target() != to)
            .map(|e| e.id())
            .collect();
        for e in stale {
            self.graph.remove_edge(e);
        }
        self.add_edge_unique(from, to, EdgeKind::RunsOn);
        if self.graph[from].node.as_deref() != Some(self.graph[to].entity.name.as_str()) {
            self.graph[from].node = Some(self.graph[to].entity.name.clone());
        }
    }

    fn remove_edges(&mut self, from: NodeIndex, to: NodeIndex, kind: EdgeKind) {
        let doomed: Vec<EdgeIndex> = self
            .graph
            .edges_connecting(from, to)
            .filter(|e| *e.weight() == kind)
            .map(|e| e.id())
            .collect();
        for e in doomed {
            self.remove_edge_at(e);
        }
    }

    /// Removes an edge and the metadata that mirrors it on its source.
    fn remove_edge_at(&mut self, e: EdgeIndex) {
        let Some((from, to)) = self.graph.edge_endpoints(e) else {
            return;
        };
        let target = self.graph[to].entity.name.as_str();
        let target_kind = self.graph[to].kind();
        let source = &self.graph[from];
        let (clear_node, clear_service) = match self.graph[e] {
            EdgeKind::RunsOn => (source.node.as_deref() == Some(target), false),
            EdgeKind::BelongsTo => (
                false,
                target_kind == EntityKind::Service && source.service.as_deref() == Some(target),
            ),
            EdgeKind::Calls => (false, false),
        };
        let source = &mut self.graph[from];
        if clear_node {
            source.node = None;
        }
        if clear_service {
            source.service = None;
        }
        self.graph.remove_edge(e);
    }

    fn remove_vertex(&mut self, ix: NodeIndex) -> EntityId {
        // Outgoing edges leave with their source; incoming ones may be mirrored on survivors.
        let incoming: Vec<EdgeIndex> = self
            .graph
            .edges_directed(ix, Incoming)
            .map(|e| e.id())
            .collect();
        for e in incoming {
            self.remove_edge_at(e);
        }
        let state = self
            .graph
            .remove_node(ix)
            .expect("indices come from the index or the graph itself, so the vertex exists");
        self.index.remove(&state.id);
        self.kind_counts[state.kind() as usize] -= 1;
        state.id
    }

    // ---- queries -------------------------------------------------------------------------

    /// Whether the entity is in the graph.
    pub fn contains(&self, id: &EntityId) -> bool {
        self.index.contains_key(id)
    }

    /// Number of entities.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the graph has no entities.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// Number of entities of one kind (O(1)).
    pub fn count(&self, kind: EntityKind) -> usize {
        self.kind_counts[kind as usize]
    }

    /// Number of edges of one kind (O(e)).
    pub fn edge_count_of(&self, kind: EdgeKind) -> usize {
        self.graph.edge_weights().filter(|&&k| k == kind).count()
    }

    /// What the graph knows about an entity.
    pub fn state(&self, id: &EntityId) -> Option<&NodeState> {
        self.index.get(id).map(|&ix| &self.graph[ix])
    }

    /// Every entity, in no particular order.
    pub fn entities(&self) -> impl Iterator<Item = &NodeState> {
        self.graph.node_weights()
    }

    /// The node a pod or container runs on.
    pub fn node_of(&self, id: &EntityId) -> Option<&EntityId> {
        let ix = *self.index.get(id)?;
        self.graph
            .edges_directed(ix, Outgoing)
            .find(|e| *e.weight() == EdgeKind::RunsOn)
            .map(|e| &self.graph[e.target()].id)
    }

    /// The pods running on a node, sorted.
    pub fn pods_on(&self, node: &EntityId) -> Vec<EntityId> {
        self.adjacent(node, Incoming, EdgeKind::RunsOn, Some(EntityKind::Pod))
    }

    /// The pods that belong to a service, sorted.
    pub fn members_of(&self, service: &EntityId) -> Vec<EntityId> {
        self.adjacent(
            service,
            Incoming,
            EdgeKind::BelongsTo,
            Some(EntityKind::Pod),
        )
    }

    /// The services that call a service, sorted.
    pub fn callers_of(&self, service: &EntityId) -> Vec<EntityId> {
        self.adjacent(service, Incoming, EdgeKind::Calls, None)
    }

    /// The services a service calls, sorted.
    pub fn callees_of(&self, service: &EntityId) -> Vec<EntityId> {
        self.adjacent(service, Outgoing, EdgeKind::Calls, None)
    }

    fn adjacent(
        &self,
        id: &EntityId,
        dir: petgraph::Direction,
        kind: EdgeKind,
        of_kind: Option<EntityKind>,
    ) -> Vec<EntityId> {
        let Some(&ix) = self.index.get(id) else {
            return Vec::new();
        };
        let mut out: Vec<EntityId> = self
            .graph
            .edges_directed(ix, dir)
            .filter(|e| *e.weight() == kind)
            .map(|e| {
                if dir == Outgoing {
                    e.target()
                } else {
                    e.source()
                }
            })
            .map(|other| &self.graph[other])
            .filter(|s| of_kind.is_none_or(|k| s.kind() == k))
            .map(|s| s.id.clone())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every entity within `hops` edges of `id`, following edges both ways, each once at its
    /// smallest hop count; sorted by (hops, id). Empty when `id` is unknown or `hops` is 0.
    ///
    /// Deterministic whatever the insertion history: each level is expanded in id order and each
    /// vertex's edges in (other id, relation, direction) order, so `via`, `relation` and
    /// `direction` name the smallest such edge from the previous level.
    pub fn neighbours(&self, id: &EntityId, hops: usize) -> Vec<Neighbour> {
        self.bfs(id, hops)
            .into_iter()
            .map(|(ix, hops, via, relation, direction)| Neighbour {
                id: self.graph[ix].id.clone(),
                entity: self.graph[ix].entity.clone(),
                relation,
                direction,
                hops,
                via: self.graph[via].id.clone(),
            })
            .collect()
    }

    /// BFS behind [`LiveGraph::neighbours`]: (vertex, hops, via, relation, direction).
    fn bfs(
        &self,
        id: &EntityId,
        hops: usize,
    ) -> Vec<(NodeIndex, usize, NodeIndex, EdgeKind, Direction)> {
        let Some(&start) = self.index.get(id) else {
            return Vec::new();
        };
        let mut seen = std::collections::HashSet::from([start]);
        let mut found = Vec::new();
        let mut frontier = vec![start];
        let mut around: Vec<(NodeIndex, EdgeKind, Direction)> = Vec::new();
        for h in 1..=hops {
            frontier.sort_unstable_by(|a, b| self.graph[*a].id.cmp(&self.graph[*b].id));
            let mut next = Vec::new();
            for &v in &frontier {
                around.clear();
                around.extend(
                    self.graph
                        .edges_directed(v, Outgoing)
                        .map(|e| (e.target(), *e.weight(), Direction::Out)),
                );
                around.extend(
                    self.graph
                        .edges_directed(v, Incoming)
                        .map(|e| (e.source(), *e.weight(), Direction::In)),
                );
                around.sort_unstable_by(|a, b| {
                    (&self.graph[a.0].id, a.1, a.2).cmp(&(&self.graph[b.0].id, b.1, b.2))
                });
                for &(other, relation, direction) in &around {
                    if seen.insert(other) {
                        found.push((other, h, v, relation, direction));
                        next.push(other);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        found.sort_by(|a, b| (a.1, &self.graph[a.0].id).cmp(&(b.1, &self.graph[b.0].id)));
        found
    }

    /// The entities within `hops` of `around` and the stored edges among them; `None` when
    /// `around` is unknown.
    pub fn subgraph(&self, around: &EntityId, hops: usize) -> Option<Subgraph> {
        let &center = self.index.get(around)?;
        let vertex = |ix: NodeIndex, hops| {
            let s = &self.graph[ix];
            SubgraphVertex {
                id: s.id.as_str().to_string(),
                entity: s.entity.clone(),
                hops,
                last_seen_ms: s.last_seen_ms,
            }
        };
        let mut members = vec![(center, 0)];
        members.extend(
            self.bfs(around, hops)
                .into_iter()
                .map(|(ix, h, ..)| (ix, h)),
        );
        let inside: std::collections::HashSet<NodeIndex> =
            members.iter().map(|&(ix, _)| ix).collect();
        let mut edges: Vec<SubgraphEdge> = members
            .iter()
            .flat_map(|&(ix, _)| self.graph.edges_directed(ix, Outgoing))
            .filter(|e| inside.contains(&e.target()))
            .map(|e| SubgraphEdge {
                from: self.graph[e.source()].id.as_str().to_string(),
                to: self.graph[e.target()].id.as_str().to_string(),
                kind: *e.weight(),
            })
            .collect();
        edges.sort_unstable_by(|a, b| (&a.from, &a.to, a.kind).cmp(&(&b.from, &b.to, b.kind)));
        Some(Subgraph {
            center: around.as_str().to_string(),
            hops,
            vertices: members.into_iter().map(|(ix, h)| vertex(ix, h)).collect(),
            edges,
        })
    }

    /// Checks the invariants listed on [`LiveGraph`]; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        use petgraph::visit::IntoEdgeReferences;
        if self.index.len() != self.graph.node_count() {
            return Err(format!(
                "index has {} ids, graph {} vertices",
                self.index.len(),
                self.graph.node_count()
            ));
        }
        for (id, &ix) in &self.index {
            match self.graph.node_weight(ix) {
                Some(s) if &s.id == id => {}
                other => return Err(format!("{id} maps to {ix:?} holding {other:?}")),
            }
        }
        for kind in EntityKind::ALL {
            let n = self.entities().filter(|s| s.kind() == kind).count();
            if n != self.count(kind) {
                return Err(format!(
                    "count({kind}) = {} but {n} found",
                    self.count(kind)
                ));
            }
        }
        let mut keys = std::collections::HashSet::new();
        for e in self.graph.edge_references() {
            if !keys.insert((e.source(), e.target(), *e.weight())) {
                return Err(format!("duplicate edge {:?}", (e.source(), e.target())));
            }
        }
        for ix in self.graph.node_indices() {
            let s = &self.graph[ix];
            let runs_on: Vec<&str> = self
                .graph
                .edges_directed(ix, Outgoing)
                .filter(|e| *e.weight() == EdgeKind::RunsOn)
                .map(|e| self.graph[e.target()].entity.name.as_str())
                .collect();
            if runs_on.len() > 1 {
                return Err(format!("{} runs on {runs_on:?}", s.id));
            }
            if s.node() != runs_on.first().copied() {
                return Err(format!(
                    "{} says node {:?}, edges say {runs_on:?}",
                    s.id,
                    s.node()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One change, over a small name space so that ops collide often.
    #[derive(Debug, Clone)]
    enum Op {
        Sample {
            pod: u8,
            node: Option<u8>,
            service: Option<u8>,
            ts: i64,
        },
        Container {
            pod: u8,
            node: Option<u8>,
        },
        UpsertEdge(EdgeKind, u8, u8),
        DeleteEdge(EdgeKind, u8, u8),
        DeleteEntity(u8),
        Expire(i64),
    }

    /// Entity `i` of a small universe: pods, nodes and services by turns.
    fn entity(i: u8) -> EntityRef {
        match i % 3 {
            0 => EntityRef::pod("ns", &format!("p{}", i / 3)),
            1 => EntityRef::node(&format!("n{}", i / 3)),
            _ => EntityRef::service("ns", &format!("s{}", i / 3)),
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        let kind = prop_oneof![
            Just(EdgeKind::RunsOn),
            Just(EdgeKind::BelongsTo),
            Just(EdgeKind::Calls)
        ];
        prop_oneof![
            4 => (0..6u8, proptest::option::of(0..3u8), proptest::option::of(0..3u8), 0..100i64)
                .prop_map(|(pod, node, service, ts)| Op::Sample { pod, node, service, ts }),
            1 => (0..6u8, proptest::option::of(0..3u8))
                .prop_map(|(pod, node)| Op::Container { pod, node }),
            3 => (kind.clone(), 0..18u8, 0..18u8).prop_map(|(k, a, b)| Op::UpsertEdge(k, a, b)),
            2 => (kind, 0..18u8, 0..18u8).prop_map(|(k, a, b)| Op::DeleteEdge(k, a, b)),
            2 => (0..18u8).prop_map(Op::DeleteEntity),
            1 => (0..200i64).prop_map(Op::Expire),
        ]
    }

    fn run(g: &mut LiveGraph, op: &Op) {
        let ts = 0;
        let result = match op {
            Op::Sample {
                pod,
                node,
                service,
                ts,
            } => {
                let mut e = Entity::new(EntityKind::Pod, Some("ns"), &format!("p{pod}"));
                e.node = node.map(|n| format!("n{n}"));
                e.service = service.map(|s| format!("s{s}"));
                g.observe(&MetricSample {
                    timestamp_ms: *ts,
                    entity: e,
                    metrics: BTreeMap::new(),
                })
            }
            Op::Container { pod, node } => {
                let mut e = Entity::new(EntityKind::Container, Some("ns"), &format!("p{pod}/c"));
                e.node = node.map(|n| format!("n{n}"));
                g.apply(&TopologyEvent {
                    timestamp_ms: ts,
                    change: TopologyChange::UpsertEntity { entity: e },
                })
            }
            Op::UpsertEdge(kind, a, b) | Op::DeleteEdge(kind, a, b) => {
                let edge = Edge {
                    kind: *kind,
                    from: entity(*a),
                    to: entity(*b),
                };
                let change = if matches!(op, Op::UpsertEdge(..)) {
                    TopologyChange::UpsertEdge { edge }
                } else {
                    TopologyChange::DeleteEdge { edge }
                };
                g.apply(&TopologyEvent {
                    timestamp_ms: ts,
                    change,
                })
            }
            Op::DeleteEntity(i) => g.apply(&TopologyEvent {
                timestamp_ms: ts,
                change: TopologyChange::DeleteEntity { entity: entity(*i) },
            }),
            Op::Expire(now) => {
                g.expire(*now);
                Ok(())
            }
        };
        // Only malformed edges (runs_on not pod/container -> node, self belongs_to) fail.
        if let Err(e) = result {
            assert!(matches!(e, GraphError::InvalidEdge { .. }), "{e}");
        }
    }

    proptest! {
        #[test]
        fn any_history_keeps_invariants_and_a_valid_export(ops in proptest::collection::vec(op(), 0..60)) {
            let cfg = GraphConfig { ttl_ms: 50, node_ttl_ms: 80, service_ttl_ms: 80, ..GraphConfig::default() };
            let mut g = LiveGraph::new(cfg).unwrap();
            for op in &ops {
                run(&mut g, op);
                prop_assert_eq!(g.check_invariants(), Ok(()), "after {:?}", op);
            }
            let dim = 2;
            let x = g.export(dim, |id| (id.kind() == EntityKind::Node).then_some(&[1.0, 2.0][..])).unwrap();
            let n = x.len();
            prop_assert_eq!(n, g.len());
            prop_assert_eq!(x.edge_count(), g.edge_count());
            prop_assert_eq!(x.node_features.len(), n * dim);
            let mut exported = std::collections::HashSet::new();
            for k in 0..x.edge_count() {
                let (s, d) = (x.edge_src[k] as usize, x.edge_dst[k] as usize);
                prop_assert!(s < n && d < n);
                let (from, to) = (&x.ids[s], &x.ids[d]);
                prop_assert!(g.contains(from) && g.contains(to));
                let (fi, ti) = (g.index[from], g.index[to]);
                prop_assert!(g.graph.edges_connecting(fi, ti).any(|e| *e.weight() == x.edge_kind[k]));
                exported.insert((s, d, x.edge_kind[k]));
            }
            prop_assert_eq!(exported.len(), x.edge_count(), "no edge exported twice");
            for (i, id) in x.ids.iter().enumerate() {
                prop_assert_eq!(x.index_of(id), Some(i as u32));
                prop_assert_eq!(x.has_features[i], id.kind() == EntityKind::Node);
            }
        }
    }
}
