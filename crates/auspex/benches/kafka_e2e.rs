//! End to end through a real Kafka-protocol broker (tansu, memory storage, started here), in
//! one run so the figures compare as ratios:
//!
//! 1. **raw consume ceiling**: a `BaseConsumer` in its own group drains the samples topic
//!    and does nothing else; then **ingest** alone in this thread (consume, parse, windows and
//!    graph, no scoring: issue 5's ingest target over the raw rate);
//! 2. **serve, backlog**: the Kafka loop (`auspex_serve::kafka::run`, what `auspex serve`
//!    runs) drains the same topic through parse, reorder, windows, graph, scorer and alert
//!    lifecycle, publishing alerts with the idempotent producer: samples/s from its first
//!    sample applied to its last (the final slot waits for the idle flush by design and is
//!    left out);
//! 3. **alert latency**: the stream is published again, paced at fractions of the measured
//!    serve rate, slot by slot in event time, to a second set of topics that a fresh serve
//!    loop follows live. An alert at boundary `B` can only be raised once every partition
//!    holds a sample at or past `B`; its latency is the alert message's broker timestamp
//!    (CreateTime, taken when serve hands it to its producer) minus the latest of those
//!    samples' send times. p50 / p90 / p99 / max over every alert but the idle-flushed last
//!    slot's.
//!
//! 4. **cost**: CPU seconds of this process per 1,000 samples while serve drains the backlog
//!    (cores needed per 1k samples/s), and resident memory grown over the tracked entities.
//!
//! Each of several cluster sizes runs all of the above on its own topics, and a closing table
//! lines them up (Markdown, for BENCHMARKS.md).
//!
//! `cargo bench -p auspex --bench kafka_e2e` (release profile). Knobs, as environment
//! variables: `AUSPEX_BENCH_ENTITIES` (cluster sizes, default `1000,10000`: a tenth nodes, the
//! rest services and their pods), `AUSPEX_BENCH_REPLICAS` (pods per service, default 4),
//! `AUSPEX_BENCH_SAMPLES` (samples per size, default 600,000: simulated time is this over
//! the size, at least 75 min and at most `AUSPEX_BENCH_HOURS`, default 6;
//! `AUSPEX_BENCH_MINUTES` sets it outright), `AUSPEX_BENCH_MODEL`
//! (a bundle; default `fixtures/model`, `stat` for the statistical scorer),
//! `AUSPEX_BENCH_PACE` (fractions of the serve rate for the latency runs, default `0.5`),
//! `AUSPEX_BENCH_FETCH_WAIT_MS` (serve's consumer `fetch.wait.max.ms`, default 10: see
//! `serve_config`), `AUSPEX_BENCH_JSON` (write the figures there too).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auspex_ingest::simulator::SimulatorSource;
use auspex_ingest::{Record, Source};
use auspex_kafka::KafkaSettings;
use auspex_kafka::testing::Broker;
use auspex_model::Alert;
use auspex_serve::kafka::{self, KafkaConfig};
use auspex_serve::{Engine, EngineConfig, Shared};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const PARTITIONS: i32 = 3;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

fn repo_root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into())).join("../..")
}

/// A serve engine: the bundle's model (and its window settings) or the statistical scorer.
fn engine(model: &Option<PathBuf>, interval_ms: u64) -> Engine {
    let mut config = EngineConfig::default();
    config.windows.resolution_ms = interval_ms;
    let scorer = auspex_serve::model::open(
        model.as_deref(),
        auspex_nn::NnDevice::Cpu,
        &mut config,
        false,
    )
    .expect("the model opens");
    assert_eq!(
        config.windows.resolution_ms, interval_ms,
        "the bundle's resolution must be the simulator's interval"
    );
    Engine::new(config, scorer).expect("engine")
}

/// `fetch.wait.max.ms` of every consumer here (serve's and the do-nothing ones).
fn fetch_wait_ms() -> String {
    std::env::var("AUSPEX_BENCH_FETCH_WAIT_MS").unwrap_or_else(|_| "10".into())
}

