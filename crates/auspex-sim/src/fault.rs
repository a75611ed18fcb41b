//! Faults as deterministic functions of time, and the noise-free effect model shared by the
//! planner (which derives labels from it) and the simulator (which adds noise on top).
//!
//! A fault says, for each tick, what it does to the pods, nodes and call links it touches
//! ([`Effects`]). [`propagate`] turns that into per-service failure and latency, passing
//! errors up the call graph with a lag of a few ticks per hop. Because labels are computed by
//! running exactly this model ([`evaluate`]), a label's incident time is the first tick at which
//! the emitted metrics cross the incident condition, not an estimate of it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use auspex_model::{AnomalyKind, EntityRef, IncidentLabel};

use crate::cluster::{Cluster, Op, PodId, State, pod_ref};
use crate::config::FaultKind;

/// A service (or pod) whose requests fail at least this often, noise aside, is in an incident.
pub(crate) const ERR_INCIDENT: f64 = 0.05;
/// A pod throttled at least this much by a neighbour is in an incident.
pub(crate) const THROTTLE_INCIDENT: f64 = 0.3;
/// Below these, propagated effects are dropped: they stay local instead of reaching every
/// frontend at homeopathic strength.
const ERR_CUT: f64 = 0.005;
const LAT_CUT: f64 = 0.005;

/// Something a fault can touch (and lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    Pod(PodId),
    Node(usize),
    Service(usize),
}

/// What faults do to one pod at one tick.
#[derive(Debug, Clone)]
pub(crate) struct PodFx {
    pub ready: bool,
    /// Container restarts happening at this tick.
    pub restarts: f64,
    pub oom: bool,
    pub reset_net: bool,
    /// Working set at least this fraction of the limit (0: none).
    pub mem_floor: f64,
    /// Working set exactly this fraction of the limit (a restarting container).
    pub mem_override: Option<f64>,
    /// CPU demand at least this fraction of the limit (may exceed 1).
    pub cpu_floor: f64,
    /// Added CFS throttling ratio.
    pub throttle: f64,
    /// Fraction of the pod's own requests that fail.
    pub err: f64,
    /// Added p99 latency, seconds (p90 gets half, p50 a quarter).
    pub lat: f64,
    /// Multiplier on packet error and drop rates.
    pub net_mult: f64,
    /// The fault's own incident condition holds at this tick.
    pub incident: Option<AnomalyKind>,
}

impl Default for PodFx {
    fn default() -> Self {
        PodFx {
            ready: true,
            restarts: 0.0,
            oom: false,
            reset_net: false,
            mem_floor: 0.0,
            mem_override: None,
            cpu_floor: 0.0,
            throttle: 0.0,
            err: 0.0,
            lat: 0.0,
            net_mult: 1.0,
            incident: None,
        }
    }
}

impl PodFx {
    fn merge(&mut self, o: &PodFx) {
        self.ready &= o.ready;
        self.restarts += o.restarts;
        self.oom |= o.oom;
        self.reset_net |= o.reset_net;
        self.mem_floor = self.mem_floor.max(o.mem_floor);
        self.mem_override = self.mem_override.or(o.mem_override);
        self.cpu_floor = self.cpu_floor.max(o.cpu_floor);
        self.throttle += o.throttle;
        self.err = 1.0 - (1.0 - self.err) * (1.0 - o.err);
        self.lat += o.lat;
        self.net_mult = self.net_mult.max(o.net_mult);
        self.incident = self.incident.or(o.incident);
    }
}

/// What faults do to one node at one tick.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeFx {
    /// CPU utilisation at least this (a hog fills the gap).
    pub cpu_floor: f64,
    /// Memory utilisation at least this (a leaking system process).
    pub mem_floor: f64,
    pub net_mult: f64,
    pub incident: Option<AnomalyKind>,
}

/// What faults do to one call link (caller, callee) at one tick.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkFx {
    pub err: f64,
    pub lat: f64,
}

