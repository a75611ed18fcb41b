//! Property: whatever watch events arrive, and whichever of them are missed while disconnected,
//! a re-list brings the graph built from the emitted events to the graph built from a fresh
//! snapshot of the cluster as it now is. So events are never lost, doubled into inconsistency,
//! or left stale across re-lists.

use std::collections::{BTreeMap, BTreeSet};

use auspex_graph::LiveGraph;
use auspex_model::{EntityKind, TopologyEvent};
use auspex_watch::objects::{NodeView, PodView, ServiceView, SliceView};
use auspex_watch::{Membership, Object, Resource, Scope, Topology, WatchConfig};
use kube::runtime::watcher::Event;
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Pod {
        name: u8,
        uid: u8,
        node: Option<u8>,
        app: u8,
        terminal: bool,
    },
    DeletePod(u8),
    Service(u8),
    DeleteService(u8),
    /// The slice of service `svc` lists these (pod, uid) pairs.
    Slice(u8, Vec<(u8, u8)>),
    DeleteSlice(u8),
    NodeZone(u8, u8),
    DeleteNode(u8),
    /// The next `n` changes happen while the watcher is away.
    Disconnect(u8),
    Relist(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..2u8, proptest::option::of(0..3u8), 0..2u8, prop::bool::weighted(0.1))
            .prop_map(|(name, uid, node, app, terminal)| Op::Pod { name, uid, node, app, terminal }),
        1 => (0..3u8).prop_map(Op::DeletePod),
        1 => (0..2u8).prop_map(Op::Service),
        1 => (0..2u8).prop_map(Op::DeleteService),
        2 => (0..2u8, prop::collection::vec((0..3u8, 0..2u8), 0..4))
            .prop_map(|(s, pods)| Op::Slice(s, pods)),
        1 => (0..2u8).prop_map(Op::DeleteSlice),
        1 => (0..4u8, 0..2u8).prop_map(|(n, z)| Op::NodeZone(n, z)),
        // Only node 3 is deleted: no pod runs there (see docs/WATCH.md on deleted nodes).
        1 => Just(Op::DeleteNode(3)),
        1 => (1..4u8).prop_map(Op::Disconnect),
        1 => (0..4u8).prop_map(Op::Relist),
    ]
}

/// The cluster as the API server holds it.
#[derive(Default, Clone)]
struct Truth {
    pods: BTreeMap<u8, PodView>,
    services: BTreeMap<u8, ServiceView>,
    slices: BTreeMap<u8, SliceView>,
    nodes: BTreeMap<u8, NodeView>,
}

const RESOURCES: [Resource; 4] = [
    Resource::Node,
    Resource::Service,
    Resource::EndpointSlice,
    Resource::Pod,
];

fn labels(kv: &[(&str, String)]) -> BTreeMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn pod_view(name: u8, uid: u8, node: Option<u8>, app: u8, terminal: bool) -> PodView {
    PodView {
        namespace: "ns".into(),
        name: format!("p{name}"),
        uid: format!("p{name}-u{uid}"),
        node: node.map(|n| format!("n{n}")),
        workload: Some(format!("w{name}")),
        labels: labels(&[("app", format!("a{app}"))]),
        terminal,
    }
}

fn service_view(s: u8) -> ServiceView {
    ServiceView {
        namespace: "ns".into(),
        name: format!("s{s}"),
        selector: Some(labels(&[("app", format!("a{s}"))])),
        labels: BTreeMap::new(),
    }
}

fn node_view(n: u8, zone: u8) -> NodeView {
    NodeView {
        name: format!("n{n}"),
        labels: labels(&[("topology.kubernetes.io/zone", format!("z{zone}"))]),
    }
}

impl Truth {
    fn initial() -> Self {
        let mut t = Truth::default();
        for n in 0..4 {
            t.nodes.insert(n, node_view(n, 0));
        }
        t.services.insert(0, service_view(0));
        t
    }

    fn objects(&self, r: Resource) -> Vec<Object> {
        match r {
            Resource::Pod => self.pods.values().cloned().map(Object::Pod).collect(),
            Resource::Node => self.nodes.values().cloned().map(Object::Node).collect(),
            Resource::Service => self
                .services
                .values()
                .cloned()
                .map(Object::Service)
                .collect(),
            Resource::EndpointSlice => self.slices.values().cloned().map(Object::Slice).collect(),
        }
    }

    /// Applies a change; returns the watch event it makes.
    fn apply(&mut self, op: &Op) -> Option<(Resource, Event<Object>)> {
        Some(match op {
            &Op::Pod {
                name,
                uid,
                node,
                app,
                terminal,
            } => {
                let p = pod_view(name, uid, node, app, terminal);
                self.pods.insert(name, p.clone());
                (Resource::Pod, Event::Apply(Object::Pod(p)))
            }
            Op::DeletePod(n) => (
                Resource::Pod,
                Event::Delete(Object::Pod(self.pods.remove(n)?)),
            ),
            Op::Service(s) => {
                let v = service_view(*s);
                self.services.insert(*s, v.clone());
                (Resource::Service, Event::Apply(Object::Service(v)))
            }
            Op::DeleteService(s) => (
                Resource::Service,
                Event::Delete(Object::Service(self.services.remove(s)?)),
            ),
            Op::Slice(s, pods) => {
                let v = SliceView {
                    namespace: "ns".into(),
                    name: format!("s{s}-slice"),
                    service: Some(format!("s{s}")),
                    pods: pods
                        .iter()
                        .map(|(p, u)| (format!("p{p}"), format!("p{p}-u{u}")))
                        .collect(),
                };
                self.slices.insert(*s, v.clone());
                (Resource::EndpointSlice, Event::Apply(Object::Slice(v)))
            }
            Op::DeleteSlice(s) => (
                Resource::EndpointSlice,
                Event::Delete(Object::Slice(self.slices.remove(s)?)),
            ),
            Op::NodeZone(n, z) => {
                let v = node_view(*n, *z);
                self.nodes.insert(*n, v.clone());
                (Resource::Node, Event::Apply(Object::Node(v)))
            }
            Op::DeleteNode(n) => (
                Resource::Node,
                Event::Delete(Object::Node(self.nodes.remove(n)?)),
            ),
            Op::Disconnect(_) | Op::Relist(_) => return None,
        })
    }
}