fn serve_config(broker: &Broker, prefix: &str, group: &str) -> KafkaConfig {
    let mut properties = std::collections::BTreeMap::new();
    // tansu 0.6 holds every fetch answer for about half of `fetch.wait.max.ms` even when it
    // has data (librdkafka's default 500 ms put ~1.6 s at p50 of the latency run); Kafka
    // answers at once when data is there, so this only changes what an idle consumer costs.
    properties.insert("fetch.wait.max.ms".to_string(), fetch_wait_ms());
    KafkaConfig {
        properties,
        brokers: broker.addr.clone(),
        group_id: group.into(),
        samples_topic: format!("{prefix}samples"),
        topology_topic: format!("{prefix}topology"),
        alerts_topic: format!("{prefix}alerts"),
        dead_letter_topic: format!("{prefix}dead-letters"),
        idle_flush_ms: 1500,
        idle_partition_ms: env("AUSPEX_BENCH_IDLE_PARTITION_MS", 5000),
        session_timeout_ms: 6000,
        max_poll_interval_ms: 20_000,
        ..KafkaConfig::default()
    }
}

fn topics(broker: &Broker, prefix: &str) {
    broker.create_topic(&format!("{prefix}samples"), PARTITIONS as u32);
    broker.create_topic(&format!("{prefix}topology"), 1);
    broker.create_topic(&format!("{prefix}alerts"), PARTITIONS as u32);
    broker.create_topic(&format!("{prefix}dead-letters"), 1);
}

type ServeHandle = (
    Arc<Shared>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<anyhow::Result<kafka::KafkaStats>>,
);

fn start_serve(cfg: KafkaConfig, engine: Engine) -> ServeHandle {
    let shared = Arc::new(Shared::new(engine));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, sh) = (stop.clone(), shared.clone());
    let handle = std::thread::spawn(move || kafka::run(&sh, &cfg, s));
    (shared, stop, handle)
}

fn stop_serve((_, stop, handle): ServeHandle) -> kafka::KafkaStats {
    stop.store(true, Ordering::Relaxed);
    handle
        .join()
        .expect("serve thread")
        .expect("serve ran without error")
}

/// A consumer of `topic` from its start in group `group`, committing nothing.
fn reader(settings: &KafkaSettings, group: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = settings
        .client_config(&[
            ("group.id", group),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("session.timeout.ms", "6000"),
            ("max.poll.interval.ms", "20000"),
            ("fetch.wait.max.ms", &fetch_wait_ms()),
        ])
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// Drains `topic` in a fresh group doing nothing with the messages: (messages, seconds from
/// the first to the last).
fn raw_consume(broker: &Broker, topic: &str, n: u64) -> (u64, f64) {
    let c = reader(
        &KafkaSettings::new(broker.addr.clone()),
        "raw-ceiling",
        topic,
    );
    let (mut got, mut first, mut last) = (0u64, None, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(600);
    while got < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            std::hint::black_box(m.payload());
            got += 1;
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
        }
    }
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
    (got, secs)
}

/// Ingest alone, in this thread, in a fresh group: consume, parse (`parse_line`, as serve
/// does) and apply to a fresh engine's windows and graph (`Engine::apply`), with no ticks and
/// so no scoring; the topology first. Issue 5's ingest target is this rate over the raw one.
/// (samples, seconds from the first sample to the last)
fn ingest_only(broker: &Broker, prefix: &str, topology: u64, n: u64, mut e: Engine) -> (u64, f64) {
    let settings = KafkaSettings::new(broker.addr.clone());
    let mut drain = |group: &str, topic: String, n: u64| {
        let c = reader(&settings, group, &topic);
        let (mut got, mut first, mut last) = (0u64, None, Instant::now());
        let deadline = Instant::now() + Duration::from_secs(900);
        while got < n && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                first.get_or_insert_with(Instant::now);
                let origin = auspex_ingest::Origin::Kafka {
                    topic: topic.clone(),
                    partition: m.partition(),
                    offset: m.offset(),
                };
                let r = auspex_ingest::parse_line(m.payload().unwrap_or_default(), origin);
                assert!(e.apply(r).is_none(), "the bench's stream is valid");
                got += 1;
                last = Instant::now();
            }
        }
        (got, first.map_or(0.0, |f| (last - f).as_secs_f64()))
    };
    drain("ingest-topology", format!("{prefix}topology"), topology);
    drain("ingest-samples", format!("{prefix}samples"), n)
}

