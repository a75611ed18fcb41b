//! The pure translation layer: watch events of compact Kubernetes objects in, topology changes
//! out. No I/O and no clock: [`Topology::handle`] is a function of its state and one event, so
//! everything here is tested without a server.
//!
//! It keeps two things: the cluster as last listed/watched (pods, nodes, services,
//! EndpointSlices, as [`crate::objects`] views) and what has been *emitted* downstream (each
//! entity as last sent, and each pod's edges). After every event it recomputes the desired
//! entities and edges of what the event touched and emits the difference. That makes it
//! idempotent and deduplicated: a MODIFIED that changes nothing we report (a status heartbeat)
//! emits nothing, and a re-list (after a 410 Gone or a reconnect) emits deletes for objects that
//! vanished in between and nothing for unchanged ones.
//!
//! Conventions, matching `auspex-sim` and what `auspex-graph` expects:
//! - a pod: `upsert_entity` (with `node`, `service`, `workload`, chosen labels) followed by its
//!   edge changes: `runs_on` pod → node once scheduled, `belongs_to` pod → service per service;
//! - a pod that goes away (deleted, or finished: phase `Succeeded`/`Failed`): one
//!   `delete_entity` (the graph drops its edges with it); no `delete_edge` before it;
//! - pods never change node in place: a "move" is a new pod (new name, or the same name with a
//!   new uid for a StatefulSet pod), so it reads `delete_entity` old + `upsert_entity` new +
//!   `upsert_edge runs_on`; the pods of one workload share `workload`;
//! - a pod that leaves a service (EndpointSlice no longer lists it, or its labels stop
//!   matching): `delete_edge belongs_to` (with an `upsert_entity` first when its `service` field
//!   changes);
//! - nodes and services: `upsert_entity` when they appear or their reported labels change,
//!   `delete_entity` when they go (the graph drops edges into them; we forget those too).
//!
//! Nothing is emitted until every watch stream has finished its first list; then the whole
//! cluster is emitted in a fixed order (nodes, services, pods, each sorted by name), so the
//! graph sees nodes and services before the pods that point at them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use auspex_model::{Edge, EdgeKind, Entity, EntityId, EntityKind, EntityRef, TopologyChange};
use kube::runtime::watcher::Event;

use crate::config::{Membership, WatchConfig};
use crate::objects::{NodeView, Object, PodView, ServiceView, SliceView};

/// A watched resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Pod,
    Node,
    Service,
    EndpointSlice,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Pod => "pods",
            Resource::Node => "nodes",
            Resource::Service => "services",
            Resource::EndpointSlice => "endpointslices",
        }
    }
}

/// One watch stream: a resource, cluster-wide (`namespace` absent) or in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub resource: Resource,
    pub namespace: Option<String>,
}

impl Scope {
    pub fn new(resource: Resource, namespace: Option<&str>) -> Self {
        Scope {
            resource,
            namespace: namespace.map(str::to_string),
        }
    }

    /// The watch streams a configuration needs.
    pub fn all_for(cfg: &WatchConfig) -> Vec<Scope> {
        let mut kinds = vec![Resource::Pod, Resource::Service];
        if cfg.membership == Membership::EndpointSlices {
            kinds.push(Resource::EndpointSlice);
        }
        let mut scopes = vec![Scope::new(Resource::Node, None)];
        for r in kinds {
            if cfg.namespaces.is_empty() {
                scopes.push(Scope::new(r, None));
            } else {
                scopes.extend(cfg.namespaces.iter().map(|ns| Scope::new(r, Some(ns))));
            }
        }
        scopes
    }

    fn holds(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }
}

/// Per namespace, per name.
type ByNs<T> = BTreeMap<String, BTreeMap<String, T>>;

/// What was last sent downstream about one entity.
#[derive(Debug, Clone)]
struct Emitted {
    entity: Entity,
    /// A pod's uid, to tell a recreated pod of the same name.
    uid: Option<String>,
    /// A pod's outgoing edges (`runs_on` first, then `belongs_to` by service name).
    edges: Vec<Edge>,
}

/// What an event touched and must be recomputed.
#[derive(Default)]
struct Dirty {
    nodes: BTreeSet<String>,
    services: BTreeSet<(String, String)>,
    pods: BTreeSet<(String, String)>,
    /// Namespaces whose every pod is recomputed (a service appeared, changed or went).
    pod_namespaces: BTreeSet<String>,
}

/// Sizes of the watched state, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub pods: usize,
    pub nodes: usize,
    pub services: usize,
    pub endpoint_slices: usize,
}

