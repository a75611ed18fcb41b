//! Command-line interface: argument parsing and the `simulate` and `run` commands.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use auspex_ingest::simulator::SimulatorSource;
use auspex_ingest::{DeadLetter, IngestError, Sink, Source};
use auspex_ingest::{DeadLetterSink, NdjsonSink, Paced, Pacing};
use auspex_model::Alert;
use auspex_sim::SimConfig;
use clap::{Args, Parser, Subcommand};

use crate::summary::RunSummary;
use auspex_serve::{Engine, EngineConfig};

#[derive(Debug, Parser)]
#[command(
    name = "auspex",
    version,
    about = "Predicts Kubernetes incidents before they happen"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `auspex=debug`); default from
    /// AUSPEX_LOG, else `warn`. Logs go to stderr.
    #[arg(long, global = true)]
    pub log: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate a cluster with injected faults and write its samples, topology and labels.
    Simulate(SimulateArgs),
    /// Run the whole pipeline on the embedded default (simulator in, alerts out), or on a
    /// replayed source; prints a summary and, with labels, event recall / precision / lead time.
    Run(RunArgs),
    /// Train the hybrid ensemble and write a model bundle.
    Train(crate::learn::TrainArgs),
    /// Evaluate a model bundle on labelled data: metrics, ablation, plots.
    Evaluate(crate::learn::EvaluateArgs),
    /// The service: Kafka in and out (or the embedded default without brokers), the HTTP API
    /// and `/metrics`, alerts to Kafka, stdout or Alertmanager.
    Serve(crate::serve::ServeArgs),
    /// Prometheus into auspex: a remote-write receiver (and/or a poller of Prometheus's HTTP
    /// API) that maps cAdvisor, kube-state-metrics and node-exporter series to metric samples
    /// on the samples topic, or NDJSON without brokers.
    Collect(crate::collect::CollectArgs),
    /// Train the per-workload demand forecaster and score it against last value, seasonal
    /// naive and predict_linear on held-out simulator seeds and real load series.
    EvaluateForecast(crate::forecast_eval::EvaluateForecastArgs),
}

/// Simulator settings shared by `simulate` and `run`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Seed of the simulator: the same seed gives byte-identical output.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// A simulator config file (JSON or TOML, fields as in `auspex simulate --print-config`).
    #[arg(long, value_name = "FILE")]
    pub sim_config: Option<PathBuf>,
    /// Override one simulator config field, e.g. `--set duration_ms=3600000` (repeatable;
    /// the value is parsed as JSON, else taken as a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl SimArgs {
    pub fn config(&self) -> Result<SimConfig> {
        let mut value = match &self.sim_config {
            Some(path) => read_config_value(path)?,
            None => serde_json::to_value(SimConfig::default())?,
        };
        let obj = value
            .as_object_mut()
            .context("simulator config must be a table/object")?;
        obj.insert("seed".into(), self.seed.into());
        for o in &self.overrides {
            let (k, v) = o
                .split_once('=')
                .with_context(|| format!("--set {o:?}: expected KEY=VALUE"))?;
            let v = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
            obj.insert(k.to_string(), v);
        }
        let config: SimConfig = serde_json::from_value(value).context("simulator config")?;
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("simulator config: {e}"))?;
        Ok(config)
    }
}

fn read_config_value(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "toml" {
        let v: toml::Value =
            toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
        Ok(serde_json::to_value(v)?)
    } else {
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
    }
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub sim: SimArgs,
    /// Directory to write samples.ndjson, topology.ndjson and labels.ndjson into.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["stdout", "print_config", "brokers"]
    )]
    pub out: Option<PathBuf>,
    /// Write samples and topology events, interleaved, to stdout instead (labels to --labels).
    #[arg(long, conflicts_with = "out")]
    pub stdout: bool,
    /// With --stdout or --brokers: where to write the labels (--out writes them into DIR).
    #[arg(long, value_name = "FILE", conflicts_with = "out")]
    pub labels: Option<PathBuf>,
    /// Stream at this many records per second instead of as fast as possible.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Stream in event time scaled by this factor (1 = real time, 60 = a minute per second).
    #[arg(long, conflicts_with = "rate")]
    pub speed: Option<f64>,
    /// Print the effective simulator config as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Produce to Kafka instead (`host:port,...`): a load generator for a running `auspex
    /// serve`, at --rate / --speed or as fast as the brokers acknowledge. Samples go keyed by
    /// node to --samples-topic, topology events keyed by their subject to --topology-topic,
    /// through the idempotent producer (acks=all); labels to --labels.
    #[arg(long, value_name = "HOST:PORT,...", conflicts_with_all = ["out", "stdout"])]
    pub brokers: Option<String>,
    /// With --brokers: the samples topic (serve's `kafka.samples_topic`).
    #[arg(long, default_value = "auspex.samples", requires = "brokers")]
    pub samples_topic: String,
    /// With --brokers: the topology topic (serve's `kafka.topology_topic`; empty: the samples
    /// topic).
    #[arg(long, default_value = "auspex.topology", requires = "brokers")]
    pub topology_topic: String,
    /// With --brokers: a librdkafka producer property, e.g. `security.protocol=SASL_SSL`
    /// (repeatable; overrides auspex's defaults).
    #[arg(
        long = "kafka-property",
        value_name = "KEY=VALUE",
        requires = "brokers"
    )]
    pub kafka_properties: Vec<String>,
}

