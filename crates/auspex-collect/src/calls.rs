//! `calls` edges from the mesh's request counters (`[calls]`): the received series that are
//! the mesh's request counters go to `auspex_watch::CallEdges` instead of the mapping, and the
//! edges it brings to life or expires are published as topology events.
//!
//! It owns the edge set and the events not yet published, not their meaning (that is
//! `auspex_watch::mesh`) nor the output. The receiver and the poller feed it
//! ([`Calls::take_mesh_series`]), without waiting for the output: events wait in a map keyed by
//! what they are about, where an edge's upsert and its later delete cancel out, so what waits
//! is bounded by the edges, not by how long the output is down. [`run`] publishes them and
//! expires edges on a timer.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auspex_model::{TopologyChange, TopologyEvent};
use auspex_watch::{CallEdges, CallsConfig, Mesh};
use tokio::sync::oneshot;

use crate::output::Output;
use crate::remote_write::Label;
use crate::telemetry;

/// How often waiting events are published.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// The call-edge set and the events waiting for the output; shared by the receiver, the
/// poller and [`run`].
pub struct Calls {
    mesh: Mesh,
    expire_after: Duration,
    state: Mutex<State>,
}

struct State {
    edges: CallEdges,
    /// Events not yet published, by [`TopologyChange::key`].
    pending: BTreeMap<String, TopologyEvent>,
    /// `edges.dropped_series()` already counted in the metric.
    dropped_counted: u64,
}

impl Calls {
    /// `None` when `calls.mesh` is `none`: every series then goes to the mapping.
    pub fn new(cfg: &CallsConfig) -> Option<Arc<Calls>> {
        if cfg.mesh == Mesh::None {
            return None;
        }
        Some(Arc::new(Calls {
            mesh: cfg.mesh,
            expire_after: Duration::from_secs(cfg.expire_after_secs),
            state: Mutex::new(State {
                edges: CallEdges::new(cfg.clone()),
                pending: BTreeMap::new(),
                dropped_counted: 0,
            }),
        }))
    }

    /// The mesh's request-counter metric names (scrape mode queries them).
    pub fn request_metrics(&self) -> &'static [&'static str] {
        self.mesh.request_metrics()
    }

    /// Whether the series named by `labels` is one of the mesh's request counters.
    pub fn is_mesh_series(&self, labels: &[Label]) -> bool {
        labels
            .iter()
            .find(|l| l.name == "__name__")
            .is_some_and(|l| self.mesh.request_metrics().contains(&l.value.as_str()))
    }

    /// Feeds the mesh's request-counter series among `series` (labels and samples, oldest
    /// first) to the edge set and returns the others, untouched, for the mapping. Series of
    /// the mesh's counters that name no edge (Linkerd's inbound side, Istio's `unknown`
    /// source) are taken too: they are understood, not unknown.
    pub fn take_mesh_series<'a, S>(
        &self,
        series: impl IntoIterator<Item = (&'a [Label], S)>,
    ) -> Vec<(&'a [Label], S)>
    where
        S: IntoIterator<Item = (i64, f64)>,
    {
        let mut rest = Vec::new();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (labels, samples) in series {
            if !self.is_mesh_series(labels) {
                rest.push((labels, samples));
                continue;
            }
            let metric = labels
                .iter()
                .find(|l| l.name == "__name__")
                .map_or("", |l| l.value.as_str());
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            for (ts, value) in samples {
                if let Some(ev) = state.edges.observe(metric, &pairs, value, ts) {
                    state.wait(ev);
                }
            }
        }
        let dropped = state.edges.dropped_series();
        if dropped > state.dropped_counted {
            metrics::counter!(telemetry::CALL_SERIES_DROPPED)
                .increment(dropped - state.dropped_counted);
            state.dropped_counted = dropped;
        }
        rest
    }

    /// Deletes the edges without calls for `calls.expire_after_secs` (their events wait).
    pub fn expire(&self, now_ms: i64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for ev in state.edges.expire(now_ms) {
            state.wait(ev);
        }
    }

    /// The events waiting, oldest key first; they no longer wait.
    pub fn take_pending(&self) -> Vec<TopologyEvent> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut state.pending).into_values().collect()
    }

    /// Puts back events the output refused, unless newer news about the same edge arrived
    /// meanwhile (then the two cancel or the newer wins, as for any waiting event).
    pub fn requeue(&self, events: Vec<TopologyEvent>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for ev in events {
            state.wait(ev);
        }
    }

    /// Live edges now.
    pub fn edges(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .edges
            .edges()
            .len()
    }
}

impl State {
    /// Adds an event to those waiting. `CallEdges` alternates an edge's upserts and deletes, so
    /// an opposite event waiting for the same edge means the output never heard of the first:
    /// both go. The same kind twice (a requeued event meeting its repeat) keeps the newer.
    fn wait(&mut self, ev: TopologyEvent) {
        match self.pending.entry(ev.change.key()) {
            Entry::Vacant(v) => {
                v.insert(ev);
            }
            Entry::Occupied(mut o) => {
                if is_upsert(&o.get().change) != is_upsert(&ev.change) {
                    o.remove();
                } else if ev.timestamp_ms > o.get().timestamp_ms {
                    o.insert(ev);
                }
            }
        }
    }
}

