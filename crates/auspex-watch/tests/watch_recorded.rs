//! The watcher against API responses in kube-apiserver's wire format, served over real HTTP.
//!
//! A small axum server plays the API server: `GET` list calls answer with the next list
//! fixture of that resource (`<resource>.list.<n>.json`), `?watch=true` calls stream
//! `<resource>.watch.<resourceVersion>.ndjson` chunk by chunk and then close (as the API server
//! does at its timeout); a watch at a resourceVersion with no fixture stays open and silent.
//! Each scripted watch stream is held back until the test opens its stage, so the events of
//! one stage can be asserted exactly before the next starts.
//!
//! The scenario (namespace `shop`, four nodes):
//! 1. lists: cart-0 (StatefulSet) on node-a in service cart; two checkout pods on node-a and
//!    node-b in service checkout; a Pending checkout pod; a finished Job pod (not emitted);
//! 2. pods watch: the Pending pod is scheduled on node-c; cart-0 is deleted and recreated
//!    (new uid) and scheduled on node-b; then a BOOKMARK and the stream ends;
//! 3. EndpointSlices watch: cart's slice names the new cart-0; checkout's slice drops one pod;
//! 4. pods watch (resumed at the bookmark): a status-only change, then `410 Gone`; the re-list
//!    has lost the pod that left checkout and gained its replacement on node-a;
//! 5. services watch: `410 Gone`; the re-list has lost service cart;
//! 6. nodes watch: node-d is deleted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auspex_graph::LiveGraph;
use auspex_model::EntityId;
use auspex_model::{
    Edge, EdgeKind, Entity, EntityKind, EntityRef, TimestampMs, TopologyChange, TopologyEvent,
};
use auspex_watch::{Clock, WatchConfig, run_with_clock};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::Response;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use TopologyChange::{DeleteEdge, DeleteEntity, UpsertEdge, UpsertEntity};

const NOW_MS: TimestampMs = 1_764_063_600_000;

struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> TimestampMs {
        NOW_MS
    }
}

struct Api {
    dir: PathBuf,
    /// The stage a scripted watch stream must wait for, by `(resource, resourceVersion)`.
    script: HashMap<(&'static str, &'static str), u32>,
    stage: watch::Sender<u32>,
    /// List calls answered so far, by resource.
    lists: Mutex<HashMap<String, usize>>,
    /// Every request, as `GET path?query`.
    log: Mutex<Vec<String>>,
    /// List calls still to fail with 500 (an API server in trouble), by resource.
    failing_lists: Mutex<HashMap<&'static str, usize>>,
}

fn resource_of(path: &str) -> Option<&'static str> {
    // The fixtures are all in namespace shop: a namespaced call reads the same ones.
    let path = match path.strip_prefix("/api/v1/namespaces/shop/") {
        Some(rest) => format!("/api/v1/{rest}"),
        None => path.replace("/v1/namespaces/shop/", "/v1/"),
    };
    match path.as_str() {
        "/api/v1/pods" => Some("pods"),
        "/api/v1/nodes" => Some("nodes"),
        "/api/v1/services" => Some("services"),
        "/apis/discovery.k8s.io/v1/endpointslices" => Some("endpointslices"),
        _ => None,
    }
}

