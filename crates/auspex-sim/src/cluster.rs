//! The simulated cluster: its static shape ([`Cluster`]: nodes, services, the call graph and
//! every per-service constant) and its changing pod population ([`State`]), changed only
//! through [`Op`]s so that the planner and the simulator replay exactly the same history.
//! It owns names and topology events; it knows nothing of load or faults.

use std::collections::BTreeSet;
use std::sync::Arc;

use auspex_model::{Edge, EdgeKind, Entity, EntityKind, EntityRef, TimestampMs, TopologyChange};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::config::SimConfig;

/// Index of a pod in [`State::pods`]; ids are never reused.
pub(crate) type PodId = usize;

/// A call edge as the caller sees it.
#[derive(Debug, Clone)]
pub(crate) struct Callee {
    pub service: usize,
    /// How much of the callee's failures the caller passes on (0..1): how critical the call is.
    pub criticality: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub name: String,
    pub namespace: String,
    pub entity: Entity,
    /// Callers as (service, calls per request).
    pub callers: Vec<(usize, f64)>,
    pub callees: Vec<Callee>,
    /// Requests per second at the diurnal peak, for roots; 0 for backends.
    pub root_rps: f64,
    /// Noise-free requests per second at the diurnal peak.
    pub nominal_peak_rps: f64,
    pub cpu_request: f64,
    pub cpu_limit: f64,
    pub mem_request: f64,
    pub mem_limit: f64,
    /// Idle CPU as a fraction of the limit.
    pub cpu_idle_frac: f64,
    /// CPU seconds per request.
    pub cpu_per_request: f64,
    /// Warm working set as a fraction of the limit.
    pub mem_base_frac: f64,
    /// Background error ratio.
    pub base_err: f64,
    /// Server-side median latency including the slowest downstream chain, seconds.
    pub p50: f64,
    pub p90_ratio: f64,
    pub p99_ratio: f64,
    /// Nominal p99 of the slowest callee (0 without callees), seconds.
    pub client_p99: f64,
    pub rx_bytes_per_request: f64,
    pub tx_bytes_per_request: f64,
    /// ReplicaSet hash of the current version.
    pub template_hash: String,
}

impl Service {
    pub fn nominal_p99(&self) -> f64 {
        self.p50 * self.p99_ratio
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub name: String,
    pub entity: Entity,
    pub cpu_cores: f64,
    pub memory_bytes: f64,
}

/// The static shape of the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    pub nodes: Vec<Node>,
    /// Callers always have a lower index than their callees, so index order is a topological
    /// order of the call graph.
    pub services: Vec<Service>,
    pub batch_namespace: String,
}

/// Cumulative counters of a pod or node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub restarts: f64,
    pub oom_kills: f64,
    pub rx_bytes: f64,
    pub tx_bytes: f64,
    pub rx_errors: f64,
    pub tx_errors: f64,
    pub rx_dropped: f64,
    pub tx_dropped: f64,
}

impl Counters {
    pub fn reset_network(&mut self) {
        self.rx_bytes = 0.0;
        self.tx_bytes = 0.0;
        self.rx_errors = 0.0;
        self.tx_errors = 0.0;
        self.rx_dropped = 0.0;
        self.tx_dropped = 0.0;
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Pod {
    /// `None` for batch pods (noisy neighbours), which belong to no service.
    pub service: Option<usize>,
    pub node: usize,
    pub entity: Entity,
    /// Relative share of its service's traffic.
    pub weight: f64,
    /// Tick its container last started.
    pub started_tick: u64,
    pub counters: Counters,
}

/// A change to the pod population.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Create {
        id: PodId,
        service: Option<usize>,
        name: String,
        workload: String,
        /// `None` until the planner places it.
        node: Option<usize>,
        weight: f64,
    },
    Delete {
        id: PodId,
    },
    Move {
        id: PodId,
        node: usize,
    },
}

/// The pods alive at one instant.
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// Indexed by [`PodId`]; `None` for reserved ids not created yet and for deleted pods.
    /// Shared (`Arc`): the fault planner copies the state once per fault it weighs, and a
    /// deep copy of every pod made planning quadratic in the cluster's size; writers go
    /// through `Arc::make_mut`, which copies only a pod still shared with such a copy.
    pub pods: Vec<Option<Arc<Pod>>>,
    /// Live pods of each service, oldest first.
    pub service_pods: Vec<Vec<PodId>>,
    pub node_pods: Vec<BTreeSet<PodId>>,
    /// Live pods without a service.
    pub batch_pods: Vec<PodId>,
}

