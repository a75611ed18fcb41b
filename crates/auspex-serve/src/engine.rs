//! The engine: the state (windows, graph), the scorer and the alert lifecycle, driven by event
//! time. It does no I/O: the embedded pipeline ([`crate::pipeline`]) and the Kafka loop
//! ([`crate::kafka`]) feed it records and a watermark, and route what comes out.
//!
//! A scoring tick happens each time the watermark crosses a slot boundary of the window grid,
//! so a replay as fast as possible, a live stream and a stream spread over several Kafka
//! partitions give the same alerts.

use std::collections::{BTreeMap, HashMap, VecDeque};

use anyhow::{Context, Result};
use auspex_graph::{GraphConfig, LiveGraph, Subgraph};
use auspex_ingest::{DeadLetter, Record};
use auspex_model::{Alert, AlertState, AnomalyKind, EntityId, EntityRef, TimestampMs};
use auspex_score::{AlertPolicy, AlertTracker, Branches, Prediction, Scorer, ScoringContext};

use crate::remediation::{Facts, Recommender, RemediationConfig, RevisionBook};
use auspex_forecast::{
    DemandForecaster, Forecast, ForecastModel, Resource as ForecastResource, WorkloadKey,
};
use auspex_window::{WindowConfig, WindowStore};
use serde::Serialize;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub windows: WindowConfig,
    pub graph: GraphConfig,
    pub alerts: AlertPolicy,
    /// Alerts (firing and resolved) kept for `/v1/alerts`.
    pub recent_alerts: usize,
    /// The rule table behind each alert's recommended action.
    pub remediation: RemediationConfig,
    /// An entity is first scored once it has been seen for this long (event time), so a pod
    /// that has just started is not judged on a few samples; 0 scores it at once.
    pub min_history_ms: TimestampMs,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            windows: WindowConfig::default(),
            graph: GraphConfig::default(),
            alerts: AlertPolicy::default(),
            recent_alerts: 1000,
            remediation: RemediationConfig::default(),
            min_history_ms: 0,
        }
    }
}

/// What a run did, for the summary and the metrics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RunCounts {
    pub samples: u64,
    pub topology_events: u64,
    pub dead_letters: u64,
    pub late_samples: u64,
    pub duplicate_samples: u64,
    pub ticks: u64,
    pub windows_scored: u64,
    pub entities_seen: BTreeMap<String, u64>,
    pub graph_vertices: usize,
    pub graph_edges: usize,
    pub alerts_firing: BTreeMap<AnomalyKind, u64>,
    pub alerts_resolved: u64,
    pub first_event_ms: Option<TimestampMs>,
    pub last_event_ms: Option<TimestampMs>,
    /// Observed entity-time in days (sum over entities of first..last sample), for false-alert rates.
    pub entity_days: f64,
    pub wall_seconds: f64,
    pub samples_per_second: f64,
}

/// The latest scores of one entity, for `/v1/entities/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct KindScores {
    pub kind: AnomalyKind,
    pub probability: f64,
    pub time_to_incident_seconds: Option<f64>,
    /// Serialised as `branch_scores` and `branch_weights`.
    #[serde(flatten)]
    pub branches: Branches,
}

/// One entity as the engine sees it.
#[derive(Debug, Clone, Serialize)]
pub struct EntityView {
    pub id: String,
    pub entity: Option<EntityRef>,
    /// First and newest sample (event time).
    pub first_sample_ms: Option<TimestampMs>,
    pub last_sample_ms: Option<TimestampMs>,
    /// End of the window's newest slot.
    pub window_end_ms: Option<TimestampMs>,
    /// The window's features by name (what the scorers read).
    pub features: BTreeMap<String, f32>,
    /// When it was last scored, and the scores per kind.
    pub scored_at_ms: Option<TimestampMs>,
    pub scores: Vec<KindScores>,
    pub active_alerts: Vec<Alert>,
}

