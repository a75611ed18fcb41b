//! `auspex collect`: gets a real cluster's Prometheus data into auspex. Prometheus
//! remote-writes to it (or it polls Prometheus's HTTP API), the standard cAdvisor,
//! kube-state-metrics and node-exporter series are mapped to one [`MetricSample`] per entity
//! per time bucket, and the samples are published to the samples topic `serve` consumes (or
//! written as NDJSON).
//!
//! With `[watch]`, the Kubernetes topology watcher (`auspex-watch`) runs here too and its
//! topology events go to the topology topic (or the same NDJSON output). With `calls.mesh`
//! set, the mesh's request counters among the received series become `calls` edges
//! ([`calls`]) on the same topic instead of being dropped as unknown.
//!
//! A source in the pipeline's terms: it depends on the model and on Kafka settings, never on
//! anything downstream. The stages: [`remote_write`] (wire format) and [`scrape`] (HTTP API
//! poller) → [`mapping`] (series → samples, all state bounded) and [`calls`] (mesh series →
//! call edges) → [`output`] (Kafka or NDJSON);
//! [`server`] is the HTTP side; [`Collector`] wires them. Config keys: [`config`] and
//! docs/COLLECT.md.
//!
//! [`MetricSample`]: auspex_model::MetricSample

pub mod calls;
pub mod config;
pub mod mapping;
pub mod output;
pub mod remote_write;
pub mod scrape;
pub mod server;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use config::CollectConfig;
pub use mapping::{DropReason, Mapper, MappingConfig};

/// Wall clock, milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A running collector: the HTTP server, the flusher and (in scrape mode) the poller.
pub struct Collector {
    addr: SocketAddr,
    mapper: Arc<Mutex<Mapper>>,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    flusher: JoinHandle<()>,
    poller: Option<JoinHandle<()>>,
    /// The Kubernetes watcher and the task publishing its events.
    watcher: Option<(JoinHandle<()>, JoinHandle<()>)>,
    /// The call-edge publisher and what tells it the receiver has stopped.
    calls: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// What a collector did before it stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub series: usize,
}

impl Collector {
    /// Validates `config`, opens the output, binds `http.listen` and starts every task on the
    /// current tokio runtime. `handle` renders `/metrics`.
    pub async fn start(config: CollectConfig, handle: PrometheusHandle) -> Result<Collector> {
        config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        telemetry::describe();
        let output = Arc::new(output::Output::open(&config)?);
        let poller = scrape::Poller::new(&config.scrape)?;
        let mapper = Arc::new(Mutex::new(Mapper::new(config.mapping.clone())));
        let call_edges = calls::Calls::new(&config.calls);
        let output_ok = Arc::new(AtomicBool::new(true));
        let state = server::AppState {
            mapper: mapper.clone(),
            calls: call_edges.clone(),
            handle: handle.clone(),
            limits: remote_write::Limits {
                max_body_bytes: config.http.max_body_bytes,
                max_decoded_bytes: config.http.max_decoded_bytes,
            },
            token: config.http.bearer_token.as_deref().map(Arc::from),
            output_ok: output_ok.clone(),
            timeout: Duration::from_millis(config.http.request_timeout_ms),
        };
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .with_context(|| format!("http.listen = {}: cannot listen", config.http.listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let server = {
            let mut stopped = stopped.clone();
            let router = server::router(state);
            tokio::spawn(async move {
                let upkeep = tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_secs(5));
                    loop {
                        every.tick().await;
                        handle.run_upkeep();
                    }
                });
                let r = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
                upkeep.abort();
                r
            })
        };
        let tick = Duration::from_millis((config.mapping.flush_after_ms / 4).clamp(100, 1000));
        let flusher = tokio::spawn(flush_loop(
            mapper.clone(),
            output.clone(),
            output_ok,
            tick,
            stopped.clone(),
        ));
        let poller = poller.map(|p| {
            let mapper = mapper.clone();
            let call_edges = call_edges.clone();
            let every = Duration::from_millis(config.scrape.interval_ms);
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = interval.tick() => {}
                        _ = stopped.wait_for(|s| *s) => break,
                    }
                    if let Err(e) = p.poll(&mapper, call_edges.as_deref()).await {
                        tracing::warn!(%e, "scrape mode: query failed");
                    }
                }
            })
        });
        let watcher = match config.watch.clone() {
            None => None,
            Some(w) => Some(start_watcher(w, output.clone(), stopped.clone()).await?),
        };
        let calls = call_edges.map(|c| {
            let (done, wait) = oneshot::channel();
            (done, tokio::spawn(calls::run(c, output.clone(), wait)))
        });
        tracing::info!(%addr, "collect listening");
        Ok(Collector {
            addr,
            mapper,
            stop,
            server,
            flusher,
            poller,
            watcher,
            calls,
        })
    }

    /// The address the HTTP server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops receiving, flushes every open group to the output and waits (bounded) for it.
    pub async fn stop(self) -> Result<Stats> {
        let _ = self.stop.send(true);
        if let Some(p) = self.poller {
            let _ = p.await;
        }
        if let Some((watch, forward)) = self.watcher {
            watch.abort();
            // The forwarder publishes what the watcher had handed over, then ends.
            let _ = tokio::time::timeout(Duration::from_secs(30), forward).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        if let Some((done, publisher)) = self.calls {
            // The receiver has answered its last request: what it fed is published now.
            let _ = done.send(());
            let _ = tokio::time::timeout(Duration::from_secs(30), publisher).await;
        }
        // The flusher does the final flush of everything when it sees the stop.
        let _ = tokio::time::timeout(Duration::from_secs(60), self.flusher).await;
        let series = self
            .mapper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .series_count();
        Ok(Stats { series })
    }
}