/// All fault effects at one tick.
#[derive(Debug, Clone, Default)]
pub(crate) struct Effects {
    pub pods: BTreeMap<PodId, PodFx>,
    pub nodes: BTreeMap<usize, NodeFx>,
    pub links: BTreeMap<(usize, usize), LinkFx>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.nodes.is_empty() && self.links.is_empty()
    }

    fn pod(&mut self, id: PodId, fx: PodFx) {
        self.pods.entry(id).or_default().merge(&fx);
    }

    fn node(&mut self, id: usize, fx: NodeFx) {
        let e = self.nodes.entry(id).or_insert(NodeFx {
            net_mult: 1.0,
            ..NodeFx::default()
        });
        e.cpu_floor = e.cpu_floor.max(fx.cpu_floor);
        e.mem_floor = e.mem_floor.max(fx.mem_floor);
        e.net_mult = e.net_mult.max(fx.net_mult);
        e.incident = e.incident.or(fx.incident);
    }
}

/// A service's fault-induced failure and latency at one tick.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SvcFx {
    /// Failure ratio of requests caused by its own pods.
    pub own_err: f64,
    /// Failure ratio caused by failing calls downstream.
    pub down_err: f64,
    /// Total: `1 - (1 - own)(1 - down)`.
    pub err: f64,
    /// Added server-side p99 latency, seconds.
    pub lat: f64,
    /// Added p99 latency of its outgoing calls, seconds.
    pub client_lat: f64,
}

pub(crate) type SvcMap = BTreeMap<usize, SvcFx>;

/// Service effects of the last `lag` ticks: a caller sees its callee's failures `lag` ticks
/// late (retries and queues absorb the first seconds), so cascades travel hop by hop.
#[derive(Debug, Clone)]
pub(crate) struct History {
    lag: usize,
    past: VecDeque<SvcMap>,
}

impl History {
    pub fn new(lag: usize) -> Self {
        History {
            lag: lag.max(1),
            past: VecDeque::new(),
        }
    }

    /// The service effects of `lag` ticks ago.
    pub fn lagged(&self) -> Option<&SvcMap> {
        if self.past.len() >= self.lag {
            self.past.front()
        } else {
            None
        }
    }

    pub fn push(&mut self, now: SvcMap) {
        self.past.push_back(now);
        while self.past.len() > self.lag {
            self.past.pop_front();
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.past.iter().all(BTreeMap::is_empty)
    }
}

/// Per-service effects at one tick from the pod and link effects of this tick and the service
/// effects of `lag` ticks ago.
pub(crate) fn propagate(fx: &Effects, hist: &History, cluster: &Cluster, state: &State) -> SvcMap {
    let lagged = hist.lagged();
    let mut touched = BTreeSet::new();
    for p in fx.pods.keys() {
        if let Some(s) = state.pod(*p).and_then(|pod| pod.service) {
            touched.insert(s);
        }
    }
    touched.extend(fx.links.keys().map(|&(from, _)| from));
    if let Some(l) = lagged {
        for c in l.keys() {
            touched.extend(
                cluster.services[*c]
                    .callers
                    .iter()
                    .map(|&(caller, _)| caller),
            );
        }
    }
    let mut out = SvcMap::new();
    for s in touched {
        let (mut w, mut we, mut wl) = (0.0, 0.0, 0.0);
        for p in &state.service_pods[s] {
            let Some(pod) = state.pod(*p) else { continue };
            match fx.pods.get(p) {
                Some(f) if !f.ready => {}
                Some(f) => {
                    w += pod.weight;
                    we += pod.weight * f.err;
                    wl += pod.weight * f.lat;
                }
                None => w += pod.weight,
            }
        }
        let (own_err, own_lat) = if w > 0.0 {
            (we / w, wl / w)
        } else {
            (1.0, 0.0)
        };
        let mut ok = 1.0;
        let mut client_lat = 0.0f64;
        for c in &cluster.services[s].callees {
            let (ce, cl) = lagged
                .and_then(|l| l.get(&c.service))
                .map_or((0.0, 0.0), |v| (v.err, v.lat));
            let (le, ll) = fx
                .links
                .get(&(s, c.service))
                .map_or((0.0, 0.0), |v| (v.err, v.lat));
            let eff = 1.0 - (1.0 - ce) * (1.0 - le);
            ok *= 1.0 - c.criticality * eff;
            client_lat = client_lat.max(0.8 * cl + ll);
        }
        let down_err = 1.0 - ok;
        let err = 1.0 - (1.0 - own_err) * (1.0 - down_err);
        let lat = own_lat + client_lat;
        if err < ERR_CUT && lat < LAT_CUT {
            continue;
        }
        out.insert(
            s,
            SvcFx {
                own_err,
                down_err,
                err,
                lat,
                client_lat,
            },
        );
    }
    out
}

/// What a fault acts on, with the constants drawn when it was planned.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    MemoryLeak {
        pod: PodId,
        base_frac: f64,
    },
    CpuSaturation {
        pod: PodId,
        peak: f64,
        err: f64,
        lat_scale: f64,
    },
    NoisyNeighbour {
        node: usize,
        hog: PodId,
        /// (pod, susceptibility to contention, its service's nominal p99)
        pods: Vec<(PodId, f64, f64)>,
    },
    NetworkNode {
        node: usize,
        pods: Vec<PodId>,
        err: f64,
        lat: f64,
    },
    NetworkLink {
        from: usize,
        to: usize,
        pods: Vec<PodId>,
        err: f64,
        lat: f64,
    },
    CrashLoop {
        service: usize,
        /// (new pod, created, deleted by the rollback)
        bad: Vec<(PodId, u64, u64)>,
        /// The old pods the bad ones replace.
        replaced: Vec<PodId>,
        early_restarts: [u64; 2],
        backoff: BTreeMap<u64, u32>,
    },
    NodePressure {
        node: usize,
        evicted: Vec<PodId>,
    },
    Cascade {
        service: usize,
        crash: bool,
        /// (pod, tick of its one restart before the crash loop, when crashing)
        pods: Vec<(PodId, u64)>,
        peak: f64,
        err: f64,
        lat_scale: f64,
        backoff: BTreeMap<u64, u32>,
    },
}