/// The wired state and scorer.
pub struct Engine {
    config: EngineConfig,
    windows: WindowStore,
    graph: LiveGraph,
    scorer: Box<dyn Scorer>,
    tracker: AlertTracker,
    counts: RunCounts,
    spans: HashMap<EntityId, (TimestampMs, TimestampMs)>,
    next_tick_ms: Option<TimestampMs>,
    tick_ms: TimestampMs,
    due: Vec<EntityId>,
    latest: HashMap<EntityId, (TimestampMs, Vec<KindScores>)>,
    recent: VecDeque<Alert>,
    recommender: Recommender,
    revisions: RevisionBook,
    /// Demand forecasts per workload (issue 7), when a forecast model is loaded: fed every
    /// sample, forecast once per forecast step at the tick, read by the KEDA scaler, the
    /// `auspex_forecast_demand` gauges and `/v1/forecasts`.
    forecaster: Option<DemandForecaster>,
    forecasts: BTreeMap<(WorkloadKey, ForecastResource), Forecast>,
    forecast_step: Option<i64>,
}

impl Engine {
    pub fn new(config: EngineConfig, scorer: Box<dyn Scorer>) -> Result<Self> {
        config
            .alerts
            .validate()
            .map_err(|e| anyhow::anyhow!("alerts.{e}"))?;
        let recommender =
            Recommender::new(config.remediation.clone()).map_err(|e| anyhow::anyhow!(e))?;
        let tick_ms = (config.windows.resolution_ms * config.windows.step as u64) as TimestampMs;
        let version = scorer.version();
        Ok(Engine {
            windows: WindowStore::new(config.windows.clone()).context("windows config")?,
            graph: LiveGraph::new(config.graph.clone()).context("graph config")?,
            tracker: AlertTracker::new(config.alerts.clone(), version),
            scorer,
            counts: RunCounts::default(),
            spans: HashMap::new(),
            next_tick_ms: None,
            tick_ms,
            due: Vec::new(),
            latest: HashMap::new(),
            recent: VecDeque::new(),
            recommender,
            revisions: RevisionBook::default(),
            forecaster: None,
            forecasts: BTreeMap::new(),
            forecast_step: None,
            config,
        })
    }

