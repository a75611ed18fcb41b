//! Behaviour of the live graph through its public API: events, samples, expiry, queries, export.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use auspex_graph::{Direction, GraphConfig, GraphError, LiveGraph, MessageEdges};
use auspex_model::{
    Edge, EdgeKind, Entity, EntityId, EntityKind, EntityRef, MetricSample, TopologyChange,
    TopologyEvent,
};

const MIN: i64 = 60_000;

fn id(s: &str) -> EntityId {
    EntityId::parse(s).expect("test ids are well-formed").id()
}

fn pod(ns: &str, name: &str, node: Option<&str>, service: Option<&str>) -> Entity {
    let mut e = Entity::new(EntityKind::Pod, Some(ns), name);
    e.node = node.map(str::to_string);
    e.service = service.map(str::to_string);
    e
}

fn sample(ts: i64, entity: Entity) -> MetricSample {
    MetricSample {
        timestamp_ms: ts,
        entity,
        metrics: BTreeMap::from([("cpu_usage_cores".to_string(), 0.5)]),
    }
}

fn event(ts: i64, change: TopologyChange) -> TopologyEvent {
    TopologyEvent {
        timestamp_ms: ts,
        change,
    }
}

fn upsert(ts: i64, entity: Entity) -> TopologyEvent {
    event(ts, TopologyChange::UpsertEntity { entity })
}

fn edge(kind: EdgeKind, from: EntityRef, to: EntityRef) -> Edge {
    Edge { kind, from, to }
}

fn calls(from: &str, to: &str) -> TopologyEvent {
    event(
        0,
        TopologyChange::UpsertEdge {
            edge: edge(
                EdgeKind::Calls,
                EntityRef::service("shop", from),
                EntityRef::service("shop", to),
            ),
        },
    )
}

/// shop: frontend -> cart -> redis; pods cart-1, cart-2 (service cart) and web-1 (frontend) on
/// n1, redis-1 (service redis) on n2.
fn shop() -> LiveGraph {
    let mut g = LiveGraph::default();
    for (name, node, svc) in [
        ("cart-1", "n1", "cart"),
        ("cart-2", "n1", "cart"),
        ("web-1", "n1", "frontend"),
        ("redis-1", "n2", "redis"),
    ] {
        g.observe(&sample(0, pod("shop", name, Some(node), Some(svc))))
            .unwrap();
    }
    g.apply(&calls("frontend", "cart")).unwrap();
    g.apply(&calls("cart", "redis")).unwrap();
    g
}

#[test]
fn sample_adds_pod_node_service_and_edges() {
    let mut g = LiveGraph::default();
    g.observe(&sample(5, pod("shop", "cart-1", Some("n1"), Some("cart"))))
        .unwrap();
    assert_eq!(g.len(), 3);
    assert_eq!(g.count(EntityKind::Pod), 1);
    assert_eq!(g.count(EntityKind::Node), 1);
    assert_eq!(g.count(EntityKind::Service), 1);
    assert_eq!(g.edge_count(), 2);
    assert_eq!(g.node_of(&id("pod/shop/cart-1")), Some(&id("node/n1")));
    assert_eq!(
        g.members_of(&id("service/shop/cart")),
        vec![id("pod/shop/cart-1")]
    );
    let s = g.state(&id("pod/shop/cart-1")).unwrap();
    assert_eq!(
        (s.node(), s.service(), s.last_seen_ms()),
        (Some("n1"), Some("cart"), 5)
    );
    // Referenced vertices are seen at the sample's time too.
    assert_eq!(g.state(&id("node/n1")).unwrap().last_seen_ms(), 5);
}