/// The cluster as watched, and what has been emitted about it.
pub struct Topology {
    membership: Membership,
    pod_labels: Vec<String>,
    node_labels: Vec<String>,
    service_labels: Vec<String>,
    pods: ByNs<PodView>,
    nodes: BTreeMap<String, NodeView>,
    services: ByNs<ServiceView>,
    slices: ByNs<SliceView>,
    /// Scopes in a (re-)list, with the objects listed so far.
    relisting: HashMap<Scope, Vec<Object>>,
    /// Scopes still to finish their first list; nothing is emitted until this is empty.
    unsynced: BTreeSet<Scope>,
    emitted: HashMap<EntityId, Emitted>,
}

impl Topology {
    /// An empty topology that waits for the first list of each of `scopes`.
    pub fn new(cfg: &WatchConfig, scopes: impl IntoIterator<Item = Scope>) -> Self {
        Topology {
            membership: cfg.membership,
            pod_labels: cfg.pod_labels.clone(),
            node_labels: cfg.node_labels.clone(),
            service_labels: cfg.service_labels.clone(),
            pods: BTreeMap::new(),
            nodes: BTreeMap::new(),
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            relisting: HashMap::new(),
            unsynced: scopes.into_iter().collect(),
            emitted: HashMap::new(),
        }
    }

    /// Whether every scope has been listed once (and the snapshot emitted).
    pub fn is_synced(&self) -> bool {
        self.unsynced.is_empty()
    }

    /// Objects held, per kind.
    pub fn counts(&self) -> Counts {
        fn n<T>(m: &ByNs<T>) -> usize {
            m.values().map(BTreeMap::len).sum()
        }
        Counts {
            pods: n(&self.pods),
            nodes: self.nodes.len(),
            services: n(&self.services),
            endpoint_slices: n(&self.slices),
        }
    }

    /// Number of entities emitted and not deleted since.
    pub fn emitted_len(&self) -> usize {
        self.emitted.len()
    }

    /// Applies one watch event of `scope`; returns the topology changes to send, in order.
    pub fn handle(&mut self, scope: &Scope, event: Event<Object>) -> Vec<TopologyChange> {
        let mut dirty = Dirty::default();
        match event {
            Event::Init => {
                self.relisting.insert(scope.clone(), Vec::new());
                return Vec::new();
            }
            Event::InitApply(obj) => {
                match self.relisting.get_mut(scope) {
                    Some(buf) => buf.push(obj),
                    // kube always sends Init first; should it not, the object is still news.
                    None => self.put(obj, &mut dirty),
                }
            }
            Event::InitDone => {
                let listed = self.relisting.remove(scope).unwrap_or_default();
                self.replace(scope, listed, &mut dirty);
                if self.unsynced.remove(scope) && self.unsynced.is_empty() {
                    let mut out = Vec::new();
                    self.sync_all(&mut out);
                    return out;
                }
            }
            Event::Apply(obj) => self.put(obj, &mut dirty),
            Event::Delete(obj) => self.take(&obj, &mut dirty),
        }
        let mut out = Vec::new();
        if self.unsynced.is_empty() {
            self.sync(dirty, &mut out);
        }
        out
    }

    /// Stores an object (added or modified), marking what depends on it.
    fn put(&mut self, obj: Object, dirty: &mut Dirty) {
        match obj {
            Object::Pod(p) if !p.name.is_empty() => {
                dirty.pods.insert((p.namespace.clone(), p.name.clone()));
                self.pods
                    .entry(p.namespace.clone())
                    .or_default()
                    .insert(p.name.clone(), p);
            }
            Object::Node(n) if !n.name.is_empty() => {
                dirty.nodes.insert(n.name.clone());
                self.nodes.insert(n.name.clone(), n);
            }
            Object::Service(s) if !s.name.is_empty() => {
                dirty.services.insert((s.namespace.clone(), s.name.clone()));
                dirty.pod_namespaces.insert(s.namespace.clone());
                self.services
                    .entry(s.namespace.clone())
                    .or_default()
                    .insert(s.name.clone(), s);
            }
            Object::Slice(s) if !s.name.is_empty() => {
                let ns = s.namespace.clone();
                let old = self
                    .slices
                    .entry(ns.clone())
                    .or_default()
                    .insert(s.name.clone(), s.clone());
                let names = old.iter().flat_map(|o| o.pods.keys()).chain(s.pods.keys());
                dirty
                    .pods
                    .extend(names.map(|name| (ns.clone(), name.clone())));
            }
            _ => {}
        }
    }