    /// The width of a scoring tick in event time.
    pub fn tick_ms(&self) -> TimestampMs {
        self.tick_ms
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Applies a sample or a topology event to the state; a dead letter is counted and handed
    /// back for the caller to route.
    pub fn apply(&mut self, record: Record) -> Option<DeadLetter> {
        match record {
            Record::Sample(s) => {
                self.counts.samples += 1;
                self.note_time(s.timestamp_ms);
                let id = s.entity.id();
                let span = self
                    .spans
                    .entry(id)
                    .or_insert((s.timestamp_ms, s.timestamp_ms));
                span.1 = span.1.max(s.timestamp_ms);
                if let Some(f) = &mut self.forecaster {
                    f.observe(&s);
                }
                self.windows.push(&s);
                self.revisions.observe_entity(&s.entity, s.timestamp_ms);
                // A sample whose entity fields contradict the graph is still a good sample.
                if let Err(e) = self.graph.observe(&s) {
                    tracing::debug!(%e, "graph ignored a sample's topology hints");
                }
                None
            }
            Record::Topology(t) => {
                self.counts.topology_events += 1;
                self.note_time(t.timestamp_ms);
                if let auspex_model::TopologyChange::UpsertEntity { entity } = &t.change {
                    self.revisions.observe_entity(entity, t.timestamp_ms);
                }
                if let Err(e) = self.graph.apply(&t) {
                    tracing::warn!(%e, "topology event not applied");
                }
                None
            }
            Record::DeadLetter(d) => {
                self.counts.dead_letters += 1;
                tracing::debug!(origin = %d.origin, reason = %d.reason, "dead-lettered");
                Some(d)
            }
        }
    }

    fn note_time(&mut self, ts: TimestampMs) {
        let c = &mut self.counts;
        c.first_event_ms = Some(c.first_event_ms.map_or(ts, |f| f.min(ts)));
        c.last_event_ms = Some(c.last_event_ms.map_or(ts, |l| l.max(ts)));
    }

    /// Event time has reached `watermark` (no sample older than it is still to come, within
    /// the windows' lateness): runs the scoring tick of the last slot boundary crossed, and
    /// pushes the alerts that fire or resolve onto `out`. Returns the boundary ticked: every
    /// sample older than it has been scored.
    pub fn advance(&mut self, watermark: TimestampMs, out: &mut Vec<Alert>) -> Option<TimestampMs> {
        let tick = self.tick_ms;
        let next = *self
            .next_tick_ms
            .get_or_insert_with(|| (watermark.div_euclid(tick) + 1) * tick);
        if watermark < next {
            return None;
        }
        // Samples of the slot ending at `boundary` have arrived (the stream is past it):
        // score at the last boundary only; a gap in the stream is not replayed tick by tick.
        let boundary = watermark.div_euclid(tick) * tick;
        self.tick(boundary, out);
        self.next_tick_ms = Some(boundary + tick);
        Some(boundary)
    }

    /// Forgets where the tick grid stands: the next `advance` starts it again (all partitions
    /// were revoked; the next assignment replays older samples).
    pub fn reset_clock(&mut self) {
        self.next_tick_ms = None;
    }

    /// Scores what the last slot holds (the stream ended or went quiet).
    pub fn flush(&mut self, out: &mut Vec<Alert>) -> Option<TimestampMs> {
        self.advance(self.counts.last_event_ms? + self.tick_ms, out)
    }

    fn tick(&mut self, now_ms: TimestampMs, out: &mut Vec<Alert>) {
        self.counts.ticks += 1;
        self.forecast(now_ms);
        let first = out.len();
        // `now_ms` is the boundary that just closed: the slots before it are complete.
        self.windows.due_into(now_ms - 1, &mut self.due);
        if self.config.min_history_ms > 0 {
            // Too young to judge: not scored yet (they stay due at every later tick).
            let (spans, since) = (&self.spans, now_ms - self.config.min_history_ms);
            self.due
                .retain(|id| spans.get(id).is_some_and(|(first, _)| *first <= since));
        }
        if !self.due.is_empty() {
            self.counts.windows_scored += self.due.len() as u64;
            let ctx = ScoringContext {
                now_ms,
                windows: &self.windows,
                graph: &self.graph,
            };
            let started = std::time::Instant::now();
            let preds = self.scorer.score(&ctx, &self.due);
            metrics::histogram!(crate::telemetry::SCORE_SECONDS, "branch" => "ensemble")
                .record(started.elapsed().as_secs_f64());
            for &(stage, took) in self.scorer.stage_timings() {
                metrics::histogram!(crate::telemetry::SCORE_SECONDS, "branch" => stage)
                    .record(took.as_secs_f64());
            }
            metrics::counter!(crate::telemetry::WINDOWS_SCORED).increment(self.due.len() as u64);
            self.remember(now_ms, &preds);
            for p in preds {
                if let Some(mut a) = self.tracker.observe(now_ms, p) {
                    if a.state == AlertState::Firing {
                        let latest = &self.latest;
                        let score = |id: &EntityId, kind: AnomalyKind| {
                            latest.get(id).and_then(|(_, ks)| {
                                ks.iter().find(|k| k.kind == kind).map(|k| k.probability)
                            })
                        };
                        let facts = Facts {
                            graph: &self.graph,
                            windows: &self.windows,
                            score: &score,
                            revisions: &self.revisions,
                        };
                        a.action = self.recommender.recommend(&a, &facts);
                        self.tracker
                            .set_action(&a.entity.id(), a.kind, a.action.clone());
                    }
                    out.push(a);
                }
            }
        }
        // Housekeeping once a minute of event time.
        if self
            .counts
            .ticks
            .is_multiple_of((60_000 / self.tick_ms).max(1) as u64)
        {
            out.extend(self.tracker.sweep(now_ms));
            for id in self.windows.evict_stale(now_ms) {
                self.scorer.forget(&id);
                self.latest.remove(&id);
                self.spans.remove(&id);
            }
            self.graph.expire(now_ms);
        }
        for a in &out[first..] {
            match a.state {
                AlertState::Firing => *self.counts.alerts_firing.entry(a.kind).or_default() += 1,
                AlertState::Resolved => self.counts.alerts_resolved += 1,
            }
            if self.recent.len() == self.config.recent_alerts.max(1) {
                self.recent.pop_front();
            }
            self.recent.push_back(a.clone());
        }
    }

    fn remember(&mut self, now_ms: TimestampMs, preds: &[Prediction]) {
        // A scorer gives an entity's kinds one after another: one lookup per entity.
        for same in preds.chunk_by(|a, b| a.entity == b.entity) {
            let entry = self
                .latest
                .entry(same[0].entity.id())
                .or_insert_with(|| (now_ms, Vec::new()));
            if entry.0 != now_ms {
                entry.0 = now_ms;
                entry.1.clear();
            }
            entry.1.extend(same.iter().map(|p| KindScores {
                kind: p.kind,
                probability: p.probability,
                time_to_incident_seconds: p.time_to_incident_s,
                branches: p.branches.clone(),
            }));
        }
    }

    /// Counts so far, with the state's own statistics filled in.
    pub fn counts(&self) -> RunCounts {
        let mut c = self.counts.clone();
        let stats = self.windows.stats();
        c.late_samples = stats.too_late;
        c.duplicate_samples = stats.duplicates;
        c.graph_vertices = self.graph.len();
        c.graph_edges = self.graph.edge_count();
        for id in self.spans.keys() {
            *c.entities_seen.entry(id.kind().to_string()).or_default() += 1;
        }
        c.entity_days = self
            .spans
            .values()
            .map(|(a, b)| (b - a) as f64 / 86_400_000.0)
            .sum();
        c
    }

    /// Entities with a window now.
    pub fn tracked_entities(&self) -> usize {
        self.windows.len()
    }

    /// Completes the forecaster's steps up to `now_ms` and, once per new step, forecasts every
    /// workload (one batch through the network); workloads silent in the last step drop out.
    fn forecast(&mut self, now_ms: TimestampMs) {
        let Some(f) = &mut self.forecaster else {
            return;
        };
        f.advance(now_ms);
        let step = now_ms.div_euclid(f.model().config().features.step_ms);
        if self.forecast_step == Some(step) {
            return;
        }
        self.forecast_step = Some(step);
        let started = std::time::Instant::now();
        self.forecasts = f
            .forecast_all()
            .into_iter()
            .map(|fc| ((fc.workload.clone(), fc.resource), fc))
            .collect();
        metrics::histogram!(crate::telemetry::SCORE_SECONDS, "branch" => "forecast")
            .record(started.elapsed().as_secs_f64());
    }

    /// Forecasts each workload's demand with `model` from here on.
    pub fn with_forecaster(mut self, model: ForecastModel) -> Self {
        self.forecaster = Some(DemandForecaster::new(model));
        self
    }

    /// The forecast model's horizons (ms) and quantiles; `None` without one.
    pub fn forecast_grid(&self) -> Option<(Vec<i64>, Vec<f64>)> {
        let c = self.forecaster.as_ref()?.model().config();
        let step = c.features.step_ms;
        Some((
            c.features
                .horizons
                .iter()
                .map(|&h| h as i64 * step)
                .collect(),
            c.quantiles.clone(),
        ))
    }

    /// The latest forecast of every workload and resource that has one.
    pub fn forecasts(&self) -> impl Iterator<Item = &Forecast> {
        self.forecasts.values()
    }

    /// The latest forecast of one workload's resource; `Err(true)` when the workload is known
    /// (it has history) but has no forecast yet, `Err(false)` when it is not known.
    pub fn forecast_of(
        &self,
        workload: &WorkloadKey,
        resource: ForecastResource,
    ) -> Result<&Forecast, bool> {
        match self.forecasts.get(&(workload.clone(), resource)) {
            Some(f) => Ok(f),
            None => Err(self
                .forecaster
                .as_ref()
                .is_some_and(|f| f.resources(workload).contains(&resource))),
        }
    }

    pub fn graph(&self) -> &LiveGraph {
        &self.graph
    }

    pub fn model_version(&self) -> String {
        self.scorer.version()
    }

    /// Alerts firing now, by id.
    pub fn active_alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.tracker.active().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The most recent alert messages (firing and resolved), oldest first.
    pub fn recent_alerts(&self) -> Vec<Alert> {
        self.recent.iter().cloned().collect()
    }

    /// One alert in its latest state: firing now, else its newest message among the recent
    /// ones (`None` when it is neither).
    pub fn alert(&self, id: &str) -> Option<Alert> {
        self.tracker
            .active()
            .find(|a| a.id == id)
            .or_else(|| self.recent.iter().rev().find(|a| a.id == id))
            .cloned()
    }

    /// One entity's window summary and latest scores; `None` when the engine knows nothing
    /// of it.
    pub fn entity(&self, id: &EntityId) -> Option<EntityView> {
        let span = self.spans.get(id);
        let node = self.graph.state(id);
        let latest = self.latest.get(id);
        if span.is_none() && node.is_none() && latest.is_none() {
            return None;
        }
        let features = self
            .windows
            .features(id)
            .map(|values| {
                let spec = self.windows.spec();
                spec.names
                    .iter()
                    .zip(values)
                    .map(|(n, v)| (n.to_string(), v))
                    .collect()
            })
            .unwrap_or_default();
        Some(EntityView {
            id: id.as_str().to_string(),
            entity: node.map(|n| n.entity().clone()),
            first_sample_ms: span.map(|s| s.0),
            last_sample_ms: span.map(|s| s.1),
            window_end_ms: self.windows.window_end_ms(id),
            features,
            scored_at_ms: latest.map(|l| l.0),
            scores: latest.map(|l| l.1.clone()).unwrap_or_default(),
            active_alerts: self
                .tracker
                .active()
                .filter(|a| &a.entity.id() == id)
                .cloned()
                .collect(),
        })
    }

    /// The entities within `hops` of `id` and the edges among them.
    pub fn subgraph(&self, id: &EntityId, hops: usize) -> Option<Subgraph> {
        self.graph.subgraph(id, hops)
    }

    /// Serves a new model from the next tick on; returns the old one's version. The windows,
    /// the graph and firing episodes stay; the new model's per-entity state starts empty.
    /// `thresholds`, when given, become the per-kind fire thresholds from the next tick on.
    pub fn swap_scorer(
        &mut self,
        scorer: Box<dyn Scorer>,
        thresholds: Option<HashMap<AnomalyKind, f64>>,
    ) -> String {
        let old = std::mem::replace(&mut self.scorer, scorer);
        self.tracker.set_model_version(self.scorer.version());
        if let Some(t) = thresholds {
            self.config.alerts.thresholds = t;
            self.tracker.set_policy(self.config.alerts.clone());
        }
        old.version()
    }

    /// The fire threshold in force for every kind (per-kind entries, else `fire_threshold`).
    pub fn thresholds(&self) -> BTreeMap<AnomalyKind, f64> {
        AnomalyKind::ALL
            .into_iter()
            .map(|k| (k, self.tracker.policy().threshold(k)))
            .collect()
    }

    /// The scorer, back from a scratch engine.
    pub fn into_scorer(self) -> Box<dyn Scorer> {
        self.scorer
    }

    /// Drops every trace of an entity (its partition moved to another instance).
    pub fn forget(&mut self, id: &EntityId) {
        self.windows.remove(id);
        self.scorer.forget(id);
        self.tracker.forget(id);
        self.latest.remove(id);
        self.spans.remove(id);
    }
}