#[test]
fn pod_moves_via_topology_upsert() {
    let mut g = LiveGraph::default();
    g.apply(&upsert(0, pod("shop", "cart-1", Some("n1"), None)))
        .unwrap();
    g.apply(&upsert(1, pod("shop", "cart-1", Some("n2"), None)))
        .unwrap();
    assert_eq!(g.node_of(&id("pod/shop/cart-1")), Some(&id("node/n2")));
    assert!(g.pods_on(&id("node/n1")).is_empty());
    assert_eq!(g.pods_on(&id("node/n2")), vec![id("pod/shop/cart-1")]);
    assert_eq!(g.edge_count_of(EdgeKind::RunsOn), 1);
    // The old node stays (it may have other pods) until it expires.
    assert!(g.contains(&id("node/n1")));
}

#[test]
fn pod_moves_via_sample_fields_and_absent_node_keeps_it() {
    let mut g = LiveGraph::default();
    g.observe(&sample(0, pod("shop", "cart-1", Some("n1"), None)))
        .unwrap();
    g.observe(&sample(1, pod("shop", "cart-1", Some("n2"), None)))
        .unwrap();
    assert_eq!(g.node_of(&id("pod/shop/cart-1")), Some(&id("node/n2")));
    assert_eq!(g.state(&id("pod/shop/cart-1")).unwrap().node(), Some("n2"));
    assert_eq!(g.edge_count(), 1);
    // A sample without a node field says nothing about placement.
    g.observe(&sample(2, pod("shop", "cart-1", None, None)))
        .unwrap();
    assert_eq!(g.node_of(&id("pod/shop/cart-1")), Some(&id("node/n2")));
}

#[test]
fn runs_on_edge_event_replaces_the_previous_node() {
    let mut g = LiveGraph::default();
    g.observe(&sample(0, pod("shop", "cart-1", Some("n1"), None)))
        .unwrap();
    let e = edge(
        EdgeKind::RunsOn,
        EntityRef::pod("shop", "cart-1"),
        EntityRef::node("n3"),
    );
    g.apply(&event(1, TopologyChange::UpsertEdge { edge: e }))
        .unwrap();
    assert_eq!(g.node_of(&id("pod/shop/cart-1")), Some(&id("node/n3")));
    assert_eq!(g.edge_count(), 1);
}

#[test]
fn service_change_moves_belongs_to() {
    let mut g = LiveGraph::default();
    g.observe(&sample(0, pod("shop", "p", None, Some("a"))))
        .unwrap();
    g.observe(&sample(1, pod("shop", "p", None, Some("b"))))
        .unwrap();
    assert!(g.members_of(&id("service/shop/a")).is_empty());
    assert_eq!(g.members_of(&id("service/shop/b")), vec![id("pod/shop/p")]);
    assert_eq!(g.edge_count(), 1);
}

#[test]
fn delete_entity_takes_its_edges() {
    let mut g = shop();
    let (v, e) = (g.len(), g.edge_count());
    g.apply(&event(
        1,
        TopologyChange::DeleteEntity {
            entity: EntityRef::pod("shop", "cart-1"),
        },
    ))
    .unwrap();
    assert!(!g.contains(&id("pod/shop/cart-1")));
    assert_eq!((g.len(), g.edge_count()), (v - 1, e - 2));
    assert_eq!(g.pods_on(&id("node/n1")).len(), 2);

    // Deleting a node drops the pods' runs_on edges and their node field.
    assert!(g.remove(&id("node/n1")));
    assert!(!g.remove(&id("node/n1")));
    assert_eq!(g.node_of(&id("pod/shop/cart-2")), None);
    assert_eq!(g.state(&id("pod/shop/cart-2")).unwrap().node(), None);
    assert_eq!(g.edge_count_of(EdgeKind::RunsOn), 1);
    // A later sample puts it back.
    g.observe(&sample(2, pod("shop", "cart-2", Some("n1"), Some("cart"))))
        .unwrap();
    assert_eq!(g.node_of(&id("pod/shop/cart-2")), Some(&id("node/n1")));
}

