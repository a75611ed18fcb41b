//! The translation layer at the size of a large cluster: 5,000 pods in 10 namespaces, 500
//! services with one EndpointSlice each, 200 nodes. Measures the first snapshot, an unchanged
//! re-list of all pods (what a 410 Gone costs), a pod heartbeat, and a service change that
//! recomputes its namespace. Elements are the objects handled.

use std::collections::BTreeMap;
use std::hint::black_box;

use auspex_watch::objects::{NodeView, PodView, ServiceView, SliceView};
use auspex_watch::{Object, Resource, Scope, Topology, WatchConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kube::runtime::watcher::Event;

const PODS: usize = 5_000;
const NAMESPACES: usize = 10;
const SERVICES: usize = 500;
const NODES: usize = 200;

fn pod(i: usize) -> PodView {
    let svc = i % SERVICES;
    PodView {
        namespace: format!("ns{}", svc % NAMESPACES),
        name: format!("svc{svc}-7d9f8c6b5-{i:05}"),
        uid: format!("uid-{i}"),
        node: Some(format!("node-{}", i % NODES)),
        workload: Some(format!("svc{svc}")),
        labels: [
            ("app".to_string(), format!("svc{svc}")),
            ("pod-template-hash".to_string(), "7d9f8c6b5".to_string()),
        ]
        .into(),
        terminal: false,
    }
}

fn service(s: usize) -> ServiceView {
    ServiceView {
        namespace: format!("ns{}", s % NAMESPACES),
        name: format!("svc{s}"),
        selector: Some([("app".to_string(), format!("svc{s}"))].into()),
        labels: BTreeMap::new(),
    }
}

fn slice(s: usize) -> SliceView {
    SliceView {
        namespace: format!("ns{}", s % NAMESPACES),
        name: format!("svc{s}-abcde"),
        service: Some(format!("svc{s}")),
        pods: (s..PODS)
            .step_by(SERVICES)
            .map(|i| (pod(i).name, pod(i).uid))
            .collect(),
    }
}

fn lists() -> Vec<(Resource, Vec<Object>)> {
    vec![
        (
            Resource::Node,
            (0..NODES)
                .map(|n| {
                    Object::Node(NodeView {
                        name: format!("node-{n}"),
                        labels: BTreeMap::new(),
                    })
                })
                .collect(),
        ),
        (
            Resource::Service,
            (0..SERVICES).map(|s| Object::Service(service(s))).collect(),
        ),
        (
            Resource::EndpointSlice,
            (0..SERVICES).map(|s| Object::Slice(slice(s))).collect(),
        ),
        (
            Resource::Pod,
            (0..PODS).map(|i| Object::Pod(pod(i))).collect(),
        ),
    ]
}

fn relist(t: &mut Topology, r: Resource, objects: &[Object]) -> usize {
    let scope = Scope::new(r, None);
    let mut n = t.handle(&scope, Event::Init).len();
    for o in objects {
        n += t.handle(&scope, Event::InitApply(o.clone())).len();
    }
    n + t.handle(&scope, Event::InitDone).len()
}

fn synced() -> (Topology, Vec<(Resource, Vec<Object>)>) {
    let cfg = WatchConfig::default();
    let mut t = Topology::new(&cfg, Scope::all_for(&cfg));
    let lists = lists();
    for (r, objs) in &lists {
        relist(&mut t, *r, objs);
    }
    (t, lists)
}

fn bench(c: &mut Criterion) {
    let lists = lists();
    let total: usize = lists.iter().map(|(_, o)| o.len()).sum();
    let mut g = c.benchmark_group("topology");
    g.sample_size(10);

    g.throughput(Throughput::Elements(total as u64));
    g.bench_function("snapshot_5000_pods", |b| {
        b.iter(|| {
            let cfg = WatchConfig::default();
            let mut t = Topology::new(&cfg, Scope::all_for(&cfg));
            let n: usize = lists.iter().map(|(r, o)| relist(&mut t, *r, o)).sum();
            black_box(n)
        })
    });

    let (mut t, lists) = synced();
    let pods = &lists[3].1;
    g.throughput(Throughput::Elements(pods.len() as u64));
    g.bench_function("unchanged_relist_5000_pods", |b| {
        b.iter(|| {
            let n = relist(&mut t, Resource::Pod, pods);
            assert_eq!(n, 0);
        })
    });

    g.throughput(Throughput::Elements(1));
    let scope = Scope::new(Resource::Pod, None);
    g.bench_function("pod_heartbeat", |b| {
        b.iter(|| black_box(t.handle(&scope, Event::Apply(pods[42].clone()))))
    });
    let services = Scope::new(Resource::Service, None);
    g.bench_function("service_change_recomputes_500_pods", |b| {
        b.iter(|| black_box(t.handle(&services, Event::Apply(Object::Service(service(7))))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
