//! The planner: decides, before the first tick, every change the run will see — pod churn
//! (rolling deploys, reschedules) and faults with their own churn — and the labels.
//!
//! It sweeps time once, in event order, over a copy of the cluster. Each fault is evaluated
//! alone on the cluster as it is at its onset ([`evaluate`]); it is accepted only if nothing it
//! touches is locked by another fault or a deploy, and then locks what it touches. Churn that
//! would touch a locked entity is skipped, so the cluster a fault was evaluated on is the one
//! the simulator later runs it on, and the labels are exact.
//!
//! TODO(issue 7): let a run apply a recommended action at alert time (scale out, restart,
//! raise a limit, roll back, cordon and drain, shed load) and report the incident averted or
//! shortened against the same seed without it. Everything here is planned before the first
//! tick, so that needs a fault to be cut short (its effects and labels re-derived from the
//! action's tick) rather than an op appended mid-run.

use std::collections::BTreeMap;

use auspex_model::IncidentLabel;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::cluster::{Cluster, Op, PodId, State};
use crate::config::{FaultKind, ScheduledFault, SimConfig, SimError};
use crate::fault::{EVICTION_TICKS, Fault, Key, Refusal, Target, backoff_ticks, evaluate};

/// Everything decided up front.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub cluster: Cluster,
    /// Placed pod changes per tick, in the order they apply (tick 0 creates the first pods).
    pub ops: BTreeMap<u64, Vec<Op>>,
    /// Accepted faults, by onset.
    pub faults: Vec<Fault>,
    pub labels: Vec<IncidentLabel>,
    /// Ticks a caller lags behind its callee's failures.
    pub lag: usize,
}

#[derive(Debug, Clone)]
enum Event {
    Op(Op),
    Deploy,
    Reschedule,
    Fault {
        spec: ScheduledFault,
        /// Index in `config.faults` for forced faults.
        forced: Option<usize>,
        tries: u32,
    },
}

#[derive(Debug, Default)]
struct Locks(BTreeMap<Key, Vec<(u64, u64)>>);

impl Locks {
    fn free(&self, key: Key, from: u64, to: u64) -> bool {
        self.0
            .get(&key)
            .is_none_or(|v| v.iter().all(|&(a, b)| b < from || a > to))
    }

    fn add(&mut self, key: Key, from: u64, to: u64) {
        self.0.entry(key).or_default().push((from, to));
    }
}

struct Planner<'a> {
    config: &'a SimConfig,
    cluster: Cluster,
    state: State,
    rng: ChaCha8Rng,
    locks: Locks,
    queue: BTreeMap<(u64, u64), Event>,
    seq: u64,
    ops: BTreeMap<u64, Vec<Op>>,
    faults: Vec<Fault>,
    labels: Vec<IncidentLabel>,
    /// Current template hash per service.
    hashes: Vec<String>,
    ticks: u64,
    lag: usize,
    margin: u64,
}

fn ticks_of(ms: u64, interval_ms: u64) -> u64 {
    ms.div_ceil(interval_ms)
}

pub(crate) fn plan(config: &SimConfig, rng: &mut ChaCha8Rng) -> Result<Plan, SimError> {
    let mut cluster_rng: ChaCha8Rng = rand::SeedableRng::from_rng(rng);
    let cluster = Cluster::build(config, &mut cluster_rng);
    let mut p = Planner {
        config,
        state: State::new(&cluster),
        hashes: cluster
            .services
            .iter()
            .map(|s| s.template_hash.clone())
            .collect(),
        cluster,
        rng: rand::SeedableRng::from_rng(rng),
        locks: Locks::default(),
        queue: BTreeMap::new(),
        seq: 0,
        ops: BTreeMap::new(),
        faults: Vec::new(),
        labels: Vec::new(),
        ticks: config.ticks(),
        lag: ticks_of(30_000, config.interval_ms).max(1) as usize,
        margin: ticks_of(120_000, config.interval_ms).max(2),
    };
    p.initial_pods()?;
    p.schedule_random_events();
    p.run()?;
    let Planner {
        cluster,
        ops,
        mut faults,
        mut labels,
        lag,
        ..
    } = p;
    faults.sort_by_key(|f| f.onset);
    labels.sort_by(|a, b| {
        (a.incident_ms, a.onset_ms, a.entity.to_string()).cmp(&(
            b.incident_ms,
            b.onset_ms,
            b.entity.to_string(),
        ))
    });
    Ok(Plan {
        cluster,
        ops,
        faults,
        labels,
        lag,
    })
}

