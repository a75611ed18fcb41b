//! The simulator: replays the plan tick by tick and turns load, churn and fault effects into
//! metric samples and topology events. All noise comes from one seeded stream, drawn in a fixed
//! order, so a config always yields the same ticks.

use std::collections::BTreeMap;

use auspex_model::metrics as m;
use auspex_model::{IncidentLabel, MetricSample, TimestampMs, TopologyEvent};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Poisson, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Counters, Op, PodId, State, events_at, static_topology};
use crate::config::{SimConfig, SimError};
use crate::fault::{Effects, Fault, History, PodFx, SvcMap, propagate};
use crate::plan::{SYSTEM_CPU_CORES, SYSTEM_MEMORY_BYTES, plan};

/// One sample interval of output: topology changes first, then one sample per pod, service and
/// node alive at that instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Tick number, from 0.
    pub index: u64,
    /// Event time of everything in the tick.
    pub timestamp_ms: TimestampMs,
    /// Topology changes at this instant, in the order they apply.
    pub topology: Vec<TopologyEvent>,
    /// Samples of pods (by service), batch pods, services, then nodes.
    pub samples: Vec<MetricSample>,
}

#[derive(Debug, Clone)]
struct Burst {
    start: u64,
    len: u64,
    amp: f64,
}

/// Per-pod numbers of one tick, before they become a sample.
#[derive(Debug, Clone, Default)]
struct PodCalc {
    id: PodId,
    ready: bool,
    rps: f64,
    cpu: f64,
    throttle: f64,
    ws: f64,
    /// (success ratio, p50, p90, p99) when serving.
    serving: Option<(f64, f64, f64, f64)>,
    client_p99: Option<f64>,
}

/// A deterministic Kubernetes cluster with load, churn and injected faults.
#[derive(Debug, Clone)]
pub struct Simulator {
    config: SimConfig,
    cluster: Cluster,
    state: State,
    ops: BTreeMap<u64, Vec<Op>>,
    faults: Vec<Fault>,
    labels: Vec<IncidentLabel>,
    history: History,
    rng: ChaCha8Rng,
    next: u64,
    ticks: u64,
    root_noise: Vec<f64>,
    bursts: Vec<Vec<Burst>>,
    node_counters: Vec<Counters>,
    rps: Vec<f64>,
    calcs: Vec<PodCalc>,
}

const CORE_NOISE: f64 = 0.04;

fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let mag = x.abs().log10().floor() as i32;
    let digits = 5 - mag;
    if digits >= 0 {
        let s = 10f64.powi(digits);
        (x * s).round() / s
    } else {
        let s = 10f64.powi(-digits);
        (x / s).round() * s
    }
}

fn put(map: &mut BTreeMap<String, f64>, name: &str, v: f64) {
    map.insert(name.to_string(), round_sig(v));
}

/// CFS throttling as a function of CPU demand over the limit: none below half the limit,
/// about 0.5 at the limit, near 1 well above it.
pub(crate) fn throttle_fn(u: f64) -> f64 {
    (((u - 0.55) / 0.7).clamp(0.0, 1.0)).powf(1.5)
}

impl Simulator {
    /// Validates `config`, builds the cluster and plans the whole run (churn, faults, labels).
    pub fn new(config: SimConfig) -> Result<Simulator, SimError> {
        config.validate()?;
        let mut master = ChaCha8Rng::seed_from_u64(config.seed);
        let mut plan_rng = ChaCha8Rng::from_rng(&mut master);
        let rng = ChaCha8Rng::from_rng(&mut master);
        let plan = plan(&config, &mut plan_rng)?;
        let n_services = plan.cluster.services.len();
        let n_nodes = plan.cluster.nodes.len();
        Ok(Simulator {
            state: State::new(&plan.cluster),
            ticks: config.ticks(),
            config,
            history: History::new(plan.lag),
            cluster: plan.cluster,
            ops: plan.ops,
            faults: plan.faults,
            labels: plan.labels,
            rng,
            next: 0,
            root_noise: vec![0.0; n_services],
            bursts: vec![Vec::new(); n_services],
            node_counters: vec![Counters::default(); n_nodes],
            rps: vec![0.0; n_services],
            calcs: Vec::new(),
        })
    }

