//! Service-to-service `calls` edges from service-mesh request metrics.
//!
//! Kubernetes objects say nothing about who calls whom; a mesh's request counters do. This
//! module turns one series (metric name + labels) into the edge it stands for
//! ([`call_edge`], pure) and keeps the live edge set ([`CallEdges`]): an edge appears when its
//! counters are seen to grow and disappears when they have not grown for
//! [`CallsConfig::expire_after_secs`]. It does no I/O: the remote-write collector feeds it the
//! series it receives and forwards the events it returns.
//!
//! Labels read (everything else is ignored):
//!
//! | mesh | metric | caller (`from`) | callee (`to`) | other |
//! |---|---|---|---|---|
//! | Istio | `istio_requests_total` | `source_canonical_service` (else `source_workload`) in `source_workload_namespace` | `destination_service_name` in `destination_service_namespace` | — |
//! | Linkerd | `request_total`, `response_total` | `deployment` (else `statefulset`, `daemonset`) in `namespace` | `dst_service` (else `dst_deployment`) in `dst_namespace` | only `direction="outbound"` |
//!
//! The caller is named by its workload (Istio's canonical service defaults to the `app` label,
//! else the workload): the edge's `from` is the service *of that name*, the common convention of
//! a Deployment and its Service sharing a name. A caller without a matching service becomes a
//! service vertex of its own in the graph. Values `unknown` (Istio's word for traffic from
//! outside the mesh) or empty drop the series, and so do self-calls.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use auspex_model::{Edge, EdgeKind, EntityRef, TimestampMs, TopologyChange, TopologyEvent};
use serde::{Deserialize, Serialize};

/// Which mesh's metrics name the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mesh {
    /// No call edges.
    #[default]
    None,
    /// Istio standard metrics (`istio_requests_total`).
    Istio,
    /// Linkerd proxy metrics (`request_total` / `response_total`).
    Linkerd,
}

impl Mesh {
    /// The request-counter metric names whose series name the calls (none for `None`).
    pub fn request_metrics(self) -> &'static [&'static str] {
        match self {
            Mesh::None => &[],
            Mesh::Istio => &["istio_requests_total"],
            Mesh::Linkerd => &["request_total", "response_total"],
        }
    }
}

/// Configuration of the call-edge set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// The mesh whose request metrics name the calls: `none`, `istio` or `linkerd`.
    pub mesh: Mesh,
    /// An edge is deleted when its counters have not grown for this long (seconds).
    pub expire_after_secs: u64,
    /// At most this many counter series are tracked; new ones beyond it are ignored (and
    /// counted) so a label explosion cannot exhaust memory.
    pub max_series: usize,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            mesh: Mesh::None,
            expire_after_secs: 600,
            max_series: 100_000,
        }
    }
}