    /// Forgets an object (deleted), marking what depends on it.
    fn take(&mut self, obj: &Object, dirty: &mut Dirty) {
        fn remove<T>(m: &mut ByNs<T>, ns: &str, name: &str) -> Option<T> {
            let inner = m.get_mut(ns)?;
            let old = inner.remove(name);
            if inner.is_empty() {
                m.remove(ns);
            }
            old
        }
        match obj {
            Object::Pod(p) => {
                remove(&mut self.pods, &p.namespace, &p.name);
                dirty.pods.insert((p.namespace.clone(), p.name.clone()));
            }
            Object::Node(n) => {
                self.nodes.remove(&n.name);
                dirty.nodes.insert(n.name.clone());
            }
            Object::Service(s) => {
                remove(&mut self.services, &s.namespace, &s.name);
                dirty.services.insert((s.namespace.clone(), s.name.clone()));
                dirty.pod_namespaces.insert(s.namespace.clone());
            }
            Object::Slice(s) => {
                let old = remove(&mut self.slices, &s.namespace, &s.name);
                let names = old.iter().flat_map(|o| o.pods.keys()).chain(s.pods.keys());
                dirty
                    .pods
                    .extend(names.map(|name| (s.namespace.clone(), name.clone())));
            }
        }
    }

    /// Replaces everything `scope` holds with a fresh list.
    fn replace(&mut self, scope: &Scope, listed: Vec<Object>, dirty: &mut Dirty) {
        let gone: Vec<Object> = match scope.resource {
            Resource::Node => self.nodes.values().cloned().map(Object::Node).collect(),
            Resource::Pod => in_scope(&self.pods, scope)
                .cloned()
                .map(Object::Pod)
                .collect(),
            Resource::Service => in_scope(&self.services, scope)
                .cloned()
                .map(Object::Service)
                .collect(),
            Resource::EndpointSlice => in_scope(&self.slices, scope)
                .cloned()
                .map(Object::Slice)
                .collect(),
        };
        for obj in &gone {
            self.take(obj, dirty);
        }
        for obj in listed {
            self.put(obj, dirty);
        }
    }

    /// Emits the whole cluster: nodes, services, then pods.
    fn sync_all(&mut self, out: &mut Vec<TopologyChange>) {
        let dirty = Dirty {
            nodes: self.nodes.keys().cloned().collect(),
            services: keys(&self.services),
            pods: keys(&self.pods),
            pod_namespaces: BTreeSet::new(),
        };
        self.sync(dirty, out);
    }

    fn sync(&mut self, mut dirty: Dirty, out: &mut Vec<TopologyChange>) {
        for name in &dirty.nodes {
            self.sync_node(name, out);
        }
        for (ns, name) in &dirty.services {
            self.sync_service(ns, name, out);
        }
        for ns in &dirty.pod_namespaces {
            // Pods emitted but gone from the state are already in `dirty.pods` (their delete
            // marked them), so the pods present are all that is left to recompute.
            if let Some(pods) = self.pods.get(ns) {
                dirty
                    .pods
                    .extend(pods.keys().map(|name| (ns.clone(), name.clone())));
            }
        }
        for (ns, name) in &dirty.pods {
            self.sync_pod(ns, name, out);
        }
    }

    fn sync_node(&mut self, name: &str, out: &mut Vec<TopologyChange>) {
        let desired = self.nodes.get(name).map(|n| {
            let mut e = Entity::new(EntityKind::Node, None, &n.name);
            e.labels = pick(&n.labels, &self.node_labels);
            e
        });
        self.sync_plain(EntityRef::node(name), desired, out);
    }

    fn sync_service(&mut self, ns: &str, name: &str, out: &mut Vec<TopologyChange>) {
        let desired = self.services.get(ns).and_then(|m| m.get(name)).map(|s| {
            let mut e = Entity::new(EntityKind::Service, Some(ns), &s.name);
            e.labels = pick(&s.labels, &self.service_labels);
            e
        });
        self.sync_plain(EntityRef::service(ns, name), desired, out);
    }

    /// Nodes and services: an entity without edges of its own.
    fn sync_plain(
        &mut self,
        target: EntityRef,
        desired: Option<Entity>,
        out: &mut Vec<TopologyChange>,
    ) {
        let id = target.id();
        match desired {
            Some(entity) => {
                if self.emitted.get(&id).map(|e| &e.entity) != Some(&entity) {
                    out.push(TopologyChange::UpsertEntity {
                        entity: entity.clone(),
                    });
                    self.emitted.insert(
                        id,
                        Emitted {
                            entity,
                            uid: None,
                            edges: Vec::new(),
                        },
                    );
                }
            }
            None => {
                if self.emitted.remove(&id).is_some() {
                    // The graph drops the edges into it with it: forget we sent them, so a pod
                    // that still names it re-sends its edge (and re-creates it) when it changes.
                    for e in self.emitted.values_mut() {
                        e.edges.retain(|edge| edge.to != target);
                    }
                    out.push(TopologyChange::DeleteEntity { entity: target });
                }
            }
        }
    }