#[test]
fn delete_edge_removes_only_that_edge() {
    let mut g = shop();
    let e = g.edge_count();
    let del = |kind, from, to| {
        event(
            1,
            TopologyChange::DeleteEdge {
                edge: edge(kind, from, to),
            },
        )
    };
    let (cart, redis) = (
        EntityRef::service("shop", "cart"),
        EntityRef::service("shop", "redis"),
    );
    // Wrong kind: nothing happens.
    g.apply(&del(EdgeKind::BelongsTo, cart.clone(), redis.clone()))
        .unwrap();
    assert_eq!(g.edge_count(), e);
    g.apply(&del(EdgeKind::Calls, cart, redis)).unwrap();
    assert_eq!(g.edge_count(), e - 1);
    assert!(g.callees_of(&id("service/shop/cart")).is_empty());
    assert_eq!(
        g.callers_of(&id("service/shop/cart")),
        vec![id("service/shop/frontend")]
    );
    assert!(g.contains(&id("service/shop/redis")));
    // Unknown endpoints: no-op.
    g.apply(&del(
        EdgeKind::Calls,
        EntityRef::service("x", "y"),
        EntityRef::service("x", "z"),
    ))
    .unwrap();
    assert_eq!(g.edge_count(), e - 1);
}

#[test]
fn duplicate_edges_are_ignored() {
    let mut g = LiveGraph::default();
    for _ in 0..3 {
        g.apply(&calls("a", "b")).unwrap();
        g.observe(&sample(0, pod("shop", "p", Some("n1"), Some("a"))))
            .unwrap();
    }
    assert_eq!(g.len(), 4);
    assert_eq!(g.edge_count(), 3);
    // The reverse direction and another kind are different edges.
    g.apply(&calls("b", "a")).unwrap();
    assert_eq!(g.edge_count(), 4);
}

#[test]
fn invalid_edges_are_refused() {
    let mut g = LiveGraph::default();
    let bad = edge(
        EdgeKind::RunsOn,
        EntityRef::node("n1"),
        EntityRef::pod("shop", "p"),
    );
    let err = g
        .apply(&event(0, TopologyChange::UpsertEdge { edge: bad }))
        .unwrap_err();
    assert!(matches!(err, GraphError::InvalidEdge { .. }), "{err}");
    assert!(g.is_empty());
}

#[test]
fn container_runs_on_node_and_belongs_to_pod() {
    let mut g = LiveGraph::default();
    let mut c = Entity::new(EntityKind::Container, Some("shop"), "cart-1/server");
    c.node = Some("n1".into());
    g.observe(&sample(0, c)).unwrap();
    let cid = id("container/shop/cart-1/server");
    assert_eq!(g.node_of(&cid), Some(&id("node/n1")));
    let n = g.neighbours(&cid, 1);
    let pod = n.iter().find(|n| n.id == id("pod/shop/cart-1")).unwrap();
    assert_eq!(
        (pod.relation, pod.direction),
        (EdgeKind::BelongsTo, Direction::Out)
    );
    // Containers are not pods.
    assert!(g.pods_on(&id("node/n1")).is_empty());
}

#[test]
fn max_entities_refuses_and_changes_nothing() {
    let cfg = GraphConfig {
        max_entities: 3,
        ..GraphConfig::default()
    };
    let mut g = LiveGraph::new(cfg).unwrap();
    g.observe(&sample(0, pod("shop", "a", Some("n1"), None)))
        .unwrap();
    // Needs a pod, a node and a service: 2 + 3 > 3.
    let err = g
        .observe(&sample(0, pod("shop", "b", Some("n2"), Some("s"))))
        .unwrap_err();
    assert!(matches!(err, GraphError::Full { new: 3, .. }), "{err}");
    assert_eq!((g.len(), g.edge_count()), (2, 1));
    // One more fits.
    g.observe(&sample(0, pod("shop", "b", Some("n1"), None)))
        .unwrap();
    assert_eq!(g.len(), 3);
    assert!(
        LiveGraph::new(GraphConfig {
            ttl_ms: -1,
            ..GraphConfig::default()
        })
        .is_err()
    );
}