impl CallsConfig {
    /// `Err((key, reason))` for the first bad field; the embedding config adds its prefix.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.expire_after_secs == 0 {
            return Err(("expire_after_secs", "must be at least 1".into()));
        }
        if self.max_series == 0 {
            return Err(("max_series", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// The `calls` edge a request-counter series stands for, or `None` when the series is not one
/// of the mesh's request counters or lacks a usable caller or callee (see the module docs).
pub fn call_edge<'a>(
    mesh: Mesh,
    metric: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<Edge> {
    if !mesh.request_metrics().contains(&metric) {
        return None;
    }
    let wanted: &[&str] = match mesh {
        Mesh::None => return None,
        Mesh::Istio => &[
            "source_canonical_service",
            "source_workload",
            "source_workload_namespace",
            "destination_service_name",
            "destination_service_namespace",
        ],
        Mesh::Linkerd => &[
            "direction",
            "deployment",
            "statefulset",
            "daemonset",
            "namespace",
            "dst_service",
            "dst_deployment",
            "dst_namespace",
        ],
    };
    let mut found: [Option<&str>; 8] = [None; 8];
    for (k, v) in labels {
        if let Some(i) = wanted.iter().position(|w| *w == k) {
            found[i] = usable(v);
        }
    }
    let (from_ns, from, to_ns, to) = match mesh {
        Mesh::Istio => (found[2]?, found[0].or(found[1])?, found[4]?, found[3]?),
        Mesh::Linkerd => {
            if found[0] != Some("outbound") {
                return None;
            }
            (
                found[4]?,
                found[1].or(found[2]).or(found[3])?,
                found[7]?,
                found[5].or(found[6])?,
            )
        }
        Mesh::None => return None,
    };
    if from_ns == to_ns && from == to {
        return None;
    }
    Some(Edge {
        kind: EdgeKind::Calls,
        from: EntityRef::service(from_ns, from),
        to: EntityRef::service(to_ns, to),
    })
}

fn usable(v: &str) -> Option<&str> {
    (!v.is_empty() && v != "unknown").then_some(v)
}

struct Series {
    value: f64,
    last_seen_ms: TimestampMs,
}

/// The live set of `calls` edges, fed with request-counter samples.
///
/// A counter's first sample only sets its baseline (a mesh counter lives as long as its proxy,
/// so its value says nothing about *recent* calls); a later sample with a higher value, or a
/// reset to a positive value, is a call. State: one entry per tracked series and per live edge.
pub struct CallEdges {
    cfg: CallsConfig,
    series: HashMap<u64, Series>,
    /// Live edges and the time of their last observed call.
    edges: HashMap<Edge, TimestampMs>,
    dropped_series: u64,
}

impl CallEdges {
    pub fn new(cfg: CallsConfig) -> Self {
        CallEdges {
            cfg,
            series: HashMap::new(),
            edges: HashMap::new(),
            dropped_series: 0,
        }
    }

    /// Feeds one sample of a series; returns the `upsert_edge` event when it brings an edge to
    /// life. Samples of series that are not request counters cost one label scan and nothing else.
    /// A sample not newer than the series' last one is ignored: a poller's overlapping look-back
    /// replays older, smaller values that would otherwise read as counter resets.
    pub fn observe<'a>(
        &mut self,
        metric: &str,
        labels: &[(&'a str, &'a str)],
        value: f64,
        timestamp_ms: TimestampMs,
    ) -> Option<TopologyEvent> {
        if !value.is_finite() {
            return None;
        }
        let edge = call_edge(self.cfg.mesh, metric, labels.iter().copied())?;
        let id = series_id(metric, labels);
        let called = match self.series.get_mut(&id) {
            Some(s) if timestamp_ms <= s.last_seen_ms => return None,
            Some(s) => {
                let grew = value > s.value || (value < s.value && value > 0.0);
                s.value = value;
                s.last_seen_ms = timestamp_ms;
                grew
            }
            None => {
                if self.series.len() >= self.cfg.max_series {
                    self.dropped_series += 1;
                    return None;
                }
                self.series.insert(
                    id,
                    Series {
                        value,
                        last_seen_ms: timestamp_ms,
                    },
                );
                false
            }
        };
        if !called {
            return None;
        }
        match self.edges.get_mut(&edge) {
            Some(last) => {
                *last = (*last).max(timestamp_ms);
                None
            }
            None => {
                self.edges.insert(edge.clone(), timestamp_ms);
                Some(TopologyEvent {
                    timestamp_ms,
                    change: TopologyChange::UpsertEdge { edge },
                })
            }
        }
    }

    /// Deletes the edges without a call for `expire_after_secs` before `now_ms` (sorted, as
    /// `delete_edge` events at `now_ms`) and forgets series not seen for as long.
    pub fn expire(&mut self, now_ms: TimestampMs) -> Vec<TopologyEvent> {
        let ttl =
            i64::try_from(self.cfg.expire_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.series
            .retain(|_, s| now_ms.saturating_sub(s.last_seen_ms) <= ttl);
        let mut gone: Vec<Edge> = self
            .edges
            .iter()
            .filter(|(_, last)| now_ms.saturating_sub(**last) > ttl)
            .map(|(e, _)| e.clone())
            .collect();
        for e in &gone {
            self.edges.remove(e);
        }
        gone.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        gone.into_iter()
            .map(|edge| TopologyEvent {
                timestamp_ms: now_ms,
                change: TopologyChange::DeleteEdge { edge },
            })
            .collect()
    }

    /// The live edges, sorted.
    pub fn edges(&self) -> Vec<&Edge> {
        let mut v: Vec<&Edge> = self.edges.keys().collect();
        v.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        v
    }

    /// Number of tracked counter series.
    pub fn series_len(&self) -> usize {
        self.series.len()
    }

    /// Samples of untracked series ignored because `max_series` series were tracked (one per
    /// sample, not per series: a dropped series is not remembered).
    pub fn dropped_series(&self) -> u64 {
        self.dropped_series
    }
}

/// A series' identity: its metric name and all labels, in name order.
fn series_id(metric: &str, labels: &[(&str, &str)]) -> u64 {
    let mut sorted: Vec<&(&str, &str)> = labels.iter().collect();
    sorted.sort_unstable();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    metric.hash(&mut h);
    for (k, v) in sorted {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(from_ns: &str, from: &str, to_ns: &str, to: &str) -> Edge {
        Edge {
            kind: EdgeKind::Calls,
            from: EntityRef::service(from_ns, from),
            to: EntityRef::service(to_ns, to),
        }
    }

    // Label sets as Istio's standard metrics write them (reporter, response code and so on are
    // ignored).
    const ISTIO: &[(&str, &str)] = &[
        ("reporter", "source"),
        ("source_workload", "frontend-v1"),
        ("source_canonical_service", "frontend"),
        ("source_workload_namespace", "shop"),
        ("source_app", "frontend"),
        ("destination_workload", "checkout-v2"),
        ("destination_service", "checkout.shop.svc.cluster.local"),
        ("destination_service_name", "checkout"),
        ("destination_service_namespace", "shop"),
        ("response_code", "200"),
        ("request_protocol", "http"),
    ];

    #[test]
    fn istio_series_map_to_a_call_edge() {
        assert_eq!(
            call_edge(Mesh::Istio, "istio_requests_total", ISTIO.iter().copied()),
            Some(calls("shop", "frontend", "shop", "checkout"))
        );
        // Without the canonical service, the workload names the caller.
        let no_canonical = ISTIO
            .iter()
            .copied()
            .filter(|(k, _)| *k != "source_canonical_service");
        assert_eq!(
            call_edge(Mesh::Istio, "istio_requests_total", no_canonical),
            Some(calls("shop", "frontend-v1", "shop", "checkout"))
        );
    }

    #[test]
    fn istio_drops_unknown_other_metrics_and_other_meshes() {
        let unknown_source = ISTIO.iter().map(|&(k, v)| match k {
            "source_canonical_service" | "source_workload" => (k, "unknown"),
            _ => (k, v),
        });
        assert_eq!(
            call_edge(Mesh::Istio, "istio_requests_total", unknown_source),
            None
        );
        let no_dest_ns = ISTIO
            .iter()
            .copied()
            .filter(|(k, _)| *k != "destination_service_namespace");
        assert_eq!(
            call_edge(Mesh::Istio, "istio_requests_total", no_dest_ns),
            None
        );
        assert_eq!(
            call_edge(
                Mesh::Istio,
                "istio_request_bytes_sum",
                ISTIO.iter().copied()
            ),
            None
        );
        assert_eq!(
            call_edge(Mesh::Linkerd, "istio_requests_total", ISTIO.iter().copied()),
            None
        );
        assert_eq!(
            call_edge(Mesh::None, "istio_requests_total", ISTIO.iter().copied()),
            None
        );
    }

    // Label sets as the Linkerd proxy writes them on its outbound side.
    const LINKERD: &[(&str, &str)] = &[
        ("direction", "outbound"),
        ("namespace", "shop"),
        ("deployment", "frontend"),
        ("pod", "frontend-5d8f-abcde"),
        ("dst_namespace", "payments"),
        ("dst_service", "ledger"),
        ("dst_deployment", "ledger-v3"),
        ("authority", "ledger.payments.svc.cluster.local:8080"),
        ("tls", "true"),
        ("status_code", "200"),
        ("classification", "success"),
    ];

    #[test]
    fn linkerd_outbound_series_map_to_a_call_edge() {
        for metric in ["request_total", "response_total"] {
            assert_eq!(
                call_edge(Mesh::Linkerd, metric, LINKERD.iter().copied()),
                Some(calls("shop", "frontend", "payments", "ledger")),
                "{metric}"
            );
        }
        let no_dst_service = LINKERD.iter().copied().filter(|(k, _)| *k != "dst_service");
        assert_eq!(
            call_edge(Mesh::Linkerd, "response_total", no_dst_service),
            Some(calls("shop", "frontend", "payments", "ledger-v3"))
        );
        let statefulset_caller = LINKERD.iter().map(|&(k, v)| match k {
            "deployment" => ("statefulset", "cache"),
            _ => (k, v),
        });
        assert_eq!(
            call_edge(Mesh::Linkerd, "response_total", statefulset_caller),
            Some(calls("shop", "cache", "payments", "ledger"))
        );
    }

    #[test]
    fn linkerd_inbound_and_self_calls_are_dropped() {
        let inbound = LINKERD.iter().map(|&(k, v)| match k {
            "direction" => (k, "inbound"),
            _ => (k, v),
        });
        assert_eq!(call_edge(Mesh::Linkerd, "response_total", inbound), None);
        let to_self = LINKERD.iter().map(|&(k, v)| match k {
            "dst_namespace" => (k, "shop"),
            "dst_service" => (k, "frontend"),
            _ => (k, v),
        });
        assert_eq!(call_edge(Mesh::Linkerd, "response_total", to_self), None);
    }

    fn istio_set(ttl_secs: u64, max_series: usize) -> CallEdges {
        CallEdges::new(CallsConfig {
            mesh: Mesh::Istio,
            expire_after_secs: ttl_secs,
            max_series,
        })
    }

    #[test]
    fn an_edge_appears_on_growth_once_and_expires_without_calls() {
        let mut set = istio_set(60, 100);
        let m = "istio_requests_total";
        // First sight: baseline only.
        assert_eq!(set.observe(m, ISTIO, 10.0, 0), None);
        // No growth: still no call.
        assert_eq!(set.observe(m, ISTIO, 10.0, 15_000), None);
        let up = set
            .observe(m, ISTIO, 12.0, 30_000)
            .expect("growth is a call");
        assert_eq!(
            up.change,
            TopologyChange::UpsertEdge {
                edge: calls("shop", "frontend", "shop", "checkout")
            }
        );
        assert_eq!(up.timestamp_ms, 30_000);
        // Another series of the same edge (another response code) adds nothing new.
        let mut other: Vec<(&str, &str)> = ISTIO.to_vec();
        other.retain(|(k, _)| *k != "response_code");
        other.push(("response_code", "503"));
        assert_eq!(set.observe(m, &other, 1.0, 31_000), None);
        assert_eq!(set.observe(m, &other, 2.0, 45_000), None);
        assert_eq!(set.edges().len(), 1);
        // The last call was at 45 s: alive at 105 s, gone after.
        assert!(set.expire(105_000).is_empty());
        // The counters are still scraped but flat: not calls.
        assert_eq!(set.observe(m, ISTIO, 12.0, 100_000), None);
        let gone = set.expire(105_001);
        assert_eq!(
            gone,
            vec![TopologyEvent {
                timestamp_ms: 105_001,
                change: TopologyChange::DeleteEdge {
                    edge: calls("shop", "frontend", "shop", "checkout")
                }
            }]
        );
        assert!(set.edges().is_empty());
        // A counter reset to a positive value is a call: the edge comes back.
        assert!(set.observe(m, ISTIO, 3.0, 110_000).is_some());
    }

    #[test]
    fn series_are_bounded_and_forgotten() {
        let mut set = istio_set(60, 1);
        let m = "istio_requests_total";
        set.observe(m, ISTIO, 1.0, 0);
        let mut other: Vec<(&str, &str)> = ISTIO.to_vec();
        other.push(("connection_security_policy", "mutual_tls"));
        assert_eq!(set.observe(m, &other, 1.0, 0), None);
        assert_eq!(set.observe(m, &other, 5.0, 1), None);
        assert_eq!((set.series_len(), set.dropped_series()), (1, 2));
        set.expire(60_001);
        assert_eq!(set.series_len(), 0);
        // Label order does not change a series' identity.
        let mut reversed = ISTIO.to_vec();
        reversed.reverse();
        set.observe(m, ISTIO, 1.0, 70_000);
        assert!(set.observe(m, &reversed, 2.0, 71_000).is_some());
    }

    #[test]
    fn replayed_older_samples_are_not_calls() {
        let mut set = istio_set(60, 100);
        let m = "istio_requests_total";
        assert_eq!(set.observe(m, ISTIO, 5.0, 4_000), None);
        // Older samples (a poller's overlapping look-back replays them) are smaller than the
        // last one but are no counter reset; the last one again is no growth.
        assert_eq!(set.observe(m, ISTIO, 4.0, 2_000), None);
        assert_eq!(set.observe(m, ISTIO, 5.0, 4_000), None);
        assert!(set.edges().is_empty());
        assert!(set.observe(m, ISTIO, 6.0, 5_000).is_some());
    }
}