const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A Kubernetes-style random suffix.
pub(crate) fn random_suffix(rng: &mut ChaCha8Rng, len: usize) -> String {
    (0..len)
        .map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char)
        .collect()
}

const ROOT_NAMES: &[&str] = &[
    "frontend",
    "mobile-api",
    "partner-api",
    "admin-web",
    "graphql-gateway",
];
const BACKEND_NAMES: &[&str] = &[
    "checkout",
    "cart",
    "catalog",
    "payment",
    "shipping",
    "currency",
    "recommendation",
    "auth",
    "inventory",
    "search",
    "user",
    "review",
    "pricing",
    "orders",
    "notification",
    "ads",
    "session",
    "fraud",
    "tax",
    "media",
];

fn numbered(names: &[&str], i: usize) -> String {
    let base = names[i % names.len()];
    match i / names.len() {
        0 => base.to_string(),
        n => format!("{base}-{}", n + 1),
    }
}

fn log_uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp()
}

impl Cluster {
    /// Builds nodes, services and the call graph; sizes each service so that its pods run at
    /// 20-40% of their CPU limit at the nominal diurnal peak.
    pub fn build(config: &SimConfig, rng: &mut ChaCha8Rng) -> Cluster {
        let width = config.nodes.saturating_sub(1).to_string().len().max(3);
        let nodes = (0..config.nodes)
            .map(|i| {
                let name = format!("node-{i:0width$}");
                Node {
                    entity: Entity::new(EntityKind::Node, None, &name),
                    name,
                    cpu_cores: config.node_cpu_cores,
                    memory_bytes: config.node_memory_bytes as f64,
                }
            })
            .collect();

        let n = config.services;
        let roots = ((n as f64 * config.root_service_fraction).round() as usize).clamp(1, n);
        let mut services: Vec<Service> = Vec::with_capacity(n);
        for i in 0..n {
            let name = if i < roots {
                numbered(ROOT_NAMES, i)
            } else {
                numbered(BACKEND_NAMES, i - roots)
            };
            let namespace = if i < roots {
                config.namespaces[0].clone()
            } else {
                config.namespaces[rng.random_range(0..config.namespaces.len())].clone()
            };
            let mut entity = Entity::new(EntityKind::Service, Some(&namespace), &name);
            entity.workload = Some(name.clone());
            let size = [0.5, 1.0, 1.0, 2.0][rng.random_range(0..4)];
            let mut callers = Vec::new();
            if i >= roots {
                let k = rng.random_range(1..=config.max_callers.min(i));
                // Callers come from a window of recent services so that the graph has depth
                // and fan-in stays bounded at scale.
                let lo = i.saturating_sub(roots.max(20));
                let mut picked = BTreeSet::new();
                while picked.len() < k {
                    picked.insert(rng.random_range(lo..i));
                }
                for c in picked {
                    callers.push((c, rng.random_range(0.3..1.2)));
                }
            }
            services.push(Service {
                name,
                namespace,
                entity,
                callers,
                callees: Vec::new(),
                root_rps: if i < roots {
                    config.root_requests_per_second * rng.random_range(0.6..1.4)
                } else {
                    0.0
                },
                nominal_peak_rps: 0.0,
                cpu_request: config.pod_cpu_request_cores * size,
                cpu_limit: config.pod_cpu_limit_cores * size,
                mem_request: config.pod_memory_request_bytes as f64 * size,
                mem_limit: config.pod_memory_limit_bytes as f64 * size,
                cpu_idle_frac: rng.random_range(0.01..0.04),
                cpu_per_request: 0.0,
                mem_base_frac: rng.random_range(0.3..0.5),
                base_err: rng.random_range(0.0003..0.002),
                p50: log_uniform(rng, 0.002, 0.03),
                p90_ratio: rng.random_range(1.8..2.6),
                p99_ratio: rng.random_range(3.0..6.0),
                client_p99: 0.0,
                rx_bytes_per_request: log_uniform(rng, 800.0, 4000.0),
                tx_bytes_per_request: log_uniform(rng, 2000.0, 20000.0),
                template_hash: random_suffix(rng, 9),
            });
        }
        for j in 0..n {
            let callers = services[j].callers.clone();
            for (i, _) in callers {
                let criticality = rng.random_range(0.4..0.9);
                services[i].callees.push(Callee {
                    service: j,
                    criticality,
                });
            }
        }
        // Nominal peak load, callers first.
        for j in 0..n {
            let rps = if j < roots {
                services[j].root_rps
            } else {
                services[j]
                    .callers
                    .iter()
                    .map(|&(i, m)| services[i].nominal_peak_rps * m)
                    .sum()
            };
            services[j].nominal_peak_rps = rps;
        }
        // Latency includes the slowest downstream chain: callees first.
        for j in (0..n).rev() {
            let (down_p50, client_p99) = services[j]
                .callees
                .iter()
                .map(|c| (services[c.service].p50, services[c.service].nominal_p99()))
                .fold((0.0f64, 0.0f64), |(a, b), (x, y)| (a.max(x), b.max(y)));
            services[j].p50 += down_p50;
            services[j].client_p99 = client_p99;
        }
        for s in &mut services {
            let target = rng.random_range(0.2..0.4);
            let per_pod_rps = s.nominal_peak_rps / config.replicas as f64;
            s.cpu_per_request =
                ((target - s.cpu_idle_frac) * s.cpu_limit / per_pod_rps.max(1e-3)).max(0.0);
        }
        Cluster {
            nodes,
            services,
            batch_namespace: config.batch_namespace.clone(),
        }
    }