/// One planned fault. Ticks are indices from the start of the run.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub kind: FaultKind,
    /// First tick of the precursor.
    pub onset: u64,
    /// First tick of the incident on the root entity.
    pub incident: u64,
    /// First tick after the fault is removed.
    pub end: u64,
    /// Shape of the precursor ramp: 1 linear, 2 accelerating.
    pub gamma: f64,
    pub target: Target,
    /// Pod churn the fault itself causes (bad deploy and rollback, eviction, the hog pod).
    pub ops: Vec<(u64, Op)>,
}

/// Restart ticks of a crash loop starting at `from`: kubelet's back-off of 10 s doubling to
/// 5 min, until `until`.
pub(crate) fn backoff_ticks(from: u64, until: u64, interval_ms: u64) -> BTreeMap<u64, u32> {
    let mut out = BTreeMap::new();
    let mut at_ms = 0u64;
    let mut delay_ms = 10_000u64;
    loop {
        let k = from + at_ms / interval_ms;
        if k >= until {
            break;
        }
        *out.entry(k).or_insert(0) += 1;
        at_ms += delay_ms;
        delay_ms = (delay_ms * 2).min(300_000);
    }
    out
}

impl Fault {
    /// Progress through the precursor: 0 at onset, 1 on the last tick before the incident.
    fn x(&self, k: u64) -> f64 {
        let span = self.incident.saturating_sub(self.onset + 1).max(1);
        (k.saturating_sub(self.onset) as f64 / span as f64).min(1.0)
    }

    fn ramp(&self, k: u64) -> f64 {
        self.x(k).powf(self.gamma)
    }

    /// The entities where the fault is injected (labelled with `root_cause = true`).
    pub fn roots(&self) -> Vec<Key> {
        match &self.target {
            Target::MemoryLeak { pod, .. } | Target::CpuSaturation { pod, .. } => {
                vec![Key::Pod(*pod)]
            }
            Target::NoisyNeighbour { node, .. }
            | Target::NetworkNode { node, .. }
            | Target::NodePressure { node, .. } => vec![Key::Node(*node)],
            Target::NetworkLink { from, .. } => vec![Key::Service(*from)],
            Target::CrashLoop { service, bad, .. } => std::iter::once(Key::Service(*service))
                .chain(bad.iter().map(|b| Key::Pod(b.0)))
                .collect(),
            Target::Cascade { service, pods, .. } => std::iter::once(Key::Service(*service))
                .chain(pods.iter().map(|p| Key::Pod(p.0)))
                .collect(),
        }
    }