    fn sync_pod(&mut self, ns: &str, name: &str, out: &mut Vec<TopologyChange>) {
        let target = EntityRef::pod(ns, name);
        let id = target.id();
        let prev = self.emitted.remove(&id);
        let pod = self
            .pods
            .get(ns)
            .and_then(|m| m.get(name))
            .filter(|p| !p.terminal);
        let Some(pod) = pod else {
            if prev.is_some() {
                out.push(TopologyChange::DeleteEntity { entity: target });
            }
            return;
        };
        // The same name with another uid is another pod: the old one is gone with its edges.
        let prev = match prev {
            Some(p) if p.uid.as_deref() != Some(pod.uid.as_str()) => {
                out.push(TopologyChange::DeleteEntity {
                    entity: target.clone(),
                });
                None
            }
            p => p,
        };
        let services = self.services_of(pod);
        let mut entity = Entity::new(EntityKind::Pod, Some(ns), name);
        entity.node.clone_from(&pod.node);
        entity.workload.clone_from(&pod.workload);
        entity.labels = pick(&pod.labels, &self.pod_labels);
        // Keep the service already reported while the pod still belongs to it: the graph
        // treats a change of `service` as leaving the old one.
        let kept = prev
            .as_ref()
            .and_then(|p| p.entity.service.as_ref())
            .filter(|s| services.contains(s));
        entity.service = kept.or(services.first()).cloned();

        let mut edges = Vec::with_capacity(1 + services.len());
        if let Some(node) = &pod.node {
            edges.push(Edge {
                kind: EdgeKind::RunsOn,
                from: target.clone(),
                to: EntityRef::node(node),
            });
        }
        edges.extend(services.iter().map(|s| Edge {
            kind: EdgeKind::BelongsTo,
            from: target.clone(),
            to: EntityRef::service(ns, s),
        }));

        let (prev_entity, prev_edges) = match &prev {
            Some(p) => (Some(&p.entity), p.edges.as_slice()),
            None => (None, &[][..]),
        };
        if prev_entity != Some(&entity) {
            out.push(TopologyChange::UpsertEntity {
                entity: entity.clone(),
            });
        }
        out.extend(
            prev_edges
                .iter()
                .filter(|e| !edges.contains(e))
                .map(|edge| TopologyChange::DeleteEdge { edge: edge.clone() }),
        );
        out.extend(
            edges
                .iter()
                .filter(|e| !prev_edges.contains(e))
                .map(|edge| TopologyChange::UpsertEdge { edge: edge.clone() }),
        );
        let uid = Some(pod.uid.clone());
        self.emitted.insert(id, Emitted { entity, uid, edges });
    }

    /// The services (known to us) a pod belongs to, sorted.
    // TODO(index): this scans the namespace's slices (or services); a pod → slices index
    // would make it independent of their number (see docs/WATCH.md, Cost).
    fn services_of(&self, pod: &PodView) -> Vec<String> {
        let Some(services) = self.services.get(&pod.namespace) else {
            return Vec::new();
        };
        let set: BTreeSet<&String> = match self.membership {
            Membership::EndpointSlices => self
                .slices
                .get(&pod.namespace)
                .into_iter()
                .flat_map(BTreeMap::values)
                .filter(|s| s.lists(pod))
                .filter_map(|s| s.service.as_ref())
                .filter(|s| services.contains_key(*s))
                .collect(),
            Membership::Selectors => services
                .values()
                .filter(|s| s.selects(&pod.labels))
                .map(|s| &s.name)
                .collect(),
        };
        set.into_iter().cloned().collect()
    }
}

fn in_scope<'a, T>(m: &'a ByNs<T>, scope: &'a Scope) -> impl Iterator<Item = &'a T> + 'a {
    m.iter()
        .filter(move |(ns, _)| scope.holds(ns))
        .flat_map(|(_, inner)| inner.values())
}

fn keys<T>(m: &ByNs<T>) -> BTreeSet<(String, String)> {
    m.iter()
        .flat_map(|(ns, inner)| inner.keys().map(move |n| (ns.clone(), n.clone())))
        .collect()
}

/// The labels among `keys`.
fn pick(labels: &BTreeMap<String, String>, keys: &[String]) -> BTreeMap<String, String> {
    keys.iter()
        .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests;
