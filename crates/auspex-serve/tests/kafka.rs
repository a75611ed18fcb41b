//! `serve` on a real Kafka-protocol broker (tansu, started here): the simulator's stream goes
//! through Kafka, three partitions keyed by node, into the Kafka loop, and the alerts it
//! publishes are compared with the embedded pipeline's on the same stream and with the
//! simulator's labels. Malformed and schema-invalid messages mixed in reach the dead-letter
//! topic with their reasons, and every valid message is still scored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auspex_ingest::simulator::SimulatorSource;
use auspex_ingest::{DeadLetter, IngestError, Record, Sink, Source};
use auspex_kafka::testing::Broker;
use auspex_kafka::{HEADER_OFFSET, HEADER_REASON, HEADER_TOPIC, KafkaSettings};
use auspex_model::{Alert, AlertState, IncidentLabel};
use auspex_serve::kafka::{self, KafkaConfig};
use auspex_serve::{Engine, EngineConfig, Shared};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;

struct Collect<T>(Vec<T>);
impl<T: Clone + Send> Sink<T> for Collect<T> {
    fn send(&mut self, item: &T) -> Result<(), IngestError> {
        self.0.push(item.clone());
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IngestError> {
        Ok(())
    }
}

fn sim_config(seed: u64) -> auspex_sim::SimConfig {
    auspex_sim::SimConfig {
        seed,
        ..Default::default()
    }
}

fn engine(interval_ms: u64) -> Engine {
    let mut config = EngineConfig::default();
    config.windows.resolution_ms = interval_ms;
    let scorer =
        auspex_serve::model::open(None, auspex_nn::NnDevice::Cpu, &mut config, false).unwrap();
    Engine::new(config, scorer).unwrap()
}

/// The simulator's records and labels, and the alerts of the embedded pipeline on them.
fn embedded(seed: u64) -> (Vec<Record>, Vec<IncidentLabel>, Vec<Alert>, u64) {
    let mut source = SimulatorSource::new(sim_config(seed)).unwrap();
    let interval = source.sample_interval_ms().unwrap();
    let labels = source.labels();
    let records = source.drain().unwrap();
    let mut replay = SimulatorSource::new(sim_config(seed)).unwrap();
    let shared = Shared::new(engine(interval));
    let (mut alerts, mut dead) = (Collect(Vec::new()), Collect::<DeadLetter>(Vec::new()));
    auspex_serve::pipeline::run(&shared, &mut replay, &mut alerts, &mut dead, None).unwrap();
    assert!(dead.0.is_empty());
    (records, labels, alerts.0, interval)
}

fn config(broker: &Broker, group: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: broker.addr.clone(),
        group_id: group.into(),
        samples_topic: "samples".into(),
        topology_topic: "topology".into(),
        alerts_topic: "alerts".into(),
        dead_letter_topic: "dead-letters".into(),
        idle_flush_ms: 1500,
        idle_partition_ms: 5000,
        session_timeout_ms: 6000,
        max_poll_interval_ms: 20_000,
        ..KafkaConfig::default()
    }
}

fn topics(broker: &Broker) {
    broker.create_topic("samples", 3);
    broker.create_topic("topology", 1);
    broker.create_topic("alerts", 3);
    broker.create_topic("dead-letters", 1);
}

/// Reads `topic` from the start until `done` says so or `timeout` passes.
fn read_topic<F: FnMut(&[(Vec<u8>, BTreeMap<String, String>)]) -> bool>(
    broker: &Broker,
    topic: &str,
    timeout: Duration,
    mut done: F,
) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    let c: BaseConsumer = KafkaSettings::new(broker.addr.clone())
        .client_config(&[
            (
                "group.id",
                &format!("reader-{topic}-{}", std::process::id()),
            ),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("session.timeout.ms", "6000"),
            ("max.poll.interval.ms", "20000"),
        ])
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    while started.elapsed() < timeout && !done(&got) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_string(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            got.push((m.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    got
}

fn firing_ids(alerts: &[Alert]) -> BTreeSet<String> {
    alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| a.id.clone())
        .collect()
}

fn start_serve(
    cfg: KafkaConfig,
    shared: Arc<Shared>,
) -> (
    Arc<AtomicBool>,
    std::thread::JoinHandle<anyhow::Result<kafka::KafkaStats>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || kafka::run(&shared, &cfg, s));
    (stop, h)
}