    /// Entities that must not churn or take part in another fault while this one runs, beyond
    /// those it visibly touches.
    pub fn locks(&self) -> Vec<Key> {
        let mut keys = self.roots();
        match &self.target {
            Target::NoisyNeighbour { hog, pods, .. } => {
                keys.push(Key::Pod(*hog));
                keys.extend(pods.iter().map(|p| Key::Pod(p.0)));
            }
            Target::NetworkNode { pods, .. } => keys.extend(pods.iter().map(|p| Key::Pod(*p))),
            Target::NetworkLink { to, pods, .. } => {
                keys.push(Key::Service(*to));
                keys.extend(pods.iter().map(|p| Key::Pod(*p)));
            }
            Target::NodePressure { evicted, .. } => {
                keys.extend(evicted.iter().map(|p| Key::Pod(*p)))
            }
            Target::CrashLoop { replaced, .. } => {
                keys.extend(replaced.iter().map(|p| Key::Pod(*p)))
            }
            _ => {}
        }
        keys
    }

    /// The incident kind of a service whose own pods make its requests fail.
    pub fn own_service_kind(&self) -> AnomalyKind {
        match &self.target {
            Target::CpuSaturation { .. } | Target::NoisyNeighbour { .. } => {
                AnomalyKind::CpuExhaustion
            }
            Target::Cascade { crash: false, .. } => AnomalyKind::CpuExhaustion,
            Target::NetworkNode { .. } | Target::NetworkLink { .. } => AnomalyKind::NetworkIssue,
            _ => AnomalyKind::PodFailure,
        }
    }