impl Planner<'_> {
    fn push(&mut self, tick: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((tick, self.seq), event);
    }

    fn new_pod(&mut self, service: usize, hash: &str, node: Option<usize>) -> (PodId, Op) {
        let id = self.state.reserve();
        let workload = self.cluster.services[service].name.clone();
        let name = State::pod_name(&workload, hash, &mut self.rng);
        let op = Op::Create {
            id,
            service: Some(service),
            name,
            workload,
            node,
            weight: self.rng.random_range(0.9..1.1),
        };
        (id, op)
    }

    fn initial_pods(&mut self) -> Result<(), SimError> {
        let nodes = self.cluster.nodes.len();
        // Spread each service's replicas, then balance nominal CPU: the scheduler's spreading
        // and least-allocated scoring, in short.
        let mut load = vec![0.0f64; nodes];
        let mut same = vec![0usize; nodes];
        for s in 0..self.cluster.services.len() {
            let svc = &self.cluster.services[s];
            let per_pod = svc.cpu_idle_frac * svc.cpu_limit
                + svc.nominal_peak_rps / self.config.replicas as f64 * svc.cpu_per_request;
            same.iter_mut().for_each(|c| *c = 0);
            let hash = self.hashes[s].clone();
            for _ in 0..self.config.replicas {
                let n = (0..nodes)
                    .min_by(|&a, &b| {
                        (same[a], load[a] / self.cluster.nodes[a].cpu_cores)
                            .partial_cmp(&(same[b], load[b] / self.cluster.nodes[b].cpu_cores))
                            .expect("loads are finite")
                    })
                    .expect("at least one node");
                same[n] += 1;
                load[n] += per_pod;
                let (_, op) = self.new_pod(s, &hash, Some(n));
                self.push(0, Event::Op(op));
            }
        }
        // Nominal peak use per node, to refuse clusters that saturate without a fault.
        let mut cpu = vec![0.0; nodes];
        let mut mem = vec![0.0; nodes];
        for ev in self.queue.values() {
            if let Event::Op(Op::Create {
                service: Some(s),
                node: Some(n),
                ..
            }) = ev
            {
                let svc = &self.cluster.services[*s];
                let per_pod = svc.nominal_peak_rps / self.config.replicas as f64;
                cpu[*n] += svc.cpu_idle_frac * svc.cpu_limit + per_pod * svc.cpu_per_request;
                mem[*n] += (svc.mem_base_frac + 0.06) * svc.mem_limit;
            }
        }
        for (n, node) in self.cluster.nodes.iter().enumerate() {
            let cpu_ratio = (cpu[n] + SYSTEM_CPU_CORES) / node.cpu_cores;
            let mem_ratio = (mem[n] + SYSTEM_MEMORY_BYTES) / node.memory_bytes;
            for (resource, ratio) in [("cpu", cpu_ratio), ("memory", mem_ratio)] {
                if ratio > 0.5 {
                    return Err(SimError::Overcommitted {
                        node: node.name.clone(),
                        resource,
                        ratio,
                    });
                }
            }
        }
        Ok(())
    }

    /// Poisson arrival ticks in `[from, to)` at `per_hour`.
    fn arrivals(&mut self, per_hour: f64, from: u64, to: u64) -> Vec<u64> {
        let per_tick = per_hour * self.config.interval_ms as f64 / 3_600_000.0;
        let mut out = Vec::new();
        if per_tick <= 0.0 || from >= to {
            return out;
        }
        let mut t = from as f64;
        loop {
            let u: f64 = self.rng.random();
            t += -(1.0 - u).ln() / per_tick;
            if t >= to as f64 {
                return out;
            }
            out.push(t as u64);
        }
    }

    fn schedule_random_events(&mut self) {
        let c = self.config;
        for t in self.arrivals(c.rolling_deploys_per_hour, 1, self.ticks) {
            self.push(t, Event::Deploy);
        }
        for t in self.arrivals(c.reschedules_per_hour, 1, self.ticks) {
            self.push(t, Event::Reschedule);
        }
        match &c.faults {
            Some(faults) => {
                for (i, f) in faults.iter().enumerate() {
                    let t = f.onset_after_ms / c.interval_ms;
                    self.push(
                        t,
                        Event::Fault {
                            spec: f.clone(),
                            forced: Some(i),
                            tries: 0,
                        },
                    );
                }
            }
            None => {
                let total: f64 = FaultKind::ALL.iter().map(|k| c.fault_mix.weight(*k)).sum();
                let warmup = ticks_of(c.warmup_ms, c.interval_ms);
                for t in self.arrivals(c.fault_rate_per_hour, warmup, self.ticks) {
                    let mut x = self.rng.random::<f64>() * total;
                    let mut kind = FaultKind::MemoryLeak;
                    for k in FaultKind::ALL {
                        let w = c.fault_mix.weight(k);
                        if w > 0.0 {
                            kind = k;
                            if x < w {
                                break;
                            }
                            x -= w;
                        }
                    }
                    let spec = ScheduledFault::new(kind, t * c.interval_ms);
                    self.push(
                        t,
                        Event::Fault {
                            spec,
                            forced: None,
                            tries: 0,
                        },
                    );
                }
            }
        }
    }

    fn run(&mut self) -> Result<(), SimError> {
        while let Some(((tick, _), event)) = self.queue.pop_first() {
            match event {
                Event::Op(op) => self.apply(tick, op),
                Event::Deploy => self.deploy(tick),
                Event::Reschedule => self.reschedule(tick),
                Event::Fault {
                    spec,
                    forced,
                    tries,
                } => self.fault(tick, spec, forced, tries)?,
            }
        }
        Ok(())
    }

    fn apply(&mut self, tick: u64, mut op: Op) {
        if let Op::Create {
            node: node @ None, ..
        } = &mut op
        {
            *node = Some(self.place(tick, None));
        }
        self.state.apply(&self.cluster, &op, tick);
        self.ops.entry(tick).or_default().push(op);
    }

    /// The unlocked node with the fewest pods (lowest index on ties), avoiding `not`.
    fn place(&self, tick: u64, not: Option<usize>) -> usize {
        let to = tick + self.margin;
        (0..self.cluster.nodes.len())
            .filter(|&n| Some(n) != not)
            .min_by_key(|&n| {
                (
                    !self.locks.free(Key::Node(n), tick, to),
                    self.state.node_pods[n].len(),
                    n,
                )
            })
            .unwrap_or(0)
    }

    fn key_name(&self, key: Key) -> String {
        match key {
            Key::Pod(p) => self.state.pod(p).map_or_else(
                || format!("pod #{p}"),
                |pod| format!("pod {}", pod.entity.name),
            ),
            Key::Node(n) => format!("node {}", self.cluster.nodes[n].name),
            Key::Service(s) => format!("service {}", self.cluster.services[s].name),
        }
    }

    fn service_free(&self, s: usize, from: u64, to: u64) -> bool {
        self.locks.free(Key::Service(s), from, to)
            && self.state.service_pods[s]
                .iter()
                .all(|p| self.locks.free(Key::Pod(*p), from, to))
    }

    fn deploy(&mut self, tick: u64) {
        let n = self.cluster.services.len();
        for _ in 0..5 {
            let s = self.rng.random_range(0..n);
            let old = self.state.service_pods[s].clone();
            let until = tick + old.len() as u64 + self.margin;
            if until >= self.ticks || !self.service_free(s, tick, until) {
                continue;
            }
            let hash = crate::cluster::random_suffix(&mut self.rng, 9);
            self.hashes[s] = hash.clone();
            for (i, p) in old.into_iter().enumerate() {
                let (_, create) = self.new_pod(s, &hash, None);
                let t = tick + i as u64;
                self.push(t, Event::Op(create));
                self.push(t, Event::Op(Op::Delete { id: p }));
            }
            self.locks.add(Key::Service(s), tick, until);
            return;
        }
    }

    fn reschedule(&mut self, tick: u64) {
        let n = self.cluster.services.len();
        let to = tick + self.margin;
        for _ in 0..5 {
            let s = self.rng.random_range(0..n);
            let pods = &self.state.service_pods[s];
            if pods.is_empty() {
                continue;
            }
            let p = pods[self.rng.random_range(0..pods.len())];
            let from_node = self.state.pod(p).expect("service pods are alive").node;
            if !self.service_free(s, tick, to) || !self.locks.free(Key::Node(from_node), tick, to) {
                continue;
            }
            let target = self.rng.random_range(0..self.cluster.nodes.len());
            if target == from_node || !self.locks.free(Key::Node(target), tick, to) {
                continue;
            }
            self.apply(
                tick,
                Op::Move {
                    id: p,
                    node: target,
                },
            );
            return;
        }
    }

    fn fault(
        &mut self,
        tick: u64,
        spec: ScheduledFault,
        forced: Option<usize>,
        tries: u32,
    ) -> Result<(), SimError> {
        let fail = |reason: String| SimError::FaultUnplaceable {
            index: forced.unwrap_or(0),
            kind: spec.kind,
            reason,
        };
        let attempts = if spec.target.is_some() { 1 } else { 8 };
        let mut last_reason = String::from("no candidate target");
        for _ in 0..attempts {
            let fault = match self.build(tick, &spec) {
                Ok(f) => f,
                Err(reason) => {
                    last_reason = reason;
                    continue;
                }
            };
            let config = self.config;
            let tick_ms = |k: u64| config.start_ms + (k * config.interval_ms) as i64;
            let m = self.margin;
            if let Some(key) = fault.locks().into_iter().find(|k| {
                !self
                    .locks
                    .free(*k, fault.onset.saturating_sub(m), fault.end + m)
            }) {
                last_reason = format!(
                    "{} is taken by another fault or a deploy",
                    self.key_name(key)
                );
                continue;
            }
            // Churn already queued (a deploy under way, another fault's rollback) happens
            // during this fault too.
            let pending: Vec<(u64, Op)> = self
                .queue
                .range((tick, 0)..)
                .filter_map(|(&(t, _), e)| match e {
                    Event::Op(op) => Some((t, op.clone())),
                    _ => None,
                })
                .collect();
            let locks = &self.locks;
            let from = fault.onset.saturating_sub(m);
            let eval = match evaluate(
                &fault,
                &pending,
                &self.cluster,
                &self.state,
                self.lag,
                self.ticks,
                tick_ms,
                |key, k| !locks.free(key, from, k + m),
            ) {
                Ok(eval) => eval,
                Err(Refusal::Outlasts) => {
                    last_reason = "its effects would outlast the run".into();
                    continue;
                }
                Err(Refusal::Held(key)) => {
                    last_reason = format!(
                        "{} is taken by another fault or a deploy",
                        self.key_name(key)
                    );
                    continue;
                }
            };
            let last = eval
                .footprint
                .values()
                .map(|v| v.1)
                .max()
                .unwrap_or(fault.end)
                .max(fault.end);
            // Everything the fault touches is held from its onset: the evaluation assumed
            // those entities as they were then.
            let claims: Vec<(Key, u64, u64)> = eval
                .footprint
                .keys()
                .copied()
                .chain(fault.locks())
                .map(|k| (k, fault.onset, last))
                .collect();
            if let Some((key, _, _)) = claims
                .iter()
                .find(|(k, a, b)| !self.locks.free(*k, a.saturating_sub(m), b + m))
            {
                last_reason = format!(
                    "{} is taken by another fault or a deploy",
                    self.key_name(*key)
                );
                continue;
            }
            for (k, a, b) in claims {
                self.locks.add(k, a, b);
            }
            for (t, op) in &fault.ops {
                self.push(*t, Event::Op(op.clone()));
            }
            self.labels.extend(eval.labels);
            self.faults.push(fault);
            return Ok(());
        }
        match forced {
            Some(_) => Err(fail(last_reason)),
            None => {
                // Random faults wait for the cluster to be free, a few times.
                let later = tick + 5 * self.margin;
                if tries < 8 && later < self.ticks {
                    self.push(
                        later,
                        Event::Fault {
                            spec: ScheduledFault {
                                onset_after_ms: later * self.config.interval_ms,
                                ..spec
                            },
                            forced,
                            tries: tries + 1,
                        },
                    );
                }
                Ok(())
            }
        }
    }

    fn pick_service(&mut self, target: Option<&str>, need_callers: bool) -> Result<usize, String> {
        let candidates: Vec<usize> = if need_callers {
            self.cluster.backends().collect()
        } else {
            (0..self.cluster.services.len()).collect()
        };
        match target {
            Some(name) => {
                let s = self
                    .cluster
                    .services
                    .iter()
                    .position(|s| s.name == name)
                    .ok_or_else(|| format!("no service named {name:?}"))?;
                if need_callers && !candidates.contains(&s) {
                    return Err(format!("service {name:?} has no callers"));
                }
                Ok(s)
            }
            None if candidates.is_empty() => Err("no service has callers".into()),
            None => Ok(candidates[self.rng.random_range(0..candidates.len())]),
        }
    }

    fn pick_node(&mut self, target: Option<&str>) -> Result<usize, String> {
        match target {
            Some(name) => self
                .cluster
                .nodes
                .iter()
                .position(|n| n.name == name)
                .ok_or_else(|| format!("no node named {name:?}")),
            None => Ok(self.rng.random_range(0..self.cluster.nodes.len())),
        }
    }

    fn service_pods_on(&self, node: usize) -> Vec<PodId> {
        self.state.node_pods[node]
            .iter()
            .copied()
            .filter(|p| self.state.pod(*p).is_some_and(|pod| pod.service.is_some()))
            .collect()
    }

    /// Draws a fault of `spec.kind` starting at `k0` on the current cluster.
    fn build(&mut self, k0: u64, spec: &ScheduledFault) -> Result<Fault, String> {
        let c = self.config;
        let iv = c.interval_ms;
        let draw = |rng: &mut ChaCha8Rng, fixed: Option<u64>, lo: u64, hi: u64| {
            let ms = fixed.unwrap_or_else(|| rng.random_range(lo..=hi));
            ticks_of(ms, iv).max(4)
        };
        let p = draw(
            &mut self.rng,
            spec.precursor_ms,
            c.precursor_min_ms,
            c.precursor_max_ms,
        );
        let d = draw(
            &mut self.rng,
            spec.incident_ms,
            c.incident_min_ms,
            c.incident_max_ms,
        );
        let gamma = self.rng.random_range(1.0..2.0);
        let ki = k0 + p;
        let mut ke = ki + d;
        let target = spec.target.as_deref();
        let mut ops = Vec::new();
        let target = match spec.kind {
            FaultKind::MemoryLeak | FaultKind::CpuSaturation => {
                let s = self.pick_service(target, false)?;
                let pods = &self.state.service_pods[s];
                let pod = pods[self.rng.random_range(0..pods.len())];
                let svc = &self.cluster.services[s];
                if spec.kind == FaultKind::MemoryLeak {
                    ke = ki + ticks_of(45_000, iv).max(2);
                    Target::MemoryLeak {
                        pod,
                        base_frac: svc.mem_base_frac,
                    }
                } else {
                    Target::CpuSaturation {
                        pod,
                        peak: self.rng.random_range(1.15..1.35),
                        err: self.rng.random_range(0.06..0.12),
                        lat_scale: svc.nominal_p99(),
                    }
                }
            }
            FaultKind::NoisyNeighbour => {
                let node = self.pick_node(target)?;
                let pods = self
                    .service_pods_on(node)
                    .into_iter()
                    .map(|p| {
                        let s = self.state.pod(p).and_then(|x| x.service).unwrap_or(0);
                        (
                            p,
                            self.rng.random_range(0.1..0.9),
                            self.cluster.services[s].nominal_p99(),
                        )
                    })
                    .collect();
                let hog = self.state.reserve();
                let job = format!(
                    "batch-job-{}",
                    crate::cluster::random_suffix(&mut self.rng, 5)
                );
                let name = State::pod_name(
                    &job,
                    &crate::cluster::random_suffix(&mut self.rng, 9),
                    &mut self.rng,
                );
                ops.push((
                    k0,
                    Op::Create {
                        id: hog,
                        service: None,
                        name,
                        workload: job,
                        node: Some(node),
                        weight: 1.0,
                    },
                ));
                ops.push((ke, Op::Delete { id: hog }));
                Target::NoisyNeighbour { node, hog, pods }
            }
            FaultKind::NetworkDegradation => {
                let link = match target {
                    Some(t) => t
                        .split_once("->")
                        .map(|(a, b)| (a.to_string(), b.to_string())),
                    None => None,
                };
                let edges: Vec<(usize, usize)> = self
                    .cluster
                    .services
                    .iter()
                    .enumerate()
                    .flat_map(|(i, s)| s.callees.iter().map(move |c| (i, c.service)))
                    .collect();
                let use_link = match (&link, target) {
                    (Some(_), _) => true,
                    (None, Some(_)) => false,
                    (None, None) => !edges.is_empty() && self.rng.random_bool(0.4),
                };
                let err = self.rng.random_range(0.15..0.4);
                let lat = self.rng.random_range(0.3..1.0);
                if use_link {
                    let (from, to) = match link {
                        Some((a, b)) => {
                            let from = self.pick_service(Some(&a), false)?;
                            let to = self.pick_service(Some(&b), false)?;
                            if !edges.contains(&(from, to)) {
                                return Err(format!("{a} does not call {b}"));
                            }
                            (from, to)
                        }
                        None => edges[self.rng.random_range(0..edges.len())],
                    };
                    Target::NetworkLink {
                        from,
                        to,
                        pods: self.state.service_pods[from].clone(),
                        err,
                        lat,
                    }
                } else {
                    let node = self.pick_node(target)?;
                    Target::NetworkNode {
                        node,
                        pods: self.service_pods_on(node),
                        err: self.rng.random_range(0.1..0.3),
                        lat,
                    }
                }
            }
            FaultKind::CrashLoop => {
                let s = self.pick_service(target, false)?;
                let old = self.state.service_pods[s].clone();
                let n_bad = if old.len() <= 3 { 1 } else { old.len() / 4 };
                let bad_hash = crate::cluster::random_suffix(&mut self.rng, 9);
                let good_hash = self.hashes[s].clone();
                let mut bad = Vec::new();
                for (j, &old_pod) in old.iter().take(n_bad).enumerate() {
                    let created = k0 + j as u64;
                    let deleted = ke + j as u64;
                    let (id, create) = self.new_pod(s, &bad_hash, None);
                    ops.push((created, create));
                    ops.push((created, Op::Delete { id: old_pod }));
                    let (_, rollback) = self.new_pod(s, &good_hash, None);
                    ops.push((deleted, rollback));
                    ops.push((deleted, Op::Delete { id }));
                    bad.push((id, created, deleted));
                }
                let replaced = old.iter().take(n_bad).copied().collect();
                let span = (p - 1) as f64;
                let early = [
                    k0 + (0.55 * span).round() as u64,
                    k0 + (0.8 * span).round() as u64,
                ];
                Target::CrashLoop {
                    service: s,
                    backoff: backoff_ticks(ki, ke + n_bad as u64, iv),
                    bad,
                    replaced,
                    early_restarts: early,
                }
            }
            FaultKind::NodePressure => {
                let node = self.pick_node(target)?;
                let mut pods = self.service_pods_on(node);
                if pods.is_empty() {
                    return Err(format!(
                        "node {} runs no pods",
                        self.cluster.nodes[node].name
                    ));
                }
                let m = pods.len().div_ceil(3);
                let mut evicted = Vec::new();
                for _ in 0..m {
                    evicted.push(pods.remove(self.rng.random_range(0..pods.len())));
                }
                evicted.sort_unstable();
                for &e in &evicted {
                    let s = self
                        .state
                        .pod(e)
                        .and_then(|x| x.service)
                        .expect("service pod");
                    let hash = self.hashes[s].clone();
                    let (_, create) = self.new_pod(s, &hash, None);
                    ops.push((ki + EVICTION_TICKS, Op::Delete { id: e }));
                    ops.push((ki + EVICTION_TICKS, create));
                }
                Target::NodePressure { node, evicted }
            }
            FaultKind::CascadingFailure => {
                let s = self.pick_service(target, true)?;
                let crash = self.rng.random_bool(0.5);
                let pods = &self.state.service_pods[s];
                let n = pods.len().max(1) as f64;
                let span = (p - 1) as f64;
                let pods = pods
                    .iter()
                    .enumerate()
                    .map(|(j, &pod)| (pod, k0 + ((0.6 + 0.3 * j as f64 / n) * span).round() as u64))
                    .collect();
                Target::Cascade {
                    service: s,
                    crash,
                    pods,
                    peak: self.rng.random_range(1.15..1.35),
                    err: self.rng.random_range(0.3..0.6),
                    lat_scale: self.cluster.services[s].nominal_p99(),
                    backoff: backoff_ticks(ki, ke, iv),
                }
            }
        };
        Ok(Fault {
            kind: spec.kind,
            onset: k0,
            incident: ki,
            end: ke,
            gamma,
            target,
            ops,
        })
    }
}

/// CPU the node's system daemons use, in cores.
pub(crate) const SYSTEM_CPU_CORES: f64 = 0.3;
/// Memory the node's system daemons use, in bytes.
pub(crate) const SYSTEM_MEMORY_BYTES: f64 = 1.5 * 1024.0 * 1024.0 * 1024.0;
