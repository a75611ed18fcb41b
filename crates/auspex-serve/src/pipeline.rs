//! The embedded pipeline: a finite or live [`Source`] (simulator, file replay) through the
//! [`Engine`] to alert and dead-letter sinks. `auspex run`, and `auspex serve` with no brokers
//! configured, use it. One stream in event-time order: the watermark is the newest timestamp.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use auspex_ingest::{DeadLetter, Sink, Source};
use auspex_model::Alert;

use crate::engine::{Engine, RunCounts};
use crate::shared::Shared;

/// Records pulled from the source per batch.
const BATCH: usize = 4096;

/// Runs `source` to its end (or until `stop` is set) through the engine held by `shared`;
/// alerts and dead letters go to their sinks.
pub fn run(
    shared: &Shared,
    source: &mut dyn Source,
    alerts: &mut dyn Sink<Alert>,
    dead_letters: &mut dyn Sink<DeadLetter>,
    stop: Option<Arc<AtomicBool>>,
) -> Result<RunCounts> {
    let started = Instant::now();
    let mut out = Vec::new();
    let stopped = || stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed));
    while !stopped() {
        let Some(batch) = source.next_batch(BATCH)? else {
            break;
        };
        if batch.is_empty() {
            // A live source with nothing yet.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let mut engine = shared.engine();
        for record in batch {
            crate::telemetry::record_in(&record, "embedded");
            if let Some(ts) = record.timestamp_ms() {
                engine.advance(ts, &mut out);
            }
            if let Some(d) = engine.apply(record) {
                dead_letters.send(&d)?;
            }
            send_all(&mut out, alerts, shared)?;
        }
    }
    // Score what the last slot holds, then close.
    let mut engine = shared.engine();
    engine.flush(&mut out);
    send_all(&mut out, alerts, shared)?;
    alerts.flush()?;
    dead_letters.flush()?;
    let mut c = engine.counts();
    c.wall_seconds = started.elapsed().as_secs_f64();
    c.samples_per_second = c.samples as f64 / c.wall_seconds.max(1e-9);
    Ok(c)
}

fn send_all(out: &mut Vec<Alert>, alerts: &mut dyn Sink<Alert>, shared: &Shared) -> Result<()> {
    for a in out.drain(..) {
        crate::telemetry::record_alert(&a);
        shared.route(&a);
        alerts.send(&a)?;
    }
    Ok(())
}

/// Convenience for callers that own an engine outright (`auspex run`).
pub fn run_engine(
    engine: Engine,
    source: &mut dyn Source,
    alerts: &mut dyn Sink<Alert>,
    dead_letters: &mut dyn Sink<DeadLetter>,
) -> Result<RunCounts> {
    let shared = Shared::new(engine);
    run(&shared, source, alerts, dead_letters, None)
}