#[test]
fn simulator_through_kafka_alerts_like_the_embedded_pipeline() {
    let (records, labels, expected, interval) = embedded(101);
    let expected_ids = firing_ids(&expected);
    assert!(expected_ids.len() >= 10, "the run alerts: {expected_ids:?}");

    let broker = Broker::start();
    topics(&broker);
    let settings = KafkaSettings::new(broker.addr.clone());
    let started = Instant::now();
    let (samples, events) = kafka::publish(&settings, "samples", "topology", records).unwrap();
    let published_s = started.elapsed().as_secs_f64();

    let shared = Arc::new(Shared::new(engine(interval)));
    let started = Instant::now();
    let (stop, serve) = start_serve(config(&broker, "e2e"), shared.clone());
    let got = read_topic(&broker, "alerts", Duration::from_secs(120), |got| {
        let ids: BTreeSet<String> = got
            .iter()
            .filter_map(|(p, _)| serde_json::from_slice::<Alert>(p).ok())
            .filter(|a| a.state == AlertState::Firing)
            .map(|a| a.id)
            .collect();
        expected_ids.is_subset(&ids)
    });
    let serve_s = started.elapsed().as_secs_f64();
    // The last slot waits for the stream to go quiet (`idle_flush_ms`).
    while shared.engine().counts().samples < samples && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let stats = serve.join().unwrap().unwrap();
    let alerts: Vec<Alert> = got
        .iter()
        .map(|(p, _)| serde_json::from_slice(p).expect("alerts are Alert JSON"))
        .collect();
    let ids = firing_ids(&alerts);
    eprintln!(
        "published {samples} samples + {events} topology events in {published_s:.1} s; serve \
         read {} and published {} alerts in {serve_s:.1} s; {stats:?}",
        stats.consumed,
        alerts.len()
    );
    eprintln!(
        "firing: {} embedded, {} through Kafka, {} in both",
        expected_ids.len(),
        ids.len(),
        expected_ids.intersection(&ids).count()
    );
    let missing: Vec<_> = expected_ids.difference(&ids).collect();
    assert!(
        missing.is_empty(),
        "alerts lost on the way through Kafka: {missing:?}"
    );
    let extra: Vec<_> = ids.difference(&expected_ids).collect();
    assert!(
        extra.is_empty(),
        "alerts the embedded pipeline does not raise: {extra:?}"
    );
    assert_eq!(stats.consumed, samples, "every sample consumed once");
    let counts = shared.engine().counts();
    assert_eq!(counts.samples, samples);
    assert_eq!(counts.topology_events, events);
    // Against the labels: the same floors as the embedded run's test.
    let report = auspex_score::eval::evaluate(
        &alerts,
        &labels,
        &auspex_score::eval::MatchPolicy::default(),
        counts.entity_days,
    );
    let recall = report.overall.recall.unwrap();
    eprintln!(
        "through Kafka: event recall {recall:.3}, precision {:?}",
        report.overall.precision
    );
    assert!(recall >= 0.85, "event recall {recall}");
}

#[test]
fn malformed_messages_go_to_the_dead_letter_topic_and_the_rest_is_scored() {
    let mut source = SimulatorSource::new(auspex_sim::SimConfig {
        seed: 5,
        duration_ms: 2 * 3_600_000,
        ..Default::default()
    })
    .unwrap();
    let interval = source.sample_interval_ms().unwrap();
    let records = source.drain().unwrap();
    let valid_samples = records
        .iter()
        .filter(|r| matches!(r, Record::Sample(_)))
        .count() as u64;
    let broker = Broker::start();
    topics(&broker);
    let settings = KafkaSettings::new(broker.addr.clone());
    kafka::publish(&settings, "samples", "topology", records).unwrap();
    // Bad ones, after and between: not JSON, the wrong shape, a negative timestamp, a
    // non-finite value, an unknown entity kind, an empty payload.
    let bad: Vec<&[u8]> = vec![
        b"not json at all",
        br#"{"timestamp_ms": 1767571200000}"#,
        br#"{"timestamp_ms": -5, "entity": {"kind": "pod", "namespace": "a", "name": "b"}, "metrics": {}}"#,
        br#"{"timestamp_ms": 1767571200000, "entity": {"kind": "pod", "namespace": "a", "name": "b"}, "metrics": {"cpu_usage_cores": "NaN"}}"#,
        br#"{"timestamp_ms": 1767571200000, "entity": {"kind": "galaxy", "name": "b"}, "metrics": {}}"#,
        b"",
        b"[1, 2, 3]",
    ];
    let producer: rdkafka::producer::BaseProducer = settings.client_config(&[]).create().unwrap();
    for (i, b) in bad.iter().enumerate() {
        producer
            .send(
                rdkafka::producer::BaseRecord::to("samples")
                    .key(&format!("bad-{i}"))
                    .payload(*b),
            )
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();

    let shared = Arc::new(Shared::new(engine(interval)));
    let (stop, serve) = start_serve(config(&broker, "dlq"), shared.clone());
    let dead = read_topic(&broker, "dead-letters", Duration::from_secs(120), |g| {
        g.len() >= bad.len()
    });
    // Wait for every valid sample to be applied too.
    let started = Instant::now();
    while shared.engine().counts().samples < valid_samples
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let stats = serve.join().unwrap().unwrap();
    assert_eq!(dead.len(), bad.len(), "{}", broker.log());
    let mut payloads: Vec<&[u8]> = dead.iter().map(|(p, _)| p.as_slice()).collect();
    payloads.sort();
    let mut want = bad.clone();
    want.sort();
    assert_eq!(payloads, want, "dead letters carry the message unchanged");
    for (p, h) in &dead {
        assert_eq!(h.get(HEADER_TOPIC).map(String::as_str), Some("samples"));
        assert!(h.contains_key(HEADER_OFFSET));
        let reason = h.get(HEADER_REASON).expect("a reason header");
        assert!(!reason.is_empty(), "{}", String::from_utf8_lossy(p));
    }
    let counts = shared.engine().counts();
    assert_eq!(counts.samples, valid_samples, "every valid sample applied");
    assert_eq!(counts.dead_letters, bad.len() as u64);
    assert_eq!(stats.dead_letters_sent, bad.len() as u64);
    assert!(counts.windows_scored > 0);
}
