//! `auspex serve`: the service. Kafka in and out when brokers are configured, else the embedded
//! default (simulator or file replay in, alerts to stdout or a file); the HTTP API and
//! `/metrics` beside either; SIGTERM or Ctrl-C stops it cleanly (stop consuming, drain, flush,
//! commit) within `kafka.drain_timeout_ms`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use auspex_ingest::{DeadLetter, DeadLetterSink, NdjsonSink, Sink};
use auspex_model::Alert;
use auspex_serve::alertmanager::Alertmanager;
use auspex_serve::config::ServeConfig;
use auspex_serve::model::ThresholdSource;
use auspex_serve::{Engine, EngineConfig, Shared};
use clap::Args;

use crate::cli::{SimArgs, SourceArgs};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TOML configuration (every key: docs/CONFIG.md). Environment variables
    /// `AUSPEX__SECTION__KEY` and `--set` override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one key, e.g. `--set kafka.brokers=k0:9092` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print the effective configuration (after file, environment and flags) and exit.
    #[arg(long)]
    pub check_config: bool,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let config = ServeConfig::load(args.config.as_deref(), std::env::vars(), &args.sets)?;
    if args.check_config {
        println!("{:#?}", config.redacted());
        return Ok(());
    }
    let device = match config.model.device.as_str() {
        "wgpu" => auspex_nn::NnDevice::Wgpu,
        _ => auspex_nn::NnDevice::Cpu,
    };
    let mut engine_config = EngineConfig {
        windows: config.windows.clone(),
        graph: config.graph.clone(),
        alerts: config.alerts.clone(),
        recent_alerts: config.engine.recent_alerts,
        remediation: config.remediation.clone(),
        min_history_ms: config.engine.min_history_ms as i64,
    };
    let scorer = auspex_serve::model::open(
        config.model.path.as_deref(),
        device,
        &mut engine_config,
        !config.model.bundle_thresholds,
    )?;
    // Per-kind thresholds written in the config win over the bundle's.
    engine_config
        .alerts
        .thresholds
        .extend(config.alerts.thresholds.iter().map(|(k, v)| (*k, *v)));
    let mut engine = Engine::new(engine_config, scorer)?;
    tracing::info!(model = %engine.model_version(), "model loaded");
    if let Some(path) = &config.forecast.model {
        let model = auspex_forecast::ForecastModel::load(path, device)
            .with_context(|| format!("forecast.model = {}", path.display()))?;
        engine = engine.with_forecaster(model);
    }
    let mut shared = Shared::new(engine);
    if let Some(path) = &config.model.path {
        // A reload applies the same rule as start-up: the new bundle's thresholds, with the
        // configured ones winning, or the configured ones alone.
        let thresholds = if config.model.bundle_thresholds {
            ThresholdSource::Bundle {
                overrides: config.alerts.thresholds.clone(),
            }
        } else {
            ThresholdSource::Config
        };
        shared = shared.with_loader(
            auspex_serve::model::loader(device),
            Some(path.clone()),
            thresholds,
        )?;
    }
    let alertmanager = match &config.alertmanager {
        Some(am) => Some(Arc::new(
            Alertmanager::start(am.clone()).context("starting the Alertmanager sink")?,
        )),
        None => None,
    };
    if let Some(am) = &alertmanager {
        let am = am.clone();
        shared = shared.with_hook(Box::new(move |a: &Alert| {
            am.offer(a);
        }));
    }
    let shared = Arc::new(shared);
    let stop = Arc::new(AtomicBool::new(false));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("auspex-http")
        .build()
        .context("starting the async runtime")?;
    let stopped = Arc::new(tokio::sync::Notify::new());
    // SIGTERM / Ctrl-C: ask the loop to stop; it drains and commits.
    {
        let stop = stop.clone();
        let stopped = stopped.clone();
        runtime.spawn(async move {
            wait_for_signal().await;
            tracing::info!("stop requested: draining");
            stop.store(true, Ordering::Relaxed);
            stopped.notify_waiters();
        });
    }
    let http = match config.http.listen_addr() {
        Some(addr) => {
            let handle = auspex_serve::http::install_recorder();
            let token = config.http.token()?;
            let router = auspex_serve::http::router(shared.clone(), handle, token, &config.http);
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(addr))
                .with_context(|| format!("http.listen = {addr}: cannot listen"))?;
            let addr = listener.local_addr()?;
            eprintln!("auspex serve: HTTP API on http://{addr}");
            let done = stopped.clone();
            Some(
                runtime.spawn(auspex_serve::http::serve(listener, router, async move {
                    done.notified().await
                })),
            )
        }
        None => None,
    };

    let keda = match config.keda.listen_addr().map_err(anyhow::Error::msg)? {
        Some(addr) => {
            let forecasts = auspex_serve::forecasts::EngineForecasts::new(shared.clone())
                .context("keda.listen needs forecast.model")?;
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(addr))
                .with_context(|| format!("keda.listen = {addr}: cannot listen"))?;
            let addr = listener.local_addr()?;
            eprintln!("auspex serve: KEDA external scaler (gRPC) on {addr}");
            let done = stopped.clone();
            let keda_config = config.keda.clone();
            Some(runtime.spawn(async move {
                let served =
                    auspex_keda::serve(listener, Arc::new(forecasts), &keda_config, async move {
                        done.notified().await
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!(%e, "the KEDA scaler stopped");
                }
            }))
        }
        None => None,
    };

    let result = if config.kafka.enabled() {
        eprintln!(
            "auspex serve: consuming {} from {} as group {}",
            config.kafka.samples_topic, config.kafka.brokers, config.kafka.group_id
        );
        auspex_serve::kafka::run(&shared, &config.kafka, stop.clone()).map(|stats| {
            eprintln!(
                "auspex serve: stopped; {}",
                serde_json::to_string(&stats).unwrap_or_default()
            );
        })
    } else {
        let run = embedded(&config, &shared, stop.clone());
        if config.embedded.hold && run.is_ok() && !stop.load(Ordering::Relaxed) {
            eprintln!(
                "auspex serve: the source ended; holding the API until SIGTERM (embedded.hold)"
            );
            let done = stopped.clone();
            let stop = stop.clone();
            runtime.block_on(async move {
                let wait = done.notified();
                if !stop.load(Ordering::Relaxed) {
                    wait.await;
                }
            });
        }
        run
    };

    // Stop the HTTP server and the on-call sink, with bounded waits.
    stop.store(true, Ordering::Relaxed);
    stopped.notify_waiters();
    if let Some(h) = http {
        let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), h).await });
    }
    if let Some(h) = keda {
        let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), h).await });
    }
    if let Some(am) = alertmanager
        && let Ok(am) = Arc::try_unwrap(am)
    {
        let stats = am.shutdown(Duration::from_secs(5));
        tracing::info!(?stats, "Alertmanager sink stopped");
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

/// The embedded default: the simulator or a file replayed through the same engine.
fn embedded(config: &ServeConfig, shared: &Shared, stop: Arc<AtomicBool>) -> Result<()> {
    let e = &config.embedded;
    let overrides = e
        .sim
        .iter()
        .map(|(k, v)| Ok(format!("{k}={}", serde_json::to_string(v)?)))
        .collect::<Result<Vec<String>>>()?;
    let source_args = SourceArgs {
        source: e.source.clone(),
        sim: SimArgs {
            seed: e.seed,
            sim_config: None,
            overrides,
        },
        speed: e.speed,
    };
    let mut source = crate::cli::open_source(&source_args)
        .with_context(|| format!("embedded.source = {:?}", e.source))?;
    shared
        .readiness
        .needs_assignment
        .store(false, Ordering::Relaxed);
    eprintln!(
        "auspex serve: no kafka.brokers configured: embedded default, reading {}",
        source.describe()
    );
    let mut alerts: Box<dyn Sink<Alert>> = if e.alerts == "-" {
        Box::new(NdjsonSink::stdout())
    } else {
        Box::new(NdjsonSink::create(&e.alerts)?)
    };
    let mut dead: Box<dyn Sink<DeadLetter>> = Box::new(DeadLetterSink::create(&e.dead_letters)?);
    let mut recorder = crate::cli::Recorder {
        inner: alerts.as_mut(),
        kept: Vec::new(),
    };
    let counts = auspex_serve::pipeline::run(
        shared,
        source.as_mut(),
        &mut recorder,
        dead.as_mut(),
        Some(stop),
    )?;
    let labels = source.labels();
    let summary =
        crate::summary::RunSummary::new(source.describe(), counts, &recorder.kept, &labels);
    eprint!("{}", summary.render());
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