    /// Adds the fault's effects at tick `k` to `out`.
    pub fn effects(&self, k: u64, out: &mut Effects) {
        let (k0, ki, ke) = (self.onset, self.incident, self.end);
        if k < k0 {
            return;
        }
        let pre = k < ki;
        let live = k < ke;
        match &self.target {
            Target::MemoryLeak { pod, base_frac } => {
                if pre {
                    let floor = base_frac + (0.99 - base_frac) * self.ramp(k);
                    out.pod(
                        *pod,
                        PodFx {
                            mem_floor: floor,
                            ..PodFx::default()
                        },
                    );
                } else if live {
                    out.pod(
                        *pod,
                        PodFx {
                            ready: false,
                            restarts: if k == ki { 1.0 } else { 0.0 },
                            oom: k == ki,
                            reset_net: k == ki,
                            mem_override: Some(0.05),
                            incident: Some(AnomalyKind::MemoryExhaustion),
                            ..PodFx::default()
                        },
                    );
                }
            }
            Target::CpuSaturation {
                pod,
                peak,
                err,
                lat_scale,
            } => {
                if pre {
                    let floor = 0.5 + 0.45 * self.ramp(k);
                    let q = ((floor - 0.7) / 0.25).max(0.0);
                    out.pod(
                        *pod,
                        PodFx {
                            cpu_floor: floor,
                            lat: lat_scale * 2.0 * q * q,
                            ..PodFx::default()
                        },
                    );
                } else if live {
                    out.pod(
                        *pod,
                        PodFx {
                            cpu_floor: *peak,
                            err: *err,
                            lat: lat_scale * 6.0,
                            incident: Some(AnomalyKind::CpuExhaustion),
                            ..PodFx::default()
                        },
                    );
                }
            }
            Target::NoisyNeighbour { node, pods, .. } => {
                if !live {
                    return;
                }
                let c = if pre { 0.55 + 0.37 * self.ramp(k) } else { 1.0 };
                out.node(
                    *node,
                    NodeFx {
                        cpu_floor: c,
                        net_mult: 1.0,
                        incident: (!pre).then_some(AnomalyKind::CpuExhaustion),
                        ..NodeFx::default()
                    },
                );
                let sev = ((c - 0.8) / 0.2).clamp(0.0, 1.0);
                if sev > 0.0 {
                    for &(p, s, lat_scale) in pods {
                        let throttle = s * sev;
                        out.pod(
                            p,
                            PodFx {
                                throttle,
                                lat: lat_scale * 2.0 * throttle,
                                incident: (throttle >= THROTTLE_INCIDENT)
                                    .then_some(AnomalyKind::CpuExhaustion),
                                ..PodFx::default()
                            },
                        );
                    }
                }
            }
            Target::NetworkNode {
                node,
                pods,
                err,
                lat,
            } => {
                if !live {
                    return;
                }
                let s = self.x(k).powi(2);
                let (mult, e, l) = if pre {
                    (1.0 + 200.0 * s, 0.03 * s, 0.1 * s)
                } else {
                    (3000.0, *err, *lat)
                };
                let incident = (!pre).then_some(AnomalyKind::NetworkIssue);
                out.node(
                    *node,
                    NodeFx {
                        net_mult: mult,
                        incident,
                        ..NodeFx::default()
                    },
                );
                for &p in pods {
                    out.pod(
                        p,
                        PodFx {
                            net_mult: mult,
                            err: e,
                            lat: l,
                            incident,
                            ..PodFx::default()
                        },
                    );
                }
            }
            Target::NetworkLink {
                from,
                to,
                pods,
                err,
                lat,
            } => {
                if !live {
                    return;
                }
                let s = if pre { self.x(k).powi(2) } else { 1.0 };
                let (e, l) = if pre {
                    (0.03 * s, 0.1 * s)
                } else {
                    (*err, *lat)
                };
                out.links.insert((*from, *to), LinkFx { err: e, lat: l });
                for &p in pods {
                    out.pod(
                        p,
                        PodFx {
                            net_mult: 1.0 + 30.0 * s,
                            ..PodFx::default()
                        },
                    );
                }
            }
            Target::CrashLoop {
                bad,
                early_restarts,
                backoff,
                ..
            } => {
                for &(p, created, deleted) in bad {
                    if k < created || k >= deleted {
                        continue;
                    }
                    let fx = if pre {
                        let restart = early_restarts.contains(&k);
                        PodFx {
                            ready: !restart,
                            restarts: if restart { 1.0 } else { 0.0 },
                            reset_net: restart,
                            mem_override: restart.then_some(0.05),
                            err: if restart {
                                0.0
                            } else {
                                0.12 * self.x(k).powi(2)
                            },
                            ..PodFx::default()
                        }
                    } else {
                        let n = backoff.get(&k).copied().unwrap_or(0);
                        PodFx {
                            ready: false,
                            restarts: n as f64,
                            reset_net: n > 0,
                            mem_override: Some(0.05),
                            incident: Some(AnomalyKind::PodFailure),
                            ..PodFx::default()
                        }
                    };
                    out.pod(p, fx);
                }
            }
            Target::NodePressure { node, evicted } => {
                if !live {
                    return;
                }
                let c0 = 0.6;
                let (c, incident) = if pre {
                    (c0 + (0.95 - c0) * self.ramp(k), None)
                } else if k == ki {
                    (0.985, Some(AnomalyKind::MemoryExhaustion))
                } else {
                    (0.88, None)
                };
                out.node(
                    *node,
                    NodeFx {
                        mem_floor: c,
                        net_mult: 1.0,
                        incident,
                        ..NodeFx::default()
                    },
                );
                if !pre && k < ki + EVICTION_TICKS {
                    for &p in evicted {
                        out.pod(
                            p,
                            PodFx {
                                ready: false,
                                mem_override: Some(0.0),
                                incident: Some(AnomalyKind::PodFailure),
                                ..PodFx::default()
                            },
                        );
                    }
                }
            }
            Target::Cascade {
                crash,
                pods,
                peak,
                err,
                lat_scale,
                backoff,
                ..
            } => {
                if !live {
                    return;
                }
                for &(p, early) in pods {
                    let fx = match (pre, crash) {
                        (true, true) => {
                            let restart = k == early;
                            PodFx {
                                ready: !restart,
                                restarts: if restart { 1.0 } else { 0.0 },
                                reset_net: restart,
                                mem_override: restart.then_some(0.05),
                                err: if restart {
                                    0.0
                                } else {
                                    0.04 * self.x(k).powi(2)
                                },
                                ..PodFx::default()
                            }
                        }
                        (true, false) => {
                            let floor = 0.5 + 0.45 * self.ramp(k);
                            let q = ((floor - 0.7) / 0.25).max(0.0);
                            PodFx {
                                cpu_floor: floor,
                                lat: lat_scale * 2.0 * q * q,
                                ..PodFx::default()
                            }
                        }
                        (false, true) => {
                            let n = backoff.get(&k).copied().unwrap_or(0);
                            PodFx {
                                ready: false,
                                restarts: n as f64,
                                reset_net: n > 0,
                                mem_override: Some(0.05),
                                incident: Some(AnomalyKind::PodFailure),
                                ..PodFx::default()
                            }
                        }
                        (false, false) => PodFx {
                            cpu_floor: *peak,
                            err: *err,
                            lat: lat_scale * 8.0,
                            incident: Some(AnomalyKind::CpuExhaustion),
                            ..PodFx::default()
                        },
                    };
                    out.pod(p, fx);
                }
            }
        }
    }
}