async fn serve(State(api): State<Arc<Api>>, uri: Uri) -> Response {
    api.log.lock().unwrap().push(format!(
        "GET {}",
        uri.path_and_query().map_or("", |p| p.as_str())
    ));
    let query: HashMap<&str, &str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let Some(resource) = resource_of(uri.path()) else {
        return status(StatusCode::NOT_FOUND, "no such resource");
    };
    let json = |body: Body| {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .expect("static headers are valid")
    };
    if query.get("watch") != Some(&"true") {
        if let Some(left) = api.failing_lists.lock().unwrap().get_mut(resource)
            && *left > 0
        {
            *left -= 1;
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "etcdserver: request timed out",
            );
        }
        let n = {
            let mut lists = api.lists.lock().unwrap();
            let n = lists.entry(resource.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        // The last list fixture answers every later list too.
        let file = (1..=n)
            .rev()
            .map(|i| api.dir.join(format!("{resource}.list.{i}.json")))
            .find(|p| p.exists())
            .expect("every resource has a first list");
        return json(Body::from(std::fs::read(file).unwrap()));
    }
    let rv = query.get("resourceVersion").copied().unwrap_or("");
    let Some((&key, &stage)) = api.script.get_key_value(&(resource, rv)) else {
        // Nothing scripted: an idle watch, open until the client goes away.
        return json(Body::from_stream(futures::stream::pending::<
            Result<Bytes, Infallible>,
        >()));
    };
    let text =
        std::fs::read_to_string(api.dir.join(format!("{}.watch.{}.ndjson", key.0, key.1))).unwrap();
    let lines: Vec<Result<Bytes, Infallible>> = text
        .lines()
        .map(|l| Ok(Bytes::from(format!("{l}\n"))))
        .collect();
    let mut stage_rx = api.stage.subscribe();
    let body = futures::stream::once(async move {
        let _ = stage_rx.wait_for(|s| *s >= stage).await;
        futures::stream::iter(lines)
    })
    .flatten();
    json(Body::from_stream(body))
}

fn status(code: StatusCode, msg: &str) -> Response {
    Response::builder()
        .status(code)
        .body(Body::from(msg.to_string()))
        .expect("static response is valid")
}

async fn start_api() -> (Arc<Api>, String) {
    start_api_failing(HashMap::new()).await
}

async fn start_api_failing(failing_lists: HashMap<&'static str, usize>) -> (Arc<Api>, String) {
    let script = HashMap::from([
        (("pods", "4000"), 2),
        (("endpointslices", "3000"), 3),
        (("pods", "4010"), 4),
        (("services", "2000"), 5),
        (("nodes", "1000"), 6),
    ]);
    let api = Arc::new(Api {
        dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
        script,
        stage: watch::Sender::new(1),
        lists: Mutex::new(HashMap::new()),
        log: Mutex::new(Vec::new()),
        failing_lists: Mutex::new(failing_lists),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(serve).with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (api, url)
}

/// Receives exactly `want.len()` events (10 s each at most), then checks that nothing else
/// arrives for a while. Each event is applied to `graph`, as the pipeline downstream will.
async fn expect(
    rx: &mut mpsc::Receiver<TopologyEvent>,
    graph: &mut LiveGraph,
    stage: u32,
    want: Vec<TopologyChange>,
) {
    let mut got = Vec::new();
    for _ in 0..want.len() {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(e)) => {
                assert_eq!(e.timestamp_ms, NOW_MS);
                graph.apply(&e).expect("the graph takes every event");
                got.push(e.change);
            }
            other => panic!("stage {stage}: after {got:#?}\nno more events: {other:?}"),
        }
    }
    assert_eq!(got, want, "stage {stage}");
    if let Ok(extra) = tokio::time::timeout(Duration::from_millis(400), rx.recv()).await {
        panic!("stage {stage}: unexpected event {extra:?}");
    }
}

const SHOP: &str = "shop";
const X1: &str = "checkout-7d9f8c6b5-2xk9p";
const X2: &str = "checkout-7d9f8c6b5-8wq4z";
const X3: &str = "checkout-7d9f8c6b5-tz6mc";
const X4: &str = "checkout-7d9f8c6b5-hb2rd";
const CART0: &str = "cart-0";

fn labels(kv: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node(name: &str, zone: &str) -> TopologyChange {
    let mut e = Entity::new(EntityKind::Node, None, name);
    e.labels = labels(&[
        ("kubernetes.io/arch", "amd64"),
        ("node.kubernetes.io/instance-type", "m6i.2xlarge"),
        ("topology.kubernetes.io/region", "eu-west-1"),
        ("topology.kubernetes.io/zone", zone),
    ]);
    UpsertEntity { entity: e }
}

fn service(name: &str) -> TopologyChange {
    let mut e = Entity::new(EntityKind::Service, Some(SHOP), name);
    e.labels = labels(&[
        ("app", name),
        ("app.kubernetes.io/name", name),
        ("app.kubernetes.io/part-of", "shop"),
    ]);
    UpsertEntity { entity: e }
}

fn pod(name: &str, node: Option<&str>, service: Option<&str>) -> TopologyChange {
    let app = if name.starts_with("cart") {
        "cart"
    } else {
        "checkout"
    };
    let mut e = Entity::new(EntityKind::Pod, Some(SHOP), name);
    e.node = node.map(str::to_string);
    e.service = service.map(str::to_string);
    e.workload = Some(app.to_string());
    e.labels = labels(&[
        ("app", app),
        ("app.kubernetes.io/name", app),
        ("app.kubernetes.io/part-of", "shop"),
    ]);
    // A Deployment's pods name their revision (remediation's rollback target).
    if name.starts_with("checkout-") {
        e.labels
            .insert("pod-template-hash".into(), "7d9f8c6b5".into());
    }
    UpsertEntity { entity: e }
}

fn runs_on(pod: &str, node: &str) -> Edge {
    Edge {
        kind: EdgeKind::RunsOn,
        from: EntityRef::pod(SHOP, pod),
        to: EntityRef::node(node),
    }
}

fn belongs_to(pod: &str, svc: &str) -> Edge {
    Edge {
        kind: EdgeKind::BelongsTo,
        from: EntityRef::pod(SHOP, pod),
        to: EntityRef::service(SHOP, svc),
    }
}

fn gone_pod(name: &str) -> TopologyChange {
    DeleteEntity {
        entity: EntityRef::pod(SHOP, name),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_follows_the_recorded_cluster_through_moves_and_410_relists() {
    let (api, url) = start_api().await;
    let client =
        kube::Client::try_from(kube::Config::new(url.parse().unwrap())).expect("client for url");
    let (tx, mut rx) = mpsc::channel(16);
    let watcher = tokio::spawn(run_with_clock(
        client,
        WatchConfig::default(),
        tx,
        Arc::new(FixedClock),
    ));

    let mut graph = LiveGraph::default();

    // 1. The snapshot, once every list is in: nodes, services, then pods, sorted.
    expect(
        &mut rx,
        &mut graph,
        1,
        vec![
            node("node-a", "eu-west-1a"),
            node("node-b", "eu-west-1b"),
            node("node-c", "eu-west-1c"),
            node("node-d", "eu-west-1a"),
            service("cart"),
            service("checkout"),
            pod(CART0, Some("node-a"), Some("cart")),
            UpsertEdge {
                edge: runs_on(CART0, "node-a"),
            },
            UpsertEdge {
                edge: belongs_to(CART0, "cart"),
            },
            pod(X1, Some("node-a"), Some("checkout")),
            UpsertEdge {
                edge: runs_on(X1, "node-a"),
            },
            UpsertEdge {
                edge: belongs_to(X1, "checkout"),
            },
            pod(X2, Some("node-b"), Some("checkout")),
            UpsertEdge {
                edge: runs_on(X2, "node-b"),
            },
            UpsertEdge {
                edge: belongs_to(X2, "checkout"),
            },
            pod(X3, None, None),
        ],
    )
    .await;

    // 2. Scheduled → runs_on; cart-0 deleted and recreated on another node → delete, then the
    //    new pod (not in the service: the slice still names the old uid) and its runs_on.
    api.stage.send_replace(2);
    expect(
        &mut rx,
        &mut graph,
        2,
        vec![
            pod(X3, Some("node-c"), None),
            UpsertEdge {
                edge: runs_on(X3, "node-c"),
            },
            gone_pod(CART0),
            pod(CART0, None, None),
            pod(CART0, Some("node-b"), None),
            UpsertEdge {
                edge: runs_on(CART0, "node-b"),
            },
        ],
    )
    .await;

    // 3. The new cart-0 joins cart; X2 leaves checkout.
    api.stage.send_replace(3);
    expect(
        &mut rx,
        &mut graph,
        3,
        vec![
            pod(CART0, Some("node-b"), Some("cart")),
            UpsertEdge {
                edge: belongs_to(CART0, "cart"),
            },
            pod(X2, Some("node-b"), None),
            DeleteEdge {
                edge: belongs_to(X2, "checkout"),
            },
        ],
    )
    .await;

    // 4. The watch resumes at the bookmark; a heartbeat is silent; 410 Gone forces a re-list
    //    that emits only the difference: X2 gone, its replacement X4 on node-a.
    api.stage.send_replace(4);
    expect(
        &mut rx,
        &mut graph,
        4,
        vec![
            gone_pod(X2),
            pod(X4, Some("node-a"), None),
            UpsertEdge {
                edge: runs_on(X4, "node-a"),
            },
        ],
    )
    .await;

    // 5. 410 on services; the re-list has lost cart: its entity goes (and its edges with it in
    //    the graph), cart-0 no longer names it.
    api.stage.send_replace(5);
    expect(
        &mut rx,
        &mut graph,
        5,
        vec![
            DeleteEntity {
                entity: EntityRef::service(SHOP, "cart"),
            },
            pod(CART0, Some("node-b"), None),
        ],
    )
    .await;

    // 6. A node deleted.
    api.stage.send_replace(6);
    expect(
        &mut rx,
        &mut graph,
        6,
        vec![DeleteEntity {
            entity: EntityRef::node("node-d"),
        }],
    )
    .await;

    // The graph fed with these events is the cluster as the API server now lists it.
    let pod_id = |name: &str| EntityRef::pod(SHOP, name).id();
    let node_id = |name: &str| EntityRef::node(name).id();
    assert_eq!(graph.count(EntityKind::Node), 3);
    assert_eq!(graph.count(EntityKind::Service), 1);
    assert_eq!(graph.count(EntityKind::Pod), 4);
    assert_eq!(
        graph.pods_on(&node_id("node-a")),
        vec![pod_id(X1), pod_id(X4)]
    );
    assert_eq!(graph.pods_on(&node_id("node-b")), vec![pod_id(CART0)]);
    assert_eq!(graph.pods_on(&node_id("node-c")), vec![pod_id(X3)]);
    assert_eq!(
        graph.members_of(&EntityRef::service(SHOP, "checkout").id()),
        vec![pod_id(X1)]
    );
    assert_eq!(graph.edge_count_of(EdgeKind::RunsOn), 4);
    assert_eq!(graph.edge_count_of(EdgeKind::BelongsTo), 1);
    let cart0: Option<&EntityId> = graph.node_of(&pod_id(CART0));
    assert_eq!(cart0, Some(&node_id("node-b")));

    // The API calls: one list each, a second list for pods and services after their 410s, and
    // the pods watch resumed at the bookmark's resourceVersion.
    let log = api.log.lock().unwrap().clone();
    let lists = api.lists.lock().unwrap().clone();
    assert_eq!(lists.get("pods"), Some(&2), "{log:#?}");
    assert_eq!(lists.get("services"), Some(&2), "{log:#?}");
    assert_eq!(lists.get("nodes"), Some(&1), "{log:#?}");
    assert_eq!(lists.get("endpointslices"), Some(&1), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /api/v1/pods?") && l.contains("resourceVersion=4010")),
        "{log:#?}"
    );

    // Closing the receiver stops the watcher cleanly.
    drop(rx);
    let result = tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("the watcher stops when its receiver is gone")
        .expect("the watcher task does not panic");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn an_invalid_config_is_refused_before_any_request() {
    let (api, url) = start_api().await;
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let cfg = WatchConfig {
        namespaces: vec!["Not_A_Namespace".into()],
        ..WatchConfig::default()
    };
    let err = auspex_watch::run(client, cfg, tx).await.unwrap_err();
    assert!(err.to_string().contains("namespaces[0]"), "{err}");
    assert!(api.log.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_selectors_config_and_a_failing_list_that_recovers() {
    // The first pods list fails twice with 500: the watcher backs off and retries.
    let (api, url) = start_api_failing(HashMap::from([("pods", 2)])).await;
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let cfg = WatchConfig::from_toml(
        r#"
        namespaces = ["shop"]
        membership = "selectors"
        pod_selector = "app.kubernetes.io/part-of=shop"
        "#,
    )
    .unwrap();
    let watcher = tokio::spawn(run_with_clock(client, cfg, tx, Arc::new(FixedClock)));
    let mut graph = LiveGraph::default();
    // With selectors the Pending checkout pod is a member too (an EndpointSlice would list
    // it only once it has an address).
    expect(
        &mut rx,
        &mut graph,
        1,
        vec![
            node("node-a", "eu-west-1a"),
            node("node-b", "eu-west-1b"),
            node("node-c", "eu-west-1c"),
            node("node-d", "eu-west-1a"),
            service("cart"),
            service("checkout"),
            pod(CART0, Some("node-a"), Some("cart")),
            UpsertEdge {
                edge: runs_on(CART0, "node-a"),
            },
            UpsertEdge {
                edge: belongs_to(CART0, "cart"),
            },
            pod(X1, Some("node-a"), Some("checkout")),
            UpsertEdge {
                edge: runs_on(X1, "node-a"),
            },
            UpsertEdge {
                edge: belongs_to(X1, "checkout"),
            },
            pod(X2, Some("node-b"), Some("checkout")),
            UpsertEdge {
                edge: runs_on(X2, "node-b"),
            },
            UpsertEdge {
                edge: belongs_to(X2, "checkout"),
            },
            pod(X3, None, Some("checkout")),
            UpsertEdge {
                edge: belongs_to(X3, "checkout"),
            },
        ],
    )
    .await;
    let log = api.log.lock().unwrap().clone();
    let pod_lists: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("GET /api/v1/namespaces/shop/pods?") && !l.contains("watch=true"))
        .collect();
    assert_eq!(pod_lists.len(), 3, "two failures, then the list: {log:#?}");
    assert!(
        pod_lists
            .iter()
            .all(|l| l.contains("labelSelector=app.kubernetes.io%2Fpart-of%3Dshop")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /api/v1/namespaces/shop/services?")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("endpointslices")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.starts_with("GET /api/v1/pods")),
        "{log:#?}"
    );
    drop(rx);
    let stopped = tokio::time::timeout(Duration::from_secs(5), watcher).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
}