    /// Services with at least one caller (cascades need somewhere to travel).
    pub fn backends(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.services.len()).filter(|&s| !self.services[s].callers.is_empty())
    }
}

impl State {
    pub fn new(cluster: &Cluster) -> State {
        State {
            pods: Vec::new(),
            service_pods: vec![Vec::new(); cluster.services.len()],
            node_pods: vec![BTreeSet::new(); cluster.nodes.len()],
            batch_pods: Vec::new(),
        }
    }

    /// Reserves an id for a pod created later.
    pub fn reserve(&mut self) -> PodId {
        self.pods.push(None);
        self.pods.len() - 1
    }

    pub fn pod(&self, id: PodId) -> Option<&Pod> {
        self.pods.get(id).and_then(Option::as_deref)
    }

    /// Pod `id` to change, if it is alive.
    pub fn pod_mut(&mut self, id: PodId) -> Option<&mut Pod> {
        self.pods
            .get_mut(id)
            .and_then(Option::as_mut)
            .map(Arc::make_mut)
    }

    /// A fresh pod name for a workload.
    pub fn pod_name(workload: &str, hash: &str, rng: &mut ChaCha8Rng) -> String {
        format!("{workload}-{hash}-{}", random_suffix(rng, 5))
    }

    /// Applies `op` (which must be placed) at `tick`, returning the topology changes it makes.
    pub fn apply(&mut self, cluster: &Cluster, op: &Op, tick: u64) -> Vec<TopologyChange> {
        match op {
            Op::Create {
                id,
                service,
                name,
                workload,
                node,
                weight,
            } => {
                let node = node.expect("ops are placed before they are applied");
                let namespace = match service {
                    Some(s) => cluster.services[*s].namespace.as_str(),
                    None => cluster.batch_namespace.as_str(),
                };
                let mut entity = Entity::new(EntityKind::Pod, Some(namespace), name);
                entity.node = Some(cluster.nodes[node].name.clone());
                entity.service = service.map(|s| cluster.services[s].name.clone());
                entity.workload = Some(workload.clone());
                // Pod names are `{workload}-{template hash}-{suffix}`, as a Deployment's are:
                // the hash names the revision (remediation recommends rolling back to the
                // previous one).
                if let Some((hash, _)) = name
                    .strip_prefix(workload.as_str())
                    .and_then(|r| r.strip_prefix('-'))
                    .and_then(|r| r.rsplit_once('-'))
                {
                    entity
                        .labels
                        .insert("pod-template-hash".into(), hash.to_string());
                }
                let pod_ref = entity.reference();
                let mut changes = vec![
                    TopologyChange::UpsertEntity {
                        entity: entity.clone(),
                    },
                    TopologyChange::UpsertEdge {
                        edge: Edge {
                            kind: EdgeKind::RunsOn,
                            from: pod_ref.clone(),
                            to: cluster.nodes[node].entity.reference(),
                        },
                    },
                ];
                if let Some(s) = service {
                    changes.push(TopologyChange::UpsertEdge {
                        edge: Edge {
                            kind: EdgeKind::BelongsTo,
                            from: pod_ref,
                            to: cluster.services[*s].entity.reference(),
                        },
                    });
                    self.service_pods[*s].push(*id);
                } else {
                    self.batch_pods.push(*id);
                }
                self.node_pods[node].insert(*id);
                if self.pods.len() <= *id {
                    self.pods.resize_with(*id + 1, || None);
                }
                self.pods[*id] = Some(Arc::new(Pod {
                    service: *service,
                    node,
                    entity,
                    weight: *weight,
                    started_tick: tick,
                    counters: Counters::default(),
                }));
                changes
            }
            Op::Delete { id } => {
                // A fault under evaluation may replay a delete that other churn already did;
                // the planner refuses such a fault, so the run itself never does.
                let Some(pod) = self.pods.get_mut(*id).and_then(Option::take) else {
                    return Vec::new();
                };
                match pod.service {
                    Some(s) => self.service_pods[s].retain(|p| p != id),
                    None => self.batch_pods.retain(|p| p != id),
                }
                self.node_pods[pod.node].remove(id);
                vec![TopologyChange::DeleteEntity {
                    entity: pod.entity.reference(),
                }]
            }
            Op::Move { id, node } => {
                let Some(pod) = self.pods.get_mut(*id).and_then(Option::as_mut) else {
                    return Vec::new();
                };
                let pod = Arc::make_mut(pod);
                let old = pod.node;
                pod.node = *node;
                pod.entity.node = Some(cluster.nodes[*node].name.clone());
                self.node_pods[old].remove(id);
                self.node_pods[*node].insert(*id);
                let pod_ref = pod.entity.reference();
                vec![
                    TopologyChange::UpsertEntity {
                        entity: pod.entity.clone(),
                    },
                    TopologyChange::DeleteEdge {
                        edge: Edge {
                            kind: EdgeKind::RunsOn,
                            from: pod_ref.clone(),
                            to: cluster.nodes[old].entity.reference(),
                        },
                    },
                    TopologyChange::UpsertEdge {
                        edge: Edge {
                            kind: EdgeKind::RunsOn,
                            from: pod_ref,
                            to: cluster.nodes[*node].entity.reference(),
                        },
                    },
                ]
            }
        }
    }
}