/// (branch, (observations, seconds)) of `auspex_score_duration_seconds` in a Prometheus
/// text rendering.
fn stage_seconds(text: &str) -> Vec<(String, (u64, f64))> {
    let mut out: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("auspex_score_duration_seconds_") else {
            continue;
        };
        let (Some(kind), Some(branch), Some(value)) = (
            rest.split('{').next(),
            rest.split("branch=\"")
                .nth(1)
                .and_then(|r| r.split('"').next()),
            line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let e = out.entry(branch.to_string()).or_default();
        match kind {
            "count" => e.0 = value as u64,
            "sum" => e.1 = value,
            _ => {}
        }
    }
    out.into_iter().collect()
}

/// Stable partition of a key (the bench chooses partitions itself so that it knows where
/// each sample lands).
fn partition_of(key: &str) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    (h % PARTITIONS as u64) as i32
}

/// The latency run: the stream published again, paced, to fresh topics that a fresh serve
/// loop follows live.
struct Live<'a> {
    broker: &'a Broker,
    settings: &'a KafkaSettings,
    sim: &'a auspex_sim::SimConfig,
    interval: u64,
    prefix: String,
}

impl Live<'_> {
    fn run(&self, engine: Engine, rate: f64, pace: f64) -> serde_json::Value {
        let (broker, settings, interval, prefix) = (
            self.broker,
            self.settings,
            self.interval,
            self.prefix.as_str(),
        );
        topics(broker, prefix);
        let handle = start_serve(
            serve_config(broker, prefix, &format!("{prefix}serve")),
            engine,
        );
        let ready = Instant::now();
        while !handle.0.readiness.assigned.load(Ordering::Relaxed) {
            assert!(
                ready.elapsed() < Duration::from_secs(60),
                "serve got no assignment"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // A do-nothing consumer follows the same topic: when each slot reaches a consumer at
        // all (the broker's share of the latency), in the same run.
        let raw_stop = Arc::new(AtomicBool::new(false));
        let raw = {
            let (c, stop) = (
                reader(
                    settings,
                    &format!("{prefix}raw"),
                    &format!("{prefix}samples"),
                ),
                raw_stop.clone(),
            );
            std::thread::spawn(move || {
                let mut got: Vec<(i32, i64, i64)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                        let at = now_ms();
                        if let Ok(s) = serde_json::from_slice::<auspex_model::MetricSample>(
                            m.payload().unwrap_or_default(),
                        ) {
                            got.push((m.partition(), s.timestamp_ms, at));
                        }
                    }
                }
                got
            })
        };
        std::thread::sleep(Duration::from_secs(3)); // its group settles
        let producer: BaseProducer = settings
            .client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "1"),
                ("queue.buffering.max.messages", "500000"),
            ])
            .create()
            .expect("producer");
        let (samples_topic, topology_topic, alerts_topic) = (
            format!("{prefix}samples"),
            format!("{prefix}topology"),
            format!("{prefix}alerts"),
        );
        // First send time (ms since the epoch) of a sample of each slot on each partition.
        let mut first_sent: BTreeMap<i64, [Option<i64>; PARTITIONS as usize]> = BTreeMap::new();
        let started = Instant::now();
        let mut sent = 0u64;
        for r in stream(self.sim) {
            let r = &r;
            let (topic, key, payload) =
                kafka::message_of(r, &samples_topic, &topology_topic).expect("valid");
            let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
            if let Record::Sample(s) = r {
                let p = partition_of(&key);
                record = record.partition(p);
                let slot = s.timestamp_ms.div_euclid(interval as i64) * interval as i64;
                first_sent.entry(slot).or_default()[p as usize].get_or_insert_with(now_ms);
                sent += 1;
                if std::env::var_os("AUSPEX_BENCH_TRACE").is_some() && sent.is_multiple_of(5_000) {
                    let c = handle.0.engine().counts();
                    eprintln!(
                        "    t={:.1}s sent {sent} (unacknowledged {}) applied {} slot {} vs applied up to {:?} (slots behind: {:.1})",
                        started.elapsed().as_secs_f64(),
                        producer.in_flight_count(),
                        c.samples,
                        slot,
                        c.last_event_ms,
                        c.last_event_ms
                            .map_or(f64::NAN, |l| (slot - l) as f64 / interval as f64)
                    );
                }
                // Pace: sample `sent` is due at `sent / rate` seconds.
                let due = Duration::from_secs_f64(sent as f64 / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    producer.poll(Duration::ZERO);
                    std::thread::sleep(wait);
                }
            }
            kafka::send(&producer, record).expect("send");
        }
        producer.flush(Duration::from_secs(60)).expect("published");
        let paced_s = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(3000));
        let live_stats = stop_serve(handle);
        raw_stop.store(true, Ordering::Relaxed);
        let mut first_read: BTreeMap<i64, [Option<i64>; PARTITIONS as usize]> = BTreeMap::new();
        for (p, ts, at) in raw.join().expect("raw follower") {
            let slot = ts.div_euclid(interval as i64) * interval as i64;
            let e = &mut first_read.entry(slot).or_default()[p as usize];
            *e = Some(e.map_or(at, |x| x.min(at)));
        }
        let closing = |m: &BTreeMap<i64, [Option<i64>; PARTITIONS as usize]>, slot: i64| {
            m.get(&slot)
                .and_then(|s| s.iter().try_fold(i64::MIN, |acc, x| x.map(|x| acc.max(x))))
        };
        let mut broker_ms: Vec<f64> = first_sent
            .keys()
            .filter_map(|&slot| {
                Some((closing(&first_read, slot)? - closing(&first_sent, slot)?) as f64)
            })
            .collect();
        broker_ms.sort_by(f64::total_cmp);
        // Read the alerts back with their broker timestamps.
        let c = reader(settings, &format!("{prefix}latency-reader"), &alerts_topic);
        let mut alerts: Vec<(Alert, i64)> = Vec::new();
        let quiet = Instant::now() + Duration::from_secs(60);
        while (alerts.len() as u64) < live_stats.alerts_sent && Instant::now() < quiet {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                let a: Alert =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("alert");
                alerts.push((a, m.timestamp().to_millis().unwrap_or(0)));
            }
        }
        let last_slot = first_sent.keys().next_back().copied().unwrap_or(0);
        let mut lat: HashMap<&str, Vec<f64>> = HashMap::new();
        for (a, at) in &alerts {
            // The boundary `a.timestamp_ms` closes when every partition holds a sample of the
            // slot that starts there.
            if a.timestamp_ms >= last_slot {
                continue;
            }
            let Some(closed) = closing(&first_sent, a.timestamp_ms) else {
                continue;
            };
            let ms = (at - closed) as f64;
            lat.entry("all").or_default().push(ms);
            let state = match a.state {
                auspex_model::AlertState::Firing => "firing",
                auspex_model::AlertState::Resolved => "resolved",
            };
            lat.entry(state).or_default().push(ms);
        }
        println!(
            "  latency run: paced at {rate:.0} samples/s ({:.0} % of the serve rate) for {paced_s:.1} s; {} alerts",
            pace * 100.0,
            alerts.len()
        );
        let (b50, b99) = (percentile(&broker_ms, 0.5), percentile(&broker_ms, 0.99));
        println!(
            "    slot reaches a do-nothing consumer (n={:>4}): p50 {b50:>6.0} ms  p99 {b99:>6.0} ms  max {:>6.0} ms",
            broker_ms.len(),
            broker_ms.last().copied().unwrap_or(f64::NAN)
        );
        let mut json = serde_json::json!({"pace": pace, "samples_per_s": rate,
            "raw_delivery_ms": {"n": broker_ms.len(), "p50": b50, "p99": b99}});
        for key in ["all", "firing", "resolved"] {
            let mut v = lat.remove(key).unwrap_or_default();
            v.sort_by(f64::total_cmp);
            let (p50, p90, p99, p999, max) = (
                percentile(&v, 0.5),
                percentile(&v, 0.9),
                percentile(&v, 0.99),
                percentile(&v, 0.999),
                v.last().copied().unwrap_or(f64::NAN),
            );
            println!(
                "    alert latency ({key:>8}, n={:>4}): p50 {p50:>6.0} ms  p90 {p90:>6.0} ms  p99 {p99:>6.0} ms  p99.9 {p999:>6.0} ms  max {max:>6.0} ms",
                v.len()
            );
            json[key] = serde_json::json!({"n": v.len(), "p50": p50, "p90": p90, "p99": p99,
                "p999": p999, "max": max});
        }
        json
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
}