#[test]
fn ttl_expiry_by_kind() {
    let cfg = GraphConfig {
        ttl_ms: 10 * MIN,
        node_ttl_ms: 60 * MIN,
        service_ttl_ms: 60 * MIN,
        ..GraphConfig::default()
    };
    let mut g = LiveGraph::new(cfg).unwrap();
    g.observe(&sample(0, pod("shop", "old", Some("n1"), Some("cart"))))
        .unwrap();
    g.observe(&sample(5 * MIN, pod("shop", "young", None, None)))
        .unwrap();
    // Exactly the TTL: still alive.
    assert!(g.expire(10 * MIN).is_empty());
    assert_eq!(g.expire(10 * MIN + 1), vec![id("pod/shop/old")]);
    assert_eq!(g.edge_count(), 0);
    assert!(g.contains(&id("node/n1")) && g.contains(&id("pod/shop/young")));
    // A late sample does not make an entity older.
    g.observe(&sample(0, pod("shop", "young", None, None)))
        .unwrap();
    assert_eq!(
        g.state(&id("pod/shop/young")).unwrap().last_seen_ms(),
        5 * MIN
    );
    assert_eq!(g.expire(15 * MIN + 1), vec![id("pod/shop/young")]);
    assert_eq!(
        g.expire(60 * MIN + 1),
        vec![id("node/n1"), id("service/shop/cart")]
    );
    assert!(g.is_empty());
}

#[test]
fn pods_keep_their_node_alive() {
    let mut g = LiveGraph::default();
    let ttl = g.config().node_ttl_ms;
    for t in [0, ttl / 2, ttl, 3 * ttl / 2] {
        g.observe(&sample(t, pod("shop", "p", Some("n1"), None)))
            .unwrap();
        assert!(g.expire(t).is_empty());
    }
    assert!(g.contains(&id("node/n1")));
}

#[test]
fn neighbours_at_one_hop() {
    let g = shop();
    let n = g.neighbours(&id("pod/shop/cart-1"), 1);
    let got: Vec<_> = n
        .iter()
        .map(|n| (n.id.as_str(), n.relation, n.direction, n.hops))
        .collect();
    assert_eq!(
        got,
        vec![
            ("node/n1", EdgeKind::RunsOn, Direction::Out, 1),
            ("service/shop/cart", EdgeKind::BelongsTo, Direction::Out, 1),
        ]
    );
    assert!(g.neighbours(&id("pod/shop/cart-1"), 0).is_empty());
    assert!(g.neighbours(&id("pod/shop/nope"), 3).is_empty());
}

#[test]
fn neighbours_at_two_hops_cross_nodes_and_services() {
    let g = shop();
    let n = g.neighbours(&id("pod/shop/cart-1"), 2);
    let at2: Vec<_> = n
        .iter()
        .filter(|n| n.hops == 2)
        .map(|n| (n.id.as_str(), n.via.as_str(), n.relation, n.direction))
        .collect();
    assert_eq!(
        at2,
        vec![
            // cart-2 is reachable via the node and the service: the smaller via wins.
            (
                "pod/shop/cart-2",
                "node/n1",
                EdgeKind::RunsOn,
                Direction::In
            ),
            ("pod/shop/web-1", "node/n1", EdgeKind::RunsOn, Direction::In),
            (
                "service/shop/frontend",
                "service/shop/cart",
                EdgeKind::Calls,
                Direction::In
            ),
            (
                "service/shop/redis",
                "service/shop/cart",
                EdgeKind::Calls,
                Direction::Out
            ),
        ]
    );
    // Each entity once, never the start.
    let mut ids: Vec<_> = n.iter().map(|n| n.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), n.len());
    assert!(!ids.contains(&id("pod/shop/cart-1")));
    // At 3 hops redis-1 (via redis) and n2 appear; nothing is reached twice.
    let n3 = g.neighbours(&id("pod/shop/cart-1"), 3);
    assert_eq!(
        n3.len(),
        g.len() - 1 - 1,
        "all but the start and n2 (4 hops)"
    );
}

