use super::*;

use TopologyChange::{DeleteEdge, DeleteEntity, UpsertEdge, UpsertEntity};

fn cfg(membership: Membership) -> WatchConfig {
    WatchConfig {
        membership,
        pod_labels: vec!["app".into()],
        node_labels: vec!["zone".into()],
        ..WatchConfig::default()
    }
}

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod(name: &str, uid: &str, node: Option<&str>, app: &str) -> Object {
    Object::Pod(PodView {
        namespace: "shop".into(),
        name: name.into(),
        uid: uid.into(),
        node: node.map(str::to_string),
        workload: Some(app.into()),
        labels: labels(&[("app", app), ("pod-template-hash", "abc")]),
        terminal: false,
    })
}

fn node(name: &str) -> Object {
    Object::Node(NodeView {
        name: name.into(),
        labels: labels(&[("zone", "a"), ("kubernetes.io/hostname", name)]),
    })
}

fn service(name: &str) -> Object {
    Object::Service(ServiceView {
        namespace: "shop".into(),
        name: name.into(),
        selector: Some(labels(&[("app", name)])),
        labels: BTreeMap::new(),
    })
}

fn slice(name: &str, svc: &str, pods: &[(&str, &str)]) -> Object {
    Object::Slice(SliceView {
        namespace: "shop".into(),
        name: name.into(),
        service: Some(svc.into()),
        pods: pods
            .iter()
            .map(|(n, u)| (n.to_string(), u.to_string()))
            .collect(),
    })
}

fn pod_entity(name: &str, node: Option<&str>, svc: Option<&str>, app: &str) -> Entity {
    let mut e = Entity::new(EntityKind::Pod, Some("shop"), name);
    e.node = node.map(str::to_string);
    e.service = svc.map(str::to_string);
    e.workload = Some(app.into());
    e.labels = labels(&[("app", app)]);
    e
}

fn runs_on(pod: &str, node: &str) -> Edge {
    Edge {
        kind: EdgeKind::RunsOn,
        from: EntityRef::pod("shop", pod),
        to: EntityRef::node(node),
    }
}

fn belongs_to(pod: &str, svc: &str) -> Edge {
    Edge {
        kind: EdgeKind::BelongsTo,
        from: EntityRef::pod("shop", pod),
        to: EntityRef::service("shop", svc),
    }
}

fn scope(r: Resource) -> Scope {
    Scope::new(r, None)
}

/// Lists `objects` as the first list of their scopes; returns what the last InitDone emitted.
fn listed(t: &mut Topology, objects: Vec<(Resource, Vec<Object>)>) -> Vec<TopologyChange> {
    let mut out = Vec::new();
    for (r, objs) in objects {
        assert!(t.handle(&scope(r), Event::Init).is_empty());
        for o in objs {
            assert!(t.handle(&scope(r), Event::InitApply(o)).is_empty());
        }
        out = t.handle(&scope(r), Event::InitDone);
    }
    out
}

fn shop(membership: Membership) -> (Topology, Vec<TopologyChange>) {
    let c = cfg(membership);
    let mut t = Topology::new(&c, Scope::all_for(&c));
    let mut lists = vec![
        // Pods first: the snapshot order must not depend on the order the lists finish in.
        (
            Resource::Pod,
            vec![
                pod("web-1", "u1", Some("n1"), "web"),
                pod("web-2", "u2", None, "web"),
            ],
        ),
        (Resource::Node, vec![node("n2"), node("n1")]),
        (Resource::Service, vec![service("web")]),
    ];
    if membership == Membership::EndpointSlices {
        lists.push((
            Resource::EndpointSlice,
            vec![slice("web-x", "web", &[("web-1", "u1")])],
        ));
    }
    let out = listed(&mut t, lists);
    (t, out)
}

#[test]
fn nothing_before_every_list_then_a_sorted_snapshot() {
    let c = cfg(Membership::EndpointSlices);
    let mut t = Topology::new(&c, Scope::all_for(&c));
    assert!(
        listed(
            &mut t,
            vec![(Resource::Node, vec![node("n1")]), (Resource::Pod, vec![])]
        )
        .is_empty()
    );
    assert!(!t.is_synced());

    let (t, out) = shop(Membership::EndpointSlices);
    assert!(t.is_synced());
    let mut n1 = Entity::new(EntityKind::Node, None, "n1");
    n1.labels = labels(&[("zone", "a")]);
    let mut n2 = n1.clone();
    n2.name = "n2".into();
    assert_eq!(
        out,
        vec![
            UpsertEntity { entity: n1 },
            UpsertEntity { entity: n2 },
            UpsertEntity {
                entity: Entity::new(EntityKind::Service, Some("shop"), "web")
            },
            UpsertEntity {
                entity: pod_entity("web-1", Some("n1"), Some("web"), "web")
            },
            UpsertEdge {
                edge: runs_on("web-1", "n1")
            },
            UpsertEdge {
                edge: belongs_to("web-1", "web")
            },
            UpsertEntity {
                entity: pod_entity("web-2", None, None, "web")
            },
        ]
    );
    assert_eq!(t.emitted_len(), 5);
}