/// Ticks an evicted pod stays (not ready) before it is deleted and replaced.
pub(crate) const EVICTION_TICKS: u64 = 2;

/// A fault's labels and everything it touches, from running it alone.
#[derive(Debug, Clone)]
pub(crate) struct Evaluation {
    pub labels: Vec<IncidentLabel>,
    /// Every entity the fault touches, with the first and last tick it does.
    pub footprint: BTreeMap<Key, (u64, u64)>,
}

/// Why a fault cannot run as drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its effects last past the end of the run.
    Outlasts,
    /// It touches an entity another fault or a deploy holds.
    Held(Key),
}

struct Track {
    entity: EntityRef,
    first: u64,
    last: u64,
    incident: Option<(u64, AnomalyKind)>,
}

/// Entities seen so far, and those first seen at this tick.
struct Tracks {
    all: BTreeMap<Key, Track>,
    fresh: Vec<Key>,
}

fn touch(
    tracks: &mut Tracks,
    key: Key,
    k: u64,
    entity: impl FnOnce() -> EntityRef,
    incident: Option<AnomalyKind>,
) {
    let t = tracks.all.entry(key).or_insert_with(|| {
        tracks.fresh.push(key);
        Track {
            entity: entity(),
            first: k,
            last: k,
            incident: None,
        }
    });
    t.last = k;
    if t.incident.is_none()
        && let Some(kind) = incident
    {
        t.incident = Some((k, kind));
    }
}

