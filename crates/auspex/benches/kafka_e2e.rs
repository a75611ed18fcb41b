//! End to end through a real Kafka-protocol broker (tansu, memory storage, started here), in
//! one run so the figures compare as ratios:
//!
//! 1. **raw consume ceiling**: a `BaseConsumer` in its own group drains the samples topic
//!    and does nothing else;
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
//! `cargo bench -p auspex --bench kafka_e2e` (release profile). Knobs, as environment
//! variables: `AUSPEX_BENCH_MODEL` (a bundle; default `fixtures/model`, `stat` for the
//! statistical scorer), `AUSPEX_BENCH_HOURS` (simulated hours, default 6),
//! `AUSPEX_BENCH_NODES` / `_SERVICES` / `_REPLICAS` (cluster size, default 24 / 40 / 4:
//! 224 entities), `AUSPEX_BENCH_PACE` (fractions of the serve rate for the latency runs,
//! default `0.25,0.5`), `AUSPEX_BENCH_FETCH_WAIT_MS` (serve's consumer `fetch.wait.max.ms`, default
//! 10: see `serve_config`), `AUSPEX_BENCH_JSON` (write the figures there too).

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
    records: &'a [Record],
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
        for r in self.records {
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
            let (p50, p90, p99, max) = (
                percentile(&v, 0.5),
                percentile(&v, 0.9),
                percentile(&v, 0.99),
                v.last().copied().unwrap_or(f64::NAN),
            );
            println!(
                "    alert latency ({key:>8}, n={:>4}): p50 {p50:>6.0} ms  p90 {p90:>6.0} ms  p99 {p99:>6.0} ms  max {max:>6.0} ms",
                v.len()
            );
            json[key] =
                serde_json::json!({"n": v.len(), "p50": p50, "p90": p90, "p99": p99, "max": max});
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

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let model = match std::env::var("AUSPEX_BENCH_MODEL").as_deref() {
        Ok("stat") => None,
        Ok(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => Some(repo_root().join("fixtures/model")),
    };
    let hours: u64 = env("AUSPEX_BENCH_HOURS", 6);
    let sim = auspex_sim::SimConfig {
        seed: 11,
        duration_ms: hours * 3_600_000,
        nodes: env("AUSPEX_BENCH_NODES", 24),
        services: env("AUSPEX_BENCH_SERVICES", 40),
        replicas: env("AUSPEX_BENCH_REPLICAS", 4),
        ..Default::default()
    };
    let paces: Vec<f64> = std::env::var("AUSPEX_BENCH_PACE")
        .unwrap_or_else(|_| "0.25,0.5".into())
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let mut source = SimulatorSource::new(sim.clone()).expect("simulator");
    let interval = source.sample_interval_ms().expect("interval");
    let records = source.drain().expect("stream");
    let samples = records
        .iter()
        .filter(|r| matches!(r, Record::Sample(_)))
        .count() as u64;
    let slots = sim.duration_ms / interval;
    let per_slot = samples / slots.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "auspex kafka_e2e: model {}, simulator {} nodes / {} services x {} replicas, {hours} h at \
         {} s: {samples} samples ({per_slot} per slot), {} topology events; {cores} cores",
        model
            .as_ref()
            .map_or("statistical".into(), |p| p.display().to_string()),
        sim.nodes,
        sim.services,
        sim.replicas,
        interval / 1000,
        records.len() as u64 - samples,
    );

    let metrics = auspex_serve::http::install_recorder();
    let broker = Broker::start();
    topics(&broker, "");
    let settings = KafkaSettings::new(broker.addr.clone());
    let t = Instant::now();
    kafka::publish(&settings, "samples", "topology", records.iter().cloned()).expect("publish");
    let publish_s = t.elapsed().as_secs_f64();
    println!(
        "  publish (idempotent, acks=all): {:>9.0} samples/s",
        samples as f64 / publish_s
    );

    // 1. Raw consume ceiling.
    let (got, raw_s) = raw_consume(&broker, "samples", samples);
    assert_eq!(got, samples, "the raw consumer read everything");
    let raw_rate = got as f64 / raw_s;
    println!("  raw consume ceiling:             {raw_rate:>9.0} msgs/s ({got} in {raw_s:.2} s)");

    // 2. serve on the backlog.
    let handle = start_serve(
        serve_config(&broker, "", "serve-backlog"),
        engine(&model, interval),
    );
    let target = samples - per_slot * 2;
    let deadline = Instant::now() + Duration::from_secs(1200);
    let (mut first, mut done) = (None, None);
    while Instant::now() < deadline {
        let applied = handle.0.engine().counts().samples;
        if applied > 0 && first.is_none() {
            first = Some((Instant::now(), applied));
        }
        if applied >= target {
            done = Some((Instant::now(), applied));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let ((t0, a0), (t1, a1)) = (
        first.expect("serve applied samples"),
        done.expect("serve applied the backlog in time"),
    );
    let serve_s = (t1 - t0).as_secs_f64();
    let serve_rate = (a1 - a0) as f64 / serve_s;
    // Let the idle flush score the last slot, then stop.
    std::thread::sleep(Duration::from_millis(2500));
    let counts = handle.0.engine().counts();
    let stats = stop_serve(handle);
    let rendered = metrics.render();
    let stages = stage_seconds(&rendered);
    if std::env::var_os("AUSPEX_BENCH_TRACE").is_some() {
        for l in rendered.lines().filter(|l| {
            l.starts_with("auspex_score_duration_seconds_bucket") && l.contains("ensemble")
        }) {
            eprintln!("    {l}");
        }
    }
    println!(
        "  serve end to end (backlog):      {serve_rate:>9.0} samples/s = {:.0} % of raw \
         ({} windows scored, {} alerts sent)",
        100.0 * serve_rate / raw_rate,
        counts.windows_scored,
        stats.alerts_sent
    );

    if let Some((_, (ticks, ensemble))) = stages.iter().find(|(b, _)| b == "ensemble") {
        let per_tick = |secs: f64| 1e3 * secs / *ticks as f64;
        let line: Vec<String> = stages
            .iter()
            .filter(|(b, _)| b != "ensemble")
            .map(|(b, (_, secs))| format!("{b} {:.1}", per_tick(*secs)))
            .collect();
        println!(
            "  scoring per tick ({ticks} ticks of {per_slot} windows): ensemble {:.1} ms = {:.0} % of the run{}",
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
        "samples": samples,
        "per_slot": per_slot,
        "model": model.as_ref().map_or("statistical".into(), |p| p.display().to_string()),
        "cores": cores,
        "publish_samples_per_s": samples as f64 / publish_s,
        "raw_consume_msgs_per_s": raw_rate,
        "serve_samples_per_s": serve_rate,
        "serve_over_raw": serve_rate / raw_rate,
        "score_seconds_by_stage": stages
            .iter()
            .map(|(b, (n, secs))| (b.clone(), serde_json::json!({"count": n, "sum": secs})))
            .collect::<serde_json::Map<_, _>>(),
        "latency": [],
    });

    // 3. Alert latency, live, at each pace (a fraction of the serve rate).
    for (i, pace) in paces.iter().enumerate() {
        let live = Live {
            broker: &broker,
            settings: &settings,
            records: &records,
            interval,
            prefix: format!("live{i}-"),
        };
        let figures = live.run(engine(&model, interval), serve_rate * pace, *pace);
        json["latency"]
            .as_array_mut()
            .expect("an array")
            .push(figures);
    }
    if let Ok(path) = std::env::var("AUSPEX_BENCH_JSON") {
        std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json"))
            .expect("writing the JSON");
        println!("  figures written to {path}");
    }
}
