//! The Kubernetes topology watcher: a *source* of [`TopologyEvent`]s.
//!
//! It watches Pods, Nodes, Services and EndpointSlices through the API server (list + watch,
//! with kube's re-list on 410 Gone and its default backoff on errors), keeps a compact view of
//! them ([`objects`]), and turns every change into the topology events the live graph applies
//! ([`topology`], pure and tested without a server). Service-to-service `calls` edges come from
//! mesh request metrics instead ([`mesh`]), fed by the remote-write collector.
//!
//! It owns no Kafka producer and no graph: [`run`] sends on a bounded channel and waits when
//! the channel is full (the watch streams then wait too, so memory stays bounded). It never
//! writes to the cluster: `get`, `list` and `watch` are all it needs (see
//! `deploy/kubernetes/collect/rbac.yaml`).

pub mod config;
pub mod mesh;
pub mod objects;
pub mod topology;

use std::fmt::Debug;
use std::sync::Arc;

use auspex_model::{TimestampMs, TopologyEvent};
use futures::stream::{BoxStream, SelectAll, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

pub use config::{ConfigError, Membership, WatchConfig};
pub use mesh::{CallEdges, CallsConfig, Mesh, call_edge};
pub use objects::Object;
pub use topology::{Resource, Scope, Topology};

/// Why the watcher stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The time stamped on events.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> TimestampMs;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> TimestampMs {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Watches the cluster and sends topology events on `out` until `out` is closed (then returns
/// `Ok`). API errors never end it: each watch stream logs them and retries with kube's default
/// backoff (0.8 s doubling to 30 s, jittered). Cancel it by dropping the future.
pub async fn run(
    client: Client,
    cfg: WatchConfig,
    out: mpsc::Sender<TopologyEvent>,
) -> Result<(), WatchError> {
    run_with_clock(client, cfg, out, Arc::new(SystemClock)).await
}

/// [`run`] with the clock that stamps events (tests pin it).
pub async fn run_with_clock(
    client: Client,
    cfg: WatchConfig,
    out: mpsc::Sender<TopologyEvent>,
    clock: Arc<dyn Clock>,
) -> Result<(), WatchError> {
    cfg.validate()?;
    let scopes = Scope::all_for(&cfg);
    let mut streams: SelectAll<BoxStream<'static, Item>> = SelectAll::new();
    for scope in &scopes {
        let ns = scope.namespace.as_deref();
        // TODO(streaming-lists): `InitialListStrategy::StreamingList` would spare the API server
        // the paged re-lists on clusters that enable WatchList; off until tested against one.
        let stream = match scope.resource {
            Resource::Node => watch::<Node>(
                Api::all(client.clone()),
                &cfg,
                cfg.node_selector.as_deref(),
                scope,
            ),
            Resource::Pod => {
                watch::<Pod>(api(&client, ns), &cfg, cfg.pod_selector.as_deref(), scope)
            }
            Resource::Service => watch::<Service>(
                api(&client, ns),
                &cfg,
                cfg.service_selector.as_deref(),
                scope,
            ),
            // Slices carry their service's labels only partly: no selector, so every slice
            // in scope is watched and the pods/services selectors decide what is kept.
            Resource::EndpointSlice => watch::<EndpointSlice>(api(&client, ns), &cfg, None, scope),
        };
        streams.push(stream);
    }
    info!(
        streams = scopes.len(),
        namespaces = ?cfg.namespaces,
        membership = ?cfg.membership,
        "topology watcher starting"
    );

    let mut topology = Topology::new(&cfg, scopes);
    loop {
        let (scope, item) = tokio::select! {
            _ = out.closed() => break,
            next = streams.next() => match next {
                Some(next) => next,
                // kube's watch streams never end; should they, there is nothing left to do.
                None => break,
            },
        };
        let event = match item {
            Ok(event) => event,
            Err(err) => {
                warn!(
                    resource = scope.resource.as_str(),
                    namespace = scope.namespace.as_deref().unwrap_or("*"),
                    %err,
                    "watch failed; re-watching with backoff"
                );
                continue;
            }
        };
        let was_synced = topology.is_synced();
        let init_done = matches!(event, Event::InitDone);
        let changes = topology.handle(&scope, event);
        if init_done {
            let c = topology.counts();
            if !was_synced && topology.is_synced() {
                info!(
                    pods = c.pods,
                    nodes = c.nodes,
                    services = c.services,
                    endpoint_slices = c.endpoint_slices,
                    events = changes.len(),
                    "topology listed; initial snapshot sent"
                );
            } else {
                info!(
                    resource = scope.resource.as_str(),
                    namespace = scope.namespace.as_deref().unwrap_or("*"),
                    events = changes.len(),
                    "listed"
                );
            }
        }
        if changes.is_empty() {
            continue;
        }
        // TODO(metrics): auspex_watch_events_total{op}, auspex_watch_relists_total{resource},
        // auspex_watch_errors_total{resource} once collect exposes its recorder.
        let timestamp_ms = clock.now_ms();
        debug!(
            resource = scope.resource.as_str(),
            events = changes.len(),
            "topology changed"
        );
        for change in changes {
            if out
                .send(TopologyEvent {
                    timestamp_ms,
                    change,
                })
                .await
                .is_err()
            {
                info!("topology receiver closed; watcher stopping");
                return Ok(());
            }
        }
    }
    info!("topology receiver closed; watcher stopping");
    Ok(())
}

type Item = (Scope, Result<Event<Object>, watcher::Error>);

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One backed-off watch stream, its objects reduced to [`Object`] views as they arrive.
fn watch<K>(
    api: Api<K>,
    cfg: &WatchConfig,
    selector: Option<&str>,
    scope: &Scope,
) -> BoxStream<'static, Item>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    for<'a> Object: From<&'a K>,
{
    let mut wc = watcher::Config::default().page_size(cfg.page_size);
    if let Some(sel) = selector {
        wc = wc.labels(sel);
    }
    let scope = scope.clone();
    watcher::watcher(api, wc)
        .default_backoff()
        .map(move |r| (scope.clone(), r.map(|e| view(&e))))
        .boxed()
}

fn view<K>(event: &Event<K>) -> Event<Object>
where
    for<'a> Object: From<&'a K>,
{
    match event {
        Event::Apply(k) => Event::Apply(k.into()),
        Event::Delete(k) => Event::Delete(k.into()),
        Event::Init => Event::Init,
        Event::InitApply(k) => Event::InitApply(k.into()),
        Event::InitDone => Event::InitDone,
    }
}