#[test]
fn neighbours_do_not_depend_on_insertion_order() {
    let forward = shop();
    let mut backward = LiveGraph::default();
    backward.apply(&calls("cart", "redis")).unwrap();
    backward.apply(&calls("frontend", "cart")).unwrap();
    for (name, node, svc) in [
        ("redis-1", "n2", "redis"),
        ("web-1", "n1", "frontend"),
        ("cart-2", "n1", "cart"),
        ("cart-1", "n1", "cart"),
    ] {
        backward
            .observe(&sample(0, pod("shop", name, Some(node), Some(svc))))
            .unwrap();
    }
    for start in ["pod/shop/cart-1", "node/n1", "service/shop/cart"] {
        assert_eq!(
            forward.neighbours(&id(start), 4),
            backward.neighbours(&id(start), 4)
        );
    }
    let f = forward.export(0, |_| None).unwrap();
    let b = backward.export(0, |_| None).unwrap();
    assert_eq!(f, b);
}

#[test]
fn subgraph_is_the_induced_view_and_serialises() {
    let g = shop();
    let s = g.subgraph(&id("service/shop/cart"), 1).unwrap();
    let ids: Vec<_> = s.vertices.iter().map(|v| (v.id.as_str(), v.hops)).collect();
    assert_eq!(
        ids,
        vec![
            ("service/shop/cart", 0),
            ("pod/shop/cart-1", 1),
            ("pod/shop/cart-2", 1),
            ("service/shop/frontend", 1),
            ("service/shop/redis", 1),
        ]
    );
    // Only edges between members: cart-1 -> n1 is left out.
    assert_eq!(s.edges.len(), 4);
    assert!(s.edges.iter().all(|e| e.to != "node/n1"));
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"kind\":\"calls\""), "{json}");
    assert!(g.subgraph(&id("service/shop/nope"), 1).is_none());
}

