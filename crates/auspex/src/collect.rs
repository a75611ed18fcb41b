//! `auspex collect`: gets a real cluster's Prometheus data into auspex. Prometheus
//! remote-writes to it (and/or it polls Prometheus's HTTP API); the standard cAdvisor,
//! kube-state-metrics and node-exporter series become metric samples on the samples topic
//! `serve` consumes, or NDJSON without brokers. SIGTERM or Ctrl-C stops it: stop receiving,
//! flush every open bucket, wait for Kafka's acknowledgements (bounded).

use std::path::PathBuf;

use anyhow::{Context, Result};
use auspex_collect::{CollectConfig, Collector};
use clap::Args;

/// Prefix of the environment variables that configure `collect`
/// (`AUSPEX_COLLECT__KAFKA__BROKERS=k0:9092`); distinct from serve's `AUSPEX__`, so one
/// environment can configure both.
pub const ENV_PREFIX: &str = "AUSPEX_COLLECT__";

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// The TOML configuration (every key: docs/COLLECT.md). Environment variables
    /// `AUSPEX_COLLECT__SECTION__KEY` and `--set` override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one key, e.g. `--set kafka.brokers=k0:9092` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print the effective configuration (after file, environment and flags) and exit.
    #[arg(long)]
    pub check_config: bool,
}

pub fn collect(args: CollectArgs) -> Result<()> {
    let config: CollectConfig = auspex_serve::config::load_layered(
        args.config.as_deref(),
        std::env::vars(),
        ENV_PREFIX,
        &args.sets,
        CollectConfig::validate,
    )?;
    if args.check_config {
        println!("{}", serde_json::to_string_pretty(&config.redacted())?);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("auspex-collect")
        .build()
        .context("starting the async runtime")?;
    let handle = auspex_serve::http::install_recorder();
    let destination = if config.kafka.enabled() {
        format!(
            "Kafka topic {} on {}",
            config.kafka.samples_topic, config.kafka.brokers
        )
    } else {
        format!("NDJSON to {}", config.output.path)
    };
    let scrape = config.scrape.url.clone();
    runtime.block_on(async move {
        let collector = Collector::start(config, handle).await?;
        eprintln!(
            "auspex collect: remote write on http://{}/api/v1/write{}; samples to {destination}",
            collector.local_addr(),
            scrape.map(|u| format!(", polling {u}")).unwrap_or_default()
        );
        crate::serve::wait_for_signal().await;
        eprintln!("auspex collect: stopping: flushing open buckets");
        let stats = collector.stop().await?;
        eprintln!("auspex collect: stopped ({} series tracked)", stats.series);
        Ok(())
    })
}