    /// All ground-truth labels of the run, by incident time (faults are planned up front, so
    /// this is known at construction).
    pub fn labels(&self) -> &[IncidentLabel] {
        &self.labels
    }

    /// The configuration the simulator was built from.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Number of ticks the run has.
    pub fn total_ticks(&self) -> u64 {
        self.ticks
    }

    fn normal(&mut self) -> f64 {
        self.rng.sample(StandardNormal)
    }

    fn poisson(&mut self, lambda: f64) -> f64 {
        match Poisson::new(lambda) {
            Ok(p) if lambda > 0.0 => self.rng.sample(p),
            _ => 0.0,
        }
    }

    /// Advances one sample interval; `None` after the configured duration.
    pub fn next_tick(&mut self) -> Option<Tick> {
        if self.next >= self.ticks {
            return None;
        }
        let k = self.next;
        self.next += 1;
        let ts = self.config.start_ms + (k * self.config.interval_ms) as i64;

        let mut topology = Vec::new();
        if k == 0 {
            topology.extend(events_at(ts, static_topology(&self.cluster)));
        }
        if let Some(ops) = self.ops.get(&k) {
            for op in ops {
                topology.extend(events_at(ts, self.state.apply(&self.cluster, op, k)));
            }
        }

        let mut fx = Effects::default();
        for f in &self.faults {
            if f.onset > k {
                break;
            }
            f.effects(k, &mut fx);
        }
        let svc = propagate(&fx, &self.history, &self.cluster, &self.state);
        self.update_load(k, ts);
        let samples = self.samples(k, ts, &fx, &svc);
        self.history.push(svc);
        Some(Tick {
            index: k,
            timestamp_ms: ts,
            topology,
            samples,
        })
    }

    fn update_load(&mut self, k: u64, ts: i64) {
        let c = &self.config;
        let period = c.diurnal_period_ms as f64;
        // Peak at 15:00 UTC for a 24 h period (the same phase for other periods).
        let phase = ((ts as f64 - 15.0 * 3_600_000.0) / period).rem_euclid(1.0);
        let diurnal =
            1.0 - c.diurnal_amplitude / 2.0 * (1.0 - (std::f64::consts::TAU * phase).cos());
        let burst_p = c.bursts_per_hour * c.interval_ms as f64 / 3_600_000.0;
        let rho = 0.95f64;
        let sigma = c.load_noise * (1.0 - rho * rho).sqrt();
        let iv = c.interval_ms;
        for s in 0..self.cluster.services.len() {
            let rps = if self.cluster.services[s].callers.is_empty() {
                let n = self.normal();
                self.root_noise[s] = rho * self.root_noise[s] + sigma * n;
                if self.rng.random::<f64>() < burst_p {
                    let len = self.rng.random_range(120_000..480_000u64) / iv;
                    let amp = self.rng.random_range(0.2..0.6);
                    self.bursts[s].push(Burst {
                        start: k,
                        len: len.max(2),
                        amp,
                    });
                }
                self.bursts[s].retain(|b| k < b.start + b.len);
                let lift: f64 = self.bursts[s]
                    .iter()
                    .map(|b| {
                        let x = (k - b.start) as f64 / b.len as f64;
                        b.amp * (1.0 - (2.0 * x - 1.0).abs())
                    })
                    .sum();
                self.cluster.services[s].root_rps
                    * diurnal
                    * (1.0 + self.root_noise[s])
                    * (1.0 + lift)
            } else {
                self.cluster.services[s]
                    .callers
                    .iter()
                    .map(|&(i, m)| self.rps[i] * m)
                    .sum()
            };
            let n = self.normal();
            self.rps[s] = (rps * (1.0 + 0.02 * n)).max(0.0);
        }
    }