/// One cluster size: `entities` = nodes + services + pods (services x replicas).
fn cluster(entities: usize) -> (usize, usize, usize) {
    let replicas = env("AUSPEX_BENCH_REPLICAS", 4usize);
    let nodes = (entities / 10).max(1);
    let services = ((entities - nodes) / (replicas + 1)).max(1);
    (nodes, services, replicas)
}

/// This process's CPU seconds (user + system, every thread: serve's loop and librdkafka's).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th
    // and 13th, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// This process's resident memory in bytes.
fn rss_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib * 1024.0)
}

/// What one cluster size measured, for the closing table.
struct Row {
    entities: usize,
    samples: u64,
    raw: f64,
    ingest: f64,
    serve: f64,
    windows_per_s: f64,
    cpu_per_1k: f64,
    rss_per_entity: f64,
    state_per_entity: f64,
    rss: f64,
    latency: Vec<(f64, [f64; 3])>,
}

fn main() {
    // As `auspex` itself does (so the state figure includes the scratch it keeps).
    auspex_serve::keep_scratch_memory();
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let model = match std::env::var("AUSPEX_BENCH_MODEL").as_deref() {
        Ok("stat") => None,
        Ok(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => Some(repo_root().join("fixtures/model")),
    };
    let scales: Vec<usize> = std::env::var("AUSPEX_BENCH_ENTITIES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let paces: Vec<f64> = std::env::var("AUSPEX_BENCH_PACE")
        .unwrap_or_else(|_| "0.5".into())
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let metrics = auspex_serve::http::install_recorder();
    let broker = Broker::start();
    let settings = KafkaSettings::new(broker.addr.clone());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "auspex kafka_e2e: model {}; {cores} cores; tansu (memory storage) on this machine",
        model
            .as_ref()
            .map_or("statistical".into(), |p| p.display().to_string()),
    );
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for &entities in &scales {
        let render = || metrics.render();
        let (row, figures) = run_scale(entities, &model, &paces, &broker, &settings, &render);
        rows.push(row);
        json.push(figures);
    }
    println!();
    println!(
        "| entities | samples | raw consume msgs/s | ingest samples/s (no scoring) | ingest / raw | serve samples/s | serve / raw | scoring windows/s (1 thread) | CPU s per 1k samples | state per entity | serve RSS growth per entity | alert latency p50 / p99 / p99.9 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let lat: Vec<String> = r
            .latency
            .iter()
            .map(|(pace, [a, b, c])| {
                format!("{a:.0} / {b:.0} / {c:.0} ms at {:.0} %", pace * 100.0)
            })
            .collect();
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} % | {:.0} | {:.0} % | {:.0} | {:.3} | {:.1} KiB | {:.1} KiB (RSS {:.0} MiB) | {} |",
            r.entities,
            r.samples,
            r.raw,
            r.ingest,
            100.0 * r.ingest / r.raw,
            r.serve,
            100.0 * r.serve / r.raw,
            r.windows_per_s,
            r.cpu_per_1k,
            r.state_per_entity / 1024.0,
            r.rss_per_entity / 1024.0,
            r.rss / 1048576.0,
            lat.join("; ")
        );
    }
    if let Ok(path) = std::env::var("AUSPEX_BENCH_JSON") {
        let doc = serde_json::json!({
            "model": model.as_ref().map_or("statistical".into(), |p| p.display().to_string()),
            "cores": cores,
            "scales": json,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json"))
            .expect("writing the JSON");
        println!("figures written to {path}");
    }
}

/// The simulated cluster's stream, generated afresh (the simulator is deterministic).
fn stream(sim: &auspex_sim::SimConfig) -> impl Iterator<Item = Record> + use<> {
    let mut source = SimulatorSource::new(sim.clone()).expect("simulator");
    std::iter::from_fn(move || source.next_batch(4096).expect("simulator stream")).flatten()
}

fn run_scale(
    entities: usize,
    model: &Option<PathBuf>,
    paces: &[f64],
    broker: &Broker,
    settings: &KafkaSettings,
    render: &dyn Fn() -> String,
) -> (Row, serde_json::Value) {
    let (nodes, services, replicas) = cluster(entities);
    // About `AUSPEX_BENCH_SAMPLES` samples per size, and at least 75 minutes of simulated
    // time (faults are injected after the simulator's hour of warm-up).
    // `AUSPEX_BENCH_MINUTES` overrides both, e.g. for 100,000 entities, where 75 minutes are
    // 30 M samples: half an hour of serve's backlog alone on 2 cores.
    let budget: u64 = env("AUSPEX_BENCH_SAMPLES", 600_000);
    let minutes = match std::env::var("AUSPEX_BENCH_MINUTES") {
        Ok(m) => m.parse().expect("AUSPEX_BENCH_MINUTES: whole minutes"),
        Err(_) => (budget / entities as u64 / 4).clamp(75, env("AUSPEX_BENCH_HOURS", 6) * 60),
    };
    let sim = auspex_sim::SimConfig {
        seed: 11,
        duration_ms: minutes * 60_000,
        nodes,
        services,
        replicas,
        // Faults per entity-hour as in the simulator's default cluster, so every size alerts.
        fault_rate_per_hour: {
            let d = auspex_sim::SimConfig::default();
            d.fault_rate_per_hour * entities as f64
                / (d.nodes + d.services * (1 + d.replicas)) as f64
        },
        ..Default::default()
    };
    let interval = SimulatorSource::new(sim.clone())
        .expect("simulator")
        .sample_interval_ms()
        .expect("interval");
    // The simulator is deterministic: each phase regenerates the stream from `sim` instead of
    // holding it (about 1.6 KiB a sample: 75 minutes at 100,000 entities are 30 M samples).
    let (samples, topology_events, last) = stream(&sim).fold((0u64, 0u64, 0i64), |(s, t, l), r| {
        let l = r.timestamp_ms().map_or(l, |ts| l.max(ts));
        match r {
            Record::Sample(_) => (s + 1, t, l),
            _ => (s, t + 1, l),
        }
    });
    let slots = sim.duration_ms / interval;
    let per_slot = samples / slots.max(1);
    println!(
        "\n{entities} entities: simulator {nodes} nodes / {services} services x {replicas} replicas, \
         {minutes} min at {} s: {samples} samples ({per_slot} per slot), {} topology events",
        interval / 1000,
        topology_events,
    );
    // State per entity, away from Kafka's buffers: a fresh engine takes the stream in event
    // order in this thread (as the embedded pipeline does), and the process's resident memory
    // grows by what it keeps (windows, baselines, graph, alert state, model state).
    let state_per_entity = {
        let rss0 = rss_bytes();
        let mut e = engine(model, interval);
        let mut out = Vec::new();
        // Scoring state and scratch count too, but scoring every slot here would double the
        // run: only the last ten slots are scored.
        let score_from = last - 10 * interval as i64;
        for r in stream(&sim) {
            if let Some(ts) = r.timestamp_ms()
                && ts >= score_from
            {
                e.advance(ts, &mut out);
            }
            e.apply(r);
            out.clear();
        }
        let grown = rss_bytes() - rss0;
        let tracked = e.tracked_entities().max(1);
        drop(e);
        println!(
            "  state: resident memory +{:.1} MiB for {tracked} tracked entities = {:.1} KiB each",
            grown / 1048576.0,
            grown / tracked as f64 / 1024.0
        );
        grown / tracked as f64
    };
    let prefix = format!("e{entities}-");
    topics(broker, &prefix);
    let t = Instant::now();
    kafka::publish(
        settings,
        &format!("{prefix}samples"),
        &format!("{prefix}topology"),
        stream(&sim),
    )
    .expect("publish");
    let publish_s = t.elapsed().as_secs_f64();
    println!(
        "  publish (idempotent, acks=all): {:>9.0} samples/s",
        samples as f64 / publish_s
    );

    // 1. Raw consume ceiling.
    let (got, raw_s) = raw_consume(broker, &format!("{prefix}samples"), samples);
    assert_eq!(got, samples, "the raw consumer read everything");
    let raw_rate = got as f64 / raw_s;
    println!("  raw consume ceiling:             {raw_rate:>9.0} msgs/s ({got} in {raw_s:.2} s)");
    let (got, ingest_s) = ingest_only(
        broker,
        &prefix,
        topology_events,
        samples,
        engine(model, interval),
    );
    assert_eq!(got, samples, "ingest read everything");
    let ingest_rate = got as f64 / ingest_s;
    println!(
        "  ingest (consume + parse + windows and graph, no scoring): {ingest_rate:>9.0} samples/s = {:.0} % of raw",
        100.0 * ingest_rate / raw_rate
    );

    // 2. serve on the backlog.
    let stages_before = stage_seconds(&render());
    let rss_before = rss_bytes();
    let handle = start_serve(
        serve_config(broker, &prefix, "serve-backlog"),
        engine(model, interval),
    );
    let target = samples - per_slot * 2;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let (mut first, mut done) = (None, None);
    while Instant::now() < deadline {
        let applied = handle.0.engine().counts().samples;
        if applied > 0 && first.is_none() {
            first = Some((Instant::now(), applied, cpu_seconds()));
        }
        if applied >= target {
            done = Some((Instant::now(), applied, cpu_seconds()));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let ((t0, a0, c0), (t1, a1, c1)) = (
        first.expect("serve applied samples"),
        done.expect("serve applied the backlog in time"),
    );
    let serve_s = (t1 - t0).as_secs_f64();
    let serve_rate = (a1 - a0) as f64 / serve_s;
    // Cores busy per 1,000 samples/s: CPU seconds over thousands of samples. The sampling
    // loop here sleeps; the broker is another process.
    let cpu_per_1k = (c1 - c0) / ((a1 - a0) as f64 / 1000.0);
    let (rss, tracked) = (rss_bytes(), handle.0.engine().tracked_entities());
    let rss_per_entity = (rss - rss_before) / tracked.max(1) as f64;
    // Let the idle flush score the last slot, then stop.
    std::thread::sleep(Duration::from_millis(2500));
    let counts = handle.0.engine().counts();
    let stats = stop_serve(handle);
    let after = stage_seconds(&render());
    // The recorder is cumulative over sizes: this size's share.
    let stages: Vec<(String, (u64, f64))> = after
        .into_iter()
        .map(|(b, (n, s))| {
            let (n0, s0) = stages_before
                .iter()
                .find(|(x, _)| *x == b)
                .map_or((0, 0.0), |(_, v)| *v);
            (b, (n - n0, s - s0))
        })
        .collect();
    println!(
        "  serve end to end (backlog):      {serve_rate:>9.0} samples/s = {:.0} % of raw \
         ({} windows scored, {} alerts sent)",
        100.0 * serve_rate / raw_rate,
        counts.windows_scored,
        stats.alerts_sent
    );
    println!(
        "  CPU: {cpu_per_1k:.3} s per 1,000 samples ({:.2} cores busy); RSS {:.0} MiB, +{:.0} MiB \
         over {tracked} tracked entities = {:.1} KiB each (with librdkafka's fetch queue and the reorder buffer)",
        (c1 - c0) / serve_s,
        rss / 1048576.0,
        (rss - rss_before) / 1048576.0,
        rss_per_entity / 1024.0
    );
    let mut windows_per_s = f64::NAN;
    if let Some((_, (ticks, ensemble))) = stages.iter().find(|(b, _)| b == "ensemble") {
        let per_tick = |secs: f64| 1e3 * secs / *ticks as f64;
        windows_per_s = counts.windows_scored as f64 / ensemble;
        let line: Vec<String> = stages
            .iter()
            .filter(|(b, _)| b != "ensemble")
            .map(|(b, (_, secs))| format!("{b} {:.1}", per_tick(*secs)))
            .collect();
        println!(
            "  scoring per tick ({ticks} ticks of {per_slot} windows): ensemble {:.1} ms = {:.0} % of the run, {windows_per_s:.0} windows/s{}",
            per_tick(*ensemble),
            100.0 * ensemble / serve_s,
            if line.is_empty() {
                String::new()
            } else {
                format!("; by branch (ms): {}", line.join(", "))
            }
        );
    }

    let mut json = serde_json::json!({
        "entities": entities,
        "tracked_entities": tracked,
        "samples": samples,
        "per_slot": per_slot,
        "publish_samples_per_s": samples as f64 / publish_s,
        "raw_consume_msgs_per_s": raw_rate,
        "ingest_samples_per_s": ingest_rate,
        "serve_samples_per_s": serve_rate,
        "serve_over_raw": serve_rate / raw_rate,
        "scoring_windows_per_s": windows_per_s,
        "cpu_seconds_per_1k_samples": cpu_per_1k,
        "rss_bytes": rss,
        "rss_growth_per_entity_bytes": rss_per_entity,
        "state_per_entity_bytes": state_per_entity,
        "score_seconds_by_stage": stages
            .iter()
            .map(|(b, (n, secs))| (b.clone(), serde_json::json!({"count": n, "sum": secs})))
            .collect::<serde_json::Map<_, _>>(),
        "latency": [],
    });

    // 3. Alert latency, live, at each pace (a fraction of the serve rate).
    let mut latency = Vec::new();
    for (i, pace) in paces.iter().enumerate() {
        let live = Live {
            broker,
            settings,
            sim: &sim,
            interval,
            prefix: format!("{prefix}live{i}-"),
        };
        let figures = live.run(engine(model, interval), serve_rate * pace, *pace);
        let q = |k: &str| figures["all"][k].as_f64().unwrap_or(f64::NAN);
        latency.push((*pace, [q("p50"), q("p99"), q("p999")]));
        json["latency"]
            .as_array_mut()
            .expect("an array")
            .push(figures);
    }
    let row = Row {
        entities,
        samples,
        raw: raw_rate,
        ingest: ingest_rate,
        serve: serve_rate,
        windows_per_s,
        cpu_per_1k,
        rss_per_entity,
        state_per_entity,
        rss,
        latency,
    };
    (row, json)
}