/// Runs `fault` alone from its onset on a copy of `state` (the cluster as it is at the onset,
/// with the `pending` churn already planned) and derives its labels: an entity is labelled when its incident condition first holds, its
/// onset is the first tick the fault touches it and its end the first tick it no longer does.
/// Fails early, with the reason, when the fault's effects would outlast `max_tick` or it touches
/// an entity for which `held(entity, tick)` says another fault or a deploy holds it.
///
/// The copy is of the whole cluster, once per planned fault, and the faults grow with the
/// cluster: pods are shared (`Arc`) so the copy is one pointer per pod, but it is still linear
/// in the cluster per fault. With deep pod copies, 100,000 entities were still planning after
/// 6 minutes (a profile: `Vec<Option<Pod>>::clone` and dropping `State`); with shared pods it
/// plans and streams. Copying only what the fault can touch would make it constant.
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate(
    fault: &Fault,
    pending: &[(u64, Op)],
    cluster: &Cluster,
    state: &State,
    lag: usize,
    max_tick: u64,
    tick_ms: impl Fn(u64) -> i64,
    held: impl Fn(Key, u64) -> bool,
) -> Result<Evaluation, Refusal> {
    let mut state = state.clone();
    let mut hist = History::new(lag);
    let roots: BTreeSet<Key> = fault.roots().into_iter().collect();
    let own_kind = fault.own_service_kind();
    let mut tracks = Tracks {
        all: BTreeMap::new(),
        fresh: Vec::new(),
    };
    let mut k = fault.onset;
    loop {
        if k >= max_tick {
            return Err(Refusal::Outlasts);
        }
        let ops = pending.iter().chain(&fault.ops).filter(|(t, _)| *t == k);
        for (_, op) in ops {
            let mut op = op.clone();
            if let Op::Create {
                node: node @ None, ..
            } = &mut op
            {
                // Placement does not change what the fault does; any node will do here.
                *node = Some(0);
            }
            state.apply(cluster, &op, k);
        }
        let mut fx = Effects::default();
        fault.effects(k, &mut fx);
        let svc = propagate(&fx, &hist, cluster, &state);
        for (p, pf) in &fx.pods {
            let Some(pod) = state.pod(*p) else { continue };
            let down = pod
                .service
                .and_then(|s| svc.get(&s))
                .map_or(0.0, |v| v.down_err);
            let total = 1.0 - (1.0 - pf.err) * (1.0 - down);
            let incident = pf.incident.or_else(|| {
                (pf.ready && !roots.contains(&Key::Pod(*p)) && total >= ERR_INCIDENT).then_some(
                    if pf.err >= down {
                        own_kind
                    } else {
                        AnomalyKind::NetworkIssue
                    },
                )
            });
            touch(
                &mut tracks,
                Key::Pod(*p),
                k,
                || pod_ref(&state, *p),
                incident,
            );
            // A pod that stops serving shifts its traffic onto its siblings: its service is
            // touched even when nothing fails, so no other fault may count on that share.
            if !pf.ready
                && let Some(s) = pod.service
            {
                let service = &cluster.services[s];
                touch(
                    &mut tracks,
                    Key::Service(s),
                    k,
                    || service.entity.reference(),
                    None,
                );
            }
        }
        for (s, sf) in &svc {
            let incident = (sf.err >= ERR_INCIDENT).then_some(if sf.own_err >= sf.down_err {
                own_kind
            } else {
                AnomalyKind::NetworkIssue
            });
            let service = &cluster.services[*s];
            touch(
                &mut tracks,
                Key::Service(*s),
                k,
                || service.entity.reference(),
                incident,
            );
            if sf.down_err > 0.0 || sf.client_lat > 0.0 {
                let incident = (sf.down_err >= ERR_INCIDENT).then_some(AnomalyKind::NetworkIssue);
                for p in &state.service_pods[*s] {
                    if !fx.pods.contains_key(p) {
                        touch(
                            &mut tracks,
                            Key::Pod(*p),
                            k,
                            || pod_ref(&state, *p),
                            incident,
                        );
                    }
                }
            }
        }
        for (n, nf) in &fx.nodes {
            let node = &cluster.nodes[*n];
            touch(
                &mut tracks,
                Key::Node(*n),
                k,
                || node.entity.reference(),
                nf.incident,
            );
        }
        if let Some(key) = tracks.fresh.drain(..).find(|key| held(*key, k)) {
            return Err(Refusal::Held(key));
        }
        let quiet = fx.is_empty() && svc.is_empty() && hist.is_quiet();
        hist.push(svc);
        if k >= fault.end && quiet {
            break;
        }
        k += 1;
    }
    let mut labels = Vec::new();
    let mut footprint = BTreeMap::new();
    for (key, t) in tracks.all {
        footprint.insert(key, (t.first, t.last));
        if let Some((at, kind)) = t.incident {
            labels.push(IncidentLabel {
                entity: t.entity,
                kind,
                fault: fault.kind.as_str().to_string(),
                onset_ms: tick_ms(t.first),
                incident_ms: tick_ms(at),
                end_ms: tick_ms(t.last + 1),
                root_cause: roots.contains(&key),
            });
        }
    }
    Ok(Evaluation { labels, footprint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let b = backoff_ticks(100, 200, 15_000);
        // 0, 10, 30, 70, 150, 310, 610, 910 s ...: the first two share a 15 s tick.
        let ticks: Vec<u64> = b.keys().copied().collect();
        assert_eq!(&ticks[..6], &[100, 102, 104, 110, 120, 140]);
        assert_eq!(b[&100], 2);
        let b = backoff_ticks(0, 3, 60_000);
        // 0 and 10 s fall in the first minute, 30 s too.
        assert_eq!(b[&0], 3);
    }

    #[test]
    fn history_lags() {
        let mut h = History::new(2);
        let mut m = SvcMap::new();
        m.insert(
            1,
            SvcFx {
                err: 0.5,
                ..SvcFx::default()
            },
        );
        h.push(m);
        assert!(h.lagged().is_none());
        h.push(SvcMap::new());
        assert_eq!(h.lagged().unwrap()[&1].err, 0.5);
        h.push(SvcMap::new());
        assert!(h.lagged().unwrap().is_empty());
    }
}
