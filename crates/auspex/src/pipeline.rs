//! The embedded pipeline: one place where a source, the state (windows, graph), a scorer, the
//! alert lifecycle and the sinks are wired together. Event time drives everything: a scoring
//! tick happens each time the stream crosses a slot boundary of the window grid, so a replay
//! as fast as possible and a live stream produce the same alerts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use auspex_graph::{GraphConfig, LiveGraph};
use auspex_ingest::{DeadLetter, Record, Sink, Source};
use auspex_model::{Alert, AlertState, AnomalyKind, EntityId, TimestampMs};
use auspex_score::{AlertPolicy, AlertTracker, Scorer, ScoringContext};
use auspex_window::{WindowConfig, WindowStore};
use serde::Serialize;

/// Records pulled from the source per batch.
const BATCH: usize = 4096;

/// Settings of the embedded pipeline.
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    pub windows: WindowConfig,
    pub graph: GraphConfig,
    pub alerts: AlertPolicy,
}

/// What a run did, for the summary.
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

/// The wired pipeline.
pub struct Pipeline<S: Scorer> {
    windows: WindowStore,
    graph: LiveGraph,
    scorer: S,
    tracker: AlertTracker,
    counts: RunCounts,
    first_seen: std::collections::HashMap<EntityId, (TimestampMs, TimestampMs)>,
    next_tick_ms: Option<TimestampMs>,
    tick_ms: TimestampMs,
    due: Vec<EntityId>,
}

impl<S: Scorer> Pipeline<S> {
    pub fn new(config: PipelineConfig, scorer: S) -> Result<Self> {
        config
            .alerts
            .validate()
            .map_err(|e| anyhow::anyhow!("alerts.{e}"))?;
        let tick_ms = (config.windows.resolution_ms * config.windows.step as u64) as TimestampMs;
        let version = scorer.version();
        Ok(Pipeline {
            windows: WindowStore::new(config.windows).context("windows config")?,
            graph: LiveGraph::new(config.graph).context("graph config")?,
            tracker: AlertTracker::new(config.alerts, version),
            scorer,
            counts: RunCounts::default(),
            first_seen: Default::default(),
            next_tick_ms: None,
            tick_ms,
            due: Vec::new(),
        })
    }

    /// Runs the source to its end; alerts and dead letters go to their sinks.
    pub fn run(
        &mut self,
        source: &mut dyn Source,
        alerts: &mut dyn Sink<Alert>,
        dead_letters: &mut dyn Sink<DeadLetter>,
    ) -> Result<RunCounts> {
        let started = Instant::now();
        while let Some(batch) = source.next_batch(BATCH)? {
            if batch.is_empty() {
                // A live source with nothing yet.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            for record in batch {
                if let Some(ts) = record.timestamp_ms() {
                    self.advance(ts, alerts)?;
                }
                self.ingest(record, dead_letters)?;
            }
        }
        // Score what the last slot holds, then close.
        if let Some(last) = self.counts.last_event_ms {
            self.advance(last + self.tick_ms, alerts)?;
        }
        alerts.flush()?;
        dead_letters.flush()?;
        let stats = self.windows.stats();
        let c = &mut self.counts;
        c.late_samples = stats.too_late;
        c.duplicate_samples = stats.duplicates;
        c.graph_vertices = self.graph.len();
        c.graph_edges = self.graph.edge_count();
        for id in self.first_seen.keys() {
            *c.entities_seen.entry(id.kind().to_string()).or_default() += 1;
        }
        c.entity_days = self
            .first_seen
            .values()
            .map(|(a, b)| (b - a) as f64 / 86_400_000.0)
            .sum();
        c.wall_seconds = started.elapsed().as_secs_f64();
        c.samples_per_second = c.samples as f64 / c.wall_seconds.max(1e-9);
        Ok(c.clone())
    }

    fn ingest(&mut self, record: Record, dead_letters: &mut dyn Sink<DeadLetter>) -> Result<()> {
        match record {
            Record::Sample(s) => {
                self.counts.samples += 1;
                self.note_time(s.timestamp_ms);
                let id = s.entity.id();
                let span = self
                    .first_seen
                    .entry(id)
                    .or_insert((s.timestamp_ms, s.timestamp_ms));
                span.1 = span.1.max(s.timestamp_ms);
                self.windows.push(&s);
                // A sample whose entity fields contradict the graph is still a good sample.
                if let Err(e) = self.graph.observe(&s) {
                    tracing::debug!(%e, "graph ignored a sample's topology hints");
                }
            }
            Record::Topology(t) => {
                self.counts.topology_events += 1;
                self.note_time(t.timestamp_ms);
                if let Err(e) = self.graph.apply(&t) {
                    tracing::warn!(%e, "topology event not applied");
                }
            }
            Record::DeadLetter(d) => {
                self.counts.dead_letters += 1;
                tracing::debug!(origin = %d.origin, reason = %d.reason, "dead-lettered");
                dead_letters.send(&d)?;
            }
        }
        Ok(())
    }

    fn note_time(&mut self, ts: TimestampMs) {
        let c = &mut self.counts;
        c.first_event_ms = Some(c.first_event_ms.map_or(ts, |f| f.min(ts)));
        c.last_event_ms = Some(c.last_event_ms.map_or(ts, |l| l.max(ts)));
    }

    /// Runs every scoring tick whose slot closed before `ts`.
    fn advance(&mut self, ts: TimestampMs, alerts: &mut dyn Sink<Alert>) -> Result<()> {
        let tick = self.tick_ms;
        let next = *self
            .next_tick_ms
            .get_or_insert_with(|| (ts.div_euclid(tick) + 1) * tick);
        if ts < next {
            return Ok(());
        }
        // Samples of the slot ending at `boundary` have arrived (the stream is past it):
        // score at the last boundary only; a gap in the stream is not replayed tick by tick.
        let boundary = ts.div_euclid(tick) * tick;
        self.tick(boundary, alerts)?;
        self.next_tick_ms = Some(boundary + tick);
        Ok(())
    }

    fn tick(&mut self, now_ms: TimestampMs, alerts: &mut dyn Sink<Alert>) -> Result<()> {
        self.counts.ticks += 1;
        // `now_ms` is the boundary that just closed: the slots before it are complete.
        self.windows.due_into(now_ms - 1, &mut self.due);
        if !self.due.is_empty() {
            self.counts.windows_scored += self.due.len() as u64;
            let ctx = ScoringContext {
                now_ms,
                windows: &self.windows,
                graph: &self.graph,
            };
            let preds = self.scorer.score(&ctx, &self.due);
            for p in preds {
                if let Some(a) = self.tracker.observe(now_ms, p) {
                    self.emit(&a, alerts)?;
                }
            }
        }
        // Housekeeping once a minute of event time.
        if self
            .counts
            .ticks
            .is_multiple_of((60_000 / self.tick_ms).max(1) as u64)
        {
            for a in self.tracker.sweep(now_ms) {
                self.emit(&a, alerts)?;
            }
            for id in self.windows.evict_stale(now_ms) {
                self.scorer.forget(&id);
            }
            self.graph.expire(now_ms);
        }
        Ok(())
    }

    fn emit(&mut self, a: &Alert, alerts: &mut dyn Sink<Alert>) -> Result<()> {
        match a.state {
            AlertState::Firing => *self.counts.alerts_firing.entry(a.kind).or_default() += 1,
            AlertState::Resolved => self.counts.alerts_resolved += 1,
        }
        alerts.send(a)?;
        Ok(())
    }
}