/// Where `run` reads from.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// `sim` (the in-process simulator, the default), `dir:PATH` (what `simulate --out`
    /// wrote), `ndjson:PATH` (samples and topology events, one per line; `-` for stdin),
    /// `nezha:PATH`, `smd:PATH[:MACHINE]` or `nab:PATH` (the shared data sets).
    #[arg(long, default_value = "sim")]
    pub source: String,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Replay in event time scaled by this factor instead of as fast as possible.
    #[arg(long)]
    pub speed: Option<f64>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Where alerts go, as NDJSON: a file, or `-` for stdout.
    #[arg(long, default_value = "-", value_name = "FILE")]
    pub alerts: String,
    /// Where records that could not be parsed go, with the reason (NDJSON).
    #[arg(long, value_name = "FILE", default_value = "dead-letters.ndjson")]
    pub dead_letters: PathBuf,
    /// Also write the summary (counts, evaluation against labels) as JSON here.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Alert when the score reaches this (0..1).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Window slot width in milliseconds; default: the source's sample interval when it has
    /// one (simulator tick, data set row period), else 15000.
    #[arg(long, value_name = "MS")]
    pub resolution_ms: Option<u64>,
    /// Score with this model bundle (from `auspex train`) instead of the statistical scorer.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
}

pub fn simulate(args: SimulateArgs) -> Result<()> {
    let config = args.sim.config()?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    let source = SimulatorSource::new(config)?;
    let labels = source.labels();
    let pacing = Pacing::from_flags(args.speed, args.rate)?;
    let mut source = Paced::new(source, pacing)?;
    if let Some(brokers) = &args.brokers {
        if let Some(path) = &args.labels {
            write_labels(path, &labels)?;
        }
        let mut settings = auspex_kafka::KafkaSettings::new(brokers.clone());
        for kv in &args.kafka_properties {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--kafka-property {kv:?}: expected KEY=VALUE"))?;
            settings.properties.insert(k.trim().into(), v.trim().into());
        }
        if settings.plaintext_off_loopback() {
            tracing::warn!(brokers, "producing in plaintext to a broker off this host");
        }
        let started = std::time::Instant::now();
        let (samples, events) = produce(&mut source, &settings, &args)?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "produced {samples} samples to {} and {events} topology events to {} in {secs:.1} s \
             ({:.0} records/s), every one acknowledged",
            args.samples_topic,
            args.topology_topic,
            (samples + events) as f64 / secs.max(1e-9)
        );
        return Ok(());
    }
    let (samples, events) = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
            write_labels(&dir.join("labels.ndjson"), &labels)?;
            let mut samples = NdjsonSink::create(dir.join("samples.ndjson"))?;
            let mut topology = NdjsonSink::create(dir.join("topology.ndjson"))?;
            let counts = drain(&mut source, &mut samples, &mut topology)?;
            eprintln!(
                "wrote {} samples, {} topology events and {} labels to {}",
                counts.0,
                counts.1,
                labels.len(),
                dir.display()
            );
            counts
        }
        None => {
            if let Some(path) = &args.labels {
                write_labels(path, &labels)?;
            }
            // One writer: samples and topology events interleaved in event-time order.
            let mut out = NdjsonSink::stdout();
            let (mut n, mut t) = (0, 0);
            while let Some(batch) = source.next_batch(4096)? {
                for r in batch {
                    match &r {
                        auspex_ingest::Record::Sample(_) => n += 1,
                        auspex_ingest::Record::Topology(_) => t += 1,
                        auspex_ingest::Record::DeadLetter(d) => {
                            bail!(
                                "simulator produced an invalid record at {}: {}",
                                d.origin,
                                d.reason
                            )
                        }
                    }
                    out.send(&r)?;
                }
            }
            Sink::<auspex_ingest::Record>::flush(&mut out)?;
            (n, t)
        }
    };
    tracing::info!(samples, events, "simulation done");
    Ok(())
}