    fn samples(&mut self, k: u64, ts: i64, fx: &Effects, svc: &SvcMap) -> Vec<MetricSample> {
        let iv_s = self.config.interval_ms as f64 / 1000.0;
        let n_nodes = self.cluster.nodes.len();
        let mut node_cpu = vec![0.0; n_nodes];
        let mut node_mem = vec![0.0; n_nodes];
        let mut node_req_cpu = vec![0.0; n_nodes];
        let mut node_req_mem = vec![0.0; n_nodes];
        let mut node_net = vec![[0.0f64; 6]; n_nodes];
        let mut calcs = std::mem::take(&mut self.calcs);
        calcs.clear();
        let default_fx = PodFx::default();

        for s in 0..self.cluster.services.len() {
            let pods = &self.state.service_pods[s];
            let ready_weight: f64 = pods
                .iter()
                .filter(|p| fx.pods.get(p).is_none_or(|f| f.ready))
                .filter_map(|p| self.state.pod(*p).map(|x| x.weight))
                .sum();
            let (down_err, client_lat) = svc
                .get(&s)
                .map_or((0.0, 0.0), |v| (v.down_err, v.client_lat));
            for i in 0..self.state.service_pods[s].len() {
                let id = self.state.service_pods[s][i];
                let f = fx.pods.get(&id).unwrap_or(&default_fx);
                let calc = self.pod_calc(k, s, id, f, ready_weight, down_err, client_lat);
                let pod = self.state.pod(id).expect("service pods are alive");
                let svc_def = &self.cluster.services[s];
                node_cpu[pod.node] += calc.cpu;
                node_mem[pod.node] += calc.ws;
                node_req_cpu[pod.node] += svc_def.cpu_request;
                node_req_mem[pod.node] += svc_def.mem_request;
                calcs.push(calc);
            }
        }
        // Batch pods (noisy neighbours) fill their node up to the fault's CPU floor.
        let mut batch_cpu = BTreeMap::new();
        for &id in &self.state.batch_pods {
            let node = self.state.pod(id).expect("alive").node;
            let cap = self.cluster.nodes[node].cpu_cores;
            let floor = fx.nodes.get(&node).map_or(0.0, |n| n.cpu_floor);
            let others = node_cpu[node] + SYSTEM_CPU_CORES;
            let cpu = (floor * cap - others).max(0.05);
            node_cpu[node] += cpu;
            node_mem[node] += 256.0 * 1024.0 * 1024.0;
            node_req_cpu[node] += 0.1;
            batch_cpu.insert(id, cpu);
        }

        let mut samples = Vec::with_capacity(calcs.len() + n_nodes + self.cluster.services.len());
        // Node utilisation first: pods carry their node's.
        let mut node_util = vec![(0.0, 0.0); n_nodes];
        let mut node_used = vec![(0.0, 0.0); n_nodes];
        for n in 0..n_nodes {
            let nf = fx.nodes.get(&n);
            let sys_cpu = SYSTEM_CPU_CORES * (1.0 + 0.05 * self.normal());
            let sys_mem = SYSTEM_MEMORY_BYTES * (1.0 + 0.01 * self.normal());
            let node = &self.cluster.nodes[n];
            let mut cpu = node_cpu[n] + sys_cpu;
            let mut mem = node_mem[n] + sys_mem;
            if let Some(nf) = nf {
                cpu = cpu.max(nf.cpu_floor * node.cpu_cores);
                mem = mem.max(nf.mem_floor * node.memory_bytes);
            }
            cpu = cpu.min(node.cpu_cores);
            mem = mem.min(node.memory_bytes);
            node_used[n] = (cpu, mem);
            node_util[n] = (cpu / node.cpu_cores, mem / node.memory_bytes);
        }

        // Pod samples, with network counters.
        let mut svc_agg: Vec<[f64; 8]> = vec![[0.0; 8]; self.cluster.services.len()];
        for c in &calcs {
            let f = fx.pods.get(&c.id).unwrap_or(&default_fx).clone();
            let (service, node, weight_rx, weight_tx) = {
                let pod = self.state.pod(c.id).expect("alive");
                let s = pod.service.expect("service pod");
                let def = &self.cluster.services[s];
                (
                    s,
                    pod.node,
                    def.rx_bytes_per_request,
                    def.tx_bytes_per_request,
                )
            };
            let net_mult = f
                .net_mult
                .max(fx.nodes.get(&node).map_or(1.0, |n| n.net_mult));
            let inc = self.net_increments(c.rps, weight_rx, weight_tx, net_mult, iv_s);
            for (a, b) in node_net[node].iter_mut().zip(inc.iter()) {
                *a += b;
            }
            let def = &self.cluster.services[service];
            let pod = self.state.pod_mut(c.id).expect("alive");
            let ct = &mut pod.counters;
            ct.restarts += f.restarts;
            if f.oom {
                ct.oom_kills += 1.0;
            }
            if f.reset_net {
                ct.reset_network();
            }
            ct.rx_bytes += inc[0].round();
            ct.tx_bytes += inc[1].round();
            ct.rx_errors += inc[2];
            ct.tx_errors += inc[3];
            ct.rx_dropped += inc[4];
            ct.tx_dropped += inc[5];
            let mut mm = BTreeMap::new();
            put(&mut mm, m::CPU_USAGE_CORES, c.cpu);
            put(&mut mm, m::CPU_LIMIT_CORES, def.cpu_limit);
            put(&mut mm, m::CPU_REQUEST_CORES, def.cpu_request);
            put(&mut mm, m::CPU_THROTTLED_RATIO, c.throttle);
            put(&mut mm, m::MEMORY_WORKING_SET_BYTES, c.ws.round());
            put(&mut mm, m::MEMORY_LIMIT_BYTES, def.mem_limit);
            put(&mut mm, m::MEMORY_REQUEST_BYTES, def.mem_request);
            put_counters(&mut mm, ct);
            put(&mut mm, m::READY, if c.ready { 1.0 } else { 0.0 });
            put(&mut mm, m::REQUESTS_PER_SECOND, c.rps);
            if let Some((ok, p50, p90, p99)) = c.serving {
                put(&mut mm, m::SUCCESS_RATIO, ok);
                put(&mut mm, m::LATENCY_P50_SECONDS, p50);
                put(&mut mm, m::LATENCY_P90_SECONDS, p90);
                put(&mut mm, m::LATENCY_P99_SECONDS, p99);
                let a = &mut svc_agg[service];
                a[0] += c.rps;
                a[1] += c.rps * ok;
                a[2] += c.rps * p50;
                a[3] += c.rps * p90;
                a[4] += c.rps * p99;
                if let Some(cl) = c.client_p99 {
                    a[5] += c.rps * cl;
                }
            }
            if let Some(cl) = c.client_p99 {
                put(&mut mm, m::CLIENT_LATENCY_P99_SECONDS, cl);
            }
            svc_agg[service][6] += c.cpu;
            svc_agg[service][7] += c.ws;
            put(&mut mm, m::NODE_CPU_UTILIZATION_RATIO, node_util[node].0);
            put(&mut mm, m::NODE_MEMORY_UTILIZATION_RATIO, node_util[node].1);
            samples.push(MetricSample {
                timestamp_ms: ts,
                entity: pod.entity.clone(),
                metrics: mm,
            });
        }

        // Batch pods.
        for i in 0..self.state.batch_pods.len() {
            let id = self.state.batch_pods[i];
            let node = self.state.pod(id).expect("alive").node;
            let inc = self.net_increments(5.0, 2000.0, 2000.0, 1.0, iv_s);
            for (a, b) in node_net[node].iter_mut().zip(inc.iter()) {
                *a += b;
            }
            let cpu = batch_cpu[&id];
            let pod = self.state.pod_mut(id).expect("alive");
            let ct = &mut pod.counters;
            ct.rx_bytes += inc[0].round();
            ct.tx_bytes += inc[1].round();
            ct.rx_errors += inc[2];
            ct.tx_errors += inc[3];
            ct.rx_dropped += inc[4];
            ct.tx_dropped += inc[5];
            let mut mm = BTreeMap::new();
            put(&mut mm, m::CPU_USAGE_CORES, cpu);
            put(&mut mm, m::CPU_REQUEST_CORES, 0.1);
            put(&mut mm, m::CPU_THROTTLED_RATIO, 0.0);
            put(
                &mut mm,
                m::MEMORY_WORKING_SET_BYTES,
                256.0 * 1024.0 * 1024.0,
            );
            put_counters(&mut mm, ct);
            put(&mut mm, m::READY, 1.0);
            put(&mut mm, m::NODE_CPU_UTILIZATION_RATIO, node_util[node].0);
            put(&mut mm, m::NODE_MEMORY_UTILIZATION_RATIO, node_util[node].1);
            samples.push(MetricSample {
                timestamp_ms: ts,
                entity: pod.entity.clone(),
                metrics: mm,
            });
        }

        // Services aggregate their serving pods.
        for (s, def) in self.cluster.services.iter().enumerate() {
            let a = svc_agg[s];
            let mut mm = BTreeMap::new();
            if a[0] > 0.0 {
                put(&mut mm, m::REQUESTS_PER_SECOND, a[0]);
                put(&mut mm, m::SUCCESS_RATIO, a[1] / a[0]);
                put(&mut mm, m::LATENCY_P50_SECONDS, a[2] / a[0]);
                put(&mut mm, m::LATENCY_P90_SECONDS, a[3] / a[0]);
                put(&mut mm, m::LATENCY_P99_SECONDS, a[4] / a[0]);
                if !def.callees.is_empty() {
                    put(&mut mm, m::CLIENT_LATENCY_P99_SECONDS, a[5] / a[0]);
                }
            } else {
                // No endpoint is ready: every request fails.
                put(&mut mm, m::REQUESTS_PER_SECOND, self.rps[s]);
                put(&mut mm, m::SUCCESS_RATIO, 0.0);
            }
            put(&mut mm, m::CPU_USAGE_CORES, a[6]);
            put(&mut mm, m::MEMORY_WORKING_SET_BYTES, a[7].round());
            samples.push(MetricSample {
                timestamp_ms: ts,
                entity: def.entity.clone(),
                metrics: mm,
            });
        }

        // Nodes.
        for n in 0..n_nodes {
            let mult = fx.nodes.get(&n).map_or(1.0, |f| f.net_mult);
            let own = self.net_increments(20.0, 1000.0, 1000.0, mult, iv_s);
            let node = &self.cluster.nodes[n];
            let ct = &mut self.node_counters[n];
            let total: Vec<f64> = node_net[n]
                .iter()
                .zip(own.iter())
                .map(|(a, b)| a + b)
                .collect();
            ct.rx_bytes += total[0].round();
            ct.tx_bytes += total[1].round();
            ct.rx_errors += total[2];
            ct.tx_errors += total[3];
            ct.rx_dropped += total[4];
            ct.tx_dropped += total[5];
            let mut mm = BTreeMap::new();
            put(&mut mm, m::CPU_USAGE_CORES, node_used[n].0);
            put(&mut mm, m::CPU_LIMIT_CORES, node.cpu_cores);
            put(&mut mm, m::CPU_REQUEST_CORES, node_req_cpu[n]);
            put(&mut mm, m::MEMORY_WORKING_SET_BYTES, node_used[n].1.round());
            put(&mut mm, m::MEMORY_LIMIT_BYTES, node.memory_bytes);
            put(&mut mm, m::MEMORY_REQUEST_BYTES, node_req_mem[n]);
            put(&mut mm, m::NODE_CPU_UTILIZATION_RATIO, node_util[n].0);
            put(&mut mm, m::NODE_MEMORY_UTILIZATION_RATIO, node_util[n].1);
            put(&mut mm, m::READY, 1.0);
            put_counters(&mut mm, ct);
            samples.push(MetricSample {
                timestamp_ms: ts,
                entity: node.entity.clone(),
                metrics: mm,
            });
        }
        self.calcs = calcs;
        samples
    }