#[test]
fn export_compacts_after_deletions() {
    let mut g = shop();
    // Holes in the StableGraph: remove early vertices.
    g.remove(&id("pod/shop/cart-1"));
    g.remove(&id("service/shop/frontend"));
    let feats: HashMap<EntityId, Vec<f32>> = [
        ("pod/shop/cart-2", vec![1.0, 2.0]),
        ("node/n2", vec![3.0, 4.0]),
    ]
    .into_iter()
    .map(|(k, v)| (id(k), v))
    .collect();
    let x = g.export(2, |i| feats.get(i).map(Vec::as_slice)).unwrap();

    let n = x.len();
    assert_eq!(n, g.len());
    assert_eq!(x.edge_count(), g.edge_count());
    assert!(x.ids.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    assert!(
        x.edge_src
            .iter()
            .chain(&x.edge_dst)
            .all(|&i| (i as usize) < n)
    );
    assert_eq!(x.node_features.len(), n * 2);
    for (i, id) in x.ids.iter().enumerate() {
        assert_eq!(x.index_of(id), Some(i as u32));
        assert_eq!(x.kinds[i], id.kind());
        match feats.get(id) {
            Some(f) => assert_eq!((x.features(i), x.has_features[i]), (f.as_slice(), true)),
            None => assert_eq!((x.features(i), x.has_features[i]), (&[0.0, 0.0][..], false)),
        }
    }
    // Every exported edge is a stored edge between the right entities.
    let got: Vec<_> = (0..x.edge_count())
        .map(|k| {
            (
                x.ids[x.edge_src[k] as usize].as_str(),
                x.ids[x.edge_dst[k] as usize].as_str(),
                x.edge_kind[k],
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("pod/shop/cart-2", "node/n1", EdgeKind::RunsOn),
            ("pod/shop/cart-2", "service/shop/cart", EdgeKind::BelongsTo),
            ("pod/shop/redis-1", "node/n2", EdgeKind::RunsOn),
            (
                "pod/shop/redis-1",
                "service/shop/redis",
                EdgeKind::BelongsTo
            ),
            ("pod/shop/web-1", "node/n1", EdgeKind::RunsOn),
            ("service/shop/cart", "service/shop/redis", EdgeKind::Calls),
        ]
    );
    // The deleted service's members forget it.
    assert_eq!(g.state(&id("pod/shop/web-1")).unwrap().service(), None);
    assert_eq!(x.index_of(&id("pod/shop/cart-1")), None);
}

#[test]
fn export_rejects_rows_of_the_wrong_width() {
    let g = shop();
    let row = [1.0_f32; 3];
    let err = g.export(4, |_| Some(&row[..])).unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::FeatureDim {
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn message_edges_add_each_edge_reversed() {
    let g = shop();
    let x = g.export(0, |_| None).unwrap();
    let m = x.message_edges();
    let e = x.edge_count();
    assert_eq!(m.len(), 2 * e);
    for k in 0..e {
        assert_eq!((m.src[k], m.dst[k]), (x.edge_src[k], x.edge_dst[k]));
        assert_eq!((m.src[e + k], m.dst[e + k]), (x.edge_dst[k], x.edge_src[k]));
        assert_eq!(m.kind[e + k], x.edge_kind[k]);
        assert!(!m.reversed[k] && m.reversed[e + k]);
        assert_ne!(m.relation(k), m.relation(e + k));
        assert!(m.relation(e + k) < MessageEdges::RELATIONS);
    }
}

/// A 10k-pod cluster built from samples, then exported: sizes are asserted, the time is printed
/// (`cargo test -p auspex-graph --test graph -- --nocapture large`), never asserted.
#[test]
fn large_graph_builds_and_exports() {
    const PODS: usize = 10_000;
    const NODES: usize = 200;
    const SERVICES: usize = 500;
    let mut g = LiveGraph::default();
    let t = Instant::now();
    for p in 0..PODS {
        let node = format!("node-{}", p % NODES);
        let svc = format!("svc-{}", p % SERVICES);
        g.observe(&sample(
            0,
            pod("ns", &format!("pod-{p}"), Some(&node), Some(&svc)),
        ))
        .unwrap();
    }
    for s in 0..SERVICES {
        for d in 1..=3 {
            let (from, to) = (
                format!("svc-{s}"),
                format!("svc-{}", (s + d * 7) % SERVICES),
            );
            g.apply(&event(
                0,
                TopologyChange::UpsertEdge {
                    edge: edge(
                        EdgeKind::Calls,
                        EntityRef::service("ns", &from),
                        EntityRef::service("ns", &to),
                    ),
                },
            ))
            .unwrap();
        }
    }
    let built = t.elapsed();
    // Reschedule a tenth of the pods and delete another tenth, to leave holes.
    for p in (0..PODS).step_by(10) {
        g.observe(&sample(
            1,
            pod("ns", &format!("pod-{p}"), Some("node-0"), None),
        ))
        .unwrap();
        g.remove(&id(&format!("pod/ns/pod-{}", p + 1)));
    }
    let pods = PODS - PODS / 10;
    assert_eq!(g.len(), pods + NODES + SERVICES);
    assert_eq!(g.edge_count(), 2 * pods + 3 * SERVICES);

    let dim = 16;
    let row = vec![0.5_f32; dim];
    let t = Instant::now();
    let x = g
        .export(dim, |i| (i.kind() == EntityKind::Pod).then_some(&row[..]))
        .unwrap();
    let exported = t.elapsed();
    assert_eq!(x.len(), g.len());
    assert_eq!(x.edge_count(), g.edge_count());
    assert_eq!(x.node_features.len(), x.len() * dim);
    assert_eq!(x.has_features.iter().filter(|&&h| h).count(), pods);
    // node-0's original pods are all among the rescheduled tenth.
    assert_eq!(g.pods_on(&id("node/node-0")).len(), PODS / 10);
    let t = Instant::now();
    let n = g.neighbours(&id("pod/ns/pod-0"), 2);
    let bfs = t.elapsed();
    assert!(n.len() > PODS / 10);
    eprintln!(
        "large graph: {} vertices, {} edges; built from samples in {built:?}, exported in \
         {exported:?}, 2-hop neighbourhood of a pod on the busiest node ({} entities) in {bfs:?}",
        x.len(),
        x.edge_count(),
        n.len()
    );
}