fn relist(t: &mut Topology, truth: &Truth, r: Resource, out: &mut Vec<TopologyEvent>) {
    let scope = Scope::new(r, None);
    let mut changes = t.handle(&scope, Event::Init);
    for o in truth.objects(r) {
        changes.extend(t.handle(&scope, Event::InitApply(o)));
    }
    changes.extend(t.handle(&scope, Event::InitDone));
    out.extend(changes.into_iter().map(|change| TopologyEvent {
        timestamp_ms: 0,
        change,
    }));
}

type Shape = (
    BTreeMap<String, (Option<String>, Option<String>, BTreeMap<String, String>)>,
    BTreeSet<(String, &'static str, String)>,
);

/// What a graph says: every entity (with node, workload, labels) and every edge. A pod's
/// `service` is checked to be one of its `belongs_to` targets (which one may differ: the
/// watcher keeps the one it reported first while it still holds).
fn shape(g: &LiveGraph) -> Shape {
    let topo = g.topology();
    let edges: BTreeSet<(String, &'static str, String)> = topo
        .edge_references()
        .map(|e| {
            (
                topo[e.source()].id().as_str().to_string(),
                e.weight().as_str(),
                topo[e.target()].id().as_str().to_string(),
            )
        })
        .collect();
    let mut entities = BTreeMap::new();
    for s in g.entities() {
        if s.kind() == EntityKind::Pod {
            let services: BTreeSet<String> = edges
                .iter()
                .filter(|(f, k, t)| {
                    f == s.id().as_str() && *k == "belongs_to" && t.starts_with("service/")
                })
                .map(|(_, _, t)| t.rsplit('/').next().unwrap_or("").to_string())
                .collect();
            match s.service() {
                Some(svc) => assert!(
                    services.contains(svc),
                    "{:?}: {svc} not in {services:?}",
                    s.id()
                ),
                None => assert!(
                    services.is_empty(),
                    "{:?} has no service but {services:?}",
                    s.id()
                ),
            }
        }
        entities.insert(
            s.id().as_str().to_string(),
            (
                s.node().map(str::to_string),
                s.workload().map(str::to_string),
                s.labels().clone(),
            ),
        );
    }
    (entities, edges)
}

fn graph_of(events: &[TopologyEvent]) -> LiveGraph {
    let mut g = LiveGraph::default();
    for e in events {
        g.apply(e).expect("the graph takes every event");
    }
    g
}

fn check(membership: Membership, ops: &[Op]) {
    let cfg = WatchConfig {
        membership,
        pod_labels: vec!["app".into()],
        node_labels: vec!["topology.kubernetes.io/zone".into()],
        ..WatchConfig::default()
    };
    let scopes = Scope::all_for(&cfg);
    let resources: Vec<Resource> = RESOURCES
        .into_iter()
        .filter(|r| scopes.iter().any(|s| s.resource == *r))
        .collect();
    let mut truth = Truth::initial();
    let mut t = Topology::new(&cfg, scopes.clone());
    let mut events = Vec::new();
    for &r in &resources {
        relist(&mut t, &truth, r, &mut events);
    }
    let mut away = 0u8;
    for op in ops {
        match op {
            Op::Disconnect(n) => away = *n,
            Op::Relist(i) => {
                let r = resources[usize::from(*i) % resources.len()];
                relist(&mut t, &truth, r, &mut events);
            }
            _ => {
                let Some((r, ev)) = truth.apply(op) else {
                    continue;
                };
                if away > 0 {
                    away -= 1;
                } else if resources.contains(&r) {
                    let changes = t.handle(&Scope::new(r, None), ev);
                    events.extend(changes.into_iter().map(|change| TopologyEvent {
                        timestamp_ms: 0,
                        change,
                    }));
                }
            }
        }
    }
    for &r in &resources {
        relist(&mut t, &truth, r, &mut events);
    }
    // A second round of re-lists of an unchanged cluster says nothing.
    let before = events.len();
    for &r in &resources {
        relist(&mut t, &truth, r, &mut events);
    }
    assert_eq!(
        events.len(),
        before,
        "an unchanged re-list emitted {:?}",
        &events[before..]
    );

    let mut fresh = Topology::new(&cfg, scopes);
    let mut snapshot = Vec::new();
    for &r in &resources {
        relist(&mut fresh, &truth, r, &mut snapshot);
    }
    let live = graph_of(&events);
    let want = graph_of(&snapshot);
    assert_eq!(shape(&live), shape(&want));
    assert_eq!(
        live.count(EntityKind::Pod),
        truth.pods.values().filter(|p| !p.terminal).count()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn relists_converge_with_endpoint_slices(ops in prop::collection::vec(op(), 0..40)) {
        check(Membership::EndpointSlices, &ops);
    }

    #[test]
    fn relists_converge_with_selectors(ops in prop::collection::vec(op(), 0..40)) {
        check(Membership::Selectors, &ops);
    }
}