    /// Network counter increments over one interval: bytes rx/tx, errors rx/tx, drops rx/tx.
    fn net_increments(
        &mut self,
        rps: f64,
        rx_bpr: f64,
        tx_bpr: f64,
        mult: f64,
        iv_s: f64,
    ) -> [f64; 6] {
        let n1 = self.normal();
        let n2 = self.normal();
        let rx = ((rps * rx_bpr + 300.0) * iv_s * (1.0 + 0.05 * n1)).max(0.0);
        let tx = ((rps * tx_bpr + 300.0) * iv_s * (1.0 + 0.05 * n2)).max(0.0);
        // ~1 KB per packet; errors and drops are rare until a fault multiplies them.
        let (prx, ptx) = (rx / 1000.0, tx / 1000.0);
        [
            rx,
            tx,
            self.poisson(prx * 2e-6 * mult),
            self.poisson(ptx * 2e-6 * mult),
            self.poisson(prx * 5e-6 * mult),
            self.poisson(ptx * 5e-6 * mult),
        ]
    }

    #[allow(clippy::too_many_arguments)]
    fn pod_calc(
        &mut self,
        k: u64,
        s: usize,
        id: PodId,
        f: &PodFx,
        ready_weight: f64,
        down_err: f64,
        client_lat: f64,
    ) -> PodCalc {
        let noise: [f64; 6] = std::array::from_fn(|_| self.rng.sample(StandardNormal));
        let def = &self.cluster.services[s];
        let pod = self.state.pod(id).expect("alive");
        let ready = f.ready;
        let rps = if ready && ready_weight > 0.0 {
            self.rps[s] * pod.weight / ready_weight
        } else {
            0.0
        };
        let load = (self.rps[s] / def.nominal_peak_rps.max(1e-9)).min(2.0);
        let u_nat = if ready {
            ((def.cpu_idle_frac * def.cpu_limit + rps * def.cpu_per_request) / def.cpu_limit
                * (1.0 + CORE_NOISE * noise[0]))
                .clamp(0.0, 0.9)
        } else {
            0.02
        };
        let u = u_nat.max(f.cpu_floor);
        let cpu = u.min(1.0) * def.cpu_limit;
        let throttle = (throttle_fn(u) + f.throttle + 0.003 * noise[1].abs()).clamp(0.0, 1.0);
        let age_min =
            (k.saturating_sub(pod.started_tick) * self.config.interval_ms) as f64 / 60_000.0;
        let warm = 0.7 + 0.3 * (age_min / 10.0).min(1.0);
        let ws = match f.mem_override {
            Some(x) => def.mem_limit * x,
            None => {
                let nat = def.mem_limit
                    * (def.mem_base_frac * warm + 0.06 * load)
                    * (1.0 + 0.01 * noise[2]);
                nat.max(def.mem_limit * f.mem_floor * (1.0 - 0.002 * noise[3].abs()))
            }
        }
        .clamp(0.0, def.mem_limit);
        let (serving, client_p99) = if ready {
            let base_err = (def.base_err * (1.0 + 0.5 * noise[4])).clamp(0.0, 3.0 * def.base_err);
            let err = 1.0 - (1.0 - f.err) * (1.0 - down_err);
            let ok = (1.0 - base_err) * (1.0 - err);
            let lat = f.lat + client_lat;
            let lf = 1.0 + 0.3 * load * load;
            let p50 = def.p50 * lf * (1.0 + 0.05 * noise[5]).max(0.5);
            let p90 = p50 * def.p90_ratio + lat / 2.0;
            let p99 = p50 * def.p99_ratio * (1.0 + 0.05 * noise[1].abs()) + lat;
            let client = (!def.callees.is_empty())
                .then(|| def.client_p99 * lf * (1.0 + 0.05 * noise[3]).max(0.5) + client_lat);
            (Some((ok, p50 + lat / 4.0, p90, p99)), client)
        } else {
            (None, None)
        };
        PodCalc {
            id,
            ready,
            rps,
            cpu,
            throttle,
            ws,
            serving,
            client_p99,
        }
    }
}