#[test]
fn heartbeats_emit_nothing_and_scheduling_emits_runs_on() {
    let (mut t, _) = shop(Membership::EndpointSlices);
    let pods = scope(Resource::Pod);
    assert!(
        t.handle(&pods, Event::Apply(pod("web-1", "u1", Some("n1"), "web")))
            .is_empty()
    );
    assert_eq!(
        t.handle(&pods, Event::Apply(pod("web-2", "u2", Some("n2"), "web"))),
        vec![
            UpsertEntity {
                entity: pod_entity("web-2", Some("n2"), None, "web")
            },
            UpsertEdge {
                edge: runs_on("web-2", "n2")
            },
        ]
    );
}

#[test]
fn a_recreated_pod_of_the_same_name_is_a_new_pod() {
    let (mut t, _) = shop(Membership::EndpointSlices);
    let pods = scope(Resource::Pod);
    // Seen through a re-list only: the same name, another uid, another node.
    assert_eq!(
        t.handle(&pods, Event::Apply(pod("web-1", "u9", Some("n2"), "web"))),
        vec![
            DeleteEntity {
                entity: EntityRef::pod("shop", "web-1")
            },
            UpsertEntity {
                entity: pod_entity("web-1", Some("n2"), None, "web")
            },
            UpsertEdge {
                edge: runs_on("web-1", "n2")
            },
        ],
        "the slice still names uid u1, so the new pod is not in the service yet"
    );
    assert_eq!(
        t.handle(
            &scope(Resource::EndpointSlice),
            Event::Apply(slice("web-x", "web", &[("web-1", "u9")]))
        ),
        vec![
            UpsertEntity {
                entity: pod_entity("web-1", Some("n2"), Some("web"), "web")
            },
            UpsertEdge {
                edge: belongs_to("web-1", "web")
            },
        ]
    );
}

#[test]
fn deleted_and_finished_pods_are_one_delete_entity() {
    let (mut t, _) = shop(Membership::EndpointSlices);
    let pods = scope(Resource::Pod);
    let mut done = pod("web-1", "u1", Some("n1"), "web");
    if let Object::Pod(p) = &mut done {
        p.terminal = true;
    }
    let gone = vec![DeleteEntity {
        entity: EntityRef::pod("shop", "web-1"),
    }];
    assert_eq!(t.handle(&pods, Event::Apply(done.clone())), gone);
    assert!(t.handle(&pods, Event::Delete(done)).is_empty());
    assert_eq!(
        t.handle(&pods, Event::Delete(pod("web-2", "u2", None, "web"))),
        vec![DeleteEntity {
            entity: EntityRef::pod("shop", "web-2")
        }]
    );
    assert_eq!(t.emitted_len(), 3);
}

#[test]
fn leaving_and_joining_services() {
    let (mut t, _) = shop(Membership::EndpointSlices);
    let slices = scope(Resource::EndpointSlice);
    // A second service lists web-1 too: one more edge, `service` stays the first one.
    assert_eq!(
        t.handle(&scope(Resource::Service), Event::Apply(service("api"))),
        vec![UpsertEntity {
            entity: Entity::new(EntityKind::Service, Some("shop"), "api")
        }]
    );
    assert_eq!(
        t.handle(
            &slices,
            Event::Apply(slice("api-x", "api", &[("web-1", "u1")]))
        ),
        vec![UpsertEdge {
            edge: belongs_to("web-1", "api")
        }]
    );
    // It leaves `web`: `service` moves to `api` first, then the edge goes.
    assert_eq!(
        t.handle(&slices, Event::Apply(slice("web-x", "web", &[]))),
        vec![
            UpsertEntity {
                entity: pod_entity("web-1", Some("n1"), Some("api"), "web")
            },
            DeleteEdge {
                edge: belongs_to("web-1", "web")
            },
        ]
    );
    // The slice of `api` is deleted: it belongs to no service.
    assert_eq!(
        t.handle(
            &slices,
            Event::Delete(slice("api-x", "api", &[("web-1", "u1")]))
        ),
        vec![
            UpsertEntity {
                entity: pod_entity("web-1", Some("n1"), None, "web")
            },
            DeleteEdge {
                edge: belongs_to("web-1", "api")
            },
        ]
    );
}