/// The topology changes that introduce the static part of the cluster (nodes, services and
/// call edges); pods follow through their [`Op::Create`].
pub(crate) fn static_topology(cluster: &Cluster) -> Vec<TopologyChange> {
    let mut out: Vec<TopologyChange> = cluster
        .nodes
        .iter()
        .map(|n| TopologyChange::UpsertEntity {
            entity: n.entity.clone(),
        })
        .collect();
    out.extend(
        cluster
            .services
            .iter()
            .map(|s| TopologyChange::UpsertEntity {
                entity: s.entity.clone(),
            }),
    );
    for s in &cluster.services {
        for c in &s.callees {
            out.push(TopologyChange::UpsertEdge {
                edge: Edge {
                    kind: EdgeKind::Calls,
                    from: s.entity.reference(),
                    to: cluster.services[c.service].entity.reference(),
                },
            });
        }
    }
    out
}

/// The reference of a pod, for labels.
pub(crate) fn pod_ref(state: &State, id: PodId) -> EntityRef {
    state
        .pod(id)
        .expect("labelled pods are alive when labelled")
        .entity
        .reference()
}

/// Wraps changes into events at `ts`.
pub(crate) fn events_at(
    ts: TimestampMs,
    changes: Vec<TopologyChange>,
) -> impl Iterator<Item = auspex_model::TopologyEvent> {
    changes
        .into_iter()
        .map(move |change| auspex_model::TopologyEvent {
            timestamp_ms: ts,
            change,
        })
}