/// Publishes `source`'s records as they come (so pacing paces the producer) and waits for
/// every acknowledgement; (samples, topology events).
fn produce(
    source: &mut dyn Source,
    settings: &auspex_kafka::KafkaSettings,
    args: &SimulateArgs,
) -> Result<(u64, u64)> {
    let mut failed: Option<anyhow::Error> = None;
    let mut batch = Vec::new().into_iter();
    let records = std::iter::from_fn(|| {
        loop {
            if let Some(r) = batch.next() {
                return Some(r);
            }
            match source.next_batch(1024) {
                Ok(Some(b)) => batch = b.into_iter(),
                Ok(None) => return None,
                Err(e) => {
                    failed = Some(e.into());
                    return None;
                }
            }
        }
    });
    let counts =
        auspex_serve::kafka::publish(settings, &args.samples_topic, &args.topology_topic, records)?;
    match failed {
        Some(e) => Err(e.context("reading the simulator")),
        None => Ok(counts),
    }
}

fn write_labels(path: &Path, labels: &[auspex_model::IncidentLabel]) -> Result<()> {
    let mut sink = NdjsonSink::create(path)?;
    for l in labels {
        sink.send(l)?;
    }
    Sink::<auspex_model::IncidentLabel>::flush(&mut sink)?;
    Ok(())
}

fn drain(
    source: &mut dyn Source,
    samples: &mut dyn Sink<auspex_model::MetricSample>,
    topology: &mut dyn Sink<auspex_model::TopologyEvent>,
) -> Result<(u64, u64)> {
    let (mut n, mut t) = (0, 0);
    while let Some(batch) = source.next_batch(4096)? {
        for r in batch {
            match r {
                auspex_ingest::Record::Sample(s) => {
                    samples.send(&s)?;
                    n += 1;
                }
                auspex_ingest::Record::Topology(e) => {
                    topology.send(&e)?;
                    t += 1;
                }
                auspex_ingest::Record::DeadLetter(d) => {
                    bail!(
                        "simulator produced an invalid record at {}: {}",
                        d.origin,
                        d.reason
                    )
                }
            }
        }
    }
    samples.flush()?;
    topology.flush()?;
    Ok((n, t))
}

/// Opens the source named by `--source`.
pub fn open_source(args: &SourceArgs) -> Result<Box<dyn Source>> {
    let spec = args.source.as_str();
    let (scheme, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let source: Box<dyn Source> = match scheme {
        "sim" => Box::new(SimulatorSource::new(args.sim.config()?)?),
        "dir" => Box::new(auspex_ingest::DirectorySource::open(rest)?),
        "ndjson" => auspex_ingest::open_path(rest)?,
        _ => crate::datasets::open(scheme, rest).with_context(|| format!("--source {spec:?}"))?,
    };
    let pacing = Pacing::from_flags(args.speed, None)?;
    Ok(Box::new(Paced::new(source, pacing)?))
}

pub fn run(args: RunArgs) -> Result<()> {
    let mut source = open_source(&args.source)?;
    let mut config = EngineConfig::default();
    if let Some(ms) = args.resolution_ms.or_else(|| source.sample_interval_ms()) {
        config.windows.resolution_ms = ms;
    }
    if let Some(t) = args.threshold {
        config.alerts.fire_threshold = t;
    }
    let mut alerts: Box<dyn Sink<Alert>> = if args.alerts == "-" {
        Box::new(NdjsonSink::stdout())
    } else {
        Box::new(NdjsonSink::create(&args.alerts)?)
    };
    let mut recorder = Recorder {
        inner: alerts.as_mut(),
        kept: Vec::new(),
    };
    let mut dead: Box<dyn Sink<DeadLetter>> = Box::new(DeadLetterSink::create(&args.dead_letters)?);
    let scorer = auspex_serve::model::open(
        args.model.as_deref(),
        auspex_nn::NnDevice::Cpu,
        &mut config,
        args.threshold.is_some(),
    )?;
    let engine = Engine::new(config, scorer)?;
    let counts =
        auspex_serve::pipeline::run_engine(engine, source.as_mut(), &mut recorder, dead.as_mut())?;
    let labels = source.labels();
    let summary = RunSummary::new(source.describe(), counts, &recorder.kept, &labels);
    eprint!("{}", summary.render());
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}

/// Passes alerts on and keeps a copy for the evaluation at the end.
pub(crate) struct Recorder<'a> {
    pub(crate) inner: &'a mut dyn Sink<Alert>,
    pub(crate) kept: Vec<Alert>,
}

impl Sink<Alert> for Recorder<'_> {
    fn send(&mut self, item: &Alert) -> Result<(), IngestError> {
        self.kept.push(item.clone());
        self.inner.send(item)
    }
    fn flush(&mut self) -> Result<(), IngestError> {
        self.inner.flush()
    }
}