#[test]
fn a_deleted_service_takes_its_edges_without_delete_edges() {
    let (mut t, _) = shop(Membership::EndpointSlices);
    assert_eq!(
        t.handle(&scope(Resource::Service), Event::Delete(service("web"))),
        vec![
            DeleteEntity {
                entity: EntityRef::service("shop", "web")
            },
            UpsertEntity {
                entity: pod_entity("web-1", Some("n1"), None, "web")
            },
        ]
    );
    // It comes back: the edge is sent again.
    assert_eq!(
        t.handle(&scope(Resource::Service), Event::Apply(service("web"))),
        vec![
            UpsertEntity {
                entity: Entity::new(EntityKind::Service, Some("shop"), "web")
            },
            UpsertEntity {
                entity: pod_entity("web-1", Some("n1"), Some("web"), "web")
            },
            UpsertEdge {
                edge: belongs_to("web-1", "web")
            },
        ]
    );
}

#[test]
fn a_relist_emits_only_what_changed_in_between() {
    let (mut t, _) = shop(Membership::EndpointSlices);
    let out = listed(
        &mut t,
        vec![(
            Resource::Pod,
            vec![
                // web-1 unchanged, web-2 gone, web-3 new.
                pod("web-1", "u1", Some("n1"), "web"),
                pod("web-3", "u3", Some("n2"), "web"),
            ],
        )],
    );
    assert_eq!(
        out,
        vec![
            DeleteEntity {
                entity: EntityRef::pod("shop", "web-2")
            },
            UpsertEntity {
                entity: pod_entity("web-3", Some("n2"), None, "web")
            },
            UpsertEdge {
                edge: runs_on("web-3", "n2")
            },
        ]
    );
    let nodes = listed(&mut t, vec![(Resource::Node, vec![node("n1")])]);
    assert_eq!(
        nodes,
        vec![DeleteEntity {
            entity: EntityRef::node("n2")
        }]
    );
    // An identical re-list is silent.
    assert!(listed(&mut t, vec![(Resource::Node, vec![node("n1")])]).is_empty());
}

#[test]
fn selectors_membership_follows_pod_labels() {
    let (mut t, out) = shop(Membership::Selectors);
    // Both web pods match `app=web`.
    assert!(out.contains(&UpsertEdge {
        edge: belongs_to("web-2", "web")
    }));
    let pods = scope(Resource::Pod);
    // web-2's label changes: it leaves the service.
    assert_eq!(
        t.handle(&pods, Event::Apply(pod("web-2", "u2", None, "canary"))),
        vec![
            UpsertEntity {
                entity: pod_entity("web-2", None, None, "canary")
            },
            DeleteEdge {
                edge: belongs_to("web-2", "web")
            },
        ]
    );
}

#[test]
fn namespaced_scopes_relist_only_their_namespace() {
    let c = WatchConfig {
        namespaces: vec!["shop".into(), "ops".into()],
        ..cfg(Membership::Selectors)
    };
    let scopes = Scope::all_for(&c);
    assert_eq!(scopes.len(), 5);
    let mut t = Topology::new(&c, scopes.clone());
    let mut ops_pod = pod("tool", "u7", Some("n1"), "tool");
    if let Object::Pod(p) = &mut ops_pod {
        p.namespace = "ops".into();
    }
    for s in &scopes {
        t.handle(s, Event::Init);
        match (s.resource, s.namespace.as_deref()) {
            (Resource::Pod, Some("shop")) => {
                t.handle(s, Event::InitApply(pod("web-1", "u1", Some("n1"), "web")));
            }
            (Resource::Pod, Some("ops")) => {
                t.handle(s, Event::InitApply(ops_pod.clone()));
            }
            _ => {}
        }
        t.handle(s, Event::InitDone);
    }
    assert_eq!(t.counts().pods, 2);
    // The shop pods are re-listed empty: only web-1 goes.
    let shop = Scope::new(Resource::Pod, Some("shop"));
    t.handle(&shop, Event::Init);
    assert_eq!(
        t.handle(&shop, Event::InitDone),
        vec![DeleteEntity {
            entity: EntityRef::pod("shop", "web-1")
        }]
    );
    assert_eq!(t.counts().pods, 1);
}