fn put_counters(mm: &mut BTreeMap<String, f64>, c: &Counters) {
    mm.insert(m::RESTARTS_TOTAL.into(), c.restarts);
    mm.insert(m::OOM_KILLS_TOTAL.into(), c.oom_kills);
    mm.insert(m::NETWORK_RX_BYTES_TOTAL.into(), c.rx_bytes);
    mm.insert(m::NETWORK_TX_BYTES_TOTAL.into(), c.tx_bytes);
    mm.insert(m::NETWORK_RX_ERRORS_TOTAL.into(), c.rx_errors);
    mm.insert(m::NETWORK_TX_ERRORS_TOTAL.into(), c.tx_errors);
    mm.insert(m::NETWORK_RX_DROPPED_TOTAL.into(), c.rx_dropped);
    mm.insert(m::NETWORK_TX_DROPPED_TOTAL.into(), c.tx_dropped);
}

impl Iterator for Simulator {
    type Item = Tick;

    fn next(&mut self) -> Option<Tick> {
        self.next_tick()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_six_digits() {
        assert_eq!(round_sig(0.123456789), 0.123457);
        assert_eq!(round_sig(536_870_912.0), 536_871_000.0);
        assert_eq!(round_sig(-1.0000004), -1.0);
        assert_eq!(round_sig(0.0), 0.0);
    }

    #[test]
    fn throttling_is_high_only_past_the_limit() {
        assert_eq!(throttle_fn(0.5), 0.0);
        assert!(throttle_fn(0.9) < 0.4);
        assert!(throttle_fn(0.95) < 0.5);
        assert!(throttle_fn(1.15) > 0.7);
    }
}