/// Starts the Kubernetes watcher (`[watch]`) and a task that publishes its topology events in
/// batches. A batch the output refuses is retried until it goes through or collect stops; the
/// watcher waits meanwhile (its channel is bounded).
async fn start_watcher(
    cfg: auspex_watch::WatchConfig,
    output: Arc<output::Output>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(JoinHandle<()>, JoinHandle<()>)> {
    let client = kube::Client::try_default().await.context(
        "watch: no Kubernetes API client (collect needs its pod's service account, or \
         KUBECONFIG outside a cluster)",
    )?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<auspex_model::TopologyEvent>(1024);
    let watch = tokio::spawn(async move {
        if let Err(e) = auspex_watch::run(client, cfg, tx).await {
            tracing::error!(%e, "the Kubernetes watcher stopped");
        }
    });
    let forward = tokio::spawn(async move {
        let mut batch = Vec::new();
        loop {
            if batch.is_empty() {
                let got = tokio::select! {
                    got = rx.recv() => Some(got),
                    _ = stopped.wait_for(|s| *s) => None,
                };
                match got {
                    Some(Some(e)) => batch.push(e),
                    Some(None) => return,
                    None => {
                        // Whatever the watcher already handed over still goes out.
                        while let Ok(e) = rx.try_recv() {
                            batch.push(e);
                        }
                        if let Err(e) = output.publish(&batch).await {
                            tracing::warn!(%e, "topology events not published at shutdown");
                        }
                        return;
                    }
                }
            }
            while batch.len() < 512
                && let Ok(e) = rx.try_recv()
            {
                batch.push(e);
            }
            match output.publish(&batch).await {
                Ok(()) => batch.clear(),
                Err(e) => {
                    tracing::warn!(%e, events = batch.len(), "publishing topology events failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stopped.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    });
    Ok((watch, forward))
}

async fn flush_loop(
    mapper: Arc<Mutex<Mapper>>,
    output: Arc<output::Output>,
    output_ok: Arc<AtomicBool>,
    tick: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = interval.tick() => false,
            _ = stopped.wait_for(|s| *s) => true,
        };
        let samples = {
            let mut m = mapper.lock().unwrap_or_else(|p| p.into_inner());
            m.flush(now_ms(), last)
        };
        match output.publish(&samples).await {
            // Nothing published says nothing about the output's health.
            Ok(()) if samples.is_empty() => {}
            Ok(()) => output_ok.store(true, Ordering::Relaxed),
            Err(e) => {
                output_ok.store(false, Ordering::Relaxed);
                tracing::warn!(%e, "publishing samples failed");
            }
        }
        if last {
            let o = output.clone();
            let _ = tokio::task::spawn_blocking(move || o.close(Duration::from_secs(10))).await;
            return;
        }
    }
}
