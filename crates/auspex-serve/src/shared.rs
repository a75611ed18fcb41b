//! What the loops and the HTTP API share: the engine behind one lock, readiness, the model
//! loader and the alert hooks (Alertmanager).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use auspex_ingest::Record;
use auspex_model::{Alert, AnomalyKind, TimestampMs};
use auspex_score::Scorer;
use auspex_window::WindowConfig;
use serde::Serialize;

use crate::engine::{Engine, KindScores};
use crate::model::ThresholdSource;

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    /// The version served before, and the one served now.
    pub previous: String,
    pub version: String,
    /// The fire threshold in force for every kind after the reload.
    pub thresholds: BTreeMap<AnomalyKind, f64>,
}

/// Loads a model bundle into a scorer for windows built under the given config; refuses a
/// bundle whose features those windows cannot give.
pub type Loader = Box<dyn Fn(&Path, &WindowConfig) -> Result<Box<dyn Scorer>> + Send + Sync>;

/// A hook every emitted alert passes through (on-call routing).
pub type AlertHook = Box<dyn Fn(&Alert) + Send + Sync>;

/// Readiness: `/readyz` answers 200 once every flag that applies is set.
#[derive(Debug, Default)]
pub struct Readiness {
    pub model_loaded: AtomicBool,
    /// Whether a consumer group assignment is needed (Kafka) at all.
    pub needs_assignment: AtomicBool,
    pub assigned: AtomicBool,
    pub draining: AtomicBool,
}

impl Readiness {
    /// `Ok` when ready, else what is missing.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("shutting down");
        }
        if !self.model_loaded.load(Ordering::Relaxed) {
            return Err("no model loaded");
        }
        if self.needs_assignment.load(Ordering::Relaxed) && !self.assigned.load(Ordering::Relaxed) {
            return Err("the consumer has no partition assignment yet");
        }
        Ok(())
    }
}

/// Shared by the pipeline loop and the HTTP handlers.
pub struct Shared {
    engine: Mutex<Engine>,
    pub readiness: Readiness,
    pub started: Instant,
    hooks: Vec<AlertHook>,
    loader: Option<Loader>,
    /// Which thresholds a reloaded bundle puts in force.
    thresholds: ThresholdSource,
    model_path: Mutex<Option<PathBuf>>,
    /// A second scorer of the served model for `POST /v1/score`, so ad hoc requests never
    /// touch the live per-entity state.
    adhoc: Mutex<Option<Box<dyn Scorer>>>,
    pub reloads: AtomicU64,
}

impl Shared {
    pub fn new(engine: Engine) -> Self {
        let s = Shared {
            engine: Mutex::new(engine),
            readiness: Readiness::default(),
            started: Instant::now(),
            hooks: Vec::new(),
            loader: None,
            thresholds: ThresholdSource::Config,
            model_path: Mutex::new(None),
            adhoc: Mutex::new(None),
            reloads: AtomicU64::new(0),
        };
        s.readiness.model_loaded.store(true, Ordering::Relaxed);
        s
    }

    /// Adds a hook every alert passes through.
    pub fn with_hook(mut self, hook: AlertHook) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Sets how bundles are loaded (enables `POST /v1/model/reload` and `POST /v1/score`) and
    /// whose thresholds a reload puts in force (as at start-up: `model.bundle_thresholds`).
    pub fn with_loader(
        mut self,
        loader: Loader,
        path: Option<PathBuf>,
        thresholds: ThresholdSource,
    ) -> Result<Self> {
        if let Some(p) = &path {
            let windows = self.engine().config().windows.clone();
            *self.adhoc.get_mut().expect("not shared yet") = Some(loader(p, &windows)?);
        }
        *self.model_path.get_mut().expect("not shared yet") = path;
        self.loader = Some(loader);
        self.thresholds = thresholds;
        Ok(self)
    }

    /// The engine, locked. Hold it briefly: the HTTP handlers wait on it.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Passes an emitted alert to every hook.
    pub fn route(&self, alert: &Alert) {
        for h in &self.hooks {
            h(alert);
        }
    }

    /// Loads `path` (or the configured bundle again), verifying its checksums and that the
    /// live windows give the features it needs, and swaps it in between two batches: no
    /// message is dropped. With [`ThresholdSource::Bundle`] the new bundle's thresholds apply
    /// from the same tick on.
    pub fn reload(&self, path: Option<&Path>) -> Result<Reloaded> {
        let Some(loader) = &self.loader else {
            bail!("this instance serves the statistical scorer: there is no bundle to reload");
        };
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => self
                .model_path
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .context("no model path configured: name the bundle to load")?,
        };
        let windows = self.engine().config().windows.clone();
        // Load outside the engine's lock: scoring goes on meanwhile.
        let live = loader(&path, &windows)
            .with_context(|| format!("loading the model bundle {}", path.display()))?;
        let adhoc = loader(&path, &windows)?;
        let version = live.version();
        let thresholds = self.thresholds.for_scorer(live.as_ref());
        let (previous, thresholds) = {
            let mut engine = self.engine();
            let previous = engine.swap_scorer(live, thresholds);
            (previous, engine.thresholds())
        };
        *self.adhoc.lock().unwrap_or_else(|p| p.into_inner()) = Some(adhoc);
        *self.model_path.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(Reloaded {
            previous,
            version,
            thresholds,
        })
    }

    /// Scores posted records on their own (a scratch engine with the live configuration and
    /// the ad hoc scorer); returns the latest scores per entity.
    pub fn score_adhoc(&self, records: Vec<Record>) -> Result<Vec<(String, Vec<KindScores>)>> {
        let config = self.engine().config().clone();
        let mut slot = self.adhoc.lock().unwrap_or_else(|p| p.into_inner());
        let scorer = slot
            .take()
            .context("ad hoc scoring needs a model bundle (serve was started without one)")?;
        let mut engine = Engine::new(config, scorer)?;
        let (mut first, mut last): (Option<TimestampMs>, Option<TimestampMs>) = (None, None);
        let mut ids = Vec::new();
        for r in records {
            if let Some(ts) = r.timestamp_ms() {
                first = Some(first.map_or(ts, |f| f.min(ts)));
                last = Some(last.map_or(ts, |l| l.max(ts)));
            }
            if let Record::Sample(s) = &r {
                ids.push(s.entity.id());
            }
            engine.apply(r);
        }
        let mut sink = Vec::new();
        if let (Some(first), Some(last)) = (first, last) {
            // The first advance lays the tick grid down; the second scores the last slot.
            engine.advance(first, &mut sink);
            engine.advance(last + engine.tick_ms(), &mut sink);
        }
        ids.sort();
        ids.dedup();
        let out = ids
            .iter()
            .filter_map(|id| engine.entity(id).map(|v| (v.id, v.scores)))
            .collect();
        let mut scorer = engine.into_scorer();
        for id in &ids {
            scorer.forget(id);
        }
        *slot = Some(scorer);
        Ok(out)
    }
}