fn is_upsert(change: &TopologyChange) -> bool {
    matches!(
        change,
        TopologyChange::UpsertEdge { .. } | TopologyChange::UpsertEntity { .. }
    )
}

/// How often edges are checked for expiry: a quarter of `expire_after`, between the publish
/// tick and 30 s, so an edge outlives its last call by at most a quarter more.
fn expire_every(expire_after: Duration) -> Duration {
    (expire_after / 4).clamp(PUBLISH_EVERY, Duration::from_secs(30))
}

/// Publishes waiting events every 500 ms and expires edges, until `done` fires (collect's stop,
/// sent once the receiver has answered its last request): then what waits is published once
/// more. A batch the output refuses waits for the next tick.
pub async fn run(calls: Arc<Calls>, output: Arc<Output>, mut done: oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let expire_every = expire_every(calls.expire_after).as_millis() as i64;
    let mut last_expiry = crate::now_ms();
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut done => true,
        };
        let now = crate::now_ms();
        if !last && now - last_expiry >= expire_every {
            calls.expire(now);
            last_expiry = now;
        }
        metrics::gauge!(telemetry::CALL_EDGES).set(calls.edges() as f64);
        let batch = calls.take_pending();
        if batch.is_empty() {
            if last {
                return;
            }
            continue;
        }
        let (upserts, deletes) = batch.iter().fold((0u64, 0u64), |(u, d), ev| {
            if is_upsert(&ev.change) {
                (u + 1, d)
            } else {
                (u, d + 1)
            }
        });
        match output.publish(&batch).await {
            Ok(()) => {
                metrics::counter!(telemetry::CALL_EDGE_EVENTS, "change" => "upsert_edge")
                    .increment(upserts);
                metrics::counter!(telemetry::CALL_EDGE_EVENTS, "change" => "delete_edge")
                    .increment(deletes);
            }
            Err(e) if last => {
                tracing::warn!(%e, events = batch.len(), "call-edge events not published at shutdown");
            }
            Err(e) => {
                tracing::warn!(%e, events = batch.len(), "publishing call-edge events failed; retrying");
                calls.requeue(batch);
            }
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auspex_model::{Edge, EdgeKind, EntityRef};

    fn istio(expire_after_secs: u64, max_series: usize) -> Arc<Calls> {
        Calls::new(&CallsConfig {
            mesh: Mesh::Istio,
            expire_after_secs,
            max_series,
        })
        .expect("istio is a mesh")
    }

    fn series(name: &str, from: &str) -> Vec<Label> {
        vec![
            Label::new("__name__", name),
            Label::new("source_canonical_service", from),
            Label::new("source_workload_namespace", "shop"),
            Label::new("destination_service_name", "checkout"),
            Label::new("destination_service_namespace", "shop"),
        ]
    }

    fn feed(calls: &Calls, labels: &[Label], samples: &[(i64, f64)]) -> usize {
        calls
            .take_mesh_series([(labels, samples.iter().copied())])
            .len()
    }

    fn edge_from(from: &str) -> Edge {
        Edge {
            kind: EdgeKind::Calls,
            from: EntityRef::service("shop", from),
            to: EntityRef::service("shop", "checkout"),
        }
    }

    #[test]
    fn mesh_series_are_taken_and_others_returned() {
        let calls = istio(60, 10);
        let cpu = vec![Label::new("__name__", "container_cpu_usage_seconds_total")];
        let requests = series("istio_requests_total", "frontend");
        let rest = calls.take_mesh_series([
            (cpu.as_slice(), vec![(0, 1.0)]),
            (requests.as_slice(), vec![(0, 1.0), (1_000, 2.0)]),
        ]);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, cpu.as_slice());
        assert_eq!(
            calls.take_pending(),
            vec![TopologyEvent {
                timestamp_ms: 1_000,
                change: TopologyChange::UpsertEdge {
                    edge: edge_from("frontend")
                },
            }]
        );
        assert!(calls.take_pending().is_empty());
        assert!(Calls::new(&CallsConfig::default()).is_none());
    }

    #[test]
    fn an_unpublished_upsert_and_its_delete_cancel() {
        let calls = istio(1, 10);
        let requests = series("istio_requests_total", "frontend");
        assert_eq!(feed(&calls, &requests, &[(0, 1.0), (1_000, 2.0)]), 0);
        calls.expire(2_001);
        assert_eq!(calls.edges(), 0);
        assert!(calls.take_pending().is_empty());
        // Published, then deleted: the delete waits; a refused batch is put back.
        assert_eq!(feed(&calls, &requests, &[(3_000, 3.0), (4_000, 4.0)]), 0);
        assert_eq!(calls.take_pending().len(), 1);
        calls.expire(5_001);
        let refused = calls.take_pending();
        assert!(matches!(
            refused[0].change,
            TopologyChange::DeleteEdge { .. }
        ));
        calls.requeue(refused.clone());
        assert_eq!(calls.take_pending(), refused);
    }

    #[test]
    fn the_series_cap_holds() {
        let calls = istio(60, 1);
        feed(&calls, &series("istio_requests_total", "a"), &[(0, 1.0)]);
        let b = series("istio_requests_total", "b");
        feed(&calls, &b, &[(0, 1.0), (1_000, 5.0)]);
        assert!(calls.take_pending().is_empty());
        let state = calls.state.lock().unwrap();
        assert_eq!((state.edges.series_len(), state.dropped_counted), (1, 2));
    }
}
